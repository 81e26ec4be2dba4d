//! Outbound e-mail, SendGrid v3 compatible (`EMAIL_API_URL`, `EMAIL_API_KEY`, `EMAIL_FROM`): a
//! feature that mails someone stages an `email_outbox` row (and its `Job::Email`) in the same D1
//! batch as the change that decided it (`stage`); the jobs Worker renders the built-in template
//! and sends it (`deliver`), 3 attempts with backoff, then a recorded failure and a dead letter.
//! Unconfigured (no URL or key), rows are stored `skipped` and nothing is sent.
//!
//! Templates are text and HTML with every variable HTML-escaped in the HTML part; links are
//! made from `APP_BASE_URL`. A link that carries a secret (an invitation's `accept_url`) is
//! removed from the row once the message is sent or failed. A send whose worker died mid-call is not repeated (the provider
//! has no idempotency key): the redelivery finds the row `sending` and fails it as unconfirmed.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use worker::{D1PreparedStatement, Env, Headers, Method, Request, RequestInit};

use crate::args;
use crate::platform::clock;
use crate::platform::config::Config;
use crate::platform::db::Db;
use crate::platform::egress;
use crate::platform::error::Result;
use crate::platform::ids;
use crate::platform::lease::{self, Holder};
use crate::platform::outbox::{self, Staged};
use crate::platform::queue::{DeadLetter, Job, Outcome};

/// Tries of a message before it fails.
pub const ATTEMPTS: i64 = 3;
const TIMEOUT: Duration = Duration::from_secs(15);
const LEASE_MS: i64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Template {
    /// `{organization, inviter, role, accept_url}`.
    Invitation,
    /// `{title, body, link?}` (a relative link is made absolute with `APP_BASE_URL`).
    Notification,
    /// `{organization, amount, invoice_url?}`.
    PaymentFailed,
}

impl Template {
    pub fn as_str(self) -> &'static str {
        match self {
            Template::Invitation => "invitation",
            Template::Notification => "notification",
            Template::PaymentFailed => "payment_failed",
        }
    }

    pub fn parse(s: &str) -> Option<Template> {
        Some(match s {
            "invitation" => Template::Invitation,
            "notification" => Template::Notification,
            "payment_failed" => Template::PaymentFailed,
            _ => return None,
        })
    }
}

/// A message to send.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub tenant_id: Option<String>,
    pub to: String,
    pub template: Template,
    pub variables: Value,
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Escapes text for HTML (element content and quoted attributes).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A link as mailed: absolute links are kept if http(s), relative ones are made from
/// `app_base`; anything else (`javascript:`, …) is dropped.
pub fn link(app_base: &str, link: &str) -> Option<String> {
    let l = link.trim();
    if l.starts_with("https://") || l.starts_with("http://") {
        Some(l.to_string())
    } else if l.starts_with('/') && !l.starts_with("//") {
        Some(format!("{}{l}", app_base.trim_end_matches('/')))
    } else {
        None
    }
}

fn var<'a>(vars: &'a Value, name: &str) -> &'a str {
    vars.get(name).and_then(Value::as_str).unwrap_or_default()
}

/// Renders `template` with `vars` (pure).
pub fn render(template: Template, vars: &Value, app_base: &str) -> Rendered {
    let (subject, lines, action): (String, Vec<String>, Option<(String, String)>) = match template {
        Template::Invitation => {
            let org = var(vars, "organization");
            let inviter = var(vars, "inviter");
            let role = var(vars, "role");
            let url = link(app_base, var(vars, "accept_url"));
            (
                format!("You are invited to join {org} on Tenantry"),
                vec![
                    format!("{inviter} invited you to join {org} as {role}."),
                    "The link works once and expires in 7 days.".into(),
                ],
                url.map(|u| ("Accept the invitation".into(), u)),
            )
        }
        Template::Notification => {
            let title = var(vars, "title");
            let body = var(vars, "body");
            let url = link(app_base, var(vars, "link"));
            (
                title.to_string(),
                vec![body.to_string()],
                url.map(|u| ("Open".into(), u)),
            )
        }
        Template::PaymentFailed => {
            let org = var(vars, "organization");
            let amount = var(vars, "amount");
            let url = link(app_base, var(vars, "invoice_url"));
            (
                format!("A payment for {org} failed"),
                vec![
                    format!("We could not collect {amount} for {org}."),
                    "Update the payment method to keep the plan.".into(),
                ],
                url.map(|u| ("View the invoice".into(), u)),
            )
        }
    };
    let mut text = lines.join("\n\n");
    let mut html: String = lines
        .iter()
        .filter(|l| !l.is_empty())
        .map(|l| format!("<p>{}</p>", escape(l)))
        .collect();
    if let Some((label, url)) = action {
        text.push_str(&format!("\n\n{label}: {url}"));
        html.push_str(&format!(
            "<p><a href=\"{}\">{}</a></p>",
            escape(&url),
            escape(&label)
        ));
    }
    Rendered {
        subject: subject.replace(['\r', '\n'], " "),
        text,
        html: format!("<!doctype html><html><body>{html}</body></html>"),
    }
}

/// The SendGrid v3 `mail/send` body.
pub fn sendgrid_body(from: &str, to: &str, r: &Rendered) -> Value {
    json!({
        "personalizations": [{"to": [{"email": to}]}],
        "from": {"email": from},
        "subject": r.subject,
        "content": [
            {"type": "text/plain", "value": r.text},
            {"type": "text/html", "value": r.html}
        ]
    })
}

/// Whether e-mail can be sent at all.
pub fn configured(cfg: &Config) -> bool {
    cfg.email.api_url.is_some() && cfg.email.api_key.is_some()
}

/// The row (and the job that sends it, when e-mail is configured) for the caller's batch;
/// after the commit, send the job with `outbox::send_now`.
pub fn stage(
    db: &Db,
    cfg: &Config,
    msg: &Outgoing,
    now_ms: i64,
) -> Result<(Vec<D1PreparedStatement>, Option<Staged>)> {
    let id = ids::new_id("eml");
    let now = clock::rfc3339(now_ms);
    let status = if configured(cfg) { "queued" } else { "skipped" };
    // A skipped message is never rendered: its secret link is not kept either.
    let mut variables = msg.variables.clone();
    if status == "skipped" {
        if let Some(v) = variables.as_object_mut() {
            v.remove("accept_url");
        }
    }
    let mut stmts = vec![db.stmt(
        "INSERT INTO email_outbox (id, tenant_id, to_email, template, variables, status, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
        &args![
            id.as_str(),
            msg.tenant_id.clone(),
            msg.to.as_str(),
            msg.template.as_str(),
            variables.to_string(),
            status,
            now.as_str()
        ],
    )?];
    if status == "skipped" {
        return Ok((stmts, None));
    }
    let job = Staged::job(&Job::Email { email_id: id }, 0, now_ms)?;
    stmts.push(job.insert(db)?);
    Ok((stmts, Some(job)))
}

#[derive(Debug, Deserialize)]
struct Row {
    to_email: String,
    template: String,
    variables: String,
    status: String,
    attempts: i64,
}

/// The jobs Worker's work for one message.
pub async fn deliver(env: &Env, cfg: &Config, holder: &Holder, email_id: &str) -> Result<Outcome> {
    let db = Db::from_env(env)?;
    let Some(row) = db
        .one::<Row>(
            "SELECT to_email, template, variables, status, attempts FROM email_outbox WHERE id = ?1",
            &args![email_id],
        )
        .await?
    else {
        return Ok(Outcome::Ack);
    };
    if !matches!(row.status.as_str(), "queued" | "sending") {
        return Ok(Outcome::Ack);
    }
    let now_ms = clock::now_ms();
    let claimed = db
        .run(
            &format!(
                "UPDATE email_outbox SET status = 'sending', attempts = attempts + 1, {}, updated_at = ?5 \
                 WHERE id = ?1 AND status IN ('queued', 'sending') AND {}",
                lease::sql_hold(2, 3, 4),
                lease::sql_may_take(2, 3, 6)
            ),
            &args![
                email_id,
                holder.message_id.as_str(),
                i64::from(holder.attempt),
                now_ms + LEASE_MS,
                clock::rfc3339(now_ms),
                now_ms
            ],
        )
        .await?;
    if claimed == 0 {
        return Ok(Outcome::Ack);
    }
    let attempt = row.attempts + 1;
    if row.status == "sending" {
        // An earlier delivery died during its call: the mail may have gone out.
        return finish(
            env,
            cfg,
            &db,
            holder,
            email_id,
            Err("send_unconfirmed: the worker stopped during the call; not sent again".into()),
            attempt,
        )
        .await;
    }
    let (Some(url), Some(key)) = (&cfg.email.api_url, &cfg.email.api_key) else {
        return finish(
            env,
            cfg,
            &db,
            holder,
            email_id,
            Err("e-mail is not configured".into()),
            ATTEMPTS,
        )
        .await;
    };
    let template = Template::parse(&row.template).unwrap_or(Template::Notification);
    let vars: Value = serde_json::from_str(&row.variables).unwrap_or_else(|_| json!({}));
    let rendered = render(template, &vars, &cfg.email.app_base_url);
    let body = sendgrid_body(&cfg.email.from, &row.to_email, &rendered).to_string();
    let result = async {
        let headers = Headers::new();
        headers
            .set("Content-Type", "application/json")
            .map_err(|e| e.to_string())?;
        headers
            .set("Authorization", &format!("Bearer {key}"))
            .map_err(|e| e.to_string())?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_headers(headers)
            .with_body(Some(body.into()));
        let request = Request::new_with_init(url, &init).map_err(|e| e.to_string())?;
        let (status, text) = egress::fetch_text(&cfg.egress, request, TIMEOUT).await?;
        if (200..300).contains(&status) {
            Ok(())
        } else {
            let detail: String = text.chars().take(200).collect();
            Err(format!(
                "the e-mail API answered {status}: {}",
                detail.replace(key.as_str(), "[redacted]")
            ))
        }
    }
    .await;
    finish(env, cfg, &db, holder, email_id, result, attempt).await
}

/// Records a send's outcome while this delivery holds the row: sent; queued again with
/// backoff; or failed with a dead letter after the last attempt.
async fn finish(
    env: &Env,
    cfg: &Config,
    db: &Db,
    holder: &Holder,
    email_id: &str,
    result: std::result::Result<(), String>,
    attempt: i64,
) -> Result<Outcome> {
    let now_ms = clock::now_ms();
    let now = clock::rfc3339(now_ms);
    let held = "id = ?1 AND status = 'sending' AND lease_id = ?2 AND lease_attempt = ?3";
    let hold = args![
        email_id,
        holder.message_id.as_str(),
        i64::from(holder.attempt)
    ];
    let with = |extra: &[crate::platform::db::Arg]| {
        let mut a = hold.to_vec();
        a.extend_from_slice(extra);
        a
    };
    match result {
        Ok(()) => {
            db.run(
                &format!(
                    "UPDATE email_outbox SET status = 'sent', sent_at = ?4, updated_at = ?4, error = NULL, \
                     variables = json_remove(variables, '$.accept_url'), {} WHERE {held}",
                    lease::SQL_RELEASE
                ),
                &with(&args![now.as_str()]),
            )
            .await?;
        }
        Err(error) if attempt < ATTEMPTS && !error.starts_with("send_unconfirmed") => {
            let retry = Staged::job(
                &Job::Email {
                    email_id: email_id.to_string(),
                },
                egress::backoff_secs(attempt),
                now_ms,
            )?;
            let changes = db
                .batch(vec![
                    db.stmt(
                        &format!(
                            "UPDATE email_outbox SET status = 'queued', error = ?4, updated_at = ?5, {} WHERE {held}",
                            lease::SQL_RELEASE
                        ),
                        &with(&args![error.as_str(), now.as_str()]),
                    )?,
                    retry.insert_if_applied(db)?,
                ])
                .await?;
            if changes.first().copied().unwrap_or(0) > 0 {
                outbox::send_now(env, cfg, db, &[retry]).await;
            }
        }
        Err(error) => {
            let letter = Staged::dead_letter(
                &DeadLetter {
                    job: Job::Email {
                        email_id: email_id.to_string(),
                    },
                    error: error.clone(),
                    attempts: attempt,
                },
                now_ms,
            )?;
            let changes = db
                .batch(vec![
                    db.stmt(
                        &format!(
                            "UPDATE email_outbox SET status = 'failed', error = ?4, updated_at = ?5, \
                             variables = json_remove(variables, '$.accept_url'), {} WHERE {held}",
                            lease::SQL_RELEASE
                        ),
                        &with(&args![error.as_str(), now.as_str()]),
                    )?,
                    letter.insert_if_applied(db)?,
                ])
                .await?;
            if changes.first().copied().unwrap_or(0) > 0 {
                outbox::send_now(env, cfg, db, &[letter]).await;
            }
        }
    }
    Ok(Outcome::Ack)
}

/// The dead-letter consumer's part: a message the queue gave up on is failed with the reason.
pub async fn mark_failed(env: &Env, email_id: &str, error: &str) -> Result<()> {
    let db = Db::from_env(env)?;
    db.run(
        &format!(
            "UPDATE email_outbox SET status = 'failed', error = ?2, updated_at = ?3, {} \
             WHERE id = ?1 AND status IN ('queued', 'sending')",
            lease::SQL_RELEASE
        ),
        &args![email_id, error, clock::rfc3339(clock::now_ms())],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_escaped_in_html_and_links_come_from_the_app_base() {
        let r = render(
            Template::Notification,
            &json!({"title": "Run <failed>", "body": "x & \"y\" <script>", "link": "/executions/exe_1"}),
            "https://app.example.com/",
        );
        assert_eq!(r.subject, "Run <failed>");
        assert!(r.html.contains("x &amp; &quot;y&quot; &lt;script&gt;"));
        assert!(!r.html.contains("<script>"));
        assert!(r
            .html
            .contains("href=\"https://app.example.com/executions/exe_1\""));
        assert!(r
            .text
            .contains("Open: https://app.example.com/executions/exe_1"));
    }

    #[test]
    fn unsafe_links_are_dropped() {
        assert_eq!(link("https://a.io", "javascript:alert(1)"), None);
        assert_eq!(link("https://a.io", "//evil.io/x"), None);
        assert_eq!(
            link("https://a.io/", "/x?y=1"),
            Some("https://a.io/x?y=1".into())
        );
        let r = render(
            Template::Notification,
            &json!({"title": "t", "body": "b", "link": "javascript:alert(1)"}),
            "https://a.io",
        );
        assert!(!r.html.contains("javascript"));
    }

    #[test]
    fn an_invitation_names_the_organisation_and_links_the_acceptance() {
        let r = render(
            Template::Invitation,
            &json!({"organization": "Acme", "inviter": "Olga", "role": "member",
                    "accept_url": "/invitations/accept?token=abc"}),
            "https://app.example.com",
        );
        assert_eq!(r.subject, "You are invited to join Acme on Tenantry");
        assert!(r.text.contains("Olga invited you to join Acme as member."));
        assert!(r
            .text
            .contains("https://app.example.com/invitations/accept?token=abc"));
        let subject = render(
            Template::Notification,
            &json!({"title": "a\r\nBcc: x@y.z", "body": ""}),
            "",
        )
        .subject;
        assert!(!subject.contains('\n') && !subject.contains('\r'));
    }

    #[test]
    fn the_body_is_sendgrid_v3() {
        let r = Rendered {
            subject: "s".into(),
            text: "t".into(),
            html: "<p>h</p>".into(),
        };
        let b = sendgrid_body("no-reply@tenantry.dev", "a@b.io", &r);
        assert_eq!(b["personalizations"][0]["to"][0]["email"], "a@b.io");
        assert_eq!(b["from"]["email"], "no-reply@tenantry.dev");
        assert_eq!(b["content"][0]["type"], "text/plain");
        assert_eq!(b["content"][1]["value"], "<p>h</p>");
    }

    #[test]
    fn templates_round_trip() {
        for t in [
            Template::Invitation,
            Template::Notification,
            Template::PaymentFailed,
        ] {
            assert_eq!(Template::parse(t.as_str()), Some(t));
        }
    }
}

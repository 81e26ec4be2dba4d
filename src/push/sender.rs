//! The jobs Worker's part of web push: one `Job::Push` sends one `push_deliveries` row to its
//! subscription's endpoint, encrypted (RFC 8291) and signed (VAPID, RFC 8292), through the
//! egress policy. The row is claimed with a lease naming its holder and its attempt counted
//! before the call; then 2xx → `sent`; 404/410 → the subscription is deleted and the row
//! `gone`; 429/5xx/no answer → queued again after `Retry-After` or the backoff, and after the
//! last attempt `failed` with a dead letter; any other answer → `failed`, recorded. A
//! redelivery that finds the row still `sending` (its worker died during the call) fails it as
//! unconfirmed instead of pushing twice.

use std::time::Duration;

use serde::Deserialize;
use worker::{Env, Headers, Method, Request, RequestInit};

use super::crypto;
use super::delivery::{retry_delay, verdict, Verdict, ATTEMPTS, TTL_SECS};
use super::keys;
use crate::args;
use crate::platform::clock;
use crate::platform::config::Config;
use crate::platform::db::{Arg, Db};
use crate::platform::egress;
use crate::platform::error::Result;
use crate::platform::lease::{self, Holder};
use crate::platform::outbox::{self, Staged};
use crate::platform::queue::{DeadLetter, Job, Outcome};

const TIMEOUT: Duration = Duration::from_secs(15);
const LEASE_MS: i64 = 60_000;

#[derive(Debug, Deserialize)]
struct Row {
    status: String,
    attempts: i64,
    payload: String,
    urgency: String,
    subscription_id: String,
    endpoint: Option<String>,
    p256dh: Option<String>,
    auth: Option<String>,
}

/// How one try ended.
enum Tried {
    /// The push service answered.
    Answered {
        status: u16,
        retry_after: Option<String>,
        detail: String,
    },
    /// No answer (refused by the policy, a network error, the deadline) or nothing to send.
    Error(String),
    /// The subscription no longer exists.
    NoSubscription,
}

pub async fn deliver(
    env: &Env,
    cfg: &Config,
    holder: &Holder,
    delivery_id: &str,
) -> Result<Outcome> {
    let db = Db::from_env(env)?;
    let Some(row) = db
        .one::<Row>(
            "SELECT d.status, d.attempts, d.payload, d.urgency, d.subscription_id, s.endpoint, s.p256dh, s.auth \
             FROM push_deliveries d LEFT JOIN push_subscriptions s ON s.id = d.subscription_id \
             AND s.tenant_id = d.tenant_id AND s.user_id = d.user_id WHERE d.id = ?1",
            &args![delivery_id],
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
                "UPDATE push_deliveries SET status = 'sending', attempts = attempts + 1, {}, updated_at = ?5 \
                 WHERE id = ?1 AND status IN ('queued', 'sending') AND {}",
                lease::sql_hold(2, 3, 4),
                lease::sql_may_take(2, 3, 6)
            ),
            &args![
                delivery_id,
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
    let held = Held {
        env,
        cfg,
        db: &db,
        holder,
        delivery_id,
        subscription_id: &row.subscription_id,
    };
    if row.status == "sending" {
        return held
            .fail(
                "send_unconfirmed: the worker stopped during the call; not sent again",
                None,
                attempt,
                true,
            )
            .await;
    }
    let Some(vapid) = &cfg.push else {
        return held
            .fail(
                "web push is not configured (VAPID_PRIVATE_KEY)",
                None,
                attempt,
                true,
            )
            .await;
    };
    let tried = match (&row.endpoint, &row.p256dh, &row.auth) {
        (Some(endpoint), Some(p256dh), Some(auth)) => {
            send(
                cfg,
                vapid,
                endpoint,
                p256dh,
                auth,
                &row.payload,
                &row.urgency,
            )
            .await
        }
        _ => Tried::NoSubscription,
    };
    match tried {
        Tried::NoSubscription => held.gone(None, "the subscription was removed").await,
        Tried::Error(error) => held.retry_or_fail(&error, None, None, attempt).await,
        Tried::Answered {
            status,
            retry_after,
            detail,
        } => {
            let error = format!("the push service answered {status}: {detail}");
            match verdict(status) {
                Verdict::Sent => held.sent(status).await,
                Verdict::Gone => held.gone(Some(status), &error).await,
                Verdict::Retry => {
                    held.retry_or_fail(&error, Some(status), retry_after.as_deref(), attempt)
                        .await
                }
                Verdict::Failed => held.fail(&error, Some(status), attempt, false).await,
            }
        }
    }
}

/// One encrypted, signed POST to the endpoint.
async fn send(
    cfg: &Config,
    vapid: &keys::Vapid,
    endpoint: &str,
    p256dh: &str,
    auth: &str,
    payload: &str,
    urgency: &str,
) -> Tried {
    let built = (|| {
        let ua = keys::parse_p256dh(p256dh).map_err(|e| format!("p256dh {e}"))?;
        let secret = keys::parse_auth(auth).map_err(|e| format!("auth {e}"))?;
        let salt: [u8; 16] = crate::platform::crypto::random_bytes();
        let body = crypto::encrypt(
            &ua,
            &secret,
            payload.as_bytes(),
            &crypto::ephemeral_key(),
            &salt,
        )?;
        let authorization = crypto::authorization(vapid, endpoint, clock::now_ms() / 1000)?;
        let ttl = TTL_SECS.to_string();
        let headers = Headers::new();
        for (name, value) in [
            ("Authorization", authorization.as_str()),
            ("TTL", ttl.as_str()),
            ("Urgency", urgency),
            ("Content-Encoding", "aes128gcm"),
            ("Content-Type", "application/octet-stream"),
        ] {
            headers.set(name, value).map_err(|e| e.to_string())?;
        }
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_headers(headers)
            .with_body(Some(js_sys::Uint8Array::from(body.as_slice()).into()));
        Request::new_with_init(endpoint, &init).map_err(|e| e.to_string())
    })();
    let request = match built {
        Ok(r) => r,
        Err(e) => return Tried::Error(e),
    };
    match egress::fetch_text_with_header(&cfg.egress, request, TIMEOUT, Some("Retry-After")).await {
        Ok((status, retry_after, text)) => Tried::Answered {
            status,
            retry_after,
            detail: text.chars().take(200).collect(),
        },
        Err(e) => Tried::Error(e),
    }
}

/// A delivery this worker holds (status `sending` under its lease): each outcome is one
/// guarded statement, with the outbox row that follows it in the same batch.
struct Held<'a> {
    env: &'a Env,
    cfg: &'a Config,
    db: &'a Db,
    holder: &'a Holder,
    delivery_id: &'a str,
    subscription_id: &'a str,
}

const HELD: &str = "id = ?1 AND status = 'sending' AND lease_id = ?2 AND lease_attempt = ?3";

impl Held<'_> {
    fn args(&self, extra: &[Arg]) -> Vec<Arg> {
        let mut a = args![
            self.delivery_id,
            self.holder.message_id.as_str(),
            i64::from(self.holder.attempt)
        ]
        .to_vec();
        a.extend_from_slice(extra);
        a
    }

    async fn sent(&self, status: u16) -> Result<Outcome> {
        let now = clock::rfc3339(clock::now_ms());
        self.db
            .run(
                &format!(
                    "UPDATE push_deliveries SET status = 'sent', response_status = ?4, error = NULL, \
                     sent_at = ?5, updated_at = ?5, {} WHERE {HELD}",
                    lease::SQL_RELEASE
                ),
                &self.args(&args![i64::from(status), now.as_str()]),
            )
            .await?;
        Ok(Outcome::Ack)
    }

    /// The subscription is no more: the row ends `gone` and the subscription is deleted (only
    /// if this delivery still held its row, so a stale holder deletes nothing).
    async fn gone(&self, status: Option<u16>, why: &str) -> Result<Outcome> {
        let now = clock::rfc3339(clock::now_ms());
        self.db
            .batch(vec![
                self.db.stmt(
                    &format!(
                        "UPDATE push_deliveries SET status = 'gone', response_status = ?4, error = ?5, \
                         updated_at = ?6, {} WHERE {HELD}",
                        lease::SQL_RELEASE
                    ),
                    &self.args(&args![status.map(i64::from), why, now.as_str()]),
                )?,
                self.db.stmt(
                    "DELETE FROM push_subscriptions WHERE id = ?1 AND changes() > 0",
                    &args![self.subscription_id],
                )?,
            ])
            .await?;
        Ok(Outcome::Ack)
    }

    async fn retry_or_fail(
        &self,
        error: &str,
        status: Option<u16>,
        retry_after: Option<&str>,
        attempt: i64,
    ) -> Result<Outcome> {
        if attempt >= ATTEMPTS {
            return self.fail(error, status, attempt, true).await;
        }
        let now_ms = clock::now_ms();
        let retry = Staged::job(
            &Job::Push {
                delivery_id: self.delivery_id.to_string(),
            },
            retry_delay(attempt, retry_after, now_ms),
            now_ms,
        )?;
        let changes = self
            .db
            .batch(vec![
                self.db.stmt(
                    &format!(
                        "UPDATE push_deliveries SET status = 'queued', response_status = ?4, error = ?5, \
                         updated_at = ?6, {} WHERE {HELD}",
                        lease::SQL_RELEASE
                    ),
                    &self.args(&args![
                        status.map(i64::from),
                        error,
                        clock::rfc3339(now_ms)
                    ]),
                )?,
                retry.insert_if_applied(self.db)?,
            ])
            .await?;
        if changes.first().copied().unwrap_or(0) > 0 {
            outbox::send_now(self.env, self.cfg, self.db, &[retry]).await;
        }
        Ok(Outcome::Ack)
    }

    /// Ends the row `failed`; with `letter`, also a dead letter (attempts spent, or a send
    /// that cannot be confirmed), so an operator sees it at `GET /admin/errors`.
    async fn fail(
        &self,
        error: &str,
        status: Option<u16>,
        attempt: i64,
        letter: bool,
    ) -> Result<Outcome> {
        let now_ms = clock::now_ms();
        let mut stmts = vec![self.db.stmt(
            &format!(
                "UPDATE push_deliveries SET status = 'failed', response_status = ?4, error = ?5, \
                 updated_at = ?6, {} WHERE {HELD}",
                lease::SQL_RELEASE
            ),
            &self.args(&args![status.map(i64::from), error, clock::rfc3339(now_ms)]),
        )?];
        let dead = if letter {
            let staged = Staged::dead_letter(
                &DeadLetter {
                    job: Job::Push {
                        delivery_id: self.delivery_id.to_string(),
                    },
                    error: error.to_string(),
                    attempts: attempt,
                },
                now_ms,
            )?;
            stmts.push(staged.insert_if_applied(self.db)?);
            Some(staged)
        } else {
            None
        };
        let changes = self.db.batch(stmts).await?;
        if let Some(staged) = dead {
            if changes.first().copied().unwrap_or(0) > 0 {
                outbox::send_now(self.env, self.cfg, self.db, &[staged]).await;
            }
        }
        Ok(Outcome::Ack)
    }
}

/// The dead-letter consumer's part: a delivery the queue gave up on is failed with the reason.
pub async fn mark_failed(env: &Env, delivery_id: &str, error: &str) -> Result<()> {
    let db = Db::from_env(env)?;
    db.run(
        &format!(
            "UPDATE push_deliveries SET status = 'failed', error = ?2, updated_at = ?3, {} \
             WHERE id = ?1 AND status IN ('queued', 'sending')",
            lease::SQL_RELEASE
        ),
        &args![delivery_id, error, clock::rfc3339(clock::now_ms())],
    )
    .await?;
    Ok(())
}

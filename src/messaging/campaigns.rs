//! Campaigns: one template sent to many numbers (each recipient with its own body parameters,
//! or the shared ones) through the same paced send queue, with progress counted from the
//! messages' statuses. The request stores the campaign with its recipients and queues one job
//! per chunk of them; each chunk job creates its recipients' contacts, conversations and
//! messages (idempotently, by the recipient's index) and queues their sends.

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use worker::Env;

use super::channel::{self, Credential};
use super::model::wa_id;
use super::store;
use super::templates::{self, fill};
use crate::args;
use crate::audit;
use crate::handler;
use crate::http::context::Ctx;
use crate::http::json::Checks;
use crate::http::reply::Reply;
use crate::http::router::{Access, Route};
use crate::platform::db::Db;
use crate::platform::error::{AppError, Result};
use crate::platform::queue::{self, Job};
use crate::platform::{clock, ids};

/// Recipients per campaign.
pub const MAX_RECIPIENTS: usize = 1000;

/// Recipients one chunk job queues (its contacts, conversations and messages).
pub const CHUNK: usize = 25;

pub fn routes() -> Vec<Route> {
    vec![
        Route::post(
            "/api/v1/campaigns",
            Access::TenantAdmin,
            handler!(start_campaign),
        )
        .doc(
            "templates",
            "Send a template to up to 1,000 numbers (each with its own parameters, or the shared ones) through the paced send queue",
        )
        .body("CreateCampaign")
        .accepted("Campaign")
        .idempotent(),
        Route::get(
            "/api/v1/campaigns/:id",
            Access::Agent,
            handler!(get_campaign),
        )
        .doc("templates", "A campaign with its delivery progress")
        .ok("Campaign"),
    ]
}

/// A campaign recipient: a phone number (sent the shared `parameters`), or a number with its
/// own body parameters.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Recipient {
    Number(String),
    Personal(PersonalRecipient),
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PersonalRecipient {
    /// A phone number in international format.
    pub to: String,
    /// This recipient's body parameters (as many as the template takes).
    pub parameters: Vec<String>,
}

/// A recipient as stored for the chunk jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    pub to: String,
    pub parameters: Vec<String>,
}

/// Checks the recipients against the template's parameter count: field errors for bad numbers
/// and wrong counts; a number listed twice is sent once (its first entry).
pub fn recipients(
    list: &[Recipient],
    shared: &[String],
    parameter_count: usize,
    checks: &mut Checks,
) -> Vec<Stored> {
    if list.is_empty() || list.len() > MAX_RECIPIENTS {
        checks.add(
            "recipients",
            format!("must list 1–{MAX_RECIPIENTS} recipients"),
        );
    }
    let mut out: Vec<Stored> = Vec::new();
    let mut shared_used = false;
    for (i, r) in list.iter().enumerate() {
        let (to, parameters, field) = match r {
            Recipient::Number(n) => {
                shared_used = true;
                (n, shared, format!("recipients[{i}]"))
            }
            Recipient::Personal(p) => {
                if p.parameters.len() != parameter_count {
                    checks.add(
                        &format!("recipients[{i}].parameters"),
                        format!("the template takes {parameter_count} parameters"),
                    );
                }
                (
                    &p.to,
                    p.parameters.as_slice(),
                    format!("recipients[{i}].to"),
                )
            }
        };
        match wa_id(to) {
            Ok(n) if !out.iter().any(|s| s.to == n) => out.push(Stored {
                to: n,
                parameters: parameters.to_vec(),
            }),
            Ok(_) => {}
            Err(m) => checks.add(&field, m),
        }
    }
    if shared_used && shared.len() != parameter_count {
        checks.add(
            "parameters",
            format!("the template takes {parameter_count} parameters (for the plain numbers)"),
        );
    }
    out
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCampaign {
    /// The template's name.
    pub template: String,
    pub language: String,
    /// 1–1,000 recipients: phone numbers in international format, or `{to, parameters}` objects
    /// with that recipient's own body parameters.
    pub recipients: Vec<Recipient>,
    /// Body parameters for the recipients given as plain numbers.
    #[serde(default)]
    pub parameters: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct CampaignProgress {
    pub total: i64,
    pub queued: i64,
    pub sent: i64,
    pub delivered: i64,
    pub read: i64,
    pub failed: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Campaign {
    pub id: String,
    pub template: String,
    pub language: String,
    pub parameters: Vec<String>,
    pub progress: CampaignProgress,
    pub created_at: String,
}

async fn campaign(db: &Db, tenant_id: &str, id: &str) -> Result<Campaign> {
    #[derive(Deserialize)]
    struct Row {
        id: String,
        template_name: String,
        language: String,
        parameters: String,
        total: i64,
        created_at: String,
    }
    let r: Row = db
        .one(
            "SELECT id, template_name, language, parameters, total, created_at FROM campaigns \
             WHERE id = ?1 AND tenant_id = ?2",
            &args![id, tenant_id],
        )
        .await?
        .ok_or(AppError::NotFound)?;
    let mut progress: CampaignProgress = db
        .one(
            "SELECT COUNT(*) AS total, COALESCE(SUM(status = 'queued'), 0) AS queued, \
             COALESCE(SUM(status = 'sent'), 0) AS sent, COALESCE(SUM(status = 'delivered'), 0) AS delivered, \
             COALESCE(SUM(status = 'read'), 0) AS read, COALESCE(SUM(status = 'failed'), 0) AS failed \
             FROM messages WHERE campaign_id = ?1 AND tenant_id = ?2",
            &args![id, tenant_id],
        )
        .await?
        .unwrap_or_default();
    progress.total = r.total;
    // Not yet sent: queued, being sent, or in a chunk not queued yet.
    progress.queued =
        (r.total - progress.sent - progress.delivered - progress.read - progress.failed).max(0);
    Ok(Campaign {
        id: r.id,
        template: r.template_name,
        language: r.language,
        parameters: serde_json::from_str(&r.parameters).unwrap_or_default(),
        progress,
        created_at: r.created_at,
    })
}

async fn get_campaign(cx: Ctx) -> Result<Reply> {
    Reply::ok(&campaign(&cx.db()?, cx.tenant_id()?, cx.param("id")).await?)
}

async fn start_campaign(cx: Ctx) -> Result<Reply> {
    let body: CreateCampaign = cx.json()?;
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?.to_string();
    let template = templates::find(&db, &tenant_id, &body.template, &body.language)
        .await?
        .ok_or_else(|| AppError::field("template", "no template with this name and language"))?;
    let mut checks = Checks::new();
    let recipients = recipients(
        &body.recipients,
        &body.parameters,
        template.parameter_count.max(0) as usize,
        &mut checks,
    );
    checks.finish()?;
    if !channel::find(&db, &tenant_id)
        .await?
        .is_some_and(|c| c.has(Credential::AccessToken))
    {
        return Err(AppError::Conflict(
            "Connect WhatsApp first: PUT /api/v1/channels/whatsapp with an access token.".into(),
        ));
    }
    let id = ids::new_id("cmp");
    let now = cx.now();
    db.batch(vec![
        db.stmt(
            "INSERT INTO campaigns (id, tenant_id, template_name, language, parameters, total, created_by, created_at, recipients) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            &args![
                id.as_str(),
                tenant_id.as_str(),
                body.template.as_str(),
                body.language.as_str(),
                serde_json::to_string(&body.parameters)?,
                recipients.len() as i64,
                cx.principal()?.user_id.clone(),
                now.as_str(),
                serde_json::to_string(&recipients)?
            ],
        )?,
        audit::entry(&cx, "campaign.started")
            .target("campaign", id.as_str())
            .meta(json!({"template": body.template, "recipients": recipients.len()}))
            .stmt(&db)?,
    ])
    .await?;
    let chunks: Vec<Job> = (0..recipients.len())
        .step_by(CHUNK)
        .map(|offset| Job::CampaignChunk {
            campaign_id: id.clone(),
            offset: offset as u32,
        })
        .collect();
    queue::enqueue_all(&cx.env, &chunks).await?;
    let c = campaign(&db, &tenant_id, &id).await?;
    Reply::accepted(&c, format!("/api/v1/campaigns/{id}"))
}

/// The chunk job: recipients `offset..offset + CHUNK` of a campaign become contacts,
/// conversations and queued messages, and their sends are queued. Safe to run again: a
/// recipient's message is inserted once (by its index), and sends are queued for the chunk's
/// messages still `queued` (a send job finding its message claimed or sent does nothing).
pub async fn queue_chunk(env: &Env, campaign_id: &str, offset: u32) -> Result<()> {
    #[derive(Deserialize)]
    struct Row {
        tenant_id: String,
        template_name: String,
        language: String,
        recipients: String,
        created_by: Option<String>,
    }
    #[derive(Deserialize)]
    struct Id {
        id: String,
    }
    let db = Db::from_env(env)?;
    let Some(c) = db
        .one::<Row>(
            "SELECT tenant_id, template_name, language, recipients, created_by FROM campaigns WHERE id = ?1",
            &args![campaign_id],
        )
        .await?
    else {
        return Ok(());
    };
    let all: Vec<Stored> = serde_json::from_str(&c.recipients)?;
    let start = (offset as usize).min(all.len());
    let chunk = &all[start..(start + CHUNK).min(all.len())];
    let body = templates::find(&db, &c.tenant_id, &c.template_name, &c.language)
        .await?
        .map(|t| t.body_text().to_string())
        .unwrap_or_default();
    let now = clock::rfc3339(clock::now_ms());
    let mut statements = Vec::new();
    for (i, r) in chunk.iter().enumerate() {
        let contact = store::upsert_contact(&db, &c.tenant_id, &r.to, "", &now).await?;
        let (conversation_id, _) =
            store::active_conversation(&db, &c.tenant_id, &contact, &now).await?;
        let text = fill(&body, &r.parameters);
        let content =
            json!({"name": c.template_name, "language": c.language, "parameters": r.parameters});
        let id = ids::ordered_id("msg", clock::now_ms());
        statements.push(db.stmt(
            "INSERT OR IGNORE INTO messages (id, tenant_id, conversation_id, direction, type, text, \
             content, status, sent_by, campaign_id, campaign_index, created_at, updated_at) \
             VALUES (?1, ?2, ?3, 'outbound', 'template', ?4, ?5, 'queued', ?6, ?7, ?8, ?9, ?9)",
            &args![
                id.as_str(),
                c.tenant_id.as_str(),
                conversation_id.as_str(),
                text.as_str(),
                content.to_string(),
                c.created_by.clone(),
                campaign_id,
                (start + i) as i64,
                now.as_str()
            ],
        )?);
        statements.push(db.stmt(
            "UPDATE conversations SET last_message_at = ?2, last_message_preview = ?3, updated_at = ?2 \
             WHERE id = ?1 AND EXISTS (SELECT 1 FROM messages WHERE id = ?4)",
            &args![conversation_id.as_str(), now.as_str(), text.as_str(), id.as_str()],
        )?);
    }
    if !statements.is_empty() {
        db.batch(statements).await?;
    }
    let queued: Vec<Id> = db
        .all(
            "SELECT id FROM messages WHERE campaign_id = ?1 AND status = 'queued' \
             AND campaign_index >= ?2 AND campaign_index < ?3",
            &args![campaign_id, start as i64, (start + CHUNK) as i64],
        )
        .await?;
    let sends: Vec<Job> = queued
        .into_iter()
        .map(|m| Job::Send {
            message_id: m.id,
            slot_ms: None,
        })
        .collect();
    queue::enqueue_all(env, &sends).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: serde_json::Value) -> Vec<Recipient> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn personal_and_plain_recipients_are_checked_against_the_template() {
        let list = parse(json!([
            "+4915100000001",
            {"to": "4915100000002", "parameters": ["Bo", "B-7"]},
            "4915100000001"
        ]));
        let mut checks = Checks::new();
        let out = recipients(&list, &["Ann".into(), "A-1".into()], 2, &mut checks);
        assert!(checks.finish().is_ok());
        assert_eq!(
            out,
            [
                Stored {
                    to: "4915100000001".into(),
                    parameters: vec!["Ann".into(), "A-1".into()]
                },
                Stored {
                    to: "4915100000002".into(),
                    parameters: vec!["Bo".into(), "B-7".into()]
                },
            ]
        );
    }

    #[test]
    fn wrong_counts_and_numbers_name_their_entry() {
        let list = parse(
            json!([{"to": "4915100000002", "parameters": ["only"]}, {"to": "x1", "parameters": ["a", "b"]}]),
        );
        let mut checks = Checks::new();
        recipients(&list, &[], 2, &mut checks);
        let e = format!("{:?}", checks.finish().unwrap_err());
        assert!(e.contains("recipients[0].parameters"), "{e}");
        assert!(e.contains("recipients[1].to"), "{e}");
        // Personal recipients only: the shared parameters are not needed.
        let list = parse(json!([{"to": "4915100000002", "parameters": ["a", "b"]}]));
        let mut checks = Checks::new();
        recipients(&list, &[], 2, &mut checks);
        assert!(checks.finish().is_ok());
        // Plain numbers need the shared ones; 1,001 recipients are too many.
        let mut checks = Checks::new();
        recipients(&parse(json!(["4915100000001"])), &[], 2, &mut checks);
        assert!(format!("{:?}", checks.finish().unwrap_err()).contains("parameters"));
        let many: Vec<Recipient> = (0..1001)
            .map(|i| Recipient::Number(format!("49151{i:07}")))
            .collect();
        let mut checks = Checks::new();
        recipients(&many, &[], 0, &mut checks);
        assert!(checks.finish().is_err());
    }

    #[test]
    fn an_unknown_field_in_a_recipient_is_not_accepted() {
        assert!(
            serde_json::from_value::<Vec<Recipient>>(json!([{"to": "1", "params": []}])).is_err()
        );
    }
}

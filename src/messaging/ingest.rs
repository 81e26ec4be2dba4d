//! Meta's webhooks in: the subscription handshake, signed posts stored raw in D1 before
//! anything else and queued, and the consumer that turns them into contacts, conversations,
//! messages and status updates — idempotent by WhatsApp message id.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use worker::Env;

use super::attachments;
use super::channel::{self, Credential};
use super::delivery;
use super::live;
use super::store;
use super::webhook::{self, Inbound, StatusUpdate};
use crate::args;
use crate::audit;
use crate::handler;
use crate::http::context::Ctx;
use crate::http::reply::Reply;
use crate::http::router::{q, Access, QueryDoc, Route};
use crate::platform::crypto::constant_time_eq;
use crate::platform::db::Db;
use crate::platform::error::{AppError, Result};
use crate::platform::queue::{self, Job};
use crate::platform::{clock, ids};

const VERIFY_QUERY: [QueryDoc; 3] = [
    q("hub.mode", "string", "`subscribe`."),
    q("hub.verify_token", "string", "The channel's verify token."),
    q(
        "hub.challenge",
        "string",
        "Echoed back as text/plain when the token matches.",
    ),
];

pub fn routes() -> Vec<Route> {
    vec![
        Route::get(
            "/api/v1/webhooks/whatsapp/:tenant_id",
            Access::Public,
            handler!(verify),
        )
        .doc(
            "webhooks",
            "Meta's subscription handshake: echoes hub.challenge when hub.verify_token matches, else 403",
        )
        .raw(200, "text/plain")
        .query(&VERIFY_QUERY),
        Route::post(
            "/api/v1/webhooks/whatsapp/:tenant_id",
            Access::Public,
            handler!(receive),
        )
        .doc(
            "webhooks",
            "Meta's webhook post, signed with X-Hub-Signature-256; stored, queued, answered 200",
        )
        .body("WebhookPayload")
        .ok("WebhookReceipt"),
        Route::post(
            "/api/v1/admin/webhook-events/:id/replay",
            Access::PlatformAdmin,
            handler!(replay),
        )
        .doc("admin", "Process a stored webhook event again (idempotent)")
        .accepted("WebhookReceipt"),
    ]
}

/// Meta's post, as sent (`{"object": "whatsapp_business_account", "entry": [...]}`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct WebhookPayload {
    pub object: Option<String>,
    #[schema(value_type = Vec<Object>)]
    pub entry: Option<Vec<Value>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookReceipt {
    pub id: String,
    /// `received` (queued for processing), `invalid` (stored, not processable) or `rejected`
    /// (stored, not applied: it names a phone number id that is not the tenant's channel).
    pub status: String,
}

/// The channel's `credential` for a Meta call naming `tenant_id`: 404 for no such tenant.
async fn credential(cx: &Ctx, tenant_id: &str, credential: Credential) -> Result<Option<String>> {
    let channel = channel::of_live_tenant(&cx.db()?, tenant_id)
        .await?
        .ok_or(AppError::NotFound)?;
    match channel {
        Some(row) => row.open(&cx.config.encryption_key, tenant_id, credential),
        None => Ok(None),
    }
}

async fn verify(cx: Ctx) -> Result<Reply> {
    let tenant_id = cx.param("tenant_id");
    let forbidden = || AppError::Forbidden("forbidden", "Verification failed.".into());
    let expected = credential(&cx, tenant_id, Credential::VerifyToken)
        .await?
        .ok_or_else(forbidden)?;
    let given = cx.query("hub.verify_token").unwrap_or_default();
    if cx.query("hub.mode") != Some("subscribe")
        || !constant_time_eq(given.as_bytes(), expected.as_bytes())
    {
        return Err(forbidden());
    }
    let challenge = cx.query("hub.challenge").unwrap_or_default().to_string();
    Ok(Reply::text(200, challenge, "text/plain; charset=utf-8"))
}

/// Why a post is not for this tenant's channel, if it is not.
fn rejection(payload: &Value, channel: Option<&channel::Row>) -> Option<String> {
    let ours = channel.map_or("", |c| c.phone_number_id.as_str());
    let foreign = webhook::foreign_numbers(payload, ours);
    (!foreign.is_empty()).then(|| {
        format!(
            "phone_number_id {} is not this tenant's channel; nothing was applied",
            foreign.join(", ")
        )
    })
}

async fn receive(cx: Ctx) -> Result<Reply> {
    let tenant_id = cx.param("tenant_id").to_string();
    let db = cx.db()?;
    let channel = channel::of_live_tenant(&db, &tenant_id)
        .await?
        .ok_or(AppError::NotFound)?;
    let secret = match &channel {
        Some(row) => row.open(&cx.config.encryption_key, &tenant_id, Credential::AppSecret)?,
        None => None,
    };
    let signature = cx.header("X-Hub-Signature-256");
    let signed = secret
        .as_deref()
        .is_some_and(|s| webhook::signature_valid(s.as_bytes(), &cx.body, signature.as_deref()));
    if !signed {
        return Err(AppError::Unauthorized(
            "invalid_signature",
            "X-Hub-Signature-256 is missing or does not match the channel's app secret.".into(),
        ));
    }
    let text = String::from_utf8_lossy(&cx.body).into_owned();
    let (status, problem) = match serde_json::from_str::<Value>(&text) {
        Ok(v) => match webhook::parse(&v) {
            Err(e) => ("invalid", Some(e)),
            Ok(_) => match rejection(&v, channel.as_ref()) {
                Some(why) => ("rejected", Some(why)),
                None => ("received", None),
            },
        },
        Err(e) => ("invalid", Some(format!("not JSON: {e}"))),
    };
    let id = ids::new_id("whe");
    let now = cx.now();
    db.run(
        "INSERT INTO webhook_events (id, tenant_id, payload, status, error, received_at, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        &args![id.as_str(), tenant_id.as_str(), text, status, problem, now],
    )
    .await?;
    if status == "received" {
        queue::enqueue(
            &cx.env,
            &Job::Webhook {
                event_id: id.clone(),
            },
            0,
        )
        .await?;
    }
    Reply::ok(&WebhookReceipt {
        id,
        status: status.into(),
    })
}

async fn replay(cx: Ctx) -> Result<Reply> {
    let db = cx.db()?;
    #[derive(Deserialize)]
    struct Row {
        id: String,
        tenant_id: String,
        status: String,
    }
    let row: Row = db
        .one(
            "SELECT id, tenant_id, status FROM webhook_events WHERE id = ?1",
            &args![cx.param("id")],
        )
        .await?
        .ok_or(AppError::NotFound)?;
    if row.status == "invalid" || row.status == "rejected" {
        return Err(AppError::Conflict(
            "The event is not a processable webhook for this tenant; replaying it cannot help."
                .into(),
        ));
    }
    db.batch(vec![
        db.stmt(
            "UPDATE webhook_events SET status = 'received', error = NULL WHERE id = ?1",
            &args![row.id.as_str()],
        )?,
        audit::entry(&cx, "webhook_event.replayed")
            .tenant(row.tenant_id.as_str())
            .target("webhook_event", row.id.as_str())
            .stmt(&db)?,
    ])
    .await?;
    queue::enqueue(
        &cx.env,
        &Job::Webhook {
            event_id: row.id.clone(),
        },
        0,
    )
    .await?;
    Reply::accepted(
        &WebhookReceipt {
            id: row.id,
            status: "received".into(),
        },
        "/api/v1/admin/errors".into(),
    )
}

/// The queue consumer's work for one stored event. Errors propagate, so the runtime retries
/// and finally dead-letters the message; every step is safe to run again.
pub async fn process(env: &Env, event_id: &str) -> Result<()> {
    #[derive(Deserialize)]
    struct Row {
        tenant_id: String,
        payload: String,
        status: String,
    }
    let db = Db::from_env(env)?;
    let Some(ev) = db
        .one::<Row>(
            "SELECT tenant_id, payload, status FROM webhook_events WHERE id = ?1",
            &args![event_id],
        )
        .await?
    else {
        return Ok(());
    };
    if ev.status == "invalid" || ev.status == "rejected" {
        return Ok(());
    }
    let now = clock::rfc3339(clock::now_ms());
    let parsed = serde_json::from_str::<Value>(&ev.payload)
        .map_err(|e| e.to_string())
        .and_then(|v| webhook::parse(&v));
    // Checked again here: the channel may have changed since the post was stored.
    let foreign = match serde_json::from_str::<Value>(&ev.payload) {
        Ok(v) => rejection(&v, channel::find(&db, &ev.tenant_id).await?.as_ref()),
        Err(_) => None,
    };
    if let Some(why) = foreign {
        db.run(
            "UPDATE webhook_events SET status = 'rejected', error = ?2, processed_at = ?3 WHERE id = ?1",
            &args![event_id, why, now.as_str()],
        )
        .await?;
        return Ok(());
    }
    let parsed = match parsed {
        Ok(p) => p,
        Err(e) => {
            db.run(
                "UPDATE webhook_events SET status = 'invalid', error = ?2, processed_at = ?3 WHERE id = ?1",
                &args![event_id, e, now.as_str()],
            )
            .await?;
            return Ok(());
        }
    };
    let outcome = async {
        for m in &parsed.messages {
            apply_inbound(env, &db, &ev.tenant_id, m, &now).await?;
        }
        for s in &parsed.statuses {
            apply_status(env, &db, &ev.tenant_id, s, &now).await?;
        }
        Ok::<_, AppError>(())
    }
    .await;
    let (status, error) = match &outcome {
        Ok(()) => ("processed", None),
        Err(e) => ("failed", Some(e.to_string())),
    };
    db.run(
        "UPDATE webhook_events SET status = ?2, error = ?3, attempts = attempts + 1, \
         processed_at = ?4 WHERE id = ?1",
        &args![event_id, status, error, now.as_str()],
    )
    .await?;
    outcome
}

async fn apply_inbound(env: &Env, db: &Db, tenant_id: &str, m: &Inbound, now: &str) -> Result<()> {
    let contact_id = store::upsert_contact(db, tenant_id, &m.from, &m.name, now).await?;
    let (conversation_id, _) = store::active_conversation(db, tenant_id, &contact_id, now).await?;
    let id = ids::ordered_id("msg", clock::now_ms());
    let media = attachments::initial_status(&m.kind, &m.content);
    let changes = db
        .batch(vec![
            db.stmt(
                "INSERT OR IGNORE INTO messages (id, tenant_id, conversation_id, direction, wamid, type, \
                 text, content, status, wa_timestamp, created_at, updated_at, media_status) \
                 VALUES (?1, ?2, ?3, 'inbound', ?4, ?5, ?6, ?7, 'received', ?8, ?9, ?9, ?10)",
                &args![
                    id.as_str(),
                    tenant_id,
                    conversation_id.as_str(),
                    m.wamid.as_str(),
                    m.kind.as_str(),
                    m.text.as_str(),
                    m.content.to_string(),
                    m.timestamp.clone(),
                    now,
                    media
                ],
            )?,
            // Only when the insert above happened: a redelivery bumps nothing.
            db.stmt(
                "UPDATE conversations SET unread_count = unread_count + 1, last_message_at = ?3, \
                 last_message_preview = ?4, updated_at = ?3 \
                 WHERE id = ?1 AND EXISTS (SELECT 1 FROM messages WHERE id = ?2)",
                &args![conversation_id.as_str(), id.as_str(), now, m.text.as_str()],
            )?,
        ])
        .await?;
    // Any change means the insert happened (D1 counts the search index's trigger writes too).
    if changes[0] > 0 {
        let message = store::message(db, tenant_id, &id).await?;
        live::publish(env, &conversation_id, "message.created", &message).await;
    }
    if media.is_some() {
        // Also on a redelivery while still pending: the first enqueue may be what failed.
        // A fetch finding the attachment already stored does nothing.
        #[derive(Deserialize)]
        struct Pending {
            id: String,
        }
        if let Some(p) = db
            .one::<Pending>(
                "SELECT id FROM messages WHERE tenant_id = ?1 AND wamid = ?2 AND media_status = 'pending'",
                &args![tenant_id, m.wamid.as_str()],
            )
            .await?
        {
            queue::enqueue(env, &Job::InboundMedia { message_id: p.id }, 0).await?;
        }
    }
    Ok(())
}

async fn apply_status(
    env: &Env,
    db: &Db,
    tenant_id: &str,
    s: &StatusUpdate,
    now: &str,
) -> Result<()> {
    #[derive(Deserialize)]
    struct Hit {
        id: String,
        conversation_id: String,
    }
    let changed = delivery::reported(
        db,
        tenant_id,
        &s.wamid,
        s.status,
        s.error_code.clone(),
        s.error_title.clone(),
        now,
    )?
    .run(db)
    .await?;
    if changed {
        if let Some(hit) = db
            .one::<Hit>(
                "SELECT id, conversation_id FROM messages WHERE tenant_id = ?1 AND wamid = ?2",
                &args![tenant_id, s.wamid.as_str()],
            )
            .await?
        {
            let message = store::message(db, tenant_id, &hit.id).await?;
            live::publish(env, &hit.conversation_id, "message.status", &message).await;
        }
    }
    Ok(())
}

/// Used by the DLQ consumer: an event the runtime gave up on is marked failed.
pub async fn mark_failed(env: &Env, event_id: &str, error: &str) -> Result<()> {
    Db::from_env(env)?
        .run(
            "UPDATE webhook_events SET status = 'failed', error = ?2 WHERE id = ?1 AND status != 'processed'",
            &args![event_id, error],
        )
        .await?;
    Ok(())
}

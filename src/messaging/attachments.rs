//! Inbound attachments: an image, document, audio or video a contact sends arrives as a Graph
//! API media id. The jobs Worker looks it up (`GET {GRAPH_API_BASE}/{version}/{media-id}` →
//! `{url}`), downloads it (`GET url`, both with the channel's token), stores it as the tenant's
//! media (typed by its bytes, within the plan's limits) and links it from the message. The
//! attachment's state (`pending` → `stored` | `failed`) is owned here: a pure `next` and one
//! guarded `UPDATE messages` per transition. The message itself is stored before any of this
//! and never depends on it.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use worker::{Env, Headers, Method, Request, RequestInit};

use super::channel::{self, Credential};
use super::live;
use super::store;
use crate::args;
use crate::media::{self, Incoming, IncomingRefused};
use crate::platform::config::Config;
use crate::platform::db::{Arg, Db};
use crate::platform::egress::{backoff_secs, fetch_bytes, fetch_text};
use crate::platform::error::Result;
use crate::platform::plan::Plan;
use crate::platform::queue::{self, Job, Outcome};
use crate::platform::state::{sql_list, Guarded};

/// Message types whose media is fetched.
pub const MEDIA_KINDS: [&str; 4] = ["image", "document", "audio", "video"];

/// Fetch attempts before the attachment is failed.
pub const MAX_FETCH_ATTEMPTS: i64 = 3;

const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// The Graph API media id of an inbound message that carries a file, if any.
pub fn media_ref(kind: &str, content: &Value) -> Option<String> {
    MEDIA_KINDS
        .contains(&kind)
        .then(|| content["id"].as_str())
        .flatten()
        .filter(|id| !id.is_empty() && id.len() <= 128)
        .map(str::to_string)
}

/// The name the stored file gets: the document's own, else `{type}-{media id}`.
pub fn filename(kind: &str, content: &Value, media_id: &str) -> String {
    content["filename"]
        .as_str()
        .filter(|f| !f.trim().is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| format!("{kind}-{media_id}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachmentStatus {
    Pending,
    Stored,
    Failed,
}

use AttachmentStatus::{Failed, Pending, Stored};

impl AttachmentStatus {
    pub const ALL: [AttachmentStatus; 3] = [Pending, Stored, Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Pending => "pending",
            Stored => "stored",
            Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<AttachmentStatus> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The file is in the tenant's media.
    Stored,
    /// A transient failure with attempts left.
    Retrying,
    /// A lasting failure, the attempts ran out, or the queue gave up.
    Failed,
}

impl Event {
    fn to(self) -> AttachmentStatus {
        match self {
            Event::Stored => Stored,
            Event::Retrying => Pending,
            Event::Failed => Failed,
        }
    }

    fn leaves(self) -> Vec<AttachmentStatus> {
        AttachmentStatus::ALL
            .into_iter()
            .filter(|s| next(*s, self).is_some())
            .collect()
    }
}

/// Only a pending attachment moves; stored and failed are final.
pub fn next(from: AttachmentStatus, event: Event) -> Option<AttachmentStatus> {
    (from == Pending).then(|| event.to())
}

fn update(db: &Db, event: Event, sets: &str, args: &[Arg]) -> Result<Guarded> {
    let sql = format!(
        "UPDATE messages SET media_status = '{}', {sets} WHERE id = ?1 AND media_status IN ({})",
        event.to().as_str(),
        sql_list(&event.leaves(), AttachmentStatus::as_str)
    );
    Ok(Guarded(db.stmt(&sql, args)?))
}

pub fn stored(db: &Db, message_id: &str, media_id: &str, attempts: i64) -> Result<Guarded> {
    update(
        db,
        Event::Stored,
        "media_id = ?2, media_attempts = ?3, media_error = NULL",
        &args![message_id, media_id, attempts],
    )
}

pub fn retrying(db: &Db, message_id: &str, attempts: i64, error: &str) -> Result<Guarded> {
    update(
        db,
        Event::Retrying,
        "media_attempts = ?2, media_error = ?3",
        &args![message_id, attempts, error],
    )
}

pub fn failed(db: &Db, message_id: &str, attempts: i64, error: &str) -> Result<Guarded> {
    update(
        db,
        Event::Failed,
        "media_attempts = ?2, media_error = ?3",
        &args![message_id, attempts, error],
    )
}

/// Why a fetch did not end with a stored file.
enum Trouble {
    /// Worth another attempt (network, 5xx, 429, storage trouble).
    Transient(String),
    /// Retrying cannot help (no channel, 4xx, too large, over quota).
    Lasting(String),
}

#[derive(Deserialize)]
struct Row {
    tenant_id: String,
    conversation_id: String,
    #[serde(rename = "type")]
    kind: String,
    content: String,
    media_status: Option<String>,
    media_attempts: i64,
}

/// The jobs Worker's work for one `InboundMedia` job.
pub async fn fetch(env: &Env, cfg: &Config, message_id: &str) -> Result<Outcome> {
    let db = Db::from_env(env)?;
    let Some(m) = db
        .one::<Row>(
            "SELECT tenant_id, conversation_id, type, content, media_status, media_attempts \
             FROM messages WHERE id = ?1",
            &args![message_id],
        )
        .await?
    else {
        return Ok(Outcome::Ack);
    };
    if m.media_status.as_deref().and_then(AttachmentStatus::parse) != Some(Pending) {
        return Ok(Outcome::Ack);
    }
    let content: Value = serde_json::from_str(&m.content).unwrap_or(Value::Null);
    let attempt = m.media_attempts + 1;
    let outcome = match media_ref(&m.kind, &content) {
        None => Err(Trouble::Lasting("the message names no media id".into())),
        Some(wa_media) => {
            store_one(env, &db, cfg, &m, message_id, &content, &wa_media, attempt).await
        }
    };
    let moved = match outcome {
        Ok(()) => return Ok(Outcome::Ack),
        Err(Trouble::Transient(e)) if attempt < MAX_FETCH_ATTEMPTS => {
            retrying(&db, message_id, attempt, &e)?.run(&db).await?;
            // If this enqueue fails, the error has the queue redeliver this job, which finds the
            // attachment still pending and tries again.
            let job = Job::InboundMedia {
                message_id: message_id.to_string(),
            };
            queue::enqueue(env, &job, backoff_secs(attempt)).await?;
            return Ok(Outcome::Ack);
        }
        Err(Trouble::Transient(e) | Trouble::Lasting(e)) => failed(&db, message_id, attempt, &e)?,
    };
    if moved.run(&db).await? {
        announce(env, &db, &m, message_id).await?;
    }
    Ok(Outcome::Ack)
}

#[allow(clippy::too_many_arguments)]
async fn store_one(
    env: &Env,
    db: &Db,
    cfg: &Config,
    m: &Row,
    message_id: &str,
    content: &Value,
    wa_media: &str,
    attempt: i64,
) -> std::result::Result<(), Trouble> {
    let transient = |e: crate::platform::error::AppError| Trouble::Transient(e.to_string());
    let channel = channel::find(db, &m.tenant_id).await.map_err(transient)?;
    let token = match &channel {
        Some(c) => c
            .open(&cfg.encryption_key, &m.tenant_id, Credential::AccessToken)
            .map_err(transient)?,
        None => None,
    };
    let Some(token) = token else {
        return Err(Trouble::Lasting(
            "The WhatsApp channel is not connected.".into(),
        ));
    };
    let request = |url: &str| -> std::result::Result<Request, Trouble> {
        let headers = Headers::new();
        headers
            .set("Authorization", &format!("Bearer {token}"))
            .map_err(|e| Trouble::Transient(e.to_string()))?;
        let mut init = RequestInit::new();
        init.with_method(Method::Get).with_headers(headers);
        Request::new_with_init(url, &init).map_err(|e| Trouble::Lasting(e.to_string()))
    };
    let status_trouble = |what: &str, status: u16| {
        let e = format!("{what} answered {status}");
        if status == 429 || status >= 500 {
            Trouble::Transient(e)
        } else {
            Trouble::Lasting(e)
        }
    };
    // 1. The media id's URL and type.
    let lookup = format!(
        "{}/{}/{wa_media}",
        cfg.graph_api_base, cfg.graph_api_version
    );
    let (status, text) = fetch_text(&cfg.egress, request(&lookup)?, FETCH_TIMEOUT)
        .await
        .map_err(Trouble::Transient)?;
    if !(200..300).contains(&status) {
        return Err(status_trouble("the Graph API media look-up", status));
    }
    let info: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let Some(url) = info["url"].as_str() else {
        return Err(Trouble::Lasting(
            "the Graph API media look-up gave no url".into(),
        ));
    };
    // 2. The bytes, no more than the plan's file size limit.
    let plan = tenant_plan(db, &m.tenant_id).await.map_err(transient)?;
    let max = cfg.plans.limits(plan).max_file_bytes;
    let (status, header_type, data) = fetch_bytes(&cfg.egress, request(url)?, FETCH_TIMEOUT, max)
        .await
        .map_err(|e| {
            if e.contains("larger than") {
                Trouble::Lasting(e)
            } else {
                Trouble::Transient(e)
            }
        })?;
    if !(200..300).contains(&status) {
        return Err(status_trouble("the media download", status));
    }
    // 3. Into the tenant's media, linked from the message in the same batch.
    let declared = info["mime_type"]
        .as_str()
        .map(str::to_string)
        .unwrap_or(header_type);
    let name = filename(&m.kind, content, wa_media);
    let file = Incoming {
        tenant_id: &m.tenant_id,
        filename: &name,
        declared: &declared,
        data,
        attributes: json!({"source": "whatsapp", "message_id": message_id, "whatsapp_media_id": wa_media}),
    };
    let stored_id = media::store_incoming(env, db, cfg, file, |media_id| {
        Ok(stored(db, message_id, media_id, attempt)?.0)
    })
    .await
    .map_err(|e| match e {
        IncomingRefused::Kept(why) => Trouble::Lasting(why),
        IncomingRefused::Failed(e) => Trouble::Transient(e.to_string()),
    })?;
    if stored_id.is_some() {
        announce(env, db, m, message_id).await.map_err(transient)?;
    }
    Ok(())
}

async fn tenant_plan(db: &Db, tenant_id: &str) -> Result<Plan> {
    #[derive(Deserialize)]
    struct P {
        plan: String,
    }
    Ok(db
        .one::<P>("SELECT plan FROM tenants WHERE id = ?1", &args![tenant_id])
        .await?
        .and_then(|p| Plan::parse(&p.plan))
        .unwrap_or_default())
}

/// Tells the conversation's live feed that the message's attachment moved.
async fn announce(env: &Env, db: &Db, m: &Row, message_id: &str) -> Result<()> {
    let message = store::message(db, &m.tenant_id, message_id).await?;
    live::publish(env, &m.conversation_id, "message.updated", &message).await;
    Ok(())
}

/// Used by the DLQ consumer: an attachment the runtime gave up on is failed (the message stays).
pub async fn mark_failed(env: &Env, message_id: &str, error: &str) -> Result<()> {
    #[derive(Deserialize)]
    struct A {
        media_attempts: i64,
    }
    let db = Db::from_env(env)?;
    let attempts = db
        .one::<A>(
            "SELECT media_attempts FROM messages WHERE id = ?1",
            &args![message_id],
        )
        .await?
        .map_or(0, |a| a.media_attempts);
    failed(&db, message_id, attempts, error)?.run(&db).await?;
    Ok(())
}

/// The column value a new inbound message starts with.
pub fn initial_status(kind: &str, content: &Value) -> Option<&'static str> {
    media_ref(kind, content).map(|_| Pending.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_pending_attachment_moves() {
        for e in [Event::Stored, Event::Retrying, Event::Failed] {
            assert_eq!(next(Pending, e), Some(e.to()));
            assert_eq!(next(Stored, e), None);
            assert_eq!(next(Failed, e), None);
            assert_eq!(e.leaves(), [Pending]);
        }
    }

    #[test]
    fn media_messages_name_their_file() {
        let doc = json!({"id": "M1", "filename": "invoice.pdf", "mime_type": "application/pdf"});
        assert_eq!(media_ref("document", &doc).as_deref(), Some("M1"));
        assert_eq!(filename("document", &doc, "M1"), "invoice.pdf");
        assert_eq!(
            filename("audio", &json!({"id": "A9", "voice": true}), "A9"),
            "audio-A9"
        );
        assert_eq!(media_ref("sticker", &json!({"id": "S1"})), None);
        assert_eq!(media_ref("image", &json!({"caption": "no id"})), None);
        assert_eq!(
            initial_status("video", &json!({"id": "V1"})),
            Some("pending")
        );
        assert_eq!(initial_status("text", &json!({"body": "hi"})), None);
    }
}

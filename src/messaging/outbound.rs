//! Outbound messages: `POST /messages` queues a send; the consumer paces it through the
//! number's token bucket (a Durable Object), calls the Graph API with the tenant's token,
//! stores the wamid (`sent`), and retries transient errors with backoff before marking the
//! message `failed` with Meta's error code and title (the moves are `delivery`'s).

use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use worker::{Env, Headers, Method, Request, RequestInit};

use super::channel::{self, Credential};
use super::delivery::{self, Event, MessageStatus};
use super::live;
use super::model::wa_id;
use super::store;
use super::templates::{self, TemplateRef};
use crate::args;
use crate::audit;
use crate::handler;
use crate::http::context::Ctx;
use crate::http::reply::Reply;
use crate::http::router::{Access, Route};
use crate::platform::config::Config;
use crate::platform::db::Db;
use crate::platform::egress::{backoff_secs, fetch_text};
use crate::platform::error::{AppError, Result};
use crate::platform::queue::{self, Job, Outcome};
use crate::platform::ratelimit::{self, TakeRequest};
use crate::platform::ratelimit::{pace, Pace};
use crate::platform::state::Guarded;
use crate::platform::{clock, ids};

/// Send attempts before a message is failed.
pub const MAX_SEND_ATTEMPTS: i64 = 3;

pub fn routes() -> Vec<Route> {
    vec![
        Route::post("/api/v1/messages", Access::Agent, handler!(create))
            .doc(
                "messages",
                "Queue a WhatsApp message (text, template or image) to a conversation or a number",
            )
            .body("SendMessage")
            .accepted("Message")
            .idempotent(),
        Route::post(
            "/api/v1/admin/messages/:id/requeue",
            Access::PlatformAdmin,
            handler!(requeue),
        )
        .doc(
            "admin",
            "Queue an outbound message's send job again (safe: a claimed, sent or failed message is never sent again)",
        )
        .accepted("Message"),
    ]
}

/// For an operator whose send job was lost: queues it again. The send's claim makes this safe
/// at any moment; only a message still `queued` is sent, once.
async fn requeue(cx: Ctx) -> Result<Reply> {
    #[derive(Deserialize)]
    struct Row {
        tenant_id: String,
        direction: String,
    }
    let db = cx.db()?;
    let id = cx.param("id").to_string();
    let row: Row = db
        .one(
            "SELECT tenant_id, direction FROM messages WHERE id = ?1",
            &args![id.as_str()],
        )
        .await?
        .ok_or(AppError::NotFound)?;
    if row.direction != "outbound" {
        return Err(AppError::Conflict(
            "Only outbound messages are sent.".into(),
        ));
    }
    let job = Job::Send {
        message_id: id.clone(),
        slot_ms: None,
    };
    queue::enqueue(&cx.env, &job, 0).await?;
    audit::entry(&cx, "message.requeued")
        .tenant(row.tenant_id.as_str())
        .target("message", id.as_str())
        .write(&db)
        .await?;
    let message = store::message(&db, &row.tenant_id, &id).await?;
    Reply::accepted(&message, format!("/api/v1/messages/{id}"))
}

/// `POST /messages`: `conversation_id` or `to`, and the content for `type`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    pub conversation_id: Option<String>,
    /// A phone number in international format, for a new or existing contact.
    pub to: Option<String>,
    /// `text`, `template` or `image`.
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
    pub template: Option<TemplateRef>,
    /// A WhatsApp media id (uploaded to Meta) for `image`.
    pub media_id: Option<String>,
    pub caption: Option<String>,
}

/// What is sent, validated: `(type, preview text, content)`.
pub struct Outgoing {
    pub kind: &'static str,
    pub text: String,
    pub content: Value,
}

/// The Graph API request body for a message.
pub fn graph_body(to: &str, kind: &str, content: &Value) -> Value {
    let mut body = json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": kind});
    match kind {
        "text" => body["text"] = json!({"preview_url": false, "body": content["body"]}),
        "template" => {
            let params: Vec<Value> = content["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| json!({"type": "text", "text": p}))
                .collect();
            let mut template =
                json!({"name": content["name"], "language": {"code": content["language"]}});
            if !params.is_empty() {
                template["components"] = json!([{"type": "body", "parameters": params}]);
            }
            body["template"] = template;
        }
        _ => {
            let mut image = json!({"id": content["id"]});
            if let Some(c) = content["caption"].as_str() {
                image["caption"] = json!(c);
            }
            body["image"] = image;
        }
    }
    body
}

/// Meta's error answer: `(code, title, worth retrying)`.
pub fn graph_error(status: u16, text: &str) -> (String, String, bool) {
    let v: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let e = &v["error"];
    let code = match &e["code"] {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => status.to_string(),
    };
    let title = e["error_data"]["details"]
        .as_str()
        .or(e["message"].as_str())
        .map(str::to_string)
        .unwrap_or_else(|| format!("Graph API answered {status}"));
    // 429, 5xx and Meta's throttling codes are transient; other 4xx will not get better.
    let retry = status == 429
        || status >= 500
        || matches!(
            code.as_str(),
            "4" | "80007" | "130429" | "131048" | "131056"
        );
    (code, title.chars().take(300).collect(), retry)
}

async fn outgoing(db: &Db, tenant_id: &str, body: &SendMessage) -> Result<Outgoing> {
    let text_ok = |t: &str| !t.trim().is_empty() && t.chars().count() <= 4096;
    match body.kind.as_str() {
        "text" => {
            let text = body.text.clone().unwrap_or_default();
            if !text_ok(&text) {
                return Err(AppError::field("text", "must be 1–4096 characters"));
            }
            Ok(Outgoing {
                kind: "text",
                content: json!({ "body": text }),
                text,
            })
        }
        "template" => {
            let t = body
                .template
                .as_ref()
                .ok_or_else(|| AppError::field("template", "is required for type `template`"))?;
            let preview = templates::render(db, tenant_id, t).await?;
            Ok(Outgoing {
                kind: "template",
                content: json!({"name": t.name, "language": t.language, "parameters": t.parameters}),
                text: preview,
            })
        }
        "image" => {
            let media = body.media_id.clone().unwrap_or_default();
            if media.trim().is_empty() || media.len() > 128 {
                return Err(AppError::field("media_id", "is required for type `image`"));
            }
            if let Some(c) = &body.caption {
                if c.chars().count() > 1024 {
                    return Err(AppError::field(
                        "caption",
                        "must be at most 1024 characters",
                    ));
                }
            }
            Ok(Outgoing {
                kind: "image",
                text: body.caption.clone().unwrap_or_else(|| "[image]".into()),
                content: json!({"id": media, "caption": body.caption}),
            })
        }
        _ => Err(AppError::field(
            "type",
            "must be one of text, template, image",
        )),
    }
}

/// An outbound message about to be queued.
pub struct Queued<'a> {
    pub tenant_id: &'a str,
    pub conversation_id: &'a str,
    pub out: &'a Outgoing,
    pub sent_by: Option<&'a str>,
    pub campaign_id: Option<&'a str>,
    pub now: &'a str,
}

/// Inserts a queued outbound message (and its job) and returns its id.
pub async fn queue_message(env: &Env, db: &Db, q: &Queued<'_>) -> Result<String> {
    let Queued {
        tenant_id,
        conversation_id,
        out,
        sent_by,
        campaign_id,
        now,
    } = *q;
    let id = ids::ordered_id("msg", clock::now_ms());
    db.batch(vec![
        db.stmt(
            "INSERT INTO messages (id, tenant_id, conversation_id, direction, type, text, content, \
             status, sent_by, campaign_id, created_at, updated_at) \
             VALUES (?1, ?2, ?3, 'outbound', ?4, ?5, ?6, 'queued', ?7, ?8, ?9, ?9)",
            &args![
                id.as_str(),
                tenant_id,
                conversation_id,
                out.kind,
                out.text.as_str(),
                out.content.to_string(),
                sent_by.map(str::to_string),
                campaign_id.map(str::to_string),
                now
            ],
        )?,
        db.stmt(
            "UPDATE conversations SET last_message_at = ?2, last_message_preview = ?3, updated_at = ?2 WHERE id = ?1",
            &args![conversation_id, now, out.text.as_str()],
        )?,
    ])
    .await?;
    queue::enqueue(
        env,
        &Job::Send {
            message_id: id.clone(),
            slot_ms: None,
        },
        0,
    )
    .await?;
    Ok(id)
}

async fn create(cx: Ctx) -> Result<Reply> {
    let body: SendMessage = cx.json()?;
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?.to_string();
    let out = outgoing(&db, &tenant_id, &body).await?;
    let channel = channel::find(&db, &tenant_id).await?;
    if !channel
        .as_ref()
        .is_some_and(|c| c.has(Credential::AccessToken))
    {
        return Err(AppError::Conflict(
            "Connect WhatsApp first: PUT /api/v1/channels/whatsapp with an access token.".into(),
        ));
    }
    let now = cx.now();
    let conversation_id = match (&body.conversation_id, &body.to) {
        (Some(id), None) => store::conversation(&db, &tenant_id, id).await?.id,
        (None, Some(to)) => {
            let to = wa_id(to).map_err(|m| AppError::field("to", m))?;
            let contact = store::upsert_contact(&db, &tenant_id, &to, "", &now).await?;
            store::active_conversation(&db, &tenant_id, &contact, &now)
                .await?
                .0
        }
        _ => {
            return Err(AppError::field(
                "conversation_id",
                "give exactly one of conversation_id or to",
            ))
        }
    };
    let user = cx.principal()?.user_id.clone();
    let id = queue_message(
        &cx.env,
        &db,
        &Queued {
            tenant_id: &tenant_id,
            conversation_id: &conversation_id,
            out: &out,
            sent_by: user.as_deref(),
            campaign_id: None,
            now: &now,
        },
    )
    .await?;
    audit::entry(&cx, "message.queued")
        .target("message", id.as_str())
        .meta(json!({"conversation_id": conversation_id, "type": out.kind}))
        .write(&db)
        .await?;
    let message = store::message(&db, &tenant_id, &id).await?;
    live::publish(&cx.env, &conversation_id, "message.created", &message).await;
    Reply::accepted(&message, format!("/api/v1/messages/{id}"))
}

#[derive(Deserialize)]
struct SendRow {
    tenant_id: String,
    conversation_id: String,
    status: MessageStatus,
    #[serde(rename = "type")]
    kind: String,
    content: String,
    attempts: i64,
    wa_id: String,
}

/// The Graph API call's deadline (the claim's lease is longer: `delivery::SEND_LEASE_MS`).
const SEND_TIMEOUT: Duration = Duration::from_secs(20);

/// The queue consumer's work for one outbound message. `delivery_id` is the queue message's
/// id; with a nonce per invocation it names the claim's holder. Waiting for the send rate and
/// retrying a transient failure both re-schedule a new queue message with a delay and ack this
/// one, so the queue's own retries (and its dead-letter limit) are left for infrastructure
/// errors; the real send failures are counted in the message's `attempts`.
pub async fn send(
    env: &Env,
    cfg: &Config,
    delivery_id: &str,
    message_id: &str,
    slot_ms: Option<i64>,
) -> Result<Outcome> {
    let db = Db::from_env(env)?;
    let Some(m) = db
        .one::<SendRow>(
            "SELECT m.tenant_id, m.conversation_id, m.status, m.type, m.content, m.attempts, c.wa_id \
             FROM messages m JOIN conversations v ON v.id = m.conversation_id \
             JOIN contacts c ON c.id = v.contact_id WHERE m.id = ?1",
            &args![message_id],
        )
        .await?
    else {
        return Ok(Outcome::Ack);
    };
    if delivery::next(m.status, Event::Claimed).is_err() {
        // Already sent or failed, or claimed by another delivery (in flight, or crashed mid-call:
        // the sweep resolves that one). Never sent twice.
        return Ok(Outcome::Ack);
    }
    let channel = channel::find(&db, &m.tenant_id).await?;
    let token = match &channel {
        Some(c) => c.open(&cfg.encryption_key, &m.tenant_id, Credential::AccessToken)?,
        None => None,
    };
    let (Some(channel), Some(token)) = (channel, token) else {
        let failed = delivery::send_failed(
            &db,
            message_id,
            None,
            m.attempts,
            "channel",
            "The WhatsApp channel is not connected.",
            &clock::rfc3339(clock::now_ms()),
        )?;
        finish(env, &db, &m, message_id, failed).await?;
        return Ok(Outcome::Ack);
    };
    let take = match slot_ms {
        Some(_) => None,
        None => ratelimit::take_tokens(
            env,
            &format!("send:{}", channel.phone_number_id),
            TakeRequest {
                rate_per_sec: cfg.send_rate_per_sec,
                burst: cfg.send_rate_per_sec.max(1.0),
                cost: 1.0,
                reserve: true,
            },
        )
        .await
        .map_err(|e| worker::console_error!("send pacing unavailable, sending anyway: {e}"))
        .ok(),
    };
    if let Pace::Wait {
        delay_secs,
        slot_ms,
    } = pace(clock::now_ms(), slot_ms, take)
    {
        // The slot is booked: come back for it without spending an attempt.
        let job = Job::Send {
            message_id: message_id.to_string(),
            slot_ms: Some(slot_ms),
        };
        queue::enqueue(env, &job, delay_secs).await?;
        return Ok(Outcome::Ack);
    }
    let holder = format!("{delivery_id}:{}", ids::new_id("snd"));
    let now_ms = clock::now_ms();
    let claimed = delivery::claim(
        &db,
        message_id,
        &holder,
        now_ms + delivery::SEND_LEASE_MS,
        &clock::rfc3339(now_ms),
    )?
    .run(&db)
    .await?;
    if !claimed {
        return Ok(Outcome::Ack);
    }
    let content: Value = serde_json::from_str(&m.content).unwrap_or(Value::Null);
    let body = graph_body(&m.wa_id, &m.kind, &content).to_string();
    let url = format!(
        "{}/{}/{}/messages",
        cfg.graph_api_base, cfg.graph_api_version, channel.phone_number_id
    );
    let headers = Headers::new();
    headers.set("Authorization", &format!("Bearer {token}"))?;
    headers.set("Content-Type", "application/json")?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(body.into()));
    let attempt = m.attempts + 1;
    let answer = fetch_text(
        &cfg.egress,
        Request::new_with_init(&url, &init)?,
        SEND_TIMEOUT,
    )
    .await;
    let now = clock::rfc3339(clock::now_ms());
    let (status, text) = match answer {
        Ok(r) => r,
        Err(e) => {
            // No answer: Meta may or may not have the message. It stays claimed; when the lease
            // runs out the sweep fails it with that reason (sending again could send it twice).
            worker::console_error!(
                "{}",
                json!({"level": "warn", "event": "send.unconfirmed", "message_id": message_id, "error": e})
            );
            return Ok(Outcome::Ack);
        }
    };
    if (200..300).contains(&status) {
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let wamid = v["messages"][0]["id"].as_str().map(str::to_string);
        let sent = delivery::accepted(&db, message_id, &holder, wamid, attempt, &now)?;
        finish(env, &db, &m, message_id, sent).await?;
        return Ok(Outcome::Ack);
    }
    let (code, title, transient) = graph_error(status, &text);
    if transient && attempt < MAX_SEND_ATTEMPTS {
        delivery::send_retrying(&db, message_id, &holder, attempt, &code, &title, &now)?
            .run(&db)
            .await?;
        // If this enqueue fails, the error makes the queue redeliver this message, which finds
        // the send queued again and carries on.
        let job = Job::Send {
            message_id: message_id.to_string(),
            slot_ms: None,
        };
        queue::enqueue(env, &job, backoff_secs(attempt)).await?;
        return Ok(Outcome::Ack);
    }
    let failed =
        delivery::send_failed(&db, message_id, Some(&holder), attempt, &code, &title, &now)?;
    finish(env, &db, &m, message_id, failed).await?;
    Ok(Outcome::Ack)
}

/// The sweep: sends whose claim ran out without an outcome are failed (not sent again).
pub async fn resolve_abandoned(db: &Db, now_ms: i64) -> Result<u64> {
    let g = delivery::abandoned(db, now_ms, &clock::rfc3339(now_ms))?;
    db.run_stmt(g.0).await
}

/// Runs a send's final move and tells the conversation's live feed.
async fn finish(
    env: &Env,
    db: &Db,
    m: &SendRow,
    message_id: &str,
    transition: Guarded,
) -> Result<()> {
    transition.run(db).await?;
    let message = store::message(db, &m.tenant_id, message_id).await?;
    live::publish(env, &m.conversation_id, "message.status", &message).await;
    Ok(())
}

/// Used by the DLQ consumer: a send the runtime gave up on is failed, not left queued.
pub async fn mark_failed(env: &Env, message_id: &str, error: &str) -> Result<()> {
    let db = Db::from_env(env)?;
    let now = clock::rfc3339(clock::now_ms());
    delivery::dead_letter(&db, message_id, error, &now)?
        .run(&db)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_bodies_follow_the_cloud_api() {
        assert_eq!(
            graph_body("491511", "text", &json!({"body": "Hi"})),
            json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": "491511",
                   "type": "text", "text": {"preview_url": false, "body": "Hi"}})
        );
        let t = graph_body(
            "1",
            "template",
            &json!({"name": "order_update", "language": "en_US", "parameters": ["Ann", "42"]}),
        );
        assert_eq!(t["template"]["language"]["code"], "en_US");
        assert_eq!(
            t["template"]["components"][0]["parameters"][1],
            json!({"type": "text", "text": "42"})
        );
        let i = graph_body("1", "image", &json!({"id": "MEDIA1", "caption": null}));
        assert_eq!(i["image"], json!({"id": "MEDIA1"}));
    }

    #[test]
    fn a_send_waits_for_its_booked_slot_and_goes_when_it_comes() {
        let take = |allowed, wait_ms| {
            Some(ratelimit::Take {
                allowed,
                wait_ms,
                reserved: !allowed,
            })
        };
        assert_eq!(pace(1_000, None, take(true, 0)), Pace::Go);
        assert_eq!(pace(1_000, None, None), Pace::Go, "limiter down: fail open");
        assert_eq!(
            pace(1_000, None, take(false, 2_500)),
            Pace::Wait {
                delay_secs: 3,
                slot_ms: 3_500
            }
        );
        assert_eq!(
            pace(1_000, None, take(false, 100)),
            Pace::Go,
            "a slot about to come"
        );
        // Redelivered for its slot: no second booking, and an early delivery waits again.
        assert_eq!(pace(3_400, Some(3_500), None), Pace::Go);
        assert_eq!(
            pace(2_000, Some(3_500), None),
            Pace::Wait {
                delay_secs: 2,
                slot_ms: 3_500
            }
        );
    }

    #[test]
    fn meta_errors_keep_code_and_title_and_only_transient_ones_retry() {
        let body = r#"{"error":{"message":"(#131030) Recipient phone number not in allowed list","type":"OAuthException","code":131030,"error_data":{"details":"Recipient phone number not in allowed list"}}}"#;
        assert_eq!(
            graph_error(400, body),
            (
                "131030".into(),
                "Recipient phone number not in allowed list".into(),
                false
            )
        );
        assert!(
            graph_error(
                429,
                r#"{"error":{"code":130429,"message":"Rate limit hit"}}"#
            )
            .2
        );
        assert!(graph_error(503, "oops").2);
        assert_eq!(graph_error(503, "oops").0, "503");
    }
}

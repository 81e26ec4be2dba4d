//! Event callbacks to the tenant's callback URL (`PUT /settings {callback_url}`): every event
//! type (an execution's end, a batch's end) is `{id, type, created_at, data}`, POSTed through
//! the egress policy and signed like Stripe's:
//! `X-Tenantry-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`.
//! Deliveries are `Job::Callback` queue messages (staged in the outbox with the commit that
//! decided them), retried with backoff and dead-lettered after `CALLBACK_ATTEMPTS`, the same
//! for every event type.

use std::time::Duration;

use serde_json::{json, Value};
use worker::{Headers, Method, Request, RequestInit};

use crate::platform::clock;
use crate::platform::config::Config;
use crate::platform::crypto::{hmac_sha256, sha256_hex};
use crate::platform::db::Db;
use crate::platform::egress::fetch_text;

const TIMEOUT: Duration = Duration::from_secs(10);

pub fn signature(secret: &[u8], unix_secs: i64, body: &str) -> String {
    let mac = hmac_sha256(secret, format!("{unix_secs}.{body}").as_bytes());
    format!("t={unix_secs},v1={}", hex::encode(mac))
}

/// The event's id: the same for every delivery of one subject's event, so receivers can drop
/// duplicates by `id`.
pub fn event_id(subject_id: &str, event: &str) -> String {
    format!(
        "evt_{}",
        &sha256_hex(format!("{subject_id}:{event}").as_bytes())[..24]
    )
}

/// One event about `subject_id`, as delivered.
pub struct Event<'a> {
    pub tenant_id: &'a str,
    pub subject_id: &'a str,
    pub event: &'a str,
    /// When it happened (the same on every retry).
    pub created_at: String,
    pub data: Value,
}

/// Delivers one event; `Err` (with why) when the receiver did not take it and it should be
/// tried again. No callback URL configured is success: there is nothing to deliver.
pub async fn post(cfg: &Config, db: &Db, e: Event<'_>) -> Result<(), String> {
    let Some(target) = super::callback_target(db, cfg, e.tenant_id)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(());
    };
    let now_ms = clock::now_ms();
    let body = json!({
        "id": event_id(e.subject_id, e.event),
        "type": e.event,
        "created_at": e.created_at,
        "data": e.data
    })
    .to_string();
    let headers = Headers::new();
    let set = |k: &str, v: &str| headers.set(k, v).map_err(|e| e.to_string());
    set("Content-Type", "application/json")?;
    set("User-Agent", "Tenantry-Webhooks/1")?;
    if let Some(secret) = &target.secret {
        set(
            "X-Tenantry-Signature",
            &signature(secret.as_bytes(), now_ms / 1000, &body),
        )?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(body.into()));
    let request = Request::new_with_init(&target.url, &init).map_err(|e| e.to_string())?;
    let (status, _) = fetch_text(&cfg.egress, request, TIMEOUT).await?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("the callback URL answered {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_time_and_body() {
        let s = signature(b"whsec_test", 1_700_000_000, r#"{"a":1}"#);
        let expected = hex::encode(hmac_sha256(b"whsec_test", br#"1700000000.{"a":1}"#));
        assert_eq!(s, format!("t=1700000000,v1={expected}"));
        assert_ne!(s, signature(b"whsec_test", 1_700_000_001, r#"{"a":1}"#));
    }

    #[test]
    fn event_ids_are_stable_per_subject_and_type() {
        assert_eq!(
            event_id("exe_1", "execution.completed"),
            event_id("exe_1", "execution.completed")
        );
        assert_ne!(
            event_id("exe_1", "execution.completed"),
            event_id("exe_1", "execution.failed")
        );
        assert_eq!(event_id("exe_1", "execution.failed").len(), 28);
    }
}

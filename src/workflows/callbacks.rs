//! Execution end events (`{id, type, created_at, data}`), POSTed to the tenant's callback URL and signed like Stripe's:
//! `X-Tenantry-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`.

use std::time::Duration;

use serde_json::json;
use worker::{Env, Headers, Method, Request, RequestInit};

use super::db;
use crate::platform::clock;
use crate::platform::config::Config;
use crate::platform::crypto::{hmac_sha256, sha256_hex};
use crate::platform::db::Db;
use crate::platform::egress::fetch_text;
use crate::settings;

const TIMEOUT: Duration = Duration::from_secs(10);

pub fn signature(secret: &[u8], unix_secs: i64, body: &str) -> String {
    let mac = hmac_sha256(secret, format!("{unix_secs}.{body}").as_bytes());
    format!("t={unix_secs},v1={}", hex::encode(mac))
}

pub fn event_id(execution_id: &str, event: &str) -> String {
    format!(
        "evt_{}",
        &sha256_hex(format!("{execution_id}:{event}").as_bytes())[..24]
    )
}

/// Delivers one event; `Err` (with why) when the receiver did not take it and it should be
/// tried again. No callback URL configured is success: there is nothing to deliver.
pub async fn deliver(
    env: &Env,
    cfg: &Config,
    execution_id: &str,
    event: &str,
) -> Result<(), String> {
    let db = Db::from_env(env).map_err(|e| e.to_string())?;
    let execution = match db::get_execution(&db, None, execution_id).await {
        Ok(e) => e,
        Err(crate::platform::error::AppError::NotFound) => return Ok(()),
        Err(e) => return Err(e.to_string()),
    };
    let Some(target) = settings::callback_target(&db, cfg, &execution.tenant_id)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(());
    };
    let now_ms = clock::now_ms();
    // The event is what happened, not this delivery: id and time stay the same on every retry,
    // so receivers can drop duplicates by `id`.
    let body = json!({
        "id": event_id(execution_id, event),
        "type": event,
        "created_at": execution.completed_at.clone().unwrap_or_else(|| clock::rfc3339(now_ms)),
        "data": execution
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
    fn event_ids_are_stable_per_execution_and_type() {
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

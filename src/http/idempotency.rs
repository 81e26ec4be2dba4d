//! `Idempotency-Key`: the first response to a key is stored for 24 h and replayed for the same
//! request; the same key with a different request is refused (422); a key still in flight is 409.

use serde::{Deserialize, Serialize};

use super::reply::{Body, Reply};
use crate::args;
use crate::platform::clock;
use crate::platform::crypto::sha256_hex;
use crate::platform::db::Db;
use crate::platform::error::{AppError, Result};

const TTL_MS: i64 = 24 * 3600 * 1000;

/// Headers worth replaying with a stored response.
const KEPT_HEADERS: [&str; 2] = ["Content-Type", "Location"];

#[derive(Deserialize)]
struct StoredRow {
    request_hash: String,
    status: Option<u16>,
    headers: Option<String>,
    body: Option<String>,
    created_at: String,
}

#[derive(Serialize, Deserialize)]
struct StoredHeaders(Vec<(String, String)>);

pub enum Claim {
    /// First use: run the handler, then `complete`.
    Fresh,
    /// A stored response to replay.
    Replay(Reply),
}

/// Checks a key's syntax: 1–255 visible ASCII characters.
pub fn valid_key(key: &str) -> bool {
    (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

pub fn request_hash(method: &str, path: &str, body: &[u8]) -> String {
    let mut data = Vec::with_capacity(method.len() + path.len() + body.len() + 2);
    data.extend_from_slice(method.as_bytes());
    data.push(b' ');
    data.extend_from_slice(path.as_bytes());
    data.push(b'\n');
    data.extend_from_slice(body);
    sha256_hex(&data)
}

pub async fn claim(db: &Db, scope: &str, key: &str, hash: &str, now_ms: i64) -> Result<Claim> {
    let cutoff = clock::rfc3339(now_ms - TTL_MS);
    let existing: Option<StoredRow> = db
        .one(
            "SELECT request_hash, status, headers, body, created_at FROM idempotency_keys \
             WHERE scope = ?1 AND key = ?2",
            &args![scope, key],
        )
        .await?;
    if let Some(row) = existing {
        if row.created_at >= cutoff {
            if row.request_hash != hash {
                return Err(AppError::Unprocessable(
                    "idempotency_key_reused",
                    "This Idempotency-Key was used with a different request.".into(),
                ));
            }
            return match row.status {
                Some(status) => Ok(Claim::Replay(replay(status, row.headers, row.body))),
                None => Err(AppError::Conflict(
                    "A request with this Idempotency-Key is still being processed.".into(),
                )),
            };
        }
        db.run(
            "DELETE FROM idempotency_keys WHERE scope = ?1 AND key = ?2 AND created_at < ?3",
            &args![scope, key, cutoff],
        )
        .await?;
    }
    let inserted = db
        .run(
            "INSERT OR IGNORE INTO idempotency_keys (scope, key, request_hash, created_at) \
             VALUES (?1, ?2, ?3, ?4)",
            &args![scope, key, hash, clock::rfc3339(now_ms)],
        )
        .await?;
    if inserted == 0 {
        return Err(AppError::Conflict(
            "A request with this Idempotency-Key is still being processed.".into(),
        ));
    }
    Ok(Claim::Fresh)
}

/// Stores a successful response for replay; releases the key when the request failed, so the
/// client may retry with the same key.
pub async fn complete(db: &Db, scope: &str, key: &str, outcome: &Result<Reply>) -> Result<()> {
    match outcome {
        Ok(reply) if (200..300).contains(&reply.status) => {
            let headers: Vec<(String, String)> = KEPT_HEADERS
                .iter()
                .filter_map(|h| reply.header(h).map(|v| (h.to_string(), v.to_string())))
                .collect();
            let body = match &reply.body {
                Body::Json(b) => String::from_utf8_lossy(b).into_owned(),
                Body::Text(t, _) => t.clone(),
                // Upgrades are never idempotent routes; nothing to replay.
                Body::Empty | Body::Upgrade(_) | Body::Stream(_) => String::new(),
            };
            db.run(
                "UPDATE idempotency_keys SET status = ?3, headers = ?4, body = ?5 \
                 WHERE scope = ?1 AND key = ?2",
                &args![
                    scope,
                    key,
                    reply.status as i64,
                    serde_json::to_string(&StoredHeaders(headers))?,
                    body
                ],
            )
            .await?;
        }
        _ => {
            db.run(
                "DELETE FROM idempotency_keys WHERE scope = ?1 AND key = ?2 AND status IS NULL",
                &args![scope, key],
            )
            .await?;
        }
    }
    Ok(())
}

fn replay(status: u16, headers: Option<String>, body: Option<String>) -> Reply {
    let headers = headers
        .and_then(|h| serde_json::from_str::<StoredHeaders>(&h).ok())
        .map(|h| h.0)
        .unwrap_or_default();
    let body = body.unwrap_or_default();
    let mut reply = if body.is_empty() {
        Reply {
            status,
            headers: Vec::new(),
            body: Body::Empty,
        }
    } else {
        Reply::json_bytes(status, body.into_bytes())
    };
    for (name, value) in headers {
        reply = reply.with_header(name, value);
    }
    reply.with_header("Idempotent-Replayed", "true")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii() {
        assert!(valid_key("order-123_abc"));
        assert!(!valid_key(""));
        assert!(!valid_key("has space"));
        assert!(!valid_key(&"k".repeat(256)));
    }

    #[test]
    fn hashes_bind_method_path_and_body() {
        let a = request_hash("POST", "/x", b"{}");
        assert_eq!(a, request_hash("POST", "/x", b"{}"));
        assert_ne!(a, request_hash("POST", "/y", b"{}"));
        assert_ne!(a, request_hash("POST", "/x", b"{ }"));
    }

    #[test]
    fn replays_keep_status_location_and_mark_themselves() {
        let r = replay(
            202,
            Some(r#"[["Location","/api/v1/jobs/j1"]]"#.into()),
            Some(r#"{"data":{}}"#.into()),
        );
        assert_eq!(r.status, 202);
        assert_eq!(r.header("Location"), Some("/api/v1/jobs/j1"));
        assert_eq!(r.header("Idempotent-Replayed"), Some("true"));
        assert_eq!(r.header("Content-Type"), Some("application/json"));
    }
}

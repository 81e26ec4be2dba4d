//! Push deliveries, shared by both Workers: `stage` writes one `push_deliveries` row and its
//! `Job::Push` per (notice, subscription) into the caller's D1 batch (the outbox pattern of
//! e-mail), and the pure rules the jobs Worker applies to a push service's answer.

use serde_json::{json, Value};
use worker::D1PreparedStatement;

use crate::args;
use crate::platform::clock;
use crate::platform::db::Db;
use crate::platform::egress;
use crate::platform::error::Result;
use crate::platform::ids;
use crate::platform::outbox::Staged;
use crate::platform::queue::Job;

/// Tries of one delivery before it fails with a dead letter (429 and 5xx answers, network
/// errors).
pub const ATTEMPTS: i64 = 3;
/// How long a push service keeps an undelivered message (`TTL` header): a day.
pub const TTL_SECS: u32 = 24 * 3600;
/// The longest wait a `Retry-After` may ask for before the next try.
pub const MAX_RETRY_AFTER_SECS: u32 = 3600;
/// The largest staged payload: what one record holds (4096 − 86 header − 1 delimiter − 16
/// tag), less room for the notification id set per recipient.
pub const PAYLOAD_MAX: usize = 3993 - 64;
/// Deliveries per pair of statements (a broadcast fans out to many subscriptions).
const CHUNK: usize = 500;

/// One subscription a notice goes to.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub user_id: String,
    pub subscription_id: String,
    /// The recipient's in-app notification, when one was written.
    pub notification_id: Option<String>,
}

/// The JSON a push carries: the notification as the app lists it (`id` is set per recipient).
/// When it would not fit one record, `data` and then `link` go (only if even an empty body
/// would not fit), and the body is cut, ending in `…`, to the longest that fits.
pub fn payload(
    kind: &str,
    title: &str,
    body: &str,
    link: Option<&str>,
    data: Option<&Value>,
    created_at: &str,
) -> String {
    let mut v = json!({"id": null, "type": kind, "title": title, "body": body, "link": link,
                       "data": data, "created_at": created_at});
    let fits = |v: &Value| v.to_string().len() <= PAYLOAD_MAX;
    if fits(&v) {
        return v.to_string();
    }
    v["body"] = Value::String(String::new());
    for field in ["data", "link"] {
        if !fits(&v) {
            v[field] = Value::Null;
        }
    }
    if !fits(&v) {
        // Only a long title is left (≤ 200 characters, every one JSON-escaped): a shorter one.
        v["title"] = Value::String(title.chars().take(100).collect());
    }
    // The longest prefix of the body that still fits (binary search: `lo` always fits).
    let chars: Vec<char> = body.chars().collect();
    let cut = |n: usize| Value::String(format!("{}…", chars[..n].iter().collect::<String>()));
    let (mut lo, mut hi) = (0, chars.len());
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        v["body"] = cut(mid);
        if fits(&v) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    v["body"] = if lo > 0 {
        cut(lo)
    } else {
        Value::String(String::new())
    };
    v.to_string()
}

/// The statements for the caller's batch that deliver `payload` to `targets`, and the jobs
/// to send after the commit (`outbox::send_many_now`). Two statements per 500 deliveries,
/// each binding a handful of values whatever the number of targets.
pub fn stage(
    db: &Db,
    tenant_id: &str,
    targets: &[Target],
    payload: &str,
    urgency: &str,
    now_ms: i64,
) -> Result<(Vec<D1PreparedStatement>, Vec<Staged>)> {
    let now = clock::rfc3339(now_ms);
    let mut stmts = Vec::new();
    let mut jobs = Vec::new();
    for chunk in targets.chunks(CHUNK) {
        let mut items = Vec::with_capacity(chunk.len());
        let mut staged = Vec::with_capacity(chunk.len());
        for t in chunk {
            let id = ids::new_id("psh");
            staged.push(Staged::job(
                &Job::Push {
                    delivery_id: id.clone(),
                },
                0,
                now_ms,
            )?);
            items.push(
                json!({"id": id, "user_id": t.user_id, "subscription_id": t.subscription_id,
                              "notification_id": t.notification_id}),
            );
        }
        stmts.push(db.stmt(
            "INSERT INTO push_deliveries (id, tenant_id, user_id, subscription_id, payload, urgency, created_at, updated_at) \
             SELECT value ->> '$.id', ?1, value ->> '$.user_id', value ->> '$.subscription_id', \
             json_set(?2, '$.id', value ->> '$.notification_id'), ?3, ?4, ?4 FROM json_each(?5)",
            &args![tenant_id, payload, urgency, now.as_str(), Value::Array(items).to_string()],
        )?);
        stmts.push(Staged::insert_many(db, &staged)?);
        jobs.extend(staged);
    }
    Ok((stmts, jobs))
}

/// What a push service's answer means for a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx (201 Created is the usual answer): done.
    Sent,
    /// 404/410: the subscription expired or was unsubscribed; remove it, done.
    Gone,
    /// 429 or 5xx: try again later (while attempts are left).
    Retry,
    /// Any other answer (400, 401/403 for a VAPID key the subscription does not know, 413,
    /// a redirect, …): recorded as failed, not retried.
    Failed,
}

pub fn verdict(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Sent,
        404 | 410 => Verdict::Gone,
        429 | 500..=599 => Verdict::Retry,
        _ => Verdict::Failed,
    }
}

/// Seconds a `Retry-After` value (delta-seconds or an HTTP-date) asks to wait at `now_ms`.
pub fn parse_retry_after(value: &str, now_ms: i64) -> Option<u32> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(secs.min(u64::from(u32::MAX)) as u32);
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let ms = (at.timestamp_millis() - now_ms).max(0);
    Some(((ms + 999) / 1000).min(i64::from(u32::MAX)) as u32)
}

/// The wait before try `attempt + 1`: what the push service asked for (`Retry-After`), else
/// the usual backoff (2 s, 4 s, …); at least a second, at most `MAX_RETRY_AFTER_SECS`.
pub fn retry_delay(attempt: i64, retry_after: Option<&str>, now_ms: i64) -> u32 {
    retry_after
        .and_then(|v| parse_retry_after(v, now_ms))
        .unwrap_or_else(|| egress::backoff_secs(attempt))
        .clamp(1, MAX_RETRY_AFTER_SECS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_map_to_verdicts() {
        for (status, v) in [
            (201, Verdict::Sent),
            (200, Verdict::Sent),
            (202, Verdict::Sent),
            (404, Verdict::Gone),
            (410, Verdict::Gone),
            (429, Verdict::Retry),
            (500, Verdict::Retry),
            (503, Verdict::Retry),
            (400, Verdict::Failed),
            (401, Verdict::Failed),
            (403, Verdict::Failed),
            (413, Verdict::Failed),
            (302, Verdict::Failed),
        ] {
            assert_eq!(verdict(status), v, "{status}");
        }
    }

    #[test]
    fn retry_after_is_respected_in_seconds_or_as_a_date() {
        let now = 1_445_412_480_000; // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(parse_retry_after("120", now), Some(120));
        assert_eq!(parse_retry_after(" 0 ", now), Some(0));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(30)
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(0)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(retry_delay(1, Some("7"), now), 7);
        assert_eq!(retry_delay(1, Some("0"), now), 1, "at least a second");
        assert_eq!(retry_delay(1, Some("999999"), now), MAX_RETRY_AFTER_SECS);
        assert_eq!(retry_delay(1, None, now), 2);
        assert_eq!(retry_delay(2, Some("junk"), now), 4);
    }

    #[test]
    fn a_payload_is_the_notification_json() {
        let p = payload(
            "broadcast",
            "Stock low",
            "5 left",
            Some("/products/prd_1"),
            Some(&json!({"sent_by": "usr_1"})),
            "2026-12-02T10:00:00.000Z",
        );
        let v: Value = serde_json::from_str(&p).unwrap();
        assert_eq!(
            v,
            json!({"id": null, "type": "broadcast", "title": "Stock low", "body": "5 left",
                   "link": "/products/prd_1", "data": {"sent_by": "usr_1"},
                   "created_at": "2026-12-02T10:00:00.000Z"})
        );
    }

    #[test]
    fn long_payloads_are_cut_to_fit_one_record() {
        for body in [
            "é".repeat(5000),
            "\"".repeat(5000),
            "x".repeat(5000),
            "\u{1}".repeat(3000),
        ] {
            let p = payload(
                "broadcast",
                &"t".repeat(200),
                &body,
                Some("/x"),
                None,
                "now",
            );
            assert!(p.len() <= PAYLOAD_MAX, "{} bytes", p.len());
            let v: Value = serde_json::from_str(&p).unwrap();
            let cut = v["body"].as_str().unwrap();
            assert!(cut.ends_with('…') && cut.len() > 100, "{cut}");
            assert_eq!(v["link"], "/x");
        }
        // A huge data object goes before the link does.
        let data = json!({"blob": "y".repeat(5000)});
        let p = payload("broadcast", "t", "", Some("/x"), Some(&data), "now");
        let v: Value = serde_json::from_str(&p).unwrap();
        assert!(v["data"].is_null() && v["link"] == "/x" && p.len() <= PAYLOAD_MAX);
    }

    #[cfg(feature = "jobs")]
    #[test]
    fn a_staged_payload_and_its_id_fit_what_the_sender_encrypts() {
        assert_eq!(PAYLOAD_MAX + 64, crate::push::crypto::MAX_PLAINTEXT);
    }
}

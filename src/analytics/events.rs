//! The checks an analytics event passes before it is stored. Pure: the caller's identity and
//! the clock come in as arguments.

use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::http::json::Checks;
use crate::platform::clock;

pub const MAX_EVENTS: usize = 100;
pub const MAX_PROPERTIES_BYTES: usize = 4 * 1024;
pub const MAX_ID_CHARS: usize = 128;
/// How far back an event may have happened.
pub const MAX_AGE_MS: i64 = 7 * 24 * 3600 * 1000;
/// How far ahead of the server's clock an event's time may be (clock skew).
pub const MAX_AHEAD_MS: i64 = 5 * 60 * 1000;

/// One event as a frontend sends it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsEventIn {
    /// `^[a-z][a-z0-9_.:-]{0,63}$`, e.g. `page.view` or `signup:completed`.
    #[schema(pattern = "^[a-z][a-z0-9_.:-]{0,63}$", example = "page.view")]
    pub name: String,
    /// A JSON object, at most 4 KB serialised.
    #[schema(value_type = Option<Object>)]
    pub properties: Option<Value>,
    #[schema(max_length = 128)]
    pub session_id: Option<String>,
    #[schema(max_length = 128)]
    pub anonymous_id: Option<String>,
    /// RFC 3339, from 7 days ago to 5 minutes ahead; default now.
    #[schema(format = DateTime)]
    pub occurred_at: Option<String>,
}

/// An event ready to store (the caller's identity is added by the insert).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: String,
    /// Serialised JSON object.
    pub properties: String,
    pub session_id: Option<String>,
    pub anonymous_id: Option<String>,
    /// Stored text form (fixed-width UTC).
    pub occurred_at: String,
}

/// An event name: `^[a-z][a-z0-9_.:-]{0,63}$`.
pub fn name(v: &str) -> Result<String, String> {
    let ok = (1..=64).contains(&v.len())
        && v.starts_with(|c: char| c.is_ascii_lowercase())
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.:-".contains(c));
    if ok {
        Ok(v.to_string())
    } else {
        Err("must match ^[a-z][a-z0-9_.:-]{0,63}$".into())
    }
}

fn id(v: &str) -> Result<String, String> {
    if v.is_empty() || v.chars().count() > MAX_ID_CHARS || v.chars().any(char::is_control) {
        Err(format!(
            "must be 1–{MAX_ID_CHARS} characters without control characters"
        ))
    } else {
        Ok(v.to_string())
    }
}

fn properties(v: Option<&Value>) -> Result<String, String> {
    let text = match v {
        None | Some(Value::Null) => Value::Object(Map::new()).to_string(),
        Some(o @ Value::Object(_)) => o.to_string(),
        Some(_) => return Err("must be a JSON object".into()),
    };
    if text.len() > MAX_PROPERTIES_BYTES {
        return Err(format!(
            "must be at most {} KB serialised",
            MAX_PROPERTIES_BYTES / 1024
        ));
    }
    Ok(text)
}

/// RFC 3339 (any offset) within `[now − 7 days, now + 5 min]`, in the stored form.
fn occurred_at(v: Option<&str>, now_ms: i64) -> Result<String, String> {
    let Some(v) = v else {
        return Ok(clock::rfc3339(now_ms));
    };
    let t = chrono::DateTime::parse_from_rfc3339(v.trim())
        .map_err(|_| "must be an RFC 3339 date-time".to_string())?
        .timestamp_millis();
    if t < now_ms - MAX_AGE_MS {
        return Err("must be at most 7 days ago".into());
    }
    if t > now_ms + MAX_AHEAD_MS {
        return Err("must be at most 5 minutes ahead".into());
    }
    Ok(clock::rfc3339(t))
}

/// Checks one event; its errors are recorded under their own names (`name`, `properties`, …).
pub fn check(e: &AnalyticsEventIn, now_ms: i64, checks: &mut Checks) -> Option<Event> {
    let name = checks.take("name", name(&e.name));
    let properties = checks.take("properties", properties(e.properties.as_ref()));
    let session_id = match &e.session_id {
        None => Some(None),
        Some(s) => checks.take("session_id", id(s)).map(Some),
    };
    let anonymous_id = match &e.anonymous_id {
        None => Some(None),
        Some(s) => checks.take("anonymous_id", id(s)).map(Some),
    };
    let occurred_at = checks.take("occurred_at", occurred_at(e.occurred_at.as_deref(), now_ms));
    Some(Event {
        name: name?,
        properties: properties?,
        session_id: session_id?,
        anonymous_id: anonymous_id?,
        occurred_at: occurred_at?,
    })
}

/// Checks a batch: 1–100 events, each error named `events[i].field`.
pub fn check_batch(
    events: &[AnalyticsEventIn],
    now_ms: i64,
) -> crate::platform::error::Result<Vec<Event>> {
    if events.is_empty() || events.len() > MAX_EVENTS {
        return Err(crate::platform::error::AppError::field(
            "events",
            format!("must hold 1–{MAX_EVENTS} events"),
        ));
    }
    let mut checks = Checks::new();
    let mut out = Vec::with_capacity(events.len());
    for (i, e) in events.iter().enumerate() {
        let mut one = Checks::new();
        if let Some(ok) = check(e, now_ms, &mut one) {
            out.push(ok);
        }
        checks.nest(&format!("events[{i}]"), one);
    }
    checks.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::error::AppError;
    use serde_json::json;

    const NOW: i64 = 1_795_000_000_000;

    fn ev(v: Value) -> AnalyticsEventIn {
        serde_json::from_value(v).unwrap()
    }

    fn fields(r: crate::platform::error::Result<Vec<Event>>) -> Vec<String> {
        match r {
            Err(AppError::Validation(errs)) => errs.into_iter().map(|e| e.field).collect(),
            other => panic!("expected field errors, got {other:?}"),
        }
    }

    #[test]
    fn names_follow_the_pattern() {
        for ok in [
            "a",
            "page.view",
            "signup:completed",
            "x_1-2",
            &"a".repeat(64),
        ] {
            assert!(name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Page", "1st", "_x", "a b", "é", &"a".repeat(65), "a/b"] {
            assert!(name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_good_event_is_normalised() {
        let e = check_batch(
            &[ev(json!({
                "name": "page.view", "properties": {"plan": "pro"}, "session_id": "s1",
                "occurred_at": "2026-11-18T12:06:40+01:00"
            }))],
            NOW,
        )
        .unwrap();
        assert_eq!(
            e[0],
            Event {
                name: "page.view".into(),
                properties: r#"{"plan":"pro"}"#.into(),
                session_id: Some("s1".into()),
                anonymous_id: None,
                occurred_at: "2026-11-18T11:06:40.000Z".into(),
            }
        );
        let e = check_batch(&[ev(json!({"name": "x"}))], NOW).unwrap();
        assert_eq!(e[0].properties, "{}");
        assert_eq!(e[0].occurred_at, clock::rfc3339(NOW));
    }

    #[test]
    fn batch_size_is_1_to_100() {
        assert_eq!(fields(check_batch(&[], NOW)), ["events"]);
        let many = vec![ev(json!({"name": "x"})); 101];
        assert_eq!(fields(check_batch(&many, NOW)), ["events"]);
        assert!(check_batch(&many[..100], NOW).is_ok());
    }

    #[test]
    fn each_error_names_its_event_and_field() {
        let big = "x".repeat(4 * 1024);
        let r = check_batch(
            &[
                ev(json!({"name": "ok"})),
                ev(json!({"name": "Bad"})),
                ev(json!({"name": "x", "properties": {"p": big}})),
                ev(json!({"name": "x", "properties": [1]})),
                ev(json!({"name": "x", "occurred_at": clock::rfc3339(NOW - 8 * 24 * 3600 * 1000)})),
                ev(json!({"name": "x", "occurred_at": clock::rfc3339(NOW + 10 * 60 * 1000)})),
                ev(json!({"name": "x", "occurred_at": "2026-11-18"})),
                ev(json!({"name": "x", "session_id": "s".repeat(129), "anonymous_id": ""})),
            ],
            NOW,
        );
        assert_eq!(
            fields(r),
            [
                "events[1].name",
                "events[2].properties",
                "events[3].properties",
                "events[4].occurred_at",
                "events[5].occurred_at",
                "events[6].occurred_at",
                "events[7].session_id",
                "events[7].anonymous_id",
            ]
        );
    }

    #[test]
    fn the_time_window_is_inclusive() {
        let at = |ms: i64| ev(json!({"name": "x", "occurred_at": clock::rfc3339(ms)}));
        assert!(check_batch(&[at(NOW - MAX_AGE_MS), at(NOW + MAX_AHEAD_MS)], NOW).is_ok());
        assert!(check_batch(&[at(NOW - MAX_AGE_MS - 1)], NOW).is_err());
        assert!(check_batch(&[at(NOW + MAX_AHEAD_MS + 1)], NOW).is_err());
    }
}

//! Wall-clock time and RFC 3339 formatting (UTC, millisecond precision, sortable as text).

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    #[cfg(target_arch = "wasm32")]
    {
        js_sys::Date::now() as i64
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

pub fn to_datetime(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// `2026-11-23T10:00:00.000Z`: fixed width, so text order is time order in SQL.
pub fn rfc3339(ms: i64) -> String {
    to_datetime(ms).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses an RFC 3339 date-time (any offset) or a plain `YYYY-MM-DD` (midnight UTC) to ms.
pub fn parse_time(s: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s.trim()) {
        return Some(t.timestamp_millis());
    }
    let d = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()?;
    Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
}

/// Parses a query/body timestamp into the stored text form, or explains the expected format.
pub fn normalize_time(s: &str) -> Result<String, String> {
    parse_time(s)
        .map(rfc3339)
        .ok_or_else(|| "must be an RFC 3339 date-time or YYYY-MM-DD".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_fixed_width_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_000_000_123), "2026-11-18T11:06:40.123Z");
    }

    #[test]
    fn months_start_on_the_first_at_midnight_utc() {}

    #[test]
    fn parses_offsets_and_plain_dates() {
        assert_eq!(parse_time("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_time("1970-01-02"), Some(86_400_000));
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(
            normalize_time("2026-01-05").unwrap(),
            "2026-01-05T00:00:00.000Z"
        );
        assert!(normalize_time("2026-13-05").is_err());
    }
}

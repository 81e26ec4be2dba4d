//! What an aggregate query asks for, checked once: the metric, the UTC buckets, the range and
//! the grouping. Pure, so the arithmetic is tested natively; the SQL fragments each value
//! stands for live next to it.

use chrono::{Datelike, Timelike};

use crate::platform::clock;

pub const HOUR_MS: i64 = 3600 * 1000;
pub const DAY_MS: i64 = 24 * HOUR_MS;
pub const WEEK_MS: i64 = 7 * DAY_MS;
/// The longest range one query may cover.
pub const MAX_RANGE_DAYS: i64 = 366;
/// The most buckets one query may span.
pub const MAX_BUCKETS: i64 = 1000;
/// The default range: the last 7 days.
pub const DEFAULT_RANGE_MS: i64 = 7 * DAY_MS;
/// 1969-12-29T00:00Z, a Monday: weeks are counted from it.
const MONDAY_MS: i64 = -3 * DAY_MS;

pub const METRICS: [&str; 3] = ["events", "users", "sessions"];
pub const INTERVALS: [&str; 3] = ["hour", "day", "week"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Events,
    /// Distinct user ids, or anonymous ids for events without a user.
    Users,
    /// Distinct session ids.
    Sessions,
}

impl Metric {
    pub fn parse(s: &str) -> Option<Metric> {
        match s {
            "events" => Some(Metric::Events),
            "users" => Some(Metric::Users),
            "sessions" => Some(Metric::Sessions),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Events => "events",
            Metric::Users => "users",
            Metric::Sessions => "sessions",
        }
    }

    /// The aggregate over `analytics_events` rows.
    pub fn sql(self) -> &'static str {
        match self {
            Metric::Events => "COUNT(*)",
            // Prefixed so a user id and an anonymous id that happen to be equal stay two.
            Metric::Users => "COUNT(DISTINCT COALESCE('u:' || user_id, 'a:' || anonymous_id))",
            Metric::Sessions => "COUNT(DISTINCT session_id)",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Hour,
    Day,
    /// Weeks start on Monday, 00:00 UTC; labelled with the Monday's date.
    Week,
}

impl Interval {
    pub fn parse(s: &str) -> Option<Interval> {
        match s {
            "hour" => Some(Interval::Hour),
            "day" => Some(Interval::Day),
            "week" => Some(Interval::Week),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Hour => "hour",
            Interval::Day => "day",
            Interval::Week => "week",
        }
    }

    fn step_ms(self) -> i64 {
        match self {
            Interval::Hour => HOUR_MS,
            Interval::Day => DAY_MS,
            Interval::Week => WEEK_MS,
        }
    }

    /// The start of the bucket holding `ms`.
    pub fn floor(self, ms: i64) -> i64 {
        let origin = if self == Interval::Week { MONDAY_MS } else { 0 };
        let step = self.step_ms();
        (ms - origin).div_euclid(step) * step + origin
    }

    /// The bucket's label: `YYYY-MM-DDTHH:00:00Z`, `YYYY-MM-DD`, or the Monday's `YYYY-MM-DD`.
    pub fn label(self, ms: i64) -> String {
        let d = clock::to_datetime(self.floor(ms));
        match self {
            Interval::Hour => format!(
                "{:04}-{:02}-{:02}T{:02}:00:00Z",
                d.year(),
                d.month(),
                d.day(),
                d.hour()
            ),
            Interval::Day | Interval::Week => {
                format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
            }
        }
    }

    /// The same label in SQL, from the stored fixed-width UTC text `occurred_at`.
    pub fn sql(self) -> &'static str {
        match self {
            Interval::Hour => "substr(occurred_at, 1, 13) || ':00:00Z'",
            Interval::Day => "substr(occurred_at, 1, 10)",
            // `weekday 0` moves to the next Sunday (or stays on one); six days back is Monday.
            Interval::Week => "date(substr(occurred_at, 1, 10), 'weekday 0', '-6 days')",
        }
    }

    /// How many buckets `[from, to)` touches (`to > from`).
    pub fn bucket_count(self, from_ms: i64, to_ms: i64) -> i64 {
        (self.floor(to_ms - 1) - self.floor(from_ms)) / self.step_ms() + 1
    }
}

/// How the series is split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    None,
    Name,
    /// A top-level key of `properties`, `^[A-Za-z0-9_]{1,64}$`.
    Property(String),
}

impl GroupBy {
    pub fn parse(s: &str) -> Option<GroupBy> {
        if s == "name" {
            return Some(GroupBy::Name);
        }
        let key = s.strip_prefix("property.")?;
        ((1..=64).contains(&key.len())
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then(|| GroupBy::Property(key.to_string()))
    }

    /// The key expression; a property's JSON path is bound as `?5` (the key is checked as well).
    pub fn sql(&self) -> &'static str {
        match self {
            GroupBy::None => "NULL",
            GroupBy::Name => "name",
            GroupBy::Property(_) => "CAST(json_extract(properties, ?5) AS TEXT)",
        }
    }

    pub fn json_path(&self) -> Option<String> {
        match self {
            GroupBy::Property(k) => Some(format!("$.{k}")),
            _ => None,
        }
    }
}

/// A checked aggregate query.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub metric: Metric,
    pub interval: Interval,
    pub group_by: GroupBy,
    pub name: Option<String>,
    /// Inclusive, ms.
    pub from_ms: i64,
    /// Exclusive, ms.
    pub to_ms: i64,
}

/// The raw query parameters.
#[derive(Debug, Default, Clone)]
pub struct Params<'a> {
    pub metric: Option<&'a str>,
    pub name: Option<&'a str>,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub interval: Option<&'a str>,
    pub group_by: Option<&'a str>,
}

/// `[from, to)` from the two optional parameters: `to` defaults to now, `from` to 7 days
/// before `to`; at most 366 days, `from` before `to`. Errors name the parameter.
pub fn range(
    from: Option<&str>,
    to: Option<&str>,
    now_ms: i64,
) -> Result<(i64, i64), Vec<(&'static str, String)>> {
    let mut errors = Vec::new();
    let time = |field: &'static str, v: Option<&str>, errors: &mut Vec<(&'static str, String)>| {
        v.and_then(|s| {
            let t = clock::parse_time(s);
            if t.is_none() {
                errors.push((field, "must be an RFC 3339 date-time or YYYY-MM-DD".into()));
            }
            t
        })
    };
    let to_ms = time("to", to, &mut errors);
    let from_ms = time("from", from, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let to_ms = to_ms.unwrap_or(now_ms);
    let from_ms = from_ms.unwrap_or(to_ms - DEFAULT_RANGE_MS);
    if from_ms >= to_ms {
        return Err(vec![("from", "must be before `to`".into())]);
    }
    if to_ms - from_ms > MAX_RANGE_DAYS * DAY_MS {
        return Err(vec![(
            "from",
            format!("the range may cover at most {MAX_RANGE_DAYS} days"),
        )]);
    }
    Ok((from_ms, to_ms))
}

/// Checks every parameter; all errors at once, each naming its parameter.
pub fn query(p: &Params, now_ms: i64) -> Result<Query, Vec<(&'static str, String)>> {
    let mut errors = Vec::new();
    let metric = match p.metric {
        None => Some(Metric::Events),
        Some(m) => Metric::parse(m),
    };
    if metric.is_none() {
        errors.push(("metric", format!("must be one of {}", METRICS.join(", "))));
    }
    let interval = match p.interval {
        None => Some(Interval::Day),
        Some(i) => Interval::parse(i),
    };
    if interval.is_none() {
        errors.push((
            "interval",
            format!("must be one of {}", INTERVALS.join(", ")),
        ));
    }
    let group_by = match p.group_by {
        None => Some(GroupBy::None),
        Some(g) => GroupBy::parse(g),
    };
    if group_by.is_none() {
        errors.push((
            "group_by",
            "must be `name` or `property.KEY` with KEY of 1–64 letters, digits or _".into(),
        ));
    }
    if let Some(n) = p.name {
        if let Err(m) = super::events::name(n) {
            errors.push(("name", m));
        }
    }
    let range = range(p.from, p.to, now_ms)
        .map_err(|e| errors.extend(e))
        .ok();
    let (Some(metric), Some(interval), Some(group_by), Some((from_ms, to_ms))) =
        (metric, interval, group_by, range)
    else {
        return Err(errors);
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    if interval.bucket_count(from_ms, to_ms) > MAX_BUCKETS {
        return Err(vec![(
            "interval",
            format!(
                "the range spans more than {MAX_BUCKETS} {}s",
                interval.as_str()
            ),
        )]);
    }
    Ok(Query {
        metric,
        interval,
        group_by,
        name: p.name.map(str::to_string),
        from_ms,
        to_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        clock::parse_time(s).unwrap()
    }

    #[test]
    fn labels_are_utc_buckets() {
        let t = ms("2026-11-18T11:06:40.123Z");
        assert_eq!(Interval::Hour.label(t), "2026-11-18T11:00:00Z");
        assert_eq!(Interval::Day.label(t), "2026-11-18");
        // 2026-11-18 is a Wednesday; its week's Monday is the 16th.
        assert_eq!(Interval::Week.label(t), "2026-11-16");
        assert_eq!(
            Interval::Week.label(ms("2026-11-16T00:00:00Z")),
            "2026-11-16"
        );
        assert_eq!(
            Interval::Week.label(ms("2026-11-22T23:59:59.999Z")),
            "2026-11-16"
        );
        assert_eq!(
            Interval::Week.label(ms("2026-11-23T00:00:00Z")),
            "2026-11-23"
        );
        // Offsets are read as the UTC instant they are.
        assert_eq!(
            Interval::Day.label(ms("2026-11-19T00:30:00+02:00")),
            "2026-11-18"
        );
        // Before the epoch, too (floors, not truncation towards zero).
        assert_eq!(
            Interval::Week.label(ms("1969-12-31T12:00:00Z")),
            "1969-12-29"
        );
        assert_eq!(Interval::Hour.label(-1), "1969-12-31T23:00:00Z");
    }

    #[test]
    fn bucket_counts_cover_half_open_ranges() {
        let from = ms("2026-11-01T00:00:00Z");
        assert_eq!(
            Interval::Day.bucket_count(from, ms("2026-11-02T00:00:00Z")),
            1
        );
        assert_eq!(
            Interval::Day.bucket_count(from, ms("2026-11-02T00:00:00.001Z")),
            2
        );
        assert_eq!(Interval::Hour.bucket_count(from, from + DAY_MS), 24);
        assert_eq!(
            Interval::Hour.bucket_count(ms("2026-11-01T10:59:00Z"), ms("2026-11-01T11:01:00Z")),
            2
        );
        // 2026-11-01 is a Sunday: it and the next Monday are two weeks.
        assert_eq!(Interval::Week.bucket_count(from, from + 2 * DAY_MS), 2);
        assert_eq!(Interval::Week.bucket_count(from, from + 1), 1);
    }

    #[test]
    fn more_than_a_thousand_buckets_or_366_days_are_refused() {
        let now = ms("2026-12-01T00:00:00Z");
        fn p<'a>(from: &'a str, interval: &'a str) -> Params<'a> {
            Params {
                from: Some(from),
                to: Some("2026-12-01T00:00:00Z"),
                interval: Some(interval),
                ..Params::default()
            }
        }
        // 1,000 hours fit exactly; one more does not.
        let f1000 = clock::rfc3339(now - 1000 * HOUR_MS);
        let f1001 = clock::rfc3339(now - 1001 * HOUR_MS);
        assert!(query(&p(&f1000, "hour"), now).is_ok());
        let e = query(&p(&f1001, "hour"), now).unwrap_err();
        assert_eq!(e[0].0, "interval");
        // A year by day is 365 buckets and within 366 days.
        assert!(query(&p("2025-12-01T00:00:00Z", "day"), now).is_ok());
        let e = query(&p("2025-11-29T00:00:00Z", "day"), now).unwrap_err();
        assert_eq!(e[0].0, "from");
        let e = query(&p("2026-12-01T00:00:00Z", "day"), now).unwrap_err();
        assert_eq!(e[0].0, "from");
    }

    #[test]
    fn parameters_are_checked_and_defaulted() {
        let now = ms("2026-12-01T00:00:00Z");
        let q = query(&Params::default(), now).unwrap();
        assert_eq!(q.metric, Metric::Events);
        assert_eq!(q.interval, Interval::Day);
        assert_eq!(q.group_by, GroupBy::None);
        assert_eq!((q.from_ms, q.to_ms), (now - 7 * DAY_MS, now));
        let bad = Params {
            metric: Some("clicks"),
            interval: Some("month"),
            group_by: Some("property.a-b"),
            name: Some("Bad Name"),
            from: Some("yesterday"),
            ..Params::default()
        };
        let fields: Vec<&str> = query(&bad, now).unwrap_err().iter().map(|e| e.0).collect();
        assert_eq!(fields, ["metric", "interval", "group_by", "name", "from"]);
        assert_eq!(
            GroupBy::parse("property.plan"),
            Some(GroupBy::Property("plan".into()))
        );
        assert_eq!(GroupBy::parse("property."), None);
        assert_eq!(
            GroupBy::parse(&format!("property.{}", "k".repeat(65))),
            None
        );
        assert_eq!(GroupBy::parse("property.a'b"), None);
        assert_eq!(GroupBy::parse("user"), None);
        for m in METRICS {
            assert_eq!(Metric::parse(m).map(Metric::as_str), Some(m));
        }
        for i in INTERVALS {
            assert_eq!(Interval::parse(i).map(Interval::as_str), Some(i));
        }
    }
}

//! The usage meter: exact monthly counters per tenant, kept by the `UsageMeter` Durable Object
//! (`durable/usage_meter.rs`, one per tenant). This file holds its protocol, the pure
//! arithmetic it applies in one synchronous read-modify-write, the calendar (a period is a UTC
//! month, `2026-11`; a new month is a new key, so usage resets at 00:00 UTC on the 1st), and
//! the calls the API makes to it.

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use worker::Env;

use crate::billing::plans::Metric;
use crate::platform::bindings;
use crate::platform::clock;
use crate::platform::error::{AppError, Result};

/// Usage thresholds (percent of the limit) reported once per period and metric.
pub const THRESHOLDS: [u8; 2] = [80, 100];
/// Months of counters the meter keeps (the current one and the twelve before it).
pub const MONTHS_KEPT: u32 = 13;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum MeterRequest {
    Consume(Consume),
    Refund(Refund),
    Report(ReportRequest),
}

/// Count `amount` of `metric` in `period` if it fits under `limit` (`None`: unlimited).
/// `op_id` makes it idempotent: the same op counted once, whatever the redeliveries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Consume {
    pub tenant_id: String,
    pub metric: Metric,
    pub period: String,
    pub amount: u64,
    pub limit: Option<u64>,
    pub op_id: String,
    /// When set, the `amount` units are counted as these ops, one unit each, so that each can
    /// be given back alone (a batch's items); `op_id` still makes the whole consume idempotent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<String>,
}

/// Give back what the consume `op_id` counted (once; an unknown op changes nothing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refund {
    pub tenant_id: String,
    pub metric: Metric,
    pub period: String,
    pub op_id: String,
    /// More ops to give back in the same call (a cancelled batch's items).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportRequest {
    pub tenant_id: String,
    pub period: String,
}

/// The meter's answer to a consume or refund.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Consumed {
    pub allowed: bool,
    pub used: u64,
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    /// Thresholds this op crossed for the first time in the period (at most once each).
    #[serde(default)]
    pub crossed: Vec<u8>,
}

/// A period's counters and the thresholds crossed in it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub counters: Vec<Counter>,
    pub alerts: Vec<Alert>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Counter {
    pub metric: Metric,
    pub used: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Alert {
    pub metric: Metric,
    /// Percent of the limit: 80 or 100.
    pub threshold: u8,
    pub at: String,
}

/// The decision for a consume against what the period has `used` so far.
pub fn consume(used: u64, amount: u64, limit: Option<u64>) -> Consumed {
    let after = used.saturating_add(amount);
    let allowed = limit.is_none_or(|l| after <= l);
    let used_now = if allowed { after } else { used };
    Consumed {
        allowed,
        used: used_now,
        limit,
        remaining: limit.map(|l| l.saturating_sub(used_now)),
        crossed: if allowed {
            crossed(used, after, limit)
        } else {
            Vec::new()
        },
    }
}

/// The thresholds passed going from `before` to `after` units of `limit` (rounding the
/// threshold up: 80 % of 5 is reached at 4).
pub fn crossed(before: u64, after: u64, limit: Option<u64>) -> Vec<u8> {
    let Some(limit) = limit.filter(|l| *l > 0) else {
        return Vec::new();
    };
    THRESHOLDS
        .into_iter()
        .filter(|t| {
            let at = (limit * u64::from(*t)).div_ceil(100);
            before < at && after >= at
        })
        .collect()
}

/// The period (`YYYY-MM`, UTC) an instant falls in.
pub fn period_of(now_ms: i64) -> String {
    let d = clock::to_datetime(now_ms);
    format!("{:04}-{:02}", d.year(), d.month())
}

/// A `YYYY-MM` period's first day, or `None` if it is not one.
pub fn parse_period(s: &str) -> Option<NaiveDate> {
    let (y, m) = s.split_once('-')?;
    if y.len() != 4 || m.len() != 2 {
        return None;
    }
    NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, 1)
}

fn month_after(d: NaiveDate) -> NaiveDate {
    let (y, m) = if d.month() == 12 {
        (d.year() + 1, 1)
    } else {
        (d.year(), d.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1).expect("the 1st exists")
}

fn midnight(d: NaiveDate) -> String {
    clock::rfc3339(
        d.and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc()
            .timestamp_millis(),
    )
}

/// `[start, end)` of a valid period, as stored times (what the seed counts between).
pub fn bounds(period: &str) -> Option<(String, String)> {
    let d = parse_period(period)?;
    Some((midnight(d), midnight(month_after(d))))
}

/// When the period's usage resets: 00:00 UTC on the 1st of the next month.
pub fn resets_at(period: &str) -> Option<String> {
    bounds(period).map(|(_, end)| end)
}

/// The oldest period the meter keeps at `now_ms` (older ones are dropped by its alarm).
pub fn oldest_kept(now_ms: i64) -> String {
    let d = clock::to_datetime(now_ms).date_naive();
    let months = d.year() * 12 + d.month0() as i32 - (MONTHS_KEPT as i32 - 1);
    format!(
        "{:04}-{:02}",
        months.div_euclid(12),
        months.rem_euclid(12) + 1
    )
}

/// What the meter counts from D1 the first time it meets a metric in a period, so that
/// usage recorded before the meter existed (or before its counter was dropped) stands:
/// `?1` tenant, `?2`/`?3` the period's bounds. `None`: the metric starts at zero.
pub fn seed_sql(metric: Metric) -> Option<&'static str> {
    match metric {
        Metric::Executions => Some(
            "SELECT COUNT(*) AS n FROM executions WHERE tenant_id = ?1 \
             AND created_at >= ?2 AND created_at < ?3",
        ),
        // Made ones, and batch items still holding their reserved unit (finished items
        // either made an optimisation or were given back).
        Metric::Optimizations => Some(
            "SELECT (SELECT COUNT(*) FROM optimizations WHERE tenant_id = ?1 \
             AND created_at >= ?2 AND created_at < ?3) + (SELECT COUNT(*) \
             FROM optimize_batch_items WHERE tenant_id = ?1 AND status IN ('queued', 'running') \
             AND created_at >= ?2 AND created_at < ?3) AS n",
        ),
    }
}

/// The 402 for an allowance used up: `quota_exceeded` with `metric, limit, used, resets_at`.
pub fn over_quota(
    metric: &str,
    limit: u64,
    used: u64,
    resets_at: Option<String>,
    detail: String,
) -> AppError {
    AppError::refused(402, "quota_exceeded", detail)
        .with("metric", metric)
        .with("limit", limit)
        .with("used", used)
        .with("resets_at", resets_at)
}

/// One meter call; an unreachable meter is `503 usage_unavailable` (logged), not a 500.
async fn call<T: serde::de::DeserializeOwned>(
    env: &Env,
    tenant_id: &str,
    req: &MeterRequest,
) -> Result<T> {
    call_once(env, tenant_id, req).await.map_err(|e| {
        worker::console_error!("usage meter unavailable: {e}");
        AppError::refused(
            503,
            "usage_unavailable",
            "Usage cannot be counted right now; nothing was started. Try again shortly.",
        )
    })
}

async fn call_once<T: serde::de::DeserializeOwned>(
    env: &Env,
    tenant_id: &str,
    req: &MeterRequest,
) -> Result<T> {
    let ns = env.durable_object(bindings::USAGE_METER)?;
    let stub = ns.id_from_name(tenant_id)?.get_stub()?;
    let mut init = worker::RequestInit::new();
    init.with_method(worker::Method::Post)
        .with_body(Some(serde_json::to_string(req)?.into()));
    let request = worker::Request::new_with_init("https://usage-meter/op", &init)?;
    let mut response = stub.fetch_with_request(request).await?;
    if response.status_code() != 200 {
        return Err(AppError::Internal(format!(
            "usage meter answered {}: {}",
            response.status_code(),
            response.text().await.unwrap_or_default()
        )));
    }
    Ok(response.json::<T>().await?)
}

/// Counts one op against the tenant's monthly allowance. Unlike the rate limiter this does not
/// fail open: an allowance is what the customer pays for, so an unreachable meter is an error.
pub async fn consume_op(env: &Env, req: Consume) -> Result<Consumed> {
    let tenant = req.tenant_id.clone();
    call(env, &tenant, &MeterRequest::Consume(req)).await
}

/// Gives back a consume whose work did not happen. Best effort, logged when it fails.
pub async fn refund_op(env: &Env, req: Refund) {
    let tenant = req.tenant_id.clone();
    if let Err(e) = call::<Consumed>(env, &tenant, &MeterRequest::Refund(req)).await {
        worker::console_error!("usage meter refund failed: {e}");
    }
}

pub async fn report(env: &Env, tenant_id: &str, period: &str) -> Result<Report> {
    call(
        env,
        tenant_id,
        &MeterRequest::Report(ReportRequest {
            tenant_id: tenant_id.to_string(),
            period: period.to_string(),
        }),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        clock::parse_time(s).unwrap()
    }

    #[test]
    fn consumes_fit_under_the_limit_exactly() {
        let mut used = 0;
        let mut allowed = 0;
        for _ in 0..20 {
            let d = consume(used, 1, Some(5));
            used = d.used;
            allowed += u32::from(d.allowed);
        }
        assert_eq!((allowed, used), (5, 5));
        let refused = consume(5, 1, Some(5));
        assert_eq!(
            (refused.allowed, refused.used, refused.remaining),
            (false, 5, Some(0))
        );
        // More than is left is refused whole, never partly counted.
        assert!(!consume(3, 3, Some(5)).allowed);
        assert_eq!(consume(3, 2, Some(5)).remaining, Some(0));
        let unlimited = consume(1_000_000, 7, None);
        assert!(unlimited.allowed);
        assert_eq!((unlimited.used, unlimited.remaining), (1_000_007, None));
    }

    #[test]
    fn thresholds_are_crossed_once_going_up() {
        assert_eq!(crossed(3, 4, Some(5)), [80]);
        assert_eq!(crossed(4, 5, Some(5)), [100]);
        assert_eq!(crossed(0, 5, Some(5)), [80, 100]);
        assert!(crossed(4, 4, Some(5)).is_empty());
        assert!(crossed(0, 100, None).is_empty());
        assert_eq!(crossed(799, 800, Some(1000)), [80]);
        assert!(crossed(800, 801, Some(1000)).is_empty());
        assert_eq!(consume(3, 1, Some(5)).crossed, [80]);
        assert!(consume(5, 1, Some(5)).crossed.is_empty());
    }

    #[test]
    fn months_roll_over_at_midnight_utc_on_the_first() {
        assert_eq!(period_of(ms("2026-12-31T23:59:59.999Z")), "2026-12");
        assert_eq!(period_of(ms("2027-01-01T00:00:00.000Z")), "2027-01");
        assert_eq!(
            resets_at("2026-12").as_deref(),
            Some("2027-01-01T00:00:00.000Z")
        );
        assert_eq!(
            bounds("2026-02"),
            Some((
                "2026-02-01T00:00:00.000Z".into(),
                "2026-03-01T00:00:00.000Z".into()
            ))
        );
        // Another period is another key: a consume in January starts from zero.
        assert_ne!(
            period_of(ms("2026-12-31T23:59:59Z")),
            period_of(ms("2027-01-01T00:00:01Z"))
        );
    }

    #[test]
    fn periods_parse_strictly_and_thirteen_months_are_kept() {
        for bad in [
            "2026-13", "2026-1", "26-01", "2026/01", "", "2026-00", "abcd-ef",
        ] {
            assert_eq!(parse_period(bad), None, "{bad}");
        }
        assert!(parse_period("2026-11").is_some());
        assert_eq!(oldest_kept(ms("2026-12-15T00:00:00Z")), "2025-12");
        assert_eq!(oldest_kept(ms("2027-01-01T00:00:00Z")), "2026-01");
    }

    #[test]
    fn the_protocol_round_trips() {
        let req: MeterRequest = serde_json::from_str(
            r#"{"op":"consume","tenant_id":"ten_1","metric":"executions","period":"2026-11","amount":1,"limit":5,"op_id":"exe_1"}"#,
        )
        .unwrap();
        assert!(matches!(
            req,
            MeterRequest::Consume(Consume { limit: Some(5), .. })
        ));
        let p = over_quota("executions", 5, 5, resets_at("2026-11"), "x".into()).to_problem("r");
        let v = serde_json::to_value(p).unwrap();
        assert_eq!(v["resets_at"], "2026-12-01T00:00:00.000Z");
        assert_eq!(v["code"], "quota_exceeded");
    }
}

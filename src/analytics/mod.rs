//! Analytics events from frontends and their aggregates (module S).
//!
//! Writes: any user session, or an API key with `write`, posts batches of 1–100 events; the
//! caller (user or key) is recorded from the credential, never from the body, and no IP is
//! kept. Reads (`GET /analytics`, `GET /analytics/sessions`) are for tenant admins. Buckets are
//! UTC; only buckets with data appear in a series. The cron sweep deletes events older than
//! `ANALYTICS_RETENTION_DAYS` ([`retention_stmt`]).

pub mod buckets;
pub mod events;

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use worker::D1PreparedStatement;

use crate::args;
use crate::handler;
use crate::http::context::Ctx;
use crate::http::reply::Reply;
use crate::http::router::{q, q_enum, Access, QueryDoc, Route};
use crate::platform::clock;
use crate::platform::db::{first_row, Db};
use crate::platform::error::{AppError, FieldError, Result};
use crate::platform::ids;
use buckets::{INTERVALS, METRICS};
use events::AnalyticsEventIn;

/// The most rows one series answers (a property with many values could otherwise make it huge).
pub const MAX_SERIES_ROWS: usize = 10_000;

const AGGREGATE_QUERY: [QueryDoc; 6] = [
    q_enum(
        "metric",
        &METRICS,
        "events (count), users (distinct user ids, else anonymous ids) or sessions (distinct \
         session ids); default events",
    ),
    q("name", "string", "Only events with this name."),
    q(
        "from",
        "string",
        "RFC 3339 or YYYY-MM-DD, inclusive; default 7 days before `to`.",
    ),
    q(
        "to",
        "string",
        "RFC 3339 or YYYY-MM-DD, exclusive; default now.",
    ),
    q_enum(
        "interval",
        &INTERVALS,
        "UTC buckets: hour (YYYY-MM-DDTHH:00:00Z), day (YYYY-MM-DD) or week (the Monday's \
         date); default day. At most 366 days and 1,000 buckets.",
    ),
    q(
        "group_by",
        "string",
        "`name` or `property.KEY` (KEY: 1–64 letters, digits or _).",
    ),
];

const SESSIONS_QUERY: [QueryDoc; 2] = [
    q(
        "from",
        "string",
        "RFC 3339 or YYYY-MM-DD, inclusive; default 7 days before `to`.",
    ),
    q(
        "to",
        "string",
        "RFC 3339 or YYYY-MM-DD, exclusive; default now.",
    ),
];

pub fn routes() -> Vec<Route> {
    vec![
        Route::post("/api/v1/analytics/events", Access::User, handler!(ingest))
            .doc(
                "analytics",
                "Record 1–100 events (a user session or an API key with `write`); the caller is \
                 taken from the credential and no IP is kept",
            )
            .body("AnalyticsBatch")
            .accepted("AnalyticsAccepted"),
        Route::get(
            "/api/v1/analytics",
            Access::TenantAdmin,
            handler!(aggregate),
        )
        .doc(
            "analytics",
            "Aggregates of the tenant's events in UTC buckets (tenant admins); only buckets \
                 with data are listed; `total` counts the whole range (distinct for users and \
                 sessions)",
        )
        .ok("AnalyticsSeries")
        .query(&AGGREGATE_QUERY),
        Route::get(
            "/api/v1/analytics/sessions",
            Access::TenantAdmin,
            handler!(sessions),
        )
        .doc(
            "analytics",
            "Session statistics (tenant admins): count, average duration (last − first event), \
             events per session, bounce rate (sessions of one event)",
        )
        .ok("SessionStats")
        .query(&SESSIONS_QUERY),
    ]
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsBatch {
    #[schema(min_items = 1, max_items = 100)]
    pub events: Vec<AnalyticsEventIn>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AnalyticsAccepted {
    pub accepted: usize,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SeriesPoint {
    /// `YYYY-MM-DDTHH:00:00Z`, `YYYY-MM-DD`, or the week's Monday `YYYY-MM-DD` (UTC).
    pub bucket: String,
    /// The group's value (`null` without `group_by`, or for events without the property).
    pub key: Option<String>,
    pub value: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AnalyticsSeries {
    pub metric: String,
    pub interval: String,
    pub from: String,
    pub to: String,
    pub series: Vec<SeriesPoint>,
    /// The metric over the whole range (for users and sessions: distinct over the range).
    pub total: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionStats {
    pub from: String,
    pub to: String,
    /// Sessions with an event in the range.
    pub count: i64,
    /// Mean of last − first event time per session, in seconds.
    pub average_duration_secs: f64,
    pub events_per_session: f64,
    /// The share of sessions with exactly one event (0–1).
    pub bounce_rate: f64,
}

fn validation(errors: Vec<(&'static str, String)>) -> AppError {
    AppError::Validation(
        errors
            .into_iter()
            .map(|(f, m)| FieldError::new(f, m))
            .collect(),
    )
}

/// One statement for the whole batch: the events travel as one JSON parameter through
/// `json_each` (D1 binds at most 100 parameters a statement).
async fn ingest(cx: Ctx) -> Result<Reply> {
    let body: AnalyticsBatch = cx.json()?;
    let checked = events::check_batch(&body.events, cx.now_ms)?;
    let p = cx.principal()?;
    let rows: Vec<serde_json::Value> = checked
        .iter()
        .map(|e| {
            json!({
                "id": ids::new_id("evt"),
                "name": e.name,
                "properties": e.properties,
                "session_id": e.session_id,
                "anonymous_id": e.anonymous_id,
                "occurred_at": e.occurred_at,
            })
        })
        .collect();
    let db = cx.db()?;
    db.run(
        "INSERT INTO analytics_events (id, tenant_id, name, user_id, api_key_id, session_id, \
         anonymous_id, properties, occurred_at, received_at) \
         SELECT json_extract(value, '$.id'), ?1, json_extract(value, '$.name'), ?2, ?3, \
         json_extract(value, '$.session_id'), json_extract(value, '$.anonymous_id'), \
         json_extract(value, '$.properties'), json_extract(value, '$.occurred_at'), ?4 \
         FROM json_each(?5)",
        &args![
            p.tenant_id.as_str(),
            p.user_id.clone(),
            p.api_key.as_ref().map(|k| k.id.clone()),
            cx.now(),
            serde_json::Value::Array(rows).to_string()
        ],
    )
    .await?;
    // Accepted into the store; `Location` is where their aggregates are read.
    Reply::accepted(
        &AnalyticsAccepted {
            accepted: checked.len(),
        },
        "/api/v1/analytics".into(),
    )
}

async fn aggregate(cx: Ctx) -> Result<Reply> {
    let params = buckets::Params {
        metric: cx.query_nonempty("metric"),
        name: cx.query_nonempty("name"),
        from: cx.query_nonempty("from"),
        to: cx.query_nonempty("to"),
        interval: cx.query_nonempty("interval"),
        group_by: cx.query_nonempty("group_by"),
    };
    let query = buckets::query(&params, cx.now_ms).map_err(validation)?;
    let db = cx.db()?;
    let (series, total) = run_aggregate(&db, cx.tenant_id()?, &query).await?;
    Reply::ok(&AnalyticsSeries {
        metric: query.metric.as_str().into(),
        interval: query.interval.as_str().into(),
        from: clock::rfc3339(query.from_ms),
        to: clock::rfc3339(query.to_ms),
        series,
        total,
    })
}

/// The series and the total in one read batch. Parameters: `?1` tenant, `?2`/`?3` the range,
/// `?4` the name or null, `?5` the property's JSON path or null.
pub async fn run_aggregate(
    db: &Db,
    tenant_id: &str,
    q: &buckets::Query,
) -> Result<(Vec<SeriesPoint>, i64)> {
    // `?5` also appears as a no-op in the filter, so both statements take the same parameters.
    let filter = "FROM analytics_events WHERE tenant_id = ?1 AND occurred_at >= ?2 \
                  AND occurred_at < ?3 AND (?4 IS NULL OR name = ?4) AND (?5 IS NULL OR 1)";
    let args = args![
        tenant_id,
        clock::rfc3339(q.from_ms),
        clock::rfc3339(q.to_ms),
        q.name.clone(),
        q.group_by.json_path()
    ];
    let series_sql = format!(
        "SELECT {bucket} AS bucket, {key} AS key, {agg} AS value {filter} \
         GROUP BY 1, 2 ORDER BY 1, 2 LIMIT {MAX_SERIES_ROWS}",
        bucket = q.interval.sql(),
        key = q.group_by.sql(),
        agg = q.metric.sql(),
    );
    let total_sql = format!("SELECT {agg} AS value {filter}", agg = q.metric.sql());
    let results = db
        .read_batch(vec![
            db.stmt(&series_sql, &args)?,
            db.stmt(&total_sql, &args)?,
        ])
        .await?;
    let [series, total] = results.as_slice() else {
        return Err(AppError::Internal(
            "d1: a batch of two reads answered otherwise".into(),
        ));
    };
    #[derive(Deserialize)]
    struct Total {
        value: i64,
    }
    let points: Vec<SeriesPoint> = series.results().map_err(AppError::internal)?;
    let total = first_row::<Total>(total)?.map_or(0, |t| t.value);
    Ok((points, total))
}

async fn sessions(cx: Ctx) -> Result<Reply> {
    let (from_ms, to_ms) = buckets::range(
        cx.query_nonempty("from"),
        cx.query_nonempty("to"),
        cx.now_ms,
    )
    .map_err(validation)?;
    #[derive(Deserialize)]
    struct Row {
        count: i64,
        average_duration_secs: Option<f64>,
        events_per_session: Option<f64>,
        bounces: Option<i64>,
    }
    let row: Option<Row> = cx
        .db()?
        .one(
            "SELECT COUNT(*) AS count, ROUND(AVG(duration), 3) AS average_duration_secs, \
             AVG(n) AS events_per_session, SUM(n = 1) AS bounces FROM \
             (SELECT COUNT(*) AS n, \
              (julianday(MAX(occurred_at)) - julianday(MIN(occurred_at))) * 86400.0 AS duration \
              FROM analytics_events WHERE tenant_id = ?1 AND occurred_at >= ?2 \
              AND occurred_at < ?3 AND session_id IS NOT NULL GROUP BY session_id)",
            &args![
                cx.tenant_id()?,
                clock::rfc3339(from_ms),
                clock::rfc3339(to_ms)
            ],
        )
        .await?;
    let (count, avg, eps, bounces) = row.map_or((0, 0.0, 0.0, 0), |r| {
        (
            r.count,
            r.average_duration_secs.unwrap_or(0.0),
            r.events_per_session.unwrap_or(0.0),
            r.bounces.unwrap_or(0),
        )
    });
    Reply::ok(&SessionStats {
        from: clock::rfc3339(from_ms),
        to: clock::rfc3339(to_ms),
        count,
        average_duration_secs: avg,
        events_per_session: round3(eps),
        bounce_rate: if count == 0 {
            0.0
        } else {
            round3(bounces as f64 / count as f64)
        },
    })
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The retention sweep's statement: deletes up to 10,000 events older than `retention_days`
/// (the cron runs often enough for that to keep up; a bounded delete keeps D1's statement
/// time short).
pub fn retention_stmt(db: &Db, retention_days: i64, now_ms: i64) -> Result<D1PreparedStatement> {
    db.stmt(
        "DELETE FROM analytics_events WHERE id IN \
         (SELECT id FROM analytics_events WHERE occurred_at < ?1 LIMIT 10000)",
        &args![clock::rfc3339(
            now_ms - retention_days.max(1) * buckets::DAY_MS
        )],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_and_documented_limits() {
        assert_eq!(round3(2.0 / 3.0), 0.667);
        let doc = crate::docs::document();
        let events = &doc["components"]["schemas"]["AnalyticsBatch"]["properties"]["events"];
        assert_eq!(events["maxItems"], events::MAX_EVENTS);
    }
}

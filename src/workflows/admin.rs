//! The agency's view across client organisations: the dashboard, per-workflow performance and
//! the error feed (failed executions and dead-lettered messages).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::db::{cents, percent, STATS_COLUMNS};
use super::model::{WorkflowStats, STATUSES};
use crate::args;
use crate::handler;
use crate::http::context::Ctx;
use crate::http::pagination::PAGING;
use crate::http::reply::Reply;
use crate::http::router::{q, q_enum, Access, QueryDoc, Route};
use crate::platform::clock;
use crate::platform::db::{Db, Filter};
use crate::platform::error::{AppError, Result};

const DAY_MS: i64 = 24 * 3600 * 1000;
const ERROR_SOURCES: [&str; 2] = ["execution", "dead_letter"];

const STATS_QUERY: [QueryDoc; 4] = [
    PAGING[0],
    PAGING[1],
    q("tenant_id", "string", "Only this organisation's workflows."),
    q_enum("status", &STATUSES, "Only workflows with this status."),
];

const ERRORS_QUERY: [QueryDoc; 6] = [
    PAGING[0],
    PAGING[1],
    q_enum(
        "source",
        &ERROR_SOURCES,
        "Failed executions or dead-lettered messages.",
    ),
    q("tenant_id", "string", "Only this organisation's."),
    q("from", "string", "At or after this time (RFC 3339)."),
    q("to", "string", "Before this time (RFC 3339)."),
];

pub fn routes() -> Vec<Route> {
    vec![
        Route::get(
            "/api/v1/admin/dashboard",
            Access::PlatformAdmin,
            handler!(dashboard),
        )
        .doc(
            "admin",
            "Tenants by status, MRR, executions and success rate (24 h, 30 d), revenue, cost, margin, errors, uptime",
        )
        .ok("Dashboard"),
        Route::get(
            "/api/v1/admin/workflows/stats",
            Access::PlatformAdmin,
            handler!(workflow_stats),
        )
        .doc("admin", "Every workflow's performance, newest workflow first")
        .list("WorkflowPerformance")
        .query(&STATS_QUERY),
        Route::get(
            "/api/v1/admin/errors",
            Access::PlatformAdmin,
            handler!(errors),
        )
        .doc(
            "admin",
            "Failed executions and dead-lettered queue messages, newest first",
        )
        .list("ErrorEntry")
        .query(&ERRORS_QUERY),
    ]
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Dashboard {
    pub tenants: TenantCounts,
    /// Sum of the monthly subscription amounts of active organisations (EUR).
    pub mrr: f64,
    pub executions_24h: Window,
    pub executions_30d: Window,
    /// Failed executions plus dead-lettered messages in the last 24 hours.
    pub error_count_24h: i64,
    pub uptime: Uptime,
    pub generated_at: String,
}

#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct TenantCounts {
    pub total: i64,
    pub active: i64,
    pub pending: i64,
    pub suspended: i64,
}

/// Executions created in a window, and what they earned and cost.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Window {
    pub total: i64,
    pub completed: i64,
    pub failed: i64,
    /// Completed ÷ (completed + failed), percent.
    pub success_rate: f64,
    /// Completed executions × revenue per execution (EUR).
    pub revenue: f64,
    /// Finished executions × cost per execution (EUR).
    pub cost: f64,
    pub margin: f64,
}

/// Availability as the API served it: the share of logged requests not answered with a 5xx.
#[derive(Debug, Serialize, ToSchema)]
pub struct Uptime {
    /// When the deployment's database schema was last migrated (the last deploy with a migration).
    pub deployed_at: Option<String>,
    /// The oldest request in the 30-day log window.
    pub since: Option<String>,
    pub requests: i64,
    pub server_errors: i64,
    pub availability_percent: f64,
}

#[derive(Deserialize)]
struct WindowRow {
    total: i64,
    completed: i64,
    failed: i64,
    revenue: f64,
    cost: f64,
}

async fn window(db: &Db, since: &str) -> Result<Window> {
    let r: WindowRow = db
        .one(
            "SELECT COUNT(e.id) AS total, COALESCE(SUM(e.status = 'completed'), 0) AS completed, \
             COALESCE(SUM(e.status = 'failed'), 0) AS failed, \
             COALESCE(SUM(CASE WHEN e.status = 'completed' THEN w.revenue_per_execution END), 0.0) AS revenue, \
             COALESCE(SUM(CASE WHEN e.status IN ('completed', 'failed') THEN w.cost_per_execution END), 0.0) AS cost \
             FROM executions e JOIN workflows w ON w.id = e.workflow_id WHERE e.created_at >= ?1",
            &args![since],
        )
        .await?
        .ok_or_else(|| AppError::internal("window query returned no row"))?;
    Ok(Window {
        total: r.total,
        completed: r.completed,
        failed: r.failed,
        success_rate: percent(r.completed, r.completed + r.failed),
        revenue: cents(r.revenue),
        cost: cents(r.cost),
        margin: cents(r.revenue - r.cost),
    })
}

async fn dashboard(cx: Ctx) -> Result<Reply> {
    #[derive(Deserialize)]
    struct Money {
        mrr: f64,
    }
    #[derive(Deserialize)]
    struct Count {
        n: i64,
    }
    #[derive(Deserialize)]
    struct Log {
        since: Option<String>,
        requests: i64,
        server_errors: i64,
    }
    #[derive(Deserialize)]
    struct Migrated {
        applied_at: Option<String>,
    }
    let db = cx.db()?;
    let day_ago = clock::rfc3339(cx.now_ms - DAY_MS);
    let month_ago = clock::rfc3339(cx.now_ms - 30 * DAY_MS);
    let tenants: TenantCounts = db
        .one(
            "SELECT COUNT(*) AS total, COALESCE(SUM(status = 'active'), 0) AS active, \
             COALESCE(SUM(status = 'pending'), 0) AS pending, \
             COALESCE(SUM(status = 'suspended'), 0) AS suspended \
             FROM tenants WHERE deleted_at IS NULL AND id != 'ten_platform'",
            &args![],
        )
        .await?
        .unwrap_or_default();
    let mrr = db
        .one::<Money>(
            "SELECT COALESCE(SUM(subscription_amount), 0.0) AS mrr FROM tenants \
             WHERE deleted_at IS NULL AND status = 'active' \
             AND (subscription_end_date IS NULL OR subscription_end_date >= ?1)",
            &args![cx.now()],
        )
        .await?
        .map_or(0.0, |m| cents(m.mrr));
    let errors = db
        .one::<Count>(
            "SELECT (SELECT COUNT(*) FROM executions WHERE status = 'failed' AND updated_at >= ?1) \
             + (SELECT COUNT(*) FROM dead_letters WHERE created_at >= ?1) AS n",
            &args![day_ago.as_str()],
        )
        .await?
        .map_or(0, |c| c.n);
    let log = db
        .one::<Log>(
            "SELECT MIN(created_at) AS since, COUNT(*) AS requests, \
             COALESCE(SUM(status >= 500), 0) AS server_errors FROM api_logs WHERE created_at >= ?1",
            &args![month_ago.as_str()],
        )
        .await?
        .unwrap_or(Log {
            since: None,
            requests: 0,
            server_errors: 0,
        });
    // wrangler records applied migrations in this table; the latest is the last schema deploy.
    let deployed_at = db
        .one::<Migrated>(
            "SELECT MAX(applied_at) AS applied_at FROM d1_migrations",
            &args![],
        )
        .await
        .ok()
        .flatten()
        .and_then(|m| m.applied_at)
        .and_then(|t| clock::parse_time(&format!("{}Z", t.replace(' ', "T"))))
        .map(clock::rfc3339);
    let availability = if log.requests == 0 {
        100.0
    } else {
        100.0 - percent(log.server_errors, log.requests)
    };
    Reply::ok(&Dashboard {
        tenants,
        mrr,
        executions_24h: window(&db, &day_ago).await?,
        executions_30d: window(&db, &month_ago).await?,
        error_count_24h: errors,
        uptime: Uptime {
            deployed_at,
            since: log.since,
            requests: log.requests,
            server_errors: log.server_errors,
            availability_percent: (availability * 100.0).round() / 100.0,
        },
        generated_at: cx.now(),
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkflowPerformance {
    pub workflow_id: String,
    pub workflow_name: String,
    pub tenant_id: String,
    pub tenant_name: String,
    pub status: String,
    pub cost_per_execution: f64,
    pub revenue_per_execution: f64,
    pub created_at: String,
    pub stats: WorkflowStats,
    /// Revenue − cost (EUR).
    pub margin: f64,
}

#[derive(Deserialize)]
struct PerfRow {
    id: String,
    name: String,
    tenant_id: String,
    tenant_name: String,
    status: String,
    cost_per_execution: f64,
    revenue_per_execution: f64,
    created_at: String,
    executions: i64,
    pending: i64,
    processing: i64,
    completed: i64,
    failed: i64,
    cancelled: i64,
    average_duration_seconds: Option<f64>,
}

impl From<PerfRow> for WorkflowPerformance {
    fn from(r: PerfRow) -> Self {
        let revenue = cents(r.completed as f64 * r.revenue_per_execution);
        let cost = cents((r.completed + r.failed) as f64 * r.cost_per_execution);
        WorkflowPerformance {
            workflow_id: r.id,
            workflow_name: r.name,
            tenant_id: r.tenant_id,
            tenant_name: r.tenant_name,
            status: r.status,
            cost_per_execution: r.cost_per_execution,
            revenue_per_execution: r.revenue_per_execution,
            created_at: r.created_at,
            stats: WorkflowStats {
                executions: r.executions,
                pending: r.pending,
                processing: r.processing,
                completed: r.completed,
                failed: r.failed,
                cancelled: r.cancelled,
                success_rate: percent(r.completed, r.completed + r.failed),
                average_duration_seconds: r
                    .average_duration_seconds
                    .map(|d| (d * 100.0).round() / 100.0),
                revenue,
                cost,
            },
            margin: cents(revenue - cost),
        }
    }
}

async fn workflow_stats(cx: Ctx) -> Result<Reply> {
    let page = cx.page()?;
    let mut q = Filter::new(
        &format!(
            "SELECT * FROM (SELECT w.id, w.name, w.tenant_id, t.name AS tenant_name, w.status, \
             w.cost_per_execution, w.revenue_per_execution, w.created_at, {STATS_COLUMNS} \
             FROM workflows w JOIN tenants t ON t.id = w.tenant_id \
             LEFT JOIN executions e ON e.workflow_id = w.id GROUP BY w.id) perf WHERE 1 = 1"
        ),
        args![],
    );
    q.and_opt(
        "perf.tenant_id = ?",
        cx.query_nonempty("tenant_id").map(Into::into),
    )
    .and_opt(
        "perf.status = ?",
        cx.query_enum("status", &STATUSES)?.map(Into::into),
    );
    q.page(&page, "perf");
    let rows: Vec<PerfRow> = cx.db()?.all(&q.sql, &q.args).await?;
    let rows: Vec<WorkflowPerformance> = rows.into_iter().map(Into::into).collect();
    let (rows, next) = page.finish(rows, |w| (w.created_at.clone(), w.workflow_id.clone()));
    Reply::list(&rows, next.as_deref())
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorEntry {
    /// The execution id (source `execution`) or the dead letter's id.
    pub id: String,
    /// `execution` or `dead_letter`.
    pub source: String,
    pub tenant_id: Option<String>,
    pub execution_id: Option<String>,
    pub workflow_id: Option<String>,
    /// `step`, `callback` or `unknown`.
    pub kind: String,
    pub error: Option<String>,
    pub attempts: i64,
    /// The dead-lettered message as it was queued.
    pub message: Option<String>,
    pub created_at: String,
}

async fn errors(cx: Ctx) -> Result<Reply> {
    let page = cx.page()?;
    let mut q = Filter::new(
        "SELECT * FROM (\
           SELECT e.id, 'execution' AS source, e.tenant_id, e.id AS execution_id, e.workflow_id, \
             'step' AS kind, e.error_message AS error, e.attempts, NULL AS message, \
             COALESCE(e.completed_at, e.updated_at) AS created_at \
           FROM executions e WHERE e.status = 'failed' \
           UNION ALL \
           SELECT d.id, 'dead_letter', d.tenant_id, d.execution_id, \
             (SELECT workflow_id FROM executions WHERE id = d.execution_id), d.kind, d.error, \
             d.attempts, d.message, d.created_at FROM dead_letters d\
         ) errors WHERE 1 = 1",
        args![],
    );
    q.and_opt(
        "errors.source = ?",
        cx.query_enum("source", &ERROR_SOURCES)?.map(Into::into),
    )
    .and_opt(
        "errors.tenant_id = ?",
        cx.query_nonempty("tenant_id").map(Into::into),
    )
    .and_opt(
        "errors.created_at >= ?",
        cx.query_time("from")?.map(Into::into),
    )
    .and_opt(
        "errors.created_at < ?",
        cx.query_time("to")?.map(Into::into),
    );
    q.page(&page, "errors");
    let rows: Vec<ErrorEntry> = cx.db()?.all(&q.sql, &q.args).await?;
    let (rows, next) = page.finish(rows, |e| (e.created_at.clone(), e.id.clone()));
    Reply::list(&rows, next.as_deref())
}

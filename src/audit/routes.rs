//! Reading the audit trail (tenant admins: their own; platform admin: all) and the request log.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::args;
use crate::handler;
use crate::http::context::Ctx;
use crate::http::pagination::PAGING;
use crate::http::reply::Reply;
use crate::http::router::{q, q_enum, Access, QueryDoc, Route};
use crate::platform::csv::csv_line;
use crate::platform::db::{Arg, Filter};
use crate::platform::error::Result;

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditLog {
    pub id: String,
    pub tenant_id: Option<String>,
    pub actor_id: Option<String>,
    pub actor_email: Option<String>,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    pub created_at: String,
}

/// An `audit_logs` row as stored (metadata as JSON text).
#[derive(Deserialize)]
pub(crate) struct AuditRow {
    id: String,
    tenant_id: Option<String>,
    actor_id: Option<String>,
    actor_email: Option<String>,
    action: String,
    target_type: Option<String>,
    target_id: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    request_id: Option<String>,
    metadata: String,
    created_at: String,
}

impl From<AuditRow> for AuditLog {
    fn from(r: AuditRow) -> Self {
        AuditLog {
            id: r.id,
            tenant_id: r.tenant_id,
            actor_id: r.actor_id,
            actor_email: r.actor_email,
            action: r.action,
            target_type: r.target_type,
            target_id: r.target_id,
            ip: r.ip,
            user_agent: r.user_agent,
            request_id: r.request_id,
            metadata: serde_json::from_str(&r.metadata).unwrap_or_default(),
            created_at: r.created_at,
        }
    }
}

/// The request log's rows (the type the jobs Worker inserts them from).
pub use crate::platform::queue::ApiLog;

const AUDIT_QUERY: [QueryDoc; 9] = [
    PAGING[0],
    PAGING[1],
    q("action", "string", "Only this action, e.g. `auth.login`."),
    q(
        "actor_id",
        "string",
        "Only entries by this user or API key.",
    ),
    q("target_id", "string", "Only entries about this object."),
    q("from", "string", "Entries at or after this RFC 3339 time."),
    q("to", "string", "Entries before this RFC 3339 time."),
    q_enum(
        "format",
        &["json", "csv"],
        "`csv` downloads the matching entries as CSV.",
    ),
    q(
        "q",
        "string",
        "Full-text search over action, actor e-mail, target and metadata (the search index; \
         every word must match, the last as a prefix).",
    ),
];

const ADMIN_AUDIT_QUERY: [QueryDoc; 10] = [
    AUDIT_QUERY[0],
    AUDIT_QUERY[1],
    AUDIT_QUERY[2],
    AUDIT_QUERY[3],
    AUDIT_QUERY[4],
    AUDIT_QUERY[5],
    AUDIT_QUERY[6],
    AUDIT_QUERY[7],
    AUDIT_QUERY[8],
    q("tenant_id", "string", "Only entries of this tenant."),
];

const API_LOG_QUERY: [QueryDoc; 8] = [
    PAGING[0],
    PAGING[1],
    q("tenant_id", "string", "Only requests of this tenant."),
    q("status", "integer", "Only responses with this HTTP status."),
    q_enum(
        "method",
        &["GET", "POST", "PUT", "PATCH", "DELETE"],
        "Only this method.",
    ),
    q(
        "route",
        "string",
        "Only this route pattern, e.g. `/api/v1/users/:id`.",
    ),
    q("from", "string", "Requests at or after this RFC 3339 time."),
    q("to", "string", "Requests before this RFC 3339 time."),
];

pub fn routes() -> Vec<Route> {
    vec![
        Route::get(
            "/api/v1/audit-logs",
            Access::TenantAdmin,
            handler!(tenant_audit),
        )
        .doc(
            "audit",
            "The tenant's audit trail (JSON, or CSV with ?format=csv)",
        )
        .list("AuditLog")
        .csv()
        .query(&AUDIT_QUERY),
        Route::get(
            "/api/v1/admin/audit-logs",
            Access::PlatformAdmin,
            handler!(admin_audit),
        )
        .doc("admin", "The audit trail of every tenant")
        .list("AuditLog")
        .csv()
        .query(&ADMIN_AUDIT_QUERY),
        Route::get(
            "/api/v1/admin/api-logs",
            Access::PlatformAdmin,
            handler!(api_logs),
        )
        .doc("admin", "The API request log")
        .list("ApiLog")
        .query(&API_LOG_QUERY),
    ]
}

async fn tenant_audit(cx: Ctx) -> Result<Reply> {
    let tenant = cx.tenant_id()?.to_string();
    audit_list(&cx, Some(tenant)).await
}

async fn admin_audit(cx: Ctx) -> Result<Reply> {
    let tenant = cx.query_nonempty("tenant_id").map(str::to_string);
    audit_list(&cx, tenant).await
}

async fn audit_list(cx: &Ctx, tenant_id: Option<String>) -> Result<Reply> {
    let page = cx.page()?;
    let csv = cx.query_enum("format", &["json", "csv"])?.as_deref() == Some("csv");
    let mut q = Filter::new("SELECT * FROM audit_logs WHERE 1 = 1", args![]);
    if let Some(text) = cx.query("q").filter(|t| !t.is_empty()) {
        crate::search::audit_filter(&mut q, tenant_id.as_deref(), text)?;
    }
    q.and_opt("audit_logs.tenant_id = ?", tenant_id.map(Arg::from))
        .and_opt(
            "audit_logs.action = ?",
            cx.query_nonempty("action").map(Arg::from),
        )
        .and_opt(
            "audit_logs.actor_id = ?",
            cx.query_nonempty("actor_id").map(Arg::from),
        )
        .and_opt(
            "audit_logs.target_id = ?",
            cx.query_nonempty("target_id").map(Arg::from),
        )
        .and_opt(
            "audit_logs.created_at >= ?",
            cx.query_time("from")?.map(Arg::from),
        )
        .and_opt(
            "audit_logs.created_at < ?",
            cx.query_time("to")?.map(Arg::from),
        );
    q.page(&page, "audit_logs");
    let rows: Vec<AuditRow> = cx.db()?.all(&q.sql, &q.args).await?;
    let entries: Vec<AuditLog> = rows.into_iter().map(Into::into).collect();
    let (entries, next) = page.finish(entries, |e| (e.created_at.clone(), e.id.clone()));
    if csv {
        let mut reply = Reply::text(200, to_csv(&entries), "text/csv; charset=utf-8").with_header(
            "Content-Disposition",
            "attachment; filename=\"audit-logs.csv\"",
        );
        if let Some(n) = next {
            reply = reply.with_header("X-Next-Cursor", n);
        }
        return Ok(reply);
    }
    Reply::list(&entries, next.as_deref())
}

async fn api_logs(cx: Ctx) -> Result<Reply> {
    let page = cx.page()?;
    let status = match cx.query_nonempty("status") {
        None => None,
        Some(s) => Some(
            s.parse::<i64>()
                .ok()
                .filter(|n| (100..600).contains(n))
                .ok_or_else(|| {
                    crate::platform::error::AppError::field("status", "must be an HTTP status code")
                })?,
        ),
    };
    let mut q = Filter::new("SELECT * FROM api_logs WHERE 1 = 1", args![]);
    q.and_opt(
        "api_logs.tenant_id = ?",
        cx.query_nonempty("tenant_id").map(Arg::from),
    )
    .and_opt("api_logs.status = ?", status.map(Arg::from))
    .and_opt(
        "api_logs.method = ?",
        cx.query_enum("method", &["GET", "POST", "PUT", "PATCH", "DELETE"])?
            .map(Arg::from),
    )
    .and_opt(
        "api_logs.route = ?",
        cx.query_nonempty("route").map(Arg::from),
    )
    .and_opt(
        "api_logs.created_at >= ?",
        cx.query_time("from")?.map(Arg::from),
    )
    .and_opt(
        "api_logs.created_at < ?",
        cx.query_time("to")?.map(Arg::from),
    );
    q.page(&page, "api_logs");
    let rows: Vec<ApiLog> = cx.db()?.all(&q.sql, &q.args).await?;
    let (rows, next) = page.finish(rows, |r| (r.created_at.clone(), r.id.clone()));
    Reply::list(&rows, next.as_deref())
}

pub fn to_csv(entries: &[AuditLog]) -> String {
    let mut out = String::from(
        "id,created_at,tenant_id,actor_id,actor_email,action,target_type,target_id,ip,user_agent,request_id,metadata\r\n",
    );
    for e in entries {
        let cols = [
            e.id.as_str(),
            e.created_at.as_str(),
            e.tenant_id.as_deref().unwrap_or(""),
            e.actor_id.as_deref().unwrap_or(""),
            e.actor_email.as_deref().unwrap_or(""),
            e.action.as_str(),
            e.target_type.as_deref().unwrap_or(""),
            e.target_id.as_deref().unwrap_or(""),
            e.ip.as_deref().unwrap_or(""),
            e.user_agent.as_deref().unwrap_or(""),
            e.request_id.as_deref().unwrap_or(""),
            &e.metadata.to_string(),
        ];
        out.push_str(&csv_line(&cols));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_has_a_header_and_one_line_per_entry() {
        let e = AuditLog {
            id: "aud_1".into(),
            tenant_id: Some("ten_1".into()),
            actor_id: None,
            actor_email: Some("a@b.io".into()),
            action: "auth.login".into(),
            target_type: None,
            target_id: None,
            ip: Some("1.2.3.4".into()),
            user_agent: Some("curl/8".into()),
            request_id: None,
            metadata: serde_json::json!({"k": "v"}),
            created_at: "2026-11-23T00:00:00.000Z".into(),
        };
        let csv = to_csv(&[e]);
        let lines: Vec<_> = csv.trim_end().split("\r\n").collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[1].contains("auth.login"));
        assert!(lines[1].ends_with("\"{\"\"k\"\":\"\"v\"\"}\""));
    }
}

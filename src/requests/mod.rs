//! Clients' requests for new workflows. Any tenant user files one; the platform admin (the
//! agency) reviews them across organisations and moves them pending → in_review →
//! approved/rejected → completed.

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::args;
use crate::audit;
use crate::handler;
use crate::http::context::Ctx;
use crate::http::json::{self as j, Checks};
use crate::http::pagination::PAGING;
use crate::http::reply::Reply;
use crate::http::router::{q, q_enum, Access, QueryDoc, Route};
use crate::platform::db::{Arg, Filter};
use crate::platform::error::{AppError, Result};
use crate::platform::ids;

pub const STATUSES: [&str; 5] = ["pending", "in_review", "approved", "rejected", "completed"];

const LIST_QUERY: [QueryDoc; 4] = [
    PAGING[0],
    PAGING[1],
    q_enum("status", &STATUSES, "Only requests with this status."),
    q(
        "tenant_id",
        "string",
        "Platform admin: only this organisation's.",
    ),
];

pub fn routes() -> Vec<Route> {
    vec![
        Route::get("/api/v1/workflow-requests", Access::User, handler!(list))
            .doc(
                "workflow-requests",
                "Requests for new workflows (the platform admin sees every organisation's)",
            )
            .list("WorkflowRequest")
            .query(&LIST_QUERY),
        Route::post("/api/v1/workflow-requests", Access::User, handler!(create))
            .doc("workflow-requests", "Ask the agency for a new workflow")
            .body("CreateWorkflowRequest")
            .created("WorkflowRequest")
            .idempotent(),
        Route::get("/api/v1/workflow-requests/:id", Access::User, handler!(get))
            .doc("workflow-requests", "One request")
            .ok("WorkflowRequest"),
        Route::patch(
            "/api/v1/workflow-requests/:id",
            Access::PlatformAdmin,
            handler!(update),
        )
        .doc(
            "workflow-requests",
            "Review a request: pending → in_review → approved | rejected; approved → completed",
        )
        .body("UpdateWorkflowRequest")
        .ok("WorkflowRequest"),
    ]
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WorkflowRequest {
    pub id: String,
    pub tenant_id: String,
    pub title: String,
    pub description: String,
    /// EUR, if the client named one.
    pub budget: Option<f64>,
    /// `pending`, `in_review`, `approved`, `rejected` or `completed`.
    pub status: String,
    pub requested_by: Option<String>,
    pub admin_notes: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkflowRequest {
    pub title: String,
    pub description: String,
    pub budget: Option<f64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWorkflowRequest {
    pub status: Option<String>,
    pub admin_notes: Option<String>,
}

/// Whether a request may move from `from` to `to` (staying put is always allowed).
pub fn transition_allowed(from: &str, to: &str) -> bool {
    from == to
        || matches!(
            (from, to),
            ("pending", "in_review" | "approved" | "rejected")
                | ("in_review", "approved" | "rejected")
                | ("approved", "completed")
        )
}

const COLUMNS: &str =
    "workflow_requests.id, workflow_requests.tenant_id, workflow_requests.title, \
     workflow_requests.description, workflow_requests.budget, workflow_requests.status, \
     workflow_requests.requested_by, workflow_requests.admin_notes, workflow_requests.created_at, \
     workflow_requests.updated_at";

async fn find(cx: &Ctx, id: &str) -> Result<WorkflowRequest> {
    let mut f = Filter::new(
        &format!("SELECT {COLUMNS} FROM workflow_requests WHERE workflow_requests.id = ?1"),
        args![id],
    );
    f.and_opt(
        "workflow_requests.tenant_id = ?",
        cx.scope()?.map(Arg::from),
    );
    cx.db()?
        .one(&f.sql, &f.args)
        .await?
        .ok_or(AppError::NotFound)
}

async fn list(cx: Ctx) -> Result<Reply> {
    let page = cx.page()?;
    let mut f = Filter::new(
        &format!("SELECT {COLUMNS} FROM workflow_requests WHERE 1 = 1"),
        args![],
    );
    f.and_opt(
        "workflow_requests.tenant_id = ?",
        cx.scope()?.map(Arg::from),
    )
    .and_opt(
        "workflow_requests.tenant_id = ?",
        cx.scope_filter()?.map(Arg::from),
    )
    .and_opt(
        "workflow_requests.status = ?",
        cx.query_enum("status", &STATUSES)?.map(Arg::from),
    );
    f.page(&page, "workflow_requests");
    let rows: Vec<WorkflowRequest> = cx.db()?.all(&f.sql, &f.args).await?;
    let (rows, next) = page.finish(rows, |r| (r.created_at.clone(), r.id.clone()));
    Reply::list(&rows, next.as_deref())
}

async fn get(cx: Ctx) -> Result<Reply> {
    Reply::ok(&find(&cx, cx.param("id")).await?)
}

async fn create(cx: Ctx) -> Result<Reply> {
    let body: CreateWorkflowRequest = cx.json()?;
    let mut checks = Checks::new();
    let title = checks.take("title", j::text(&body.title, 1, 200));
    let description = checks.take("description", j::text(&body.description, 1, 5000));
    if let Some(b) = body.budget {
        if !b.is_finite() || !(0.0..=10_000_000.0).contains(&b) {
            checks.add("budget", "must be between 0 and 10000000");
        }
    }
    checks.finish()?;
    let db = cx.db()?;
    let id = ids::new_id("wrq");
    let now = cx.now();
    db.batch(vec![
        db.stmt(
            "INSERT INTO workflow_requests (id, tenant_id, title, description, budget, status, \
             requested_by, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?7, ?7)",
            &args![
                id.as_str(),
                cx.tenant_id()?,
                title,
                description,
                body.budget.map(|b| (b * 100.0).round() / 100.0),
                cx.principal()?.user_id.clone(),
                now
            ],
        )?,
        audit::entry(&cx, "workflow_request.created")
            .target("workflow_request", id.as_str())
            .stmt(&db)?,
    ])
    .await?;
    let created = find(&cx, &id).await?;
    Reply::created(&created, Some(format!("/api/v1/workflow-requests/{id}")))
}

async fn update(cx: Ctx) -> Result<Reply> {
    let body: UpdateWorkflowRequest = cx.json()?;
    let mut checks = Checks::new();
    if let Some(s) = &body.status {
        if !STATUSES.contains(&s.as_str()) {
            checks.add("status", format!("must be one of {}", STATUSES.join(", ")));
        }
    }
    let notes = body
        .admin_notes
        .as_ref()
        .and_then(|n| checks.take("admin_notes", j::text(n, 0, 5000)));
    checks.finish()?;
    let current = find(&cx, cx.param("id")).await?;
    let status = body.status.clone().unwrap_or(current.status.clone());
    if !transition_allowed(&current.status, &status) {
        return Err(AppError::Conflict(format!(
            "A request that is {} cannot become {status}.",
            current.status
        )));
    }
    let db = cx.db()?;
    db.batch(vec![
        db.stmt(
            "UPDATE workflow_requests SET status = ?2, admin_notes = ?3, updated_at = ?4 WHERE id = ?1",
            &args![
                current.id.as_str(),
                status.as_str(),
                notes.or(current.admin_notes.clone()),
                cx.now()
            ],
        )?,
        audit::entry(&cx, "workflow_request.updated")
            .tenant(current.tenant_id.as_str())
            .target("workflow_request", current.id.as_str())
            .meta(json!({"from": current.status, "to": status}))
            .stmt(&db)?,
    ])
    .await?;
    Reply::ok(&find(&cx, &current.id).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_move_forward_only_along_the_review_path() {
        assert!(transition_allowed("pending", "in_review"));
        assert!(transition_allowed("pending", "rejected"));
        assert!(transition_allowed("in_review", "approved"));
        assert!(transition_allowed("approved", "completed"));
        assert!(transition_allowed("approved", "approved"));
        assert!(!transition_allowed("pending", "completed"));
        assert!(!transition_allowed("rejected", "approved"));
        assert!(!transition_allowed("completed", "pending"));
        assert!(!transition_allowed("in_review", "pending"));
    }
}

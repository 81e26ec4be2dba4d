//! Support tickets between client users and the agency: status, priority and a comment thread.
//! Internal notes (comments with `internal: true`) are written and read only by the platform
//! admin. Tenant users edit their tickets' text and priority, close them, or reopen a resolved
//! one; the platform admin sets any status.

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

pub const STATUSES: [&str; 4] = ["open", "in_progress", "resolved", "closed"];
pub const PRIORITIES: [&str; 4] = ["low", "medium", "high", "urgent"];

const LIST_QUERY: [QueryDoc; 5] = [
    PAGING[0],
    PAGING[1],
    q_enum("status", &STATUSES, "Only tickets with this status."),
    q_enum("priority", &PRIORITIES, "Only tickets with this priority."),
    q(
        "tenant_id",
        "string",
        "Platform admin: only this organisation's.",
    ),
];

pub fn routes() -> Vec<Route> {
    vec![
        Route::get("/api/v1/support-tickets", Access::User, handler!(list))
            .doc(
                "support-tickets",
                "Support tickets (the platform admin sees every organisation's)",
            )
            .list("Ticket")
            .query(&LIST_QUERY),
        Route::post("/api/v1/support-tickets", Access::User, handler!(create))
            .doc("support-tickets", "Open a ticket")
            .body("CreateTicket")
            .created("Ticket")
            .idempotent(),
        Route::get("/api/v1/support-tickets/:id", Access::User, handler!(get))
            .doc("support-tickets", "A ticket with its comments, oldest first")
            .ok("Ticket"),
        Route::patch("/api/v1/support-tickets/:id", Access::User, handler!(update))
            .doc(
                "support-tickets",
                "Edit, reprioritise or change status (tenant users: close, or reopen a resolved ticket)",
            )
            .body("UpdateTicket")
            .ok("Ticket"),
        Route::post(
            "/api/v1/support-tickets/:id/comments",
            Access::User,
            handler!(comment),
        )
        .doc(
            "support-tickets",
            "Comment on a ticket; `internal` notes are for the platform admin only",
        )
        .body("CreateComment")
        .created("Comment")
        .idempotent(),
    ]
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Ticket {
    pub id: String,
    pub tenant_id: String,
    pub subject: String,
    pub description: String,
    /// `low`, `medium`, `high` or `urgent`.
    pub priority: String,
    /// `open`, `in_progress`, `resolved` or `closed`.
    pub status: String,
    pub created_by: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// Only on `GET /support-tickets/:id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comments: Option<Vec<Comment>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Comment {
    pub id: String,
    pub ticket_id: String,
    pub author_id: Option<String>,
    pub author_name: String,
    pub author_role: String,
    pub body: String,
    pub internal: bool,
    pub created_at: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTicket {
    pub subject: String,
    pub description: String,
    /// Default `medium`.
    pub priority: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTicket {
    pub subject: Option<String>,
    pub description: Option<String>,
    pub priority: Option<String>,
    pub status: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateComment {
    pub body: String,
    /// Platform admin only: a note the client never sees.
    #[serde(default)]
    pub internal: bool,
}

/// Status changes a tenant user may make; the platform admin may make any.
pub fn client_may_set(from: &str, to: &str) -> bool {
    from == to || to == "closed" || (from == "resolved" && to == "open")
}

fn one_of(checks: &mut Checks, field: &str, v: &Option<String>, allowed: &[&str]) {
    if let Some(v) = v {
        if !allowed.contains(&v.as_str()) {
            checks.add(field, format!("must be one of {}", allowed.join(", ")));
        }
    }
}

const COLUMNS: &str = "support_tickets.id, support_tickets.tenant_id, support_tickets.subject, \
     support_tickets.description, support_tickets.priority, support_tickets.status, \
     support_tickets.created_by, support_tickets.created_at, support_tickets.updated_at";

async fn find(cx: &Ctx, id: &str) -> Result<Ticket> {
    let mut f = Filter::new(
        &format!("SELECT {COLUMNS} FROM support_tickets WHERE support_tickets.id = ?1"),
        args![id],
    );
    f.and_opt("support_tickets.tenant_id = ?", cx.scope()?.map(Arg::from));
    cx.db()?
        .one(&f.sql, &f.args)
        .await?
        .ok_or(AppError::NotFound)
}

async fn with_comments(cx: &Ctx, mut t: Ticket) -> Result<Ticket> {
    #[derive(Deserialize)]
    struct Row {
        id: String,
        ticket_id: String,
        author_id: Option<String>,
        author_name: String,
        author_role: String,
        body: String,
        internal: i64,
        created_at: String,
    }
    let staff = cx.scope()?.is_none();
    let rows: Vec<Row> = cx
        .db()?
        .all(
            "SELECT id, ticket_id, author_id, author_name, author_role, body, internal, created_at \
             FROM ticket_comments WHERE ticket_id = ?1 AND (internal = 0 OR ?2 = 1) \
             ORDER BY created_at, id",
            &args![t.id.as_str(), staff],
        )
        .await?;
    t.comments = Some(
        rows.into_iter()
            .map(|r| Comment {
                id: r.id,
                ticket_id: r.ticket_id,
                author_id: r.author_id,
                author_name: r.author_name,
                author_role: r.author_role,
                body: r.body,
                internal: r.internal != 0,
                created_at: r.created_at,
            })
            .collect(),
    );
    Ok(t)
}

async fn list(cx: Ctx) -> Result<Reply> {
    let page = cx.page()?;
    let mut f = Filter::new(
        &format!("SELECT {COLUMNS} FROM support_tickets WHERE 1 = 1"),
        args![],
    );
    f.and_opt("support_tickets.tenant_id = ?", cx.scope()?.map(Arg::from))
        .and_opt(
            "support_tickets.tenant_id = ?",
            cx.scope_filter()?.map(Arg::from),
        )
        .and_opt(
            "support_tickets.status = ?",
            cx.query_enum("status", &STATUSES)?.map(Arg::from),
        )
        .and_opt(
            "support_tickets.priority = ?",
            cx.query_enum("priority", &PRIORITIES)?.map(Arg::from),
        );
    f.page(&page, "support_tickets");
    let rows: Vec<Ticket> = cx.db()?.all(&f.sql, &f.args).await?;
    let (rows, next) = page.finish(rows, |t| (t.created_at.clone(), t.id.clone()));
    Reply::list(&rows, next.as_deref())
}

async fn get(cx: Ctx) -> Result<Reply> {
    let t = find(&cx, cx.param("id")).await?;
    Reply::ok(&with_comments(&cx, t).await?)
}

async fn create(cx: Ctx) -> Result<Reply> {
    let body: CreateTicket = cx.json()?;
    let mut checks = Checks::new();
    let subject = checks.take("subject", j::text(&body.subject, 1, 200));
    let description = checks.take("description", j::text(&body.description, 1, 10_000));
    one_of(&mut checks, "priority", &body.priority, &PRIORITIES);
    checks.finish()?;
    let db = cx.db()?;
    let id = ids::new_id("tkt");
    let priority = body.priority.clone().unwrap_or_else(|| "medium".into());
    db.batch(vec![
        db.stmt(
            "INSERT INTO support_tickets (id, tenant_id, subject, description, priority, status, \
             created_by, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, 'open', ?6, ?7, ?7)",
            &args![
                id.as_str(),
                cx.tenant_id()?,
                subject,
                description,
                priority.as_str(),
                cx.principal()?.user_id.clone(),
                cx.now()
            ],
        )?,
        audit::entry(&cx, "ticket.created")
            .target("ticket", id.as_str())
            .meta(json!({"priority": priority}))
            .stmt(&db)?,
    ])
    .await?;
    let t = with_comments(&cx, find(&cx, &id).await?).await?;
    Reply::created(&t, Some(format!("/api/v1/support-tickets/{id}")))
}

async fn update(cx: Ctx) -> Result<Reply> {
    let body: UpdateTicket = cx.json()?;
    let mut checks = Checks::new();
    let subject = body
        .subject
        .as_ref()
        .and_then(|s| checks.take("subject", j::text(s, 1, 200)));
    let description = body
        .description
        .as_ref()
        .and_then(|d| checks.take("description", j::text(d, 1, 10_000)));
    one_of(&mut checks, "priority", &body.priority, &PRIORITIES);
    one_of(&mut checks, "status", &body.status, &STATUSES);
    checks.finish()?;
    let current = find(&cx, cx.param("id")).await?;
    let status = body.status.clone().unwrap_or(current.status.clone());
    if cx.scope()?.is_some() && !client_may_set(&current.status, &status) {
        return Err(AppError::Forbidden(
            "forbidden",
            "You can close a ticket or reopen a resolved one; the agency sets other statuses."
                .into(),
        ));
    }
    let db = cx.db()?;
    db.batch(vec![
        db.stmt(
            "UPDATE support_tickets SET subject = ?2, description = ?3, priority = ?4, status = ?5, \
             updated_at = ?6 WHERE id = ?1",
            &args![
                current.id.as_str(),
                subject.unwrap_or(current.subject.clone()),
                description.unwrap_or(current.description.clone()),
                body.priority.clone().unwrap_or(current.priority.clone()),
                status.as_str(),
                cx.now()
            ],
        )?,
        audit::entry(&cx, "ticket.updated")
            .tenant(current.tenant_id.as_str())
            .target("ticket", current.id.as_str())
            .meta(json!({"from": current.status, "to": status, "priority": body.priority}))
            .stmt(&db)?,
    ])
    .await?;
    let t = with_comments(&cx, find(&cx, &current.id).await?).await?;
    Reply::ok(&t)
}

async fn comment(cx: Ctx) -> Result<Reply> {
    #[derive(Deserialize)]
    struct Author {
        full_name: String,
    }
    let body: CreateComment = cx.json()?;
    let text = j::text(&body.body, 1, 10_000).map_err(|m| AppError::field("body", m))?;
    let staff = cx.scope()?.is_none();
    if body.internal && !staff {
        return Err(AppError::Forbidden(
            "forbidden",
            "Only the platform admin writes internal notes.".into(),
        ));
    }
    let ticket = find(&cx, cx.param("id")).await?;
    let db = cx.db()?;
    let principal = cx.principal()?;
    let author_name = match &principal.user_id {
        Some(uid) => db
            .one::<Author>(
                "SELECT full_name FROM users WHERE id = ?1",
                &args![uid.as_str()],
            )
            .await?
            .map(|a| a.full_name)
            .unwrap_or_default(),
        None => "API key".into(),
    };
    let id = ids::ordered_id("tcm", cx.now_ms);
    let now = cx.now();
    // A client's reply to a resolved ticket means it is not resolved after all.
    let reopen = !staff && ticket.status == "resolved";
    db.batch(vec![
        db.stmt(
            "INSERT INTO ticket_comments (id, ticket_id, author_id, author_name, author_role, body, \
             internal, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            &args![
                id.as_str(),
                ticket.id.as_str(),
                principal.user_id.clone(),
                author_name.as_str(),
                principal.role.as_str(),
                text.as_str(),
                body.internal,
                now.as_str()
            ],
        )?,
        db.stmt(
            "UPDATE support_tickets SET updated_at = ?2, \
             status = CASE WHEN ?3 = 1 THEN 'open' ELSE status END WHERE id = ?1",
            &args![ticket.id.as_str(), now.as_str(), reopen],
        )?,
        audit::entry(&cx, "ticket.commented")
            .tenant(ticket.tenant_id.as_str())
            .target("ticket", ticket.id.as_str())
            .meta(json!({"internal": body.internal}))
            .stmt(&db)?,
    ])
    .await?;
    let c = Comment {
        id,
        ticket_id: ticket.id.clone(),
        author_id: principal.user_id.clone(),
        author_name,
        author_role: principal.role.as_str().to_string(),
        body: text,
        internal: body.internal,
        created_at: now,
    };
    Reply::created(&c, Some(format!("/api/v1/support-tickets/{}", ticket.id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_close_or_reopen_resolved_tickets_only() {
        assert!(client_may_set("open", "closed"));
        assert!(client_may_set("in_progress", "closed"));
        assert!(client_may_set("resolved", "open"));
        assert!(client_may_set("open", "open"));
        assert!(!client_may_set("open", "resolved"));
        assert!(!client_may_set("open", "in_progress"));
        assert!(!client_may_set("closed", "open"));
    }
}

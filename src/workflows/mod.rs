//! Module W: priced workflows per tenant and their executions, run step by step on the jobs
//! queue (see `engine`). Tenant users see their own organisation's; the platform admin (the
//! agency) works across all of them and may name a `tenant_id`.

pub mod admin;
pub mod callbacks;
pub mod config;
pub mod db;
pub mod engine;
pub mod execution;
pub mod model;
pub mod template;

use serde_json::{json, Value};

use crate::args;
use crate::audit;
use crate::billing::plans::Metric;
use crate::billing::usage;
use crate::handler;
use crate::http::context::Ctx;
use crate::http::json::Checks;
use crate::http::pagination::PAGING;
use crate::http::reply::Reply;
use crate::http::router::{q, q_enum, Access, QueryDoc, Route};
use crate::platform::error::{AppError, Result};
use crate::platform::outbox::{self, Staged};
use crate::platform::queue::{self, Job};
use crate::platform::state::sql_list;
use crate::platform::{clock, ids};
use db::{ExecutionFilter, WorkflowFilter};
use execution::{Event, ExecutionStatus};
use model::{CreateWorkflow, ExecuteWorkflow, StartedExecution, UpdateWorkflow, STATUSES};

const WORKFLOW_QUERY: [QueryDoc; 5] = [
    PAGING[0],
    PAGING[1],
    q_enum(
        "status",
        &STATUSES,
        "Only workflows with this status (archived ones are listed only when asked for).",
    ),
    q("q", "string", "Search in name and description."),
    q(
        "tenant_id",
        "string",
        "Platform admin: only this organisation's.",
    ),
];

const EXECUTION_QUERY: [QueryDoc; 7] = [
    PAGING[0],
    PAGING[1],
    q_enum(
        "status",
        &ExecutionStatus::NAMES,
        "Only executions with this status.",
    ),
    q("workflow_id", "string", "Only this workflow's executions."),
    q(
        "from",
        "string",
        "Created at or after this time (RFC 3339).",
    ),
    q("to", "string", "Created before this time (RFC 3339)."),
    q(
        "tenant_id",
        "string",
        "Platform admin: only this organisation's.",
    ),
];

pub fn routes() -> Vec<Route> {
    vec![
        Route::get("/api/v1/workflows", Access::User, handler!(list))
            .doc("workflows", "List workflows")
            .list("Workflow")
            .query(&WORKFLOW_QUERY),
        Route::post("/api/v1/workflows", Access::TenantAdmin, handler!(create))
            .doc(
                "workflows",
                "Define a workflow (tenant admin in their own organisation; the platform admin names `tenant_id`)",
            )
            .body("CreateWorkflow")
            .created("Workflow")
            .idempotent(),
        Route::get("/api/v1/workflows/:id", Access::User, handler!(get))
            .doc("workflows", "One workflow with its execution stats")
            .ok("Workflow"),
        Route::patch("/api/v1/workflows/:id", Access::TenantAdmin, handler!(update))
            .doc(
                "workflows",
                "Change a workflow; `status: deployed` deploys it, `draft` takes it offline",
            )
            .body("UpdateWorkflow")
            .ok("Workflow"),
        Route::delete("/api/v1/workflows/:id", Access::TenantAdmin, handler!(archive))
            .doc(
                "workflows",
                "Archive a workflow (kept with its history; no new executions)",
            )
            .no_content(),
        Route::post("/api/v1/workflows/:id/execute", Access::User, handler!(execute))
            .doc(
                "workflows",
                "Start an execution of a deployed workflow; poll the Location",
            )
            .body("ExecuteWorkflow")
            .accepted("StartedExecution")
            .idempotent()
            .metered(),
        Route::get(
            "/api/v1/workflows/:id/executions",
            Access::User,
            handler!(workflow_executions),
        )
        .doc("workflows", "A workflow's executions, newest first")
        .list("Execution")
        .query(&EXECUTION_QUERY[..5]),
        Route::get("/api/v1/workflows/:id/stats", Access::User, handler!(stats))
            .doc(
                "workflows",
                "Count, success rate, average duration, revenue and cost",
            )
            .ok("WorkflowStats"),
        Route::get("/api/v1/executions", Access::User, handler!(executions))
            .doc("executions", "List executions, newest first")
            .list("Execution")
            .query(&EXECUTION_QUERY),
        Route::get("/api/v1/executions/:id", Access::User, handler!(execution))
            .doc(
                "executions",
                "One execution with progress and every step attempt",
            )
            .ok("Execution"),
        Route::post(
            "/api/v1/executions/:id/cancel",
            Access::User,
            handler!(cancel),
        )
        .doc("executions", "Cancel a pending or running execution")
        .ok("Execution"),
        Route::post(
            "/api/v1/admin/executions/:id/requeue",
            Access::PlatformAdmin,
            handler!(requeue),
        )
        .doc(
            "admin",
            "Send the message for a running execution's current step again (safe: a step never runs twice)",
        )
        .accepted("Execution"),
    ]
}

async fn list(cx: Ctx) -> Result<Reply> {
    let page = cx.page()?;
    let filter = WorkflowFilter {
        tenant_id: cx.scope_filter()?,
        status: cx.query_enum("status", &STATUSES)?,
        q: cx.query_nonempty("q").map(str::to_string),
    };
    let rows = db::list_workflows(&cx.db()?, cx.scope()?, &filter, &page).await?;
    let (rows, next) = page.finish(rows, |w| (w.created_at.clone(), w.id.clone()));
    Reply::list(&rows, next.as_deref())
}

async fn get(cx: Ctx) -> Result<Reply> {
    let db = cx.db()?;
    let mut w = db::get_workflow(&db, cx.scope()?, cx.param("id")).await?;
    w.stats = Some(db::workflow_stats(&db, &w).await?);
    Reply::ok(&w)
}

async fn stats(cx: Ctx) -> Result<Reply> {
    let db = cx.db()?;
    let w = db::get_workflow(&db, cx.scope()?, cx.param("id")).await?;
    Reply::ok(&db::workflow_stats(&db, &w).await?)
}

async fn create(cx: Ctx) -> Result<Reply> {
    let (tenant_id, f) = cx.json::<CreateWorkflow>()?.validate(&cx.egress())?;
    let own = cx.tenant_id()?.to_string();
    let db = cx.db()?;
    let tenant_id = match (cx.scope()?, tenant_id) {
        (_, None) => own,
        (Some(mine), Some(t)) if t != mine => {
            return Err(AppError::Forbidden(
                "forbidden",
                "Only the platform admin creates workflows for another organisation.".into(),
            ))
        }
        (Some(_), Some(t)) => t,
        (None, Some(t)) => {
            crate::tenants::db::get(&db, &t)
                .await?
                .ok_or_else(|| AppError::field("tenant_id", "no such organisation"))?;
            t
        }
    };
    let id = ids::new_id("wfl");
    let now = cx.now();
    let status = f.status.clone().unwrap_or_else(|| "draft".into());
    let deployed_at = (status == "deployed").then(|| now.clone());
    let config = f.config.as_ref().ok_or(AppError::NotFound)?;
    db.batch(vec![
        db.stmt(
            "INSERT INTO workflows (id, tenant_id, name, description, status, config, \
             cost_per_execution, revenue_per_execution, created_at, updated_at, deployed_at, \
             managed) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10, ?11)",
            &args![
                id.as_str(),
                tenant_id.as_str(),
                f.name.clone(),
                f.description.clone(),
                status.as_str(),
                serde_json::to_string(config)?,
                f.cost,
                f.revenue,
                now.as_str(),
                deployed_at,
                // Made by the platform admin: its pricing stays the agency's.
                cx.scope()?.is_none()
            ],
        )?,
        audit::entry(&cx, "workflow.created")
            .tenant(tenant_id.as_str())
            .target("workflow", id.as_str())
            .meta(json!({"name": f.name, "status": status}))
            .stmt(&db)?,
    ])
    .await?;
    let w = db::get_workflow(&db, None, &id).await?;
    Reply::created(&w, Some(format!("/api/v1/workflows/{id}")))
}

async fn update(cx: Ctx) -> Result<Reply> {
    let body: UpdateWorkflow = cx.json()?;
    let mut checks = Checks::new();
    let f = body.validate(&cx.egress(), &mut checks);
    checks.finish()?;
    let db = cx.db()?;
    let current = db::get_workflow(&db, cx.scope()?, cx.param("id")).await?;
    if cx.scope()?.is_some() && repricing(&current, &f) {
        return Err(AppError::Forbidden(
            "forbidden",
            "The platform admin manages this workflow's pricing (cost_per_execution, \
             revenue_per_execution); you may still deploy, pause or edit it otherwise."
                .into(),
        ));
    }
    let now = cx.now();
    let status = f.status.clone().unwrap_or(current.status.clone());
    let deployed_at = if status == "deployed" && current.status != "deployed" {
        Some(now.clone())
    } else {
        current.deployed_at.clone()
    };
    let config = f.config.as_ref().unwrap_or(&current.config);
    db.batch(vec![
        db.stmt(
            "UPDATE workflows SET name = ?3, description = ?4, status = ?5, config = ?6, \
             cost_per_execution = ?7, revenue_per_execution = ?8, updated_at = ?9, deployed_at = ?10 \
             WHERE id = ?1 AND tenant_id = ?2",
            &args![
                current.id.as_str(),
                current.tenant_id.as_str(),
                f.name.clone().unwrap_or(current.name.clone()),
                f.description.clone().unwrap_or(current.description.clone()),
                status.as_str(),
                serde_json::to_string(config)?,
                f.cost.unwrap_or(current.cost_per_execution),
                f.revenue.unwrap_or(current.revenue_per_execution),
                now.as_str(),
                deployed_at
            ],
        )?,
        audit::entry(&cx, "workflow.updated")
            .tenant(current.tenant_id.as_str())
            .target("workflow", current.id.as_str())
            .meta(json!({"status": status, "config_changed": f.config.is_some()}))
            .stmt(&db)?,
    ])
    .await?;
    let w = db::get_workflow(&db, None, &current.id).await?;
    Reply::ok(&w)
}

/// Whether an update changes the pricing of a workflow the platform admin manages.
fn repricing(current: &model::Workflow, f: &model::Fields) -> bool {
    let changes = |new: Option<f64>, old: f64| new.is_some_and(|n| (n - old).abs() > 1e-9);
    current.managed
        && (changes(f.cost, current.cost_per_execution)
            || changes(f.revenue, current.revenue_per_execution))
}

async fn archive(cx: Ctx) -> Result<Reply> {
    let db = cx.db()?;
    let w = db::get_workflow(&db, cx.scope()?, cx.param("id")).await?;
    if w.status != "archived" {
        db.batch(vec![
            db.stmt(
                "UPDATE workflows SET status = 'archived', updated_at = ?3 WHERE id = ?1 AND tenant_id = ?2",
                &args![w.id.as_str(), w.tenant_id.as_str(), cx.now()],
            )?,
            audit::entry(&cx, "workflow.archived")
                .tenant(w.tenant_id.as_str())
                .target("workflow", w.id.as_str())
                .stmt(&db)?,
        ])
        .await?;
    }
    Ok(Reply::no_content())
}

async fn execute(cx: Ctx) -> Result<Reply> {
    let body: ExecuteWorkflow = cx.json()?;
    let input = match body.input_data {
        None | Some(Value::Null) => json!({}),
        Some(v @ Value::Object(_)) => v,
        Some(_) => return Err(AppError::field("input_data", "must be a JSON object")),
    };
    let db = cx.db()?;
    let w = db::get_workflow(&db, cx.scope()?, cx.param("id")).await?;
    if w.status != "deployed" {
        return Err(AppError::Conflict(format!(
            "The workflow is {}; only deployed workflows can be executed.",
            w.status
        )));
    }
    let principal = cx.principal()?;
    let plan = if w.tenant_id == principal.tenant_id {
        principal.plan
    } else {
        crate::tenants::db::get(&db, &w.tenant_id)
            .await?
            .map(|t| t.plan)
            .unwrap_or_default()
    };
    let now_ms = cx.now_ms;
    let id = ids::new_id("exe");
    // Counted by the tenant's meter before the execution exists (exact under concurrency);
    // given back if it is not created after all.
    let charge = usage::charge(&cx, &db, &w.tenant_id, plan, Metric::Executions, 1, &id).await?;
    let now = clock::rfc3339(now_ms);
    let timeout_at = clock::rfc3339(now_ms + i64::from(w.config.timeout_secs()) * 1000);
    let new = db::NewExecution {
        id: &id,
        workflow: &w,
        input: &input,
        created_by: principal.user_id.as_deref(),
        now: &now,
        timeout_at: &timeout_at,
    };
    let mut stmts = vec![
        db::insert_execution(&db, &new)?,
        audit::entry(&cx, "workflow.executed")
            .tenant(w.tenant_id.as_str())
            .target("execution", id.as_str())
            .meta(json!({"workflow_id": w.id}))
            .stmt(&db)?,
    ];
    stmts.extend(charge.threshold_audits(&cx, &db)?);
    if let Err(e) = db.batch(stmts).await {
        charge.refund(&cx).await;
        return Err(e);
    }
    let job = Job::Step {
        execution_id: id.clone(),
        step: 0,
    };
    if let Err(e) = queue::enqueue(&cx.env, &job, 0).await {
        execution::not_queued(&db, &id, &now)?.run(&db).await?;
        return Err(e);
    }
    let execution = db::get_execution(&db, None, &id).await?;
    Reply::accepted(
        &StartedExecution {
            execution_id: id.clone(),
            execution,
        },
        format!("/api/v1/executions/{id}"),
    )
}

fn execution_filter(cx: &Ctx, workflow_id: Option<String>) -> Result<ExecutionFilter> {
    Ok(ExecutionFilter {
        tenant_id: cx.scope_filter()?,
        workflow_id: workflow_id.or_else(|| cx.query_nonempty("workflow_id").map(str::to_string)),
        status: cx.query_enum("status", &ExecutionStatus::NAMES)?,
        from: cx.query_time("from")?,
        to: cx.query_time("to")?,
    })
}

async fn list_executions(cx: &Ctx, filter: ExecutionFilter) -> Result<Reply> {
    let page = cx.page()?;
    let rows = db::list_executions(&cx.db()?, cx.scope()?, &filter, &page).await?;
    let (rows, next) = page.finish(rows, |e| (e.created_at.clone(), e.id.clone()));
    Reply::list(&rows, next.as_deref())
}

async fn workflow_executions(cx: Ctx) -> Result<Reply> {
    let w = db::get_workflow(&cx.db()?, cx.scope()?, cx.param("id")).await?;
    let filter = execution_filter(&cx, Some(w.id))?;
    list_executions(&cx, filter).await
}

async fn executions(cx: Ctx) -> Result<Reply> {
    let filter = execution_filter(&cx, None)?;
    list_executions(&cx, filter).await
}

async fn execution(cx: Ctx) -> Result<Reply> {
    let db = cx.db()?;
    let mut e = db::get_execution(&db, cx.scope()?, cx.param("id")).await?;
    e.steps = Some(db::step_runs(&db, &e.id).await?);
    Reply::ok(&e)
}

async fn cancel(cx: Ctx) -> Result<Reply> {
    let db = cx.db()?;
    let e = db::get_execution(&db, cx.scope()?, cx.param("id")).await?;
    // The cancel callback is an outbox row of the cancel itself.
    let callback = Staged::job(&Job::callback(&e.id, "execution.cancelled"), 0, cx.now_ms)?;
    let cancelled = execution::cancel(&db, &e.tenant_id, &e.id, &cx.now())?
        .run_then(
            &db,
            vec![audit::entry(&cx, "execution.cancelled")
                .tenant(e.tenant_id.as_str())
                .target("execution", e.id.as_str())
                .stmt(&db)?],
            vec![callback.insert_if_applied(&db)?],
        )
        .await?;
    if !cancelled {
        return Err(AppError::Conflict(format!(
            "The execution is {}; only {} executions can be cancelled.",
            e.status,
            names(Event::Cancelled.from_states()).join(" or ")
        )));
    }
    outbox::send_now(&cx.env, &cx.config, &db, &[callback]).await;
    Reply::ok(&db::get_execution(&db, None, &e.id).await?)
}

fn names(states: &[ExecutionStatus]) -> Vec<&'static str> {
    states.iter().map(|s| s.as_str()).collect()
}

async fn requeue(cx: Ctx) -> Result<Reply> {
    let db = cx.db()?;
    let e = db::get_execution(&db, None, cx.param("id")).await?;
    if !e.status.is_live() {
        return Err(AppError::Conflict(format!(
            "The execution is {}; there is no step to send.",
            e.status
        )));
    }
    let job = Job::Step {
        execution_id: e.id.clone(),
        step: e.steps_completed,
    };
    queue::enqueue(&cx.env, &job, 0).await?;
    audit::entry(&cx, "execution.requeued")
        .tenant(e.tenant_id.as_str())
        .target("execution", e.id.as_str())
        .meta(json!({"step": e.steps_completed}))
        .write(&db)
        .await?;
    Reply::accepted(&e, format!("/api/v1/executions/{}", e.id))
}

/// The cron sweep: fails executions still running past their workflow's timeout.
pub async fn fail_timed_out(
    env: &worker::Env,
    cfg: &crate::platform::config::Config,
    now_ms: i64,
) -> Result<usize> {
    #[derive(serde::Deserialize)]
    struct Stuck {
        id: String,
    }
    let db = crate::platform::db::Db::from_env(env)?;
    let now = clock::rfc3339(now_ms);
    let stuck: Vec<Stuck> = db
        .all(
            &format!(
                "SELECT id FROM executions WHERE status IN ({}) AND timeout_at < ?1 LIMIT 100",
                sql_list(Event::TimedOut.from_states(), ExecutionStatus::as_str)
            ),
            &args![now.as_str()],
        )
        .await?;
    let mut failed = 0;
    for s in stuck {
        let callback = Staged::job(&Job::callback(&s.id, "execution.failed"), 0, now_ms)?;
        if execution::time_out(&db, &s.id, &now)?
            .run_then(&db, vec![], vec![callback.insert_if_applied(&db)?])
            .await?
        {
            failed += 1;
            outbox::send_now(env, cfg, &db, &[callback]).await;
        }
    }
    Ok(failed)
}

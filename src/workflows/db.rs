//! SQL for workflows and executions. `scope` is the caller's tenant, or `None` for the
//! platform admin, who works across client organisations.

use serde::Deserialize;
use serde_json::Value;
use worker::D1PreparedStatement;

use super::config::WorkflowConfig;
use super::execution::ExecutionStatus;
use super::model::{Execution, StepRun, Workflow, WorkflowStats};
use crate::args;
use crate::platform::db::{like_pattern, Arg, Db, Filter};
use crate::platform::error::{AppError, Result};
use crate::platform::paging::Page;

pub type Scope<'a> = Option<&'a str>;

const WORKFLOW_COLUMNS: &str = "workflows.id, workflows.tenant_id, workflows.name, \
     workflows.description, workflows.status, workflows.config, workflows.cost_per_execution, \
     workflows.revenue_per_execution, workflows.created_at, workflows.updated_at, workflows.deployed_at, workflows.managed";

#[derive(Deserialize)]
struct WorkflowRow {
    id: String,
    tenant_id: String,
    name: String,
    description: String,
    status: String,
    config: String,
    cost_per_execution: f64,
    revenue_per_execution: f64,
    created_at: String,
    updated_at: String,
    deployed_at: Option<String>,
    managed: i64,
}

impl TryFrom<WorkflowRow> for Workflow {
    type Error = AppError;
    fn try_from(r: WorkflowRow) -> Result<Workflow> {
        let config: WorkflowConfig = serde_json::from_str(&r.config)
            .map_err(|e| AppError::internal(format!("workflow {} config: {e}", r.id)))?;
        Ok(Workflow {
            id: r.id,
            tenant_id: r.tenant_id,
            name: r.name,
            description: r.description,
            status: r.status,
            config,
            cost_per_execution: r.cost_per_execution,
            revenue_per_execution: r.revenue_per_execution,
            created_at: r.created_at,
            updated_at: r.updated_at,
            deployed_at: r.deployed_at,
            managed: r.managed != 0,
            stats: None,
        })
    }
}

fn scoped(f: &mut Filter, column: &str, scope: Scope) {
    f.and_opt(&format!("{column} = ?"), scope.map(Arg::from));
}

pub async fn get_workflow(db: &Db, scope: Scope<'_>, id: &str) -> Result<Workflow> {
    let mut q = Filter::new(
        &format!("SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE workflows.id = ?1"),
        args![id],
    );
    scoped(&mut q, "workflows.tenant_id", scope);
    let row: WorkflowRow = db.one(&q.sql, &q.args).await?.ok_or(AppError::NotFound)?;
    row.try_into()
}

pub struct WorkflowFilter {
    pub tenant_id: Option<String>,
    pub status: Option<String>,
    pub q: Option<String>,
}

pub async fn list_workflows(
    db: &Db,
    scope: Scope<'_>,
    f: &WorkflowFilter,
    page: &Page,
) -> Result<Vec<Workflow>> {
    let mut q = Filter::new(
        &format!("SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE 1 = 1"),
        args![],
    );
    scoped(&mut q, "workflows.tenant_id", scope);
    q.and_opt(
        "workflows.tenant_id = ?",
        f.tenant_id.clone().map(Into::into),
    )
    .and_opt("workflows.status = ?", f.status.clone().map(Into::into));
    if f.status.is_none() {
        q.and("workflows.status != 'archived'", args![]);
    }
    if let Some(term) = &f.q {
        let p = like_pattern(term);
        q.and(
            "(workflows.name LIKE ? ESCAPE '\\' OR workflows.description LIKE ? ESCAPE '\\')",
            args![p.clone(), p],
        );
    }
    q.page(page, "workflows");
    let rows: Vec<WorkflowRow> = db.all(&q.sql, &q.args).await?;
    rows.into_iter().map(Workflow::try_from).collect()
}

#[derive(Deserialize)]
struct StatsRow {
    executions: i64,
    pending: i64,
    processing: i64,
    completed: i64,
    failed: i64,
    cancelled: i64,
    average_duration_seconds: Option<f64>,
}

/// Aggregates over executions; `{alias}` is the executions table alias.
pub const STATS_COLUMNS: &str = "COUNT(e.id) AS executions, \
     COALESCE(SUM(e.status = 'pending'), 0) AS pending, \
     COALESCE(SUM(e.status = 'processing'), 0) AS processing, \
     COALESCE(SUM(e.status = 'completed'), 0) AS completed, \
     COALESCE(SUM(e.status = 'failed'), 0) AS failed, \
     COALESCE(SUM(e.status = 'cancelled'), 0) AS cancelled, \
     AVG(CASE WHEN e.status = 'completed' THEN e.duration_seconds END) AS average_duration_seconds";

pub fn percent(part: i64, whole: i64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 * 1000.0 / whole as f64).round() / 10.0
    }
}

pub fn cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

pub async fn workflow_stats(db: &Db, w: &Workflow) -> Result<WorkflowStats> {
    let r: StatsRow = db
        .one(
            &format!("SELECT {STATS_COLUMNS} FROM executions e WHERE e.workflow_id = ?1 AND e.tenant_id = ?2"),
            &args![w.id.as_str(), w.tenant_id.as_str()],
        )
        .await?
        .ok_or_else(|| AppError::internal("stats query returned no row"))?;
    Ok(WorkflowStats {
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
        revenue: cents(r.completed as f64 * w.revenue_per_execution),
        cost: cents((r.completed + r.failed) as f64 * w.cost_per_execution),
    })
}

const EXECUTION_COLUMNS: &str = "executions.id, executions.workflow_id, workflows.name AS workflow_name, \
     executions.tenant_id, executions.status, executions.progress, executions.step_count, \
     executions.next_step, executions.input_data, executions.output_data, executions.error_message, \
     executions.attempts, executions.created_at, executions.started_at, executions.completed_at, \
     executions.duration_seconds";

#[derive(Deserialize)]
struct ExecutionRow {
    id: String,
    workflow_id: String,
    workflow_name: String,
    tenant_id: String,
    status: ExecutionStatus,
    progress: i64,
    step_count: i64,
    next_step: i64,
    input_data: String,
    output_data: Option<String>,
    error_message: Option<String>,
    attempts: i64,
    created_at: String,
    started_at: Option<String>,
    completed_at: Option<String>,
    duration_seconds: Option<f64>,
}

fn parse_json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or(Value::Null)
}

impl From<ExecutionRow> for Execution {
    fn from(r: ExecutionRow) -> Execution {
        Execution {
            id: r.id,
            workflow_id: r.workflow_id,
            workflow_name: r.workflow_name,
            tenant_id: r.tenant_id,
            status: r.status,
            progress: r.progress,
            steps_total: r.step_count,
            steps_completed: r.next_step,
            input_data: parse_json(&r.input_data),
            output_data: r.output_data.as_deref().map(parse_json),
            error_message: r.error_message,
            attempts: r.attempts,
            created_at: r.created_at,
            started_at: r.started_at,
            completed_at: r.completed_at,
            duration_seconds: r.duration_seconds,
            steps: None,
        }
    }
}

const EXECUTION_FROM: &str =
    "FROM executions JOIN workflows ON workflows.id = executions.workflow_id WHERE 1 = 1";

pub async fn get_execution(db: &Db, scope: Scope<'_>, id: &str) -> Result<Execution> {
    let mut q = Filter::new(
        &format!("SELECT {EXECUTION_COLUMNS} {EXECUTION_FROM}"),
        args![],
    );
    q.and("executions.id = ?", args![id]);
    scoped(&mut q, "executions.tenant_id", scope);
    let row: ExecutionRow = db.one(&q.sql, &q.args).await?.ok_or(AppError::NotFound)?;
    Ok(row.into())
}

pub async fn step_runs(db: &Db, execution_id: &str) -> Result<Vec<StepRun>> {
    db.all(
        "SELECT step_index, name, kind, attempt, status, error, started_at, duration_ms \
         FROM step_runs WHERE execution_id = ?1 ORDER BY step_index, attempt",
        &args![execution_id],
    )
    .await
}

#[derive(Default)]
pub struct ExecutionFilter {
    pub tenant_id: Option<String>,
    pub workflow_id: Option<String>,
    pub status: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

pub async fn list_executions(
    db: &Db,
    scope: Scope<'_>,
    f: &ExecutionFilter,
    page: &Page,
) -> Result<Vec<Execution>> {
    let mut q = Filter::new(
        &format!("SELECT {EXECUTION_COLUMNS} {EXECUTION_FROM}"),
        args![],
    );
    scoped(&mut q, "executions.tenant_id", scope);
    q.and_opt(
        "executions.tenant_id = ?",
        f.tenant_id.clone().map(Into::into),
    )
    .and_opt(
        "executions.workflow_id = ?",
        f.workflow_id.clone().map(Into::into),
    )
    .and_opt("executions.status = ?", f.status.clone().map(Into::into))
    .and_opt("executions.created_at >= ?", f.from.clone().map(Into::into))
    .and_opt("executions.created_at < ?", f.to.clone().map(Into::into));
    q.page(page, "executions");
    let rows: Vec<ExecutionRow> = db.all(&q.sql, &q.args).await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub struct NewExecution<'a> {
    pub id: &'a str,
    pub workflow: &'a Workflow,
    pub input: &'a Value,
    pub created_by: Option<&'a str>,
    pub now: &'a str,
    pub timeout_at: &'a str,
}

pub fn insert_execution(db: &Db, e: &NewExecution) -> Result<D1PreparedStatement> {
    db.stmt(
        "INSERT INTO executions (id, workflow_id, tenant_id, status, progress, input_data, config, \
         step_count, timeout_at, created_by, created_at, updated_at) \
         VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
        &args![
            e.id,
            e.workflow.id.as_str(),
            e.workflow.tenant_id.as_str(),
            e.input.to_string(),
            serde_json::to_string(&e.workflow.config)?,
            e.workflow.config.steps.len() as i64,
            e.timeout_at,
            e.created_by.map(str::to_string),
            e.now
        ],
    )
}

//! Execution end events (`execution.completed`, `execution.failed`, …) with the execution as
//! `data`, delivered by the shared callback sender (`settings::callbacks`).

use worker::Env;

use super::db;
use crate::platform::clock;
use crate::platform::config::Config;
use crate::platform::db::Db;
use crate::settings::callbacks::{self, Event};

/// Delivers one execution event; `Err` (with why) when it should be tried again. A deleted
/// execution has nothing to deliver.
pub async fn deliver(
    env: &Env,
    cfg: &Config,
    execution_id: &str,
    event: &str,
) -> Result<(), String> {
    let db = Db::from_env(env).map_err(|e| e.to_string())?;
    let execution = match db::get_execution(&db, None, execution_id).await {
        Ok(e) => e,
        Err(crate::platform::error::AppError::NotFound) => return Ok(()),
        Err(e) => return Err(e.to_string()),
    };
    let created_at = execution
        .completed_at
        .clone()
        .unwrap_or_else(|| clock::rfc3339(clock::now_ms()));
    let tenant_id = execution.tenant_id.clone();
    let data = serde_json::to_value(&execution).map_err(|e| e.to_string())?;
    callbacks::post(
        cfg,
        &db,
        Event {
            tenant_id: &tenant_id,
            subject_id: execution_id,
            event,
            created_at,
            data,
        },
    )
    .await
}

/// Tells the user who started a failed execution (once, with the event's first delivery).
pub async fn notify_failure(env: &Env, cfg: &Config, execution_id: &str) {
    #[derive(serde::Deserialize)]
    struct Row {
        tenant_id: String,
        created_by: Option<String>,
        workflow_name: String,
        error_message: Option<String>,
    }
    let Ok(db) = Db::from_env(env) else { return };
    let row: Option<Row> = db
        .one(
            "SELECT e.tenant_id, e.created_by, w.name AS workflow_name, e.error_message \
             FROM executions e JOIN workflows w ON w.id = e.workflow_id WHERE e.id = ?1",
            &crate::args![execution_id],
        )
        .await
        .unwrap_or(None);
    let Some(Row {
        tenant_id,
        created_by: Some(user),
        workflow_name,
        error_message,
    }) = row
    else {
        return;
    };
    let notice = crate::notifications::Notice {
        kind: crate::notifications::model::Kind::ExecutionFailed,
        title: format!("{workflow_name} failed"),
        body: error_message.unwrap_or_else(|| "The execution failed.".into()),
        link: Some(format!("/executions/{execution_id}")),
        data: Some(serde_json::json!({"execution_id": execution_id})),
    };
    crate::notifications::tell(env, cfg, &db, &tenant_id, &[user], notice).await;
}

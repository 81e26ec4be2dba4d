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

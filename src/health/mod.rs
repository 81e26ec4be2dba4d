//! Liveness, readiness and a binding check (D1, R2, queue) with the deployed version.

use serde::Serialize;
use utoipa::ToSchema;

use crate::handler;
use crate::http::context::Ctx;
use crate::http::reply::Reply;
use crate::http::router::{Access, Route};
use crate::platform::bindings;
use crate::platform::config::VERSION;
use crate::platform::error::Result;

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthChecks {
    pub d1: String,
    pub r2: String,
    pub queue: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` when a binding check failed (then the status is 503).
    pub status: String,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<HealthChecks>,
}

pub fn routes() -> Vec<Route> {
    let mut routes = Vec::new();
    for (path, alias) in [("/health", false), ("/api/v1/health", true)] {
        let r = Route::get(path, Access::Public, handler!(health))
            .doc("operations", "Checks the D1, R2 and queue bindings")
            .ok("Health");
        routes.push(if alias { r.alias() } else { r });
    }
    for (path, alias) in [("/health/live", false), ("/api/v1/health/live", true)] {
        let r = Route::get(path, Access::Public, handler!(live))
            .doc("operations", "The worker answers")
            .ok("Health");
        routes.push(if alias { r.alias() } else { r });
    }
    for (path, alias) in [("/health/ready", false), ("/api/v1/health/ready", true)] {
        let r = Route::get(path, Access::Public, handler!(ready))
            .doc("operations", "The database is reachable and migrated")
            .ok("Health");
        routes.push(if alias { r.alias() } else { r });
    }
    routes
}

fn outcome<T, E: std::fmt::Display>(r: std::result::Result<T, E>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => {
            worker::console_error!("health check failed: {e}");
            "error".into()
        }
    }
}

fn answer(ok: bool, checks: Option<HealthChecks>) -> Result<Reply> {
    let health = Health {
        status: if ok { "ok" } else { "degraded" }.into(),
        version: VERSION.into(),
        checks,
    };
    // Health probes often read a top-level `status`; the envelope keeps the API convention.
    let body = serde_json::json!({"status": health.status, "data": health});
    Ok(Reply::json_bytes(
        if ok { 200 } else { 503 },
        serde_json::to_vec(&body)?,
    ))
}

async fn health(cx: Ctx) -> Result<Reply> {
    let d1 = match cx.db() {
        Ok(db) => outcome(db.one::<serde_json::Value>("SELECT 1 AS ok", &[]).await),
        Err(e) => outcome::<(), _>(Err(e)),
    };
    let r2 = match cx.env.bucket(bindings::MEDIA) {
        Ok(bucket) => outcome(bucket.head("health/probe").await),
        Err(e) => outcome::<(), _>(Err(e)),
    };
    let queue = outcome(cx.env.queue(bindings::JOBS));
    let ok = [&d1, &r2, &queue].iter().all(|s| *s == "ok");
    answer(ok, Some(HealthChecks { d1, r2, queue }))
}

async fn live(_cx: Ctx) -> Result<Reply> {
    answer(true, None)
}

async fn ready(cx: Ctx) -> Result<Reply> {
    let migrated = cx
        .db()?
        .one::<serde_json::Value>("SELECT id FROM tenants LIMIT 1", &[])
        .await
        .is_ok();
    answer(migrated, None)
}

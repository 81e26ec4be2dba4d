//! Tenantry: a multi-tenant SaaS backend on Cloudflare Workers. This file holds only the
//! runtime entry points; everything else lives in feature folders.
//!
//! One codebase, two Workers: feature `api` builds `tenantry-api` (fetch, the cron trigger,
//! the Durable Object classes), feature `jobs` builds `tenantry-jobs` (every queue consumer).
//! Native tests and lints build both.

pub mod apikeys;
pub mod audit;
pub mod auth;
pub mod dispatch;
pub mod docs;
pub mod health;
pub mod http;
pub mod maintenance;
pub mod media;
pub mod messaging;
pub mod platform;
pub mod products;
pub mod requests;
pub mod routes;
pub mod settings;
pub mod tenants;
pub mod tickets;
pub mod users;
pub mod workflows;

#[cfg(feature = "api")]
#[path = "../durable/rate_limiter.rs"]
pub mod rate_limiter;

#[cfg(feature = "api")]
#[path = "../durable/tenant_gate.rs"]
pub mod tenant_gate;

#[cfg(feature = "api")]
#[path = "../durable/conversation_hub.rs"]
pub mod conversation_hub;

#[cfg(feature = "jobs")]
#[path = "../queues/consumer.rs"]
pub mod consumer;

use worker::event;

#[event(start)]
fn start() {
    console_error_panic_hook_set();
}

/// Logs panics with their message before the runtime answers 500 and restarts the instance.
fn console_error_panic_hook_set() {
    std::panic::set_hook(Box::new(|info| {
        worker::console_error!(
            "{}",
            serde_json::json!({"level": "panic", "error": info.to_string()})
        );
    }));
}

#[cfg(feature = "api")]
#[event(fetch)]
async fn fetch(
    req: worker::Request,
    env: worker::Env,
    ctx: worker::Context,
) -> worker::Result<worker::Response> {
    dispatch::handle(req, env, ctx).await
}

/// The cron trigger stays on the API Worker (so `/__scheduled` on its port runs it locally);
/// the sweep itself is queue work the jobs Worker does.
#[cfg(feature = "api")]
#[event(scheduled)]
async fn scheduled(
    _event: worker::ScheduledEvent,
    env: worker::Env,
    _ctx: worker::ScheduleContext,
) {
    if let Err(e) = platform::queue::enqueue(&env, &platform::queue::Job::Sweep, 0).await {
        worker::console_error!("scheduling the sweep failed: {e}");
    }
}

#[cfg(feature = "jobs")]
#[event(queue)]
async fn queue(
    batch: worker::MessageBatch<String>,
    env: worker::Env,
    _ctx: worker::Context,
) -> worker::Result<()> {
    consumer::consume(batch, env).await
}

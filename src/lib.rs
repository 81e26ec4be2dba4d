//! Tenantry: a multi-tenant SaaS backend on Cloudflare Workers. This file holds only the
//! runtime entry points; everything else lives in feature folders.

pub mod apikeys;
pub mod audit;
pub mod auth;
pub mod docs;
pub mod health;
pub mod http;
pub mod maintenance;
pub mod media;
pub mod messaging;
pub mod platform;
pub mod products;
pub mod queues;
pub mod requests;
pub mod routes;
pub mod settings;
pub mod tenants;
pub mod tickets;
pub mod users;
pub mod workflows;

#[path = "../durable/rate_limiter.rs"]
pub mod rate_limiter;

#[path = "../durable/tenant_gate.rs"]
pub mod tenant_gate;

#[path = "../durable/conversation_hub.rs"]
pub mod conversation_hub;

use worker::{
    event, Context, Env, MessageBatch, Request, Response, ScheduleContext, ScheduledEvent,
};

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

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    http::handle(req, env, ctx).await
}

#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    if let Err(e) = maintenance::sweep(&env).await {
        worker::console_error!("scheduled sweep failed: {e}");
    }
}

#[event(queue)]
async fn queue(batch: MessageBatch<String>, env: Env, _ctx: Context) -> worker::Result<()> {
    queues::consume(batch, env).await
}

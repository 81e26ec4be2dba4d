//! Tenantry: a multi-tenant SaaS backend on Cloudflare Workers. This file holds only the
//! runtime entry points; everything else lives in feature folders.
//!
//! One codebase, two Workers: feature `api` builds `tenantry-api` (fetch, the cron trigger,
//! the Durable Object classes), feature `jobs` builds `tenantry-jobs` (every queue consumer).
//! Native tests and lints build both.

pub mod analytics;
pub mod apikeys;
pub mod audit;
pub mod auth;
pub mod billing;
pub mod dispatch;
pub mod docs;
pub mod email;
pub mod export;
pub mod health;
pub mod http;
pub mod inventory;
pub mod maintenance;
pub mod media;
pub mod messaging;
pub mod notifications;
pub mod oauth;
pub mod optimize;
pub mod platform;
pub mod products;
pub mod profile;
pub mod push;
pub mod requests;
pub mod routes;
pub mod search;
pub mod settings;
pub mod teams;
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
#[path = "../durable/live_hub.rs"]
pub mod live_hub;

#[cfg(feature = "api")]
#[path = "../durable/conversation_hub.rs"]
pub mod conversation_hub;

#[cfg(feature = "api")]
#[path = "../durable/notification_hub.rs"]
pub mod notification_hub;

#[cfg(feature = "api")]
#[path = "../durable/usage_meter.rs"]
pub mod usage_meter;

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

/// The queue entry, written out instead of `#[event(queue)]` (which it mirrors): the consumer
/// needs each message's delivery `attempts`, which `worker::RawMessage` does not expose, to
/// name the holder of a lease (see `platform::lease`).
#[cfg(feature = "jobs")]
mod queue_entry {
    use worker::wasm_bindgen::prelude::wasm_bindgen;
    use worker::wasm_bindgen::JsValue;

    #[wasm_bindgen(
        wasm_bindgen = ::worker::wasm_bindgen,
        wasm_bindgen_futures = ::worker::wasm_bindgen_futures,
        js_sys = ::worker::js_sys
    )]
    pub async fn queue(
        batch: ::worker::worker_sys::MessageBatch,
        env: ::worker::Env,
        _ctx: ::worker::worker_sys::Context,
    ) -> Result<JsValue, JsValue> {
        std::panic::AssertUnwindSafe(async move {
            if let Err(e) = crate::consumer::consume(batch, env).await {
                worker::console_error!("{e}");
                return Err(JsValue::from_str(&e.to_string()));
            }
            Ok(JsValue::UNDEFINED)
        })
        .await
    }
}

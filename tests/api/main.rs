//! Integration tests: the real worker under `wrangler dev` (local D1, R2, queues, Durable
//! Objects), started once by the harness with fresh state. Each test makes its own tenant.

/// More `.dev.vars` lines for this binary's worker (the `jobs` binary sets test knobs).
pub const EXTRA_VARS: &str = "";
/// Its log: `target/wrangler-test{LOG_SUFFIX}.log`.
pub const LOG_SUFFIX: &str = "";

mod client;
mod harness;

mod admin_cli;
mod analytics;
mod apikeys;
mod audit;
mod auth;
mod billing;
mod billing_stripe;
mod conventions;
mod egress;
mod export;
mod gate;
mod inventory;
mod media;
mod messaging;
mod messaging_hardening;
mod notifications;
mod notify_hooks;
mod oauth;
mod ops;
mod optimize;
mod profile;
mod push;
mod search;
mod stripe_support;
mod stripe_webhooks;
mod support;
mod teams;
mod tenants;
mod tokens;
mod ts_client;
mod users;
mod workflows;

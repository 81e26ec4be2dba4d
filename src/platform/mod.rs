//! Thin typed wrappers over the Workers runtime: bindings, D1, clock, ids, crypto, config.

pub mod access;
pub mod bindings;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod csv;
pub mod db;
pub mod egress;
pub mod error;
pub mod ids;
pub mod lease;
pub mod outbox;
pub mod paging;
pub mod plan;
pub mod queue;
pub mod ratelimit;
pub mod redact;
pub mod state;

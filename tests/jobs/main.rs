//! Background work that must survive failures: a job that crashes the jobs Worker, and a
//! committed step whose next message was never sent. A worker of its own (not the `api`
//! binary's), because one test here aborts the jobs Worker's instance on purpose and the other
//! runs with the direct sends after a commit skipped (`TEST_SKIP_DIRECT_SENDS`), as if the
//! worker had died between the commit and the send.

/// The steps' and callbacks' direct sends after a commit are skipped: only the outbox (sent
/// by the cron sweep) can deliver them.
pub const EXTRA_VARS: &str = "TEST_SKIP_DIRECT_SENDS=\"step,callback\"\n";
pub const LOG_SUFFIX: &str = "-jobs";

#[path = "../api/client.rs"]
#[allow(dead_code)]
mod client;
#[path = "../api/harness.rs"]
#[allow(dead_code)]
mod harness;

mod crash;
mod outbox;

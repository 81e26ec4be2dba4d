//! The outbox: queue messages a commit decides (the next workflow step, an end callback, a
//! dead letter, a queued job) are written as `outbox` rows in the same D1 batch as the commit,
//! so they exist exactly when the commit does. The committer then sends them at once and
//! deletes their rows (`send_now`); a row left behind (the send failed, or the worker died
//! between commit and send) is sent by the cron sweep (`flush`) after a short grace. Every
//! consumer is idempotent, so the rare double send (a send that worked but whose row could not
//! be deleted) is harmless. Any module's send that must follow a commit goes through here.

use serde::Deserialize;
use worker::{D1PreparedStatement, Env, MessageBuilder};

use super::bindings;
use super::config::Config;
use super::db::Db;
use super::ids;
use super::queue::{DeadLetter, Job};
use crate::args;
use crate::platform::error::Result;

/// A row younger than this is left to its committer's direct send.
pub const GRACE_MS: i64 = 10_000;
/// The queue's longest delivery delay (12 h); a later step is sent with this and waits again.
pub const MAX_DELAY_SECS: u32 = 43_200;
/// Rows the sweep sends per run.
const FLUSH_LIMIT: i64 = 100;

/// Which queue a message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queue {
    Jobs,
    DeadLetters,
}

impl Queue {
    fn as_str(self) -> &'static str {
        match self {
            Queue::Jobs => "jobs",
            Queue::DeadLetters => "dlq",
        }
    }

    fn binding(self) -> &'static str {
        match self {
            Queue::Jobs => bindings::JOBS,
            Queue::DeadLetters => bindings::DLQ,
        }
    }

    fn parse(s: &str) -> Queue {
        if s == "dlq" {
            Queue::DeadLetters
        } else {
            Queue::Jobs
        }
    }
}

/// A message decided by a commit, not yet sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Staged {
    pub id: String,
    pub queue: Queue,
    /// The job's kind (`step`, `callback`, …; `dead_letter` for the DLQ).
    pub kind: String,
    pub body: String,
    pub created_ms: i64,
    pub deliver_ms: i64,
}

impl Staged {
    /// A job for the jobs queue, due `delay_secs` after `now_ms`.
    pub fn job(job: &Job, delay_secs: u32, now_ms: i64) -> Result<Staged> {
        Ok(Staged {
            id: ids::new_id("obx"),
            queue: Queue::Jobs,
            kind: job.kind().to_string(),
            body: serde_json::to_string(job)?,
            created_ms: now_ms,
            deliver_ms: now_ms + i64::from(delay_secs) * 1000,
        })
    }

    /// A dead letter for the dead-letter queue.
    pub fn dead_letter(letter: &DeadLetter, now_ms: i64) -> Result<Staged> {
        Ok(Staged {
            id: ids::new_id("obx"),
            queue: Queue::DeadLetters,
            kind: "dead_letter".into(),
            body: serde_json::to_string(letter)?,
            created_ms: now_ms,
            deliver_ms: now_ms,
        })
    }

    const INSERT: &'static str =
        "INSERT INTO outbox (id, queue, kind, body, created_ms, deliver_ms) ";

    fn args(&self) -> [crate::platform::db::Arg; 6] {
        args![
            self.id.as_str(),
            self.queue.as_str(),
            self.kind.as_str(),
            self.body.as_str(),
            self.created_ms,
            self.deliver_ms
        ]
    }

    /// The row, for the commit's batch.
    pub fn insert(&self, db: &Db) -> Result<D1PreparedStatement> {
        db.stmt(
            &format!("{}VALUES (?1, ?2, ?3, ?4, ?5, ?6)", Self::INSERT),
            &self.args(),
        )
    }

    /// The row, written only if the statement just before it in the batch changed a row: it
    /// follows a guarded transition (`Guarded::run_then`) and exists only if the move applied.
    /// Several such rows in a row chain: each sees the one before it.
    pub fn insert_if_applied(&self, db: &Db) -> Result<D1PreparedStatement> {
        db.stmt(
            &format!(
                "{}SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE changes() > 0",
                Self::INSERT
            ),
            &self.args(),
        )
    }

    /// Many undelayed jobs-queue rows as one statement (a batch's items): the rows travel as
    /// one JSON array, so the statement binds six values whatever their number.
    pub fn insert_many(db: &Db, staged: &[Staged]) -> Result<D1PreparedStatement> {
        let rows: Vec<serde_json::Value> = staged
            .iter()
            .map(|s| {
                serde_json::json!([
                    s.id,
                    s.queue.as_str(),
                    s.kind,
                    s.body,
                    s.created_ms,
                    s.deliver_ms
                ])
            })
            .collect();
        db.stmt(
            &format!(
                "{}SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5 \
                 FROM json_each(?1)",
                Self::INSERT
            ),
            &args![serde_json::to_string(&rows)?],
        )
    }

    fn delay_secs(&self, now_ms: i64) -> u32 {
        remaining_delay_secs(self.deliver_ms, now_ms)
    }
}

/// Seconds until `deliver_ms` (rounded up, none if due), at most the queue's limit.
pub fn remaining_delay_secs(deliver_ms: i64, now_ms: i64) -> u32 {
    let ms = (deliver_ms - now_ms).max(0);
    let secs = (ms + 999) / 1000;
    secs.min(i64::from(MAX_DELAY_SECS)) as u32
}

async fn send(env: &Env, s: &Staged, now_ms: i64) -> Result<()> {
    let mut message = MessageBuilder::new(s.body.clone());
    let delay = s.delay_secs(now_ms);
    if delay > 0 {
        message = message.delay_seconds(delay);
    }
    env.queue(s.queue.binding())?.send(message.build()).await?;
    Ok(())
}

/// Right after the commit: sends each staged message and deletes its row. A failed send is
/// logged and left to the sweep; the commit stands either way, so this never fails.
pub async fn send_now(env: &Env, cfg: &Config, db: &Db, staged: &[Staged]) {
    for s in staged {
        if cfg.skips_direct_send(&s.kind) {
            log("outbox.direct_send_skipped", s, "TEST_SKIP_DIRECT_SENDS");
            continue;
        }
        let now_ms = crate::platform::clock::now_ms();
        let result = match send(env, s, now_ms).await {
            Ok(()) => db
                .run("DELETE FROM outbox WHERE id = ?1", &args![s.id.as_str()])
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            log("outbox.direct_send_failed", s, &e.to_string());
        }
    }
}

/// `send_now` for many undelayed jobs (a batch's items): one queue call per 100 and one
/// delete per 100, instead of two round trips each. A failed chunk is left to the sweep.
pub async fn send_many_now(env: &Env, cfg: &Config, db: &Db, staged: &[Staged]) {
    for chunk in staged.chunks(100) {
        if chunk
            .iter()
            .any(|s| s.queue != Queue::Jobs || s.deliver_ms > s.created_ms)
        {
            send_now(env, cfg, db, chunk).await;
            continue;
        }
        if chunk.iter().any(|s| cfg.skips_direct_send(&s.kind)) {
            continue;
        }
        let bodies: Vec<&str> = chunk.iter().map(|s| s.body.as_str()).collect();
        let ids: Vec<&str> = chunk.iter().map(|s| s.id.as_str()).collect();
        let sent = match env.queue(bindings::JOBS) {
            Ok(q) => q.send_batch(bodies).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let result = match sent {
            Ok(()) => db
                .run(
                    "DELETE FROM outbox WHERE id IN (SELECT value FROM json_each(?1))",
                    &args![serde_json::to_string(&ids).unwrap_or_default()],
                )
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            log("outbox.direct_send_failed", &chunk[0], &e);
        }
    }
}

fn log(event: &str, s: &Staged, detail: &str) {
    worker::console_log!(
        "{}",
        serde_json::json!({"level": "warn", "event": event, "outbox_id": s.id, "kind": s.kind, "detail": detail})
    );
}

/// The sweep: sends rows older than the grace (oldest first) with what is left of their delay,
/// deleting each once sent; a failed send stays for the next run with its error. Returns how
/// many were sent.
pub async fn flush(env: &Env, db: &Db, now_ms: i64) -> Result<usize> {
    #[derive(Deserialize)]
    struct Row {
        id: String,
        queue: String,
        kind: String,
        body: String,
        created_ms: i64,
        deliver_ms: i64,
    }
    let rows: Vec<Row> = db
        .all(
            "SELECT id, queue, kind, body, created_ms, deliver_ms FROM outbox \
             WHERE created_ms < ?1 ORDER BY created_ms LIMIT ?2",
            &args![now_ms - GRACE_MS, FLUSH_LIMIT],
        )
        .await?;
    let mut sent = 0;
    for r in rows {
        let s = Staged {
            id: r.id,
            queue: Queue::parse(&r.queue),
            kind: r.kind,
            body: r.body,
            created_ms: r.created_ms,
            deliver_ms: r.deliver_ms,
        };
        match send(env, &s, now_ms).await {
            Ok(()) => {
                db.run("DELETE FROM outbox WHERE id = ?1", &args![s.id.as_str()])
                    .await?;
                sent += 1;
            }
            Err(e) => {
                db.run(
                    "UPDATE outbox SET attempts = attempts + 1, last_error = ?2 WHERE id = ?1",
                    &args![s.id.as_str(), e.to_string()],
                )
                .await?;
            }
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_sends_with_what_is_left_of_the_delay() {
        assert_eq!(remaining_delay_secs(10_000, 10_000), 0);
        assert_eq!(remaining_delay_secs(10_000, 60_000), 0);
        assert_eq!(remaining_delay_secs(10_500, 10_000), 1);
        assert_eq!(remaining_delay_secs(70_000, 10_000), 60);
        assert_eq!(
            remaining_delay_secs(i64::from(MAX_DELAY_SECS) * 5000, 0),
            MAX_DELAY_SECS
        );
    }

    #[test]
    fn staged_jobs_carry_their_kind_body_and_due_time() {
        let job = Job::callback("exe_1", "execution.completed");
        let s = Staged::job(&job, 30, 1_000).unwrap();
        assert_eq!((s.queue, s.kind.as_str()), (Queue::Jobs, "callback"));
        assert_eq!(serde_json::from_str::<Job>(&s.body).unwrap(), job);
        assert_eq!((s.created_ms, s.deliver_ms), (1_000, 31_000));
        let letter = DeadLetter {
            job,
            error: "boom".into(),
            attempts: 3,
        };
        let d = Staged::dead_letter(&letter, 5).unwrap();
        assert_eq!(d.queue, Queue::DeadLetters);
        assert_eq!(serde_json::from_str::<DeadLetter>(&d.body).unwrap(), letter);
        assert_eq!(Queue::parse(d.queue.as_str()), Queue::DeadLetters);
        assert_eq!(Queue::parse(Queue::Jobs.as_str()), Queue::Jobs);
    }
}

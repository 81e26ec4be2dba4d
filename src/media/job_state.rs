//! The media job state machine: job kinds and statuses, the events that move a job, the pure
//! `next` that decides, and one guarded `UPDATE jobs` per transition. Nothing else writes
//! `jobs.status`.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::args;
use crate::platform::db::{Arg, Db};
use crate::platform::error::Result;
use crate::platform::lease::{self, Holder};
use crate::platform::state::{sql_list, Guarded};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// The text layer of a PDF, or a text/CSV file as it is.
    ExtractText,
    /// An image sent to `OCR_API_URL`.
    Ocr,
}

impl JobKind {
    pub const ALL: [JobKind; 2] = [JobKind::ExtractText, JobKind::Ocr];
    pub const NAMES: [&'static str; 2] = ["extract_text", "ocr"];

    pub fn parse(s: &str) -> Option<JobKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::ExtractText => "extract_text",
            JobKind::Ocr => "ocr",
        }
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Pending,
    Processing,
    Completed,
    Failed,
}

use JobStatus::{Completed, Failed, Pending, Processing};

impl JobStatus {
    pub const ALL: [JobStatus; 4] = [Pending, Processing, Completed, Failed];
    pub const NAMES: [&'static str; 4] = ["pending", "processing", "completed", "failed"];

    pub fn parse(s: &str) -> Option<JobStatus> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Pending => "pending",
            Processing => "processing",
            Completed => "completed",
            Failed => "failed",
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A delivery takes the job's lease (see `platform::lease`) and counts an attempt.
    Claimed,
    /// The extraction produced its result.
    Succeeded,
    /// A transient failure with attempts left: the queue retries it.
    Retrying,
    /// A permanent failure, or a transient one on the last attempt.
    Failed,
    /// Every attempt was claimed and none recorded an outcome: the worker crashed or stopped
    /// under it each time. It is not run again.
    Abandoned,
    /// The sweep found its lease expired with attempts left: freed, and the job queued again.
    Released,
    /// The queue gave up on its message.
    DeadLettered,
}

impl Event {
    /// The transition table: the statuses an event may move a job from, and where to.
    const fn rule(self) -> (&'static [JobStatus], JobStatus) {
        match self {
            Event::Claimed => (&[Pending, Processing], Processing),
            Event::Succeeded => (&[Processing], Completed),
            Event::Retrying | Event::Released => (&[Processing], Processing),
            Event::Failed | Event::Abandoned => (&[Processing], Failed),
            Event::DeadLettered => (&[Pending, Processing], Failed),
        }
    }

    pub fn from_states(self) -> &'static [JobStatus] {
        self.rule().0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: JobStatus,
    pub to: JobStatus,
}

/// An event the job's status does not allow (a failed job cannot complete).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub from: JobStatus,
    pub event: Event,
}

pub fn next(status: JobStatus, event: Event) -> std::result::Result<Transition, Refused> {
    let (from, to) = event.rule();
    if from.contains(&status) {
        Ok(Transition { from: status, to })
    } else {
        Err(Refused {
            from: status,
            event,
        })
    }
}

/// The one statement of `event`'s transition; `?1` is always the job id.
fn update(db: &Db, event: Event, sets: &str, extra: &str, args: &[Arg]) -> Result<Guarded> {
    let (from, to) = event.rule();
    let sql = format!(
        "UPDATE jobs SET status = '{}', {sets} WHERE id = ?1 AND status IN ({}){extra}",
        to.as_str(),
        sql_list(from, JobStatus::as_str)
    );
    Ok(Guarded(db.stmt(&sql, args)?))
}

/// Attempts a job gets: claims, each counted before the work runs.
pub const MAX_ATTEMPTS: i64 = 3;

/// The delivery `holder` still holds the job: only it records the outcome. `?4`, `?5`.
const HELD: &str = " AND lease_id = ?4 AND lease_attempt = ?5";

/// `holder` takes the lease until `lease_until_ms` and counts attempt `attempts + 1`, if the
/// job still has `attempts` claims (what the caller read), attempts are left, and the lease
/// is free, expired or its own earlier attempt's (`lease::may_take`).
pub fn claim(
    db: &Db,
    id: &str,
    holder: &Holder,
    attempts: i64,
    now: &str,
    now_ms: i64,
    lease_until_ms: i64,
) -> Result<Guarded> {
    update(
        db,
        Event::Claimed,
        &format!(
            "progress = 10, attempts = attempts + 1, started_at = COALESCE(started_at, ?2), {}, \
             updated_at = ?2",
            lease::sql_hold(3, 4, 5)
        ),
        &format!(
            " AND attempts = ?6 AND attempts < ?7 AND {}",
            lease::sql_may_take(3, 4, 8)
        ),
        &args![
            id,
            now,
            holder.message_id.as_str(),
            holder.attempt,
            lease_until_ms,
            attempts,
            MAX_ATTEMPTS,
            now_ms
        ],
    )
}

pub fn succeed(db: &Db, id: &str, holder: &Holder, result: &str, now: &str) -> Result<Guarded> {
    update(
        db,
        Event::Succeeded,
        &format!(
            "progress = 100, result = ?2, error = NULL, {}, completed_at = ?3, updated_at = ?3",
            lease::SQL_RELEASE
        ),
        HELD,
        &args![id, result, now, holder.message_id.as_str(), holder.attempt],
    )
}

/// Keeps the attempt's error (shown while it waits) and frees the lease for the retry.
pub fn retry(db: &Db, id: &str, holder: &Holder, error: &str, now: &str) -> Result<Guarded> {
    update(
        db,
        Event::Retrying,
        &format!("error = ?2, {}, updated_at = ?3", lease::SQL_RELEASE),
        HELD,
        &args![id, error, now, holder.message_id.as_str(), holder.attempt],
    )
}

pub fn fail(db: &Db, id: &str, holder: &Holder, error: &str, now: &str) -> Result<Guarded> {
    update(
        db,
        Event::Failed,
        &format!(
            "error = ?2, {}, completed_at = ?3, updated_at = ?3",
            lease::SQL_RELEASE
        ),
        HELD,
        &args![id, error, now, holder.message_id.as_str(), holder.attempt],
    )
}

/// Fails a job whose attempts are all spent and whose last holder is gone: `claimant` may take
/// its lease (a redelivery of the crashed attempt's message, or `Holder::nobody()` once the
/// lease expired).
pub fn abandon(
    db: &Db,
    id: &str,
    claimant: &Holder,
    reason: &str,
    now: &str,
    now_ms: i64,
) -> Result<Guarded> {
    update(
        db,
        Event::Abandoned,
        &format!(
            "error = ?2, {}, completed_at = ?3, updated_at = ?3",
            lease::SQL_RELEASE
        ),
        &format!(" AND attempts >= ?7 AND {}", lease::sql_may_take(4, 5, 6)),
        &args![
            id,
            reason,
            now,
            claimant.message_id.as_str(),
            claimant.attempt,
            now_ms,
            MAX_ATTEMPTS
        ],
    )
}

/// The sweep's move for a job whose lease expired with attempts left: frees it so the message
/// the sweep queues with it (an outbox row in the same batch) can claim it.
pub fn release(db: &Db, id: &str, now: &str, now_ms: i64) -> Result<Guarded> {
    update(
        db,
        Event::Released,
        &format!("{}, updated_at = ?2", lease::SQL_RELEASE),
        " AND attempts < ?4 AND lease_until <= ?3",
        &args![id, now, now_ms, MAX_ATTEMPTS],
    )
}

/// Why an abandoned job failed.
pub fn abandoned_reason(attempts: i64) -> String {
    format!(
        "the worker crashed or stopped while processing this file ({attempts} attempts, none \
         finished); it is not run again"
    )
}

/// The last attempt's error says more than the queue's "gave up", so it is kept when there.
pub fn dead_letter(db: &Db, id: &str, error: &str, now: &str) -> Result<Guarded> {
    update(
        db,
        Event::DeadLettered,
        "error = COALESCE(error, ?2), lease_until = NULL, completed_at = ?3, updated_at = ?3",
        "",
        &args![id, error, now],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENTS: [Event; 7] = [
        Event::Claimed,
        Event::Succeeded,
        Event::Retrying,
        Event::Failed,
        Event::Abandoned,
        Event::Released,
        Event::DeadLettered,
    ];

    fn expected(s: JobStatus, e: Event) -> Option<JobStatus> {
        match (s, e) {
            (Pending | Processing, Event::Claimed) => Some(Processing),
            (Processing, Event::Succeeded) => Some(Completed),
            (Processing, Event::Retrying | Event::Released) => Some(Processing),
            (Processing, Event::Failed | Event::Abandoned) => Some(Failed),
            (Pending | Processing, Event::DeadLettered) => Some(Failed),
            _ => None,
        }
    }

    #[test]
    fn every_status_and_event_pair_follows_the_table() {
        for s in JobStatus::ALL {
            for e in EVENTS {
                let got = next(s, e).map(|t| t.to).ok();
                assert_eq!(got, expected(s, e), "{s} + {e:?}");
                assert_eq!(e.from_states().contains(&s), got.is_some(), "{s} + {e:?}");
            }
        }
    }

    #[test]
    fn finished_jobs_stay_finished_and_results_need_a_claim() {
        for s in [Completed, Failed] {
            for e in EVENTS {
                assert_eq!(next(s, e), Err(Refused { from: s, event: e }));
            }
        }
        assert!(next(Pending, Event::Succeeded).is_err());
        assert!(next(Pending, Event::Failed).is_err());
    }

    #[test]
    fn kinds_and_statuses_round_trip_as_their_names() {
        for (s, name) in JobStatus::ALL.into_iter().zip(JobStatus::NAMES) {
            assert_eq!(JobStatus::parse(name), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), name);
        }
        for (k, name) in JobKind::ALL.into_iter().zip(JobKind::NAMES) {
            assert_eq!(JobKind::parse(name), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), name);
        }
        assert_eq!(JobKind::parse("resize"), None);
    }
}

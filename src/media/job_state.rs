//! The media job state machine: job kinds and statuses, the events that move a job, the pure
//! `next` that decides, and one guarded `UPDATE jobs` per transition. Nothing else writes
//! `jobs.status`.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::args;
use crate::platform::db::{Arg, Db};
use crate::platform::error::Result;
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
    /// A delivery takes the job's lease (a redelivery after an expired lease claims it again).
    Claimed,
    /// The extraction produced its result.
    Succeeded,
    /// A transient failure with attempts left: the queue retries it.
    Retrying,
    /// A permanent failure, or a transient one on the last attempt.
    Failed,
    /// The queue gave up on its message.
    DeadLettered,
}

impl Event {
    /// The transition table: the statuses an event may move a job from, and where to.
    const fn rule(self) -> (&'static [JobStatus], JobStatus) {
        match self {
            Event::Claimed => (&[Pending, Processing], Processing),
            Event::Succeeded => (&[Processing], Completed),
            Event::Retrying => (&[Processing], Processing),
            Event::Failed => (&[Processing], Failed),
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

/// Takes the job's lease until `lease_until_ms` unless a live one is held.
pub fn claim(db: &Db, id: &str, now: &str, now_ms: i64, lease_until_ms: i64) -> Result<Guarded> {
    update(
        db,
        Event::Claimed,
        "progress = 10, started_at = COALESCE(started_at, ?2), lease_until = ?3, updated_at = ?2",
        " AND (lease_until IS NULL OR lease_until < ?4)",
        &args![id, now, lease_until_ms, now_ms],
    )
}

pub fn succeed(db: &Db, id: &str, attempt: i64, result: &str, now: &str) -> Result<Guarded> {
    update(
        db,
        Event::Succeeded,
        "progress = 100, attempts = ?2, result = ?3, error = NULL, lease_until = NULL, \
         completed_at = ?4, updated_at = ?4",
        "",
        &args![id, attempt, result, now],
    )
}

/// Keeps the attempt's error (shown while it waits) and frees the lease for the retry.
pub fn retry(db: &Db, id: &str, attempt: i64, error: &str, now: &str) -> Result<Guarded> {
    update(
        db,
        Event::Retrying,
        "attempts = ?2, error = ?3, lease_until = NULL, updated_at = ?4",
        "",
        &args![id, attempt, error, now],
    )
}

pub fn fail(db: &Db, id: &str, attempt: i64, error: &str, now: &str) -> Result<Guarded> {
    update(
        db,
        Event::Failed,
        "attempts = ?2, error = ?3, lease_until = NULL, completed_at = ?4, updated_at = ?4",
        "",
        &args![id, attempt, error, now],
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

    const EVENTS: [Event; 5] = [
        Event::Claimed,
        Event::Succeeded,
        Event::Retrying,
        Event::Failed,
        Event::DeadLettered,
    ];

    fn expected(s: JobStatus, e: Event) -> Option<JobStatus> {
        match (s, e) {
            (Pending | Processing, Event::Claimed) => Some(Processing),
            (Processing, Event::Succeeded) => Some(Completed),
            (Processing, Event::Retrying) => Some(Processing),
            (Processing, Event::Failed) => Some(Failed),
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

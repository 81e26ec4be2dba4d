//! The execution state machine: its statuses, the events that move it, the pure `next` that
//! decides, and one guarded `UPDATE executions` per transition. Nothing else writes
//! `executions.status`.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::args;
use crate::platform::db::{Arg, Db};
use crate::platform::error::Result;
use crate::platform::lease::{self, Holder};
use crate::platform::state::{sql_list, Guarded};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionStatus {
    Pending,
    Processing,
    Completed,
    Failed,
    Cancelled,
}

use ExecutionStatus::{Cancelled, Completed, Failed, Pending, Processing};

impl ExecutionStatus {
    pub const ALL: [ExecutionStatus; 5] = [Pending, Processing, Completed, Failed, Cancelled];
    /// The names, for query filters and their documentation.
    pub const NAMES: [&'static str; 5] =
        ["pending", "processing", "completed", "failed", "cancelled"];

    pub fn parse(s: &str) -> Option<ExecutionStatus> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Pending => "pending",
            Processing => "processing",
            Completed => "completed",
            Failed => "failed",
            Cancelled => "cancelled",
        }
    }

    /// Still able to run a step (not ended).
    pub fn is_live(self) -> bool {
        next(self, Event::Claimed).is_ok()
    }
}

impl fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens to an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A step delivery takes the lease on the next step.
    Claimed,
    /// A step succeeded and more remain.
    StepDone,
    /// The last step succeeded.
    LastStepDone,
    /// A step failed with attempts left: it will be retried.
    StepFailed,
    /// A step failed on its last attempt.
    AttemptsExhausted,
    /// A user cancelled it.
    Cancelled,
    /// The cron sweep found it running past its workflow's timeout.
    TimedOut,
    /// The queue gave up on one of its step messages.
    DeadLettered,
    /// Its first step message could not be sent.
    NotQueued,
}

impl Event {
    /// The transition table: the statuses an event may move an execution from, and where to.
    /// `next` decides with it and every `UPDATE` below guards with it.
    const fn rule(self) -> (&'static [ExecutionStatus], ExecutionStatus) {
        match self {
            Event::Claimed => (&[Pending, Processing], Processing),
            Event::StepDone | Event::StepFailed => (&[Processing], Processing),
            Event::LastStepDone => (&[Processing], Completed),
            Event::AttemptsExhausted => (&[Processing], Failed),
            Event::Cancelled => (&[Pending, Processing], Cancelled),
            Event::TimedOut | Event::DeadLettered => (&[Pending, Processing], Failed),
            Event::NotQueued => (&[Pending], Failed),
        }
    }

    /// The statuses this event may move an execution from.
    pub fn from_states(self) -> &'static [ExecutionStatus] {
        self.rule().0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: ExecutionStatus,
    pub to: ExecutionStatus,
}

/// An event the execution's status does not allow (a completed execution cannot fail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub from: ExecutionStatus,
    pub event: Event,
}

pub fn next(status: ExecutionStatus, event: Event) -> std::result::Result<Transition, Refused> {
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

/// Why an execution failed: the one format of `error_message` (`<what>: <detail>`).
pub enum Reason<'a> {
    Step { name: &'a str, error: &'a str },
    TimedOut,
    DeadLettered(&'a str),
    NotQueued,
}

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Step { name, error } => write!(f, "step `{name}` failed: {error}"),
            Reason::TimedOut => f.write_str("timed out: still running past the workflow's timeout"),
            Reason::DeadLettered(error) => write!(f, "dead-lettered: {error}"),
            Reason::NotQueued => f.write_str("not queued: the first step could not be sent"),
        }
    }
}

/// The one statement of `event`'s transition: `SET status = <to>, <sets>` where the row is in
/// one of the event's from-states and `extra` holds. `?1` is always the execution id.
fn update(db: &Db, event: Event, sets: &str, extra: &str, args: &[Arg]) -> Result<Guarded> {
    let (from, to) = event.rule();
    let sql = format!(
        "UPDATE executions SET status = '{}', {sets} WHERE id = ?1 AND status IN ({}){extra}",
        to.as_str(),
        sql_list(from, ExecutionStatus::as_str)
    );
    Ok(Guarded(db.stmt(&sql, args)?))
}

/// An ended execution: when, how long it ran, and no lease. `?n` is the current time.
fn ended(n: u8) -> String {
    format!(
        "completed_at = ?{n}, updated_at = ?{n}, lease_id = NULL, lease_until = NULL, \
         duration_seconds = ROUND((julianday(?{n}) - julianday(COALESCE(started_at, ?{n}))) * 86400, 2)"
    )
}

/// The step delivery `holder` (its message id; an earlier attempt of the same message is dead
/// by the time the queue redelivers it) still owns step `step`; a cancel or timeout while it ran (or
/// another delivery's claim) makes its commit a no-op.
const HELD: &str = " AND next_step = ?2 AND lease_id = ?3";

/// Takes the lease on step `step` for `holder` until `lease_until_ms`, if `lease::may_take`
/// allows it (free, expired, or held by this message's own earlier, dead attempt).
pub fn claim(
    db: &Db,
    id: &str,
    step: i64,
    holder: &Holder,
    now: &str,
    now_ms: i64,
    lease_until_ms: i64,
) -> Result<Guarded> {
    update(
        db,
        Event::Claimed,
        &format!(
            "started_at = COALESCE(started_at, ?4), {}, updated_at = ?4",
            lease::sql_hold(3, 7, 5)
        ),
        &format!(" AND next_step = ?2 AND {}", lease::sql_may_take(3, 7, 6)),
        &args![
            id,
            step,
            holder.message_id.as_str(),
            now,
            lease_until_ms,
            now_ms,
            holder.attempt
        ],
    )
}

/// Step `step` succeeded and more remain: record its output and move on.
pub fn step_done(
    db: &Db,
    id: &str,
    step: i64,
    holder: &str,
    progress: i64,
    step_outputs: &str,
    now: &str,
) -> Result<Guarded> {
    update(
        db,
        Event::StepDone,
        "next_step = ?2 + 1, progress = ?4, step_outputs = ?5, attempts = attempts + 1, \
         lease_id = NULL, lease_until = NULL, error_message = NULL, updated_at = ?6",
        HELD,
        &args![id, step, holder, progress, step_outputs, now],
    )
}

/// The last step succeeded: its output is the execution's.
pub fn complete(
    db: &Db,
    id: &str,
    step: i64,
    holder: &str,
    step_outputs: &str,
    output: &str,
    now: &str,
) -> Result<Guarded> {
    update(
        db,
        Event::LastStepDone,
        &format!(
            "next_step = ?2 + 1, progress = 100, step_outputs = ?4, attempts = attempts + 1, \
             output_data = ?5, error_message = NULL, {}",
            ended(6)
        ),
        HELD,
        &args![id, step, holder, step_outputs, output, now],
    )
}

/// Step `step` failed with attempts left: keep the reason, free the lease for the retry.
pub fn step_failed(
    db: &Db,
    id: &str,
    step: i64,
    holder: &str,
    reason: &Reason,
    now: &str,
) -> Result<Guarded> {
    update(
        db,
        Event::StepFailed,
        "attempts = attempts + 1, error_message = ?4, lease_id = NULL, lease_until = NULL, \
         updated_at = ?5",
        HELD,
        &args![id, step, holder, reason.to_string(), now],
    )
}

/// Step `step` failed on its last attempt: the execution fails with the reason.
pub fn attempts_exhausted(
    db: &Db,
    id: &str,
    step: i64,
    holder: &str,
    reason: &Reason,
    now: &str,
) -> Result<Guarded> {
    update(
        db,
        Event::AttemptsExhausted,
        &format!("attempts = attempts + 1, error_message = ?4, {}", ended(5)),
        HELD,
        &args![id, step, holder, reason.to_string(), now],
    )
}

pub fn cancel(db: &Db, tenant_id: &str, id: &str, now: &str) -> Result<Guarded> {
    update(
        db,
        Event::Cancelled,
        &ended(3),
        " AND tenant_id = ?2",
        &args![id, tenant_id, now],
    )
}

/// The cron sweep's move: still running past the workflow's timeout.
pub fn time_out(db: &Db, id: &str, now: &str) -> Result<Guarded> {
    fail_outside(db, id, Event::TimedOut, &Reason::TimedOut, now)
}

/// The dead-letter consumer's move: the queue gave up on a step message.
pub fn dead_letter(db: &Db, id: &str, error: &str, now: &str) -> Result<Guarded> {
    fail_outside(
        db,
        id,
        Event::DeadLettered,
        &Reason::DeadLettered(error),
        now,
    )
}

/// The first step message could not be sent, so nothing would ever run it.
pub fn not_queued(db: &Db, id: &str, now: &str) -> Result<Guarded> {
    fail_outside(db, id, Event::NotQueued, &Reason::NotQueued, now)
}

/// Fails an execution for a reason outside its steps: no lease to hold.
fn fail_outside(db: &Db, id: &str, event: Event, reason: &Reason, now: &str) -> Result<Guarded> {
    update(
        db,
        event,
        &format!("error_message = ?2, {}", ended(3)),
        "",
        &args![id, reason.to_string(), now],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENTS: [Event; 9] = [
        Event::Claimed,
        Event::StepDone,
        Event::LastStepDone,
        Event::StepFailed,
        Event::AttemptsExhausted,
        Event::Cancelled,
        Event::TimedOut,
        Event::DeadLettered,
        Event::NotQueued,
    ];

    /// Every (status, event) pair: where it goes, or `None` when refused.
    fn expected(s: ExecutionStatus, e: Event) -> Option<ExecutionStatus> {
        use Event::*;
        match (s, e) {
            (Pending | Processing, Claimed) => Some(Processing),
            (Processing, StepDone | StepFailed) => Some(Processing),
            (Processing, LastStepDone) => Some(Completed),
            (Processing, AttemptsExhausted) => Some(Failed),
            (Pending | Processing, Event::Cancelled) => Some(ExecutionStatus::Cancelled),
            (Pending | Processing, TimedOut | DeadLettered) => Some(Failed),
            (Pending, NotQueued) => Some(Failed),
            _ => None,
        }
    }

    #[test]
    fn every_status_and_event_pair_follows_the_table() {
        for s in ExecutionStatus::ALL {
            for e in EVENTS {
                let got = next(s, e).map(|t| t.to).ok();
                assert_eq!(got, expected(s, e), "{s} + {e:?}");
                assert_eq!(e.from_states().contains(&s), got.is_some(), "{s} + {e:?}");
            }
        }
    }

    #[test]
    fn ended_executions_stay_ended() {
        for s in [Completed, Failed, Cancelled] {
            assert!(!s.is_live());
            for e in EVENTS {
                assert_eq!(next(s, e), Err(Refused { from: s, event: e }));
            }
        }
        assert!(Pending.is_live() && Processing.is_live());
    }

    #[test]
    fn a_step_commit_needs_a_claimed_execution() {
        for e in [
            Event::StepDone,
            Event::LastStepDone,
            Event::StepFailed,
            Event::AttemptsExhausted,
        ] {
            assert!(next(Pending, e).is_err(), "{e:?}");
        }
        assert!(next(Processing, Event::NotQueued).is_err());
    }

    #[test]
    fn statuses_round_trip_as_their_lowercase_names() {
        for (s, name) in ExecutionStatus::ALL.into_iter().zip(ExecutionStatus::NAMES) {
            assert_eq!(s.as_str(), name);
            assert_eq!(ExecutionStatus::parse(name), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), name);
        }
        assert_eq!(ExecutionStatus::parse("done"), None);
    }

    #[test]
    fn failure_reasons_share_one_format() {
        let step = Reason::Step {
            name: "call",
            error: "POST /x answered 500",
        };
        assert_eq!(step.to_string(), "step `call` failed: POST /x answered 500");
        assert!(Reason::TimedOut.to_string().starts_with("timed out: "));
        assert_eq!(
            Reason::DeadLettered("gave up").to_string(),
            "dead-lettered: gave up"
        );
        assert!(Reason::NotQueued.to_string().starts_with("not queued: "));
    }
}

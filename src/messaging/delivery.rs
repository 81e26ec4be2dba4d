//! The message status machine: directions and statuses, the events that move a message (an
//! outbound send's claim and outcome, Meta's status reports, an agent reading an inbound
//! message, the sweep resolving a send whose claim ran out), the pure `next` that decides, and
//! one guarded `UPDATE messages` per transition. Nothing else writes `messages.status`.
//!
//! A send is claimed (`queued` → `sending`, naming its holder and a lease) before the Graph API
//! is called, and only the holder moves it on. A `sending` message is never claimed again: a
//! redelivery leaves it alone, and when its lease runs out without an outcome (the worker
//! stopped mid-call, or Meta did not answer) the sweep fails it with a reason instead of
//! sending it a second time.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::args;
use crate::platform::db::{Arg, Db};
use crate::platform::error::Result;
use crate::platform::state::{sql_list, Guarded};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From the contact.
    Inbound,
    /// From the business.
    Outbound,
}

impl Direction {
    pub const NAMES: [&'static str; 2] = ["inbound", "outbound"];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Received,
    Queued,
    /// Claimed by one delivery, which is calling the Graph API.
    Sending,
    Sent,
    Delivered,
    Read,
    Failed,
}

use MessageStatus::{Delivered, Failed, Queued, Read, Received, Sending, Sent};

impl MessageStatus {
    pub const ALL: [MessageStatus; 7] = [Received, Queued, Sending, Sent, Delivered, Read, Failed];
    pub const NAMES: [&'static str; 7] = [
        "received",
        "queued",
        "sending",
        "sent",
        "delivered",
        "read",
        "failed",
    ];

    pub fn parse(s: &str) -> Option<MessageStatus> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// A status Meta reports in a webhook (`sent`, `delivered`, `read`, `failed`); anything
    /// else there (`deleted`, …) is not ours to apply.
    pub fn parse_report(s: &str) -> Option<MessageStatus> {
        Self::parse(s).filter(|v| rank(*v) > 0)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Received => "received",
            Queued => "queued",
            Sending => "sending",
            Sent => "sent",
            Delivered => "delivered",
            Read => "read",
            Failed => "failed",
        }
    }
}

impl fmt::Display for MessageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How far along a message is. Meta's status reports arrive out of order (`read` before
/// `delivered`), so a report only ever moves a message to a higher rank.
fn rank(s: MessageStatus) -> u8 {
    match s {
        Received | Queued | Sending => 0,
        Sent => 1,
        Delivered => 2,
        Read => 3,
        Failed => 4,
    }
}

/// What happens to a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A delivery takes the send, right before calling the Graph API.
    Claimed,
    /// The Graph API accepted an outbound send (it answered the wamid).
    Accepted,
    /// A transient send failure with attempts left: queued again for a later try.
    SendRetrying,
    /// Meta rejected the send, the channel is not connected, or the attempts ran out.
    SendFailed,
    /// The queue gave up on the send's message.
    DeadLettered,
    /// The claim's lease ran out with no outcome recorded: whether Meta got the send is not
    /// known, so it is failed with that reason rather than sent again.
    Abandoned,
    /// A status report from Meta's webhook.
    Reported(MessageStatus),
    /// An agent read an inbound message.
    MarkedRead,
}

impl Event {
    pub fn to(self) -> MessageStatus {
        match self {
            Event::Claimed => Sending,
            Event::Accepted => Sent,
            Event::SendRetrying => Queued,
            Event::SendFailed | Event::DeadLettered | Event::Abandoned => Failed,
            Event::Reported(s) => s,
            Event::MarkedRead => Read,
        }
    }

    /// The transition table: whether a message in `from` may take this event.
    fn allowed_from(self, from: MessageStatus) -> bool {
        match self {
            Event::Claimed => from == Queued,
            Event::Accepted | Event::SendRetrying | Event::Abandoned => from == Sending,
            // Queued: the channel is gone before any call; sending: Meta's answer.
            Event::SendFailed | Event::DeadLettered => matches!(from, Queued | Sending),
            Event::Reported(to) => rank(to) > 0 && rank(from) < rank(to),
            Event::MarkedRead => from == Received,
        }
    }

    /// The statuses this event may move a message from, for the SQL guard.
    pub fn from_states(self) -> Vec<MessageStatus> {
        MessageStatus::ALL
            .into_iter()
            .filter(|s| self.allowed_from(*s))
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: MessageStatus,
    pub to: MessageStatus,
}

/// An event the message's status does not allow (a `read` report after `read`, a retry of a
/// sent message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub from: MessageStatus,
    pub event: Event,
}

pub fn next(status: MessageStatus, event: Event) -> std::result::Result<Transition, Refused> {
    if event.allowed_from(status) {
        Ok(Transition {
            from: status,
            to: event.to(),
        })
    } else {
        Err(Refused {
            from: status,
            event,
        })
    }
}

/// The one statement of `event`'s transition: where `key` holds and the row is in one of the
/// event's from-states.
fn update(db: &Db, event: Event, sets: &str, key: &str, args: &[Arg]) -> Result<Guarded> {
    let sql = format!(
        "UPDATE messages SET status = '{}', {sets} WHERE {key} AND status IN ({})",
        event.to().as_str(),
        sql_list(&event.from_states(), MessageStatus::as_str)
    );
    Ok(Guarded(db.stmt(&sql, args)?))
}

/// How long a claim holds: the Graph API call's deadline plus room for the writes around it.
pub const SEND_LEASE_MS: i64 = 35_000;

/// `queued` → `sending` for `holder` (a queue message id and the invocation) until
/// `lease_until_ms`. `false`: someone else has it, or it is no longer queued.
pub fn claim(db: &Db, id: &str, holder: &str, lease_until_ms: i64, now: &str) -> Result<Guarded> {
    update(
        db,
        Event::Claimed,
        "lease_holder = ?2, lease_until_ms = ?3, updated_at = ?4",
        "id = ?1",
        &args![id, holder, lease_until_ms, now],
    )
}

pub fn accepted(
    db: &Db,
    id: &str,
    holder: &str,
    wamid: Option<String>,
    attempts: i64,
    now: &str,
) -> Result<Guarded> {
    update(
        db,
        Event::Accepted,
        "wamid = ?3, attempts = ?4, error_code = NULL, error_title = NULL, lease_until_ms = NULL, \
         updated_at = ?5",
        "id = ?1 AND lease_holder = ?2",
        &args![id, holder, wamid, attempts, now],
    )
}

/// Keeps Meta's error of this attempt and releases the claim while the send waits for its
/// next try.
pub fn send_retrying(
    db: &Db,
    id: &str,
    holder: &str,
    attempts: i64,
    code: &str,
    title: &str,
    now: &str,
) -> Result<Guarded> {
    update(
        db,
        Event::SendRetrying,
        "attempts = ?3, error_code = ?4, error_title = ?5, lease_holder = NULL, \
         lease_until_ms = NULL, updated_at = ?6",
        "id = ?1 AND lease_holder = ?2",
        &args![id, holder, attempts, code, title, now],
    )
}

/// `attempts` counts the Graph API calls made (unchanged when none was: no channel). `holder`
/// is the claim's (`None` for a message failed before any claim: its holder is empty).
pub fn send_failed(
    db: &Db,
    id: &str,
    holder: Option<&str>,
    attempts: i64,
    code: &str,
    title: &str,
    now: &str,
) -> Result<Guarded> {
    update(
        db,
        Event::SendFailed,
        "attempts = ?3, error_code = ?4, error_title = ?5, lease_until_ms = NULL, updated_at = ?6",
        "id = ?1 AND lease_holder IS ?2",
        &args![id, holder.map(str::to_string), attempts, code, title, now],
    )
}

/// The sweep: every send whose claim ran out before `now_ms` without an outcome.
pub fn abandoned(db: &Db, now_ms: i64, now: &str) -> Result<Guarded> {
    update(
        db,
        Event::Abandoned,
        "error_code = 'send_unconfirmed', error_title = 'The send was started but its outcome \
         was never recorded (the worker stopped or the Graph API did not answer); it is not \
         sent again, to avoid a duplicate.', lease_until_ms = NULL, updated_at = ?2",
        "lease_until_ms < ?1",
        &args![now_ms, now],
    )
}

pub fn dead_letter(db: &Db, id: &str, error: &str, now: &str) -> Result<Guarded> {
    update(
        db,
        Event::DeadLettered,
        "error_code = 'dead_letter', error_title = ?2, lease_until_ms = NULL, updated_at = ?3",
        "id = ?1",
        &args![id, error, now],
    )
}

/// Applies Meta's report `to` for the tenant's message `wamid`; errors only overwrite when
/// the report carries one.
pub fn reported(
    db: &Db,
    tenant_id: &str,
    wamid: &str,
    to: MessageStatus,
    error_code: Option<String>,
    error_title: Option<String>,
    now: &str,
) -> Result<Guarded> {
    update(
        db,
        Event::Reported(to),
        "error_code = COALESCE(?3, error_code), error_title = COALESCE(?4, error_title), \
         updated_at = ?5",
        "tenant_id = ?1 AND wamid = ?2",
        &args![tenant_id, wamid, error_code, error_title, now],
    )
}

pub fn marked_read(db: &Db, tenant_id: &str, id: &str, now: &str) -> Result<Guarded> {
    update(
        db,
        Event::MarkedRead,
        "updated_at = ?3",
        "id = ?1 AND tenant_id = ?2",
        &args![id, tenant_id, now],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events() -> Vec<Event> {
        let mut all = vec![
            Event::Claimed,
            Event::Accepted,
            Event::SendRetrying,
            Event::SendFailed,
            Event::DeadLettered,
            Event::Abandoned,
            Event::MarkedRead,
        ];
        all.extend(MessageStatus::ALL.map(Event::Reported));
        all
    }

    fn expected(s: MessageStatus, e: Event) -> Option<MessageStatus> {
        use Event::*;
        match (s, e) {
            (Queued, Claimed) => Some(Sending),
            (Sending, Accepted) => Some(Sent),
            (Sending, SendRetrying) => Some(Queued),
            (Sending, Abandoned) => Some(Failed),
            (Queued | Sending, SendFailed | DeadLettered) => Some(Failed),
            (Received, MarkedRead) => Some(Read),
            (Received | Queued | Sending, Reported(to @ (Sent | Delivered | Read | Failed))) => {
                Some(to)
            }
            (Sent, Reported(to @ (Delivered | Read | Failed))) => Some(to),
            (Delivered, Reported(to @ (Read | Failed))) => Some(to),
            (Read, Reported(Failed)) => Some(Failed),
            _ => None,
        }
    }

    #[test]
    fn every_status_and_event_pair_follows_the_table() {
        for s in MessageStatus::ALL {
            for e in events() {
                let got = next(s, e).map(|t| t.to).ok();
                assert_eq!(got, expected(s, e), "{s} + {e:?}");
                assert_eq!(e.from_states().contains(&s), got.is_some(), "{s} + {e:?}");
            }
        }
    }

    #[test]
    fn late_delivery_reports_never_move_a_message_back() {
        assert!(next(Read, Event::Reported(Delivered)).is_err());
        assert!(next(Delivered, Event::Reported(Sent)).is_err());
        assert!(next(Read, Event::Reported(Read)).is_err());
        assert!(next(Failed, Event::Reported(Read)).is_err());
        assert_eq!(next(Sent, Event::Reported(Read)).unwrap().to, Read);
    }

    #[test]
    fn only_a_claimed_message_is_sent_retried_or_abandoned_and_a_claim_is_taken_once() {
        for s in [Received, Sent, Delivered, Read, Failed] {
            for e in [
                Event::Claimed,
                Event::Accepted,
                Event::SendRetrying,
                Event::SendFailed,
                Event::DeadLettered,
                Event::Abandoned,
            ] {
                assert!(next(s, e).is_err(), "{s} + {e:?}");
            }
        }
        // A redelivery finds the message claimed (or sent) and cannot take it again.
        assert!(next(Sending, Event::Claimed).is_err());
        assert!(
            next(Queued, Event::Accepted).is_err(),
            "no send without a claim"
        );
        assert_eq!(next(Sending, Event::Abandoned).unwrap().to, Failed);
    }

    #[test]
    fn reports_are_the_delivery_statuses_and_names_round_trip() {
        let reports: Vec<_> = MessageStatus::NAMES
            .into_iter()
            .filter_map(MessageStatus::parse_report)
            .collect();
        assert_eq!(reports, [Sent, Delivered, Read, Failed]);
        assert_eq!(MessageStatus::parse_report("sending"), None);
        assert_eq!(MessageStatus::parse_report("deleted"), None);
        for (s, name) in MessageStatus::ALL.into_iter().zip(MessageStatus::NAMES) {
            assert_eq!(MessageStatus::parse(name), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), name);
        }
        assert_eq!(
            serde_json::to_value(Direction::Outbound).unwrap(),
            "outbound"
        );
    }
}

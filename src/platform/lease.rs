//! Leases on queue work (a media job, a workflow step): the holder is one delivery of one
//! queue message (`message id` + the runtime's delivery `attempt`), and a lease ends at
//! `until_ms`. The rule for taking the work is one pure function, and the same rule as the SQL
//! guard of every claim, so the decision and the statement cannot disagree.
//!
//! - No lease, or an expired one: anyone may take it.
//! - A live lease held by an earlier attempt of the same message: the queue redelivers a
//!   message only after that attempt ended (it failed, or the worker crashed under it), so the
//!   holder is dead and the redelivery takes over at once instead of waiting out the lease.
//! - Any other live lease (another message, or a duplicate of this very delivery): not yours.

/// One delivery of a queue message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub message_id: String,
    pub attempt: u32,
}

impl Holder {
    /// No delivery at all (the sweep): it may take only a free or expired lease.
    pub fn nobody() -> Holder {
        Holder {
            message_id: String::new(),
            attempt: 0,
        }
    }
}

/// The lease recorded on a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease<'a> {
    pub message_id: &'a str,
    pub attempt: i64,
    pub until_ms: i64,
}

impl<'a> Lease<'a> {
    /// The lease from a row's `lease_id`, `lease_attempt`, `lease_until` (none when not held).
    pub fn from_row(
        message_id: Option<&'a str>,
        attempt: Option<i64>,
        until_ms: Option<i64>,
    ) -> Option<Lease<'a>> {
        Some(Lease {
            message_id: message_id?,
            attempt: attempt.unwrap_or(0),
            until_ms: until_ms?,
        })
    }
}

/// Whether `claimant` may take the work at `now_ms`.
pub fn may_take(current: Option<Lease>, claimant: &Holder, now_ms: i64) -> bool {
    match current {
        None => true,
        Some(l) if l.until_ms <= now_ms => true,
        Some(l) => l.message_id == claimant.message_id && l.attempt < i64::from(claimant.attempt),
    }
}

/// `may_take` as a SQL condition over the row's `lease_id`, `lease_attempt` and `lease_until`,
/// with the claimant's message id, attempt and the current time in placeholders `?m`, `?a`
/// and `?n`.
pub fn sql_may_take(m: u8, a: u8, n: u8) -> String {
    format!(
        "(lease_id IS NULL OR lease_until IS NULL OR lease_until <= ?{n} \
         OR (lease_id = ?{m} AND COALESCE(lease_attempt, 0) < ?{a}))"
    )
}

/// The columns a claim sets: the holder and the lease's end, from placeholders `?m`, `?a`, `?u`.
pub fn sql_hold(m: u8, a: u8, u: u8) -> String {
    format!("lease_id = ?{m}, lease_attempt = ?{a}, lease_until = ?{u}")
}

/// The columns that free a lease.
pub const SQL_RELEASE: &str = "lease_id = NULL, lease_attempt = NULL, lease_until = NULL";

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(m: &str, attempt: u32) -> Holder {
        Holder {
            message_id: m.into(),
            attempt,
        }
    }

    fn lease(m: &str, attempt: i64, until_ms: i64) -> Option<Lease<'_>> {
        Some(Lease {
            message_id: m,
            attempt,
            until_ms,
        })
    }

    #[test]
    fn free_or_expired_leases_can_be_taken_by_anyone() {
        assert!(may_take(None, &holder("m", 1), 0));
        assert!(may_take(lease("other", 1, 1_000), &holder("m", 1), 1_000));
        assert!(may_take(lease("other", 1, 1_000), &holder("m", 1), 5_000));
    }

    #[test]
    fn a_redelivery_takes_over_from_its_own_dead_earlier_attempt() {
        assert!(may_take(lease("m", 1, 9_000), &holder("m", 2), 1_000));
        assert!(may_take(lease("m", 2, 9_000), &holder("m", 4), 1_000));
    }

    #[test]
    fn a_live_lease_of_another_message_or_the_same_delivery_is_not_taken() {
        assert!(!may_take(lease("other", 1, 9_000), &holder("m", 5), 1_000));
        assert!(!may_take(lease("m", 2, 9_000), &holder("m", 2), 1_000));
        assert!(!may_take(lease("m", 3, 9_000), &holder("m", 2), 1_000));
    }

    #[test]
    fn nobody_takes_only_free_or_expired_leases() {
        assert!(may_take(None, &Holder::nobody(), 0));
        assert!(may_take(lease("m", 1, 10), &Holder::nobody(), 10));
        assert!(!may_take(lease("m", 1, 10), &Holder::nobody(), 9));
    }

    #[test]
    fn a_row_without_a_holder_or_an_end_is_not_leased() {
        assert_eq!(Lease::from_row(None, Some(1), Some(5)), None);
        assert_eq!(Lease::from_row(Some("m"), Some(1), None), None);
        assert_eq!(Lease::from_row(Some("m"), None, Some(5)), lease("m", 0, 5));
    }

    #[test]
    fn the_sql_guard_names_the_same_columns_and_placeholders() {
        let sql = sql_may_take(3, 4, 5);
        assert!(sql.contains("lease_until <= ?5"), "{sql}");
        assert!(
            sql.contains("lease_id = ?3 AND COALESCE(lease_attempt, 0) < ?4"),
            "{sql}"
        );
        assert_eq!(
            sql_hold(1, 2, 3),
            "lease_id = ?1, lease_attempt = ?2, lease_until = ?3"
        );
    }
}

//! What the state machines (executions, media jobs, outbound messages) share: the one guarded
//! statement a transition runs, and the SQL list of the states it may leave.

use worker::D1PreparedStatement;

use super::db::Db;
use crate::platform::error::Result;

/// `'a', 'b'`: the from-states of a transition for `status IN (…)`, taken from the same table
/// as the pure `next`, so the SQL guard and the decision cannot disagree.
pub fn sql_list<S: Copy>(states: &[S], name: fn(S) -> &'static str) -> String {
    states
        .iter()
        .map(|s| format!("'{}'", name(*s)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A transition's single conditional `UPDATE`. It applies only when the row is still in one of
/// the allowed from-states, so a concurrent move (a cancel, a timeout, a redelivery) wins or
/// loses atomically and the loser sees `false`.
#[must_use = "a transition does nothing until it runs"]
pub struct Guarded(pub(crate) D1PreparedStatement);

impl Guarded {
    /// Runs the update alone; whether it applied.
    pub async fn run(self, db: &Db) -> Result<bool> {
        Ok(db.run_stmt(self.0).await? > 0)
    }

    /// Runs `with` (records that belong to the move: a step run, an audit entry) and then the
    /// update in one transaction; whether the update applied.
    pub async fn run_with(self, db: &Db, mut with: Vec<D1PreparedStatement>) -> Result<bool> {
        with.push(self.0);
        let changes = db.batch(with).await?;
        Ok(changes.last().is_some_and(|c| *c > 0))
    }

    /// Runs `before`, the update, then `after` in one transaction; whether the update applied.
    /// `after` holds what exists only if the move happened (outbox rows written with
    /// `Staged::insert_if_applied`, which check `changes()` of the statement before them).
    pub async fn run_then(
        self,
        db: &Db,
        mut before: Vec<D1PreparedStatement>,
        after: Vec<D1PreparedStatement>,
    ) -> Result<bool> {
        let at = before.len();
        before.push(self.0);
        before.extend(after);
        let changes = db.batch(before).await?;
        Ok(changes.get(at).is_some_and(|c| *c > 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sql_list_quotes_each_state() {
        assert_eq!(sql_list(&["a", "b"], |s| s), "'a', 'b'");
        assert_eq!(sql_list::<&str>(&[], |s| s), "");
    }
}

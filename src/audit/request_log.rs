//! The request log behind `GET /admin/api-logs`, without a D1 write per request: the API Worker
//! keeps each isolate's entries in memory and hands them to the jobs Worker as one queue
//! message a second (or sooner, at `MAX_ENTRIES`), which inserts them in one D1 batch.
//! An isolate that dies in that second loses its unsent entries; the JSON log line of each
//! request still has them. At scale the log belongs in Workers Analytics Engine or Logpush
//! (README), not in D1.

use std::cell::RefCell;
use std::time::Duration;

use worker::Env;

use crate::platform::db::{Arg, Db};
use crate::platform::error::Result;
use crate::platform::queue::{self, ApiLog, Job};

const FLUSH_AFTER: Duration = Duration::from_secs(1);
/// Entries per queue message: paths are capped at 512 characters, so 100 entries stay far
/// below the 128 KB message limit.
const MAX_ENTRIES: usize = 100;
/// D1 binds at most 100 parameters per statement; an entry has 11.
const ROWS_PER_INSERT: usize = 9;

thread_local! {
    static PENDING: RefCell<Vec<ApiLog>> = const { RefCell::new(Vec::new()) };
}

/// Keeps `entry` for the next flush. The request that starts a batch (or fills one) schedules
/// the flush after its response, in `wait_until`; the others cost no I/O at all.
pub fn record(env: &Env, wait: &worker::Context, entry: ApiLog) {
    let (first, full) = PENDING.with(|p| {
        let mut p = p.borrow_mut();
        p.push(entry);
        (p.len() == 1, p.len() >= MAX_ENTRIES)
    });
    if !first && !full {
        return;
    }
    let env = env.clone();
    wait.wait_until(async move {
        if !full {
            worker::Delay::from(FLUSH_AFTER).await;
        }
        let entries = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
        if entries.is_empty() {
            return;
        }
        let n = entries.len();
        if let Err(e) = queue::enqueue(&env, &Job::ApiLogs { entries }, 0).await {
            worker::console_error!("request log: {n} entries not sent: {e}");
        }
    });
}

/// The jobs Worker's side: one D1 batch (one transaction) for a message's entries. A
/// redelivered message inserts nothing twice (the ids are the rows' keys).
pub async fn insert(env: &Env, entries: &[ApiLog]) -> Result<()> {
    let db = Db::from_env(env)?;
    let stmts = entries
        .chunks(ROWS_PER_INSERT)
        .map(|rows| db.stmt(&insert_sql(rows.len()), &insert_args(rows)))
        .collect::<Result<Vec<_>>>()?;
    if !stmts.is_empty() {
        db.batch(stmts).await?;
    }
    Ok(())
}

fn insert_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let cols: Vec<String> = (1..=11).map(|c| format!("?{}", r * 11 + c)).collect();
            format!("({})", cols.join(", "))
        })
        .collect();
    format!(
        "INSERT OR IGNORE INTO api_logs (id, request_id, tenant_id, user_id, method, route, path, \
         status, duration_ms, ip, created_at) VALUES {}",
        values.join(", ")
    )
}

fn insert_args(rows: &[ApiLog]) -> Vec<Arg> {
    rows.iter()
        .flat_map(|e| {
            crate::args![
                e.id.as_str(),
                e.request_id.as_str(),
                e.tenant_id.clone(),
                e.user_id.clone(),
                e.method.as_str(),
                e.route.as_str(),
                e.path.as_str(),
                e.status,
                e.duration_ms,
                e.ip.clone(),
                e.created_at.as_str()
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_insert_stays_within_d1s_parameter_limit() {
        let sql = insert_sql(ROWS_PER_INSERT);
        assert!(sql.contains("?99)") && !sql.contains("?100"), "{sql}");
        assert_eq!(insert_sql(1).matches('?').count(), 11);
    }

    #[test]
    fn each_entry_binds_its_eleven_columns_in_order() {
        let e = ApiLog {
            id: "log_1".into(),
            request_id: "req_1".into(),
            tenant_id: None,
            user_id: Some("usr_1".into()),
            method: "GET".into(),
            route: "/api/v1/users".into(),
            path: "/api/v1/users".into(),
            status: 200,
            duration_ms: 3,
            ip: Some("127.0.0.1".into()),
            created_at: "2026-12-01T00:00:00.000Z".into(),
        };
        let args = insert_args(&[e.clone(), e]);
        assert_eq!(args.len(), 22);
    }
}

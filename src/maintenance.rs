//! Periodic clean-up run by the cron trigger: expired idempotency records, ended sessions and
//! their refresh tokens, request-log rows past retention, executions past their timeout, and
//! outbound sends whose claim ran out without an outcome (failed, never re-sent).

use worker::Env;

use crate::args;
use crate::platform::clock;
use crate::platform::db::Db;
use crate::platform::error::Result;

const DAY_MS: i64 = 24 * 3600 * 1000;
const API_LOG_RETENTION_DAYS: i64 = 30;

pub async fn sweep(env: &Env) -> Result<()> {
    let db = Db::from_env(env)?;
    let now = clock::now_ms();
    let counts = db
        .batch(vec![
            db.stmt(
                "DELETE FROM idempotency_keys WHERE created_at < ?1",
                &args![clock::rfc3339(now - DAY_MS)],
            )?,
            db.stmt(
                "DELETE FROM refresh_tokens WHERE session_id IN \
                 (SELECT id FROM sessions WHERE expires_at < ?1 OR revoked_at < ?2)",
                &args![clock::rfc3339(now), clock::rfc3339(now - 7 * DAY_MS)],
            )?,
            db.stmt(
                "DELETE FROM api_logs WHERE created_at < ?1",
                &args![clock::rfc3339(now - API_LOG_RETENTION_DAYS * DAY_MS)],
            )?,
        ])
        .await?;
    let timed_out = crate::workflows::fail_timed_out(env, now).await?;
    let sends_unconfirmed = crate::messaging::outbound::resolve_abandoned(&db, now).await?;
    worker::console_log!(
        "{}",
        serde_json::json!({"level": "info", "event": "sweep", "idempotency": counts[0], "refresh_tokens": counts[1], "api_logs": counts[2], "executions_timed_out": timed_out, "sends_unconfirmed": sends_unconfirmed})
    );
    Ok(())
}

//! Periodic clean-up run by the cron trigger: expired idempotency records, ended sessions and
//! their refresh tokens, request-log rows past retention, executions past their timeout, media
//! jobs whose lease expired with no live holder, outbound sends whose claim ran out without an
//! outcome (failed, never re-sent), multipart uploads idle for a day, and outbox rows whose
//! direct send did not happen, analytics events past `ANALYTICS_RETENTION_DAYS`, and sign-in
//! codes and pending links a day past their expiry.

use worker::Env;

use crate::args;
use crate::platform::config::Config;
use crate::platform::db::Db;
use crate::platform::error::Result;
use crate::platform::{clock, outbox};

const DAY_MS: i64 = 24 * 3600 * 1000;
const API_LOG_RETENTION_DAYS: i64 = 30;

pub async fn sweep(env: &Env) -> Result<()> {
    let db = Db::from_env(env)?;
    let now = clock::now_ms();
    let cfg = Config::cached(env)?;
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
            crate::analytics::retention_stmt(&db, cfg.analytics_retention_days, now)?,
            db.stmt(
                "DELETE FROM oauth_codes WHERE expires_at < ?1",
                &args![clock::rfc3339(now - DAY_MS)],
            )?,
            db.stmt(
                "DELETE FROM oauth_pending_links WHERE expires_at < ?1",
                &args![clock::rfc3339(now - DAY_MS)],
            )?,
        ])
        .await?;
    let timed_out = crate::workflows::fail_timed_out(env, &cfg, now).await?;
    #[cfg(feature = "jobs")]
    let (jobs_requeued, jobs_failed) = crate::media::runner::sweep_expired(env, &cfg, now).await?;
    #[cfg(not(feature = "jobs"))]
    let (jobs_requeued, jobs_failed) = (0, 0);
    let sends_unconfirmed = crate::messaging::outbound::resolve_abandoned(&db, now).await?;
    let uploads_aborted = crate::media::uploads::abort_idle(env, &db, now).await?;
    // Last, so what the moves above wrote and could not send goes out on the next run at the
    // latest (they are younger than the outbox's grace).
    let outbox_sent = outbox::flush(env, &db, now).await?;
    worker::console_log!(
        "{}",
        serde_json::json!({"level": "info", "event": "sweep", "idempotency": counts[0], "refresh_tokens": counts[1], "api_logs": counts[2], "analytics_events": counts[3], "oauth_codes": counts[4], "oauth_links": counts[5], "executions_timed_out": timed_out, "jobs_requeued": jobs_requeued, "jobs_failed": jobs_failed, "sends_unconfirmed": sends_unconfirmed, "uploads_aborted": uploads_aborted, "outbox_sent": outbox_sent})
    );
    Ok(())
}

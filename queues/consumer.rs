//! The jobs Worker's queue dispatcher: a thin entry on top of the features. It reads each
//! message of a batch, hands it to the feature that owns the work, and acks, retries or
//! records it. `tenantry-jobs` carries `Job`s; `tenantry-dlq` carries dead letters.

use futures_util::future::join_all;
use serde_json::json;
use worker::{Env, MessageBatch, MessageExt, QueueRetryOptionsBuilder, RawMessage};

use crate::args;
use crate::platform::config::Config;
use crate::platform::db::Db;
use crate::platform::error::{AppError, Result};
use crate::platform::queue::{self, DeadLetter, Job, Outcome, CALLBACK_ATTEMPTS};
use crate::platform::{bindings, clock, egress, ids};
use crate::workflows::{callbacks, engine, execution};

/// The `queue` entry point: dispatches on the queue the batch came from.
pub async fn consume(batch: MessageBatch<String>, env: Env) -> worker::Result<()> {
    let dlq = batch.queue() == bindings::DLQ_QUEUE;
    let messages: Vec<RawMessage> = batch.raw_iter().collect();
    let env = &env;
    join_all(messages.into_iter().map(|m| async move {
        let body = m.body().as_string().unwrap_or_default();
        let result = if dlq {
            record_dead_letter(env, &body).await.map(|()| Outcome::Ack)
        } else {
            handle_job(env, &m.id(), &body).await
        };
        match result {
            Ok(Outcome::Ack) => m.ack(),
            Ok(Outcome::Retry(secs)) => m.retry_with_options(
                &QueueRetryOptionsBuilder::new()
                    .with_delay_seconds(secs)
                    .build(),
            ),
            Err(e) => {
                // Infrastructure trouble (D1, queue send): let the runtime redeliver, and after
                // `max_retries` move the message to the dead-letter queue.
                worker::console_error!(
                    "{}",
                    json!({"level": "error", "event": "queue.message_failed", "dlq": dlq, "error": e.to_string(), "body": body})
                );
                m.retry();
            }
        }
    }))
    .await;
    Ok(())
}

async fn handle_job(env: &Env, message_id: &str, body: &str) -> Result<Outcome> {
    let job: Job = match serde_json::from_str(body) {
        Ok(j) => j,
        Err(e) => {
            // Not ours to retry: keep it where an operator can see it.
            record(
                env,
                None,
                "unknown",
                body,
                &format!("unreadable job: {e}"),
                1,
            )
            .await?;
            return Ok(Outcome::Ack);
        }
    };
    let cfg = Config::cached(env)?;
    match &job {
        Job::Step { execution_id, step } => {
            engine::run_step(env, &cfg, message_id, execution_id, *step).await
        }
        Job::Callback {
            execution_id,
            event,
            attempt,
        } => {
            if let Err(error) = callbacks::deliver(env, &cfg, execution_id, event).await {
                if *attempt >= CALLBACK_ATTEMPTS {
                    let letter = DeadLetter {
                        job: job.clone(),
                        error,
                        attempts: i64::from(*attempt),
                    };
                    queue::dead_letter(env, &letter).await?;
                } else {
                    let next = Job::Callback {
                        execution_id: execution_id.clone(),
                        event: event.clone(),
                        attempt: attempt + 1,
                    };
                    queue::enqueue(env, &next, egress::backoff_secs(i64::from(*attempt))).await?;
                }
            }
            Ok(Outcome::Ack)
        }
        Job::Webhook { event_id } => {
            crate::messaging::ingest::process(env, event_id).await?;
            Ok(Outcome::Ack)
        }
        Job::Send {
            message_id: id,
            slot_ms,
        } => crate::messaging::outbound::send(env, &cfg, message_id, id, *slot_ms).await,
        Job::InboundMedia { message_id: id } => {
            crate::messaging::attachments::fetch(env, &cfg, id).await
        }
        Job::CampaignChunk {
            campaign_id,
            offset,
        } => {
            crate::messaging::campaigns::queue_chunk(env, campaign_id, *offset).await?;
            Ok(Outcome::Ack)
        }
        Job::Media { job_id } => crate::media::runner::run(env, &cfg, job_id).await,
        Job::Sweep => {
            crate::maintenance::sweep(env).await?;
            Ok(Outcome::Ack)
        }
        Job::ApiLogs { entries } => {
            crate::audit::request_log::insert(env, entries).await?;
            Ok(Outcome::Ack)
        }
    }
}

/// The dead-letter consumer: records the message (visible at `GET /admin/errors`) and fails
/// an execution the runtime gave up on, so nothing ends silently.
async fn record_dead_letter(env: &Env, body: &str) -> Result<()> {
    let (job, error, attempts) = match serde_json::from_str::<DeadLetter>(body) {
        Ok(l) => (Some(l.job), l.error, l.attempts),
        Err(_) => match serde_json::from_str::<Job>(body) {
            Ok(j) => (
                Some(j),
                "delivery kept failing; the queue gave up".to_string(),
                0,
            ),
            Err(_) => (None, "unreadable message".to_string(), 0),
        },
    };
    let kind = job.as_ref().map_or("unknown", Job::kind);
    record(env, job.as_ref(), kind, body, &error, attempts).await?;
    match &job {
        Some(Job::Webhook { event_id }) => {
            crate::messaging::ingest::mark_failed(env, event_id, &error).await?
        }
        Some(Job::Send { message_id, .. }) => {
            crate::messaging::outbound::mark_failed(env, message_id, &error).await?
        }
        Some(Job::InboundMedia { message_id }) => {
            crate::messaging::attachments::mark_failed(env, message_id, &error).await?
        }
        Some(Job::Media { job_id }) => {
            crate::media::runner::mark_failed(env, job_id, &error).await?
        }
        _ => {}
    }
    if let Some(Job::Step { execution_id, .. }) = &job {
        let now = clock::rfc3339(clock::now_ms());
        let db = Db::from_env(env)?;
        if execution::dead_letter(&db, execution_id, &error, &now)?
            .run(&db)
            .await?
        {
            queue::enqueue(env, &Job::callback(execution_id, "execution.failed"), 0).await?;
        }
    }
    Ok(())
}

async fn record(
    env: &Env,
    job: Option<&Job>,
    kind: &str,
    body: &str,
    error: &str,
    attempts: i64,
) -> Result<()> {
    let db = Db::from_env(env)?;
    let execution_id = job.and_then(|j| j.execution_id().map(str::to_string));
    let (table, subject) = job.and_then(Job::subject).unwrap_or(("executions", ""));
    let id = ids::new_id("dlq");
    db.run(
        &format!(
            "INSERT INTO dead_letters (id, tenant_id, execution_id, kind, message, error, attempts, created_at) \
             VALUES (?1, (SELECT tenant_id FROM {table} WHERE id = ?8), ?2, ?3, ?4, ?5, ?6, ?7)"
        ),
        &args![
            id,
            execution_id,
            kind,
            body,
            error,
            attempts,
            clock::rfc3339(clock::now_ms()),
            subject
        ],
    )
    .await
    .map_err(|e| AppError::internal(format!("recording a dead letter: {e:?}")))?;
    Ok(())
}

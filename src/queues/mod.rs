//! Background work on Cloudflare Queues. One message type per queue, sent as a JSON string
//! (typed here, parsed on arrival): `Job` on `tenantry-jobs`, `DeadLetter` (or a bare `Job`
//! the runtime gave up on) on `tenantry-dlq`. Deliveries are at least once; every handler is
//! idempotent.

use futures_util::future::join_all;
use serde::{Deserialize, Serialize};
use serde_json::json;
use worker::{Env, MessageBatch, MessageBuilder, MessageExt, QueueRetryOptionsBuilder, RawMessage};

use crate::args;
use crate::http::error::{AppError, Result};
use crate::platform::config::Config;
use crate::platform::db::Db;
use crate::platform::{bindings, clock, ids};
use crate::workflows::{callbacks, engine};

/// What the consumer does with a message after handling it.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Ack,
    /// Redeliver after this many seconds (failed with attempts left, or paced).
    Retry(u32),
}

/// Tries before a callback delivery is dead-lettered.
pub const CALLBACK_ATTEMPTS: u32 = 3;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Job {
    /// Run step `step` (0-based) of an execution.
    Step { execution_id: String, step: i64 },
    /// Deliver an execution's end event to the tenant's callback URL.
    Callback {
        execution_id: String,
        event: String,
        attempt: u32,
    },
    /// Process a stored WhatsApp webhook event.
    Webhook { event_id: String },
    /// Send an outbound WhatsApp message.
    Send { message_id: String },
    /// Run a document job (text extraction or OCR).
    Media { job_id: String },
}

impl Job {
    pub fn callback(execution_id: &str, event: &str) -> Job {
        Job::Callback {
            execution_id: execution_id.to_string(),
            event: event.to_string(),
            attempt: 1,
        }
    }

    fn execution_id(&self) -> Option<&str> {
        match self {
            Job::Step { execution_id, .. } | Job::Callback { execution_id, .. } => {
                Some(execution_id)
            }
            Job::Webhook { .. } | Job::Send { .. } | Job::Media { .. } => None,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Job::Step { .. } => "step",
            Job::Callback { .. } => "callback",
            Job::Webhook { .. } => "webhook",
            Job::Send { .. } => "send",
            Job::Media { .. } => "media_job",
        }
    }

    /// The tenant-owned row the job is about, for the dead-letter record.
    fn subject(&self) -> (&'static str, &str) {
        match self {
            Job::Step { execution_id, .. } | Job::Callback { execution_id, .. } => {
                ("executions", execution_id)
            }
            Job::Webhook { event_id } => ("webhook_events", event_id),
            Job::Send { message_id } => ("messages", message_id),
            Job::Media { job_id } => ("jobs", job_id),
        }
    }
}

/// A job that kept failing, with why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub job: Job,
    pub error: String,
    pub attempts: i64,
}

pub async fn enqueue(env: &Env, job: &Job, delay_secs: u32) -> Result<()> {
    let body = serde_json::to_string(job)?;
    let mut message = MessageBuilder::new(body);
    if delay_secs > 0 {
        message = message.delay_seconds(delay_secs);
    }
    env.queue(bindings::JOBS)?.send(message.build()).await?;
    Ok(())
}

pub async fn dead_letter(env: &Env, letter: &DeadLetter) -> Result<()> {
    let body = serde_json::to_string(letter)?;
    env.queue(bindings::DLQ)?
        .send(MessageBuilder::new(body).build())
        .await?;
    Ok(())
}

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
    let cfg = Config::from_env(env)?;
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
                    dead_letter(env, &letter).await?;
                } else {
                    let next = Job::Callback {
                        execution_id: execution_id.clone(),
                        event: event.clone(),
                        attempt: attempt + 1,
                    };
                    enqueue(env, &next, engine::backoff_secs(i64::from(*attempt))).await?;
                }
            }
            Ok(Outcome::Ack)
        }
        Job::Webhook { event_id } => {
            crate::messaging::ingest::process(env, event_id).await?;
            Ok(Outcome::Ack)
        }
        Job::Send { message_id } => crate::messaging::outbound::send(env, &cfg, message_id).await,
        Job::Media { job_id } => crate::media::jobs::run(env, &cfg, job_id).await,
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
        Some(Job::Send { message_id }) => {
            crate::messaging::outbound::mark_failed(env, message_id, &error).await?
        }
        Some(Job::Media { job_id }) => crate::media::jobs::mark_failed(env, job_id, &error).await?,
        _ => {}
    }
    if let Some(Job::Step { execution_id, .. }) = &job {
        let now = clock::rfc3339(clock::now_ms());
        let db = Db::from_env(env)?;
        let failed = db
            .run(
                "UPDATE executions SET status = 'failed', error_message = ?2, completed_at = ?3, \
                 updated_at = ?3, lease_id = NULL, lease_until = NULL \
                 WHERE id = ?1 AND status IN ('pending', 'processing')",
                &args![execution_id.as_str(), error.as_str(), now],
            )
            .await?;
        if failed > 0 {
            enqueue(env, &Job::callback(execution_id, "execution.failed"), 0).await?;
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
    let (table, subject) = job.map_or(("executions", ""), Job::subject);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_round_trip_as_tagged_json() {
        let job = Job::Step {
            execution_id: "exe_1".into(),
            step: 2,
        };
        let text = serde_json::to_string(&job).unwrap();
        assert_eq!(text, r#"{"type":"step","execution_id":"exe_1","step":2}"#);
        assert_eq!(serde_json::from_str::<Job>(&text).unwrap(), job);
        let letter = DeadLetter {
            job: Job::callback("exe_1", "execution.failed"),
            error: "boom".into(),
            attempts: 3,
        };
        let text = serde_json::to_string(&letter).unwrap();
        assert_eq!(serde_json::from_str::<DeadLetter>(&text).unwrap(), letter);
        assert!(serde_json::from_str::<DeadLetter>(
            r#"{"type":"step","execution_id":"e","step":0}"#
        )
        .is_err());
    }
}

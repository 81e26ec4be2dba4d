//! The jobs Worker's queue dispatcher: a thin entry on top of the features. It reads each
//! message of a batch, hands it to the feature that owns the work, and acks, retries or
//! records it. `tenantry-jobs` carries `Job`s; `tenantry-dlq` carries dead letters.

use futures_util::future::join_all;
use serde_json::json;
use wasm_bindgen::{JsCast, JsValue};
use worker::{Env, MessageExt, QueueRetryOptionsBuilder, RawMessage};

use crate::args;
use crate::platform::config::Config;
use crate::platform::db::Db;
use crate::platform::error::{AppError, Result};
use crate::platform::lease::Holder;
use crate::platform::outbox::{self, Staged};
use crate::platform::queue::{
    self, DeadLetter, Job, Outcome, BATCH_EVENT_PREFIX, CALLBACK_ATTEMPTS,
};
use crate::platform::{bindings, clock, egress, ids};
use crate::workflows::{callbacks, engine, execution};

/// One delivered message: the runtime's handle (ack/retry), its body, and which delivery it
/// is (the holder a lease names).
struct Delivery {
    raw: RawMessage,
    body: String,
    holder: Holder,
    job: Option<Job>,
}

impl Delivery {
    fn new(message: worker::worker_sys::Message) -> Delivery {
        // `attempts` counts deliveries, from 1; `RawMessage` does not expose it.
        let attempt = js_sys::Reflect::get(&message, &JsValue::from_str("attempts"))
            .ok()
            .and_then(|v| v.as_f64())
            .map_or(1, |a| a.max(1.0) as u32);
        let raw = RawMessage::from(message);
        let body = raw.body().as_string().unwrap_or_default();
        let holder = Holder {
            message_id: raw.id(),
            attempt,
        };
        let job = serde_json::from_str(&body).ok();
        Delivery {
            raw,
            body,
            holder,
            job,
        }
    }

    fn media_job_id(&self) -> Option<&str> {
        match &self.job {
            Some(Job::Media { job_id }) => Some(job_id),
            _ => None,
        }
    }
}

/// The `queue` entry point: dispatches on the queue the batch came from.
///
/// Each message is acked (or retried) the moment it is handled, so what is done stays done if
/// the instance dies later in the batch. A Rust panic aborts the wasm instance and the runtime
/// redelivers every message not yet acked, so the work that can crash (a media job's parser)
/// runs after everything else in the batch, one job at a time, the jobs with fewer attempts
/// first: a poison file never holds the other messages of its batch, and after a crash the
/// innocent jobs of the redelivered batch run before the one that crashed.
pub async fn consume(batch: worker::worker_sys::MessageBatch, env: Env) -> worker::Result<()> {
    let queue: String = batch.queue().map_err(worker::Error::from)?.into();
    let dlq = queue == bindings::DLQ_QUEUE;
    let deliveries: Vec<Delivery> = batch
        .messages()
        .map_err(worker::Error::from)?
        .iter()
        .map(|m| Delivery::new(m.unchecked_into()))
        .collect();
    let env = &env;
    let (media, rest): (Vec<Delivery>, Vec<Delivery>) = deliveries
        .into_iter()
        .partition(|d| !dlq && d.media_job_id().is_some());
    join_all(rest.iter().map(|d| handle(env, d, dlq))).await;
    for d in fewest_attempts_first(env, media).await {
        handle(env, &d, false).await;
    }
    Ok(())
}

/// Media deliveries ordered by their job's attempts so far (a job that was running when the
/// instance died has one more than the jobs that had not started).
async fn fewest_attempts_first(env: &Env, mut media: Vec<Delivery>) -> Vec<Delivery> {
    #[derive(serde::Deserialize)]
    struct Row {
        id: String,
        attempts: i64,
    }
    if media.len() < 2 {
        return media;
    }
    let ids: Vec<&str> = media.iter().filter_map(Delivery::media_job_id).collect();
    let rows: Vec<Row> = match Db::from_env(env) {
        Ok(db) => db
            .all(
                "SELECT id, attempts FROM jobs WHERE id IN (SELECT value FROM json_each(?1))",
                &args![serde_json::to_string(&ids).unwrap_or_default()],
            )
            .await
            .unwrap_or_default(),
        Err(_) => vec![],
    };
    let attempts = |d: &Delivery| {
        rows.iter()
            .find(|r| Some(r.id.as_str()) == d.media_job_id())
            .map_or(0, |r| r.attempts)
    };
    media.sort_by_key(|d| attempts(d));
    media
}

async fn handle(env: &Env, d: &Delivery, dlq: bool) {
    let result = if dlq {
        record_dead_letter(env, &d.body)
            .await
            .map(|()| Outcome::Ack)
    } else {
        handle_job(env, &d.holder, &d.body).await
    };
    let m = &d.raw;
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
                json!({"level": "error", "event": "queue.message_failed", "dlq": dlq, "error": e.to_string(), "body": d.body})
            );
            m.retry();
        }
    }
}

async fn handle_job(env: &Env, holder: &Holder, body: &str) -> Result<Outcome> {
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
            engine::run_step(env, &cfg, holder, execution_id, *step).await
        }
        Job::Callback {
            subject_id,
            event,
            attempt,
        } => {
            // The event's in-app side, with its first delivery only (the retries are the
            // callback's).
            if *attempt == 1 {
                match event.as_str() {
                    "execution.failed" => callbacks::notify_failure(env, &cfg, subject_id).await,
                    "optimize.batch.completed" => {
                        crate::optimize::batches::notify_completion(env, &cfg, subject_id).await
                    }
                    _ => {}
                }
            }
            let delivered = if event.starts_with(BATCH_EVENT_PREFIX) {
                crate::optimize::batches::deliver_callback(env, &cfg, subject_id, event).await
            } else {
                callbacks::deliver(env, &cfg, subject_id, event).await
            };
            if let Err(error) = delivered {
                if *attempt >= CALLBACK_ATTEMPTS {
                    let letter = DeadLetter {
                        job: job.clone(),
                        error,
                        attempts: i64::from(*attempt),
                    };
                    queue::dead_letter(env, &letter).await?;
                } else {
                    let next = Job::Callback {
                        subject_id: subject_id.clone(),
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
        } => crate::messaging::outbound::send(env, &cfg, &holder.message_id, id, *slot_ms).await,
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
        Job::Media { job_id } => crate::media::runner::run(env, &cfg, holder, job_id).await,
        Job::Sweep => {
            crate::maintenance::sweep(env).await?;
            Ok(Outcome::Ack)
        }
        Job::ApiLogs { entries } => {
            crate::audit::request_log::insert(env, entries).await?;
            Ok(Outcome::Ack)
        }
        Job::Stripe { event_id } => {
            crate::billing::events::process(env, &cfg, holder, event_id).await
        }
        Job::Optimize { item_id, slot_ms } => {
            crate::optimize::batches::run_item(env, &cfg, holder, item_id, *slot_ms).await
        }
        Job::Email { email_id } => crate::email::deliver(env, &cfg, holder, email_id).await,
        Job::Push { delivery_id } => {
            crate::push::sender::deliver(env, &cfg, holder, delivery_id).await
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
                "delivery kept failing (the handler erred or the worker crashed); the queue gave up"
                    .to_string(),
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
        Some(Job::Stripe { event_id }) => {
            crate::billing::events::mark_failed(env, event_id, &error).await?
        }
        Some(Job::Optimize { item_id, .. }) => {
            crate::optimize::batches::mark_failed(env, item_id, &error).await?
        }
        Some(Job::Email { email_id }) => crate::email::mark_failed(env, email_id, &error).await?,
        Some(Job::Push { delivery_id }) => {
            crate::push::sender::mark_failed(env, delivery_id, &error).await?
        }
        _ => {}
    }
    if let Some(Job::Step { execution_id, .. }) = &job {
        let now = clock::rfc3339(clock::now_ms());
        let db = Db::from_env(env)?;
        let callback = Staged::job(
            &Job::callback(execution_id, "execution.failed"),
            0,
            clock::now_ms(),
        )?;
        if execution::dead_letter(&db, execution_id, &error, &now)?
            .run_then(&db, vec![], vec![callback.insert_if_applied(&db)?])
            .await?
        {
            outbox::send_now(env, &*Config::cached(env)?, &db, &[callback]).await;
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

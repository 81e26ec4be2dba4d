//! The queue messages both Workers share: one message type per queue, sent as a JSON string
//! (typed here, parsed on arrival): `Job` on `tenantry-jobs`, `DeadLetter` (or a bare `Job`
//! the runtime gave up on) on `tenantry-dlq`. The API Worker produces them; the jobs Worker
//! (`queues/consumer.rs`) consumes them. Deliveries are at least once; every handler is
//! idempotent.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use worker::{Env, MessageBuilder};

use super::bindings;
use crate::platform::error::Result;

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
    /// Deliver an event (`execution.*` about an execution, `optimize.batch.*` about a batch)
    /// to the tenant's callback URL.
    Callback {
        #[serde(alias = "execution_id")]
        subject_id: String,
        event: String,
        attempt: u32,
    },
    /// Process a stored WhatsApp webhook event.
    Webhook { event_id: String },
    /// Send an outbound WhatsApp message. `slot_ms`: the send's booked pacing slot (epoch ms),
    /// when it was re-scheduled to wait for its number's send rate (a wait is not an attempt).
    Send {
        message_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        slot_ms: Option<i64>,
    },
    /// Fetch an inbound message's media from the Graph API into the tenant's media.
    InboundMedia { message_id: String },
    /// Queue one chunk of a campaign's recipients (`offset`, up to the chunk size).
    CampaignChunk { campaign_id: String, offset: u32 },
    /// Run a document job (text extraction or OCR).
    Media { job_id: String },
    /// The periodic clean-up (the API Worker's cron trigger enqueues it).
    Sweep,
    /// Request-log entries the API Worker collected, inserted in one D1 batch.
    ApiLogs { entries: Vec<ApiLog> },
    /// Apply a stored Stripe webhook event (`stripe_events`).
    Stripe { event_id: String },
    /// Optimise one item of a prompt-optimisation batch (`optimize_batch_items`). `slot_ms`:
    /// its booked pacing slot, when it was re-scheduled to wait for the provider's rate.
    Optimize {
        item_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        slot_ms: Option<i64>,
    },
    /// Send one `email_outbox` message.
    Email { email_id: String },
    /// Send one `push_deliveries` web push.
    Push { delivery_id: String },
}

/// The event prefix of callbacks about optimisation batches (the rest are executions').
pub const BATCH_EVENT_PREFIX: &str = "optimize.batch.";

/// One answered `/api/v1` request: what the API Worker hands the jobs Worker, and what
/// `GET /admin/api-logs` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApiLog {
    pub id: String,
    pub request_id: String,
    pub tenant_id: Option<String>,
    pub user_id: Option<String>,
    pub method: String,
    pub route: String,
    pub path: String,
    pub status: i64,
    pub duration_ms: i64,
    pub ip: Option<String>,
    pub created_at: String,
}

impl Job {
    pub fn callback(subject_id: &str, event: &str) -> Job {
        Job::Callback {
            subject_id: subject_id.to_string(),
            event: event.to_string(),
            attempt: 1,
        }
    }

    pub fn execution_id(&self) -> Option<&str> {
        match self {
            Job::Step { execution_id, .. } => Some(execution_id),
            Job::Callback {
                subject_id, event, ..
            } if !event.starts_with(BATCH_EVENT_PREFIX) => Some(subject_id),
            _ => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Job::Step { .. } => "step",
            Job::Callback { .. } => "callback",
            Job::Webhook { .. } => "webhook",
            Job::Send { .. } => "send",
            Job::InboundMedia { .. } => "inbound_media",
            Job::CampaignChunk { .. } => "campaign_chunk",
            Job::Media { .. } => "media_job",
            Job::Sweep => "sweep",
            Job::ApiLogs { .. } => "api_logs",
            Job::Stripe { .. } => "stripe_event",
            Job::Optimize { .. } => "optimize_item",
            Job::Email { .. } => "email",
            Job::Push { .. } => "push",
        }
    }

    /// The tenant-owned row the job is about, for the dead-letter record (none for the
    /// deployment's own housekeeping).
    pub fn subject(&self) -> Option<(&'static str, &str)> {
        Some(match self {
            Job::Step { execution_id, .. } => ("executions", execution_id),
            Job::Callback {
                subject_id, event, ..
            } => {
                if event.starts_with(BATCH_EVENT_PREFIX) {
                    ("optimize_batches", subject_id)
                } else {
                    ("executions", subject_id)
                }
            }
            Job::Webhook { event_id } => ("webhook_events", event_id),
            Job::Send { message_id, .. } | Job::InboundMedia { message_id } => {
                ("messages", message_id)
            }
            Job::CampaignChunk { campaign_id, .. } => ("campaigns", campaign_id),
            Job::Media { job_id } => ("jobs", job_id),
            Job::Stripe { event_id } => ("stripe_events", event_id),
            Job::Optimize { item_id, .. } => ("optimize_batch_items", item_id),
            Job::Email { email_id } => ("email_outbox", email_id),
            Job::Push { delivery_id } => ("push_deliveries", delivery_id),
            Job::Sweep | Job::ApiLogs { .. } => return None,
        })
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

/// Several jobs in one queue call (at most 100, the queue's batch limit), without delay.
pub async fn enqueue_all(env: &Env, jobs: &[Job]) -> Result<()> {
    for chunk in jobs.chunks(100) {
        let bodies = chunk
            .iter()
            .map(serde_json::to_string)
            .collect::<std::result::Result<Vec<_>, _>>()?;
        env.queue(bindings::JOBS)?.send_batch(bodies).await?;
    }
    Ok(())
}

pub async fn dead_letter(env: &Env, letter: &DeadLetter) -> Result<()> {
    let body = serde_json::to_string(letter)?;
    env.queue(bindings::DLQ)?
        .send(MessageBuilder::new(body).build())
        .await?;
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
        assert_eq!(
            serde_json::to_string(&Job::Sweep).unwrap(),
            r#"{"type":"sweep"}"#
        );
    }
}

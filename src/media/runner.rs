//! The jobs Worker's half of document jobs: claim a job under a lease, read its file from R2,
//! extract the text (a PDF's text layer via pdf-extract, text/CSV as is) or send the image to
//! `OCR_API_URL`, find product candidates, and record the result; transient failures retry
//! with backoff, then the job fails with the reason and is dead-lettered.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use worker::{Env, Headers, Method, Request, RequestInit};

use super::candidates;
use super::job_state::{self, Event, JobKind, JobStatus, MAX_ATTEMPTS};
use super::jobs::JobResult;
use crate::args;
use crate::platform::clock;
use crate::platform::config::Config;
use crate::platform::db::Db;
use crate::platform::egress::{backoff_secs, fetch_text};
use crate::platform::error::Result;
use crate::platform::lease::{self, Holder, Lease};
use crate::platform::outbox::{self, Staged};
use crate::platform::queue::{DeadLetter, Job, Outcome};
use crate::platform::state::Guarded;

/// Why a run failed, and whether another attempt could help.
enum Failure {
    Permanent(String),
    Transient(String),
}

/// `extract_text` itself: a PDF's text layer (pages joined by newlines) or a text file as is.
fn read_text(content_type: &str, data: Vec<u8>) -> std::result::Result<(String, i64), Failure> {
    match content_type {
        "application/pdf" => {
            let pages = pdf_extract::extract_text_from_mem_by_pages(&data).map_err(|e| {
                Failure::Permanent(format!("the PDF has no readable text layer: {e}"))
            })?;
            Ok((pages.join("\n"), pages.len() as i64))
        }
        t if t.starts_with("text/") => Ok((
            String::from_utf8(data)
                .map_err(|_| Failure::Permanent("the file is not UTF-8 text".into()))?,
            1,
        )),
        t => Err(Failure::Permanent(format!(
            "extract_text cannot read {t} files"
        ))),
    }
}

async fn extract(
    env: &Env,
    cfg: &Config,
    kind: JobKind,
    content_type: &str,
    key: &str,
) -> std::result::Result<JobResult, Failure> {
    let data = super::read_all(env, key)
        .await
        .map_err(|e| Failure::Transient(format!("reading the file: {e}")))?;
    let (text, pages, confidence) = match (kind, content_type) {
        (JobKind::ExtractText, t) => {
            let (text, pages) = read_text(t, data)?;
            (text, pages, Some(1.0))
        }
        (JobKind::Ocr, t) if t.starts_with("image/") => {
            let url = cfg
                .ocr_api_url
                .clone()
                .ok_or_else(|| Failure::Permanent("no OCR service is configured".into()))?;
            let headers = Headers::new();
            let _ = headers.set("Content-Type", t);
            let mut init = RequestInit::new();
            init.with_method(Method::Post)
                .with_headers(headers)
                .with_body(Some(js_sys::Uint8Array::from(data.as_slice()).into()));
            let request = Request::new_with_init(&url, &init)
                .map_err(|e| Failure::Permanent(format!("OCR_API_URL: {e}")))?;
            let (status, body) = fetch_text(&cfg.egress, request, Duration::from_secs(60))
                .await
                .map_err(|e| Failure::Transient(format!("the OCR service: {e}")))?;
            if !(200..300).contains(&status) {
                let snippet: String = body.chars().take(200).collect();
                return Err(Failure::Transient(format!(
                    "the OCR service answered {status}: {snippet}"
                )));
            }
            let v: Value = serde_json::from_str(&body)
                .map_err(|_| Failure::Transient("the OCR service did not answer JSON".into()))?;
            (
                v["text"].as_str().unwrap_or_default().to_string(),
                v["pages"].as_i64().unwrap_or(1),
                v["confidence"].as_f64().map(|c| c.clamp(0.0, 1.0)),
            )
        }
        (k, t) => return Err(Failure::Permanent(format!("{k} cannot read {t} files"))),
    };
    let candidates = candidates::detect(&text, "EUR");
    Ok(JobResult {
        text,
        pages,
        confidence,
        product_candidates: candidates,
    })
}

/// The queue consumer's work for one job, for one delivery (`holder`) of its message.
///
/// The attempt is counted on the row when the job is claimed, before the file is read: in
/// wasm a panic in the parser aborts the whole instance (nothing can catch it), so a job that
/// crashed the worker on every attempt is failed here, without running it again, when its
/// message comes back.
pub async fn run(env: &Env, cfg: &Config, holder: &Holder, job_id: &str) -> Result<Outcome> {
    #[derive(Deserialize)]
    struct Row {
        kind: JobKind,
        status: JobStatus,
        attempts: i64,
        content_type: String,
        r2_key: String,
        lease_id: Option<String>,
        lease_attempt: Option<i64>,
        lease_until: Option<i64>,
    }
    let db = Db::from_env(env)?;
    let Some(job) = db
        .one::<Row>(
            "SELECT jobs.kind, jobs.status, jobs.attempts, media.content_type, media.r2_key, \
             jobs.lease_id, jobs.lease_attempt, jobs.lease_until \
             FROM jobs JOIN media ON media.id = jobs.media_id WHERE jobs.id = ?1",
            &args![job_id],
        )
        .await?
    else {
        return Ok(Outcome::Ack);
    };
    if job_state::next(job.status, Event::Claimed).is_err() {
        // Finished: a redelivery.
        return Ok(Outcome::Ack);
    }
    let now_ms = clock::now_ms();
    let now = clock::rfc3339(now_ms);
    let lease = Lease::from_row(job.lease_id.as_deref(), job.lease_attempt, job.lease_until);
    if !lease::may_take(lease, holder, now_ms) {
        // Another live delivery runs it; if that one dies, its own redelivery takes over, and
        // failing that the sweep does once the lease expires.
        return Ok(Outcome::Ack);
    }
    if job.attempts >= MAX_ATTEMPTS {
        let reason = job_state::abandoned_reason(job.attempts);
        let abandon = job_state::abandon(&db, job_id, holder, &reason, &now, now_ms)?;
        end_with_dead_letter(env, cfg, &db, abandon, job_id, reason, job.attempts).await?;
        return Ok(Outcome::Ack);
    }
    let claimed = job_state::claim(
        &db,
        job_id,
        holder,
        job.attempts,
        &now,
        now_ms,
        now_ms + LEASE_MS,
    )?
    .run(&db)
    .await?;
    if !claimed {
        return Ok(Outcome::Ack);
    }
    let attempt = job.attempts + 1;
    let outcome = extract(env, cfg, job.kind, &job.content_type, &job.r2_key).await;
    let done = clock::rfc3339(clock::now_ms());
    match outcome {
        Ok(result) => {
            let result = serde_json::to_string(&result)?;
            job_state::succeed(&db, job_id, holder, &result, &done)?
                .run(&db)
                .await?;
            Ok(Outcome::Ack)
        }
        Err(Failure::Transient(error)) if attempt < MAX_ATTEMPTS => {
            job_state::retry(&db, job_id, holder, &error, &done)?
                .run(&db)
                .await?;
            Ok(Outcome::Retry(backoff_secs(attempt)))
        }
        Err(Failure::Transient(error) | Failure::Permanent(error)) => {
            let fail = job_state::fail(&db, job_id, holder, &error, &done)?;
            end_with_dead_letter(env, cfg, &db, fail, job_id, error, attempt).await?;
            Ok(Outcome::Ack)
        }
    }
}

/// How long a claim holds a job: the OCR call's 60 s timeout and the read, with room.
const LEASE_MS: i64 = 180_000;

/// Runs a move that ends the job failed and, if it applied, the job's dead letter with it (an
/// outbox row in the same batch, sent now or by the sweep).
async fn end_with_dead_letter(
    env: &Env,
    cfg: &Config,
    db: &Db,
    ending: Guarded,
    job_id: &str,
    error: String,
    attempts: i64,
) -> Result<()> {
    let letter = DeadLetter {
        job: Job::Media {
            job_id: job_id.to_string(),
        },
        error,
        attempts,
    };
    let staged = Staged::dead_letter(&letter, clock::now_ms())?;
    // Not applied: the dead-letter consumer or another delivery ended it meanwhile.
    if ending
        .run_then(db, vec![], vec![staged.insert_if_applied(db)?])
        .await?
    {
        outbox::send_now(env, cfg, db, &[staged]).await;
    }
    Ok(())
}

/// The sweep: a job still `processing` past its lease has no live holder (its delivery died
/// and no redelivery came). With attempts left it is freed and queued again (through the
/// outbox); with none it fails with the reason and a dead letter. Returns (requeued, failed).
pub async fn sweep_expired(env: &Env, cfg: &Config, now_ms: i64) -> Result<(usize, usize)> {
    #[derive(Deserialize)]
    struct Expired {
        id: String,
        attempts: i64,
    }
    let db = Db::from_env(env)?;
    let now = clock::rfc3339(now_ms);
    let rows: Vec<Expired> = db
        .all(
            "SELECT id, attempts FROM jobs WHERE status = ?1 AND lease_until <= ?2 LIMIT 100",
            &args![JobStatus::Processing.as_str(), now_ms],
        )
        .await?;
    let (mut requeued, mut failed) = (0, 0);
    for r in rows {
        if r.attempts >= MAX_ATTEMPTS {
            let reason = job_state::abandoned_reason(r.attempts);
            let abandon = job_state::abandon(&db, &r.id, &Holder::nobody(), &reason, &now, now_ms)?;
            end_with_dead_letter(env, cfg, &db, abandon, &r.id, reason, r.attempts).await?;
            failed += 1;
        } else {
            let job = Job::Media {
                job_id: r.id.clone(),
            };
            let staged = Staged::job(&job, 0, now_ms)?;
            if job_state::release(&db, &r.id, &now, now_ms)?
                .run_then(&db, vec![], vec![staged.insert_if_applied(&db)?])
                .await?
            {
                outbox::send_now(env, cfg, &db, &[staged]).await;
                requeued += 1;
            }
        }
    }
    Ok((requeued, failed))
}

/// Used by the DLQ consumer: a job the runtime gave up on is failed, not left running.
pub async fn mark_failed(env: &Env, job_id: &str, error: &str) -> Result<()> {
    let db = Db::from_env(env)?;
    let now = clock::rfc3339(clock::now_ms());
    job_state::dead_letter(&db, job_id, error, &now)?
        .run(&db)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixture_price_list_pdf_yields_its_text_and_candidates() {
        let pdf = include_bytes!("../../tests/fixtures/price-list.pdf");
        let Ok((text, pages)) = read_text("application/pdf", pdf.to_vec()) else {
            panic!("the fixture PDF is readable");
        };
        assert_eq!(pages, 1);
        assert!(text.contains("Ceramic mug blue"), "{text}");
        let found = candidates::detect(&text, "EUR");
        let got: Vec<(&str, i64)> = found.iter().map(|c| (c.name.as_str(), c.price)).collect();
        assert_eq!(
            got,
            vec![
                ("Ceramic mug blue", 1250),
                ("Stoneware teapot 1.2 l", 3490),
                ("Cork coasters (set of 4)", 800)
            ],
            "{text}"
        );
        assert_eq!(found[2].sku.as_deref(), Some("CRK-004"));
    }

    /// The poison fixture really panics the extractor (in wasm that aborts the instance, so
    /// the consumer must not re-run it forever: see `run`).
    #[test]
    #[should_panic]
    fn the_poison_pdf_panics_pdf_extract() {
        let pdf = include_bytes!("../../tests/fixtures/poison.pdf");
        let _ = pdf_extract::extract_text_from_mem_by_pages(pdf);
    }

    /// `make dev` seeds the shop tenant with a finished job on this same PDF; its stored result
    /// must be exactly what the extractor produces.
    #[test]
    fn the_seeded_demo_job_is_what_extract_text_produces() {
        let pdf = include_bytes!("../../tests/fixtures/price-list.pdf");
        let Ok((text, pages)) = read_text("application/pdf", pdf.to_vec()) else {
            panic!("the fixture PDF is readable");
        };
        let result = JobResult {
            product_candidates: candidates::detect(&text, "EUR"),
            text,
            pages,
            confidence: Some(1.0),
        };
        let actual = serde_json::to_value(&result).unwrap();
        if std::env::var_os("WRITE_DEMO_JOB").is_some() {
            std::fs::write(
                concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/scripts/demo/price-list-job.json"
                ),
                serde_json::to_string_pretty(&actual).unwrap() + "\n",
            )
            .unwrap();
        }
        let seeded: Value =
            serde_json::from_str(include_str!("../../scripts/demo/price-list-job.json"))
                .expect("scripts/demo/price-list-job.json is JSON (WRITE_DEMO_JOB=1 rewrites it)");
        assert_eq!(
            seeded, actual,
            "rewrite it with WRITE_DEMO_JOB=1 cargo test --lib seeded"
        );
    }
}

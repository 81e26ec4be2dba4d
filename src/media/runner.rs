//! The jobs Worker's half of document jobs: claim a job under a lease, read its file from R2,
//! extract the text (a PDF's text layer via pdf-extract, text/CSV as is) or send the image to
//! `OCR_API_URL`, find product candidates, and record the result; transient failures retry
//! with backoff, then the job fails with the reason and is dead-lettered.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use worker::{Env, Headers, Method, Request, RequestInit};

use super::candidates;
use super::job_state::{self, Event, JobKind, JobStatus};
use super::jobs::JobResult;
use crate::args;
use crate::platform::clock;
use crate::platform::config::Config;
use crate::platform::db::Db;
use crate::platform::egress::{backoff_secs, fetch_text};
use crate::platform::error::Result;
use crate::platform::queue::{self, DeadLetter, Job, Outcome};

const MAX_ATTEMPTS: i64 = 3;

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

/// The queue consumer's work for one job.
pub async fn run(env: &Env, cfg: &Config, job_id: &str) -> Result<Outcome> {
    #[derive(Deserialize)]
    struct Row {
        kind: JobKind,
        status: JobStatus,
        attempts: i64,
        content_type: String,
        r2_key: String,
    }
    let db = Db::from_env(env)?;
    let Some(job) = db
        .one::<Row>(
            "SELECT jobs.kind, jobs.status, jobs.attempts, media.content_type, media.r2_key \
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
    let claimed = job_state::claim(&db, job_id, &now, now_ms, now_ms + 180_000)?
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
            job_state::succeed(&db, job_id, attempt, &result, &done)?
                .run(&db)
                .await?;
            Ok(Outcome::Ack)
        }
        Err(Failure::Transient(error)) if attempt < MAX_ATTEMPTS => {
            job_state::retry(&db, job_id, attempt, &error, &done)?
                .run(&db)
                .await?;
            Ok(Outcome::Retry(backoff_secs(attempt)))
        }
        Err(Failure::Transient(error) | Failure::Permanent(error)) => {
            let failed = job_state::fail(&db, job_id, attempt, &error, &done)?
                .run(&db)
                .await?;
            if !failed {
                // The dead-letter consumer or another delivery ended it meanwhile.
                return Ok(Outcome::Ack);
            }
            queue::dead_letter(
                env,
                &DeadLetter {
                    job: Job::Media {
                        job_id: job_id.to_string(),
                    },
                    error,
                    attempts: attempt,
                },
            )
            .await?;
            Ok(Outcome::Ack)
        }
    }
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

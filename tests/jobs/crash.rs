//! A job that crashes the jobs Worker (a PDF that makes pdf-extract panic, which aborts the
//! wasm instance and has the batch redelivered) ends `failed` with a reason and a dead-letter
//! record, and another tenant's job queued with it still completes.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client::*;

const POISON: &[u8] = include_bytes!("../fixtures/poison.pdf");
const CSV: &[u8] = include_bytes!("../fixtures/price-list.csv");

async fn uploaded(s: &Session, filename: &str, content_type: &str, data: &[u8]) -> String {
    post(&format!("/api/v1/media?filename={filename}"))
        .token(&s.access)
        .raw(data, content_type)
        .send()
        .await
        .expect(201)
        .data()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn process(s: &Session, media_id: &str) -> String {
    post(&format!("/api/v1/media/{media_id}/process"))
        .token(&s.access)
        .json(json!({"kind": "extract_text"}))
        .send()
        .await
        .expect(202)
        .data()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn job(s: &Session, id: &str) -> Value {
    get(&format!("/api/v1/jobs/{id}"))
        .token(&s.access)
        .send()
        .await
        .expect(200)
        .data()
        .clone()
}

fn finished(j: &Value) -> bool {
    matches!(j["status"].as_str(), Some("completed" | "failed"))
}

#[tokio::test]
async fn a_pdf_that_crashes_the_worker_fails_and_does_not_hold_another_tenants_job() {
    let (shop, other) = (register().await, register().await);
    let poison_media = uploaded(&shop, "poison.pdf", "application/pdf", POISON).await;
    let csv_media = uploaded(&other, "prices.csv", "text/csv", CSV).await;
    // Back to back, so both land in one batch of the consumer.
    let (poison, innocent) =
        tokio::join!(process(&shop, &poison_media), process(&other, &csv_media));

    let started = Instant::now();
    let deadline = started + Duration::from_secs(180);
    let (mut p, mut i) = (Value::Null, Value::Null);
    while !(finished(&p) && finished(&i)) {
        assert!(
            Instant::now() < deadline,
            "after 180 s: poison job {p}, other tenant's job {i}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        p = job(&shop, &poison).await;
        i = job(&other, &innocent).await;
    }
    assert_eq!(i["status"], "completed", "{i}");
    assert!(
        i["result"]["text"].as_str().unwrap().contains("Oak board"),
        "{i}"
    );
    assert_eq!(p["status"], "failed", "{p}");
    let error = p["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("crash"),
        "the reason says what happened: {p}"
    );

    let d = dead_letter(&shop.tenant_id, 30, &poison, |d| {
        d["message"].as_str().unwrap_or_default().contains(&poison)
    })
    .await;
    assert_eq!(d["kind"], "media_job", "{d}");
    assert!(d["error"].as_str().unwrap().contains("crash"), "{d}");
}

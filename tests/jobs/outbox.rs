//! Commit, then send: the next step and the end callbacks are outbox rows written with the
//! commit, so a send that did not happen (here: skipped on purpose) is made by the sweep.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client::*;
use crate::harness::server;

async fn mock_calls(key: &str) -> Vec<Value> {
    let url = format!("{}/_calls/{key}", server().mock);
    let body: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    body["calls"].as_array().cloned().unwrap_or_default()
}

async fn execution(s: &Session, id: &str) -> Value {
    get(&format!("/api/v1/executions/{id}"))
        .token(&s.access)
        .send()
        .await
        .expect(200)
        .data()
        .clone()
}

/// The cron trigger, as `wrangler dev --test-scheduled` exposes it on the API Worker's port.
async fn cron() {
    get("/__scheduled?cron=*/5+*+*+*+*")
        .send()
        .await
        .expect(200);
}

async fn callback_to(owner: &Session, key: &str) {
    patch("/api/v1/settings")
        .token(&owner.access)
        .json(json!({"callback_url": format!("{}/hook/{key}", server().mock)}))
        .send()
        .await
        .expect(200);
}

async fn deployed(owner: &Session, steps: Value) -> String {
    post("/api/v1/workflows")
        .token(&owner.access)
        .json(
            json!({"name": format!("wf {}", unique()), "status": "deployed",
                     "config": {"steps": steps}}),
        )
        .send()
        .await
        .expect(201)
        .data()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Runs the cron every 2 s until `done` holds for the execution and the callback receiver
/// got `key`'s event, or fails after `secs`.
async fn sweep_until(owner: &Session, id: &str, key: &str, secs: u64, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        cron().await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let e = execution(owner, id).await;
        let calls = mock_calls(key).await;
        if e["status"] == status && !calls.is_empty() {
            return calls[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "after {secs}s of sweeps: execution {e}, {} callback(s)",
            calls.len()
        );
    }
}

#[tokio::test]
async fn a_committed_step_whose_next_message_was_not_sent_still_completes_with_its_callback() {
    let owner = register().await;
    let key = unique();
    callback_to(&owner, &key).await;
    let wf = deployed(
        &owner,
        json!([{"name": "a", "kind": "transform", "template": {"v": "{{input.v}}"}},
               {"name": "b", "kind": "transform", "template": "{{steps.a.output.v}}"}]),
    )
    .await;
    let id = post(&format!("/api/v1/workflows/{wf}/execute"))
        .token(&owner.access)
        .json(json!({"input_data": {"v": 41}}))
        .send()
        .await
        .expect(202)
        .data()["execution_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Step `a` runs from the execute request's message and commits; its direct send of step
    // `b` is skipped, so the execution waits there.
    let deadline = Instant::now() + Duration::from_secs(20);
    while execution(&owner, &id).await["steps_completed"] != 1 {
        assert!(Instant::now() < deadline, "step a did not commit");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let e = execution(&owner, &id).await;
    assert_eq!(
        (e["status"].as_str(), e["steps_completed"].as_i64()),
        (Some("processing"), Some(1)),
        "{e}"
    );
    // The sweep sends what the commit left in the outbox: step `b`, then the callback.
    let call = sweep_until(&owner, &id, &key, 90, "completed").await;
    let e = execution(&owner, &id).await;
    assert_eq!(e["output_data"], json!(41), "{e}");
    let event: Value = serde_json::from_str(call["body"].as_str().unwrap()).unwrap();
    assert_eq!(event["type"], "execution.completed");
    assert_eq!(event["data"]["id"], id.as_str());
}

#[tokio::test]
async fn a_cancel_whose_callback_was_not_sent_still_reaches_the_receiver() {
    let owner = register().await;
    let key = unique();
    callback_to(&owner, &key).await;
    let wf = deployed(
        &owner,
        json!([{"name": "wait", "kind": "delay", "seconds": 600},
               {"name": "out", "kind": "transform", "template": {}}]),
    )
    .await;
    let id = post(&format!("/api/v1/workflows/{wf}/execute"))
        .token(&owner.access)
        .json(json!({"input_data": {}}))
        .send()
        .await
        .expect(202)
        .data()["execution_id"]
        .as_str()
        .unwrap()
        .to_string();
    post(&format!("/api/v1/executions/{id}/cancel"))
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        mock_calls(&key).await.is_empty(),
        "the direct send was skipped"
    );
    let call = sweep_until(&owner, &id, &key, 90, "cancelled").await;
    let event: Value = serde_json::from_str(call["body"].as_str().unwrap()).unwrap();
    assert_eq!(event["type"], "execution.cancelled");
    assert_eq!(event["data"]["id"], id.as_str());
}

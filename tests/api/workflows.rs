//! Workflows run for real: each step is a queue message handled by the worker's consumer,
//! `http` steps call the mock upstream, failures retry with backoff and end on the DLQ.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::client::*;
use crate::harness::server;

/// The recorded calls the mock upstream received under `key`.
pub async fn mock_calls(key: &str) -> Vec<Value> {
    let url = format!("{}/_calls/{key}", server().mock);
    let body: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    body["calls"].as_array().cloned().unwrap_or_default()
}

/// The event a recorded callback carried, after checking its `X-Tenantry-Signature`
/// (`t=…,v1=HMAC-SHA256(secret, "t.body")`) against the tenant's callback secret.
pub fn verified_event(secret: &str, call: &Value) -> Value {
    use hmac::Mac;
    let body = call["body"].as_str().unwrap();
    let sig = call["headers"]["x-tenantry-signature"].as_str().unwrap();
    let (t, v1) = sig
        .strip_prefix("t=")
        .and_then(|rest| rest.split_once(",v1="))
        .expect("t=…,v1=…");
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    assert_eq!(v1, hex::encode(mac.finalize().into_bytes()));
    serde_json::from_str(body).unwrap()
}

pub fn mock_url(path: &str) -> String {
    format!("{}{path}", server().mock)
}

/// Creates a deployed workflow in the session's tenant and returns its id.
pub async fn deployed(owner: &Session, steps: Value) -> String {
    let r = post("/api/v1/workflows")
        .token(&owner.access)
        .json(
            json!({"name": format!("wf {}", unique()), "status": "deployed",
                     "revenue_per_execution": 10, "cost_per_execution": 2.5,
                     "config": {"steps": steps}}),
        )
        .send()
        .await
        .expect(201);
    r.data()["id"].as_str().unwrap().to_string()
}

pub async fn execute(s: &Session, workflow_id: &str, input: Value) -> String {
    let r = post(&format!("/api/v1/workflows/{workflow_id}/execute"))
        .token(&s.access)
        .json(json!({ "input_data": input }))
        .send()
        .await
        .expect(202);
    let id = r.data()["execution_id"].as_str().unwrap().to_string();
    assert_eq!(
        r.header("location"),
        Some(format!("/api/v1/executions/{id}").as_str())
    );
    id
}

/// Polls the execution until `done` holds (or fails the test after `secs`).
pub async fn wait_for(
    s: &Session,
    execution_id: &str,
    secs: u64,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let r = get(&format!("/api/v1/executions/{execution_id}"))
            .token(&s.access)
            .send()
            .await
            .expect(200);
        if done(r.data()) {
            return r.data().clone();
        }
        assert!(
            Instant::now() < deadline,
            "execution did not reach the expected state in {secs}s: {}",
            r.text
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn ended(e: &Value) -> bool {
    matches!(
        e["status"].as_str(),
        Some("completed" | "failed" | "cancelled")
    )
}

#[tokio::test]
async fn a_multi_step_workflow_completes_with_output_progress_and_secrets() {
    let owner = register().await;
    let key = unique();
    put_secret(&owner, "UPSTREAM_TOKEN", "tok-123").await;
    let wf = deployed(
        &owner,
        json!([
            {"name": "gen", "kind": "http", "method": "POST", "url": mock_url(&format!("/echo/{key}")),
             "headers": {"Authorization": "Bearer {{secrets.UPSTREAM_TOKEN}}"},
             "body": {"prompt": "{{input.prompt}}", "n": "{{input.count}}"}},
            {"name": "wait", "kind": "delay", "seconds": 1},
            {"name": "out", "kind": "transform",
             "template": {"echoed": "{{steps.gen.output.received}}", "by": "{{input.user}}", "note": "n={{input.count}}"}}
        ]),
    )
    .await;
    let id = execute(
        &owner,
        &wf,
        json!({"prompt": "a cat", "count": 2, "user": "ann"}),
    )
    .await;
    let e = wait_for(&owner, &id, 30, ended).await;
    assert_eq!(e["status"], "completed", "{e}");
    assert_eq!(e["progress"], 100);
    assert_eq!(e["steps_completed"], 3);
    assert_eq!(
        e["output_data"],
        json!({"echoed": {"prompt": "a cat", "n": 2}, "by": "ann", "note": "n=2"})
    );
    assert!(e["duration_seconds"].as_f64().unwrap() >= 1.0, "{e}");
    assert!(e["completed_at"].is_string() && e["started_at"].is_string());
    let steps = e["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 3);
    assert!(steps.iter().all(|s| s["status"] == "succeeded"));

    let calls = mock_calls(&key).await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["headers"]["authorization"], "Bearer tok-123");

    // The secret's value never appears in what the API returns.
    let w = get(&format!("/api/v1/workflows/{wf}"))
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert!(!w.text.contains("tok-123"));
    assert_eq!(w.data()["stats"]["completed"], 1);
    assert_eq!(w.data()["stats"]["success_rate"], 100.0);
    assert_eq!(w.data()["stats"]["revenue"], 10.0);
    let stats = get(&format!("/api/v1/workflows/{wf}/stats"))
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(stats.data()["executions"], 1);
    assert_eq!(stats.data()["cost"], 2.5);
}

#[tokio::test]
async fn progress_is_visible_while_a_delay_step_waits() {
    let owner = register().await;
    let wf = deployed(
        &owner,
        json!([
            {"name": "a", "kind": "transform", "template": {"x": 1}},
            {"name": "b", "kind": "delay", "seconds": 3},
            {"name": "c", "kind": "transform", "template": "{{steps.a.output.x}}"},
            {"name": "d", "kind": "transform", "template": {"done": true}}
        ]),
    )
    .await;
    let id = execute(&owner, &wf, json!({})).await;
    let mid = wait_for(&owner, &id, 20, |e| e["steps_completed"] == 2).await;
    assert_eq!(mid["status"], "processing");
    assert_eq!(mid["progress"], 50);
    let done = wait_for(&owner, &id, 20, ended).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output_data"], json!({"done": true}));
}

#[tokio::test]
async fn a_step_that_fails_twice_is_retried_and_completes_with_attempts_recorded() {
    let owner = register().await;
    let key = unique();
    let wf = deployed(
        &owner,
        json!([{"name": "call", "kind": "http", "method": "POST",
                "url": mock_url(&format!("/flaky/{key}/2")), "body": {"x": 1}}]),
    )
    .await;
    let id = execute(&owner, &wf, json!({})).await;
    let e = wait_for(&owner, &id, 40, ended).await;
    assert_eq!(e["status"], "completed", "{e}");
    assert_eq!(e["attempts"], 3);
    assert_eq!(e["output_data"], json!({"ok": true, "call": 3}));
    let runs: Vec<(i64, String)> = e["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["attempt"].as_i64().unwrap(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        runs,
        vec![
            (1, "failed".to_string()),
            (2, "failed".to_string()),
            (3, "succeeded".to_string())
        ]
    );
    assert!(e["steps"][0]["error"].as_str().unwrap().contains("500"));
    assert_eq!(mock_calls(&key).await.len(), 3);
}

#[tokio::test]
async fn a_step_that_always_fails_fails_the_execution_and_reaches_the_dead_letter_record() {
    let owner = register().await;
    let key = unique();
    let wf = deployed(
        &owner,
        json!([{"name": "call", "kind": "http", "url": mock_url(&format!("/fail/{key}"))},
               {"name": "never", "kind": "transform", "template": {}}]),
    )
    .await;
    let id = execute(&owner, &wf, json!({})).await;
    let e = wait_for(&owner, &id, 40, ended).await;
    assert_eq!(e["status"], "failed", "{e}");
    assert_eq!(e["attempts"], 3);
    let error = e["error_message"].as_str().unwrap();
    assert!(error.contains("call") && error.contains("500"), "{error}");
    assert_eq!(mock_calls(&key).await.len(), 3);

    let admin = admin().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = get(&format!(
            "/api/v1/admin/errors?source=dead_letter&tenant_id={}",
            owner.tenant_id
        ))
        .token(&admin.access)
        .send()
        .await
        .expect(200);
        let hit = r
            .data()
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["execution_id"] == id.as_str())
            .cloned();
        if let Some(d) = hit {
            assert_eq!(d["kind"], "step");
            assert_eq!(d["attempts"], 3);
            assert!(d["message"].as_str().unwrap().contains(&id));
            break;
        }
        assert!(Instant::now() < deadline, "no dead letter for {id}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let failed = get(&format!(
        "/api/v1/admin/errors?source=execution&tenant_id={}",
        owner.tenant_id
    ))
    .token(&admin.access)
    .send()
    .await
    .expect(200);
    assert!(failed
        .data()
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["id"] == id.as_str()));
}

#[tokio::test]
async fn a_redelivered_step_message_does_not_run_the_step_twice() {
    let owner = register().await;
    let key = unique();
    let wf = deployed(
        &owner,
        json!([
            {"name": "wait", "kind": "delay", "seconds": 3},
            {"name": "call", "kind": "http", "method": "POST", "url": mock_url(&format!("/echo/{key}")), "body": {}},
            {"name": "out", "kind": "transform", "template": "{{steps.call.output.call}}"}
        ]),
    )
    .await;
    let id = execute(&owner, &wf, json!({})).await;
    // The delay step is done and the `call` step's message is waiting out the delay: send the
    // same step twice more, as an at-least-once queue may.
    wait_for(&owner, &id, 20, |e| e["steps_completed"] == 1).await;
    let admin = admin().await;
    for _ in 0..2 {
        post(&format!("/api/v1/admin/executions/{id}/requeue"))
            .token(&admin.access)
            .send()
            .await
            .expect(202);
    }
    let e = wait_for(&owner, &id, 30, ended).await;
    assert_eq!(e["status"], "completed", "{e}");
    // Give the delayed original time to arrive and be skipped.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(mock_calls(&key).await.len(), 1);
    assert_eq!(e["output_data"], json!(1));
    post(&format!("/api/v1/admin/executions/{id}/requeue"))
        .token(&admin.access)
        .send()
        .await
        .problem(409, "conflict");
}

#[tokio::test]
async fn cancelling_stops_further_steps() {
    let owner = register().await;
    let member = add_user(&owner, "member").await;
    let key = unique();
    let wf = deployed(
        &owner,
        json!([
            {"name": "wait", "kind": "delay", "seconds": 3},
            {"name": "call", "kind": "http", "url": mock_url(&format!("/echo/{key}"))}
        ]),
    )
    .await;
    let id = execute(&member, &wf, json!({})).await;
    let r = post(&format!("/api/v1/executions/{id}/cancel"))
        .token(&member.access)
        .send()
        .await
        .expect(200);
    assert_eq!(r.data()["status"], "cancelled");
    post(&format!("/api/v1/executions/{id}/cancel"))
        .token(&member.access)
        .send()
        .await
        .problem(409, "conflict");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let e = wait_for(&owner, &id, 5, |_| true).await;
    assert_eq!(e["status"], "cancelled");
    assert_eq!(mock_calls(&key).await.len(), 0);
}

#[tokio::test]
async fn the_cron_sweep_fails_an_execution_stuck_past_its_timeout() {
    let owner = register().await;
    let r = post("/api/v1/workflows")
        .token(&owner.access)
        .json(
            json!({"name": "slow", "status": "deployed", "config": {"timeout_seconds": 5, "steps": [
                {"name": "wait", "kind": "delay", "seconds": 600},
                {"name": "out", "kind": "transform", "template": {}}
            ]}}),
        )
        .send()
        .await
        .expect(201);
    let wf = r.data()["id"].as_str().unwrap().to_string();
    let id = execute(&owner, &wf, json!({})).await;
    wait_for(&owner, &id, 20, |e| e["steps_completed"] == 1).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    get("/__scheduled?cron=*/5+*+*+*+*")
        .send()
        .await
        .expect(200);
    let e = wait_for(&owner, &id, 10, ended).await;
    assert_eq!(e["status"], "failed");
    assert!(e["error_message"].as_str().unwrap().contains("timed out"));
}

#[tokio::test]
async fn the_callback_receiver_gets_a_correctly_signed_event() {
    let owner = register().await;
    let key = unique();
    patch("/api/v1/settings")
        .token(&owner.access)
        .json(json!({"callback_url": mock_url(&format!("/hook/{key}"))}))
        .send()
        .await
        .expect(200);
    let secret = post("/api/v1/settings/callback-secret")
        .token(&owner.access)
        .send()
        .await
        .expect(200)
        .data()["callback_secret"]
        .as_str()
        .unwrap()
        .to_string();
    let settings = get("/api/v1/settings")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(settings.data()["callback_secret_set"], true);
    assert!(!settings.text.contains(&secret));

    let wf = deployed(
        &owner,
        json!([{"name": "out", "kind": "transform", "template": {"v": "{{input.v}}"}}]),
    )
    .await;
    let id = execute(&owner, &wf, json!({"v": 7})).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let call = loop {
        if let Some(c) = mock_calls(&key).await.first() {
            break c.clone();
        }
        assert!(Instant::now() < deadline, "no callback arrived");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let event = verified_event(&secret, &call);
    assert_eq!(event["type"], "execution.completed");
    assert!(event["id"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(event["data"]["id"], id.as_str());
    assert_eq!(event["data"]["output_data"], json!({"v": 7}));
}

#[tokio::test]
async fn another_tenants_workflow_and_execution_are_not_found() {
    let owner = register().await;
    let other = register().await;
    let wf = deployed(
        &owner,
        json!([{"name": "out", "kind": "transform", "template": {}}]),
    )
    .await;
    let id = execute(&owner, &wf, json!({})).await;
    for path in [
        format!("/api/v1/workflows/{wf}"),
        format!("/api/v1/workflows/{wf}/stats"),
        format!("/api/v1/workflows/{wf}/executions"),
        format!("/api/v1/executions/{id}"),
    ] {
        get(&path)
            .token(&other.access)
            .send()
            .await
            .problem(404, "not_found");
    }
    post(&format!("/api/v1/workflows/{wf}/execute"))
        .token(&other.access)
        .json(json!({"input_data": {}}))
        .send()
        .await
        .problem(404, "not_found");
    post(&format!("/api/v1/executions/{id}/cancel"))
        .token(&other.access)
        .send()
        .await
        .problem(404, "not_found");
    patch(&format!("/api/v1/workflows/{wf}"))
        .token(&other.access)
        .json(json!({"status": "archived"}))
        .send()
        .await
        .problem(404, "not_found");
    let listed = get("/api/v1/executions?limit=100")
        .token(&other.access)
        .send()
        .await
        .expect(200);
    assert_eq!(listed.data().as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn bad_configs_get_field_errors() {
    let owner = register().await;
    let create = |config: Value| {
        post("/api/v1/workflows")
            .token(&owner.access)
            .json(json!({"name": "x", "config": config}))
    };
    let fields = |r: &Resp| -> Vec<String> {
        r.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap().to_string())
            .collect()
    };
    let r = create(json!({"steps": [{"name": "a", "kind": "shell"}]}))
        .send()
        .await
        .problem(422, "validation_failed");
    assert_eq!(fields(&r), vec!["config.steps[0].kind"]);
    let r = create(json!({"steps": [{"name": "a", "kind": "http"}]}))
        .send()
        .await
        .problem(422, "validation_failed");
    assert_eq!(fields(&r), vec!["config.steps[0].url"]);
    let r = create(json!({"steps": [
        {"name": "a", "kind": "transform", "template": "{{steps.b.output}}"},
        {"name": "a", "kind": "delay", "seconds": 1},
        {"name": "c", "kind": "http", "url": "https://x.example/{{nope}}"}
    ]}))
    .send()
    .await
    .problem(422, "validation_failed");
    assert_eq!(
        fields(&r),
        vec![
            "config.steps[0].template",
            "config.steps[1].name",
            "config.steps[2].url"
        ]
    );
    let r = create(json!({"steps": []}))
        .send()
        .await
        .problem(422, "validation_failed");
    assert_eq!(fields(&r), vec!["config.steps"]);
}

#[tokio::test]
async fn only_deployed_workflows_run_and_input_must_be_an_object() {
    let owner = register().await;
    let r = post("/api/v1/workflows")
        .token(&owner.access)
        .json(json!({"name": "draft one", "config": {"steps": [{"name": "a", "kind": "transform", "template": {}}]}}))
        .send()
        .await
        .expect(201);
    assert_eq!(r.data()["status"], "draft");
    assert!(r.data()["deployed_at"].is_null());
    let wf = r.data()["id"].as_str().unwrap().to_string();
    let run = || {
        post(&format!("/api/v1/workflows/{wf}/execute"))
            .token(&owner.access)
            .json(json!({"input_data": {}}))
    };
    run().send().await.problem(409, "conflict");
    let deployed = patch(&format!("/api/v1/workflows/{wf}"))
        .token(&owner.access)
        .json(json!({"status": "deployed"}))
        .send()
        .await
        .expect(200);
    assert!(deployed.data()["deployed_at"].is_string());
    post(&format!("/api/v1/workflows/{wf}/execute"))
        .token(&owner.access)
        .json(json!({"input_data": [1, 2]}))
        .send()
        .await
        .problem(422, "validation_failed");
    run().send().await.expect(202);
    delete(&format!("/api/v1/workflows/{wf}"))
        .token(&owner.access)
        .send()
        .await
        .expect(204);
    let archived = get(&format!("/api/v1/workflows/{wf}"))
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(archived.data()["status"], "archived");
    run().send().await.problem(409, "conflict");
    let listed = get("/api/v1/workflows")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert!(listed.data().as_array().unwrap().is_empty());
}

#[tokio::test]
async fn executing_twice_with_one_idempotency_key_starts_one_execution() {
    let owner = register().await;
    let wf = deployed(
        &owner,
        json!([{"name": "a", "kind": "transform", "template": {}}]),
    )
    .await;
    let key = unique();
    let first = post(&format!("/api/v1/workflows/{wf}/execute"))
        .token(&owner.access)
        .header("Idempotency-Key", &key)
        .json(json!({"input_data": {"a": 1}}))
        .send()
        .await
        .expect(202);
    let again = post(&format!("/api/v1/workflows/{wf}/execute"))
        .token(&owner.access)
        .header("Idempotency-Key", &key)
        .json(json!({"input_data": {"a": 1}}))
        .send()
        .await
        .expect(202);
    assert_eq!(first.data()["execution_id"], again.data()["execution_id"]);
    let listed = get(&format!("/api/v1/workflows/{wf}/executions"))
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(listed.data().as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn members_run_workflows_but_only_admins_define_them() {
    let owner = register().await;
    let member = add_user(&owner, "member").await;
    post("/api/v1/workflows")
        .token(&member.access)
        .json(json!({"name": "x", "config": {"steps": [{"name": "a", "kind": "transform", "template": {}}]}}))
        .send()
        .await
        .problem(403, "forbidden");
    // Tenant admins define workflows only in their own organisation.
    let other = register().await;
    post("/api/v1/workflows")
        .token(&owner.access)
        .json(json!({"tenant_id": other.tenant_id, "name": "x",
                     "config": {"steps": [{"name": "a", "kind": "transform", "template": {}}]}}))
        .send()
        .await
        .problem(403, "forbidden");
    // The platform admin defines one for the client, whose member runs it.
    let admin = admin().await;
    let r = post("/api/v1/workflows")
        .token(&admin.access)
        .json(json!({"tenant_id": owner.tenant_id, "name": "Agency built", "status": "deployed",
                     "revenue_per_execution": 99.5,
                     "config": {"steps": [{"name": "a", "kind": "transform", "template": {"ok": true}}]}}))
        .send()
        .await
        .expect(201);
    assert_eq!(r.data()["tenant_id"], owner.tenant_id.as_str());
    let wf = r.data()["id"].as_str().unwrap().to_string();
    let id = execute(&member, &wf, json!({})).await;
    let e = wait_for(&member, &id, 20, ended).await;
    assert_eq!(e["status"], "completed");
    let mine = get(&format!(
        "/api/v1/executions?workflow_id={wf}&status=completed"
    ))
    .token(&member.access)
    .send()
    .await
    .expect(200);
    assert_eq!(mine.data().as_array().unwrap().len(), 1);
    let all = get(&format!("/api/v1/workflows?tenant_id={}", owner.tenant_id))
        .token(&admin.access)
        .send()
        .await
        .expect(200);
    assert_eq!(all.data().as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_demo_client_user_runs_batch_image_generator_and_the_admin_sees_it() {
    let s = server();
    let member = session_from(
        login("member@northwind.demo", &s.demo_password)
            .await
            .expect(200)
            .data(),
        "member@northwind.demo",
        &s.demo_password,
    );
    let list = get("/api/v1/workflows?limit=100")
        .token(&member.access)
        .send()
        .await
        .expect(200);
    let names: Vec<&str> = list
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    for name in [
        "Batch Image Generator",
        "Style Transfer Pipeline",
        "Product Photo Enhancer",
        "Social Media Content Generator",
        "Logo Variation Creator",
        "Moodboard Generator",
        "Image Upscaler Pro",
        "Portrait Background Replacer",
        "Batch Watermark Applier",
        "AI Avatar Generator",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let batch = list
        .data()
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "Batch Image Generator")
        .unwrap();
    assert_eq!(batch["revenue_per_execution"], 250.0);
    let wf = batch["id"].as_str().unwrap();
    let admin = admin().await;
    let before = get("/api/v1/admin/dashboard")
        .token(&admin.access)
        .send()
        .await
        .expect(200);

    let id = execute(&member, wf, json!({"prompt": "a lighthouse", "count": 3})).await;
    let first = get(&format!("/api/v1/executions/{id}"))
        .token(&member.access)
        .send()
        .await
        .expect(200);
    assert!(matches!(
        first.data()["status"].as_str(),
        Some("pending" | "processing")
    ));
    let mid = wait_for(&member, &id, 20, |e| e["status"] == "processing").await;
    assert!(mid["progress"].as_i64().unwrap() < 100);
    let done = wait_for(&member, &id, 30, ended).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["progress"], 100);
    assert_eq!(done["output_data"]["images"].as_array().unwrap().len(), 3);

    let after = get("/api/v1/admin/dashboard")
        .token(&admin.access)
        .send()
        .await
        .expect(200);
    let completed = |d: &Value| d["executions_24h"]["completed"].as_i64().unwrap();
    assert!(completed(after.data()) > completed(before.data()));
    assert!(after.data()["mrr"].as_f64().unwrap() >= 1500.0);
    assert!(after.data()["tenants"]["active"].as_i64().unwrap() >= 3);
    let perf = get(&format!(
        "/api/v1/admin/workflows/stats?tenant_id={}&limit=100",
        member.tenant_id
    ))
    .token(&admin.access)
    .send()
    .await
    .expect(200);
    let row = perf
        .data()
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["workflow_id"] == wf)
        .cloned()
        .unwrap();
    assert!(row["stats"]["completed"].as_i64().unwrap() >= 1);
    get("/api/v1/admin/dashboard")
        .token(&member.access)
        .send()
        .await
        .problem(403, "forbidden");
}

async fn put_secret(owner: &Session, name: &str, value: &str) {
    put(&format!("/api/v1/secrets/{name}"))
        .token(&owner.access)
        .json(json!({ "value": value }))
        .send()
        .await
        .expect(200);
}

#[tokio::test]
async fn secrets_are_write_only_and_admin_only() {
    let owner = register().await;
    put_secret(&owner, "API_KEY", "very-secret-value").await;
    put_secret(&owner, "API_KEY", "replaced-value").await;
    let one = get("/api/v1/secrets/API_KEY")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(one.data()["name"], "API_KEY");
    let list = get("/api/v1/secrets")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(list.data().as_array().unwrap().len(), 1);
    assert!(!list.text.contains("value") && !one.text.contains("replaced-value"));
    put("/api/v1/secrets/bad-name")
        .token(&owner.access)
        .json(json!({"value": "x"}))
        .send()
        .await
        .problem(422, "validation_failed");
    put("/api/v1/secrets/OK")
        .token(&owner.access)
        .json(json!({"value": ""}))
        .send()
        .await
        .problem(422, "validation_failed");
    let member = add_user(&owner, "member").await;
    get("/api/v1/secrets")
        .token(&member.access)
        .send()
        .await
        .problem(403, "forbidden");
    let other = register().await;
    get("/api/v1/secrets/API_KEY")
        .token(&other.access)
        .send()
        .await
        .problem(404, "not_found");
    delete("/api/v1/secrets/API_KEY")
        .token(&owner.access)
        .send()
        .await
        .expect(204);
    delete("/api/v1/secrets/API_KEY")
        .token(&owner.access)
        .send()
        .await
        .problem(404, "not_found");
}

#[tokio::test]
async fn settings_validate_urls_and_origins() {
    let owner = register().await;
    patch("/api/v1/settings")
        .token(&owner.access)
        .json(json!({"callback_url": "ftp://nope"}))
        .send()
        .await
        .problem(422, "validation_failed");
    patch("/api/v1/settings")
        .token(&owner.access)
        .json(json!({"allowed_origins": ["https://ok.example.com", "not an origin"]}))
        .send()
        .await
        .problem(422, "validation_failed");
    let r = patch("/api/v1/settings")
        .token(&owner.access)
        .json(json!({"callback_url": "https://hooks.example.com/x",
                     "allowed_origins": ["https://app.example.com/"], "auto_assign_conversations": true}))
        .send()
        .await
        .expect(200);
    assert_eq!(
        r.data()["allowed_origins"],
        json!(["https://app.example.com"])
    );
    assert_eq!(r.data()["callback_secret_set"], false);
    let cleared = patch("/api/v1/settings")
        .token(&owner.access)
        .json(json!({"callback_url": null}))
        .send()
        .await
        .expect(200);
    assert!(cleared.data()["callback_url"].is_null());
    assert_eq!(cleared.data()["auto_assign_conversations"], true);
}

#[tokio::test]
async fn a_failed_callback_delivery_is_retried_and_an_always_failing_one_is_dead_lettered() {
    let owner = register().await;
    let flaky = unique();
    let set_url = |url: String| {
        patch("/api/v1/settings")
            .token(&owner.access)
            .json(json!({ "callback_url": url }))
    };
    set_url(mock_url(&format!("/flaky/{flaky}/1")))
        .send()
        .await
        .expect(200);
    let wf = deployed(
        &owner,
        json!([{"name": "out", "kind": "transform", "template": {}}]),
    )
    .await;
    execute(&owner, &wf, json!({})).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while mock_calls(&flaky).await.len() < 2 {
        assert!(Instant::now() < deadline, "the callback was not retried");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let calls = mock_calls(&flaky).await;
    assert_eq!(
        calls[0]["body"], calls[1]["body"],
        "the same event is redelivered"
    );

    let failing = unique();
    set_url(mock_url(&format!("/fail/{failing}")))
        .send()
        .await
        .expect(200);
    let id = execute(&owner, &wf, json!({})).await;
    let d = dead_letter(&owner.tenant_id, 30, "the callback", |d| {
        d["execution_id"] == id.as_str()
    })
    .await;
    assert_eq!(d["kind"], "callback");
    assert!(d["error"].as_str().unwrap().contains("500"));
    assert_eq!(mock_calls(&failing).await.len(), 3);
}

//! Where tenant-defined requests may go (issue 14, egress): step and callback URLs pass the
//! egress policy when saved, a step's origin is written out, redirects are not followed,
//! secrets never come back in what members read, and the agency's pricing stays the agency's.

use serde_json::{json, Value};

use crate::client::*;
use crate::harness::server;
use crate::workflows::{deployed, execute, mock_calls, mock_url, wait_for};

fn fields(r: &Resp) -> Vec<String> {
    r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_string())
        .collect()
}

fn mock_port() -> String {
    server().mock.rsplit(':').next().unwrap().to_string()
}

async fn create_step(owner: &Session, url: &str) -> Resp {
    post("/api/v1/workflows")
        .token(&owner.access)
        .json(json!({"name": format!("wf {}", unique()),
                     "config": {"steps": [{"name": "call", "kind": "http", "url": url}]}}))
        .send()
        .await
}

fn ended(e: &Value) -> bool {
    matches!(
        e["status"].as_str(),
        Some("completed" | "failed" | "cancelled")
    )
}

#[tokio::test]
async fn step_and_callback_urls_to_internal_hosts_or_plain_http_are_refused_on_save() {
    let owner = register().await;
    let port = mock_port();
    let refused = [
        "https://127.0.0.1/".to_string(),
        "https://2130706433/".into(),
        "https://0x7f.1/".into(),
        "https://127.1/".into(),
        "https://[::1]/".into(),
        "https://[::ffff:127.0.0.1]/".into(),
        "https://10.0.0.7/".into(),
        "https://192.168.1.1/".into(),
        "https://100.64.0.1/".into(),
        "https://169.254.169.254/latest/meta-data/".into(),
        "https://[fd00:ec2::254]/".into(),
        "https://0.0.0.0/".into(),
        "https://localhost/".into(),
        "https://metadata.localhost/".into(),
        "https://user:pass@api.example.com/".into(),
        "http://api.example.com/v1".into(),
        // The mock is listed in EGRESS_ALLOW as 127.0.0.1:PORT; no other name or port is.
        format!("http://localhost:{port}/echo/x"),
        format!("http://127.0.0.1:{port}0/echo/x"),
        // The deployment itself.
        format!("{}/api/v1/health", server().base),
    ];
    for url in &refused {
        let r = create_step(&owner, url)
            .await
            .problem(422, "validation_failed");
        assert_eq!(fields(&r), vec!["config.steps[0].url"], "{url}: {}", r.text);
        let r = patch("/api/v1/settings")
            .token(&owner.access)
            .json(json!({ "callback_url": url }))
            .send()
            .await
            .problem(422, "validation_failed");
        assert_eq!(fields(&r), vec!["callback_url"], "{url}: {}", r.text);
    }
    // A PATCH is checked like a create.
    let ok = create_step(&owner, "https://api.example.com/v1")
        .await
        .expect(201);
    let id = ok.data()["id"].as_str().unwrap();
    let r = patch(&format!("/api/v1/workflows/{id}"))
        .token(&owner.access)
        .json(json!({"config": {"steps": [{"name": "c", "kind": "http", "url": "https://169.254.169.254/"}]}}))
        .send()
        .await
        .problem(422, "validation_failed");
    assert_eq!(fields(&r), vec!["config.steps[0].url"]);
    // Public https destinations and the listed mock are fine.
    create_step(&owner, "https://8.8.8.8/dns").await.expect(201);
    create_step(&owner, &mock_url("/echo/ok")).await.expect(201);
    patch("/api/v1/settings")
        .token(&owner.access)
        .json(json!({ "callback_url": mock_url("/hook/ok") }))
        .send()
        .await
        .expect(200);
}

#[tokio::test]
async fn a_step_url_origin_cannot_come_from_the_input_or_an_earlier_step() {
    let owner = register().await;
    let port = mock_port();
    for url in [
        "https://{{input.host}}/v1".to_string(),
        "{{input.base}}/v1".into(),
        "{{secrets.BASE}}/v1".into(),
        // Without a `/` after the port, the input would continue the host
        // (`…:PORT@localhost:PORT/…` sends the request, and its secrets, to localhost).
        format!("http://127.0.0.1:{port}{{{{input.path}}}}"),
        "https://api.example.com:{{input.port}}/".into(),
    ] {
        let r = post("/api/v1/workflows")
            .token(&owner.access)
            .json(json!({"name": "origin", "config": {"steps": [
                {"name": "first", "kind": "transform", "template": {"host": "{{input.host}}"}},
                {"name": "call", "kind": "http", "url": url,
                 "headers": {"Authorization": "Bearer {{secrets.KEY}}"}}]}}))
            .send()
            .await
            .problem(422, "validation_failed");
        assert_eq!(fields(&r), vec!["config.steps[1].url"], "{url}: {}", r.text);
    }
    let r = post("/api/v1/workflows")
        .token(&owner.access)
        .json(json!({"name": "origin", "config": {"steps": [
            {"name": "first", "kind": "transform", "template": {"h": "x"}},
            {"name": "call", "kind": "http", "url": "https://{{steps.first.output.h}}/"}]}}))
        .send()
        .await
        .problem(422, "validation_failed");
    assert_eq!(fields(&r), vec!["config.steps[1].url"]);
    // Path and query may be templated.
    create_step(&owner, &mock_url("/echo/{{input.key}}?q={{input.q}}"))
        .await
        .expect(201);
}

#[tokio::test]
async fn a_redirect_is_not_followed_so_the_secret_stays_with_the_named_host() {
    let owner = register().await;
    let (key, elsewhere) = (unique(), unique());
    put_secret(&owner, "KEY", &format!("sk-redirect-{key}")).await;
    // The named host (the listed mock) answers 302 to localhost, which is not listed.
    let to = format!("http://localhost:{}/echo/{elsewhere}", mock_port());
    let wf = deployed(
        &owner,
        json!([{"name": "call", "kind": "http",
                "url": mock_url(&format!("/redirect/{key}?to={to}")),
                "headers": {"Authorization": "Bearer {{secrets.KEY}}"}}]),
    )
    .await;
    let id = execute(&owner, &wf, json!({})).await;
    let e = wait_for(&owner, &id, 40, ended).await;
    assert_eq!(e["status"], "failed", "{e}");
    assert!(
        e["error_message"]
            .as_str()
            .unwrap()
            .contains("answered 302"),
        "{e}"
    );
    assert_eq!(
        mock_calls(&key).await.len(),
        3,
        "each attempt calls the named host"
    );
    assert!(
        mock_calls(&elsewhere).await.is_empty(),
        "the redirect was followed to another host"
    );
}

#[tokio::test]
async fn secret_values_are_redacted_from_outputs_errors_and_callbacks() {
    let owner = register().await;
    let member = add_user(&owner, "member").await;
    let (key, hook, failing) = (unique(), unique(), unique());
    let secret = format!("sk-live-{key}");
    put_secret(&owner, "TOKEN", &secret).await;
    patch("/api/v1/settings")
        .token(&owner.access)
        .json(json!({ "callback_url": mock_url(&format!("/hook/{hook}")) }))
        .send()
        .await
        .expect(200);
    // A tenant admin makes a step echo the owner's secret back.
    let wf = deployed(
        &owner,
        json!([{"name": "leak", "kind": "http", "method": "POST",
                "url": mock_url(&format!("/echo/{key}?t={{{{secrets.TOKEN}}}}")),
                "headers": {"Authorization": "Bearer {{secrets.TOKEN}}"},
                "body": {"token": "{{secrets.TOKEN}}"}}]),
    )
    .await;
    let id = execute(&member, &wf, json!({})).await;
    let e = wait_for(&member, &id, 30, ended).await;
    assert_eq!(e["status"], "completed", "{e}");
    // The secret did go to the host the step names …
    let calls = mock_calls(&key).await;
    assert_eq!(
        calls[0]["headers"]["authorization"],
        format!("Bearer {secret}")
    );
    // … but what members read has it redacted.
    let r = get(&format!("/api/v1/executions/{id}"))
        .token(&member.access)
        .send()
        .await
        .expect(200);
    assert!(!r.text.contains(&secret), "{}", r.text);
    assert_eq!(r.data()["output_data"]["received"]["token"], "[redacted]");
    assert_eq!(
        r.data()["output_data"]["headers"]["authorization"],
        "Bearer [redacted]"
    );
    let listed = get("/api/v1/executions")
        .token(&member.access)
        .send()
        .await
        .expect(200);
    assert!(!listed.text.contains(&secret));
    // The callback body carries the execution: redacted too.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let body = loop {
        if let Some(c) = mock_calls(&hook).await.first() {
            break c["body"].as_str().unwrap().to_string();
        }
        assert!(std::time::Instant::now() < deadline, "no callback arrived");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    assert!(!body.contains(&secret), "{body}");
    assert!(body.contains("[redacted]"), "{body}");

    // An error answer that echoes the secret: the recorded errors are redacted.
    let wf = deployed(
        &owner,
        json!([{"name": "leak", "kind": "http",
                "url": mock_url(&format!("/echo/{failing}?status=400&t={{{{secrets.TOKEN}}}}"))}]),
    )
    .await;
    let id = execute(&member, &wf, json!({})).await;
    let e = wait_for(&member, &id, 40, ended).await;
    assert_eq!(e["status"], "failed", "{e}");
    assert!(!e.to_string().contains(&secret), "{e}");
    assert!(
        e["error_message"].as_str().unwrap().contains("[redacted]"),
        "{e}"
    );
    let errors = get(&format!(
        "/api/v1/admin/errors?tenant_id={}",
        owner.tenant_id
    ))
    .token(&admin().await.access)
    .send()
    .await
    .expect(200);
    assert!(!errors.text.contains(&secret), "{}", errors.text);
}

#[tokio::test]
async fn only_the_platform_admin_reprices_a_workflow_it_made_for_a_client() {
    let owner = register().await;
    let admin = admin().await;
    let r = post("/api/v1/workflows")
        .token(&admin.access)
        .json(json!({"tenant_id": owner.tenant_id, "name": "Agency flow",
                     "revenue_per_execution": 4.5, "cost_per_execution": 1.25,
                     "config": {"steps": [{"name": "w", "kind": "delay", "seconds": 1}]}}))
        .send()
        .await
        .expect(201);
    assert_eq!(r.data()["managed"], true);
    let id = r.data()["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/workflows/{id}");
    for body in [
        json!({"revenue_per_execution": 0}),
        json!({"cost_per_execution": 9}),
        json!({"status": "deployed", "revenue_per_execution": 1}),
    ] {
        patch(&path)
            .token(&owner.access)
            .json(body)
            .send()
            .await
            .problem(403, "forbidden");
    }
    let w = get(&path).token(&owner.access).send().await.expect(200);
    assert_eq!(w.data()["revenue_per_execution"], 4.5);
    assert_eq!(w.data()["status"], "draft");
    // The client's admins still deploy and pause it (sending the unchanged price is fine).
    let w = patch(&path)
        .token(&owner.access)
        .json(json!({"status": "deployed", "revenue_per_execution": 4.5}))
        .send()
        .await
        .expect(200);
    assert_eq!(w.data()["status"], "deployed");
    patch(&path)
        .token(&owner.access)
        .json(json!({"status": "draft", "name": "Renamed"}))
        .send()
        .await
        .expect(200);
    // The platform admin reprices it.
    let w = patch(&path)
        .token(&admin.access)
        .json(json!({"revenue_per_execution": 6}))
        .send()
        .await
        .expect(200);
    assert_eq!(w.data()["revenue_per_execution"], 6.0);
    // A workflow the client made itself is the client's to price.
    let own = deployed(
        &owner,
        json!([{"name": "w", "kind": "delay", "seconds": 1}]),
    )
    .await;
    let w = patch(&format!("/api/v1/workflows/{own}"))
        .token(&owner.access)
        .json(json!({"revenue_per_execution": 3}))
        .send()
        .await
        .expect(200);
    assert_eq!(w.data()["managed"], false);
    assert_eq!(w.data()["revenue_per_execution"], 3.0);
}

/// Runs SQL against the worker's local D1 file directly: how a row saved before the egress
/// policy existed (or under a looser one) is simulated. Alone (`d1_alone`): the runtime's
/// SQLite would refuse a request of another test that touched it at the same moment.
async fn sql_on_local_d1(sql: &str, args: &[&str]) {
    let sql = sql.to_string();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    d1_alone(move || sql_on_local_d1_now(&sql, &args)).await;
}

fn sql_on_local_d1_now(sql: &str, args: &[String]) {
    let script = r#"
import glob, os, sqlite3, sys
files = [f for f in glob.glob(os.path.join(sys.argv[1], "v3", "d1", "**", "*.sqlite"), recursive=True)
         if "metadata" not in os.path.basename(f)]
done = 0
for f in files:
    db = sqlite3.connect(f, timeout=10)
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'workflows'").fetchone():
        done += db.execute(sys.argv[2], sys.argv[3:]).rowcount
        db.commit()
    db.close()
print(done)
"#;
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&server().state)
        .arg(sql)
        .args(args)
        .output()
        .expect("python3");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "1",
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_stored_step_url_the_policy_refuses_is_refused_again_when_sent() {
    let owner = register().await;
    let key = unique();
    let wf = deployed(
        &owner,
        json!([{"name": "call", "kind": "http", "url": mock_url(&format!("/echo/{key}"))}]),
    )
    .await;
    // The same mock under a name EGRESS_ALLOW does not list, as if saved before the policy.
    let config = json!({"steps": [{"name": "call", "kind": "http",
        "url": format!("http://localhost:{}/echo/{key}", mock_port())}]});
    sql_on_local_d1(
        "UPDATE workflows SET config = ? WHERE id = ?",
        &[&config.to_string(), &wf],
    )
    .await;
    let id = execute(&owner, &wf, json!({})).await;
    let e = wait_for(&owner, &id, 40, ended).await;
    assert_eq!(e["status"], "failed", "{e}");
    let error = e["error_message"].as_str().unwrap();
    assert!(error.contains("localhost"), "{e}");
    assert!(
        mock_calls(&key).await.is_empty(),
        "the refused URL was called"
    );
}

#[tokio::test]
async fn a_stored_callback_url_the_policy_refuses_is_refused_again_when_sent() {
    let owner = register().await;
    let key = unique();
    patch("/api/v1/settings")
        .token(&owner.access)
        .json(json!({ "callback_url": mock_url(&format!("/hook/{key}")) }))
        .send()
        .await
        .expect(200);
    sql_on_local_d1(
        "UPDATE tenant_settings SET callback_url = ? WHERE tenant_id = ?",
        &[
            &format!("http://localhost:{}/hook/{key}", mock_port()),
            &owner.tenant_id,
        ],
    )
    .await;
    let wf = deployed(
        &owner,
        json!([{"name": "t", "kind": "transform", "template": {}}]),
    )
    .await;
    let id = execute(&owner, &wf, json!({})).await;
    let d = dead_letter(&owner.tenant_id, 40, "the refused callback", |d| {
        d["execution_id"] == id.as_str()
    })
    .await;
    assert_eq!(d["kind"], "callback");
    let error = d["error"].as_str().unwrap();
    assert!(
        error.contains("egress policy") && error.contains("localhost"),
        "{d}"
    );
    assert!(
        mock_calls(&key).await.is_empty(),
        "the refused callback was sent"
    );
}

async fn put_secret(owner: &Session, name: &str, value: &str) {
    put(&format!("/api/v1/secrets/{name}"))
        .token(&owner.access)
        .json(json!({ "value": value }))
        .send()
        .await
        .expect(200);
}

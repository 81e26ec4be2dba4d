//! Stripe events for the tests, built and signed by `scripts/stripe_event.py` (the same signer
//! the README shows), posted raw to the webhook, and the consumer's result polled through the
//! platform admin's event routes.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::client::*;
use crate::harness::{root, STRIPE_SECRET};

pub const WEBHOOK: &str = "/api/v1/webhooks/stripe";

/// A signed event as the script printed it.
#[derive(Clone, Debug)]
pub struct Signed {
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The event's id and the parsed body.
    pub id: String,
    pub event: Value,
}

impl Signed {
    pub fn signature(&self) -> &str {
        self.header("Stripe-Signature").unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The same body under another `Stripe-Signature` (or none).
    pub fn with_signature(mut self, signature: Option<&str>) -> Signed {
        self.headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case("Stripe-Signature"));
        if let Some(s) = signature {
            self.headers.push(("Stripe-Signature".into(), s.into()));
        }
        self
    }
}

/// `scripts/stripe_event.py TYPE --tenant TENANT ARGS…`, signed with the harness's current
/// secret unless `args` names `--secret`.
pub fn stripe_event(kind: &str, tenant: &str, args: &[&str]) -> Signed {
    let mut cmd = Command::new("python3");
    cmd.arg(root().join("scripts/stripe_event.py"))
        .args([kind, "--tenant", tenant])
        .args(args);
    if !args.contains(&"--secret") {
        cmd.args(["--secret", STRIPE_SECRET]);
    }
    let out = cmd.output().expect("python3 scripts/stripe_event.py");
    assert!(
        out.status.success(),
        "stripe_event.py {kind}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("the script prints JSON");
    let headers = printed["headers"]
        .as_object()
        .expect("headers")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    let body = printed["body"].as_str().expect("body").to_string();
    let event: Value = serde_json::from_str(&body).expect("the body is JSON");
    Signed {
        headers,
        id: event["id"].as_str().expect("event id").to_string(),
        body,
        event,
    }
}

/// Posts the event's exact bytes with its headers.
pub async fn deliver(e: &Signed) -> Resp {
    let content_type = e.header("Content-Type").unwrap_or("application/json");
    let mut r = post(WEBHOOK).raw(e.body.as_bytes(), content_type);
    for (k, v) in &e.headers {
        if !k.eq_ignore_ascii_case("Content-Type") {
            r = r.header(k, v);
        }
    }
    r.send().await
}

/// Delivers and expects Stripe's 200 receipt naming the event.
pub async fn accepted(e: &Signed) {
    let r = deliver(e).await.expect(200);
    assert_eq!(r.data()["received"], true, "{}", r.text);
    assert_eq!(r.data()["id"], e.id.as_str());
}

/// The stored event as the platform admin sees it (with its payload).
pub async fn stored(admin: &Session, id: &str) -> Resp {
    get(&format!("/api/v1/admin/billing/events/{id}"))
        .token(&admin.access)
        .send()
        .await
}

/// Waits until the consumer has decided the event (any status but `received`) and returns it.
pub async fn settled(admin: &Session, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = stored(admin, id).await;
        if r.status == 200 && r.data()["status"] != "received" {
            return r.data().clone();
        }
        assert!(
            Instant::now() < deadline,
            "event {id} not processed: {}",
            r.text
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Delivers, waits for the consumer, and asserts the outcome (`processed`, `ignored`, `stale`).
pub async fn applied(admin: &Session, e: &Signed, status: &str) -> Value {
    accepted(e).await;
    let ev = settled(admin, &e.id).await;
    assert_eq!(ev["status"], status, "{ev}");
    ev
}

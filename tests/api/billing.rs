//! Plans and exact monthly quotas: the usage meter under concurrency, its seeding from the
//! month's rows, `/billing/plans`, `/billing/usage`, `/admin/usage`, premium_custom quotas.

use futures::future::join_all;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

use crate::client::*;
use crate::harness::server;
use crate::workflows::deployed;

fn transform() -> Value {
    json!([{"name": "out", "kind": "transform", "template": {"ok": true}}])
}

async fn execute_status(s: &Session, wf: &str) -> Resp {
    post(&format!("/api/v1/workflows/{wf}/execute"))
        .token(&s.access)
        .json(json!({"input_data": {}}))
        .send()
        .await
}

/// `n` executions this month written straight into D1, as if made before the meter counted
/// (the month's first consume seeds its counter from these rows).
async fn executions_this_month(owner: &Session, wf: &str, n: u32) {
    let (tenant, workflow) = (owner.tenant_id.clone(), wf.to_string());
    d1_alone(move || {
        server().d1(&format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
             INSERT INTO executions (id, workflow_id, tenant_id, status, config, step_count, \
             timeout_at, created_at, updated_at) \
             SELECT 'exe_seed_{tenant}_' || i, '{workflow}', '{tenant}', 'completed', '{{}}', 1, \
             strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), \
             strftime('%Y-%m-%dT%H:%M:%fZ', 'now') FROM n"
        ))
    })
    .await;
}

pub async fn usage(s: &Session) -> Value {
    get("/api/v1/billing/usage")
        .token(&s.access)
        .send()
        .await
        .expect(200)
        .data()
        .clone()
}

/// The platform admin's `PATCH /admin/tenants/:id` (a plan change applies from the next request).
pub async fn set_tenant(tenant_id: &str, body: Value) -> Resp {
    let admin = admin().await;
    patch(&format!("/api/v1/admin/tenants/{tenant_id}"))
        .token(&admin.access)
        .json(body)
        .send()
        .await
}

fn next_month_start() -> String {
    use chrono::Datelike;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let now = chrono::DateTime::from_timestamp(secs, 0).unwrap();
    let (y, m) = if now.month() == 12 {
        (now.year() + 1, 1)
    } else {
        (now.year(), now.month() + 1)
    };
    format!("{y:04}-{m:02}-01T00:00:00.000Z")
}

#[tokio::test]
async fn twenty_concurrent_executes_with_five_left_get_exactly_five() {
    let owner = register().await;
    let other = register().await;
    set_tenant(
        &owner.tenant_id,
        json!({"plan": "premium_custom", "quota_overrides": {"executions": 5}}),
    )
    .await
    .expect(200);
    let wf = deployed(&owner, transform()).await;
    let answers = exclusive(join_all((0..20).map(|_| execute_status(&owner, &wf)))).await;
    let accepted = answers.iter().filter(|r| r.status == 202).count();
    let refused: Vec<&Resp> = answers.iter().filter(|r| r.status == 402).collect();
    assert_eq!(
        (accepted, refused.len()),
        (5, 15),
        "{:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    let resets_at = next_month_start();
    for r in &refused {
        assert_eq!(r.body["code"], "quota_exceeded", "{}", r.text);
        assert_eq!(r.body["metric"], "executions");
        assert_eq!(r.body["limit"], 5);
        assert_eq!(r.body["used"], 5);
        assert_eq!(r.body["resets_at"], resets_at.as_str());
    }
    // Nothing was created for the refused ones.
    let list = get(&format!("/api/v1/workflows/{wf}/executions?limit=100"))
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(list.data().as_array().unwrap().len(), 5);

    let u = usage(&owner).await;
    assert_eq!(u["plan"], "premium_custom");
    assert_eq!(u["resets_at"], resets_at.as_str());
    assert_eq!(
        u["metrics"]["executions"],
        json!({"used": 5, "limit": 5, "remaining": 0})
    );
    assert_eq!(u["metrics"]["optimizations"]["limit"], Value::Null);
    let thresholds: Vec<i64> = u["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            assert_eq!(a["metric"], "executions");
            a["threshold"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(thresholds, [80, 100]);
    let audit = get("/api/v1/audit-logs?action=usage.threshold&limit=100")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(audit.data().as_array().unwrap().len(), 2, "{}", audit.text);

    // Another tenant's meter is its own.
    let theirs = usage(&other).await;
    assert_eq!(theirs["metrics"]["executions"]["used"], 0);
    assert_eq!(theirs["metrics"]["executions"]["limit"], 1000);
    assert_eq!(theirs["alerts"], json!([]));
}

#[tokio::test]
async fn a_free_tenant_at_its_limit_gets_402_until_its_plan_grows() {
    let owner = register().await;
    let wf = deployed(&owner, transform()).await;
    // 998 executions this month from before the meter counted (the month's first consume
    // seeds the counter from these rows).
    executions_this_month(&owner, &wf, 998).await;
    execute_status(&owner, &wf).await.expect(202);
    execute_status(&owner, &wf).await.expect(202);
    let r = execute_status(&owner, &wf).await.expect(402);
    assert_eq!(r.body["code"], "quota_exceeded");
    assert_eq!(r.body["limit"], 1000);
    assert_eq!(r.body["used"], 1000);
    assert_eq!(r.body["resets_at"], next_month_start().as_str());
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{}",
        r.text
    );
    let u = usage(&owner).await;
    assert_eq!(
        u["metrics"]["executions"],
        json!({"used": 1000, "limit": 1000, "remaining": 0})
    );
    // 80 % was passed before the meter counted; 100 % is reported once.
    let alerts = u["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["threshold"], 100);

    // A plan change applies from the next request.
    set_tenant(&owner.tenant_id, json!({"plan": "starter"}))
        .await
        .expect(200);
    execute_status(&owner, &wf).await.expect(202);
    let u = usage(&owner).await;
    assert_eq!(u["plan"], "starter");
    assert_eq!(
        u["metrics"]["executions"],
        json!({"used": 1001, "limit": 5000, "remaining": 3999})
    );
}

#[tokio::test]
async fn plans_list_limits_features_and_what_can_be_bought() {
    let owner = register().await;
    let member = add_user(&owner, "member").await;
    let r = get("/api/v1/billing/plans")
        .token(&member.access)
        .send()
        .await
        .expect(200);
    let plans = r.data()["plans"].as_array().unwrap();
    let names: Vec<&str> = plans.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["free", "starter", "pro", "premium_custom"]);
    let by = |n: &str| plans.iter().find(|p| p["name"] == n).unwrap().clone();
    assert_eq!(by("free")["purchasable"], false);
    assert_eq!(by("pro")["purchasable"], true);
    assert_eq!(by("premium_custom")["purchasable"], false);
    assert_eq!(by("free")["limits"]["executions"], 1000);
    assert_eq!(by("pro")["limits"]["optimizations"], 10000);
    assert_eq!(by("free")["features"], json!([]));
    assert_eq!(
        by("starter")["features"],
        json!(["large_batches", "operator_llm_keys"])
    );
    // Documented limits follow the catalogue's overrides (the test worker's media vars).
    assert_eq!(by("free")["limits"]["max_file_bytes"], 6291456);
    assert_eq!(by("starter")["limits"]["max_file_bytes"], 7340032);
    assert_eq!(by("pro")["limits"]["storage_bytes"], 12582912);
    get("/api/v1/billing/plans").send().await.expect(401);
}

#[tokio::test]
async fn usage_takes_a_recent_month_and_refuses_others() {
    let owner = register().await;
    let u = usage(&owner).await;
    let current = u["period"].as_str().unwrap().to_string();
    assert_eq!(current.len(), 7);
    assert_eq!(u["metrics"]["storage"]["used"], 0);
    assert_eq!(u["metrics"]["storage"]["limit"], 12582912);
    let r = get(&format!("/api/v1/billing/usage?period={current}"))
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(r.data()["period"], current.as_str());
    for bad in ["2026-13", "2026-1", "november", "1999-01", "2999-01"] {
        let r = get(&format!("/api/v1/billing/usage?period={bad}"))
            .token(&owner.access)
            .send()
            .await
            .expect(422);
        assert_eq!(r.body["errors"][0]["field"], "period", "{bad}: {}", r.text);
    }
    // An API key reads it too.
    let key = post("/api/v1/api-keys")
        .token(&owner.access)
        .json(json!({"name": "reporting", "scopes": ["read"]}))
        .send()
        .await
        .expect(201);
    get("/api/v1/billing/usage")
        .token(key.data()["key"].as_str().unwrap())
        .send()
        .await
        .expect(200);
}

#[tokio::test]
async fn quota_overrides_are_premium_custom_only_and_stripe_keeps_its_plans() {
    let owner = register().await;
    let r = set_tenant(
        &owner.tenant_id,
        json!({"quota_overrides": {"executions": 3}}),
    )
    .await
    .expect(422);
    assert_eq!(
        r.body["errors"][0]["field"], "quota_overrides",
        "{}",
        r.text
    );
    set_tenant(
        &owner.tenant_id,
        json!({"plan": "premium_custom", "quota_overrides": {"wishes": 3}}),
    )
    .await
    .expect(422);
    let r = set_tenant(
        &owner.tenant_id,
        json!({"plan": "premium_custom", "quota_overrides": {"executions": 3}}),
    )
    .await
    .expect(200);
    assert_eq!(r.data()["quota_overrides"], json!({"executions": 3}));
    let u = usage(&owner).await;
    assert_eq!(u["metrics"]["executions"]["limit"], 3);
    assert_eq!(u["metrics"]["optimizations"]["limit"], Value::Null);
    let r = set_tenant(&owner.tenant_id, json!({"quota_overrides": null}))
        .await
        .expect(200);
    assert_eq!(r.data()["quota_overrides"], Value::Null);
    assert_eq!(
        usage(&owner).await["metrics"]["executions"]["limit"],
        Value::Null
    );

    // While a Stripe subscription manages the tenant, its plan follows Stripe only.
    let tenant = owner.tenant_id.clone();
    d1_alone(move || {
        server().d1(&format!(
            "UPDATE tenants SET stripe_customer_id = 'cus_{tenant}', \
             stripe_subscription_id = 'sub_{tenant}', subscription_status = 'active' \
             WHERE id = '{tenant}'"
        ))
    })
    .await;
    let r = set_tenant(&owner.tenant_id, json!({"plan": "pro"}))
        .await
        .expect(409);
    assert_eq!(r.body["code"], "managed_by_stripe", "{}", r.text);
    // Other fields still change.
    set_tenant(&owner.tenant_id, json!({"name": "Renamed Org"}))
        .await
        .expect(200);
}

#[tokio::test]
async fn admin_usage_shows_each_tenants_month_for_the_platform_admin_only() {
    let owner = register().await;
    let wf = deployed(&owner, transform()).await;
    execute_status(&owner, &wf).await.expect(202);
    get("/api/v1/admin/usage")
        .token(&owner.access)
        .send()
        .await
        .expect(403);
    let admin = admin().await;
    get("/api/v1/admin/usage?period=13-2026")
        .token(&admin.access)
        .send()
        .await
        .expect(422);
    // The meter's alarm copies its counters to D1 within a minute.
    let deadline = Instant::now() + Duration::from_secs(100);
    loop {
        let mut cursor = String::new();
        let row = loop {
            let r = get(&format!("/api/v1/admin/usage?limit=100{cursor}"))
                .token(&admin.access)
                .send()
                .await
                .expect(200);
            let found = r
                .data()
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["tenant_id"] == owner.tenant_id.as_str())
                .cloned();
            if let Some(row) = found {
                break row;
            }
            let next = r.body["next_cursor"]
                .as_str()
                .expect("the tenant is listed");
            cursor = format!("&cursor={next}");
        };
        assert_eq!(row["plan"], "free");
        assert_eq!(row["metrics"]["executions"]["limit"], 1000);
        if row["metrics"]["executions"]["used"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "not flushed: {row}");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The "Done means", end to end: a free tenant at its limit, Checkout for `pro`, signed
/// events (one twice, one out of order), then `pro` with its invoice, usage and MRR.
#[tokio::test]
async fn a_free_tenant_at_its_limit_upgrades_to_pro_through_checkout_and_signed_events() {
    use crate::stripe_support::{applied, stripe_event};
    let owner = register().await;
    let wf = deployed(&owner, transform()).await;
    executions_this_month(&owner, &wf, 1000).await;
    let r = execute_status(&owner, &wf).await.expect(402);
    assert_eq!(r.body["code"], "quota_exceeded");
    assert_eq!(r.body["resets_at"], next_month_start().as_str());

    let r = post("/api/v1/billing/checkout")
        .token(&owner.access)
        .json(
            json!({"plan": "pro", "success_url": "https://app.example.com/billing/done",
                     "cancel_url": "https://app.example.com/billing"}),
        )
        .send()
        .await
        .expect(201);
    assert!(r.data()["url"].as_str().unwrap().starts_with("http"));
    assert!(r.data()["id"].as_str().unwrap().starts_with("cs_"));

    // Stripe's events: the subscription before the session (out of order), the session twice.
    let admin = admin().await;
    let amount = ["--price", "price_test_pro", "--amount", "987654"];
    let created = stripe_event("customer.subscription.created", &owner.tenant_id, &amount);
    let session = stripe_event("checkout.session.completed", &owner.tenant_id, &[]);
    let paid = stripe_event("invoice.paid", &owner.tenant_id, &["--amount", "987654"]);
    applied(&admin, &created, "processed").await;
    applied(&admin, &session, "processed").await;
    crate::stripe_support::accepted(&session).await;
    applied(&admin, &paid, "processed").await;

    let sub = get("/api/v1/billing/subscription")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(sub.data()["plan"], "pro", "{}", sub.text);
    assert_eq!(sub.data()["status"], "active");
    execute_status(&owner, &wf).await.expect(202);

    let payments = get("/api/v1/billing/payments")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    let list = payments.data().as_array().unwrap();
    assert_eq!(list.len(), 1, "{}", payments.text);
    assert_eq!(list[0]["status"], "paid");
    assert_eq!(list[0]["amount_paid"], 987654);

    let u = usage(&owner).await;
    assert_eq!(u["plan"], "pro");
    assert_eq!(
        u["metrics"]["executions"],
        json!({"used": 1001, "limit": 10000, "remaining": 8999})
    );
    let dash = get("/api/v1/admin/dashboard")
        .token(&admin.access)
        .send()
        .await
        .expect(200);
    let mrr = dash.data()["mrr"].as_f64().unwrap();
    assert!(mrr >= 9876.54, "MRR {mrr} leaves out the new subscription");
}

//! `POST /webhooks/stripe` through the local worker: signatures, the stored events, what the
//! jobs Worker's consumer applies (plan, payments, refunds), order and redelivery, and the
//! platform admin's event routes.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::client::*;
use crate::harness::{server, STRIPE_OLD_SECRET, STRIPE_SECRET};
use crate::stripe_support::*;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn tenant(admin: &Session, id: &str) -> Value {
    get(&format!("/api/v1/admin/tenants/{id}"))
        .token(&admin.access)
        .send()
        .await
        .expect(200)
        .data()
        .clone()
}

async fn d1(sql: String) -> Vec<Value> {
    d1_alone(move || server().d1(&sql)).await
}

/// The tenant's payments, one row per invoice.
async fn payments(tenant_id: &str) -> Vec<Value> {
    d1(format!(
        "SELECT stripe_invoice_id, status, amount_paid, amount_refunded, number, \
         hosted_invoice_url, period_start FROM payments WHERE tenant_id = '{tenant_id}'"
    ))
    .await
}

async fn plan_changes(tenant_id: &str) -> i64 {
    d1(format!(
        "SELECT COUNT(*) AS n FROM audit_logs WHERE tenant_id = '{tenant_id}' \
         AND action = 'billing.plan_changed'"
    ))
    .await[0]["n"]
        .as_i64()
        .unwrap()
}

/// A registered tenant linked to its Stripe customer by a completed Checkout Session.
async fn checked_out(admin: &Session) -> Session {
    let owner = register().await;
    let e = stripe_event("checkout.session.completed", &owner.tenant_id, &[]);
    let ev = applied(admin, &e, "processed").await;
    assert_eq!(ev["tenant_id"], owner.tenant_id.as_str());
    owner
}

#[tokio::test]
async fn signed_events_move_a_tenant_to_pro_and_record_its_invoice() {
    let admin = admin().await;
    let owner = checked_out(&admin).await;
    let t = tenant(&admin, &owner.tenant_id).await;
    assert_eq!(t["plan"], "free");

    let created = stripe_event(
        "customer.subscription.created",
        &owner.tenant_id,
        &["--price", "price_test_pro", "--amount", "4900"],
    );
    applied(&admin, &created, "processed").await;
    let t = tenant(&admin, &owner.tenant_id).await;
    assert_eq!(t["plan"], "pro", "{t}");
    assert_eq!(t["subscription_amount"], 49.0, "{t}");
    assert!(
        t["subscription_end_date"].as_str().unwrap()
            > t["subscription_start_date"].as_str().unwrap()
    );
    let row = &d1(format!(
        "SELECT stripe_customer_id, stripe_subscription_id, stripe_price_id, subscription_status, \
         billing_event_created, cancel_at_period_end FROM tenants WHERE id = '{}'",
        owner.tenant_id
    ))
    .await[0];
    let sub = &created.event["data"]["object"];
    assert_eq!(row["stripe_customer_id"], sub["customer"]);
    assert_eq!(row["stripe_subscription_id"], sub["id"]);
    assert_eq!(row["stripe_price_id"], "price_test_pro");
    assert_eq!(row["subscription_status"], "active");
    assert_eq!(row["billing_event_created"], created.event["created"]);

    let paid = stripe_event("invoice.paid", &owner.tenant_id, &["--amount", "4900"]);
    applied(&admin, &paid, "processed").await;
    let rows = payments(&owner.tenant_id).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        rows[0]["stripe_invoice_id"],
        paid.event["data"]["object"]["id"]
    );
    assert_eq!(
        (rows[0]["status"].as_str(), rows[0]["amount_paid"].as_i64()),
        (Some("paid"), Some(4900))
    );
    assert!(rows[0]["hosted_invoice_url"]
        .as_str()
        .unwrap()
        .starts_with("https://invoice.stripe.com/"));
    assert!(rows[0]["number"].is_string() && rows[0]["period_start"].is_string());
    assert_eq!(plan_changes(&owner.tenant_id).await, 1);

    // The platform admin sees the three events of the tenant, newest first, in pages.
    let path = format!(
        "/api/v1/admin/billing/events?tenant_id={}&limit=2",
        owner.tenant_id
    );
    let r = get(&path).token(&admin.access).send().await.expect(200);
    let first: Vec<&str> = r
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(first, [paid.id.as_str(), created.id.as_str()]);
    assert!(
        r.data()[0].get("payload").is_none(),
        "no payload in the list"
    );
    let cursor = r.body["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_string();
    let r = get(&format!("{path}&cursor={cursor}"))
        .token(&admin.access)
        .send()
        .await
        .expect(200);
    assert_eq!(r.data().as_array().unwrap().len(), 1);
    assert_eq!(r.data()[0]["type"], "checkout.session.completed");
    let r = get(&format!(
        "/api/v1/admin/billing/events?tenant_id={}&type=invoice.paid&status=processed",
        owner.tenant_id
    ))
    .token(&admin.access)
    .send()
    .await
    .expect(200);
    assert_eq!(r.data().as_array().unwrap().len(), 1);
    let one = stored(&admin, &paid.id).await.expect(200);
    assert_eq!(
        one.data()["payload"]["data"]["object"]["id"],
        paid.event["data"]["object"]["id"]
    );
}

#[tokio::test]
async fn missing_bad_and_stale_signatures_are_refused_and_nothing_is_stored() {
    let admin = admin().await;
    let owner = register().await;
    let e = stripe_event("invoice.paid", &owner.tenant_id, &[]);
    let missing = e.clone().with_signature(None);
    let r = deliver(&missing).await.problem(401, "invalid_signature");
    assert!(
        r.body["detail"].as_str().unwrap().contains("missing"),
        "{}",
        r.text
    );

    let wrong = stripe_event(
        "invoice.paid",
        &owner.tenant_id,
        &["--secret", "whsec_not_ours"],
    );
    deliver(&wrong).await.problem(401, "invalid_signature");
    // A signature of another body.
    let other = stripe_event("invoice.paid", &owner.tenant_id, &[]);
    let swapped = e.clone().with_signature(Some(other.signature()));
    deliver(&swapped).await.problem(401, "invalid_signature");
    deliver(&e.clone().with_signature(Some("t=abc,v1=00")))
        .await
        .problem(401, "invalid_signature");
    // A valid HMAC over a timestamp 10 minutes old (tolerance 300 s).
    let old = (now() - 600).to_string();
    let stale = stripe_event("invoice.paid", &owner.tenant_id, &["--timestamp", &old]);
    let r = deliver(&stale).await.problem(401, "invalid_signature");
    assert!(
        r.body["detail"].as_str().unwrap().contains("tolerance"),
        "{}",
        r.text
    );

    for id in [&e.id, &wrong.id, &other.id, &stale.id] {
        stored(&admin, id).await.problem(404, "not_found");
    }
    assert!(payments(&owner.tenant_id).await.is_empty());
}

#[tokio::test]
async fn one_valid_v1_among_several_passes_and_the_rotated_out_secret_still_verifies() {
    let admin = admin().await;
    let owner = register().await;
    let several = stripe_event(
        "customer.created",
        &owner.tenant_id,
        &[
            "--secret",
            "whsec_unknown_1",
            "--secret",
            STRIPE_SECRET,
            "--secret",
            "whsec_unknown_2",
        ],
    );
    assert_eq!(several.signature().matches("v1=").count(), 3);
    accepted(&several).await;
    let old = stripe_event(
        "customer.created",
        &owner.tenant_id,
        &["--secret", STRIPE_OLD_SECRET],
    );
    accepted(&old).await;
    // Stored, and (an unhandled type) ignored with why.
    let ev = stored(&admin, &old.id).await.expect(200);
    assert_eq!(ev.data()["status"], "ignored");
    assert!(ev.data()["error"]
        .as_str()
        .unwrap()
        .contains("customer.created"));
}

#[tokio::test]
async fn an_event_twice_plus_a_replay_gives_one_payment_and_one_plan_change() {
    let admin = admin().await;
    let owner = checked_out(&admin).await;
    let sub = stripe_event(
        "customer.subscription.created",
        &owner.tenant_id,
        &["--price", "price_test_pro"],
    );
    let inv = stripe_event("invoice.paid", &owner.tenant_id, &[]);
    for e in [&sub, &inv] {
        accepted(e).await;
        accepted(e).await;
        settled(&admin, &e.id).await;
    }
    for e in [&sub, &inv] {
        let r = post(&format!("/api/v1/admin/billing/events/{}/replay", e.id))
            .token(&admin.access)
            .send()
            .await
            .expect(202);
        assert_eq!(r.data()["status"], "received");
        let ev = settled(&admin, &e.id).await;
        assert_eq!(ev["status"], "processed", "{ev}");
        // A redelivery after processing is a no-op too.
        accepted(e).await;
    }
    assert_eq!(payments(&owner.tenant_id).await.len(), 1);
    assert_eq!(plan_changes(&owner.tenant_id).await, 1);
    assert_eq!(tenant(&admin, &owner.tenant_id).await["plan"], "pro");
    let replays = d1(format!(
        "SELECT COUNT(*) AS n FROM audit_logs WHERE action = 'billing.event_replayed' AND target_id IN ('{}', '{}')",
        sub.id, inv.id
    ))
    .await;
    assert_eq!(replays[0]["n"], 2);
}

#[tokio::test]
async fn an_older_subscription_update_is_stale_and_changes_nothing() {
    let admin = admin().await;
    let owner = checked_out(&admin).await;
    let t0 = now();
    let newer = stripe_event(
        "customer.subscription.updated",
        &owner.tenant_id,
        &["--price", "price_test_pro", "--created", &t0.to_string()],
    );
    applied(&admin, &newer, "processed").await;
    // Sent earlier by Stripe, arriving later: the starter plan it names is not applied.
    let older = stripe_event(
        "customer.subscription.updated",
        &owner.tenant_id,
        &[
            "--price",
            "price_test_starter",
            "--created",
            &(t0 - 120).to_string(),
        ],
    );
    let ev = applied(&admin, &older, "stale").await;
    assert!(ev["error"].as_str().unwrap().contains("older"), "{ev}");
    let t = tenant(&admin, &owner.tenant_id).await;
    assert_eq!(t["plan"], "pro");
    // Deleted later: back on free, nothing counted in MRR.
    let deleted = stripe_event(
        "customer.subscription.deleted",
        &owner.tenant_id,
        &[
            "--price",
            "price_test_pro",
            "--created",
            &(t0 + 60).to_string(),
        ],
    );
    applied(&admin, &deleted, "processed").await;
    let t = tenant(&admin, &owner.tenant_id).await;
    assert_eq!(
        (t["plan"].as_str(), t["subscription_amount"].as_f64()),
        (Some("free"), Some(0.0))
    );
    assert_eq!(plan_changes(&owner.tenant_id).await, 2);
}

#[tokio::test]
async fn payment_failed_after_paid_stays_paid_and_refunds_move_it_on() {
    let admin = admin().await;
    let owner = checked_out(&admin).await;
    let invoice = format!("in_test_{}", unique().replace('-', ""));
    let paid = stripe_event("invoice.paid", &owner.tenant_id, &["--invoice", &invoice]);
    applied(&admin, &paid, "processed").await;
    let failed = stripe_event(
        "invoice.payment_failed",
        &owner.tenant_id,
        &["--invoice", &invoice, "--legacy"],
    );
    applied(&admin, &failed, "processed").await;
    let rows = payments(&owner.tenant_id).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0]["status"].as_str(), rows[0]["amount_paid"].as_i64()),
        (Some("paid"), Some(4900))
    );

    let partial = stripe_event(
        "charge.refunded",
        &owner.tenant_id,
        &["--invoice", &invoice, "--refunded", "1000"],
    );
    applied(&admin, &partial, "processed").await;
    let rows = payments(&owner.tenant_id).await;
    assert_eq!(
        (
            rows[0]["status"].as_str(),
            rows[0]["amount_refunded"].as_i64()
        ),
        (Some("partially_refunded"), Some(1000))
    );
    let full = stripe_event(
        "charge.refunded",
        &owner.tenant_id,
        &[
            "--invoice",
            &invoice,
            "--refunded",
            "4900",
            "--refund-amount",
            "3900",
        ],
    );
    applied(&admin, &full, "processed").await;
    // The partial one again (a redelivered older event) moves nothing back.
    post(&format!(
        "/api/v1/admin/billing/events/{}/replay",
        partial.id
    ))
    .token(&admin.access)
    .send()
    .await
    .expect(202);
    settled(&admin, &partial.id).await;
    let rows = payments(&owner.tenant_id).await;
    assert_eq!(
        (
            rows[0]["status"].as_str(),
            rows[0]["amount_refunded"].as_i64()
        ),
        (Some("refunded"), Some(4900))
    );
    let refunds = d1(format!(
        "SELECT amount FROM refunds WHERE tenant_id = '{}' ORDER BY amount",
        owner.tenant_id
    ))
    .await;
    let amounts: Vec<i64> = refunds
        .iter()
        .map(|r| r["amount"].as_i64().unwrap())
        .collect();
    assert_eq!(amounts, [1000, 3900]);
}

#[tokio::test]
async fn unknown_prices_tenants_and_customers_are_ignored_with_why() {
    let admin = admin().await;
    let owner = checked_out(&admin).await;
    let unknown_price = stripe_event(
        "customer.subscription.created",
        &owner.tenant_id,
        &["--price", "price_nobody_sells"],
    );
    let ev = applied(&admin, &unknown_price, "ignored").await;
    assert!(
        ev["error"].as_str().unwrap().contains("price_nobody_sells"),
        "{ev}"
    );
    assert_eq!(tenant(&admin, &owner.tenant_id).await["plan"], "free");

    let ghost = "ten_00000000000000000000dead";
    let sub = stripe_event(
        "customer.subscription.created",
        ghost,
        &["--price", "price_test_pro"],
    );
    let ev = applied(&admin, &sub, "ignored").await;
    assert!(
        ev["error"].as_str().unwrap().contains("unknown customer"),
        "{ev}"
    );
    let inv = stripe_event("invoice.paid", ghost, &[]);
    applied(&admin, &inv, "ignored").await;
    let session = stripe_event("checkout.session.completed", ghost, &[]);
    let ev = applied(&admin, &session, "ignored").await;
    assert!(
        ev["error"].as_str().unwrap().contains("unknown tenant"),
        "{ev}"
    );
    // A refund of a charge no stored invoice has.
    let refund = stripe_event("charge.refunded", &owner.tenant_id, &[]);
    applied(&admin, &refund, "ignored").await;
    let r = get("/api/v1/admin/billing/events?status=ignored&type=charge.refunded&limit=100")
        .token(&admin.access)
        .send()
        .await
        .expect(200);
    assert!(r
        .data()
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["id"] == refund.id.as_str()));
}

#[tokio::test]
async fn the_event_routes_are_the_platform_admins_and_check_their_filters() {
    let admin = admin().await;
    let owner = register().await;
    let member = add_user(&owner, "member").await;
    let tenant_admin = add_user(&owner, "admin").await;
    let e = stripe_event("customer.created", &owner.tenant_id, &[]);
    accepted(&e).await;
    for who in [&owner, &member, &tenant_admin] {
        get("/api/v1/admin/billing/events")
            .token(&who.access)
            .send()
            .await
            .problem(403, "forbidden");
        stored(who, &e.id).await.problem(403, "forbidden");
        post(&format!("/api/v1/admin/billing/events/{}/replay", e.id))
            .token(&who.access)
            .send()
            .await
            .problem(403, "forbidden");
    }
    get("/api/v1/admin/billing/events").send().await.expect(401);
    for bad in [
        "status=done",
        "type=Invoice%20Paid",
        "tenant_id=%27%3B--",
        "limit=0",
        "cursor=nope",
    ] {
        let r = get(&format!("/api/v1/admin/billing/events?{bad}"))
            .token(&admin.access)
            .send()
            .await;
        r.problem(422, "validation_failed");
    }
    stored(&admin, "evt_does_not_exist")
        .await
        .problem(404, "not_found");
    post("/api/v1/admin/billing/events/evt_does_not_exist/replay")
        .token(&admin.access)
        .send()
        .await
        .problem(404, "not_found");
    // A signed body that is not an event: 400, nothing stored.
    let mut junk = e.clone();
    junk.body = "{\"hello\": 1}".into();
    let t = now();
    let sig = format!("t={t},v1={}", sign(STRIPE_SECRET, t, junk.body.as_bytes()));
    deliver(&junk.with_signature(Some(&sig)))
        .await
        .problem(400, "bad_request");
}

/// Stripe's v1 signature, computed here independently of the script (for the odd body).
fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

#[tokio::test]
async fn the_webhook_and_event_routes_are_in_the_openapi_document() {
    let r = get("/openapi.json").send().await.expect(200);
    let paths = &r.body["paths"];
    let hook = &paths["/api/v1/webhooks/stripe"]["post"];
    assert!(hook.is_object(), "{}", paths);
    assert!(hook["responses"]["200"]
        .to_string()
        .contains("StripeReceipt"));
    assert!(paths["/api/v1/admin/billing/events"]["get"].is_object());
    assert!(paths["/api/v1/admin/billing/events/{id}"]["get"].is_object());
    assert!(
        paths["/api/v1/admin/billing/events/{id}/replay"]["post"]["responses"]["202"].is_object()
    );
    for s in ["StripeWebhookEvent", "StripeReceipt", "BillingEvent"] {
        assert!(r.body["components"]["schemas"][s].is_object(), "{s}");
    }
}

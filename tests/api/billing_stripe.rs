//! Billing's outbound side against the mock's Stripe stand-in: checkout, portal, plan changes
//! and refunds reach it with the right fields, the key, the pinned version and an idempotency
//! key; who may ask; what is refused; invoices per tenant.

use serde_json::{json, Value};

use crate::client::*;
use crate::harness::{server, STRIPE_KEY};

const OK_URL: &str = "https://app.example.com/billing/done?session={CHECKOUT_SESSION_ID}";
const BACK_URL: &str = "https://app.example.com/billing";

/// The mock's recorded Stripe calls that `matches` picks.
async fn stripe_calls(matches: impl Fn(&Value) -> bool) -> Vec<Value> {
    let v: Value = reqwest::get(format!("{}/_calls/stripe", server().mock))
        .await
        .expect("the mock answers")
        .json()
        .await
        .expect("JSON calls");
    v["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .filter(|c| matches(c))
        .cloned()
        .collect()
}

fn form<'a>(call: &'a Value, key: &str) -> Option<&'a str> {
    call["form"][key].as_str()
}

fn header<'a>(call: &'a Value, name: &str) -> Option<&'a str> {
    call["headers"][name].as_str()
}

/// What every call to Stripe carries.
#[track_caller]
fn assert_stripe_headers(call: &Value) {
    assert_eq!(
        header(call, "authorization"),
        Some(format!("Bearer {STRIPE_KEY}").as_str())
    );
    assert_eq!(header(call, "stripe-version"), Some("2025-03-31.basil"));
    if call["method"] == "POST" {
        assert_eq!(
            header(call, "content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert!(
            header(call, "idempotency-key").is_some_and(|k| k.starts_with("tenantry-")),
            "{call}"
        );
    }
}

/// Sets tenant columns no route writes (Stripe's webhook does) straight in D1.
async fn set_tenant(tenant_id: &str, assignments: &str) {
    let sql = format!("UPDATE tenants SET {assignments} WHERE id = '{tenant_id}'");
    d1_alone(move || server().d1(&sql)).await;
}

/// A tenant on `pro` through a live Stripe subscription `sub_…` (returned).
async fn subscribed(owner: &Session) -> String {
    let sub = format!("sub_{}", unique());
    set_tenant(
        &owner.tenant_id,
        &format!(
            "plan = 'pro', stripe_customer_id = 'cus_{u}', stripe_subscription_id = '{sub}', \
             stripe_price_id = 'price_test_pro', subscription_status = 'active', \
             subscription_unit_amount = 4900, subscription_currency = 'eur', \
             subscription_interval = 'month', current_period_start = '2026-11-01T00:00:00.000Z', \
             current_period_end = '2026-12-01T00:00:00.000Z'",
            u = unique()
        ),
    )
    .await;
    sub
}

fn checkout_body(plan: &str) -> Value {
    json!({"plan": plan, "success_url": OK_URL, "cancel_url": BACK_URL})
}

#[tokio::test]
async fn checkout_opens_a_subscription_session_tied_to_the_tenant_with_the_key_and_an_idempotency_key(
) {
    let owner = register().await;
    let r = post("/api/v1/billing/checkout")
        .token(&owner.access)
        .header("Idempotency-Key", "checkout-once")
        .json(checkout_body("pro"))
        .send()
        .await
        .expect(201);
    let id = r.data()["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("cs_test_"), "{}", r.text);
    assert!(r.data()["url"].as_str().unwrap().contains(&id));

    let calls =
        stripe_calls(|c| c["form"]["client_reference_id"] == owner.tenant_id.as_str()).await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = &calls[0];
    assert_eq!(call["method"], "POST");
    assert_eq!(call["path"], "/stripe/v1/checkout/sessions");
    assert_stripe_headers(call);
    let key = header(call, "idempotency-key").unwrap();
    assert!(
        !key.contains("checkout-once"),
        "the caller's key stays ours"
    );
    for (k, v) in [
        ("mode", "subscription"),
        ("line_items[0][price]", "price_test_pro"),
        ("line_items[0][quantity]", "1"),
        ("success_url", OK_URL),
        ("cancel_url", BACK_URL),
        ("metadata[tenant_id]", owner.tenant_id.as_str()),
        (
            "subscription_data[metadata][tenant_id]",
            owner.tenant_id.as_str(),
        ),
        ("customer_email", owner.email.as_str()),
    ] {
        assert_eq!(form(call, k), Some(v), "{k}: {call}");
    }
    assert_eq!(form(call, "customer"), None);

    // The same request and key: the first answer again, Stripe not asked twice.
    let again = post("/api/v1/billing/checkout")
        .token(&owner.access)
        .header("Idempotency-Key", "checkout-once")
        .json(checkout_body("pro"))
        .send()
        .await
        .expect(201);
    assert_eq!(again.data()["id"], id.as_str());
    // Without a key of the caller's, Stripe still gets one, a fresh one.
    post("/api/v1/billing/checkout")
        .token(&owner.access)
        .json(checkout_body("starter"))
        .send()
        .await
        .expect(201);
    let calls =
        stripe_calls(|c| c["form"]["client_reference_id"] == owner.tenant_id.as_str()).await;
    assert_eq!(calls.len(), 2);
    assert_eq!(
        form(&calls[1], "line_items[0][price]"),
        Some("price_test_starter")
    );
    let second = header(&calls[1], "idempotency-key").unwrap();
    assert!(second.starts_with("tenantry-checkout-") && second != key);
}

#[tokio::test]
async fn checkout_is_the_owners_and_refuses_plans_without_a_price_and_relative_urls() {
    let owner = register().await;
    for role in ["member", "admin"] {
        let other = add_user(&owner, role).await;
        post("/api/v1/billing/checkout")
            .token(&other.access)
            .json(checkout_body("pro"))
            .send()
            .await
            .problem(403, "forbidden");
    }
    for (body, field) in [
        (checkout_body("gold"), "plan"),
        (checkout_body("premium_custom"), "plan"),
        (checkout_body("free"), "plan"),
        (checkout_body("platform"), "plan"),
        (
            json!({"plan": "pro", "success_url": "/billing/done", "cancel_url": BACK_URL}),
            "success_url",
        ),
        (
            json!({"plan": "pro", "success_url": OK_URL, "cancel_url": "javascript:alert(1)"}),
            "cancel_url",
        ),
        (
            json!({"plan": "pro", "success_url": OK_URL, "cancel_url": BACK_URL, "quantity": 2}),
            "quantity",
        ),
    ] {
        let r = post("/api/v1/billing/checkout")
            .token(&owner.access)
            .json(body.clone())
            .send()
            .await
            .problem(422, "validation_failed");
        assert_eq!(r.body["errors"][0]["field"], field, "{body}: {}", r.text);
    }
    // The plan the tenant is already on.
    let admin = admin().await;
    patch(&format!("/api/v1/admin/tenants/{}", owner.tenant_id))
        .token(&admin.access)
        .json(json!({"plan": "starter"}))
        .send()
        .await
        .expect(200);
    post("/api/v1/billing/checkout")
        .token(&owner.access)
        .json(checkout_body("starter"))
        .send()
        .await
        .problem(409, "conflict");
    assert!(
        stripe_calls(|c| c["form"]["client_reference_id"] == owner.tenant_id.as_str())
            .await
            .is_empty(),
        "nothing refused reached Stripe"
    );
}

#[tokio::test]
async fn checkout_names_the_tenants_customer_and_refuses_a_second_subscription() {
    let owner = register().await;
    let customer = format!("cus_{}", unique());
    set_tenant(
        &owner.tenant_id,
        &format!("stripe_customer_id = '{customer}'"),
    )
    .await;
    post("/api/v1/billing/checkout")
        .token(&owner.access)
        .json(checkout_body("starter"))
        .send()
        .await
        .expect(201);
    let calls =
        stripe_calls(|c| c["form"]["client_reference_id"] == owner.tenant_id.as_str()).await;
    assert_eq!(calls.len(), 1);
    assert_eq!(form(&calls[0], "customer"), Some(customer.as_str()));
    assert_eq!(form(&calls[0], "customer_email"), None);

    let subscribed_owner = register().await;
    subscribed(&subscribed_owner).await;
    post("/api/v1/billing/checkout")
        .token(&subscribed_owner.access)
        .json(checkout_body("starter"))
        .send()
        .await
        .problem(409, "conflict");
}

#[tokio::test]
async fn a_stripe_refusal_is_a_502_with_stripes_message_and_a_retry_reuses_the_idempotency_key() {
    let owner = register().await;
    let customer = format!("cus_missing_{}", unique());
    set_tenant(
        &owner.tenant_id,
        &format!("stripe_customer_id = '{customer}'"),
    )
    .await;
    for _ in 0..2 {
        let r = post("/api/v1/billing/checkout")
            .token(&owner.access)
            .header("Idempotency-Key", "retry-me")
            .json(checkout_body("pro"))
            .send()
            .await
            .problem(502, "upstream_error");
        assert!(
            r.body["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("No such customer: '{customer}'")),
            "{}",
            r.text
        );
        assert_eq!(r.body["stripe_code"], "resource_missing");
        assert!(!r.text.contains(STRIPE_KEY));
    }
    // A failed request frees the caller's key; the retry reaches Stripe with the same key of
    // ours, so Stripe could never act on it twice.
    let calls = stripe_calls(|c| c["form"]["customer"] == customer.as_str()).await;
    assert_eq!(calls.len(), 2);
    assert_eq!(
        header(&calls[0], "idempotency-key"),
        header(&calls[1], "idempotency-key")
    );
}

#[tokio::test]
async fn a_stripe_outage_is_503_billing_unavailable_not_500() {
    let owner = register_with(&format!("stripe-down-{}@example.com", unique())).await;
    let r = post("/api/v1/billing/checkout")
        .token(&owner.access)
        .json(checkout_body("pro"))
        .send()
        .await
        .problem(503, "billing_unavailable");
    assert!(!r.text.contains(STRIPE_KEY));
    assert_eq!(
        stripe_calls(|c| c["form"]["customer_email"] == owner.email.as_str())
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn the_portal_opens_for_the_tenants_customer_only() {
    let owner = register().await;
    let body = json!({"return_url": BACK_URL});
    post("/api/v1/billing/portal")
        .token(&owner.access)
        .json(body.clone())
        .send()
        .await
        .problem(409, "conflict");
    let customer = format!("cus_{}", unique());
    set_tenant(
        &owner.tenant_id,
        &format!("stripe_customer_id = '{customer}'"),
    )
    .await;
    let r = post("/api/v1/billing/portal")
        .token(&owner.access)
        .json(body.clone())
        .send()
        .await
        .expect(201);
    assert!(r.data()["url"]
        .as_str()
        .unwrap()
        .contains("/stripe/portal/bps_"));
    let calls = stripe_calls(|c| c["form"]["customer"] == customer.as_str()).await;
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["path"], "/stripe/v1/billing_portal/sessions");
    assert_stripe_headers(&calls[0]);
    assert_eq!(form(&calls[0], "return_url"), Some(BACK_URL));

    let r = post("/api/v1/billing/portal")
        .token(&owner.access)
        .json(json!({"return_url": "billing"}))
        .send()
        .await
        .problem(422, "validation_failed");
    assert_eq!(r.body["errors"][0]["field"], "return_url");
    let admin = add_user(&owner, "admin").await;
    post("/api/v1/billing/portal")
        .token(&admin.access)
        .json(body)
        .send()
        .await
        .problem(403, "forbidden");
}

#[tokio::test]
async fn the_subscription_view_shows_stripes_terms_to_tenant_admins() {
    let owner = register().await;
    let r = get("/api/v1/billing/subscription")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    let v = r.data();
    assert_eq!(v["plan"], "free");
    assert_eq!(v["status"], "none");
    assert_eq!(v["managed_by_stripe"], false);
    assert_eq!(v["has_customer"], false);
    assert_eq!(v["amount"], Value::Null);

    subscribed(&owner).await;
    let admin = add_user(&owner, "admin").await;
    let r = get("/api/v1/billing/subscription")
        .token(&admin.access)
        .send()
        .await
        .expect(200);
    let v = r.data();
    assert_eq!(v["plan"], "pro");
    assert_eq!(v["status"], "active");
    assert_eq!(v["managed_by_stripe"], true);
    assert_eq!(v["has_customer"], true);
    assert_eq!(v["amount"], 4900);
    assert_eq!(v["currency"], "eur");
    assert_eq!(v["interval"], "month");
    assert_eq!(v["current_period_end"], "2026-12-01T00:00:00.000Z");
    assert_eq!(v["cancel_at_period_end"], false);

    let member = add_user(&owner, "member").await;
    get("/api/v1/billing/subscription")
        .token(&member.access)
        .send()
        .await
        .problem(403, "forbidden");
}

#[tokio::test]
async fn a_plan_change_goes_to_stripe_on_the_current_item_and_the_local_view_waits_for_the_webhook()
{
    let owner = register().await;
    let sub = subscribed(&owner).await;
    let r = patch("/api/v1/billing/subscription")
        .token(&owner.access)
        .json(json!({"plan": "starter"}))
        .send()
        .await
        .expect(202);
    assert_eq!(r.data()["plan"], "pro", "unchanged until Stripe says so");
    assert_eq!(r.data()["managed_by_stripe"], true);

    let path = format!("/stripe/v1/subscriptions/{sub}");
    let calls = stripe_calls(|c| c["path"] == path.as_str()).await;
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0]["method"], "GET");
    assert_stripe_headers(&calls[0]);
    let post_call = &calls[1];
    assert_eq!(post_call["method"], "POST");
    assert_stripe_headers(post_call);
    // The item Stripe itself gave the subscription.
    let stripe_sub: Value = reqwest::Client::new()
        .get(format!("{}{path}", server().mock))
        .bearer_auth(STRIPE_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let item = &stripe_sub["items"]["data"][0];
    assert_eq!(form(post_call, "items[0][id]"), item["id"].as_str());
    assert_eq!(
        form(post_call, "items[0][price]"),
        Some("price_test_starter")
    );
    assert_eq!(
        form(post_call, "proration_behavior"),
        Some("create_prorations")
    );
    assert_eq!(
        item["price"]["id"], "price_test_starter",
        "the mock applied it"
    );

    patch("/api/v1/billing/subscription")
        .token(&owner.access)
        .json(json!({"cancel_at_period_end": true}))
        .send()
        .await
        .expect(202);
    let calls = stripe_calls(|c| c["path"] == path.as_str() && c["method"] == "POST").await;
    let last = calls.last().unwrap();
    assert_eq!(form(last, "cancel_at_period_end"), Some("true"));
    assert_eq!(form(last, "items[0][price]"), None);

    let r = get("/api/v1/billing/subscription")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(r.data()["plan"], "pro");
    assert_eq!(r.data()["cancel_at_period_end"], false);
}

#[tokio::test]
async fn a_plan_change_needs_a_body_a_price_a_subscription_and_the_owner() {
    let owner = register().await;
    patch("/api/v1/billing/subscription")
        .token(&owner.access)
        .json(json!({"plan": "starter"}))
        .send()
        .await
        .problem(409, "conflict");
    subscribed(&owner).await;
    for body in [
        json!({}),
        json!({"plan": "gold"}),
        json!({"plan": "premium_custom"}),
        json!({"cancel_at_period_end": "soon"}),
        json!({"plan": "starter", "coupon": "x"}),
    ] {
        patch("/api/v1/billing/subscription")
            .token(&owner.access)
            .json(body)
            .send()
            .await
            .problem(422, "validation_failed");
    }
    // Already so: nothing to ask Stripe.
    patch("/api/v1/billing/subscription")
        .token(&owner.access)
        .json(json!({"plan": "pro", "cancel_at_period_end": false}))
        .send()
        .await
        .problem(409, "conflict");
    for role in ["member", "admin"] {
        let other = add_user(&owner, role).await;
        patch("/api/v1/billing/subscription")
            .token(&other.access)
            .json(json!({"plan": "starter"}))
            .send()
            .await
            .problem(403, "forbidden");
    }
}

/// Three invoices for `a` (paid with charge `ch_…`, open, failed) and one for `b`; returns
/// `(paid, open, b's)` ids and the charge.
async fn invoices(a: &str, b: &str) -> (String, String, String, String) {
    let u = unique();
    let (paid, open, other) = (
        format!("pay_{u}p"),
        format!("pay_{u}o"),
        format!("pay_{u}b"),
    );
    let charge = format!("ch_{u}");
    let row = |id: &str, tenant: &str, status: &str, paid: i64, created: &str, charge: &str| {
        format!(
            "('{id}', '{tenant}', 'in_{id}', {charge}, 'INV-{id}', 4900, {paid}, 0, 'eur', \
             '{status}', '2026-10-01T00:00:00.000Z', '2026-11-01T00:00:00.000Z', \
             'https://invoice.stripe.com/i/{id}', 'https://pay.stripe.com/invoice/{id}/pdf', \
             '{created}', '{created}')"
        )
    };
    let sql = format!(
        "INSERT INTO payments (id, tenant_id, stripe_invoice_id, stripe_charge_id, number, \
         amount_due, amount_paid, amount_refunded, currency, status, period_start, period_end, \
         hosted_invoice_url, invoice_pdf, created_at, updated_at) VALUES {}, {}, {}, {}",
        row(
            &paid,
            a,
            "paid",
            4900,
            "2026-11-01T00:00:01.000Z",
            &format!("'{charge}'")
        ),
        row(&open, a, "open", 0, "2026-11-01T00:00:02.000Z", "NULL"),
        row(
            &format!("pay_{u}f"),
            a,
            "failed",
            0,
            "2026-11-01T00:00:03.000Z",
            "NULL"
        ),
        row(&other, b, "paid", 4900, "2026-11-01T00:00:04.000Z", "NULL"),
    );
    d1_alone(move || server().d1(&sql)).await;
    (paid, open, other, charge)
}

#[tokio::test]
async fn invoices_are_listed_per_tenant_with_filters_and_pages() {
    let a = register().await;
    let b = register().await;
    let (paid, _, other, _) = invoices(&a.tenant_id, &b.tenant_id).await;
    let r = get("/api/v1/billing/payments")
        .token(&a.access)
        .send()
        .await
        .expect(200);
    let rows = r.data().as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["status"], "failed", "newest first");
    let p = &rows[2];
    assert_eq!(p["id"], paid.as_str());
    assert_eq!(p["amount_paid"], 4900);
    assert_eq!(p["amount_refunded"], 0);
    assert_eq!(p["currency"], "eur");
    assert_eq!(p["number"], format!("INV-{paid}"));
    assert_eq!(p["period_start"], "2026-10-01T00:00:00.000Z");
    assert!(p["invoice_pdf"].as_str().unwrap().ends_with("/pdf"));
    assert!(p["hosted_invoice_url"].as_str().is_some());

    let r = get("/api/v1/billing/payments?status=paid")
        .token(&a.access)
        .send()
        .await
        .expect(200);
    assert_eq!(r.data().as_array().unwrap().len(), 1);
    get("/api/v1/billing/payments?status=settled")
        .token(&a.access)
        .send()
        .await
        .problem(422, "validation_failed");
    let r = get("/api/v1/billing/payments?limit=2")
        .token(&a.access)
        .send()
        .await
        .expect(200);
    let cursor = r.body["next_cursor"].as_str().unwrap().to_string();
    let r = get(&format!("/api/v1/billing/payments?limit=2&cursor={cursor}"))
        .token(&a.access)
        .send()
        .await
        .expect(200);
    assert_eq!(r.data().as_array().unwrap().len(), 1);
    assert_eq!(r.body["next_cursor"], Value::Null);

    get(&format!("/api/v1/billing/payments/{paid}"))
        .token(&a.access)
        .send()
        .await
        .expect(200);
    get(&format!("/api/v1/billing/payments/{other}"))
        .token(&a.access)
        .send()
        .await
        .problem(404, "not_found");
    let member = add_user(&a, "member").await;
    get("/api/v1/billing/payments")
        .token(&member.access)
        .send()
        .await
        .problem(403, "forbidden");

    let admin = admin().await;
    let r = get(&format!("/api/v1/admin/payments?tenant_id={}", b.tenant_id))
        .token(&admin.access)
        .send()
        .await
        .expect(200);
    let rows = r.data().as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["id"], other.as_str());
    get("/api/v1/admin/payments")
        .token(&a.access)
        .send()
        .await
        .problem(403, "forbidden");
}

#[tokio::test]
async fn the_platform_admin_refunds_a_paid_invoice_on_stripe_within_what_is_left() {
    let a = register().await;
    let b = register().await;
    let (paid, open, _, charge) = invoices(&a.tenant_id, &b.tenant_id).await;
    let admin = admin().await;
    let url = format!("/api/v1/admin/payments/{paid}/refund");
    let r = post(&url)
        .token(&admin.access)
        .header("Idempotency-Key", "refund-1")
        .json(json!({"amount": 1000, "reason": "requested_by_customer"}))
        .send()
        .await
        .expect(201);
    let refund = r.data();
    assert!(refund["stripe_refund_id"]
        .as_str()
        .unwrap()
        .starts_with("re_"));
    assert_eq!(refund["status"], "pending");
    assert_eq!(refund["amount"], 1000);
    assert_eq!(refund["payment_id"], paid.as_str());
    assert_eq!(refund["tenant_id"], a.tenant_id.as_str());
    assert_eq!(refund["reason"], "requested_by_customer");
    assert_eq!(refund["requested_by"], admin.user_id.as_str());

    let calls = stripe_calls(|c| c["form"]["charge"] == charge.as_str()).await;
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call["path"], "/stripe/v1/refunds");
    assert_stripe_headers(call);
    assert!(header(call, "idempotency-key")
        .unwrap()
        .starts_with("tenantry-refund-"));
    for (k, v) in [
        ("amount", "1000"),
        ("reason", "requested_by_customer"),
        ("metadata[payment_id]", paid.as_str()),
        ("metadata[tenant_id]", a.tenant_id.as_str()),
    ] {
        assert_eq!(form(call, k), Some(v), "{k}: {call}");
    }

    // 4900 paid, 1000 pending: at most 3900 more.
    let r = post(&url)
        .token(&admin.access)
        .json(json!({"amount": 4000}))
        .send()
        .await
        .problem(422, "validation_failed");
    assert_eq!(r.body["errors"][0]["field"], "amount");
    let r = post(&url)
        .token(&admin.access)
        .json(json!({"reason": "changed_my_mind"}))
        .send()
        .await
        .problem(422, "validation_failed");
    assert_eq!(r.body["errors"][0]["field"], "reason");
    let r = post(&url)
        .token(&admin.access)
        .json(json!({}))
        .send()
        .await
        .expect(201);
    assert_eq!(r.data()["amount"], 3900, "the rest");
    post(&url)
        .token(&admin.access)
        .json(json!({}))
        .send()
        .await
        .problem(422, "not_refundable");

    post(&format!("/api/v1/admin/payments/{open}/refund"))
        .token(&admin.access)
        .json(json!({}))
        .send()
        .await
        .problem(422, "not_refundable");
    post("/api/v1/admin/payments/pay_nothere/refund")
        .token(&admin.access)
        .json(json!({}))
        .send()
        .await
        .problem(404, "not_found");
    post(&url)
        .token(&a.access)
        .json(json!({}))
        .send()
        .await
        .problem(403, "forbidden");
    assert_eq!(
        stripe_calls(|c| c["form"]["charge"] == charge.as_str())
            .await
            .len(),
        2,
        "only the two refunds made reached Stripe"
    );
}

//! The tenant's subscription as its owners manage it: the local view of what Stripe last said
//! (`GET /billing/subscription`), and the calls that ask Stripe for a change — Checkout to buy
//! a plan, the Billing Portal, a plan change or cancellation at period end. The tenant's own
//! columns change only when Stripe's webhook says so (Helper IN's consumer), never here.
//!
//! Status for a tenant Stripe does not manage (no subscription ever): `none` on `free`, and
//! `active` on a plan the platform admin granted by hand; a subscription that ended keeps
//! Stripe's last word (`canceled`, `incomplete_expired`).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::stripe_api::{idempotency_key, Stripe};
use crate::args;
use crate::audit;
use crate::handler;
use crate::http::context::Ctx;
use crate::http::json::Checks;
use crate::http::reply::Reply;
use crate::http::router::{Access, Route};
use crate::platform::config;
use crate::platform::db::Db;
use crate::platform::error::{AppError, Result};
use crate::platform::plan::Plan;

pub fn routes() -> Vec<Route> {
    vec![
        Route::get(
            "/api/v1/billing/subscription",
            Access::TenantAdmin,
            handler!(get),
        )
        .doc(
            "billing",
            "The tenant's plan and subscription as Stripe last reported it",
        )
        .ok("Subscription"),
        Route::patch(
            "/api/v1/billing/subscription",
            Access::Owner,
            handler!(change),
        )
        .doc(
            "billing",
            "Ask Stripe to change the plan (prorated) or to cancel at period end; the local view follows Stripe's webhook",
        )
        .body("ChangeSubscription")
        .accepted("Subscription"),
        Route::post("/api/v1/billing/checkout", Access::Owner, handler!(checkout))
            .doc(
                "billing",
                "Open a Stripe Checkout Session to subscribe to a plan",
            )
            .body("CreateCheckout")
            .created("CheckoutSession")
            .idempotent(),
        Route::post("/api/v1/billing/portal", Access::Owner, handler!(portal))
            .doc(
                "billing",
                "Open a Stripe Billing Portal session for the tenant's customer",
            )
            .body("CreatePortal")
            .created("PortalSession")
            .idempotent(),
    ]
}

/// The statuses Stripe gives a subscription, plus `none` (never subscribed).
pub const STATUSES: [&str; 9] = [
    "none",
    "active",
    "trialing",
    "past_due",
    "unpaid",
    "canceled",
    "incomplete",
    "incomplete_expired",
    "paused",
];

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Subscription {
    pub plan: Plan,
    /// Stripe's status (`active`, `trialing`, `past_due`, `unpaid`, `canceled`, `incomplete`,
    /// `incomplete_expired`, `paused`); for a tenant Stripe never managed, `none` on `free`
    /// and `active` on a plan granted by the platform admin.
    #[schema(example = "active")]
    pub status: String,
    /// Stripe decides the plan (a live subscription): plan changes go through Stripe.
    pub managed_by_stripe: bool,
    /// The tenant is a Stripe customer (the Billing Portal is available).
    pub has_customer: bool,
    /// What Stripe bills per `interval`, in minor units of `currency`.
    pub amount: Option<i64>,
    /// ISO 4217, lower case as Stripe writes it.
    pub currency: Option<String>,
    /// `month` or `year` (…).
    pub interval: Option<String>,
    pub current_period_start: Option<String>,
    pub current_period_end: Option<String>,
    /// The subscription ends at `current_period_end` instead of renewing.
    pub cancel_at_period_end: bool,
}

/// `POST /billing/checkout`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCheckout {
    /// A plan sold through Stripe (one with a price: `starter`, `pro`).
    #[schema(example = "pro")]
    pub plan: String,
    /// Where Stripe sends the customer after paying (absolute http(s) URL; may contain
    /// `{CHECKOUT_SESSION_ID}`).
    #[schema(example = "https://app.example.com/billing/done")]
    pub success_url: String,
    /// Where Stripe sends the customer who goes back.
    #[schema(example = "https://app.example.com/billing")]
    pub cancel_url: String,
}

/// `POST /billing/portal`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePortal {
    /// Where the portal's "return" link leads (absolute http(s) URL).
    #[schema(example = "https://app.example.com/billing")]
    pub return_url: String,
}

/// `PATCH /billing/subscription`: one or both.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeSubscription {
    /// Move to this plan (prorated).
    #[schema(example = "starter")]
    pub plan: Option<String>,
    /// `true` ends the subscription at the end of the period; `false` keeps it renewing.
    pub cancel_at_period_end: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckoutSession {
    /// Stripe's session id (`cs_…`).
    pub id: String,
    /// Send the customer here.
    pub url: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PortalSession {
    /// Send the customer here.
    pub url: String,
}

/// The tenant's billing columns (migration 0009).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BillingRow {
    pub plan: Plan,
    pub stripe_customer_id: Option<String>,
    pub stripe_subscription_id: Option<String>,
    pub stripe_price_id: Option<String>,
    pub subscription_status: Option<String>,
    pub cancel_at_period_end: i64,
    pub subscription_unit_amount: Option<i64>,
    pub subscription_currency: Option<String>,
    pub subscription_interval: Option<String>,
    pub current_period_start: Option<String>,
    pub current_period_end: Option<String>,
}

/// The definition both Stripe sides share: a subscription that has not ended.
pub fn managed_by_stripe(subscription_id: Option<&str>, status: Option<&str>) -> bool {
    subscription_id.is_some_and(|s| !s.is_empty())
        && !matches!(status, Some("canceled" | "incomplete_expired"))
}

impl BillingRow {
    pub fn managed_by_stripe(&self) -> bool {
        managed_by_stripe(
            self.stripe_subscription_id.as_deref(),
            self.subscription_status.as_deref(),
        )
    }
}

/// What `GET /billing/subscription` shows.
pub fn view(row: &BillingRow) -> Subscription {
    let managed = row.managed_by_stripe();
    let status = match (&row.stripe_subscription_id, &row.subscription_status) {
        (Some(_), Some(s)) if !s.is_empty() => s.clone(),
        _ if row.plan == Plan::Free => "none".into(),
        _ => "active".into(),
    };
    let stripe = row.stripe_subscription_id.is_some();
    Subscription {
        plan: row.plan,
        status,
        managed_by_stripe: managed,
        has_customer: row.stripe_customer_id.is_some(),
        amount: row.subscription_unit_amount.filter(|_| stripe),
        currency: row.subscription_currency.clone().filter(|_| stripe),
        interval: row.subscription_interval.clone().filter(|_| stripe),
        current_period_start: row.current_period_start.clone().filter(|_| stripe),
        current_period_end: row.current_period_end.clone().filter(|_| stripe),
        cancel_at_period_end: stripe && row.cancel_at_period_end != 0,
    }
}

async fn billing_row(db: &Db, tenant_id: &str) -> Result<BillingRow> {
    db.one(
        "SELECT plan, stripe_customer_id, stripe_subscription_id, stripe_price_id, \
         subscription_status, cancel_at_period_end, subscription_unit_amount, \
         subscription_currency, subscription_interval, current_period_start, current_period_end \
         FROM tenants WHERE id = ?1 AND deleted_at IS NULL",
        &args![tenant_id],
    )
    .await?
    .ok_or(AppError::NotFound)
}

/// An absolute `http(s)` URL for Stripe to send the customer to, as given (trimmed).
pub fn redirect_url(v: &str) -> std::result::Result<String, String> {
    let v = v.trim();
    if v.is_empty() || v.len() > 2048 {
        return Err("must be an absolute http(s) URL of at most 2048 characters".into());
    }
    match worker::Url::parse(v) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some_and(|h| !h.is_empty()) =>
        {
            Ok(v.to_string())
        }
        _ => Err("must be an absolute http(s) URL".into()),
    }
}

/// A plan that can be bought through Stripe, with its price.
pub fn priced_plan(
    stripe: &config::Stripe,
    name: &str,
) -> std::result::Result<(Plan, String), String> {
    let sold: Vec<&str> = Plan::NAMES
        .into_iter()
        .filter(|n| Plan::parse(n).is_some_and(|p| stripe.price_of(p).is_some()))
        .collect();
    let plan = Plan::parse_offered(name.trim())
        .ok_or_else(|| format!("must be one of: {}", Plan::NAMES.join(", ")))?;
    match stripe.price_of(plan) {
        Some(price) => Ok((plan, price.to_string())),
        None => Err(format!(
            "`{plan}` is not sold through Stripe; plans on sale: {}",
            if sold.is_empty() {
                "none".to_string()
            } else {
                sold.join(", ")
            }
        )),
    }
}

/// Who pays: the tenant's Stripe customer, or the owner's e-mail for Stripe to make one.
#[derive(Debug, Clone, PartialEq)]
pub enum Payer {
    Customer(String),
    Email(String),
}

/// The Checkout Session's parameters: a subscription to `price`, tied to the tenant by
/// `client_reference_id` and metadata on both the session and the subscription it makes.
pub fn checkout_params(
    tenant_id: &str,
    plan: Plan,
    price: &str,
    success_url: &str,
    cancel_url: &str,
    payer: &Payer,
) -> Value {
    let mut p = json!({
        "mode": "subscription",
        "line_items": [{"price": price, "quantity": 1}],
        "success_url": success_url,
        "cancel_url": cancel_url,
        "client_reference_id": tenant_id,
        "metadata": {"tenant_id": tenant_id, "plan": plan.as_str()},
        "subscription_data": {"metadata": {"tenant_id": tenant_id}},
    });
    match payer {
        Payer::Customer(id) => p["customer"] = json!(id),
        Payer::Email(email) => p["customer_email"] = json!(email),
    }
    p
}

/// What to ask Stripe for a `PATCH`: the plan's new price (on the subscription's current item)
/// and/or the cancellation flag; or why not (422 for the body, 409 for the state).
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub price: Option<(Plan, String)>,
    pub cancel_at_period_end: Option<bool>,
}

pub fn plan_change(
    stripe: &config::Stripe,
    row: &BillingRow,
    body: &ChangeSubscription,
) -> Result<Change> {
    let mut checks = Checks::new();
    if body.plan.is_none() && body.cancel_at_period_end.is_none() {
        checks.add("body", "give `plan`, `cancel_at_period_end` or both");
    }
    let price = match &body.plan {
        Some(name) => checks.take("plan", priced_plan(stripe, name)),
        None => None,
    };
    checks.finish()?;
    if !row.managed_by_stripe() {
        return Err(AppError::Conflict(
            "The tenant has no subscription; start one with POST /api/v1/billing/checkout.".into(),
        ));
    }
    // Asking for the plan already held changes nothing on Stripe: leave it out.
    let price = price.filter(|(plan, price)| {
        *plan != row.plan && row.stripe_price_id.as_deref() != Some(price.as_str())
    });
    let cancel = body
        .cancel_at_period_end
        .filter(|c| *c != (row.cancel_at_period_end != 0));
    if price.is_none() && cancel.is_none() {
        return Err(AppError::Conflict(
            "The subscription is already like that; nothing to change.".into(),
        ));
    }
    Ok(Change {
        price,
        cancel_at_period_end: cancel,
    })
}

/// The `POST /v1/subscriptions/:id` parameters for a change, given the subscription's current
/// item (from Stripe's own subscription object).
pub fn change_params(change: &Change, item_id: &str) -> Value {
    let mut p = json!({});
    if let Some((_, price)) = &change.price {
        p["items"] = json!([{"id": item_id, "price": price}]);
        p["proration_behavior"] = json!("create_prorations");
    }
    if let Some(c) = change.cancel_at_period_end {
        p["cancel_at_period_end"] = json!(c);
    }
    p
}

/// The id of the subscription's (first) item, from Stripe's subscription object.
pub fn current_item(subscription: &Value) -> Option<String> {
    subscription
        .get("items")
        .and_then(|i| i.get("data"))
        .and_then(Value::as_array)
        .and_then(|items| items.first())
        .and_then(|item| item.get("id"))
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn text_of(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// A Stripe answer without a field it always has: Stripe is not behaving, so billing is
/// unavailable (not a 500).
fn incomplete(what: &str) -> AppError {
    worker::console_error!(
        "{}",
        json!({"level": "warn", "event": "stripe.unexpected_answer", "missing": what})
    );
    super::stripe_api::unavailable()
}

async fn get(cx: Ctx) -> Result<Reply> {
    let row = billing_row(&cx.db()?, cx.tenant_id()?).await?;
    Reply::ok(&view(&row))
}

/// The caller's `Idempotency-Key`, for the key Stripe gets.
fn caller_key(cx: &Ctx) -> Option<String> {
    cx.header("Idempotency-Key").filter(|k| !k.is_empty())
}

fn stripe_key(cx: &Ctx, operation: &str) -> Result<String> {
    Ok(idempotency_key(
        &cx.principal()?.idempotency_scope(),
        operation,
        caller_key(cx).as_deref(),
    ))
}

async fn checkout(cx: Ctx) -> Result<Reply> {
    let body: CreateCheckout = cx.json()?;
    let cfg = cx.config.clone();
    let mut checks = Checks::new();
    let plan = checks.take("plan", priced_plan(&cfg.stripe, &body.plan));
    let success = checks.take("success_url", redirect_url(&body.success_url));
    let cancel = checks.take("cancel_url", redirect_url(&body.cancel_url));
    checks.finish()?;
    let (Some((plan, price)), Some(success), Some(cancel)) = (plan, success, cancel) else {
        return Err(AppError::internal("checked fields missing"));
    };
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    let row = billing_row(&db, tenant_id).await?;
    if row.plan == plan {
        return Err(AppError::Conflict(format!(
            "The tenant is already on `{plan}`."
        )));
    }
    if row.managed_by_stripe() {
        // A second subscription would bill the tenant twice.
        return Err(AppError::Conflict(
            "The tenant has a subscription; change its plan with PATCH /api/v1/billing/subscription."
                .into(),
        ));
    }
    let payer = match (&row.stripe_customer_id, &cx.principal()?.email) {
        (Some(customer), _) => Payer::Customer(customer.clone()),
        (None, Some(email)) => Payer::Email(email.clone()),
        (None, None) => {
            return Err(AppError::Forbidden(
                "forbidden",
                "Checkout needs an owner's session.".into(),
            ))
        }
    };
    let stripe = Stripe::new(&cfg)?;
    let params = checkout_params(tenant_id, plan, &price, &success, &cancel, &payer);
    let session = stripe
        .post(
            "/v1/checkout/sessions",
            &params,
            &stripe_key(&cx, "checkout")?,
        )
        .await?;
    let (Some(id), Some(url)) = (text_of(&session, "id"), text_of(&session, "url")) else {
        return Err(incomplete("checkout session id or url"));
    };
    audit::entry(&cx, "billing.checkout_started")
        .target("tenant", tenant_id)
        .meta(json!({"plan": plan.as_str(), "session_id": id}))
        .write(&db)
        .await?;
    Reply::created(&CheckoutSession { id, url }, None)
}

async fn portal(cx: Ctx) -> Result<Reply> {
    let body: CreatePortal = cx.json()?;
    let return_url =
        redirect_url(&body.return_url).map_err(|m| AppError::field("return_url", m))?;
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    let row = billing_row(&db, tenant_id).await?;
    let Some(customer) = row.stripe_customer_id else {
        return Err(AppError::Conflict(
            "The tenant is not a Stripe customer yet; subscribe through POST /api/v1/billing/checkout first."
                .into(),
        ));
    };
    let cfg = cx.config.clone();
    let stripe = Stripe::new(&cfg)?;
    let session = stripe
        .post(
            "/v1/billing_portal/sessions",
            &json!({"customer": customer, "return_url": return_url}),
            &stripe_key(&cx, "portal")?,
        )
        .await?;
    let Some(url) = text_of(&session, "url") else {
        return Err(incomplete("portal session url"));
    };
    Reply::created(&PortalSession { url }, None)
}

async fn change(cx: Ctx) -> Result<Reply> {
    let body: ChangeSubscription = cx.json()?;
    let cfg = cx.config.clone();
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    let row = billing_row(&db, tenant_id).await?;
    let change = plan_change(&cfg.stripe, &row, &body)?;
    let Some(subscription_id) = row.stripe_subscription_id.clone() else {
        return Err(AppError::internal(
            "a managed tenant without a subscription id",
        ));
    };
    let stripe = Stripe::new(&cfg)?;
    let path = format!("/v1/subscriptions/{subscription_id}");
    let item = if change.price.is_some() {
        let current = stripe.get(&path).await?;
        Some(current_item(&current).ok_or_else(|| incomplete("subscription item"))?)
    } else {
        None
    };
    stripe
        .post(
            &path,
            &change_params(&change, item.as_deref().unwrap_or_default()),
            &stripe_key(&cx, "subscription")?,
        )
        .await?;
    audit::entry(&cx, "billing.subscription_change_requested")
        .target("tenant", tenant_id)
        .meta(json!({
            "plan": change.price.as_ref().map(|(p, _)| p.as_str()),
            "cancel_at_period_end": change.cancel_at_period_end,
        }))
        .write(&db)
        .await?;
    Reply::accepted(&view(&row), "/api/v1/billing/subscription".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stripe() -> config::Stripe {
        config::Stripe {
            api_base: "https://api.stripe.com".into(),
            secret_key: Some("sk_test_x".into()),
            webhook_secrets: vec![],
            webhook_tolerance_secs: 300,
            prices: vec![
                (Plan::Starter, "price_starter".into()),
                (Plan::Pro, "price_pro".into()),
            ],
        }
    }

    fn managed(plan: Plan) -> BillingRow {
        BillingRow {
            plan,
            stripe_customer_id: Some("cus_1".into()),
            stripe_subscription_id: Some("sub_1".into()),
            stripe_price_id: stripe().price_of(plan).map(str::to_string),
            subscription_status: Some("active".into()),
            cancel_at_period_end: 0,
            subscription_unit_amount: Some(4900),
            subscription_currency: Some("eur".into()),
            subscription_interval: Some("month".into()),
            current_period_start: Some("2026-11-01T00:00:00Z".into()),
            current_period_end: Some("2026-12-01T00:00:00Z".into()),
        }
    }

    #[test]
    fn managed_by_stripe_means_a_subscription_that_has_not_ended() {
        assert!(managed_by_stripe(Some("sub_1"), Some("active")));
        assert!(managed_by_stripe(Some("sub_1"), Some("past_due")));
        assert!(managed_by_stripe(Some("sub_1"), None));
        assert!(!managed_by_stripe(Some("sub_1"), Some("canceled")));
        assert!(!managed_by_stripe(
            Some("sub_1"),
            Some("incomplete_expired")
        ));
        assert!(!managed_by_stripe(None, Some("active")));
    }

    #[test]
    fn the_view_of_a_tenant_stripe_never_managed() {
        let free = view(&BillingRow::default());
        assert_eq!(free.status, "none");
        assert!(!free.managed_by_stripe && !free.has_customer && !free.cancel_at_period_end);
        assert_eq!(free.amount, None);
        let granted = view(&BillingRow {
            plan: Plan::PremiumCustom,
            // Left from a manual entry: not Stripe's, so not shown as a Stripe period.
            current_period_end: Some("2027-01-01T00:00:00Z".into()),
            ..Default::default()
        });
        assert_eq!(granted.status, "active");
        assert_eq!(granted.current_period_end, None);
    }

    #[test]
    fn the_view_of_a_subscription_shows_stripes_terms() {
        let mut row = managed(Plan::Pro);
        row.cancel_at_period_end = 1;
        let v = view(&row);
        assert_eq!(v.status, "active");
        assert!(v.managed_by_stripe && v.has_customer && v.cancel_at_period_end);
        assert_eq!(
            (v.amount, v.currency.as_deref(), v.interval.as_deref()),
            (Some(4900), Some("eur"), Some("month"))
        );
        row.subscription_status = Some("canceled".into());
        row.plan = Plan::Free;
        let v = view(&row);
        assert_eq!(v.status, "canceled");
        assert!(!v.managed_by_stripe);
        for s in [view(&row).status, view(&BillingRow::default()).status] {
            assert!(STATUSES.contains(&s.as_str()));
        }
    }

    #[test]
    fn redirect_urls_must_be_absolute_http_urls() {
        for ok in [
            "https://app.example.com/billing/done?session={CHECKOUT_SESSION_ID}",
            "http://localhost:3000/x",
            " https://a.b ",
        ] {
            assert!(redirect_url(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            redirect_url("https://app.example.com/ok?s={CHECKOUT_SESSION_ID}").unwrap(),
            "https://app.example.com/ok?s={CHECKOUT_SESSION_ID}"
        );
        for bad in [
            "",
            "/billing/done",
            "app.example.com/x",
            "javascript:alert(1)",
            "ftp://example.com/",
            "mailto:a@b.c",
            "https://",
            &format!("https://a.b/{}", "x".repeat(2100)),
        ] {
            assert!(redirect_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_plans_with_a_price_can_be_bought() {
        assert_eq!(
            priced_plan(&stripe(), "pro"),
            Ok((Plan::Pro, "price_pro".into()))
        );
        for name in ["free", "premium_custom"] {
            let why = priced_plan(&stripe(), name).unwrap_err();
            assert!(why.contains("starter, pro"), "{why}");
        }
        for name in ["platform", "gold", ""] {
            assert!(priced_plan(&stripe(), name).unwrap_err().contains("one of"));
        }
    }

    #[test]
    fn checkout_ties_the_session_and_the_subscription_to_the_tenant() {
        let p = checkout_params(
            "ten_1",
            Plan::Pro,
            "price_pro",
            "https://a.b/ok",
            "https://a.b/back",
            &Payer::Email("o@a.b".into()),
        );
        let form = super::super::stripe_api::flatten(&p);
        let get = |k: &str| {
            form.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("mode"), Some("subscription"));
        assert_eq!(get("line_items[0][price]"), Some("price_pro"));
        assert_eq!(get("line_items[0][quantity]"), Some("1"));
        assert_eq!(get("client_reference_id"), Some("ten_1"));
        assert_eq!(get("metadata[tenant_id]"), Some("ten_1"));
        assert_eq!(get("subscription_data[metadata][tenant_id]"), Some("ten_1"));
        assert_eq!(get("customer_email"), Some("o@a.b"));
        assert_eq!(get("customer"), None);
        let p = checkout_params(
            "ten_1",
            Plan::Pro,
            "price_pro",
            "https://a.b/ok",
            "https://a.b/back",
            &Payer::Customer("cus_9".into()),
        );
        assert_eq!(p["customer"], "cus_9");
        assert!(p.get("customer_email").is_none());
    }

    #[test]
    fn a_change_needs_a_field_a_price_and_a_live_subscription() {
        let body = |plan: Option<&str>, cancel: Option<bool>| ChangeSubscription {
            plan: plan.map(str::to_string),
            cancel_at_period_end: cancel,
        };
        let row = managed(Plan::Pro);
        let e = plan_change(&stripe(), &row, &body(None, None)).unwrap_err();
        assert_eq!(e.status(), 422);
        let e = plan_change(&stripe(), &row, &body(Some("premium_custom"), None)).unwrap_err();
        assert_eq!(e.status(), 422);
        // Body errors come before the state.
        let e =
            plan_change(&stripe(), &BillingRow::default(), &body(Some("gold"), None)).unwrap_err();
        assert_eq!(e.status(), 422);
        let e =
            plan_change(&stripe(), &BillingRow::default(), &body(Some("pro"), None)).unwrap_err();
        assert_eq!(e.status(), 409);
        let mut ended = managed(Plan::Pro);
        ended.subscription_status = Some("canceled".into());
        assert_eq!(
            plan_change(&stripe(), &ended, &body(None, Some(true)))
                .unwrap_err()
                .status(),
            409
        );
        // Nothing would change.
        assert_eq!(
            plan_change(&stripe(), &row, &body(Some("pro"), Some(false)))
                .unwrap_err()
                .status(),
            409
        );
    }

    #[test]
    fn a_change_sends_the_current_item_with_the_new_price_and_prorates() {
        let c = plan_change(
            &stripe(),
            &managed(Plan::Pro),
            &ChangeSubscription {
                plan: Some("starter".into()),
                cancel_at_period_end: None,
            },
        )
        .unwrap();
        assert_eq!(
            c,
            Change {
                price: Some((Plan::Starter, "price_starter".into())),
                cancel_at_period_end: None
            }
        );
        assert_eq!(
            change_params(&c, "si_1"),
            json!({"items": [{"id": "si_1", "price": "price_starter"}],
                   "proration_behavior": "create_prorations"})
        );
        // The same plan with a cancellation sends only the cancellation.
        let c = plan_change(
            &stripe(),
            &managed(Plan::Pro),
            &ChangeSubscription {
                plan: Some("pro".into()),
                cancel_at_period_end: Some(true),
            },
        )
        .unwrap();
        assert_eq!(
            change_params(&c, "si_1"),
            json!({"cancel_at_period_end": true})
        );
    }

    #[test]
    fn the_current_item_is_read_from_stripes_subscription() {
        let sub = json!({"id": "sub_1", "object": "subscription",
            "items": {"object": "list", "data": [{"id": "si_A", "price": {"id": "price_pro"}}]}});
        assert_eq!(current_item(&sub), Some("si_A".into()));
        assert_eq!(current_item(&json!({"items": {"data": []}})), None);
        assert_eq!(current_item(&json!({})), None);
    }
}

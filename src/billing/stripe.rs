//! Stripe's inbound protocol as pure functions: the `Stripe-Signature` check on the raw bytes,
//! the event envelope and the objects the handled events carry (in the shapes of the API
//! versions before and after 2025-03-31), and the decisions the webhook consumer applies — one
//! owner per state machine: the tenant's subscription (`decide_subscription`), its link to a
//! customer (`decide_checkout`), an invoice's payment (`decide_invoice`) and its refunds
//! (`decide_refund`). Nothing here touches a binding; `billing::events` runs the SQL.

use serde_json::Value;

use crate::platform::clock;
use crate::platform::config::Stripe;
use crate::platform::crypto::{constant_time_eq, hmac_sha256};
use crate::platform::plan::Plan;

// ---------------------------------------------------------------------------------------------
// Signature

/// Why a `Stripe-Signature` was refused (each answers 401 `invalid_signature`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    Missing,
    Malformed,
    Mismatch,
    Stale,
}

impl SignatureError {
    pub fn detail(self) -> &'static str {
        match self {
            SignatureError::Missing => "The Stripe-Signature header is missing.",
            SignatureError::Malformed => {
                "The Stripe-Signature header needs t=<unix seconds> and at least one v1=<hex>."
            }
            SignatureError::Mismatch => {
                "No v1 signature matches the body under a configured webhook secret."
            }
            SignatureError::Stale => "The signature's timestamp is outside the tolerance.",
        }
    }
}

/// Stripe's `v1` scheme: hex HMAC-SHA256 under the endpoint secret of `"<t>.<raw body>"`.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    hex::encode(hmac_sha256(secret.as_bytes(), &signed))
}

/// The header's `t=` and every `v1=` (other schemes, such as `v0`, are skipped).
fn parse_header(header: &str) -> Result<(i64, Vec<&str>), SignatureError> {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        let Some((k, v)) = part.trim().split_once('=') else {
            continue;
        };
        match k.trim() {
            "t" => {
                t = Some(
                    v.trim()
                        .parse::<i64>()
                        .map_err(|_| SignatureError::Malformed)?,
                )
            }
            "v1" => v1.push(v.trim()),
            _ => {}
        }
    }
    match t {
        Some(t) if !v1.is_empty() => Ok((t, v1)),
        _ => Err(SignatureError::Malformed),
    }
}

/// Checks `Stripe-Signature` against the raw body: any `v1` under any of `secrets` (rotation)
/// may match, compared in constant time, and `t` must be within `tolerance_secs` of `now_secs`.
/// Returns the signed timestamp.
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &[String],
    tolerance_secs: i64,
    now_secs: i64,
) -> Result<i64, SignatureError> {
    let header = header
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or(SignatureError::Missing)?;
    let (t, given) = parse_header(header)?;
    let mut matched = false;
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        let expected = sign(secret, t, body);
        for v in &given {
            // No early exit: every pair is compared.
            matched |= constant_time_eq(expected.as_bytes(), v.to_ascii_lowercase().as_bytes());
        }
    }
    if !matched {
        return Err(SignatureError::Mismatch);
    }
    if (now_secs - t).abs() > tolerance_secs {
        return Err(SignatureError::Stale);
    }
    Ok(t)
}

// ---------------------------------------------------------------------------------------------
// The envelope and its objects

/// An event as Stripe posts it: `{id, type, created, data: {object}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    pub kind: String,
    pub created: i64,
    pub object: Value,
}

/// The event types the consumer acts on; others are stored `ignored`.
pub const HANDLED: [&str; 11] = [
    "checkout.session.completed",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
    "invoice.paid",
    "invoice.payment_failed",
    "invoice.finalized",
    "invoice.voided",
    "charge.refunded",
];

fn id_like(s: &str) -> bool {
    (1..=255).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The envelope of a signed body (checked before anything is stored).
pub fn parse_event(body: &[u8]) -> Result<Event, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let id = str_at(&v, &["id"]).ok_or("the event has no id")?;
    if !id_like(&id) {
        return Err("the event id is not a Stripe id".into());
    }
    let kind = str_at(&v, &["type"]).ok_or("the event has no type")?;
    if kind.is_empty()
        || kind.len() > 100
        || !kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._".contains(&b))
    {
        return Err("the event type is not a Stripe event type".into());
    }
    let created = int_at(&v, &["created"]).ok_or("the event has no created time")?;
    let object = v
        .get("data")
        .and_then(|d| d.get("object"))
        .filter(|o| o.is_object())
        .cloned()
        .ok_or("the event has no data.object")?;
    Ok(Event {
        id,
        kind,
        created,
        object,
    })
}

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn str_at(v: &Value, path: &[&str]) -> Option<String> {
    at(v, path)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn int_at(v: &Value, path: &[&str]) -> Option<i64> {
    at(v, path).and_then(Value::as_i64)
}

/// A reference Stripe sends either as an id or, expanded, as the object with its `id`.
fn id_at(v: &Value, path: &[&str]) -> Option<String> {
    let r = at(v, path)?;
    match r {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Object(_) => str_at(r, &["id"]),
        _ => None,
    }
}

fn list_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path)
        .and_then(|l| l.get("data"))
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn required(v: &Value, what: &str) -> Result<String, String> {
    str_at(v, &["id"]).ok_or_else(|| format!("the {what} has no id"))
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckoutSession {
    pub id: String,
    pub customer: Option<String>,
    pub subscription: Option<String>,
    pub client_reference_id: Option<String>,
    pub metadata_tenant_id: Option<String>,
    pub mode: Option<String>,
}

impl CheckoutSession {
    pub fn from_object(o: &Value) -> Result<CheckoutSession, String> {
        Ok(CheckoutSession {
            id: required(o, "checkout session")?,
            customer: id_at(o, &["customer"]),
            subscription: id_at(o, &["subscription"]),
            client_reference_id: str_at(o, &["client_reference_id"]),
            metadata_tenant_id: str_at(o, &["metadata", "tenant_id"]),
            mode: str_at(o, &["mode"]),
        })
    }

    /// The tenant the session was opened for.
    pub fn tenant_hint(&self) -> Option<&str> {
        self.client_reference_id
            .as_deref()
            .or(self.metadata_tenant_id.as_deref())
    }
}

/// One subscription item: its price and, since 2025-03-31, its own billing period.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub price_id: Option<String>,
    pub unit_amount: Option<i64>,
    pub currency: Option<String>,
    pub interval: Option<String>,
    pub interval_count: i64,
    pub quantity: i64,
    pub current_period_start: Option<i64>,
    pub current_period_end: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub id: String,
    pub customer: Option<String>,
    pub status: String,
    pub items: Vec<Item>,
    /// The top-level period of API versions before 2025-03-31.
    pub current_period_start: Option<i64>,
    pub current_period_end: Option<i64>,
    pub cancel_at_period_end: bool,
    pub metadata_tenant_id: Option<String>,
    pub currency: Option<String>,
}

impl Subscription {
    pub fn from_object(o: &Value) -> Result<Subscription, String> {
        let items = list_at(o, &["items"])
            .iter()
            .map(|i| {
                let price = i.get("price").or_else(|| i.get("plan"));
                let recurring = price.and_then(|p| p.get("recurring"));
                Item {
                    price_id: price.and_then(|p| str_at(p, &["id"])),
                    unit_amount: price.and_then(|p| int_at(p, &["unit_amount"])).or_else(|| {
                        // Legacy `plan` objects call it `amount`.
                        price.and_then(|p| int_at(p, &["amount"]))
                    }),
                    currency: price.and_then(|p| str_at(p, &["currency"])),
                    interval: recurring
                        .and_then(|r| str_at(r, &["interval"]))
                        .or_else(|| price.and_then(|p| str_at(p, &["interval"]))),
                    interval_count: recurring
                        .and_then(|r| int_at(r, &["interval_count"]))
                        .or_else(|| price.and_then(|p| int_at(p, &["interval_count"])))
                        .unwrap_or(1)
                        .max(1),
                    quantity: int_at(i, &["quantity"]).unwrap_or(1).max(0),
                    current_period_start: int_at(i, &["current_period_start"]),
                    current_period_end: int_at(i, &["current_period_end"]),
                }
            })
            .collect();
        Ok(Subscription {
            id: required(o, "subscription")?,
            customer: id_at(o, &["customer"]),
            status: str_at(o, &["status"]).ok_or("the subscription has no status")?,
            items,
            current_period_start: int_at(o, &["current_period_start"]),
            current_period_end: int_at(o, &["current_period_end"]),
            cancel_at_period_end: at(o, &["cancel_at_period_end"])
                .and_then(Value::as_bool)
                .unwrap_or(false),
            metadata_tenant_id: str_at(o, &["metadata", "tenant_id"]),
            currency: str_at(o, &["currency"]),
        })
    }

    /// The billing period: the items' (2025-03-31 and later; the earliest start and latest
    /// end over the items), else the subscription's top-level fields.
    pub fn period(&self) -> (Option<i64>, Option<i64>) {
        let start = self
            .items
            .iter()
            .filter_map(|i| i.current_period_start)
            .min();
        let end = self.items.iter().filter_map(|i| i.current_period_end).max();
        (
            start.or(self.current_period_start),
            end.or(self.current_period_end),
        )
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Invoice {
    pub id: String,
    pub customer: Option<String>,
    pub subscription: Option<String>,
    pub number: Option<String>,
    pub amount_due: i64,
    pub amount_paid: i64,
    pub currency: String,
    pub status: Option<String>,
    pub period_start: Option<i64>,
    pub period_end: Option<i64>,
    pub hosted_invoice_url: Option<String>,
    pub invoice_pdf: Option<String>,
    pub charge: Option<String>,
    pub payment_intent: Option<String>,
    pub created: Option<i64>,
    pub metadata_tenant_id: Option<String>,
}

impl Invoice {
    pub fn from_object(o: &Value) -> Result<Invoice, String> {
        let line = list_at(o, &["lines"]).first();
        let line_period = |k: &str| line.and_then(|l| int_at(l, &["period", k]));
        // Since 2025-03-31 payments are listed under `payments`; before, top-level fields.
        let payment = list_at(o, &["payments"])
            .iter()
            .find(|p| str_at(p, &["status"]).as_deref() == Some("paid"))
            .or_else(|| list_at(o, &["payments"]).first())
            .and_then(|p| p.get("payment"));
        Ok(Invoice {
            id: required(o, "invoice")?,
            customer: id_at(o, &["customer"]),
            subscription: id_at(o, &["subscription"])
                .or_else(|| id_at(o, &["parent", "subscription_details", "subscription"])),
            number: str_at(o, &["number"]),
            amount_due: int_at(o, &["amount_due"]).unwrap_or(0).max(0),
            amount_paid: int_at(o, &["amount_paid"]).unwrap_or(0).max(0),
            currency: str_at(o, &["currency"])
                .unwrap_or_else(|| "eur".into())
                .to_ascii_lowercase(),
            status: str_at(o, &["status"]),
            period_start: line_period("start").or_else(|| int_at(o, &["period_start"])),
            period_end: line_period("end").or_else(|| int_at(o, &["period_end"])),
            hosted_invoice_url: str_at(o, &["hosted_invoice_url"]),
            invoice_pdf: str_at(o, &["invoice_pdf"]),
            charge: id_at(o, &["charge"]).or_else(|| payment.and_then(|p| id_at(p, &["charge"]))),
            payment_intent: id_at(o, &["payment_intent"])
                .or_else(|| payment.and_then(|p| id_at(p, &["payment_intent"]))),
            created: int_at(o, &["created"]),
            metadata_tenant_id: str_at(o, &["metadata", "tenant_id"])
                .or_else(|| {
                    str_at(
                        o,
                        &["parent", "subscription_details", "metadata", "tenant_id"],
                    )
                })
                .or_else(|| str_at(o, &["subscription_details", "metadata", "tenant_id"])),
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Refund {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    pub status: String,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Charge {
    pub id: String,
    pub customer: Option<String>,
    pub payment_intent: Option<String>,
    pub invoice: Option<String>,
    pub amount: i64,
    pub amount_refunded: i64,
    pub currency: String,
    pub refunds: Vec<Refund>,
}

impl Charge {
    pub fn from_object(o: &Value) -> Result<Charge, String> {
        let currency = str_at(o, &["currency"])
            .unwrap_or_else(|| "eur".into())
            .to_ascii_lowercase();
        let refunds = list_at(o, &["refunds"])
            .iter()
            .filter_map(|r| {
                Some(Refund {
                    id: str_at(r, &["id"])?,
                    amount: int_at(r, &["amount"]).unwrap_or(0).max(0),
                    currency: str_at(r, &["currency"]).unwrap_or_else(|| currency.clone()),
                    status: str_at(r, &["status"]).unwrap_or_else(|| "succeeded".into()),
                    reason: str_at(r, &["reason"]),
                })
            })
            .collect();
        Ok(Charge {
            id: required(o, "charge")?,
            customer: id_at(o, &["customer"]),
            payment_intent: id_at(o, &["payment_intent"]),
            invoice: id_at(o, &["invoice"]),
            amount: int_at(o, &["amount"]).unwrap_or(0).max(0),
            amount_refunded: int_at(o, &["amount_refunded"]).unwrap_or(0).max(0),
            currency,
            refunds,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Decisions

/// What a decision does with an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision<T> {
    Apply(T),
    /// Older than what the tenant already reflects: stored `stale`, nothing changes.
    Stale(String),
    /// Not applicable (unknown price, tenant or customer, another type): stored `ignored`.
    Ignored(String),
}

/// What the tenant row says about its billing now.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TenantBilling {
    pub tenant_id: String,
    pub plan: Plan,
    pub subscription_status: Option<String>,
    pub stripe_customer_id: Option<String>,
    pub stripe_subscription_id: Option<String>,
    pub billing_event_created: Option<i64>,
}

/// Subscription statuses after which the tenant is back on `free`.
pub const ENDED: [&str; 3] = ["canceled", "unpaid", "incomplete_expired"];

/// Whether a subscription status no longer pays for a plan.
pub fn ended(status: &str) -> bool {
    ENDED.contains(&status)
}

/// The tenant columns a subscription event sets.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionChange {
    pub tenant_id: String,
    pub plan: Plan,
    pub previous_plan: Plan,
    pub status: String,
    pub status_changed: bool,
    pub customer: Option<String>,
    pub subscription_id: String,
    pub price_id: Option<String>,
    /// Minor units per billing interval, as Stripe bills the price (times quantity).
    pub unit_amount: Option<i64>,
    pub currency: Option<String>,
    /// `month`, `year`, … with its count when not 1 (`3 month`).
    pub interval: Option<String>,
    /// Major units per month: what the dashboard's MRR sums (0 once ended).
    pub monthly_amount: f64,
    pub period_start: Option<String>,
    pub period_end: Option<String>,
    pub cancel_at_period_end: bool,
    pub created: i64,
}

impl SubscriptionChange {
    pub fn plan_changed(&self) -> bool {
        self.plan != self.previous_plan
    }
}

/// Currencies without minor units (Stripe's list).
const ZERO_DECIMAL: [&str; 16] = [
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
];

/// Minor units to major units in `currency`.
pub fn major_units(minor: i64, currency: &str) -> f64 {
    if ZERO_DECIMAL.contains(&currency.to_ascii_lowercase().as_str()) {
        minor as f64
    } else {
        minor as f64 / 100.0
    }
}

/// An item's monthly equivalent in major units: amount × quantity over its interval
/// (a year is 12 months, a week 12/52 of one, a day 12/365), rounded to the cent.
pub fn monthly_equivalent(item: &Item, fallback_currency: &str) -> f64 {
    let amount = item.unit_amount.unwrap_or(0) * item.quantity;
    let currency = item.currency.as_deref().unwrap_or(fallback_currency);
    let per_interval = major_units(amount, currency);
    let months = match item.interval.as_deref() {
        Some("year") => 12.0,
        Some("week") => 12.0 / 52.0,
        Some("day") => 12.0 / 365.0,
        _ => 1.0,
    } * item.interval_count.max(1) as f64;
    (per_interval / months * 100.0).round() / 100.0
}

fn seconds_to_text(secs: Option<i64>) -> Option<String> {
    secs.map(|s| clock::rfc3339(s.saturating_mul(1000)))
}

/// A subscription event (`created` is the event's) over the tenant it names, if known.
pub fn decide_subscription(
    created: i64,
    kind: &str,
    sub: &Subscription,
    tenant: Option<&TenantBilling>,
    stripe: &Stripe,
) -> Decision<SubscriptionChange> {
    let Some(t) = tenant else {
        return Decision::Ignored(format!(
            "unknown customer: no tenant has Stripe customer {} (and metadata.tenant_id names none)",
            sub.customer.as_deref().unwrap_or("(none)")
        ));
    };
    if t.plan == Plan::Platform {
        return Decision::Ignored("the operator's own tenant is not billed through Stripe".into());
    }
    if let Some(last) = t.billing_event_created {
        if created < last {
            return Decision::Stale(format!(
                "event created at {created} is older than the last applied subscription event ({last})"
            ));
        }
    }
    if let (Some(current), Some(status)) = (&t.stripe_subscription_id, &t.subscription_status) {
        if *current != sub.id && !ended(status) {
            return Decision::Ignored(format!(
                "subscription {} is not the tenant's current subscription {current}",
                sub.id
            ));
        }
    }
    let status = if kind == "customer.subscription.deleted" && !ended(&sub.status) {
        "canceled".to_string()
    } else {
        sub.status.clone()
    };
    let priced = sub.items.iter().find_map(|i| {
        let plan = stripe.plan_of(i.price_id.as_deref()?)?;
        Some((plan, i))
    });
    let first = sub.items.first();
    let (plan, item) = if ended(&status) {
        (Plan::Free, priced.map(|(_, i)| i).or(first))
    } else {
        match priced {
            Some((plan, item)) => (plan, Some(item)),
            None => {
                return Decision::Ignored(format!(
                    "unknown price: {} is not configured for any plan (STRIPE_PRICE_<PLAN>)",
                    first
                        .and_then(|i| i.price_id.as_deref())
                        .unwrap_or("(no price)")
                ))
            }
        }
    };
    let currency = item
        .and_then(|i| i.currency.clone())
        .or_else(|| sub.currency.clone())
        .map(|c| c.to_ascii_lowercase());
    let monthly_amount = if ended(&status) {
        0.0
    } else {
        let fallback = currency.as_deref().unwrap_or("eur");
        let sum: f64 = sub
            .items
            .iter()
            .map(|i| monthly_equivalent(i, fallback))
            .sum();
        (sum * 100.0).round() / 100.0
    };
    let (start, end) = sub.period();
    Decision::Apply(SubscriptionChange {
        tenant_id: t.tenant_id.clone(),
        plan,
        previous_plan: t.plan,
        status_changed: t.subscription_status.as_deref() != Some(status.as_str()),
        status,
        customer: sub
            .customer
            .clone()
            .or_else(|| t.stripe_customer_id.clone()),
        subscription_id: sub.id.clone(),
        price_id: item.and_then(|i| i.price_id.clone()),
        unit_amount: item.and_then(|i| i.unit_amount.map(|a| a * i.quantity)),
        currency,
        interval: item.and_then(|i| {
            let interval = i.interval.clone()?;
            Some(if i.interval_count > 1 {
                format!("{} {interval}", i.interval_count)
            } else {
                interval
            })
        }),
        monthly_amount,
        period_start: seconds_to_text(start),
        period_end: seconds_to_text(end),
        cancel_at_period_end: sub.cancel_at_period_end,
        created,
    })
}

/// Links a tenant to the customer and subscription its Checkout Session created.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckoutLink {
    pub tenant_id: String,
    pub customer: String,
    pub subscription: Option<String>,
}

/// `tenant`: the tenant the session names (client_reference_id / metadata), if it exists;
/// `customer_owner`: the tenant that already has the session's customer, if any.
pub fn decide_checkout(
    session: &CheckoutSession,
    tenant: Option<&TenantBilling>,
    customer_owner: Option<&str>,
) -> Decision<CheckoutLink> {
    if session.mode.as_deref() != Some("subscription") {
        return Decision::Ignored(format!(
            "checkout session mode {} is not a subscription",
            session.mode.as_deref().unwrap_or("(none)")
        ));
    }
    let Some(t) = tenant else {
        return Decision::Ignored(format!(
            "unknown tenant: {} (client_reference_id / metadata.tenant_id)",
            session.tenant_hint().unwrap_or("(none)")
        ));
    };
    let Some(customer) = session.customer.clone() else {
        return Decision::Ignored("the checkout session has no customer".into());
    };
    if let Some(owner) = customer_owner.filter(|o| *o != t.tenant_id) {
        return Decision::Ignored(format!(
            "customer {customer} already belongs to tenant {owner}"
        ));
    }
    if let Some(existing) = t
        .stripe_customer_id
        .as_deref()
        .filter(|c| *c != customer.as_str())
    {
        return Decision::Ignored(format!(
            "the tenant is already Stripe customer {existing}, not {customer}"
        ));
    }
    Decision::Apply(CheckoutLink {
        tenant_id: t.tenant_id.clone(),
        customer,
        subscription: session.subscription.clone(),
    })
}

/// A payment's (invoice's) status. It only moves forward: `rank` orders the states, and a
/// move to a lower or equal rank keeps the current one.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Open,
    Failed,
    Paid,
    Void,
    PartiallyRefunded,
    Refunded,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 6] = [
        PaymentStatus::Open,
        PaymentStatus::Failed,
        PaymentStatus::Paid,
        PaymentStatus::Void,
        PaymentStatus::PartiallyRefunded,
        PaymentStatus::Refunded,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Open => "open",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Paid => "paid",
            PaymentStatus::Void => "void",
            PaymentStatus::PartiallyRefunded => "partially_refunded",
            PaymentStatus::Refunded => "refunded",
        }
    }

    pub fn parse(s: &str) -> Option<PaymentStatus> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// open < failed (a retry may still succeed) < paid = void (both final for the invoice)
    /// < partially_refunded < refunded.
    pub fn rank(self) -> u8 {
        match self {
            PaymentStatus::Open => 0,
            PaymentStatus::Failed => 1,
            PaymentStatus::Paid | PaymentStatus::Void => 2,
            PaymentStatus::PartiallyRefunded => 3,
            PaymentStatus::Refunded => 4,
        }
    }

    /// The status after `incoming` is reported on a payment that is `current`.
    pub fn advance(current: Option<PaymentStatus>, incoming: PaymentStatus) -> PaymentStatus {
        match current {
            Some(c) if incoming.rank() <= c.rank() => c,
            _ => incoming,
        }
    }

    /// `rank` as a SQL expression over `column` (for the upsert's guard: the same table).
    pub fn sql_rank(column: &str) -> String {
        let arms: String = Self::ALL
            .iter()
            .map(|s| format!(" WHEN '{}' THEN {}", s.as_str(), s.rank()))
            .collect();
        format!("(CASE {column}{arms} ELSE 0 END)")
    }

    /// The status an invoice event reports.
    pub fn of_invoice_event(kind: &str) -> Option<PaymentStatus> {
        Some(match kind {
            "invoice.paid" => PaymentStatus::Paid,
            "invoice.payment_failed" => PaymentStatus::Failed,
            "invoice.finalized" => PaymentStatus::Open,
            "invoice.voided" => PaymentStatus::Void,
            _ => return None,
        })
    }
}

/// The payment row an invoice event upserts.
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentUpsert {
    pub tenant_id: String,
    pub invoice: Invoice,
    /// What the event reports; the row keeps a higher-ranked status it already has.
    pub reported: PaymentStatus,
    pub status: PaymentStatus,
    pub period_start: Option<String>,
    pub period_end: Option<String>,
}

/// An invoice event over the tenant of its customer and the payment row it may already have.
pub fn decide_invoice(
    kind: &str,
    invoice: &Invoice,
    tenant: Option<&TenantBilling>,
    current: Option<PaymentStatus>,
) -> Decision<PaymentUpsert> {
    let Some(reported) = PaymentStatus::of_invoice_event(kind) else {
        return Decision::Ignored(format!("{kind} is not an invoice event this API handles"));
    };
    let Some(t) = tenant else {
        return Decision::Ignored(format!(
            "unknown customer: no tenant has Stripe customer {}",
            invoice.customer.as_deref().unwrap_or("(none)")
        ));
    };
    Decision::Apply(PaymentUpsert {
        tenant_id: t.tenant_id.clone(),
        invoice: invoice.clone(),
        reported,
        status: PaymentStatus::advance(current, reported),
        period_start: seconds_to_text(invoice.period_start),
        period_end: seconds_to_text(invoice.period_end),
    })
}

/// The payment a charge belongs to, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct PaymentSnapshot {
    pub id: String,
    pub tenant_id: String,
    pub amount_paid: i64,
    pub amount_refunded: i64,
    pub status: PaymentStatus,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RefundChange {
    pub payment_id: String,
    pub tenant_id: String,
    pub charge_id: String,
    pub amount_refunded: i64,
    pub status: PaymentStatus,
    pub refunds: Vec<Refund>,
}

/// `charge.refunded` over the payment of its invoice: refunded amounts only grow, and the
/// status moves paid → partially_refunded → refunded.
pub fn decide_refund(charge: &Charge, payment: Option<&PaymentSnapshot>) -> Decision<RefundChange> {
    let Some(p) = payment else {
        return Decision::Ignored(format!(
            "no payment matches charge {} (its invoice has not been seen)",
            charge.id
        ));
    };
    let refunded = charge.amount_refunded.max(p.amount_refunded);
    let paid = if p.amount_paid > 0 {
        p.amount_paid
    } else {
        charge.amount
    };
    let reported = if refunded <= 0 {
        PaymentStatus::Paid
    } else if refunded >= paid {
        PaymentStatus::Refunded
    } else {
        PaymentStatus::PartiallyRefunded
    };
    Decision::Apply(RefundChange {
        payment_id: p.id.clone(),
        tenant_id: p.tenant_id.clone(),
        charge_id: charge.id.clone(),
        amount_refunded: refunded,
        status: PaymentStatus::advance(Some(p.status), reported),
        refunds: charge.refunds.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/stripe/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn event(name: &str) -> Event {
        parse_event(&fixture(name)).unwrap()
    }

    fn stripe() -> Stripe {
        Stripe {
            api_base: "https://api.stripe.com".into(),
            secret_key: None,
            webhook_secrets: vec!["whsec_a".into()],
            webhook_tolerance_secs: 300,
            prices: vec![
                (Plan::Starter, "price_test_starter".into()),
                (Plan::Pro, "price_test_pro".into()),
            ],
        }
    }

    fn tenant() -> TenantBilling {
        TenantBilling {
            tenant_id: "ten_1".into(),
            plan: Plan::Free,
            ..Default::default()
        }
    }

    // Signatures ------------------------------------------------------------------------------

    const SECRET: &str = "whsec_test_secret";

    #[test]
    fn signs_like_stripe() {
        // Computed independently (Python's hmac over b'1700000000.{"id":"evt_1"}').
        assert_eq!(
            sign(SECRET, 1_700_000_000, br#"{"id":"evt_1"}"#),
            "248a374f50f943a28b0f6ab50faf9a7e7e29b710fa26df9fb1618b9bf8ea9c9a"
        );
        assert_eq!(sign(SECRET, 1, b"x").len(), 64);
        assert_ne!(sign(SECRET, 1, b"x"), sign(SECRET, 2, b"x"));
        assert_ne!(sign(SECRET, 1, b"x"), sign("whsec_other", 1, b"x"));
    }

    #[test]
    fn a_valid_signature_within_tolerance_verifies() {
        let body = fixture("invoice_paid");
        let t = 1_800_000_000;
        let header = format!("t={t},v1={}", sign(SECRET, t, &body));
        let secrets = vec![SECRET.to_string()];
        assert_eq!(verify(Some(&header), &body, &secrets, 300, t + 299), Ok(t));
        assert_eq!(verify(Some(&header), &body, &secrets, 300, t - 300), Ok(t));
    }

    #[test]
    fn any_v1_under_any_secret_may_match() {
        let body = b"{}";
        let t = 1_800_000_000;
        let good = sign("whsec_old", t, body);
        let header = format!(
            "t={t}, v1={}, v0=abc, v1={good}",
            sign("whsec_unknown", t, body)
        );
        let secrets = vec!["whsec_new".to_string(), "whsec_old".to_string()];
        assert_eq!(verify(Some(&header), body, &secrets, 300, t), Ok(t));
        let upper = format!("t={t},v1={}", good.to_ascii_uppercase());
        assert_eq!(verify(Some(&upper), body, &secrets, 300, t), Ok(t));
    }

    #[test]
    fn missing_malformed_bad_and_stale_signatures_are_refused() {
        let body = b"{\"id\":\"evt_1\"}";
        let t = 1_800_000_000;
        let secrets = vec![SECRET.to_string()];
        let v1 = sign(SECRET, t, body);
        let check = |h: Option<&str>, now: i64| verify(h, body, &secrets, 300, now);
        assert_eq!(check(None, t), Err(SignatureError::Missing));
        assert_eq!(check(Some("  "), t), Err(SignatureError::Missing));
        assert_eq!(
            check(Some(&format!("v1={v1}")), t),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            check(Some(&format!("t={t}")), t),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            check(Some(&format!("t=soon,v1={v1}")), t),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            check(Some(&format!("t={t},v0={v1}")), t),
            Err(SignatureError::Malformed)
        );
        // Another body, timestamp or secret.
        assert_eq!(
            check(Some(&format!("t={},v1={v1}", t + 1)), t),
            Err(SignatureError::Mismatch)
        );
        let other = sign("whsec_nope", t, body);
        assert_eq!(
            check(Some(&format!("t={t},v1={other}")), t),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&format!("t={t},v1={v1}")), b"{}", &secrets, 300, t),
            Err(SignatureError::Mismatch)
        );
        // A valid HMAC with a stale (or future) timestamp.
        let header = format!("t={t},v1={v1}");
        assert_eq!(check(Some(&header), t + 301), Err(SignatureError::Stale));
        assert_eq!(check(Some(&header), t - 301), Err(SignatureError::Stale));
        // No secret configured: nothing verifies.
        assert_eq!(
            verify(Some(&header), body, &[], 300, t),
            Err(SignatureError::Mismatch)
        );
    }

    // Envelope and objects ----------------------------------------------------------------------

    #[test]
    fn the_envelope_needs_id_type_created_and_an_object() {
        let e = event("checkout_session_completed");
        assert_eq!(e.kind, "checkout.session.completed");
        assert!(e.id.starts_with("evt_"));
        assert!(e.created > 1_700_000_000);
        for bad in [
            &b"not json"[..],
            br#"{"type":"x","created":1,"data":{"object":{}}}"#,
            br#"{"id":"evt 1","type":"x","created":1,"data":{"object":{}}}"#,
            br#"{"id":"evt_1","created":1,"data":{"object":{}}}"#,
            br#"{"id":"evt_1","type":"X Y","created":1,"data":{"object":{}}}"#,
            br#"{"id":"evt_1","type":"x","data":{"object":{}}}"#,
            br#"{"id":"evt_1","type":"x","created":1,"data":{}}"#,
        ] {
            assert!(
                parse_event(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn a_checkout_session_names_tenant_customer_and_subscription() {
        let s = CheckoutSession::from_object(&event("checkout_session_completed").object).unwrap();
        assert_eq!(s.customer.as_deref(), Some("cus_QvXmT1cPz8Hh3k"));
        assert_eq!(
            s.subscription.as_deref(),
            Some("sub_1QxYz2LkdIwHu7ixC9Jt0aBc")
        );
        assert_eq!(s.client_reference_id.as_deref(), Some("ten_fixture"));
        assert_eq!(s.metadata_tenant_id.as_deref(), Some("ten_fixture"));
        assert_eq!(s.mode.as_deref(), Some("subscription"));
        assert_eq!(s.tenant_hint(), Some("ten_fixture"));
    }

    #[test]
    fn subscriptions_read_item_periods_and_fall_back_to_top_level_ones() {
        let new = Subscription::from_object(&event("subscription_created").object).unwrap();
        assert_eq!(new.status, "active");
        assert_eq!(new.customer.as_deref(), Some("cus_QvXmT1cPz8Hh3k"));
        assert_eq!(new.items.len(), 1);
        let item = &new.items[0];
        assert_eq!(item.price_id.as_deref(), Some("price_test_pro"));
        assert_eq!(item.unit_amount, Some(4900));
        assert_eq!(
            (item.interval.as_deref(), item.interval_count, item.quantity),
            (Some("month"), 1, 1)
        );
        assert_eq!(new.period(), (Some(1_764_633_600), Some(1_767_312_000)));
        assert_eq!(new.metadata_tenant_id.as_deref(), Some("ten_fixture"));

        let old = Subscription::from_object(&event("subscription_updated_legacy").object).unwrap();
        assert_eq!(old.items[0].current_period_start, None);
        assert_eq!(old.period(), (Some(1_735_689_600), Some(1_767_225_600)));
        assert_eq!(old.items[0].interval.as_deref(), Some("year"));
        assert!(old.cancel_at_period_end);
    }

    #[test]
    fn invoices_read_both_payment_shapes_and_periods() {
        let new = Invoice::from_object(&event("invoice_paid").object).unwrap();
        assert_eq!(new.id, "in_1QxZa3LkdIwHu7ixkL2m9PqR");
        assert_eq!(new.number.as_deref(), Some("A1B2C3D4-0001"));
        assert_eq!((new.amount_due, new.amount_paid), (4900, 4900));
        assert_eq!(new.currency, "eur");
        assert_eq!(
            new.subscription.as_deref(),
            Some("sub_1QxYz2LkdIwHu7ixC9Jt0aBc")
        );
        assert_eq!(
            new.payment_intent.as_deref(),
            Some("pi_3QxZa4LkdIwHu7ix0abc1234")
        );
        assert_eq!(new.charge, None);
        assert_eq!(
            (new.period_start, new.period_end),
            (Some(1_764_633_600), Some(1_767_312_000))
        );
        assert!(new
            .hosted_invoice_url
            .unwrap()
            .starts_with("https://invoice.stripe.com/"));
        assert!(new.invoice_pdf.unwrap().contains("/pdf"));

        let old = Invoice::from_object(&event("invoice_payment_failed_legacy").object).unwrap();
        assert_eq!(old.charge.as_deref(), Some("ch_3PqRs1LkdIwHu7ix1def5678"));
        assert_eq!(
            old.payment_intent.as_deref(),
            Some("pi_3PqRs1LkdIwHu7ix1def5678")
        );
        assert_eq!(
            old.subscription.as_deref(),
            Some("sub_1QxYz2LkdIwHu7ixC9Jt0aBc")
        );
        assert_eq!(old.amount_paid, 0);
        // No lines: the top-level period.
        assert_eq!(
            (old.period_start, old.period_end),
            (Some(1_762_041_600), Some(1_764_633_600))
        );
    }

    #[test]
    fn charges_read_amounts_and_refunds() {
        let c = Charge::from_object(&event("charge_refunded").object).unwrap();
        assert_eq!(c.id, "ch_3QxZa4LkdIwHu7ix0abc1234");
        assert_eq!(
            c.payment_intent.as_deref(),
            Some("pi_3QxZa4LkdIwHu7ix0abc1234")
        );
        assert_eq!((c.amount, c.amount_refunded), (4900, 1500));
        assert_eq!(c.refunds.len(), 1);
        assert_eq!(c.refunds[0].id, "re_3QxZb5LkdIwHu7ix0xyz9876");
        assert_eq!(c.refunds[0].amount, 1500);
        assert_eq!(
            c.refunds[0].reason.as_deref(),
            Some("requested_by_customer")
        );
        assert_eq!(c.refunds[0].status, "succeeded");
    }

    // Subscription decisions ---------------------------------------------------------------------

    fn sub(name: &str) -> (i64, String, Subscription) {
        let e = event(name);
        (
            e.created,
            e.kind.clone(),
            Subscription::from_object(&e.object).unwrap(),
        )
    }

    #[test]
    fn a_known_price_moves_the_tenant_to_its_plan_with_the_monthly_amount() {
        let (created, kind, s) = sub("subscription_created");
        let Decision::Apply(c) =
            decide_subscription(created, &kind, &s, Some(&tenant()), &stripe())
        else {
            panic!("applies");
        };
        assert_eq!((c.plan, c.previous_plan), (Plan::Pro, Plan::Free));
        assert!(c.plan_changed() && c.status_changed);
        assert_eq!(c.status, "active");
        assert_eq!(c.monthly_amount, 49.0);
        assert_eq!(c.unit_amount, Some(4900));
        assert_eq!(c.interval.as_deref(), Some("month"));
        assert_eq!(c.period_start.as_deref(), Some("2025-12-02T00:00:00.000Z"));
        assert_eq!(c.period_end.as_deref(), Some("2026-01-02T00:00:00.000Z"));
        assert_eq!(c.subscription_id, "sub_1QxYz2LkdIwHu7ixC9Jt0aBc");
        assert_eq!(c.customer.as_deref(), Some("cus_QvXmT1cPz8Hh3k"));
        assert_eq!(c.created, created);
    }

    #[test]
    fn yearly_prices_count_as_a_twelfth_per_month_times_quantity_over_interval_count() {
        let (created, kind, s) = sub("subscription_updated_legacy");
        let Decision::Apply(c) =
            decide_subscription(created, &kind, &s, Some(&tenant()), &stripe())
        else {
            panic!("applies");
        };
        // 2 seats × 470.00 a year.
        assert_eq!(c.plan, Plan::Starter);
        assert_eq!(c.monthly_amount, 78.33);
        assert_eq!(c.unit_amount, Some(94_000));
        assert!(c.cancel_at_period_end);
        let item = |interval: &str, count: i64, quantity: i64| Item {
            price_id: None,
            unit_amount: Some(12_000),
            currency: Some("eur".into()),
            interval: Some(interval.into()),
            interval_count: count,
            quantity,
            current_period_start: None,
            current_period_end: None,
        };
        assert_eq!(monthly_equivalent(&item("month", 3, 1), "eur"), 40.0);
        assert_eq!(monthly_equivalent(&item("year", 1, 3), "eur"), 30.0);
        assert_eq!(monthly_equivalent(&item("week", 1, 1), "eur"), 520.0);
        let mut yen = item("month", 1, 1);
        yen.currency = Some("jpy".into());
        assert_eq!(monthly_equivalent(&yen, "eur"), 12_000.0);
    }

    #[test]
    fn an_older_event_is_stale_and_the_same_one_again_applies_the_same() {
        let (created, kind, s) = sub("subscription_created");
        let mut t = tenant();
        t.billing_event_created = Some(created + 1);
        assert!(matches!(
            decide_subscription(created, &kind, &s, Some(&t), &stripe()),
            Decision::Stale(_)
        ));
        t.billing_event_created = Some(created);
        t.plan = Plan::Pro;
        t.subscription_status = Some("active".into());
        t.stripe_subscription_id = Some(s.id.clone());
        let Decision::Apply(c) = decide_subscription(created, &kind, &s, Some(&t), &stripe())
        else {
            panic!("a replay applies");
        };
        assert!(!c.plan_changed() && !c.status_changed);
    }

    #[test]
    fn deleted_unpaid_and_incomplete_expired_go_back_to_free() {
        let (created, kind, s) = sub("subscription_deleted");
        let mut t = tenant();
        t.plan = Plan::Pro;
        t.stripe_subscription_id = Some(s.id.clone());
        t.subscription_status = Some("active".into());
        let Decision::Apply(c) = decide_subscription(created, &kind, &s, Some(&t), &stripe())
        else {
            panic!("applies");
        };
        assert_eq!((c.plan, c.status.as_str()), (Plan::Free, "canceled"));
        assert_eq!(c.monthly_amount, 0.0);
        for status in ["unpaid", "incomplete_expired"] {
            let (created, _, mut s) = sub("subscription_created");
            s.status = status.into();
            let Decision::Apply(c) = decide_subscription(
                created,
                "customer.subscription.updated",
                &s,
                Some(&t),
                &stripe(),
            ) else {
                panic!("applies");
            };
            assert_eq!(c.plan, Plan::Free, "{status}");
            assert_eq!(c.status, status);
        }
        // past_due keeps the plan (Stripe is still retrying).
        let (created, _, mut s) = sub("subscription_created");
        s.status = "past_due".into();
        let Decision::Apply(c) = decide_subscription(
            created,
            "customer.subscription.updated",
            &s,
            Some(&t),
            &stripe(),
        ) else {
            panic!("applies");
        };
        assert_eq!((c.plan, c.status.as_str()), (Plan::Pro, "past_due"));
    }

    #[test]
    fn unknown_prices_tenants_and_foreign_subscriptions_are_ignored() {
        let (created, kind, mut s) = sub("subscription_created");
        assert!(matches!(
            decide_subscription(created, &kind, &s, None, &stripe()),
            Decision::Ignored(why) if why.starts_with("unknown customer")
        ));
        let mut platform = tenant();
        platform.plan = Plan::Platform;
        assert!(matches!(
            decide_subscription(created, &kind, &s, Some(&platform), &stripe()),
            Decision::Ignored(_)
        ));
        let mut other = tenant();
        other.stripe_subscription_id = Some("sub_other".into());
        other.subscription_status = Some("active".into());
        assert!(matches!(
            decide_subscription(created, &kind, &s, Some(&other), &stripe()),
            Decision::Ignored(why) if why.contains("not the tenant's current subscription")
        ));
        // Once the other one ended, a new subscription takes over.
        other.subscription_status = Some("canceled".into());
        assert!(matches!(
            decide_subscription(created, &kind, &s, Some(&other), &stripe()),
            Decision::Apply(_)
        ));
        s.items[0].price_id = Some("price_somebody_elses".into());
        assert!(matches!(
            decide_subscription(created, &kind, &s, Some(&tenant()), &stripe()),
            Decision::Ignored(why) if why.contains("price_somebody_elses")
        ));
    }

    // Checkout ---------------------------------------------------------------------------------

    #[test]
    fn checkout_links_the_named_tenant_to_its_customer() {
        let s = CheckoutSession::from_object(&event("checkout_session_completed").object).unwrap();
        let t = tenant();
        assert_eq!(
            decide_checkout(&s, Some(&t), None),
            Decision::Apply(CheckoutLink {
                tenant_id: "ten_1".into(),
                customer: "cus_QvXmT1cPz8Hh3k".into(),
                subscription: Some("sub_1QxYz2LkdIwHu7ixC9Jt0aBc".into()),
            })
        );
        assert!(matches!(
            decide_checkout(&s, Some(&t), Some("ten_1")),
            Decision::Apply(_)
        ));
        assert!(matches!(
            decide_checkout(&s, None, None),
            Decision::Ignored(_)
        ));
        assert!(matches!(
            decide_checkout(&s, Some(&t), Some("ten_2")),
            Decision::Ignored(_)
        ));
        let mut other = t.clone();
        other.stripe_customer_id = Some("cus_other".into());
        assert!(matches!(
            decide_checkout(&s, Some(&other), None),
            Decision::Ignored(_)
        ));
        let mut payment = s.clone();
        payment.mode = Some("payment".into());
        assert!(matches!(
            decide_checkout(&payment, Some(&t), None),
            Decision::Ignored(_)
        ));
    }

    // Payments -----------------------------------------------------------------------------------

    #[test]
    fn invoice_status_only_moves_forward() {
        use PaymentStatus::*;
        assert_eq!(PaymentStatus::advance(None, Failed), Failed);
        assert_eq!(PaymentStatus::advance(Some(Open), Paid), Paid);
        assert_eq!(PaymentStatus::advance(Some(Failed), Paid), Paid);
        assert_eq!(PaymentStatus::advance(Some(Paid), Failed), Paid);
        assert_eq!(PaymentStatus::advance(Some(Paid), Open), Paid);
        assert_eq!(PaymentStatus::advance(Some(Paid), Void), Paid);
        assert_eq!(PaymentStatus::advance(Some(Void), Paid), Void);
        assert_eq!(
            PaymentStatus::advance(Some(Paid), PartiallyRefunded),
            PartiallyRefunded
        );
        assert_eq!(
            PaymentStatus::advance(Some(PartiallyRefunded), Paid),
            PartiallyRefunded
        );
        assert_eq!(
            PaymentStatus::advance(Some(PartiallyRefunded), Refunded),
            Refunded
        );
        assert_eq!(
            PaymentStatus::advance(Some(Refunded), PartiallyRefunded),
            Refunded
        );
        for s in PaymentStatus::ALL {
            assert_eq!(PaymentStatus::parse(s.as_str()), Some(s));
        }
        let sql = PaymentStatus::sql_rank("payments.status");
        for s in PaymentStatus::ALL {
            assert!(
                sql.contains(&format!("WHEN '{}' THEN {}", s.as_str(), s.rank())),
                "{sql}"
            );
        }
    }

    #[test]
    fn invoice_events_upsert_the_customers_payment() {
        let e = event("invoice_paid");
        let inv = Invoice::from_object(&e.object).unwrap();
        let t = tenant();
        let Decision::Apply(p) = decide_invoice(&e.kind, &inv, Some(&t), None) else {
            panic!("applies");
        };
        assert_eq!(
            (p.reported, p.status),
            (PaymentStatus::Paid, PaymentStatus::Paid)
        );
        assert_eq!(p.period_start.as_deref(), Some("2025-12-02T00:00:00.000Z"));
        let Decision::Apply(p) = decide_invoice(
            "invoice.payment_failed",
            &inv,
            Some(&t),
            Some(PaymentStatus::Paid),
        ) else {
            panic!("applies");
        };
        assert_eq!(
            (p.reported, p.status),
            (PaymentStatus::Failed, PaymentStatus::Paid)
        );
        assert!(matches!(
            decide_invoice(&e.kind, &inv, None, None),
            Decision::Ignored(_)
        ));
        assert!(matches!(
            decide_invoice("invoice.created", &inv, Some(&t), None),
            Decision::Ignored(_)
        ));
        assert_eq!(
            PaymentStatus::of_invoice_event("invoice.voided"),
            Some(PaymentStatus::Void)
        );
        assert_eq!(
            PaymentStatus::of_invoice_event("invoice.finalized"),
            Some(PaymentStatus::Open)
        );
    }

    #[test]
    fn refunds_move_paid_to_partially_refunded_to_refunded() {
        let c = Charge::from_object(&event("charge_refunded").object).unwrap();
        let mut p = PaymentSnapshot {
            id: "pay_1".into(),
            tenant_id: "ten_1".into(),
            amount_paid: 4900,
            amount_refunded: 0,
            status: PaymentStatus::Paid,
        };
        let Decision::Apply(r) = decide_refund(&c, Some(&p)) else {
            panic!("applies");
        };
        assert_eq!(
            (r.amount_refunded, r.status),
            (1500, PaymentStatus::PartiallyRefunded)
        );
        assert_eq!(r.refunds.len(), 1);
        let mut full = c.clone();
        full.amount_refunded = 4900;
        let Decision::Apply(r) = decide_refund(&full, Some(&p)) else {
            panic!("applies");
        };
        assert_eq!(r.status, PaymentStatus::Refunded);
        // An older partial refund event after the full one changes nothing.
        p.amount_refunded = 4900;
        p.status = PaymentStatus::Refunded;
        let Decision::Apply(r) = decide_refund(&c, Some(&p)) else {
            panic!("applies");
        };
        assert_eq!(
            (r.amount_refunded, r.status),
            (4900, PaymentStatus::Refunded)
        );
        assert!(matches!(decide_refund(&c, None), Decision::Ignored(_)));
    }

    #[test]
    fn every_handled_type_is_unique() {
        let mut types = HANDLED.to_vec();
        types.sort_unstable();
        types.dedup();
        assert_eq!(types.len(), HANDLED.len());
    }
}

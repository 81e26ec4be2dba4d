//! Stripe's events in: `POST /webhooks/stripe` verifies the signature on the raw body, stores
//! the event keyed by its id (a redelivery is a no-op) and queues it through the outbox in the
//! same D1 batch; the jobs Worker's consumer (`process`) leases the row, applies the pure
//! decision of `billing::stripe` in one batch (tenant, payments, refunds, the event's outcome)
//! and invalidates the tenant's gate when its plan or status changed. The platform admin lists,
//! reads and replays the stored events.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;
use worker::{D1PreparedStatement, Env};

use super::stripe::{
    self, CheckoutSession, Decision, Invoice, PaymentSnapshot, PaymentStatus, Subscription,
    TenantBilling,
};
use crate::args;
use crate::audit;
use crate::auth::gate::{self, Scope};
use crate::handler;
use crate::http::context::Ctx;
use crate::http::pagination::PAGING;
use crate::http::reply::Reply;
use crate::http::router::{q, q_enum, Access, QueryDoc, Route};
use crate::platform::config::Config;
use crate::platform::db::{Arg, Db, Filter};
use crate::platform::egress::backoff_secs;
use crate::platform::error::{AppError, Result};
use crate::platform::lease::{self, Holder, Lease};
use crate::platform::outbox::{self, Staged};
use crate::platform::plan::Plan;
use crate::platform::queue::{DeadLetter, Job, Outcome};
use crate::platform::{clock, ids};

/// A stored event's states (the `stripe_events.status` check).
pub const STATUSES: [&str; 5] = ["received", "processed", "ignored", "stale", "failed"];
/// Claims of one event before it fails with a dead letter.
pub const MAX_ATTEMPTS: i64 = 5;
/// How long a claim holds an event (a few D1 statements and a gate call).
const LEASE_MS: i64 = 60_000;

const LIST_QUERY: [QueryDoc; 5] = [
    PAGING[0],
    PAGING[1],
    q_enum("status", &STATUSES, "Only events in this state."),
    q(
        "type",
        "string",
        "Only events of this Stripe type (`invoice.paid`, …).",
    ),
    q("tenant_id", "string", "Only events applied to this tenant."),
];

pub fn routes() -> Vec<Route> {
    vec![
        Route::post("/api/v1/webhooks/stripe", Access::Public, handler!(receive))
            .doc(
                "webhooks",
                "Stripe's webhook: Stripe-Signature checked on the raw body (401 invalid_signature, nothing stored), the event stored by id (a redelivery is a no-op) and queued, answered 200; 503 billing_unavailable without a webhook secret",
            )
            .body("StripeWebhookEvent")
            .ok("StripeReceipt"),
        Route::get(
            "/api/v1/admin/billing/events",
            Access::PlatformAdmin,
            handler!(list),
        )
        .doc("admin", "Stored Stripe events, newest first, with their outcome")
        .list("BillingEvent")
        .query(&LIST_QUERY),
        Route::get(
            "/api/v1/admin/billing/events/:id",
            Access::PlatformAdmin,
            handler!(get),
        )
        .doc("admin", "One stored Stripe event with its payload")
        .ok("BillingEvent"),
        Route::post(
            "/api/v1/admin/billing/events/:id/replay",
            Access::PlatformAdmin,
            handler!(replay),
        )
        .doc(
            "admin",
            "Process a stored Stripe event again (idempotent: one payment, one plan change)",
        )
        .accepted("BillingEvent"),
    ]
}

/// Stripe's event as posted (documented; the handler reads the signed raw bytes).
#[derive(Debug, Deserialize, ToSchema)]
pub struct StripeWebhookEvent {
    /// `evt_…`
    pub id: String,
    /// `checkout.session.completed`, `customer.subscription.updated`, `invoice.paid`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// Unix seconds.
    pub created: i64,
    /// `{"object": {…}}`: the session, subscription, invoice or charge.
    #[schema(value_type = Object)]
    pub data: Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StripeReceipt {
    pub received: bool,
    /// The event's id.
    pub id: String,
}

/// A stored Stripe event and what processing it did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BillingEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// The event's `created` (Unix seconds).
    pub created: i64,
    /// The tenant it applied to, once known.
    pub tenant_id: Option<String>,
    /// `received`, `processed`, `ignored`, `stale` or `failed`.
    pub status: String,
    /// Why it was ignored, stale or failed.
    pub error: Option<String>,
    pub attempts: i64,
    pub received_at: String,
    pub processed_at: Option<String>,
    /// The event as Stripe signed it (on the single event only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Value>,
}

fn unavailable() -> AppError {
    AppError::refused(
        503,
        "billing_unavailable",
        "Stripe webhooks are not configured (STRIPE_WEBHOOK_SECRET).",
    )
}

/// What the webhook admits, before anything is stored: 503 without a secret, 401 for a
/// missing, bad or stale signature, 400 for a signed body that is not an event.
pub fn admit(
    cfg: &crate::platform::config::Stripe,
    signature: Option<&str>,
    body: &[u8],
    now_secs: i64,
) -> Result<stripe::Event> {
    if cfg.webhook_secrets.is_empty() {
        return Err(unavailable());
    }
    stripe::verify(
        signature,
        body,
        &cfg.webhook_secrets,
        cfg.webhook_tolerance_secs,
        now_secs,
    )
    .map_err(|e| AppError::Unauthorized("invalid_signature", e.detail().into()))?;
    stripe::parse_event(body).map_err(|e| AppError::BadRequest(format!("Not a Stripe event: {e}.")))
}

async fn receive(cx: Ctx) -> Result<Reply> {
    let event = admit(
        &cx.config.stripe,
        cx.header("Stripe-Signature").as_deref(),
        &cx.body,
        cx.now_ms.div_euclid(1000),
    )?;
    // Types this API does not act on are kept, already decided, and not queued.
    let unhandled = (!stripe::HANDLED.contains(&event.kind.as_str()))
        .then(|| format!("{} is not an event type this API handles", event.kind));
    let status = if unhandled.is_some() {
        "ignored"
    } else {
        "received"
    };
    let db = cx.db()?;
    let now = cx.now();
    let insert = db.stmt(
        "INSERT INTO stripe_events (id, type, created, status, error, payload, received_at, processed_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, CASE WHEN ?4 = 'ignored' THEN ?7 END) \
         ON CONFLICT(id) DO NOTHING",
        &args![
            event.id.as_str(),
            event.kind.as_str(),
            event.created,
            status,
            unhandled,
            String::from_utf8_lossy(&cx.body).into_owned(),
            now.as_str()
        ],
    )?;
    if status == "received" {
        let staged = Staged::job(
            &Job::Stripe {
                event_id: event.id.clone(),
            },
            0,
            cx.now_ms,
        )?;
        let changes = db
            .batch(vec![insert, staged.insert_if_applied(&db)?])
            .await?;
        if changes.first().is_some_and(|c| *c > 0) {
            outbox::send_now(&cx.env, &cx.config, &db, &[staged]).await;
        }
    } else {
        db.batch(vec![insert]).await?;
    }
    Reply::ok(&StripeReceipt {
        received: true,
        id: event.id,
    })
}

#[derive(Deserialize)]
struct ListRow {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    created: i64,
    tenant_id: Option<String>,
    status: String,
    error: Option<String>,
    attempts: i64,
    received_at: String,
    processed_at: Option<String>,
    #[serde(default)]
    payload: Option<String>,
}

impl From<ListRow> for BillingEvent {
    fn from(r: ListRow) -> Self {
        BillingEvent {
            id: r.id,
            kind: r.kind,
            created: r.created,
            tenant_id: r.tenant_id,
            status: r.status,
            error: r.error,
            attempts: r.attempts,
            received_at: r.received_at,
            processed_at: r.processed_at,
            payload: r
                .payload
                .map(|p| serde_json::from_str(&p).unwrap_or(Value::String(p))),
        }
    }
}

const COLUMNS: &str =
    "id, type, created, tenant_id, status, error, attempts, received_at, processed_at";

fn event_type(v: &str) -> bool {
    (1..=100).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._".contains(&b))
}

async fn list(cx: Ctx) -> Result<Reply> {
    let page = cx.page()?;
    let status = cx.query_enum("status", &STATUSES)?;
    let kind = cx.query_nonempty("type");
    if kind.is_some_and(|k| !event_type(k)) {
        return Err(AppError::field(
            "type",
            "must be a Stripe event type such as invoice.paid",
        ));
    }
    let tenant = cx.query_nonempty("tenant_id");
    if tenant.is_some_and(|t| !ids::plausible(t)) {
        return Err(AppError::field("tenant_id", "must be a tenant id"));
    }
    let mut f = Filter::new(
        &format!("SELECT {COLUMNS} FROM stripe_events WHERE 1 = 1"),
        Vec::<Arg>::new(),
    );
    f.and_opt("status = ?", status.map(Arg::from))
        .and_opt("type = ?", kind.map(Arg::from))
        .and_opt("tenant_id = ?", tenant.map(Arg::from));
    if let Some((at, id)) = &page.after {
        f.and(
            "(received_at < ? OR (received_at = ? AND id < ?))",
            args![at, at, id],
        );
    }
    f.sql.push_str(&format!(
        " ORDER BY received_at DESC, id DESC LIMIT {}",
        page.fetch()
    ));
    let rows: Vec<ListRow> = cx.db()?.all(&f.sql, &f.args).await?;
    let rows: Vec<BillingEvent> = rows.into_iter().map(Into::into).collect();
    let (rows, next) = page.finish(rows, |e| (e.received_at.clone(), e.id.clone()));
    Reply::list(&rows, next.as_deref())
}

async fn find(db: &Db, id: &str) -> Result<BillingEvent> {
    if !ids::plausible(id) {
        return Err(AppError::NotFound);
    }
    let row: ListRow = db
        .one(
            &format!("SELECT {COLUMNS}, payload FROM stripe_events WHERE id = ?1"),
            &args![id],
        )
        .await?
        .ok_or(AppError::NotFound)?;
    Ok(row.into())
}

async fn get(cx: Ctx) -> Result<Reply> {
    Reply::ok(&find(&cx.db()?, cx.param("id")).await?)
}

async fn replay(cx: Ctx) -> Result<Reply> {
    let db = cx.db()?;
    let event = find(&db, cx.param("id")).await?;
    let staged = Staged::job(
        &Job::Stripe {
            event_id: event.id.clone(),
        },
        0,
        cx.now_ms,
    )?;
    // Fresh attempts; a live lease stays with its holder, which finishes the event itself.
    let mut entry = audit::entry(&cx, "billing.event_replayed")
        .target("stripe_event", event.id.as_str())
        .meta(json!({"type": event.kind, "status": event.status}));
    if let Some(t) = &event.tenant_id {
        entry = entry.tenant(t.as_str());
    }
    db.batch(vec![
        db.stmt(
            "UPDATE stripe_events SET status = 'received', error = NULL, attempts = 0, \
             processed_at = NULL WHERE id = ?1",
            &args![event.id.as_str()],
        )?,
        staged.insert_if_applied(&db)?,
        entry.stmt(&db)?,
    ])
    .await?;
    outbox::send_now(&cx.env, &cx.config, &db, &[staged]).await;
    let location = format!("/api/v1/admin/billing/events/{}", event.id);
    // The row as the update left it (the consumer may already be at work on it).
    let event = BillingEvent {
        status: "received".into(),
        error: None,
        attempts: 0,
        processed_at: None,
        payload: None,
        ..event
    };
    Reply::accepted(&event, location)
}

// ---------------------------------------------------------------------------------------------
// The consumer

/// A lease's holder as stored in `stripe_events.lease_holder`: `<message id>#<attempt>`.
fn holder_text(h: &Holder) -> String {
    format!("{}#{}", h.message_id, h.attempt)
}

fn stored_lease<'a>(holder: Option<&'a str>, until: Option<&str>) -> Option<Lease<'a>> {
    let (message_id, attempt) = holder?.rsplit_once('#')?;
    Some(Lease {
        message_id,
        attempt: attempt.parse().ok()?,
        until_ms: clock::parse_time(until?)?,
    })
}

#[derive(Deserialize)]
struct EventRow {
    id: String,
    status: String,
    attempts: i64,
    lease_holder: Option<String>,
    lease_until: Option<String>,
    payload: String,
}

/// The jobs Worker's work for one delivery (`holder`) of `Job::Stripe`: claim the event (an
/// attempt is counted before the work), apply it, and on an error retry with backoff until
/// the last attempt, which fails the event with a dead letter.
pub async fn process(env: &Env, cfg: &Config, holder: &Holder, event_id: &str) -> Result<Outcome> {
    let db = Db::from_env(env)?;
    let Some(ev) = db
        .one::<EventRow>(
            "SELECT id, status, attempts, lease_holder, lease_until, payload \
             FROM stripe_events WHERE id = ?1",
            &args![event_id],
        )
        .await?
    else {
        return Ok(Outcome::Ack);
    };
    if ev.status != "received" {
        // Done (a redelivery), or failed: a replay queues it again.
        return Ok(Outcome::Ack);
    }
    let now_ms = clock::now_ms();
    let lease = stored_lease(ev.lease_holder.as_deref(), ev.lease_until.as_deref());
    if !lease::may_take(lease, holder, now_ms) {
        // Another live delivery has it; if it dies, its own redelivery takes over.
        return Ok(Outcome::Ack);
    }
    if ev.attempts >= MAX_ATTEMPTS {
        let why = format!(
            "gave up after {} attempts (the worker stopped during each)",
            ev.attempts
        );
        fail(env, cfg, &db, event_id, &why, ev.attempts).await?;
        return Ok(Outcome::Ack);
    }
    let hold = holder_text(holder);
    let claimed = db
        .run(
            "UPDATE stripe_events SET attempts = attempts + 1, lease_holder = ?2, lease_until = ?3 \
             WHERE id = ?1 AND status = 'received' AND attempts = ?4 AND lease_holder IS ?5",
            &args![
                event_id,
                hold.as_str(),
                clock::rfc3339(now_ms + LEASE_MS),
                ev.attempts,
                ev.lease_holder.clone()
            ],
        )
        .await?
        > 0;
    if !claimed {
        return Ok(Outcome::Ack);
    }
    let attempt = ev.attempts + 1;
    match apply(env, cfg, &db, &ev, &hold).await {
        Ok(()) => Ok(Outcome::Ack),
        Err(e) if attempt < MAX_ATTEMPTS => {
            db.run(
                "UPDATE stripe_events SET error = ?2, lease_holder = NULL, lease_until = NULL \
                 WHERE id = ?1 AND lease_holder = ?3",
                &args![event_id, e.to_string(), hold.as_str()],
            )
            .await?;
            Ok(Outcome::Retry(backoff_secs(attempt)))
        }
        Err(e) => {
            fail(env, cfg, &db, event_id, &e.to_string(), attempt).await?;
            Ok(Outcome::Ack)
        }
    }
}

/// Ends the event `failed` and, if that applied, its dead letter with it (an outbox row in the
/// same batch).
async fn fail(
    env: &Env,
    cfg: &Config,
    db: &Db,
    event_id: &str,
    error: &str,
    attempts: i64,
) -> Result<()> {
    let letter = DeadLetter {
        job: Job::Stripe {
            event_id: event_id.to_string(),
        },
        error: error.to_string(),
        attempts,
    };
    let now_ms = clock::now_ms();
    let staged = Staged::dead_letter(&letter, now_ms)?;
    let changes = db
        .batch(vec![
            db.stmt(
                "UPDATE stripe_events SET status = 'failed', error = ?2, processed_at = ?3, \
                 lease_holder = NULL, lease_until = NULL WHERE id = ?1 AND status = 'received'",
                &args![event_id, error, clock::rfc3339(now_ms)],
            )?,
            staged.insert_if_applied(db)?,
        ])
        .await?;
    if changes.first().is_some_and(|c| *c > 0) {
        outbox::send_now(env, cfg, db, &[staged]).await;
    }
    Ok(())
}

/// Used by the DLQ consumer: an event the runtime gave up on is failed, not left received.
pub async fn mark_failed(env: &Env, event_id: &str, error: &str) -> Result<()> {
    Db::from_env(env)?
        .run(
            "UPDATE stripe_events SET status = 'failed', error = ?2, processed_at = ?3, \
             lease_holder = NULL, lease_until = NULL WHERE id = ?1 AND status = 'received'",
            &args![event_id, error, clock::rfc3339(clock::now_ms())],
        )
        .await?;
    Ok(())
}

/// The event row's outcome, last in the batch and only while this delivery holds the lease.
/// `status_sql` is a SQL expression (it may read `changes()` of the statement before it).
fn outcome(
    db: &Db,
    event_id: &str,
    hold: &str,
    status_sql: &str,
    error: Option<String>,
    tenant_id: Option<&str>,
) -> Result<D1PreparedStatement> {
    db.stmt(
        &format!(
            "UPDATE stripe_events SET status = {status_sql}, \
             error = CASE WHEN {status_sql} = 'processed' THEN NULL ELSE ?2 END, \
             tenant_id = COALESCE(?3, tenant_id), processed_at = ?4, \
             lease_holder = NULL, lease_until = NULL WHERE id = ?1 AND lease_holder = ?5"
        ),
        &args![
            event_id,
            error,
            tenant_id.map(str::to_string),
            clock::rfc3339(clock::now_ms()),
            hold
        ],
    )
}

/// `status = 'processed'` when the statement before changed a row, else `otherwise`.
fn applied_or(otherwise: &str) -> String {
    format!("(CASE WHEN changes() > 0 THEN 'processed' ELSE '{otherwise}' END)")
}

/// Records a decision that changes nothing.
async fn settle(
    db: &Db,
    event_id: &str,
    hold: &str,
    status: &str,
    why: String,
    tenant_id: Option<&str>,
) -> Result<()> {
    db.batch(vec![outcome(
        db,
        event_id,
        hold,
        &format!("'{status}'"),
        Some(why),
        tenant_id,
    )?])
    .await?;
    Ok(())
}

async fn apply(env: &Env, cfg: &Config, db: &Db, ev: &EventRow, hold: &str) -> Result<()> {
    // An unusable body or object is not applicable: no retry changes it.
    let unusable = |why: String| settle(db, &ev.id, hold, "ignored", why, None);
    let event = match stripe::parse_event(ev.payload.as_bytes()) {
        Ok(e) => e,
        Err(why) => return unusable(why).await,
    };
    let kind = event.kind.as_str();
    match kind {
        "checkout.session.completed" => match CheckoutSession::from_object(&event.object) {
            Ok(s) => checkout(db, &ev.id, hold, &s).await,
            Err(why) => unusable(why).await,
        },
        k if k.starts_with("customer.subscription.") && stripe::HANDLED.contains(&k) => {
            match Subscription::from_object(&event.object) {
                Ok(s) => subscription(env, cfg, db, &ev.id, hold, event.created, k, &s).await,
                Err(why) => unusable(why).await,
            }
        }
        k if k.starts_with("invoice.") && stripe::HANDLED.contains(&k) => {
            match Invoice::from_object(&event.object) {
                Ok(i) => invoice(env, cfg, db, &ev.id, hold, k, &i).await,
                Err(why) => unusable(why).await,
            }
        }
        "charge.refunded" => match stripe::Charge::from_object(&event.object) {
            Ok(c) => refund(db, &ev.id, hold, &c).await,
            Err(why) => unusable(why).await,
        },
        other => unusable(format!("{other} is not an event type this API handles")).await,
    }
}

#[derive(Deserialize)]
struct TenantRow {
    id: String,
    plan: String,
    subscription_status: Option<String>,
    stripe_customer_id: Option<String>,
    stripe_subscription_id: Option<String>,
    billing_event_created: Option<i64>,
}

impl From<TenantRow> for TenantBilling {
    fn from(r: TenantRow) -> Self {
        TenantBilling {
            tenant_id: r.id,
            plan: Plan::parse(&r.plan).unwrap_or_default(),
            subscription_status: r.subscription_status,
            stripe_customer_id: r.stripe_customer_id,
            stripe_subscription_id: r.stripe_subscription_id,
            billing_event_created: r.billing_event_created,
        }
    }
}

/// A live tenant's billing by `column` (`id`, `stripe_customer_id`, `stripe_subscription_id`).
async fn tenant_by(
    db: &Db,
    column: &'static str,
    value: Option<&str>,
) -> Result<Option<TenantBilling>> {
    let Some(value) = value else {
        return Ok(None);
    };
    let row: Option<TenantRow> = db
        .one(
            &format!(
                "SELECT id, plan, subscription_status, stripe_customer_id, stripe_subscription_id, \
                 billing_event_created FROM tenants WHERE {column} = ?1 AND deleted_at IS NULL"
            ),
            &args![value],
        )
        .await?;
    Ok(row.map(Into::into))
}

/// The tenant a customer's object is about: the customer's tenant, else the one its metadata
/// names, if that tenant has no other customer.
async fn tenant_of(
    db: &Db,
    customer: Option<&str>,
    hint: Option<&str>,
) -> Result<Option<TenantBilling>> {
    if let Some(t) = tenant_by(db, "stripe_customer_id", customer).await? {
        return Ok(Some(t));
    }
    Ok(tenant_by(db, "id", hint)
        .await?
        .filter(|t| t.stripe_customer_id.is_none() || t.stripe_customer_id.as_deref() == customer))
}

async fn checkout(db: &Db, event_id: &str, hold: &str, s: &CheckoutSession) -> Result<()> {
    let tenant = tenant_by(db, "id", s.tenant_hint()).await?;
    let owner = tenant_by(db, "stripe_customer_id", s.customer.as_deref()).await?;
    match stripe::decide_checkout(
        s,
        tenant.as_ref(),
        owner.as_ref().map(|o| o.tenant_id.as_str()),
    ) {
        Decision::Apply(link) => {
            db.batch(vec![
                    db.stmt(
                        "UPDATE tenants SET stripe_customer_id = ?2, \
                         stripe_subscription_id = COALESCE(?3, stripe_subscription_id), updated_at = ?4 \
                         WHERE id = ?1 AND (stripe_customer_id IS NULL OR stripe_customer_id = ?2)",
                        &args![
                            link.tenant_id.as_str(),
                            link.customer.as_str(),
                            link.subscription.clone(),
                            clock::rfc3339(clock::now_ms())
                        ],
                    )?,
                    outcome(
                        db,
                        event_id,
                        hold,
                        &applied_or("ignored"),
                        Some("the tenant has another Stripe customer".into()),
                        Some(&link.tenant_id),
                    )?,
                ])
                .await?;
            Ok(())
        }
        Decision::Stale(why) => {
            settle(
                db,
                event_id,
                hold,
                "stale",
                why,
                tenant.as_ref().map(|t| t.tenant_id.as_str()),
            )
            .await
        }
        Decision::Ignored(why) => {
            settle(
                db,
                event_id,
                hold,
                "ignored",
                why,
                tenant.as_ref().map(|t| t.tenant_id.as_str()),
            )
            .await
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn subscription(
    env: &Env,
    cfg: &Config,
    db: &Db,
    event_id: &str,
    hold: &str,
    created: i64,
    kind: &str,
    s: &Subscription,
) -> Result<()> {
    let tenant = tenant_of(db, s.customer.as_deref(), s.metadata_tenant_id.as_deref()).await?;
    let tenant_id = tenant.as_ref().map(|t| t.tenant_id.clone());
    let change = match stripe::decide_subscription(created, kind, s, tenant.as_ref(), &cfg.stripe) {
        Decision::Apply(c) => c,
        Decision::Stale(why) => {
            return settle(db, event_id, hold, "stale", why, tenant_id.as_deref()).await
        }
        Decision::Ignored(why) => {
            return settle(db, event_id, hold, "ignored", why, tenant_id.as_deref()).await
        }
    };
    let now = clock::rfc3339(clock::now_ms());
    let mut stmts = vec![
            // One statement for the transition; the guard repeats the decision's staleness
            // rule, so a newer event applied meanwhile wins and this one ends `stale`.
            db.stmt(
                "UPDATE tenants SET plan = ?2, subscription_status = ?3, subscription_amount = ?4, \
                 subscription_start_date = ?5, subscription_end_date = ?6, \
                 current_period_start = ?5, current_period_end = ?6, \
                 stripe_customer_id = COALESCE(?7, stripe_customer_id), stripe_subscription_id = ?8, \
                 stripe_price_id = ?9, subscription_unit_amount = ?10, subscription_currency = ?11, \
                 subscription_interval = ?12, cancel_at_period_end = ?13, billing_event_created = ?14, \
                 updated_at = ?15 \
                 WHERE id = ?1 AND COALESCE(billing_event_created, 0) <= ?14",
                &args![
                    change.tenant_id.as_str(),
                    change.plan.as_str(),
                    change.status.as_str(),
                    change.monthly_amount,
                    change.period_start.clone(),
                    change.period_end.clone(),
                    change.customer.clone(),
                    change.subscription_id.as_str(),
                    change.price_id.clone(),
                    change.unit_amount,
                    change.currency.clone(),
                    change.interval.clone(),
                    change.cancel_at_period_end,
                    change.created,
                    now.as_str()
                ],
            )?,
            outcome(
                db,
                event_id,
                hold,
                &applied_or("stale"),
                Some("a newer subscription event was applied meanwhile".into()),
                Some(&change.tenant_id),
            )?,
        ];
    if change.plan_changed() {
        stmts.push(db.stmt(
                "INSERT INTO audit_logs (id, tenant_id, action, target_type, target_id, metadata, created_at) \
                 SELECT ?1, ?2, 'billing.plan_changed', 'tenant', ?2, ?3, ?4 \
                 WHERE EXISTS (SELECT 1 FROM stripe_events WHERE id = ?5 AND status = 'processed')",
                &args![
                    ids::new_id("aud"),
                    change.tenant_id.as_str(),
                    json!({"from": change.previous_plan, "to": change.plan, "status": change.status,
                           "stripe_event_id": event_id, "stripe_subscription_id": change.subscription_id})
                        .to_string(),
                    now.as_str(),
                    event_id
                ],
            )?);
    }
    let changes = db.batch(stmts).await?;
    let applied = changes.first().is_some_and(|c| *c > 0);
    if applied && (change.plan_changed() || change.status_changed) {
        // The plan (limits, features) is cached by the tenant's gate.
        if let Err(e) = gate::invalidate(env, &change.tenant_id, Scope::Tenant).await {
            worker::console_error!(
                "{}",
                json!({"level": "error", "event": "billing.gate_invalidate_failed",
                           "tenant_id": change.tenant_id, "error": e.to_string()})
            );
        }
    }
    Ok(())
}

async fn invoice(
    env: &Env,
    cfg: &Config,
    db: &Db,
    event_id: &str,
    hold: &str,
    kind: &str,
    i: &Invoice,
) -> Result<()> {
    #[derive(Deserialize)]
    struct Current {
        tenant_id: String,
        status: String,
    }
    let current: Option<Current> = db
        .one(
            "SELECT tenant_id, status FROM payments WHERE stripe_invoice_id = ?1",
            &args![i.id.as_str()],
        )
        .await?;
    let mut tenant = match &current {
        Some(c) => tenant_by(db, "id", Some(&c.tenant_id)).await?,
        None => tenant_of(db, i.customer.as_deref(), i.metadata_tenant_id.as_deref()).await?,
    };
    if tenant.is_none() {
        tenant = tenant_by(db, "stripe_subscription_id", i.subscription.as_deref()).await?;
    }
    let status = current
        .as_ref()
        .and_then(|c| PaymentStatus::parse(&c.status));
    let p = match stripe::decide_invoice(kind, i, tenant.as_ref(), status) {
        Decision::Apply(p) => p,
        Decision::Stale(why) => return settle(db, event_id, hold, "stale", why, None).await,
        Decision::Ignored(why) => return settle(db, event_id, hold, "ignored", why, None).await,
    };
    let now = clock::rfc3339(clock::now_ms());
    let rank_new = PaymentStatus::sql_rank("excluded.status");
    let rank_old = PaymentStatus::sql_rank("payments.status");
    let changes = db.batch(vec![
            db.stmt(
                &format!(
                    "INSERT INTO payments (id, tenant_id, stripe_invoice_id, stripe_customer_id, \
                     stripe_subscription_id, stripe_charge_id, stripe_payment_intent_id, number, \
                     amount_due, amount_paid, currency, status, period_start, period_end, \
                     hosted_invoice_url, invoice_pdf, stripe_created, created_at, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?18) \
                     ON CONFLICT(stripe_invoice_id) DO UPDATE SET \
                     stripe_customer_id = COALESCE(excluded.stripe_customer_id, payments.stripe_customer_id), \
                     stripe_subscription_id = COALESCE(excluded.stripe_subscription_id, payments.stripe_subscription_id), \
                     stripe_charge_id = COALESCE(excluded.stripe_charge_id, payments.stripe_charge_id), \
                     stripe_payment_intent_id = COALESCE(excluded.stripe_payment_intent_id, payments.stripe_payment_intent_id), \
                     number = COALESCE(excluded.number, payments.number), \
                     amount_due = excluded.amount_due, \
                     amount_paid = MAX(excluded.amount_paid, payments.amount_paid), \
                     currency = excluded.currency, \
                     status = CASE WHEN {rank_new} > {rank_old} THEN excluded.status ELSE payments.status END, \
                     period_start = COALESCE(excluded.period_start, payments.period_start), \
                     period_end = COALESCE(excluded.period_end, payments.period_end), \
                     hosted_invoice_url = COALESCE(excluded.hosted_invoice_url, payments.hosted_invoice_url), \
                     invoice_pdf = COALESCE(excluded.invoice_pdf, payments.invoice_pdf), \
                     stripe_created = COALESCE(excluded.stripe_created, payments.stripe_created), \
                     updated_at = excluded.updated_at"
                ),
                &args![
                    ids::new_id("pay"),
                    p.tenant_id.as_str(),
                    i.id.as_str(),
                    i.customer.clone(),
                    i.subscription.clone(),
                    i.charge.clone(),
                    i.payment_intent.clone(),
                    i.number.clone(),
                    i.amount_due,
                    i.amount_paid,
                    i.currency.as_str(),
                    p.status.as_str(),
                    p.period_start.clone(),
                    p.period_end.clone(),
                    i.hosted_invoice_url.clone(),
                    i.invoice_pdf.clone(),
                    i.created,
                    now.as_str()
                ],
            )?,
            outcome(
                db,
                event_id,
                hold,
                "'processed'",
                None,
                Some(&p.tenant_id),
            )?,
        ])
        .await?;
    let applied = changes.get(1).copied().unwrap_or(0) > 0;
    if applied && p.status == PaymentStatus::Failed && status != Some(PaymentStatus::Failed) {
        let amount = format!(
            "{:.2} {}",
            i.amount_due as f64 / 100.0,
            i.currency.to_uppercase()
        );
        let notice = crate::notifications::Notice {
            kind: crate::notifications::model::Kind::PaymentFailed,
            title: "A payment failed".into(),
            body: format!(
                "Stripe could not collect {amount}; update the payment method to keep the plan."
            ),
            link: Some("/billing".into()),
            data: Some(
                serde_json::json!({"invoice": i.id, "number": i.number, "amount_due": i.amount_due, "currency": i.currency}),
            ),
        };
        crate::notifications::tell_admins(env, cfg, db, &p.tenant_id, notice).await;
    }
    Ok(())
}

async fn refund(db: &Db, event_id: &str, hold: &str, c: &stripe::Charge) -> Result<()> {
    #[derive(Deserialize)]
    struct Row {
        id: String,
        tenant_id: String,
        amount_paid: i64,
        amount_refunded: i64,
        status: String,
    }
    let row: Option<Row> = db
            .one(
                "SELECT id, tenant_id, amount_paid, amount_refunded, status FROM payments \
                 WHERE stripe_charge_id = ?1 OR stripe_payment_intent_id = ?2 OR stripe_invoice_id = ?3 \
                 ORDER BY created_at LIMIT 1",
                &args![
                    c.id.as_str(),
                    c.payment_intent.clone(),
                    c.invoice.clone()
                ],
            )
            .await?;
    let snapshot = row.map(|r| PaymentSnapshot {
        id: r.id,
        tenant_id: r.tenant_id,
        amount_paid: r.amount_paid,
        amount_refunded: r.amount_refunded,
        status: PaymentStatus::parse(&r.status).unwrap_or(PaymentStatus::Paid),
    });
    let change = match stripe::decide_refund(c, snapshot.as_ref()) {
        Decision::Apply(r) => r,
        Decision::Stale(why) => return settle(db, event_id, hold, "stale", why, None).await,
        Decision::Ignored(why) => return settle(db, event_id, hold, "ignored", why, None).await,
    };
    let now = clock::rfc3339(clock::now_ms());
    let rank_new = PaymentStatus::sql_rank("?3");
    let rank_old = PaymentStatus::sql_rank("status");
    let mut stmts = vec![db.stmt(
        &format!(
            "UPDATE payments SET amount_refunded = MAX(amount_refunded, ?2), \
                 status = CASE WHEN {rank_new} > {rank_old} THEN ?3 ELSE status END, \
                 stripe_charge_id = COALESCE(stripe_charge_id, ?4), updated_at = ?5 WHERE id = ?1"
        ),
        &args![
            change.payment_id.as_str(),
            change.amount_refunded,
            change.status.as_str(),
            change.charge_id.as_str(),
            now.as_str()
        ],
    )?];
    for r in &change.refunds {
        stmts.push(db.stmt(
                "INSERT INTO refunds (id, stripe_refund_id, payment_id, tenant_id, amount, currency, \
                 reason, status, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9) \
                 ON CONFLICT(stripe_refund_id) DO UPDATE SET amount = excluded.amount, \
                 status = excluded.status, reason = COALESCE(excluded.reason, refunds.reason), \
                 updated_at = excluded.updated_at",
                &args![
                    ids::new_id("ref"),
                    r.id.as_str(),
                    change.payment_id.as_str(),
                    change.tenant_id.as_str(),
                    r.amount,
                    r.currency.as_str(),
                    r.reason.clone(),
                    r.status.as_str(),
                    now.as_str()
                ],
            )?);
    }
    stmts.push(outcome(
        db,
        event_id,
        hold,
        "'processed'",
        None,
        Some(&change.tenant_id),
    )?);
    db.batch(stmts).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_webhook_admits_only_signed_events_and_needs_a_secret() {
        let mut cfg = crate::platform::config::Stripe {
            api_base: "https://api.stripe.com".into(),
            secret_key: None,
            webhook_secrets: vec![],
            webhook_tolerance_secs: 300,
            prices: vec![],
        };
        let body =
            br#"{"id":"evt_1","type":"invoice.paid","created":5,"data":{"object":{"id":"in_1"}}}"#;
        let t = 1_800_000_000;
        let header = format!("t={t},v1={}", stripe::sign("whsec_a", t, body));
        let code = |r: Result<stripe::Event>| r.map_err(|e| (e.status(), e.code()));
        assert_eq!(
            code(admit(&cfg, Some(&header), body, t)),
            Err((503, "billing_unavailable"))
        );
        cfg.webhook_secrets = vec!["whsec_a".into()];
        assert_eq!(
            code(admit(&cfg, Some(&header), body, t)).unwrap().id,
            "evt_1"
        );
        assert_eq!(
            code(admit(&cfg, None, body, t)),
            Err((401, "invalid_signature"))
        );
        assert_eq!(
            code(admit(&cfg, Some(&header), body, t + 301)),
            Err((401, "invalid_signature"))
        );
        let junk = b"{}";
        let signed = format!("t={t},v1={}", stripe::sign("whsec_a", t, junk));
        assert_eq!(
            code(admit(&cfg, Some(&signed), junk, t)),
            Err((400, "bad_request"))
        );
    }

    #[test]
    fn a_stored_holder_round_trips_into_the_lease_rule() {
        let h = Holder {
            message_id: "msg-1#x".into(),
            attempt: 3,
        };
        let text = holder_text(&h);
        let until = clock::rfc3339(5_000);
        let lease = stored_lease(Some(&text), Some(&until)).unwrap();
        assert_eq!(
            (lease.message_id, lease.attempt, lease.until_ms),
            ("msg-1#x", 3, 5_000)
        );
        let next = Holder {
            message_id: "msg-1#x".into(),
            attempt: 4,
        };
        assert!(lease::may_take(Some(lease), &next, 1_000));
        assert!(!lease::may_take(Some(lease), &h, 1_000));
        assert_eq!(stored_lease(None, Some(&until)), None);
        assert_eq!(stored_lease(Some("nohash"), Some(&until)), None);
        assert_eq!(stored_lease(Some(&text), None), None);
    }

    #[test]
    fn event_type_filters_look_like_stripe_types() {
        assert!(event_type("invoice.paid"));
        assert!(event_type("customer.subscription.updated"));
        for bad in ["", "Invoice.Paid", "a b", "x;--", &"a".repeat(101)] {
            assert!(!event_type(bad), "{bad}");
        }
        assert!(STATUSES.contains(&"stale"));
    }

    #[test]
    fn the_outcome_reads_the_changes_of_the_statement_before() {
        assert_eq!(
            applied_or("stale"),
            "(CASE WHEN changes() > 0 THEN 'processed' ELSE 'stale' END)"
        );
    }
}

//! Invoices (the `payments` rows Stripe's webhook writes) as tenant admins and the platform
//! admin read them, and refunds: the platform admin asks Stripe for one, the refund is kept as
//! Stripe answered (usually `pending`), and the payment's own status follows `charge.refunded`.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::stripe_api::{idempotency_key, Stripe};
use crate::args;
use crate::audit;
use crate::billing::stripe::PaymentStatus;
use crate::handler;
use crate::http::context::Ctx;
use crate::http::json::Checks;
use crate::http::pagination::PAGING;
use crate::http::reply::Reply;
use crate::http::router::{q, q_enum, Access, QueryDoc, Route};
use crate::platform::db::{Arg, Db, Filter};
use crate::platform::error::{AppError, Result};
use crate::platform::ids;

pub const STATUSES: [&str; 6] = [
    PaymentStatus::Open.as_str(),
    PaymentStatus::Paid.as_str(),
    PaymentStatus::Failed.as_str(),
    PaymentStatus::Void.as_str(),
    PaymentStatus::Refunded.as_str(),
    PaymentStatus::PartiallyRefunded.as_str(),
];
pub const REASONS: [&str; 3] = ["duplicate", "fraudulent", "requested_by_customer"];
/// Refund statuses that still count against what may be refunded.
const LIVE_REFUNDS: &str = "'pending', 'succeeded', 'requires_action'";

const LIST_QUERY: [QueryDoc; 3] = [
    PAGING[0],
    PAGING[1],
    q_enum("status", &STATUSES, "Only invoices with this status."),
];
const ADMIN_QUERY: [QueryDoc; 4] = [
    PAGING[0],
    PAGING[1],
    q_enum("status", &STATUSES, "Only invoices with this status."),
    q("tenant_id", "string", "Only this tenant's invoices."),
];

pub fn routes() -> Vec<Route> {
    vec![
        Route::get("/api/v1/billing/payments", Access::TenantAdmin, handler!(list))
            .doc("billing", "The tenant's invoices, newest first")
            .list("Payment")
            .query(&LIST_QUERY),
        Route::get(
            "/api/v1/billing/payments/:id",
            Access::TenantAdmin,
            handler!(get),
        )
        .doc("billing", "One invoice")
        .ok("Payment"),
        Route::get(
            "/api/v1/admin/payments",
            Access::PlatformAdmin,
            handler!(admin_list),
        )
        .doc("billing", "Every tenant's invoices, newest first")
        .list("Payment")
        .query(&ADMIN_QUERY),
        Route::post(
            "/api/v1/admin/payments/:id/refund",
            Access::PlatformAdmin,
            handler!(refund),
        )
        .doc(
            "billing",
            "Refund a paid invoice on Stripe (all that is left, or `amount`); the invoice's status follows Stripe's `charge.refunded`",
        )
        .body("CreateRefund")
        .created("Refund")
        .idempotent(),
    ]
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Payment {
    pub id: String,
    pub tenant_id: String,
    pub stripe_invoice_id: String,
    /// The invoice number Stripe gave it (`null` for a draft).
    pub number: Option<String>,
    /// Minor units of `currency`.
    pub amount_due: i64,
    pub amount_paid: i64,
    pub amount_refunded: i64,
    /// ISO 4217, lower case as Stripe writes it.
    pub currency: String,
    pub status: PaymentStatus,
    pub period_start: Option<String>,
    pub period_end: Option<String>,
    /// Stripe's page for the invoice.
    pub hosted_invoice_url: Option<String>,
    pub invoice_pdf: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// `POST /admin/payments/:id/refund`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRefund {
    /// Minor units; all that is left to refund when absent.
    #[schema(minimum = 1)]
    pub amount: Option<i64>,
    /// `duplicate`, `fraudulent` or `requested_by_customer`.
    #[schema(pattern = "^(duplicate|fraudulent|requested_by_customer)$")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Refund {
    pub id: String,
    pub stripe_refund_id: String,
    pub payment_id: String,
    pub tenant_id: String,
    /// Minor units of `currency`.
    pub amount: i64,
    pub currency: String,
    pub reason: Option<String>,
    /// Stripe's: `pending`, `requires_action`, `succeeded`, `failed`, `canceled`.
    #[schema(example = "pending")]
    pub status: String,
    /// The platform admin who asked (`null` for refunds made on Stripe itself).
    pub requested_by: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

const COLUMNS: &str = "payments.id, payments.tenant_id, payments.stripe_invoice_id, \
     payments.number, payments.amount_due, payments.amount_paid, payments.amount_refunded, \
     payments.currency, payments.status, payments.period_start, payments.period_end, \
     payments.hosted_invoice_url, payments.invoice_pdf, payments.created_at, payments.updated_at";

const REFUND_COLUMNS: &str = "id, stripe_refund_id, payment_id, tenant_id, amount, currency, \
     reason, status, requested_by, created_at, updated_at";

async fn find(db: &Db, tenant_id: &str, id: &str) -> Result<Payment> {
    db.one(
        &format!(
            "SELECT {COLUMNS} FROM payments WHERE payments.id = ?1 AND payments.tenant_id = ?2"
        ),
        &args![id, tenant_id],
    )
    .await?
    .ok_or(AppError::NotFound)
}

async fn list_where(cx: &Ctx, tenant_id: Option<String>) -> Result<Reply> {
    let page = cx.page()?;
    let mut f = Filter::new(
        &format!("SELECT {COLUMNS} FROM payments WHERE 1 = 1"),
        args![],
    );
    f.and_opt("payments.tenant_id = ?", tenant_id.map(Arg::from))
        .and_opt(
            "payments.status = ?",
            cx.query_enum("status", &STATUSES)?.map(Arg::from),
        );
    f.page(&page, "payments");
    let rows: Vec<Payment> = cx.db()?.all(&f.sql, &f.args).await?;
    let (rows, next) = page.finish(rows, |p| (p.created_at.clone(), p.id.clone()));
    Reply::list(&rows, next.as_deref())
}

async fn list(cx: Ctx) -> Result<Reply> {
    let tenant_id = cx.tenant_id()?.to_string();
    list_where(&cx, Some(tenant_id)).await
}

async fn admin_list(cx: Ctx) -> Result<Reply> {
    let tenant_id = cx.query_nonempty("tenant_id").map(str::to_string);
    list_where(&cx, tenant_id).await
}

async fn get(cx: Ctx) -> Result<Reply> {
    Reply::ok(&find(&cx.db()?, cx.tenant_id()?, cx.param("id")).await?)
}

/// What the refund route needs of a payment besides its view.
#[derive(Debug, Clone, Deserialize)]
pub struct Refundable {
    pub id: String,
    pub tenant_id: String,
    pub status: PaymentStatus,
    pub amount_paid: i64,
    pub amount_refunded: i64,
    pub currency: String,
    pub stripe_charge_id: Option<String>,
    pub stripe_payment_intent_id: Option<String>,
    /// Refunds asked for and not failed or canceled (some not in `amount_refunded` yet).
    pub refunds_pending_or_done: i64,
}

/// The refund to ask Stripe for: amount, reason and what it refunds; or why not (422).
#[derive(Debug, Clone, PartialEq)]
pub struct RefundPlan {
    pub amount: i64,
    pub reason: Option<String>,
    /// `("charge", ch_…)` or `("payment_intent", pi_…)`.
    pub target: (&'static str, String),
}

pub fn plan_refund(p: &Refundable, body: &CreateRefund) -> Result<RefundPlan> {
    let mut checks = Checks::new();
    if let Some(r) = &body.reason {
        if !REASONS.contains(&r.as_str()) {
            checks.add("reason", format!("must be one of {}", REASONS.join(", ")));
        }
    }
    if !matches!(
        p.status,
        PaymentStatus::Paid | PaymentStatus::PartiallyRefunded
    ) || p.amount_paid <= 0
    {
        checks.finish()?;
        return Err(AppError::Unprocessable(
            "not_refundable",
            format!(
                "The invoice is {}; only a paid invoice can be refunded.",
                p.status.as_str()
            ),
        ));
    }
    // `amount_refunded` follows Stripe's `charge.refunded`; refunds asked for here count at
    // once, so two quick refunds cannot together exceed what was paid.
    let refunded = p.amount_refunded.max(p.refunds_pending_or_done);
    let left = p.amount_paid - refunded;
    let amount = body.amount.unwrap_or(left);
    if left <= 0 {
        checks.finish()?;
        return Err(AppError::Unprocessable(
            "not_refundable",
            "The invoice is already refunded in full.".into(),
        ));
    }
    if amount < 1 || amount > left {
        checks.add(
            "amount",
            format!(
                "must be from 1 to {left} (paid {} − refunded {refunded})",
                p.amount_paid
            ),
        );
    }
    checks.finish()?;
    let target = match (&p.stripe_charge_id, &p.stripe_payment_intent_id) {
        (Some(ch), _) => ("charge", ch.clone()),
        (None, Some(pi)) => ("payment_intent", pi.clone()),
        (None, None) => {
            return Err(AppError::Unprocessable(
                "not_refundable",
                "Stripe has not told us the invoice's charge yet; try again shortly.".into(),
            ))
        }
    };
    Ok(RefundPlan {
        amount,
        reason: body.reason.clone(),
        target,
    })
}

/// The `POST /v1/refunds` parameters.
pub fn refund_params(plan: &RefundPlan, p: &Refundable, requested_by: &str) -> Value {
    let mut v = json!({
        "amount": plan.amount,
        "metadata": {"tenant_id": p.tenant_id, "payment_id": p.id, "requested_by": requested_by},
    });
    v[plan.target.0] = json!(plan.target.1);
    if let Some(r) = &plan.reason {
        v["reason"] = json!(r);
    }
    v
}

async fn refund(cx: Ctx) -> Result<Reply> {
    let body: CreateRefund = cx.json()?;
    let db = cx.db()?;
    let payment: Refundable = db
        .one(
            &format!(
                "SELECT id, tenant_id, status, amount_paid, amount_refunded, currency, \
                 stripe_charge_id, stripe_payment_intent_id, \
                 (SELECT COALESCE(SUM(amount), 0) FROM refunds WHERE refunds.payment_id = payments.id \
                  AND refunds.status IN ({LIVE_REFUNDS})) AS refunds_pending_or_done \
                 FROM payments WHERE id = ?1"
            ),
            &args![cx.param("id")],
        )
        .await?
        .ok_or(AppError::NotFound)?;
    let plan = plan_refund(&payment, &body)?;
    let admin = cx.principal()?.user_id()?.to_string();
    let cfg = cx.config.clone();
    let stripe = Stripe::new(&cfg)?;
    let key = idempotency_key(
        &cx.principal()?.idempotency_scope(),
        &format!("refund-{}", payment.id),
        cx.header("Idempotency-Key").as_deref(),
    );
    let answer = stripe
        .post("/v1/refunds", &refund_params(&plan, &payment, &admin), &key)
        .await?;
    let Some(stripe_id) = answer
        .get("id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    else {
        worker::console_error!(
            "{}",
            json!({"level": "warn", "event": "stripe.unexpected_answer", "missing": "refund id"})
        );
        return Err(super::stripe_api::unavailable());
    };
    let amount = answer
        .get("amount")
        .and_then(Value::as_i64)
        .unwrap_or(plan.amount);
    let currency = answer
        .get("currency")
        .and_then(Value::as_str)
        .unwrap_or(&payment.currency);
    let status = answer
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("pending");
    let now = cx.now();
    // Stripe's webhook may have recorded the refund first (or Stripe replayed an earlier
    // answer to the same key): keep that row and its status, and note who asked.
    db.batch(vec![
        db.stmt(
            "INSERT INTO refunds (id, stripe_refund_id, payment_id, tenant_id, amount, currency, \
             reason, status, requested_by, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10) \
             ON CONFLICT (stripe_refund_id) DO UPDATE SET \
             requested_by = COALESCE(refunds.requested_by, excluded.requested_by)",
            &args![
                ids::new_id("ref"),
                stripe_id,
                payment.id.as_str(),
                payment.tenant_id.as_str(),
                amount,
                currency,
                plan.reason.clone(),
                status,
                admin.as_str(),
                now.as_str()
            ],
        )?,
        audit::entry(&cx, "payment.refund_requested")
            .tenant(payment.tenant_id.as_str())
            .target("payment", payment.id.as_str())
            .meta(json!({"stripe_refund_id": stripe_id, "amount": amount, "reason": plan.reason}))
            .stmt(&db)?,
    ])
    .await?;
    let refund: Refund = db
        .one(
            &format!("SELECT {REFUND_COLUMNS} FROM refunds WHERE stripe_refund_id = ?1"),
            &args![stripe_id],
        )
        .await?
        .ok_or_else(|| AppError::internal("the refund just stored is missing"))?;
    Reply::created(&refund, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paid() -> Refundable {
        Refundable {
            id: "pay_1".into(),
            tenant_id: "ten_1".into(),
            status: PaymentStatus::Paid,
            amount_paid: 4900,
            amount_refunded: 0,
            currency: "eur".into(),
            stripe_charge_id: Some("ch_1".into()),
            stripe_payment_intent_id: Some("pi_1".into()),
            refunds_pending_or_done: 0,
        }
    }

    fn body(amount: Option<i64>, reason: Option<&str>) -> CreateRefund {
        CreateRefund {
            amount,
            reason: reason.map(str::to_string),
        }
    }

    #[test]
    fn a_refund_defaults_to_what_is_left_of_the_charge() {
        let plan = plan_refund(&paid(), &body(None, Some("requested_by_customer"))).unwrap();
        assert_eq!(plan.amount, 4900);
        assert_eq!(plan.target, ("charge", "ch_1".into()));
        let params = refund_params(&plan, &paid(), "usr_admin");
        let form = super::super::stripe_api::flatten(&params);
        for (k, v) in [
            ("charge", "ch_1"),
            ("amount", "4900"),
            ("reason", "requested_by_customer"),
            ("metadata[tenant_id]", "ten_1"),
            ("metadata[payment_id]", "pay_1"),
            ("metadata[requested_by]", "usr_admin"),
        ] {
            assert!(
                form.contains(&(k.to_string(), v.to_string())),
                "{k}: {form:?}"
            );
        }
        let mut p = paid();
        p.stripe_charge_id = None;
        let plan = plan_refund(&p, &body(Some(100), None)).unwrap();
        assert_eq!(plan.target, ("payment_intent", "pi_1".into()));
        assert!(refund_params(&plan, &p, "u").get("reason").is_none());
    }

    #[test]
    fn no_more_than_paid_minus_refunded_counting_refunds_still_pending() {
        let mut p = paid();
        p.status = PaymentStatus::PartiallyRefunded;
        p.amount_refunded = 900;
        assert_eq!(plan_refund(&p, &body(None, None)).unwrap().amount, 4000);
        assert_eq!(
            plan_refund(&p, &body(Some(4001), None))
                .unwrap_err()
                .status(),
            422
        );
        // Asked for here, not yet confirmed by `charge.refunded`.
        p.refunds_pending_or_done = 4500;
        assert_eq!(plan_refund(&p, &body(None, None)).unwrap().amount, 400);
        p.refunds_pending_or_done = 4900;
        let e = plan_refund(&p, &body(None, None)).unwrap_err();
        assert_eq!((e.status(), e.code()), (422, "not_refundable"));
        for bad in [0, -5] {
            let e = plan_refund(&paid(), &body(Some(bad), None)).unwrap_err();
            assert_eq!(e.code(), "validation_failed");
        }
    }

    #[test]
    fn unpaid_invoices_and_bad_reasons_are_refused() {
        for status in ["open", "failed", "void", "refunded"] {
            let mut p = paid();
            p.status = PaymentStatus::parse(status).unwrap();
            assert_eq!(
                plan_refund(&p, &body(None, None)).unwrap_err().status(),
                422,
                "{status}"
            );
        }
        let e = plan_refund(&paid(), &body(None, Some("because"))).unwrap_err();
        assert_eq!(e.code(), "validation_failed");
        let mut p = paid();
        p.stripe_charge_id = None;
        p.stripe_payment_intent_id = None;
        assert_eq!(
            plan_refund(&p, &body(None, None)).unwrap_err().code(),
            "not_refundable"
        );
    }
}

//! Metering for every module (`charge`: one meter call before the work is created) and the
//! routes that show plans and usage: `GET /billing/plans`, `GET /billing/usage`,
//! `GET /admin/usage`.

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use worker::D1PreparedStatement;

use crate::args;
use crate::audit;
use crate::billing::meter::{self, Alert, Consume, Consumed, Refund};
use crate::billing::plans::{Catalogue, Feature, Metric, QuotaOverrides};
use crate::handler;
use crate::http::context::Ctx;
use crate::http::pagination::PAGING;
use crate::http::reply::Reply;
use crate::http::router::{q, Access, QueryDoc, Route};
use crate::platform::db::Db;
use crate::platform::error::{AppError, Result};
use crate::platform::plan::Plan;

const PERIOD_QUERY: [QueryDoc; 1] = [q(
    "period",
    "string",
    "A month, `YYYY-MM` (UTC), within the last 13; default the current one.",
)];
const ADMIN_QUERY: [QueryDoc; 3] = [
    PAGING[0],
    PAGING[1],
    q(
        "period",
        "string",
        "A month, `YYYY-MM` (UTC), within the last 13; default the current one.",
    ),
];

pub fn routes() -> Vec<Route> {
    vec![
        Route::get("/api/v1/billing/plans", Access::User, handler!(plans))
            .doc(
                "billing",
                "The plans: limits, features, and whether they can be bought",
            )
            .ok("PlanList"),
        Route::get("/api/v1/billing/usage", Access::User, handler!(usage))
            .doc(
                "billing",
                "The tenant's usage this month (or `?period=`): exact counters, limits, alerts",
            )
            .ok("Usage")
            .query(&PERIOD_QUERY),
        Route::get(
            "/api/v1/admin/usage",
            Access::PlatformAdmin,
            handler!(admin_usage),
        )
        .doc(
            "admin",
            "Usage per tenant for a month (from the meters' copies in D1, up to a minute behind)",
        )
        .list("TenantUsage")
        .query(&ADMIN_QUERY),
    ]
}

/// One plan as `GET /billing/plans` shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanView {
    #[schema(example = "pro")]
    pub name: Plan,
    /// Whether `POST /billing/checkout` sells it (a Stripe price is configured).
    pub purchasable: bool,
    /// `premium_custom`: quotas are agreed per tenant (unlimited until set).
    pub custom: bool,
    pub limits: LimitsView,
    pub features: Vec<Feature>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LimitsView {
    pub requests_per_minute: u32,
    /// Executions a month; `null`: unlimited (or, for `premium_custom`, per agreement).
    pub executions: Option<u64>,
    /// Prompt optimisations a month; `null` as for executions.
    pub optimizations: Option<u64>,
    pub storage_bytes: u64,
    pub max_file_bytes: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlanList {
    pub plans: Vec<PlanView>,
}

/// Usage of one allowance; `limit` and `remaining` are `null` when unlimited.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MetricUsage {
    pub used: u64,
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
}

impl MetricUsage {
    fn new(used: u64, limit: Option<u64>) -> MetricUsage {
        MetricUsage {
            used,
            limit,
            remaining: limit.map(|l| l.saturating_sub(used)),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageMetrics {
    pub executions: MetricUsage,
    pub optimizations: MetricUsage,
    /// A gauge, not a monthly count: the bytes stored now (files plus open multipart uploads'
    /// parts), whatever the period.
    pub storage: MetricUsage,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Usage {
    #[schema(example = "2026-11")]
    pub period: String,
    /// When the period's counters reset (00:00 UTC on the 1st of the next month).
    pub resets_at: String,
    pub plan: Plan,
    pub metrics: UsageMetrics,
    /// 80 % and 100 % of a monthly limit, each reported once per period and metric.
    pub alerts: Vec<Alert>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MonthlyUsage {
    pub executions: MetricUsage,
    pub optimizations: MetricUsage,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantUsage {
    pub tenant_id: String,
    pub name: String,
    pub slug: String,
    pub plan: Plan,
    pub period: String,
    pub metrics: MonthlyUsage,
}

fn plans_view(c: &Catalogue, stripe: &crate::platform::config::Stripe) -> PlanList {
    PlanList {
        plans: Plan::NAMES
            .iter()
            .filter_map(|n| Plan::parse_offered(n))
            .map(|p| {
                let l = c.limits(p);
                PlanView {
                    name: p,
                    purchasable: stripe.price_of(p).is_some() && stripe.secret_key.is_some(),
                    custom: p == Plan::PremiumCustom,
                    limits: LimitsView {
                        requests_per_minute: l.requests_per_minute,
                        executions: l.executions,
                        optimizations: l.optimizations,
                        storage_bytes: l.storage_bytes,
                        max_file_bytes: l.max_file_bytes,
                    },
                    features: l.features.clone(),
                }
            })
            .collect(),
    }
}

async fn plans(cx: Ctx) -> Result<Reply> {
    Reply::ok(&plans_view(&cx.config.plans, &cx.config.stripe))
}

/// `?period=`: a month within the last 13 (not in the future); default the current one.
fn period_param(cx: &Ctx) -> Result<String> {
    let current = meter::period_of(cx.now_ms);
    let Some(p) = cx.query_nonempty("period") else {
        return Ok(current);
    };
    if meter::parse_period(p).is_none() {
        return Err(AppError::field("period", "must be a month as YYYY-MM"));
    }
    if p > current.as_str() || p < meter::oldest_kept(cx.now_ms).as_str() {
        return Err(AppError::field(
            "period",
            "must be the current month or one of the 12 before it",
        ));
    }
    Ok(p.to_string())
}

/// A tenant's `premium_custom` quotas (read only for that plan: others use the catalogue).
async fn overrides(db: &Db, tenant_id: &str, plan: Plan) -> Result<QuotaOverrides> {
    if plan != Plan::PremiumCustom {
        return Ok(QuotaOverrides::default());
    }
    #[derive(Deserialize)]
    struct Row {
        quota_overrides: Option<String>,
    }
    let row: Option<Row> = db
        .one(
            "SELECT quota_overrides FROM tenants WHERE id = ?1",
            &args![tenant_id],
        )
        .await?;
    Ok(QuotaOverrides::from_column(
        row.and_then(|r| r.quota_overrides).as_deref(),
    ))
}

async fn usage(cx: Ctx) -> Result<Reply> {
    let period = period_param(&cx)?;
    let principal = cx.principal()?;
    let (tenant, plan) = (principal.tenant_id.clone(), principal.plan);
    let db = cx.db()?;
    let (report, custom, stored) = futures_util::try_join!(
        meter::report(&cx.env, &tenant, &period),
        overrides(&db, &tenant, plan),
        crate::media::stored_bytes(&db, &tenant),
    )?;
    let used = |m: Metric| {
        report
            .counters
            .iter()
            .find(|c| c.metric == m)
            .map_or(0, |c| c.used)
    };
    let quota = |m: Metric| cx.config.plans.quota(plan, m, &custom);
    Reply::ok(&Usage {
        resets_at: meter::resets_at(&period).unwrap_or_default(),
        period,
        plan,
        metrics: UsageMetrics {
            executions: MetricUsage::new(used(Metric::Executions), quota(Metric::Executions)),
            optimizations: MetricUsage::new(
                used(Metric::Optimizations),
                quota(Metric::Optimizations),
            ),
            storage: MetricUsage::new(stored, Some(cx.config.plans.limits(plan).storage_bytes)),
        },
        alerts: report.alerts,
    })
}

async fn admin_usage(cx: Ctx) -> Result<Reply> {
    let period = period_param(&cx)?;
    let page = cx.page()?;
    let db = cx.db()?;
    let filter = crate::tenants::db::ListFilter {
        status: None,
        plan: None,
        q: None,
    };
    let rows = crate::tenants::db::list(&db, &filter, &page).await?;
    let (tenants, next) = page.finish(rows, |t| (t.created_at.clone(), t.id.clone()));
    #[derive(Deserialize)]
    struct Count {
        tenant_id: String,
        metric: String,
        used: i64,
    }
    let counts: Vec<Count> = if tenants.is_empty() {
        Vec::new()
    } else {
        // The page's ids as one JSON array (D1 binds at most 100 parameters a query).
        let ids = serde_json::to_string(&tenants.iter().map(|t| &t.id).collect::<Vec<_>>())?;
        db.all(
            "SELECT tenant_id, metric, used FROM usage_counters \
             WHERE period = ?1 AND tenant_id IN (SELECT value FROM json_each(?2))",
            &args![period.as_str(), ids],
        )
        .await?
    };
    let out: Vec<TenantUsage> = tenants
        .into_iter()
        .map(|t| {
            let used = |m: Metric| {
                counts
                    .iter()
                    .find(|c| c.tenant_id == t.id && c.metric == m.as_str())
                    .map_or(0, |c| c.used.max(0) as u64)
            };
            let custom = t.quota_overrides.clone().unwrap_or_default();
            let quota = |m: Metric| cx.config.plans.quota(t.plan, m, &custom);
            TenantUsage {
                metrics: MonthlyUsage {
                    executions: MetricUsage::new(
                        used(Metric::Executions),
                        quota(Metric::Executions),
                    ),
                    optimizations: MetricUsage::new(
                        used(Metric::Optimizations),
                        quota(Metric::Optimizations),
                    ),
                },
                tenant_id: t.id,
                name: t.name,
                slug: t.slug,
                plan: t.plan,
                period: period.clone(),
            }
        })
        .collect();
    Reply::list(&out, next.as_deref())
}

/// What a metered request was counted for: enough to report the thresholds it crossed and to
/// give the units back if its work is not created after all.
pub struct Charge {
    pub tenant_id: String,
    pub metric: Metric,
    pub period: String,
    pub op_id: String,
    pub consumed: Consumed,
}

/// Counts `amount` of `metric` for `tenant_id` (on `plan`) as op `op_id`, before the work is
/// created. Over the limit: 402 `quota_exceeded` with `metric, limit, used, resets_at`, and
/// nothing counted.
pub async fn charge(
    cx: &Ctx,
    db: &Db,
    tenant_id: &str,
    plan: Plan,
    metric: Metric,
    amount: u64,
    op_id: &str,
) -> Result<Charge> {
    charge_parts(cx, db, tenant_id, plan, metric, amount, op_id, Vec::new()).await
}

/// `charge`, with the units counted as `parts` (one each, `amount` of them), so each can be
/// given back alone with `refund_part` (a batch's items).
#[allow(clippy::too_many_arguments)]
pub async fn charge_parts(
    cx: &Ctx,
    db: &Db,
    tenant_id: &str,
    plan: Plan,
    metric: Metric,
    amount: u64,
    op_id: &str,
    parts: Vec<String>,
) -> Result<Charge> {
    let custom = overrides(db, tenant_id, plan).await?;
    let limit = cx.config.plans.quota(plan, metric, &custom);
    let period = meter::period_of(cx.now_ms);
    let consumed = meter::consume_op(
        &cx.env,
        Consume {
            tenant_id: tenant_id.to_string(),
            metric,
            period: period.clone(),
            amount,
            limit,
            op_id: op_id.to_string(),
            parts,
        },
    )
    .await?;
    if !consumed.allowed {
        let limit = consumed.limit.unwrap_or_default();
        return Err(meter::over_quota(
            metric.as_str(),
            limit,
            consumed.used,
            meter::resets_at(&period),
            format!(
                "The {plan} plan includes {limit} {metric} a month; {} are used.",
                consumed.used
            ),
        ));
    }
    if let Some(t) = consumed.crossed.iter().max() {
        // The meter reports each threshold once per period and metric.
        let limit = consumed.limit.unwrap_or_default();
        let notice = crate::notifications::Notice {
            kind: crate::notifications::model::Kind::UsageThreshold,
            title: format!("{t} % of this month's {metric} used"),
            body: format!(
                "{} of {limit} {metric} are used this month ({period}).",
                consumed.used
            ),
            link: Some("/billing/usage".into()),
            data: Some(
                json!({"metric": metric, "threshold": t, "used": consumed.used, "limit": limit, "period": period}),
            ),
        };
        crate::notifications::tell_admins(&cx.env, &cx.config, db, tenant_id, notice).await;
    }
    Ok(Charge {
        tenant_id: tenant_id.to_string(),
        metric,
        period,
        op_id: op_id.to_string(),
        consumed,
    })
}

impl Charge {
    /// The `usage.threshold` audit entries for the thresholds this charge crossed (each once
    /// per period and metric), to commit with the work.
    pub fn threshold_audits(&self, cx: &Ctx, db: &Db) -> Result<Vec<D1PreparedStatement>> {
        self.consumed
            .crossed
            .iter()
            .map(|t| {
                audit::entry(cx, "usage.threshold")
                    .tenant(self.tenant_id.as_str())
                    .target("usage", self.metric.as_str())
                    .meta(json!({
                        "metric": self.metric,
                        "period": self.period,
                        "threshold": t,
                        "used": self.consumed.used,
                        "limit": self.consumed.limit,
                    }))
                    .stmt(db)
            })
            .collect()
    }

    /// Gives the units back (the work was not created).
    pub async fn refund(&self, cx: &Ctx) {
        meter::refund_op(
            &cx.env,
            Refund {
                tenant_id: self.tenant_id.clone(),
                metric: self.metric,
                period: self.period.clone(),
                op_id: self.op_id.clone(),
                more: Vec::new(),
            },
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_list_the_sold_ones_with_their_limits_and_whether_they_can_be_bought() {
        let stripe = crate::platform::config::Stripe {
            api_base: "https://api.stripe.com".into(),
            secret_key: Some("sk_test_x".into()),
            webhook_secrets: vec![],
            webhook_tolerance_secs: 300,
            prices: vec![(Plan::Pro, "price_pro".into())],
        };
        let v = serde_json::to_value(plans_view(&Catalogue::default(), &stripe)).unwrap();
        let names: Vec<&str> = v["plans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["free", "starter", "pro", "premium_custom"]);
        assert_eq!(v["plans"][0]["purchasable"], false);
        assert_eq!(v["plans"][2]["purchasable"], true);
        assert_eq!(v["plans"][0]["limits"]["executions"], 1000);
        assert_eq!(
            v["plans"][3]["limits"]["executions"],
            serde_json::Value::Null
        );
        assert_eq!(v["plans"][3]["custom"], true);
        assert_eq!(v["plans"][0]["features"], json!([]));
        assert_eq!(
            v["plans"][1]["features"],
            json!(["large_batches", "operator_llm_keys"])
        );
        assert_eq!(
            serde_json::to_value(MetricUsage::new(7, Some(5))).unwrap(),
            json!({"used": 7, "limit": 5, "remaining": 0})
        );
    }
}

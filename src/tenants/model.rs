//! The tenant (a client organisation) and the DTOs the platform admin uses to manage one.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::billing::plans::QuotaOverrides;
use crate::http::json::{self, Checks};
use crate::platform::clock;
use crate::platform::plan::Plan;

pub const TENANT_COLUMNS: &str =
    "tenants.id, tenants.name, tenants.slug, tenants.plan, tenants.status, \
     tenants.subscription_amount, tenants.subscription_start_date, tenants.subscription_end_date, \
     tenants.quota_overrides, tenants.created_at, tenants.updated_at";

pub const STATUSES: [&str; 3] = ["active", "pending", "suspended"];

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    pub slug: String,
    #[schema(example = "pro")]
    pub plan: Plan,
    /// `active`, `pending` or `suspended`.
    #[schema(example = "active")]
    pub status: String,
    /// Monthly subscription amount in EUR (decimal).
    pub subscription_amount: f64,
    pub subscription_start_date: Option<String>,
    pub subscription_end_date: Option<String>,
    /// `premium_custom` only: the tenant's own monthly quotas (a metric left out is
    /// unlimited); `null` when none are set.
    #[serde(default, deserialize_with = "overrides_column")]
    pub quota_overrides: Option<QuotaOverrides>,
    pub created_at: String,
    pub updated_at: String,
}

/// The `quota_overrides` column is JSON text in D1 and an object once the tenant gate has
/// passed the row on: either reads.
fn overrides_column<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<QuotaOverrides>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(QuotaOverrides::from_column(Some(&s))),
        Some(v) => serde_json::from_value(v).ok(),
    })
}

/// A tenant row, deleted or not, with its deletion mark: what the checks that refuse deleted
/// organisations need (the API's `Tenant` hides deleted ones).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantRecord {
    #[serde(flatten)]
    pub tenant: Tenant,
    pub deleted_at: Option<String>,
}

/// `POST /admin/tenants`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    pub name: String,
    pub slug: String,
    pub plan: Option<String>,
    pub status: Option<String>,
    pub subscription_amount: Option<f64>,
    pub subscription_start_date: Option<String>,
    pub subscription_end_date: Option<String>,
}

/// `PATCH /admin/tenants/:id`: any of these; `null` clears a date.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    pub name: Option<String>,
    pub plan: Option<String>,
    pub status: Option<String>,
    pub subscription_amount: Option<f64>,
    #[serde(default, deserialize_with = "json::double_option")]
    #[schema(value_type = Option<String>)]
    pub subscription_start_date: Option<Option<String>>,
    #[serde(default, deserialize_with = "json::double_option")]
    #[schema(value_type = Option<String>)]
    pub subscription_end_date: Option<Option<String>>,
    /// `premium_custom` only: its monthly quotas (`{"executions": 50000}`; a metric left out
    /// is unlimited); `null` clears them.
    #[serde(default, deserialize_with = "json::double_option")]
    #[schema(value_type = Option<QuotaOverrides>)]
    pub quota_overrides: Option<Option<QuotaOverrides>>,
}

/// Validated tenant fields (after defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct TenantFields {
    pub name: Option<String>,
    pub plan: Option<Plan>,
    pub status: Option<String>,
    pub subscription_amount: Option<f64>,
    pub subscription_start_date: Option<Option<String>>,
    pub subscription_end_date: Option<Option<String>>,
    pub quota_overrides: Option<Option<QuotaOverrides>>,
}

fn one_of(value: &str, allowed: &[&str]) -> Result<String, String> {
    if allowed.contains(&value) {
        Ok(value.to_string())
    } else {
        Err(format!("must be one of: {}", allowed.join(", ")))
    }
}

fn plan(value: &str) -> Result<Plan, String> {
    Plan::parse_offered(value).ok_or_else(|| format!("must be one of: {}", Plan::NAMES.join(", ")))
}

fn amount(v: f64) -> Result<f64, String> {
    if v.is_finite() && (0.0..=10_000_000.0).contains(&v) {
        Ok((v * 100.0).round() / 100.0)
    } else {
        Err("must be a number from 0 to 10000000".into())
    }
}

fn date(v: &Option<String>) -> Result<Option<String>, String> {
    v.as_deref().map(clock::normalize_time).transpose()
}

impl UpdateTenant {
    pub fn validate(self, checks: &mut Checks) -> TenantFields {
        let fields = TenantFields {
            name: self
                .name
                .and_then(|n| checks.take("name", json::text(&n, 1, 200))),
            plan: self.plan.and_then(|p| checks.take("plan", plan(&p))),
            status: self
                .status
                .and_then(|s| checks.take("status", one_of(&s, &STATUSES))),
            subscription_amount: self
                .subscription_amount
                .and_then(|a| checks.take("subscription_amount", amount(a))),
            subscription_start_date: self
                .subscription_start_date
                .and_then(|d| checks.take("subscription_start_date", date(&d))),
            subscription_end_date: self
                .subscription_end_date
                .and_then(|d| checks.take("subscription_end_date", date(&d))),
            quota_overrides: self.quota_overrides,
        };
        if let (Some(Some(start)), Some(Some(end))) = (
            &fields.subscription_start_date,
            &fields.subscription_end_date,
        ) {
            if end < start {
                checks.add("subscription_end_date", "must not be before the start date");
            }
        }
        fields
    }
}

impl CreateTenant {
    /// Returns (slug, fields with defaults applied).
    pub fn validate(self) -> crate::platform::error::Result<(String, TenantFields)> {
        let mut checks = Checks::new();
        let slug = checks.take("slug", json::slug(&self.slug));
        let update = UpdateTenant {
            name: Some(self.name),
            plan: Some(self.plan.unwrap_or_else(|| "free".into())),
            status: Some(self.status.unwrap_or_else(|| "active".into())),
            subscription_amount: Some(self.subscription_amount.unwrap_or(0.0)),
            subscription_start_date: Some(self.subscription_start_date),
            subscription_end_date: Some(self.subscription_end_date),
            quota_overrides: None,
        };
        let fields = update.validate(&mut checks);
        checks.finish()?;
        Ok((slug.unwrap_or_default(), fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_applies_defaults() {
        let (slug, f) = CreateTenant {
            name: " Acme ".into(),
            slug: "acme".into(),
            plan: None,
            status: None,
            subscription_amount: None,
            subscription_start_date: Some("2026-01-01".into()),
            subscription_end_date: None,
        }
        .validate()
        .unwrap();
        assert_eq!(slug, "acme");
        assert_eq!(f.name.as_deref(), Some("Acme"));
        assert_eq!(f.plan, Some(Plan::Free));
        assert_eq!(
            f.subscription_start_date,
            Some(Some("2026-01-01T00:00:00.000Z".into()))
        );
    }

    #[test]
    fn bad_values_are_reported_per_field() {
        let mut checks = Checks::new();
        UpdateTenant {
            plan: Some("gold".into()),
            subscription_amount: Some(-5.0),
            subscription_start_date: Some(Some("2026-02-01".into())),
            subscription_end_date: Some(Some("2026-01-01".into())),
            ..Default::default()
        }
        .validate(&mut checks);
        match checks.finish() {
            Err(crate::platform::error::AppError::Validation(e)) => {
                let fields: Vec<_> = e.iter().map(|f| f.field.as_str()).collect();
                assert_eq!(
                    fields,
                    ["plan", "subscription_amount", "subscription_end_date"]
                );
            }
            other => panic!("{other:?}"),
        }
    }
}

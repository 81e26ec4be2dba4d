//! The plan catalogue: the one place every per-plan limit lives (requests per minute, monthly
//! quotas, storage, file size) and the features each plan includes. Pure data: the defaults
//! below, overridden by vars (`QUOTA_<METRIC>_<PLAN>`, `FEATURES_<PLAN>`, `RATE_LIMIT_<PLAN>`,
//! `MEDIA_MAX_BYTES[_<PLAN>]`, `STORAGE_QUOTA_BYTES[_<PLAN>]`), read once with the config.
//!
//! The platform admin's own tenant has an internal rate class (`Plan::Platform`): it is not
//! listed, not sold and not settable, and is limited like `premium_custom` elsewhere.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::platform::error::AppError;
use crate::platform::plan::Plan;

/// A monthly allowance the usage meter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    Executions,
    Optimizations,
}

impl Metric {
    pub const ALL: [Metric; 2] = [Metric::Executions, Metric::Optimizations];

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Executions => "executions",
            Metric::Optimizations => "optimizations",
        }
    }

    pub fn parse(s: &str) -> Option<Metric> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something a plan may or may not include. Everything that existed before plans gated
/// features stays ungated (`free` keeps it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    /// Prompt-optimisation batches above 10 items.
    LargeBatches,
    /// Using the deployment's own LLM provider keys instead of the tenant's.
    OperatorLlmKeys,
}

impl Feature {
    pub const ALL: [Feature; 2] = [Feature::LargeBatches, Feature::OperatorLlmKeys];

    pub fn as_str(self) -> &'static str {
        match self {
            Feature::LargeBatches => "large_batches",
            Feature::OperatorLlmKeys => "operator_llm_keys",
        }
    }

    pub fn parse(s: &str) -> Option<Feature> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

/// One plan's limits. `None` quotas are unlimited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanLimits {
    pub requests_per_minute: u32,
    pub executions: Option<u64>,
    pub optimizations: Option<u64>,
    pub storage_bytes: u64,
    pub max_file_bytes: u64,
    pub features: Vec<Feature>,
}

impl PlanLimits {
    pub fn quota(&self, metric: Metric) -> Option<u64> {
        match metric {
            Metric::Executions => self.executions,
            Metric::Optimizations => self.optimizations,
        }
    }

    pub fn has(&self, feature: Feature) -> bool {
        self.features.contains(&feature)
    }
}

/// A `premium_custom` tenant's own monthly quotas (`PATCH /admin/tenants/:id
/// {quota_overrides}`); a metric left out is unlimited.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executions: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimizations: Option<u64>,
}

impl QuotaOverrides {
    pub fn get(&self, metric: Metric) -> Option<u64> {
        match metric {
            Metric::Executions => self.executions,
            Metric::Optimizations => self.optimizations,
        }
    }

    /// The stored column (`NULL` or JSON); an unreadable value counts as none set.
    pub fn from_column(column: Option<&str>) -> QuotaOverrides {
        column
            .and_then(|c| serde_json::from_str(c).ok())
            .unwrap_or_default()
    }
}

const GIB: u64 = 1024 * 1024 * 1024;
const MIB: u64 = 1024 * 1024;

/// Every plan's limits, the internal platform class included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Catalogue {
    pub free: PlanLimits,
    pub starter: PlanLimits,
    pub pro: PlanLimits,
    pub premium_custom: PlanLimits,
    pub platform: PlanLimits,
}

impl Default for Catalogue {
    fn default() -> Self {
        let plan = |rpm, quota: Option<u64>, storage, features: &[Feature]| PlanLimits {
            requests_per_minute: rpm,
            executions: quota,
            optimizations: quota,
            storage_bytes: storage,
            max_file_bytes: 100 * MIB,
            features: features.to_vec(),
        };
        Catalogue {
            free: plan(100, Some(1_000), GIB, &[]),
            starter: plan(300, Some(5_000), 10 * GIB, &Feature::ALL),
            pro: plan(1_000, Some(10_000), 50 * GIB, &Feature::ALL),
            premium_custom: plan(3_000, None, 200 * GIB, &Feature::ALL),
            platform: plan(3_000, None, 200 * GIB, &Feature::ALL),
        }
    }
}

impl Catalogue {
    pub fn limits(&self, plan: Plan) -> &PlanLimits {
        match plan {
            Plan::Free => &self.free,
            Plan::Starter => &self.starter,
            Plan::Pro => &self.pro,
            Plan::PremiumCustom => &self.premium_custom,
            Plan::Platform => &self.platform,
        }
    }

    fn limits_mut(&mut self, plan: Plan) -> &mut PlanLimits {
        match plan {
            Plan::Free => &mut self.free,
            Plan::Starter => &mut self.starter,
            Plan::Pro => &mut self.pro,
            Plan::PremiumCustom => &mut self.premium_custom,
            Plan::Platform => &mut self.platform,
        }
    }

    /// A tenant's monthly quota for `metric`: `premium_custom` tenants have their own
    /// (unlimited when unset), every other plan the catalogue's.
    pub fn quota(&self, plan: Plan, metric: Metric, overrides: &QuotaOverrides) -> Option<u64> {
        match plan {
            Plan::PremiumCustom => overrides.get(metric),
            _ => self.limits(plan).quota(metric),
        }
    }

    /// `Ok` when the plan includes `feature`, else 402 `feature_not_in_plan` naming it and the
    /// plans that include it. Plans are read per request, so a change applies at once.
    pub fn require(&self, plan: Plan, feature: Feature) -> Result<(), AppError> {
        if self.limits(plan).has(feature) {
            return Ok(());
        }
        let plans: Vec<&str> = self
            .plans_with(feature)
            .iter()
            .map(|p| p.as_str())
            .collect();
        Err(AppError::refused(
            402,
            "feature_not_in_plan",
            format!(
                "The {plan} plan does not include `{}`; it is in: {}.",
                feature.as_str(),
                if plans.is_empty() {
                    "no plan".to_string()
                } else {
                    plans.join(", ")
                }
            ),
        )
        .with("feature", feature.as_str())
        .with("plans", plans))
    }

    /// The sold plans that include `feature` (for the 402 that names them).
    pub fn plans_with(&self, feature: Feature) -> Vec<Plan> {
        Plan::NAMES
            .iter()
            .filter_map(|n| Plan::parse_offered(n))
            .filter(|p| self.limits(*p).has(feature))
            .collect()
    }

    /// The defaults overridden by the vars `lookup` finds (a missing or empty var keeps the
    /// default). Errors name the var.
    pub fn from_vars(lookup: impl Fn(&str) -> Option<String>) -> Result<Catalogue, String> {
        let mut c = Catalogue::default();
        let all_plans = [
            Plan::Free,
            Plan::Starter,
            Plan::Pro,
            Plan::PremiumCustom,
            Plan::Platform,
        ];
        let number = |name: &str| -> Result<Option<u64>, String> {
            match lookup(name) {
                None => Ok(None),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .map(Some)
                    .map_err(|_| format!("{name} is not a whole number")),
            }
        };
        let media_all = number("MEDIA_MAX_BYTES")?;
        let storage_all = number("STORAGE_QUOTA_BYTES")?;
        for plan in all_plans {
            let suffix = plan.as_str().to_uppercase();
            // The platform class shares premium_custom's media settings (as before plans).
            let media_suffix = if plan == Plan::Platform {
                "PREMIUM_CUSTOM".to_string()
            } else {
                suffix.clone()
            };
            let l = c.limits_mut(plan);
            if let Some(v) = number(&format!("RATE_LIMIT_{suffix}"))? {
                l.requests_per_minute =
                    u32::try_from(v).map_err(|_| format!("RATE_LIMIT_{suffix} is too large"))?;
            }
            if let Some(v) = number(&format!("MEDIA_MAX_BYTES_{media_suffix}"))?.or(media_all) {
                l.max_file_bytes = v;
            }
            if let Some(v) = number(&format!("STORAGE_QUOTA_BYTES_{media_suffix}"))?.or(storage_all)
            {
                l.storage_bytes = v;
            }
            if plan == Plan::Platform {
                continue;
            }
            for metric in Metric::ALL {
                let name = format!("QUOTA_{}_{suffix}", metric.as_str().to_uppercase());
                let Some(v) = lookup(&name) else { continue };
                let v = v.trim();
                let quota = if v.eq_ignore_ascii_case("unlimited") {
                    None
                } else {
                    Some(
                        v.parse::<u64>()
                            .map_err(|_| format!("{name} is not a whole number or `unlimited`"))?,
                    )
                };
                match metric {
                    Metric::Executions => l.executions = quota,
                    Metric::Optimizations => l.optimizations = quota,
                }
            }
            let name = format!("FEATURES_{suffix}");
            if let Some(v) = lookup(&name) {
                l.features = parse_features(&v).map_err(|bad| format!("{name}: unknown {bad}"))?;
            }
        }
        Ok(c)
    }
}

/// `FEATURES_<PLAN>`: comma-separated feature names, or `none`.
fn parse_features(v: &str) -> Result<Vec<Feature>, String> {
    let mut out = Vec::new();
    for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if name.eq_ignore_ascii_case("none") {
            continue;
        }
        let f = Feature::parse(name).ok_or_else(|| format!("feature `{name}`"))?;
        if !out.contains(&f) {
            out.push(f);
        }
    }
    Ok(out)
}

/// The requests-per-minute column of the catalogue, which the tenant gate is handed with each
/// admission (it loads the caller's plan and role itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateTable {
    pub free: u32,
    pub starter: u32,
    pub pro: u32,
    pub premium_custom: u32,
    pub platform: u32,
}

impl RateTable {
    pub fn of(c: &Catalogue) -> RateTable {
        RateTable {
            free: c.free.requests_per_minute,
            starter: c.starter.requests_per_minute,
            pro: c.pro.requests_per_minute,
            premium_custom: c.premium_custom.requests_per_minute,
            platform: c.platform.requests_per_minute,
        }
    }

    pub fn per_minute(&self, plan: Plan) -> u32 {
        match plan {
            Plan::Free => self.free,
            Plan::Starter => self.starter,
            Plan::Pro => self.pro,
            Plan::PremiumCustom => self.premium_custom,
            Plan::Platform => self.platform,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)]) -> Result<Catalogue, String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Catalogue::from_vars(|k| map.get(k).cloned())
    }

    #[test]
    fn the_defaults_follow_the_spec() {
        let c = Catalogue::default();
        let none = QuotaOverrides::default();
        let q = |p| c.quota(p, Metric::Executions, &none);
        assert_eq!(q(Plan::Free), Some(1_000));
        assert_eq!(q(Plan::Starter), Some(5_000));
        assert_eq!(q(Plan::Pro), Some(10_000));
        assert_eq!(q(Plan::PremiumCustom), None);
        assert_eq!(
            c.quota(Plan::Pro, Metric::Optimizations, &none),
            Some(10_000)
        );
        assert_eq!(c.limits(Plan::Free).requests_per_minute, 100);
        assert_eq!(c.limits(Plan::Free).storage_bytes, GIB);
        assert_eq!(c.limits(Plan::Pro).max_file_bytes, 100 * MIB);
        assert!(!c.limits(Plan::Free).has(Feature::LargeBatches));
        assert_eq!(
            c.plans_with(Feature::OperatorLlmKeys),
            [Plan::Starter, Plan::Pro, Plan::PremiumCustom]
        );
    }

    #[test]
    fn vars_override_quotas_features_rates_and_media_limits() {
        let c = with(&[
            ("QUOTA_EXECUTIONS_FREE", "5"),
            ("QUOTA_OPTIMIZATIONS_PRO", "unlimited"),
            ("FEATURES_FREE", "large_batches"),
            ("FEATURES_STARTER", "none"),
            ("RATE_LIMIT_PRO", "7"),
            ("MEDIA_MAX_BYTES", "10"),
            ("MEDIA_MAX_BYTES_STARTER", "20"),
            ("STORAGE_QUOTA_BYTES", "30"),
        ])
        .unwrap();
        assert_eq!(c.free.executions, Some(5));
        assert_eq!(c.free.optimizations, Some(1_000));
        assert_eq!(c.pro.optimizations, None);
        assert_eq!(c.free.features, [Feature::LargeBatches]);
        assert!(c.starter.features.is_empty());
        assert_eq!(c.pro.requests_per_minute, 7);
        assert_eq!(
            [
                c.free.max_file_bytes,
                c.starter.max_file_bytes,
                c.platform.max_file_bytes
            ],
            [10, 20, 10]
        );
        assert_eq!(c.premium_custom.storage_bytes, 30);
    }

    #[test]
    fn a_missing_feature_is_a_402_naming_the_plans_with_it() {
        let c = Catalogue::default();
        assert!(c.require(Plan::Pro, Feature::LargeBatches).is_ok());
        let p = c
            .require(Plan::Free, Feature::LargeBatches)
            .unwrap_err()
            .to_problem("r");
        let v = serde_json::to_value(p).unwrap();
        assert_eq!(v["status"], 402);
        assert_eq!(v["code"], "feature_not_in_plan");
        assert_eq!(v["feature"], "large_batches");
        assert_eq!(
            v["plans"],
            serde_json::json!(["starter", "pro", "premium_custom"])
        );
    }

    #[test]
    fn bad_vars_are_named() {
        assert!(with(&[("QUOTA_EXECUTIONS_FREE", "lots")])
            .unwrap_err()
            .contains("QUOTA_EXECUTIONS_FREE"));
        assert!(with(&[("FEATURES_PRO", "teleport")])
            .unwrap_err()
            .contains("teleport"));
    }

    #[test]
    fn premium_custom_uses_its_overrides_and_is_unlimited_without() {
        let c = Catalogue::default();
        let o = QuotaOverrides::from_column(Some(r#"{"executions": 50000}"#));
        assert_eq!(
            c.quota(Plan::PremiumCustom, Metric::Executions, &o),
            Some(50_000)
        );
        assert_eq!(
            c.quota(Plan::PremiumCustom, Metric::Optimizations, &o),
            None
        );
        // Overrides mean nothing on a catalogue plan.
        assert_eq!(c.quota(Plan::Free, Metric::Executions, &o), Some(1_000));
        assert_eq!(
            QuotaOverrides::from_column(Some("garbage")),
            QuotaOverrides::default()
        );
    }
}

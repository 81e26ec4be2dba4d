//! The tenant's plan, parsed once where tenant rows and request bodies are read; the limits
//! that differ by plan take it typed.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    #[default]
    Free,
    Starter,
    Pro,
    PremiumCustom,
    /// The operator's own tenant (the platform admin's); never sold, so not settable through
    /// the API, and limited like `premium_custom` where a plan limit applies.
    Platform,
}

impl Plan {
    const ALL: [Plan; 5] = [
        Plan::Free,
        Plan::Starter,
        Plan::Pro,
        Plan::PremiumCustom,
        Plan::Platform,
    ];
    /// The plans a tenant can be put on (bodies and filters).
    pub const NAMES: [&'static str; 4] = ["free", "starter", "pro", "premium_custom"];

    /// Any stored plan, `platform` included.
    pub fn parse(s: &str) -> Option<Plan> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// A plan given in a request: one of `NAMES`.
    pub fn parse_offered(s: &str) -> Option<Plan> {
        Self::parse(s).filter(|p| *p != Plan::Platform)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Free => "free",
            Plan::Starter => "starter",
            Plan::Pro => "pro",
            Plan::PremiumCustom => "premium_custom",
            Plan::Platform => "platform",
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_round_trip_and_platform_is_not_offered() {
        for p in Plan::ALL {
            assert_eq!(Plan::parse(p.as_str()), Some(p));
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
        }
        let offered: Vec<_> = Plan::NAMES
            .into_iter()
            .filter_map(Plan::parse_offered)
            .collect();
        assert_eq!(offered.len(), 4);
        assert_eq!(Plan::parse_offered("platform"), None);
        assert_eq!(Plan::parse("gold"), None);
    }
}

//! Roles and their order. `platform_admin` operates the deployment; the rest live in a tenant.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    PlatformAdmin,
    Owner,
    Admin,
    Agent,
    Member,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "platform_admin" => Role::PlatformAdmin,
            "owner" => Role::Owner,
            "admin" => Role::Admin,
            "agent" => Role::Agent,
            "member" => Role::Member,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::PlatformAdmin => "platform_admin",
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Agent => "agent",
            Role::Member => "member",
        }
    }

    pub fn rank(self) -> u8 {
        match self {
            Role::Member => 1,
            Role::Agent => 2,
            Role::Admin => 3,
            Role::Owner => 4,
            Role::PlatformAdmin => 5,
        }
    }

    pub fn at_least(self, other: Role) -> bool {
        self.rank() >= other.rank()
    }
}

pub const TENANT_ROLES: [&str; 4] = ["owner", "admin", "agent", "member"];
pub const ALL_ROLES: [&str; 5] = ["platform_admin", "owner", "admin", "agent", "member"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_order() {
        for r in ALL_ROLES {
            assert_eq!(Role::parse(r).unwrap().as_str(), r);
        }
        assert!(Role::Owner.at_least(Role::Admin));
        assert!(!Role::Agent.at_least(Role::Admin));
        assert!(Role::PlatformAdmin.at_least(Role::Owner));
        assert_eq!(Role::parse("root"), None);
    }
}

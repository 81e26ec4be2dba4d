//! Whether an account may act: the user's and the organisation's status, the one rule that
//! log-in, refresh, the gate and API keys apply.

/// Whether an organisation may act: neither suspended nor deleted.
pub fn tenant_usable(tenant_status: &str, tenant_deleted_at: Option<&str>) -> bool {
    tenant_status != "suspended" && tenant_deleted_at.is_none()
}

/// Whether a user may log in or use a token: active, in a usable organisation.
pub fn account_usable(
    user_status: &str,
    tenant_status: &str,
    tenant_deleted_at: Option<&str>,
) -> bool {
    user_status == "active" && tenant_usable(tenant_status, tenant_deleted_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suspended_or_deleted_accounts_are_unusable() {
        assert!(account_usable("active", "active", None));
        assert!(account_usable("active", "pending", None));
        assert!(!account_usable("suspended", "active", None));
        assert!(!account_usable("active", "suspended", None));
        assert!(!account_usable(
            "active",
            "active",
            Some("2026-01-01T00:00:00.000Z")
        ));
    }
}

//! The access rule a route declares (who may call it) and the request methods it is declared
//! for: core values, so the caller's identity (`auth::principal`) can check them without
//! knowing the HTTP layer.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl Method {
    pub fn parse(s: &str) -> Option<Method> {
        Some(match s {
            "GET" | "HEAD" => Method::Get,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }

    pub fn is_read(self) -> bool {
        self == Method::Get
    }
}

/// Who may call a route. Checked by the dispatcher before the handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, no credentials.
    Public,
    /// Any active user of a tenant with a session token (JWT), not an API key.
    Session,
    /// Any active user (JWT) or an API key with a fitting scope.
    User,
    /// Agents and above (agent, admin, owner, platform admin).
    Agent,
    /// Tenant administrators: owner, admin (and the platform admin in its own tenant).
    TenantAdmin,
    /// The tenant's owners (and the platform admin in its own tenant): commitments such as
    /// buying or changing the subscription.
    Owner,
    /// The operator of the deployment.
    PlatformAdmin,
}

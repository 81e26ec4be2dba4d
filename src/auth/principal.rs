//! Who is calling: a user with a session token, or a tenant API key. `authenticate` resolves
//! the credentials on every request (a session token through its tenant's gate, which is told
//! of every suspension and revocation, an API key against D1), so they apply at once;
//! `authorize` is the single place where a route's access rule is checked.

use serde::Deserialize;
use worker::{Env, Headers};

use super::account::tenant_usable;
use super::gate::{self, Admission, Admit, Budget};
use super::jwt::{self, TokenError};
use super::roles::Role;
use crate::args;
use crate::billing::plans::RateTable;
use crate::platform::access::{Access, Method};
use crate::platform::clock;
use crate::platform::config::Config;
use crate::platform::crypto::sha256_hex;
use crate::platform::db::Db;
use crate::platform::error::{AppError, Result};
use crate::platform::plan::Plan;
use crate::platform::ratelimit::Decision;
use crate::tenants::model::Tenant;
use crate::users::model::User;

/// The tenant API budget's window, in seconds (for fail-open decisions).
const WINDOW_SECS: u64 = (gate::TENANT_WINDOW_MS / 1000) as u64;

pub const API_KEY_PREFIX: &str = "tnt_";

#[derive(Debug, Clone)]
pub struct ApiKeyCaller {
    pub id: String,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant_id: String,
    pub role: Role,
    pub plan: Plan,
    /// Set for users (session tokens); `None` for API keys.
    pub user_id: Option<String>,
    pub email: Option<String>,
    pub session_id: Option<String>,
    pub api_key: Option<ApiKeyCaller>,
    /// A user's stored row and tenant as admitted (what `/auth/me` shows); `None` for API keys.
    pub profile: Option<Profile>,
}

#[derive(Debug, Clone)]
pub struct Profile {
    pub user: User,
    pub tenant: Tenant,
}

impl Principal {
    /// The scope idempotency keys are kept under: the caller (a user or an API key), so
    /// another caller of the same tenant never replays a response made for someone else.
    pub fn idempotency_scope(&self) -> String {
        match (&self.api_key, &self.user_id) {
            (Some(key), _) => format!("tenant:{}:key:{}", self.tenant_id, key.id),
            (None, Some(user)) => format!("tenant:{}:user:{user}", self.tenant_id),
            (None, None) => format!("tenant:{}", self.tenant_id),
        }
    }

    pub fn rate_limit_per_minute(&self, limits: &RateTable) -> u32 {
        gate::per_minute(self.role.as_str(), self.plan, limits)
    }

    pub fn is_platform_admin(&self) -> bool {
        self.role == Role::PlatformAdmin && self.api_key.is_none()
    }

    /// The user id, for routes that need a user (session) rather than a key.
    pub fn user_id(&self) -> Result<&str> {
        self.user_id.as_deref().ok_or_else(|| {
            AppError::Forbidden(
                "forbidden",
                "This route needs a user session, not an API key.".into(),
            )
        })
    }
}

fn unauthorized(code: &'static str, detail: &str) -> AppError {
    AppError::Unauthorized(code, detail.into())
}

/// The bearer credential from `Authorization: Bearer …` or `X-API-Key`.
pub fn credential(headers: &Headers) -> Option<String> {
    if let Ok(Some(auth)) = headers.get("Authorization") {
        let mut parts = auth.trim().splitn(2, ' ');
        if let (Some(scheme), Some(value)) = (parts.next(), parts.next()) {
            if scheme.eq_ignore_ascii_case("bearer") && !value.trim().is_empty() {
                return Some(value.trim().to_string());
            }
        }
    }
    headers
        .get("X-API-Key")
        .ok()
        .flatten()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

#[derive(Deserialize)]
struct KeyRow {
    id: String,
    tenant_id: String,
    scopes: String,
    expires_at: Option<String>,
    last_used_at: Option<String>,
    tenant_status: String,
    tenant_deleted_at: Option<String>,
    plan: Plan,
}

/// Identifies the caller and, with `cost`, draws it from the tenant's API budget (the decision
/// comes back for the `RateLimit-*` headers; a caller it refuses is refused with 429).
///
/// A session token is checked locally (signature, claims), then in one call to its tenant's
/// gate, which answers the stored user, tenant and role and the budget decision together. If the
/// gate cannot be reached, the same checks run on a direct D1 read (a revoked token stays out)
/// and the budget fails open (logged), so an outage of the gate does not take the API down.
pub async fn authenticate(
    env: &Env,
    config: &Config,
    headers: &Headers,
    now_ms: i64,
    cost: Option<u32>,
) -> Result<(Principal, Option<Decision>)> {
    let token = credential(headers)
        .ok_or_else(|| unauthorized("unauthorized", "Send `Authorization: Bearer <token>`."))?;
    if token.starts_with(API_KEY_PREFIX) {
        let p = authenticate_key(&Db::from_env(env)?, &token, now_ms).await?;
        // The key's tenant is known only after its D1 lookup, so a key costs that read plus a
        // rate-only call to the same tenant gate that keeps its users' budget.
        let decision = match cost {
            Some(cost) => {
                let limit = p.rate_limit_per_minute(&RateTable::of(&config.plans));
                Some(match gate::draw(env, &p.tenant_id, limit, cost).await {
                    Ok(d) => d,
                    Err(e) => {
                        worker::console_error!("tenant gate unavailable (rate fails open): {e}");
                        Decision::fail_open(limit, WINDOW_SECS)
                    }
                })
            }
            None => None,
        };
        return Ok((p, decision));
    }
    let claims = jwt::verify(
        &config.jwt_secret,
        &token,
        &config.jwt_issuer,
        &config.jwt_audience,
        now_ms,
    )
    .map_err(|e| match e {
        TokenError::Expired => unauthorized("token_expired", "The access token has expired."),
        _ => unauthorized("invalid_token", "The access token is not valid."),
    })?;
    let admit = Admit {
        tenant_id: claims.tenant,
        user_id: claims.sub,
        session_id: claims.sid,
        budget: cost.map(|cost| Budget {
            cost,
            limits: RateTable::of(&config.plans),
        }),
    };
    let session_id = admit.session_id.clone();
    let answer = match gate::admit(env, admit.clone()).await {
        Ok(answer) => answer,
        Err(e) => {
            worker::console_error!("tenant gate unavailable (checking D1 directly): {e}");
            let db = Db::from_env(env)?;
            let loaded = gate::load(&db, &admit.tenant_id, &admit.user_id, &session_id).await?;
            gate::admission(loaded, &admit, now_ms, |limit, _| {
                Ok(Decision::fail_open(limit, WINDOW_SECS))
            })?
        }
    };
    match answer {
        Admission::Refused { refusal } => Err(refusal.into()),
        Admission::Admitted {
            user,
            tenant,
            decision,
        } => Ok((session_principal(*user, *tenant, session_id), decision)),
    }
}

/// A user's principal from their stored row: the role is the one stored now, not the claim.
fn session_principal(user: User, tenant: Tenant, session_id: String) -> Principal {
    Principal {
        tenant_id: user.tenant_id.clone(),
        role: Role::parse(&user.role).unwrap_or(Role::Member),
        plan: tenant.plan,
        user_id: Some(user.id.clone()),
        email: Some(user.email.clone()),
        session_id: Some(session_id),
        api_key: None,
        profile: Some(Profile { user, tenant }),
    }
}

async fn authenticate_key(db: &Db, key: &str, now_ms: i64) -> Result<Principal> {
    let row: KeyRow = db
        .one(
            "SELECT k.id, k.tenant_id, k.scopes, k.expires_at, k.last_used_at, \
             t.status AS tenant_status, t.deleted_at AS tenant_deleted_at, t.plan \
             FROM api_keys k JOIN tenants t ON t.id = k.tenant_id \
             WHERE k.key_hash = ?1 AND k.revoked_at IS NULL",
            &args![sha256_hex(key.as_bytes())],
        )
        .await?
        .ok_or_else(|| unauthorized("invalid_api_key", "The API key is not valid."))?;
    let now = clock::rfc3339(now_ms);
    if row.expires_at.as_deref().is_some_and(|e| e <= now.as_str()) {
        return Err(unauthorized("invalid_api_key", "The API key has expired."));
    }
    if !tenant_usable(&row.tenant_status, row.tenant_deleted_at.as_deref()) {
        return Err(AppError::Forbidden(
            "account_suspended",
            "This organisation is suspended.".into(),
        ));
    }
    // Touch `last_used_at` at most once a minute: a write per request would cost a round trip.
    let stale = row
        .last_used_at
        .as_deref()
        .is_none_or(|t| clock::parse_time(t).is_none_or(|ms| now_ms - ms > 60_000));
    if stale {
        db.run(
            "UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1",
            &args![row.id.as_str(), now],
        )
        .await?;
    }
    let scopes: Vec<String> = serde_json::from_str(&row.scopes).unwrap_or_default();
    let role = if scopes.iter().any(|s| s == "admin") {
        Role::Admin
    } else {
        Role::Agent
    };
    Ok(Principal {
        tenant_id: row.tenant_id,
        role,
        plan: row.plan,
        user_id: None,
        email: None,
        session_id: None,
        api_key: Some(ApiKeyCaller { id: row.id, scopes }),
        profile: None,
    })
}

/// The access rule of a route, applied to the caller. The one place roles are checked.
pub fn authorize(access: Access, p: &Principal, method: Method) -> Result<()> {
    let forbid = |detail: &str| Err(AppError::Forbidden("forbidden", detail.into()));
    if let Some(key) = &p.api_key {
        let has = |s: &str| key.scopes.iter().any(|k| k == s);
        let scoped = if method.is_read() {
            has("read") || has("write") || has("admin")
        } else {
            has("write") || has("admin")
        };
        if !scoped {
            return forbid("The API key's scopes do not allow this request.");
        }
        if matches!(access, Access::Session | Access::PlatformAdmin) {
            return forbid("This route needs a user session, not an API key.");
        }
    }
    let ok = match access {
        Access::Public | Access::Session | Access::User => true,
        Access::Agent => p.role.at_least(Role::Agent),
        Access::TenantAdmin => p.role.at_least(Role::Admin),
        Access::Owner => p.role.at_least(Role::Owner),
        Access::PlatformAdmin => p.is_platform_admin(),
    };
    if ok {
        Ok(())
    } else {
        forbid("Your role does not allow this request.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(role: Role) -> Principal {
        Principal {
            tenant_id: "ten_1".into(),
            role,
            plan: Plan::Free,
            user_id: Some("usr_1".into()),
            email: Some("a@b.io".into()),
            session_id: Some("ses_1".into()),
            api_key: None,
            profile: None,
        }
    }

    fn key(scopes: &[&str]) -> Principal {
        Principal {
            role: if scopes.contains(&"admin") {
                Role::Admin
            } else {
                Role::Agent
            },
            user_id: None,
            email: None,
            session_id: None,
            api_key: Some(ApiKeyCaller {
                id: "key_1".into(),
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
            }),
            ..user(Role::Member)
        }
    }

    #[test]
    fn roles_gate_routes() {
        assert!(authorize(Access::User, &user(Role::Member), Method::Get).is_ok());
        assert!(authorize(Access::TenantAdmin, &user(Role::Member), Method::Get).is_err());
        assert!(authorize(Access::TenantAdmin, &user(Role::Admin), Method::Post).is_ok());
        assert!(authorize(Access::Owner, &user(Role::Admin), Method::Post).is_err());
        assert!(authorize(Access::Owner, &user(Role::Owner), Method::Post).is_ok());
        assert!(authorize(Access::Owner, &key(&["admin"]), Method::Post).is_err());
        assert!(authorize(Access::Agent, &user(Role::Member), Method::Get).is_err());
        assert!(authorize(Access::PlatformAdmin, &user(Role::Owner), Method::Get).is_err());
        assert!(authorize(
            Access::PlatformAdmin,
            &user(Role::PlatformAdmin),
            Method::Get
        )
        .is_ok());
    }

    #[test]
    fn api_keys_are_bounded_by_scopes() {
        assert!(authorize(Access::User, &key(&["read"]), Method::Get).is_ok());
        assert!(authorize(Access::User, &key(&["read"]), Method::Post).is_err());
        assert!(authorize(Access::User, &key(&["write"]), Method::Post).is_ok());
        assert!(authorize(Access::TenantAdmin, &key(&["write"]), Method::Post).is_err());
        assert!(authorize(Access::TenantAdmin, &key(&["admin"]), Method::Post).is_ok());
        assert!(authorize(Access::Session, &key(&["admin"]), Method::Get).is_err());
        assert!(authorize(Access::PlatformAdmin, &key(&["admin"]), Method::Get).is_err());
    }

    #[test]
    fn plan_sets_the_budget() {
        let limits = RateTable {
            free: 100,
            starter: 300,
            pro: 1000,
            premium_custom: 3000,
            platform: 5000,
        };
        assert_eq!(user(Role::Owner).rate_limit_per_minute(&limits), 100);
        assert_eq!(
            user(Role::PlatformAdmin).rate_limit_per_minute(&limits),
            5000
        );
    }
}

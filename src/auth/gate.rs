//! The tenant gate: what the per-tenant `TenantGate` Durable Object decides in one round trip
//! (is this session's caller still allowed in, and is the tenant within its rate budget), as
//! pure logic (the cache of users, sessions and the tenant, its expiry and epoch rule, the
//! account checks), the typed protocol, the D1 read that fills the cache, and the client.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use worker::Env;

use super::account::account_usable;
use super::roles::Role;
use crate::args;
use crate::billing::plans::RateTable;
use crate::platform::bindings;
use crate::platform::db::{first_row, Db};
use crate::platform::error::{AppError, Result};
use crate::platform::plan::Plan;
use crate::platform::ratelimit::Decision;
use crate::tenants::model::{TenantRecord, TENANT_COLUMNS};
use crate::users::model::{User, USER_COLUMNS};

/// How long a cached entry is trusted without an invalidation. Every write that changes what is
/// cached invalidates it at once; the TTL only bounds the damage of an invalidation that never
/// arrived (a write path that forgot it, or a gate that restarted between write and call).
pub const CACHE_TTL_MS: i64 = 60_000;

/// The tenant's general API budget is counted per minute.
pub const TENANT_WINDOW_MS: i64 = 60_000;

/// A session as the gate needs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionState {
    pub id: String,
    pub user_id: String,
    pub revoked_at: Option<String>,
    pub expires_at: String,
}

/// Everything the principal of one session token is made of. `session` is `None` when the
/// token's session does not exist (or belongs to someone else).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Loaded {
    pub user: User,
    pub session: Option<SessionState>,
    pub tenant: TenantRecord,
}

/// Why a session token is turned away; each maps to the answer `authenticate` has always given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// 401 `invalid_token`: the session ended, the user is gone, or the token names another tenant.
    InvalidToken,
    /// 403 `account_suspended`: the user or the organisation is suspended (or deleted).
    Suspended,
}

impl From<Refusal> for AppError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::InvalidToken => AppError::Unauthorized(
                "invalid_token",
                "The session has ended; log in again.".into(),
            ),
            Refusal::Suspended => AppError::Forbidden(
                "account_suspended",
                "This account or its organisation is suspended.".into(),
            ),
        }
    }
}

/// The checks a session token passes on every request, after its signature: a live session of
/// this user, the tenant the token names, a user not deleted, then a usable account.
pub fn check(
    loaded: &Loaded,
    tenant_id: &str,
    user_id: &str,
    now: &str,
) -> std::result::Result<(), Refusal> {
    let session_live = loaded.session.as_ref().is_some_and(|s| {
        s.user_id == user_id && s.revoked_at.is_none() && s.expires_at.as_str() > now
    });
    let (user, tenant) = (&loaded.user, &loaded.tenant);
    if !session_live
        || user.id != user_id
        || user.tenant_id != tenant_id
        || tenant.tenant.id != tenant_id
        || user.status == "deleted"
    {
        return Err(Refusal::InvalidToken);
    }
    if !account_usable(
        &user.status,
        &tenant.tenant.status,
        tenant.deleted_at.as_deref(),
    ) {
        return Err(Refusal::Suspended);
    }
    Ok(())
}

/// The requests per minute a user of this plan and role gets (the platform admin its own budget).
pub fn per_minute(role: &str, plan: Plan, limits: &RateTable) -> u32 {
    if Role::parse(role) == Some(Role::PlatformAdmin) {
        limits.platform
    } else {
        limits.per_minute(plan)
    }
}

/// What an invalidation clears.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "scope", rename_all = "snake_case")]
pub enum Scope {
    /// One user: their profile, role and status, and every session of theirs.
    User { user_id: String },
    /// One session (log-out, a refresh family revoked on reuse).
    Session { session_id: String },
    /// The tenant and everything cached under it (plan, status, deletion; mass revocations).
    Tenant,
}

#[derive(Debug, Clone)]
struct Entry<T> {
    value: T,
    filled_ms: i64,
}

impl<T: Clone> Entry<T> {
    fn fresh(&self, now_ms: i64) -> Option<T> {
        (now_ms - self.filled_ms < CACHE_TTL_MS).then(|| self.value.clone())
    }
}

/// Taken when a fill starts reading D1; the fill is cached only if no invalidation came since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fill {
    epoch: u64,
}

/// The gate's memory of one tenant. Every invalidation bumps `epoch`, so a D1 read that started
/// before it (and may have seen the old rows) is used for its own request but never cached:
/// otherwise a read racing a suspension could cache "active" after the suspension cleared it.
#[derive(Debug, Default)]
pub struct Cache {
    epoch: u64,
    tenant: Option<Entry<TenantRecord>>,
    users: HashMap<String, Entry<User>>,
    sessions: HashMap<String, Entry<SessionState>>,
}

impl Cache {
    /// The session's principal if the user, the session and the tenant are all cached and fresh.
    pub fn lookup(&self, user_id: &str, session_id: &str, now_ms: i64) -> Option<Loaded> {
        let tenant = self.tenant.as_ref()?.fresh(now_ms)?;
        let user = self.users.get(user_id)?.fresh(now_ms)?;
        let session = self.sessions.get(session_id)?.fresh(now_ms)?;
        Some(Loaded {
            user,
            session: Some(session),
            tenant,
        })
    }

    pub fn begin_fill(&self) -> Fill {
        Fill { epoch: self.epoch }
    }

    /// Caches what a fill read, unless an invalidation came while it was reading or the rows
    /// are not this tenant's (the gate of one tenant caches only that tenant). Returns whether
    /// it was cached.
    pub fn finish_fill(
        &mut self,
        fill: Fill,
        tenant_id: &str,
        loaded: &Loaded,
        now_ms: i64,
    ) -> bool {
        if fill.epoch != self.epoch
            || loaded.tenant.tenant.id != tenant_id
            || loaded.user.tenant_id != tenant_id
        {
            return false;
        }
        // Entries past their TTL are never used again; drop them so the maps stay small.
        self.users
            .retain(|_, e| now_ms - e.filled_ms < CACHE_TTL_MS);
        self.sessions
            .retain(|_, e| now_ms - e.filled_ms < CACHE_TTL_MS);
        self.tenant = Some(entry_of(loaded.tenant.clone(), now_ms));
        self.users.insert(
            loaded.user.id.clone(),
            entry_of(loaded.user.clone(), now_ms),
        );
        if let Some(s) = &loaded.session {
            // Only a session of the loaded user: `lookup` pairs them by these ids.
            if s.user_id == loaded.user.id {
                self.sessions
                    .insert(s.id.clone(), entry_of(s.clone(), now_ms));
            }
        }
        true
    }

    pub fn invalidate(&mut self, scope: &Scope) {
        self.epoch += 1;
        match scope {
            Scope::User { user_id } => {
                self.users.remove(user_id);
                self.sessions.retain(|_, e| &e.value.user_id != user_id);
            }
            Scope::Session { session_id } => {
                self.sessions.remove(session_id);
            }
            Scope::Tenant => {
                self.tenant = None;
                self.users.clear();
                self.sessions.clear();
            }
        }
    }
}

fn entry_of<T>(value: T, filled_ms: i64) -> Entry<T> {
    Entry { value, filled_ms }
}

/// What the gate is asked.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum GateRequest {
    /// A session token's caller (its signature already verified): let them in or not, and with
    /// a budget, draw from the tenant's rate window in the same call.
    Admit(Admit),
    /// Draw from the tenant's rate window only (API keys, whose tenant is known from D1).
    Draw(Draw),
    /// Forget what a committed write changed (and close the live sockets it ends).
    Invalidate { scope: Scope },
    /// A session opened a live WebSocket: the gate remembers it, so an invalidation that ends
    /// the session closes it.
    LiveOpened(LiveSocket),
}

/// A live WebSocket held by a conversation's hub for one session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveSocket {
    pub tenant_id: String,
    pub conversation_id: String,
    pub user_id: String,
    pub session_id: String,
    /// When the token it was opened with expires (epoch ms).
    pub expires_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Admit {
    pub tenant_id: String,
    pub user_id: String,
    pub session_id: String,
    /// `None` on routes outside the tenant budget.
    pub budget: Option<Budget>,
}

/// The per-plan budgets; the gate picks the one of the plan and role it loaded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Budget {
    pub cost: u32,
    pub limits: RateTable,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Draw {
    pub limit: u32,
    pub cost: u32,
}

/// The gate's answer to `Admit`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Admission {
    /// Role and status come from the stored user, not the token's claims.
    Admitted {
        // Boxed: a refusal is small, and the enum is as large as its largest variant.
        user: Box<User>,
        tenant: Box<crate::tenants::model::Tenant>,
        decision: Option<Decision>,
    },
    Refused {
        refusal: Refusal,
    },
}

/// Decides an `Admit` from what was loaded (`None`: no such user in this tenant). The budget is
/// drawn only for a caller who passes the checks, so refused tokens cost the tenant nothing.
pub fn admission(
    loaded: Option<Loaded>,
    admit: &Admit,
    now_ms: i64,
    draw: impl FnOnce(u32, u32) -> Result<Decision>,
) -> Result<Admission> {
    let now = crate::platform::clock::rfc3339(now_ms);
    let checked = loaded.ok_or(Refusal::InvalidToken).and_then(|l| {
        check(&l, &admit.tenant_id, &admit.user_id, &now)?;
        Ok(l)
    });
    let loaded = match checked {
        Ok(l) => l,
        Err(refusal) => return Ok(Admission::Refused { refusal }),
    };
    let decision = match &admit.budget {
        Some(b) => {
            let limit = per_minute(&loaded.user.role, loaded.tenant.tenant.plan, &b.limits);
            Some(draw(limit, b.cost)?)
        }
        None => None,
    };
    Ok(Admission::Admitted {
        user: Box::new(loaded.user),
        tenant: Box::new(loaded.tenant.tenant),
        decision,
    })
}

/// The principal's rows in one D1 round trip (three reads in one batch): the user of this
/// tenant, the token's session if it is that user's, and the tenant (deleted or not).
pub async fn load(
    db: &Db,
    tenant_id: &str,
    user_id: &str,
    session_id: &str,
) -> Result<Option<Loaded>> {
    let rows = db
        .read_batch(vec![
            db.stmt(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE users.id = ?1 AND users.tenant_id = ?2"),
                &args![user_id, tenant_id],
            )?,
            db.stmt(
                "SELECT id, user_id, revoked_at, expires_at FROM sessions WHERE id = ?1 AND user_id = ?2",
                &args![session_id, user_id],
            )?,
            db.stmt(
                &format!("SELECT {TENANT_COLUMNS}, tenants.deleted_at FROM tenants WHERE tenants.id = ?1"),
                &args![tenant_id],
            )?,
        ])
        .await?;
    let [users, sessions, tenants] = rows.as_slice() else {
        return Err(AppError::Internal(
            "d1: a batch of three reads answered otherwise".into(),
        ));
    };
    let (Some(user), Some(tenant)) = (
        first_row::<User>(users)?,
        first_row::<TenantRecord>(tenants)?,
    ) else {
        return Ok(None);
    };
    Ok(Some(Loaded {
        user,
        session: first_row(sessions)?,
        tenant,
    }))
}

async fn call(env: &Env, tenant_id: &str, req: &GateRequest) -> Result<worker::Response> {
    let stub = env
        .durable_object(bindings::TENANT_GATE)?
        .id_from_name(tenant_id)?
        .get_stub()?;
    let mut init = worker::RequestInit::new();
    init.with_method(worker::Method::Post)
        .with_body(Some(serde_json::to_string(req)?.into()));
    let request = worker::Request::new_with_init("https://tenant-gate/", &init)?;
    let response = stub.fetch_with_request(request).await?;
    if !(200..300).contains(&response.status_code()) {
        return Err(AppError::Internal(format!(
            "tenant gate answered {}",
            response.status_code()
        )));
    }
    Ok(response)
}

/// Asks the tenant's gate to admit a session token's caller.
pub async fn admit(env: &Env, admit: Admit) -> Result<Admission> {
    let tenant_id = admit.tenant_id.clone();
    Ok(call(env, &tenant_id, &GateRequest::Admit(admit))
        .await?
        .json()
        .await?)
}

/// Draws `cost` from the tenant's rate window (per minute, `limit` requests).
pub async fn draw(env: &Env, tenant_id: &str, limit: u32, cost: u32) -> Result<Decision> {
    Ok(
        call(env, tenant_id, &GateRequest::Draw(Draw { limit, cost }))
            .await?
            .json()
            .await?,
    )
}

/// Tells the tenant's gate that a committed write changed `scope`. Call it after the D1 write
/// and before answering, so the caller's next request already sees the change. An error is
/// passed on: the write stands, but the gate may serve the old state until its TTL runs out,
/// and the caller should know (repeating the request repeats the invalidation).
pub async fn invalidate(env: &Env, tenant_id: &str, scope: Scope) -> Result<()> {
    call(env, tenant_id, &GateRequest::Invalidate { scope }).await?;
    Ok(())
}

/// Registers a session's live WebSocket with the tenant's gate.
pub async fn live_opened(env: &Env, socket: LiveSocket) -> Result<()> {
    let tenant_id = socket.tenant_id.clone();
    call(env, &tenant_id, &GateRequest::LiveOpened(socket)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenants::model::Tenant;

    const NOW: i64 = 1_800_000_000_000;

    fn now() -> String {
        crate::platform::clock::rfc3339(NOW)
    }

    fn loaded(user_status: &str, tenant_status: &str) -> Loaded {
        Loaded {
            user: User {
                id: "usr_1".into(),
                tenant_id: "ten_1".into(),
                email: "a@b.io".into(),
                full_name: "Ada".into(),
                role: "admin".into(),
                status: user_status.into(),
                created_at: "2026-01-01T00:00:00.000Z".into(),
                last_login: None,
                avatar_url: None,
                bio: None,
                locale: None,
                timezone: None,
            },
            session: Some(SessionState {
                id: "ses_1".into(),
                user_id: "usr_1".into(),
                revoked_at: None,
                expires_at: crate::platform::clock::rfc3339(NOW + 3_600_000),
            }),
            tenant: TenantRecord {
                tenant: Tenant {
                    id: "ten_1".into(),
                    name: "Org".into(),
                    slug: "org".into(),
                    plan: Plan::Pro,
                    status: tenant_status.into(),
                    subscription_amount: 0.0,
                    subscription_start_date: None,
                    subscription_end_date: None,
                    quota_overrides: None,
                    created_at: "2026-01-01T00:00:00.000Z".into(),
                    updated_at: "2026-01-01T00:00:00.000Z".into(),
                },
                deleted_at: None,
            },
        }
    }

    fn ok() -> Loaded {
        loaded("active", "active")
    }

    fn filled() -> Cache {
        let mut c = Cache::default();
        let fill = c.begin_fill();
        assert!(c.finish_fill(fill, "ten_1", &ok(), NOW));
        c
    }

    fn limits() -> RateTable {
        RateTable {
            free: 100,
            starter: 300,
            pro: 1000,
            premium_custom: 3000,
            platform: 5000,
        }
    }

    fn admit_req(budget: bool) -> Admit {
        Admit {
            tenant_id: "ten_1".into(),
            user_id: "usr_1".into(),
            session_id: "ses_1".into(),
            budget: budget.then(|| Budget {
                cost: 1,
                limits: limits(),
            }),
        }
    }

    #[test]
    fn a_fill_is_served_from_the_cache_until_its_ttl_runs_out() {
        let c = filled();
        let hit = c.lookup("usr_1", "ses_1", NOW + 1_000).expect("a hit");
        assert_eq!(hit.user.full_name, "Ada");
        assert_eq!(hit.tenant.tenant.plan, Plan::Pro);
        assert!(c.lookup("usr_1", "ses_1", NOW + CACHE_TTL_MS - 1).is_some());
        assert!(c.lookup("usr_1", "ses_1", NOW + CACHE_TTL_MS).is_none());
    }

    #[test]
    fn an_unknown_session_or_user_is_a_miss() {
        let c = filled();
        assert!(c.lookup("usr_1", "ses_2", NOW).is_none(), "a new log-in");
        assert!(c.lookup("usr_2", "ses_1", NOW).is_none());
        assert!(Cache::default().lookup("usr_1", "ses_1", NOW).is_none());
    }

    #[test]
    fn a_fill_that_started_before_an_invalidation_is_not_cached() {
        let mut c = Cache::default();
        let fill = c.begin_fill();
        // A suspension commits and invalidates while the read is in flight.
        c.invalidate(&Scope::User {
            user_id: "usr_1".into(),
        });
        assert!(!c.finish_fill(fill, "ten_1", &ok(), NOW));
        assert!(c.lookup("usr_1", "ses_1", NOW).is_none());
        // A fill started after it is cached.
        let fill = c.begin_fill();
        assert!(c.finish_fill(fill, "ten_1", &ok(), NOW));
        assert!(c.lookup("usr_1", "ses_1", NOW).is_some());
    }

    #[test]
    fn another_tenants_rows_are_never_cached() {
        let mut c = Cache::default();
        let fill = c.begin_fill();
        assert!(!c.finish_fill(fill, "ten_2", &ok(), NOW));
        assert!(c.lookup("usr_1", "ses_1", NOW).is_none());
    }

    #[test]
    fn each_scope_clears_what_it_names() {
        let mut c = filled();
        c.invalidate(&Scope::Session {
            session_id: "ses_1".into(),
        });
        assert!(c.lookup("usr_1", "ses_1", NOW).is_none());

        let mut c = filled();
        c.invalidate(&Scope::User {
            user_id: "usr_1".into(),
        });
        assert!(
            c.users.is_empty() && c.sessions.is_empty(),
            "the user's sessions go too"
        );
        assert!(c.tenant.is_some());

        let mut c = filled();
        c.invalidate(&Scope::User {
            user_id: "usr_9".into(),
        });
        assert!(
            c.lookup("usr_1", "ses_1", NOW).is_some(),
            "another user stays"
        );

        let mut c = filled();
        c.invalidate(&Scope::Tenant);
        assert!(c.tenant.is_none() && c.users.is_empty() && c.sessions.is_empty());
    }

    #[test]
    fn a_live_session_of_an_active_account_passes() {
        assert_eq!(check(&ok(), "ten_1", "usr_1", &now()), Ok(()));
        assert_eq!(
            check(&loaded("active", "pending"), "ten_1", "usr_1", &now()),
            Ok(())
        );
    }

    #[test]
    fn ended_sessions_deleted_users_and_foreign_tokens_are_invalid() {
        let invalid = Err(Refusal::InvalidToken);
        let mut l = ok();
        l.session = None;
        assert_eq!(check(&l, "ten_1", "usr_1", &now()), invalid, "no session");
        let mut l = ok();
        l.session.as_mut().unwrap().revoked_at = Some(now());
        assert_eq!(check(&l, "ten_1", "usr_1", &now()), invalid, "revoked");
        let mut l = ok();
        l.session.as_mut().unwrap().expires_at = now();
        assert_eq!(check(&l, "ten_1", "usr_1", &now()), invalid, "expired");
        let mut l = ok();
        l.session.as_mut().unwrap().user_id = "usr_2".into();
        assert_eq!(
            check(&l, "ten_1", "usr_1", &now()),
            invalid,
            "someone else's"
        );
        assert_eq!(
            check(&loaded("deleted", "active"), "ten_1", "usr_1", &now()),
            invalid
        );
        assert_eq!(
            check(&ok(), "ten_2", "usr_1", &now()),
            invalid,
            "other tenant"
        );
        assert_eq!(
            check(&ok(), "ten_1", "usr_2", &now()),
            invalid,
            "other user"
        );
    }

    #[test]
    fn suspended_users_and_suspended_or_deleted_tenants_are_refused() {
        let suspended = Err(Refusal::Suspended);
        assert_eq!(
            check(&loaded("suspended", "active"), "ten_1", "usr_1", &now()),
            suspended
        );
        assert_eq!(
            check(&loaded("active", "suspended"), "ten_1", "usr_1", &now()),
            suspended
        );
        let mut l = ok();
        l.tenant.deleted_at = Some(now());
        assert_eq!(check(&l, "ten_1", "usr_1", &now()), suspended);
    }

    #[test]
    fn an_admitted_caller_draws_from_the_plans_budget_with_the_stored_role() {
        let mut asked = None;
        let answer = admission(Some(ok()), &admit_req(true), NOW, |limit, cost| {
            asked = Some((limit, cost));
            Ok(Decision::fail_open(limit, 60))
        })
        .unwrap();
        assert_eq!(asked, Some((1000, 1)), "the pro plan");
        let Admission::Admitted { user, decision, .. } = answer else {
            panic!("refused")
        };
        assert_eq!(user.role, "admin");
        assert_eq!(decision.map(|d| d.limit), Some(1000));

        let mut admin = ok();
        admin.user.role = "platform_admin".into();
        let answer = admission(Some(admin), &admit_req(true), NOW, |limit, _| {
            Ok(Decision::fail_open(limit, 60))
        })
        .unwrap();
        assert!(matches!(
            answer,
            Admission::Admitted { decision: Some(d), .. } if d.limit == 5000
        ));
    }

    #[test]
    fn refused_callers_and_unbudgeted_routes_draw_nothing() {
        let never = |_: u32, _: u32| -> Result<Decision> { panic!("drawn") };
        let answer = admission(None, &admit_req(true), NOW, never).unwrap();
        assert!(matches!(
            answer,
            Admission::Refused {
                refusal: Refusal::InvalidToken
            }
        ));
        let answer = admission(
            Some(loaded("suspended", "active")),
            &admit_req(true),
            NOW,
            never,
        )
        .unwrap();
        assert!(matches!(
            answer,
            Admission::Refused {
                refusal: Refusal::Suspended
            }
        ));
        let answer = admission(Some(ok()), &admit_req(false), NOW, never).unwrap();
        assert!(matches!(answer, Admission::Admitted { decision: None, .. }));
    }

    #[test]
    fn the_protocol_round_trips_through_json() {
        let req = GateRequest::Invalidate {
            scope: Scope::User {
                user_id: "usr_1".into(),
            },
        };
        let text = serde_json::to_string(&req).unwrap();
        assert_eq!(
            text,
            r#"{"op":"invalidate","scope":{"scope":"user","user_id":"usr_1"}}"#
        );
        let back: GateRequest = serde_json::from_str(&text).unwrap();
        assert!(matches!(
            back,
            GateRequest::Invalidate {
                scope: Scope::User { .. }
            }
        ));
        let admit: GateRequest = serde_json::from_str(
            &serde_json::to_string(&GateRequest::Admit(admit_req(true))).unwrap(),
        )
        .unwrap();
        assert!(matches!(admit, GateRequest::Admit(a) if a.budget.is_some()));
        let refused = serde_json::to_string(&Admission::Refused {
            refusal: Refusal::Suspended,
        })
        .unwrap();
        assert_eq!(refused, r#"{"outcome":"refused","refusal":"suspended"}"#);
    }
}

//! Identity: registration, log-in, token refresh with reuse detection, log-out, password change,
//! and the caller's own profile. Also owns roles, tokens, password hashing and the principal.

pub mod account;
pub mod gate;
pub mod jwt;
pub mod model;
pub mod password;
pub mod principal;
pub mod roles;
pub mod session;

use serde::Deserialize;
use serde_json::json;

use crate::args;
use crate::audit;
use crate::handler;
use crate::http::context::Ctx;
use crate::http::json::{self, Checks};
use crate::http::reply::Reply;
use crate::http::router::{Access, Route};
use crate::platform::config::Budget;
use crate::platform::crypto::sha256_hex;
use crate::platform::error::{AppError, Result};
use crate::platform::ids;
use crate::platform::plan::Plan;
use crate::platform::ratelimit;
use crate::tenants::{self, model::Tenant, model::TenantFields};
use crate::users::{self, model::User};
use gate::Scope;
use model::*;

pub fn routes() -> Vec<Route> {
    vec![
        Route::post("/api/v1/auth/register", Access::Public, handler!(register))
            .doc(
                "auth",
                "Create an organisation and its owner; returns tokens",
            )
            .body("RegisterRequest")
            .created("TokenResponse"),
        Route::post("/api/v1/auth/login", Access::Public, handler!(login))
            .doc("auth", "Log in with e-mail and password")
            .body("LoginRequest")
            .ok("TokenResponse"),
        Route::post("/api/v1/auth/refresh", Access::Public, handler!(refresh))
            .doc(
                "auth",
                "Exchange a refresh token for a new pair (rotation; reuse revokes the family)",
            )
            .body("RefreshRequest")
            .ok("TokenResponse"),
        Route::post("/api/v1/auth/logout", Access::Session, handler!(logout))
            .doc("auth", "Revoke the refresh token's session")
            .body("LogoutRequest")
            .no_content(),
        Route::post(
            "/api/v1/auth/password",
            Access::Session,
            handler!(change_password),
        )
        .doc(
            "auth",
            "Change the password; ends the user's other sessions",
        )
        .body("ChangePasswordRequest")
        .no_content(),
        Route::get("/api/v1/auth/me", Access::Session, handler!(me))
            .doc("auth", "The calling user, their tenant and role")
            .ok("MeResponse"),
    ]
}

fn invalid_credentials() -> AppError {
    AppError::Unauthorized(
        "invalid_credentials",
        "The e-mail or password is incorrect.".into(),
    )
}

pub(crate) fn suspended() -> AppError {
    AppError::Forbidden(
        "account_suspended",
        "This account or its organisation is suspended.".into(),
    )
}

/// Failed attempts are counted before the password is checked and given back when it was
/// right, so concurrent guesses cannot all slip in between a check and a spend: of N parallel
/// wrong passwords exactly `limit` are checked and the rest are refused.
pub(crate) struct Reservation<'a> {
    cx: &'a Ctx,
    taken: Vec<(String, Budget)>,
}

impl<'a> Reservation<'a> {
    /// Draws one attempt from every budget at once (one round trip; the first budget's
    /// decision goes into the response headers). When one refuses, the draws that were
    /// allowed are given back before the 429 answers, so a refused attempt costs nothing.
    pub(crate) async fn take(
        cx: &'a Ctx,
        budgets: Vec<(String, Budget)>,
    ) -> Result<Reservation<'a>> {
        let draws = budgets.iter().enumerate().map(|(i, (key, b))| async move {
            if i == 0 {
                cx.limit(key, b.limit, b.window_secs, 1).await
            } else {
                ratelimit::draw(&cx.env, key, b.limit, b.window_secs, 1).await
            }
        });
        let decisions = futures_util::future::join_all(draws).await;
        let mut held = Reservation {
            cx,
            taken: Vec::new(),
        };
        let mut refused = None;
        for ((key, b), d) in budgets.into_iter().zip(decisions) {
            if d.allowed {
                held.taken.push((key, b));
            } else {
                refused = refused.max(Some(d.retry_after_secs.max(1)));
            }
        }
        match refused {
            None => Ok(held),
            Some(retry_after_secs) => {
                refund(&cx.env, &held.taken).await;
                Err(AppError::RateLimited { retry_after_secs })
            }
        }
    }

    /// The attempt was not a failure: it costs nothing. Given back after the response is
    /// sent (the caller does not wait for it).
    pub(crate) fn give_back(self) {
        let env = self.cx.env.clone();
        let taken = self.taken;
        self.cx.defer(async move { refund(&env, &taken).await });
    }
}

async fn refund(env: &worker::Env, taken: &[(String, Budget)]) {
    let back = taken
        .iter()
        .map(|(key, b)| ratelimit::refund_draw(env, key, b.window_secs, 1));
    futures_util::future::join_all(back).await;
}

/// A log-in's budgets: per client IP and e-mail, and per e-mail across all IPs.
fn login_budgets(cx: &Ctx, email: &str) -> Vec<(String, Budget)> {
    let b = cx.config.auth_budgets;
    vec![
        (format!("login:{}:{email}", cx.client.ip), b.login),
        (format!("login-account:{email}"), b.account),
    ]
}

pub(crate) fn token_response(
    cx: &Ctx,
    status: u16,
    user: User,
    tenant: Tenant,
    access: String,
    refresh: String,
) -> Result<Reply> {
    Reply::data(
        status,
        &TokenResponse {
            access_token: access,
            refresh_token: refresh,
            token_type: "Bearer".into(),
            expires_in: cx.config.access_ttl_secs,
            user,
            tenant,
        },
    )
}

async fn register(cx: Ctx) -> Result<Reply> {
    let body: RegisterRequest = cx.json()?;
    let mut checks = Checks::new();
    let email = checks.take("email", json::email(&body.email));
    let password = checks.take("password", json::password(&body.password));
    let full_name = checks.take("full_name", json::text(&body.full_name, 1, 200));
    let org_name = checks.take(
        "organization_name",
        json::text(&body.organization_name, 1, 200),
    );
    let slug = checks.take("organization_slug", json::slug(&body.organization_slug));
    checks.finish()?;
    let (email, password, full_name, org_name, slug) = (
        email.unwrap_or_default(),
        password.unwrap_or_default(),
        full_name.unwrap_or_default(),
        org_name.unwrap_or_default(),
        slug.unwrap_or_default(),
    );

    let b = cx.config.auth_budgets.register;
    let d = cx
        .limit(
            &format!("register:{}", cx.client.ip),
            b.limit,
            b.window_secs,
            1,
        )
        .await;
    if !d.allowed {
        return Err(AppError::RateLimited {
            retry_after_secs: d.retry_after_secs,
        });
    }

    let db = cx.db()?;
    if users::db::email_taken(&db, &email).await? {
        return Err(AppError::Conflict(
            "An account with this e-mail already exists.".into(),
        ));
    }
    if tenants::db::slug_taken(&db, &slug).await? {
        return Err(AppError::Conflict(
            "This organization_slug is taken.".into(),
        ));
    }
    let password_hash = password::hash(&password).await?;
    let created = create_owner(
        &cx,
        &db,
        NewOwner {
            email,
            full_name,
            org_name,
            slug,
            password_hash,
        },
        "auth.register",
        |_, _| Ok(Vec::new()),
    )
    .await?;
    created.reply(&cx, 201)
}

/// A new organisation and its owner, as registration makes them (also a first sign-in with
/// Google or GitHub, whose owner has no password).
pub(crate) struct NewOwner {
    pub email: String,
    pub full_name: String,
    pub org_name: String,
    pub slug: String,
    /// A PBKDF2 hash, or `password::NO_PASSWORD` for an account that signs in elsewhere.
    pub password_hash: String,
}

pub(crate) struct Created {
    pub user: User,
    pub tenant: Tenant,
    pub access_token: String,
    pub refresh_token: String,
}

impl Created {
    pub(crate) fn reply(self, cx: &Ctx, status: u16) -> Result<Reply> {
        token_response(
            cx,
            status,
            self.user,
            self.tenant,
            self.access_token,
            self.refresh_token,
        )
    }
}

/// Creates the tenant, its owner and their first session in one batch, with the audit entry
/// `action` and the statements `extra` makes for the new (tenant id, user id).
pub(crate) async fn create_owner(
    cx: &Ctx,
    db: &crate::platform::db::Db,
    owner: NewOwner,
    action: &'static str,
    extra: impl FnOnce(&str, &str) -> Result<Vec<worker::D1PreparedStatement>>,
) -> Result<Created> {
    let tenant_id = ids::new_id("ten");
    let user_id = ids::new_id("usr");
    let now = cx.now();
    let fields = TenantFields {
        name: Some(owner.org_name),
        plan: Some(Plan::Free),
        status: Some("active".into()),
        subscription_amount: Some(0.0),
        subscription_start_date: None,
        subscription_end_date: None,
        quota_overrides: None,
    };
    let issued = session::start(cx, db, &user_id, &tenant_id, "owner")?;
    let mut stmts = vec![
        tenants::db::insert_stmt(db, &tenant_id, &owner.slug, &fields, &now)?,
        db.stmt(
            "INSERT INTO users (id, tenant_id, email, full_name, role, status, password_hash, \
             created_at, updated_at, last_login) VALUES (?1, ?2, ?3, ?4, 'owner', 'active', ?5, ?6, ?6, ?6)",
            &args![user_id.as_str(), tenant_id.as_str(), owner.email.as_str(), owner.full_name, owner.password_hash, now.as_str()],
        )?,
    ];
    stmts.extend(issued.stmts);
    stmts.extend(extra(&tenant_id, &user_id)?);
    stmts.push(
        audit::entry(cx, action)
            .tenant(tenant_id.as_str())
            .actor(Some(user_id.clone()), Some(owner.email.clone()))
            .target("tenant", tenant_id.as_str())
            .stmt(db)?,
    );
    db.batch(stmts).await?;
    let user = users::db::get(db, &tenant_id, &user_id)
        .await?
        .ok_or_else(|| AppError::Internal("registered user vanished".into()))?;
    let tenant = tenants::db::get(db, &tenant_id)
        .await?
        .ok_or_else(|| AppError::Internal("registered tenant vanished".into()))?;
    Ok(Created {
        user,
        tenant,
        access_token: issued.access_token,
        refresh_token: issued.refresh_token,
    })
}

async fn login(cx: Ctx) -> Result<Reply> {
    let body: LoginRequest = cx.json()?;
    let email = json::email(&body.email).map_err(|m| AppError::field("email", m))?;
    if body.password.is_empty() || body.password.chars().count() > 128 {
        return Err(AppError::field("password", "must be 1–128 characters"));
    }
    let attempt = Reservation::take(&cx, login_budgets(&cx, &email)).await?;

    let db = cx.db()?;
    let found = users::db::credentials_by_email(&db, &email).await?;
    // Unknown e-mails are checked against a dummy hash: same answer, similar time.
    let stored = found
        .as_ref()
        .map(|c| c.password_hash.as_str())
        .unwrap_or(password::DUMMY_HASH);
    let matches = password::verify(&body.password, stored).await?;
    // A wrong password for a known e-mail is filed under that user's tenant, so its admins
    // see the attempts in their audit trail and report; unknown e-mails belong to no tenant.
    let tenant_of_email = found.as_ref().map(|c| c.user.tenant_id.clone());
    let found = found.filter(|c| matches && c.user.status != "deleted");
    let Some(cred) = found else {
        let mut entry = audit::entry(&cx, "auth.login_failed")
            .actor(None, Some(email.clone()))
            .meta(json!({"email": email}));
        if let Some(tenant_id) = tenant_of_email {
            entry = entry.tenant(tenant_id);
        }
        entry.write(&db).await?;
        return Err(invalid_credentials());
    };
    // The password was right: this attempt is not a failure.
    attempt.give_back();
    let user = cred.user;
    if !account::account_usable(
        &user.status,
        &cred.tenant.tenant.status,
        cred.tenant.deleted_at.as_deref(),
    ) {
        audit::entry(&cx, "auth.login_refused")
            .tenant(user.tenant_id.as_str())
            .actor(Some(user.id.clone()), Some(user.email.clone()))
            .write(&db)
            .await?;
        return Err(suspended());
    }
    let issued = session::start(&cx, &db, &user.id, &user.tenant_id, &user.role)?;
    let now = cx.now();
    let mut stmts = issued.stmts;
    stmts.push(db.stmt(
        "UPDATE users SET last_login = ?2 WHERE id = ?1",
        &args![user.id.as_str(), now.as_str()],
    )?);
    stmts.push(
        audit::entry(&cx, "auth.login")
            .tenant(user.tenant_id.as_str())
            .actor(Some(user.id.clone()), Some(user.email.clone()))
            .stmt(&db)?,
    );
    db.batch(stmts).await?;
    let user = User {
        last_login: Some(now),
        ..user
    };
    token_response(
        &cx,
        200,
        user,
        cred.tenant.tenant,
        issued.access_token,
        issued.refresh_token,
    )
}

#[derive(Deserialize)]
struct RefreshRow {
    session_id: String,
    used_at: Option<String>,
    revoked_at: Option<String>,
    expires_at: String,
    user_id: String,
    tenant_id: String,
    email: String,
    role: String,
    status: String,
    tenant_status: String,
    tenant_deleted_at: Option<String>,
}

async fn refresh(cx: Ctx) -> Result<Reply> {
    let body: RefreshRequest = cx.json()?;
    let invalid =
        || AppError::Unauthorized("invalid_token", "The refresh token is not valid.".into());
    if body.refresh_token.is_empty() || body.refresh_token.len() > 200 {
        return Err(AppError::field("refresh_token", "must be a refresh token"));
    }
    let db = cx.db()?;
    let hash = sha256_hex(body.refresh_token.as_bytes());
    let row: RefreshRow = db
        .one(
            "SELECT rt.session_id, rt.used_at, s.revoked_at, s.expires_at, u.id AS user_id, \
             u.tenant_id, u.email, u.role, u.status, t.status AS tenant_status, \
             t.deleted_at AS tenant_deleted_at \
             FROM refresh_tokens rt JOIN sessions s ON s.id = rt.session_id \
             JOIN users u ON u.id = rt.user_id JOIN tenants t ON t.id = u.tenant_id \
             WHERE rt.token_hash = ?1",
            &args![hash.as_str()],
        )
        .await?
        .ok_or_else(invalid)?;
    let now = cx.now();
    if row.revoked_at.is_some() || row.expires_at <= now {
        return Err(invalid());
    }
    // A spent token presented again means it leaked: end the whole family.
    let reused = || async {
        db.batch(vec![
            session::revoke_stmt(&db, &row.session_id, "refresh_token_reuse", &now)?,
            audit::entry(&cx, "auth.refresh_reuse")
                .tenant(row.tenant_id.as_str())
                .actor(Some(row.user_id.clone()), Some(row.email.clone()))
                .target("session", row.session_id.as_str())
                .stmt(&db)?,
        ])
        .await?;
        gate::invalidate(
            &cx.env,
            &row.tenant_id,
            Scope::Session {
                session_id: row.session_id.clone(),
            },
        )
        .await?;
        Err::<Reply, _>(AppError::Unauthorized(
            "token_reused",
            "This refresh token was already used; the session has been revoked.".into(),
        ))
    };
    if row.used_at.is_some() {
        return reused().await;
    }
    if !account::account_usable(
        &row.status,
        &row.tenant_status,
        row.tenant_deleted_at.as_deref(),
    ) {
        return Err(suspended());
    }
    let spent = db
        .run(
            "UPDATE refresh_tokens SET used_at = ?2 WHERE token_hash = ?1 AND used_at IS NULL",
            &args![hash.as_str(), now.as_str()],
        )
        .await?;
    if spent == 0 {
        return reused().await;
    }
    let new_refresh = crate::platform::crypto::random_token(session::REFRESH_PREFIX);
    db.batch(vec![session::refresh_stmt(
        &cx,
        &db,
        &new_refresh,
        &row.session_id,
        &row.user_id,
    )?])
    .await?;
    let access = session::access_token(
        &cx,
        &row.user_id,
        &row.tenant_id,
        &row.role,
        &row.session_id,
    );
    let user = users::db::get(&db, &row.tenant_id, &row.user_id)
        .await?
        .ok_or_else(invalid)?;
    let tenant = tenants::db::get(&db, &row.tenant_id)
        .await?
        .ok_or_else(invalid)?;
    token_response(&cx, 200, user, tenant, access, new_refresh)
}

async fn logout(cx: Ctx) -> Result<Reply> {
    let body: LogoutRequest = cx.json()?;
    let p = cx.principal()?;
    let user_id = p.user_id()?;
    let db = cx.db()?;
    #[derive(Deserialize)]
    struct Row {
        session_id: String,
    }
    let row: Option<Row> = db
        .one(
            "SELECT session_id FROM refresh_tokens WHERE token_hash = ?1 AND user_id = ?2",
            &args![sha256_hex(body.refresh_token.as_bytes()), user_id],
        )
        .await?;
    // Unknown or foreign tokens get the same 204: logging out never reveals token validity.
    if let Some(row) = row {
        db.batch(vec![
            session::revoke_stmt(&db, &row.session_id, "logout", &cx.now())?,
            audit::entry(&cx, "auth.logout")
                .target("session", row.session_id.as_str())
                .stmt(&db)?,
        ])
        .await?;
        gate::invalidate(
            &cx.env,
            &p.tenant_id,
            Scope::Session {
                session_id: row.session_id,
            },
        )
        .await?;
    }
    Ok(Reply::no_content())
}

async fn change_password(cx: Ctx) -> Result<Reply> {
    let body: ChangePasswordRequest = cx.json()?;
    let p = cx.principal()?;
    let user_id = p.user_id()?.to_string();
    let new_password =
        json::password(&body.new_password).map_err(|m| AppError::field("new_password", m))?;
    if body.current_password.is_empty() || body.current_password.chars().count() > 128 {
        return Err(AppError::field(
            "current_password",
            "must be 1–128 characters",
        ));
    }
    if body.current_password == new_password {
        return Err(AppError::field(
            "new_password",
            "must differ from the current password",
        ));
    }
    let budget = (format!("password:{user_id}"), cx.config.auth_budgets.login);
    let attempt = Reservation::take(&cx, vec![budget]).await?;
    let db = cx.db()?;
    let stored = users::db::password_hash(&db, &p.tenant_id, &user_id)
        .await?
        .ok_or(AppError::NotFound)?;
    if !password::verify(&body.current_password, &stored).await? {
        audit::entry(&cx, "auth.password_change_failed")
            .target("user", user_id.as_str())
            .write(&db)
            .await?;
        return Err(AppError::Forbidden(
            "invalid_credentials",
            "The current password is incorrect.".into(),
        ));
    }
    attempt.give_back();
    let hash = password::hash(&new_password).await?;
    let now = cx.now();
    db.batch(vec![
        db.stmt(
            "UPDATE users SET password_hash = ?3, updated_at = ?4 WHERE id = ?1 AND tenant_id = ?2",
            &args![user_id.as_str(), p.tenant_id.as_str(), hash, now.as_str()],
        )?,
        session::revoke_all_stmt(
            &db,
            &user_id,
            p.session_id.as_deref(),
            "password_changed",
            &now,
        )?,
        audit::entry(&cx, "auth.password_changed")
            .target("user", user_id.as_str())
            .stmt(&db)?,
    ])
    .await?;
    // The user's other sessions ended: the gate forgets all of them (and refills the caller's).
    gate::invalidate(&cx.env, &p.tenant_id, Scope::User { user_id }).await?;
    Ok(Reply::no_content())
}

/// Answers from what admitting the caller loaded: no read of its own.
async fn me(cx: Ctx) -> Result<Reply> {
    let p = cx.principal()?;
    p.user_id()?;
    let profile = p
        .profile
        .clone()
        .ok_or_else(|| AppError::Internal("a session principal without its profile".into()))?;
    Reply::ok(&MeResponse {
        role: profile.user.role.clone(),
        user: profile.user,
        tenant: profile.tenant,
    })
}

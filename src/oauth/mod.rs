//! Sign in with Google and GitHub: the OAuth 2.0 authorization-code flow with PKCE (S256),
//! state bound to the browser by a short-lived encrypted HttpOnly cookie, Google's ID token
//! verified against its JWKS (RS256 through WebCrypto) and GitHub's primary verified e-mail;
//! the callback hands the frontend a one-time code, traded at `POST /auth/oauth/exchange` for
//! the usual token pair. Accounts: a linked identity logs in; the verified e-mail of an
//! existing user is linked only when that user confirms while logged in; anyone else gets a
//! new organisation with themselves as its password-less owner. Identities are listed and
//! unlinked (never the last way in).

pub mod db;
pub mod flow;
pub mod idtoken;
pub mod model;
pub mod provider;

use serde_json::json;

use crate::args;
use crate::audit;
use crate::auth::{self, account, password, session};
use crate::handler;
use crate::http::context::Ctx;
use crate::http::reply::{Body, Reply};
use crate::http::router::{q, Access, QueryDoc, Route};
use crate::platform::clock;
use crate::platform::config::OAuthClient;
use crate::platform::crypto::{random_token, sha256_hex};
use crate::platform::error::{AppError, Result};
use crate::platform::ids;
use crate::users::{self, db::Credentials};
use db::Verified;
use flow::{FlowState, Provider};
use model::*;

/// How long the callback's one-time code may wait for the frontend's exchange.
const CODE_TTL_SECS: i64 = 120;
/// How long a pending link waits for its user to confirm it.
const LINK_TTL_SECS: i64 = 15 * 60;

const START_QUERY: &[QueryDoc] = &[q(
    "redirect_uri",
    "string",
    "Where the flow returns (one of OAUTH_REDIRECT_ALLOW, exactly)",
)];
const CALLBACK_QUERY: &[QueryDoc] = &[
    q("code", "string", "The provider's authorization code"),
    q("state", "string", "The state sent at start"),
];

pub fn routes() -> Vec<Route> {
    vec![
        Route::get(
            "/api/v1/auth/oauth/:provider/start",
            Access::Public,
            handler!(start),
        )
        .doc(
            "auth",
            "Start signing in with `google` or `github`: 302 to the provider (state cookie, PKCE S256); 422 for a redirect_uri not in OAUTH_REDIRECT_ALLOW, 503 `oauth_provider_unavailable` when the provider is not configured",
        )
        .query(START_QUERY)
        .upstream()
        .raw(302, "text/plain"),
        Route::get(
            "/api/v1/auth/oauth/:provider/callback",
            Access::Public,
            handler!(callback),
        )
        .doc(
            "auth",
            "The provider's return: checks state and cookie, trades the code with the PKCE verifier, verifies the identity, then 302 to the redirect_uri with `?code=` (one-time); refusals are problem+json",
        )
        .query(CALLBACK_QUERY)
        .upstream()
        .raw(302, "text/plain"),
        Route::post("/api/v1/auth/oauth/exchange", Access::Public, handler!(exchange))
            .doc(
                "auth",
                "Trade the callback's one-time code for tokens (log-in, or a new organisation on a first sign-in); 409 `link_required` with a `link_token` when the e-mail belongs to an existing user",
            )
            .body("ExchangeRequest")
            .ok("TokenResponse"),
        Route::post(
            "/api/v1/auth/oauth/:provider/link",
            Access::Session,
            handler!(link),
        )
        .doc(
            "auth",
            "Link the provider identity of a `link_required` exchange to the logged-in user it belongs to",
        )
        .body("LinkRequest")
        .created("Identity"),
        Route::get("/api/v1/auth/identities", Access::Session, handler!(list))
            .doc("auth", "The caller's linked Google and GitHub identities")
            .list("Identity"),
        Route::delete(
            "/api/v1/auth/identities/:id",
            Access::Session,
            handler!(unlink),
        )
        .doc(
            "auth",
            "Unlink an identity; 409 when it is the caller's last way to log in",
        )
        .no_content(),
    ]
}

fn provider_of(cx: &Ctx) -> Result<(Provider, OAuthClient)> {
    let provider = Provider::parse(cx.param("provider")).ok_or(AppError::NotFound)?;
    let client = match provider {
        Provider::Google => cx.config.oauth.google.clone(),
        Provider::Github => cx.config.oauth.github.clone(),
    };
    let client = client.ok_or_else(|| {
        AppError::refused(
            503,
            "oauth_provider_unavailable",
            format!(
                "Signing in with {} is not configured on this deployment.",
                provider.as_str()
            ),
        )
    })?;
    Ok((provider, client))
}

/// The URL the provider sends the browser back to.
fn callback_url(cx: &Ctx, provider: Provider) -> String {
    let base = cx.config.oauth.public_base.as_deref().unwrap_or(&cx.origin);
    format!("{base}/api/v1/auth/oauth/{}/callback", provider.as_str())
}

fn secure(cx: &Ctx) -> bool {
    callback_url(cx, Provider::Google).starts_with("https://")
}

fn redirect(location: String, cookie: String) -> Reply {
    Reply {
        status: 302,
        headers: vec![
            ("Location".into(), location),
            ("Set-Cookie".into(), cookie),
            ("Cache-Control".into(), "no-store".into()),
        ],
        body: Body::Empty,
    }
}

async fn start(cx: Ctx) -> Result<Reply> {
    let (provider, client) = provider_of(&cx)?;
    let redirect_uri = cx
        .query("redirect_uri")
        .filter(|u| !u.is_empty())
        .ok_or_else(|| AppError::field("redirect_uri", "is required"))?;
    if !flow::redirect_allowed(&cx.config.oauth.redirect_allow, redirect_uri) {
        return Err(AppError::field(
            "redirect_uri",
            "must be one of the allowed redirect URIs (OAUTH_REDIRECT_ALLOW), exactly",
        ));
    }
    let state = FlowState {
        provider: provider.as_str().into(),
        state: random_token(""),
        verifier: random_token(""),
        nonce: random_token(""),
        redirect_uri: redirect_uri.to_string(),
        expires_ms: cx.now_ms + flow::FLOW_TTL_SECS * 1000,
    };
    let callback = callback_url(&cx, provider);
    let challenge = flow::pkce_challenge(&state.verifier);
    let (endpoint, scope, nonce) = match provider {
        Provider::Google => (
            provider::google_discovery(&cx.config, cx.now_ms)
                .await?
                .authorization_endpoint,
            "openid email profile",
            Some(state.nonce.as_str()),
        ),
        Provider::Github => (
            format!("{}/login/oauth/authorize", cx.config.oauth.github_base),
            "read:user user:email",
            None,
        ),
    };
    let location = flow::AuthorizeRequest {
        endpoint: &endpoint,
        client_id: &client.id,
        callback: &callback,
        scope,
        state: &state.state,
        challenge: &challenge,
        nonce,
    }
    .url()
    .map_err(|why| AppError::Internal(format!("oauth: {why}")))?;
    let cookie = flow::set_cookie(
        provider,
        &state.seal(&cx.config.encryption_key),
        secure(&cx),
        flow::FLOW_TTL_SECS,
    );
    Ok(redirect(location, cookie))
}

fn state_refused() -> AppError {
    AppError::refused(
        400,
        "oauth_state_invalid",
        "This sign-in was not started in this browser, has expired, or its state does not match; start again.",
    )
}

async fn callback(cx: Ctx) -> Result<Reply> {
    let (provider, client) = provider_of(&cx)?;
    let cookie = cx.header("Cookie").unwrap_or_default();
    let started = flow::cookie_value(&cookie, &flow::cookie_name(provider))
        .and_then(|sealed| FlowState::open(&cx.config.encryption_key, sealed, provider, cx.now_ms))
        .ok_or_else(state_refused)?;
    let state = cx.query("state").unwrap_or_default();
    if !started.state_matches(state) {
        return Err(state_refused());
    }
    if let Some(error) = cx.query_nonempty("error") {
        return Err(AppError::refused(
            400,
            "oauth_denied",
            format!("The provider did not authorise the sign-in ({error})."),
        ));
    }
    let code = cx
        .query_nonempty("code")
        .filter(|c| c.len() <= 2048)
        .ok_or_else(|| AppError::field("code", "is required"))?;
    let callback = callback_url(&cx, provider);
    let verified = match provider {
        Provider::Google => google_identity(&cx, &client, code, &started, &callback).await,
        Provider::Github => github_identity(&cx, &client, code, &started.verifier, &callback).await,
    };
    let db = cx.db()?;
    let verified = match verified {
        Ok(v) => v,
        Err(e) => {
            if e.status() < 500 {
                audit::entry(&cx, "auth.oauth_refused")
                    .meta(json!({"provider": provider.as_str(), "code": e.code()}))
                    .write(&db)
                    .await?;
            }
            return Err(e);
        }
    };
    let code = random_token("oac_");
    let expires = clock::rfc3339(cx.now_ms + CODE_TTL_SECS * 1000);
    db.batch(vec![db::insert_code_stmt(
        &db,
        &sha256_hex(code.as_bytes()),
        &verified,
        &cx.now(),
        &expires,
    )?])
    .await?;
    let location = flow::with_code(&started.redirect_uri, &code)
        .map_err(|why| AppError::Internal(format!("oauth: {why}")))?;
    Ok(redirect(
        location,
        flow::set_cookie(provider, "", secure(&cx), 0),
    ))
}

/// A provider e-mail in the form user e-mails are kept (lower case), or a refusal.
fn email_of(raw: &str) -> Result<String> {
    crate::http::json::email(raw).map_err(|_| {
        AppError::refused(
            403,
            "email_not_verified",
            "The provider gave no usable e-mail address for this account.",
        )
    })
}

async fn google_identity(
    cx: &Ctx,
    client: &OAuthClient,
    code: &str,
    started: &FlowState,
    callback: &str,
) -> Result<Verified> {
    let cfg = &cx.config;
    let doc = provider::google_discovery(cfg, cx.now_ms).await?;
    let token =
        provider::google_id_token(cfg, &doc, client, code, &started.verifier, callback).await?;
    let jws = idtoken::split(&token)?;
    let kid = jws.header.kid.as_deref();
    let mut keys = provider::google_keys(cfg, &doc.jwks_uri, cx.now_ms, false).await?;
    if keys.key_for(kid).is_none() {
        // Keys rotate: one the kept set lacks may be new.
        keys = provider::google_keys(cfg, &doc.jwks_uri, cx.now_ms, true).await?;
    }
    let key = keys.key_for(kid).ok_or(idtoken::Rejection::UnknownKey)?;
    let valid = idtoken::verify_rs256(key, jws.signing_input.as_bytes(), &jws.signature)
        .await
        .map_err(|why| {
            worker::console_error!("oauth: google key refused by webcrypto: {why}");
            AppError::from(idtoken::Rejection::UnknownKey)
        })?;
    if !valid {
        return Err(idtoken::Rejection::Signature.into());
    }
    let who = idtoken::check_claims(
        &jws.claims,
        &idtoken::Expected {
            issuer: &cfg.oauth.google_issuer,
            client_id: &client.id,
            nonce: &started.nonce,
            now_secs: cx.now_ms / 1000,
        },
    )?;
    let email = email_of(&who.email)?;
    Ok(Verified {
        provider: "google".into(),
        subject: who.subject,
        full_name: flow::display_name(&who.name, &email),
        email,
    })
}

async fn github_identity(
    cx: &Ctx,
    client: &OAuthClient,
    code: &str,
    verifier: &str,
    callback: &str,
) -> Result<Verified> {
    let token = provider::github_access_token(&cx.config, client, code, verifier, callback).await?;
    let (user, emails) = provider::github_user(&cx.config, &token).await?;
    let email = flow::primary_verified_email(&emails).ok_or_else(|| {
        AppError::refused(
            403,
            "email_not_verified",
            "This GitHub account has no verified primary e-mail address.",
        )
    })?;
    let email = email_of(email)?;
    Ok(Verified {
        provider: "github".into(),
        subject: user.id.to_string(),
        full_name: flow::display_name(user.name.as_deref().unwrap_or(&user.login), &email),
        email,
    })
}

fn code_refused() -> AppError {
    AppError::refused(
        400,
        "invalid_code",
        "The sign-in code is unknown, expired or already used; sign in again.",
    )
}

async fn exchange(cx: Ctx) -> Result<Reply> {
    let body: ExchangeRequest = cx.json()?;
    if body.code.is_empty() || body.code.len() > 200 {
        return Err(AppError::field("code", "must be a sign-in code"));
    }
    let db = cx.db()?;
    let now = cx.now();
    let v = db::spend_code(&db, &sha256_hex(body.code.as_bytes()), &now)
        .await?
        .ok_or_else(code_refused)?;
    if let Some(email) = db::linked_email(&db, &v.provider, &v.subject).await? {
        let cred = users::db::credentials_by_email(&db, &email)
            .await?
            .ok_or_else(code_refused)?;
        return log_in(&cx, cred, &v).await;
    }
    if let Some(cred) = users::db::credentials_by_email(&db, &v.email).await? {
        return Err(link_required(&cx, cred, &v).await);
    }
    // A new organisation costs what a registration does.
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
    let (org_name, slug) = flow::new_organisation(
        &v.full_name,
        &v.email,
        &hex::encode(crate::platform::crypto::random_bytes::<3>()),
    );
    let identity_id = ids::new_id("oid");
    let created = auth::create_owner(
        &cx,
        &db,
        auth::NewOwner {
            email: v.email.clone(),
            full_name: v.full_name.clone(),
            org_name,
            slug,
            password_hash: password::NO_PASSWORD.into(),
        },
        "auth.oauth_register",
        |tenant_id, user_id| {
            Ok(vec![db::insert_identity_stmt(
                &db,
                &identity_id,
                tenant_id,
                user_id,
                &v,
                &now,
            )?])
        },
    )
    .await?;
    created.reply(&cx, 200)
}

async fn log_in(cx: &Ctx, cred: Credentials, v: &Verified) -> Result<Reply> {
    let db = cx.db()?;
    let user = cred.user;
    if !account::account_usable(
        &user.status,
        &cred.tenant.tenant.status,
        cred.tenant.deleted_at.as_deref(),
    ) {
        audit::entry(cx, "auth.login_refused")
            .tenant(user.tenant_id.as_str())
            .actor(Some(user.id.clone()), Some(user.email.clone()))
            .meta(json!({"provider": v.provider}))
            .write(&db)
            .await?;
        return Err(auth::suspended());
    }
    let issued = session::start(cx, &db, &user.id, &user.tenant_id, &user.role)?;
    let now = cx.now();
    let mut stmts = issued.stmts;
    stmts.push(db.stmt(
        "UPDATE users SET last_login = ?2 WHERE id = ?1",
        &args![user.id.as_str(), now.as_str()],
    )?);
    stmts.push(
        audit::entry(cx, "auth.oauth_login")
            .tenant(user.tenant_id.as_str())
            .actor(Some(user.id.clone()), Some(user.email.clone()))
            .meta(json!({"provider": v.provider}))
            .stmt(&db)?,
    );
    db.batch(stmts).await?;
    let user = users::model::User {
        last_login: Some(now),
        ..user
    };
    auth::token_response(
        cx,
        200,
        user,
        cred.tenant.tenant,
        issued.access_token,
        issued.refresh_token,
    )
}

/// The e-mail is an existing user's: never linked silently. A link token waits for that
/// user to confirm while logged in; the answer is `409 link_required` carrying it.
async fn link_required(cx: &Ctx, cred: Credentials, v: &Verified) -> AppError {
    let pending = async {
        let db = cx.db()?;
        let token = random_token("olk_");
        let hash = sha256_hex(token.as_bytes());
        let now = cx.now();
        let expires_at = clock::rfc3339(cx.now_ms + LINK_TTL_SECS * 1000);
        db.batch(vec![
            db::insert_pending_stmt(
                &db,
                &db::PendingLink {
                    token_hash: &hash,
                    tenant_id: &cred.user.tenant_id,
                    user_id: &cred.user.id,
                    now: &now,
                    expires_at: &expires_at,
                },
                v,
            )?,
            audit::entry(cx, "auth.oauth_link_required")
                .tenant(cred.user.tenant_id.as_str())
                .target("user", cred.user.id.as_str())
                .meta(json!({"provider": v.provider}))
                .stmt(&db)?,
        ])
        .await?;
        Ok::<_, AppError>((token, expires_at))
    };
    match pending.await {
        Ok((token, expires_at)) => AppError::refused(
            409,
            "link_required",
            format!(
                "An account with this e-mail already exists. Log in to it and confirm the link with POST /api/v1/auth/oauth/{}/link.",
                v.provider
            ),
        )
        .with("link_token", token)
        .with("provider", v.provider.clone())
        .with("email", v.email.clone())
        .with("expires_at", expires_at),
        Err(e) => e,
    }
}

async fn link(cx: Ctx) -> Result<Reply> {
    let provider = Provider::parse(cx.param("provider")).ok_or(AppError::NotFound)?;
    let body: LinkRequest = cx.json()?;
    if body.link_token.is_empty() || body.link_token.len() > 200 {
        return Err(AppError::field("link_token", "must be a link token"));
    }
    let p = cx.principal()?;
    let user_id = p.user_id()?.to_string();
    let db = cx.db()?;
    let now = cx.now();
    let v = db::spend_link(
        &db,
        &sha256_hex(body.link_token.as_bytes()),
        &p.tenant_id,
        &user_id,
        provider.as_str(),
        &now,
    )
    .await?
    .ok_or_else(|| {
        AppError::refused(
            400,
            "invalid_link_token",
            "The link token is unknown, expired, already used, or for another account or provider.",
        )
    })?;
    let id = ids::new_id("oid");
    db.batch(vec![
        db::insert_identity_stmt(&db, &id, &p.tenant_id, &user_id, &v, &now)?,
        audit::entry(&cx, "auth.oauth_linked")
            .target("oauth_identity", id.as_str())
            .meta(json!({"provider": v.provider}))
            .stmt(&db)?,
    ])
    .await?;
    let identity = db::get(&db, &p.tenant_id, &user_id, &id)
        .await?
        .ok_or_else(|| AppError::Internal("a linked identity vanished".into()))?;
    Reply::created(&identity, Some(format!("/api/v1/auth/identities/{id}")))
}

async fn list(cx: Ctx) -> Result<Reply> {
    let p = cx.principal()?;
    let items = db::list(&cx.db()?, &p.tenant_id, p.user_id()?).await?;
    Reply::list(&items, None)
}

async fn unlink(cx: Ctx) -> Result<Reply> {
    let p = cx.principal()?;
    let user_id = p.user_id()?;
    let id = cx.param("id");
    let db = cx.db()?;
    let removed = db::unlink(&db, &p.tenant_id, user_id, id, password::NO_PASSWORD).await?;
    if removed == 0 {
        return Err(match db::get(&db, &p.tenant_id, user_id, id).await? {
            None => AppError::NotFound,
            Some(_) => AppError::refused(
                409,
                "last_login_method",
                "This is the account's last way to log in; link another identity first.",
            ),
        });
    }
    audit::entry(&cx, "auth.oauth_unlinked")
        .target("oauth_identity", id)
        .write(&db)
        .await?;
    Ok(Reply::no_content())
}

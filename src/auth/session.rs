//! Sessions (refresh-token families) and the token pair handed out at log-in and refresh.

use worker::D1PreparedStatement;

use super::jwt::{self, AccessClaims};
use crate::args;
use crate::http::context::Ctx;
use crate::platform::crypto::{random_token, sha256_hex};
use crate::platform::db::Db;
use crate::platform::error::Result;
use crate::platform::{clock, ids};

pub const REFRESH_PREFIX: &str = "rt_";

pub struct Issued {
    pub access_token: String,
    pub refresh_token: String,
    /// Statements that persist the session and refresh token (run them in the caller's batch).
    pub stmts: Vec<D1PreparedStatement>,
}

pub fn access_token(
    cx: &Ctx,
    user_id: &str,
    tenant_id: &str,
    role: &str,
    session_id: &str,
) -> String {
    jwt::issue(
        &cx.config.jwt_secret,
        AccessClaims {
            iss: cx.config.jwt_issuer.clone(),
            aud: cx.config.jwt_audience.clone(),
            sub: user_id.into(),
            tenant: tenant_id.into(),
            role: role.into(),
            sid: session_id.into(),
        },
        cx.now_ms,
        cx.config.access_ttl_secs,
    )
}

/// Starts a new session for the user.
pub fn start(cx: &Ctx, db: &Db, user_id: &str, tenant_id: &str, role: &str) -> Result<Issued> {
    let session_id = ids::new_id("ses");
    let refresh_token = random_token(REFRESH_PREFIX);
    let expires = clock::rfc3339(cx.now_ms + cx.config.refresh_ttl_secs * 1000);
    let stmts = vec![
        db.stmt(
            "INSERT INTO sessions (id, user_id, tenant_id, created_at, expires_at, ip, user_agent) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            &args![
                session_id.as_str(),
                user_id,
                tenant_id,
                cx.now(),
                expires,
                cx.client.ip.as_str(),
                cx.client.user_agent.as_str()
            ],
        )?,
        refresh_stmt(cx, db, &refresh_token, &session_id, user_id)?,
    ];
    Ok(Issued {
        access_token: access_token(cx, user_id, tenant_id, role, &session_id),
        refresh_token,
        stmts,
    })
}

pub fn refresh_stmt(
    cx: &Ctx,
    db: &Db,
    token: &str,
    session_id: &str,
    user_id: &str,
) -> Result<D1PreparedStatement> {
    db.stmt(
        "INSERT INTO refresh_tokens (token_hash, session_id, user_id, created_at) VALUES (?1, ?2, ?3, ?4)",
        &args![sha256_hex(token.as_bytes()), session_id, user_id, cx.now()],
    )
}

pub fn revoke_stmt(
    db: &Db,
    session_id: &str,
    reason: &str,
    now: &str,
) -> Result<D1PreparedStatement> {
    db.stmt(
        "UPDATE sessions SET revoked_at = ?2, revoked_reason = ?3 WHERE id = ?1 AND revoked_at IS NULL",
        &args![session_id, now, reason],
    )
}

/// Ends every live session of a user, except `keep` (the caller's own, on password change).
pub fn revoke_all_stmt(
    db: &Db,
    user_id: &str,
    keep: Option<&str>,
    reason: &str,
    now: &str,
) -> Result<D1PreparedStatement> {
    db.stmt(
        "UPDATE sessions SET revoked_at = ?3, revoked_reason = ?4 \
         WHERE user_id = ?1 AND revoked_at IS NULL AND id != ?2",
        &args![user_id, keep.unwrap_or(""), now, reason],
    )
}

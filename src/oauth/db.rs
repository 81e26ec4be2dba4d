//! SQL for sign-in codes, pending links and linked identities. One statement per transition:
//! a code or link token is spent by one conditional `UPDATE … RETURNING`.

use serde::Deserialize;
use worker::D1PreparedStatement;

use super::model::Identity;
use crate::args;
use crate::platform::db::Db;
use crate::platform::error::Result;

/// A provider identity as the callback verified it.
#[derive(Debug, Clone, Deserialize)]
pub struct Verified {
    pub provider: String,
    pub subject: String,
    pub email: String,
    pub full_name: String,
}

pub fn insert_code_stmt(
    db: &Db,
    code_hash: &str,
    v: &Verified,
    now: &str,
    expires_at: &str,
) -> Result<D1PreparedStatement> {
    db.stmt(
        "INSERT INTO oauth_codes (code_hash, provider, subject, email, full_name, created_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        &args![
            code_hash,
            v.provider.as_str(),
            v.subject.as_str(),
            v.email.as_str(),
            v.full_name.as_str(),
            now,
            expires_at
        ],
    )
}

/// Spends a live code: only the first of any number of concurrent trades gets its identity.
pub async fn spend_code(db: &Db, code_hash: &str, now: &str) -> Result<Option<Verified>> {
    db.one(
        "UPDATE oauth_codes SET used_at = ?2 \
         WHERE code_hash = ?1 AND used_at IS NULL AND expires_at > ?2 \
         RETURNING provider, subject, email, full_name",
        &args![code_hash, now],
    )
    .await
}

/// The e-mail of the user an identity is linked to (their log-in key).
pub async fn linked_email(db: &Db, provider: &str, subject: &str) -> Result<Option<String>> {
    #[derive(Deserialize)]
    struct Row {
        email: String,
    }
    Ok(db
        .one::<Row>(
            "SELECT u.email FROM oauth_identities i JOIN users u ON u.id = i.user_id \
             WHERE i.provider = ?1 AND i.subject = ?2",
            &args![provider, subject],
        )
        .await?
        .map(|r| r.email))
}

pub fn insert_identity_stmt(
    db: &Db,
    id: &str,
    tenant_id: &str,
    user_id: &str,
    v: &Verified,
    now: &str,
) -> Result<D1PreparedStatement> {
    db.stmt(
        "INSERT INTO oauth_identities (id, tenant_id, user_id, provider, subject, email, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        &args![
            id,
            tenant_id,
            user_id,
            v.provider.as_str(),
            v.subject.as_str(),
            v.email.as_str(),
            now
        ],
    )
}

pub struct PendingLink<'a> {
    pub token_hash: &'a str,
    pub tenant_id: &'a str,
    pub user_id: &'a str,
    pub now: &'a str,
    pub expires_at: &'a str,
}

pub fn insert_pending_stmt(db: &Db, p: &PendingLink, v: &Verified) -> Result<D1PreparedStatement> {
    db.stmt(
        "INSERT INTO oauth_pending_links (token_hash, tenant_id, user_id, provider, subject, email, \
         created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        &args![
            p.token_hash,
            p.tenant_id,
            p.user_id,
            v.provider.as_str(),
            v.subject.as_str(),
            v.email.as_str(),
            p.now,
            p.expires_at
        ],
    )
}

/// Spends a live link token of this user for this provider.
pub async fn spend_link(
    db: &Db,
    token_hash: &str,
    tenant_id: &str,
    user_id: &str,
    provider: &str,
    now: &str,
) -> Result<Option<Verified>> {
    db.one(
        "UPDATE oauth_pending_links SET used_at = ?5 \
         WHERE token_hash = ?1 AND tenant_id = ?2 AND user_id = ?3 AND provider = ?4 \
         AND used_at IS NULL AND expires_at > ?5 \
         RETURNING provider, subject, email, '' AS full_name",
        &args![token_hash, tenant_id, user_id, provider, now],
    )
    .await
}

const IDENTITY_COLUMNS: &str = "id, provider, subject, email, created_at";

pub async fn get(db: &Db, tenant_id: &str, user_id: &str, id: &str) -> Result<Option<Identity>> {
    db.one(
        &format!(
            "SELECT {IDENTITY_COLUMNS} FROM oauth_identities \
             WHERE id = ?1 AND tenant_id = ?2 AND user_id = ?3"
        ),
        &args![id, tenant_id, user_id],
    )
    .await
}

pub async fn list(db: &Db, tenant_id: &str, user_id: &str) -> Result<Vec<Identity>> {
    db.all(
        &format!(
            "SELECT {IDENTITY_COLUMNS} FROM oauth_identities WHERE tenant_id = ?1 AND user_id = ?2 \
             ORDER BY created_at, id"
        ),
        &args![tenant_id, user_id],
    )
    .await
}

/// Unlinks the caller's identity unless it is their last way in: they keep a password, or
/// another linked identity. Decided inside the one statement, so two concurrent unlinks of a
/// password-less user's last two identities cannot both succeed.
pub async fn unlink(
    db: &Db,
    tenant_id: &str,
    user_id: &str,
    id: &str,
    no_password: &str,
) -> Result<u64> {
    db.run(
        "DELETE FROM oauth_identities WHERE id = ?1 AND tenant_id = ?2 AND user_id = ?3 \
         AND (EXISTS (SELECT 1 FROM users WHERE id = ?3 AND password_hash != ?4) \
              OR (SELECT COUNT(*) FROM oauth_identities WHERE user_id = ?3) > 1)",
        &args![id, tenant_id, user_id, no_password],
    )
    .await
}

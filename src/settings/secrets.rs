//! The tenant's secret store: values that `http` steps reference as `{{secrets.NAME}}`.
//! Write-only: values are sealed with AES-256-GCM under `ENCRYPTION_KEY` and never returned.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::args;
use crate::audit;
use crate::handler;
use crate::http::context::Ctx;
use crate::http::reply::Reply;
use crate::http::router::{Access, Route};
use crate::platform::crypto;
use crate::platform::db::Db;
use crate::platform::error::{AppError, Result};

/// A tenant keeps at most this many secrets.
pub const MAX_SECRETS: usize = 100;

pub fn routes() -> Vec<Route> {
    vec![
        Route::get("/api/v1/secrets", Access::TenantAdmin, handler!(list))
            .doc(
                "secrets",
                "Names of the tenant's secrets (all of them, at most 100; never the values)",
            )
            .list("Secret"),
        Route::get("/api/v1/secrets/:name", Access::TenantAdmin, handler!(get))
            .doc(
                "secrets",
                "Whether a secret is set, and when (never its value)",
            )
            .ok("Secret"),
        Route::put("/api/v1/secrets/:name", Access::TenantAdmin, handler!(put))
            .doc(
                "secrets",
                "Set or replace a secret (names: A-Z, 0-9, _; starting with a letter)",
            )
            .body("PutSecret")
            .ok("Secret"),
        Route::delete(
            "/api/v1/secrets/:name",
            Access::TenantAdmin,
            handler!(remove),
        )
        .doc("secrets", "Delete a secret")
        .no_content(),
    ]
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Secret {
    pub name: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSecret {
    /// 1–4096 characters; stored encrypted, never shown again.
    pub value: String,
}

pub fn name_ok(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn aad(tenant_id: &str, name: &str) -> String {
    format!("secret:{tenant_id}:{name}")
}

fn checked_name(cx: &Ctx) -> Result<String> {
    let name = cx.param("name");
    if name_ok(name) {
        Ok(name.to_string())
    } else {
        Err(AppError::field(
            "name",
            "must be 1–64 characters of A-Z, 0-9 and _, starting with a letter",
        ))
    }
}

const COLUMNS: &str = "name, created_at, updated_at";

async fn find(db: &Db, tenant_id: &str, name: &str) -> Result<Option<Secret>> {
    db.one(
        &format!("SELECT {COLUMNS} FROM tenant_secrets WHERE tenant_id = ?1 AND name = ?2"),
        &args![tenant_id, name],
    )
    .await
}

async fn list(cx: Ctx) -> Result<Reply> {
    let rows: Vec<Secret> = cx
        .db()?
        .all(
            &format!("SELECT {COLUMNS} FROM tenant_secrets WHERE tenant_id = ?1 ORDER BY name"),
            &args![cx.tenant_id()?],
        )
        .await?;
    Reply::list(&rows, None)
}

async fn get(cx: Ctx) -> Result<Reply> {
    let name = checked_name(&cx)?;
    let secret = find(&cx.db()?, cx.tenant_id()?, &name)
        .await?
        .ok_or(AppError::NotFound)?;
    Reply::ok(&secret)
}

async fn put(cx: Ctx) -> Result<Reply> {
    let name = checked_name(&cx)?;
    let body: PutSecret = cx.json()?;
    if body.value.is_empty() || body.value.chars().count() > 4096 {
        return Err(AppError::field("value", "must be 1–4096 characters"));
    }
    let tenant_id = cx.tenant_id()?.to_string();
    let db = cx.db()?;
    let existing = find(&db, &tenant_id, &name).await?;
    if existing.is_none() {
        let count: Vec<Secret> = db
            .all(
                &format!("SELECT {COLUMNS} FROM tenant_secrets WHERE tenant_id = ?1"),
                &args![tenant_id.as_str()],
            )
            .await?;
        if count.len() >= MAX_SECRETS {
            return Err(AppError::Conflict(format!(
                "A tenant can keep at most {MAX_SECRETS} secrets; delete one first."
            )));
        }
    }
    let sealed = crypto::seal(
        &cx.config.encryption_key,
        &aad(&tenant_id, &name),
        body.value.as_bytes(),
    );
    let now = cx.now();
    db.batch(vec![
        db.stmt(
            "INSERT INTO tenant_secrets (tenant_id, name, value, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (tenant_id, name) \
             DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            &args![tenant_id.as_str(), name.as_str(), sealed, now.as_str()],
        )?,
        audit::entry(&cx, "secret.set")
            .target("secret", name.as_str())
            .meta(json!({"replaced": existing.is_some()}))
            .stmt(&db)?,
    ])
    .await?;
    let secret = find(&db, &tenant_id, &name)
        .await?
        .ok_or(AppError::NotFound)?;
    Reply::ok(&secret)
}

async fn remove(cx: Ctx) -> Result<Reply> {
    let name = checked_name(&cx)?;
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    find(&db, tenant_id, &name)
        .await?
        .ok_or(AppError::NotFound)?;
    db.batch(vec![
        db.stmt(
            "DELETE FROM tenant_secrets WHERE tenant_id = ?1 AND name = ?2",
            &args![tenant_id, name.as_str()],
        )?,
        audit::entry(&cx, "secret.deleted")
            .target("secret", name.as_str())
            .stmt(&db)?,
    ])
    .await?;
    Ok(Reply::no_content())
}

/// Decrypted values of the named secrets that exist (for a step about to run).
pub async fn load(
    db: &Db,
    key: &[u8; 32],
    tenant_id: &str,
    names: &[String],
) -> Result<BTreeMap<String, String>> {
    #[derive(Deserialize)]
    struct Row {
        name: String,
        value: String,
    }
    if names.is_empty() {
        return Ok(BTreeMap::new());
    }
    let rows: Vec<Row> = db
        .all(
            "SELECT name, value FROM tenant_secrets WHERE tenant_id = ?1",
            &args![tenant_id],
        )
        .await?;
    let mut out = BTreeMap::new();
    for row in rows.into_iter().filter(|r| names.contains(&r.name)) {
        let plain = crypto::open(key, &aad(tenant_id, &row.name), &row.value)
            .map_err(|e| AppError::internal(format!("secret {}: {e}", row.name)))?;
        out.insert(row.name, String::from_utf8_lossy(&plain).into_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_are_upper_snake_case() {
        for ok in ["KEY", "IMAGE_API_KEY", "A1"] {
            assert!(name_ok(ok), "{ok}");
        }
        for bad in ["", "key", "1KEY", "MY-KEY", "A.B", &"A".repeat(65)] {
            assert!(!name_ok(bad), "{bad}");
        }
    }
}

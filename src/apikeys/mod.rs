//! Tenant API keys for server-to-server calls: shown once, stored as SHA-256, prefix visible,
//! scoped (`read`, `write`, `admin`), optionally expiring, revocable.

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::args;
use crate::audit;
use crate::auth::principal::API_KEY_PREFIX;
use crate::handler;
use crate::http::context::Ctx;
use crate::http::json::{self, Checks};
use crate::http::pagination::PAGING;
use crate::http::reply::Reply;
use crate::http::router::{Access, Route};
use crate::platform::crypto::{random_token, sha256_hex};
use crate::platform::db::Filter;
use crate::platform::error::{AppError, Result};
use crate::platform::{clock, ids};

pub const SCOPES: [&str; 3] = ["read", "write", "admin"];

pub fn routes() -> Vec<Route> {
    vec![
        Route::get("/api/v1/api-keys", Access::TenantAdmin, handler!(list))
            .doc(
                "api-keys",
                "List the tenant's active API keys (never the key itself)",
            )
            .list("ApiKey")
            .query(&PAGING),
        Route::post("/api/v1/api-keys", Access::TenantAdmin, handler!(create))
            .doc(
                "api-keys",
                "Create an API key; the key is shown only in this answer",
            )
            .body("CreateApiKey")
            .created("CreatedApiKey"),
        Route::get("/api/v1/api-keys/:id", Access::TenantAdmin, handler!(get))
            .doc("api-keys", "One API key")
            .ok("ApiKey"),
        Route::delete(
            "/api/v1/api-keys/:id",
            Access::TenantAdmin,
            handler!(revoke),
        )
        .doc("api-keys", "Revoke an API key")
        .no_content(),
    ]
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    pub name: String,
    /// Any of `read`, `write`, `admin`.
    pub scopes: Vec<String>,
    /// RFC 3339; must be in the future.
    pub expires_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub prefix: String,
    pub scopes: Vec<String>,
    pub created_at: String,
    pub expires_at: Option<String>,
    pub last_used_at: Option<String>,
}

/// The answer to creation: the key itself appears here and nowhere else.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub api_key: ApiKey,
    pub key: String,
}

#[derive(Deserialize)]
struct Row {
    id: String,
    name: String,
    prefix: String,
    scopes: String,
    created_at: String,
    expires_at: Option<String>,
    last_used_at: Option<String>,
}

impl From<Row> for ApiKey {
    fn from(r: Row) -> Self {
        ApiKey {
            id: r.id,
            name: r.name,
            prefix: r.prefix,
            scopes: serde_json::from_str(&r.scopes).unwrap_or_default(),
            created_at: r.created_at,
            expires_at: r.expires_at,
            last_used_at: r.last_used_at,
        }
    }
}

const COLUMNS: &str =
    "api_keys.id, api_keys.name, api_keys.prefix, api_keys.scopes, api_keys.created_at, \
     api_keys.expires_at, api_keys.last_used_at";

pub fn validate_scopes(scopes: &[String]) -> std::result::Result<Vec<String>, String> {
    if scopes.is_empty() {
        return Err("must name at least one scope".into());
    }
    let mut out: Vec<String> = Vec::new();
    for s in scopes {
        if !SCOPES.contains(&s.as_str()) {
            return Err(format!("unknown scope `{s}`; use: {}", SCOPES.join(", ")));
        }
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    Ok(out)
}

async fn find(cx: &Ctx, id: &str) -> Result<ApiKey> {
    let row: Row = cx
        .db()?
        .one(
            &format!("SELECT {COLUMNS} FROM api_keys WHERE id = ?1 AND tenant_id = ?2 AND revoked_at IS NULL"),
            &args![id, cx.tenant_id()?],
        )
        .await?
        .ok_or(AppError::NotFound)?;
    Ok(row.into())
}

async fn list(cx: Ctx) -> Result<Reply> {
    let page = cx.page()?;
    let mut q = Filter::new(
        &format!("SELECT {COLUMNS} FROM api_keys WHERE api_keys.tenant_id = ?1 AND api_keys.revoked_at IS NULL"),
        args![cx.tenant_id()?],
    );
    q.page(&page, "api_keys");
    let rows: Vec<Row> = cx.db()?.all(&q.sql, &q.args).await?;
    let keys: Vec<ApiKey> = rows.into_iter().map(Into::into).collect();
    let (keys, next) = page.finish(keys, |k| (k.created_at.clone(), k.id.clone()));
    Reply::list(&keys, next.as_deref())
}

async fn get(cx: Ctx) -> Result<Reply> {
    Reply::ok(&find(&cx, cx.param("id")).await?)
}

async fn create(cx: Ctx) -> Result<Reply> {
    let body: CreateApiKey = cx.json()?;
    let mut checks = Checks::new();
    let name = checks.take("name", json::text(&body.name, 1, 100));
    let scopes = checks.take("scopes", validate_scopes(&body.scopes));
    let expires_at = match &body.expires_at {
        None => None,
        Some(e) => match clock::normalize_time(e) {
            Ok(t) if t > cx.now() => Some(t),
            Ok(_) => {
                checks.add("expires_at", "must be in the future");
                None
            }
            Err(m) => {
                checks.add("expires_at", m);
                None
            }
        },
    };
    checks.finish()?;
    let tenant_id = cx.tenant_id()?.to_string();
    let key = random_token(API_KEY_PREFIX);
    let api_key = ApiKey {
        id: ids::new_id("key"),
        name: name.unwrap_or_default(),
        prefix: key.chars().take(12).collect(),
        scopes: scopes.unwrap_or_default(),
        created_at: cx.now(),
        expires_at,
        last_used_at: None,
    };
    let db = cx.db()?;
    let created_by = cx.principal()?.user_id.clone();
    db.batch(vec![
        db.stmt(
            "INSERT INTO api_keys (id, tenant_id, name, prefix, key_hash, scopes, created_by, created_at, expires_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            &args![
                api_key.id.as_str(),
                tenant_id.as_str(),
                api_key.name.as_str(),
                api_key.prefix.as_str(),
                sha256_hex(key.as_bytes()),
                serde_json::to_string(&api_key.scopes)?,
                created_by,
                api_key.created_at.as_str(),
                api_key.expires_at.clone()
            ],
        )?,
        audit::entry(&cx, "api_key.created")
            .target("api_key", api_key.id.as_str())
            .meta(json!({"name": api_key.name, "scopes": api_key.scopes}))
            .stmt(&db)?,
    ])
    .await?;
    let location = format!("/api/v1/api-keys/{}", api_key.id);
    Reply::created(&CreatedApiKey { api_key, key }, Some(location))
}

async fn revoke(cx: Ctx) -> Result<Reply> {
    let key = find(&cx, cx.param("id")).await?;
    let db = cx.db()?;
    db.batch(vec![
        db.stmt(
            "UPDATE api_keys SET revoked_at = ?3 WHERE id = ?1 AND tenant_id = ?2",
            &args![key.id.as_str(), cx.tenant_id()?, cx.now()],
        )?,
        audit::entry(&cx, "api_key.revoked")
            .target("api_key", key.id.as_str())
            .stmt(&db)?,
    ])
    .await?;
    Ok(Reply::no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_known_and_deduplicated() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            validate_scopes(&s(&["read", "read", "write"])).unwrap(),
            s(&["read", "write"])
        );
        assert!(validate_scopes(&s(&[])).is_err());
        assert!(validate_scopes(&s(&["root"])).is_err());
    }
}

//! Tenant settings (callback URL and its signing secret, allowed origins, conversation
//! auto-assignment) and the tenant's secret store.

pub mod callbacks;
pub mod secrets;

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::args;
use crate::audit;
use crate::handler;
use crate::http::context::Ctx;
use crate::http::json::{self, Checks};
use crate::http::reply::Reply;
use crate::http::router::{Access, Route};
use crate::platform::config::Config;
use crate::platform::crypto;
use crate::platform::db::Db;
use crate::platform::egress::Policy;
use crate::platform::error::{AppError, Result};

pub fn routes() -> Vec<Route> {
    let mut routes = vec![
        Route::get("/api/v1/settings", Access::TenantAdmin, handler!(get))
            .doc("settings", "The tenant's settings")
            .ok("Settings"),
        Route::patch("/api/v1/settings", Access::TenantAdmin, handler!(update))
            .doc(
                "settings",
                "Change the callback URL (null removes it), allowed origins or auto-assignment",
            )
            .body("UpdateSettings")
            .ok("Settings"),
        Route::post(
            "/api/v1/settings/callback-secret",
            Access::TenantAdmin,
            handler!(rotate_secret),
        )
        .doc(
            "settings",
            "Rotate the callback signing secret; the new secret is shown only in this answer",
        )
        .ok("CallbackSecret"),
    ];
    routes.extend(secrets::routes());
    routes
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Settings {
    /// Where execution end events are POSTed (signed when a callback secret is set).
    pub callback_url: Option<String>,
    /// Stored for the tenant's frontends; the CORS layer answers the deployment's `ALLOWED_ORIGINS`.
    pub allowed_origins: Vec<String>,
    pub auto_assign_conversations: bool,
    /// Whether deliveries carry `X-Tenantry-Signature` (rotate the secret to set one).
    pub callback_secret_set: bool,
    pub updated_at: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSettings {
    /// An https URL the egress policy allows (no internal address, no credentials; see the
    /// README), or null to stop callbacks.
    #[serde(default, deserialize_with = "json::double_option")]
    #[schema(value_type = Option<String>)]
    pub callback_url: Option<Option<String>>,
    /// Up to 20 origins like `https://app.example.com`.
    pub allowed_origins: Option<Vec<String>>,
    pub auto_assign_conversations: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CallbackSecret {
    /// HMAC-SHA256 key for `X-Tenantry-Signature`; shown only here.
    pub callback_secret: String,
    pub rotated_at: String,
}

#[derive(Deserialize)]
struct Row {
    callback_url: Option<String>,
    allowed_origins: String,
    auto_assign_conversations: i64,
    callback_secret: Option<String>,
    updated_at: Option<String>,
}

async fn row(db: &Db, tenant_id: &str) -> Result<Option<Row>> {
    db.one(
        "SELECT callback_url, allowed_origins, auto_assign_conversations, callback_secret, \
         updated_at FROM tenant_settings WHERE tenant_id = ?1",
        &args![tenant_id],
    )
    .await
}

fn to_settings(r: Option<Row>) -> Settings {
    match r {
        None => Settings {
            callback_url: None,
            allowed_origins: vec![],
            auto_assign_conversations: false,
            callback_secret_set: false,
            updated_at: None,
        },
        Some(r) => Settings {
            callback_url: r.callback_url,
            allowed_origins: serde_json::from_str(&r.allowed_origins).unwrap_or_default(),
            auto_assign_conversations: r.auto_assign_conversations != 0,
            callback_secret_set: r.callback_secret.is_some(),
            updated_at: r.updated_at,
        },
    }
}

pub struct CallbackTarget {
    pub url: String,
    pub secret: Option<String>,
}

fn callback_aad(tenant_id: &str) -> String {
    format!("callback:{tenant_id}")
}

/// Where and how to deliver the tenant's events, if it has a callback URL.
pub async fn callback_target(
    db: &Db,
    cfg: &Config,
    tenant_id: &str,
) -> Result<Option<CallbackTarget>> {
    let Some(r) = row(db, tenant_id).await? else {
        return Ok(None);
    };
    let Some(url) = r.callback_url else {
        return Ok(None);
    };
    let secret = match r.callback_secret {
        None => None,
        Some(sealed) => Some(
            crypto::open(&cfg.encryption_key, &callback_aad(tenant_id), &sealed)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .map_err(|e| AppError::internal(format!("callback secret: {e}")))?,
        ),
    };
    Ok(Some(CallbackTarget { url, secret }))
}

/// A callback URL as stored: an https URL (without credentials) that `egress` allows.
pub fn callback_url(value: &str, egress: &Policy) -> std::result::Result<String, String> {
    let v = value.trim();
    if v.len() > 2000 {
        return Err("must be at most 2000 characters".into());
    }
    egress.check_str(v)?;
    Ok(v.to_string())
}

pub fn origin(value: &str) -> std::result::Result<String, String> {
    let v = value.trim().trim_end_matches('/');
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"))
        .ok_or_else(|| format!("`{value}` is not an origin like https://app.example.com"))?;
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return Err(format!(
            "`{value}` is not an origin like https://app.example.com"
        ));
    }
    Ok(v.to_string())
}

async fn get(cx: Ctx) -> Result<Reply> {
    Reply::ok(&to_settings(row(&cx.db()?, cx.tenant_id()?).await?))
}

async fn update(cx: Ctx) -> Result<Reply> {
    let body: UpdateSettings = cx.json()?;
    let mut checks = Checks::new();
    let callback = match &body.callback_url {
        Some(Some(u)) => checks
            .take("callback_url", callback_url(u, &cx.egress()))
            .map(Some),
        Some(None) => Some(None),
        None => None,
    };
    let origins = body.allowed_origins.as_ref().and_then(|list| {
        if list.len() > 20 {
            checks.add("allowed_origins", "at most 20 origins");
            return None;
        }
        let parsed: std::result::Result<Vec<String>, String> =
            list.iter().map(|o| origin(o)).collect();
        checks.take("allowed_origins", parsed)
    });
    checks.finish()?;
    let tenant_id = cx.tenant_id()?.to_string();
    let db = cx.db()?;
    let current = to_settings(row(&db, &tenant_id).await?);
    let next_url = callback.clone().unwrap_or(current.callback_url);
    let next_origins = origins.clone().unwrap_or(current.allowed_origins);
    let next_assign = body
        .auto_assign_conversations
        .unwrap_or(current.auto_assign_conversations);
    db.batch(vec![
        db.stmt(
            "INSERT INTO tenant_settings (tenant_id, callback_url, allowed_origins, \
             auto_assign_conversations, updated_at) VALUES (?1, ?2, ?3, ?4, ?5) \
             ON CONFLICT (tenant_id) DO UPDATE SET callback_url = excluded.callback_url, \
             allowed_origins = excluded.allowed_origins, \
             auto_assign_conversations = excluded.auto_assign_conversations, \
             updated_at = excluded.updated_at",
            &args![
                tenant_id.as_str(),
                next_url,
                serde_json::to_string(&next_origins)?,
                next_assign,
                cx.now()
            ],
        )?,
        audit::entry(&cx, "settings.updated")
            .target("tenant", tenant_id.as_str())
            .meta(json!({"callback_url": callback, "allowed_origins": origins,
                         "auto_assign_conversations": body.auto_assign_conversations}))
            .stmt(&db)?,
    ])
    .await?;
    Reply::ok(&to_settings(row(&db, &tenant_id).await?))
}

async fn rotate_secret(cx: Ctx) -> Result<Reply> {
    let tenant_id = cx.tenant_id()?.to_string();
    let secret = crypto::random_token("whsec_");
    let sealed = crypto::seal(
        &cx.config.encryption_key,
        &callback_aad(&tenant_id),
        secret.as_bytes(),
    );
    let now = cx.now();
    let db = cx.db()?;
    db.batch(vec![
        db.stmt(
            "INSERT INTO tenant_settings (tenant_id, callback_secret, updated_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (tenant_id) DO UPDATE SET callback_secret = excluded.callback_secret, \
             updated_at = excluded.updated_at",
            &args![tenant_id.as_str(), sealed, now.as_str()],
        )?,
        audit::entry(&cx, "settings.callback_secret_rotated")
            .target("tenant", tenant_id.as_str())
            .stmt(&db)?,
    ])
    .await?;
    Reply::ok(&CallbackSecret {
        callback_secret: secret,
        rotated_at: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_urls_and_origins_are_checked() {
        let egress = Policy::new("127.0.0.1:9000", Some("https://api.tenantry.test")).unwrap();
        let check = |u: &str| callback_url(u, &egress);
        assert!(check("https://hooks.example.com/tenantry").is_ok());
        assert!(check("http://127.0.0.1:9000/cb").is_ok());
        for bad in [
            "ftp://x",
            "https://",
            "https://user:pw@x.com",
            "example.com",
            "http://hooks.example.com/",
            "https://127.0.0.1/cb",
            "https://169.254.169.254/",
            "https://localhost:9000/",
            "https://api.tenantry.test/api/v1/health",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
        assert_eq!(
            origin("https://app.example.com/").unwrap(),
            "https://app.example.com"
        );
        for bad in [
            "https://app.example.com/path",
            "app.example.com",
            "https://",
        ] {
            assert!(origin(bad).is_err(), "{bad}");
        }
    }
}

//! The tenant's LLM providers: `GET /providers`, `GET/PUT/DELETE /providers/:name` and
//! `POST /providers/:name/test` (tenant admins). Keys are sealed with AES-256-GCM under
//! `ENCRYPTION_KEY` (AAD `provider:{tenant}:{name}`) and write-only: answers show only
//! `key_set` and `key_last4`. `resolve` turns a provider name into a callable `Target` (the
//! tenant's key, else the deployment's on plans with `operator_llm_keys`).

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::adapters;
use super::gateway::{self, Target};
use super::model::{ProviderName, Wire};
use crate::args;
use crate::audit;
use crate::billing::plans::Feature;
use crate::handler;
use crate::http::context::Ctx;
use crate::http::json::{self as j, Checks};
use crate::http::reply::Reply;
use crate::http::router::{Access, Route};
use crate::platform::config::Config;
use crate::platform::crypto;
use crate::platform::db::Db;
use crate::platform::error::{AppError, Result};
use crate::platform::plan::Plan;

pub fn routes() -> Vec<Route> {
    vec![
        Route::get("/api/v1/providers", Access::TenantAdmin, handler!(list))
            .doc(
                "providers",
                "Every provider name with the tenant's settings (`local` is built in)",
            )
            .list("ProviderView"),
        Route::get(
            "/api/v1/providers/:name",
            Access::TenantAdmin,
            handler!(get),
        )
        .doc("providers", "One provider's settings (never its key)")
        .ok("ProviderView"),
        Route::put(
            "/api/v1/providers/:name",
            Access::TenantAdmin,
            handler!(put),
        )
        .doc(
            "providers",
            "Connect or change a provider (the first PUT needs `api_key`; an omitted key is kept)",
        )
        .body("PutProvider")
        .ok("ProviderView"),
        Route::delete(
            "/api/v1/providers/:name",
            Access::TenantAdmin,
            handler!(remove),
        )
        .doc(
            "providers",
            "Forget the tenant's settings and key for a provider",
        )
        .no_content(),
        Route::post(
            "/api/v1/providers/:name/test",
            Access::TenantAdmin,
            handler!(test),
        )
        .doc(
            "providers",
            "Make one tiny real call with the stored settings (not metered)",
        )
        .ok("ProviderTest"),
    ]
}

/// A provider as the tenant sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProviderView {
    pub name: ProviderName,
    /// `local` needs no settings; the others need a key (the tenant's, or the deployment's
    /// on plans with `operator_llm_keys`).
    pub builtin: bool,
    /// Whether the tenant saved settings for it.
    pub configured: bool,
    /// Whether it can be called now (configured or served by the deployment's key, enabled).
    pub usable: bool,
    pub key_set: bool,
    /// The stored key's last four characters.
    pub key_last4: Option<String>,
    /// Calls use the deployment's key (the tenant stored none).
    pub uses_deployment_key: bool,
    /// The tenant's base URL (`null`: the deployment's).
    pub base_url: Option<String>,
    /// The tenant's model (`null`: the deployment's default).
    pub model: Option<String>,
    /// The model calls use unless a request names one.
    pub effective_model: Option<String>,
    pub enabled: bool,
    /// The provider `POST /optimize` uses when the request names none.
    pub default: bool,
    /// Failures in a row (5 → skipped for 60 s).
    pub failures: i64,
    pub cooldown_until: Option<String>,
    /// The last failure, with any key removed.
    pub last_error: Option<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutProvider {
    /// Stored sealed, never shown again (only its last four characters). Omitted: kept.
    pub api_key: Option<String>,
    /// https (plain http only to `EGRESS_ALLOW` destinations), no credentials. `null`: the
    /// deployment's base URL. Required for `openai-compatible`.
    #[serde(default, deserialize_with = "j::double_option")]
    #[schema(value_type = Option<String>)]
    pub base_url: Option<Option<String>>,
    /// `null`: the deployment's default model.
    #[serde(default, deserialize_with = "j::double_option")]
    #[schema(value_type = Option<String>)]
    pub model: Option<Option<String>>,
    pub enabled: Option<bool>,
    /// Make this the tenant's default provider (`false` unsets it).
    pub default: Option<bool>,
}

/// A stored row.
#[derive(Debug, Clone, Deserialize)]
pub struct Row {
    pub name: String,
    pub key_sealed: Option<String>,
    pub key_last4: Option<String>,
    pub base_url: Option<String>,
    pub model: Option<String>,
    pub enabled: i64,
    pub is_default: i64,
    pub failures: i64,
    pub cooldown_until: Option<String>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

const COLUMNS: &str = "name, key_sealed, key_last4, base_url, model, enabled, is_default, \
                       failures, cooldown_until, last_error, created_at, updated_at";

fn aad(tenant_id: &str, name: ProviderName) -> String {
    format!("provider:{tenant_id}:{}", name.as_str())
}

/// The deployment's variable prefix of a provider (`OPENAI_API_BASE`, …).
pub fn prefix(name: ProviderName) -> &'static str {
    match name {
        ProviderName::OpenAi => "OPENAI",
        ProviderName::Anthropic => "ANTHROPIC",
        ProviderName::DeepSeek => "DEEPSEEK",
        ProviderName::Gemini => "GEMINI",
        ProviderName::OpenAiCompatible => "OPENAI_COMPATIBLE",
        ProviderName::Local => "LOCAL",
    }
}

/// The deployment's base URL for a provider (`*_API_BASE`, else the provider's own).
pub fn deployment_base(cfg: &Config, name: ProviderName) -> Option<String> {
    cfg.llm
        .vars(prefix(name))
        .and_then(|v| v.base.clone())
        .or_else(|| adapters::default_base(name).map(str::to_string))
}

fn deployment_model(cfg: &Config, name: ProviderName) -> Option<String> {
    cfg.llm
        .vars(prefix(name))
        .and_then(|v| v.model.clone())
        .or_else(|| Some(adapters::default_model(name).to_string()).filter(|m| !m.is_empty()))
}

fn deployment_key(cfg: &Config, plan: Plan, name: ProviderName) -> Option<String> {
    let key = cfg.llm.vars(prefix(name)).and_then(|v| v.key.clone())?;
    cfg.plans.require(plan, Feature::OperatorLlmKeys).ok()?;
    Some(key)
}

/// The provider named in a path: unknown names are 404.
fn named(cx: &Ctx) -> Result<ProviderName> {
    ProviderName::parse(cx.param("name")).ok_or(AppError::NotFound)
}

/// A named provider other than `local` (which has nothing to store).
fn configurable(cx: &Ctx) -> Result<ProviderName> {
    let name = named(cx)?;
    if name == ProviderName::Local {
        return Err(AppError::field(
            "name",
            "local is built in and has no settings",
        ));
    }
    Ok(name)
}

pub async fn rows(db: &Db, tenant_id: &str) -> Result<Vec<Row>> {
    db.all(
        &format!("SELECT {COLUMNS} FROM provider_configs WHERE tenant_id = ?1"),
        &args![tenant_id],
    )
    .await
}

pub async fn row(db: &Db, tenant_id: &str, name: ProviderName) -> Result<Option<Row>> {
    db.one(
        &format!("SELECT {COLUMNS} FROM provider_configs WHERE tenant_id = ?1 AND name = ?2"),
        &args![tenant_id, name.as_str()],
    )
    .await
}

/// The view of a provider from its row (if any), for a tenant on `plan`.
pub fn view(cfg: &Config, plan: Plan, name: ProviderName, row: Option<&Row>) -> ProviderView {
    let builtin = name == ProviderName::Local;
    let key_set = row.is_some_and(|r| r.key_sealed.is_some());
    let uses_deployment_key = !builtin && !key_set && deployment_key(cfg, plan, name).is_some();
    let enabled = row.is_none_or(|r| r.enabled != 0);
    let has_base =
        row.and_then(|r| r.base_url.as_ref()).is_some() || deployment_base(cfg, name).is_some();
    ProviderView {
        name,
        builtin,
        configured: row.is_some(),
        usable: builtin || ((key_set || uses_deployment_key) && enabled && has_base),
        key_set,
        key_last4: row.and_then(|r| r.key_last4.clone()),
        uses_deployment_key,
        base_url: row.and_then(|r| r.base_url.clone()),
        model: row.and_then(|r| r.model.clone()),
        effective_model: if builtin {
            Some("local".into())
        } else {
            row.and_then(|r| r.model.clone())
                .or_else(|| deployment_model(cfg, name))
        },
        enabled,
        default: row.is_some_and(|r| r.is_default != 0),
        failures: row.map_or(0, |r| r.failures),
        cooldown_until: row.and_then(|r| r.cooldown_until.clone()),
        last_error: row.and_then(|r| r.last_error.clone()),
        created_at: row.map(|r| r.created_at.clone()),
        updated_at: row.map(|r| r.updated_at.clone()),
    }
}

async fn list(cx: Ctx) -> Result<Reply> {
    let p = cx.principal()?;
    let stored = rows(&cx.db()?, &p.tenant_id).await?;
    let views: Vec<ProviderView> = ProviderName::ALL
        .into_iter()
        .map(|n| {
            let r = stored.iter().find(|r| r.name == n.as_str());
            view(&cx.config, p.plan, n, r)
        })
        .collect();
    Reply::list(&views, None)
}

async fn get(cx: Ctx) -> Result<Reply> {
    let name = named(&cx)?;
    let p = cx.principal()?;
    let r = row(&cx.db()?, &p.tenant_id, name).await?;
    Reply::ok(&view(&cx.config, p.plan, name, r.as_ref()))
}

/// A base URL a tenant may store: parsed, passing the egress policy, no query or fragment.
pub fn check_base_url(cfg: &Config, value: &str) -> std::result::Result<String, String> {
    let v = value.trim();
    if v.is_empty() || v.len() > 2048 {
        return Err("must be 1–2048 characters".into());
    }
    let url = cfg.egress.check_str(v)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err("may not carry a query or fragment".into());
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

fn check_key(value: &str) -> std::result::Result<String, String> {
    let v = value.trim();
    if v.len() < 8 || v.len() > 512 {
        return Err("must be 8–512 characters".into());
    }
    if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("may not contain spaces or control characters".into());
    }
    Ok(v.to_string())
}

pub fn check_model(value: &str) -> std::result::Result<String, String> {
    let v = value.trim();
    let ok = (1..=128).contains(&v.len())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._:-/@".contains(c));
    if ok {
        Ok(v.to_string())
    } else {
        Err("must be 1–128 characters of letters, digits and . _ : - / @".into())
    }
}

/// The last four characters of a key (all of a shorter one is never shown: keys are ≥ 8).
fn last4(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    chars[chars.len().saturating_sub(4)..].iter().collect()
}

async fn put(cx: Ctx) -> Result<Reply> {
    let name = configurable(&cx)?;
    let body: PutProvider = cx.json()?;
    let p = cx.principal()?;
    let tenant_id = p.tenant_id.clone();
    let db = cx.db()?;
    let existing = row(&db, &tenant_id, name).await?;
    let mut checks = Checks::new();
    let key = match &body.api_key {
        Some(k) => checks.take("api_key", check_key(k)),
        None => {
            if existing.as_ref().is_none_or(|r| r.key_sealed.is_none()) {
                checks.add(
                    "api_key",
                    "is required the first time a provider is connected",
                );
            }
            None
        }
    };
    let base_url = match &body.base_url {
        None => existing.as_ref().and_then(|r| r.base_url.clone()),
        Some(None) => None,
        Some(Some(u)) => checks.take("base_url", check_base_url(&cx.config, u)),
    };
    if name == ProviderName::OpenAiCompatible
        && base_url.is_none()
        && deployment_base(&cx.config, name).is_none()
        && !matches!(&body.base_url, Some(Some(_)))
    {
        checks.add("base_url", "is required for openai-compatible");
    }
    let model = match &body.model {
        None => existing.as_ref().and_then(|r| r.model.clone()),
        Some(None) => None,
        Some(Some(m)) => checks.take("model", check_model(m)),
    };
    if name == ProviderName::OpenAiCompatible
        && model.is_none()
        && deployment_model(&cx.config, name).is_none()
        && !matches!(&body.model, Some(Some(_)))
    {
        checks.add("model", "is required for openai-compatible");
    }
    checks.finish()?;
    let (key_sealed, key_last4) = match &key {
        Some(k) => (
            Some(crypto::seal(
                &cx.config.encryption_key,
                &aad(&tenant_id, name),
                k.as_bytes(),
            )),
            Some(last4(k)),
        ),
        None => (
            existing.as_ref().and_then(|r| r.key_sealed.clone()),
            existing.as_ref().and_then(|r| r.key_last4.clone()),
        ),
    };
    let enabled = body
        .enabled
        .unwrap_or_else(|| existing.as_ref().is_none_or(|r| r.enabled != 0));
    let is_default = body
        .default
        .unwrap_or_else(|| existing.as_ref().is_some_and(|r| r.is_default != 0));
    let now = cx.now();
    let mut stmts = Vec::new();
    if is_default {
        stmts.push(db.stmt(
            "UPDATE provider_configs SET is_default = 0 WHERE tenant_id = ?1 AND name != ?2 AND is_default = 1",
            &args![tenant_id.as_str(), name.as_str()],
        )?);
    }
    // A new key or base URL is a fresh start: earlier failures were someone else's.
    let fresh = key.is_some() || body.base_url.is_some();
    stmts.push(db.stmt(
        "INSERT INTO provider_configs (tenant_id, name, key_sealed, key_last4, base_url, model, \
         enabled, is_default, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9) \
         ON CONFLICT (tenant_id, name) DO UPDATE SET key_sealed = excluded.key_sealed, \
         key_last4 = excluded.key_last4, base_url = excluded.base_url, model = excluded.model, \
         enabled = excluded.enabled, is_default = excluded.is_default, updated_at = excluded.updated_at, \
         failures = CASE WHEN ?10 THEN 0 ELSE failures END, \
         cooldown_until = CASE WHEN ?10 THEN NULL ELSE cooldown_until END",
        &args![
            tenant_id.as_str(),
            name.as_str(),
            key_sealed,
            key_last4,
            base_url.clone(),
            model.clone(),
            i64::from(enabled),
            i64::from(is_default),
            now.as_str(),
            i64::from(fresh)
        ],
    )?);
    stmts.push(
        audit::entry(&cx, "provider.set")
            .target("provider", name.as_str())
            .meta(json!({
                "key_replaced": key.is_some(),
                "base_url": base_url,
                "model": model,
                "enabled": enabled,
                "default": is_default,
            }))
            .stmt(&db)?,
    );
    db.batch(stmts).await?;
    let r = row(&db, &tenant_id, name).await?;
    Reply::ok(&view(&cx.config, p.plan, name, r.as_ref()))
}

async fn remove(cx: Ctx) -> Result<Reply> {
    let name = configurable(&cx)?;
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    row(&db, tenant_id, name).await?.ok_or(AppError::NotFound)?;
    db.batch(vec![
        db.stmt(
            "DELETE FROM provider_configs WHERE tenant_id = ?1 AND name = ?2",
            &args![tenant_id, name.as_str()],
        )?,
        audit::entry(&cx, "provider.deleted")
            .target("provider", name.as_str())
            .stmt(&db)?,
    ])
    .await?;
    Ok(Reply::no_content())
}

/// A provider a tenant cannot call, and why (a 422 on the request naming it).
pub fn unusable(name: ProviderName, why: &str) -> String {
    format!("{} {why}", name.as_str())
}

/// The callable target for `name` from the tenant's stored rows, with `model` overriding the
/// stored and default models. `Err`: why it cannot be called (for a field error).
pub fn resolve(
    cfg: &Config,
    tenant_id: &str,
    plan: Plan,
    stored: &[Row],
    name: ProviderName,
    model: Option<&str>,
) -> std::result::Result<Target, String> {
    if name.wire() == Wire::Local {
        return Ok(Target::local());
    }
    let r = stored.iter().find(|r| r.name == name.as_str());
    if r.is_some_and(|r| r.enabled == 0) {
        return Err(unusable(name, "is disabled"));
    }
    let key = match r.and_then(|r| r.key_sealed.as_deref()) {
        Some(sealed) => crypto::open(&cfg.encryption_key, &aad(tenant_id, name), sealed)
            .ok()
            .and_then(|k| String::from_utf8(k).ok())
            .ok_or_else(|| {
                unusable(name, "has a key that can no longer be read; store it again")
            })?,
        None => deployment_key(cfg, plan, name).ok_or_else(|| {
            unusable(
                name,
                "is not configured (PUT /providers/{name} with an api_key)",
            )
        })?,
    };
    let base = r
        .and_then(|r| r.base_url.clone())
        .or_else(|| deployment_base(cfg, name))
        .ok_or_else(|| unusable(name, "has no base_url"))?;
    let model = model
        .map(str::to_string)
        .or_else(|| r.and_then(|r| r.model.clone()))
        .or_else(|| deployment_model(cfg, name))
        .ok_or_else(|| unusable(name, "has no model; set one"))?;
    Ok(Target {
        name,
        base,
        key,
        model,
        tracked: r.is_some(),
        cooldown_until: r.and_then(|r| r.cooldown_until.clone()),
    })
}

/// The tenant's default provider (a usable stored default), else `local`.
pub fn default_name(stored: &[Row]) -> ProviderName {
    stored
        .iter()
        .find(|r| r.is_default != 0 && r.enabled != 0)
        .and_then(|r| ProviderName::parse(&r.name))
        .unwrap_or(ProviderName::Local)
}

async fn test(cx: Ctx) -> Result<Reply> {
    let name = named(&cx)?;
    let p = cx.principal()?;
    let db = cx.db()?;
    let stored = rows(&db, &p.tenant_id).await?;
    let target = resolve(&cx.config, &p.tenant_id, p.plan, &stored, name, None)
        .map_err(|why| AppError::field("name", why))?;
    let outcome = gateway::probe(&cx.config, &target).await;
    Reply::ok(&outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_four_never_shows_more() {
        assert_eq!(last4("sk-test-abcdef1234"), "1234");
        assert_eq!(last4("ключ-секрет-ёжик"), "ёжик");
    }

    #[test]
    fn keys_and_models_are_checked() {
        assert!(check_key("short").is_err());
        assert!(check_key("sk-has space-1234").is_err());
        assert_eq!(
            check_key("  sk-live-12345678 ").unwrap(),
            "sk-live-12345678"
        );
        assert!(check_model("gpt-4o-mini").is_ok());
        assert!(check_model("models/gemini-1.5-flash@001").is_ok());
        assert!(check_model("gpt 4").is_err());
        assert!(check_model("").is_err());
    }

    #[test]
    fn the_default_is_a_usable_stored_default_else_local() {
        let row = |name: &str, enabled: i64, is_default: i64| Row {
            name: name.into(),
            key_sealed: Some("v1.x".into()),
            key_last4: Some("1234".into()),
            base_url: None,
            model: None,
            enabled,
            is_default,
            failures: 0,
            cooldown_until: None,
            last_error: None,
            created_at: String::new(),
            updated_at: String::new(),
        };
        assert_eq!(default_name(&[]), ProviderName::Local);
        assert_eq!(
            default_name(&[row("openai", 1, 0), row("anthropic", 1, 1)]),
            ProviderName::Anthropic
        );
        assert_eq!(default_name(&[row("anthropic", 0, 1)]), ProviderName::Local);
    }
}

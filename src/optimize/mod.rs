//! Prompt optimisation (module P): the tenant's LLM providers (`providers`), `POST /optimize`,
//! its history and stats (this file), and batches run by the jobs Worker (`batches`).
//!
//! Pure parts: `model` (typed values), `tokens` (the one estimator), `local` (the built-in
//! optimiser), `guard` (what an LLM answer must keep), `prompts` (the fixed system prompts),
//! `adapters` (each provider's request and answer shapes); `gateway` tries a chain of
//! providers with fallbacks and cooldowns.
//!
//! Metering: one `optimizations` unit is counted by the tenant's `UsageMeter` before any
//! provider is called (402 `quota_exceeded` when the month's allowance is used), and given
//! back when no provider gave a result (502/504) or the result could not be stored.

pub mod adapters;
pub mod batches;
pub mod gateway;
pub mod guard;
pub mod local;
pub mod model;
pub mod prompts;
pub mod providers;
pub mod tokens;

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use self::adapters::ProviderUsage;
use self::gateway::Target;
use self::gateway::{Attempt, Optimised};
use self::model::{Level, ProviderName, Strategy};
use crate::args;
use crate::audit;
use crate::billing::plans::Metric;
use crate::billing::usage;
use crate::handler;
use crate::http::context::Ctx;
use crate::http::json::Checks;
use crate::http::pagination::PAGING;
use crate::http::reply::Reply;
use crate::http::router::{q, q_enum, Access, QueryDoc, Route};
use crate::platform::config::Config;
use crate::platform::db::{Arg, Db, Filter};
use crate::platform::error::{AppError, Result};
use crate::platform::ids;
use crate::platform::plan::Plan;

/// Longest text `POST /optimize` takes, in characters.
pub const MAX_TEXT_CHARS: usize = 50_000;
/// Most fallbacks a request may list.
pub const MAX_FALLBACKS: usize = 3;

const HISTORY_QUERY: [QueryDoc; 7] = [
    PAGING[0],
    PAGING[1],
    q_enum("provider", &ProviderName::NAMES, "Only this provider's."),
    q_enum("strategy", &Strategy::NAMES, "Only this strategy's."),
    q("from", "string", "Made at or after this time (RFC 3339)."),
    q("to", "string", "Made before this time (RFC 3339)."),
    q(
        "user_id",
        "string",
        "Only this user's (admins; members always see their own).",
    ),
];

const STATS_QUERY: [QueryDoc; 2] = [
    q(
        "from",
        "string",
        "From this time (RFC 3339; default 30 days ago).",
    ),
    q("to", "string", "Before this time (RFC 3339; default now)."),
];

pub fn routes() -> Vec<Route> {
    let mut routes = vec![
        Route::post("/api/v1/optimize", Access::User, handler!(optimize))
            .doc(
                "optimize",
                "Optimise a prompt (tokens before/after, savings); one `optimizations` unit",
            )
            .body("OptimizeRequest")
            .created("Optimization")
            .idempotent()
            .metered()
            .upstream(),
        Route::get("/api/v1/optimize/history", Access::User, handler!(history))
            .doc(
                "optimize",
                "Optimisations, newest first (members see their own, admins all)",
            )
            .list("Optimization")
            .query(&HISTORY_QUERY),
        Route::get(
            "/api/v1/optimize/history/:id",
            Access::User,
            handler!(history_item),
        )
        .doc("optimize", "One optimisation")
        .ok("Optimization"),
        Route::delete(
            "/api/v1/optimize/history/:id",
            Access::User,
            handler!(delete_history_item),
        )
        .doc(
            "optimize",
            "Delete an optimisation (its author or an admin; prompts are customer data)",
        )
        .no_content(),
        Route::get("/api/v1/optimize/stats", Access::User, handler!(stats))
            .doc(
                "optimize",
                "Requests and tokens saved, by provider and day (members: their own)",
            )
            .ok("OptimizeStats")
            .query(&STATS_QUERY),
    ];
    routes.extend(providers::routes());
    routes.extend(batches::routes());
    routes
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OptimizeRequest {
    /// 1–50,000 characters.
    pub text: String,
    /// Default: the tenant's default provider, else `local`.
    #[schema(value_type = Option<ProviderName>)]
    pub provider: Option<String>,
    /// Overrides the provider's model for this request.
    pub model: Option<String>,
    /// `compress` (default), `structure` or `clarify` (LLM providers only).
    #[schema(value_type = Option<Strategy>)]
    pub strategy: Option<String>,
    /// 1–3, default 2.
    #[schema(minimum = 1, maximum = 3)]
    pub compression_level: Option<i64>,
    /// Up to 3 providers tried in order when the one before fails (429, 5xx, timeout, auth
    /// failure, rejected output).
    #[schema(value_type = Option<Vec<ProviderName>>)]
    pub fallbacks: Option<Vec<String>>,
}

/// An optimisation as stored and shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Optimization {
    pub id: String,
    pub provider: ProviderName,
    pub model: String,
    pub strategy: Strategy,
    pub compression_level: u8,
    pub original_text: String,
    pub optimized_text: String,
    /// `tokens::estimate` of the original (the same estimator for both texts).
    pub tokens_before: u32,
    pub tokens_after: u32,
    pub tokens_saved: u32,
    pub savings_percent: f64,
    /// What the provider counted (its own tokenizer; `null` for `local`).
    pub provider_usage: Option<ProviderUsage>,
    /// The providers tried, in order.
    pub attempts: Vec<Attempt>,
    /// Set when the original was kept (every answer was rejected by the output guard).
    pub note: Option<String>,
    pub user_id: Option<String>,
    pub api_key_id: Option<String>,
    pub batch_id: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Deserialize)]
struct Row {
    id: String,
    provider: String,
    model: String,
    strategy: String,
    compression_level: i64,
    original_text: String,
    optimized_text: String,
    tokens_before: i64,
    tokens_after: i64,
    tokens_saved: i64,
    savings_percent: f64,
    provider_usage: Option<String>,
    attempts: String,
    note: Option<String>,
    user_id: Option<String>,
    api_key_id: Option<String>,
    batch_id: Option<String>,
    created_at: String,
}

const COLUMNS: &str =
    "optimizations.id, provider, model, strategy, compression_level, original_text, \
     optimized_text, tokens_before, tokens_after, tokens_saved, savings_percent, provider_usage, \
     attempts, note, user_id, api_key_id, batch_id, optimizations.created_at";

impl From<Row> for Optimization {
    fn from(r: Row) -> Optimization {
        Optimization {
            id: r.id,
            provider: ProviderName::parse(&r.provider).unwrap_or(ProviderName::Local),
            model: r.model,
            strategy: Strategy::parse(&r.strategy).unwrap_or_default(),
            compression_level: Level::new(r.compression_level).unwrap_or_default().get(),
            original_text: r.original_text,
            optimized_text: r.optimized_text,
            tokens_before: r.tokens_before.max(0) as u32,
            tokens_after: r.tokens_after.max(0) as u32,
            tokens_saved: r.tokens_saved.max(0) as u32,
            savings_percent: r.savings_percent,
            provider_usage: r.provider_usage.and_then(|u| serde_json::from_str(&u).ok()),
            attempts: serde_json::from_str(&r.attempts).unwrap_or_default(),
            note: r.note,
            user_id: r.user_id,
            api_key_id: r.api_key_id,
            batch_id: r.batch_id,
            created_at: r.created_at,
        }
    }
}

/// Who made an optimisation (a user, or an API key) and the batch it belongs to.
#[derive(Debug, Clone, Default)]
pub struct Author {
    pub user_id: Option<String>,
    pub api_key_id: Option<String>,
    pub batch_id: Option<String>,
}

/// What a request (or a batch) asks for, checked: the chain of callable providers.
pub struct Chain {
    pub chain: Vec<Target>,
    pub strategy: Strategy,
    pub level: Level,
}

/// The shared options of `POST /optimize` and `POST /optimize/batch`, as given.
pub struct Options<'a> {
    pub provider: Option<&'a str>,
    pub model: Option<&'a str>,
    pub strategy: Option<&'a str>,
    pub compression_level: Option<i64>,
    pub fallbacks: Option<&'a [String]>,
}

/// Checks the options into a chain of callable targets (every problem a field error).
/// The checks gathered so far (`checks`: the caller's own fields) end here: every problem is one
/// 422 with all the field errors.
pub fn check_options(
    cfg: &Config,
    tenant_id: &str,
    plan: Plan,
    stored: &[providers::Row],
    o: &Options,
    mut checks: Checks,
) -> Result<Chain> {
    let checks = &mut checks;
    let strategy = match o.strategy {
        None => Some(Strategy::default()),
        Some(s) => checks.take(
            "strategy",
            Strategy::parse(s)
                .ok_or_else(|| format!("must be one of {}", Strategy::NAMES.join(", "))),
        ),
    };
    let level = match o.compression_level {
        None => Some(Level::default()),
        Some(n) => checks.take(
            "compression_level",
            Level::new(n).ok_or_else(|| "must be 1, 2 or 3".to_string()),
        ),
    };
    let one_of = || format!("must be one of {}", ProviderName::NAMES.join(", "));
    let primary = match o.provider {
        None => Some(providers::default_name(stored)),
        Some(p) => checks.take("provider", ProviderName::parse(p).ok_or_else(one_of)),
    };
    let model = match o.model {
        None => None,
        Some(m) => checks.take("model", providers::check_model(m)),
    };
    let mut names: Vec<(String, ProviderName)> = Vec::new();
    if let Some(p) = primary {
        names.push(("provider".into(), p));
    }
    if let Some(fallbacks) = o.fallbacks {
        if fallbacks.len() > MAX_FALLBACKS {
            checks.add(
                "fallbacks",
                format!("may list at most {MAX_FALLBACKS} providers"),
            );
        } else {
            for (i, f) in fallbacks.iter().enumerate() {
                let field = format!("fallbacks[{i}]");
                if let Some(name) = checks.take(&field, ProviderName::parse(f).ok_or_else(one_of)) {
                    if names.iter().any(|(_, n)| *n == name) {
                        checks.add(&field, "is already in the chain");
                    } else {
                        names.push((field, name));
                    }
                }
            }
        }
    }
    let mut chain = Vec::new();
    for (i, (field, name)) in names.iter().enumerate() {
        if strategy == Some(Strategy::Clarify) && *name == ProviderName::Local {
            checks.add(field, "local cannot clarify; name an LLM provider");
            continue;
        }
        let model = if i == 0 { model.as_deref() } else { None };
        if let Some(t) = checks.take(
            field,
            providers::resolve(cfg, tenant_id, plan, stored, *name, model),
        ) {
            chain.push(t);
        }
    }
    let checks = std::mem::take(checks);
    checks.finish()?;
    match (strategy, level) {
        (Some(strategy), Some(level)) => Ok(Chain {
            chain,
            strategy,
            level,
        }),
        _ => Err(AppError::internal(
            "options checked without a strategy or level",
        )),
    }
}

/// The text to optimise, checked (length in characters, not blank).
pub fn check_text(text: &str) -> std::result::Result<(), String> {
    if text.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(format!("must be at most {MAX_TEXT_CHARS} characters"));
    }
    Ok(())
}

/// The optimisation a result makes: both texts counted by the one estimator. When the
/// original was kept (`note`), nothing was saved.
pub fn outcome(
    id: &str,
    author: &Author,
    original: &str,
    strategy: Strategy,
    level: Level,
    result: Optimised,
    now: &str,
) -> Optimization {
    let before = tokens::estimate(original);
    let after = if result.note.is_some() {
        before
    } else {
        tokens::estimate(&result.text).min(before)
    };
    Optimization {
        id: id.to_string(),
        provider: result.provider,
        model: result.model,
        strategy,
        compression_level: level.get(),
        original_text: original.to_string(),
        tokens_before: before,
        tokens_after: after,
        tokens_saved: before - after,
        savings_percent: tokens::savings_percent(before.into(), after.into()),
        optimized_text: result.text,
        provider_usage: result.usage,
        attempts: result.attempts,
        note: result.note,
        user_id: author.user_id.clone(),
        api_key_id: author.api_key_id.clone(),
        batch_id: author.batch_id.clone(),
        created_at: now.to_string(),
    }
}

/// The optimisation's row; with `if_applied`, written only if the statement before it in
/// the batch changed a row (a batch item's guarded transition).
pub fn insert(
    db: &Db,
    tenant_id: &str,
    o: &Optimization,
    if_applied: bool,
) -> Result<worker::D1PreparedStatement> {
    let values = if if_applied {
        "SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19 \
         WHERE changes() > 0"
    } else {
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
    };
    db.stmt(
        &format!(
            "INSERT INTO optimizations (id, tenant_id, user_id, api_key_id, batch_id, provider, model, \
             strategy, compression_level, original_text, optimized_text, tokens_before, tokens_after, \
             tokens_saved, savings_percent, provider_usage, attempts, note, created_at) {values}"
        ),
        &args![
            o.id.as_str(),
            tenant_id,
            o.user_id.clone(),
            o.api_key_id.clone(),
            o.batch_id.clone(),
            o.provider.as_str(),
            o.model.as_str(),
            o.strategy.as_str(),
            i64::from(o.compression_level),
            o.original_text.as_str(),
            o.optimized_text.as_str(),
            i64::from(o.tokens_before),
            i64::from(o.tokens_after),
            i64::from(o.tokens_saved),
            o.savings_percent,
            o.provider_usage
                .map(|u| serde_json::to_string(&u).unwrap_or_default()),
            serde_json::to_string(&o.attempts)?,
            o.note.clone(),
            o.created_at.as_str()
        ],
    )
}

async fn optimize(cx: Ctx) -> Result<Reply> {
    let body: OptimizeRequest = cx.json()?;
    let p = cx.principal()?.clone();
    let db = cx.db()?;
    let stored = providers::rows(&db, &p.tenant_id).await?;
    let mut checks = Checks::new();
    checks.take("text", check_text(&body.text));
    let options = Options {
        provider: body.provider.as_deref(),
        model: body.model.as_deref(),
        strategy: body.strategy.as_deref(),
        compression_level: body.compression_level,
        fallbacks: body.fallbacks.as_deref(),
    };
    let plan = check_options(&cx.config, &p.tenant_id, p.plan, &stored, &options, checks)?;
    let id = ids::new_id("opt");
    // Counted before any provider is called (exact under concurrency), given back if no
    // result is stored.
    let charge = usage::charge(
        &cx,
        &db,
        &p.tenant_id,
        p.plan,
        Metric::Optimizations,
        1,
        &id,
    )
    .await?;
    let job = gateway::Job {
        text: &body.text,
        strategy: plan.strategy,
        level: plan.level,
    };
    let result = match gateway::run(&cx.config, &db, &p.tenant_id, &plan.chain, job).await {
        Ok(r) => r,
        Err(failed) => {
            charge.refund(&cx).await;
            return Err(failed.into_error());
        }
    };
    let author = Author {
        user_id: p.user_id.clone(),
        api_key_id: p.api_key.as_ref().map(|k| k.id.clone()),
        batch_id: None,
    };
    let now = cx.now();
    let out = outcome(
        &id,
        &author,
        &body.text,
        plan.strategy,
        plan.level,
        result,
        &now,
    );
    let mut stmts = vec![insert(&db, &p.tenant_id, &out, false)?];
    stmts.extend(charge.threshold_audits(&cx, &db)?);
    if let Err(e) = db.batch(stmts).await {
        charge.refund(&cx).await;
        return Err(e);
    }
    Reply::created(&out, Some(format!("/api/v1/optimize/history/{id}")))
}

/// Admins (and admin-scoped keys) see all of the tenant's optimisations and batches; members
/// see what they made (an API key: what it made). The condition on `table` and its value.
pub fn own_only(cx: &Ctx, table: &str) -> Result<Option<(String, Arg)>> {
    let p = cx.principal()?;
    if p.role.at_least(crate::auth::roles::Role::Admin) {
        return Ok(None);
    }
    Ok(Some(match (&p.api_key, &p.user_id) {
        (Some(k), _) => (format!("{table}.api_key_id = ?"), Arg::from(k.id.as_str())),
        (None, Some(u)) => (format!("{table}.user_id = ?"), Arg::from(u.as_str())),
        (None, None) => (format!("{table}.id IS NULL AND ? IS NULL"), Arg::from("")),
    }))
}

fn scoped(cx: &Ctx, select: &str) -> Result<Filter> {
    let mut f = Filter::new(select, args![cx.tenant_id()?]);
    if let Some((cond, value)) = own_only(cx, "optimizations")? {
        f.and(&cond, vec![value]);
    }
    Ok(f)
}

async fn history(cx: Ctx) -> Result<Reply> {
    let page = cx.page()?;
    let mut f = scoped(
        &cx,
        &format!("SELECT {COLUMNS} FROM optimizations WHERE optimizations.tenant_id = ?1"),
    )?;
    f.and_opt(
        "provider = ?",
        cx.query_enum("provider", &ProviderName::NAMES)?
            .map(Arg::from),
    )
    .and_opt(
        "strategy = ?",
        cx.query_enum("strategy", &Strategy::NAMES)?.map(Arg::from),
    )
    .and_opt(
        "optimizations.created_at >= ?",
        cx.query_time("from")?.map(Arg::from),
    )
    .and_opt(
        "optimizations.created_at < ?",
        cx.query_time("to")?.map(Arg::from),
    )
    .and_opt("user_id = ?", cx.query_nonempty("user_id").map(Arg::from));
    f.page(&page, "optimizations");
    let rows: Vec<Row> = cx.db()?.all(&f.sql, &f.args).await?;
    let rows: Vec<Optimization> = rows.into_iter().map(Into::into).collect();
    let (rows, next) = page.finish(rows, |o| (o.created_at.clone(), o.id.clone()));
    Reply::list(&rows, next.as_deref())
}

async fn find(cx: &Ctx, db: &Db, id: &str) -> Result<Optimization> {
    let mut f = scoped(
        cx,
        &format!("SELECT {COLUMNS} FROM optimizations WHERE optimizations.tenant_id = ?1"),
    )?;
    f.and("optimizations.id = ?", args![id]);
    let row: Row = db.one(&f.sql, &f.args).await?.ok_or(AppError::NotFound)?;
    Ok(row.into())
}

async fn history_item(cx: Ctx) -> Result<Reply> {
    Reply::ok(&find(&cx, &cx.db()?, cx.param("id")).await?)
}

async fn delete_history_item(cx: Ctx) -> Result<Reply> {
    let db = cx.db()?;
    let o = find(&cx, &db, cx.param("id")).await?;
    db.batch(vec![
        db.stmt(
            "DELETE FROM optimizations WHERE id = ?1 AND tenant_id = ?2",
            &args![o.id.as_str(), cx.tenant_id()?],
        )?,
        audit::entry(&cx, "optimization.deleted")
            .target("optimization", o.id.as_str())
            .meta(json!({"provider": o.provider, "batch_id": o.batch_id}))
            .stmt(&db)?,
    ])
    .await?;
    Ok(Reply::no_content())
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OptimizeStats {
    pub from: String,
    pub to: String,
    pub requests: u64,
    pub tokens_before: u64,
    pub tokens_after: u64,
    pub tokens_saved: u64,
    /// Tokens saved as a share of tokens before, over the range.
    pub savings_percent: f64,
    pub by_provider: Vec<StatsBucket>,
    pub by_day: Vec<StatsBucket>,
}

/// One provider's (`key` = its name) or one UTC day's (`key` = `YYYY-MM-DD`) figures.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StatsBucket {
    pub key: String,
    pub requests: u64,
    pub tokens_before: u64,
    pub tokens_saved: u64,
    pub savings_percent: f64,
}

#[derive(Debug, Deserialize)]
struct StatsRow {
    key: Option<String>,
    requests: i64,
    tokens_before: Option<i64>,
    tokens_after: Option<i64>,
    tokens_saved: Option<i64>,
}

impl From<StatsRow> for StatsBucket {
    fn from(r: StatsRow) -> StatsBucket {
        let before = r.tokens_before.unwrap_or(0).max(0) as u64;
        let saved = r.tokens_saved.unwrap_or(0).max(0) as u64;
        StatsBucket {
            key: r.key.unwrap_or_default(),
            requests: r.requests.max(0) as u64,
            tokens_before: before,
            tokens_saved: saved,
            savings_percent: tokens::savings_percent(before, before.saturating_sub(saved)),
        }
    }
}

async fn stats(cx: Ctx) -> Result<Reply> {
    let to = cx
        .query_time("to")?
        .unwrap_or_else(|| crate::platform::clock::rfc3339(cx.now_ms + 1));
    let from = cx
        .query_time("from")?
        .unwrap_or_else(|| crate::platform::clock::rfc3339(cx.now_ms - 30 * 24 * 3600 * 1000));
    if from >= to {
        return Err(AppError::field("from", "must be before to"));
    }
    let db = cx.db()?;
    let query = |key: &str, group: &str| -> Result<worker::D1PreparedStatement> {
        let mut f = scoped(
            &cx,
            &format!(
                "SELECT {key} AS key, COUNT(*) AS requests, SUM(tokens_before) AS tokens_before, \
                 SUM(tokens_after) AS tokens_after, SUM(tokens_saved) AS tokens_saved \
                 FROM optimizations WHERE optimizations.tenant_id = ?1"
            ),
        )?;
        f.and("created_at >= ?", args![from.as_str()])
            .and("created_at < ?", args![to.as_str()]);
        f.sql.push_str(group);
        db.stmt(&f.sql, &f.args)
    };
    let results = db
        .read_batch(vec![
            query("NULL", "")?,
            query(
                "provider",
                " GROUP BY provider ORDER BY requests DESC, provider",
            )?,
            query("substr(created_at, 1, 10)", " GROUP BY key ORDER BY key")?,
        ])
        .await?;
    let rows = |i: usize| -> Result<Vec<StatsRow>> {
        results
            .get(i)
            .map(|r| r.results::<StatsRow>().map_err(AppError::internal))
            .unwrap_or_else(|| Ok(Vec::new()))
    };
    let total = rows(0)?.into_iter().next();
    let before = total
        .as_ref()
        .and_then(|t| t.tokens_before)
        .unwrap_or(0)
        .max(0) as u64;
    let after = total
        .as_ref()
        .and_then(|t| t.tokens_after)
        .unwrap_or(0)
        .max(0) as u64;
    let saved = total
        .as_ref()
        .and_then(|t| t.tokens_saved)
        .unwrap_or(0)
        .max(0) as u64;
    Reply::ok(&OptimizeStats {
        from,
        to,
        requests: total.map_or(0, |t| t.requests.max(0) as u64),
        tokens_before: before,
        tokens_after: after,
        tokens_saved: saved,
        savings_percent: tokens::savings_percent(before, before.saturating_sub(saved)),
        by_provider: rows(1)?.into_iter().map(Into::into).collect(),
        by_day: rows(2)?.into_iter().map(Into::into).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_one_to_fifty_thousand_characters() {
        assert!(check_text("").is_err());
        assert!(check_text(" \n\t").is_err());
        assert!(check_text("x").is_ok());
        assert!(check_text(&"é".repeat(MAX_TEXT_CHARS)).is_ok());
        assert!(check_text(&"é".repeat(MAX_TEXT_CHARS + 1)).is_err());
    }

    #[test]
    fn stats_percentages_round_to_one_decimal() {
        // Stats give the estimator's rule sums of tokens saved: 1 of 3, none of none, 5 of 10.
        assert_eq!(tokens::savings_percent(3, 3 - 1), 33.3);
        assert_eq!(tokens::savings_percent(0, 0), 0.0);
        assert_eq!(tokens::savings_percent(10, 10 - 5), 50.0);
    }
}

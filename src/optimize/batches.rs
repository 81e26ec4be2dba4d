//! Prompt-optimisation batches: `POST /optimize/batch` reserves one `optimizations` unit per
//! item at once (each item's unit is its own meter op, id = the item's id, so it can be given
//! back alone), stores the batch and its items, and queues one `Job::Optimize` per item
//! through the outbox. The jobs Worker runs each item (`run_item`): paced per tenant and
//! provider by the limiter's token bucket, leased by the delivery that runs it, through the
//! same gateway as `POST /optimize`. Transient failures retry with backoff (3 attempts); then
//! the item fails with the reason, its unit is given back once, and a dead letter is kept. The
//! last item to finish completes the batch and stages its signed `optimize.batch.completed`
//! callback in the same D1 batch; cancelling one (`optimize.batch.cancelled`) cancels and
//! refunds the items still queued.
//!
//! Item statuses move only by `ItemStatus::next`, each move one guarded UPDATE.

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use worker::Env;

use super::gateway;
use super::model::{Level, ProviderName, Strategy};
use super::providers;
use super::{check_options, check_text, own_only, Author, Optimization, Options};
use crate::args;
use crate::audit;
use crate::billing::meter::{self, Refund};
use crate::billing::plans::{Feature, Metric};
use crate::billing::usage;
use crate::handler;
use crate::http::context::Ctx;
use crate::http::json::Checks;
use crate::http::pagination::PAGING;
use crate::http::reply::Reply;
use crate::http::router::{q_enum, Access, QueryDoc, Route};
use crate::platform::clock;
use crate::platform::config::Config;
use crate::platform::db::{Arg, Db, Filter};
use crate::platform::egress;
use crate::platform::error::{AppError, Result};
use crate::platform::ids;
use crate::platform::lease::{self, Holder};
use crate::platform::outbox::{self, Staged};
use crate::platform::queue::{self, DeadLetter, Job, Outcome};
use crate::platform::ratelimit::{self, pace, Pace, TakeRequest};
use crate::settings::callbacks::{self, Event};

/// Items a batch takes; above `SMALL_BATCH` the plan needs `large_batches`.
pub const MAX_ITEMS: usize = 100;
pub const SMALL_BATCH: usize = 10;
/// Tries of an item before it fails (transient failures only; a refusal fails at once).
pub const ITEM_ATTEMPTS: i64 = 3;
const MAX_REF_CHARS: usize = 200;

const LIST_QUERY: [QueryDoc; 3] = [
    PAGING[0],
    PAGING[1],
    q_enum(
        "status",
        &BatchStatus::NAMES,
        "Only batches in this status.",
    ),
];

pub fn routes() -> Vec<Route> {
    vec![
        Route::post("/api/v1/optimize/batch", Access::User, handler!(create))
            .doc(
                "optimize",
                "Optimise up to 100 texts in the background (one unit reserved per item; above 10 items the plan needs `large_batches`)",
            )
            .body("CreateBatch")
            .accepted("OptimizeBatch")
            .idempotent()
            .metered(),
        Route::get("/api/v1/optimize/batch", Access::User, handler!(list))
            .doc(
                "optimize",
                "Batches, newest first (members see their own, admins all)",
            )
            .list("OptimizeBatch")
            .query(&LIST_QUERY),
        Route::get("/api/v1/optimize/batch/:id", Access::User, handler!(get))
            .doc("optimize", "A batch's status and progress")
            .ok("OptimizeBatch"),
        Route::get(
            "/api/v1/optimize/batch/:id/items",
            Access::User,
            handler!(items),
        )
        .doc("optimize", "A batch's items in order, with their results")
        .list("BatchItem")
        .query(&PAGING),
        Route::post(
            "/api/v1/optimize/batch/:id/cancel",
            Access::User,
            handler!(cancel),
        )
        .doc(
            "optimize",
            "Cancel a batch: queued items are cancelled and their units given back",
        )
        .ok("OptimizeBatch"),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    Queued,
    Running,
    Completed,
    Cancelled,
}

impl BatchStatus {
    pub const NAMES: [&'static str; 4] = ["queued", "running", "completed", "cancelled"];

    pub fn parse(s: &str) -> Option<BatchStatus> {
        Some(match s {
            "queued" => BatchStatus::Queued,
            "running" => BatchStatus::Running,
            "completed" => BatchStatus::Completed,
            "cancelled" => BatchStatus::Cancelled,
            _ => return None,
        })
    }

    pub fn ended(self) -> bool {
        matches!(self, BatchStatus::Completed | BatchStatus::Cancelled)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

/// What happens to an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemEvent {
    /// A delivery takes it (its lease).
    Claim,
    /// The result is stored.
    Succeed,
    /// A transient failure with tries left: back in the queue.
    Retry,
    /// No more tries, a refusal, or the queue gave up.
    Fail,
    /// The batch was cancelled before it ran.
    Cancel,
}

impl ItemStatus {
    pub fn parse(s: &str) -> Option<ItemStatus> {
        Some(match s {
            "queued" => ItemStatus::Queued,
            "running" => ItemStatus::Running,
            "succeeded" => ItemStatus::Succeeded,
            "failed" => ItemStatus::Failed,
            "cancelled" => ItemStatus::Cancelled,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ItemStatus::Queued => "queued",
            ItemStatus::Running => "running",
            ItemStatus::Succeeded => "succeeded",
            ItemStatus::Failed => "failed",
            ItemStatus::Cancelled => "cancelled",
        }
    }

    pub fn finished(self) -> bool {
        matches!(
            self,
            ItemStatus::Succeeded | ItemStatus::Failed | ItemStatus::Cancelled
        )
    }

    /// The one owner of an item's moves: where `event` takes an item in `self`, if anywhere.
    /// A running item may be claimed again (its holder died: the lease rule decides).
    pub fn next(self, event: ItemEvent) -> Option<ItemStatus> {
        use ItemEvent as E;
        use ItemStatus as S;
        match (self, event) {
            (S::Queued | S::Running, E::Claim) => Some(S::Running),
            (S::Running, E::Succeed) => Some(S::Succeeded),
            (S::Running, E::Retry) => Some(S::Queued),
            (S::Queued | S::Running, E::Fail) => Some(S::Failed),
            (S::Queued, E::Cancel) => Some(S::Cancelled),
            _ => None,
        }
    }

    /// The statuses `event` moves from, for the SQL guard of its one UPDATE.
    pub fn sources(event: ItemEvent) -> String {
        let all = [
            ItemStatus::Queued,
            ItemStatus::Running,
            ItemStatus::Succeeded,
            ItemStatus::Failed,
            ItemStatus::Cancelled,
        ];
        let from: Vec<String> = all
            .into_iter()
            .filter(|s| s.next(event).is_some())
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        format!("status IN ({})", from.join(", "))
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBatch {
    /// 1–100 texts (above 10 the plan needs `large_batches`).
    pub items: Vec<BatchInput>,
    #[schema(value_type = Option<ProviderName>)]
    pub provider: Option<String>,
    pub model: Option<String>,
    #[schema(value_type = Option<Strategy>)]
    pub strategy: Option<String>,
    #[schema(minimum = 1, maximum = 3)]
    pub compression_level: Option<i64>,
    #[schema(value_type = Option<Vec<ProviderName>>)]
    pub fallbacks: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchInput {
    /// 1–50,000 characters.
    pub text: String,
    /// The caller's own reference (≤ 200 characters), echoed on the item.
    #[serde(rename = "ref")]
    pub reference: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OptimizeBatch {
    pub id: String,
    pub status: BatchStatus,
    pub provider: ProviderName,
    pub model: Option<String>,
    pub strategy: Strategy,
    pub compression_level: u8,
    pub fallbacks: Vec<ProviderName>,
    pub total: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub cancelled: u32,
    /// Queued or running.
    pub pending: u32,
    /// Finished items (succeeded, failed or cancelled) as a percentage of `total`, 0–100.
    pub progress: u8,
    pub user_id: Option<String>,
    pub api_key_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub completed_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BatchItem {
    pub id: String,
    pub position: u32,
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    pub status: ItemStatus,
    pub attempts: u32,
    /// Why it failed (or the last transient failure while it waits to retry).
    pub error: Option<String>,
    /// The result, once it succeeded.
    pub optimization: Option<Optimization>,
}

#[derive(Debug, Deserialize)]
struct BatchRow {
    id: String,
    tenant_id: String,
    user_id: Option<String>,
    api_key_id: Option<String>,
    provider: String,
    model: Option<String>,
    strategy: String,
    compression_level: i64,
    fallbacks: String,
    status: String,
    total: i64,
    succeeded: i64,
    failed: i64,
    cancelled: i64,
    created_at: String,
    updated_at: String,
    completed_at: Option<String>,
}

const BATCH_COLUMNS: &str = "optimize_batches.id, optimize_batches.tenant_id, user_id, api_key_id, \
     provider, model, strategy, compression_level, fallbacks, optimize_batches.status, total, \
     (SELECT COUNT(*) FROM optimize_batch_items i WHERE i.batch_id = optimize_batches.id AND i.status = 'succeeded') AS succeeded, \
     (SELECT COUNT(*) FROM optimize_batch_items i WHERE i.batch_id = optimize_batches.id AND i.status = 'failed') AS failed, \
     (SELECT COUNT(*) FROM optimize_batch_items i WHERE i.batch_id = optimize_batches.id AND i.status = 'cancelled') AS cancelled, \
     optimize_batches.created_at, optimize_batches.updated_at, completed_at";

/// Finished items as a whole percentage of `total` (0 for an empty batch).
pub fn progress(total: u32, finished: u32) -> u8 {
    if total == 0 {
        return 0;
    }
    ((u64::from(finished.min(total)) * 100) / u64::from(total)) as u8
}

impl From<BatchRow> for OptimizeBatch {
    fn from(r: BatchRow) -> OptimizeBatch {
        let n = |v: i64| v.max(0) as u32;
        let total = n(r.total);
        let (succeeded, failed, cancelled) = (n(r.succeeded), n(r.failed), n(r.cancelled));
        let finished = succeeded + failed + cancelled;
        let fallbacks: Vec<String> = serde_json::from_str(&r.fallbacks).unwrap_or_default();
        OptimizeBatch {
            id: r.id,
            status: BatchStatus::parse(&r.status).unwrap_or(BatchStatus::Queued),
            provider: ProviderName::parse(&r.provider).unwrap_or(ProviderName::Local),
            model: r.model,
            strategy: Strategy::parse(&r.strategy).unwrap_or_default(),
            compression_level: Level::new(r.compression_level).unwrap_or_default().get(),
            fallbacks: fallbacks
                .iter()
                .filter_map(|f| ProviderName::parse(f))
                .collect(),
            total,
            succeeded,
            failed,
            cancelled,
            pending: total.saturating_sub(finished),
            progress: progress(total, finished),
            user_id: r.user_id,
            api_key_id: r.api_key_id,
            created_at: r.created_at,
            updated_at: r.updated_at,
            completed_at: r.completed_at,
        }
    }
}

/// The batches the caller may see (`own_only`).
fn scoped(cx: &Ctx) -> Result<Filter> {
    let mut f = Filter::new(
        &format!(
            "SELECT {BATCH_COLUMNS} FROM optimize_batches WHERE optimize_batches.tenant_id = ?1"
        ),
        args![cx.tenant_id()?],
    );
    if let Some((cond, value)) = own_only(cx, "optimize_batches")? {
        f.and(&cond, vec![value]);
    }
    Ok(f)
}

async fn find(cx: &Ctx, db: &Db, id: &str) -> Result<OptimizeBatch> {
    let mut f = scoped(cx)?;
    f.and("optimize_batches.id = ?", args![id]);
    let row: BatchRow = db.one(&f.sql, &f.args).await?.ok_or(AppError::NotFound)?;
    Ok(row.into())
}

async fn by_id(db: &Db, id: &str) -> Result<Option<BatchRow>> {
    db.one(
        &format!("SELECT {BATCH_COLUMNS} FROM optimize_batches WHERE optimize_batches.id = ?1"),
        &args![id],
    )
    .await
}

fn item_id(batch_id: &str, position: usize) -> String {
    // Sorts by position, so the items page in order.
    format!("{batch_id}_{position:03}")
}

async fn create(cx: Ctx) -> Result<Reply> {
    let body: CreateBatch = cx.json()?;
    let p = cx.principal()?.clone();
    let db = cx.db()?;
    let stored = providers::rows(&db, &p.tenant_id).await?;
    let mut checks = Checks::new();
    if body.items.is_empty() || body.items.len() > MAX_ITEMS {
        checks.add("items", format!("must hold 1–{MAX_ITEMS} items"));
    }
    for (i, item) in body.items.iter().enumerate() {
        checks.take(&format!("items[{i}].text"), check_text(&item.text));
        if item
            .reference
            .as_ref()
            .is_some_and(|r| r.chars().count() > MAX_REF_CHARS)
        {
            checks.add(
                &format!("items[{i}].ref"),
                format!("must be at most {MAX_REF_CHARS} characters"),
            );
        }
    }
    let options = Options {
        provider: body.provider.as_deref(),
        model: body.model.as_deref(),
        strategy: body.strategy.as_deref(),
        compression_level: body.compression_level,
        fallbacks: body.fallbacks.as_deref(),
    };
    let chain = check_options(&cx.config, &p.tenant_id, p.plan, &stored, &options, checks)?;
    if body.items.len() > SMALL_BATCH {
        cx.config.plans.require(p.plan, Feature::LargeBatches)?;
    }
    let batch_id = ids::new_id("obt");
    let item_ids: Vec<String> = (0..body.items.len())
        .map(|i| item_id(&batch_id, i))
        .collect();
    let n = item_ids.len() as u64;
    // Every item's unit at once: the whole batch fits in the allowance, or nothing is made.
    let charge = usage::charge_parts(
        &cx,
        &db,
        &p.tenant_id,
        p.plan,
        Metric::Optimizations,
        n,
        &batch_id,
        item_ids.clone(),
    )
    .await?;
    let now = cx.now();
    let primary = chain.chain.first().map_or(ProviderName::Local, |t| t.name);
    let fallbacks: Vec<&str> = chain
        .chain
        .iter()
        .skip(1)
        .map(|t| t.name.as_str())
        .collect();
    let model = body.model.as_deref().map(str::trim);
    let rows: Vec<serde_json::Value> = body
        .items
        .iter()
        .zip(&item_ids)
        .enumerate()
        .map(|(i, (item, id))| json!([id, i, item.reference, item.text]))
        .collect();
    let staged: Vec<Staged> = item_ids
        .iter()
        .map(|id| {
            Staged::job(
                &Job::Optimize {
                    item_id: id.clone(),
                    slot_ms: None,
                },
                0,
                cx.now_ms,
            )
        })
        .collect::<Result<_>>()?;
    let mut stmts = vec![
        db.stmt(
            "INSERT INTO optimize_batches (id, tenant_id, user_id, api_key_id, provider, model, strategy, \
             compression_level, fallbacks, total, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)",
            &args![
                batch_id.as_str(),
                p.tenant_id.as_str(),
                p.user_id.clone(),
                p.api_key.as_ref().map(|k| k.id.clone()),
                primary.as_str(),
                model,
                chain.strategy.as_str(),
                i64::from(chain.level.get()),
                serde_json::to_string(&fallbacks)?,
                n as i64,
                now.as_str()
            ],
        )?,
        db.stmt(
            "INSERT INTO optimize_batch_items (id, batch_id, tenant_id, position, ref, text, created_at, updated_at) \
             SELECT value ->> 0, ?1, ?2, value ->> 1, value ->> 2, value ->> 3, ?3, ?3 FROM json_each(?4)",
            &args![
                batch_id.as_str(),
                p.tenant_id.as_str(),
                now.as_str(),
                serde_json::to_string(&rows)?
            ],
        )?,
        Staged::insert_many(&db, &staged)?,
        audit::entry(&cx, "optimize_batch.created")
            .target("optimize_batch", batch_id.as_str())
            .meta(json!({"items": n, "provider": primary, "strategy": chain.strategy}))
            .stmt(&db)?,
    ];
    stmts.extend(charge.threshold_audits(&cx, &db)?);
    if let Err(e) = db.batch(stmts).await {
        charge.refund(&cx).await;
        meter::refund_op(&cx.env, refund_of(&p.tenant_id, &now, &item_ids)).await;
        return Err(e);
    }
    outbox::send_many_now(&cx.env, &cx.config, &db, &staged).await;
    let batch = find(&cx, &db, &batch_id).await?;
    Reply::accepted(&batch, format!("/api/v1/optimize/batch/{batch_id}"))
}

/// The refund of item units reserved in the month of `created_at`.
fn refund_of(tenant_id: &str, created_at: &str, item_ids: &[String]) -> Refund {
    Refund {
        tenant_id: tenant_id.to_string(),
        metric: Metric::Optimizations,
        period: created_at.chars().take(7).collect(),
        op_id: item_ids.first().cloned().unwrap_or_default(),
        more: item_ids.iter().skip(1).cloned().collect(),
    }
}

async fn list(cx: Ctx) -> Result<Reply> {
    let page = cx.page()?;
    let mut f = scoped(&cx)?;
    f.and_opt(
        "optimize_batches.status = ?",
        cx.query_enum("status", &BatchStatus::NAMES)?.map(Arg::from),
    );
    f.page(&page, "optimize_batches");
    let rows: Vec<BatchRow> = cx.db()?.all(&f.sql, &f.args).await?;
    let rows: Vec<OptimizeBatch> = rows.into_iter().map(Into::into).collect();
    let (rows, next) = page.finish(rows, |b| (b.created_at.clone(), b.id.clone()));
    Reply::list(&rows, next.as_deref())
}

async fn get(cx: Ctx) -> Result<Reply> {
    Reply::ok(&find(&cx, &cx.db()?, cx.param("id")).await?)
}

#[derive(Debug, Deserialize)]
struct ItemRow {
    id: String,
    position: i64,
    #[serde(rename = "ref")]
    reference: Option<String>,
    status: String,
    attempts: i64,
    error: Option<String>,
    optimization_id: Option<String>,
    created_at: String,
}

async fn items(cx: Ctx) -> Result<Reply> {
    let db = cx.db()?;
    let batch = find(&cx, &db, cx.param("id")).await?;
    let page = cx.page()?;
    let mut f = Filter::new(
        "SELECT id, position, ref, status, attempts, error, optimization_id, created_at \
         FROM optimize_batch_items WHERE batch_id = ?1",
        args![batch.id.as_str()],
    );
    f.page_oldest_first(&page, "optimize_batch_items");
    let rows: Vec<ItemRow> = db.all(&f.sql, &f.args).await?;
    let (rows, next) = page.finish(rows, |r| (r.created_at.clone(), r.id.clone()));
    let ids: Vec<&str> = rows
        .iter()
        .filter_map(|r| r.optimization_id.as_deref())
        .collect();
    let results: Vec<super::Row> = if ids.is_empty() {
        Vec::new()
    } else {
        db.all(
            &format!(
                "SELECT {} FROM optimizations WHERE tenant_id = ?1 AND id IN (SELECT value FROM json_each(?2))",
                super::COLUMNS
            ),
            &args![cx.tenant_id()?, serde_json::to_string(&ids)?],
        )
        .await?
    };
    let mut results: Vec<Optimization> = results.into_iter().map(Into::into).collect();
    let out: Vec<BatchItem> = rows
        .into_iter()
        .map(|r| BatchItem {
            optimization: r
                .optimization_id
                .as_ref()
                .and_then(|id| results.iter().position(|o| &o.id == id))
                .map(|i| results.swap_remove(i)),
            id: r.id,
            position: r.position.max(0) as u32,
            reference: r.reference,
            status: ItemStatus::parse(&r.status).unwrap_or(ItemStatus::Queued),
            attempts: r.attempts.max(0) as u32,
            error: r.error,
        })
        .collect();
    Reply::list(&out, next.as_deref())
}

/// The statement that ends a batch when none of its items is left to run (applies once), and
/// the callback staged behind it.
fn completion(
    db: &Db,
    batch_id: &str,
    now_ms: i64,
) -> Result<(Vec<worker::D1PreparedStatement>, Staged)> {
    let now = clock::rfc3339(now_ms);
    let callback = Staged::job(
        &Job::callback(batch_id, "optimize.batch.completed"),
        0,
        now_ms,
    )?;
    Ok((
        vec![
            db.stmt(
                "UPDATE optimize_batches SET status = 'completed', completed_at = ?2, updated_at = ?2 \
                 WHERE id = ?1 AND status IN ('queued', 'running') AND NOT EXISTS \
                 (SELECT 1 FROM optimize_batch_items WHERE batch_id = ?1 AND status IN ('queued', 'running'))",
                &args![batch_id, now.as_str()],
            )?,
            callback.insert_if_applied(db)?,
        ],
        callback,
    ))
}

async fn cancel(cx: Ctx) -> Result<Reply> {
    let db = cx.db()?;
    let batch = find(&cx, &db, cx.param("id")).await?;
    if batch.status.ended() {
        return Err(AppError::Conflict(format!(
            "The batch is already {}.",
            if batch.status == BatchStatus::Completed {
                "completed"
            } else {
                "cancelled"
            }
        )));
    }
    let now = cx.now();
    let callback = Staged::job(
        &Job::callback(&batch.id, "optimize.batch.cancelled"),
        0,
        cx.now_ms,
    )?;
    let changes = db
        .batch(vec![
            db.stmt(
                &format!(
                    "UPDATE optimize_batch_items SET status = 'cancelled', updated_at = ?2 \
                     WHERE batch_id = ?1 AND {}",
                    ItemStatus::sources(ItemEvent::Cancel)
                ),
                &args![batch.id.as_str(), now.as_str()],
            )?,
            db.stmt(
                "UPDATE optimize_batches SET status = 'cancelled', completed_at = ?2, updated_at = ?2 \
                 WHERE id = ?1 AND status IN ('queued', 'running')",
                &args![batch.id.as_str(), now.as_str()],
            )?,
            callback.insert_if_applied(&db)?,
            audit::entry(&cx, "optimize_batch.cancelled")
                .target("optimize_batch", batch.id.as_str())
                .stmt(&db)?,
        ])
        .await?;
    // Every cancelled item's unit back (only a cancel cancels items; the meter gives each op
    // back once, so a repeated cancel gives nothing twice).
    let cancelled: Vec<IdRow> = db
        .all(
            "SELECT id FROM optimize_batch_items WHERE batch_id = ?1 AND status = 'cancelled'",
            &args![batch.id.as_str()],
        )
        .await?;
    if !cancelled.is_empty() {
        let ids: Vec<String> = cancelled.into_iter().map(|r| r.id).collect();
        meter::refund_op(&cx.env, refund_of(cx.tenant_id()?, &batch.created_at, &ids)).await;
    }
    if changes.get(1).copied().unwrap_or(0) > 0 {
        outbox::send_now(&cx.env, &cx.config, &db, &[callback]).await;
    }
    Reply::ok(&find(&cx, &db, &batch.id).await?)
}

#[derive(Deserialize)]
struct IdRow {
    id: String,
}

/// An item with what its run needs from the batch.
#[derive(Debug, Deserialize)]
struct Work {
    id: String,
    batch_id: String,
    tenant_id: String,
    text: String,
    status: String,
    attempts: i64,
    created_at: String,
    user_id: Option<String>,
    api_key_id: Option<String>,
    provider: String,
    model: Option<String>,
    strategy: String,
    compression_level: i64,
    fallbacks: String,
    plan: Option<String>,
}

async fn work(db: &Db, item_id: &str) -> Result<Option<Work>> {
    db.one(
        "SELECT i.id, i.batch_id, i.tenant_id, i.text, i.status, i.attempts, i.created_at, \
         b.user_id, b.api_key_id, b.provider, b.model, b.strategy, b.compression_level, b.fallbacks, \
         t.plan FROM optimize_batch_items i JOIN optimize_batches b ON b.id = i.batch_id \
         LEFT JOIN tenants t ON t.id = i.tenant_id WHERE i.id = ?1",
        &args![item_id],
    )
    .await
}

/// Gives an item's unit back (the meter does it once per item, whatever the redeliveries).
async fn refund_item(env: &Env, w: &Work) {
    meter::refund_op(
        env,
        refund_of(&w.tenant_id, &w.created_at, std::slice::from_ref(&w.id)),
    )
    .await;
}

/// The lease a run holds: long enough for every provider of the chain to time out.
fn lease_ms(cfg: &Config, chain_len: usize) -> i64 {
    (cfg.llm.timeout_secs.max(1) as i64 * chain_len.max(1) as i64 + 30) * 1000
}

/// The jobs Worker's work for one item.
pub async fn run_item(
    env: &Env,
    cfg: &Config,
    holder: &Holder,
    item_id: &str,
    slot_ms: Option<i64>,
) -> Result<Outcome> {
    let db = Db::from_env(env)?;
    let Some(w) = work(&db, item_id).await? else {
        return Ok(Outcome::Ack);
    };
    let status = ItemStatus::parse(&w.status).unwrap_or(ItemStatus::Failed);
    if status.finished() {
        // A redelivery: the work is done. A failed or cancelled item's unit is given back
        // again in case the run that ended it died before it could (the meter gives once).
        if status != ItemStatus::Succeeded {
            refund_item(env, &w).await;
        }
        return Ok(Outcome::Ack);
    }
    let provider = ProviderName::parse(&w.provider).unwrap_or(ProviderName::Local);
    if provider != ProviderName::Local {
        let take = match slot_ms {
            Some(_) => None,
            None => ratelimit::take_tokens(
                env,
                &format!("optimize:{}:{}", w.tenant_id, provider.as_str()),
                TakeRequest {
                    rate_per_sec: cfg.llm.rate_per_sec,
                    burst: cfg.llm.rate_per_sec.max(1.0),
                    cost: 1.0,
                    reserve: true,
                },
            )
            .await
            .map_err(|e| worker::console_error!("provider pacing unavailable, going on: {e}"))
            .ok(),
        };
        if let Pace::Wait {
            delay_secs,
            slot_ms,
        } = pace(clock::now_ms(), slot_ms, take)
        {
            // The slot is booked: come back for it (a wait is not an attempt).
            let job = Job::Optimize {
                item_id: item_id.to_string(),
                slot_ms: Some(slot_ms),
            };
            queue::enqueue(env, &job, delay_secs).await?;
            return Ok(Outcome::Ack);
        }
    }
    let fallbacks: Vec<String> = serde_json::from_str(&w.fallbacks).unwrap_or_default();
    let now_ms = clock::now_ms();
    let now = clock::rfc3339(now_ms);
    let until = now_ms + lease_ms(cfg, 1 + fallbacks.len());
    let claimed = db
        .batch(vec![
            db.stmt(
                &format!(
                    "UPDATE optimize_batch_items SET status = 'running', attempts = attempts + 1, {}, \
                     updated_at = ?5 WHERE id = ?1 AND {} AND {}",
                    lease::sql_hold(2, 3, 4),
                    ItemStatus::sources(ItemEvent::Claim),
                    lease::sql_may_take(2, 3, 6)
                ),
                &args![
                    item_id,
                    holder.message_id.as_str(),
                    i64::from(holder.attempt),
                    until,
                    now.as_str(),
                    now_ms
                ],
            )?,
            db.stmt(
                "UPDATE optimize_batches SET status = 'running', updated_at = ?2 \
                 WHERE id = ?1 AND status = 'queued'",
                &args![w.batch_id.as_str(), now.as_str()],
            )?,
        ])
        .await?;
    if claimed.first().copied().unwrap_or(0) == 0 {
        // Another delivery holds it and will finish it (or its own redelivery will).
        return Ok(Outcome::Ack);
    }
    let attempt = w.attempts + 1;
    let plan = w
        .plan
        .as_deref()
        .and_then(crate::platform::plan::Plan::parse)
        .unwrap_or_default();
    let stored = providers::rows(&db, &w.tenant_id).await?;
    let options = Options {
        provider: Some(&w.provider),
        model: w.model.as_deref(),
        strategy: Some(&w.strategy),
        compression_level: Some(w.compression_level),
        fallbacks: Some(&fallbacks),
    };
    let chain = match check_options(cfg, &w.tenant_id, plan, &stored, &options, Checks::new()) {
        Ok(c) => c,
        Err(e) => {
            // The providers changed since the batch was made (a key deleted): no retry fixes it.
            let why = format!("the providers can no longer be used: {}", problem_text(&e));
            return fail(env, cfg, &db, holder, &w, &why, attempt).await;
        }
    };
    let job = gateway::Job {
        text: &w.text,
        strategy: chain.strategy,
        level: chain.level,
    };
    match gateway::run(cfg, &db, &w.tenant_id, &chain.chain, job).await {
        Ok(result) => {
            let opt_id = ids::new_id("opt");
            let author = Author {
                user_id: w.user_id.clone(),
                api_key_id: w.api_key_id.clone(),
                batch_id: Some(w.batch_id.clone()),
            };
            let now_ms = clock::now_ms();
            let now = clock::rfc3339(now_ms);
            let o = super::outcome(
                &opt_id,
                &author,
                &w.text,
                chain.strategy,
                chain.level,
                result,
                &now,
            );
            let (end, callback) = completion(&db, &w.batch_id, now_ms)?;
            let mut stmts = vec![
                db.stmt(
                    &format!(
                        "UPDATE optimize_batch_items SET status = 'succeeded', optimization_id = ?3, \
                         error = NULL, {}, updated_at = ?4 WHERE id = ?1 AND lease_id = ?2 AND lease_attempt = ?5 AND {}",
                        lease::SQL_RELEASE,
                        ItemStatus::sources(ItemEvent::Succeed)
                    ),
                    &args![
                        item_id,
                        holder.message_id.as_str(),
                        opt_id.as_str(),
                        now.as_str(),
                        i64::from(holder.attempt)
                    ],
                )?,
                super::insert(&db, &w.tenant_id, &o, true)?,
            ];
            stmts.extend(end);
            let changes = db.batch(stmts).await?;
            if changes.get(2).copied().unwrap_or(0) > 0 {
                outbox::send_now(env, cfg, &db, &[callback]).await;
            }
            Ok(Outcome::Ack)
        }
        Err(failed) if failed.transient() && attempt < ITEM_ATTEMPTS => {
            let now_ms = clock::now_ms();
            let retry = Staged::job(
                &Job::Optimize {
                    item_id: item_id.to_string(),
                    slot_ms: None,
                },
                egress::backoff_secs(attempt),
                now_ms,
            )?;
            let changes = db
                .batch(vec![
                    db.stmt(
                        &format!(
                            "UPDATE optimize_batch_items SET status = 'queued', error = ?3, {}, updated_at = ?4 \
                             WHERE id = ?1 AND lease_id = ?2 AND lease_attempt = ?5 AND {}",
                            lease::SQL_RELEASE,
                            ItemStatus::sources(ItemEvent::Retry)
                        ),
                        &args![
                            item_id,
                            holder.message_id.as_str(),
                            failed.summary(),
                            clock::rfc3339(now_ms),
                            i64::from(holder.attempt)
                        ],
                    )?,
                    retry.insert_if_applied(&db)?,
                ])
                .await?;
            if changes.first().copied().unwrap_or(0) > 0 {
                outbox::send_now(env, cfg, &db, &[retry]).await;
            }
            Ok(Outcome::Ack)
        }
        Err(failed) => fail(env, cfg, &db, holder, &w, &failed.summary(), attempt).await,
    }
}

fn problem_text(e: &AppError) -> String {
    match e {
        AppError::Validation(errors) => errors
            .iter()
            .map(|f| format!("{} {}", f.field, f.message))
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

/// The item's end as failed while this delivery holds it: the reason kept, a dead letter
/// staged, the batch completed if it was the last, and its unit given back.
async fn fail(
    env: &Env,
    cfg: &Config,
    db: &Db,
    holder: &Holder,
    w: &Work,
    why: &str,
    attempts: i64,
) -> Result<Outcome> {
    end_failed(env, cfg, db, w, why, Some((holder, attempts))).await?;
    Ok(Outcome::Ack)
}

/// The dead-letter consumer's part: an item whose message the queue gave up on fails with
/// the reason (if it had not ended), completing its batch if it was the last, and its unit is
/// given back (once).
pub async fn mark_failed(env: &Env, item_id: &str, error: &str) -> Result<()> {
    let db = Db::from_env(env)?;
    let Some(w) = work(&db, item_id).await? else {
        return Ok(());
    };
    let cfg = Config::cached(env)?;
    end_failed(env, &cfg, &db, &w, error, None).await
}

/// The one `Fail` move: guarded by the holder's lease when a delivery ends it (which also
/// stages the dead letter), by the status alone when the dead-letter consumer does.
async fn end_failed(
    env: &Env,
    cfg: &Config,
    db: &Db,
    w: &Work,
    why: &str,
    held: Option<(&Holder, i64)>,
) -> Result<()> {
    let now_ms = clock::now_ms();
    let now = clock::rfc3339(now_ms);
    let (lease_guard, values) = match held {
        Some((h, _)) => (
            " AND lease_id = ?4 AND lease_attempt = ?5",
            args![
                w.id.as_str(),
                why,
                now.as_str(),
                h.message_id.as_str(),
                i64::from(h.attempt)
            ]
            .to_vec(),
        ),
        None => ("", args![w.id.as_str(), why, now.as_str()].to_vec()),
    };
    let mut stmts = vec![db.stmt(
        &format!(
            "UPDATE optimize_batch_items SET status = 'failed', error = ?2, {}, updated_at = ?3 \
             WHERE id = ?1{lease_guard} AND {}",
            lease::SQL_RELEASE,
            ItemStatus::sources(ItemEvent::Fail)
        ),
        &values,
    )?];
    let letter = match held {
        Some((_, attempts)) => {
            let letter = Staged::dead_letter(
                &DeadLetter {
                    job: Job::Optimize {
                        item_id: w.id.clone(),
                        slot_ms: None,
                    },
                    error: why.to_string(),
                    attempts,
                },
                now_ms,
            )?;
            stmts.push(letter.insert_if_applied(db)?);
            Some(letter)
        }
        None => None,
    };
    let completes_at = stmts.len();
    let (end, callback) = completion(db, &w.batch_id, now_ms)?;
    stmts.extend(end);
    let changes = db.batch(stmts).await?;
    let ended = changes.first().copied().unwrap_or(0) > 0;
    // A delivery gives the unit back when its move applied; the dead-letter consumer whenever
    // the item did not succeed (the meter gives an op back once).
    if ended || (held.is_none() && ItemStatus::parse(&w.status) != Some(ItemStatus::Succeeded)) {
        refund_item(env, w).await;
    }
    if let (true, Some(letter)) = (ended, letter) {
        outbox::send_now(env, cfg, db, &[letter]).await;
    }
    if changes.get(completes_at).copied().unwrap_or(0) > 0 {
        outbox::send_now(env, cfg, db, &[callback]).await;
    }
    Ok(())
}

/// Delivers a batch's end event (`optimize.batch.completed` / `.cancelled`) with the batch
/// as `data`, through the shared callback sender.
pub async fn deliver_callback(
    env: &Env,
    cfg: &Config,
    batch_id: &str,
    event: &str,
) -> std::result::Result<(), String> {
    let db = Db::from_env(env).map_err(|e| e.to_string())?;
    let Some(row) = by_id(&db, batch_id).await.map_err(|e| e.to_string())? else {
        return Ok(());
    };
    let tenant_id = row.tenant_id.clone();
    let batch: OptimizeBatch = row.into();
    let created_at = batch
        .completed_at
        .clone()
        .unwrap_or_else(|| clock::rfc3339(clock::now_ms()));
    let data = serde_json::to_value(&batch).map_err(|e| e.to_string())?;
    callbacks::post(
        cfg,
        &db,
        Event {
            tenant_id: &tenant_id,
            subject_id: batch_id,
            event,
            created_at,
            data,
        },
    )
    .await
}

/// Tells the batch's author it completed (once, with the event's first delivery).
pub async fn notify_completion(env: &Env, cfg: &Config, batch_id: &str) {
    let Ok(db) = Db::from_env(env) else { return };
    let Ok(Some(row)) = by_id(&db, batch_id).await else {
        return;
    };
    let tenant_id = row.tenant_id.clone();
    let b: OptimizeBatch = row.into();
    let Some(user) = b.user_id.clone() else {
        return;
    };
    let notice = crate::notifications::Notice {
        kind: crate::notifications::model::Kind::OptimizeBatchCompleted,
        title: "A prompt batch completed".into(),
        body: format!(
            "{} of {} prompts optimised, {} failed.",
            b.succeeded, b.total, b.failed
        ),
        link: Some(format!("/optimize/batch/{batch_id}")),
        data: Some(json!({"batch_id": batch_id, "succeeded": b.succeeded, "failed": b.failed})),
    };
    crate::notifications::tell(env, cfg, &db, &tenant_id, &[user], notice).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use ItemEvent as E;
    use ItemStatus as S;

    #[test]
    fn items_move_only_forward() {
        assert_eq!(S::Queued.next(E::Claim), Some(S::Running));
        assert_eq!(S::Running.next(E::Claim), Some(S::Running));
        assert_eq!(S::Running.next(E::Succeed), Some(S::Succeeded));
        assert_eq!(S::Running.next(E::Retry), Some(S::Queued));
        assert_eq!(S::Running.next(E::Fail), Some(S::Failed));
        assert_eq!(S::Queued.next(E::Fail), Some(S::Failed));
        assert_eq!(S::Queued.next(E::Cancel), Some(S::Cancelled));
        // A running item finishes; a finished one never moves again.
        assert_eq!(S::Running.next(E::Cancel), None);
        assert_eq!(S::Queued.next(E::Succeed), None);
        for done in [S::Succeeded, S::Failed, S::Cancelled] {
            for e in [E::Claim, E::Succeed, E::Retry, E::Fail, E::Cancel] {
                assert_eq!(done.next(e), None, "{done:?} {e:?}");
            }
        }
    }

    #[test]
    fn the_sql_guards_are_the_transition_table() {
        assert_eq!(
            ItemStatus::sources(E::Claim),
            "status IN ('queued', 'running')"
        );
        assert_eq!(ItemStatus::sources(E::Succeed), "status IN ('running')");
        assert_eq!(ItemStatus::sources(E::Cancel), "status IN ('queued')");
    }

    #[test]
    fn progress_is_finished_over_total() {
        assert_eq!(progress(0, 0), 0);
        assert_eq!(progress(3, 1), 33);
        assert_eq!(progress(30, 30), 100);
        assert_eq!(progress(50, 49), 98);
    }

    #[test]
    fn item_ids_sort_by_position() {
        let mut ids: Vec<String> = [10, 2, 99, 0]
            .iter()
            .map(|i| item_id("obt_x", *i))
            .collect();
        ids.sort();
        assert_eq!(ids, ["obt_x_000", "obt_x_002", "obt_x_010", "obt_x_099"]);
    }

    #[test]
    fn refunds_name_the_month_the_units_were_reserved_in() {
        let r = refund_of("ten_1", "2026-11-30T23:59:59Z", &["a".into(), "b".into()]);
        assert_eq!(r.period, "2026-11");
        assert_eq!((r.op_id.as_str(), r.more), ("a", vec!["b".to_string()]));
    }
}

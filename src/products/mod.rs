//! The tenant's product catalogue: SKU unique per tenant, prices in minor units with an
//! ISO 4217 currency, status draft/active/archived, pictures from the tenant's media, and
//! products made from a document job's candidates.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use crate::args;
use crate::audit;
use crate::handler;
use crate::http::context::Ctx;
use crate::http::json::{self as j, Checks};
use crate::http::pagination::PAGING;
use crate::http::reply::Reply;
use crate::http::router::{q, q_enum, Access, QueryDoc, Route};
use crate::inventory::model::{self as inv, Change, MovementKind, MAX_QUANTITY};
use crate::inventory::stock::{self, LowStock, NewMovement};
use crate::media;
use crate::media::job_state::JobStatus;
use crate::platform::db::{first_row, like_pattern, Arg, Db, Filter};
use crate::platform::error::{AppError, Result};
use crate::platform::ids;

pub const STATUSES: [&str; 3] = ["draft", "active", "archived"];
pub const CURRENCIES: [&str; 28] = [
    "EUR", "USD", "GBP", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK", "HUF", "RON", "BGN", "ISK",
    "JPY", "CNY", "KRW", "INR", "SGD", "HKD", "AUD", "NZD", "CAD", "BRL", "MXN", "ZAR", "TRY",
    "AED", "ILS",
];

const LIST_QUERY: [QueryDoc; 5] = [
    PAGING[0],
    PAGING[1],
    q_enum("status", &STATUSES, "Only products with this status."),
    q("category", "string", "Only products in this category."),
    q("q", "string", "Search name and SKU."),
];

pub fn routes() -> Vec<Route> {
    vec![
        Route::get("/api/v1/products", Access::User, handler!(list))
            .doc("products", "The catalogue, newest first")
            .list("Product")
            .query(&LIST_QUERY),
        Route::post("/api/v1/products", Access::User, handler!(create))
            .doc("products", "Add a product (SKU unique per tenant)")
            .body("CreateProduct")
            .created("Product")
            .idempotent(),
        Route::get("/api/v1/products/:id", Access::User, handler!(get))
            .doc("products", "One product")
            .ok("Product"),
        Route::patch("/api/v1/products/:id", Access::User, handler!(update))
            .doc("products", "Change a product")
            .body("UpdateProduct")
            .ok("Product"),
        Route::delete("/api/v1/products/:id", Access::User, handler!(remove))
            .doc("products", "Delete a product")
            .no_content(),
        Route::post(
            "/api/v1/products/from-candidates",
            Access::User,
            handler!(from_candidates),
        )
        .doc(
            "products",
            "Create draft products from a completed job's candidates (by index)",
        )
        .body("FromCandidates")
        .created("CreatedProducts")
        .idempotent(),
    ]
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Product {
    pub id: String,
    pub name: String,
    pub sku: String,
    /// Minor units (cents).
    pub price: i64,
    /// ISO 4217.
    pub currency: String,
    pub quantity: i64,
    /// At or below this quantity the product is low on stock (`null`: no level).
    pub reorder_level: Option<i64>,
    pub category: Option<String>,
    #[schema(value_type = Object)]
    pub attributes: Value,
    /// `draft`, `active` or `archived`.
    pub status: String,
    pub media_ids: Vec<String>,
    /// The job it was made from, if any.
    pub source_job_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// The products `from-candidates` created.
#[derive(Debug, Serialize, ToSchema)]
#[serde(transparent)]
pub struct CreatedProducts(pub Vec<Product>);

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProduct {
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub sku: String,
    /// Minor units, ≥ 0.
    #[schema(minimum = 0, maximum = 1000000000000.0)]
    pub price: i64,
    /// ISO 4217.
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: String,
    #[schema(minimum = 0, maximum = 1000000000)]
    pub quantity: Option<i64>,
    /// At or below this quantity the tenant's admins are told, once per crossing.
    #[schema(minimum = 0, maximum = 1000000000)]
    pub reorder_level: Option<i64>,
    pub category: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Value>,
    #[schema(pattern = "^(draft|active|archived)$")]
    pub status: Option<String>,
    /// Ids of the tenant's media files.
    #[schema(max_items = 20)]
    pub media_ids: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProduct {
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    pub sku: Option<String>,
    /// Minor units, ≥ 0.
    #[schema(minimum = 0, maximum = 1000000000000.0)]
    pub price: Option<i64>,
    /// ISO 4217.
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: Option<String>,
    /// The counted stock: recorded as an `adjustment` movement of the difference.
    #[schema(minimum = 0, maximum = 1000000000)]
    pub quantity: Option<i64>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "j::double_option")]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 1000000000)]
    pub reorder_level: Option<Option<i64>>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "j::double_option")]
    #[schema(value_type = Option<String>)]
    pub category: Option<Option<String>>,
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Value>,
    #[schema(pattern = "^(draft|active|archived)$")]
    pub status: Option<String>,
    /// Ids of the tenant's media files.
    #[schema(max_items = 20)]
    pub media_ids: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FromCandidates {
    #[schema(min_length = 1)]
    pub job_id: String,
    /// Indexes into the job's `result.product_candidates`.
    #[schema(min_items = 1, max_items = 100)]
    pub candidates: Vec<usize>,
}

/// A product as stored (read with `COLUMNS`).
#[derive(Deserialize)]
pub struct Row {
    id: String,
    name: String,
    sku: String,
    price: i64,
    currency: String,
    quantity: i64,
    reorder_level: Option<i64>,
    category: Option<String>,
    attributes: String,
    status: String,
    media_ids: String,
    source_job_id: Option<String>,
    created_at: String,
    updated_at: String,
}

impl From<Row> for Product {
    fn from(r: Row) -> Self {
        Product {
            id: r.id,
            name: r.name,
            sku: r.sku,
            price: r.price,
            currency: r.currency,
            quantity: r.quantity,
            reorder_level: r.reorder_level,
            category: r.category,
            attributes: serde_json::from_str(&r.attributes).unwrap_or(json!({})),
            status: r.status,
            media_ids: serde_json::from_str(&r.media_ids).unwrap_or_default(),
            source_job_id: r.source_job_id,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

pub const COLUMNS: &str = "products.id, products.name, products.sku, products.price, products.currency, \
     products.quantity, products.reorder_level, products.category, products.attributes, products.status, products.media_ids, \
     products.source_job_id, products.created_at, products.updated_at";

pub async fn find(db: &Db, tenant_id: &str, id: &str) -> Result<Product> {
    let row: Row = db
        .one(
            &format!(
                "SELECT {COLUMNS} FROM products WHERE products.id = ?1 AND products.tenant_id = ?2"
            ),
            &args![id, tenant_id],
        )
        .await?
        .ok_or(AppError::NotFound)?;
    Ok(row.into())
}

/// The largest price in minor units (the schemas' `maximum` says the same).
const MAX_PRICE: i64 = 1_000_000_000_000;

fn sku(v: &str) -> std::result::Result<String, String> {
    let v = v.trim();
    if (1..=64).contains(&v.len())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        Ok(v.to_string())
    } else {
        Err("must be 1–64 characters of letters, digits, - _ .".into())
    }
}

/// The validated, complete field set of a product.
struct Fields {
    name: String,
    sku: String,
    price: i64,
    currency: String,
    quantity: i64,
    reorder_level: Option<i64>,
    category: Option<String>,
    attributes: Map<String, Value>,
    status: String,
    media_ids: Vec<String>,
}

fn check(f: &Fields, checks: &mut Checks) {
    if let Err(m) = j::text(&f.name, 1, 200) {
        checks.add("name", m);
    }
    if let Err(m) = sku(&f.sku) {
        checks.add("sku", m);
    }
    if !(0..=MAX_PRICE).contains(&f.price) {
        checks.add("price", "must be a whole number of minor units from 0");
    }
    if !CURRENCIES.contains(&f.currency.as_str()) {
        checks.add("currency", "must be an ISO 4217 code like EUR or USD");
    }
    if !(0..=MAX_QUANTITY).contains(&f.quantity) {
        checks.add("quantity", format!("must be between 0 and {MAX_QUANTITY}"));
    }
    if let Some(Err(m)) = f.reorder_level.map(inv::reorder_level) {
        checks.add("reorder_level", m);
    }
    if let Some(Err(m)) = f.category.as_deref().map(inv::category) {
        checks.add("category", m);
    }
    if Value::Object(f.attributes.clone()).to_string().len() > 16 * 1024 {
        checks.add("attributes", "must be at most 16 KB");
    }
    if !STATUSES.contains(&f.status.as_str()) {
        checks.add("status", format!("must be one of {}", STATUSES.join(", ")));
    }
    if f.media_ids.len() > 20 {
        checks.add("media_ids", "at most 20 files");
    }
}

/// Every media id must be one of the tenant's files.
async fn check_media(db: &Db, tenant_id: &str, ids: &[String]) -> Result<()> {
    for id in ids {
        if media::object_key(db, tenant_id, id).await.is_err() {
            return Err(AppError::field(
                "media_ids",
                format!("`{id}` is not one of your files"),
            ));
        }
    }
    Ok(())
}

fn sku_conflict(e: AppError) -> AppError {
    match e {
        AppError::Conflict(_) => AppError::Conflict("A product with this SKU exists.".into()),
        other => other,
    }
}

async fn list(cx: Ctx) -> Result<Reply> {
    let page = cx.page()?;
    let mut f = Filter::new(
        &format!("SELECT {COLUMNS} FROM products WHERE products.tenant_id = ?1"),
        args![cx.tenant_id()?],
    );
    f.and_opt(
        "products.status = ?",
        cx.query_enum("status", &STATUSES)?.map(Arg::from),
    )
    .and_opt(
        "products.category = ?",
        cx.query_nonempty("category").map(Arg::from),
    );
    if let Some(term) = cx.query_nonempty("q") {
        let p = like_pattern(term);
        f.and(
            "(products.name LIKE ? ESCAPE '\\' OR products.sku LIKE ? ESCAPE '\\')",
            args![p.clone(), p],
        );
    }
    f.page(&page, "products");
    let rows: Vec<Row> = cx.db()?.all(&f.sql, &f.args).await?;
    let rows: Vec<Product> = rows.into_iter().map(Into::into).collect();
    let (rows, next) = page.finish(rows, |p| (p.created_at.clone(), p.id.clone()));
    Reply::list(&rows, next.as_deref())
}

async fn get(cx: Ctx) -> Result<Reply> {
    Reply::ok(&find(&cx.db()?, cx.tenant_id()?, cx.param("id")).await?)
}

async fn insert(
    cx: &Ctx,
    db: &Db,
    f: &Fields,
    source_job: Option<&str>,
) -> Result<(String, worker::D1PreparedStatement)> {
    let id = ids::new_id("prd");
    let stmt = db.stmt(
        "INSERT INTO products (id, tenant_id, name, sku, price, currency, quantity, category, \
         attributes, status, media_ids, source_job_id, created_at, updated_at, reorder_level, \
         low_stock_alerted) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13, ?14, ?15)",
        &args![
            id.as_str(),
            cx.tenant_id()?,
            f.name.trim(),
            f.sku.trim(),
            f.price,
            f.currency.as_str(),
            f.quantity,
            f.category.as_deref().map(str::trim),
            Value::Object(f.attributes.clone()).to_string(),
            f.status.as_str(),
            serde_json::to_string(&f.media_ids)?,
            source_job.map(str::to_string),
            cx.now(),
            f.reorder_level,
            // Nothing crossed yet: a product made low on stock starts as told, and alerts
            // after a receipt takes it above its level and a movement brings it back.
            inv::is_low(f.quantity, f.reorder_level)
        ],
    )?;
    Ok((id, stmt))
}

async fn create(cx: Ctx) -> Result<Reply> {
    let body: CreateProduct = cx.json()?;
    let mut checks = Checks::new();
    let attributes = checks.take("attributes", media::object_or_empty(body.attributes));
    let f = Fields {
        name: body.name,
        sku: body.sku,
        price: body.price,
        currency: body.currency,
        quantity: body.quantity.unwrap_or(0),
        reorder_level: body.reorder_level,
        category: body.category,
        attributes: attributes.unwrap_or_default(),
        status: body.status.unwrap_or_else(|| "draft".into()),
        media_ids: body.media_ids.unwrap_or_default(),
    };
    check(&f, &mut checks);
    checks.finish()?;
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    check_media(&db, tenant_id, &f.media_ids).await?;
    let (id, stmt) = insert(&cx, &db, &f, None).await?;
    db.batch(vec![
        stmt,
        audit::entry(&cx, "product.created")
            .target("product", id.as_str())
            .meta(json!({"sku": f.sku.trim()}))
            .stmt(&db)?,
    ])
    .await
    .map_err(sku_conflict)?;
    let p = find(&db, tenant_id, &id).await?;
    Reply::created(&p, Some(format!("/api/v1/products/{id}")))
}

async fn update(cx: Ctx) -> Result<Reply> {
    let body: UpdateProduct = cx.json()?;
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    let current = find(&db, tenant_id, cx.param("id")).await?;
    let mut checks = Checks::new();
    let attributes = match body.attributes {
        None => current.attributes.as_object().cloned(),
        some => checks.take("attributes", media::object_or_empty(some)),
    };
    let f = Fields {
        name: body.name.unwrap_or(current.name),
        sku: body.sku.unwrap_or(current.sku),
        price: body.price.unwrap_or(current.price),
        currency: body.currency.unwrap_or(current.currency),
        quantity: body.quantity.unwrap_or(current.quantity),
        reorder_level: body.reorder_level.unwrap_or(current.reorder_level),
        category: body.category.unwrap_or(current.category),
        attributes: attributes.unwrap_or_default(),
        status: body.status.unwrap_or(current.status),
        media_ids: body.media_ids.unwrap_or(current.media_ids),
    };
    check(&f, &mut checks);
    checks.finish()?;
    check_media(&db, tenant_id, &f.media_ids).await?;
    let id = current.id.as_str();
    let mut stmts = Vec::new();
    // A new quantity is a stock change like any other: an adjustment movement of the
    // difference, decided against the row as it is when the batch runs (a sale in between
    // is kept in the difference, not overwritten).
    let adjusted = body.quantity.is_some();
    if let Some(target) = body.quantity {
        let m = NewMovement {
            id: ids::ordered_id("mov", cx.now_ms),
            kind: MovementKind::Adjustment,
            change: Change::To(target),
            reason: None,
            reference: None,
            user_id: stock::recorded_by(&cx)?,
            created_at: cx.now(),
        };
        stmts.extend(stock::apply(&db, tenant_id, id, &m)?);
    }
    stmts.push(db.stmt(
        "UPDATE products SET name = ?3, sku = ?4, price = ?5, currency = ?6, reorder_level = ?7, \
         category = ?8, attributes = ?9, status = ?10, media_ids = ?11, updated_at = ?12 \
         WHERE id = ?1 AND tenant_id = ?2",
        &args![
            id,
            tenant_id,
            f.name.trim(),
            f.sku.trim(),
            f.price,
            f.currency.as_str(),
            f.reorder_level,
            f.category.as_deref().map(str::trim),
            Value::Object(f.attributes.clone()).to_string(),
            f.status.as_str(),
            serde_json::to_string(&f.media_ids)?,
            cx.now()
        ],
    )?);
    let flag_at = stmts.len();
    stmts.push(stock::flag(&db, tenant_id, id)?);
    stmts.push(
        audit::entry(&cx, "product.updated")
            .target("product", id)
            .meta(json!({"quantity": body.quantity, "adjusted": adjusted}))
            .stmt(&db)?,
    );
    stmts.push(db.stmt(
        &format!(
            "SELECT {COLUMNS} FROM products WHERE products.id = ?1 AND products.tenant_id = ?2"
        ),
        &args![id, tenant_id],
    )?);
    let results = db.read_batch(stmts).await.map_err(sku_conflict)?;
    let p: Product = results
        .last()
        .map(first_row::<Row>)
        .transpose()?
        .flatten()
        .ok_or(AppError::NotFound)?
        .into();
    if stock::raised(&results[flag_at])? {
        low_stock_alert(&cx, &db, tenant_id, &p).await;
    }
    Reply::ok(&p)
}

/// Tells the tenant's admins that `p` reached its reorder level (the flag flipped in the
/// request's batch, so once per crossing).
pub async fn low_stock_alert(cx: &Ctx, db: &Db, tenant_id: &str, p: &Product) {
    if let Some(level) = p.reorder_level {
        let low = LowStock {
            product_id: &p.id,
            name: &p.name,
            sku: &p.sku,
            quantity: p.quantity,
            reorder_level: level,
        };
        stock::alert(cx, db, tenant_id, &low).await;
    }
}

async fn remove(cx: Ctx) -> Result<Reply> {
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    let p = find(&db, tenant_id, cx.param("id")).await?;
    db.batch(vec![
        db.stmt(
            "DELETE FROM products WHERE id = ?1 AND tenant_id = ?2",
            &args![p.id.as_str(), tenant_id],
        )?,
        audit::entry(&cx, "product.deleted")
            .target("product", p.id.as_str())
            .meta(json!({"sku": p.sku}))
            .stmt(&db)?,
    ])
    .await?;
    Ok(Reply::no_content())
}

/// A SKU for a candidate without one: stable per job and index.
pub fn candidate_sku(job_id: &str, index: usize) -> String {
    let short: String = job_id.trim_start_matches("job_").chars().take(8).collect();
    format!("CAND-{short}-{}", index + 1).to_ascii_uppercase()
}

async fn from_candidates(cx: Ctx) -> Result<Reply> {
    let body: FromCandidates = cx.json()?;
    if body.candidates.is_empty() || body.candidates.len() > 100 {
        return Err(AppError::field("candidates", "must list 1–100 indexes"));
    }
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    let job = media::jobs::find(&db, tenant_id, &body.job_id).await?;
    let Some(result) = job.result.filter(|_| job.status == JobStatus::Completed) else {
        return Err(AppError::Conflict(format!(
            "The job is {}; products come from a completed job.",
            job.status
        )));
    };
    let mut stmts = Vec::new();
    let mut ids_made = Vec::new();
    let mut seen = Vec::new();
    let mut checks = Checks::new();
    for (n, &i) in body.candidates.iter().enumerate() {
        let c = result.product_candidates.get(i).ok_or_else(|| {
            AppError::field(
                format!("candidates[{n}]"),
                format!("the job has {} candidates", result.product_candidates.len()),
            )
        })?;
        if seen.contains(&i) {
            continue;
        }
        seen.push(i);
        let mut attributes = Map::new();
        attributes.insert("source_line".into(), json!(c.text));
        attributes.insert("confidence".into(), json!(c.confidence));
        let f = Fields {
            name: c.name.chars().take(200).collect(),
            sku: c
                .sku
                .clone()
                .filter(|s| sku(s).is_ok())
                .unwrap_or_else(|| candidate_sku(&job.id, i)),
            price: c.price,
            currency: if CURRENCIES.contains(&c.currency.as_str()) {
                c.currency.clone()
            } else {
                "EUR".into()
            },
            quantity: c.quantity.unwrap_or(0),
            reorder_level: None,
            category: None,
            attributes,
            status: "draft".into(),
            media_ids: vec![job.media_id.clone()],
        };
        // A candidate is what a parser read from a file: it becomes a product only if it
        // passes the same checks as one typed in.
        let mut candidate = Checks::new();
        check(&f, &mut candidate);
        checks.nest(&format!("candidates[{n}]"), candidate);
        let (id, stmt) = insert(&cx, &db, &f, Some(&job.id)).await?;
        ids_made.push(id);
        stmts.push(stmt);
    }
    checks.finish()?;
    stmts.push(
        audit::entry(&cx, "product.from_candidates")
            .target("job", job.id.as_str())
            .meta(json!({"products": ids_made}))
            .stmt(&db)?,
    );
    // One transaction: all of them, or none when a SKU is taken.
    db.batch(stmts).await.map_err(sku_conflict)?;
    let mut made = Vec::new();
    for id in &ids_made {
        made.push(find(&db, tenant_id, id).await?);
    }
    Reply::created(&CreatedProducts(made), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_price_limits_are_the_checked_ones() {
        let doc = crate::docs::document();
        for dto in ["CreateProduct", "UpdateProduct"] {
            let price = &doc["components"]["schemas"][dto]["properties"]["price"];
            assert_eq!(price["minimum"], 0, "{dto}");
            assert_eq!(price["maximum"].as_f64(), Some(MAX_PRICE as f64), "{dto}");
        }
    }

    #[test]
    fn skus_and_candidate_skus() {
        assert!(sku("MUG-001").is_ok() && sku("a.b_c").is_ok());
        assert!(sku("has space").is_err() && sku("").is_err());
        assert_eq!(candidate_sku("job_3f9c0a11aa", 0), "CAND-3F9C0A11-1");
        assert!(sku(&candidate_sku("job_3f9c0a11aa", 41)).is_ok());
    }
}

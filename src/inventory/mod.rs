//! Inventory on the product catalogue (module D): stock movements (receipt, sale, adjustment,
//! return) that change a product's quantity in the same D1 batch, exact under concurrency and
//! never below zero; reorder levels with a one-time low-stock alert per crossing; the stock
//! summary; and the tenant's categories with a rename across products.
//!
//! Anyone who may edit products records movements and reads the stock (`Access::User`, like
//! `/products`); renaming a category rewrites many products at once, so it is for tenant
//! admins.

pub mod model;
pub mod stock;

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::args;
use crate::audit;
use crate::handler;
use crate::http::context::Ctx;
use crate::http::json::Checks;
use crate::http::pagination::PAGING;
use crate::http::reply::Reply;
use crate::http::router::{q_enum, Access, QueryDoc, Route};
use crate::platform::db::{first_row, Arg, Db, Filter};
use crate::platform::error::{AppError, Result};
use crate::platform::ids;
use crate::platform::paging::Page;
use crate::products::{self, Product, COLUMNS};

use model::{Change, MovementKind};
use stock::NewMovement;

const MOVEMENTS_QUERY: [QueryDoc; 3] = [
    PAGING[0],
    PAGING[1],
    q_enum("kind", &MovementKind::NAMES, "Only movements of this kind."),
];

/// The most products the summary lists as low on stock (`low_stock_count` counts them all).
const LOW_STOCK_SHOWN: u32 = 100;

pub fn routes() -> Vec<Route> {
    vec![
        Route::post(
            "/api/v1/products/:id/movements",
            Access::User,
            handler!(record),
        )
        .doc(
            "inventory",
            "Record a stock movement (409 `insufficient_stock` when a sale or adjustment would take the stock below zero)",
        )
        .body("CreateMovement")
        .created("RecordedMovement")
        .idempotent(),
        Route::get(
            "/api/v1/products/:id/movements",
            Access::User,
            handler!(list),
        )
        .doc("inventory", "A product's stock movements, newest first")
        .list("Movement")
        .query(&MOVEMENTS_QUERY),
        Route::get("/api/v1/inventory/summary", Access::User, handler!(summary))
            .doc(
                "inventory",
                "Stock value by category and currency, and the products at or below their reorder level",
            )
            .ok("InventorySummary"),
        Route::get("/api/v1/categories", Access::User, handler!(categories))
            .doc("inventory", "The tenant's product categories with their product counts, by name")
            .list("Category")
            .query(&PAGING),
        Route::post(
            "/api/v1/categories/rename",
            Access::TenantAdmin,
            handler!(rename),
        )
        .doc("inventory", "Rename a category on every product in it (tenant admins)")
        .body("RenameCategory")
        .ok("RenamedCategory"),
    ]
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMovement {
    pub kind: MovementKind,
    /// Units: positive for `receipt`, `sale` and `return`; a signed, non-zero change for
    /// `adjustment`.
    #[schema(minimum = -1000000000, maximum = 1000000000)]
    pub quantity: i64,
    #[schema(max_length = 500)]
    pub reason: Option<String>,
    /// An order, delivery note or invoice number.
    #[schema(max_length = 200)]
    pub reference: Option<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Movement {
    pub id: String,
    pub product_id: String,
    pub kind: MovementKind,
    /// The signed change of the stock (a sale of 5 is `-5`).
    pub quantity: i64,
    /// The product's stock right after this movement.
    pub quantity_after: i64,
    pub reason: Option<String>,
    pub reference: Option<String>,
    /// The user (or API key) that recorded it.
    pub user_id: Option<String>,
    pub created_at: String,
}

/// A recorded movement and the product with its new quantity.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordedMovement {
    #[serde(flatten)]
    pub movement: Movement,
    pub product: Product,
}

#[derive(Deserialize)]
struct MovementRow {
    id: String,
    product_id: String,
    kind: String,
    quantity: i64,
    quantity_after: i64,
    reason: Option<String>,
    reference: Option<String>,
    user_id: Option<String>,
    created_at: String,
}

impl MovementRow {
    fn into_movement(self) -> Result<Movement> {
        let kind = MovementKind::parse(&self.kind)
            .ok_or_else(|| AppError::internal(format!("movement kind `{}`", self.kind)))?;
        Ok(Movement {
            id: self.id,
            product_id: self.product_id,
            kind,
            quantity: self.quantity,
            quantity_after: self.quantity_after,
            reason: self.reason,
            reference: self.reference,
            user_id: self.user_id,
            created_at: self.created_at,
        })
    }
}

const MOVEMENT_COLUMNS: &str =
    "stock_movements.id, stock_movements.product_id, stock_movements.kind, \
     stock_movements.quantity, stock_movements.quantity_after, stock_movements.reason, \
     stock_movements.reference, stock_movements.user_id, stock_movements.created_at";

fn product_stmt(cx: &Ctx, db: &Db, id: &str) -> Result<worker::D1PreparedStatement> {
    db.stmt(
        &format!(
            "SELECT {COLUMNS} FROM products WHERE products.id = ?1 AND products.tenant_id = ?2"
        ),
        &args![id, cx.tenant_id()?],
    )
}

async fn record(cx: Ctx) -> Result<Reply> {
    let body: CreateMovement = cx.json()?;
    let mut checks = Checks::new();
    let delta = checks.take("quantity", body.kind.delta(body.quantity));
    let reason = checks.take("reason", model::note(body.reason.as_deref(), 500));
    let reference = checks.take("reference", model::note(body.reference.as_deref(), 200));
    checks.finish()?;
    let (Some(delta), Some(reason), Some(reference)) = (delta, reason, reference) else {
        return Err(AppError::internal("checked movement fields missing"));
    };
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    let product_id = cx.param("id");
    let m = NewMovement {
        id: ids::ordered_id("mov", cx.now_ms),
        kind: body.kind,
        change: Change::By(delta),
        reason,
        reference,
        user_id: stock::recorded_by(&cx)?,
        created_at: cx.now(),
    };
    // One transaction: the guarded movement row, the product's quantity from it, the
    // low-stock flag, then the rows as they are now.
    let [insert, update] = stock::apply(&db, tenant_id, product_id, &m)?;
    let results = db
        .read_batch(vec![
            insert,
            update,
            stock::flag(&db, tenant_id, product_id)?,
            product_stmt(&cx, &db, product_id)?,
            db.stmt(
                &format!("SELECT {MOVEMENT_COLUMNS} FROM stock_movements WHERE id = ?1 AND tenant_id = ?2"),
                &args![m.id.as_str(), tenant_id],
            )?,
        ])
        .await?;
    let product: Product = first_row::<products::Row>(&results[3])?
        .ok_or(AppError::NotFound)?
        .into();
    let recorded = first_row::<MovementRow>(&results[4])?;
    let Some(movement) = recorded.filter(|_| stock::moved(&results[0])) else {
        return Err(refusal(&product, delta));
    };
    if stock::raised(&results[2])? {
        products::low_stock_alert(&cx, &db, tenant_id, &product).await;
    }
    Reply::created(
        &RecordedMovement {
            movement: movement.into_movement()?,
            product,
        },
        None,
    )
}

/// Why a movement of a product that exists was not recorded (read in the same transaction).
fn refusal(p: &Product, delta: i64) -> AppError {
    if p.quantity + delta < 0 {
        AppError::refused(
            409,
            "insufficient_stock",
            format!(
                "{} in stock; this movement takes {} away.",
                p.quantity,
                delta.unsigned_abs()
            ),
        )
        .with("available", p.quantity)
        .with("requested", delta.unsigned_abs())
    } else {
        AppError::refused(
            409,
            "stock_limit_exceeded",
            format!(
                "{} in stock; a product holds at most {} units.",
                p.quantity,
                model::MAX_QUANTITY
            ),
        )
        .with("available", p.quantity)
    }
}

async fn list(cx: Ctx) -> Result<Reply> {
    let page = cx.page()?;
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    let product_id = cx.param("id");
    let mut f = Filter::new(
        &format!(
            "SELECT {MOVEMENT_COLUMNS} FROM stock_movements \
             WHERE stock_movements.product_id = ?1 AND stock_movements.tenant_id = ?2"
        ),
        args![product_id, tenant_id],
    );
    f.and_opt(
        "stock_movements.kind = ?",
        cx.query_enum("kind", &MovementKind::NAMES)?.map(Arg::from),
    );
    f.page(&page, "stock_movements");
    #[derive(Deserialize)]
    struct Exists {
        #[allow(dead_code)]
        id: String,
    }
    let results = db
        .read_batch(vec![
            db.stmt(
                "SELECT id FROM products WHERE id = ?1 AND tenant_id = ?2",
                &args![product_id, tenant_id],
            )?,
            db.stmt(&f.sql, &f.args)?,
        ])
        .await?;
    if first_row::<Exists>(&results[0])?.is_none() {
        return Err(AppError::NotFound);
    }
    let rows: Vec<MovementRow> = results[1]
        .results()
        .map_err(|e| AppError::internal(format!("d1: {e}")))?;
    let rows = rows
        .into_iter()
        .map(MovementRow::into_movement)
        .collect::<Result<Vec<_>>>()?;
    let (rows, next) = page.finish(rows, |m| (m.created_at.clone(), m.id.clone()));
    Reply::list(&rows, next.as_deref())
}

/// The stock of one category in one currency.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CategoryStock {
    /// `null`: products without a category.
    pub category: Option<String>,
    pub currency: String,
    pub products: i64,
    /// Units in stock.
    pub quantity: i64,
    /// Σ price × quantity, in minor units of `currency`.
    pub stock_value: i64,
}

/// The stock value in one currency across categories.
#[derive(Debug, Serialize, ToSchema)]
pub struct CurrencyTotal {
    pub currency: String,
    pub products: i64,
    pub quantity: i64,
    pub stock_value: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InventorySummary {
    /// By category (uncategorised last), then currency: prices are never added across
    /// currencies.
    pub categories: Vec<CategoryStock>,
    pub totals: Vec<CurrencyTotal>,
    /// Products at or below their reorder level, the furthest below first (at most 100).
    pub low_stock: Vec<Product>,
    pub low_stock_count: i64,
}

/// Adds the categories' figures up per currency (the rows come ordered by category).
pub fn totals(rows: &[CategoryStock]) -> Vec<CurrencyTotal> {
    let mut out: Vec<CurrencyTotal> = Vec::new();
    for r in rows {
        match out.iter_mut().find(|t| t.currency == r.currency) {
            Some(t) => {
                t.products += r.products;
                t.quantity = t.quantity.saturating_add(r.quantity);
                t.stock_value = t.stock_value.saturating_add(r.stock_value);
            }
            None => out.push(CurrencyTotal {
                currency: r.currency.clone(),
                products: r.products,
                quantity: r.quantity,
                stock_value: r.stock_value,
            }),
        }
    }
    out.sort_by(|a, b| a.currency.cmp(&b.currency));
    out
}

async fn summary(cx: Ctx) -> Result<Reply> {
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    #[derive(Deserialize)]
    struct Group {
        category: Option<String>,
        currency: String,
        products: i64,
        quantity: i64,
        // TOTAL is a float: a catalogue's value may pass what SUM's integers hold.
        stock_value: f64,
    }
    #[derive(Deserialize)]
    struct Count {
        n: i64,
    }
    const LOW: &str = "products.tenant_id = ?1 AND products.reorder_level IS NOT NULL \
         AND products.quantity <= products.reorder_level";
    let results = db
        .read_batch(vec![
            db.stmt(
                "SELECT category, currency, COUNT(*) AS products, SUM(quantity) AS quantity, \
                 TOTAL(price * quantity) AS stock_value FROM products WHERE tenant_id = ?1 \
                 GROUP BY category, currency ORDER BY category IS NULL, category, currency",
                &args![tenant_id],
            )?,
            db.stmt(
                &format!("SELECT COUNT(*) AS n FROM products WHERE {LOW}"),
                &args![tenant_id],
            )?,
            db.stmt(
                &format!(
                    "SELECT {COLUMNS} FROM products WHERE {LOW} \
                     ORDER BY products.quantity - products.reorder_level, products.name, products.id \
                     LIMIT {LOW_STOCK_SHOWN}"
                ),
                &args![tenant_id],
            )?,
        ])
        .await?;
    let d1 = |e: worker::Error| AppError::internal(format!("d1: {e}"));
    let groups: Vec<Group> = results[0].results().map_err(d1)?;
    let categories: Vec<CategoryStock> = groups
        .into_iter()
        .map(|g| CategoryStock {
            category: g.category,
            currency: g.currency,
            products: g.products,
            quantity: g.quantity,
            stock_value: g.stock_value as i64,
        })
        .collect();
    let low: Vec<products::Row> = results[2].results().map_err(d1)?;
    Reply::ok(&InventorySummary {
        totals: totals(&categories),
        categories,
        low_stock: low.into_iter().map(Into::into).collect(),
        low_stock_count: first_row::<Count>(&results[1])?.map_or(0, |c| c.n),
    })
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Category {
    pub name: String,
    /// Products in it.
    pub count: i64,
}

async fn categories(cx: Ctx) -> Result<Reply> {
    let limit = Page::parse(cx.query("limit"), None)?.limit;
    let after = match cx.query_nonempty("cursor") {
        None => None,
        Some(c) => Some(
            model::decode_category_cursor(c)
                .ok_or_else(|| AppError::field("cursor", "is not a cursor returned by this API"))?,
        ),
    };
    let mut f = Filter::new(
        "SELECT category AS name, COUNT(*) AS count FROM products \
         WHERE tenant_id = ?1 AND category IS NOT NULL",
        args![cx.tenant_id()?],
    );
    f.and_opt("category > ?", after.map(Arg::from));
    f.sql.push_str(&format!(
        " GROUP BY category ORDER BY category LIMIT {}",
        limit + 1
    ));
    let mut rows: Vec<Category> = cx.db()?.all(&f.sql, &f.args).await?;
    let next = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|c| model::encode_category_cursor(&c.name))
    } else {
        None
    };
    Reply::list(&rows, next.as_deref())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameCategory {
    /// The category as it is now (exact name).
    #[schema(min_length = 1, max_length = 100)]
    pub from: String,
    /// Its new name; an existing category's name merges the two.
    #[schema(min_length = 1, max_length = 100)]
    pub to: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RenamedCategory {
    pub from: String,
    pub to: String,
    /// Products moved to the new name.
    pub products: u64,
}

async fn rename(cx: Ctx) -> Result<Reply> {
    let body: RenameCategory = cx.json()?;
    let mut checks = Checks::new();
    let from = checks.take("from", model::category(&body.from));
    let to = checks.take("to", model::category(&body.to));
    if from.is_some() && from == to {
        checks.add("to", "must differ from `from`");
    }
    checks.finish()?;
    let (Some(from), Some(to)) = (from, to) else {
        return Err(AppError::internal("checked category names missing"));
    };
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    #[derive(serde::Deserialize)]
    struct Renamed {
        #[allow(dead_code)]
        id: String,
    }
    // Counted from RETURNING: D1's changed-row count includes the search index's trigger writes.
    let moved = db
        .all::<Renamed>(
            "UPDATE products SET category = ?3, updated_at = ?4 \
             WHERE tenant_id = ?1 AND category = ?2 RETURNING id",
            &args![tenant_id, from.as_str(), to.as_str(), cx.now()],
        )
        .await?
        .len() as u64;
    if moved == 0 {
        return Err(AppError::NotFound);
    }
    // Written after the change, which stands either way: nothing to record for an unknown
    // category.
    if let Err(e) = audit::entry(&cx, "category.renamed")
        .meta(json!({"from": from, "to": to, "products": moved}))
        .write(&db)
        .await
    {
        worker::console_error!(
            "{}",
            json!({"level": "error", "event": "audit_failed", "action": "category.renamed", "error": e.to_string()})
        );
    }
    Reply::ok(&RenamedCategory {
        from,
        to,
        products: moved,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(category: Option<&str>, currency: &str, products: i64, value: i64) -> CategoryStock {
        CategoryStock {
            category: category.map(str::to_string),
            currency: currency.into(),
            products,
            quantity: products * 2,
            stock_value: value,
        }
    }

    #[test]
    fn totals_add_up_per_currency_never_across() {
        let t = totals(&[
            row(Some("Mugs"), "EUR", 2, 1000),
            row(Some("Mugs"), "USD", 1, 300),
            row(Some("Tea"), "EUR", 3, 500),
            row(None, "EUR", 1, i64::MAX),
        ]);
        assert_eq!(t.len(), 2);
        assert_eq!(
            (t[0].currency.as_str(), t[0].products, t[0].stock_value),
            ("EUR", 6, i64::MAX)
        );
        assert_eq!((t[1].currency.as_str(), t[1].stock_value), ("USD", 300));
        assert!(totals(&[]).is_empty());
    }

    #[test]
    fn the_documented_movement_bounds_are_the_checked_ones() {
        let doc = crate::docs::document();
        let q = &doc["components"]["schemas"]["CreateMovement"]["properties"]["quantity"];
        assert_eq!(q["maximum"].as_i64(), Some(model::MAX_QUANTITY));
        assert_eq!(q["minimum"].as_i64(), Some(-model::MAX_QUANTITY));
        let kinds = &doc["components"]["schemas"]["MovementKind"]["enum"];
        assert_eq!(kinds, &json!(MovementKind::NAMES));
    }
}

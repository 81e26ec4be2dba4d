//! Changing a product's stock inside the caller's D1 batch: the movement row is inserted only
//! when the change keeps the stock within 0..=MAX_QUANTITY (read and decided in that one
//! statement), and the product takes its new quantity from that row, so concurrent sales are
//! exact (a batch is one transaction). The low-stock flag follows in the same batch: one
//! conditional update that flips it and reports the flip, so a crossing alerts once.

use serde::Deserialize;
use serde_json::json;
use worker::{D1PreparedStatement, D1Result};

use super::model::{Change, MovementKind, MAX_QUANTITY};
use crate::args;
use crate::http::context::Ctx;
use crate::notifications::model::Kind;
use crate::notifications::Notice;
use crate::platform::db::{self, Db};
use crate::platform::error::Result;

/// A movement to record (its id is chosen before the batch so the statements can name it).
pub struct NewMovement {
    pub id: String,
    pub kind: MovementKind,
    pub change: Change,
    pub reason: Option<String>,
    pub reference: Option<String>,
    pub user_id: Option<String>,
    pub created_at: String,
}

/// The caller recorded on a movement: the user, or the API key.
pub fn recorded_by(cx: &Ctx) -> Result<Option<String>> {
    let p = cx.principal()?;
    Ok(p.user_id
        .clone()
        .or_else(|| p.api_key.as_ref().map(|k| k.id.clone())))
}

/// The movement's two statements, in this order in the batch: the guarded insert, then the
/// product's quantity from the row (nothing when the insert did not happen). The insert's
/// changed-row count says whether the movement happened.
pub fn apply(
    db: &Db,
    tenant_id: &str,
    product_id: &str,
    m: &NewMovement,
) -> Result<[D1PreparedStatement; 2]> {
    // ?5 is the delta (By) or the target (To); the SELECT computes the signed change and the
    // stock after it from the product's current row.
    let (change, after, guard) = match m.change {
        Change::By(_) => (
            "?5",
            "products.quantity + ?5",
            "products.quantity + ?5 BETWEEN 0 AND ?10",
        ),
        Change::To(_) => (
            "?5 - products.quantity",
            "?5",
            "products.quantity != ?5 AND ?5 BETWEEN 0 AND ?10",
        ),
    };
    let value = match m.change {
        Change::By(v) | Change::To(v) => v,
    };
    let insert = db.stmt(
        &format!(
            "INSERT INTO stock_movements (id, tenant_id, product_id, kind, quantity, quantity_after, \
             reason, reference, user_id, created_at) \
             SELECT ?1, ?2, ?3, ?4, {change}, {after}, ?6, ?7, ?8, ?9 FROM products \
             WHERE products.id = ?3 AND products.tenant_id = ?2 AND {guard}"
        ),
        &args![
            m.id.as_str(),
            tenant_id,
            product_id,
            m.kind.as_str(),
            value,
            m.reason.clone(),
            m.reference.clone(),
            m.user_id.clone(),
            m.created_at.as_str(),
            MAX_QUANTITY
        ],
    )?;
    let update = db.stmt(
        "UPDATE products SET quantity = m.quantity_after, updated_at = ?4 \
         FROM (SELECT quantity_after FROM stock_movements WHERE id = ?3 AND tenant_id = ?2) AS m \
         WHERE products.id = ?1 AND products.tenant_id = ?2",
        &args![product_id, tenant_id, m.id.as_str(), m.created_at.as_str()],
    )?;
    Ok([insert, update])
}

/// Keeps `low_stock_alerted` in step with the stock and the level: set when the stock is at or
/// below the level, cleared (re-armed) when above. Changes a row only on a flip and returns the
/// new value then (read with `raised`). Goes after every statement of the batch that changes
/// the quantity or the level.
pub fn flag(db: &Db, tenant_id: &str, product_id: &str) -> Result<D1PreparedStatement> {
    const LOW: &str = "COALESCE(reorder_level IS NOT NULL AND quantity <= reorder_level, 0)";
    db.stmt(
        &format!(
            "UPDATE products SET low_stock_alerted = {LOW} \
             WHERE id = ?1 AND tenant_id = ?2 AND low_stock_alerted != {LOW} \
             RETURNING low_stock_alerted"
        ),
        &args![product_id, tenant_id],
    )
}

/// Whether the `flag` statement's result is a flip to low (the alert is then this request's
/// to send: a concurrent batch sees the flag set and changes nothing).
pub fn raised(result: &D1Result) -> Result<bool> {
    #[derive(Deserialize)]
    struct Flag {
        low_stock_alerted: i64,
    }
    Ok(db::first_row::<Flag>(result)?.is_some_and(|f| f.low_stock_alerted == 1))
}

/// Whether the `apply` insert's result is a recorded movement.
pub fn moved(result: &D1Result) -> bool {
    db::changes(result) > 0
}

/// What the low-stock alert says about a product.
pub struct LowStock<'a> {
    pub product_id: &'a str,
    pub name: &'a str,
    pub sku: &'a str,
    pub quantity: i64,
    pub reorder_level: i64,
}

pub fn notice(p: &LowStock) -> Notice {
    Notice {
        kind: Kind::InventoryLowStock,
        title: format!("Low stock: {} ({})", p.name, p.sku),
        body: format!(
            "{} left, at or below the reorder level of {}.",
            p.quantity, p.reorder_level
        ),
        link: Some(format!("/products/{}", p.product_id)),
        data: Some(json!({
            "product_id": p.product_id,
            "sku": p.sku,
            "quantity": p.quantity,
            "reorder_level": p.reorder_level,
        })),
    }
}

/// Tells the tenant's owners and admins (in-app, e-mail as their preferences say) after the
/// batch that raised the flag committed; a failure is logged, the movement stands.
pub async fn alert(cx: &Ctx, db: &Db, tenant_id: &str, p: &LowStock<'_>) {
    crate::notifications::tell_admins(&cx.env, &cx.config, db, tenant_id, notice(p)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notice_names_the_product_and_its_level() {
        let n = notice(&LowStock {
            product_id: "prd_1",
            name: "Mug",
            sku: "MUG-1",
            quantity: 2,
            reorder_level: 3,
        });
        assert_eq!(n.kind, Kind::InventoryLowStock);
        assert_eq!(n.title, "Low stock: Mug (MUG-1)");
        assert!(n.body.starts_with("2 left") && n.body.contains("of 3"));
        assert_eq!(n.link.as_deref(), Some("/products/prd_1"));
        assert_eq!(n.data.unwrap()["reorder_level"], 3);
    }
}

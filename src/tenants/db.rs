//! SQL for tenants.

use super::model::{Tenant, TenantFields, TENANT_COLUMNS};
use crate::args;
use crate::platform::db::{like_pattern, Arg, Db, Filter};
use crate::platform::error::Result;
use crate::platform::paging::Page;
use worker::D1PreparedStatement;

/// A tenant that has not been deleted.
pub async fn get(db: &Db, tenant_id: &str) -> Result<Option<Tenant>> {
    db.one(
        &format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = ?1 AND deleted_at IS NULL"),
        &args![tenant_id],
    )
    .await
}

/// Whether Stripe manages the tenant's plan (`billing::subscription::managed_by_stripe`).
pub async fn managed_by_stripe(db: &Db, tenant_id: &str) -> Result<bool> {
    #[derive(serde::Deserialize)]
    struct Row {
        stripe_subscription_id: Option<String>,
        subscription_status: Option<String>,
    }
    Ok(db
        .one::<Row>(
            "SELECT stripe_subscription_id, subscription_status FROM tenants WHERE id = ?1",
            &args![tenant_id],
        )
        .await?
        .is_some_and(|r| {
            crate::billing::subscription::managed_by_stripe(
                r.stripe_subscription_id.as_deref(),
                r.subscription_status.as_deref(),
            )
        }))
}

pub async fn slug_taken(db: &Db, slug: &str) -> Result<bool> {
    Ok(db
        .one::<serde_json::Value>("SELECT id FROM tenants WHERE slug = ?1", &args![slug])
        .await?
        .is_some())
}

pub struct ListFilter {
    pub status: Option<String>,
    pub plan: Option<String>,
    pub q: Option<String>,
}

pub async fn list(db: &Db, f: &ListFilter, page: &Page) -> Result<Vec<Tenant>> {
    let mut q = Filter::new(
        &format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE tenants.deleted_at IS NULL"),
        args![],
    );
    q.and_opt("tenants.status = ?", f.status.clone().map(Into::into))
        .and_opt("tenants.plan = ?", f.plan.clone().map(Into::into));
    if let Some(term) = &f.q {
        let p = like_pattern(term);
        q.and(
            "(tenants.name LIKE ? ESCAPE '\\' OR tenants.slug LIKE ? ESCAPE '\\')",
            args![p.clone(), p],
        );
    }
    q.page(page, "tenants");
    db.all(&q.sql, &q.args).await
}

pub fn insert_stmt(
    db: &Db,
    id: &str,
    slug: &str,
    f: &TenantFields,
    now: &str,
) -> Result<D1PreparedStatement> {
    db.stmt(
        "INSERT INTO tenants (id, name, slug, plan, status, subscription_amount, \
         subscription_start_date, subscription_end_date, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
        &args![
            id,
            f.name.clone(),
            slug,
            f.plan.unwrap_or_default().as_str(),
            f.status.clone().unwrap_or_else(|| "active".into()),
            f.subscription_amount.unwrap_or(0.0),
            f.subscription_start_date.clone().flatten(),
            f.subscription_end_date.clone().flatten(),
            now
        ],
    )
}

/// Applies the given fields; `None` leaves a column as it is.
pub fn update_stmt(db: &Db, id: &str, f: &TenantFields, now: &str) -> Result<D1PreparedStatement> {
    let mut sets: Vec<String> = vec!["updated_at = ?2".into()];
    let mut values: Vec<Arg> = args![id, now].to_vec();
    let mut set = |col: &str, v: Arg| {
        values.push(v);
        sets.push(format!("{col} = ?{}", values.len()));
    };
    if let Some(v) = &f.name {
        set("name", v.into());
    }
    if let Some(v) = f.plan {
        set("plan", v.as_str().into());
    }
    if let Some(v) = &f.status {
        set("status", v.into());
    }
    if let Some(v) = f.subscription_amount {
        set("subscription_amount", v.into());
    }
    if let Some(v) = &f.subscription_start_date {
        set("subscription_start_date", v.into());
    }
    if let Some(v) = &f.subscription_end_date {
        set("subscription_end_date", v.into());
    }
    if let Some(v) = &f.quota_overrides {
        let text = v
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(crate::platform::error::AppError::internal)?;
        set("quota_overrides", text.into());
    }
    db.stmt(
        &format!(
            "UPDATE tenants SET {} WHERE id = ?1 AND deleted_at IS NULL",
            sets.join(", ")
        ),
        &values,
    )
}

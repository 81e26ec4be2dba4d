//! SQL for users. Every read of tenant data takes the tenant id.

use serde::Deserialize;

use super::model::{User, USER_COLUMNS};
use crate::args;
use crate::platform::db::{first_row, Db, Filter};
use crate::platform::error::{AppError, Result};
use crate::platform::paging::Page;
use crate::tenants::model::{TenantRecord, TENANT_COLUMNS};

/// A user with the fields only authentication needs, and their tenant (log-in answers it).
#[derive(Debug)]
pub struct Credentials {
    pub user: User,
    pub password_hash: String,
    pub tenant: TenantRecord,
}

/// The user and their tenant in one round trip (two reads in one batch).
pub async fn credentials_by_email(db: &Db, email: &str) -> Result<Option<Credentials>> {
    #[derive(Deserialize)]
    struct Row {
        #[serde(flatten)]
        user: User,
        password_hash: String,
    }
    let rows = db
        .read_batch(vec![
            db.stmt(
                &format!(
                    "SELECT {USER_COLUMNS}, users.password_hash FROM users WHERE users.email = ?1"
                ),
                &args![email],
            )?,
            db.stmt(
                &format!(
                    "SELECT {TENANT_COLUMNS}, tenants.deleted_at FROM tenants \
                     WHERE tenants.id = (SELECT tenant_id FROM users WHERE email = ?1)"
                ),
                &args![email],
            )?,
        ])
        .await?;
    let [users, tenants] = rows.as_slice() else {
        return Err(AppError::Internal(
            "d1: a batch of two reads answered otherwise".into(),
        ));
    };
    Ok(
        match (
            first_row::<Row>(users)?,
            first_row::<TenantRecord>(tenants)?,
        ) {
            (Some(row), Some(tenant)) => Some(Credentials {
                user: row.user,
                password_hash: row.password_hash,
                tenant,
            }),
            _ => None,
        },
    )
}

pub async fn password_hash(db: &Db, tenant_id: &str, user_id: &str) -> Result<Option<String>> {
    #[derive(Deserialize)]
    struct Row {
        password_hash: String,
    }
    Ok(db
        .one::<Row>(
            "SELECT password_hash FROM users WHERE id = ?1 AND tenant_id = ?2",
            &args![user_id, tenant_id],
        )
        .await?
        .map(|r| r.password_hash))
}

/// A visible (not deleted) user of the tenant.
pub async fn get(db: &Db, tenant_id: &str, user_id: &str) -> Result<Option<User>> {
    db.one(
        &format!(
            "SELECT {USER_COLUMNS} FROM users WHERE users.id = ?1 AND users.tenant_id = ?2 \
             AND users.status != 'deleted'"
        ),
        &args![user_id, tenant_id],
    )
    .await
}

pub struct ListFilter {
    pub role: Option<String>,
    pub status: Option<String>,
    pub q: Option<String>,
}

pub async fn list(db: &Db, tenant_id: &str, f: &ListFilter, page: &Page) -> Result<Vec<User>> {
    let mut q = Filter::new(
        &format!("SELECT {USER_COLUMNS} FROM users WHERE users.tenant_id = ?1 AND users.status != 'deleted'"),
        args![tenant_id],
    );
    q.and_opt("users.role = ?", f.role.clone().map(Into::into))
        .and_opt("users.status = ?", f.status.clone().map(Into::into));
    if let Some(term) = &f.q {
        let pattern = crate::platform::db::like_pattern(term);
        q.and(
            "(users.email LIKE ? ESCAPE '\\' OR users.full_name LIKE ? ESCAPE '\\')",
            args![pattern.clone(), pattern],
        );
    }
    q.page(page, "users");
    db.all(&q.sql, &q.args).await
}

/// How many active owners the tenant has (the last one may not be demoted or removed).
pub async fn active_owner_count(db: &Db, tenant_id: &str) -> Result<i64> {
    #[derive(Deserialize)]
    struct Row {
        n: i64,
    }
    Ok(db
        .one::<Row>(
            "SELECT COUNT(*) AS n FROM users WHERE tenant_id = ?1 AND role = 'owner' AND status = 'active'",
            &args![tenant_id],
        )
        .await?
        .map_or(0, |r| r.n))
}

pub async fn email_taken(db: &Db, email: &str) -> Result<bool> {
    Ok(db
        .one::<serde_json::Value>("SELECT id FROM users WHERE email = ?1", &args![email])
        .await?
        .is_some())
}

//! Client organisations, managed by the platform admin, and `POST /admin/users`.

pub mod db;
pub mod model;

use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::args;
use crate::audit;
use crate::auth::gate::{self, Scope};
use crate::auth::password;
use crate::auth::roles::ALL_ROLES;
use crate::handler;
use crate::http::context::Ctx;
use crate::http::json::{self as j, Checks};
use crate::http::pagination::PAGING;
use crate::http::reply::Reply;
use crate::http::router::{q, q_enum, Access, QueryDoc, Route};
use crate::platform::error::{AppError, Result};
use crate::platform::ids;
use crate::platform::plan::Plan;
use crate::users;
use model::{CreateTenant, Tenant, UpdateTenant, STATUSES};

const LIST_QUERY: [QueryDoc; 5] = [
    PAGING[0],
    PAGING[1],
    q_enum("status", &STATUSES, "Only tenants with this status."),
    q_enum("plan", &Plan::NAMES, "Only tenants on this plan."),
    q("q", "string", "Search in name and slug."),
];

pub fn routes() -> Vec<Route> {
    vec![
        Route::get(
            "/api/v1/admin/tenants",
            Access::PlatformAdmin,
            handler!(list),
        )
        .doc("admin", "List client organisations")
        .list("Tenant")
        .query(&LIST_QUERY),
        Route::post(
            "/api/v1/admin/tenants",
            Access::PlatformAdmin,
            handler!(create),
        )
        .doc("admin", "Create a client organisation")
        .body("CreateTenant")
        .created("Tenant")
        .idempotent(),
        Route::get(
            "/api/v1/admin/tenants/:id",
            Access::PlatformAdmin,
            handler!(get),
        )
        .doc("admin", "One organisation")
        .ok("Tenant"),
        Route::patch(
            "/api/v1/admin/tenants/:id",
            Access::PlatformAdmin,
            handler!(update),
        )
        .doc(
            "admin",
            "Change plan, status or subscription of an organisation",
        )
        .body("UpdateTenant")
        .ok("Tenant"),
        Route::delete(
            "/api/v1/admin/tenants/:id",
            Access::PlatformAdmin,
            handler!(remove),
        )
        .doc(
            "admin",
            "Delete an organisation (its users can no longer log in)",
        )
        .no_content(),
        Route::post(
            "/api/v1/admin/users",
            Access::PlatformAdmin,
            handler!(create_user),
        )
        .doc("admin", "Create a user with any role in a tenant")
        .body("CreateUser")
        .created("User")
        .idempotent(),
    ]
}

async fn list(cx: Ctx) -> Result<Reply> {
    let page = cx.page()?;
    let filter = db::ListFilter {
        status: cx.query_enum("status", &STATUSES)?,
        plan: cx.query_enum("plan", &Plan::NAMES)?,
        q: cx.query_nonempty("q").map(str::to_string),
    };
    let rows = db::list(&cx.db()?, &filter, &page).await?;
    let (rows, next) = page.finish(rows, |t: &Tenant| (t.created_at.clone(), t.id.clone()));
    Reply::list(&rows, next.as_deref())
}

async fn get(cx: Ctx) -> Result<Reply> {
    let tenant = db::get(&cx.db()?, cx.param("id"))
        .await?
        .ok_or(AppError::NotFound)?;
    Reply::ok(&tenant)
}

async fn create(cx: Ctx) -> Result<Reply> {
    let (slug, fields) = cx.json::<CreateTenant>()?.validate()?;
    let db = cx.db()?;
    if db::slug_taken(&db, &slug).await? {
        return Err(AppError::Conflict("This slug is taken.".into()));
    }
    let id = ids::new_id("ten");
    db.batch(vec![
        db::insert_stmt(&db, &id, &slug, &fields, &cx.now())?,
        audit::entry(&cx, "tenant.created")
            .target("tenant", id.as_str())
            .meta(json!({"slug": slug, "plan": fields.plan}))
            .stmt(&db)?,
    ])
    .await?;
    let tenant = db::get(&db, &id).await?.ok_or(AppError::NotFound)?;
    Reply::created(&tenant, Some(format!("/api/v1/admin/tenants/{id}")))
}

async fn update(cx: Ctx) -> Result<Reply> {
    let body: UpdateTenant = cx.json()?;
    let mut checks = Checks::new();
    let fields = body.validate(&mut checks);
    checks.finish()?;
    let db = cx.db()?;
    let id = cx.param("id").to_string();
    let current = db::get(&db, &id).await?.ok_or(AppError::NotFound)?;
    if fields.plan.is_some_and(|p| p != current.plan) && db::managed_by_stripe(&db, &id).await? {
        return Err(AppError::refused(
            409,
            "managed_by_stripe",
            "Stripe manages this organisation's plan: change it through its subscription \
             (PATCH /billing/subscription) or cancel that first.",
        ));
    }
    if matches!(fields.quota_overrides, Some(Some(_)))
        && fields.plan.unwrap_or(current.plan) != Plan::PremiumCustom
    {
        return Err(AppError::field(
            "quota_overrides",
            "only premium_custom organisations have their own quotas",
        ));
    }
    let start = fields
        .subscription_start_date
        .clone()
        .unwrap_or(current.subscription_start_date);
    let end = fields
        .subscription_end_date
        .clone()
        .unwrap_or(current.subscription_end_date);
    if let (Some(s), Some(e)) = (start, end) {
        if e < s {
            return Err(AppError::field(
                "subscription_end_date",
                "must not be before the start date",
            ));
        }
    }
    let now = cx.now();
    let mut stmts = vec![db::update_stmt(&db, &id, &fields, &now)?];
    if fields.status.as_deref() == Some("suspended") {
        stmts.push(db.stmt(
            "UPDATE sessions SET revoked_at = ?2, revoked_reason = 'tenant_suspended' \
             WHERE tenant_id = ?1 AND revoked_at IS NULL",
            &args![id.as_str(), now.as_str()],
        )?);
    }
    stmts.push(
        audit::entry(&cx, "tenant.updated")
            .target("tenant", id.as_str())
            .meta(json!({"plan": fields.plan, "status": fields.status, "subscription_amount": fields.subscription_amount, "quota_overrides": fields.quota_overrides}))
            .stmt(&db)?,
    );
    db.batch(stmts).await?;
    // Plan (the budget), status and name are cached by the tenant's gate; a suspension also
    // ended every session.
    gate::invalidate(&cx.env, &id, Scope::Tenant).await?;
    let tenant = db::get(&db, &id).await?.ok_or(AppError::NotFound)?;
    Reply::ok(&tenant)
}

async fn remove(cx: Ctx) -> Result<Reply> {
    let db = cx.db()?;
    let id = cx.param("id").to_string();
    db::get(&db, &id).await?.ok_or(AppError::NotFound)?;
    if cx.principal()?.tenant_id == id {
        return Err(AppError::Conflict(
            "The platform's own organisation cannot be deleted.".into(),
        ));
    }
    let now = cx.now();
    db.batch(vec![
        db.stmt(
            "UPDATE tenants SET deleted_at = ?2, updated_at = ?2 WHERE id = ?1 AND deleted_at IS NULL",
            &args![id.as_str(), now.as_str()],
        )?,
        db.stmt(
            "UPDATE sessions SET revoked_at = ?2, revoked_reason = 'tenant_deleted' \
             WHERE tenant_id = ?1 AND revoked_at IS NULL",
            &args![id.as_str(), now.as_str()],
        )?,
        db.stmt(
            "UPDATE api_keys SET revoked_at = ?2 WHERE tenant_id = ?1 AND revoked_at IS NULL",
            &args![id.as_str(), now.as_str()],
        )?,
        audit::entry(&cx, "tenant.deleted").target("tenant", id.as_str()).stmt(&db)?,
    ])
    .await?;
    gate::invalidate(&cx.env, &id, Scope::Tenant).await?;
    Ok(Reply::no_content())
}

/// `POST /admin/users`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub tenant_id: String,
    pub email: String,
    pub password: String,
    pub full_name: String,
    /// `platform_admin`, `owner`, `admin`, `agent` or `member`.
    pub role: String,
}

async fn create_user(cx: Ctx) -> Result<Reply> {
    let body: CreateUser = cx.json()?;
    let mut checks = Checks::new();
    let email = checks.take("email", j::email(&body.email));
    let pw = checks.take("password", j::password(&body.password));
    let full_name = checks.take("full_name", j::text(&body.full_name, 1, 200));
    if !ALL_ROLES.contains(&body.role.as_str()) {
        checks.add("role", format!("must be one of: {}", ALL_ROLES.join(", ")));
    }
    if !ids::plausible(&body.tenant_id) {
        checks.add("tenant_id", "must be a tenant id");
    }
    checks.finish()?;
    let (email, pw, full_name) = (
        email.unwrap_or_default(),
        pw.unwrap_or_default(),
        full_name.unwrap_or_default(),
    );
    let db = cx.db()?;
    if db::get(&db, &body.tenant_id).await?.is_none() {
        return Err(AppError::field("tenant_id", "no such tenant"));
    }
    if users::db::email_taken(&db, &email).await? {
        return Err(AppError::Conflict(
            "An account with this e-mail already exists.".into(),
        ));
    }
    let hash = password::hash(&pw).await?;
    let id = ids::new_id("usr");
    let now = cx.now();
    db.batch(vec![
        db.stmt(
            "INSERT INTO users (id, tenant_id, email, full_name, role, status, password_hash, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, 'active', ?6, ?7, ?7)",
            &args![id.as_str(), body.tenant_id.as_str(), email.as_str(), full_name, body.role.as_str(), hash, now.as_str()],
        )?,
        audit::entry(&cx, "user.created")
            .target("user", id.as_str())
            .meta(json!({"tenant_id": body.tenant_id, "role": body.role, "email": email}))
            .stmt(&db)?,
    ])
    .await?;
    let user = users::db::get(&db, &body.tenant_id, &id)
        .await?
        .ok_or(AppError::NotFound)?;
    Reply::created(&user, None)
}

//! Members of a tenant, managed by its administrators.

pub mod db;
pub mod model;

use serde_json::json;

use crate::args;
use crate::audit;
use crate::auth::gate::{self, Scope};
use crate::auth::roles::{Role, TENANT_ROLES};
use crate::auth::session;
use crate::handler;
use crate::http::context::Ctx;
use crate::http::json::{self, Checks};
use crate::http::pagination::PAGING;
use crate::http::reply::Reply;
use crate::http::router::{q, q_enum, Access, QueryDoc, Route};
use crate::platform::db::Arg;
use crate::platform::error::{AppError, Result};
use model::{UpdateUser, User, USER_STATUSES};

const LIST_QUERY: [QueryDoc; 5] = [
    PAGING[0],
    PAGING[1],
    q_enum("role", &TENANT_ROLES, "Only users with this role."),
    q_enum("status", &USER_STATUSES, "Only users with this status."),
    q("q", "string", "Search in e-mail and name."),
];

pub fn routes() -> Vec<Route> {
    vec![
        Route::get("/api/v1/users", Access::TenantAdmin, handler!(list))
            .doc("users", "List the tenant's users")
            .list("User")
            .query(&LIST_QUERY),
        Route::get("/api/v1/users/:id", Access::TenantAdmin, handler!(get))
            .doc("users", "One user of the tenant")
            .ok("User"),
        Route::patch("/api/v1/users/:id", Access::TenantAdmin, handler!(update))
            .doc("users", "Change a user's name, role or status")
            .body("UpdateUser")
            .ok("User"),
        Route::delete("/api/v1/users/:id", Access::TenantAdmin, handler!(remove))
            .doc(
                "users",
                "Remove a user from the tenant (ends their sessions)",
            )
            .no_content(),
    ]
}

async fn list(cx: Ctx) -> Result<Reply> {
    let page = cx.page()?;
    let filter = db::ListFilter {
        role: cx.query_enum("role", &TENANT_ROLES)?,
        status: cx.query_enum("status", &USER_STATUSES)?,
        q: cx.query_nonempty("q").map(str::to_string),
    };
    let rows = db::list(&cx.db()?, cx.tenant_id()?, &filter, &page).await?;
    let (rows, next) = page.finish(rows, |u: &User| (u.created_at.clone(), u.id.clone()));
    Reply::list(&rows, next.as_deref())
}

async fn get(cx: Ctx) -> Result<Reply> {
    let user = db::get(&cx.db()?, cx.tenant_id()?, cx.param("id"))
        .await?
        .ok_or(AppError::NotFound)?;
    Reply::ok(&user)
}

/// Rules that keep a tenant manageable: nobody changes their own role or status, only owners
/// grant or touch the owner role, and the last active owner stays an active owner.
async fn guard_change(
    cx: &Ctx,
    target: &User,
    new_role: Option<&str>,
    new_status: Option<&str>,
) -> Result<()> {
    let p = cx.principal()?;
    let forbid = |d: &str| Err(AppError::Forbidden("forbidden", d.into()));
    // The deployment's operators are not the tenant's to manage, whatever the change.
    if target.role == Role::PlatformAdmin.as_str() && !p.is_platform_admin() {
        return forbid("Only a platform admin can change a platform admin.");
    }
    let changes_access = new_role.is_some_and(|r| r != target.role)
        || new_status.is_some_and(|s| s != target.status);
    if !changes_access {
        return Ok(());
    }
    if p.user_id.as_deref() == Some(target.id.as_str()) {
        return forbid("You cannot change your own role or status.");
    }
    let caller_is_owner = p.role.at_least(Role::Owner);
    if (target.role == "owner" || new_role == Some("owner")) && !caller_is_owner {
        return forbid("Only an owner can change owners.");
    }
    if target.role == "owner" && target.status == "active" {
        let demoted =
            new_role.is_some_and(|r| r != "owner") || new_status.is_some_and(|s| s != "active");
        if demoted && db::active_owner_count(&cx.db()?, &target.tenant_id).await? <= 1 {
            return Err(AppError::Conflict(
                "The tenant's last owner cannot be demoted or removed.".into(),
            ));
        }
    }
    Ok(())
}

async fn update(cx: Ctx) -> Result<Reply> {
    let body: UpdateUser = cx.json()?;
    let mut checks = Checks::new();
    let full_name = body
        .full_name
        .and_then(|n| checks.take("full_name", json::text(&n, 1, 200)));
    if let Some(r) = &body.role {
        if !TENANT_ROLES.contains(&r.as_str()) {
            checks.add(
                "role",
                format!("must be one of: {}", TENANT_ROLES.join(", ")),
            );
        }
    }
    if let Some(s) = &body.status {
        if !USER_STATUSES.contains(&s.as_str()) {
            checks.add(
                "status",
                format!("must be one of: {}", USER_STATUSES.join(", ")),
            );
        }
    }
    checks.finish()?;
    let tenant_id = cx.tenant_id()?.to_string();
    let db = cx.db()?;
    let target = db::get(&db, &tenant_id, cx.param("id"))
        .await?
        .ok_or(AppError::NotFound)?;
    guard_change(&cx, &target, body.role.as_deref(), body.status.as_deref()).await?;

    let now = cx.now();
    let mut stmts = vec![db.stmt(
        "UPDATE users SET full_name = COALESCE(?3, full_name), role = COALESCE(?4, role), \
         status = COALESCE(?5, status), updated_at = ?6 WHERE id = ?1 AND tenant_id = ?2",
        &args![
            target.id.as_str(),
            tenant_id.as_str(),
            Arg::from(full_name),
            Arg::from(body.role.clone()),
            Arg::from(body.status.clone()),
            now.as_str()
        ],
    )?];
    if body.status.as_deref() == Some("suspended") {
        stmts.push(session::revoke_all_stmt(
            &db,
            &target.id,
            None,
            "user_suspended",
            &now,
        )?);
    }
    stmts.push(
        audit::entry(&cx, "user.updated")
            .target("user", target.id.as_str())
            .meta(json!({"role": body.role, "status": body.status}))
            .stmt(&db)?,
    );
    db.batch(stmts).await?;
    // Name, role and status are what the gate admits the user's tokens by and `/auth/me` shows.
    gate::invalidate(
        &cx.env,
        &tenant_id,
        Scope::User {
            user_id: target.id.clone(),
        },
    )
    .await?;
    let user = db::get(&db, &tenant_id, &target.id)
        .await?
        .ok_or(AppError::NotFound)?;
    Reply::ok(&user)
}

async fn remove(cx: Ctx) -> Result<Reply> {
    let tenant_id = cx.tenant_id()?.to_string();
    let db = cx.db()?;
    let target = db::get(&db, &tenant_id, cx.param("id"))
        .await?
        .ok_or(AppError::NotFound)?;
    guard_change(&cx, &target, None, Some("deleted")).await?;
    let now = cx.now();
    db.batch(vec![
        db.stmt(
            "UPDATE users SET status = 'deleted', updated_at = ?3 WHERE id = ?1 AND tenant_id = ?2",
            &args![target.id.as_str(), tenant_id.as_str(), now.as_str()],
        )?,
        session::revoke_all_stmt(&db, &target.id, None, "user_deleted", &now)?,
        audit::entry(&cx, "user.deleted")
            .target("user", target.id.as_str())
            .meta(json!({"email": target.email}))
            .stmt(&db)?,
    ])
    .await?;
    gate::invalidate(&cx.env, &tenant_id, Scope::User { user_id: target.id }).await?;
    Ok(Reply::no_content())
}

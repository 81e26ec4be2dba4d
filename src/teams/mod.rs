//! Teams inside a tenant and invitations to join it (module S).
//!
//! Tenant administrators manage all teams; a team's leads add, change and remove its plain
//! members (they make nobody a lead and touch no other lead; they may step down or leave);
//! every user of the tenant reads teams and members. Names are unique per tenant,
//! case-insensitively.

pub mod invitations;
pub mod model;

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::args;
use crate::audit;
use crate::auth::roles::Role;
use crate::handler;
use crate::http::context::Ctx;
use crate::http::json::{self as j, Checks};
use crate::http::pagination::PAGING;
use crate::http::reply::Reply;
use crate::http::router::{q, Access, QueryDoc, Route};
use crate::platform::db::{like_pattern, Db, Filter};
use crate::platform::error::{AppError, Result};
use crate::platform::ids;
use model::{may_change, Manager, TeamRole, TEAM_ROLES};

const LIST_QUERY: [QueryDoc; 3] = [PAGING[0], PAGING[1], q("q", "string", "Search team names.")];

pub fn routes() -> Vec<Route> {
    let mut routes = vec![
        Route::get("/api/v1/teams", Access::User, handler!(list))
            .doc("teams", "The tenant's teams, newest first")
            .list("Team")
            .query(&LIST_QUERY),
        Route::post("/api/v1/teams", Access::TenantAdmin, handler!(create))
            .doc("teams", "Create a team (name unique per tenant)")
            .body("CreateTeam")
            .created("Team")
            .idempotent(),
        Route::get("/api/v1/teams/:id", Access::User, handler!(get))
            .doc("teams", "One team")
            .ok("Team"),
        Route::patch("/api/v1/teams/:id", Access::TenantAdmin, handler!(update))
            .doc("teams", "Rename a team or change its description")
            .body("UpdateTeam")
            .ok("Team"),
        Route::delete("/api/v1/teams/:id", Access::TenantAdmin, handler!(remove))
            .doc("teams", "Delete a team and its memberships")
            .no_content(),
        Route::get("/api/v1/teams/:id/members", Access::User, handler!(members))
            .doc("teams", "A team's members, newest first")
            .list("TeamMember")
            .query(&PAGING),
        Route::post(
            "/api/v1/teams/:id/members",
            Access::User,
            handler!(add_member),
        )
        .doc(
            "teams",
            "Add a user of the tenant (tenant admins; the team's leads add plain members)",
        )
        .body("AddTeamMember")
        .created("TeamMember"),
        Route::patch(
            "/api/v1/teams/:id/members/:user_id",
            Access::User,
            handler!(update_member),
        )
        .doc(
            "teams",
            "Change a member's team role (tenant admins; leads only plain members, never to lead)",
        )
        .body("UpdateTeamMember")
        .ok("TeamMember"),
        Route::delete(
            "/api/v1/teams/:id/members/:user_id",
            Access::User,
            handler!(remove_member),
        )
        .doc(
            "teams",
            "Take a user off the team (tenant admins; leads plain members and themselves)",
        )
        .no_content(),
    ];
    routes.extend(invitations::routes());
    routes
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Team {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    /// Members whose account is not deleted.
    pub member_count: i64,
    pub created_by: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TeamMember {
    pub user_id: String,
    pub email: String,
    pub full_name: String,
    /// The role in the team: `lead` or `member`.
    #[schema(pattern = "^(lead|member)$")]
    pub role: String,
    /// The user's role in the tenant.
    pub user_role: String,
    pub joined_at: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTeam {
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    #[schema(max_length = 1000)]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTeam {
    #[schema(min_length = 1, max_length = 100)]
    pub name: Option<String>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "j::double_option")]
    #[schema(value_type = Option<String>, max_length = 1000)]
    pub description: Option<Option<String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddTeamMember {
    #[schema(min_length = 1)]
    pub user_id: String,
    /// `lead` or `member` (default).
    #[schema(pattern = "^(lead|member)$")]
    pub role: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTeamMember {
    #[schema(pattern = "^(lead|member)$")]
    pub role: String,
}

const COLUMNS: &str = "teams.id, teams.name, teams.description, teams.created_by, \
     teams.created_at, teams.updated_at, \
     (SELECT COUNT(*) FROM team_members tm JOIN users u ON u.id = tm.user_id \
      WHERE tm.team_id = teams.id AND u.status != 'deleted') AS member_count";

/// A team of the tenant, or 404.
pub async fn find(db: &Db, tenant_id: &str, id: &str) -> Result<Team> {
    db.one(
        &format!("SELECT {COLUMNS} FROM teams WHERE teams.id = ?1 AND teams.tenant_id = ?2"),
        &args![id, tenant_id],
    )
    .await?
    .ok_or(AppError::NotFound)
}

/// The ids of a team's members whose account is not deleted (for notifications to a team).
pub async fn member_ids(db: &Db, tenant_id: &str, team_id: &str) -> Result<Vec<String>> {
    #[derive(Deserialize)]
    struct Row {
        user_id: String,
    }
    let rows: Vec<Row> = db
        .all(
            "SELECT tm.user_id FROM team_members tm JOIN users u ON u.id = tm.user_id \
             WHERE tm.team_id = ?1 AND tm.tenant_id = ?2 AND u.status != 'deleted'",
            &args![team_id, tenant_id],
        )
        .await?;
    Ok(rows.into_iter().map(|r| r.user_id).collect())
}

/// The members' rows as one sub-select, paged like a table (`m.created_at`, `m.id`).
const MEMBERS: &str = "SELECT * FROM (SELECT tm.user_id AS id, tm.user_id, u.email, u.full_name, \
     tm.role, u.role AS user_role, tm.created_at, tm.created_at AS joined_at \
     FROM team_members tm JOIN users u ON u.id = tm.user_id \
     WHERE tm.team_id = ?1 AND tm.tenant_id = ?2 AND u.status != 'deleted') AS m WHERE 1 = 1";

async fn find_member(db: &Db, tenant_id: &str, team_id: &str, user_id: &str) -> Result<TeamMember> {
    db.one(
        &format!("{MEMBERS} AND m.user_id = ?3"),
        &args![team_id, tenant_id, user_id],
    )
    .await?
    .ok_or(AppError::NotFound)
}

async fn team_role(db: &Db, team_id: &str, user_id: &str) -> Result<Option<TeamRole>> {
    #[derive(Deserialize)]
    struct Row {
        role: String,
    }
    let row: Option<Row> = db
        .one(
            "SELECT role FROM team_members WHERE team_id = ?1 AND user_id = ?2",
            &args![team_id, user_id],
        )
        .await?;
    Ok(row.and_then(|r| TeamRole::parse(&r.role)))
}

/// How the caller stands to the team's membership.
async fn manager<'a>(cx: &'a Ctx, db: &Db, team_id: &str) -> Result<Manager<'a>> {
    let p = cx.principal()?;
    if p.role.at_least(Role::Admin) {
        return Ok(Manager::Admin);
    }
    match p.user_id.as_deref() {
        Some(user_id) if team_role(db, team_id, user_id).await? == Some(TeamRole::Lead) => {
            Ok(Manager::Lead { user_id })
        }
        _ => Ok(Manager::Other),
    }
}

fn check_change(
    who: Manager<'_>,
    target: &str,
    from: Option<TeamRole>,
    to: Option<TeamRole>,
) -> Result<()> {
    if may_change(who, target, from, to) {
        return Ok(());
    }
    Err(AppError::Forbidden(
        "forbidden",
        match who {
            Manager::Lead { .. } => {
                "A team lead manages plain members only; leads are made and changed by tenant \
                 administrators."
            }
            _ => "Only tenant administrators and the team's leads manage its members.",
        }
        .into(),
    ))
}

fn parse_role(v: &str) -> Result<TeamRole> {
    TeamRole::parse(v)
        .ok_or_else(|| AppError::field("role", format!("must be one of {}", TEAM_ROLES.join(", "))))
}

fn name_conflict(e: AppError) -> AppError {
    match e {
        AppError::Conflict(_) => AppError::Conflict("A team with this name exists.".into()),
        other => other,
    }
}

fn check_description(d: &Option<String>, checks: &mut Checks) {
    if d.as_ref().is_some_and(|d| d.chars().count() > 1000) {
        checks.add("description", "must be at most 1000 characters");
    }
}

async fn list(cx: Ctx) -> Result<Reply> {
    let page = cx.page()?;
    let mut f = Filter::new(
        &format!("SELECT {COLUMNS} FROM teams WHERE teams.tenant_id = ?1"),
        args![cx.tenant_id()?],
    );
    if let Some(term) = cx.query_nonempty("q") {
        f.and("teams.name LIKE ? ESCAPE '\\'", args![like_pattern(term)]);
    }
    f.page(&page, "teams");
    let rows: Vec<Team> = cx.db()?.all(&f.sql, &f.args).await?;
    let (rows, next) = page.finish(rows, |t| (t.created_at.clone(), t.id.clone()));
    Reply::list(&rows, next.as_deref())
}

async fn get(cx: Ctx) -> Result<Reply> {
    Reply::ok(&find(&cx.db()?, cx.tenant_id()?, cx.param("id")).await?)
}

async fn create(cx: Ctx) -> Result<Reply> {
    let body: CreateTeam = cx.json()?;
    let mut checks = Checks::new();
    let name = checks.take("name", j::text(&body.name, 1, 100));
    let description = body.description.map(|d| d.trim().to_string());
    check_description(&description, &mut checks);
    checks.finish()?;
    let name = name.unwrap_or_default();
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    let p = cx.principal()?;
    let id = ids::new_id("team");
    let now = cx.now();
    db.batch(vec![
        db.stmt(
            "INSERT INTO teams (id, tenant_id, name, description, created_by, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
            &args![
                id.as_str(),
                tenant_id,
                name.as_str(),
                description.filter(|d| !d.is_empty()),
                p.user_id.clone(),
                now.as_str()
            ],
        )?,
        audit::entry(&cx, "team.created")
            .target("team", id.as_str())
            .meta(json!({"name": name}))
            .stmt(&db)?,
    ])
    .await
    .map_err(name_conflict)?;
    let team = find(&db, tenant_id, &id).await?;
    Reply::created(&team, Some(format!("/api/v1/teams/{id}")))
}

async fn update(cx: Ctx) -> Result<Reply> {
    let body: UpdateTeam = cx.json()?;
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    let current = find(&db, tenant_id, cx.param("id")).await?;
    let mut checks = Checks::new();
    let name = match &body.name {
        Some(n) => checks.take("name", j::text(n, 1, 100)),
        None => Some(current.name.clone()),
    };
    let description = match body.description {
        Some(d) => d.map(|d| d.trim().to_string()).filter(|d| !d.is_empty()),
        None => current.description.clone(),
    };
    check_description(&description, &mut checks);
    checks.finish()?;
    let name = name.unwrap_or_default();
    db.batch(vec![
        db.stmt(
            "UPDATE teams SET name = ?3, description = ?4, updated_at = ?5 \
             WHERE id = ?1 AND tenant_id = ?2",
            &args![
                current.id.as_str(),
                tenant_id,
                name.as_str(),
                description,
                cx.now()
            ],
        )?,
        audit::entry(&cx, "team.updated")
            .target("team", current.id.as_str())
            .meta(json!({"name": name, "previous_name": current.name}))
            .stmt(&db)?,
    ])
    .await
    .map_err(name_conflict)?;
    Reply::ok(&find(&db, tenant_id, &current.id).await?)
}

async fn remove(cx: Ctx) -> Result<Reply> {
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    let team = find(&db, tenant_id, cx.param("id")).await?;
    db.batch(vec![
        db.stmt(
            "DELETE FROM team_members WHERE team_id = ?1 AND tenant_id = ?2",
            &args![team.id.as_str(), tenant_id],
        )?,
        db.stmt(
            "DELETE FROM teams WHERE id = ?1 AND tenant_id = ?2",
            &args![team.id.as_str(), tenant_id],
        )?,
        audit::entry(&cx, "team.deleted")
            .target("team", team.id.as_str())
            .meta(json!({"name": team.name, "members": team.member_count}))
            .stmt(&db)?,
    ])
    .await?;
    Ok(Reply::no_content())
}

async fn members(cx: Ctx) -> Result<Reply> {
    let page = cx.page()?;
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    let team = find(&db, tenant_id, cx.param("id")).await?;
    let mut f = Filter::new(MEMBERS, args![team.id.as_str(), tenant_id]);
    f.page(&page, "m");
    let rows: Vec<TeamMember> = db.all(&f.sql, &f.args).await?;
    let (rows, next) = page.finish(rows, |m| (m.joined_at.clone(), m.user_id.clone()));
    Reply::list(&rows, next.as_deref())
}

async fn add_member(cx: Ctx) -> Result<Reply> {
    let body: AddTeamMember = cx.json()?;
    let role = parse_role(body.role.as_deref().unwrap_or("member"))?;
    if body.user_id.trim().is_empty() || body.user_id.len() > 100 {
        return Err(AppError::field("user_id", "must be a user id"));
    }
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    let team = find(&db, tenant_id, cx.param("id")).await?;
    let who = manager(&cx, &db, &team.id).await?;
    check_change(who, &body.user_id, None, Some(role))?;
    let user = crate::users::db::get(&db, tenant_id, &body.user_id)
        .await?
        .ok_or(AppError::NotFound)?;
    if team_role(&db, &team.id, &user.id).await?.is_some() {
        return Err(AppError::Conflict(
            "The user is on the team already.".into(),
        ));
    }
    db.batch(vec![
        db.stmt(
            "INSERT INTO team_members (team_id, user_id, tenant_id, role, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            &args![
                team.id.as_str(),
                user.id.as_str(),
                tenant_id,
                role.as_str(),
                cx.now()
            ],
        )?,
        audit::entry(&cx, "team.member_added")
            .target("team", team.id.as_str())
            .meta(json!({"user_id": user.id, "role": role.as_str()}))
            .stmt(&db)?,
    ])
    .await
    .map_err(|e| match e {
        AppError::Conflict(_) => AppError::Conflict("The user is on the team already.".into()),
        other => other,
    })?;
    let notice = crate::notifications::Notice {
        kind: crate::notifications::model::Kind::TeamAdded,
        title: format!("You were added to {}", team.name),
        body: format!("You are a {} of the team {}.", role.as_str(), team.name),
        link: Some(format!("/teams/{}", team.id)),
        data: Some(serde_json::json!({"team_id": team.id})),
    };
    crate::notifications::tell(
        &cx.env,
        &cx.config,
        &db,
        tenant_id,
        std::slice::from_ref(&user.id),
        notice,
    )
    .await;
    let m = find_member(&db, tenant_id, &team.id, &user.id).await?;
    Reply::created(
        &m,
        Some(format!("/api/v1/teams/{}/members/{}", team.id, user.id)),
    )
}

async fn update_member(cx: Ctx) -> Result<Reply> {
    let body: UpdateTeamMember = cx.json()?;
    let role = parse_role(&body.role)?;
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    let team = find(&db, tenant_id, cx.param("id")).await?;
    let current = find_member(&db, tenant_id, &team.id, cx.param("user_id")).await?;
    let who = manager(&cx, &db, &team.id).await?;
    check_change(
        who,
        &current.user_id,
        TeamRole::parse(&current.role),
        Some(role),
    )?;
    db.batch(vec![
        db.stmt(
            "UPDATE team_members SET role = ?3 WHERE team_id = ?1 AND user_id = ?2",
            &args![team.id.as_str(), current.user_id.as_str(), role.as_str()],
        )?,
        audit::entry(&cx, "team.member_updated")
            .target("team", team.id.as_str())
            .meta(json!({"user_id": current.user_id, "role": role.as_str(),
                         "previous_role": current.role}))
            .stmt(&db)?,
    ])
    .await?;
    Reply::ok(&find_member(&db, tenant_id, &team.id, &current.user_id).await?)
}

async fn remove_member(cx: Ctx) -> Result<Reply> {
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    let team = find(&db, tenant_id, cx.param("id")).await?;
    let current = find_member(&db, tenant_id, &team.id, cx.param("user_id")).await?;
    let who = manager(&cx, &db, &team.id).await?;
    check_change(who, &current.user_id, TeamRole::parse(&current.role), None)?;
    db.batch(vec![
        db.stmt(
            "DELETE FROM team_members WHERE team_id = ?1 AND user_id = ?2",
            &args![team.id.as_str(), current.user_id.as_str()],
        )?,
        audit::entry(&cx, "team.member_removed")
            .target("team", team.id.as_str())
            .meta(json!({"user_id": current.user_id, "role": current.role}))
            .stmt(&db)?,
    ])
    .await?;
    Ok(Reply::no_content())
}

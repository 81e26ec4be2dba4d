//! Invitations to join a tenant: tenant administrators invite an e-mail with a role (owners only
//! by owners) and teams; the invitee previews and accepts with the mailed token (32 random
//! bytes, stored as SHA-256, shown once) and becomes a user of the tenant in those teams.
//!
//! Acceptance is one conditional update (`pending` and unexpired → `accepted`), so of two
//! concurrent accepts exactly one wins. Unknown, used, revoked and expired tokens all answer
//! 410 `invitation_invalid` and each counts against the client address's failed-attempt
//! budget (the log-in budget, `AUTH_RATE_LIMIT` per `AUTH_RATE_WINDOW_SECS`); over it, 429.

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::model::{self, InvitationAction, InvitationStatus, INVITATION_STATUSES};
use crate::args;
use crate::audit;
use crate::auth::roles::{Role, TENANT_ROLES};
use crate::auth::{self, account, password, principal, session};
use crate::email::{self, Outgoing, Template};
use crate::handler;
use crate::http::context::Ctx;
use crate::http::json::{self as j, Checks};
use crate::http::pagination::PAGING;
use crate::http::reply::Reply;
use crate::http::router::{q_enum, Access, QueryDoc, Route};
use crate::platform::clock;
use crate::platform::db::{Arg, Db, Filter};
use crate::platform::error::{AppError, Result};
use crate::platform::ids;
use crate::platform::outbox;
use crate::{tenants, users};

const LIST_QUERY: [QueryDoc; 3] = [
    PAGING[0],
    PAGING[1],
    q_enum(
        "status",
        &INVITATION_STATUSES,
        "Only invitations with this status (`expired`: pending past `expires_at`).",
    ),
];

/// Team ids one invitation may carry.
const MAX_TEAMS: usize = 20;

pub fn routes() -> Vec<Route> {
    vec![
        Route::post("/api/v1/invitations", Access::TenantAdmin, handler!(create))
            .doc(
                "invitations",
                "Invite an e-mail with a role and teams (owners only by owners); mails the link, \
                 `accept_url` shown once",
            )
            .body("CreateInvitation")
            .created("CreatedInvitation"),
        Route::get("/api/v1/invitations", Access::TenantAdmin, handler!(list))
            .doc("invitations", "The tenant's invitations, newest first (never a token)")
            .list("Invitation")
            .query(&LIST_QUERY),
        Route::get("/api/v1/invitations/:id", Access::TenantAdmin, handler!(get))
            .doc("invitations", "One invitation")
            .ok("Invitation"),
        Route::post(
            "/api/v1/invitations/:id/resend",
            Access::TenantAdmin,
            handler!(resend),
        )
        .doc(
            "invitations",
            "A new token and expiry, mailed again; the old token stops working",
        )
        .ok("CreatedInvitation"),
        Route::delete("/api/v1/invitations/:id", Access::TenantAdmin, handler!(revoke))
            .doc("invitations", "Revoke a pending invitation")
            .no_content(),
        Route::post(
            "/api/v1/invitations/preview",
            Access::Public,
            handler!(preview),
        )
        .doc(
            "invitations",
            "What a token invites to (410 `invitation_invalid` for unknown, used, revoked or expired)",
        )
        .body("PreviewInvitation")
        .ok("InvitationPreview"),
        Route::post(
            "/api/v1/invitations/accept",
            Access::Public,
            handler!(accept),
        )
        .doc(
            "invitations",
            "Accept: a new user with the invited e-mail, role and teams (201 with tokens); an \
             e-mail already in the organisation sends that user's bearer token and only joins \
             the teams (200, the invitation)",
        )
        .body("AcceptInvitation")
        .created("TokenResponse"),
    ]
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Invitation {
    pub id: String,
    /// Lower-cased.
    pub email: String,
    #[schema(pattern = "^(owner|admin|agent|member)$")]
    pub role: String,
    pub team_ids: Vec<String>,
    /// `pending`, `accepted`, `revoked` or `expired`.
    #[schema(pattern = "^(pending|accepted|revoked|expired)$")]
    pub status: String,
    pub invited_by: Option<String>,
    pub accepted_by: Option<String>,
    pub expires_at: String,
    pub created_at: String,
    pub updated_at: String,
    pub accepted_at: Option<String>,
}

/// An invitation with its link: answered once, when made or resent.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreatedInvitation {
    #[serde(flatten)]
    pub invitation: Invitation,
    /// `{APP_BASE_URL}/invitations/accept?token=…`; not shown again.
    pub accept_url: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInvitation {
    pub email: String,
    #[schema(pattern = "^(owner|admin|agent|member)$")]
    pub role: String,
    /// Teams of the tenant the invitee joins as a member.
    #[schema(max_items = 20)]
    pub team_ids: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewInvitation {
    #[schema(min_length = 1, max_length = 200)]
    pub token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptInvitation {
    #[schema(min_length = 1, max_length = 200)]
    pub token: String,
    /// Required for a new account (8–128 characters).
    pub password: Option<String>,
    /// Required for a new account.
    #[schema(min_length = 1, max_length = 200)]
    pub full_name: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TeamRef {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvitationPreview {
    pub organization: String,
    pub role: String,
    pub teams: Vec<TeamRef>,
    /// `j***@example.com`.
    pub email_masked: String,
    pub expires_at: String,
}

#[derive(Deserialize)]
struct Row {
    id: String,
    tenant_id: String,
    email: String,
    role: String,
    team_ids: String,
    status: String,
    invited_by: Option<String>,
    accepted_by: Option<String>,
    expires_at: String,
    created_at: String,
    updated_at: String,
    accepted_at: Option<String>,
}

impl Row {
    fn status(&self, now: &str) -> Option<InvitationStatus> {
        InvitationStatus::of(&self.status, &self.expires_at, now)
    }

    fn team_ids(&self) -> Vec<String> {
        serde_json::from_str(&self.team_ids).unwrap_or_default()
    }

    fn view(self, now: &str) -> Invitation {
        let status = self
            .status(now)
            .map_or_else(|| self.status.clone(), |s| s.as_str().to_string());
        Invitation {
            team_ids: self.team_ids(),
            status,
            id: self.id,
            email: self.email,
            role: self.role,
            invited_by: self.invited_by,
            accepted_by: self.accepted_by,
            expires_at: self.expires_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
            accepted_at: self.accepted_at,
        }
    }
}

const COLUMNS: &str = "invitations.id, invitations.tenant_id, invitations.email, invitations.role, \
     invitations.team_ids, invitations.status, invitations.invited_by, invitations.accepted_by, \
     invitations.expires_at, invitations.created_at, invitations.updated_at, invitations.accepted_at";

async fn find(db: &Db, tenant_id: &str, id: &str) -> Result<Row> {
    db.one(
        &format!(
            "SELECT {COLUMNS} FROM invitations WHERE invitations.id = ?1 AND invitations.tenant_id = ?2"
        ),
        &args![id, tenant_id],
    )
    .await?
    .ok_or(AppError::NotFound)
}

fn email_in_use() -> AppError {
    AppError::refused(
        409,
        "email_in_use",
        "This e-mail belongs to an account of another organisation (an account has one).",
    )
}

fn invalid() -> AppError {
    AppError::refused(
        410,
        "invitation_invalid",
        "This invitation link is not valid: it may be used, revoked or expired.",
    )
}

fn pending_exists(e: AppError) -> AppError {
    match e {
        AppError::Conflict(_) => AppError::Conflict(
            "A pending invitation for this e-mail exists; resend or revoke it.".into(),
        ),
        other => other,
    }
}

fn only_owners_invite_owners(cx: &Ctx, role: &str) -> Result<()> {
    if role == Role::Owner.as_str() && !cx.principal()?.role.at_least(Role::Owner) {
        return Err(AppError::Forbidden(
            "forbidden",
            "Only owners invite owners.".into(),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
struct ExistingUser {
    id: String,
    tenant_id: String,
    status: String,
}

async fn user_by_email(db: &Db, email: &str) -> Result<Option<ExistingUser>> {
    db.one(
        "SELECT id, tenant_id, status FROM users WHERE email = ?1",
        &args![email],
    )
    .await
}

/// The mail for an invitation with this token, staged for the caller's batch.
async fn stage_mail(
    cx: &Ctx,
    db: &Db,
    row_email: &str,
    role: &str,
    token: &str,
) -> Result<(
    Vec<worker::D1PreparedStatement>,
    Option<outbox::Staged>,
    String,
)> {
    let p = cx.principal()?;
    let tenant_id = cx.tenant_id()?;
    let organization = match &p.profile {
        Some(profile) => profile.tenant.name.clone(),
        None => tenants::db::get(db, tenant_id)
            .await?
            .map(|t| t.name)
            .unwrap_or_default(),
    };
    let inviter = p
        .profile
        .as_ref()
        .map(|pr| pr.user.full_name.clone())
        .or_else(|| p.email.clone())
        .unwrap_or_else(|| "An administrator".into());
    let url = model::accept_url(&cx.config.email.app_base_url, token);
    let (stmts, staged) = email::stage(
        db,
        &cx.config,
        &Outgoing {
            tenant_id: Some(tenant_id.to_string()),
            to: row_email.to_string(),
            template: Template::Invitation,
            variables: json!({"organization": organization, "inviter": inviter,
                              "role": role, "accept_url": url}),
        },
        cx.now_ms,
    )?;
    Ok((stmts, staged, url))
}

async fn create(cx: Ctx) -> Result<Reply> {
    let body: CreateInvitation = cx.json()?;
    let mut checks = Checks::new();
    let email = checks.take("email", j::email(&body.email));
    let role = Role::parse(body.role.trim())
        .filter(|r| *r != Role::PlatformAdmin)
        .map(Role::as_str);
    if role.is_none() {
        checks.add(
            "role",
            format!("must be one of {}", TENANT_ROLES.join(", ")),
        );
    }
    let mut team_ids: Vec<String> = Vec::new();
    let requested = body.team_ids.unwrap_or_default();
    if requested.len() > MAX_TEAMS {
        checks.add("team_ids", format!("at most {MAX_TEAMS} teams"));
    }
    for (i, id) in requested.iter().enumerate() {
        let id = id.trim();
        if id.is_empty() || id.len() > 100 {
            checks.add(&format!("team_ids[{i}]"), "must be a team id");
        } else if !team_ids.iter().any(|t| t == id) {
            team_ids.push(id.to_string());
        }
    }
    checks.finish()?;
    let (email, role) = (email.unwrap_or_default(), role.unwrap_or("member"));
    only_owners_invite_owners(&cx, role)?;
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    for (i, id) in team_ids.iter().enumerate() {
        if super::find(&db, tenant_id, id).await.is_err() {
            return Err(AppError::field(
                format!("team_ids[{i}]"),
                format!("`{id}` is not one of your teams"),
            ));
        }
    }
    match user_by_email(&db, &email).await? {
        Some(u) if u.tenant_id != tenant_id || u.status == "deleted" => {
            return Err(email_in_use());
        }
        Some(_) if team_ids.is_empty() => {
            return Err(AppError::Conflict(
                "This e-mail is a user of the organisation already; invite it with team_ids to \
                 add it to teams."
                    .into(),
            ));
        }
        _ => {}
    }
    let pending: Option<serde_json::Value> = db
        .one(
            "SELECT id FROM invitations WHERE tenant_id = ?1 AND email = ?2 AND status = 'pending'",
            &args![tenant_id, email.as_str()],
        )
        .await?;
    if pending.is_some() {
        return Err(pending_exists(AppError::Conflict(String::new())));
    }
    let (token, hash) = model::new_token();
    let id = ids::new_id("inv");
    let now = cx.now();
    let expires = clock::rfc3339(cx.now_ms + cx.config.invitation_ttl_secs * 1000);
    let (mail, staged, url) = stage_mail(&cx, &db, &email, role, &token).await?;
    let p = cx.principal()?;
    let invited_by = p
        .user_id
        .clone()
        .or_else(|| p.api_key.as_ref().map(|k| k.id.clone()));
    let mut stmts = vec![
        db.stmt(
            "INSERT INTO invitations (id, tenant_id, email, role, team_ids, token_hash, status, \
             invited_by, expires_at, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?8, ?9, ?9)",
            &args![
                id.as_str(),
                tenant_id,
                email.as_str(),
                role,
                serde_json::to_string(&team_ids)?,
                hash,
                invited_by,
                expires,
                now.as_str()
            ],
        )?,
        audit::entry(&cx, "invitation.created")
            .target("invitation", id.as_str())
            .meta(json!({"email": email, "role": role, "team_ids": team_ids}))
            .stmt(&db)?,
    ];
    stmts.extend(mail);
    db.batch(stmts).await.map_err(pending_exists)?;
    if let Some(s) = staged {
        outbox::send_now(&cx.env, &cx.config, &db, &[s]).await;
    }
    let invitation = find(&db, tenant_id, &id).await?.view(&cx.now());
    Reply::created(
        &CreatedInvitation {
            invitation,
            accept_url: url,
        },
        Some(format!("/api/v1/invitations/{id}")),
    )
}

async fn list(cx: Ctx) -> Result<Reply> {
    let page = cx.page()?;
    let now = cx.now();
    let mut f = Filter::new(
        &format!("SELECT {COLUMNS} FROM invitations WHERE invitations.tenant_id = ?1"),
        args![cx.tenant_id()?],
    );
    match cx
        .query_enum("status", &INVITATION_STATUSES)?
        .and_then(|s| InvitationStatus::parse(&s))
    {
        None => {}
        Some(InvitationStatus::Pending) => {
            f.and(
                "invitations.status = 'pending' AND invitations.expires_at > ?",
                vec![Arg::from(now.as_str())],
            );
        }
        Some(InvitationStatus::Expired) => {
            f.and(
                "invitations.status = 'pending' AND invitations.expires_at <= ?",
                vec![Arg::from(now.as_str())],
            );
        }
        Some(s) => {
            f.and("invitations.status = ?", vec![Arg::from(s.as_str())]);
        }
    }
    f.page(&page, "invitations");
    let rows: Vec<Row> = cx.db()?.all(&f.sql, &f.args).await?;
    let rows: Vec<Invitation> = rows.into_iter().map(|r| r.view(&now)).collect();
    let (rows, next) = page.finish(rows, |i| (i.created_at.clone(), i.id.clone()));
    Reply::list(&rows, next.as_deref())
}

async fn get(cx: Ctx) -> Result<Reply> {
    let row = find(&cx.db()?, cx.tenant_id()?, cx.param("id")).await?;
    Reply::ok(&row.view(&cx.now()))
}

fn not_now(status: Option<InvitationStatus>) -> AppError {
    AppError::Conflict(format!(
        "The invitation is {}.",
        status.map_or("in an unknown state", InvitationStatus::as_str)
    ))
}

async fn resend(cx: Ctx) -> Result<Reply> {
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    let row = find(&db, tenant_id, cx.param("id")).await?;
    let now = cx.now();
    let status = row.status(&now);
    if status
        .and_then(|s| s.after(InvitationAction::Resend))
        .is_none()
    {
        return Err(not_now(status));
    }
    only_owners_invite_owners(&cx, &row.role)?;
    let (token, hash) = model::new_token();
    let expires = clock::rfc3339(cx.now_ms + cx.config.invitation_ttl_secs * 1000);
    // The token changes in one guarded statement: the old one is dead from here on.
    let changed = db
        .run(
            "UPDATE invitations SET token_hash = ?3, expires_at = ?4, updated_at = ?5 \
             WHERE id = ?1 AND tenant_id = ?2 AND status = 'pending'",
            &args![row.id.as_str(), tenant_id, hash, expires, now.as_str()],
        )
        .await?;
    if changed == 0 {
        return Err(not_now(find(&db, tenant_id, &row.id).await?.status(&now)));
    }
    let (mail, staged, url) = stage_mail(&cx, &db, &row.email, &row.role, &token).await?;
    let mut stmts = vec![audit::entry(&cx, "invitation.resent")
        .target("invitation", row.id.as_str())
        .meta(json!({"email": row.email}))
        .stmt(&db)?];
    stmts.extend(mail);
    db.batch(stmts).await?;
    if let Some(s) = staged {
        outbox::send_now(&cx.env, &cx.config, &db, &[s]).await;
    }
    let invitation = find(&db, tenant_id, &row.id).await?.view(&now);
    Reply::ok(&CreatedInvitation {
        invitation,
        accept_url: url,
    })
}

async fn revoke(cx: Ctx) -> Result<Reply> {
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    let row = find(&db, tenant_id, cx.param("id")).await?;
    let now = cx.now();
    let status = row.status(&now);
    if status
        .and_then(|s| s.after(InvitationAction::Revoke))
        .is_none()
    {
        return Err(not_now(status));
    }
    let changed = db
        .run(
            "UPDATE invitations SET status = 'revoked', updated_at = ?3 \
             WHERE id = ?1 AND tenant_id = ?2 AND status = 'pending'",
            &args![row.id.as_str(), tenant_id, now.as_str()],
        )
        .await?;
    if changed == 0 {
        return Err(not_now(find(&db, tenant_id, &row.id).await?.status(&now)));
    }
    audit::entry(&cx, "invitation.revoked")
        .target("invitation", row.id.as_str())
        .meta(json!({"email": row.email}))
        .write(&db)
        .await?;
    Ok(Reply::no_content())
}

/// An invitation found by its token, with its organisation.
#[derive(Deserialize)]
struct ByToken {
    #[serde(flatten)]
    row: Row,
    organization: String,
    tenant_status: String,
    tenant_deleted_at: Option<String>,
}

fn check_token(token: &str) -> Result<&str> {
    let t = token.trim();
    if t.is_empty() || t.len() > 200 {
        return Err(AppError::field("token", "must be an invitation token"));
    }
    Ok(t)
}

/// The pending, unexpired invitation of a usable organisation behind `token`, or 410.
async fn by_token(db: &Db, token: &str, now: &str) -> Result<ByToken> {
    let found: Option<ByToken> = db
        .one(
            &format!(
                "SELECT {COLUMNS}, tenants.name AS organization, tenants.status AS tenant_status, \
                 tenants.deleted_at AS tenant_deleted_at \
                 FROM invitations JOIN tenants ON tenants.id = invitations.tenant_id \
                 WHERE invitations.token_hash = ?1"
            ),
            &args![model::token_hash(token)],
        )
        .await?;
    found
        .filter(|f| {
            f.row.status(now) == Some(InvitationStatus::Pending)
                && account::tenant_usable(&f.tenant_status, f.tenant_deleted_at.as_deref())
        })
        .ok_or_else(invalid)
}

/// Failed token attempts per client address: the log-in budget.
fn attempt_budget(cx: &Ctx) -> Vec<(String, crate::platform::config::Budget)> {
    vec![(
        format!("invitation:{}", cx.client.ip),
        cx.config.auth_budgets.login,
    )]
}

async fn preview(cx: Ctx) -> Result<Reply> {
    let body: PreviewInvitation = cx.json()?;
    let token = check_token(&body.token)?;
    let attempt = auth::Reservation::take(&cx, attempt_budget(&cx)).await?;
    let db = cx.db()?;
    let found = by_token(&db, token, &cx.now()).await?;
    attempt.give_back();
    #[derive(Deserialize)]
    struct TeamRow {
        id: String,
        name: String,
    }
    let teams: Vec<TeamRow> = db
        .all(
            "SELECT id, name FROM teams WHERE tenant_id = ?1 \
             AND id IN (SELECT value FROM json_each(?2)) ORDER BY name",
            &args![found.row.tenant_id.as_str(), found.row.team_ids.as_str()],
        )
        .await?;
    Reply::ok(&InvitationPreview {
        organization: found.organization,
        role: found.row.role.clone(),
        teams: teams
            .into_iter()
            .map(|t| TeamRef {
                id: t.id,
                name: t.name,
            })
            .collect(),
        email_masked: model::mask_email(&found.row.email),
        expires_at: found.row.expires_at,
    })
}

/// Joins `user_id` to the invitation's teams that still exist, only if this very acceptance
/// won (the invitation is accepted by `user_id`).
fn join_teams(db: &Db, inv: &Row, user_id: &str, now: &str) -> Result<worker::D1PreparedStatement> {
    db.stmt(
        "INSERT OR IGNORE INTO team_members (team_id, user_id, tenant_id, role, created_at) \
         SELECT teams.id, ?1, teams.tenant_id, 'member', ?2 FROM teams \
         WHERE teams.tenant_id = ?3 AND teams.id IN (SELECT value FROM json_each(?4)) \
         AND EXISTS (SELECT 1 FROM invitations WHERE id = ?5 AND status = 'accepted' \
                     AND accepted_by = ?1)",
        &args![
            user_id,
            now,
            inv.tenant_id.as_str(),
            inv.team_ids.as_str(),
            inv.id.as_str()
        ],
    )
}

/// The one conditional update: `pending` and unexpired → `accepted` by `user_id`.
fn accept_stmt(
    db: &Db,
    inv: &Row,
    user_id: &str,
    now: &str,
) -> Result<worker::D1PreparedStatement> {
    db.stmt(
        "UPDATE invitations SET status = 'accepted', accepted_by = ?2, accepted_at = ?3, \
         updated_at = ?3 WHERE id = ?1 AND status = 'pending' AND expires_at > ?3",
        &args![inv.id.as_str(), user_id, now],
    )
}

async fn accept(cx: Ctx) -> Result<Reply> {
    let body: AcceptInvitation = cx.json()?;
    let token = check_token(&body.token)?.to_string();
    let mut checks = Checks::new();
    let password = body
        .password
        .as_deref()
        .and_then(|p| checks.take("password", j::password(p)));
    let full_name = body
        .full_name
        .as_deref()
        .and_then(|n| checks.take("full_name", j::text(n, 1, 200)));
    checks.finish()?;

    let attempt = auth::Reservation::take(&cx, attempt_budget(&cx)).await?;
    let db = cx.db()?;
    let now = cx.now();
    let inv = by_token(&db, &token, &now).await?.row;
    // The token was good: what follows is not a guess.
    attempt.give_back();
    match user_by_email(&db, &inv.email).await? {
        Some(u) if u.tenant_id != inv.tenant_id || u.status == "deleted" => Err(email_in_use()),
        Some(u) => accept_as_member(&cx, &db, inv, u.id, &now).await,
        None => {
            let mut checks = Checks::new();
            if password.is_none() {
                checks.add("password", "is required for a new account");
            }
            if full_name.is_none() {
                checks.add("full_name", "is required for a new account");
            }
            checks.finish()?;
            let (password, full_name) =
                (password.unwrap_or_default(), full_name.unwrap_or_default());
            accept_as_new_user(&cx, &db, inv, &password, &full_name, &now).await
        }
    }
}

/// The e-mail is a user of this organisation: their own session, then only the teams.
async fn accept_as_member(
    cx: &Ctx,
    db: &Db,
    inv: Row,
    user_id: String,
    now: &str,
) -> Result<Reply> {
    let caller = principal::authenticate(&cx.env, &cx.config, &cx.headers, cx.now_ms, None)
        .await
        .ok()
        .map(|(p, _)| p);
    let authenticated = caller.is_some();
    let Some(p) = caller.filter(|p| p.user_id.as_deref() == Some(user_id.as_str())) else {
        // A concurrent acceptance that just made this e-mail's account lands here too: then
        // the answer is the loser's 410, not a request for a session.
        if find(db, &inv.tenant_id, &inv.id).await?.status(now) != Some(InvitationStatus::Pending) {
            return Err(lost(cx).await);
        }
        return Err(if !authenticated {
            AppError::Unauthorized(
                "unauthorized",
                "This e-mail has an account here: log in as that user and send its bearer token."
                    .into(),
            )
        } else {
            AppError::Forbidden(
                "forbidden",
                "The invitation is for another user of this organisation.".into(),
            )
        });
    };
    let changes = db
        .batch(vec![
            accept_stmt(db, &inv, &user_id, now)?,
            join_teams(db, &inv, &user_id, now)?,
        ])
        .await?;
    if changes.first().copied().unwrap_or(0) == 0 {
        return Err(lost(cx).await);
    }
    audit::entry(cx, "invitation.accepted")
        .tenant(inv.tenant_id.as_str())
        .actor(Some(user_id.clone()), p.email.clone())
        .target("invitation", inv.id.as_str())
        .meta(json!({"existing_user": true, "team_ids": inv.team_ids()}))
        .write(db)
        .await?;
    accepted(cx, db, &inv, &user_id).await;
    let view = find(db, &inv.tenant_id, &inv.id).await?.view(now);
    Reply::ok(&view)
}

/// Tells the inviter the invitation was accepted, and the new member the teams they joined.
async fn accepted(cx: &Ctx, db: &Db, inv: &Row, user_id: &str) {
    use crate::notifications::{model::Kind, tell, Notice};
    if let Some(inviter) = inv.invited_by.clone().filter(|i| i != user_id) {
        let notice = Notice {
            kind: Kind::InvitationAccepted,
            title: format!("{} accepted your invitation", inv.email),
            body: format!("{} joined as {}.", inv.email, inv.role),
            link: Some(format!("/users/{user_id}")),
            data: Some(json!({"invitation_id": inv.id, "user_id": user_id})),
        };
        tell(&cx.env, &cx.config, db, &inv.tenant_id, &[inviter], notice).await;
    }
    let teams = inv.team_ids();
    if !teams.is_empty() {
        let notice = Notice {
            kind: Kind::TeamAdded,
            title: "You were added to a team".into(),
            body: format!("You joined {} team(s) with your invitation.", teams.len()),
            link: Some("/teams".into()),
            data: Some(json!({"team_ids": teams})),
        };
        tell(
            &cx.env,
            &cx.config,
            db,
            &inv.tenant_id,
            &[user_id.to_string()],
            notice,
        )
        .await;
    }
}

/// A lost race for a token that was good a moment ago: the same 410 as any bad token, and it
/// counts as a failed attempt like one.
async fn lost(cx: &Ctx) -> AppError {
    let b = cx.config.auth_budgets.login;
    crate::platform::ratelimit::draw(
        &cx.env,
        &format!("invitation:{}", cx.client.ip),
        b.limit,
        b.window_secs,
        1,
    )
    .await;
    invalid()
}

async fn accept_as_new_user(
    cx: &Ctx,
    db: &Db,
    inv: Row,
    password: &str,
    full_name: &str,
    now: &str,
) -> Result<Reply> {
    let password_hash = password::hash(password).await?;
    let user_id = ids::new_id("usr");
    let changes = db
        .batch(vec![
            accept_stmt(db, &inv, &user_id, now)?,
            db.stmt(
                "INSERT INTO users (id, tenant_id, email, full_name, role, status, password_hash, \
                 created_at, updated_at, last_login) \
                 SELECT ?1, i.tenant_id, i.email, ?2, i.role, 'active', ?3, ?4, ?4, ?4 \
                 FROM invitations i WHERE i.id = ?5 AND i.status = 'accepted' AND i.accepted_by = ?1",
                &args![
                    user_id.as_str(),
                    full_name,
                    password_hash,
                    now,
                    inv.id.as_str()
                ],
            )?,
            join_teams(db, &inv, &user_id, now)?,
        ])
        .await
        .map_err(|e| match e {
            // Someone registered this e-mail since the check: the whole batch is undone.
            AppError::Conflict(_) => email_in_use(),
            other => other,
        })?;
    if changes.first().copied().unwrap_or(0) == 0 {
        return Err(lost(cx).await);
    }
    let issued = session::start(cx, db, &user_id, &inv.tenant_id, &inv.role)?;
    let mut stmts = issued.stmts;
    stmts.push(
        audit::entry(cx, "invitation.accepted")
            .tenant(inv.tenant_id.as_str())
            .actor(Some(user_id.clone()), Some(inv.email.clone()))
            .target("invitation", inv.id.as_str())
            .meta(json!({"existing_user": false, "role": inv.role, "team_ids": inv.team_ids()}))
            .stmt(db)?,
    );
    db.batch(stmts).await?;
    accepted(cx, db, &inv, &user_id).await;
    let user = users::db::get(db, &inv.tenant_id, &user_id)
        .await?
        .ok_or_else(|| AppError::Internal("accepted user vanished".into()))?;
    let tenant = tenants::db::get(db, &inv.tenant_id)
        .await?
        .ok_or_else(|| AppError::Internal("accepted tenant vanished".into()))?;
    auth::token_response(
        cx,
        201,
        user,
        tenant,
        issued.access_token,
        issued.refresh_token,
    )
}

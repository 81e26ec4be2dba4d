//! The caller's profile and preferences, the organisation, and the tenant dashboard (module S).
//!
//! - `PATCH /auth/me` changes the caller's own name and profile fields; the tenant gate caches
//!   users, so it is told like every other user change.
//! - `GET/PATCH /me/preferences`: a free-form JSON object of at most 8 KB, changed by RFC 7396
//!   merge patches (applied with a compare-and-swap, so concurrent patches do not lose keys).
//! - `GET/PATCH /organization`: the tenant itself (any user reads, tenant admins rename).
//! - `GET /dashboard`: the tenant's numbers at a glance, from one D1 read batch and the usage
//!   meter. An *active user* is a non-deleted user of the tenant who logged in within the
//!   window or sent an analytics event (as a user session) in it.

pub mod shape;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::args;
use crate::audit;
use crate::auth::gate::{self, Scope};
use crate::billing::meter;
use crate::billing::plans::Metric;
use crate::handler;
use crate::http::context::Ctx;
use crate::http::json::{self as j, Checks};
use crate::http::reply::Reply;
use crate::http::router::{Access, Route};
use crate::platform::clock;
use crate::platform::db::{first_row, Arg};
use crate::platform::error::{AppError, Result};
use crate::tenants::model::Tenant;
use crate::users::model::User;

pub fn routes() -> Vec<Route> {
    vec![
        Route::patch("/api/v1/auth/me", Access::Session, handler!(update_me))
            .doc(
                "auth",
                "Change your own name and profile (avatar, bio, locale, time zone)",
            )
            .body("UpdateProfile")
            .ok("User"),
        Route::get(
            "/api/v1/me/preferences",
            Access::Session,
            handler!(preferences),
        )
        .doc("auth", "Your preferences: a JSON object of at most 8 KB")
        .ok("UserPreferences"),
        Route::patch(
            "/api/v1/me/preferences",
            Access::Session,
            handler!(patch_preferences),
        )
        .doc(
            "auth",
            "Change your preferences with an RFC 7396 JSON merge patch (`null` deletes a key); \
             answers the merged object",
        )
        .body("UserPreferences")
        .ok("UserPreferences"),
        Route::get("/api/v1/organization", Access::User, handler!(organization))
            .doc("organization", "Your organisation")
            .ok("Tenant"),
        Route::patch(
            "/api/v1/organization",
            Access::TenantAdmin,
            handler!(update_organization),
        )
        .doc("organization", "Rename your organisation (tenant admins)")
        .body("UpdateOrganization")
        .ok("Tenant"),
        Route::get("/api/v1/dashboard", Access::Session, handler!(dashboard))
            .doc(
                "organization",
                "The tenant at a glance: members, active users (logged in or sent an analytics \
                 event in the last 7/30 days), this month's usage, open conversations, media, \
                 your unread notifications",
            )
            .ok("TenantDashboard"),
    ]
}

/// `PATCH /auth/me`: any of these; `null` clears an optional field.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProfile {
    #[schema(min_length = 1, max_length = 200)]
    pub full_name: Option<String>,
    /// An https URL, at most 2,048 characters.
    #[serde(default, deserialize_with = "j::double_option")]
    #[schema(value_type = Option<String>, max_length = 2048)]
    pub avatar_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "j::double_option")]
    #[schema(value_type = Option<String>, max_length = 1000)]
    pub bio: Option<Option<String>>,
    /// A BCP 47 language tag such as `en` or `pt-BR`.
    #[serde(default, deserialize_with = "j::double_option")]
    #[schema(value_type = Option<String>, example = "pt-BR")]
    pub locale: Option<Option<String>>,
    /// An IANA time-zone name such as `Europe/Berlin` or `UTC`.
    #[serde(default, deserialize_with = "j::double_option")]
    #[schema(value_type = Option<String>, example = "Europe/Berlin")]
    pub timezone: Option<Option<String>>,
}

/// The caller's preferences: any JSON object, at most 8 KB serialised.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Object)]
pub struct UserPreferences(pub Value);

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrganization {
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DashboardUsage {
    /// Counted by the usage meter this calendar month (UTC).
    pub executions: u64,
    pub optimizations: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DashboardMedia {
    pub count: i64,
    pub bytes: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantDashboard {
    /// Users of the tenant who are not deleted.
    pub members: i64,
    /// Members who logged in or sent an analytics event in the last 7 days.
    pub active_users_7d: i64,
    pub active_users_30d: i64,
    /// This month's metered usage (what quotas count).
    pub usage: DashboardUsage,
    /// Executions created this month (UTC).
    pub executions: i64,
    /// Optimisations made this month (UTC).
    pub optimizations: i64,
    /// Open conversations.
    pub conversations: i64,
    pub media: DashboardMedia,
    /// The caller's unread notifications.
    pub unread_notifications: i64,
    /// The month the monthly numbers are for, `YYYY-MM`.
    pub period: String,
}

/// Changes the caller's own profile; audited as `user.profile_updated`.
async fn update_me(cx: Ctx) -> Result<Reply> {
    let body: UpdateProfile = cx.json()?;
    let p = cx.principal()?;
    let user_id = p.user_id()?.to_string();
    let tenant_id = p.tenant_id.clone();
    let db = cx.db()?;
    let current = crate::users::db::get(&db, &tenant_id, &user_id)
        .await?
        .ok_or(AppError::NotFound)?;
    let mut checks = Checks::new();
    let mut changed: Vec<&str> = Vec::new();
    let full_name = match &body.full_name {
        Some(n) => {
            changed.push("full_name");
            checks.take("full_name", j::text(n, 1, 200))
        }
        None => Some(current.full_name.clone()),
    };
    // Each optional field: absent keeps it, `null` clears it, a value is checked.
    let mut optional = |field: &'static str,
                        given: &Option<Option<String>>,
                        now: &Option<String>,
                        parse: fn(&str) -> std::result::Result<String, String>|
     -> Option<String> {
        match given {
            None => now.clone(),
            Some(None) => {
                changed.push(field);
                None
            }
            Some(Some(v)) => {
                changed.push(field);
                checks.take(field, parse(v))
            }
        }
    };
    let avatar_url = optional(
        "avatar_url",
        &body.avatar_url,
        &current.avatar_url,
        shape::avatar_url,
    );
    let bio = optional("bio", &body.bio, &current.bio, shape::bio);
    let locale = optional("locale", &body.locale, &current.locale, shape::locale);
    let timezone = optional(
        "timezone",
        &body.timezone,
        &current.timezone,
        shape::timezone,
    );
    checks.finish()?;
    db.batch(vec![
        db.stmt(
            "UPDATE users SET full_name = ?3, avatar_url = ?4, bio = ?5, locale = ?6, \
             timezone = ?7, updated_at = ?8 WHERE id = ?1 AND tenant_id = ?2",
            &args![
                user_id.as_str(),
                tenant_id.as_str(),
                Arg::from(full_name),
                Arg::from(avatar_url),
                Arg::from(bio),
                Arg::from(locale),
                Arg::from(timezone),
                cx.now()
            ],
        )?,
        audit::entry(&cx, "user.profile_updated")
            .target("user", user_id.as_str())
            .meta(json!({ "fields": changed }))
            .stmt(&db)?,
    ])
    .await?;
    // The gate caches the user (`/auth/me` answers from it): it forgets them now.
    gate::invalidate(
        &cx.env,
        &tenant_id,
        Scope::User {
            user_id: user_id.clone(),
        },
    )
    .await?;
    let user: User = crate::users::db::get(&db, &tenant_id, &user_id)
        .await?
        .ok_or(AppError::NotFound)?;
    Reply::ok(&user)
}

#[derive(Deserialize)]
struct PrefsRow {
    preferences: String,
}

async fn read_preferences(cx: &Ctx) -> Result<(String, Value)> {
    let p = cx.principal()?;
    let row: PrefsRow = cx
        .db()?
        .one(
            "SELECT preferences FROM users WHERE id = ?1 AND tenant_id = ?2",
            &args![p.user_id()?, p.tenant_id.as_str()],
        )
        .await?
        .ok_or(AppError::NotFound)?;
    let value = serde_json::from_str(&row.preferences)
        .ok()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    Ok((row.preferences, value))
}

async fn preferences(cx: Ctx) -> Result<Reply> {
    Reply::ok(&UserPreferences(read_preferences(&cx).await?.1))
}

/// Applies a merge patch. The write is conditional on the stored text being the one the merge
/// started from; a concurrent patch in between makes it start over (a few times).
async fn patch_preferences(cx: Ctx) -> Result<Reply> {
    let patch: Value = cx.json()?;
    if !patch.is_object() {
        return Err(AppError::field(
            "preferences",
            "must be a JSON object (an RFC 7396 merge patch)",
        ));
    }
    let p = cx.principal()?;
    let user_id = p.user_id()?.to_string();
    let db = cx.db()?;
    for _ in 0..5 {
        let (stored, current) = read_preferences(&cx).await?;
        let merged = shape::patched_preferences(&current, &patch)
            .map_err(|m| AppError::field("preferences", m))?;
        let changed = db
            .run(
                "UPDATE users SET preferences = ?4, updated_at = ?5 \
                 WHERE id = ?1 AND tenant_id = ?2 AND preferences = ?3",
                &args![
                    user_id.as_str(),
                    p.tenant_id.as_str(),
                    stored,
                    merged.to_string(),
                    cx.now()
                ],
            )
            .await?;
        if changed > 0 {
            // Written only once the swap took: a lost race leaves no entry for a change that
            // did not happen.
            audit::entry(&cx, "user.preferences_updated")
                .target("user", user_id.as_str())
                .meta(json!({
                    "keys": patch.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>())
                }))
                .write(&db)
                .await?;
            return Reply::ok(&UserPreferences(merged));
        }
    }
    Err(AppError::Conflict(
        "The preferences kept changing; try again.".into(),
    ))
}

async fn organization(cx: Ctx) -> Result<Reply> {
    let tenant: Tenant = crate::tenants::db::get(&cx.db()?, cx.tenant_id()?)
        .await?
        .ok_or(AppError::NotFound)?;
    Reply::ok(&tenant)
}

/// Renames the tenant; audited as `organization.updated`.
async fn update_organization(cx: Ctx) -> Result<Reply> {
    let body: UpdateOrganization = cx.json()?;
    let name = j::text(&body.name, 1, 200).map_err(|m| AppError::field("name", m))?;
    let tenant_id = cx.tenant_id()?.to_string();
    let db = cx.db()?;
    let before = crate::tenants::db::get(&db, &tenant_id)
        .await?
        .ok_or(AppError::NotFound)?;
    db.batch(vec![
        db.stmt(
            "UPDATE tenants SET name = ?2, updated_at = ?3 WHERE id = ?1 AND deleted_at IS NULL",
            &args![tenant_id.as_str(), name.as_str(), cx.now()],
        )?,
        audit::entry(&cx, "organization.updated")
            .target("tenant", tenant_id.as_str())
            .meta(json!({"name": {"from": before.name, "to": name}}))
            .stmt(&db)?,
    ])
    .await?;
    // The gate caches the tenant (its name is in every principal's profile).
    gate::invalidate(&cx.env, &tenant_id, Scope::Tenant).await?;
    let tenant = crate::tenants::db::get(&db, &tenant_id)
        .await?
        .ok_or(AppError::NotFound)?;
    Reply::ok(&tenant)
}

/// The first instant of the month `period` (`YYYY-MM`) in the stored text form.
fn month_start(period: &str) -> String {
    format!("{period}-01T00:00:00.000Z")
}

const DAY_MS: i64 = 24 * 3600 * 1000;

async fn dashboard(cx: Ctx) -> Result<Reply> {
    let p = cx.principal()?;
    let tenant_id = p.tenant_id.clone();
    let user_id = p.user_id()?.to_string();
    let db = cx.db()?;
    let period = meter::period_of(cx.now_ms);
    let since_month = month_start(&period);
    let since_7d = clock::rfc3339(cx.now_ms - 7 * DAY_MS);
    let since_30d = clock::rfc3339(cx.now_ms - 30 * DAY_MS);
    let active =
        "SELECT COUNT(*) AS n FROM users u WHERE u.tenant_id = ?1 AND u.status != 'deleted' \
         AND (u.last_login >= ?2 OR EXISTS (SELECT 1 FROM analytics_events e \
         WHERE e.tenant_id = ?1 AND e.user_id = u.id AND e.occurred_at >= ?2))";
    let t = tenant_id.as_str();
    let stmts = vec![
        db.stmt(
            "SELECT COUNT(*) AS n FROM users WHERE tenant_id = ?1 AND status != 'deleted'",
            &args![t],
        )?,
        db.stmt(active, &args![t, since_7d])?,
        db.stmt(active, &args![t, since_30d])?,
        db.stmt(
            "SELECT COUNT(*) AS n FROM executions WHERE tenant_id = ?1 AND created_at >= ?2",
            &args![t, since_month.as_str()],
        )?,
        db.stmt(
            "SELECT COUNT(*) AS n FROM optimizations WHERE tenant_id = ?1 AND created_at >= ?2",
            &args![t, since_month.as_str()],
        )?,
        db.stmt(
            "SELECT COUNT(*) AS n FROM conversations WHERE tenant_id = ?1 AND status = 'open'",
            &args![t],
        )?,
        db.stmt(
            "SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes FROM media WHERE tenant_id = ?1",
            &args![t],
        )?,
        db.stmt(
            "SELECT COUNT(*) AS n FROM notifications \
             WHERE user_id = ?1 AND tenant_id = ?2 AND read_at IS NULL",
            &args![user_id.as_str(), t],
        )?,
    ];
    let (results, report) = futures_util::try_join!(
        db.read_batch(stmts),
        meter::report(&cx.env, &tenant_id, &period)
    )?;
    #[derive(Deserialize)]
    struct Count {
        n: i64,
        #[serde(default)]
        bytes: i64,
    }
    let count = |i: usize| -> Result<Count> {
        let r = results
            .get(i)
            .ok_or_else(|| AppError::Internal("d1: a read batch answered short".into()))?;
        Ok(first_row::<Count>(r)?.unwrap_or(Count { n: 0, bytes: 0 }))
    };
    let used = |m: Metric| {
        report
            .counters
            .iter()
            .find(|c| c.metric == m)
            .map_or(0, |c| c.used)
    };
    let media = count(6)?;
    Reply::ok(&TenantDashboard {
        members: count(0)?.n,
        active_users_7d: count(1)?.n,
        active_users_30d: count(2)?.n,
        usage: DashboardUsage {
            executions: used(Metric::Executions),
            optimizations: used(Metric::Optimizations),
        },
        executions: count(3)?.n,
        optimizations: count(4)?.n,
        conversations: count(5)?.n,
        media: DashboardMedia {
            count: media.n,
            bytes: media.bytes,
        },
        unread_notifications: count(7)?.n,
        period,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_start_at_midnight_utc_on_the_first() {
        assert_eq!(month_start("2026-12"), "2026-12-01T00:00:00.000Z");
        assert_eq!(
            clock::parse_time(&month_start(&meter::period_of(1_795_000_000_123))),
            clock::parse_time("2026-11-01T00:00:00Z")
        );
    }
}

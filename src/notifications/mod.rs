//! In-app notifications, their preferences and live feed (module S).
//!
//! A user reads, marks and deletes only their own notifications (another user's, even in the
//! same tenant, is 404); these routes need a user session, since notifications belong to users
//! (API keys get 403). Tenant admins broadcast (`POST /notifications`) and read the per-type
//! stats. Other features notify through `notify::notify` (see there), which honours each
//! recipient's preference per type: in-app on by default, e-mail off by default except
//! `payment.failed` and `usage.threshold` (`model::Kind::emails_by_default`), web push off
//! until chosen (to the user's browsers subscribed through `crate::push`).
//!
//! Live: `GET /notifications/live` upgrades to a WebSocket on the caller's own
//! `NotificationHub` (one per user; the shared `live_hub` code the conversation feeds run),
//! which receives `{"type": "notification.created", "data": <notification>}`. A socket lasts no
//! longer than the access token it was opened with.

pub mod model;
pub mod notify;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::args;
use crate::audit;
use crate::email;
use crate::handler;
use crate::http::context::Ctx;
use crate::http::json::{self as j, Checks};
use crate::http::pagination::PAGING;
use crate::http::reply::Reply;
use crate::http::router::{q, q_enum, Access, QueryDoc, Route};
use crate::messaging::live;
use crate::platform::bindings;
use crate::platform::db::{Arg, Db, Filter};
use crate::platform::error::{AppError, Result};

use model::{Audience, BroadcastTo, Channels, Kind, Preference, PreferencePatch};
pub use notify::{notify, tell, tell_admins, Notice};

const LIST_QUERY: [QueryDoc; 4] = [
    PAGING[0],
    PAGING[1],
    q_enum(
        "unread",
        &["true", "false"],
        "`true`: only unread; `false`: only read.",
    ),
    q_enum("type", &Kind::NAMES, "Only notifications of this type."),
];

const STATS_QUERY: [QueryDoc; 2] = [
    q(
        "from",
        "string",
        "Created at or after (RFC 3339 or a date).",
    ),
    q("to", "string", "Created before (RFC 3339 or a date)."),
];

const LIVE_QUERY: [QueryDoc; 1] = [q(
    "access_token",
    "string",
    "The access token, for WebSocket clients that cannot send an Authorization header (or send subprotocols `bearer, <token>`).",
)];

pub fn routes() -> Vec<Route> {
    vec![
        Route::get("/api/v1/notifications", Access::Session, handler!(list))
            .doc("notifications", "Your notifications, newest first")
            .list("Notification")
            .query(&LIST_QUERY),
        Route::post(
            "/api/v1/notifications",
            Access::TenantAdmin,
            handler!(broadcast),
        )
        .doc(
            "notifications",
            "Notify users of your tenant: given ids, a team, a role or everyone (≤ 1,000; tenant admins)",
        )
        .body("Broadcast")
        .accepted("BroadcastResult")
        .idempotent(),
        Route::get(
            "/api/v1/notifications/unread-count",
            Access::Session,
            handler!(unread_count),
        )
        .doc("notifications", "How many of your notifications are unread")
        .ok("UnreadCount"),
        Route::post(
            "/api/v1/notifications/read-all",
            Access::Session,
            handler!(read_all),
        )
        .doc("notifications", "Mark all your notifications read")
        .ok("MarkedRead"),
        Route::put(
            "/api/v1/notifications/read-all",
            Access::Session,
            handler!(read_all),
        )
        .alias(),
        Route::post(
            "/api/v1/notifications/:id/read",
            Access::Session,
            handler!(read),
        )
        .doc("notifications", "Mark one of your notifications read")
        .ok("Notification"),
        Route::put(
            "/api/v1/notifications/:id/read",
            Access::Session,
            handler!(read),
        )
        .alias(),
        Route::delete(
            "/api/v1/notifications/:id",
            Access::Session,
            handler!(remove),
        )
        .doc("notifications", "Delete one of your notifications")
        .no_content(),
        Route::get(
            "/api/v1/notifications/preferences",
            Access::Session,
            handler!(get_preferences),
        )
        .doc(
            "notifications",
            "Your channels per notification type (every type, defaults filled in)",
        )
        .ok("NotificationPreferences"),
        Route::put(
            "/api/v1/notifications/preferences",
            Access::Session,
            handler!(put_preferences),
        )
        .doc(
            "notifications",
            "Change your channels for some types (omitted fields keep their value)",
        )
        .body("PutNotificationPreferences")
        .ok("NotificationPreferences"),
        Route::get(
            "/api/v1/notifications/stats",
            Access::TenantAdmin,
            handler!(stats),
        )
        .doc(
            "notifications",
            "Notifications created, read and e-mailed per type (tenant admins)",
        )
        .ok("NotificationStats")
        .query(&STATS_QUERY),
        Route::get(
            "/api/v1/notifications/live",
            Access::Session,
            handler!(connect),
        )
        .doc(
            "notifications",
            "Upgrade to a WebSocket with your own new notifications (`notification.created`)",
        )
        .raw(101, "application/json")
        .query(&LIVE_QUERY)
        .query_token(),
    ]
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Notification {
    pub id: String,
    #[serde(skip)]
    pub user_id: String,
    /// One of the known types (`broadcast`, `execution.failed`, …).
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub body: String,
    pub link: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
    /// Whether an e-mail was sent for it too.
    pub emailed: bool,
    pub read: bool,
    pub read_at: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UnreadCount {
    pub count: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MarkedRead {
    /// Notifications that were unread and are now read.
    pub updated: u64,
}

/// Every known type with its channels.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationPreferences {
    #[schema(value_type = Object)]
    pub preferences: BTreeMap<&'static str, Preference>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutNotificationPreferences {
    /// Type name → `{in_app?, email?, push?}`.
    #[schema(value_type = Object)]
    pub preferences: BTreeMap<String, PreferencePatch>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Broadcast {
    #[schema(min_length = 1, max_length = 200)]
    pub title: String,
    #[schema(max_length = 5000)]
    pub body: Option<String>,
    /// A path in the app (`/tickets/tkt_1`) or an http(s) URL.
    #[schema(max_length = 2000)]
    pub link: Option<String>,
    /// Exactly one of `user_ids`, `team_id`, `role`, `all: true`.
    pub to: BroadcastTo,
    /// `in_app`, `email`, `push` (default all; each recipient's preferences still apply).
    pub channels: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BroadcastResult {
    /// Active users the `to` resolved to.
    pub recipients: usize,
    /// In-app notifications written (recipients whose preferences allow it).
    pub in_app: usize,
    /// E-mails staged.
    pub emailed: usize,
    /// Web pushes staged (one per subscribed browser of recipients who chose push).
    pub pushed: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationStats {
    pub from: Option<String>,
    pub to: Option<String>,
    pub types: Vec<NotificationTypeStats>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct NotificationTypeStats {
    #[serde(rename = "type")]
    pub kind: String,
    pub created: i64,
    pub read: i64,
    pub emailed: i64,
}

#[derive(Deserialize)]
struct Row {
    id: String,
    user_id: String,
    #[serde(rename = "type")]
    kind: String,
    title: String,
    body: String,
    link: Option<String>,
    data: Option<String>,
    emailed: i64,
    read_at: Option<String>,
    created_at: String,
}

impl From<Row> for Notification {
    fn from(r: Row) -> Self {
        Notification {
            id: r.id,
            user_id: r.user_id,
            kind: r.kind,
            title: r.title,
            body: r.body,
            link: r.link,
            data: r.data.and_then(|d| serde_json::from_str(&d).ok()),
            emailed: r.emailed != 0,
            read: r.read_at.is_some(),
            read_at: r.read_at,
            created_at: r.created_at,
        }
    }
}

const COLUMNS: &str =
    "notifications.id, notifications.user_id, notifications.type, notifications.title, \
     notifications.body, notifications.link, notifications.data, notifications.emailed, \
     notifications.read_at, notifications.created_at";

/// The caller as the owner of notifications: tenant and user (routes need a session).
fn owner(cx: &Ctx) -> Result<(&str, &str)> {
    let p = cx.principal()?;
    let user = p.user_id.as_deref().ok_or_else(|| {
        AppError::Forbidden(
            "forbidden",
            "Notifications belong to users: use a session.".into(),
        )
    })?;
    Ok((p.tenant_id.as_str(), user))
}

async fn find(db: &Db, tenant_id: &str, user_id: &str, id: &str) -> Result<Notification> {
    let row: Row = db
        .one(
            &format!(
                "SELECT {COLUMNS} FROM notifications WHERE notifications.id = ?1 \
                 AND notifications.user_id = ?2 AND notifications.tenant_id = ?3"
            ),
            &args![id, user_id, tenant_id],
        )
        .await?
        .ok_or(AppError::NotFound)?;
    Ok(row.into())
}

fn kind_query(cx: &Ctx) -> Result<Option<Kind>> {
    Ok(cx
        .query_enum("type", &Kind::NAMES)?
        .and_then(|k| Kind::parse(&k)))
}

async fn list(cx: Ctx) -> Result<Reply> {
    let (tenant, user) = owner(&cx)?;
    let page = cx.page()?;
    let mut f = Filter::new(
        &format!(
            "SELECT {COLUMNS} FROM notifications WHERE notifications.user_id = ?1 \
             AND notifications.tenant_id = ?2"
        ),
        args![user, tenant],
    );
    match cx.query_enum("unread", &["true", "false"])?.as_deref() {
        Some("true") => {
            f.and("notifications.read_at IS NULL", Vec::<Arg>::new());
        }
        Some(_) => {
            f.and("notifications.read_at IS NOT NULL", Vec::<Arg>::new());
        }
        None => {}
    }
    f.and_opt(
        "notifications.type = ?",
        kind_query(&cx)?.map(|k| Arg::from(k.as_str())),
    );
    f.page(&page, "notifications");
    let rows: Vec<Row> = cx.db()?.all(&f.sql, &f.args).await?;
    let rows: Vec<Notification> = rows.into_iter().map(Into::into).collect();
    let (rows, next) = page.finish(rows, |n| (n.created_at.clone(), n.id.clone()));
    Reply::list(&rows, next.as_deref())
}

async fn unread_count(cx: Ctx) -> Result<Reply> {
    let (tenant, user) = owner(&cx)?;
    #[derive(Deserialize)]
    struct Count {
        count: i64,
    }
    let count = cx
        .db()?
        .one::<Count>(
            "SELECT COUNT(*) AS count FROM notifications WHERE user_id = ?1 AND tenant_id = ?2 \
             AND read_at IS NULL",
            &args![user, tenant],
        )
        .await?
        .map_or(0, |c| c.count);
    Reply::ok(&UnreadCount { count })
}

async fn read(cx: Ctx) -> Result<Reply> {
    let (tenant, user) = owner(&cx)?;
    let db = cx.db()?;
    // Marking twice keeps the first time it was read.
    let changed = db
        .run(
            "UPDATE notifications SET read_at = COALESCE(read_at, ?1) WHERE id = ?2 \
             AND user_id = ?3 AND tenant_id = ?4",
            &args![cx.now(), cx.param("id"), user, tenant],
        )
        .await?;
    if changed == 0 {
        return Err(AppError::NotFound);
    }
    Reply::ok(&find(&db, tenant, user, cx.param("id")).await?)
}

async fn read_all(cx: Ctx) -> Result<Reply> {
    let (tenant, user) = owner(&cx)?;
    let updated = cx
        .db()?
        .run(
            "UPDATE notifications SET read_at = ?1 WHERE user_id = ?2 AND tenant_id = ?3 \
             AND read_at IS NULL",
            &args![cx.now(), user, tenant],
        )
        .await?;
    Reply::ok(&MarkedRead { updated })
}

async fn remove(cx: Ctx) -> Result<Reply> {
    let (tenant, user) = owner(&cx)?;
    let deleted = cx
        .db()?
        .run(
            "DELETE FROM notifications WHERE id = ?1 AND user_id = ?2 AND tenant_id = ?3",
            &args![cx.param("id"), user, tenant],
        )
        .await?;
    if deleted == 0 {
        return Err(AppError::NotFound);
    }
    Ok(Reply::no_content())
}

async fn preferences(db: &Db, user_id: &str) -> Result<NotificationPreferences> {
    #[derive(Deserialize)]
    struct Stored {
        #[serde(rename = "type")]
        kind: String,
        in_app: i64,
        email: i64,
        push: i64,
    }
    let stored: Vec<Stored> = db
        .all(
            "SELECT type, in_app, email, push FROM notification_preferences WHERE user_id = ?1",
            &args![user_id],
        )
        .await?;
    let stored: Vec<(String, Preference)> = stored
        .into_iter()
        .map(|s| {
            (
                s.kind,
                Preference {
                    in_app: s.in_app != 0,
                    email: s.email != 0,
                    push: s.push != 0,
                },
            )
        })
        .collect();
    Ok(NotificationPreferences {
        preferences: model::effective(&stored),
    })
}

async fn get_preferences(cx: Ctx) -> Result<Reply> {
    let (_, user) = owner(&cx)?;
    Reply::ok(&preferences(&cx.db()?, user).await?)
}

async fn put_preferences(cx: Ctx) -> Result<Reply> {
    let (_, user) = owner(&cx)?;
    let body: PutNotificationPreferences = cx.json()?;
    let patches = model::parse_patches(&body.preferences).map_err(|unknown| {
        let mut checks = Checks::new();
        for name in unknown {
            checks.add(
                &format!("preferences.{name}"),
                format!(
                    "`{name}` is not a notification type: use one of {}",
                    Kind::NAMES.join(", ")
                ),
            );
        }
        checks.finish().unwrap_err()
    })?;
    let db = cx.db()?;
    if !patches.is_empty() {
        let items: Vec<Value> = patches
            .iter()
            .map(|(k, p)| {
                let first = k.default_preference().merged(*p);
                json!({"type": k.as_str(), "in_app": p.in_app, "email": p.email, "push": p.push,
                       "first_in_app": first.in_app as i64, "first_email": first.email as i64,
                       "first_push": first.push as i64})
            })
            .collect();
        let items = Value::Array(items).to_string();
        // A type chosen for the first time starts from its defaults; then every given field is
        // set in one update, so concurrent changes of other fields are kept.
        db.batch(vec![
            db.stmt(
                "INSERT OR IGNORE INTO notification_preferences (user_id, type, in_app, email, push, updated_at) \
                 SELECT ?1, json_extract(value, '$.type'), json_extract(value, '$.first_in_app'), \
                 json_extract(value, '$.first_email'), json_extract(value, '$.first_push'), ?2 FROM json_each(?3)",
                &args![user, cx.now(), items.as_str()],
            )?,
            db.stmt(
                "UPDATE notification_preferences SET \
                 in_app = COALESCE(json_extract(j.value, '$.in_app'), notification_preferences.in_app), \
                 email = COALESCE(json_extract(j.value, '$.email'), notification_preferences.email), \
                 push = COALESCE(json_extract(j.value, '$.push'), notification_preferences.push), \
                 updated_at = ?2 FROM json_each(?3) AS j \
                 WHERE notification_preferences.user_id = ?1 \
                 AND notification_preferences.type = json_extract(j.value, '$.type')",
                &args![user, cx.now(), items.as_str()],
            )?,
            audit::entry(&cx, "notification.preferences_updated")
                .target("user", user)
                .meta(json!({"types": patches.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>()}))
                .stmt(&db)?,
        ])
        .await?;
    }
    Reply::ok(&preferences(&db, user).await?)
}

/// The active users an audience reaches in the tenant, at most one past the bound (so "too
/// many" is visible). Named users or a team of another tenant (or none) are 404.
async fn resolve(db: &Db, tenant_id: &str, audience: &Audience) -> Result<Vec<String>> {
    #[derive(Deserialize)]
    struct Id {
        id: String,
    }
    #[derive(Deserialize)]
    struct Named {
        id: String,
        status: String,
    }
    let limit = model::MAX_RECIPIENTS + 1;
    let ids: Vec<Id> = match audience {
        Audience::Users(wanted) => {
            let found: Vec<Named> = db
                .all(
                    "SELECT id, status FROM users WHERE tenant_id = ?1 \
                     AND id IN (SELECT value FROM json_each(?2))",
                    &args![tenant_id, serde_json::to_string(wanted)?],
                )
                .await?;
            if found.len() < wanted.len() {
                return Err(AppError::NotFound);
            }
            return Ok(found
                .into_iter()
                .filter(|u| u.status == "active")
                .map(|u| u.id)
                .collect());
        }
        Audience::Team(team_id) => {
            let team: Option<Id> = db
                .one(
                    "SELECT id FROM teams WHERE id = ?1 AND tenant_id = ?2",
                    &args![team_id.as_str(), tenant_id],
                )
                .await?;
            if team.is_none() {
                return Err(AppError::NotFound);
            }
            db.all(
                &format!(
                    "SELECT users.id FROM team_members JOIN users ON users.id = team_members.user_id \
                     WHERE team_members.team_id = ?1 AND users.tenant_id = ?2 \
                     AND users.status = 'active' LIMIT {limit}"
                ),
                &args![team_id.as_str(), tenant_id],
            )
            .await?
        }
        Audience::Role(role) => {
            db.all(
                &format!(
                    "SELECT id FROM users WHERE tenant_id = ?1 AND role = ?2 \
                     AND status = 'active' LIMIT {limit}"
                ),
                &args![tenant_id, role.as_str()],
            )
            .await?
        }
        Audience::All => {
            db.all(
                &format!(
                    "SELECT id FROM users WHERE tenant_id = ?1 AND status = 'active' LIMIT {limit}"
                ),
                &args![tenant_id],
            )
            .await?
        }
    };
    Ok(ids.into_iter().map(|i| i.id).collect())
}

fn audience_label(a: &Audience) -> Value {
    match a {
        Audience::Users(ids) => json!({"user_ids": ids.len()}),
        Audience::Team(id) => json!({"team_id": id}),
        Audience::Role(r) => json!({"role": r.as_str()}),
        Audience::All => json!({"all": true}),
    }
}

async fn broadcast(cx: Ctx) -> Result<Reply> {
    let b: Broadcast = cx.json()?;
    let mut checks = Checks::new();
    let title = checks.take("title", j::text(&b.title, 1, 200));
    let body = match &b.body {
        Some(text) if text.chars().count() > 5000 => {
            checks.add("body", "must be at most 5000 characters");
            None
        }
        other => Some(other.clone().unwrap_or_default()),
    };
    let link = match b.link.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(l)
            if l.chars().count() <= 2000
                && email::link(&cx.config.email.app_base_url, l).is_some() =>
        {
            Some(l.to_string())
        }
        Some(_) => {
            checks.add(
                "link",
                "must be a path in the app (`/…`) or an http(s) URL, at most 2000 characters",
            );
            None
        }
    };
    let channels = match &b.channels {
        None => Some(Channels::ALL),
        Some(names) => checks.take("channels", Channels::parse(names)),
    };
    let audience = match model::audience(&b.to) {
        Ok(a) => Some(a),
        Err((field, message)) => {
            checks.add(&field, message);
            None
        }
    };
    checks.finish()?;
    let (Some(title), Some(body), Some(channels), Some(audience)) =
        (title, body, channels, audience)
    else {
        return Err(AppError::Internal("checked broadcast lost a field".into()));
    };
    let tenant = cx.tenant_id()?;
    let db = cx.db()?;
    let recipients = resolve(&db, tenant, &audience).await?;
    model::check_count(recipients.len()).map_err(|m| AppError::field("to", m))?;
    let p = cx.principal()?;
    let sender = p
        .user_id
        .clone()
        .or_else(|| p.api_key.as_ref().map(|k| k.id.clone()));
    let notice = Notice {
        kind: Kind::Broadcast,
        title,
        body,
        link,
        data: Some(json!({"sent_by": sender})),
    };
    let mut staged = notify::stage(
        &db,
        &cx.config,
        tenant,
        &recipients,
        &notice,
        channels,
        cx.now_ms,
    )
    .await?;
    let result = BroadcastResult {
        recipients: staged.recipients,
        in_app: staged.in_app,
        emailed: staged.emailed,
        pushed: staged.pushed,
    };
    let mut stmts = std::mem::take(&mut staged.stmts);
    stmts.push(
        audit::entry(&cx, "notification.broadcast")
            .meta(
                json!({"to": audience_label(&audience), "recipients": result.recipients,
                         "in_app": result.in_app, "emailed": result.emailed, "pushed": result.pushed}),
            )
            .stmt(&db)?,
    );
    db.batch(stmts).await?;
    notify::send(&cx.env, &cx.config, &db, &staged).await;
    Reply::data(202, &result)
}

async fn stats(cx: Ctx) -> Result<Reply> {
    let from = cx.query_time("from")?;
    let to = cx.query_time("to")?;
    if let (Some(f), Some(t)) = (&from, &to) {
        if f >= t {
            return Err(AppError::field("to", "must be after `from`"));
        }
    }
    let mut f = Filter::new(
        "SELECT type, COUNT(*) AS created, COUNT(read_at) AS read, \
         COALESCE(SUM(emailed), 0) AS emailed FROM notifications WHERE tenant_id = ?1",
        args![cx.tenant_id()?],
    );
    f.and_opt("created_at >= ?", from.clone().map(Arg::from))
        .and_opt("created_at < ?", to.clone().map(Arg::from));
    f.sql.push_str(" GROUP BY type");
    let rows: Vec<NotificationTypeStats> = cx.db()?.all(&f.sql, &f.args).await?;
    let types = Kind::ALL
        .into_iter()
        .map(|k| {
            rows.iter().find(|r| r.kind == k.as_str()).map_or(
                NotificationTypeStats {
                    kind: k.as_str().to_string(),
                    created: 0,
                    read: 0,
                    emailed: 0,
                },
                |r| NotificationTypeStats {
                    kind: r.kind.clone(),
                    created: r.created,
                    read: r.read,
                    emailed: r.emailed,
                },
            )
        })
        .collect();
    Reply::ok(&NotificationStats { from, to, types })
}

async fn connect(cx: Ctx) -> Result<Reply> {
    let (_, user) = owner(&cx)?;
    let (response, _expires_ms) = live::open(&cx, bindings::NOTIFICATION_HUB, user).await?;
    Ok(Reply::upgrade(response))
}

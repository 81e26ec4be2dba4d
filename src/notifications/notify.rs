//! The one way features notify users: `notify` (or `stage` + the caller's batch + `send`, to
//! commit the notifications with the change that caused them). Each recipient's preference for
//! the type decides the channels: in-app rows are written in one statement, e-mails are staged
//! in the outbox (template `notification`), web pushes as one delivery per subscription of the
//! recipient (`push::delivery`, when VAPID is configured), and each new in-app notification is
//! pushed to its user's live feed after the commit (best effort). Works from both Workers: the
//! jobs Worker reaches the `NotificationHub` objects through `script_name`.

use serde::Deserialize;
use serde_json::{json, Value};
use worker::{D1PreparedStatement, Env};

use super::model::{delivery, Channels, Kind, Preference};
use super::Notification;
use crate::args;
use crate::email::{self, Outgoing, Template};
use crate::messaging::live;
use crate::platform::bindings;
use crate::platform::clock;
use crate::platform::config::Config;
use crate::platform::db::Db;
use crate::platform::error::Result;
use crate::platform::ids;
use crate::platform::outbox::{self, Staged as StagedJob};
use crate::push::delivery::{self as push_delivery, Target};

/// What to tell the recipients.
#[derive(Debug, Clone)]
pub struct Notice {
    pub kind: Kind,
    pub title: String,
    pub body: String,
    /// A path in the app (`/workflows/wf_1`) or an http(s) URL.
    pub link: Option<String>,
    pub data: Option<Value>,
}

/// A notice's statements for the caller's D1 batch, and what to do after the commit.
pub struct Staged {
    pub stmts: Vec<D1PreparedStatement>,
    jobs: Vec<StagedJob>,
    created: Vec<Notification>,
    /// Active users of the tenant among the ids given.
    pub recipients: usize,
    /// In-app notifications written.
    pub in_app: usize,
    /// E-mails staged.
    pub emailed: usize,
    /// Web pushes staged (one per subscription of a recipient who wants them).
    pub pushed: usize,
    reached: usize,
}

impl Staged {
    /// Users reached by at least one channel.
    pub fn reached(&self) -> usize {
        self.reached
    }
}

#[derive(Deserialize)]
struct RecipientRow {
    id: String,
    address: String,
    in_app: Option<i64>,
    wants_email: Option<i64>,
    wants_push: Option<i64>,
    /// The recipient's push subscription ids (a JSON array).
    subscriptions: String,
}

/// The statements that deliver `n` to `user_ids` (only active users of `tenant_id` count; ids
/// of others are ignored) on the `channels` the sender allows, as each recipient's preferences
/// allow. Reads the recipients and their preferences (one query); writes nothing.
pub async fn stage(
    db: &Db,
    cfg: &Config,
    tenant_id: &str,
    user_ids: &[String],
    n: &Notice,
    channels: Channels,
    now_ms: i64,
) -> Result<Staged> {
    let mut staged = Staged {
        stmts: Vec::new(),
        jobs: Vec::new(),
        created: Vec::new(),
        recipients: 0,
        in_app: 0,
        emailed: 0,
        pushed: 0,
        reached: 0,
    };
    if user_ids.is_empty() {
        return Ok(staged);
    }
    let rows: Vec<RecipientRow> = db
        .all(
            "SELECT users.id, users.email AS address, p.in_app, p.email AS wants_email, \
             p.push AS wants_push, (SELECT json_group_array(s.id) FROM push_subscriptions s \
             WHERE s.user_id = users.id AND s.tenant_id = ?1) AS subscriptions FROM users \
             LEFT JOIN notification_preferences p ON p.user_id = users.id AND p.type = ?2 \
             WHERE users.tenant_id = ?1 AND users.status = 'active' \
             AND users.id IN (SELECT value FROM json_each(?3))",
            &args![tenant_id, n.kind.as_str(), serde_json::to_string(user_ids)?],
        )
        .await?;
    staged.recipients = rows.len();
    let now = clock::rfc3339(now_ms);
    let mailing = email::configured(cfg);
    let data = n.data.as_ref().map(Value::to_string);
    let pushing = cfg.push.is_some();
    let mut items = Vec::new();
    let mut targets = Vec::new();
    for r in rows {
        let stored = match (r.in_app, r.wants_email) {
            (Some(a), Some(e)) => Some(Preference {
                in_app: a != 0,
                email: e != 0,
                push: r.wants_push.unwrap_or(0) != 0,
            }),
            _ => None,
        };
        let d = delivery(n.kind, stored, channels);
        let subscriptions: Vec<String> = if d.push && pushing {
            serde_json::from_str(&r.subscriptions).unwrap_or_default()
        } else {
            Vec::new()
        };
        let notification_id = d.in_app.then(|| ids::ordered_id("ntf", now_ms));
        let pushes = subscriptions.len();
        for subscription_id in subscriptions {
            targets.push(Target {
                user_id: r.id.clone(),
                subscription_id,
                notification_id: notification_id.clone(),
            });
            staged.pushed += 1;
        }
        if d.email {
            let (stmts, job) = email::stage(
                db,
                cfg,
                &Outgoing {
                    tenant_id: Some(tenant_id.to_string()),
                    to: r.address.clone(),
                    template: Template::Notification,
                    variables: json!({"title": n.title, "body": n.body, "link": n.link}),
                },
                now_ms,
            )?;
            staged.stmts.extend(stmts);
            staged.jobs.extend(job);
            staged.emailed += 1;
        }
        if let Some(id) = notification_id {
            let emailed = d.email && mailing;
            items.push(json!({"id": id, "user_id": r.id, "emailed": emailed as i64}));
            staged.created.push(Notification {
                id,
                user_id: r.id.clone(),
                kind: n.kind.as_str().to_string(),
                title: n.title.clone(),
                body: n.body.clone(),
                link: n.link.clone(),
                data: n.data.clone(),
                emailed,
                read: false,
                read_at: None,
                created_at: now.clone(),
            });
        }
        if d.in_app || d.email || pushes > 0 {
            staged.reached += 1;
        }
    }
    if !targets.is_empty() {
        let payload = push_delivery::payload(
            n.kind.as_str(),
            &n.title,
            &n.body,
            n.link.as_deref(),
            n.data.as_ref(),
            &now,
        );
        let (stmts, jobs) = push_delivery::stage(
            db,
            tenant_id,
            &targets,
            &payload,
            n.kind.push_urgency(),
            now_ms,
        )?;
        staged.stmts.extend(stmts);
        staged.jobs.extend(jobs);
    }
    staged.in_app = items.len();
    if !items.is_empty() {
        // One statement for every row: the recipients travel as one JSON bind (D1 allows 100).
        staged.stmts.insert(
            0,
            db.stmt(
                "INSERT INTO notifications (id, tenant_id, user_id, type, title, body, link, data, emailed, created_at) \
                 SELECT json_extract(value, '$.id'), ?1, json_extract(value, '$.user_id'), ?2, ?3, ?4, ?5, ?6, \
                 json_extract(value, '$.emailed'), ?7 FROM json_each(?8)",
                &args![
                    tenant_id,
                    n.kind.as_str(),
                    n.title.as_str(),
                    n.body.as_str(),
                    n.link.clone(),
                    data,
                    now.as_str(),
                    Value::Array(items).to_string()
                ],
            )?,
        );
    }
    Ok(staged)
}

/// After the batch with `staged.stmts` committed: sends the e-mail and push jobs and pushes each new
/// notification to its user's live feed. Never fails: the sweep sends jobs left behind, and a
/// feed that misses an event still lists the notification.
pub async fn send(env: &Env, cfg: &Config, db: &Db, staged: &Staged) {
    outbox::send_many_now(env, cfg, db, &staged.jobs).await;
    let pushes = staged.created.iter().map(|n| push(env, n));
    futures_util::future::join_all(pushes).await;
}

/// Pushes a notification to its user's live feed; a failure is logged, not raised.
pub async fn push(env: &Env, n: &Notification) {
    let event = json!({"type": "notification.created", "data": n});
    if let Err(e) = live::publish_to(env, bindings::NOTIFICATION_HUB, &n.user_id, &event).await {
        worker::console_error!(
            "{}",
            json!({"level": "warn", "event": "notifications.push_failed", "notification_id": n.id, "error": e.to_string()})
        );
    }
}

/// Notifies `user_ids` (active users of `tenant_id`; others are skipped) of `n` on the channels
/// their preferences for `n.kind` allow, committed on its own. Returns how many users it reached
/// (an in-app row or an e-mail).
pub async fn notify(
    env: &Env,
    cfg: &Config,
    db: &Db,
    tenant_id: &str,
    user_ids: &[String],
    n: &Notice,
) -> Result<usize> {
    let mut staged = stage(
        db,
        cfg,
        tenant_id,
        user_ids,
        n,
        Channels::ALL,
        clock::now_ms(),
    )
    .await?;
    if !staged.stmts.is_empty() {
        db.batch(std::mem::take(&mut staged.stmts)).await?;
    }
    send(env, cfg, db, &staged).await;
    Ok(staged.reached())
}

/// The active owners and admins of a tenant (who hear of payments and usage).
pub async fn admins(db: &Db, tenant_id: &str) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Id {
        id: String,
    }
    let rows: Vec<Id> = db
        .all(
            "SELECT id FROM users WHERE tenant_id = ?1 AND status = 'active' \
             AND role IN ('owner', 'admin') ORDER BY created_at LIMIT 1000",
            &crate::args![tenant_id],
        )
        .await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// `tell` the tenant's owners and admins.
pub async fn tell_admins(env: &Env, cfg: &Config, db: &Db, tenant_id: &str, n: Notice) {
    match admins(db, tenant_id).await {
        Ok(ids) => tell(env, cfg, db, tenant_id, &ids, n).await,
        Err(e) => worker::console_error!(
            "{}",
            serde_json::json!({"level": "error", "event": "notify_failed", "type": n.kind.as_str(), "error": e.to_string()})
        ),
    }
}

/// `notify` after a change already committed (an acceptance, a failed run): a failure is
/// logged, never raised, because the change stands either way.
pub async fn tell(
    env: &Env,
    cfg: &Config,
    db: &Db,
    tenant_id: &str,
    user_ids: &[String],
    n: Notice,
) {
    if user_ids.is_empty() {
        return;
    }
    if let Err(e) = notify(env, cfg, db, tenant_id, user_ids, &n).await {
        worker::console_error!(
            "{}",
            serde_json::json!({"level": "error", "event": "notify_failed", "type": n.kind.as_str(), "error": e.to_string()})
        );
    }
}

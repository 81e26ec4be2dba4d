//! Web push (issue 18): a user's browser subscriptions and the deployment's VAPID public key.
//!
//! `POST /notifications/push-subscriptions` takes a browser's `PushSubscription.toJSON()` as
//! is (`{endpoint, expirationTime, keys: {p256dh, auth}}`); the endpoint must pass the egress
//! policy (https, not internal, unless listed in `EGRESS_ALLOW`), `p256dh` must be a point on
//! P-256 and `auth` 16 bytes. The same endpoint posted again by the same user updates its keys
//! (200; a new one is 201). Subscriptions belong to users: another user's id is 404. A user
//! keeps at most `MAX_PER_USER`. Notifications reach them through `delivery::stage` (called by
//! `notifications::notify` for recipients whose preference has `push: true`) and the jobs
//! Worker's `sender`. Without `VAPID_PRIVATE_KEY` the subscription routes still work (a
//! frontend may subscribe before push is switched on), nothing is pushed, and `push-key`
//! answers `503 push_unavailable`.

pub mod delivery;
pub mod keys;

#[cfg(feature = "jobs")]
pub mod crypto;
#[cfg(feature = "jobs")]
pub mod sender;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::args;
use crate::handler;
use crate::http::context::Ctx;
use crate::http::json::Checks;
use crate::http::pagination::PAGING;
use crate::http::reply::Reply;
use crate::http::router::{Access, Route};
use crate::platform::db::Filter;
use crate::platform::error::{AppError, Result};
use crate::platform::ids;

/// Subscriptions one user may keep (browsers and devices); each notification is pushed to all.
pub const MAX_PER_USER: i64 = 10;
const MAX_ENDPOINT_LEN: usize = 2048;

pub fn routes() -> Vec<Route> {
    vec![
        Route::get(
            "/api/v1/notifications/push-key",
            Access::Public,
            handler!(push_key),
        )
        .doc(
            "notifications",
            "The VAPID public key to subscribe with (`applicationServerKey`); 503 `push_unavailable` when web push is not configured",
        )
        .ok("PushKey"),
        Route::get(
            "/api/v1/notifications/push-subscriptions",
            Access::Session,
            handler!(list),
        )
        .doc("notifications", "Your browsers' push subscriptions, newest first")
        .list("PushSubscription")
        .query(&PAGING),
        Route::post(
            "/api/v1/notifications/push-subscriptions",
            Access::Session,
            handler!(subscribe),
        )
        .doc(
            "notifications",
            "Subscribe a browser: its PushSubscription.toJSON() as is. 201 when new; 200 when you already had this endpoint (its keys and expiry are replaced); 409 beyond 10 per user",
        )
        .body("PushSubscriptionIn")
        .created("PushSubscription"),
        Route::delete(
            "/api/v1/notifications/push-subscriptions/:id",
            Access::Session,
            handler!(remove),
        )
        .doc("notifications", "Remove one of your push subscriptions")
        .no_content(),
    ]
}

/// The deployment's VAPID public key.
#[derive(Debug, Serialize, ToSchema)]
pub struct PushKey {
    /// base64url of the uncompressed P-256 point (65 bytes), for `pushManager.subscribe`.
    pub public_key: String,
}

/// A browser's `PushSubscription.toJSON()`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushSubscriptionIn {
    /// The push service URL the browser was given (https).
    #[schema(max_length = 2048)]
    pub endpoint: String,
    /// When the subscription expires (epoch milliseconds), or null.
    #[serde(rename = "expirationTime", default)]
    pub expiration_time: Option<f64>,
    pub keys: PushKeys,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushKeys {
    /// base64url of the browser's P-256 public key (65-byte uncompressed point).
    pub p256dh: String,
    /// base64url of the 16-byte authentication secret.
    pub auth: String,
}

/// A stored subscription (its keys are not shown again).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PushSubscription {
    pub id: String,
    pub endpoint: String,
    /// Epoch milliseconds, or null.
    pub expiration_time: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
}

/// The caller as the owner of subscriptions: tenant and user (the routes need a session).
fn owner(cx: &Ctx) -> Result<(&str, &str)> {
    let p = cx.principal()?;
    let user = p.user_id.as_deref().ok_or_else(|| {
        AppError::Forbidden(
            "forbidden",
            "Push subscriptions belong to users: use a session.".into(),
        )
    })?;
    Ok((p.tenant_id.as_str(), user))
}

async fn push_key(cx: Ctx) -> Result<Reply> {
    let vapid = cx.config.push.as_ref().ok_or_else(|| {
        AppError::refused(
            503,
            "push_unavailable",
            "Web push is not configured on this deployment (VAPID_PRIVATE_KEY, VAPID_SUBJECT).",
        )
    })?;
    Reply::ok(&PushKey {
        public_key: vapid.public_key_b64(),
    })
}

/// A subscription's values, checked.
struct Checked {
    endpoint: String,
    expiration_time: Option<i64>,
    p256dh: String,
    auth: String,
}

fn check(cx: &Ctx, s: &PushSubscriptionIn) -> Result<Checked> {
    let mut checks = Checks::new();
    let endpoint = s.endpoint.trim();
    if endpoint.is_empty() || endpoint.len() > MAX_ENDPOINT_LEN {
        checks.add(
            "endpoint",
            format!("must be an https URL of at most {MAX_ENDPOINT_LEN} characters"),
        );
    } else if let Err(why) = cx.egress().check_str(endpoint) {
        checks.add("endpoint", why);
    }
    let expiration_time = match s.expiration_time {
        None => None,
        Some(t) if t.is_finite() && (0.0..9.0e15).contains(&t) => Some(t.round() as i64),
        Some(_) => {
            checks.add(
                "expirationTime",
                "must be null or a time in epoch milliseconds",
            );
            None
        }
    };
    if let Err(why) = keys::parse_p256dh(&s.keys.p256dh) {
        checks.add("keys.p256dh", why);
    }
    if let Err(why) = keys::parse_auth(&s.keys.auth) {
        checks.add("keys.auth", why);
    }
    checks.finish()?;
    Ok(Checked {
        endpoint: endpoint.to_string(),
        expiration_time,
        // Stored as sent, without padding, so the sender decodes one spelling.
        p256dh: s.keys.p256dh.trim().trim_end_matches('=').to_string(),
        auth: s.keys.auth.trim().trim_end_matches('=').to_string(),
    })
}

async fn subscribe(cx: Ctx) -> Result<Reply> {
    let (tenant, user) = owner(&cx)?;
    let body: PushSubscriptionIn = cx.json()?;
    let s = check(&cx, &body)?;
    let id = ids::ordered_id("psub", cx.now_ms);
    // One statement: insert, or replace the keys of the caller's own subscription with this
    // endpoint; a new one only while the caller has fewer than the maximum.
    let row: Option<PushSubscription> = cx
        .db()?
        .one(
            "INSERT INTO push_subscriptions (id, tenant_id, user_id, endpoint, p256dh, auth, expiration_time, created_at, updated_at) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8 \
             WHERE (SELECT COUNT(*) FROM push_subscriptions WHERE user_id = ?3) < ?9 \
             OR EXISTS (SELECT 1 FROM push_subscriptions WHERE user_id = ?3 AND endpoint = ?4) \
             ON CONFLICT (user_id, endpoint) DO UPDATE SET p256dh = excluded.p256dh, auth = excluded.auth, \
             expiration_time = excluded.expiration_time, updated_at = excluded.updated_at \
             RETURNING id, endpoint, expiration_time, created_at, updated_at",
            &args![
                id.as_str(),
                tenant,
                user,
                s.endpoint.as_str(),
                s.p256dh.as_str(),
                s.auth.as_str(),
                s.expiration_time,
                cx.now(),
                MAX_PER_USER
            ],
        )
        .await?;
    let row = row.ok_or_else(|| {
        AppError::Conflict(format!(
            "You already have {MAX_PER_USER} push subscriptions: remove one first."
        ))
    })?;
    if row.id == id {
        Reply::created(&row, None)
    } else {
        Reply::ok(&row)
    }
}

async fn list(cx: Ctx) -> Result<Reply> {
    let (tenant, user) = owner(&cx)?;
    let page = cx.page()?;
    let mut f = Filter::new(
        "SELECT push_subscriptions.id, push_subscriptions.endpoint, push_subscriptions.expiration_time, \
         push_subscriptions.created_at, push_subscriptions.updated_at FROM push_subscriptions \
         WHERE push_subscriptions.user_id = ?1 AND push_subscriptions.tenant_id = ?2",
        args![user, tenant],
    );
    f.page(&page, "push_subscriptions");
    let rows: Vec<PushSubscription> = cx.db()?.all(&f.sql, &f.args).await?;
    let (rows, next) = page.finish(rows, |s| (s.created_at.clone(), s.id.clone()));
    Reply::list(&rows, next.as_deref())
}

async fn remove(cx: Ctx) -> Result<Reply> {
    let (tenant, user) = owner(&cx)?;
    let deleted = cx
        .db()?
        .run(
            "DELETE FROM push_subscriptions WHERE id = ?1 AND user_id = ?2 AND tenant_id = ?3",
            &args![cx.param("id"), user, tenant],
        )
        .await?;
    if deleted == 0 {
        return Err(AppError::NotFound);
    }
    Ok(Reply::no_content())
}

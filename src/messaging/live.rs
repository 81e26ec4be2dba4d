//! Live updates: `GET /conversations/:id/live` upgrades to a WebSocket held by the
//! conversation's `ConversationHub` Durable Object; webhook processing, sends and inbox changes
//! publish events (`message.created`, `message.status`, `conversation.updated`) to it.
//!
//! A socket lasts no longer than what let it in: the hub closes it (1008, policy violation)
//! when the token it was opened with expires, and the tenant's gate — told of every session's
//! socket when it opens — has the hubs close it when an invalidation ends the session (log-out,
//! password change, the user suspended or deleted, a role without inbox access, the tenant
//! suspended).

use serde::Serialize;
use serde_json::json;
use worker::{Env, Headers, Method, Request, RequestInit};

use super::store;
use crate::auth::gate::{self, LiveSocket, Loaded};
use crate::auth::jwt;
use crate::auth::roles::Role;
use crate::handler;
use crate::http::context::Ctx;
use crate::http::reply::Reply;
use crate::http::router::{self, q, Access, QueryDoc, Route};
use crate::platform::bindings;
use crate::platform::error::{AppError, Result};

const LIVE_QUERY: [QueryDoc; 1] = [q(
    "access_token",
    "string",
    "The access token, for WebSocket clients that cannot send an Authorization header (or send subprotocols `bearer, <token>`).",
)];

pub fn routes() -> Vec<Route> {
    vec![Route::get(
        "/api/v1/conversations/:id/live",
        Access::Agent,
        handler!(connect),
    )
    .doc(
        "conversations",
        "Upgrade to a WebSocket with the conversation's live events (agents and above)",
    )
    .raw(101, "application/json")
    .query(&LIVE_QUERY)
    .query_token()]
}

fn hub_request(path: &str, init: &RequestInit) -> worker::Result<Request> {
    Request::new_with_init(&format!("https://conversation-hub{path}"), init)
}

/// Opens the caller's WebSocket on the hub `binding` named `name` (any `live_hub` Durable
/// Object): refuses a request without `Upgrade: websocket`, tells the hub the caller's user,
/// session and when the token that let them in expires, and selects the `bearer` subprotocol
/// for a client that sent its token that way. Returns the hub's 101 and that expiry.
pub async fn open(cx: &Ctx, binding: &str, name: &str) -> Result<(worker::Response, i64)> {
    let upgrade = cx.header("Upgrade").unwrap_or_default();
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return Err(AppError::BadRequest(
            "This endpoint speaks WebSocket: send `Upgrade: websocket`.".into(),
        ));
    }
    let offered = cx.header("Sec-WebSocket-Protocol").unwrap_or_default();
    let p = cx.principal()?;
    // The token that let the caller in (the dispatcher accepted it from one of these places).
    let token = cx
        .header("Authorization")
        .and_then(|h| {
            let (scheme, value) = h.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| value.trim().to_string())
        })
        .or_else(|| cx.query("access_token").map(str::to_string))
        .or_else(|| router::bearer_subprotocol(&offered));
    let expires_ms = token
        .and_then(|t| jwt::expires_ms(&cx.config.jwt_secret, &t))
        .unwrap_or(i64::MAX);
    let headers = Headers::new();
    headers.set("Upgrade", "websocket")?;
    headers.set("X-User-Id", p.user_id.as_deref().unwrap_or(""))?;
    headers.set("X-Session-Id", p.session_id.as_deref().unwrap_or(""))?;
    headers.set("X-Expires-Ms", &expires_ms.to_string())?;
    // A client that sent its token as subprotocols must get `bearer` back, or it drops the socket.
    if router::offers_bearer(&offered) {
        headers.set("Sec-WebSocket-Protocol", "bearer")?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_headers(headers);
    let stub = cx
        .env
        .durable_object(binding)?
        .id_from_name(name)?
        .get_stub()?;
    let response = stub
        .fetch_with_request(hub_request("/connect", &init)?)
        .await?;
    Ok((response, expires_ms))
}

/// Sends `event` to every socket of the hub `binding` named `name` (any `live_hub` Durable
/// Object).
pub async fn publish_to(
    env: &Env,
    binding: &str,
    name: &str,
    event: &serde_json::Value,
) -> Result<()> {
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_body(Some(event.to_string().into()));
    let stub = env
        .durable_object(binding)?
        .id_from_name(name)?
        .get_stub()?;
    stub.fetch_with_request(hub_request("/publish", &init)?)
        .await?;
    Ok(())
}

async fn connect(cx: Ctx) -> Result<Reply> {
    let conversation = store::conversation(&cx.db()?, cx.tenant_id()?, cx.param("id")).await?;
    let (response, expires_ms) = open(&cx, bindings::CONVERSATION_HUB, &conversation.id).await?;
    let p = cx.principal()?;
    if let (Some(user_id), Some(session_id)) = (&p.user_id, &p.session_id) {
        let socket = LiveSocket {
            tenant_id: p.tenant_id.clone(),
            conversation_id: conversation.id.clone(),
            user_id: user_id.clone(),
            session_id: session_id.clone(),
            expires_ms,
        };
        // Without the registration an ended session's socket would stay open until its
        // token expires: refuse the socket rather than keep it unsupervised.
        if let Err(e) = gate::live_opened(&cx.env, socket).await {
            let _ = close_sessions(
                &cx.env,
                &conversation.id,
                std::slice::from_ref(session_id),
                "unavailable",
            )
            .await;
            return Err(e);
        }
    }
    Ok(Reply::upgrade(response))
}

/// Whether a session's live socket may stay open, judged from what the gate loaded now: the
/// session's caller still passes the gate's checks and still has a role that may work the inbox.
pub fn may_stay(loaded: Option<&Loaded>, socket: &LiveSocket, now_ms: i64) -> bool {
    let now = crate::platform::clock::rfc3339(now_ms);
    socket.expires_ms > now_ms
        && loaded.is_some_and(|l| {
            gate::check(l, &socket.tenant_id, &socket.user_id, &now).is_ok()
                && l.session
                    .as_ref()
                    .is_some_and(|s| s.id == socket.session_id)
                && Role::parse(&l.user.role).is_some_and(|r| r.at_least(Role::Agent))
        })
}

/// Asks a conversation's hub to close the sockets of these sessions (1008).
pub async fn close_sessions(
    env: &Env,
    conversation_id: &str,
    session_ids: &[String],
    reason: &str,
) -> Result<()> {
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(
        json!({"session_ids": session_ids, "reason": reason})
            .to_string()
            .into(),
    ));
    let stub = env
        .durable_object(bindings::CONVERSATION_HUB)?
        .id_from_name(conversation_id)?
        .get_stub()?;
    stub.fetch_with_request(hub_request("/close", &init)?)
        .await?;
    Ok(())
}

/// Sends an event to the conversation's live feed. Best effort: the inbox works without it, so
/// a failure is logged, not raised.
pub async fn publish<T: Serialize>(env: &Env, conversation_id: &str, kind: &str, data: &T) {
    let event = json!({"type": kind, "conversation_id": conversation_id, "data": data});
    if let Err(e) = publish_to(env, bindings::CONVERSATION_HUB, conversation_id, &event).await {
        worker::console_error!(
            "{}",
            json!({"level": "warn", "event": "live.publish_failed", "conversation_id": conversation_id, "error": e.to_string()})
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::gate::SessionState;
    use crate::platform::clock::rfc3339;
    use crate::platform::plan::Plan;
    use crate::tenants::model::{Tenant, TenantRecord};
    use crate::users::model::User;

    const NOW: i64 = 1_800_000_000_000;

    fn loaded(role: &str, status: &str, revoked: bool) -> Loaded {
        Loaded {
            user: User {
                id: "usr_1".into(),
                tenant_id: "ten_1".into(),
                email: "a@b.io".into(),
                full_name: "Ada".into(),
                role: role.into(),
                status: status.into(),
                created_at: rfc3339(NOW),
                last_login: None,
                avatar_url: None,
                bio: None,
                locale: None,
                timezone: None,
            },
            session: Some(SessionState {
                id: "ses_1".into(),
                user_id: "usr_1".into(),
                revoked_at: revoked.then(|| rfc3339(NOW)),
                expires_at: rfc3339(NOW + 3_600_000),
            }),
            tenant: TenantRecord {
                tenant: Tenant {
                    id: "ten_1".into(),
                    name: "Org".into(),
                    slug: "org".into(),
                    plan: Plan::Pro,
                    status: "active".into(),
                    subscription_amount: 0.0,
                    subscription_start_date: None,
                    subscription_end_date: None,
                    quota_overrides: None,
                    created_at: rfc3339(NOW),
                    updated_at: rfc3339(NOW),
                },
                deleted_at: None,
            },
        }
    }

    fn socket(expires_ms: i64) -> LiveSocket {
        LiveSocket {
            tenant_id: "ten_1".into(),
            conversation_id: "cnv_1".into(),
            user_id: "usr_1".into(),
            session_id: "ses_1".into(),
            expires_ms,
        }
    }

    #[test]
    fn a_socket_stays_only_while_its_session_and_role_allow_the_inbox() {
        let live = socket(NOW + 60_000);
        assert!(may_stay(
            Some(&loaded("agent", "active", false)),
            &live,
            NOW
        ));
        assert!(may_stay(
            Some(&loaded("owner", "active", false)),
            &live,
            NOW
        ));
        assert!(
            !may_stay(Some(&loaded("agent", "active", true)), &live, NOW),
            "logged out"
        );
        assert!(!may_stay(
            Some(&loaded("agent", "suspended", false)),
            &live,
            NOW
        ));
        assert!(
            !may_stay(Some(&loaded("member", "active", false)), &live, NOW),
            "no inbox role"
        );
        assert!(!may_stay(None, &live, NOW), "deleted");
        assert!(
            !may_stay(Some(&loaded("agent", "active", false)), &socket(NOW), NOW),
            "expired"
        );
        let mut other = loaded("agent", "active", false);
        other.session.as_mut().unwrap().id = "ses_2".into();
        assert!(!may_stay(Some(&other), &live, NOW), "another session's row");
    }
}

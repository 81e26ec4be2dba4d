//! Live updates: `GET /conversations/:id/live` upgrades to a WebSocket held by the
//! conversation's `ConversationHub` Durable Object; webhook processing, sends and inbox changes
//! publish events (`message.created`, `message.status`, `conversation.updated`) to it.

use serde::Serialize;
use serde_json::json;
use worker::{Env, Headers, Method, Request, RequestInit};

use super::store;
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

async fn connect(cx: Ctx) -> Result<Reply> {
    let conversation = store::conversation(&cx.db()?, cx.tenant_id()?, cx.param("id")).await?;
    let upgrade = cx.header("Upgrade").unwrap_or_default();
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return Err(AppError::BadRequest(
            "This endpoint speaks WebSocket: send `Upgrade: websocket`.".into(),
        ));
    }
    let headers = Headers::new();
    headers.set("Upgrade", "websocket")?;
    headers.set(
        "X-User-Id",
        cx.principal()?.user_id.as_deref().unwrap_or(""),
    )?;
    // A client that sent its token as subprotocols must get `bearer` back, or it drops the socket.
    let offered = cx.header("Sec-WebSocket-Protocol").unwrap_or_default();
    if router::offers_bearer(&offered) {
        headers.set("Sec-WebSocket-Protocol", "bearer")?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Get).with_headers(headers);
    let stub = cx
        .env
        .durable_object(bindings::CONVERSATION_HUB)?
        .id_from_name(&conversation.id)?
        .get_stub()?;
    let response = stub
        .fetch_with_request(hub_request("/connect", &init)?)
        .await?;
    Ok(Reply::upgrade(response))
}

/// Sends an event to the conversation's live feed. Best effort: the inbox works without it, so
/// a failure is logged, not raised.
pub async fn publish<T: Serialize>(env: &Env, conversation_id: &str, kind: &str, data: &T) {
    let event = json!({"type": kind, "conversation_id": conversation_id, "data": data});
    let result = async {
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_body(Some(event.to_string().into()));
        let stub = env
            .durable_object(bindings::CONVERSATION_HUB)?
            .id_from_name(conversation_id)?
            .get_stub()?;
        stub.fetch_with_request(hub_request("/publish", &init)?)
            .await
            .map(|_| ())
    }
    .await;
    if let Err(e) = result {
        worker::console_error!(
            "{}",
            json!({"level": "warn", "event": "live.publish_failed", "conversation_id": conversation_id, "error": e.to_string()})
        );
    }
}

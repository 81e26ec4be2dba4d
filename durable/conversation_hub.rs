//! The live feed of one conversation: a Durable Object holding its agents' WebSockets. The
//! worker connects agents (after checking their token and tenant) and publishes events; agents'
//! own `typing` events are relayed to the others. The socket handling (protocol, token expiry,
//! `/close` by the tenant's gate when a session ends) is the shared `live_hub`'s; see there.
//!
//! Client frames: `{"type":"typing"}`, `{"type":"ping"}`.

use serde_json::json;
use worker::{
    durable_object, DurableObject, Env, Request, Response, Result, State, WebSocket,
    WebSocketIncomingMessage,
};

use crate::live_hub;
pub use crate::live_hub::{expired, POLICY_VIOLATION};

#[durable_object]
pub struct ConversationHub {
    state: State,
}

impl DurableObject for ConversationHub {
    fn new(state: State, _env: Env) -> Self {
        Self { state }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        live_hub::fetch(&self.state, req).await
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> Result<()> {
        let WebSocketIncomingMessage::String(text) = message else {
            return Ok(());
        };
        let kind = live_hub::frame_type(&text);
        if live_hub::pong(&ws, kind.as_deref())? {
            return Ok(());
        }
        if kind.as_deref() == Some("typing") {
            let user_id = live_hub::attachment(&ws)
                .map(|a| a.user_id)
                .unwrap_or_default();
            let event = json!({"type": "typing", "user_id": user_id}).to_string();
            for other in self.state.get_websockets() {
                if other != ws {
                    let _ = other.send_with_str(&event);
                }
            }
            return Ok(());
        }
        live_hub::refuse(&ws, r#"{"type":"typing"} or {"type":"ping"}"#)
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        code: usize,
        reason: String,
        _was_clean: bool,
    ) -> Result<()> {
        live_hub::closed(&ws, code, reason);
        Ok(())
    }

    async fn websocket_error(&self, _ws: WebSocket, _error: worker::Error) -> Result<()> {
        Ok(())
    }

    async fn alarm(&self) -> Result<Response> {
        live_hub::close_expired(&self.state).await?;
        Response::empty()
    }
}

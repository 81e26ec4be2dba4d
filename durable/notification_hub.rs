//! The live notification feed of one user (`id_from_name(user_id)`): a Durable Object holding
//! that user's WebSockets (every tab and device), to which `notifications::notify` publishes
//! `{"type": "notification.created", "data": <notification>}`. The socket handling (protocol,
//! token expiry) is the shared `live_hub`'s, the same code the conversation feeds run.
//!
//! Client frames: `{"type":"ping"}`.

use worker::{
    durable_object, DurableObject, Env, Request, Response, Result, State, WebSocket,
    WebSocketIncomingMessage,
};

use crate::live_hub;

#[durable_object]
pub struct NotificationHub {
    state: State,
}

impl DurableObject for NotificationHub {
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
        if live_hub::pong(&ws, live_hub::frame_type(&text).as_deref())? {
            return Ok(());
        }
        live_hub::refuse(&ws, r#"{"type":"ping"}"#)
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

//! The live feed of one conversation: a Durable Object holding its agents' WebSockets through
//! the hibernation API (idle sockets cost nothing). The worker connects agents (after checking
//! their token and tenant) and publishes events; agents' own `typing` events are relayed to the
//! others.
//!
//! Protocol: `GET /connect` with `Upgrade: websocket` and `X-User-Id` → 101; `POST /publish`
//! with a JSON event → `{"delivered": n}`. Client frames: `{"type":"typing"}`, `{"type":"ping"}`.

use serde::{Deserialize, Serialize};
use serde_json::json;
use worker::{
    durable_object, DurableObject, Env, Request, Response, Result, State, WebSocket,
    WebSocketIncomingMessage, WebSocketPair,
};

#[durable_object]
pub struct ConversationHub {
    state: State,
}

#[derive(Serialize, Deserialize)]
struct Attachment {
    user_id: String,
}

impl DurableObject for ConversationHub {
    fn new(state: State, _env: Env) -> Self {
        Self { state }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let path = req.path();
        if path == "/publish" {
            let event: serde_json::Value = req.json().await?;
            let text = event.to_string();
            let mut delivered = 0;
            for ws in self.state.get_websockets() {
                if ws.send_with_str(&text).is_ok() {
                    delivered += 1;
                }
            }
            return Response::from_json(&json!({ "delivered": delivered }));
        }
        if path == "/connect" {
            let user_id = req.headers().get("X-User-Id")?.unwrap_or_default();
            let pair = WebSocketPair::new()?;
            self.state.accept_web_socket(&pair.server);
            pair.server.serialize_attachment(Attachment { user_id })?;
            pair.server
                .send_with_str(json!({"type": "connected"}).to_string())?;
            let response = Response::from_websocket(pair.client)?;
            return match req.headers().get("Sec-WebSocket-Protocol")? {
                Some(protocol) => {
                    let headers = worker::Headers::new();
                    headers.set("Sec-WebSocket-Protocol", &protocol)?;
                    Ok(response.with_headers(headers))
                }
                None => Ok(response),
            };
        }
        Response::error("not found", 404)
    }

    async fn websocket_message(
        &self,
        ws: WebSocket,
        message: WebSocketIncomingMessage,
    ) -> Result<()> {
        let WebSocketIncomingMessage::String(text) = message else {
            return Ok(());
        };
        let kind = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["type"].as_str().map(str::to_string));
        match kind.as_deref() {
            Some("ping") => ws.send_with_str(json!({"type": "pong"}).to_string())?,
            Some("typing") => {
                let user_id = ws
                    .deserialize_attachment::<Attachment>()?
                    .map(|a| a.user_id)
                    .unwrap_or_default();
                let event = json!({"type": "typing", "user_id": user_id}).to_string();
                for other in self.state.get_websockets() {
                    if other != ws {
                        let _ = other.send_with_str(&event);
                    }
                }
            }
            _ => ws.send_with_str(
                json!({"type": "error", "message": "send {\"type\":\"typing\"} or {\"type\":\"ping\"}"})
                    .to_string(),
            )?,
        }
        Ok(())
    }

    async fn websocket_close(
        &self,
        ws: WebSocket,
        code: usize,
        reason: String,
        _was_clean: bool,
    ) -> Result<()> {
        // 1005/1006 are reserved and cannot be sent back.
        let code = if code == 1005 || code == 1006 {
            1000
        } else {
            code
        };
        let _ = ws.close(Some(code as u16), Some(reason));
        Ok(())
    }

    async fn websocket_error(&self, _ws: WebSocket, _error: worker::Error) -> Result<()> {
        Ok(())
    }
}

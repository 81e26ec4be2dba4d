//! The live feed of one conversation: a Durable Object holding its agents' WebSockets through
//! the hibernation API (idle sockets cost nothing). The worker connects agents (after checking
//! their token and tenant) and publishes events; agents' own `typing` events are relayed to the
//! others.
//!
//! Protocol: `GET /connect` with `Upgrade: websocket`, `X-User-Id`, `X-Session-Id` and
//! `X-Expires-Ms` (when the token expires) → 101; `POST /publish` with a JSON event →
//! `{"delivered": n}`; `POST /close` with `{"session_ids": [...], "reason"}` closes those
//! sessions' sockets. Client frames: `{"type":"typing"}`, `{"type":"ping"}`.
//!
//! A socket never outlives its token: the hub's alarm is set for the earliest expiry among its
//! sockets and closes the expired ones with 1008 (policy violation), as does a publish that
//! finds one; `/close` (sent by the tenant's gate when a session ends) closes with 1008 too.

use serde::{Deserialize, Serialize};
use serde_json::json;
use worker::{
    durable_object, Date, DurableObject, Env, Request, Response, Result, ScheduledTime, State,
    WebSocket, WebSocketIncomingMessage, WebSocketPair,
};

#[durable_object]
pub struct ConversationHub {
    state: State,
}

#[derive(Serialize, Deserialize)]
struct Attachment {
    user_id: String,
    #[serde(default)]
    session_id: String,
    /// When the token the socket was opened with expires (epoch ms).
    #[serde(default = "never")]
    expires_ms: i64,
}

fn never() -> i64 {
    i64::MAX
}

/// Closes with 1008: the socket's authorisation is over.
pub const POLICY_VIOLATION: u16 = 1008;

#[derive(Deserialize)]
struct Close {
    session_ids: Vec<String>,
    reason: String,
}

fn attachment(ws: &WebSocket) -> Option<Attachment> {
    ws.deserialize_attachment::<Attachment>().ok().flatten()
}

/// Whether a socket's token has expired at `now_ms`.
pub fn expired(expires_ms: i64, now_ms: i64) -> bool {
    expires_ms <= now_ms
}

impl ConversationHub {
    /// Closes the sockets whose token expired; arms the alarm for the next expiry.
    async fn close_expired(&self) -> Result<()> {
        let now = Date::now().as_millis() as i64;
        let mut next: Option<i64> = None;
        for ws in self.state.get_websockets() {
            let Some(a) = attachment(&ws) else { continue };
            if expired(a.expires_ms, now) {
                let _ = ws.close(Some(POLICY_VIOLATION), Some("token expired"));
            } else if a.expires_ms != i64::MAX {
                next = Some(next.map_or(a.expires_ms, |n| n.min(a.expires_ms)));
            }
        }
        if let Some(at) = next {
            self.arm(at).await?;
        }
        Ok(())
    }

    async fn arm(&self, at_ms: i64) -> Result<()> {
        let storage = self.state.storage();
        let current = storage.get_alarm().await?;
        if current.is_none_or(|c| c > at_ms) {
            let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(at_ms as f64));
            storage.set_alarm(ScheduledTime::new(date)).await?;
        }
        Ok(())
    }
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
            let now = Date::now().as_millis() as i64;
            let mut delivered = 0;
            for ws in self.state.get_websockets() {
                // An expired socket gets nothing more, even if the alarm has not run yet.
                if attachment(&ws).is_some_and(|a| expired(a.expires_ms, now)) {
                    let _ = ws.close(Some(POLICY_VIOLATION), Some("token expired"));
                    continue;
                }
                if ws.send_with_str(&text).is_ok() {
                    delivered += 1;
                }
            }
            return Response::from_json(&json!({ "delivered": delivered }));
        }
        if path == "/close" {
            let close: Close = req.json().await?;
            let mut closed = 0;
            for ws in self.state.get_websockets() {
                if attachment(&ws).is_some_and(|a| close.session_ids.contains(&a.session_id)) {
                    let _ = ws.close(Some(POLICY_VIOLATION), Some(close.reason.as_str()));
                    closed += 1;
                }
            }
            return Response::from_json(&json!({ "closed": closed }));
        }
        if path == "/connect" {
            let header = |name: &str| req.headers().get(name).ok().flatten().unwrap_or_default();
            let user_id = header("X-User-Id");
            let session_id = header("X-Session-Id");
            let expires_ms = header("X-Expires-Ms").parse::<i64>().unwrap_or(i64::MAX);
            let pair = WebSocketPair::new()?;
            self.state.accept_web_socket(&pair.server);
            pair.server.serialize_attachment(Attachment {
                user_id,
                session_id,
                expires_ms,
            })?;
            if expires_ms != i64::MAX {
                self.arm(expires_ms).await?;
            }
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

    async fn alarm(&self) -> Result<Response> {
        self.close_expired().await?;
        Response::empty()
    }
}

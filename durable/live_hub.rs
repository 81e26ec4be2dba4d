//! What every live-feed Durable Object shares: WebSockets held through the hibernation API
//! (idle sockets cost nothing), each tagged with the user, session and token expiry it was
//! opened with. `ConversationHub` (one per conversation) and `NotificationHub` (one per user)
//! are thin shells over these functions and differ only in the client frames they accept.
//!
//! Protocol: `GET /connect` with `Upgrade: websocket`, `X-User-Id`, `X-Session-Id` and
//! `X-Expires-Ms` (when the token expires) → 101 and a first `{"type":"connected"}` frame;
//! `POST /publish` with a JSON event → `{"delivered": n}`; `POST /close` with
//! `{"session_ids": [...], "reason"}` closes those sessions' sockets.
//!
//! A socket never outlives its token: the hub's alarm is set for the earliest expiry among its
//! sockets and closes the expired ones with 1008 (policy violation), as does a publish that
//! finds one.

use serde::{Deserialize, Serialize};
use serde_json::json;
use worker::{Date, Request, Response, Result, ScheduledTime, State, WebSocket, WebSocketPair};

/// Closes with 1008: the socket's authorisation is over.
pub const POLICY_VIOLATION: u16 = 1008;

#[derive(Serialize, Deserialize)]
pub struct Attachment {
    pub user_id: String,
    #[serde(default)]
    pub session_id: String,
    /// When the token the socket was opened with expires (epoch ms).
    #[serde(default = "never")]
    pub expires_ms: i64,
}

fn never() -> i64 {
    i64::MAX
}

#[derive(Deserialize)]
struct Close {
    session_ids: Vec<String>,
    reason: String,
}

pub fn attachment(ws: &WebSocket) -> Option<Attachment> {
    ws.deserialize_attachment::<Attachment>().ok().flatten()
}

/// Whether a socket's token has expired at `now_ms`.
pub fn expired(expires_ms: i64, now_ms: i64) -> bool {
    expires_ms <= now_ms
}

/// Answers the hub protocol's `/connect`, `/publish` and `/close`; anything else is 404.
pub async fn fetch(state: &State, mut req: Request) -> Result<Response> {
    match req.path().as_str() {
        "/publish" => {
            let event: serde_json::Value = req.json().await?;
            Response::from_json(&json!({ "delivered": publish(state, &event.to_string()) }))
        }
        "/close" => {
            let close: Close = req.json().await?;
            let mut closed = 0;
            for ws in state.get_websockets() {
                if attachment(&ws).is_some_and(|a| close.session_ids.contains(&a.session_id)) {
                    let _ = ws.close(Some(POLICY_VIOLATION), Some(close.reason.as_str()));
                    closed += 1;
                }
            }
            Response::from_json(&json!({ "closed": closed }))
        }
        "/connect" => connect(state, &req).await,
        _ => Response::error("not found", 404),
    }
}

/// Sends `text` to every socket whose token is still valid; returns how many got it.
pub fn publish(state: &State, text: &str) -> usize {
    let now = Date::now().as_millis() as i64;
    let mut delivered = 0;
    for ws in state.get_websockets() {
        // An expired socket gets nothing more, even if the alarm has not run yet.
        if attachment(&ws).is_some_and(|a| expired(a.expires_ms, now)) {
            let _ = ws.close(Some(POLICY_VIOLATION), Some("token expired"));
            continue;
        }
        if ws.send_with_str(text).is_ok() {
            delivered += 1;
        }
    }
    delivered
}

async fn connect(state: &State, req: &Request) -> Result<Response> {
    let header = |name: &str| req.headers().get(name).ok().flatten().unwrap_or_default();
    let user_id = header("X-User-Id");
    let session_id = header("X-Session-Id");
    let expires_ms = header("X-Expires-Ms").parse::<i64>().unwrap_or(i64::MAX);
    let pair = WebSocketPair::new()?;
    state.accept_web_socket(&pair.server);
    pair.server.serialize_attachment(Attachment {
        user_id,
        session_id,
        expires_ms,
    })?;
    if expires_ms != i64::MAX {
        arm(state, expires_ms).await?;
    }
    pair.server
        .send_with_str(json!({"type": "connected"}).to_string())?;
    let response = Response::from_websocket(pair.client)?;
    match req.headers().get("Sec-WebSocket-Protocol")? {
        Some(protocol) => {
            let headers = worker::Headers::new();
            headers.set("Sec-WebSocket-Protocol", &protocol)?;
            Ok(response.with_headers(headers))
        }
        None => Ok(response),
    }
}

/// The alarm's work: closes the sockets whose token expired; arms the alarm for the next expiry.
pub async fn close_expired(state: &State) -> Result<()> {
    let now = Date::now().as_millis() as i64;
    let mut next: Option<i64> = None;
    for ws in state.get_websockets() {
        let Some(a) = attachment(&ws) else { continue };
        if expired(a.expires_ms, now) {
            let _ = ws.close(Some(POLICY_VIOLATION), Some("token expired"));
        } else if a.expires_ms != i64::MAX {
            next = Some(next.map_or(a.expires_ms, |n| n.min(a.expires_ms)));
        }
    }
    if let Some(at) = next {
        arm(state, at).await?;
    }
    Ok(())
}

async fn arm(state: &State, at_ms: i64) -> Result<()> {
    let storage = state.storage();
    let current = storage.get_alarm().await?;
    if current.is_none_or(|c| c > at_ms) {
        let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(at_ms as f64));
        storage.set_alarm(ScheduledTime::new(date)).await?;
    }
    Ok(())
}

/// Answers a client's `{"type":"ping"}` with `{"type":"pong"}`; returns whether it was one.
pub fn pong(ws: &WebSocket, kind: Option<&str>) -> Result<bool> {
    if kind == Some("ping") {
        ws.send_with_str(json!({"type": "pong"}).to_string())?;
        return Ok(true);
    }
    Ok(false)
}

/// The `type` of a client's text frame, if it is a JSON object with one.
pub fn frame_type(text: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v["type"].as_str().map(str::to_string))
}

/// Tells a client which frames the hub accepts.
pub fn refuse(ws: &WebSocket, accepted: &str) -> Result<()> {
    ws.send_with_str(json!({"type": "error", "message": format!("send {accepted}")}).to_string())
}

/// Completes the closing handshake a client started.
pub fn closed(ws: &WebSocket, code: usize, reason: String) {
    // 1005/1006 are reserved and cannot be sent back.
    let code = if code == 1005 || code == 1006 {
        1000
    } else {
        code
    };
    let _ = ws.close(Some(code as u16), Some(reason));
}

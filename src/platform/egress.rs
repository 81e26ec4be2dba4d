//! Outbound calls, shared by everything that calls out (workflow steps, callbacks, sends, OCR):
//! one request with a deadline, and the backoff between attempts.

use std::time::Duration;

use futures_util::future::{select, Either};
use worker::{AbortController, Delay, Fetch, Request};

/// Seconds before retry `attempt + 1` of a failed call: 2, 4, 8, …
pub fn backoff_secs(attempt: i64) -> u32 {
    2u32.saturating_pow(attempt.clamp(1, 10) as u32)
}

/// Sends a request and reads its body as text, giving up after `timeout`.
pub async fn fetch_text(
    request: Request,
    timeout: Duration,
) -> std::result::Result<(u16, String), String> {
    let controller = AbortController::default();
    let signal = controller.signal();
    let call = async move {
        let mut resp = Fetch::Request(request)
            .send_with_signal(&signal)
            .await
            .map_err(|e| e.to_string())?;
        let text = resp.text().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((resp.status_code(), text))
    };
    let call = std::pin::pin!(call);
    let timer = std::pin::pin!(Delay::from(timeout));
    match select(call, timer).await {
        Either::Left((result, _)) => result,
        Either::Right(_) => {
            controller.abort();
            Err(format!("no answer within {} s", timeout.as_secs()))
        }
    }
}

/// `fetch_text` for binary answers (inbound media): the status, the `Content-Type` and the
/// bytes, refused beyond `max_bytes` (by `Content-Length` when given, else once read).
pub async fn fetch_bytes(
    request: Request,
    timeout: Duration,
    max_bytes: u64,
) -> std::result::Result<(u16, String, Vec<u8>), String> {
    let controller = AbortController::default();
    let signal = controller.signal();
    let call = async move {
        let mut resp = Fetch::Request(request)
            .send_with_signal(&signal)
            .await
            .map_err(|e| e.to_string())?;
        let headers = resp.headers();
        let content_type = headers
            .get("Content-Type")
            .ok()
            .flatten()
            .unwrap_or_default();
        let length = headers
            .get("Content-Length")
            .ok()
            .flatten()
            .and_then(|l| l.parse::<u64>().ok());
        if length.is_some_and(|l| l > max_bytes) {
            return Err(format!("the file is larger than {max_bytes} bytes"));
        }
        let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
        if bytes.len() as u64 > max_bytes {
            return Err(format!("the file is larger than {max_bytes} bytes"));
        }
        Ok::<_, String>((resp.status_code(), content_type, bytes))
    };
    let call = std::pin::pin!(call);
    let timer = std::pin::pin!(Delay::from(timeout));
    match select(call, timer).await {
        Either::Left((result, _)) => result,
        Either::Right(_) => {
            controller.abort();
            Err(format!("no answer within {} s", timeout.as_secs()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_two_seconds_and_stops_growing() {
        assert_eq!(
            (backoff_secs(1), backoff_secs(2), backoff_secs(3)),
            (2, 4, 8)
        );
        assert_eq!(backoff_secs(0), 2);
        assert_eq!(backoff_secs(50), backoff_secs(10));
    }
}

//! Rate limiting: the sliding-window-counter arithmetic (pure), the Durable Object protocol,
//! and the typed client callers use. One object per key serialises its requests, so counts are
//! exact under concurrency.

use std::cell::Cell;

use serde::{Deserialize, Serialize};
use worker::{Env, SqlStorage};

use super::bindings;
use crate::platform::error::{AppError, Result};

/// Stored per key: the current aligned window and the counts of it and the one before.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct WindowState {
    pub window_start_ms: i64,
    pub count: u32,
    pub prev_count: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CheckRequest {
    pub limit: u32,
    pub window_ms: i64,
    /// 0 peeks without consuming.
    pub cost: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the current window ends.
    pub reset_secs: u64,
    /// Seconds until a request of this cost would be allowed (0 when allowed).
    pub retry_after_secs: u64,
}

impl Decision {
    /// What a caller goes on with when the limiter cannot be reached (it logs why): let the
    /// request through, so an outage of the limiter does not take the API down.
    pub fn fail_open(limit: u32, window_secs: u64) -> Decision {
        Decision {
            allowed: true,
            limit,
            remaining: limit,
            reset_secs: window_secs,
            retry_after_secs: 0,
        }
    }
}

/// Creates the one-row table an object keeps its sliding window in (idempotent).
pub fn create_window_table(sql: &SqlStorage) -> worker::Result<()> {
    sql.exec(
        "CREATE TABLE IF NOT EXISTS window (id INTEGER PRIMARY KEY CHECK (id = 1), \
         window_start_ms INTEGER NOT NULL, count INTEGER NOT NULL, prev_count INTEGER NOT NULL)",
        None,
    )?;
    Ok(())
}

/// Draws from the window an object keeps in its SQL storage. The calls are synchronous and
/// nothing is awaited between the read and the write, so concurrent requests to the object
/// cannot lose updates.
pub fn check_stored(
    sql: &SqlStorage,
    now_ms: i64,
    check: CheckRequest,
) -> worker::Result<Decision> {
    let current: Vec<WindowState> = sql
        .exec(
            "SELECT window_start_ms, count, prev_count FROM window WHERE id = 1",
            None,
        )?
        .to_array()?;
    let (next, decision) = decide(
        current.into_iter().next().unwrap_or_default(),
        now_ms,
        check,
    );
    sql.exec(
        "INSERT INTO window (id, window_start_ms, count, prev_count) VALUES (1, ?, ?, ?) \
         ON CONFLICT(id) DO UPDATE SET window_start_ms = excluded.window_start_ms, \
         count = excluded.count, prev_count = excluded.prev_count",
        vec![
            next.window_start_ms.into(),
            (next.count as i64).into(),
            (next.prev_count as i64).into(),
        ],
    )?;
    Ok(decision)
}

/// Gives back `refund.refund` to the window an object keeps in its SQL storage (synchronous,
/// like `check_stored`).
pub fn refund_stored(sql: &SqlStorage, now_ms: i64, req: RefundRequest) -> worker::Result<()> {
    let current: Vec<WindowState> = sql
        .exec(
            "SELECT window_start_ms, count, prev_count FROM window WHERE id = 1",
            None,
        )?
        .to_array()?;
    let Some(state) = current.into_iter().next() else {
        return Ok(());
    };
    let next = refund(state, now_ms, req);
    sql.exec(
        "UPDATE window SET count = ?, prev_count = ? WHERE id = 1",
        vec![(next.count as i64).into(), (next.prev_count as i64).into()],
    )?;
    Ok(())
}

/// Cloudflare-style sliding window counter: the previous window's count weighted by how much
/// of it still overlaps the sliding window, plus the current window's count.
pub fn decide(state: WindowState, now_ms: i64, req: CheckRequest) -> (WindowState, Decision) {
    let w = req.window_ms.max(1);
    let start = now_ms - now_ms.rem_euclid(w);
    let mut s = if state.window_start_ms == start {
        state
    } else if state.window_start_ms == start - w {
        WindowState {
            window_start_ms: start,
            count: 0,
            prev_count: state.count,
        }
    } else {
        WindowState {
            window_start_ms: start,
            count: 0,
            prev_count: 0,
        }
    };
    let elapsed = (now_ms - start) as f64;
    let weight = 1.0 - elapsed / w as f64;
    let used = s.prev_count as f64 * weight + s.count as f64;
    let limit = req.limit as f64;
    let allowed = used + req.cost as f64 <= limit;
    if allowed {
        s.count += req.cost;
    }
    let used_after = s.prev_count as f64 * weight + s.count as f64;
    let remaining = (limit - used_after).floor().max(0.0) as u32;
    let reset_secs = ((start + w - now_ms) as f64 / 1000.0).ceil() as u64;
    let retry_after_secs = if allowed {
        0
    } else {
        retry_after(&s, now_ms, start, w, req).max(1)
    };
    (
        s,
        Decision {
            allowed,
            limit: req.limit,
            remaining,
            reset_secs,
            retry_after_secs,
        },
    )
}

/// When the request would fit: either once the previous window's weight has decayed enough,
/// or at the start of the next window (when the current count alone is too high).
fn retry_after(s: &WindowState, now_ms: i64, start: i64, w: i64, req: CheckRequest) -> u64 {
    let room = req.limit as f64 - s.count as f64 - req.cost as f64;
    let wait_ms = if room >= 0.0 && s.prev_count > 0 {
        // prev * (1 - (elapsed + t)/w) <= room  =>  t >= w * (1 - room/prev) - elapsed
        let t = w as f64 * (1.0 - room / s.prev_count as f64) - (now_ms - start) as f64;
        t.max(0.0)
    } else {
        // The next window starts with this window's count as its weighted past.
        let next_room = req.limit as f64 - req.cost as f64;
        let to_next = (start + w - now_ms) as f64;
        if s.count == 0 || next_room >= s.count as f64 {
            to_next
        } else {
            to_next + w as f64 * (1.0 - next_room / s.count as f64)
        }
    };
    (wait_ms / 1000.0).ceil() as u64
}

/// A token bucket (for pacing sends): refills `rate_per_sec` tokens a second up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct BucketState {
    pub tokens: f64,
    pub updated_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TakeRequest {
    pub rate_per_sec: f64,
    pub burst: f64,
    pub cost: f64,
    /// When the tokens are not there: book them anyway (the bucket goes into debt) and answer
    /// when they will have been earned, so a paced caller waits once for its own slot instead
    /// of asking again and again.
    #[serde(default)]
    pub reserve: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Take {
    pub allowed: bool,
    /// How long until `cost` tokens are there (0 when allowed).
    pub wait_ms: i64,
    /// Not allowed now, but booked: the caller may go after `wait_ms` without taking again.
    #[serde(default)]
    pub reserved: bool,
}

/// Gives back what an earlier check drew (a reservation that turned out not to count, e.g. a
/// log-in whose password was right).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    pub window_ms: i64,
    pub refund: u32,
}

/// What the limiter object is asked: a sliding-window check, a refund, or a bucket take.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LimiterRequest {
    Take(TakeRequest),
    Refund(RefundRequest),
    Check(CheckRequest),
}

/// Undoes a draw: from the current window, or from the previous one when the draw was made
/// there and the window has turned since. Never below zero.
pub fn refund(state: WindowState, now_ms: i64, req: RefundRequest) -> WindowState {
    let w = req.window_ms.max(1);
    let start = now_ms - now_ms.rem_euclid(w);
    let mut s = state;
    if s.window_start_ms == start {
        let from_current = s.count.min(req.refund);
        s.count -= from_current;
        s.prev_count = s.prev_count.saturating_sub(req.refund - from_current);
    } else if s.window_start_ms == start - w {
        // The draw was counted in what is now the previous window.
        s.count = s.count.saturating_sub(req.refund);
    }
    s
}

/// Refills by the time passed, then takes `cost` tokens if there are enough. A new bucket
/// (`updated_ms == 0`) starts full.
pub fn take(state: BucketState, now_ms: i64, req: TakeRequest) -> (BucketState, Take) {
    let rate = req.rate_per_sec.max(0.001);
    let burst = req.burst.max(1.0);
    let tokens = if state.updated_ms == 0 {
        burst
    } else {
        let elapsed = (now_ms - state.updated_ms).max(0) as f64 / 1000.0;
        (state.tokens + elapsed * rate).min(burst)
    };
    if tokens >= req.cost {
        (
            BucketState {
                tokens: tokens - req.cost,
                updated_ms: now_ms,
            },
            Take {
                allowed: true,
                wait_ms: 0,
                reserved: false,
            },
        )
    } else if req.reserve {
        let left = tokens - req.cost;
        (
            BucketState {
                tokens: left,
                updated_ms: now_ms,
            },
            Take {
                allowed: false,
                wait_ms: (-left / rate * 1000.0).ceil() as i64,
                reserved: true,
            },
        )
    } else {
        let wait_ms = ((req.cost - tokens) / rate * 1000.0).ceil() as i64;
        (
            BucketState {
                tokens,
                updated_ms: now_ms,
            },
            Take {
                allowed: false,
                wait_ms,
                reserved: false,
            },
        )
    }
}

async fn call_limiter<T: serde::de::DeserializeOwned>(
    env: &Env,
    key: &str,
    req: &LimiterRequest,
) -> Result<T> {
    let ns = env.durable_object(bindings::RATE_LIMITER)?;
    let stub = ns.id_from_name(key)?.get_stub()?;
    let body = serde_json::to_string(req)?;
    let mut init = worker::RequestInit::new();
    init.with_method(worker::Method::Post)
        .with_body(Some(body.into()));
    let request = worker::Request::new_with_init("https://rate-limiter/check", &init)?;
    let mut response = stub.fetch_with_request(request).await?;
    if response.status_code() != 200 {
        return Err(AppError::Internal(format!(
            "rate limiter answered {}",
            response.status_code()
        )));
    }
    Ok(response.json::<T>().await?)
}

/// A booked pacing slot this close ahead counts as reached (queue delays are whole seconds).
const SLOT_SLACK_MS: i64 = 250;

/// Where a paced job (a send, a batch item) stands with its bucket.
#[derive(Debug, PartialEq, Eq)]
pub enum Pace {
    /// Go now.
    Go,
    /// Wait: re-schedule with this delay (seconds), booked for the slot (epoch ms).
    Wait { delay_secs: u32, slot_ms: i64 },
}

/// Decides from the job's booked slot (if any) and, when there is none, the bucket's answer.
pub fn pace(now_ms: i64, booked: Option<i64>, take: Option<Take>) -> Pace {
    let wait = |slot_ms: i64| Pace::Wait {
        delay_secs: ((slot_ms - now_ms + 999) / 1000).clamp(1, 43_200) as u32,
        slot_ms,
    };
    if let Some(slot) = booked {
        return if now_ms + SLOT_SLACK_MS >= slot {
            Pace::Go
        } else {
            wait(slot)
        };
    }
    match take {
        Some(t) if !t.allowed && t.wait_ms > SLOT_SLACK_MS => wait(now_ms + t.wait_ms),
        // Allowed, a slot about to come, or the limiter unavailable (fail open).
        _ => Pace::Go,
    }
}

/// Takes tokens from the bucket `key`.
pub async fn take_tokens(env: &Env, key: &str, req: TakeRequest) -> Result<Take> {
    call_limiter(env, key, &LimiterRequest::Take(req)).await
}

/// Calls the limiter object for `key`. Transport failures fail open (and are logged), so an
/// outage of the limiter does not take the API down.
pub async fn check(env: &Env, key: &str, req: CheckRequest) -> Result<Decision> {
    call_limiter(env, key, &LimiterRequest::Check(req)).await
}

/// Gives back `amount` drawn from `key` earlier in a window of `window_secs`. Best effort: a
/// refund that does not arrive leaves the budget spent (logged), never larger than configured.
pub async fn refund_draw(env: &Env, key: &str, window_secs: u32, amount: u32) {
    let req = LimiterRequest::Refund(RefundRequest {
        window_ms: window_secs as i64 * 1000,
        refund: amount,
    });
    if let Err(e) = call_limiter::<serde_json::Value>(env, key, &req).await {
        worker::console_error!("rate limiter refund failed: {e}");
    }
}

/// Draws `cost` from the limiter object `key`. Fails open (logged) when the limiter is
/// unreachable: its outage must not take the API down.
pub async fn draw(env: &Env, key: &str, limit: u32, window_secs: u32, cost: u32) -> Decision {
    let req = CheckRequest {
        limit,
        window_ms: window_secs as i64 * 1000,
        cost,
    };
    match check(env, key, req).await {
        Ok(d) => d,
        Err(e) => {
            worker::console_error!("rate limiter unavailable: {e}");
            Decision::fail_open(limit, window_secs as u64)
        }
    }
}

/// Draws like `draw` and notes the decision for the response headers.
pub async fn draw_noted(
    env: &Env,
    note: &Cell<Option<Decision>>,
    key: &str,
    limit: u32,
    window_secs: u32,
    cost: u32,
) -> Decision {
    let d = draw(env, key, limit, window_secs, cost).await;
    note.set(Some(d));
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_starts_full_paces_a_burst_and_refills() {
        let req = TakeRequest {
            rate_per_sec: 2.0,
            burst: 2.0,
            cost: 1.0,
            reserve: false,
        };
        let (s, t1) = take(BucketState::default(), 1_000, req);
        let (s, t2) = take(s, 1_000, req);
        let (s, t3) = take(s, 1_000, req);
        assert!(t1.allowed && t2.allowed);
        assert_eq!(
            t3,
            Take {
                allowed: false,
                wait_ms: 500,
                reserved: false,
            }
        );
        let (s, t4) = take(s, 1_500, req);
        assert!(t4.allowed);
        let (_, t5) = take(s, 10_000, TakeRequest { cost: 3.0, ..req });
        assert!(!t5.allowed, "never more than the burst");
    }

    #[test]
    fn reserving_books_consecutive_slots_at_the_rate() {
        let req = TakeRequest {
            rate_per_sec: 2.0,
            burst: 2.0,
            cost: 1.0,
            reserve: true,
        };
        let mut s = BucketState::default();
        let mut waits = Vec::new();
        for _ in 0..6 {
            let (next, t) = take(s, 1_000, req);
            assert!(t.allowed || t.reserved);
            waits.push(t.wait_ms);
            s = next;
        }
        // Two from the burst, then one slot every 500 ms.
        assert_eq!(waits, [0, 0, 500, 1000, 1500, 2000]);
        // The debt is paid back by time: 2 s later the next booking waits 500 ms again.
        let (_, t) = take(s, 3_000, req);
        assert_eq!((t.reserved, t.wait_ms), (true, 500));
    }

    #[test]
    fn limiter_requests_are_told_apart_by_their_fields() {
        let take: LimiterRequest =
            serde_json::from_str(r#"{"rate_per_sec":80,"burst":80,"cost":1}"#).unwrap();
        assert!(matches!(take, LimiterRequest::Take(_)));
        let check: LimiterRequest =
            serde_json::from_str(r#"{"limit":5,"window_ms":1000,"cost":1}"#).unwrap();
        assert!(matches!(check, LimiterRequest::Check(_)));
        let refund: LimiterRequest =
            serde_json::from_str(r#"{"window_ms":1000,"refund":1}"#).unwrap();
        assert!(matches!(refund, LimiterRequest::Refund(_)));
    }

    #[test]
    fn a_refund_gives_back_a_draw_in_this_window_or_the_last() {
        let t0 = 10 * MIN;
        let (s, _) = decide(WindowState::default(), t0, req(5));
        let (s, _) = decide(s, t0 + 1, req(5));
        assert_eq!(s.count, 2);
        let back = RefundRequest {
            window_ms: MIN,
            refund: 1,
        };
        assert_eq!(refund(s, t0 + 2, back).count, 1);
        // The window turned: the draw now sits in the previous count.
        let (rolled, _) = decide(s, t0 + MIN + 5, CheckRequest { cost: 0, ..req(5) });
        let r = refund(rolled, t0 + MIN + 6, back);
        assert_eq!((r.count, r.prev_count), (0, 1));
        // Never below zero, and a stale state two windows back is left alone.
        let zero = refund(WindowState::default(), t0, back);
        assert_eq!((zero.count, zero.prev_count), (0, 0));
        assert_eq!(refund(s, t0 + 3 * MIN, back), s);
    }

    #[test]
    fn reserve_then_refund_counts_only_failures_under_any_interleaving() {
        // Twenty concurrent attempts reserve before checking the password: five get through,
        // and the refunds of successes make room again for later ones.
        let t0 = 10 * MIN;
        let mut s = WindowState::default();
        let allowed = (0..20)
            .filter(|i| {
                let (ns, d) = decide(s, t0 + i, req(5));
                s = ns;
                d.allowed
            })
            .count();
        assert_eq!(allowed, 5);
        let back = RefundRequest {
            window_ms: MIN,
            refund: 1,
        };
        s = refund(s, t0 + 30, back);
        assert!(decide(s, t0 + 31, req(5)).1.allowed);
    }

    const MIN: i64 = 60_000;

    fn req(limit: u32) -> CheckRequest {
        CheckRequest {
            limit,
            window_ms: MIN,
            cost: 1,
        }
    }

    #[test]
    fn allows_up_to_the_limit_then_refuses() {
        let mut s = WindowState::default();
        let t0 = 10 * MIN;
        for i in 0..5 {
            let (ns, d) = decide(s, t0 + i, req(5));
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 4 - i as u32);
            s = ns;
        }
        let (_, d) = decide(s, t0 + 10, req(5));
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        assert!(d.retry_after_secs >= 1 && d.retry_after_secs <= 120);
        assert_eq!(d.reset_secs, 60);
    }

    #[test]
    fn previous_window_weighs_by_overlap() {
        let t0 = 10 * MIN;
        let s = WindowState {
            window_start_ms: t0,
            count: 10,
            prev_count: 0,
        };
        // Half-way through the next window, half of the previous 10 still count.
        let (_, d) = decide(s, t0 + MIN + MIN / 2, req(10));
        assert!(d.allowed);
        assert_eq!(d.remaining, 4);
        // Two windows later, nothing counts.
        let (_, d) = decide(s, t0 + 3 * MIN, req(10));
        assert_eq!(d.remaining, 9);
    }

    #[test]
    fn peeking_consumes_nothing() {
        let s = WindowState::default();
        let peek = CheckRequest { cost: 0, ..req(1) };
        let (s2, d) = decide(s, MIN, peek);
        assert!(d.allowed);
        assert_eq!(s2.count, 0);
        let (s3, _) = decide(s2, MIN, req(1));
        let (_, d) = decide(s3, MIN, peek);
        assert!(d.allowed, "a peek at a full window still fits at cost 0");
        assert_eq!(d.remaining, 0);
    }

    #[test]
    fn refused_requests_do_not_count() {
        let mut s = WindowState::default();
        for _ in 0..3 {
            s = decide(s, MIN, req(1)).0;
        }
        assert_eq!(s.count, 1);
    }
}

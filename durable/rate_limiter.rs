//! The rate-limiter Durable Object: one instance per key (an auth budget's client IP + e-mail
//! or user, or a WhatsApp number's send bucket; tenants' API budgets live in `TenantGate`). It answers sliding-window checks and refunds, and token-bucket takes.
//! Its SQL storage calls are synchronous, so each read-modify-write below runs without an
//! `await` in between and concurrent requests cannot lose updates.

use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use crate::platform::clock;
use crate::platform::ratelimit::{
    check_stored, create_window_table, refund_stored, take, BucketState, CheckRequest,
    LimiterRequest, TakeRequest,
};

#[durable_object]
pub struct RateLimiter {
    state: State,
}

impl DurableObject for RateLimiter {
    fn new(state: State, _env: Env) -> Self {
        create_window_table(&state.storage().sql()).ok();
        state
            .storage()
            .sql()
            .exec(
                "CREATE TABLE IF NOT EXISTS bucket (id INTEGER PRIMARY KEY CHECK (id = 1), \
                 tokens REAL NOT NULL, updated_ms INTEGER NOT NULL)",
                None,
            )
            .ok();
        Self { state }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        match req.json::<LimiterRequest>().await {
            Ok(LimiterRequest::Check(c)) => self.check(c),
            Ok(LimiterRequest::Take(t)) => self.take(t),
            Ok(LimiterRequest::Refund(r)) => {
                refund_stored(&self.state.storage().sql(), clock::now_ms(), r)?;
                Response::from_json(&serde_json::json!({"refunded": r.refund}))
            }
            Err(_) => Response::error("bad limiter request", 400),
        }
    }
}

impl RateLimiter {
    fn take(&self, req: TakeRequest) -> Result<Response> {
        let sql = self.state.storage().sql();
        let current: Vec<BucketState> = sql
            .exec("SELECT tokens, updated_ms FROM bucket WHERE id = 1", None)?
            .to_array()?;
        let (next, decision) = take(
            current.into_iter().next().unwrap_or_default(),
            clock::now_ms(),
            req,
        );
        sql.exec(
            "INSERT INTO bucket (id, tokens, updated_ms) VALUES (1, ?, ?) \
             ON CONFLICT(id) DO UPDATE SET tokens = excluded.tokens, updated_ms = excluded.updated_ms",
            vec![next.tokens.into(), next.updated_ms.into()],
        )?;
        Response::from_json(&decision)
    }

    fn check(&self, check: CheckRequest) -> Result<Response> {
        let decision = check_stored(&self.state.storage().sql(), clock::now_ms(), check)?;
        Response::from_json(&decision)
    }
}

//! The tenant gate Durable Object: one instance per tenant (`id_from_name(tenant_id)`). It admits
//! session tokens from a cache of that tenant's users, sessions and tenant row (filled from D1 on
//! a miss, cleared by the writes that change them) and keeps the tenant's API rate window, so an
//! authenticated request costs one call before its handler. The decisions are in
//! `auth::gate`; this is the shell that holds the state.

use std::cell::RefCell;

use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use crate::auth::gate::{self, Admit, Cache, GateRequest, TENANT_WINDOW_MS};
use crate::platform::clock;
use crate::platform::db::Db;
use crate::platform::ratelimit::{check_stored, create_window_table, CheckRequest, Decision};

#[durable_object]
pub struct TenantGate {
    state: State,
    env: Env,
    /// In memory only: an evicted or restarted object starts empty and refills from D1.
    cache: RefCell<Cache>,
}

impl DurableObject for TenantGate {
    fn new(state: State, env: Env) -> Self {
        create_window_table(&state.storage().sql()).ok();
        Self {
            state,
            env,
            cache: RefCell::new(Cache::default()),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        match req.json::<GateRequest>().await {
            Ok(GateRequest::Admit(a)) => self.admit(a).await,
            Ok(GateRequest::Draw(d)) => Response::from_json(&self.draw(d.limit, d.cost)?),
            Ok(GateRequest::Invalidate { scope }) => {
                self.cache.borrow_mut().invalidate(&scope);
                Ok(Response::empty()?.with_status(204))
            }
            Err(_) => Response::error("bad gate request", 400),
        }
    }
}

impl TenantGate {
    async fn admit(&self, a: Admit) -> Result<Response> {
        let now_ms = clock::now_ms();
        // No borrow of the cache is held across the D1 await: other requests run meanwhile.
        let cached = self
            .cache
            .borrow()
            .lookup(&a.user_id, &a.session_id, now_ms);
        let loaded = match cached {
            Some(hit) => Some(hit),
            None => {
                let fill = self.cache.borrow().begin_fill();
                let db = Db::from_env(&self.env).map_err(to_worker)?;
                let loaded = gate::load(&db, &a.tenant_id, &a.user_id, &a.session_id)
                    .await
                    .map_err(to_worker)?;
                if let Some(l) = &loaded {
                    // Aged from when the read started: that is how old what it saw may be.
                    self.cache
                        .borrow_mut()
                        .finish_fill(fill, &a.tenant_id, l, now_ms);
                }
                loaded
            }
        };
        let answer = gate::admission(loaded, &a, clock::now_ms(), |limit, cost| {
            self.draw(limit, cost).map_err(Into::into)
        })
        .map_err(to_worker)?;
        Response::from_json(&answer)
    }

    fn draw(&self, limit: u32, cost: u32) -> Result<Decision> {
        check_stored(
            &self.state.storage().sql(),
            clock::now_ms(),
            CheckRequest {
                limit,
                window_ms: TENANT_WINDOW_MS,
                cost,
            },
        )
    }
}

fn to_worker(e: crate::platform::error::AppError) -> worker::Error {
    worker::Error::RustError(e.to_string())
}

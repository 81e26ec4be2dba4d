//! The tenant gate Durable Object: one instance per tenant (`id_from_name(tenant_id)`). It admits
//! session tokens from a cache of that tenant's users, sessions and tenant row (filled from D1 on
//! a miss, cleared by the writes that change them) and keeps the tenant's API rate window, so an
//! authenticated request costs one call before its handler. The decisions are in
//! `auth::gate`; this is the shell that holds the state. It also remembers the tenant's live
//! WebSockets (per session, in its SQL storage): an invalidation re-checks the sockets it may
//! end and has their conversation hubs close the ones that may no longer stay
//! (`messaging::live::may_stay`).

use std::cell::RefCell;

use worker::{durable_object, DurableObject, Env, Request, Response, Result, State};

use serde::Deserialize;

use crate::auth::gate::{self, Admit, Cache, GateRequest, LiveSocket, Scope, TENANT_WINDOW_MS};
use crate::messaging::live;
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
        state
            .storage()
            .sql()
            .exec(
                "CREATE TABLE IF NOT EXISTS live_sockets (tenant_id TEXT NOT NULL, conversation_id TEXT NOT NULL, \
                 user_id TEXT NOT NULL, session_id TEXT NOT NULL, expires_ms INTEGER NOT NULL, \
                 PRIMARY KEY (conversation_id, session_id))",
                None,
            )
            .ok();
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
                self.end_live(&scope).await?;
                Ok(Response::empty()?.with_status(204))
            }
            Ok(GateRequest::LiveOpened(socket)) => {
                self.live_opened(&socket)?;
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

    fn live_opened(&self, s: &LiveSocket) -> Result<()> {
        let sql = self.state.storage().sql();
        // Sockets of expired tokens are closed by their hub; forget them here.
        sql.exec(
            "DELETE FROM live_sockets WHERE expires_ms <= ?",
            vec![clock::now_ms().into()],
        )?;
        sql.exec(
            "INSERT OR REPLACE INTO live_sockets (tenant_id, conversation_id, user_id, session_id, \
             expires_ms) VALUES (?, ?, ?, ?, ?)",
            vec![
                s.tenant_id.as_str().into(),
                s.conversation_id.as_str().into(),
                s.user_id.as_str().into(),
                s.session_id.as_str().into(),
                s.expires_ms.into(),
            ],
        )?;
        Ok(())
    }

    /// After an invalidation: each socket it may have ended is checked against D1 now, and the
    /// ones that may no longer stay are closed by their hubs.
    async fn end_live(&self, scope: &Scope) -> Result<()> {
        #[derive(Deserialize)]
        struct Row {
            tenant_id: String,
            conversation_id: String,
            user_id: String,
            session_id: String,
            expires_ms: i64,
        }
        let (filter, arg) = match scope {
            Scope::User { user_id } => ("WHERE user_id = ?", Some(user_id.as_str())),
            Scope::Session { session_id } => ("WHERE session_id = ?", Some(session_id.as_str())),
            Scope::Tenant => ("", None),
        };
        let rows: Vec<Row> = self
            .state
            .storage()
            .sql()
            .exec(
                &format!("SELECT tenant_id, conversation_id, user_id, session_id, expires_ms FROM live_sockets {filter}"),
                arg.map(|a| vec![a.into()]),
            )?
            .to_array()?;
        if rows.is_empty() {
            return Ok(());
        }
        let db = Db::from_env(&self.env).map_err(to_worker)?;
        for row in rows {
            let socket = LiveSocket {
                tenant_id: row.tenant_id,
                conversation_id: row.conversation_id,
                user_id: row.user_id,
                session_id: row.session_id,
                expires_ms: row.expires_ms,
            };
            let loaded = gate::load(&db, &socket.tenant_id, &socket.user_id, &socket.session_id)
                .await
                .map_err(to_worker)?;
            if live::may_stay(loaded.as_ref(), &socket, clock::now_ms()) {
                continue;
            }
            live::close_sessions(
                &self.env,
                &socket.conversation_id,
                std::slice::from_ref(&socket.session_id),
                "session ended",
            )
            .await
            .map_err(to_worker)?;
            self.state.storage().sql().exec(
                "DELETE FROM live_sockets WHERE conversation_id = ? AND session_id = ?",
                vec![
                    socket.conversation_id.as_str().into(),
                    socket.session_id.as_str().into(),
                ],
            )?;
        }
        Ok(())
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

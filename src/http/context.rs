//! The per-request context handed to every handler: request, bindings, config, caller, clock.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use serde::de::DeserializeOwned;
use worker::{ByteStream, Env};

use super::json::parse_json;
use crate::auth::principal::Principal;
use crate::platform::config::Config;
use crate::platform::db::Db;
use crate::platform::error::{AppError, Result};
use crate::platform::paging::Page;
use crate::platform::ratelimit::{self, Decision};

/// Who is calling from where (for audit entries and rate-limit keys).
#[derive(Debug, Clone, Default)]
pub struct Client {
    pub ip: String,
    pub user_agent: String,
}

pub struct Ctx {
    pub env: Env,
    pub config: Rc<Config>,
    pub request_id: String,
    pub path: String,
    /// `scheme://host[:port]` of this request, for absolute URLs in answers.
    pub origin: String,
    pub params: Vec<(&'static str, String)>,
    pub query: Vec<(String, String)>,
    pub headers: worker::Headers,
    /// The request body, read up-front by the dispatcher (bounded by `max_body_bytes`).
    pub body: Vec<u8>,
    /// On `streamed` routes: the unread raw body and its `Content-Length` (then `body` is empty).
    /// Shared with the dispatcher, which drains a body the handler left unread.
    pub stream: Rc<RefCell<Option<(ByteStream, u64)>>>,
    pub principal: Option<Principal>,
    pub client: Client,
    pub now_ms: i64,
    pub wait: Rc<worker::Context>,
    /// The last rate-limit decision, rendered as `RateLimit-*` headers on the response.
    pub rate: Rc<Cell<Option<Decision>>>,
}

impl Ctx {
    /// A path parameter; the router guarantees declared params are present.
    pub fn param(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_default()
    }

    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A non-empty query value, trimmed.
    pub fn query_nonempty(&self, name: &str) -> Option<&str> {
        self.query(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// A query value restricted to a set of allowed values.
    pub fn query_enum(&self, name: &str, allowed: &[&str]) -> Result<Option<String>> {
        match self.query_nonempty(name) {
            None => Ok(None),
            Some(v) if allowed.contains(&v) => Ok(Some(v.to_string())),
            Some(_) => Err(AppError::field(
                name,
                format!("must be one of: {}", allowed.join(", ")),
            )),
        }
    }

    /// An RFC 3339 / date query value, normalised to the stored text form.
    pub fn query_time(&self, name: &str) -> Result<Option<String>> {
        self.query_nonempty(name)
            .map(|v| {
                crate::platform::clock::normalize_time(v).map_err(|m| AppError::field(name, m))
            })
            .transpose()
    }

    pub fn page(&self) -> Result<Page> {
        Page::parse(self.query("limit"), self.query("cursor"))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).ok().flatten()
    }

    /// The length of a streamed body not taken yet (see `Route::streamed`).
    pub fn stream_length(&self) -> Option<u64> {
        self.stream.borrow().as_ref().map(|(_, n)| *n)
    }

    /// The streamed body, once. Take it only to read it to the end: a body dropped half-read is
    /// cancelled, which breaks the client's connection; one left untaken the dispatcher reads out.
    pub fn take_stream(&self) -> Option<(ByteStream, u64)> {
        self.stream.borrow_mut().take()
    }

    /// The JSON body as a DTO (`deny_unknown_fields` DTOs reject extra fields).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        parse_json(&self.body)
    }

    /// Where URLs saved by this request may point: the deployment's egress policy, also
    /// refusing the host this request came in on.
    pub fn egress(&self) -> crate::platform::egress::Policy {
        self.config.egress.with_own_url(&self.origin)
    }

    pub fn db(&self) -> Result<Db> {
        Db::from_env(&self.env)
    }

    /// The authenticated caller; the dispatcher guarantees one on non-public routes.
    pub fn principal(&self) -> Result<&Principal> {
        self.principal.as_ref().ok_or_else(|| {
            AppError::Unauthorized("unauthorized", "Authentication is required.".into())
        })
    }

    pub fn tenant_id(&self) -> Result<&str> {
        Ok(&self.principal()?.tenant_id)
    }

    /// The caller's tenant, or `None` for the platform admin, who works across organisations.
    pub fn scope(&self) -> Result<Option<&str>> {
        let p = self.principal()?;
        Ok(if p.is_platform_admin() {
            None
        } else {
            Some(p.tenant_id.as_str())
        })
    }

    /// `?tenant_id=` narrows the platform admin's cross-tenant lists; others are already scoped.
    pub fn scope_filter(&self) -> Result<Option<String>> {
        Ok(match self.scope()? {
            None => self.query_nonempty("tenant_id").map(str::to_string),
            Some(_) => None,
        })
    }

    pub fn now(&self) -> String {
        crate::platform::clock::rfc3339(self.now_ms)
    }

    /// Draws from the limiter `key` (cost 0 peeks) and notes the decision for the headers.
    pub async fn limit(&self, key: &str, limit: u32, window_secs: u32, cost: u32) -> Decision {
        ratelimit::draw_noted(&self.env, &self.rate, key, limit, window_secs, cost).await
    }

    /// Runs work after the response is sent (logs, counters).
    pub fn defer(&self, fut: impl std::future::Future<Output = ()> + 'static) {
        self.wait.wait_until(fut);
    }
}

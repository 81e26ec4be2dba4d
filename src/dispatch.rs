//! The HTTP dispatcher, the API Worker's entry on top of everything: for each request it applies
//! the building blocks of `crate::http` in order (request id, CORS, route lookup, caller and
//! budget, access rule, body limits, idempotency), calls the route's handler, and answers with
//! problem+json, the common headers, the JSON log line and a request-log entry.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use futures_util::StreamExt;
use worker::{Env, Request, Response};

use crate::auth::principal::{self, Principal};
use crate::http::context::{Client, Ctx};
use crate::http::reply::Reply;
use crate::http::router::{self, Access, Lookup, Method, RateClass};
use crate::http::{headers, idempotency};
use crate::platform::config::Config;
use crate::platform::error::{AppError, Result};
use crate::platform::plan::Plan;
use crate::platform::queue::ApiLog;
use crate::platform::ratelimit::Decision;
use crate::platform::{clock, ids};

/// What the dispatcher learned about a request, for headers and the log line.
#[derive(Default)]
struct Trace {
    route: &'static str,
    tenant_id: Option<String>,
    user_id: Option<String>,
    rate: Rc<Cell<Option<Decision>>>,
}

pub async fn handle(mut req: Request, env: Env, wctx: worker::Context) -> worker::Result<Response> {
    let started = clock::now_ms();
    let request_id = headers::accept_request_id(req.headers().get("X-Request-Id")?.as_deref())
        .unwrap_or_else(|| ids::new_id("req"));
    let method_name = req.method().to_string();
    let url = req.url()?;
    let path = url.path().to_string();
    let origin = req.headers().get("Origin")?;
    let client = Client {
        ip: req
            .headers()
            .get("CF-Connecting-IP")?
            .or(req.headers().get("X-Real-IP")?)
            .unwrap_or_else(|| "127.0.0.1".into()),
        user_agent: req
            .headers()
            .get("User-Agent")?
            .unwrap_or_default()
            .chars()
            .take(256)
            .collect(),
    };

    let config = Config::cached(&env);
    // A handle on the isolate's configuration, so the origins are borrowed, not copied.
    let origins_from = config.as_ref().ok().cloned();
    let allowed_origins: &[String] = origins_from
        .as_deref()
        .map_or(&[], |c| c.allowed_origins.as_slice());
    let wait = Rc::new(wctx);
    let mut trace = Trace::default();

    let outcome = if method_name == "OPTIONS" {
        Ok(headers::preflight(allowed_origins, origin.as_deref()))
    } else {
        match config {
            Ok(config) => {
                let setup = Setup {
                    env: env.clone(),
                    config,
                    request_id: request_id.clone(),
                    path: path.clone(),
                    origin: url.origin().ascii_serialization(),
                    query: router::parse_query(url.query().unwrap_or_default()),
                    client: client.clone(),
                    now_ms: started,
                    wait: wait.clone(),
                };
                serve(&mut req, &method_name, setup, &mut trace).await
            }
            Err(e) => Err(e),
        }
    };

    let mut reply = match outcome {
        Ok(reply) => reply,
        Err(err) => problem(&err, &request_id),
    };
    if let Some(d) = trace.rate.get() {
        reply = headers::rate_limit(reply, &d);
    }
    reply = headers::cors(headers::security(reply), allowed_origins, origin.as_deref());
    reply = reply.with_header("X-Request-Id", request_id.clone());

    let duration = clock::now_ms() - started;
    log_request(
        &request_id,
        &method_name,
        &path,
        &trace,
        reply.status,
        duration,
    );
    if path.starts_with("/api/v1/") && !trace.route.is_empty() {
        record_api_log(
            &env,
            &wait,
            &request_id,
            &method_name,
            &path,
            &trace,
            &client,
            reply.status,
            duration,
            started,
        );
    }
    reply.into_response()
}

/// Turns an error into problem+json; internal errors are logged with the request id only here.
pub fn problem(err: &AppError, request_id: &str) -> Reply {
    if let AppError::Internal(msg) = err {
        worker::console_error!(
            "{}",
            serde_json::json!({"level": "error", "request_id": request_id, "error": msg})
        );
    }
    let body = serde_json::to_vec(&err.to_problem(request_id)).unwrap_or_default();
    let mut reply = Reply::json_bytes(err.status(), body)
        .with_header("Content-Type", "application/problem+json");
    match err {
        AppError::MethodNotAllowed(allow) => reply = reply.with_header("Allow", allow.clone()),
        AppError::Unauthorized(..) => reply = reply.with_header("WWW-Authenticate", "Bearer"),
        AppError::RateLimited { retry_after_secs } => {
            reply = reply.with_header("Retry-After", retry_after_secs.to_string())
        }
        AppError::RangeNotSatisfiable(size) => {
            reply = reply.with_header("Content-Range", format!("bytes */{size}"))
        }
        _ => {}
    }
    reply
}

struct Setup {
    env: Env,
    config: Rc<Config>,
    request_id: String,
    path: String,
    origin: String,
    query: Vec<(String, String)>,
    client: Client,
    now_ms: i64,
    wait: Rc<worker::Context>,
}

async fn serve(req: &mut Request, method_name: &str, s: Setup, trace: &mut Trace) -> Result<Reply> {
    let method = Method::parse(method_name).ok_or_else(|| {
        AppError::MethodNotAllowed("GET, POST, PUT, PATCH, DELETE, OPTIONS".into())
    })?;
    let (route, params) = match crate::routes::table().lookup(method, &s.path) {
        Lookup::Found(route, params) => (route, params),
        Lookup::WrongMethod(allowed) => {
            let allow: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
            return Err(AppError::MethodNotAllowed(allow.join(", ")));
        }
        Lookup::NotFound => return Err(AppError::NotFound),
    };
    trace.route = route.path;

    // Identify the caller, then check the route's access rule (the one place roles are checked).
    let principal = if route.access == Access::Public {
        None
    } else {
        let token_elsewhere = route.query_token && req.headers().get("Authorization")?.is_none();
        let query_token = s
            .query
            .iter()
            .find(|(k, _)| k == "access_token")
            .map(|(_, t)| t.clone());
        let protocol_token = req
            .headers()
            .get("Sec-WebSocket-Protocol")?
            .and_then(|p| router::bearer_subprotocol(&p));
        let headers = match query_token.or(protocol_token) {
            Some(token) if token_elsewhere => {
                let h = worker::Headers::new();
                h.set("Authorization", &format!("Bearer {token}"))?;
                h
            }
            _ => req.headers().clone(),
        };
        // The tenant's budget is drawn in the same call that admits the caller (one round trip
        // before the handler), so it is drawn before the route's rule: a request the rule
        // refuses still counts against the budget, and is answered 403 rather than 429.
        let cost = (route.rate == RateClass::Tenant).then_some(1);
        let (p, decision) =
            principal::authenticate(&s.env, &s.config, &headers, s.now_ms, cost).await?;
        trace.tenant_id = Some(p.tenant_id.clone());
        trace.user_id = p.user_id.clone();
        trace.rate.set(decision);
        principal::authorize(route.access, &p, method)?;
        if let Some(feature) = route.feature {
            s.config.plans.require(p.plan, feature)?;
        }
        if let Some(d) = decision.filter(|d| !d.allowed) {
            return Err(AppError::RateLimited {
                retry_after_secs: d.retry_after_secs,
            });
        }
        Some(p)
    };

    // Uploads are bounded by the caller's plan's file size limit (and, when read into memory,
    // by the in-memory limit); other bodies by the JSON body limit.
    let file_max = || {
        let plan = principal.as_ref().map_or(Plan::Free, |p| p.plan);
        s.config.plans.limits(plan).max_file_bytes
    };
    let (body, stream) = match streamable_length(req, route)? {
        Some(length) if length > file_max() => return Err(AppError::PayloadTooLarge(file_max())),
        Some(length) => (Vec::new(), Some((req.stream()?, length))),
        None => {
            let limit = if route.upload {
                s.config.upload_max_request_bytes.min(file_max())
            } else {
                s.config.max_body_bytes
            };
            (read_body(req, method, route, limit).await?, None)
        }
    };

    let idempotency = match (route.idempotent, req.headers().get("Idempotency-Key")?) {
        (true, Some(key)) => {
            if !idempotency::valid_key(&key) {
                return Err(AppError::field(
                    "Idempotency-Key",
                    "must be 1–255 visible ASCII characters",
                ));
            }
            let scope = principal
                .as_ref()
                .map(Principal::idempotency_scope)
                .unwrap_or_else(|| format!("ip:{}", s.client.ip));
            Some((scope, key))
        }
        _ => None,
    };

    let unread = Rc::new(RefCell::new(stream));
    let cx = Ctx {
        env: s.env,
        config: s.config,
        request_id: s.request_id,
        path: s.path,
        origin: s.origin,
        params,
        query: s.query,
        headers: req.headers().clone(),
        body,
        stream: unread.clone(),
        principal,
        client: s.client,
        now_ms: s.now_ms,
        wait: s.wait,
        rate: trace.rate.clone(),
    };

    let outcome = match idempotency {
        None => (route.handler)(cx).await,
        Some((scope, key)) => {
            let db = cx.db()?;
            let hash = idempotency::request_hash(method.as_str(), &cx.path, &cx.body);
            match idempotency::claim(&db, &scope, &key, &hash, cx.now_ms).await? {
                idempotency::Claim::Replay(reply) => Ok(reply),
                idempotency::Claim::Fresh => {
                    let outcome = (route.handler)(cx).await;
                    idempotency::complete(&db, &scope, &key, &outcome).await?;
                    outcome
                }
            }
        }
    };
    // A streamed body the handler refused without taking: read it out. Dropping a taken-out
    // body unread cancels it, which breaks the connection the request came on (local workerd
    // then fails the next request), so handlers take the stream only once they will use it.
    let left = unread.borrow_mut().take();
    if let Some((mut body, _)) = left {
        while let Some(Ok(_)) = body.next().await {}
    }
    outcome
}

/// The `Content-Length` of a body a `streamed` route takes unread: a raw (not
/// `multipart/form-data`) body that says how long it is. Others are read as usual.
fn streamable_length(req: &Request, route: &router::Route) -> Result<Option<u64>> {
    if !route.streamed {
        return Ok(None);
    }
    let headers = req.headers();
    let multipart = headers
        .get("Content-Type")?
        .is_some_and(|t| t.trim().to_ascii_lowercase().starts_with("multipart/"));
    if multipart {
        return Ok(None);
    }
    Ok(headers
        .get("Content-Length")?
        .and_then(|n| n.trim().parse().ok())
        .filter(|n| *n > 0))
}

/// Reads the body up-front within the size limit; JSON routes insist on a JSON content type.
async fn read_body(
    req: &mut Request,
    method: Method,
    route: &router::Route,
    max: u64,
) -> Result<Vec<u8>> {
    if method == Method::Get {
        return Ok(Vec::new());
    }
    if let Some(len) = req.headers().get("Content-Length")? {
        if len.trim().parse::<u64>().map(|n| n > max).unwrap_or(false) {
            return Err(AppError::PayloadTooLarge(max));
        }
    }
    let body = read_capped(req, max).await?;
    if route.request.is_some() && !body.iter().all(u8::is_ascii_whitespace) {
        let content_type = req.headers().get("Content-Type")?.unwrap_or_default();
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(AppError::UnsupportedMediaType(
                "Send the body as application/json.".into(),
            ));
        }
    }
    Ok(body)
}

/// Reads the body in chunks and stops at `max` bytes (413), whether or not the client sent a
/// `Content-Length` (a chunked body would otherwise be read whole before being measured). A
/// body that cannot be read is a 400, not an empty body.
async fn read_capped(req: &mut Request, max: u64) -> Result<Vec<u8>> {
    if req.inner().body().is_none() {
        return Ok(Vec::new());
    }
    let mut stream = req.stream()?;
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            AppError::BadRequest(format!("The request body could not be read: {e}"))
        })?;
        if (body.len() + chunk.len()) as u64 > max {
            return Err(AppError::PayloadTooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn log_request(
    request_id: &str,
    method: &str,
    path: &str,
    trace: &Trace,
    status: u16,
    duration: i64,
) {
    worker::console_log!(
        "{}",
        serde_json::json!({
            "level": "info",
            "request_id": request_id,
            "method": method,
            "path": path,
            "route": trace.route,
            "tenant_id": trace.tenant_id,
            "user_id": trace.user_id,
            "status": status,
            "duration_ms": duration,
        })
    );
}

#[allow(clippy::too_many_arguments)]
fn record_api_log(
    env: &Env,
    wait: &worker::Context,
    request_id: &str,
    method: &str,
    path: &str,
    trace: &Trace,
    client: &Client,
    status: u16,
    duration: i64,
    started: i64,
) {
    let entry = ApiLog {
        id: ids::new_id("log"),
        request_id: request_id.to_string(),
        tenant_id: trace.tenant_id.clone(),
        user_id: trace.user_id.clone(),
        method: method.to_string(),
        route: trace.route.to_string(),
        path: path.chars().take(512).collect(),
        status: i64::from(status),
        duration_ms: duration,
        ip: Some(client.ip.clone()),
        created_at: clock::rfc3339(started),
    };
    crate::audit::request_log::record(env, wait, entry);
}

//! The route table type: method + path pattern + who may call it + handler + its OpenAPI description.
//! Access rules live here, in one place, so handlers never check roles by hand.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use super::context::Ctx;
use super::reply::Reply;
use crate::platform::error::Result;

pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Reply>>>>;
pub type Handler = fn(Ctx) -> HandlerFuture;

/// Wraps an `async fn(Ctx) -> Result<Reply>` into a route handler.
#[macro_export]
macro_rules! handler {
    ($f:path) => {
        |cx| Box::pin($f(cx)) as $crate::http::router::HandlerFuture
    };
}

pub use crate::platform::access::{Access, Method};

/// The documented shape of a success response.
#[derive(Debug, Clone, Copy)]
pub enum ResponseDoc {
    /// `{"data": <schema>}` with this status.
    Data(u16, &'static str),
    /// `{"data": [<schema>], "next_cursor": …}`.
    List(&'static str),
    /// 204, no body.
    NoContent,
    /// A non-JSON body (content type).
    Raw(u16, &'static str),
    /// A stored file's bytes in its own type: 200, or 206 for a `Range` (416 when unsatisfiable).
    File,
    /// A streamed download (`Content-Disposition: attachment`) in one of these content types.
    Download(&'static [&'static str]),
}

#[derive(Debug, Clone, Copy)]
pub struct QueryDoc {
    pub name: &'static str,
    pub description: &'static str,
    /// JSON schema type (`string`, `integer`, `boolean`).
    pub ty: &'static str,
    pub enumeration: &'static [&'static str],
}

pub const fn q(name: &'static str, ty: &'static str, description: &'static str) -> QueryDoc {
    QueryDoc {
        name,
        description,
        ty,
        enumeration: &[],
    }
}

pub const fn q_enum(
    name: &'static str,
    values: &'static [&'static str],
    description: &'static str,
) -> QueryDoc {
    QueryDoc {
        name,
        description,
        ty: "string",
        enumeration: values,
    }
}

/// Which limiter a route draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateClass {
    /// Not limited (health, docs, webhooks that verify signatures).
    None,
    /// The tenant's general API budget (per plan).
    Tenant,
}

pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub handler: Handler,
    pub summary: &'static str,
    pub tag: &'static str,
    pub request: Option<&'static str>,
    pub response: ResponseDoc,
    pub query: &'static [QueryDoc],
    /// Honours `Idempotency-Key` (POSTs that create or start work).
    pub idempotent: bool,
    pub rate: RateClass,
    /// Also listed in the OpenAPI document (aliases are not).
    pub documented: bool,
    /// The answer (a list or one object) can also be downloaded as CSV (`?format=csv`).
    pub csv: bool,
    /// Counts against a plan quota (monthly runs, storage): may answer 402 `quota_exceeded`.
    pub metered: bool,
    /// Only for plans that include this feature: others get 402 `feature_not_in_plan`.
    pub feature: Option<crate::billing::plans::Feature>,
    /// Calls an outside service while the caller waits: may answer 502 `upstream_error` and
    /// 504 `upstream_timeout`.
    pub upstream: bool,
    /// Also accepts the access token as `?access_token=` or as the WebSocket subprotocols
    /// `bearer, <token>` (browser WebSocket clients cannot set headers).
    pub query_token: bool,
    /// A file upload: the raw body (multipart or any type) up to the upload limit.
    pub upload: bool,
    /// An upload whose raw (non-multipart) body of known length reaches the handler as a stream
    /// (`Ctx::take_stream`), bounded by the plan's file size limit instead of being read first.
    pub streamed: bool,
}

/// The token in `Sec-WebSocket-Protocol: bearer, <token>` (what a browser sends for
/// `new WebSocket(url, ["bearer", token])`).
pub fn bearer_subprotocol(header: &str) -> Option<String> {
    let mut protocols = header.split(',').map(str::trim);
    protocols.find(|p| is_bearer(p))?;
    protocols
        .next()
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

/// Whether `Sec-WebSocket-Protocol` offers `bearer` (then the answer must select it).
pub fn offers_bearer(header: &str) -> bool {
    header.split(',').map(str::trim).any(is_bearer)
}

fn is_bearer(protocol: &str) -> bool {
    protocol.eq_ignore_ascii_case("bearer")
}

impl Route {
    pub fn new(method: Method, path: &'static str, access: Access, handler: Handler) -> Route {
        Route {
            method,
            path,
            access,
            handler,
            summary: "",
            tag: "",
            request: None,
            response: ResponseDoc::NoContent,
            query: &[],
            idempotent: false,
            metered: false,
            upstream: false,
            feature: None,
            query_token: false,
            upload: false,
            streamed: false,
            rate: if access == Access::Public {
                RateClass::None
            } else {
                RateClass::Tenant
            },
            documented: true,
            csv: false,
        }
    }
    pub fn get(path: &'static str, access: Access, handler: Handler) -> Route {
        Route::new(Method::Get, path, access, handler)
    }
    pub fn post(path: &'static str, access: Access, handler: Handler) -> Route {
        Route::new(Method::Post, path, access, handler)
    }
    pub fn put(path: &'static str, access: Access, handler: Handler) -> Route {
        Route::new(Method::Put, path, access, handler)
    }
    pub fn patch(path: &'static str, access: Access, handler: Handler) -> Route {
        Route::new(Method::Patch, path, access, handler)
    }
    pub fn delete(path: &'static str, access: Access, handler: Handler) -> Route {
        Route::new(Method::Delete, path, access, handler)
    }
    pub fn doc(mut self, tag: &'static str, summary: &'static str) -> Route {
        self.tag = tag;
        self.summary = summary;
        self
    }
    pub fn body(mut self, schema: &'static str) -> Route {
        self.request = Some(schema);
        self
    }
    pub fn ok(mut self, schema: &'static str) -> Route {
        self.response = ResponseDoc::Data(200, schema);
        self
    }
    pub fn created(mut self, schema: &'static str) -> Route {
        self.response = ResponseDoc::Data(201, schema);
        self
    }
    pub fn accepted(mut self, schema: &'static str) -> Route {
        self.response = ResponseDoc::Data(202, schema);
        self
    }
    pub fn list(mut self, schema: &'static str) -> Route {
        self.response = ResponseDoc::List(schema);
        self
    }
    pub fn no_content(mut self) -> Route {
        self.response = ResponseDoc::NoContent;
        self
    }
    pub fn file(mut self) -> Route {
        self.response = ResponseDoc::File;
        self
    }
    pub fn download(mut self, content_types: &'static [&'static str]) -> Route {
        self.response = ResponseDoc::Download(content_types);
        self
    }
    pub fn raw(mut self, status: u16, content_type: &'static str) -> Route {
        self.response = ResponseDoc::Raw(status, content_type);
        self
    }
    pub fn query(mut self, query: &'static [QueryDoc]) -> Route {
        self.query = query;
        self
    }
    pub fn idempotent(mut self) -> Route {
        self.idempotent = true;
        self
    }
    pub fn upload(mut self) -> Route {
        self.upload = true;
        self
    }
    pub fn streamed(mut self) -> Route {
        self.upload = true;
        self.streamed = true;
        self
    }
    pub fn query_token(mut self) -> Route {
        self.query_token = true;
        self
    }
    pub fn upstream(mut self) -> Route {
        self.upstream = true;
        self
    }
    pub fn metered(mut self) -> Route {
        self.metered = true;
        self
    }
    /// Declares the plan feature the route needs (checked by the dispatcher, documented).
    pub fn feature(mut self, feature: crate::billing::plans::Feature) -> Route {
        self.feature = Some(feature);
        self
    }
    pub fn unlimited(mut self) -> Route {
        self.rate = RateClass::None;
        self
    }
    pub fn csv(mut self) -> Route {
        self.csv = true;
        self
    }
    pub fn alias(mut self) -> Route {
        self.documented = false;
        self
    }

    /// Path parameter names in order (`:id` → `id`).
    pub fn param_names(&self) -> impl Iterator<Item = &'static str> {
        self.path.split('/').filter_map(|s| s.strip_prefix(':'))
    }
}

/// The result of looking a request up in the table.
pub enum Lookup<'a> {
    Found(&'a Route, Vec<(&'static str, String)>),
    /// The path exists with other methods (for `405` + `Allow`).
    WrongMethod(Vec<Method>),
    NotFound,
}

/// Matches `path` against a pattern; returns captured params. Literal segments beat params.
pub fn match_path(pattern: &'static str, path: &str) -> Option<Vec<(&'static str, String)>> {
    let mut params = Vec::new();
    let mut pat = pattern.split('/');
    let mut segs = path.split('/');
    loop {
        match (pat.next(), segs.next()) {
            (None, None) => return Some(params),
            (Some(p), Some(s)) => {
                if let Some(name) = p.strip_prefix(':') {
                    if s.is_empty() {
                        return None;
                    }
                    params.push((name, percent_decode(s)?));
                } else if p != s {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

fn literal_segments(pattern: &str) -> usize {
    pattern
        .split('/')
        .filter(|s| !s.starts_with(':') && !s.is_empty())
        .count()
}

/// The route table with an index, so a lookup costs the same however many routes there are:
/// routes are bucketed by segment count and their literal prefix (up to `PREFIX_CAP` segments,
/// stopping at the first parameter); a request checks at most `PREFIX_CAP + 1` buckets.
pub struct RouteTable {
    routes: Vec<Route>,
    index: HashMap<(usize, String), Vec<usize>>,
}

const PREFIX_CAP: usize = 4;

impl RouteTable {
    pub fn new(routes: Vec<Route>) -> RouteTable {
        let mut index: HashMap<(usize, String), Vec<usize>> = HashMap::new();
        for (i, route) in routes.iter().enumerate() {
            let segs: Vec<&str> = route.path.split('/').collect();
            let literal = segs
                .iter()
                .take(PREFIX_CAP)
                .take_while(|s| !s.starts_with(':'))
                .count();
            index
                .entry((segs.len(), segs[..literal].join("/")))
                .or_default()
                .push(i);
        }
        RouteTable { routes, index }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn lookup(&self, method: Method, path: &str) -> Lookup<'_> {
        let path = trim_slash(path);
        let segs: Vec<&str> = path.split('/').collect();
        let mut candidates: Vec<usize> = (0..=PREFIX_CAP.min(segs.len()))
            .filter_map(|n| self.index.get(&(segs.len(), segs[..n].join("/"))))
            .flatten()
            .copied()
            .collect();
        // Table order breaks ties, as in a scan of the whole table.
        candidates.sort_unstable();
        select(candidates.iter().map(|&i| &self.routes[i]), method, path)
    }
}

fn trim_slash(path: &str) -> &str {
    if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    }
}

/// Looks a request up in a plain list of routes by scanning it: the reference the index is
/// tested against.
#[cfg(test)]
pub fn lookup<'a>(routes: &'a [Route], method: Method, path: &str) -> Lookup<'a> {
    select(routes.iter(), method, trim_slash(path))
}

fn select<'a>(routes: impl Iterator<Item = &'a Route>, method: Method, path: &str) -> Lookup<'a> {
    let mut best: Option<(&Route, Vec<(&'static str, String)>)> = None;
    let mut allowed = Vec::new();
    for route in routes {
        if let Some(params) = match_path(route.path, path) {
            if route.method == method {
                let better = best
                    .as_ref()
                    .is_none_or(|(b, _)| literal_segments(route.path) > literal_segments(b.path));
                if better {
                    best = Some((route, params));
                }
            } else if !allowed.contains(&route.method) {
                allowed.push(route.method);
            }
        }
    }
    match best {
        Some((route, params)) => Lookup::Found(route, params),
        None if !allowed.is_empty() => Lookup::WrongMethod(allowed),
        None => Lookup::NotFound,
    }
}

/// Decodes `%XX` escapes; `None` for malformed escapes or invalid UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else if bytes[i] == b'+' {
            out.push(b' ');
            i += 1;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Parses a query string into decoded pairs; malformed pairs are dropped.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_subprotocol_carries_the_token() {
        assert_eq!(
            bearer_subprotocol("bearer, abc.def"),
            Some("abc.def".into())
        );
        assert_eq!(bearer_subprotocol("json, Bearer,x"), Some("x".into()));
        assert_eq!(bearer_subprotocol("bearer"), None);
        assert_eq!(bearer_subprotocol("chat, abc"), None);
        assert!(offers_bearer("chat, Bearer"));
        assert!(!offers_bearer("chat, bearer-token"));
    }

    fn h(_: Ctx) -> HandlerFuture {
        Box::pin(async { Ok(Reply::no_content()) })
    }

    fn table() -> Vec<Route> {
        vec![
            Route::get("/api/v1/conversations/:id", Access::User, h),
            Route::get("/api/v1/conversations/stats/summary", Access::User, h),
            Route::patch("/api/v1/conversations/:id", Access::User, h),
            Route::get("/health", Access::Public, h),
        ]
    }

    #[test]
    fn the_index_finds_what_a_scan_of_the_whole_table_finds() {
        let table = RouteTable::new(crate::routes::all());
        let mut paths: Vec<String> = table
            .routes()
            .iter()
            .map(|r| r.path.replace(":id", "x1").replace(':', "p_"))
            .collect();
        paths.extend(
            [
                "/",
                "/nope",
                "/api/v1",
                "/api/v1/users/",
                "/docs/a.js",
                "/api/v1/a/b/c/d/e",
            ]
            .map(String::from),
        );
        let key = |l: Lookup| match l {
            Lookup::Found(r, p) => format!("{} {} {p:?}", r.method.as_str(), r.path),
            Lookup::WrongMethod(m) => format!("405 {m:?}"),
            Lookup::NotFound => "404".into(),
        };
        for path in &paths {
            for m in [Method::Get, Method::Post, Method::Patch, Method::Delete] {
                assert_eq!(
                    key(table.lookup(m, path)),
                    key(lookup(table.routes(), m, path)),
                    "{} {path}",
                    m.as_str()
                );
            }
        }
    }

    #[test]
    fn literal_routes_win_over_params() {
        let t = table();
        match lookup(&t, Method::Get, "/api/v1/conversations/stats/summary") {
            Lookup::Found(r, p) => {
                assert_eq!(r.path, "/api/v1/conversations/stats/summary");
                assert!(p.is_empty());
            }
            _ => panic!("expected a match"),
        }
    }

    #[test]
    fn params_are_captured_and_decoded() {
        let t = table();
        match lookup(&t, Method::Get, "/api/v1/conversations/a%20b") {
            Lookup::Found(_, p) => assert_eq!(p, vec![("id", "a b".to_string())]),
            _ => panic!("expected a match"),
        }
    }

    #[test]
    fn wrong_method_lists_allowed_methods() {
        let t = table();
        match lookup(&t, Method::Delete, "/api/v1/conversations/x") {
            Lookup::WrongMethod(m) => assert_eq!(m, vec![Method::Get, Method::Patch]),
            _ => panic!("expected 405"),
        }
    }

    #[test]
    fn unknown_paths_and_empty_params_do_not_match() {
        let t = table();
        assert!(matches!(
            lookup(&t, Method::Get, "/api/v1/nope"),
            Lookup::NotFound
        ));
        assert!(matches!(
            lookup(&t, Method::Get, "/api/v1/conversations/"),
            Lookup::NotFound
        ));
        assert!(match_path("/a/:id", "/a/").is_none());
        assert!(matches!(
            lookup(&t, Method::Get, "/health/"),
            Lookup::Found(..)
        ));
    }

    #[test]
    fn malformed_percent_escapes_are_rejected() {
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%e2%82%ac"), Some("€".into()));
        assert_eq!(
            parse_query("a=1&b=x%20y&bad=%zz&c"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y".into()),
                ("c".into(), "".into())
            ]
        );
    }
}

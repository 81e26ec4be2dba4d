//! Response headers every answer carries: request id, security headers, CORS, rate limits.

use super::reply::Reply;
use crate::platform::ratelimit::Decision;

pub const ALLOWED_HEADERS: &str =
    "Authorization, Content-Type, Idempotency-Key, X-Request-Id, X-API-Key";
pub const EXPOSED_HEADERS: &str = "X-Request-Id, Location, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, Retry-After, Idempotent-Replayed";
pub const ALLOWED_METHODS: &str = "GET, POST, PUT, PATCH, DELETE, OPTIONS";

/// Accepts a caller's request id when it is short and plain; otherwise we make our own.
pub fn accept_request_id(incoming: Option<&str>) -> Option<String> {
    incoming
        .map(str::trim)
        .filter(|v| {
            (1..=128).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map(str::to_string)
}

pub fn origin_allowed(allowed: &[String], origin: &str) -> bool {
    allowed.iter().any(|a| a == "*" || a == origin)
}

pub fn security(reply: Reply) -> Reply {
    let csp_set = reply.header("Content-Security-Policy").is_some();
    let mut reply = reply
        .with_header("X-Content-Type-Options", "nosniff")
        .with_header("X-Frame-Options", "DENY")
        .with_header("Referrer-Policy", "no-referrer")
        .with_header(
            "Strict-Transport-Security",
            "max-age=63072000; includeSubDomains",
        );
    if !csp_set {
        reply = reply.with_header(
            "Content-Security-Policy",
            "default-src 'none'; frame-ancestors 'none'",
        );
    }
    if reply.header("Cache-Control").is_none() {
        reply = reply.with_header("Cache-Control", "no-store");
    }
    reply
}

pub fn cors(reply: Reply, allowed: &[String], origin: Option<&str>) -> Reply {
    let reply = reply.with_header("Vary", "Origin");
    match origin {
        Some(o) if origin_allowed(allowed, o) => reply
            .with_header("Access-Control-Allow-Origin", o)
            .with_header("Access-Control-Expose-Headers", EXPOSED_HEADERS),
        _ => reply,
    }
}

pub fn preflight(allowed: &[String], origin: Option<&str>) -> Reply {
    let reply = Reply::no_content();
    match origin {
        Some(o) if origin_allowed(allowed, o) => cors(reply, allowed, origin)
            .with_header("Access-Control-Allow-Methods", ALLOWED_METHODS)
            .with_header("Access-Control-Allow-Headers", ALLOWED_HEADERS)
            .with_header("Access-Control-Max-Age", "600"),
        _ => reply.with_header("Vary", "Origin"),
    }
}

pub fn rate_limit(reply: Reply, d: &Decision) -> Reply {
    let reply = reply
        .with_header("RateLimit-Limit", d.limit.to_string())
        .with_header("RateLimit-Remaining", d.remaining.to_string())
        .with_header("RateLimit-Reset", d.reset_secs.to_string());
    if d.allowed {
        reply
    } else {
        reply.with_header("Retry-After", d.retry_after_secs.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_accepted_only_when_plain() {
        assert_eq!(accept_request_id(Some("abc-123")), Some("abc-123".into()));
        assert_eq!(accept_request_id(Some("a\nb")), None);
        assert_eq!(accept_request_id(Some(&"x".repeat(129))), None);
        assert_eq!(accept_request_id(None), None);
    }

    #[test]
    fn cors_echoes_only_allowed_origins() {
        let allowed = vec!["https://app.example".to_string()];
        let r = cors(Reply::no_content(), &allowed, Some("https://app.example"));
        assert_eq!(
            r.header("Access-Control-Allow-Origin"),
            Some("https://app.example")
        );
        let r = cors(Reply::no_content(), &allowed, Some("https://evil.example"));
        assert_eq!(r.header("Access-Control-Allow-Origin"), None);
        let p = preflight(&allowed, Some("https://app.example"));
        assert_eq!(p.status, 204);
        assert!(p.header("Access-Control-Allow-Methods").is_some());
    }

    #[test]
    fn security_headers_keep_a_route_specific_csp() {
        let r = security(Reply::no_content());
        assert_eq!(r.header("X-Frame-Options"), Some("DENY"));
        assert!(r
            .header("Content-Security-Policy")
            .unwrap()
            .contains("'none'"));
        let r = security(Reply::no_content().with_header("Content-Security-Policy", "x"));
        assert_eq!(r.header("Content-Security-Policy"), Some("x"));
    }

    #[test]
    fn refusals_carry_retry_after() {
        let d = Decision {
            allowed: false,
            limit: 5,
            remaining: 0,
            reset_secs: 30,
            retry_after_secs: 12,
        };
        let r = rate_limit(Reply::no_content(), &d);
        assert_eq!(r.header("Retry-After"), Some("12"));
        assert_eq!(r.header("RateLimit-Limit"), Some("5"));
    }
}

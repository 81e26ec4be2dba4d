//! Stripe's API as Tenantry calls it (the outbound side): requests form-encoded with Stripe's
//! nested keys (`line_items[0][price]`), the secret key as a bearer token, a pinned
//! `Stripe-Version` and an `Idempotency-Key` on every POST; answers and Stripe's error shape
//! `{error: {type, code, message, param}}` read into a `Failure`. Everything but `Stripe::send`
//! is pure, so what goes on the wire is unit-tested natively.
//!
//! Refusals: no secret key, Stripe unreachable, no answer in time, a 5xx, a 429 or a refused key
//! (401/403: the deployment's key, not the caller's fault) are `503 billing_unavailable`;
//! any other 4xx is `502 upstream_error` with Stripe's message. The key is never logged or shown.

use std::time::Duration;

use serde_json::{json, Value};
use worker::url::form_urlencoded;

use crate::platform::config::Config;
use crate::platform::crypto::{random_bytes, sha256_hex};
use crate::platform::egress::fetch_text;
use crate::platform::error::{AppError, Result};
use crate::platform::redact::Redactor;

/// The API version every call asks for, so a change of the account's default version never
/// changes the shapes read here.
pub const STRIPE_VERSION: &str = "2025-03-31.basil";

/// How long a call may take before billing counts as unavailable.
pub const TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
}

/// One call as it goes on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub method: Verb,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    /// The form body of a POST.
    pub body: Option<String>,
}

/// Stripe's nested parameters from a JSON object: objects become `key[sub]`, arrays
/// `key[0]`, booleans `true`/`false`; `null` is left out. Order follows the object's.
pub fn flatten(params: &Value) -> Vec<(String, String)> {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Null => {}
            Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}[{k}]")
                    };
                    walk(&key, v, out);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(&format!("{prefix}[{i}]"), v, out);
                }
            }
            Value::String(s) => out.push((prefix.to_string(), s.clone())),
            Value::Bool(b) => out.push((prefix.to_string(), b.to_string())),
            Value::Number(n) => out.push((prefix.to_string(), n.to_string())),
        }
    }
    let mut out = Vec::new();
    walk("", params, &mut out);
    out
}

/// `application/x-www-form-urlencoded` of the flattened parameters.
pub fn encode(params: &Value) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in flatten(params) {
        s.append_pair(&k, &v);
    }
    s.finish()
}

/// The `Idempotency-Key` of a POST to Stripe. With the caller's own key, the same key for the
/// same caller (`scope`: tenant and user or API key) and operation, so a retried request never
/// repeats the side effect on Stripe; without one, a fresh key (Stripe still gets one, so our
/// own network retries could not double it).
pub fn idempotency_key(scope: &str, operation: &str, caller_key: Option<&str>) -> String {
    match caller_key {
        Some(key) => {
            let digest = sha256_hex(format!("{scope}\n{operation}\n{key}").as_bytes());
            format!("tenantry-{operation}-{}", &digest[..40])
        }
        None => format!("tenantry-{operation}-{}", hex::encode(random_bytes::<16>())),
    }
}

/// The request for `path` (`/v1/…`): a POST carries `params` as its form body and the
/// idempotency key; a GET carries them in the query string.
pub fn build(
    api_base: &str,
    secret_key: &str,
    method: Verb,
    path: &str,
    params: &Value,
    idempotency_key: Option<&str>,
) -> Call {
    let mut url = format!("{}{path}", api_base.trim_end_matches('/'));
    let mut headers = vec![
        ("Authorization", format!("Bearer {secret_key}")),
        ("Stripe-Version", STRIPE_VERSION.to_string()),
        ("Accept", "application/json".to_string()),
    ];
    let body = match method {
        Verb::Post => {
            headers.push((
                "Content-Type",
                "application/x-www-form-urlencoded".to_string(),
            ));
            if let Some(key) = idempotency_key {
                headers.push(("Idempotency-Key", key.to_string()));
            }
            Some(encode(params))
        }
        Verb::Get => {
            let query = encode(params);
            if !query.is_empty() {
                url.push('?');
                url.push_str(&query);
            }
            None
        }
    };
    Call {
        method,
        url,
        headers,
        body,
    }
}

/// Why a call did not give an answer to use.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// Billing cannot be done now (no key, no answer, 5xx, 429, the key refused); the text is
    /// for the log.
    Unavailable(String),
    /// Stripe refused this request (a 4xx) and said why.
    Refused {
        status: u16,
        kind: String,
        code: Option<String>,
        message: String,
        param: Option<String>,
    },
}

/// Reads Stripe's answer: a 2xx JSON object, or its error.
pub fn interpret(status: u16, body: &str) -> std::result::Result<Value, Failure> {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    if (200..300).contains(&status) {
        return match parsed {
            Some(v @ Value::Object(_)) => Ok(v),
            _ => Err(Failure::Unavailable(format!(
                "Stripe answered {status} with a body that is not a JSON object"
            ))),
        };
    }
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let field = |name: &str| {
        error
            .and_then(|e| e.get(name))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let kind = field("type").unwrap_or_else(|| "unknown".into());
    let message = field("message").unwrap_or_else(|| format!("Stripe answered {status}"));
    if !(400..500).contains(&status) || matches!(status, 401 | 403 | 429) {
        return Err(Failure::Unavailable(format!(
            "Stripe answered {status} ({kind}): {message}"
        )));
    }
    Err(Failure::Refused {
        status,
        kind,
        code: field("code"),
        message,
        param: field("param"),
    })
}

/// The answer to the API caller: never the key, never a 500.
pub fn refusal(failure: Failure, secret_key: &str) -> AppError {
    match failure {
        Failure::Unavailable(_) => unavailable(),
        Failure::Refused {
            status,
            kind,
            code,
            message,
            param,
        } => {
            let message = Redactor::new([secret_key]).text(&message);
            AppError::refused(
                502,
                "upstream_error",
                format!("Stripe refused the request: {message}"),
            )
            .with("stripe_status", status)
            .with("stripe_type", kind)
            .with("stripe_code", code.map(Value::from).unwrap_or(Value::Null))
            .with(
                "stripe_param",
                param.map(Value::from).unwrap_or(Value::Null),
            )
        }
    }
}

/// `503 billing_unavailable`.
pub fn unavailable() -> AppError {
    AppError::refused(
        503,
        "billing_unavailable",
        "Billing is unavailable right now; try again later.",
    )
}

/// The secret key, or `503 billing_unavailable` when none is configured.
pub fn secret_key(stripe: &crate::platform::config::Stripe) -> Result<&str> {
    stripe
        .secret_key
        .as_deref()
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or_else(unavailable)
}

/// A configured client: the deployment's settings and its secret key.
pub struct Stripe<'a> {
    cfg: &'a Config,
    key: &'a str,
}

impl<'a> Stripe<'a> {
    /// `503 billing_unavailable` when no secret key is configured.
    pub fn new(cfg: &'a Config) -> Result<Stripe<'a>> {
        let key = secret_key(&cfg.stripe).inspect_err(|_| {
            log("stripe.unconfigured", "", "STRIPE_SECRET_KEY is not set");
        })?;
        Ok(Stripe { cfg, key })
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        let call = build(
            &self.cfg.stripe.api_base,
            self.key,
            Verb::Get,
            path,
            &json!({}),
            None,
        );
        self.send(path, call).await
    }

    pub async fn post(&self, path: &str, params: &Value, idempotency_key: &str) -> Result<Value> {
        let call = build(
            &self.cfg.stripe.api_base,
            self.key,
            Verb::Post,
            path,
            params,
            Some(idempotency_key),
        );
        self.send(path, call).await
    }

    async fn send(&self, path: &str, call: Call) -> Result<Value> {
        let headers = worker::Headers::new();
        for (name, value) in &call.headers {
            headers.set(name, value)?;
        }
        let mut init = worker::RequestInit::new();
        init.with_method(match call.method {
            Verb::Get => worker::Method::Get,
            Verb::Post => worker::Method::Post,
        })
        .with_headers(headers);
        if let Some(body) = call.body {
            init.with_body(Some(body.into()));
        }
        let request = worker::Request::new_with_init(&call.url, &init)?;
        let (status, text) = match fetch_text(&self.cfg.egress, request, TIMEOUT).await {
            Ok(answer) => answer,
            Err(why) => {
                log("stripe.unreachable", path, &why);
                return Err(unavailable());
            }
        };
        interpret(status, &text).map_err(|failure| {
            let why = match &failure {
                Failure::Unavailable(why) => why.clone(),
                Failure::Refused {
                    status,
                    kind,
                    code,
                    message,
                    ..
                } => format!(
                    "{status} {kind} {}: {message}",
                    code.as_deref().unwrap_or("-")
                ),
            };
            log("stripe.error", path, &Redactor::new([self.key]).text(&why));
            refusal(failure, self.key)
        })
    }
}

fn log(event: &str, path: &str, why: &str) {
    worker::console_error!(
        "{}",
        json!({"level": "warn", "event": event, "path": path, "error": why})
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(mut v: Vec<(String, String)>) -> Vec<(String, String)> {
        v.sort();
        v
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        sorted(
            items
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn nested_parameters_use_stripes_bracket_keys() {
        let params = json!({
            "mode": "subscription",
            "line_items": [{"price": "price_pro", "quantity": 1}],
            "metadata": {"tenant_id": "ten_1"},
            "subscription_data": {"metadata": {"tenant_id": "ten_1"}},
            "items": [{"id": "si_1", "price": "price_starter"}],
            "cancel_at_period_end": false,
            "customer": null,
        });
        assert_eq!(
            sorted(flatten(&params)),
            pairs(&[
                ("mode", "subscription"),
                ("line_items[0][price]", "price_pro"),
                ("line_items[0][quantity]", "1"),
                ("metadata[tenant_id]", "ten_1"),
                ("subscription_data[metadata][tenant_id]", "ten_1"),
                ("items[0][id]", "si_1"),
                ("items[0][price]", "price_starter"),
                ("cancel_at_period_end", "false"),
            ])
        );
    }

    #[test]
    fn the_form_body_percent_encodes_keys_and_values() {
        let body = encode(&json!({
            "metadata": {"tenant_id": "ten_1"},
            "success_url": "https://app.example.com/ok?session={CHECKOUT_SESSION_ID}&a=b c",
        }));
        let decoded: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(
            sorted(decoded),
            pairs(&[
                ("metadata[tenant_id]", "ten_1"),
                (
                    "success_url",
                    "https://app.example.com/ok?session={CHECKOUT_SESSION_ID}&a=b c"
                ),
            ])
        );
        assert!(body.contains("metadata%5Btenant_id%5D=ten_1"), "{body}");
        assert!(!body.contains("&a=b"), "{body}");
        assert_eq!(encode(&json!({})), "");
    }

    #[test]
    fn a_post_carries_the_key_the_version_the_form_and_an_idempotency_key() {
        let call = build(
            "http://127.0.0.1:9/stripe/",
            "sk_test_abc",
            Verb::Post,
            "/v1/checkout/sessions",
            &json!({"mode": "subscription"}),
            Some("tenantry-checkout-1"),
        );
        assert_eq!(call.url, "http://127.0.0.1:9/stripe/v1/checkout/sessions");
        let header = |n: &str| {
            call.headers
                .iter()
                .find(|(h, _)| *h == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(header("Authorization"), Some("Bearer sk_test_abc"));
        assert_eq!(header("Stripe-Version"), Some("2025-03-31.basil"));
        assert_eq!(
            header("Content-Type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(header("Idempotency-Key"), Some("tenantry-checkout-1"));
        assert_eq!(call.body.as_deref(), Some("mode=subscription"));
    }

    #[test]
    fn a_get_has_no_body_and_no_idempotency_key() {
        let call = build(
            "https://api.stripe.com",
            "sk_live_x",
            Verb::Get,
            "/v1/subscriptions/sub_1",
            &json!({"expand": ["items"]}),
            Some("ignored"),
        );
        assert_eq!(
            call.url,
            "https://api.stripe.com/v1/subscriptions/sub_1?expand%5B0%5D=items"
        );
        assert_eq!(call.body, None);
        assert!(call.headers.iter().all(|(h, _)| *h != "Idempotency-Key"));
        assert!(call.headers.iter().all(|(h, _)| *h != "Content-Type"));
    }

    #[test]
    fn idempotency_keys_follow_the_callers_key_per_caller_and_operation() {
        let a = idempotency_key("tenant:ten_1:user:usr_1", "checkout", Some("k1"));
        assert_eq!(
            a,
            idempotency_key("tenant:ten_1:user:usr_1", "checkout", Some("k1"))
        );
        assert!(a.starts_with("tenantry-checkout-") && a.len() <= 255);
        for other in [
            idempotency_key("tenant:ten_2:user:usr_1", "checkout", Some("k1")),
            idempotency_key("tenant:ten_1:user:usr_2", "checkout", Some("k1")),
            idempotency_key("tenant:ten_1:user:usr_1", "portal", Some("k1")),
            idempotency_key("tenant:ten_1:user:usr_1", "checkout", Some("k2")),
        ] {
            assert_ne!(a, other);
        }
        // The caller's key itself never travels to Stripe.
        assert!(!idempotency_key("s", "refund", Some("my-secret-key")).contains("my-secret-key"));
        let fresh = idempotency_key("s", "refund", None);
        assert_ne!(fresh, idempotency_key("s", "refund", None));
        assert!(fresh.starts_with("tenantry-refund-"));
    }

    #[test]
    fn a_success_is_the_answers_object() {
        let v = interpret(200, r#"{"id": "cs_test_1", "url": "https://checkout"}"#).unwrap();
        assert_eq!(v["id"], "cs_test_1");
        assert!(matches!(
            interpret(200, "<html>"),
            Err(Failure::Unavailable(_))
        ));
        assert!(matches!(interpret(200, "[]"), Err(Failure::Unavailable(_))));
    }

    #[test]
    fn stripes_error_shape_is_read() {
        let body = r#"{"error": {"type": "invalid_request_error", "code": "resource_missing",
            "message": "No such customer: 'cus_missing'", "param": "customer",
            "doc_url": "https://stripe.com/docs/error-codes/resource-missing"}}"#;
        assert_eq!(
            interpret(400, body),
            Err(Failure::Refused {
                status: 400,
                kind: "invalid_request_error".into(),
                code: Some("resource_missing".into()),
                message: "No such customer: 'cus_missing'".into(),
                param: Some("customer".into()),
            })
        );
        // A 4xx without Stripe's shape is still a refusal, with a message of its own.
        match interpret(404, "not json") {
            Err(Failure::Refused { message, kind, .. }) => {
                assert_eq!(message, "Stripe answered 404");
                assert_eq!(kind, "unknown");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn outages_rate_limits_and_a_refused_key_are_unavailable() {
        for status in [500, 502, 503, 504, 429, 401, 403, 302] {
            let body = r#"{"error": {"type": "api_error", "message": "boom"}}"#;
            assert!(
                matches!(interpret(status, body), Err(Failure::Unavailable(_))),
                "{status}"
            );
        }
    }

    #[test]
    fn without_a_secret_key_billing_is_unavailable() {
        let mut stripe = crate::platform::config::Stripe {
            api_base: "https://api.stripe.com".into(),
            secret_key: None,
            webhook_secrets: vec![],
            webhook_tolerance_secs: 300,
            prices: vec![],
        };
        let e = secret_key(&stripe).unwrap_err();
        assert_eq!((e.status(), e.code()), (503, "billing_unavailable"));
        stripe.secret_key = Some("  ".into());
        assert_eq!(secret_key(&stripe).unwrap_err().status(), 503);
        stripe.secret_key = Some("sk_test_1".into());
        assert_eq!(secret_key(&stripe).ok(), Some("sk_test_1"));
    }

    #[test]
    fn the_caller_sees_503_billing_unavailable_or_502_with_stripes_message_never_the_key() {
        let e = refusal(Failure::Unavailable("timeout".into()), "sk_test_abc");
        assert_eq!((e.status(), e.code()), (503, "billing_unavailable"));
        assert!(!e.to_string().contains("timeout"));

        let e = refusal(
            Failure::Refused {
                status: 400,
                kind: "invalid_request_error".into(),
                code: Some("parameter_invalid".into()),
                message: "Bad key sk_test_abc here".into(),
                param: None,
            },
            "sk_test_abc",
        );
        assert_eq!((e.status(), e.code()), (502, "upstream_error"));
        let problem = serde_json::to_string(&e.to_problem("req_1")).unwrap();
        assert!(!problem.contains("sk_test_abc"), "{problem}");
        assert!(problem.contains("Stripe refused the request: Bad key [redacted] here"));
        assert!(problem.contains("\"stripe_code\":\"parameter_invalid\""));
        assert!(problem.contains("\"title\":\"Bad Gateway\""));
    }
}

//! A workflow's `config`: the step pipeline and its timeout, with the checks run when a
//! workflow is saved (step kinds, names, URLs, template references, limits).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::template::{self, Ref};
use crate::http::json::Checks;
use crate::platform::egress::Policy;
use worker::Url;

pub const DEFAULT_TIMEOUT_SECS: u32 = 1800;
pub const MAX_STEPS: usize = 20;
pub const DEFAULT_HTTP_TIMEOUT_SECS: u32 = 30;
/// Queues deliver a delayed message at most 12 hours later.
pub const MAX_DELAY_SECS: u32 = 43_200;
/// Headers whose values must come from the secret store, never inlined in the config.
const CREDENTIAL_HEADERS: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
];
pub const HTTP_METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// The step pipeline, e.g.
/// `{"timeout_seconds": 1800, "steps": [{"name": "gen", "kind": "http", …}, …]}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkflowConfig {
    /// An execution still running after this many seconds is failed by the sweep (5–86400, default 1800).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
    /// Run in order, each as its own queue message (1–20 steps).
    pub steps: Vec<Step>,
}

/// One step; `kind` selects the variant.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Calls an external API. The URL's path and query, header values and body are templates
    /// (the scheme, host and port are written out, and must be a destination the egress
    /// policy allows); `{{secrets.NAME}}` is resolved from the tenant's secret store at run
    /// time and redacted from what is stored. A 2xx answer is success (redirects are not
    /// followed); its JSON (or `{"text": …}`) is the step output, narrowed by `output` when given.
    Http {
        name: String,
        /// GET, POST, PUT, PATCH or DELETE (default POST when there is a body, else GET).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        method: Option<String>,
        url: String,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        headers: BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<Object>)]
        body: Option<Value>,
        /// 1–120 seconds (default 30); a slower answer is a failure.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_seconds: Option<u32>,
        /// Output field → dotted path in the response (`{"urls": "data.urls"}`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<BTreeMap<String, String>>,
    },
    /// Builds JSON from `{{input.…}}` and `{{steps.NAME.output.…}}` templates.
    Transform {
        name: String,
        #[schema(value_type = Object)]
        template: Value,
    },
    /// Waits, using the queue's delivery delay (1–43200 seconds).
    Delay { name: String, seconds: u32 },
}

impl Step {
    pub fn name(&self) -> &str {
        match self {
            Step::Http { name, .. } | Step::Transform { name, .. } | Step::Delay { name, .. } => {
                name
            }
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Step::Http { .. } => "http",
            Step::Transform { .. } => "transform",
            Step::Delay { .. } => "delay",
        }
    }

    /// The effective HTTP method of an `http` step.
    pub fn method(method: &Option<String>, body: &Option<Value>) -> String {
        match method {
            Some(m) => m.to_ascii_uppercase(),
            None if body.is_some() => "POST".into(),
            None => "GET".into(),
        }
    }
}

impl WorkflowConfig {
    pub fn timeout_secs(&self) -> u32 {
        self.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECS)
    }

    /// Every rule a saved config must meet; errors name the field (`config.steps[1].url`).
    /// Step URLs must be destinations `egress` allows.
    pub fn check(&self, egress: &Policy, checks: &mut Checks) {
        if let Some(t) = self.timeout_seconds {
            if !(5..=86_400).contains(&t) {
                checks.add("config.timeout_seconds", "must be between 5 and 86400");
            }
        }
        if self.steps.is_empty() || self.steps.len() > MAX_STEPS {
            checks.add(
                "config.steps",
                format!("must have between 1 and {MAX_STEPS} steps"),
            );
        }
        let mut earlier: Vec<&str> = Vec::new();
        for (i, step) in self.steps.iter().enumerate() {
            let at = |field: &str| format!("config.steps[{i}].{field}");
            let name = step.name();
            if !valid_name(name) {
                checks.add(
                    &at("name"),
                    "must be 1–40 characters of a-z, 0-9 and _, starting with a letter",
                );
            } else if earlier.contains(&name) {
                checks.add(&at("name"), format!("`{name}` is used by an earlier step"));
            }
            match step {
                Step::Http {
                    method,
                    url,
                    headers,
                    body,
                    timeout_seconds,
                    output,
                    ..
                } => {
                    let m = Step::method(method, body);
                    if !HTTP_METHODS.contains(&m.as_str()) {
                        checks.add(
                            &at("method"),
                            format!("must be one of {}", HTTP_METHODS.join(", ")),
                        );
                    } else if m == "GET" && body.is_some() {
                        checks.add(&at("body"), "a GET request has no body");
                    }
                    check_url(url, egress, &earlier, &at("url"), checks);
                    for (k, v) in headers {
                        if !valid_header_name(k) {
                            checks.add(&at(&format!("headers.{k}")), "is not a valid header name");
                        } else if CREDENTIAL_HEADERS.contains(&k.to_ascii_lowercase().as_str())
                            && !v.contains("{{secrets.")
                        {
                            checks.add(
                                &at(&format!("headers.{k}")),
                                "credentials belong in the secret store: use {{secrets.NAME}}",
                            );
                        }
                        check_refs(
                            template::string_references(v),
                            &earlier,
                            true,
                            &at(&format!("headers.{k}")),
                            checks,
                        );
                    }
                    if let Some(b) = body {
                        check_refs(template::references(b), &earlier, true, &at("body"), checks);
                    }
                    if let Some(t) = timeout_seconds {
                        if !(1..=120).contains(t) {
                            checks.add(&at("timeout_seconds"), "must be between 1 and 120");
                        }
                    }
                    for (k, path) in output.iter().flatten() {
                        if k.is_empty() || path.is_empty() || path.split('.').any(str::is_empty) {
                            checks.add(
                                &at("output"),
                                "maps output names to dotted response paths like `data.urls`",
                            );
                            break;
                        }
                    }
                }
                Step::Transform { template, .. } => {
                    check_refs(
                        template::references(template),
                        &earlier,
                        false,
                        &at("template"),
                        checks,
                    );
                }
                Step::Delay { seconds, .. } => {
                    if *seconds < 1 || *seconds > MAX_DELAY_SECS {
                        checks.add(
                            &at("seconds"),
                            format!("must be between 1 and {MAX_DELAY_SECS}"),
                        );
                    }
                }
            }
            earlier.push(name);
        }
    }

    /// Names of the secrets a step reads.
    pub fn secrets_of(step: &Step) -> Vec<String> {
        let mut refs = Vec::new();
        if let Step::Http {
            url, headers, body, ..
        } = step
        {
            refs.extend(template::string_references(url).unwrap_or_default());
            for v in headers.values() {
                refs.extend(template::string_references(v).unwrap_or_default());
            }
            if let Some(b) = body {
                refs.extend(template::references(b).unwrap_or_default());
            }
        }
        let mut names: Vec<String> = refs
            .into_iter()
            .filter_map(|r| match r {
                Ref::Secret(n) => Some(n),
                _ => None,
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

fn valid_name(name: &str) -> bool {
    (1..=40).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c))
}

/// The origin (scheme, host, port) of an `http` step's URL template. It must be written out:
/// only what follows it (path, query) may use templates, so neither the input nor an earlier
/// step's output (nor a secret) decides where a request, and the secrets in it, go.
pub fn url_origin(url: &str) -> Result<Url, String> {
    let url = url.trim();
    let written = "the scheme, host and port must be written out: only the path and query may use {{…}} templates";
    let Some(sep) = url.find("://") else {
        return Err("must be an https:// URL".into());
    };
    let template = url.find("{{").unwrap_or(url.len());
    let authority = &url[sep + 3..];
    // Where the URL standard ends the host of an http(s) URL.
    let end = sep
        + 3
        + authority
            .find(['/', '\\', '?', '#'])
            .unwrap_or(authority.len());
    if template < end {
        return Err(written.into());
    }
    let origin = Url::parse(&url[..end]).map_err(|e| format!("is not a valid URL ({e})"))?;
    if !matches!(origin.scheme(), "https" | "http") {
        return Err("must be an https:// URL".into());
    }
    Ok(origin)
}

/// The URL an `http` step calls, once its template is rendered: it must keep the origin the
/// step wrote out (see `url_origin`) and be a destination `egress` allows.
pub fn rendered_url(template: &str, rendered: &str, egress: &Policy) -> Result<Url, String> {
    let origin = url_origin(template)?;
    let url = Url::parse(rendered.trim()).map_err(|e| format!("does not render to a URL ({e})"))?;
    if url.origin() != origin.origin() {
        return Err(
            "changed its origin (scheme, host or port) when its template was filled in".into(),
        );
    }
    egress.check(&url)?;
    Ok(url)
}

fn check_url(url: &str, egress: &Policy, earlier: &[&str], field: &str, checks: &mut Checks) {
    let trimmed = url.trim();
    if trimmed.is_empty() {
        checks.add(field, "is required");
        return;
    }
    if trimmed.len() > 2000 {
        checks.add(field, "must be at most 2000 characters");
        return;
    }
    match url_origin(trimmed) {
        Ok(origin) => {
            if let Err(why) = egress.check(&origin) {
                checks.add(field, why);
                return;
            }
        }
        Err(why) => {
            checks.add(field, why);
            return;
        }
    }
    if !trimmed.contains("{{") {
        if let Err(why) = egress.check_str(trimmed) {
            checks.add(field, why);
            return;
        }
    }
    check_refs(
        template::string_references(trimmed),
        earlier,
        true,
        field,
        checks,
    );
}

fn check_refs(
    refs: Result<Vec<Ref>, String>,
    earlier: &[&str],
    secrets_allowed: bool,
    field: &str,
    checks: &mut Checks,
) {
    let refs = match refs {
        Ok(r) => r,
        Err(m) => return checks.add(field, m),
    };
    for r in refs {
        match r {
            Ref::Step { name, .. } if !earlier.contains(&name.as_str()) => {
                checks.add(
                    field,
                    format!("refers to step `{name}`, which does not run before this step"),
                );
            }
            Ref::Secret(name) if !secrets_allowed => checks.add(
                field,
                format!(
                    "`{{{{secrets.{name}}}}}`: secrets may only be used in http steps, so they never reach an output"
                ),
            ),
            Ref::Secret(name) if !crate::settings::secrets::name_ok(&name) => {
                checks.add(field, format!("`{name}` is not a valid secret name"))
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::json::parse_json;
    use crate::platform::error::AppError;
    use serde_json::json;

    fn test_policy() -> Policy {
        Policy::new("127.0.0.1:8790", Some("https://api.tenantry.test")).unwrap()
    }

    fn errors(config: Value) -> Vec<(String, String)> {
        let cfg: WorkflowConfig = match parse_json(config.to_string().as_bytes()) {
            Ok(c) => c,
            Err(AppError::Validation(e)) => {
                return e.into_iter().map(|f| (f.field, f.message)).collect()
            }
            Err(e) => panic!("unexpected {e:?}"),
        };
        let mut checks = Checks::new();
        cfg.check(&test_policy(), &mut checks);
        match checks.finish() {
            Ok(()) => vec![],
            Err(AppError::Validation(e)) => e.into_iter().map(|f| (f.field, f.message)).collect(),
            Err(e) => panic!("unexpected {e:?}"),
        }
    }

    fn fields(config: Value) -> Vec<String> {
        errors(config).into_iter().map(|(f, _)| f).collect()
    }

    #[test]
    fn the_spec_example_is_valid() {
        let cfg = json!({"timeout_seconds": 1800, "steps": [
            {"name": "gen", "kind": "http", "method": "POST", "url": "https://api.example.com/v1/images",
             "headers": {"Authorization": "Bearer {{secrets.IMAGE_API_KEY}}"},
             "body": {"prompt": "{{input.prompt}}", "n": "{{input.count}}"}, "timeout_seconds": 30},
            {"name": "wait", "kind": "delay", "seconds": 5},
            {"name": "out", "kind": "transform", "template": {"urls": "{{steps.gen.output.data}}", "by": "{{input.user}}"}}
        ]});
        assert_eq!(errors(cfg), vec![]);
    }

    #[test]
    fn unknown_kinds_and_missing_urls_name_the_field() {
        let e = errors(json!({"steps": [{"name": "a", "kind": "shell", "cmd": "ls"}]}));
        assert_eq!(e[0].0, "steps[0].kind");
        assert!(e[0].1.contains("unknown variant `shell`"), "{e:?}");
        assert_eq!(
            fields(json!({"steps": [{"name": "a", "kind": "http"}]})),
            vec!["steps[0].url"]
        );
        assert_eq!(
            fields(json!({"steps": [{"name": "a", "kind": "delay", "seconds": 1, "extra": 1}]})),
            vec!["steps[0].extra"]
        );
    }

    #[test]
    fn names_must_be_unique_and_well_formed() {
        assert_eq!(
            fields(json!({"steps": [
                {"name": "a", "kind": "delay", "seconds": 1},
                {"name": "a", "kind": "delay", "seconds": 1},
                {"name": "Bad Name", "kind": "delay", "seconds": 1}
            ]})),
            vec!["config.steps[1].name", "config.steps[2].name"]
        );
        assert_eq!(fields(json!({"steps": []})), vec!["config.steps"]);
    }

    #[test]
    fn references_must_point_backwards_and_secrets_stay_in_http_steps() {
        let e = fields(json!({"steps": [
            {"name": "a", "kind": "transform", "template": {"x": "{{steps.b.output}}"}},
            {"name": "b", "kind": "transform", "template": {"k": "{{secrets.KEY}}"}},
            {"name": "c", "kind": "transform", "template": "{{ctx.x}}"},
            {"name": "d", "kind": "http", "url": "ftp://x", "method": "FETCH"},
            {"name": "e", "kind": "http", "url": "https://x/{{steps.a.output.id}}", "method": "get", "body": {}},
            {"name": "f", "kind": "delay", "seconds": 0},
            {"name": "g", "kind": "http", "url": "https://x", "headers": {"Authorization": "Bearer sk-live-123"}}
        ]}));
        assert_eq!(
            e,
            vec![
                "config.steps[0].template",
                "config.steps[1].template",
                "config.steps[2].template",
                "config.steps[3].method",
                "config.steps[3].url",
                "config.steps[4].body",
                "config.steps[5].seconds",
                "config.steps[6].headers.Authorization"
            ]
        );
    }

    #[test]
    fn secrets_of_a_step_are_listed_once() {
        let cfg: WorkflowConfig = serde_json::from_value(json!({"steps": [
            {"name": "a", "kind": "http", "url": "https://api.example.com/v1?k={{secrets.BASE}}",
             "headers": {"Authorization": "Bearer {{secrets.KEY}}"}, "body": {"k": "{{secrets.KEY}}"}}
        ]}))
        .unwrap();
        assert_eq!(
            WorkflowConfig::secrets_of(&cfg.steps[0]),
            vec!["BASE".to_string(), "KEY".to_string()]
        );
    }

    fn url_errors(url: &str) -> Vec<String> {
        errors(json!({"steps": [{"name": "a", "kind": "http", "url": url}]}))
            .into_iter()
            .map(|(f, m)| {
                assert_eq!(f, "config.steps[0].url");
                m
            })
            .collect()
    }

    #[test]
    fn step_urls_must_be_allowed_destinations() {
        for url in [
            "https://api.example.com/v1/{{input.path}}?q={{input.q}}",
            "https://api.example.com:8443?x={{secrets.K}}",
            "https://api.example.com#{{input.x}}",
            "http://127.0.0.1:8790/echo/{{input.key}}",
        ] {
            assert_eq!(url_errors(url), Vec::<String>::new(), "{url}");
        }
        for url in [
            "http://api.example.com/v1",
            "https://127.0.0.1/",
            "https://2130706433/",
            "https://0x7f.1/x/{{input.y}}",
            "https://169.254.169.254/latest/meta-data",
            "https://[::ffff:127.0.0.1]/",
            "https://[fd00:ec2::254]/",
            "https://localhost/",
            "https://svc.localhost/",
            "https://user:pass@api.example.com/",
            "https://api.tenantry.test/api/v1/users",
            "http://127.0.0.1:8791/",
            "https:///api.example.com/{{input.x}}",
        ] {
            assert_eq!(url_errors(url).len(), 1, "{url} should be refused");
        }
    }

    #[test]
    fn a_step_url_origin_may_not_be_templated() {
        for url in [
            "{{secrets.API_BASE}}/v1",
            "https://{{input.host}}/v1",
            "https://api.example.com{{input.path}}",
            "https://api.example.com.{{input.tld}}/x",
            "https://api.example.com:{{input.port}}/x",
            "https://{{steps.a.output.user}}@api.example.com/",
            "{{input.scheme}}://api.example.com/",
            "https://api.example.com\n{{input.x}}",
        ] {
            let e = url_errors(url);
            assert_eq!(e.len(), 1, "{url}: {e:?}");
            assert!(
                e[0].contains("written out") || e[0].contains("https://"),
                "{url}: {e:?}"
            );
        }
    }

    #[test]
    fn a_rendered_url_keeps_the_written_origin() {
        let p = test_policy();
        let ok = rendered_url(
            "https://api.example.com/v1/{{input.p}}",
            "https://api.example.com/v1/cats?x=1",
            &p,
        )
        .unwrap();
        assert_eq!(ok.host_str(), Some("api.example.com"));
        // What a path template could do to the host if the origin were not fixed: each is
        // refused at run time even if such a template got past saving.
        for (template, rendered) in [
            (
                "https://api.example.com/{{input.p}}",
                "https://api.example.com.evil.test/",
            ),
            (
                "https://api.example.com/{{input.p}}",
                "https://api.example.com@evil.test/",
            ),
            ("https://api.example.com/{{input.p}}", "https://evil.test/"),
            (
                "https://api.example.com/{{input.p}}",
                "http://api.example.com/",
            ),
            (
                "https://api.example.com/{{input.p}}",
                "https://api.example.com:444/",
            ),
            ("https://{{input.h}}/", "https://127.0.0.1/"),
        ] {
            assert!(
                rendered_url(template, rendered, &p).is_err(),
                "{template} -> {rendered}"
            );
        }
        // A backslash or `@` after the host is part of the path, so the host stays.
        let u = rendered_url(
            "https://api.example.com/{{input.p}}",
            "https://api.example.com/\\@evil.test/",
            &p,
        )
        .unwrap();
        assert_eq!(u.host_str(), Some("api.example.com"));
        // An allowed origin written out, refused when the policy no longer allows it.
        assert!(rendered_url(
            "http://127.0.0.1:8790/{{input.p}}",
            "http://127.0.0.1:8790/x",
            &Policy::default()
        )
        .is_err());
    }
}

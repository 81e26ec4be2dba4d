//! Typed configuration, read from vars and secrets (`.dev.vars` locally) once per isolate:
//! an isolate's bindings do not change while it lives (a redeploy starts new isolates).

use std::cell::RefCell;
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use worker::Env;

use crate::platform::error::{AppError, Result};
use crate::platform::plan::Plan;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Clone)]
pub struct Config {
    pub jwt_secret: Vec<u8>,
    /// AES-256-GCM key for secrets at rest, derived from `ENCRYPTION_KEY`.
    pub encryption_key: [u8; 32],
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub access_ttl_secs: i64,
    pub refresh_ttl_secs: i64,
    pub allowed_origins: Vec<String>,
    pub max_body_bytes: u64,
    /// Every per-plan limit and feature (`billing::plans`, with its var overrides).
    pub plans: crate::billing::plans::Catalogue,
    pub auth_budgets: AuthBudgets,
    /// WhatsApp Graph API: `{graph_api_base}/{graph_api_version}/{phone_number_id}/messages`.
    pub graph_api_base: String,
    pub graph_api_version: String,
    /// Outbound messages per second per WhatsApp number (token bucket rate and burst).
    pub send_rate_per_sec: f64,
    /// Largest single-request upload body (the worker holds it in memory); beyond it, use the
    /// multipart upload API.
    pub upload_max_request_bytes: u64,
    /// The OCR service (`POST` image bytes → `{text, confidence, pages}`).
    pub ocr_api_url: Option<String>,
    /// A test knob (`TEST_SKIP_DIRECT_SENDS`, job kinds such as `step,callback`): the sends
    /// made right after a commit are skipped for these kinds, as if the worker had died
    /// between the commit and the send. Unset (the default and production): none skipped.
    pub skip_direct_sends: Vec<String>,
    /// Where outbound calls may go (`EGRESS_ALLOW`, `API_BASE_URL`).
    pub egress: crate::platform::egress::Policy,
    /// Stripe: the API, its keys and the prices of the plans it sells.
    pub stripe: Stripe,
    pub llm: Llm,
    pub email: Email,
    /// `INVITATION_TTL_SECS` (7 days): how long an invitation's link works.
    pub invitation_ttl_secs: i64,
    /// `ANALYTICS_RETENTION_DAYS` (90): analytics events older than this are deleted by the sweep.
    pub analytics_retention_days: i64,
    /// `EXPORT_MAX_ROWS` (100,000): the most rows one `GET /export` streams; more → 422.
    pub export_max_rows: i64,
    /// Web push signing (`VAPID_PRIVATE_KEY`, `VAPID_SUBJECT`); unset: nothing is pushed and
    /// `GET /notifications/push-key` answers 503.
    pub push: Option<crate::push::keys::Vapid>,
    /// Sign in with Google and GitHub.
    pub oauth: OAuth,
}

/// A provider's OAuth client: both halves set, or the provider is not offered.
#[derive(Debug, Clone, PartialEq)]
pub struct OAuthClient {
    pub id: String,
    pub secret: String,
}

/// Social sign-in settings.
#[derive(Debug, Clone, PartialEq)]
pub struct OAuth {
    /// `OAUTH_GOOGLE_CLIENT_ID` + `OAUTH_GOOGLE_CLIENT_SECRET`.
    pub google: Option<OAuthClient>,
    /// `OAUTH_GITHUB_CLIENT_ID` + `OAUTH_GITHUB_CLIENT_SECRET`.
    pub github: Option<OAuthClient>,
    /// `OAUTH_GOOGLE_ISSUER` (default `https://accounts.google.com`): endpoints and JWKS come
    /// from its `/.well-known/openid-configuration`; ID tokens must name it as `iss`.
    pub google_issuer: String,
    /// `OAUTH_GITHUB_BASE` (default `https://github.com`): `/login/oauth/authorize` and
    /// `/login/oauth/access_token`.
    pub github_base: String,
    /// `OAUTH_GITHUB_API_BASE` (default `https://api.github.com`): `/user`, `/user/emails`.
    pub github_api_base: String,
    /// `OAUTH_REDIRECT_ALLOW`: the frontend URLs a flow may return to (exact match).
    pub redirect_allow: Vec<String>,
    /// `API_BASE_URL`, when set: the public origin the providers call back (else the request's).
    pub public_base: Option<String>,
}

fn oauth_client(env: &Env, provider: &str) -> Option<OAuthClient> {
    Some(OAuthClient {
        id: var(env, &format!("OAUTH_{provider}_CLIENT_ID"))?
            .trim()
            .to_string(),
        secret: var(env, &format!("OAUTH_{provider}_CLIENT_SECRET"))?
            .trim()
            .to_string(),
    })
}

fn base_url(env: &Env, name: &str, default: &str) -> String {
    var(env, name)
        .unwrap_or_else(|| default.into())
        .trim()
        .trim_end_matches('/')
        .to_string()
}

/// `OAUTH_REDIRECT_ALLOW`: comma-separated, each kept exactly as written (only the spaces
/// around the commas are dropped), since a redirect URI must match one to the byte.
pub fn parse_exact_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect()
}

/// Outbound e-mail (SendGrid v3 shape) and the links in it.
#[derive(Debug, Clone)]
pub struct Email {
    /// `EMAIL_API_URL` (e.g. `https://api.sendgrid.com/v3/mail/send`); unset: e-mail is stored
    /// `skipped`.
    pub api_url: Option<String>,
    pub api_key: Option<String>,
    /// `EMAIL_FROM`.
    pub from: String,
    /// `APP_BASE_URL`: the frontend links in mails point at.
    pub app_base_url: String,
}

/// The deployment's LLM provider settings (prompt optimisation), by provider prefix.
#[derive(Debug, Clone)]
pub struct Llm {
    /// `PROVIDER_TIMEOUT_SECS` (30): one provider call's deadline.
    pub timeout_secs: u64,
    /// `PROVIDER_RATE_PER_SEC` (5): batch items a tenant sends one provider per second.
    pub rate_per_sec: f64,
    pub providers: Vec<LlmVars>,
}

/// `{PREFIX}_API_BASE`, `{PREFIX}_API_KEY` (the deployment's own key, for plans with
/// `operator_llm_keys`) and `{PREFIX}_MODEL`.
#[derive(Debug, Clone)]
pub struct LlmVars {
    pub prefix: &'static str,
    pub base: Option<String>,
    pub key: Option<String>,
    pub model: Option<String>,
}

/// The providers' variable prefixes.
pub const LLM_PREFIXES: [&str; 5] = [
    "OPENAI",
    "ANTHROPIC",
    "DEEPSEEK",
    "GEMINI",
    "OPENAI_COMPATIBLE",
];

impl Llm {
    pub fn vars(&self, prefix: &str) -> Option<&LlmVars> {
        self.providers.iter().find(|v| v.prefix == prefix)
    }
}

/// Stripe settings. Without a secret key, billing routes answer `503 billing_unavailable`;
/// without a webhook secret, `POST /webhooks/stripe` refuses every event.
#[derive(Debug, Clone, PartialEq)]
pub struct Stripe {
    /// `STRIPE_API_BASE` (default `https://api.stripe.com`), no trailing slash.
    pub api_base: String,
    pub secret_key: Option<String>,
    /// `STRIPE_WEBHOOK_SECRET`, comma-separated: any of them may sign (rotation).
    pub webhook_secrets: Vec<String>,
    /// `STRIPE_WEBHOOK_TOLERANCE_SECS` (300): how far a signature's `t=` may be from now.
    pub webhook_tolerance_secs: i64,
    /// `STRIPE_PRICE_<PLAN>`: the Stripe price id each purchasable plan is sold at.
    pub prices: Vec<(Plan, String)>,
}

impl Stripe {
    /// The price a plan is sold at, if it is sold.
    pub fn price_of(&self, plan: Plan) -> Option<&str> {
        self.prices
            .iter()
            .find(|(p, _)| *p == plan)
            .map(|(_, id)| id.as_str())
    }

    /// The plan a Stripe price id stands for.
    pub fn plan_of(&self, price_id: &str) -> Option<Plan> {
        self.prices
            .iter()
            .find(|(_, id)| id == price_id)
            .map(|(p, _)| *p)
    }
}

/// A number of attempts per window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    pub limit: u32,
    pub window_secs: u32,
}

/// What guessing and sign-up cost: failed log-ins (and password checks) per client IP and
/// e-mail, failed log-ins per e-mail across IPs, and registrations per client IP.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AuthBudgets {
    pub login: Budget,
    pub account: Budget,
    pub register: Budget,
}

fn var(env: &Env, name: &str) -> Option<String> {
    env.var(name)
        .ok()
        .map(|v| v.to_string())
        .or_else(|| env.secret(name).ok().map(|v| v.to_string()))
        .filter(|v| !v.trim().is_empty())
}

fn num<T: std::str::FromStr>(env: &Env, name: &str, default: T) -> Result<T> {
    match var(env, name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| AppError::Internal(format!("config: {name} is not a number"))),
    }
}

impl Config {
    /// The isolate's configuration, read on first use. A broken configuration is not kept, so
    /// every request keeps answering its clear error until it is fixed.
    pub fn cached(env: &Env) -> Result<Rc<Config>> {
        thread_local! {
            static CONFIG: RefCell<Option<Rc<Config>>> = const { RefCell::new(None) };
        }
        if let Some(config) = CONFIG.with(|c| c.borrow().clone()) {
            return Ok(config);
        }
        let config = Rc::new(Config::from_env(env)?);
        CONFIG.with(|c| *c.borrow_mut() = Some(config.clone()));
        Ok(config)
    }

    pub fn from_env(env: &Env) -> Result<Config> {
        let jwt_secret = var(env, "JWT_SECRET").ok_or_else(|| {
            AppError::Internal("config: the JWT_SECRET secret is not set (run `make dev`)".into())
        })?;
        if jwt_secret.len() < 32 {
            return Err(AppError::Internal(
                "config: JWT_SECRET must be at least 32 characters".into(),
            ));
        }
        let encryption_key = var(env, "ENCRYPTION_KEY")
            .filter(|k| k.len() >= 32)
            .ok_or_else(|| {
                AppError::Internal(
                    "config: ENCRYPTION_KEY must be set to at least 32 characters (run `make dev`)"
                        .into(),
                )
            })?;
        Ok(Config {
            jwt_secret: jwt_secret.into_bytes(),
            encryption_key: crate::platform::crypto::derive_key(&encryption_key),
            jwt_issuer: var(env, "JWT_ISSUER").unwrap_or_else(|| "tenantry".into()),
            jwt_audience: var(env, "JWT_AUDIENCE").unwrap_or_else(|| "tenantry-api".into()),
            access_ttl_secs: num(env, "ACCESS_TOKEN_TTL_SECS", 900)?,
            refresh_ttl_secs: num(env, "REFRESH_TOKEN_TTL_SECS", 30 * 24 * 3600)?,
            allowed_origins: parse_origins(&var(env, "ALLOWED_ORIGINS").unwrap_or_default()),
            max_body_bytes: num(env, "MAX_BODY_BYTES", 1024 * 1024)?,
            plans: crate::billing::plans::Catalogue::from_vars(|name| var(env, name))
                .map_err(|e| AppError::Internal(format!("config: {e}")))?,
            auth_budgets: AuthBudgets {
                login: Budget {
                    limit: num(env, "AUTH_RATE_LIMIT", 5)?,
                    window_secs: num(env, "AUTH_RATE_WINDOW_SECS", 900)?,
                },
                account: Budget {
                    limit: num(env, "AUTH_ACCOUNT_RATE_LIMIT", 20)?,
                    window_secs: num(env, "AUTH_ACCOUNT_RATE_WINDOW_SECS", 3600)?,
                },
                register: Budget {
                    limit: num(env, "REGISTER_RATE_LIMIT", 10)?,
                    window_secs: num(env, "REGISTER_RATE_WINDOW_SECS", 3600)?,
                },
            },
            graph_api_base: var(env, "GRAPH_API_BASE")
                .unwrap_or_else(|| "https://graph.facebook.com".into())
                .trim_end_matches('/')
                .to_string(),
            graph_api_version: var(env, "GRAPH_API_VERSION").unwrap_or_else(|| "v21.0".into()),
            send_rate_per_sec: num(env, "SEND_RATE_PER_SEC", 80.0)?,
            upload_max_request_bytes: num(env, "UPLOAD_MAX_REQUEST_BYTES", 25 * 1024 * 1024)?,
            ocr_api_url: var(env, "OCR_API_URL"),
            skip_direct_sends: parse_origins(
                &var(env, "TEST_SKIP_DIRECT_SENDS").unwrap_or_default(),
            ),
            egress: crate::platform::egress::Policy::new(
                &var(env, "EGRESS_ALLOW").unwrap_or_default(),
                var(env, "API_BASE_URL").as_deref(),
            )
            .map_err(|e| AppError::Internal(format!("config: {e}")))?,
            stripe: Stripe {
                api_base: var(env, "STRIPE_API_BASE")
                    .unwrap_or_else(|| "https://api.stripe.com".into())
                    .trim_end_matches('/')
                    .to_string(),
                secret_key: var(env, "STRIPE_SECRET_KEY"),
                webhook_secrets: parse_origins(
                    &var(env, "STRIPE_WEBHOOK_SECRET").unwrap_or_default(),
                ),
                webhook_tolerance_secs: num(env, "STRIPE_WEBHOOK_TOLERANCE_SECS", 300)?,
                prices: Plan::NAMES
                    .iter()
                    .filter_map(|name| {
                        let plan = Plan::parse_offered(name)?;
                        let id = var(env, &format!("STRIPE_PRICE_{}", name.to_uppercase()))?;
                        Some((plan, id.trim().to_string()))
                    })
                    .collect(),
            },
            llm: Llm {
                timeout_secs: num(env, "PROVIDER_TIMEOUT_SECS", 30)?,
                rate_per_sec: num(env, "PROVIDER_RATE_PER_SEC", 5.0)?,
                providers: LLM_PREFIXES
                    .iter()
                    .map(|prefix| LlmVars {
                        prefix,
                        base: var(env, &format!("{prefix}_API_BASE"))
                            .map(|b| b.trim().trim_end_matches('/').to_string()),
                        key: var(env, &format!("{prefix}_API_KEY")).map(|k| k.trim().to_string()),
                        model: var(env, &format!("{prefix}_MODEL")).map(|m| m.trim().to_string()),
                    })
                    .collect(),
            },
            email: Email {
                api_url: var(env, "EMAIL_API_URL").map(|u| u.trim().to_string()),
                api_key: var(env, "EMAIL_API_KEY"),
                from: var(env, "EMAIL_FROM").unwrap_or_else(|| "no-reply@tenantry.dev".into()),
                app_base_url: var(env, "APP_BASE_URL")
                    .unwrap_or_else(|| "http://localhost:5173".into())
                    .trim_end_matches('/')
                    .to_string(),
            },
            invitation_ttl_secs: num(env, "INVITATION_TTL_SECS", 7 * 24 * 3600)?,
            analytics_retention_days: num(env, "ANALYTICS_RETENTION_DAYS", 90)?,
            export_max_rows: num(env, "EXPORT_MAX_ROWS", 100_000)?,
            push: crate::push::keys::Vapid::from_vars(
                var(env, "VAPID_PRIVATE_KEY").as_deref(),
                var(env, "VAPID_SUBJECT").as_deref(),
            )
            .map_err(|e| AppError::Internal(format!("config: {e}")))?,
            oauth: OAuth {
                google: oauth_client(env, "GOOGLE"),
                github: oauth_client(env, "GITHUB"),
                google_issuer: base_url(env, "OAUTH_GOOGLE_ISSUER", "https://accounts.google.com"),
                github_base: base_url(env, "OAUTH_GITHUB_BASE", "https://github.com"),
                github_api_base: base_url(env, "OAUTH_GITHUB_API_BASE", "https://api.github.com"),
                redirect_allow: parse_exact_list(
                    &var(env, "OAUTH_REDIRECT_ALLOW").unwrap_or_default(),
                ),
                public_base: var(env, "API_BASE_URL")
                    .map(|b| b.trim().trim_end_matches('/').to_string()),
            },
        })
    }
}

impl Config {
    /// Whether the direct send of a `kind` job after a commit is skipped (test knob).
    pub fn skips_direct_send(&self, kind: &str) -> bool {
        self.skip_direct_sends.iter().any(|k| k == kind)
    }
}

pub fn parse_origins(s: &str) -> Vec<String> {
    s.split(',')
        .map(|o| o.trim().trim_end_matches('/').to_string())
        .filter(|o| !o.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_trimmed() {
        assert_eq!(
            parse_origins(" https://a.example/ ,, http://localhost:3000"),
            vec!["https://a.example", "http://localhost:3000"]
        );
    }

    #[test]
    fn redirect_allow_entries_keep_their_exact_text() {
        assert_eq!(
            parse_exact_list(" https://app.example/cb/ ,,http://localhost:5173/x?a=1"),
            vec!["https://app.example/cb/", "http://localhost:5173/x?a=1"]
        );
    }

    /// Both Workers read the same settings: their `[vars]` blocks must not drift apart.
    #[test]
    fn both_workers_configs_carry_the_same_vars() {
        fn vars(toml: &str) -> Vec<&str> {
            toml.lines()
                .skip_while(|l| l.trim() != "[vars]")
                .skip(1)
                .take_while(|l| !l.trim_start().starts_with('['))
                .filter(|l| l.contains('='))
                .collect()
        }
        let api = vars(include_str!("../../wrangler.toml"));
        let jobs = vars(include_str!("../../queues/wrangler.toml"));
        assert!(!api.is_empty());
        assert_eq!(api, jobs);
    }
}

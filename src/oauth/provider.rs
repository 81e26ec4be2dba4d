//! The calls to the providers, every one through the egress policy with a deadline: Google's
//! discovery document and JWKS (kept per isolate for a while), the token endpoints with the
//! PKCE verifier, and GitHub's `/user` and `/user/emails`.

use std::cell::RefCell;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use worker::url::form_urlencoded;
use worker::{Headers, Method, Request, RequestInit};

use super::flow::GithubEmail;
use super::idtoken::Jwks;
use crate::platform::config::{Config, OAuthClient};
use crate::platform::egress::{fetch_text, timed_out};
use crate::platform::error::{AppError, Result};

const TIMEOUT: Duration = Duration::from_secs(10);
/// How long discovery documents and key sets are reused before being fetched again (a token
/// signed by a key not in the kept set fetches the set once more at once).
const CACHE_MS: i64 = 10 * 60 * 1000;

fn upstream(provider: &str, why: impl std::fmt::Display) -> AppError {
    worker::console_error!(
        "{}",
        serde_json::json!({"level": "warn", "event": "oauth.upstream", "provider": provider,
                           "error": why.to_string()})
    );
    AppError::refused(
        502,
        "upstream_error",
        format!("The sign-in provider ({provider}) could not be reached or answered unexpectedly."),
    )
}

/// The provider refused the authorization code (expired, reused, another client's, or a PKCE
/// verifier that does not match).
fn code_rejected(provider: &str, error: &str) -> AppError {
    AppError::refused(
        400,
        "oauth_code_rejected",
        format!("The sign-in provider ({provider}) refused the authorization code: {error}."),
    )
}

struct Answer {
    status: u16,
    text: String,
}

async fn call(
    cfg: &Config,
    provider: &str,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    form: Option<String>,
) -> Result<Answer> {
    let h = Headers::new();
    h.set("Accept", "application/json")?;
    h.set("User-Agent", "tenantry")?;
    for (name, value) in headers {
        h.set(name, value)?;
    }
    if form.is_some() {
        h.set("Content-Type", "application/x-www-form-urlencoded")?;
    }
    let mut init = RequestInit::new();
    init.with_method(method).with_headers(h);
    if let Some(body) = form {
        init.with_body(Some(body.into()));
    }
    let request = Request::new_with_init(url, &init).map_err(|e| upstream(provider, e))?;
    match fetch_text(&cfg.egress, request, TIMEOUT).await {
        Ok((status, text)) => Ok(Answer { status, text }),
        Err(why) if timed_out(&why) => Err(AppError::refused(
            504,
            "upstream_timeout",
            format!("The sign-in provider ({provider}) did not answer in time."),
        )),
        Err(why) => Err(upstream(provider, why)),
    }
}

fn json_of<T: DeserializeOwned>(provider: &str, what: &str, a: &Answer) -> Result<T> {
    if !(200..300).contains(&a.status) {
        return Err(upstream(provider, format!("{what}: HTTP {}", a.status)));
    }
    serde_json::from_str(&a.text).map_err(|e| upstream(provider, format!("{what}: {e}")))
}

/// What Google's `/.well-known/openid-configuration` says.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
}

thread_local! {
    static DISCOVERY: RefCell<Option<(String, i64, Discovery)>> = const { RefCell::new(None) };
    static KEYS: RefCell<Option<(String, i64, Jwks)>> = const { RefCell::new(None) };
}

pub async fn google_discovery(cfg: &Config, now_ms: i64) -> Result<Discovery> {
    let issuer = &cfg.oauth.google_issuer;
    let kept = DISCOVERY.with(|d| {
        d.borrow()
            .as_ref()
            .filter(|(i, at, _)| i == issuer && now_ms - at < CACHE_MS)
            .map(|(_, _, doc)| doc.clone())
    });
    if let Some(doc) = kept {
        return Ok(doc);
    }
    let url = format!("{issuer}/.well-known/openid-configuration");
    let a = call(cfg, "google", Method::Get, &url, &[], None).await?;
    let doc: Discovery = json_of("google", "openid-configuration", &a)?;
    DISCOVERY.with(|d| *d.borrow_mut() = Some((issuer.clone(), now_ms, doc.clone())));
    Ok(doc)
}

/// The provider's key set; `fresh` skips the kept copy (a key it lacks may be new).
pub async fn google_keys(cfg: &Config, jwks_uri: &str, now_ms: i64, fresh: bool) -> Result<Jwks> {
    let kept = KEYS.with(|k| {
        k.borrow()
            .as_ref()
            .filter(|(u, at, _)| !fresh && u == jwks_uri && now_ms - at < CACHE_MS)
            .map(|(_, _, keys)| keys.clone())
    });
    if let Some(keys) = kept {
        return Ok(keys);
    }
    let a = call(cfg, "google", Method::Get, jwks_uri, &[], None).await?;
    let keys: Jwks = json_of("google", "jwks", &a)?;
    KEYS.with(|k| *k.borrow_mut() = Some((jwks_uri.to_string(), now_ms, keys.clone())));
    Ok(keys)
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// The code grant (RFC 6749 §4.1.3 with the PKCE verifier): the token endpoint's JSON answer.
async fn token_grant(
    cfg: &Config,
    provider: &str,
    endpoint: &str,
    client: &OAuthClient,
    code: &str,
    verifier: &str,
    callback: &str,
) -> Result<Value> {
    let body = form(&[
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", callback),
        ("client_id", &client.id),
        ("client_secret", &client.secret),
        ("code_verifier", verifier),
    ]);
    let a = call(cfg, provider, Method::Post, endpoint, &[], Some(body)).await?;
    let value: Value = serde_json::from_str(&a.text).unwrap_or(Value::Null);
    // GitHub answers a refused code with 200 and an `error`; others with 400 (RFC 6749 §5.2).
    if let Some(error) = value.get("error").and_then(Value::as_str) {
        if (200..300).contains(&a.status) || a.status == 400 || a.status == 401 {
            return Err(code_rejected(provider, error));
        }
    }
    if !(200..300).contains(&a.status) || !value.is_object() {
        return Err(upstream(
            provider,
            format!("token endpoint: HTTP {}", a.status),
        ));
    }
    Ok(value)
}

/// Google: the ID token the code is traded for.
pub async fn google_id_token(
    cfg: &Config,
    doc: &Discovery,
    client: &OAuthClient,
    code: &str,
    verifier: &str,
    callback: &str,
) -> Result<String> {
    let v = token_grant(
        cfg,
        "google",
        &doc.token_endpoint,
        client,
        code,
        verifier,
        callback,
    )
    .await?;
    v.get("id_token")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| upstream("google", "the token answer has no id_token"))
}

/// GitHub: the access token the code is traded for.
pub async fn github_access_token(
    cfg: &Config,
    client: &OAuthClient,
    code: &str,
    verifier: &str,
    callback: &str,
) -> Result<String> {
    let endpoint = format!("{}/login/oauth/access_token", cfg.oauth.github_base);
    let v = token_grant(cfg, "github", &endpoint, client, code, verifier, callback).await?;
    v.get("access_token")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| upstream("github", "the token answer has no access_token"))
}

/// GitHub's `GET /user`.
#[derive(Debug, Deserialize)]
pub struct GithubUser {
    pub id: i64,
    pub login: String,
    #[serde(default)]
    pub name: Option<String>,
}

pub async fn github_user(cfg: &Config, token: &str) -> Result<(GithubUser, Vec<GithubEmail>)> {
    let base = &cfg.oauth.github_api_base;
    let auth = format!("Bearer {token}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Accept", "application/vnd.github+json"),
        ("X-GitHub-Api-Version", "2022-11-28"),
    ];
    let (user, emails) = futures_util::future::join(
        call(
            cfg,
            "github",
            Method::Get,
            &format!("{base}/user"),
            &headers,
            None,
        ),
        call(
            cfg,
            "github",
            Method::Get,
            &format!("{base}/user/emails"),
            &headers,
            None,
        ),
    )
    .await;
    Ok((
        json_of("github", "/user", &user?)?,
        json_of("github", "/user/emails", &emails?)?,
    ))
}

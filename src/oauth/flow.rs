//! The pure parts of a sign-in flow: providers, PKCE, the state cookie, the URLs handed to the
//! browser, GitHub's e-mail choice and the organisation a first sign-in creates.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use worker::Url;

use crate::platform::crypto::{constant_time_eq, open, seal};

/// The providers offered (`:provider` in the routes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Google,
    Github,
}

impl Provider {
    pub fn parse(s: &str) -> Option<Provider> {
        match s {
            "google" => Some(Provider::Google),
            "github" => Some(Provider::Github),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Google => "google",
            Provider::Github => "github",
        }
    }
}

/// How long a started flow may take to come back (the cookie's lifetime).
pub const FLOW_TTL_SECS: i64 = 600;

/// What the browser carries between start and callback, sealed (AES-256-GCM) in an HttpOnly
/// cookie: the state the callback must echo, the PKCE verifier, the ID-token nonce and where
/// the flow returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowState {
    pub provider: String,
    pub state: String,
    pub verifier: String,
    pub nonce: String,
    pub redirect_uri: String,
    pub expires_ms: i64,
}

const STATE_AAD: &str = "oauth_flow_state";

impl FlowState {
    pub fn seal(&self, key: &[u8; 32]) -> String {
        let json = serde_json::to_vec(self).expect("a flow state serialises");
        seal(key, STATE_AAD, &json)
    }

    /// The flow in `sealed`, if it opens with `key`, is for `provider` and has not expired.
    pub fn open(key: &[u8; 32], sealed: &str, provider: Provider, now_ms: i64) -> Option<Self> {
        let json = open(key, STATE_AAD, sealed).ok()?;
        let flow: FlowState = serde_json::from_slice(&json).ok()?;
        (flow.provider == provider.as_str() && flow.expires_ms > now_ms).then_some(flow)
    }

    /// Whether the callback's `state` is this flow's, compared in constant time.
    pub fn state_matches(&self, state: &str) -> bool {
        constant_time_eq(self.state.as_bytes(), state.as_bytes())
    }
}

/// The PKCE S256 challenge of a verifier (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The cookie that binds a flow to the browser that started it (one per provider).
pub fn cookie_name(provider: Provider) -> String {
    format!("tenantry_oauth_{}", provider.as_str())
}

/// A `Set-Cookie` value scoped to the provider's routes; `max_age` 0 clears it.
pub fn set_cookie(provider: Provider, value: &str, secure: bool, max_age: i64) -> String {
    format!(
        "{}={value}; Path=/api/v1/auth/oauth/{}/; Max-Age={max_age}; HttpOnly; SameSite=Lax{}",
        cookie_name(provider),
        provider.as_str(),
        if secure { "; Secure" } else { "" }
    )
}

/// A cookie's value in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// Whether `uri` is one of the allowed return URLs, to the byte.
pub fn redirect_allowed(allow: &[String], uri: &str) -> bool {
    allow.iter().any(|a| a == uri)
}

/// `endpoint` with the authorization request's parameters added (RFC 6749 §4.1.1 + PKCE;
/// OpenID's nonce where the provider issues ID tokens).
pub struct AuthorizeRequest<'a> {
    pub endpoint: &'a str,
    pub client_id: &'a str,
    pub callback: &'a str,
    pub scope: &'a str,
    pub state: &'a str,
    pub challenge: &'a str,
    pub nonce: Option<&'a str>,
}

impl AuthorizeRequest<'_> {
    pub fn url(&self) -> Result<String, String> {
        let mut url = Url::parse(self.endpoint)
            .map_err(|e| format!("the authorization endpoint `{}`: {e}", self.endpoint))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", self.client_id)
                .append_pair("redirect_uri", self.callback)
                .append_pair("scope", self.scope)
                .append_pair("state", self.state)
                .append_pair("code_challenge", self.challenge)
                .append_pair("code_challenge_method", "S256");
            if let Some(nonce) = self.nonce {
                q.append_pair("nonce", nonce);
            }
        }
        Ok(url.into())
    }
}

/// The allowed return URL with the one-time code added to its query.
pub fn with_code(redirect_uri: &str, code: &str) -> Result<String, String> {
    let mut url = Url::parse(redirect_uri).map_err(|e| format!("`{redirect_uri}`: {e}"))?;
    url.query_pairs_mut().append_pair("code", code);
    Ok(url.into())
}

/// One entry of GitHub's `GET /user/emails`.
#[derive(Debug, Clone, Deserialize)]
pub struct GithubEmail {
    pub email: String,
    #[serde(default)]
    pub primary: bool,
    #[serde(default)]
    pub verified: bool,
}

/// The account's primary e-mail, only if GitHub verified it (another verified address is not
/// the account's own choice, and an unverified one proves nothing).
pub fn primary_verified_email(emails: &[GithubEmail]) -> Option<&str> {
    emails
        .iter()
        .find(|e| e.primary)
        .filter(|e| e.verified)
        .map(|e| e.email.as_str())
}

/// The organisation a first sign-in creates: `"<name>'s organisation"` and a slug from the
/// e-mail's local part plus a random suffix (slugs are unique; nobody chose one).
pub fn new_organisation(full_name: &str, email: &str, suffix: &str) -> (String, String) {
    let local = email.split('@').next().unwrap_or_default();
    let mut slug = String::new();
    for c in local.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
        if slug.len() >= 40 {
            break;
        }
    }
    let slug = slug.trim_end_matches('-');
    let slug = if slug.is_empty() {
        format!("org-{suffix}")
    } else {
        format!("{slug}-{suffix}")
    };
    (
        format!("{}'s organisation", display_name(full_name, email)),
        slug,
    )
}

/// The name to show for a provider account: its own name, else the e-mail's local part, at
/// most 200 characters and without control characters.
pub fn display_name(name: &str, email: &str) -> String {
    let clean: String = name
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    if clean.trim().is_empty() {
        email
            .split('@')
            .next()
            .unwrap_or("user")
            .chars()
            .take(200)
            .collect()
    } else {
        clean.trim().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow() -> FlowState {
        FlowState {
            provider: "google".into(),
            state: "st-123".into(),
            verifier: "v".repeat(43),
            nonce: "n-1".into(),
            redirect_uri: "https://app.example/cb".into(),
            expires_ms: 10_000,
        }
    }

    #[test]
    fn pkce_challenge_matches_rfc7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn a_sealed_flow_opens_only_for_its_provider_key_and_lifetime() {
        let key = crate::platform::crypto::derive_key("k");
        let sealed = flow().seal(&key);
        assert_eq!(
            FlowState::open(&key, &sealed, Provider::Google, 9_999),
            Some(flow())
        );
        assert!(FlowState::open(&key, &sealed, Provider::Google, 10_000).is_none());
        assert!(FlowState::open(&key, &sealed, Provider::Github, 1).is_none());
        let other = crate::platform::crypto::derive_key("k2");
        assert!(FlowState::open(&other, &sealed, Provider::Google, 1).is_none());
        let mut tampered = sealed.clone();
        tampered.push('A');
        assert!(FlowState::open(&key, &tampered, Provider::Google, 1).is_none());
        assert!(FlowState::open(&key, "garbage", Provider::Google, 1).is_none());
    }

    #[test]
    fn the_state_must_match_exactly() {
        let f = flow();
        assert!(f.state_matches("st-123"));
        assert!(!f.state_matches("st-124"));
        assert!(!f.state_matches("st-12"));
        assert!(!f.state_matches(""));
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let h = "a=1; tenantry_oauth_google=xyz.abc; tenantry_oauth_github=q";
        assert_eq!(cookie_value(h, "tenantry_oauth_google"), Some("xyz.abc"));
        assert_eq!(cookie_value(h, "tenantry_oauth_github"), Some("q"));
        assert_eq!(cookie_value(h, "tenantry_oauth"), None);
        let c = set_cookie(Provider::Github, "v", true, 600);
        assert!(c.starts_with("tenantry_oauth_github=v; Path=/api/v1/auth/oauth/github/;"));
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Lax") && c.ends_with("Secure"));
        assert!(!set_cookie(Provider::Github, "", false, 0).contains("Secure"));
    }

    #[test]
    fn redirect_uris_match_to_the_byte() {
        let allow = vec!["https://app.example/cb".to_string()];
        assert!(redirect_allowed(&allow, "https://app.example/cb"));
        for bad in [
            "https://app.example/cb/",
            "https://app.example/cb?x=1",
            "https://APP.example/cb",
            "https://app.example/c",
            "",
        ] {
            assert!(!redirect_allowed(&allow, bad), "{bad}");
        }
    }

    #[test]
    fn the_authorize_url_carries_state_pkce_and_nonce() {
        let url = AuthorizeRequest {
            endpoint: "https://idp.example/auth?prompt=x",
            client_id: "cid",
            callback: "https://api.example/api/v1/auth/oauth/google/callback",
            scope: "openid email",
            state: "s&1",
            challenge: "ch",
            nonce: Some("n"),
        }
        .url()
        .unwrap();
        let parsed = Url::parse(&url).unwrap();
        let q: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("prompt"), Some("x"));
        assert_eq!(get("state"), Some("s&1"));
        assert_eq!(get("code_challenge_method"), Some("S256"));
        assert_eq!(get("nonce"), Some("n"));
        assert_eq!(get("scope"), Some("openid email"));
        assert_eq!(
            get("redirect_uri"),
            Some("https://api.example/api/v1/auth/oauth/google/callback")
        );
        assert_eq!(
            with_code("https://app.example/cb?x=1", "c/d").unwrap(),
            "https://app.example/cb?x=1&code=c%2Fd"
        );
    }

    #[test]
    fn only_a_verified_primary_github_email_counts() {
        let e = |email: &str, primary, verified| GithubEmail {
            email: email.into(),
            primary,
            verified,
        };
        assert_eq!(
            primary_verified_email(&[e("a@x.io", false, true), e("b@x.io", true, true)]),
            Some("b@x.io")
        );
        assert_eq!(
            primary_verified_email(&[e("a@x.io", false, true), e("b@x.io", true, false)]),
            None
        );
        assert_eq!(primary_verified_email(&[e("a@x.io", false, true)]), None);
        assert_eq!(primary_verified_email(&[]), None);
    }

    #[test]
    fn a_first_sign_in_gets_a_valid_unique_slug() {
        let (name, slug) = new_organisation("Ada Lovelace", "Ada.Lovelace+x@ex.io", "a1b2c3");
        assert_eq!(name, "Ada Lovelace's organisation");
        assert_eq!(slug, "ada-lovelace-x-a1b2c3");
        let (name, slug) = new_organisation("", "...@ex.io", "a1b2c3");
        assert_eq!(name, "...'s organisation");
        assert_eq!(slug, "org-a1b2c3");
        let (_, slug) = new_organisation("x", &format!("{}@ex.io", "z".repeat(64)), "0000aa");
        assert!(crate::http::json::slug(&slug).is_ok(), "{slug}");
        assert_eq!(display_name(" \u{7}Bob ", "b@x.io"), "Bob");
        assert_eq!(display_name("  ", "bob@x.io"), "bob");
    }
}

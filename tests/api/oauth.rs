//! Sign in with Google and GitHub against the mock's stand-in provider, following every
//! redirect by hand: start → the provider's authorize (auto-approved, with `mock_*` knobs for
//! the account and the bad cases) → the callback with the browser's cookie → the one-time
//! code's exchange. Linking an existing e-mail needs its logged-in user; identities are listed
//! and unlinked, never the last way in; other users' identities are 404.

use serde_json::{json, Value};

use crate::client::*;
use crate::harness::server;
use crate::workflows::mock_calls;

const RETURN_TO: &str = "https://app.example.com/oauth/done";

/// A started flow: the provider URL the browser is sent to, and the cookie it was given.
struct Started {
    authorize: String,
    cookie: String,
}

async fn start(provider: &str, redirect_uri: &str) -> Resp {
    let url = reqwest::Url::parse_with_params(
        &format!("{}/api/v1/auth/oauth/{provider}/start", server().base),
        &[("redirect_uri", redirect_uri)],
    )
    .unwrap();
    get(&format!("{}?{}", url.path(), url.query().unwrap()))
        .no_redirects()
        .send()
        .await
}

async fn begin(provider: &str) -> Started {
    let r = start(provider, RETURN_TO).await.expect(302);
    let set_cookie = r.header("set-cookie").expect("a state cookie").to_string();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    Started {
        authorize: r.header("location").unwrap().to_string(),
        cookie: set_cookie.split(';').next().unwrap().to_string(),
    }
}

fn query_of(url: &str) -> Vec<(String, String)> {
    let parsed = reqwest::Url::parse(url).unwrap();
    parsed.query_pairs().into_owned().collect()
}

fn param(url: &str, name: &str) -> Option<String> {
    query_of(url)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// The provider approves (as the account and fault the knobs name) and sends the browser
/// back: the worker's callback URL, as a path.
async fn approve(authorize: &str, knobs: &[(&str, &str)]) -> String {
    let mut url = reqwest::Url::parse(authorize).unwrap();
    for (k, v) in knobs {
        url.query_pairs_mut().append_pair(k, v);
    }
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = client.get(url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 302, "the provider approves");
    let back = r.headers()["location"].to_str().unwrap().to_string();
    back.strip_prefix(&server().base)
        .unwrap_or_else(|| panic!("the provider returns to the worker: {back}"))
        .to_string()
}

async fn callback(path: &str, cookie: &str) -> Resp {
    get(path)
        .header("Cookie", cookie)
        .no_redirects()
        .send()
        .await
}

/// The whole browser part: the one-time code the callback hands the frontend.
async fn code_for(provider: &str, knobs: &[(&str, &str)]) -> String {
    let s = begin(provider).await;
    let back = approve(&s.authorize, knobs).await;
    let r = callback(&back, &s.cookie).await.expect(302);
    let to = r.header("location").unwrap().to_string();
    assert!(to.starts_with(&format!("{RETURN_TO}?code=")), "{to}");
    assert!(!to.contains("token"), "tokens never ride in a URL: {to}");
    param(&to, "code").unwrap()
}

async fn exchange(code: &str) -> Resp {
    // A first sign-in draws on registration's per-IP budget: each exchange comes from an
    // address of its own.
    post("/api/v1/auth/oauth/exchange")
        .header("CF-Connecting-IP", &random_ip())
        .json(json!({ "code": code }))
        .send()
        .await
}

async fn sign_in(provider: &str, knobs: &[(&str, &str)]) -> Resp {
    let code = code_for(provider, knobs).await;
    exchange(&code).await
}

fn account(sub: &str, email: &str) -> Vec<(&'static str, String)> {
    vec![
        ("mock_sub", sub.to_string()),
        ("mock_email", email.to_string()),
    ]
}

fn knobs<'a>(a: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    a.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// A new person signs in: their session, e-mail and (subject, email).
async fn newcomer(provider: &str) -> (Session, String, String) {
    let u = unique();
    let sub = format!(
        "{}{}",
        10_000 + u.len(),
        u64::from_str_radix(&u[..8], 16).unwrap()
    );
    let email = format!("{provider}-{u}@example.com");
    let r = sign_in(provider, &knobs(&account(&sub, &email)))
        .await
        .expect(200);
    (session_from(r.data(), &email, ""), sub, email)
}

async fn identities(s: &Session) -> Vec<Value> {
    get("/api/v1/auth/identities")
        .token(&s.access)
        .send()
        .await
        .expect(200)
        .data()
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn google_sign_in_creates_an_organisation_and_logs_in_again() {
    let s = begin("google").await;
    for name in ["state", "nonce", "code_challenge", "redirect_uri"] {
        assert!(
            param(&s.authorize, name).is_some(),
            "{name} in {}",
            s.authorize
        );
    }
    assert_eq!(
        param(&s.authorize, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert!(param(&s.authorize, "redirect_uri")
        .unwrap()
        .ends_with("/api/v1/auth/oauth/google/callback"));

    let (me, sub, email) = newcomer("google").await;
    let r = get("/api/v1/auth/me")
        .token(&me.access)
        .send()
        .await
        .expect(200);
    assert_eq!(r.data()["user"]["email"], email.as_str());
    assert_eq!(r.data()["role"], "owner");
    assert_eq!(r.data()["tenant"]["id"], me.tenant_id.as_str());
    assert!(r.data()["tenant"]["name"]
        .as_str()
        .unwrap()
        .ends_with("organisation"));
    let ids = identities(&me).await;
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0]["provider"], "google");
    assert_eq!(ids[0]["subject"], sub.as_str());
    assert_eq!(ids[0]["email"], email.as_str());

    // The identity is linked now: signing in again is a log-in to the same account.
    let again = sign_in("google", &knobs(&account(&sub, &email)))
        .await
        .expect(200);
    assert_eq!(again.data()["user"]["id"], me.user_id.as_str());
    assert_eq!(again.data()["tenant"]["id"], me.tenant_id.as_str());
    // The refresh token of the pair works as any other.
    post("/api/v1/auth/refresh")
        .json(json!({"refresh_token": again.data()["refresh_token"]}))
        .send()
        .await
        .expect(200);
}

#[tokio::test]
async fn github_sign_in_creates_an_organisation_and_the_password_login_is_refused() {
    let (me, _, email) = newcomer("github").await;
    let r = get("/api/v1/auth/me")
        .token(&me.access)
        .send()
        .await
        .expect(200);
    assert_eq!(r.data()["user"]["email"], email.as_str());
    assert_eq!(r.data()["role"], "owner");
    assert_eq!(identities(&me).await[0]["provider"], "github");
    // The token request carried the PKCE verifier and the client's credentials.
    let calls = mock_calls("oauth").await;
    assert!(calls
        .iter()
        .any(|c| c["path"] == "/oauth/github/login/oauth/access_token"
            && c["body"].as_str().unwrap().contains("code_verifier=")));
    // A password-less account: no password opens it.
    for guess in ["", "!none", "correct horse battery"] {
        let r = login(&email, guess).await;
        assert!(r.status == 401 || r.status == 422, "{}", r.text);
    }
    login(&email, "!none")
        .await
        .problem(401, "invalid_credentials");
}

#[tokio::test]
async fn start_checks_the_provider_and_the_redirect_uri() {
    start("gitlab", RETURN_TO).await.problem(404, "not_found");
    for bad in [
        "https://app.example.com/oauth/done/",
        "https://app.example.com/oauth/done?x=1",
        "https://evil.example/oauth/done",
        "",
    ] {
        let r = start("github", bad).await.problem(422, "validation_failed");
        assert_eq!(r.body["errors"][0]["field"], "redirect_uri", "{bad}");
    }
    get("/api/v1/auth/oauth/google/start")
        .send()
        .await
        .problem(422, "validation_failed");
    // An allowed URI with its own query keeps it and gains the code.
    let r = start("github", "https://app.example.com/oauth/other?from=test")
        .await
        .expect(302);
    let cookie = r
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let back = approve(r.header("location").unwrap(), &[]).await;
    let to = callback(&back, &cookie).await.expect(302);
    let to = to.header("location").unwrap();
    assert!(
        to.starts_with("https://app.example.com/oauth/other?from=test&code="),
        "{to}"
    );
}

#[tokio::test]
async fn a_wrong_or_missing_state_or_cookie_is_refused() {
    let s = begin("google").await;
    let back = approve(&s.authorize, &[]).await;
    let tampered = back.replace("state=", "state=x");
    callback(&tampered, &s.cookie)
        .await
        .problem(400, "oauth_state_invalid");
    callback(&back, "")
        .await
        .problem(400, "oauth_state_invalid");
    // Another browser's flow (its own cookie) does not finish this one.
    let other = begin("google").await;
    callback(&back, &other.cookie)
        .await
        .problem(400, "oauth_state_invalid");
    // A cookie for the other provider does not either.
    let gh = begin("github").await;
    let forged = format!(
        "tenantry_oauth_google={}",
        gh.cookie.split_once('=').unwrap().1
    );
    callback(&back, &forged)
        .await
        .problem(400, "oauth_state_invalid");
    // The right pair still works (nothing above spent it).
    callback(&back, &s.cookie).await.expect(302);
}

#[tokio::test]
async fn codes_are_one_time() {
    let s = begin("github").await;
    let back = approve(&s.authorize, &[]).await;
    let r = callback(&back, &s.cookie).await.expect(302);
    // The provider's code is spent: the same callback again is refused.
    callback(&back, &s.cookie)
        .await
        .problem(400, "oauth_code_rejected");
    let code = param(r.header("location").unwrap(), "code").unwrap();
    exchange(&code).await.expect(200);
    exchange(&code).await.problem(400, "invalid_code");
    exchange("oac_made-up").await.problem(400, "invalid_code");
    exchange("").await.problem(422, "validation_failed");
    post("/api/v1/auth/oauth/exchange")
        .json(json!({"code": code, "extra": 1}))
        .send()
        .await
        .problem(422, "validation_failed");
}

#[tokio::test]
async fn bad_id_tokens_and_unverified_emails_are_refused() {
    for fault in ["signature", "aud", "expired", "nonce", "iss"] {
        let s = begin("google").await;
        let u = unique();
        let email = format!("bad-{u}@example.com");
        let back = approve(
            &s.authorize,
            &[
                ("mock_fault", fault),
                ("mock_sub", &u),
                ("mock_email", &email),
            ],
        )
        .await;
        let r = callback(&back, &s.cookie)
            .await
            .problem(401, "invalid_id_token");
        assert!(r.header("location").is_none(), "{fault}");
        // Nothing was created for the refused identity.
        login(&email, "x").await.problem(401, "invalid_credentials");
    }
    for (provider, fault) in [
        ("google", "unverified"),
        ("github", "unverified"),
        ("github", "no_primary"),
    ] {
        let s = begin(provider).await;
        let back = approve(&s.authorize, &[("mock_fault", fault)]).await;
        callback(&back, &s.cookie)
            .await
            .problem(403, "email_not_verified");
    }
    // The provider's refusal of the sign-in itself.
    let s = begin("github").await;
    let back = approve(&s.authorize, &[("mock_deny", "1")]).await;
    callback(&back, &s.cookie)
        .await
        .problem(400, "oauth_denied");
}

#[tokio::test]
async fn an_existing_email_is_linked_only_by_its_logged_in_user() {
    let owner = register().await;
    let sub = format!("77{}", u32::from_str_radix(&unique()[..6], 16).unwrap());
    let acct = account(&sub, &owner.email);
    let r = sign_in("google", &knobs(&acct))
        .await
        .problem(409, "link_required");
    let token = r.body["link_token"].as_str().unwrap().to_string();
    assert_eq!(r.body["provider"], "google");
    assert!(r.body.get("access_token").is_none());
    // Not linked silently: signing in again asks again.
    sign_in("google", &knobs(&acct))
        .await
        .problem(409, "link_required");

    let link = |provider: &'static str, s: Session, token: String| async move {
        post(&format!("/api/v1/auth/oauth/{provider}/link"))
            .token(&s.access)
            .json(json!({ "link_token": token }))
            .send()
            .await
    };
    // Another user, the wrong provider, no session, a made-up token: refused.
    let stranger = register().await;
    link("google", stranger.clone(), token.clone())
        .await
        .problem(400, "invalid_link_token");
    link("github", owner.clone(), token.clone())
        .await
        .problem(400, "invalid_link_token");
    link("gitlab", owner.clone(), token.clone())
        .await
        .problem(404, "not_found");
    post("/api/v1/auth/oauth/google/link")
        .json(json!({ "link_token": token }))
        .send()
        .await
        .problem(401, "unauthorized");
    link("google", owner.clone(), "olk_nope".into())
        .await
        .problem(400, "invalid_link_token");
    post("/api/v1/auth/oauth/google/link")
        .token(&owner.access)
        .json(json!({ "token": token }))
        .send()
        .await
        .problem(422, "validation_failed");

    let linked = link("google", owner.clone(), token.clone())
        .await
        .expect(201);
    assert_eq!(linked.data()["provider"], "google");
    link("google", owner.clone(), token)
        .await
        .problem(400, "invalid_link_token");
    // Now the identity logs the owner in.
    let r = sign_in("google", &knobs(&acct)).await.expect(200);
    assert_eq!(r.data()["user"]["id"], owner.user_id.as_str());
    // The audit trail has the link.
    let audit = get("/api/v1/audit-logs?limit=100")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    let actions: Vec<&str> = audit
        .data()
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["action"].as_str())
        .collect();
    for action in [
        "auth.oauth_link_required",
        "auth.oauth_linked",
        "auth.oauth_login",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
}

#[tokio::test]
async fn identities_are_unlinked_but_never_the_last_way_in() {
    // A password-less owner with a Google identity, who then links GitHub (same e-mail).
    let (me, _, email) = newcomer("google").await;
    let gh_sub = format!("9{}", u32::from_str_radix(&unique()[..6], 16).unwrap());
    let gh = account(&gh_sub, &email);
    let r = sign_in("github", &knobs(&gh))
        .await
        .problem(409, "link_required");
    post("/api/v1/auth/oauth/github/link")
        .token(&me.access)
        .json(json!({"link_token": r.body["link_token"]}))
        .send()
        .await
        .expect(201);
    let ids = identities(&me).await;
    assert_eq!(ids.len(), 2);
    let (google_id, github_id) = (
        ids.iter().find(|i| i["provider"] == "google").unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string(),
        ids.iter().find(|i| i["provider"] == "github").unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string(),
    );

    // Someone else's identity is not found, for them as for a missing one.
    let stranger = register().await;
    delete(&format!("/api/v1/auth/identities/{google_id}"))
        .token(&stranger.access)
        .send()
        .await
        .problem(404, "not_found");
    assert!(identities(&stranger).await.is_empty());
    delete("/api/v1/auth/identities/oid_missing")
        .token(&me.access)
        .send()
        .await
        .problem(404, "not_found");
    get("/api/v1/auth/identities")
        .send()
        .await
        .problem(401, "unauthorized");

    delete(&format!("/api/v1/auth/identities/{google_id}"))
        .token(&me.access)
        .send()
        .await
        .expect(204);
    delete(&format!("/api/v1/auth/identities/{github_id}"))
        .token(&me.access)
        .send()
        .await
        .problem(409, "last_login_method");
    assert_eq!(identities(&me).await.len(), 1);

    // A user with a password may unlink their only identity.
    let owner = register().await;
    let sub = format!("66{}", u32::from_str_radix(&unique()[..6], 16).unwrap());
    let r = sign_in("github", &knobs(&account(&sub, &owner.email)))
        .await
        .problem(409, "link_required");
    let linked = post("/api/v1/auth/oauth/github/link")
        .token(&owner.access)
        .json(json!({"link_token": r.body["link_token"]}))
        .send()
        .await
        .expect(201);
    delete(&format!(
        "/api/v1/auth/identities/{}",
        linked.data()["id"].as_str().unwrap()
    ))
    .token(&owner.access)
    .send()
    .await
    .expect(204);
    assert!(identities(&owner).await.is_empty());
}

#[tokio::test]
async fn a_suspended_organisation_cannot_sign_in() {
    let (me, sub, email) = newcomer("github").await;
    let admin = admin().await;
    patch(&format!("/api/v1/admin/tenants/{}", me.tenant_id))
        .token(&admin.access)
        .json(json!({"status": "suspended"}))
        .send()
        .await
        .expect(200);
    sign_in("github", &knobs(&account(&sub, &email)))
        .await
        .problem(403, "account_suspended");
}

#[tokio::test]
async fn identities_need_a_user_session_not_an_api_key() {
    let owner = register().await;
    let key = post("/api/v1/api-keys")
        .token(&owner.access)
        .json(json!({"name": "ci", "scopes": ["admin"]}))
        .send()
        .await
        .expect(201);
    let key = key.data()["key"].as_str().unwrap().to_string();
    get("/api/v1/auth/identities")
        .header("X-API-Key", &key)
        .send()
        .await
        .problem(403, "forbidden");
    post("/api/v1/auth/oauth/google/link")
        .header("X-API-Key", &key)
        .json(json!({"link_token": "olk_x"}))
        .send()
        .await
        .problem(403, "forbidden");
    // A member (the lowest role) manages their own identities.
    let member = add_user(&owner, "member").await;
    assert!(identities(&member).await.is_empty());
}

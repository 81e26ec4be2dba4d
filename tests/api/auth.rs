//! Registration, log-in, refresh rotation and reuse detection, log-out, password change,
//! suspension, and the auth rate limit.

use serde_json::json;

use crate::client::*;

#[tokio::test]
async fn registering_creates_a_tenant_and_its_owner_with_tokens() {
    let u = unique();
    let r = post("/api/v1/auth/register")
        .json(json!({"email": format!("New-{u}@Example.com"), "password": "a long password",
                     "full_name": "Nia New", "organization_name": "New Org", "organization_slug": format!("new-{u}")}))
        .send()
        .await
        .expect(201);
    let d = r.data();
    assert_eq!(d["token_type"], "Bearer");
    assert_eq!(d["expires_in"], 900);
    assert!(d["refresh_token"].as_str().unwrap().starts_with("rt_"));
    assert_eq!(d["user"]["email"], format!("new-{u}@example.com"));
    assert_eq!(d["user"]["role"], "owner");
    assert_eq!(d["tenant"]["slug"], format!("new-{u}"));
    assert_eq!(d["tenant"]["plan"], "free");
    assert!(d["user"].get("password_hash").is_none());
}

#[tokio::test]
async fn a_taken_email_or_slug_is_409() {
    let s = register().await;
    let u = unique();
    post("/api/v1/auth/register")
        .json(
            json!({"email": s.email, "password": "a long password", "full_name": "X",
                     "organization_name": "X", "organization_slug": format!("x-{u}")}),
        )
        .send()
        .await
        .problem(409, "conflict");
    let me = get("/api/v1/auth/me")
        .token(&s.access)
        .send()
        .await
        .expect(200);
    let slug = me.data()["tenant"]["slug"].as_str().unwrap().to_string();
    post("/api/v1/auth/register")
        .json(json!({"email": format!("y-{u}@example.com"), "password": "a long password", "full_name": "Y",
                     "organization_name": "Y", "organization_slug": slug}))
        .send()
        .await
        .problem(409, "conflict");
}

#[tokio::test]
async fn registration_reports_every_bad_field() {
    let r = post("/api/v1/auth/register")
        .json(
            json!({"email": "not-an-email", "password": "short", "full_name": "",
                     "organization_name": "Ok", "organization_slug": "Bad Slug"}),
        )
        .send()
        .await
        .problem(422, "validation_failed");
    let fields: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["email", "password", "full_name", "organization_slug"]
    );
    post("/api/v1/auth/register")
        .json(json!({"email": "a@example.com"}))
        .send()
        .await
        .problem(422, "validation_failed");
}

#[tokio::test]
async fn login_returns_tokens_and_me_describes_the_caller() {
    let s = register().await;
    let r = login(&s.email, &s.password).await.expect(200);
    let d = r.data();
    assert_eq!(d["token_type"], "Bearer");
    assert!(d["user"]["last_login"].is_string());
    let me = get("/api/v1/auth/me")
        .token(d["access_token"].as_str().unwrap())
        .send()
        .await
        .expect(200);
    assert_eq!(me.data()["user"]["id"], s.user_id.as_str());
    assert_eq!(me.data()["tenant"]["id"], s.tenant_id.as_str());
    assert_eq!(me.data()["role"], "owner");
}

#[tokio::test]
async fn unknown_email_and_wrong_password_get_the_same_answer() {
    let s = register().await;
    let a = login(&s.email, "wrong password!")
        .await
        .problem(401, "invalid_credentials");
    let b = login(
        &format!("nobody-{}@example.com", unique()),
        "wrong password!",
    )
    .await
    .problem(401, "invalid_credentials");
    assert_eq!(a.body["detail"], b.body["detail"]);
    assert_eq!(a.body["title"], b.body["title"]);
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_token_revokes_the_family() {
    let s = register().await;
    let r1 = post("/api/v1/auth/refresh")
        .json(json!({"refresh_token": s.refresh}))
        .send()
        .await
        .expect(200);
    let second = r1.data()["refresh_token"].as_str().unwrap().to_string();
    let access2 = r1.data()["access_token"].as_str().unwrap().to_string();
    assert_ne!(second, s.refresh);
    get("/api/v1/auth/me")
        .token(&access2)
        .send()
        .await
        .expect(200);

    // The first token again: reuse. The family (including the newer token) is revoked.
    post("/api/v1/auth/refresh")
        .json(json!({"refresh_token": s.refresh}))
        .send()
        .await
        .problem(401, "token_reused");
    post("/api/v1/auth/refresh")
        .json(json!({"refresh_token": second}))
        .send()
        .await
        .problem(401, "invalid_token");
    get("/api/v1/auth/me")
        .token(&access2)
        .send()
        .await
        .problem(401, "invalid_token");
}

#[tokio::test]
async fn an_unknown_refresh_token_is_401() {
    post("/api/v1/auth/refresh")
        .json(json!({"refresh_token": "rt_made_up"}))
        .send()
        .await
        .problem(401, "invalid_token");
    post("/api/v1/auth/refresh")
        .json(json!({}))
        .send()
        .await
        .problem(422, "validation_failed");
}

#[tokio::test]
async fn logout_ends_the_session() {
    let s = register().await;
    post("/api/v1/auth/logout")
        .token(&s.access)
        .json(json!({"refresh_token": s.refresh}))
        .send()
        .await
        .expect(204);
    post("/api/v1/auth/refresh")
        .json(json!({"refresh_token": s.refresh}))
        .send()
        .await
        .problem(401, "invalid_token");
    get("/api/v1/auth/me")
        .token(&s.access)
        .send()
        .await
        .problem(401, "invalid_token");
    post("/api/v1/auth/logout")
        .json(json!({"refresh_token": "x"}))
        .send()
        .await
        .problem(401, "unauthorized");
}

#[tokio::test]
async fn changing_the_password_needs_the_current_one_and_ends_other_sessions() {
    let s = register().await;
    let other = session_from(
        login(&s.email, &s.password).await.expect(200).data(),
        &s.email,
        &s.password,
    );
    post("/api/v1/auth/password")
        .token(&s.access)
        .json(json!({"current_password": "not it at all", "new_password": "a brand new password"}))
        .send()
        .await
        .problem(403, "invalid_credentials");
    post("/api/v1/auth/password")
        .token(&s.access)
        .json(json!({"current_password": s.password, "new_password": "short"}))
        .send()
        .await
        .problem(422, "validation_failed");
    post("/api/v1/auth/password")
        .token(&s.access)
        .json(json!({"current_password": s.password, "new_password": "a brand new password"}))
        .send()
        .await
        .expect(204);
    get("/api/v1/auth/me")
        .token(&s.access)
        .send()
        .await
        .expect(200);
    get("/api/v1/auth/me")
        .token(&other.access)
        .send()
        .await
        .problem(401, "invalid_token");
    login(&s.email, &s.password)
        .await
        .problem(401, "invalid_credentials");
    login(&s.email, "a brand new password").await.expect(200);
}

#[tokio::test]
async fn failed_logins_are_limited_per_ip_and_email() {
    let s = register().await;
    for _ in 0..5 {
        let r = login(&s.email, "wrong password!")
            .await
            .problem(401, "invalid_credentials");
        assert_eq!(r.header("ratelimit-limit"), Some("5"));
    }
    let r = login(&s.email, "wrong password!")
        .await
        .problem(429, "rate_limited");
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    assert_eq!(r.header("ratelimit-remaining"), Some("0"));
    // Even the right password waits: the budget protects the account.
    login(&s.email, &s.password)
        .await
        .problem(429, "rate_limited");
    // Another e-mail from the same address is not affected.
    let other = register().await;
    login(&other.email, &other.password).await.expect(200);
}

#[tokio::test]
async fn a_suspended_user_cannot_log_in_or_use_a_live_token() {
    let owner = register().await;
    let member = add_user(&owner, "member").await;
    patch(&format!("/api/v1/users/{}", member.user_id))
        .token(&owner.access)
        .json(json!({"status": "suspended"}))
        .send()
        .await
        .expect(200);
    get("/api/v1/auth/me")
        .token(&member.access)
        .send()
        .await
        .expect(401);
    login(&member.email, &member.password)
        .await
        .problem(403, "account_suspended");
}

#[tokio::test]
async fn the_seeded_demo_logins_work() {
    let pw = &crate::harness::server().demo_password;
    for email in ["owner@northwind.demo", "agent@blueharbor.demo"] {
        let r = login(email, pw).await.expect(200);
        assert_eq!(r.data()["user"]["email"], email);
    }
    let r = admin().await;
    let me = get("/api/v1/auth/me")
        .token(&r.access)
        .send()
        .await
        .expect(200);
    assert_eq!(me.data()["role"], "platform_admin");
}

/// Log-ins from one client address (the edge's `CF-Connecting-IP`).
async fn login_from(ip: &str, email: &str, password: &str) -> Resp {
    post("/api/v1/auth/login")
        .header("CF-Connecting-IP", ip)
        .json(json!({"email": email, "password": password}))
        .send()
        .await
}

fn statuses(rs: &[Resp]) -> (usize, usize) {
    let count = |code| rs.iter().filter(|r| r.status == code).count();
    (count(401), count(429))
}

#[tokio::test]
async fn parallel_wrong_passwords_get_exactly_the_budget_then_429() {
    let s = register().await;
    let ip = random_ip();
    let tries = (0..20).map(|_| login_from(&ip, &s.email, "wrong password!"));
    let rs = exclusive(futures::future::join_all(tries)).await;
    assert_eq!(
        statuses(&rs),
        (5, 15),
        "{:?}",
        rs.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    // A right password does not count: the next right one still gets in from another address.
    login_from("203.0.113.9", &s.email, &s.password)
        .await
        .expect(200);
    login_from("203.0.113.9", &s.email, &s.password)
        .await
        .expect(200);
}

#[tokio::test]
async fn failures_across_addresses_are_limited_per_account() {
    let s = register().await;
    // Five wrong passwords from each of four addresses spend the account's 20 per hour.
    for i in 0..4 {
        for _ in 0..5 {
            login_from(&format!("192.0.2.{}", 10 + i), &s.email, "wrong password!")
                .await
                .problem(401, "invalid_credentials");
        }
    }
    let r = login_from("192.0.2.99", &s.email, "wrong password!")
        .await
        .problem(429, "rate_limited");
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    // The account is protected from every address; other accounts are not affected.
    login_from("192.0.2.98", &s.email, &s.password)
        .await
        .problem(429, "rate_limited");
    let other = register().await;
    login_from("192.0.2.99", &other.email, &other.password)
        .await
        .expect(200);
}

#[tokio::test]
async fn registrations_are_limited_per_address() {
    let ip = random_ip();
    let attempt = |n: usize| {
        let u = unique();
        let ip = ip.clone();
        async move {
            post("/api/v1/auth/register")
                .header("CF-Connecting-IP", &ip)
                .json(json!({
                    "email": format!("reg{n}-{u}@example.com"), "password": "correct horse battery",
                    "full_name": "Rita", "organization_name": format!("Org {u}"),
                    "organization_slug": format!("reg-{u}")
                }))
                .send()
                .await
        }
    };
    for n in 0..10 {
        attempt(n).await.expect(201);
    }
    let r = attempt(10).await.problem(429, "rate_limited");
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
}

#[tokio::test]
async fn parallel_wrong_current_passwords_get_exactly_the_budget_then_429() {
    let s = register().await;
    let tries = (0..12).map(|_| {
        post("/api/v1/auth/password")
            .token(&s.access)
            .json(json!({"current_password": "not it at all", "new_password": "a brand new password"}))
            .send()
    });
    let rs = exclusive(futures::future::join_all(tries)).await;
    let count = |code| rs.iter().filter(|r| r.status == code).count();
    assert_eq!((count(403), count(429)), (5, 7));
}

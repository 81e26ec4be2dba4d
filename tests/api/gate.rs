//! The tenant gate admits session tokens from a cache: every change that admits or refuses a
//! token, or changes what `/auth/me` shows, applies to that token's very next request. Each
//! test uses the token once first, so the gate has it cached when the change lands.

use serde_json::json;

use crate::client::*;

async fn me(s: &Session) -> Resp {
    get("/api/v1/auth/me").token(&s.access).send().await
}

#[tokio::test]
async fn a_role_change_applies_to_the_next_request_of_a_live_token() {
    let owner = register().await;
    let admin = add_user(&owner, "admin").await;
    get("/api/v1/users")
        .token(&admin.access)
        .send()
        .await
        .expect(200);
    let path = format!("/api/v1/users/{}", admin.user_id);
    patch(&path)
        .token(&owner.access)
        .json(json!({"role": "member"}))
        .send()
        .await
        .expect(200);
    // The token still claims `admin`; the stored role decides.
    get("/api/v1/users")
        .token(&admin.access)
        .send()
        .await
        .problem(403, "forbidden");
    assert_eq!(me(&admin).await.expect(200).data()["role"], "member");
    patch(&path)
        .token(&owner.access)
        .json(json!({"role": "admin"}))
        .send()
        .await
        .expect(200);
    get("/api/v1/users")
        .token(&admin.access)
        .send()
        .await
        .expect(200);
}

#[tokio::test]
async fn a_suspended_users_next_request_with_a_live_token_is_refused() {
    let owner = register().await;
    let member = add_user(&owner, "member").await;
    me(&member).await.expect(200);
    patch(&format!("/api/v1/users/{}", member.user_id))
        .token(&owner.access)
        .json(json!({"status": "suspended"}))
        .send()
        .await
        .expect(200);
    // Suspension also ends the user's sessions, so the token is refused as ended.
    me(&member).await.problem(401, "invalid_token");
    login(&member.email, &member.password)
        .await
        .problem(403, "account_suspended");
}

#[tokio::test]
async fn logging_out_ends_a_used_token_on_its_next_request() {
    let s = register().await;
    me(&s).await.expect(200);
    post("/api/v1/auth/logout")
        .token(&s.access)
        .json(json!({"refresh_token": s.refresh}))
        .send()
        .await
        .expect(204);
    me(&s).await.problem(401, "invalid_token");
}

#[tokio::test]
async fn a_password_change_ends_the_other_used_sessions_on_their_next_request() {
    let s = register().await;
    let other = session_from(
        login(&s.email, &s.password).await.expect(200).data(),
        &s.email,
        &s.password,
    );
    me(&s).await.expect(200);
    me(&other).await.expect(200);
    post("/api/v1/auth/password")
        .token(&s.access)
        .json(json!({"current_password": s.password, "new_password": "a brand new password"}))
        .send()
        .await
        .expect(204);
    me(&s).await.expect(200);
    me(&other).await.problem(401, "invalid_token");
}

#[tokio::test]
async fn a_reused_refresh_token_ends_its_used_access_token() {
    let s = register().await;
    me(&s).await.expect(200);
    post("/api/v1/auth/refresh")
        .json(json!({"refresh_token": s.refresh}))
        .send()
        .await
        .expect(200);
    post("/api/v1/auth/refresh")
        .json(json!({"refresh_token": s.refresh}))
        .send()
        .await
        .problem(401, "token_reused");
    me(&s).await.problem(401, "invalid_token");
}

#[tokio::test]
async fn suspending_a_tenant_locks_out_its_used_tokens_on_their_next_request() {
    let admin = admin().await;
    let owner = register().await;
    let member = add_user(&owner, "member").await;
    me(&owner).await.expect(200);
    me(&member).await.expect(200);
    let path = format!("/api/v1/admin/tenants/{}", owner.tenant_id);
    patch(&path)
        .token(&admin.access)
        .json(json!({"status": "suspended"}))
        .send()
        .await
        .expect(200);
    me(&owner).await.problem(401, "invalid_token");
    me(&member).await.problem(401, "invalid_token");
    patch(&path)
        .token(&admin.access)
        .json(json!({"status": "active"}))
        .send()
        .await
        .expect(200);
    let back = login(&owner.email, &owner.password).await.expect(200);
    let back = session_from(back.data(), &owner.email, &owner.password);
    assert_eq!(
        me(&back).await.expect(200).data()["tenant"]["status"],
        "active"
    );
}

#[tokio::test]
async fn me_reflects_a_name_change_at_once() {
    let owner = register().await;
    let member = add_user(&owner, "member").await;
    assert_eq!(
        me(&owner).await.expect(200).data()["user"]["full_name"],
        "Olga Owner"
    );
    me(&member).await.expect(200);
    patch(&format!("/api/v1/users/{}", owner.user_id))
        .token(&owner.access)
        .json(json!({"full_name": "Olga Renamed"}))
        .send()
        .await
        .expect(200);
    patch(&format!("/api/v1/users/{}", member.user_id))
        .token(&owner.access)
        .json(json!({"full_name": "Max Renamed"}))
        .send()
        .await
        .expect(200);
    assert_eq!(
        me(&owner).await.expect(200).data()["user"]["full_name"],
        "Olga Renamed"
    );
    assert_eq!(
        me(&member).await.expect(200).data()["user"]["full_name"],
        "Max Renamed"
    );
}

#[tokio::test]
async fn a_plan_change_moves_the_budget_on_the_next_request() {
    let admin = admin().await;
    let owner = register().await;
    let r = me(&owner).await.expect(200);
    assert_eq!(r.header("ratelimit-limit"), Some("100"));
    assert_eq!(r.data()["tenant"]["plan"], "free");
    patch(&format!("/api/v1/admin/tenants/{}", owner.tenant_id))
        .token(&admin.access)
        .json(json!({"plan": "starter"}))
        .send()
        .await
        .expect(200);
    let r = me(&owner).await.expect(200);
    assert_eq!(r.header("ratelimit-limit"), Some("300"));
    assert_eq!(r.data()["tenant"]["plan"], "starter");
}

#[tokio::test]
async fn an_api_key_and_its_tenants_users_draw_from_one_budget() {
    let owner = register().await;
    let key = post("/api/v1/api-keys")
        .token(&owner.access)
        .json(json!({"name": "ci", "scopes": ["read", "admin"]}))
        .send()
        .await
        .expect(201);
    let key = key.data()["key"].as_str().unwrap().to_string();
    let remaining = |r: &Resp| -> u32 { r.header("ratelimit-remaining").unwrap().parse().unwrap() };
    let by_user = me(&owner).await.expect(200);
    let by_key = get("/api/v1/users").token(&key).send().await.expect(200);
    assert_eq!(by_key.header("ratelimit-limit"), Some("100"));
    assert_eq!(remaining(&by_key), remaining(&by_user) - 1);
}

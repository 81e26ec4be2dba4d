//! The caller's profile (`PATCH /auth/me`), preferences (merge patch), the organisation and the
//! dashboard.

use serde_json::{json, Value};

use crate::client::*;
use crate::harness::server;

fn fields(r: &Resp) -> Vec<String> {
    r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_string())
        .collect()
}

async fn me(s: &Session) -> Value {
    get("/api/v1/auth/me")
        .token(&s.access)
        .send()
        .await
        .expect(200)
        .data()
        .clone()
}

#[tokio::test]
async fn a_user_edits_their_profile_and_auth_me_shows_it() {
    let owner = register().await;
    let member = add_user(&owner, "member").await;
    // Read once so the gate has the user cached before the change.
    assert!(me(&member).await["user"]["locale"].is_null());
    let r = patch("/api/v1/auth/me")
        .token(&member.access)
        .json(json!({
            "full_name": "  Mia Member ", "avatar_url": "https://cdn.example.com/mia.png",
            "bio": "Hello", "locale": "pt-br", "timezone": "America/Sao_Paulo"
        }))
        .send()
        .await
        .expect(200);
    let u = r.data();
    assert_eq!(u["full_name"], "Mia Member");
    assert_eq!(u["locale"], "pt-BR");
    assert_eq!(u["timezone"], "America/Sao_Paulo");
    assert_eq!(u["avatar_url"], "https://cdn.example.com/mia.png");
    let m = me(&member).await;
    assert_eq!(m["user"]["full_name"], "Mia Member");
    assert_eq!(m["user"]["bio"], "Hello");
    assert_eq!(m["user"]["locale"], "pt-BR");
    assert_eq!(m["user"]["timezone"], "America/Sao_Paulo");
    // `null` clears; absent keeps.
    patch("/api/v1/auth/me")
        .token(&member.access)
        .json(json!({"bio": null}))
        .send()
        .await
        .expect(200);
    let m = me(&member).await;
    assert!(m["user"]["bio"].is_null());
    assert_eq!(m["user"]["locale"], "pt-BR");
    // The admin's view of the user shows the fields too.
    let seen = get(&format!("/api/v1/users/{}", member.user_id))
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(seen.data()["timezone"], "America/Sao_Paulo");
    // Audited.
    let logs = get("/api/v1/audit-logs?action=user.profile_updated")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert!(logs.text.contains("user.profile_updated"), "{}", logs.text);
}

#[tokio::test]
async fn bad_profile_input_is_422_and_keys_cannot_edit_profiles() {
    let owner = register().await;
    let r = patch("/api/v1/auth/me")
        .token(&owner.access)
        .json(json!({
            "full_name": "", "avatar_url": "http://insecure.example.com/a.png",
            "bio": "x".repeat(1001), "locale": "english", "timezone": "berlin"
        }))
        .send()
        .await
        .problem(422, "validation_failed");
    assert_eq!(
        fields(&r),
        ["full_name", "avatar_url", "bio", "locale", "timezone"]
    );
    let long = format!("https://example.com/{}", "a".repeat(2048));
    let r = patch("/api/v1/auth/me")
        .token(&owner.access)
        .json(json!({ "avatar_url": long }))
        .send()
        .await
        .problem(422, "validation_failed");
    assert_eq!(fields(&r), ["avatar_url"]);
    patch("/api/v1/auth/me")
        .token(&owner.access)
        .json(json!({"role": "owner"}))
        .send()
        .await
        .problem(422, "validation_failed");
    // Nothing changed.
    assert_eq!(me(&owner).await["user"]["full_name"], "Olga Owner");
    let key = post("/api/v1/api-keys")
        .token(&owner.access)
        .json(json!({"name": "k", "scopes": ["write", "admin"]}))
        .send()
        .await
        .expect(201);
    let key = key.data()["key"].as_str().unwrap().to_string();
    patch("/api/v1/auth/me")
        .token(&key)
        .json(json!({"bio": "x"}))
        .send()
        .await
        .problem(403, "forbidden");
    get("/api/v1/me/preferences")
        .token(&key)
        .send()
        .await
        .problem(403, "forbidden");
}

#[tokio::test]
async fn preferences_are_merge_patched_and_bounded() {
    let owner = register().await;
    let t = &owner.access;
    let got = get("/api/v1/me/preferences")
        .token(t)
        .send()
        .await
        .expect(200);
    assert_eq!(got.data(), &json!({}));
    let r = patch("/api/v1/me/preferences")
        .token(t)
        .json(json!({"theme": "dark", "layout": {"sidebar": true, "density": "compact"}}))
        .send()
        .await
        .expect(200);
    assert_eq!(
        r.data(),
        &json!({"theme": "dark", "layout": {"sidebar": true, "density": "compact"}})
    );
    let r = patch("/api/v1/me/preferences")
        .token(t)
        .json(json!({"theme": null, "layout": {"density": null}, "lang": ["en"]}))
        .send()
        .await
        .expect(200);
    assert_eq!(
        r.data(),
        &json!({"layout": {"sidebar": true}, "lang": ["en"]})
    );
    for bad in [json!([1, 2]), json!("dark"), json!(3)] {
        patch("/api/v1/me/preferences")
            .token(t)
            .json(bad)
            .send()
            .await
            .problem(422, "validation_failed");
    }
    let r = patch("/api/v1/me/preferences")
        .token(t)
        .json(json!({"blob": "x".repeat(8 * 1024)}))
        .send()
        .await
        .problem(422, "validation_failed");
    assert_eq!(fields(&r), ["preferences"]);
    // Still the last good object; another user's are their own.
    let got = get("/api/v1/me/preferences")
        .token(t)
        .send()
        .await
        .expect(200);
    assert_eq!(
        got.data(),
        &json!({"layout": {"sidebar": true}, "lang": ["en"]})
    );
    let member = add_user(&owner, "member").await;
    let theirs = get("/api/v1/me/preferences")
        .token(&member.access)
        .send()
        .await
        .expect(200);
    assert_eq!(theirs.data(), &json!({}));
}

#[tokio::test]
async fn admins_rename_the_organization_members_read_it() {
    let owner = register().await;
    let member = add_user(&owner, "member").await;
    let before = get("/api/v1/organization")
        .token(&member.access)
        .send()
        .await
        .expect(200);
    assert_eq!(before.data()["id"], owner.tenant_id.as_str());
    // The member's gate entry now holds the tenant; the rename must reach it.
    me(&member).await;
    patch("/api/v1/organization")
        .token(&member.access)
        .json(json!({"name": "Mine now"}))
        .send()
        .await
        .problem(403, "forbidden");
    let r = patch("/api/v1/organization")
        .token(&owner.access)
        .json(json!({"name": "  Renamed Org  "}))
        .send()
        .await
        .expect(200);
    assert_eq!(r.data()["name"], "Renamed Org");
    assert_eq!(me(&member).await["tenant"]["name"], "Renamed Org");
    let r = patch("/api/v1/organization")
        .token(&owner.access)
        .json(json!({"name": ""}))
        .send()
        .await
        .problem(422, "validation_failed");
    assert_eq!(fields(&r), ["name"]);
    patch("/api/v1/organization")
        .token(&owner.access)
        .json(json!({"name": "x", "plan": "pro"}))
        .send()
        .await
        .problem(422, "validation_failed");
    // Another tenant's organisation is untouched and its own.
    let other = register().await;
    let theirs = get("/api/v1/organization")
        .token(&other.access)
        .send()
        .await
        .expect(200);
    assert_eq!(theirs.data()["id"], other.tenant_id.as_str());
    assert_ne!(theirs.data()["name"], "Renamed Org");
    let logs = get("/api/v1/audit-logs?action=organization.updated")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert!(logs.text.contains("organization.updated"), "{}", logs.text);
}

#[tokio::test]
async fn the_dashboard_counts_a_fresh_tenant() {
    let owner = register().await;
    // A log-in makes the owner active (registration alone is not a log-in).
    let r = login(&owner.email, &owner.password).await.expect(200);
    let owner = session_from(r.data(), &owner.email, &owner.password);
    let member = add_user(&owner, "member").await;
    let _idle = {
        // A third user who never logs in or sends events: a member, not active.
        let admin = admin().await;
        post("/api/v1/admin/users")
            .token(&admin.access)
            .json(json!({"tenant_id": owner.tenant_id, "email": format!("idle-{}@example.com", unique()),
                         "password": "another good password", "full_name": "Idle", "role": "member"}))
            .send()
            .await
            .expect(201)
    };
    // Notifications: two unread and one read for the member, one for the owner.
    let sql = format!(
        "INSERT INTO notifications (id, tenant_id, user_id, type, title, read_at, created_at) VALUES \
         ('ntf_d1_{u}', '{t}', '{m}', 'team.added', 'a', NULL, '2026-01-01T00:00:00.000Z'), \
         ('ntf_d2_{u}', '{t}', '{m}', 'team.added', 'b', NULL, '2026-01-01T00:00:00.000Z'), \
         ('ntf_d3_{u}', '{t}', '{m}', 'team.added', 'c', '2026-01-02T00:00:00.000Z', '2026-01-01T00:00:00.000Z'), \
         ('ntf_d4_{u}', '{t}', '{o}', 'team.added', 'd', NULL, '2026-01-01T00:00:00.000Z')",
        u = unique(),
        t = owner.tenant_id,
        m = member.user_id,
        o = owner.user_id,
    );
    d1_alone(move || server().d1(&sql)).await;
    let d = get("/api/v1/dashboard")
        .token(&member.access)
        .send()
        .await
        .expect(200);
    let d = d.data();
    assert_eq!(d["members"], 3);
    assert_eq!(d["active_users_7d"], 2);
    assert_eq!(d["active_users_30d"], 2);
    assert_eq!(d["usage"], json!({"executions": 0, "optimizations": 0}));
    assert_eq!(d["executions"], 0);
    assert_eq!(d["optimizations"], 0);
    assert_eq!(d["conversations"], 0);
    assert_eq!(d["media"], json!({"count": 0, "bytes": 0}));
    assert_eq!(d["unread_notifications"], 2);
    // Another tenant's dashboard does not count these users.
    let other = register().await;
    let theirs = get("/api/v1/dashboard")
        .token(&other.access)
        .send()
        .await
        .expect(200);
    assert_eq!(theirs.data()["members"], 1);
}

//! API keys: shown once, hashed, scoped, usable as bearer or X-API-Key, revocable, tenant-bound.

use serde_json::json;

use crate::client::*;

async fn create(owner: &Session, scopes: &[&str]) -> Resp {
    post("/api/v1/api-keys")
        .token(&owner.access)
        .json(json!({"name": "ci", "scopes": scopes}))
        .send()
        .await
}

#[tokio::test]
async fn a_key_is_shown_once_and_works_within_its_scopes() {
    let owner = register().await;
    let r = create(&owner, &["read", "admin"]).await.expect(201);
    let key = r.data()["key"].as_str().unwrap().to_string();
    let id = r.data()["id"].as_str().unwrap().to_string();
    assert!(key.starts_with("tnt_"));
    assert_eq!(r.data()["prefix"], &key[..12]);
    assert!(r.data()["last_used_at"].is_null());

    let listed = get("/api/v1/api-keys")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert!(!listed.text.contains(&key));
    assert_eq!(listed.data()[0]["id"], id.as_str());

    get("/api/v1/users").token(&key).send().await.expect(200);
    get("/api/v1/users")
        .header("X-API-Key", &key)
        .send()
        .await
        .expect(200);
    let got = get(&format!("/api/v1/api-keys/{id}"))
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert!(got.data()["last_used_at"].is_string());
    // Keys are not user sessions.
    get("/api/v1/auth/me")
        .token(&key)
        .send()
        .await
        .problem(403, "forbidden");
}

#[tokio::test]
async fn a_read_key_cannot_write_or_administer() {
    let owner = register().await;
    let key = create(&owner, &["read"]).await.expect(201).data()["key"]
        .as_str()
        .unwrap()
        .to_string();
    get("/api/v1/users")
        .token(&key)
        .send()
        .await
        .problem(403, "forbidden");
    create(
        &Session {
            access: key,
            ..owner.clone()
        },
        &["admin"],
    )
    .await
    .problem(403, "forbidden");
}

#[tokio::test]
async fn a_revoked_key_stops_working() {
    let owner = register().await;
    let r = create(&owner, &["admin"]).await.expect(201);
    let (id, key) = (
        r.data()["id"].as_str().unwrap(),
        r.data()["key"].as_str().unwrap(),
    );
    delete(&format!("/api/v1/api-keys/{id}"))
        .token(&owner.access)
        .send()
        .await
        .expect(204);
    get("/api/v1/users")
        .token(key)
        .send()
        .await
        .problem(401, "invalid_api_key");
    get(&format!("/api/v1/api-keys/{id}"))
        .token(&owner.access)
        .send()
        .await
        .problem(404, "not_found");
    get("/api/v1/users")
        .token("tnt_made_up_key")
        .send()
        .await
        .problem(401, "invalid_api_key");
}

#[tokio::test]
async fn bad_key_requests_are_422() {
    let owner = register().await;
    for body in [
        json!({"name": "x", "scopes": []}),
        json!({"name": "x", "scopes": ["root"]}),
        json!({"name": "", "scopes": ["read"]}),
        json!({"name": "x", "scopes": ["read"], "expires_at": "2001-01-01T00:00:00Z"}),
        json!({"name": "x", "scopes": ["read"], "expires_at": "tomorrow"}),
        json!({"name": "x", "scopes": "read"}),
    ] {
        post("/api/v1/api-keys")
            .token(&owner.access)
            .json(body)
            .send()
            .await
            .problem(422, "validation_failed");
    }
    let r = post("/api/v1/api-keys")
        .token(&owner.access)
        .json(json!({"name": "x", "scopes": ["read"], "expires_at": "2099-01-01T00:00:00Z"}))
        .send()
        .await
        .expect(201);
    assert_eq!(r.data()["expires_at"], "2099-01-01T00:00:00.000Z");
}

#[tokio::test]
async fn another_tenants_key_is_not_found_and_members_cannot_manage_keys() {
    let a = register().await;
    let b = register().await;
    let id = create(&b, &["read"]).await.expect(201).data()["id"]
        .as_str()
        .unwrap()
        .to_string();
    get(&format!("/api/v1/api-keys/{id}"))
        .token(&a.access)
        .send()
        .await
        .problem(404, "not_found");
    delete(&format!("/api/v1/api-keys/{id}"))
        .token(&a.access)
        .send()
        .await
        .problem(404, "not_found");
    let listed = get("/api/v1/api-keys")
        .token(&a.access)
        .send()
        .await
        .expect(200);
    assert_eq!(listed.data().as_array().unwrap().len(), 0);
    let member = add_user(&a, "member").await;
    create(&member, &["read"]).await.problem(403, "forbidden");
}

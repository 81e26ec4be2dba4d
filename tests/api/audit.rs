//! The audit trail and request log.

use std::time::Duration;

use serde_json::json;

use crate::client::*;

#[tokio::test]
async fn security_actions_land_in_the_tenants_audit_log() {
    let owner = register().await;
    login(&owner.email, "wrong password!").await.expect(401);
    login(&owner.email, &owner.password).await.expect(200);
    post("/api/v1/api-keys")
        .token(&owner.access)
        .json(json!({"name": "k", "scopes": ["read"]}))
        .send()
        .await
        .expect(201);
    let r = get("/api/v1/audit-logs?limit=100")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    let actions: Vec<&str> = r
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in ["auth.register", "auth.login", "api_key.created"] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    let entry = r
        .data()
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "auth.login")
        .unwrap();
    assert_eq!(entry["actor_email"], owner.email.as_str());
    assert!(entry["ip"].is_string());

    let only = get("/api/v1/audit-logs?action=api_key.created")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(only.data().as_array().unwrap().len(), 1);

    let csv = get("/api/v1/audit-logs?format=csv")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    assert!(csv.text.starts_with("id,created_at,tenant_id,"));
    assert!(csv.text.contains("api_key.created"));
}

#[tokio::test]
async fn a_tenant_never_sees_another_tenants_audit_entries() {
    let a = register().await;
    let b = register().await;
    let r = get("/api/v1/audit-logs?limit=100")
        .token(&a.access)
        .send()
        .await
        .expect(200);
    assert!(r
        .data()
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["tenant_id"] == a.tenant_id.as_str()));
    assert!(!r.text.contains(&b.tenant_id));
    let member = add_user(&a, "member").await;
    get("/api/v1/audit-logs")
        .token(&member.access)
        .send()
        .await
        .problem(403, "forbidden");
    get("/api/v1/audit-logs?from=yesterday")
        .token(&a.access)
        .send()
        .await
        .problem(422, "validation_failed");
}

#[tokio::test]
async fn the_platform_admin_sees_audit_and_request_logs() {
    let admin = admin().await;
    let owner = register().await;
    get("/api/v1/users")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    let audit = get(&format!(
        "/api/v1/admin/audit-logs?tenant_id={}",
        owner.tenant_id
    ))
    .token(&admin.access)
    .send()
    .await
    .expect(200);
    assert!(audit
        .data()
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "auth.register"));

    // Request-log rows reach D1 in batches through the jobs Worker, within a few seconds.
    let mut found = false;
    for _ in 0..40 {
        let logs = get(&format!(
            "/api/v1/admin/api-logs?tenant_id={}&route=/api/v1/users",
            owner.tenant_id
        ))
        .token(&admin.access)
        .send()
        .await
        .expect(200);
        if let Some(row) = logs.data().as_array().unwrap().first() {
            assert_eq!(row["status"], 200);
            assert_eq!(row["method"], "GET");
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(found, "the request log has no row for GET /api/v1/users");
    get("/api/v1/admin/api-logs?status=abc")
        .token(&admin.access)
        .send()
        .await
        .problem(422, "validation_failed");
    get("/api/v1/admin/api-logs")
        .token(&owner.access)
        .send()
        .await
        .problem(403, "forbidden");
}

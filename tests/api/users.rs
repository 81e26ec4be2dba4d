//! Tenant administrators manage their users; roles gate the routes; other tenants see 404.

use serde_json::json;

use crate::client::*;

#[tokio::test]
async fn an_owner_lists_and_updates_users() {
    let owner = register().await;
    let member = add_user(&owner, "member").await;
    let list = get("/api/v1/users")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(list.data().as_array().unwrap().len(), 2);
    assert!(list.body["next_cursor"].is_null());
    let r = patch(&format!("/api/v1/users/{}", member.user_id))
        .token(&owner.access)
        .json(json!({"role": "agent", "full_name": "Max Agent"}))
        .send()
        .await
        .expect(200);
    assert_eq!(r.data()["role"], "agent");
    assert_eq!(r.data()["full_name"], "Max Agent");
    let filtered = get("/api/v1/users?role=agent")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(filtered.data().as_array().unwrap().len(), 1);
    get("/api/v1/users?role=king")
        .token(&owner.access)
        .send()
        .await
        .problem(422, "validation_failed");
}

#[tokio::test]
async fn members_and_agents_cannot_manage_users() {
    let owner = register().await;
    for role in ["member", "agent"] {
        let u = add_user(&owner, role).await;
        get("/api/v1/users")
            .token(&u.access)
            .send()
            .await
            .problem(403, "forbidden");
        patch(&format!("/api/v1/users/{}", owner.user_id))
            .token(&u.access)
            .json(json!({"role": "member"}))
            .send()
            .await
            .problem(403, "forbidden");
    }
}

#[tokio::test]
async fn nobody_changes_their_own_role_and_admins_cannot_touch_owners() {
    let owner = register().await;
    let admin_user = add_user(&owner, "admin").await;
    patch(&format!("/api/v1/users/{}", owner.user_id))
        .token(&owner.access)
        .json(json!({"role": "member"}))
        .send()
        .await
        .problem(403, "forbidden");
    patch(&format!("/api/v1/users/{}", owner.user_id))
        .token(&admin_user.access)
        .json(json!({"status": "suspended"}))
        .send()
        .await
        .problem(403, "forbidden");
    // Renaming yourself is fine.
    patch(&format!("/api/v1/users/{}", owner.user_id))
        .token(&owner.access)
        .json(json!({"full_name": "Renamed"}))
        .send()
        .await
        .expect(200);
}

#[tokio::test]
async fn bad_updates_are_422() {
    let owner = register().await;
    let m = add_user(&owner, "member").await;
    for body in [
        json!({"role": "platform_admin"}),
        json!({"status": "deleted"}),
        json!({"full_name": ""}),
        json!({"email": "x@y.io"}),
    ] {
        patch(&format!("/api/v1/users/{}", m.user_id))
            .token(&owner.access)
            .json(body)
            .send()
            .await
            .problem(422, "validation_failed");
    }
}

#[tokio::test]
async fn another_tenants_user_is_not_found() {
    let a = register().await;
    let b = register().await;
    let path = format!("/api/v1/users/{}", b.user_id);
    get(&path)
        .token(&a.access)
        .send()
        .await
        .problem(404, "not_found");
    patch(&path)
        .token(&a.access)
        .json(json!({"full_name": "Hijack"}))
        .send()
        .await
        .problem(404, "not_found");
    delete(&path)
        .token(&a.access)
        .send()
        .await
        .problem(404, "not_found");
    let list = get("/api/v1/users")
        .token(&a.access)
        .send()
        .await
        .expect(200);
    assert!(list
        .data()
        .as_array()
        .unwrap()
        .iter()
        .all(|u| u["tenant_id"] == a.tenant_id.as_str()));
}

#[tokio::test]
async fn a_deleted_user_is_gone_and_logged_out() {
    let owner = register().await;
    let m = add_user(&owner, "member").await;
    let path = format!("/api/v1/users/{}", m.user_id);
    delete(&path).token(&owner.access).send().await.expect(204);
    get(&path)
        .token(&owner.access)
        .send()
        .await
        .problem(404, "not_found");
    get("/api/v1/auth/me")
        .token(&m.access)
        .send()
        .await
        .expect(401);
    login(&m.email, &m.password)
        .await
        .problem(401, "invalid_credentials");
    delete(&format!("/api/v1/users/{}", owner.user_id))
        .token(&owner.access)
        .send()
        .await
        .problem(403, "forbidden");
}

#[tokio::test]
async fn tenant_admins_cannot_touch_a_platform_admin() {
    let owner = register().await;
    let admin = admin().await;
    let email = format!("operator-{}@example.com", unique());
    let op = post("/api/v1/admin/users")
        .token(&admin.access)
        .json(
            json!({"tenant_id": owner.tenant_id, "email": email, "password": "operator password",
                     "full_name": "Op Erator", "role": "platform_admin"}),
        )
        .send()
        .await
        .expect(201);
    let id = op.data()["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/users/{id}");
    for body in [
        json!({"status": "suspended"}),
        json!({"role": "member"}),
        json!({"full_name": "Renamed"}),
    ] {
        patch(&path)
            .token(&owner.access)
            .json(body)
            .send()
            .await
            .problem(403, "forbidden");
    }
    delete(&path)
        .token(&owner.access)
        .send()
        .await
        .problem(403, "forbidden");
    // Untouched, and still able to sign in.
    let me = login(&email, "operator password").await.expect(200);
    assert_eq!(me.data()["user"]["full_name"], "Op Erator");
    assert_eq!(me.data()["user"]["status"], "active");
}

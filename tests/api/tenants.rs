//! The platform admin manages organisations and creates users in them.

use serde_json::json;

use crate::client::*;

#[tokio::test]
async fn only_the_platform_admin_reaches_admin_routes() {
    let owner = register().await;
    get("/api/v1/admin/tenants")
        .token(&owner.access)
        .send()
        .await
        .problem(403, "forbidden");
    post("/api/v1/admin/users")
        .token(&owner.access)
        .json(
            json!({"tenant_id": owner.tenant_id, "email": format!("x-{}@example.com", unique()),
                     "password": "long password", "full_name": "X", "role": "platform_admin"}),
        )
        .send()
        .await
        .problem(403, "forbidden");
    get("/api/v1/admin/tenants")
        .send()
        .await
        .problem(401, "unauthorized");
}

#[tokio::test]
async fn the_admin_creates_reads_updates_and_deletes_a_tenant() {
    let admin = admin().await;
    let slug = format!("client-{}", unique());
    let created = post("/api/v1/admin/tenants")
        .token(&admin.access)
        .json(
            json!({"name": "Client Co", "slug": slug, "plan": "pro", "subscription_amount": 249.5,
                     "subscription_start_date": "2026-01-01"}),
        )
        .send()
        .await
        .expect(201);
    let id = created.data()["id"].as_str().unwrap().to_string();
    assert_eq!(
        created.header("location"),
        Some(format!("/api/v1/admin/tenants/{id}").as_str())
    );
    assert_eq!(created.data()["status"], "active");
    assert_eq!(
        created.data()["subscription_start_date"],
        "2026-01-01T00:00:00.000Z"
    );

    let path = format!("/api/v1/admin/tenants/{id}");
    let got = get(&path).token(&admin.access).send().await.expect(200);
    assert_eq!(got.data()["plan"], "pro");
    let updated = patch(&path)
        .token(&admin.access)
        .json(json!({"plan": "premium_custom", "status": "pending", "subscription_end_date": "2026-12-31T00:00:00Z"}))
        .send()
        .await
        .expect(200);
    assert_eq!(updated.data()["plan"], "premium_custom");
    assert_eq!(updated.data()["status"], "pending");
    assert_eq!(updated.data()["subscription_amount"], 249.5);
    let listed = get("/api/v1/admin/tenants?status=pending&limit=100")
        .token(&admin.access)
        .send()
        .await
        .expect(200);
    assert!(listed
        .data()
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["id"] == id.as_str()));

    delete(&path).token(&admin.access).send().await.expect(204);
    get(&path)
        .token(&admin.access)
        .send()
        .await
        .problem(404, "not_found");
    patch(&path)
        .token(&admin.access)
        .json(json!({"plan": "free"}))
        .send()
        .await
        .problem(404, "not_found");
}

#[tokio::test]
async fn bad_tenant_input_is_422_and_a_taken_slug_409() {
    let admin = admin().await;
    for body in [
        json!({"name": "X", "slug": "No Spaces"}),
        json!({"name": "X", "slug": format!("ok-{}", unique()), "plan": "gold"}),
        json!({"name": "X", "slug": format!("ok-{}", unique()), "subscription_amount": -1}),
        json!({"name": "X", "slug": format!("ok-{}", unique()), "subscription_start_date": "soon"}),
        json!({"name": "X"}),
    ] {
        post("/api/v1/admin/tenants")
            .token(&admin.access)
            .json(body)
            .send()
            .await
            .problem(422, "validation_failed");
    }
    post("/api/v1/admin/tenants")
        .token(&admin.access)
        .json(json!({"name": "Dup", "slug": "platform"}))
        .send()
        .await
        .problem(409, "conflict");
    patch("/api/v1/admin/tenants/ten_platform")
        .token(&admin.access)
        .json(
            json!({"subscription_start_date": "2026-05-01", "subscription_end_date": "2026-01-01"}),
        )
        .send()
        .await
        .problem(422, "validation_failed");
}

#[tokio::test]
async fn suspending_a_tenant_locks_its_users_out() {
    let admin = admin().await;
    let owner = register().await;
    patch(&format!("/api/v1/admin/tenants/{}", owner.tenant_id))
        .token(&admin.access)
        .json(json!({"status": "suspended"}))
        .send()
        .await
        .expect(200);
    get("/api/v1/auth/me")
        .token(&owner.access)
        .send()
        .await
        .expect(401);
    login(&owner.email, &owner.password)
        .await
        .problem(403, "account_suspended");
    patch(&format!("/api/v1/admin/tenants/{}", owner.tenant_id))
        .token(&admin.access)
        .json(json!({"status": "active"}))
        .send()
        .await
        .expect(200);
    login(&owner.email, &owner.password).await.expect(200);
}

#[tokio::test]
async fn the_admin_creates_users_in_a_tenant() {
    let admin = admin().await;
    let owner = register().await;
    let email = format!("agent-{}@example.com", unique());
    let r = post("/api/v1/admin/users")
        .token(&admin.access)
        .json(
            json!({"tenant_id": owner.tenant_id, "email": email, "password": "agent password",
                     "full_name": "Ada Agent", "role": "agent"}),
        )
        .send()
        .await
        .expect(201);
    assert_eq!(r.data()["role"], "agent");
    assert_eq!(r.data()["tenant_id"], owner.tenant_id.as_str());
    login(&email, "agent password").await.expect(200);
    post("/api/v1/admin/users")
        .token(&admin.access)
        .json(
            json!({"tenant_id": owner.tenant_id, "email": email, "password": "agent password",
                     "full_name": "Dup", "role": "agent"}),
        )
        .send()
        .await
        .problem(409, "conflict");
    post("/api/v1/admin/users")
        .token(&admin.access)
        .json(
            json!({"tenant_id": "ten_nope", "email": format!("z-{}@example.com", unique()),
                     "password": "agent password", "full_name": "Z", "role": "wizard"}),
        )
        .send()
        .await
        .problem(422, "validation_failed");
}

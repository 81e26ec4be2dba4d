//! Workflow requests and support tickets between client tenants and the agency.

use serde_json::json;

use crate::client::*;

#[tokio::test]
async fn a_client_requests_a_workflow_and_the_agency_reviews_it() {
    let owner = register().await;
    let member = add_user(&owner, "member").await;
    let r = post("/api/v1/workflow-requests")
        .token(&member.access)
        .json(
            json!({"title": "Invoice OCR", "description": "Read supplier invoices", "budget": 900}),
        )
        .send()
        .await
        .expect(201);
    assert_eq!(r.data()["status"], "pending");
    assert_eq!(r.data()["requested_by"], member.user_id.as_str());
    let id = r.data()["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/workflow-requests/{id}");
    assert_eq!(r.header("location"), Some(path.as_str()));

    // Only the platform admin changes the status.
    patch(&path)
        .token(&owner.access)
        .json(json!({"status": "approved"}))
        .send()
        .await
        .problem(403, "forbidden");
    let admin = admin().await;
    let listed = get(&format!(
        "/api/v1/workflow-requests?tenant_id={}&status=pending",
        owner.tenant_id
    ))
    .token(&admin.access)
    .send()
    .await
    .expect(200);
    assert_eq!(listed.data().as_array().unwrap().len(), 1);
    for status in ["in_review", "approved", "completed"] {
        let r = patch(&path)
            .token(&admin.access)
            .json(json!({"status": status, "admin_notes": "on it"}))
            .send()
            .await
            .expect(200);
        assert_eq!(r.data()["status"], status);
    }
    patch(&path)
        .token(&admin.access)
        .json(json!({"status": "pending"}))
        .send()
        .await
        .problem(409, "conflict");
    patch(&path)
        .token(&admin.access)
        .json(json!({"status": "shipped"}))
        .send()
        .await
        .problem(422, "validation_failed");
    let seen = get(&path).token(&member.access).send().await.expect(200);
    assert_eq!(seen.data()["status"], "completed");
    assert_eq!(seen.data()["admin_notes"], "on it");
}

#[tokio::test]
async fn requests_are_validated_and_other_tenants_cannot_see_them() {
    let owner = register().await;
    post("/api/v1/workflow-requests")
        .token(&owner.access)
        .json(json!({"title": "", "description": "x", "budget": -5}))
        .send()
        .await
        .problem(422, "validation_failed");
    post("/api/v1/workflow-requests")
        .token(&owner.access)
        .json(json!({"title": "x", "description": "y", "status": "approved"}))
        .send()
        .await
        .problem(422, "validation_failed");
    let r = post("/api/v1/workflow-requests")
        .token(&owner.access)
        .json(json!({"title": "Mine", "description": "Only mine"}))
        .send()
        .await
        .expect(201);
    let id = r.data()["id"].as_str().unwrap();
    let other = register().await;
    get(&format!("/api/v1/workflow-requests/{id}"))
        .token(&other.access)
        .send()
        .await
        .problem(404, "not_found");
    let theirs = get("/api/v1/workflow-requests")
        .token(&other.access)
        .send()
        .await
        .expect(200);
    assert!(theirs.data().as_array().unwrap().is_empty());
}

#[tokio::test]
async fn tickets_carry_a_thread_and_internal_notes_stay_with_the_agency() {
    let owner = register().await;
    let r = post("/api/v1/support-tickets")
        .token(&owner.access)
        .json(json!({"subject": "Export fails", "description": "The CSV export times out", "priority": "high"}))
        .send()
        .await
        .expect(201);
    assert_eq!(r.data()["status"], "open");
    assert_eq!(r.data()["priority"], "high");
    let id = r.data()["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/support-tickets/{id}");
    let comments = format!("{path}/comments");

    post(&comments)
        .token(&owner.access)
        .json(json!({"body": "Secret", "internal": true}))
        .send()
        .await
        .problem(403, "forbidden");
    let admin = admin().await;
    post(&comments)
        .token(&admin.access)
        .json(json!({"body": "Customer is on the old plan", "internal": true}))
        .send()
        .await
        .expect(201);
    let reply = post(&comments)
        .token(&admin.access)
        .json(json!({"body": "Looking into it"}))
        .send()
        .await
        .expect(201);
    assert_eq!(reply.data()["author_role"], "platform_admin");
    post(&comments)
        .token(&owner.access)
        .json(json!({"body": ""}))
        .send()
        .await
        .problem(422, "validation_failed");

    let client_view = get(&path).token(&owner.access).send().await.expect(200);
    let bodies: Vec<&str> = client_view.data()["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, vec!["Looking into it"]);
    let agency_view = get(&path).token(&admin.access).send().await.expect(200);
    assert_eq!(agency_view.data()["comments"].as_array().unwrap().len(), 2);

    // The agency resolves; the client's reply reopens; the client may close but not resolve.
    patch(&path)
        .token(&admin.access)
        .json(json!({"status": "resolved"}))
        .send()
        .await
        .expect(200);
    post(&comments)
        .token(&owner.access)
        .json(json!({"body": "Still broken"}))
        .send()
        .await
        .expect(201);
    let reopened = get(&path).token(&owner.access).send().await.expect(200);
    assert_eq!(reopened.data()["status"], "open");
    patch(&path)
        .token(&owner.access)
        .json(json!({"status": "resolved"}))
        .send()
        .await
        .problem(403, "forbidden");
    let closed = patch(&path)
        .token(&owner.access)
        .json(json!({"status": "closed", "priority": "low"}))
        .send()
        .await
        .expect(200);
    assert_eq!(closed.data()["status"], "closed");
    assert_eq!(closed.data()["priority"], "low");
}

#[tokio::test]
async fn tickets_are_validated_and_another_tenants_ticket_is_not_found() {
    let owner = register().await;
    post("/api/v1/support-tickets")
        .token(&owner.access)
        .json(json!({"subject": "x", "description": "y", "priority": "critical"}))
        .send()
        .await
        .problem(422, "validation_failed");
    let r = post("/api/v1/support-tickets")
        .token(&owner.access)
        .json(json!({"subject": "Mine", "description": "Mine only"}))
        .send()
        .await
        .expect(201);
    assert_eq!(r.data()["priority"], "medium");
    let id = r.data()["id"].as_str().unwrap();
    let other = register().await;
    let path = format!("/api/v1/support-tickets/{id}");
    get(&path)
        .token(&other.access)
        .send()
        .await
        .problem(404, "not_found");
    patch(&path)
        .token(&other.access)
        .json(json!({"status": "closed"}))
        .send()
        .await
        .problem(404, "not_found");
    post(&format!("{path}/comments"))
        .token(&other.access)
        .json(json!({"body": "hi"}))
        .send()
        .await
        .problem(404, "not_found");
    let listed = get("/api/v1/support-tickets?status=open")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(listed.data().as_array().unwrap().len(), 1);
}

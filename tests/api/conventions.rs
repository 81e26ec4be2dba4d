//! API conventions every route follows: envelopes, problems, headers, CORS, limits, paging,
//! idempotency.

use serde_json::json;

use crate::client::*;

#[tokio::test]
async fn an_unknown_route_is_a_404_problem() {
    get("/api/v1/definitely-not-here")
        .send()
        .await
        .problem(404, "not_found");
}

#[tokio::test]
async fn a_wrong_method_is_405_with_allow() {
    let r = req("PUT", "/api/v1/auth/login")
        .send()
        .await
        .problem(405, "method_not_allowed");
    assert_eq!(r.header("allow"), Some("POST"));
}

#[tokio::test]
async fn the_request_id_is_echoed_or_generated() {
    let r = get("/health/live")
        .header("X-Request-Id", "abc-123")
        .send()
        .await
        .expect(200);
    assert_eq!(r.header("x-request-id"), Some("abc-123"));
    let r = get("/health/live").send().await.expect(200);
    assert!(r
        .header("x-request-id")
        .is_some_and(|v| v.starts_with("req_")));
    let r = get("/nope")
        .header("X-Request-Id", "trace-9")
        .send()
        .await
        .expect(404);
    assert_eq!(r.body["request_id"], "trace-9");
}

#[tokio::test]
async fn security_headers_are_on_every_response() {
    for r in [
        get("/health").send().await,
        get("/api/v1/users").send().await,
    ] {
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(r.header("x-frame-options"), Some("DENY"));
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
        assert!(r.header("strict-transport-security").is_some());
    }
}

#[tokio::test]
async fn cors_answers_preflight_for_configured_origins_only() {
    let r = req("OPTIONS", "/api/v1/auth/login")
        .header("Origin", "https://app.example.com")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .expect(204);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert!(r
        .header("access-control-allow-headers")
        .unwrap()
        .contains("Authorization"));
    let r = req("OPTIONS", "/api/v1/auth/login")
        .header("Origin", "https://evil.example")
        .send()
        .await;
    assert_eq!(r.header("access-control-allow-origin"), None);
    let r = get("/health/live")
        .header("Origin", "https://app.example.com")
        .send()
        .await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
}

#[tokio::test]
async fn malformed_json_is_a_400_problem() {
    post("/api/v1/auth/login")
        .raw(b"{\"email\": ", "application/json")
        .send()
        .await
        .problem(400, "bad_request");
}

#[tokio::test]
async fn unknown_fields_are_rejected_by_name() {
    let r = post("/api/v1/auth/register")
        .json(json!({"email": "x@example.com", "password": "long enough pw", "full_name": "X",
                     "organization_name": "X", "organization_slug": "x-org", "role": "platform_admin"}))
        .send()
        .await
        .problem(422, "validation_failed");
    assert_eq!(r.body["errors"][0]["field"], "role");
}

#[tokio::test]
async fn a_non_json_body_is_415() {
    post("/api/v1/auth/login")
        .raw(
            b"email=a@b.io&password=x",
            "application/x-www-form-urlencoded",
        )
        .send()
        .await
        .problem(415, "unsupported_media_type");
}

#[tokio::test]
async fn an_oversized_body_is_413() {
    let big = format!(
        "{{\"email\":\"{}\",\"password\":\"x\"}}",
        "a".repeat(1_100_000)
    );
    post("/api/v1/auth/login")
        .raw(big.as_bytes(), "application/json")
        .send()
        .await
        .problem(413, "payload_too_large");
}

#[tokio::test]
async fn lists_page_with_a_cursor() {
    let owner = register().await;
    for _ in 0..2 {
        add_user(&owner, "member").await;
    }
    let first = get("/api/v1/users?limit=2")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(first.data().as_array().unwrap().len(), 2);
    let cursor = first.body["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let second = get(&format!("/api/v1/users?limit=2&cursor={cursor}"))
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    let rest = second.data().as_array().unwrap();
    assert_eq!(rest.len(), 1);
    assert!(second.body["next_cursor"].is_null());
    let firsts: Vec<_> = first
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].clone())
        .collect();
    assert!(!firsts.contains(&rest[0]["id"]));
}

#[tokio::test]
async fn bad_paging_parameters_are_422() {
    let owner = register().await;
    for q in ["limit=0", "limit=101", "limit=abc", "cursor=%21%21"] {
        get(&format!("/api/v1/users?{q}"))
            .token(&owner.access)
            .send()
            .await
            .problem(422, "validation_failed");
    }
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_response() {
    let admin = admin().await;
    let key = format!("create-{}", unique());
    let slug = format!("idem-{}", unique());
    let body = json!({"name": "Idem Co", "slug": slug});
    let first = post("/api/v1/admin/tenants")
        .token(&admin.access)
        .header("Idempotency-Key", &key)
        .json(body.clone())
        .send()
        .await
        .expect(201);
    let again = post("/api/v1/admin/tenants")
        .token(&admin.access)
        .header("Idempotency-Key", &key)
        .json(body)
        .send()
        .await
        .expect(201);
    assert_eq!(first.data()["id"], again.data()["id"]);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    post("/api/v1/admin/tenants")
        .token(&admin.access)
        .header("Idempotency-Key", &key)
        .json(json!({"name": "Other", "slug": format!("other-{}", unique())}))
        .send()
        .await
        .problem(422, "idempotency_key_reused");
}

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

/// Runs a request whose body the worker refuses unread, alone. Answering before the body ends
/// leaves the local `wrangler dev` proxy with a broken connection to the runtime, and the next
/// request it sends there gets a 503 ("worker restarted mid-request"); a small request sent
/// until it gets a real answer takes that 503 before other tests go on.
async fn alone_with_a_reset<T>(request: impl std::future::Future<Output = T>) -> T {
    exclusive(async {
        let out = request.await;
        for _ in 0..5 {
            let r = post("/api/v1/auth/login")
                .json(serde_json::json!({}))
                .send()
                .await;
            if r.status != 503 {
                break;
            }
        }
        out
    })
    .await
}

#[tokio::test]
async fn an_oversized_body_is_413() {
    let big = format!(
        "{{\"email\":\"{}\",\"password\":\"x\"}}",
        "a".repeat(1_100_000)
    );
    let r = alone_with_a_reset(
        post("/api/v1/auth/login")
            .raw(big.as_bytes(), "application/json")
            .send(),
    )
    .await;
    r.problem(413, "payload_too_large");
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

#[tokio::test]
async fn idempotency_keys_belong_to_one_caller_not_the_whole_tenant() {
    let owner = register().await;
    let member = add_user(&owner, "member").await;
    let key = format!("ticket-{}", unique());
    let body = json!({"subject": "Export fails", "description": "The CSV export times out"});
    let mine = post("/api/v1/support-tickets")
        .token(&owner.access)
        .header("Idempotency-Key", &key)
        .json(body.clone())
        .send()
        .await
        .expect(201);
    // Another user of the tenant with the same key and body gets a ticket of their own,
    // never a replay of the owner's response.
    let theirs = post("/api/v1/support-tickets")
        .token(&member.access)
        .header("Idempotency-Key", &key)
        .json(body.clone())
        .send()
        .await
        .expect(201);
    assert_eq!(theirs.header("idempotent-replayed"), None);
    assert_ne!(mine.data()["id"], theirs.data()["id"]);
    assert_eq!(
        theirs.data()["created_by"],
        json!(member.user_id),
        "{}",
        theirs.text
    );
    // The owner's own retry still replays.
    let again = post("/api/v1/support-tickets")
        .token(&owner.access)
        .header("Idempotency-Key", &key)
        .json(body)
        .send()
        .await
        .expect(201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.data()["id"], mine.data()["id"]);
}

/// Sends a request over a raw connection (reqwest always sends a Content-Length for a
/// buffered body) and returns the status line's code, or `None` when nothing came back in
/// `wait`.
async fn raw_request(head: &str, body_parts: &[&[u8]], wait: u64) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = crate::harness::server()
        .base
        .trim_start_matches("http://")
        .to_string();
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    conn.write_all(head.as_bytes()).await.expect("head");
    for part in body_parts {
        if conn.write_all(part).await.is_err() {
            break; // the server answered and closed early
        }
    }
    let mut buf = vec![0u8; 4096];
    let read =
        tokio::time::timeout(std::time::Duration::from_secs(wait), conn.read(&mut buf)).await;
    let n = read.ok()?.ok()?;
    let line = String::from_utf8_lossy(&buf[..n]).into_owned();
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test]
async fn a_chunked_body_is_cut_off_at_the_limit() {
    // 1.5 MB in chunks without a Content-Length and without the final chunk: a server that
    // reads the whole body before measuring it would wait forever.
    let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "a".repeat(64 * 1024));
    let parts: Vec<&[u8]> = std::iter::repeat_n(chunk.as_bytes(), 24).collect();
    let head = "POST /api/v1/auth/login HTTP/1.1\r\nHost: localhost\r\n\
                Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    let status = alone_with_a_reset(raw_request(head, &parts, 20)).await;
    assert_eq!(status, Some(413));
}

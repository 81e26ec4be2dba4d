//! Health, OpenAPI and docs, the per-tenant rate limit, and the cron sweep.

use crate::client::*;

#[tokio::test]
async fn health_checks_the_bindings() {
    let r = get("/health").send().await.expect(200);
    assert_eq!(r.body["status"], "ok");
    assert_eq!(r.data()["checks"]["d1"], "ok");
    assert_eq!(r.data()["checks"]["r2"], "ok");
    assert_eq!(r.data()["checks"]["queue"], "ok");
    assert!(r.data()["version"].is_string());
    get("/health/live").send().await.expect(200);
    get("/health/ready").send().await.expect(200);
    get("/api/v1/health").send().await.expect(200);
}

#[tokio::test]
async fn the_openapi_document_lists_the_routes() {
    let r = get("/openapi.json").send().await.expect(200);
    assert_eq!(r.body["openapi"], "3.1.0");
    let paths = r.body["paths"].as_object().unwrap();
    for p in [
        "/api/v1/auth/login",
        "/api/v1/users/{id}",
        "/api/v1/admin/tenants/{id}",
        "/api/v1/api-keys",
        "/health",
    ] {
        assert!(paths.contains_key(p), "{p} missing");
    }
    assert!(r.body["components"]["schemas"]["Problem"].is_object());
    let docs = get("/docs").send().await.expect(200);
    assert!(docs
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(docs.text.contains("/openapi.json"));
    assert!(docs.text.contains("/docs/swagger-ui-bundle.js"));
}

#[tokio::test]
async fn the_docs_page_files_come_through_the_worker_with_its_headers() {
    let js = get("/docs/swagger-ui-bundle.js").send().await.expect(200);
    assert!(js.header("content-type").unwrap().contains("javascript"));
    assert!(js.header("x-request-id").is_some());
    assert_eq!(js.header("x-content-type-options"), Some("nosniff"));
    assert!(js.header("content-security-policy").is_some());
    assert!(js.text.contains("SwaggerUIBundle"));
    let tag = js.header("etag").expect("an ETag").to_string();
    let again = get("/docs/swagger-ui-bundle.js")
        .header("If-None-Match", &tag)
        .send()
        .await;
    assert_eq!(again.status, 304);
    get("/docs/swagger-ui.css").send().await.expect(200);
    get("/docs/init.js").send().await.expect(200);
    for missing in [
        "/docs/nothing-here.js",
        "/docs/..%2Fwrangler.toml",
        "/docs/.env",
    ] {
        get(missing).send().await.expect(404);
    }
}

#[tokio::test]
async fn the_tenant_budget_is_exact_under_concurrency() {
    let owner = register().await;
    // 110 requests, 10 in flight at a time: concurrent enough to race read-modify-write in the
    // limiter, gentle enough for the local dev proxy on a 2-core machine. They run alone
    // (`exclusive`) and on this test's task, so they pass the gate they run under.
    let gate = tokio::sync::Semaphore::new(10);
    let requests = (0..110).map(|_| async {
        let _permit = gate.acquire().await.unwrap();
        get("/api/v1/auth/me").token(&owner.access).send().await
    });
    let responses = exclusive(futures::future::join_all(requests)).await;
    let mut ok = 0;
    let mut limited = 0;
    for r in responses {
        match r.status {
            200 => {
                ok += 1;
                assert_eq!(r.header("ratelimit-limit"), Some("100"));
            }
            429 => {
                limited += 1;
                assert!(r.header("retry-after").is_some());
                assert_eq!(r.body["code"], "rate_limited");
            }
            s => panic!("unexpected status {s}: {}", r.text),
        }
    }
    // A window boundary during the burst can let one more through; lost updates would let many.
    assert!((100..=101).contains(&ok), "{ok} allowed, {limited} limited");
    // Another tenant has its own budget.
    let other = register().await;
    get("/api/v1/auth/me")
        .token(&other.access)
        .send()
        .await
        .expect(200);
}

#[tokio::test]
async fn the_scheduled_sweep_runs() {
    get("/__scheduled?cron=*/5+*+*+*+*")
        .send()
        .await
        .expect(200);
}

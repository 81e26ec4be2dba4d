//! Export and audit reports: CSV and JSON exports stream every row (1,200 here, three pages
//! and more), carry no secret columns and no live formulas, stop at `EXPORT_MAX_ROWS` (1,500 in
//! the harness) with 422, are audited and listed; the audit report counts what happened.
//! Tenant admins only; other tenants never see a row.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::client::*;
use crate::harness::server;

fn now() -> DateTime<Utc> {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    DateTime::from_timestamp_millis(ms).unwrap()
}

fn at(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `n` analytics events in batches of 100 (one insert each), numbered from `first`, all
/// occurring at `occurred_at`.
async fn events(s: &Session, first: usize, n: usize, occurred_at: &str) {
    let mut i = first;
    while i < first + n {
        let batch: Vec<Value> = (i..(i + 100).min(first + n))
            .map(|k| {
                json!({"name": "page.view", "session_id": format!("s{}", k % 7),
                       "properties": {"i": k}, "occurred_at": occurred_at})
            })
            .collect();
        i += batch.len();
        post("/api/v1/analytics/events")
            .token(&s.access)
            .json(json!({ "events": batch }))
            .send()
            .await
            .expect(202);
    }
}

async fn export(s: &Session, query: &str) -> Resp {
    get(&format!("/api/v1/export?{query}"))
        .token(&s.access)
        .send()
        .await
}

async fn product(s: &Session, name: &str, sku: &str, category: &str) -> String {
    post("/api/v1/products")
        .token(&s.access)
        .json(
            json!({"name": name, "sku": sku, "price": 1250, "currency": "EUR",
                     "category": category}),
        )
        .send()
        .await
        .expect(201)
        .data()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// CSV records (a quoted field may hold a line break, so not simply lines).
fn records(csv: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rec = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = csv.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => rec.push(std::mem::take(&mut field)),
            ('\r', false) => {}
            ('\n', false) => {
                rec.push(std::mem::take(&mut field));
                out.push(std::mem::take(&mut rec));
            }
            (c, _) => field.push(c),
        }
    }
    assert!(field.is_empty() && rec.is_empty(), "CSV ends mid-record");
    out
}

#[tokio::test]
async fn csv_and_json_exports_stream_twelve_hundred_rows() {
    let owner = register().await;
    let when = at(now() - Duration::minutes(1));
    events(&owner, 0, 1200, &when).await;

    let r = export(&owner, "type=analytics_events&format=csv")
        .await
        .expect(200);
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    let disposition = r.header("content-disposition").unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\"analytics_events-")
            && disposition.ends_with(".csv\""),
        "{disposition}"
    );
    assert_eq!(r.header("x-export-rows"), Some("1200"));
    let recs = records(&r.text);
    assert_eq!(recs.len(), 1201, "a header and 1,200 records");
    assert_eq!(
        recs[0],
        [
            "id",
            "name",
            "user_id",
            "api_key_id",
            "session_id",
            "anonymous_id",
            "properties",
            "occurred_at",
            "received_at"
        ]
    );
    let ids: std::collections::HashSet<&str> = recs[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(ids.len(), 1200, "no row twice across pages");
    assert!(recs[1..]
        .iter()
        .all(|r| r[1] == "page.view" && r[2] == owner.user_id && r[6].starts_with("{\"i\":")));
    // Keyset order: by time, then id.
    let keys: Vec<(&str, &str)> = recs[1..]
        .iter()
        .map(|r| (r[7].as_str(), r[0].as_str()))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);

    let r = export(&owner, "type=analytics_events&format=json")
        .await
        .expect(200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r
        .header("content-disposition")
        .unwrap()
        .ends_with(".json\""));
    let rows = r.body.as_array().expect("one JSON array");
    assert_eq!(rows.len(), 1200);
    let mut seen: Vec<i64> = rows
        .iter()
        .map(|e| {
            e["properties"]["i"]
                .as_i64()
                .expect("properties nested as JSON")
        })
        .collect();
    seen.sort();
    assert_eq!(seen, (0..1200).collect::<Vec<i64>>());
    assert!(rows.iter().all(|e| e.get("tenant_id").is_none()));

    // A window narrows it; another tenant's export has none of these rows.
    let later = at(now() + Duration::minutes(10));
    let r = export(&owner, &format!("type=analytics_events&from={later}"))
        .await
        .expect(200);
    assert_eq!(r.body, json!([]));
    let other = register().await;
    let r = export(&other, "type=analytics_events&format=csv")
        .await
        .expect(200);
    assert_eq!(records(&r.text).len(), 1, "only the header");
}

#[tokio::test]
async fn exports_carry_no_secret_columns() {
    let owner = register().await;
    let key = post("/api/v1/api-keys")
        .token(&owner.access)
        .json(json!({"name": "ci", "scopes": ["read"]}))
        .send()
        .await
        .expect(201)
        .data()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let sql = format!(
        "SELECT password_hash FROM users WHERE id = '{}'",
        owner.user_id
    );
    let stored = d1_alone(move || server().d1(&sql)).await;
    let hash = stored[0]["password_hash"].as_str().unwrap().to_string();
    let sql = format!(
        "SELECT key_hash FROM api_keys WHERE tenant_id = '{}'",
        owner.tenant_id
    );
    let key_hash = d1_alone(move || server().d1(&sql)).await[0]["key_hash"]
        .as_str()
        .unwrap()
        .to_string();

    for format in ["csv", "json"] {
        let r = export(&owner, &format!("type=users&format={format}"))
            .await
            .expect(200);
        assert!(r.text.contains(&owner.email), "{}", r.text);
        for secret in [hash.as_str(), key.as_str(), key_hash.as_str(), "password"] {
            assert!(!r.text.contains(secret), "users {format} leaks {secret}");
        }
        let r = export(&owner, &format!("type=audit_logs&format={format}"))
            .await
            .expect(200);
        assert!(r.text.contains("api_key.created"), "{}", r.text);
        for secret in [hash.as_str(), key.as_str(), key_hash.as_str()] {
            assert!(
                !r.text.contains(secret),
                "audit_logs {format} leaks {secret}"
            );
        }
    }
    let r = export(&owner, "type=users&format=json").await.expect(200);
    let user = &r.body[0];
    assert_eq!(user["id"], owner.user_id.as_str());
    assert!(user.get("password_hash").is_none() && user.get("preferences").is_none());
}

#[tokio::test]
async fn csv_exports_neutralise_formulas() {
    let owner = register().await;
    product(
        &owner,
        "=HYPERLINK(\"https://evil.example\",\"x\")",
        "F-1",
        "+cmd",
    )
    .await;
    product(&owner, "Kyoto mug, blue", "K-1", "@home").await;
    product(&owner, "-2+3", "M-1", "plain").await;
    let r = export(&owner, "type=products&format=csv").await.expect(200);
    let recs = records(&r.text);
    assert_eq!(recs.len(), 4);
    let name = recs[0].iter().position(|c| c == "name").unwrap();
    let category = recs[0].iter().position(|c| c == "category").unwrap();
    let price = recs[0].iter().position(|c| c == "price").unwrap();
    let names: Vec<&str> = recs[1..].iter().map(|r| r[name].as_str()).collect();
    assert!(names.contains(&"'=HYPERLINK(\"https://evil.example\",\"x\")"));
    assert!(names.contains(&"Kyoto mug, blue"));
    assert!(names.contains(&"'-2+3"));
    for r in &recs[1..] {
        for cell in r {
            assert!(
                !cell.starts_with(['=', '+', '-', '@']),
                "live formula {cell}"
            );
        }
        assert_eq!(r[price], "1250");
        assert!(r[category].starts_with('\'') || r[category] == "plain");
    }
}

#[tokio::test]
async fn an_export_over_the_row_limit_is_refused_until_narrowed() {
    let owner = register().await;
    let old = now() - Duration::days(2);
    events(&owner, 0, 800, &at(old)).await;
    events(&owner, 800, 800, &at(now() - Duration::minutes(1))).await;

    let r = export(&owner, "type=analytics_events&format=csv")
        .await
        .problem(422, "export_too_large");
    assert_eq!(r.body["rows"], 1600);
    assert_eq!(r.body["limit"], 1500);
    // Nothing was exported, so nothing is recorded.
    let h = get("/api/v1/exports")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(h.data(), &json!([]));

    let from = at(old + Duration::hours(1));
    let r = export(
        &owner,
        &format!("type=analytics_events&format=json&from={from}"),
    )
    .await
    .expect(200);
    assert_eq!(r.body.as_array().unwrap().len(), 800);
    let to = at(old + Duration::hours(1));
    let r = export(&owner, &format!("type=analytics_events&to={to}"))
        .await
        .expect(200);
    assert!(r.body.as_array().unwrap().iter().all(|e| {
        let i = e["properties"]["i"].as_i64().unwrap();
        i < 800
    }));
    assert_eq!(r.body.as_array().unwrap().len(), 800);
}

#[tokio::test]
async fn members_and_agents_may_not_export_or_read_reports() {
    let owner = register().await;
    for role in ["member", "agent"] {
        let s = add_user(&owner, role).await;
        for path in [
            "/api/v1/export?type=products&format=csv",
            "/api/v1/exports",
            "/api/v1/audit-logs/report",
        ] {
            get(path)
                .token(&s.access)
                .send()
                .await
                .problem(403, "forbidden");
        }
    }
    let admin = add_user(&owner, "admin").await;
    export(&admin, "type=products&format=csv").await.expect(200);
}

#[tokio::test]
async fn bad_types_formats_and_windows_are_422() {
    let owner = register().await;
    for query in [
        "type=sessions&format=csv",
        "type=api_keys",
        "format=csv",
        "type=products&format=xml",
        "type=products&from=yesterday",
        "type=products&to=2026-02-30",
        "type=products&from=2026-12-02&to=2026-12-01",
    ] {
        let r = export(&owner, query)
            .await
            .problem(422, "validation_failed");
        assert!(
            r.body["errors"].as_array().is_some_and(|e| !e.is_empty()),
            "{query}"
        );
    }
    let r = export(&owner, "type=passwords&format=pdf")
        .await
        .problem(422, "validation_failed");
    let fields: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["type", "format"]);
    for query in [
        "from=garbage",
        "from=2026-12-02&to=2026-12-01",
        "from=2024-01-01&to=2026-01-01",
        "format=pdf",
    ] {
        get(&format!("/api/v1/audit-logs/report?{query}"))
            .token(&owner.access)
            .send()
            .await
            .problem(422, "validation_failed");
    }
    get("/api/v1/exports?limit=0")
        .token(&owner.access)
        .send()
        .await
        .problem(422, "validation_failed");
}

#[tokio::test]
async fn an_export_shows_in_the_audit_trail_and_the_history() {
    let owner = register().await;
    product(&owner, "Kyoto mug", "KYO-1", "mugs").await;
    let r = export(&owner, "type=products&format=csv").await.expect(200);
    assert!(r.text.contains("Kyoto mug"));
    let export_id = r.header("x-export-id").unwrap().to_string();
    export(&owner, "type=users").await.expect(200);

    let h = get("/api/v1/exports")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    let list = h.data().as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["type"], "users", "newest first");
    let p = &list[1];
    assert_eq!(p["id"], export_id.as_str());
    assert_eq!(p["type"], "products");
    assert_eq!(p["format"], "csv");
    assert_eq!(p["rows"], 1);
    assert_eq!(p["user_id"], owner.user_id.as_str());
    assert!(p["filename"].as_str().unwrap().starts_with("products-"));
    let h = get("/api/v1/exports?type=products&limit=1")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(h.data().as_array().unwrap().len(), 1);
    assert!(h.body["next_cursor"].is_null());

    let a = get("/api/v1/audit-logs?action=export.created")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    let entry = a
        .data()
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["target_id"] == export_id.as_str())
        .expect("the export is in the audit trail")
        .clone();
    assert_eq!(entry["actor_id"], owner.user_id.as_str());
    assert_eq!(entry["metadata"]["type"], "products");
    assert_eq!(entry["metadata"]["rows"], 1);

    // Another tenant sees neither the history nor the rows.
    let other = register().await;
    let h = get("/api/v1/exports")
        .token(&other.access)
        .send()
        .await
        .expect(200);
    assert_eq!(h.data(), &json!([]));
    let r = export(&other, "type=products&format=json")
        .await
        .expect(200);
    assert_eq!(r.body, json!([]));
}

#[tokio::test]
async fn the_audit_report_counts_actions_actors_days_and_changes() {
    let owner = register().await;
    // One failed log-in for the owner's e-mail.
    post("/api/v1/auth/login")
        .header("CF-Connecting-IP", &random_ip())
        .json(json!({"email": owner.email, "password": "not the password"}))
        .send()
        .await
        .expect(401);
    // One key change.
    post("/api/v1/api-keys")
        .token(&owner.access)
        .json(json!({"name": "ci", "scopes": ["read"]}))
        .send()
        .await
        .expect(201);
    // One role change, one change that is not about a role.
    let member = add_user(&owner, "member").await;
    patch(&format!("/api/v1/users/{}", member.user_id))
        .token(&owner.access)
        .json(json!({"role": "agent"}))
        .send()
        .await
        .expect(200);
    patch(&format!("/api/v1/users/{}", member.user_id))
        .token(&owner.access)
        .json(json!({"full_name": "Renamed"}))
        .send()
        .await
        .expect(200);

    let r = get("/api/v1/audit-logs/report")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    let d = r.data();
    assert_eq!(d["failed_logins"], 1, "{}", r.text);
    assert_eq!(d["key_changes"], 1);
    assert_eq!(d["role_changes"], 1);
    let total = d["total"].as_i64().unwrap();
    let sum = |list: &Value| -> i64 {
        list.as_array()
            .unwrap()
            .iter()
            .map(|c| c["count"].as_i64().unwrap())
            .sum()
    };
    assert_eq!(sum(&d["by_action"]), total);
    assert_eq!(sum(&d["by_actor"]), total);
    assert_eq!(sum(&d["by_day"]), total);
    let count_of = |action: &str| {
        d["by_action"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["action"] == action)
            .map(|c| c["count"].as_i64().unwrap())
    };
    assert_eq!(count_of("user.updated"), Some(2));
    assert_eq!(count_of("auth.login_failed"), Some(1));
    assert_eq!(count_of("api_key.created"), Some(1));
    let owner_row = d["by_actor"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["actor_id"] == owner.user_id.as_str())
        .unwrap();
    assert!(owner_row["count"].as_i64().unwrap() >= 3);
    let changes: Vec<&str> = d["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["action"].as_str().unwrap())
        .collect();
    assert_eq!(changes, ["user.updated", "api_key.created"], "newest first");

    let r = get("/api/v1/audit-logs/report?format=csv")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert!(r
        .header("content-disposition")
        .unwrap()
        .starts_with("attachment; filename=\"audit-report-"));
    let recs = records(&r.text);
    assert_eq!(recs[0], ["section", "key", "detail", "count"]);
    assert!(recs.contains(&vec![
        "summary".to_string(),
        "failed_logins".to_string(),
        String::new(),
        "1".to_string()
    ]));

    // A window before any of it counts nothing; another tenant's report has none of it.
    let r = get("/api/v1/audit-logs/report?from=2026-01-01&to=2026-01-02")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(r.data()["total"], 0);
    let other = register().await;
    let r = get("/api/v1/audit-logs/report")
        .token(&other.access)
        .send()
        .await
        .expect(200);
    assert_eq!(r.data()["failed_logins"], 0);
    assert_eq!(r.data()["key_changes"], 0);
}

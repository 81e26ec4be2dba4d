//! Analytics: events in (limits name their field), aggregates and session statistics exact on
//! fixed data, admins only for reads, other tenants see nothing.

use chrono::{DateTime, Datelike, Duration, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::client::*;
use crate::harness::server;

/// Now (chrono's clock feature is off in this crate).
fn now() -> DateTime<Utc> {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    DateTime::from_timestamp_millis(ms).unwrap()
}

/// The start of the UTC day three days ago: every fixed event below is within the last 7
/// days and in the past.
fn day0() -> DateTime<Utc> {
    let d = (now() - Duration::days(3)).date_naive();
    d.and_hms_opt(0, 0, 0).unwrap().and_utc()
}

fn at(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn day(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

fn monday(t: DateTime<Utc>) -> String {
    let d = t.date_naive();
    (d - Duration::days(d.weekday().num_days_from_monday() as i64))
        .format("%Y-%m-%d")
        .to_string()
}

fn field_of(r: &Resp) -> Vec<String> {
    r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_string())
        .collect()
}

async fn send(token: &str, events: Value) -> Resp {
    post("/api/v1/analytics/events")
        .token(token)
        .json(json!({ "events": events }))
        .send()
        .await
}

async fn write_key(owner: &Session) -> String {
    let r = post("/api/v1/api-keys")
        .token(&owner.access)
        .json(json!({"name": "frontend", "scopes": ["write"]}))
        .send()
        .await
        .expect(201);
    r.data()["key"].as_str().unwrap().to_string()
}

/// Six events over two days, three sessions, a user and two anonymous visitors.
async fn fixed_events(owner: &Session) -> DateTime<Utc> {
    let d = day0();
    let h = |hours: i64, mins: i64| at(d + Duration::hours(hours) + Duration::minutes(mins));
    let r = send(
        &owner.access,
        json!([
            {"name": "page.view", "session_id": "s1", "properties": {"plan": "pro"}, "occurred_at": h(10, 0)},
            {"name": "page.view", "session_id": "s1", "properties": {"plan": "pro"}, "occurred_at": h(10, 20)},
            {"name": "signup", "session_id": "s1", "properties": {"plan": "free"}, "occurred_at": h(10, 30)},
        ]),
    )
    .await
    .expect(202);
    assert_eq!(r.data()["accepted"], 3);
    assert_eq!(r.header("location"), Some("/api/v1/analytics"));
    let key = write_key(owner).await;
    let r = send(
        &key,
        json!([
            {"name": "page.view", "session_id": "s2", "anonymous_id": "a1", "properties": {"plan": "free"}, "occurred_at": h(11, 5)},
            {"name": "page.view", "session_id": "s3", "anonymous_id": "a2", "occurred_at": h(33, 0)},
            {"name": "click", "session_id": "s3", "anonymous_id": "a2", "properties": {"plan": "pro"}, "occurred_at": h(33, 1)},
        ]),
    )
    .await
    .expect(202);
    assert_eq!(r.data()["accepted"], 3);
    d
}

async fn series(token: &str, query: &str) -> Value {
    get(&format!("/api/v1/analytics?{query}"))
        .token(token)
        .send()
        .await
        .expect(200)
        .data()
        .clone()
}

fn points(v: &Value) -> Vec<(String, Value, i64)> {
    v["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["bucket"].as_str().unwrap().to_string(),
                p["key"].clone(),
                p["value"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn aggregates_on_fixed_data_are_exact() {
    let owner = register().await;
    let d = fixed_events(&owner).await;
    let d1 = d + Duration::days(1);
    let range = format!("from={}&to={}", at(d), at(d + Duration::days(2)));
    let (day0s, day1s) = (day(d), day(d1));
    let none = Value::Null;

    let v = series(
        &owner.access,
        &format!("metric=events&interval=day&{range}"),
    )
    .await;
    assert_eq!(
        points(&v),
        [
            (day0s.clone(), none.clone(), 4),
            (day1s.clone(), none.clone(), 2)
        ]
    );
    assert_eq!(v["total"], 6);

    let v = series(
        &owner.access,
        &format!("metric=events&interval=hour&{range}"),
    )
    .await;
    let hour = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:00:00Z").to_string();
    assert_eq!(
        points(&v),
        [
            (hour(d + Duration::hours(10)), none.clone(), 3),
            (hour(d + Duration::hours(11)), none.clone(), 1),
            (hour(d + Duration::hours(33)), none.clone(), 2),
        ]
    );
    assert_eq!(v["total"], 6);

    // Users: the owner and anonymous a1 on day 0, a2 on day 1.
    let v = series(&owner.access, &format!("metric=users&interval=day&{range}")).await;
    assert_eq!(
        points(&v),
        [
            (day0s.clone(), none.clone(), 2),
            (day1s.clone(), none.clone(), 1)
        ]
    );
    assert_eq!(v["total"], 3);

    let v = series(
        &owner.access,
        &format!("metric=sessions&interval=day&{range}"),
    )
    .await;
    assert_eq!(
        points(&v),
        [
            (day0s.clone(), none.clone(), 2),
            (day1s.clone(), none.clone(), 1)
        ]
    );
    assert_eq!(v["total"], 3);

    let v = series(
        &owner.access,
        &format!("interval=day&group_by=name&{range}"),
    )
    .await;
    assert_eq!(
        points(&v),
        [
            (day0s.clone(), json!("page.view"), 3),
            (day0s.clone(), json!("signup"), 1),
            (day1s.clone(), json!("click"), 1),
            (day1s.clone(), json!("page.view"), 1),
        ]
    );

    let v = series(
        &owner.access,
        &format!("interval=day&group_by=property.plan&{range}"),
    )
    .await;
    assert_eq!(
        points(&v),
        [
            (day0s.clone(), json!("free"), 2),
            (day0s.clone(), json!("pro"), 2),
            (day1s.clone(), none.clone(), 1),
            (day1s.clone(), json!("pro"), 1),
        ]
    );
    assert_eq!(v["total"], 6);

    let v = series(
        &owner.access,
        &format!("name=page.view&interval=day&{range}"),
    )
    .await;
    assert_eq!(
        points(&v),
        [
            (day0s.clone(), none.clone(), 3),
            (day1s.clone(), none.clone(), 1)
        ]
    );
    assert_eq!(v["total"], 4);

    // Weeks are labelled with their Monday; the two days may fall in one week or two.
    let v = series(&owner.access, &format!("interval=week&{range}")).await;
    let want: Vec<(String, Value, i64)> = if monday(d) == monday(d1) {
        vec![(monday(d), none.clone(), 6)]
    } else {
        vec![(monday(d), none.clone(), 4), (monday(d1), none.clone(), 2)]
    };
    assert_eq!(points(&v), want);

    // The default range is the last 7 days: all six.
    let v = series(&owner.access, "").await;
    assert_eq!(v["total"], 6);
    assert_eq!(v["interval"], "day");

    // Sessions: s1 three events over 30 min, s2 one (a bounce), s3 two a minute apart.
    let s = get(&format!("/api/v1/analytics/sessions?{range}"))
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    let s = s.data();
    assert_eq!(s["count"], 3);
    assert_eq!(s["average_duration_secs"].as_f64(), Some(620.0));
    assert_eq!(s["events_per_session"].as_f64(), Some(2.0));
    assert_eq!(s["bounce_rate"].as_f64(), Some(0.333));
}

#[tokio::test]
async fn reads_are_for_admins_and_other_tenants_see_nothing() {
    let owner = register().await;
    let d = fixed_events(&owner).await;
    let range = format!("from={}&to={}", at(d), at(d + Duration::days(2)));
    let member = add_user(&owner, "member").await;
    // Any user may send events; reading them is for tenant admins.
    send(&member.access, json!([{"name": "page.view"}]))
        .await
        .expect(202);
    get("/api/v1/analytics")
        .token(&member.access)
        .send()
        .await
        .problem(403, "forbidden");
    get("/api/v1/analytics/sessions")
        .token(&member.access)
        .send()
        .await
        .problem(403, "forbidden");
    let admin_user = add_user(&owner, "admin").await;
    assert_eq!(
        series(&admin_user.access, &format!("interval=day&{range}")).await["total"],
        6
    );

    let other = register().await;
    let v = series(&other.access, &format!("interval=day&{range}")).await;
    assert_eq!(v["total"], 0);
    assert_eq!(v["series"], json!([]));
    let s = get(&format!("/api/v1/analytics/sessions?{range}"))
        .token(&other.access)
        .send()
        .await
        .expect(200);
    assert_eq!(s.data()["count"], 0);
    assert_eq!(s.data()["bounce_rate"].as_f64(), Some(0.0));
    // A read-only key may not write events.
    let r = post("/api/v1/api-keys")
        .token(&owner.access)
        .json(json!({"name": "ro", "scopes": ["read"]}))
        .send()
        .await
        .expect(201);
    let ro = r.data()["key"].as_str().unwrap().to_string();
    send(&ro, json!([{"name": "x"}]))
        .await
        .problem(403, "forbidden");
}

#[tokio::test]
async fn event_limits_name_the_field() {
    let owner = register().await;
    let t = &owner.access;
    let many: Vec<Value> = (0..101).map(|_| json!({"name": "x"})).collect();
    let r = send(t, Value::Array(many))
        .await
        .problem(422, "validation_failed");
    assert_eq!(field_of(&r), ["events"]);
    let hundred: Vec<Value> = (0..100).map(|i| json!({"name": format!("e{i}")})).collect();
    assert_eq!(
        send(t, Value::Array(hundred)).await.expect(202).data()["accepted"],
        100
    );
    let r = send(t, json!([])).await.problem(422, "validation_failed");
    assert_eq!(field_of(&r), ["events"]);

    let cases = [
        (json!({"name": "Page View"}), "events[1].name"),
        (
            json!({"name": "x", "properties": {"blob": "x".repeat(5 * 1024)}}),
            "events[1].properties",
        ),
        (
            json!({"name": "x", "occurred_at": at(now() - Duration::days(8))}),
            "events[1].occurred_at",
        ),
        (
            json!({"name": "x", "occurred_at": at(now() + Duration::minutes(10))}),
            "events[1].occurred_at",
        ),
        (
            json!({"name": "x", "session_id": "s".repeat(129)}),
            "events[1].session_id",
        ),
    ];
    for (bad, field) in cases {
        let r = send(t, json!([{"name": "fine"}, bad]))
            .await
            .problem(422, "validation_failed");
        assert_eq!(field_of(&r), [field]);
    }
    // Unknown fields (an IP, a user id) are refused, not stored.
    send(t, json!([{"name": "x", "user_id": "usr_forged"}]))
        .await
        .problem(422, "validation_failed");
    // Nothing of the refused batches was stored: only the 100.
    let v = series(t, "").await;
    assert_eq!(v["total"], 100);

    // Aggregate parameters.
    for (query, field) in [
        ("metric=clicks", "metric"),
        ("interval=month", "interval"),
        ("group_by=property.a-b", "group_by"),
        ("name=Bad%20Name", "name"),
        ("from=yesterday", "from"),
        ("from=2024-01-01&to=2025-06-01", "from"),
        ("from=2026-01-01&to=2026-03-15&interval=hour", "interval"),
    ] {
        let r = get(&format!("/api/v1/analytics?{query}"))
            .token(t)
            .send()
            .await
            .problem(422, "validation_failed");
        assert_eq!(field_of(&r), [field], "{query}");
    }
}

#[tokio::test]
async fn the_sweep_deletes_events_past_retention() {
    let owner = register().await;
    send(
        &owner.access,
        json!([{"name": "old.one"}, {"name": "month.old"}, {"name": "fresh"}]),
    )
    .await
    .expect(202);
    // Age two of them behind the API's back: one past the 90-day retention, one within it.
    let tenant = owner.tenant_id.clone();
    let month_ago = at(now() - Duration::days(30));
    let sql = format!(
        "UPDATE analytics_events SET occurred_at = CASE name \
         WHEN 'old.one' THEN '2020-01-01T00:00:00.000Z' ELSE '{month_ago}' END \
         WHERE tenant_id = '{tenant}' AND name IN ('old.one', 'month.old')"
    );
    d1_alone(move || server().d1(&sql)).await;
    get("/__scheduled?cron=*/5+*+*+*+*")
        .send()
        .await
        .expect(200);
    let names = |tenant: String| {
        let sql =
            format!("SELECT name FROM analytics_events WHERE tenant_id = '{tenant}' ORDER BY name");
        d1_alone(move || {
            server()
                .d1(&sql)
                .iter()
                .map(|r| r["name"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let left = names(tenant.clone()).await;
        if left == ["fresh", "month.old"] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sweep left {left:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    }
}

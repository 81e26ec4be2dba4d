//! Notifications: broadcasts to ids, a team, a role and everyone; preferences deciding the
//! channels (in-app off → no row, e-mail on → the mail mock gets it); reading, marking and
//! deleting one's own only; admins only for broadcasts and stats; the live feed.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};

use crate::client::*;
use crate::harness::server;
use crate::workflows::mock_calls;

async fn send(s: &Session, body: Value) -> Resp {
    post("/api/v1/notifications")
        .token(&s.access)
        .json(body)
        .send()
        .await
}

async fn mine(s: &Session, query: &str) -> Vec<Value> {
    get(&format!("/api/v1/notifications{query}"))
        .token(&s.access)
        .send()
        .await
        .expect(200)
        .data()
        .as_array()
        .unwrap()
        .clone()
}

async fn unread(s: &Session) -> i64 {
    get("/api/v1/notifications/unread-count")
        .token(&s.access)
        .send()
        .await
        .expect(200)
        .data()["count"]
        .as_i64()
        .unwrap()
}

/// A team of the owner's tenant with these members, written straight into D1.
async fn team(owner: &Session, members: &[&Session]) -> String {
    let id = format!("tm_{}", unique());
    let mut sql = format!(
        "INSERT INTO teams (id, tenant_id, name, created_at, updated_at) VALUES ('{id}', '{}', \
         'Team {id}', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z');",
        owner.tenant_id
    );
    for m in members {
        sql.push_str(&format!(
            "INSERT INTO team_members (team_id, user_id, tenant_id, role, created_at) VALUES \
             ('{id}', '{}', '{}', 'member', '2026-01-01T00:00:00.000Z');",
            m.user_id, owner.tenant_id
        ));
    }
    d1_alone(move || server().d1(&sql)).await;
    id
}

#[tokio::test]
async fn a_broadcast_to_a_role_and_to_all_reaches_the_active_users_it_names() {
    let owner = register().await;
    let agent = add_user(&owner, "agent").await;
    let member = add_user(&owner, "member").await;

    let r = send(
        &owner,
        json!({"title": "Agents meeting", "body": "At 10", "link": "/inbox", "to": {"role": "agent"}}),
    )
    .await
    .expect(202);
    assert_eq!(r.data()["recipients"], 1);
    assert_eq!(r.data()["in_app"], 1);
    let got = mine(&agent, "").await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["type"], "broadcast");
    assert_eq!(got[0]["title"], "Agents meeting");
    assert_eq!(got[0]["body"], "At 10");
    assert_eq!(got[0]["link"], "/inbox");
    assert_eq!(got[0]["read"], false);
    assert_eq!(got[0]["data"]["sent_by"], owner.user_id.as_str());
    assert!(mine(&member, "").await.is_empty(), "a member is no agent");

    let r = send(&owner, json!({"title": "Everyone", "to": {"all": true}}))
        .await
        .expect(202);
    assert_eq!(r.data()["recipients"], 3);
    for s in [&owner, &agent, &member] {
        let got = mine(s, "").await;
        assert_eq!(got[0]["title"], "Everyone", "newest first");
    }
    assert_eq!(mine(&agent, "").await.len(), 2);
    assert_eq!(mine(&agent, "?type=broadcast&limit=1").await.len(), 1);
    assert!(mine(&agent, "?type=payment.failed").await.is_empty());

    // A team and named users.
    let t = team(&owner, &[&member]).await;
    let r = send(&owner, json!({"title": "Team", "to": {"team_id": t}}))
        .await
        .expect(202);
    assert_eq!(r.data()["recipients"], 1);
    assert_eq!(mine(&member, "").await[0]["title"], "Team");
    let r = send(
        &owner,
        json!({"title": "You two", "to": {"user_ids": [agent.user_id, member.user_id, agent.user_id]}}),
    )
    .await
    .expect(202);
    assert_eq!(r.data()["recipients"], 2);

    // The broadcast is audited.
    let logs = get("/api/v1/audit-logs?action=notification.broadcast")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert!(
        logs.text.contains("notification.broadcast"),
        "{}",
        logs.text
    );

    // Paging: newest first, stable cursor.
    let first = get("/api/v1/notifications?limit=2")
        .token(&agent.access)
        .send()
        .await
        .expect(200);
    let cursor = first.body["next_cursor"].as_str().unwrap().to_string();
    let second = mine(&agent, &format!("?limit=2&cursor={cursor}")).await;
    let ids: Vec<&Value> = first
        .data()
        .as_array()
        .unwrap()
        .iter()
        .chain(second.iter())
        .map(|n| &n["id"])
        .collect();
    assert_eq!(ids.len(), 3);
    assert_ne!(ids[0], ids[2]);
}

#[tokio::test]
async fn broadcasts_are_validated_and_bounded_to_the_tenant() {
    let owner = register().await;
    let member = add_user(&owner, "member").await;
    let other = register().await;
    let other_team = team(&other, &[]).await;

    for (body, field) in [
        (json!({"title": "", "to": {"all": true}}), "title"),
        (json!({"title": "x", "to": {}}), "to"),
        (
            json!({"title": "x", "to": {"all": true, "role": "agent"}}),
            "to",
        ),
        (json!({"title": "x", "to": {"all": false}}), "to.all"),
        (json!({"title": "x", "to": {"role": "boss"}}), "to.role"),
        (json!({"title": "x", "to": {"user_ids": []}}), "to.user_ids"),
        (
            json!({"title": "x", "to": {"all": true}, "channels": ["sms"]}),
            "channels",
        ),
        (
            json!({"title": "x", "to": {"all": true}, "channels": []}),
            "channels",
        ),
        (
            json!({"title": "x", "to": {"all": true}, "link": "javascript:alert(1)"}),
            "link",
        ),
    ] {
        let r = send(&owner, body.clone())
            .await
            .problem(422, "validation_failed");
        assert!(
            r.text.contains(&format!("\"field\":\"{field}\"")),
            "{body}: {}",
            r.text
        );
    }
    send(
        &owner,
        json!({"title": "x", "to": {"all": true}, "extra": 1}),
    )
    .await
    .expect(422);
    let too_many: Vec<String> = (0..1001).map(|i| format!("usr_{i:04}")).collect();
    send(&owner, json!({"title": "x", "to": {"user_ids": too_many}}))
        .await
        .problem(422, "validation_failed");

    // Another tenant's user or team is not found; nothing is sent to anyone.
    send(
        &owner,
        json!({"title": "x", "to": {"user_ids": [member.user_id, other.user_id]}}),
    )
    .await
    .problem(404, "not_found");
    send(&owner, json!({"title": "x", "to": {"team_id": other_team}}))
        .await
        .problem(404, "not_found");
    assert!(mine(&member, "").await.is_empty());
    assert!(mine(&other, "").await.is_empty());

    // Members neither broadcast nor read stats.
    send(&member, json!({"title": "x", "to": {"all": true}}))
        .await
        .problem(403, "forbidden");
    get("/api/v1/notifications/stats")
        .token(&member.access)
        .send()
        .await
        .problem(403, "forbidden");
}

#[tokio::test]
async fn preferences_decide_in_app_rows_and_e_mails() {
    let owner = register().await;
    let quiet = add_user(&owner, "member").await;
    let mailed = add_user(&owner, "member").await;

    let defaults = get("/api/v1/notifications/preferences")
        .token(&quiet.access)
        .send()
        .await
        .expect(200);
    let prefs = &defaults.data()["preferences"];
    assert_eq!(prefs.as_object().unwrap().len(), 9);
    assert_eq!(
        prefs["broadcast"],
        json!({"in_app": true, "email": false, "push": false})
    );
    assert_eq!(
        prefs["payment.failed"],
        json!({"in_app": true, "email": true, "push": false})
    );

    let r = put("/api/v1/notifications/preferences")
        .token(&quiet.access)
        .json(json!({"preferences": {"broadcast": {"in_app": false}}}))
        .send()
        .await
        .expect(200);
    assert_eq!(
        r.data()["preferences"]["broadcast"],
        json!({"in_app": false, "email": false, "push": false})
    );
    let r = put("/api/v1/notifications/preferences")
        .token(&mailed.access)
        .json(json!({"preferences": {"broadcast": {"email": true}}}))
        .send()
        .await
        .expect(200);
    assert_eq!(
        r.data()["preferences"]["broadcast"],
        json!({"in_app": true, "email": true, "push": false})
    );
    // A later change of one field keeps the other.
    put("/api/v1/notifications/preferences")
        .token(&mailed.access)
        .json(json!({"preferences": {"team.added": {"email": true}}}))
        .send()
        .await
        .expect(200);
    let again = get("/api/v1/notifications/preferences")
        .token(&mailed.access)
        .send()
        .await
        .expect(200);
    assert_eq!(
        again.data()["preferences"]["broadcast"],
        json!({"in_app": true, "email": true, "push": false})
    );

    let r = put("/api/v1/notifications/preferences")
        .token(&quiet.access)
        .json(json!({"preferences": {"broadcast": {"email": true}, "made.up": {"email": true}}}))
        .send()
        .await
        .problem(422, "validation_failed");
    assert!(r.text.contains("made.up"), "{}", r.text);
    put("/api/v1/notifications/preferences")
        .token(&quiet.access)
        .json(json!({"preferences": {"broadcast": {"sms": true}}}))
        .send()
        .await
        .expect(422);

    let title = format!("Maintenance {}", unique());
    let r = send(
        &owner,
        json!({"title": title, "body": "Tonight <b>22:00</b>", "link": "/status", "to": {"role": "member"}}),
    )
    .await
    .expect(202);
    assert_eq!(r.data()["recipients"], 2);
    assert_eq!(r.data()["in_app"], 1, "the quiet member has in-app off");
    assert_eq!(r.data()["emailed"], 1);
    assert!(mine(&quiet, "").await.is_empty());
    let got = mine(&mailed, "").await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["emailed"], true);

    // The mail reaches the mock as a SendGrid body, to the user who asked for it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mail = loop {
        let calls = mock_calls("email").await;
        if let Some(c) = calls
            .iter()
            .find(|c| c["json"]["subject"] == title.as_str())
        {
            break c.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no mail for {title}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(
        mail["json"]["personalizations"][0]["to"][0]["email"],
        mailed.email.as_str()
    );
    let html = mail["json"]["content"][1]["value"].as_str().unwrap();
    assert!(html.contains("&lt;b&gt;22:00"), "{html}");
    assert!(!mock_calls("email")
        .await
        .iter()
        .any(|c| c["json"]["subject"] == title.as_str()
            && c["json"]["personalizations"][0]["to"][0]["email"] == quiet.email.as_str()));

    // API keys have no notifications of their own.
    let key = post("/api/v1/api-keys")
        .token(&owner.access)
        .json(json!({"name": "ci", "scopes": ["read", "write"]}))
        .send()
        .await
        .expect(201);
    get("/api/v1/notifications/preferences")
        .header("X-API-Key", key.data()["key"].as_str().unwrap())
        .send()
        .await
        .problem(403, "forbidden");
}

#[tokio::test]
async fn one_reads_marks_and_deletes_only_ones_own_notifications() {
    let owner = register().await;
    let agent = add_user(&owner, "agent").await;
    let other = register().await;
    send(
        &owner,
        json!({"title": "one", "to": {"user_ids": [agent.user_id]}}),
    )
    .await
    .expect(202);
    send(
        &owner,
        json!({"title": "two", "to": {"user_ids": [agent.user_id]}}),
    )
    .await
    .expect(202);
    send(
        &owner,
        json!({"title": "mine", "to": {"user_ids": [owner.user_id]}}),
    )
    .await
    .expect(202);
    assert_eq!(unread(&agent).await, 2);
    let list = mine(&agent, "").await;
    let (two, one) = (
        list[0]["id"].as_str().unwrap(),
        list[1]["id"].as_str().unwrap(),
    );

    let r = post(&format!("/api/v1/notifications/{one}/read"))
        .token(&agent.access)
        .send()
        .await
        .expect(200);
    assert_eq!(r.data()["read"], true);
    let read_at = r.data()["read_at"].as_str().unwrap().to_string();
    // The alias, and reading again keeps the first time.
    let again = put(&format!("/api/v1/notifications/{one}/read"))
        .token(&agent.access)
        .send()
        .await
        .expect(200);
    assert_eq!(again.data()["read_at"], read_at.as_str());
    assert_eq!(unread(&agent).await, 1);
    assert_eq!(mine(&agent, "?unread=true").await[0]["id"], two);
    assert_eq!(mine(&agent, "?unread=false").await[0]["id"], one);
    get("/api/v1/notifications?unread=maybe")
        .token(&agent.access)
        .send()
        .await
        .problem(422, "validation_failed");
    get("/api/v1/notifications?type=nope")
        .token(&agent.access)
        .send()
        .await
        .problem(422, "validation_failed");

    // Another user's (same tenant) or another tenant's: not found, unchanged.
    for s in [&owner, &other] {
        post(&format!("/api/v1/notifications/{two}/read"))
            .token(&s.access)
            .send()
            .await
            .problem(404, "not_found");
        delete(&format!("/api/v1/notifications/{two}"))
            .token(&s.access)
            .send()
            .await
            .problem(404, "not_found");
    }
    assert_eq!(unread(&agent).await, 1);

    let r = post("/api/v1/notifications/read-all")
        .token(&agent.access)
        .send()
        .await
        .expect(200);
    assert_eq!(r.data()["updated"], 1);
    let r = put("/api/v1/notifications/read-all")
        .token(&agent.access)
        .send()
        .await
        .expect(200);
    assert_eq!(r.data()["updated"], 0);
    assert_eq!(unread(&agent).await, 0);
    assert_eq!(
        unread(&owner).await,
        1,
        "read-all touched only the caller's"
    );

    delete(&format!("/api/v1/notifications/{one}"))
        .token(&agent.access)
        .send()
        .await
        .expect(204);
    delete(&format!("/api/v1/notifications/{one}"))
        .token(&agent.access)
        .send()
        .await
        .problem(404, "not_found");
    assert_eq!(mine(&agent, "").await.len(), 1);

    // Stats per type for the tenant, every type listed.
    let stats = get("/api/v1/notifications/stats")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    let types = stats.data()["types"].as_array().unwrap();
    assert_eq!(types.len(), 9);
    let b = types.iter().find(|t| t["type"] == "broadcast").unwrap();
    assert_eq!(b["created"], 2, "one deleted: {b}");
    assert_eq!(b["read"], 1);
    assert_eq!(b["emailed"], 0);
    let later = get("/api/v1/notifications/stats?from=2099-01-01")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert!(later.data()["types"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["created"] == 0));
    get("/api/v1/notifications/stats?from=yesterday")
        .token(&owner.access)
        .send()
        .await
        .problem(422, "validation_failed");
}

#[tokio::test]
async fn a_user_receives_a_broadcast_live_over_the_websocket() {
    let owner = register().await;
    let agent = add_user(&owner, "agent").await;
    let url = format!(
        "{}/api/v1/notifications/live?access_token={}",
        server().base.replace("http://", "ws://"),
        agent.access
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket upgrade");
    let hello = ws.next().await.unwrap().unwrap();
    assert!(hello.to_text().unwrap().contains("connected"));
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        r#"{"type":"ping"}"#.into(),
    ))
    .await
    .unwrap();
    let pong = ws.next().await.unwrap().unwrap();
    assert!(pong.to_text().unwrap().contains("pong"));

    // The owner's own notification does not reach the agent's feed; the broadcast does.
    send(
        &owner,
        json!({"title": "not yours", "to": {"user_ids": [owner.user_id]}}),
    )
    .await
    .expect(202);
    send(&owner, json!({"title": "Live hello", "to": {"all": true}}))
        .await
        .expect(202);
    let event = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let frame = ws.next().await.unwrap().unwrap();
            let v: Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
            if v["type"] == "notification.created" {
                return v;
            }
        }
    })
    .await
    .expect("a live notification");
    assert_eq!(event["data"]["title"], "Live hello");
    assert_eq!(event["data"]["type"], "broadcast");
    assert_eq!(event["data"]["id"], mine(&agent, "").await[0]["id"]);

    // The token as subprotocols gets `bearer` back; no token, no upgrade.
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!(
        "{}/api/v1/notifications/live",
        server().base.replace("http://", "ws://")
    )
    .into_client_request()
    .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        format!("bearer, {}", agent.access).parse().unwrap(),
    );
    let (mut browser, answer) = tokio_tungstenite::connect_async(request)
        .await
        .expect("websocket upgrade with the token as subprotocol");
    assert_eq!(
        answer.headers().get("Sec-WebSocket-Protocol").unwrap(),
        "bearer"
    );
    assert!(browser
        .next()
        .await
        .unwrap()
        .unwrap()
        .to_text()
        .unwrap()
        .contains("connected"));
    get("/api/v1/notifications/live")
        .send()
        .await
        .problem(401, "unauthorized");
    get("/api/v1/notifications/live")
        .token(&agent.access)
        .send()
        .await
        .problem(400, "bad_request");
}

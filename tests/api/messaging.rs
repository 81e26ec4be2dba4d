//! The WhatsApp inbox end to end: Meta-shaped webhooks signed like Meta signs them, the
//! consumer turning them into conversations, agents working the inbox, sends reaching the mock
//! Graph API (scripts/mock_upstream.py) and statuses flowing back, live over a WebSocket.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use hmac::Mac;
use serde_json::{json, Value};

use crate::client::*;
use crate::harness::server;
use crate::workflows::mock_calls;

pub struct Inbox {
    pub owner: Session,
    pub phone: String,
    pub app_secret: String,
}

/// A tenant with a connected channel; `phone_prefix` steers the mock Graph API.
pub async fn connected_inbox(phone_prefix: &str) -> Inbox {
    let owner = register().await;
    let phone = format!("{phone_prefix}{}", unique());
    let app_secret = format!("app-secret-{}", unique());
    let r = put("/api/v1/channels/whatsapp")
        .token(&owner.access)
        .json(json!({"phone_number_id": phone, "waba_id": "1029384756", "display_phone": "+1 555 0100",
                     "access_token": "EAAG-test-token-7788", "app_secret": app_secret,
                     "verify_token": "let-me-in"}))
        .send()
        .await
        .expect(200);
    assert_eq!(
        r.data()["access_token"],
        json!({"set": true, "last4": "7788"})
    );
    assert!(!r.text.contains("EAAG-test-token") && !r.text.contains(&app_secret));
    Inbox {
        owner,
        phone,
        app_secret,
    }
}

fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

pub fn change(phone: &str, messages: Value, statuses: Value) -> Value {
    json!({"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550100", "phone_number_id": phone},
        "contacts": [{"profile": {"name": "Kerry Fisher"}, "wa_id": "16315551181"}],
        "messages": messages, "statuses": statuses}})
}

pub fn post_of(changes: Vec<Value>) -> Value {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "1029384756", "changes": changes}]})
}

pub fn text_message(wamid: &str, from: &str, body: &str) -> Value {
    json!({"from": from, "id": wamid, "timestamp": "1700000000", "type": "text", "text": {"body": body}})
}

pub async fn deliver(inbox: &Inbox, payload: &Value) -> Resp {
    let body = payload.to_string();
    post(&format!(
        "/api/v1/webhooks/whatsapp/{}",
        inbox.owner.tenant_id
    ))
    .raw(body.as_bytes(), "application/json")
    .header(
        "X-Hub-Signature-256",
        &sign(&inbox.app_secret, body.as_bytes()),
    )
    .send()
    .await
}

/// Polls `path` until `done` holds on its data.
pub async fn poll(token: &str, path: &str, secs: u64, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let r = get(path).token(token).send().await;
        // A long wait spends the tenant's requests per minute: back off as a client would.
        if r.status == 429 && Instant::now() < deadline {
            let wait = r
                .header("retry-after")
                .and_then(|s| s.parse().ok())
                .unwrap_or(1u64);
            tokio::time::sleep(Duration::from_secs(wait.min(10))).await;
            continue;
        }
        let r = r.expect(200);
        if done(r.data()) {
            return r.data().clone();
        }
        assert!(
            Instant::now() < deadline,
            "{path} did not reach the expected state: {}",
            r.text
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn len(v: &Value) -> usize {
    v.as_array().map_or(0, Vec::len)
}

/// The inbox's only conversation, once the consumer created it.
async fn first_conversation(inbox: &Inbox) -> Value {
    poll(&inbox.owner.access, "/api/v1/conversations", 20, |d| {
        len(d) == 1
    })
    .await[0]
        .clone()
}

#[tokio::test]
async fn meta_verification_echoes_the_challenge_only_for_the_right_token() {
    let inbox = connected_inbox("pn").await;
    let path = format!("/api/v1/webhooks/whatsapp/{}", inbox.owner.tenant_id);
    let ok = get(&format!(
        "{path}?hub.mode=subscribe&hub.verify_token=let-me-in&hub.challenge=1158201444"
    ))
    .send()
    .await
    .expect(200);
    assert_eq!(ok.text, "1158201444");
    assert!(ok.header("content-type").unwrap().starts_with("text/plain"));
    get(&format!(
        "{path}?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1"
    ))
    .send()
    .await
    .problem(403, "forbidden");
    get(&format!(
        "{path}?hub.mode=unsubscribe&hub.verify_token=let-me-in&hub.challenge=1"
    ))
    .send()
    .await
    .problem(403, "forbidden");
    get("/api/v1/webhooks/whatsapp/ten_doesnotexist?hub.mode=subscribe&hub.verify_token=x&hub.challenge=1")
        .send()
        .await
        .problem(404, "not_found");
}

#[tokio::test]
async fn a_bad_or_missing_signature_is_401_and_nothing_is_stored() {
    let inbox = connected_inbox("pn").await;
    let payload = post_of(vec![change(
        &inbox.phone,
        json!([text_message("wamid.S1", "16315551181", "hi")]),
        json!([]),
    )]);
    let body = payload.to_string();
    let path = format!("/api/v1/webhooks/whatsapp/{}", inbox.owner.tenant_id);
    post(&path)
        .raw(body.as_bytes(), "application/json")
        .send()
        .await
        .problem(401, "invalid_signature");
    post(&path)
        .raw(body.as_bytes(), "application/json")
        .header(
            "X-Hub-Signature-256",
            &sign("not-the-secret", body.as_bytes()),
        )
        .send()
        .await
        .problem(401, "invalid_signature");
    // Signed for other bytes than the ones sent.
    post(&path)
        .raw(format!("{body} ").as_bytes(), "application/json")
        .header(
            "X-Hub-Signature-256",
            &sign(&inbox.app_secret, body.as_bytes()),
        )
        .send()
        .await
        .problem(401, "invalid_signature");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let list = get("/api/v1/conversations")
        .token(&inbox.owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(len(list.data()), 0);
    post("/api/v1/webhooks/whatsapp/ten_doesnotexist")
        .raw(body.as_bytes(), "application/json")
        .header(
            "X-Hub-Signature-256",
            &sign(&inbox.app_secret, body.as_bytes()),
        )
        .send()
        .await
        .problem(404, "not_found");
}

#[tokio::test]
async fn an_inbound_message_becomes_a_conversation_and_a_duplicate_delivery_creates_nothing_twice()
{
    let inbox = connected_inbox("pn").await;
    let payload = post_of(vec![change(
        &inbox.phone,
        json!([text_message(
            "wamid.HBgL1",
            "16315551181",
            "Where is my order?"
        )]),
        json!([]),
    )]);
    let first = deliver(&inbox, &payload).await.expect(200);
    assert_eq!(first.data()["status"], "received");
    deliver(&inbox, &payload).await.expect(200);
    let c = first_conversation(&inbox).await;
    assert_eq!(c["contact"]["wa_id"], "16315551181");
    assert_eq!(c["contact"]["name"], "Kerry Fisher");
    assert_eq!(c["status"], "open");
    assert_eq!(c["last_message_preview"], "Where is my order?");
    // Let the duplicate be processed too, then count.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let id = c["id"].as_str().unwrap();
    let thread = get(&format!("/api/v1/conversations/{id}/messages"))
        .token(&inbox.owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(len(thread.data()), 1);
    assert_eq!(thread.data()[0]["direction"], "inbound");
    assert_eq!(thread.data()[0]["type"], "text");
    assert_eq!(
        thread.data()[0]["content"],
        json!({"body": "Where is my order?"})
    );
    let again = get(&format!("/api/v1/conversations/{id}"))
        .token(&inbox.owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(again.data()["unread_count"], 1);

    // The platform admin replays the stored event: still one message.
    let admin = admin().await;
    post(&format!(
        "/api/v1/admin/webhook-events/{}/replay",
        first.data()["id"].as_str().unwrap()
    ))
    .token(&admin.access)
    .send()
    .await
    .expect(202);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let thread = get(&format!("/api/v1/conversations/{id}/messages"))
        .token(&inbox.owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(len(thread.data()), 1);
}

#[tokio::test]
async fn a_multi_entry_post_of_every_kind_is_stored_and_malformed_json_is_kept_as_invalid() {
    let inbox = connected_inbox("pn").await;
    let a = change(
        &inbox.phone,
        json!([
            {"from": "16315551181", "id": "wamid.M1", "timestamp": "1700000001", "type": "image",
             "image": {"id": "IMG1", "mime_type": "image/jpeg", "sha256": "x", "caption": "Broken box"}},
            {"from": "16315551181", "id": "wamid.M2", "timestamp": "1700000002", "type": "location",
             "location": {"latitude": 52.52, "longitude": 13.4, "name": "Alexanderplatz"}}
        ]),
        json!([]),
    );
    let b = change(
        &inbox.phone,
        json!([
            {"from": "16315551181", "id": "wamid.M3", "timestamp": "1700000003", "type": "interactive",
             "interactive": {"type": "button_reply", "button_reply": {"id": "yes", "title": "Yes please"}}},
            {"from": "16315551181", "id": "wamid.M4", "timestamp": "1700000004", "type": "brand_new_type",
             "brand_new_type": {"x": 1}}
        ]),
        json!([]),
    );
    let mut payload = post_of(vec![a]);
    payload["entry"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id": "1029384756", "changes": [b]}));
    deliver(&inbox, &payload).await.expect(200);
    let c = first_conversation(&inbox).await;
    let path = format!(
        "/api/v1/conversations/{}/messages",
        c["id"].as_str().unwrap()
    );
    let thread = poll(&inbox.owner.access, &path, 20, |d| len(d) == 4).await;
    let texts: Vec<&str> = thread
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        vec![
            "Broken box",
            "[location] Alexanderplatz",
            "Yes please",
            "[brand_new_type]"
        ]
    );
    let messages = get("/api/v1/messages?q=Broken")
        .token(&inbox.owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(len(messages.data()), 1);
    assert_eq!(messages.data()[0]["content"]["id"], "IMG1");

    let garbage = b"{not json";
    let r = post(&format!(
        "/api/v1/webhooks/whatsapp/{}",
        inbox.owner.tenant_id
    ))
    .raw(garbage, "application/json")
    .header("X-Hub-Signature-256", &sign(&inbox.app_secret, garbage))
    .send()
    .await
    .expect(200);
    assert_eq!(r.data()["status"], "invalid");
}

#[tokio::test]
async fn an_agent_reply_reaches_the_graph_api_and_statuses_flow_back_without_going_backwards() {
    let inbox = connected_inbox("pn").await;
    let agent = add_user(&inbox.owner, "agent").await;
    deliver(
        &inbox,
        &post_of(vec![change(
            &inbox.phone,
            json!([text_message("wamid.IN1", "16315551181", "Hello?")]),
            json!([]),
        )]),
    )
    .await
    .expect(200);
    let c = first_conversation(&inbox).await;
    let cid = c["id"].as_str().unwrap().to_string();
    patch(&format!("/api/v1/conversations/{cid}"))
        .token(&agent.access)
        .json(json!({"assigned_to": agent.user_id, "tags": ["order"]}))
        .send()
        .await
        .expect(200);
    let sent = post("/api/v1/messages")
        .token(&agent.access)
        .json(json!({"conversation_id": cid, "type": "text", "text": "On its way!"}))
        .send()
        .await
        .expect(202);
    assert_eq!(sent.data()["status"], "queued");
    let mid = sent.data()["id"].as_str().unwrap().to_string();
    assert_eq!(
        sent.header("location"),
        Some(format!("/api/v1/messages/{mid}").as_str())
    );
    let m = poll(&agent.access, &format!("/api/v1/messages/{mid}"), 20, |m| {
        m["status"] != "queued" && m["status"] != "sending"
    })
    .await;
    assert_eq!(m["status"], "sent", "{m}");
    let wamid = m["wamid"].as_str().unwrap().to_string();

    let calls = mock_calls(&format!("graph-{}", inbox.phone)).await;
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0]["headers"]["authorization"],
        "Bearer EAAG-test-token-7788"
    );
    assert_eq!(calls[0]["path"], format!("/v21.0/{}/messages", inbox.phone));
    let body: Value = serde_json::from_str(calls[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["to"], "16315551181");
    assert_eq!(body["text"]["body"], "On its way!");
    assert_eq!(body["messaging_product"], "whatsapp");

    // `read` arrives before `delivered`: the message stays read.
    let status = |s: &str, ts: &str| json!({"id": wamid, "status": s, "timestamp": ts, "recipient_id": "16315551181"});
    deliver(
        &inbox,
        &post_of(vec![change(
            &inbox.phone,
            json!([]),
            json!([status("read", "1700000010")]),
        )]),
    )
    .await
    .expect(200);
    poll(&agent.access, &format!("/api/v1/messages/{mid}"), 20, |m| {
        m["status"] == "read"
    })
    .await;
    deliver(
        &inbox,
        &post_of(vec![change(
            &inbox.phone,
            json!([]),
            json!([status("delivered", "1700000009")]),
        )]),
    )
    .await
    .expect(200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let m = get(&format!("/api/v1/messages/{mid}"))
        .token(&agent.access)
        .send()
        .await
        .expect(200);
    assert_eq!(m.data()["status"], "read");

    let resolved = patch(&format!("/api/v1/conversations/{cid}"))
        .token(&agent.access)
        .json(json!({"status": "resolved"}))
        .send()
        .await
        .expect(200);
    assert_eq!(resolved.data()["status"], "resolved");
    assert_eq!(resolved.data()["assigned_to"], agent.user_id.as_str());
    let summary = get("/api/v1/conversations/stats/summary")
        .token(&agent.access)
        .send()
        .await
        .expect(200);
    assert_eq!(summary.data()["by_status"]["resolved"], 1);
    let me = summary.data()["per_agent"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["user_id"] == agent.user_id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(me["resolved"], 1);
    let read = post(&format!("/api/v1/conversations/{cid}/read"))
        .token(&agent.access)
        .send()
        .await
        .expect(200);
    assert_eq!(read.data()["unread_count"], 0);
}

#[tokio::test]
async fn a_rejected_send_ends_failed_with_metas_error_and_a_transient_one_is_retried() {
    let rejected = connected_inbox("reject").await;
    let r = post("/api/v1/messages")
        .token(&rejected.owner.access)
        .json(json!({"to": "+4915112345678", "type": "text", "text": "Hi"}))
        .send()
        .await
        .expect(202);
    let mid = r.data()["id"].as_str().unwrap().to_string();
    let m = poll(
        &rejected.owner.access,
        &format!("/api/v1/messages/{mid}"),
        20,
        |m| m["status"] != "queued" && m["status"] != "sending",
    )
    .await;
    assert_eq!(m["status"], "failed");
    assert_eq!(m["error_code"], "131030");
    assert_eq!(
        m["error_title"],
        "Recipient phone number not in allowed list"
    );
    assert_eq!(m["attempts"], 1);

    let flaky = connected_inbox("flaky").await;
    let r = post("/api/v1/messages")
        .token(&flaky.owner.access)
        .json(json!({"to": "4915112345678", "type": "text", "text": "Hi"}))
        .send()
        .await
        .expect(202);
    let mid = r.data()["id"].as_str().unwrap().to_string();
    let m = poll(
        &flaky.owner.access,
        &format!("/api/v1/messages/{mid}"),
        30,
        |m| m["status"] != "queued" && m["status"] != "sending",
    )
    .await;
    assert_eq!(m["status"], "sent", "{m}");
    assert_eq!(m["attempts"], 2);
    assert_eq!(mock_calls(&format!("graph-{}", flaky.phone)).await.len(), 2);
}

#[tokio::test]
async fn a_burst_of_sends_is_paced_by_the_numbers_token_bucket() {
    // The harness runs with SEND_RATE_PER_SEC=2: six sends need about two seconds.
    let inbox = connected_inbox("pn").await;
    for i in 0..6 {
        post("/api/v1/messages")
            .token(&inbox.owner.access)
            .json(json!({"to": format!("49151000000{i}"), "type": "text", "text": format!("n{i}")}))
            .send()
            .await
            .expect(202);
    }
    let key = format!("graph-{}", inbox.phone);
    let deadline = Instant::now() + Duration::from_secs(40);
    while mock_calls(&key).await.len() < 6 {
        assert!(Instant::now() < deadline, "not all sends went out");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let at: Vec<f64> = mock_calls(&key)
        .await
        .iter()
        .map(|c| c["at"].as_f64().unwrap())
        .collect();
    let span =
        at.iter().cloned().fold(f64::MIN, f64::max) - at.iter().cloned().fold(f64::MAX, f64::min);
    assert!(span >= 1.5, "six sends at 2/s went out within {span:.2}s");
    let failed = get("/api/v1/messages?status=failed")
        .token(&inbox.owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(len(failed.data()), 0, "paced sends wait, they do not fail");
}

#[tokio::test]
async fn an_agent_sees_a_new_inbound_message_live_over_the_websocket() {
    let inbox = connected_inbox("pn").await;
    deliver(
        &inbox,
        &post_of(vec![change(
            &inbox.phone,
            json!([text_message("wamid.L1", "16315551181", "first")]),
            json!([]),
        )]),
    )
    .await
    .expect(200);
    let c = first_conversation(&inbox).await;
    let url = format!(
        "{}/api/v1/conversations/{}/live?access_token={}",
        server().base.replace("http://", "ws://"),
        c["id"].as_str().unwrap(),
        inbox.owner.access
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
    deliver(
        &inbox,
        &post_of(vec![change(
            &inbox.phone,
            json!([text_message("wamid.L2", "16315551181", "second")]),
            json!([]),
        )]),
    )
    .await
    .expect(200);
    let event = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let frame = ws.next().await.unwrap().unwrap();
            let v: Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
            if v["type"] == "message.created" {
                return v;
            }
        }
    })
    .await
    .expect("a live event");
    assert_eq!(event["data"]["text"], "second");
    assert_eq!(event["conversation_id"], c["id"]);

    // A browser sends its token as subprotocols (`new WebSocket(url, ["bearer", token])`) and
    // must get `bearer` back.
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!(
        "{}/api/v1/conversations/{}/live",
        server().base.replace("http://", "ws://"),
        c["id"].as_str().unwrap()
    )
    .into_client_request()
    .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        format!("bearer, {}", inbox.owner.access).parse().unwrap(),
    );
    let (mut browser, answer) = tokio_tungstenite::connect_async(request)
        .await
        .expect("websocket upgrade with the token as subprotocol");
    assert_eq!(
        answer.headers().get("Sec-WebSocket-Protocol").unwrap(),
        "bearer"
    );
    let hello = browser.next().await.unwrap().unwrap();
    assert!(hello.to_text().unwrap().contains("connected"));

    // Without a token, or for another tenant, there is no upgrade.
    let other = register().await;
    let path = format!("/api/v1/conversations/{}/live", c["id"].as_str().unwrap());
    get(&path).send().await.problem(401, "unauthorized");
    get(&format!("{path}?access_token={}", other.access))
        .send()
        .await
        .problem(404, "not_found");
}

#[tokio::test]
async fn templates_are_validated_and_a_campaign_reports_progress() {
    let inbox = connected_inbox("pn").await;
    post("/api/v1/templates")
        .token(&inbox.owner.access)
        .json(
            json!({"name": "bad", "language": "en_US", "category": "UTILITY",
                     "components": [{"type": "BODY", "text": "Hi {{2}}"}]}),
        )
        .send()
        .await
        .problem(422, "validation_failed");
    post("/api/v1/templates")
        .token(&inbox.owner.access)
        .json(json!({"name": "order_update", "language": "en_US", "category": "utility",
                     "components": [{"type": "BODY", "text": "Hi {{1}}, order {{2}} has shipped."}]}))
        .send()
        .await
        .expect(201);
    post("/api/v1/templates")
        .token(&inbox.owner.access)
        .json(
            json!({"name": "order_update", "language": "en_US", "category": "UTILITY",
                     "components": [{"type": "BODY", "text": "dup"}]}),
        )
        .send()
        .await
        .problem(409, "conflict");
    post("/api/v1/campaigns")
        .token(&inbox.owner.access)
        .json(json!({"template": "order_update", "language": "en_US", "recipients": ["4915100000001"], "parameters": ["only one"]}))
        .send()
        .await
        .problem(422, "validation_failed");
    let r = post("/api/v1/campaigns")
        .token(&inbox.owner.access)
        .json(json!({"template": "order_update", "language": "en_US",
                     "recipients": ["4915100000001", "+4915100000002", "4915100000003"],
                     "parameters": ["Ann", "A-42"]}))
        .send()
        .await
        .expect(202);
    assert_eq!(r.data()["progress"]["total"], 3);
    let id = r.data()["id"].as_str().unwrap().to_string();
    let done = poll(
        &inbox.owner.access,
        &format!("/api/v1/campaigns/{id}"),
        30,
        |c| c["progress"]["sent"] == 3,
    )
    .await;
    assert_eq!(done["progress"]["queued"], 0);
    let calls = mock_calls(&format!("graph-{}", inbox.phone)).await;
    let body: Value = serde_json::from_str(calls[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["template"]["name"], "order_update");
    assert_eq!(
        body["template"]["components"][0]["parameters"][1]["text"],
        "A-42"
    );
    let threads = get("/api/v1/messages?direction=outbound")
        .token(&inbox.owner.access)
        .send()
        .await
        .expect(200);
    assert!(threads.data()[0]["text"]
        .as_str()
        .unwrap()
        .starts_with("Hi Ann, order A-42"));
}

#[tokio::test]
async fn another_tenants_inbox_is_not_found_and_members_cannot_work_it() {
    let inbox = connected_inbox("pn").await;
    deliver(
        &inbox,
        &post_of(vec![change(
            &inbox.phone,
            json!([text_message("wamid.X1", "16315551181", "hi")]),
            json!([]),
        )]),
    )
    .await
    .expect(200);
    let c = first_conversation(&inbox).await;
    let cid = c["id"].as_str().unwrap();
    let contact = c["contact"]["id"].as_str().unwrap();
    let thread = get(&format!("/api/v1/conversations/{cid}/messages"))
        .token(&inbox.owner.access)
        .send()
        .await
        .expect(200);
    let mid = thread.data()[0]["id"].as_str().unwrap();
    let other = connected_inbox("pn").await.owner;
    for path in [
        format!("/api/v1/conversations/{cid}"),
        format!("/api/v1/conversations/{cid}/messages"),
        format!("/api/v1/messages/{mid}"),
        format!("/api/v1/contacts/{contact}"),
    ] {
        get(&path)
            .token(&other.access)
            .send()
            .await
            .problem(404, "not_found");
    }
    patch(&format!("/api/v1/conversations/{cid}"))
        .token(&other.access)
        .json(json!({"status": "resolved"}))
        .send()
        .await
        .problem(404, "not_found");
    post("/api/v1/messages")
        .token(&other.access)
        .json(json!({"conversation_id": cid, "type": "text", "text": "x"}))
        .send()
        .await
        .problem(404, "not_found");
    // Assigning to another tenant's user is a field error.
    patch(&format!("/api/v1/conversations/{cid}"))
        .token(&inbox.owner.access)
        .json(json!({"assigned_to": other.user_id}))
        .send()
        .await
        .problem(422, "validation_failed");
    let member = add_user(&inbox.owner, "member").await;
    get("/api/v1/conversations")
        .token(&member.access)
        .send()
        .await
        .problem(403, "forbidden");
    let named = patch(&format!("/api/v1/contacts/{contact}"))
        .token(&inbox.owner.access)
        .json(json!({"name": "Kerry F.", "tags": ["vip"], "notes": "Prefers mornings"}))
        .send()
        .await
        .expect(200);
    assert_eq!(named.data()["tags"], json!(["vip"]));
    let unconnected = register().await;
    get("/api/v1/channels/whatsapp")
        .token(&unconnected.access)
        .send()
        .await
        .problem(404, "not_found");
    put("/api/v1/channels/whatsapp")
        .token(&inbox.owner.access)
        .json(json!({"phone_number_id": "has spaces"}))
        .send()
        .await
        .problem(422, "validation_failed");
    post("/api/v1/messages")
        .token(&inbox.owner.access)
        .json(json!({"conversation_id": cid, "type": "text", "text": ""}))
        .send()
        .await
        .problem(422, "validation_failed");
}

#[tokio::test]
async fn new_conversations_are_assigned_round_robin_when_the_tenant_wants_it() {
    let inbox = connected_inbox("pn").await;
    let first = add_user(&inbox.owner, "agent").await;
    let second = add_user(&inbox.owner, "agent").await;
    patch("/api/v1/settings")
        .token(&inbox.owner.access)
        .json(json!({"auto_assign_conversations": true}))
        .send()
        .await
        .expect(200);
    for (i, from) in ["4915100000101", "4915100000102", "4915100000103"]
        .iter()
        .enumerate()
    {
        deliver(
            &inbox,
            &post_of(vec![change(
                &inbox.phone,
                json!([text_message(&format!("wamid.RR{i}"), from, "hi")]),
                json!([]),
            )]),
        )
        .await
        .expect(200);
        // One at a time, so "least recently assigned" is well defined.
        poll(&inbox.owner.access, "/api/v1/conversations", 20, |d| {
            len(d) == i + 1
        })
        .await;
    }
    let list = get("/api/v1/conversations")
        .token(&inbox.owner.access)
        .send()
        .await
        .expect(200);
    let assigned: Vec<&str> = list
        .data()
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|c| c["assigned_to"].as_str().unwrap_or("none"))
        .collect();
    assert_eq!(
        assigned[0], assigned[2],
        "the third goes back to the first agent: {assigned:?}"
    );
    assert_ne!(assigned[0], assigned[1]);
    let agents = [first.user_id.as_str(), second.user_id.as_str()];
    assert!(assigned.iter().all(|a| agents.contains(a)), "{assigned:?}");
    let mine = get("/api/v1/conversations?assigned_to=me")
        .token(&first.access)
        .send()
        .await
        .expect(200);
    assert!(!mine.data().as_array().unwrap().is_empty());
}

//! Web push: a browser's subscription (the test's own P-256 key pair and auth secret) receives,
//! at the mock push service, a payload that decrypts to the notification JSON, with a VAPID
//! token that verifies with `GET /notifications/push-key`'s key; 410 removes the
//! subscription; 429 is retried after its Retry-After; 5xx ends in a dead letter; others'
//! subscriptions are 404; bad bodies are 422.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};
use serde_json::{json, Value};

use crate::client::*;
use crate::harness::{server, VAPID_SUBJECT};
use crate::workflows::{mock_calls, mock_url};

fn b64d(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .expect("base64url")
}

fn b64e(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// A browser's side of a subscription: its key pair, auth secret and push endpoint id.
struct Browser {
    key: SecretKey,
    auth: [u8; 16],
    id: String,
}

impl Browser {
    fn new(prefix: &str) -> Browser {
        let key = loop {
            let mut b = [0u8; 32];
            getrandom::fill(&mut b).unwrap();
            if let Ok(k) = SecretKey::from_slice(&b) {
                break k;
            }
        };
        let mut auth = [0u8; 16];
        getrandom::fill(&mut auth).unwrap();
        Browser {
            key,
            auth,
            id: format!("{prefix}-{}", unique()),
        }
    }

    fn public(&self) -> Vec<u8> {
        self.key
            .public_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
    }

    fn endpoint(&self) -> String {
        mock_url(&format!("/push/{}", self.id))
    }

    /// What `PushSubscription.toJSON()` gives.
    fn subscription(&self) -> Value {
        json!({"endpoint": self.endpoint(), "expirationTime": null,
               "keys": {"p256dh": b64e(&self.public()), "auth": b64e(&self.auth)}})
    }

    /// Decrypts an `aes128gcm` body as the browser does (RFC 8291 §3.4, RFC 8188).
    fn decrypt(&self, body: &[u8]) -> Vec<u8> {
        use aes_gcm::aead::{Aead, KeyInit};
        let salt = &body[..16];
        assert_eq!(
            u32::from_be_bytes(body[16..20].try_into().unwrap()),
            4096,
            "record size"
        );
        assert_eq!(body[20], 65, "key id: the sender's public key");
        let sender = PublicKey::from_sec1_bytes(&body[21..86]).expect("the sender's key");
        let shared = p256::ecdh::diffie_hellman(self.key.to_nonzero_scalar(), sender.as_affine());
        let mut info = b"WebPush: info\0".to_vec();
        info.extend_from_slice(&self.public());
        info.extend_from_slice(&body[21..86]);
        let mut ikm = [0u8; 32];
        hkdf::Hkdf::<sha2::Sha256>::new(Some(&self.auth[..]), shared.raw_secret_bytes())
            .expand(&info, &mut ikm)
            .unwrap();
        let prk = hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), &ikm);
        let (mut cek, mut nonce) = ([0u8; 16], [0u8; 12]);
        prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek)
            .unwrap();
        prk.expand(b"Content-Encoding: nonce\0", &mut nonce)
            .unwrap();
        let mut plain = aes_gcm::Aes128Gcm::new_from_slice(&cek)
            .unwrap()
            .decrypt(aes_gcm::Nonce::from_slice(&nonce), &body[86..])
            .expect("the payload decrypts with the subscription's keys");
        assert_eq!(plain.pop(), Some(0x02), "a single, last record");
        plain
    }
}

async fn subscribe(s: &Session, b: &Browser) -> Resp {
    post("/api/v1/notifications/push-subscriptions")
        .token(&s.access)
        .json(b.subscription())
        .send()
        .await
}

async fn subscriptions(s: &Session) -> Vec<Value> {
    get("/api/v1/notifications/push-subscriptions")
        .token(&s.access)
        .send()
        .await
        .expect(200)
        .data()
        .as_array()
        .unwrap()
        .clone()
}

async fn want_push(s: &Session) {
    let r = put("/api/v1/notifications/preferences")
        .token(&s.access)
        .json(json!({"preferences": {"broadcast": {"push": true}}}))
        .send()
        .await
        .expect(200);
    assert_eq!(
        r.data()["preferences"]["broadcast"],
        json!({"in_app": true, "email": false, "push": true})
    );
}

async fn broadcast(owner: &Session, to: Value, title: &str) -> Value {
    post("/api/v1/notifications")
        .token(&owner.access)
        .json(json!({"title": title, "body": "Only 5 left", "link": "/products", "to": to}))
        .send()
        .await
        .expect(202)
        .data()
        .clone()
}

/// The calls the mock push service got for `b`, once there are at least `n` (within `secs`).
async fn pushes(b: &Browser, n: usize, secs: u64) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let calls: Vec<Value> = mock_calls("push")
            .await
            .into_iter()
            .filter(|c| c["id"] == b.id.as_str())
            .collect();
        if calls.len() >= n {
            return calls;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} pushes to {} arrived",
            calls.len(),
            b.id
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn push_key() -> Vec<u8> {
    let r = get("/api/v1/notifications/push-key")
        .send()
        .await
        .expect(200);
    let key = b64d(r.data()["public_key"].as_str().unwrap());
    assert_eq!(key.len(), 65);
    assert!(PublicKey::from_sec1_bytes(&key).is_ok());
    key
}

/// Checks the VAPID `Authorization` of a recorded call and returns its claims.
fn verified_vapid(call: &Value, public_key: &[u8]) -> Value {
    let header = call["headers"]["authorization"].as_str().unwrap();
    let (t, k) = header
        .strip_prefix("vapid t=")
        .and_then(|rest| rest.split_once(", k="))
        .expect("vapid t=…, k=…");
    assert_eq!(b64d(k), public_key, "k= is the key GET push-key shows");
    let parts: Vec<&str> = t.split('.').collect();
    assert_eq!(parts.len(), 3);
    let head: Value = serde_json::from_slice(&b64d(parts[0])).unwrap();
    assert_eq!(head["alg"], "ES256");
    let key = VerifyingKey::from_sec1_bytes(public_key).unwrap();
    let sig = Signature::from_slice(&b64d(parts[2])).unwrap();
    key.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
        .expect("the VAPID token verifies with the public key");
    serde_json::from_slice(&b64d(parts[1])).unwrap()
}

#[tokio::test]
async fn a_subscribed_browser_receives_an_encrypted_push_of_the_notification() {
    let owner = register().await;
    let member = add_user(&owner, "member").await;
    let key = push_key().await;

    let browser = Browser::new("ok");
    let r = subscribe(&owner, &browser).await.expect(201);
    assert!(r.data()["id"].as_str().unwrap().starts_with("psub"));
    assert_eq!(r.data()["endpoint"], browser.endpoint().as_str());
    assert!(r.data().get("keys").is_none(), "keys are not shown back");
    // Push is off until chosen.
    let prefs = get("/api/v1/notifications/preferences")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(
        prefs.data()["preferences"]["broadcast"],
        json!({"in_app": true, "email": false, "push": false})
    );
    want_push(&owner).await;
    // The member's browser is subscribed, but the member never chose push.
    let quiet = Browser::new("ok");
    subscribe(&member, &quiet).await.expect(201);

    let title = format!("Stock low {}", unique());
    let sent = broadcast(&owner, json!({"all": true}), &title).await;
    assert_eq!(sent["recipients"], 2);
    assert_eq!(sent["pushed"], 1);

    let call = &pushes(&browser, 1, 20).await[0];
    let h = &call["headers"];
    assert_eq!(h["content-encoding"], "aes128gcm");
    assert_eq!(h["ttl"], "86400");
    assert_eq!(h["urgency"], "normal");
    let body = STANDARD.decode(call["body_b64"].as_str().unwrap()).unwrap();
    let plain: Value = serde_json::from_slice(&browser.decrypt(&body)).unwrap();
    let listed = get("/api/v1/notifications")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    let notification = &listed.data()[0];
    assert_eq!(notification["title"], title.as_str());
    assert_eq!(plain["id"], notification["id"]);
    assert_eq!(plain["type"], "broadcast");
    assert_eq!(plain["title"], title.as_str());
    assert_eq!(plain["body"], "Only 5 left");
    assert_eq!(plain["link"], "/products");
    assert_eq!(plain["created_at"], notification["created_at"]);
    assert_eq!(plain["data"]["sent_by"], owner.user_id.as_str());

    let claims = verified_vapid(call, &key);
    assert_eq!(
        claims["aud"],
        server().mock.as_str(),
        "aud is the endpoint's origin"
    );
    assert_eq!(claims["sub"], VAPID_SUBJECT);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let exp = claims["exp"].as_i64().unwrap();
    assert!(exp > now && exp <= now + 24 * 3600, "exp {exp}, now {now}");

    // Each push has its own ephemeral key and salt: a second notice is encrypted anew.
    broadcast(&owner, json!({"user_ids": [owner.user_id]}), "Again").await;
    let calls = pushes(&browser, 2, 20).await;
    let second = STANDARD
        .decode(calls[1]["body_b64"].as_str().unwrap())
        .unwrap();
    assert_ne!(second[..86], body[..86]);
    let plain: Value = serde_json::from_slice(&browser.decrypt(&second)).unwrap();
    assert_eq!(plain["title"], "Again");
    assert!(
        pushes(&quiet, 0, 1).await.is_empty(),
        "nothing is pushed to a user who did not choose push"
    );
}

#[tokio::test]
async fn reposting_an_endpoint_updates_it_and_bad_subscriptions_are_refused() {
    let owner = register().await;
    let browser = Browser::new("ok");
    let first = subscribe(&owner, &browser).await.expect(201);
    let id = first.data()["id"].as_str().unwrap().to_string();

    // The same endpoint again (new keys, an expiry): the same subscription, updated.
    let rotated = Browser {
        id: browser.id.clone(),
        ..Browser::new("ok")
    };
    let mut body = rotated.subscription();
    body["expirationTime"] = json!(1_893_456_000_000i64);
    let again = post("/api/v1/notifications/push-subscriptions")
        .token(&owner.access)
        .json(body)
        .send()
        .await
        .expect(200);
    assert_eq!(again.data()["id"], id.as_str());
    assert_eq!(again.data()["expiration_time"], 1_893_456_000_000i64);
    let listed = subscriptions(&owner).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
    // Padded base64url is what some clients send: accepted.
    let mut padded = Browser::new("ok").subscription();
    padded["keys"]["auth"] = json!(format!("{}==", padded["keys"]["auth"].as_str().unwrap()));
    subscribe_raw(&owner, padded).await.expect(201);

    let good = Browser::new("ok").subscription();
    let with = |path: &[&str], value: Value| {
        let mut b = good.clone();
        let mut at = &mut b;
        for p in &path[..path.len() - 1] {
            at = &mut at[*p];
        }
        at[path[path.len() - 1]] = value;
        b
    };
    let mut off_curve = b64d(good["keys"]["p256dh"].as_str().unwrap());
    off_curve[64] ^= 1;
    for (body, field) in [
        (
            with(&["endpoint"], json!("http://push.example.com/x")),
            "endpoint",
        ),
        (
            with(&["endpoint"], json!("https://127.0.0.1/x")),
            "endpoint",
        ),
        (
            with(&["endpoint"], json!("https://localhost/x")),
            "endpoint",
        ),
        (with(&["endpoint"], json!("not a url")), "endpoint"),
        (with(&["endpoint"], json!("")), "endpoint"),
        (
            with(&["keys", "p256dh"], json!(b64e(&[4u8; 33]))),
            "keys.p256dh",
        ),
        (
            with(&["keys", "p256dh"], json!(b64e(&off_curve))),
            "keys.p256dh",
        ),
        (with(&["keys", "p256dh"], json!("***")), "keys.p256dh"),
        (
            with(&["keys", "auth"], json!(b64e(&[1u8; 15]))),
            "keys.auth",
        ),
        (
            with(&["expirationTime"], json!("tomorrow")),
            "expirationTime",
        ),
        (with(&["expirationTime"], json!(-5)), "expirationTime"),
        (with(&["extra"], json!(true)), "extra"),
        (with(&["keys", "extra"], json!(1)), "keys.extra"),
        (json!({"endpoint": mock_url("/push/x")}), "keys"),
    ] {
        let r = subscribe_raw(&owner, body.clone())
            .await
            .problem(422, "validation_failed");
        assert!(
            r.body["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["field"] == field),
            "{field} for {body}: {}",
            r.text
        );
    }
    post("/api/v1/notifications/push-subscriptions")
        .token(&owner.access)
        .raw(b"{not json", "application/json")
        .send()
        .await
        .problem(400, "bad_request");
    assert_eq!(
        subscriptions(&owner).await.len(),
        2,
        "nothing bad was stored"
    );
}

async fn subscribe_raw(s: &Session, body: Value) -> Resp {
    post("/api/v1/notifications/push-subscriptions")
        .token(&s.access)
        .json(body)
        .send()
        .await
}

#[tokio::test]
async fn an_expired_subscription_answering_410_is_removed() {
    let owner = register().await;
    want_push(&owner).await;
    let gone = Browser::new("gone");
    let kept = Browser::new("ok");
    let gone_id = subscribe(&owner, &gone).await.expect(201).data()["id"].clone();
    subscribe(&owner, &kept).await.expect(201);
    let sent = broadcast(&owner, json!({"user_ids": [owner.user_id]}), "Bye").await;
    assert_eq!(sent["pushed"], 2);
    pushes(&gone, 1, 20).await;
    pushes(&kept, 1, 20).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ids: Vec<Value> = subscriptions(&owner)
            .await
            .iter()
            .map(|s| s["id"].clone())
            .collect();
        if !ids.contains(&gone_id) {
            assert_eq!(ids.len(), 1, "the other subscription stays");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the 410 subscription is still listed"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Nothing more goes to it.
    broadcast(&owner, json!({"user_ids": [owner.user_id]}), "Again").await;
    pushes(&kept, 2, 20).await;
    assert_eq!(pushes(&gone, 1, 1).await.len(), 1);
}

#[tokio::test]
async fn a_busy_push_service_is_tried_again_after_its_retry_after() {
    let owner = register().await;
    want_push(&owner).await;
    let busy = Browser::new("busy");
    subscribe(&owner, &busy).await.expect(201);
    broadcast(&owner, json!({"user_ids": [owner.user_id]}), "Later").await;
    let calls = pushes(&busy, 2, 30).await;
    let gap = calls[1]["at"].as_f64().unwrap() - calls[0]["at"].as_f64().unwrap();
    assert!(gap >= 0.9, "retried after {gap} s, before Retry-After: 1");
    let plain: Value = serde_json::from_slice(
        &busy.decrypt(
            &STANDARD
                .decode(calls[1]["body_b64"].as_str().unwrap())
                .unwrap(),
        ),
    )
    .unwrap();
    assert_eq!(plain["title"], "Later");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(pushes(&busy, 2, 1).await.len(), 2, "sent once it worked");
}

#[tokio::test]
async fn a_push_service_that_keeps_failing_ends_in_a_dead_letter() {
    let owner = register().await;
    want_push(&owner).await;
    let down = Browser::new("down");
    subscribe(&owner, &down).await.expect(201);
    broadcast(&owner, json!({"user_ids": [owner.user_id]}), "Never").await;
    let d = dead_letter(&owner.tenant_id, 60, "the failing push", |d| {
        d["kind"] == "push"
    })
    .await;
    assert!(d["error"].as_str().unwrap().contains("500"), "{d}");
    assert_eq!(pushes(&down, 3, 5).await.len(), 3, "three attempts");
    assert_eq!(
        subscriptions(&owner).await.len(),
        1,
        "a 5xx keeps the subscription"
    );
}

#[tokio::test]
async fn another_users_subscription_is_not_found() {
    let owner = register().await;
    let member = add_user(&owner, "member").await;
    let stranger = register().await;
    let id = subscribe(&owner, &Browser::new("ok"))
        .await
        .expect(201)
        .data()["id"]
        .as_str()
        .unwrap()
        .to_string();
    for s in [&member, &stranger] {
        delete(&format!("/api/v1/notifications/push-subscriptions/{id}"))
            .token(&s.access)
            .send()
            .await
            .problem(404, "not_found");
        assert!(subscriptions(s).await.is_empty());
    }
    // API keys have no browsers.
    let key = post("/api/v1/api-keys")
        .token(&owner.access)
        .json(json!({"name": "ci", "scopes": ["read", "write"]}))
        .send()
        .await
        .expect(201);
    get("/api/v1/notifications/push-subscriptions")
        .header("X-API-Key", key.data()["key"].as_str().unwrap())
        .send()
        .await
        .problem(403, "forbidden");
    get("/api/v1/notifications/push-subscriptions")
        .send()
        .await
        .problem(401, "unauthorized");

    delete(&format!("/api/v1/notifications/push-subscriptions/{id}"))
        .token(&owner.access)
        .send()
        .await
        .expect(204);
    delete(&format!("/api/v1/notifications/push-subscriptions/{id}"))
        .token(&owner.access)
        .send()
        .await
        .problem(404, "not_found");
    assert!(subscriptions(&owner).await.is_empty());
}

/// Issue 18's end to end: a shop records a receipt and a sale, sees the stock and the
/// low-stock alert, and the owner's subscribed browser receives the alert as an encrypted push
/// when the stock reaches its reorder level.
#[tokio::test]
async fn reaching_the_reorder_level_pushes_the_low_stock_alert_to_a_subscribed_browser() {
    let owner = register().await;
    let browser = Browser::new("ok");
    subscribe(&owner, &browser).await.expect(201);
    let r = put("/api/v1/notifications/preferences")
        .token(&owner.access)
        .json(json!({"preferences": {"inventory.low_stock": {"push": true}}}))
        .send()
        .await
        .expect(200);
    assert_eq!(r.data()["preferences"]["inventory.low_stock"]["push"], true);

    let p = post("/api/v1/products")
        .token(&owner.access)
        .json(
            json!({"name": format!("Kyoto mug {}", unique()), "sku": format!("KM-{}", unique()),
                     "price": 1800, "currency": "EUR", "quantity": 0, "reorder_level": 3}),
        )
        .send()
        .await
        .expect(201);
    let pid = p.data()["id"].as_str().unwrap().to_string();
    let moves = format!("/api/v1/products/{pid}/movements");
    for (kind, quantity, after) in [("receipt", 10, 10), ("sale", 4, 6)] {
        let m = post(&moves)
            .token(&owner.access)
            .json(json!({"kind": kind, "quantity": quantity}))
            .send()
            .await
            .expect(201);
        assert_eq!(m.data()["quantity_after"], after, "{kind}");
    }
    assert!(
        pushes(&browser, 0, 1).await.is_empty(),
        "above the level nothing is pushed"
    );

    // The sale that reaches the level: an in-app alert and one encrypted push of it.
    post(&moves)
        .token(&owner.access)
        .json(json!({"kind": "sale", "quantity": 3}))
        .send()
        .await
        .expect(201);
    let got = get(&format!("/api/v1/products/{pid}"))
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(got.data()["quantity"], 3);
    let alerts = get("/api/v1/notifications?type=inventory.low_stock")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    let alert = alerts.data()[0].clone();
    assert_eq!(alert["data"]["product_id"], pid.as_str());

    let call = &pushes(&browser, 1, 20).await[0];
    let body = STANDARD.decode(call["body_b64"].as_str().unwrap()).unwrap();
    let plain: Value = serde_json::from_slice(&browser.decrypt(&body)).unwrap();
    assert_eq!(plain["id"], alert["id"]);
    assert_eq!(plain["type"], "inventory.low_stock");
    assert_eq!(plain["data"]["quantity"], 3);
    verified_vapid(call, &push_key().await);
}

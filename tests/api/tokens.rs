//! Hostile tokens: missing, tampered, `alg: none`, expired, wrong audience, another key.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::client::*;
use crate::harness::server;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn sign(header: &Value, claims: &Value, key: &[u8]) -> String {
    let h = URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap());
    let c = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap());
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{h}.{c}").as_bytes());
    let s = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{h}.{c}.{s}")
}

/// The claims of a real token of `s`, so only the tampered part differs.
fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

async fn me(token: &str) -> crate::client::Resp {
    get("/api/v1/auth/me").token(token).send().await
}

#[tokio::test]
async fn no_token_is_401_with_a_challenge() {
    let r = get("/api/v1/auth/me")
        .send()
        .await
        .problem(401, "unauthorized");
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    get("/api/v1/auth/me")
        .header("Authorization", "Basic YTpi")
        .send()
        .await
        .problem(401, "unauthorized");
}

#[tokio::test]
async fn a_correctly_forged_token_works_so_the_tampering_tests_mean_something() {
    let s = register().await;
    let t = sign(
        &json!({"alg": "HS256", "typ": "JWT"}),
        &claims_of(&s.access),
        server().jwt_secret.as_bytes(),
    );
    me(&t).await.expect(200);
}

#[tokio::test]
async fn a_tampered_payload_fails_the_signature() {
    let s = register().await;
    let mut parts: Vec<String> = s.access.split('.').map(String::from).collect();
    let mut claims = claims_of(&s.access);
    claims["role"] = json!("platform_admin");
    parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    me(&parts.join(".")).await.problem(401, "invalid_token");
}

#[tokio::test]
async fn alg_none_is_refused() {
    let s = register().await;
    let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let c = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims_of(&s.access)).unwrap());
    me(&format!("{h}.{c}.")).await.problem(401, "invalid_token");
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let s = register().await;
    let mut claims = claims_of(&s.access);
    claims["iat"] = json!(now() - 3600);
    claims["exp"] = json!(now() - 1800);
    let t = sign(
        &json!({"alg": "HS256"}),
        &claims,
        server().jwt_secret.as_bytes(),
    );
    me(&t).await.problem(401, "token_expired");
}

#[tokio::test]
async fn another_audience_or_issuer_is_refused() {
    let s = register().await;
    for (field, value) in [("aud", "someone-else"), ("iss", "evil")] {
        let mut claims = claims_of(&s.access);
        claims[field] = json!(value);
        let t = sign(
            &json!({"alg": "HS256"}),
            &claims,
            server().jwt_secret.as_bytes(),
        );
        me(&t).await.problem(401, "invalid_token");
    }
}

#[tokio::test]
async fn a_token_signed_with_another_key_is_refused() {
    let s = register().await;
    let t = sign(
        &json!({"alg": "HS256"}),
        &claims_of(&s.access),
        b"not-the-server-secret-not-the-server-secret",
    );
    me(&t).await.problem(401, "invalid_token");
    me("garbage").await.problem(401, "invalid_token");
}

#[tokio::test]
async fn a_token_naming_another_tenant_is_refused() {
    let a = register().await;
    let b = register().await;
    let mut claims = claims_of(&a.access);
    claims["tenant"] = json!(b.tenant_id);
    let t = sign(
        &json!({"alg": "HS256"}),
        &claims,
        server().jwt_secret.as_bytes(),
    );
    me(&t).await.problem(401, "invalid_token");
}

//! OpenID Connect ID tokens: splitting the compact JWS, picking the JWKS key, the claim checks
//! (`iss`, `aud`/`azp`, `exp`, `iat`, `nonce`, `email_verified`) as pure functions, and the
//! RS256 signature check through WebCrypto (`RSASSA-PKCS1-v1_5` + SHA-256), which costs the
//! bundle no RSA code.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

use crate::platform::crypto::constant_time_eq;
use crate::platform::error::AppError;

/// Why an ID token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    Malformed(&'static str),
    Algorithm,
    UnknownKey,
    Signature,
    Issuer,
    Audience,
    Expired,
    IssuedInFuture,
    Nonce,
    EmailUnverified,
}

impl Rejection {
    pub fn reason(&self) -> &'static str {
        match *self {
            Rejection::Malformed(why) => why,
            Rejection::Algorithm => "the ID token is not signed with RS256",
            Rejection::UnknownKey => "the ID token's key is not in the provider's JWKS",
            Rejection::Signature => "the ID token's signature does not verify",
            Rejection::Issuer => "the ID token's issuer is not the configured one",
            Rejection::Audience => "the ID token was issued to another client",
            Rejection::Expired => "the ID token has expired",
            Rejection::IssuedInFuture => "the ID token is issued in the future",
            Rejection::Nonce => "the ID token's nonce is not this sign-in's",
            Rejection::EmailUnverified => "the provider has not verified this e-mail address",
        }
    }
}

impl From<Rejection> for AppError {
    fn from(r: Rejection) -> AppError {
        match r {
            Rejection::EmailUnverified => AppError::refused(
                403,
                "email_not_verified",
                "The provider has not verified this account's e-mail address.",
            ),
            other => AppError::refused(
                401,
                "invalid_id_token",
                format!("The provider's identity was refused: {}.", other.reason()),
            ),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct Header {
    pub alg: String,
    #[serde(default)]
    pub kid: Option<String>,
}

/// A compact JWS split into what the checks need.
#[derive(Debug)]
pub struct Jws {
    pub header: Header,
    pub claims: Value,
    /// `base64url(header) . base64url(payload)`: the bytes the signature covers.
    pub signing_input: String,
    pub signature: Vec<u8>,
}

const NOT_JWS: Rejection = Rejection::Malformed("the ID token is not a compact JWS");

pub fn split(token: &str) -> Result<Jws, Rejection> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(NOT_JWS);
    };
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| NOT_JWS);
    let header: Header = serde_json::from_slice(&decode(h)?).map_err(|_| NOT_JWS)?;
    let claims: Value = serde_json::from_slice(&decode(p)?).map_err(|_| NOT_JWS)?;
    if !claims.is_object() {
        return Err(NOT_JWS);
    }
    if header.alg != "RS256" {
        return Err(Rejection::Algorithm);
    }
    Ok(Jws {
        header,
        claims,
        signing_input: format!("{h}.{p}"),
        signature: decode(s)?,
    })
}

/// One RSA key of a JWKS.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub n: String,
    #[serde(default)]
    pub e: String,
    #[serde(default)]
    pub alg: Option<String>,
    #[serde(default, rename = "use")]
    pub use_: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

impl Jwks {
    /// The RSA signing key named by `kid` (or the only one, when the token names none).
    pub fn key_for(&self, kid: Option<&str>) -> Option<&Jwk> {
        let usable = |k: &&Jwk| {
            k.kty == "RSA"
                && !k.n.is_empty()
                && !k.e.is_empty()
                && k.alg.as_deref().is_none_or(|a| a == "RS256")
                && k.use_.as_deref().is_none_or(|u| u == "sig")
        };
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(usable)
                .find(|k| k.kid.as_deref() == Some(kid)),
            None => {
                let mut keys = self.keys.iter().filter(usable);
                match (keys.next(), keys.next()) {
                    (Some(only), None) => Some(only),
                    _ => None,
                }
            }
        }
    }
}

/// What an ID token must say.
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
    pub now_secs: i64,
}

/// Clock skew tolerated between the provider and the Worker.
pub const LEEWAY_SECS: i64 = 60;

/// The person an ID token vouches for.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub subject: String,
    pub email: String,
    pub name: String,
}

/// Google names itself without the scheme too (its documentation allows both).
fn issuer_matches(configured: &str, iss: &str) -> bool {
    iss == configured
        || (configured == "https://accounts.google.com" && iss == "accounts.google.com")
}

fn truthy(v: &Value) -> bool {
    v.as_bool() == Some(true) || v.as_str() == Some("true")
}

/// The claim checks (the signature is checked separately, before these are trusted).
pub fn check_claims(claims: &Value, x: &Expected) -> Result<Identity, Rejection> {
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    if !text("iss").is_some_and(|iss| issuer_matches(x.issuer, iss)) {
        return Err(Rejection::Issuer);
    }
    let audience_ok = match claims.get("aud") {
        Some(Value::String(aud)) => aud == x.client_id,
        Some(Value::Array(auds)) => {
            auds.iter().any(|a| a.as_str() == Some(x.client_id))
                && (auds.len() == 1 || text("azp") == Some(x.client_id))
        }
        _ => false,
    };
    if !audience_ok || text("azp").is_some_and(|azp| azp != x.client_id) {
        return Err(Rejection::Audience);
    }
    let exp = claims.get("exp").and_then(Value::as_i64);
    if exp.is_none_or(|exp| exp + LEEWAY_SECS <= x.now_secs) {
        return Err(Rejection::Expired);
    }
    if claims
        .get("iat")
        .and_then(Value::as_i64)
        .is_some_and(|iat| iat > x.now_secs + LEEWAY_SECS)
    {
        return Err(Rejection::IssuedInFuture);
    }
    if !text("nonce").is_some_and(|n| constant_time_eq(n.as_bytes(), x.nonce.as_bytes())) {
        return Err(Rejection::Nonce);
    }
    let subject = text("sub")
        .filter(|s| !s.is_empty() && s.len() <= 255)
        .ok_or(Rejection::Malformed("the ID token names no subject"))?;
    let email = text("email").ok_or(Rejection::Malformed("the ID token carries no e-mail"))?;
    if !claims.get("email_verified").is_some_and(truthy) {
        return Err(Rejection::EmailUnverified);
    }
    Ok(Identity {
        subject: subject.to_string(),
        email: email.to_string(),
        name: text("name").unwrap_or_default().to_string(),
    })
}

/// Verifies an RS256 signature with WebCrypto: the JWK imported as `RSASSA-PKCS1-v1_5` /
/// SHA-256, then `crypto.subtle.verify` (called through `Reflect`, so no extra web-sys
/// bindings are needed). `Ok(false)` is a signature that does not verify; `Err` a key the
/// runtime would not import.
pub async fn verify_rs256(
    jwk: &Jwk,
    signing_input: &[u8],
    signature: &[u8],
) -> Result<bool, String> {
    use js_sys::{Array, Function, Object, Promise, Reflect, Uint8Array};
    use wasm_bindgen::{JsCast, JsValue};
    let err = |e: JsValue| format!("webcrypto: {e:?}");
    let set = |o: &Object, k: &str, v: JsValue| {
        Reflect::set(o, &JsValue::from_str(k), &v)
            .map(|_| ())
            .map_err(err)
    };
    let global = js_sys::global();
    let crypto = Reflect::get(&global, &JsValue::from_str("crypto")).map_err(err)?;
    let subtle = Reflect::get(&crypto, &JsValue::from_str("subtle")).map_err(err)?;
    let method = |name: &str| -> Result<Function, String> {
        Reflect::get(&subtle, &JsValue::from_str(name))
            .map_err(err)?
            .dyn_into::<Function>()
            .map_err(|_| format!("webcrypto: subtle.{name} is not a function"))
    };
    let key_data = Object::new();
    set(&key_data, "kty", "RSA".into())?;
    set(&key_data, "n", jwk.n.as_str().into())?;
    set(&key_data, "e", jwk.e.as_str().into())?;
    set(&key_data, "alg", "RS256".into())?;
    set(&key_data, "ext", JsValue::TRUE)?;
    let algorithm = Object::new();
    set(&algorithm, "name", "RSASSA-PKCS1-v1_5".into())?;
    set(&algorithm, "hash", "SHA-256".into())?;
    let usages = Array::of1(&JsValue::from_str("verify"));
    let import = method("importKey")?
        .apply(
            &subtle,
            &Array::of5(
                &JsValue::from_str("jwk"),
                &key_data,
                &algorithm,
                &JsValue::FALSE,
                &usages,
            ),
        )
        .map_err(err)?;
    let key = wasm_bindgen_futures::JsFuture::from(Promise::from(import))
        .await
        .map_err(err)?;
    let verified = method("verify")?
        .apply(
            &subtle,
            &Array::of4(
                &algorithm,
                &key,
                &Uint8Array::from(signature),
                &Uint8Array::from(signing_input),
            ),
        )
        .map_err(err)?;
    let ok = wasm_bindgen_futures::JsFuture::from(Promise::from(verified))
        .await
        .map_err(err)?;
    Ok(ok.as_bool() == Some(true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(v: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    fn token(header: Value, claims: Value) -> String {
        format!(
            "{}.{}.{}",
            b64(&header),
            b64(&claims),
            URL_SAFE_NO_PAD.encode([1, 2, 3])
        )
    }

    fn good() -> Value {
        json!({"iss": "https://idp.example", "aud": "cid", "sub": "123", "email": "a@b.io",
               "email_verified": true, "nonce": "n1", "exp": 2000, "iat": 1000, "name": "Ann"})
    }

    fn expected() -> Expected<'static> {
        Expected {
            issuer: "https://idp.example",
            client_id: "cid",
            nonce: "n1",
            now_secs: 1500,
        }
    }

    fn with(field: &str, v: Value) -> Value {
        let mut c = good();
        c[field] = v;
        c
    }

    #[test]
    fn a_good_token_splits_and_passes() {
        let t = token(json!({"alg": "RS256", "kid": "k1"}), good());
        let jws = split(&t).unwrap();
        assert_eq!(jws.header.kid.as_deref(), Some("k1"));
        assert_eq!(jws.signature, vec![1, 2, 3]);
        assert_eq!(jws.signing_input, t.rsplit_once('.').unwrap().0);
        assert_eq!(
            check_claims(&jws.claims, &expected()),
            Ok(Identity {
                subject: "123".into(),
                email: "a@b.io".into(),
                name: "Ann".into()
            })
        );
    }

    #[test]
    fn other_algorithms_and_broken_tokens_are_refused() {
        assert_eq!(
            split(&token(json!({"alg": "HS256"}), good())).unwrap_err(),
            Rejection::Algorithm
        );
        assert_eq!(
            split(&token(json!({"alg": "none"}), good())).unwrap_err(),
            Rejection::Algorithm
        );
        for bad in ["", "a.b", "a.b.c.d", "!!.??.xx", "e30.W10.AA"] {
            assert!(matches!(split(bad), Err(Rejection::Malformed(_))), "{bad}");
        }
    }

    #[test]
    fn each_claim_is_checked() {
        let x = expected();
        let cases = [
            (
                with("iss", json!("https://evil.example")),
                Rejection::Issuer,
            ),
            (with("aud", json!("other")), Rejection::Audience),
            (with("aud", json!(["other", "cid"])), Rejection::Audience),
            (with("azp", json!("other")), Rejection::Audience),
            (with("exp", json!(1400)), Rejection::Expired),
            (with("exp", json!("2000")), Rejection::Expired),
            (
                with("iat", json!(1600 + LEEWAY_SECS)),
                Rejection::IssuedInFuture,
            ),
            (with("nonce", json!("n2")), Rejection::Nonce),
            (with("nonce", Value::Null), Rejection::Nonce),
            (
                with("email_verified", json!(false)),
                Rejection::EmailUnverified,
            ),
            (
                with("email_verified", json!("false")),
                Rejection::EmailUnverified,
            ),
        ];
        for (claims, why) in cases {
            assert_eq!(check_claims(&claims, &x), Err(why), "{claims}");
        }
        let mut no_verified = good();
        no_verified
            .as_object_mut()
            .unwrap()
            .remove("email_verified");
        assert_eq!(
            check_claims(&no_verified, &x),
            Err(Rejection::EmailUnverified)
        );
        let mut no_sub = good();
        no_sub.as_object_mut().unwrap().remove("sub");
        assert!(matches!(
            check_claims(&no_sub, &x),
            Err(Rejection::Malformed(_))
        ));
    }

    #[test]
    fn tolerated_variants_pass() {
        let x = expected();
        assert!(check_claims(&with("aud", json!(["cid"])), &x).is_ok());
        let mut multi = with("aud", json!(["cid", "other"]));
        multi["azp"] = json!("cid");
        assert!(check_claims(&multi, &x).is_ok());
        assert!(check_claims(&with("email_verified", json!("true")), &x).is_ok());
        // Within the clock-skew leeway.
        assert!(check_claims(&with("exp", json!(1500 - LEEWAY_SECS + 1)), &x).is_ok());
        let google = Expected {
            issuer: "https://accounts.google.com",
            ..expected()
        };
        assert!(check_claims(&with("iss", json!("accounts.google.com")), &google).is_ok());
        assert_eq!(
            check_claims(&with("iss", json!("accounts.google.com")), &x),
            Err(Rejection::Issuer)
        );
    }

    #[test]
    fn keys_are_chosen_by_kid_among_rsa_signing_keys() {
        let key = |kid: &str, kty: &str, use_: Option<&str>| Jwk {
            kty: kty.into(),
            kid: Some(kid.into()),
            n: "n".into(),
            e: "AQAB".into(),
            alg: None,
            use_: use_.map(str::to_string),
        };
        let jwks = Jwks {
            keys: vec![
                key("a", "RSA", Some("sig")),
                key("b", "EC", None),
                key("c", "RSA", Some("enc")),
            ],
        };
        assert_eq!(jwks.key_for(Some("a")).unwrap().kid.as_deref(), Some("a"));
        assert!(jwks.key_for(Some("b")).is_none());
        assert!(jwks.key_for(Some("c")).is_none());
        assert!(jwks.key_for(Some("zz")).is_none());
        assert_eq!(jwks.key_for(None).unwrap().kid.as_deref(), Some("a"));
        let two = Jwks {
            keys: vec![key("a", "RSA", None), key("d", "RSA", None)],
        };
        assert!(two.key_for(None).is_none(), "ambiguous without a kid");
    }
}

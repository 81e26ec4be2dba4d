//! Randomness, hashing, HMAC, constant-time comparison and PBKDF2 (through WebCrypto, which
//! runs natively in the Workers runtime instead of burning wasm CPU time).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).expect("the platform random source is available");
    buf
}

/// A URL-safe random token with a readable prefix (`tnt_live_…`, `rt_…`).
pub fn random_token(prefix: &str) -> String {
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()))
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Compares secrets without an early exit that would leak the matching prefix length.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// PBKDF2-HMAC-SHA256 through `crypto.subtle.deriveBits`.
pub async fn pbkdf2_sha256(
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> Result<Vec<u8>, String> {
    use wasm_bindgen::{JsCast, JsValue};
    let err = |e: JsValue| format!("webcrypto: {e:?}");
    let global = js_sys::global();
    let crypto = js_sys::Reflect::get(&global, &JsValue::from_str("crypto")).map_err(err)?;
    let subtle: web_sys::SubtleCrypto = js_sys::Reflect::get(&crypto, &JsValue::from_str("subtle"))
        .map_err(err)?
        .unchecked_into();
    let usages = js_sys::Array::of1(&JsValue::from_str("deriveBits"));
    let key_data = js_sys::Uint8Array::from(password);
    let key_promise = subtle
        .import_key_with_str("raw", &key_data, "PBKDF2", false, &usages)
        .map_err(err)?;
    let key: web_sys::CryptoKey = wasm_bindgen_futures::JsFuture::from(key_promise)
        .await
        .map_err(err)?
        .unchecked_into();
    let salt = js_sys::Uint8Array::from(salt);
    let params =
        web_sys::Pbkdf2Params::new("PBKDF2", &JsValue::from_str("SHA-256"), iterations, &salt);
    let bits_promise = subtle
        .derive_bits_with_object(&params, &key, 256)
        .map_err(err)?;
    let bits = wasm_bindgen_futures::JsFuture::from(bits_promise)
        .await
        .map_err(err)?;
    Ok(js_sys::Uint8Array::new(&bits).to_vec())
}

/// Encrypts a secret at rest with AES-256-GCM: `v1.<base64url(nonce ‖ ciphertext ‖ tag)>`.
/// `aad` binds the ciphertext to its place (tenant and name), so a value copied into another
/// row does not decrypt.
pub fn seal(key: &[u8; 32], aad: &str, plaintext: &[u8]) -> String {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    let cipher = aes_gcm::Aes256Gcm::new(key.into());
    let nonce = random_bytes::<12>();
    let sealed = cipher
        .encrypt(
            (&nonce).into(),
            Payload {
                msg: plaintext,
                aad: aad.as_bytes(),
            },
        )
        .expect("AES-GCM encryption of an in-memory value cannot fail");
    let mut out = nonce.to_vec();
    out.extend(sealed);
    format!("v1.{}", URL_SAFE_NO_PAD.encode(out))
}

/// Decrypts what `seal` wrote with the same key and `aad`.
pub fn open(key: &[u8; 32], aad: &str, sealed: &str) -> Result<Vec<u8>, String> {
    use aes_gcm::aead::{Aead, KeyInit, Payload};
    let raw = sealed
        .strip_prefix("v1.")
        .and_then(|b| URL_SAFE_NO_PAD.decode(b).ok())
        .filter(|r| r.len() > 12)
        .ok_or("not a sealed value")?;
    let cipher = aes_gcm::Aes256Gcm::new(key.into());
    cipher
        .decrypt(
            raw[..12].into(),
            Payload {
                msg: &raw[12..],
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| "the value does not decrypt with this key".to_string())
}

/// The 256-bit key behind `seal`, derived from the `ENCRYPTION_KEY` secret's text.
pub fn derive_key(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_place() {
        let key = derive_key("k1");
        let sealed = seal(&key, "ten_a:KEY", b"hunter2");
        assert!(sealed.starts_with("v1."));
        assert_ne!(
            sealed,
            seal(&key, "ten_a:KEY", b"hunter2"),
            "fresh nonce each time"
        );
        assert_eq!(open(&key, "ten_a:KEY", &sealed).unwrap(), b"hunter2");
        assert!(open(&key, "ten_b:KEY", &sealed).is_err());
        assert!(open(&derive_key("k2"), "ten_a:KEY", &sealed).is_err());
        assert!(open(&key, "ten_a:KEY", "v1.AAAA").is_err());
        assert!(open(&key, "ten_a:KEY", "garbage").is_err());
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn constant_time_eq_needs_equal_length_and_bytes() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn tokens_are_random_and_prefixed() {
        let t = random_token("rt_");
        assert!(t.starts_with("rt_") && t.len() == 3 + 43);
        assert_ne!(t, random_token("rt_"));
        assert_eq!(sha256_hex(b"abc").len(), 64);
    }
}

//! Web push message encryption (RFC 8291, `aes128gcm` of RFC 8188) and VAPID authentication
//! (RFC 8292), pure: the random parts (the ephemeral key, the salt) come in as arguments so the
//! RFC's test vector reproduces byte for byte. Built only into the jobs Worker, which sends.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce};
use hkdf::Hkdf;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};
use sha2::Sha256;

use super::keys::{b64url, Vapid, AUTH_LEN, POINT_LEN};

/// The record size announced in the header: one record carries the whole message.
pub const RECORD_SIZE: u32 = 4096;
/// The header: salt (16) + record size (4) + key id length (1) + the sender's public key (65).
pub const HEADER_LEN: usize = 16 + 4 + 1 + POINT_LEN;
/// The largest plaintext a push service must accept (RFC 8030 §7.2: 4096 bytes of payload):
/// 4096 − header − the padding delimiter − the AEAD tag.
pub const MAX_PLAINTEXT: usize = 4096 - HEADER_LEN - 1 - 16;
/// VAPID tokens live 12 hours (RFC 8292 allows at most 24).
pub const TOKEN_TTL_SECS: i64 = 12 * 3600;
const _: () = assert!(TOKEN_TTL_SECS <= 24 * 3600, "RFC 8292 §2: at most 24 hours");

/// Encrypts `plaintext` for the subscription `(ua_public, auth)` with the ephemeral key
/// `as_secret` and `salt`: the whole `aes128gcm` body (header and the single record, ended
/// by the 0x02 delimiter without further padding).
pub fn encrypt(
    ua_public: &[u8; POINT_LEN],
    auth: &[u8; AUTH_LEN],
    plaintext: &[u8],
    as_secret: &SecretKey,
    salt: &[u8; 16],
) -> Result<Vec<u8>, String> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(format!(
            "the payload is {} bytes, more than the {MAX_PLAINTEXT} a push message holds",
            plaintext.len()
        ));
    }
    let ua = PublicKey::from_sec1_bytes(ua_public).map_err(|_| "p256dh is not a P-256 point")?;
    let as_public = as_secret.public_key().to_encoded_point(false);
    let shared = p256::ecdh::diffie_hellman(as_secret.to_nonzero_scalar(), ua.as_affine());

    // IKM = HKDF(salt = auth, ikm = ECDH secret, info = "WebPush: info" 0x00 ua_public as_public)
    let mut key_info = Vec::with_capacity(14 + 2 * POINT_LEN);
    key_info.extend_from_slice(b"WebPush: info\0");
    key_info.extend_from_slice(ua_public);
    key_info.extend_from_slice(as_public.as_bytes());
    let mut ikm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(&auth[..]), shared.raw_secret_bytes())
        .expand(&key_info, &mut ikm)
        .map_err(|e| e.to_string())?;

    let prk = Hkdf::<Sha256>::new(Some(&salt[..]), &ikm);
    let mut cek = [0u8; 16];
    let mut nonce = [0u8; 12];
    prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek)
        .map_err(|e| e.to_string())?;
    prk.expand(b"Content-Encoding: nonce\0", &mut nonce)
        .map_err(|e| e.to_string())?;

    let mut record = Vec::with_capacity(plaintext.len() + 1);
    record.extend_from_slice(plaintext);
    record.push(0x02);
    let sealed = Aes128Gcm::new_from_slice(&cek)
        .map_err(|e| e.to_string())?
        .encrypt(Nonce::from_slice(&nonce), record.as_slice())
        .map_err(|_| "encryption failed")?;

    let mut body = Vec::with_capacity(HEADER_LEN + sealed.len());
    body.extend_from_slice(salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(POINT_LEN as u8);
    body.extend_from_slice(as_public.as_bytes());
    body.extend_from_slice(&sealed);
    Ok(body)
}

/// The `aud` of a VAPID token: the push endpoint's origin (`https://host[:port]`).
pub fn audience(endpoint: &str) -> Result<String, String> {
    let url =
        worker::Url::parse(endpoint).map_err(|e| format!("the endpoint is not a URL ({e})"))?;
    let origin = url.origin();
    if !origin.is_tuple() {
        return Err("the endpoint has no origin".into());
    }
    Ok(origin.ascii_serialization())
}

/// The ES256 JWT of RFC 8292 §2 for `aud`, expiring at `exp` (epoch seconds).
pub fn token(vapid: &Vapid, aud: &str, exp: i64) -> Result<String, String> {
    let header = b64url(br#"{"typ":"JWT","alg":"ES256"}"#);
    let claims = serde_json::json!({"aud": aud, "exp": exp, "sub": vapid.subject});
    let input = format!("{header}.{}", b64url(claims.to_string().as_bytes()));
    let key =
        SigningKey::from_slice(vapid.private_key()).map_err(|_| "the VAPID key is unusable")?;
    let signature: Signature = key.sign(input.as_bytes());
    Ok(format!("{input}.{}", b64url(&signature.to_bytes())))
}

/// The `Authorization` header value (RFC 8292 §3): `vapid t=<JWT>, k=<public key>`, the token
/// valid for `TOKEN_TTL_SECS` from `now_secs`.
pub fn authorization(vapid: &Vapid, endpoint: &str, now_secs: i64) -> Result<String, String> {
    let jwt = token(vapid, &audience(endpoint)?, now_secs + TOKEN_TTL_SECS)?;
    Ok(format!("vapid t={jwt}, k={}", vapid.public_key_b64()))
}

/// A fresh ephemeral key pair for one message.
pub fn ephemeral_key() -> SecretKey {
    loop {
        let bytes: [u8; 32] = crate::platform::crypto::random_bytes();
        if let Ok(key) = SecretKey::from_slice(&bytes) {
            return key;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::keys::b64url_decode;
    use super::*;
    use p256::ecdsa::signature::Verifier;
    use p256::ecdsa::VerifyingKey;

    fn d(s: &str) -> Vec<u8> {
        b64url_decode(s).unwrap()
    }

    // RFC 8291 Appendix A.
    const PLAINTEXT: &str = "When I grow up, I want to be a watermelon";
    const AS_PRIVATE: &str = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw";
    const UA_PRIVATE: &str = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94";
    const UA_PUBLIC: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const SALT: &str = "DGv6ra1nlYgDCS1FRnbzlw";
    const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";
    const BODY: &str = "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN";

    fn rfc_encrypt(plaintext: &[u8]) -> Result<Vec<u8>, String> {
        encrypt(
            &d(UA_PUBLIC).try_into().unwrap(),
            &d(AUTH).try_into().unwrap(),
            plaintext,
            &SecretKey::from_slice(&d(AS_PRIVATE)).unwrap(),
            &d(SALT).try_into().unwrap(),
        )
    }

    #[test]
    fn the_rfc_8291_example_encrypts_byte_for_byte() {
        let body = rfc_encrypt(PLAINTEXT.as_bytes()).unwrap();
        assert_eq!(b64url(&body), BODY);
    }

    /// The user agent's side, as a browser does it: ECDH with its own private key.
    fn decrypt(body: &[u8], ua_private: &SecretKey, auth: &[u8]) -> Vec<u8> {
        let salt = &body[..16];
        assert_eq!(u32::from_be_bytes(body[16..20].try_into().unwrap()), 4096);
        assert_eq!(body[20] as usize, POINT_LEN);
        let as_public = PublicKey::from_sec1_bytes(&body[21..86]).unwrap();
        let shared =
            p256::ecdh::diffie_hellman(ua_private.to_nonzero_scalar(), as_public.as_affine());
        let ua_public = ua_private.public_key().to_encoded_point(false);
        let mut info = b"WebPush: info\0".to_vec();
        info.extend_from_slice(ua_public.as_bytes());
        info.extend_from_slice(&body[21..86]);
        let mut ikm = [0u8; 32];
        Hkdf::<Sha256>::new(Some(auth), shared.raw_secret_bytes())
            .expand(&info, &mut ikm)
            .unwrap();
        let prk = Hkdf::<Sha256>::new(Some(salt), &ikm);
        let (mut cek, mut nonce) = ([0u8; 16], [0u8; 12]);
        prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek)
            .unwrap();
        prk.expand(b"Content-Encoding: nonce\0", &mut nonce)
            .unwrap();
        let mut plain = Aes128Gcm::new_from_slice(&cek)
            .unwrap()
            .decrypt(Nonce::from_slice(&nonce), &body[HEADER_LEN..])
            .unwrap();
        assert_eq!(plain.pop(), Some(0x02), "the last record's delimiter");
        plain
    }

    #[test]
    fn a_fresh_key_and_salt_round_trip_to_the_user_agent() {
        let ua = SecretKey::from_slice(&d(UA_PRIVATE)).unwrap();
        assert_eq!(
            b64url(ua.public_key().to_encoded_point(false).as_bytes()),
            UA_PUBLIC
        );
        let message = br#"{"title":"Stock low","body":"5 left"}"#;
        let salt: [u8; 16] = crate::platform::crypto::random_bytes();
        let body = encrypt(
            &d(UA_PUBLIC).try_into().unwrap(),
            &d(AUTH).try_into().unwrap(),
            message,
            &ephemeral_key(),
            &salt,
        )
        .unwrap();
        assert_eq!(body.len(), HEADER_LEN + message.len() + 1 + 16);
        assert_eq!(decrypt(&body, &ua, &d(AUTH)), message);
    }

    #[test]
    fn payloads_beyond_one_record_are_refused() {
        assert!(rfc_encrypt(&vec![b'x'; MAX_PLAINTEXT]).is_ok());
        let err = rfc_encrypt(&vec![b'x'; MAX_PLAINTEXT + 1]).unwrap_err();
        assert!(err.contains("3993"), "{err}");
        assert_eq!(rfc_encrypt(&vec![b'x'; MAX_PLAINTEXT]).unwrap().len(), 4096);
    }

    #[test]
    fn the_audience_is_the_endpoint_origin() {
        assert_eq!(
            audience("https://fcm.googleapis.com/fcm/send/abc:def").unwrap(),
            "https://fcm.googleapis.com"
        );
        assert_eq!(
            audience("http://127.0.0.1:8790/push/x?y=1").unwrap(),
            "http://127.0.0.1:8790"
        );
        assert!(audience("not a url").is_err());
    }

    #[test]
    fn the_vapid_header_carries_a_token_that_verifies_with_the_public_key() {
        let vapid = Vapid::from_vars(Some(AS_PRIVATE), Some("mailto:ops@example.com"))
            .unwrap()
            .unwrap();
        let header = authorization(&vapid, "https://push.example.net/x/y", 1_700_000_000).unwrap();
        let rest = header.strip_prefix("vapid t=").unwrap();
        let (jwt, k) = rest.split_once(", k=").unwrap();
        assert_eq!(k, vapid.public_key_b64());
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let head: serde_json::Value = serde_json::from_slice(&d(parts[0])).unwrap();
        assert_eq!(head, serde_json::json!({"typ": "JWT", "alg": "ES256"}));
        let claims: serde_json::Value = serde_json::from_slice(&d(parts[1])).unwrap();
        assert_eq!(claims["aud"], "https://push.example.net");
        assert_eq!(claims["sub"], "mailto:ops@example.com");
        assert_eq!(claims["exp"], 1_700_000_000 + TOKEN_TTL_SECS);
        let key = VerifyingKey::from_sec1_bytes(&d(k)).unwrap();
        let sig = Signature::from_slice(&d(parts[2])).unwrap();
        let input = format!("{}.{}", parts[0], parts[1]);
        assert!(key.verify(input.as_bytes(), &sig).is_ok());
        assert!(key.verify(b"something else", &sig).is_err());
    }
}

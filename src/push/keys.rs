//! The keys of web push, pure: a browser subscription's `p256dh` (a P-256 public key as an
//! uncompressed point) and `auth` secret, both base64url; and the deployment's VAPID key pair
//! (RFC 8292) with its subject. The public key is derived from `VAPID_PRIVATE_KEY`, so the two
//! can never disagree (and only the private key is configured).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Length of an uncompressed P-256 point (`0x04 || x || y`).
pub const POINT_LEN: usize = 65;
/// Length of a subscription's authentication secret (RFC 8291 §3.2).
pub const AUTH_LEN: usize = 16;

/// base64url without padding (what browsers and RFC 8291/8292 use).
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url, with or without `=` padding.
pub fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s.trim().trim_end_matches('=')).ok()
}

/// A subscription's `keys.p256dh`: a 65-byte uncompressed point on P-256.
pub fn parse_p256dh(s: &str) -> Result<[u8; POINT_LEN], String> {
    let bytes = b64url_decode(s).ok_or("must be base64url")?;
    let point: [u8; POINT_LEN] = bytes.as_slice().try_into().map_err(|_| {
        format!(
            "must be a {POINT_LEN}-byte uncompressed P-256 public key (got {} bytes)",
            bytes.len()
        )
    })?;
    if point[0] != 0x04 {
        return Err("must be an uncompressed point (starting with 0x04)".into());
    }
    p256::PublicKey::from_sec1_bytes(&point).map_err(|_| "is not a point on P-256")?;
    Ok(point)
}

/// A subscription's `keys.auth`: 16 bytes.
pub fn parse_auth(s: &str) -> Result<[u8; AUTH_LEN], String> {
    let bytes = b64url_decode(s).ok_or("must be base64url")?;
    bytes.as_slice().try_into().map_err(|_| {
        format!(
            "must be a {AUTH_LEN}-byte secret (got {} bytes)",
            bytes.len()
        )
    })
}

/// The deployment's VAPID identity. `Debug` never shows the private key.
#[derive(Clone, PartialEq)]
pub struct Vapid {
    private_key: [u8; 32],
    /// The uncompressed public point (`k=` of the Authorization header, `GET push-key`).
    pub public_key: [u8; POINT_LEN],
    /// `VAPID_SUBJECT`: a `mailto:` or `https:` URL the push service may contact.
    pub subject: String,
}

impl std::fmt::Debug for Vapid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vapid")
            .field("public_key", &b64url(&self.public_key))
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl Vapid {
    /// From `VAPID_PRIVATE_KEY` (base64url of the 32-byte scalar, as web-push tools print it)
    /// and `VAPID_SUBJECT`. No private key: push is not configured (`Ok(None)`); a key that is
    /// not a P-256 scalar, or a missing or malformed subject beside a key, is a configuration
    /// error naming the variable.
    pub fn from_vars(
        private: Option<&str>,
        subject: Option<&str>,
    ) -> Result<Option<Vapid>, String> {
        let Some(private) = private.map(str::trim).filter(|p| !p.is_empty()) else {
            return Ok(None);
        };
        let bad =
            || "VAPID_PRIVATE_KEY must be the base64url 32-byte P-256 private key".to_string();
        let bytes = b64url_decode(private).ok_or_else(bad)?;
        let key = p256::SecretKey::from_slice(&bytes).map_err(|_| bad())?;
        let private_key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| bad())?;
        let point =
            p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&key.public_key(), false);
        let public_key: [u8; POINT_LEN] = point.as_bytes().try_into().map_err(|_| bad())?;
        let subject = subject.map(str::trim).unwrap_or_default();
        check_subject(subject).map_err(|why| format!("VAPID_SUBJECT {why}"))?;
        Ok(Some(Vapid {
            private_key,
            public_key,
            subject: subject.to_string(),
        }))
    }

    /// The 32-byte private scalar (the jobs Worker signs with it).
    pub fn private_key(&self) -> &[u8; 32] {
        &self.private_key
    }

    pub fn public_key_b64(&self) -> String {
        b64url(&self.public_key)
    }
}

/// RFC 8292 §2.1: the `sub` claim is a `mailto:` address or an `https:` URL.
pub fn check_subject(s: &str) -> Result<(), String> {
    if let Some(address) = s.strip_prefix("mailto:") {
        let ok = address.split_once('@').is_some_and(|(user, host)| {
            !user.is_empty() && host.contains('.') && !host.ends_with('.')
        }) && !address.contains(|c: char| c.is_whitespace() || c.is_control());
        return if ok {
            Ok(())
        } else {
            Err("must be a mailto: address (mailto:ops@example.com)".into())
        };
    }
    match worker::Url::parse(s) {
        Ok(url) if url.scheme() == "https" && url.host_str().is_some_and(|h| !h.is_empty()) => {
            Ok(())
        }
        _ => Err("must be a mailto: address or an https:// URL".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8291 Appendix A's user agent key pair and secret.
    const UA_PUBLIC: &str =
        "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
    const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";

    #[test]
    fn browser_keys_parse_with_or_without_padding() {
        assert_eq!(parse_p256dh(UA_PUBLIC).unwrap()[0], 4);
        assert_eq!(parse_auth(AUTH).unwrap().len(), 16);
        assert!(parse_auth("BTBZMqHH6r4Tts7J_aSIgg==").is_ok());
    }

    #[test]
    fn bad_browser_keys_say_why() {
        assert!(parse_p256dh("not base64!")
            .unwrap_err()
            .contains("base64url"));
        assert!(parse_p256dh(AUTH).unwrap_err().contains("65-byte"));
        // The right length and prefix, but not on the curve.
        let mut off = parse_p256dh(UA_PUBLIC).unwrap();
        off[64] ^= 1;
        assert!(parse_p256dh(&b64url(&off))
            .unwrap_err()
            .contains("not a point"));
        // A compressed-point prefix on 65 bytes.
        let mut compressed = parse_p256dh(UA_PUBLIC).unwrap();
        compressed[0] = 2;
        assert!(parse_p256dh(&b64url(&compressed))
            .unwrap_err()
            .contains("uncompressed"));
        assert!(parse_auth(&b64url(&[0u8; 15]))
            .unwrap_err()
            .contains("16-byte"));
        assert!(parse_auth("").is_err());
    }

    #[test]
    fn the_public_key_is_derived_from_the_private_one() {
        // RFC 8291 Appendix A's application server key pair.
        let v = Vapid::from_vars(
            Some("yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"),
            Some("mailto:ops@example.com"),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            v.public_key_b64(),
            "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8"
        );
        assert!(!format!("{v:?}").contains("yfWPiYE"));
    }

    #[test]
    fn unconfigured_and_misconfigured_vapid() {
        assert_eq!(Vapid::from_vars(None, Some("mailto:a@b.io")), Ok(None));
        assert_eq!(Vapid::from_vars(Some("  "), None), Ok(None));
        let key = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw";
        assert!(Vapid::from_vars(Some(key), None)
            .unwrap_err()
            .starts_with("VAPID_SUBJECT"));
        assert!(Vapid::from_vars(Some("abc"), Some("mailto:a@b.io"))
            .unwrap_err()
            .starts_with("VAPID_PRIVATE_KEY"));
        // Zero is not a private key; neither is the group order.
        assert!(Vapid::from_vars(Some(&b64url(&[0u8; 32])), Some("mailto:a@b.io")).is_err());
        assert!(Vapid::from_vars(Some(&b64url(&[0xffu8; 32])), Some("mailto:a@b.io")).is_err());
    }

    #[test]
    fn subjects_are_mailto_or_https() {
        for ok in [
            "mailto:ops@example.com",
            "https://example.com",
            "https://example.com/contact",
        ] {
            assert!(check_subject(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "ops@example.com",
            "mailto:",
            "mailto:ops",
            "mailto:@example.com",
            "mailto:a b@example.com",
            "http://example.com",
            "https://",
            "ftp://example.com",
        ] {
            assert!(check_subject(bad).is_err(), "{bad}");
        }
    }
}

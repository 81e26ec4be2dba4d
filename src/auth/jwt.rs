//! Access tokens: HS256 JWTs (jwt-compact) with the algorithm pinned, and `iss`, `aud`, `exp`,
//! `iat`, `sub`, tenant, role and session claims. Pure: the clock is passed in.

use chrono::Duration;
use jwt_compact::alg::{Hs256, Hs256Key};
use jwt_compact::{AlgorithmExt, Claims, Header, TimeOptions, Token, UntrustedToken};
use serde::{Deserialize, Serialize};

use crate::platform::clock;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub tenant: String,
    pub role: String,
    /// The session (refresh-token family) this token belongs to.
    pub sid: String,
}

#[derive(Debug, PartialEq)]
pub enum TokenError {
    Malformed,
    BadSignature,
    Expired,
    WrongIssuerOrAudience,
}

pub fn issue(key: &[u8], claims: AccessClaims, now_ms: i64, ttl_secs: i64) -> String {
    let opts = TimeOptions::new(Duration::seconds(0), move || clock::to_datetime(now_ms));
    let claims = Claims::new(claims).set_duration_and_issuance(&opts, Duration::seconds(ttl_secs));
    Hs256
        .token(
            &Header::empty().with_token_type("JWT"),
            &claims,
            &Hs256Key::new(key),
        )
        .expect("HS256 signing of serialisable claims cannot fail")
}

pub fn verify(
    key: &[u8],
    token: &str,
    issuer: &str,
    audience: &str,
    now_ms: i64,
) -> Result<AccessClaims, TokenError> {
    let untrusted = UntrustedToken::new(token).map_err(|_| TokenError::Malformed)?;
    // `validate` refuses any `alg` other than HS256 (including `none`) before checking the MAC.
    let token: Token<AccessClaims> = Hs256
        .validator(&Hs256Key::new(key))
        .validate(&untrusted)
        .map_err(|e| match e {
            jwt_compact::ValidationError::InvalidSignature
            | jwt_compact::ValidationError::AlgorithmMismatch { .. } => TokenError::BadSignature,
            _ => TokenError::Malformed,
        })?;
    let opts = TimeOptions::new(Duration::seconds(30), move || clock::to_datetime(now_ms));
    let claims = token.claims();
    if claims.expiration.is_none() {
        return Err(TokenError::Malformed);
    }
    claims
        .validate_expiration(&opts)
        .map_err(|_| TokenError::Expired)?;
    let custom = &claims.custom;
    if custom.iss != issuer || custom.aud != audience {
        return Err(TokenError::WrongIssuerOrAudience);
    }
    Ok(custom.clone())
}

/// When a token `verify` accepted expires (epoch ms): what a live WebSocket opened with it
/// lasts until.
pub fn expires_ms(key: &[u8], token: &str) -> Option<i64> {
    let untrusted = UntrustedToken::new(token).ok()?;
    let token: Token<AccessClaims> = Hs256
        .validator(&Hs256Key::new(key))
        .validate(&untrusted)
        .ok()?;
    token.claims().expiration.map(|e| e.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: i64 = 1_795_000_000_000;

    fn claims() -> AccessClaims {
        AccessClaims {
            iss: "tenantry".into(),
            aud: "tenantry-api".into(),
            sub: "usr_1".into(),
            tenant: "ten_1".into(),
            role: "owner".into(),
            sid: "ses_1".into(),
        }
    }

    #[test]
    fn a_fresh_token_verifies() {
        let t = issue(KEY, claims(), NOW, 900);
        assert_eq!(
            verify(KEY, &t, "tenantry", "tenantry-api", NOW + 1000),
            Ok(claims())
        );
        assert_eq!(expires_ms(KEY, &t), Some(NOW + 900_000));
        assert_eq!(expires_ms(b"another key, another signature..", &t), None);
    }

    #[test]
    fn expired_tokens_are_refused() {
        let t = issue(KEY, claims(), NOW, 900);
        assert_eq!(
            verify(KEY, &t, "tenantry", "tenantry-api", NOW + 1_000_000),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn another_key_or_audience_is_refused() {
        let t = issue(KEY, claims(), NOW, 900);
        assert_eq!(
            verify(
                b"another-key-another-key-another!",
                &t,
                "tenantry",
                "tenantry-api",
                NOW
            ),
            Err(TokenError::BadSignature)
        );
        assert_eq!(
            verify(KEY, &t, "tenantry", "other-api", NOW),
            Err(TokenError::WrongIssuerOrAudience)
        );
    }

    #[test]
    fn alg_none_is_refused() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&serde_json::json!({
                "iss":"tenantry","aud":"tenantry-api","sub":"usr_1","tenant":"ten_1",
                "role":"platform_admin","sid":"ses_1","exp": NOW / 1000 + 900, "iat": NOW / 1000
            }))
            .unwrap(),
        );
        for t in [format!("{header}.{body}."), format!("{header}.{body}.c2ln")] {
            assert!(verify(KEY, &t, "tenantry", "tenantry-api", NOW).is_err());
        }
    }

    #[test]
    fn garbage_is_malformed() {
        assert_eq!(
            verify(KEY, "not-a-jwt", "tenantry", "tenantry-api", NOW),
            Err(TokenError::Malformed)
        );
    }
}

//! Password hashes: PBKDF2-HMAC-SHA256, 100,000 iterations (the Workers cap), 16-byte salt,
//! stored as `pbkdf2_sha256$<iterations>$<salt b64>$<hash b64>`.

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;

use crate::platform::crypto::{constant_time_eq, pbkdf2_sha256, random_bytes};
use crate::platform::error::{AppError, Result};

pub const ITERATIONS: u32 = 100_000;

/// The stored "hash" of an account without a password (made by a first sign-in with Google or
/// GitHub): not of the stored form, so `verify` never accepts any password for it, and
/// password log-in answers such an account as it answers a wrong password.
pub const NO_PASSWORD: &str = "!none";

/// Checked against when the e-mail is unknown, so both paths cost one PBKDF2 run.
pub const DUMMY_HASH: &str =
    "pbkdf2_sha256$100000$AAAAAAAAAAAAAAAAAAAAAA$3Vx0uBzyFvIOHTbWaCbzHDCkCAR2ptSMLeDJRjcnbsE";

#[derive(Debug, PartialEq)]
pub struct Parsed {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub hash: Vec<u8>,
}

pub fn parse(stored: &str) -> Option<Parsed> {
    let mut parts = stored.split('$');
    if parts.next()? != "pbkdf2_sha256" {
        return None;
    }
    let iterations: u32 = parts.next()?.parse().ok()?;
    let salt = STANDARD_NO_PAD.decode(parts.next()?).ok()?;
    let hash = STANDARD_NO_PAD.decode(parts.next()?).ok()?;
    if parts.next().is_some() || !(1..=ITERATIONS).contains(&iterations) || hash.len() != 32 {
        return None;
    }
    Some(Parsed {
        iterations,
        salt,
        hash,
    })
}

pub fn format(iterations: u32, salt: &[u8], hash: &[u8]) -> String {
    format!(
        "pbkdf2_sha256${iterations}${}${}",
        STANDARD_NO_PAD.encode(salt),
        STANDARD_NO_PAD.encode(hash)
    )
}

pub async fn hash(password: &str) -> Result<String> {
    let salt = random_bytes::<16>();
    let derived = pbkdf2_sha256(password.as_bytes(), &salt, ITERATIONS)
        .await
        .map_err(AppError::Internal)?;
    Ok(format(ITERATIONS, &salt, &derived))
}

/// Constant-time check of a password against a stored hash. Unparseable hashes never match.
pub async fn verify(password: &str, stored: &str) -> Result<bool> {
    let parsed = parse(stored)
        .or_else(|| parse(DUMMY_HASH))
        .ok_or_else(|| AppError::Internal("the dummy password hash does not parse".into()))?;
    let derived = pbkdf2_sha256(password.as_bytes(), &parsed.salt, parsed.iterations)
        .await
        .map_err(AppError::Internal)?;
    Ok(parse(stored).is_some() && constant_time_eq(&derived, &parsed.hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_hashes_round_trip() {
        let s = format(ITERATIONS, &[1; 16], &[2; 32]);
        assert_eq!(
            parse(&s),
            Some(Parsed {
                iterations: ITERATIONS,
                salt: vec![1; 16],
                hash: vec![2; 32]
            })
        );
        assert!(parse(DUMMY_HASH).is_some());
    }

    #[test]
    fn an_account_without_a_password_never_parses() {
        assert!(parse(NO_PASSWORD).is_none());
    }

    #[test]
    fn foreign_or_tampered_hashes_do_not_parse() {
        for bad in [
            "",
            "bcrypt$10$abc",
            "pbkdf2_sha256$0$AA$AA",
            "pbkdf2_sha256$100001$AAAAAAAAAAAAAAAAAAAAAA$3Vx0uBzyFvIOHTbWaCbzHDCkCAR2ptSMLeDJRjcnbsE",
            "pbkdf2_sha256$100000$AAAA$short",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}

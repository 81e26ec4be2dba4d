//! Reading JSON request bodies into typed DTOs with field-level errors, and shared field checks.

use serde::de::DeserializeOwned;

use crate::platform::error::{AppError, FieldError, Result};

/// Parses a JSON body into `T`. Syntax errors are 400; type errors and unknown fields are 422
/// naming the offending field (DTOs use `deny_unknown_fields`).
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(AppError::BadRequest(
            "A JSON request body is required.".into(),
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, T>(de) {
        Ok(v) => Ok(v),
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            match inner.classify() {
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof => Err(
                    AppError::BadRequest(format!("The body is not valid JSON: {inner}")),
                ),
                _ => Err(AppError::Validation(vec![describe(&path, &inner)])),
            }
        }
    }
}

fn describe(path: &str, err: &serde_json::Error) -> FieldError {
    // serde's messages end with " at line L column C"; that position is noise for API clients.
    let msg = err.to_string();
    let msg = match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    };
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        let name = rest.split('`').next().unwrap_or_default();
        return FieldError::new(join(path, name), "unknown field");
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or_default();
        return FieldError::new(join(path, name), "is required");
    }
    let field = if path == "." {
        "body".into()
    } else {
        path.to_string()
    };
    FieldError::new(field, msg)
}

/// The field's full path: serde's path may already end with the field (unknown fields) or
/// stop at the enclosing object (missing fields).
fn join(path: &str, name: &str) -> String {
    if path == "." || path.is_empty() {
        name.to_string()
    } else if path == name || path.ends_with(&format!(".{name}")) {
        path.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
pub fn double_option<'de, D, T>(de: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(de).map(Some)
}

/// Collects field errors while a DTO is turned into domain values.
#[derive(Default)]
pub struct Checks(Vec<FieldError>);

impl Checks {
    pub fn new() -> Self {
        Checks(Vec::new())
    }

    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    /// Records the error of a parse and returns its value, if any.
    pub fn take<T>(&mut self, field: &str, r: std::result::Result<T, String>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(m) => {
                self.add(field, m);
                None
            }
        }
    }

    /// Moves a nested object's errors in under `prefix` (`candidates[2]` → `candidates[2].price`).
    pub fn nest(&mut self, prefix: &str, inner: Checks) {
        for e in inner.0 {
            self.0
                .push(FieldError::new(format!("{prefix}.{}", e.field), e.message));
        }
    }

    pub fn finish(self) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(AppError::Validation(self.0))
        }
    }
}

/// Trims and checks a required text field's length (in characters).
pub fn text(value: &str, min: usize, max: usize) -> std::result::Result<String, String> {
    let v = value.trim();
    let n = v.chars().count();
    if n < min {
        return Err(if min <= 1 {
            "must not be empty".into()
        } else {
            format!("must be at least {min} characters")
        });
    }
    if n > max {
        return Err(format!("must be at most {max} characters"));
    }
    if v.chars().any(|c| c.is_control()) {
        return Err("must not contain control characters".into());
    }
    Ok(v.to_string())
}

/// A lower-cased e-mail address of a plausible shape (one `@`, a dot in the domain, no spaces).
pub fn email(value: &str) -> std::result::Result<String, String> {
    let v = value.trim().to_ascii_lowercase();
    let ok = v.len() <= 254
        && v.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && local.len() <= 64
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains("..")
                && !domain.contains('@')
        })
        && !v.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(v)
    } else {
        Err("must be a valid email address".into())
    }
}

/// A URL-safe identifier: 3–63 chars of `a-z`, `0-9` and inner hyphens.
pub fn slug(value: &str) -> std::result::Result<String, String> {
    let v = value.trim();
    let ok = (3..=63).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !v.starts_with('-')
        && !v.ends_with('-');
    if ok {
        Ok(v.to_string())
    } else {
        Err("must be 3–63 characters of a-z, 0-9 and inner hyphens".into())
    }
}

/// Password policy: 8–128 characters (the upper bound keeps hashing cost bounded).
pub fn password(value: &str) -> std::result::Result<String, String> {
    let n = value.chars().count();
    if n < 8 {
        Err("must be at least 8 characters".into())
    } else if n > 128 {
        Err("must be at most 128 characters".into())
    } else {
        Ok(value.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Dto {
        name: String,
        count: Option<u32>,
    }

    #[test]
    fn unknown_fields_are_named() {
        match parse_json::<Dto>(br#"{"name":"a","role":"admin"}"#) {
            Err(AppError::Validation(e)) => assert_eq!(e[0].field, "role"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn missing_and_mistyped_fields_are_422() {
        match parse_json::<Dto>(br#"{"count":1}"#) {
            Err(AppError::Validation(e)) => {
                assert_eq!(e[0].field, "name");
                assert_eq!(e[0].message, "is required");
            }
            other => panic!("unexpected {other:?}"),
        }
        match parse_json::<Dto>(br#"{"name":"a","count":"x"}"#) {
            Err(AppError::Validation(e)) => assert_eq!(e[0].field, "count"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn broken_json_and_empty_bodies_are_400() {
        assert!(matches!(
            parse_json::<Dto>(b"{\"name\":"),
            Err(AppError::BadRequest(_))
        ));
        assert!(matches!(
            parse_json::<Dto>(b"  "),
            Err(AppError::BadRequest(_))
        ));
        assert!(matches!(
            parse_json::<Dto>(b"[1,2]"),
            Err(AppError::Validation(_))
        ));
    }

    #[test]
    fn emails_are_checked_and_lowercased() {
        assert_eq!(email(" Ann@Example.COM ").unwrap(), "ann@example.com");
        for bad in [
            "", "a", "a@b", "@x.io", "a@.io", "a@x..io", "a b@x.io", "a@x.io.",
        ] {
            assert!(email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn slugs_and_passwords_follow_the_policy() {
        assert!(slug("acme-co").is_ok());
        for bad in ["ab", "Acme", "-acme", "acme-", "ac me", "acme_co"] {
            assert!(slug(bad).is_err(), "{bad}");
        }
        assert!(password("short").is_err());
        assert!(password(&"x".repeat(129)).is_err());
        assert!(password("long enough").is_ok());
        assert!(text("  hi ", 1, 5).unwrap() == "hi");
        assert!(text("   ", 1, 5).is_err());
        assert!(text("a\u{0}b", 1, 5).is_err());
    }
}

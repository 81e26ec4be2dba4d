//! Pure checks of the profile fields and the preferences' JSON merge patch (RFC 7396).

use serde_json::{Map, Value};

/// The preferences object's largest serialised size.
pub const MAX_PREFERENCES_BYTES: usize = 8 * 1024;
pub const MAX_AVATAR_URL: usize = 2048;
pub const MAX_BIO: usize = 1000;

/// A BCP 47 language tag's shape: a 2–3 letter language, then optional subtags of 2–8 letters
/// or digits (`en`, `pt-BR`, `zh-Hant-TW`, `es-419`). Case is normalised the usual way
/// (language lower, a 2-letter region upper, a 4-letter script title case). Whether the tag is
/// registered is not checked.
pub fn locale(v: &str) -> Result<String, String> {
    let bad = || "must be a language tag like `en` or `pt-BR`".to_string();
    if v.is_empty() || v.len() > 35 {
        return Err(bad());
    }
    let mut parts = v.split(['-', '_']);
    let lang = parts.next().unwrap_or_default();
    if !(2..=3).contains(&lang.len()) || !lang.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(bad());
    }
    let mut out = lang.to_ascii_lowercase();
    for p in parts {
        if !(2..=8).contains(&p.len()) || !p.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(bad());
        }
        out.push('-');
        match p.len() {
            2 if p.chars().all(|c| c.is_ascii_alphabetic()) => {
                out.push_str(&p.to_ascii_uppercase())
            }
            4 if p.chars().all(|c| c.is_ascii_alphabetic()) => {
                let lower = p.to_ascii_lowercase();
                out.push_str(&lower[..1].to_ascii_uppercase());
                out.push_str(&lower[1..]);
            }
            _ => out.push_str(&p.to_ascii_lowercase()),
        }
    }
    Ok(out)
}

/// An IANA time-zone name's shape: `UTC`, or `Area/Location[/More]` with parts that start with
/// a letter and hold letters, digits, `_`, `-` and `+` (`Europe/Berlin`,
/// `America/Argentina/Buenos_Aires`, `Etc/GMT+2`). The bundle has no tz database, so whether
/// the zone exists is not checked.
pub fn timezone(v: &str) -> Result<String, String> {
    let bad = || "must be an IANA time zone like `Europe/Berlin` or `UTC`".to_string();
    if v.is_empty() || v.len() > 64 {
        return Err(bad());
    }
    if v == "UTC" || v == "GMT" {
        return Ok(v.to_string());
    }
    let parts: Vec<&str> = v.split('/').collect();
    let part_ok = |p: &str| {
        (1..=30).contains(&p.len())
            && p.starts_with(|c: char| c.is_ascii_alphabetic())
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-+".contains(c))
    };
    if !(2..=3).contains(&parts.len())
        || !parts.iter().all(|p| part_ok(p))
        || !parts[0].starts_with(|c: char| c.is_ascii_uppercase())
    {
        return Err(bad());
    }
    Ok(v.to_string())
}

/// An `https` URL of at most 2,048 characters, with a host and no spaces or control characters.
pub fn avatar_url(v: &str) -> Result<String, String> {
    let bad = || "must be an https URL of at most 2048 characters".to_string();
    if v.len() > MAX_AVATAR_URL || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let Some(rest) = v.strip_prefix("https://") else {
        return Err(bad());
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.rsplit('@').next().unwrap_or_default();
    let name = host.split(':').next().unwrap_or_default();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-[]".contains(c))
    {
        return Err(bad());
    }
    Ok(v.to_string())
}

/// A bio: at most 1,000 characters, line breaks allowed but no other control characters.
pub fn bio(v: &str) -> Result<String, String> {
    let v = v.trim();
    if v.chars().count() > MAX_BIO {
        return Err(format!("must be at most {MAX_BIO} characters"));
    }
    if v.chars()
        .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
    {
        return Err("must not contain control characters".into());
    }
    Ok(v.to_string())
}

/// RFC 7396: applies `patch` to `target`. An object patch merges key by key (`null` deletes a
/// key, nested objects merge recursively); anything else replaces the target.
pub fn merge_patch(target: &Value, patch: &Value) -> Value {
    let Value::Object(p) = patch else {
        return patch.clone();
    };
    let mut out = match target {
        Value::Object(t) => t.clone(),
        _ => Map::new(),
    };
    for (k, v) in p {
        if v.is_null() {
            out.remove(k);
        } else {
            let merged = merge_patch(out.get(k).unwrap_or(&Value::Null), v);
            out.insert(k.clone(), merged);
        }
    }
    Value::Object(out)
}

/// The preferences after `patch`: the patch must be an object and the result at most 8 KB.
pub fn patched_preferences(current: &Value, patch: &Value) -> Result<Value, String> {
    if !patch.is_object() {
        return Err("must be a JSON object (an RFC 7396 merge patch)".into());
    }
    let merged = merge_patch(current, patch);
    if merged.to_string().len() > MAX_PREFERENCES_BYTES {
        return Err(format!(
            "the preferences would exceed {} KB",
            MAX_PREFERENCES_BYTES / 1024
        ));
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn locales_of_bcp47_shape() {
        assert_eq!(locale("en").unwrap(), "en");
        assert_eq!(locale("pt-br").unwrap(), "pt-BR");
        assert_eq!(locale("pt_BR").unwrap(), "pt-BR");
        assert_eq!(locale("zh-hant-tw").unwrap(), "zh-Hant-TW");
        assert_eq!(locale("es-419").unwrap(), "es-419");
        for bad in [
            "",
            "e",
            "english",
            "en-",
            "en--US",
            "en-U",
            "1n",
            "en US",
            "en-toolongtag",
        ] {
            assert!(locale(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timezones_of_iana_shape() {
        for ok in [
            "UTC",
            "Europe/Berlin",
            "America/Argentina/Buenos_Aires",
            "Etc/GMT+2",
            "America/Port-au-Prince",
        ] {
            assert_eq!(timezone(ok).unwrap(), ok);
        }
        for bad in [
            "",
            "utc",
            "Berlin",
            "europe/berlin",
            "Europe/",
            "/Berlin",
            "Europe/Berlin/",
            "A/B/C/D",
            "Europe/Ber lin",
            "Europe/../x",
            "+01:00",
        ] {
            assert!(timezone(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn avatar_urls_are_https() {
        assert!(avatar_url("https://cdn.example.com/a.png").is_ok());
        assert!(avatar_url("https://cdn.example.com:8443/a.png?s=64").is_ok());
        for bad in [
            "http://cdn.example.com/a.png",
            "https://",
            "https:///x",
            "javascript:alert(1)",
            "https://exa mple.com/",
        ] {
            assert!(avatar_url(bad).is_err(), "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(2048));
        assert!(avatar_url(&long).is_err());
    }

    #[test]
    fn bios_are_bounded() {
        assert!(bio(&"é".repeat(1000)).is_ok());
        assert!(bio(&"é".repeat(1001)).is_err());
        assert!(bio("line one\nline two").is_ok());
        assert!(bio("bell\u{7}").is_err());
    }

    #[test]
    fn merge_patch_follows_rfc7396() {
        // The RFC's appendix A examples.
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!([1, 2]),
                json!({"a": "b", "c": null}),
                json!({"a": "b"}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (target, patch, want) in cases {
            assert_eq!(merge_patch(&target, &patch), want, "{target} + {patch}");
        }
    }

    #[test]
    fn preferences_stay_objects_within_8kb() {
        assert!(patched_preferences(&json!({}), &json!([1])).is_err());
        assert!(patched_preferences(&json!({}), &json!("x")).is_err());
        let big = json!({"k": "x".repeat(8 * 1024)});
        assert!(patched_preferences(&json!({}), &big).is_err());
        let fits = json!({"k": "x".repeat(8 * 1024 - 10)});
        assert!(patched_preferences(&json!({}), &fits).is_ok());
        assert_eq!(
            patched_preferences(&json!({"theme": "dark", "x": 1}), &json!({"x": null})).unwrap(),
            json!({"theme": "dark"})
        );
    }
}

//! Keeping secret values out of what is stored and shown: every occurrence of a secret (as
//! written, JSON-escaped or percent-encoded) becomes `[redacted]`, in text and in the strings
//! (and keys) of JSON values. It catches a secret echoed back as it was sent; one the receiver
//! transforms (hashes, re-encodes) is beyond it.

use serde_json::Value;

pub const MARK: &str = "[redacted]";

/// The spellings of a set of secret values to look for, longest first.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    needles: Vec<String>,
}

fn percent_encoded(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Redactor {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Redactor {
        let mut needles = Vec::new();
        for s in secrets.into_iter().filter(|s| !s.is_empty()) {
            needles.push(s.to_string());
            let json = Value::String(s.to_string()).to_string();
            needles.push(json[1..json.len() - 1].to_string());
            needles.push(percent_encoded(s));
            needles.push(percent_encoded(s).to_ascii_lowercase());
            needles.push(s.replace(' ', "+"));
        }
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
        needles.dedup();
        Redactor { needles }
    }

    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    pub fn text(&self, s: &str) -> String {
        let mut out = s.to_string();
        for n in &self.needles {
            if out.contains(n.as_str()) {
                out = out.replace(n.as_str(), MARK);
            }
        }
        out
    }

    /// Text that may be JSON, redacted with its order and layout kept; if a secret survives in
    /// an escaped spelling (`\u00e9`, `\/`), the redacted JSON value is written out instead.
    pub fn json_text(&self, text: &str) -> String {
        let redacted = self.text(text);
        match serde_json::from_str::<Value>(&redacted) {
            Ok(v) => {
                let again = self.value(v.clone());
                if again != v {
                    again.to_string()
                } else {
                    redacted
                }
            }
            Err(_) => redacted,
        }
    }

    pub fn value(&self, v: Value) -> Value {
        if self.is_empty() {
            return v;
        }
        match v {
            Value::String(s) => Value::String(self.text(&s)),
            Value::Number(n) => {
                let text = n.to_string();
                if self.text(&text) == text {
                    Value::Number(n)
                } else {
                    Value::String(self.text(&text))
                }
            }
            Value::Array(items) => Value::Array(items.into_iter().map(|i| self.value(i)).collect()),
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| (self.text(&k), self.value(v)))
                    .collect(),
            ),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_redacted_from_text_in_every_spelling() {
        let r = Redactor::new(["tok-123", "a b/c\"d", ""]);
        assert_eq!(
            r.text("Bearer tok-123 and tok-123"),
            "Bearer [redacted] and [redacted]"
        );
        assert_eq!(r.text(r#"{"k":"a b/c\"d"}"#), r#"{"k":"[redacted]"}"#);
        assert_eq!(r.text("/x?k=a%20b%2Fc%22d"), "/x?k=[redacted]");
        assert_eq!(r.text("/x?k=a%20b%2fc%22d"), "/x?k=[redacted]");
        assert_eq!(r.text("q=a+b/c\"d"), "q=[redacted]");
        assert_eq!(r.text("nothing here"), "nothing here");
        assert!(Redactor::new([""]).is_empty());
    }

    #[test]
    fn json_values_are_redacted_deeply_keys_and_numbers_too() {
        let r = Redactor::new(["s3cret", "12345"]);
        let v = json!({"headers": {"authorization": "Bearer s3cret"}, "s3cret": [1, "xs3cretx", 12345, 99],
                       "ok": true, "n": null});
        assert_eq!(
            r.value(v),
            json!({"headers": {"authorization": "Bearer [redacted]"}, "[redacted]": [1, "x[redacted]x", "[redacted]", 99],
                   "ok": true, "n": null})
        );
    }

    #[test]
    fn json_text_keeps_the_order_unless_a_secret_hides_in_an_escape() {
        let r = Redactor::new(["caf\u{e9}-key"]);
        assert_eq!(
            r.json_text("{\"z\": \"caf\u{e9}-key\", \"a\": 1}"),
            r#"{"z": "[redacted]", "a": 1}"#
        );
        assert_eq!(
            r.json_text(r#"{"z":"caf\u00e9-key","a":1}"#),
            r#"{"a":1,"z":"[redacted]"}"#
        );
        assert_eq!(r.json_text("not json caf\u{e9}-key"), "not json [redacted]");
    }

    #[test]
    fn a_longer_secret_containing_a_shorter_one_is_redacted_whole() {
        let r = Redactor::new(["abc", "xxabcxx"]);
        assert_eq!(r.text("-xxabcxx-abc-"), "-[redacted]-[redacted]-");
    }
}

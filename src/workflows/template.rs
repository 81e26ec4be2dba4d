//! `{{…}}` templates in step configs: parsing references (checked when a workflow is saved)
//! and rendering them against an execution's input, earlier step outputs and tenant secrets.
//!
//! A string that is exactly one `{{ref}}` becomes the referenced value with its JSON type; in a
//! longer string each reference is interpolated as text (strings as-is, `null` as nothing, other
//! values as JSON).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// What a `{{…}}` names.
#[derive(Debug, Clone, PartialEq)]
pub enum Ref {
    /// `input` or `input.a.b`
    Input(Vec<String>),
    /// `steps.NAME.output` or `steps.NAME.output.a.b`
    Step { name: String, path: Vec<String> },
    /// `secrets.NAME`
    Secret(String),
}

const HELP: &str = "use {{input.…}}, {{steps.NAME.output.…}} or {{secrets.NAME}}";

/// Splits a string into literal text and references, in order.
enum Piece<'a> {
    Text(&'a str),
    Ref(Ref),
}

fn pieces(s: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            out.push(Piece::Text(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| "has a `{{` without its closing `}}`".to_string())?;
        out.push(Piece::Ref(parse_ref(after[..end].trim())?));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}

fn parse_ref(expr: &str) -> Result<Ref, String> {
    let parts: Vec<&str> = expr.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("`{{{{{expr}}}}}` is not a valid reference; {HELP}"));
    }
    let owned = |s: &[&str]| s.iter().map(|p| p.to_string()).collect::<Vec<_>>();
    match parts.as_slice() {
        ["input", path @ ..] => Ok(Ref::Input(owned(path))),
        ["steps", name, "output", path @ ..] => Ok(Ref::Step {
            name: name.to_string(),
            path: owned(path),
        }),
        ["secrets", name] => Ok(Ref::Secret(name.to_string())),
        _ => Err(format!("`{{{{{expr}}}}}` is not a valid reference; {HELP}")),
    }
}

/// Every reference in a JSON value's strings (object keys are literal).
pub fn references(value: &Value) -> Result<Vec<Ref>, String> {
    let mut out = Vec::new();
    collect(value, &mut out)?;
    Ok(out)
}

pub fn string_references(s: &str) -> Result<Vec<Ref>, String> {
    Ok(pieces(s)?
        .into_iter()
        .filter_map(|p| match p {
            Piece::Ref(r) => Some(r),
            Piece::Text(_) => None,
        })
        .collect())
}

fn collect(value: &Value, out: &mut Vec<Ref>) -> Result<(), String> {
    match value {
        Value::String(s) => out.extend(string_references(s)?),
        Value::Array(items) => {
            for v in items {
                collect(v, out)?;
            }
        }
        Value::Object(map) => {
            for v in map.values() {
                collect(v, out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// What templates are rendered against.
pub struct Scope<'a> {
    pub input: &'a Value,
    pub steps: &'a Map<String, Value>,
    pub secrets: &'a BTreeMap<String, String>,
}

/// Follows `a.b.0.c` through objects and arrays; a missing segment is `null`.
pub fn lookup<'v>(value: &'v Value, path: &[String]) -> &'v Value {
    let mut cur = value;
    for seg in path {
        cur = match cur {
            Value::Object(m) => m.get(seg).unwrap_or(&Value::Null),
            Value::Array(a) => seg
                .parse::<usize>()
                .ok()
                .and_then(|i| a.get(i))
                .unwrap_or(&Value::Null),
            _ => &Value::Null,
        };
    }
    cur
}

impl Scope<'_> {
    fn resolve(&self, r: &Ref) -> Result<Value, String> {
        match r {
            Ref::Input(path) => Ok(lookup(self.input, path).clone()),
            Ref::Step { name, path } => {
                let output = self
                    .steps
                    .get(name)
                    .ok_or_else(|| format!("step `{name}` has no output yet"))?;
                Ok(lookup(output, path).clone())
            }
            Ref::Secret(name) => self
                .secrets
                .get(name)
                .map(|v| Value::String(v.clone()))
                .ok_or_else(|| format!("the secret `{name}` is not set for this tenant")),
        }
    }
}

fn as_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn render_str(s: &str, scope: &Scope) -> Result<Value, String> {
    let parts = pieces(s)?;
    if let [Piece::Ref(r)] = parts.as_slice() {
        return scope.resolve(r);
    }
    let mut out = String::with_capacity(s.len());
    for p in &parts {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Ref(r) => out.push_str(&as_text(&scope.resolve(r)?)),
        }
    }
    Ok(Value::String(out))
}

/// Renders a string template as text (URLs, header values).
pub fn render_text(s: &str, scope: &Scope) -> Result<String, String> {
    Ok(as_text(&render_str(s, scope)?))
}

pub fn render(value: &Value, scope: &Scope) -> Result<Value, String> {
    Ok(match value {
        Value::String(s) => render_str(s, scope)?,
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| render(v, scope))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render(v, scope)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with_scope<T>(f: impl FnOnce(&Scope) -> T) -> T {
        let input = json!({"prompt": "a cat", "count": 3, "tags": ["x", "y"], "user": null});
        let steps = json!({"gen": {"data": [{"url": "u1"}, {"url": "u2"}], "id": 7}});
        let secrets = BTreeMap::from([("KEY".to_string(), "s3cret".to_string())]);
        f(&Scope {
            input: &input,
            steps: steps.as_object().unwrap(),
            secrets: &secrets,
        })
    }

    #[test]
    fn a_lone_reference_keeps_its_json_type() {
        with_scope(|s| {
            assert_eq!(render_str("{{input.count}}", s).unwrap(), json!(3));
            assert_eq!(
                render_str("{{ input.tags }}", s).unwrap(),
                json!(["x", "y"])
            );
            assert_eq!(
                render_str("{{steps.gen.output.data}}", s).unwrap(),
                json!([{"url": "u1"}, {"url": "u2"}])
            );
            assert_eq!(render_str("{{input}}", s).unwrap()["prompt"], "a cat");
            assert_eq!(
                render_str("{{input.missing.deep}}", s).unwrap(),
                json!(null)
            );
        })
    }

    #[test]
    fn references_inside_text_are_interpolated() {
        with_scope(|s| {
            assert_eq!(
                render_str("Draw {{input.prompt}} x{{input.count}}{{input.user}}!", s).unwrap(),
                json!("Draw a cat x3!")
            );
            assert_eq!(
                render_text("Bearer {{secrets.KEY}}", s).unwrap(),
                "Bearer s3cret"
            );
            assert_eq!(
                render_str("first: {{steps.gen.output.data.0.url}}", s).unwrap(),
                json!("first: u1")
            );
            assert_eq!(
                render_str("no templates", s).unwrap(),
                json!("no templates")
            );
        })
    }

    #[test]
    fn nested_values_render_recursively() {
        with_scope(|s| {
            let t = json!({"urls": "{{steps.gen.output.data}}", "n": ["{{input.count}}", 1], "k": true});
            assert_eq!(
                render(&t, s).unwrap(),
                json!({"urls": [{"url": "u1"}, {"url": "u2"}], "n": [3, 1], "k": true})
            );
        })
    }

    #[test]
    fn missing_secrets_and_steps_are_errors() {
        with_scope(|s| {
            assert!(render_str("{{secrets.NOPE}}", s)
                .unwrap_err()
                .contains("NOPE"));
            assert!(render_str("{{steps.later.output}}", s).is_err());
        })
    }

    #[test]
    fn bad_references_are_rejected_when_parsed() {
        for bad in [
            "{{input.prompt",
            "{{}}",
            "{{env.HOME}}",
            "{{steps.gen}}",
            "{{steps.gen.result}}",
            "{{secrets}}",
            "{{secrets.A.B}}",
            "{{input..x}}",
        ] {
            assert!(string_references(bad).is_err(), "{bad} should be rejected");
        }
        assert_eq!(
            references(
                &json!({"a": ["{{input.x}} and {{steps.s1.output.y.0}}"], "b": "{{secrets.K}}"})
            )
            .unwrap(),
            vec![
                Ref::Input(vec!["x".into()]),
                Ref::Step {
                    name: "s1".into(),
                    path: vec!["y".into(), "0".into()]
                },
                Ref::Secret("K".into())
            ]
        );
    }
}

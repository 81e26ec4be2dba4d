//! What an LLM's answer must keep before it counts as an optimised prompt.
//!
//! Models wrap answers in fences or quotes and add prefaces despite the system prompt, so
//! [`clean`] strips those first. An answer that then is empty, drops one of the input's
//! placeholders (the caller would substitute into a prompt that no longer has the slot), or —
//! for `compress` — is not shorter by [`tokens::estimate`], is [`Rejected`].

use super::model::Strategy;
use super::tokens;

/// Why an answer was not accepted.
#[derive(Debug, Clone, PartialEq)]
pub enum Rejected {
    /// Nothing left after [`clean`].
    Empty,
    /// A placeholder of the input (exact text, e.g. `{{name}}`) is missing from the answer.
    DroppedPlaceholder(String),
    /// `compress` asked for fewer tokens and the answer has as many or more.
    NotShorter,
}

impl Rejected {
    /// A sentence for the caller's error message.
    pub fn reason(&self) -> String {
        match self {
            Rejected::Empty => "the answer was empty".to_string(),
            Rejected::DroppedPlaceholder(p) => format!("the answer dropped the placeholder {p}"),
            Rejected::NotShorter => "the answer was not shorter than the prompt".to_string(),
        }
    }
}

/// Cleans `output`, then accepts it (returning the cleaned text) or says why not.
pub fn check(input: &str, output: &str, strategy: Strategy) -> Result<String, Rejected> {
    let out = clean(output);
    if out.is_empty() {
        return Err(Rejected::Empty);
    }
    let kept = placeholders(&out);
    if let Some(missing) = placeholders(input).into_iter().find(|p| !kept.contains(p)) {
        return Err(Rejected::DroppedPlaceholder(missing));
    }
    if strategy == Strategy::Compress && tokens::estimate(&out) >= tokens::estimate(input) {
        return Err(Rejected::NotShorter);
    }
    Ok(out)
}

/// Every placeholder in `text`, each once, in order of first appearance:
/// `{{x}}` (anything but braces and newlines inside, so `{{ name }}` counts),
/// `{x}` (letters, digits, `_`, `.`, `-`, starting with a letter, digit or `_`; so JSON such
/// as `{"a": 1}` is not one), `${VAR}` (no spaces or braces inside) and `$VAR`
/// (`$` then `[A-Z_][A-Z0-9_]*`).
pub fn placeholders(text: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut i = 0;
    while let Some(rest) = text.get(i..) {
        let Some(c) = rest.chars().next() else { break };
        match placeholder_len(rest) {
            Some(n) => {
                let p = &rest[..n];
                if !found.iter().any(|f| f == p) {
                    found.push(p.to_string());
                }
                i += n;
            }
            None => i += c.len_utf8(),
        }
    }
    found
}

/// The length in bytes of the placeholder `s` starts with, if it starts with one (the forms
/// of [`placeholders`]). Shared with `local`, which must leave placeholders untouched.
pub(crate) fn placeholder_len(s: &str) -> Option<usize> {
    // Each form scans only as far as its own characters allow, so a text of many `{` stays
    // linear.
    if let Some(rest) = s.strip_prefix("{{") {
        let inner = rest.split(['{', '}', '\n']).next().unwrap_or("");
        let closed = rest[inner.len()..].starts_with("}}");
        return (closed && !inner.trim().is_empty()).then_some(inner.len() + 4);
    }
    if let Some(rest) = s.strip_prefix("${") {
        let inner = rest
            .split(|c: char| c.is_whitespace() || c == '{' || c == '}')
            .next()
            .unwrap_or("");
        let closed = rest[inner.len()..].starts_with('}');
        return (closed && !inner.is_empty()).then_some(inner.len() + 3);
    }
    if let Some(rest) = s.strip_prefix('$') {
        let first = rest.chars().next()?;
        if !(first.is_ascii_uppercase() || first == '_') {
            return None;
        }
        let len = rest
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(rest.len());
        return Some(1 + len);
    }
    if let Some(rest) = s.strip_prefix('{') {
        let first = rest.chars().next()?;
        if !(first.is_alphanumeric() || first == '_') {
            return None;
        }
        let len = rest
            .find(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | '.' | '-')))
            .unwrap_or(rest.len());
        return rest[len..].starts_with('}').then_some(len + 2);
    }
    None
}

/// First lines a model adds before the prompt despite being told not to. Compared
/// case-insensitively after trimming and dropping `*` (bold) and a final `:`.
const PREFACES: [&str; 8] = [
    "here is the optimized prompt",
    "here is the optimised prompt",
    "here is the rewritten prompt",
    "here's the optimized prompt",
    "here's the optimised prompt",
    "here's the rewritten prompt",
    "optimized prompt",
    "optimised prompt",
];

/// `output` without surrounding whitespace, one leading preface line (see `PREFACES`), one
/// wrapping ``` fence (with an optional language tag) and one wrapping pair of quotes
/// (`"…"`, `'…'`, `“…”`), in that order.
pub fn clean(output: &str) -> String {
    let mut s = output.trim();
    s = strip_preface(s).trim();
    s = strip_fence(s).trim();
    s = strip_quotes(s).trim();
    s.to_string()
}

fn strip_preface(s: &str) -> &str {
    let (first, rest) = s.split_once('\n').unwrap_or((s, ""));
    let key = first.trim().replace('*', "").to_lowercase();
    let key = key.trim_end().trim_end_matches(':').trim_end();
    if PREFACES.contains(&key) {
        rest
    } else {
        s
    }
}

fn strip_fence(s: &str) -> &str {
    let Some(body) = s.strip_prefix("```").and_then(|b| b.strip_suffix("```")) else {
        return s;
    };
    // A fence inside means the answer is not one wrapped block (or it nests): leave it.
    if body.contains("```") {
        return s;
    }
    match body.split_once('\n') {
        Some((tag, inner))
            if tag
                .trim()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+' | '.')) =>
        {
            inner
        }
        Some(_) => s,
        None => body,
    }
}

fn strip_quotes(s: &str) -> &str {
    for (open, close) in [('"', '"'), ('“', '”'), ('\'', '\'')] {
        let Some(inner) = s.strip_prefix(open).and_then(|b| b.strip_suffix(close)) else {
            continue;
        };
        let wrapped = if open == '\'' {
            // Apostrophes inside words are fine ('Don't'); a quote next to a space is not.
            apostrophes_only(inner)
        } else {
            !inner.contains([open, close])
        };
        return if wrapped { inner } else { s };
    }
    s
}

/// Every `'` in `s` stands between two letters.
fn apostrophes_only(s: &str) -> bool {
    let chars: Vec<char> = s.chars().collect();
    chars.iter().enumerate().all(|(i, &c)| {
        c != '\''
            || (i > 0
                && chars[i - 1].is_alphabetic()
                && chars.get(i + 1).is_some_and(|n| n.is_alphabetic()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_in_order_deduplicated() {
        let text =
            "Hi {{name}}, your {order_id} ships to $CITY via ${CARRIER}. {{ name }} {{name}} $CITY";
        assert_eq!(
            placeholders(text),
            vec![
                "{{name}}",
                "{order_id}",
                "$CITY",
                "${CARRIER}",
                "{{ name }}"
            ]
        );
    }

    #[test]
    fn json_prices_and_lowercase_are_not_placeholders() {
        assert_eq!(
            placeholders(r#"Return {"a": 1} or {} or { x } for $5 or $lower."#),
            Vec::<String>::new()
        );
        // `$HOMEdir` is `$HOME` then text; `{{{x}}}` holds `{{x}}`.
        assert_eq!(placeholders("$HOMEdir {{{x}}}"), vec!["$HOME", "{{x}}"]);
        assert_eq!(
            placeholders("{0} {a.b-c} {名前}"),
            vec!["{0}", "{a.b-c}", "{名前}"]
        );
        assert_eq!(placeholders("{{ unclosed ${ also {x"), Vec::<String>::new());
        assert_eq!(placeholders(""), Vec::<String>::new());
        assert_eq!(placeholders("😀 {😀} $É"), Vec::<String>::new());
    }

    #[test]
    fn many_open_braces_stay_fast() {
        let text = "{{a{".repeat(50_000) + &"${".repeat(50_000);
        assert_eq!(placeholders(&text), Vec::<String>::new());
    }

    #[test]
    fn clean_strips_wrappers() {
        assert_eq!(clean("  Summarise {{text}}.  \n"), "Summarise {{text}}.");
        assert_eq!(clean("```\nSummarise it.\n```"), "Summarise it.");
        assert_eq!(clean("```text\nSummarise it.\n```"), "Summarise it.");
        assert_eq!(clean("```Summarise it.```"), "Summarise it.");
        assert_eq!(clean("\"Summarise it.\""), "Summarise it.");
        assert_eq!(clean("“Summarise it.”"), "Summarise it.");
        assert_eq!(clean("'Don't summarise it.'"), "Don't summarise it.");
        assert_eq!(
            clean("Here is the optimized prompt:\n\n```\nSummarise it.\n```"),
            "Summarise it."
        );
        assert_eq!(
            clean("**Optimised prompt:**\nSummarise it."),
            "Summarise it."
        );
    }

    #[test]
    fn clean_leaves_what_is_not_a_wrapper() {
        // Two quoted strings, not one wrapped answer.
        assert_eq!(clean("\"a\" and \"b\""), "\"a\" and \"b\"");
        assert_eq!(clean("'a' or 'b'"), "'a' or 'b'");
        // Code inside the prompt is kept.
        let code = "```\nls\n```\nthen ```\npwd\n```";
        assert_eq!(clean(code), code);
        // A first line that is part of the prompt.
        assert_eq!(clean("Here is the text:\nabc"), "Here is the text:\nabc");
        assert_eq!(clean("```"), "```");
        assert_eq!(clean("\""), "\"");
    }

    #[test]
    fn check_accepts_a_shorter_answer_with_every_placeholder() {
        let input = "Please could you kindly summarise {{text}} for $USER in a very short way.";
        assert_eq!(
            check(
                input,
                "```\nSummarise {{text}} for $USER briefly.\n```",
                Strategy::Compress
            ),
            Ok("Summarise {{text}} for $USER briefly.".to_string())
        );
    }

    #[test]
    fn check_rejects_empty_dropped_and_not_shorter() {
        let input = "Summarise {{text}} for $USER.";
        assert_eq!(
            check(input, "  ``` \n```", Strategy::Compress),
            Err(Rejected::Empty)
        );
        assert_eq!(
            check(input, "\"\"", Strategy::Compress),
            Err(Rejected::Empty)
        );
        assert_eq!(
            check(input, "Summarise for $USER.", Strategy::Structure),
            Err(Rejected::DroppedPlaceholder("{{text}}".to_string()))
        );
        // `{text}` is not `{{text}}`.
        assert_eq!(
            check("Use {{text}}.", "Use {text}", Strategy::Compress),
            Err(Rejected::DroppedPlaceholder("{{text}}".to_string()))
        );
        assert_eq!(
            check(
                input,
                "Summarise {{text}} for $USER, please.",
                Strategy::Compress
            ),
            Err(Rejected::NotShorter)
        );
        assert_eq!(
            check(input, input, Strategy::Compress),
            Err(Rejected::NotShorter)
        );
        // Only compress must be shorter.
        assert_eq!(
            check(
                input,
                "- Summarise {{text}} for $USER.",
                Strategy::Structure
            ),
            Ok("- Summarise {{text}} for $USER.".to_string())
        );
        assert_eq!(
            check(input, input, Strategy::Clarify),
            Ok(input.to_string())
        );
    }

    #[test]
    fn reasons_name_the_problem() {
        assert_eq!(
            Rejected::DroppedPlaceholder("{{name}}".to_string()).reason(),
            "the answer dropped the placeholder {{name}}"
        );
        assert_eq!(Rejected::Empty.reason(), "the answer was empty");
        assert_eq!(
            Rejected::NotShorter.reason(),
            "the answer was not shorter than the prompt"
        );
    }
}

//! The one token estimator. Both the prompt and its optimised form are counted by
//! [`estimate`], so a saving compares like with like whichever provider rewrote the prompt.
//!
//! Real tokenizers (BPE vocabularies) are megabytes of tables; the bundle carries none. The
//! estimate follows their broad shape instead, in one pass over the characters:
//!
//! - each maximal run of ASCII letters and digits counts `ceil(len / 4)` (so at least 1):
//!   English words are about four characters a token;
//! - every other character that is not whitespace counts 1: punctuation and symbols (`,` `{`
//!   `$`), non-ASCII letters (CJK, accented letters, combining marks) and emoji;
//! - whitespace counts 0 (tokenizers fold a space into the following word);
//! - the empty text counts 0.
//!
//! It is deterministic and needs no allocation.

/// The estimated token count of `text` (see the module doc for the rule).
pub fn estimate(text: &str) -> u32 {
    let mut total: u32 = 0;
    let mut run: u32 = 0;
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            run = run.saturating_add(1);
            continue;
        }
        total = total.saturating_add(run.div_ceil(4));
        run = 0;
        if !c.is_whitespace() {
            total = total.saturating_add(1);
        }
    }
    total.saturating_add(run.div_ceil(4))
}

/// The share of tokens saved, in percent rounded to one decimal. 0.0 when there was nothing
/// to save (`before` is 0) or nothing was saved (`after >= before`), so it is never negative.
/// Takes `u64` so sums over many optimisations (stats) use it too.
pub fn savings_percent(before: u64, after: u64) -> f64 {
    if before == 0 || after >= before {
        return 0.0;
    }
    let saved = (before - after) as f64 / before as f64 * 100.0;
    (saved * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_whitespace_count_nothing() {
        assert_eq!(estimate(""), 0);
        assert_eq!(estimate(" \t\n\r\n  "), 0);
    }

    #[test]
    fn ascii_runs_count_a_token_per_four_characters() {
        assert_eq!(estimate("a"), 1);
        assert_eq!(estimate("abcd"), 1);
        assert_eq!(estimate("abcde"), 2);
        assert_eq!(estimate("abc123def"), 3);
        // "in"=1, "order"=2, "to"=1.
        assert_eq!(estimate("in order to"), 4);
        assert_eq!(estimate("to"), 1);
    }

    #[test]
    fn punctuation_and_symbols_count_one_each() {
        // "Hello"=2 ","=1 "world"=2 "!"=1.
        assert_eq!(estimate("Hello, world!"), 6);
        // "{" "{" "name"=1 "}" "}".
        assert_eq!(estimate("{{name}}"), 5);
        // "$" "HOME"=1.
        assert_eq!(estimate("$HOME"), 2);
    }

    #[test]
    fn non_ascii_characters_count_one_each() {
        assert_eq!(estimate("日本語"), 3);
        assert_eq!(estimate("👍🏽"), 2);
        // "e" then a combining acute accent.
        assert_eq!(estimate("e\u{301}"), 2);
        // "caf"=1, "é"=1.
        assert_eq!(estimate("café"), 2);
    }

    #[test]
    fn savings_are_rounded_and_never_negative() {
        assert_eq!(savings_percent(0, 0), 0.0);
        assert_eq!(savings_percent(0, 5), 0.0);
        assert_eq!(savings_percent(10, 10), 0.0);
        assert_eq!(savings_percent(10, 12), 0.0);
        assert_eq!(savings_percent(3, 2), 33.3);
        assert_eq!(savings_percent(3, 1), 66.7);
        assert_eq!(savings_percent(8, 1), 87.5);
        assert_eq!(savings_percent(10, 0), 100.0);
    }
}

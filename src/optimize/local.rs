//! The built-in optimiser: deterministic, pure Rust, no key and no network.
//!
//! The text is cut into protected spans, copied byte for byte, and free text, the only part
//! ever edited. Protected: fenced code (from ``` to the next ```, or to the end), inline code
//! (a run of backticks to the same run on the same line), double-quoted strings (`"…"`,
//! `“…”`, on one line), URLs (`http://` or `https://` up to whitespace, less trailing
//! sentence punctuation and an unmatched `)`), and placeholders (`{{x}}`, `{x}`, `$VAR`,
//! `${VAR}`, as `guard::placeholders` finds them).
//!
//! Free text becomes lines of words and spaces, and each line a list marker (`-`, `*`, `1.`)
//! plus sentences (ended by `.`, `!` or `?` before a space, abbreviations such as `e.g.`
//! excepted). Then, for `compress`, cumulatively:
//!
//! 1. Clean-up: runs of spaces and tabs become one space, lines are trimmed, runs of blank
//!    lines become one, and a line or sentence seen before is dropped (sentences compared
//!    case-insensitively, ending in `.`/`!`/`?` and of two words or more; lines with code
//!    fences and lines with no letter or digit, such as `---`, are never dropped).
//! 2. Fillers (`please`, `very`, `just`, …) go and verbose phrases shrink (`in order to` →
//!    `to`): see `PHRASES` and `FILLERS`. A sentence left with only punctuation (`Please.`)
//!    goes.
//! 3. Hedges (`I think`, `maybe`, `could you` at a sentence's start, …, see `HEDGES`) and
//!    articles (`a`, `an`, `the`; a capitalised one only at a sentence's start, so `Option A`
//!    stays) go too.
//!
//! Words match whole and case-insensitively, never glued to a protected span. A sentence that
//! lost words is tidied: spaces before `,` `.` `)` and doubled commas go, and its first letter
//! is capitalised again if it was. Each replacement is shorter than what it replaces, so the
//! result never has more [`tokens::estimate`] tokens than the input (checked once more at the
//! end).
//!
//! `structure` does the same clean-up at the requested level (so level 1 is the clean-up
//! alone), then puts each sentence on its own `- ` bullet. A first sentence that sets a role
//! (`You are …`, `Act as …`) and sentences ending in `:` stay as heading lines; list items
//! (`*`/`+`/`•` become `-`, numbers stay), code, markdown headings, quotes and tables (`#`,
//! `>`, `|`) and lines of protected text only stay as they are. Duplicates the split creates
//! are dropped, so structuring twice gives what structuring once did. `clarify` needs a
//! model, so the route never sends it here; if it arrives, the answer is the level-1
//! clean-up.

use std::collections::HashSet;

use super::guard;
use super::model::{Level, Strategy};
use super::tokens;

/// The optimised `text` (see the module doc). Never panics; the same input gives the same
/// output.
pub fn optimise(text: &str, strategy: Strategy, level: Level) -> String {
    let level = match strategy {
        Strategy::Clarify => 1,
        Strategy::Compress | Strategy::Structure => level.get(),
    };
    let mut lines = parse(text);
    if level >= 2 {
        let rules: Vec<&Rule> = RULES
            .iter()
            .flat_map(|table| table.iter())
            .filter(|r| r.level <= level)
            .collect();
        lines = lines
            .into_iter()
            .filter_map(|line| rewrite_line(line, &rules))
            .collect();
    }
    let lines = dedupe(lines);
    let out: Vec<String> = match strategy {
        // Bullets split lines, which can make new duplicates (`A. B` after a line `B`): drop
        // those too, so structuring twice gives what structuring once did.
        Strategy::Structure => dedupe(parse(&bullets(&lines).join("\n")))
            .iter()
            .map(Line::render)
            .collect(),
        Strategy::Compress | Strategy::Clarify => lines.iter().map(Line::render).collect(),
    };
    let out = out.join("\n");
    if strategy == Strategy::Compress && tokens::estimate(&out) > tokens::estimate(text) {
        // Cannot happen by construction; if a table entry ever breaks that, give the input back.
        return text.to_string();
    }
    out
}

// ---- Tokens ----------------------------------------------------------------------------

/// A piece of a line: one space, a run of free non-space characters, or a protected span.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Space,
    Text(String),
    Kept(String),
}

impl Tok {
    fn text(&self) -> Option<&str> {
        match self {
            Tok::Text(s) => Some(s),
            _ => None,
        }
    }

    /// A token that carries meaning: a protected span, or text with something other than
    /// punctuation (a letter, a digit, an emoji).
    fn has_content(&self) -> bool {
        match self {
            Tok::Space => false,
            Tok::Kept(_) => true,
            Tok::Text(s) => s.chars().any(is_content),
        }
    }
}

/// A line: an optional list marker, then its sentences. A blank line has neither.
#[derive(Debug, Clone, PartialEq)]
struct Line {
    marker: Option<String>,
    sentences: Vec<Vec<Tok>>,
}

impl Line {
    fn is_blank(&self) -> bool {
        self.marker.is_none() && self.sentences.is_empty()
    }

    /// Holds a fenced code block (never deduplicated nor turned into bullets).
    fn has_fence(&self) -> bool {
        self.sentences
            .iter()
            .flatten()
            .any(|t| matches!(t, Tok::Kept(s) if s.starts_with("```")))
    }

    fn render(&self) -> String {
        let mut out = String::new();
        if let Some(m) = &self.marker {
            out.push_str(m);
        }
        for s in &self.sentences {
            if !out.is_empty() {
                out.push(' ');
            }
            render_into(s, &mut out);
        }
        out
    }
}

fn render_into(toks: &[Tok], out: &mut String) {
    for t in toks {
        match t {
            Tok::Space => out.push(' '),
            Tok::Text(s) | Tok::Kept(s) => out.push_str(s),
        }
    }
}

fn render(toks: &[Tok]) -> String {
    let mut out = String::new();
    render_into(toks, &mut out);
    out
}

// ---- Parsing ---------------------------------------------------------------------------

fn is_content(c: char) -> bool {
    !(c.is_whitespace()
        || c.is_ascii_punctuation()
        || matches!(
            c,
            '“' | '”' | '‘' | '’' | '…' | '。' | '！' | '？' | '，' | '«' | '»' | '¿' | '¡'
        ))
}

/// Spaces the clean-up collapses; other Unicode spaces (no-break, ideographic) are text.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\u{b}' | '\u{c}')
}

/// The text as lines of tokens, trimmed, spaces collapsed, split into sentences.
fn parse(text: &str) -> Vec<Line> {
    let mut lines: Vec<Vec<Tok>> = vec![Vec::new()];
    let mut free_start = 0;
    let mut i = 0;
    let mut prev: Option<char> = None;
    // Where the line holding an unclosed `“` ends: no `“` before it can close either, and
    // looking again for each would make a line of them quadratic.
    let mut curly_dead_until = 0;
    while let Some(rest) = text.get(i..) {
        let Some(c) = rest.chars().next() else { break };
        let curly_may_close = i >= curly_dead_until;
        match protected_len(rest, prev, curly_may_close) {
            Some(n) => {
                push_free(&mut lines, &text[free_start..i]);
                let kept = &rest[..n];
                if let Some(line) = lines.last_mut() {
                    line.push(Tok::Kept(kept.to_string()));
                }
                prev = kept.chars().last();
                i += n;
                free_start = i;
            }
            None => {
                if c == '“' && curly_may_close {
                    curly_dead_until = i + rest.find('\n').unwrap_or(rest.len());
                }
                prev = Some(c);
                i += c.len_utf8();
            }
        }
    }
    push_free(&mut lines, &text[free_start..]);
    lines.into_iter().map(split_line).collect()
}

/// Adds free text to the lines: a new line at each `\n`, one `Space` per run of spaces.
fn push_free(lines: &mut Vec<Vec<Tok>>, free: &str) {
    for (n, part) in free.split('\n').enumerate() {
        if n > 0 {
            lines.push(Vec::new());
        }
        let Some(line) = lines.last_mut() else { return };
        for c in part.chars() {
            if is_space(c) {
                if line.last() != Some(&Tok::Space) {
                    line.push(Tok::Space);
                }
            } else if let Some(Tok::Text(s)) = line.last_mut() {
                s.push(c);
            } else {
                line.push(Tok::Text(c.to_string()));
            }
        }
    }
}

/// The length of the protected span `rest` starts with, if any (see the module doc).
/// `prev` is the character before, so `xhttp://` is not a URL; `curly_may_close` is false
/// when a `“` cannot be closed on this line (known from an earlier one).
fn protected_len(rest: &str, prev: Option<char>, curly_may_close: bool) -> Option<usize> {
    if let Some(body) = rest.strip_prefix("```") {
        return Some(body.find("```").map_or(rest.len(), |k| 3 + k + 3));
    }
    if rest.starts_with('`') {
        let ticks = rest.len() - rest.trim_start_matches('`').len();
        let fence = &rest[..ticks];
        let line = rest[ticks..].split('\n').next().unwrap_or("");
        return line.find(fence).map(|k| ticks + k + ticks);
    }
    for (open, close) in [('"', '"'), ('“', '”')] {
        if open == '“' && !curly_may_close {
            continue;
        }
        if let Some(body) = rest.strip_prefix(open) {
            let line = body.split('\n').next().unwrap_or("");
            return line
                .find(close)
                .map(|k| open.len_utf8() + k + close.len_utf8());
        }
    }
    if (rest.starts_with("http://") || rest.starts_with("https://"))
        && !prev.is_some_and(char::is_alphanumeric)
    {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let mut url = &rest[..end];
        // Trimming the end never removes a `(`, so this holds throughout.
        let balanced = url.contains('(');
        loop {
            let trimmed = url.trim_end_matches(['.', ',', ';', ':', '!', '?']);
            let trimmed = match trimmed.strip_suffix(')') {
                Some(t) if !balanced => t,
                _ => trimmed,
            };
            if trimmed.len() == url.len() {
                break;
            }
            url = trimmed;
        }
        return Some(url.len());
    }
    guard::placeholder_len(rest)
}

/// Splits a line's tokens into an optional list marker and sentences.
fn split_line(mut toks: Vec<Tok>) -> Line {
    while toks.last() == Some(&Tok::Space) {
        toks.pop();
    }
    let start = usize::from(toks.first() == Some(&Tok::Space));
    let mut toks = toks.into_iter().skip(start).peekable();
    let mut marker = None;
    let mut sentences = Vec::new();
    let mut current: Vec<Tok> = Vec::new();
    while let Some(t) = toks.next() {
        let next_is_gap = matches!(toks.peek(), None | Some(Tok::Space));
        if marker.is_none() && sentences.is_empty() && current.is_empty() {
            if let Tok::Text(s) = &t {
                if is_marker(s) && toks.peek() == Some(&Tok::Space) {
                    marker = Some(s.clone());
                    toks.next();
                    continue;
                }
            }
        }
        if current.is_empty() && t == Tok::Space {
            continue;
        }
        let ends = next_is_gap && t.text().is_some_and(ends_sentence);
        current.push(t);
        if ends {
            sentences.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        sentences.push(current);
    }
    Line { marker, sentences }
}

/// `-`, `*`, `+`, `•`, or digits then `.` or `)`.
fn is_marker(s: &str) -> bool {
    if matches!(s, "-" | "*" | "+" | "•") {
        return true;
    }
    let digits = s.trim_end_matches(['.', ')']);
    s.len() == digits.len() + 1 && !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
}

const CLOSERS: [char; 9] = [')', ']', '}', '"', '\'', '”', '’', '»', '*'];
const TERMINATORS: [char; 7] = ['.', '!', '?', '…', '。', '！', '？'];
/// Words ending in `.` that do not end a sentence.
const ABBREVIATIONS: [&str; 15] = [
    "e.g.", "i.e.", "etc.", "vs.", "mr.", "mrs.", "ms.", "dr.", "st.", "fig.", "no.", "approx.",
    "cf.", "incl.", "ca.",
];

fn ends_sentence(chunk: &str) -> bool {
    let t = chunk.trim_end_matches(CLOSERS);
    if !t.ends_with(TERMINATORS) {
        return false;
    }
    let word = t
        .trim_start_matches(['(', '[', '"', '\'', '“', '‘'])
        .to_lowercase();
    if ABBREVIATIONS.contains(&word.as_str()) {
        return false;
    }
    // An initial such as `J.`.
    let mut chars = word.chars();
    !matches!((chars.next(), chars.next(), chars.next()), (Some(c), Some('.'), None) if c.is_alphabetic())
}

// ---- Level 1: duplicates and blank lines --------------------------------------------

/// Drops lines and sentences seen before, lines left empty, and extra blank lines.
fn dedupe(lines: Vec<Line>) -> Vec<Line> {
    let mut seen_sentences: HashSet<String> = HashSet::new();
    let mut seen_lines: HashSet<String> = HashSet::new();
    let mut out: Vec<Line> = Vec::new();
    for mut line in lines {
        if line.is_blank() {
            if out.last().is_some_and(|l| !l.is_blank()) {
                out.push(line);
            }
            continue;
        }
        if line.has_fence() {
            out.push(line);
            continue;
        }
        line.sentences.retain(|s| match sentence_key(s) {
            Some(key) => seen_sentences.insert(key),
            None => true,
        });
        if line.sentences.is_empty() {
            continue;
        }
        let key = line.render();
        if key.chars().any(char::is_alphanumeric) && !seen_lines.insert(key) {
            continue;
        }
        out.push(line);
    }
    while out.last().is_some_and(Line::is_blank) {
        out.pop();
    }
    out
}

/// The key duplicate sentences share, if the sentence may be deduplicated: it ends with
/// `.`/`!`/`?`, has two words or more and some letter or digit. Free text is lowercased;
/// protected spans count as written.
fn sentence_key(s: &[Tok]) -> Option<String> {
    let words = s.iter().filter(|t| **t != Tok::Space).count();
    let ends = s
        .last()
        .and_then(Tok::text)
        .is_some_and(|t| t.trim_end_matches(CLOSERS).ends_with(TERMINATORS));
    if words < 2 || !ends || !s.iter().any(Tok::has_content) {
        return None;
    }
    let mut key = String::new();
    for t in s {
        match t {
            Tok::Space => key.push(' '),
            Tok::Text(x) => key.push_str(&x.to_lowercase()),
            Tok::Kept(x) => key.push_str(x),
        }
    }
    Some(key)
}

// ---- Levels 2 and 3: rules -------------------------------------------------------------

/// One rewrite: the words of `from` (lowercase, one space apart) become `to` (may be empty).
struct Rule {
    from: &'static str,
    to: &'static str,
    level: u8,
    /// Only as a sentence's first words (`could you` is a request there, not in `what could
    /// you do`). A `?` ending the sentence then becomes `.`.
    start_only: bool,
    /// Not right after one of these words (`what kind of`, `to please`).
    not_after: &'static [&'static str],
    /// An article: lowercase unless first in the sentence, and followed by a word.
    article: bool,
}

const fn swap(from: &'static str, to: &'static str, level: u8) -> Rule {
    Rule {
        from,
        to,
        level,
        start_only: false,
        not_after: &[],
        article: false,
    }
}

const fn request(from: &'static str) -> Rule {
    Rule {
        start_only: true,
        ..swap(from, "", 3)
    }
}

const DETERMINERS: &[&str] = &[
    "what", "which", "the", "a", "an", "this", "that", "these", "those", "any", "some", "every",
    "each", "same", "one", "no", "whatever", "other",
];

/// Verbose phrases and their short forms (level 2).
const PHRASES: &[Rule] = &[
    swap("in order to", "to", 2),
    swap("so as to", "to", 2),
    swap("due to the fact that", "because", 2),
    swap("owing to the fact that", "because", 2),
    swap("in view of the fact that", "because", 2),
    swap("despite the fact that", "although", 2),
    swap("in spite of the fact that", "although", 2),
    swap("at this point in time", "now", 2),
    swap("at this moment in time", "now", 2),
    swap("at the present time", "now", 2),
    swap("make sure that", "ensure", 2),
    swap("is able to", "can", 2),
    swap("are able to", "can", 2),
    swap("has the ability to", "can", 2),
    swap("have the ability to", "can", 2),
    swap("a large number of", "many", 2),
    swap("a great number of", "many", 2),
    swap("the majority of", "most", 2),
    swap("in the event that", "if", 2),
    swap("with regard to", "about", 2),
    swap("with regards to", "about", 2),
    swap("in regard to", "about", 2),
    swap("with respect to", "about", 2),
    swap("for the purpose of", "for", 2),
    swap("in the near future", "soon", 2),
    swap("prior to", "before", 2),
    swap("subsequent to", "after", 2),
    swap("at all times", "always", 2),
    swap("on a daily basis", "daily", 2),
    swap("each and every", "every", 2),
    swap("first and foremost", "first", 2),
    swap("in close proximity to", "near", 2),
    swap("until such time as", "until", 2),
    swap("in the absence of", "without", 2),
    swap("it is important to note that", "", 2),
    swap("it should be noted that", "", 2),
    swap("it is worth noting that", "", 2),
    swap("please note that", "", 2),
];

/// Words that add nothing to an instruction (level 2).
const FILLERS: &[Rule] = &[
    Rule {
        not_after: &["to"],
        ..swap("please", "", 2)
    },
    swap("kindly", "", 2),
    swap("basically", "", 2),
    swap("actually", "", 2),
    swap("really", "", 2),
    swap("very", "", 2),
    swap("just", "", 2),
    swap("simply", "", 2),
    swap("literally", "", 2),
    swap("essentially", "", 2),
    swap("totally", "", 2),
    swap("truly", "", 2),
    swap("honestly", "", 2),
    swap("obviously", "", 2),
];

/// Hedges and indirect requests (level 3).
const HEDGES: &[Rule] = &[
    swap("i think that", "", 3),
    swap("i think", "", 3),
    swap("i believe that", "", 3),
    swap("i believe", "", 3),
    swap("i guess", "", 3),
    swap("i suppose", "", 3),
    swap("in my opinion", "", 3),
    swap("perhaps", "", 3),
    swap("maybe", "", 3),
    swap("possibly", "", 3),
    swap("probably", "", 3),
    swap("somewhat", "", 3),
    swap("it seems that", "", 3),
    swap("it seems like", "", 3),
    swap("it appears that", "", 3),
    Rule {
        not_after: DETERMINERS,
        ..swap("sort of", "", 3)
    },
    Rule {
        not_after: DETERMINERS,
        ..swap("kind of", "", 3)
    },
    swap("i would like you to", "", 3),
    swap("i'd like you to", "", 3),
    swap("i want you to", "", 3),
    swap("i need you to", "", 3),
    swap("i was wondering if you could", "", 3),
    swap("if possible", "", 3),
    request("could you"),
    request("can you"),
    request("would you"),
    request("will you"),
];

/// Articles (level 3).
const ARTICLES: &[Rule] = &[
    Rule {
        article: true,
        ..swap("a", "", 3)
    },
    Rule {
        article: true,
        ..swap("an", "", 3)
    },
    Rule {
        article: true,
        ..swap("the", "", 3)
    },
];

const RULES: [&[Rule]; 4] = [PHRASES, FILLERS, HEDGES, ARTICLES];

/// Opening and closing punctuation a word may carry: `(word`, `word,`.
const OPENERS: [char; 8] = ['(', '[', '"', '\'', '“', '‘', '¿', '¡'];
const TRAILERS: [char; 16] = [
    '.', ',', ';', ':', '!', '?', ')', ']', '"', '\'', '”', '’', '…', '。', '！', '？',
];

/// A free chunk as (opening punctuation, word, closing punctuation), if its middle is a word:
/// letters, with `'`, `’` or `-` only between letters.
fn split_word(chunk: &str) -> Option<(&str, &str, &str)> {
    let core_start = chunk.len() - chunk.trim_start_matches(OPENERS).len();
    let after_open = &chunk[core_start..];
    let core = after_open.trim_end_matches(TRAILERS);
    let suffix = &after_open[core.len()..];
    let chars: Vec<char> = core.chars().collect();
    let is_word = !chars.is_empty()
        && chars.iter().enumerate().all(|(i, &c)| {
            c.is_alphabetic()
                || (matches!(c, '\'' | '’' | '-')
                    && i > 0
                    && chars[i - 1].is_alphabetic()
                    && chars.get(i + 1).is_some_and(|n| n.is_alphabetic()))
        });
    is_word.then(|| (&chunk[..core_start], core, suffix))
}

/// A word as rules spell it: lowercase, straight apostrophe.
fn fold(word: &str) -> String {
    word.to_lowercase().replace('’', "'")
}

/// Where a rule matched: tokens `start..=end`, and the punctuation to keep around it.
struct Match<'a> {
    end: usize,
    prefix: &'a str,
    suffix: &'a str,
    capital: bool,
}

/// `prev_word` is the word before (see `rewrite_sentence`), `at_start` says nothing
/// meaningful is kept before.
fn match_rule<'a>(
    toks: &'a [Tok],
    i: usize,
    rule: &Rule,
    prev_word: Option<&String>,
    at_start: bool,
) -> Option<Match<'a>> {
    if rule.start_only && !at_start {
        return None;
    }
    let words: Vec<&str> = rule.from.split(' ').collect();
    let last = words.len() - 1;
    let end = i + 2 * last;
    let mut prefix = "";
    let mut suffix = "";
    let mut capital = false;
    for (k, want) in words.iter().enumerate() {
        let idx = i + 2 * k;
        if k > 0 && toks.get(idx - 1) != Some(&Tok::Space) {
            return None;
        }
        let (pre, core, suf) = split_word(toks.get(idx)?.text()?)?;
        if (k > 0 && !pre.is_empty()) || (k < last && !suf.is_empty()) || fold(core) != *want {
            return None;
        }
        if k == 0 {
            prefix = pre;
            capital = core.chars().next().is_some_and(char::is_uppercase);
        }
        if k == last {
            suffix = suf;
        }
    }
    // Glued to a protected span (`the{x}`): not a free word.
    let glued = |t: Option<&Tok>| matches!(t, Some(Tok::Kept(_)));
    if (i > 0 && glued(toks.get(i - 1))) || glued(toks.get(end + 1)) {
        return None;
    }
    if prev_word.is_some_and(|w| rule.not_after.contains(&w.as_str())) {
        return None;
    }
    if rule.article {
        let next_is_word = match toks.get(end + 2) {
            Some(Tok::Kept(_)) => true,
            Some(Tok::Text(t)) => t.chars().next().is_some_and(char::is_alphanumeric),
            _ => false,
        };
        let lowercase = toks
            .get(i)
            .and_then(Tok::text)
            .is_some_and(|t| !t.chars().any(char::is_uppercase));
        if !suffix.is_empty()
            || !prefix.is_empty()
            || toks.get(end + 1) != Some(&Tok::Space)
            || !next_is_word
            || !(lowercase || at_start)
        {
            return None;
        }
    }
    Some(Match {
        end,
        prefix,
        suffix,
        capital,
    })
}

/// The line with its sentences rewritten; `None` if nothing is left of a line that had words
/// (so it does not turn into a paragraph break).
fn rewrite_line(line: Line, rules: &[&Rule]) -> Option<Line> {
    if line.is_blank() {
        return Some(line);
    }
    let sentences: Vec<Vec<Tok>> = line
        .sentences
        .into_iter()
        .filter_map(|s| rewrite_sentence(s, rules))
        .collect();
    (!sentences.is_empty()).then_some(Line {
        marker: line.marker,
        sentences,
    })
}

/// The sentence with the rules applied (longest match first, left to right), tidied if it
/// changed; `None` if nothing meaningful is left.
fn rewrite_sentence(toks: Vec<Tok>, rules: &[&Rule]) -> Option<Vec<Tok>> {
    let mut out: Vec<Tok> = Vec::new();
    let mut changed = false;
    let mut was_request = false;
    // The word before, for `not_after`: the last word kept, or a removed article (`the kind
    // of` stays a noun phrase when `the` goes); removed fillers and hedges do not count.
    let mut prev_word: Option<String> = None;
    // Nothing meaningful kept yet; only the tokens added since the last look are checked.
    let mut at_start = true;
    let mut looked = 0;
    let mut i = 0;
    while let Some(tok) = toks.get(i) {
        at_start = at_start
            && !out
                .get(looked..)
                .unwrap_or(&[])
                .iter()
                .any(Tok::has_content);
        looked = out.len();
        // Only rules starting with this word can match here (cheap to test first).
        let word = tok.text().and_then(split_word).map(|(_, w, _)| fold(w));
        let best = rules
            .iter()
            .filter(|r| word.as_deref().is_some_and(|w| first_word(r.from) == w))
            .filter_map(|r| match_rule(&toks, i, r, prev_word.as_ref(), at_start).map(|m| (r, m)))
            .max_by_key(|(r, m)| (m.end, std::cmp::Reverse(r.from.len())));
        let Some((rule, m)) = best else {
            match tok {
                Tok::Space => {}
                Tok::Text(t) => prev_word = word_before_next(t),
                Tok::Kept(_) => prev_word = None,
            }
            out.push(tok.clone());
            i += 1;
            continue;
        };
        changed = true;
        was_request |= rule.start_only;
        let words: Vec<&str> = rule.to.split(' ').filter(|w| !w.is_empty()).collect();
        if rule.article {
            prev_word = Some(rule.from.to_string());
        } else if let Some(last) = words.last() {
            prev_word = m.suffix.is_empty().then(|| last.to_string());
        } else if !m.suffix.is_empty() {
            prev_word = None;
        }
        if words.is_empty() {
            out.push(Tok::Text(format!("{}{}", m.prefix, m.suffix)));
        }
        for (k, w) in words.iter().enumerate() {
            let mut s = String::new();
            if k == 0 {
                s.push_str(m.prefix);
                s.push_str(&if m.capital {
                    capitalise(w)
                } else {
                    w.to_string()
                });
            } else {
                out.push(Tok::Space);
                s.push_str(w);
            }
            if k + 1 == words.len() {
                s.push_str(m.suffix);
            }
            out.push(Tok::Text(s));
        }
        i = m.end + 1;
    }
    if !changed {
        return Some(toks);
    }
    let out = tidy(out, starts_capitalised(&toks), was_request);
    if out.iter().any(Tok::has_content) || !toks.iter().any(Tok::has_content) {
        Some(out).filter(|o| !o.is_empty())
    } else {
        None
    }
}

fn first_word(phrase: &str) -> &str {
    phrase.split(' ').next().unwrap_or(phrase)
}

/// The chunk's word, folded, if nothing stands between it and the next word (`to`, not `to,`).
fn word_before_next(chunk: &str) -> Option<String> {
    let (_, word, suffix) = split_word(chunk)?;
    suffix.is_empty().then(|| fold(word))
}

/// The first word of the sentence starts with a capital letter.
fn starts_capitalised(toks: &[Tok]) -> bool {
    for t in toks {
        match t {
            Tok::Space => {}
            Tok::Kept(_) => return false,
            Tok::Text(s) => {
                if let Some(c) = s.chars().find(|c| c.is_alphanumeric()) {
                    return c.is_uppercase();
                }
            }
        }
    }
    false
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Repairs a sentence that lost words: no empty pieces, no spaces doubled, at the ends, before
/// closing or after opening punctuation; no doubled or leading commas; a capital first letter
/// if it had one; `.` for `?` after a removed request.
fn tidy(toks: Vec<Tok>, capital: bool, was_request: bool) -> Vec<Tok> {
    let mut out: Vec<Tok> = Vec::new();
    for t in toks {
        match t {
            Tok::Text(s) if s.is_empty() => {}
            Tok::Space => {
                // A short run of openers only (`(`, `“(`); the bound keeps a long run of
                // them, which merges into one piece, from being rescanned each time.
                let after_opener = matches!(out.last(),
                    Some(Tok::Text(p)) if p.len() <= 8 && p.chars().all(|c| OPENERS.contains(&c)));
                if !(out.is_empty() || out.last() == Some(&Tok::Space) || after_opener) {
                    out.push(Tok::Space);
                }
            }
            Tok::Text(s) => {
                let closes = s.starts_with([',', '.', ';', ':', '!', '?', ')', ']', '…']);
                if closes && out.last() == Some(&Tok::Space) {
                    out.pop();
                }
                // Pieces left touching (`X,` and `.`) are one chunk again.
                if let Some(Tok::Text(p)) = out.last_mut() {
                    p.push_str(&s);
                } else {
                    out.push(Tok::Text(s));
                }
            }
            kept @ Tok::Kept(_) => out.push(kept),
        }
    }
    if out.last() == Some(&Tok::Space) {
        out.pop();
    }
    for t in &mut out {
        if let Tok::Text(s) = t {
            *s = fix_commas(s);
        }
    }
    if let Some(Tok::Text(s)) = out.first_mut() {
        *s = s.trim_start_matches([',', ';', ':']).to_string();
    }
    if out.first().is_some_and(|t| t.text() == Some("")) {
        out.remove(0);
        if out.first() == Some(&Tok::Space) {
            out.remove(0);
        }
    }
    if was_request {
        if let Some(Tok::Text(s)) = out.last_mut() {
            if let Some(stem) = s.strip_suffix('?') {
                *s = format!("{stem}.");
            }
        }
    }
    if capital {
        for t in &mut out {
            match t {
                Tok::Space => continue,
                Tok::Kept(_) => break,
                Tok::Text(s) => {
                    if let Some((at, c)) = s.char_indices().find(|(_, c)| c.is_alphanumeric()) {
                        if c.is_lowercase() {
                            let rest = &s[at + c.len_utf8()..];
                            *s = format!("{}{}{}", &s[..at], c.to_uppercase(), rest);
                        }
                        break;
                    }
                }
            }
        }
    }
    out
}

/// `,,` → `,` and a comma before other punctuation dropped (`X,.` → `X.`).
fn fix_commas(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        let next_is_punct = chars
            .peek()
            .is_some_and(|n| matches!(n, ',' | '.' | ';' | ':' | '!' | '?'));
        if c == ',' && next_is_punct {
            continue;
        }
        out.push(c);
    }
    out
}

// ---- Structure ---------------------------------------------------------------------------

/// The lines with each sentence as a `- ` bullet (see the module doc).
fn bullets(lines: &[Line]) -> Vec<String> {
    let mut out = Vec::new();
    let mut first = true;
    for line in lines {
        if line.is_blank() {
            out.push(String::new());
            continue;
        }
        let was_first = std::mem::replace(&mut first, false);
        let only_kept = !line
            .sentences
            .iter()
            .flatten()
            .any(|t| matches!(t, Tok::Text(s) if s.chars().any(char::is_alphanumeric)));
        // Markdown headings, quotes and tables already have their shape.
        let markdown = line
            .sentences
            .first()
            .and_then(|s| s.first())
            .and_then(Tok::text)
            .is_some_and(|t| t.starts_with(['#', '>', '|']));
        if line.has_fence() || only_kept || markdown {
            out.push(line.render());
            continue;
        }
        if let Some(m) = &line.marker {
            let marker = if m.ends_with(['.', ')']) {
                m.as_str()
            } else {
                "-"
            };
            let body: Vec<String> = line.sentences.iter().map(|s| render(s)).collect();
            out.push(format!("{marker} {}", body.join(" ")));
            continue;
        }
        for (n, sentence) in line.sentences.iter().enumerate() {
            let sentence = render(sentence);
            let heading = sentence.ends_with(':') || (was_first && n == 0 && is_heading(&sentence));
            out.push(if heading {
                sentence
            } else {
                format!("- {sentence}")
            });
        }
    }
    out
}

/// A first sentence that sets the scene rather than instructs.
fn is_heading(sentence: &str) -> bool {
    let lower = sentence.to_lowercase();
    [
        "you are ",
        "you're ",
        "you’re ",
        "act as ",
        "as a ",
        "as an ",
    ]
    .iter()
    .any(|p| lower.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(n: i64) -> Level {
        Level::new(n).unwrap_or_default()
    }

    fn compress(text: &str, n: i64) -> String {
        optimise(text, Strategy::Compress, level(n))
    }

    #[test]
    fn level_one_cleans_whitespace_and_blank_lines() {
        let input = "  Summarise   the\ttext  below. \n\n\n\n  Keep it short.  \n\n";
        assert_eq!(
            compress(input, 1),
            "Summarise the text below.\n\nKeep it short."
        );
    }

    #[test]
    fn level_one_drops_duplicate_lines_and_sentences() {
        let input =
            "Be concise. Use English.\nAnswer in French.\nbe  CONCISE.\nAnswer in French.\n\
                     ---\n---\nInput: foo\nInput: foo\nUse English. Cite sources.";
        assert_eq!(
            compress(input, 1),
            "Be concise. Use English.\nAnswer in French.\n---\n---\nInput: foo\nCite sources."
        );
    }

    #[test]
    fn level_one_keeps_abbreviations_and_short_sentences() {
        let input = "Use a tool, e.g. grep. Use a tool, e.g. awk. Yes. Yes.";
        assert_eq!(compress(input, 1), input);
    }

    #[test]
    fn level_two_drops_fillers_and_shortens_phrases() {
        let input = "Please write a very short summary in order to help the reader. \
                     Due to the fact that time is short, just list the key points. \
                     It is important to note that the tool is able to read PDFs. \
                     Do it now, please.";
        assert_eq!(
            compress(input, 2),
            "Write a short summary to help the reader. Because time is short, list the key \
             points. The tool can read PDFs. Do it now."
        );
    }

    #[test]
    fn level_two_keeps_words_that_only_look_alike() {
        // `adjust`, `please` after `to`, `very` inside a file name.
        let input = "Adjust it to please the client. Open very.txt now.";
        assert_eq!(compress(input, 2), input);
    }

    #[test]
    fn level_three_drops_articles_and_hedges() {
        let input = "I think the answer should perhaps be a short list. \
                     Could you summarise the report for the team? \
                     What kind of data is in an Option A file?";
        assert_eq!(
            compress(input, 3),
            "Answer should be short list. Summarise report for team. \
             What kind of data is in Option A file?"
        );
    }

    #[test]
    fn level_three_sees_what_is_left_not_what_was_there() {
        // `please` follows `to` only in the input; `the kind of` still blocks `kind of`.
        let input = "I would like you to please write the kind of post I like.";
        assert_eq!(compress(input, 3), "Write kind of post I like.");
    }

    #[test]
    fn level_three_tidies_commas_and_parentheses() {
        let input = "Basically, the user (very often) wants a reply, please.";
        assert_eq!(compress(input, 3), "User (often) wants reply.");
    }

    #[test]
    fn levels_are_cumulative() {
        let input = "Please  make sure that the output is very short.\nPlease  make sure that the output is very short.";
        assert_eq!(
            compress(input, 1),
            "Please make sure that the output is very short."
        );
        assert_eq!(compress(input, 2), "Ensure the output is short.");
        assert_eq!(compress(input, 3), "Ensure output is short.");
    }

    #[test]
    fn protected_spans_survive_level_three_byte_for_byte() {
        let input = "Please use the `the  very  tool` on \"a very   quoted  string\" and “the   curly one”.\n\
                     See https://example.com/the/a?x=very&y=(1). Then fill {{ the name }}, {the_id}, $THE_VAR and ${THE_VAR2}.\n\
                     ```python\n\
                     # the very  code   stays\n\
                     print(\"a\")  \n\
                     ```\n\
                     The end of the text.";
        let expected = "Use `the  very  tool` on \"a very   quoted  string\" and “the   curly one”.\n\
                        See https://example.com/the/a?x=very&y=(1). Then fill {{ the name }}, {the_id}, $THE_VAR and ${THE_VAR2}.\n\
                        ```python\n\
                        # the very  code   stays\n\
                        print(\"a\")  \n\
                        ```\n\
                        End of text.";
        assert_eq!(compress(input, 3), expected);
    }

    #[test]
    fn fenced_code_lines_are_never_deduplicated() {
        let input = "Run this:\n```\nls\nls\n```\nRun this:\n```\nls\nls\n```";
        assert_eq!(
            compress(input, 1),
            "Run this:\n```\nls\nls\n```\n```\nls\nls\n```"
        );
    }

    #[test]
    fn an_unclosed_fence_protects_the_rest() {
        let input = "Please fix:\n```\nthe   very code\n\n\n\nthe   very code";
        assert_eq!(
            compress(input, 3),
            "Fix:\n```\nthe   very code\n\n\n\nthe   very code"
        );
    }

    #[test]
    fn urls_keep_their_sentence_punctuation_outside() {
        let input = "Read (https://a.example/x). Then https://b.example, the docs.";
        assert_eq!(
            compress(input, 3),
            "Read (https://a.example/x). Then https://b.example, docs."
        );
    }

    #[test]
    fn words_glued_to_protected_spans_are_kept() {
        let input = "Fill the{x} and very`y`.";
        assert_eq!(compress(input, 3), input);
    }

    #[test]
    fn structure_turns_instructions_into_bullets() {
        let input = "You are a helpful editor. Please fix the grammar. Keep the tone.\n\n\
                     Rules:\n* Be brief.\n1. Use British spelling.\nReturn only the text.";
        assert_eq!(
            optimise(input, Strategy::Structure, level(1)),
            "You are a helpful editor.\n- Please fix the grammar.\n- Keep the tone.\n\n\
             Rules:\n- Be brief.\n1. Use British spelling.\n- Return only the text."
        );
        assert_eq!(
            optimise(input, Strategy::Structure, level(2)),
            "You are a helpful editor.\n- Fix the grammar.\n- Keep the tone.\n\n\
             Rules:\n- Be brief.\n1. Use British spelling.\n- Return only the text."
        );
    }

    #[test]
    fn structure_keeps_markdown_and_lines_ending_in_a_colon() {
        let input = "# Task\nTranslate the text. Follow these rules: Be brief. Keep names.\n> quoted\n| a | b |";
        assert_eq!(
            optimise(input, Strategy::Structure, level(1)),
            "# Task\n- Translate the text.\n- Follow these rules: Be brief.\n- Keep names.\n> quoted\n| a | b |"
        );
        let input = "Do this first. Then these:\n- one\n- two";
        assert_eq!(
            optimise(input, Strategy::Structure, level(1)),
            "- Do this first.\nThen these:\n- one\n- two"
        );
    }

    #[test]
    fn structure_without_a_heading_and_with_code() {
        let input = "Summarise {{text}}. Use `md`.\n```\ncode. here.\n```";
        assert_eq!(
            optimise(input, Strategy::Structure, level(1)),
            "- Summarise {{text}}.\n- Use `md`.\n```\ncode. here.\n```"
        );
        // Already structured: unchanged.
        let done = optimise(input, Strategy::Structure, level(1));
        assert_eq!(optimise(&done, Strategy::Structure, level(1)), done);
    }

    #[test]
    fn clarify_gets_the_level_one_clean_up() {
        let input = "Please   be very clear.\nPlease   be very clear.";
        assert_eq!(
            optimise(input, Strategy::Clarify, level(3)),
            "Please be very clear."
        );
    }

    #[test]
    fn level_one_is_idempotent() {
        let fixtures = [
            "  Summarise   the\ttext  below. \n\n\n\n  Keep it short.  \n\n",
            "Be concise. Use English.\nAnswer in French.\nbe  CONCISE.\nAnswer in French.\n---\n---",
            "Hello. Input: foo\nInput: foo\nHello. Input: foo",
            "Run this:\n```\nls\nls\n```\n\n\nRun this:\n`a`  `a`",
            "- A b.\n-  A b.\n1.  C d. C d.",
        ];
        for f in fixtures {
            let once = compress(f, 1);
            assert_eq!(compress(&once, 1), once, "{f:?}");
        }
    }

    #[test]
    fn never_longer_never_panics() {
        let odd = [
            "",
            "   \n\t \n",
            "```",
            "```\nonly code\n```",
            "`",
            "\"",
            "“",
            "{{",
            "${",
            "$",
            "{",
            "https://",
            "😀 the very 😀. The 😀 very.",
            "日本語の文章。とても良い。 the 日本",
            "e\u{301}tre tre\u{300}s the a\u{308}",
            "a the an . , ? please",
            "THE. A. An. Please.",
            "Really? Really?",
            "\u{feff}\u{200b} \u{a0}the\u{a0}very\u{3000}",
            "ǅemo the ﬁne ß. ß the ﬃ.",
            "- \n1.\n* *\n-",
            "(( the )) [the] , , the,, very,.",
        ];
        for text in odd {
            for strategy in [Strategy::Compress, Strategy::Structure, Strategy::Clarify] {
                for n in 1..=3 {
                    let out = optimise(text, strategy, level(n));
                    if strategy == Strategy::Compress {
                        assert!(
                            tokens::estimate(&out) <= tokens::estimate(text),
                            "{text:?} {n}: {out:?}"
                        );
                    }
                }
            }
        }
        assert_eq!(compress("", 3), "");
        assert_eq!(compress(" \n\t\n ", 3), "");
        assert_eq!(
            compress("```\nonly  code\n```\n", 3),
            "```\nonly  code\n```"
        );
        assert_eq!(compress("Please.", 2), "");
        assert_eq!(compress("😀 the very 😀.", 3), "😀 😀.");
    }

    /// A small deterministic generator (no crate): texts from pieces that stress the
    /// tokeniser, checked for the promises that hold on any input.
    #[test]
    fn generated_texts_keep_their_promises() {
        const FREE: &[&str] = &[
            "the",
            "A",
            "an",
            "very",
            "Please",
            "please,",
            "in order to",
            "I think",
            "could you",
            "kind of",
            "the kind of",
            "Be concise.",
            "Use it.",
            "e.g.",
            "(very",
            "good)",
            ",",
            ".",
            "?",
            "---",
            "1.",
            "- ",
            "😀",
            "日本語。",
            "e\u{301}",
        ];
        const KEPT: &[&str] = &[
            "`the very code`",
            "\"a very quote\"",
            "“the curly”",
            "https://x.example/the?very=1",
            "{{ the name }}",
            "{the_id}",
            "$THE_VAR",
            "${THE}",
            "```\nthe  very\n\n\ncode\n```",
            "\"\"",
        ];
        const WILD: [&str; 8] = ["```", "`", "\"", "“", "{{", "${", "{", "\r\n"];
        const GAPS: [&str; 5] = [" ", "  ", "\t", "\n", "\n\n\n"];
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: usize| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((seed >> 33) as usize) % n
        };
        for round in 0..600 {
            let wild = round % 3 == 0;
            let mut text = String::new();
            let mut kept = Vec::new();
            for _ in 0..next(30) {
                match next(10) {
                    0..=5 => text.push_str(FREE[next(FREE.len())]),
                    6 | 7 => {
                        let k = KEPT[next(KEPT.len())];
                        kept.push(k);
                        text.push_str(k);
                    }
                    8 if wild => text.push_str(WILD[next(WILD.len())]),
                    _ => {}
                }
                text.push_str(GAPS[next(GAPS.len())]);
            }
            for strategy in [Strategy::Compress, Strategy::Structure, Strategy::Clarify] {
                for n in 1..=3 {
                    let out = optimise(&text, strategy, level(n));
                    for p in guard::placeholders(&text) {
                        assert!(guard::placeholders(&out).contains(&p), "{text:?} {out:?}");
                    }
                    if strategy == Strategy::Compress {
                        assert!(
                            tokens::estimate(&out) <= tokens::estimate(&text),
                            "{text:?}"
                        );
                    }
                    if !wild {
                        for k in &kept {
                            assert!(out.contains(k), "{k:?} lost: {text:?} -> {out:?}");
                        }
                    }
                }
            }
            if !wild {
                let once = compress(&text, 1);
                assert_eq!(compress(&once, 1), once, "{text:?}");
                let bullets = optimise(&text, Strategy::Structure, level(1));
                assert_eq!(
                    optimise(&bullets, Strategy::Structure, level(1)),
                    bullets,
                    "{text:?}"
                );
            }
        }
    }

    #[test]
    fn large_and_pathological_inputs_finish() {
        let big = format!(
            "{}\n{}\n{}{}\n{}",
            "“ the very ".repeat(10_000),
            "Please be very brief. ".repeat(5_000),
            "https://x.example/a",
            ")".repeat(10_000),
            "{{a{ ${ `` \" ".repeat(10_000),
        );
        for strategy in [Strategy::Compress, Strategy::Structure] {
            let out = optimise(&big, strategy, level(3));
            assert!(out.len() < big.len());
        }
    }

    #[test]
    fn every_replacement_is_shorter() {
        for rule in RULES.iter().flat_map(|t| t.iter()) {
            assert!(
                tokens::estimate(rule.to) < tokens::estimate(rule.from),
                "{}",
                rule.from
            );
            assert_eq!(rule.from, rule.from.to_lowercase());
        }
    }
}

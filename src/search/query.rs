//! The pure half of search: what a hit's `type` is and who may see it, the FTS5 match
//! expression built from a user's `q` (every term quoted, so no user text is FTS5 syntax), and
//! the cursors of both sort orders.

use crate::auth::roles::Role;

/// `q` is 1–200 characters.
pub const MAX_QUERY_CHARS: usize = 200;

/// What a search document is about: the `kind` column of `search_documents` and the `type` of
/// a hit (the migration's triggers write the same names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Workflow,
    Request,
    Ticket,
    Product,
    Media,
    Contact,
    Message,
    Template,
    Team,
    User,
    Optimization,
    AuditLog,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::Workflow,
        Kind::Request,
        Kind::Ticket,
        Kind::Product,
        Kind::Media,
        Kind::Contact,
        Kind::Message,
        Kind::Template,
        Kind::Team,
        Kind::User,
        Kind::Optimization,
        Kind::AuditLog,
    ];

    /// The names `types=` documents (the hit's `type`).
    pub const NAMES: [&'static str; 12] = [
        "workflow",
        "request",
        "ticket",
        "product",
        "media",
        "contact",
        "message",
        "template",
        "team",
        "user",
        "optimization",
        "audit_log",
    ];

    pub fn as_str(self) -> &'static str {
        Kind::NAMES[Kind::ALL.iter().position(|k| *k == self).unwrap_or(0)]
    }

    /// A `types=` entry: the hit's name, its plural, or the resource's long name.
    pub fn parse(s: &str) -> Option<Kind> {
        let s = s.trim().to_ascii_lowercase();
        Some(match s.as_str() {
            "workflow" | "workflows" => Kind::Workflow,
            "request" | "requests" | "workflow_request" | "workflow_requests" => Kind::Request,
            "ticket" | "tickets" | "support_ticket" | "support_tickets" => Kind::Ticket,
            "product" | "products" => Kind::Product,
            "media" => Kind::Media,
            "contact" | "contacts" => Kind::Contact,
            "message" | "messages" => Kind::Message,
            "template" | "templates" => Kind::Template,
            "team" | "teams" => Kind::Team,
            "user" | "users" => Kind::User,
            "optimization" | "optimizations" | "optimisation" | "optimisations" => {
                Kind::Optimization
            }
            "audit_log" | "audit_logs" | "audit" => Kind::AuditLog,
            _ => return None,
        })
    }

    /// The least role whose read routes show this kind: the inbox (contacts, messages,
    /// templates) is for agents, users and the audit trail for tenant admins; the rest is read
    /// by every user (optimisations: members their own, see `search::visible_sql`).
    pub fn min_role(self) -> Role {
        match self {
            Kind::Contact | Kind::Message | Kind::Template => Role::Agent,
            Kind::User | Kind::AuditLog => Role::Admin,
            _ => Role::Member,
        }
    }
}

/// The kinds asked for (`types=`, a comma list; none or empty: all), in catalogue order, without
/// the ones `role` may not read. An unknown name is an error naming it.
pub fn kinds(types: Option<&str>, role: Role) -> Result<Vec<Kind>, String> {
    let mut wanted = Vec::new();
    for name in types.unwrap_or("").split(',').map(str::trim) {
        if name.is_empty() {
            continue;
        }
        match Kind::parse(name) {
            Some(k) => wanted.push(k),
            None => {
                let shown: String = name.chars().take(40).collect();
                return Err(format!(
                    "`{shown}` is not a type; use {}",
                    Kind::NAMES.join(", ")
                ));
            }
        }
    }
    Ok(Kind::ALL
        .into_iter()
        .filter(|k| wanted.is_empty() || wanted.contains(k))
        .filter(|k| role.at_least(k.min_role()))
        .collect())
}

/// An FTS5 string literal: `"` doubled inside double quotes. Inside a string FTS5 only runs
/// the tokenizer, so operators (`AND`, `NEAR(`), `*`, `(`, `)` and `:` are plain text.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The user's terms: `q` split at whitespace (and control characters, which are never part of
/// a token), keeping the terms with at least one letter or digit: the others hold nothing the
/// tokenizer (unicode61: letters and digits) would index.
pub fn terms(q: &str) -> Vec<String> {
    q.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|t| t.chars().any(char::is_alphanumeric))
        .map(str::to_string)
        .collect()
}

/// Checks `q` (1–200 characters, something searchable) and builds the match expression:
/// `tenant_id:"<tenant>" AND {title body}: ("term" … "last"*)`. The tenant column filter keeps
/// the index lookup inside the tenant (the SQL joins on `tenant_id` as well); the column
/// filter keeps the user's terms off the tenant column. `tenant` `None` (the platform admin's
/// audit trail across tenants) leaves out the tenant filter.
pub fn match_expression(tenant: Option<&str>, q: &str) -> Result<String, String> {
    let q = q.trim();
    let n = q.chars().count();
    if n == 0 {
        return Err("must not be empty".into());
    }
    if n > MAX_QUERY_CHARS {
        return Err(format!("must be at most {MAX_QUERY_CHARS} characters"));
    }
    let terms = terms(q);
    if terms.is_empty() {
        return Err("has nothing searchable (letters or digits)".into());
    }
    let last = terms.len() - 1;
    let phrases: Vec<String> = terms
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if i == last {
                format!("{}*", quoted(t))
            } else {
                quoted(t)
            }
        })
        .collect();
    let user = format!("{{title body}}: ({})", phrases.join(" "));
    Ok(match tenant {
        Some(t) => format!("tenant_id:{} AND {user}", quoted(t)),
        None => user,
    })
}

/// How hits are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// Best match first (bm25, smaller is better), then document id.
    Relevance,
    /// Most recently changed first, then document id.
    Recent,
}

impl Sort {
    pub const NAMES: [&'static str; 2] = ["relevance", "recent"];

    pub fn parse(s: Option<&str>) -> Sort {
        match s {
            Some("recent") => Sort::Recent,
            _ => Sort::Relevance,
        }
    }
}

/// Where the next page starts: strictly after this hit in the sort order.
#[derive(Debug, Clone, PartialEq)]
pub enum After {
    /// bm25 of the last hit and its document id.
    Score(f64, i64),
    /// `updated_at` of the last hit and its document id.
    Updated(String, i64),
}

/// The cursor's two parts (as `platform::paging` encodes them) for this sort order: the score
/// in exponent form (`{:e}` round-trips an f64 exactly) or the time, then the document id.
pub fn cursor_parts(sort: Sort, bm25: f64, updated_at: &str, doc_id: i64) -> (String, String) {
    match sort {
        Sort::Relevance => (format!("{bm25:e}"), doc_id.to_string()),
        Sort::Recent => (updated_at.to_string(), doc_id.to_string()),
    }
}

/// The decoded cursor parts read for this sort order; `None` when they are not one of its
/// cursors (a cursor of the other order, or made up).
pub fn after(sort: Sort, parts: &(String, String)) -> Option<After> {
    let id: i64 = parts.1.parse().ok().filter(|n| *n > 0)?;
    match sort {
        Sort::Relevance => {
            let score: f64 = parts.0.parse().ok().filter(|s: &f64| s.is_finite())?;
            // A time is not a score: `2026-…` does not parse, a bare number would.
            Some(After::Score(score, id))
        }
        Sort::Recent => {
            let t = &parts.0;
            (t.len() >= 10 && t.as_bytes()[4] == b'-').then(|| After::Updated(t.clone(), id))
        }
    }
}

/// Marks FTS5's `snippet()` puts around matched terms (private-use characters, so they cannot
/// be mistaken for the text's own markup).
pub const MARK_OPEN: char = '\u{E000}';
pub const MARK_CLOSE: char = '\u{E001}';

/// A snippet as HTML: the text escaped, matched terms in `<mark>…</mark>`.
pub fn snippet_html(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() + 16);
    for c in raw.chars() {
        match c {
            MARK_OPEN => out.push_str("<mark>"),
            MARK_CLOSE => out.push_str("</mark>"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expr(q: &str) -> Result<String, String> {
        match_expression(Some("ten_abc"), q)
    }

    #[test]
    fn terms_are_quoted_and_the_last_is_a_prefix() {
        assert_eq!(
            expr("kyo").unwrap(),
            r#"tenant_id:"ten_abc" AND {title body}: ("kyo"*)"#
        );
        assert_eq!(
            expr("  blue   kyoto mu ").unwrap(),
            r#"tenant_id:"ten_abc" AND {title body}: ("blue" "kyoto" "mu"*)"#
        );
        assert_eq!(
            match_expression(None, "login").unwrap(),
            r#"{title body}: ("login"*)"#
        );
    }

    #[test]
    fn hostile_input_never_becomes_syntax() {
        // Every user character ends up inside a string literal: the expression outside them
        // is exactly the fixed skeleton.
        let nasty = [
            r#"a"b"#,
            r#"" OR tenant_id:"ten_other"#,
            "kyo*",
            "NEAR(a b)",
            "a) OR (b",
            "AND",
            "x OR y NOT z",
            "title:secret",
            "{tenant_id}: x",
            "^start",
            "a\u{0}b",
            "+-/\\x",
        ];
        for q in nasty {
            let e = expr(q).unwrap();
            let skeleton = strip_strings(&e);
            assert!(
                skeleton.starts_with(r#"tenant_id:"" AND {title body}: (""#),
                "{q}: {e}"
            );
            let inner = skeleton
                .trim_start_matches(r#"tenant_id:"" AND {title body}: ("#)
                .trim_end_matches("*)");
            assert!(inner.split(' ').all(|p| p == "\"\""), "{q}: {e} ({inner})");
            assert!(!e.contains('\u{0}'), "{q}");
        }
    }

    /// The expression with the contents of every string literal removed (`""` stays).
    fn strip_strings(e: &str) -> String {
        let mut out = String::new();
        let mut chars = e.chars().peekable();
        let mut inside = false;
        while let Some(c) = chars.next() {
            if c == '"' {
                if inside && chars.peek() == Some(&'"') {
                    chars.next();
                    continue;
                }
                inside = !inside;
                out.push('"');
            } else if !inside {
                out.push(c);
            }
        }
        assert!(!inside, "unterminated string in {e}");
        out
    }

    #[test]
    fn quotes_are_doubled() {
        assert_eq!(
            expr(r#"say "hi""#).unwrap(),
            r#"tenant_id:"ten_abc" AND {title body}: ("say" """hi"""*)"#
        );
    }

    #[test]
    fn nothing_searchable_or_too_long_is_refused() {
        for q in [
            "",
            "   ",
            "\"",
            "***",
            "()",
            "\"\" * ( ) : -",
            "\u{0}\u{1}",
            "…—·",
        ] {
            assert!(expr(q).is_err(), "{q:?}");
        }
        assert!(expr(&"a".repeat(200)).is_ok());
        assert!(expr(&"a".repeat(201)).is_err());
        // Characters, not bytes.
        assert!(expr(&"é".repeat(200)).is_ok());
    }

    #[test]
    fn unicode_terms_are_kept() {
        assert_eq!(
            expr("Café 京都").unwrap(),
            r#"tenant_id:"ten_abc" AND {title body}: ("Café" "京都"*)"#
        );
        assert!(expr("кио").is_ok());
    }

    #[test]
    fn types_are_checked_and_narrowed_by_role() {
        assert_eq!(kinds(None, Role::Owner).unwrap(), Kind::ALL.to_vec());
        assert_eq!(
            kinds(Some("products, tickets"), Role::Member).unwrap(),
            vec![Kind::Ticket, Kind::Product]
        );
        assert_eq!(
            kinds(Some("message"), Role::Member).unwrap(),
            Vec::<Kind>::new()
        );
        let member = kinds(None, Role::Member).unwrap();
        for k in [
            Kind::Contact,
            Kind::Message,
            Kind::Template,
            Kind::User,
            Kind::AuditLog,
        ] {
            assert!(!member.contains(&k), "{k:?}");
        }
        let agent = kinds(None, Role::Agent).unwrap();
        assert!(agent.contains(&Kind::Message) && !agent.contains(&Kind::User));
        assert!(kinds(Some("product,widgets"), Role::Owner)
            .unwrap_err()
            .contains("widgets"));
        assert_eq!(kinds(Some(" , "), Role::Admin).unwrap(), Kind::ALL.to_vec());
        for (k, name) in Kind::ALL.iter().zip(Kind::NAMES) {
            assert_eq!(k.as_str(), name);
            assert_eq!(Kind::parse(name), Some(*k));
        }
    }

    #[test]
    fn cursors_round_trip_per_sort_order() {
        let score = -1.9642857142857144e-6;
        let parts = cursor_parts(Sort::Relevance, score, "2026-11-23T10:00:00.000Z", 42);
        assert_eq!(
            after(Sort::Relevance, &parts),
            Some(After::Score(score, 42))
        );
        // Through the opaque cursor encoding as well.
        let c = crate::platform::paging::encode_cursor(&parts.0, &parts.1);
        let back = crate::platform::paging::decode_cursor(&c).unwrap();
        assert_eq!(after(Sort::Relevance, &back), Some(After::Score(score, 42)));

        let parts = cursor_parts(Sort::Recent, score, "2026-11-23T10:00:00.000Z", 7);
        assert_eq!(
            after(Sort::Recent, &parts),
            Some(After::Updated("2026-11-23T10:00:00.000Z".into(), 7))
        );
        // One order's cursor is not the other's.
        assert_eq!(after(Sort::Relevance, &parts), None);
        let rel = cursor_parts(Sort::Relevance, -3.5, "", 7);
        assert_eq!(after(Sort::Recent, &rel), None);
        assert_eq!(after(Sort::Relevance, &("NaN".into(), "1".into())), None);
        assert_eq!(after(Sort::Relevance, &("-1.0".into(), "x".into())), None);
    }

    #[test]
    fn snippets_are_escaped_html_with_marks() {
        let raw = format!("a <b> & {MARK_OPEN}kyoto{MARK_CLOSE} \"mug\"");
        assert_eq!(
            snippet_html(&raw),
            "a &lt;b&gt; &amp; <mark>kyoto</mark> &quot;mug&quot;"
        );
    }
}

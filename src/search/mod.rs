//! Full-text search over the tenant's resources (D1 FTS5): `GET /search` and
//! `POST /admin/search/rebuild`. Documents live in `search_documents`, written by triggers on
//! the source tables (migration 0012) under the external-content FTS5 table `search_fts`;
//! this module only reads them, and rebuilds a tenant's by having those triggers run again.
//! The pure parts (types, visibility, the match expression, cursors) are in `query`.

pub mod query;

use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use self::query::{After, Sort};
use crate::args;
use crate::audit;
use crate::handler;
use crate::http::context::Ctx;
use crate::http::pagination::PAGING;
use crate::http::reply::Reply;
use crate::http::router::{q, q_enum, Access, QueryDoc, Route};
use crate::platform::db::{Arg, Filter};
use crate::platform::error::{AppError, Result};
use crate::platform::paging::{encode_cursor, Page};

const SEARCH_QUERY: [QueryDoc; 6] = [
    q(
        "q",
        "string",
        "1–200 characters; every word must match, the last as a prefix (`kyo` finds Kyoto). \
         `query` is accepted as an alias.",
    ),
    q(
        "types",
        "string",
        "Comma list of hit types: workflow, request, ticket, product, media, contact, message, \
         template, team, user, optimization, audit_log (default: all the caller may read).",
    ),
    q_enum(
        "sort",
        &Sort::NAMES,
        "`relevance` (default, best first) or `recent` (last changed first).",
    ),
    PAGING[0],
    PAGING[1],
    q("query", "string", "Alias of `q`."),
];

pub fn routes() -> Vec<Route> {
    vec![
        Route::get("/api/v1/search", Access::User, handler!(search))
            .doc(
                "search",
                "Search the tenant's resources the caller may read (members: no inbox, users or audit trail)",
            )
            .list("SearchHit")
            .query(&SEARCH_QUERY),
        Route::post(
            "/api/v1/admin/search/rebuild",
            Access::TenantAdmin,
            handler!(rebuild),
        )
        .doc(
            "search",
            "Rebuild this tenant's search documents from the source tables",
        )
        .ok("SearchRebuild"),
    ]
}

/// One search result.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SearchHit {
    /// workflow, request, ticket, product, media, contact, message, template, team, user,
    /// optimization or audit_log.
    #[serde(rename = "type")]
    pub kind: String,
    /// The object's id (read it at its own route).
    pub id: String,
    pub title: String,
    /// HTML-escaped text around the match, matched words in `<mark>…</mark>`.
    pub snippet: String,
    /// Relevance, higher is better (bm25, negated).
    pub score: f64,
    pub updated_at: String,
}

/// What a rebuild did.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchRebuild {
    /// The tenant's search documents after the rebuild.
    pub documents: i64,
}

#[derive(Deserialize)]
struct HitRow {
    doc_id: i64,
    kind: String,
    ref_id: String,
    title: String,
    updated_at: String,
    body_snippet: Option<String>,
    title_snippet: Option<String>,
    bm25: f64,
}

/// The match expression for `q` (422 on `field` when there is nothing to search).
pub fn match_for(tenant: Option<&str>, q: &str, field: &str) -> Result<String> {
    query::match_expression(tenant, q).map_err(|m| AppError::field(field, m))
}

/// `q`, or its alias `query`.
fn query_text(cx: &Ctx) -> Result<(&'static str, &str)> {
    if let Some(q) = cx.query("q") {
        return Ok(("q", q));
    }
    if let Some(q) = cx.query("query") {
        return Ok(("query", q));
    }
    Err(AppError::field("q", "is required"))
}

/// The SQL condition (on `search_documents d`) that keeps optimisations to the caller's own
/// when the caller sees only their own (`optimize::own_only`, as `/optimize/history` does).
fn visible_sql(cx: &Ctx, f: &mut Filter) -> Result<()> {
    if let Some((cond, value)) = crate::optimize::own_only(cx, "o")? {
        f.and(
            &format!(
                "(d.kind <> 'optimization' OR EXISTS (SELECT 1 FROM optimizations o \
                 WHERE o.id = d.ref_id AND o.tenant_id = d.tenant_id AND {cond}))"
            ),
            vec![value],
        );
    }
    Ok(())
}

async fn search(cx: Ctx) -> Result<Reply> {
    let (field, text) = query_text(&cx)?;
    let p = cx.principal()?;
    let tenant_id = p.tenant_id.as_str();
    let expr = match_for(Some(tenant_id), text, field)?;
    let kinds = query::kinds(cx.query("types"), p.role).map_err(|m| AppError::field("types", m))?;
    let sort = Sort::parse(cx.query_enum("sort", &Sort::NAMES)?.as_deref());
    let page = cx.page()?;
    let after = match &page.after {
        None => None,
        Some(parts) => Some(query::after(sort, parts).ok_or_else(|| {
            AppError::field("cursor", "is not a cursor of this search's sort order")
        })?),
    };
    if kinds.is_empty() {
        // Nothing the caller may read was asked for.
        return Reply::list::<SearchHit>(&[], None);
    }
    let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    let open = query::MARK_OPEN as u32;
    let close = query::MARK_CLOSE as u32;
    let mut f = Filter::new(
        &format!(
            "SELECT * FROM (SELECT d.id AS doc_id, d.kind AS kind, d.ref_id AS ref_id, \
             d.title AS title, d.updated_at AS updated_at, \
             snippet(search_fts, 2, char({open}), char({close}), '…', 16) AS body_snippet, \
             snippet(search_fts, 1, char({open}), char({close}), '…', 16) AS title_snippet, \
             bm25(search_fts, 0.0, 10.0, 1.0) AS bm25 \
             FROM search_fts JOIN search_documents d ON d.id = search_fts.rowid \
             WHERE search_fts MATCH ?1 AND d.tenant_id = ?2 \
             AND d.kind IN (SELECT value FROM json_each(?3))"
        ),
        args![expr, tenant_id, serde_json::to_string(&names)?],
    );
    visible_sql(&cx, &mut f)?;
    f.sql.push_str(") AS hits WHERE 1 = 1");
    match after {
        None => {}
        Some(After::Score(s, id)) => {
            f.and(
                "(hits.bm25 > ? OR (hits.bm25 = ? AND hits.doc_id > ?))",
                args![s, s, id],
            );
        }
        Some(After::Updated(t, id)) => {
            f.and(
                "(hits.updated_at < ? OR (hits.updated_at = ? AND hits.doc_id < ?))",
                args![t.as_str(), t.as_str(), id],
            );
        }
    }
    f.sql.push_str(match sort {
        Sort::Relevance => " ORDER BY hits.bm25 ASC, hits.doc_id ASC",
        Sort::Recent => " ORDER BY hits.updated_at DESC, hits.doc_id DESC",
    });
    f.sql.push_str(&format!(" LIMIT {}", page.fetch()));
    let mut rows: Vec<HitRow> = cx.db()?.all(&f.sql, &f.args).await?;
    let next = next_cursor(&page, &mut rows, sort);
    let hits: Vec<SearchHit> = rows.into_iter().map(hit).collect();
    Reply::list(&hits, next.as_deref())
}

/// Trims the probe row and encodes where the next page starts.
fn next_cursor(page: &Page, rows: &mut Vec<HitRow>, sort: Sort) -> Option<String> {
    if rows.len() <= page.limit as usize {
        return None;
    }
    rows.truncate(page.limit as usize);
    rows.last().map(|r| {
        let (a, b) = query::cursor_parts(sort, r.bm25, &r.updated_at, r.doc_id);
        encode_cursor(&a, &b)
    })
}

fn hit(r: HitRow) -> SearchHit {
    fn marked(s: Option<&str>) -> Option<&str> {
        s.filter(|s| s.contains(query::MARK_OPEN))
    }
    let body = r.body_snippet.as_deref();
    let snippet = query::snippet_html(
        marked(body)
            .or(marked(r.title_snippet.as_deref()))
            .or(body.filter(|s| !s.is_empty()))
            .unwrap_or(r.title.as_str()),
    );
    SearchHit {
        kind: r.kind,
        id: r.ref_id,
        snippet,
        title: r.title,
        score: -r.bm25,
        updated_at: r.updated_at,
    }
}

/// Each source table and the column whose no-op update (`SET c = c`) fires its search trigger
/// (migration 0012's `*_search_au` triggers are the one definition of a document).
const SOURCES: [(&str, &str); 12] = [
    ("workflows", "name"),
    ("workflow_requests", "title"),
    ("support_tickets", "subject"),
    ("products", "name"),
    ("media", "filename"),
    ("contacts", "name"),
    ("messages", "text"),
    ("templates", "name"),
    ("teams", "name"),
    ("users", "full_name"),
    ("optimizations", "original_text"),
    ("audit_logs", "action"),
];

/// Rebuilds the caller's tenant's documents: drops them and has every source row of the
/// tenant run its update trigger again, in one transaction. This repairs documents that went
/// missing or stale (rows written before the migration on another path, a restore); the FTS
/// index itself follows `search_documents` through its own triggers. A deployment-wide
/// `INSERT INTO search_fts(search_fts) VALUES ('rebuild')` (after a restore, see the README)
/// is the operator's, not a tenant admin's.
async fn rebuild(cx: Ctx) -> Result<Reply> {
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?;
    let mut stmts = vec![db.stmt(
        "DELETE FROM search_documents WHERE tenant_id = ?1",
        &args![tenant_id],
    )?];
    for (table, column) in SOURCES {
        stmts.push(db.stmt(
            &format!("UPDATE {table} SET {column} = {column} WHERE tenant_id = ?1"),
            &args![tenant_id],
        )?);
    }
    stmts.push(
        audit::entry(&cx, "search.rebuilt")
            .target("tenant", tenant_id)
            .stmt(&db)?,
    );
    let changed = db.batch(stmts).await?;
    #[derive(Deserialize)]
    struct Count {
        n: i64,
    }
    let count: Option<Count> = db
        .one(
            "SELECT count(*) AS n FROM search_documents WHERE tenant_id = ?1",
            &args![tenant_id],
        )
        .await?;
    worker::console_log!(
        "{}",
        json!({"level": "info", "event": "search.rebuilt", "tenant_id": tenant_id,
               "rows_touched": changed.iter().skip(1).take(SOURCES.len()).sum::<u64>()})
    );
    Reply::ok(&SearchRebuild {
        documents: count.map_or(0, |c| c.n),
    })
}

/// `GET /audit-logs?q=`: the condition (on `audit_logs`) keeping the entries whose search
/// document matches `q`, within `tenant` when given.
pub fn audit_filter(f: &mut Filter, tenant: Option<&str>, q: &str) -> Result<()> {
    let expr = match_for(tenant, q, "q")?;
    let mut cond = String::from(
        "audit_logs.id IN (SELECT d.ref_id FROM search_fts \
         JOIN search_documents d ON d.id = search_fts.rowid \
         WHERE search_fts MATCH ? AND d.kind = 'audit_log'",
    );
    let mut values = vec![Arg::from(expr)];
    if let Some(t) = tenant {
        cond.push_str(" AND d.tenant_id = ?");
        values.push(Arg::from(t));
    }
    cond.push(')');
    f.and(&cond, values);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_source_table() {
        // The rebuild touches one table per kind: a new kind needs its table here too.
        assert_eq!(SOURCES.len(), query::Kind::ALL.len());
    }

    #[test]
    fn the_backup_scripts_recreate_the_migrations_index() {
        // README backups: the recreate script must be the migration's index and triggers.
        let migration = include_str!("../../migrations/0012_search.sql");
        let recreate = include_str!("../../scripts/search_fts.sql");
        let statements: Vec<&str> = recreate
            .split("\n\n")
            .map(str::trim)
            .filter(|s| !s.is_empty() && !s.starts_with("--"))
            .collect();
        assert_eq!(statements.len(), 5);
        for s in &statements[..4] {
            assert!(migration.contains(s), "not in the migration: {s}");
        }
        assert_eq!(
            statements[4],
            "INSERT INTO search_fts (search_fts) VALUES ('rebuild');"
        );
        let drop = include_str!("../../scripts/search_fts_drop.sql");
        for name in [
            "TRIGGER IF EXISTS search_documents_ai;",
            "TRIGGER IF EXISTS search_documents_ad;",
            "TRIGGER IF EXISTS search_documents_au;",
            "TABLE IF EXISTS search_fts;",
        ] {
            assert!(drop.contains(name), "{name}");
        }
        // Trigger bodies in uppercase BEGIN … END; with LF line ends (remote D1's splitter).
        assert!(!migration.contains('\r'));
        assert_eq!(
            migration.matches(" BEGIN\n").count(),
            migration.matches("\nEND;\n").count()
        );
        assert!(!migration.contains(" begin") && !migration.contains("end;"));
    }

    #[test]
    fn audit_filter_numbers_its_placeholders() {
        let mut f = Filter::new("SELECT * FROM audit_logs WHERE 1 = 1", args![]);
        f.and("audit_logs.tenant_id = ?", args!["ten_1"]);
        audit_filter(&mut f, Some("ten_1"), "login").unwrap();
        assert!(f
            .sql
            .contains("MATCH ?2 AND d.kind = 'audit_log' AND d.tenant_id = ?3)"));
        assert_eq!(f.args.len(), 3);
        assert!(audit_filter(&mut f, None, "\"*\"").is_err());
    }

    #[test]
    fn hits_prefer_a_marked_body_snippet_then_the_title() {
        let row = |body: &str, title: &str| HitRow {
            doc_id: 1,
            kind: "product".into(),
            ref_id: "prd_1".into(),
            title: "Kyoto <mug>".into(),
            updated_at: "2026-01-01T00:00:00.000Z".into(),
            body_snippet: Some(body.into()),
            title_snippet: Some(title.into()),
            bm25: -2.5,
        };
        let h = hit(row("MUG-1 Kitchen", "\u{E000}Kyoto\u{E001} <mug>"));
        assert_eq!(h.snippet, "<mark>Kyoto</mark> &lt;mug&gt;");
        assert_eq!(h.score, 2.5);
        assert_eq!(h.kind, "product");
        let h = hit(row("a \u{E000}kyoto\u{E001} b", "Kyoto <mug>"));
        assert_eq!(h.snippet, "a <mark>kyoto</mark> b");
        let h = hit(row("", ""));
        assert_eq!(h.snippet, "Kyoto &lt;mug&gt;");
    }
}

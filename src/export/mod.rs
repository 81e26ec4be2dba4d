//! Data export for tenant admins (module S): `GET /export?type=&format=csv|json&from&to`
//! streams one of the tenant's tables (allow-listed columns, `types`) from D1 in keyset pages
//! of 500 — CSV with a header row, or JSON as one array — after counting the rows against
//! `EXPORT_MAX_ROWS` and recording the export (audit entry + `export_history`, one batch).
//! `GET /exports` lists the history.

pub mod types;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use crate::args;
use crate::audit;
use crate::handler;
use crate::http::context::Ctx;
use crate::http::pagination::PAGING;
use crate::http::reply::Reply;
use crate::http::router::{q, q_enum, Access, QueryDoc, Route};
use crate::platform::clock;
use crate::platform::db::{Arg, Db, Filter};
use crate::platform::error::{AppError, Result};
use crate::platform::ids;
use types::{ExportType, Format};

/// Rows per D1 read while streaming.
pub const PAGE_ROWS: usize = 500;

const EXPORT_QUERY: [QueryDoc; 4] = [
    q_enum(
        "type",
        &[
            "users",
            "teams",
            "audit_logs",
            "workflows",
            "executions",
            "support_tickets",
            "conversations",
            "messages",
            "contacts",
            "media",
            "products",
            "payments",
            "optimizations",
            "analytics_events",
        ],
        "What to export (required).",
    ),
    q_enum(
        "format",
        &Format::NAMES,
        "`csv` (a header row, then one record per row) or `json` (one array); default `json`.",
    ),
    q(
        "from",
        "string",
        "Rows at or after this RFC 3339 time or YYYY-MM-DD (by `created_at`; analytics events by `occurred_at`).",
    ),
    q(
        "to",
        "string",
        "Rows before this RFC 3339 time or YYYY-MM-DD; not before `from`.",
    ),
];

const HISTORY_QUERY: [QueryDoc; 3] = [
    PAGING[0],
    PAGING[1],
    q("type", "string", "Only exports of this type."),
];

pub fn routes() -> Vec<Route> {
    vec![
        Route::get("/api/v1/export", Access::TenantAdmin, handler!(export))
            .doc(
                "export",
                "Download one of the tenant's tables as CSV or JSON (streamed, audited)",
            )
            .download(&["text/csv", "application/json"])
            .query(&EXPORT_QUERY),
        Route::get("/api/v1/exports", Access::TenantAdmin, handler!(history))
            .doc("export", "The tenant's past exports, newest first")
            .list("ExportRecord")
            .query(&HISTORY_QUERY),
    ]
}

/// One past export.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExportRecord {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// `csv` or `json`.
    pub format: String,
    /// The window asked for; `null` = unbounded.
    pub from: Option<String>,
    pub to: Option<String>,
    /// Rows counted when the export started.
    pub rows: i64,
    pub filename: String,
    /// The admin who exported, or the admin-scoped API key.
    pub user_id: Option<String>,
    pub api_key_id: Option<String>,
    pub created_at: String,
}

#[derive(Deserialize)]
struct HistoryRow {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    format: String,
    from_time: Option<String>,
    to_time: Option<String>,
    row_count: i64,
    filename: String,
    user_id: Option<String>,
    api_key_id: Option<String>,
    created_at: String,
}

impl From<HistoryRow> for ExportRecord {
    fn from(r: HistoryRow) -> Self {
        ExportRecord {
            id: r.id,
            kind: r.kind,
            format: r.format,
            from: r.from_time,
            to: r.to_time,
            rows: r.row_count,
            filename: r.filename,
            user_id: r.user_id,
            api_key_id: r.api_key_id,
            created_at: r.created_at,
        }
    }
}

/// A `[from, to)` window in the stored text form; either end may be open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Window {
    pub from: Option<String>,
    pub to: Option<String>,
}

/// Parses `from`/`to` (RFC 3339 or YYYY-MM-DD): bad values or `from` after `to` are 422.
pub fn window(from: Option<&str>, to: Option<&str>) -> Result<Window> {
    let parse = |name: &str, v: Option<&str>| -> Result<Option<String>> {
        v.map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| clock::normalize_time(v).map_err(|m| AppError::field(name, m)))
            .transpose()
    };
    let w = Window {
        from: parse("from", from)?,
        to: parse("to", to)?,
    };
    if let (Some(f), Some(t)) = (&w.from, &w.to) {
        // Fixed-width UTC text: text order is time order.
        if f > t {
            return Err(AppError::field("from", "must not be after `to`"));
        }
    }
    Ok(w)
}

/// The download's name: `products-2026-12-02.csv`.
pub fn filename(t: &ExportType, format: Format, now: &str) -> String {
    let day = now.get(..10).unwrap_or("export");
    format!("{}-{day}.{}", t.name, format.as_str())
}

/// The `type` and `format` query values, checked together so both errors show at once.
fn parse_kind(kind: Option<&str>, format: Option<&str>) -> Result<(&'static ExportType, Format)> {
    let mut errors = Vec::new();
    let t = match kind {
        None => {
            errors.push(("type", "is required".to_string()));
            None
        }
        Some(k) => {
            let found = types::find(k);
            if found.is_none() {
                errors.push((
                    "type",
                    format!("must be one of: {}", types::names().join(", ")),
                ));
            }
            found
        }
    };
    let f = match format {
        None => Some(Format::Json),
        Some(v) => {
            let found = Format::parse(v);
            if found.is_none() {
                errors.push(("format", "must be one of: csv, json".to_string()));
            }
            found
        }
    };
    match (t, f) {
        (Some(t), Some(f)) => Ok((t, f)),
        _ => Err(AppError::Validation(
            errors
                .into_iter()
                .map(|(field, m)| crate::platform::error::FieldError::new(field, m))
                .collect(),
        )),
    }
}

/// `WHERE` over the tenant and the window, as both the count and the pages use it.
fn scoped(t: &ExportType, select: &str, tenant_id: &str, w: &Window) -> Filter {
    let mut f = Filter::new(
        &format!(
            "SELECT {select} FROM {table} WHERE {table}.tenant_id = ?1",
            table = t.table
        ),
        args![tenant_id],
    );
    f.and_opt(
        &format!("{}.{} >= ?", t.table, t.time),
        w.from.clone().map(Arg::from),
    )
    .and_opt(
        &format!("{}.{} < ?", t.table, t.time),
        w.to.clone().map(Arg::from),
    );
    f
}

/// One keyset page, oldest first: rows strictly after `(time, id)`.
fn page_query(
    t: &ExportType,
    tenant_id: &str,
    w: &Window,
    after: Option<&(String, String)>,
) -> Filter {
    let mut f = scoped(t, &t.select_list(), tenant_id, w);
    if let Some((time, id)) = after {
        f.and(
            &format!(
                "({table}.{time_col} > ? OR ({table}.{time_col} = ? AND {table}.id > ?))",
                table = t.table,
                time_col = t.time
            ),
            args![time, time, id],
        );
    }
    f.sql.push_str(&format!(
        " ORDER BY {table}.{time_col} ASC, {table}.id ASC LIMIT {PAGE_ROWS}",
        table = t.table,
        time_col = t.time
    ));
    f
}

#[derive(Deserialize)]
struct Count {
    n: i64,
}

async fn export(cx: Ctx) -> Result<Reply> {
    let (t, format) = parse_kind(cx.query_nonempty("type"), cx.query_nonempty("format"))?;
    let w = window(cx.query("from"), cx.query("to"))?;
    let db = cx.db()?;
    let tenant_id = cx.tenant_id()?.to_string();
    let count = scoped(t, "COUNT(*) AS n", &tenant_id, &w);
    let rows = db
        .one::<Count>(&count.sql, &count.args)
        .await?
        .map_or(0, |c| c.n);
    let max = cx.config.export_max_rows;
    if rows > max {
        return Err(AppError::refused(
            422,
            "export_too_large",
            format!(
                "{rows} rows match; an export holds at most {max}. Narrow it with `from` and `to`."
            ),
        )
        .with("rows", rows)
        .with("limit", max));
    }
    let now = cx.now();
    let id = ids::new_id("exp");
    let name = filename(t, format, &now);
    let p = cx.principal()?;
    db.batch(vec![
        db.stmt(
            "INSERT INTO export_history (id, tenant_id, user_id, api_key_id, type, format, \
             from_time, to_time, row_count, filename, request_id, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            &args![
                id.as_str(),
                tenant_id.as_str(),
                p.user_id.clone(),
                p.api_key.as_ref().map(|k| k.id.clone()),
                t.name,
                format.as_str(),
                w.from.clone(),
                w.to.clone(),
                rows,
                name.as_str(),
                cx.request_id.as_str(),
                now.as_str()
            ],
        )?,
        audit::entry(&cx, "export.created")
            .target("export", id.as_str())
            .meta(
                json!({"type": t.name, "format": format.as_str(), "from": w.from,
                         "to": w.to, "rows": rows}),
            )
            .stmt(&db)?,
    ])
    .await?;
    let pager = Pager {
        db,
        t,
        format,
        tenant_id,
        window: w,
        after: None,
        started: false,
        done: false,
        left: rows.max(0) as u64,
        request_id: cx.request_id.clone(),
    };
    let body =
        worker::Response::from_stream(futures_util::stream::try_unfold(pager, Pager::next_chunk))?;
    Ok(Reply::stream(200, body.body().clone())
        .with_header("Content-Type", format.content_type())
        .with_header(
            "Content-Disposition",
            crate::media::bytes::content_disposition("attachment", &name),
        )
        .with_header("Cache-Control", "no-store")
        .with_header("X-Export-Id", id)
        .with_header("X-Export-Rows", rows.to_string()))
}

/// The stream's state: where the next page starts and what is left to write.
struct Pager {
    db: Db,
    t: &'static ExportType,
    format: Format,
    tenant_id: String,
    window: Window,
    after: Option<(String, String)>,
    /// The header or `[` is written.
    started: bool,
    done: bool,
    /// Rows still allowed: the export stops at the count it was admitted with, whatever
    /// arrives while it streams.
    left: u64,
    request_id: String,
}

impl Pager {
    async fn next_chunk(mut self) -> worker::Result<Option<(Vec<u8>, Pager)>> {
        if self.done {
            return Ok(None);
        }
        let mut chunk = String::new();
        if !self.started {
            self.started = true;
            match self.format {
                Format::Csv => chunk.push_str(&self.t.csv_header()),
                Format::Json => chunk.push('['),
            }
        }
        let rows = if self.left == 0 {
            Vec::new()
        } else {
            self.page().await.map_err(|e| {
                worker::console_error!(
                    "{}",
                    json!({"level": "error", "request_id": self.request_id,
                           "error": format!("export page of {}: {e:?}", self.t.name)})
                );
                worker::Error::RustError("export stream failed".into())
            })?
        };
        let full = rows.len() == PAGE_ROWS;
        for row in rows.iter().take(self.left as usize) {
            match self.format {
                Format::Csv => chunk.push_str(&self.t.csv_record(row)),
                Format::Json => {
                    // Rows before this one, in this chunk or an earlier one.
                    if self.after.is_some() {
                        chunk.push(',');
                    }
                    chunk.push_str(&self.t.json_object(row));
                }
            }
            self.after = Some((text(row, self.t.time), text(row, "id")));
            self.left -= 1;
        }
        if !full || self.left == 0 {
            self.done = true;
            if self.format == Format::Json {
                chunk.push(']');
            }
        }
        if chunk.is_empty() {
            return Ok(None);
        }
        Ok(Some((chunk.into_bytes(), self)))
    }

    async fn page(&self) -> Result<Vec<Map<String, Value>>> {
        let f = page_query(self.t, &self.tenant_id, &self.window, self.after.as_ref());
        self.db.all(&f.sql, &f.args).await
    }
}

fn text(row: &Map<String, Value>, col: &str) -> String {
    match row.get(col) {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    }
}

async fn history(cx: Ctx) -> Result<Reply> {
    let page = cx.page()?;
    let mut f = Filter::new(
        "SELECT id, type, format, from_time, to_time, row_count, filename, user_id, api_key_id, \
         created_at FROM export_history WHERE export_history.tenant_id = ?1",
        args![cx.tenant_id()?],
    );
    f.and_opt(
        "export_history.type = ?",
        cx.query_nonempty("type").map(Arg::from),
    );
    f.page(&page, "export_history");
    let rows: Vec<HistoryRow> = cx.db()?.all(&f.sql, &f.args).await?;
    let rows: Vec<ExportRecord> = rows.into_iter().map(Into::into).collect();
    let (rows, next) = page.finish(rows, |r| (r.created_at.clone(), r.id.clone()));
    Reply::list(&rows, next.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_dates_and_times_and_refuse_inverted_ones() {
        let w = window(Some("2026-12-01"), Some("2026-12-02T10:00:00+01:00")).unwrap();
        assert_eq!(w.from.as_deref(), Some("2026-12-01T00:00:00.000Z"));
        assert_eq!(w.to.as_deref(), Some("2026-12-02T09:00:00.000Z"));
        assert_eq!(window(None, Some(" ")).unwrap(), Window::default());
        assert!(window(Some("2026-12-01"), Some("2026-12-01")).is_ok());
        for (from, to) in [
            (Some("2026-12-02"), Some("2026-12-01")),
            (Some("yesterday"), None),
            (None, Some("2026-02-30")),
            (Some("12/01/2026"), None),
        ] {
            let e = window(from, to).unwrap_err();
            assert_eq!(e.status(), 422, "{from:?} {to:?}");
        }
    }

    #[test]
    fn type_and_format_are_checked_together() {
        let (t, f) = parse_kind(Some("products"), None).unwrap();
        assert_eq!((t.name, f), ("products", Format::Json));
        assert_eq!(
            parse_kind(Some("users"), Some("csv")).unwrap().1,
            Format::Csv
        );
        match parse_kind(Some("sessions"), Some("xml")).unwrap_err() {
            AppError::Validation(errors) => assert_eq!(errors.len(), 2),
            other => panic!("{other:?}"),
        }
        assert_eq!(parse_kind(None, None).unwrap_err().status(), 422);
    }

    #[test]
    fn pages_are_keyset_pages_of_the_tenant_oldest_first() {
        let t = types::find("analytics_events").unwrap();
        let w = window(Some("2026-12-01"), Some("2026-12-02")).unwrap();
        let f = page_query(
            t,
            "ten_1",
            &w,
            Some(&("2026-12-01T10:00:00.000Z".into(), "evt_9".into())),
        );
        assert!(f
            .sql
            .starts_with("SELECT analytics_events.id, analytics_events.name,"));
        assert!(f.sql.contains("WHERE analytics_events.tenant_id = ?1 AND analytics_events.occurred_at >= ?2 AND analytics_events.occurred_at < ?3 AND (analytics_events.occurred_at > ?4 OR (analytics_events.occurred_at = ?5 AND analytics_events.id > ?6))"));
        assert!(f.sql.ends_with(
            "ORDER BY analytics_events.occurred_at ASC, analytics_events.id ASC LIMIT 500"
        ));
        assert_eq!(f.args.len(), 6);
        assert_eq!(f.args[0], Arg::from("ten_1"));
        let c = scoped(t, "COUNT(*) AS n", "ten_1", &Window::default());
        assert_eq!(
            c.sql,
            "SELECT COUNT(*) AS n FROM analytics_events WHERE analytics_events.tenant_id = ?1"
        );
    }

    #[test]
    fn filenames_name_the_type_day_and_format() {
        let t = types::find("products").unwrap();
        assert_eq!(
            filename(t, Format::Csv, "2026-12-02T16:00:00.000Z"),
            "products-2026-12-02.csv"
        );
    }
}

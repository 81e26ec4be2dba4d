//! D1 access: typed arguments, row decoding, and constraint violations mapped to API errors.

use serde::de::DeserializeOwned;
use wasm_bindgen::JsValue;
use worker::{D1Database, D1PreparedStatement, D1Result, Env};

use super::bindings;
use crate::platform::error::{AppError, Result};

/// One bound SQL parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Null,
    Text(String),
    Int(i64),
    Real(f64),
}

impl Arg {
    fn to_js(&self) -> JsValue {
        match self {
            Arg::Null => JsValue::NULL,
            Arg::Text(s) => JsValue::from_str(s),
            Arg::Int(i) => JsValue::from_f64(*i as f64),
            Arg::Real(f) => JsValue::from_f64(*f),
        }
    }
}

impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(v.to_string())
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(v)
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Self {
        Arg::Text(v.clone())
    }
}
impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}
impl From<u32> for Arg {
    fn from(v: u32) -> Self {
        Arg::Int(v as i64)
    }
}
impl From<f64> for Arg {
    fn from(v: f64) -> Self {
        Arg::Real(v)
    }
}
impl From<bool> for Arg {
    fn from(v: bool) -> Self {
        Arg::Int(v as i64)
    }
}
impl<T: Into<Arg>> From<Option<T>> for Arg {
    fn from(v: Option<T>) -> Self {
        v.map_or(Arg::Null, Into::into)
    }
}
impl<T: Clone + Into<Arg>> From<&Option<T>> for Arg {
    fn from(v: &Option<T>) -> Self {
        v.clone().map_or(Arg::Null, Into::into)
    }
}

/// Builds an array of `Arg`s from heterogeneous values.
#[macro_export]
macro_rules! args {
    ($($v:expr),* $(,)?) => {
        [$($crate::platform::db::Arg::from($v)),*]
    };
}

pub struct Db(D1Database);

fn map_err(e: worker::Error) -> AppError {
    let msg = e.to_string();
    if msg.contains("UNIQUE constraint failed") {
        AppError::Conflict("A resource with these values already exists.".into())
    } else if msg.contains("FOREIGN KEY constraint failed") {
        AppError::field("id", "refers to a resource that does not exist")
    } else {
        AppError::Internal(format!("d1: {msg}"))
    }
}

impl Db {
    pub fn from_env(env: &Env) -> Result<Db> {
        Ok(Db(env.d1(bindings::DB)?))
    }

    pub fn stmt(&self, sql: &str, args: &[Arg]) -> Result<D1PreparedStatement> {
        let values: Vec<JsValue> = args.iter().map(Arg::to_js).collect();
        self.0.prepare(sql).bind(&values).map_err(map_err)
    }

    pub async fn one<T: DeserializeOwned>(&self, sql: &str, args: &[Arg]) -> Result<Option<T>> {
        self.stmt(sql, args)?
            .first::<T>(None)
            .await
            .map_err(map_err)
    }

    pub async fn all<T: DeserializeOwned>(&self, sql: &str, args: &[Arg]) -> Result<Vec<T>> {
        let result = self.stmt(sql, args)?.all().await.map_err(map_err)?;
        result.results::<T>().map_err(map_err)
    }

    /// Runs a write; returns the number of rows changed.
    pub async fn run(&self, sql: &str, args: &[Arg]) -> Result<u64> {
        let result = self.stmt(sql, args)?.run().await.map_err(map_err)?;
        Ok(changes(&result))
    }

    /// Runs reads that belong together in one round trip; each statement's result comes back
    /// in order (decode one with `first_row`).
    pub async fn read_batch(&self, stmts: Vec<D1PreparedStatement>) -> Result<Vec<D1Result>> {
        self.0.batch(stmts).await.map_err(map_err)
    }

    /// Runs a prepared write; returns the number of rows changed.
    pub async fn run_stmt(&self, stmt: D1PreparedStatement) -> Result<u64> {
        let result = stmt.run().await.map_err(map_err)?;
        Ok(changes(&result))
    }

    /// Runs statements in one transaction; returns each statement's changed-row count.
    pub async fn batch(&self, stmts: Vec<D1PreparedStatement>) -> Result<Vec<u64>> {
        let results = self.0.batch(stmts).await.map_err(map_err)?;
        Ok(results.iter().map(changes).collect())
    }
}

/// The first row of one result of `read_batch`.
pub fn first_row<T: DeserializeOwned>(result: &D1Result) -> Result<Option<T>> {
    Ok(result.results::<T>().map_err(map_err)?.into_iter().next())
}

/// Every row of one result of `read_batch`.
pub fn rows<T: DeserializeOwned>(result: &D1Result) -> Result<Vec<T>> {
    result.results::<T>().map_err(map_err)
}

/// The number of rows a statement's result says it changed (of `read_batch` results too).
/// D1 counts rows written by triggers too (the search index's), so read it as "did the
/// statement change anything" (`> 0`), never as an exact row count: count with `RETURNING`.
pub fn changes(result: &worker::D1Result) -> u64 {
    result
        .meta()
        .ok()
        .flatten()
        .and_then(|m| m.changes)
        .unwrap_or(0) as u64
}

/// SQL `LIKE` pattern for a user-supplied search term (escapes `%`, `_` and `\`).
pub fn like_pattern(term: &str) -> String {
    let escaped = term
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// Appends `AND …` filters with numbered placeholders to a query under construction.
pub struct Filter {
    pub sql: String,
    pub args: Vec<Arg>,
}

impl Filter {
    pub fn new(base: &str, args: impl Into<Vec<Arg>>) -> Filter {
        Filter {
            sql: base.to_string(),
            args: args.into(),
        }
    }

    /// Adds a condition with `?` placeholders, numbered in order.
    pub fn and(&mut self, condition: &str, values: impl Into<Vec<Arg>>) -> &mut Self {
        let mut cond = String::new();
        let mut vals = values.into().into_iter();
        for ch in condition.chars() {
            if ch == '?' {
                if let Some(v) = vals.next() {
                    self.args.push(v);
                    cond.push_str(&format!("?{}", self.args.len()));
                    continue;
                }
            }
            cond.push(ch);
        }
        self.sql.push_str(" AND ");
        self.sql.push_str(&cond);
        self
    }

    pub fn and_opt(&mut self, condition: &str, value: Option<Arg>) -> &mut Self {
        if let Some(v) = value {
            self.and(condition, vec![v]);
        }
        self
    }

    /// Keyset pagination, newest first, then `ORDER BY … LIMIT`.
    pub fn page(&mut self, page: &crate::platform::paging::Page, table: &str) -> &mut Self {
        if let Some((created, id)) = &page.after {
            self.and(
                &format!("({table}.created_at < ? OR ({table}.created_at = ? AND {table}.id < ?))"),
                args![created, created, id],
            );
        }
        self.sql.push_str(&format!(
            " ORDER BY {table}.created_at DESC, {table}.id DESC LIMIT {}",
            page.fetch()
        ));
        self
    }
}

impl Filter {
    /// Keyset pagination oldest first (threads read top to bottom), then `ORDER BY … LIMIT`.
    pub fn page_oldest_first(
        &mut self,
        page: &crate::platform::paging::Page,
        table: &str,
    ) -> &mut Self {
        if let Some((created, id)) = &page.after {
            self.and(
                &format!("({table}.created_at > ? OR ({table}.created_at = ? AND {table}.id > ?))"),
                args![created, created, id],
            );
        }
        self.sql.push_str(&format!(
            " ORDER BY {table}.created_at ASC, {table}.id ASC LIMIT {}",
            page.fetch()
        ));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::paging::Page;

    #[test]
    fn filters_number_their_placeholders() {
        let mut f = Filter::new("SELECT * FROM t WHERE tenant_id = ?1", args!["ten_1"]);
        f.and_opt("status = ?", Some("active".into()))
            .and_opt("role = ?", None)
            .and("created_at >= ? AND created_at < ?", args!["a", "b"]);
        assert_eq!(
            f.sql,
            "SELECT * FROM t WHERE tenant_id = ?1 AND status = ?2 AND created_at >= ?3 AND created_at < ?4"
        );
        assert_eq!(f.args.len(), 4);
    }

    #[test]
    fn pages_continue_after_the_cursor() {
        let page = Page {
            limit: 2,
            after: Some(("t".into(), "id".into())),
        };
        let mut f = Filter::new("SELECT * FROM t WHERE tenant_id = ?1", args!["x"]);
        f.page(&page, "t");
        assert!(f
            .sql
            .ends_with("AND (t.created_at < ?2 OR (t.created_at = ?3 AND t.id < ?4)) ORDER BY t.created_at DESC, t.id DESC LIMIT 3"));
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("50%_a\\"), "%50\\%\\_a\\\\%");
    }
}

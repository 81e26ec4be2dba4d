//! The usage meter Durable Object: one per tenant (`id_from_name(tenant_id)`), counting its
//! monthly allowances exactly. Each consume and refund is one synchronous read-modify-write on
//! the object's SQL storage (no `await` between the read and the write), so N concurrent
//! requests with R units left get exactly R successes; an `op_id` is counted once. The
//! arithmetic and calendar are `billing::meter`'s; this shell holds the state, seeds a month's
//! first counter from D1 (inside `block_concurrency_while`, so concurrent first consumes cannot
//! seed twice) and flushes counters to D1 `usage_counters` from an alarm (≤ 60 s behind).

use serde::Deserialize;
use worker::{durable_object, DurableObject, Env, Request, Response, Result, SqlStorage, State};

use crate::billing::meter::{
    self, Alert, Consume, Consumed, Counter, MeterRequest, Refund, Report, ReportRequest,
};
use crate::billing::plans::Metric;
use crate::platform::clock;
use crate::platform::db::Db;

/// How long after a change the counters reach D1.
const FLUSH_AFTER_MS: i64 = 60_000;
/// How long an op id is remembered (redeliveries and refunds come within minutes).
const OPS_KEPT_MS: i64 = 35 * 24 * 3600 * 1000;

#[durable_object]
pub struct UsageMeter {
    state: State,
    env: Env,
}

#[derive(Deserialize)]
struct Used {
    used: i64,
}

#[derive(Deserialize)]
struct Op {
    amount: i64,
    refunded: i64,
}

#[derive(Deserialize)]
struct Row {
    period: String,
    metric: String,
    used: i64,
}

#[derive(Deserialize)]
struct AlertRow {
    metric: String,
    threshold: i64,
    at: String,
}

#[derive(Deserialize)]
struct Value {
    value: String,
}

impl DurableObject for UsageMeter {
    fn new(state: State, env: Env) -> Self {
        let sql = state.storage().sql();
        for ddl in [
            "CREATE TABLE IF NOT EXISTS counters (period TEXT NOT NULL, metric TEXT NOT NULL, \
             used INTEGER NOT NULL, flushed INTEGER NOT NULL DEFAULT -1, PRIMARY KEY (period, metric))",
            "CREATE TABLE IF NOT EXISTS ops (op_id TEXT PRIMARY KEY, period TEXT NOT NULL, \
             metric TEXT NOT NULL, amount INTEGER NOT NULL, refunded INTEGER NOT NULL DEFAULT 0, \
             at_ms INTEGER NOT NULL)",
            "CREATE TABLE IF NOT EXISTS alerts (period TEXT NOT NULL, metric TEXT NOT NULL, \
             threshold INTEGER NOT NULL, at TEXT NOT NULL, PRIMARY KEY (period, metric, threshold))",
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        ] {
            sql.exec(ddl, None).ok();
        }
        Self { state, env }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let req = match req.json::<MeterRequest>().await {
            Ok(r) => r,
            Err(_) => return Response::error("bad meter request", 400),
        };
        let (tenant_id, period) = match &req {
            MeterRequest::Consume(c) => (&c.tenant_id, &c.period),
            MeterRequest::Refund(r) => (&r.tenant_id, &r.period),
            MeterRequest::Report(r) => (&r.tenant_id, &r.period),
        };
        if meter::parse_period(period).is_none() {
            return Response::error("bad period", 400);
        }
        self.remember_tenant(tenant_id)?;
        let answer = match req {
            MeterRequest::Consume(c) => {
                if let Err(e) = self.seed(&c.tenant_id, &c.period, c.metric).await? {
                    return Response::error(e, 503);
                }
                Response::from_json(&self.consume(&c)?)
            }
            MeterRequest::Refund(r) => Response::from_json(&self.refund(&r)?),
            MeterRequest::Report(r) => {
                for metric in Metric::ALL {
                    if let Err(e) = self.seed(&r.tenant_id, &r.period, metric).await? {
                        return Response::error(e, 503);
                    }
                }
                Response::from_json(&self.report(&r)?)
            }
        };
        self.schedule_flush().await?;
        answer
    }

    async fn alarm(&self) -> Result<Response> {
        let sql = self.state.storage().sql();
        sql.exec("DELETE FROM meta WHERE key = 'alarm'", None)?;
        if let Err(e) = self.flush(&sql).await {
            worker::console_error!("usage meter flush failed (retrying): {e}");
            self.schedule_flush().await?;
        }
        let now = clock::now_ms();
        let oldest = meter::oldest_kept(now);
        sql.exec(
            "DELETE FROM counters WHERE period < ? AND used = flushed",
            vec![oldest.as_str().into()],
        )?;
        sql.exec(
            "DELETE FROM alerts WHERE period < ?",
            vec![oldest.as_str().into()],
        )?;
        sql.exec(
            "DELETE FROM ops WHERE at_ms < ?",
            vec![(now - OPS_KEPT_MS).into()],
        )?;
        Response::empty()
    }
}

impl UsageMeter {
    fn sql(&self) -> SqlStorage {
        self.state.storage().sql()
    }

    fn remember_tenant(&self, tenant_id: &str) -> Result<()> {
        self.sql().exec(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('tenant_id', ?)",
            vec![tenant_id.into()],
        )?;
        Ok(())
    }

    fn used(sql: &SqlStorage, period: &str, metric: Metric) -> Result<Option<u64>> {
        let rows: Vec<Used> = sql
            .exec(
                "SELECT used FROM counters WHERE period = ? AND metric = ?",
                vec![period.into(), metric.as_str().into()],
            )?
            .to_array()?;
        Ok(rows.first().map(|r| r.used.max(0) as u64))
    }

    /// A metric's first counter in a period starts from what D1 already holds for it (once:
    /// the check is repeated inside the block, and the insert never replaces a counter).
    /// Answers `Ok(Err(why))` when D1 could not be read, so the object is not reset.
    async fn seed(
        &self,
        tenant_id: &str,
        period: &str,
        metric: Metric,
    ) -> Result<std::result::Result<(), String>> {
        let sql = self.sql();
        if Self::used(&sql, period, metric)?.is_some() {
            return Ok(Ok(()));
        }
        let (Some(query), Some((start, end))) = (meter::seed_sql(metric), meter::bounds(period))
        else {
            sql.exec(
                "INSERT OR IGNORE INTO counters (period, metric, used) VALUES (?, ?, 0)",
                vec![period.into(), metric.as_str().into()],
            )?;
            return Ok(Ok(()));
        };
        let (env, tenant, period) = (self.env.clone(), tenant_id.to_string(), period.to_string());
        self.state
            .block_concurrency_while(async move {
                if Self::used(&sql, &period, metric)?.is_some() {
                    return Ok(Ok(()));
                }
                #[derive(Deserialize)]
                struct N {
                    n: i64,
                }
                let counted = match Db::from_env(&env) {
                    Ok(db) => db
                        .one::<N>(query, &crate::args![tenant, start, end])
                        .await
                        .map(|n| n.map_or(0, |n| n.n)),
                    Err(e) => Err(e),
                };
                Ok(match counted {
                    Ok(n) => {
                        sql.exec(
                            "INSERT OR IGNORE INTO counters (period, metric, used) VALUES (?, ?, ?)",
                            vec![period.as_str().into(), metric.as_str().into(), n.into()],
                        )?;
                        Ok(())
                    }
                    Err(e) => Err(format!("seeding usage from D1 failed: {e}")),
                })
            })
            .await
    }

    /// One synchronous read-modify-write.
    fn consume(&self, c: &Consume) -> Result<Consumed> {
        let sql = self.sql();
        let used = Self::used(&sql, &c.period, c.metric)?.unwrap_or(0);
        let seen: Vec<Op> = sql
            .exec(
                "SELECT amount, refunded FROM ops WHERE op_id = ?",
                vec![c.op_id.as_str().into()],
            )?
            .to_array()?;
        if !seen.is_empty() {
            // Counted before (a redelivery or a retried request): answer as then, count nothing.
            return Ok(Consumed {
                allowed: true,
                used,
                limit: c.limit,
                remaining: c.limit.map(|l| l.saturating_sub(used)),
                crossed: Vec::new(),
            });
        }
        let mut decision = meter::consume(used, c.amount, c.limit);
        if !decision.allowed {
            return Ok(decision);
        }
        sql.exec(
            "INSERT INTO counters (period, metric, used) VALUES (?1, ?2, ?3) \
             ON CONFLICT (period, metric) DO UPDATE SET used = excluded.used",
            vec![
                c.period.as_str().into(),
                c.metric.as_str().into(),
                (decision.used as i64).into(),
            ],
        )?;
        // With parts, the op itself holds nothing (it only marks the consume as done) and each
        // part holds one unit, refundable alone.
        let whole = if c.parts.is_empty() { c.amount } else { 0 };
        let ops = std::iter::once((c.op_id.as_str(), whole))
            .chain(c.parts.iter().map(|p| (p.as_str(), 1)));
        for (op_id, amount) in ops {
            sql.exec(
                "INSERT OR IGNORE INTO ops (op_id, period, metric, amount, at_ms) VALUES (?, ?, ?, ?, ?)",
                vec![
                    op_id.into(),
                    c.period.as_str().into(),
                    c.metric.as_str().into(),
                    (amount as i64).into(),
                    clock::now_ms().into(),
                ],
            )?;
        }
        let now = clock::rfc3339(clock::now_ms());
        let mut fresh = Vec::new();
        for t in decision.crossed {
            let before: Vec<Used> = sql
                .exec(
                    "SELECT 1 AS used FROM alerts WHERE period = ? AND metric = ? AND threshold = ?",
                    vec![
                        c.period.as_str().into(),
                        c.metric.as_str().into(),
                        i64::from(t).into(),
                    ],
                )?
                .to_array()?;
            if before.is_empty() {
                sql.exec(
                    "INSERT INTO alerts (period, metric, threshold, at) VALUES (?, ?, ?, ?)",
                    vec![
                        c.period.as_str().into(),
                        c.metric.as_str().into(),
                        i64::from(t).into(),
                        now.as_str().into(),
                    ],
                )?;
                fresh.push(t);
            }
        }
        decision.crossed = fresh;
        Ok(decision)
    }

    fn refund(&self, r: &Refund) -> Result<Consumed> {
        let sql = self.sql();
        let mut used = Self::used(&sql, &r.period, r.metric)?.unwrap_or(0);
        for op_id in std::iter::once(&r.op_id).chain(&r.more) {
            let ops: Vec<Op> = sql
                .exec(
                    "SELECT amount, refunded FROM ops WHERE op_id = ? AND period = ? AND metric = ?",
                    vec![
                        op_id.as_str().into(),
                        r.period.as_str().into(),
                        r.metric.as_str().into(),
                    ],
                )?
                .to_array()?;
            if let Some(op) = ops.first().filter(|op| op.refunded == 0) {
                used = used.saturating_sub(op.amount.max(0) as u64);
                sql.exec(
                    "UPDATE counters SET used = ? WHERE period = ? AND metric = ?",
                    vec![
                        (used as i64).into(),
                        r.period.as_str().into(),
                        r.metric.as_str().into(),
                    ],
                )?;
                sql.exec(
                    "UPDATE ops SET refunded = 1 WHERE op_id = ?",
                    vec![op_id.as_str().into()],
                )?;
            }
        }
        Ok(Consumed {
            allowed: true,
            used,
            limit: None,
            remaining: None,
            crossed: Vec::new(),
        })
    }

    fn report(&self, r: &ReportRequest) -> Result<Report> {
        let sql = self.sql();
        let rows: Vec<Row> = sql
            .exec(
                "SELECT period, metric, used FROM counters WHERE period = ?",
                vec![r.period.as_str().into()],
            )?
            .to_array()?;
        let alerts: Vec<AlertRow> = sql
            .exec(
                "SELECT metric, threshold, at FROM alerts WHERE period = ? ORDER BY at, threshold",
                vec![r.period.as_str().into()],
            )?
            .to_array()?;
        Ok(Report {
            counters: rows
                .into_iter()
                .filter_map(|row| {
                    Some(Counter {
                        metric: Metric::parse(&row.metric)?,
                        used: row.used.max(0) as u64,
                    })
                })
                .collect(),
            alerts: alerts
                .into_iter()
                .filter_map(|a| {
                    Some(Alert {
                        metric: Metric::parse(&a.metric)?,
                        threshold: u8::try_from(a.threshold).ok()?,
                        at: a.at,
                    })
                })
                .collect(),
        })
    }

    /// Sets the flush alarm unless one is pending (noted in `meta`, so a request does not
    /// wait on reading the alarm back).
    async fn schedule_flush(&self) -> Result<()> {
        let sql = self.sql();
        let pending: Vec<Value> = sql
            .exec("SELECT value FROM meta WHERE key = 'alarm'", None)?
            .to_array()?;
        if pending.is_empty() {
            sql.exec(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('alarm', 'set')",
                None,
            )?;
            self.state.storage().set_alarm(FLUSH_AFTER_MS).await?;
        }
        Ok(())
    }

    /// Copies the counters that changed since the last flush into D1 `usage_counters`.
    async fn flush(&self, sql: &SqlStorage) -> crate::platform::error::Result<()> {
        let tenant: Vec<Value> = sql
            .exec("SELECT value FROM meta WHERE key = 'tenant_id'", None)?
            .to_array()?;
        let Some(tenant) = tenant.into_iter().next().map(|v| v.value) else {
            return Ok(());
        };
        let rows: Vec<Row> = sql
            .exec(
                "SELECT period, metric, used FROM counters WHERE used != flushed",
                None,
            )?
            .to_array()?;
        if rows.is_empty() {
            return Ok(());
        }
        let db = Db::from_env(&self.env)?;
        let now = clock::rfc3339(clock::now_ms());
        let mut stmts = Vec::with_capacity(rows.len());
        for row in &rows {
            stmts.push(db.stmt(
                "INSERT INTO usage_counters (tenant_id, period, metric, used, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (tenant_id, period, metric) \
                 DO UPDATE SET used = excluded.used, updated_at = excluded.updated_at",
                &crate::args![
                    tenant.as_str(),
                    row.period.as_str(),
                    row.metric.as_str(),
                    row.used,
                    now.as_str()
                ],
            )?);
        }
        db.batch(stmts).await?;
        for row in rows {
            sql.exec(
                "UPDATE counters SET flushed = ? WHERE period = ? AND metric = ?",
                vec![
                    row.used.into(),
                    row.period.as_str().into(),
                    row.metric.as_str().into(),
                ],
            )?;
        }
        Ok(())
    }
}

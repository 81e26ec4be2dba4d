//! Runs one step of an execution for one queue message. Deliveries are at least once, so each
//! message first decides (`plan`) whether its step is still to be done, then claims it with a
//! lease in D1 so concurrent duplicates cannot both run it, and commits the result with a
//! guarded update that a cancel or timeout in the meantime makes a no-op (the moves themselves
//! are `execution`'s).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};
use worker::{Env, Headers, Method, Request, RequestInit};

use super::config::{rendered_url, Step, WorkflowConfig, DEFAULT_HTTP_TIMEOUT_SECS};
use super::execution::{self, ExecutionStatus, Reason};
use super::model::MAX_ATTEMPTS;
use super::template::{self, Scope};
use crate::args;
use crate::platform::clock;
use crate::platform::config::Config;
use crate::platform::db::Db;
use crate::platform::egress::{backoff_secs, fetch_text};
use crate::platform::error::{AppError, Result};
use crate::platform::lease::{self, Holder, Lease};
use crate::platform::outbox::{self, Staged};
use crate::platform::queue::{DeadLetter, Job, Outcome};
use crate::platform::redact::Redactor;
use crate::settings::secrets;

/// Whether a delivery of step `step` should run it.
#[derive(Debug, PartialEq)]
pub enum Plan {
    Run,
    Skip(&'static str),
}

pub struct Snapshot<'a> {
    pub status: ExecutionStatus,
    pub next_step: i64,
    pub lease: Option<Lease<'a>>,
}

pub fn plan(s: &Snapshot, step: i64, holder: &Holder, now_ms: i64) -> Plan {
    if !s.status.is_live() {
        return Plan::Skip("the execution has ended");
    }
    if step < s.next_step {
        return Plan::Skip("the step is already done (redelivery)");
    }
    if step > s.next_step {
        return Plan::Skip("an earlier step is not done yet");
    }
    if lease::may_take(s.lease, holder, now_ms) {
        Plan::Run
    } else {
        Plan::Skip("another delivery is running this step")
    }
}

pub fn progress(done: i64, total: i64) -> i64 {
    if total <= 0 {
        100
    } else {
        (done * 100 / total).clamp(0, 100)
    }
}

#[derive(Deserialize)]
struct RunRow {
    tenant_id: String,
    status: ExecutionStatus,
    config: String,
    step_count: i64,
    next_step: i64,
    step_outputs: String,
    input_data: String,
    lease_id: Option<String>,
    lease_attempt: Option<i64>,
    lease_until: Option<i64>,
    step_attempts: i64,
}

pub async fn run_step(
    env: &Env,
    cfg: &Config,
    holder: &Holder,
    execution_id: &str,
    step: i64,
) -> Result<Outcome> {
    let message_id = holder.message_id.as_str();
    let db = Db::from_env(env)?;
    let Some(row) = db
        .one::<RunRow>(
            "SELECT e.tenant_id, e.status, e.config, e.step_count, e.next_step, e.step_outputs, \
             e.input_data, e.lease_id, e.lease_attempt, e.lease_until, \
             (SELECT COUNT(*) FROM step_runs s WHERE s.execution_id = e.id AND s.step_index = ?2) \
             AS step_attempts FROM executions e WHERE e.id = ?1",
            &args![execution_id, step],
        )
        .await?
    else {
        log(execution_id, step, "skipped", "no such execution");
        return Ok(Outcome::Ack);
    };
    let now_ms = clock::now_ms();
    let snapshot = Snapshot {
        status: row.status,
        next_step: row.next_step,
        lease: Lease::from_row(row.lease_id.as_deref(), row.lease_attempt, row.lease_until),
    };
    if let Plan::Skip(why) = plan(&snapshot, step, holder, now_ms) {
        log(execution_id, step, "skipped", why);
        return Ok(Outcome::Ack);
    }
    let config: WorkflowConfig = serde_json::from_str(&row.config)
        .map_err(|e| AppError::internal(format!("execution {execution_id} config: {e}")))?;
    let Some(def) = config.steps.get(step as usize) else {
        log(execution_id, step, "skipped", "no such step");
        return Ok(Outcome::Ack);
    };
    let lease_secs = match def {
        Step::Http {
            timeout_seconds, ..
        } => i64::from(timeout_seconds.unwrap_or(DEFAULT_HTTP_TIMEOUT_SECS)) + 30,
        _ => 60,
    };
    let now = clock::rfc3339(now_ms);
    let claimed = execution::claim(
        &db,
        execution_id,
        step,
        holder,
        &now,
        now_ms,
        now_ms + lease_secs * 1000,
    )?
    .run(&db)
    .await?;
    if !claimed {
        log(
            execution_id,
            step,
            "skipped",
            "lost the claim to another delivery",
        );
        return Ok(Outcome::Ack);
    }
    let attempt = row.step_attempts + 1;
    let input: Value = serde_json::from_str(&row.input_data).unwrap_or(Value::Null);
    let mut outputs: Map<String, Value> =
        serde_json::from_str(&row.step_outputs).unwrap_or_default();

    let result = run(cfg, &db, &row.tenant_id, def, &input, &outputs).await;
    let ended_ms = clock::now_ms();
    let ended = clock::rfc3339(ended_ms);
    let record = db.stmt(
        "INSERT OR IGNORE INTO step_runs (execution_id, step_index, attempt, name, kind, status, \
         error, started_at, duration_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        &args![
            execution_id,
            step,
            attempt,
            def.name(),
            def.kind(),
            if result.is_ok() {
                "succeeded"
            } else {
                "failed"
            },
            result.as_ref().err().cloned(),
            now.as_str(),
            ended_ms - now_ms
        ],
    )?;
    match result {
        Ok(done) => {
            let last = step + 1 >= row.step_count;
            outputs.insert(def.name().to_string(), done.output.clone());
            let outputs = Value::Object(outputs).to_string();
            let update = if last {
                let output = done.output.to_string();
                execution::complete(
                    &db,
                    execution_id,
                    step,
                    message_id,
                    &outputs,
                    &output,
                    &ended,
                )?
            } else {
                let progress = progress(step + 1, row.step_count);
                execution::step_done(
                    &db,
                    execution_id,
                    step,
                    message_id,
                    progress,
                    &outputs,
                    &ended,
                )?
            };
            // The next message (the next step, or the completion callback) is an outbox row
            // of the same commit: it exists if and only if the step's result does.
            let execution_id = execution_id.to_string();
            let (next, delay) = if last {
                (Job::callback(&execution_id, "execution.completed"), 0)
            } else {
                let step = step + 1;
                let job = Job::Step {
                    execution_id: execution_id.clone(),
                    step,
                };
                (job, done.delay_next_secs)
            };
            let next = Staged::job(&next, delay, ended_ms)?;
            if !update
                .run_then(&db, vec![record], vec![next.insert_if_applied(&db)?])
                .await?
            {
                log(
                    &execution_id,
                    step,
                    "discarded",
                    "the execution ended while the step ran",
                );
                return Ok(Outcome::Ack);
            }
            log(&execution_id, step, "succeeded", def.name());
            outbox::send_now(env, cfg, &db, &[next]).await;
            Ok(Outcome::Ack)
        }
        Err(error) => {
            let final_attempt = attempt >= MAX_ATTEMPTS;
            let reason = Reason::Step {
                name: def.name(),
                error: &error,
            };
            let message = reason.to_string();
            let update = if final_attempt {
                execution::attempts_exhausted(&db, execution_id, step, message_id, &reason, &ended)?
            } else {
                execution::step_failed(&db, execution_id, step, message_id, &reason, &ended)?
            };
            // The last attempt's dead letter and failure callback are committed with it.
            let ends = if final_attempt {
                let letter = DeadLetter {
                    job: Job::Step {
                        execution_id: execution_id.to_string(),
                        step,
                    },
                    error: message.clone(),
                    attempts: attempt,
                };
                vec![
                    Staged::dead_letter(&letter, ended_ms)?,
                    Staged::job(
                        &Job::callback(execution_id, "execution.failed"),
                        0,
                        ended_ms,
                    )?,
                ]
            } else {
                vec![]
            };
            let rows = ends
                .iter()
                .map(|s| s.insert_if_applied(&db))
                .collect::<Result<Vec<_>>>()?;
            let applied = update.run_then(&db, vec![record], rows).await?;
            log(execution_id, step, "failed", &message);
            if !applied {
                return Ok(Outcome::Ack);
            }
            if !final_attempt {
                return Ok(Outcome::Retry(backoff_secs(attempt)));
            }
            outbox::send_now(env, cfg, &db, &ends).await;
            Ok(Outcome::Ack)
        }
    }
}

fn log(execution_id: &str, step: i64, event: &str, detail: &str) {
    worker::console_log!(
        "{}",
        serde_json::json!({"level": "info", "event": format!("step.{event}"),
                           "execution_id": execution_id, "step": step, "detail": detail})
    );
}

struct Done {
    output: Value,
    /// A `delay` step delays the next step's message.
    delay_next_secs: u32,
}

async fn run(
    cfg: &Config,
    db: &Db,
    tenant_id: &str,
    def: &Step,
    input: &Value,
    outputs: &Map<String, Value>,
) -> std::result::Result<Done, String> {
    let no_secrets = BTreeMap::new();
    match def {
        Step::Delay { seconds, .. } => Ok(Done {
            output: serde_json::json!({"seconds": seconds}),
            delay_next_secs: *seconds,
        }),
        Step::Transform { template, .. } => {
            let scope = Scope {
                input,
                steps: outputs,
                secrets: &no_secrets,
            };
            Ok(Done {
                output: template::render(template, &scope)?,
                delay_next_secs: 0,
            })
        }
        Step::Http {
            method,
            url,
            headers,
            body,
            timeout_seconds,
            output,
            ..
        } => {
            let names = WorkflowConfig::secrets_of(def);
            let secrets = secrets::load(db, &cfg.encryption_key, tenant_id, &names)
                .await
                .map_err(|e| format!("could not read secrets: {e}"))?;
            let scope = Scope {
                input,
                steps: outputs,
                secrets: &secrets,
            };
            // Secret values never reach what is stored: the output, errors (and so the
            // execution, its callback and the dead letter) show `[redacted]` instead.
            let redactor = Redactor::new(secrets.values().map(String::as_str));
            let response = call(
                cfg,
                url,
                method,
                headers,
                body,
                *timeout_seconds,
                &scope,
                &redactor,
            )
            .await
            .map_err(|e| redactor.text(&e))?;
            let output = match output {
                None => response,
                Some(map) => Value::Object(
                    map.iter()
                        .map(|(k, path)| {
                            let path: Vec<String> = path.split('.').map(str::to_string).collect();
                            (k.clone(), template::lookup(&response, &path).clone())
                        })
                        .collect(),
                ),
            };
            Ok(Done {
                output,
                delay_next_secs: 0,
            })
        }
    }
}

/// Makes an `http` step's request and returns its answer as JSON (`{"text": …}` when not
/// JSON), redacted. The URL keeps the origin the step wrote out and must pass the egress
/// policy, so the request (and any secret in it) goes only to the host the step names.
#[allow(clippy::too_many_arguments)]
async fn call(
    cfg: &Config,
    url: &str,
    method: &Option<String>,
    headers: &BTreeMap<String, String>,
    body: &Option<Value>,
    timeout_seconds: Option<u32>,
    scope: &Scope<'_>,
    redactor: &Redactor,
) -> std::result::Result<Value, String> {
    let target = template::render_text(url, scope)?;
    let target =
        rendered_url(url, &target, &cfg.egress).map_err(|why| format!("the url `{url}` {why}"))?;
    let method = Step::method(method, body);
    let mut init = RequestInit::new();
    init.with_method(Method::from(method.clone()));
    let h = Headers::new();
    for (k, v) in headers {
        h.set(k, &template::render_text(v, scope)?)
            .map_err(|e| format!("header {k}: {e}"))?;
    }
    if let Some(b) = body {
        let rendered = template::render(b, scope)?;
        if !headers
            .keys()
            .any(|k| k.eq_ignore_ascii_case("content-type"))
        {
            let _ = h.set("Content-Type", "application/json");
        }
        init.with_body(Some(rendered.to_string().into()));
    }
    init.with_headers(h);
    let request = Request::new_with_init(target.as_str(), &init).map_err(|e| e.to_string())?;
    let secs = timeout_seconds.unwrap_or(DEFAULT_HTTP_TIMEOUT_SECS);
    let (status, text) = fetch_text(&cfg.egress, request, Duration::from_secs(secs.into()))
        .await
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let response = match serde_json::from_str::<Value>(&text) {
        Ok(v) => redactor.value(v),
        Err(_) => serde_json::json!({ "text": redactor.text(&text) }),
    };
    if !(200..300).contains(&status) {
        // Redacted before it is cut short, so no part of a secret is left at the end.
        let snippet: String = redactor.json_text(&text).chars().take(200).collect();
        return Err(format!("{method} {url} answered {status}: {snippet}"));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap<'a>(status: &str, next: i64, lease: Option<(&'a str, i64)>) -> Snapshot<'a> {
        let status = ExecutionStatus::parse(status).unwrap();
        Snapshot {
            status,
            next_step: next,
            lease: lease.map(|(m, until_ms)| Lease {
                message_id: m,
                attempt: 1,
                until_ms,
            }),
        }
    }

    fn m(message_id: &str, attempt: u32) -> Holder {
        Holder {
            message_id: message_id.into(),
            attempt,
        }
    }

    #[test]
    fn a_redelivered_or_stale_message_is_skipped() {
        assert_eq!(
            plan(&snap("processing", 2, None), 1, &m("m", 1), 0),
            Plan::Skip("the step is already done (redelivery)")
        );
        assert!(matches!(
            plan(&snap("completed", 3, None), 2, &m("m", 1), 0),
            Plan::Skip(_)
        ));
        assert!(matches!(
            plan(&snap("cancelled", 0, None), 0, &m("m", 1), 0),
            Plan::Skip(_)
        ));
        assert!(matches!(
            plan(&snap("pending", 0, None), 1, &m("m", 1), 0),
            Plan::Skip(_)
        ));
        assert_eq!(plan(&snap("pending", 0, None), 0, &m("m", 1), 0), Plan::Run);
    }

    #[test]
    fn a_live_lease_of_another_delivery_blocks_but_an_expired_or_own_dead_one_does_not() {
        let leased = snap("processing", 1, Some(("other", 1_000)));
        assert!(matches!(plan(&leased, 1, &m("m", 1), 999), Plan::Skip(_)));
        assert_eq!(plan(&leased, 1, &m("m", 1), 1_001), Plan::Run);
        // The same message again: a later attempt takes over, a duplicate of the live one not.
        assert_eq!(plan(&leased, 1, &m("other", 2), 999), Plan::Run);
        assert!(matches!(
            plan(&leased, 1, &m("other", 1), 999),
            Plan::Skip(_)
        ));
    }

    #[test]
    fn progress_is_a_percentage() {
        assert_eq!(
            (progress(1, 3), progress(2, 3), progress(3, 3)),
            (33, 66, 100)
        );
        assert_eq!(progress(0, 0), 100);
    }
}

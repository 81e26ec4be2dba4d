//! Calling providers the way an LLM gateway does: the chain (the provider asked for, then up
//! to three fallbacks) is tried in order; a provider that answers 429, 5xx, an auth failure,
//! times out (`PROVIDER_TIMEOUT_SECS`) or gives an answer the output guard rejects hands over
//! to the next; five failures in a row put a provider in a 60 s cooldown (kept on its D1 row)
//! during which it is skipped. Every try is listed in `attempts`. Every call goes through the
//! egress policy (`egress::fetch_text`), which also checks a tenant's base URL as it is used.
//!
//! The decision after each try is the pure `next_step`; this file's I/O is the calls and the
//! failure counters.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use worker::{Headers, Method, Request, RequestInit};

use super::adapters::{self, Answer, Prompt, ProviderUsage};
use super::guard;
use super::local;
use super::model::{Level, ProviderName, Strategy, Wire};
use super::prompts;
use crate::args;
use crate::platform::clock;
use crate::platform::config::Config;
use crate::platform::db::Db;
use crate::platform::egress;
use crate::platform::error::AppError;

/// Failures in a row after which a provider is skipped for `COOLDOWN_SECS`.
pub const FAILURES_BEFORE_COOLDOWN: i64 = 5;
pub const COOLDOWN_SECS: i64 = 60;

/// What a call to one provider needs, resolved for a tenant.
#[derive(Clone)]
pub struct Target {
    pub name: ProviderName,
    pub base: String,
    pub key: String,
    pub model: String,
    /// The tenant has a row (failures and cooldowns are recorded on it).
    pub tracked: bool,
    pub cooldown_until: Option<String>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Target")
            .field("name", &self.name)
            .field("base", &self.base)
            .field("model", &self.model)
            .finish()
    }
}

impl Target {
    pub fn local() -> Target {
        Target {
            name: ProviderName::Local,
            base: String::new(),
            key: String::new(),
            model: "local".into(),
            tracked: false,
            cooldown_until: None,
        }
    }
}

/// The outcome of `POST /providers/:name/test`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProviderTest {
    pub ok: bool,
    pub provider: ProviderName,
    pub model: String,
    pub duration_ms: u64,
    /// The provider's HTTP status, when it answered.
    pub status: Option<u16>,
    /// Why it failed (the provider's message, any key removed).
    pub error: Option<String>,
    pub provider_usage: Option<ProviderUsage>,
}

/// One provider tried for a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Attempt {
    pub provider: ProviderName,
    pub model: String,
    pub outcome: AttemptOutcome,
    /// The provider's HTTP status, when it answered.
    pub status: Option<u16>,
    /// Why this try did not give the result (any key removed).
    pub error: Option<String>,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// Gave the result.
    Succeeded,
    /// Answered, but the output guard refused the answer.
    Rejected,
    /// Answered with an error, or could not be reached.
    Failed,
    /// No answer within `PROVIDER_TIMEOUT_SECS`.
    TimedOut,
    /// In its cooldown after five failures in a row.
    Skipped,
}

/// The text to optimise and how.
#[derive(Debug, Clone, Copy)]
pub struct Job<'a> {
    pub text: &'a str,
    pub strategy: Strategy,
    pub level: Level,
}

/// The result of a chain: the optimised text (or the original, with a `note`, when every
/// answer was rejected).
#[derive(Debug, Clone)]
pub struct Optimised {
    pub provider: ProviderName,
    pub model: String,
    pub text: String,
    pub usage: Option<ProviderUsage>,
    pub attempts: Vec<Attempt>,
    pub note: Option<String>,
}

/// No provider gave an answer.
#[derive(Debug, Clone)]
pub struct AllFailed {
    pub attempts: Vec<Attempt>,
}

impl AllFailed {
    /// Every provider that was called timed out (504), rather than failing otherwise (502).
    pub fn timed_out(&self) -> bool {
        let called: Vec<&Attempt> = self
            .attempts
            .iter()
            .filter(|a| a.outcome != AttemptOutcome::Skipped)
            .collect();
        !called.is_empty() && called.iter().all(|a| a.outcome == AttemptOutcome::TimedOut)
    }

    /// The last answer's status (what the caller shows as `provider_status`).
    pub fn provider_status(&self) -> Option<u16> {
        self.attempts.iter().rev().find_map(|a| a.status)
    }

    /// Worth trying again later (a batch item): a timeout, a rate limit, a 5xx, a cooldown or
    /// an unreachable provider; not a refusal like 400 or a bad key.
    pub fn transient(&self) -> bool {
        self.attempts.iter().any(|a| match a.outcome {
            AttemptOutcome::TimedOut | AttemptOutcome::Skipped => true,
            AttemptOutcome::Failed => a.status.is_none_or(|s| s == 408 || s == 429 || s >= 500),
            _ => false,
        })
    }

    pub fn summary(&self) -> String {
        self.attempts
            .iter()
            .map(|a| {
                format!(
                    "{}: {}",
                    a.provider.as_str(),
                    a.error.as_deref().unwrap_or("failed")
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// 502 `upstream_error` (504 `upstream_timeout`) with `provider_status` and `attempts`.
    pub fn into_error(self) -> AppError {
        let (status, code, detail) = if self.timed_out() {
            (
                504,
                "upstream_timeout",
                "No provider answered in time.".to_string(),
            )
        } else {
            (
                502,
                "upstream_error",
                format!("No provider gave a result ({}).", self.summary()),
            )
        };
        AppError::refused(status, code, detail)
            .with("provider_status", self.provider_status())
            .with(
                "attempts",
                serde_json::to_value(&self.attempts).unwrap_or_default(),
            )
    }
}

/// What to do after a provider's answer.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// The result.
    Done(String),
    /// Try the next provider; `counts` says whether it was the provider's failure (counted
    /// towards its cooldown) rather than a rejected answer.
    Next {
        outcome: AttemptOutcome,
        error: String,
        counts: bool,
    },
    /// A refusal the next provider would not fix either (400, 404, …): stop the chain.
    Stop(String),
}

/// The decision after one call: `answer` is the parsed reply (or why there is none), `timed_out`
/// whether the call hit the deadline.
pub fn next_step(job: &Job, answer: Result<Answer, adapters::Failure>, timed_out: bool) -> Step {
    if timed_out {
        return Step::Next {
            outcome: AttemptOutcome::TimedOut,
            error: "no answer in time".into(),
            counts: true,
        };
    }
    match answer {
        Ok(a) => match guard::check(job.text, &a.text, job.strategy) {
            Ok(text) => Step::Done(text),
            Err(r) => Step::Next {
                outcome: AttemptOutcome::Rejected,
                error: r.reason(),
                counts: false,
            },
        },
        Err(f) if f.falls_back() => Step::Next {
            outcome: AttemptOutcome::Failed,
            error: f.message().to_string(),
            counts: true,
        },
        Err(f) => Step::Stop(f.message().to_string()),
    }
}

/// Whether a cooldown recorded on the row is still running at `now`.
pub fn cooling(cooldown_until: Option<&str>, now: &str) -> bool {
    cooldown_until.is_some_and(|until| until > now)
}

/// Tries `chain` in order for `job`.
pub async fn run(
    cfg: &Config,
    db: &Db,
    tenant_id: &str,
    chain: &[Target],
    job: Job<'_>,
) -> Result<Optimised, AllFailed> {
    let mut attempts = Vec::new();
    let mut rejected: Option<(ProviderName, String, String, Option<ProviderUsage>)> = None;
    for target in chain {
        if target.name.wire() == Wire::Local {
            attempts.push(Attempt {
                provider: target.name,
                model: target.model.clone(),
                outcome: AttemptOutcome::Succeeded,
                status: None,
                error: None,
                duration_ms: 0,
            });
            return Ok(Optimised {
                provider: target.name,
                model: target.model.clone(),
                text: local::optimise(job.text, job.strategy, job.level),
                usage: None,
                attempts,
                note: None,
            });
        }
        let now = clock::rfc3339(clock::now_ms());
        if cooling(target.cooldown_until.as_deref(), &now) {
            attempts.push(Attempt {
                provider: target.name,
                model: target.model.clone(),
                outcome: AttemptOutcome::Skipped,
                status: None,
                error: Some(format!(
                    "skipped: {FAILURES_BEFORE_COOLDOWN} failures in a row, cooling down until {}",
                    target.cooldown_until.as_deref().unwrap_or_default()
                )),
                duration_ms: 0,
            });
            continue;
        }
        let prompt = Prompt {
            system: prompts::system(job.strategy, job.level),
            user: job.text,
            max_tokens: prompts::MAX_OUTPUT_TOKENS,
        };
        let started = clock::now_ms();
        let (status, answer, timed_out) = call(cfg, target, &prompt).await;
        let duration_ms = (clock::now_ms() - started).max(0) as u64;
        let usage = answer.as_ref().ok().and_then(|a| a.usage);
        let mut attempt = Attempt {
            provider: target.name,
            model: target.model.clone(),
            outcome: AttemptOutcome::Succeeded,
            status,
            error: None,
            duration_ms,
        };
        match next_step(&job, answer, timed_out) {
            Step::Done(text) => {
                attempts.push(attempt);
                if target.tracked {
                    recovered(db, tenant_id, target.name).await;
                }
                return Ok(Optimised {
                    provider: target.name,
                    model: target.model.clone(),
                    text,
                    usage,
                    attempts,
                    note: None,
                });
            }
            Step::Next {
                outcome,
                error,
                counts,
            } => {
                if outcome == AttemptOutcome::Rejected {
                    rejected = Some((target.name, target.model.clone(), error.clone(), usage));
                }
                if counts && target.tracked {
                    failed(db, tenant_id, target.name, &error).await;
                }
                attempt.outcome = outcome;
                attempt.error = Some(error);
                attempts.push(attempt);
            }
            Step::Stop(error) => {
                attempt.outcome = AttemptOutcome::Failed;
                attempt.error = Some(error);
                attempts.push(attempt);
                break;
            }
        }
    }
    match rejected {
        // Providers answered but every answer was refused: the original stands.
        Some((provider, model, why, usage)) => Ok(Optimised {
            provider,
            model,
            text: job.text.to_string(),
            usage,
            attempts,
            note: Some(format!("The original text was kept: {why}.")),
        }),
        None => Err(AllFailed { attempts }),
    }
}

/// One HTTP call: the status (if it answered), the parsed answer, and whether it timed out.
async fn call(
    cfg: &Config,
    target: &Target,
    prompt: &Prompt<'_>,
) -> (Option<u16>, Result<Answer, adapters::Failure>, bool) {
    let c = adapters::build(
        target.name.wire(),
        &target.base,
        &target.model,
        &target.key,
        prompt,
    );
    let request = (|| {
        let headers = Headers::new();
        for (k, v) in &c.headers {
            headers.set(k, v)?;
        }
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_headers(headers)
            .with_body(Some(c.body.clone().into()));
        Request::new_with_init(&c.url, &init)
    })();
    let request = match request {
        Ok(r) => r,
        Err(e) => {
            let why = adapters::scrub(&format!("the request could not be built: {e}"), &target.key);
            return (None, Err(adapters::Failure::Malformed(why)), false);
        }
    };
    let timeout = Duration::from_secs(cfg.llm.timeout_secs.max(1));
    match egress::fetch_text(&cfg.egress, request, timeout).await {
        Ok((status, body)) => (
            Some(status),
            adapters::parse(target.name.wire(), status, &body, &target.key),
            false,
        ),
        Err(e) => {
            let timed_out = egress::timed_out(&e);
            // Unreachable (or refused by the egress policy): a failure like a 5xx, so the next
            // provider is tried.
            let failure = adapters::Failure::Malformed(adapters::scrub(&e, &target.key));
            (None, Err(failure), timed_out)
        }
    }
}

/// Counts a failure; the fifth in a row starts a cooldown.
async fn failed(db: &Db, tenant_id: &str, name: ProviderName, error: &str) {
    let now_ms = clock::now_ms();
    let until = clock::rfc3339(now_ms + COOLDOWN_SECS * 1000);
    let result = db
        .run(
            "UPDATE provider_configs SET failures = failures + 1, last_error = ?3, \
             cooldown_until = CASE WHEN failures + 1 >= ?4 THEN ?5 ELSE cooldown_until END \
             WHERE tenant_id = ?1 AND name = ?2",
            &args![
                tenant_id,
                name.as_str(),
                error,
                FAILURES_BEFORE_COOLDOWN,
                until
            ],
        )
        .await;
    if let Err(e) = result {
        worker::console_error!("recording a provider failure: {e}");
    }
}

/// A success ends a run of failures (one write, only when there was one).
async fn recovered(db: &Db, tenant_id: &str, name: ProviderName) {
    let result = db
        .run(
            "UPDATE provider_configs SET failures = 0, cooldown_until = NULL \
             WHERE tenant_id = ?1 AND name = ?2 AND (failures > 0 OR cooldown_until IS NOT NULL)",
            &args![tenant_id, name.as_str()],
        )
        .await;
    if let Err(e) = result {
        worker::console_error!("resetting a provider's failures: {e}");
    }
}

/// `POST /providers/:name/test`: one tiny call, outside the meter and the cooldown.
pub async fn probe(cfg: &Config, target: &Target) -> ProviderTest {
    let mut result = ProviderTest {
        ok: true,
        provider: target.name,
        model: target.model.clone(),
        duration_ms: 0,
        status: None,
        error: None,
        provider_usage: None,
    };
    if target.name.wire() == Wire::Local {
        return result;
    }
    let prompt = Prompt {
        system: "You are a connectivity check. Answer with the single word OK.",
        user: "ping",
        max_tokens: 8,
    };
    let started = clock::now_ms();
    let (status, answer, timed_out) = call(cfg, target, &prompt).await;
    result.duration_ms = (clock::now_ms() - started).max(0) as u64;
    result.status = status;
    match answer {
        Ok(a) => result.provider_usage = a.usage,
        Err(f) => {
            result.ok = false;
            result.error = Some(if timed_out {
                "no answer in time".into()
            } else {
                f.message().to_string()
            });
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(text: &str) -> Job<'_> {
        Job {
            text,
            strategy: Strategy::Compress,
            level: Level::DEFAULT,
        }
    }

    fn answer(text: &str) -> Result<Answer, adapters::Failure> {
        Ok(Answer {
            text: text.into(),
            usage: None,
        })
    }

    #[test]
    fn a_shorter_answer_that_keeps_the_placeholders_is_the_result() {
        let j = job("Please, in order to help {{name}}, write a very short reply to $USER now.");
        assert_eq!(
            next_step(&j, answer("Help {{name}}: short reply to $USER."), false),
            Step::Done("Help {{name}}: short reply to $USER.".into())
        );
    }

    #[test]
    fn a_dropped_placeholder_hands_over_without_counting_against_the_provider() {
        let j = job("Please, in order to help {{name}}, write a very short reply now.");
        match next_step(&j, answer("Write a short reply."), false) {
            Step::Next {
                outcome, counts, ..
            } => {
                assert_eq!(outcome, AttemptOutcome::Rejected);
                assert!(!counts);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rate_limits_server_errors_and_timeouts_count_and_hand_over() {
        let j = job("Summarise the text below in two sentences, please.");
        for status in [401, 429, 500, 503] {
            let f = adapters::Failure::Status {
                status,
                message: "nope".into(),
            };
            assert!(matches!(
                next_step(&j, Err(f), false),
                Step::Next {
                    outcome: AttemptOutcome::Failed,
                    counts: true,
                    ..
                }
            ));
        }
        assert!(matches!(
            next_step(&j, answer("x"), true),
            Step::Next {
                outcome: AttemptOutcome::TimedOut,
                counts: true,
                ..
            }
        ));
        let bad_request = adapters::Failure::Status {
            status: 400,
            message: "bad model".into(),
        };
        assert_eq!(
            next_step(&j, Err(bad_request), false),
            Step::Stop("bad model".into())
        );
    }

    #[test]
    fn cooldowns_run_until_their_time() {
        assert!(cooling(
            Some("2026-12-01T10:01:00Z"),
            "2026-12-01T10:00:30Z"
        ));
        assert!(!cooling(
            Some("2026-12-01T10:01:00Z"),
            "2026-12-01T10:01:00Z"
        ));
        assert!(!cooling(None, "2026-12-01T10:00:00Z"));
    }

    fn attempt(outcome: AttemptOutcome, status: Option<u16>) -> Attempt {
        Attempt {
            provider: ProviderName::OpenAi,
            model: "m".into(),
            outcome,
            status,
            error: Some("e".into()),
            duration_ms: 1,
        }
    }

    #[test]
    fn all_timeouts_are_504_anything_else_502_with_the_last_status() {
        let t = AllFailed {
            attempts: vec![
                attempt(AttemptOutcome::Skipped, None),
                attempt(AttemptOutcome::TimedOut, None),
            ],
        };
        assert!(t.timed_out());
        assert_eq!(t.clone().into_error().status(), 504);
        let f = AllFailed {
            attempts: vec![
                attempt(AttemptOutcome::Failed, Some(429)),
                attempt(AttemptOutcome::TimedOut, None),
            ],
        };
        assert!(!f.timed_out());
        assert_eq!(f.provider_status(), Some(429));
        let e = f.clone().into_error();
        assert_eq!((e.status(), e.code()), (502, "upstream_error"));
        assert!(f.transient());
        let refused = AllFailed {
            attempts: vec![attempt(AttemptOutcome::Failed, Some(400))],
        };
        assert!(!refused.transient());
    }
}

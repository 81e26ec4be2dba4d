//! Each LLM provider's request and answer shapes, as pure functions: `build` makes the HTTP call
//! (URL, headers, JSON body) and `parse` reads the provider's answer or error. The network is
//! the caller's; nothing here knows about workers, so it is tested natively on the real shapes.
//!
//! Keys never leave this module in text meant for people: every message `parse` returns goes
//! through `scrub`, and `Call`'s `Debug` hides header values.

use super::model::{ProviderName, Wire};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

/// What to send: the fixed system prompt, the text to optimise and the answer's token budget.
pub struct Prompt<'a> {
    pub system: &'a str,
    pub user: &'a str,
    pub max_tokens: u32,
}

/// One HTTP request, always a `POST` with a JSON body.
#[derive(Clone, PartialEq)]
pub struct Call {
    pub url: String,
    /// Always includes `("Content-Type", "application/json")`; the others carry the key.
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

/// Written by hand so that a `{:?}` in a log can never print a key: only the content type and
/// Anthropic's version header are shown.
impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(name, value)| match *name {
                "Content-Type" | "anthropic-version" => (*name, value.as_str()),
                _ => (*name, "[redacted]"),
            })
            .collect();
        f.debug_struct("Call")
            .field("url", &self.url)
            .field("headers", &headers)
            .field("body", &self.body)
            .finish()
    }
}

/// The tokens the provider says it counted (it bills by these, not by our estimate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
pub struct ProviderUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// A usable answer: the text (trimmed, never empty) and the provider's own token counts when it
/// gave them.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub text: String,
    pub usage: Option<ProviderUsage>,
}

/// Why a call gave no answer. Messages are scrubbed of keys and at most 300 characters.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// The provider answered a non-2xx status, with its own error message when it gave one.
    Status { status: u16, message: String },
    /// A 2xx answer we cannot use (not JSON, no text, cut off, blocked).
    Malformed(String),
}

impl Failure {
    pub fn status(&self) -> Option<u16> {
        match self {
            Failure::Status { status, .. } => Some(*status),
            Failure::Malformed(_) => None,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Failure::Status { message, .. } | Failure::Malformed(message) => message,
        }
    }

    /// Whether the next fallback should be tried: 401, 403, 408, 429, 5xx and malformed answers
    /// are this provider's problem (key, quota, outage), so another may succeed; any other 4xx
    /// says the request itself was refused, so it is not retried elsewhere. Statuses that are
    /// neither 4xx nor 5xx (a 3xx from a wrong base URL) are not about the request either, so
    /// they fall back too.
    pub fn falls_back(&self) -> bool {
        match self {
            Failure::Malformed(_) => true,
            Failure::Status { status, .. } => {
                matches!(status, 401 | 403 | 408 | 429) || !(400..500).contains(status)
            }
        }
    }
}

/// The model used when a provider is configured without one. openai-compatible has none (its
/// model must be set); local's is a label.
pub const fn default_model(name: ProviderName) -> &'static str {
    match name {
        ProviderName::OpenAi => "gpt-4o-mini",
        ProviderName::Anthropic => "claude-3-5-haiku-latest",
        ProviderName::DeepSeek => "deepseek-chat",
        ProviderName::Gemini => "gemini-1.5-flash",
        ProviderName::OpenAiCompatible => "",
        ProviderName::Local => "local",
    }
}

/// `default_model` for every provider, for listings and docs.
pub const DEFAULT_MODELS: [(ProviderName, &str); 6] = [
    (ProviderName::OpenAi, default_model(ProviderName::OpenAi)),
    (
        ProviderName::Anthropic,
        default_model(ProviderName::Anthropic),
    ),
    (
        ProviderName::DeepSeek,
        default_model(ProviderName::DeepSeek),
    ),
    (ProviderName::Gemini, default_model(ProviderName::Gemini)),
    (
        ProviderName::OpenAiCompatible,
        default_model(ProviderName::OpenAiCompatible),
    ),
    (ProviderName::Local, default_model(ProviderName::Local)),
];

/// The provider's public API base (overridable by `*_API_BASE`); None for openai-compatible
/// (the tenant gives it) and local (no HTTP).
pub const fn default_base(name: ProviderName) -> Option<&'static str> {
    match name {
        ProviderName::OpenAi => Some("https://api.openai.com/v1"),
        ProviderName::DeepSeek => Some("https://api.deepseek.com"),
        ProviderName::Anthropic => Some("https://api.anthropic.com"),
        ProviderName::Gemini => Some("https://generativelanguage.googleapis.com"),
        ProviderName::OpenAiCompatible | ProviderName::Local => None,
    }
}

const CONTENT_TYPE: (&str, &str) = ("Content-Type", "application/json");

/// The request for one optimisation. `base` may end in `/` or not. The temperature is 0 on every
/// wire so the same text gives the same answer. An empty system prompt is left out (providers
/// refuse empty text blocks).
///
/// `Wire::Local` is not HTTP and the caller never builds a call for it; it gets an empty call
/// (no URL, no body) rather than a panic.
pub fn build(wire: Wire, base: &str, model: &str, key: &str, prompt: &Prompt) -> Call {
    let base = base.trim_end_matches('/');
    let user_message = json!({"role": "user", "content": prompt.user});
    let (url, auth, body) = match wire {
        Wire::ChatCompletions => {
            let mut messages = Vec::new();
            if !prompt.system.is_empty() {
                messages.push(json!({"role": "system", "content": prompt.system}));
            }
            messages.push(user_message);
            let body = json!({
                "model": model,
                "messages": messages,
                "temperature": 0,
                "max_tokens": prompt.max_tokens,
            });
            let auth = vec![("Authorization", format!("Bearer {key}"))];
            (format!("{base}/chat/completions"), auth, body)
        }
        Wire::AnthropicMessages => {
            let mut body = json!({
                "model": model,
                "max_tokens": prompt.max_tokens,
                "messages": [user_message],
                "temperature": 0,
            });
            if !prompt.system.is_empty() {
                body["system"] = json!(prompt.system);
            }
            let auth = vec![
                ("x-api-key", key.to_string()),
                ("anthropic-version", "2023-06-01".to_string()),
            ];
            (format!("{base}/v1/messages"), auth, body)
        }
        Wire::GeminiGenerate => {
            let mut body = json!({
                "contents": [{"role": "user", "parts": [{"text": prompt.user}]}],
                "generationConfig": {"temperature": 0, "maxOutputTokens": prompt.max_tokens},
            });
            if !prompt.system.is_empty() {
                body["systemInstruction"] = json!({"parts": [{"text": prompt.system}]});
            }
            // Gemini lists its models as "models/NAME"; accept that spelling too.
            let model = model.strip_prefix("models/").unwrap_or(model);
            let url = format!(
                "{base}/v1beta/models/{}:generateContent",
                percent_encode(model)
            );
            (url, vec![("x-goog-api-key", key.to_string())], body)
        }
        Wire::Local => {
            return Call {
                url: String::new(),
                headers: vec![(CONTENT_TYPE.0, CONTENT_TYPE.1.to_string())],
                body: String::new(),
            }
        }
    };
    let mut headers = vec![(CONTENT_TYPE.0, CONTENT_TYPE.1.to_string())];
    headers.extend(auth);
    Call {
        url,
        headers,
        body: body.to_string(),
    }
}

/// Everything but RFC 3986's unreserved characters, so a model name cannot add path segments
/// (`/`), a query (`?`), a fragment (`#`) or a second method (`:`).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Reads the provider's answer. A 2xx gives the answer's text (OpenAI shape:
/// `choices[0].message.content`; Anthropic: the `text` blocks of `content[]` joined; Gemini: the
/// non-thought `parts[].text` of `candidates[0]` joined) and usage; an answer with no text, or
/// one cut off at the token budget (a prefix of a prompt is not an optimised prompt), is
/// `Malformed`. A non-2xx is `Status` with the provider's own error message, or "the provider
/// answered N" when it gave none. Every message is scrubbed of `key`.
///
/// Gemini answers a bad key with 400 `API_KEY_INVALID`; that is reported as 401, the
/// authentication failure it is, so it falls back like the other providers' bad keys.
///
/// `Wire::Local` has no HTTP answer: it is `Malformed("local is not an HTTP provider")`.
pub fn parse(wire: Wire, status: u16, body: &str, key: &str) -> Result<Answer, Failure> {
    if wire == Wire::Local {
        return Err(Failure::Malformed("local is not an HTTP provider".into()));
    }
    let json: Option<Value> = serde_json::from_str(body).ok();
    if !(200..300).contains(&status) {
        let (status, message) = error_message(wire, status, json.as_ref());
        let message = message
            .map(|m| scrub(m, key))
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| format!("the provider answered {status}"));
        return Err(Failure::Status { status, message });
    }
    let Some(json) = json else {
        return Err(Failure::Malformed("the answer is not JSON".into()));
    };
    let answer = match wire {
        Wire::ChatCompletions => chat_answer(&json),
        Wire::AnthropicMessages => anthropic_answer(&json),
        Wire::GeminiGenerate => gemini_answer(&json),
        Wire::Local => Err("local is not an HTTP provider".into()),
    };
    answer.map_err(|m| Failure::Malformed(scrub(&m, key)))
}

/// The status to report and the provider's message, from the error shape of its wire. All three
/// put it at `error.message`; OpenAI-compatible servers also use `{"error": "…"}`,
/// `{"message": "…"}` or `{"detail": "…"}`.
fn error_message(wire: Wire, status: u16, json: Option<&Value>) -> (u16, Option<&str>) {
    let Some(json) = json else {
        return (status, None);
    };
    let error = &json["error"];
    let message = error["message"]
        .as_str()
        .or_else(|| error.as_str())
        .or_else(|| json["message"].as_str())
        .or_else(|| json["detail"].as_str());
    let bad_gemini_key = wire == Wire::GeminiGenerate
        && status == 400
        && error["details"].as_array().is_some_and(|details| {
            details
                .iter()
                .any(|d| d["reason"].as_str() == Some("API_KEY_INVALID"))
        });
    (if bad_gemini_key { 401 } else { status }, message)
}

/// Some text, trimmed, or the reason there is none.
fn non_empty(text: String, what: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        Err(format!("the answer has no text ({what} is empty)"))
    } else {
        Ok(text.to_string())
    }
}

fn chat_answer(json: &Value) -> Result<Answer, String> {
    let choice = &json["choices"][0];
    if choice.is_null() {
        return Err("the answer has no choices[0]".into());
    }
    if choice["finish_reason"].as_str() == Some("length") {
        return Err("the answer was cut off at max_tokens".into());
    }
    let message = &choice["message"];
    let Some(content) = message["content"].as_str() else {
        return Err(match message["refusal"].as_str() {
            Some(refusal) => format!("the provider refused: {refusal}"),
            None => "the answer has no choices[0].message.content".into(),
        });
    };
    let text = non_empty(content.to_string(), "choices[0].message.content")?;
    let usage = &json["usage"];
    let usage = match (
        Value::as_u64(&usage["prompt_tokens"]),
        Value::as_u64(&usage["completion_tokens"]),
    ) {
        (Some(input_tokens), Some(output_tokens)) => Some(ProviderUsage {
            input_tokens,
            output_tokens,
        }),
        _ => None,
    };
    Ok(Answer { text, usage })
}

fn anthropic_answer(json: &Value) -> Result<Answer, String> {
    let Some(blocks) = json["content"].as_array() else {
        return Err("the answer has no content[]".into());
    };
    if json["stop_reason"].as_str() == Some("max_tokens") {
        return Err("the answer was cut off at max_tokens".into());
    }
    let text: String = blocks
        .iter()
        .filter(|b| b["type"].as_str() == Some("text"))
        .filter_map(|b| b["text"].as_str())
        .collect();
    let text = non_empty(text, "content[].text")?;
    let usage = &json["usage"];
    let usage = match (
        Value::as_u64(&usage["input_tokens"]),
        Value::as_u64(&usage["output_tokens"]),
    ) {
        (Some(input_tokens), Some(output_tokens)) => Some(ProviderUsage {
            input_tokens,
            output_tokens,
        }),
        _ => None,
    };
    Ok(Answer { text, usage })
}

fn gemini_answer(json: &Value) -> Result<Answer, String> {
    let candidate = &json["candidates"][0];
    if candidate.is_null() {
        // A blocked prompt has no candidates, only promptFeedback.blockReason.
        return Err(match json["promptFeedback"]["blockReason"].as_str() {
            Some(reason) => format!("the provider blocked the prompt ({reason})"),
            None => "the answer has no candidates[0]".into(),
        });
    }
    if candidate["finishReason"].as_str() == Some("MAX_TOKENS") {
        return Err("the answer was cut off at maxOutputTokens".into());
    }
    let text: String = candidate["content"]["parts"]
        .as_array()
        .map(|parts| {
            parts
                .iter()
                // Thinking models can return their reasoning as parts marked `thought`.
                .filter(|p| p["thought"].as_bool() != Some(true))
                .filter_map(|p| p["text"].as_str())
                .collect()
        })
        .unwrap_or_default();
    let text = match non_empty(text, "candidates[0].content.parts[].text") {
        Ok(text) => text,
        Err(e) => {
            return Err(match candidate["finishReason"].as_str() {
                Some(reason) if reason != "STOP" => {
                    format!("the answer has no text (finishReason {reason})")
                }
                _ => e,
            })
        }
    };
    let usage = &json["usageMetadata"];
    // Thinking tokens are billed as output but counted apart from the candidates.
    let thoughts = Value::as_u64(&usage["thoughtsTokenCount"]).unwrap_or(0);
    let usage = match (
        Value::as_u64(&usage["promptTokenCount"]),
        Value::as_u64(&usage["candidatesTokenCount"]),
    ) {
        (Some(input_tokens), Some(output)) => Some(ProviderUsage {
            input_tokens,
            output_tokens: output.saturating_add(thoughts),
        }),
        _ => None,
    };
    Ok(Answer { text, usage })
}

/// The longest message we pass on, in characters.
const MAX_MESSAGE_CHARS: usize = 300;
/// The shortest run of base64/hex-ish characters taken for a secret.
const MIN_SECRET_RUN: usize = 24;
const REDACTED: &str = "[redacted]";

/// Makes provider text safe to show and log: removes `key` (when it is at least 4 characters)
/// and anything shaped like a key — words starting `sk-`/`sk_` (OpenAI, DeepSeek, Anthropic's
/// `sk-ant-`), `AIza` (Google), masked keys (`****`), the word after `Bearer`, and runs of 24 or
/// more base64/hex-ish characters that are not a plain lowercase word — replacing each with
/// "[redacted]". Control characters become spaces (one line per log entry), the ends are
/// trimmed, and the result is cut to 300 characters at a character boundary.
pub fn scrub(text: &str, key: &str) -> String {
    let key = key.trim();
    let text = if key.chars().count() >= 4 {
        text.replace(key, REDACTED)
    } else {
        text.to_string()
    };
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    let mut after_bearer = false;
    while let Some(first) = rest.chars().next() {
        let run_len = rest
            .char_indices()
            .find(|(_, c)| !is_secret_char(*c))
            .map_or(rest.len(), |(i, _)| i);
        if run_len == 0 {
            out.push(if first.is_control() { ' ' } else { first });
            if !first.is_whitespace() {
                after_bearer = false;
            }
            rest = &rest[first.len_utf8()..];
            continue;
        }
        let (run, tail) = rest.split_at(run_len);
        if after_bearer || looks_secret(run) {
            out.push_str(REDACTED);
        } else {
            out.push_str(run);
        }
        after_bearer = run.eq_ignore_ascii_case("bearer");
        rest = tail;
    }
    truncate_chars(out.trim(), MAX_MESSAGE_CHARS)
}

/// Characters keys are made of (base64, base64url, hex, the `-`/`_` of prefixes, the `*` of masks).
fn is_secret_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '*' | '+' | '/' | '=')
}

fn looks_secret(run: &str) -> bool {
    let lower = run.to_ascii_lowercase();
    if lower.starts_with("sk-") || lower.starts_with("sk_") || run.starts_with("AIza") {
        return true;
    }
    if run.contains("****") {
        return true;
    }
    // A long segment between separators: random keys have digits, capitals or base64 symbols;
    // a long plain lowercase word (or a URL path of them) does not.
    run.split(['-', '_', '/']).any(|segment| {
        segment.len() >= MIN_SECRET_RUN
            && segment
                .chars()
                .any(|c| c.is_ascii_digit() || c.is_ascii_uppercase() || matches!(c, '+' | '='))
    })
}

fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROMPT: Prompt = Prompt {
        system: "You shorten prompts.",
        user: "Please summarise {{doc}} in 3 bullets.",
        max_tokens: 512,
    };

    fn body(call: &Call) -> Value {
        serde_json::from_str(&call.body).unwrap()
    }

    #[test]
    fn builds_chat_completions() {
        for base in ["https://api.openai.com/v1", "https://api.openai.com/v1/"] {
            let call = build(
                Wire::ChatCompletions,
                base,
                "gpt-4o-mini",
                "sk-test",
                &PROMPT,
            );
            assert_eq!(call.url, "https://api.openai.com/v1/chat/completions");
            assert_eq!(
                call.headers,
                vec![
                    ("Content-Type", "application/json".to_string()),
                    ("Authorization", "Bearer sk-test".to_string()),
                ]
            );
            assert_eq!(
                body(&call),
                json!({
                    "model": "gpt-4o-mini",
                    "messages": [
                        {"role": "system", "content": "You shorten prompts."},
                        {"role": "user", "content": "Please summarise {{doc}} in 3 bullets."},
                    ],
                    "temperature": 0,
                    "max_tokens": 512,
                })
            );
        }
        let deepseek = build(
            Wire::ChatCompletions,
            "https://api.deepseek.com",
            "deepseek-chat",
            "k",
            &PROMPT,
        );
        assert_eq!(deepseek.url, "https://api.deepseek.com/chat/completions");
    }

    #[test]
    fn builds_anthropic_messages() {
        let call = build(
            Wire::AnthropicMessages,
            "https://api.anthropic.com/",
            "claude-3-5-haiku-latest",
            "sk-ant-test",
            &PROMPT,
        );
        assert_eq!(call.url, "https://api.anthropic.com/v1/messages");
        assert_eq!(
            call.headers,
            vec![
                ("Content-Type", "application/json".to_string()),
                ("x-api-key", "sk-ant-test".to_string()),
                ("anthropic-version", "2023-06-01".to_string()),
            ]
        );
        assert_eq!(
            body(&call),
            json!({
                "model": "claude-3-5-haiku-latest",
                "max_tokens": 512,
                "system": "You shorten prompts.",
                "messages": [{"role": "user", "content": "Please summarise {{doc}} in 3 bullets."}],
                "temperature": 0,
            })
        );
    }

    #[test]
    fn builds_gemini_generate() {
        let call = build(
            Wire::GeminiGenerate,
            "https://generativelanguage.googleapis.com",
            "gemini-1.5-flash",
            "AIzaTest",
            &PROMPT,
        );
        assert_eq!(
            call.url,
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-1.5-flash:generateContent"
        );
        assert_eq!(
            call.headers,
            vec![
                ("Content-Type", "application/json".to_string()),
                ("x-goog-api-key", "AIzaTest".to_string()),
            ]
        );
        assert_eq!(
            body(&call),
            json!({
                "systemInstruction": {"parts": [{"text": "You shorten prompts."}]},
                "contents": [{"role": "user", "parts": [{"text": "Please summarise {{doc}} in 3 bullets."}]}],
                "generationConfig": {"temperature": 0, "maxOutputTokens": 512},
            })
        );
    }

    #[test]
    fn gemini_model_cannot_change_the_path() {
        let url = |model| {
            build(
                Wire::GeminiGenerate,
                "https://g.example/",
                model,
                "k",
                &PROMPT,
            )
            .url
        };
        assert_eq!(
            url("../../v1/files?x=1#y"),
            "https://g.example/v1beta/models/..%2F..%2Fv1%2Ffiles%3Fx%3D1%23y:generateContent"
        );
        assert_eq!(
            url("gemini:streamGenerateContent"),
            "https://g.example/v1beta/models/gemini%3AstreamGenerateContent:generateContent"
        );
        assert_eq!(
            url("gémini 2"),
            "https://g.example/v1beta/models/g%C3%A9mini%202:generateContent"
        );
        assert_eq!(
            url("models/gemini-2.0-flash"),
            "https://g.example/v1beta/models/gemini-2.0-flash:generateContent"
        );
    }

    #[test]
    fn an_empty_system_prompt_is_left_out() {
        let prompt = Prompt {
            system: "",
            user: "hi",
            max_tokens: 10,
        };
        let chat = body(&build(Wire::ChatCompletions, "b", "m", "k", &prompt));
        assert_eq!(chat["messages"], json!([{"role": "user", "content": "hi"}]));
        let anthropic = body(&build(Wire::AnthropicMessages, "b", "m", "k", &prompt));
        assert_eq!(anthropic.get("system"), None);
        let gemini = body(&build(Wire::GeminiGenerate, "b", "m", "k", &prompt));
        assert_eq!(gemini.get("systemInstruction"), None);
    }

    #[test]
    fn local_is_not_http() {
        let call = build(Wire::Local, "", "local", "", &PROMPT);
        assert_eq!(
            call,
            Call {
                url: String::new(),
                headers: vec![("Content-Type", "application/json".to_string())],
                body: String::new(),
            }
        );
        assert_eq!(
            parse(Wire::Local, 200, "{}", ""),
            Err(Failure::Malformed("local is not an HTTP provider".into()))
        );
    }

    #[test]
    fn debug_never_prints_the_key() {
        for wire in [
            Wire::ChatCompletions,
            Wire::AnthropicMessages,
            Wire::GeminiGenerate,
        ] {
            let call = build(wire, "https://x", "m", "sk-secret-1234", &PROMPT);
            let shown = format!("{call:?}");
            assert!(!shown.contains("sk-secret-1234"), "{shown}");
            assert!(shown.contains("application/json"), "{shown}");
        }
    }

    // From https://platform.openai.com/docs/api-reference/chat/object
    const OPENAI_OK: &str = r#"{
      "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
      "object": "chat.completion",
      "created": 1741569952,
      "model": "gpt-4o-mini-2024-07-18",
      "choices": [
        {
          "index": 0,
          "message": {
            "role": "assistant",
            "content": "Summarise {{doc}} in 3 bullets.",
            "refusal": null,
            "annotations": []
          },
          "logprobs": null,
          "finish_reason": "stop"
        }
      ],
      "usage": {
        "prompt_tokens": 19,
        "completion_tokens": 10,
        "total_tokens": 29,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
          "reasoning_tokens": 0,
          "audio_tokens": 0,
          "accepted_prediction_tokens": 0,
          "rejected_prediction_tokens": 0
        }
      },
      "service_tier": "default",
      "system_fingerprint": "fp_06737a9306"
    }"#;

    // From https://api-docs.deepseek.com/api/create-chat-completion
    const DEEPSEEK_OK: &str = r#"{
      "id": "930c60df-bf64-41c9-a88e-3ec75f81e00e",
      "choices": [
        {
          "finish_reason": "stop",
          "index": 0,
          "message": {"content": "\nSummarise {{doc}}: 3 bullets.\n", "role": "assistant"},
          "logprobs": null
        }
      ],
      "created": 1705651092,
      "model": "deepseek-chat",
      "object": "chat.completion",
      "usage": {
        "completion_tokens": 10,
        "prompt_tokens": 16,
        "prompt_cache_hit_tokens": 0,
        "prompt_cache_miss_tokens": 16,
        "total_tokens": 26
      },
      "system_fingerprint": "fp_44709d6fcb"
    }"#;

    #[test]
    fn parses_chat_completions() {
        assert_eq!(
            parse(Wire::ChatCompletions, 200, OPENAI_OK, "sk-x"),
            Ok(Answer {
                text: "Summarise {{doc}} in 3 bullets.".into(),
                usage: Some(ProviderUsage {
                    input_tokens: 19,
                    output_tokens: 10
                }),
            })
        );
        assert_eq!(
            parse(Wire::ChatCompletions, 200, DEEPSEEK_OK, "sk-x"),
            Ok(Answer {
                text: "Summarise {{doc}}: 3 bullets.".into(),
                usage: Some(ProviderUsage {
                    input_tokens: 16,
                    output_tokens: 10
                }),
            })
        );
        // Some OpenAI-compatible servers give no usage.
        let bare = r#"{"choices":[{"message":{"role":"assistant","content":"ok"}}]}"#;
        assert_eq!(
            parse(Wire::ChatCompletions, 200, bare, ""),
            Ok(Answer {
                text: "ok".into(),
                usage: None
            })
        );
    }

    #[test]
    fn unusable_chat_answers_are_malformed() {
        let cases = [
            ("not json", "the answer is not JSON"),
            (r#"{"choices":[]}"#, "the answer has no choices[0]"),
            (
                r#"{"choices":[{"message":{"role":"assistant","content":null}}]}"#,
                "the answer has no choices[0].message.content",
            ),
            (
                r#"{"choices":[{"message":{"role":"assistant","content":"  \n"}}]}"#,
                "the answer has no text (choices[0].message.content is empty)",
            ),
            (
                r#"{"choices":[{"message":{"role":"assistant","content":null,"refusal":"I can't help with that."},"finish_reason":"stop"}]}"#,
                "the provider refused: I can't help with that.",
            ),
            (
                r#"{"choices":[{"message":{"role":"assistant","content":"Summarise {{do"},"finish_reason":"length"}]}"#,
                "the answer was cut off at max_tokens",
            ),
        ];
        for (body, message) in cases {
            let failure = parse(Wire::ChatCompletions, 200, body, "k").unwrap_err();
            assert_eq!(failure, Failure::Malformed(message.into()), "{body}");
            assert!(failure.falls_back());
            assert_eq!(failure.status(), None);
        }
    }

    // From https://docs.anthropic.com/en/api/messages
    const ANTHROPIC_OK: &str = r#"{
      "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
      "type": "message",
      "role": "assistant",
      "model": "claude-3-5-haiku-20241022",
      "content": [
        {"type": "text", "text": "Summarise {{doc}} "},
        {"type": "text", "text": "in 3 bullets."}
      ],
      "stop_reason": "end_turn",
      "stop_sequence": null,
      "usage": {
        "input_tokens": 2095,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 503,
        "service_tier": "standard"
      }
    }"#;

    #[test]
    fn parses_anthropic_messages() {
        assert_eq!(
            parse(Wire::AnthropicMessages, 200, ANTHROPIC_OK, "sk-ant-x"),
            Ok(Answer {
                text: "Summarise {{doc}} in 3 bullets.".into(),
                usage: Some(ProviderUsage {
                    input_tokens: 2095,
                    output_tokens: 503
                }),
            })
        );
        // Only text blocks count (a thinking block is not the answer).
        let mixed = r#"{"type":"message","content":[{"type":"thinking","thinking":"hmm","signature":"x"},{"type":"text","text":"Short."}],"stop_reason":"end_turn","usage":{"input_tokens":5,"output_tokens":2}}"#;
        assert_eq!(
            parse(Wire::AnthropicMessages, 200, mixed, "").map(|a| a.text),
            Ok("Short.".into())
        );
        let cases = [
            (r#"{"type":"message"}"#, "the answer has no content[]"),
            (
                r#"{"type":"message","content":[],"stop_reason":"end_turn"}"#,
                "the answer has no text (content[].text is empty)",
            ),
            (
                r#"{"type":"message","content":[{"type":"text","text":"Summ"}],"stop_reason":"max_tokens"}"#,
                "the answer was cut off at max_tokens",
            ),
        ];
        for (body, message) in cases {
            assert_eq!(
                parse(Wire::AnthropicMessages, 200, body, ""),
                Err(Failure::Malformed(message.into()))
            );
        }
    }

    // From https://ai.google.dev/api/generate-content#v1beta.GenerateContentResponse
    const GEMINI_OK: &str = r#"{
      "candidates": [
        {
          "content": {
            "parts": [{"text": "Summarise {{doc}} "}, {"text": "in 3 bullets.\n"}],
            "role": "model"
          },
          "finishReason": "STOP",
          "index": 0,
          "safetyRatings": [
            {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"},
            {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"},
            {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
            {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "NEGLIGIBLE"}
          ]
        }
      ],
      "usageMetadata": {
        "promptTokenCount": 8,
        "candidatesTokenCount": 112,
        "totalTokenCount": 120
      },
      "modelVersion": "gemini-1.5-flash"
    }"#;

    // A thinking model (gemini-2.5-flash): thought tokens are billed as output.
    const GEMINI_THINKING_OK: &str = r#"{
      "candidates": [
        {
          "content": {"parts": [{"text": "Summarise {{doc}} in 3 bullets."}], "role": "model"},
          "finishReason": "STOP",
          "index": 0
        }
      ],
      "usageMetadata": {
        "promptTokenCount": 12,
        "candidatesTokenCount": 9,
        "totalTokenCount": 51,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 12}],
        "thoughtsTokenCount": 30
      },
      "modelVersion": "gemini-2.5-flash",
      "responseId": "mLFbaL2ZA4Sd1dkPqe3X2Ag"
    }"#;

    #[test]
    fn parses_gemini_generate() {
        assert_eq!(
            parse(Wire::GeminiGenerate, 200, GEMINI_OK, "AIzaX"),
            Ok(Answer {
                text: "Summarise {{doc}} in 3 bullets.".into(),
                usage: Some(ProviderUsage {
                    input_tokens: 8,
                    output_tokens: 112
                }),
            })
        );
        assert_eq!(
            parse(Wire::GeminiGenerate, 200, GEMINI_THINKING_OK, "AIzaX"),
            Ok(Answer {
                text: "Summarise {{doc}} in 3 bullets.".into(),
                usage: Some(ProviderUsage {
                    input_tokens: 12,
                    output_tokens: 39
                }),
            })
        );
        let thought = r#"{"candidates":[{"content":{"parts":[{"text":"Let me think","thought":true},{"text":"Short."}],"role":"model"},"finishReason":"STOP"}]}"#;
        assert_eq!(
            parse(Wire::GeminiGenerate, 200, thought, ""),
            Ok(Answer {
                text: "Short.".into(),
                usage: None
            })
        );
        let cases = [
            (
                r#"{"promptFeedback":{"blockReason":"SAFETY","safetyRatings":[]},"usageMetadata":{"promptTokenCount":8,"totalTokenCount":8}}"#,
                "the provider blocked the prompt (SAFETY)",
            ),
            (r#"{"candidates":[]}"#, "the answer has no candidates[0]"),
            (
                r#"{"candidates":[{"finishReason":"SAFETY","index":0,"safetyRatings":[{"category":"HARM_CATEGORY_HARASSMENT","probability":"HIGH","blocked":true}]}]}"#,
                "the answer has no text (finishReason SAFETY)",
            ),
            (
                r#"{"candidates":[{"content":{"parts":[{"text":""}],"role":"model"},"finishReason":"STOP"}]}"#,
                "the answer has no text (candidates[0].content.parts[].text is empty)",
            ),
            (
                r#"{"candidates":[{"content":{"parts":[{"text":"Summ"}],"role":"model"},"finishReason":"MAX_TOKENS"}]}"#,
                "the answer was cut off at maxOutputTokens",
            ),
        ];
        for (body, message) in cases {
            assert_eq!(
                parse(Wire::GeminiGenerate, 200, body, ""),
                Err(Failure::Malformed(message.into())),
                "{body}"
            );
        }
    }

    fn status(status: u16, message: &str) -> Result<Answer, Failure> {
        Err(Failure::Status {
            status,
            message: message.into(),
        })
    }

    #[test]
    fn parses_provider_errors() {
        let openai_429 = r#"{"error":{"message":"Rate limit reached for gpt-4o-mini in organization org-abc on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s.","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
        assert_eq!(
            parse(Wire::ChatCompletions, 429, openai_429, "sk-x"),
            status(429, "Rate limit reached for gpt-4o-mini in organization org-abc on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s.")
        );
        let deepseek_402 = r#"{"error":{"message":"Insufficient Balance","type":"unknown_error","param":null,"code":"invalid_request_error"}}"#;
        assert_eq!(
            parse(Wire::ChatCompletions, 402, deepseek_402, "sk-x"),
            status(402, "Insufficient Balance")
        );
        let anthropic_529 = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}"#;
        assert_eq!(
            parse(Wire::AnthropicMessages, 529, anthropic_529, "sk-ant-x"),
            status(529, "Overloaded")
        );
        let anthropic_401 = r#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#;
        assert_eq!(
            parse(Wire::AnthropicMessages, 401, anthropic_401, "sk-ant-x"),
            status(401, "invalid x-api-key")
        );
        let gemini_404 = r#"{"error":{"code":404,"message":"models/gemini-9 is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods.","status":"NOT_FOUND"}}"#;
        assert_eq!(
            parse(Wire::GeminiGenerate, 404, gemini_404, "AIzaX"),
            status(404, "models/gemini-9 is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods.")
        );
        let gemini_429 = r#"{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED"}}"#;
        assert_eq!(
            parse(Wire::GeminiGenerate, 429, gemini_429, "AIzaX"),
            status(429, "Resource has been exhausted (e.g. check quota).")
        );
        // OpenAI-compatible servers (vLLM, Ollama, proxies) have their own shapes.
        assert_eq!(
            parse(
                Wire::ChatCompletions,
                404,
                r#"{"error":"model 'llama9' not found"}"#,
                ""
            ),
            status(404, "model 'llama9' not found")
        );
        assert_eq!(
            parse(Wire::ChatCompletions, 422, r#"{"detail":"Not Found"}"#, ""),
            status(422, "Not Found")
        );
        // No message: a generic one.
        for body in [
            "<html>502 Bad Gateway</html>",
            "",
            r#"{"error":{"message":""}}"#,
        ] {
            assert_eq!(
                parse(Wire::AnthropicMessages, 502, body, ""),
                status(502, "the provider answered 502")
            );
        }
    }

    #[test]
    fn a_bad_gemini_key_is_an_authentication_failure() {
        let body = r#"{
          "error": {
            "code": 400,
            "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT",
            "details": [
              {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"}
              },
              {
                "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                "locale": "en-US",
                "message": "API key not valid. Please pass a valid API key."
              }
            ]
          }
        }"#;
        let failure = parse(Wire::GeminiGenerate, 400, body, "AIzaBad").unwrap_err();
        assert_eq!(
            failure,
            Failure::Status {
                status: 401,
                message: "API key not valid. Please pass a valid API key.".into()
            }
        );
        assert!(failure.falls_back());
        // Another 400 stays a 400.
        let invalid = r#"{"error":{"code":400,"message":"* GenerateContentRequest.contents: contents is not specified\n","status":"INVALID_ARGUMENT"}}"#;
        assert_eq!(
            parse(Wire::GeminiGenerate, 400, invalid, "AIzaBad"),
            status(
                400,
                "* GenerateContentRequest.contents: contents is not specified"
            )
        );
    }

    #[test]
    fn the_key_never_reaches_a_message() {
        let key = "sk-proj-Tq3bZ8xK2mV9wL4nR7pJ1sYhC6dF0gE5uA8iO3kB";
        // OpenAI echoes the key masked; a careless proxy echoes it whole.
        let masked = r#"{"error":{"message":"Incorrect API key provided: sk-proj-********************************************O3kB. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
        assert_eq!(
            parse(Wire::ChatCompletions, 401, masked, key),
            status(401, "Incorrect API key provided: [redacted]. You can find your API key at https://platform.openai.com/account/api-keys.")
        );
        let whole = format!(
            r#"{{"error":{{"message":"key {key} is not allowed (Authorization: Bearer {key})"}}}}"#
        );
        let failure = parse(Wire::ChatCompletions, 403, &whole, key).unwrap_err();
        assert_eq!(
            failure.message(),
            "key [redacted] is not allowed (Authorization: Bearer [redacted])"
        );
        // A key with no known prefix, echoed in a malformed-answer path.
        let odd_key = "tgp_v1_abcd";
        let body = format!(
            r#"{{"choices":[{{"message":{{"content":null,"refusal":"bad key {odd_key}"}}}}]}}"#
        );
        let failure = parse(Wire::ChatCompletions, 200, &body, odd_key).unwrap_err();
        assert_eq!(
            failure.message(),
            "the provider refused: bad key [redacted]"
        );
    }

    #[test]
    fn scrub_removes_key_shapes() {
        let cases = [
            ("invalid x-api-key", "invalid x-api-key"),
            (
                "key sk-ant-api03-AbC_dEf-123 rejected",
                "key [redacted] rejected",
            ),
            ("sk_live_51Habc", "[redacted]"),
            (
                "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY is invalid",
                "[redacted] is invalid",
            ),
            ("Bearer abc. Then", "Bearer [redacted]. Then"),
            (
                "authorization: bearer   xyz",
                "authorization: bearer   [redacted]",
            ),
            (
                "token 3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e expired",
                "token [redacted] expired",
            ),
            (
                "gsk_Q2Fr8zXv0pLm3NbT7yWk9HcJ4sDe in use",
                "[redacted] in use",
            ),
            ("key ****abcd", "key [redacted]"),
            // Long model names and lowercase words are kept.
            (
                "model: claude-3-5-haiku-20241022 not found",
                "model: claude-3-5-haiku-20241022 not found",
            ),
            (
                "see https://docs.anthropic.com/en/api/rate-limits now",
                "see https://docs.anthropic.com/en/api/rate-limits now",
            ),
            ("line one\nline\ttwo", "line one line two"),
        ];
        for (text, scrubbed) in cases {
            assert_eq!(scrub(text, ""), scrubbed, "{text}");
        }
        // The key itself, whatever its shape, when at least 4 characters long.
        assert_eq!(
            scrub("bad key: hunter2!", "hunter2!"),
            "bad key: [redacted]"
        );
        assert_eq!(scrub("abc is a word", "abc"), "abc is a word");
    }

    #[test]
    fn scrub_truncates_at_a_char_boundary() {
        let long = "é".repeat(400);
        let scrubbed = scrub(&long, "");
        assert_eq!(scrubbed.chars().count(), 300);
        assert_eq!(scrubbed, "é".repeat(300));
        let message = format!(r#"{{"error":{{"message":"{}"}}}}"#, "ab ".repeat(200));
        let failure = parse(Wire::ChatCompletions, 400, &message, "").unwrap_err();
        assert_eq!(failure.message().chars().count(), 300);
    }

    #[test]
    fn which_failures_fall_back() {
        for (code, falls_back) in [
            (400, false),
            (401, true),
            (402, false),
            (403, true),
            (404, false),
            (408, true),
            (413, false),
            (422, false),
            (429, true),
            (500, true),
            (503, true),
            (529, true),
            (302, true),
        ] {
            let failure = Failure::Status {
                status: code,
                message: String::new(),
            };
            assert_eq!(failure.falls_back(), falls_back, "{code}");
            assert_eq!(failure.status(), Some(code));
        }
        assert!(Failure::Malformed("x".into()).falls_back());
    }

    #[test]
    fn defaults() {
        assert_eq!(default_model(ProviderName::OpenAi), "gpt-4o-mini");
        assert_eq!(
            default_model(ProviderName::Anthropic),
            "claude-3-5-haiku-latest"
        );
        assert_eq!(default_model(ProviderName::DeepSeek), "deepseek-chat");
        assert_eq!(default_model(ProviderName::Gemini), "gemini-1.5-flash");
        assert_eq!(default_model(ProviderName::OpenAiCompatible), "");
        assert_eq!(default_model(ProviderName::Local), "local");
        assert_eq!(
            DEFAULT_MODELS.map(|(p, _)| p),
            ProviderName::ALL,
            "one entry per provider, in order"
        );
        assert_eq!(
            default_base(ProviderName::OpenAi),
            Some("https://api.openai.com/v1")
        );
        assert_eq!(
            default_base(ProviderName::DeepSeek),
            Some("https://api.deepseek.com")
        );
        assert_eq!(
            default_base(ProviderName::Anthropic),
            Some("https://api.anthropic.com")
        );
        assert_eq!(
            default_base(ProviderName::Gemini),
            Some("https://generativelanguage.googleapis.com")
        );
        assert_eq!(default_base(ProviderName::OpenAiCompatible), None);
        assert_eq!(default_base(ProviderName::Local), None);
    }
}

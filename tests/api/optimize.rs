//! Prompt optimisation through the local workerd against the mock's LLM stand-ins
//! (`/llm/<provider>/…`): providers and their sealed keys, `POST /optimize` with every
//! provider, fallbacks and failures, metering, history and stats, batches with their signed
//! callback, redelivery and cancel, and tenant isolation.

use futures::future::join_all;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

use crate::billing::{set_tenant, usage};
use crate::client::*;
use crate::harness::server;
use crate::workflows::{mock_calls, mock_url, verified_event};

pub const OPENAI_KEY: &str = "sk-test-openai-7f3a9c2e41d8b6f0Q1w2";
const ANTHROPIC_KEY: &str = "sk-ant-test-4b8e1d0c9a7f3e2d5c6b";
const GEMINI_KEY: &str = "AIzaTest-9d8c7b6a5f4e3d2c1b0a";
const DEEPSEEK_KEY: &str = "sk-deepseek-test-1a2b3c4d5e6f7a8b";
const COMPATIBLE_KEY: &str = "sk-compat-test-0f1e2d3c4b5a6978";

pub async fn put_provider(s: &Session, name: &str, body: Value) -> Resp {
    put(&format!("/api/v1/providers/{name}"))
        .token(&s.access)
        .json(body)
        .send()
        .await
}

pub async fn optimize(s: &Session, body: Value) -> Resp {
    post("/api/v1/optimize")
        .token(&s.access)
        .json(body)
        .send()
        .await
}

/// The mock's recorded calls of one provider whose body mentions `marker`.
async fn llm_calls(provider: &str, marker: &str) -> Vec<Value> {
    mock_calls(&format!("llm-{provider}"))
        .await
        .into_iter()
        .filter(|c| c["body"].as_str().is_some_and(|b| b.contains(marker)))
        .collect()
}

async fn optimizations_used(s: &Session) -> u64 {
    let u = usage(s).await;
    u["metrics"]["optimizations"]["used"]
        .as_u64()
        .unwrap_or_else(|| panic!("usage: {u}"))
}

fn text_with(marker: &str) -> String {
    format!(
        "Please, in order to help the customer {{{{name}}}}, write a very short and really \
         friendly reply about order $ORDER_ID. Marker {marker}."
    )
}

#[tokio::test]
async fn an_admin_stores_a_key_and_sees_only_its_last_four_characters() {
    let owner = register().await;
    let r = put_provider(
        &owner,
        "openai",
        json!({"api_key": OPENAI_KEY, "default": true}),
    )
    .await
    .expect(200);
    let d = r.data();
    assert_eq!(d["name"], "openai");
    assert_eq!(d["key_set"], true);
    assert_eq!(d["key_last4"], "Q1w2");
    assert_eq!(d["default"], true);
    assert_eq!(d["usable"], true);
    assert!(!r.text.contains(OPENAI_KEY));

    let list = get("/api/v1/providers")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    let names: Vec<&str> = list
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "openai",
            "anthropic",
            "deepseek",
            "gemini",
            "openai-compatible",
            "local"
        ]
    );
    assert!(!list.text.contains(OPENAI_KEY));

    // An omitted key is kept; a model can change alone.
    let r = put_provider(&owner, "openai", json!({"model": "gpt-4o"}))
        .await
        .expect(200);
    assert_eq!(r.data()["key_last4"], "Q1w2");
    assert_eq!(r.data()["model"], "gpt-4o");

    // Unknown names are 404; the first PUT needs a key; openai-compatible needs a base URL.
    put_provider(&owner, "mistral", json!({"api_key": OPENAI_KEY}))
        .await
        .problem(404, "not_found");
    let r = put_provider(
        &owner,
        "anthropic",
        json!({"model": "claude-3-5-haiku-latest"}),
    )
    .await
    .problem(422, "validation_failed");
    assert_eq!(r.body["errors"][0]["field"], "api_key");
    let r = put_provider(
        &owner,
        "openai-compatible",
        json!({"api_key": COMPATIBLE_KEY}),
    )
    .await
    .problem(422, "validation_failed");
    assert!(r.text.contains("base_url"), "{}", r.text);
    for bad in [
        "http://10.0.0.8/v1",
        "https://user:pw@llm.example.com/v1",
        "ftp://llm.example.com",
        "https://llm.example.com/v1?key=x",
    ] {
        let r = put_provider(
            &owner,
            "openai-compatible",
            json!({"api_key": COMPATIBLE_KEY, "base_url": bad, "model": "m"}),
        )
        .await
        .problem(422, "validation_failed");
        assert_eq!(
            r.body["errors"][0]["field"], "base_url",
            "{bad}: {}",
            r.text
        );
    }
    put_provider(
        &owner,
        "openai",
        json!({"api_key": OPENAI_KEY, "colour": "red"}),
    )
    .await
    .problem(422, "validation_failed");

    // The key is in no audit entry either.
    let audit = get("/api/v1/audit-logs")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert!(audit.text.contains("provider.set"), "{}", audit.text);
    assert!(!audit.text.contains(OPENAI_KEY));

    // A member reads none of it.
    let member = add_user(&owner, "member").await;
    get("/api/v1/providers")
        .token(&member.access)
        .send()
        .await
        .problem(403, "forbidden");
    put_provider(&member, "openai", json!({"api_key": OPENAI_KEY}))
        .await
        .problem(403, "forbidden");

    delete("/api/v1/providers/openai")
        .token(&owner.access)
        .send()
        .await
        .expect(204);
    let r = get("/api/v1/providers/openai")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(r.data()["configured"], false);
    delete("/api/v1/providers/openai")
        .token(&owner.access)
        .send()
        .await
        .problem(404, "not_found");
}

#[tokio::test]
async fn each_provider_is_called_in_its_own_shape_with_the_decrypted_key() {
    let owner = register().await;
    let compatible = mock_url("/llm/compatible");
    for (name, body) in [
        ("openai", json!({"api_key": OPENAI_KEY})),
        ("anthropic", json!({"api_key": ANTHROPIC_KEY})),
        ("gemini", json!({"api_key": GEMINI_KEY})),
        ("deepseek", json!({"api_key": DEEPSEEK_KEY})),
        (
            "openai-compatible",
            json!({"api_key": COMPATIBLE_KEY, "base_url": compatible, "model": "llama-3.1-8b"}),
        ),
    ] {
        put_provider(&owner, name, body).await.expect(200);
    }
    let cases = [
        (
            "openai",
            "openai",
            "/llm/openai/chat/completions",
            "authorization",
            format!("Bearer {OPENAI_KEY}"),
        ),
        (
            "anthropic",
            "anthropic",
            "/llm/anthropic/v1/messages",
            "x-api-key",
            ANTHROPIC_KEY.to_string(),
        ),
        (
            "gemini",
            "gemini",
            "/llm/gemini/v1beta/models/gemini-1.5-flash:generateContent",
            "x-goog-api-key",
            GEMINI_KEY.to_string(),
        ),
        (
            "deepseek",
            "deepseek",
            "/llm/deepseek/chat/completions",
            "authorization",
            format!("Bearer {DEEPSEEK_KEY}"),
        ),
        (
            "openai-compatible",
            "compatible",
            "/llm/compatible/chat/completions",
            "authorization",
            format!("Bearer {COMPATIBLE_KEY}"),
        ),
    ];
    for (name, mock, path, header, value) in cases {
        let marker = format!("shape-{name}-{}", unique());
        let text = text_with(&marker);
        let r = optimize(&owner, json!({"text": text, "provider": name}))
            .await
            .expect(201);
        let d = r.data();
        assert_eq!(d["provider"], name, "{}", r.text);
        assert_eq!(d["original_text"], text.as_str());
        let out = d["optimized_text"].as_str().unwrap();
        assert!(
            out.contains("{{name}}") && out.contains("$ORDER_ID"),
            "{out}"
        );
        assert!(
            d["tokens_after"].as_u64() < d["tokens_before"].as_u64(),
            "{}",
            r.text
        );
        assert_eq!(
            d["tokens_saved"].as_u64().unwrap(),
            d["tokens_before"].as_u64().unwrap() - d["tokens_after"].as_u64().unwrap()
        );
        assert!(d["savings_percent"].as_f64().unwrap() > 0.0);
        assert!(d["provider_usage"]["input_tokens"].as_u64().unwrap() > 0);
        assert_eq!(d["attempts"].as_array().unwrap().len(), 1);
        let calls = llm_calls(mock, &marker).await;
        assert_eq!(calls.len(), 1, "{name}: one call");
        let c = &calls[0];
        assert_eq!(c["method"], "POST");
        assert_eq!(c["path"], path, "{name}");
        assert_eq!(c["headers"][header], value.as_str(), "{name}");
        let sent: Value = serde_json::from_str(c["body"].as_str().unwrap()).unwrap();
        match name {
            "anthropic" => {
                assert_eq!(c["headers"]["anthropic-version"], "2023-06-01");
                assert!(sent["system"].as_str().unwrap().contains("placeholder"));
                assert!(sent["max_tokens"].as_u64().unwrap() > 0);
                assert_eq!(sent["messages"][0]["content"], text.as_str());
            }
            "gemini" => {
                assert!(sent["systemInstruction"]["parts"][0]["text"].is_string());
                assert_eq!(sent["contents"][0]["parts"][0]["text"], text.as_str());
                assert_eq!(sent["generationConfig"]["temperature"], 0);
            }
            _ => {
                assert_eq!(sent["temperature"], 0);
                assert_eq!(sent["messages"][0]["role"], "system");
                assert_eq!(sent["messages"][1]["content"], text.as_str());
                if name == "openai-compatible" {
                    assert_eq!(sent["model"], "llama-3.1-8b");
                }
            }
        }
    }
    // The test route makes one unmetered call.
    let before = optimizations_used(&owner).await;
    let r = post("/api/v1/providers/anthropic/test")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(r.data()["ok"], true, "{}", r.text);
    assert_eq!(r.data()["status"], 200);
    assert_eq!(optimizations_used(&owner).await, before);
}

#[tokio::test]
async fn a_member_optimises_with_local_and_openai_and_finds_both_in_history() {
    let owner = register().await;
    put_provider(&owner, "openai", json!({"api_key": OPENAI_KEY}))
        .await
        .expect(200);
    let member = add_user(&owner, "member").await;
    let text = "In order to   help the team, please write a very short summary.\n\
                In order to   help the team, please write a very short summary.\n\
                Keep `code()` and \"quoted text\" and {{placeholder}} as they are.";
    let local = optimize(&member, json!({"text": text, "compression_level": 2}))
        .await
        .expect(201);
    let l = local.data();
    assert_eq!(l["provider"], "local");
    assert_eq!(l["model"], "local");
    assert_eq!(l["strategy"], "compress");
    assert_eq!(l["compression_level"], 2);
    let out = l["optimized_text"].as_str().unwrap();
    assert!(
        out.contains("`code()`")
            && out.contains("\"quoted text\"")
            && out.contains("{{placeholder}}"),
        "{out}"
    );
    assert!(!out.contains("In order to"), "{out}");
    assert!(l["tokens_saved"].as_u64().unwrap() > 0);
    assert!(l["provider_usage"].is_null());
    assert_eq!(
        local.header("location"),
        Some(format!("/api/v1/optimize/history/{}", l["id"].as_str().unwrap()).as_str())
    );
    let marker = unique();
    let remote = optimize(
        &member,
        json!({"text": text_with(&marker), "provider": "openai"}),
    )
    .await
    .expect(201);
    assert_eq!(remote.data()["provider"], "openai");

    let history = get("/api/v1/optimize/history")
        .token(&member.access)
        .send()
        .await
        .expect(200);
    let ids: Vec<&str> = history
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            remote.data()["id"].as_str().unwrap(),
            l["id"].as_str().unwrap()
        ]
    );
    let only_local = get("/api/v1/optimize/history?provider=local")
        .token(&member.access)
        .send()
        .await
        .expect(200);
    assert_eq!(only_local.data().as_array().unwrap().len(), 1);
    get("/api/v1/optimize/history?provider=nope")
        .token(&member.access)
        .send()
        .await
        .problem(422, "validation_failed");

    // Members see their own; admins see everyone's and can filter by user.
    let other = add_user(&owner, "member").await;
    optimize(&other, json!({"text": "Another member's prompt, please."}))
        .await
        .expect(201);
    let mine = get("/api/v1/optimize/history")
        .token(&member.access)
        .send()
        .await
        .expect(200);
    assert_eq!(mine.data().as_array().unwrap().len(), 2);
    get(&format!(
        "/api/v1/optimize/history/{}",
        l["id"].as_str().unwrap()
    ))
    .token(&other.access)
    .send()
    .await
    .problem(404, "not_found");
    let all = get("/api/v1/optimize/history")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(all.data().as_array().unwrap().len(), 3);
    let filtered = get(&format!(
        "/api/v1/optimize/history?user_id={}",
        other.user_id
    ))
    .token(&owner.access)
    .send()
    .await
    .expect(200);
    assert_eq!(filtered.data().as_array().unwrap().len(), 1);

    let stats = get("/api/v1/optimize/stats")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    let s = stats.data();
    assert_eq!(s["requests"], 3, "{}", stats.text);
    assert!(s["tokens_saved"].as_u64().unwrap() > 0);
    let providers: Vec<&str> = s["by_provider"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["key"].as_str().unwrap())
        .collect();
    assert_eq!(providers, ["local", "openai"]);
    assert_eq!(s["by_day"].as_array().unwrap().len(), 1);

    // The author deletes it; another member cannot.
    let rid = remote.data()["id"].as_str().unwrap();
    delete(&format!("/api/v1/optimize/history/{rid}"))
        .token(&other.access)
        .send()
        .await
        .problem(404, "not_found");
    delete(&format!("/api/v1/optimize/history/{rid}"))
        .token(&member.access)
        .send()
        .await
        .expect(204);
    get(&format!("/api/v1/optimize/history/{rid}"))
        .token(&owner.access)
        .send()
        .await
        .problem(404, "not_found");
}

#[tokio::test]
async fn bad_input_is_a_422_naming_the_field() {
    let owner = register().await;
    let cases = [
        (json!({"text": "x", "colour": 1}), "colour"),
        (json!({"text": ""}), "text"),
        (json!({"text": "   "}), "text"),
        (json!({"text": "x".repeat(50_001)}), "text"),
        (json!({"text": "x", "strategy": "shrink"}), "strategy"),
        (
            json!({"text": "x", "compression_level": 4}),
            "compression_level",
        ),
        (json!({"text": "x", "provider": "mistral"}), "provider"),
        (json!({"text": "x", "provider": "openai"}), "provider"),
        (json!({"text": "x", "strategy": "clarify"}), "provider"),
        (
            json!({"text": "x", "fallbacks": ["local", "local"]}),
            "fallbacks[0]",
        ),
        (
            json!({"text": "x", "fallbacks": ["anthropic", "gemini", "deepseek", "local"]}),
            "fallbacks",
        ),
        (json!({"text": "x", "model": "gpt 4"}), "model"),
    ];
    for (body, field) in cases {
        let r = optimize(&owner, body.clone())
            .await
            .problem(422, "validation_failed");
        let fields: Vec<&str> = r.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert!(fields.contains(&field), "{body}: {}", r.text);
    }
    // The text may be exactly 50,000 characters.
    optimize(&owner, json!({"text": "word ".repeat(10_000)}))
        .await
        .expect(201);
    // Nothing failed was counted.
    assert_eq!(optimizations_used(&owner).await, 1);
}

#[tokio::test]
async fn a_rate_limited_provider_hands_over_to_the_fallback_and_lists_the_attempts() {
    let owner = register().await;
    put_provider(&owner, "openai", json!({"api_key": OPENAI_KEY}))
        .await
        .expect(200);
    put_provider(&owner, "anthropic", json!({"api_key": ANTHROPIC_KEY}))
        .await
        .expect(200);
    let text = text_with(&format!("MOCK-429 {}", unique()));
    let r = optimize(
        &owner,
        json!({"text": text, "provider": "openai", "fallbacks": ["anthropic", "local"]}),
    )
    .await
    .expect(201);
    let d = r.data();
    assert_eq!(d["provider"], "anthropic", "{}", r.text);
    let attempts = d["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0]["provider"], "openai");
    assert_eq!(attempts[0]["outcome"], "failed");
    assert_eq!(attempts[0]["status"], 429);
    assert_eq!(attempts[1]["provider"], "anthropic");
    assert_eq!(attempts[1]["outcome"], "succeeded");

    // A rejected answer (a placeholder dropped) hands over too; `local` never fails.
    let text = text_with(&format!("MOCK-DROP {}", unique()));
    let r = optimize(
        &owner,
        json!({"text": text, "provider": "openai", "fallbacks": ["local"]}),
    )
    .await
    .expect(201);
    assert_eq!(r.data()["provider"], "local", "{}", r.text);
    assert_eq!(r.data()["attempts"][0]["outcome"], "rejected");
    // With no fallback the original is kept, with a note, and nothing counts as saved.
    let r = optimize(&owner, json!({"text": text, "provider": "openai"}))
        .await
        .expect(201);
    assert_eq!(r.data()["optimized_text"], text.as_str());
    assert_eq!(r.data()["tokens_saved"], 0);
    assert!(r.data()["note"].is_string(), "{}", r.text);
}

#[tokio::test]
async fn all_providers_failing_is_a_502_a_timeout_a_504_and_neither_is_counted() {
    let owner = register().await;
    put_provider(
        &owner,
        "openai",
        json!({"api_key": "sk-bad-key-0123456789abcdef"}),
    )
    .await
    .expect(200);
    put_provider(&owner, "anthropic", json!({"api_key": ANTHROPIC_KEY}))
        .await
        .expect(200);
    let before = optimizations_used(&owner).await;
    let text = text_with(&format!("MOCK-500 {}", unique()));
    let r = optimize(
        &owner,
        json!({"text": text, "provider": "openai", "fallbacks": ["anthropic"]}),
    )
    .await
    .problem(502, "upstream_error");
    assert_eq!(r.body["provider_status"], 500, "{}", r.text);
    assert_eq!(r.body["attempts"][0]["status"], 401);
    assert!(
        !r.text.contains("sk-bad-key-0123456789abcdef"),
        "{}",
        r.text
    );
    assert!(!r.text.contains("0123456789abcdef"), "{}", r.text);

    let slow = text_with(&format!("MOCK-SLOW {}", unique()));
    optimize(&owner, json!({"text": slow, "provider": "anthropic"}))
        .await
        .problem(504, "upstream_timeout");
    assert_eq!(optimizations_used(&owner).await, before);
    let history = get("/api/v1/optimize/history")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(history.data().as_array().unwrap().len(), 0);

    // The key's failures are counted on the provider (never its text).
    let p = get("/api/v1/providers/openai")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert!(p.data()["failures"].as_i64().unwrap() >= 1, "{}", p.text);
    assert!(!p.text.contains("sk-bad-key-0123456789abcdef"));
    let test = post("/api/v1/providers/openai/test")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(test.data()["ok"], false);
    assert_eq!(test.data()["status"], 401);
    assert!(!test.text.contains("0123456789abcdef"), "{}", test.text);
    // Nor in either Worker's log.
    for key in ["0123456789abcdef", OPENAI_KEY, ANTHROPIC_KEY] {
        assert!(!server().logged(key), "a key was logged");
    }
}

#[tokio::test]
async fn five_failures_in_a_row_put_a_provider_in_a_cooldown() {
    let owner = register().await;
    put_provider(&owner, "deepseek", json!({"api_key": DEEPSEEK_KEY}))
        .await
        .expect(200);
    for _ in 0..5 {
        let text = text_with(&format!("MOCK-500 {}", unique()));
        optimize(
            &owner,
            json!({"text": text, "provider": "deepseek", "fallbacks": ["local"]}),
        )
        .await
        .expect(201);
    }
    let p = get("/api/v1/providers/deepseek")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(p.data()["failures"], 5);
    assert!(p.data()["cooldown_until"].is_string(), "{}", p.text);
    let marker = unique();
    let r = optimize(
        &owner,
        json!({"text": text_with(&marker), "provider": "deepseek", "fallbacks": ["local"]}),
    )
    .await
    .expect(201);
    assert_eq!(r.data()["attempts"][0]["outcome"], "skipped", "{}", r.text);
    assert_eq!(r.data()["provider"], "local");
    assert!(llm_calls("deepseek", &marker).await.is_empty());
}

#[tokio::test]
async fn five_concurrent_calls_with_three_units_left_get_three_201s_and_two_402s() {
    let owner = register().await;
    set_tenant(
        &owner.tenant_id,
        json!({"plan": "premium_custom", "quota_overrides": {"optimizations": 3}}),
    )
    .await
    .expect(200);
    let results = exclusive(join_all((0..5).map(|i| {
        let owner = owner.clone();
        async move {
            optimize(
                &owner,
                json!({"text": format!("Please write a very short note number {i}.")}),
            )
            .await
        }
    })))
    .await;
    let mut statuses: Vec<u16> = results.iter().map(|r| r.status).collect();
    statuses.sort();
    assert_eq!(
        statuses,
        [201, 201, 201, 402, 402],
        "{:?}",
        results.iter().map(|r| &r.text).collect::<Vec<_>>()
    );
    let refused = results.into_iter().find(|r| r.status == 402).unwrap();
    let refused = refused.problem(402, "quota_exceeded");
    assert_eq!(refused.body["metric"], "optimizations");
    assert_eq!(refused.body["limit"], 3);
    assert_eq!(refused.body["used"], 3);
    assert!(refused.body["resets_at"].is_string());
    assert_eq!(optimizations_used(&owner).await, 3);
}

#[tokio::test]
async fn an_idempotency_key_replay_spends_nothing() {
    let owner = register().await;
    let key = format!("opt-{}", unique());
    let body = json!({"text": "Please, in order to test, write a very short line."});
    let first = post("/api/v1/optimize")
        .token(&owner.access)
        .header("Idempotency-Key", &key)
        .json(body.clone())
        .send()
        .await
        .expect(201);
    let again = post("/api/v1/optimize")
        .token(&owner.access)
        .header("Idempotency-Key", &key)
        .json(body)
        .send()
        .await
        .expect(201);
    assert_eq!(first.data()["id"], again.data()["id"]);
    assert_eq!(optimizations_used(&owner).await, 1);
}

#[tokio::test]
async fn an_api_key_with_write_optimises_and_sees_its_own_history() {
    let owner = register().await;
    let created = post("/api/v1/api-keys")
        .token(&owner.access)
        .json(json!({"name": "server", "scopes": ["write"]}))
        .send()
        .await
        .expect(201);
    let key = created.data()["key"].as_str().unwrap().to_string();
    let r = post("/api/v1/optimize")
        .header("X-API-Key", &key)
        .json(json!({"text": "Please write a very short line, in order to test keys."}))
        .send()
        .await
        .expect(201);
    assert!(r.data()["user_id"].is_null());
    assert_eq!(r.data()["api_key_id"], created.data()["id"]);
    let reader = post("/api/v1/api-keys")
        .token(&owner.access)
        .json(json!({"name": "reader", "scopes": ["read"]}))
        .send()
        .await
        .expect(201);
    post("/api/v1/optimize")
        .header("X-API-Key", reader.data()["key"].as_str().unwrap())
        .json(json!({"text": "x"}))
        .send()
        .await
        .problem(403, "forbidden");
}

#[tokio::test]
async fn another_tenants_optimisation_and_batch_are_404() {
    let a = register().await;
    let b = register().await;
    let o = optimize(&a, json!({"text": "Please write a very short line."}))
        .await
        .expect(201);
    let id = o.data()["id"].as_str().unwrap();
    for path in [format!("/api/v1/optimize/history/{id}")] {
        get(&path)
            .token(&b.access)
            .send()
            .await
            .problem(404, "not_found");
        delete(&path)
            .token(&b.access)
            .send()
            .await
            .problem(404, "not_found");
    }
    let batch = post("/api/v1/optimize/batch")
        .token(&a.access)
        .json(json!({"items": [{"text": "Please write a very short line."}]}))
        .send()
        .await
        .expect(202);
    let bid = batch.data()["id"].as_str().unwrap();
    for path in [
        format!("/api/v1/optimize/batch/{bid}"),
        format!("/api/v1/optimize/batch/{bid}/items"),
    ] {
        get(&path)
            .token(&b.access)
            .send()
            .await
            .problem(404, "not_found");
    }
    post(&format!("/api/v1/optimize/batch/{bid}/cancel"))
        .token(&b.access)
        .send()
        .await
        .problem(404, "not_found");
    let list = get("/api/v1/optimize/batch")
        .token(&b.access)
        .send()
        .await
        .expect(200);
    assert_eq!(list.data().as_array().unwrap().len(), 0);
}

async fn batch(s: &Session, id: &str) -> Value {
    get(&format!("/api/v1/optimize/batch/{id}"))
        .token(&s.access)
        .send()
        .await
        .expect(200)
        .data()
        .clone()
}

/// Polls a batch until it leaves queued/running, backing off on 429 like a client.
async fn until_done(s: &Session, id: &str, secs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut seen_progress = Vec::new();
    loop {
        let r = get(&format!("/api/v1/optimize/batch/{id}"))
            .token(&s.access)
            .send()
            .await;
        if r.status == 429 {
            tokio::time::sleep(Duration::from_secs(2)).await;
            continue;
        }
        let b = r.expect(200).data().clone();
        seen_progress.push(b["progress"].as_u64().unwrap());
        if b["status"] == "completed" || b["status"] == "cancelled" {
            let mut sorted = seen_progress.clone();
            sorted.sort();
            assert_eq!(sorted, seen_progress, "progress only grows");
            return b;
        }
        assert!(Instant::now() < deadline, "batch not done: {b}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn callback_secret(owner: &Session, key: &str) -> String {
    patch("/api/v1/settings")
        .token(&owner.access)
        .json(json!({"callback_url": mock_url(&format!("/hook/{key}"))}))
        .send()
        .await
        .expect(200);
    post("/api/v1/settings/callback-secret")
        .token(&owner.access)
        .send()
        .await
        .expect(200)
        .data()["callback_secret"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_fifty_item_batch_completes_with_progress_and_a_signed_callback() {
    let owner = register().await;
    set_tenant(&owner.tenant_id, json!({"plan": "pro"}))
        .await
        .expect(200);
    put_provider(&owner, "openai", json!({"api_key": OPENAI_KEY}))
        .await
        .expect(200);
    let hook = unique();
    let secret = callback_secret(&owner, &hook).await;
    let marker = unique();
    let items: Vec<Value> = (0..50)
        .map(|i| json!({"text": text_with(&format!("{marker}-{i}")), "ref": format!("row-{i}")}))
        .collect();
    let r = post("/api/v1/optimize/batch")
        .token(&owner.access)
        .json(json!({"items": items, "provider": "openai", "fallbacks": ["local"]}))
        .send()
        .await
        .expect(202);
    let id = r.data()["id"].as_str().unwrap().to_string();
    assert_eq!(
        r.header("location"),
        Some(format!("/api/v1/optimize/batch/{id}").as_str())
    );
    assert_eq!(r.data()["total"], 50);
    // Every unit was reserved at once.
    assert_eq!(optimizations_used(&owner).await, 50);
    let done = until_done(&owner, &id, 120).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["succeeded"], 50);
    assert_eq!(done["progress"], 100);
    assert_eq!(optimizations_used(&owner).await, 50);

    let page = get(&format!("/api/v1/optimize/batch/{id}/items?limit=20"))
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    let first = page.data().as_array().unwrap();
    assert_eq!(first.len(), 20);
    assert_eq!(first[0]["position"], 0);
    assert_eq!(first[0]["ref"], "row-0");
    assert_eq!(first[19]["position"], 19);
    assert_eq!(first[0]["status"], "succeeded");
    assert!(first[0]["optimization"]["optimized_text"].is_string());
    assert_eq!(first[0]["optimization"]["batch_id"], id.as_str());

    let deadline = Instant::now() + Duration::from_secs(30);
    let call = loop {
        if let Some(c) = mock_calls(&hook).await.first() {
            break c.clone();
        }
        assert!(Instant::now() < deadline, "no callback arrived");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let event = verified_event(&secret, &call);
    assert_eq!(event["type"], "optimize.batch.completed");
    assert_eq!(event["data"]["id"], id.as_str());
    assert_eq!(event["data"]["succeeded"], 50);
    // One call per item: nothing ran twice.
    let calls = mock_calls("llm-openai").await;
    let ours = calls
        .iter()
        .filter(|c| c["body"].as_str().is_some_and(|b| b.contains(&marker)))
        .count();
    assert_eq!(ours, 50);
}

#[tokio::test]
async fn a_redelivered_item_runs_once() {
    let owner = register().await;
    put_provider(&owner, "openai", json!({"api_key": OPENAI_KEY}))
        .await
        .expect(200);
    let marker = unique();
    let r = post("/api/v1/optimize/batch")
        .token(&owner.access)
        .json(json!({"items": [{"text": text_with(&marker)}], "provider": "openai"}))
        .send()
        .await
        .expect(202);
    let id = r.data()["id"].as_str().unwrap().to_string();
    let done = until_done(&owner, &id, 60).await;
    assert_eq!(done["succeeded"], 1);
    // The same message again, as the queue would redeliver it: a stale outbox row the cron
    // sweep sends.
    let item = format!("{id}_000");
    let body = json!({"type": "optimize", "item_id": item})
        .to_string()
        .replace('\'', "''");
    d1_alone(move || {
        server().d1(&format!(
            "INSERT INTO outbox (id, queue, kind, body, created_ms, deliver_ms) \
             VALUES ('obx_redeliver_{}', 'jobs', 'optimize_item', '{body}', 0, 0)",
            unique()
        ))
    })
    .await;
    get("/__scheduled?cron=*/5+*+*+*+*")
        .send()
        .await
        .expect(200);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(llm_calls("openai", &marker).await.len(), 1);
    let history = get("/api/v1/optimize/history")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(history.data().as_array().unwrap().len(), 1);
    assert_eq!(optimizations_used(&owner).await, 1);
}

#[tokio::test]
async fn a_batch_item_that_keeps_failing_fails_once_refunded_with_a_dead_letter() {
    let owner = register().await;
    put_provider(&owner, "openai", json!({"api_key": OPENAI_KEY}))
        .await
        .expect(200);
    let r = post("/api/v1/optimize/batch")
        .token(&owner.access)
        .json(json!({"items": [
            {"text": text_with(&format!("MOCK-500 {}", unique()))},
            {"text": text_with(&unique())}
        ], "provider": "openai"}))
        .send()
        .await
        .expect(202);
    let id = r.data()["id"].as_str().unwrap().to_string();
    assert_eq!(optimizations_used(&owner).await, 2);
    let done = until_done(&owner, &id, 90).await;
    assert_eq!(
        (done["succeeded"].as_u64(), done["failed"].as_u64()),
        (Some(1), Some(1)),
        "{done}"
    );
    let items = get(&format!("/api/v1/optimize/batch/{id}/items"))
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    let failed = &items.data()[0];
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["attempts"], 3);
    assert!(
        failed["error"].as_str().unwrap().contains("openai"),
        "{failed}"
    );
    // Its unit was given back: one optimisation made, one counted.
    assert_eq!(optimizations_used(&owner).await, 1);
    let d = dead_letter(&owner.tenant_id, 30, "the failed item", |d| {
        d["kind"] == "optimize_item"
    })
    .await;
    assert!(
        d["message"]
            .as_str()
            .unwrap()
            .contains(&format!("{id}_000")),
        "{d}"
    );
}

#[tokio::test]
async fn cancelling_a_batch_refunds_its_queued_items() {
    let owner = register().await;
    set_tenant(&owner.tenant_id, json!({"plan": "starter"}))
        .await
        .expect(200);
    put_provider(&owner, "openai", json!({"api_key": OPENAI_KEY}))
        .await
        .expect(200);
    // Slow answers keep the items queued behind the provider's pace while we cancel.
    let items: Vec<Value> = (0..30)
        .map(|i| json!({"text": text_with(&format!("{}-{i}", unique()))}))
        .collect();
    let r = post("/api/v1/optimize/batch")
        .token(&owner.access)
        .json(json!({"items": items, "provider": "openai"}))
        .send()
        .await
        .expect(202);
    let id = r.data()["id"].as_str().unwrap().to_string();
    let c = post(&format!("/api/v1/optimize/batch/{id}/cancel"))
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(c.data()["status"], "cancelled");
    let cancelled = c.data()["cancelled"].as_u64().unwrap();
    assert!(cancelled > 0, "{}", c.text);
    // Running items still finish; then every unit not made is given back.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let b = batch(&owner, &id).await;
        if b["pending"] == 0 {
            let made = b["succeeded"].as_u64().unwrap();
            assert_eq!(
                made + b["cancelled"].as_u64().unwrap() + b["failed"].as_u64().unwrap(),
                30
            );
            assert_eq!(optimizations_used(&owner).await, made, "{b}");
            break;
        }
        assert!(Instant::now() < deadline, "items still pending: {b}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    post(&format!("/api/v1/optimize/batch/{id}/cancel"))
        .token(&owner.access)
        .send()
        .await
        .problem(409, "conflict");
}

#[tokio::test]
async fn batches_check_their_items_the_plan_and_the_allowance() {
    let owner = register().await;
    let post_batch = |body: Value| {
        let owner = owner.clone();
        async move {
            post("/api/v1/optimize/batch")
                .token(&owner.access)
                .json(body)
                .send()
                .await
        }
    };
    post_batch(json!({"items": []}))
        .await
        .problem(422, "validation_failed");
    let r = post_batch(json!({"items": [{"text": "ok"}, {"text": ""}]}))
        .await
        .problem(422, "validation_failed");
    assert_eq!(r.body["errors"][0]["field"], "items[1].text");
    let many: Vec<Value> = (0..101).map(|_| json!({"text": "x"})).collect();
    post_batch(json!({"items": many}))
        .await
        .problem(422, "validation_failed");
    // A free plan takes 10 items; 11 need `large_batches`.
    let eleven: Vec<Value> = (0..11)
        .map(|i| json!({"text": format!("Item {i}, please.")}))
        .collect();
    let r = post_batch(json!({"items": eleven}))
        .await
        .problem(402, "feature_not_in_plan");
    assert_eq!(r.body["feature"], "large_batches");
    assert_eq!(optimizations_used(&owner).await, 0);
    // Over the allowance: nothing is created.
    set_tenant(
        &owner.tenant_id,
        json!({"plan": "premium_custom", "quota_overrides": {"optimizations": 5}}),
    )
    .await
    .expect(200);
    let six: Vec<Value> = (0..6)
        .map(|i| json!({"text": format!("Item {i}, please.")}))
        .collect();
    post("/api/v1/optimize/batch")
        .token(&owner.access)
        .json(json!({"items": six}))
        .send()
        .await
        .problem(402, "quota_exceeded");
    let list = get("/api/v1/optimize/batch")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(list.data().as_array().unwrap().len(), 0);
    assert_eq!(optimizations_used(&owner).await, 0);
}

#[tokio::test]
async fn at_the_plan_limit_the_next_call_is_402_and_usage_shows_exactly_the_limit() {
    let owner = register().await;
    set_tenant(
        &owner.tenant_id,
        json!({"plan": "premium_custom", "quota_overrides": {"optimizations": 2}}),
    )
    .await
    .expect(200);
    for _ in 0..2 {
        optimize(&owner, json!({"text": "Please write a very short line."}))
            .await
            .expect(201);
    }
    optimize(&owner, json!({"text": "Please write a very short line."}))
        .await
        .problem(402, "quota_exceeded");
    let usage = get("/api/v1/billing/usage")
        .token(&owner.access)
        .send()
        .await
        .expect(200);
    assert_eq!(
        usage.data()["metrics"]["optimizations"]["used"],
        2,
        "{}",
        usage.text
    );
    assert_eq!(usage.data()["metrics"]["optimizations"]["limit"], 2);
}

//! The TypeScript client (`clients/typescript`, `@tenantry/client`) against this worker: the
//! document its types come from is the one the worker serves, and its Node tests (`node --test`,
//! compiled with the package's pinned `typescript`) log in, refresh after expiry, page, replay an
//! idempotent create, read a 422 as a typed error and receive a live notification. This test
//! makes their tenant, forges the expired token they refresh from, and fails with their output
//! when they do.

use std::path::PathBuf;
use std::process::{Command, Output};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::client::*;
use crate::harness::{root, server};

fn package() -> PathBuf {
    let dir = root().join("clients/typescript");
    assert!(
        dir.join("node_modules/typescript/bin/tsc").exists(),
        "clients/typescript has no node_modules: run `make client` (npm ci from its lockfile)"
    );
    dir
}

/// An access token with the claims of `token` but expired half an hour ago, signed with the
/// worker's key: what a client holds after 15 idle minutes.
fn expired_copy(token: &str) -> String {
    let payload = token.split('.').nth(1).expect("a JWT");
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).expect("JWT claims");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    claims["iat"] = json!(now - 3600);
    claims["exp"] = json!(now - 1800);
    let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let c = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    let mut mac = Hmac::<Sha256>::new_from_slice(server().jwt_secret.as_bytes()).unwrap();
    mac.update(format!("{h}.{c}").as_bytes());
    let s = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{h}.{c}.{s}")
}

fn output(what: &str, out: &Output) -> String {
    format!(
        "{what} exited with {}:\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn the_committed_openapi_document_is_the_one_the_worker_serves() {
    let served = get("/openapi.json").send().await.expect(200);
    let committed: Value = serde_json::from_slice(
        &std::fs::read(root().join("clients/typescript/openapi.json"))
            .expect("clients/typescript/openapi.json"),
    )
    .expect("the committed document is JSON");
    assert!(
        served.body == committed,
        "the worker serves another document than clients/typescript/openapi.json: run `make build` and `make client`"
    );
}

#[tokio::test]
async fn the_typescript_client_passes_its_tests_against_the_worker() {
    let dir = package();
    let owner = register().await;
    let expired = expired_copy(&owner.access);
    // The forged token is refused as expired, so the client's refresh is what makes it work.
    get("/api/v1/auth/me")
        .token(&expired)
        .send()
        .await
        .problem(401, "token_expired");

    let tsc = Command::new("node")
        .arg("node_modules/typescript/bin/tsc")
        .args(["-p", "tsconfig.test.json"])
        .current_dir(&dir)
        .output()
        .expect("node runs the pinned tsc");
    assert!(tsc.status.success(), "{}", output("tsc", &tsc));

    // Its requests are ordinary traffic: a burst of another test waits for them.
    let _turn = ordinary_traffic();
    let node = Command::new("node")
        .args(["--test", "--test-reporter=spec", ".test-build/test/"])
        .current_dir(&dir)
        .env("TENANTRY_BASE_URL", &server().base)
        .env("TENANTRY_EMAIL", &owner.email)
        .env("TENANTRY_PASSWORD", &owner.password)
        .env("TENANTRY_EXPIRED_TOKEN", &expired)
        .env("TENANTRY_REFRESH_TOKEN", &owner.refresh)
        .env("TENANTRY_CLIENT_IP", random_ip())
        .output()
        .expect("node --test");
    let report = output("node --test", &node);
    // Shown with `--nocapture` (and with a failure): which client tests ran.
    println!("{report}");
    assert!(node.status.success(), "{report}");
    // Every test ran and passed (a test file that failed to load would show as no tests).
    let text = String::from_utf8_lossy(&node.stdout);
    assert!(
        text.contains("ℹ fail 0") && !text.contains("ℹ pass 0"),
        "{report}"
    );
}

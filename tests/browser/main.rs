//! Browser tier: the pages the product serves, in Debian's Chromium (playwright-core), against
//! the real worker the integration harness starts. Each `*.test.mjs` file here is one page's
//! suite, run by Node's built-in test runner.

/// The harness's knobs (see tests/api/main.rs): none here but the log's name.
pub const EXTRA_VARS: &str = "";
pub const LOG_SUFFIX: &str = "-browser";

#[path = "../api/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::process::Command;

#[test]
fn the_served_pages_work_in_chromium() {
    let root = env!("CARGO_MANIFEST_DIR");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: `make tools` installs Debian's chromium package"
    );
    let server = harness::server();
    // Node's test runner writes its report straight to this process's stdout.
    let status = Command::new("node")
        .args(["--test", "--test-reporter=spec", "--test-concurrency=1"])
        .arg(format!("{root}/tests/browser/"))
        .current_dir(root)
        .env("BASE_URL", &server.base)
        .env("DEMO_PASSWORD", &server.demo_password)
        .env("CHROMIUM", &chromium)
        .env("SCREENSHOT_DIR", format!("{root}/target"))
        .status()
        .expect("node runs the browser tests");
    assert!(status.success(), "browser tests failed (see above)");
}

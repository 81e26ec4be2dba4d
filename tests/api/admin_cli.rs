//! `scripts/create_admin.py` (`make admin`) against a fresh, migrated local D1 state of its own
//! (`--local --persist-to`), not the shared test worker: it creates exactly one platform admin
//! with a hash in the Worker's format, refuses a second run, refuses a policy-breaking password
//! before touching D1, and never prints the password.
//!
//! That the Worker accepts the hash is not repeated here: the script hashes with seed.py's
//! `pw_hash` (imported, not copied), and the harness seeds its platform admin with that same
//! function, so every existing log-in test (e.g. `client::admin()`) already proves it.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::harness::{random_hex, root, wrangler};

const PASSWORD_ENV: &str = "TENANTRY_ADMIN_PASSWORD";

struct Local {
    dir: PathBuf,
    state: PathBuf,
    config: PathBuf,
}

impl Drop for Local {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wrangler_cmd() -> Command {
    let mut c = Command::new(wrangler());
    c.env("WRANGLER_SEND_METRICS", "false").env("CI", "true");
    c
}

fn migrated() -> Local {
    let root = root();
    let dir = std::env::temp_dir().join(format!("tenantry-admin-cli-{}", random_hex(4)));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let configs = Command::new("python3")
        .arg(root.join("scripts/local_configs.py"))
        .arg(&dir)
        .status()
        .expect("python3 scripts/local_configs.py");
    assert!(configs.success(), "scripts/local_configs.py failed");
    let local = Local {
        state: dir.join("state"),
        config: dir.join("wrangler.toml"),
        dir,
    };
    let out = wrangler_cmd()
        .args(["d1", "migrations", "apply", "DB", "--local", "--persist-to"])
        .arg(&local.state)
        .arg("-c")
        .arg(&local.config)
        .output()
        .expect("wrangler d1 migrations apply");
    assert!(out.status.success(), "migrations: {}", text(&out));
    local
}

fn create_admin(local: &Local, email: &str, password: &str) -> Output {
    Command::new("python3")
        .arg(root().join("scripts/create_admin.py"))
        .arg(email)
        .args(["--password-env", PASSWORD_ENV, "--local", "--persist-to"])
        .arg(&local.state)
        .arg("-c")
        .arg(&local.config)
        .env(PASSWORD_ENV, password)
        .stdin(Stdio::null())
        .output()
        .expect("python3 scripts/create_admin.py")
}

fn query(local: &Local, sql: &str) -> Vec<Value> {
    let out = wrangler_cmd()
        .args(["d1", "execute", "DB", "--local", "--persist-to"])
        .arg(&local.state)
        .arg("-c")
        .arg(&local.config)
        .args(["--json", "--command", sql])
        .output()
        .expect("wrangler d1 execute");
    assert!(out.status.success(), "query: {}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("wrangler --json output");
    v[0]["results"].as_array().expect("results").clone()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn admins(local: &Local) -> Vec<Value> {
    query(
        local,
        "SELECT email, role, status, tenant_id, password_hash FROM users WHERE role = 'platform_admin'",
    )
}

#[test]
fn create_admin_makes_one_platform_admin_and_refuses_a_second() {
    let local = migrated();
    let password = format!("first-admin-{}", random_hex(8));

    // A password the Worker would refuse is refused before D1 is asked.
    let short = create_admin(&local, "root@example.com", "short");
    assert!(!short.status.success());
    assert!(
        text(&short).contains("at least 8 characters"),
        "{}",
        text(&short)
    );

    let out = create_admin(&local, "Root@Example.com", &password);
    let said = text(&out);
    assert!(out.status.success(), "create_admin failed: {said}");
    assert!(
        said.contains("root@example.com") && said.contains("created"),
        "{said}"
    );
    assert!(
        !said.contains(&password),
        "the password was printed: {said}"
    );
    assert!(
        !said.contains("pbkdf2_sha256"),
        "the hash was printed: {said}"
    );

    let rows = admins(&local);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let admin = &rows[0];
    assert_eq!(admin["email"], "root@example.com");
    assert_eq!(admin["status"], "active");
    assert_eq!(admin["tenant_id"], "ten_platform");
    let hash = admin["password_hash"].as_str().unwrap();
    let parsed = tenantry::auth::password::parse(hash).expect("a hash the Worker parses");
    assert_eq!(parsed.iterations, tenantry::auth::password::ITERATIONS);
    assert_eq!(parsed.salt.len(), 16);
    let tenant = query(
        &local,
        "SELECT slug, status FROM tenants WHERE id = 'ten_platform'",
    );
    assert_eq!(tenant[0]["slug"], "platform");
    let audit = query(
        &local,
        "SELECT action, target_type FROM audit_logs WHERE tenant_id = 'ten_platform'",
    );
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["action"], "user.created");

    // A second run, even for another e-mail, is refused and changes nothing.
    let other = format!("second-admin-{}", random_hex(8));
    let again = create_admin(&local, "other@example.com", &other);
    let said = text(&again);
    assert!(
        !again.status.success(),
        "a second admin was created: {said}"
    );
    assert!(
        said.contains("refused: a platform admin already exists"),
        "{said}"
    );
    assert!(!said.contains(&other), "the password was printed: {said}");
    let rows = admins(&local);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["password_hash"].as_str(), Some(hash));
}

//! Starts one real worker for the whole test binary: `wrangler dev` on a free port with a fresh
//! `--persist-to` directory, migrated and seeded, with its own secrets. Tests talk HTTP to it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub struct Server {
    pub base: String,
    pub admin_email: String,
    pub admin_password: String,
    pub demo_password: String,
    pub jwt_secret: String,
    /// The mock upstream (scripts/mock_upstream.py): workflow steps and callbacks call it.
    pub mock: String,
    /// The worker's `--persist-to` directory (local D1 lives under it) and its config, for
    /// `d1` (tests that set up what no route can, such as an upload idle for a day).
    pub state: PathBuf,
    config: PathBuf,
    log: PathBuf,
    _child: Child,
    _mock: Child,
}

static SERVER: OnceLock<Server> = OnceLock::new();

/// The test worker's Stripe secret key (the mock's Stripe stand-in checks it).
pub const STRIPE_KEY: &str = "sk_test_harness_4eC39HqLyjWDarjtT1zdp7dc";
/// The webhook signing secret Stripe signs with now, and the one it used before rotation:
/// `STRIPE_WEBHOOK_SECRET` lists both.
pub const STRIPE_SECRET: &str = "whsec_harness_current_5b1f0c";
pub const STRIPE_OLD_SECRET: &str = "whsec_harness_previous_9d2e7a";
/// The test worker's VAPID subject (its key is generated per run, see `vapid_private_key`).
pub const VAPID_SUBJECT: &str = "mailto:push-tests@test.local";

/// A fresh VAPID private key: a random P-256 scalar, base64url as web-push tools print it.
fn vapid_private_key() -> String {
    use base64::Engine;
    loop {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).expect("random bytes");
        if p256::SecretKey::from_slice(&b).is_ok() {
            return base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        }
    }
}

pub fn server() -> &'static Server {
    SERVER.get_or_init(start)
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).expect("random bytes");
    hex::encode(buf)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn wrangler() -> PathBuf {
    let w = root().join("node_modules/.bin/wrangler");
    assert!(
        w.exists(),
        "node_modules/.bin/wrangler is missing: run `make test` (it installs the pinned tools)"
    );
    w
}

fn start() -> Server {
    let root = root();
    for shim in ["build/api/worker/shim.mjs", "build/jobs/worker/shim.mjs"] {
        assert!(
            root.join(shim).exists(),
            "{shim} is missing: run `make test` (it builds both Workers first)"
        );
    }
    let dir = std::env::temp_dir().join(format!(
        "tenantry-test-{}-{}",
        std::process::id(),
        random_hex(4)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");

    // Private copies of both Workers' configs, side by side, so both read this directory's
    // .dev.vars.
    run(
        Command::new("python3")
            .arg(root.join("scripts/local_configs.py"))
            .arg(&dir),
        "scripts/local_configs.py",
    );
    let mock_port = free_port();
    let mock = format!("http://127.0.0.1:{mock_port}");
    let mock_child = start_mock(&root, mock_port, &dir);
    let admin_email = "admin@test.local".to_string();
    let admin_password = format!("admin-{}", random_hex(8));
    let demo_password = format!("demo-{}", random_hex(8));
    let jwt_secret = random_hex(32);
    let vars = format!(
        "JWT_SECRET=\"{jwt_secret}\"\nENCRYPTION_KEY=\"{}\"\nADMIN_EMAIL=\"{admin_email}\"\n\
         ADMIN_PASSWORD=\"{admin_password}\"\nDEMO_PASSWORD=\"{demo_password}\"\n\
         ALLOWED_ORIGINS=\"https://app.example.com\"\nGRAPH_API_BASE=\"{mock}\"\n\
         SEND_RATE_PER_SEC=\"2\"\nOCR_API_URL=\"{mock}/ocr\"\nMEDIA_MAX_BYTES=\"6291456\"\nMEDIA_MAX_BYTES_STARTER=\"7340032\"\nUPLOAD_MAX_REQUEST_BYTES=\"1048576\"\n\
         STORAGE_QUOTA_BYTES=\"12582912\"\nEGRESS_ALLOW=\"127.0.0.1:{mock_port}\"\n\
         STRIPE_API_BASE=\"{mock}/stripe\"\nSTRIPE_SECRET_KEY=\"{STRIPE_KEY}\"\n\
         STRIPE_WEBHOOK_SECRET=\"{STRIPE_OLD_SECRET},{STRIPE_SECRET}\"\n\
         STRIPE_PRICE_STARTER=\"price_test_starter\"\nSTRIPE_PRICE_PRO=\"price_test_pro\"\n\
         OPENAI_API_BASE=\"{mock}/llm/openai\"\nANTHROPIC_API_BASE=\"{mock}/llm/anthropic\"\n\
         DEEPSEEK_API_BASE=\"{mock}/llm/deepseek\"\nGEMINI_API_BASE=\"{mock}/llm/gemini\"\n\
         PROVIDER_TIMEOUT_SECS=\"3\"\nEMAIL_API_URL=\"{mock}/email/v3/mail/send\"\n\
         EMAIL_API_KEY=\"SG.harness-key-5e7d\"\nEMAIL_FROM=\"no-reply@test.local\"\n\
         APP_BASE_URL=\"https://app.example.com\"\nEXPORT_MAX_ROWS=\"1500\"\nVAPID_PRIVATE_KEY=\"{}\"\n\
         VAPID_SUBJECT=\"{VAPID_SUBJECT}\"\n\
         OAUTH_GOOGLE_CLIENT_ID=\"tenantry-local-google\"\nOAUTH_GOOGLE_CLIENT_SECRET=\"local-google-secret\"\n\
         OAUTH_GOOGLE_ISSUER=\"{mock}/oauth/google\"\nOAUTH_GITHUB_CLIENT_ID=\"tenantry-local-github\"\n\
         OAUTH_GITHUB_CLIENT_SECRET=\"local-github-secret\"\nOAUTH_GITHUB_BASE=\"{mock}/oauth/github\"\n\
         OAUTH_GITHUB_API_BASE=\"{mock}/oauth/github/api\"\n\
         OAUTH_REDIRECT_ALLOW=\"https://app.example.com/oauth/done,https://app.example.com/oauth/other?from=test\"\n{}",
        random_hex(32),
        vapid_private_key(),
        crate::EXTRA_VARS
    );
    std::fs::write(dir.join(".dev.vars"), vars).expect("write .dev.vars");

    let state = dir.join("state");
    let cfg = dir.join("wrangler.toml");
    let wr = wrangler();
    run(
        Command::new(&wr)
            .args(["d1", "migrations", "apply", "DB", "--local", "--persist-to"])
            .arg(&state)
            .arg("-c")
            .arg(&cfg)
            .env("CI", "true")
            .env("WRANGLER_SEND_METRICS", "false"),
        "wrangler d1 migrations apply",
    );
    let seed = Command::new("python3")
        .arg(root.join("scripts/seed.py"))
        .arg("--vars")
        .arg(dir.join(".dev.vars"))
        .arg("--provider-url")
        .arg(&mock)
        .output()
        .expect("python3 scripts/seed.py");
    assert!(
        seed.status.success(),
        "seed.py: {}",
        String::from_utf8_lossy(&seed.stderr)
    );
    std::fs::write(dir.join("seed.sql"), &seed.stdout).expect("write seed.sql");
    run(
        Command::new(&wr)
            .args(["d1", "execute", "DB", "--local", "--persist-to"])
            .arg(&state)
            .arg("-c")
            .arg(&cfg)
            .arg("--file")
            .arg(dir.join("seed.sql"))
            .env("WRANGLER_SEND_METRICS", "false"),
        "wrangler d1 execute (seed)",
    );
    // The shop tenant's demo files, as `make seed` puts them into local R2.
    let objects = Command::new("python3")
        .arg(root.join("scripts/seed.py"))
        .arg("--r2-objects")
        .output()
        .expect("python3 scripts/seed.py --r2-objects");
    for line in String::from_utf8_lossy(&objects.stdout).lines() {
        let [key, file, content_type] = line.split('\t').collect::<Vec<_>>()[..] else {
            panic!("seed.py --r2-objects printed {line:?}");
        };
        run(
            Command::new(&wr)
                .args(["r2", "object", "put"])
                .arg(format!("tenantry-media/{key}"))
                .arg("--file")
                .arg(root.join(file))
                .args(["--content-type", content_type, "--local", "--persist-to"])
                .arg(&state)
                .arg("-c")
                .arg(&cfg)
                .env("WRANGLER_SEND_METRICS", "false"),
            "wrangler r2 object put (seed)",
        );
    }

    let port = free_port();
    // Kept outside the temp dir so it survives the run for post-mortems.
    let log = root.join(format!("target/wrangler-test{}.log", crate::LOG_SUFFIX));
    // The wrapper puts wrangler (and its workerd) in its own process group and ends the group
    // when this test process goes away, however it ends.
    let script = format!(
        "set -m; \"{wr}\" dev -c \"{cfg}\" -c \"{jobs}\" --port {port} --ip 127.0.0.1 --persist-to \"{state}\" \
         --test-scheduled --log-level info > \"{log}\" 2>&1 & W=$!; \
         trap 'kill -- -$W 2>/dev/null; rm -rf \"{dir}\"' EXIT; \
         while kill -0 {parent} 2>/dev/null && kill -0 $W 2>/dev/null; do sleep 0.5; done",
        wr = wr.display(),
        cfg = cfg.display(),
        jobs = dir.join("jobs.toml").display(),
        state = state.display(),
        log = log.display(),
        dir = dir.display(),
        parent = std::process::id(),
    );
    let child = Command::new("bash")
        .arg("-c")
        .arg(script)
        .env("WRANGLER_SEND_METRICS", "false")
        // Offline: use the placeholder `Request.cf` instead of fetching it (and reloading).
        .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn wrangler dev");

    let base = format!("http://127.0.0.1:{port}");
    wait_ready(port, &log);
    Server {
        base,
        admin_email,
        admin_password,
        demo_password,
        jwt_secret,
        mock,
        state: state.clone(),
        config: cfg,
        log: log.clone(),
        _child: child,
        _mock: mock_child,
    }
}

impl Server {
    /// Whether the worker logged a Rust panic (its hook logs `"level":"panic"`) in this run.
    pub fn worker_panicked(&self) -> bool {
        std::fs::read_to_string(&self.log)
            .map(|l| l.contains("\"level\":\"panic\""))
            .unwrap_or(false)
    }

    /// Whether both Workers' log of this run mentions `needle` anywhere (a secret never should).
    pub fn logged(&self, needle: &str) -> bool {
        std::fs::read_to_string(&self.log)
            .map(|l| l.contains(needle))
            .unwrap_or(false)
    }

    /// Runs SQL against the running worker's local D1 (as `wrangler d1 execute --local` does)
    /// and returns the rows of its last statement.
    pub fn d1(&self, sql: &str) -> Vec<serde_json::Value> {
        let run = || {
            Command::new(wrangler())
                .args(["d1", "execute", "DB", "--local", "--persist-to"])
                .arg(&self.state)
                .arg("-c")
                .arg(&self.config)
                .args(["--json", "--command", sql])
                .env("WRANGLER_SEND_METRICS", "false")
                .stdin(Stdio::null())
                .output()
                .expect("wrangler d1 execute")
        };
        // The worker's background work (queue consumers, the usage meters' flush alarms) may
        // hold the database for a moment even while no test request is in flight.
        let mut out = run();
        for _ in 0..5 {
            let text = String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr);
            if out.status.success() || !(text.contains("SQLITE_BUSY") || text.contains("locked")) {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
            out = run();
        }
        assert!(
            out.status.success(),
            "d1 {sql}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("--json output");
        v.as_array()
            .and_then(|a| a.last())
            .and_then(|r| r["results"].as_array())
            .cloned()
            .unwrap_or_default()
    }
}

/// The mock upstream, ended (like wrangler) when this test process goes away.
fn start_mock(root: &Path, port: u16, dir: &Path) -> Child {
    let script = format!(
        "python3 \"{py}\" --port {port} > \"{log}\" 2>&1 & M=$!; trap 'kill $M 2>/dev/null' EXIT; \
         while kill -0 {parent} 2>/dev/null && kill -0 $M 2>/dev/null; do sleep 0.5; done",
        py = root.join("scripts/mock_upstream.py").display(),
        log = dir.join("mock.log").display(),
        parent = std::process::id(),
    );
    let child = Command::new("bash")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn the mock upstream");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the mock upstream did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}

fn wait_ready(port: u16, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = s.write_all(
                b"GET /health/ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            );
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            if buf.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!(
        "the worker did not become ready on port {port}; wrangler said:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

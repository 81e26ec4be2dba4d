//! A small HTTP client for the tests, plus helpers that create a fresh tenant per test.

use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::server;

pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
    pub bytes: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status, printing the body when it differs.
    #[track_caller]
    pub fn expect(self, status: u16) -> Resp {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        self
    }

    /// Asserts a problem+json answer with this status and code.
    #[track_caller]
    pub fn problem(self, status: u16, code: &str) -> Resp {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "not problem+json: {}",
            self.text
        );
        assert_eq!(self.body["code"], code, "body: {}", self.text);
        assert_eq!(self.body["status"], status);
        assert!(self.body["request_id"]
            .as_str()
            .is_some_and(|s| !s.is_empty()));
        self
    }

    pub fn data(&self) -> &Value {
        &self.body["data"]
    }
}

/// Bursts run alone: `wrangler dev`'s local proxy drops requests that queue behind a burst on a
/// small machine (it answers 503 "worker restarted mid-request"). Ordinary requests hold the
/// read side while in flight; a burst holds the write side (see `exclusive`).
static TRAFFIC: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Runs `burst` while no other test has a request in flight. Holding the lock across awaits is
/// the point: each test runs on its own thread and runtime, so only other tests wait.
#[allow(clippy::await_holding_lock)]
pub async fn exclusive<T>(burst: impl std::future::Future<Output = T>) -> T {
    let _alone = TRAFFIC.write().unwrap_or_else(|e| e.into_inner());
    BURSTING.with(|b| b.set(true));
    let out = burst.await;
    BURSTING.with(|b| b.set(false));
    out
}

/// Holds the ordinary side of `TRAFFIC` for requests that do not go through `send` (a child
/// process such as the TypeScript client's tests): bursts wait until the guard is dropped.
pub fn ordinary_traffic() -> std::sync::RwLockReadGuard<'static, ()> {
    TRAFFIC.read().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` (SQL on the worker's local D1 from outside, see `Server::d1`) while no test
/// request is in flight: the runtime's SQLite answers SQLITE_BUSY instead of waiting when
/// another process holds the database, which would fail an unrelated test's request.
pub async fn d1_alone<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    exclusive(async { tokio::task::spawn_blocking(f).await.expect("d1 call") }).await
}

thread_local! {
    static BURSTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

pub struct Req {
    method: Method,
    path: String,
    token: Option<String>,
    body: Option<Vec<u8>>,
    content_type: Option<String>,
    headers: Vec<(String, String)>,
    follow_redirects: bool,
}

pub fn req(method: &str, path: &str) -> Req {
    Req {
        method: Method::from_bytes(method.as_bytes()).expect("method"),
        path: path.to_string(),
        token: None,
        body: None,
        content_type: None,
        headers: Vec::new(),
        follow_redirects: true,
    }
}

pub fn get(path: &str) -> Req {
    req("GET", path)
}
pub fn post(path: &str) -> Req {
    req("POST", path)
}
pub fn put(path: &str) -> Req {
    req("PUT", path)
}
pub fn patch(path: &str) -> Req {
    req("PATCH", path)
}
pub fn delete(path: &str) -> Req {
    req("DELETE", path)
}

impl Req {
    pub fn token(mut self, token: &str) -> Req {
        self.token = Some(token.to_string());
        self
    }

    pub fn json(mut self, body: Value) -> Req {
        self.body = Some(serde_json::to_vec(&body).unwrap());
        self.content_type = Some("application/json".into());
        self
    }

    pub fn raw(mut self, body: &[u8], content_type: &str) -> Req {
        self.body = Some(body.to_vec());
        self.content_type = Some(content_type.into());
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Answers a 3xx as it is (its `Location` to read) instead of following it.
    pub fn no_redirects(mut self) -> Req {
        self.follow_redirects = false;
        self
    }

    #[allow(clippy::await_holding_lock)] // see TRAFFIC
    pub async fn send(self) -> Resp {
        // Requests of the burst itself (same thread) pass; everyone else waits for it.
        let _turn = if BURSTING.with(|b| b.get()) {
            None
        } else {
            Some(TRAFFIC.read().unwrap_or_else(|e| e.into_inner()))
        };
        let attempt = || {
            let client = if self.follow_redirects {
                reqwest::Client::new()
            } else {
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .expect("a reqwest client")
            };
            let mut rb = client.request(
                self.method.clone(),
                format!("{}{}", server().base, self.path),
            );
            if let Some(t) = &self.token {
                rb = rb.bearer_auth(t);
            }
            if let Some(ct) = &self.content_type {
                rb = rb.header("Content-Type", ct);
            }
            for (k, v) in &self.headers {
                rb = rb.header(k, v);
            }
            if let Some(b) = &self.body {
                rb = rb.body(b.clone());
            }
            rb.send()
        };
        let mut r = attempt().await.expect("request reaches the worker");
        // The local proxy's own 503 when its connection to the runtime broke under load (not an
        // answer of the worker): sent once more, unless the worker panicked, which is a failure.
        if r.status() == 503
            && r.headers()
                .get("content-type")
                .is_none_or(|t| t != "application/problem+json")
        {
            let text = r.text().await.unwrap_or_default();
            assert!(
                text.starts_with("Your worker restarted mid-request")
                    && !server().worker_panicked(),
                "503 from the local runtime: {text}"
            );
            eprintln!(
                "note: the local proxy reset mid-request ({} {}); sent again",
                self.method, self.path
            );
            r = attempt().await.expect("request reaches the worker");
        }
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            text,
            bytes,
        }
    }
}

/// A unique suffix for e-mails and slugs.
pub fn unique() -> String {
    let mut b = [0u8; 5];
    getrandom::fill(&mut b).unwrap();
    hex::encode(b)
}

/// A client address of its own (the edge sends it as `CF-Connecting-IP`), so per-address
/// budgets of one test do not meet another's.
pub fn random_ip() -> String {
    let mut b = [0u8; 3];
    getrandom::fill(&mut b).unwrap();
    format!("10.{}.{}.{}", b[0], b[1], b[2].max(1))
}

/// A logged-in user of a freshly registered tenant (the owner).
#[derive(Clone, Debug)]
pub struct Session {
    pub access: String,
    pub refresh: String,
    pub user_id: String,
    pub tenant_id: String,
    pub email: String,
    pub password: String,
}

pub async fn register() -> Session {
    register_with(&format!("owner-{}@example.com", unique())).await
}

/// `register` with a chosen e-mail (tests that need to know it up front).
pub async fn register_with(email: &str) -> Session {
    let u = unique();
    let password = "correct horse battery".to_string();
    let r = post("/api/v1/auth/register")
        .header("CF-Connecting-IP", &random_ip())
        .json(json!({
            "email": email, "password": password, "full_name": "Olga Owner",
            "organization_name": format!("Org {u}"), "organization_slug": format!("org-{u}")
        }))
        .send()
        .await
        .expect(201);
    session_from(r.data(), email, &password)
}

pub fn session_from(data: &Value, email: &str, password: &str) -> Session {
    Session {
        access: data["access_token"].as_str().unwrap().to_string(),
        refresh: data["refresh_token"].as_str().unwrap().to_string(),
        user_id: data["user"]["id"].as_str().unwrap().to_string(),
        tenant_id: data["user"]["tenant_id"].as_str().unwrap().to_string(),
        email: email.to_string(),
        password: password.to_string(),
    }
}

pub async fn login(email: &str, password: &str) -> Resp {
    post("/api/v1/auth/login")
        .json(json!({"email": email, "password": password}))
        .send()
        .await
}

pub async fn admin() -> Session {
    let s = server();
    let r = login(&s.admin_email, &s.admin_password).await.expect(200);
    session_from(r.data(), &s.admin_email, &s.admin_password)
}

/// Waits up to `secs` for the tenant's dead letter that `matches` (as the platform admin sees
/// it in `/admin/errors`) and returns it; fails the test with `what` when none came.
pub async fn dead_letter(
    tenant_id: &str,
    secs: u64,
    what: &str,
    matches: impl Fn(&Value) -> bool,
) -> Value {
    let admin = admin().await;
    let path = format!("/api/v1/admin/errors?source=dead_letter&tenant_id={tenant_id}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let r = get(&path).token(&admin.access).send().await.expect(200);
        if let Some(d) = r.data().as_array().unwrap().iter().find(|d| matches(d)) {
            return d.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no dead letter for {what}: {}",
            r.text
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

/// Adds a user with `role` to the session's tenant (through the platform admin) and logs in.
pub async fn add_user(owner: &Session, role: &str) -> Session {
    let admin = admin().await;
    let email = format!("{role}-{}@example.com", unique());
    let password = "another good password";
    post("/api/v1/admin/users")
        .token(&admin.access)
        .json(
            json!({"tenant_id": owner.tenant_id, "email": email, "password": password,
                     "full_name": format!("A {role}"), "role": role}),
        )
        .send()
        .await
        .expect(201);
    let r = login(&email, password).await.expect(200);
    session_from(r.data(), &email, password)
}

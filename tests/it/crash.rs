//! The real `baton` binary under failure: killed with SIGKILL while an
//! `http` step is in flight, and two server processes sharing one
//! PostgreSQL. Sessions complete, steps run at least once, sessions
//! advance exactly once, and no event is lost.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use crate::testapp::{Backend, fresh_database_url};

const BIN: &str = env!("CARGO_BIN_EXE_baton");

/// A `baton serve` process on a free port.
pub(crate) struct Server {
    child: Child,
    pub base: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    async fn start(database_url: &str, flows: &Path) -> Server {
        Self::start_with(database_url, flows, &[]).await
    }

    /// With `extra` arguments after the usual ones.
    pub(crate) async fn start_with(database_url: &str, flows: &Path, extra: &[&str]) -> Server {
        Self::start_logged(database_url, flows, extra, &[], None).await
    }

    /// With `extra` arguments, `env` variables, and standard output (the
    /// log) written to `log` instead of dropped.
    pub(crate) async fn start_logged(
        database_url: &str,
        flows: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        log: Option<&Path>,
    ) -> Server {
        let port = free_port();
        let stdout = match log {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("log file")),
            None => Stdio::null(),
        };
        let child = Command::new(BIN)
            .args(["--addr", &format!("127.0.0.1:{port}")])
            .args(["--database-url", database_url])
            .arg("--flows")
            .arg(flows)
            .arg("--flags")
            .arg(flows.join("no-flags"))
            .arg("--experiments")
            .arg(flows.join("no-experiments"))
            .args(["--task-lease-ms", "1500", "--task-poll-ms", "100"])
            .args(["--step-budget-ms", "0", "--allow-hosts", "127.0.0.1"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(stdout)
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start baton");
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = client.get(format!("{base}/healthz")).send().await
                && r.status().is_success()
            {
                return Server { child, base };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("baton did not become healthy on {base}");
    }

    pub(crate) async fn gql(&self, query: &str, variables: Value, token: Option<&str>) -> Value {
        let mut req = reqwest::Client::new()
            .post(format!("{}/graphql", self.base))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap().json().await.unwrap()
    }

    async fn start_session(&self, user: &str) -> (String, String) {
        let r = self
            .gql(
                "mutation($u: ID!) { startFlow(input: {flowId: \"chain\", user: {id: $u}}) { id token } }",
                json!({ "u": user }),
                None,
            )
            .await;
        let s = &r["data"]["startFlow"];
        (
            s["id"].as_str().expect("session").to_string(),
            s["token"].as_str().unwrap().to_string(),
        )
    }

    async fn go(&self, id: &str, token: &str) -> Value {
        let r = self
            .gql(
                "mutation($s: ID!) { submit(input: {sessionId: $s, screenId: \"begin\", action: \"go\"}) { status screen { id } } }",
                json!({ "s": id }),
                Some(token),
            )
            .await;
        r["data"]["submit"].clone()
    }

    async fn status(&self, id: &str, token: &str) -> Value {
        let r = self
            .gql(
                "query($s: ID!) { session(id: $s) { status screen { id title } } }",
                json!({ "s": id }),
                Some(token),
            )
            .await;
        r["data"]["session"].clone()
    }

    /// A session of `testapp::GREETING_FLOW` from start to end.
    pub(crate) async fn walk_greeting(&self, user: &str) {
        let r = self
            .gql(
                "mutation($u: ID!) { startFlow(input: {flowId: \"greeting\", user: {id: $u}}) { id token } }",
                json!({ "u": user }),
                None,
            )
            .await;
        let s = &r["data"]["startFlow"];
        let r = self
            .gql(
                "mutation($s: ID!) { submit(input: {sessionId: $s, screenId: \"hello\", action: \"next\", values: {name: \"Ada\"}}) { status } }",
                json!({ "s": s["id"] }),
                s["token"].as_str(),
            )
            .await;
        assert_eq!(r["data"]["submit"]["status"], "COMPLETED", "{r}");
    }

    /// SIGKILL: no graceful shutdown, nothing flushed.
    pub(crate) async fn kill(mut self) {
        self.child.kill().await.expect("kill");
    }
}

/// The upstream: the first `hang` requests never get an answer (the
/// server is killed meanwhile); later ones answer 200.
#[derive(Clone, Default)]
struct Upstream {
    hang: usize,
    calls: Arc<AtomicUsize>,
    keys: Arc<Mutex<HashMap<String, usize>>>,
}

async fn handler(State(up): State<Upstream>, headers: HeaderMap) -> axum::Json<Value> {
    let n = up.calls.fetch_add(1, Ordering::SeqCst);
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    *up.keys.lock().await.entry(key).or_default() += 1;
    if n < up.hang {
        tokio::time::sleep(Duration::from_secs(120)).await;
    }
    axum::Json(json!({ "n": n }))
}

async fn upstream(up: Upstream) -> u16 {
    let app = axum::Router::new()
        .route("/step", post(handler))
        .with_state(up);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

/// `begin` → an optional timer → `call` (http) → `done`.
fn chain_flow(port: u16, with_wait: bool) -> String {
    let first = if with_wait { "pause" } else { "call" };
    format!(
        r#"
id: chain
start: begin
nodes:
  - id: begin
    kind: screen
    actions: [{{ id: go, validate: false, next: {first} }}]
  - {{ id: pause, kind: wait, duration: 100ms, next: call }}
  - id: call
    kind: http
    method: POST
    url: "http://127.0.0.1:{port}/step"
    timeout: 30s
    total_timeout: 5m
    next: done
  - {{ id: done, kind: end, title: "Done after {{{{ steps.call.body.n }}}}" }}
"#
    )
}

async fn until_completed(server: &Server, id: &str, token: &str) -> Value {
    for _ in 0..300 {
        let s = server.status(id, token).await;
        if s["status"] == "COMPLETED" {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("session {id} did not complete within 15 s");
}

/// The session's log: seqs are 1..=n without gaps, and each step was
/// completed exactly once.
async fn check_log(database_url: &str, id: &str, steps: &[&str]) {
    let store = baton::store::Store::connect(database_url, baton::store::StoreOptions::default())
        .await
        .unwrap();
    let events = store.events(id, 0, 10_000).await.unwrap();
    store.close().await;
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1, "gap in the log of {id}");
    }
    for step in steps {
        let completed = events
            .iter()
            .filter(|e| e.kind == "step_completed" && e.payload["node"] == *step)
            .count();
        assert_eq!(
            completed, 1,
            "step {step} of {id} completed {completed} times"
        );
    }
    assert_eq!(
        events.iter().filter(|e| e.kind == "ended").count(),
        1,
        "{id} ended once"
    );
}

async fn sigkill_during_an_http_step(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = fresh_database_url(backend, dir.path()).await else {
        return;
    };
    let up = Upstream {
        hang: 1,
        ..Upstream::default()
    };
    let port = upstream(up.clone()).await;
    let flows = dir.path().join("flows");
    std::fs::create_dir(&flows).unwrap();
    std::fs::write(flows.join("chain.yaml"), chain_flow(port, false)).unwrap();

    let server = Server::start(&url, &flows).await;
    let (id, token) = server.start_session("crash-1").await;
    let s = server.go(&id, &token).await;
    assert_eq!(s["status"], "WAITING", "{s}");
    // Wait until the call is in flight upstream, then kill the server.
    for _ in 0..200 {
        if up.calls.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(up.calls.load(Ordering::SeqCst), 1, "the step is in flight");
    server.kill().await;

    // A new process takes the task over once its lease expires.
    let server = Server::start(&url, &flows).await;
    let s = until_completed(&server, &id, &token).await;
    assert_eq!(s["screen"]["title"], "Done after 1");
    // It counts the expired lease, and only its own attempt of the call.
    let m = crate::metrics::scrape(&server.base).await;
    assert_eq!(m.value("baton_task_lease_expiries_total", &[]), Some(1.0));
    assert_eq!(
        m.value(
            "baton_step_attempts_total",
            &[("kind", "http"), ("host", "127.0.0.1")]
        ),
        Some(1.0)
    );
    // At least once: the call was made again, with the same key.
    assert_eq!(up.calls.load(Ordering::SeqCst), 2);
    let keys = up.keys.lock().await.clone();
    assert_eq!(
        keys.len(),
        1,
        "one idempotency key for both attempts: {keys:?}"
    );
    check_log(&url, &id, &["call"]).await;
    server.kill().await;
}

#[tokio::test]
async fn sigkill_during_an_http_step_sqlite() {
    sigkill_during_an_http_step(Backend::Sqlite).await;
}

#[tokio::test]
async fn sigkill_during_an_http_step_postgres() {
    sigkill_during_an_http_step(Backend::Postgres).await;
}

/// Two processes on one PostgreSQL: timers are claimed by whichever is
/// free, every session completes, and none advances twice.
#[tokio::test]
async fn two_processes_share_the_work() {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = fresh_database_url(Backend::Postgres, dir.path()).await else {
        return;
    };
    let up = Upstream::default();
    let port = upstream(up.clone()).await;
    let flows = dir.path().join("flows");
    std::fs::create_dir(&flows).unwrap();
    std::fs::write(flows.join("chain.yaml"), chain_flow(port, true)).unwrap();
    let a = Server::start(&url, &flows).await;
    let b = Server::start(&url, &flows).await;

    const SESSIONS: usize = 40;
    let mut sessions = Vec::new();
    for i in 0..SESSIONS {
        let server = if i % 2 == 0 { &a } else { &b };
        let (id, token) = server.start_session(&format!("u-{i}")).await;
        let s = server.go(&id, &token).await;
        assert_eq!(s["status"], "WAITING", "{s}");
        sessions.push((id, token));
    }
    for (i, (id, token)) in sessions.iter().enumerate() {
        let server = if i % 2 == 0 { &b } else { &a };
        until_completed(server, id, token).await;
        check_log(&url, id, &["pause", "call"]).await;
    }
    // Each step's upstream call carried its own key.
    assert_eq!(up.keys.lock().await.len(), SESSIONS);
    // Both processes ran steps.
    let store = baton::store::Store::connect(&url, baton::store::StoreOptions::default())
        .await
        .unwrap();
    let mut workers = std::collections::HashSet::new();
    for (id, _) in &sessions {
        for attempt in store.session_attempts(id).await.unwrap() {
            workers.insert(attempt.worker);
        }
    }
    store.close().await;
    assert_eq!(workers.len(), 2, "both processes ran steps: {workers:?}");
    a.kill().await;
    b.kill().await;
}

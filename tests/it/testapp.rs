//! `TestApp`: the real server, built by `Application::build` exactly like
//! `baton serve`, on port 0 against a fresh SQLite file or a fresh
//! PostgreSQL schema, driven over real HTTP.

use std::path::{Path, PathBuf};

use baton::app::Application;
use baton::config::ServeConfig;
use serde_json::{Value, json};
use tempfile::TempDir;

pub const SESSION_FIELDS: &str = r#"
fragment S on FlowSession {
  id token flowId flowVersion status outcome
  screen {
    id title fallback terminal values
    actions { id label validates }
    errors { field code message }
    components { ...C
      ... on ListComponent { children { ...C } }
      ... on CardComponent { title children { ...C } }
      ... on StackComponent { children { ...C } }
    }
  }
}
fragment C on Component {
  __typename id kind
  ... on TextComponent { text }
  ... on HeadingComponent { text level }
  ... on MarkdownComponent { text }
  ... on ImageComponent { url alt }
  ... on TextInputComponent { label required minLength maxLength pattern value }
  ... on NumberInputComponent { label required min max numberValue }
  ... on EmailInputComponent { label required value }
  ... on SelectComponent { label required value options { value label } }
  ... on CheckboxComponent { label required checked }
  ... on DateComponent { label required minDate maxDate value }
  ... on ButtonComponent { label action style }
  ... on CustomComponent { name props }
}
"#;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub database_url: String,
    pub flows: PathBuf,
    pub config: ServeConfig,
    /// The server's own service, for counters no API shows.
    pub baton: baton::service::Baton,
    _dir: TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The repository's `flows/` directory.
pub fn repo_flows() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("flows")
}

/// A database URL for a fresh, isolated store, or `None` (with a loud
/// notice) when PostgreSQL is not configured.
pub async fn fresh_database_url(backend: Backend, dir: &Path) -> Option<String> {
    match backend {
        Backend::Sqlite => Some(format!("sqlite://{}", dir.join("baton.db").display())),
        Backend::Postgres => {
            let Ok(base) = std::env::var("BATON_TEST_POSTGRES_URL") else {
                eprintln!("SKIPPED (BATON_TEST_POSTGRES_URL not set): PostgreSQL variant not run");
                return None;
            };
            let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
            let pool = sqlx::PgPool::connect(&base)
                .await
                .expect("connect to BATON_TEST_POSTGRES_URL");
            sqlx::query(&format!("CREATE SCHEMA {schema}"))
                .execute(&pool)
                .await
                .expect("create schema");
            pool.close().await;
            let sep = if base.contains('?') { '&' } else { '?' };
            Some(format!("{base}{sep}options=-c%20search_path%3D{schema}"))
        }
    }
}

impl TestApp {
    /// Starts the server with the repository's flows; `None` when the
    /// backend is not available here.
    pub async fn spawn(backend: Backend) -> Option<TestApp> {
        Self::spawn_configured(backend, &[], |_, _| {}).await
    }

    /// Like [`TestApp::spawn`], with extra flow files (name, content) next
    /// to the repository's and the configuration adjusted by `configure`
    /// (which also gets the test's directory, for files).
    pub async fn spawn_configured(
        backend: Backend,
        extra_flows: &[(&str, String)],
        configure: impl FnOnce(&mut ServeConfig, &Path),
    ) -> Option<TestApp> {
        let dir = tempfile::tempdir().expect("tempdir");
        let flows = dir.path().join("flows");
        std::fs::create_dir(&flows).expect("flows dir");
        for entry in std::fs::read_dir(repo_flows()).expect("flows/") {
            let path = entry.expect("entry").path();
            if path.is_file() {
                std::fs::copy(&path, flows.join(path.file_name().expect("name")))
                    .expect("copy flow");
            }
        }
        // The repository's flags, where `ServeConfig::for_database` looks:
        // next to the flows directory.
        let flags = dir.path().join("flags");
        std::fs::create_dir(&flags).expect("flags dir");
        for entry in std::fs::read_dir(repo_flows().with_file_name("flags")).expect("flags/") {
            let path = entry.expect("entry").path();
            if path.is_file() {
                std::fs::copy(&path, flags.join(path.file_name().expect("name")))
                    .expect("copy flag file");
            }
        }
        for (name, content) in extra_flows {
            std::fs::write(flows.join(name), content).expect("write extra flow");
        }
        // And the repository's experiments, where it looks for them too.
        let experiments = dir.path().join("experiments");
        std::fs::create_dir(&experiments).expect("experiments dir");
        for entry in
            std::fs::read_dir(repo_flows().with_file_name("experiments")).expect("experiments/")
        {
            let path = entry.expect("entry").path();
            if path.is_file() {
                std::fs::copy(&path, experiments.join(path.file_name().expect("name")))
                    .expect("copy experiment file");
            }
        }
        let url = fresh_database_url(backend, dir.path()).await?;
        let mut config = ServeConfig::for_database(url, flows);
        configure(&mut config, dir.path());
        Some(Self::spawn_with(config, dir).await)
    }

    /// Starts a server on an existing database and flow directory (a restart).
    pub async fn restart(&self) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::spawn_with(self.config.clone(), dir).await
    }

    pub async fn spawn_with(config: ServeConfig, dir: TempDir) -> TestApp {
        let database_url = config.database_url.clone();
        let flows = config.flows.clone();
        let kept = config.clone();
        let app = Application::build(config)
            .await
            .expect("application builds");
        let base = format!("http://{}", app.local_addr());
        let baton = app.baton().clone();
        let task = tokio::spawn(async move {
            app.run_until(std::future::pending())
                .await
                .expect("server runs");
        });
        TestApp {
            base,
            client: reqwest::Client::new(),
            database_url,
            flows,
            config: kept,
            baton,
            _dir: dir,
            task,
        }
    }

    /// The store behind this server, opened separately (for assertions on
    /// what was persisted).
    pub async fn store(&self) -> baton::store::Store {
        baton::store::Store::connect(&self.database_url, baton::store::StoreOptions::default())
            .await
            .expect("open the store")
    }

    /// `SELECT COUNT(*) …` (or any one integer) on the app's database.
    pub async fn count(&self, sql: &str) -> i64 {
        if self.database_url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(&self.database_url).await.unwrap();
            let n = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n
        } else {
            let pool = sqlx::PgPool::connect(&self.database_url).await.unwrap();
            let n = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n
        }
    }

    /// Runs `sql` on the app's database, behind the server's back.
    pub async fn execute(&self, sql: &str) {
        if self.database_url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(&self.database_url).await.unwrap();
            sqlx::query(sql).execute(&pool).await.unwrap();
            pool.close().await;
        } else {
            let pool = sqlx::PgPool::connect(&self.database_url).await.unwrap();
            sqlx::query(sql).execute(&pool).await.unwrap();
            pool.close().await;
        }
    }

    /// Every step attempt of a session: `{node, attempt, outcome, status_code, error}`.
    pub async fn baton_history(&self, session_id: &str) -> Vec<Value> {
        let store = self.store().await;
        let attempts = store.session_attempts(session_id).await.expect("attempts");
        store.close().await;
        attempts
            .into_iter()
            .map(|a| {
                json!({ "node": a.node, "attempt": a.attempt, "outcome": a.outcome.as_str(),
                        "status_code": a.status_code, "error": a.error, "task": a.task_id })
            })
            .collect()
    }

    /// A session's event log as `[{seq, kind, payload}]`.
    pub async fn baton_events(&self, session_id: &str) -> Value {
        let store = self.store().await;
        let events = store.events(session_id, 0, 10_000).await.expect("events");
        store.close().await;
        Value::Array(
            events
                .into_iter()
                .map(|e| json!({ "seq": e.seq, "kind": e.kind, "payload": e.payload }))
                .collect(),
        )
    }

    /// POSTs a GraphQL request and returns the whole JSON response.
    pub async fn gql(&self, query: &str, variables: Value, token: Option<&str>) -> Value {
        let mut req = self
            .client
            .post(format!("{}/graphql", self.base))
            .header("accept", "application/graphql-response+json")
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request sent");
        resp.json().await.expect("JSON response")
    }

    /// POSTs a GraphQL request with an `X-API-Key`; returns the HTTP status
    /// and the whole JSON response.
    pub async fn gql_key(
        &self,
        query: &str,
        variables: Value,
        api_key: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .post(format!("{}/graphql", self.base))
            .header("accept", "application/graphql-response+json")
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(key) = api_key {
            req = req.header("x-api-key", key);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("JSON response"))
    }

    /// `startFlow`; returns the FlowSession and its token.
    pub async fn start(&self, flow: &str, user: Value, client: Value) -> (Value, String) {
        let q = format!(
            "mutation($i: StartFlowInput!) {{ startFlow(input: $i) {{ ...S }} }} {SESSION_FIELDS}"
        );
        let r = self
            .gql(
                &q,
                json!({ "i": { "flowId": flow, "user": user, "client": client } }),
                None,
            )
            .await;
        let s = r["data"]["startFlow"].clone();
        assert!(s.is_object(), "startFlow failed: {r}");
        let token = s["token"].as_str().expect("token").to_string();
        (s, token)
    }

    /// `submit`; returns the whole response (data or errors).
    pub async fn submit_raw(
        &self,
        token: &str,
        session: &str,
        screen: &str,
        action: &str,
        values: Value,
        key: Option<&str>,
    ) -> Value {
        let q = format!(
            "mutation($i: SubmitInput!) {{ submit(input: $i) {{ ...S }} }} {SESSION_FIELDS}"
        );
        let input = json!({ "sessionId": session, "screenId": screen, "action": action, "values": values, "idempotencyKey": key });
        self.gql(&q, json!({ "i": input }), Some(token)).await
    }

    /// `submit` that must succeed; returns the FlowSession.
    pub async fn submit(
        &self,
        token: &str,
        session: &str,
        screen: &str,
        action: &str,
        values: Value,
    ) -> Value {
        let r = self
            .submit_raw(token, session, screen, action, values, None)
            .await;
        assert!(r["data"]["submit"].is_object(), "submit failed: {r}");
        r["data"]["submit"].clone()
    }

    pub async fn back(&self, token: &str, session: &str) -> Value {
        let q = format!("mutation($s: ID!) {{ back(sessionId: $s) {{ ...S }} }} {SESSION_FIELDS}");
        self.gql(&q, json!({ "s": session }), Some(token)).await
    }

    pub async fn session(&self, token: Option<&str>, session: &str) -> Value {
        let q = format!("query($s: ID!) {{ session(id: $s) {{ ...S }} }} {SESSION_FIELDS}");
        self.gql(&q, json!({ "s": session }), token).await
    }

    /// Polls the session (up to 5 s) until it no longer waits, or waits
    /// on screen `parked` (a person's step); returns the FlowSession.
    pub async fn settled(&self, token: &str, session: &str, parked: &str) -> Value {
        for _ in 0..200 {
            let s = self.session(Some(token), session).await["data"]["session"].clone();
            if s["status"] != "WAITING" || s["screen"]["id"] == parked {
                return s;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("session {session} did not settle");
    }
}

/// The API keys of [`write_test_keys`]: one per role, the key is
/// `<role>-key`, and the reviewer decides the `underwriter` queue.
/// A screen with one required input, then an end: the smallest flow
/// whose sessions write every common event.
pub const GREETING_FLOW: &str = r#"
id: greeting
start: hello
nodes:
  - id: hello
    kind: screen
    components: [{ kind: text_input, id: name, label: Name, required: true }]
    actions: [{ id: next, next: bye }]
  - { id: bye, kind: end }
"#;

pub const TEST_KEYS: [(&str, &str); 5] = [
    ("viewer-key", "viewer"),
    ("editor-key", "editor"),
    ("publisher-key", "publisher"),
    ("reviewer-key", "reviewer"),
    ("admin-key", "admin"),
];

/// Writes a keys file with [`TEST_KEYS`] into `dir`; returns its path.
pub fn write_test_keys(dir: &Path) -> PathBuf {
    use sha2::Digest;
    let mut yaml = String::from("keys:\n");
    for (key, role) in TEST_KEYS {
        let sha = sha2::Sha256::digest(key.as_bytes());
        yaml.push_str(&format!(
            "  - name: {role}-1\n    role: {role}\n    sha256: {}\n",
            hex::encode(sha)
        ));
        if role == "reviewer" {
            yaml.push_str("    queues: [underwriter]\n");
        }
    }
    let path = dir.join("api-keys.yaml");
    std::fs::write(&path, yaml).expect("write keys file");
    path
}

/// The error code of the first GraphQL error.
pub fn error_code(resp: &Value) -> &str {
    resp["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {resp}"))
}

/// Component of the screen by id.
pub fn component<'a>(session: &'a Value, id: &str) -> &'a Value {
    session["screen"]["components"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["id"] == id))
        .unwrap_or_else(|| panic!("no component `{id}` in {session}"))
}

/// Runs an async test body once per backend.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident => $body:ident;)*) => {
        mod sqlite {
            $( #[tokio::test] async fn $name() {
                let app = $crate::testapp::TestApp::spawn($crate::testapp::Backend::Sqlite).await.expect("sqlite app");
                super::$body(app).await;
            } )*
        }
        mod postgres {
            $( #[tokio::test] async fn $name() {
                let Some(app) = $crate::testapp::TestApp::spawn($crate::testapp::Backend::Postgres).await else { return };
                super::$body(app).await;
            } )*
        }
    };
}

/// Runs `baton` with `args` and returns its stderr; it must stop with a
/// failure (a server that started anyway is killed, and the test fails).
pub fn refused(args: &[&str]) -> String {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(args)
        .args(["--database-url", "sqlite::memory:", "--addr", "127.0.0.1:0"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the server started with {args:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

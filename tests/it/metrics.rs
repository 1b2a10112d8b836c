//! `/metrics` and `/readyz` from outside, on a real `baton` process per
//! store (a process has its own metrics, so counts are exact): the scrape
//! is parsed with a Prometheus text parser, and every metric of the
//! catalogue moves as the sessions that ran say it should.

use std::io::BufRead;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::post;
use prometheus_parse::{Sample, Scrape, Value as Prom};
use serde_json::{Value, json};

use crate::crash::Server;
use crate::testapp::{Backend, fresh_database_url};

/// A parsed scrape.
pub(crate) struct Metrics(Scrape);

/// Scrapes `/metrics` and parses it as Prometheus does.
pub(crate) async fn scrape(base: &str) -> Metrics {
    let r = reqwest::get(format!("{base}/metrics")).await.unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let text = r.text().await.unwrap();
    let scrape = Scrape::parse(text.as_bytes().lines()).expect("a Prometheus text exposition");
    Metrics(scrape)
}

impl Metrics {
    fn sample(&self, name: &str, labels: &[(&str, &str)]) -> Option<&Sample> {
        self.0.samples.iter().find(|s| {
            s.metric == name
                && s.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
    }

    /// A counter's or gauge's value, or a histogram's count.
    pub(crate) fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.sample(name, labels).map(|s| match &s.value {
            Prom::Counter(v) | Prom::Gauge(v) | Prom::Untyped(v) => *v,
            Prom::Histogram(buckets) => buckets
                .iter()
                .find(|b| b.less_than.is_infinite())
                .map_or(0.0, |b| b.count),
            Prom::Summary(_) => panic!("{name} is a summary; the catalogue has none"),
        })
    }

    fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        self.0
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter_map(|s| s.labels.get(label).map(str::to_owned))
            .collect()
    }
}

fn flows(port: u16) -> [(&'static str, String); 2] {
    [
        (
            "metered.yaml",
            format!(
                r#"
id: metered
start: ask
nodes:
  - id: ask
    kind: screen
    components: [{{ kind: text_input, id: name, label: Name, required: true }}]
    actions: [{{ id: go, next: call }}]
  - id: call
    kind: http
    method: POST
    url: "http://127.0.0.1:{port}/down"
    retry: {{ backoff: fixed, max_attempts: 2, delay: 10ms }}
    next: done
    on_error: sorry
  - {{ id: done, kind: end }}
  - {{ id: sorry, kind: end, title: Sorry }}
"#
            ),
        ),
        (
            "reviewed.yaml",
            r#"
id: reviewed
start: review
nodes:
  - id: review
    kind: approval
    role: ops
    outcomes: { approved: ok }
  - { id: ok, kind: end }
"#
            .to_owned(),
        ),
    ]
}

/// An upstream that is always down.
async fn down_upstream() -> u16 {
    let app = axum::Router::new().route(
        "/down",
        post(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down") }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

async fn start(server: &Server, flow: &str) -> (String, String) {
    let r = server
        .gql(
            "mutation($f: ID!) { startFlow(input: {flowId: $f, user: {id: \"m\"}}) { id token } }",
            json!({ "f": flow }),
            None,
        )
        .await;
    let s = &r["data"]["startFlow"];
    assert!(s["id"].is_string(), "{r}");
    (
        s["id"].as_str().unwrap().into(),
        s["token"].as_str().unwrap().into(),
    )
}

async fn submit(server: &Server, session: &str, token: &str, values: Value) -> Value {
    let r = server
        .gql(
            "mutation($s: ID!, $v: JSON) { submit(input: {sessionId: $s, screenId: \"ask\", action: \"go\", values: $v}) { status screen { errors { code } } } }",
            json!({ "s": session, "v": values }),
            Some(token),
        )
        .await;
    r["data"]["submit"].clone()
}

async fn metrics_move(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = fresh_database_url(backend, dir.path()).await else {
        return;
    };
    let port = down_upstream().await;
    // Per host, as circuit breakers go: the port is not part of it.
    let host = "127.0.0.1".to_owned();
    let flow_dir = dir.path().join("flows");
    std::fs::create_dir(&flow_dir).unwrap();
    for (name, text) in flows(port) {
        std::fs::write(flow_dir.join(name), text).unwrap();
    }
    let server = Server::start_with(&url, &flow_dir, &["--breaker-failures", "2"]).await;

    // Before anything ran: a valid exposition, with nothing counted yet.
    let m = scrape(&server.base).await;
    assert_eq!(
        m.value("baton_submits_total", &[("outcome", "WAITING")]),
        None
    );

    // An approval waits: one open task.
    start(&server, "reviewed").await;
    // A submit refused by validation, then one that starts the call, which
    // fails twice (503) and opens the host's circuit.
    let (id, token) = start(&server, "metered").await;
    let refused = submit(&server, &id, &token, json!({})).await;
    let code = refused["screen"]["errors"][0]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("a field error: {refused}"))
        .to_owned();
    let waiting = submit(&server, &id, &token, json!({ "name": "Ada" })).await;
    assert_eq!(waiting["status"], "WAITING", "{waiting}");
    let mut last = Value::Null;
    for _ in 0..200 {
        last = server
            .gql(
                "query($s: ID!) { session(id: $s) { status screen { id } } }",
                json!({ "s": id }),
                Some(&token),
            )
            .await;
        if last["data"]["session"]["status"] == "COMPLETED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        last["data"]["session"]["screen"]["id"], "sorry",
        "the session ends at `sorry`: {last}"
    );
    // A made-up field is refused by validation and never becomes a label.
    let r = server.gql("{ madeUpField123 }", json!({}), None).await;
    assert!(r["errors"].is_array(), "{r}");

    let m = scrape(&server.base).await;
    assert_eq!(
        m.value("baton_submits_total", &[("outcome", &code)]),
        Some(1.0)
    );
    assert_eq!(
        m.value("baton_submits_total", &[("outcome", "WAITING")]),
        Some(1.0)
    );
    let gql = "baton_graphql_request_duration_seconds";
    assert_eq!(
        m.value(gql, &[("operation", "submit"), ("type", "mutation")]),
        Some(2.0)
    );
    assert_eq!(
        m.value(gql, &[("operation", "startFlow"), ("type", "mutation")]),
        Some(2.0)
    );
    assert!(m.value(gql, &[("operation", "session"), ("type", "query")]) >= Some(1.0));
    assert_eq!(
        m.value(gql, &[("operation", "invalid"), ("type", "unknown")]),
        Some(1.0)
    );
    assert!(
        !m.label_values(gql, "operation")
            .iter()
            .any(|v| v.contains("madeUp")),
        "{:?}",
        m.label_values(gql, "operation")
    );
    let step = [("kind", "http"), ("host", host.as_str())];
    assert_eq!(m.value("baton_step_attempts_total", &step), Some(2.0));
    assert_eq!(
        m.value("baton_step_attempt_duration_seconds", &step),
        Some(2.0)
    );
    assert_eq!(
        m.value(
            "baton_step_failures_total",
            &[("kind", "http"), ("host", &host), ("reason", "status")]
        ),
        Some(2.0)
    );
    assert_eq!(
        m.value("baton_circuit_breaker_state", &[("host", &host)]),
        Some(2.0)
    );
    assert_eq!(
        m.value("baton_task_queue_depth", &[("state", "open")]),
        Some(1.0)
    );
    assert_eq!(
        m.value("baton_task_queue_depth", &[("state", "ready")]),
        Some(0.0)
    );
    assert!(m.value("baton_group_commit_batch_size", &[]) >= Some(1.0));
    // Every metric has its help text from the catalogue.
    for metric in baton::telemetry::CATALOGUE {
        if m.0.samples.iter().any(|s| s.metric == metric.name) {
            assert!(
                m.0.docs.contains_key(metric.name),
                "no HELP for {}",
                metric.name
            );
        }
    }

    // Ready; then an applied migration goes missing and it is not.
    let ready = reqwest::get(format!("{}/readyz", server.base))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let store = baton::store::Store::connect(&url, baton::store::StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(store.missing_migrations().await.unwrap(), Vec::<i64>::new());
    drop(store);
    let delete =
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)";
    match backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
            sqlx::query(delete).execute(&pool).await.unwrap();
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&url).await.unwrap();
            sqlx::query(delete).execute(&pool).await.unwrap();
        }
    }
    let not_ready = reqwest::get(format!("{}/readyz", server.base))
        .await
        .unwrap();
    assert_eq!(not_ready.status(), 503);
    let body: Value = not_ready.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "NOT_READY",
        "{body}"
    );
    server.kill().await;
}

#[tokio::test]
async fn metrics_move_sqlite() {
    metrics_move(Backend::Sqlite).await;
}

#[tokio::test]
async fn metrics_move_postgres() {
    metrics_move(Backend::Postgres).await;
}

/// A server with no flow to serve is up (`/healthz`) but not ready.
#[tokio::test]
async fn no_flow_is_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(Backend::Sqlite, dir.path())
        .await
        .unwrap();
    let empty = dir.path().join("flows");
    std::fs::create_dir(&empty).unwrap();
    let server = Server::start_with(&url, &empty, &[]).await;
    let r = reqwest::get(format!("{}/readyz", server.base))
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    server.kill().await;
}

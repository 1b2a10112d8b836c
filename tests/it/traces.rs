//! Traces from outside: a real `baton` process exports its spans over
//! OTLP/HTTP to a receiver in this test, which decodes them with the
//! OpenTelemetry protobuf types. An app's `traceparent` starts the trace;
//! the request, service, engine, store, step and upstream-call spans all
//! join it; the upstream gets a `traceparent` naming the call's span; the
//! JSON log lines carry the trace id.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::crash::Server;
use crate::testapp::{Backend, fresh_database_url};

/// A span as received, ids in hex.
#[derive(Debug, Clone)]
struct Received {
    name: String,
    trace: String,
    id: String,
    parent: String,
    attributes: Vec<(String, String)>,
}

#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<Received>>>,
    traceparents: Arc<Mutex<Vec<String>>>,
}

async fn receive(State(r): State<Receiver>, body: Bytes) -> Vec<u8> {
    let req = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export");
    let mut spans = r.spans.lock().await;
    for rs in req.resource_spans {
        for ss in rs.scope_spans {
            for s in ss.spans {
                spans.push(Received {
                    name: s.name,
                    trace: hex::encode(s.trace_id),
                    id: hex::encode(s.span_id),
                    parent: hex::encode(s.parent_span_id),
                    attributes: s
                        .attributes
                        .into_iter()
                        .map(|kv| (kv.key, format!("{:?}", kv.value)))
                        .collect(),
                });
            }
        }
    }
    ExportTraceServiceResponse::default().encode_to_vec()
}

async fn upstream(State(r): State<Receiver>, headers: HeaderMap) -> axum::Json<Value> {
    if let Some(tp) = headers.get("traceparent") {
        r.traceparents
            .lock()
            .await
            .push(tp.to_str().unwrap().to_owned());
    }
    axum::Json(json!({ "ok": true }))
}

async fn serve(app: axum::Router) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

async fn gql(base: &str, query: &str, vars: Value, token: Option<&str>, tp: &str) -> Value {
    let mut req = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .header("traceparent", tp)
        .json(&json!({ "query": query, "variables": vars }));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap().json().await.unwrap()
}

async fn one_trace(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = fresh_database_url(backend, dir.path()).await else {
        return;
    };
    let r = Receiver::default();
    let otlp = serve(
        axum::Router::new()
            .route("/v1/traces", post(receive))
            .with_state(r.clone()),
    )
    .await;
    let up = serve(
        axum::Router::new()
            .route("/check", post(upstream))
            .with_state(r.clone()),
    )
    .await;
    let flows = dir.path().join("flows");
    std::fs::create_dir(&flows).unwrap();
    std::fs::write(
        flows.join("traced.yaml"),
        format!(
            r#"
id: traced
start: ask
nodes:
  - id: ask
    kind: screen
    actions: [{{ id: go, next: check }}]
  - id: check
    kind: http
    method: POST
    url: "http://127.0.0.1:{up}/check"
    next: done
  - {{ id: done, kind: end }}
"#
        ),
    )
    .unwrap();
    let log = dir.path().join("baton.log");
    let endpoint = format!("http://127.0.0.1:{otlp}");
    let server = Server::start_logged(
        &url,
        &flows,
        &["--otlp-endpoint", &endpoint, "--log-format", "json"],
        &[
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("BATON_LOG", "info,tower_http=debug"),
        ],
        Some(&log),
    )
    .await;

    // The app's own trace: every request it makes carries it.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let app_span = "00f067aa0ba902b7";
    let tp = format!("00-{trace}-{app_span}-01");
    let s = gql(
        &server.base,
        "mutation { startFlow(input: {flowId: \"traced\", user: {id: \"t\"}}) { id token } }",
        json!({}),
        None,
        &tp,
    )
    .await;
    let (id, token) = (
        s["data"]["startFlow"]["id"].as_str().unwrap().to_owned(),
        s["data"]["startFlow"]["token"].as_str().unwrap().to_owned(),
    );
    gql(
        &server.base,
        "mutation($s: ID!) { submit(input: {sessionId: $s, screenId: \"ask\", action: \"go\"}) { status } }",
        json!({ "s": id }),
        Some(&token),
        &tp,
    )
    .await;

    // Spans arrive in batches, each once it ended: the upstream call's
    // can come before the submit that waited for it.
    let wanted = [
        "POST /graphql",
        "baton.start",
        "store.create_session",
        "baton.submit",
        "engine.submit",
        "step check",
        "http.client",
    ];
    let mut spans = Vec::new();
    for _ in 0..100 {
        spans = r.spans.lock().await.clone();
        if wanted.iter().all(|w| spans.iter().any(|s| s.name == *w)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    for want in wanted {
        let span = spans
            .iter()
            .find(|s| s.name == want)
            .unwrap_or_else(|| panic!("no `{want}` span among {names:?}"));
        assert_eq!(span.trace, trace, "`{want}` is in the app's trace");
    }
    // The request spans are children of the app's span.
    assert!(
        spans
            .iter()
            .filter(|s| s.name == "POST /graphql")
            .all(|s| s.parent == app_span),
        "{spans:?}"
    );
    // The step runs under the submit request, the call under the step.
    let by_name = |n: &str| spans.iter().find(|s| s.name == n).unwrap();
    let call = by_name("http.client");
    assert_eq!(call.parent, by_name("step check").id);
    assert!(
        call.attributes
            .iter()
            .any(|(k, v)| k == "http.response.status_code" && v.contains("200")),
        "{:?}",
        call.attributes
    );
    // The upstream was told to continue the trace under the call's span.
    let sent = r.traceparents.lock().await.clone();
    assert_eq!(sent, vec![format!("00-{trace}-{}-01", call.id)]);

    // Log lines written inside a request carry its trace id.
    server.kill().await;
    let text = std::fs::read_to_string(&log).unwrap();
    let carried = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .any(|l| l["span"]["trace_id"] == trace);
    assert!(carried, "no JSON log line with trace_id {trace}:\n{text}");
}

#[tokio::test]
async fn one_trace_sqlite() {
    one_trace(Backend::Sqlite).await;
}

#[tokio::test]
async fn one_trace_postgres() {
    one_trace(Backend::Postgres).await;
}

//! Backend steps end to end over HTTP: the loan flow in mock mode, `http`
//! steps against a local upstream (retries, idempotency keys, secrets,
//! errors), durable timers across a restart. Both backends.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::testapp::{Backend, TestApp};

/// The loan applicant's screens up to the backend steps.
async fn apply(app: &TestApp, scenario: Option<&str>, income: i64) -> (String, String, Value) {
    let q = format!(
        "mutation($i: StartFlowInput!) {{ startFlow(input: $i) {{ ...S }} }} {}",
        crate::testapp::SESSION_FIELDS
    );
    let mock = scenario.map(|s| json!({ "scenario": s }));
    let r = app
        .gql(
            &q,
            json!({ "i": { "flowId": "loan", "user": { "id": "applicant-1" }, "client": { "platform": "web" }, "mock": mock } }),
            None,
        )
        .await;
    let s = &r["data"]["startFlow"];
    assert!(s.is_object(), "{r}");
    let id = s["id"].as_str().unwrap().to_string();
    let token = s["token"].as_str().unwrap().to_string();
    app.submit(&token, &id, "intro", "start", json!({})).await;
    app.submit(&token, &id, "personal", "next", json!({ "full_name": "Grace Hopper", "birth_date": "1990-12-09", "email": "grace@example.com" })).await;
    app.submit(&token, &id, "amount", "next", json!({ "amount": 10000, "term": "36" }))
        .await;
    let s = app
        .submit(&token, &id, "employment", "submit", json!({ "status": "employed", "income": income, "consent": true }))
        .await;
    (id, token, s)
}

/// Polls `session` until it is no longer WAITING (bounded).
async fn settle(app: &TestApp, token: &str, id: &str) -> Value {
    for _ in 0..400 {
        let r = app.session(Some(token), id).await;
        let s = r["data"]["session"].clone();
        if s["status"] != "WAITING" {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("session {id} still WAITING after 20 s");
}

async fn mock_app(backend: Backend) -> Option<TestApp> {
    TestApp::spawn_configured(backend, &[], |c, _| {
        c.mock = true;
        c.step_budget_ms = 5000;
    })
    .await
}

async fn loan_scenarios(backend: Backend) {
    let Some(app) = mock_app(backend).await else {
        return;
    };
    // approved: credit check (720) → underwriter approves at 6.9% → offer.
    let (id, token, s) = apply(&app, Some("approved"), 3000).await;
    assert_eq!(s["status"], "ACTIVE", "{s}");
    assert_eq!(s["screen"]["id"], "offer", "the submit waited for both steps: {s}");
    assert_eq!(
        s["screen"]["components"][1]["text"],
        "Annual interest rate: 6.9%"
    );
    let done = app.submit(&token, &id, "offer", "accept", json!({})).await;
    assert_eq!(done["status"], "COMPLETED");
    assert_eq!(done["screen"]["id"], "accepted");

    // declined: a low score takes the default edge to `declined`.
    let (_, _, s) = apply(&app, Some("declined"), 3000).await;
    assert_eq!(s["status"], "COMPLETED");
    assert_eq!(s["screen"]["id"], "declined");

    // The eligibility decision still declines without any step.
    let (_, _, s) = apply(&app, Some("approved"), 10).await;
    assert_eq!(s["screen"]["id"], "declined");

    // credit_service_down: three attempts, then the on_error screen.
    let (id, token, s) = apply(&app, Some("credit_service_down"), 3000).await;
    assert_eq!(s["status"], "ACTIVE", "{s}");
    assert_eq!(s["screen"]["id"], "credit_unavailable");
    let history = app.baton_history(&id).await;
    let outcomes: Vec<&str> = history
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["retry", "retry", "error"], "{history:?}");
    // "Try again" runs the step again (still down).
    let s = app.submit(&token, &id, "credit_unavailable", "retry", json!({})).await;
    assert_eq!(s["screen"]["id"], "credit_unavailable");
    assert_eq!(app.baton_history(&id).await.len(), 6);
}

async fn waiting_shows_the_pending_screen(backend: Backend) {
    // A budget shorter than the mock latency: the submit answers WAITING.
    let Some(app) = TestApp::spawn_configured(backend, &[], |c, _| {
        c.mock = true;
        c.step_budget_ms = 50;
    })
    .await
    else {
        return;
    };
    let (id, token, s) = apply(&app, None, 3000).await;
    assert_eq!(s["status"], "WAITING", "{s}");
    assert_eq!(s["screen"]["id"], "credit_check");
    assert_eq!(s["screen"]["title"], "Checking your application");
    assert_eq!(s["screen"]["actions"], json!([]));
    // Submitting anything while waiting is stale, not applied.
    let r = app
        .submit_raw(&token, &id, "employment", "submit", json!({}), None)
        .await;
    let errors = &r["data"]["submit"]["screen"]["errors"];
    assert_eq!(errors[0]["code"], "STALE_SCREEN", "{r}");
    let s = settle(&app, &token, &id).await;
    assert_eq!(s["screen"]["id"], "offer");
}

async fn mock_sessions_need_mock_mode(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let q = "mutation { startFlow(input: {flowId: \"loan\", user: {id: \"u\"}, mock: {scenario: \"approved\"}}) { id } }";
    let r = app.gql(q, json!({}), None).await;
    assert_eq!(r["errors"][0]["extensions"]["code"], "MOCK_NOT_ALLOWED", "{r}");
}

/// A local upstream: answers 503 to the first `fail_first` requests, then
/// 200 with `{score}`; records what it received.
/// What the upstream received: headers and JSON body per request.
type Seen = Arc<Mutex<Vec<(HashMap<String, String>, Value)>>>;

#[derive(Clone, Default)]
struct Upstream {
    fail_first: usize,
    status_after: u16,
    calls: Arc<AtomicUsize>,
    seen: Seen,
}

async fn upstream_handler(
    State(up): State<Upstream>,
    headers: HeaderMap,
    body: axum::Json<Value>,
) -> (StatusCode, axum::Json<Value>) {
    let n = up.calls.fetch_add(1, Ordering::SeqCst);
    let hs = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    up.seen.lock().await.push((hs, body.0));
    if n < up.fail_first {
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({ "error": "busy" })));
    }
    let status = StatusCode::from_u16(up.status_after).unwrap();
    (status, axum::Json(json!({ "score": 700, "echo": "s3cr3t-value" })))
}

async fn start_upstream(up: Upstream) -> u16 {
    let app = axum::Router::new()
        .route("/score", post(upstream_handler))
        .with_state(up);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

fn http_flow(port: u16) -> String {
    format!(
        r#"
id: scored
start: ask
nodes:
  - id: ask
    kind: screen
    components:
      - {{ kind: text_input, id: name, label: Name, required: true }}
    actions:
      - {{ id: go, next: score }}
  - id: score
    kind: http
    method: POST
    url: "http://127.0.0.1:{port}/score"
    headers:
      Authorization: "Bearer {{{{ secrets.SCORE_KEY }}}}"
    body: {{ name: "{{{{ input.ask.name }}}}" }}
    retry: {{ backoff: fixed, max_attempts: 3, delay: 10ms }}
    next:
      - when: {{ ">=": [{{ var: steps.score.body.score }}, 600] }}
        to: good
      - to: bad
    on_error: failed
  - {{ id: good, kind: end, title: "Score {{{{ steps.score.body.score }}}}" }}
  - {{ id: bad, kind: end, title: Low }}
  - {{ id: failed, kind: end, outcome: failed, title: "Failed with {{{{ steps.score.status }}}}" }}
"#
    )
}

async fn http_app(backend: Backend, port: u16) -> Option<TestApp> {
    TestApp::spawn_configured(backend, &[("scored.yaml", http_flow(port))], |c, _| {
        c.step_budget_ms = 5000;
        c.secrets = Some(HashMap::from([(
            "SCORE_KEY".to_string(),
            "s3cr3t-value".to_string(),
        )]));
    })
    .await
}

async fn http_step_retries_until_it_succeeds(backend: Backend) {
    let up = Upstream {
        fail_first: 2,
        status_after: 200,
        ..Upstream::default()
    };
    let port = start_upstream(up.clone()).await;
    let Some(app) = http_app(backend, port).await else {
        return;
    };
    let (s, token) = app.start("scored", json!({ "id": "u-1" }), json!({})).await;
    let id = s["id"].as_str().unwrap();
    let s = app
        .submit(&token, id, "ask", "go", json!({ "name": "Ada" }))
        .await;
    assert_eq!(s["status"], "COMPLETED", "{s}");
    assert_eq!(s["screen"]["title"], "Score 700");
    assert_eq!(up.calls.load(Ordering::SeqCst), 3);
    let seen = up.seen.lock().await;
    let keys: Vec<&String> = seen.iter().map(|(h, _)| &h["idempotency-key"]).collect();
    assert!(keys.iter().all(|k| *k == keys[0]), "one key for all attempts: {keys:?}");
    assert_eq!(seen[0].0["authorization"], "Bearer s3cr3t-value");
    assert_eq!(seen[0].1, json!({ "name": "Ada" }));
    drop(seen);
    let history = app.baton_history(id).await;
    let outcomes: Vec<&str> = history.iter().map(|a| a["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["retry", "retry", "ok"]);
    assert_eq!(history[0]["status_code"], 503);
    // The upstream echoed the secret: it is redacted before it is stored.
    let events = app.baton_events(id).await;
    let text = events.to_string();
    assert!(!text.contains("s3cr3t-value"), "secret in the event log");
    assert!(text.contains("[redacted]"));
}

async fn http_step_client_errors_are_not_retried(backend: Backend) {
    let up = Upstream {
        fail_first: 0,
        status_after: 404,
        ..Upstream::default()
    };
    let port = start_upstream(up.clone()).await;
    let Some(app) = http_app(backend, port).await else {
        return;
    };
    let (s, token) = app.start("scored", json!({ "id": "u-1" }), json!({})).await;
    let id = s["id"].as_str().unwrap();
    let s = app
        .submit(&token, id, "ask", "go", json!({ "name": "Ada" }))
        .await;
    assert_eq!(s["status"], "FAILED", "{s}");
    assert_eq!(s["screen"]["title"], "Failed with 404");
    assert_eq!(up.calls.load(Ordering::SeqCst), 1);
}

async fn unreachable_upstream_goes_to_on_error(backend: Backend) {
    // A port nothing listens on: connect errors, retried, then on_error.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let Some(app) = http_app(backend, port).await else {
        return;
    };
    let (s, token) = app.start("scored", json!({ "id": "u-1" }), json!({})).await;
    let id = s["id"].as_str().unwrap();
    let s = app
        .submit(&token, id, "ask", "go", json!({ "name": "Ada" }))
        .await;
    assert_eq!(s["screen"]["id"], "failed", "{s}");
    let history = app.baton_history(id).await;
    assert_eq!(history.len(), 3);
    assert!(history[2]["error"].as_str().unwrap().starts_with("connect"));
}

async fn hosts_outside_the_allowlist_do_not_load(backend: Backend) {
    let Some(app) = TestApp::spawn_configured(backend, &[("scored.yaml", http_flow(9))], |c, _| {
        c.allow_hosts = vec!["localhost".into()];
    })
    .await
    else {
        return;
    };
    let r = app
        .gql(
            "mutation { startFlow(input: {flowId: \"scored\", user: {id: \"u\"}}) { id } }",
            json!({}),
            None,
        )
        .await;
    assert_eq!(r["errors"][0]["extensions"]["code"], "FLOW_NOT_FOUND", "{r}");
}

fn wait_flow() -> String {
    r#"
id: timer
start: hello
nodes:
  - id: hello
    kind: screen
    actions: [{ id: go, validate: false, next: pause }]
  - id: pause
    kind: wait
    duration: 700ms
    next: done
  - { id: done, kind: end, title: Waited }
"#
    .to_string()
}

async fn timers_survive_a_restart(backend: Backend) {
    let Some(app) = TestApp::spawn_configured(backend, &[("timer.yaml", wait_flow())], |c, _| {
        c.step_budget_ms = 0;
        // A task the stopped server held is taken over when its lease ends.
        c.task_lease_ms = 2000;
    })
    .await
    else {
        return;
    };
    let (s, token) = app.start("timer", json!({ "id": "u-1" }), json!({})).await;
    let id = s["id"].as_str().unwrap().to_string();
    let s = app.submit(&token, &id, "hello", "go", json!({})).await;
    assert_eq!(s["status"], "WAITING");
    // Stop the server before the timer fires; another one takes over.
    let next = app.restart().await;
    drop(app);
    let s = settle(&next, &token, &id).await;
    assert_eq!(s["status"], "COMPLETED");
    assert_eq!(s["screen"]["title"], "Waited");
}

macro_rules! step_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test] async fn $name() { super::$name(crate::testapp::Backend::Sqlite).await } )*
        }
        mod postgres {
            $( #[tokio::test] async fn $name() { super::$name(crate::testapp::Backend::Postgres).await } )*
        }
    };
}

step_tests!(
    loan_scenarios,
    waiting_shows_the_pending_screen,
    mock_sessions_need_mock_mode,
    http_step_retries_until_it_succeeds,
    http_step_client_errors_are_not_retried,
    unreachable_upstream_goes_to_on_error,
    hosts_outside_the_allowlist_do_not_load,
    timers_survive_a_restart,
);

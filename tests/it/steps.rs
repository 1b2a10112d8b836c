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
    app.submit(
        &token,
        &id,
        "amount",
        "next",
        json!({ "amount": 10000, "term": "36" }),
    )
    .await;
    let s = app
        .submit(
            &token,
            &id,
            "employment",
            "submit",
            json!({ "status": "employed", "income": income, "consent": true }),
        )
        .await;
    (id, token, s)
}

/// Polls `session` until it is no longer WAITING (bounded).
async fn settle(app: &TestApp, token: &str, id: &str) -> Value {
    let mut last = Value::Null;
    for _ in 0..400 {
        let r = app.session(Some(token), id).await;
        let s = r["data"]["session"].clone();
        // A read that failed (e.g. SQLite busy with two servers on one
        // file) is retried like a WAITING one.
        if s.is_object() && s["status"] != "WAITING" {
            return s;
        }
        last = r;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let store = app.store().await;
    let tasks = store.session_tasks(id).await;
    let attempts = store.session_attempts(id).await;
    panic!("session {id} not settled after 20 s: {last}\ntasks: {tasks:?}\nattempts: {attempts:?}");
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
    assert_eq!(
        s["screen"]["id"], "offer",
        "the submit waited for both steps: {s}"
    );
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
    let s = app
        .submit(&token, &id, "credit_unavailable", "retry", json!({}))
        .await;
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
    assert_eq!(
        r["errors"][0]["extensions"]["code"], "MOCK_NOT_ALLOWED",
        "{r}"
    );
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
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "error": "busy" })),
        );
    }
    let status = StatusCode::from_u16(up.status_after).unwrap();
    (
        status,
        axum::Json(json!({ "score": 700, "echo": "s3cr3t-value" })),
    )
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
    assert!(
        keys.iter().all(|k| *k == keys[0]),
        "one key for all attempts: {keys:?}"
    );
    assert_eq!(seen[0].0["authorization"], "Bearer s3cr3t-value");
    assert_eq!(seen[0].1, json!({ "name": "Ada" }));
    drop(seen);
    let history = app.baton_history(id).await;
    let outcomes: Vec<&str> = history
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
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
    assert_eq!(
        r["errors"][0]["extensions"]["code"], "FLOW_NOT_FOUND",
        "{r}"
    );
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
        c.task_poll_ms = 100;
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

const REVIEW_FLOW: &str = r#"
id: review
start: form
nodes:
  - id: form
    kind: screen
    components: [{ kind: number_input, id: amount, label: Amount, required: true }]
    actions: [{ id: send, next: check }]
  - id: check
    kind: approval
    role: underwriter
    title: "Amount {{ input.form.amount }}"
    fields: [{ kind: number_input, id: rate, label: Rate, required: true, min: 0, max: 30 }]
    outcomes: { approved: ok, declined: "no" }
    due: DUE
    on_timeout: late
  - { id: ok, kind: end, title: "Rate {{ steps.check.values.rate }} by {{ steps.check.reviewer }}" }
  - { id: "no", kind: end, title: Declined }
  - { id: late, kind: end, title: Late }
"#;

const PAID_FLOW: &str = r#"
id: paid
start: go
nodes:
  - id: go
    kind: screen
    components: [{ kind: text_input, id: ref, label: Reference, required: true }]
    actions: [{ id: next, next: settle }]
  - id: settle
    kind: event
    event: payment.settled
    correlation: "{{ input.go.ref }}"
    timeout: 1h
    next: thanks
  - { id: thanks, kind: end, title: "Paid {{ steps.settle.payload.amount }}" }
"#;

async fn keyed_app(backend: Backend, due: &str) -> Option<TestApp> {
    let flows = [
        ("review.yaml", REVIEW_FLOW.replace("DUE", due)),
        ("paid.yaml", PAID_FLOW.to_string()),
    ];
    TestApp::spawn_configured(backend, &flows, |c, dir| {
        c.api_keys = Some(crate::testapp::write_test_keys(dir));
        c.step_budget_ms = 0;
    })
    .await
}

const TASKS: &str = "query($q: String, $after: String) { approvalTasks(queue: $q, first: 2, after: $after) { edges { cursor node { id sessionId node queue title state claimedBy outcomes fields { id kind } } } pageInfo { hasNextPage endCursor } } }";
const CLAIM: &str = "mutation($id: ID!) { claimApprovalTask(taskId: $id) { id claimedBy } }";
const DECIDE: &str = "mutation($i: CompleteApprovalInput!) { completeApprovalTask(input: $i) { taskId session { status screen { id title } } } }";

async fn start_review(app: &TestApp, amount: i64) -> (String, String) {
    let (s, token) = app
        .start("review", json!({ "id": format!("u-{amount}") }), json!({}))
        .await;
    let id = s["id"].as_str().unwrap().to_string();
    let s = app
        .submit(&token, &id, "form", "send", json!({ "amount": amount }))
        .await;
    assert_eq!(s["status"], "WAITING", "{s}");
    assert_eq!(s["screen"]["id"], "check");
    (id, token)
}

async fn reviewers_decide_approvals(backend: Backend) {
    let Some(app) = keyed_app(backend, "1h").await else {
        return;
    };
    let mut sessions = Vec::new();
    for amount in [100, 200, 300] {
        sessions.push(start_review(&app, amount).await);
    }
    // The inbox is a Relay connection, oldest first.
    let (_, r) = app.gql_key(TASKS, json!({}), Some("reviewer-key")).await;
    let conn = &r["data"]["approvalTasks"];
    assert_eq!(conn["edges"].as_array().unwrap().len(), 2, "{r}");
    assert_eq!(conn["pageInfo"]["hasNextPage"], true);
    let first = &conn["edges"][0]["node"];
    assert_eq!(first["title"], "Amount 100");
    assert_eq!(first["queue"], "underwriter");
    assert_eq!(first["outcomes"], json!(["approved", "declined"]));
    assert_eq!(first["fields"][0]["id"], "rate");
    let after = conn["pageInfo"]["endCursor"].clone();
    let (_, r) = app
        .gql_key(TASKS, json!({ "after": after }), Some("reviewer-key"))
        .await;
    let page2 = r["data"]["approvalTasks"]["edges"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(page2.len(), 1, "{r}");
    assert_eq!(page2[0]["node"]["title"], "Amount 300");

    // Who may do what: viewers may not list, other queues are refused.
    let (_, r) = app.gql_key(TASKS, json!({}), Some("viewer-key")).await;
    assert_eq!(crate::testapp::error_code(&r), "FORBIDDEN_ROLE");
    let (_, r) = app
        .gql_key(TASKS, json!({ "q": "compliance" }), Some("reviewer-key"))
        .await;
    assert_eq!(crate::testapp::error_code(&r), "FORBIDDEN_ROLE");

    let task = first["id"].as_str().unwrap().to_string();
    let (_, r) = app
        .gql_key(CLAIM, json!({ "id": task }), Some("reviewer-key"))
        .await;
    assert_eq!(
        r["data"]["claimApprovalTask"]["claimedBy"], "reviewer-1",
        "{r}"
    );
    // Someone else holding it: the admin cannot decide it now.
    let decide = |outcome: &str, values: Value| json!({ "i": { "taskId": task, "outcome": outcome, "values": values, "comment": "fine" } });
    let (_, r) = app
        .gql_key(
            DECIDE,
            decide("approved", json!({ "rate": 5 })),
            Some("admin-key"),
        )
        .await;
    assert_eq!(crate::testapp::error_code(&r), "TASK_CLAIMED", "{r}");
    // Bad values are refused with field errors; an unknown outcome too.
    let (_, r) = app
        .gql_key(
            DECIDE,
            decide("approved", json!({ "rate": 99 })),
            Some("reviewer-key"),
        )
        .await;
    assert_eq!(crate::testapp::error_code(&r), "INVALID_DECISION", "{r}");
    let (_, r) = app
        .gql_key(
            DECIDE,
            decide("maybe", json!({ "rate": 5 })),
            Some("reviewer-key"),
        )
        .await;
    assert_eq!(crate::testapp::error_code(&r), "UNKNOWN_OUTCOME", "{r}");
    let (_, r) = app
        .gql_key(
            DECIDE,
            decide("approved", json!({ "rate": 5 })),
            Some("reviewer-key"),
        )
        .await;
    let session = &r["data"]["completeApprovalTask"]["session"];
    assert_eq!(session["status"], "COMPLETED", "{r}");
    assert_eq!(session["screen"]["title"], "Rate 5 by reviewer-1");
    // Deciding twice changes nothing.
    let (_, r) = app
        .gql_key(
            DECIDE,
            decide("declined", json!({ "rate": 5 })),
            Some("reviewer-key"),
        )
        .await;
    assert_eq!(crate::testapp::error_code(&r), "TASK_NOT_OPEN", "{r}");
    let (id, token) = &sessions[0];
    let s = app.session(Some(token), id).await;
    assert_eq!(s["data"]["session"]["screen"]["id"], "ok");

    // The support view shows the step.
    let q = "query($s: ID!) { sessionSteps(sessionId: $s) { node kind state outcome } }";
    let (_, r) = app.gql_key(q, json!({ "s": id }), Some("viewer-key")).await;
    assert_eq!(
        r["data"]["sessionSteps"],
        json!([{ "node": "check", "kind": "approval", "state": "done", "outcome": "approved" }]),
        "{r}"
    );
}

async fn approvals_time_out(backend: Backend) {
    let Some(app) = keyed_app(backend, "300ms").await else {
        return;
    };
    let (id, token) = start_review(&app, 100).await;
    let s = settle(&app, &token, &id).await;
    assert_eq!(s["screen"]["id"], "late", "{s}");
}

async fn events_reach_waiting_sessions(backend: Backend) {
    let Some(app) = keyed_app(backend, "1h").await else {
        return;
    };
    let start = |reference: &'static str| {
        let app = &app;
        async move {
            let (s, token) = app
                .start("paid", json!({ "id": reference }), json!({}))
                .await;
            let id = s["id"].as_str().unwrap().to_string();
            let s = app
                .submit(&token, &id, "go", "next", json!({ "ref": reference }))
                .await;
            assert_eq!(s["status"], "WAITING");
            (id, token)
        }
    };
    let (id, token) = start("pay-1").await;
    let send = "mutation($i: SendEventInput!) { sendEvent(input: $i) { delivered } }";
    let input = json!({ "i": { "name": "payment.settled", "correlationKey": "pay-1", "payload": { "amount": 42 } } });
    let (_, r) = app.gql_key(send, input.clone(), Some("editor-key")).await;
    assert_eq!(crate::testapp::error_code(&r), "FORBIDDEN_ROLE");
    let (_, r) = app.gql_key(send, input, Some("publisher-key")).await;
    assert_eq!(r["data"]["sendEvent"]["delivered"], 1, "{r}");
    let s = app.session(Some(&token), &id).await;
    assert_eq!(s["data"]["session"]["screen"]["title"], "Paid 42");

    // The webhook; an event that arrives before the step waits is kept.
    let hook = |key: Option<&'static str>, body: Value| {
        let mut req = app
            .client
            .post(format!("{}/events/payment.settled", app.base))
            .json(&body);
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        req.send()
    };
    let early = json!({ "correlationKey": "pay-2", "payload": { "amount": 7 } });
    let r = hook(None, early.clone()).await.unwrap();
    assert_eq!(r.status(), 401);
    let r = hook(Some("viewer-key"), early.clone()).await.unwrap();
    assert_eq!(r.status(), 403);
    let r = hook(Some("publisher-key"), json!({ "payload": 1 }))
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = hook(Some("publisher-key"), early).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["delivered"], 0);
    let (id, token) = start("pay-2").await;
    let s = settle(&app, &token, &id).await;
    assert_eq!(s["screen"]["title"], "Paid 7", "{s}");
}

async fn operators_skip_cancel_and_retry(backend: Backend) {
    let Some(app) = keyed_app(backend, "1h").await else {
        return;
    };
    let skip =
        "mutation($s: ID!, $to: ID!) { skipStep(sessionId: $s, to: $to) { status screen { id } } }";
    let cancel =
        "mutation($s: ID!) { cancelSession(sessionId: $s) { status screen { id title } } }";
    let retry = "mutation($s: ID!) { retryStep(sessionId: $s) { status screen { id } } }";
    let (id, _) = start_review(&app, 100).await;
    let (_, r) = app
        .gql_key(skip, json!({ "s": id, "to": "no" }), Some("editor-key"))
        .await;
    assert_eq!(crate::testapp::error_code(&r), "FORBIDDEN_ROLE");
    let (_, r) = app
        .gql_key(skip, json!({ "s": id, "to": "no" }), Some("admin-key"))
        .await;
    assert_eq!(r["data"]["skipStep"]["screen"]["id"], "no", "{r}");
    // The skipped approval left the inbox.
    let (_, r) = app.gql_key(TASKS, json!({}), Some("admin-key")).await;
    assert_eq!(r["data"]["approvalTasks"]["edges"], json!([]), "{r}");

    let (id, token) = start_review(&app, 200).await;
    let (_, r) = app
        .gql_key(cancel, json!({ "s": id }), Some("admin-key"))
        .await;
    assert_eq!(r["data"]["cancelSession"]["status"], "COMPLETED", "{r}");
    let r = app
        .submit_raw(&token, &id, "check", "x", json!({}), None)
        .await;
    assert_eq!(crate::testapp::error_code(&r), "SESSION_ENDED", "{r}");
    // Only a session that failed on a step can be retried.
    let (_, r) = app
        .gql_key(retry, json!({ "s": id }), Some("admin-key"))
        .await;
    assert_eq!(crate::testapp::error_code(&r), "STEP_NOT_CURRENT", "{r}");
}

async fn editors_may_start_mock_sessions(backend: Backend) {
    let Some(app) = keyed_app(backend, "1h").await else {
        return;
    };
    let q = "mutation { startFlow(input: {flowId: \"loan\", user: {id: \"u\"}, mock: {scenario: \"declined\"}}) { id status } }";
    let (_, r) = app.gql_key(q, json!({}), Some("viewer-key")).await;
    assert_eq!(crate::testapp::error_code(&r), "MOCK_NOT_ALLOWED", "{r}");
    let (_, r) = app.gql_key(q, json!({}), Some("editor-key")).await;
    assert_eq!(r["data"]["startFlow"]["status"], "ACTIVE", "{r}");
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
    reviewers_decide_approvals,
    approvals_time_out,
    events_reach_waiting_sessions,
    operators_skip_cancel_and_retry,
    editors_may_start_mock_sessions,
    parallel_steps_join,
);

/// Two replicas on one PostgreSQL: a subscriber on one sees the step that
/// finished on the other (LISTEN/NOTIFY).
#[tokio::test]
async fn updates_from_another_replica_reach_subscribers() {
    let Some(a) = keyed_app(Backend::Postgres, "1h").await else {
        return;
    };
    let b = a.restart().await;
    let (s, token) = b.start("paid", json!({ "id": "r" }), json!({})).await;
    let id = s["id"].as_str().unwrap().to_string();
    let s = b
        .submit(&token, &id, "go", "next", json!({ "ref": "pay-r" }))
        .await;
    assert_eq!(s["status"], "WAITING");
    let mut ws = crate::subscription::subscribe(&b, &id, &token).await;
    let first = crate::subscription::next_json(&mut ws).await;
    assert_eq!(
        first["payload"]["data"]["sessionUpdated"]["status"], "WAITING",
        "{first}"
    );
    // The event is delivered through the other replica.
    let send = "mutation($i: SendEventInput!) { sendEvent(input: $i) { delivered } }";
    let input = json!({ "i": { "name": "payment.settled", "correlationKey": "pay-r", "payload": { "amount": 1 } } });
    let (_, r) = a.gql_key(send, input, Some("publisher-key")).await;
    assert_eq!(r["data"]["sendEvent"]["delivered"], 1, "{r}");
    let next = crate::subscription::next_json(&mut ws).await;
    let s = &next["payload"]["data"]["sessionUpdated"];
    assert_eq!(s["status"], "COMPLETED", "{next}");
    assert_eq!(s["screen"]["id"], "thanks");
}

fn parallel_flow(join: &str, good: u16, bad: u16) -> String {
    format!(
        r#"
id: fan
start: ask
nodes:
  - id: ask
    kind: screen
    actions: [{{ id: go, validate: false, next: checks }}]
  - id: checks
    kind: parallel
    join: {join}
    branches:
      - {{ id: a, method: POST, url: "http://127.0.0.1:{good}/score", body: {{ b: a }} }}
      - {{ id: b, method: POST, url: "http://127.0.0.1:{bad}/score", body: {{ b: b }}, retry: {{ max_attempts: 2, delay: 10ms }} }}
    next: done
    on_error: failed
  - {{ id: done, kind: end, title: "a={{{{ steps.checks.a.body.score }}}}" }}
  - {{ id: failed, kind: end, outcome: failed, title: failed }}
"#
    )
}

async fn parallel_steps_join(backend: Backend) {
    let good = start_upstream(Upstream {
        status_after: 200,
        ..Upstream::default()
    })
    .await;
    let bad_up = Upstream {
        status_after: 404,
        ..Upstream::default()
    };
    let bad = start_upstream(bad_up.clone()).await;
    for (join, expect) in [
        ("all", "failed"),
        ("any", "done"),
        ("first_success", "done"),
    ] {
        let Some(app) = TestApp::spawn_configured(
            backend,
            &[("fan.yaml", parallel_flow(join, good, bad))],
            |c, _| c.step_budget_ms = 5000,
        )
        .await
        else {
            return;
        };
        let (s, token) = app.start("fan", json!({ "id": "p" }), json!({})).await;
        let id = s["id"].as_str().unwrap();
        let s = app.submit(&token, id, "ask", "go", json!({})).await;
        assert_eq!(s["screen"]["id"], expect, "{join}: {s}");
        if expect == "done" {
            assert_eq!(s["screen"]["title"], "a=700");
        }
        let history = app.baton_history(id).await;
        assert!(
            history
                .iter()
                .any(|a| a["node"] == "checks.a" && a["outcome"] == "ok"),
            "{join}: {history:?}"
        );
    }
    // A 404 is not retried: one call per run that waited for branch b.
    assert!(bad_up.calls.load(Ordering::SeqCst) >= 2);
}

/// An experiment whose goal is reached after a backend step: the
/// orchestrator's advance records the conversion like a submit would.
#[tokio::test]
async fn conversions_after_a_backend_step_are_recorded() {
    let flow = r#"
id: stepped
start: hello
nodes:
  - id: hello
    kind: screen
    title: "Variant {{ flags.steptest }}"
    actions: [{ id: go, validate: false, next: call }]
  - { id: call, kind: http, url: "http://localhost/x", mock: { status: 200 }, next: done }
  - { id: done, kind: end, title: Done }
"#;
    let Some(app) = TestApp::spawn_configured(Backend::Sqlite, &[("stepped.yaml", flow.to_string())], |c, dir| {
        c.mock = true;
        c.step_budget_ms = 5000;
        std::fs::write(
            dir.join("flags").join("steptest.flagd.json"),
            r#"{"flags": {"steptest": {"state": "ENABLED", "variants": {"a": "A", "b": "B"}, "defaultVariant": "a", "targeting": {"fractional": [["a", 50], ["b", 50]]}}}}"#,
        )
        .unwrap();
        std::fs::write(
            dir.join("experiments").join("steptest.yaml"),
            "id: steptest-exp\nflag: steptest\ncontrol: a\ngoals: [{ flow: stepped, node: done }]\n",
        )
        .unwrap();
    })
    .await
    else {
        return;
    };
    let (s, token) = app
        .start("stepped", json!({ "id": "conv-1" }), json!({}))
        .await;
    let id = s["id"].as_str().unwrap().to_string();
    assert!(
        s["screen"]["title"]
            .as_str()
            .unwrap()
            .starts_with("Variant "),
        "{s}"
    );
    let s = app.submit(&token, &id, "hello", "go", json!({})).await;
    assert_eq!(s["screen"]["id"], "done", "{s}");
    let events = app.baton_events(&id).await;
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"experiment_exposed"), "{kinds:?}");
    let converted = kinds.iter().position(|k| *k == "experiment_converted");
    let completed = kinds.iter().position(|k| *k == "step_completed");
    assert!(
        converted.is_some() && converted > completed,
        "converted after the step: {kinds:?}"
    );
}

/// A slow upstream that counts the calls it holds at once, and when each
/// arrived.
#[derive(Clone, Default)]
struct Crowd {
    now: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    arrivals: Arc<Mutex<Vec<std::time::Instant>>>,
}

async fn crowd_upstream(crowd: Crowd) -> u16 {
    let app = axum::Router::new()
        .route(
            "/slow",
            post(|State(c): State<Crowd>| async move {
                c.arrivals.lock().await.push(std::time::Instant::now());
                let n = c.now.fetch_add(1, Ordering::SeqCst) + 1;
                c.most.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(150)).await;
                c.now.fetch_sub(1, Ordering::SeqCst);
                axum::Json(json!({ "ok": true }))
            }),
        )
        .with_state(crowd);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

/// Six calls at once to one host: how many the upstream held at most, and
/// how long after the first the last one arrived, under `limits`.
async fn fan_out(limits: &[&str]) -> (usize, Duration) {
    let crowd = Crowd::default();
    let port = crowd_upstream(crowd.clone()).await;
    let branches: String = (0..6)
        .map(|i| {
            format!("      - {{ id: b{i}, method: POST, url: \"http://127.0.0.1:{port}/slow\" }}\n")
        })
        .collect();
    let flow = format!(
        "id: crowd\nstart: ask\nnodes:\n  - id: ask\n    kind: screen\n    actions: [{{ id: go, validate: false, next: fan }}]\n  - id: fan\n    kind: parallel\n    branches:\n{branches}    next: done\n    on_error: failed\n  - {{ id: done, kind: end }}\n  - {{ id: failed, kind: end, outcome: failed }}\n"
    );
    let limits: Vec<String> = limits.iter().map(|l| (*l).to_owned()).collect();
    let app = TestApp::spawn_configured(Backend::Sqlite, &[("crowd.yaml", flow)], |c, _| {
        c.step_budget_ms = 10_000;
        c.upstream_limits = limits;
    })
    .await
    .expect("sqlite app");
    let (s, token) = app.start("crowd", json!({ "id": "c" }), json!({})).await;
    let id = s["id"].as_str().unwrap();
    let s = app.submit(&token, id, "ask", "go", json!({})).await;
    assert_eq!(s["status"], "COMPLETED", "every call got through: {s}");
    let arrivals = crowd.arrivals.lock().await.clone();
    assert_eq!(arrivals.len(), 6, "each branch called once");
    let span = *arrivals.iter().max().unwrap() - *arrivals.iter().min().unwrap();
    (crowd.most.load(Ordering::SeqCst), span)
}

/// `--upstream-limits` caps the calls a host gets at once and per second;
/// other hosts and unlimited runs are not held back.
#[tokio::test]
async fn upstream_limits_cap_calls_at_once_and_per_second() {
    let (most, _) = fan_out(&[]).await;
    assert!(most > 2, "unlimited, the branches overlap: {most}");
    let (most, _) = fan_out(&["127.0.0.1=2", "*=1"]).await;
    assert_eq!(most, 2, "at most two at once");
    // Four per second, in bursts of up to four: the fifth and sixth wait
    // a quarter of a second each.
    let (_, span) = fan_out(&["127.0.0.1=0/4"]).await;
    assert!(span >= Duration::from_millis(400), "{span:?}");
}

#[test]
fn bad_upstream_limits_stop_the_server_with_a_code() {
    let err = crate::testapp::refused(&["--upstream-limits", "api.example.com=lots"]);
    assert!(
        err.contains("INVALID_UPSTREAM_LIMITS") && err.contains("`lots`"),
        "{err}"
    );
}

/// An upstream whose first answer per `Idempotency-Key` takes 3 s and
/// whose later ones come at once; it answers with how many it had seen
/// for that key.
async fn slow_first_upstream(keys: Arc<Mutex<Vec<String>>>) -> u16 {
    let app = axum::Router::new()
        .route(
            "/quote",
            axum::routing::get(
                |State(keys): State<Arc<Mutex<Vec<String>>>>, headers: HeaderMap| async move {
                    let key = headers
                        .get("idempotency-key")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let n = {
                        let mut keys = keys.lock().await;
                        keys.push(key.clone());
                        keys.iter().filter(|k| **k == key).count()
                    };
                    if n == 1 {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                    }
                    axum::Json(json!({ "n": n }))
                },
            ),
        )
        .with_state(keys);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

/// A hedged call that gets no answer in time goes out again with the same
/// `Idempotency-Key`, and the faster answer is the step's.
#[tokio::test]
async fn a_slow_call_is_hedged_with_the_same_key() {
    let keys = Arc::new(Mutex::new(Vec::new()));
    let port = slow_first_upstream(keys.clone()).await;
    let flow = format!(
        r#"
id: hedged
start: ask
nodes:
  - id: ask
    kind: screen
    actions: [{{ id: go, validate: false, next: quote }}]
  - id: quote
    kind: http
    url: "http://127.0.0.1:{port}/quote"
    hedge: 100ms
    timeout: 5s
    next: done
  - {{ id: done, kind: end, title: "answer {{{{ steps.quote.body.n }}}}" }}
"#
    );
    let app = TestApp::spawn_configured(Backend::Sqlite, &[("hedged.yaml", flow)], |c, _| {
        c.step_budget_ms = 10_000;
    })
    .await
    .expect("sqlite app");
    let (s, token) = app.start("hedged", json!({ "id": "h" }), json!({})).await;
    let id = s["id"].as_str().unwrap();
    let s = app.submit(&token, id, "ask", "go", json!({})).await;
    assert_eq!(s["status"], "COMPLETED", "{s}");
    assert_eq!(s["screen"]["title"], "answer 2", "the hedge answered first");
    let keys = keys.lock().await.clone();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(!keys[0].is_empty() && keys[0] == keys[1], "{keys:?}");
    let history = app.baton_history(id).await;
    assert_eq!(history.len(), 1, "one attempt: {history:?}");
}

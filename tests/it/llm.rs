//! `llm` steps against a fake OpenAI-compatible server on 127.0.0.1 that
//! each test scripts: answers repaired until they match the schema, an
//! answer that never does, a judge that sends the answer to a person,
//! retries of a failing endpoint, tokens and cost, secrets kept out of the
//! session, and mock sessions that make no call.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::testapp::{Backend, TestApp};

const TRIAGE_FLOW: &str = r#"
id: triage
start: ask
nodes:
  - id: ask
    kind: screen
    components: [{ kind: text_input, id: text, label: Message, required: true }]
    actions: [{ id: next, next: classify }]
  - id: classify
    kind: llm
    model: small
    system: "You sort support messages."
    prompt: "Classify: {{ input.ask.text }}"
    schema:
      type: object
      properties:
        category: { enum: [billing, bug, other] }
        urgency: { type: integer, minimum: 1, maximum: 5 }
      required: [category, urgency]
    repair: 1
    retry: { max_attempts: 2, delay: 10ms }
    judge: { prompt: "Is `{{ answer.category }}` right for: {{ input.ask.text }}" }
    review: check
    on_error: failed
    next: done
    mock:
      answer: { category: bug, urgency: 2 }
      scenarios:
        doubtful: { answer: { category: other, urgency: 1 }, verdict: unsure }
        broken: { answer: { category: other, urgency: 1 }, fail: connect }
  - id: check
    kind: approval
    role: underwriter
    title: "Check {{ steps.classify.answer.category }}: {{ steps.classify.judge.reason }}"
    outcomes: { approved: done, rejected: failed }
  - id: done
    kind: end
    title: "{{ steps.classify.answer.category }} {{ steps.classify.usage.total_tokens }} {{ steps.classify.cost_usd }} {{ steps.classify.repairs }}"
  - { id: failed, kind: end, title: "Failed: {{ steps.classify.error }}" }
"#;

const KEY: &str = "sk-test-4f1c9a";

/// What the fake endpoint answers next: a status and a chat `content`.
type Script = Arc<Mutex<VecDeque<(u16, String)>>>;

/// The fake endpoint: answers from `script` in order (each with 10
/// prompt and 5 completion tokens) and keeps every request body and its
/// `Authorization` header.
async fn fake_openai(script: Script, seen: Arc<Mutex<Vec<(Value, String)>>>) -> u16 {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, axum::Json(body): axum::Json<Value>| {
                let (script, seen) = (script.clone(), seen.clone());
                async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    seen.lock().unwrap().push((body, auth.clone()));
                    let (status, content) = script
                        .lock()
                        .unwrap()
                        .pop_front()
                        .unwrap_or((500, "the script ran out".into()));
                    let reply = json!({
                        "id": "chatcmpl-1",
                        "object": "chat.completion",
                        "choices": [{ "index": 0, "message": { "role": "assistant", "content": content }, "finish_reason": "stop" }],
                        "usage": { "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15 },
                        // A careless upstream echoes the key back.
                        "echo": auth,
                    });
                    (
                        axum::http::StatusCode::from_u16(status).unwrap(),
                        axum::Json(reply),
                    )
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

struct Fixture {
    app: TestApp,
    script: Script,
    seen: Arc<Mutex<Vec<(Value, String)>>>,
}

async fn fixture(backend: Backend) -> Option<Fixture> {
    fixture_with(backend, TRIAGE_FLOW).await
}

async fn fixture_with(backend: Backend, flow: &str) -> Option<Fixture> {
    fixture_configured(backend, flow, |_| {}).await
}

async fn fixture_configured(
    backend: Backend,
    flow: &str,
    more: impl FnOnce(&mut baton::config::ServeConfig),
) -> Option<Fixture> {
    let script: Script = Arc::default();
    let seen = Arc::default();
    let port = fake_openai(Arc::clone(&script), Arc::clone(&seen)).await;
    let app = TestApp::spawn_configured(backend, &[("triage.yaml", flow.to_string())], |c, dir| {
        c.api_keys = Some(crate::testapp::write_test_keys(dir));
        c.step_budget_ms = 5000;
        c.llm_url = Some(format!("http://127.0.0.1:{port}/v1/"));
        c.llm_prices = vec!["small=1000/2000".into()];
        c.secrets = Some([("LLM_API_KEY".to_owned(), KEY.to_owned())].into());
        more(c);
    })
    .await?;
    Some(Fixture { app, script, seen })
}

impl Fixture {
    fn answers(&self, replies: &[(u16, &str)]) {
        let mut script = self.script.lock().unwrap();
        script.clear();
        script.extend(replies.iter().map(|(s, c)| (*s, (*c).to_owned())));
        self.seen.lock().unwrap().clear();
    }

    /// Starts a session, submits `text`, and returns the session once the
    /// step has settled.
    async fn triage(&self, text: &str, mock: Option<&str>) -> (String, Value) {
        let app = &self.app;
        let (id, token) = match mock {
            None => {
                let (s, token) = app.start("triage", json!({ "id": "u" }), json!({})).await;
                (s["id"].as_str().unwrap().to_owned(), token)
            }
            Some(scenario) => {
                let q = "mutation($s: String!) { startFlow(input: {flowId: \"triage\", user: {id: \"u\"}, mock: {scenario: $s}}) { id token } }";
                let (_, r) = app
                    .gql_key(q, json!({ "s": scenario }), Some("editor-key"))
                    .await;
                let s = &r["data"]["startFlow"];
                (
                    s["id"].as_str().expect("a mock session").to_owned(),
                    s["token"].as_str().unwrap().to_owned(),
                )
            }
        };
        app.submit(&token, &id, "ask", "next", json!({ "text": text }))
            .await;
        let s = app.settled(&token, &id, "check").await;
        (id, s)
    }

    async fn attempts(&self, id: &str) -> Value {
        let q = "query($s: ID!) { sessionSteps(sessionId: $s) { node kind state outcome attempts { attempt outcome statusCode error } } }";
        let (_, r) = self
            .app
            .gql_key(q, json!({ "s": id }), Some("admin-key"))
            .await;
        r["data"]["sessionSteps"][0].clone()
    }
}

async fn answers_are_repaired_until_they_match(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    f.answers(&[
        (200, r#"{"category": "spam", "urgency": 9}"#),
        (
            200,
            "```json\n{\"category\": \"billing\", \"urgency\": 4}\n```",
        ),
        (
            200,
            r#"{"verdict": "approve", "reason": "it is about an invoice"}"#,
        ),
    ]);
    let (id, s) = f.triage("I was charged twice", None).await;
    // Three calls of 10 + 5 tokens; 30 × $1000 + 15 × $2000 per million.
    assert_eq!(s["screen"]["title"], "billing 45 0.06 1", "{s}");
    let seen = f.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter()
            .all(|(_, auth)| auth == &format!("Bearer {KEY}"))
    );
    let first = &seen[0].0;
    assert_eq!(first["model"], "small");
    assert!(first.get("response_format").is_none(), "{first}");
    assert_eq!(
        first["messages"][1]["content"],
        "Classify: I was charged twice"
    );
    let system = first["messages"][0]["content"].as_str().unwrap();
    assert!(system.starts_with("You sort support messages."), "{system}");
    assert!(
        system.contains("\"urgency\""),
        "the schema is in the prompt: {system}"
    );
    // The repair carries the first answer and what was wrong with it.
    let repair = seen[1].0["messages"].as_array().unwrap();
    assert_eq!(repair.len(), 4);
    assert_eq!(repair[2]["role"], "assistant");
    let fix = repair[3]["content"].as_str().unwrap();
    assert!(
        fix.contains("/category") && fix.contains("/urgency"),
        "{fix}"
    );
    let judge = seen[2].0["messages"][1]["content"].as_str().unwrap();
    assert_eq!(judge, "Is `billing` right for: I was charged twice");
    let step = f.attempts(&id).await;
    assert_eq!(step["kind"], "llm", "{step}");
    assert_eq!(step["attempts"].as_array().unwrap().len(), 3, "{step}");
}

async fn an_answer_that_never_matches_ends_on_error(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    f.answers(&[
        (200, "I think it is billing."),
        (200, r#"{"category": "billing"}"#),
    ]);
    let (id, s) = f.triage("help", None).await;
    let title = s["screen"]["title"].as_str().unwrap();
    assert!(title.starts_with("Failed: LLM_ANSWER_INVALID"), "{s}");
    assert_eq!(f.seen.lock().unwrap().len(), 2, "one answer and one repair");
    assert_eq!(f.attempts(&id).await["outcome"], "error");
}

async fn a_doubtful_judge_sends_the_answer_to_a_person(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    f.answers(&[
        (200, r#"{"category": "other", "urgency": 1}"#),
        (200, r#"{"verdict": "unsure", "reason": "could be a bug"}"#),
    ]);
    let (id, s) = f.triage("the app is slow", None).await;
    assert_eq!(s["screen"]["id"], "check", "{s}");
    let q = "query { approvalTasks(first: 10) { edges { node { id sessionId title } } } }";
    let (_, r) = f.app.gql_key(q, json!({}), Some("admin-key")).await;
    let task = r["data"]["approvalTasks"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["node"])
        .find(|n| n["sessionId"] == id.as_str())
        .unwrap_or_else(|| panic!("no review task: {r}"))
        .clone();
    assert_eq!(task["title"], "Check other: could be a bug");
    let decide = "mutation($i: CompleteApprovalInput!) { completeApprovalTask(input: $i) { session { status screen { title } } } }";
    let (_, r) = f
        .app
        .gql_key(
            decide,
            json!({ "i": { "taskId": task["id"], "outcome": "approved" } }),
            Some("admin-key"),
        )
        .await;
    let session = &r["data"]["completeApprovalTask"]["session"];
    assert_eq!(session["screen"]["title"], "other 30 0.04 0", "{r}");
}

async fn a_failing_endpoint_is_retried_then_ends_on_error(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    f.answers(&[
        (503, "busy"),
        (200, r#"{"category": "bug", "urgency": 3}"#),
        (200, r#"{"verdict": "approve"}"#),
    ]);
    let (id, s) = f.triage("crash", None).await;
    assert_eq!(s["screen"]["title"], "bug 30 0.04 0", "{s}");
    let step = f.attempts(&id).await;
    let outcomes: Vec<&str> = step["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["retry", "ok", "ok"], "{step}");

    f.answers(&[(500, "down"), (500, "down")]);
    let (id, s) = f.triage("crash", None).await;
    let title = s["screen"]["title"].as_str().unwrap();
    assert!(title.starts_with("Failed: status 500"), "{s}");
    // The key the upstream echoed is recorded redacted.
    let events = f.app.baton_events(&id).await.to_string();
    assert!(!events.contains(KEY), "{events}");
    assert!(events.contains("Bearer [redacted]"), "{events}");
}

async fn mock_sessions_answer_from_the_mock(backend: Backend) {
    let Some(f) = fixture(backend).await else {
        return;
    };
    f.answers(&[]);
    let (_, s) = f.triage("anything", Some("default")).await;
    assert_eq!(s["screen"]["title"], "bug 0 0.0 0", "{s}");
    // The doubtful judge sends it to review, which a mock session's
    // approval (without a mock of its own) approves.
    let (id, s) = f.triage("anything", Some("doubtful")).await;
    assert_eq!(s["screen"]["title"], "other 0 0.0 0", "{s}");
    let events = f.app.baton_events(&id).await;
    let steps: Vec<(&str, &str)> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "step_completed")
        .map(|e| {
            let p = &e["payload"];
            (p["node"].as_str().unwrap(), p["outcome"].as_str().unwrap())
        })
        .collect();
    assert_eq!(steps, [("classify", "review"), ("check", "approved")]);
    let (_, s) = f.triage("anything", Some("broken")).await;
    assert_eq!(s["screen"]["id"], "failed", "{s}");
    assert!(
        f.seen.lock().unwrap().is_empty(),
        "a mock session calls nothing"
    );
}

async fn a_prompt_that_fails_to_render_ends_on_error(backend: Backend) {
    // Integer division by zero fails only when the template runs.
    let flow = TRIAGE_FLOW.replace(
        "Classify: {{ input.ask.text }}",
        "Classify: {{ input.ask.text }} {{ 1 // 0 }}",
    );
    let Some(f) = fixture_with(backend, &flow).await else {
        return;
    };
    f.answers(&[]);
    let (_, s) = f.triage("help", None).await;
    let title = s["screen"]["title"].as_str().unwrap();
    assert!(title.starts_with("Failed: template:"), "{s}");
    assert!(f.seen.lock().unwrap().is_empty(), "nothing was sent");
}

async fn structured_outputs_send_the_schema(backend: Backend) {
    let Some(f) = fixture_configured(backend, TRIAGE_FLOW, |c| {
        c.llm_response_format = baton::config::LlmResponseFormat::JsonSchema;
    })
    .await
    else {
        return;
    };
    f.answers(&[
        (200, r#"{"category": "bug", "urgency": 3}"#),
        (200, r#"{"verdict": "approve"}"#),
    ]);
    let (_, s) = f.triage("crash", None).await;
    assert_eq!(s["screen"]["title"], "bug 30 0.04 0", "{s}");
    let seen = f.seen.lock().unwrap().clone();
    let format = &seen[0].0["response_format"];
    assert_eq!(format["type"], "json_schema", "{format}");
    assert_eq!(format["json_schema"]["name"], "classify");
    assert_eq!(
        format["json_schema"]["schema"]["required"],
        json!(["category", "urgency"])
    );
    // The judge answers a verdict, not the step's schema.
    assert_eq!(
        seen[1].0["response_format"],
        json!({ "type": "json_object" })
    );
}

macro_rules! llm_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test] async fn $name() { super::$name(crate::testapp::Backend::Sqlite).await } )*
        }
        mod postgres {
            $( #[tokio::test] async fn $name() { super::$name(crate::testapp::Backend::Postgres).await } )*
        }
    };
}

llm_tests!(
    answers_are_repaired_until_they_match,
    an_answer_that_never_matches_ends_on_error,
    a_doubtful_judge_sends_the_answer_to_a_person,
    a_failing_endpoint_is_retried_then_ends_on_error,
    mock_sessions_answer_from_the_mock,
    a_prompt_that_fails_to_render_ends_on_error,
    structured_outputs_send_the_schema,
);

/// What `baton validate` says about a flow.
fn validate(flow: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.yaml");
    std::fs::write(&path, flow).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["validate", path.to_str().unwrap()])
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn bad_llm_steps_fail_validation_with_codes() {
    let ok = validate(TRIAGE_FLOW);
    assert!(!ok.contains("ERROR") && !ok.contains("error["), "{ok}");
    let bad_schema = TRIAGE_FLOW.replace("type: object", "type: thing");
    assert!(validate(&bad_schema).contains("INVALID_ANSWER_SCHEMA"));
    let bad_mock = TRIAGE_FLOW.replace("category: bug, urgency: 2", "category: bug, urgency: 7");
    let out = validate(&bad_mock);
    assert!(
        out.contains("INVALID_MOCK") && out.contains("mock.answer"),
        "{out}"
    );
    let too_many = TRIAGE_FLOW.replace("repair: 1", "repair: 9");
    assert!(validate(&too_many).contains("INVALID_RETRY"));
    let no_judge = TRIAGE_FLOW.replace(
        "    judge: { prompt: \"Is `{{ answer.category }}` right for: {{ input.ask.text }}\" }\n",
        "",
    );
    assert!(validate(&no_judge).contains("UNUSED_REVIEW"));
}

#[test]
fn an_llm_url_outside_the_allowlist_stops_the_server() {
    let err = crate::testapp::refused(&["--llm-url", "http://api.openai.example/v1"]);
    assert!(
        err.contains("HOST_NOT_ALLOWED") && err.contains("api.openai.example"),
        "{err}"
    );
}

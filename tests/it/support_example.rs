//! The support example as the README runs it: `flows/support.yaml` with
//! its `contact` subflow, in mock mode and against the fake model in
//! `client-examples/fake-llm/` (a separate process on 127.0.0.1), where
//! a doubtful answer goes to an agent who decides it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

use crate::testapp::{Backend, TestApp, repo_flows};

/// The fake model's process, stopped with the test.
struct FakeLlm(Child);

impl Drop for FakeLlm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the fake on a free port; returns it and its base URL.
fn fake_llm() -> (FakeLlm, String) {
    let script = repo_flows().with_file_name("client-examples/fake-llm/fake_llm.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg("0")
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the fake model");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("the fake says where it listens");
    let url = line
        .trim()
        .strip_prefix("fake LLM on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (FakeLlm(child), url)
}

/// Starts a support session (a mock one for `scenario`), sends `message`,
/// gives an address (or skips the contact subflow) and returns the session
/// once it settled (or parked on the agent's review).
async fn ask(
    app: &TestApp,
    message: &str,
    email: Option<&str>,
    scenario: Option<&str>,
) -> (String, Value) {
    let q = "mutation($m: MockInput) { startFlow(input: {flowId: \"support\", user: {id: \"u\"}, mock: $m}) { id token } }";
    let mock = scenario.map(|s| json!({ "scenario": s }));
    let (_, r) = app
        .gql_key(q, json!({ "m": mock }), Some("editor-key"))
        .await;
    let s = &r["data"]["startFlow"];
    let id = s["id"].as_str().unwrap_or_else(|| panic!("{r}")).to_owned();
    let token = s["token"].as_str().unwrap().to_owned();
    let s = app
        .submit(
            &token,
            &id,
            "describe",
            "send",
            json!({ "message": message }),
        )
        .await;
    assert_eq!(s["screen"]["id"], "contact/email", "{s}");
    match email {
        Some(address) => {
            let s = app
                .submit(
                    &token,
                    &id,
                    "contact/email",
                    "next",
                    json!({ "address": address }),
                )
                .await;
            assert_eq!(s["screen"]["title"], format!("Is {address} right?"), "{s}");
            app.submit(&token, &id, "contact/confirm", "yes", json!({}))
                .await;
        }
        None => {
            app.submit(&token, &id, "contact/email", "skip", json!({}))
                .await;
        }
    }
    let s = app.settled(&token, &id, "agent_review").await;
    (id, s)
}

fn texts(s: &Value) -> Vec<&str> {
    s["screen"]["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["text"].as_str())
        .collect()
}

async fn the_support_example_runs(backend: Backend) {
    let (_fake, url) = fake_llm();
    let Some(app) = TestApp::spawn_configured(
        backend,
        // Every example flow is there, `support` and `contact` among them.
        &[],
        |c, dir| {
            c.api_keys = Some(crate::testapp::write_test_keys(dir));
            c.step_budget_ms = 5000;
            c.llm_url = Some(url.clone());
            c.llm_model = Some("fake".into());
        },
    )
    .await
    else {
        return;
    };

    // Mock mode: the model is never called.
    let (_, s) = ask(
        &app,
        "Charged twice for one order",
        Some("a@example.com"),
        Some("default"),
    )
    .await;
    assert_eq!(s["screen"]["title"], "We filed it under billing", "{s}");
    assert_eq!(texts(&s)[1], "We will write to a@example.com.");
    let (_, s) = ask(&app, "The app feels slow lately", None, Some("doubtful")).await;
    assert_eq!(s["screen"]["title"], "An agent filed it under bug", "{s}");

    // Against the fake model: sorted and approved by the judge.
    let (_, s) = ask(&app, "I forgot my password", Some("b@example.com"), None).await;
    assert_eq!(s["status"], "COMPLETED", "{s}");
    assert_eq!(s["screen"]["title"], "We filed it under account", "{s}");
    assert_eq!(
        texts(&s)[0],
        "I forgot my password. We answer urgency 2 requests first."
    );

    // The judge is unsure: an agent decides.
    let (id, s) = ask(&app, "Something is off, not sure what", None, None).await;
    assert_eq!(s["screen"]["id"], "agent_review", "{s}");
    let q = "query { approvalTasks(first: 10) { edges { node { id sessionId title } } } }";
    let (_, r) = app.gql_key(q, json!({}), Some("admin-key")).await;
    let task = r["data"]["approvalTasks"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["node"])
        .find(|n| n["sessionId"] == id.as_str())
        .unwrap_or_else(|| panic!("no review task: {r}"))
        .clone();
    assert_eq!(
        task["title"],
        "Check: Something is off, not sure what (the request is vague)"
    );
    let decide = "mutation($i: CompleteApprovalInput!) { completeApprovalTask(input: $i) { session { status screen { title } } } }";
    let (_, r) = app
        .gql_key(
            decide,
            json!({ "i": { "taskId": task["id"], "outcome": "confirmed", "values": { "category": "bug" } } }),
            Some("admin-key"),
        )
        .await;
    let session = &r["data"]["completeApprovalTask"]["session"];
    assert_eq!(session["status"], "COMPLETED", "{r}");
    assert_eq!(
        session["screen"]["title"], "An agent filed it under bug",
        "{r}"
    );
}

#[tokio::test]
async fn the_support_example_runs_sqlite() {
    the_support_example_runs(Backend::Sqlite).await;
}

#[tokio::test]
async fn the_support_example_runs_postgres() {
    the_support_example_runs(Backend::Postgres).await;
}

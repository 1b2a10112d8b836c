//! Subflows: a flow runs another flow inside the same session. Its screens
//! are shown in place with their own `input` and `steps`, `params` come in,
//! what the child collected comes back at `steps.<id>`, its end outcome
//! picks the parent's edge, Back works inside it and out of it, a backend
//! step inside it runs against a real upstream, and the child is pinned
//! to the version live when the session first enters it. Publishing a
//! cycle or a missing child is refused.

use serde_json::{Value, json};

use crate::testapp::{Backend, TestApp, error_code};

const SIGNUP: &str = r#"
id: signup
start: contact
nodes:
  - id: contact
    kind: screen
    components: [{ kind: text_input, id: phone, label: Phone, required: true }]
    actions: [{ id: next, next: verify }]
  - id: verify
    kind: subflow
    flow: otp
    params: { phone: "{{ input.contact.phone }}", tries: 3 }
    next: welcome
    on_abandoned: later
  - id: welcome
    kind: end
    title: "Welcome {{ input.contact.phone }}: {{ steps.verify.outcome }}, code {{ steps.verify.input.code.code }}, {{ steps.verify.steps.check.body.verdict }}"
  - { id: later, kind: end, outcome: abandoned, title: "Maybe later ({{ steps.verify.outcome }})" }
"#;

const OTP: &str = r#"
id: otp
start: code
nodes:
  - id: code
    kind: screen
    title: "Code sent to {{ params.phone }} ({{ params.tries }} tries)"
    components: [{ kind: text_input, id: code, label: Code, required: true }]
    actions:
      - { id: next, next: check }
      - { id: cancel, validate: false, next: cancelled }
  - id: check
    kind: http
    method: POST
    url: "http://127.0.0.1:PORT/check"
    body: { code: "{{ input.code.code }}", phone: "{{ params.phone }}" }
    next: confirm
  - id: confirm
    kind: screen
    title: "Confirm {{ input.code.code }}: {{ steps.check.body.verdict }}"
    actions: [{ id: yes, next: ok }]
  - { id: ok, kind: end }
  - { id: cancelled, kind: end, outcome: abandoned }
"#;

/// An upstream that checks a code for a phone.
async fn upstream() -> u16 {
    let app = axum::Router::new().route(
        "/check",
        axum::routing::post(|axum::Json(body): axum::Json<Value>| async move {
            let ok = body["code"] == "1234" && body["phone"] == "555";
            axum::Json(json!({ "verdict": if ok { "valid" } else { "wrong" } }))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

const SAVE: &str = "mutation($i: SaveDraftInput!) { saveDraft(input: $i) { ok version { number } issues { code } } }";
const PUBLISH: &str = "mutation($i: PublishFlowInput!) { publishFlow(input: $i) { number } }";

/// Saves `source` as a draft of `flow` and publishes it: the publish's
/// answer.
async fn publish(app: &TestApp, flow: &str, source: &str) -> Value {
    let (_, r) = app
        .gql_key(
            SAVE,
            json!({ "i": { "flowId": flow, "source": source } }),
            Some("editor-key"),
        )
        .await;
    let version = &r["data"]["saveDraft"]["version"]["number"];
    assert!(version.is_number(), "{r}");
    let (_, r) = app
        .gql_key(
            PUBLISH,
            json!({ "i": { "flowId": flow, "version": version, "message": "test" } }),
            Some("publisher-key"),
        )
        .await;
    r
}

fn screen(s: &Value) -> (&str, &str) {
    (
        s["screen"]["id"].as_str().unwrap_or_else(|| panic!("{s}")),
        s["screen"]["title"].as_str().unwrap_or_default(),
    )
}

async fn a_flow_runs_another(backend: Backend) {
    let port = upstream().await;
    let otp = OTP.replace("PORT", &port.to_string());
    let Some(app) = TestApp::spawn_configured(
        backend,
        &[
            ("signup.yaml", SIGNUP.to_owned()),
            ("otp.yaml", otp.clone()),
        ],
        |c, dir| {
            c.api_keys = Some(crate::testapp::write_test_keys(dir));
            c.step_budget_ms = 5000;
        },
    )
    .await
    else {
        return;
    };

    // In, with the parent's value as a param; Back from the child's first
    // screen leaves it, with what the parent's screen had.
    let (s, token) = app.start("signup", json!({ "id": "u1" }), json!({})).await;
    let id = s["id"].as_str().unwrap().to_owned();
    let s = app
        .submit(&token, &id, "contact", "next", json!({ "phone": "555" }))
        .await;
    assert_eq!(screen(&s), ("verify/code", "Code sent to 555 (3 tries)"));
    let s = app.back(&token, &id).await["data"]["back"].clone();
    assert_eq!(screen(&s), ("contact", ""), "{s}");
    assert_eq!(s["screen"]["values"]["phone"], "555", "{s}");
    let s = app
        .submit(&token, &id, "contact", "next", json!({ "phone": "555" }))
        .await;
    assert_eq!(screen(&s).0, "verify/code");

    // Inside: the child's own input and steps; a real call in between;
    // Back between the child's screens keeps what was typed.
    let s = app
        .submit(
            &token,
            &id,
            "verify/code",
            "next",
            json!({ "code": "1234" }),
        )
        .await;
    assert_eq!(screen(&s), ("verify/confirm", "Confirm 1234: valid"));
    let s = app.back(&token, &id).await["data"]["back"].clone();
    assert_eq!(screen(&s).0, "verify/code", "{s}");
    assert_eq!(s["screen"]["values"]["code"], "1234", "{s}");
    app.submit(
        &token,
        &id,
        "verify/code",
        "next",
        json!({ "code": "1234" }),
    )
    .await;
    let s = app
        .submit(&token, &id, "verify/confirm", "yes", json!({}))
        .await;

    // Out: the child's end chose `next`, and what it collected is at
    // `steps.verify`; the parent's own input is back.
    assert_eq!(s["status"], "COMPLETED", "{s}");
    assert_eq!(
        screen(&s),
        ("welcome", "Welcome 555: completed, code 1234, valid")
    );
    let events = app.baton_events(&id).await;
    let kinds: Vec<(&str, &str)> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "entered")
        .map(|e| {
            let p = &e["payload"];
            (
                p["node"].as_str().unwrap(),
                p["node_kind"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(kinds.contains(&("verify/ok", "return")), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&("welcome", "end")), "{kinds:?}");

    // The child's abandoned end follows `on_abandoned`.
    let (s, token) = app.start("signup", json!({ "id": "u2" }), json!({})).await;
    let id2 = s["id"].as_str().unwrap().to_owned();
    app.submit(&token, &id2, "contact", "next", json!({ "phone": "1" }))
        .await;
    let s = app
        .submit(&token, &id2, "verify/code", "cancel", json!({}))
        .await;
    assert_eq!(screen(&s), ("later", "Maybe later (abandoned)"));
    assert_eq!(s["outcome"], "ABANDONED", "{s}");

    // Pinning: `inside` entered otp v1 before v2 was published and keeps
    // it; `before` started before the publish but had not entered, so it
    // gets v2, as does a session started after.
    let (s, t_inside) = app.start("signup", json!({ "id": "u3" }), json!({})).await;
    let inside = s["id"].as_str().unwrap().to_owned();
    app.submit(
        &t_inside,
        &inside,
        "contact",
        "next",
        json!({ "phone": "7" }),
    )
    .await;
    let (s, t_before) = app.start("signup", json!({ "id": "u4" }), json!({})).await;
    let before = s["id"].as_str().unwrap().to_owned();
    let v2 = otp.replace("Code sent to", "Your code for");
    let r = publish(&app, "otp", &v2).await;
    assert_eq!(r["data"]["publishFlow"]["number"], 2, "{r}");
    let s = app.session(Some(&t_inside), &inside).await["data"]["session"].clone();
    assert_eq!(screen(&s).1, "Code sent to 7 (3 tries)", "{s}");
    let s = app
        .submit(
            &t_inside,
            &inside,
            "verify/code",
            "next",
            json!({ "code": "0" }),
        )
        .await;
    assert_eq!(screen(&s), ("verify/confirm", "Confirm 0: wrong"));
    let s = app
        .submit(
            &t_before,
            &before,
            "contact",
            "next",
            json!({ "phone": "8" }),
        )
        .await;
    assert_eq!(screen(&s).1, "Your code for 8 (3 tries)", "{s}");
    // A restart reads the pins back from the store.
    let app = app.restart().await;
    let s = app.session(Some(&t_inside), &inside).await["data"]["session"].clone();
    assert_eq!(screen(&s).0, "verify/confirm", "{s}");
    let s = app.back(&t_inside, &inside).await["data"]["back"].clone();
    assert_eq!(screen(&s).1, "Code sent to 7 (3 tries)", "{s}");

    // A cycle, a missing child: saved as drafts, refused at publish.
    let cyclic = v2.replace(
        "  - { id: ok, kind: end }",
        "  - { id: ok, kind: subflow, flow: signup, next: done }\n  - { id: done, kind: end }",
    );
    let r = publish(&app, "otp", &cyclic).await;
    assert_eq!(error_code(&r), "DRAFT_INVALID", "{r}");
    assert!(r.to_string().contains("SUBFLOW_CYCLE"), "{r}");
    assert!(r.to_string().contains("otp -> signup -> otp"), "{r}");
    let missing = SIGNUP.replace("flow: otp", "flow: otp2");
    let r = publish(&app, "signup", &missing).await;
    assert!(r.to_string().contains("UNKNOWN_SUBFLOW"), "{r}");
    let own = SIGNUP.replace("flow: otp", "flow: signup");
    let (_, r) = app
        .gql_key(
            SAVE,
            json!({ "i": { "flowId": "signup", "source": own } }),
            Some("editor-key"),
        )
        .await;
    assert_eq!(r["data"]["saveDraft"]["ok"], false, "{r}");
    assert_eq!(
        r["data"]["saveDraft"]["issues"][0]["code"], "SUBFLOW_CYCLE",
        "{r}"
    );
}

#[tokio::test]
async fn a_flow_runs_another_sqlite() {
    a_flow_runs_another(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_flow_runs_another_postgres() {
    a_flow_runs_another(Backend::Postgres).await;
}

//! Declarative analytics ids from outside, on both stores: the screen API
//! hands clients the `logId` of each screen, action and component (set in
//! the flow or derived from flow, node and component ids), and the
//! session's impressions (`entered` a screen or a last screen, `went_back`)
//! and actions (`submitted`, `rejected`) carry the same ids plus the arms
//! of the experiments that count the session; the feed shows them as stored.

use serde_json::{Value, json};

use crate::testapp::{Backend, TestApp, write_test_keys};

const FLOW: &str = r#"
id: signup
start: intro
nodes:
  - id: intro
    kind: screen
    log_id: signup.landing
    title: "{{ flags['cta-copy'] }}"
    components:
      - { kind: text, id: pitch, text: "Join us" }
      - { kind: email_input, id: email, label: Email, required: true, log_id: signup.email }
      - { kind: text, text: "Terms apply" }
      - { kind: text, id: vip, text: "VIP", visible_when: { "==": [{ "var": "user.attributes.vip" }, true] } }
    actions:
      - { id: go, log_id: signup.cta, next: check }
      - { id: later, validate: false, next: bye }
  - id: check
    kind: screen
    components: [{ kind: text, id: sure, text: "Sure?" }]
    actions: [{ id: yes, next: done }]
  - id: done
    kind: end
    components: [{ kind: text, id: welcome, text: "Welcome" }]
  - { id: bye, kind: end, outcome: abandoned }
"#;

const FLAGS: &str = r#"{"flags": {"cta-copy": {
  "state": "ENABLED", "variants": {"a": "Join", "b": "Start now"}, "defaultVariant": "a",
  "targeting": {"fractional": [["a", 50], ["b", 50]]}}}}"#;

const EXPERIMENT: &str = r#"
id: cta
flag: cta-copy
control: a
eligible: {"!=": [{"var": "client.platform"}, "android"]}
goals: [{flow: signup, node: done}]
"#;

const START: &str = r#"mutation($i: StartFlowInput!) { startFlow(input: $i) {
  id token screen { id logId actions { id logId } components { id logId } } } }"#;

async fn spawn(backend: Backend) -> Option<TestApp> {
    TestApp::spawn_configured(backend, &[], |config, dir| {
        config.api_keys = Some(write_test_keys(dir));
        std::fs::write(dir.join("flows/signup.yaml"), FLOW).unwrap();
        std::fs::write(dir.join("flags/cta.flagd.json"), FLAGS).unwrap();
        std::fs::write(dir.join("experiments/cta.yaml"), EXPERIMENT).unwrap();
    })
    .await
}

/// The session's events with a `log_id`: `(kind, payload)`.
async fn logged(app: &TestApp, session: &str) -> Vec<(String, Value)> {
    app.baton_events(session)
        .await
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["payload"].get("log_id").is_some())
        .map(|e| (e["kind"].as_str().unwrap().to_owned(), e["payload"].clone()))
        .collect()
}

async fn log_ids(backend: Backend) {
    let Some(app) = spawn(backend).await else {
        return;
    };
    let r = app
        .gql(
            START,
            json!({ "i": { "flowId": "signup", "user": { "id": "u1" }, "client": { "platform": "web" } } }),
            None,
        )
        .await;
    let s = &r["data"]["startFlow"];
    assert_eq!(s["screen"]["logId"], "signup.landing", "{r}");
    assert_eq!(
        s["screen"]["actions"],
        json!([{ "id": "go", "logId": "signup.cta" }, { "id": "later", "logId": "signup.intro.later" }])
    );
    assert_eq!(
        s["screen"]["components"],
        json!([
            { "id": "pitch", "logId": "signup.intro.pitch" },
            { "id": "email", "logId": "signup.email" },
            { "id": null, "logId": null },
        ])
    );
    let (id, token) = (
        s["id"].as_str().unwrap().to_owned(),
        s["token"].as_str().unwrap().to_owned(),
    );
    let v = app.submit(&token, &id, "intro", "go", json!({})).await;
    assert_eq!(v["screen"]["errors"][0]["field"], "email", "{v}");
    app.submit(&token, &id, "intro", "go", json!({ "email": "a@b.co" }))
        .await;
    app.back(&token, &id).await;
    app.submit(&token, &id, "intro", "go", json!({ "email": "a@b.co" }))
        .await;
    let done = app.submit(&token, &id, "check", "yes", json!({})).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");

    let events = logged(&app, &id).await;
    let arm = events[0].1["arms"]["cta"].clone();
    assert!(
        arm == "a" || arm == "b",
        "the impression carries the arm: {events:?}"
    );
    let arms = json!({ "cta": arm });
    let shown = |log_id: &str, components: Value| {
        let mut p = json!({ "log_id": log_id, "arms": arms });
        if components != json!([]) {
            p["components"] = components;
        }
        p
    };
    let intro = shown(
        "signup.landing",
        json!(["signup.intro.pitch", "signup.email"]),
    );
    let check = shown("signup.check", json!(["signup.check.sure"]));
    let cta = json!({ "log_id": "signup.cta", "arms": arms });
    let only = |p: &Value| {
        let keep = ["log_id", "components", "arms"];
        Value::Object(
            p.as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| keep.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )
    };
    let got: Vec<(String, Value)> = events.iter().map(|(k, p)| (k.clone(), only(p))).collect();
    let want = |k: &str, p: &Value| (k.to_owned(), p.clone());
    assert_eq!(
        got,
        [
            want("entered", &intro),
            want("rejected", &cta),
            want("submitted", &cta),
            want("entered", &check),
            want("went_back", &intro),
            want("submitted", &cta),
            want("entered", &check),
            want(
                "submitted",
                &json!({ "log_id": "signup.check.yes", "arms": arms })
            ),
            want(
                "entered",
                &shown("signup.done", json!(["signup.done.welcome"]))
            ),
        ]
    );

    // A user the experiment does not admit is in no arm: no `arms`.
    let r = app
        .gql(
            START,
            json!({ "i": { "flowId": "signup", "user": { "id": "u2", "attributes": { "vip": true } }, "client": { "platform": "android" } } }),
            None,
        )
        .await;
    let other = r["data"]["startFlow"]["id"].as_str().unwrap().to_owned();
    let events = logged(&app, &other).await;
    assert_eq!(
        events.iter().map(|(_, p)| only(p)).collect::<Vec<_>>(),
        [json!({ "log_id": "signup.landing",
                 "components": ["signup.intro.pitch", "signup.email", "signup.intro.vip"] })]
    );

    // The feed hands the same payload to webhooks, NATS and `events tail`
    // (on PostgreSQL it may hold an event back while an older transaction
    // of the cluster is open).
    let mut fed = Value::Null;
    for _ in 0..200 {
        let (_, r) = app
            .gql_key(
                "{ eventFeed(first: 1000) { events { sessionId kind payload } } }",
                json!({}),
                Some("viewer-key"),
            )
            .await;
        let events = r["data"]["eventFeed"]["events"]
            .as_array()
            .unwrap_or_else(|| panic!("{r}"));
        if let Some(e) = events
            .iter()
            .find(|e| e["sessionId"] == other.as_str() && e["kind"] == "entered")
        {
            fed = e["payload"].clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(fed["log_id"], "signup.landing", "{fed}");
    assert_eq!(fed["components"][2], "signup.intro.vip", "{fed}");

    // A funnel by arm puts that user where its events put it: in no arm,
    // whether the hour is read from the log (a range ending now) or from
    // the rollups (the default range, ending on the hour).
    let q = "query($from: DateTime, $to: DateTime) { funnel(flowId: \"signup\", \
        groupBy: EXPERIMENT_ARM, experiment: \"cta\", from: $from, to: $to) { \
        sessions groups { key sessions } } }";
    let arm = arm.as_str().unwrap().to_owned();
    let want = json!([
        { "key": "(not in the experiment)", "sessions": 1 },
        { "key": arm, "sessions": 1 },
    ]);
    let sorted = |r: &Value| {
        let mut g = r["data"]["funnel"]["groups"]
            .as_array()
            .unwrap_or_else(|| panic!("{r}"))
            .clone();
        g.sort_by_key(|g| g["key"].as_str().unwrap_or_default().to_owned());
        Value::Array(g)
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let logged = json!({
        "from": baton::engine::rfc3339(now - 60_000),
        "to": baton::engine::rfc3339(now + 1),
    });
    let (_, r) = app.gql_key(q, logged, Some("viewer-key")).await;
    assert_eq!(sorted(&r), want, "{r}");
    let mut from_rollups = Value::Null;
    for _ in 0..200 {
        let (_, r) = app.gql_key(q, json!({}), Some("viewer-key")).await;
        from_rollups = sorted(&r);
        if from_rollups == want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(from_rollups, want);
}

#[tokio::test]
async fn log_ids_sqlite() {
    log_ids(Backend::Sqlite).await;
}

#[tokio::test]
async fn log_ids_postgres() {
    log_ids(Backend::Postgres).await;
}

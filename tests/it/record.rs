//! Recording mocks: a session that ran against a real upstream (a local
//! server) is written into its flow's mocks as a scenario, saved as a
//! draft, published, and replayed by a mock session with the same data;
//! the secret the upstream echoed stays redacted throughout.

use serde_json::{Value, json};

use crate::testapp::{Backend, TestApp, error_code};

const SECRET: &str = "pk-live-77aa01";

const QUOTE_FLOW: &str = r#"
id: quote
start: ask
nodes:
  - id: ask
    kind: screen
    components: [{ kind: text_input, id: city, label: City, required: true }]
    actions: [{ id: next, next: price }]
  - id: price
    kind: http
    method: POST
    url: "http://127.0.0.1:PORT/price"
    headers: { Authorization: "Bearer {{ secrets.PRICE_KEY }}" }
    body: { city: "{{ input.ask.city }}" }
    next: show
    mock: { body: { price: 1, echo: none } }
  - { id: show, kind: end, title: "Price {{ steps.price.body.price }} ({{ steps.price.body.echo }})" }
"#;

/// An upstream that prices by the city's length and echoes the key.
async fn upstream() -> u16 {
    let app = axum::Router::new().route(
        "/price",
        axum::routing::post(
            |headers: axum::http::HeaderMap, axum::Json(body): axum::Json<Value>| async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let city = body["city"].as_str().unwrap_or_default().len();
                axum::Json(json!({ "price": city * 10, "echo": auth }))
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

/// Starts a session (a mock one for `scenario`), submits `city`, and
/// returns its id and final screen title.
async fn quote(app: &TestApp, city: &str, scenario: Option<&str>) -> (String, Value) {
    let (id, token) = match scenario {
        None => {
            let (s, token) = app.start("quote", json!({ "id": "u" }), json!({})).await;
            (s["id"].as_str().unwrap().to_owned(), token)
        }
        Some(sc) => {
            let q = "mutation($s: String!) { startFlow(input: {flowId: \"quote\", user: {id: \"u\"}, mock: {scenario: $s}}) { id token } }";
            let (_, r) = app.gql_key(q, json!({ "s": sc }), Some("editor-key")).await;
            let s = &r["data"]["startFlow"];
            (
                s["id"].as_str().unwrap_or_else(|| panic!("{r}")).to_owned(),
                s["token"].as_str().unwrap().to_owned(),
            )
        }
    };
    let s = app
        .submit(&token, &id, "ask", "next", json!({ "city": city }))
        .await;
    (id, s["screen"]["title"].clone())
}

const RECORD: &str = "mutation($s: ID!, $n: String!) { recordScenario(sessionId: $s, scenario: $n) { ok created version { number message source } issues { code } } }";

async fn a_real_session_becomes_a_scenario(backend: Backend) {
    let port = upstream().await;
    let Some(app) = TestApp::spawn_configured(
        backend,
        &[("quote.yaml", QUOTE_FLOW.replace("PORT", &port.to_string()))],
        |c, dir| {
            c.api_keys = Some(crate::testapp::write_test_keys(dir));
            c.step_budget_ms = 5000;
            c.secrets = Some([("PRICE_KEY".to_owned(), SECRET.to_owned())].into());
        },
    )
    .await
    else {
        return;
    };
    let (id, title) = quote(&app, "Berlin", None).await;
    assert_eq!(title, "Price 60 (Bearer [redacted])");

    let vars = json!({ "s": id, "n": "berlin" });
    let (_, r) = app.gql_key(RECORD, vars.clone(), Some("viewer-key")).await;
    assert_eq!(error_code(&r), "FORBIDDEN_ROLE", "{r}");
    let (_, r) = app.gql_key(RECORD, vars, Some("editor-key")).await;
    let rec = &r["data"]["recordScenario"];
    assert_eq!(rec["ok"], true, "{r}");
    assert_eq!(rec["version"]["number"], 2, "{r}");
    let message = rec["version"]["message"].as_str().unwrap();
    assert!(
        message.contains("`berlin`") && message.contains("price"),
        "{message}"
    );
    let source = rec["version"]["source"].as_str().unwrap();
    assert!(
        source.contains("berlin") && source.contains("[redacted]"),
        "{source}"
    );
    assert!(!source.contains(SECRET), "{source}");

    // Until it is published, new sessions know no such scenario.
    let q = "mutation { startFlow(input: {flowId: \"quote\", user: {id: \"u\"}, mock: {scenario: \"berlin\"}}) { id } }";
    let (_, r) = app.gql_key(q, json!({}), Some("editor-key")).await;
    assert_eq!(error_code(&r), "UNKNOWN_MOCK_SCENARIO", "{r}");
    let publish = "mutation($i: PublishFlowInput!) { publishFlow(input: $i) { number status } }";
    let (_, r) = app
        .gql_key(
            publish,
            json!({ "i": { "flowId": "quote", "version": 2, "message": "recorded data" } }),
            Some("publisher-key"),
        )
        .await;
    assert_eq!(r["data"]["publishFlow"]["number"], 2, "{r}");
    // A mock session replays what the real one got, whatever it sends.
    let (mock_id, title) = quote(&app, "Rome", Some("berlin")).await;
    assert_eq!(title, "Price 60 (Bearer [redacted])");
    let (_, title) = quote(&app, "Rome", Some("default")).await;
    assert_eq!(title, "Price 1 (none)");

    // What cannot be recorded says why.
    for (vars, field) in [
        (json!({ "s": id, "n": "default" }), "scenario"),
        (json!({ "s": id, "n": "two words" }), "scenario"),
        (json!({ "s": mock_id, "n": "again" }), "sessionId"),
    ] {
        let (_, r) = app.gql_key(RECORD, vars, Some("editor-key")).await;
        assert_eq!(error_code(&r), "BAD_USER_INPUT", "{r}");
        assert!(r.to_string().contains(field), "{r}");
    }
}

#[tokio::test]
async fn a_real_session_becomes_a_scenario_sqlite() {
    a_real_session_becomes_a_scenario(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_real_session_becomes_a_scenario_postgres() {
    a_real_session_becomes_a_scenario(Backend::Postgres).await;
}

/// `--record live`: every session that ends is recorded, a mock one is
/// not; the draft's author is `recorder`.
async fn every_ended_session_is_recorded(backend: Backend) {
    let port = upstream().await;
    let Some(app) = TestApp::spawn_configured(
        backend,
        &[("quote.yaml", QUOTE_FLOW.replace("PORT", &port.to_string()))],
        |c, dir| {
            c.api_keys = Some(crate::testapp::write_test_keys(dir));
            c.step_budget_ms = 5000;
            c.secrets = Some([("PRICE_KEY".to_owned(), SECRET.to_owned())].into());
            c.record = Some("live".into());
        },
    )
    .await
    else {
        return;
    };
    // Mock first: had it been recorded, it would be version 2.
    let (_, title) = quote(&app, "Oslo", Some("default")).await;
    assert_eq!(title, "Price 1 (none)");
    let (id, title) = quote(&app, "Lisbon", None).await;
    assert_eq!(title, "Price 60 (Bearer [redacted])");

    let q = "{ flowVersions(flowId: \"quote\") { number author message source } }";
    for _ in 0..200 {
        let (_, r) = app.gql_key(q, json!({}), Some("viewer-key")).await;
        let versions = r["data"]["flowVersions"].as_array().unwrap().clone();
        if let Some(v) = versions.iter().find(|v| v["author"] == "recorder") {
            assert_eq!(v["number"], 2, "{r}");
            let message = v["message"].as_str().unwrap();
            assert!(
                message.contains("`live`") && message.contains(&id),
                "{message}"
            );
            let source = v["source"].as_str().unwrap();
            assert!(
                source.contains("live:") && source.contains("price: 60"),
                "{source}"
            );
            assert!(!source.contains(SECRET), "{source}");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("no recorded draft");
}

#[tokio::test]
async fn every_ended_session_is_recorded_sqlite() {
    every_ended_session_is_recorded(Backend::Sqlite).await;
}

#[tokio::test]
async fn every_ended_session_is_recorded_postgres() {
    every_ended_session_is_recorded(Backend::Postgres).await;
}

#[test]
fn a_bad_record_flag_stops_the_server() {
    let err = crate::testapp::refused(&["--record", "default"]);
    assert!(err.contains("not a scenario name"), "{err}");
    let err = crate::testapp::refused(&["--record", "live", "--mock"]);
    assert!(err.contains("cannot be used with"), "{err}");
}

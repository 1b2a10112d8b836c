//! Every limit is explicit and answers with a code: body size, query
//! depth, steps per advance, context size.

use serde_json::json;

use crate::testapp::{Backend, TestApp, error_code, fresh_database_url};
use baton::config::ServeConfig;

#[tokio::test]
async fn oversized_body_is_413_with_a_code() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let big = "x".repeat(70 * 1024);
    let resp = app
        .client
        .post(format!("{}/graphql", app.base))
        .header("content-type", "application/json")
        .body(json!({ "query": "{ __typename }", "variables": { "pad": big } }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "BODY_TOO_LARGE",
        "{body}"
    );
}

#[tokio::test]
async fn deep_queries_are_refused() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let deep = "{ __schema { types { fields { type { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { ofType { name } } } } } } } } } } } } } } } } } }";
    let r = app.gql(deep, json!({}), None).await;
    assert_eq!(error_code(&r), "QUERY_TOO_DEEP", "{r}");
}

async fn app_with(
    flow_yaml: Option<&str>,
    tweak: impl FnOnce(&mut ServeConfig),
) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows");
    std::fs::create_dir(&flows).unwrap();
    let f = "checkout.yaml";
    std::fs::copy(crate::testapp::repo_flows().join(f), flows.join(f)).unwrap();
    if let Some(y) = flow_yaml {
        std::fs::write(flows.join("extra.yaml"), y).unwrap();
    }
    let url = fresh_database_url(Backend::Sqlite, dir.path())
        .await
        .unwrap();
    let mut config = ServeConfig::for_database(url, flows);
    tweak(&mut config);
    let app = TestApp::spawn_with(config, tempfile::tempdir().unwrap()).await;
    (app, dir)
}

#[tokio::test]
async fn a_long_chain_of_decisions_stops_at_the_step_limit() {
    // 70 decisions in a row: valid (no cycle), but longer than one advance may walk.
    let mut y = String::from("id: chain\nstart: d0\nnodes:\n");
    for i in 0..70 {
        y.push_str(&format!(
            "  - {{ id: d{i}, kind: decision, next: d{} }}\n",
            i + 1
        ));
    }
    y.push_str("  - { id: d70, kind: end }\n");
    let (app, _dir) = app_with(Some(&y), |_| {}).await;
    let q = "mutation { startFlow(input: {flowId: \"chain\", user: {id: \"u\"}}) { id } }";
    let r = app.gql(q, json!({}), None).await;
    assert_eq!(error_code(&r), "STEP_LIMIT_EXCEEDED", "{r}");
}

#[tokio::test]
async fn context_size_is_bounded() {
    let (app, _dir) = app_with(None, |c| c.max_context_bytes = 2048).await;
    let (s, token) = app.start("checkout", json!({ "id": "u" }), json!({})).await;
    let id = s["id"].as_str().unwrap();
    app.submit(&token, id, "cart", "next", json!({ "quantity": 1 }))
        .await;
    let r = app
        .submit_raw(
            &token,
            id,
            "shipping",
            "next",
            json!({ "address": "x".repeat(3000), "postcode": "12345", "speed": "standard" }),
            None,
        )
        .await;
    assert_eq!(error_code(&r), "CONTEXT_TOO_LARGE", "{r}");
    // Nothing was stored: the session is still on shipping, and a normal submit works.
    let s = app
        .submit(
            &token,
            id,
            "shipping",
            "next",
            json!({ "address": "Main St 1", "postcode": "12345", "speed": "standard" }),
        )
        .await;
    assert_eq!(s["screen"]["id"], "payment");
    // Attributes count too.
    let q = "mutation($i: StartFlowInput!) { startFlow(input: $i) { id } }";
    let r = app.gql(q, json!({ "i": { "flowId": "checkout", "user": { "id": "u", "attributes": { "bio": "y".repeat(4000) } } } }), None).await;
    assert_eq!(error_code(&r), "CONTEXT_TOO_LARGE", "{r}");
}

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

/// Fragment `F{k}` spreads `F{k-1}` twice: about 1 KB of text for `k` = 30
/// that stands for 2^30 fields.
fn doubling_fragments(root: &str, k: usize) -> String {
    let mut q = format!("{{ ...F{k} }}\nfragment F0 on {root} {{ __typename }}\n");
    for i in 1..=k {
        q.push_str(&format!(
            "fragment F{i} on {root} {{ ...F{p} ...F{p} }}\n",
            p = i - 1
        ));
    }
    q
}

/// Runs a test body against a server on a runtime of its own, and fails
/// the test if the body has not finished in 60 s. Before the expansion
/// check, k = 30 ran for minutes at full CPU and grew to gigabytes: with
/// the server apart, a worker stuck in validation cannot stop the client's
/// clock, and the server's runtime is left behind (`shutdown_background`)
/// instead of joined.
fn hang_guarded<F: std::future::Future<Output = ()>>(body: impl FnOnce(TestApp) -> F) {
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    };
    let (server, client) = (runtime(), runtime());
    let app = server.block_on(TestApp::spawn(Backend::Sqlite)).unwrap();
    let outcome = client.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(60), body(app)).await
    });
    drop(client);
    server.shutdown_background();
    if outcome.is_err() {
        panic!("no answer within 60 s: the server is expanding the fragments");
    }
}

#[test]
fn exponential_fragments_are_refused_before_validation() {
    hang_guarded(refused_over_http);
}

async fn refused_over_http(app: TestApp) {
    // k = 60 stands for 2^60 fields: only a count that never expands can answer.
    for k in [30, 60] {
        let query = doubling_fragments("RootQuery", k);
        assert!(
            query.len() < 4096,
            "a small document: {} bytes",
            query.len()
        );
        let resp = app
            .client
            .post(format!("{}/graphql", app.base))
            .json(&json!({ "query": query }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(error_code(&body), "QUERY_TOO_LARGE", "{body}");
        let hint = body["errors"][0]["extensions"]["hint"].as_str().unwrap();
        assert!(hint.contains("2000"), "{hint}");
    }
    // Over GET too.
    let query = doubling_fragments("RootQuery", 30);
    let resp = app
        .client
        .get(format!("{}/graphql", app.base))
        .query(&[("query", query.as_str())])
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(error_code(&body), "QUERY_TOO_LARGE", "{body}");
    // A fragment that includes itself is refused, not followed.
    let r = app
        .gql(
            "{ ...A } fragment A on RootQuery { __typename ...B } fragment B on RootQuery { ...A }",
            json!({}),
            None,
        )
        .await;
    assert_eq!(error_code(&r), "BAD_REQUEST", "{r}");
    // The server still answers normally afterwards.
    let r = app.gql("{ __typename }", json!({}), None).await;
    assert_eq!(r["data"]["__typename"], "RootQuery", "{r}");
}

#[test]
fn exponential_fragments_are_refused_over_websocket() {
    hang_guarded(refused_over_websocket);
}

async fn refused_over_websocket(app: TestApp) {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
    let url = format!("{}/graphql", app.base.replace("http://", "ws://"));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let init = json!({ "type": "connection_init", "payload": {} });
    ws.send(Message::Text(init.to_string().into()))
        .await
        .unwrap();
    let ack = crate::subscription::next_json(&mut ws).await;
    assert_eq!(ack["type"], "connection_ack");
    let query = format!("subscription {}", doubling_fragments("Subscription", 30));
    let sub = json!({ "id": "1", "type": "subscribe", "payload": { "query": query } });
    ws.send(Message::Text(sub.to_string().into()))
        .await
        .unwrap();
    let msg = crate::subscription::next_json(&mut ws).await;
    let errors = if msg["type"] == "error" {
        &msg["payload"]
    } else {
        &msg["payload"]["errors"]
    };
    assert_eq!(errors[0]["extensions"]["code"], "QUERY_TOO_LARGE", "{msg}");
}

#[tokio::test]
async fn the_expansion_limit_is_configurable() {
    let (app, _dir) = app_with(None, |c| c.max_query_fields = 3).await;
    let r = app
        .gql(
            "{ a: __typename b: __typename c: __typename }",
            json!({}),
            None,
        )
        .await;
    assert_eq!(r["data"]["c"], "RootQuery", "{r}");
    let q = "{ ...F } fragment F on RootQuery { a: __typename b: __typename c: __typename }";
    let r = app.gql(q, json!({}), None).await;
    assert_eq!(error_code(&r), "QUERY_TOO_LARGE", "{r}");
}

#[tokio::test]
async fn oversized_headers_are_431_with_a_code() {
    let (app, _dir) = app_with(None, |c| c.max_header_bytes = 2048).await;
    let send = |pad: usize| {
        app.client
            .post(format!("{}/graphql", app.base))
            .header("x-pad", "p".repeat(pad))
            .json(&json!({ "query": "{ __typename }" }))
            .send()
    };
    let ok = send(1024).await.unwrap();
    assert_eq!(ok.status(), 200);
    let resp = send(4096).await.unwrap();
    assert_eq!(resp.status(), 431);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(error_code(&body), "HEADERS_TOO_LARGE", "{body}");
    assert!(
        body["errors"][0]["extensions"]["hint"]
            .as_str()
            .unwrap()
            .contains("2048")
    );
    // Every route: the probes and OFREP too.
    let resp = app
        .client
        .get(format!("{}/healthz", app.base))
        .header("x-pad", "p".repeat(4096))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 431);
}

#[tokio::test]
async fn the_default_header_limit_takes_a_large_token() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    // A long bearer token (a JWT with many claims) fits under the default.
    let resp = app
        .client
        .post(format!("{}/graphql", app.base))
        .bearer_auth("t".repeat(8 * 1024))
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = app
        .client
        .post(format!("{}/graphql", app.base))
        .bearer_auth("t".repeat(17 * 1024))
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 431);
}

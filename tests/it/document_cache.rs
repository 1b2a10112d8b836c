//! The transport's cache of parsed GraphQL documents: a document sent again
//! is not parsed again, but every request still gets its own variables,
//! operation selection and method check.

use serde_json::{Value, json};

use crate::testapp::{Backend, TestApp};

#[tokio::test]
async fn a_cached_document_still_answers_each_request_on_its_own() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite");
    let (a, token_a) = app
        .start("onboarding", json!({ "id": "a" }), json!({}))
        .await;
    let (b, token_b) = app
        .start("onboarding", json!({ "id": "b" }), json!({}))
        .await;
    let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());

    // One document, two operations, several sessions: the second and later
    // requests use the cached document.
    let doc = "query Id($s: ID!) { session(id: $s) { id } } \
               query Status($s: ID!) { session(id: $s) { status } }";
    let ask = |name: &'static str, session: &str, token: &str| {
        let body = json!({ "query": doc, "operationName": name, "variables": { "s": session } });
        let req = app
            .client
            .post(format!("{}/graphql", app.base))
            .header("accept", "application/json")
            .bearer_auth(token)
            .json(&body);
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    for _ in 0..2 {
        assert_eq!(ask("Id", a, &token_a).await["data"]["session"]["id"], a);
        assert_eq!(ask("Id", b, &token_b).await["data"]["session"]["id"], b);
        let status = ask("Status", b, &token_b).await;
        assert_eq!(status["data"]["session"], json!({ "status": "ACTIVE" }));
    }

    // A mutation document cached from a POST is still refused over GET.
    let submit = "mutation($i: SubmitInput!) { submit(input: $i) { screen { id } } }";
    let input = json!({ "i": { "sessionId": a, "screenId": "welcome", "action": "next" } });
    let posted = app.gql(submit, input.clone(), Some(&token_a)).await;
    assert!(
        posted["data"]["submit"]["screen"]["id"].is_string(),
        "{posted}"
    );
    let variables = input.to_string();
    let resp = app
        .client
        .get(format!("{}/graphql", app.base))
        .header("accept", "application/json")
        .bearer_auth(&token_a)
        .query(&[("query", submit), ("variables", variables.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::METHOD_NOT_ALLOWED);
}

//! `--cors-allow-origin`: a page on a listed origin may call `/graphql`
//! from the browser; any other origin gets no CORS header (so the browser
//! refuses), and without the option no CORS header is sent at all.

use reqwest::{Method, Response};

use crate::testapp::{Backend, TestApp, fresh_database_url, repo_flows};
use baton::config::ServeConfig;

const APP: &str = "http://127.0.0.1:5173";
const OTHER: &str = "http://evil.example";

async fn app(origins: &[&str]) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(Backend::Sqlite, dir.path())
        .await
        .unwrap();
    let mut config = ServeConfig::for_database(url, repo_flows());
    config.cors_allow_origin = origins.iter().map(|o| o.parse().unwrap()).collect();
    TestApp::spawn_with(config, dir).await
}

/// What a browser sends before a cross-origin POST with a bearer token.
async fn preflight(app: &TestApp, path: &str, origin: &str) -> Response {
    app.client
        .request(Method::OPTIONS, format!("{}{path}", app.base))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap()
}

async fn post(app: &TestApp, origin: &str) -> Response {
    let resp = app
        .client
        .post(format!("{}/graphql", app.base))
        .header("origin", origin)
        .header("content-type", "application/json")
        .body(r#"{"query": "{ __typename }"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "the request itself is served");
    resp
}

fn header<'a>(resp: &'a Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn a_listed_origin_passes_the_preflight_and_reads_the_answer() {
    let app = app(&[APP, "https://other.example"]).await;
    let resp = preflight(&app, "/graphql", APP).await;
    assert!(resp.status().is_success(), "{}", resp.status());
    assert_eq!(header(&resp, "access-control-allow-origin"), Some(APP));
    let methods = header(&resp, "access-control-allow-methods").unwrap_or_default();
    assert!(methods.contains("POST"), "{methods}");
    let headers = header(&resp, "access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    for h in ["authorization", "content-type"] {
        assert!(headers.contains(h), "{h} not allowed: {headers}");
    }
    assert_eq!(
        header(&resp, "access-control-allow-credentials"),
        None,
        "the token is a header, not a cookie"
    );

    let resp = post(&app, APP).await;
    assert_eq!(header(&resp, "access-control-allow-origin"), Some(APP));
    let exposed = header(&resp, "access-control-expose-headers").unwrap_or_default();
    assert!(exposed.contains("x-request-id"), "{exposed}");
}

#[tokio::test]
async fn an_unlisted_origin_gets_no_cors_header() {
    let app = app(&[APP]).await;
    let resp = preflight(&app, "/graphql", OTHER).await;
    assert_eq!(header(&resp, "access-control-allow-origin"), None);
    let resp = post(&app, OTHER).await;
    assert_eq!(header(&resp, "access-control-allow-origin"), None);
    // A prefix of a listed origin is another origin.
    let resp = post(&app, "http://127.0.0.1:51730").await;
    assert_eq!(header(&resp, "access-control-allow-origin"), None);
}

#[tokio::test]
async fn without_the_option_no_cors_header_is_sent() {
    let app = app(&[]).await;
    let resp = preflight(&app, "/graphql", APP).await;
    assert_eq!(header(&resp, "access-control-allow-origin"), None);
    let resp = post(&app, APP).await;
    assert_eq!(header(&resp, "access-control-allow-origin"), None);
    assert!(
        resp.headers()
            .keys()
            .all(|k| !k.as_str().starts_with("access-control-")),
        "{:?}",
        resp.headers()
    );
}

#[tokio::test]
async fn ofrep_keeps_its_own_open_cors_policy() {
    let app = app(&[APP]).await;
    let resp = preflight(&app, "/ofrep/v1/evaluate/flags", OTHER).await;
    let allow: Vec<_> = resp
        .headers()
        .get_all("access-control-allow-origin")
        .iter()
        .collect();
    assert_eq!(allow, ["*"], "one header, from OFREP's layer only");
}

//! API keys with roles, over real HTTP: the server started with a keys file
//! (`--api-keys`), the `apiKey` query, and every permission × role through
//! a schema whose fields each `require` one permission, served by the same
//! transport as Baton's.

use std::process::Command;

use async_graphql::{Context, EmptyMutation, EmptySubscription, Object, Schema};
use baton::api::{Limits, router_with_keys};
use baton::auth::{ApiKeys, Permission, require};
use serde_json::{Value, json};

use crate::testapp::{Backend, TEST_KEYS, TestApp, error_code, write_test_keys};

const BIN: &str = env!("CARGO_BIN_EXE_baton");

async fn app_with_keys() -> TestApp {
    TestApp::spawn_configured(Backend::Sqlite, &[], |config, dir| {
        config.api_keys = Some(write_test_keys(dir));
    })
    .await
    .expect("sqlite app")
}

const WHO: &str = "{ apiKey { name role queues } }";

#[tokio::test]
async fn api_key_query_names_the_holder() {
    let app = app_with_keys().await;
    for (key, role) in TEST_KEYS {
        let (status, r) = app.gql_key(WHO, json!({}), Some(key)).await;
        assert_eq!(status, 200, "{r}");
        assert_eq!(r["data"]["apiKey"]["name"], format!("{role}-1"), "{r}");
        assert_eq!(r["data"]["apiKey"]["role"], role.to_uppercase(), "{r}");
    }
    let (_, r) = app.gql_key(WHO, json!({}), Some("reviewer-key")).await;
    assert_eq!(r["data"]["apiKey"]["queues"], json!(["underwriter"]));
}

#[tokio::test]
async fn no_key_is_api_key_required() {
    let app = app_with_keys().await;
    let (status, r) = app.gql_key(WHO, json!({}), None).await;
    assert_eq!(status, 200, "a resolver error once execution began: {r}");
    assert_eq!(error_code(&r), "API_KEY_REQUIRED");
    assert!(
        r["errors"][0]["extensions"]["hint"]
            .as_str()
            .unwrap()
            .contains("X-API-Key")
    );
}

#[tokio::test]
async fn unknown_key_is_refused_before_execution() {
    let app = app_with_keys().await;
    for key in ["nope", "admin-key2", "ADMIN-KEY"] {
        let (status, r) = app.gql_key(WHO, json!({}), Some(key)).await;
        assert_eq!(status, 401, "{r}");
        assert_eq!(error_code(&r), "INVALID_API_KEY");
        assert!(r.get("data").is_none(), "{r}");
    }
    // Even for an operation that needs no key: a wrong credential is never ignored.
    let (status, r) = app.gql_key("{ __typename }", json!({}), Some("nope")).await;
    assert_eq!((status, error_code(&r)), (401, "INVALID_API_KEY"));
    // And over GET.
    let resp = app
        .client
        .get(format!("{}/graphql?query=%7B__typename%7D", app.base))
        .header("accept", "application/json")
        .header("x-api-key", "nope")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

#[tokio::test]
async fn session_tokens_are_not_api_keys() {
    let app = app_with_keys().await;
    // `Authorization: Bearer` carries session tokens; an API key there is no key.
    let r = app.gql(WHO, json!({}), Some("admin-key")).await;
    assert_eq!(error_code(&r), "API_KEY_REQUIRED");
}

#[tokio::test]
async fn without_a_keys_file_every_key_is_unknown() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let (status, r) = app.gql_key(WHO, json!({}), Some("admin-key")).await;
    assert_eq!((status, error_code(&r)), (401, "INVALID_API_KEY"));
    let (_, r) = app.gql_key(WHO, json!({}), None).await;
    assert_eq!(error_code(&r), "API_KEY_REQUIRED");
}

#[tokio::test]
async fn a_bad_keys_file_stops_the_start_with_its_code() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("missing.yaml", None, "API_KEYS_UNREADABLE"),
        ("syntax.yaml", Some("keys: [\n"), "API_KEYS_SYNTAX"),
        (
            "plain.yaml",
            Some("keys:\n  - {name: a, role: admin, key: hunter2}\n"),
            "API_KEYS_INVALID",
        ),
        (
            "hash.yaml",
            Some("keys:\n  - {name: a, role: admin, sha256: hunter2}\n"),
            "API_KEY_SHA256_INVALID",
        ),
        (
            "big.yaml",
            Some(&*"#".repeat(1024 * 1024 + 1)),
            "API_KEYS_TOO_LARGE",
        ),
    ];
    for (file, text, code) in cases {
        let path = dir.path().join(file);
        if let Some(text) = text {
            std::fs::write(&path, text).unwrap();
        }
        let flows = crate::testapp::repo_flows();
        let mut config = baton::config::ServeConfig::for_database(
            format!("sqlite://{}", dir.path().join("b.db").display()),
            flows,
        );
        config.api_keys = Some(path);
        let err = match baton::app::Application::build(config).await {
            Ok(_) => panic!("{file} was accepted"),
            Err(err) => format!("{err:#}"),
        };
        assert!(err.contains(code), "{file}: {err}");
        assert!(err.contains("hint:"), "{file}: {err}");
    }
}

#[tokio::test]
async fn key_new_prints_a_key_its_entry_admits() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["key", "new", "--name", "uw-team", "--role", "reviewer"])
        .args([
            "--queue",
            "underwriter",
            "--queue",
            "fraud",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made: Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = made["key"].as_str().unwrap().to_owned();
    // The human form prints the YAML entry to paste.
    let human = Command::new(BIN)
        .args(["key", "new", "--name", "qa-bob", "--role", "editor"])
        .output()
        .unwrap();
    let text = String::from_utf8(human.stdout).unwrap();
    let entry = text
        .split("keys:` in the --api-keys file:\n\n")
        .nth(1)
        .expect(&text);
    let bob = text.lines().nth(2).unwrap().trim().to_owned();
    let yaml = format!(
        "keys:\n  - name: uw-team\n    role: reviewer\n    queues: [underwriter, fraud]\n    sha256: {}\n{entry}",
        made["sha256"].as_str().unwrap()
    );
    assert!(
        !yaml.contains(&key) && !yaml.contains(&bob),
        "only hashes go in the file"
    );
    let path = dir.path().join("keys.yaml");
    std::fs::write(&path, yaml).unwrap();
    let app = TestApp::spawn_configured(Backend::Sqlite, &[], |config, _| {
        config.api_keys = Some(path.clone());
    })
    .await
    .unwrap();
    let (_, r) = app.gql_key(WHO, json!({}), Some(&key)).await;
    assert_eq!(
        r["data"]["apiKey"],
        json!({"name": "uw-team", "role": "REVIEWER", "queues": ["underwriter", "fraud"]}),
        "{r}"
    );
    let (_, r) = app.gql_key(WHO, json!({}), Some(&bob)).await;
    assert_eq!(r["data"]["apiKey"]["role"], "EDITOR", "{r}");

    let bad = Command::new(BIN)
        .args([
            "key", "new", "--name", "x", "--role", "editor", "--queue", "q",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("API_KEY_QUEUES_NOT_REVIEWER") && err.contains("hint:"),
        "{err}"
    );
}

// ---- every permission × role, through `require` ----

struct Guarded;

fn check(ctx: &Context<'_>, p: Permission<'_>) -> async_graphql::Result<String> {
    require(ctx, p)
        .map(|principal| principal.name.clone())
        .map_err(|e| e.into_graphql())
}

#[Object]
impl Guarded {
    async fn read_sessions(&self, ctx: &Context<'_>) -> async_graphql::Result<String> {
        check(ctx, Permission::ReadSessions)
    }
    async fn read_results(&self, ctx: &Context<'_>) -> async_graphql::Result<String> {
        check(ctx, Permission::ReadResults)
    }
    async fn force_variant(&self, ctx: &Context<'_>) -> async_graphql::Result<String> {
        check(ctx, Permission::ForceVariant)
    }
    async fn mock_sessions(&self, ctx: &Context<'_>) -> async_graphql::Result<String> {
        check(ctx, Permission::MockSessions)
    }
    async fn send_events(&self, ctx: &Context<'_>) -> async_graphql::Result<String> {
        check(ctx, Permission::SendEvents)
    }
    async fn operate_sessions(&self, ctx: &Context<'_>) -> async_graphql::Result<String> {
        check(ctx, Permission::OperateSessions)
    }
    async fn list_approvals(&self, ctx: &Context<'_>) -> async_graphql::Result<String> {
        check(ctx, Permission::ListApprovals)
    }
    async fn decide_approval(
        &self,
        ctx: &Context<'_>,
        queue: String,
    ) -> async_graphql::Result<String> {
        check(ctx, Permission::DecideApproval { queue: &queue })
    }
}

#[tokio::test]
async fn each_role_has_exactly_its_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let keys = ApiKeys::load(&write_test_keys(dir.path())).unwrap();
    let limits = Limits::default();
    let schema = Schema::build(Guarded, EmptyMutation, EmptySubscription).finish();
    let router = router_with_keys(schema, &limits, None, keys);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let http = reqwest::Client::new();

    let fields = [
        (
            "readSessions",
            &["viewer", "editor", "publisher", "admin"][..],
        ),
        ("readResults", &["viewer", "editor", "publisher", "admin"]),
        ("forceVariant", &["editor", "publisher", "admin"]),
        ("mockSessions", &["editor", "publisher", "admin"]),
        ("sendEvents", &["publisher", "admin"]),
        ("operateSessions", &["admin"]),
        ("listApprovals", &["reviewer", "admin"]),
        (
            "decideApproval(queue: \"underwriter\")",
            &["reviewer", "admin"],
        ),
        ("decideApproval(queue: \"fraud\")", &["admin"]),
    ];
    let ask = |field: &str, key: Option<&str>| {
        let mut req = http
            .post(format!("http://{addr}/graphql"))
            .json(&json!({ "query": format!("{{ f: {field} }}") }));
        if let Some(key) = key {
            req = req.header("x-api-key", key);
        }
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    for (field, allowed) in fields {
        let r = ask(field, None).await;
        assert_eq!(error_code(&r), "API_KEY_REQUIRED", "{field}: {r}");
        for (key, role) in TEST_KEYS {
            let r = ask(field, Some(key)).await;
            if allowed.contains(&role) {
                assert_eq!(r["data"]["f"], format!("{role}-1"), "{role} {field}: {r}");
            } else {
                assert_eq!(error_code(&r), "FORBIDDEN_ROLE", "{role} {field}: {r}");
                let hint = r["errors"][0]["extensions"]["hint"].as_str().unwrap();
                assert!(hint.contains("needs"), "{hint}");
            }
        }
    }
    let r = ask("decideApproval(queue: \"fraud\")", Some("reviewer-key")).await;
    let hint = r["errors"][0]["extensions"]["hint"].as_str().unwrap();
    assert!(hint.contains("`fraud`"), "{hint}");
}

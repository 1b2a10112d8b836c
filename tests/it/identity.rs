//! Optional user identity: with `--jwt-secret` (HS256) or `--jwt-jwks`
//! (ES256 here), a session belongs to the JWT's subject and its token works
//! only with a JWT of that subject.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::SinkExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

use crate::subscription::next_json;
use crate::testapp::{Backend, TestApp};

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";
const FLOW: &str = r#"
id: mine
start: hello
nodes:
  - id: hello
    kind: screen
    title: "Hi {{ user.id }}"
    actions: [{ id: next, next: bye }]
  - { id: bye, kind: end }
"#;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(sub: &str) -> Value {
    json!({ "sub": sub, "aud": "app", "iss": "backend", "exp": now() + 600 })
}

fn hs256(claims: &Value, secret: &str) -> String {
    let key = EncodingKey::from_secret(secret.as_bytes()).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).unwrap()
}

fn es256(claims: &Value) -> String {
    let pem = std::fs::read(fixtures().join("es256-private.pem")).unwrap();
    let key = EncodingKey::from_ec_pem(&pem).unwrap();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some("test-es256".into());
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt")
}

async fn app(backend: Backend, jwks: bool) -> Option<TestApp> {
    TestApp::spawn_configured(backend, &[("mine.yaml", FLOW.to_owned())], |c, _| {
        if jwks {
            c.jwt_jwks = Some(fixtures().join("jwks.json"));
        } else {
            c.jwt_secret = Some(SECRET.to_owned());
        }
        c.jwt_audience = Some("app".into());
        c.jwt_issuer = Some("backend".into());
    })
    .await
}

/// A GraphQL call with a session token and a user JWT.
async fn call(
    app: &TestApp,
    query: &str,
    variables: Value,
    token: Option<&str>,
    jwt: Option<&str>,
) -> Value {
    let mut req = app
        .client
        .post(format!("{}/graphql", app.base))
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(j) = jwt {
        req = req.header("x-user-token", j);
    }
    req.send().await.unwrap().json().await.unwrap()
}

const START: &str = "mutation($u: ID!) { startFlow(input: {flowId: \"mine\", user: {id: $u}}) { id token screen { id title } } }";
const READ: &str = "query($s: ID!) { session(id: $s) { id screen { id } } }";
const SUBMIT: &str = "mutation($s: ID!) { submit(input: {sessionId: $s, screenId: \"hello\", action: \"next\"}) { status } }";
const BACK: &str = "mutation($s: ID!) { back(sessionId: $s) { status } }";

fn code(r: &Value) -> &str {
    r["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("<none>")
}

async fn sessions_belong_to_the_tokens_subject(backend: Backend) {
    let Some(app) = app(backend, false).await else {
        return;
    };
    let alice = hs256(&claims("alice"), SECRET);
    let bob = hs256(&claims("bob"), SECRET);

    let r = call(&app, START, json!({ "u": "alice" }), None, None).await;
    assert_eq!(code(&r), "USER_TOKEN_REQUIRED", "{r}");
    let r = call(&app, START, json!({ "u": "bob" }), None, Some(&alice)).await;
    assert_eq!(code(&r), "USER_ID_MISMATCH", "{r}");
    let r = call(&app, START, json!({ "u": "alice" }), None, Some(&alice)).await;
    let s = &r["data"]["startFlow"];
    assert_eq!(s["screen"]["title"], "Hi alice", "{r}");
    let (sid, token) = (s["id"].as_str().unwrap(), s["token"].as_str().unwrap());

    // The owner reads it; the stolen token with another user's JWT, or
    // without a JWT, does not.
    let own = call(&app, READ, json!({ "s": sid }), Some(token), Some(&alice)).await;
    assert_eq!(own["data"]["session"]["id"], sid, "{own}");
    let stolen = call(&app, READ, json!({ "s": sid }), Some(token), Some(&bob)).await;
    assert_eq!(stolen["data"]["session"], Value::Null, "{stolen}");
    let bare = call(&app, READ, json!({ "s": sid }), Some(token), None).await;
    assert_eq!(code(&bare), "USER_TOKEN_REQUIRED", "{bare}");
    for q in [SUBMIT, BACK] {
        let r = call(&app, q, json!({ "s": sid }), Some(token), Some(&bob)).await;
        assert_eq!(code(&r), "SESSION_NOT_FOUND", "{r}");
    }
    // Over WebSocket, the JWT travels in the connection_init payload.
    let url = format!("{}/graphql", app.base.replace("http://", "ws://"));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}"), "X-User-Token": bob } });
    ws.send(Message::Text(init.to_string().into()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "connection_ack");
    let sub = json!({ "id": "1", "type": "subscribe", "payload": {
        "query": "subscription($s: ID!) { sessionUpdated(sessionId: $s) { status } }", "variables": { "s": sid } } });
    ws.send(Message::Text(sub.to_string().into()))
        .await
        .unwrap();
    let msg = next_json(&mut ws).await;
    assert_eq!(
        msg["payload"]["errors"][0]["extensions"]["code"], "SESSION_NOT_FOUND",
        "{msg}"
    );

    // The owner advances it.
    let r = call(&app, SUBMIT, json!({ "s": sid }), Some(token), Some(&alice)).await;
    assert_eq!(r["data"]["submit"]["status"], "COMPLETED", "{r}");
}

async fn bad_user_tokens_are_refused(backend: Backend) {
    let Some(app) = app(backend, false).await else {
        return;
    };
    let mut expired = claims("alice");
    expired["exp"] = json!(now() - 3600);
    let mut audience = claims("alice");
    audience["aud"] = json!("someone-else");
    let mut issuer = claims("alice");
    issuer["iss"] = json!("mallory");
    for (jwt, want) in [
        (hs256(&expired, SECRET), "USER_TOKEN_EXPIRED"),
        (hs256(&audience, SECRET), "USER_TOKEN_INVALID"),
        (hs256(&issuer, SECRET), "USER_TOKEN_INVALID"),
        (
            hs256(&claims("alice"), "another-secret-of-at-least-32-bytes!"),
            "USER_TOKEN_INVALID",
        ),
        (es256(&claims("alice")), "USER_TOKEN_INVALID"),
        ("not.a.jwt".to_owned(), "USER_TOKEN_INVALID"),
    ] {
        let r = call(&app, START, json!({ "u": "alice" }), None, Some(&jwt)).await;
        assert_eq!(code(&r), want, "{r}");
        assert!(r["errors"][0]["extensions"]["hint"].is_string(), "{r}");
    }
}

async fn es256_tokens_verify_against_a_jwks_file(backend: Backend) {
    let Some(app) = app(backend, true).await else {
        return;
    };
    let r = call(
        &app,
        START,
        json!({ "u": "carol" }),
        None,
        Some(&es256(&claims("carol"))),
    )
    .await;
    assert_eq!(r["data"]["startFlow"]["screen"]["title"], "Hi carol", "{r}");
    // An HS256 token signed with anything is no good against public keys.
    let r = call(
        &app,
        START,
        json!({ "u": "carol" }),
        None,
        Some(&hs256(&claims("carol"), SECRET)),
    )
    .await;
    assert_eq!(code(&r), "USER_TOKEN_INVALID", "{r}");
}

macro_rules! identity_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test] async fn $name() { super::$name(crate::testapp::Backend::Sqlite).await } )*
        }
        mod postgres {
            $( #[tokio::test] async fn $name() { super::$name(crate::testapp::Backend::Postgres).await } )*
        }
    };
}

identity_tests!(
    sessions_belong_to_the_tokens_subject,
    bad_user_tokens_are_refused,
    es256_tokens_verify_against_a_jwks_file,
);

#[tokio::test]
async fn a_bad_identity_configuration_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = baton::config::ServeConfig::for_database(
        format!("sqlite://{}", dir.path().join("b.db").display()),
        crate::testapp::repo_flows(),
    );
    config.jwt_secret = Some("short".into());
    config.jwt_audience = Some("app".into());
    config.jwt_issuer = Some("backend".into());
    let err = baton::app::Application::build(config)
        .await
        .err()
        .expect("refused");
    assert!(
        format!("{err:#}").contains("IDENTITY_CONFIG_INVALID"),
        "{err:#}"
    );
}

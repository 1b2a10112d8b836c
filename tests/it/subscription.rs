//! `sessionUpdated` over graphql-transport-ws against the real server.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

use crate::testapp::{Backend, TestApp};

pub(crate) async fn next_json<S>(ws: &mut S) -> Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")
            .expect("stream open")
            .expect("no ws error");
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

pub(crate) async fn subscribe(
    app: &TestApp,
    session: &str,
    token: &str,
) -> impl futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
+ futures_util::Sink<Message>
+ Unpin {
    let url = format!("{}/graphql", app.base.replace("http://", "ws://"));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
    ws.send(Message::Text(init.to_string().into()))
        .await
        .ok()
        .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "connection_ack");
    let sub = json!({ "id": "1", "type": "subscribe", "payload": {
        "query": "subscription($s: ID!) { sessionUpdated(sessionId: $s) { status screen { id } } }",
        "variables": { "s": session } } });
    ws.send(Message::Text(sub.to_string().into()))
        .await
        .ok()
        .unwrap();
    ws
}

#[tokio::test]
async fn updates_arrive_over_websocket() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let (s, token) = app
        .start("checkout", json!({ "id": "ws" }), json!({}))
        .await;
    let id = s["id"].as_str().unwrap();
    let mut ws = subscribe(&app, id, &token).await;
    let first = next_json(&mut ws).await;
    assert_eq!(first["type"], "next", "{first}");
    assert_eq!(
        first["payload"]["data"]["sessionUpdated"]["screen"]["id"],
        "cart"
    );
    app.submit(&token, id, "cart", "next", json!({ "quantity": 1 }))
        .await;
    let second = next_json(&mut ws).await;
    assert_eq!(
        second["payload"]["data"]["sessionUpdated"]["screen"]["id"], "shipping",
        "{second}"
    );
}

#[tokio::test]
async fn a_wrong_token_gets_an_error_not_updates() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let (s, _token) = app
        .start("checkout", json!({ "id": "ws" }), json!({}))
        .await;
    let mut ws = subscribe(&app, s["id"].as_str().unwrap(), "wrong").await;
    // The resolver's error arrives as the only result, then the stream completes.
    let msg = next_json(&mut ws).await;
    assert_eq!(msg["payload"]["data"], Value::Null, "{msg}");
    assert_eq!(
        msg["payload"]["errors"][0]["extensions"]["code"], "SESSION_NOT_FOUND",
        "{msg}"
    );
    assert_eq!(next_json(&mut ws).await["type"], "complete");
}

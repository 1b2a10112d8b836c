//! Webhooks from outside, on a real `baton` process per store: every
//! request is checked against its HMAC signature; the receiver is killed
//! mid-stream and started again, and still every event of the feed
//! arrives; a receiver that answers 500 ends in dead letters without
//! holding up a session, and a replay delivers them.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::Mutex;

use crate::crash::Server;
use crate::testapp::{Backend, GREETING_FLOW, error_code, fresh_database_url, write_test_keys};

#[derive(Clone)]
struct Receiver {
    secret: &'static str,
    /// Answer 500 to everything while set.
    failing: Arc<AtomicBool>,
    /// `(sessionId, seq)` of every event received, duplicates included.
    events: Arc<Mutex<Vec<(String, i64)>>>,
    deliveries: Arc<Mutex<Vec<String>>>,
    bad_signatures: Arc<Mutex<usize>>,
}

impl Receiver {
    fn new(secret: &'static str) -> Receiver {
        Receiver {
            secret,
            failing: Arc::default(),
            events: Arc::default(),
            deliveries: Arc::default(),
            bad_signatures: Arc::default(),
        }
    }
}

/// Checks `t=…,v1=…` as a receiver would: HMAC-SHA256 over `<t>.<body>`.
fn signed(secret: &str, header: &str, body: &[u8]) -> bool {
    let Some((t, v1)) = header
        .split_once(',')
        .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v.strip_prefix("v1=")?)))
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::decode(v1).is_ok_and(|sig| mac.verify_slice(&sig).is_ok())
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let sig = headers
        .get("x-baton-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !signed(r.secret, sig, &body) {
        *r.bad_signatures.lock().await += 1;
        return StatusCode::UNAUTHORIZED;
    }
    if r.failing.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let v: Value = serde_json::from_slice(&body).unwrap();
    let mut events = r.events.lock().await;
    for e in v["events"].as_array().unwrap() {
        events.push((
            e["sessionId"].as_str().unwrap().to_owned(),
            e["seq"].as_i64().unwrap(),
        ));
    }
    r.deliveries
        .lock()
        .await
        .push(headers["x-baton-delivery"].to_str().unwrap().to_owned());
    StatusCode::NO_CONTENT
}

/// Serves `r` on `port` (0: any); returns the port and the server task.
async fn serve(r: &Receiver, port: u16) -> (u16, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new()
        .route("/in", post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    (
        port,
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() }),
    )
}

async fn gql(server: &Server, query: &str, vars: Value, key: Option<&str>) -> Value {
    let mut req = reqwest::Client::new()
        .post(format!("{}/graphql", server.base))
        .json(&json!({ "query": query, "variables": vars }));
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    req.send().await.unwrap().json().await.unwrap()
}

/// Every `(session, seq)` of the feed.
async fn feed(server: &Server) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let r = gql(
            server,
            "query($a: String) { eventFeed(after: $a, first: 1000) { endCursor events { sessionId seq } } }",
            json!({ "a": after }),
            Some("admin-key"),
        )
        .await;
        let page = &r["data"]["eventFeed"];
        let events = page["events"].as_array().expect("a feed page").clone();
        if events.is_empty() {
            return out;
        }
        for e in events {
            out.push((
                e["sessionId"].as_str().unwrap().to_owned(),
                e["seq"].as_i64().unwrap(),
            ));
        }
        after = page["endCursor"].as_str().map(str::to_owned);
    }
}

async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..400 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn at_least_once(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = fresh_database_url(backend, dir.path()).await else {
        return;
    };
    let main = Receiver::new("main-s3cret");
    let (port, task) = serve(&main, 0).await;
    let broken = Receiver::new("broken-s3cret");
    broken.failing.store(true, Ordering::SeqCst);
    let (broken_port, _broken_task) = serve(&broken, 0).await;
    let flows = dir.path().join("flows");
    std::fs::create_dir(&flows).unwrap();
    std::fs::write(flows.join("greeting.yaml"), GREETING_FLOW).unwrap();
    let hooks = dir.path().join("webhooks.yaml");
    std::fs::write(
        &hooks,
        format!(
            "webhooks:\n\
             - {{ name: main, url: 'http://127.0.0.1:{port}/in', secret_env: MAIN_SECRET, from: start, batch: 3,\n\
                  max_attempts: 100, retry_delay: 20ms, max_retry_delay: 100ms }}\n\
             - {{ name: broken, url: 'http://127.0.0.1:{broken_port}/in', secret_env: BROKEN_SECRET, from: start,\n\
                  kinds: [ended], max_attempts: 2, retry_delay: 10ms }}\n"
        ),
    )
    .unwrap();
    let keys = write_test_keys(dir.path());
    let server = Server::start_logged(
        &url,
        &flows,
        &[
            "--webhooks",
            hooks.to_str().unwrap(),
            "--api-keys",
            keys.to_str().unwrap(),
        ],
        &[
            ("MAIN_SECRET", "main-s3cret"),
            ("BROKEN_SECRET", "broken-s3cret"),
        ],
        None,
    )
    .await;

    for i in 0..3 {
        server.walk_greeting(&format!("before-{i}")).await;
    }
    let n = feed(&server).await.len();
    until("the first events", async || {
        main.events.lock().await.len() >= n
    })
    .await;

    // The receiver dies mid-stream; sessions go on meanwhile.
    task.abort();
    let _ = task.await;
    for i in 0..3 {
        server.walk_greeting(&format!("while-down-{i}")).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, task) = serve(&main, port).await;
    for i in 0..2 {
        server.walk_greeting(&format!("after-{i}")).await;
    }

    // Nothing is lost: every event of the feed arrives (some maybe twice).
    let all = feed(&server).await;
    until("every event", async || {
        let got: HashSet<(String, i64)> = main.events.lock().await.iter().cloned().collect();
        all.iter().all(|e| got.contains(e))
    })
    .await;
    let got = main.events.lock().await.clone();
    let unique: HashSet<_> = got.iter().cloned().collect();
    assert_eq!(
        unique,
        all.iter().cloned().collect::<HashSet<_>>(),
        "nothing more, nothing less"
    );
    assert_eq!(*main.bad_signatures.lock().await, 0);
    // Each session's events arrive in order (a redelivered batch repeats
    // events already seen; their first arrivals are in order).
    let mut seen = HashSet::new();
    let mut last = std::collections::HashMap::new();
    for (s, seq) in &got {
        if !seen.insert((s.clone(), *seq)) {
            continue;
        }
        let prev = last.insert(s.clone(), *seq).unwrap_or(0);
        assert!(*seq > prev, "session {s}: {seq} arrived after {prev}");
    }

    // The broken receiver: its batches ended as dead letters; sessions
    // were not held up (they all completed above).
    let dead = |r: Value| {
        r["data"]["deadLetters"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let q = "query { deadLetters(webhook: \"broken\") { id events attempts error replayedAt } }";
    until("dead letters", async || {
        let r = gql(&server, q, json!({}), Some("admin-key")).await;
        let d = dead(r);
        d.iter().map(|l| l["events"].as_i64().unwrap()).sum::<i64>() >= 8
    })
    .await;
    let letters = dead(gql(&server, q, json!({}), Some("admin-key")).await);
    for l in &letters {
        assert_eq!(l["attempts"], 2, "{l}");
        assert_eq!(l["error"], "HTTP 500", "{l}");
        assert!(l["replayedAt"].is_null());
    }

    // Fixed, a replay delivers one, with the same delivery id.
    broken.failing.store(false, Ordering::SeqCst);
    let id = letters[0]["id"].as_str().unwrap();
    let r = gql(
        &server,
        "mutation($id: ID!) { replayDeadLetter(id: $id) { id replayedAt } }",
        json!({ "id": id }),
        Some("admin-key"),
    )
    .await;
    assert!(
        r["data"]["replayDeadLetter"]["replayedAt"].is_string(),
        "{r}"
    );
    assert!(broken.deliveries.lock().await.contains(&id.to_owned()));
    assert!(!broken.events.lock().await.is_empty());
    let r = gql(
        &server,
        "mutation { replayDeadLetter(id: \"nope\") { id } }",
        json!({}),
        Some("admin-key"),
    )
    .await;
    assert_eq!(error_code(&r), "DEAD_LETTER_NOT_FOUND", "{r}");
    let r = gql(&server, q, json!({}), Some("reviewer-key")).await;
    assert_eq!(error_code(&r), "FORBIDDEN_ROLE", "{r}");

    let m = crate::metrics::scrape(&server.base).await;
    assert!(
        m.value(
            "baton_webhook_events_total",
            &[("webhook", "broken"), ("outcome", "dead_lettered")]
        ) >= Some(8.0)
    );
    assert!(
        m.value(
            "baton_webhook_events_total",
            &[("webhook", "main"), ("outcome", "delivered")]
        ) >= Some(all.len() as f64)
    );
    task.abort();
    server.kill().await;
}

#[tokio::test]
async fn at_least_once_sqlite() {
    at_least_once(Backend::Sqlite).await;
}

#[tokio::test]
async fn at_least_once_postgres() {
    at_least_once(Backend::Postgres).await;
}

/// A replica that stops gives up its sinks' leases, so another delivers at
/// once instead of when the leases run out.
#[tokio::test]
async fn a_stopping_replica_gives_up_its_sink_leases() {
    let db = crate::common::TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("webhooks.yaml");
    std::fs::write(
        &file,
        "webhooks:\n  - { name: hook, url: \"http://127.0.0.1:9/in\", secret_env: HOOK_SECRET }\n",
    )
    .unwrap();
    let hooks = baton::sinks::load(&file, |_| Some("s".repeat(32))).unwrap();
    let sinks = baton::sinks::Sinks::new(hooks, None, db.store.clone(), "w-a");
    let stop = tokio_util::sync::CancellationToken::new();
    let running = sinks.spawn(stop.clone());
    // Once A placed the sink in the feed, it holds the lease.
    for _ in 0..200 {
        if db.store.sink_state("hook").await.unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    let claim = |who: &'static str| {
        let store = db.store.clone();
        async move {
            let t = now();
            store.claim_sink("hook", who, t, t + 30_000).await.unwrap()
        }
    };
    assert!(!claim("w-b").await, "A holds the sink while it runs");
    stop.cancel();
    for r in running {
        r.await.unwrap();
    }
    assert!(claim("w-b").await, "A gave the lease up when it stopped");
}

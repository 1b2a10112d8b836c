//! The event feed on NATS JetStream from outside, on a real `baton`
//! process per store and the machine's NATS: every event of the feed is
//! stored once in the stream under `<prefix>.<flow>.<kind>`; a durable
//! consumer that restarts goes on where it acknowledged; and NATS outages
//! (the connection cut by a proxy in between), at startup and mid-stream,
//! delay events and lose none. And the other way: `event` steps
//! satisfied by messages a real NATS client publishes, each id once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::Mutex;

use crate::crash::Server;
use crate::testapp::{Backend, GREETING_FLOW, TestApp, fresh_database_url, write_test_keys};

/// NATS from `BATON_TEST_NATS_URL` (`nats://127.0.0.1:4222`), or `None`
/// with a loud notice.
fn nats_url() -> Option<String> {
    let url = std::env::var("BATON_TEST_NATS_URL").ok();
    if url.is_none() {
        eprintln!("SKIPPED (BATON_TEST_NATS_URL not set): NATS test not run");
    }
    url
}

/// A TCP proxy to NATS that the test can cut and restore.
struct Proxy {
    port: u16,
    target: String,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: &str, port: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (t, to) = (tasks.clone(), target.to_owned());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let to = to.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(&to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                t.lock().await.push(conn);
            }
        });
        tasks.lock().await.push(accept);
        Proxy {
            port,
            target: target.to_owned(),
            tasks,
        }
    }

    /// Drops every connection and stops listening.
    async fn cut(&self) {
        for t in self.tasks.lock().await.drain(..) {
            t.abort();
        }
    }

    async fn restore(&self) -> Proxy {
        Proxy::start(&self.target, self.port).await
    }
}

/// `Nats-Msg-Id` (the feed cursor) of every event of the feed.
async fn feed_cursors(server: &Server) -> Vec<String> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let r = reqwest::Client::new()
            .post(format!("{}/graphql", server.base))
            .header("x-api-key", "admin-key")
            .json(&json!({
                "query": "query($a: String) { eventFeed(after: $a, first: 1000) { endCursor events { cursor } } }",
                "variables": { "a": after },
            }))
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap();
        let page = &r["data"]["eventFeed"];
        let events = page["events"].as_array().expect("a feed page").clone();
        if events.is_empty() {
            return out;
        }
        out.extend(
            events
                .iter()
                .map(|e| e["cursor"].as_str().unwrap().to_owned()),
        );
        after = page["endCursor"].as_str().map(str::to_owned);
    }
}

/// Pulls from the durable consumer `test` until `want` distinct ids came
/// (acknowledging each) or time runs out; returns the ids and subjects.
async fn pull(
    js: &async_nats::jetstream::Context,
    stream: &str,
    want: usize,
    seen: &mut HashSet<String>,
    subjects: &mut HashSet<String>,
) {
    let stream = js.get_stream(stream).await.expect("the stream baton made");
    let consumer: async_nats::jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            "test",
            async_nats::jetstream::consumer::pull::Config {
                durable_name: Some("test".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while seen.len() < want && tokio::time::Instant::now() < deadline {
        let mut batch = consumer
            .fetch()
            .max_messages(100)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .unwrap();
        while let Some(Ok(m)) = batch.next().await {
            let id = m
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.as_str().to_owned())
                .expect("every message has its cursor as Nats-Msg-Id");
            assert!(
                seen.insert(id.clone()),
                "{id} delivered twice to one consumer"
            );
            subjects.insert(m.subject.to_string());
            m.ack().await.unwrap();
            if seen.len() == want {
                break;
            }
        }
    }
    assert_eq!(seen.len(), want, "events in the stream");
}

async fn through_an_outage(backend: Backend) {
    let Some(nats) = nats_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = fresh_database_url(backend, dir.path()).await else {
        return;
    };
    let tag = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let (subject, stream) = (format!("bt{tag}.events"), format!("BT_{tag}"));
    let target = nats.trim_start_matches("nats://").to_owned();
    // NATS is out when baton starts: connecting fails and is retried.
    let proxy = Proxy::start(&target, 0).await;
    proxy.cut().await;
    let flows = dir.path().join("flows");
    std::fs::create_dir(&flows).unwrap();
    std::fs::write(flows.join("greeting.yaml"), GREETING_FLOW).unwrap();
    let keys = write_test_keys(dir.path());
    let server = Server::start_with(
        &url,
        &flows,
        &[
            "--nats-url",
            &format!("nats://127.0.0.1:{}", proxy.port),
            "--nats-subject",
            &subject,
            "--nats-stream",
            &stream,
            "--nats-from-start",
            "--api-keys",
            keys.to_str().unwrap(),
        ],
    )
    .await;
    let js = async_nats::jetstream::new(async_nats::connect(&nats).await.expect("NATS is up"));

    for i in 0..3 {
        server.walk_greeting(&format!("a{i}")).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let proxy = proxy.restore().await;
    let (mut seen, mut subjects) = (HashSet::new(), HashSet::new());
    // Wait for baton to make the stream, then read all of it so far.
    for _ in 0..200 {
        if js.get_stream(&stream).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let first = feed_cursors(&server).await;
    pull(&js, &stream, first.len(), &mut seen, &mut subjects).await;
    assert_eq!(seen, first.iter().cloned().collect::<HashSet<_>>());
    assert!(
        subjects.contains(&format!("{subject}.greeting.started")),
        "{subjects:?}"
    );
    assert!(
        subjects.contains(&format!("{subject}.greeting.ended")),
        "{subjects:?}"
    );

    // NATS goes away mid-stream; sessions go on; it comes back.
    proxy.cut().await;
    for i in 0..3 {
        server.walk_greeting(&format!("b{i}")).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let _proxy = proxy.restore().await;
    for i in 0..2 {
        server.walk_greeting(&format!("c{i}")).await;
    }

    // The consumer, restarted, goes on from its acknowledgements and gets
    // every event, none twice.
    let all = feed_cursors(&server).await;
    pull(&js, &stream, all.len(), &mut seen, &mut subjects).await;
    assert_eq!(seen, all.iter().cloned().collect::<HashSet<_>>());
    // On PostgreSQL the feed shows a transaction only once every older one
    // has ended, so the stream may briefly hold events the read above did
    // not see yet: compare once both have settled (a duplicate never does).
    let mut counts = (0, 0);
    for _ in 0..100 {
        let all = feed_cursors(&server).await;
        let info = js
            .get_stream(&stream)
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .clone();
        counts = (info.state.messages as usize, all.len());
        if counts.0 == counts.1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(counts.0, counts.1, "each event stored once");

    server.kill().await;
    js.delete_stream(&stream).await.unwrap();
}

#[tokio::test]
async fn through_an_outage_sqlite() {
    through_an_outage(Backend::Sqlite).await;
}

#[tokio::test]
async fn through_an_outage_postgres() {
    through_an_outage(Backend::Postgres).await;
}

const SETTLE_FLOW: &str = r#"
id: settle
start: order
nodes:
  - id: order
    kind: screen
    components: [{ kind: text_input, id: ref, label: Order, required: true }]
    actions: [{ id: next, next: paid }]
  - id: paid
    kind: event
    event: payment.settled
    correlation: "{{ input.order.ref }}"
    timeout: 1h
    next: done
  - { id: done, kind: end, title: "Paid {{ steps.paid.payload.amount }}" }
"#;

/// Waits until the consumer holds nothing unread or unacknowledged (a
/// message Baton failed to handle stays unacknowledged and comes back).
async fn drained(js: &async_nats::jetstream::Context, stream: &str, messages: u64) {
    let mut last = String::new();
    for _ in 0..200 {
        let stream = js.get_stream(stream).await.unwrap();
        let stored = stream.get_info().await.unwrap().state.messages;
        if let Ok(mut c) = stream
            .get_consumer::<async_nats::jetstream::consumer::pull::Config>("baton-events")
            .await
        {
            let info = c.info().await.unwrap();
            if stored == messages && info.num_pending == 0 && info.num_ack_pending == 0 {
                return;
            }
            last = format!(
                "stored {stored}, unread {}, unacknowledged {}",
                info.num_pending, info.num_ack_pending
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the events stream did not drain: {last}");
}

async fn events_arrive_from_a_stream(backend: Backend) {
    let Some(nats) = nats_url() else { return };
    let tag = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let (subject, stream) = (format!("bt{tag}.in"), format!("BTIN_{tag}"));
    let js = async_nats::jetstream::new(async_nats::connect(&nats).await.expect("NATS is up"));
    // The publishing team owns the stream. Its duplicate window is short,
    // so a re-published id is stored again and Baton must notice it.
    js.create_stream(async_nats::jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![format!("{subject}.>")],
        duplicate_window: Duration::from_millis(100),
        ..Default::default()
    })
    .await
    .unwrap();
    let feed_stream = format!("BTF_{tag}");
    let Some(app) = TestApp::spawn_configured(
        backend,
        &[("settle.yaml", SETTLE_FLOW.to_string())],
        |c, _| {
            c.step_budget_ms = 0;
            c.nats_url = Some(nats.clone());
            c.nats_subject = format!("bt{tag}.feed");
            c.nats_stream = feed_stream.clone();
            c.nats_events_subject = Some(subject.clone());
            c.nats_events_stream = stream.clone();
        },
    )
    .await
    else {
        return;
    };
    let start = |reference: &'static str| {
        let app = &app;
        async move {
            let (s, token) = app
                .start("settle", json!({ "id": reference }), json!({}))
                .await;
            let id = s["id"].as_str().unwrap().to_string();
            let s = app
                .submit(&token, &id, "order", "next", json!({ "ref": reference }))
                .await;
            assert_eq!(s["status"], "WAITING", "{s}");
            (id, token)
        }
    };
    let publish = |id: &'static str, body: &'static str| {
        let (js, subject) = (&js, &subject);
        async move {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", id);
            js.publish_with_headers(format!("{subject}.payment.settled"), headers, body.into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    };
    let title = |token: String, id: String| {
        let app = &app;
        async move {
            for _ in 0..200 {
                let s = app.session(Some(&token), &id).await;
                if s["data"]["session"]["status"] == "COMPLETED" {
                    return s["data"]["session"]["screen"]["title"].clone();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("session {id} did not finish");
        }
    };

    // A waiting step is satisfied by a message.
    let (id, token) = start("o-1").await;
    publish("m1", r#"{"correlationKey":"o-1","payload":{"amount":42}}"#).await;
    assert_eq!(title(token, id).await, "Paid 42");

    // A message that is not an event is dropped, not retried forever, and
    // the ones after it still come through.
    publish("bad", "not json").await;
    drained(&js, &stream, 2).await;

    // The same id again, past the stream's duplicate window: stored twice
    // by JetStream, delivered once by Baton. Had it been kept in the inbox,
    // the next session waiting on `o-1` would take it (42) instead of the
    // event sent for it (7).
    tokio::time::sleep(Duration::from_millis(200)).await;
    publish("m1", r#"{"correlationKey":"o-1","payload":{"amount":42}}"#).await;
    drained(&js, &stream, 3).await;
    let (id, token) = start("o-1").await;
    publish("m2", r#"{"correlationKey":"o-1","payload":{"amount":7}}"#).await;
    assert_eq!(title(token, id).await, "Paid 7");

    // An event before its step waits is kept for it.
    publish("m3", r#"{"correlationKey":"o-3","payload":{"amount":3}}"#).await;
    drained(&js, &stream, 5).await;
    let (id, token) = start("o-3").await;
    assert_eq!(title(token, id).await, "Paid 3");

    drop(app);
    js.delete_stream(&stream).await.unwrap();
    let _ = js.delete_stream(&feed_stream).await;
}

#[tokio::test]
async fn events_arrive_from_a_stream_sqlite() {
    events_arrive_from_a_stream(Backend::Sqlite).await;
}

#[tokio::test]
async fn events_arrive_from_a_stream_postgres() {
    events_arrive_from_a_stream(Backend::Postgres).await;
}

#[test]
fn an_events_subject_inside_the_feed_stops_the_server_with_a_code() {
    let err = crate::testapp::refused(&[
        "--nats-url",
        "nats://127.0.0.1:1",
        "--nats-subject",
        "baton.events",
        "--nats-events-subject",
        "baton.events.in",
    ]);
    assert!(err.contains("NATS_SUBJECTS_OVERLAP"), "{err}");
    // Reading events needs a server to read them from.
    let err = crate::testapp::refused(&["--nats-events-subject", "baton.in"]);
    assert!(err.contains("--nats-url"), "{err}");
}

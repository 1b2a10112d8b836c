//! The event feed from outside, on both stores: paged to the end it holds
//! every event of every session exactly once, each session's in order;
//! a cursor resumes exactly where it stopped; `fromEnd` skips the past;
//! junk, foreign cursors and bad page sizes get their codes; on
//! PostgreSQL an event committed late is not skipped; and `baton events
//! tail` prints the same events.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Value, json};

use crate::testapp::{Backend, GREETING_FLOW, TestApp, error_code, write_test_keys};

const FEED: &str = "query($a: String, $n: Int!, $end: Boolean!) { eventFeed(after: $a, first: $n, fromEnd: $end) { \
    endCursor events { cursor sessionId seq kind at flowId flowVersion userId payload } } }";

async fn page(app: &TestApp, after: Option<&str>, n: i64) -> (Vec<Value>, Option<String>) {
    let (_, r) = app
        .gql_key(
            FEED,
            json!({ "a": after, "n": n, "end": false }),
            Some("viewer-key"),
        )
        .await;
    assert!(r.get("errors").is_none(), "{r}");
    let p = &r["data"]["eventFeed"];
    (
        p["events"].as_array().unwrap().clone(),
        p["endCursor"].as_str().map(str::to_owned),
    )
}

/// Reads on from `after` in pages of `n` until nothing more comes.
async fn drain(app: &TestApp, mut after: Option<String>, n: i64) -> (Vec<Value>, Option<String>) {
    let mut all = Vec::new();
    loop {
        let (events, end) = page(app, after.as_deref(), n).await;
        if events.is_empty() {
            assert_eq!(end, after, "an empty page keeps the cursor");
            return (all, after);
        }
        all.extend(events);
        after = end;
    }
}

/// Reads on from `after` until `want` events came. On PostgreSQL the feed
/// holds events back while any older transaction of the cluster is open
/// (other tests' too), so what is committed shows up soon, not at once.
async fn drain_until(
    app: &TestApp,
    mut after: Option<String>,
    n: i64,
    want: usize,
) -> (Vec<Value>, Option<String>) {
    let mut all = Vec::new();
    for _ in 0..200 {
        let (events, end) = drain(app, after.clone(), n).await;
        all.extend(events);
        after = end;
        if all.len() >= want {
            return (all, after);
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("{} of {want} events came: {all:?}", all.len());
}

/// `(session, seq)` of every event of `sessions`, from the sessions' own history.
async fn logged(app: &TestApp, sessions: &[String]) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for s in sessions {
        for e in app.baton_events(s).await.as_array().unwrap() {
            out.push((s.clone(), e["seq"].as_i64().unwrap()));
        }
    }
    out
}

fn keys(events: &[Value]) -> Vec<(String, i64)> {
    events
        .iter()
        .map(|e| {
            (
                e["sessionId"].as_str().unwrap().to_owned(),
                e["seq"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// Every logged event once, and each session's in seq order.
fn check_complete(feed: &[(String, i64)], log: &[(String, i64)]) {
    let unique: HashSet<_> = feed.iter().collect();
    assert_eq!(unique.len(), feed.len(), "no event twice: {feed:?}");
    let mut a = feed.to_vec();
    let mut b = log.to_vec();
    a.sort();
    b.sort();
    assert_eq!(a, b, "the feed holds exactly the logged events");
    let mut last: BTreeMap<&str, i64> = BTreeMap::new();
    for (s, seq) in feed {
        let prev = last.insert(s, *seq).unwrap_or(0);
        assert!(*seq > prev, "session {s}: seq {seq} after {prev}");
    }
}

async fn walk(app: &TestApp, user: &str) -> String {
    let (s, token) = app
        .start(
            "greeting",
            json!({ "id": user }),
            json!({ "platform": "web" }),
        )
        .await;
    let id = s["id"].as_str().unwrap().to_owned();
    let s = app
        .submit(&token, &id, "hello", "next", json!({ "name": "Ada" }))
        .await;
    assert_eq!(s["status"], "COMPLETED", "{s}");
    id
}

async fn feed(backend: Backend) {
    let Some(app) = TestApp::spawn_configured(
        backend,
        &[("greeting.yaml", GREETING_FLOW.into())],
        |c, dir| {
            c.api_keys = Some(write_test_keys(dir));
        },
    )
    .await
    else {
        return;
    };
    let mut sessions = Vec::new();
    for u in ["a", "b", "c"] {
        sessions.push(walk(&app, u).await);
    }

    // Paged by 2 to the end: all of it, once, in order.
    let log = logged(&app, &sessions).await;
    let (events, end) = drain_until(&app, None, 2, log.len()).await;
    check_complete(&keys(&events), &log);
    let first = &events[0];
    assert_eq!(first["kind"], "started");
    assert_eq!(first["flowId"], "greeting");
    assert_eq!(first["userId"], "a");
    assert!(first["at"].as_str().unwrap().ends_with('Z'), "{first}");

    // Resume from the middle: exactly the rest, then what came since.
    let middle = events[events.len() / 2]["cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    sessions.push(walk(&app, "d").await);
    let expected: Vec<(String, i64)> = keys(&events[events.len() / 2 + 1..])
        .into_iter()
        .chain(logged(&app, &sessions[3..]).await)
        .collect();
    let (rest, _) = drain_until(&app, Some(middle), 3, expected.len()).await;
    assert_eq!(keys(&rest), expected);

    // From the end: only what happens next.
    let (_, r) = app
        .gql_key(
            FEED,
            json!({ "a": null, "n": 1, "end": true }),
            Some("viewer-key"),
        )
        .await;
    let now = r["data"]["eventFeed"]["endCursor"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(Some(now.clone()), end, "the feed moved since");
    let e = walk(&app, "e").await;
    let e_log = logged(&app, &[e]).await;
    let (next, _) = drain_until(&app, Some(now), 100, e_log.len()).await;
    assert_eq!(keys(&next), e_log);

    // Bad input has its codes.
    let foreign = match backend {
        Backend::Sqlite => "p1.1.x",
        Backend::Postgres => "s5",
    };
    for bad in ["junk", "", foreign] {
        let (_, r) = app
            .gql_key(
                FEED,
                json!({ "a": bad, "n": 5, "end": false }),
                Some("viewer-key"),
            )
            .await;
        assert_eq!(error_code(&r), "EVENT_CURSOR_INVALID", "{bad}: {r}");
        assert!(r["errors"][0]["extensions"]["hint"].is_string(), "{r}");
    }
    for n in [0, 1001] {
        let (_, r) = app
            .gql_key(
                FEED,
                json!({ "a": null, "n": n, "end": false }),
                Some("viewer-key"),
            )
            .await;
        assert_eq!(error_code(&r), "EVENT_FEED_LIMIT_INVALID", "{n}: {r}");
    }
    let (_, r) = app
        .gql_key(
            FEED,
            json!({ "a": null, "n": 5, "end": false }),
            Some("reviewer-key"),
        )
        .await;
    assert_eq!(error_code(&r), "FORBIDDEN_ROLE", "{r}");

    // The CLI prints the same events, one JSON object per line. (Async:
    // the server it calls runs on this test's runtime.)
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .args([
            "events",
            "tail",
            "--from-start",
            "--limit",
            "4",
            "--server",
            &app.base,
        ])
        .env("BATON_API_KEY", "viewer-key")
        .output()
        .await
        .expect("run baton events tail");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(keys(&printed), keys(&events[..4]));
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .args([
            "events", "tail", "--after", "junk", "--limit", "1", "--server", &app.base,
        ])
        .env("BATON_API_KEY", "viewer-key")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("EVENT_CURSOR_INVALID"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn feed_sqlite() {
    feed(Backend::Sqlite).await;
}

#[tokio::test]
async fn feed_postgres() {
    feed(Backend::Postgres).await;
}

/// A transaction that inserted an event and commits after later ones:
/// the feed waits for it rather than passing it by.
#[tokio::test]
async fn a_late_commit_is_not_skipped_on_postgres() {
    let Some(app) = TestApp::spawn_configured(
        Backend::Postgres,
        &[("greeting.yaml", GREETING_FLOW.into())],
        |c, dir| {
            c.api_keys = Some(write_test_keys(dir));
        },
    )
    .await
    else {
        return;
    };
    let early = walk(&app, "early").await;
    let (_, cursor) = drain_until(
        &app,
        None,
        100,
        logged(&app, std::slice::from_ref(&early)).await.len(),
    )
    .await;
    // A writer that takes its time: an event of `early`, not yet committed.
    let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
    let mut slow = pool.begin().await.unwrap();
    let seq: i64 =
        sqlx::query_scalar("SELECT MAX(seq) + 1 FROM session_events WHERE session_id = $1")
            .bind(&early)
            .fetch_one(&mut *slow)
            .await
            .unwrap();
    sqlx::query(
        "INSERT INTO session_events (session_id, seq, kind, payload, created_at) \
         VALUES ($1, $2, 'late', '{}', 0)",
    )
    .bind(&early)
    .bind(seq)
    .execute(&mut *slow)
    .await
    .unwrap();
    // Others commit meanwhile; the feed holds them back behind the open one.
    let later = walk(&app, "later").await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (held, cursor) = drain(&app, cursor, 100).await;
    assert!(held.is_empty(), "nothing passes an open writer: {held:?}");
    slow.commit().await.unwrap();
    let want = 1 + logged(&app, std::slice::from_ref(&later)).await.len();
    let (events, _) = drain_until(&app, cursor, 100, want).await;
    let got = keys(&events);
    assert_eq!(
        got[0],
        (early.clone(), seq),
        "the late event first: {got:?}"
    );
    assert_eq!(&got[1..], logged(&app, &[later]).await.as_slice());
}

//! Funnels from outside: sessions walk known paths (finish, branch, go
//! back, quit, get cancelled, stall on a rejected submit, a preview), and
//! every count of the funnel is checked against them, on both stores.

use serde_json::{Value, json};

use crate::testapp::{Backend, TestApp, error_code, write_test_keys};

const SIGNUP: &str = r#"
id: signup_funnel
start: intro
nodes:
  - id: intro
    kind: screen
    actions: [{ id: next, next: form }]
  - id: form
    kind: screen
    components: [{ kind: text_input, id: name, label: Name, required: true }]
    actions:
      - { id: send, next: route }
      - { id: quit, validate: false, next: quit_end }
  - id: route
    kind: decision
    next:
      - { when: { "==": [{ var: input.form.name }, "vip"] }, to: vip }
      - to: done
  - id: vip
    kind: screen
    actions: [{ id: ok, next: done }]
  - { id: done, kind: end }
  - { id: quit_end, kind: end, outcome: abandoned }
"#;

const STEPS: &str = r#"
id: step_funnel
start: go
nodes:
  - id: go
    kind: screen
    actions: [{ id: next, next: call }]
  - id: call
    kind: http
    url: "http://127.0.0.1:9/check"
    retry: { backoff: fixed, max_attempts: 3, delay: 10ms }
    next: ok_end
    on_error: sorry
    mock:
      status: 200
      body: {}
      scenarios:
        down: { fail: connect }
  - { id: ok_end, kind: end }
  - { id: sorry, kind: end, outcome: failed }
"#;

const FUNNEL: &str = "query($v: Int, $g: FunnelGroup, $from: DateTime, $to: DateTime, $idle: Int) { \
    funnel(flowId: \"signup_funnel\", version: $v, groupBy: $g, from: $from, to: $to, idleMinutes: $idle) { \
    sessions nodes { node entered dropped medianMs p90Ms } edges { from to action count } \
    groups { key sessions nodes { node entered dropped } } } }";

async fn funnel(app: &TestApp, vars: Value) -> Value {
    let (_, r) = app.gql_key(FUNNEL, vars, Some("viewer-key")).await;
    assert!(r.get("errors").is_none(), "{r}");
    r["data"]["funnel"].clone()
}

/// `in_memory`: the aggregator's defaults (walks cached, writes
/// deferred); otherwise each batch reads its walks and is written at once.
async fn walk(backend: Backend, in_memory: bool) {
    let Some(app) = TestApp::spawn_configured(
        backend,
        &[("signup.yaml", SIGNUP.into()), ("steps.yaml", STEPS.into())],
        |c, dir| {
            c.api_keys = Some(write_test_keys(dir));
            if !in_memory {
                c.funnel_walk_cache = 0;
                c.funnel_write_ms = 0;
            }
        },
    )
    .await
    else {
        return;
    };
    let started_at = now_ms();
    let start = |user: &'static str, platform: &'static str| {
        let app = &app;
        async move {
            let (s, token) = app
                .start(
                    "signup_funnel",
                    json!({ "id": user }),
                    json!({ "platform": platform }),
                )
                .await;
            (s["id"].as_str().unwrap().to_string(), token)
        }
    };
    // A: straight to the end. B: the VIP branch.
    for (user, name) in [("a", "bob"), ("b", "vip")] {
        let (id, t) = start(user, "ios").await;
        app.submit(&t, &id, "intro", "next", json!({})).await;
        let s = app
            .submit(&t, &id, "form", "send", json!({ "name": name }))
            .await;
        if name == "vip" {
            app.submit(&t, &id, "vip", "ok", json!({})).await;
        } else {
            assert_eq!(s["status"], "COMPLETED");
        }
    }
    // C: forward, then back, then nothing more.
    let (id, t) = start("c", "android").await;
    app.submit(&t, &id, "intro", "next", json!({})).await;
    // A query aggregates what the feed holds so far: C and D go on in a
    // later batch, from the walks the aggregator stored.
    funnel(&app, json!({})).await;
    app.back(&t, &id).await;
    // D: quits on the form (an end, though abandoned).
    let (id, t) = start("d", "android").await;
    app.submit(&t, &id, "intro", "next", json!({})).await;
    funnel(&app, json!({})).await;
    app.submit(&t, &id, "form", "quit", json!({})).await;
    // E: cancelled by an operator on the intro.
    let (id, _) = start("e", "web").await;
    let (_, r) = app
        .gql_key(
            "mutation($s: ID!) { cancelSession(sessionId: $s) { status } }",
            json!({ "s": id }),
            Some("admin-key"),
        )
        .await;
    assert!(r.get("errors").is_none(), "{r}");
    // F: a rejected submit on the form, then nothing.
    let (id, t) = start("f", "web").await;
    app.submit(&t, &id, "intro", "next", json!({})).await;
    let s = app.submit(&t, &id, "form", "send", json!({})).await;
    assert_eq!(s["screen"]["errors"][0]["field"], "name");
    // A preview never counts.
    let (_, r) = app
        .gql_key(
            "mutation { startPreview(input: { flowId: \"signup_funnel\" }) { id } }",
            json!({}),
            Some("editor-key"),
        )
        .await;
    assert!(r.get("errors").is_none(), "{r}");
    // Its events say so, for the feed's consumers to leave out too; a
    // live session's do not.
    let preview = r["data"]["startPreview"]["id"].as_str().unwrap();
    let marks = |events: Value| -> Vec<Value> {
        events
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["payload"]["preview"].clone())
            .collect()
    };
    let marked = marks(app.baton_events(preview).await);
    assert!(
        !marked.is_empty() && marked.iter().all(|m| m == &json!(true)),
        "{marked:?}"
    );
    assert!(
        marks(app.baton_events(&id).await)
            .iter()
            .all(Value::is_null)
    );
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;

    let f = funnel(&app, json!({ "idle": 0 })).await;
    assert_eq!(f["sessions"], 6, "{f}");
    let node = |id: &str| {
        f["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["node"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no node {id}: {f}"))
    };
    let counts = |id: &str| {
        let n = node(id);
        (
            n["entered"].as_i64().unwrap(),
            n["dropped"].as_i64().unwrap(),
        )
    };
    // In the flow's order.
    let order: Vec<&str> = f["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["intro", "form", "route", "vip", "done", "quit_end"]);
    assert_eq!(
        counts("intro"),
        (6, 2),
        "C went back and stayed, E was cancelled"
    );
    assert_eq!(counts("form"), (5, 1), "F stalled on a rejected submit");
    assert_eq!(counts("route"), (2, 0));
    assert_eq!(counts("vip"), (1, 0));
    assert_eq!(counts("done"), (2, 0));
    assert_eq!(
        counts("quit_end"),
        (1, 0),
        "ending on an end is no drop-off"
    );
    assert!(node("intro")["medianMs"].as_f64().is_some_and(|m| m >= 0.0));
    assert!(node("done")["medianMs"].is_null(), "nobody leaves an end");
    let mut edges: Vec<(String, String, Value, i64)> = f["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["from"].as_str().unwrap().to_string(),
                e["to"].as_str().unwrap().to_string(),
                e["action"].clone(),
                e["count"].as_i64().unwrap(),
            )
        })
        .collect();
    edges.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let e =
        |from: &str, to: &str, action: Value, n: i64| (from.to_string(), to.to_string(), action, n);
    assert_eq!(
        edges,
        [
            e("form", "intro", json!("back"), 1),
            e("form", "quit_end", json!("quit"), 1),
            e("form", "route", json!("send"), 2),
            e("intro", "form", json!("next"), 5),
            e("route", "done", Value::Null, 1),
            e("route", "vip", Value::Null, 1),
            e("vip", "done", json!("ok"), 1),
        ]
    );

    // Per platform.
    let f = funnel(&app, json!({ "idle": 0, "g": "PLATFORM" })).await;
    let groups: Vec<(String, i64)> = f["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["key"].as_str().unwrap().to_string(),
                g["sessions"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        groups,
        [("android".into(), 2), ("ios".into(), 2), ("web".into(), 2)]
    );
    let android = &f["groups"][0]["nodes"];
    assert_eq!(
        android[0],
        json!({ "node": "intro", "entered": 2, "dropped": 1 })
    );

    // The default range is whole hours, answered from the rollups; a range
    // of less than an hour around the sessions is read from the log alone.
    // Both must say the same, per group too.
    let from = baton::engine::rfc3339(started_at - 1);
    let to = baton::engine::rfc3339(now_ms() + 1);
    for (idle, group) in [(0, "PLATFORM"), (60, "VERSION")] {
        let rolled = funnel(&app, json!({ "idle": idle, "g": group })).await;
        let logged = funnel(
            &app,
            json!({ "idle": idle, "g": group, "from": from, "to": to }),
        )
        .await;
        let strip = |mut f: Value| {
            f.as_object_mut()
                .unwrap()
                .retain(|k, _| k != "from" && k != "to");
            f
        };
        assert_eq!(strip(rolled), strip(logged), "idle {idle}, by {group}");
    }

    // Idle sessions are on their way until the threshold passes.
    let f = funnel(&app, json!({})).await;
    assert_eq!(node_dropped(&f, "intro"), 1, "only the cancelled one: {f}");
    assert_eq!(node_dropped(&f, "form"), 0);
    // A version and a range pick sessions.
    assert_eq!(funnel(&app, json!({ "v": 1 })).await["sessions"], 6);
    assert_eq!(funnel(&app, json!({ "v": 2 })).await["sessions"], 0);
    let f = funnel(
        &app,
        json!({ "from": "2020-01-01T00:00:00Z", "to": "2020-02-01T00:00:00Z" }),
    )
    .await;
    assert_eq!(f["sessions"], 0);

    // The same on the command line.
    let (ok, text) = cli(&app, &["signup_funnel", "--idle-minutes", "0"]).await;
    assert!(ok, "{text}");
    assert!(text.contains("signup_funnel: 6 sessions"), "{text}");
    let intro: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("intro "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(&intro[..4], ["intro", "6", "2", "33.3"], "{text}");
    assert!(text.contains("intro -> form (next): 5"), "{text}");
    // Per group: the overall table, then one per version.
    let (ok, text) = cli(
        &app,
        &[
            "signup_funnel",
            "--idle-minutes",
            "0",
            "--group-by",
            "version",
        ],
    )
    .await;
    assert!(ok, "{text}");
    assert!(text.contains("\n1: 6 sessions\n"), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("intro ")).count(),
        2,
        "{text}"
    );
    let (ok, text) = cli(&app, &["signup_funnel", "--group-by", "experiment-arm"]).await;
    assert!(!ok && text.contains("FUNNEL_GROUP_INVALID"), "{text}");

    // Backend steps: attempts, retries and failures per step.
    for (user, scenario) in [("s-ok", Value::Null), ("s-down", json!("down"))] {
        let (_, r) = app
            .gql_key(
                "mutation($i: StartFlowInput!) { startFlow(input: $i) { id token } }",
                json!({ "i": { "flowId": "step_funnel", "user": { "id": user },
                               "mock": { "scenario": scenario } } }),
                Some("editor-key"),
            )
            .await;
        let (id, t) = (
            r["data"]["startFlow"]["id"].as_str().unwrap().to_string(),
            r["data"]["startFlow"]["token"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        let mut s = app.submit(&t, &id, "go", "next", json!({})).await;
        for _ in 0..200 {
            if s["status"] != "WAITING" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            s = app.session(Some(&t), &id).await["data"]["session"].clone();
        }
        let want = if scenario.is_null() {
            "COMPLETED"
        } else {
            "FAILED"
        };
        assert_eq!(
            s["outcome"], want,
            "the `sorry` end is a business failure: {s}"
        );
    }
    let want = json!({ "node": "call", "entered": 2, "stepAttempts": 4, "stepRetries": 2, "stepFailures": 1 });
    // On PostgreSQL the feed holds events back while an older transaction
    // of the cluster (another test's) is open: they come soon, not at once.
    let mut call = Value::Null;
    for _ in 0..200 {
        let (_, r) = app
            .gql_key(
                "{ funnel(flowId: \"step_funnel\") { nodes { node entered stepAttempts stepRetries stepFailures } } }",
                json!({}),
                Some("viewer-key"),
            )
            .await;
        call = r["data"]["funnel"]["nodes"]
            .as_array()
            .unwrap_or_else(|| panic!("{r}"))
            .iter()
            .find(|n| n["node"] == "call")
            .cloned()
            .unwrap_or(Value::Null);
        if call == want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(
        call,
        json!({ "node": "call", "entered": 2, "stepAttempts": 4, "stepRetries": 2, "stepFailures": 1 })
    );
    // Attempts, retries and failures on the command line.
    let (ok, text) = cli(&app, &["step_funnel"]).await;
    assert!(ok, "{text}");
    let call: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("call "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(call[1], "2", "{text}");
    assert_eq!(&call[call.len() - 3..], ["4", "2", "1"], "{text}");

    // Bad input.
    let code = |vars: Value| {
        let app = &app;
        async move {
            let (_, r) = app.gql_key(FUNNEL, vars, Some("viewer-key")).await;
            error_code(&r).to_string()
        }
    };
    assert_eq!(
        code(json!({ "from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z" })).await,
        "FUNNEL_RANGE_INVALID"
    );
    assert_eq!(code(json!({ "idle": 10081 })).await, "FUNNEL_IDLE_INVALID");
    assert_eq!(code(json!({ "idle": -1 })).await, "FUNNEL_IDLE_INVALID");
    let (_, r) = app
        .gql_key(FUNNEL, json!({ "from": "yesterday" }), Some("viewer-key"))
        .await;
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("RFC 3339"),
        "{r}"
    );
    let (_, r) = app
        .gql_key(
            "{ funnel(flowId: \"nope\") { sessions } }",
            json!({}),
            Some("viewer-key"),
        )
        .await;
    assert_eq!(error_code(&r), "FLOW_NOT_FOUND", "{r}");
}

/// `baton funnel ARGS` against `app` with a viewer key: whether it
/// succeeded, and what it printed.
async fn cli(app: &TestApp, args: &[&str]) -> (bool, String) {
    let base = app.base.clone();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
            .arg("funnel")
            .args(args)
            .env("BATON_URL", base)
            .env("BATON_API_KEY", "viewer-key")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn node_dropped(f: &Value, id: &str) -> i64 {
    f["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == id)
        .and_then(|n| n["dropped"].as_i64())
        .unwrap()
}

#[tokio::test]
async fn funnel_sqlite() {
    walk(Backend::Sqlite, true).await;
}

#[tokio::test]
async fn funnel_postgres() {
    walk(Backend::Postgres, true).await;
}

#[tokio::test]
async fn funnel_uncached_sqlite() {
    walk(Backend::Sqlite, false).await;
}

#[tokio::test]
async fn funnel_uncached_postgres() {
    walk(Backend::Postgres, false).await;
}

/// A server with the signup flow whose own aggregator does not run: only
/// the aggregators a test makes do.
async fn signup_without_aggregator(backend: Backend) -> Option<TestApp> {
    TestApp::spawn_configured(backend, &[("signup.yaml", SIGNUP.into())], |c, dir| {
        c.api_keys = Some(write_test_keys(dir));
        c.rollup_poll_ms = 0;
    })
    .await
}

/// What an aggregator folded and had not written is lost with it, and
/// nothing else: the next holder of the lease folds it again from the
/// written position, so every count stays exact; a holder that lost the
/// lease writes nothing.
async fn unwritten(backend: Backend) {
    use baton::service::rollups::{ROLLUP_SINK, Rollups};
    let Some(app) = signup_without_aggregator(backend).await else {
        return;
    };
    let finish = |user: String| {
        let app = &app;
        async move {
            let (s, t) = app
                .start("signup_funnel", json!({ "id": user }), json!({}))
                .await;
            let id = s["id"].as_str().unwrap().to_string();
            app.submit(&t, &id, "intro", "next", json!({})).await;
            let s = app
                .submit(&t, &id, "form", "send", json!({ "name": "x" }))
                .await;
            assert_eq!(s["status"], "COMPLETED", "{s}");
        }
    };
    let done = |f: &Value| {
        f["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["node"] == "done")
            .map(|n| n["entered"].clone())
    };
    for i in 0..3 {
        finish(format!("u{i}")).await;
    }
    let store = app.store().await;
    let cursor = |store: baton::store::Store| async move {
        store
            .sink_state(ROLLUP_SINK)
            .await
            .unwrap()
            .and_then(|s| s.cursor)
    };
    // A folds everything and, its write not due, writes nothing; then it
    // crashes.
    let a = Rollups::new(store.clone(), "w-a");
    assert!(a.step_deferred().await.unwrap() > 0);
    assert_eq!(cursor(store.clone()).await, None, "nothing written yet");
    drop(a);
    // Once A's lease has lapsed, B takes over and folds it all again.
    let lapsed = now_ms() + 31_000;
    assert!(
        store
            .claim_sink(ROLLUP_SINK, "w-b", lapsed, lapsed + 30_000)
            .await
            .unwrap()
    );
    let b = Rollups::new(store.clone(), "w-b");
    assert!(b.catch_up(100).await.unwrap());
    let written = cursor(store.clone()).await;
    assert!(written.is_some());
    let f = funnel(&app, json!({})).await;
    assert_eq!(
        (f["sessions"].clone(), done(&f)),
        (json!(3), Some(json!(3))),
        "{f}"
    );

    // B folds two more sessions, then loses its lease to C before it
    // writes: B writes nothing, and C counts them once.
    for i in 3..5 {
        finish(format!("u{i}")).await;
    }
    assert!(b.step_deferred().await.unwrap() > 0);
    let lapsed = now_ms() + 61_000;
    assert!(
        store
            .claim_sink(ROLLUP_SINK, "w-c", lapsed, lapsed + 30_000)
            .await
            .unwrap()
    );
    b.write_pending().await.unwrap();
    assert_eq!(cursor(store.clone()).await, written, "B wrote nothing");
    // C holds the lease from now on.
    let c = Rollups::new(store.clone(), "w-c");
    assert!(c.catch_up(100).await.unwrap());
    assert_eq!(
        b.step_deferred().await.unwrap(),
        0,
        "B no longer aggregates"
    );
    let f = funnel(&app, json!({})).await;
    assert_eq!(
        (f["sessions"].clone(), done(&f)),
        (json!(5), Some(json!(5))),
        "{f}"
    );

    // C's loop stops (its replica shuts down) and gives up the lease, so
    // D takes over now, not when the lease runs out.
    let stop = tokio_util::sync::CancellationToken::new();
    let meanwhile = async {
        for i in 5..7 {
            finish(format!("u{i}")).await;
        }
        stop.cancel();
    };
    tokio::join!(
        c.run(std::time::Duration::from_secs(60), stop.clone()),
        meanwhile
    );
    let now = now_ms();
    assert!(
        store
            .claim_sink(ROLLUP_SINK, "w-d", now, now + 30_000)
            .await
            .unwrap(),
        "C gave up the lease"
    );
    let d = Rollups::new(store.clone(), "w-d");
    d.catch_up(100).await.unwrap();
    let f = funnel(&app, json!({})).await;
    assert_eq!(
        (f["sessions"].clone(), done(&f)),
        (json!(7), Some(json!(7))),
        "{f}"
    );
}

#[tokio::test]
async fn unwritten_sqlite() {
    unwritten(Backend::Sqlite).await;
}

#[tokio::test]
async fn unwritten_postgres() {
    unwritten(Backend::Postgres).await;
}

/// A write goes in several transactions, the feed position with the last.
/// An aggregator that dies between them leaves some walks written ahead
/// of the position; the next one folds those sessions' events again and
/// skips what their walks hold, so the sums come out as from one clean
/// pass (which, without the skip, counts their edges twice).
async fn cut_short(backend: Backend) {
    use baton::service::rollups::{ROLLUP_SINK, Rollups};
    let Some(app) = signup_without_aggregator(backend).await else {
        return;
    };
    for i in 0..8 {
        let (s, t) = app
            .start("signup_funnel", json!({ "id": format!("c{i}") }), json!({}))
            .await;
        let id = s["id"].as_str().unwrap().to_string();
        app.submit(&t, &id, "intro", "next", json!({})).await;
        if i % 2 == 0 {
            app.submit(&t, &id, "form", "send", json!({ "name": "x" }))
                .await;
        }
    }
    let store = app.store().await;
    let walks = || app.count("SELECT COUNT(*) FROM funnel_sessions");
    // A writes a walk per transaction and dies after two of them.
    let mut a = Rollups::new(store.clone(), "w-a");
    a.set_write_chunk(1);
    assert!(a.step_deferred().await.unwrap() > 0);
    a.write_some(2).await.unwrap();
    // A transaction takes whole buckets of sessions, and two of these
    // eight may share one: two transactions write two walks or a few more.
    let ahead = walks().await;
    assert!(
        (2..8).contains(&ahead),
        "two transactions wrote some walks, not all: {ahead}"
    );
    let position = store.sink_state(ROLLUP_SINK).await.unwrap();
    assert_eq!(
        position.and_then(|s| s.cursor),
        None,
        "position not written"
    );
    drop(a);
    let lapsed = now_ms() + 31_000;
    let take_over = |worker: &'static str| {
        let store = store.clone();
        async move {
            assert!(
                store
                    .claim_sink(ROLLUP_SINK, worker, lapsed, lapsed + 30_000)
                    .await
                    .unwrap()
            );
            let mut r = Rollups::new(store, worker);
            r.set_write_chunk(3);
            assert!(r.catch_up(100).await.unwrap());
        }
    };
    take_over("w-b").await;
    assert_eq!(walks().await, 8);
    let after_crash = funnel(&app, json!({})).await;
    let edge = |f: &Value, from: &str, to: &str| {
        f["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["from"] == from && e["to"] == to)
            .map(|e| e["count"].clone())
    };
    assert_eq!(after_crash["sessions"], json!(8), "{after_crash}");
    assert_eq!(edge(&after_crash, "intro", "form"), Some(json!(8)));
    assert_eq!(edge(&after_crash, "route", "done"), Some(json!(4)));

    // The same log folded again from nothing, in one pass.
    app.execute("DELETE FROM funnel_sessions").await;
    app.execute("DELETE FROM funnel_rollups").await;
    app.execute(&format!(
        "DELETE FROM sink_cursors WHERE sink = '{ROLLUP_SINK}'"
    ))
    .await;
    take_over("w-c").await;
    assert_eq!(funnel(&app, json!({})).await, after_crash);
}

#[tokio::test]
async fn cut_short_sqlite() {
    cut_short(Backend::Sqlite).await;
}

#[tokio::test]
async fn cut_short_postgres() {
    cut_short(Backend::Postgres).await;
}

/// Grouped by an experiment's arms, the groups are exactly the sessions
/// pinned to each variant.
async fn arms(backend: Backend) {
    let Some(app) = TestApp::spawn_configured(backend, &[], |c, dir| {
        c.api_keys = Some(write_test_keys(dir));
    })
    .await
    else {
        return;
    };
    let mut tally = std::collections::BTreeMap::<String, i64>::new();
    for i in 0..12 {
        let (s, _) = app
            .start(
                "onboarding",
                json!({ "id": format!("arm-{i}") }),
                json!({ "platform": "web" }),
            )
            .await;
        let (_, r) = app
            .gql_key(
                "query($id: ID!) { session(id: $id) { context } }",
                json!({ "id": s["id"] }),
                Some("viewer-key"),
            )
            .await;
        let variant =
            r["data"]["session"]["context"]["experiments"]["onboarding-headline"]["variant"]
                .as_str()
                .unwrap_or_else(|| panic!("no pin: {r}"))
                .to_string();
        *tally.entry(variant).or_default() += 1;
    }
    assert_eq!(tally.values().sum::<i64>(), 12);
    let q = "query($e: ID) { funnel(flowId: \"onboarding\", groupBy: EXPERIMENT_ARM, experiment: $e) { \
        sessions groups { key sessions } } }";
    let (_, r) = app
        .gql_key(q, json!({ "e": "onboarding-headline" }), Some("viewer-key"))
        .await;
    let groups: std::collections::BTreeMap<String, i64> = r["data"]["funnel"]["groups"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"))
        .iter()
        .map(|g| {
            (
                g["key"].as_str().unwrap().to_string(),
                g["sessions"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(groups, tally);
    let (_, r) = app.gql_key(q, json!({}), Some("viewer-key")).await;
    assert_eq!(error_code(&r), "FUNNEL_GROUP_INVALID", "{r}");
    let (_, r) = app
        .gql_key(q, json!({ "e": "nope" }), Some("viewer-key"))
        .await;
    assert_eq!(error_code(&r), "FUNNEL_GROUP_INVALID", "{r}");
}

#[tokio::test]
async fn arms_sqlite() {
    arms(Backend::Sqlite).await;
}

#[tokio::test]
async fn arms_postgres() {
    arms(Backend::Postgres).await;
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Partial hours are read from the log, up to `--funnel-max-logged`
/// sessions; whole hours come from the rollups whatever their size.
async fn too_large(backend: Backend) {
    let Some(app) =
        TestApp::spawn_configured(backend, &[("signup.yaml", SIGNUP.into())], |c, dir| {
            c.api_keys = Some(write_test_keys(dir));
            c.funnel_max_logged = 1;
        })
        .await
    else {
        return;
    };
    let started_at = now_ms();
    for user in ["a", "b"] {
        app.start(
            "signup_funnel",
            json!({ "id": user }),
            json!({ "platform": "web" }),
        )
        .await;
    }
    let mid_hour = json!({
        "from": baton::engine::rfc3339(started_at - 1),
        "to": baton::engine::rfc3339(now_ms() + 1),
    });
    let (_, r) = app.gql_key(FUNNEL, mid_hour, Some("viewer-key")).await;
    assert_eq!(error_code(&r), "FUNNEL_TOO_LARGE", "{r}");
    assert!(
        r["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("more than 1 sessions"),
        "{r}"
    );
    // The default range ends on the hour: read from the sums. On
    // PostgreSQL the feed holds a commit back while an older transaction
    // of the cluster (another test's) is open, so the sums catch up soon,
    // not necessarily at once.
    let mut sessions = Value::Null;
    for _ in 0..100 {
        sessions = funnel(&app, json!({})).await["sessions"].clone();
        if sessions == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(sessions, 2);
}

#[tokio::test]
async fn too_large_sqlite() {
    too_large(Backend::Sqlite).await;
}

#[tokio::test]
async fn too_large_postgres() {
    too_large(Backend::Postgres).await;
}

/// A session quiet for longer than any idle threshold is settled into the
/// rollups while the server stays busy: the aggregator settles after it
/// writes, not only once the feed runs dry (which on a busy server it
/// never does when the aggregator looks).
async fn quiet_sessions_settle_under_load(backend: Backend) {
    let Some(app) =
        TestApp::spawn_configured(backend, &[("signup.yaml", SIGNUP.into())], |c, _| {
            c.rollup_poll_ms = 20;
            c.funnel_write_ms = 200;
            c.rate_limit_per_address = 0;
            c.rate_limit_per_session = 0;
        })
        .await
    else {
        return;
    };
    let (s, _) = app
        .start("signup_funnel", json!({ "id": "quiet" }), json!({}))
        .await;
    let quiet = s["id"].as_str().unwrap().to_owned();
    let walked = format!(
        "SELECT COUNT(*) FROM funnel_sessions WHERE session_id = '{quiet}' AND idle_node IS NOT NULL"
    );
    for i in 0.. {
        if app.count(&walked).await == 1 {
            break;
        }
        assert!(i < 400, "the aggregator did not walk the session");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    // Busy: a session walks back and forth without a pause.
    let (s, token) = app
        .start("signup_funnel", json!({ "id": "busy" }), json!({}))
        .await;
    let busy = s["id"].as_str().unwrap().to_owned();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let load = {
        let (app_url, stop, sent) = (app.base.clone(), stop.clone(), sent.clone());
        let (busy, token) = (busy.clone(), token.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for q in [
                    "mutation($s: ID!) { submit(input: { sessionId: $s, screenId: \"intro\", action: \"next\" }) { status } }",
                    "mutation($s: ID!) { back(sessionId: $s) { status } }",
                ] {
                    let r: Value = client
                        .post(format!("{app_url}/graphql"))
                        .bearer_auth(&token)
                        .json(&json!({ "query": q, "variables": { "s": busy } }))
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    assert!(r.get("errors").is_none(), "{r}");
                    n += 1;
                    sent.store(n, std::sync::atomic::Ordering::Relaxed);
                }
            }
            n
        })
    };
    // The session turns quiet for long only once the load runs: under a
    // slow machine's load the settle must still come, and come with the
    // feed busy, not before the first requests.
    for i in 0.. {
        if sent.load(std::sync::atomic::Ordering::Relaxed) > 20 {
            break;
        }
        assert!(i < 2000, "the load did not get going");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // Eight days quiet, as far as the aggregator can tell.
    let shift = 8 * 86_400_000i64;
    app.execute(&format!(
        "UPDATE funnel_sessions SET created_at = created_at - {shift}, last_at = last_at - {shift} \
         WHERE session_id = '{quiet}'"
    ))
    .await;
    let settled = format!(
        "SELECT COUNT(*) FROM funnel_sessions WHERE session_id = '{quiet}' AND idle_node IS NULL"
    );
    let mut done = false;
    for _ in 0..200 {
        if app.count(&settled).await == 1 {
            done = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let submits = load.await.unwrap();
    assert!(done, "not settled within 5 s of load ({submits} requests)");
    assert!(submits > 20, "{submits}");
}

#[tokio::test]
async fn quiet_sessions_settle_under_load_sqlite() {
    quiet_sessions_settle_under_load(Backend::Sqlite).await;
}

#[tokio::test]
async fn quiet_sessions_settle_under_load_postgres() {
    quiet_sessions_settle_under_load(Backend::Postgres).await;
}

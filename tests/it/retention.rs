//! Retention (`--idempotency-hours`, `--session-hours`): records older
//! than the cutoff are deleted in batches, newer ones stay; a retry whose
//! record is gone is treated as a new submit; a session is deleted with
//! everything it wrote, unless something may still write to it.

use serde_json::json;

use crate::testapp::{Backend, GREETING_FLOW, TestApp, error_code};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn old_idempotency_records_are_deleted(backend: Backend) {
    let Some(app) = TestApp::spawn_configured(
        backend,
        &[("greeting.yaml", GREETING_FLOW.to_owned())],
        |c, _| c.idempotency_hours = 1,
    )
    .await
    else {
        return;
    };
    // Three old records, then the cutoff, then a new one.
    let mut sessions = Vec::new();
    let mut cutoff = 0;
    for (i, name) in ["Ann", "Bo", "Cy", "Di"].iter().enumerate() {
        if i == 3 {
            let pause = std::time::Duration::from_millis(20);
            tokio::time::sleep(pause).await;
            cutoff = now_ms();
            tokio::time::sleep(pause).await;
        }
        let (s, token) = app
            .start("greeting", json!({ "id": name }), json!({}))
            .await;
        let id = s["id"].as_str().unwrap().to_owned();
        let key = format!("key-{name}");
        let r = app
            .submit_raw(
                &token,
                &id,
                "hello",
                "next",
                json!({ "name": name }),
                Some(&key),
            )
            .await;
        assert_eq!(r["data"]["submit"]["status"], "COMPLETED", "{r}");
        sessions.push((id, token, key));
    }
    let store = app.store().await;
    let deleted = |batch: Result<baton::store::Swept, _>| {
        let batch = batch.unwrap();
        (batch.deleted, batch.done)
    };
    assert_eq!(
        deleted(store.delete_idempotency_before(cutoff - 60_000, 2).await),
        (0, true)
    );
    assert_eq!(
        deleted(store.delete_idempotency_before(cutoff, 2).await),
        (2, false)
    );
    assert_eq!(
        deleted(store.delete_idempotency_before(cutoff, 2).await),
        (1, true)
    );
    assert_eq!(
        deleted(store.delete_idempotency_before(cutoff, 2).await),
        (0, true)
    );
    store.close().await;

    // A fresh server (no cached answers): the new record still answers its
    // retry; a deleted one's retry is a new submit, which the ended
    // session refuses.
    let app = app.restart().await;
    let (id, token, key) = &sessions[3];
    let r = app
        .submit_raw(
            token,
            id,
            "hello",
            "next",
            json!({ "name": "Di" }),
            Some(key),
        )
        .await;
    assert_eq!(r["data"]["submit"]["status"], "COMPLETED", "{r}");
    let (id, token, key) = &sessions[0];
    let r = app
        .submit_raw(
            token,
            id,
            "hello",
            "next",
            json!({ "name": "Ann" }),
            Some(key),
        )
        .await;
    assert_eq!(error_code(&r), "SESSION_ENDED", "{r}");
}

#[tokio::test]
async fn old_idempotency_records_are_deleted_sqlite() {
    old_idempotency_records_are_deleted(Backend::Sqlite).await;
}

#[tokio::test]
async fn old_idempotency_records_are_deleted_postgres() {
    old_idempotency_records_are_deleted(Backend::Postgres).await;
}

/// A screen that ends the session, or goes on to wait for an event.
const KEEP_FLOW: &str = r#"
id: keep
start: hello
nodes:
  - id: hello
    kind: screen
    components: [{ kind: text_input, id: name, label: Name, required: true }]
    actions:
      - { id: done, next: bye }
      - { id: pay, next: settle }
  - id: settle
    kind: event
    event: payment.settled
    correlation: "{{ input.hello.name }}"
    timeout: 1h
    next: bye
  - { id: bye, kind: end }
"#;

async fn old_sessions_are_deleted(backend: Backend) {
    let Some(app) =
        TestApp::spawn_configured(backend, &[("keep.yaml", KEEP_FLOW.into())], |c, _| {
            // Every walk written at once, so the test can wait for them.
            c.funnel_walk_cache = 0;
            c.funnel_write_ms = 0;
        })
        .await
    else {
        return;
    };
    let start = |name: &'static str| {
        let app = &app;
        async move {
            let (s, token) = app.start("keep", json!({ "id": name }), json!({})).await;
            (s["id"].as_str().unwrap().to_owned(), token)
        }
    };
    let name = json!({ "name": "x" });
    // Before the cutoff: one ended (with an idempotency record), one quiet
    // on its first screen, one waiting for an event.
    let (ended, ended_token) = start("ended").await;
    let r = app
        .submit_raw(
            &ended_token,
            &ended,
            "hello",
            "done",
            name.clone(),
            Some("k1"),
        )
        .await;
    assert_eq!(r["data"]["submit"]["status"], "COMPLETED", "{r}");
    let (quiet, quiet_token) = start("quiet").await;
    let (waiting, waiting_token) = start("waiting").await;
    let s = app
        .submit(&waiting_token, &waiting, "hello", "pay", name.clone())
        .await;
    assert_eq!(s["status"], "WAITING", "{s}");
    let pause = std::time::Duration::from_millis(20);
    tokio::time::sleep(pause).await;
    let cutoff = now_ms();
    tokio::time::sleep(pause).await;
    // After it: one ended.
    let (recent, recent_token) = start("recent").await;
    let s = app
        .submit(&recent_token, &recent, "hello", "done", name.clone())
        .await;
    assert_eq!(s["status"], "COMPLETED", "{s}");

    // The funnel aggregator has folded every session.
    for i in 0.. {
        if app.count("SELECT COUNT(*) FROM funnel_sessions").await == 4 {
            break;
        }
        assert!(i < 400, "the aggregator did not fold the four sessions");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let ended_events = app
        .count(&format!(
            "SELECT COUNT(*) FROM session_events WHERE session_id = '{ended}'"
        ))
        .await;
    assert!(ended_events >= 3, "{ended_events}");

    // Batches of one: the sweep goes on past the sessions it keeps. Only
    // the ended one goes: the quiet one is a drop-off the funnels have
    // yet to settle, the waiting one has an open task.
    let store = app.store().await;
    let (sessions, feed_rows) =
        baton::service::retention::delete_sessions_before(&store, cutoff, 1)
            .await
            .unwrap();
    assert_eq!(sessions, 1);
    match backend {
        // Its feed rows went too; the feed is the log itself on PostgreSQL.
        Backend::Sqlite => assert_eq!(feed_rows, ended_events as u64),
        Backend::Postgres => assert_eq!(feed_rows, 0),
    }
    for table in [
        "sessions WHERE id",
        "session_events WHERE session_id",
        "idempotency WHERE session_id",
        "funnel_sessions WHERE session_id",
    ] {
        let sql = format!("SELECT COUNT(*) FROM {table} = '{ended}'");
        assert_eq!(app.count(&sql).await, 0, "{sql}");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 3);
    if backend == Backend::Sqlite {
        let orphans = "SELECT COUNT(*) FROM event_feed f WHERE NOT EXISTS \
            (SELECT 1 FROM session_events e WHERE e.session_id = f.session_id AND e.seq = f.seq)";
        assert_eq!(app.count(orphans).await, 0);
    }
    // The feed reads on without it, from the start.
    let feed = store.event_feed(None, 1000).await.unwrap();
    assert!(feed.iter().all(|e| e.session_id != ended));
    assert!(
        feed.iter()
            .any(|e| e.session_id == recent && e.kind == "ended")
    );
    let r = app.session(Some(&ended_token), &ended).await;
    assert!(
        r.get("errors").is_none() && r["data"]["session"].is_null(),
        "{r}"
    );

    // Once the aggregator has settled the quiet one (as it does after 7
    // quiet days), it goes too, with its walk; the server that served it
    // finds it gone.
    app.execute(&format!(
        "UPDATE funnel_sessions SET idle_node = NULL WHERE session_id = '{quiet}'"
    ))
    .await;
    let (sessions, _) = baton::service::retention::delete_sessions_before(&store, cutoff, 1)
        .await
        .unwrap();
    assert_eq!(sessions, 1);
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM funnel_sessions WHERE session_id = '{quiet}'"
        ))
        .await,
        0
    );
    let r = app
        .submit_raw(&quiet_token, &quiet, "hello", "done", name.clone(), None)
        .await;
    assert_eq!(error_code(&r), "SESSION_NOT_FOUND", "{r}");

    // The waiting session stays while its task is open, and a pass with
    // nothing old left deletes nothing.
    let (sessions, feed_rows) =
        baton::service::retention::delete_sessions_before(&store, cutoff, 100)
            .await
            .unwrap();
    assert_eq!((sessions, feed_rows), (0, 0));
    let s = app.session(Some(&waiting_token), &waiting).await;
    assert_eq!(s["data"]["session"]["status"], "WAITING", "{s}");
    let s = app.session(Some(&recent_token), &recent).await;
    assert_eq!(s["data"]["session"]["status"], "COMPLETED", "{s}");
    store.close().await;
}

#[tokio::test]
async fn old_sessions_are_deleted_sqlite() {
    old_sessions_are_deleted(Backend::Sqlite).await;
}

#[tokio::test]
async fn old_sessions_are_deleted_postgres() {
    old_sessions_are_deleted(Backend::Postgres).await;
}

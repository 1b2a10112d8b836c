//! The store against real databases. Every behaviour is written once, as an
//! `async fn(TestDb)`, and run on SQLite and on PostgreSQL by
//! `on_both_backends!`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use baton::store::tasks::{AttemptOutcome, AttemptRecord, NewTask, StepCommit, TaskState};
use baton::store::{
    Backend, NewEvent, NewIdempotency, NewSession, RawPools, SessionRecord, Store, StoreError,
    StoreOptions,
};
use serde_json::{Value, json};
use sqlx::Connection as _;
use tokio::sync::Barrier;
use uuid::Uuid;

use crate::common::{TestDb, fresh_postgres_url, pg_url};

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = crate::common::TestDb::sqlite().await;
                    assert_eq!(db.store.backend(), baton::store::Backend::Sqlite);
                    super::$name(db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = crate::common::TestDb::postgres().await else { return };
                    assert_eq!(db.store.backend(), baton::store::Backend::Postgres);
                    super::$name(db).await;
                }
            )*
        }
    };
}

on_both_backends!(
    create_and_load_round_trip,
    create_session_rejects_duplicates_and_unknown_flow_versions,
    commit_advances_and_checks_the_expected_seq,
    racing_commits_exactly_one_wins,
    taken_idempotency_key_rolls_back_everything,
    ensure_flow_version_is_idempotent_and_increments_on_change,
    concurrent_publishers_agree_on_versions,
    events_come_back_in_order_and_paged,
    data_survives_a_restart,
    concurrent_commits_on_distinct_sessions_all_succeed,
    corrupt_json_is_reported_not_panicked,
    the_log_and_published_versions_refuse_updates,
    ping_reports_a_closed_store,
    step_commits_are_all_or_nothing,
    racing_step_completions_advance_once,
    concurrent_step_commits_keep_their_own_outcomes,
    deleting_a_session_deletes_its_log_and_idempotency_records,
    the_funnel_handoff_reads_what_the_store_holds,
);

fn flow_definition(title: &str) -> Value {
    json!({
        "id": "signup",
        "title": title,
        "start": "welcome",
        "nodes": [{ "kind": "end", "id": "welcome" }],
    })
}

fn new_session(id: &str, version: i32) -> NewSession {
    NewSession {
        id: id.to_owned(),
        flow_id: "signup".to_owned(),
        flow_version: version,
        user_id: "user-1".to_owned(),
        token_hash: "token-hash".to_owned(),
        status: "ACTIVE".to_owned(),
        state: json!({ "node": "welcome", "context": { "z": 1, "a": 2 }, "back": [] }),
    }
}

/// An idempotent response as the store takes it (JSON text).
pub(crate) fn raw(v: Value) -> Box<serde_json::value::RawValue> {
    serde_json::value::to_raw_value(&v).unwrap()
}

fn event(kind: &str, n: i64) -> NewEvent {
    NewEvent::new(kind, json!({ "n": n }))
}

fn code<T: std::fmt::Debug>(result: Result<T, StoreError>) -> &'static str {
    match result {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => {
            // Every error documents itself; internal ones are the only hint-less ones.
            if e.code() != "STORE_INTERNAL" {
                assert!(e.hint().is_some_and(|h| !h.is_empty()), "{e:?} has no hint");
            }
            e.code().as_str()
        }
    }
}

/// A published flow version and a session on it with two events (seq 2).
async fn seed(store: &Store) -> SessionRecord {
    let version = store
        .ensure_flow_version("signup", "hash-1", &flow_definition("v1"))
        .await
        .unwrap();
    let id = Uuid::now_v7().to_string();
    store
        .create_session(
            &new_session(&id, version.version),
            &[event("started", 1), event("entered", 2)],
        )
        .await
        .unwrap();
    store.session(&id).await.unwrap().expect("seeded session")
}

async fn create_and_load_round_trip(db: TestDb) {
    let store = &db.store;
    let version = store
        .ensure_flow_version("signup", "hash-1", &flow_definition("v1"))
        .await
        .unwrap();
    let id = Uuid::now_v7().to_string();
    let new = new_session(&id, version.version);
    store
        .create_session(&new, &[event("started", 1), event("entered", 2)])
        .await
        .unwrap();

    let got = store.session(&id).await.unwrap().expect("session exists");
    assert_eq!(got.id, new.id);
    assert_eq!(got.flow_id, new.flow_id);
    assert_eq!(got.flow_version, version.version);
    assert_eq!(got.user_id, new.user_id);
    assert_eq!(got.token_hash, new.token_hash);
    assert_eq!(got.status, "ACTIVE");
    assert_eq!(got.seq, 2);
    assert_eq!(got.state, new.state);
    assert!(
        got.created_at > 1_600_000_000_000,
        "epoch millis: {}",
        got.created_at
    );
    assert_eq!(got.created_at, got.updated_at);
    // JSON comes back byte for byte, key order included, on both backends.
    assert_eq!(
        serde_json::to_string(&got.state).unwrap(),
        serde_json::to_string(&new.state).unwrap()
    );
    assert_eq!(
        serde_json::to_string(&got.state["context"]).unwrap(),
        r#"{"z":1,"a":2}"#
    );

    let events = store.events(&id, 0, 100).await.unwrap();
    let summary: Vec<_> = events
        .iter()
        .map(|e| (e.seq, e.kind.as_str(), e.payload.clone()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, "started", json!({ "n": 1 })),
            (2, "entered", json!({ "n": 2 })),
        ]
    );
    assert!(events.iter().all(|e| e.created_at == got.created_at));

    // A session with no initial events starts at seq 0.
    let empty = Uuid::now_v7().to_string();
    store
        .create_session(&new_session(&empty, version.version), &[])
        .await
        .unwrap();
    assert_eq!(store.session(&empty).await.unwrap().unwrap().seq, 0);
    assert!(store.events(&empty, 0, 10).await.unwrap().is_empty());

    assert_eq!(store.session("no-such-session").await.unwrap(), None);
}

async fn create_session_rejects_duplicates_and_unknown_flow_versions(db: TestDb) {
    let store = &db.store;
    let existing = seed(store).await;

    let again = store
        .create_session(&new_session(&existing.id, 1), &[event("started", 9)])
        .await;
    assert_eq!(code(again), "SESSION_EXISTS");
    // The failed create left the first session and its log alone.
    assert_eq!(
        store.session(&existing.id).await.unwrap().unwrap(),
        existing
    );
    assert_eq!(store.events(&existing.id, 0, 100).await.unwrap().len(), 2);

    let id = Uuid::now_v7().to_string();
    let unknown = store
        .create_session(&new_session(&id, 42), &[event("started", 1)])
        .await;
    assert_eq!(code(unknown), "STORE_NOT_FOUND");
    assert_eq!(store.session(&id).await.unwrap(), None);
    assert!(store.events(&id, 0, 100).await.unwrap().is_empty());
}

async fn commit_advances_and_checks_the_expected_seq(db: TestDb) {
    let store = &db.store;
    let s = seed(store).await;
    let state = json!({ "node": "profile", "context": { "name": "Ada" } });

    let seq = store
        .commit(&s.id, 2, "WAITING", &state, &[event("submitted", 3)], None)
        .await
        .unwrap();
    assert_eq!(seq, 3);
    let got = store.session(&s.id).await.unwrap().unwrap();
    assert_eq!((got.seq, got.status.as_str()), (3, "WAITING"));
    assert_eq!(got.state, state);
    assert_eq!(got.created_at, s.created_at);
    assert!(got.updated_at >= s.updated_at);

    let stale = store
        .commit(&s.id, 2, "ACTIVE", &json!({}), &[event("late", 0)], None)
        .await;
    match stale {
        Err(StoreError::Conflict {
            expected, actual, ..
        }) => assert_eq!((expected, actual), (2, 3)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let ahead = store
        .commit(&s.id, 7, "ACTIVE", &json!({}), &[event("early", 0)], None)
        .await;
    assert_eq!(code(ahead), "STORE_CONFLICT");
    // Neither rejected commit wrote anything.
    assert_eq!(store.session(&s.id).await.unwrap().unwrap(), got);
    assert_eq!(store.events(&s.id, 0, 100).await.unwrap().len(), 3);

    let missing = store
        .commit(
            "no-such-session",
            0,
            "ACTIVE",
            &json!({}),
            &[event("x", 0)],
            None,
        )
        .await;
    assert_eq!(code(missing), "SESSION_NOT_FOUND");
    let no_events = store
        .commit(&s.id, 3, "ACTIVE", &json!({}), &[], None)
        .await;
    assert_eq!(code(no_events), "STORE_INVALID_INPUT");
    let negative = store
        .commit(&s.id, -1, "ACTIVE", &json!({}), &[event("x", 0)], None)
        .await;
    assert_eq!(code(negative), "STORE_INVALID_INPUT");

    // Several events in one commit get consecutive seqs.
    let many: Vec<_> = (4..=13).map(|n| event("step", n)).collect();
    let seq = store
        .commit(&s.id, 3, "ACTIVE", &json!({ "node": "done" }), &many, None)
        .await
        .unwrap();
    assert_eq!(seq, 13);
    let seqs: Vec<i64> = store
        .events(&s.id, 3, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, (4..=13).collect::<Vec<_>>());

    // Any JSON value is a payload, and comes back as it went in.
    let odd = [
        NewEvent::new("null", Value::Null),
        NewEvent::new("string", json!("5")),
        NewEvent::new("array", json!([1, "two", { "b": 3, "a": 4 }])),
        NewEvent::new("quotes", json!({ "s": "it's \"quoted\" \\ and ünïcode" })),
    ];
    store
        .commit(&s.id, 13, "ACTIVE", &Value::Null, &odd, None)
        .await
        .unwrap();
    let back = store.events(&s.id, 13, 100).await.unwrap();
    let back: Vec<_> = back
        .into_iter()
        .map(|e| NewEvent::new(e.kind, e.payload))
        .collect();
    assert_eq!(back, odd);
    assert_eq!(
        store.session(&s.id).await.unwrap().unwrap().state,
        Value::Null
    );
}

async fn racing_commits_exactly_one_wins(db: TestDb) {
    const RACERS: usize = 8;
    let s = seed(&db.store).await;
    // Half the racers use a second, independent Store: another replica.
    let other = db.reconnect().await;
    let barrier = Arc::new(Barrier::new(RACERS));
    let mut tasks = Vec::new();
    for i in 0..RACERS {
        let store = if i % 2 == 0 {
            db.store.clone()
        } else {
            other.clone()
        };
        let barrier = barrier.clone();
        let id = s.id.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let state = json!({ "winner": i });
            let result = store
                .commit(&id, 2, "ACTIVE", &state, &[event("racer", i as i64)], None)
                .await;
            (i, result)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (i, result) = task.await.unwrap();
        match result {
            Ok(seq) => {
                assert_eq!(seq, 3);
                winners.push(i);
            }
            Err(e) => assert_eq!(e.code(), "STORE_CONFLICT", "racer {i}: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let winner = winners[0];

    let got = db.store.session(&s.id).await.unwrap().unwrap();
    assert_eq!(got.seq, 3);
    assert_eq!(got.state, json!({ "winner": winner }));
    let events = db.store.events(&s.id, 0, 100).await.unwrap();
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[2].kind, "racer");
    assert_eq!(events[2].payload, json!({ "n": winner as i64 }));
}

async fn taken_idempotency_key_rolls_back_everything(db: TestDb) {
    let store = &db.store;
    let s = seed(store).await;
    let first = NewIdempotency {
        key: "key-1".to_owned(),
        request_hash: "req-hash-1".to_owned(),
        response: raw(json!({ "screen": "profile", "order": { "b": 1, "a": 2 } })),
    };
    let seq = store
        .commit(
            &s.id,
            2,
            "ACTIVE",
            &json!({ "node": "profile" }),
            &[event("submitted", 3)],
            Some(&first),
        )
        .await
        .unwrap();
    assert_eq!(seq, 3);

    let saved = store
        .idempotent_response(&s.id, "key-1")
        .await
        .unwrap()
        .expect("recorded");
    assert_eq!(saved.session_id, s.id);
    assert_eq!(saved.key, "key-1");
    assert_eq!(saved.request_hash, "req-hash-1");
    // The stored text comes back as written, key order included.
    assert_eq!(saved.response.get(), first.response.get());
    assert!(saved.created_at > 0);
    assert!(
        store
            .idempotent_response(&s.id, "key-2")
            .await
            .unwrap()
            .is_none()
    );

    let before = store.session(&s.id).await.unwrap().unwrap();
    let reuse = NewIdempotency {
        key: "key-1".to_owned(),
        request_hash: "req-hash-2".to_owned(),
        response: raw(json!({ "screen": "other" })),
    };
    let taken = store
        .commit(
            &s.id,
            3,
            "COMPLETED",
            &json!({ "node": "other" }),
            &[event("submitted", 4), event("completed", 5)],
            Some(&reuse),
        )
        .await;
    match &taken {
        Err(StoreError::IdempotencyKeyTaken { session_id, key }) => {
            assert_eq!(
                (session_id.as_str(), key.as_str()),
                (s.id.as_str(), "key-1")
            );
        }
        other => panic!("expected IDEMPOTENCY_KEY_TAKEN, got {other:?}"),
    }
    assert_eq!(code(taken), "IDEMPOTENCY_KEY_TAKEN");
    // Rolled back: same snapshot, same log, the first response kept.
    assert_eq!(store.session(&s.id).await.unwrap().unwrap(), before);
    assert_eq!(store.events(&s.id, 0, 100).await.unwrap().len(), 3);
    assert_eq!(
        store
            .idempotent_response(&s.id, "key-1")
            .await
            .unwrap()
            .unwrap()
            .request_hash,
        "req-hash-1"
    );

    // Keys are per session: another session may use the same one.
    let t = seed(store).await;
    store
        .commit(
            &t.id,
            2,
            "ACTIVE",
            &json!({}),
            &[event("x", 3)],
            Some(&first),
        )
        .await
        .unwrap();
    // And the first session can still move on with a fresh key.
    let fresh = NewIdempotency {
        key: "key-2".to_owned(),
        ..reuse
    };
    let seq = store
        .commit(
            &s.id,
            3,
            "ACTIVE",
            &json!({}),
            &[event("x", 4)],
            Some(&fresh),
        )
        .await
        .unwrap();
    assert_eq!(seq, 4);
}

async fn ensure_flow_version_is_idempotent_and_increments_on_change(db: TestDb) {
    let store = &db.store;
    let v1_def = flow_definition("v1");
    let v1 = store
        .ensure_flow_version("signup", "hash-1", &v1_def)
        .await
        .unwrap();
    assert_eq!((v1.flow_id.as_str(), v1.version), ("signup", 1));
    assert_eq!(v1.content_hash, "hash-1");
    assert_eq!(v1.definition, v1_def);

    let again = store
        .ensure_flow_version("signup", "hash-1", &v1_def)
        .await
        .unwrap();
    assert_eq!(again, v1, "same content, same version, same row");

    let v2_def = flow_definition("v2");
    let v2 = store
        .ensure_flow_version("signup", "hash-2", &v2_def)
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(
        store.latest_flow_version("signup").await.unwrap().unwrap(),
        v2
    );

    // Going back to the old content is a new publish, and v1 is untouched.
    let v3 = store
        .ensure_flow_version("signup", "hash-1", &v1_def)
        .await
        .unwrap();
    assert_eq!(v3.version, 3);
    assert_eq!(store.flow_version("signup", 1).await.unwrap().unwrap(), v1);
    assert_eq!(store.flow_version("signup", 2).await.unwrap().unwrap(), v2);

    // Versions count per flow.
    let other = store
        .ensure_flow_version("checkout", "hash-1", &json!({ "id": "checkout" }))
        .await
        .unwrap();
    assert_eq!(other.version, 1);

    assert_eq!(store.flow_version("signup", 4).await.unwrap(), None);
    assert_eq!(store.flow_version("nope", 1).await.unwrap(), None);
    assert_eq!(store.latest_flow_version("nope").await.unwrap(), None);
}

async fn concurrent_publishers_agree_on_versions(db: TestDb) {
    const REPLICAS: usize = 6;
    let other = db.reconnect().await;
    let stores = [db.store.clone(), other];

    // Every replica publishes the same content at once: one version.
    let barrier = Arc::new(Barrier::new(REPLICAS));
    let mut tasks = Vec::new();
    for i in 0..REPLICAS {
        let store = stores[i % 2].clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store
                .ensure_flow_version("same", "hash-a", &json!({ "v": "a" }))
                .await
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().version, 1);
    }

    // Different contents at once: each gets its own version, none is lost.
    let barrier = Arc::new(Barrier::new(REPLICAS));
    let mut tasks = Vec::new();
    for i in 0..REPLICAS {
        let store = stores[i % 2].clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store
                .ensure_flow_version("diff", &format!("hash-{i}"), &json!({ "v": i }))
                .await
        }));
    }
    let mut versions = Vec::new();
    for task in tasks {
        let record = task.await.unwrap().unwrap();
        let stored = db
            .store
            .flow_version("diff", record.version)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored, record);
        versions.push(record.version);
    }
    versions.sort();
    assert_eq!(versions, (1..=REPLICAS as i32).collect::<Vec<_>>());
}

async fn events_come_back_in_order_and_paged(db: TestDb) {
    let store = &db.store;
    let s = seed(store).await;
    let mut seq = s.seq;
    for batch in [1, 3, 5] {
        let events: Vec<_> = (0..batch).map(|i| event("step", seq + 1 + i)).collect();
        seq = store
            .commit(&s.id, seq, "ACTIVE", &json!({ "seq": seq }), &events, None)
            .await
            .unwrap();
    }
    assert_eq!(seq, 11);
    // Another session's events never show up.
    let t = seed(store).await;

    let all = store.events(&s.id, 0, 1000).await.unwrap();
    let seqs: Vec<i64> = all.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=11).collect::<Vec<_>>());
    for e in &all[2..] {
        assert_eq!(e.payload, json!({ "n": e.seq }));
    }

    let page: Vec<i64> = store
        .events(&s.id, 4, 3)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(page, vec![5, 6, 7]);
    assert!(store.events(&s.id, 11, 10).await.unwrap().is_empty());
    assert!(store.events(&s.id, 0, 0).await.unwrap().is_empty());
    assert_eq!(store.events(&t.id, 0, 100).await.unwrap().len(), 2);
    assert_eq!(
        code(store.events(&s.id, 0, -1).await),
        "STORE_INVALID_INPUT"
    );
}

async fn data_survives_a_restart(mut db: TestDb) {
    let definition = json!({ "id": "signup", "nodes": [], "zeta": 1, "alpha": 2 });
    let version = db
        .store
        .ensure_flow_version("signup", "hash-r", &definition)
        .await
        .unwrap();
    let id = Uuid::now_v7().to_string();
    db.store
        .create_session(&new_session(&id, version.version), &[event("started", 1)])
        .await
        .unwrap();
    let key = NewIdempotency {
        key: "k".to_owned(),
        request_hash: "h".to_owned(),
        response: raw(json!({ "ok": true })),
    };
    db.store
        .commit(
            &id,
            1,
            "WAITING",
            &json!({ "node": "wait" }),
            &[event("submitted", 2)],
            Some(&key),
        )
        .await
        .unwrap();
    let before = db.store.session(&id).await.unwrap().unwrap();
    db.restart().await;
    let store = &db.store;
    assert_eq!(store.session(&id).await.unwrap().unwrap(), before);
    let pinned = store
        .flow_version("signup", version.version)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pinned, version);
    assert_eq!(
        serde_json::to_string(&pinned.definition).unwrap(),
        serde_json::to_string(&definition).unwrap()
    );
    assert_eq!(store.events(&id, 0, 10).await.unwrap().len(), 2);
    assert!(store.idempotent_response(&id, "k").await.unwrap().is_some());
    // Migrations are not re-applied destructively, and work goes on.
    assert_eq!(
        store
            .ensure_flow_version("signup", "hash-r", &definition)
            .await
            .unwrap()
            .version,
        version.version
    );
    let seq = store
        .commit(&id, 2, "ACTIVE", &json!({}), &[event("resumed", 3)], None)
        .await
        .unwrap();
    assert_eq!(seq, 3);
}

async fn concurrent_commits_on_distinct_sessions_all_succeed(db: TestDb) {
    const SESSIONS: usize = 24;
    const COMMITS: i64 = 15;
    // Two independent stores on the same data, like two processes on one
    // SQLite file: their write connections really contend for the lock.
    let stores = [db.store.clone(), db.reconnect().await];
    let mut ids = Vec::new();
    for i in 0..SESSIONS {
        ids.push(seed(&stores[i % 2]).await.id);
    }
    let barrier = Arc::new(Barrier::new(SESSIONS));
    let mut tasks = Vec::new();
    for (i, id) in ids.iter().cloned().enumerate() {
        let store = stores[i % 2].clone();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut seq = 2;
            for n in 0..COMMITS {
                // A submit: read the session, then commit on its seq.
                let current = store.session(&id).await?.expect("session exists");
                assert_eq!(current.seq, seq);
                let key = NewIdempotency {
                    key: format!("k{n}"),
                    request_hash: "h".to_owned(),
                    response: raw(json!({ "n": n })),
                };
                seq = store
                    .commit(
                        &id,
                        current.seq,
                        "ACTIVE",
                        &json!({ "n": n }),
                        &[event("step", n), event("entered", n)],
                        Some(&key),
                    )
                    .await?;
            }
            Ok::<_, StoreError>(seq)
        }));
    }
    for task in tasks {
        let seq = task.await.unwrap().unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(seq, 2 + 2 * COMMITS);
    }
    for id in &ids {
        assert_eq!(
            db.store.events(id, 0, 1000).await.unwrap().len() as i64,
            2 + 2 * COMMITS
        );
    }
}

/// Writes through the raw pool: what a broken migration or a hand edit could do.
async fn raw_execute(store: &Store, sql: &str) -> Result<u64, sqlx::Error> {
    match store.raw_pools() {
        RawPools::Sqlite { write, .. } => sqlx::query(sql)
            .execute(write)
            .await
            .map(|r| r.rows_affected()),
        RawPools::Postgres(pool) => sqlx::query(sql)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()),
    }
}

/// `SELECT COUNT(*) <rest>` on whichever backend `store` uses.
async fn raw_count(store: &Store, rest: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) {rest}");
    match store.raw_pools() {
        RawPools::Sqlite { read, .. } => sqlx::query_scalar(&sql).fetch_one(read).await,
        RawPools::Postgres(pool) => sqlx::query_scalar(&sql).fetch_one(pool).await,
    }
    .unwrap()
}

async fn corrupt_json_is_reported_not_panicked(db: TestDb) {
    let store = &db.store;
    let s = seed(store).await;
    let updated = raw_execute(
        store,
        &format!(
            "UPDATE sessions SET state = '{{not json' WHERE id = '{}'",
            s.id
        ),
    )
    .await
    .unwrap();
    assert_eq!(updated, 1);
    let err = store.session(&s.id).await.unwrap_err();
    assert_eq!(err.code(), "STORE_CORRUPT");
    assert!(err.to_string().contains("state"), "{err}");
}

async fn the_log_and_published_versions_refuse_updates(db: TestDb) {
    let store = &db.store;
    let s = seed(store).await;
    let rewrite_log = raw_execute(
        store,
        &format!(
            "UPDATE session_events SET kind = 'forged' WHERE session_id = '{}'",
            s.id
        ),
    )
    .await;
    assert!(rewrite_log.is_err(), "{rewrite_log:?}");
    let rewrite_flow = raw_execute(store, "UPDATE flow_versions SET definition = '{}'").await;
    assert!(rewrite_flow.is_err(), "{rewrite_flow:?}");
    assert_eq!(store.events(&s.id, 0, 10).await.unwrap()[0].kind, "started");
    assert_eq!(
        store
            .flow_version("signup", 1)
            .await
            .unwrap()
            .unwrap()
            .definition,
        flow_definition("v1")
    );
}

/// Retention deletes sessions by hand (`DELETE FROM sessions …`); their log
/// and idempotency records go with them on both backends (a foreign key
/// cascade on SQLite, a trigger on PostgreSQL), and nobody else's do.
async fn deleting_a_session_deletes_its_log_and_idempotency_records(db: TestDb) {
    let store = &db.store;
    let (gone, kept) = (seed(store).await, seed(store).await);
    for s in [&gone, &kept] {
        let idem = NewIdempotency {
            key: "k1".to_owned(),
            request_hash: "h".to_owned(),
            response: raw(json!({ "screen": "a" })),
        };
        store
            .commit(
                &s.id,
                s.seq,
                "ACTIVE",
                &json!({}),
                &[event("x", 3)],
                Some(&idem),
            )
            .await
            .unwrap();
    }
    let count = async |table: &str, id: &str| {
        raw_count(store, &format!("FROM {table} WHERE session_id = '{id}'")).await
    };
    assert_eq!(count("session_events", &gone.id).await, 3);
    assert_eq!(count("idempotency", &gone.id).await, 1);
    let deleted = raw_execute(
        store,
        &format!("DELETE FROM sessions WHERE id = '{}'", gone.id),
    )
    .await
    .unwrap();
    assert_eq!(deleted, 1);
    assert_eq!(count("session_events", &gone.id).await, 0);
    assert_eq!(count("idempotency", &gone.id).await, 0);
    assert_eq!(count("session_events", &kept.id).await, 3);
    assert_eq!(count("idempotency", &kept.id).await, 1);
    // A commit for the deleted session writes nothing.
    assert_eq!(
        code(
            store
                .commit(
                    &gone.id,
                    gone.seq + 1,
                    "ACTIVE",
                    &json!({}),
                    &[event("y", 4)],
                    None
                )
                .await
        ),
        "SESSION_NOT_FOUND"
    );
    assert_eq!(count("session_events", &gone.id).await, 0);
}

async fn ping_reports_a_closed_store(db: TestDb) {
    db.store.ping().await.unwrap();
    let clone = db.store.clone();
    db.store.close().await;
    assert_eq!(code(clone.ping().await), "STORE_UNAVAILABLE");
    assert_eq!(code(clone.session("x").await), "STORE_UNAVAILABLE");
}

/// PostgreSQL pings a pooled connection before handing it out only once it
/// sat idle for a second (`PING_IDLE_AFTER`), not before every statement.
/// One the server closed within that second fails its statement as
/// `STORE_UNAVAILABLE` and is not used again; one idle longer is found
/// closed by the ping and replaced before the statement runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replaces_a_connection_the_server_closed() {
    let Some(url) = fresh_postgres_url().await else {
        return;
    };
    let one = StoreOptions {
        max_connections: 1,
        ..quick()
    };
    let store = Store::connect(&url, one).await.unwrap();
    let RawPools::Postgres(pool) = store.raw_pools() else {
        unreachable!("a PostgreSQL store")
    };
    let mut admin = sqlx::PgConnection::connect(&pg_url().unwrap())
        .await
        .unwrap();
    let mut close_the_connection = async || {
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(pool)
            .await
            .unwrap();
        let closed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        assert!(closed, "backend {pid} was not terminated");
        for _ in 0..100 {
            let left: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = $1")
                    .bind(pid)
                    .fetch_one(&mut admin)
                    .await
                    .unwrap();
            if left == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("backend {pid} outlived its termination");
    };

    close_the_connection().await;
    assert_eq!(code(store.session("s").await), "STORE_UNAVAILABLE");
    assert!(
        store.session("s").await.unwrap().is_none(),
        "a new connection answers"
    );

    close_the_connection().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(
        store.session("s").await.unwrap().is_none(),
        "the ping finds the closed connection and a new one answers"
    );
}

fn quick() -> StoreOptions {
    StoreOptions {
        acquire_timeout: Duration::from_secs(2),
        ..StoreOptions::default()
    }
}

#[tokio::test]
async fn bad_urls_get_clear_errors() {
    for url in [
        "",
        "   ",
        "baton.db",
        "mysql://root@localhost/baton",
        "sqlite://",
        "sqlite:",
        "sqlite://baton.db?frobnicate=1",
        "postgres://user@host:notaport/db",
    ] {
        let result = Store::connect(url, quick()).await;
        assert_eq!(code(result), "STORE_BAD_URL", "url {url:?}");
    }

    // A password never ends up in the error or its hint.
    let err = Store::connect("mysql://admin:s3cret@db/baton", quick())
        .await
        .unwrap_err();
    assert!(!format!("{err} {err:?} {:?}", err.hint()).contains("s3cret"));
    let err = Store::connect("admin:s3cret@db/baton", quick())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "STORE_BAD_URL");
    assert!(!format!("{err} {:?}", err.hint()).contains("s3cret"));
}

#[tokio::test]
async fn unreachable_databases_are_unavailable_not_hung() {
    let started = std::time::Instant::now();
    let err = Store::connect("postgres://baton:s3cret@127.0.0.1:1/baton", quick())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "STORE_UNAVAILABLE", "{err}");
    assert!(!format!("{err} {:?}", err.hint()).contains("s3cret"));
    assert!(started.elapsed() < Duration::from_secs(3));

    let result = Store::connect("sqlite:///proc/baton-cannot-write-here/baton.db", quick()).await;
    assert_eq!(code(result), "STORE_UNAVAILABLE");
}

#[tokio::test]
async fn missing_postgres_database_is_unavailable() {
    let Some(base) = pg_url() else { return };
    // Edit the URL as text so credentials and parameters stay as given.
    let (server, rest) = base.rsplit_once('/').expect("a database in the URL");
    let query = rest
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    let result = Store::connect(&format!("{server}/baton_no_such_db{query}"), quick()).await;
    assert_eq!(code(result), "STORE_UNAVAILABLE");
}

/// A store on the SQLite file at `path`.
async fn sqlite_at(path: &std::path::Path) -> Store {
    Store::connect(&format!("sqlite://{}", path.display()), quick())
        .await
        .unwrap()
}

#[tokio::test]
async fn sqlite_creates_missing_directories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/deeper/baton.db");
    let store = sqlite_at(&path).await;
    store.ping().await.unwrap();
    assert!(path.exists());
}

/// A database written by the schema before idempotency records moved to a
/// rowid table (migration 4) keeps its records, and the moved table still
/// refuses a taken key inside a commit.
#[tokio::test]
async fn sqlite_idempotency_records_survive_their_table_move() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    {
        let mut old = sqlx::migrate::Migrator::new(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/migrations/sqlite"
        )))
        .await
        .unwrap();
        old.migrations = old
            .migrations
            .iter()
            .filter(|m| m.version < 4)
            .cloned()
            .collect::<Vec<_>>()
            .into();
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .connect_with(
                url.parse::<sqlx::sqlite::SqliteConnectOptions>()
                    .unwrap()
                    .create_if_missing(true),
            )
            .await
            .unwrap();
        old.run(&pool).await.unwrap();
        for sql in [
            "INSERT INTO flow_versions VALUES ('signup', 1, 'h', '{}', 0)",
            "INSERT INTO sessions VALUES ('s1', 'signup', 1, 'u', 't', 'ACTIVE', 2, '{}', 0, 0)",
            "INSERT INTO idempotency VALUES ('s1', 'k1', 'hash-1', '{\"screen\":\"a\"}', 7)",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
    }
    let store = Store::connect(&url, quick()).await.unwrap();
    let record = store
        .idempotent_response("s1", "k1")
        .await
        .unwrap()
        .expect("the record survived the move");
    assert_eq!(record.request_hash, "hash-1");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(record.response.get()).unwrap(),
        json!({ "screen": "a" })
    );
    let taken = NewIdempotency {
        key: "k1".to_owned(),
        request_hash: "hash-2".to_owned(),
        response: raw(json!({})),
    };
    assert_eq!(
        code(
            store
                .commit(
                    "s1",
                    2,
                    "ACTIVE",
                    &json!({}),
                    &[event("x", 3)],
                    Some(&taken)
                )
                .await
        ),
        "IDEMPOTENCY_KEY_TAKEN"
    );
    let fresh = NewIdempotency {
        key: "k2".to_owned(),
        ..taken
    };
    store
        .commit(
            "s1",
            2,
            "ACTIVE",
            &json!({}),
            &[event("x", 3)],
            Some(&fresh),
        )
        .await
        .unwrap();
    assert!(
        store
            .idempotent_response("s1", "k2")
            .await
            .unwrap()
            .is_some()
    );
}

/// Commits leave their pages in the WAL; the store's checkpoint task, not
/// the commits, copies them into the database file (whose automatic
/// checkpoint would not start before thousands of pages).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_checkpoints_the_wal_beside_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("baton.db");
    let store = sqlite_at(&path).await;
    let s = seed(&store).await;
    // Wait until the checkpoint task has copied the migrations and the seed,
    // so what follows starts from a database file that is up to date.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut before = std::fs::metadata(&path).unwrap().len();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = std::fs::metadata(&path).unwrap().len();
        if now == before && now > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the database file never settled"
        );
        before = now;
    }
    // About 200 KB of new events: dozens of new pages, far from the backstop.
    let mut seq = s.seq;
    for n in 0..100 {
        let big = NewEvent::new("step", json!({ "n": n, "pad": "x".repeat(2000) }));
        seq = store
            .commit(&s.id, seq, "ACTIVE", &json!({ "n": n }), &[big], None)
            .await
            .unwrap();
    }
    let grown = loop {
        let len = std::fs::metadata(&path).unwrap().len();
        if len > before + 100_000 {
            break len;
        }
        assert!(
            std::time::Instant::now() < deadline + Duration::from_secs(10),
            "the database file stayed at {len} bytes: the WAL was not checkpointed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(grown > before);
    // And everything committed reads back.
    assert_eq!(store.session(&s.id).await.unwrap().unwrap().seq, seq);
}

/// The salt SQLite writes into the WAL's header, which changes each time
/// the WAL starts over from its beginning.
fn wal_salt(db: &std::path::Path) -> Option<[u8; 8]> {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let bytes = std::fs::read(wal).ok()?;
    bytes.get(16..24)?.try_into().ok()
}

/// The WAL's length in pages (a page and its 24-byte frame header).
fn wal_pages(db: &std::path::Path) -> u64 {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(wal).map_or(0, |m| m.len() / (4096 + 24))
}

/// Under commits that never pause, a checkpoint beside the writer copies
/// the WAL but never leaves it all copied when a commit begins, so the WAL
/// would not start over before the write connection's backstop (10,000
/// pages). The checkpoint task has the writer copy the last pages once the
/// WAL passes 4,096, or will by its next tick, so it starts over long before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_starts_a_long_wal_over_while_commits_never_pause() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("baton.db");
    let store = sqlite_at(&path).await;
    let written = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // Each commit adds a 16 KB event: four pages and then some.
    const EVENT: usize = 16_000;
    // Past 4,096 pages, where the task steps in, and short of the backstop.
    // The WAL's own length, not the bytes committed: each commit writes
    // index and session pages too, about twice its event.
    const ENOUGH_PAGES: u64 = 9_000;
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let s = seed(&store).await;
        let (store, written, stop) = (store.clone(), written.clone(), stop.clone());
        writers.spawn(async move {
            let mut seq = s.seq;
            while !stop.load(Ordering::Relaxed) {
                let big = NewEvent::new("step", json!({ "pad": "x".repeat(EVENT) }));
                seq = store
                    .commit(&s.id, seq, "ACTIVE", &json!({}), &[big], None)
                    .await
                    .unwrap();
                written.fetch_add(EVENT as u64, Ordering::Relaxed);
            }
        });
    }
    // Past the start, where an idle moment may still have started it over.
    while written.load(Ordering::Relaxed) < 2_000_000 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let first = wal_salt(&path).expect("a WAL");
    let started_over = loop {
        if wal_salt(&path).is_some_and(|salt| salt != first) {
            break true;
        }
        if wal_pages(&path) >= ENOUGH_PAGES {
            break wal_salt(&path).is_some_and(|salt| salt != first);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    stop.store(true, Ordering::Relaxed);
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    assert!(
        started_over,
        "the WAL never started over in {} bytes of commits ({} pages of WAL)",
        written.load(Ordering::Relaxed),
        wal_pages(&path)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_memory_is_one_database_for_the_whole_pool() {
    let store = Store::connect("sqlite::memory:", StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    let s = seed(&store).await;
    // Many concurrent readers and a writer: all see the same data.
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = store.clone();
        let id = s.id.clone();
        tasks.push(tokio::spawn(async move {
            store.session(&id).await.unwrap().expect("visible").seq
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 2);
    }
    let seq = store
        .commit(&s.id, 2, "ACTIVE", &json!({}), &[event("x", 3)], None)
        .await
        .unwrap();
    assert_eq!(seq, 3);
    // A second in-memory store is a different database.
    let other = Store::connect("sqlite::memory:", StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(other.session(&s.id).await.unwrap(), None);
}

#[tokio::test]
async fn postgres_schemas_isolate_tests() {
    let (Some(a), Some(b)) = (fresh_postgres_url().await, fresh_postgres_url().await) else {
        return;
    };
    let a = Store::connect(&a, quick()).await.unwrap();
    let b = Store::connect(&b, quick()).await.unwrap();
    let s = seed(&a).await;
    assert_eq!(b.session(&s.id).await.unwrap(), None);
    assert_eq!(b.latest_flow_version("signup").await.unwrap(), None);
}

fn task(id: &str, node: &str) -> NewTask {
    NewTask {
        id: id.to_owned(),
        node: node.to_owned(),
        kind: "http".to_owned(),
        state: TaskState::Running,
        due_at: Some(i64::MAX / 2),
        lease_owner: Some("worker-a".to_owned()),
        attempts: 1,
        queue: None,
        event_name: None,
        correlation: None,
        mock: None,
        input: json!({ "n": 1 }),
    }
}

fn attempt(task_id: &str, session_id: &str, n: i32) -> AttemptRecord {
    AttemptRecord {
        task_id: task_id.to_owned(),
        attempt: n,
        session_id: session_id.to_owned(),
        node: "call".to_owned(),
        worker: "worker-a".to_owned(),
        started_at: 1,
        finished_at: 2,
        outcome: AttemptOutcome::Ok,
        status_code: Some(200),
        error: None,
    }
}

/// A session at seq 1 waiting on one running task (`<id>-t1`, node
/// `call`), created with `durable` as given.
async fn seed_with_task(store: &Store, version: i32, durable: bool) -> (String, NewTask) {
    let id = Uuid::now_v7().to_string();
    let first = task(&format!("{id}-t1"), "call");
    store
        .create_session_with_tasks(
            &new_session(&id, version),
            &[event("started", 1)],
            std::slice::from_ref(&first),
            durable,
        )
        .await
        .unwrap();
    (id, first)
}

fn step_commit<'a>(
    session_id: &'a str,
    expected_seq: i64,
    events: &'a [NewEvent],
    finish: Option<(&'a str, &'a str)>,
    new_tasks: &'a [NewTask],
    attempts: &'a [AttemptRecord],
    durable: bool,
) -> StepCommit<'a> {
    StepCommit {
        session_id,
        expected_seq,
        status: "WAITING",
        state: r#"{"node":"call"}"#,
        events,
        idempotency: None,
        finish,
        new_tasks,
        attempts,
        notify: Some("test|payload"),
        durable,
    }
}

/// A step commit finishes its task, advances the session, appends events
/// and creates the next task together — or, when any guard fails, writes
/// nothing at all (a stale seq must not finish the task; a finished task
/// must not advance the session).
async fn step_commits_are_all_or_nothing(db: TestDb) {
    let version = db
        .store
        .ensure_flow_version("signup", "hash-1", &flow_definition("v1"))
        .await
        .unwrap();
    let (id, first) = seed_with_task(&db.store, version.version, false).await;
    db.store.flush().await.unwrap();
    let got = db
        .store
        .task(&first.id)
        .await
        .unwrap()
        .expect("task created");
    assert_eq!((got.state.as_str(), got.attempts), ("running", 1));
    assert_eq!(got.input, json!({ "n": 1 }));

    // A stale seq: nothing written, the task still running.
    let events = [event("step", 2)];
    let next = task(&format!("{id}-t2"), "call2");
    let attempts = [attempt(&first.id, &id, 1)];
    let stale = db
        .store
        .commit_step(step_commit(
            &id,
            7,
            &events,
            Some((&first.id, "ok")),
            std::slice::from_ref(&next),
            &attempts,
            false,
        ))
        .await;
    assert_eq!(code(stale), "STORE_CONFLICT");
    assert_eq!(
        db.store.task(&first.id).await.unwrap().unwrap().state,
        TaskState::Running
    );
    assert!(db.store.task(&next.id).await.unwrap().is_none());
    assert!(db.store.session_attempts(&id).await.unwrap().is_empty());

    // The right seq: everything at once.
    let seq = db
        .store
        .commit_step(step_commit(
            &id,
            1,
            &events,
            Some((&first.id, "ok")),
            std::slice::from_ref(&next),
            &attempts,
            false,
        ))
        .await
        .unwrap();
    assert_eq!(seq, 2);
    let done = db.store.task(&first.id).await.unwrap().unwrap();
    assert_eq!(
        (done.state.as_str(), done.outcome.as_deref()),
        ("done", Some("ok"))
    );
    assert_eq!(
        db.store.task(&next.id).await.unwrap().unwrap().node,
        "call2"
    );
    assert_eq!(db.store.session_attempts(&id).await.unwrap().len(), 1);
    let session = db.store.session(&id).await.unwrap().unwrap();
    assert_eq!((session.seq, session.status.as_str()), (2, "WAITING"));
    assert_eq!(session.state, json!({ "node": "call" }));

    // Finishing the finished task again at the current seq: refused, and
    // the session does not move.
    let again = [event("step-again", 3)];
    let twice = db
        .store
        .commit_step(step_commit(
            &id,
            2,
            &again,
            Some((&first.id, "ok")),
            &[],
            &[],
            true,
        ))
        .await;
    assert_eq!(code(twice), "TASK_ALREADY_FINISHED");
    assert_eq!(db.store.session(&id).await.unwrap().unwrap().seq, 2);
    assert_eq!(db.store.events(&id, 0, 100).await.unwrap().len(), 2);
}

/// Two workers (one through another connection pool, as another replica
/// would) finish the same task at the same moment: one advances the
/// session, the other hears that the task is finished or the session moved.
async fn racing_step_completions_advance_once(db: TestDb) {
    const RACERS: usize = 6;
    let version = db
        .store
        .ensure_flow_version("signup", "hash-1", &flow_definition("v1"))
        .await
        .unwrap();
    let other = db.reconnect().await;
    for round in 0..5 {
        let (id, first) = seed_with_task(&db.store, version.version, true).await;
        let barrier = Arc::new(Barrier::new(RACERS));
        let mut racers = Vec::new();
        for i in 0..RACERS {
            let store = if i % 2 == 0 {
                db.store.clone()
            } else {
                other.clone()
            };
            let (barrier, id, task_id) = (barrier.clone(), id.clone(), first.id.clone());
            racers.push(tokio::spawn(async move {
                let events = [event("step", i as i64)];
                let next = [task(&format!("{id}-next-{i}"), "call2")];
                let attempts = [attempt(&task_id, &id, 1)];
                barrier.wait().await;
                store
                    .commit_step(step_commit(
                        &id,
                        1,
                        &events,
                        Some((&task_id, "ok")),
                        &next,
                        &attempts,
                        i % 3 == 0,
                    ))
                    .await
                    .map_err(|e| e.code())
            }));
        }
        let mut won = 0;
        for r in racers {
            match r.await.unwrap() {
                Ok(seq) => {
                    assert_eq!(seq, 2);
                    won += 1;
                }
                Err(code) => assert!(
                    code == "TASK_ALREADY_FINISHED" || code == "STORE_CONFLICT",
                    "round {round}: {code}"
                ),
            }
        }
        assert_eq!(won, 1, "round {round}");
        let tasks = db.store.session_tasks(&id).await.unwrap();
        assert_eq!(
            tasks.len(),
            2,
            "one finished task and one next task: {tasks:?}"
        );
        assert_eq!(db.store.session_attempts(&id).await.unwrap().len(), 1);
        assert_eq!(db.store.events(&id, 0, 100).await.unwrap().len(), 2);
    }
}

/// Many sessions finish steps at once, so on PostgreSQL their commits are
/// written in batches: each commit still gets exactly its own outcome — a
/// valid one applies, a stale one conflicts, a finished task is refused,
/// and a session's two commits never both apply.
async fn concurrent_step_commits_keep_their_own_outcomes(db: TestDb) {
    const SESSIONS: usize = 30;
    let version = db
        .store
        .ensure_flow_version("signup", "hash-1", &flow_definition("v1"))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..SESSIONS {
        let (id, _) = seed_with_task(&db.store, version.version, true).await;
        ids.push(id);
    }
    let before = db.store.step_batch_members();
    let mut handles = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        // kind 0: valid; 1: stale seq; 2: a task that does not exist (as
        // good as finished). Every session also gets a valid one.
        for kind in [0, 1, 2 * usize::from(n % 3 == 0) + usize::from(n % 3 != 0)] {
            let (store, id) = (db.store.clone(), id.clone());
            handles.push(tokio::spawn(async move {
                let task_id = match kind {
                    2 => format!("{id}-missing"),
                    _ => format!("{id}-t1"),
                };
                let events = [event("step", kind as i64)];
                let next = [task(&format!("{id}-t2-{kind}"), "call2")];
                let attempts = [attempt(&task_id, &id, 1)];
                let expected = if kind == 1 { 99 } else { 1 };
                let r = store
                    .commit_step(step_commit(
                        &id,
                        expected,
                        &events,
                        Some((&task_id, "ok")),
                        if kind == 2 { &[] } else { &next },
                        if kind == 2 { &[] } else { &attempts },
                        false,
                    ))
                    .await
                    .map_err(|e| e.code());
                (id, kind, r)
            }));
        }
    }
    for h in handles {
        let (id, kind, r) = h.await.unwrap();
        match kind {
            0 => assert_eq!(r, Ok(2), "{id}"),
            // Which guard speaks first differs by backend and by which
            // commit ran first; neither may apply.
            _ => assert!(
                r.map_err(|c| c.as_str()) == Err("TASK_ALREADY_FINISHED")
                    || r.map_err(|c| c.as_str()) == Err("STORE_CONFLICT"),
                "{id}: {r:?}"
            ),
        }
    }
    db.store.flush().await.unwrap();
    for id in &ids {
        let session = db.store.session(id).await.unwrap().unwrap();
        assert_eq!(session.seq, 2, "{id}");
        let events = db.store.events(id, 0, 100).await.unwrap();
        assert_eq!(events.len(), 2, "{id}: {events:?}");
        assert_eq!(events[1].payload, json!({ "n": 0 }));
        let tasks = db.store.session_tasks(id).await.unwrap();
        let nodes: Vec<_> = tasks
            .iter()
            .map(|t| (t.node.as_str(), t.state.as_str()))
            .collect();
        assert_eq!(nodes.len(), 2, "{id}: {nodes:?}");
        assert!(nodes.contains(&("call", "done")) && nodes.contains(&("call2", "running")));
        assert_eq!(db.store.session_attempts(id).await.unwrap().len(), 1);
    }
    if db.store.backend() == baton::store::Backend::Postgres {
        assert!(
            db.store.step_batch_members() > before,
            "no commit went through a batch statement"
        );
    }
}

/// The funnel feed read with the SQLite writer's handoff is the feed read
/// from the store: the same events with the same fields, page by page,
/// also where a page ends inside a commit. Events the handoff never saw
/// (written before it opened, or by another process) are read from the
/// store in their place. PostgreSQL has no handoff.
async fn the_funnel_handoff_reads_what_the_store_holds(db: TestDb) {
    let store = &db.store;
    let before = seed(store).await;
    let Some(mut handoff) = store.funnel_handoff(1000) else {
        assert_eq!(store.backend(), Backend::Postgres);
        return;
    };
    assert!(store.funnel_handoff(1000).is_none(), "one aggregator end");
    let mut ids = vec![before.id.clone()];
    for _ in 0..5 {
        ids.push(seed(store).await.id);
    }
    // Concurrent, so that some commits share a batch statement.
    let commits = ids.iter().map(|id| {
        let (store, id) = (store.clone(), id.clone());
        tokio::spawn(async move {
            let two = [
                NewEvent::new("submitted", json!({ "action": "go", "extra": [1, "x"] })),
                NewEvent::new("entered", json!({ "node": "b", "node_kind": "screen" })),
            ];
            store
                .commit(&id, 2, "ACTIVE", &json!({}), &two, None)
                .await
                .unwrap();
            let back = [NewEvent::new("went_back", json!({ "to": "welcome" }))];
            store
                .commit(&id, 4, "ACTIVE", &json!({}), &back, None)
                .await
                .unwrap();
        })
    });
    for c in commits.collect::<Vec<_>>() {
        c.await.unwrap();
    }
    // A step's commit (written directly, not by the group writer).
    let finished = [
        NewEvent::new("step_completed", json!({ "node": "call", "outcome": "ok" })),
        NewEvent::new("entered", json!({ "node": "c", "node_kind": "screen" })),
    ];
    store
        .commit_step(step_commit(&ids[3], 5, &finished, None, &[], &[], true))
        .await
        .unwrap();
    // Another process's commit.
    let other = Store::connect(&db.url, StoreOptions::default())
        .await
        .unwrap();
    other
        .commit(
            &ids[2],
            5,
            "COMPLETED",
            &json!({}),
            &[event("ended", 6)],
            None,
        )
        .await
        .unwrap();
    other.close().await;

    let mut pages = [Vec::new(), Vec::new()];
    let mut handed = 0;
    for (i, pages) in pages.iter_mut().enumerate() {
        let mut after: Option<String> = None;
        loop {
            let h = (i == 0).then_some(&mut handoff);
            // Pages of 4 end inside commits of 2 and 3 events.
            let page = store.funnel_feed(after.as_deref(), 4, h).await.unwrap();
            let Some(end) = page.end.clone() else { break };
            if i == 0 {
                handed += page.handed;
            }
            pages.push((end.clone(), page.parse().unwrap()));
            after = Some(end);
        }
    }
    let [with, without] = pages;
    assert_eq!(with, without);
    let events: usize = with.iter().map(|(_, e)| e.len()).sum();
    assert_eq!(events, 6 * 2 + 6 * 3 + 2 + 1);
    // All but the first session's start and the other process's commit.
    assert_eq!(handed, events - 2 - 1);
}

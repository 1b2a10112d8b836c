//! Group commit: `Store::commit` calls that queue behind a busy writer are
//! written together, and each keeps exactly the outcome it would have had
//! alone. To get several commits into one batch deterministically, a test
//! holds every connection the writer could use, starts the commits, waits
//! until all but the one the writer is holding are queued, and lets go.

use std::time::{Duration, Instant};

use baton::store::tasks::{AttemptOutcome, AttemptRecord, NewTask, StepCommit, TaskState};
use baton::store::{
    GROUP_COMMIT_MAX_BATCH, MAX_HELD_BATCHES, NewEvent, NewIdempotency, NewSession, RawPools,
    Store, StoreError,
};
use serde_json::{Value, json};
use sqlx::pool::PoolConnection;
use sqlx::{Postgres, Sqlite};
use uuid::Uuid;

use crate::common::TestDb;
use crate::store::raw;

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::common::TestDb::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = crate::common::TestDb::postgres().await else { return };
                    super::$name(db).await;
                }
            )*
        }
    };
}

on_both_backends!(
    one_batch_keeps_every_commit_isolated,
    a_batch_that_fails_as_a_whole_writes_each_commit_alone,
    more_commits_than_one_batch_holds_are_all_written,
    commits_on_a_closed_store_are_unavailable,
    a_queue_longer_than_one_connection_hold_is_answered_in_full,
);

/// A commit to run inside a batch.
#[derive(Clone)]
struct Job {
    session: String,
    expected: i64,
    kind: &'static str,
    key: Option<&'static str>,
}

impl Job {
    fn new(session: &str, expected: i64) -> Job {
        Job {
            session: session.to_owned(),
            expected,
            kind: "submitted",
            key: Some("k"),
        }
    }

    fn state(&self) -> Value {
        json!({ "by": self.session, "after": self.expected })
    }

    async fn run(self, store: Store) -> Result<i64, StoreError> {
        let idem = self.key.map(|key| NewIdempotency {
            key: key.to_owned(),
            request_hash: format!("hash-{}", self.expected),
            response: raw(json!({ "answer": self.session })),
        });
        store
            .commit(
                &self.session,
                self.expected,
                "ACTIVE",
                &self.state(),
                &[
                    NewEvent::new(self.kind, json!({ "n": self.expected })),
                    NewEvent::new("entered", json!({ "node": "next" })),
                ],
                idem.as_ref(),
            )
            .await
    }
}

/// A session on a published flow version, at seq 2.
async fn session(store: &Store) -> String {
    let version = store
        .ensure_flow_version(
            "signup",
            "hash-1",
            &json!({ "id": "signup", "start": "a", "nodes": [] }),
        )
        .await
        .unwrap();
    let id = Uuid::now_v7().to_string();
    store
        .create_session(
            &NewSession {
                id: id.clone(),
                flow_id: "signup".to_owned(),
                flow_version: version.version,
                user_id: "user-1".to_owned(),
                token_hash: "token-hash".to_owned(),
                status: "ACTIVE".to_owned(),
                state: json!({ "node": "a" }),
            },
            &[
                NewEvent::new("started", json!({})),
                NewEvent::new("entered", json!({})),
            ],
        )
        .await
        .unwrap();
    id
}

/// Every connection the store's writer could take.
enum Held {
    Sqlite(#[allow(dead_code)] PoolConnection<Sqlite>),
    Postgres(#[allow(dead_code)] Vec<PoolConnection<Postgres>>),
}

async fn hold_writer(store: &Store) -> Held {
    match store.raw_pools() {
        RawPools::Sqlite { write, .. } => Held::Sqlite(write.acquire().await.unwrap()),
        RawPools::Postgres(pool) => {
            let mut held = Vec::new();
            for _ in 0..pool.options().get_max_connections() {
                held.push(pool.acquire().await.unwrap());
            }
            Held::Postgres(held)
        }
    }
}

/// Waits until at least `n` commits wait in the writer's queue.
async fn wait_until_queued(store: &Store, n: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while store.group_commit_stats().queued < n {
        assert!(
            Instant::now() < deadline,
            "commits did not queue: {:?}",
            store.group_commit_stats()
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Runs `jobs` so that they are written as one batch (at most the writer's
/// batch size of them) and returns their results in order.
async fn in_one_batch(store: &Store, jobs: Vec<Job>) -> Vec<Result<i64, StoreError>> {
    let n = jobs.len();
    let held = hold_writer(store).await;
    let tasks: Vec<_> = jobs
        .into_iter()
        .map(|job| tokio::spawn(job.run(store.clone())))
        .collect();
    // The writer takes the first commit, then waits for a connection; the
    // rest queue behind it and join its batch once it has one.
    wait_until_queued(store, n - 1, Duration::from_secs(4)).await;
    drop(held);
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

fn code(result: &Result<i64, StoreError>) -> &'static str {
    match result {
        Ok(seq) => panic!("expected an error, got Ok({seq})"),
        Err(e) => e.code().as_str(),
    }
}

async fn one_batch_keeps_every_commit_isolated(db: TestDb) {
    let store = &db.store;
    let mut good = Vec::new();
    for _ in 0..6 {
        good.push(session(store).await);
    }
    let stale = session(store).await;
    let taken = session(store).await;
    let twice = session(store).await;
    // `taken` already used key "k" (each job appends two events).
    assert_eq!(Job::new(&taken, 2).run(store.clone()).await.unwrap(), 4);
    let missing = Uuid::now_v7().to_string();

    let before = |id: &str| {
        let id = id.to_owned();
        async move {
            (
                store.session(&id).await.unwrap().unwrap(),
                store.events(&id, 0, 100).await.unwrap(),
                store.idempotent_response(&id, "k").await.unwrap(),
            )
        }
    };
    let stale_before = before(&stale).await;
    let taken_before = before(&taken).await;

    let mut jobs: Vec<Job> = good.iter().map(|id| Job::new(id, 2)).collect();
    jobs.push(Job::new(&stale, 1));
    jobs.push(Job::new(&taken, 4));
    jobs.push(Job::new(&missing, 2));
    jobs.push(Job {
        key: None,
        ..Job::new(&twice, 2)
    });
    jobs.push(Job {
        key: None,
        kind: "second",
        ..Job::new(&twice, 2)
    });
    let stats_before = store.group_commit_stats();
    let results = in_one_batch(store, jobs).await;
    let stats = store.group_commit_stats();
    assert_eq!(stats.batches, stats_before.batches + 1, "{stats:?}");

    // The good ones were all applied, exactly once.
    for (id, result) in good.iter().zip(&results) {
        assert_eq!(result.as_ref().unwrap(), &4, "{id}");
        let s = store.session(id).await.unwrap().unwrap();
        assert_eq!((s.seq, &s.state), (4, &Job::new(id, 2).state()));
        let events = store.events(id, 0, 100).await.unwrap();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["started", "entered", "submitted", "entered"]);
        assert_eq!(events[2].payload, json!({ "n": 2 }));
        let idem = store.idempotent_response(id, "k").await.unwrap().unwrap();
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(idem.response.get()).unwrap(),
            json!({ "answer": id })
        );
    }
    // The rejected ones say why and wrote nothing.
    let [stale_r, taken_r, missing_r, first_r, second_r] = &results[good.len()..] else {
        panic!("{results:?}");
    };
    match stale_r {
        Err(StoreError::Conflict {
            expected, actual, ..
        }) => assert_eq!((*expected, *actual), (1, 2)),
        other => panic!("stale commit: {other:?}"),
    }
    assert_eq!(code(taken_r), "IDEMPOTENCY_KEY_TAKEN");
    assert_eq!(code(missing_r), "SESSION_NOT_FOUND");
    assert_eq!(before(&stale).await, stale_before);
    assert_eq!(before(&taken).await, taken_before);
    assert_eq!(store.session(&missing).await.unwrap(), None);
    assert!(store.events(&missing, 0, 100).await.unwrap().is_empty());

    // Two commits on one session from the same seq: exactly one wins.
    let (winner, loser) = match (first_r, second_r) {
        (Ok(4), Err(e)) => ("submitted", e),
        (Err(e), Ok(4)) => ("second", e),
        other => panic!("expected exactly one winner: {other:?}"),
    };
    assert_eq!(loser.code(), "STORE_CONFLICT");
    let events = store.events(&twice, 0, 100).await.unwrap();
    assert_eq!(events.len(), 4, "{events:?}");
    assert_eq!(events[2].kind, winner);
    assert_eq!(store.session(&twice).await.unwrap().unwrap().seq, 4);
}

/// Makes every commit with an event of kind `poison` fail when its
/// transaction commits (a deferred constraint): a failure no single
/// statement of the batch reports.
async fn poison_commits(store: &Store) {
    match store.raw_pools() {
        RawPools::Sqlite { write, .. } => {
            for sql in [
                "CREATE TABLE poison_target (id INTEGER PRIMARY KEY)",
                "CREATE TABLE poison (target INTEGER \
                 REFERENCES poison_target (id) DEFERRABLE INITIALLY DEFERRED)",
                "CREATE TRIGGER poison AFTER INSERT ON session_events \
                 WHEN NEW.kind = 'poison' BEGIN INSERT INTO poison (target) VALUES (1); END",
            ] {
                sqlx::query(sql).execute(write).await.unwrap();
            }
        }
        RawPools::Postgres(pool) => {
            for sql in [
                "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS \
                 $$ BEGIN RAISE EXCEPTION 'poisoned'; END $$",
                "CREATE CONSTRAINT TRIGGER poison AFTER INSERT ON session_events \
                 DEFERRABLE INITIALLY DEFERRED FOR EACH ROW \
                 WHEN (NEW.kind = 'poison') EXECUTE FUNCTION poison()",
            ] {
                sqlx::query(sql).execute(pool).await.unwrap();
            }
        }
    }
}

async fn a_batch_that_fails_as_a_whole_writes_each_commit_alone(db: TestDb) {
    let store = &db.store;
    poison_commits(store).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(session(store).await);
    }
    let mut jobs: Vec<Job> = ids.iter().map(|id| Job::new(id, 2)).collect();
    jobs[2].kind = "poison";
    let stats_before = store.group_commit_stats();
    let results = in_one_batch(store, jobs).await;
    let stats = store.group_commit_stats();
    assert_eq!(stats.batches, stats_before.batches + 1, "{stats:?}");
    assert_eq!(
        stats.failed_batches,
        stats_before.failed_batches + 1,
        "{stats:?}"
    );

    for (i, (id, result)) in ids.iter().zip(&results).enumerate() {
        let events = store.events(id, 0, 100).await.unwrap();
        let seq = store.session(id).await.unwrap().unwrap().seq;
        if i == 2 {
            // Failed, and nothing of it was written.
            assert_eq!(code(result), "STORE_INTERNAL");
            assert_eq!((seq, events.len()), (2, 2));
            assert!(store.idempotent_response(id, "k").await.unwrap().is_none());
        } else {
            // Written once, although the batch it was in failed.
            assert_eq!(result.as_ref().unwrap(), &4, "{id}");
            assert_eq!((seq, events.len()), (4, 4));
        }
    }
}

async fn more_commits_than_one_batch_holds_are_all_written(db: TestDb) {
    let store = &db.store;
    let mut ids = Vec::new();
    for _ in 0..100 {
        ids.push(session(store).await);
    }
    let stats_before = store.group_commit_stats();
    let held = hold_writer(store).await;
    let tasks: Vec<_> = ids
        .iter()
        .map(|id| tokio::spawn(Job::new(id, 2).run(store.clone())))
        .collect();
    wait_until_queued(store, ids.len() - 1, Duration::from_secs(4)).await;
    drop(held);
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), 4);
    }
    // 100 queued commits do not fit one batch.
    let stats = store.group_commit_stats();
    assert!(stats.batches >= stats_before.batches + 2, "{stats:?}");
    assert_eq!(stats.failed_batches, stats_before.failed_batches);
    for id in &ids {
        assert_eq!(store.events(id, 0, 100).await.unwrap().len(), 4);
    }
}

async fn commits_on_a_closed_store_are_unavailable(db: TestDb) {
    let id = session(&db.store).await;
    let clone = db.store.clone();
    db.store.close().await;
    let result = Job::new(&id, 2).run(clone).await;
    assert_eq!(code(&result), "STORE_UNAVAILABLE");
}

/// The writer keeps its connection for up to `MAX_HELD_BATCHES` batches in
/// a row while commits keep queuing, then gives it back and takes it again.
/// A queue longer than that is answered in full across the hand-over: each
/// commit is applied or refused, none is dropped (a dropped one would come
/// back as STORE_UNAVAILABLE), and the store's other writes still go through.
async fn a_queue_longer_than_one_connection_hold_is_answered_in_full(db: TestDb) {
    let store = &db.store;
    let held_capacity = GROUP_COMMIT_MAX_BATCH * MAX_HELD_BATCHES;
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(session(store).await);
    }
    let per_session = held_capacity / ids.len() + 20;
    let held = hold_writer(store).await;
    let tasks: Vec<_> = ids
        .iter()
        .flat_map(|id| std::iter::repeat_n(id, per_session))
        .map(|id| tokio::spawn(Job::new(id, 2).run(store.clone())))
        .collect();
    assert!(tasks.len() > held_capacity);
    wait_until_queued(store, tasks.len() - 1, Duration::from_secs(10)).await;
    drop(held);
    // Meanwhile another write (a new session) waits its turn for the pool.
    let other = tokio::spawn({
        let store = store.clone();
        async move { session(&store).await }
    });
    let mut applied = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(seq) => {
                assert_eq!(seq, 4);
                applied += 1;
            }
            Err(e) => assert_eq!(e.code(), "STORE_CONFLICT", "{e:?}"),
        }
    }
    // Exactly one commit per session expected seq 2 first.
    assert_eq!(applied, ids.len());
    for id in &ids {
        assert_eq!(store.events(id, 0, 100).await.unwrap().len(), 4);
    }
    let other = other.await.unwrap();
    assert_eq!(store.events(&other, 0, 100).await.unwrap().len(), 2);
}

/// A task of `session` (`<session>-<n>`), running, for a step commit to
/// finish or create.
fn step_task(session: &str, n: u32) -> NewTask {
    NewTask {
        id: format!("{session}-{n}"),
        node: format!("call{n}"),
        kind: "http".to_owned(),
        state: TaskState::Running,
        due_at: Some(i64::MAX / 2),
        lease_owner: Some("worker-a".to_owned()),
        attempts: 1,
        queue: None,
        event_name: None,
        correlation: None,
        mock: Some("default".to_owned()),
        input: json!({ "n": n, "text": "quotes \" and \\ and ünïcode" }),
    }
}

/// A session at seq 1 waiting on its running task `<id>-1`.
async fn session_with_task(store: &Store) -> String {
    let version = store
        .ensure_flow_version(
            "signup",
            "hash-1",
            &json!({ "id": "signup", "start": "a", "nodes": [] }),
        )
        .await
        .unwrap();
    let id = Uuid::now_v7().to_string();
    store
        .create_session_with_tasks(
            &NewSession {
                id: id.clone(),
                flow_id: "signup".to_owned(),
                flow_version: version.version,
                user_id: "user-1".to_owned(),
                token_hash: "token-hash".to_owned(),
                status: "WAITING".to_owned(),
                state: json!({ "node": "call1" }),
            },
            &[NewEvent::new("started", json!({}))],
            &[step_task(&id, 1)],
            true,
        )
        .await
        .unwrap();
    id
}

/// The step commit that finishes `<session>-1` from `expected`, records
/// its attempt and creates `<session>-2`.
async fn finish_first_task(
    store: Store,
    session: String,
    expected: i64,
) -> Result<i64, StoreError> {
    let finished = format!("{session}-1");
    let attempt = AttemptRecord {
        task_id: finished.clone(),
        attempt: 1,
        session_id: session.clone(),
        node: "call1".to_owned(),
        worker: "worker-a".to_owned(),
        started_at: 1,
        finished_at: 2,
        outcome: AttemptOutcome::Ok,
        status_code: Some(200),
        error: None,
    };
    store
        .commit_step(StepCommit {
            session_id: &session,
            expected_seq: expected,
            status: "WAITING",
            state: r#"{"node":"call2"}"#,
            events: &[NewEvent::new("step", json!({ "from": expected }))],
            idempotency: None,
            finish: Some((&finished, "ok")),
            new_tasks: &[step_task(&session, 2)],
            attempts: &[attempt],
            notify: None,
            durable: true,
        })
        .await
}

/// On SQLite step commits go through the same writer as submits: one batch
/// holding both keeps each commit's outcome its own, a step commit whose
/// task is finished already or whose seq is stale included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_one_batch_of_submits_and_step_commits_keeps_each_isolated() {
    let db = TestDb::sqlite().await;
    let store = &db.store;
    let plain = [session(store).await, session(store).await];
    let stepping = [
        session_with_task(store).await,
        session_with_task(store).await,
    ];
    let finished = session_with_task(store).await;
    assert_eq!(
        finish_first_task(store.clone(), finished.clone(), 1)
            .await
            .unwrap(),
        2
    );
    let stale = session_with_task(store).await;

    let held = hold_writer(store).await;
    let mut runs: Vec<tokio::task::JoinHandle<Result<i64, StoreError>>> = Vec::new();
    for id in &plain {
        runs.push(tokio::spawn(Job::new(id, 2).run(store.clone())));
    }
    for id in &stepping {
        runs.push(tokio::spawn(finish_first_task(
            store.clone(),
            id.clone(),
            1,
        )));
    }
    runs.push(tokio::spawn(finish_first_task(
        store.clone(),
        finished.clone(),
        2,
    )));
    runs.push(tokio::spawn(finish_first_task(
        store.clone(),
        stale.clone(),
        0,
    )));
    let stats_before = store.group_commit_stats();
    wait_until_queued(store, runs.len() - 1, Duration::from_secs(4)).await;
    drop(held);
    let mut results = Vec::new();
    for run in runs {
        results.push(run.await.unwrap());
    }
    let stats = store.group_commit_stats();
    assert_eq!(stats.batches, stats_before.batches + 1, "{stats:?}");

    assert_eq!(results[0].as_ref().unwrap(), &4);
    assert_eq!(results[1].as_ref().unwrap(), &4);
    for (id, result) in stepping.iter().zip(&results[2..4]) {
        assert_eq!(result.as_ref().unwrap(), &2, "{id}");
        let first = store.task(&format!("{id}-1")).await.unwrap().unwrap();
        assert_eq!(
            (first.state, first.outcome.as_deref()),
            (TaskState::Done, Some("ok"))
        );
        let next = store.task(&format!("{id}-2")).await.unwrap().unwrap();
        assert_eq!((next.node.as_str(), next.attempts), ("call2", 1));
        assert_eq!(next.mock.as_deref(), Some("default"));
        assert_eq!(next.input, step_task(id, 2).input);
        let attempts = store.session_attempts(id).await.unwrap();
        assert_eq!(attempts.len(), 1, "{attempts:?}");
        assert_eq!(attempts[0].status_code, Some(200));
        let events = store.events(id, 0, 100).await.unwrap();
        assert_eq!(events[1].payload, json!({ "from": 1 }));
    }
    assert_eq!(code(&results[4]), "TASK_ALREADY_FINISHED");
    assert_eq!(store.session(&finished).await.unwrap().unwrap().seq, 2);
    assert_eq!(code(&results[5]), "STORE_CONFLICT");
    let untouched = store.session(&stale).await.unwrap().unwrap();
    assert_eq!(untouched.seq, 1);
    assert_eq!(
        store
            .task(&format!("{stale}-1"))
            .await
            .unwrap()
            .unwrap()
            .state,
        TaskState::Running
    );
    assert!(store.task(&format!("{stale}-2")).await.unwrap().is_none());
    assert!(store.session_attempts(&stale).await.unwrap().is_empty());
}

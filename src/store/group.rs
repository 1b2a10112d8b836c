//! Group commit: the writer tasks that own the write path of
//! [`Store::commit`](super::Store::commit) (one on SQLite, which has one
//! writing connection; [`PG_WRITERS`] on PostgreSQL), and on SQLite of
//! [`Store::commit_step`](super::Store::commit_step) too, so steps and
//! submits that commit together share a transaction.
//!
//! Commits that arrive while the writers are busy queue up; once a writer has a
//! connection it takes everything queued (at most [`MAX_BATCH`]) and writes
//! it with ONE statement, so one round trip, one transaction and one WAL
//! write (on PostgreSQL one WAL flush) serve many sessions. There is no
//! timer: a lone commit is written at once, with the single-commit
//! statement. While more commits are queued, the writer keeps its
//! connection for the next batch (at most [`MAX_HELD_BATCHES`] in a row).
//!
//! Each member keeps the semantics of a commit on its own. A member the
//! batch statement did not apply — a stale seq, a taken key, a later commit
//! of a session already in the batch — is written alone afterwards with the
//! single-commit statement, which decides it again and says exactly why it
//! fails. If the batch statement fails as a whole, nothing of it was
//! written (a statement is atomic) and every member is written alone, so
//! one member's failure never fails the others. A member hears "applied"
//! only once the statement that applied it has committed.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use sqlx::pool::PoolConnection;
use sqlx::query::Query;
use sqlx::sqlite::SqliteArguments;
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::error::{constraint, is_unavailable, is_unique_violation};
use super::handoff::{self, Handed, HandedEvents};
use super::{pg_commit_sql, raise_message};

/// Most commits written together: bounds a transaction's size and the wait
/// of the last member.
pub const MAX_BATCH: usize = 64;

/// Writers on PostgreSQL (each uses one pooled connection while it writes).
/// Several writers overlap one batch's WAL flush with the next batch, but
/// `cargo bench --bench load` measured no difference between one and three
/// (76–77% of the baseline either way), nor, in a later session, between
/// one, four and twelve, so one keeps batches largest.
const PG_WRITERS: usize = 1;

/// One commit, serialized by the caller (so JSON encoding runs on the
/// callers' threads, not in the single writer).
pub(super) struct Commit {
    pub session_id: String,
    pub expected_seq: i64,
    pub new_seq: i64,
    pub status: String,
    /// JSON text.
    pub state: String,
    pub events: Events,
    pub idempotency: Option<Idempotency>,
    /// What a step commit adds (SQLite; PostgreSQL's step commits have
    /// writers of their own, in `step_batch.rs`).
    pub step: Option<StepPart>,
}

/// The part of a step commit beyond a plain commit: the task it finishes
/// and the tasks and attempts it records, in the forms the
/// `session_step_commits` trigger takes.
pub(super) struct StepPart {
    /// (task id, outcome).
    pub finish: Option<(String, String)>,
    /// JSON array, see the migration.
    pub tasks: String,
    /// JSON array, see the migration.
    pub attempts: String,
}

/// The events in the form each backend's statement takes.
pub(super) enum Events {
    /// For the SQLite commit trigger: `[[kind, payload JSON text], …]`.
    SqliteJson(String),
    /// For PostgreSQL: (kind, payload JSON text) per event, in seq order.
    Rows(Vec<(String, String)>),
}

pub(super) struct Idempotency {
    pub key: String,
    pub request_hash: String,
    /// JSON text.
    pub response: String,
}

/// Why a commit was not applied. Nothing of it was written.
pub(super) enum Rejected {
    /// The session is not at the expected seq, or does not exist.
    StaleSeq,
    KeyTaken,
    /// The task a step commit finishes is finished already.
    TaskFinished,
    /// The log already has an event with one of the new seqs.
    LogOutOfStep,
    Db(sqlx::Error),
}

type Reply = oneshot::Sender<Result<(), Rejected>>;
type Pending = (Commit, Reply);

/// Where the writer writes.
pub(super) enum Target {
    /// The single-connection write pool, and where applied commits are
    /// handed to the funnel aggregator.
    Sqlite(SqlitePool, handoff::Sender),
    Postgres(PgPool),
}

/// The queue to the writer task. The task ends when the last `Writer`
/// (the last clone of its `Store`) is dropped.
#[derive(Debug, Clone)]
pub(super) struct Writer {
    queue: mpsc::UnboundedSender<Pending>,
    counters: Arc<Counters>,
}

/// For tests and diagnostics; updated with relaxed atomics.
#[derive(Debug, Default)]
struct Counters {
    /// Commits in the queue, not yet taken by the writer.
    queued: AtomicUsize,
    /// Commits handed to the writer, ever.
    received: AtomicU64,
    /// Batch statements run (a batch of one is written alone, not counted).
    batches: AtomicU64,
    /// Batch statements that failed as a whole.
    failed_batches: AtomicU64,
}

/// See [`Store::group_commit_stats`](super::Store::group_commit_stats).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCommitStats {
    /// Commits waiting for the writer.
    pub queued: usize,
    /// Commits handed to the writer since it started, written or refused
    /// (a test's proof that a request attempted no write).
    pub received: u64,
    /// Statements that wrote several commits at once.
    pub batches: u64,
    /// Of those, how many failed as a whole (their members were then
    /// written one by one).
    pub failed_batches: u64,
}

impl Writer {
    /// Spawns the writer on the current Tokio runtime.
    pub fn spawn(target: Target) -> Writer {
        let (queue, rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        // SQLite has one writing connection; on PostgreSQL a writer spends
        // most of a batch waiting for its WAL flush, so several writers
        // overlap: while one batch waits, the next one is taken and sent.
        let writers = match target {
            Target::Sqlite(..) => 1,
            Target::Postgres(_) => PG_WRITERS,
        };
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let target = Arc::new(target);
        for _ in 0..writers {
            tokio::spawn(run(target.clone(), rx.clone(), counters.clone()));
        }
        Writer { queue, counters }
    }

    pub async fn commit(&self, commit: Commit) -> Result<(), Rejected> {
        let (reply, answer) = oneshot::channel();
        self.counters.queued.fetch_add(1, Ordering::Relaxed);
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        // Either fails only if the writer task is gone (its runtime shut down).
        self.queue
            .send((commit, reply))
            .map_err(|_| Rejected::Db(sqlx::Error::WorkerCrashed))?;
        answer
            .await
            .unwrap_or(Err(Rejected::Db(sqlx::Error::WorkerCrashed)))
    }

    pub fn stats(&self) -> GroupCommitStats {
        let c = &self.counters;
        GroupCommitStats {
            queued: c.queued.load(Ordering::Relaxed),
            received: c.received.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            failed_batches: c.failed_batches.load(Ordering::Relaxed),
        }
    }
}

async fn run(
    target: Arc<Target>,
    rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Pending>>>,
    counters: Arc<Counters>,
) {
    loop {
        // The queue is held from the first commit until the batch is
        // taken, so concurrent writers take disjoint batches in order.
        let mut queue = rx.lock().await;
        let Some(first) = queue.recv().await else {
            return;
        };
        counters.queued.fetch_sub(1, Ordering::Relaxed);
        match &*target {
            Target::Sqlite(pool, handoff) => {
                serve(pool, handoff, first, queue, &rx, &counters).await
            }
            Target::Postgres(pool) => {
                serve(
                    pool,
                    &handoff::Sender::default(),
                    first,
                    queue,
                    &rx,
                    &counters,
                )
                .await
            }
        }
    }
}

/// A backend's batch writer. It answers every member of the batch, and
/// returns whether the connection is fit for the next batch.
trait WriteBatch: sqlx::Database {
    fn write_batch(
        conn: &mut PoolConnection<Self>,
        batch: Vec<Pending>,
        counters: &Counters,
        handoff: &handoff::Sender,
    ) -> impl Future<Output = bool> + Send;
}

impl WriteBatch for Sqlite {
    fn write_batch(
        conn: &mut PoolConnection<Self>,
        batch: Vec<Pending>,
        counters: &Counters,
        handoff: &handoff::Sender,
    ) -> impl Future<Output = bool> + Send {
        write_sqlite(conn, batch, counters, handoff)
    }
}

/// No handoff on PostgreSQL: its feed is read in transaction order, which
/// the writer does not know, and reading it there costs little.
impl WriteBatch for Postgres {
    fn write_batch(
        conn: &mut PoolConnection<Self>,
        batch: Vec<Pending>,
        counters: &Counters,
        _: &handoff::Sender,
    ) -> impl Future<Output = bool> + Send {
        write_postgres(conn, batch, counters)
    }
}

/// Batches written in a row on one connection before it goes back to the
/// pool, so the store's other writes (which share the pool) get their turn.
pub const MAX_HELD_BATCHES: usize = 16;

/// Writes `first` and what queued up with it, then, while more is queued,
/// the next batches on the same connection. Giving a connection back to
/// sqlx's pool spawns a task, and the next acquire waits until the runtime
/// has run it: a scheduling delay, behind every request task in the run
/// queue, on the one path all commits go through. Measured with
/// `cargo bench --bench load` on SQLite: the one write connection sat idle
/// about half the time while commits waited for it.
async fn serve<DB: WriteBatch>(
    pool: &sqlx::Pool<DB>,
    handoff: &handoff::Sender,
    first: Pending,
    mut queue: tokio::sync::MutexGuard<'_, mpsc::UnboundedReceiver<Pending>>,
    rx: &tokio::sync::Mutex<mpsc::UnboundedReceiver<Pending>>,
    counters: &Counters,
) {
    let take = |first, queue: &mut mpsc::UnboundedReceiver<Pending>| {
        let batch = take_batch(first, queue);
        counters
            .queued
            .fetch_sub(batch.len() - 1, Ordering::Relaxed);
        crate::telemetry::COMMIT_BATCH.observe(&[], batch.len() as f64);
        batch
    };
    // Take the rest of the batch only once there is a connection, so
    // commits that arrived meanwhile join it.
    let mut conn = match pool.acquire().await {
        Ok(conn) => conn,
        Err(e) => return fail_all(take(first, &mut queue), &e),
    };
    let mut batch = take(first, &mut queue);
    drop(queue);
    for written in 1.. {
        // A connection that failed goes back, and the pool checks it
        // before anyone gets it again.
        let fit = DB::write_batch(&mut conn, batch, counters, handoff).await;
        if !fit || written == MAX_HELD_BATCHES {
            return;
        }
        let Ok(mut queue) = rx.try_lock() else { return };
        let Ok(first) = queue.try_recv() else { return };
        counters.queued.fetch_sub(1, Ordering::Relaxed);
        batch = take(first, &mut queue);
    }
}

impl Counters {
    fn count_batch(&self, ok: bool) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.failed_batches.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn fail_all(members: impl IntoIterator<Item = Pending>, e: &sqlx::Error) {
    for (_, reply) in members {
        let _ = reply.send(Err(Rejected::Db(replicate(e))));
    }
}

/// An error of the same class (unavailable or internal) for each member of a
/// batch that failed as a whole; `sqlx::Error` is not `Clone`.
fn replicate(e: &sqlx::Error) -> sqlx::Error {
    if is_unavailable(e) {
        sqlx::Error::Io(std::io::Error::other(e.to_string()))
    } else {
        sqlx::Error::Protocol(e.to_string())
    }
}

/// `first` and whatever else is queued, at most [`MAX_BATCH`] in all, in
/// queue order. Also used by the step-commit writers (`step_batch.rs`).
pub(super) fn take_batch<T>(first: T, rx: &mut mpsc::UnboundedReceiver<T>) -> Vec<T> {
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(p) => batch.push(p),
            Err(_) => break,
        }
    }
    batch
}

/// Which members go into the batch statement: the first commit of each
/// session. A later one expects the seq the earlier one sets, which one
/// statement cannot express; it is written alone afterwards, in order.
/// Returns those members and, per queued commit, whether it is one of them.
/// Also used by the step-commit writers (`step_batch.rs`).
pub(super) fn first_of_each_session<T, R>(
    batch: &[(T, R)],
    session: impl Fn(&T) -> &str,
) -> (Vec<&T>, Vec<bool>) {
    let mut seen = HashSet::new();
    let firsts: Vec<bool> = batch.iter().map(|(c, _)| seen.insert(session(c))).collect();
    let members = batch
        .iter()
        .zip(&firsts)
        .filter_map(|((c, _), &first)| first.then_some(c))
        .collect();
    (members, firsts)
}

async fn write_sqlite(
    conn: &mut PoolConnection<Sqlite>,
    batch: Vec<Pending>,
    counters: &Counters,
    handoff: &handoff::Sender,
) -> bool {
    let now = super::now_ms();
    let (members, mut in_batch) = first_of_each_session(&batch, |c| &c.session_id);
    // All or nothing: a RAISE in the commit trigger for any row undoes the
    // whole statement.
    let written = members.len() >= 2 && {
        let result = sqlite_commit_batch(conn, &members, now).await;
        counters.count_batch(result.is_ok());
        result.is_ok()
    };
    if !written {
        in_batch.fill(false);
    }
    let mut fit = true;
    for ((commit, reply), applied) in batch.into_iter().zip(in_batch) {
        let result = if applied {
            Ok(())
        } else {
            sqlite_commit_one(conn, &commit, now).await
        };
        fit &= connection_fit(&result);
        // Before the reply: the aggregator may already see the commit in
        // the feed, and reads it from the store while it is not handed.
        if result.is_ok()
            && handoff.wanted()
            && let Events::SqliteJson(events) = commit.events
        {
            handoff.hand(Handed {
                first_seq: commit.expected_seq + 1,
                count: commit.new_seq - commit.expected_seq,
                at: now,
                events: HandedEvents::Json(events),
                session_id: commit.session_id,
            });
        }
        let _ = reply.send(result);
    }
    fit
}

/// False after an error that may have left the connection unusable.
fn connection_fit(result: &Result<(), Rejected>) -> bool {
    !matches!(result, Err(Rejected::Db(e)) if is_unavailable(e))
}

/// The SQLite batch statement: one multi-row INSERT into the
/// `session_commits` view, or into `session_step_commits` when a member is
/// a step commit (a plain commit is a step commit that finishes nothing);
/// the view's trigger runs once per row, in order.
async fn sqlite_commit_batch(
    conn: &mut PoolConnection<Sqlite>,
    members: &[&Commit],
    now: i64,
) -> Result<(), sqlx::Error> {
    let steps = members.iter().any(|c| c.step.is_some());
    let sql = sqlite_commit_batch_sql(members.len(), steps);
    let mut q = sqlx::query(&sql);
    for c in members {
        q = bind_sqlite_commit(q, c, now, steps);
    }
    q.execute(&mut **conn).await.map(|_| ())
}

/// Binds `c`'s row of a SQLite commit statement: the `session_commits`
/// columns, then with `step_columns` those `session_step_commits` adds (a
/// plain commit's finish nothing and add no tasks or attempts).
fn bind_sqlite_commit<'q>(
    q: Query<'q, Sqlite, SqliteArguments<'q>>,
    c: &'q Commit,
    now: i64,
    step_columns: bool,
) -> Query<'q, Sqlite, SqliteArguments<'q>> {
    let idem = c.idempotency.as_ref();
    let q = q
        .bind(&c.session_id)
        .bind(c.expected_seq)
        .bind(&c.status)
        .bind(&c.state)
        .bind(now)
        .bind(sqlite_events(c))
        .bind(idem.map(|i| i.key.as_str()))
        .bind(idem.map(|i| i.request_hash.as_str()))
        .bind(idem.map(|i| i.response.as_str()));
    if !step_columns {
        return q;
    }
    let step = c.step.as_ref();
    let finish = step.and_then(|s| s.finish.as_ref());
    q.bind(finish.map(|(task, _)| task.as_str()))
        .bind(finish.map(|(_, outcome)| outcome.as_str()))
        .bind(step.map_or("[]", |s| s.tasks.as_str()))
        .bind(step.map_or("[]", |s| s.attempts.as_str()))
}

/// `INSERT INTO session_commits (…) VALUES (?, …), (?, …), …` for `n` rows
/// (`session_step_commits` with `steps`). Each is its own prepared
/// statement in sqlx's per-connection cache (100 by default: the plain
/// and step forms of each size up to `MAX_BATCH` can crowd out the
/// store's other statements under a mixed load, which are then prepared
/// again; a cache of 256 measured no faster, see docs/benchmarks.md).
fn sqlite_commit_batch_sql(n: usize, steps: bool) -> String {
    let mut sql = String::from(if steps {
        "INSERT INTO session_step_commits (session_id, expected_seq, status, state, at, events, \
         idem_key, idem_request_hash, idem_response, finish_task, finish_outcome, tasks, \
         attempts) VALUES "
    } else {
        "INSERT INTO session_commits (session_id, expected_seq, status, state, at, events, \
         idem_key, idem_request_hash, idem_response) VALUES "
    });
    let row = if steps {
        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    } else {
        "(?, ?, ?, ?, ?, ?, ?, ?, ?)"
    };
    for i in 0..n {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(row);
    }
    sql
}

fn sqlite_events(c: &Commit) -> &str {
    match &c.events {
        Events::SqliteJson(json) => json,
        Events::Rows(_) => unreachable!("SQLite commits carry their events as JSON"),
    }
}

/// One member alone, with the single-commit statement.
async fn sqlite_commit_one(
    conn: &mut PoolConnection<Sqlite>,
    c: &Commit,
    now: i64,
) -> Result<(), Rejected> {
    let steps = c.step.is_some();
    let sql = match steps {
        true => super::tasks::SQLITE_STEP_COMMIT,
        false => super::SQLITE_COMMIT,
    };
    let q = bind_sqlite_commit(sqlx::query(sql), c, now, steps);
    match q.execute(&mut **conn).await {
        Ok(_) => Ok(()),
        Err(e) => Err(match raise_message(&e) {
            Some("baton:stale_seq") => Rejected::StaleSeq,
            Some("baton:idempotency_key_taken") => Rejected::KeyTaken,
            Some("baton:task_finished") => Rejected::TaskFinished,
            // SQLite names no constraint, only the columns in its message.
            _ if is_unique_violation(&e) && e.to_string().contains("session_events.") => {
                Rejected::LogOutOfStep
            }
            _ => Rejected::Db(e),
        }),
    }
}

async fn write_postgres(
    conn: &mut PoolConnection<Postgres>,
    batch: Vec<Pending>,
    counters: &Counters,
) -> bool {
    let now = super::now_ms();
    let (members, in_batch) = first_of_each_session(&batch, |c| &c.session_id);
    // A deadlock with another replica's batch, a key race, a lost
    // connection… fail the statement as a whole: then nobody was applied.
    let applied: HashSet<String> = if members.len() < 2 {
        HashSet::new()
    } else {
        let result = pg_commit_batch(conn, &members, now).await;
        counters.count_batch(result.is_ok());
        result.map(HashSet::from_iter).unwrap_or_default()
    };
    let mut fit = true;
    for ((commit, reply), first) in batch.into_iter().zip(in_batch) {
        let result = if first && applied.contains(&commit.session_id) {
            Ok(())
        } else {
            pg_commit_one(conn, &commit, now).await
        };
        fit &= connection_fit(&result);
        let _ = reply.send(result);
    }
    fit
}

/// The batch statement: the members' columns as parallel arrays, unnested.
/// The idempotency check is in the UPDATE's guard, so a taken key skips the
/// member instead of failing the statement.
const PG_COMMIT_BATCH: &str = "WITH c AS (\
     SELECT * FROM unnest($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[], \
                          $7::TEXT[], $8::TEXT[], $9::TEXT[]) \
         AS c (id, expected_seq, status, state, new_seq, idem_key, idem_request_hash, \
               idem_response)), \
     upd AS (UPDATE sessions s SET status = c.status, state = c.state, seq = c.new_seq, \
                                   updated_at = $6 \
         FROM c WHERE s.id = c.id AND s.seq = c.expected_seq \
          AND NOT EXISTS (SELECT 1 FROM idempotency i \
                           WHERE i.session_id = c.id AND i.key = c.idem_key) \
         RETURNING s.id), \
     idem AS (INSERT INTO idempotency (session_id, key, request_hash, response, created_at) \
         SELECT c.id, c.idem_key, c.idem_request_hash, c.idem_response, $6 \
           FROM c JOIN upd ON upd.id = c.id WHERE c.idem_key IS NOT NULL), \
     ev AS (INSERT INTO session_events (session_id, seq, kind, payload, created_at) \
         SELECT e.id, e.seq, e.kind, e.payload, $6 \
           FROM unnest($10::TEXT[], $11::BIGINT[], $12::TEXT[], $13::TEXT[]) \
                AS e (id, seq, kind, payload) \
           JOIN upd ON upd.id = e.id) \
     SELECT id FROM upd";

/// Writes `members` (distinct sessions) in one statement; returns the ids
/// of the sessions it advanced.
async fn pg_commit_batch(
    conn: &mut PoolConnection<Postgres>,
    members: &[&Commit],
    now: i64,
) -> Result<Vec<String>, sqlx::Error> {
    let n = members.len();
    let (mut ids, mut expected, mut statuses, mut states, mut new_seqs) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut keys, mut hashes, mut responses) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut ev_ids, mut ev_seqs, mut ev_kinds, mut ev_payloads) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for c in members {
        ids.push(c.session_id.as_str());
        expected.push(c.expected_seq);
        statuses.push(c.status.as_str());
        states.push(c.state.as_str());
        new_seqs.push(c.new_seq);
        let idem = c.idempotency.as_ref();
        keys.push(idem.map(|i| i.key.as_str()));
        hashes.push(idem.map(|i| i.request_hash.as_str()));
        responses.push(idem.map(|i| i.response.as_str()));
        let Events::Rows(events) = &c.events else {
            unreachable!("PostgreSQL commits carry their events as rows");
        };
        for (seq, (kind, payload)) in (c.expected_seq + 1..).zip(events) {
            ev_ids.push(c.session_id.as_str());
            ev_seqs.push(seq);
            ev_kinds.push(kind.as_str());
            ev_payloads.push(payload.as_str());
        }
    }
    // Planned for each batch (an unnamed statement), never from a cached
    // generic plan: a generic plan made while the tables were small hashes
    // them whole, and kept as they grow it made each batch scan every
    // session and idempotency record.
    sqlx::query_scalar(PG_COMMIT_BATCH)
        .persistent(false)
        .bind(ids)
        .bind(expected)
        .bind(statuses)
        .bind(states)
        .bind(new_seqs)
        .bind(now)
        .bind(keys)
        .bind(hashes)
        .bind(responses)
        .bind(ev_ids)
        .bind(ev_seqs)
        .bind(ev_kinds)
        .bind(ev_payloads)
        .fetch_all(&mut **conn)
        .await
}

/// One member alone, with the single-commit statement.
async fn pg_commit_one(
    conn: &mut PoolConnection<Postgres>,
    c: &Commit,
    now: i64,
) -> Result<(), Rejected> {
    let Events::Rows(events) = &c.events else {
        unreachable!("PostgreSQL commits carry their events as rows");
    };
    let sql = pg_commit_sql(events.len(), c.idempotency.is_some());
    let mut q = sqlx::query_scalar::<_, i64>(&sql)
        .bind(&c.session_id)
        .bind(c.expected_seq)
        .bind(&c.status)
        .bind(&c.state)
        .bind(c.new_seq)
        .bind(now);
    if let Some(idem) = &c.idempotency {
        q = q
            .bind(&idem.key)
            .bind(&idem.request_hash)
            .bind(&idem.response);
    }
    for (seq, (kind, payload)) in (c.expected_seq + 1..).zip(events) {
        q = q.bind(seq).bind(kind).bind(payload);
    }
    match q.fetch_optional(&mut **conn).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(Rejected::StaleSeq),
        Err(e) if is_unique_violation(&e) => Err(match constraint(&e) {
            Some("idempotency_pkey") => Rejected::KeyTaken,
            Some("session_events_pkey") => Rejected::LogOutOfStep,
            _ => Rejected::Db(e),
        }),
        Err(e) => Err(Rejected::Db(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_errors_of_the_connection_give_it_back() {
        assert!(connection_fit(&Ok(())));
        assert!(connection_fit(&Err(Rejected::StaleSeq)));
        assert!(connection_fit(&Err(Rejected::KeyTaken)));
        let protocol = sqlx::Error::Protocol("bad row".into());
        assert!(connection_fit(&Err(Rejected::Db(protocol))));
        let lost = sqlx::Error::Io(std::io::Error::other("connection reset"));
        assert!(!connection_fit(&Err(Rejected::Db(lost))));
        assert!(!connection_fit(&Err(Rejected::Db(
            sqlx::Error::WorkerCrashed
        ))));
    }
}

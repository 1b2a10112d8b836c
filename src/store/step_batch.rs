//! Group commit for step commits on PostgreSQL: the writers that own the
//! write path of [`Store::commit_step`](super::Store::commit_step) there.
//!
//! Under load many sessions finish a step at once, and each step commit is
//! one statement whose cost is mostly per statement (protocol, executor
//! start, commit record), not per row. Commits that queue up while the
//! writers are busy are written together by one statement
//! ([`PG_STEP_BATCH`](super::tasks::PG_STEP_BATCH)), so one round trip and
//! one transaction serve many sessions. There is no timer: a lone commit is
//! written at once with the single-commit statement, and when no other
//! commit is in flight it is written on the caller's own task, sparing a
//! sequential chain two task hand-offs per step.
//!
//! The same shape as `group.rs` (the writer of `Store::commit`), for a
//! different statement. Each member keeps the semantics of a commit on its
//! own. A member the batch did not apply (a stale seq, a finished task) and
//! a second commit of a session already in the batch are written alone
//! afterwards with the
//! single-commit statement, which decides again and says why it fails. If
//! the batch statement fails as a whole (a statement is atomic: nothing of
//! it was written), every member is written alone. A member hears
//! "applied" only once the statement that applied it has committed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::group::{first_of_each_session, take_batch};
use super::tasks::{AttemptRecord, NewTask, write_pg_step, write_pg_step_batch};

/// Writers (each holds one pooled connection while it writes): while one
/// batch waits for its WAL flush, the next is taken and sent.
const WRITERS: usize = 2;

/// One step commit, owned and serialized by the caller.
pub(super) struct PgStep {
    pub session_id: String,
    pub expected_seq: i64,
    pub new_seq: i64,
    pub status: String,
    /// JSON text.
    pub state: String,
    pub now: i64,
    pub durable: bool,
    /// (task id, outcome).
    pub finish: Option<(String, String)>,
    /// (key, request hash, response JSON text).
    pub idempotency: Option<(String, String, String)>,
    pub notify: Option<String>,
    /// (seq, kind, payload JSON text).
    pub events: Vec<(i64, String, String)>,
    pub tasks: Vec<NewTask>,
    /// Each task's input as JSON text.
    pub inputs: Vec<String>,
    pub attempts: Vec<AttemptRecord>,
}

/// (session locked at the expected seq, task finished, session advanced).
type Outcome = Result<(i64, i64, i64), sqlx::Error>;
type Pending = (PgStep, oneshot::Sender<Outcome>);

/// The queue to the writers; they end when the last clone is dropped.
#[derive(Debug, Clone)]
pub(super) struct StepWriter {
    queue: mpsc::UnboundedSender<Pending>,
    /// Members applied by a batch statement.
    batched: Arc<AtomicU64>,
    /// Commits between their start and their answer, however written.
    in_flight: Arc<AtomicUsize>,
    pool: PgPool,
}

impl StepWriter {
    /// Spawns the writers on the current Tokio runtime.
    pub fn spawn(pool: PgPool) -> StepWriter {
        let (queue, rx) = mpsc::unbounded_channel();
        let rx = Arc::new(Mutex::new(rx));
        let batched = Arc::new(AtomicU64::new(0));
        for _ in 0..WRITERS {
            tokio::spawn(run(pool.clone(), rx.clone(), batched.clone()));
        }
        StepWriter {
            queue,
            batched,
            in_flight: Arc::default(),
            pool,
        }
    }

    pub fn batched(&self) -> u64 {
        self.batched.load(Ordering::Relaxed)
    }

    pub async fn commit(&self, step: PgStep) -> Outcome {
        let alone = self.in_flight.fetch_add(1, Ordering::SeqCst) == 0;
        // Counted down however the commit ends (the caller may be dropped).
        let _counted = scopeguard::guard(&self.in_flight, |n| {
            n.fetch_sub(1, Ordering::SeqCst);
        });
        if alone {
            // Nothing to share a statement with: the writers would write it
            // alone too, a hand-off there and back later.
            let mut conn = self.pool.acquire().await?;
            return write_pg_step(&mut conn, &step).await;
        }
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((step, reply))
            .map_err(|_| sqlx::Error::WorkerCrashed)?;
        answer.await.unwrap_or(Err(sqlx::Error::WorkerCrashed))
    }
}

async fn run(
    pool: PgPool,
    rx: Arc<Mutex<mpsc::UnboundedReceiver<Pending>>>,
    batched: Arc<AtomicU64>,
) {
    loop {
        // The queue is held from the first commit until the batch is taken,
        // so concurrent writers take disjoint batches.
        let mut queue = rx.lock().await;
        let Some(first) = queue.recv().await else {
            return;
        };
        let mut conn = match pool.acquire().await {
            Ok(c) => c,
            Err(e) => {
                drop(queue);
                let _ = first.1.send(Err(e));
                continue;
            }
        };
        // Commits that arrived while a connection was found join the batch.
        let batch = take_batch(first, &mut queue);
        drop(queue);
        if batch.len() == 1 {
            for (step, reply) in batch {
                let _ = reply.send(write_pg_step(&mut conn, &step).await);
            }
            continue;
        }
        let (steps, in_batch) = first_of_each_session(&batch, |s| &s.session_id);
        let mut applied = match write_pg_step_batch(&mut conn, &steps).await {
            Ok(applied) => applied,
            Err(e) => {
                tracing::debug!(error = %e, size = steps.len(), "a step batch failed; writing its members one by one");
                vec![false; steps.len()]
            }
        }
        .into_iter();
        // In queue order, so a session's later commit follows its first.
        for ((step, reply), first) in batch.into_iter().zip(in_batch) {
            let outcome = if first && applied.next() == Some(true) {
                batched.fetch_add(1, Ordering::Relaxed);
                Ok((1, i64::from(step.finish.is_some()), 1))
            } else {
                write_pg_step(&mut conn, &step).await
            };
            let _ = reply.send(outcome);
        }
    }
}

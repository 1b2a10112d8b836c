//! Durable backend-step tasks: what a session waits for, who is working on
//! it (a lease), every attempt made, and the inbox of external events.
//!
//! A task is claimable when it is not `done` and its `due_at` has passed:
//! `due_at` is the start time of a ready task, the lease expiry of a
//! running one (a task whose worker died is taken again) and the deadline
//! of an open one (approval `due`, event `timeout`). Claiming uses
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL, so replicas never take the same
//! task at once; SQLite has one writer, so `UPDATE … RETURNING` suffices.
//!
//! A task finishes in the same transaction that advances its session
//! ([`Store::commit_step`]), guarded both by the session's `seq` and by the
//! task not being done yet: however many workers, reviewers or events
//! complete the same step, the session advances once.

use serde_json::Value;

use super::error::{constraint, is_unique_violation};
use super::{
    BeginWrite, Inner, NewEvent, NewIdempotency, Store, StoreError, check_event_count, now_ms,
    parse_json, seq_after, to_json,
};

/// Where a task is in its life; stored as its [`TaskState::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    /// Waiting for `due_at`, then any worker may take it.
    Ready,
    /// Leased to `lease_owner` until `due_at`.
    Running,
    /// Waiting for a person or an event; `due_at` is the deadline.
    Open,
    Done,
}

impl TaskState {
    /// Every state a task not done may be in.
    pub const PENDING: [TaskState; 3] = [TaskState::Ready, TaskState::Running, TaskState::Open];

    pub const fn as_str(self) -> &'static str {
        match self {
            TaskState::Ready => "ready",
            TaskState::Running => "running",
            TaskState::Open => "open",
            TaskState::Done => "done",
        }
    }

    const ALL: [TaskState; 4] = [
        TaskState::Ready,
        TaskState::Running,
        TaskState::Open,
        TaskState::Done,
    ];

    fn parse(s: &str) -> Result<TaskState, StoreError> {
        TaskState::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| StoreError::Corrupt {
                table: "step_tasks",
                detail: format!("unknown task state `{s}`"),
            })
    }
}

/// How one attempt at a task ended; stored as its [`AttemptOutcome::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptOutcome {
    Ok,
    Error,
    Timeout,
    /// Failed, and tried again.
    Retry,
}

impl AttemptOutcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Ok => "ok",
            AttemptOutcome::Error => "error",
            AttemptOutcome::Timeout => "timeout",
            AttemptOutcome::Retry => "retry",
        }
    }

    const ALL: [AttemptOutcome; 4] = [
        AttemptOutcome::Ok,
        AttemptOutcome::Error,
        AttemptOutcome::Timeout,
        AttemptOutcome::Retry,
    ];

    fn parse(s: &str) -> Result<AttemptOutcome, StoreError> {
        AttemptOutcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| StoreError::Corrupt {
                table: "step_attempts",
                detail: format!("unknown attempt outcome `{s}`"),
            })
    }
}

/// A task to create with a commit.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    pub id: String,
    pub node: String,
    pub kind: String,
    pub state: TaskState,
    pub due_at: Option<i64>,
    /// Created already leased to this worker (it runs the task at once,
    /// saving a claim round trip); `attempts` starts at 1 then.
    pub lease_owner: Option<String>,
    pub attempts: i32,
    pub queue: Option<String>,
    pub event_name: Option<String>,
    pub correlation: Option<String>,
    pub mock: Option<String>,
    pub input: Value,
}

/// A task as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    pub id: String,
    pub session_id: String,
    pub node: String,
    pub kind: String,
    pub state: TaskState,
    pub due_at: Option<i64>,
    pub attempts: i32,
    pub lease_owner: Option<String>,
    pub queue: Option<String>,
    pub event_name: Option<String>,
    pub correlation: Option<String>,
    pub claimed_by: Option<String>,
    pub mock: Option<String>,
    pub input: Value,
    pub outcome: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One attempt at a task, for the step history.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    pub task_id: String,
    pub attempt: i32,
    pub session_id: String,
    pub node: String,
    pub worker: String,
    pub started_at: i64,
    pub finished_at: i64,
    pub outcome: AttemptOutcome,
    pub status_code: Option<i32>,
    pub error: Option<String>,
}

/// Everything [`Store::commit_step`] writes atomically.
#[derive(Debug)]
pub struct StepCommit<'a> {
    pub session_id: &'a str,
    pub expected_seq: i64,
    pub status: &'a str,
    /// The session state as JSON text.
    pub state: &'a str,
    pub events: &'a [NewEvent],
    pub idempotency: Option<&'a NewIdempotency>,
    /// The task this advance finishes, with its outcome; fails with
    /// `TASK_ALREADY_FINISHED` if it is done already.
    pub finish: Option<(&'a str, &'a str)>,
    pub new_tasks: &'a [NewTask],
    /// Attempts to record with it (the last one, or a parallel step's all).
    pub attempts: &'a [AttemptRecord],
    /// PostgreSQL: tell other replicas the session changed (a NOTIFY on
    /// [`SESSION_CHANNEL`] with this payload, sent when the transaction
    /// commits). Ignored on SQLite, which has one process.
    pub notify: Option<&'a str>,
    /// Whether the commit must reach disk before it returns. `false` is for
    /// an intermediate step of a chain this process goes on running: on
    /// PostgreSQL it commits with `synchronous_commit = off`, so a crash of
    /// the database (not of Baton) may lose it — the step then runs again
    /// under the same task id and `Idempotency-Key`, and the session never
    /// advances twice. The next durable commit, or [`Store::flush`], makes
    /// it durable along with everything before it. SQLite (WAL,
    /// `synchronous = NORMAL`) treats every commit alike.
    pub durable: bool,
}

/// The PostgreSQL channel on which replicas announce session changes that
/// happened outside a request (a step finished, a reviewer decided, an
/// event arrived), so `sessionUpdated` subscribers on every replica see them.
pub const SESSION_CHANNEL: &str = "baton_sessions";

#[derive(sqlx::FromRow)]
struct TaskRow {
    id: String,
    session_id: String,
    node: String,
    kind: String,
    state: String,
    due_at: Option<i64>,
    attempts: i32,
    lease_owner: Option<String>,
    queue: Option<String>,
    event_name: Option<String>,
    correlation: Option<String>,
    claimed_by: Option<String>,
    mock: Option<String>,
    input: String,
    outcome: Option<String>,
    created_at: i64,
    updated_at: i64,
}

/// A claimed task, and whether its lease had expired.
#[derive(sqlx::FromRow)]
struct ClaimedRow {
    #[sqlx(flatten)]
    task: TaskRow,
    reclaimed: bool,
}

impl TaskRow {
    fn into_record(self) -> Result<TaskRecord, StoreError> {
        Ok(TaskRecord {
            input: parse_json("step_tasks", "input", &self.input)?,
            id: self.id,
            session_id: self.session_id,
            node: self.node,
            kind: self.kind,
            state: TaskState::parse(&self.state)?,
            due_at: self.due_at,
            attempts: self.attempts,
            lease_owner: self.lease_owner,
            queue: self.queue,
            event_name: self.event_name,
            correlation: self.correlation,
            claimed_by: self.claimed_by,
            mock: self.mock,
            outcome: self.outcome,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct AttemptRow {
    task_id: String,
    attempt: i32,
    session_id: String,
    node: String,
    worker: String,
    started_at: i64,
    finished_at: i64,
    outcome: String,
    status_code: Option<i32>,
    error: Option<String>,
}

impl AttemptRow {
    fn into_record(self) -> Result<AttemptRecord, StoreError> {
        Ok(AttemptRecord {
            outcome: AttemptOutcome::parse(&self.outcome)?,
            task_id: self.task_id,
            attempt: self.attempt,
            session_id: self.session_id,
            node: self.node,
            worker: self.worker,
            started_at: self.started_at,
            finished_at: self.finished_at,
            status_code: self.status_code,
            error: self.error,
        })
    }
}

const TASK_COLUMNS: &str = "id, session_id, node, kind, state, due_at, attempts, lease_owner, \
     queue, event_name, correlation, claimed_by, mock, input, outcome, created_at, updated_at";

pub(super) const INSERT_TASK: &str = "INSERT INTO step_tasks (id, session_id, node, kind, state, due_at, \
     attempts, lease_owner, queue, event_name, correlation, mock, input, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14)";

const INSERT_ATTEMPT: &str = "INSERT INTO step_attempts (task_id, attempt, session_id, node, \
     worker, started_at, finished_at, outcome, status_code, error) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

const FINISH_TASK: &str = "UPDATE step_tasks SET state = 'done', outcome = $2, due_at = NULL, \
     lease_owner = NULL, updated_at = $3 WHERE id = $1 AND state <> 'done'";

/// SQLite `commit_step`: one INSERT into the `session_step_commits` view,
/// whose trigger (see the migration) finishes the task, checks the seq and
/// the key, advances the session and appends its events, key, tasks and
/// attempts, atomically as one statement.
pub(super) const SQLITE_STEP_COMMIT: &str = "INSERT INTO session_step_commits (session_id, expected_seq, \
     status, state, at, events, idem_key, idem_request_hash, idem_response, finish_task, \
     finish_outcome, tasks, attempts) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

/// `tasks` for [`SQLITE_STEP_COMMIT`]: one array per task, in the trigger's
/// column order, its input as JSON text.
pub(super) fn sqlite_tasks_json(tasks: &[NewTask]) -> Result<String, StoreError> {
    let rows = tasks
        .iter()
        .map(|t| {
            let input = to_json("a task input", &t.input)?;
            Ok((
                &t.id,
                &t.node,
                &t.kind,
                t.state.as_str(),
                t.due_at,
                t.attempts,
                &t.lease_owner,
                &t.queue,
                &t.event_name,
                &t.correlation,
                &t.mock,
                input,
            ))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    to_json("the tasks", &rows)
}

/// `attempts` for [`SQLITE_STEP_COMMIT`], in the trigger's column order.
fn sqlite_attempts_json(attempts: &[AttemptRecord]) -> Result<String, StoreError> {
    let rows: Vec<_> = attempts
        .iter()
        .map(|a| {
            (
                &a.task_id,
                a.attempt,
                &a.session_id,
                &a.node,
                &a.worker,
                a.started_at,
                a.finished_at,
                a.outcome.as_str(),
                a.status_code,
                &a.error,
            )
        })
        .collect();
    to_json("the attempts", &rows)
}

/// Most tasks one claim takes.
pub const MAX_CLAIM: i64 = 256;

macro_rules! insert_attempt {
    ($tx:ident, $a:expr) => {{
        let a = $a;
        sqlx::query(INSERT_ATTEMPT)
            .bind(&a.task_id)
            .bind(a.attempt)
            .bind(&a.session_id)
            .bind(&a.node)
            .bind(&a.worker)
            .bind(a.started_at)
            .bind(a.finished_at)
            .bind(a.outcome.as_str())
            .bind(a.status_code)
            .bind(&a.error)
            .execute(&mut *$tx)
            .await?;
    }};
}

impl Store {
    /// PostgreSQL: a listener on [`SESSION_CHANNEL`] and
    /// [`super::flows::RELEASE_CHANNEL`]; `None` on SQLite.
    pub async fn session_listener(&self) -> Result<Option<sqlx::postgres::PgListener>, StoreError> {
        match &self.inner {
            Inner::Sqlite { .. } => Ok(None),
            Inner::Postgres(pool) => {
                let mut l = sqlx::postgres::PgListener::connect_with(pool).await?;
                l.listen_all([SESSION_CHANNEL, super::flows::RELEASE_CHANNEL])
                    .await?;
                Ok(Some(l))
            }
        }
    }

    /// Advances a session and finishes / creates its step tasks in one
    /// transaction. The slower sibling of [`Store::commit`], used only when
    /// backend steps are involved. Returns the new seq.
    pub async fn commit_step(&self, c: StepCommit<'_>) -> Result<i64, StoreError> {
        if c.events.is_empty() {
            return Err(StoreError::InvalidInput {
                reason: "a commit needs at least one event".to_owned(),
            });
        }
        check_event_count(c.events.len())?;
        let payloads = c
            .events
            .iter()
            .map(|e| to_json("an event payload", &e.payload))
            .collect::<Result<Vec<_>, _>>()?;
        let new_seq = seq_after(c.expected_seq, c.events.len());
        let idem_response = c.idempotency.map(|i| i.response.get().to_owned());
        // PostgreSQL has step writers of its own; SQLite has none.
        if let Some(writer) = &self.step_writer {
            return self
                .commit_step_pg(writer, &c, payloads, idem_response, new_seq, now_ms())
                .await;
        }
        // SQLite: through the group-commit writer, in a batch with whatever
        // else is committing.
        let commit = super::group::Commit {
            session_id: c.session_id.to_owned(),
            expected_seq: c.expected_seq,
            new_seq,
            status: c.status.to_owned(),
            state: c.state.to_owned(),
            events: super::group::Events::SqliteJson(super::sqlite_events_json(
                c.events, &payloads,
            )?),
            idempotency: c.idempotency.zip(idem_response).map(|(i, response)| {
                super::group::Idempotency {
                    key: i.key.clone(),
                    request_hash: i.request_hash.clone(),
                    response,
                }
            }),
            step: Some(super::group::StepPart {
                finish: c.finish.map(|(t, o)| (t.to_owned(), o.to_owned())),
                tasks: sqlite_tasks_json(c.new_tasks)?,
                attempts: sqlite_attempts_json(c.attempts)?,
            }),
        };
        match self.writer.commit(commit).await {
            Ok(()) => Ok(new_seq),
            Err(rejected) => Err(self
                .why_rejected(
                    rejected,
                    c.session_id,
                    c.expected_seq,
                    c.idempotency,
                    c.finish.map(|(task, _)| task),
                )
                .await),
        }
    }

    /// [`Store::commit_step`] on PostgreSQL: one statement, so one round
    /// trip and an implicit transaction instead of eight round trips. The
    /// session row is locked first (`FOR UPDATE`, re-checked against the
    /// expected seq), the task is finished only if the session is there,
    /// and the session advances only if the task was finished: all or
    /// nothing, decided inside the statement.
    async fn commit_step_pg(
        &self,
        writer: &super::step_batch::StepWriter,
        c: &StepCommit<'_>,
        payloads: Vec<String>,
        idem_response: Option<String>,
        new_seq: i64,
        now: i64,
    ) -> Result<i64, StoreError> {
        let inputs = c
            .new_tasks
            .iter()
            .map(|t| to_json("a task input", &t.input))
            .collect::<Result<Vec<_>, _>>()?;
        let step = super::step_batch::PgStep {
            session_id: c.session_id.to_owned(),
            expected_seq: c.expected_seq,
            new_seq,
            status: c.status.to_owned(),
            state: c.state.to_owned(),
            now,
            durable: c.durable,
            finish: c.finish.map(|(t, o)| (t.to_owned(), o.to_owned())),
            idempotency: c
                .idempotency
                .zip(idem_response)
                .map(|(i, r)| (i.key.clone(), i.request_hash.clone(), r)),
            notify: c.notify.map(str::to_owned),
            events: c
                .events
                .iter()
                .zip(payloads)
                .enumerate()
                .map(|(i, (e, p))| (seq_after(c.expected_seq + 1, i), e.kind.clone(), p))
                .collect(),
            tasks: c.new_tasks.to_vec(),
            inputs,
            attempts: c.attempts.to_vec(),
        };
        let (locked, finished, updated) = match writer.commit(step).await {
            Ok(row) => row,
            Err(e) if is_unique_violation(&e) && constraint(&e) == Some("idempotency_pkey") => {
                let key = c.idempotency.map(|i| i.key.clone()).unwrap_or_default();
                return Err(StoreError::IdempotencyKeyTaken {
                    session_id: c.session_id.to_owned(),
                    key,
                });
            }
            Err(e) => return Err(e.into()),
        };
        if updated == 1 {
            return Ok(new_seq);
        }
        match c.finish {
            Some((task_id, _)) if locked == 1 && finished == 0 => Err(StoreError::TaskFinished {
                task_id: task_id.to_owned(),
            }),
            _ => Err(self.why_not_at(c.session_id, c.expected_seq).await),
        }
    }

    /// [`Store::create_session_with_tasks`] on PostgreSQL: the session, its
    /// events and its tasks in one statement.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn create_session_pg(
        &self,
        pool: &sqlx::PgPool,
        s: &super::NewSession,
        state: &str,
        payloads: &[String],
        events: &[NewEvent],
        tasks: &[NewTask],
        durable: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        let inputs = tasks
            .iter()
            .map(|t| to_json("a task input", &t.input))
            .collect::<Result<Vec<_>, _>>()?;
        let q = sqlx::query_as::<_, (String,)>(PG_CREATE_SESSION)
            .bind(&s.id)
            .bind(&s.flow_id)
            .bind(s.flow_version)
            .bind(&s.user_id)
            .bind(&s.token_hash)
            .bind(&s.status)
            .bind(seq_after(0, events.len()))
            .bind(state)
            .bind(now)
            .bind(if durable { "on" } else { "off" });
        let q = bind_events(q, 1, events, payloads);
        let q = bind_tasks(q, tasks, &inputs);
        match q.fetch_one(pool).await {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) && constraint(&e) == Some("sessions_pkey") => {
                Err(StoreError::SessionExists { id: s.id.clone() })
            }
            Err(e) if super::error::is_foreign_key_violation(&e) => Err(StoreError::NotFound {
                what: format!("flow version {} of flow {}", s.flow_version, s.flow_id),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Makes every commit made so far durable (see [`StepCommit::durable`]):
    /// on PostgreSQL a synchronous commit of a transaction that wrote its
    /// id, which flushes the write-ahead log up to it; nothing on SQLite.
    pub async fn flush(&self) -> Result<(), StoreError> {
        if let Inner::Postgres(pool) = &self.inner {
            sqlx::query("SELECT pg_current_xact_id()::text")
                .execute(pool)
                .await?;
        }
        Ok(())
    }

    /// Takes up to `limit` due tasks for `worker`, leased until
    /// `lease_until`; each claim counts as an attempt.
    pub async fn claim_due_tasks(
        &self,
        worker: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        let limit = limit.clamp(1, MAX_CLAIM);
        let lock = match self.inner {
            Inner::Sqlite { .. } => "",
            Inner::Postgres(_) => " FOR UPDATE SKIP LOCKED",
        };
        let sql = format!(
            "UPDATE step_tasks SET state = 'running', lease_owner = $1, due_at = $2, \
             attempts = attempts + 1, updated_at = $3, reclaimed = (state = 'running') \
             WHERE id IN (SELECT id FROM step_tasks WHERE state <> 'done' AND due_at <= $3 \
             ORDER BY due_at LIMIT $4{lock}) RETURNING {TASK_COLUMNS}, reclaimed"
        );
        let rows: Vec<ClaimedRow> = with_write_pool!(self, |pool| {
            sqlx::query_as(&sql)
                .bind(worker)
                .bind(lease_until)
                .bind(now)
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        let expired = rows.iter().filter(|r| r.reclaimed).count();
        if expired > 0 {
            crate::telemetry::LEASE_EXPIRIES.add(&[], expired as u64);
        }
        rows.into_iter().map(|r| r.task.into_record()).collect()
    }

    /// Step tasks not done, by state, for `baton_task_queue_depth`.
    pub async fn task_queue_depth(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows: Vec<(String, i64)> = with_read_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT state, COUNT(*) FROM step_tasks WHERE state <> 'done' GROUP BY state",
            )
            .fetch_all(pool)
            .await?
        });
        Ok(rows)
    }

    /// When the next task falls due (start, lease expiry or deadline).
    pub async fn next_task_due(&self) -> Result<Option<i64>, StoreError> {
        let at: Option<i64> = with_read_pool!(self, |pool| {
            sqlx::query_scalar("SELECT MIN(due_at) FROM step_tasks WHERE state <> 'done'")
                .fetch_one(pool)
                .await?
        });
        Ok(at)
    }

    /// Starts another attempt of a running task that `worker` holds:
    /// counts it and extends the lease. `None` if the lease was lost
    /// (expired and taken by another worker) or the task finished.
    pub async fn start_attempt(
        &self,
        task_id: &str,
        worker: &str,
        lease_until: i64,
    ) -> Result<Option<i32>, StoreError> {
        let attempts: Option<i32> = with_write_pool!(self, |pool| {
            sqlx::query_scalar(
                "UPDATE step_tasks SET attempts = attempts + 1, due_at = $3, updated_at = $4 \
                 WHERE id = $1 AND state = 'running' AND lease_owner = $2 RETURNING attempts",
            )
            .bind(task_id)
            .bind(worker)
            .bind(lease_until)
            .bind(now_ms())
            .fetch_optional(pool)
            .await?
        });
        Ok(attempts)
    }

    /// Extends the lease `worker` holds on a running task (a long parallel
    /// step); `false` when it was lost.
    pub async fn extend_lease(
        &self,
        task_id: &str,
        worker: &str,
        lease_until: i64,
    ) -> Result<bool, StoreError> {
        let n = with_write_pool!(self, |pool| {
            sqlx::query(
                "UPDATE step_tasks SET due_at = $3, updated_at = $4 \
                 WHERE id = $1 AND state = 'running' AND lease_owner = $2",
            )
            .bind(task_id)
            .bind(worker)
            .bind(lease_until)
            .bind(now_ms())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n > 0)
    }

    /// Records a failed attempt that will be retried (the task stays
    /// leased to `worker` until `lease_until`).
    pub async fn record_retry(
        &self,
        attempt: &AttemptRecord,
        lease_until: i64,
    ) -> Result<bool, StoreError> {
        in_write_tx!(self, |tx| {
            let held = sqlx::query(
                "UPDATE step_tasks SET due_at = $3, updated_at = $4 \
                 WHERE id = $1 AND state = 'running' AND lease_owner = $2",
            )
            .bind(&attempt.task_id)
            .bind(&attempt.worker)
            .bind(lease_until)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?
            .rows_affected()
                > 0;
            if held {
                insert_attempt!(tx, attempt);
            }
            Ok(held)
        })
    }

    /// Gives a running task back (its execution failed for a reason of
    /// ours, e.g. the database was briefly unavailable) so that any worker
    /// takes it again at `due_at` instead of when the lease runs out.
    pub async fn release_task(
        &self,
        task_id: &str,
        worker: &str,
        due_at: i64,
    ) -> Result<bool, StoreError> {
        let n = with_write_pool!(self, |pool| {
            sqlx::query(
                "UPDATE step_tasks SET state = 'ready', lease_owner = NULL, due_at = $3, \
                 updated_at = $4 WHERE id = $1 AND state = 'running' AND lease_owner = $2",
            )
            .bind(task_id)
            .bind(worker)
            .bind(due_at)
            .bind(now_ms())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n > 0)
    }

    /// Finishes a task without touching its session (the session moved on
    /// without it, e.g. after an operator's skip). `false` if it was done.
    pub async fn abandon_task(&self, task_id: &str, outcome: &str) -> Result<bool, StoreError> {
        let n = with_write_pool!(self, |pool| {
            sqlx::query(FINISH_TASK)
                .bind(task_id)
                .bind(outcome)
                .bind(now_ms())
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n > 0)
    }

    pub async fn task(&self, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM step_tasks WHERE id = $1");
        let row: Option<TaskRow> = with_read_pool!(self, |pool| {
            sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?
        });
        row.map(TaskRow::into_record).transpose()
    }

    /// Every task of a session, oldest first.
    pub async fn session_tasks(&self, session_id: &str) -> Result<Vec<TaskRecord>, StoreError> {
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM step_tasks WHERE session_id = $1 ORDER BY created_at, id"
        );
        let rows: Vec<TaskRow> = with_read_pool!(self, |pool| {
            sqlx::query_as(&sql)
                .bind(session_id)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(TaskRow::into_record).collect()
    }

    /// Every attempt made for a session's steps, in order.
    pub async fn session_attempts(
        &self,
        session_id: &str,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        let rows: Vec<AttemptRow> = with_read_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT task_id, attempt, session_id, node, worker, started_at, finished_at, \
                 outcome, status_code, error FROM step_attempts WHERE session_id = $1 \
                 ORDER BY started_at, task_id, attempt",
            )
            .bind(session_id)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(AttemptRow::into_record).collect()
    }

    /// Open event steps waiting for `name` with this correlation key.
    pub async fn tasks_waiting_for(
        &self,
        name: &str,
        correlation: &str,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM step_tasks WHERE event_name = $1 AND correlation = $2 \
             AND state = 'open' AND kind = 'event' ORDER BY created_at, id LIMIT 100"
        );
        let rows: Vec<TaskRow> = with_read_pool!(self, |pool| {
            sqlx::query_as(&sql)
                .bind(name)
                .bind(correlation)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(TaskRow::into_record).collect()
    }

    /// Open approval tasks, oldest first, after the cursor
    /// `(created_at, id)`; only `queues` when given.
    pub async fn open_approvals(
        &self,
        queues: Option<&[String]>,
        after: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        let (after_at, after_id) = after.unwrap_or((i64::MIN, String::new()));
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM step_tasks WHERE kind = 'approval' AND state = 'open' \
             AND (created_at > $1 OR (created_at = $1 AND id > $2)) \
             ORDER BY created_at, id LIMIT $3"
        );
        // Filtering by queue in SQL would need array binds that differ per
        // backend; the queue list is short and the page bounded, so fetch a
        // bounded window and filter here.
        let window = (limit.clamp(1, 100) * 10).min(1000);
        let rows: Vec<TaskRow> = with_read_pool!(self, |pool| {
            sqlx::query_as(&sql)
                .bind(after_at)
                .bind(&after_id)
                .bind(window)
                .fetch_all(pool)
                .await?
        });
        let mut out = Vec::new();
        for row in rows {
            let keep = match queues {
                None => true,
                Some(qs) => row.queue.as_ref().is_some_and(|q| qs.contains(q)),
            };
            if keep {
                out.push(row.into_record()?);
                if out.len() as i64 >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Claims an open approval for `reviewer` (again by the same reviewer
    /// is fine). `None` when it is not open or someone else holds it.
    pub async fn claim_approval(
        &self,
        task_id: &str,
        reviewer: &str,
    ) -> Result<Option<TaskRecord>, StoreError> {
        let sql = format!(
            "UPDATE step_tasks SET claimed_by = $2, updated_at = $3 WHERE id = $1 \
             AND kind = 'approval' AND state = 'open' AND (claimed_by IS NULL OR claimed_by = $2) \
             RETURNING {TASK_COLUMNS}"
        );
        let row: Option<TaskRow> = with_write_pool!(self, |pool| {
            sqlx::query_as(&sql)
                .bind(task_id)
                .bind(reviewer)
                .bind(now_ms())
                .fetch_optional(pool)
                .await?
        });
        row.map(TaskRow::into_record).transpose()
    }

    /// Stores an external event in the inbox under `id`; `false` when an event with this id was received before: the id is
    /// the sender's (a NATS message id), so a redelivery is stored once.
    pub async fn inbox_event(
        &self,
        id: &str,
        name: &str,
        correlation: &str,
        payload: &Value,
    ) -> Result<bool, StoreError> {
        let payload = to_json("the event payload", payload)?;
        let n = with_write_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO step_inbox (id, event_name, correlation, payload, received_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
            )
            .bind(id)
            .bind(name)
            .bind(correlation)
            .bind(payload)
            .bind(now_ms())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n > 0)
    }

    /// Marks an inbox event as consumed by `task_id`; `false` when another
    /// task consumed it first.
    pub async fn consume_inbox_event(&self, id: &str, task_id: &str) -> Result<bool, StoreError> {
        let n = with_write_pool!(self, |pool| {
            sqlx::query(
                "UPDATE step_inbox SET consumed_by = $2 WHERE id = $1 AND consumed_by IS NULL",
            )
            .bind(id)
            .bind(task_id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n > 0)
    }

    /// Who consumed an inbox event (a task id, or `delivered`), if anyone.
    pub async fn inbox_consumer(&self, id: &str) -> Result<Option<String>, StoreError> {
        let by: Option<Option<String>> = with_read_pool!(self, |pool| {
            sqlx::query_scalar("SELECT consumed_by FROM step_inbox WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        Ok(by.flatten())
    }

    /// The oldest unconsumed inbox event for `name` and `correlation`.
    pub async fn pending_inbox_event(
        &self,
        name: &str,
        correlation: &str,
    ) -> Result<Option<(String, Value)>, StoreError> {
        let row: Option<(String, String)> = with_read_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, payload FROM step_inbox WHERE event_name = $1 AND correlation = $2 \
                 AND consumed_by IS NULL ORDER BY received_at, id LIMIT 1",
            )
            .bind(name)
            .bind(correlation)
            .fetch_optional(pool)
            .await?
        });
        row.map(|(id, payload)| Ok((id, parse_json("step_inbox", "payload", &payload)?)))
            .transpose()
    }
}

/// The statement of [`Store::commit_step`] on PostgreSQL. One text for
/// every commit (lists travel as arrays), so each connection prepares it
/// once and PostgreSQL reuses its plan.
///
/// Parameters: $1 session, $2 expected seq, $3 status, $4 state, $5 new
/// seq, $6 now, $7 `synchronous_commit`; $8/$9 the task to finish and its
/// outcome (NULL: none); $10–$12 the idempotency record (NULL key: none);
/// $13/$14 the NOTIFY channel and payload (NULL payload: none); $15–$17
/// the events, $18–$29 the new tasks, $30–$39 the attempts, as arrays.
/// Returns (session locked at the expected seq, task finished, session
/// advanced) as counts.
const PG_STEP_COMMIT: &str = "WITH s AS (SELECT 1 FROM sessions WHERE id = $1 AND seq = $2 FOR UPDATE), \
fin AS (UPDATE step_tasks SET state = 'done', outcome = $9, due_at = NULL, lease_owner = NULL, \
  updated_at = $6 WHERE id = $8 AND state <> 'done' AND EXISTS (SELECT 1 FROM s) RETURNING 1), \
upd AS (UPDATE sessions SET status = $3, state = $4, seq = $5, updated_at = $6 \
  WHERE id = $1 AND seq = $2 AND EXISTS (SELECT 1 FROM s) \
  AND ($8::TEXT IS NULL OR EXISTS (SELECT 1 FROM fin)) RETURNING seq), \
idem AS (INSERT INTO idempotency (session_id, key, request_hash, response, created_at) \
  SELECT $1, $10, $11, $12, $6 FROM upd WHERE $10::TEXT IS NOT NULL), \
ev AS (INSERT INTO session_events (session_id, seq, kind, payload, created_at) \
  SELECT $1, e.seq, e.kind, e.payload, $6 FROM upd \
  CROSS JOIN unnest($15::BIGINT[], $16::TEXT[], $17::TEXT[]) AS e (seq, kind, payload)), \
tk AS (INSERT INTO step_tasks (id, session_id, node, kind, state, due_at, attempts, lease_owner, \
  queue, event_name, correlation, mock, input, created_at, updated_at) \
  SELECT t.id, $1, t.node, t.kind, t.state, t.due_at, t.attempts, t.lease_owner, t.queue, \
  t.event_name, t.correlation, t.mock, t.input, $6, $6 FROM upd \
  CROSS JOIN unnest($18::TEXT[], $19::TEXT[], $20::TEXT[], $21::TEXT[], $22::BIGINT[], \
  $23::INTEGER[], $24::TEXT[], $25::TEXT[], $26::TEXT[], $27::TEXT[], $28::TEXT[], $29::TEXT[]) \
  AS t (id, node, kind, state, due_at, attempts, lease_owner, queue, event_name, correlation, \
  mock, input)), \
at AS (INSERT INTO step_attempts (task_id, attempt, session_id, node, worker, started_at, \
  finished_at, outcome, status_code, error) SELECT a.* FROM upd \
  CROSS JOIN unnest($30::TEXT[], $31::INTEGER[], $32::TEXT[], $33::TEXT[], $34::TEXT[], \
  $35::BIGINT[], $36::BIGINT[], $37::TEXT[], $38::INTEGER[], $39::TEXT[]) \
  AS a (task_id, attempt, session_id, node, worker, started_at, finished_at, outcome, \
  status_code, error)) \
SELECT (SELECT count(*) FROM s), (SELECT count(*) FROM fin), \
  (SELECT count(*) FROM upd), \
  (SELECT count(pg_notify($13, $14)) FROM upd WHERE $14::TEXT IS NOT NULL) \
FROM (SELECT set_config('synchronous_commit', $7, true)) AS sync";

/// The statement of [`Store::create_session_with_tasks`] on PostgreSQL.
/// Parameters: $1–$9 the session (as `INSERT_SESSION`, $9 the time), $10
/// `synchronous_commit`, $11–$13 the events and $14–$25 the tasks as arrays.
const PG_CREATE_SESSION: &str = "WITH ins AS (INSERT INTO sessions (id, flow_id, flow_version, \
  user_id, token_hash, status, seq, state, created_at, updated_at) \
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING id), \
ev AS (INSERT INTO session_events (session_id, seq, kind, payload, created_at) \
  SELECT $1, e.seq, e.kind, e.payload, $9 FROM ins \
  CROSS JOIN unnest($11::BIGINT[], $12::TEXT[], $13::TEXT[]) AS e (seq, kind, payload)), \
tk AS (INSERT INTO step_tasks (id, session_id, node, kind, state, due_at, attempts, lease_owner, \
  queue, event_name, correlation, mock, input, created_at, updated_at) \
  SELECT t.id, $1, t.node, t.kind, t.state, t.due_at, t.attempts, t.lease_owner, t.queue, \
  t.event_name, t.correlation, t.mock, t.input, $9, $9 FROM ins \
  CROSS JOIN unnest($14::TEXT[], $15::TEXT[], $16::TEXT[], $17::TEXT[], $18::BIGINT[], \
  $19::INTEGER[], $20::TEXT[], $21::TEXT[], $22::TEXT[], $23::TEXT[], $24::TEXT[], $25::TEXT[]) \
  AS t (id, node, kind, state, due_at, attempts, lease_owner, queue, event_name, correlation, \
  mock, input)) \
SELECT set_config('synchronous_commit', $10, true)";

type PgQueryAs<'q, O> = sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>;

/// Binds `tasks` as the twelve arrays the statements above take.
fn bind_tasks<'q, O>(
    q: PgQueryAs<'q, O>,
    tasks: &'q [NewTask],
    inputs: &'q [String],
) -> PgQueryAs<'q, O> {
    let col = |f: fn(&NewTask) -> Option<&str>| tasks.iter().map(f).collect::<Vec<_>>();
    q.bind(tasks.iter().map(|t| t.id.as_str()).collect::<Vec<_>>())
        .bind(tasks.iter().map(|t| t.node.as_str()).collect::<Vec<_>>())
        .bind(tasks.iter().map(|t| t.kind.as_str()).collect::<Vec<_>>())
        .bind(tasks.iter().map(|t| t.state.as_str()).collect::<Vec<_>>())
        .bind(tasks.iter().map(|t| t.due_at).collect::<Vec<_>>())
        .bind(tasks.iter().map(|t| t.attempts).collect::<Vec<_>>())
        .bind(col(|t| t.lease_owner.as_deref()))
        .bind(col(|t| t.queue.as_deref()))
        .bind(col(|t| t.event_name.as_deref()))
        .bind(col(|t| t.correlation.as_deref()))
        .bind(col(|t| t.mock.as_deref()))
        .bind(inputs.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Binds events (seq from `first_seq`) as the three arrays the statements
/// above take.
fn bind_events<'q, O>(
    q: PgQueryAs<'q, O>,
    first_seq: i64,
    events: &'q [NewEvent],
    payloads: &'q [String],
) -> PgQueryAs<'q, O> {
    q.bind(
        (0..events.len())
            .map(|i| seq_after(first_seq, i))
            .collect::<Vec<_>>(),
    )
    .bind(events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>())
    .bind(payloads.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Writes one step commit with [`PG_STEP_COMMIT`]; returns (session locked
/// at the expected seq, task finished, session advanced) as counts.
pub(super) async fn write_pg_step(
    conn: &mut sqlx::PgConnection,
    c: &super::step_batch::PgStep,
) -> Result<(i64, i64, i64), sqlx::Error> {
    let (finish_id, finish_outcome) = c
        .finish
        .as_ref()
        .map(|(t, o)| (t.as_str(), o.as_str()))
        .unzip();
    let idem = c.idempotency.as_ref();
    let a = &c.attempts;
    let q = sqlx::query_as::<_, (i64, i64, i64, i64)>(PG_STEP_COMMIT)
        .bind(&c.session_id)
        .bind(c.expected_seq)
        .bind(&c.status)
        .bind(&c.state)
        .bind(c.new_seq)
        .bind(c.now)
        .bind(if c.durable { "on" } else { "off" })
        .bind(finish_id)
        .bind(finish_outcome)
        .bind(idem.map(|i| i.0.as_str()))
        .bind(idem.map(|i| i.1.as_str()))
        .bind(idem.map(|i| i.2.as_str()))
        .bind(SESSION_CHANNEL)
        .bind(c.notify.as_deref())
        .bind(c.events.iter().map(|e| e.0).collect::<Vec<_>>())
        .bind(c.events.iter().map(|e| e.1.as_str()).collect::<Vec<_>>())
        .bind(c.events.iter().map(|e| e.2.as_str()).collect::<Vec<_>>());
    let q = bind_tasks(q, &c.tasks, &c.inputs);
    let q = bind_attempts(q, a);
    let (locked, finished, updated, _) = q.fetch_one(conn).await?;
    Ok((locked, finished, updated))
}

fn bind_attempts<'q, O>(q: PgQueryAs<'q, O>, a: &'q [AttemptRecord]) -> PgQueryAs<'q, O> {
    q.bind(a.iter().map(|a| a.task_id.as_str()).collect::<Vec<_>>())
        .bind(a.iter().map(|a| a.attempt).collect::<Vec<_>>())
        .bind(a.iter().map(|a| a.session_id.as_str()).collect::<Vec<_>>())
        .bind(a.iter().map(|a| a.node.as_str()).collect::<Vec<_>>())
        .bind(a.iter().map(|a| a.worker.as_str()).collect::<Vec<_>>())
        .bind(a.iter().map(|a| a.started_at).collect::<Vec<_>>())
        .bind(a.iter().map(|a| a.finished_at).collect::<Vec<_>>())
        .bind(a.iter().map(|a| a.outcome.as_str()).collect::<Vec<_>>())
        .bind(a.iter().map(|a| a.status_code).collect::<Vec<_>>())
        .bind(a.iter().map(|a| a.error.as_deref()).collect::<Vec<_>>())
}

/// Many step commits of distinct sessions in one statement (see
/// [`super::step_batch`]): each member is applied exactly when its own
/// [`PG_STEP_COMMIT`] would apply it. Parameters: $1–$12 the members
/// (index, session, expected seq, status, state, new seq, task to finish,
/// its outcome, idempotency key, hash, response, NOTIFY payload), $13 now,
/// $14–$17 events, $18–$30 tasks, $31–$41 attempts (each with its member's
/// index first), $42 `synchronous_commit`, $43 the NOTIFY channel. Returns
/// the indexes of the members applied.
pub(super) const PG_STEP_BATCH: &str = "WITH m AS (SELECT * FROM unnest($1::INTEGER[], $2::TEXT[], \
  $3::BIGINT[], $4::TEXT[], $5::TEXT[], $6::BIGINT[], $7::TEXT[], $8::TEXT[], $9::TEXT[], \
  $10::TEXT[], $11::TEXT[], $12::TEXT[]) AS m (i, id, seq, status, state, new_seq, fin_id, \
  fin_outcome, idem_key, idem_hash, idem_response, note)), \
s AS (SELECT m.i FROM sessions x JOIN m ON x.id = m.id AND x.seq = m.seq ORDER BY x.id \
  FOR UPDATE OF x), \
fin AS (UPDATE step_tasks t SET state = 'done', outcome = m.fin_outcome, due_at = NULL, \
  lease_owner = NULL, updated_at = $13 FROM m WHERE t.id = m.fin_id AND t.state <> 'done' \
  AND m.i IN (SELECT i FROM s) RETURNING m.i), \
upd AS (UPDATE sessions x SET status = m.status, state = m.state, seq = m.new_seq, \
  updated_at = $13 FROM m WHERE x.id = m.id AND x.seq = m.seq AND m.i IN (SELECT i FROM s) \
  AND (m.fin_id IS NULL OR m.i IN (SELECT i FROM fin)) RETURNING m.i), \
idem AS (INSERT INTO idempotency (session_id, key, request_hash, response, created_at) \
  SELECT m.id, m.idem_key, m.idem_hash, m.idem_response, $13 FROM m \
  WHERE m.idem_key IS NOT NULL AND m.i IN (SELECT i FROM upd)), \
ev AS (INSERT INTO session_events (session_id, seq, kind, payload, created_at) \
  SELECT m.id, e.seq, e.kind, e.payload, $13 \
  FROM unnest($14::INTEGER[], $15::BIGINT[], $16::TEXT[], $17::TEXT[]) AS e (i, seq, kind, payload) \
  JOIN m ON m.i = e.i WHERE e.i IN (SELECT i FROM upd)), \
tk AS (INSERT INTO step_tasks (id, session_id, node, kind, state, due_at, attempts, lease_owner, \
  queue, event_name, correlation, mock, input, created_at, updated_at) \
  SELECT t.id, m.id, t.node, t.kind, t.state, t.due_at, t.attempts, t.lease_owner, t.queue, \
  t.event_name, t.correlation, t.mock, t.input, $13, $13 \
  FROM unnest($18::INTEGER[], $19::TEXT[], $20::TEXT[], $21::TEXT[], $22::TEXT[], $23::BIGINT[], \
  $24::INTEGER[], $25::TEXT[], $26::TEXT[], $27::TEXT[], $28::TEXT[], $29::TEXT[], $30::TEXT[]) \
  AS t (i, id, node, kind, state, due_at, attempts, lease_owner, queue, event_name, correlation, \
  mock, input) JOIN m ON m.i = t.i WHERE t.i IN (SELECT i FROM upd)), \
at AS (INSERT INTO step_attempts (task_id, attempt, session_id, node, worker, started_at, \
  finished_at, outcome, status_code, error) \
  SELECT a.task_id, a.attempt, a.session_id, a.node, a.worker, a.started_at, a.finished_at, \
  a.outcome, a.status_code, a.error \
  FROM unnest($31::INTEGER[], $32::TEXT[], $33::INTEGER[], $34::TEXT[], $35::TEXT[], $36::TEXT[], \
  $37::BIGINT[], $38::BIGINT[], $39::TEXT[], $40::INTEGER[], $41::TEXT[]) \
  AS a (i, task_id, attempt, session_id, node, worker, started_at, finished_at, outcome, \
  status_code, error) WHERE a.i IN (SELECT i FROM upd)) \
SELECT (SELECT array_agg(i) FROM upd), \
  (SELECT count(pg_notify($43, m.note)) FROM m WHERE m.note IS NOT NULL AND m.i IN (SELECT i FROM upd)) \
FROM (SELECT set_config('synchronous_commit', $42, true)) AS sync";

/// Writes `members` (distinct sessions) with [`PG_STEP_BATCH`]; returns
/// for each whether it was applied.
pub(super) async fn write_pg_step_batch(
    conn: &mut sqlx::PgConnection,
    members: &[&super::step_batch::PgStep],
) -> Result<Vec<bool>, sqlx::Error> {
    let idx = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    let col = |f: fn(&super::step_batch::PgStep) -> Option<&str>| {
        members.iter().map(|m| f(m)).collect::<Vec<_>>()
    };
    let durable = members.iter().any(|m| m.durable);
    let now = members.iter().map(|m| m.now).max().unwrap_or(0);
    let mut ev = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut tasks: Vec<(i32, &NewTask, &str)> = Vec::new();
    let mut attempts: Vec<(i32, &AttemptRecord)> = Vec::new();
    for (i, m) in members.iter().enumerate() {
        for e in &m.events {
            ev.0.push(idx(i));
            ev.1.push(e.0);
            ev.2.push(e.1.as_str());
            ev.3.push(e.2.as_str());
        }
        tasks.extend(
            m.tasks
                .iter()
                .zip(&m.inputs)
                .map(|(t, input)| (idx(i), t, input.as_str())),
        );
        attempts.extend(m.attempts.iter().map(|a| (idx(i), a)));
    }
    let t =
        |f: fn(&NewTask) -> Option<&str>| tasks.iter().map(|(_, t, _)| f(t)).collect::<Vec<_>>();
    let a = attempts.iter().map(|(_, a)| *a);
    let row: (Option<Vec<i32>>, i64) = sqlx::query_as(PG_STEP_BATCH)
        .bind((0..members.len()).map(idx).collect::<Vec<_>>())
        .bind(
            members
                .iter()
                .map(|m| m.session_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(members.iter().map(|m| m.expected_seq).collect::<Vec<_>>())
        .bind(
            members
                .iter()
                .map(|m| m.status.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(members.iter().map(|m| m.state.as_str()).collect::<Vec<_>>())
        .bind(members.iter().map(|m| m.new_seq).collect::<Vec<_>>())
        .bind(col(|m| m.finish.as_ref().map(|f| f.0.as_str())))
        .bind(col(|m| m.finish.as_ref().map(|f| f.1.as_str())))
        .bind(col(|m| m.idempotency.as_ref().map(|i| i.0.as_str())))
        .bind(col(|m| m.idempotency.as_ref().map(|i| i.1.as_str())))
        .bind(col(|m| m.idempotency.as_ref().map(|i| i.2.as_str())))
        .bind(col(|m| m.notify.as_deref()))
        .bind(now)
        .bind(ev.0)
        .bind(ev.1)
        .bind(ev.2)
        .bind(ev.3)
        .bind(tasks.iter().map(|x| x.0).collect::<Vec<_>>())
        .bind(t(|t| Some(t.id.as_str())))
        .bind(t(|t| Some(t.node.as_str())))
        .bind(t(|t| Some(t.kind.as_str())))
        .bind(t(|t| Some(t.state.as_str())))
        .bind(tasks.iter().map(|x| x.1.due_at).collect::<Vec<_>>())
        .bind(tasks.iter().map(|x| x.1.attempts).collect::<Vec<_>>())
        .bind(t(|t| t.lease_owner.as_deref()))
        .bind(t(|t| t.queue.as_deref()))
        .bind(t(|t| t.event_name.as_deref()))
        .bind(t(|t| t.correlation.as_deref()))
        .bind(t(|t| t.mock.as_deref()))
        .bind(tasks.iter().map(|x| x.2).collect::<Vec<_>>())
        .bind(attempts.iter().map(|x| x.0).collect::<Vec<_>>())
        .bind(a.clone().map(|a| a.task_id.as_str()).collect::<Vec<_>>())
        .bind(a.clone().map(|a| a.attempt).collect::<Vec<_>>())
        .bind(a.clone().map(|a| a.session_id.as_str()).collect::<Vec<_>>())
        .bind(a.clone().map(|a| a.node.as_str()).collect::<Vec<_>>())
        .bind(a.clone().map(|a| a.worker.as_str()).collect::<Vec<_>>())
        .bind(a.clone().map(|a| a.started_at).collect::<Vec<_>>())
        .bind(a.clone().map(|a| a.finished_at).collect::<Vec<_>>())
        .bind(a.clone().map(|a| a.outcome.as_str()).collect::<Vec<_>>())
        .bind(a.clone().map(|a| a.status_code).collect::<Vec<_>>())
        .bind(a.map(|a| a.error.as_deref()).collect::<Vec<_>>())
        .bind(if durable { "on" } else { "off" })
        .bind(SESSION_CHANNEL)
        .fetch_one(conn)
        .await?;
    let mut applied = vec![false; members.len()];
    for i in row.0.unwrap_or_default() {
        if let Some(slot) = usize::try_from(i).ok().and_then(|i| applied.get_mut(i)) {
            *slot = true;
        }
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_outcomes_round_trip_and_junk_is_corrupt() {
        for s in TaskState::ALL {
            assert_eq!(TaskState::parse(s.as_str()).unwrap(), s);
        }
        for o in AttemptOutcome::ALL {
            assert_eq!(AttemptOutcome::parse(o.as_str()).unwrap(), o);
        }
        assert!(matches!(
            TaskState::parse("Ready"),
            Err(StoreError::Corrupt {
                table: "step_tasks",
                ..
            })
        ));
        assert!(matches!(
            AttemptOutcome::parse(""),
            Err(StoreError::Corrupt {
                table: "step_attempts",
                ..
            })
        ));
    }
}

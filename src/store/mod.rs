//! The store: sessions, their append-only event log, idempotency records and
//! published flow versions, in SQLite (a file in WAL mode, the embedded
//! default) or PostgreSQL (shared by many stateless Baton replicas).
//!
//! The store is the single source of truth: nothing mutable is cached here,
//! every read goes to the database. Concurrency is optimistic: a session's
//! `seq` (its number of events) is the version token that [`Store::commit`]
//! checks and bumps in the same transaction that appends the events.
//!
//! One SQL text serves both backends wherever the dialects agree (sqlx's
//! SQLite driver understands `$1` placeholders). The exception is `commit`,
//! the hot path, which is a single statement on each backend so it costs one
//! round trip and no explicit transaction: a data-modifying CTE on
//! PostgreSQL, an insert into a view whose trigger does the work on SQLite
//! (see `migrations/sqlite`). Commits go through one writer task per store
//! that writes whatever queued up meanwhile as one statement (`group.rs`).
//! Step commits ([`Store::commit_step`]) are one statement each on
//! PostgreSQL too, batched the same way (`step_batch.rs`); on SQLite they
//! are a transaction on its single writing connection. A SQLite file's WAL
//! is checkpointed by a task beside that connection, not inside its
//! commits (`checkpoint.rs`).

mod checkpoint;
mod error;
mod group;
pub mod handoff;
mod records;

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, PgConnection, Postgres, Sqlite, Transaction};

pub use error::StoreError;
use error::{is_foreign_key_violation, is_unique_violation};
#[doc(hidden)]
pub use group::{GroupCommitStats, MAX_BATCH as GROUP_COMMIT_MAX_BATCH, MAX_HELD_BATCHES};
pub use records::{
    EventRecord, FlowVersionRecord, IdempotencyRecord, NewEvent, NewIdempotency, NewSession,
    SessionRecord,
};

static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// Most events one `create_session` or `commit` may write. Keeps a write to one
/// statement (well under both databases' bind-parameter limits) and bounds
/// what a single request can append.
pub const MAX_EVENTS_PER_WRITE: usize = 1000;

/// The author of versions recorded from the flows directory.
pub const FILES_AUTHOR: &str = "files";

/// How often `ensure_flow_version` re-reads after losing an insert race.
const FLOW_VERSION_ATTEMPTS: usize = 8;

/// A pooled PostgreSQL connection idle this long is pinged before it is
/// handed out. sqlx's default pings on every acquire: a round trip in
/// front of every statement, on the path of every request and step
/// commit. A connection that answered within the last second is trusted;
/// one that went away since (a restarted server) fails its statement with
/// `STORE_UNAVAILABLE`, and sqlx drops it when it comes back. SQLite
/// pools never ping: an embedded connection cannot hang up.
const PING_IDLE_AFTER: Duration = Duration::from_secs(1);

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Connection settings.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Pool size: PostgreSQL connections, or SQLite read connections (SQLite
    /// writes always go through one dedicated connection).
    pub max_connections: u32,
    /// How long an operation waits for a free connection, and how long
    /// `connect` waits for PostgreSQL to answer.
    pub acquire_timeout: Duration,
    /// How long SQLite waits for a lock held by another process.
    pub sqlite_busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            sqlite_busy_timeout: Duration::from_secs(5),
        }
    }
}

/// Handle to the store. Cheap to clone: the pools inside are shared.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Inner,
    /// Every `commit` goes through this one writer (see [`group`]).
    writer: group::Writer,
    /// SQLite: where that writer hands applied commits to this process's
    /// funnel aggregator (see [`handoff`]).
    handoff: handoff::Sender,
    /// PostgreSQL: every `commit_step` goes through these writers (see
    /// [`step_batch`]); SQLite writes step commits directly.
    step_writer: Option<step_batch::StepWriter>,
    /// SQLite files: keeps the WAL checkpoint task running (see
    /// [`checkpoint`]).
    _checkpointer: Option<Arc<checkpoint::Checkpointer>>,
}

#[derive(Debug, Clone)]
enum Inner {
    /// Writers queue for the single write connection inside the pool (async,
    /// FIFO) instead of polling in SQLite's busy handler; WAL lets the read
    /// connections run alongside it. For `:memory:` both are the same
    /// one-connection pool, since every in-memory connection would otherwise
    /// see its own database.
    Sqlite {
        read: SqlitePool,
        write: SqlitePool,
    },
    Postgres(PgPool),
}

/// Direct access to the pools, for benchmarks and diagnostics. Baton's own
/// code goes through the typed methods of [`Store`].
#[derive(Debug, Clone, Copy)]
pub enum RawPools<'a> {
    Sqlite {
        read: &'a SqlitePool,
        write: &'a SqlitePool,
    },
    Postgres(&'a PgPool),
}

/// Runs `$body` with `$pool` bound to the read pool of whichever backend
/// `$store` uses. The body is compiled once per backend.
macro_rules! with_read_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.inner {
            Inner::Sqlite { read: $pool, .. } => $body,
            Inner::Postgres($pool) => $body,
        }
    };
}

/// Like [`with_read_pool!`] for the pool that takes writes.
macro_rules! with_write_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.inner {
            Inner::Sqlite { write: $pool, .. } => $body,
            Inner::Postgres($pool) => $body,
        }
    };
}

/// Runs `$body` (a `Result<T, StoreError>`) inside a write transaction on
/// whichever backend, binding `$tx`; commits when it is `Ok`, rolls back
/// (by dropping the transaction) otherwise.
macro_rules! in_write_tx {
    ($store:expr, |$tx:ident| $body:block) => {
        match &$store.inner {
            Inner::Sqlite { write, .. } => {
                let mut $tx = write.begin_write().await?;
                let out: Result<_, StoreError> = async { $body }.await;
                if out.is_ok() {
                    $tx.commit().await?;
                }
                out
            }
            Inner::Postgres(pool) => {
                let mut $tx = pool.begin_write().await?;
                let out: Result<_, StoreError> = async { $body }.await;
                if out.is_ok() {
                    $tx.commit().await?;
                }
                out
            }
        }
    };
}

/// Inserts `$tasks` through `$tx` (a macro: the body is compiled per backend).
macro_rules! insert_tasks {
    ($tx:ident, $session_id:expr, $tasks:expr, $now:expr) => {
        for t in $tasks {
            sqlx::query($crate::store::tasks::INSERT_TASK)
                .bind(&t.id)
                .bind($session_id)
                .bind(&t.node)
                .bind(&t.kind)
                .bind(t.state.as_str())
                .bind(t.due_at)
                .bind(t.attempts)
                .bind(&t.lease_owner)
                .bind(&t.queue)
                .bind(&t.event_name)
                .bind(&t.correlation)
                .bind(&t.mock)
                .bind(to_json("a task input", &t.input)?)
                .bind($now)
                .execute(&mut *$tx)
                .await?;
        }
    };
}

pub mod flows;
pub mod search;
mod step_batch;
pub mod tasks;
// After the pool macros, which it uses.
pub mod experiments;
pub mod feed;
mod retention;
pub mod rollups;
pub mod sinks;
pub use retention::{SessionSweep, Swept};

/// Starting a write transaction differs per backend.
trait BeginWrite {
    type Db: sqlx::Database;
    fn begin_write(
        &self,
    ) -> impl Future<Output = Result<Transaction<'static, Self::Db>, sqlx::Error>> + Send;
}

impl BeginWrite for SqlitePool {
    type Db = Sqlite;
    /// `BEGIN IMMEDIATE` takes the write lock up front: a deferred transaction
    /// that reads first and then writes can fail with SQLITE_BUSY on the lock
    /// upgrade, which the busy timeout does not retry.
    fn begin_write(
        &self,
    ) -> impl Future<Output = Result<Transaction<'static, Sqlite>, sqlx::Error>> + Send {
        self.begin_with("BEGIN IMMEDIATE")
    }
}

impl BeginWrite for PgPool {
    type Db = Postgres;
    fn begin_write(
        &self,
    ) -> impl Future<Output = Result<Transaction<'static, Postgres>, sqlx::Error>> + Send {
        self.begin()
    }
}

const SELECT_FLOW_VERSION: &str = "SELECT flow_id, version, content_hash, definition, created_at, \
     author, message, source FROM flow_versions WHERE flow_id = $1 AND version = $2";
const SELECT_LATEST_FLOW_VERSION: &str = "SELECT flow_id, version, content_hash, definition, \
     created_at, author, message, source FROM flow_versions WHERE flow_id = $1 \
     ORDER BY version DESC LIMIT 1";
const INSERT_FLOW_VERSION: &str = "INSERT INTO flow_versions \
     (flow_id, version, content_hash, definition, created_at) VALUES ($1, $2, $3, $4, $5)";
const SELECT_SESSION: &str = "SELECT id, flow_id, flow_version, user_id, token_hash, status, seq, \
     state, created_at, updated_at FROM sessions WHERE id = $1";
const SELECT_SESSION_SEQ: &str = "SELECT seq FROM sessions WHERE id = $1";
const INSERT_SESSION: &str = "INSERT INTO sessions (id, flow_id, flow_version, user_id, \
     token_hash, status, seq, state, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)";
/// SQLite `commit`: one INSERT into the `session_commits` view, whose trigger
/// (see the migration) checks the seq and the idempotency key, updates the
/// session and appends the events and the key, atomically as one statement.
const SQLITE_COMMIT: &str = "INSERT INTO session_commits (session_id, expected_seq, status, \
     state, at, events, idem_key, idem_request_hash, idem_response) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
/// SQLite `create_session`: one INSERT into the `session_starts` view,
/// whose trigger inserts the session, its events and its tasks.
const SQLITE_START_SESSION: &str = "INSERT INTO session_starts (id, flow_id, flow_version, \
     user_id, token_hash, status, state, at, events, tasks) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
/// A keyed answer that is not part of a commit (a stale screen), or that
/// changed after its commit (steps finished within the budget): stored or
/// replaced, but never under another request's key.
const UPSERT_IDEMPOTENCY: &str = "INSERT INTO idempotency (session_id, key, request_hash, \
     response, created_at) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (session_id, key) DO UPDATE SET response = excluded.response \
     WHERE idempotency.request_hash = excluded.request_hash";
const SELECT_IDEMPOTENCY: &str = "SELECT session_id, key, request_hash, response, created_at \
     FROM idempotency WHERE session_id = $1 AND key = $2";
const SELECT_EVENTS: &str = "SELECT seq, kind, payload, created_at FROM session_events \
     WHERE session_id = $1 AND seq > $2 ORDER BY seq LIMIT $3";

/// The PostgreSQL commit statements for the common small event counts are
/// built once, so the hot path neither formats SQL nor misses sqlx's
/// per-connection statement cache.
const PREBUILT_EVENT_COUNTS: usize = 8;

/// PostgreSQL `commit` as one statement, so one round trip and an implicit
/// transaction: the UPDATE guards on the expected seq, and the inserts select
/// from its result, so a lost race inserts nothing. Parameters: `$1` id,
/// `$2` expected seq, `$3` status, `$4` state, `$5` new seq, `$6` now,
/// then `$7..$9` idempotency (key, request hash, response) when present,
/// then (seq, kind, payload) per event.
fn pg_commit_sql(n_events: usize, with_idempotency: bool) -> Cow<'static, str> {
    static PREBUILT: LazyLock<Vec<String>> = LazyLock::new(|| {
        (1..=PREBUILT_EVENT_COUNTS)
            .flat_map(|n| [build_pg_commit_sql(n, false), build_pg_commit_sql(n, true)])
            .collect()
    });
    let index = n_events.wrapping_sub(1).wrapping_mul(2) + usize::from(with_idempotency);
    match PREBUILT.get(index) {
        Some(sql) if n_events >= 1 => Cow::Borrowed(sql.as_str()),
        _ => Cow::Owned(build_pg_commit_sql(n_events, with_idempotency)),
    }
}

fn build_pg_commit_sql(n_events: usize, with_idempotency: bool) -> String {
    let mut sql = String::from(
        "WITH upd AS (UPDATE sessions SET status = $3, state = $4, seq = $5, updated_at = $6 \
         WHERE id = $1 AND seq = $2 RETURNING seq)",
    );
    let mut next = 7;
    if with_idempotency {
        sql.push_str(
            ", idem AS (INSERT INTO idempotency (session_id, key, request_hash, response, \
             created_at) SELECT $1, $7, $8, $9, $6 FROM upd)",
        );
        next = 10;
    }
    sql.push_str(
        ", ev AS (INSERT INTO session_events (session_id, seq, kind, payload, created_at) \
         SELECT $1, e.seq, e.kind, e.payload, $6 FROM upd CROSS JOIN (VALUES ",
    );
    for i in 0..n_events {
        let p = next + 3 * i;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "(${}::BIGINT, ${}::TEXT, ${}::TEXT)",
            p,
            p + 1,
            p + 2
        ));
    }
    sql.push_str(") AS e (seq, kind, payload)) SELECT seq FROM upd");
    sql
}

#[derive(sqlx::FromRow)]
struct FlowVersionRow {
    flow_id: String,
    version: i32,
    content_hash: String,
    definition: String,
    created_at: i64,
    author: String,
    message: String,
    source: Option<String>,
}

impl FlowVersionRow {
    fn into_record(self) -> Result<FlowVersionRecord, StoreError> {
        Ok(FlowVersionRecord {
            definition: parse_json("flow_versions", "definition", &self.definition)?,
            flow_id: self.flow_id,
            version: self.version,
            content_hash: self.content_hash,
            created_at: self.created_at,
            author: self.author,
            message: self.message,
            source: self.source,
        })
    }
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    id: String,
    flow_id: String,
    flow_version: i32,
    user_id: String,
    token_hash: String,
    status: String,
    seq: i64,
    state: String,
    created_at: i64,
    updated_at: i64,
}

impl SessionRow {
    fn into_record(self) -> Result<SessionRecord, StoreError> {
        Ok(SessionRecord {
            state: parse_json("sessions", "state", &self.state)?,
            id: self.id,
            flow_id: self.flow_id,
            flow_version: self.flow_version,
            user_id: self.user_id,
            token_hash: self.token_hash,
            status: self.status,
            seq: self.seq,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct EventRow {
    seq: i64,
    kind: String,
    payload: String,
    created_at: i64,
}

impl EventRow {
    fn into_record(self) -> Result<EventRecord, StoreError> {
        Ok(EventRecord {
            payload: parse_json("session_events", "payload", &self.payload)?,
            seq: self.seq,
            kind: self.kind,
            created_at: self.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct IdempotencyRow {
    session_id: String,
    key: String,
    request_hash: String,
    response: String,
    created_at: i64,
}

impl IdempotencyRow {
    fn into_record(self) -> Result<IdempotencyRecord, StoreError> {
        Ok(IdempotencyRecord {
            response: parse_json("idempotency", "response", &self.response)?,
            session_id: self.session_id,
            key: self.key,
            request_hash: self.request_hash,
            created_at: self.created_at,
        })
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(
    table: &'static str,
    column: &str,
    text: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        table,
        detail: format!("column {column} is not valid JSON: {e}"),
    })
}

fn to_json<T: Serialize + ?Sized>(what: &str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::InvalidInput {
        reason: format!("{what} cannot be serialized as JSON: {e}"),
    })
}

/// Events for the SQLite commit trigger: `[[kind, payload], …]` with each
/// payload as a JSON string holding the payload's JSON text, so the trigger
/// stores exactly the bytes serde_json wrote.
fn sqlite_events_json(events: &[NewEvent], payloads: &[String]) -> Result<String, StoreError> {
    let pairs: Vec<(&str, &str)> = events
        .iter()
        .zip(payloads)
        .map(|(e, p)| (e.kind.as_str(), p.as_str()))
        .collect();
    serde_json::to_string(&pairs).map_err(|e| StoreError::InvalidInput {
        reason: format!("events cannot be serialized as JSON: {e}"),
    })
}

/// Why inserting the session row of `s` failed, in the store's terms.
fn session_not_created(s: &NewSession, e: sqlx::Error) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::SessionExists { id: s.id.clone() }
    } else if is_foreign_key_violation(&e) {
        StoreError::NotFound {
            what: format!("flow version {} of flow {}", s.flow_version, s.flow_id),
        }
    } else {
        e.into()
    }
}

/// The message of a `RAISE(ABORT, …)` in one of our SQLite triggers.
fn raise_message(e: &sqlx::Error) -> Option<&str> {
    match e {
        sqlx::Error::Database(db) if db.message().starts_with("baton:") => Some(db.message()),
        _ => None,
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn check_event_count(n: usize) -> Result<(), StoreError> {
    if n > MAX_EVENTS_PER_WRITE {
        return Err(StoreError::InvalidInput {
            reason: format!("{n} events in one write; at most {MAX_EVENTS_PER_WRITE} are allowed"),
        });
    }
    Ok(())
}

fn seq_after(expected_seq: i64, n: usize) -> i64 {
    // n <= MAX_EVENTS_PER_WRITE, so the cast is exact.
    expected_seq + n as i64
}

/// Errors while opening a connection all mean "cannot reach the database",
/// except a malformed URL.
fn connect_error(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Configuration(reason) => StoreError::BadUrl {
            reason: reason.to_string(),
        },
        source => StoreError::Unavailable { source },
    }
}

impl Store {
    /// Connects and runs the embedded migrations.
    ///
    /// `url` is `sqlite://path/to/baton.db` (file and parent directories
    /// created if missing), `sqlite::memory:` (tests only: one connection,
    /// gone when the store is dropped) or `postgres://…`.
    pub async fn connect(url: &str, opts: StoreOptions) -> Result<Store, StoreError> {
        let url = url.trim();
        let scheme = url.split_once(':').map(|(scheme, _)| scheme).unwrap_or("");
        match scheme {
            "sqlite" => Self::connect_sqlite(url, &opts).await,
            "postgres" | "postgresql" => Self::connect_postgres(url, &opts).await,
            "" => Err(StoreError::BadUrl {
                reason: "the store URL is empty or has no scheme".to_owned(),
            }),
            // Only echo something that looks like a scheme: whatever precedes
            // the first `:` of a mangled URL could be a user name or password.
            s if s.len() <= 16 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+') => {
                Err(StoreError::BadUrl {
                    reason: format!("unsupported database `{s}`"),
                })
            }
            _ => Err(StoreError::BadUrl {
                reason: "the store URL has no recognizable scheme".to_owned(),
            }),
        }
    }

    async fn connect_sqlite(url: &str, opts: &StoreOptions) -> Result<Store, StoreError> {
        let options = SqliteConnectOptions::from_str(url).map_err(connect_error)?;
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if !in_memory {
            let file = options.get_filename();
            if file.as_os_str().is_empty() {
                return Err(StoreError::BadUrl {
                    reason: "the SQLite URL names no database file".to_owned(),
                });
            }
            if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| StoreError::Unavailable { source: e.into() })?;
            }
        }
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(opts.sqlite_busy_timeout)
            .foreign_keys(true)
            // The commit trigger runs several statements and needs a
            // statement journal; in memory it costs no temp-file
            // open/write/close per commit.
            .pragma("temp_store", "memory");
        // A file's checkpoints run beside the writer, not in its commits
        // (see `checkpoint.rs`); read connections never checkpoint on their
        // own, and an in-memory database has no WAL.
        let write_options = if in_memory {
            options.clone()
        } else {
            options
                .clone()
                .pragma("wal_autocheckpoint", checkpoint::BACKSTOP_PAGES.to_string())
                .pragma("journal_size_limit", checkpoint::WAL_FILE_LIMIT.to_string())
        };

        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(opts.acquire_timeout)
            .test_before_acquire(false);
        let write = if in_memory {
            // The database lives as long as its last connection: keep that one open.
            write
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            write
        };
        // Eager: a file that cannot be opened fails here, not on first use.
        let write = write
            .connect_with(write_options)
            .await
            .map_err(connect_error)?;
        SQLITE_MIGRATOR.run(&write).await?;

        let read = if in_memory {
            write.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(opts.max_connections.max(1))
                .acquire_timeout(opts.acquire_timeout)
                .test_before_acquire(false)
                .connect_lazy_with(options)
        };
        let checkpointer = (!in_memory).then(|| checkpoint::spawn(read.clone(), write.clone()));
        let handoff = handoff::Sender::default();
        Ok(Store {
            writer: group::Writer::spawn(group::Target::Sqlite(write.clone(), handoff.clone())),
            handoff,
            step_writer: None,
            inner: Inner::Sqlite { read, write },
            _checkpointer: checkpointer,
        })
    }

    async fn connect_postgres(url: &str, opts: &StoreOptions) -> Result<Store, StoreError> {
        let mut options = PgConnectOptions::from_str(url).map_err(connect_error)?;
        if options.get_application_name().is_none() {
            options = options.application_name("baton");
        }
        // One plain connection first: the pool retries a refused connection
        // until its timeout and then reports only "timed out"; this reports
        // the real cause (refused, bad password, no such database…).
        let mut conn =
            tokio::time::timeout(opts.acquire_timeout, PgConnection::connect_with(&options))
                .await
                .map_err(|_| StoreError::Unavailable {
                    source: sqlx::Error::PoolTimedOut,
                })?
                .map_err(connect_error)?;
        // The migrator takes an advisory lock, so replicas starting together
        // migrate once.
        POSTGRES_MIGRATOR.run(&mut conn).await?;
        let _ = conn.close().await;

        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .acquire_timeout(opts.acquire_timeout)
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IDLE_AFTER {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_lazy_with(options);
        Ok(Store {
            writer: group::Writer::spawn(group::Target::Postgres(pool.clone())),
            handoff: handoff::Sender::default(),
            step_writer: Some(step_batch::StepWriter::spawn(pool.clone())),
            inner: Inner::Postgres(pool),
            _checkpointer: None,
        })
    }

    pub fn backend(&self) -> Backend {
        match self.inner {
            Inner::Sqlite { .. } => Backend::Sqlite,
            Inner::Postgres(_) => Backend::Postgres,
        }
    }

    /// The underlying pools; see [`RawPools`].
    pub fn raw_pools(&self) -> RawPools<'_> {
        match &self.inner {
            Inner::Sqlite { read, write } => RawPools::Sqlite { read, write },
            Inner::Postgres(pool) => RawPools::Postgres(pool),
        }
    }

    /// Closes every connection; later calls fail with `STORE_UNAVAILABLE`.
    /// Waits for in-flight operations to finish.
    pub async fn close(&self) {
        match &self.inner {
            Inner::Sqlite { read, write } => {
                read.close().await;
                write.close().await;
            }
            Inner::Postgres(pool) => pool.close().await,
        }
    }

    /// Checks that the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_read_pool!(self, |pool| {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Migrations this binary knows that the database has not applied
    /// (someone restored an older database under a running server).
    pub async fn missing_migrations(&self) -> Result<Vec<i64>, StoreError> {
        let applied: Vec<i64> = with_read_pool!(self, |pool| {
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(pool)
                .await?
        });
        let migrator = match self.inner {
            Inner::Sqlite { .. } => &SQLITE_MIGRATOR,
            Inner::Postgres(_) => &POSTGRES_MIGRATOR,
        };
        Ok(migrator
            .iter()
            .map(|m| m.version)
            .filter(|v| !applied.contains(v))
            .collect())
    }

    /// Returns the version for this content: the latest version of `flow_id`
    /// if its hash equals `hash`, otherwise a new version latest+1. Safe when
    /// several replicas publish at once: the loser of an insert race re-reads.
    pub async fn ensure_flow_version(
        &self,
        flow_id: &str,
        hash: &str,
        definition: &Value,
    ) -> Result<FlowVersionRecord, StoreError> {
        let definition_text = to_json("the flow definition", definition)?;
        for _ in 0..FLOW_VERSION_ATTEMPTS {
            let latest = self.latest_flow_version(flow_id).await?;
            let version = match &latest {
                Some(latest) if latest.content_hash == hash => return Ok(latest.clone()),
                Some(latest) => {
                    latest
                        .version
                        .checked_add(1)
                        .ok_or_else(|| StoreError::InvalidInput {
                            reason: format!("flow {flow_id} has run out of version numbers"),
                        })?
                }
                None => 1,
            };
            let now = now_ms();
            let inserted = with_write_pool!(self, |pool| {
                sqlx::query(INSERT_FLOW_VERSION)
                    .bind(flow_id)
                    .bind(version)
                    .bind(hash)
                    .bind(definition_text.as_str())
                    .bind(now)
                    .execute(pool)
                    .await
                    .map(|_| ())
            });
            match inserted {
                Ok(_) => {
                    return Ok(FlowVersionRecord {
                        flow_id: flow_id.to_owned(),
                        version,
                        content_hash: hash.to_owned(),
                        definition: definition.clone(),
                        created_at: now,
                        author: FILES_AUTHOR.to_owned(),
                        message: String::new(),
                        source: None,
                    });
                }
                // Another replica published this version number first; its
                // content may well be ours.
                Err(e) if is_unique_violation(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::FlowVersionContended {
            flow_id: flow_id.to_owned(),
        })
    }

    /// The highest published version of `flow_id`, if any.
    pub async fn latest_flow_version(
        &self,
        flow_id: &str,
    ) -> Result<Option<FlowVersionRecord>, StoreError> {
        let row: Option<FlowVersionRow> = with_read_pool!(self, |pool| {
            sqlx::query_as(SELECT_LATEST_FLOW_VERSION)
                .bind(flow_id)
                .fetch_optional(pool)
                .await?
        });
        row.map(FlowVersionRow::into_record).transpose()
    }

    /// One published version of a flow, exactly as it was published.
    pub async fn flow_version(
        &self,
        flow_id: &str,
        version: i32,
    ) -> Result<Option<FlowVersionRecord>, StoreError> {
        let row: Option<FlowVersionRow> = with_read_pool!(self, |pool| {
            sqlx::query_as(SELECT_FLOW_VERSION)
                .bind(flow_id)
                .bind(version)
                .fetch_optional(pool)
                .await?
        });
        row.map(FlowVersionRow::into_record).transpose()
    }

    /// Inserts the session and its first events (seq 1..=n) in one
    /// transaction; the session's `seq` is n. The flow version must exist.
    pub async fn create_session(
        &self,
        s: &NewSession,
        events: &[NewEvent],
    ) -> Result<(), StoreError> {
        self.create_session_with_tasks(s, events, &[], true).await
    }

    /// [`Store::create_session`] plus the backend-step tasks the new
    /// session waits for, in the same transaction.
    #[tracing::instrument(name = "store.create_session", level = "debug", skip_all)]
    pub async fn create_session_with_tasks(
        &self,
        s: &NewSession,
        events: &[NewEvent],
        tasks: &[tasks::NewTask],
        durable: bool,
    ) -> Result<(), StoreError> {
        check_event_count(events.len())?;
        let state = to_json("the session state", &s.state)?;
        let payloads = events
            .iter()
            .map(|e| to_json("an event payload", &e.payload))
            .collect::<Result<Vec<_>, _>>()?;
        let seq = seq_after(0, events.len());
        let now = now_ms();
        let pool = match &self.inner {
            Inner::Sqlite { write, .. } => {
                let started = sqlx::query(SQLITE_START_SESSION)
                    .bind(&s.id)
                    .bind(&s.flow_id)
                    .bind(s.flow_version)
                    .bind(&s.user_id)
                    .bind(&s.token_hash)
                    .bind(&s.status)
                    .bind(state.as_str())
                    .bind(now)
                    .bind(sqlite_events_json(events, &payloads)?)
                    .bind(tasks::sqlite_tasks_json(tasks)?)
                    .execute(write)
                    .await;
                if let Err(e) = started {
                    return Err(session_not_created(s, e));
                }
                self.hand_over(&s.id, 0, events, payloads, now);
                return Ok(());
            }
            Inner::Postgres(pool) if !events.is_empty() => {
                return self
                    .create_session_pg(pool, s, &state, &payloads, events, tasks, durable, now)
                    .await;
            }
            Inner::Postgres(pool) => pool,
        };
        // PostgreSQL, a session without events: too rare to want a
        // statement of its own.
        let mut tx = pool.begin_write().await?;
        let inserted = sqlx::query(INSERT_SESSION)
            .bind(&s.id)
            .bind(&s.flow_id)
            .bind(s.flow_version)
            .bind(&s.user_id)
            .bind(&s.token_hash)
            .bind(&s.status)
            .bind(seq)
            .bind(state.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await;
        if let Err(e) = inserted {
            return Err(session_not_created(s, e));
        }
        insert_tasks!(tx, &s.id, tasks, now);
        tx.commit().await?;
        self.hand_over(&s.id, 0, events, payloads, now);
        Ok(())
    }

    /// Hands events this process wrote directly (not through the group
    /// writer) to its funnel aggregator, when it takes them (see
    /// [`handoff`]).
    fn hand_over(
        &self,
        session_id: &str,
        after_seq: i64,
        events: &[NewEvent],
        payloads: Vec<String>,
        at: i64,
    ) {
        if self.handoff.wanted() && !events.is_empty() {
            self.handoff.hand(handoff::Handed {
                session_id: session_id.to_owned(),
                first_seq: after_seq + 1,
                count: events.len() as i64,
                at,
                events: handoff::HandedEvents::Pairs(
                    events
                        .iter()
                        .map(|e| e.kind.clone())
                        .zip(payloads)
                        .collect(),
                ),
            });
        }
    }

    /// The session's snapshot, or `None` if there is no such session.
    pub async fn session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let row: Option<SessionRow> = with_read_pool!(self, |pool| {
            sqlx::query_as(SELECT_SESSION)
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        row.map(SessionRow::into_record).transpose()
    }

    /// Advances a session atomically: sets its status and state, appends
    /// `events` as seq `expected_seq + 1..`, and records the idempotency key
    /// if given. Returns the new seq.
    ///
    /// Fails with `STORE_CONFLICT` if the session is no longer at
    /// `expected_seq`, `IDEMPOTENCY_KEY_TAKEN` if the key was already used
    /// (nothing is written in either case), `STORE_NOT_FOUND` if there is no
    /// such session. At least one event is required: the seq is the
    /// concurrency token, and a state change without an event could not be
    /// audited from the log.
    ///
    /// `state` is anything that serializes to JSON (a `Value`, or the
    /// caller's own state type, which then is serialized only once).
    #[tracing::instrument(name = "store.commit", level = "debug", skip_all, fields(session = %session_id))]
    pub async fn commit(
        &self,
        session_id: &str,
        expected_seq: i64,
        status: &str,
        state: &(impl Serialize + ?Sized),
        events: &[NewEvent],
        idempotency: Option<&NewIdempotency>,
    ) -> Result<i64, StoreError> {
        if events.is_empty() {
            return Err(StoreError::InvalidInput {
                reason: "a commit needs at least one event".to_owned(),
            });
        }
        check_event_count(events.len())?;
        if expected_seq < 0 {
            return Err(StoreError::InvalidInput {
                reason: format!("expected seq {expected_seq} is negative"),
            });
        }
        let state = to_json("the session state", state)?;
        let payloads = events
            .iter()
            .map(|e| to_json("an event payload", &e.payload))
            .collect::<Result<Vec<_>, _>>()?;
        let new_seq = seq_after(expected_seq, events.len());
        let events = match self.backend() {
            Backend::Sqlite => group::Events::SqliteJson(sqlite_events_json(events, &payloads)?),
            Backend::Postgres => group::Events::Rows(
                events
                    .iter()
                    .map(|e| e.kind.clone())
                    .zip(payloads)
                    .collect(),
            ),
        };
        let idem = idempotency.map(|i| group::Idempotency {
            key: i.key.clone(),
            request_hash: i.request_hash.clone(),
            response: i.response.get().to_owned(),
        });
        let commit = group::Commit {
            session_id: session_id.to_owned(),
            expected_seq,
            new_seq,
            status: status.to_owned(),
            state,
            events,
            idempotency: idem,
            step: None,
        };
        match self.writer.commit(commit).await {
            Ok(()) => Ok(new_seq),
            Err(rejected) => Err(self
                .why_rejected(rejected, session_id, expected_seq, idempotency, None)
                .await),
        }
    }

    /// The error for a commit the writer refused.
    async fn why_rejected(
        &self,
        rejected: group::Rejected,
        session_id: &str,
        expected_seq: i64,
        idempotency: Option<&NewIdempotency>,
        finishing: Option<&str>,
    ) -> StoreError {
        match rejected {
            group::Rejected::StaleSeq => self.why_not_at(session_id, expected_seq).await,
            group::Rejected::KeyTaken => StoreError::IdempotencyKeyTaken {
                session_id: session_id.to_owned(),
                key: idempotency.map(|i| i.key.clone()).unwrap_or_default(),
            },
            group::Rejected::TaskFinished => StoreError::TaskFinished {
                task_id: finishing.unwrap_or_default().to_owned(),
            },
            group::Rejected::LogOutOfStep => StoreError::Corrupt {
                table: "session_events",
                detail: format!(
                    "session {session_id} is at seq {expected_seq} but its log already has \
                     later events"
                ),
            },
            group::Rejected::Db(e) => e.into(),
        }
    }

    /// Counters of the group-commit writer, for tests (which need several
    /// commits queued into one batch) and diagnostics.
    #[doc(hidden)]
    pub fn group_commit_stats(&self) -> GroupCommitStats {
        self.writer.stats()
    }

    /// Step commits written as members of a batch statement (PostgreSQL;
    /// always 0 on SQLite), for tests.
    #[doc(hidden)]
    pub fn step_batch_members(&self) -> u64 {
        self.step_writer.as_ref().map_or(0, |w| w.batched())
    }

    /// Why a guarded UPDATE matched no row: the session is gone or has moved on.
    async fn why_not_at(&self, session_id: &str, expected_seq: i64) -> StoreError {
        let actual: Result<Option<i64>, sqlx::Error> = with_read_pool!(self, |pool| {
            sqlx::query_scalar(SELECT_SESSION_SEQ)
                .bind(session_id)
                .fetch_optional(pool)
                .await
        });
        match actual {
            Ok(Some(actual)) => StoreError::Conflict {
                session_id: session_id.to_owned(),
                expected: expected_seq,
                actual,
            },
            Ok(None) => StoreError::SessionGone {
                session_id: session_id.to_owned(),
            },
            Err(e) => e.into(),
        }
    }

    /// Records `idem` as the answer to its key, replacing an earlier answer
    /// to the same request (not to another one). Durable when it returns.
    pub async fn record_response(
        &self,
        session_id: &str,
        idem: &NewIdempotency,
    ) -> Result<(), StoreError> {
        with_write_pool!(self, |pool| {
            sqlx::query(UPSERT_IDEMPOTENCY)
                .bind(session_id)
                .bind(&idem.key)
                .bind(&idem.request_hash)
                .bind(idem.response.get())
                .bind(now_ms())
                .execute(pool)
                .await
                .map(|_| ())?
        });
        Ok(())
    }

    /// The response recorded with `key` for this session, if any.
    pub async fn idempotent_response(
        &self,
        session_id: &str,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>, StoreError> {
        let row: Option<IdempotencyRow> = with_read_pool!(self, |pool| {
            sqlx::query_as(SELECT_IDEMPOTENCY)
                .bind(session_id)
                .bind(key)
                .fetch_optional(pool)
                .await?
        });
        row.map(IdempotencyRow::into_record).transpose()
    }

    /// Up to `limit` events of the session with seq > `after_seq`, in order.
    pub async fn events(
        &self,
        session_id: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<EventRecord>, StoreError> {
        if limit < 0 {
            return Err(StoreError::InvalidInput {
                reason: format!("event limit {limit} is negative"),
            });
        }
        let rows: Vec<EventRow> = with_read_pool!(self, |pool| {
            sqlx::query_as(SELECT_EVENTS)
                .bind(session_id)
                .bind(after_seq)
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(EventRow::into_record).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prebuilt_pg_commit_statements_match_the_builder() {
        for n in 1..=PREBUILT_EVENT_COUNTS + 2 {
            for idem in [false, true] {
                assert_eq!(pg_commit_sql(n, idem), build_pg_commit_sql(n, idem));
            }
        }
        let sql = build_pg_commit_sql(1, true);
        assert!(sql.contains("($10::BIGINT, $11::TEXT, $12::TEXT)"), "{sql}");
        let sql = build_pg_commit_sql(1, false);
        assert!(sql.contains("($7::BIGINT, $8::TEXT, $9::TEXT)"), "{sql}");
    }
}

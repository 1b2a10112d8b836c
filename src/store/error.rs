//! `StoreError`: every way the store can fail, with a stable public code.
//!
//! The `Display` text may contain the driver's own message (useful in logs);
//! API responses must use [`StoreError::code`] and [`StoreError::hint`] only.

use crate::codes::Code;
use sqlx::error::ErrorKind;

/// An error from the store layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store URL is malformed or names an unsupported database.
    #[error("invalid store URL: {reason}")]
    BadUrl { reason: String },

    /// The database cannot be reached or refused to serve (connection refused,
    /// pool exhausted, database locked by another process, server shutting down).
    #[error("store unavailable: {source}")]
    Unavailable {
        #[source]
        source: sqlx::Error,
    },

    /// The database's disk (or its size limit) is full: nothing of the
    /// write was stored, and writes work again once space is freed.
    #[error("store full: {source}")]
    Full {
        #[source]
        source: sqlx::Error,
    },

    /// Applying the embedded migrations failed, or the database was migrated
    /// by a different build of Baton.
    #[error("store migration failed: {source}")]
    Migration {
        #[source]
        source: sqlx::migrate::MigrateError,
    },

    /// Optimistic concurrency: the session moved on since it was read.
    /// `actual` is the sequence number found in the store.
    #[error("session {session_id} is at seq {actual}, expected {expected}")]
    Conflict {
        session_id: String,
        expected: i64,
        actual: i64,
    },

    /// Several replicas kept publishing different versions of the same flow
    /// at the same moment; this one gave up after a few attempts.
    #[error("flow {flow_id}: gave up publishing a new version under contention")]
    FlowVersionContended { flow_id: String },

    /// The idempotency key was already used for this session; nothing was written.
    #[error("idempotency key {key:?} is already used in session {session_id}")]
    IdempotencyKeyTaken { session_id: String, key: String },

    /// A row the operation needs does not exist.
    #[error("{what} not found")]
    NotFound { what: String },

    /// The session was deleted (by retention) after it was read; nothing
    /// was written.
    #[error("session {session_id} no longer exists")]
    SessionGone { session_id: String },

    /// The backend-step task was already finished (by another worker, a
    /// reviewer, an event or an operator); nothing was written.
    #[error("step task {task_id} is already finished")]
    TaskFinished { task_id: String },

    /// A session with this id already exists.
    #[error("session {id} already exists")]
    SessionExists { id: String },

    /// A row cannot be read back (bad JSON, wrong type) or the log disagrees
    /// with the snapshot.
    #[error("corrupt data in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },

    /// An event feed cursor this store did not give out.
    #[error("invalid event feed cursor `{cursor}`: {reason}")]
    InvalidCursor { cursor: String, reason: String },

    /// The caller passed something the store refuses to write.
    #[error("invalid store input: {reason}")]
    InvalidInput { reason: String },

    /// Anything else; a bug or an unexpected database error.
    #[error("store internal error: {source}")]
    Internal {
        #[source]
        source: sqlx::Error,
    },
}

impl StoreError {
    /// Stable, public, UPPER_SNAKE code.
    pub fn code(&self) -> Code {
        match self {
            StoreError::BadUrl { .. } => Code::StoreBadUrl,
            StoreError::Unavailable { .. } => Code::StoreUnavailable,
            StoreError::Full { .. } => Code::StorageFull,
            StoreError::Migration { .. } => Code::StoreMigrationFailed,
            StoreError::Conflict { .. } | StoreError::FlowVersionContended { .. } => {
                Code::StoreConflict
            }
            StoreError::IdempotencyKeyTaken { .. } => Code::IdempotencyKeyTaken,
            StoreError::NotFound { .. } => Code::StoreNotFound,
            StoreError::SessionGone { .. } => Code::SessionNotFound,
            StoreError::SessionExists { .. } => Code::SessionExists,
            StoreError::TaskFinished { .. } => Code::TaskAlreadyFinished,
            StoreError::Corrupt { .. } => Code::StoreCorrupt,
            StoreError::InvalidInput { .. } => Code::StoreInvalidInput,
            StoreError::InvalidCursor { .. } => Code::EventCursorInvalid,
            StoreError::Internal { .. } => Code::StoreInternal,
        }
    }

    /// What the caller can do about it. Safe to show to API clients: it never
    /// contains driver text, SQL or credentials.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            StoreError::BadUrl { reason } => format!(
                "{reason}; use sqlite://path/to/baton.db, sqlite::memory: (tests only) or \
                 postgres://user@host:5432/dbname"
            ),
            StoreError::Full { .. } => {
                "the database's disk is full; nothing of this request was stored. Free space \
                 on the database's volume (or raise its quota), then retry with the same \
                 idempotency key"
                    .to_owned()
            }
            StoreError::Unavailable { .. } => {
                "the database is unreachable or busy; check that it is running and that the \
                 URL is right, then retry"
                    .to_owned()
            }
            StoreError::Migration { .. } => {
                "the database schema does not match this Baton build; run the Baton version \
                 that last migrated this database, or use a fresh database"
                    .to_owned()
            }
            StoreError::Conflict { actual, .. } => format!(
                "the session changed concurrently (it is now at seq {actual}); reload it and retry"
            ),
            StoreError::FlowVersionContended { .. } => {
                "other replicas are publishing this flow right now; retry".to_owned()
            }
            StoreError::IdempotencyKeyTaken { .. } => {
                "this idempotency key was already used for another request in this session; \
                 send a new key for a new request"
                    .to_owned()
            }
            StoreError::NotFound { what } => format!("check that the {what} exists"),
            StoreError::SessionGone { .. } => {
                "the session was deleted after its last change grew older than the server keeps \
                 sessions (--session-hours); start a new one"
                    .to_owned()
            }
            StoreError::SessionExists { .. } => "session ids must be unique".to_owned(),
            StoreError::TaskFinished { .. } => {
                "the step was completed by someone else first; read the session".to_owned()
            }
            StoreError::Corrupt { .. } => {
                "stored data could not be read back; this needs an operator".to_owned()
            }
            StoreError::InvalidInput { reason } => reason.clone(),
            StoreError::InvalidCursor { reason, .. } => format!(
                "{reason}; pass back an `endCursor` or an event's `cursor` exactly as received \
                 from this database, or none to start at the first event"
            ),
            StoreError::Internal { .. } => return None,
        })
    }

    /// Whether retrying the same operation later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(source: sqlx::migrate::MigrateError) -> Self {
        match source {
            sqlx::migrate::MigrateError::Execute(e) if is_unavailable(&e) => {
                StoreError::Unavailable { source: e }
            }
            source => StoreError::Migration { source },
        }
    }
}

impl From<sqlx::Error> for StoreError {
    /// The generic mapping; call sites that expect a specific constraint
    /// violation check for it before falling back to this.
    fn from(e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        if is_full(&e) {
            return StoreError::Full { source: e };
        }
        if is_unavailable(&e) {
            return StoreError::Unavailable { source: e };
        }
        match e {
            E::Configuration(reason) => StoreError::BadUrl {
                reason: reason.to_string(),
            },
            E::ColumnDecode { .. } | E::Decode(_) => StoreError::Corrupt {
                table: "a row",
                detail: e.to_string(),
            },
            E::Migrate(m) => (*m).into(),
            e => StoreError::Internal { source: e },
        }
    }
}

/// A full disk: SQLite's FULL (13, also in an extended code's low byte) or
/// PostgreSQL's `disk_full` (53100).
pub(crate) fn is_full(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    let code = db.code();
    let code = code.as_deref().unwrap_or("");
    if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        return code.parse::<i64>().is_ok_and(|n| n & 0xff == 13);
    }
    code == "53100"
}

/// Errors where the database, not the request, is the problem.
pub(crate) fn is_unavailable(e: &sqlx::Error) -> bool {
    use sqlx::Error as E;
    match e {
        E::Io(_) | E::Tls(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed => true,
        E::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            // SQLite result codes (the primary code is the low byte of the
            // extended one): BUSY 5, LOCKED 6, NOMEM 7, READONLY 8, IOERR 10, FULL 13,
            // CANTOPEN 14. PostgreSQL SQLSTATE classes: 08 connection, 53 resources,
            // 57 operator intervention; 40001/40P01 serialization failure / deadlock.
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                let n = code.parse::<i64>().unwrap_or(0);
                return matches!(n & 0xff, 5 | 6 | 7 | 8 | 10 | 13 | 14);
            }
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57")
                || code == "40001"
                || code == "40P01"
        }
        _ => false,
    }
}

pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.kind() == ErrorKind::UniqueViolation)
}

pub(crate) fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.kind() == ErrorKind::ForeignKeyViolation)
}

/// The violated constraint's name (PostgreSQL only; SQLite does not report it).
pub(crate) fn constraint(e: &sqlx::Error) -> Option<&str> {
    match e {
        sqlx::Error::Database(db) => db.constraint(),
        _ => None,
    }
}

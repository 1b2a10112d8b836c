//! Retention: what the operator keeps, by age, deleted a batch at a time
//! once a minute.
//! - `--idempotency-hours`: idempotency records. A client retries a submit
//!   within seconds or minutes of sending it; a record past the window
//!   only takes space (it holds the whole answer).
//! - `--session-hours`: sessions whose last change is older, with their
//!   log, idempotency records and tasks. Sessions something may still
//!   write to are kept (see [`crate::store::Store::delete_sessions_before`]).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Baton, ServiceError, now_ms};
use crate::store::{SessionSweep, Store, StoreError, Swept};

/// How often a pass runs.
const EVERY: Duration = Duration::from_secs(60);
/// Idempotency records deleted per statement: small enough that a SQLite
/// write holds the writer for about a millisecond.
pub const BATCH: i64 = 500;
/// Sessions looked at per batch. Each takes its whole log with it (tens
/// of rows for a typical session), hence fewer than records.
pub const SESSION_BATCH: i64 = 100;
/// The least pause between batches, which lets the writers serving
/// sessions in.
const BREATHE: Duration = Duration::from_millis(5);
/// A batch rests this many times as long as it took (at least
/// [`BREATHE`]), so a sweep through a backlog takes at most about a tenth
/// of the writer, however heavy its sessions are, and the more so when
/// the writer is busy, since a batch that waited for it took longer.
/// Nothing waits for retention; requests do wait behind it: at twice, a
/// pass deleting 9,000 sessions on a busy SQLite server still showed in
/// the p99 of the seconds it ran.
const REST: u32 = 10;

/// How long each kind of record is kept; `None` keeps it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    pub idempotency: Option<Duration>,
    pub sessions: Option<Duration>,
}

impl Retention {
    pub fn from_hours(idempotency: u32, sessions: u32) -> Retention {
        let hours = |h: u32| (h > 0).then(|| Duration::from_secs(u64::from(h) * 3600));
        Retention {
            idempotency: hours(idempotency),
            sessions: hours(sessions),
        }
    }

    pub fn is_off(&self) -> bool {
        self.idempotency.is_none() && self.sessions.is_none()
    }
}

/// What one pass deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deleted {
    pub idempotency: u64,
    pub sessions: u64,
    /// SQLite event-feed rows of deleted events.
    pub feed_rows: u64,
}

impl Baton {
    /// Runs a retention pass every minute until `shutdown`.
    pub async fn run_retention(&self, keep: Retention, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let began = std::time::Instant::now();
            match self.retention_pass(keep).await {
                Ok(d) if d == Deleted::default() => {}
                Ok(d) => tracing::info!(
                    idempotency_records = d.idempotency,
                    sessions = d.sessions,
                    feed_rows = d.feed_rows,
                    elapsed_ms = began.elapsed().as_millis() as u64,
                    "retention: deleted old records"
                ),
                Err(e) => tracing::warn!(error = %e, "retention: deleting old records failed"),
            }
        }
    }

    /// One pass: deletes what is older than `keep` says, in batches.
    pub async fn retention_pass(&self, keep: Retention) -> Result<Deleted, ServiceError> {
        let cutoff =
            |d: Duration| now_ms().saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let mut deleted = Deleted::default();
        if let Some(d) = keep.idempotency {
            deleted.idempotency = delete_idempotency_before(self.store(), cutoff(d)).await?;
        }
        if let Some(d) = keep.sessions {
            (deleted.sessions, deleted.feed_rows) =
                delete_sessions_before(self.store(), cutoff(d), SESSION_BATCH).await?;
        }
        Ok(deleted)
    }
}

/// Runs `$batch` (an expression giving a [`Swept`]) until it reports
/// done, pausing between batches so the writers serving sessions get in;
/// the total deleted. A macro: an async closure borrowing the sweep's
/// place would not be `Send` for the spawned retention task.
macro_rules! in_batches {
    ($batch:expr) => {{
        let mut total = 0;
        loop {
            let began = std::time::Instant::now();
            let Swept { deleted, done } = $batch;
            if deleted > 0 {
                tracing::debug!(
                    deleted,
                    elapsed_us = began.elapsed().as_micros() as u64,
                    "retention: deleted a batch"
                );
            }
            total += deleted;
            if done {
                break total;
            }
            tokio::time::sleep(BREATHE.max(began.elapsed() * REST)).await;
        }
    }};
}

async fn delete_idempotency_before(store: &Store, before: i64) -> Result<u64, StoreError> {
    Ok(in_batches!({
        let deleted = store.delete_idempotency_before(before, BATCH).await?;
        Swept {
            deleted,
            done: deleted < BATCH as u64,
        }
    }))
}

/// Sweeps every flow's sessions older than `before`, then trims the
/// event feed of what they left there; returns (sessions, feed rows).
pub async fn delete_sessions_before(
    store: &Store,
    before: i64,
    batch: i64,
) -> Result<(u64, u64), StoreError> {
    let mut sessions = 0;
    for flow in store.flows_with_versions().await? {
        let mut sweep = SessionSweep::default();
        sessions += in_batches!(
            store
                .delete_sessions_before(&flow, before, &mut sweep, batch)
                .await?
        );
    }
    let mut feed_rows = 0;
    if sessions > 0 {
        let mut after = 0;
        feed_rows = in_batches!(store.trim_event_feed(before, &mut after, BATCH).await?);
    }
    Ok((sessions, feed_rows))
}

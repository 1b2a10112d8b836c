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
/// Most idempotency records deleted per statement.
pub const BATCH: i64 = 500;
/// Most sessions looked at per batch. Each takes its whole log with it
/// (tens of rows for a typical session), hence fewer than records.
pub const SESSION_BATCH: i64 = 100;
/// How long a batch should hold the writer at most. Every commit that
/// arrives meanwhile waits for it, so this is what retention adds to a
/// request's latency at worst; a batch size that holds it longer is
/// halved, one that holds it under half as long doubled (up to the most
/// above). A fixed 100 sessions held SQLite's busy writer for 13 ms at the
/// median and 127 ms at the 90th percentile, which was the soak's p99.
const HOLD: Duration = Duration::from_millis(5);
/// The least pause between batches, which lets the writers serving
/// sessions in.
const BREATHE: Duration = Duration::from_millis(5);
/// A batch rests this many times as long as it held the writer (at least
/// [`BREATHE`]), so a sweep through a backlog takes at most about a tenth
/// of the writer, however heavy its sessions are.
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

/// How many rows the next batch takes: sized so a batch holds the writer
/// about [`HOLD`], between one and the most it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSize {
    now: i64,
    most: i64,
}

impl BatchSize {
    /// Starts at `most`.
    pub fn new(most: i64) -> BatchSize {
        let most = most.max(1);
        BatchSize { now: most, most }
    }

    pub fn get(&self) -> i64 {
        self.now
    }

    /// Halves the size after a batch that held the writer past [`HOLD`],
    /// doubles it after one that held it under half that.
    pub fn adapt(&mut self, held: Duration) {
        if held > HOLD {
            self.now = (self.now / 2).max(1);
        } else if held < HOLD / 2 {
            self.now = self.now.saturating_mul(2).min(self.most);
        }
    }
}

/// Runs `$batch` (an expression giving a [`Swept`], with the batch's size
/// bound to `$size`, at most `$most`) until it reports done, pausing
/// between batches so the writers serving sessions get in; the total
/// deleted. A macro: an async closure borrowing the sweep's place would
/// not be `Send` for the spawned retention task.
macro_rules! in_batches {
    ($most:expr, |$size:ident| $batch:expr) => {{
        let mut size = BatchSize::new($most);
        let mut total = 0;
        loop {
            let $size = size.get();
            let Swept {
                deleted,
                done,
                held,
            } = $batch;
            if deleted > 0 {
                tracing::debug!(
                    deleted,
                    size = $size,
                    held_us = held.as_micros() as u64,
                    "retention: deleted a batch"
                );
            }
            total += deleted;
            if done {
                break total;
            }
            size.adapt(held);
            tokio::time::sleep(BREATHE.max(held * REST)).await;
        }
    }};
}

async fn delete_idempotency_before(store: &Store, before: i64) -> Result<u64, StoreError> {
    Ok(in_batches!(BATCH, |size| store
        .delete_idempotency_before(before, size)
        .await?))
}

/// Sweeps every flow's sessions older than `before`, at most `batch` at a
/// time, then trims the event feed of what they left there; returns
/// (sessions, feed rows).
pub async fn delete_sessions_before(
    store: &Store,
    before: i64,
    batch: i64,
) -> Result<(u64, u64), StoreError> {
    let mut sessions = 0;
    for flow in store.flows_with_versions().await? {
        let mut sweep = SessionSweep::default();
        sessions += in_batches!(batch, |size| store
            .delete_sessions_before(&flow, before, &mut sweep, size)
            .await?);
    }
    let mut feed_rows = 0;
    if sessions > 0 {
        let mut after = 0;
        feed_rows = in_batches!(BATCH, |size| store
            .trim_event_feed(before, &mut after, size)
            .await?);
    }
    Ok((sessions, feed_rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_that_holds_the_writer_too_long_halves_down_to_one() {
        let mut size = BatchSize::new(100);
        assert_eq!(size.get(), 100);
        let mut seen = vec![];
        for _ in 0..8 {
            size.adapt(HOLD * 3);
            seen.push(size.get());
        }
        assert_eq!(seen, [50, 25, 12, 6, 3, 1, 1, 1]);
    }

    #[test]
    fn a_quick_batch_doubles_up_to_the_most_and_one_near_the_hold_stays() {
        let mut size = BatchSize::new(100);
        for _ in 0..5 {
            size.adapt(HOLD * 2);
        }
        assert_eq!(size.get(), 3);
        size.adapt(HOLD * 3 / 4);
        assert_eq!(size.get(), 3, "between half the hold and the hold");
        size.adapt(HOLD);
        assert_eq!(size.get(), 3, "at the hold itself");
        let mut seen = vec![];
        for _ in 0..7 {
            size.adapt(HOLD / 4);
            seen.push(size.get());
        }
        assert_eq!(seen, [6, 12, 24, 48, 96, 100, 100]);
    }

    #[test]
    fn a_batch_size_is_at_least_one() {
        assert_eq!(BatchSize::new(0).get(), 1);
        assert_eq!(BatchSize::new(-5).get(), 1);
    }
}

//! SQLite WAL checkpoints off the commit path.
//!
//! By default SQLite checkpoints inside the commit that pushes the WAL past
//! `wal_autocheckpoint` pages: that commit copies the WAL back into the
//! database file and, with `synchronous = NORMAL`, waits for two fsyncs,
//! while every other commit queues behind the single write connection. Under
//! load that is a stall every few hundred commits (`cargo bench --bench
//! load`, session 4's machine: `submit` p99 10.2–11.4 ms with it, 8.3–9.7 ms
//! with this task, and about 20% more submits per second; see the README).
//!
//! So the write connection's automatic checkpoint is only a backstop
//! ([`BACKSTOP_PAGES`]), and a task checkpoints every [`EVERY`] from a read
//! connection in `PASSIVE` mode, which neither waits for nor blocks the
//! writer: commits go on appending to the WAL while the checkpoint copies
//! and syncs. Once a checkpoint has caught up, the next commit starts the
//! WAL over from its beginning. Under writes that never pause a checkpoint
//! may not catch up; the WAL then grows until the backstop checkpoints in
//! the writer, as before, but at most a tenth as often (10,000 pages
//! instead of 1,000).

use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::SqlitePool;

/// How often the task checkpoints. A checkpoint with nothing to copy costs
/// a few microseconds; one after 100 ms of writes copies each page changed
/// meanwhile once.
pub(super) const EVERY: Duration = Duration::from_millis(100);

/// The write connection's own `wal_autocheckpoint`: reached only if the task
/// falls behind (or a long read keeps the WAL from being checkpointed), so
/// the WAL stays bounded (about 40 MB with 4 KiB pages) either way.
pub(super) const BACKSTOP_PAGES: u32 = 10_000;

/// Keeps the checkpoint task alive: the task ends once every clone of the
/// store (each holds one of these) is gone, or the pool is closed.
#[derive(Debug)]
pub(super) struct Checkpointer;

/// Starts the task on the current Tokio runtime; checkpoints run on `pool`.
pub(super) fn spawn(pool: SqlitePool) -> Arc<Checkpointer> {
    let alive = Arc::new(Checkpointer);
    let watch: Weak<Checkpointer> = Arc::downgrade(&alive);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if watch.strong_count() == 0 || pool.is_closed() {
                return;
            }
            // A failure (the database busy, the disk full) leaves the WAL
            // to the next tick and, in the end, to the backstop.
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&pool)
                .await
            {
                tracing::debug!(error = %e, "WAL checkpoint failed; retrying on the next tick");
            }
        }
    });
    alive
}

//! SQLite WAL checkpoints off the commit path.
//!
//! By default SQLite checkpoints inside the commit that pushes the WAL past
//! `wal_autocheckpoint` pages: that commit copies the WAL back into the
//! database file and, with `synchronous = NORMAL`, waits for two fsyncs,
//! while every other commit queues behind the single write connection. Under
//! load that is a stall every few hundred commits.
//!
//! So a task checkpoints every [`EVERY`] from a read connection in
//! `PASSIVE` mode, which neither waits for nor blocks the writer: commits go
//! on appending to the WAL while the checkpoint copies and syncs.
//!
//! That alone does not keep the WAL short. The WAL starts over only when a
//! commit begins with all of it copied, and beside a busy writer that
//! moment rarely comes: commits append while each checkpoint copies. Left
//! so, the WAL grows until the write connection's own checkpoint (the
//! backstop, [`BACKSTOP_PAGES`]) runs inside a commit with up to a tick's
//! frames still to copy (the soak's SQLite writer appends about 2,000
//! pages a tick). So once the WAL passes [`RESTART_PAGES`], or would pass
//! it before the next tick at the rate it grew since the last, the task copies
//! again at once until a round finds few new frames, and then checkpoints
//! once on the write connection, between two commits, where nothing appends
//! while it copies those last few: the next commit starts the WAL over.
//! `journal_size_limit` then gives back the space a WAL that did grow took.

use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::SqlitePool;

/// How often the task checkpoints. A checkpoint with nothing to copy costs
/// a few microseconds; one after 100 ms of writes copies each page changed
/// meanwhile once.
pub(super) const EVERY: Duration = Duration::from_millis(100);

/// A WAL this long gets the writer to start it over. Readers look a page up
/// in the WAL's index, one hash table per 4,096 frames, so a WAL kept under
/// that is looked up with one table.
const RESTART_PAGES: i64 = 4_096;

/// A catch-up round that found at most this many new frames leaves the rest
/// to the write connection: a few milliseconds of its time.
const FEW_PAGES: i64 = 256;

/// The most catch-up rounds before the writer takes the rest, so a writer
/// that outruns the copies still gets its WAL started over.
const CATCH_UP_ROUNDS: usize = 3;

/// The write connection's own `wal_autocheckpoint`: reached only if the task
/// falls behind (or a long read keeps the WAL from being checkpointed), so
/// the WAL stays bounded (about 40 MB with 4 KiB pages) either way.
pub(super) const BACKSTOP_PAGES: u32 = 10_000;

/// `journal_size_limit`: a WAL that grew past this (bytes) is cut back to
/// it when it starts over, so the file's size on disk follows the WAL.
pub(super) const WAL_FILE_LIMIT: u64 = BACKSTOP_PAGES as u64 * 4096;

/// Keeps the checkpoint task alive: the task ends once every clone of the
/// store (each holds one of these) is gone, or the pool is closed.
#[derive(Debug)]
pub(super) struct Checkpointer;

/// Starts the task on the current Tokio runtime; checkpoints run on `read`,
/// and the last copy before the WAL starts over on `write`.
pub(super) fn spawn(read: SqlitePool, write: SqlitePool) -> Arc<Checkpointer> {
    let alive = Arc::new(Checkpointer);
    let watch: Weak<Checkpointer> = Arc::downgrade(&alive);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The WAL's length at the last tick, in frames.
        let mut last = 0;
        loop {
            tick.tick().await;
            if watch.strong_count() == 0 || read.is_closed() {
                return;
            }
            // A failure (the database busy, the disk full) leaves the WAL
            // to the next tick and, in the end, to the backstop.
            match checkpoint(&read, &write, last).await {
                Ok(wal) => last = wal,
                Err(e) => {
                    tracing::debug!(error = %e, "WAL checkpoint failed; retrying on the next tick")
                }
            }
        }
    });
    alive
}

/// Frames in the WAL and frames copied, after one `PASSIVE` checkpoint.
async fn passive(pool: &SqlitePool) -> Result<(i64, i64), sqlx::Error> {
    let (_busy, wal, copied): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(pool)
        .await?;
    Ok((wal, copied))
}

/// Whether a WAL of `wal` frames, `last` at the tick before, is to be
/// started over now: it is past [`RESTART_PAGES`] or, growing as it did,
/// will be by the next tick. A WAL that started over since (shorter than
/// `last`) grew by at least its length.
fn restart_due(wal: i64, last: i64) -> bool {
    let grown = if wal >= last { wal - last } else { wal };
    wal.saturating_add(grown) >= RESTART_PAGES
}

/// One tick's checkpoint; returns the WAL's length (frames) it found.
async fn checkpoint(read: &SqlitePool, write: &SqlitePool, last: i64) -> Result<i64, sqlx::Error> {
    let (found, _) = passive(read).await?;
    if !restart_due(found, last) {
        return Ok(found);
    }
    let mut wal = found;
    let mut rounds = 0;
    while rounds < CATCH_UP_ROUNDS {
        rounds += 1;
        let (now, _) = passive(read).await?;
        let appended = now - wal;
        wal = now;
        if appended < 0 {
            // A commit found it all copied and started it over.
            return Ok(found);
        }
        if appended <= FEW_PAGES {
            break;
        }
    }
    let (wal, copied) = passive(write).await?;
    tracing::debug!(
        rounds,
        wal,
        copied,
        "WAL copied out on the writer to start it over"
    );
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wal_is_started_over_past_the_mark_or_before_it_gets_there() {
        assert!(!restart_due(100, 0));
        assert!(restart_due(RESTART_PAGES, RESTART_PAGES));
        // 1,500 frames a tick: past the mark by the next one.
        assert!(restart_due(3_000, 1_500));
        assert!(!restart_due(2_000, 1_500));
        // Started over since the last tick, and grew 2,100 frames since.
        assert!(restart_due(2_100, 9_000));
        assert!(!restart_due(1_000, 9_000));
    }
}

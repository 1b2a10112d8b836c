//! Retention (`--idempotency-hours`): idempotency records older than that
//! are deleted, a batch at a time, once a minute. A client retries a
//! submit within seconds or minutes of sending it; a record past the
//! window only takes space (it holds the whole answer).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Baton, ServiceError, now_ms};

/// How often a pass runs.
const EVERY: Duration = Duration::from_secs(60);
/// Records deleted per statement: small enough that a SQLite write holds
/// the writer for about a millisecond.
pub const BATCH: i64 = 500;
/// The pause between batches, which lets the writers serving sessions in.
const BREATHE: Duration = Duration::from_millis(5);

impl Baton {
    /// Runs a retention pass every minute until `shutdown`.
    pub async fn run_retention(&self, keep: Duration, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self.retention_pass(keep).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "retention: deleted old idempotency records"),
                Err(e) => {
                    tracing::warn!(error = %e, "retention: deleting old idempotency records failed")
                }
            }
        }
    }

    /// Deletes the idempotency records older than `keep`, in batches;
    /// returns how many.
    pub async fn retention_pass(&self, keep: Duration) -> Result<u64, ServiceError> {
        let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
        let before = now_ms().saturating_sub(keep_ms);
        let mut total = 0;
        loop {
            let n = self
                .store()
                .delete_idempotency_before(before, BATCH)
                .await?;
            total += n;
            if n < BATCH as u64 {
                return Ok(total);
            }
            tokio::time::sleep(BREATHE).await;
        }
    }
}

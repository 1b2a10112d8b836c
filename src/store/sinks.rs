//! What event sinks keep in the store: each sink's place in the event
//! feed and the lease of the replica delivering to it, and the dead
//! letters (batches a sink refused until its retries ran out).

use super::{Inner, Store, StoreError};

/// A sink's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkState {
    /// `None`: not placed in the feed yet; `Some("")`: before the first event.
    pub cursor: Option<String>,
    pub delivered: i64,
}

/// A batch a sink refused for good.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeadLetter {
    pub id: String,
    pub sink: String,
    /// The request body that was sent (and is sent again on replay).
    pub body: String,
    pub events: i32,
    pub first_cursor: String,
    pub last_cursor: String,
    pub attempts: i32,
    pub error: String,
    pub created_at: i64,
    pub replayed_at: Option<i64>,
}

/// Most dead letters one read returns.
pub const MAX_DEAD_LETTERS: i64 = 500;

impl Store {
    /// Takes (or keeps) the lease on `sink` for `worker` until `until`:
    /// `false` while another worker holds an unexpired one. Creates the
    /// sink's row on first use.
    pub async fn claim_sink(
        &self,
        sink: &str,
        worker: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError> {
        let claimed = with_write_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO sink_cursors (sink, updated_at) VALUES ($1, $2) \
                 ON CONFLICT (sink) DO NOTHING",
            )
            .bind(sink)
            .bind(now)
            .execute(pool)
            .await?;
            sqlx::query(
                "UPDATE sink_cursors SET owner = $2, lease_until = $4, updated_at = $3 \
                 WHERE sink = $1 AND (owner IS NULL OR owner = $2 OR lease_until < $3)",
            )
            .bind(sink)
            .bind(worker)
            .bind(now)
            .bind(until)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(claimed == 1)
    }

    /// Gives up `worker`'s lease on `sink` (when it still holds it), so
    /// another replica takes over at once instead of when it runs out.
    pub async fn release_sink(&self, sink: &str, worker: &str) -> Result<(), StoreError> {
        with_write_pool!(self, |pool| {
            sqlx::query(
                "UPDATE sink_cursors SET owner = NULL, lease_until = 0 \
                 WHERE sink = $1 AND owner = $2",
            )
            .bind(sink)
            .bind(worker)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    pub async fn sink_state(&self, sink: &str) -> Result<Option<SinkState>, StoreError> {
        let row: Option<(Option<String>, i64)> = with_read_pool!(self, |pool| {
            sqlx::query_as("SELECT cursor, delivered FROM sink_cursors WHERE sink = $1")
                .bind(sink)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|(cursor, delivered)| SinkState { cursor, delivered }))
    }

    /// Moves `sink` to `cursor` having delivered `delivered` more events;
    /// `false` (nothing written) when `worker` no longer holds its lease.
    pub async fn advance_sink(
        &self,
        sink: &str,
        worker: &str,
        cursor: &str,
        delivered: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let n = with_write_pool!(self, |pool| {
            sqlx::query(
                "UPDATE sink_cursors SET cursor = $3, delivered = delivered + $4, updated_at = $5 \
                 WHERE sink = $1 AND owner = $2",
            )
            .bind(sink)
            .bind(worker)
            .bind(cursor)
            .bind(delivered)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n == 1)
    }

    pub async fn add_dead_letter(&self, d: &DeadLetter) -> Result<(), StoreError> {
        with_write_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO dead_letters (id, sink, body, events, first_cursor, last_cursor, \
                 attempts, error, created_at, replayed_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&d.id)
            .bind(&d.sink)
            .bind(&d.body)
            .bind(d.events)
            .bind(&d.first_cursor)
            .bind(&d.last_cursor)
            .bind(d.attempts)
            .bind(&d.error)
            .bind(d.created_at)
            .bind(d.replayed_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Dead letters, oldest first; of one sink, or of all.
    pub async fn dead_letters(
        &self,
        sink: Option<&str>,
        limit: i64,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        const COLUMNS: &str = "SELECT id, sink, body, events, first_cursor, last_cursor, \
                               attempts, error, created_at, replayed_at FROM dead_letters";
        let limit = limit.clamp(1, MAX_DEAD_LETTERS);
        let rows = with_read_pool!(self, |pool| {
            match sink {
                Some(sink) => {
                    sqlx::query_as(&format!(
                        "{COLUMNS} WHERE sink = $1 ORDER BY created_at, id LIMIT $2"
                    ))
                    .bind(sink)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?
                }
                None => {
                    sqlx::query_as(&format!("{COLUMNS} ORDER BY created_at, id LIMIT $1"))
                        .bind(limit)
                        .fetch_all(pool)
                        .await?
                }
            }
        });
        Ok(rows)
    }

    pub async fn dead_letter(&self, id: &str) -> Result<Option<DeadLetter>, StoreError> {
        let row = with_read_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, sink, body, events, first_cursor, last_cursor, attempts, error, \
                 created_at, replayed_at FROM dead_letters WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        Ok(row)
    }

    /// Marks a dead letter delivered by a replay.
    pub async fn dead_letter_replayed(&self, id: &str, at: i64) -> Result<(), StoreError> {
        with_write_pool!(self, |pool| {
            sqlx::query("UPDATE dead_letters SET replayed_at = $2 WHERE id = $1")
                .bind(id)
                .bind(at)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}

//! Retention: deleting what is older than the operator keeps, in small
//! batches, so the writers that serve sessions are never held up long.

use super::{Inner, Store, StoreError};

impl Store {
    /// Deletes up to `batch` idempotency records created before `before`
    /// (ms since the epoch); returns how many went. Fewer than `batch`
    /// means the old records are gone (up to a few written out of order,
    /// which the next pass takes).
    pub async fn delete_idempotency_before(
        &self,
        before: i64,
        batch: i64,
    ) -> Result<u64, StoreError> {
        let deleted = match &self.inner {
            // Records are appended in time order, so the oldest come first
            // by rowid and a batch reads only its own rows.
            Inner::Sqlite { write, .. } => sqlx::query(
                "DELETE FROM idempotency WHERE rowid IN \
                 (SELECT rowid FROM (SELECT rowid, created_at FROM idempotency ORDER BY rowid LIMIT ?2) \
                  WHERE created_at < ?1)",
            )
            .bind(before)
            .bind(batch)
            .execute(write)
            .await?
            .rows_affected(),
            // The BRIN index on `created_at` (migration 0013) finds them.
            Inner::Postgres(pool) => sqlx::query(
                "DELETE FROM idempotency WHERE ctid = ANY(ARRAY( \
                 SELECT ctid FROM idempotency WHERE created_at < $1 LIMIT $2))",
            )
            .bind(before)
            .bind(batch)
            .execute(pool)
            .await?
            .rows_affected(),
        };
        Ok(deleted)
    }
}

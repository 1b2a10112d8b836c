//! Retention: deleting what is older than the operator keeps, in small
//! batches, so the writers that serve sessions are never held up long.

use std::time::{Duration, Instant};

use super::{BeginWrite, Inner, Store, StoreError};

/// What a session of `sessions` must be for retention to delete it, with
/// the cutoff bound as `$2`: unchanged since, and nothing may still write
/// to it: not waiting, no step task that is not done, and no drop-off the
/// funnel aggregator has yet to settle.
macro_rules! gone_sessions {
    () => {
        "sessions.updated_at < $2 AND sessions.status <> 'WAITING' \
         AND NOT EXISTS (SELECT 1 FROM step_tasks t \
             WHERE t.session_id = sessions.id AND t.state <> 'done') \
         AND NOT EXISTS (SELECT 1 FROM funnel_sessions f \
             WHERE f.session_id = sessions.id AND f.idle_node IS NOT NULL)"
    };
}

/// Deletes, in one transaction on `$pool`, the sessions of `$ids` (bound as
/// `$1`, matched by `$in_ids`) that are gone by [`gone_sessions`] with
/// `$before` the cutoff, then the funnel walks of those gone;
/// the number of sessions deleted and how long the transaction held the
/// writer. A macro: the body is compiled per
/// backend.
macro_rules! delete_sessions {
    ($pool:expr, $ids:expr, $before:expr, $in_ids:literal) => {{
        let mut tx = $pool.begin_write().await?;
        let began = Instant::now();
        let deleted = sqlx::query(concat!(
            "DELETE FROM sessions WHERE id ",
            $in_ids,
            " AND ",
            gone_sessions!()
        ))
        .bind($ids.clone())
        .bind($before)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if deleted > 0 {
            sqlx::query(concat!(
                "DELETE FROM funnel_sessions WHERE session_id ",
                $in_ids,
                " AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.id = funnel_sessions.session_id)"
            ))
            .bind($ids)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        (deleted, began.elapsed())
    }};
}

/// Where a sweep through one flow's sessions stands: the last session it
/// looked at, by `(created_at, id)`.
#[derive(Debug, Clone, Default)]
pub struct SessionSweep {
    after: Option<(i64, String)>,
}

/// What one batch of a sweep did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub deleted: u64,
    /// Nothing left to look at in this sweep.
    pub done: bool,
    /// How long the batch held the writer (not counting the wait for it):
    /// what the commits queued behind it waited.
    pub held: Duration,
}

impl Swept {
    fn nothing(done: bool) -> Swept {
        Swept {
            deleted: 0,
            done,
            held: Duration::ZERO,
        }
    }
}

/// Runs `$query` on a connection of `$pool` taken first, so the time it
/// held the connection leaves out the wait for it: (rows changed, time
/// held). A macro: the result types' `rows_affected` share no trait.
macro_rules! timed {
    ($pool:expr, $query:expr) => {{
        let mut conn = $pool.acquire().await?;
        let began = Instant::now();
        let rows = $query.execute(&mut *conn).await?.rows_affected();
        (rows, began.elapsed())
    }};
}

impl Store {
    /// Deletes up to `batch` idempotency records created before `before`
    /// (ms since the epoch). Fewer than `batch` means the old records are
    /// gone (up to a few written out of order, which the next pass takes).
    pub async fn delete_idempotency_before(
        &self,
        before: i64,
        batch: i64,
    ) -> Result<Swept, StoreError> {
        let (deleted, held) = match &self.inner {
            // Records are appended in time order, so the oldest come first
            // by rowid and a batch reads only its own rows.
            Inner::Sqlite { write, .. } => timed!(
                write,
                sqlx::query(
                    "DELETE FROM idempotency WHERE rowid IN \
                     (SELECT rowid FROM (SELECT rowid, created_at FROM idempotency ORDER BY rowid LIMIT ?2) \
                      WHERE created_at < ?1)",
                )
                .bind(before)
                .bind(batch)
            ),
            // The BRIN index on `created_at` (migration 0013) finds them.
            Inner::Postgres(pool) => timed!(
                pool,
                sqlx::query(
                    "DELETE FROM idempotency WHERE ctid = ANY(ARRAY( \
                     SELECT ctid FROM idempotency WHERE created_at < $1 LIMIT $2))",
                )
                .bind(before)
                .bind(batch)
            ),
        };
        Ok(Swept {
            deleted,
            done: deleted < batch.max(0) as u64,
            held,
        })
    }

    /// The flows that have sessions or had them: a sweep goes flow by flow,
    /// along the `(flow_id, created_at)` index that listing sessions uses.
    pub async fn flows_with_versions(&self) -> Result<Vec<String>, StoreError> {
        Ok(with_read_pool!(self, |pool| {
            sqlx::query_scalar("SELECT DISTINCT flow_id FROM flow_versions ORDER BY flow_id")
                .fetch_all(pool)
                .await?
        }))
    }

    /// One batch of a sweep through `flow_id`'s sessions created before
    /// `before`: of the next `batch` of them, deletes those whose last
    /// change is older than `before` too, and which nothing may still
    /// write to: no step task that is not done, and no drop-off the
    /// funnel aggregator has yet to settle (it counts a quiet session as
    /// dropped only once it has been quiet for its longest idle threshold).
    ///
    /// A deleted session takes its events, idempotency records, tasks and
    /// funnel walk with it. Only a session's start bounds its last change
    /// from below, so the sweep walks sessions by start and tests the
    /// last change: no index on `updated_at`, which every submit would
    /// have to update.
    pub async fn delete_sessions_before(
        &self,
        flow_id: &str,
        before: i64,
        sweep: &mut SessionSweep,
        batch: i64,
    ) -> Result<Swept, StoreError> {
        let (from_at, from_id) = sweep.after.clone().unwrap_or((i64::MIN, String::new()));
        // Which of them may go is read here, off the writer: while the
        // aggregator works through a backlog of quiet sessions, most of a
        // sweep's batches hold none that may, and each would otherwise
        // take SQLite's only writer for an empty transaction. The delete
        // tests the same again, since a session may change in between.
        let scanned: Vec<(String, i64, i32)> = with_read_pool!(self, |pool| {
            sqlx::query_as(concat!(
                "SELECT id, created_at, CASE WHEN ",
                gone_sessions!(),
                " THEN 1 ELSE 0 END FROM sessions \
                 WHERE flow_id = $1 AND created_at < $2 AND created_at >= $3 \
                 AND (created_at > $3 OR id > $4) \
                 ORDER BY created_at, id LIMIT $5"
            ))
            .bind(flow_id)
            .bind(before)
            .bind(from_at)
            .bind(&from_id)
            .bind(batch)
            .fetch_all(pool)
            .await?
        });
        let Some((last_id, last_at, _)) = scanned.last().cloned() else {
            return Ok(Swept::nothing(true));
        };
        sweep.after = Some((last_at, last_id));
        let done = (scanned.len() as i64) < batch;
        let ids: Vec<String> = scanned
            .into_iter()
            .filter(|(_, _, gone)| *gone == 1)
            .map(|(id, _, _)| id)
            .collect();
        if ids.is_empty() {
            return Ok(Swept::nothing(done));
        }
        // Foreign keys (SQLite) or a trigger (PostgreSQL, migration 0005)
        // take the events and idempotency records, foreign keys the tasks
        // and their attempts; the walks of the sessions gone go here.
        let (deleted, held) = match &self.inner {
            Inner::Sqlite { write, .. } => {
                let ids = serde_json::to_string(&ids).map_err(|e| StoreError::Corrupt {
                    table: "sessions",
                    detail: e.to_string(),
                })?;
                delete_sessions!(write, ids, before, "IN (SELECT value FROM json_each($1))")
            }
            Inner::Postgres(pool) => delete_sessions!(pool, &ids, before, "= ANY($1)"),
        };
        Ok(Swept {
            deleted,
            done,
            held,
        })
    }

    /// One batch of trimming the SQLite event feed's head of rows whose
    /// event was deleted with its session, after feed id `*after`. Feed
    /// readers skip such rows already; this gives their space back. Ends
    /// at the first batch whose remaining events are all from `before` on:
    /// the feed is in commit order, and every event of a deleted session
    /// is older than the cutoff that deleted it. PostgreSQL's feed is the
    /// log itself: nothing to do there.
    pub async fn trim_event_feed(
        &self,
        before: i64,
        after: &mut i64,
        batch: i64,
    ) -> Result<Swept, StoreError> {
        let (read, write) = match &self.inner {
            Inner::Sqlite { read, write, .. } => (read, write),
            Inner::Postgres(_) => return Ok(Swept::nothing(true)),
        };
        let (last, oldest_kept, count, orphans): (Option<i64>, Option<i64>, i64, i64) =
            sqlx::query_as(
                "SELECT MAX(f.id), MIN(e.created_at), COUNT(*), COUNT(*) - COUNT(e.seq) FROM \
             (SELECT id, session_id, seq FROM event_feed WHERE id > ?1 ORDER BY id LIMIT ?2) f \
             LEFT JOIN session_events e ON e.session_id = f.session_id AND e.seq = f.seq",
            )
            .bind(*after)
            .bind(batch)
            .fetch_one(read)
            .await?;
        let Some(last) = last else {
            return Ok(Swept::nothing(true));
        };
        let done = count < batch || oldest_kept.is_some_and(|at| at >= before);
        // Most of a batch's rows are of sessions still kept while settling
        // holds them back: the writer is taken only when there is
        // something to delete.
        if orphans == 0 {
            *after = last;
            return Ok(Swept::nothing(done));
        }
        let (deleted, held) = timed!(
            write,
            sqlx::query(
                "DELETE FROM event_feed WHERE id > ?1 AND id <= ?2 AND NOT EXISTS \
                 (SELECT 1 FROM session_events e \
                  WHERE e.session_id = event_feed.session_id AND e.seq = event_feed.seq)",
            )
            .bind(*after)
            .bind(last)
        );
        *after = last;
        Ok(Swept {
            deleted,
            done,
            held,
        })
    }
}

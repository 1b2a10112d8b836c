//! What the funnel aggregator keeps (migration `0012_funnel_rollups`): the
//! cohorts a flow's sessions fall into, each session's walk between
//! batches, and per hour and cohort the sum of what those sessions did.
//! Walks and sums are JSON text here; `analytics::funnel` owns their shape.

use std::collections::HashMap;

use super::{BeginWrite, Inner, Store, StoreError};

/// What decides a new session's cohort, read when the aggregator first
/// meets it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionFacts {
    pub id: String,
    pub flow_id: String,
    pub flow_version: i32,
    pub created_at: i64,
    pub platform: Option<String>,
    pub app_version: Option<String>,
    /// `context.experiments` as JSON text, if any.
    pub experiments: Option<String>,
    /// A preview session (not counted).
    pub preview: bool,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Cohort {
    pub id: i64,
    pub flow_version: i32,
    pub platform: Option<String>,
    pub app_version: Option<String>,
    /// JSON object: experiment id → variant.
    pub arms: String,
}

/// A session's row between batches.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WalkRow {
    pub session_id: String,
    pub flow_id: String,
    /// 0: not counted.
    pub cohort_id: i64,
    pub created_at: i64,
    pub last_at: i64,
    pub idle_node: Option<String>,
    pub walk: String,
    /// The seq of the session's last event folded into `walk`.
    pub seq: i64,
}

/// One hour or day of one cohort.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RollupKey {
    pub flow_id: String,
    /// Its length (ms): an hour or a day.
    pub span: i64,
    /// Its first ms.
    pub start: i64,
    pub cohort_id: i64,
}

/// One batch of the aggregator, written at once with its place in the feed.
#[derive(Debug, Default)]
pub struct RollupBatch {
    pub walks: Vec<WalkRow>,
    /// The new sums (the old ones plus this batch).
    pub rollups: Vec<(RollupKey, String)>,
}

/// `id IN (the ids)`, per backend: SQLite reads a JSON array, PostgreSQL a
/// text array.
macro_rules! fetch_by_ids {
    ($store:expr, $ty:ty, $sqlite:expr, $postgres:expr, $ids:expr) => {{
        let ids: &[String] = $ids;
        let rows: Vec<$ty> = match &$store.inner {
            Inner::Sqlite { read, .. } => {
                let json = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
                sqlx::query_as($sqlite).bind(json).fetch_all(read).await?
            }
            Inner::Postgres(pool) => sqlx::query_as($postgres).bind(ids).fetch_all(pool).await?,
        };
        rows
    }};
}

impl Store {
    /// The facts of these sessions (those that still exist).
    pub async fn session_facts(&self, ids: &[String]) -> Result<Vec<SessionFacts>, StoreError> {
        Ok(fetch_by_ids!(
            self,
            SessionFacts,
            "SELECT id, flow_id, flow_version, created_at, \
             json_extract(state, '$.context.client.platform') AS platform, \
             json_extract(state, '$.context.client.app_version') AS app_version, \
             json_extract(state, '$.context.experiments') AS experiments, \
             json_extract(state, '$.context.session.preview') IS NOT NULL AS preview \
             FROM sessions WHERE id IN (SELECT value FROM json_each($1))",
            // `OFFSET 0` keeps the state parsed once per row, not once
            // per field.
            "SELECT id, flow_id, flow_version, created_at, \
             c #>> '{client,platform}' AS platform, \
             c #>> '{client,app_version}' AS app_version, \
             (c -> 'experiments')::text AS experiments, \
             (c #> '{session,preview}') IS NOT NULL AS preview \
             FROM sessions CROSS JOIN LATERAL (SELECT state::jsonb -> 'context' AS c OFFSET 0) j \
             WHERE id = ANY($1)",
            ids
        ))
    }

    /// The stored walks of these sessions.
    pub async fn session_walks(&self, ids: &[String]) -> Result<Vec<WalkRow>, StoreError> {
        Ok(fetch_by_ids!(
            self,
            WalkRow,
            "SELECT session_id, flow_id, cohort_id, created_at, last_at, idle_node, walk, seq \
             FROM funnel_sessions WHERE session_id IN (SELECT value FROM json_each($1))",
            "SELECT session_id, flow_id, cohort_id, created_at, last_at, idle_node, walk, seq \
             FROM funnel_sessions WHERE session_id = ANY($1)",
            ids
        ))
    }

    /// Every step attempt of these sessions: `(session, node, outcome)`,
    /// in the order they were made.
    pub async fn session_step_outcomes(
        &self,
        ids: &[String],
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        Ok(fetch_by_ids!(
            self,
            (String, String, String),
            "SELECT session_id, node, outcome FROM step_attempts \
             WHERE session_id IN (SELECT value FROM json_each($1)) \
             ORDER BY session_id, started_at, task_id, attempt",
            "SELECT session_id, node, outcome FROM step_attempts WHERE session_id = ANY($1) \
             ORDER BY session_id, started_at, task_id, attempt",
            ids
        ))
    }

    /// The id of the cohort `key` of `flow_id`, made on first use.
    pub async fn cohort_id(&self, flow_id: &str, key: &str, c: &Cohort) -> Result<i64, StoreError> {
        with_write_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO funnel_cohorts (flow_id, key, flow_version, platform, app_version, arms) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (flow_id, key) DO NOTHING",
            )
            .bind(flow_id)
            .bind(key)
            .bind(c.flow_version)
            .bind(&c.platform)
            .bind(&c.app_version)
            .bind(&c.arms)
            .execute(pool)
            .await?;
            Ok(
                sqlx::query_scalar("SELECT id FROM funnel_cohorts WHERE flow_id = $1 AND key = $2")
                    .bind(flow_id)
                    .bind(key)
                    .fetch_one(pool)
                    .await?,
            )
        })
    }

    pub async fn cohorts(&self, flow_id: &str) -> Result<Vec<Cohort>, StoreError> {
        Ok(with_read_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, flow_version, platform, app_version, arms FROM funnel_cohorts \
                 WHERE flow_id = $1",
            )
            .bind(flow_id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// The stored sums of these keys.
    pub async fn rollups_of(
        &self,
        keys: &[RollupKey],
    ) -> Result<HashMap<RollupKey, String>, StoreError> {
        let mut out = HashMap::with_capacity(keys.len());
        for k in keys {
            let data: Option<String> = with_read_pool!(self, |pool| {
                sqlx::query_scalar(
                    "SELECT data FROM funnel_rollups WHERE flow_id = $1 AND span = $2 \
                     AND start = $3 AND cohort_id = $4",
                )
                .bind(&k.flow_id)
                .bind(k.span)
                .bind(k.start)
                .bind(k.cohort_id)
                .fetch_optional(pool)
                .await?
            });
            if let Some(d) = data {
                out.insert(k.clone(), d);
            }
        }
        Ok(out)
    }

    /// The sums of `flow_id` for the spans of length `span` that start in
    /// `[from, to)`: `(cohort, data)`.
    pub async fn rollup_range(
        &self,
        flow_id: &str,
        span: i64,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        Ok(with_read_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT cohort_id, data FROM funnel_rollups \
                 WHERE flow_id = $1 AND span = $2 AND start >= $3 AND start < $4",
            )
            .bind(flow_id)
            .bind(span)
            .bind(from)
            .bind(to)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Sessions of `flow_id` started in `[from, to)` that stand, quiet
    /// since before `quiet_since`, where they could drop off: `(cohort,
    /// node, sessions)`.
    pub async fn idle_sessions(
        &self,
        flow_id: &str,
        quiet_since: i64,
        from: i64,
        to: i64,
    ) -> Result<Vec<(i64, String, i64)>, StoreError> {
        Ok(with_read_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT cohort_id, idle_node, COUNT(*) FROM funnel_sessions \
                 WHERE flow_id = $1 AND idle_node IS NOT NULL AND last_at < $2 \
                 AND created_at >= $3 AND created_at < $4 AND cohort_id <> 0 \
                 GROUP BY cohort_id, idle_node",
            )
            .bind(flow_id)
            .bind(quiet_since)
            .bind(from)
            .bind(to)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Sessions that could drop off and have been quiet since before
    /// `quiet_since`, at most `limit`.
    pub async fn quiet_walks(
        &self,
        quiet_since: i64,
        limit: i64,
    ) -> Result<Vec<WalkRow>, StoreError> {
        Ok(with_read_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT session_id, flow_id, cohort_id, created_at, last_at, idle_node, walk, seq \
                 FROM funnel_sessions WHERE idle_node IS NOT NULL AND last_at < $1 \
                 ORDER BY last_at LIMIT $2",
            )
            .bind(quiet_since)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Writes a batch and moves `sink` to `cursor` (when given), at once;
    /// `false` (nothing written) when `worker` no longer holds the sink's
    /// lease. The walks go in one statement per batch: a batch touches as
    /// many sessions as it has events at worst, and a statement each would
    /// make the aggregator's share of a busy server a matter of round trips.
    pub async fn apply_rollups(
        &self,
        sink: &str,
        worker: &str,
        cursor: Option<&str>,
        events: i64,
        now: i64,
        batch: &RollupBatch,
    ) -> Result<bool, StoreError> {
        // The lease check and the sums, the same on both backends.
        macro_rules! held_then_sums {
            ($tx:ident) => {{
                let held = sqlx::query(
                    "UPDATE sink_cursors SET cursor = COALESCE($3, cursor), \
                     delivered = delivered + $4, updated_at = $5 WHERE sink = $1 AND owner = $2",
                )
                .bind(sink)
                .bind(worker)
                .bind(cursor)
                .bind(events)
                .bind(now)
                .execute(&mut *$tx)
                .await?
                .rows_affected()
                    == 1;
                if held {
                    for (k, data) in &batch.rollups {
                        sqlx::query(
                            "INSERT INTO funnel_rollups (flow_id, span, start, cohort_id, data) \
                             VALUES ($1, $2, $3, $4, $5) \
                             ON CONFLICT (flow_id, span, start, cohort_id) DO UPDATE SET data = excluded.data",
                        )
                        .bind(&k.flow_id)
                        .bind(k.span)
                        .bind(k.start)
                        .bind(k.cohort_id)
                        .bind(data)
                        .execute(&mut *$tx)
                        .await?;
                    }
                }
                held
            }};
        }
        const ON_CONFLICT: &str = " ON CONFLICT (session_id) DO UPDATE SET \
             cohort_id = excluded.cohort_id, last_at = excluded.last_at, \
             idle_node = excluded.idle_node, walk = excluded.walk, seq = excluded.seq";
        let w = &batch.walks;
        match &self.inner {
            Inner::Sqlite { write, .. } => {
                let mut tx = write.begin_write().await?;
                // Nothing written when the lease is gone: dropping the
                // transaction rolls it back.
                if !held_then_sums!(tx) {
                    return Ok(false);
                }
                if !w.is_empty() {
                    let rows: Vec<_> = w
                        .iter()
                        .map(|r| {
                            (
                                &r.session_id,
                                &r.flow_id,
                                r.cohort_id,
                                r.created_at,
                                r.last_at,
                                &r.idle_node,
                                &r.walk,
                                r.seq,
                            )
                        })
                        .collect();
                    let rows = serde_json::to_string(&rows).map_err(|e| StoreError::Corrupt {
                        table: "funnel_sessions",
                        detail: e.to_string(),
                    })?;
                    // `WHERE true`: an upsert from a SELECT needs a WHERE
                    // so SQLite reads ON CONFLICT as the upsert's.
                    sqlx::query(&format!(
                        "INSERT INTO funnel_sessions (session_id, flow_id, cohort_id, created_at, \
                         last_at, idle_node, walk, seq) SELECT value ->> 0, value ->> 1, value ->> 2, \
                         value ->> 3, value ->> 4, value ->> 5, value ->> 6, value ->> 7 \
                         FROM json_each($1) \
                         WHERE true{ON_CONFLICT}"
                    ))
                    .bind(rows)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
            }
            Inner::Postgres(pool) => {
                let mut tx = pool.begin_write().await?;
                if !held_then_sums!(tx) {
                    return Ok(false);
                }
                if !w.is_empty() {
                    let col = |f: fn(&WalkRow) -> i64| w.iter().map(f).collect::<Vec<i64>>();
                    sqlx::query(&format!(
                        "INSERT INTO funnel_sessions (session_id, flow_id, cohort_id, created_at, \
                         last_at, idle_node, walk, seq) SELECT * FROM UNNEST($1::text[], $2::text[], \
                         $3::int8[], $4::int8[], $5::int8[], $6::text[], $7::text[], \
                         $8::int8[]){ON_CONFLICT}"
                    ))
                    .bind(w.iter().map(|r| r.session_id.as_str()).collect::<Vec<_>>())
                    .bind(w.iter().map(|r| r.flow_id.as_str()).collect::<Vec<_>>())
                    .bind(col(|r| r.cohort_id))
                    .bind(col(|r| r.created_at))
                    .bind(col(|r| r.last_at))
                    .bind(w.iter().map(|r| r.idle_node.as_deref()).collect::<Vec<_>>())
                    .bind(w.iter().map(|r| r.walk.as_str()).collect::<Vec<_>>())
                    .bind(col(|r| r.seq))
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
            }
        }
        Ok(true)
    }
}

//! Experiment storage: sticky assignments, variants forced for a user, and
//! the per-arm counts of an experiment computed from the session log (see
//! `migrations/*/0002_experiments.sql`).
//!
//! The experiment events themselves (`experiment_exposed`,
//! `experiment_converted`, `experiment_forced`, `experiment_unforced`) are
//! ordinary session events, appended by [`Store::commit`] with the advance
//! that caused them.

use super::{Backend, Inner, Store, StoreError, now_ms};

/// Event kinds of the experiment layer, as stored in `session_events.kind`.
pub const EXPOSED: &str = "experiment_exposed";
pub const CONVERTED: &str = "experiment_converted";
pub const FORCED: &str = "experiment_forced";
pub const UNFORCED: &str = "experiment_unforced";

/// What the store knows about a user in an experiment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssignmentLookup {
    /// A variant QA forced for this user.
    pub forced: Option<String>,
    /// The user's sticky assignment.
    pub assigned: Option<String>,
}

/// Counts of one arm, from the session log. Sessions with a forced variant
/// (forced for the session, or for its user when it was exposed) are left
/// out entirely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArmTally {
    pub variant: String,
    /// Distinct users with an exposure.
    pub users_exposed: i64,
    /// Distinct users with a conversion (after an exposure, same session).
    pub users_converted: i64,
    pub sessions_exposed: i64,
    pub sessions_converted: i64,
}

const SELECT_LOOKUP: &str = "SELECT 0 AS forced, variant FROM experiment_forced_users \
     WHERE experiment_id = $1 AND user_id = $2 \
     UNION ALL SELECT 1, variant FROM experiment_assignments \
     WHERE experiment_id = $1 AND user_id = $2";
const INSERT_ASSIGNMENT: &str = "INSERT INTO experiment_assignments \
     (experiment_id, user_id, variant, created_at) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (experiment_id, user_id) DO NOTHING";
const SELECT_ASSIGNMENT: &str = "SELECT variant FROM experiment_assignments \
     WHERE experiment_id = $1 AND user_id = $2";
const UPSERT_FORCED_USER: &str = "INSERT INTO experiment_forced_users \
     (experiment_id, user_id, variant, forced_by, created_at) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (experiment_id, user_id) DO UPDATE SET variant = excluded.variant, \
     forced_by = excluded.forced_by, created_at = excluded.created_at";
const DELETE_FORCED_USER: &str = "DELETE FROM experiment_forced_users \
     WHERE experiment_id = $1 AND user_id = $2";

/// The experiment's events, per backend: the expression and the `kind IN`
/// predicate are exactly the partial index's, so the planner uses it.
const SQLITE_EVENTS: &str = "SELECT session_id, kind, \
     json_extract(payload, '$.variant') AS variant, json_extract(payload, '$.user') AS user_id, \
     coalesce(json_extract(payload, '$.forced'), 0) <> 0 AS forced \
     FROM session_events \
     WHERE kind IN ('experiment_exposed', 'experiment_converted', 'experiment_forced', \
                    'experiment_unforced') \
       AND json_extract(payload, '$.experiment') = $1";
const POSTGRES_EVENTS: &str = "SELECT session_id, kind, \
     (payload::jsonb) ->> 'variant' AS variant, (payload::jsonb) ->> 'user' AS user_id, \
     coalesce(((payload::jsonb) ->> 'forced')::boolean, false) AS forced \
     FROM session_events \
     WHERE kind IN ('experiment_exposed', 'experiment_converted', 'experiment_forced', \
                    'experiment_unforced') \
       AND ((payload::jsonb) ->> 'experiment') = $1";
/// Per arm over the experiment's events (`ev`), leaving out every session
/// that was forced in any way.
const TALLY: &str = "SELECT variant, \
     count(DISTINCT CASE WHEN kind = 'experiment_exposed' THEN user_id END) AS users_exposed, \
     count(DISTINCT CASE WHEN kind = 'experiment_converted' THEN user_id END) AS users_converted, \
     count(CASE WHEN kind = 'experiment_exposed' THEN 1 END) AS sessions_exposed, \
     count(CASE WHEN kind = 'experiment_converted' THEN 1 END) AS sessions_converted \
     FROM ev \
     WHERE kind IN ('experiment_exposed', 'experiment_converted') \
       AND session_id NOT IN (SELECT session_id FROM ev \
                               WHERE kind = 'experiment_forced' OR forced) \
     GROUP BY variant ORDER BY variant";

/// The statement behind [`Store::experiment_tally`] (`$1`: the experiment
/// id), public so a test can check that the planner uses the index.
#[doc(hidden)]
pub fn tally_sql(backend: Backend) -> String {
    let events = match backend {
        Backend::Sqlite => SQLITE_EVENTS,
        Backend::Postgres => POSTGRES_EVENTS,
    };
    format!("WITH ev AS ({events}) {TALLY}")
}

#[derive(sqlx::FromRow)]
struct TallyRow {
    variant: Option<String>,
    users_exposed: i64,
    users_converted: i64,
    sessions_exposed: i64,
    sessions_converted: i64,
}

impl Store {
    /// The forced variant and the sticky assignment of `user_id` in
    /// `experiment`, in one round trip.
    pub async fn experiment_lookup(
        &self,
        experiment: &str,
        user_id: &str,
    ) -> Result<AssignmentLookup, StoreError> {
        let rows: Vec<(i32, String)> = with_read_pool!(self, |pool| {
            sqlx::query_as(SELECT_LOOKUP)
                .bind(experiment)
                .bind(user_id)
                .fetch_all(pool)
                .await?
        });
        let mut out = AssignmentLookup::default();
        for (source, variant) in rows {
            match source {
                0 => out.forced = Some(variant),
                _ => out.assigned = Some(variant),
            }
        }
        Ok(out)
    }

    /// Stores `variant` as the user's assignment unless one is stored
    /// already; returns the stored one (the first writer wins, also
    /// across replicas).
    pub async fn experiment_assign(
        &self,
        experiment: &str,
        user_id: &str,
        variant: &str,
    ) -> Result<String, StoreError> {
        with_write_pool!(self, |pool| {
            sqlx::query(INSERT_ASSIGNMENT)
                .bind(experiment)
                .bind(user_id)
                .bind(variant)
                .bind(now_ms())
                .execute(pool)
                .await?;
        });
        // Read where the write went: on SQLite the read pool could lag by
        // nothing (WAL), but the write pool is certain to see the row.
        let stored: Option<String> = with_write_pool!(self, |pool| {
            sqlx::query_scalar(SELECT_ASSIGNMENT)
                .bind(experiment)
                .bind(user_id)
                .fetch_optional(pool)
                .await?
        });
        stored.ok_or_else(|| StoreError::Corrupt {
            table: "experiment_assignments",
            detail: format!("the assignment of {user_id} in {experiment} vanished after insert"),
        })
    }

    /// The sticky assignment of `user_id`, if any.
    pub async fn experiment_assignment(
        &self,
        experiment: &str,
        user_id: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(self.experiment_lookup(experiment, user_id).await?.assigned)
    }

    /// Forces `variant` for every later session of `user_id` (replacing an
    /// earlier force).
    pub async fn experiment_force_user(
        &self,
        experiment: &str,
        user_id: &str,
        variant: &str,
        forced_by: &str,
    ) -> Result<(), StoreError> {
        with_write_pool!(self, |pool| {
            sqlx::query(UPSERT_FORCED_USER)
                .bind(experiment)
                .bind(user_id)
                .bind(variant)
                .bind(forced_by)
                .bind(now_ms())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Removes a user's forced variant; whether there was one.
    pub async fn experiment_unforce_user(
        &self,
        experiment: &str,
        user_id: &str,
    ) -> Result<bool, StoreError> {
        let done = with_write_pool!(self, |pool| {
            sqlx::query(DELETE_FORCED_USER)
                .bind(experiment)
                .bind(user_id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done > 0)
    }

    /// Per-arm counts of `experiment` from the session log.
    pub async fn experiment_tally(&self, experiment: &str) -> Result<Vec<ArmTally>, StoreError> {
        let sql = tally_sql(self.backend());
        let rows: Vec<TallyRow> = with_read_pool!(self, |pool| {
            sqlx::query_as(&sql)
                .bind(experiment)
                .fetch_all(pool)
                .await?
        });
        Ok(rows
            .into_iter()
            .map(|r| ArmTally {
                variant: r.variant.unwrap_or_default(),
                users_exposed: r.users_exposed,
                users_converted: r.users_converted,
                sessions_exposed: r.sessions_exposed,
                sessions_converted: r.sessions_converted,
            })
            .collect())
    }
}

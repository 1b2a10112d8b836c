//! Finding sessions for support: by user, flow, version, status and time,
//! newest first, in pages.

use super::{BeginWrite, Inner, SessionRecord, SessionRow, Store, StoreError};

/// Which sessions to find; every `None` matches all.
#[derive(Debug, Clone, Default)]
pub struct SessionQuery {
    pub user_id: Option<String>,
    pub flow_id: Option<String>,
    pub flow_version: Option<i32>,
    /// As stored: `ACTIVE`, `WAITING`, `COMPLETED`, `FAILED`, `EXPIRED`.
    pub status: Option<String>,
    /// Created at or after (epoch ms).
    pub created_from: Option<i64>,
    /// Created before (epoch ms).
    pub created_to: Option<i64>,
}

/// Where a page starts: the last session of the previous page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCursor {
    pub created_at: i64,
    pub id: String,
}

/// Most sessions one page returns.
pub const MAX_SESSION_PAGE: i64 = 1000;

const FIND: &str = "SELECT id, flow_id, flow_version, user_id, token_hash, status, seq, state, \
     created_at, updated_at FROM sessions \
     WHERE ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR flow_id = $2) \
     AND ($3 IS NULL OR flow_version = $3) AND ($4 IS NULL OR status = $4) \
     AND created_at >= $5 AND created_at < $6 \
     AND (created_at < $7 OR (created_at = $7 AND id < $8)) \
     ORDER BY created_at DESC, id DESC LIMIT $9";

impl Store {
    /// Sessions matching `q`, newest first, after `cursor`; at most
    /// `limit` (capped at [`MAX_SESSION_PAGE`]).
    pub async fn find_sessions(
        &self,
        q: &SessionQuery,
        cursor: Option<&SessionCursor>,
        limit: i64,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let limit = limit.clamp(0, MAX_SESSION_PAGE);
        // Without a cursor `created_at < i64::MAX` holds for every row, so
        // the id is never compared; with one, the comparison and ORDER BY
        // use the same collation.
        let (before_at, before_id) = match cursor {
            Some(c) => (c.created_at, c.id.clone()),
            None => (i64::MAX, String::new()),
        };
        let rows: Vec<SessionRow> = with_read_pool!(self, |pool| {
            sqlx::query_as(FIND)
                .bind(q.user_id.as_deref())
                .bind(q.flow_id.as_deref())
                .bind(q.flow_version)
                .bind(q.status.as_deref())
                .bind(q.created_from.unwrap_or(i64::MIN))
                .bind(q.created_to.unwrap_or(i64::MAX))
                .bind(before_at)
                .bind(before_id)
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(SessionRow::into_record).collect()
    }
}

const SQLITE_PREVIEWS: &str = "SELECT id, flow_id, flow_version, user_id, token_hash, status, seq, \
     state, created_at, updated_at FROM sessions WHERE flow_id = $1 \
     AND status IN ('ACTIVE', 'WAITING') \
     AND json_extract(state, '$.context.session.preview.follows_draft') = 1 \
     ORDER BY created_at DESC LIMIT $2";
const POSTGRES_PREVIEWS: &str = "SELECT id, flow_id, flow_version, user_id, token_hash, status, \
     seq, state, created_at, updated_at FROM sessions WHERE flow_id = $1 \
     AND status IN ('ACTIVE', 'WAITING') \
     AND (state::jsonb #>> '{context,session,preview,follows_draft}') = 'true' \
     ORDER BY created_at DESC LIMIT $2";

impl Store {
    /// Open preview sessions of `flow_id` that follow its drafts, newest
    /// first, at most `limit`.
    pub async fn following_previews(
        &self,
        flow_id: &str,
        limit: i64,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let sql = match self.backend() {
            super::Backend::Sqlite => SQLITE_PREVIEWS,
            super::Backend::Postgres => POSTGRES_PREVIEWS,
        };
        let rows: Vec<SessionRow> = with_read_pool!(self, |pool| {
            sqlx::query_as(sql)
                .bind(flow_id)
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(SessionRow::into_record).collect()
    }

    /// Moves a session to another version of its flow with `state`, if it
    /// is still at `seq`, appending a `preview_followed` event (so every
    /// replica's cached snapshot of it is stale); `false` when the session
    /// moved on meanwhile.
    pub async fn repin_session(
        &self,
        id: &str,
        seq: i64,
        from_version: i32,
        version: i32,
        state: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        let text = super::to_json("the session state", state)?;
        let payload =
            serde_json::json!({ "from": from_version, "to": version, "preview": true }).to_string();
        let now = super::now_ms();
        let changed: bool = with_write_pool!(self, |pool| {
            async {
                let mut tx = pool.begin_write().await?;
                let n = sqlx::query(
                    "UPDATE sessions SET flow_version = $1, state = $2, updated_at = $3, \
                     seq = seq + 1 WHERE id = $4 AND seq = $5",
                )
                .bind(version)
                .bind(text.as_str())
                .bind(now)
                .bind(id)
                .bind(seq)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if n != 1 {
                    return Ok::<bool, sqlx::Error>(false);
                }
                sqlx::query(
                    "INSERT INTO session_events (session_id, seq, kind, payload, created_at) \
                     VALUES ($1, $2, 'preview_followed', $3, $4)",
                )
                .bind(id)
                .bind(seq + 1)
                .bind(payload.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(true)
            }
            .await?
        });
        Ok(changed)
    }
}

/// Most sessions one funnel reads.
pub const MAX_FUNNEL_SESSIONS: i64 = 100_000;

/// One session of a funnel: what the funnel groups by, and its log.
#[derive(Debug, Clone)]
pub struct FunnelSession {
    pub id: String,
    pub flow_version: i32,
    pub status: String,
    pub platform: Option<String>,
    pub app_version: Option<String>,
    pub updated_at: i64,
    /// The experiments pinned for it (`context.experiments`), or null.
    pub experiments: serde_json::Value,
    /// `(kind, payload, created_at)` of its `entered`, `submitted`,
    /// `went_back` and `ended` events, in log order.
    pub events: Vec<(String, serde_json::Value, i64)>,
}

#[derive(sqlx::FromRow)]
struct FunnelRow {
    id: String,
    flow_version: i32,
    status: String,
    platform: Option<String>,
    app_version: Option<String>,
    updated_at: i64,
    experiments: Option<String>,
    kind: Option<String>,
    payload: Option<String>,
    at: Option<i64>,
}

const SQLITE_FUNNEL: &str = "SELECT s.id, s.flow_version, s.status, \
     json_extract(s.state, '$.context.client.platform') AS platform, \
     json_extract(s.state, '$.context.client.app_version') AS app_version, s.updated_at, \
     json_extract(s.state, '$.context.experiments') AS experiments, \
     e.kind, e.payload, e.created_at AS at \
     FROM (SELECT * FROM sessions WHERE flow_id = $1 AND created_at >= $2 AND created_at < $3 \
           AND ($4 IS NULL OR flow_version = $4) \
           AND json_extract(state, '$.context.session.preview') IS NULL \
           ORDER BY created_at, id LIMIT $5) s \
     LEFT JOIN session_events e ON e.session_id = s.id \
       AND e.kind IN ('entered', 'submitted', 'went_back', 'ended', 'operated') \
     ORDER BY s.created_at, s.id, e.seq";
const POSTGRES_FUNNEL: &str = "SELECT s.id, s.flow_version, s.status, \
     s.state::jsonb #>> '{context,client,platform}' AS platform, \
     s.state::jsonb #>> '{context,client,app_version}' AS app_version, s.updated_at, \
     (s.state::jsonb #> '{context,experiments}')::text AS experiments, \
     e.kind, e.payload, e.created_at AS at \
     FROM (SELECT * FROM sessions WHERE flow_id = $1 AND created_at >= $2 AND created_at < $3 \
           AND ($4::INTEGER IS NULL OR flow_version = $4) \
           AND (state::jsonb #> '{context,session,preview}') IS NULL \
           ORDER BY created_at, id LIMIT $5) s \
     LEFT JOIN session_events e ON e.session_id = s.id \
       AND e.kind IN ('entered', 'submitted', 'went_back', 'ended', 'operated') \
     ORDER BY s.created_at, s.id, e.seq";

impl Store {
    /// The sessions of `flow_id` (of `version`, if given) started in
    /// `[from, to)`, previews left out, with their funnel events: at most
    /// `limit` sessions, oldest first.
    pub async fn funnel_sessions(
        &self,
        flow_id: &str,
        version: Option<i32>,
        from: i64,
        to: i64,
        limit: i64,
    ) -> Result<Vec<FunnelSession>, StoreError> {
        let sql = match self.backend() {
            super::Backend::Sqlite => SQLITE_FUNNEL,
            super::Backend::Postgres => POSTGRES_FUNNEL,
        };
        let rows: Vec<FunnelRow> = with_read_pool!(self, |pool| {
            sqlx::query_as(sql)
                .bind(flow_id)
                .bind(from)
                .bind(to)
                .bind(version)
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        let mut out: Vec<FunnelSession> = Vec::new();
        for r in rows {
            if out.last().is_none_or(|s| s.id != r.id) {
                out.push(FunnelSession {
                    id: r.id.clone(),
                    flow_version: r.flow_version,
                    status: r.status.clone(),
                    platform: r.platform.clone(),
                    app_version: r.app_version.clone(),
                    updated_at: r.updated_at,
                    experiments: match &r.experiments {
                        Some(text) => super::parse_json("sessions", "state", text)?,
                        None => serde_json::Value::Null,
                    },
                    events: Vec::new(),
                });
            }
            if let (Some(kind), Some(payload), Some(at)) = (r.kind, r.payload, r.at) {
                let payload = super::parse_json("session_events", "payload", &payload)?;
                if let Some(s) = out.last_mut() {
                    s.events.push((kind, payload, at));
                }
            }
        }
        Ok(out)
    }
}

/// Attempts of one step node across a funnel's sessions.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StepTally {
    pub node: String,
    pub attempts: i64,
    /// Failed attempts that were tried again.
    pub retries: i64,
    /// Attempts that failed for good (`error`, `timeout`).
    pub failures: i64,
}

const SQLITE_STEP_TALLY: &str = "SELECT a.node, COUNT(*) AS attempts, \
     SUM(CASE WHEN a.outcome = 'retry' THEN 1 ELSE 0 END) AS retries, \
     SUM(CASE WHEN a.outcome IN ('error', 'timeout') THEN 1 ELSE 0 END) AS failures \
     FROM step_attempts a JOIN sessions s ON s.id = a.session_id \
     WHERE s.flow_id = $1 AND s.created_at >= $2 AND s.created_at < $3 \
     AND ($4 IS NULL OR s.flow_version = $4) \
     AND json_extract(s.state, '$.context.session.preview') IS NULL \
     GROUP BY a.node ORDER BY a.node";
const POSTGRES_STEP_TALLY: &str = "SELECT a.node, COUNT(*) AS attempts, \
     CAST(SUM(CASE WHEN a.outcome = 'retry' THEN 1 ELSE 0 END) AS BIGINT) AS retries, \
     CAST(SUM(CASE WHEN a.outcome IN ('error', 'timeout') THEN 1 ELSE 0 END) AS BIGINT) AS failures \
     FROM step_attempts a JOIN sessions s ON s.id = a.session_id \
     WHERE s.flow_id = $1 AND s.created_at >= $2 AND s.created_at < $3 \
     AND ($4::INTEGER IS NULL OR s.flow_version = $4) \
     AND (s.state::jsonb #> '{context,session,preview}') IS NULL \
     GROUP BY a.node ORDER BY a.node";

impl Store {
    /// Step attempts per node of the sessions a funnel counts.
    pub async fn funnel_steps(
        &self,
        flow_id: &str,
        version: Option<i32>,
        from: i64,
        to: i64,
    ) -> Result<Vec<StepTally>, StoreError> {
        let sql = match self.backend() {
            super::Backend::Sqlite => SQLITE_STEP_TALLY,
            super::Backend::Postgres => POSTGRES_STEP_TALLY,
        };
        Ok(with_read_pool!(self, |pool| {
            sqlx::query_as(sql)
                .bind(flow_id)
                .bind(from)
                .bind(to)
                .bind(version)
                .fetch_all(pool)
                .await?
        }))
    }
}

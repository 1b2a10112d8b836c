//! Finding sessions for support: by user, flow, version, status and time,
//! newest first, in pages.

use super::{Inner, SessionRecord, SessionRow, Store, StoreError};

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

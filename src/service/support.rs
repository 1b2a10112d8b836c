//! What support sees and does with an API key instead of a session token:
//! one session with its context and history, sessions found by a filter,
//! and cancel or retry on every session a filter finds (bounded, audited).

use serde_json::{Value, json};

use super::{Baton, ServiceError, SessionView, view_of};
use crate::store::EventRecord;
use crate::store::search::{SessionCursor, SessionQuery};

/// Most sessions one bulk call operates; the answer says whether more match.
pub const MAX_BULK: i64 = 1000;

/// A session as support reads it.
#[derive(Debug, Clone)]
pub struct SupportView {
    pub view: SessionView,
    pub user_id: String,
    /// The context rules and templates read; secrets were redacted before
    /// it was stored.
    pub context: Value,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What a bulk call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BulkOutcome {
    /// Sessions the filter found (at most [`MAX_BULK`]).
    pub matched: i64,
    pub done: i64,
    /// Sessions the action did not apply to (already ended, not on a
    /// failed step…), with why, by session id.
    pub skipped: Vec<(String, String)>,
    /// More sessions match than one call operates: call again.
    pub more: bool,
}

impl Baton {
    /// One session, read with an API key (no token).
    pub async fn support_session(&self, id: &str) -> Result<SupportView, ServiceError> {
        let rec = self
            .store()
            .session(id)
            .await?
            .ok_or_else(|| ServiceError::SessionNotFound {
                session_id: id.to_string(),
            })?;
        self.support_view(rec).await
    }

    async fn support_view(
        &self,
        rec: crate::store::SessionRecord,
    ) -> Result<SupportView, ServiceError> {
        let state: crate::engine::SessionState =
            serde_json::from_value(rec.state).map_err(ServiceError::internal)?;
        let flow = self.flow_of(&rec.flow_id, rec.flow_version, &state).await?;
        // A screen this session's client cannot render is still a session
        // support must see: it comes without its screen.
        let view = view_of(&flow, &rec.id, &state).or_else(|_| {
            Ok::<_, ServiceError>(SessionView {
                id: rec.id.clone(),
                flow_id: rec.flow_id.clone(),
                flow_version: rec.flow_version,
                status: state.status,
                outcome: state.outcome,
                screen: None,
                parked: None,
            })
        })?;
        Ok(SupportView {
            view,
            user_id: rec.user_id,
            context: state.context,
            created_at: rec.created_at,
            updated_at: rec.updated_at,
        })
    }

    /// A session's event history, oldest first, after `after_seq`.
    pub async fn session_events(
        &self,
        id: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<EventRecord>, ServiceError> {
        Ok(self.store().events(id, after_seq, limit).await?)
    }

    /// Sessions matching `q`, newest first.
    pub async fn find_sessions(
        &self,
        q: &SessionQuery,
        cursor: Option<&SessionCursor>,
        limit: i64,
    ) -> Result<Vec<SupportView>, ServiceError> {
        let mut out = Vec::new();
        for rec in self.store().find_sessions(q, cursor, limit).await? {
            out.push(self.support_view(rec).await?);
        }
        Ok(out)
    }

    /// Cancels every unfinished session `q` finds (up to [`MAX_BULK`]).
    pub async fn cancel_sessions(
        &self,
        q: &SessionQuery,
        by: &str,
    ) -> Result<BulkOutcome, ServiceError> {
        self.bulk(q, by, "sessions.bulk_cancelled", |id| async move {
            self.cancel_session(&id, by).await.map(|_| ())
        })
        .await
    }

    /// Retries the failed step of every session `q` finds (up to [`MAX_BULK`]).
    pub async fn retry_sessions(
        &self,
        q: &SessionQuery,
        by: &str,
    ) -> Result<BulkOutcome, ServiceError> {
        self.bulk(q, by, "sessions.bulk_retried", |id| async move {
            self.retry_step(&id, by).await.map(|_| ())
        })
        .await
    }

    async fn bulk<F, Fut>(
        &self,
        q: &SessionQuery,
        by: &str,
        action: &str,
        each: F,
    ) -> Result<BulkOutcome, ServiceError>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<(), ServiceError>>,
    {
        let mut found = self.store().find_sessions(q, None, MAX_BULK + 1).await?;
        let more = found.len() as i64 > MAX_BULK;
        found.truncate(MAX_BULK as usize);
        let mut out = BulkOutcome {
            matched: found.len() as i64,
            more,
            ..BulkOutcome::default()
        };
        for rec in found {
            match each(rec.id.clone()).await {
                Ok(()) => out.done += 1,
                Err(e) => out.skipped.push((rec.id, e.to_string())),
            }
        }
        self.audit(
            by,
            action,
            "sessions",
            None,
            json!({
                "filter": {
                    "userId": q.user_id, "flowId": q.flow_id, "flowVersion": q.flow_version,
                    "status": q.status, "from": q.created_from, "to": q.created_to,
                },
                "matched": out.matched, "done": out.done, "skipped": out.skipped.len(),
                "more": out.more,
            }),
        )
        .await;
        Ok(out)
    }
}

//! Admin GraphQL for support: `session(id)` read with a key (in
//! `schema.rs`), a session's context and event history on `FlowSession`,
//! `sessions(filter)`, and cancel or retry of every session a filter
//! finds. Reading needs `READ_SESSIONS`, operating `OPERATE_SESSIONS`.

use std::sync::Arc;

use async_graphql::connection::{Connection, Edge, EmptyFields, query};
use async_graphql::{ComplexObject, Context, ID, InputObject, Json, Object, SimpleObject};
use serde_json::Value;

use super::types::{FlowSession, SessionStatus};
use crate::auth::{Permission, require};
use crate::engine::rfc3339;
use crate::service::support::{BulkOutcome, SupportView};
use crate::service::{Baton, ServiceError};
use crate::store::search::{SessionCursor, SessionQuery};

use super::schema::to_gql;
use super::steps::need;

/// Whether the request carries a key that reads sessions.
pub fn reads_sessions(ctx: &Context<'_>) -> bool {
    require(ctx, Permission::ReadSessions).is_ok()
}

pub fn support_session(s: SupportView) -> FlowSession {
    let s = Arc::new(s);
    FlowSession {
        support: Some(s.clone()),
        ..FlowSession::from_view(s.view.clone(), None)
    }
}

/// One entry of a session's history.
#[derive(SimpleObject)]
pub struct SessionEvent {
    /// 1-based position in the session's log.
    pub seq: i64,
    pub kind: String,
    pub payload: Json<Value>,
    pub at: String,
}

#[ComplexObject]
impl FlowSession {
    /// With a key that reads sessions: the user's id.
    async fn user_id(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<ID>> {
        Ok(self.support_data(ctx).await?.map(|s| ID(s.user_id.clone())))
    }

    /// With a key that reads sessions: when it started.
    async fn created_at(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        Ok(self.support_data(ctx).await?.map(|s| rfc3339(s.created_at)))
    }

    /// With a key that reads sessions: when it last changed.
    async fn updated_at(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
        Ok(self.support_data(ctx).await?.map(|s| rfc3339(s.updated_at)))
    }

    /// With a key that reads sessions: what its rules and templates read
    /// (user, client, input, steps, flags, experiments), secrets redacted.
    async fn context(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Json<Value>>> {
        Ok(self
            .support_data(ctx)
            .await?
            .map(|s| Json(s.context.clone())))
    }

    /// With a key that reads sessions: its history, oldest first.
    async fn events(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, SessionEvent, EmptyFields, EmptyFields>> {
        need(ctx, Permission::ReadSessions)?;
        let baton = ctx.data_unchecked::<Baton>();
        let id = self.id.to_string();
        query(
            after,
            None,
            first,
            None,
            |after: Option<String>, _before: Option<String>, first, _last| async move {
                let first = first.unwrap_or(50).clamp(1, 500) as i64;
                let after_seq = match after.as_deref().map(str::parse::<i64>) {
                    Some(Ok(seq)) => seq,
                    Some(Err(_)) => {
                        return Err(async_graphql::Error::new(
                            "`after` is not a cursor from this connection",
                        ));
                    }
                    None => 0,
                };
                let mut events = baton
                    .session_events(&id, after_seq, first + 1)
                    .await
                    .map_err(to_gql)?;
                let has_next = events.len() as i64 > first;
                events.truncate(first as usize);
                let mut conn = Connection::new(after_seq > 0, has_next);
                conn.edges.extend(events.into_iter().map(|e| {
                    Edge::new(
                        e.seq.to_string(),
                        SessionEvent {
                            seq: e.seq,
                            kind: e.kind,
                            payload: Json(e.payload),
                            at: rfc3339(e.created_at),
                        },
                    )
                }));
                Ok::<_, async_graphql::Error>(conn)
            },
        )
        .await
    }
}

impl FlowSession {
    /// The support data, loaded for a session read with a token when the
    /// request also carries a reading key; an error without one.
    async fn support_data(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Option<Arc<SupportView>>> {
        need(ctx, Permission::ReadSessions)?;
        if let Some(s) = &self.support {
            return Ok(Some(s.clone()));
        }
        let baton = ctx.data_unchecked::<Baton>();
        match baton.support_session(&self.id).await {
            Ok(s) => Ok(Some(Arc::new(s))),
            Err(ServiceError::SessionNotFound { .. }) => Ok(None),
            Err(e) => Err(to_gql(e)),
        }
    }
}

/// Which sessions to find; omitted fields match all.
#[derive(InputObject, Default)]
pub struct SessionFilter {
    pub user_id: Option<ID>,
    pub flow_id: Option<ID>,
    pub flow_version: Option<i32>,
    pub status: Option<SessionStatus>,
    /// Started at or after (RFC 3339).
    pub from: Option<String>,
    /// Started before (RFC 3339).
    pub to: Option<String>,
}

fn time(field: &str, value: Option<&str>) -> Result<Option<i64>, ServiceError> {
    let Some(text) = value else { return Ok(None) };
    let ms = crate::engine::parse_rfc3339(text).map_err(|e| ServiceError::InvalidInput {
        field: field.into(),
        message: format!("`{text}` is not an RFC 3339 time ({e}), e.g. 2026-12-05T09:30:00Z"),
    })?;
    Ok(Some(ms))
}

impl SessionFilter {
    fn query(&self) -> Result<SessionQuery, ServiceError> {
        Ok(SessionQuery {
            user_id: self.user_id.as_ref().map(|s| s.to_string()),
            flow_id: self.flow_id.as_ref().map(|s| s.to_string()),
            flow_version: self.flow_version,
            status: self.status.map(|s| s.as_stored().to_string()),
            created_from: time("filter.from", self.from.as_deref())?,
            created_to: time("filter.to", self.to.as_deref())?,
        })
    }

    fn is_empty(&self) -> bool {
        self.user_id.is_none()
            && self.flow_id.is_none()
            && self.flow_version.is_none()
            && self.status.is_none()
            && self.from.is_none()
            && self.to.is_none()
    }
}

#[derive(Default)]
pub struct SupportQuery;

#[Object]
impl SupportQuery {
    /// Sessions matching `filter`, newest first.
    async fn sessions(
        &self,
        ctx: &Context<'_>,
        filter: Option<SessionFilter>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, FlowSession, EmptyFields, EmptyFields>> {
        need(ctx, Permission::ReadSessions)?;
        let baton = ctx.data_unchecked::<Baton>();
        let q = filter.unwrap_or_default().query().map_err(to_gql)?;
        query(
            after,
            None,
            first,
            None,
            |after: Option<String>, _before: Option<String>, first, _last| async move {
                let first = first.unwrap_or(20).clamp(1, 100) as i64;
                let cursor = match after.as_deref().map(parse_cursor) {
                    Some(Some(c)) => Some(c),
                    Some(None) => {
                        return Err(async_graphql::Error::new(
                            "`after` is not a cursor from this connection",
                        ));
                    }
                    None => None,
                };
                let mut found = baton
                    .find_sessions(&q, cursor.as_ref(), first + 1)
                    .await
                    .map_err(to_gql)?;
                let has_next = found.len() as i64 > first;
                found.truncate(first as usize);
                let mut conn = Connection::new(cursor.is_some(), has_next);
                conn.edges.extend(found.into_iter().map(|s| {
                    let cursor = format!("{}:{}", s.created_at, s.view.id);
                    Edge::new(cursor, support_session(s))
                }));
                Ok::<_, async_graphql::Error>(conn)
            },
        )
        .await
    }
}

fn parse_cursor(text: &str) -> Option<SessionCursor> {
    let (at, id) = text.split_once(':')?;
    Some(SessionCursor {
        created_at: at.parse().ok()?,
        id: id.to_string(),
    })
}

/// What a bulk call did.
#[derive(SimpleObject)]
pub struct BulkResult {
    /// Sessions the filter found in this call (at most 1000).
    pub matched: i64,
    pub done: i64,
    /// Sessions the action did not apply to, and why.
    pub skipped: Vec<BulkSkip>,
    /// More sessions match: call again.
    pub more: bool,
}

#[derive(SimpleObject)]
pub struct BulkSkip {
    pub session_id: ID,
    pub reason: String,
}

impl From<BulkOutcome> for BulkResult {
    fn from(b: BulkOutcome) -> Self {
        BulkResult {
            matched: b.matched,
            done: b.done,
            skipped: b
                .skipped
                .into_iter()
                .map(|(id, reason)| BulkSkip {
                    session_id: ID(id),
                    reason,
                })
                .collect(),
            more: b.more,
        }
    }
}

fn non_empty(filter: &SessionFilter) -> async_graphql::Result<()> {
    if filter.is_empty() {
        return Err(to_gql(ServiceError::InvalidInput {
            field: "filter".into(),
            message:
                "an empty filter would operate every session; name a flow, user, status or time"
                    .into(),
        }));
    }
    Ok(())
}

#[derive(Default)]
pub struct SupportMutation;

#[Object]
impl SupportMutation {
    /// Cancels every unfinished session `filter` finds, up to 1000 a call.
    async fn cancel_sessions(
        &self,
        ctx: &Context<'_>,
        filter: SessionFilter,
    ) -> async_graphql::Result<BulkResult> {
        let who = need(ctx, Permission::OperateSessions)?;
        non_empty(&filter)?;
        let baton = ctx.data_unchecked::<Baton>();
        let q = filter.query().map_err(to_gql)?;
        Ok(baton
            .cancel_sessions(&q, &who.name)
            .await
            .map_err(to_gql)?
            .into())
    }

    /// Retries the failed step of every session `filter` finds, up to 1000 a call.
    async fn retry_sessions(
        &self,
        ctx: &Context<'_>,
        filter: SessionFilter,
    ) -> async_graphql::Result<BulkResult> {
        let who = need(ctx, Permission::OperateSessions)?;
        non_empty(&filter)?;
        let baton = ctx.data_unchecked::<Baton>();
        let q = filter.query().map_err(to_gql)?;
        Ok(baton
            .retry_sessions(&q, &who.name)
            .await
            .map_err(to_gql)?
            .into())
    }
}

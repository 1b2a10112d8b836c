//! Admin GraphQL for events out: the dead letters of the webhooks
//! (`READ_SESSIONS`: they hold events) and replaying one (`OPERATE_SESSIONS`).

use async_graphql::{Context, ID, Object, SimpleObject};

use super::analytics::DateTime;
use crate::auth::{Permission, require};
use crate::sinks::{SinkError, Sinks};
use crate::store::sinks::MAX_DEAD_LETTERS;

/// A batch of events a webhook refused until its retries ran out.
#[derive(SimpleObject)]
pub struct DeadLetter {
    /// Also the `X-Baton-Delivery` header the webhook was sent.
    pub id: ID,
    pub webhook: String,
    pub events: i32,
    /// The feed cursors of its first and last event.
    pub first_cursor: String,
    pub last_cursor: String,
    pub attempts: i32,
    /// What the last attempt got (`HTTP 500`, `no answer: …`).
    pub error: String,
    pub at: DateTime,
    /// When a replay delivered it.
    pub replayed_at: Option<DateTime>,
}

impl From<crate::store::sinks::DeadLetter> for DeadLetter {
    fn from(d: crate::store::sinks::DeadLetter) -> Self {
        DeadLetter {
            id: ID(d.id),
            webhook: d.sink,
            events: d.events,
            first_cursor: d.first_cursor,
            last_cursor: d.last_cursor,
            attempts: d.attempts,
            error: d.error,
            at: DateTime(d.created_at),
            replayed_at: d.replayed_at.map(DateTime),
        }
    }
}

fn to_gql(e: SinkError) -> async_graphql::Error {
    crate::api::error::graphql_error(&e)
}

#[derive(Default)]
pub struct SinkQuery;

#[Object]
impl SinkQuery {
    /// Dead letters, oldest first; of one webhook or of all.
    async fn dead_letters(
        &self,
        ctx: &Context<'_>,
        webhook: Option<String>,
        #[graphql(default = 100)] first: i32,
    ) -> async_graphql::Result<Vec<DeadLetter>> {
        require(ctx, Permission::ReadSessions).map_err(|e| e.into_graphql())?;
        let sinks = ctx.data_unchecked::<Sinks>();
        let first = i64::from(first).clamp(1, MAX_DEAD_LETTERS);
        let letters = sinks
            .store()
            .dead_letters(webhook.as_deref(), first)
            .await
            .map_err(|e| to_gql(e.into()))?;
        Ok(letters.into_iter().map(DeadLetter::from).collect())
    }
}

#[derive(Default)]
pub struct SinkMutation;

#[Object]
impl SinkMutation {
    /// Sends a dead letter to its webhook again (once, freshly signed,
    /// same `X-Baton-Delivery`); marks it replayed when the webhook takes it.
    async fn replay_dead_letter(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<DeadLetter> {
        require(ctx, Permission::OperateSessions).map_err(|e| e.into_graphql())?;
        let sinks = ctx.data_unchecked::<Sinks>();
        sinks
            .replay(&id)
            .await
            .map(DeadLetter::from)
            .map_err(to_gql)
    }
}

//! The app-facing GraphQL schema: `startFlow`, `submit`, `back`, `session`
//! and `sessionUpdated`, exactly as named in the design brief.

use async_graphql::{
    Context, ID, InputObject, Json, MergedObject, Object, Schema, SchemaBuilder, Subscription,
};
use futures_util::{Stream, StreamExt, stream};
use serde_json::{Map, Value};
use tokio::sync::broadcast::error::RecvError;

use super::http::BearerToken;
use super::types::FlowSession;
use crate::engine::ClientInfo;
use crate::service::{Baton, ServiceError, StartRequest, SubmitRequest};

pub type BatonSchema = Schema<RootQuery, RootMutation, Subscription>;

/// The query root: the app-facing [`Query`] and the admin fields, each
/// group in its own module.
#[derive(MergedObject, Default)]
pub struct RootQuery(
    Query,
    super::admin::AdminQuery,
    super::steps::StepQuery,
    super::experiments::ExperimentQuery,
    super::releases::ReleaseQuery,
    super::support::SupportQuery,
    super::analytics::AnalyticsQuery,
    super::sinks::SinkQuery,
);

/// The schema with its resolvers' state; limits are applied by the caller.
pub fn builder(baton: Baton) -> SchemaBuilder<RootQuery, RootMutation, Subscription> {
    Schema::build(RootQuery::default(), RootMutation::default(), Subscription).data(baton)
}

#[derive(InputObject)]
pub struct StartFlowInput {
    pub flow_id: ID,
    pub user: UserInput,
    pub client: Option<ClientInput>,
    /// Run the session's backend steps against their mocks (for frontend
    /// development). Needs a server started with `--mock`.
    pub mock: Option<MockInput>,
}

#[derive(InputObject)]
pub struct MockInput {
    /// A named mock scenario (e.g. `declined`); omitted: the default mocks.
    pub scenario: Option<String>,
}

#[derive(InputObject)]
pub struct UserInput {
    pub id: ID,
    /// Free-form attributes rules and templates read as `user.attributes.*`.
    pub attributes: Option<Json<Value>>,
}

#[derive(InputObject, Default)]
pub struct ClientInput {
    pub platform: Option<String>,
    pub app_version: Option<String>,
    pub locale: Option<String>,
    /// Component kinds the client renders (`text`, …, `custom:<name>`);
    /// omitted means every core kind.
    pub capabilities: Option<Vec<String>>,
}

#[derive(InputObject)]
pub struct SubmitInput {
    pub session_id: ID,
    /// The screen the user acted on; a stale one is not applied.
    pub screen_id: ID,
    pub action: String,
    /// Input values by component id.
    pub values: Option<Json<Value>>,
    /// Replays with the same key return the first result and never advance twice.
    pub idempotency_key: Option<String>,
}

/// Maps a service error to a GraphQL error with `extensions.code` and
/// `hint`; internal details are logged, never sent.
pub fn to_gql(err: ServiceError) -> async_graphql::Error {
    crate::api::error::graphql_error(&err)
}

/// The session token as the service checks it: bound to the verified
/// user when identity is on (a missing or bad user JWT is refused before
/// any session is looked up).
fn token(ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
    let token = BearerToken::of(ctx);
    match user(ctx)? {
        Some(subject) => Ok(token.map(|t| crate::identity::bind(t, Some(&subject)))),
        None => Ok(token.map(str::to_owned)),
    }
}

/// The verified subject of `X-User-Token`, when identity is on.
fn user(ctx: &Context<'_>) -> async_graphql::Result<Option<String>> {
    let Some(identity) = ctx.data_opt::<std::sync::Arc<crate::identity::Identity>>() else {
        return Ok(None);
    };
    let jwt = ctx
        .data_opt::<super::http::UserToken>()
        .and_then(|u| u.0.as_deref());
    identity
        .verify(jwt)
        .map(Some)
        .map_err(|e| crate::api::error::graphql_error(&e))
}

/// Counts an operation on `session_id` against the per-session rate limit.
/// Only calls with a token count: one without is refused before any lookup
/// anyway, and must not let anyone who knows an id throttle its session
/// (a wrong token still counts: the id is all the limit knows).
fn rate_limit(ctx: &Context<'_>, session_id: &str) -> async_graphql::Result<()> {
    let Some(limits) = ctx.data_opt::<std::sync::Arc<super::rate_limit::RateLimits>>() else {
        return Ok(());
    };
    if BearerToken::of(ctx).is_none() {
        return Ok(());
    }
    limits.check_session(session_id).map_err(|err| {
        if let Some(after) = super::rate_limit::retry_after(&err) {
            ctx.insert_http_header(axum::http::header::RETRY_AFTER, after);
        }
        err.into_graphql()
    })
}

#[derive(Default)]
pub struct Query;

#[Object]
impl Query {
    /// A session as it is now; needs the session's token, or (support) an
    /// `X-API-Key` whose role reads sessions. `null` for an unknown id and
    /// for another session's token alike.
    async fn session(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<FlowSession>> {
        rate_limit(ctx, &id)?;
        let baton = ctx.data_unchecked::<Baton>();
        let token = token(ctx)?;
        // Support reads any session with a key instead of its token.
        if token.is_none() && super::support::reads_sessions(ctx) {
            return match baton.support_session(&id).await {
                Ok(s) => Ok(Some(super::support::support_session(s))),
                Err(ServiceError::SessionNotFound { .. }) => Ok(None),
                Err(e) => Err(to_gql(e)),
            };
        }
        match baton.session(&id, token.as_deref()).await {
            Ok(v) => Ok(Some(FlowSession::from_view(v, None))),
            Err(ServiceError::SessionNotFound { .. }) => Ok(None),
            Err(e) => Err(to_gql(e)),
        }
    }
}

/// The mutation root: the app-facing [`Mutation`], the step operations
/// reviewers, backends and operators call, and the experiment ones (the
/// last two with an API key).
#[derive(MergedObject, Default)]
pub struct RootMutation(
    Mutation,
    super::steps::StepMutation,
    super::experiments::ExperimentMutation,
    super::releases::ReleaseMutation,
    super::support::SupportMutation,
    super::sinks::SinkMutation,
);

#[derive(Default)]
pub struct Mutation;

#[Object]
impl Mutation {
    /// Starts a session on the flow's latest version and returns its first screen and token.
    async fn start_flow(
        &self,
        ctx: &Context<'_>,
        input: StartFlowInput,
    ) -> async_graphql::Result<FlowSession> {
        let baton = ctx.data_unchecked::<Baton>();
        let client = input.client.unwrap_or_default();
        let mock = match input.mock {
            None => None,
            // Mock sessions skip real checks (a credit check, an approval):
            // only a server in mock mode or a key that may start them.
            Some(_)
                if !baton.step_settings().mock_all
                    && crate::auth::require(ctx, crate::auth::Permission::MockSessions)
                        .is_err() =>
            {
                return Err(to_gql(ServiceError::MockNotAllowed));
            }
            Some(m) => Some(m.scenario.unwrap_or_else(|| "default".into())),
        };
        if mock.as_ref().is_some_and(|s| s.is_empty() || s.len() > 100) {
            return Err(to_gql(ServiceError::InvalidInput {
                field: "mock.scenario".into(),
                message: "must be 1 to 100 bytes".into(),
            }));
        }
        // A version that does not parse would silently count as current
        // and get screens the app may not render.
        if let Some(v) = &client.app_version
            && crate::flow::compile::lenient_semver(v).is_none()
        {
            return Err(to_gql(ServiceError::InvalidAppVersion {
                version: v.clone(),
            }));
        }
        // With identity on, the session's user is the token's subject.
        let bound_to = user(ctx)?;
        if let Some(subject) = &bound_to
            && *subject != input.user.id.0
        {
            return Err(crate::api::error::graphql_error(
                &crate::identity::IdentityError::UserMismatch {
                    subject: subject.clone(),
                    given: input.user.id.0,
                },
            ));
        }
        let req = StartRequest {
            mock,
            bound_to,
            flow_id: input.flow_id.0,
            user_id: input.user.id.0,
            user_attributes: input.user.attributes.map(|j| j.0).unwrap_or(Value::Null),
            client: ClientInfo {
                platform: client.platform,
                app_version: client.app_version,
                locale: client.locale,
                capabilities: client.capabilities,
            },
        };
        let (view, token) = baton.start_flow(req).await.map_err(to_gql)?;
        Ok(FlowSession::from_view(view, Some(token)))
    }

    /// Submits the current screen with one of its actions.
    async fn submit(
        &self,
        ctx: &Context<'_>,
        input: SubmitInput,
    ) -> async_graphql::Result<FlowSession> {
        let baton = ctx.data_unchecked::<Baton>();
        let values = match input.values.map(|j| j.0) {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m,
            Some(_) => {
                return Err(to_gql(ServiceError::InvalidInput {
                    field: "values".into(),
                    message: "must be a JSON object keyed by component id".into(),
                }));
            }
        };
        rate_limit(ctx, &input.session_id)?;
        let req = SubmitRequest {
            session_id: input.session_id.0,
            screen_id: input.screen_id.0,
            action: input.action,
            values,
            idempotency_key: input.idempotency_key,
        };
        let token = token(ctx)?;
        let view = baton.submit(req, token.as_deref()).await.map_err(to_gql)?;
        Ok(FlowSession::from_view(view, None))
    }

    /// Returns to the previous screen, with the values entered there.
    async fn back(&self, ctx: &Context<'_>, session_id: ID) -> async_graphql::Result<FlowSession> {
        rate_limit(ctx, &session_id)?;
        let baton = ctx.data_unchecked::<Baton>();
        let token = token(ctx)?;
        let view = baton
            .back(&session_id, token.as_deref())
            .await
            .map_err(to_gql)?;
        Ok(FlowSession::from_view(view, None))
    }
}

pub struct Subscription;

#[Subscription]
impl Subscription {
    /// The session now, then after every change, until it ends.
    async fn session_updated(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
    ) -> async_graphql::Result<impl Stream<Item = FlowSession> + use<>> {
        rate_limit(ctx, &session_id)?;
        let baton = ctx.data_unchecked::<Baton>();
        let token = token(ctx)?;
        let (first, rx) = baton
            .watch(&session_id, token.as_deref())
            .await
            .map_err(to_gql)?;
        let ended = first.status.is_terminal();
        let head = stream::once(async move { FlowSession::from_view(first, None) });
        let tail = stream::unfold((rx, ended), |(mut rx, ended)| async move {
            if ended {
                return None;
            }
            loop {
                match rx.recv().await {
                    Ok(v) => {
                        let ended = v.status.is_terminal();
                        return Some((FlowSession::from_view(v, None), (rx, ended)));
                    }
                    // A slow subscriber skips to the newest state.
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return None,
                }
            }
        });
        Ok(head.chain(tail))
    }
}

//! GraphQL for backend steps beyond the app-facing core: reviewers' inbox
//! of approval tasks (a Relay connection), claiming and deciding them,
//! external events, a session's step history, and operators' retry / skip
//! / cancel. Every call here needs an API key (`X-API-Key`) whose role
//! allows it; the app-facing session token is not enough.

use crate::codes::Code;
use crate::engine::rfc3339;
use async_graphql::connection::{Connection, Edge, EmptyFields, query};
use async_graphql::{Context, ID, InputObject, Json, Object, SimpleObject};
use serde_json::{Map, Value};

use super::schema::to_gql;
use super::types::{Component, FlowSession};
use crate::auth::{Permission, require};
use crate::service::steps::{ApprovalView, StepDone};
use crate::service::{Baton, ServiceError};
use crate::store::tasks::{AttemptRecord, TaskRecord, TaskState};

/// [`require`] with the error as a GraphQL error carrying its code.
pub(super) fn need<'a>(
    ctx: &'a Context<'_>,
    permission: Permission<'_>,
) -> async_graphql::Result<&'a crate::auth::Principal> {
    require(ctx, permission).map_err(|e| e.into_graphql())
}

/// A human task waiting for a reviewer.
pub struct ApprovalTask {
    view: ApprovalView,
}

#[Object]
impl ApprovalTask {
    async fn id(&self) -> ID {
        ID(self.view.task.id.clone())
    }
    async fn session_id(&self) -> ID {
        ID(self.view.task.session_id.clone())
    }
    /// The approval step's node id.
    async fn node(&self) -> &str {
        &self.view.task.node
    }
    /// The reviewer queue (the step's `role`).
    async fn queue(&self) -> Option<&str> {
        self.view.task.queue.as_deref()
    }
    async fn title(&self) -> Option<&str> {
        self.view.task.input["title"].as_str()
    }
    /// `open` while undecided, `done` once decided, timed out or cancelled.
    async fn state(&self) -> &str {
        self.view.task.state.as_str()
    }
    async fn claimed_by(&self) -> Option<&str> {
        self.view.task.claimed_by.as_deref()
    }
    /// The decision, once made.
    async fn outcome(&self) -> Option<&str> {
        self.view.task.outcome.as_deref()
    }
    /// The outcomes a reviewer may choose.
    async fn outcomes(&self) -> &[String] {
        &self.view.outcomes
    }
    /// The inputs the reviewer fills, rendered over the session.
    async fn fields(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Component>> {
        let baton = ctx.data_unchecked::<Baton>();
        let fields = baton
            .approval_fields(&self.view.task)
            .await
            .map_err(to_gql)?;
        let none = Map::new();
        Ok(fields
            .iter()
            .map(|c| Component::from_def(c, &none))
            .collect())
    }
    /// RFC 3339; after it the step takes its timeout edge.
    async fn due_at(&self) -> Option<String> {
        (self.view.task.state == TaskState::Open)
            .then_some(self.view.task.due_at)
            .flatten()
            .map(rfc3339)
    }
    async fn created_at(&self) -> String {
        rfc3339(self.view.task.created_at)
    }
}

/// One attempt at a backend step.
#[derive(SimpleObject)]
pub struct StepAttempt {
    pub attempt: i32,
    /// `ok`, `error`, `timeout`, or `retry` (failed and was tried again).
    pub outcome: String,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub worker: String,
    pub started_at: String,
    pub duration_ms: i32,
}

impl From<&AttemptRecord> for StepAttempt {
    fn from(a: &AttemptRecord) -> Self {
        StepAttempt {
            attempt: a.attempt,
            outcome: a.outcome.as_str().to_owned(),
            status_code: a.status_code,
            error: a.error.clone(),
            worker: a.worker.clone(),
            started_at: rfc3339(a.started_at),
            duration_ms: i32::try_from(a.finished_at - a.started_at).unwrap_or(i32::MAX),
        }
    }
}

/// A backend step of a session, with its attempts.
#[derive(SimpleObject)]
pub struct StepRun {
    pub id: ID,
    pub node: String,
    pub kind: String,
    /// `ready`, `running`, `open` or `done`.
    pub state: String,
    pub outcome: Option<String>,
    pub mock: Option<String>,
    pub attempts: Vec<StepAttempt>,
    pub created_at: String,
    pub updated_at: String,
}

fn step_run(task: &TaskRecord, attempts: &[AttemptRecord]) -> StepRun {
    StepRun {
        id: ID(task.id.clone()),
        node: task.node.clone(),
        kind: task.kind.clone(),
        state: task.state.as_str().to_owned(),
        outcome: task.outcome.clone(),
        mock: task.mock.clone(),
        attempts: attempts
            .iter()
            .filter(|a| a.task_id == task.id)
            .map(StepAttempt::from)
            .collect(),
        created_at: rfc3339(task.created_at),
        updated_at: rfc3339(task.updated_at),
    }
}

#[derive(Default)]
pub struct StepQuery;

#[Object]
impl StepQuery {
    /// Open approval tasks, oldest first. Reviewers see their queues;
    /// admins see all, or one `queue`.
    async fn approval_tasks(
        &self,
        ctx: &Context<'_>,
        queue: Option<String>,
        after: Option<String>,
        first: Option<i32>,
    ) -> async_graphql::Result<Connection<String, ApprovalTask, EmptyFields, EmptyFields>> {
        let principal = need(ctx, Permission::ListApprovals)?;
        let queues: Option<Vec<String>> = match (&queue, principal.role) {
            (Some(q), _) if principal.allows(Permission::DecideApproval { queue: q }) => {
                Some(vec![q.clone()])
            }
            (Some(q), _) => {
                need(ctx, Permission::DecideApproval { queue: q })?;
                unreachable!("require failed above")
            }
            (None, crate::auth::Role::Admin) => None,
            (None, _) => Some(principal.queues.clone()),
        };
        let baton = ctx.data_unchecked::<Baton>();
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
                // One more than asked tells whether there is a next page.
                let mut tasks = baton
                    .approvals(queues.as_deref(), cursor, first + 1)
                    .await
                    .map_err(to_gql)?;
                let has_next = tasks.len() as i64 > first;
                tasks.truncate(first as usize);
                let mut conn = Connection::new(false, has_next);
                conn.edges.extend(tasks.into_iter().map(|view| {
                    let cursor = format!("{}:{}", view.task.created_at, view.task.id);
                    Edge::new(cursor, ApprovalTask { view })
                }));
                Ok::<_, async_graphql::Error>(conn)
            },
        )
        .await
    }

    /// One approval task (any state); `null` for an unknown id and for
    /// another queue's task alike.
    async fn approval_task(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<ApprovalTask>> {
        let principal = need(ctx, Permission::ListApprovals)?;
        let baton = ctx.data_unchecked::<Baton>();
        match baton.approval(&id).await {
            // Another queue's task is answered as an unknown id.
            Ok(view) if !may_see(principal, &view) => Ok(None),
            Ok(view) => Ok(Some(ApprovalTask { view })),
            Err(ServiceError::TaskNotFound { .. }) => Ok(None),
            Err(e) => Err(to_gql(e)),
        }
    }

    /// Every backend step of a session with its attempts (support view).
    async fn session_steps(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
    ) -> async_graphql::Result<Vec<StepRun>> {
        need(ctx, Permission::ReadSessions)?;
        let baton = ctx.data_unchecked::<Baton>();
        let history = baton.step_history(&session_id).await.map_err(to_gql)?;
        Ok(history
            .tasks
            .iter()
            .map(|t| step_run(t, &history.attempts))
            .collect())
    }
}

/// The role check of deciding, made before a task is looked up so that a
/// key which decides no queue learns nothing about the id. Listing has the
/// deciders' roles (a test pins it); [`visible`] then checks the queue.
fn need_decider<'a>(ctx: &'a Context<'_>) -> async_graphql::Result<&'a crate::auth::Principal> {
    need(ctx, Permission::ListApprovals)
}

/// Whether `principal` may see (and decide) the task: its queue is one of
/// a reviewer's, or the principal is an admin.
fn may_see(principal: &crate::auth::Principal, view: &ApprovalView) -> bool {
    let queue = view.task.queue.as_deref().unwrap_or_default();
    principal.allows(Permission::DecideApproval { queue })
}

/// The task if `principal` may decide it; another queue's task is
/// `TASK_NOT_FOUND` like an unknown id, so task ids cannot be probed (the
/// role itself was checked before the lookup, for the same reason).
fn visible(
    principal: &crate::auth::Principal,
    found: Result<ApprovalView, ServiceError>,
    task_id: &str,
) -> async_graphql::Result<ApprovalView> {
    match found {
        Ok(view) if may_see(principal, &view) => Ok(view),
        Ok(_) => Err(to_gql(ServiceError::TaskNotFound {
            task_id: task_id.to_string(),
        })),
        Err(e) => Err(to_gql(e)),
    }
}

fn parse_cursor(c: &str) -> Option<(i64, String)> {
    let (at, id) = c.split_once(':')?;
    Some((at.parse().ok()?, id.to_string()))
}

#[derive(InputObject)]
pub struct CompleteApprovalInput {
    pub task_id: ID,
    /// One of the task's `outcomes`.
    pub outcome: String,
    /// The reviewer's inputs, by field id.
    pub values: Option<Json<Value>>,
    pub comment: Option<String>,
}

#[derive(InputObject)]
pub struct SendEventInput {
    /// The event name an `event` step waits for, e.g. `payment.settled`.
    pub name: String,
    pub correlation_key: String,
    /// Stored at `steps.<id>.payload`.
    pub payload: Option<Json<Value>>,
}

#[derive(SimpleObject)]
pub struct SendEventResult {
    /// Sessions the event advanced now. 0 means it is kept until a step
    /// waiting for it is entered.
    pub delivered: i32,
}

#[derive(SimpleObject)]
pub struct ApprovalDecision {
    pub task_id: ID,
    /// The session after the decision (no token).
    pub session: Option<FlowSession>,
}

#[derive(Default)]
pub struct StepMutation;

#[Object]
impl StepMutation {
    /// Takes an open approval task so other reviewers see it is handled.
    async fn claim_approval_task(
        &self,
        ctx: &Context<'_>,
        task_id: ID,
    ) -> async_graphql::Result<ApprovalTask> {
        let principal = need_decider(ctx)?;
        let baton = ctx.data_unchecked::<Baton>();
        visible(principal, baton.approval(&task_id).await, &task_id)?;
        let view = baton
            .claim_approval(&task_id, &principal.name)
            .await
            .map_err(to_gql)?;
        Ok(ApprovalTask { view })
    }

    /// Decides an approval task; the session moves along the outcome's edge.
    async fn complete_approval_task(
        &self,
        ctx: &Context<'_>,
        input: CompleteApprovalInput,
    ) -> async_graphql::Result<ApprovalDecision> {
        let principal = need_decider(ctx)?;
        let baton = ctx.data_unchecked::<Baton>();
        visible(
            principal,
            baton.approval(&input.task_id).await,
            &input.task_id,
        )?;
        let values = json_object(input.values, "values")?;
        let done = baton
            .complete_approval(
                &input.task_id,
                &principal.name,
                &input.outcome,
                &values,
                input.comment.as_deref(),
            )
            .await
            .map_err(to_gql)?;
        Ok(ApprovalDecision {
            task_id: input.task_id,
            session: match done {
                StepDone::Advanced(v) => Some(FlowSession::from_view(*v, None)),
                StepDone::AlreadyDone => None,
            },
        })
    }

    /// Delivers an external event to the `event` steps waiting for it.
    async fn send_event(
        &self,
        ctx: &Context<'_>,
        input: SendEventInput,
    ) -> async_graphql::Result<SendEventResult> {
        need(ctx, Permission::SendEvents)?;
        let baton = ctx.data_unchecked::<Baton>();
        let payload = input.payload.map(|j| j.0).unwrap_or(Value::Null);
        let delivered = baton
            .send_event(&input.name, &input.correlation_key, payload)
            .await
            .map_err(to_gql)?;
        Ok(SendEventResult {
            delivered: i32::try_from(delivered).unwrap_or(i32::MAX),
        })
    }

    /// Runs the failed step a session stopped on again.
    async fn retry_step(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
    ) -> async_graphql::Result<FlowSession> {
        let p = need(ctx, Permission::OperateSessions)?;
        let baton = ctx.data_unchecked::<Baton>();
        let view = baton
            .retry_step(&session_id, &p.name)
            .await
            .map_err(to_gql)?;
        Ok(FlowSession::from_view(view, None))
    }

    /// Moves a session waiting on a step to node `to`, skipping the step.
    async fn skip_step(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
        to: ID,
    ) -> async_graphql::Result<FlowSession> {
        let p = need(ctx, Permission::OperateSessions)?;
        let baton = ctx.data_unchecked::<Baton>();
        let view = baton
            .skip_step(&session_id, &to, &p.name)
            .await
            .map_err(to_gql)?;
        Ok(FlowSession::from_view(view, None))
    }

    /// Ends a session now; an open step is cancelled.
    async fn cancel_session(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
    ) -> async_graphql::Result<FlowSession> {
        let p = need(ctx, Permission::OperateSessions)?;
        let baton = ctx.data_unchecked::<Baton>();
        let view = baton
            .cancel_session(&session_id, &p.name)
            .await
            .map_err(to_gql)?;
        Ok(FlowSession::from_view(view, None))
    }
}

fn json_object(v: Option<Json<Value>>, field: &str) -> async_graphql::Result<Map<String, Value>> {
    match v.map(|j| j.0) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(to_gql(ServiceError::InvalidInput {
            field: field.into(),
            message: "must be a JSON object keyed by field id".into(),
        })),
    }
}

/// `POST /events/{name}`: the webhook form of `sendEvent`, for backends
/// that call a URL rather than a GraphQL API. Body:
/// `{"correlationKey": "...", "payload": {...}}`; header `X-API-Key` with a
/// role that may send events. Answers `{"delivered": n}`.
pub fn webhook_router(baton: Baton, keys: crate::auth::ApiKeys, max_body: usize) -> axum::Router {
    use axum::extract::DefaultBodyLimit;
    use axum::routing::post;
    axum::Router::new()
        .route("/events/{name}", post(webhook))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state((baton, keys))
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WebhookBody {
    correlation_key: String,
    #[serde(default)]
    payload: Value,
}

async fn webhook(
    axum::extract::State((baton, keys)): axum::extract::State<(Baton, crate::auth::ApiKeys)>,
    axum::extract::Path(name): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
    body: Result<axum::Json<WebhookBody>, axum::extract::rejection::JsonRejection>,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let fail = |status: StatusCode, code: Code, message: String, hint: Option<String>| {
        (
            status,
            axum::Json(
                serde_json::json!({ "error": { "code": code.as_str(), "message": message, "hint": hint } }),
            ),
        )
            .into_response()
    };
    let caller = match keys.caller(&headers) {
        Ok(c) => c,
        Err(e) => return fail(e.status(), e.code(), e.to_string(), e.hint()),
    };
    match caller.0.as_deref() {
        None => {
            return fail(
                StatusCode::UNAUTHORIZED,
                Code::ApiKeyRequired,
                "sending events needs an API key".into(),
                Some("send `X-API-Key` with a publisher or admin key".into()),
            );
        }
        Some(p) if !p.allows(Permission::SendEvents) => {
            return fail(
                StatusCode::FORBIDDEN,
                Code::ForbiddenRole,
                format!("key `{}` ({}) may not send events", p.name, p.role.as_str()),
                Some("use a publisher or admin key".into()),
            );
        }
        Some(_) => {}
    }
    let body = match body {
        Ok(axum::Json(b)) => b,
        Err(e) => {
            return fail(
                e.status(),
                Code::BadRequest,
                e.body_text(),
                Some("send JSON: {\"correlationKey\": \"…\", \"payload\": {…}}".into()),
            );
        }
    };
    match baton
        .send_event(&name, &body.correlation_key, body.payload)
        .await
    {
        Ok(n) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({ "delivered": n })),
        )
            .into_response(),
        Err(e) => {
            let status = if e.is_internal() {
                tracing::error!(error = %e, code = %e.code(), "event delivery failed");
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::BAD_REQUEST
            };
            let message = if e.is_internal() {
                "internal error".into()
            } else {
                e.to_string()
            };
            fail(status, e.code(), message, e.hint())
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::auth::Permission;

    #[test]
    fn listing_and_deciding_need_the_same_roles() {
        let decide = Permission::DecideApproval { queue: "q" };
        assert_eq!(Permission::ListApprovals.roles(), decide.roles());
    }
}

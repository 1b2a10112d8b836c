//! Service errors: the codes the API shows for everything below it.

use crate::codes::Code;
use thiserror::Error;

use crate::engine::EngineError;
use crate::flow::error::FlowError;
use crate::store::StoreError;

#[derive(Debug, Error)]
pub enum ServiceError {
    #[error("no flow `{flow_id}` is loaded")]
    FlowNotFound { flow_id: String },
    #[error("flow `{flow_id}` has no version {version}")]
    FlowVersionNotFound { flow_id: String, version: i32 },
    /// Also a token that is not this session's: the two answer alike.
    #[error("no session `{session_id}` for this token")]
    SessionNotFound { session_id: String },
    #[error("this call needs the session's token")]
    Unauthenticated,
    #[error("invalid `{field}`: {message}")]
    InvalidInput { field: String, message: String },
    #[error("invalid `client.appVersion`: `{version}` is not a version")]
    InvalidAppVersion { version: String },
    #[error("idempotency key `{key}` was already used for a different submit")]
    IdempotencyKeyReused { key: String },
    #[error("the session is being changed by other requests; try again")]
    Busy,
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Flow(#[from] FlowError),
    #[error(transparent)]
    Release(#[from] super::lifecycle::ReleaseError),
    #[error(transparent)]
    Analytics(#[from] super::funnel::AnalyticsError),
    #[error("no step task `{task_id}`")]
    TaskNotFound { task_id: String },
    #[error("step task `{task_id}` is not open ({})", state.as_str())]
    TaskNotOpen {
        task_id: String,
        state: crate::store::tasks::TaskState,
    },
    #[error("approval task `{task_id}` is claimed by `{by}`")]
    TaskClaimed { task_id: String, by: String },
    #[error("the reviewer's values are invalid: {summary}")]
    InvalidDecision {
        summary: String,
        errors: Vec<crate::engine::FieldError>,
    },
    #[error("mock sessions are not enabled on this server")]
    MockNotAllowed,
    #[error("no step of this flow declares the mock scenario `{scenario}`")]
    UnknownMockScenario {
        scenario: String,
        declared: Vec<String>,
    },
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    pub fn internal(e: impl std::fmt::Display) -> ServiceError {
        ServiceError::Internal(e.to_string())
    }

    pub fn code(&self) -> Code {
        match self {
            ServiceError::FlowNotFound { .. } => Code::FlowNotFound,
            ServiceError::FlowVersionNotFound { .. } => Code::FlowVersionNotFound,
            ServiceError::SessionNotFound { .. } => Code::SessionNotFound,
            ServiceError::Unauthenticated => Code::Unauthenticated,
            ServiceError::InvalidInput { .. } | ServiceError::InvalidAppVersion { .. } => {
                Code::BadUserInput
            }
            ServiceError::IdempotencyKeyReused { .. } => Code::IdempotencyKeyReused,
            ServiceError::Busy => Code::SessionBusy,
            ServiceError::Engine(e) => e.code(),
            ServiceError::Store(e) => e.code(),
            ServiceError::Flow(e) => e.code(),
            ServiceError::Release(e) => e.code(),
            ServiceError::Analytics(e) => e.code(),
            ServiceError::TaskNotFound { .. } => Code::TaskNotFound,
            ServiceError::TaskNotOpen { .. } => Code::TaskNotOpen,
            ServiceError::TaskClaimed { .. } => Code::TaskClaimed,
            ServiceError::InvalidDecision { .. } => Code::InvalidDecision,
            ServiceError::MockNotAllowed => Code::MockNotAllowed,
            ServiceError::UnknownMockScenario { .. } => Code::UnknownMockScenario,
            ServiceError::Internal(_) => Code::Internal,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            ServiceError::FlowNotFound { .. } => {
                Some("check `flowId`; `baton validate flows/` lists the flows that load".into())
            }
            ServiceError::SessionNotFound { .. } => Some(
                "check the id and send the token `startFlow` returned for that session; \
                 sessions are created by `startFlow`"
                    .into(),
            ),
            ServiceError::Unauthenticated => Some(
                "send `Authorization: Bearer <token>` with the token `startFlow` returned".into(),
            ),
            ServiceError::IdempotencyKeyReused { .. } => {
                Some("use a new key for each distinct submit".into())
            }
            ServiceError::Busy => Some("retry the request with the same idempotency key".into()),
            ServiceError::TaskNotFound { .. } => {
                Some("list open tasks with `approvalTasks`; ids come from there".into())
            }
            ServiceError::TaskNotOpen { .. } => {
                Some("the step was decided, timed out or cancelled already".into())
            }
            ServiceError::TaskClaimed { .. } => {
                Some("another reviewer claimed it; pick another task".into())
            }
            ServiceError::MockNotAllowed => Some(
                "start the server with --mock (BATON_MOCK=1), or send an API key whose role may start mock sessions (editor, publisher, admin) as X-API-Key".into(),
            ),
            ServiceError::UnknownMockScenario { declared, .. } => Some(format!(
                "the flow declares: {}",
                declared.join(", ")
            )),
            ServiceError::InvalidDecision { .. } => {
                Some("fill the approval's fields as `errors` describes".into())
            }
            ServiceError::InvalidAppVersion { .. } => Some(
                "send the app's version as semver, e.g. `6.1.0` (`6.1`, `6` and `v6.1.0` are read as 6.1.0), or omit `appVersion` to be treated as current".into(),
            ),
            ServiceError::Engine(e) => e.hint(),
            ServiceError::Store(e) => e.hint(),
            ServiceError::Flow(e) => e.hint(),
            ServiceError::Release(e) => e.hint(),
            ServiceError::Analytics(e) => e.hint(),
            _ => None,
        }
    }

    /// Errors whose detail must not reach clients: logged, then shown as a
    /// generic message.
    pub fn is_internal(&self) -> bool {
        match self {
            ServiceError::Internal(_) | ServiceError::Store(_) | ServiceError::Flow(_) => true,
            ServiceError::Engine(e) => e.is_flow_defect(),
            _ => false,
        }
    }
}

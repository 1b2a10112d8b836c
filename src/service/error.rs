//! Service errors: the codes the API shows for everything below it.

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
    #[error("the token does not belong to this session")]
    Forbidden,
    #[error("invalid `{field}`: {message}")]
    InvalidInput { field: String, message: String },
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
    #[error("no step task `{task_id}`")]
    TaskNotFound { task_id: String },
    #[error("step task `{task_id}` is not open ({state})")]
    TaskNotOpen { task_id: String, state: String },
    #[error("approval task `{task_id}` is claimed by `{by}`")]
    TaskClaimed { task_id: String, by: String },
    #[error("the reviewer's values are invalid: {summary}")]
    InvalidDecision {
        summary: String,
        errors: Vec<crate::engine::FieldError>,
    },
    #[error("mock sessions are not enabled on this server")]
    MockNotAllowed,
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    pub fn internal(e: impl std::fmt::Display) -> ServiceError {
        ServiceError::Internal(e.to_string())
    }

    pub fn code(&self) -> &'static str {
        match self {
            ServiceError::FlowNotFound { .. } => "FLOW_NOT_FOUND",
            ServiceError::FlowVersionNotFound { .. } => "FLOW_VERSION_NOT_FOUND",
            ServiceError::SessionNotFound { .. } => "SESSION_NOT_FOUND",
            ServiceError::Unauthenticated => "UNAUTHENTICATED",
            ServiceError::Forbidden => "FORBIDDEN",
            ServiceError::InvalidInput { .. } => "BAD_USER_INPUT",
            ServiceError::IdempotencyKeyReused { .. } => "IDEMPOTENCY_KEY_REUSED",
            ServiceError::Busy => "SESSION_BUSY",
            ServiceError::Engine(e) => e.code(),
            ServiceError::Store(e) => e.code(),
            ServiceError::Flow(e) => e.code(),
            ServiceError::TaskNotFound { .. } => "TASK_NOT_FOUND",
            ServiceError::TaskNotOpen { .. } => "TASK_NOT_OPEN",
            ServiceError::TaskClaimed { .. } => "TASK_CLAIMED",
            ServiceError::InvalidDecision { .. } => "INVALID_DECISION",
            ServiceError::MockNotAllowed => "MOCK_NOT_ALLOWED",
            ServiceError::Internal(_) => "INTERNAL",
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
            ServiceError::Forbidden => {
                Some("use the token `startFlow` returned for this session".into())
            }
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
            ServiceError::InvalidDecision { .. } => {
                Some("fill the approval's fields as `errors` describes".into())
            }
            ServiceError::Engine(e) => e.hint(),
            ServiceError::Store(e) => e.hint(),
            ServiceError::Flow(e) => e.hint(),
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

//! Engine errors: what can go wrong stepping a flow. Each has a stable code
//! that the API surfaces as `extensions.code`.

use crate::codes::Code;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("screen `{submitted}` is not the current screen (`{current}`)")]
    StaleScreen { submitted: String, current: String },
    #[error("screen `{screen}` has no action `{action}`")]
    UnknownAction { screen: String, action: String },
    #[error("the session has ended ({status})")]
    SessionEnded { status: String },
    #[error("there is no previous screen to go back to")]
    NoPreviousScreen,
    #[error("node `{node}`: no edge matched and there is no default edge")]
    NoMatchingEdge { node: String },
    #[error("more than {limit} nodes were passed in one advance (last: `{node}`)")]
    StepLimit { limit: u32, node: String },
    #[error("node `{node}`: rule failed: {message}")]
    Rule { node: String, message: String },
    #[error("template failed: {message}")]
    Template { message: String },
    #[error("the session context would be {size} bytes, over the limit of {limit}")]
    ContextTooLarge { size: usize, limit: usize },
    #[error("the session refers to node `{node}`, which flow version {version} does not have")]
    UnknownNode { node: String, version: i32 },
    #[error("step `{node}` is not what the session waits for (it is at `{current}`)")]
    StepNotCurrent { node: String, current: String },
    #[error("step `{node}` has no outcome `{outcome}`")]
    UnknownOutcome { node: String, outcome: String },
    #[error("the session is waiting for backend step `{node}`")]
    SessionWaiting { node: String },
    #[error("`{to}` is in another flow of the session than `{node}`, where it waits")]
    SkipAcrossSubflow { node: String, to: String },
    #[error("subflow `{node}` was entered without its child flow")]
    SubflowNotLoaded { node: String },
    #[error("this client cannot render screen `{screen}`, and no fallback fits it: {reason}")]
    ClientUnsupported { screen: String, reason: String },
}

impl EngineError {
    pub fn code(&self) -> Code {
        match self {
            EngineError::StaleScreen { .. } => Code::StaleScreen,
            EngineError::UnknownAction { .. } => Code::UnknownAction,
            EngineError::SessionEnded { .. } => Code::SessionEnded,
            EngineError::NoPreviousScreen => Code::NoPreviousScreen,
            EngineError::NoMatchingEdge { .. } => Code::NoMatchingEdge,
            EngineError::StepLimit { .. } => Code::StepLimitExceeded,
            EngineError::Rule { .. } => Code::RuleFailed,
            EngineError::Template { .. } => Code::TemplateFailed,
            EngineError::ContextTooLarge { .. } => Code::ContextTooLarge,
            EngineError::UnknownNode { .. } => Code::UnknownNode,
            EngineError::StepNotCurrent { .. } => Code::StepNotCurrent,
            EngineError::UnknownOutcome { .. } => Code::UnknownOutcome,
            EngineError::SessionWaiting { .. } => Code::SessionWaiting,
            EngineError::ClientUnsupported { .. } => Code::ClientUnsupported,
            EngineError::SubflowNotLoaded { .. } => Code::SubflowNotLoaded,
            EngineError::SkipAcrossSubflow { .. } => Code::SkipAcrossSubflow,
        }
    }

    pub fn hint(&self) -> Option<String> {
        Some(match self {
            EngineError::StaleScreen { current, .. } => {
                format!("render the current screen `{current}` that came with this answer")
            }
            EngineError::UnknownAction { .. } => "send one of the screen's `actions`".into(),
            EngineError::SessionEnded { .. } => "start a new session with `startFlow`".into(),
            EngineError::NoPreviousScreen => "this is the first screen of the session".into(),
            EngineError::NoMatchingEdge { .. } => {
                "add an edge without `when` as the last edge of this node (the flow author's fix)".into()
            }
            EngineError::StepLimit { .. } => {
                "the flow loops through decisions without reaching a screen; `baton validate` finds such cycles".into()
            }
            EngineError::Rule { .. }
            | EngineError::Template { .. }
            | EngineError::UnknownNode { .. }
            | EngineError::SubflowNotLoaded { .. } => {
                return None;
            }
            EngineError::ContextTooLarge { .. } => "submit fewer or shorter values".into(),
            EngineError::StepNotCurrent { .. } => {
                "the step already finished or the session moved on; read the session".into()
            }
            EngineError::UnknownOutcome { .. } => {
                "use one of the outcomes the approval step declares".into()
            }
            EngineError::SessionWaiting { .. } => {
                "wait for `sessionUpdated` (or poll `session`) until the step finishes".into()
            }
            EngineError::SkipAcrossSubflow { .. } => {
                "skip to a node with the same prefix (the same subflow), e.g. a later node of that subflow or its end".into()
            }
            EngineError::ClientUnsupported { .. } => {
                "list every component kind the client renders in `capabilities` (omit it to mean every core kind), or update the app; the flow author can add a `fallback` this client renders".into()
            }
        })
    }

    /// Whether the problem lies with the flow definition rather than the
    /// caller: such errors are logged as a flow defect.
    pub fn is_flow_defect(&self) -> bool {
        matches!(
            self,
            EngineError::NoMatchingEdge { .. }
                | EngineError::StepLimit { .. }
                | EngineError::Rule { .. }
                | EngineError::Template { .. }
                | EngineError::UnknownNode { .. }
                | EngineError::SubflowNotLoaded { .. }
        )
    }
}

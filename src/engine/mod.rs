//! The engine: pure, synchronous flow stepping. Given a compiled flow, a
//! session's snapshot and what the user did, it returns the next snapshot
//! and the events to append. It does no I/O and never touches the store:
//! the caller persists the [`Advance`] atomically.
//!
//! Cost per step depends on the nodes passed in this advance and the size of
//! the context, never on the length of the session's history.

mod error;
pub mod input;
pub use view::render;
pub mod view;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

pub use error::EngineError;
pub use input::FieldError;
pub use view::{ActionView, ClientInfo, ScreenView};

use crate::flow::compile::{CompiledEdge, CompiledFlow, CompiledKind, NodeIdx};
use crate::flow::model::{NodeDef, Outcome};

/// Explicit bounds on one session; each is enforced and has an error code.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Nodes passed in one advance before giving up (loops without a screen).
    pub max_steps_per_advance: u32,
    /// Serialized size of the session context, in bytes.
    pub max_context_bytes: usize,
    /// Screens remembered for `back`; older ones are forgotten.
    pub max_back_stack: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_steps_per_advance: 64,
            max_context_bytes: 256 * 1024,
            max_back_stack: 50,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Active,
    Waiting,
    Completed,
    Failed,
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "ACTIVE",
            Status::Waiting => "WAITING",
            Status::Completed => "COMPLETED",
            Status::Failed => "FAILED",
            Status::Expired => "EXPIRED",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Completed | Status::Failed | Status::Expired)
    }
}

/// A session's current state: the snapshot stored with every event, so a
/// request never replays the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionState {
    /// Id of the node the session rests on (a screen or an end).
    pub node: String,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// The document rules and templates read: user, client, input, steps,
    /// flags, experiments, session.
    pub context: Value,
    /// Screens visited before the current one, oldest first.
    #[serde(default)]
    pub back: Vec<String>,
    /// Field errors of the last rejected submit on the current screen.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// What the user typed in the last rejected submit, shown again with
    /// the errors so nothing typed is lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft: Option<Map<String, Value>>,
}

/// One entry of the session's append-only log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    Started {
        flow_id: String,
        flow_version: i32,
    },
    Submitted {
        screen: String,
        action: String,
        values: Map<String, Value>,
    },
    Rejected {
        screen: String,
        action: String,
        errors: Vec<FieldError>,
    },
    Entered {
        node: String,
        node_kind: String,
    },
    WentBack {
        from: String,
        to: String,
    },
    Ended {
        node: String,
        outcome: Outcome,
    },
}

impl Event {
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Started { .. } => "started",
            Event::Submitted { .. } => "submitted",
            Event::Rejected { .. } => "rejected",
            Event::Entered { .. } => "entered",
            Event::WentBack { .. } => "went_back",
            Event::Ended { .. } => "ended",
        }
    }
}

/// The result of one step: the new snapshot and what to append to the log.
#[derive(Debug, Clone)]
pub struct Advance {
    pub state: SessionState,
    pub events: Vec<Event>,
}

/// What a new session starts from.
#[derive(Debug, Clone)]
pub struct StartInput {
    pub session_id: String,
    pub user_id: String,
    pub user_attributes: Value,
    pub client: ClientInfo,
    pub started_at_ms: i64,
}

/// Builds the initial context and walks from the start node to the first
/// screen (or end).
pub fn start(
    flow: &CompiledFlow,
    input: StartInput,
    limits: &Limits,
) -> Result<Advance, EngineError> {
    start_with_flags(flow, input, Map::new(), limits)
}

/// [`start`] with the flag values the flow reads (`flags.<key>`),
/// evaluated by the caller for this user.
pub fn start_with_flags(
    flow: &CompiledFlow,
    input: StartInput,
    flags: Map<String, Value>,
    limits: &Limits,
) -> Result<Advance, EngineError> {
    let attributes = match input.user_attributes {
        Value::Null => Value::Object(Map::new()),
        other => other,
    };
    let context = json!({
        "user": { "id": input.user_id, "attributes": attributes },
        "client": input.client.to_context(),
        "input": {},
        "steps": {},
        "flags": flags,
        "experiments": {},
        "session": {
            "id": input.session_id,
            "flow_id": flow.id,
            "flow_version": flow.version,
            "started_at": input.started_at_ms,
        },
    });
    check_context_size(&context, limits)?;
    let mut state = SessionState {
        node: String::new(),
        status: Status::Active,
        outcome: None,
        context,
        back: Vec::new(),
        errors: Vec::new(),
        draft: None,
    };
    let mut events = vec![Event::Started {
        flow_id: flow.id.clone(),
        flow_version: flow.version,
    }];
    walk(flow, &mut state, flow.start, &mut events, limits)?;
    Ok(Advance { state, events })
}

/// Applies a screen action. A validation failure is not an error: it
/// returns the same screen with field errors and the user's draft.
pub fn submit(
    flow: &CompiledFlow,
    state: &SessionState,
    screen_id: &str,
    action_id: &str,
    values: &Map<String, Value>,
    limits: &Limits,
) -> Result<Advance, EngineError> {
    ensure_active(state)?;
    if state.node != screen_id {
        return Err(EngineError::StaleScreen {
            submitted: screen_id.to_string(),
            current: state.node.clone(),
        });
    }
    let idx = current_index(flow, state)?;
    let CompiledKind::Screen { actions, .. } = &flow.nodes[idx].kind else {
        return Err(EngineError::StaleScreen {
            submitted: screen_id.to_string(),
            current: state.node.clone(),
        });
    };
    let Some(action) = actions.iter().find(|a| a.id == action_id) else {
        return Err(EngineError::UnknownAction {
            screen: screen_id.to_string(),
            action: action_id.to_string(),
        });
    };
    let NodeDef::Screen(screen) = flow.node_def(idx) else {
        unreachable!("kind checked above")
    };

    let mut next = state.clone();
    next.errors.clear();
    next.draft = None;
    let mut events = Vec::new();

    if action.validate {
        let components = view::effective_components(flow, screen, &state.context);
        match input::validate(flow, components, values, &state.context) {
            Ok(clean) => {
                if let Some(inputs) = next.context.get_mut("input").and_then(Value::as_object_mut) {
                    inputs.insert(screen_id.to_string(), Value::Object(clean.clone()));
                }
                check_context_size(&next.context, limits)?;
                events.push(Event::Submitted {
                    screen: screen_id.to_string(),
                    action: action_id.to_string(),
                    values: clean,
                });
            }
            Err((errors, draft)) => {
                events.push(Event::Rejected {
                    screen: screen_id.to_string(),
                    action: action_id.to_string(),
                    errors: errors.clone(),
                });
                next.errors = errors;
                next.draft = Some(draft);
                return Ok(Advance {
                    state: next,
                    events,
                });
            }
        }
    } else {
        events.push(Event::Submitted {
            screen: screen_id.to_string(),
            action: action_id.to_string(),
            values: Map::new(),
        });
    }

    let to = pick_edge(&action.edges, &next.context, screen_id)?;
    next.back.push(screen_id.to_string());
    if next.back.len() > limits.max_back_stack {
        let excess = next.back.len() - limits.max_back_stack;
        next.back.drain(..excess);
    }
    walk(flow, &mut next, to, &mut events, limits)?;
    Ok(Advance {
        state: next,
        events,
    })
}

/// Returns to the previous screen, with the values entered there before.
pub fn back(flow: &CompiledFlow, state: &SessionState) -> Result<Advance, EngineError> {
    ensure_active(state)?;
    let mut next = state.clone();
    let Some(prev) = next.back.pop() else {
        return Err(EngineError::NoPreviousScreen);
    };
    if flow.node_index(&prev).is_none() {
        return Err(EngineError::UnknownNode {
            node: prev,
            version: flow.version,
        });
    }
    let from = std::mem::replace(&mut next.node, prev.clone());
    next.errors.clear();
    next.draft = None;
    Ok(Advance {
        state: next,
        events: vec![Event::WentBack { from, to: prev }],
    })
}

fn ensure_active(state: &SessionState) -> Result<(), EngineError> {
    if state.status.is_terminal() {
        return Err(EngineError::SessionEnded {
            status: state.status.as_str().to_string(),
        });
    }
    Ok(())
}

fn current_index(flow: &CompiledFlow, state: &SessionState) -> Result<NodeIdx, EngineError> {
    flow.node_index(&state.node)
        .ok_or_else(|| EngineError::UnknownNode {
            node: state.node.clone(),
            version: flow.version,
        })
}

/// Follows nodes from `from` until one that waits for the user (a screen)
/// or ends the session.
fn walk(
    flow: &CompiledFlow,
    state: &mut SessionState,
    from: NodeIdx,
    events: &mut Vec<Event>,
    limits: &Limits,
) -> Result<(), EngineError> {
    let mut cur = from;
    for _ in 0..limits.max_steps_per_advance {
        let node = &flow.nodes[cur];
        let kind = match &node.kind {
            CompiledKind::Screen { .. } => "screen",
            CompiledKind::Decision { .. } => "decision",
            CompiledKind::End { .. } => "end",
        };
        events.push(Event::Entered {
            node: node.id.clone(),
            node_kind: kind.to_string(),
        });
        match &node.kind {
            CompiledKind::Screen { .. } => {
                state.node = node.id.clone();
                state.status = Status::Active;
                return Ok(());
            }
            CompiledKind::Decision { edges } => {
                cur = pick_edge(edges, &state.context, &node.id)?;
            }
            CompiledKind::End { outcome } => {
                state.node = node.id.clone();
                state.status = match outcome {
                    Outcome::Failed => Status::Failed,
                    Outcome::Completed | Outcome::Abandoned => Status::Completed,
                };
                state.outcome = Some(*outcome);
                events.push(Event::Ended {
                    node: node.id.clone(),
                    outcome: *outcome,
                });
                return Ok(());
            }
        }
    }
    Err(EngineError::StepLimit {
        limit: limits.max_steps_per_advance,
        node: flow.nodes[cur].id.clone(),
    })
}

/// First edge whose rule matches; an edge without a rule always matches.
fn pick_edge(edges: &[CompiledEdge], context: &Value, node: &str) -> Result<NodeIdx, EngineError> {
    for edge in edges {
        match &edge.when {
            None => return Ok(edge.to),
            Some(rule) => {
                let hit = rule.matches(context).map_err(|err| EngineError::Rule {
                    node: node.to_string(),
                    message: err.to_string(),
                })?;
                if hit {
                    return Ok(edge.to);
                }
            }
        }
    }
    Err(EngineError::NoMatchingEdge {
        node: node.to_string(),
    })
}

fn check_context_size(context: &Value, limits: &Limits) -> Result<(), EngineError> {
    // Counting through a sink avoids allocating the serialized form.
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, context).expect("a JSON value always serializes");
    if counter.0 > limits.max_context_bytes {
        return Err(EngineError::ContextTooLarge {
            size: counter.0,
            limit: limits.max_context_bytes,
        });
    }
    Ok(())
}

//! The engine: pure, synchronous flow stepping. Given a compiled flow, a
//! session's snapshot and what the user did, it returns the next snapshot
//! and the events to append. It does no I/O and never touches the store:
//! the caller persists the [`Advance`] atomically.
//!
//! Cost per step depends on the nodes passed in this advance and the size of
//! the context, never on the length of the session's history.

pub mod compat;
mod error;
pub mod input;
pub use view::render;
pub mod view;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

pub use error::EngineError;
pub use input::FieldError;
pub use view::{ActionView, ClientInfo, ScreenView};

use crate::flow::compile::{CompiledEdge, CompiledFlow, CompiledKind, Computed, NodeIdx};
use crate::flow::compose::{local_id, scope_of};
use crate::flow::model::{NodeDef, Outcome};
pub use crate::flow::steps::StepKind;

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
    /// The subflows the session is inside, outermost first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frames: Vec<Frame>,
    /// The version of each flow the session ran as a subflow, fixed when
    /// it first entered it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subflows: BTreeMap<String, i32>,
}

/// A parent flow's own context while a subflow of it runs: the child sees
/// fresh `input`, `steps` and `params` and its own Back history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    /// The subflow node, by its id in the session's graph.
    pub node: String,
    pub input: Value,
    pub steps: Value,
    pub params: Value,
    pub back: Vec<String>,
}

/// One entry of the session's append-only log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    Started {
        flow_id: String,
        flow_version: i32,
    },
    /// An action the user took: its `log_id` is the action's analytics id.
    Submitted {
        screen: String,
        action: String,
        values: Map<String, Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        log_id: Option<String>,
    },
    Rejected {
        screen: String,
        action: String,
        errors: Vec<FieldError>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        log_id: Option<String>,
    },
    /// The session reached `node`. For a screen, or an end with a last
    /// screen, this is its impression: the screen's `log_id` and those of
    /// the components the client is shown.
    Entered {
        node: String,
        node_kind: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        log_id: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        components: Vec<String>,
    },
    /// Back to screen `to`: an impression of it, like [`Event::Entered`].
    WentBack {
        from: String,
        to: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        log_id: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        components: Vec<String>,
    },
    Ended {
        node: String,
        outcome: Outcome,
    },
    /// A backend step finished: its outcome and what it stored at
    /// `steps.<node>`.
    StepCompleted {
        node: String,
        outcome: String,
        output: Value,
    },
    /// An operator moved the session on (skip, cancel), with who did it.
    Operated {
        node: String,
        action: String,
        by: String,
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
            Event::StepCompleted { .. } => "step_completed",
            Event::Operated { .. } => "operated",
        }
    }
}

/// The result of one step: the new snapshot, what to append to the log,
/// and the backend work the session now waits for.
#[derive(Debug, Clone)]
pub struct Advance {
    pub state: SessionState,
    pub events: Vec<Event>,
    /// At most one: the step the session parked on.
    pub tasks: Vec<StepTask>,
}

/// Backend work the session waits for, as the engine describes it; the
/// orchestrator makes it a durable task. Times are relative (the engine
/// has no clock) except a rendered `until`.
#[derive(Debug, Clone, PartialEq)]
pub struct StepTask {
    pub node: String,
    pub spec: TaskSpec,
}

/// What a task of each kind needs, rendered from the context when the
/// step was entered.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskSpec {
    /// A step that calls out (`http`, `parallel`, `llm`): the flow says
    /// the rest.
    Call(StepKind),
    Wait {
        /// How long.
        delay: Option<std::time::Duration>,
        /// The rendered `until` (RFC 3339).
        until: Option<String>,
    },
    Approval {
        /// The reviewer queue.
        queue: String,
        /// The rendered task title.
        title: Option<String>,
        /// The outcomes a reviewer may choose.
        outcomes: Vec<String>,
        /// `due`: how long until the timeout edge.
        deadline: Option<std::time::Duration>,
    },
    Event {
        name: String,
        /// The rendered correlation key.
        correlation: String,
        /// `timeout`: how long until the timeout edge.
        deadline: Option<std::time::Duration>,
    },
}

/// When a task falls due, as [`TaskSpec::due_at`] computes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Due {
    At(i64),
    /// Only when someone acts (an approval or event without a deadline).
    Never,
    /// At once: a wait's `until` that is not a time, with why.
    NowBecause(String),
}

impl TaskSpec {
    /// When the task of a live session, created at `now` (ms since the
    /// epoch), falls due: a wait when its timer ends, an approval or event
    /// at its deadline, anything else at once. (A mock session's tasks
    /// are due at once: their latency is simulated when they run.)
    pub fn due_at(&self, now: i64) -> Due {
        let after = |d: &std::time::Duration| {
            now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        };
        match self {
            TaskSpec::Call(_) => Due::At(now),
            TaskSpec::Wait { delay: Some(d), .. } => Due::At(after(d)),
            TaskSpec::Wait {
                delay: None,
                until: Some(until),
            } => match parse_rfc3339(until.trim()) {
                Ok(at) => Due::At(at),
                Err(e) => {
                    Due::NowBecause(format!("`until` {until:?} is not an RFC 3339 time: {e}"))
                }
            },
            TaskSpec::Wait {
                delay: None,
                until: None,
            } => Due::At(now),
            TaskSpec::Approval { deadline, .. } | TaskSpec::Event { deadline, .. } => {
                deadline.as_ref().map_or(Due::Never, |d| Due::At(after(d)))
            }
        }
    }

    pub fn kind(&self) -> StepKind {
        match self {
            TaskSpec::Call(kind) => *kind,
            TaskSpec::Wait { .. } => StepKind::Wait,
            TaskSpec::Approval { .. } => StepKind::Approval,
            TaskSpec::Event { .. } => StepKind::Event,
        }
    }
}

/// How a backend step ended, as the orchestrator reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepResult {
    /// `ok`, `error`, `timeout`, or an approval's outcome name.
    pub outcome: String,
    /// Stored at `steps.<node>`.
    pub output: Value,
}

/// What a new session starts from.
#[derive(Debug, Clone)]
pub struct StartInput {
    /// Mock scenario (`session.mock`): backend steps answer from their
    /// mocks and never reach a real upstream.
    pub mock: Option<String>,
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
    start_from(flow, input, flags, flow.start, None, limits)
}

/// A preview: [`start_with_flags`] from `node` (the flow's start when
/// `None`), with `preview` (what the preview overrides) kept in the
/// context as `session.preview`.
pub fn start_preview(
    flow: &CompiledFlow,
    input: StartInput,
    flags: Map<String, Value>,
    node: Option<&str>,
    preview: Value,
    limits: &Limits,
) -> Result<Advance, EngineError> {
    let from = match node {
        Some(id) => flow
            .node_index(id)
            .ok_or_else(|| EngineError::UnknownNode {
                node: id.to_string(),
                version: flow.version,
            })?,
        None => flow.start,
    };
    start_from(flow, input, flags, from, Some(preview), limits)
}

fn start_from(
    flow: &CompiledFlow,
    input: StartInput,
    flags: Map<String, Value>,
    from: NodeIdx,
    preview: Option<Value>,
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
        "params": {},
        "flags": flags,
        "experiments": {},
        "session": {
            "id": input.session_id,
            "flow_id": flow.id,
            "flow_version": flow.version,
            "started_at": rfc3339(input.started_at_ms),
            "mock": input.mock,
        },
    });
    let mut context = context;
    if let Some(preview) = preview {
        context["session"]["preview"] = preview;
    }
    check_context_size(&context, limits)?;
    let mut state = SessionState {
        node: String::new(),
        status: Status::Active,
        outcome: None,
        context,
        back: Vec::new(),
        errors: Vec::new(),
        draft: None,
        frames: Vec::new(),
        subflows: BTreeMap::new(),
    };
    let mut events = vec![Event::Started {
        flow_id: flow.id.clone(),
        flow_version: flow.version,
    }];
    let mut tasks = Vec::new();
    walk(flow, &mut state, from, &mut events, &mut tasks, limits)?;
    Ok(Advance {
        state,
        events,
        tasks,
    })
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
    let log_id = screen
        .actions
        .iter()
        .find(|a| a.id == action_id)
        .map(|a| a.log_id_in(&flow.id, screen_id));

    if action.validate {
        let (components, inherited) = view::effective_components(flow, screen, &state.context)?;
        match input::validate(flow, components, inherited, values, &state.context) {
            Ok(clean) => {
                if let Some(inputs) = next.context.get_mut("input").and_then(Value::as_object_mut) {
                    inputs.insert(
                        local_id(screen_id).to_string(),
                        Value::Object(clean.clone()),
                    );
                }
                check_context_size(&next.context, limits)?;
                events.push(Event::Submitted {
                    screen: screen_id.to_string(),
                    action: action_id.to_string(),
                    values: clean,
                    log_id,
                });
            }
            Err((errors, draft)) => {
                events.push(Event::Rejected {
                    screen: screen_id.to_string(),
                    action: action_id.to_string(),
                    errors: errors.clone(),
                    log_id,
                });
                next.errors = errors;
                next.draft = Some(draft);
                return Ok(Advance {
                    state: next,
                    events,
                    tasks: Vec::new(),
                });
            }
        }
    } else {
        events.push(Event::Submitted {
            screen: screen_id.to_string(),
            action: action_id.to_string(),
            values: Map::new(),
            log_id,
        });
    }

    let to = pick_edge(&action.edges, &next.context, screen_id)?;
    next.back.push(screen_id.to_string());
    if next.back.len() > limits.max_back_stack {
        let excess = next.back.len() - limits.max_back_stack;
        next.back.drain(..excess);
    }
    let mut tasks = Vec::new();
    walk(flow, &mut next, to, &mut events, &mut tasks, limits)?;
    Ok(Advance {
        state: next,
        events,
        tasks,
    })
}

/// Returns to the previous screen, with the values entered there before.
pub fn back(flow: &CompiledFlow, state: &SessionState) -> Result<Advance, EngineError> {
    ensure_active(state)?;
    if state.status == Status::Waiting {
        return Err(EngineError::SessionWaiting {
            node: state.node.clone(),
        });
    }
    let mut next = state.clone();
    // Back from a subflow's first screen leaves the subflow: the parent's
    // context comes back as it was before the subflow was entered.
    while next.back.is_empty() {
        let Some(frame) = next.frames.pop() else {
            return Err(EngineError::NoPreviousScreen);
        };
        restore(&mut next, frame);
    }
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
    let (log_id, components) = flow
        .node_index(&prev)
        .and_then(|idx| view::impression(flow, idx, &next.context))
        .unzip();
    Ok(Advance {
        state: next,
        events: vec![Event::WentBack {
            from,
            to: prev,
            log_id,
            components: components.unwrap_or_default(),
        }],
        tasks: Vec::new(),
    })
}

/// Continues a session parked on backend step `node` with the step's
/// result: stores the output at `steps.<node>`, follows the edge the
/// outcome selects and walks on to the next screen, step or end.
pub fn resume(
    flow: &CompiledFlow,
    state: &SessionState,
    node: &str,
    result: StepResult,
    limits: &Limits,
) -> Result<Advance, EngineError> {
    if state.status != Status::Waiting || state.node != node {
        return Err(EngineError::StepNotCurrent {
            node: node.to_string(),
            current: state.node.clone(),
        });
    }
    let idx = current_index(flow, state)?;
    let mut next = state.clone();
    set_step(&mut next.context, node, result.output.clone());
    check_context_size(&next.context, limits)?;
    let mut events = vec![Event::StepCompleted {
        node: node.to_string(),
        outcome: result.outcome.clone(),
        output: result.output,
    }];
    let outcome = result.outcome.as_str();
    let target = match &flow.nodes[idx].kind {
        CompiledKind::Call {
            next: edges,
            on_error,
            on_timeout,
            on_review,
            ..
        } => match outcome {
            "ok" => Some(pick_edge(edges, &next.context, node)?),
            "timeout" => on_timeout.or(*on_error).or(flow.on_error_at(idx)),
            "review" => on_review.or(*on_error).or(flow.on_error_at(idx)),
            _ => on_error.or(flow.on_error_at(idx)),
        },
        CompiledKind::Wait { next: edges, .. } => Some(pick_edge(edges, &next.context, node)?),
        CompiledKind::Event {
            next: edges,
            on_timeout,
            ..
        } => match outcome {
            "timeout" => on_timeout.or(flow.on_error_at(idx)),
            _ => Some(pick_edge(edges, &next.context, node)?),
        },
        CompiledKind::Approval {
            outcomes,
            on_timeout,
            ..
        } => match outcomes.iter().find(|(name, _)| name == outcome) {
            Some((_, to)) => Some(*to),
            None if outcome == "timeout" => on_timeout.or(flow.on_error_at(idx)),
            None => {
                return Err(EngineError::UnknownOutcome {
                    node: node.to_string(),
                    outcome: outcome.to_string(),
                });
            }
        },
        CompiledKind::Screen { .. }
        | CompiledKind::Decision { .. }
        | CompiledKind::End { .. }
        | CompiledKind::Transform { .. }
        | CompiledKind::Subflow { .. }
        | CompiledKind::Return { .. } => {
            return Err(EngineError::StepNotCurrent {
                node: node.to_string(),
                current: state.node.clone(),
            });
        }
    };
    let mut tasks = Vec::new();
    match target {
        Some(to) => walk(flow, &mut next, to, &mut events, &mut tasks, limits)?,
        // No edge for a failure: the session fails where it stands, and the
        // client gets the generic error screen.
        None => fail_here(&mut next, &mut events),
    }
    Ok(Advance {
        state: next,
        events,
        tasks,
    })
}

/// Moves a session parked on a step along the edge an operator chose
/// (skip), as if the step had finished with `outcome`.
pub fn skip(
    flow: &CompiledFlow,
    state: &SessionState,
    to: &str,
    by: &str,
    limits: &Limits,
) -> Result<Advance, EngineError> {
    ensure_active(state)?;
    let Some(target) = flow.node_index(to) else {
        return Err(EngineError::UnknownNode {
            node: to.to_string(),
            version: flow.version,
        });
    };
    // The session's context is the current subflow's: a node of another
    // flow of the graph would run on the wrong `input` and `steps`.
    if scope_of(to) != scope_of(&state.node) {
        return Err(EngineError::SkipAcrossSubflow {
            node: state.node.clone(),
            to: to.to_string(),
        });
    }
    let mut next = state.clone();
    next.errors.clear();
    next.draft = None;
    let mut events = vec![Event::Operated {
        node: state.node.clone(),
        action: format!("skip to {to}"),
        by: by.to_string(),
    }];
    let mut tasks = Vec::new();
    walk(flow, &mut next, target, &mut events, &mut tasks, limits)?;
    Ok(Advance {
        state: next,
        events,
        tasks,
    })
}

/// Ends a session on an operator's request.
pub fn cancel(state: &SessionState, by: &str) -> Result<Advance, EngineError> {
    ensure_active(state)?;
    let mut next = state.clone();
    let mut events = vec![Event::Operated {
        node: state.node.clone(),
        action: "cancel".into(),
        by: by.to_string(),
    }];
    next.status = Status::Completed;
    next.outcome = Some(Outcome::Abandoned);
    events.push(Event::Ended {
        node: state.node.clone(),
        outcome: Outcome::Abandoned,
    });
    Ok(Advance {
        state: next,
        events,
        tasks: Vec::new(),
    })
}

/// Parks a session that failed on a backend step on that step again, so
/// an operator's retry runs it anew.
pub fn reopen(flow: &CompiledFlow, state: &SessionState, by: &str) -> Result<Advance, EngineError> {
    let idx = current_index(flow, state)?;
    if state.status != Status::Failed || !flow.node_def(idx).is_async_step() {
        return Err(EngineError::StepNotCurrent {
            node: state.node.clone(),
            current: format!("{} ({})", state.node, state.status.as_str()),
        });
    }
    let mut next = state.clone();
    next.status = Status::Waiting;
    next.outcome = None;
    let events = vec![Event::Operated {
        node: state.node.clone(),
        action: "retry".into(),
        by: by.to_string(),
    }];
    let tasks = vec![step_task(flow, idx, &next.context)?];
    Ok(Advance {
        state: next,
        events,
        tasks,
    })
}

/// Fails a session parked on a step whose result the flow cannot handle
/// (a flow defect such as no matching edge), recording why.
pub fn fail_step(state: &SessionState, node: &str, reason: &str) -> Advance {
    let mut next = state.clone();
    let mut events = vec![Event::StepCompleted {
        node: node.to_string(),
        outcome: "error".into(),
        output: json!({ "error": reason }),
    }];
    fail_here(&mut next, &mut events);
    Advance {
        state: next,
        events,
        tasks: Vec::new(),
    }
}

fn fail_here(state: &mut SessionState, events: &mut Vec<Event>) {
    let node = state.node.clone();
    end_at(state, events, node, Outcome::Failed);
}

/// Ends the session on `node` with `outcome`.
fn end_at(state: &mut SessionState, events: &mut Vec<Event>, node: String, outcome: Outcome) {
    state.status = match outcome {
        Outcome::Failed => Status::Failed,
        Outcome::Completed | Outcome::Abandoned => Status::Completed,
    };
    state.outcome = Some(outcome);
    state.node = node.clone();
    events.push(Event::Ended { node, outcome });
}

/// Stores a step's output at `steps.<id>`, under the id it has in its own
/// flow.
fn set_step(context: &mut Value, node: &str, output: Value) {
    if let Some(steps) = context.get_mut("steps").and_then(Value::as_object_mut) {
        steps.insert(local_id(node).to_string(), output);
    }
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
    tasks: &mut Vec<StepTask>,
    limits: &Limits,
) -> Result<(), EngineError> {
    let mut cur = from;
    for _ in 0..limits.max_steps_per_advance {
        let node = &flow.nodes[cur];
        // A child's end is not the session's, and nobody sees its last
        // screen: analytics must count neither.
        let (node_kind, (log_id, components)) = match node.kind {
            CompiledKind::Return { .. } => ("return", (None, None)),
            _ => (
                flow.node_def(cur).kind(),
                view::impression(flow, cur, &state.context).unzip(),
            ),
        };
        events.push(Event::Entered {
            node: node.id.clone(),
            node_kind: node_kind.to_string(),
            log_id,
            components: components.unwrap_or_default(),
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
            CompiledKind::Transform { set, next } => {
                let out = compute(flow, &node.id, set, &state.context)?;
                set_step(&mut state.context, &node.id, Value::Object(out));
                check_context_size(&state.context, limits)?;
                cur = pick_edge(next, &state.context, &node.id)?;
            }
            CompiledKind::Subflow { params, enter, .. } => {
                let (Some(enter), Some(scope)) = (enter, flow.scopes.get(&node.id)) else {
                    return Err(EngineError::SubflowNotLoaded {
                        node: node.id.clone(),
                    });
                };
                let params = compute(flow, &node.id, params, &state.context)?;
                state.subflows.insert(scope.flow_id.clone(), scope.version);
                let ctx = &mut state.context;
                let frame = Frame {
                    node: node.id.clone(),
                    input: std::mem::replace(&mut ctx["input"], json!({})),
                    steps: std::mem::replace(&mut ctx["steps"], json!({})),
                    params: std::mem::replace(&mut ctx["params"], Value::Object(params)),
                    back: std::mem::take(&mut state.back),
                };
                state.frames.push(frame);
                check_context_size(&state.context, limits)?;
                cur = *enter;
            }
            CompiledKind::Return { outcome, subflow } => {
                let parent = &flow.nodes[*subflow];
                let CompiledKind::Subflow {
                    next,
                    on_abandoned,
                    on_error,
                    ..
                } = &parent.kind
                else {
                    return Err(EngineError::SubflowNotLoaded {
                        node: parent.id.clone(),
                    });
                };
                let Some(frame) = state.frames.pop().filter(|f| f.node == parent.id) else {
                    return Err(EngineError::SubflowNotLoaded {
                        node: parent.id.clone(),
                    });
                };
                let ctx = &mut state.context;
                let output = json!({
                    "outcome": outcome,
                    "input": std::mem::take(&mut ctx["input"]),
                    "steps": std::mem::take(&mut ctx["steps"]),
                });
                restore(state, frame);
                set_step(&mut state.context, &parent.id, output.clone());
                check_context_size(&state.context, limits)?;
                events.push(Event::StepCompleted {
                    node: parent.id.clone(),
                    outcome: outcome.as_str().to_string(),
                    output,
                });
                let target = match outcome {
                    Outcome::Completed => Some(pick_edge(next, &state.context, &parent.id)?),
                    Outcome::Abandoned => *on_abandoned,
                    Outcome::Failed => on_error.or(flow.on_error_at(*subflow)),
                };
                match target {
                    Some(to) => cur = to,
                    None => {
                        // No edge for how the child ended: the session ends
                        // the same way, on the child's end node.
                        end_at(state, events, node.id.clone(), *outcome);
                        return Ok(());
                    }
                }
            }
            CompiledKind::Call { .. }
            | CompiledKind::Wait { .. }
            | CompiledKind::Approval { .. }
            | CompiledKind::Event { .. } => {
                state.node = node.id.clone();
                state.status = Status::Waiting;
                state.errors.clear();
                state.draft = None;
                tasks.push(step_task(flow, cur, &state.context)?);
                return Ok(());
            }
            CompiledKind::End { outcome } => {
                end_at(state, events, node.id.clone(), *outcome);
                return Ok(());
            }
        }
    }
    Err(EngineError::StepLimit {
        limit: limits.max_steps_per_advance,
        node: flow.nodes[cur].id.clone(),
    })
}

/// Puts back the parent's context a subflow's frame kept.
fn restore(state: &mut SessionState, frame: Frame) {
    let ctx = &mut state.context;
    ctx["input"] = frame.input;
    ctx["steps"] = frame.steps;
    ctx["params"] = frame.params;
    state.back = frame.back;
}

/// The values of a transform's `set` or a subflow's `params`.
fn compute(
    flow: &CompiledFlow,
    node: &str,
    set: &[(String, Computed)],
    context: &Value,
) -> Result<Map<String, Value>, EngineError> {
    let mut out = Map::new();
    for (key, computed) in set {
        let value = match computed {
            Computed::Rule(rule) => rule.evaluate(context).map_err(|err| EngineError::Rule {
                node: node.to_string(),
                message: err.to_string(),
            })?,
            Computed::Template(src) => Value::String(view::render_source(flow, src, context)?),
            Computed::Literal(v) => v.clone(),
        };
        out.insert(key.clone(), value);
    }
    Ok(out)
}

/// Describes the durable task for the step at `idx`, rendering what
/// depends on the context now (a wait's `until`, an event's correlation
/// key, an approval's title).
fn step_task(flow: &CompiledFlow, idx: NodeIdx, context: &Value) -> Result<StepTask, EngineError> {
    let node = flow.node_def(idx);
    let id = node.id().to_string();
    // Durations were parsed when the flow compiled.
    let stale = || EngineError::UnknownNode {
        node: id.clone(),
        version: flow.version,
    };
    let spec = match &flow.nodes[idx].kind {
        CompiledKind::Call { step, .. } => TaskSpec::Call(*step),
        CompiledKind::Wait { delay, .. } => {
            let NodeDef::Wait(w) = node else {
                return Err(stale());
            };
            TaskSpec::Wait {
                delay: *delay,
                until: w
                    .until
                    .as_deref()
                    .map(|src| view::render_source(flow, src, context))
                    .transpose()?,
            }
        }
        CompiledKind::Approval { deadline, .. } => {
            let NodeDef::Approval(a) = node else {
                return Err(stale());
            };
            TaskSpec::Approval {
                queue: a.role.clone(),
                title: a
                    .title
                    .as_ref()
                    .map(|t| view::render_text(flow, t, context))
                    .transpose()?,
                outcomes: a.outcomes.keys().cloned().collect(),
                deadline: *deadline,
            }
        }
        CompiledKind::Event { deadline, .. } => {
            let NodeDef::Event(e) = node else {
                return Err(stale());
            };
            TaskSpec::Event {
                name: e.event.clone(),
                correlation: view::render_source(flow, &e.correlation, context)?,
                deadline: *deadline,
            }
        }
        // Nodes that run inline have no task.
        CompiledKind::Screen { .. }
        | CompiledKind::Decision { .. }
        | CompiledKind::End { .. }
        | CompiledKind::Transform { .. }
        | CompiledKind::Subflow { .. }
        | CompiledKind::Return { .. } => return Err(stale()),
    };
    Ok(StepTask { node: id, spec })
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

/// A time in the context, as templates and rules read it: RFC 3339 in UTC
/// with milliseconds (`2026-12-05T09:30:00.000Z`), which sorts as text and
/// is what `wait.until` takes back.
/// Epoch milliseconds of an RFC 3339 time (the inverse of [`rfc3339`]).
pub fn parse_rfc3339(text: &str) -> Result<i64, humantime::TimestampError> {
    let t = humantime::parse_rfc3339_weak(text)?;
    Ok(t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0))
}

pub fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

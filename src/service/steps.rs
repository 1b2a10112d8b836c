//! Backend steps as the service sees them: turning what the engine asks
//! for into durable tasks committed with the session, handing them to
//! this process's orchestrator, finishing them (from a worker, a reviewer,
//! an event or an operator) exactly once, and letting `submit` wait a
//! bounded time for the steps it started.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::snapshots::Snapshot;
use super::{Baton, Read, ServiceError, SessionView, now_ms, to_new_events, view_of};
use crate::engine::{self, Advance, Due, EngineError, Status, StepKind, StepResult, TaskSpec};
use crate::flow::model::NodeDef;
use crate::store::tasks::{AttemptRecord, NewTask, StepCommit, TaskRecord, TaskState};
use crate::store::{NewIdempotency, StoreError};

/// How this process runs backend steps.
#[derive(Debug, Clone)]
pub struct StepSettings {
    /// How long `startFlow` / `submit` wait for the steps they started
    /// before answering `WAITING` with the pending screen.
    pub budget: Duration,
    /// Every session runs in mock mode (`--mock`).
    pub mock_all: bool,
    /// How long a worker holds a task before another may take it over.
    pub lease: Duration,
}

impl Default for StepSettings {
    fn default() -> Self {
        StepSettings {
            budget: Duration::from_secs(2),
            mock_all: false,
            lease: Duration::from_secs(30),
        }
    }
}

/// What the service hands its orchestrator.
#[derive(Debug)]
pub enum Dispatch {
    /// A task this process created already leased to itself: run it now,
    /// as part of the span (the request) that created it.
    Run(Box<TaskRecord>, tracing::Span),
    /// New work may be due: look again.
    Wake,
}

/// What became of a received event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// It advanced this many sessions.
    Delivered(usize),
    /// No step waits for it yet: it stays in the inbox for one entered later.
    Kept,
    /// An event with its id was received and delivered before.
    Duplicate,
}

/// How finishing a step went.
#[derive(Debug)]
pub enum StepDone {
    /// The session moved on; this is what it shows now.
    Advanced(Box<SessionView>),
    /// Someone finished the step first, or the session is elsewhere:
    /// nothing was changed.
    AlreadyDone,
}

/// A session's step history: tasks and every attempt.
#[derive(Debug, Clone)]
pub struct StepHistory {
    pub tasks: Vec<TaskRecord>,
    pub attempts: Vec<AttemptRecord>,
}

/// An approval as a reviewer sees it.
#[derive(Debug, Clone)]
pub struct ApprovalView {
    pub task: TaskRecord,
    pub outcomes: Vec<String>,
}

impl Baton {
    /// Connects this service to its orchestrator; tasks created before are
    /// picked up when their lease or start time comes.
    pub fn attach_dispatcher(&self, tx: tokio::sync::mpsc::UnboundedSender<Dispatch>) {
        let _ = self.inner.dispatch.set(tx);
    }

    /// The durable tasks for the step an advance parked on.
    ///
    /// A task's id is derived from where the session stood (`from_seq`) and
    /// the step, not drawn at random: it is the step's `Idempotency-Key`,
    /// and a step re-entered from the same point — after a database crash
    /// lost a commit that was not yet durable — must present the same key
    /// upstream.
    pub(super) fn new_tasks(
        &self,
        session_id: &str,
        from_seq: i64,
        advance: &Advance,
    ) -> Vec<NewTask> {
        if advance.tasks.is_empty() {
            return Vec::new();
        }
        let now = now_ms();
        let mock = advance.state.context["session"]["mock"]
            .as_str()
            .map(str::to_string);
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        advance
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut task = NewTask {
                    id: task_id(session_id, from_seq, i, &t.node),
                    node: t.node.clone(),
                    kind: t.spec.kind().as_str().to_string(),
                    state: TaskState::Ready,
                    due_at: Some(now),
                    lease_owner: None,
                    attempts: 0,
                    queue: None,
                    event_name: None,
                    correlation: None,
                    mock: mock.clone(),
                    input: Value::Object(Map::new()),
                };
                // Mock waits, approvals and events resolve after their
                // simulated latency; the orchestrator reads it from the
                // flow when it runs the task, so it is due now.
                let mocked = json!({ "title": Value::Null, "outcomes": [] });
                let due = match t.spec.due_at(now) {
                    Due::At(at) => Some(at),
                    Due::Never => None,
                    Due::NowBecause(why) => {
                        tracing::warn!(node = %t.node, why, "wait not waiting");
                        Some(now)
                    }
                };
                match &t.spec {
                    // Run at once by this process: created leased to it.
                    TaskSpec::Call(_) => {
                        task.state = TaskState::Running;
                        task.lease_owner = Some(self.inner.worker_id.clone());
                        task.attempts = 1;
                        task.due_at = Some(now.saturating_add(ms(self.inner.steps.lease)));
                    }
                    TaskSpec::Wait { .. } if mock.is_some() => task.input = mocked,
                    TaskSpec::Wait { .. } => task.due_at = due,
                    TaskSpec::Approval {
                        queue,
                        title,
                        outcomes,
                        ..
                    } => {
                        task.queue = Some(queue.clone());
                        task.input = json!({ "title": title, "outcomes": outcomes });
                        if mock.is_none() {
                            task.state = TaskState::Open;
                            task.due_at = due;
                        }
                    }
                    TaskSpec::Event {
                        name, correlation, ..
                    } => {
                        task.event_name = Some(name.clone());
                        task.correlation = Some(correlation.clone());
                        task.input = mocked;
                        if mock.is_none() {
                            task.state = TaskState::Open;
                            task.due_at = due;
                        }
                    }
                }
                task
            })
            .collect()
    }

    /// Whether the orchestrator of this process runs one of `tasks` at once
    /// (an `http` or `parallel` step, created leased to it). A commit that
    /// creates such a task is an intermediate point of a chain and need not
    /// be durable on its own: the chain ends in a durable commit, or the
    /// caller flushes before anyone acts on it (see `StepCommit::durable`).
    pub(super) fn runs_here(&self, tasks: &[NewTask]) -> bool {
        self.inner.dispatch.get().is_some()
            && tasks.iter().any(|t| {
                t.state == TaskState::Running
                    && t.lease_owner.as_deref() == Some(&*self.inner.worker_id)
            })
    }

    /// Hands freshly committed tasks to the orchestrator.
    pub(super) fn dispatch(&self, session_id: &str, tasks: Vec<NewTask>) {
        if tasks.is_empty() {
            return;
        }
        let Some(tx) = self.inner.dispatch.get() else {
            return;
        };
        let now = now_ms();
        for t in tasks {
            if t.kind == StepKind::Event.as_str() && t.state == TaskState::Open {
                // An event may have arrived before the step was entered.
                let baton = self.clone();
                let task = record_of(session_id, &t, now);
                tokio::spawn(async move {
                    if let Err(e) = baton.match_inbox(&task).await {
                        tracing::warn!(task = %task.id, error = %e, "matching the event inbox failed");
                    }
                });
                continue;
            }
            let msg = if t.state == TaskState::Running {
                Dispatch::Run(
                    Box::new(record_of(session_id, &t, now)),
                    tracing::Span::current(),
                )
            } else {
                Dispatch::Wake
            };
            let _ = tx.send(msg);
        }
    }

    /// Waits up to the step budget for the session to stop waiting on
    /// backend steps; returns the newest view either way (a pending screen
    /// when the budget ran out).
    pub(super) async fn wait_for_steps(
        &self,
        view: SessionView,
        rx: broadcast::Receiver<SessionView>,
    ) -> SessionView {
        let latest = self.wait_within_budget(view, rx).await;
        if latest.status == Status::Waiting {
            // What the caller is about to hand out may come from a commit
            // that is not durable yet (a chain still running).
            if let Err(e) = self.inner.store.flush().await {
                tracing::warn!(session = %latest.id, error = %e, "flushing the step commits failed");
            }
        }
        latest
    }

    async fn wait_within_budget(
        &self,
        view: SessionView,
        mut rx: broadcast::Receiver<SessionView>,
    ) -> SessionView {
        let budget = self.inner.steps.budget;
        if budget.is_zero() || view.parked.is_some_and(|p| p.outlasts(budget)) {
            return view;
        }
        let mut latest = view;
        let deadline = tokio::time::Instant::now() + budget;
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Ok(v)) => {
                    // Parked on a person, an event or a timer past the budget:
                    // nothing comes within it.
                    let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                    let done = v.status != Status::Waiting
                        || v.parked.is_some_and(|p| p.outlasts(remaining));
                    latest = v;
                    if done {
                        return latest;
                    }
                }
                // Missed updates: read what the store says now.
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                    if let Ok((snap, flow)) = self.load_trusted(&latest.id).await
                        && let Ok(v) = view_of(&flow, &snap.id, &snap.state)
                    {
                        if v.status != Status::Waiting || v.parked.is_some() {
                            return v;
                        }
                        latest = v;
                    }
                }
                Ok(Err(broadcast::error::RecvError::Closed)) | Err(_) => return latest,
            }
        }
    }

    /// Commits an advance that creates or finishes tasks, in one
    /// transaction, then dispatches the new tasks. `in_chain`: see below.
    #[allow(clippy::too_many_arguments)] // one internal call shape, five callers
    pub(super) async fn commit_with_tasks(
        &self,
        snap: &Snapshot,
        advance: Advance,
        idem: Option<&NewIdempotency>,
        finish: Option<(&str, &str)>,
        attempts: &[AttemptRecord],
        extra_events: Vec<crate::store::NewEvent>,
        in_chain: bool,
    ) -> Result<(), ServiceError> {
        let tasks = self.new_tasks(&snap.id, snap.seq, &advance);
        // Only a point in the middle of an http chain may skip the flush,
        // and only when its caller is the chain (the orchestrator) or
        // flushes before answering (`wait_for_steps`): a reviewer's
        // decision, an event or an operator's retry is durable when
        // acknowledged.
        let durable = !(in_chain && self.runs_here(&tasks));
        let state = serde_json::to_string(&advance.state).map_err(ServiceError::internal)?;
        let mut events = to_new_events(&advance)?;
        events.extend(extra_events);
        let notify = format!("{}|{}", self.inner.worker_id, snap.id);
        let result = self
            .inner
            .store
            .commit_step(StepCommit {
                session_id: &snap.id,
                expected_seq: snap.seq,
                status: advance.state.status.as_str(),
                state: &state,
                events: &events,
                idempotency: idem,
                finish,
                new_tasks: &tasks,
                attempts,
                notify: Some(&notify),
                durable,
            })
            .await;
        match result {
            Ok(seq) => {
                self.inner.snapshots.put(Arc::new(Snapshot {
                    id: snap.id.clone(),
                    seq,
                    token_hash: snap.token_hash.clone(),
                    flow_id: snap.flow_id.clone(),
                    flow_version: snap.flow_version,
                    state: advance.state,
                    answered: snap.answered.clone(),
                    applied_keys: snap.applied_keys.and(idem.map(|i| i.key.as_str())),
                }));
                self.dispatch(&snap.id, tasks);
                Ok(())
            }
            Err(e) => {
                self.inner.snapshots.forget(&snap.id);
                Err(e.into())
            }
        }
    }

    /// The session a task belongs to and its flow version: the snapshot
    /// this process last wrote when it has one (a task it created a moment
    /// ago), else read fresh. Only for deciding what to run: finishing the
    /// task is guarded by the session's `seq`, and a session that seems to
    /// be elsewhere is re-read before the task is dropped.
    pub async fn step_session(
        &self,
        session_id: &str,
        node: &str,
    ) -> Result<(Arc<Snapshot>, Arc<crate::flow::compile::CompiledFlow>), ServiceError> {
        let (snap, flow) = self.load_trusted_as(session_id, Read::Cached).await?;
        if snap.state.status == Status::Waiting && snap.state.node == node {
            return Ok((snap, flow));
        }
        self.load_trusted(session_id).await
    }

    /// Finishes `task` with `result` and advances its session, exactly
    /// once however many callers race to finish the same task.
    pub async fn complete_step(
        &self,
        task: &TaskRecord,
        result: StepResult,
        attempts: &[AttemptRecord],
    ) -> Result<StepDone, ServiceError> {
        self.finish_step(task, result, attempts, true).await
    }

    /// [`Baton::complete_step`] for the orchestrator: the new screen is
    /// rendered only when someone here watches the session (a waiting
    /// `submit` or a `sessionUpdated` subscriber), else `Advanced` carries
    /// the status only.
    pub async fn finish_step(
        &self,
        task: &TaskRecord,
        result: StepResult,
        attempts: &[AttemptRecord],
        always_render: bool,
    ) -> Result<StepDone, ServiceError> {
        // The snapshot this process wrote last is the expected state of an
        // optimistic commit (guarded by `seq`); anything else is decided on
        // a fresh read.
        let mut read = Read::Cached;
        for _ in 0..super::MAX_CONFLICT_RETRIES {
            let (snap, flow) = self.load_trusted_as(&task.session_id, read).await?;
            let cached = read == Read::Cached;
            read = Read::Fresh;
            // As in `submit`: flags are evaluated for the user as the
            // advance begins, and experiments record what it exposed and
            // converted (a goal is often reached after a backend step).
            let (state, experiments) = self.advance_state(&flow, &snap.state).await?;
            let mut advance = match engine::resume(
                &flow,
                &state,
                &task.node,
                result.clone(),
                &self.inner.limits,
            ) {
                Ok(a) => a,
                Err(_) if cached => continue,
                Err(EngineError::StepNotCurrent { .. }) => {
                    self.inner.store.abandon_task(&task.id, "stale").await?;
                    return Ok(StepDone::AlreadyDone);
                }
                Err(e @ EngineError::UnknownOutcome { .. }) => return Err(e.into()),
                // The flow cannot handle this result (no matching edge, a
                // rule error, the context grew too large): fail the
                // session visibly rather than leave it parked forever.
                Err(e) => {
                    tracing::error!(session = %task.session_id, node = %task.node, code = %e.code(), error = %e, "a step result could not be applied; the session fails");
                    engine::fail_step(&snap.state, &task.node, e.code().as_str())
                }
            };
            let extra = match &experiments {
                Some(prepared) => self.inner.experiments.record(&flow, prepared, &mut advance),
                None => Vec::new(),
            };
            let rendered = always_render || self.inner.hub.is_watched(&snap.id);
            let view = if rendered {
                view_of(&flow, &snap.id, &advance.state)?
            } else {
                SessionView {
                    id: snap.id.clone(),
                    flow_id: flow.id.clone(),
                    flow_version: flow.version,
                    status: advance.state.status,
                    outcome: advance.state.outcome,
                    screen: None,
                    parked: None,
                }
            };
            let outcome = result.outcome.clone();
            match self
                .commit_with_tasks(
                    &snap,
                    advance,
                    None,
                    Some((&task.id, &outcome)),
                    attempts,
                    extra,
                    // The orchestrator goes on with the chain; anyone else
                    // (a reviewer, an event) is answered once it is durable.
                    !always_render,
                )
                .await
            {
                Ok(()) => {
                    if rendered {
                        self.inner.hub.publish(&view);
                    } else if self.inner.hub.is_watched(&snap.id)
                        && let Ok((snap, flow)) = self.load_trusted(&snap.id).await
                        && let Ok(fresh) = view_of(&flow, &snap.id, &snap.state)
                    {
                        // Someone subscribed while this step committed.
                        self.inner.hub.publish(&fresh);
                    }
                    return Ok(StepDone::Advanced(Box::new(view)));
                }
                Err(ServiceError::Store(StoreError::Conflict { .. })) => continue,
                Err(ServiceError::Store(StoreError::TaskFinished { .. })) => {
                    return Ok(StepDone::AlreadyDone);
                }
                Err(e) => return Err(e),
            }
        }
        Err(ServiceError::Busy)
    }

    /// Delivers an external event to every event step waiting for it, or
    /// keeps it in the inbox for a step entered later. Returns how many
    /// sessions it advanced.
    pub async fn send_event(
        &self,
        name: &str,
        correlation: &str,
        payload: Value,
    ) -> Result<usize, ServiceError> {
        let id = uuid::Uuid::now_v7().to_string();
        match self.receive_event(&id, name, correlation, payload).await? {
            Received::Delivered(n) => Ok(n),
            Received::Kept | Received::Duplicate => Ok(0),
        }
    }

    /// [`Baton::send_event`] for an event with its sender's id (a NATS
    /// message's): an id received before is not delivered again, and one
    /// whose delivery was cut short (a crash between storing and
    /// delivering) is delivered now, so a redelivered message completes
    /// what the first began.
    pub async fn receive_event(
        &self,
        id: &str,
        name: &str,
        correlation: &str,
        payload: Value,
    ) -> Result<Received, ServiceError> {
        for (field, v, max) in [
            ("name", name, 200),
            ("correlationKey", correlation, 500),
            ("id", id, 500),
        ] {
            if v.is_empty() || v.len() > max {
                return Err(ServiceError::InvalidInput {
                    field: field.into(),
                    message: format!("must be 1 to {max} bytes"),
                });
            }
        }
        let store = &self.inner.store;
        if !store.inbox_event(id, name, correlation, &payload).await?
            && store.inbox_consumer(id).await?.is_some()
        {
            return Ok(Received::Duplicate);
        }
        let mut delivered = 0;
        for task in store.tasks_waiting_for(name, correlation).await? {
            let output =
                json!({ "payload": payload, "received_at": crate::engine::rfc3339(now_ms()) });
            let result = StepResult {
                outcome: "ok".into(),
                output,
            };
            if let StepDone::Advanced(_) = self.complete_step(&task, result, &[]).await? {
                delivered += 1;
            }
        }
        if delivered > 0 {
            store.consume_inbox_event(id, "delivered").await?;
        } else if store.inbox_consumer(id).await?.is_some() {
            // A step entered just now took it from the inbox first.
            delivered = 1;
        } else {
            return Ok(Received::Kept);
        }
        Ok(Received::Delivered(delivered))
    }

    /// A just-entered event step takes an event that arrived earlier.
    async fn match_inbox(&self, task: &TaskRecord) -> Result<(), ServiceError> {
        let (Some(name), Some(key)) = (&task.event_name, &task.correlation) else {
            return Ok(());
        };
        let Some((inbox_id, payload)) = self.inner.store.pending_inbox_event(name, key).await?
        else {
            return Ok(());
        };
        if !self
            .inner
            .store
            .consume_inbox_event(&inbox_id, &task.id)
            .await?
        {
            return Ok(());
        }
        let result = StepResult {
            outcome: "ok".into(),
            output: json!({ "payload": payload, "received_at": crate::engine::rfc3339(now_ms()) }),
        };
        self.complete_step(task, result, &[]).await?;
        Ok(())
    }

    /// Open approvals, oldest first, for these queues (all when `None`).
    pub async fn approvals(
        &self,
        queues: Option<&[String]>,
        after: Option<(i64, String)>,
        first: i64,
    ) -> Result<Vec<ApprovalView>, ServiceError> {
        let tasks = self
            .inner
            .store
            .open_approvals(queues, after, first)
            .await?;
        let mut out = Vec::with_capacity(tasks.len());
        for task in tasks {
            out.push(approval_view(task));
        }
        Ok(out)
    }

    /// The approval task `task_id` (any state).
    pub async fn approval(&self, task_id: &str) -> Result<ApprovalView, ServiceError> {
        let task = self.task_of_kind(task_id, StepKind::Approval).await?;
        Ok(approval_view(task))
    }

    async fn task_of_kind(
        &self,
        task_id: &str,
        kind: StepKind,
    ) -> Result<TaskRecord, ServiceError> {
        match self.inner.store.task(task_id).await? {
            Some(t) if t.kind == kind.as_str() => Ok(t),
            _ => Err(ServiceError::TaskNotFound {
                task_id: task_id.to_string(),
            }),
        }
    }

    /// The rendered fields a reviewer fills for this approval.
    pub async fn approval_fields(
        &self,
        task: &TaskRecord,
    ) -> Result<Vec<crate::flow::model::ComponentDef>, ServiceError> {
        let (snap, flow) = self.load_trusted(&task.session_id).await?;
        match flow.node_index(&task.node).map(|i| flow.node_def(i)) {
            Some(NodeDef::Approval(a)) => Ok(engine::view::render_components(
                &flow,
                &task.node,
                &a.fields,
                &snap.state.context,
            )?),
            _ => Ok(Vec::new()),
        }
    }

    /// Claims an open approval for `reviewer`.
    pub async fn claim_approval(
        &self,
        task_id: &str,
        reviewer: &str,
    ) -> Result<ApprovalView, ServiceError> {
        let task = self.task_of_kind(task_id, StepKind::Approval).await?;
        match self.inner.store.claim_approval(task_id, reviewer).await? {
            Some(t) => Ok(approval_view(t)),
            None if task.state != TaskState::Open => Err(ServiceError::TaskNotOpen {
                task_id: task_id.into(),
                state: task.state,
            }),
            None => Err(ServiceError::TaskClaimed {
                task_id: task_id.into(),
                by: task.claimed_by.unwrap_or_default(),
            }),
        }
    }

    /// Decides an approval: validates the reviewer's values against the
    /// step's fields and advances the session along the outcome's edge.
    pub async fn complete_approval(
        &self,
        task_id: &str,
        reviewer: &str,
        outcome: &str,
        values: &Map<String, Value>,
        comment: Option<&str>,
    ) -> Result<StepDone, ServiceError> {
        let task = self.task_of_kind(task_id, StepKind::Approval).await?;
        if task.state != TaskState::Open {
            return Err(ServiceError::TaskNotOpen {
                task_id: task_id.into(),
                state: task.state,
            });
        }
        if let Some(by) = task.claimed_by.as_deref().filter(|by| *by != reviewer) {
            return Err(ServiceError::TaskClaimed {
                task_id: task_id.into(),
                by: by.to_string(),
            });
        }
        if comment.is_some_and(|c| c.len() > 4096) {
            return Err(ServiceError::InvalidInput {
                field: "comment".into(),
                message: "must be at most 4096 bytes".into(),
            });
        }
        let (snap, flow) = self.load_trusted(&task.session_id).await?;
        let Some(NodeDef::Approval(step)) = flow.node_index(&task.node).map(|i| flow.node_def(i))
        else {
            return Err(ServiceError::TaskNotFound {
                task_id: task_id.into(),
            });
        };
        if !step.outcomes.contains_key(outcome) {
            return Err(EngineError::UnknownOutcome {
                node: task.node.clone(),
                outcome: outcome.to_string(),
            }
            .into());
        }
        let clean =
            match engine::input::validate(&flow, &step.fields, &[], values, &snap.state.context) {
                Ok(clean) => clean,
                Err((errors, _)) => {
                    let summary = errors
                        .iter()
                        .map(|e| format!("{}: {}", e.field.as_deref().unwrap_or("-"), e.message))
                        .collect::<Vec<_>>()
                        .join("; ");
                    return Err(ServiceError::InvalidDecision { summary, errors });
                }
            };
        let result = StepResult {
            outcome: outcome.to_string(),
            output: json!({
                "outcome": outcome,
                "values": clean,
                "comment": comment,
                "reviewer": reviewer,
                "decided_at": now_ms(),
            }),
        };
        self.complete_step(&task, result, &[]).await
    }

    /// Tasks and attempts of a session, for support and operators.
    pub async fn step_history(&self, session_id: &str) -> Result<StepHistory, ServiceError> {
        // Existence check with a clear error.
        self.snapshot(session_id, Read::Fresh).await?;
        Ok(StepHistory {
            tasks: self.inner.store.session_tasks(session_id).await?,
            attempts: self.inner.store.session_attempts(session_id).await?,
        })
    }

    /// The unfinished task the session is parked on, if any.
    async fn open_task(
        &self,
        session_id: &str,
        node: &str,
    ) -> Result<Option<TaskRecord>, ServiceError> {
        Ok(self
            .inner
            .store
            .session_tasks(session_id)
            .await?
            .into_iter()
            .rev()
            .find(|t| t.node == node && t.state != TaskState::Done))
    }

    /// Operator: run the failed step the session stopped on again.
    pub async fn retry_step(
        &self,
        session_id: &str,
        by: &str,
    ) -> Result<SessionView, ServiceError> {
        let (snap, flow) = self.load_trusted(session_id).await?;
        let advance = engine::reopen(&flow, &snap.state, by)?;
        let view = view_of(&flow, &snap.id, &advance.state)?;
        self.commit_with_tasks(&snap, advance, None, None, &[], Vec::new(), false)
            .await?;
        self.inner.hub.publish(&view);
        self.audit_operator(
            by,
            "session.step_retried",
            &snap,
            serde_json::json!({ "node": snap.state.node }),
        )
        .await;
        Ok(view)
    }

    /// Operator: move a session parked on a step to node `to`.
    pub async fn skip_step(
        &self,
        session_id: &str,
        to: &str,
        by: &str,
    ) -> Result<SessionView, ServiceError> {
        let (snap, flow) = self.load_trusted(session_id).await?;
        if snap.state.status != Status::Waiting {
            return Err(EngineError::StepNotCurrent {
                node: snap.state.node.clone(),
                current: format!("{} ({})", snap.state.node, snap.state.status.as_str()),
            }
            .into());
        }
        let task = self.open_task(session_id, &snap.state.node).await?;
        let advance = engine::skip(&flow, &snap.state, to, by, &self.inner.limits)?;
        let view = view_of(&flow, &snap.id, &advance.state)?;
        let finish = task.as_ref().map(|t| (t.id.as_str(), "skipped"));
        self.commit_with_tasks(&snap, advance, None, finish, &[], Vec::new(), false)
            .await?;
        self.inner.hub.publish(&view);
        self.audit_operator(
            by,
            "session.step_skipped",
            &snap,
            serde_json::json!({ "node": snap.state.node, "to": to }),
        )
        .await;
        Ok(view)
    }

    /// Operator: end a session now (its open step, if any, is cancelled).
    pub async fn cancel_session(
        &self,
        session_id: &str,
        by: &str,
    ) -> Result<SessionView, ServiceError> {
        let (snap, flow) = self.load_trusted(session_id).await?;
        let task = self.open_task(session_id, &snap.state.node).await?;
        let advance = engine::cancel(&snap.state, by)?;
        let view = view_of(&flow, &snap.id, &advance.state)?;
        let finish = task.as_ref().map(|t| (t.id.as_str(), "cancelled"));
        self.commit_with_tasks(&snap, advance, None, finish, &[], Vec::new(), false)
            .await?;
        self.inner.hub.publish(&view);
        self.audit_operator(
            by,
            "session.cancelled",
            &snap,
            serde_json::json!({ "node": snap.state.node }),
        )
        .await;
        Ok(view)
    }
}

impl Baton {
    async fn audit_operator(
        &self,
        by: &str,
        action: &str,
        snap: &super::snapshots::Snapshot,
        detail: serde_json::Value,
    ) {
        self.audit(
            by,
            action,
            &format!("session:{}", snap.id),
            Some(snap.flow_version),
            serde_json::json!({ "flow": snap.flow_id, "action": detail }),
        )
        .await;
    }

    /// PostgreSQL: relays other replicas' session changes, heard on
    /// `listener` (from [`crate::store::Store::session_listener`], set up
    /// before the server starts so nothing is missed at startup), to this
    /// replica's `sessionUpdated` subscribers until `shutdown`. The
    /// listener reconnects by itself; a notification missed meanwhile is
    /// covered by clients polling `session` as a fallback.
    pub async fn relay_replica_updates(
        &self,
        mut listener: sqlx::postgres::PgListener,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        loop {
            let note = tokio::select! {
                _ = shutdown.cancelled() => return,
                n = listener.recv() => n,
            };
            let note = match note {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN connection failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    // Release changes announced meanwhile were lost.
                    if let Err(e) = self.inner.registry.refresh_all().await {
                        tracing::warn!(error = %e, "reloading flow releases failed");
                    }
                    continue;
                }
            };
            if note.channel() == crate::store::flows::RELEASE_CHANNEL {
                if let Err(e) = self.inner.registry.refresh(note.payload()).await {
                    tracing::warn!(flow = note.payload(), error = %e, "reloading a flow release failed");
                }
                continue;
            }
            let Some((origin, session_id)) = note.payload().split_once('|') else {
                continue;
            };
            if origin == self.inner.worker_id || !self.inner.hub.is_watched(session_id) {
                continue;
            }
            // The snapshot cache may hold this replica's older state.
            self.inner.snapshots.forget(session_id);
            if let Ok((snap, flow)) = self.load_trusted(session_id).await
                && let Ok(view) = view_of(&flow, &snap.id, &snap.state)
            {
                self.inner.hub.publish(&view);
            }
        }
    }
}

/// The outcomes were stored with the task when the step was entered,
/// so listing an inbox page reads no session.
fn approval_view(task: TaskRecord) -> ApprovalView {
    let outcomes = task.input["outcomes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    ApprovalView { task, outcomes }
}

fn record_of(session_id: &str, t: &NewTask, now: i64) -> TaskRecord {
    TaskRecord {
        id: t.id.clone(),
        session_id: session_id.to_string(),
        node: t.node.clone(),
        kind: t.kind.clone(),
        state: t.state,
        due_at: t.due_at,
        attempts: t.attempts,
        lease_owner: t.lease_owner.clone(),
        queue: t.queue.clone(),
        event_name: t.event_name.clone(),
        correlation: t.correlation.clone(),
        claimed_by: None,
        mock: t.mock.clone(),
        input: t.input.clone(),
        outcome: None,
        created_at: now,
        updated_at: now,
    }
}

/// A step task's id: a UUID (v5) of the session, the seq it advanced from,
/// the task's place among those the advance created, and the step.
fn task_id(session_id: &str, from_seq: i64, index: usize, node: &str) -> String {
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6261_746f_6e2d_7374_6570_2d74_6173_6b73);
    let name = format!("{session_id}/{from_seq}/{index}/{node}");
    uuid::Uuid::new_v5(&NAMESPACE, name.as_bytes()).to_string()
}

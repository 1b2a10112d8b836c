//! The orchestrator: runs backend steps as durable tasks.
//!
//! A task this process creates (an `http` step) is committed already leased
//! to it and handed over in memory, so it starts without a database round
//! trip or a poll. Everything else — timers, deadlines, mock resolutions,
//! tasks whose worker died (lease expired), tasks other replicas created —
//! is claimed from the store when it falls due: the loop sleeps until the
//! earliest `due_at` it knows of, wakes at once when this process creates
//! work, and re-checks at `poll` at the latest (for work other replicas
//! create). Execution is at least once; the session advances exactly once
//! per step because finishing a task and advancing its session are one
//! guarded transaction ([`crate::store::Store::commit_step`]).
//!
//! Each step kind is run by its own module (`http`, `llm`, `wait`,
//! `approval`, `event`), which implements [`Runner`] for the kind's
//! definition.

mod approval;
pub mod breaker;
pub mod bulkhead;
pub mod clock;
mod event;
mod hedge;
mod http;
pub mod llm;
pub mod policy;
mod wait;

use crate::flow::hosts::AllowList;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::engine::{Status, StepKind, StepResult};
use crate::flow::compile::{CompiledCall, CompiledFlow, CompiledKind, NodeIdx};
use crate::flow::model::NodeDef;
use crate::service::{Baton, Dispatch, ServiceError};
use crate::store::tasks::{AttemptOutcome, AttemptRecord, TaskRecord, TaskState};
use breaker::{BreakerConfig, Breakers};
use clock::Clock;

/// How soon a task whose execution failed on our side runs again.
const RERUN_AFTER_ERROR: Duration = Duration::from_secs(1);

/// Orchestrator settings.
#[derive(Clone)]
pub struct OrchestratorConfig {
    /// Longest sleep between looks at the store for due tasks.
    pub poll: Duration,
    /// Tasks run at once by this process.
    pub concurrency: usize,
    /// Hosts `http` steps may call, and the addresses names may resolve to.
    pub allow_hosts: AllowList,
    pub breaker: BreakerConfig,
    /// Calls at once and per second, per upstream host.
    pub upstream_limits: bulkhead::UpstreamLimits,
    /// Largest upstream response body read, in bytes.
    pub max_response_bytes: usize,
    /// `secrets.NAME` values (from `BATON_SECRET_NAME`).
    pub secrets: HashMap<String, String>,
    /// The endpoint `llm` steps ask.
    pub llm: llm::LlmConfig,
    pub clock: Arc<dyn Clock>,
}

impl Default for OrchestratorConfig {
    fn default() -> Self {
        OrchestratorConfig {
            poll: Duration::from_secs(1),
            concurrency: 256,
            allow_hosts: AllowList::parse(&["localhost", "127.0.0.1"]).expect("valid entries"),
            breaker: BreakerConfig::default(),
            upstream_limits: bulkhead::UpstreamLimits::default(),
            max_response_bytes: 256 * 1024,
            secrets: HashMap::new(),
            llm: llm::LlmConfig {
                key_secret: "LLM_API_KEY".into(),
                ..llm::LlmConfig::default()
            },
            clock: Arc::new(clock::SystemClock),
        }
    }
}

impl OrchestratorConfig {
    /// Secrets from the environment: `BATON_SECRET_API_KEY` becomes
    /// `secrets.API_KEY`.
    pub fn secrets_from_env() -> HashMap<String, String> {
        std::env::vars()
            .filter_map(|(k, v)| {
                k.strip_prefix("BATON_SECRET_")
                    .filter(|name| !name.is_empty())
                    .map(|name| (name.to_string(), v))
            })
            .collect()
    }
}

/// What a running orchestrator shares with its task executions.
pub(crate) struct Shared {
    pub baton: Baton,
    pub config: OrchestratorConfig,
    pub breakers: Breakers,
    pub bulkheads: bulkhead::Bulkheads,
    pub latencies: hedge::Latencies,
    pub client: reqwest::Client,
}

/// Starts the orchestrator for `baton`; it stops when `shutdown` fires.
pub fn spawn(
    baton: Baton,
    config: OrchestratorConfig,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let (tx, rx) = mpsc::unbounded_channel();
    baton.attach_dispatcher(tx);
    let client = reqwest::Client::builder()
        // Steps must not be redirected to a host the allowlist never saw.
        .redirect(reqwest::redirect::Policy::none())
        // Names are checked against the addresses the connection uses, so
        // a name cannot be re-pointed at an internal address after the
        // check (DNS rebinding).
        .dns_resolver(Arc::new(http::AllowedResolver(config.allow_hosts.clone())))
        .build()
        .expect("an HTTP client without TLS always builds");
    let shared = Arc::new(Shared {
        breakers: Breakers::new(config.breaker, config.clock.clone()),
        bulkheads: bulkhead::Bulkheads::new(config.upstream_limits.clone()),
        latencies: hedge::Latencies::default(),
        baton,
        config,
        client,
    });
    tokio::spawn(run(shared, rx, shutdown))
}

async fn run(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<Dispatch>,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(shared.config.concurrency.max(1)));
    let worker = shared.baton.worker_id().to_string();
    let lease = shared.baton.step_settings().lease;
    // Look at the store only when something may be due: at start, when a
    // timer or poll interval ends, or when this process created work that
    // is not handed over directly. Tasks handed over (`Run`) start at once
    // and cost no query.
    let mut look = true;
    let mut wake_at = tokio::time::Instant::now();
    loop {
        if look {
            look = false;
            let free = permits.available_permits() as i64;
            if free > 0 {
                let now = shared.config.clock.now_ms();
                let lease_until = now + lease.as_millis() as i64;
                match shared
                    .baton
                    .store()
                    .claim_due_tasks(&worker, now, lease_until, free)
                    .await
                {
                    Ok(tasks) => {
                        for task in tasks {
                            start(&shared, &permits, task, tracing::Span::none());
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "claiming due tasks failed"),
                }
            }
            let next_due = shared.baton.store().next_task_due().await.ok().flatten();
            let now = shared.config.clock.now_ms();
            let sleep = match next_due {
                Some(at) if at <= now => Duration::from_millis(5),
                Some(at) => Duration::from_millis((at - now) as u64).min(shared.config.poll),
                None => shared.config.poll,
            };
            wake_at = tokio::time::Instant::now() + sleep;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            msg = rx.recv() => match msg {
                Some(Dispatch::Run(task, parent)) => start(&shared, &permits, *task, parent),
                Some(Dispatch::Wake) => look = true,
                None => break,
            },
            _ = tokio::time::sleep_until(wake_at) => look = true,
        }
    }
}

/// Runs `task` on its own tokio task, in a `step` span under `parent` (the
/// request that created it; none for a task claimed from the store).
fn start(shared: &Arc<Shared>, permits: &Arc<Semaphore>, task: TaskRecord, parent: tracing::Span) {
    let shared = shared.clone();
    let permits = permits.clone();
    let span = tracing::debug_span!(
        parent: &parent,
        "step",
        otel.name = %format_args!("step {}", task.node),
        session = %task.session_id,
        node = %task.node,
        kind = %task.kind,
    );
    let run = async move {
        let Ok(_permit) = permits.acquire_owned().await else {
            return;
        };
        let id = task.id.clone();
        if let Err(e) = execute(&shared, task).await {
            tracing::warn!(task = %id, code = %e.code(), error = %e, "step task failed to run; it runs again shortly");
            // Hand it back for a new try soon; if even that fails, the
            // lease runs out and the task is taken again then.
            let again = shared.config.clock.now_ms() + RERUN_AFTER_ERROR.as_millis() as i64;
            let worker = shared.baton.worker_id();
            if let Err(e) = shared.baton.store().release_task(&id, worker, again).await {
                tracing::warn!(task = %id, error = %e, "releasing the task failed; its lease will expire");
            }
        }
    };
    tokio::spawn(tracing::Instrument::instrument(run, span));
}

/// A claimed task, with the flow and the session context it runs in.
pub(crate) struct Claimed<'a> {
    pub shared: &'a Shared,
    pub task: &'a TaskRecord,
    pub flow: &'a CompiledFlow,
    /// The task's node in `flow`.
    pub idx: NodeIdx,
    pub context: &'a Value,
}

impl<'a> Claimed<'a> {
    /// The upstream calls of an `http` or `parallel` step, as compiled
    /// with their policies (none for other kinds).
    fn calls(&self) -> &'a [CompiledCall] {
        if let CompiledKind::Call { calls, .. } = &self.flow.nodes[self.idx].kind {
            calls
        } else {
            &[]
        }
    }

    /// The `default` scenario is no scenario.
    fn scenario(&self) -> Option<&str> {
        self.task.mock.as_deref().filter(|s| *s != "default")
    }

    fn mock(&self) -> bool {
        self.task.mock.is_some()
    }

    /// Reports a result that took no upstream call (a timer, a mock, a
    /// deadline) as the task's one attempt, and advances the session.
    async fn finish(&self, kind: StepKind, result: StepResult) -> Result<(), ServiceError> {
        let (shared, task) = (self.shared, self.task);
        let now = shared.config.clock.now_ms();
        let timed_out = result.outcome == "timeout";
        crate::telemetry::step_attempt(
            kind.as_str(),
            "",
            (now - task.created_at).max(0) as f64 / 1000.0,
            timed_out.then_some("timeout"),
        );
        let attempt = AttemptRecord {
            task_id: task.id.clone(),
            attempt: task.attempts.max(1),
            session_id: task.session_id.clone(),
            node: task.node.clone(),
            worker: shared.baton.worker_id().to_string(),
            started_at: now,
            finished_at: now,
            outcome: if timed_out {
                AttemptOutcome::Timeout
            } else {
                AttemptOutcome::Ok
            },
            status_code: None,
            error: None,
        };
        debug_assert!(task.state != TaskState::Done);
        shared
            .baton
            .finish_step(task, result, std::slice::from_ref(&attempt), false)
            .await?;
        Ok(())
    }
}

impl Claimed<'_> {
    /// Runs `work` while extending the task's lease, for a step that makes
    /// several calls; `None` when the lease was lost (to another worker,
    /// after a stall), and then `work` is dropped unfinished.
    async fn holding_lease<T>(
        &self,
        work: impl std::future::Future<Output = Result<Option<T>, ServiceError>>,
    ) -> Result<Option<T>, ServiceError> {
        let (shared, task) = (self.shared, self.task);
        let lease = shared.baton.step_settings().lease;
        let worker = shared.baton.worker_id().to_string();
        // The first beat is a period away: awaiting an interval's immediate
        // first tick costs a turn of the timer wheel (about a millisecond).
        let mut heartbeat =
            tokio::time::interval_at(tokio::time::Instant::now() + lease / 3, lease / 3);
        tokio::pin!(work);
        loop {
            tokio::select! {
                done = &mut work => return done,
                _ = heartbeat.tick() => {
                    let until = shared.config.clock.now_ms() + lease.as_millis() as i64;
                    if !shared.baton.store().extend_lease(&task.id, &worker, until).await? {
                        return Ok(None);
                    }
                }
            }
        }
    }
}

/// How the orchestrator runs one kind of backend step; each kind's module
/// implements it for the kind's definition in the flow.
pub(crate) trait Runner {
    /// Runs the claimed task to its end and reports its result, or returns
    /// once this worker lost the task's lease (the new holder finishes it).
    async fn run(&self, claimed: Claimed<'_>) -> Result<(), ServiceError>;
}

/// Runs one task to its end (or until this worker loses it).
async fn execute(shared: &Shared, task: TaskRecord) -> Result<(), ServiceError> {
    let (snap, flow) = shared
        .baton
        .step_session(&task.session_id, &task.node)
        .await?;
    if snap.state.status != Status::Waiting || snap.state.node != task.node {
        shared.baton.store().abandon_task(&task.id, "stale").await?;
        return Ok(());
    }
    let Some(idx) = flow.node_index(&task.node) else {
        shared.baton.store().abandon_task(&task.id, "stale").await?;
        return Ok(());
    };
    let claimed = Claimed {
        shared,
        task: &task,
        flow: &flow,
        idx,
        context: &snap.state.context,
    };
    match flow.node_def(idx) {
        NodeDef::Http(step) => step.run(claimed).await,
        NodeDef::Parallel(step) => step.run(claimed).await,
        NodeDef::Wait(step) => step.run(claimed).await,
        NodeDef::Approval(step) => step.run(claimed).await,
        NodeDef::Event(step) => step.run(claimed).await,
        NodeDef::Llm(step) => step.run(claimed).await,
        // Nodes that never have a task: the flow changed under it.
        NodeDef::Screen(_)
        | NodeDef::Decision(_)
        | NodeDef::End(_)
        | NodeDef::Transform(_)
        | NodeDef::Subflow(_) => {
            shared.baton.store().abandon_task(&task.id, "stale").await?;
            Ok(())
        }
    }
}

/// The result of a step whose deadline passed.
fn timed_out(now: i64) -> StepResult {
    StepResult {
        outcome: "timeout".into(),
        output: json!({ "timed_out": true, "at": now }),
    }
}

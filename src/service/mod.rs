//! The application service: what the API calls. It ties the registry of
//! compiled flow versions, the pure engine and the store together, and
//! owns the rules that span them — session tokens, idempotent submits,
//! optimistic concurrency and update fan-out.

mod error;
pub mod feed;
pub mod funnel;
pub mod hub;
mod lane;
pub mod lifecycle;
pub mod preview;
mod recorder;
pub mod registry;
pub mod retention;
pub mod rollups;
mod snapshots;
pub mod steps;
pub mod support;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub use error::ServiceError;
pub use steps::{Dispatch, StepSettings};

use crate::engine::{
    self, Advance, ClientInfo, EngineError, FieldError, Limits, ScreenView, SessionState, Status,
};
use crate::experiments::live::{Experiments, Prepared};
use crate::flags::{EvaluationContext, FlagStore};
use crate::flow::compile::{CompiledFlow, CompiledKind, FlagRefs};
use crate::store::{NewEvent, NewIdempotency, NewSession, SessionRecord, Store, StoreError};
use hub::Hub;
use registry::Registry;
use snapshots::{RecentAnswers, RecentKeys, Snapshot, Snapshots};

/// A session as the client sees it: the `FlowSession` of the API. Stored
/// as the response of an idempotent submit, so it (de)serializes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionView {
    pub id: String,
    pub flow_id: String,
    pub flow_version: i32,
    pub status: Status,
    /// The `end` node's outcome once the session has ended.
    #[serde(default)]
    pub outcome: Option<crate::flow::model::Outcome>,
    pub screen: Option<ScreenView>,
    /// What a waiting session waits for when no step of this server will
    /// finish it soon; not part of the answer.
    #[serde(skip)]
    pub parked: Option<Parked>,
}

/// What a waiting session waits for, when it is not a step this server
/// runs now: a request need not hold on for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parked {
    /// An approval: a reviewer decides.
    Person,
    /// An external event.
    Event,
    /// A timer, for this long (`None`: until a rendered time).
    Timer(Option<std::time::Duration>),
}

impl Parked {
    /// Whether the session will still be parked after `remaining`.
    pub fn outlasts(self, remaining: std::time::Duration) -> bool {
        match self {
            Parked::Person | Parked::Event | Parked::Timer(None) => true,
            Parked::Timer(Some(d)) => d >= remaining,
        }
    }
}

/// What a caller wants to start.
#[derive(Debug, Clone)]
pub struct StartRequest {
    /// Mock scenario: run the session's backend steps against their mocks
    /// (`Some("default")` for the default mocks).
    pub mock: Option<String>,
    pub flow_id: String,
    pub user_id: String,
    pub user_attributes: Value,
    pub client: ClientInfo,
    /// The verified user (a JWT's subject) the session's token is bound
    /// to: later calls need a JWT of the same subject with the token.
    pub bound_to: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SubmitRequest {
    pub session_id: String,
    pub screen_id: String,
    pub action: String,
    pub values: Map<String, Value>,
    pub idempotency_key: Option<String>,
}

/// Longest accepted idempotency key and user id, in bytes.
const MAX_KEY_LEN: usize = 200;
/// Attempts when another request advanced the same session concurrently.
const MAX_CONFLICT_RETRIES: usize = 3;

#[derive(Clone)]
pub struct Baton {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    registry: Registry,
    limits: Limits,
    hub: Hub,
    snapshots: Snapshots,
    flags: FlagStore,
    steps: StepSettings,
    /// This process's identity as a task worker (lease owner).
    worker_id: String,
    /// Hands tasks this process created to its orchestrator.
    dispatch: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<Dispatch>>,
    experiments: Experiments,
    rollups: rollups::Rollups,
    /// Most sessions a funnel folds from the log (`--funnel-max-logged`).
    funnel_max_logged: i64,
}

/// Sessions whose last snapshot is kept for optimistic submits, unless
/// `--session-cache` says otherwise.
pub const DEFAULT_SESSION_CACHE: usize = 10_000;

impl Baton {
    pub fn new(store: Store, registry: Registry, limits: Limits, flags: FlagStore) -> Baton {
        Baton::with_steps(store, registry, limits, flags, StepSettings::default())
    }

    pub fn with_steps(
        store: Store,
        registry: Registry,
        limits: Limits,
        flags: FlagStore,
        steps: StepSettings,
    ) -> Baton {
        let worker_id = format!("w-{}", uuid::Uuid::now_v7());
        Baton {
            inner: Arc::new(Inner {
                rollups: rollups::Rollups::new(store.clone(), &worker_id),
                store,
                registry,
                limits,
                hub: Hub::default(),
                snapshots: Snapshots::new(DEFAULT_SESSION_CACHE),
                flags,
                steps,
                worker_id,
                dispatch: std::sync::OnceLock::new(),
                experiments: Experiments::default(),
                funnel_max_logged: funnel::MAX_FUNNEL_SESSIONS,
            }),
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    pub fn step_settings(&self) -> &StepSettings {
        &self.inner.steps
    }

    /// The funnel aggregator (its loop runs where the server starts it).
    pub fn rollups(&self) -> &rollups::Rollups {
        &self.inner.rollups
    }

    pub fn worker_id(&self) -> &str {
        &self.inner.worker_id
    }

    /// Runs `experiments` in sessions (see [`crate::experiments::live`]).
    /// Call before the service is shared.
    pub fn with_experiments(mut self, experiments: Experiments) -> Baton {
        Arc::get_mut(&mut self.inner)
            .expect("with_experiments is called before the service is shared")
            .experiments = experiments;
        self
    }

    /// Sets the most sessions a funnel reads from the log. Call before
    /// the service is shared.
    pub fn with_funnel_max_logged(mut self, max: i64) -> Baton {
        Arc::get_mut(&mut self.inner)
            .expect("with_funnel_max_logged is called before the service is shared")
            .funnel_max_logged = max.max(1);
        self
    }

    /// Sets how many sessions' last snapshots are kept in memory (0: none;
    /// every request then reads its session). Call before the service is
    /// shared.
    pub fn with_session_cache(mut self, sessions: usize) -> Baton {
        Arc::get_mut(&mut self.inner)
            .expect("with_session_cache is called before the service is shared")
            .snapshots = Snapshots::new(sessions);
        self
    }

    /// Sets how many sessions' funnel walks the aggregator keeps in
    /// memory, and how long what it folded may wait to be written. Call
    /// before the service is shared.
    pub fn with_funnel_memory(mut self, walks: usize, write_every: std::time::Duration) -> Baton {
        Arc::get_mut(&mut self.inner)
            .expect("with_funnel_memory is called before the service is shared")
            .rollups
            .set_memory(walks, write_every);
        self
    }

    pub fn experiments(&self) -> &Experiments {
        &self.inner.experiments
    }

    pub fn flags(&self) -> &FlagStore {
        &self.inner.flags
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// Starts a session on the latest version of the flow. Returns the
    /// session and its bearer token (shown once; only its hash is stored).
    #[tracing::instrument(name = "baton.start", level = "debug", skip_all, fields(flow = %req.flow_id))]
    pub async fn start_flow(
        &self,
        req: StartRequest,
    ) -> Result<(SessionView, String), ServiceError> {
        if req.user_id.is_empty() || req.user_id.len() > MAX_KEY_LEN {
            return Err(ServiceError::InvalidInput {
                field: "user.id".into(),
                message: format!("must be 1 to {MAX_KEY_LEN} bytes"),
            });
        }
        if !matches!(req.user_attributes, Value::Null | Value::Object(_)) {
            return Err(ServiceError::InvalidInput {
                field: "user.attributes".into(),
                message: "must be a JSON object".into(),
            });
        }
        let bound_to = req.bound_to.clone();
        let flow = self
            .inner
            .registry
            .for_user(&req.flow_id, &req.user_id)
            .ok_or_else(|| ServiceError::FlowNotFound {
                flow_id: req.flow_id.clone(),
            })?;
        let flow = if flow.children.is_empty() {
            flow
        } else {
            self.inner
                .registry
                .session_flow(&flow.id, flow.version, &Default::default(), &req.user_id)
                .await?
        };
        let session_id = uuid::Uuid::now_v7().to_string();
        let mock = match req.mock {
            // A scenario no step declares would silently run the default mocks.
            Some(scenario) if !flow.mock_scenarios.contains(&scenario) => {
                return Err(ServiceError::UnknownMockScenario {
                    scenario,
                    declared: flow.mock_scenarios.iter().cloned().collect(),
                });
            }
            Some(scenario) => Some(scenario),
            None if self.inner.steps.mock_all => Some("default".to_string()),
            None => None,
        };
        let (flags, experiments) = if flow.flag_keys == FlagRefs::None {
            (Map::new(), None)
        } else {
            let context = serde_json::json!({
                "user": { "id": req.user_id, "attributes": req.user_attributes },
                "client": req.client.to_context(),
            });
            let mut flags = self.evaluate_flags(&flow, &context)?;
            let set = self.inner.flags.current();
            let exp = self.inner.experiments.prepare_start(
                &self.inner.store,
                &set,
                &flow,
                &context,
                &mut flags,
                now_ms(),
            );
            let exp = exp.await?;
            (flags, Some(exp))
        };
        let mut advance = engine::start_with_flags(
            &flow,
            engine::StartInput {
                mock,
                session_id: session_id.clone(),
                user_id: req.user_id.clone(),
                user_attributes: req.user_attributes,
                client: req.client,
                started_at_ms: now_ms(),
            },
            flags,
            &self.inner.limits,
        )?;
        let view = view_of(&flow, &session_id, &advance.state)?;
        let mut extra = Vec::new();
        if let Some((prepared, pins)) = experiments
            && prepared.applies()
        {
            extra = self
                .inner
                .experiments
                .record_start(&flow, &prepared, &mut advance, pins);
        }
        // After the pins went into the context, so the first screen's
        // impression carries the session's arms.
        let mut events = to_new_events(&advance)?;
        events.extend(extra);
        self.create_started(
            &flow,
            session_id,
            req.user_id,
            bound_to,
            advance,
            events,
            view,
        )
        .await
    }

    /// Stores a session that just started (its first events and step
    /// tasks), caches it, hands its tasks to the orchestrator and, when it
    /// waits on steps, waits for them within the step budget.
    #[allow(clippy::too_many_arguments)]
    async fn create_started(
        &self,
        flow: &CompiledFlow,
        session_id: String,
        user_id: String,
        bound_to: Option<String>,
        advance: engine::Advance,
        events: Vec<NewEvent>,
        view: SessionView,
    ) -> Result<(SessionView, String), ServiceError> {
        let token = new_token();
        let record = NewSession {
            id: session_id.clone(),
            flow_id: flow.id.clone(),
            flow_version: flow.version,
            user_id,
            token_hash: hash_token(&crate::identity::bind(&token, bound_to.as_deref())),
            status: advance.state.status.as_str().to_string(),
            state: serde_json::to_value(&advance.state).map_err(ServiceError::internal)?,
        };
        let tasks = self.new_tasks(&session_id, 0, &advance);
        let durable = !self.runs_here(&tasks);
        let waiting = (advance.state.status == Status::Waiting)
            .then(|| self.inner.hub.subscribe(&session_id));
        self.inner
            .store
            .create_session_with_tasks(&record, &events, &tasks, durable)
            .await?;
        self.inner.snapshots.put(Arc::new(Snapshot {
            id: record.id,
            seq: events.len() as i64,
            token_hash: record.token_hash,
            flow_id: record.flow_id,
            flow_version: record.flow_version,
            state: advance.state,
            answered: RecentAnswers::default(),
            applied_keys: RecentKeys::default(),
        }));
        self.dispatch(&session_id, tasks);
        let view = match waiting {
            Some(rx) => self.wait_for_steps(view, rx).await,
            None => view,
        };
        Ok((view, token))
    }

    /// The session as it is now (always read from the store).
    pub async fn session(
        &self,
        session_id: &str,
        token: Option<&str>,
    ) -> Result<SessionView, ServiceError> {
        let (snap, flow) = self.load(session_id, token, Read::Fresh).await?;
        view_of(&flow, &snap.id, &snap.state)
    }

    /// Applies an action; counts the outcome in `baton_submits_total`.
    #[tracing::instrument(
        name = "baton.submit",
        level = "debug",
        skip_all,
        fields(session = %req.session_id, action = %req.action)
    )]
    pub async fn submit(
        &self,
        req: SubmitRequest,
        token: Option<&str>,
    ) -> Result<SessionView, ServiceError> {
        let answer = self.submit_once(req, token).await;
        let outcome = match &answer {
            Ok(view) => match view.screen.as_ref().and_then(|s| s.errors.first()) {
                Some(refused) => refused.code.as_str(),
                None => view.status.as_str(),
            },
            Err(e) => e.code().as_str(),
        };
        crate::telemetry::SUBMITS.add(&[outcome], 1);
        answer
    }

    async fn submit_once(
        &self,
        req: SubmitRequest,
        token: Option<&str>,
    ) -> Result<SessionView, ServiceError> {
        if let Some(key) = &req.idempotency_key
            && (key.is_empty() || key.len() > MAX_KEY_LEN)
        {
            return Err(ServiceError::InvalidInput {
                field: "idempotencyKey".into(),
                message: format!("must be 1 to {MAX_KEY_LEN} bytes"),
            });
        }
        let key = req.idempotency_key.as_deref();
        let request_hash = request_fingerprint(&req);
        let mut read = Read::Cached;
        for _ in 0..MAX_CONFLICT_RETRIES {
            let (snap, flow) = self.load(&req.session_id, token, read).await?;
            if let Some(key) = key
                && let Some(done) = snap.answered.get(key)
            {
                return answer_of(&done.request_hash, &done.response, key, &request_hash);
            }
            let cached = read == Read::Cached;
            // An older submit's retry: answered from its record, not by
            // attempting the write again (a screen the session came back
            // to would let it through the engine).
            if let Some(key) = key
                && snap.applied_keys.may_contain(key)
                && let Some(done) = self.replay(&req.session_id, key, &request_hash).await?
            {
                return Ok(done);
            }
            read = Read::Fresh;
            let (state, experiments) = self.advance_state(&flow, &snap.state).await?;
            let decided =
                tracing::debug_span!("engine.submit", node = %req.screen_id).in_scope(|| {
                    engine::submit(
                        &flow,
                        &state,
                        &req.screen_id,
                        &req.action,
                        &req.values,
                        &self.inner.limits,
                    )
                });
            let mut advance = match decided {
                Ok(a) => a,
                // Only a commit may rest on a cached snapshot: decide anything
                // else again on what the store says now.
                Err(_) if cached => continue,
                Err(e) => {
                    // A retry of a submit that was answered before (it may have
                    // ended the session, or moved it on): answer as the first time.
                    if let Some(key) = key
                        && let Some(done) = self.replay(&req.session_id, key, &request_hash).await?
                    {
                        return Ok(done);
                    }
                    match e {
                        EngineError::StaleScreen { submitted, current } => {
                            // Not applied: the client gets the screen it should show.
                            let mut view = view_of(&flow, &snap.id, &snap.state)?;
                            if let Some(screen) = view.screen.as_mut() {
                                screen.errors = vec![FieldError {
                                    field: None,
                                    code: crate::codes::Code::StaleScreen,
                                    message: format!(
                                        "`{submitted}` is no longer the current screen; this is `{current}`."
                                    ),
                                }];
                            }
                            // Answered, not applied: a replay gets this same answer even
                            // after the session has moved on.
                            if let Some(key) = key {
                                self.record_answer(&req.session_id, key, &request_hash, &view)
                                    .await?;
                            }
                            return Ok(view);
                        }
                        e => return Err(e.into()),
                    }
                }
            };
            let extra = match &experiments {
                Some(prepared) => self.inner.experiments.record(&flow, prepared, &mut advance),
                None => Vec::new(),
            };
            let view = view_of(&flow, &snap.id, &advance.state)?;
            let waiting = (advance.state.status == Status::Waiting)
                .then(|| self.inner.hub.subscribe(&snap.id));
            let idem = match key {
                Some(key) => Some(Arc::new(NewIdempotency {
                    key: key.to_string(),
                    request_hash: request_hash.clone(),
                    response: serde_json::value::to_raw_value(&view)
                        .map_err(ServiceError::internal)?,
                })),
                None => None,
            };
            match self.commit(&snap, advance, idem.as_ref(), extra).await {
                Ok(()) => {
                    self.inner.hub.publish(&view);
                    let Some(rx) = waiting else { return Ok(view) };
                    let latest = self.wait_for_steps(view, rx).await;
                    // The record holds the answer from before the steps ran; a
                    // replay must get what this client gets now.
                    if let Some(idem) = &idem {
                        let latest_json =
                            serde_json::to_string(&latest).map_err(ServiceError::internal)?;
                        if latest_json != idem.response.get() {
                            self.record_answer(&req.session_id, &idem.key, &request_hash, &latest)
                                .await?;
                        }
                    }
                    return Ok(latest);
                }
                // Someone else advanced the session first (or retention
                // deleted it): start over from what is stored.
                Err(ServiceError::Store(
                    StoreError::Conflict { .. } | StoreError::SessionGone { .. },
                )) => continue,
                // The key was applied before (the session may have come back
                // to the same screen since): answer as the first time.
                Err(ServiceError::Store(StoreError::IdempotencyKeyTaken { .. })) => {
                    let key = key.expect("a key was sent");
                    return match self.replay(&req.session_id, key, &request_hash).await? {
                        Some(done) => Ok(done),
                        None => Err(ServiceError::Busy),
                    };
                }
                Err(e) => return Err(e),
            }
        }
        Err(ServiceError::Busy)
    }

    pub async fn back(
        &self,
        session_id: &str,
        token: Option<&str>,
    ) -> Result<SessionView, ServiceError> {
        let mut read = Read::Cached;
        for _ in 0..MAX_CONFLICT_RETRIES {
            let (snap, flow) = self.load(session_id, token, read).await?;
            let cached = read == Read::Cached;
            read = Read::Fresh;
            let advance = match engine::back(&flow, &snap.state) {
                Ok(a) => a,
                Err(_) if cached => continue,
                Err(e) => return Err(e.into()),
            };
            let view = view_of(&flow, &snap.id, &advance.state)?;
            match self.commit(&snap, advance, None, Vec::new()).await {
                Ok(()) => {
                    self.inner.hub.publish(&view);
                    return Ok(view);
                }
                Err(ServiceError::Store(
                    StoreError::Conflict { .. } | StoreError::SessionGone { .. },
                )) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ServiceError::Busy)
    }

    /// Checks the token and returns the current view plus a receiver of
    /// later updates. Subscribing before reading means no update is missed.
    pub async fn watch(
        &self,
        session_id: &str,
        token: Option<&str>,
    ) -> Result<(SessionView, tokio::sync::broadcast::Receiver<SessionView>), ServiceError> {
        let rx = self.inner.hub.subscribe(session_id);
        let view = self.session(session_id, token).await?;
        Ok((view, rx))
    }

    /// The state an advance starts from: the flags `flow` reads evaluated
    /// for this user now, and the experiments on them prepared (variants
    /// pinned); the snapshot as it is when the flow reads no flag.
    async fn advance_state<'s>(
        &self,
        flow: &CompiledFlow,
        state: &'s SessionState,
    ) -> Result<(Cow<'s, SessionState>, Option<Prepared>), ServiceError> {
        if flow.flag_keys == FlagRefs::None {
            return Ok((Cow::Borrowed(state), None));
        }
        let mut st = state.clone();
        let mut flags = self.evaluate_flags(flow, &st.context)?;
        if let Some(overrides) = st.context["session"]["preview"]["flags"].as_object() {
            // A preview keeps the values and arms it was started with, and
            // never counts in an experiment.
            flags.extend(overrides.clone());
            st.context["flags"] = Value::Object(flags);
            return Ok((Cow::Owned(st), None));
        }
        st.context["flags"] = Value::Object(flags);
        let set = self.inner.flags.current();
        let prepared = self
            .inner
            .experiments
            .prepare(&self.inner.store, &set, flow, &mut st, now_ms())
            .await?;
        Ok((Cow::Owned(st), Some(prepared)))
    }

    /// The values of the flags `flow` reads, for the user in `context`
    /// (`targetingKey` = user id; targeting sees the session context).
    /// Public for the benchmark of what flags add to a submit.
    pub fn evaluate_flags(
        &self,
        flow: &CompiledFlow,
        context: &Value,
    ) -> Result<Map<String, Value>, ServiceError> {
        let mut out = Map::new();
        if flow.flag_keys == FlagRefs::None {
            return Ok(out);
        }
        let set = self.inner.flags.current();
        let user_id = context["user"]["id"].as_str().unwrap_or_default();
        let ectx = EvaluationContext::for_session(user_id, context, &["flags", "experiments"])
            .map_err(ServiceError::internal)?;
        let keys: Vec<&str> = match &flow.flag_keys {
            FlagRefs::None => Vec::new(),
            FlagRefs::Keys(keys) => keys.iter().map(String::as_str).collect(),
            FlagRefs::All => set.keys().collect(),
        };
        for key in keys {
            // A flag that is missing, disabled or in error reads as null, so
            // the flow's default edge applies — the app's "code default".
            let value = set
                .evaluate(key, &ectx)
                .value
                .cloned()
                .unwrap_or(Value::Null);
            out.insert(key.to_string(), value);
        }
        Ok(out)
    }

    /// Stores `view` as the answer to `key`, for replays.
    async fn record_answer(
        &self,
        session_id: &str,
        key: &str,
        request_hash: &str,
        view: &SessionView,
    ) -> Result<(), ServiceError> {
        let idem = NewIdempotency {
            key: key.to_string(),
            request_hash: request_hash.to_string(),
            response: serde_json::value::to_raw_value(view).map_err(ServiceError::internal)?,
        };
        Ok(self.inner.store.record_response(session_id, &idem).await?)
    }

    async fn replay(
        &self,
        session_id: &str,
        key: &str,
        hash: &str,
    ) -> Result<Option<SessionView>, ServiceError> {
        let Some(done) = self
            .inner
            .store
            .idempotent_response(session_id, key)
            .await?
        else {
            return Ok(None);
        };
        answer_of(&done.request_hash, &done.response, key, hash).map(Some)
    }

    /// Appends the advance's events and its snapshot, expecting the session
    /// to be where `snap` says; remembers the new snapshot on success.
    async fn commit(
        &self,
        snap: &Snapshot,
        advance: Advance,
        idem: Option<&Arc<NewIdempotency>>,
        extra_events: Vec<NewEvent>,
    ) -> Result<(), ServiceError> {
        if !advance.tasks.is_empty() {
            return self
                .commit_with_tasks(
                    snap,
                    advance,
                    idem.map(|i| &**i),
                    None,
                    &[],
                    extra_events,
                    true,
                )
                .await;
        }
        let answered = snap
            .answered
            .and(idem.filter(|_| advance.state.status != Status::Waiting));
        let mut events = to_new_events(&advance)?;
        events.extend(extra_events);
        let result = self
            .inner
            .store
            .commit(
                &snap.id,
                snap.seq,
                advance.state.status.as_str(),
                &advance.state,
                &events,
                idem.map(|i| &**i),
            )
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
                    answered,
                    applied_keys: snap.applied_keys.and(idem.map(|i| i.key.as_str())),
                }));
                Ok(())
            }
            Err(e) => {
                self.inner.snapshots.forget(&snap.id);
                Err(e.into())
            }
        }
    }

    /// The session's snapshot (checked against `token`) and its flow version.
    /// An unknown id and a token that is not the session's are the same
    /// `SESSION_NOT_FOUND`, so ids cannot be probed.
    async fn load(
        &self,
        session_id: &str,
        token: Option<&str>,
        read: Read,
    ) -> Result<(Arc<Snapshot>, Arc<CompiledFlow>), ServiceError> {
        // No existence oracle: without a token nothing is looked up, and a
        // token that is not this session's answers as an unknown id does.
        let Some(token) = token else {
            return Err(ServiceError::Unauthenticated);
        };
        let snap = self.snapshot(session_id, read).await?;
        if hash_token(token) != snap.token_hash {
            return Err(ServiceError::SessionNotFound {
                session_id: session_id.to_string(),
            });
        }
        preview::check_not_expired(session_id, &snap.state.context)?;
        let flow = self
            .flow_of(&snap.flow_id, snap.flow_version, &snap.state)
            .await?;
        Ok((snap, flow))
    }

    /// The session's snapshot and flow version without a token check: for
    /// the orchestrator and for callers authorized by an API key.
    pub(super) async fn load_trusted(
        &self,
        session_id: &str,
    ) -> Result<(Arc<Snapshot>, Arc<CompiledFlow>), ServiceError> {
        self.load_trusted_as(session_id, Read::Fresh).await
    }

    async fn load_trusted_as(
        &self,
        session_id: &str,
        read: Read,
    ) -> Result<(Arc<Snapshot>, Arc<CompiledFlow>), ServiceError> {
        let snap = self.snapshot(session_id, read).await?;
        let flow = self
            .flow_of(&snap.flow_id, snap.flow_version, &snap.state)
            .await?;
        Ok((snap, flow))
    }

    /// The graph a session walks: its pinned version, with its subflows.
    pub(crate) async fn flow_of(
        &self,
        flow_id: &str,
        version: i32,
        state: &SessionState,
    ) -> Result<Arc<CompiledFlow>, ServiceError> {
        let user = state.context["user"]["id"].as_str().unwrap_or_default();
        self.inner
            .registry
            .session_flow(flow_id, version, &state.subflows, user)
            .await
    }

    async fn snapshot(&self, session_id: &str, read: Read) -> Result<Arc<Snapshot>, ServiceError> {
        let cached = match read {
            Read::Cached => self.inner.snapshots.get(session_id),
            Read::Fresh => None,
        };
        let snap = match cached {
            Some(s) => s,
            None => {
                let Some(record) = self.inner.store.session(session_id).await? else {
                    // Deleted by retention since it was remembered.
                    self.inner.snapshots.forget(session_id);
                    return Err(ServiceError::SessionNotFound {
                        session_id: session_id.to_string(),
                    });
                };
                let snap = Arc::new(snapshot_of(record)?);
                self.inner.snapshots.put(snap.clone());
                snap
            }
        };
        Ok(snap)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// The remembered snapshot if there is one: only for optimistic commits.
    Cached,
    /// What the store has now.
    Fresh,
}

fn snapshot_of(record: SessionRecord) -> Result<Snapshot, ServiceError> {
    let state: SessionState =
        serde_json::from_value(record.state).map_err(ServiceError::internal)?;
    Ok(Snapshot {
        id: record.id,
        seq: record.seq,
        token_hash: record.token_hash,
        flow_id: record.flow_id,
        flow_version: record.flow_version,
        state,
        answered: RecentAnswers::default(),
        applied_keys: RecentKeys::default(),
    })
}

fn view_of(
    flow: &CompiledFlow,
    session_id: &str,
    state: &SessionState,
) -> Result<SessionView, ServiceError> {
    Ok(SessionView {
        id: session_id.to_string(),
        flow_id: flow.id.clone(),
        flow_version: flow.version,
        status: state.status,
        outcome: state.outcome,
        screen: engine::render(flow, state)?,
        parked: parked(flow, state),
    })
}

/// What `state` waits for, if it is parked on something no step of this
/// server finishes soon. Mock sessions resolve approvals, events and timers
/// by their mocks, so they are never parked.
fn parked(flow: &CompiledFlow, state: &SessionState) -> Option<Parked> {
    if state.status != Status::Waiting || !state.context["session"]["mock"].is_null() {
        return None;
    }
    let idx = flow.node_index(&state.node)?;
    match &flow.nodes[idx].kind {
        CompiledKind::Approval { .. } => Some(Parked::Person),
        CompiledKind::Event { .. } => Some(Parked::Event),
        CompiledKind::Wait { delay, .. } => Some(Parked::Timer(*delay)),
        // Steps this server finishes soon, and nodes that never park.
        CompiledKind::Call { .. }
        | CompiledKind::Screen { .. }
        | CompiledKind::Decision { .. }
        | CompiledKind::End { .. }
        | CompiledKind::Transform { .. }
        | CompiledKind::Subflow { .. }
        | CompiledKind::Return { .. } => None,
    }
}

/// The advance's events as the store appends them. Impressions and
/// actions (the events with a `log_id`) also carry the session's arms:
/// `{experiment: variant}` for each experiment that counts this session.
/// A preview's events carry `preview: true`, so that a consumer of the
/// feed (a webhook, NATS) can leave them out as funnels do.
fn to_new_events(advance: &Advance) -> Result<Vec<NewEvent>, ServiceError> {
    let arms = arms_of(&advance.state.context);
    let preview = !advance.state.context["session"]["preview"].is_null();
    advance
        .events
        .iter()
        .map(|e| {
            let mut payload = serde_json::to_value(e).map_err(ServiceError::internal)?;
            if let Some(fields) = payload.as_object_mut() {
                if !arms.is_empty() && fields.contains_key("log_id") {
                    fields.insert("arms".to_owned(), Value::Object(arms.clone()));
                }
                if preview {
                    fields.insert("preview".to_owned(), Value::Bool(true));
                }
            }
            Ok(NewEvent {
                kind: e.kind().to_string(),
                payload,
            })
        })
        .collect()
}

/// A replay's answer from a recorded submit (the snapshot's or the
/// store's): the same answer as the first time, or
/// `IDEMPOTENCY_KEY_REUSED` for another request under the same key.
fn answer_of(
    recorded_hash: &str,
    response: &RawValue,
    key: &str,
    request_hash: &str,
) -> Result<SessionView, ServiceError> {
    same_request(recorded_hash, key, request_hash)?;
    serde_json::from_str(response.get()).map_err(ServiceError::internal)
}

/// A key answers only the request it was first sent with.
fn same_request(recorded: &str, key: &str, request_hash: &str) -> Result<(), ServiceError> {
    if recorded != request_hash {
        return Err(ServiceError::IdempotencyKeyReused {
            key: key.to_string(),
        });
    }
    Ok(())
}

fn arms_of(context: &Value) -> Map<String, Value> {
    let Some(pins) = context.get("experiments").and_then(Value::as_object) else {
        return Map::new();
    };
    crate::experiments::live::counted_arms(pins)
        .map(|(id, variant)| (id.to_owned(), Value::from(variant)))
        .collect()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Tokens are stored as SHA-256: a leaked database does not leak sessions.
pub fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn request_fingerprint(req: &SubmitRequest) -> String {
    let mut h = Sha256::new();
    h.update(req.screen_id.as_bytes());
    h.update([0]);
    h.update(req.action.as_bytes());
    h.update([0]);
    h.update(serde_json::to_vec(&req.values).unwrap_or_default());
    hex(&h.finalize())
}

/// Lowercase hex; on the hot path twice per submit (token and request hashes).
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_hashes_are_lowercase_sha256_hex() {
        // Stored hashes must keep matching: the FIPS 180-2 "abc" vector.
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }
}

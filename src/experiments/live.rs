//! Experiments in running sessions: sticky assignment, exposures when a
//! flow uses the assignment, conversions at goal nodes, and QA forcing.
//!
//! **Assignment.** When a session's flow reads an experiment's flag
//! (`flags.<key>`) and the session has no variant for that experiment yet,
//! it gets one, in this order: a variant QA forced for the user; the user's
//! stored assignment; else, if the experiment is running and admits the
//! user (namespace slice, `eligible`), the flag's own evaluation for the
//! user, stored as the user's assignment — the first stored assignment
//! wins and never changes, so a weight change or a restart never moves a
//! user. A user the experiment does not admit gets the control variant and
//! is not counted. The outcome is pinned in the session's context as
//! `experiments.<id>` = `{variant, source, exposed, converted}`, so every
//! later advance of the session reads it from the snapshot: only the first
//! advance that needs an assignment costs a store round trip (one read; one
//! insert for a user's first assignment), and a flow that reads no
//! experiment flag costs nothing. Nothing is cached in memory but the
//! per-flow-version analysis below, which cannot go stale (a flow version
//! never changes).
//!
//! **Exposure ("used").** An advance uses a flag when a rule that reads it
//! is evaluated, or when the screen the advance rests on shows a template
//! that reads it. Rules evaluated are reconstructed exactly from the
//! advance's events (the submitted action's edges and every decision
//! entered, each up to the first matching edge, re-evaluated on the
//! context the engine used); templates are judged by what they mention (a
//! template that mentions a flag counts even inside an `{% if %}` branch
//! not taken; the screen's fallback is judged separately when the client
//! gets it). The first use in a session appends one `experiment_exposed`
//! event; entering a goal node after that appends one
//! `experiment_converted`. Both go into the session log in the same commit
//! as the advance, and results are counted from the log.
//!
//! **Forcing.** QA forces a variant for a user (stored; applies to that
//! user's sessions that have no variant yet) or for a running session (an
//! `experiment_forced` event and a new pin, written like any advance).
//! Exposures under a forced variant are marked `forced`, and a session
//! that was ever forced is left out of results entirely.

use crate::codes::Code;
use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use dashmap::DashMap;
use regex::Regex;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::def::{Experiment, arm_weights};
use super::stats::{ArmCounts, Results, analyze};
use crate::engine::{Advance, Event, SessionState};
use crate::flags::{EvaluationContext, FlagSet};
use crate::flow::compile::{CompiledEdge, CompiledFlow, CompiledKind, FlagRefs, NodeIdx};
use crate::flow::model::NodeDef;
use crate::store::experiments::{CONVERTED, EXPOSED, FORCED, UNFORCED};
use crate::store::{NewEvent, Store, StoreError};

/// How a session came by its variant (`experiments.<id>.source`).
pub mod source {
    /// The user's sticky assignment (stored now or earlier).
    pub const ASSIGNED: &str = "assigned";
    /// QA forced the variant for the user.
    pub const FORCED_USER: &str = "forced_user";
    /// QA forced the variant for this session.
    pub const FORCED_SESSION: &str = "forced_session";
    /// The experiment did not admit the user: control, not counted.
    pub const NOT_ELIGIBLE: &str = "not_eligible";
}

/// Whether a session's pin (`experiments.<id>`) counts it in the
/// experiment: everything but control for a user the experiment did not admit.
pub fn counts(pin: &Value) -> bool {
    pin.get("source").and_then(Value::as_str) != Some(source::NOT_ELIGIBLE)
}

/// The arms of the experiments that count a session, from its pins
/// (`context.experiments`): experiment id → variant.
pub fn counted_arms(pins: &serde_json::Map<String, Value>) -> impl Iterator<Item = (&str, &str)> {
    pins.iter()
        .filter(|(_, pin)| counts(pin))
        .filter_map(|(id, pin)| Some((id.as_str(), pin.get("variant")?.as_str()?)))
}

/// Attempts to write a session force when the session keeps moving.
const FORCE_ATTEMPTS: usize = 3;

/// The experiments a server runs, with what it learned about each flow
/// version. Cheap to clone.
#[derive(Clone, Default)]
pub struct Experiments {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    list: Vec<Experiment>,
    /// Per flow id, per version (a version never changes, so this never
    /// goes stale). Keyed by id alone so a lookup needs no allocation.
    usage: DashMap<String, Vec<(i32, Arc<FlowUsage>)>>,
}

impl std::fmt::Debug for Experiments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.inner.list.iter().map(|e| &e.id))
            .finish()
    }
}

/// What one advance did with experiments: handed from [`Experiments::prepare`]
/// to [`Experiments::record`].
#[derive(Debug, Default)]
pub struct Prepared {
    /// Indices (into the experiment list) whose variant this advance serves.
    applied: Vec<usize>,
}

impl Prepared {
    /// Whether the advance serves any experiment's variant.
    pub fn applies(&self) -> bool {
        !self.applied.is_empty()
    }
}

impl Experiments {
    pub fn new(list: Vec<Experiment>) -> Experiments {
        Experiments {
            inner: Arc::new(Inner {
                list,
                usage: DashMap::new(),
            }),
        }
    }

    pub fn list(&self) -> &[Experiment] {
        &self.inner.list
    }

    pub fn get(&self, id: &str) -> Option<&Experiment> {
        self.inner.list.iter().find(|e| e.id == id)
    }

    fn usage(&self, flow: &CompiledFlow) -> Arc<FlowUsage> {
        if let Some(versions) = self.inner.usage.get(flow.id.as_str())
            && let Some((_, u)) = versions.iter().find(|(v, _)| *v == flow.version)
        {
            return Arc::clone(u);
        }
        let usage = Arc::new(FlowUsage::analyze(flow, &self.inner.list));
        let mut versions = self.inner.usage.entry(flow.id.clone()).or_default();
        if !versions.iter().any(|(v, _)| *v == flow.version) {
            versions.push((flow.version, Arc::clone(&usage)));
        }
        usage
    }

    /// Before an advance of a new session: sets each experiment flag in
    /// `flag_values` to the session's variant, assigning one where needed.
    /// `context` is what eligibility sees. Returns the pins for
    /// `experiments` in the new session's context (to hand to
    /// [`Experiments::record_start`]).
    pub async fn prepare_start(
        &self,
        store: &Store,
        flags: &FlagSet,
        flow: &CompiledFlow,
        context: &Value,
        flag_values: &mut Map<String, Value>,
        now_ms: i64,
    ) -> Result<(Prepared, Map<String, Value>), StoreError> {
        let mut pins = Map::new();
        let prepared = self
            .prepare_inner(store, flags, flow, context, flag_values, &mut pins, now_ms)
            .await?;
        Ok((prepared, pins))
    }

    /// Before an advance of a running session: as
    /// [`Experiments::prepare_start`], on the state's own `flags` and
    /// `experiments` (the flags already evaluated for this advance).
    pub async fn prepare(
        &self,
        store: &Store,
        flags: &FlagSet,
        flow: &CompiledFlow,
        state: &mut SessionState,
        now_ms: i64,
    ) -> Result<Prepared, StoreError> {
        if self.inner.list.is_empty() || self.usage(flow).relevant.is_empty() {
            return Ok(Prepared::default());
        }
        let mut flag_values = take_object(&mut state.context, "flags");
        let mut pins = take_object(&mut state.context, "experiments");
        let result = self
            .prepare_inner(
                store,
                flags,
                flow,
                &state.context,
                &mut flag_values,
                &mut pins,
                now_ms,
            )
            .await;
        state.context["flags"] = Value::Object(flag_values);
        state.context["experiments"] = Value::Object(pins);
        result
    }

    #[allow(clippy::too_many_arguments)]
    async fn prepare_inner(
        &self,
        store: &Store,
        flags: &FlagSet,
        flow: &CompiledFlow,
        context: &Value,
        flag_values: &mut Map<String, Value>,
        pins: &mut Map<String, Value>,
        now_ms: i64,
    ) -> Result<Prepared, StoreError> {
        let mut prepared = Prepared::default();
        if self.inner.list.is_empty() {
            return Ok(prepared);
        }
        let usage = self.usage(flow);
        let user_id = context["user"]["id"].as_str().unwrap_or_default();
        let mut live = Vec::with_capacity(usage.relevant.len());
        for &i in &usage.relevant {
            let exp = &self.inner.list[i];
            // A missing or disabled flag (a kill switch) wins over the
            // experiment: the flow sees what the flag says, nothing is counted.
            let Some(flag) = flags.flags.get(exp.flag.as_str()).filter(|f| f.enabled) else {
                continue;
            };
            if !pins.contains_key(&exp.id) {
                if !exp.is_running_at(now_ms) {
                    continue;
                }
                let Some(pin) = assign(store, flags, exp, user_id, context).await? else {
                    continue;
                };
                pins.insert(exp.id.clone(), pin);
            }
            live.push((i, flag));
        }
        // Experiments sharing a flag (in disjoint namespace slices, say):
        // the flag gets the variant of the first that counts this user, or
        // else control from the first that does not.
        let counts = |i: usize| counts(&pins[&self.inner.list[i].id]);
        let mut served: Vec<&str> = Vec::new();
        for pass_counted in [true, false] {
            for &(i, flag) in &live {
                let exp = &self.inner.list[i];
                if counts(i) != pass_counted || served.contains(&exp.flag.as_str()) {
                    continue;
                }
                let variant = pins[&exp.id]["variant"].as_str().unwrap_or_default();
                if let Some(value) = flag.variants.get(variant) {
                    flag_values.insert(exp.flag.clone(), value.clone());
                    prepared.applied.push(i);
                    served.push(&exp.flag);
                }
            }
        }
        Ok(prepared)
    }

    /// After the engine started a session: puts the pins into its context
    /// and returns the exposure and conversion events of the advance.
    pub fn record_start(
        &self,
        flow: &CompiledFlow,
        prepared: &Prepared,
        advance: &mut Advance,
        pins: Map<String, Value>,
    ) -> Vec<NewEvent> {
        if prepared.applied.is_empty() {
            return Vec::new();
        }
        advance.state.context["experiments"] = Value::Object(pins);
        self.record(flow, prepared, advance)
    }

    /// After the engine advanced a session: marks the pins exposed or
    /// converted and returns the events to append (see the module docs).
    pub fn record(
        &self,
        flow: &CompiledFlow,
        prepared: &Prepared,
        advance: &mut Advance,
    ) -> Vec<NewEvent> {
        if prepared.applied.is_empty() {
            return Vec::new();
        }
        let usage = self.usage(flow);
        let moments = usage.moments(flow, &advance.events, &advance.state);
        let user = advance.state.context["user"]["id"].clone();
        let Some(pins) = advance
            .state
            .context
            .get_mut("experiments")
            .and_then(Value::as_object_mut)
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for &i in &prepared.applied {
            let exp = &self.inner.list[i];
            let Some(pin) = pins.get_mut(&exp.id).and_then(Value::as_object_mut) else {
                continue;
            };
            let counted = pin.get("source").and_then(Value::as_str) != Some(source::NOT_ELIGIBLE);
            if !counted {
                continue;
            }
            let forced = pin
                .get("source")
                .and_then(Value::as_str)
                .is_some_and(|s| s != source::ASSIGNED);
            let variant = pin.get("variant").cloned().unwrap_or(Value::Null);
            let mut exposed = pin.get("exposed").and_then(Value::as_bool) == Some(true);
            let mut converted = pin.get("converted").and_then(Value::as_bool) == Some(true);
            for moment in &moments {
                match moment {
                    Moment::Read { refs, node } if !exposed && refs.reads(&exp.flag) => {
                        exposed = true;
                        out.push(experiment_event(
                            EXPOSED, &exp.id, &variant, &user, forced, node,
                        ));
                    }
                    Moment::Entered(node)
                        if exposed && !converted && exp.is_goal(&flow.id, node) =>
                    {
                        converted = true;
                        out.push(experiment_event(
                            CONVERTED, &exp.id, &variant, &user, forced, node,
                        ));
                    }
                    _ => {}
                }
            }
            pin.insert("exposed".into(), Value::Bool(exposed));
            pin.insert("converted".into(), Value::Bool(converted));
        }
        out
    }

    /// Forces `variant` for a running session (or, with `None`, removes a
    /// forced variant so the session gets its assignment again): writes an
    /// `experiment_forced` / `experiment_unforced` event and the new pin,
    /// guarded by the session's `seq` like any advance. Returns whether a
    /// forced variant was removed (always `true` when forcing).
    pub async fn force_session(
        &self,
        store: &Store,
        flags: &FlagSet,
        experiment: &str,
        session_id: &str,
        variant: Option<&str>,
        forced_by: &str,
    ) -> Result<bool, ExperimentRunError> {
        let exp = self.checked(flags, experiment, variant)?;
        for _ in 0..FORCE_ATTEMPTS {
            let record = store.session(session_id).await?.ok_or_else(|| {
                ExperimentRunError::SessionNotFound {
                    session_id: session_id.to_owned(),
                }
            })?;
            let mut state: SessionState = serde_json::from_value(record.state)
                .map_err(|e| ExperimentRunError::Internal(e.to_string()))?;
            if state.status.is_terminal() {
                return Err(ExperimentRunError::SessionEnded {
                    session_id: session_id.to_owned(),
                    status: state.status.as_str(),
                });
            }
            let mut pins = take_object(&mut state.context, "experiments");
            let event = match variant {
                Some(variant) => {
                    pins.insert(exp.id.clone(), pin(variant, source::FORCED_SESSION));
                    // The screen shown now re-renders with the forced value.
                    if let Some(value) = flags
                        .flags
                        .get(exp.flag.as_str())
                        .and_then(|f| f.variants.get(variant))
                        && let Some(values) = state
                            .context
                            .get_mut("flags")
                            .and_then(Value::as_object_mut)
                    {
                        values.insert(exp.flag.clone(), value.clone());
                    }
                    NewEvent::new(
                        FORCED,
                        json!({"experiment": exp.id, "variant": variant, "by": forced_by}),
                    )
                }
                None => {
                    let was_forced = pins.get(&exp.id).and_then(|p| p["source"].as_str())
                        == Some(source::FORCED_SESSION);
                    if !was_forced {
                        return Ok(false);
                    }
                    // The next advance assigns again (and stays uncounted:
                    // the session was forced).
                    pins.remove(&exp.id);
                    NewEvent::new(UNFORCED, json!({"experiment": exp.id, "by": forced_by}))
                }
            };
            state.context["experiments"] = Value::Object(pins);
            match store
                .commit(
                    session_id,
                    record.seq,
                    state.status.as_str(),
                    &state,
                    &[event],
                    None,
                )
                .await
            {
                Ok(_) => return Ok(true),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ExperimentRunError::SessionBusy {
            session_id: session_id.to_owned(),
        })
    }

    /// Forces `variant` for `user_id`'s sessions that get their variant
    /// from now on; `None` removes it. Returns whether something changed
    /// (always `true` when forcing).
    pub async fn force_user(
        &self,
        store: &Store,
        flags: &FlagSet,
        experiment: &str,
        user_id: &str,
        variant: Option<&str>,
        forced_by: &str,
    ) -> Result<bool, ExperimentRunError> {
        let exp = self.checked(flags, experiment, variant)?;
        if user_id.is_empty() || user_id.len() > MAX_ID_BYTES {
            return Err(ExperimentRunError::TargetInvalid {
                message: format!("userId must be 1 to {MAX_ID_BYTES} bytes"),
            });
        }
        Ok(match variant {
            Some(variant) => {
                store
                    .experiment_force_user(&exp.id, user_id, variant, forced_by)
                    .await?;
                true
            }
            None => store.experiment_unforce_user(&exp.id, user_id).await?,
        })
    }

    /// The experiment, and that `variant` (if any) is one of its flag's.
    fn checked(
        &self,
        flags: &FlagSet,
        experiment: &str,
        variant: Option<&str>,
    ) -> Result<&Experiment, ExperimentRunError> {
        let exp = self
            .get(experiment)
            .ok_or_else(|| ExperimentRunError::NotFound {
                id: experiment.to_owned(),
                known: self.inner.list.iter().map(|e| e.id.clone()).collect(),
            })?;
        if let Some(variant) = variant {
            let variants: Vec<String> = flags
                .flags
                .get(exp.flag.as_str())
                .map(|f| f.variants.keys().cloned().collect())
                .unwrap_or_default();
            if !variants.iter().any(|v| v == variant) {
                return Err(ExperimentRunError::VariantUnknown {
                    id: exp.id.clone(),
                    variant: variant.to_owned(),
                    variants,
                });
            }
        }
        Ok(exp)
    }

    /// Results of `experiment` from the session log (see [`Report`]).
    pub async fn results(
        &self,
        store: &Store,
        flags: &FlagSet,
        experiment: &str,
    ) -> Result<Report, ExperimentRunError> {
        let exp = self.checked(flags, experiment, None)?;
        results_for(store, flags, exp).await
    }
}

/// Now, in Unix milliseconds (experiment schedules are in these).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Longest user id accepted for forcing (as `startFlow` accepts).
const MAX_ID_BYTES: usize = 200;

/// Results of one experiment: the statistics over users (the unit that is
/// randomized), plus session counts for reference.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub experiment: String,
    pub flag: String,
    /// The flag's current split, when it has one `fractional`.
    pub weights: Option<Vec<(String, f64)>>,
    /// Per arm (in the statistics' order): exposed and converted sessions.
    pub sessions: Vec<(String, i64, i64)>,
    pub results: Results,
}

/// Results of `exp` from the store's log, against the flag's current split.
pub async fn results_for(
    store: &Store,
    flags: &FlagSet,
    exp: &Experiment,
) -> Result<Report, ExperimentRunError> {
    let tally = store.experiment_tally(&exp.id).await?;
    let counts: Vec<ArmCounts> = tally
        .iter()
        .map(|t| {
            ArmCounts::new(
                &t.variant,
                u64::try_from(t.users_exposed).unwrap_or(0),
                u64::try_from(t.users_converted).unwrap_or(0),
            )
        })
        .collect();
    let weights = arm_weights(flags, &exp.flag);
    let results = analyze(&exp.control, &counts, weights.as_deref())
        .map_err(|e| ExperimentRunError::Internal(e.to_string()))?;
    let sessions = results
        .arms
        .iter()
        .map(|arm| {
            let t = tally.iter().find(|t| t.variant == arm.arm);
            (
                arm.arm.clone(),
                t.map_or(0, |t| t.sessions_exposed),
                t.map_or(0, |t| t.sessions_converted),
            )
        })
        .collect();
    Ok(Report {
        experiment: exp.id.clone(),
        flag: exp.flag.clone(),
        weights,
        sessions,
        results,
    })
}

fn pin(variant: &str, source: &str) -> Value {
    json!({"variant": variant, "source": source, "exposed": false, "converted": false})
}

fn take_object(context: &mut Value, key: &str) -> Map<String, Value> {
    match context.get_mut(key).map(Value::take) {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

fn experiment_event(
    kind: &str,
    experiment: &str,
    variant: &Value,
    user: &Value,
    forced: bool,
    node: &str,
) -> NewEvent {
    NewEvent::new(
        kind,
        json!({
            "experiment": experiment,
            "variant": variant,
            "user": user,
            "forced": forced,
            "node": node,
        }),
    )
}

/// The pin for a session without one, or `None` when the experiment does
/// not apply (the flag gives the user no variant).
async fn assign(
    store: &Store,
    flags: &FlagSet,
    exp: &Experiment,
    user_id: &str,
    context: &Value,
) -> Result<Option<Value>, StoreError> {
    let found = store.experiment_lookup(&exp.id, user_id).await?;
    if let Some(variant) = found.forced {
        return Ok(Some(pin(&variant, source::FORCED_USER)));
    }
    // Stickiness wins over eligibility: an assigned user stays assigned.
    if let Some(variant) = found.assigned {
        return Ok(Some(pin(&variant, source::ASSIGNED)));
    }
    if !exp.admits(user_id, context) {
        return Ok(Some(pin(&exp.control, source::NOT_ELIGIBLE)));
    }
    let Ok(ectx) = EvaluationContext::for_session(user_id, context, &["flags", "experiments"])
    else {
        return Ok(None);
    };
    let resolution = flags.evaluate(&exp.flag, &ectx);
    let Some(variant) = resolution.variant else {
        return Ok(None);
    };
    let stored = store.experiment_assign(&exp.id, user_id, variant).await?;
    Ok(Some(pin(&stored, source::ASSIGNED)))
}

// ---------------------------------------------------------------------------
// Which flags an advance used.

/// The flags something reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Refs {
    #[default]
    None,
    Keys(Vec<String>),
    /// Reads `flags` as a whole (or in a way not told apart).
    All,
}

impl Refs {
    fn reads(&self, key: &str) -> bool {
        match self {
            Refs::None => false,
            Refs::Keys(keys) => keys.iter().any(|k| k == key),
            Refs::All => true,
        }
    }

    fn add(&mut self, key: &str) {
        match self {
            Refs::All => {}
            Refs::None => *self = Refs::Keys(vec![key.to_owned()]),
            Refs::Keys(keys) => {
                if !keys.iter().any(|k| k == key) {
                    keys.push(key.to_owned());
                }
            }
        }
    }

    fn add_path(&mut self, path: &str) {
        let mut segs = path.split('.');
        if segs.next() != Some("flags") {
            return;
        }
        match segs.next() {
            None | Some("") => *self = Refs::All,
            Some(key) => self.add(key),
        }
    }
}

/// One step of an advance, in order: something read flags, or a node was
/// entered.
#[derive(Debug)]
enum Moment<'a> {
    Read { refs: &'a Refs, node: &'a str },
    Entered(&'a str),
}

/// What a flow version's rules and screens read, computed once.
#[derive(Debug, Default)]
struct FlowUsage {
    /// Experiments (indices) whose flag the flow reads anywhere.
    relevant: Vec<usize>,
    /// Per node, as `flow.nodes`.
    nodes: Vec<NodeUsage>,
}

#[derive(Debug, Default)]
struct NodeUsage {
    /// The templates of the screen (or end) as normally shown.
    render: Refs,
    /// …and as shown to a client that gets the fallback.
    render_fallback: Refs,
    /// Per action id, per edge.
    actions: Vec<(String, Vec<Refs>)>,
    /// Decision edges.
    edges: Vec<Refs>,
}

impl FlowUsage {
    fn analyze(flow: &CompiledFlow, experiments: &[Experiment]) -> FlowUsage {
        let edge_refs = |edges: &[CompiledEdge]| -> Vec<Refs> {
            edges
                .iter()
                .map(|e| {
                    let mut r = Refs::None;
                    if let Some(rule) = &e.when {
                        rule.var_paths().iter().for_each(|p| r.add_path(p));
                    }
                    r
                })
                .collect()
        };
        let nodes: Vec<NodeUsage> = flow
            .nodes
            .iter()
            .enumerate()
            .map(|(idx, node)| {
                let mut usage = NodeUsage::default();
                match &node.kind {
                    CompiledKind::Screen { actions, .. } => {
                        usage.actions = actions
                            .iter()
                            .map(|a| (a.id.clone(), edge_refs(&a.edges)))
                            .collect();
                    }
                    CompiledKind::Decision { edges }
                    | CompiledKind::Transform { next: edges, .. }
                    | CompiledKind::Call { next: edges, .. }
                    | CompiledKind::Wait { next: edges, .. }
                    | CompiledKind::Event { next: edges, .. }
                    | CompiledKind::Subflow { next: edges, .. } => usage.edges = edge_refs(edges),
                    CompiledKind::End { .. }
                    | CompiledKind::Approval { .. }
                    | CompiledKind::Return { .. } => {}
                }
                match flow.node_def(idx) {
                    NodeDef::Screen(s) => {
                        let mut doc = serde_json::to_value(s).unwrap_or_default();
                        let fallback = doc.as_object_mut().and_then(|o| o.remove("fallback"));
                        usage.render = template_refs(flow, &doc);
                        if let Some(fb) = fallback {
                            // Any of a list of fallbacks may be the one shown:
                            // their reads count together.
                            let list = match fb {
                                Value::Array(list) => list,
                                one => vec![one],
                            };
                            let mut shown = Vec::with_capacity(list.len());
                            for mut fb in list.into_iter().filter(Value::is_object) {
                                // A fallback replaces the title only when it has one.
                                if fb.get("title").is_none() {
                                    fb["title"] = doc.get("title").cloned().unwrap_or_default();
                                }
                                fb["actions"] = doc.get("actions").cloned().unwrap_or_default();
                                shown.push(fb);
                            }
                            usage.render_fallback = template_refs(flow, &Value::Array(shown));
                        }
                    }
                    NodeDef::End(e) => {
                        usage.render =
                            template_refs(flow, &serde_json::to_value(e).unwrap_or_default());
                    }
                    NodeDef::Decision(_) => {}
                    // A backend step shows its pending screen while it runs.
                    other => {
                        if let Some(p) = other.pending() {
                            usage.render =
                                template_refs(flow, &serde_json::to_value(p).unwrap_or_default());
                        }
                    }
                }
                usage
            })
            .collect();
        // The experiments whose flag something in the flow reads. Finer
        // than the flow's own `flag_keys`, which counts `flags['a-b']` in a
        // template as reading every flag: an experiment nothing reads gets
        // no assignment here.
        let reads = |flag: &str| {
            nodes.iter().any(|n: &NodeUsage| {
                n.render.reads(flag)
                    || n.render_fallback.reads(flag)
                    || n.actions.iter().flat_map(|(_, e)| e).any(|r| r.reads(flag))
                    || n.edges.iter().any(|r| r.reads(flag))
            })
        };
        let relevant = match flow.flag_keys {
            FlagRefs::None => Vec::new(),
            _ => experiments
                .iter()
                .enumerate()
                .filter(|(_, e)| reads(&e.flag))
                .map(|(i, _)| i)
                .collect(),
        };
        FlowUsage { relevant, nodes }
    }

    /// The advance's reads and entries, in order (see the module docs).
    fn moments<'a>(
        &'a self,
        flow: &'a CompiledFlow,
        events: &'a [Event],
        state: &SessionState,
    ) -> Vec<Moment<'a>> {
        let mut out = Vec::new();
        let context = &state.context;
        for (i, event) in events.iter().enumerate() {
            // Where the engine went from this event's node: the next entry.
            let next = || {
                events[i + 1..].iter().find_map(|e| match e {
                    Event::Entered { node, .. } => flow.node_index(node),
                    _ => None,
                })
            };
            match event {
                Event::Submitted { screen, action, .. } => {
                    let Some(idx) = flow.node_index(screen) else {
                        continue;
                    };
                    let CompiledKind::Screen { actions, .. } = &flow.nodes[idx].kind else {
                        continue;
                    };
                    let Some(pos) = actions.iter().position(|a| &a.id == action) else {
                        continue;
                    };
                    let refs = &self.nodes[idx].actions[pos].1;
                    let node = &flow.nodes[idx].id;
                    evaluated(&actions[pos].edges, refs, next(), context, node, &mut out);
                }
                Event::Entered { node, .. } => {
                    out.push(Moment::Entered(node));
                    let Some(idx) = flow.node_index(node) else {
                        continue;
                    };
                    // Decisions and transforms decide inline, as they are entered.
                    if let CompiledKind::Decision { edges }
                    | CompiledKind::Transform { next: edges, .. } = &flow.nodes[idx].kind
                    {
                        let refs = &self.nodes[idx].edges;
                        let node = &flow.nodes[idx].id;
                        evaluated(edges, refs, next(), context, node, &mut out);
                    }
                }
                // A backend step's edges are decided when it finishes.
                Event::StepCompleted { node, .. } => {
                    let Some(idx) = flow.node_index(node) else {
                        continue;
                    };
                    if let CompiledKind::Call { next: edges, .. }
                    | CompiledKind::Wait { next: edges, .. }
                    | CompiledKind::Event { next: edges, .. } = &flow.nodes[idx].kind
                    {
                        let refs = &self.nodes[idx].edges;
                        let node = &flow.nodes[idx].id;
                        evaluated(edges, refs, next(), context, node, &mut out);
                    }
                }
                _ => {}
            }
        }
        // The node the session rests on is rendered for the client.
        if let Some(idx) = flow.node_index(&state.node) {
            let usage = &self.nodes[idx];
            let refs = match flow.node_def(idx) {
                NodeDef::Screen(s) if s.fallback.is_some() => {
                    let shown = crate::engine::view::effective_components(flow, s, context)
                        .map_or(s.components.as_slice(), |(shown, _)| shown);
                    if std::ptr::eq(shown, s.components.as_slice()) {
                        &usage.render
                    } else {
                        &usage.render_fallback
                    }
                }
                _ => &usage.render,
            };
            out.push(Moment::Read {
                refs,
                node: &flow.nodes[idx].id,
            });
        }
        out
    }
}

/// The edges the engine evaluated, in order: up to the first that matches
/// (an edge without a rule always does). Which one matched is told by
/// where the engine went (`next`): an edge to elsewhere did not match, and
/// an edge to `next` did unless a later edge also leads there — only then
/// is its rule evaluated again (a rule that fails counts as matched: the
/// engine failed there too).
fn evaluated<'a>(
    edges: &[CompiledEdge],
    refs: &'a [Refs],
    next: Option<NodeIdx>,
    context: &Value,
    node: &'a str,
    out: &mut Vec<Moment<'a>>,
) {
    for (k, (edge, refs)) in edges.iter().zip(refs).enumerate() {
        out.push(Moment::Read { refs, node });
        let Some(rule) = &edge.when else {
            return;
        };
        if Some(edge.to) != next {
            continue;
        }
        if !edges[k + 1..].iter().any(|e| e.to == edge.to) {
            return;
        }
        if rule.matches(context).unwrap_or(true) {
            return;
        }
    }
}

/// The flags the templates in `doc` (a node definition as JSON) read.
/// minijinja reports `flags['a-b']` as a read of `flags` as a whole, so a
/// template that reads `flags` is looked at once more: when every mention of
/// `flags` in it is `flags.<key>` or `flags['<key>']`, those keys; else
/// every flag.
fn template_refs(flow: &CompiledFlow, doc: &Value) -> Refs {
    static MENTION: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r#"(^|[^A-Za-z0-9_.])flags\b(\s*\[\s*(?:'([^'\\]*)'|"([^"\\]*)")\s*\]|\.([A-Za-z_][A-Za-z0-9_]*))?"#)
            .expect("static regex")
    });
    let mut refs = Refs::None;
    let mut seen = HashSet::new();
    let mut stack = vec![doc];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(src) => {
                if !seen.insert(src.as_str()) {
                    continue;
                }
                let Some(template) = flow.template(src) else {
                    continue;
                };
                for var in template.variables() {
                    if var == "flags" {
                        for m in MENTION.captures_iter(src) {
                            match m.get(3).or(m.get(4)).or(m.get(5)) {
                                Some(key) => refs.add(key.as_str()),
                                None => refs = Refs::All,
                            }
                        }
                    } else {
                        refs.add_path(&var);
                    }
                }
            }
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => stack.extend(map.values()),
            _ => {}
        }
    }
    refs
}

/// Why an experiment operation (forcing, results) failed. Codes are stable.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentRunError {
    #[error("experiment `{id}` is not defined")]
    NotFound { id: String, known: Vec<String> },
    #[error("experiment `{id}` has no variant `{variant}` (its flag has: {})", variants.join(", "))]
    VariantUnknown {
        id: String,
        variant: String,
        variants: Vec<String>,
    },
    #[error("{message}")]
    TargetInvalid { message: String },
    #[error("session `{session_id}` not found")]
    SessionNotFound { session_id: String },
    #[error("session `{session_id}` has ended ({status})")]
    SessionEnded {
        session_id: String,
        status: &'static str,
    },
    #[error("session `{session_id}` kept changing; try again")]
    SessionBusy { session_id: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Internal(String),
}

impl ExperimentRunError {
    pub fn code(&self) -> Code {
        match self {
            ExperimentRunError::NotFound { .. } => Code::ExperimentNotFound,
            ExperimentRunError::VariantUnknown { .. } => Code::ExperimentVariantUnknown,
            ExperimentRunError::TargetInvalid { .. } => Code::ForceTargetInvalid,
            ExperimentRunError::SessionNotFound { .. } => Code::SessionNotFound,
            ExperimentRunError::SessionEnded { .. } => Code::SessionEnded,
            ExperimentRunError::SessionBusy { .. } => Code::SessionBusy,
            ExperimentRunError::Store(_) | ExperimentRunError::Internal(_) => Code::Internal,
        }
    }

    pub fn hint(&self) -> Option<String> {
        Some(match self {
            ExperimentRunError::NotFound { known, .. } if known.is_empty() => {
                "no experiments are loaded (files in --experiments)".into()
            }
            ExperimentRunError::NotFound { known, .. } => {
                format!("defined experiments: {}", known.join(", "))
            }
            ExperimentRunError::VariantUnknown { variants, .. } => {
                format!("use one of: {}", variants.join(", "))
            }
            ExperimentRunError::TargetInvalid { .. } => {
                "give exactly one of `userId` and `sessionId`".into()
            }
            ExperimentRunError::SessionNotFound { .. } => "check the session id".into(),
            ExperimentRunError::SessionEnded { .. } => {
                "force the variant for the user, or start a new session".into()
            }
            ExperimentRunError::SessionBusy { .. } => "retry".into(),
            ExperimentRunError::Store(_) | ExperimentRunError::Internal(_) => return None,
        })
    }

    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            ExperimentRunError::Store(_) | ExperimentRunError::Internal(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_from_paths() {
        let mut r = Refs::None;
        r.add_path("user.id");
        assert_eq!(r, Refs::None);
        r.add_path("flags.a.b");
        r.add_path("flags.a");
        assert!(r.reads("a") && !r.reads("b"));
        r.add_path("flags");
        assert!(r.reads("b"));
    }
}

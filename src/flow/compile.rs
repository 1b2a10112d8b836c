//! Compilation: a validated [`FlowDef`] becomes an immutable [`CompiledFlow`]
//! with every rule, template and pattern compiled once, and edges resolved
//! to node indices. A compiled flow version is shared behind an `Arc` by
//! every session pinned to it and never changes.

use std::collections::HashMap;
use std::time::Duration;

use regex::Regex;

use super::compose::{Composition, children_of, scope_of};
use super::error::FlowError;
use super::model::{ComponentDef, FlowDef, NodeDef, Outcome, Text, walk_components};
use super::policy::Policy;
use super::steps::{HttpStep, StepKind, parse_duration};
use super::template::Template;
use super::validate;
use crate::rules::Rule;

pub type NodeIdx = usize;

/// One flow version, ready for the engine.
#[derive(Debug)]
pub struct CompiledFlow {
    pub id: String,
    pub version: i32,
    pub hash: String,
    pub def: FlowDef,
    pub start: NodeIdx,
    pub nodes: Vec<CompiledNode>,
    index: HashMap<String, NodeIdx>,
    /// Compiled templates keyed by their source text: one compile per
    /// distinct string, looked up while rendering the model's `Text`s.
    templates: HashMap<String, Template>,
    /// Input patterns, anchored, keyed by their source.
    patterns: HashMap<String, Regex>,
    /// Components' `visible_when` rules, keyed by their JSON text (only
    /// guarded components pay for the lookup).
    guards: HashMap<String, Rule>,
    /// Flags the flow's rules and templates read (`flags.<key>`), which the
    /// service evaluates for the session before each advance.
    pub flag_keys: FlagRefs,
    /// The flow-level `on_error` target.
    pub on_error: Option<NodeIdx>,
    /// Mock scenarios the steps declare, for checking a session's choice.
    pub mock_scenarios: std::collections::BTreeSet<String>,
    /// The flows this flow's own subflow nodes run.
    pub children: Vec<String>,
    /// Inlined children, by the composed id of their subflow node.
    pub scopes: HashMap<String, CompiledScope>,
}

/// Which flags a flow reads.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum FlagRefs {
    /// None: no flag evaluation at all.
    #[default]
    None,
    /// These keys (`flags.<key>` paths).
    Keys(Vec<String>),
    /// Every flag (a template reads `flags` as a whole, e.g. `flags['a-b']`).
    All,
}

impl FlagRefs {
    fn add_path(&mut self, path: &str) {
        let mut segs = path.split('.');
        if segs.next() != Some("flags") {
            return;
        }
        match segs.next() {
            None | Some("") => *self = FlagRefs::All,
            Some(key) => match self {
                FlagRefs::All => {}
                FlagRefs::None => *self = FlagRefs::Keys(vec![key.to_string()]),
                FlagRefs::Keys(keys) => {
                    if !keys.iter().any(|k| k == key) {
                        keys.push(key.to_string());
                    }
                }
            },
        }
    }
}

#[derive(Debug)]
pub struct CompiledNode {
    pub id: String,
    pub kind: CompiledKind,
}

#[derive(Debug)]
pub enum CompiledKind {
    Screen {
        actions: Vec<CompiledAction>,
        min_app_version: Option<semver::Version>,
    },
    Decision {
        edges: Vec<CompiledEdge>,
    },
    End {
        outcome: Outcome,
    },
    /// A step that calls out: an `http` step (one call), a `parallel` one
    /// (a call per branch) or an `llm` one (its endpoint's calls, with the
    /// answer's schema compiled).
    Call {
        next: Vec<CompiledEdge>,
        on_error: Option<NodeIdx>,
        on_timeout: Option<NodeIdx>,
        /// Where the outcome `review` goes (an `llm` judge's rejection).
        on_review: Option<NodeIdx>,
        calls: Vec<CompiledCall>,
        answer_schema: Option<Box<jsonschema::Validator>>,
        /// The task kind that runs it.
        step: StepKind,
    },
    Transform {
        set: Vec<(String, Computed)>,
        next: Vec<CompiledEdge>,
    },
    Wait {
        next: Vec<CompiledEdge>,
        /// `duration`, parsed once here.
        delay: Option<Duration>,
    },
    Approval {
        outcomes: Vec<(String, NodeIdx)>,
        on_timeout: Option<NodeIdx>,
        /// `due`.
        deadline: Option<Duration>,
    },
    Event {
        next: Vec<CompiledEdge>,
        on_timeout: Option<NodeIdx>,
        /// `timeout`.
        deadline: Option<Duration>,
    },
    /// Enters a child flow, inlined by [`super::compose`].
    Subflow {
        params: Vec<(String, Computed)>,
        next: Vec<CompiledEdge>,
        on_abandoned: Option<NodeIdx>,
        on_error: Option<NodeIdx>,
        /// The child's start; `None` when the flow was compiled on its own
        /// (a version's page, a diff), without its children.
        enter: Option<NodeIdx>,
    },
    /// A child flow's `end`: back to the subflow node that entered it.
    Return {
        outcome: Outcome,
        subflow: NodeIdx,
    },
}

/// A child flow inlined into a session's graph.
#[derive(Debug)]
pub struct CompiledScope {
    pub flow_id: String,
    pub version: i32,
    /// Where a failure inside the child goes when its step has no edge.
    pub on_error: NodeIdx,
}

/// An upstream call as the orchestrator makes it: an `http` step, or a
/// branch of a `parallel` step as one, with its policy resolved.
#[derive(Debug)]
pub struct CompiledCall {
    pub step: HttpStep,
    pub policy: Policy,
}

impl CompiledCall {
    fn of(step: HttpStep) -> CompiledCall {
        CompiledCall {
            policy: Policy::of(&step),
            step,
        }
    }
}

impl CompiledKind {
    /// Every rule-guarded edge leaving this node.
    fn edges(&self) -> Vec<&CompiledEdge> {
        match self {
            CompiledKind::Screen { actions, .. } => actions.iter().flat_map(|a| &a.edges).collect(),
            CompiledKind::Decision { edges }
            | CompiledKind::Call { next: edges, .. }
            | CompiledKind::Transform { next: edges, .. }
            | CompiledKind::Wait { next: edges, .. }
            | CompiledKind::Event { next: edges, .. }
            | CompiledKind::Subflow { next: edges, .. } => edges.iter().collect(),
            CompiledKind::End { .. }
            | CompiledKind::Approval { .. }
            | CompiledKind::Return { .. } => Vec::new(),
        }
    }
}

/// One value a `transform` computes.
#[derive(Debug)]
pub enum Computed {
    Rule(Rule),
    /// A template source (compiled in the flow's template table).
    Template(String),
    Literal(serde_json::Value),
}

#[derive(Debug)]
pub struct CompiledAction {
    pub id: String,
    pub validate: bool,
    pub edges: Vec<CompiledEdge>,
}

#[derive(Debug)]
pub struct CompiledEdge {
    pub when: Option<Rule>,
    pub to: NodeIdx,
}

impl CompiledFlow {
    /// Compiles a flow that passed validation. Anything validation should
    /// have caught still fails cleanly here (a flow loaded from the store
    /// was validated by an older build, and must not panic this one).
    pub fn compile(def: FlowDef, version: i32, hash: String) -> Result<CompiledFlow, FlowError> {
        CompiledFlow::compile_composed(
            Composition {
                def,
                scopes: Default::default(),
            },
            version,
            hash,
        )
    }

    /// [`CompiledFlow::compile`] for a flow with its subflows inlined.
    pub fn compile_composed(
        composition: Composition,
        version: i32,
        hash: String,
    ) -> Result<CompiledFlow, FlowError> {
        let Composition { def, scopes } = composition;
        let index: HashMap<String, NodeIdx> = def
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id().to_string(), i))
            .collect();
        let resolve = |to: &str, node: &str| -> Result<NodeIdx, FlowError> {
            index.get(to).copied().ok_or_else(|| FlowError::Compile {
                flow: def.id.clone(),
                message: format!("node `{node}` has an edge to unknown node `{to}`"),
            })
        };
        let compile_edges =
            |edges: &super::model::Edges, node: &str| -> Result<Vec<CompiledEdge>, FlowError> {
                edges
                    .to_list()
                    .iter()
                    .map(|e| {
                        let when = match &e.when {
                            Some(rule) => {
                                Some(Rule::compile(rule).map_err(|err| FlowError::Compile {
                                    flow: def.id.clone(),
                                    message: format!("node `{node}`: rule does not compile: {err}"),
                                })?)
                            }
                            None => None,
                        };
                        Ok(CompiledEdge {
                            when,
                            to: resolve(&e.to, node)?,
                        })
                    })
                    .collect()
            };

        let resolve_opt = |to: &Option<String>, node: &str| -> Result<Option<NodeIdx>, FlowError> {
            to.as_deref().map(|t| resolve(t, node)).transpose()
        };
        // Validation reports a bad duration with its place; a flow compiled
        // without it still fails here rather than on every advance.
        let duration = |d: &Option<String>, node: &str| -> Result<Option<Duration>, FlowError> {
            d.as_deref()
                .map(|d| {
                    parse_duration(d).map_err(|e| FlowError::Compile {
                        flow: def.id.clone(),
                        message: format!("node `{node}`: duration `{d}`: {e}"),
                    })
                })
                .transpose()
        };
        // A transform's `set` and a subflow's `params`; their templates go
        // to `raw_templates` at the call.
        let computed = |set: &std::collections::BTreeMap<String, serde_json::Value>,
                        node: &str|
         -> Result<Vec<(String, Computed)>, FlowError> {
            set.iter()
                .map(|(key, value)| {
                    let c =
                        match value {
                            serde_json::Value::Object(_) => Computed::Rule(
                                Rule::compile(value).map_err(|err| FlowError::Compile {
                                    flow: def.id.clone(),
                                    message: format!(
                                        "node `{node}`: rule for `{key}` does not compile: {err}"
                                    ),
                                })?,
                            ),
                            serde_json::Value::String(src) => Computed::Template(src.clone()),
                            other => Computed::Literal(other.clone()),
                        };
                    Ok((key.clone(), c))
                })
                .collect()
        };
        let mut nodes = Vec::with_capacity(def.nodes.len());
        let mut flag_keys = FlagRefs::None;
        let mut texts: Vec<&Text> = Vec::new();
        let mut pattern_sources: Vec<&str> = Vec::new();
        // Templates that are plain strings in the model (URLs, headers…).
        let mut raw_templates: Vec<&str> = Vec::new();
        for node in &def.nodes {
            let kind = match node {
                NodeDef::Screen(s) => {
                    texts.extend(s.title.iter());
                    collect_all(&s.components, &mut texts, &mut pattern_sources);
                    for fb in s.fallback.iter().flat_map(|f| f.list()) {
                        texts.extend(fb.title.iter());
                        collect_all(&fb.components, &mut texts, &mut pattern_sources);
                    }
                    let mut actions = Vec::with_capacity(s.actions.len());
                    for a in &s.actions {
                        texts.extend(a.label.iter());
                        actions.push(CompiledAction {
                            id: a.id.clone(),
                            validate: a.validate,
                            edges: compile_edges(&a.next, &s.id)?,
                        });
                    }
                    let min_app_version = match &s.min_app_version {
                        Some(v) => Some(lenient_semver(v).ok_or_else(|| FlowError::Compile {
                            flow: def.id.clone(),
                            message: format!(
                                "screen `{}`: min_app_version `{v}` is not a version",
                                s.id
                            ),
                        })?),
                        None => None,
                    };
                    CompiledKind::Screen {
                        actions,
                        min_app_version,
                    }
                }
                NodeDef::Decision(d) => CompiledKind::Decision {
                    edges: compile_edges(&d.next, &d.id)?,
                },
                NodeDef::End(e) => {
                    texts.extend(e.title.iter());
                    collect_all(&e.components, &mut texts, &mut pattern_sources);
                    // A child's end returns to the subflow node that holds it.
                    match scope_of(&e.id) {
                        Some(at) if scopes.contains_key(at) => CompiledKind::Return {
                            outcome: e.outcome,
                            subflow: resolve(at, &e.id)?,
                        },
                        _ => CompiledKind::End { outcome: e.outcome },
                    }
                }
                NodeDef::Subflow(f) => {
                    raw_templates.extend(f.params.values().filter_map(serde_json::Value::as_str));
                    CompiledKind::Subflow {
                        params: computed(&f.params, &f.id)?,
                        next: compile_edges(&f.next, &f.id)?,
                        on_abandoned: resolve_opt(&f.on_abandoned, &f.id)?,
                        on_error: resolve_opt(&f.on_error, &f.id)?,
                        enter: scopes
                            .get(&f.id)
                            .map(|scope| resolve(&scope.start, &f.id))
                            .transpose()?,
                    }
                }
                NodeDef::Http(h) => {
                    collect_pending(node, &mut texts, &mut pattern_sources);
                    raw_templates.push(&h.url);
                    raw_templates.extend(h.headers.values().map(String::as_str));
                    if let Some(body) = &h.body {
                        collect_json_strings(body, &mut raw_templates);
                    }
                    CompiledKind::Call {
                        next: compile_edges(&h.next, &h.id)?,
                        on_error: resolve_opt(&h.on_error, &h.id)?,
                        on_timeout: resolve_opt(&h.on_timeout, &h.id)?,
                        on_review: None,
                        calls: vec![CompiledCall::of(h.clone())],
                        answer_schema: None,
                        step: StepKind::Http,
                    }
                }
                NodeDef::Transform(t) => {
                    raw_templates.extend(t.set.values().filter_map(serde_json::Value::as_str));
                    let set = computed(&t.set, &t.id)?;
                    CompiledKind::Transform {
                        set,
                        next: compile_edges(&t.next, &t.id)?,
                    }
                }
                NodeDef::Wait(w) => {
                    collect_pending(node, &mut texts, &mut pattern_sources);
                    raw_templates.extend(w.until.as_deref());
                    CompiledKind::Wait {
                        next: compile_edges(&w.next, &w.id)?,
                        delay: duration(&w.duration, &w.id)?,
                    }
                }
                NodeDef::Approval(a) => {
                    collect_pending(node, &mut texts, &mut pattern_sources);
                    texts.extend(a.title.iter());
                    collect_all(&a.fields, &mut texts, &mut pattern_sources);
                    let mut outcomes = Vec::with_capacity(a.outcomes.len());
                    for (name, to) in &a.outcomes {
                        outcomes.push((name.clone(), resolve(to, &a.id)?));
                    }
                    CompiledKind::Approval {
                        outcomes,
                        on_timeout: resolve_opt(&a.on_timeout, &a.id)?,
                        deadline: duration(&a.due, &a.id)?,
                    }
                }
                NodeDef::Parallel(p) => {
                    collect_pending(node, &mut texts, &mut pattern_sources);
                    for b in &p.branches {
                        raw_templates.push(&b.url);
                        raw_templates.extend(b.headers.values().map(String::as_str));
                        if let Some(body) = &b.body {
                            collect_json_strings(body, &mut raw_templates);
                        }
                    }
                    CompiledKind::Call {
                        next: compile_edges(&p.next, &p.id)?,
                        on_error: resolve_opt(&p.on_error, &p.id)?,
                        on_timeout: resolve_opt(&p.on_timeout, &p.id)?,
                        calls: p
                            .branches
                            .iter()
                            .map(|b| CompiledCall::of(b.as_step()))
                            .collect(),
                        on_review: None,
                        answer_schema: None,
                        step: StepKind::Http,
                    }
                }
                NodeDef::Llm(l) => {
                    collect_pending(node, &mut texts, &mut pattern_sources);
                    raw_templates.push(&l.prompt);
                    raw_templates.extend(l.system.as_deref());
                    raw_templates.extend(l.judge.as_ref().map(|j| j.prompt.as_str()));
                    let schema =
                        jsonschema::validator_for(&l.schema).map_err(|e| FlowError::Compile {
                            flow: def.id.clone(),
                            message: format!("node `{}`: `schema` is not a JSON Schema: {e}", l.id),
                        })?;
                    CompiledKind::Call {
                        next: compile_edges(&l.next, &l.id)?,
                        on_error: resolve_opt(&l.on_error, &l.id)?,
                        on_timeout: resolve_opt(&l.on_timeout, &l.id)?,
                        on_review: resolve_opt(&l.review, &l.id)?,
                        calls: vec![CompiledCall::of(l.as_call())],
                        answer_schema: Some(Box::new(schema)),
                        step: StepKind::Llm,
                    }
                }
                NodeDef::Event(e) => {
                    collect_pending(node, &mut texts, &mut pattern_sources);
                    raw_templates.push(&e.correlation);
                    CompiledKind::Event {
                        next: compile_edges(&e.next, &e.id)?,
                        on_timeout: resolve_opt(&e.on_timeout, &e.id)?,
                        deadline: duration(&e.timeout, &e.id)?,
                    }
                }
            };
            nodes.push(CompiledNode {
                id: node.id().to_string(),
                kind,
            });
        }

        let mut templates = HashMap::new();
        let sources = texts
            .iter()
            .flat_map(|t| t.sources().into_iter().map(|(_, src)| src))
            .chain(raw_templates.iter().copied());
        {
            for src in sources {
                if templates.contains_key(src) {
                    continue;
                }
                let t = Template::compile(src).map_err(|err| FlowError::Compile {
                    flow: def.id.clone(),
                    message: format!("template `{src}` does not compile: {err}"),
                })?;
                for var in t.variables() {
                    flag_keys.add_path(&var);
                }
                templates.insert(src.to_string(), t);
            }
        }
        for node in &nodes {
            for rule in node.kind.edges().iter().filter_map(|e| e.when.as_ref()) {
                for path in rule.var_paths() {
                    flag_keys.add_path(&path);
                }
            }
            if let CompiledKind::Transform { set, .. } | CompiledKind::Subflow { params: set, .. } =
                &node.kind
            {
                for (_, computed) in set {
                    if let Computed::Rule(rule) = computed {
                        for path in rule.var_paths() {
                            flag_keys.add_path(&path);
                        }
                    }
                }
            }
        }
        // Component guards, and the patterns of custom components' inputs.
        let mut guards = HashMap::new();
        for tree in def.nodes.iter().flat_map(NodeDef::component_trees) {
            walk_components(tree, "", &mut |c, _| {
                if let ComponentDef::Custom {
                    inputs: Some(inputs),
                    ..
                } = c
                {
                    pattern_sources.extend(inputs.iter().filter_map(|i| i.pattern.as_deref()));
                }
            });
        }
        for tree in def.nodes.iter().flat_map(NodeDef::component_trees) {
            let mut rules = Vec::new();
            walk_components(tree, "", &mut |c, _| {
                if let Some(rule @ serde_json::Value::Object(_)) = c.visible_when() {
                    rules.push(rule);
                }
            });
            for rule in rules {
                let key = rule.to_string();
                if guards.contains_key(&key) {
                    continue;
                }
                let compiled = Rule::compile(rule).map_err(|err| FlowError::Compile {
                    flow: def.id.clone(),
                    message: format!("visible_when rule does not compile: {err}"),
                })?;
                for path in compiled.var_paths() {
                    flag_keys.add_path(&path);
                }
                guards.insert(key, compiled);
            }
        }
        let mut patterns = HashMap::new();
        for src in pattern_sources {
            let re = validate::compile_input_pattern(src).map_err(|err| FlowError::Compile {
                flow: def.id.clone(),
                message: format!("pattern `{src}` does not compile: {err}"),
            })?;
            patterns.insert(src.to_string(), re);
        }

        let start = resolve(&def.start, "start")?;
        let on_error = resolve_opt(&def.on_error, "on_error")?;
        let scopes = scopes
            .into_iter()
            .map(|(at, scope)| {
                let on_error = resolve(&scope.on_error, &at)?;
                Ok((
                    at,
                    CompiledScope {
                        flow_id: scope.flow_id,
                        version: scope.version,
                        on_error,
                    },
                ))
            })
            .collect::<Result<_, FlowError>>()?;
        Ok(CompiledFlow {
            on_error,
            children: children_of(&def),
            scopes,
            mock_scenarios: def.mock_scenarios(),
            id: def.id.clone(),
            version,
            hash,
            def,
            start,
            nodes,
            index,
            templates,
            patterns,
            guards,
            flag_keys,
        })
    }

    /// The compiled form of a component's `visible_when` rule.
    pub fn guard(&self, rule: &serde_json::Value) -> Option<&Rule> {
        self.guards.get(&rule.to_string())
    }

    /// Where a failed step at `idx` goes when it has no edge of its own:
    /// the `on_error` of the flow the node belongs to.
    pub fn on_error_at(&self, idx: NodeIdx) -> Option<NodeIdx> {
        match scope_of(&self.nodes[idx].id) {
            Some(at) => self.scopes.get(at).map(|s| s.on_error),
            None => self.on_error,
        }
    }

    pub fn node_index(&self, id: &str) -> Option<NodeIdx> {
        self.index.get(id).copied()
    }

    /// The source definition of node `idx`.
    pub fn node_def(&self, idx: NodeIdx) -> &NodeDef {
        &self.def.nodes[idx]
    }

    pub fn template(&self, source: &str) -> Option<&Template> {
        self.templates.get(source)
    }

    pub fn pattern(&self, source: &str) -> Option<&Regex> {
        self.patterns.get(source)
    }
}

fn collect_pending<'a>(node: &'a NodeDef, texts: &mut Vec<&'a Text>, patterns: &mut Vec<&'a str>) {
    if let Some(p) = node.pending() {
        texts.extend(p.title.iter());
        collect_all(&p.components, texts, patterns);
    }
}

/// Every string inside a JSON value (an HTTP body's templates).
pub fn collect_json_strings<'a>(value: &'a serde_json::Value, out: &mut Vec<&'a str>) {
    match value {
        serde_json::Value::String(s) => out.push(s),
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_json_strings(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| collect_json_strings(v, out)),
        _ => {}
    }
}

fn collect_all<'a>(
    components: &'a [ComponentDef],
    texts: &mut Vec<&'a Text>,
    patterns: &mut Vec<&'a str>,
) {
    for c in components {
        collect_texts(c, texts, patterns);
        collect_all(c.children(), texts, patterns);
    }
}

fn collect_texts<'a>(c: &'a ComponentDef, texts: &mut Vec<&'a Text>, patterns: &mut Vec<&'a str>) {
    match c {
        ComponentDef::Text { text, .. }
        | ComponentDef::Heading { text, .. }
        | ComponentDef::Markdown { text, .. } => texts.push(text),
        ComponentDef::Image { url, alt, .. } => {
            texts.push(url);
            texts.extend(alt.iter());
        }
        ComponentDef::TextInput {
            label,
            placeholder,
            pattern,
            pattern_message,
            ..
        } => {
            texts.push(label);
            texts.extend(placeholder.iter());
            texts.extend(pattern_message.iter());
            patterns.extend(pattern.as_deref());
        }
        ComponentDef::EmailInput {
            label, placeholder, ..
        } => {
            texts.push(label);
            texts.extend(placeholder.iter());
        }
        ComponentDef::NumberInput { label, .. }
        | ComponentDef::Checkbox { label, .. }
        | ComponentDef::Date { label, .. }
        | ComponentDef::Button { label, .. } => texts.push(label),
        ComponentDef::Select { label, options, .. } => {
            texts.push(label);
            texts.extend(options.iter().map(|o| &o.label));
        }
        ComponentDef::Card { title, .. } => texts.extend(title.iter()),
        ComponentDef::List { .. } | ComponentDef::Stack { .. } | ComponentDef::Custom { .. } => {}
    }
}

/// Parses app versions the way apps report them: what
/// [`validate::parse_app_version`] accepts, plus a `v` prefix and trailing
/// build noise such as `5.2.1 (1234)`.
pub fn lenient_semver(raw: &str) -> Option<semver::Version> {
    let s = raw.trim().trim_start_matches(['v', 'V']);
    let s = s.split_whitespace().next()?;
    if s.split(['-', '+'])
        .next()?
        .split('.')
        .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    validate::parse_app_version(s)
}

#[cfg(test)]
mod tests {
    use super::lenient_semver;

    #[test]
    fn flag_references_are_collected() {
        use super::FlagRefs;
        let mut refs = FlagRefs::None;
        refs.add_path("user.attributes.plan");
        assert_eq!(refs, FlagRefs::None);
        refs.add_path("flags.a");
        refs.add_path("flags.b.deep");
        refs.add_path("flags.a");
        assert_eq!(refs, FlagRefs::Keys(vec!["a".into(), "b".into()]));
        refs.add_path("flags");
        assert_eq!(refs, FlagRefs::All);
        refs.add_path("flags.c");
        assert_eq!(refs, FlagRefs::All);
    }

    #[test]
    fn lenient_versions() {
        assert_eq!(lenient_semver("5.2").unwrap().to_string(), "5.2.0");
        assert_eq!(lenient_semver("v5").unwrap().to_string(), "5.0.0");
        assert_eq!(lenient_semver("5.2.1 (1234)").unwrap().to_string(), "5.2.1");
        assert_eq!(
            lenient_semver("5.2-beta.1").unwrap().to_string(),
            "5.2.0-beta.1"
        );
        assert!(lenient_semver("five").is_none());
        assert!(lenient_semver("").is_none());
        assert!(lenient_semver("1.2.3.4").is_none());
    }
}

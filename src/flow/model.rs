//! The flow file format: what a product manager writes in `flows/*.yaml`.
//!
//! These types are the single source of `schema/flow.schema.json` (via
//! `schemars`), so every field carries a doc comment that editors show as
//! a hint. Parsing is strict (`deny_unknown_fields`): a typo in a flow file
//! is an error with a JSON path, never a silently ignored key.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use super::steps::{
    ApprovalStep, EventStep, HttpStep, LlmStep, ParallelStep, PendingDef, SubflowStep,
    TransformStep, WaitStep,
};

/// A flow: a directed graph of nodes that a user walks through.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowDef {
    /// Stable identifier used by `startFlow(flowId:)`. Lowercase letters,
    /// digits, `_` and `-`.
    pub id: String,
    /// Human-readable name shown in tooling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Free-form description for the people who maintain the flow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Id of the node a new session starts at.
    pub start: String,
    /// Every node of the flow. Ids are unique within the flow.
    pub nodes: Vec<NodeDef>,
    /// Where a backend step that fails (or times out) without its own
    /// `on_error` / `on_timeout` goes. Default: the session fails and the
    /// client gets a generic error screen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<String>,
}

impl FlowDef {
    /// The mock scenarios the flow's steps declare (`mock.scenarios` keys
    /// of every step, branch included), sorted. `default` (the steps'
    /// default mocks) is always there.
    pub fn mock_scenarios(&self) -> std::collections::BTreeSet<String> {
        fn collect(v: &Value, out: &mut std::collections::BTreeSet<String>) {
            match v {
                Value::Object(map) => {
                    if let Some(Value::Object(scenarios)) =
                        map.get("mock").and_then(|m| m.get("scenarios"))
                    {
                        out.extend(scenarios.keys().cloned());
                    }
                    map.values().for_each(|c| collect(c, out));
                }
                Value::Array(items) => items.iter().for_each(|c| collect(c, out)),
                _ => {}
            }
        }
        let mut out = std::collections::BTreeSet::from(["default".to_owned()]);
        if let Ok(json) = serde_json::to_value(self) {
            collect(&json, &mut out);
        }
        out
    }
}

/// One node of the graph; `kind` selects which.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NodeDef {
    /// UI sent to the client; waits for one of its actions.
    Screen(ScreenNode),
    /// Pure branching, evaluated inline without a round trip.
    Decision(DecisionNode),
    /// Terminal node with an outcome.
    End(EndNode),
    /// Call an upstream HTTP API (retries, timeouts, circuit breaker).
    Http(HttpStep),
    /// Compute values into `steps.<id>`; no I/O, evaluated inline.
    Transform(TransformStep),
    /// A durable timer.
    Wait(WaitStep),
    /// A human task decided by a reviewer.
    Approval(ApprovalStep),
    /// Wait for a named external event matched by a correlation key.
    Event(EventStep),
    /// Several HTTP calls at once, joined.
    Parallel(ParallelStep),
    /// Ask a language model for JSON matching a schema (repair, judge).
    Llm(LlmStep),
    /// Run another flow as part of this session.
    Subflow(SubflowStep),
}

/// Every node kind once: its `NodeDef` variant, the struct it reads and
/// its name in a flow file. What only differs by kind in name, id and
/// parsing comes from here; [`NodeDef::role`] classifies kinds for the code
/// that treats kinds alike.
macro_rules! node_kinds {
    ($($variant:ident($ty:ty) = $name:literal),* $(,)?) => {
        /// Every node kind, as `kind:` names it.
        pub const NODE_KINDS: &[&str] = &[$($name),*];

        impl NodeDef {
            pub fn id(&self) -> &str {
                match self {
                    $(NodeDef::$variant(n) => &n.id,)*
                }
            }

            pub fn id_mut(&mut self) -> &mut String {
                match self {
                    $(NodeDef::$variant(n) => &mut n.id,)*
                }
            }

            pub fn kind(&self) -> &'static str {
                match self {
                    $(NodeDef::$variant(_) => $name,)*
                }
            }

            /// Why `fields` (a node without its `kind`) does not read as a
            /// node of kind `kind`: `None` for an unknown kind, `Some(None)`
            /// when it reads.
            pub fn probe(
                kind: &str,
                fields: &Value,
            ) -> Option<Option<serde_path_to_error::Error<serde_json::Error>>> {
                match kind {
                    $($name => Some(serde_path_to_error::deserialize::<_, $ty>(fields).err()),)*
                    _ => None,
                }
            }
        }
    };
}

node_kinds! {
    Screen(ScreenNode) = "screen",
    Decision(DecisionNode) = "decision",
    End(EndNode) = "end",
    Http(HttpStep) = "http",
    Transform(TransformStep) = "transform",
    Wait(WaitStep) = "wait",
    Approval(ApprovalStep) = "approval",
    Event(EventStep) = "event",
    Parallel(ParallelStep) = "parallel",
    Llm(LlmStep) = "llm",
    Subflow(SubflowStep) = "subflow",
}

/// The part a node kind plays in a session. Code that treats kinds alike
/// (rendering, the compatibility walk, validation's graph checks) matches
/// on this, so a new kind is classified once, in [`NodeDef::role`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Shown to the user; waits for one of its actions.
    Screen,
    /// Branches inline, stores nothing.
    Decision,
    /// Ends the session.
    End,
    /// Runs inline and stores `steps.<id>` (`transform`, `subflow`).
    Inline,
    /// Parks the session on a durable task until its work finishes.
    Task,
}

impl NodeDef {
    pub fn role(&self) -> Role {
        match self {
            NodeDef::Screen(_) => Role::Screen,
            NodeDef::Decision(_) => Role::Decision,
            NodeDef::End(_) => Role::End,
            NodeDef::Transform(_) | NodeDef::Subflow(_) => Role::Inline,
            NodeDef::Http(_)
            | NodeDef::Wait(_)
            | NodeDef::Approval(_)
            | NodeDef::Event(_)
            | NodeDef::Parallel(_)
            | NodeDef::Llm(_) => Role::Task,
        }
    }

    /// Backend steps that park the session until work finishes.
    pub fn is_async_step(&self) -> bool {
        self.role() == Role::Task
    }

    /// Whether it stores `steps.<id>` (what `steps.<id>` may name).
    pub fn is_step(&self) -> bool {
        matches!(self.role(), Role::Task | Role::Inline)
    }

    /// Every node id this node's edges name, to rewrite (a subflow's nodes
    /// get their ids prefixed when it is inlined).
    pub fn targets_mut(&mut self) -> Vec<&mut String> {
        fn edges(e: &mut Edges) -> Vec<&mut String> {
            match e {
                Edges::To(to) => vec![to],
                Edges::List(list) => list.iter_mut().map(|e| &mut e.to).collect(),
            }
        }
        let mut out = Vec::new();
        match self {
            NodeDef::Screen(n) => {
                for a in &mut n.actions {
                    out.extend(edges(&mut a.next));
                }
            }
            NodeDef::Decision(n) => out.extend(edges(&mut n.next)),
            NodeDef::End(_) => {}
            NodeDef::Http(n) => {
                out.extend(edges(&mut n.next));
                out.extend(n.on_error.as_mut());
                out.extend(n.on_timeout.as_mut());
            }
            NodeDef::Transform(n) => out.extend(edges(&mut n.next)),
            NodeDef::Wait(n) => out.extend(edges(&mut n.next)),
            NodeDef::Approval(n) => {
                out.extend(n.outcomes.values_mut());
                out.extend(n.on_timeout.as_mut());
            }
            NodeDef::Event(n) => {
                out.extend(edges(&mut n.next));
                out.extend(n.on_timeout.as_mut());
            }
            NodeDef::Parallel(n) => {
                out.extend(edges(&mut n.next));
                out.extend(n.on_error.as_mut());
                out.extend(n.on_timeout.as_mut());
            }
            NodeDef::Llm(n) => {
                out.extend(edges(&mut n.next));
                out.extend(n.review.as_mut());
                out.extend(n.on_error.as_mut());
                out.extend(n.on_timeout.as_mut());
            }
            NodeDef::Subflow(n) => {
                out.extend(edges(&mut n.next));
                out.extend(n.on_abandoned.as_mut());
                out.extend(n.on_error.as_mut());
            }
        }
        out
    }

    /// The screen shown while this step runs, if it declares one.
    pub fn pending(&self) -> Option<&PendingDef> {
        match self {
            NodeDef::Http(n) => n.pending.as_ref(),
            NodeDef::Wait(n) => n.pending.as_ref(),
            NodeDef::Approval(n) => n.pending.as_ref(),
            NodeDef::Event(n) => n.pending.as_ref(),
            NodeDef::Parallel(n) => n.pending.as_ref(),
            NodeDef::Llm(n) => n.pending.as_ref(),
            NodeDef::Screen(_)
            | NodeDef::Decision(_)
            | NodeDef::End(_)
            | NodeDef::Transform(_)
            | NodeDef::Subflow(_) => None,
        }
    }

    /// Its component trees: a screen's and its fallbacks', an end's last
    /// screen, an approval's fields, and a pending screen.
    pub fn component_trees(&self) -> Vec<&[ComponentDef]> {
        let mut out: Vec<&[ComponentDef]> = Vec::new();
        match self {
            NodeDef::Screen(s) => {
                out.push(&s.components);
                out.extend(
                    s.fallback
                        .iter()
                        .flat_map(|f| f.list())
                        .map(|f| f.components.as_slice()),
                );
            }
            NodeDef::End(e) => out.push(&e.components),
            NodeDef::Approval(a) => out.push(&a.fields),
            NodeDef::Decision(_)
            | NodeDef::Http(_)
            | NodeDef::Transform(_)
            | NodeDef::Wait(_)
            | NodeDef::Event(_)
            | NodeDef::Parallel(_)
            | NodeDef::Llm(_)
            | NodeDef::Subflow(_) => {}
        }
        if let Some(p) = self.pending() {
            out.push(&p.components);
        }
        out
    }

    /// How its answers become a mock case (`recordScenario`, `--record`);
    /// `None` for a kind with nothing to record.
    pub fn recorder(&mut self) -> Option<&mut dyn super::record::Record> {
        match self {
            NodeDef::Http(n) => Some(n),
            NodeDef::Parallel(n) => Some(n),
            NodeDef::Llm(n) => Some(n),
            NodeDef::Approval(n) => Some(n),
            NodeDef::Event(n) => Some(n),
            // A timer's mock is its latency, the same in every scenario;
            // the others make no call. A subflow's calls are its child's
            // mocks, in the child's file.
            NodeDef::Wait(_)
            | NodeDef::Subflow(_)
            | NodeDef::Transform(_)
            | NodeDef::Screen(_)
            | NodeDef::Decision(_)
            | NodeDef::End(_) => None,
        }
    }

    /// The upstream URLs it calls (`--allow-hosts` checks them), each with
    /// its JSON path under the node.
    pub fn upstream_urls(&self) -> Vec<(String, &str)> {
        match self {
            NodeDef::Http(h) => vec![("url".to_owned(), h.url.as_str())],
            NodeDef::Parallel(p) => p
                .branches
                .iter()
                .enumerate()
                .map(|(k, b)| (format!("branches[{k}].url"), b.url.as_str()))
                .collect(),
            // An `llm` step calls the server's `--llm-url`, checked when
            // the server starts.
            NodeDef::Llm(_)
            | NodeDef::Subflow(_)
            | NodeDef::Screen(_)
            | NodeDef::Decision(_)
            | NodeDef::End(_)
            | NodeDef::Transform(_)
            | NodeDef::Wait(_)
            | NodeDef::Approval(_)
            | NodeDef::Event(_) => Vec::new(),
        }
    }
}

/// A screen: components to render and the actions that leave it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScreenNode {
    pub id: String,
    /// Analytics id its impressions carry. Default `<flow>.<id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_id: Option<String>,
    /// Screen title (template, localizable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<Text>,
    /// The component tree, top to bottom.
    #[serde(default)]
    pub components: Vec<ComponentDef>,
    /// Every action this screen accepts. Each names its outgoing edges.
    #[serde(default)]
    pub actions: Vec<ActionDef>,
    /// Lowest client app version (semver) that can render `components`.
    /// Older clients get `fallback`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_app_version: Option<String>,
    /// What a client gets when it lacks a component kind this screen uses
    /// or is older than `min_app_version`: one alternative, or an ordered
    /// list of them. Each is checked against the client in turn and the
    /// first it can render wins; the last must use core components only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallbacks>,
}

/// One fallback, or an ordered list of them.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Fallbacks {
    One(FallbackDef),
    List(Vec<FallbackDef>),
}

impl Fallbacks {
    /// The fallbacks in the order they are tried.
    pub fn list(&self) -> &[FallbackDef] {
        match self {
            Fallbacks::One(f) => std::slice::from_ref(f),
            Fallbacks::List(list) => list,
        }
    }

    /// The JSON path of fallback `k` under `base` (`$.nodes[0].fallback`).
    pub fn path(&self, base: &str, k: usize) -> String {
        match self {
            Fallbacks::One(_) => base.to_string(),
            Fallbacks::List(_) => format!("{base}[{k}]"),
        }
    }
}

/// The alternative component tree for clients that cannot render a screen.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FallbackDef {
    /// Replaces the screen's `title` when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<Text>,
    pub components: Vec<ComponentDef>,
}

/// An action a screen accepts, and where it leads.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionDef {
    /// Action name sent as `submit(action:)`.
    pub id: String,
    /// Analytics id its submits carry. Default `<flow>.<screen>.<id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_id: Option<String>,
    /// Label for clients that render actions themselves (template, localizable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<Text>,
    /// Whether submitting with this action validates and stores the
    /// screen's inputs. `false` for actions such as "skip" or "cancel".
    #[serde(default = "yes")]
    pub validate: bool,
    /// Outgoing edges; the first whose rule matches wins.
    pub next: Edges,
}

fn yes() -> bool {
    true
}

impl ActionDef {
    /// The analytics id of this action on screen `screen` of `flow`.
    pub fn log_id_in(&self, flow: &str, screen: &str) -> String {
        match &self.log_id {
            Some(set) => set.clone(),
            None => format!("{flow}.{screen}.{}", self.id),
        }
    }
}

/// The analytics id of a screen or end node: the one set, or `<flow>.<node>`.
pub fn node_log_id(set: Option<&str>, flow: &str, node: &str) -> String {
    match set {
        Some(set) => set.to_owned(),
        None => format!("{flow}.{node}"),
    }
}

/// A decision: branches on rules without showing anything.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionNode {
    pub id: String,
    /// Outgoing edges; the first whose rule matches wins.
    pub next: Edges,
}

/// A terminal node. It may carry a last screen (a receipt, a thank-you)
/// that the client shows with no actions.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EndNode {
    pub id: String,
    /// Analytics id the impression of its last screen carries. Default
    /// `<flow>.<id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_id: Option<String>,
    /// How the session ended.
    #[serde(default)]
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<Text>,
    #[serde(default)]
    pub components: Vec<ComponentDef>,
}

/// The result an `end` node records on the session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    #[default]
    Completed,
    Abandoned,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Abandoned => "abandoned",
            Outcome::Failed => "failed",
        }
    }
}

/// Outgoing edges: either a single target node id, or an ordered list of
/// guarded edges where the first match wins.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Edges {
    /// Always go to this node.
    To(String),
    /// Ordered edges; an edge without `when` always matches (the default).
    List(Vec<EdgeDef>),
}

impl Edges {
    /// The edges as a list, with the shorthand expanded.
    pub fn to_list(&self) -> Vec<EdgeDef> {
        match self {
            Edges::To(to) => vec![EdgeDef {
                when: None,
                to: to.clone(),
            }],
            Edges::List(list) => list.clone(),
        }
    }
}

/// One guarded edge.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EdgeDef {
    /// JsonLogic rule over the session context; omitted means "always".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<Value>,
    /// Target node id.
    pub to: String,
}

/// A user-facing string: a template over the session context, either one
/// string or one per locale (`{en: "Hello", de: "Hallo"}`). Locale
/// resolution: exact `client.locale`, then its language, then `en`, then
/// the first entry.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Text {
    Plain(String),
    Localized(BTreeMap<String, String>),
}

impl Text {
    /// Every template source in this text, with its locale (`None` for plain).
    pub fn sources(&self) -> Vec<(Option<&str>, &str)> {
        match self {
            Text::Plain(s) => vec![(None, s.as_str())],
            Text::Localized(m) => m
                .iter()
                .map(|(k, v)| (Some(k.as_str()), v.as_str()))
                .collect(),
        }
    }
}

/// An option of a `select`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SelectOption {
    /// Value stored in `input.<screen>.<field>` when chosen.
    pub value: String,
    /// What the user sees (template, localizable).
    pub label: Text,
}

/// One UI component. Input components (`text_input`, `number_input`,
/// `email_input`, `select`, `checkbox`, `date`) require an `id`: it is the
/// key of the submitted value. Validation declared here is enforced by the
/// server on `submit`, whatever the client did.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ComponentDef {
    /// A paragraph of plain text.
    Text {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Analytics id: impressions list it. Default `<flow>.<node>.<id>`
        /// (none for a component without an `id`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        log_id: Option<String>,
        text: Text,
        /// Rule over the session context: while it is false the component
        /// (with its children) is left out, and its inputs are not expected.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        visible_when: Option<Value>,
        /// Lowest client app version (semver) that gets this component;
        /// older clients do not (without `appVersion`: current).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_app_version: Option<String>,
    },
    /// A heading; `level` 1 (largest) to 6.
    Heading {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Analytics id: impressions list it. Default `<flow>.<node>.<id>`
        /// (none for a component without an `id`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        log_id: Option<String>,
        text: Text,
        #[serde(default = "one")]
        level: u8,
        /// Rule over the session context: while it is false the component
        /// (with its children) is left out, and its inputs are not expected.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        visible_when: Option<Value>,
        /// Lowest client app version (semver) that gets this component;
        /// older clients do not (without `appVersion`: current).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_app_version: Option<String>,
    },
    /// An image by URL.
    Image {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Analytics id: impressions list it. Default `<flow>.<node>.<id>`
        /// (none for a component without an `id`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        log_id: Option<String>,
        url: Text,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        alt: Option<Text>,
        /// Rule over the session context: while it is false the component
        /// (with its children) is left out, and its inputs are not expected.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        visible_when: Option<Value>,
        /// Lowest client app version (semver) that gets this component;
        /// older clients do not (without `appVersion`: current).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_app_version: Option<String>,
    },
    /// Single-line text entry.
    TextInput {
        id: String,
        /// Analytics id: impressions list it. Default `<flow>.<node>.<id>`
        /// (none for a component without an `id`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        log_id: Option<String>,
        label: Text,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        placeholder: Option<Text>,
        #[serde(default)]
        required: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_length: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_length: Option<u32>,
        /// Regular expression (Rust `regex` syntax) the whole value must match.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pattern: Option<String>,
        /// Message shown when `pattern` does not match (template, localizable).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pattern_message: Option<Text>,
        /// Rule over the session context: while it is false the component
        /// (with its children) is left out, and its inputs are not expected.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        visible_when: Option<Value>,
        /// Lowest client app version (semver) that gets this component;
        /// older clients do not (without `appVersion`: current).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_app_version: Option<String>,
    },
    /// Numeric entry.
    NumberInput {
        id: String,
        /// Analytics id: impressions list it. Default `<flow>.<node>.<id>`
        /// (none for a component without an `id`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        log_id: Option<String>,
        label: Text,
        #[serde(default)]
        required: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<f64>,
        /// Only whole numbers are accepted.
        #[serde(default)]
        integer: bool,
        /// Rule over the session context: while it is false the component
        /// (with its children) is left out, and its inputs are not expected.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        visible_when: Option<Value>,
        /// Lowest client app version (semver) that gets this component;
        /// older clients do not (without `appVersion`: current).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_app_version: Option<String>,
    },
    /// E-mail address entry.
    EmailInput {
        id: String,
        /// Analytics id: impressions list it. Default `<flow>.<node>.<id>`
        /// (none for a component without an `id`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        log_id: Option<String>,
        label: Text,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        placeholder: Option<Text>,
        #[serde(default)]
        required: bool,
        /// Rule over the session context: while it is false the component
        /// (with its children) is left out, and its inputs are not expected.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        visible_when: Option<Value>,
        /// Lowest client app version (semver) that gets this component;
        /// older clients do not (without `appVersion`: current).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_app_version: Option<String>,
    },
    /// Choice among fixed options.
    Select {
        id: String,
        /// Analytics id: impressions list it. Default `<flow>.<node>.<id>`
        /// (none for a component without an `id`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        log_id: Option<String>,
        label: Text,
        options: Vec<SelectOption>,
        #[serde(default)]
        required: bool,
        /// Rule over the session context: while it is false the component
        /// (with its children) is left out, and its inputs are not expected.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        visible_when: Option<Value>,
        /// Lowest client app version (semver) that gets this component;
        /// older clients do not (without `appVersion`: current).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_app_version: Option<String>,
    },
    /// A yes/no box; `required` means it must be checked (e.g. terms).
    Checkbox {
        id: String,
        /// Analytics id: impressions list it. Default `<flow>.<node>.<id>`
        /// (none for a component without an `id`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        log_id: Option<String>,
        label: Text,
        #[serde(default)]
        required: bool,
        /// Rule over the session context: while it is false the component
        /// (with its children) is left out, and its inputs are not expected.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        visible_when: Option<Value>,
        /// Lowest client app version (semver) that gets this component;
        /// older clients do not (without `appVersion`: current).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_app_version: Option<String>,
    },
    /// A calendar date, `YYYY-MM-DD`.
    Date {
        id: String,
        /// Analytics id: impressions list it. Default `<flow>.<node>.<id>`
        /// (none for a component without an `id`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        log_id: Option<String>,
        label: Text,
        #[serde(default)]
        required: bool,
        /// Earliest allowed date, `YYYY-MM-DD`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<String>,
        /// Latest allowed date, `YYYY-MM-DD`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<String>,
        /// Rule over the session context: while it is false the component
        /// (with its children) is left out, and its inputs are not expected.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        visible_when: Option<Value>,
        /// Lowest client app version (semver) that gets this component;
        /// older clients do not (without `appVersion`: current).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_app_version: Option<String>,
    },
    /// Triggers one of the screen's actions.
    Button {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Analytics id: impressions list it. Default `<flow>.<node>.<id>`
        /// (none for a component without an `id`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        log_id: Option<String>,
        label: Text,
        /// Id of an action declared in the screen's `actions`.
        action: String,
        #[serde(default)]
        style: ButtonStyle,
        /// Rule over the session context: while it is false the component
        /// (with its children) is left out, and its inputs are not expected.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        visible_when: Option<Value>,
        /// Lowest client app version (semver) that gets this component;
        /// older clients do not (without `appVersion`: current).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_app_version: Option<String>,
    },
    /// A vertical list of items.
    List {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Analytics id: impressions list it. Default `<flow>.<node>.<id>`
        /// (none for a component without an `id`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        log_id: Option<String>,
        #[serde(default)]
        ordered: bool,
        children: Vec<ComponentDef>,
        /// Rule over the session context: while it is false the component
        /// (with its children) is left out, and its inputs are not expected.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        visible_when: Option<Value>,
        /// Lowest client app version (semver) that gets this component;
        /// older clients do not (without `appVersion`: current).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_app_version: Option<String>,
    },
    /// A visually grouped box with an optional title.
    Card {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Analytics id: impressions list it. Default `<flow>.<node>.<id>`
        /// (none for a component without an `id`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        log_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<Text>,
        children: Vec<ComponentDef>,
        /// Rule over the session context: while it is false the component
        /// (with its children) is left out, and its inputs are not expected.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        visible_when: Option<Value>,
        /// Lowest client app version (semver) that gets this component;
        /// older clients do not (without `appVersion`: current).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_app_version: Option<String>,
    },
    /// Lays children out in a row or a column.
    Stack {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Analytics id: impressions list it. Default `<flow>.<node>.<id>`
        /// (none for a component without an `id`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        log_id: Option<String>,
        #[serde(default)]
        direction: StackDirection,
        children: Vec<ComponentDef>,
        /// Rule over the session context: while it is false the component
        /// (with its children) is left out, and its inputs are not expected.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        visible_when: Option<Value>,
        /// Lowest client app version (semver) that gets this component;
        /// older clients do not (without `appVersion`: current).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_app_version: Option<String>,
    },
    /// Rich text in CommonMark (template, localizable).
    Markdown {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Analytics id: impressions list it. Default `<flow>.<node>.<id>`
        /// (none for a component without an `id`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        log_id: Option<String>,
        text: Text,
        /// Rule over the session context: while it is false the component
        /// (with its children) is left out, and its inputs are not expected.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        visible_when: Option<Value>,
        /// Lowest client app version (semver) that gets this component;
        /// older clients do not (without `appVersion`: current).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_app_version: Option<String>,
    },
    /// Escape hatch: a component kind only some clients know. Clients list
    /// the names they render as `custom:<name>` in their capabilities; a
    /// screen using one must declare a `fallback`. What it submits is
    /// declared in `inputs` (or is what the fallback's inputs submit).
    Custom {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Analytics id: impressions list it. Default `<flow>.<node>.<id>`
        /// (none for a component without an `id`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        log_id: Option<String>,
        /// The custom kind's name, e.g. `map_picker`.
        name: String,
        /// Free-form props passed to the client as they are. String values
        /// are not rendered as templates.
        #[serde(default)]
        props: Value,
        /// The values it submits, checked by the server like core inputs.
        /// Omitted: the inputs of the screen's first fallback.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inputs: Option<Vec<CustomInput>>,
        /// Rule over the session context: while it is false the component
        /// (with its children) is left out, and its inputs are not expected.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        visible_when: Option<Value>,
        /// Lowest client app version (semver) that gets this component;
        /// older clients do not (without `appVersion`: current).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_app_version: Option<String>,
    },
}

fn one() -> u8 {
    1
}

/// A value a custom component submits: its key, its type and the
/// constraints the matching core input has.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomInput {
    /// Key of the value in `submit(values:)` and `input.<screen>.<id>`.
    pub id: String,
    /// The value's type, checked as the core input of that kind checks it.
    #[serde(rename = "type")]
    pub kind: InputType,
    #[serde(default)]
    pub required: bool,
    /// `text`: fewest characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u32>,
    /// `text`: most characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    /// `text`: regular expression the whole value must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// `number`: smallest value; `date`: earliest `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<Value>,
    /// `number`: largest value; `date`: latest `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Value>,
    /// `number`: whole numbers only.
    #[serde(default)]
    pub integer: bool,
    /// `select`: the values that may be submitted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// The type of a custom component's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InputType {
    Text,
    Number,
    Email,
    Select,
    Checkbox,
    Date,
}

impl InputType {
    /// The core component kind that checks values of this type.
    pub fn component_kind(self) -> &'static str {
        match self {
            InputType::Text => "text_input",
            InputType::Number => "number_input",
            InputType::Email => "email_input",
            InputType::Select => "select",
            InputType::Checkbox => "checkbox",
            InputType::Date => "date",
        }
    }
}

impl CustomInput {
    /// The core input that checks this value (no label: it is never shown).
    pub fn to_component(&self) -> ComponentDef {
        let id = self.id.clone();
        let label = Text::Plain(String::new());
        let required = self.required;
        let (visible_when, min_app_version, log_id) = (None, None, None);
        let num = |v: &Option<Value>| v.as_ref().and_then(Value::as_f64);
        let date = |v: &Option<Value>| v.as_ref().and_then(Value::as_str).map(str::to_string);
        match self.kind {
            InputType::Text => ComponentDef::TextInput {
                id,
                log_id,
                label,
                placeholder: None,
                required,
                min_length: self.min_length,
                max_length: self.max_length,
                pattern: self.pattern.clone(),
                pattern_message: None,
                visible_when,
                min_app_version,
            },
            InputType::Number => ComponentDef::NumberInput {
                id,
                log_id,
                label,
                required,
                min: num(&self.min),
                max: num(&self.max),
                integer: self.integer,
                visible_when,
                min_app_version,
            },
            InputType::Email => ComponentDef::EmailInput {
                id,
                log_id,
                label,
                placeholder: None,
                required,
                visible_when,
                min_app_version,
            },
            InputType::Select => ComponentDef::Select {
                id,
                log_id,
                label,
                options: self
                    .options
                    .iter()
                    .map(|o| SelectOption {
                        value: o.clone(),
                        label: Text::Plain(o.clone()),
                    })
                    .collect(),
                required,
                visible_when,
                min_app_version,
            },
            InputType::Checkbox => ComponentDef::Checkbox {
                id,
                log_id,
                label,
                required,
                visible_when,
                min_app_version,
            },
            InputType::Date => ComponentDef::Date {
                id,
                log_id,
                label,
                required,
                min: date(&self.min),
                max: date(&self.max),
                visible_when,
                min_app_version,
            },
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ButtonStyle {
    #[default]
    Primary,
    Secondary,
    Link,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StackDirection {
    #[default]
    Vertical,
    Horizontal,
}

/// Component kinds every client is assumed to render. Anything else
/// (`custom:<name>`) needs a capability and a fallback.
pub const CORE_KINDS: &[&str] = &[
    "text",
    "heading",
    "image",
    "text_input",
    "number_input",
    "email_input",
    "select",
    "checkbox",
    "date",
    "button",
    "list",
    "card",
    "stack",
    "markdown",
];

impl ComponentDef {
    /// The kind as clients name it in their capabilities: a core kind, or
    /// `custom:<name>`.
    pub fn capability(&self) -> String {
        match self {
            ComponentDef::Custom { name, .. } => format!("custom:{name}"),
            other => other.kind().to_string(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            ComponentDef::Text { .. } => "text",
            ComponentDef::Heading { .. } => "heading",
            ComponentDef::Image { .. } => "image",
            ComponentDef::TextInput { .. } => "text_input",
            ComponentDef::NumberInput { .. } => "number_input",
            ComponentDef::EmailInput { .. } => "email_input",
            ComponentDef::Select { .. } => "select",
            ComponentDef::Checkbox { .. } => "checkbox",
            ComponentDef::Date { .. } => "date",
            ComponentDef::Button { .. } => "button",
            ComponentDef::List { .. } => "list",
            ComponentDef::Card { .. } => "card",
            ComponentDef::Stack { .. } => "stack",
            ComponentDef::Markdown { .. } => "markdown",
            ComponentDef::Custom { .. } => "custom",
        }
    }

    pub fn id(&self) -> Option<&str> {
        match self {
            ComponentDef::TextInput { id, .. }
            | ComponentDef::NumberInput { id, .. }
            | ComponentDef::EmailInput { id, .. }
            | ComponentDef::Select { id, .. }
            | ComponentDef::Checkbox { id, .. }
            | ComponentDef::Date { id, .. } => Some(id),
            ComponentDef::Text { id, .. }
            | ComponentDef::Heading { id, .. }
            | ComponentDef::Image { id, .. }
            | ComponentDef::Button { id, .. }
            | ComponentDef::List { id, .. }
            | ComponentDef::Card { id, .. }
            | ComponentDef::Stack { id, .. }
            | ComponentDef::Markdown { id, .. }
            | ComponentDef::Custom { id, .. } => id.as_deref(),
        }
    }

    /// The analytics id set in the flow, if any (see [`ComponentDef::log_id_in`]).
    pub fn log_id(&self) -> Option<&str> {
        match self {
            ComponentDef::Text { log_id, .. }
            | ComponentDef::Heading { log_id, .. }
            | ComponentDef::Image { log_id, .. }
            | ComponentDef::TextInput { log_id, .. }
            | ComponentDef::NumberInput { log_id, .. }
            | ComponentDef::EmailInput { log_id, .. }
            | ComponentDef::Select { log_id, .. }
            | ComponentDef::Checkbox { log_id, .. }
            | ComponentDef::Date { log_id, .. }
            | ComponentDef::Button { log_id, .. }
            | ComponentDef::List { log_id, .. }
            | ComponentDef::Card { log_id, .. }
            | ComponentDef::Stack { log_id, .. }
            | ComponentDef::Markdown { log_id, .. }
            | ComponentDef::Custom { log_id, .. } => log_id.as_deref(),
        }
    }

    /// The analytics id on node `node` of flow `flow`: the one set, or
    /// `<flow>.<node>.<id>`; none for a component without either.
    pub fn log_id_in(&self, flow: &str, node: &str) -> Option<String> {
        match (self.log_id(), self.id()) {
            (Some(set), _) => Some(set.to_owned()),
            (None, Some(id)) => Some(format!("{flow}.{node}.{id}")),
            (None, None) => None,
        }
    }

    /// The rule that shows or hides this component, if any.
    pub fn visible_when(&self) -> Option<&Value> {
        match self {
            ComponentDef::Text { visible_when, .. }
            | ComponentDef::Heading { visible_when, .. }
            | ComponentDef::Image { visible_when, .. }
            | ComponentDef::TextInput { visible_when, .. }
            | ComponentDef::NumberInput { visible_when, .. }
            | ComponentDef::EmailInput { visible_when, .. }
            | ComponentDef::Select { visible_when, .. }
            | ComponentDef::Checkbox { visible_when, .. }
            | ComponentDef::Date { visible_when, .. }
            | ComponentDef::Button { visible_when, .. }
            | ComponentDef::List { visible_when, .. }
            | ComponentDef::Card { visible_when, .. }
            | ComponentDef::Stack { visible_when, .. }
            | ComponentDef::Markdown { visible_when, .. }
            | ComponentDef::Custom { visible_when, .. } => visible_when.as_ref(),
        }
    }

    /// The lowest app version that gets this component, if any.
    pub fn min_app_version(&self) -> Option<&str> {
        match self {
            ComponentDef::Text {
                min_app_version, ..
            }
            | ComponentDef::Heading {
                min_app_version, ..
            }
            | ComponentDef::Image {
                min_app_version, ..
            }
            | ComponentDef::TextInput {
                min_app_version, ..
            }
            | ComponentDef::NumberInput {
                min_app_version, ..
            }
            | ComponentDef::EmailInput {
                min_app_version, ..
            }
            | ComponentDef::Select {
                min_app_version, ..
            }
            | ComponentDef::Checkbox {
                min_app_version, ..
            }
            | ComponentDef::Date {
                min_app_version, ..
            }
            | ComponentDef::Button {
                min_app_version, ..
            }
            | ComponentDef::List {
                min_app_version, ..
            }
            | ComponentDef::Card {
                min_app_version, ..
            }
            | ComponentDef::Stack {
                min_app_version, ..
            }
            | ComponentDef::Markdown {
                min_app_version, ..
            }
            | ComponentDef::Custom {
                min_app_version, ..
            } => min_app_version.as_deref(),
        }
    }

    /// Whether this component collects a value on submit.
    pub fn is_input(&self) -> bool {
        matches!(
            self,
            ComponentDef::TextInput { .. }
                | ComponentDef::NumberInput { .. }
                | ComponentDef::EmailInput { .. }
                | ComponentDef::Select { .. }
                | ComponentDef::Checkbox { .. }
                | ComponentDef::Date { .. }
        )
    }

    pub fn children(&self) -> &[ComponentDef] {
        match self {
            ComponentDef::List { children, .. }
            | ComponentDef::Card { children, .. }
            | ComponentDef::Stack { children, .. } => children,
            _ => &[],
        }
    }

    /// Visits this component and all descendants, depth first, with the
    /// JSON path suffix of each relative to this one.
    pub fn walk<'a>(&'a self, path: &str, f: &mut dyn FnMut(&'a ComponentDef, &str)) {
        f(self, path);
        for (i, child) in self.children().iter().enumerate() {
            child.walk(&format!("{path}.children[{i}]"), f);
        }
    }
}

/// Walks a component list, calling `f` with each component and its JSON
/// path (`{base}[i].children[j]…`).
pub fn walk_components<'a>(
    components: &'a [ComponentDef],
    base: &str,
    f: &mut dyn FnMut(&'a ComponentDef, &str),
) {
    for (i, c) in components.iter().enumerate() {
        c.walk(&format!("{base}[{i}]"), f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `NODE_KINDS` (what error messages list, and what locating an error
    /// in a node matches on) is written out by hand: it must name exactly
    /// the kinds `NodeDef` reads.
    #[test]
    fn node_kinds_are_the_kinds_node_def_reads() {
        let schema = serde_json::to_value(schemars::schema_for!(NodeDef)).unwrap();
        let mut kinds: Vec<String> = schema["oneOf"]
            .as_array()
            .expect("a tagged enum is a oneOf")
            .iter()
            .map(|v| {
                let kind = &v["properties"]["kind"];
                kind["const"]
                    .as_str()
                    .or_else(|| kind["enum"][0].as_str())
                    .unwrap_or_else(|| panic!("no kind in {v}"))
                    .to_owned()
            })
            .collect();
        kinds.sort();
        let mut listed: Vec<String> = NODE_KINDS.iter().map(|k| (*k).to_owned()).collect();
        listed.sort();
        assert_eq!(kinds, listed);
    }
}

//! Finding every problem in a parsed flow at once, each as an [`Issue`]
//! with a stable code, the node it is in and a JSON path to the value.
//!
//! Errors make a flow unpublishable; warnings point at something that is
//! probably a mistake but cannot break a session. The checks:
//!
//! | code | severity | what |
//! |---|---|---|
//! | `INVALID_FLOW_ID` | error | flow id is not `^[a-z0-9][a-z0-9_-]*$` |
//! | `INVALID_ID` | error | node, action or component id empty or not `[A-Za-z0-9_-]` |
//! | `UNKNOWN_START` | error | `start` names no node |
//! | `UNKNOWN_TARGET` | error | an edge goes to a node that does not exist |
//! | `NO_EDGES` | error | `next: []` |
//! | `DUPLICATE_NODE_ID` | error | two nodes share an id |
//! | `DUPLICATE_ACTION_ID` | error | two actions of a screen share an id |
//! | `DUPLICATE_COMPONENT_ID` | error | two components of one tree share an id |
//! | `DEAD_END_SCREEN` | error | a screen without actions |
//! | `INVALID_RULE` | error | a `when` rule does not compile |
//! | `NOT_A_RULE` | error | a `when` or `visible_when` is a string, number, list or null instead of a rule object or `true`/`false` |
//! | `UNKNOWN_FLAG` | error | `flags.<key>` names no flag of the `--flags` directory (only with flags given) |
//! | `FLAG_TYPE_MISMATCH` | error | a rule compares a flag with a literal none of its variants has the type of |
//! | `INVALID_TEMPLATE` | error | a string does not compile as a template |
//! | `EMPTY_TEXT` | error | a localized text with no locales |
//! | `UNKNOWN_CONTEXT_ROOT` | error | a template or rule reads a root that is not in the context |
//! | `UNKNOWN_CONTEXT_FIELD` | error | it reads a member `user`, `client` or `session` does not have (`user.atributes`) |
//! | `UNKNOWN_INPUT_SCREEN` | error | `input.<screen>` names no screen |
//! | `UNKNOWN_INPUT_FIELD` | error | `input.<screen>.<field>` names no input of that screen |
//! | `INPUT_WITHOUT_SUBMIT` | error | inputs but no action with `validate: true` |
//! | `UNKNOWN_BUTTON_ACTION` | error | a button triggers an action the screen does not declare |
//! | `DECISION_CYCLE` | error | decisions that can loop without showing a screen |
//! | `INVALID_PATTERN` | error | `pattern` is not a valid regex |
//! | `INVALID_LENGTH_RANGE` | error | `min_length > max_length` |
//! | `INVALID_NUMBER_RANGE` | error | `min > max` |
//! | `INVALID_DATE` | error | a date bound is not a real `YYYY-MM-DD` date |
//! | `INVALID_DATE_RANGE` | error | date `min` after `max` |
//! | `INVALID_HEADING_LEVEL` | error | heading level outside 1..=6 |
//! | `EMPTY_SELECT` | error | a select without options |
//! | `DUPLICATE_OPTION_VALUE` | error | two options of a select share a value |
//! | `MISSING_FALLBACK` | error | custom component or `min_app_version` without `fallback` |
//! | `FALLBACK_NOT_CORE` | error | the last fallback uses a custom component |
//! | `CUSTOM_INPUT_MISMATCH` | error | a fallback's inputs differ in name or kind from what the screen (its core inputs and its custom components' declared `inputs`) submits |
//! | `INVALID_CUSTOM_INPUT` | error | a custom input's `min`/`max`/`pattern`/`options` do not fit its `type` |
//! | `INVALID_APP_VERSION` | error | a screen's or component's `min_app_version` is not a version |
//! | `UNREACHABLE_NODE` | warning | no path from `start` reaches the node |
//! | `NO_PATH_TO_END` | warning | from this node no `end` can be reached |
//! | `NO_DEFAULT_EDGE` | warning | every edge has a `when`; nothing matches → the session is stuck |
//! | `UNREACHABLE_EDGE` | warning | an edge after an edge without `when` |
//! | `UNUSED_FALLBACK` | warning | a fallback no client will ever get |
//! | `FALLBACK_INPUT_MISMATCH` | warning | a fallback input has another kind than the screen's input of the same id |
//! | `FALLBACK_MISSING_INPUT` | warning | a required input of the screen is missing from its fallback |

use crate::codes::Code;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use super::model::{
    ActionDef, ComponentDef, Edges, FlowDef, NodeDef, Text, node_log_id, walk_components,
};
use super::template::{CONTEXT_FIELDS, CONTEXT_ROOTS, Template};
use crate::flags::FlagSet;
use crate::flow::steps::{HEDGE_P95, HttpMethod, defaults, parse_duration};
use crate::rules::Rule;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// One problem in a flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    pub severity: Severity,
    /// Stable UPPER_SNAKE code (see the module docs).
    pub code: Code,
    /// The flow file, as given to [`validate`].
    pub file: String,
    /// Id of the node the problem is in, if any.
    pub node: Option<String>,
    /// JSON path of the offending value, e.g. `$.nodes[3].actions[0].next[1].to`.
    pub path: String,
    pub message: String,
    pub hint: Option<String>,
    /// 1-based line of the offending value in the file, when known
    /// (`baton validate` reads the file for it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// 1-based column, with `line`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u64>,
}

/// Every problem in `flow`, in file order, flow-wide graph problems last.
/// Never panics, whatever the flow holds.
pub fn validate(flow: &FlowDef, file: &str) -> Vec<Issue> {
    validate_with(flow, file, None)
}

/// [`validate`], and with `flags` also that every `flags.<key>` the flow
/// reads is a defined flag, compared only with values of its variants'
/// types.
pub fn validate_with(flow: &FlowDef, file: &str, flags: Option<&FlagSet>) -> Vec<Issue> {
    let mut v = Validator::new(flow, file);
    v.run();
    if let Some(flags) = flags {
        v.check_flag_reads(flags);
    }
    v.issues
}

/// One line per issue plus a summary line (`file:line:column:` when the
/// line is known):
/// ``flows/a.yaml:12:9: error[UNKNOWN_TARGET] node `welcome` at $.nodes[0].actions[0].next: … (hint: …)``
pub fn format_human(issues: &[Issue]) -> String {
    let mut out = String::new();
    for i in issues {
        let _ = write!(out, "{}", i.file);
        if let (Some(line), Some(column)) = (i.line, i.column) {
            let _ = write!(out, ":{line}:{column}");
        }
        let _ = write!(out, ": {}[{}]", i.severity.as_str(), i.code);
        if let Some(node) = &i.node {
            let _ = write!(out, " node `{node}`");
        }
        let _ = write!(out, " at {}: {}", i.path, i.message);
        if let Some(hint) = &i.hint {
            let _ = write!(out, " (hint: {hint})");
        }
        out.push('\n');
    }
    let errors = issues
        .iter()
        .filter(|i| i.severity == Severity::Error)
        .count();
    let warnings = issues.len() - errors;
    if issues.is_empty() {
        out.push_str("no issues\n");
    } else {
        let _ = writeln!(
            out,
            "{errors} error{}, {warnings} warning{}",
            plural(errors),
            plural(warnings)
        );
    }
    out
}

/// The issues as a JSON array (pretty-printed), for tooling.
pub fn format_json(issues: &[Issue]) -> String {
    serde_json::to_string_pretty(issues).expect("issues always serialize")
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Parses a client app version or a `min_app_version`. Semver, with one
/// convenience: a version with fewer than three parts is padded with
/// zeros (`5.2` is `5.2.0`, `5` is `5.0.0`), since app stores show
/// versions that way.
pub fn parse_app_version(s: &str) -> Option<semver::Version> {
    if let Ok(v) = semver::Version::parse(s) {
        return Some(v);
    }
    let core_end = s.find(['-', '+']).unwrap_or(s.len());
    let (core, rest) = s.split_at(core_end);
    let padded = match core.split('.').count() {
        1 => format!("{core}.0.0{rest}"),
        2 => format!("{core}.0{rest}"),
        _ => return None,
    };
    semver::Version::parse(&padded).ok()
}

/// Parses a `YYYY-MM-DD` calendar date into (year, month, day), checking
/// that the day exists (no 2023-02-29).
pub fn parse_date(s: &str) -> Option<(u16, u8, u8)> {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    (1..=days)
        .contains(&d)
        .then_some((y as u16, m as u8, d as u8))
}

/// Largest compiled size of an input `pattern`, so a flow cannot make the
/// server build a huge automaton.
pub const MAX_PATTERN_BYTES: usize = 1 << 20;

/// Compiles an input's `pattern` the way the server enforces it: the whole
/// value must match.
pub fn compile_input_pattern(pattern: &str) -> Result<regex::Regex, regex::Error> {
    // Compile the pattern alone first: wrapped, an unbalanced `)` could
    // close the wrapper's group and change the meaning instead of failing.
    regex::RegexBuilder::new(pattern)
        .size_limit(MAX_PATTERN_BYTES)
        .build()?;
    regex::RegexBuilder::new(&format!(r"\A(?:{pattern})\z"))
        .size_limit(MAX_PATTERN_BYTES)
        .build()
}

fn valid_flow_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Longest `log_id`: analytics tools cap event and property names.
pub const MAX_LOG_ID: usize = 128;

fn valid_log_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LOG_ID
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '/' | '-'))
}

/// Node, action and component ids end up in `input.<screen>.<field>`
/// paths and in `submit(action:)`, so dots, spaces and the like are out.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Where a template or rule sits, for messages.
#[derive(Clone, Copy)]
enum Source {
    Template,
    Rule,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Source::Template => "template",
            Source::Rule => "rule",
        }
    }
}

struct Validator<'a> {
    flow: &'a FlowDef,
    file: &'a str,
    issues: Vec<Issue>,
    /// First index of each node id.
    index: HashMap<&'a str, usize>,
    /// Indices of nodes whose id repeats an earlier node's.
    duplicates: HashSet<usize>,
    /// Field ids each screen can submit (its inputs, its fallback's
    /// inputs, and its custom components, which may submit a value under
    /// their id).
    fields: HashMap<&'a str, Vec<&'a str>>,
    /// Live outgoing edges (known target, not after a default edge).
    adjacency: Vec<Vec<usize>>,
    /// Nodes that already have an error making them a dead end; the
    /// no-path-to-end check treats them as ends so one mistake is not
    /// reported again on every node before it.
    broken_ends: HashSet<usize>,
    /// Set while checking an `http` step's request templates, the only
    /// place `secrets.NAME` may be read (it never reaches a client).
    allow_secrets: bool,
    /// Set while checking an `llm` judge's prompt, which also reads the
    /// answer it judges.
    allow_answer: bool,
    /// Every `flags.<key>` read, in file order, for [`validate_with`].
    flag_reads: Vec<FlagRead>,
}

/// One read of a flag by a rule or template.
struct FlagRead {
    key: String,
    node: String,
    path: String,
    /// A literal a rule compares the flag with (`{"==": [{"var": "flags.k"}, 3]}`).
    compared: Option<Value>,
}

impl<'a> Validator<'a> {
    fn new(flow: &'a FlowDef, file: &'a str) -> Self {
        let mut index = HashMap::new();
        let mut duplicates = HashSet::new();
        let mut fields: HashMap<&str, Vec<&str>> = HashMap::new();
        for (i, node) in flow.nodes.iter().enumerate() {
            if index.contains_key(node.id()) {
                duplicates.insert(i);
                continue;
            }
            index.insert(node.id(), i);
            if let NodeDef::Screen(s) = node {
                let mut ids = Vec::new();
                let fallback = s
                    .fallback
                    .iter()
                    .flat_map(|f| f.list())
                    .flat_map(|f| f.components.iter());
                for c in s.components.iter().chain(fallback) {
                    c.walk("", &mut |c, _| {
                        if (c.is_input() || matches!(c, ComponentDef::Custom { .. }))
                            && let Some(id) = c.id()
                        {
                            ids.push(id);
                        }
                        if let ComponentDef::Custom {
                            inputs: Some(inputs),
                            ..
                        } = c
                        {
                            ids.extend(inputs.iter().map(|i| i.id.as_str()));
                        }
                    });
                }
                fields.insert(&s.id, ids);
            }
        }
        Validator {
            flow,
            file,
            issues: Vec::new(),
            index,
            duplicates,
            fields,
            adjacency: vec![Vec::new(); flow.nodes.len()],
            broken_ends: HashSet::new(),
            allow_secrets: false,
            allow_answer: false,
            flag_reads: Vec::new(),
        }
    }

    fn push(
        &mut self,
        severity: Severity,
        code: Code,
        node: Option<&str>,
        path: impl Into<String>,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.issues.push(Issue {
            severity,
            code,
            file: self.file.to_string(),
            node: node.map(str::to_string),
            path: path.into(),
            message: message.into(),
            hint,
            line: None,
            column: None,
        });
    }

    fn error(
        &mut self,
        code: Code,
        node: Option<&str>,
        path: impl Into<String>,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.push(Severity::Error, code, node, path, message, hint);
    }

    fn warning(
        &mut self,
        code: Code,
        node: Option<&str>,
        path: impl Into<String>,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.push(Severity::Warning, code, node, path, message, hint);
    }

    fn run(&mut self) {
        let flow = self.flow;
        if !valid_flow_id(&flow.id) {
            self.error(
                Code::InvalidFlowId,
                None,
                "$.id",
                format!("flow id `{}` is not a valid flow id", flow.id),
                Some(
                    "use lowercase letters, digits, `_` and `-`, starting with a letter or digit"
                        .into(),
                ),
            );
        }
        if !self.index.contains_key(flow.start.as_str()) {
            let hint = self.suggest(&flow.start);
            self.error(
                Code::UnknownStart,
                None,
                "$.start",
                format!("`start` is `{}`, but no node has that id", flow.start),
                hint,
            );
        }
        if let Some(to) = &flow.on_error {
            self.check_target(to, "$.on_error", "on_error");
        }
        for (i, node) in flow.nodes.iter().enumerate() {
            self.check_node(i, node);
        }
        self.check_log_ids();
        self.check_graph();
    }

    /// Screens' and actions' analytics ids, set or by default, are the
    /// keys of impression and action events: each must be well formed and
    /// name one screen or one action.
    fn check_log_ids(&mut self) {
        let flow = self.flow;
        let mut screens: HashMap<String, String> = HashMap::new();
        let mut actions: HashMap<String, String> = HashMap::new();
        for (i, node) in flow.nodes.iter().enumerate() {
            let base = format!("$.nodes[{i}]");
            let (set, node_actions) = match node {
                NodeDef::Screen(s) => (s.log_id.as_deref(), s.actions.as_slice()),
                NodeDef::End(e) => (e.log_id.as_deref(), &[][..]),
                _ => continue,
            };
            // A repeated node or action id is reported as such; its default
            // log id repeating too is the same mistake.
            if self.duplicates.contains(&i) {
                continue;
            }
            let id = node.id();
            self.check_log_id(set, &format!("{base}.log_id"), id);
            let screen = node_log_id(set, &flow.id, id);
            if let Some(first) = screens.insert(screen.clone(), base.clone()) {
                self.error(
                    Code::DuplicateLogId,
                    Some(id),
                    format!("{base}.log_id"),
                    format!("log id `{screen}` is already the log id of {first}"),
                    Some("give this screen its own `log_id`".into()),
                );
            }
            for (j, action) in node_actions.iter().enumerate() {
                if node_actions[..j].iter().any(|a| a.id == action.id) {
                    continue;
                }
                let path = format!("{base}.actions[{j}].log_id");
                self.check_log_id(action.log_id.as_deref(), &path, id);
                let log_id = action.log_id_in(&flow.id, id);
                if let Some(first) = actions.insert(log_id.clone(), path.clone()) {
                    self.error(
                        Code::DuplicateLogId,
                        Some(id),
                        path,
                        format!("log id `{log_id}` is already the log id of {first}"),
                        Some("give this action its own `log_id`".into()),
                    );
                }
            }
        }
    }

    fn check_log_id(&mut self, log_id: Option<&str>, path: &str, node: &str) {
        let Some(log_id) = log_id else { return };
        if !valid_log_id(log_id) {
            self.error(
                Code::InvalidLogId,
                Some(node),
                path,
                format!(
                    "log id `{}` is empty, longer than {MAX_LOG_ID} characters, or has characters other than letters, digits, `_`, `.`, `:`, `/` and `-`",
                    log_id.chars().take(MAX_LOG_ID).collect::<String>()
                ),
                Some("analytics tools key on it; use a stable dotted name such as `checkout.address.submit`".into()),
            );
        }
    }

    /// A "did you mean" hint listing the closest existing node id.
    fn suggest(&self, missing: &str) -> Option<String> {
        let best = self
            .flow
            .nodes
            .iter()
            .map(|n| n.id())
            .min_by_key(|id| edit_distance(missing, id))?;
        if edit_distance(missing, best) <= missing.len().max(best.len()) / 3 + 1 {
            Some(format!("did you mean `{best}`?"))
        } else {
            let mut ids: Vec<&str> = self.flow.nodes.iter().map(|n| n.id()).collect();
            ids.truncate(10);
            Some(format!("existing nodes: {}", ids.join(", ")))
        }
    }

    fn check_node(&mut self, i: usize, node: &'a NodeDef) {
        let base = format!("$.nodes[{i}]");
        let id = node.id();
        if !valid_id(id) {
            self.error(
                Code::InvalidId,
                Some(id),
                format!("{base}.id"),
                format!("node id `{id}` is empty or has characters other than letters, digits, `_` and `-`"),
                Some("node ids appear in `input.<screen>.<field>` paths; keep them simple, e.g. `profile_form`".into()),
            );
        }
        if self.duplicates.contains(&i) {
            let first = self.index.get(id).copied().unwrap_or(0);
            self.error(
                Code::DuplicateNodeId,
                Some(id),
                format!("{base}.id"),
                format!("node id `{id}` is already used by $.nodes[{first}]"),
                Some("node ids must be unique within a flow; rename one of them".into()),
            );
        }
        match node {
            NodeDef::Screen(screen) => {
                if let Some(title) = &screen.title {
                    self.check_text(title, &format!("{base}.title"), id);
                }
                self.check_actions(i, &screen.actions, &base);
                let actions = Some(screen.actions.as_slice());
                let main = self.check_tree(
                    &screen.components,
                    &format!("{base}.components"),
                    id,
                    actions,
                );
                if screen.actions.is_empty() {
                    self.broken_ends.insert(i);
                    self.error(
                        Code::DeadEndScreen,
                        Some(id),
                        format!("{base}.actions"),
                        format!("screen `{id}` has no actions, so the user can never leave it"),
                        Some("add an action with a `next`, or make it an `end` node (end nodes can show components too)".into()),
                    );
                }
                self.check_capabilities(screen, &base, &main);
                let has_inputs = !main.inputs.is_empty()
                    || screen.fallback.iter().flat_map(|f| f.list()).any(|f| {
                        let mut any = false;
                        walk_components(&f.components, "", &mut |c, _| any |= c.is_input());
                        any
                    });
                if has_inputs
                    && !screen.actions.is_empty()
                    && !screen.actions.iter().any(|a| a.validate)
                {
                    self.error(
                        Code::InputWithoutSubmit,
                        Some(id),
                        format!("{base}.actions"),
                        format!("screen `{id}` has inputs, but no action submits them (every action has `validate: false`)"),
                        Some("give the action that continues `validate: true` (the default)".into()),
                    );
                }
            }
            NodeDef::Decision(decision) => {
                let targets = self.check_edges(&decision.next, &format!("{base}.next"), id);
                self.adjacency[i].extend(targets);
            }
            NodeDef::Http(_)
            | NodeDef::Transform(_)
            | NodeDef::Wait(_)
            | NodeDef::Approval(_)
            | NodeDef::Event(_)
            | NodeDef::Parallel(_)
            | NodeDef::Llm(_)
            | NodeDef::Subflow(_) => self.check_step(i, node, &base),
            NodeDef::End(end) => {
                if let Some(title) = &end.title {
                    self.check_text(title, &format!("{base}.title"), id);
                }
                let tree =
                    self.check_tree(&end.components, &format!("{base}.components"), id, None);
                if let Some((path, _)) = tree.inputs.first() {
                    self.error(
                        Code::InputWithoutSubmit,
                        Some(id),
                        path.clone(),
                        format!("end node `{id}` has an input, but end nodes have no actions to submit it"),
                        Some("move the input to a screen before the end".into()),
                    );
                }
                if let Some(path) = tree.customs.first() {
                    self.error(
                        Code::MissingFallback,
                        Some(id),
                        path.clone(),
                        format!("end node `{id}` uses a custom component, but end nodes cannot declare a fallback"),
                        Some("use core components on end nodes, or show the custom component on a screen".into()),
                    );
                }
            }
        }
    }

    /// A transform's `set` or a subflow's `params`: each value a rule (an
    /// object), a template (a string) or a literal.
    fn check_computed(
        &mut self,
        set: &std::collections::BTreeMap<String, Value>,
        base: &str,
        id: &str,
    ) {
        for (key, value) in set {
            let path = format!("{base}.{key}");
            match value {
                Value::Object(_) => self.check_rule(value, &path, id),
                Value::String(src) => self.check_template_str(src, &path, id),
                _ => {}
            }
        }
    }

    fn check_step(&mut self, i: usize, node: &'a NodeDef, base: &str) {
        let id = node.id();
        if let Some(p) = node.pending() {
            if let Some(title) = &p.title {
                self.check_text(title, &format!("{base}.pending.title"), id);
            }
            let tree = self.check_tree(
                &p.components,
                &format!("{base}.pending.components"),
                id,
                None,
            );
            if let Some((path, _)) = tree.inputs.first() {
                self.error(
                    Code::InputWithoutSubmit,
                    Some(id),
                    path.clone(),
                    "a pending screen has no actions, so an input on it can never be submitted",
                    Some("show inputs on a screen before or after the step".into()),
                );
            }
            if let Some(path) = tree.customs.first() {
                self.error(
                    Code::MissingFallback,
                    Some(id),
                    path.clone(),
                    "a pending screen cannot declare a fallback, so it must use core components only",
                    None,
                );
            }
        }
        let edge = |v: &mut Self, to: &'a Option<String>, field: &str| {
            if let Some(to) = to
                && let Some(t) = v.check_target(to, &format!("{base}.{field}"), id)
            {
                v.adjacency[i].push(t);
            }
        };
        match node {
            NodeDef::Llm(l) => self.check_llm(i, l, base),
            NodeDef::Http(h) => {
                let targets = self.check_edges(&h.next, &format!("{base}.next"), id);
                self.adjacency[i].extend(targets);
                edge(self, &h.on_error, "on_error");
                edge(self, &h.on_timeout, "on_timeout");
                self.check_request(h, base, id);
                if let Some(hedge) = &h.hedge {
                    let path = format!("{base}.hedge");
                    if hedge != HEDGE_P95 {
                        self.check_duration(Some(hedge), &path, id);
                    }
                    if matches!(h.method, HttpMethod::Post | HttpMethod::Patch) {
                        self.error(
                            Code::HedgeNotIdempotent,
                            Some(id),
                            path,
                            format!(
                                "`hedge` may send the request twice, and {} is not idempotent",
                                h.method.as_str()
                            ),
                            Some("hedge only GET, PUT or DELETE calls, or remove `hedge`".into()),
                        );
                    }
                }
            }
            NodeDef::Parallel(p) => {
                let targets = self.check_edges(&p.next, &format!("{base}.next"), id);
                self.adjacency[i].extend(targets);
                edge(self, &p.on_error, "on_error");
                edge(self, &p.on_timeout, "on_timeout");
                if p.branches.is_empty() {
                    self.error(
                        Code::EmptyParallel,
                        Some(id),
                        format!("{base}.branches"),
                        "a parallel step needs at least one branch",
                        Some("list the requests to run at once under `branches`".into()),
                    );
                }
                let mut seen = HashSet::new();
                for (k, b) in p.branches.iter().enumerate() {
                    let bp = format!("{base}.branches[{k}]");
                    if !valid_id(&b.id) || !seen.insert(b.id.as_str()) {
                        self.error(
                            Code::InvalidId,
                            Some(id),
                            format!("{bp}.id"),
                            format!(
                                "branch id `{}` is not a unique id of letters, digits, `_` and `-`",
                                b.id
                            ),
                            Some(
                                "branch results land at `steps.<step>.<branch>`; use e.g. `credit`"
                                    .into(),
                            ),
                        );
                    }
                    self.check_request(&b.as_step(), &bp, id);
                }
            }
            NodeDef::Subflow(f) => {
                let targets = self.check_edges(&f.next, &format!("{base}.next"), id);
                self.adjacency[i].extend(targets);
                edge(self, &f.on_abandoned, "on_abandoned");
                edge(self, &f.on_error, "on_error");
                self.check_computed(&f.params, &format!("{base}.params"), id);
                let path = format!("{base}.flow");
                if !valid_flow_id(&f.flow) {
                    self.error(
                        Code::UnknownSubflow,
                        Some(id),
                        path,
                        format!("`{}` is not a flow id", f.flow),
                        Some("flow ids are lowercase letters, digits, `_` and `-`".into()),
                    );
                } else if f.flow == self.flow.id {
                    self.error(
                        Code::SubflowCycle,
                        Some(id),
                        path,
                        format!("subflow `{id}` runs its own flow `{}`", f.flow),
                        Some("a flow cannot run itself; loop back with an edge instead".into()),
                    );
                }
            }
            NodeDef::Transform(t) => {
                let targets = self.check_edges(&t.next, &format!("{base}.next"), id);
                self.adjacency[i].extend(targets);
                self.check_computed(&t.set, &format!("{base}.set"), id);
            }
            NodeDef::Wait(w) => {
                let targets = self.check_edges(&w.next, &format!("{base}.next"), id);
                self.adjacency[i].extend(targets);
                match (&w.duration, &w.until) {
                    (Some(d), None) => {
                        self.check_duration(Some(d), &format!("{base}.duration"), id)
                    }
                    (None, Some(u)) => self.check_template_str(u, &format!("{base}.until"), id),
                    _ => self.error(
                        Code::InvalidWait,
                        Some(id),
                        base.to_string(),
                        "a wait step needs exactly one of `duration` and `until`",
                        Some("e.g. `duration: 24h`, or `until: \"{{ steps.offer.body.expires_at }}\"`".into()),
                    ),
                }
            }
            NodeDef::Approval(a) => {
                if !valid_id(&a.role) {
                    self.error(
                        Code::InvalidId,
                        Some(id),
                        format!("{base}.role"),
                        format!(
                            "approval role `{}` must be letters, digits, `_` and `-`",
                            a.role
                        ),
                        Some("it names the reviewer queue, e.g. `underwriter`".into()),
                    );
                }
                if let Some(title) = &a.title {
                    self.check_text(title, &format!("{base}.title"), id);
                }
                self.check_tree(&a.fields, &format!("{base}.fields"), id, None);
                if a.outcomes.is_empty() {
                    self.broken_ends.insert(i);
                    self.error(
                        Code::NoEdges,
                        Some(id),
                        format!("{base}.outcomes"),
                        "an approval needs at least one outcome",
                        Some("e.g. `outcomes: {approved: offer, declined: decline}`".into()),
                    );
                }
                for (name, to) in &a.outcomes {
                    if name == "timeout" || !valid_id(name) {
                        self.error(
                            Code::InvalidOutcome,
                            Some(id),
                            format!("{base}.outcomes.{name}"),
                            format!("`{name}` cannot be an outcome name"),
                            Some("use letters, digits, `_` and `-`; `timeout` is reserved for `on_timeout`".into()),
                        );
                    }
                    if let Some(t) = self.check_target(to, &format!("{base}.outcomes.{name}"), id) {
                        self.adjacency[i].push(t);
                    }
                }
                edge(self, &a.on_timeout, "on_timeout");
                self.check_duration(a.due.as_deref(), &format!("{base}.due"), id);
                if a.on_timeout.is_some() && a.due.is_none() {
                    self.warning(
                        Code::UnusedTimeoutEdge,
                        Some(id),
                        format!("{base}.on_timeout"),
                        "`on_timeout` is never taken: the approval has no `due`",
                        Some("add `due`, e.g. `due: 48h`".into()),
                    );
                }
                if let Some(m) = &a.mock {
                    let cases = std::iter::once(("".to_string(), &m.outcome)).chain(
                        m.scenarios
                            .iter()
                            .map(|(k, c)| (format!(".scenarios.{k}"), &c.outcome)),
                    );
                    for (sub, outcome) in cases {
                        if !a.outcomes.contains_key(outcome.as_str()) && outcome != "timeout" {
                            self.error(
                                Code::InvalidMock,
                                Some(id),
                                format!("{base}.mock{sub}.outcome"),
                                format!(
                                    "mock outcome `{outcome}` is not one of the approval's outcomes"
                                ),
                                Some(format!(
                                    "outcomes: {}",
                                    a.outcomes.keys().cloned().collect::<Vec<_>>().join(", ")
                                )),
                            );
                        }
                    }
                }
            }
            NodeDef::Event(e) => {
                let targets = self.check_edges(&e.next, &format!("{base}.next"), id);
                self.adjacency[i].extend(targets);
                edge(self, &e.on_timeout, "on_timeout");
                if e.event.trim().is_empty() || e.event.len() > 200 {
                    self.error(
                        Code::InvalidEventName,
                        Some(id),
                        format!("{base}.event"),
                        "the event name must be 1 to 200 characters",
                        Some("e.g. `payment.settled`".into()),
                    );
                }
                self.check_template_str(&e.correlation, &format!("{base}.correlation"), id);
                self.check_duration(e.timeout.as_deref(), &format!("{base}.timeout"), id);
                if e.on_timeout.is_some() && e.timeout.is_none() {
                    self.warning(
                        Code::UnusedTimeoutEdge,
                        Some(id),
                        format!("{base}.on_timeout"),
                        "`on_timeout` is never taken: the event step has no `timeout`",
                        Some("add `timeout`, e.g. `timeout: 1h`".into()),
                    );
                }
            }
            NodeDef::Screen(_) | NodeDef::Decision(_) | NodeDef::End(_) => {}
        }
    }

    /// An `http` step's (or a parallel branch's) request: URL, headers,
    /// body, retry policy, timeouts and mocks.
    fn check_request(&mut self, h: &crate::flow::model::HttpStep, base: &str, id: &str) {
        self.check_url(&h.url, &format!("{base}.url"), id);
        self.allow_secrets = true;
        self.check_template_str(&h.url, &format!("{base}.url"), id);
        for (name, value) in &h.headers {
            if http_header_name_invalid(name) {
                self.error(
                    Code::InvalidHeader,
                    Some(id),
                    format!("{base}.headers.{name}"),
                    format!("`{name}` is not a valid HTTP header name"),
                    Some("use letters, digits and `-`, e.g. `X-Request-Source`".into()),
                );
            }
            self.check_template_str(value, &format!("{base}.headers.{name}"), id);
        }
        if let Some(body) = &h.body {
            let mut strings = Vec::new();
            crate::flow::compile::collect_json_strings(body, &mut strings);
            for src in strings {
                self.check_template_str(src, &format!("{base}.body"), id);
            }
        }
        self.allow_secrets = false;
        self.check_policy(
            h.timeout.as_deref(),
            h.total_timeout.as_deref(),
            h.retry.as_ref(),
            base,
            id,
        );
        if let Some(m) = &h.mock {
            let cases = std::iter::once(("".to_string(), m.status)).chain(
                m.scenarios
                    .iter()
                    .map(|(k, c)| (format!(".scenarios.{k}"), c.status)),
            );
            for (sub, status) in cases {
                if !(100..=599).contains(&status) {
                    self.error(
                        Code::InvalidMock,
                        Some(id),
                        format!("{base}.mock{sub}.status"),
                        format!("status {status} is not an HTTP status"),
                        Some("use 100 to 599".into()),
                    );
                }
            }
        }
    }

    /// A call's timeouts and retries (an `http` step's, a branch's, an
    /// `llm` step's).
    fn check_policy(
        &mut self,
        timeout: Option<&str>,
        total_timeout: Option<&str>,
        retry: Option<&crate::flow::steps::RetryPolicy>,
        base: &str,
        id: &str,
    ) {
        self.check_duration(timeout, &format!("{base}.timeout"), id);
        self.check_duration(total_timeout, &format!("{base}.total_timeout"), id);
        if let Some(r) = retry {
            let rp = format!("{base}.retry");
            if r.max_attempts == 0 || r.max_attempts > defaults::MAX_ATTEMPTS_LIMIT {
                self.error(
                    Code::InvalidRetry,
                    Some(id),
                    format!("{rp}.max_attempts"),
                    format!(
                        "max_attempts is {}; it must be 1 to {}",
                        r.max_attempts,
                        defaults::MAX_ATTEMPTS_LIMIT
                    ),
                    Some("1 means no retry; 3 to 5 suits most upstreams".into()),
                );
            }
            self.check_duration(r.delay.as_deref(), &format!("{rp}.delay"), id);
            self.check_duration(r.max_delay.as_deref(), &format!("{rp}.max_delay"), id);
            for (k, cond) in r.retry_on.iter().flatten().enumerate() {
                if !valid_retry_on(cond) {
                    self.error(
                        Code::InvalidRetry,
                        Some(id),
                        format!("{rp}.retry_on[{k}]"),
                        format!("`{cond}` is not a retry condition"),
                        Some(
                            "use `connect`, `timeout`, `5xx`, `4xx` or a status code such as `429`"
                                .into(),
                        ),
                    );
                }
            }
        }
    }

    fn check_llm(&mut self, i: usize, l: &'a crate::flow::steps::LlmStep, base: &str) {
        let id = l.id.as_str();
        let targets = self.check_edges(&l.next, &format!("{base}.next"), id);
        self.adjacency[i].extend(targets);
        for (to, field) in [
            (&l.on_error, "on_error"),
            (&l.on_timeout, "on_timeout"),
            (&l.review, "review"),
        ] {
            if let Some(to) = to
                && let Some(t) = self.check_target(to, &format!("{base}.{field}"), id)
            {
                self.adjacency[i].push(t);
            }
        }
        self.check_template_str(&l.prompt, &format!("{base}.prompt"), id);
        if let Some(system) = &l.system {
            self.check_template_str(system, &format!("{base}.system"), id);
        }
        if let Some(judge) = &l.judge {
            self.allow_answer = true;
            self.check_template_str(&judge.prompt, &format!("{base}.judge.prompt"), id);
            self.allow_answer = false;
        } else if l.review.is_some() {
            self.warning(
                Code::UnusedReview,
                Some(id),
                format!("{base}.review"),
                "`review` is taken only when a judge rejects the answer, and this step has no `judge`",
                Some("add a `judge`, or remove `review`".into()),
            );
        }
        if l.repair > crate::flow::steps::MAX_REPAIR {
            self.error(
                Code::InvalidRetry,
                Some(id),
                format!("{base}.repair"),
                format!(
                    "repair is {}; it must be 0 to {}",
                    l.repair,
                    crate::flow::steps::MAX_REPAIR
                ),
                Some("each repair is one more call; 1 or 2 fixes most answers".into()),
            );
        }
        if let Some(t) = l.temperature
            && !(0.0..=2.0).contains(&t)
        {
            self.error(
                Code::InvalidLlm,
                Some(id),
                format!("{base}.temperature"),
                format!("temperature {t} is outside 0 to 2"),
                Some("0 for the most repeatable answers".into()),
            );
        }
        self.check_policy(
            l.timeout.as_deref(),
            l.total_timeout.as_deref(),
            l.retry.as_ref(),
            base,
            id,
        );
        let schema = match jsonschema::validator_for(&l.schema) {
            Ok(v) => v,
            Err(e) => {
                self.error(
                    Code::InvalidAnswerSchema,
                    Some(id),
                    format!("{base}.schema"),
                    format!("`schema` is not a JSON Schema: {e}"),
                    Some("e.g. `{type: object, properties: {summary: {type: string}}, required: [summary]}`; references to other files or URLs are not followed".into()),
                );
                return;
            }
        };
        if let Some(m) = &l.mock {
            // A case that fails gives no answer.
            let cases = std::iter::once((String::new(), &m.answer, m.fail)).chain(
                m.scenarios
                    .iter()
                    .map(|(k, c)| (format!(".scenarios.{k}"), &c.answer, c.fail)),
            );
            for (sub, answer, _) in cases.filter(|(_, _, fail)| fail.is_none()) {
                if let Some(e) = schema.iter_errors(answer).next() {
                    let at = e.instance_path().to_string();
                    let at = if at.is_empty() { "/" } else { at.as_str() };
                    self.error(
                        Code::InvalidMock,
                        Some(id),
                        format!("{base}.mock{sub}.answer"),
                        format!("the mock answer does not match `schema` at `{at}`: {e}"),
                        Some("give the mock an answer a real model could give; an answer that never matches ends on `on_error`".into()),
                    );
                }
            }
        }
    }

    fn check_template_str(&mut self, src: &str, path: &str, node: &str) {
        self.check_text(&Text::Plain(src.to_string()), path, node);
    }

    fn check_duration(&mut self, d: Option<&str>, path: &str, node: &str) {
        let Some(d) = d else { return };
        match parse_duration(d) {
            Ok(dur) if !dur.is_zero() => {}
            Ok(_) => self.error(
                Code::InvalidDuration,
                Some(node),
                path,
                format!("duration `{d}` is zero"),
                Some("use a positive duration such as `500ms`, `30s` or `48h`".into()),
            ),
            Err(e) => self.error(
                Code::InvalidDuration,
                Some(node),
                path,
                format!("`{d}` is not a duration: {e}"),
                Some("write e.g. `500ms`, `30s`, `15m`, `48h` or `1h 30m`".into()),
            ),
        }
    }

    /// The scheme and host of a step URL must be literal, so the host
    /// allowlist can be checked when the flow loads.
    fn check_url(&mut self, url: &str, path: &str, node: &str) {
        if let Err(reason) = literal_url_origin(url) {
            self.error(
                Code::InvalidStepUrl,
                Some(node),
                path,
                format!("step URL `{url}`: {reason}"),
                Some("write the scheme and host literally, e.g. `http://credit.internal:8080/score/{{ input.personal.email }}`".into()),
            );
        }
    }

    fn check_actions(&mut self, i: usize, actions: &'a [ActionDef], base: &str) {
        let id = self.flow.nodes[i].id();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (j, action) in actions.iter().enumerate() {
            let path = format!("{base}.actions[{j}]");
            if !valid_id(&action.id) {
                self.error(
                    Code::InvalidId,
                    Some(id),
                    format!("{path}.id"),
                    format!("action id `{}` is empty or has characters other than letters, digits, `_` and `-`", action.id),
                    Some("action ids are sent as `submit(action:)`; use e.g. `continue`".into()),
                );
            }
            if let Some(first) = seen.get(action.id.as_str()) {
                self.error(
                    Code::DuplicateActionId,
                    Some(id),
                    format!("{path}.id"),
                    format!(
                        "action id `{}` is already used by {base}.actions[{first}]",
                        action.id
                    ),
                    Some("action ids must be unique within a screen".into()),
                );
            } else {
                seen.insert(&action.id, j);
            }
            if let Some(label) = &action.label {
                self.check_text(label, &format!("{path}.label"), id);
            }
            let targets = self.check_edges(&action.next, &format!("{path}.next"), id);
            self.adjacency[i].extend(targets);
        }
    }

    /// Checks one `next`; returns the indices of the nodes its live edges
    /// lead to.
    fn check_edges(&mut self, edges: &'a Edges, path: &str, node: &str) -> Vec<usize> {
        let mut live = Vec::new();
        match edges {
            Edges::To(to) => {
                if let Some(t) = self.check_target(to, path, node) {
                    live.push(t);
                }
            }
            Edges::List(list) => {
                if list.is_empty() {
                    self.error(
                        Code::NoEdges,
                        Some(node),
                        path,
                        "`next` is an empty list, so there is nowhere to go",
                        Some("add an edge `{to: <node id>}`".into()),
                    );
                    return live;
                }
                let mut default_at: Option<usize> = None;
                for (k, edge) in list.iter().enumerate() {
                    let edge_path = format!("{path}[{k}]");
                    if let Some(when) = &edge.when {
                        self.check_guard(when, &format!("{edge_path}.when"), node);
                    }
                    let target = self.check_target(&edge.to, &format!("{edge_path}.to"), node);
                    if let Some(d) = default_at {
                        self.warning(
                            Code::UnreachableEdge,
                            Some(node),
                            edge_path,
                            format!("this edge is never taken: {path}[{d}] has no `when`, so it always matches first"),
                            Some("move the edge without `when` to the end of the list".into()),
                        );
                        continue;
                    }
                    live.extend(target);
                    if is_unguarded(edge.when.as_ref()) {
                        default_at = Some(k);
                    }
                }
                if default_at.is_none() {
                    self.warning(
                        Code::NoDefaultEdge,
                        Some(node),
                        path,
                        "every edge has a `when`; if none matches, the session cannot move on",
                        Some("add a last edge without `when` as the default".into()),
                    );
                }
            }
        }
        live
    }

    fn check_target(&mut self, to: &str, path: &str, node: &str) -> Option<usize> {
        match self.index.get(to) {
            Some(&t) => Some(t),
            None => {
                let hint = self.suggest(to);
                self.error(
                    Code::UnknownTarget,
                    Some(node),
                    path,
                    format!("edge goes to `{to}`, but no node has that id"),
                    hint,
                );
                // Already an error: not also a missing way to the end.
                if let Some(&i) = self.index.get(node) {
                    self.broken_ends.insert(i);
                }
                None
            }
        }
    }

    /// A rule in a position that decides something (`when`,
    /// `visible_when`): a JsonLogic object, or `true` / `false`. Anything
    /// else is a JsonLogic literal, always truthy or always falsy, which
    /// is never what was meant (`"a == 'b'"` would always match).
    fn check_guard(&mut self, logic: &Value, path: &str, node: &str) {
        match logic {
            Value::Object(_) => self.check_rule(logic, path, node),
            Value::Bool(_) => {}
            other => self.error(
                Code::NotARule,
                Some(node),
                path,
                format!(
                    "expected a rule (a JsonLogic object, or true/false), found {}",
                    match other {
                        Value::String(s) => format!("the string {s:?}"),
                        Value::Number(n) => format!("the number {n}"),
                        Value::Array(_) => "a list".to_string(),
                        _ => "null".to_string(),
                    }
                ),
                Some("write the rule as an object, e.g. {\"==\": [{\"var\": \"input.form.plan\"}, \"pro\"]}; a string or number here is a constant, so the edge would always (or never) match".into()),
            ),
        }
    }

    fn check_rule(&mut self, logic: &Value, path: &str, node: &str) {
        match Rule::compile(logic) {
            Ok(rule) => {
                for var in rule.var_paths() {
                    self.check_ref(&var, path, node, Source::Rule);
                }
                let mut compared = Vec::new();
                flag_comparisons(logic, &mut compared);
                for (key, literal) in compared {
                    self.flag_reads.push(FlagRead {
                        key,
                        node: node.to_string(),
                        path: path.to_string(),
                        compared: Some(literal),
                    });
                }
            }
            Err(e) => self.error(
                Code::InvalidRule,
                Some(node),
                path,
                format!("rule does not compile ({}): {e}", e.code()),
                Some("rules are JsonLogic, e.g. {\"==\": [{\"var\": \"user.attributes.country\"}, \"DE\"]}".into()),
            ),
        }
    }

    fn check_text(&mut self, text: &Text, path: &str, node: &str) {
        if let Text::Localized(map) = text
            && map.is_empty()
        {
            self.error(
                Code::EmptyText,
                Some(node),
                path,
                "localized text has no locales",
                Some("give at least one locale, e.g. {en: \"Continue\"}".into()),
            );
        }
        for (locale, source) in text.sources() {
            let path = match locale {
                Some(l) => format!("{path}.{l}"),
                None => path.to_string(),
            };
            match Template::compile(source) {
                Ok(t) => {
                    for var in t.variables() {
                        self.check_ref(&var, &path, node, Source::Template);
                    }
                }
                Err(e) => self.error(
                    Code::InvalidTemplate,
                    Some(node),
                    path,
                    e.to_string(),
                    e.hint(),
                ),
            }
        }
    }

    /// A context path read by a template or rule must start at a context
    /// root, and `input.<screen>.<field>` must name a real screen input.
    fn check_ref(&mut self, var: &str, path: &str, node: &str, source: Source) {
        if var.is_empty() {
            // `{"var": ""}` is the whole context.
            return;
        }
        let mut segs = var.split('.');
        let root = segs.next().unwrap_or_default();
        if root == "flags"
            && let Some(key) = var.strip_prefix("flags.").and_then(|k| k.split('.').next())
            && !key.is_empty()
        {
            self.flag_reads.push(FlagRead {
                key: key.to_string(),
                node: node.to_string(),
                path: path.to_string(),
                compared: None,
            });
        }
        if root == "secrets" {
            if !self.allow_secrets {
                self.error(
                    Code::SecretOutsideHttp,
                    Some(node),
                    path,
                    format!("{} reads `{var}`, but secrets may only be used in an `http` step's url, headers or body", source.name()),
                    Some("secrets never reach screens, rules or the session context; pass what the screen needs through the step's response".into()),
                );
            } else if segs.next().is_none_or(str::is_empty) {
                self.error(
                    Code::InvalidSecretRef,
                    Some(node),
                    path,
                    format!("template reads `{var}`; name one secret"),
                    Some("write `secrets.NAME`, read from the environment variable BATON_SECRET_NAME".into()),
                );
            }
            return;
        }
        if root == "steps"
            && let Some(step) = segs.next()
        {
            match self.index.get(step) {
                Some(&i) if self.flow.nodes[i].is_step() => {}
                found => {
                    let message = match found {
                        Some(&i) => format!(
                            "{} reads `{var}`, but `{step}` is a {} node, not a backend step",
                            source.name(),
                            self.flow.nodes[i].kind()
                        ),
                        None => format!(
                            "{} reads `{var}`, but there is no step `{step}`",
                            source.name()
                        ),
                    };
                    let hint = self.suggest(step);
                    self.error(Code::UnknownStep, Some(node), path, message, hint);
                }
            }
            return;
        }
        let known = CONTEXT_ROOTS.contains(&root) || (self.allow_answer && root == "answer");
        if !known {
            let hint = if self.fields.contains_key(root) {
                format!("`{root}` is a screen; its values are at `input.{var}`")
            } else {
                format!("paths start with one of: {}", CONTEXT_ROOTS.join(", "))
            };
            self.error(
                Code::UnknownContextRoot,
                Some(node),
                path,
                format!(
                    "{} reads `{var}`, but `{root}` is not part of the session context",
                    source.name()
                ),
                Some(hint),
            );
            return;
        }
        if let Some((_, known)) = CONTEXT_FIELDS.iter().find(|(r, _)| *r == root) {
            if let Some(field) = segs.next()
                && !known.contains(&field)
            {
                self.error(
                    Code::UnknownContextField,
                    Some(node),
                    path,
                    format!(
                        "{} reads `{var}`, but `{root}` has no `{field}`",
                        source.name()
                    ),
                    Some(format!("`{root}` has: {}", known.join(", "))),
                );
            }
            return;
        }
        if root != "input" {
            return;
        }
        let Some(screen) = segs.next() else { return };
        let Some(fields) = self.fields.get(screen) else {
            let message = match self.index.get(screen) {
                Some(&i) => format!(
                    "{} reads `{var}`, but `{screen}` is a {} node; only screens collect input",
                    source.name(),
                    self.flow.nodes[i].kind()
                ),
                None => format!(
                    "{} reads `{var}`, but there is no screen `{screen}`",
                    source.name()
                ),
            };
            let hint = self.suggest(screen);
            self.error(Code::UnknownInputScreen, Some(node), path, message, hint);
            return;
        };
        let Some(field) = segs.next() else { return };
        if !fields.contains(&field) {
            let hint = if fields.is_empty() {
                format!("screen `{screen}` has no inputs")
            } else {
                format!("inputs of `{screen}`: {}", fields.join(", "))
            };
            self.error(
                Code::UnknownInputField,
                Some(node),
                path,
                format!(
                    "{} reads `{var}`, but screen `{screen}` has no input `{field}`",
                    source.name()
                ),
                Some(hint),
            );
        }
    }

    /// `flags.<key>` must be a defined flag, and a literal a rule compares
    /// it with must have the type of one of its variants.
    fn check_flag_reads(&mut self, flags: &FlagSet) {
        let reads = std::mem::take(&mut self.flag_reads);
        let mut unknown_seen: HashSet<(String, String)> = HashSet::new();
        for read in reads {
            let Some(flag) = flags.flags.get(read.key.as_str()) else {
                if !unknown_seen.insert((read.key.clone(), read.path.clone())) {
                    continue;
                }
                let keys: Vec<&str> = flags.keys().collect();
                let hint = match keys.iter().min_by_key(|k| edit_distance(&read.key, k)) {
                    Some(best)
                        if edit_distance(&read.key, best)
                            <= read.key.len().max(best.len()) / 3 + 1 =>
                    {
                        format!("did you mean `flags.{best}`?")
                    }
                    _ if keys.is_empty() => "no flags are defined; flags are read from the `--flags` directory (default `flags`), as `baton serve` reads them".to_string(),
                    _ => format!(
                        "defined flags: {} (from the `--flags` directory, default `flags`)",
                        keys.iter().take(20).copied().collect::<Vec<_>>().join(", ")
                    ),
                };
                self.error(
                    Code::UnknownFlag,
                    Some(&read.node),
                    read.path,
                    format!(
                        "reads `flags.{}`, but no flag `{}` is defined",
                        read.key, read.key
                    ),
                    Some(hint),
                );
                continue;
            };
            let Some(literal) = &read.compared else {
                continue;
            };
            let mut types: Vec<&str> = flag.variants.values().map(json_type).collect();
            types.sort_unstable();
            types.dedup();
            let have = json_type(literal);
            if types.is_empty() || types.contains(&have) {
                continue;
            }
            self.error(
                Code::FlagTypeMismatch,
                Some(&read.node),
                read.path,
                format!(
                    "compares `flags.{}` with the {have} {literal}, but its variants are {}",
                    read.key,
                    types.join(" or ")
                ),
                Some(format!(
                    "compare with one of its variant values: {}",
                    flag.variants
                        .values()
                        .map(Value::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            );
        }
    }

    /// Checks a component tree (a screen's, a fallback's or an end node's).
    fn check_tree(
        &mut self,
        components: &'a [ComponentDef],
        base: &str,
        node: &str,
        actions: Option<&[ActionDef]>,
    ) -> Tree<'a> {
        let mut all: Vec<(&'a ComponentDef, String)> = Vec::new();
        walk_components(components, base, &mut |c, p| all.push((c, p.to_string())));
        let mut tree = Tree::default();
        let mut seen: HashMap<&str, String> = HashMap::new();
        for (c, path) in all {
            if let Some(cid) = c.id() {
                if !valid_id(cid) {
                    self.error(
                        Code::InvalidId,
                        Some(node),
                        format!("{path}.id"),
                        format!("component id `{cid}` is empty or has characters other than letters, digits, `_` and `-`"),
                        Some("input ids appear in `input.<screen>.<field>` paths; use e.g. `first_name`".into()),
                    );
                }
                if let Some(first) = seen.get(cid) {
                    self.error(
                        Code::DuplicateComponentId,
                        Some(node),
                        format!("{path}.id"),
                        format!("component id `{cid}` is already used by {first}"),
                        Some("component ids must be unique within a screen (and within its fallback)".into()),
                    );
                } else {
                    seen.insert(cid, path.clone());
                }
            }
            if c.is_input() {
                tree.inputs.push((path.clone(), c));
            }
            if matches!(c, ComponentDef::Custom { .. }) {
                tree.customs.push(path.clone());
                tree.custom_defs.push(c);
            }
            self.check_component(c, &path, node, actions);
        }
        tree
    }

    fn check_component(
        &mut self,
        c: &ComponentDef,
        path: &str,
        node: &str,
        actions: Option<&[ActionDef]>,
    ) {
        let mut texts: Vec<(&str, &Text)> = Vec::new();
        self.check_log_id(c.log_id(), &format!("{path}.log_id"), node);
        if let Some(rule) = c.visible_when() {
            self.check_guard(rule, &format!("{path}.visible_when"), node);
        }
        if let Some(v) = c.min_app_version()
            && parse_app_version(v).is_none()
        {
            self.error(
                Code::InvalidAppVersion,
                Some(node),
                format!("{path}.min_app_version"),
                format!("min_app_version `{v}` is not a version"),
                Some("use semver such as 5.2.0 (5.2 and 5 are read as 5.2.0 and 5.0.0)".into()),
            );
        }
        if let ComponentDef::Custom {
            inputs: Some(inputs),
            ..
        } = c
        {
            self.check_declared_inputs(inputs, path, node);
        }
        match c {
            ComponentDef::Text { text, .. } | ComponentDef::Markdown { text, .. } => {
                texts.push(("text", text))
            }
            ComponentDef::Heading { text, level, .. } => {
                texts.push(("text", text));
                if !(1..=6).contains(level) {
                    self.error(
                        Code::InvalidHeadingLevel,
                        Some(node),
                        format!("{path}.level"),
                        format!("heading level is {level}, but levels go from 1 to 6"),
                        Some("use 1 for the largest heading, 6 for the smallest".into()),
                    );
                }
            }
            ComponentDef::Image { url, alt, .. } => {
                texts.push(("url", url));
                if let Some(alt) = alt {
                    texts.push(("alt", alt));
                }
            }
            ComponentDef::TextInput {
                label,
                placeholder,
                min_length,
                max_length,
                pattern,
                pattern_message,
                ..
            } => {
                texts.push(("label", label));
                if let Some(p) = placeholder {
                    texts.push(("placeholder", p));
                }
                if let Some(m) = pattern_message {
                    texts.push(("pattern_message", m));
                }
                if let (Some(min), Some(max)) = (min_length, max_length)
                    && min > max
                {
                    self.error(
                        Code::InvalidLengthRange,
                        Some(node),
                        format!("{path}.min_length"),
                        format!("min_length {min} is greater than max_length {max}; no value can be valid"),
                        Some("swap the two, or raise max_length".into()),
                    );
                }
                if let Some(pattern) = pattern
                    && let Err(e) = compile_input_pattern(pattern)
                {
                    self.error(
                        Code::InvalidPattern,
                        Some(node),
                        format!("{path}.pattern"),
                        format!("pattern is not a valid regular expression: {}", one_line(&e.to_string())),
                        Some("patterns use Rust regex syntax (https://docs.rs/regex); the whole value must match".into()),
                    );
                }
            }
            ComponentDef::NumberInput {
                label, min, max, ..
            } => {
                texts.push(("label", label));
                if let (Some(min), Some(max)) = (min, max)
                    && min > max
                {
                    self.error(
                        Code::InvalidNumberRange,
                        Some(node),
                        format!("{path}.min"),
                        format!("min {min} is greater than max {max}; no value can be valid"),
                        Some("swap the two".into()),
                    );
                }
            }
            ComponentDef::EmailInput {
                label, placeholder, ..
            } => {
                texts.push(("label", label));
                if let Some(p) = placeholder {
                    texts.push(("placeholder", p));
                }
            }
            ComponentDef::Select { label, options, .. } => {
                texts.push(("label", label));
                if options.is_empty() {
                    self.error(
                        Code::EmptySelect,
                        Some(node),
                        format!("{path}.options"),
                        "select has no options, so nothing can be chosen",
                        Some("add at least one `{value, label}` option".into()),
                    );
                }
                let mut seen: HashMap<&str, usize> = HashMap::new();
                for (k, opt) in options.iter().enumerate() {
                    if let Some(first) = seen.get(opt.value.as_str()) {
                        self.error(
                            Code::DuplicateOptionValue,
                            Some(node),
                            format!("{path}.options[{k}].value"),
                            format!(
                                "option value `{}` is already used by {path}.options[{first}]",
                                opt.value
                            ),
                            Some("each option needs its own value; the label can repeat".into()),
                        );
                    } else {
                        seen.insert(&opt.value, k);
                    }
                }
                for (k, opt) in options.iter().enumerate() {
                    self.check_text(&opt.label, &format!("{path}.options[{k}].label"), node);
                }
            }
            ComponentDef::Checkbox { label, .. } => texts.push(("label", label)),
            ComponentDef::Date {
                label, min, max, ..
            } => {
                texts.push(("label", label));
                let mut parsed = [None, None];
                for (slot, (name, bound)) in [("min", min), ("max", max)].into_iter().enumerate() {
                    let Some(bound) = bound else { continue };
                    parsed[slot] = parse_date(bound);
                    if parsed[slot].is_none() {
                        self.error(
                            Code::InvalidDate,
                            Some(node),
                            format!("{path}.{name}"),
                            format!(
                                "date {name} `{bound}` is not a calendar date in YYYY-MM-DD form"
                            ),
                            Some("write dates like 2024-01-31".into()),
                        );
                    }
                }
                if let [Some(lo), Some(hi)] = parsed
                    && lo > hi
                {
                    self.error(
                        Code::InvalidDateRange,
                        Some(node),
                        format!("{path}.min"),
                        "date min is after max; no date can be valid",
                        Some("swap the two".into()),
                    );
                }
            }
            ComponentDef::Button { label, action, .. } => {
                texts.push(("label", label));
                let declared = actions.unwrap_or_default();
                if !declared.iter().any(|a| &a.id == action) {
                    let hint = match actions {
                        None => "end nodes have no actions; remove the button".to_string(),
                        Some([]) => "declare the action in the screen's `actions`".to_string(),
                        Some(list) => format!(
                            "declared actions: {}",
                            list.iter()
                                .map(|a| a.id.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    };
                    self.error(
                        Code::UnknownButtonAction,
                        Some(node),
                        format!("{path}.action"),
                        format!(
                            "button triggers action `{action}`, which this screen does not declare"
                        ),
                        Some(hint),
                    );
                }
            }
            ComponentDef::Card { title, .. } => {
                if let Some(t) = title {
                    texts.push(("title", t));
                }
            }
            ComponentDef::List { .. }
            | ComponentDef::Stack { .. }
            | ComponentDef::Custom { .. } => {}
        }
        for (field, text) in texts {
            self.check_text(text, &format!("{path}.{field}"), node);
        }
    }

    fn check_capabilities(
        &mut self,
        screen: &'a super::model::ScreenNode,
        base: &str,
        main: &Tree<'a>,
    ) {
        let id = screen.id.as_str();
        if let Some(v) = &screen.min_app_version
            && parse_app_version(v).is_none()
        {
            self.error(
                Code::InvalidAppVersion,
                Some(id),
                format!("{base}.min_app_version"),
                format!("min_app_version `{v}` is not a version"),
                Some("use semver such as 5.2.0 (5.2 and 5 are read as 5.2.0 and 5.0.0)".into()),
            );
        }
        let needs = main.customs.first().cloned().or_else(|| {
            screen
                .min_app_version
                .as_ref()
                .map(|_| format!("{base}.min_app_version"))
        });
        let fallbacks = screen.fallback.as_ref().map_or(&[][..], |f| f.list());
        let Some(all) = screen.fallback.as_ref().filter(|_| !fallbacks.is_empty()) else {
            if let Some(path) = needs {
                let why = if main.customs.is_empty() {
                    "declares `min_app_version`"
                } else {
                    "uses a custom component"
                };
                self.error(
                    Code::MissingFallback,
                    Some(id),
                    path,
                    format!("screen `{id}` {why}, so older or other clients need a `fallback`, and it has none"),
                    Some("add `fallback: {components: [...]}` built from core components".into()),
                );
            }
            return;
        };
        if needs.is_none() {
            self.warning(
                Code::UnusedFallback,
                Some(id),
                format!("{base}.fallback"),
                format!("screen `{id}` uses only core components and no `min_app_version`, so no client ever gets its fallback"),
                Some("remove the fallback, or set `min_app_version`".into()),
            );
        }
        // What the screen submits when shown as designed: its core inputs
        // and the inputs its custom components declare.
        let mut declared: BTreeMap<&str, &'static str> = main
            .inputs
            .iter()
            .filter_map(|(_, c)| Some((c.id()?, c.kind())))
            .collect();
        let mut custom_declares = false;
        for c in &main.custom_defs {
            if let ComponentDef::Custom {
                inputs: Some(inputs),
                ..
            } = c
            {
                custom_declares = true;
                for input in inputs {
                    declared.insert(&input.id, input.kind.component_kind());
                }
            }
        }
        let main_kinds: BTreeMap<&str, &ComponentDef> = main
            .inputs
            .iter()
            .filter_map(|(_, c)| Some((c.id()?, *c)))
            .collect();
        let base_fb = format!("{base}.fallback");
        for (k, fallback) in fallbacks.iter().enumerate() {
            let fb_base = all.path(&base_fb, k);
            if let Some(title) = &fallback.title {
                self.check_text(title, &format!("{fb_base}.title"), id);
            }
            let fb = self.check_tree(
                &fallback.components,
                &format!("{fb_base}.components"),
                id,
                Some(&screen.actions),
            );
            // Earlier fallbacks may use custom kinds (a client without them
            // gets the next); the last is what every client can render.
            if k + 1 == fallbacks.len() {
                for path in &fb.customs {
                    self.error(
                        Code::FallbackNotCore,
                        Some(id),
                        path.clone(),
                        "the last fallback must use core components only, but this one is custom",
                        Some(format!(
                            "core components: {}",
                            super::model::CORE_KINDS.join(", ")
                        )),
                    );
                }
            }
            let fb_ids: HashSet<&str> = fb.inputs.iter().filter_map(|(_, c)| c.id()).collect();
            for (path, c) in &fb.inputs {
                if let Some(main_c) = c.id().and_then(|cid| main_kinds.get(cid))
                    && main_c.kind() != c.kind()
                {
                    self.warning(
                        Code::FallbackInputMismatch,
                        Some(id),
                        format!("{path}.kind"),
                        format!(
                            "fallback input `{}` is a {}, but the screen's input of that id is a {}",
                            c.id().unwrap_or_default(),
                            c.kind(),
                            main_c.kind()
                        ),
                        Some("use the same kind so the submitted value has the same type".into()),
                    );
                }
            }
            for (path, c) in &main.inputs {
                if is_required(c)
                    && let Some(cid) = c.id()
                    && !fb_ids.contains(cid)
                {
                    self.warning(
                        Code::FallbackMissingInput,
                        Some(id),
                        path.clone(),
                        format!("required input `{cid}` is missing from the fallback, so clients on the fallback never submit it"),
                        Some(format!("add an input with id `{cid}` to the fallback")),
                    );
                }
            }
            if custom_declares {
                self.check_custom_inputs(id, &fb_base, &declared, &fb);
            }
        }
    }

    /// A custom component's declared `inputs`: unique valid ids, and
    /// constraints that fit the type.
    fn check_declared_inputs(
        &mut self,
        inputs: &[super::model::CustomInput],
        path: &str,
        node: &str,
    ) {
        use super::model::InputType;
        let mut seen = HashSet::new();
        for (k, input) in inputs.iter().enumerate() {
            let ip = format!("{path}.inputs[{k}]");
            if !valid_id(&input.id) || !seen.insert(input.id.as_str()) {
                self.error(
                    Code::InvalidId,
                    Some(node),
                    format!("{ip}.id"),
                    format!(
                        "input id `{}` is not a unique id of letters, digits, `_` and `-`",
                        input.id
                    ),
                    Some("it is the key of the submitted value, e.g. `address`".into()),
                );
            }
            let bound_ok = |v: &Option<Value>| match (input.kind, v) {
                (_, None) => true,
                (InputType::Number, Some(v)) => v.is_number(),
                (InputType::Date, Some(Value::String(s))) => parse_date(s).is_some(),
                _ => false,
            };
            let misplaced = [
                ("min", !bound_ok(&input.min)),
                ("max", !bound_ok(&input.max)),
                (
                    "pattern",
                    input.pattern.is_some() && input.kind != InputType::Text,
                ),
                (
                    "options",
                    input.kind == InputType::Select && input.options.is_empty(),
                ),
            ];
            for (field, bad) in misplaced {
                if bad {
                    self.error(
                        Code::InvalidCustomInput,
                        Some(node),
                        format!("{ip}.{field}"),
                        format!("`{field}` does not fit an input of type `{}`", input.kind.component_kind()),
                        Some("`min`/`max` are numbers for `number` and YYYY-MM-DD dates for `date`; `pattern` is for `text`; a `select` needs `options`".into()),
                    );
                }
            }
            if let Some(pattern) = &input.pattern
                && let Err(e) = compile_input_pattern(pattern)
            {
                self.error(
                    Code::InvalidPattern,
                    Some(node),
                    format!("{ip}.pattern"),
                    format!("pattern is not a valid regular expression: {}", one_line(&e.to_string())),
                    Some("patterns use Rust regex syntax (https://docs.rs/regex); the whole value must match".into()),
                );
            }
        }
    }

    /// A fallback of a screen whose custom components declare `inputs`
    /// must submit the same values: the same names with the same types.
    fn check_custom_inputs(
        &mut self,
        id: &str,
        fb_base: &str,
        declared: &BTreeMap<&str, &'static str>,
        fb: &Tree<'a>,
    ) {
        let got: BTreeMap<&str, (&str, String)> = fb
            .inputs
            .iter()
            .filter_map(|(path, c)| Some((c.id()?, (c.kind(), path.clone()))))
            .collect();
        let describe = |m: &BTreeMap<&str, &str>| {
            m.iter()
                .map(|(k, t)| format!("{k} ({t})"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let hint = Some(format!(
            "the screen submits: {}; give the fallback inputs with the same ids and kinds",
            describe(declared)
        ));
        for (name, kind) in declared {
            match got.get(name) {
                None => self.error(
                    Code::CustomInputMismatch,
                    Some(id),
                    format!("{fb_base}.components"),
                    format!("the screen submits `{name}`, but this fallback has no input `{name}`"),
                    hint.clone(),
                ),
                Some((have, path)) if have != kind => self.error(
                    Code::CustomInputMismatch,
                    Some(id),
                    format!("{path}.kind"),
                    format!("the screen submits `{name}` as a {kind}, but this fallback's input is a {have}"),
                    hint.clone(),
                ),
                Some(_) => {}
            }
        }
        for (name, (_, path)) in &got {
            if !declared.contains_key(name) {
                self.error(
                    Code::CustomInputMismatch,
                    Some(id),
                    format!("{path}.id"),
                    format!(
                        "this fallback submits `{name}`, which the screen as designed does not"
                    ),
                    hint.clone(),
                );
            }
        }
    }

    fn check_graph(&mut self) {
        let n = self.flow.nodes.len();
        let Some(&start) = self.index.get(self.flow.start.as_str()) else {
            // Without a start everything is unreachable; UNKNOWN_START says it.
            self.check_decision_cycles();
            return;
        };

        let mut reached = vec![false; n];
        let mut queue = VecDeque::from([start]);
        reached[start] = true;
        while let Some(i) = queue.pop_front() {
            for &t in &self.adjacency[i] {
                if !reached[t] {
                    reached[t] = true;
                    queue.push_back(t);
                }
            }
        }
        for (i, node) in self.flow.nodes.iter().enumerate() {
            if !reached[i] && !self.duplicates.contains(&i) {
                self.warning(
                    Code::UnreachableNode,
                    Some(node.id()),
                    format!("$.nodes[{i}]"),
                    format!(
                        "no path from `start` leads to {} `{}`",
                        node.kind(),
                        node.id()
                    ),
                    Some("add an edge to it, or remove it".into()),
                );
            }
        }

        self.check_decision_cycles();

        // Backwards from the ends: which nodes can still finish?
        let mut reverse = vec![Vec::new(); n];
        for (i, targets) in self.adjacency.iter().enumerate() {
            for &t in targets {
                reverse[t].push(i);
            }
        }
        let mut can_finish = vec![false; n];
        let mut queue: VecDeque<usize> = (0..n)
            .filter(|&i| {
                matches!(self.flow.nodes[i], NodeDef::End(_)) || self.broken_ends.contains(&i)
            })
            .collect();
        for &i in &queue {
            can_finish[i] = true;
        }
        while let Some(i) = queue.pop_front() {
            for &p in &reverse[i] {
                if !can_finish[p] {
                    can_finish[p] = true;
                    queue.push_back(p);
                }
            }
        }
        for (i, node) in self.flow.nodes.iter().enumerate() {
            if reached[i] && !can_finish[i] {
                self.warning(
                    Code::NoPathToEnd,
                    Some(node.id()),
                    format!("$.nodes[{i}]"),
                    format!("from {} `{}` no path leads to an `end` node; sessions that get here never finish", node.kind(), node.id()),
                    Some("add an edge towards an end node".into()),
                );
            }
        }
    }

    /// Strongly connected components of the decision-only graph: any with
    /// more than one node, or a decision pointing at itself, can loop
    /// forever without a screen in between.
    fn check_decision_cycles(&mut self) {
        let nodes = &self.flow.nodes;
        // Transforms run inline too: a cycle through them never pauses.
        let is_decision =
            |i: usize| matches!(nodes[i], NodeDef::Decision(_) | NodeDef::Transform(_));
        let graph: Vec<Vec<usize>> = (0..nodes.len())
            .map(|i| {
                if is_decision(i) {
                    self.adjacency[i]
                        .iter()
                        .copied()
                        .filter(|&t| is_decision(t))
                        .collect()
                } else {
                    Vec::new()
                }
            })
            .collect();
        let mut cycles: Vec<Vec<usize>> = tarjan(&graph)
            .into_iter()
            .filter(|scc| scc.len() > 1 || graph[scc[0]].contains(&scc[0]))
            .map(|mut scc| {
                scc.sort_unstable();
                scc
            })
            .collect();
        cycles.sort_unstable();
        for scc in cycles {
            let first = scc[0];
            let ids: Vec<String> = scc
                .iter()
                .map(|&i| format!("`{}`", nodes[i].id()))
                .collect();
            let message = if scc.len() == 1 {
                format!(
                    "decision `{}` can go to itself and loop forever without showing a screen",
                    nodes[first].id()
                )
            } else {
                format!(
                    "decisions {} form a cycle that can loop forever without showing a screen",
                    ids.join(", ")
                )
            };
            self.error(
                Code::DecisionCycle,
                Some(nodes[first].id()),
                format!("$.nodes[{first}]"),
                message,
                Some("route one of the edges through a screen, or guard it so the cycle cannot close".into()),
            );
        }
    }
}

/// What a component tree contains, for the screen-level checks.
#[derive(Default)]
struct Tree<'a> {
    inputs: Vec<(String, &'a ComponentDef)>,
    customs: Vec<String>,
    custom_defs: Vec<&'a ComponentDef>,
}

/// `http` steps whose host and port `allowed` refuses.
pub fn check_hosts(
    flow: &FlowDef,
    allowed: &crate::flow::hosts::AllowList,
    file: &str,
) -> Vec<Issue> {
    let mut out = Vec::new();
    for (i, node) in flow.nodes.iter().enumerate() {
        for (field, url) in node.upstream_urls() {
            let path = format!("$.nodes[{i}].{field}");
            let Ok(origin) = literal_url_origin(url) else {
                continue; // INVALID_STEP_URL reports it
            };
            let host = origin.host_str().unwrap_or_default();
            let port = origin.port_or_known_default().unwrap_or(0);
            if !allowed.allows(host, port) {
                out.push(Issue {
                    severity: Severity::Error,
                    code: Code::HostNotAllowed,
                    file: file.to_string(),
                    node: Some(node.id().to_string()),
                    path,
                    message: format!(
                        "step `{}` calls `{host}:{port}`, which the server does not allow",
                        node.id()
                    ),
                    hint: Some(format!(
                        "add `{host}` (or `{host}:{port}`) to --allow-hosts (BATON_ALLOW_HOSTS); allowed now: {}",
                        allowed.describe()
                    )),
                    line: None,
                    column: None,
                });
            }
        }
    }
    out
}

/// JSON type names as messages use them.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

/// `(flag key, literal)` for every comparison in `logic` between a
/// `flags.<key>` var and a scalar literal (`null` left out: comparing
/// with null asks "is it unset", which fits any flag).
fn flag_comparisons(logic: &Value, out: &mut Vec<(String, Value)>) {
    const COMPARISONS: &[&str] = &["==", "===", "!=", "!==", "<", "<=", ">", ">="];
    match logic {
        Value::Object(map) => {
            for (op, args) in map {
                if let (true, Value::Array(args)) = (COMPARISONS.contains(&op.as_str()), args) {
                    let keys: Vec<&str> = args.iter().filter_map(flag_var).collect();
                    for key in keys {
                        for lit in args.iter().filter(|a| {
                            matches!(a, Value::Bool(_) | Value::Number(_) | Value::String(_))
                        }) {
                            out.push((key.to_string(), lit.clone()));
                        }
                    }
                }
                flag_comparisons(args, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| flag_comparisons(i, out)),
        _ => {}
    }
}

/// The key of `{"var": "flags.<key>"}` (or `{"var": ["flags.<key>", default]}`).
fn flag_var(v: &Value) -> Option<&str> {
    let var = v.as_object()?.get("var")?;
    let path = match var {
        Value::String(s) => s.as_str(),
        Value::Array(a) => a.first()?.as_str()?,
        _ => return None,
    };
    let key = path.strip_prefix("flags.")?;
    (!key.contains('.') && !key.is_empty()).then_some(key)
}

fn valid_retry_on(cond: &str) -> bool {
    matches!(cond, "connect" | "timeout" | "5xx" | "4xx")
        || cond.parse::<u16>().is_ok_and(|s| (100..=599).contains(&s))
}

fn http_header_name_invalid(name: &str) -> bool {
    name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The `scheme://host[:port]` of a step URL whose scheme and host are
/// written literally (templates may follow in the path and query).
pub fn literal_url_origin(url: &str) -> Result<url::Url, String> {
    let (literal, templated) = match url.find(['{']) {
        Some(at) => (&url[..at], true),
        None => (url, false),
    };
    if !(literal.starts_with("http://") || literal.starts_with("https://")) {
        return Err("it must start with `http://` or `https://`".into());
    }
    let after_scheme = &literal[literal.find("://").map_or(0, |i| i + 3)..];
    if templated && !after_scheme.contains('/') {
        return Err("the host is a template; only the path and query may be".into());
    }
    let parsed = url::Url::parse(literal).map_err(|e| format!("not a URL ({e})"))?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("it has no host".into());
    }
    Ok(parsed)
}

fn is_required(c: &ComponentDef) -> bool {
    matches!(
        c,
        ComponentDef::TextInput { required: true, .. }
            | ComponentDef::NumberInput { required: true, .. }
            | ComponentDef::EmailInput { required: true, .. }
            | ComponentDef::Select { required: true, .. }
            | ComponentDef::Checkbox { required: true, .. }
            | ComponentDef::Date { required: true, .. }
    )
}

/// An edge without `when` (or with `when: true`) always matches.
fn is_unguarded(when: Option<&Value>) -> bool {
    matches!(when, None | Some(Value::Bool(true)))
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Levenshtein distance, for "did you mean" hints (ids are short).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Tarjan's strongly connected components, iterative (a flow may have a
/// thousand nodes; no deep recursion).
fn tarjan(graph: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = graph.len();
    let mut index = vec![usize::MAX; n];
    let mut low = vec![0; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut out = Vec::new();
    let mut next = 0;
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        // (node, position in its edge list)
        let mut work = vec![(root, 0usize)];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut pos)) = work.last_mut() {
            if let Some(&w) = graph[v].get(*pos) {
                *pos += 1;
                if index[w] == usize::MAX {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
            } else {
                work.pop();
                if let Some(&(parent, _)) = work.last() {
                    low[parent] = low[parent].min(low[v]);
                }
                if low[v] == index[v] {
                    let mut scc = Vec::new();
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        scc.push(w);
                        if w == v {
                            break;
                        }
                    }
                    out.push(scc);
                }
            }
        }
    }
    out
}

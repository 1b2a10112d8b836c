//! Reading flow files: YAML or JSON text → `serde_json::Value` → typed
//! [`FlowDef`], with size limits, JSON paths on structural errors and a
//! content hash that identifies a version.
//!
//! Parsing only: whether a parsed flow makes sense is
//! [`validate`]'s job ([`check_dir`] does both).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::error::FlowError;
use super::model::{ComponentDef, FallbackDef, FlowDef, NODE_KINDS, NodeDef, SelectOption};
use super::validate::{Issue, Severity};

/// Largest flow file read.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Most nodes one flow may have.
pub const MAX_NODES: usize = 1000;

/// A flow that parsed, with where it came from and its version hash.
#[derive(Debug, Clone)]
pub struct LoadedFlow {
    pub file: PathBuf,
    pub def: FlowDef,
    /// [`content_hash`] of `def`.
    pub hash: String,
}

/// The outcome of reading a directory: the flows that parsed, and every
/// issue found on the way (one bad file never hides the others).
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub flows: Vec<LoadedFlow>,
    pub issues: Vec<Issue>,
}

impl LoadReport {
    pub fn error_count(&self) -> usize {
        self.issues
            .iter()
            .filter(|i| i.severity == Severity::Error)
            .count()
    }

    pub fn has_errors(&self) -> bool {
        self.error_count() > 0
    }
}

/// Whether `path` names a file this module reads (`.yaml`, `.yml`, `.json`).
pub fn is_flow_file(path: &Path) -> bool {
    format_of(path).is_some()
}

use crate::document::{Format, format_of, yaml_message, yaml_options};

/// Reads every flow file directly in `dir` (not in subdirectories), in
/// file-name order. Other files and dotfiles (editor backups, lock files)
/// are skipped, and so are flag files (top-level `flags`). A flow id seen
/// twice is an issue on the later file, whose flow is left out. Only an
/// unreadable directory is an `Err`.
pub fn load_dir(dir: &Path) -> Result<LoadReport, FlowError> {
    scan_dir(dir, None)
}

/// [`load_dir`] (`checks: None`), or the lenient read `baton validate`
/// does (`Some`): a flow whose only structural problems are unknown fields
/// is validated as if they were not there, so one typo hides nothing, and
/// every issue carries its line and column.
fn scan_dir(dir: &Path, checks: Option<&CheckOptions>) -> Result<LoadReport, FlowError> {
    let unreadable = |source| FlowError::DirUnreadable {
        dir: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_none_or(|n| n.starts_with('.'));
        // `is_file` follows symlinks, so a linked flow file is read.
        if !hidden && is_flow_file(&path) && path.is_file() {
            files.push(path);
        }
    }
    files.sort();

    let mut report = LoadReport::default();
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    for file in files {
        let loaded = match checks {
            None => load_file(&file),
            Some(opts) => {
                let (def, issues) = check_file(&file, opts);
                let salvaged = issues.iter().any(|i| i.code == "FLOW_STRUCTURE");
                match def {
                    Some(def) if !salvaged => {
                        report.issues.extend(issues);
                        Ok(def)
                    }
                    // A flow read without its unknown fields is checked,
                    // not kept.
                    Some(_) => {
                        report.issues.extend(issues);
                        continue;
                    }
                    None => Err(issues),
                }
            }
        };
        match loaded {
            Ok(def) => {
                if let Some(first) = seen.get(&def.id) {
                    report.issues.push(
                        FlowError::DuplicateFlowId {
                            id: def.id.clone(),
                            file: file.clone(),
                            first: first.clone(),
                        }
                        .to_issue(),
                    );
                    continue;
                }
                seen.insert(def.id.clone(), file.clone());
                let hash = content_hash(&def);
                report.flows.push(LoadedFlow { file, def, hash });
            }
            // Flag and experiment definitions may live next to the flows;
            // they are `crate::flags`' and `crate::experiments`' to check.
            Err(_)
                if crate::flags::load::is_flag_file(&file)
                    || crate::experiments::is_experiment_file(&file) => {}
            Err(issues) => report.issues.extend(issues),
        }
    }
    if checks.is_some() {
        // Subflows across the directory's flows; a child not here may be
        // published on the server, so its absence is a warning.
        let runs: HashMap<&str, Vec<String>> = report
            .flows
            .iter()
            .map(|l| (l.def.id.as_str(), super::compose::children_of(&l.def)))
            .collect();
        for l in &report.flows {
            let mut issues = super::compose::check_subflows(
                &l.def,
                &l.file.display().to_string(),
                Severity::Warning,
                &|id: &str| runs.get(id).cloned(),
            );
            if !issues.is_empty() {
                locate_lines(
                    &mut issues,
                    &fs::read_to_string(&l.file).unwrap_or_default(),
                );
            }
            report.issues.extend(issues);
        }
    }
    Ok(report)
}

/// [`load_dir`], then [`validate`] on every flow that parsed (see
/// [`check_file`]); validation issues are appended to the report.
pub fn check_dir(dir: &Path) -> Result<LoadReport, FlowError> {
    check_dir_with(dir, &CheckOptions::default())
}

/// [`check_dir`] with the flag definitions flows are checked against.
pub fn check_dir_with(dir: &Path, opts: &CheckOptions) -> Result<LoadReport, FlowError> {
    scan_dir(dir, Some(opts))
}

/// What `baton validate` checks flows against besides the flows themselves.
#[derive(Debug, Default)]
pub struct CheckOptions {
    /// The flags `flags.<key>` must name (`--flags`); `None`: not checked.
    pub flags: Option<std::sync::Arc<crate::flags::FlagSet>>,
    /// Mock scenarios that every flow checked must declare (`--scenario`):
    /// what scripts, end-to-end tests and docs ask for by name.
    pub scenarios: Vec<String>,
    /// What `http` steps may call (`--allow-hosts`); `None`: not checked.
    pub allow_hosts: Option<super::hosts::AllowList>,
}

/// `baton validate` on one flow file: every parse and validation issue,
/// with line and column. Unknown fields are reported and then left out, so
/// the rest of the file is still validated; the flow comes back when it
/// could be read that way.
pub fn check_file(path: &Path, opts: &CheckOptions) -> (Option<FlowDef>, Vec<Issue>) {
    match read_text(path) {
        Ok(text) => check_text(path, &text, opts),
        Err(issues) => (None, issues),
    }
}

/// [`check_file`] on text that is not on disk (a draft saved over the
/// API); `path` names it in issues and its extension picks the format
/// (YAML, which JSON also is, unless it ends in `.json`).
pub fn check_text(path: &Path, text: &str, opts: &CheckOptions) -> (Option<FlowDef>, Vec<Issue>) {
    let (def, mut issues) = match parse_value(path, text) {
        Ok(value) => parse_flow_lenient(path, &value),
        Err(issues) => (None, issues),
    };
    if let Some(def) = &def {
        let file = path.display().to_string();
        issues.extend(super::validate::validate_with(
            def,
            &file,
            opts.flags.as_deref(),
        ));
        if let Some(allow) = &opts.allow_hosts {
            issues.extend(super::validate::check_hosts(def, allow, &file));
        }
        let declared = def.mock_scenarios();
        for scenario in opts.scenarios.iter().filter(|s| !declared.contains(*s)) {
            issues.push(Issue {
                severity: super::validate::Severity::Error,
                code: crate::codes::Code::UnknownMockScenario,
                file: file.clone(),
                node: None,
                path: "$".into(),
                message: format!(
                    "no step of flow `{}` declares the mock scenario `{scenario}`",
                    def.id
                ),
                hint: Some(format!(
                    "declared: {}",
                    declared.iter().cloned().collect::<Vec<_>>().join(", ")
                )),
                line: None,
                column: None,
            });
        }
    }
    locate_lines(&mut issues, text);
    (def, issues)
}

/// Gives the issues without a line the line and column of their path in
/// `text`.
fn locate_lines(issues: &mut [Issue], text: &str) {
    if let Some(positions) = super::position::Positions::of(text) {
        for issue in issues.iter_mut().filter(|i| i.line.is_none()) {
            if let Some((line, column)) = positions.find(&issue.path) {
                issue.line = Some(line);
                issue.column = Some(column);
            }
        }
    }
}

/// Like [`parse_flow_value`], but a flow whose only structural problems
/// are unknown fields is still returned (without them), next to the issues.
pub fn parse_flow_lenient(path: &Path, value: &Value) -> (Option<FlowDef>, Vec<Issue>) {
    let mut issues = match parse_flow_value(path, value) {
        Ok(def) => return (Some(def), Vec::new()),
        Err(issues) => issues,
    };
    let mut value = value.clone();
    let mut reported = issues.len();
    // Each round removes the unknown fields found so far; a node reports
    // one problem at a time, so a node with two typos takes two rounds.
    for _ in 0..MAX_REPAIR_ROUNDS {
        let mut repaired = false;
        for issue in &issues[issues.len() - reported..] {
            if issue.code == "FLOW_STRUCTURE" && issue.message.starts_with("unknown field") {
                repaired |= remove_path(&mut value, &issue.path);
            } else {
                return (None, issues);
            }
        }
        if !repaired {
            return (None, issues);
        }
        match parse_flow_value(path, &value) {
            Ok(def) => return (Some(def), issues),
            Err(more) => {
                reported = more.len();
                issues.extend(more);
            }
        }
    }
    (None, issues)
}

/// Most unknown-field repair rounds per file: a file with more typos than
/// this in one node still gets every typo reported, only not validated.
const MAX_REPAIR_ROUNDS: usize = 20;

/// Removes the member `path` (`$.nodes[0].urll`) names; whether it did.
fn remove_path(value: &mut Value, path: &str) -> bool {
    let Some((parent, key)) = path.rsplit_once('.') else {
        return false;
    };
    if key.contains('[') {
        return false;
    }
    let Some(segs) = super::position::segments(parent) else {
        return false;
    };
    let mut here = value;
    for seg in segs {
        here = match seg {
            super::position::Seg::Key(k) => match here.get_mut(k) {
                Some(v) => v,
                None => return false,
            },
            super::position::Seg::Index(i) => match here.get_mut(i) {
                Some(v) => v,
                None => return false,
            },
        };
    }
    here.as_object_mut()
        .is_some_and(|o| o.remove(key).is_some())
}

/// Reads and parses one flow file, refusing files over [`MAX_FILE_BYTES`]
/// before reading them.
pub fn load_file(path: &Path) -> Result<FlowDef, Vec<Issue>> {
    parse_flow(path, &read_text(path)?)
}

/// The text of a flow file, within [`MAX_FILE_BYTES`].
fn read_text(path: &Path) -> Result<String, Vec<Issue>> {
    let one = |e: FlowError| vec![e.to_issue()];
    let unreadable = |source| FlowError::FileUnreadable {
        file: path.to_path_buf(),
        source,
    };
    // A path that does not exist is reported as such, whatever its name.
    let size = fs::metadata(path).map_err(|e| one(unreadable(e)))?.len();
    if format_of(path).is_none() {
        return Err(one(FlowError::UnsupportedFormat {
            file: path.to_path_buf(),
        }));
    }
    if size > MAX_FILE_BYTES {
        return Err(one(FlowError::FileTooLarge {
            file: path.to_path_buf(),
            size,
            max: MAX_FILE_BYTES,
        }));
    }
    fs::read_to_string(path).map_err(|e| one(unreadable(e)))
}

/// Parses flow text. `path` picks the format by extension (`.json` is
/// JSON, anything else YAML) and names the file in issues. Structural
/// problems come back all at once where they are independent: one for the
/// flow's own fields and one per broken node.
pub fn parse_flow(path: &Path, text: &str) -> Result<FlowDef, Vec<Issue>> {
    parse_flow_value(path, &parse_value(path, text)?)
}

/// The document in `text`, as JSON or YAML by `path`'s extension.
fn parse_value(path: &Path, text: &str) -> Result<Value, Vec<Issue>> {
    let one = |e: FlowError| vec![e.to_issue()];
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(one(FlowError::FileTooLarge {
            file: path.to_path_buf(),
            size: text.len() as u64,
            max: MAX_FILE_BYTES,
        }));
    }
    let value = match format_of(path) {
        Some(Format::Json) => serde_json::from_str::<Value>(text).map_err(|e| {
            one(FlowError::Syntax {
                file: path.to_path_buf(),
                format: "JSON",
                message: e.to_string(),
            })
        })?,
        _ => serde_saphyr::from_str_with_options::<Value>(text, yaml_options()).map_err(|e| {
            one(FlowError::Syntax {
                file: path.to_path_buf(),
                format: "YAML",
                message: yaml_message(&e),
            })
        })?,
    };
    Ok(value)
}

/// Turns an already-parsed document into a [`FlowDef`] (the GraphQL API
/// receives flows as JSON values).
pub fn parse_flow_value(path: &Path, value: &Value) -> Result<FlowDef, Vec<Issue>> {
    if let Some(nodes) = value.get("nodes").and_then(Value::as_array)
        && nodes.len() > MAX_NODES
    {
        return Err(vec![
            FlowError::TooManyNodes {
                file: path.to_path_buf(),
                count: nodes.len(),
                max: MAX_NODES,
            }
            .to_issue(),
        ]);
    }
    match serde_path_to_error::deserialize::<_, FlowDef>(value) {
        Ok(flow) => Ok(flow),
        Err(err) => {
            let mut issues: Vec<Issue> = locate_all(value)
                .into_iter()
                .map(|s| structure_issue(path, s))
                .collect();
            if issues.is_empty() {
                // The locator mirrors serde's behaviour; should the two ever
                // disagree, serde's own (shallower) answer still gets out.
                issues.push(structure_issue(
                    path,
                    Located {
                        path: json_path("$", err.path()),
                        node: None,
                        message: improve(&err.inner().to_string()),
                    },
                ));
            }
            Err(issues)
        }
    }
}

/// SHA-256 (hex) of the flow's canonical JSON: its typed form serialized
/// with object keys sorted, so formatting, comments, key order and YAML vs
/// JSON do not change the hash, while any change in meaning does.
pub fn content_hash(flow: &FlowDef) -> String {
    let digest = Sha256::digest(canonical_json(flow).as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The canonical JSON text [`content_hash`] hashes.
pub fn canonical_json(flow: &FlowDef) -> String {
    let value = serde_json::to_value(flow).expect("a FlowDef always serializes");
    serde_json::to_string(&sorted(value)).expect("a Value always serializes")
}

fn sorted(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

// ---------------------------------------------------------------------------
// Finding where a structural error is.
//
// serde loses the path inside internally tagged and untagged enums (it
// buffers the value first), and nodes and components are both. So when the
// whole flow fails to parse, the locator walks the value itself: the flow's
// own fields, then each node as its concrete struct, then each component by
// probing its fields one at a time.

struct Located {
    path: String,
    node: Option<String>,
    message: String,
}

fn structure_issue(file: &Path, l: Located) -> Issue {
    FlowError::Structure {
        file: file.to_path_buf(),
        path: l.path,
        node: l.node,
        message: l.message,
    }
    .to_issue()
}

fn locate_all(value: &Value) -> Vec<Located> {
    let mut out = Vec::new();
    if !value.is_object() {
        out.push(Located {
            path: "$".into(),
            node: None,
            message: format!(
                "expected a flow: a mapping with `id`, `start` and `nodes`, found {}",
                type_name(value)
            ),
        });
        return out;
    }
    let nodes = value.get("nodes").and_then(Value::as_array);
    // The flow's own fields, checked with the nodes emptied so that a bad
    // node does not mask them.
    let mut shell = value.clone();
    if nodes.is_some()
        && let Some(obj) = shell.as_object_mut()
    {
        obj.insert("nodes".into(), Value::Array(Vec::new()));
    }
    if let Err(e) = serde_path_to_error::deserialize::<_, FlowDef>(&shell) {
        out.push(Located {
            path: json_path("$", e.path()),
            node: None,
            message: improve(&e.inner().to_string()),
        });
    }
    for (i, node) in nodes.into_iter().flatten().enumerate() {
        if NodeDef::deserialize(node).is_err() {
            let id = node.get("id").and_then(Value::as_str).map(str::to_string);
            let (path, message) = locate_node(node, &format!("$.nodes[{i}]"));
            out.push(Located {
                path,
                node: id,
                message,
            });
        }
    }
    out
}

fn locate_node(v: &Value, base: &str) -> (String, String) {
    let Some(obj) = v.as_object() else {
        return (
            base.into(),
            format!("expected a node object, found {}", type_name(v)),
        );
    };
    let kinds = || {
        NODE_KINDS
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let Some(kind) = obj.get("kind") else {
        return (
            base.into(),
            format!("missing field `kind` (one of {})", kinds()),
        );
    };
    let mut fields = obj.clone();
    fields.remove("kind");
    let fields = Value::Object(fields);
    let Some(result) = kind.as_str().and_then(|k| NodeDef::probe(k, &fields)) else {
        return (
            format!("{base}.kind"),
            format!(
                "unknown node kind {}, expected one of {}",
                show(kind),
                kinds()
            ),
        );
    };
    match result {
        Some(err) => descend(&fields, base, err.path(), &err.inner().to_string()),
        None => (base.into(), "invalid node".into()),
    }
}

fn probe_struct<'a, T: Deserialize<'a>>(
    v: &'a Value,
) -> Option<serde_path_to_error::Error<serde_json::Error>> {
    serde_path_to_error::deserialize::<_, T>(v).err()
}

/// Follows serde's path into `root`; where it stops at a component, the
/// component locator takes over.
fn descend(
    root: &Value,
    base: &str,
    path: &serde_path_to_error::Path,
    message: &str,
) -> (String, String) {
    let mut here = root;
    let mut at = base.to_string();
    let mut parent_key: Option<&str> = None;
    let mut last_key: Option<&str> = None;
    for seg in path {
        match seg {
            serde_path_to_error::Segment::Seq { index } => {
                at.push_str(&format!("[{index}]"));
                here = here.get(*index).unwrap_or(&Value::Null);
                parent_key = last_key.take();
            }
            serde_path_to_error::Segment::Map { key } => {
                at.push('.');
                at.push_str(key);
                here = here.get(key.as_str()).unwrap_or(&Value::Null);
                last_key = Some(key.as_str());
                parent_key = None;
            }
            _ => break,
        }
    }
    if matches!(parent_key, Some("components" | "children" | "fields")) {
        return locate_component(here, &at);
    }
    if last_key == Some("fallback") {
        // One fallback or a list of them: serde only says neither fits.
        let items: Vec<(String, &Value)> = match here {
            Value::Array(list) => list
                .iter()
                .enumerate()
                .map(|(k, v)| (format!("{at}[{k}]"), v))
                .collect(),
            one => vec![(at.clone(), one)],
        };
        for (item_at, item) in items {
            if let Some(e) = probe_struct::<FallbackDef>(item) {
                return descend(item, &item_at, e.path(), &e.inner().to_string());
            }
        }
    }
    (at, improve(message))
}

fn locate_component(v: &Value, base: &str) -> (String, String) {
    let Some(obj) = v.as_object() else {
        return (
            base.into(),
            format!("expected a component object, found {}", type_name(v)),
        );
    };
    let Some(kind) = obj.get("kind") else {
        return (base.into(), "missing field `kind`".into());
    };
    let known = kind
        .as_str()
        .is_some_and(|k| k == "custom" || super::model::CORE_KINDS.contains(&k));
    if !known {
        let mut kinds: Vec<&str> = super::model::CORE_KINDS.to_vec();
        kinds.push("custom");
        return (
            format!("{base}.kind"),
            format!(
                "unknown component kind {}, expected one of {}",
                show(kind),
                kinds.join(", ")
            ),
        );
    }
    if let Some(children) = obj.get("children").and_then(Value::as_array) {
        for (j, child) in children.iter().enumerate() {
            if ComponentDef::deserialize(child).is_err() {
                return locate_component(child, &format!("{base}.children[{j}]"));
            }
        }
    }
    if let Some(options) = obj.get("options").and_then(Value::as_array) {
        for (j, opt) in options.iter().enumerate() {
            if let Some(e) = probe_struct::<SelectOption>(opt) {
                return (
                    json_path(&format!("{base}.options[{j}]"), e.path()),
                    improve(&e.inner().to_string()),
                );
            }
        }
    }
    let Err(whole) = ComponentDef::deserialize(v) else {
        return (base.into(), "invalid component".into());
    };
    let message = whole.to_string();
    if let Some(field) = backticked(&message, "unknown field `") {
        return (format!("{base}.{field}"), message);
    }
    if message.starts_with("missing field") {
        return (base.into(), message);
    }
    // Only the message is left, not which field it is about: try each
    // field alone with the tag. Missing-field errors are expected then;
    // any other error belongs to that field.
    for (key, value) in obj {
        if key == "kind" {
            continue;
        }
        let mut single = Map::new();
        single.insert("kind".into(), kind.clone());
        single.insert(key.clone(), value.clone());
        if let Err(e) = ComponentDef::deserialize(&Value::Object(single)) {
            let m = e.to_string();
            if !m.starts_with("missing field") {
                return (format!("{base}.{key}"), improve(&m));
            }
        }
    }
    (base.into(), improve(&message))
}

fn backticked<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = message.strip_prefix(prefix)?;
    rest.split('`').next()
}

/// serde's messages for the two untagged types say nothing useful.
fn improve(message: &str) -> String {
    if message.contains("untagged enum Text") {
        "expected text: a string, or a map from locale to string such as {en: \"Hi\", de: \"Hallo\"}"
            .into()
    } else if message.contains("untagged enum Edges") {
        "expected edges: a target node id, or a list such as [{when: <rule>, to: <node id>}, {to: <node id>}]"
            .into()
    } else if message.starts_with("invalid type: ") && message.ends_with("expected a string") {
        format!("{message}; in YAML, quote values that should be text, e.g. \"1\"")
    } else {
        message.into()
    }
}

/// A value for a message: strings in backticks, anything else as JSON.
fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("`{s}`"),
        other => other.to_string(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// `base` followed by serde_path_to_error's segments in `$.a[0].b` form.
fn json_path(base: &str, path: &serde_path_to_error::Path) -> String {
    let mut out = base.to_string();
    for seg in path {
        match seg {
            serde_path_to_error::Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            serde_path_to_error::Segment::Map { key } => {
                out.push('.');
                out.push_str(key);
            }
            serde_path_to_error::Segment::Enum { variant } => {
                out.push('.');
                out.push_str(variant);
            }
            serde_path_to_error::Segment::Unknown => {}
        }
    }
    out
}

/// `baton validate PATH…`: every problem in the given files and
/// directories, parse and validation issues alike. Files whose top level
/// has a `flags` member are flag definitions and are checked by
/// [`crate::flags::load`] instead; experiments (files in a directory named
/// `experiments`, or with top-level `flag` and `goals`) by
/// [`crate::experiments::check_paths`].
pub fn check_paths(paths: &[std::path::PathBuf]) -> Vec<Issue> {
    check_paths_with(paths, &CheckOptions::default())
}

/// [`check_paths`] against `opts` (the flags of `--flags`).
pub fn check_paths_with(paths: &[std::path::PathBuf], opts: &CheckOptions) -> Vec<Issue> {
    let mut issues = Vec::new();
    for path in paths {
        let in_experiments_dir = path
            .parent()
            .is_some_and(|d| d.file_name().is_some_and(|n| n == "experiments"));
        if crate::experiments::is_experiments_dir(path)
            || (path.is_file()
                && (in_experiments_dir || crate::experiments::is_experiment_file(path)))
        {
            // Checked below, with the flags.
        } else if path.is_dir() {
            match check_dir_with(path, opts) {
                Ok(report) => issues.extend(report.issues),
                Err(e) => issues.push(e.to_issue()),
            }
            // The directory opened for the flow check, so this one will too.
            if let Ok(found) = crate::flags::load::check_dir(path) {
                issues.extend(found);
            }
        } else if crate::flags::load::is_flag_file(path) {
            issues.extend(crate::flags::load::check_file(path));
        } else {
            issues.extend(check_file(path, opts).1);
        }
    }
    issues.extend(crate::experiments::check_paths(paths));
    issues
}

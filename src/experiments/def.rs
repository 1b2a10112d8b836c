//! Experiment definition files: reading (`experiments/*.yaml|yml|json`),
//! [`validate`] against the flags, and [`Experiment`], the checked form
//! with the eligibility rule compiled, timestamps parsed and the namespace
//! bucketing.
//!
//! ```yaml
//! id: onboarding-headline
//! flag: signup-headline        # its variants are the arms
//! control: classic
//! eligible: {"==": [{"var": "client.platform"}, "ios"]}   # optional
//! goals: [{flow: onboarding, node: done}]
//! start: "2026-12-01T09:00:00Z"   # optional, RFC 3339
//! stop: "2027-01-01T00:00:00Z"    # optional
//! namespace: {name: onboarding, range: [0, 50]}  # optional, percent, [from, to)
//! ```
//!
//! Arms and weights are the flag's: the variants, split by the `fractional`
//! in its targeting ([`arm_weights`]).
//!
//! A file is an experiment file when its top level has both `flag` and
//! `goals` ([`is_experiment_document`]), wherever it lives.

use crate::codes::Code;
use std::collections::HashMap;
use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use crate::document::{self, DocError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ExperimentError;
use super::time::parse_rfc3339;
use crate::flags::FlagSet;
use crate::flow::model::FlowDef;
use crate::flow::validate::{Issue, Severity};
use crate::rules::Rule;

/// Largest experiment file read.
pub const MAX_FILE_BYTES: u64 = 256 * 1024;

/// An experiment as written in its file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentDef {
    pub id: String,
    /// Key of the flagd flag whose variants are the arms.
    pub flag: String,
    /// The variant that is today's behaviour.
    pub control: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JsonLogic over the session context; absent = everyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eligible: Option<Value>,
    /// Reaching any of these nodes is a conversion.
    pub goals: Vec<Goal>,
    /// RFC 3339; absent = already started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// RFC 3339; absent = runs until removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<NamespaceDef>,
}

/// A node that counts as conversion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Goal {
    pub flow: String,
    pub node: String,
}

/// Traffic shared by mutually exclusive experiments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceDef {
    pub name: String,
    /// `[from, to)` in percent, `0 <= from < to <= 100`.
    pub range: [f64; 2],
}

/// An experiment file that parsed.
#[derive(Debug, Clone)]
pub struct LoadedExperiment {
    pub file: PathBuf,
    pub def: ExperimentDef,
}

/// Experiments that parsed, and every issue found reading them.
#[derive(Debug, Clone, Default)]
pub struct ExperimentLoad {
    pub experiments: Vec<LoadedExperiment>,
    pub issues: Vec<Issue>,
}

impl ExperimentLoad {
    pub fn has_errors(&self) -> bool {
        self.issues.iter().any(|i| i.severity == Severity::Error)
    }
}

/// Whether `doc` is an experiment definition: an object with `flag` and
/// `goals` members.
pub fn is_experiment_document(doc: &Value) -> bool {
    doc.as_object()
        .is_some_and(|o| o.contains_key("flag") && o.contains_key("goals"))
}

/// Whether `path` is a readable JSON/YAML file that
/// [`is_experiment_document`].
pub fn is_experiment_file(path: &Path) -> bool {
    document::format_of(path).is_some()
        && read_document(path).is_ok_and(|d| is_experiment_document(&d))
}

/// Reads every `.yaml`/`.yml`/`.json` file directly in `dir` (dotfiles
/// skipped, file-name order) as an experiment. Only an unreadable
/// directory is an `Err`; a bad file is an issue. Duplicate ids are
/// [`validate`]'s to report.
pub fn load_dir(dir: &Path) -> Result<ExperimentLoad, ExperimentError> {
    let unreadable = |source| ExperimentError::DirUnreadable {
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
        if !hidden && document::format_of(&path).is_some() && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    let mut load = ExperimentLoad::default();
    for file in files {
        match load_file(&file) {
            Ok(def) => load.experiments.push(LoadedExperiment { file, def }),
            Err(issues) => load.issues.extend(issues),
        }
    }
    Ok(load)
}

/// Reads and parses one experiment file.
pub fn load_file(path: &Path) -> Result<ExperimentDef, Vec<Issue>> {
    let doc = read_document(path).map_err(|e| vec![e.to_issue()])?;
    parse_value(path, &doc)
}

/// Parses experiment text; `path` picks JSON (`.json`) or YAML and names
/// the file in issues.
pub fn parse_str(path: &Path, text: &str) -> Result<ExperimentDef, Vec<Issue>> {
    let doc = parse_text(path, text).map_err(|e| vec![e.to_issue()])?;
    parse_value(path, &doc)
}

/// Turns a parsed document into an [`ExperimentDef`]; a structural error
/// names the JSON path of the offending value.
pub fn parse_value(path: &Path, doc: &Value) -> Result<ExperimentDef, Vec<Issue>> {
    serde_path_to_error::deserialize::<_, ExperimentDef>(doc).map_err(|e| {
        let mut at = "$".to_string();
        // serde_path_to_error's path ends at an unknown field itself.
        for seg in e.path() {
            match seg {
                serde_path_to_error::Segment::Seq { index } => at.push_str(&format!("[{index}]")),
                serde_path_to_error::Segment::Map { key } => {
                    at.push('.');
                    at.push_str(key);
                }
                serde_path_to_error::Segment::Enum { variant } => {
                    at.push('.');
                    at.push_str(variant);
                }
                serde_path_to_error::Segment::Unknown => {}
            }
        }
        let message = if doc.is_object() {
            e.inner().to_string()
        } else {
            at = "$".into();
            "an experiment is a mapping with `id`, `flag`, `control` and `goals`".into()
        };
        vec![
            ExperimentError::Structure {
                file: path.to_path_buf(),
                path: at,
                message,
            }
            .to_issue(),
        ]
    })
}

fn read_document(path: &Path) -> Result<Value, ExperimentError> {
    document::read(path, MAX_FILE_BYTES).map_err(|e| doc_error(path, e))
}

fn parse_text(path: &Path, text: &str) -> Result<Value, ExperimentError> {
    document::parse(path, text, MAX_FILE_BYTES).map_err(|e| doc_error(path, e))
}

fn doc_error(path: &Path, e: DocError) -> ExperimentError {
    let file = path.to_path_buf();
    match e {
        DocError::Unreadable(source) => ExperimentError::FileUnreadable { file, source },
        DocError::TooLarge { size } => ExperimentError::FileTooLarge {
            file,
            size,
            max: MAX_FILE_BYTES,
        },
        DocError::Syntax { format, message } => ExperimentError::Syntax {
            file,
            format,
            message,
        },
    }
}

// ---------------------------------------------------------------------------
// Validation.

fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Every problem in `experiments` (in order; cross-experiment problems are
/// reported on the later one): ids, the flag and its control variant, the
/// eligibility rule, timestamps, goals, namespace ranges and overlaps.
/// Never panics.
pub fn validate(experiments: &[LoadedExperiment], flags: &FlagSet) -> Vec<Issue> {
    let mut issues = Vec::new();
    let mut first_file: HashMap<&str, &Path> = HashMap::new();
    // Valid ranges seen so far per namespace: (from, to, experiment id).
    let mut ranges: HashMap<&str, Vec<(f64, f64, &str)>> = HashMap::new();
    for exp in experiments {
        let mut report = |e: ExperimentError| issues.push(e.to_issue());
        let file = exp.file.clone();
        let def = &exp.def;
        let id = def.id.clone();
        if !valid_id(&def.id) {
            report(ExperimentError::IdInvalid {
                file: file.clone(),
                path: "$.id",
                id: id.clone(),
            });
        }
        if let Some(first) = first_file.get(def.id.as_str()) {
            report(ExperimentError::IdDuplicate {
                file: file.clone(),
                path: "$.id",
                id: id.clone(),
                first: first.to_path_buf(),
            });
        } else {
            first_file.insert(&def.id, &exp.file);
        }

        match flags.flags.get(def.flag.as_str()) {
            None => report(ExperimentError::FlagUnknown {
                file: file.clone(),
                path: "$.flag",
                id: id.clone(),
                flag: def.flag.clone(),
                known: flags.keys().map(str::to_string).collect(),
            }),
            Some(flag) => {
                if !flag.variants.contains_key(&def.control) {
                    report(ExperimentError::ControlUnknown {
                        file: file.clone(),
                        path: "$.control",
                        id: id.clone(),
                        control: def.control.clone(),
                        variants: flag.variants.keys().cloned().collect(),
                    });
                }
                let fractionals = flag
                    .targeting
                    .as_ref()
                    .map_or(0, |t| find_fractionals(t.rule.source()).len());
                if fractionals != 1 {
                    report(ExperimentError::FlagNotRandomized {
                        file: file.clone(),
                        path: "$.flag",
                        id: id.clone(),
                        flag: def.flag.clone(),
                        detail: if fractionals == 0 {
                            "has no `fractional` in its targeting"
                        } else {
                            "has more than one `fractional` in its targeting"
                        },
                    });
                }
            }
        }

        if let Some(rule) = &def.eligible
            && let Err(e) = Rule::compile(rule)
        {
            report(ExperimentError::RuleInvalid {
                file: file.clone(),
                path: "$.eligible",
                id: id.clone(),
                source: Box::new(e),
            });
        }

        let mut instant = |field: &'static str, value: &Option<String>| match value {
            None => None,
            Some(s) => match parse_rfc3339(s) {
                Ok(ms) => Some(ms),
                Err(message) => {
                    report(ExperimentError::TimestampInvalid {
                        file: file.clone(),
                        path: if field == "start" {
                            "$.start"
                        } else {
                            "$.stop"
                        },
                        id: id.clone(),
                        field,
                        message,
                    });
                    None
                }
            },
        };
        let start = instant("start", &def.start);
        let stop = instant("stop", &def.stop);
        if let (Some(a), Some(b)) = (start, stop)
            && b <= a
        {
            report(ExperimentError::StopBeforeStart {
                file: file.clone(),
                path: "$.stop",
                id: id.clone(),
                start: def.start.clone().unwrap_or_default(),
                stop: def.stop.clone().unwrap_or_default(),
            });
        }

        if def.goals.is_empty() {
            report(ExperimentError::GoalsEmpty {
                file: file.clone(),
                path: "$.goals",
                id: id.clone(),
            });
        }

        if let Some(ns) = &def.namespace {
            let [from, to] = ns.range;
            let mut ok = true;
            for (i, (bound, v)) in [("from", from), ("to", to)].into_iter().enumerate() {
                if !(0.0..=100.0).contains(&v) {
                    ok = false;
                    report(ExperimentError::RangeOutOfBounds {
                        file: file.clone(),
                        path: ["$.namespace.range[0]", "$.namespace.range[1]"][i],
                        id: id.clone(),
                        bound,
                        value: v,
                    });
                }
            }
            if ok && from >= to {
                ok = false;
                report(ExperimentError::RangeEmpty {
                    file: file.clone(),
                    path: "$.namespace.range",
                    id: id.clone(),
                    from,
                    to,
                });
            }
            if ok {
                let seen = ranges.entry(&ns.name).or_default();
                if let Some(&(of, ot, other)) =
                    seen.iter().find(|(of, ot, _)| from < *ot && *of < to)
                {
                    report(ExperimentError::NamespaceOverlap {
                        file: file.clone(),
                        path: "$.namespace.range",
                        id: id.clone(),
                        other: other.to_string(),
                        other_from: of,
                        other_to: ot,
                    });
                } else {
                    seen.push((from, to, &def.id));
                }
            }
        }
    }
    issues
}

/// Goals against `flows`: a goal node its flow lacks is an error
/// (`EXPERIMENT_GOAL_NODE_UNKNOWN`: the experiment could never convert); a
/// flow not among `flows` is a warning (`EXPERIMENT_GOAL_FLOW_UNKNOWN`),
/// since flows can also be published through the API.
pub fn validate_goals(experiments: &[LoadedExperiment], flows: &[FlowDef]) -> Vec<Issue> {
    let mut issues = Vec::new();
    for exp in experiments {
        for (i, goal) in exp.def.goals.iter().enumerate() {
            let error = match flows.iter().find(|f| f.id == goal.flow) {
                None => ExperimentError::GoalFlowUnknown {
                    file: exp.file.clone(),
                    path: format!("$.goals[{i}].flow"),
                    flow: goal.flow.clone(),
                },
                Some(flow) if !flow.nodes.iter().any(|n| n.id() == goal.node) => {
                    ExperimentError::GoalNodeUnknown {
                        file: exp.file.clone(),
                        path: format!("$.goals[{i}].node"),
                        flow: goal.flow.clone(),
                        node: goal.node.clone(),
                    }
                }
                Some(_) => continue,
            };
            issues.push(error.to_issue());
        }
    }
    issues
}

/// Every `fractional` operation in `rule`, outermost first, in document order.
fn find_fractionals(rule: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    let mut stack = vec![rule];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(map) => {
                if let Some(args) = map.get("fractional")
                    && map.len() == 1
                {
                    out.push(args);
                }
                stack.extend(map.values().rev());
            }
            Value::Array(items) => stack.extend(items.iter().rev()),
            _ => {}
        }
    }
    out
}

/// The arms of `flag` with their weights, as its one `fractional` splits
/// them: `(variant, weight)` in bucket order, the same variant's weights
/// summed, only string variants. `None` when the flag does not exist, has
/// no targeting, or has no or more than one `fractional` (then there is no
/// single intended split). Weights follow flagd: missing or `null` → 1,
/// negative → 0.
pub fn arm_weights(flags: &FlagSet, flag: &str) -> Option<Vec<(String, f64)>> {
    let targeting = flags.flags.get(flag)?.targeting.as_ref()?;
    let found = find_fractionals(targeting.rule.source());
    let [args] = found.as_slice() else {
        return None;
    };
    let args = args.as_array()?;
    let buckets = match args.first() {
        Some(Value::String(_)) | Some(Value::Null) => &args[1..],
        // An expression as the bucketing key (e.g. `{"var": "email"}`).
        Some(Value::Object(_)) => &args[1..],
        _ => &args[..],
    };
    let mut out: Vec<(String, f64)> = Vec::new();
    for b in buckets {
        let items = b.as_array()?;
        let variant = items.first()?.as_str()?;
        let weight = match items.get(1) {
            None | Some(Value::Null) => 1.0,
            Some(w) => w.as_f64()?.max(0.0),
        };
        match out.iter_mut().find(|(v, _)| v == variant) {
            Some((_, w)) => *w += weight,
            None => out.push((variant.to_string(), weight)),
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------
// The checked form.

/// A namespace slice: `[from, to)` percent of the namespace's traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct Namespace {
    pub name: String,
    pub from: f64,
    pub to: f64,
}

impl Namespace {
    /// Where `user_id` falls in namespace `name`, in percent `[0, 100)`:
    /// `murmur3_x86_32(name + user_id, seed 0) / 2^32 * 100` — the same
    /// hash flagd's `fractional` uses, on the namespace name instead of the
    /// flag key, so an experiment's namespace slice and its arm bucketing
    /// (keyed by flag) are independent. Deterministic across processes.
    pub fn position(name: &str, user_id: &str) -> f64 {
        let mut key = String::with_capacity(name.len() + user_id.len());
        key.push_str(name);
        key.push_str(user_id);
        let hash = murmur3::murmur3_32(&mut Cursor::new(key.as_bytes()), 0)
            .expect("reading from memory does not fail");
        f64::from(hash) / 4_294_967_296.0 * 100.0
    }

    /// Whether `user_id` is in this slice.
    pub fn contains(&self, user_id: &str) -> bool {
        let p = Namespace::position(&self.name, user_id);
        self.from <= p && p < self.to
    }
}

/// An experiment that passed [`validate`], ready to use.
#[derive(Debug, Clone)]
pub struct Experiment {
    pub id: String,
    pub flag: String,
    pub control: String,
    pub eligible: Option<Rule>,
    pub goals: Vec<Goal>,
    /// Unix milliseconds.
    pub start: Option<i64>,
    /// Unix milliseconds.
    pub stop: Option<i64>,
    pub namespace: Option<Namespace>,
}

impl Experiment {
    /// Builds experiments from loaded definitions after [`validate`];
    /// `Err` with every issue when validation found an error.
    pub fn compile_all(
        experiments: &[LoadedExperiment],
        flags: &FlagSet,
    ) -> Result<Vec<Experiment>, Vec<Issue>> {
        let issues = validate(experiments, flags);
        if issues.iter().any(|i| i.severity == Severity::Error) {
            return Err(issues);
        }
        let mut out = Vec::with_capacity(experiments.len());
        for exp in experiments {
            let def = &exp.def;
            let compile_err = |message: String| {
                vec![Issue {
                    severity: Severity::Error,
                    code: Code::ExperimentStructure,
                    file: exp.file.display().to_string(),
                    node: None,
                    path: "$".into(),
                    message,
                    hint: None,
                    line: None,
                    column: None,
                }]
            };
            // validate checked all of these; a failure here is a bug, but
            // it is still reported, never a panic.
            let eligible = match &def.eligible {
                Some(r) => Some(Rule::compile(r).map_err(|e| compile_err(e.to_string()))?),
                None => None,
            };
            let instant = |s: &Option<String>| s.as_deref().map(parse_rfc3339).transpose();
            out.push(Experiment {
                id: def.id.clone(),
                flag: def.flag.clone(),
                control: def.control.clone(),
                eligible,
                goals: def.goals.clone(),
                start: instant(&def.start).map_err(compile_err)?,
                stop: instant(&def.stop).map_err(compile_err)?,
                namespace: def.namespace.as_ref().map(|n| Namespace {
                    name: n.name.clone(),
                    from: n.range[0],
                    to: n.range[1],
                }),
            });
        }
        Ok(out)
    }

    /// Whether the experiment runs at `now` (Unix ms): `start <= now < stop`.
    pub fn is_running_at(&self, now_ms: i64) -> bool {
        self.start.is_none_or(|s| s <= now_ms) && self.stop.is_none_or(|s| now_ms < s)
    }

    /// Whether `user_id` with session `context` may enter: in the
    /// namespace slice (if any) and matching `eligible` (if any). A rule
    /// that fails to evaluate excludes the user (fail closed: an
    /// experiment must never grab traffic it was not meant to).
    pub fn admits(&self, user_id: &str, context: &Value) -> bool {
        if let Some(ns) = &self.namespace
            && !ns.contains(user_id)
        {
            return false;
        }
        match &self.eligible {
            Some(rule) => rule.matches(context).unwrap_or(false),
            None => true,
        }
    }

    /// Whether reaching `node` of `flow` is a conversion.
    pub fn is_goal(&self, flow: &str, node: &str) -> bool {
        self.goals.iter().any(|g| g.flow == flow && g.node == node)
    }
}

/// Whether `path` is a directory named `experiments`: every file in it is
/// an experiment, whatever its content.
pub fn is_experiments_dir(path: &Path) -> bool {
    path.is_dir() && path.file_name().is_some_and(|n| n == "experiments")
}

/// `baton validate PATH…`, the experiment part: the issues of every
/// experiment among `paths`. An experiment is any file in a directory
/// named `experiments`, and elsewhere a file whose top level has `flag` and
/// `goals`. They are checked against the flags in the flag files among
/// `paths` (files, or flag documents in directories); when there are
/// none, against `../flags` next to the experiments' directory (where
/// `baton serve` looks for flags by default).
pub fn check_paths(paths: &[PathBuf]) -> Vec<Issue> {
    let mut load = ExperimentLoad::default();
    let mut homes: Vec<PathBuf> = Vec::new();
    for path in paths {
        if is_experiments_dir(path) {
            match load_dir(path) {
                Ok(found) => {
                    load.experiments.extend(found.experiments);
                    load.issues.extend(found.issues);
                }
                Err(e) => load.issues.push(e.to_issue()),
            }
            homes.push(path.clone());
        } else if path.is_dir() {
            let Ok(entries) = fs::read_dir(path) else {
                continue; // the flow check reports an unreadable directory
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| !n.starts_with('.'))
                        && is_experiment_file(p)
                })
                .collect();
            files.sort();
            if !files.is_empty() {
                homes.push(path.clone());
            }
            for file in files {
                add_file(&mut load, &file);
            }
        } else if is_experiment_file(path)
            || path
                .parent()
                .is_some_and(|d| d.file_name().is_some_and(|n| n == "experiments"))
        {
            add_file(&mut load, path);
            homes.push(path.parent().map(Path::to_path_buf).unwrap_or_default());
        }
    }
    if load.experiments.is_empty() && load.issues.is_empty() {
        return Vec::new();
    }
    let flags = flags_for(paths, &homes);
    let mut issues = load.issues;
    issues.extend(validate(&load.experiments, &flags));
    if let Some(flows) = flows_for(paths, &homes) {
        issues.extend(validate_goals(&load.experiments, &flows));
    }
    issues
}

/// The flows goals are checked against: the flow files among `paths`, or
/// else `../flows` next to the experiments' directory; `None` when there
/// are neither (goals are then not checked).
fn flows_for(paths: &[PathBuf], homes: &[PathBuf]) -> Option<Vec<FlowDef>> {
    let mut flows = Vec::new();
    let mut found = false;
    for path in paths {
        if is_experiments_dir(path) {
            continue;
        }
        if path.is_dir() {
            if let Ok(report) = crate::flow::load::load_dir(path) {
                found |= !report.flows.is_empty();
                flows.extend(report.flows.into_iter().map(|f| f.def));
            }
        } else if let Ok(def) = crate::flow::load::load_file(path) {
            found = true;
            flows.push(def);
        }
    }
    if !found {
        let dir = homes.iter().find_map(|home| {
            let dir = home.canonicalize().ok()?.parent()?.join("flows");
            dir.is_dir().then_some(dir)
        })?;
        flows = crate::flow::load::load_dir(&dir)
            .ok()?
            .flows
            .into_iter()
            .map(|f| f.def)
            .collect();
    }
    Some(flows)
}

fn add_file(load: &mut ExperimentLoad, file: &Path) {
    match load_file(file) {
        Ok(def) => load.experiments.push(LoadedExperiment {
            file: file.to_path_buf(),
            def,
        }),
        Err(issues) => load.issues.extend(issues),
    }
}

/// The flags experiments among `paths` are checked against (see
/// [`check_paths`]). Flag files' own problems are the flag checker's to
/// report; here only the set matters.
fn flags_for(paths: &[PathBuf], homes: &[PathBuf]) -> FlagSet {
    let mut sets = Vec::new();
    for path in paths {
        if is_experiments_dir(path) {
            continue;
        }
        if path.is_dir() {
            if let Ok(entries) = fs::read_dir(path) {
                let mut files: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| crate::flags::load::is_flag_file(p))
                    .collect();
                files.sort();
                sets.extend(files.iter().map(|f| load_flag_file(f)));
            }
        } else if crate::flags::load::is_flag_file(path) {
            sets.push(load_flag_file(path));
        }
    }
    if sets.is_empty() {
        for home in homes {
            let dir = home
                .canonicalize()
                .ok()
                .and_then(|h| h.parent().map(|p| p.join("flags")));
            if let Some(dir) = dir.filter(|d| d.is_dir())
                && let Ok(load) = crate::flags::load::load_dir(&dir)
            {
                sets.push(load.set);
                break;
            }
        }
    }
    // One set from several files; the first definition of a key wins, as
    // in the flag loader.
    let mut merged = HashMap::new();
    for set in sets {
        for (key, flag) in set.flags {
            merged.entry(key).or_insert(flag);
        }
    }
    FlagSet::from_flags(merged)
}

fn load_flag_file(path: &Path) -> FlagSet {
    match fs::read_to_string(path) {
        Ok(text) => crate::flags::load::load_str(path, &text).set,
        Err(_) => FlagSet::empty(),
    }
}

//! Reading flag files in flagd's flag-definition format
//! (<https://flagd.dev/reference/flag-definitions/>) into a [`FlagSet`],
//! with every problem reported as an [`Issue`] (file, JSON path naming the
//! flag key, stable code).
//!
//! A file is `{"$schema"?, "flags": {key: flag}, "$evaluators"?, "metadata"?}`
//! in JSON or YAML; a flag is `{"state", "variants", "defaultVariant"?,
//! "targeting"?, "metadata"?}`. `{"$ref": "name"}` inside targeting is
//! replaced by the evaluator `name` of the same file before the rule is
//! compiled. flagd does this textually (the `"$ref": "name"` member becomes
//! the evaluator's members); here it is done on the parsed document, with
//! the same result, and references inside evaluators are resolved too (a
//! cycle is an error).
//!
//! What is an error here and what flagd does with it: flagd refuses a whole
//! file whose `defaultVariant` names no variant, and only warns about schema
//! violations (mixed variant types, bad `state`). Baton reports all of them
//! as errors, keeps every other flag of the file, and serves the broken flag
//! as `PARSE_ERROR` (which is also what flagd answers for targeting that does
//! not run, e.g. an unknown `$ref`).

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::document::{self, DocError};
use serde_json::{Map, Value};

use super::error::FlagError;
use super::set::{Flag, FlagSet, Targeting};
use crate::flow::validate::{Issue, Severity};
use crate::rules::{Rule, RuleError};

/// Largest flag file read.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

const FILE_FIELDS: &[&str] = &["$schema", "flags", "$evaluators", "metadata"];
const FLAG_FIELDS: &[&str] = &[
    "state",
    "variants",
    "defaultVariant",
    "targeting",
    "metadata",
];

/// A flag set and every issue found building it.
#[derive(Debug, Default)]
pub struct FlagLoad {
    pub set: FlagSet,
    pub issues: Vec<Issue>,
}

impl FlagLoad {
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

/// Whether `path` has a flag-file extension (`.json`, `.yaml`, `.yml`).
pub fn has_flag_extension(path: &Path) -> bool {
    document::format_of(path).is_some()
}

/// Whether `doc` is a flag definition: an object with a `flags` member.
pub fn is_flag_document(doc: &Value) -> bool {
    doc.as_object().is_some_and(|o| o.contains_key("flags"))
}

/// Whether `path` is a readable JSON/YAML file whose top level has a
/// `flags` member. Used to tell flag files from flow files in one
/// directory.
pub fn is_flag_file(path: &Path) -> bool {
    has_flag_extension(path) && read_document(path).is_ok_and(|doc| is_flag_document(&doc))
}

/// Reads every `.json`/`.yaml`/`.yml` file directly in `dir` (dotfiles
/// skipped) in file-name order as flag files. A document that is a flow
/// (`nodes` and no `flags`) is skipped, so flags may live next to the flows.
/// Only an unreadable directory is an `Err`.
pub fn load_dir(dir: &Path) -> Result<FlagLoad, FlagError> {
    let mut builder = Builder::default();
    for file in list_dir(dir)? {
        match read_document(&file) {
            Ok(doc) if !is_flag_document(&doc) && doc.get("nodes").is_some() => {}
            Ok(doc) => builder.add_document(&file, &doc),
            Err(e) => builder.issues.push(e.to_issue()),
        }
    }
    Ok(builder.finish())
}

/// Loads flag definitions from text (`path` picks JSON or YAML by extension
/// and names the file in issues).
pub fn load_str(path: &Path, text: &str) -> FlagLoad {
    let mut builder = Builder::default();
    match parse_text(path, text) {
        Ok(doc) => builder.add_document(path, &doc),
        Err(e) => builder.issues.push(e.to_issue()),
    }
    builder.finish()
}

/// `baton validate` on a directory that may mix flows and flags: the issues
/// of every file in `dir` whose top level has a `flags` member. Files that
/// do not parse are left to the flow checker, which reports them.
pub fn check_dir(dir: &Path) -> Result<Vec<Issue>, FlagError> {
    let mut builder = Builder::default();
    for file in list_dir(dir)? {
        if let Ok(doc) = read_document(&file)
            && is_flag_document(&doc)
        {
            builder.add_document(&file, &doc);
        }
    }
    Ok(builder.finish().issues)
}

/// `baton validate` on one flag file.
pub fn check_file(path: &Path) -> Vec<Issue> {
    let mut builder = Builder::default();
    match read_document(path) {
        Ok(doc) => builder.add_document(path, &doc),
        Err(e) => builder.issues.push(e.to_issue()),
    }
    builder.finish().issues
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>, FlagError> {
    let unreadable = |source| FlagError::DirUnreadable {
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
        if !hidden && has_flag_extension(&path) && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn read_document(path: &Path) -> Result<Value, FlagError> {
    document::read(path, MAX_FILE_BYTES).map_err(|e| doc_error(path, e))
}

fn parse_text(path: &Path, text: &str) -> Result<Value, FlagError> {
    document::parse(path, text, MAX_FILE_BYTES).map_err(|e| doc_error(path, e))
}

fn doc_error(path: &Path, e: DocError) -> FlagError {
    let file = path.to_path_buf();
    match e {
        DocError::Unreadable(source) => FlagError::FileUnreadable { file, source },
        DocError::TooLarge { size } => FlagError::FileTooLarge {
            file,
            size,
            max: MAX_FILE_BYTES,
        },
        DocError::Syntax { format, message } => FlagError::Syntax {
            file,
            format,
            message,
        },
    }
}

// ---------------------------------------------------------------------------
// Paths.

/// `base` + `.name` (identifier-like names, `$` included, so `.$ref`) or
/// `["name"]`.
fn member(base: &str, name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    if plain {
        format!("{base}.{name}")
    } else {
        format!("{base}[{}]", Value::String(name.to_owned()))
    }
}

fn index(base: &str, i: usize) -> String {
    format!("{base}[{i}]")
}

/// A rule error's JSON pointer (`/if/0/==`) appended to `base` as a path.
fn pointer_path(base: &str, pointer: &str) -> String {
    let mut path = base.to_owned();
    for seg in pointer.split('/').skip(1).filter(|s| !s.is_empty()) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        path = match seg.parse::<usize>() {
            Ok(i) => index(&path, i),
            Err(_) => member(&path, &seg),
        };
    }
    path
}

// ---------------------------------------------------------------------------
// Building the set.

#[derive(Default)]
struct Builder {
    flags: HashMap<Box<str>, Flag>,
    defined_in: HashMap<String, PathBuf>,
    issues: Vec<Issue>,
}

impl Builder {
    fn report(&mut self, e: FlagError) {
        self.issues.push(e.to_issue());
    }

    fn finish(self) -> FlagLoad {
        FlagLoad {
            set: FlagSet::from_flags(self.flags),
            issues: self.issues,
        }
    }

    fn add_document(&mut self, file: &Path, doc: &Value) {
        let file_invalid = |path: &str, message: &str| FlagError::FileInvalid {
            file: file.to_path_buf(),
            path: path.to_owned(),
            message: message.to_owned(),
        };
        let Some(top) = doc.as_object() else {
            self.report(file_invalid(
                "$",
                "a flag file is an object with a `flags` member",
            ));
            return;
        };
        for field in top.keys() {
            if !FILE_FIELDS.contains(&field.as_str()) {
                self.report(FlagError::FieldUnknown {
                    file: file.to_path_buf(),
                    path: member("$", field),
                    field: field.clone(),
                    expected: FILE_FIELDS,
                });
            }
        }
        let flags = match top.get("flags") {
            Some(Value::Object(flags)) => flags,
            Some(_) => {
                self.report(file_invalid(
                    "$.flags",
                    "`flags` must be an object keyed by flag key",
                ));
                return;
            }
            None => {
                self.report(file_invalid("$", "the file has no `flags` object"));
                return;
            }
        };
        let set_metadata = match top.get("metadata") {
            None | Some(Value::Null) => Map::new(),
            Some(m) => {
                let (metadata, errors) = scalar_metadata(file, "$.metadata", m);
                for e in errors {
                    self.report(e);
                }
                // flagd keeps `$`-prefixed set metadata to itself.
                metadata
                    .into_iter()
                    .filter(|(k, _)| !k.starts_with('$'))
                    .collect()
            }
        };
        let evaluators = self.evaluators(file, top.get("$evaluators"));

        for (key, def) in flags {
            let path = member("$.flags", key);
            if let Some(first) = self.defined_in.get(key) {
                self.report(FlagError::KeyDuplicate {
                    file: file.to_path_buf(),
                    key: key.clone(),
                    path,
                    first: first.clone(),
                });
                continue;
            }
            let (flag, problems) = build_flag(file, key, &path, def, &evaluators, &set_metadata);
            for p in problems {
                self.report(p);
            }
            self.defined_in.insert(key.clone(), file.to_path_buf());
            self.flags.insert(key.as_str().into(), flag);
        }
    }

    /// The file's valid evaluators; invalid ones are reported and left out
    /// (a `$ref` to one is then unknown).
    fn evaluators(&mut self, file: &Path, value: Option<&Value>) -> HashMap<String, Value> {
        let mut out = HashMap::new();
        let map = match value {
            None | Some(Value::Null) => return out,
            Some(Value::Object(map)) => map,
            Some(_) => {
                self.report(FlagError::FileInvalid {
                    file: file.to_path_buf(),
                    path: member("$", "$evaluators"),
                    message: "`$evaluators` must be an object of named JsonLogic rules".into(),
                });
                return out;
            }
        };
        for (name, rule) in map {
            match rule {
                Value::Object(body) if !body.is_empty() => {
                    out.insert(name.clone(), rule.clone());
                }
                other => self.report(FlagError::EvaluatorInvalid {
                    file: file.to_path_buf(),
                    name: name.clone(),
                    path: member(&member("$", "$evaluators"), name),
                    message: format!(
                        "is {}; an evaluator is a non-empty JsonLogic object",
                        match other {
                            Value::Object(_) => "an empty object",
                            v => super::eval::json_type(v),
                        }
                    ),
                }),
            }
        }
        out
    }
}

/// Builds one flag. Problems come back as errors and warnings; any error
/// marks the flag broken (it then evaluates to `PARSE_ERROR`).
fn build_flag(
    file: &Path,
    key: &str,
    path: &str,
    def: &Value,
    evaluators: &HashMap<String, Value>,
    set_metadata: &Map<String, Value>,
) -> (Flag, Vec<FlagError>) {
    let mut problems = Vec::new();
    let mut flag = Flag {
        enabled: true,
        variants: Map::new(),
        default_variant: None,
        targeting: None,
        metadata: set_metadata.clone(),
        broken: None,
    };
    let field_invalid = |path: String, message: String| FlagError::FieldInvalid {
        file: file.to_path_buf(),
        key: key.to_owned(),
        path,
        message,
    };

    if key.is_empty() {
        problems.push(field_invalid(
            path.to_owned(),
            "a flag key must not be empty".into(),
        ));
    }
    let Some(obj) = def.as_object() else {
        problems.push(field_invalid(
            path.to_owned(),
            format!(
                "is {}; a flag is an object with `state`, `variants` and `defaultVariant`",
                super::eval::json_type(def)
            ),
        ));
        return finish_flag(flag, problems);
    };
    for field in obj.keys() {
        if !FLAG_FIELDS.contains(&field.as_str()) {
            problems.push(FlagError::FieldUnknown {
                file: file.to_path_buf(),
                path: member(path, field),
                field: field.clone(),
                expected: FLAG_FIELDS,
            });
        }
    }

    // state
    match obj.get("state") {
        Some(Value::String(s)) if s == "ENABLED" => flag.enabled = true,
        Some(Value::String(s)) if s == "DISABLED" => flag.enabled = false,
        other => problems.push(FlagError::StateInvalid {
            file: file.to_path_buf(),
            key: key.to_owned(),
            path: member(path, "state"),
            found: other.map_or_else(|| "missing".to_owned(), Value::to_string),
        }),
    }

    // variants
    let variants_path = member(path, "variants");
    let variants_invalid = |path: String, message: String| FlagError::VariantsInvalid {
        file: file.to_path_buf(),
        key: key.to_owned(),
        path,
        message,
    };
    let variants_ok = match obj.get("variants") {
        None => {
            problems.push(variants_invalid(
                path.to_owned(),
                format!("flag `{key}` has no `variants`"),
            ));
            false
        }
        Some(Value::Object(v)) if v.is_empty() => {
            problems.push(variants_invalid(
                variants_path.clone(),
                format!("flag `{key}` has no variants"),
            ));
            false
        }
        Some(Value::Object(v)) => {
            let mut ok = true;
            let mut first: Option<(&str, &'static str)> = None;
            for (name, value) in v {
                let Some(kind) = variant_kind(value) else {
                    problems.push(variants_invalid(
                        member(&variants_path, name),
                        format!(
                            "flag `{key}`: variant `{name}` is {}; variants are booleans, strings, numbers or objects",
                            super::eval::json_type(value)
                        ),
                    ));
                    ok = false;
                    continue;
                };
                match first {
                    None => first = Some((name, kind)),
                    Some((first_name, first_kind)) if first_kind != kind && ok => {
                        problems.push(FlagError::VariantTypesMixed {
                            file: file.to_path_buf(),
                            key: key.to_owned(),
                            path: member(&variants_path, name),
                            detail: format!(
                                "variant `{name}` is {kind} but `{first_name}` is {first_kind}"
                            ),
                        });
                        ok = false;
                    }
                    Some(_) => {}
                }
            }
            flag.variants = v.clone();
            ok
        }
        Some(other) => {
            problems.push(variants_invalid(
                variants_path.clone(),
                format!(
                    "flag `{key}`: `variants` is {}; it is an object of variant name to value",
                    super::eval::json_type(other)
                ),
            ));
            false
        }
    };

    // defaultVariant: null or absent defers to the caller's code default.
    if variants_ok {
        match obj.get("defaultVariant") {
            None | Some(Value::Null) => {}
            Some(Value::String(name)) if flag.variants.contains_key(name) => {
                flag.default_variant = Some(name.clone());
            }
            Some(other) => problems.push(FlagError::DefaultVariantUnknown {
                file: file.to_path_buf(),
                key: key.to_owned(),
                path: member(path, "defaultVariant"),
                found: other.to_string(),
                variants: flag.variants.keys().cloned().collect(),
            }),
        }
    }

    // metadata, over the file's
    match obj.get("metadata") {
        None | Some(Value::Null) => {}
        Some(m) => {
            let (metadata, errors) = scalar_metadata(file, &member(path, "metadata"), m);
            problems.extend(errors);
            flag.metadata.extend(metadata);
        }
    }

    // targeting
    match obj.get("targeting") {
        None | Some(Value::Null) => {}
        Some(Value::Object(t)) if t.is_empty() => {}
        Some(targeting) => {
            let targeting_path = member(path, "targeting");
            let mut refs = RefResolver {
                file,
                key,
                evaluators,
                stack: Vec::new(),
            };
            match refs.resolve(targeting, &targeting_path) {
                Err(e) => problems.push(e),
                Ok(resolved) => match Rule::compile(&resolved) {
                    Err(source) => {
                        let path = match &source {
                            RuleError::UnknownOperator { at, .. } => {
                                pointer_path(&targeting_path, at)
                            }
                            _ => targeting_path.clone(),
                        };
                        problems.push(FlagError::TargetingInvalid {
                            file: file.to_path_buf(),
                            key: key.to_owned(),
                            path,
                            source: Box::new(source),
                        });
                    }
                    Ok(rule) => {
                        if variants_ok {
                            let mut literals = Vec::new();
                            result_literals(&resolved, &targeting_path, &mut literals);
                            for (lpath, literal) in literals {
                                let name = match literal {
                                    Value::String(s) => s.clone(),
                                    other => other.to_string(),
                                };
                                if !flag.variants.contains_key(&name) {
                                    problems.push(FlagError::TargetingUnknownVariant {
                                        file: file.to_path_buf(),
                                        key: key.to_owned(),
                                        path: lpath,
                                        name: literal.to_string(),
                                        variants: flag.variants.keys().cloned().collect(),
                                    });
                                }
                            }
                        }
                        flag.targeting = Some(Targeting {
                            rule,
                            // Assigned when the set is built.
                            slots: 0..0,
                        });
                    }
                },
            }
        }
    }

    finish_flag(flag, problems)
}

fn finish_flag(mut flag: Flag, problems: Vec<FlagError>) -> (Flag, Vec<FlagError>) {
    if let Some(first) = problems.iter().find(|p| p.severity() == Severity::Error) {
        flag.broken = Some(format!("{} ({})", first, first.code()));
    }
    (flag, problems)
}

fn variant_kind(v: &Value) -> Option<&'static str> {
    match v {
        Value::Bool(_) => Some("a boolean"),
        Value::String(_) => Some("a string"),
        Value::Number(_) => Some("a number"),
        Value::Object(_) => Some("an object"),
        Value::Null | Value::Array(_) => None,
    }
}

/// The scalar members of a metadata object, and an error per other member.
fn scalar_metadata(file: &Path, path: &str, m: &Value) -> (Map<String, Value>, Vec<FlagError>) {
    let mut errors = Vec::new();
    let mut out = Map::new();
    let Some(map) = m.as_object() else {
        errors.push(FlagError::MetadataInvalid {
            file: file.to_path_buf(),
            path: path.to_owned(),
            message: format!(
                "`metadata` is {}; it is an object",
                super::eval::json_type(m)
            ),
        });
        return (out, errors);
    };
    for (k, v) in map {
        match v {
            Value::Bool(_) | Value::Number(_) | Value::String(_) => {
                out.insert(k.clone(), v.clone());
            }
            other => errors.push(FlagError::MetadataInvalid {
                file: file.to_path_buf(),
                path: member(path, k),
                message: format!(
                    "metadata `{k}` is {}; metadata values are strings, numbers or booleans",
                    super::eval::json_type(other)
                ),
            }),
        }
    }
    (out, errors)
}

struct RefResolver<'a> {
    file: &'a Path,
    key: &'a str,
    evaluators: &'a HashMap<String, Value>,
    /// Evaluators being expanded, for cycle detection.
    stack: Vec<String>,
}

impl RefResolver<'_> {
    fn resolve(&mut self, v: &Value, path: &str) -> Result<Value, FlagError> {
        match v {
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| self.resolve(item, &index(path, i)))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            Value::Object(map) => {
                let mut out = Map::new();
                for (k, val) in map {
                    match (k.as_str(), val) {
                        ("$ref", Value::String(name)) => {
                            for (ek, ev) in self.expand(name, path)? {
                                out.insert(ek, ev);
                            }
                        }
                        _ => {
                            out.insert(k.clone(), self.resolve(val, &member(path, k))?);
                        }
                    }
                }
                Ok(Value::Object(out))
            }
            other => Ok(other.clone()),
        }
    }

    /// The members of evaluator `name`, its own references resolved.
    fn expand(&mut self, name: &str, path: &str) -> Result<Map<String, Value>, FlagError> {
        let Some(body) = self.evaluators.get(name) else {
            let mut known: Vec<String> = self.evaluators.keys().cloned().collect();
            known.sort();
            return Err(FlagError::RefUnknown {
                file: self.file.to_path_buf(),
                key: self.key.to_owned(),
                path: member(path, "$ref"),
                name: name.to_owned(),
                known,
            });
        };
        if self.stack.iter().any(|s| s == name) {
            let mut chain = self.stack.clone();
            chain.push(name.to_owned());
            return Err(FlagError::RefCycle {
                file: self.file.to_path_buf(),
                key: self.key.to_owned(),
                path: member(path, "$ref"),
                chain: chain.join(" → "),
            });
        }
        self.stack.push(name.to_owned());
        let resolved = self.resolve(body, &member(&member("$", "$evaluators"), name));
        self.stack.pop();
        match resolved? {
            Value::Object(map) => Ok(map),
            // Evaluators are checked to be objects.
            _ => Ok(Map::new()),
        }
    }
}

/// Literals the targeting can return as a variant name: the branches of
/// `if`/`?:` and the bucket names of `fractional`, followed from the top.
fn result_literals<'v>(v: &'v Value, path: &str, out: &mut Vec<(String, &'v Value)>) {
    match v {
        Value::String(_) | Value::Bool(_) | Value::Number(_) => {
            out.push((path.to_owned(), v));
        }
        Value::Object(map) if map.len() == 1 => {
            let (op, args) = map.iter().next().expect("len checked");
            let op_path = member(path, op);
            let Value::Array(args) = args else {
                return;
            };
            match op.as_str() {
                "if" | "?:" => {
                    let n = args.len();
                    for (i, arg) in args.iter().enumerate() {
                        if i % 2 == 1 || (n % 2 == 1 && i == n - 1 && n > 1) {
                            result_literals(arg, &index(&op_path, i), out);
                        }
                    }
                }
                "fractional" => {
                    for (i, bucket) in args.iter().enumerate() {
                        if let Value::Array(b) = bucket
                            && let Some(name) = b.first()
                        {
                            result_literals(name, &index(&index(&op_path, i), 0), out);
                        }
                    }
                }
                _ => {}
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_quote_what_is_not_an_identifier() {
        assert_eq!(member("$.flags", "newFlag"), "$.flags.newFlag");
        assert_eq!(member("$.flags", "new-signup"), "$.flags[\"new-signup\"]");
        assert_eq!(
            pointer_path("$.t", "/if/0/sem_ver/1"),
            "$.t.if[0].sem_ver[1]"
        );
        assert_eq!(pointer_path("$.t", "/and/1/~1x"), "$.t.and[1][\"/x\"]");
        assert_eq!(member("$", "$evaluators"), "$.$evaluators");
    }
}

//! Compile-time checks and rewriting of a rule's JSON before datalogic sees it:
//! limits (depth, size), the operator allow-list, the data paths the rule
//! reads, and the two rewrites that make datalogic follow jsonlogic.com/flagd.

use serde_json::{Map, Value};

use super::RuleError;
use super::ops::{
    FRACTIONAL_OP, LITERAL_OP, LOOSE_EQ_OP, LOOSE_NE_OP, MISSING_OP, MISSING_SOME_OP,
};

/// Every operator a Baton rule may use: jsonlogic.com's set (json-logic-js
/// 2.x, including `?:` and `log`) plus flagd's custom operators. Anything
/// else, including datalogic's own extensions such as `val`, is rejected at
/// compile time so a typo never reaches a running flow.
pub const KNOWN_OPERATORS: &[&str] = &[
    "var",
    "missing",
    "missing_some",
    "if",
    "?:",
    "==",
    "===",
    "!=",
    "!==",
    "!",
    "!!",
    "or",
    "and",
    ">",
    ">=",
    "<",
    "<=",
    "max",
    "min",
    "+",
    "-",
    "*",
    "/",
    "%",
    "map",
    "reduce",
    "filter",
    "all",
    "none",
    "some",
    "merge",
    "in",
    "cat",
    "substr",
    "log",
    "fractional",
    "sem_ver",
    "starts_with",
    "ends_with",
];

/// Operators whose second argument is evaluated once per array item, with
/// the item (or `{current, accumulator}` for `reduce`) as its data.
const ITERATORS: &[&str] = &["map", "filter", "reduce", "all", "none", "some"];

/// Compile-time limits on a rule's JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleLimits {
    /// Maximum nesting of JSON arrays/objects on any path (a scalar is 0,
    /// `{"var": "x"}` is 1, `{"==": [{"var": "x"}, 1]}` is 3).
    pub max_depth: usize,
    /// Maximum size of the rule serialized as compact JSON, in bytes.
    pub max_bytes: usize,
}

impl Default for RuleLimits {
    fn default() -> Self {
        RuleLimits {
            max_depth: 64,
            max_bytes: 64 * 1024,
        }
    }
}

/// Which data a `var`/`missing` path is resolved against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VarScope {
    /// The data document the rule is evaluated against.
    Root,
    /// The current item inside a `map`/`filter`/`reduce`/`all`/`some`/`none` body.
    Item,
}

/// One literal data path a rule reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VarRef {
    /// Dotted path as written (`"user.attributes.age"`; numbers are rendered, `1` → `"1"`).
    pub path: String,
    /// Whether the path is relative to the root data or to an iteration item.
    pub scope: VarScope,
}

/// Result of analysing a rule: the JSON to hand to datalogic and the paths read.
pub(crate) struct Analysis {
    pub(crate) rewritten: Value,
    pub(crate) refs: Vec<VarRef>,
}

pub(crate) fn analyze(logic: &Value, limits: &RuleLimits) -> Result<Analysis, RuleError> {
    // Depth first: it is bounded recursion, and every later pass recurses
    // over the whole tree.
    if exceeds_depth(logic, 0, limits.max_depth) {
        return Err(RuleError::TooDeep {
            limit: limits.max_depth,
        });
    }
    let mut counter = CountingWriter {
        written: 0,
        limit: limits.max_bytes,
    };
    if serde_json::to_writer(&mut counter, logic).is_err() {
        return Err(RuleError::TooLarge {
            limit: limits.max_bytes,
        });
    }
    let mut walker = Walker {
        refs: Vec::new(),
        pointer: Vec::new(),
    };
    let rewritten = walker.walk(logic, VarScope::Root)?;
    let mut refs: Vec<VarRef> = Vec::with_capacity(walker.refs.len());
    for r in walker.refs {
        if !refs.contains(&r) {
            refs.push(r);
        }
    }
    Ok(Analysis { rewritten, refs })
}

fn exceeds_depth(v: &Value, depth: usize, max: usize) -> bool {
    match v {
        Value::Array(items) => {
            depth + 1 > max || items.iter().any(|i| exceeds_depth(i, depth + 1, max))
        }
        Value::Object(map) => {
            depth + 1 > max || map.values().any(|i| exceeds_depth(i, depth + 1, max))
        }
        _ => false,
    }
}

/// Counts serialized bytes and fails the write as soon as the limit is
/// passed, so a huge rule is rejected without being serialized in full.
struct CountingWriter {
    written: usize,
    limit: usize,
}

impl std::io::Write for CountingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.written += buf.len();
        if self.written > self.limit {
            return Err(std::io::Error::other("rule too large"));
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Walker {
    refs: Vec<VarRef>,
    pointer: Vec<String>,
}

impl Walker {
    fn at(&self) -> String {
        if self.pointer.is_empty() {
            return "/".to_string();
        }
        let mut s = String::new();
        for seg in &self.pointer {
            s.push('/');
            s.push_str(&seg.replace('~', "~0").replace('/', "~1"));
        }
        s
    }

    fn walk(&mut self, v: &Value, scope: VarScope) -> Result<Value, RuleError> {
        match v {
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    self.pointer.push(i.to_string());
                    out.push(self.walk(item, scope)?);
                    self.pointer.pop();
                }
                Ok(Value::Array(out))
            }
            // jsonlogic.com only treats single-key objects as logic; `{}` and
            // multi-key objects are data, returned as written (values
            // unevaluated). datalogic rejects multi-key objects, so wrap them.
            Value::Object(map) if map.len() > 1 => {
                let mut m = Map::new();
                m.insert(LITERAL_OP.to_string(), Value::String(v.to_string()));
                Ok(Value::Object(m))
            }
            Value::Object(map) if map.len() == 1 => {
                let (op, args) = map.iter().next().expect("len checked");
                self.operator(op, args, scope)
            }
            other => Ok(other.clone()),
        }
    }

    fn operator(&mut self, op: &str, args: &Value, scope: VarScope) -> Result<Value, RuleError> {
        if !KNOWN_OPERATORS.contains(&op) {
            return Err(RuleError::UnknownOperator {
                operator: op.to_string(),
                at: self.at(),
            });
        }
        let list: &[Value] = match args {
            Value::Array(items) => items,
            single => std::slice::from_ref(single),
        };
        match op {
            "var" => {
                if let Some(path) = list.first().and_then(literal_path) {
                    // `""` is the whole data document, not a path.
                    if !path.is_empty() {
                        self.refs.push(VarRef { path, scope });
                    }
                }
            }
            "missing" => {
                // json-logic-js: a first argument that is an array is the key list.
                let keys = match list.first() {
                    Some(Value::Array(keys)) => keys.as_slice(),
                    _ => list,
                };
                self.push_paths(keys, scope);
            }
            "missing_some" => {
                if let Some(Value::Array(keys)) = list.get(1) {
                    self.push_paths(keys, scope);
                }
            }
            "fractional" => {
                // Implicit bucketing key: flagd hashes `$flagd.flagKey` +
                // `targetingKey`, always read from the root data.
                if matches!(
                    list.first(),
                    None | Some(Value::Array(_)) | Some(Value::Null)
                ) {
                    for path in ["$flagd.flagKey", "targetingKey"] {
                        self.refs.push(VarRef {
                            path: path.to_string(),
                            scope: VarScope::Root,
                        });
                    }
                }
            }
            _ => {}
        }

        self.pointer.push(op.to_string());
        let walked_args = if ITERATORS.contains(&op) {
            // Only the body (second argument) sees the item as its data.
            let mut out = Vec::with_capacity(list.len());
            for (i, arg) in list.iter().enumerate() {
                let arg_scope = if i == 1 { VarScope::Item } else { scope };
                if args.is_array() {
                    self.pointer.push(i.to_string());
                }
                out.push(self.walk(arg, arg_scope)?);
                if args.is_array() {
                    self.pointer.pop();
                }
            }
            if args.is_array() {
                Value::Array(out)
            } else {
                out.pop().unwrap_or(Value::Null)
            }
        } else {
            self.walk(args, scope)?
        };
        self.pointer.pop();

        // Where datalogic's built-in differs from jsonlogic.com / flagd v2,
        // route to Baton's operator (see `ops.rs` for each one's reason).
        let (name, walked_args) = match op {
            "fractional" => (FRACTIONAL_OP, walked_args),
            "==" => (LOOSE_EQ_OP, walked_args),
            "!=" => (LOOSE_NE_OP, walked_args),
            "missing" | "missing_some" => {
                // Custom operators only see the root data; `{"var": ""}`
                // hands them the current scope (the item inside `map` etc.).
                let mut items = vec![serde_json::json!({"var": ""})];
                match walked_args {
                    Value::Array(list) => items.extend(list),
                    single => items.push(single),
                }
                let name = if op == "missing" {
                    MISSING_OP
                } else {
                    MISSING_SOME_OP
                };
                (name, Value::Array(items))
            }
            _ => (op, walked_args),
        };
        let mut m = Map::new();
        m.insert(name.to_string(), walked_args);
        Ok(Value::Object(m))
    }

    fn push_paths(&mut self, keys: &[Value], scope: VarScope) {
        for key in keys {
            if let Some(path) = literal_path(key)
                && !path.is_empty()
            {
                self.refs.push(VarRef { path, scope });
            }
        }
    }
}

fn literal_path(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refs(v: Value) -> Vec<(String, VarScope)> {
        analyze(&v, &RuleLimits::default())
            .unwrap()
            .refs
            .into_iter()
            .map(|r| (r.path, r.scope))
            .collect()
    }

    #[test]
    fn depth_counts_containers() {
        let limits = RuleLimits {
            max_depth: 3,
            max_bytes: 1 << 20,
        };
        assert!(analyze(&json!({"==": [{"var": "x"}, 1]}), &limits).is_ok());
        let err = analyze(&json!({"==": [{"var": ["x"]}, 1]}), &limits)
            .err()
            .unwrap();
        assert_eq!(err.code(), "RULE_TOO_DEEP");
        assert!(
            analyze(
                &json!(5),
                &RuleLimits {
                    max_depth: 0,
                    max_bytes: 10
                }
            )
            .is_ok()
        );
    }

    #[test]
    fn size_is_serialized_compact_json() {
        let rule = json!({"cat": ["abc"]}); // {"cat":["abc"]} = 15 bytes
        let ok = RuleLimits {
            max_depth: 8,
            max_bytes: 15,
        };
        let too_small = RuleLimits {
            max_depth: 8,
            max_bytes: 14,
        };
        assert!(analyze(&rule, &ok).is_ok());
        assert_eq!(
            analyze(&rule, &too_small).err().unwrap().code(),
            "RULE_TOO_LARGE"
        );
    }

    #[test]
    fn unknown_operator_reports_pointer() {
        let err = analyze(
            &json!({"and": [true, {"if": [{"val": "x"}, 1, 2]}]}),
            &RuleLimits::default(),
        )
        .err()
        .unwrap();
        match err {
            RuleError::UnknownOperator { operator, at } => {
                assert_eq!(operator, "val");
                assert_eq!(at, "/and/1/if/0");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn var_paths_are_scoped() {
        let got = refs(json!({"and": [
            {">=": [{"var": "user.age"}, 18]},
            {"some": [{"var": "user.items"}, {"==": [{"var": "sku"}, {"var": "wanted"}]}]},
            {"missing": ["a", "b.c"]},
            {"missing_some": [1, ["d", "e"]]},
            {"var": ["x", 3]},
            {"var": 1},
            {"var": ""}
        ]}));
        assert_eq!(
            got,
            vec![
                ("user.age".to_string(), VarScope::Root),
                ("user.items".to_string(), VarScope::Root),
                ("sku".to_string(), VarScope::Item),
                ("wanted".to_string(), VarScope::Item),
                ("a".to_string(), VarScope::Root),
                ("b.c".to_string(), VarScope::Root),
                ("d".to_string(), VarScope::Root),
                ("e".to_string(), VarScope::Root),
                ("x".to_string(), VarScope::Root),
                ("1".to_string(), VarScope::Root),
            ]
        );
    }

    #[test]
    fn reduce_initial_value_is_root_scoped() {
        let got = refs(
            json!({"reduce": [{"var": "xs"}, {"+": [{"var": "current"}, {"var": "accumulator"}]}, {"var": "start"}]}),
        );
        assert_eq!(
            got,
            vec![
                ("xs".to_string(), VarScope::Root),
                ("current".to_string(), VarScope::Item),
                ("accumulator".to_string(), VarScope::Item),
                ("start".to_string(), VarScope::Root),
            ]
        );
    }

    #[test]
    fn implicit_fractional_reads_targeting_key() {
        let got = refs(json!({"fractional": [["a", 50], ["b", 50]]}));
        assert_eq!(
            got,
            vec![
                ("$flagd.flagKey".to_string(), VarScope::Root),
                ("targetingKey".to_string(), VarScope::Root),
            ]
        );
        assert!(refs(json!({"fractional": ["fixed-key", ["a", 1]]})).is_empty());
    }

    #[test]
    fn multi_key_objects_become_literals() {
        let a = analyze(
            &json!({"if": [true, {"a": {"var": "x"}, "b": 1}, 0]}),
            &RuleLimits::default(),
        )
        .unwrap();
        assert_eq!(
            a.rewritten,
            json!({"if": [true, {LITERAL_OP: r#"{"a":{"var":"x"},"b":1}"#}, 0]})
        );
        assert!(a.refs.is_empty(), "values of a data object are never read");
    }
}

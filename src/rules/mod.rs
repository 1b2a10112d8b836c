//! Rules: JsonLogic with jsonlogic.com semantics plus flagd's operators.
//!
//! STAND-IN for the `validate` branch only: the real module is written in
//! parallel and replaces this file at merge. It exposes exactly the API the
//! flow validator codes against, implemented crudely.

use std::fmt;

use serde_json::Value;

/// A compiled rule.
#[derive(Clone, Debug)]
pub struct Rule {
    logic: Value,
}

/// Why a rule did not compile.
#[derive(Debug)]
pub struct RuleError {
    message: String,
}

impl Rule {
    pub fn compile(logic: &Value) -> Result<Rule, RuleError> {
        if let Some(op) = unknown_operator(logic) {
            return Err(RuleError {
                message: format!("unknown operator `{op}`"),
            });
        }
        datalogic_rs::compile(logic).map_err(|e| RuleError {
            message: e.to_string(),
        })?;
        Ok(Rule {
            logic: logic.clone(),
        })
    }

    /// Context paths read through `var`, outside iteration bodies (where
    /// `var` reads the current item instead of the context).
    pub fn var_paths(&self) -> Vec<String> {
        let mut out = Vec::new();
        collect(&self.logic, &mut out);
        out
    }
}

fn collect(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| collect(i, out)),
        Value::Object(map) if map.len() == 1 => {
            let (op, args) = map.iter().next().expect("one entry");
            match op.as_str() {
                "var" => {
                    let path = match args {
                        Value::String(s) => Some(s.as_str()),
                        Value::Array(a) => a.first().and_then(Value::as_str),
                        _ => None,
                    };
                    if let Some(p) = path.filter(|p| !p.is_empty()) {
                        out.push(p.to_string());
                    }
                }
                "map" | "filter" | "reduce" | "all" | "some" | "none" => {
                    if let Some(first) = args.as_array().and_then(|a| a.first()) {
                        collect(first, out);
                    }
                }
                _ => collect(args, out),
            }
        }
        _ => {}
    }
}

const OPERATORS: &[&str] = &[
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
    "filter",
    "reduce",
    "all",
    "some",
    "none",
    "merge",
    "in",
    "cat",
    "substr",
    "log",
    "sem_ver",
    "starts_with",
    "ends_with",
    "fractional",
];

fn unknown_operator(v: &Value) -> Option<String> {
    match v {
        Value::Array(items) => items.iter().find_map(unknown_operator),
        Value::Object(map) if map.len() == 1 => {
            let (op, args) = map.iter().next().expect("one entry");
            if OPERATORS.contains(&op.as_str()) {
                unknown_operator(args)
            } else {
                Some(op.clone())
            }
        }
        _ => None,
    }
}

impl RuleError {
    pub fn code(&self) -> &'static str {
        "RULE_INVALID"
    }
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

// --- temporary, until the rules branch lands ---
impl Rule {
    pub fn matches(&self, _data: &Value) -> Result<bool, RuleError> {
        Ok(true)
    }
    pub fn source(&self) -> &Value {
        &self.logic
    }
}
impl RuleError {
    pub fn hint(&self) -> Option<String> {
        None
    }
}
pub fn eval_lines(_i: impl std::io::BufRead, _o: impl std::io::Write) -> std::io::Result<()> {
    Ok(())
}

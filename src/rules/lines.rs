//! `baton rule eval`: evaluate `{"rule": ..., "data": ...}` JSON lines.

use std::io::{BufRead, Write};

use serde_json::{Value, json};

use super::{Rule, RuleError};

/// Counts from one [`eval_lines`] run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EvalSummary {
    /// Non-blank lines read.
    pub lines: u64,
    /// Lines that produced a result.
    pub ok: u64,
    /// Lines that produced an error object.
    pub errors: u64,
}

/// Reads JSON lines `{"rule": ..., "data": ...}` (a missing `"data"` is
/// `null`) and writes one line per input line: `{"result": <value>}`, or
/// `{"error": {"code", "message", "hint"?, "line"}}` for a line that is not
/// JSON, has no `"rule"`, holds a bad rule, or fails to evaluate.
/// Processing continues after a bad line; blank lines are skipped. Results
/// are wrapped so a rule returning an object with an `"error"` key cannot
/// be mistaken for a failure. Only I/O errors abort.
pub fn eval_lines(input: impl BufRead, mut output: impl Write) -> std::io::Result<EvalSummary> {
    let mut summary = EvalSummary::default();
    for (index, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        summary.lines += 1;
        let out = match eval_line(&line) {
            Ok(result) => {
                summary.ok += 1;
                json!({ "result": result })
            }
            Err(err) => {
                summary.errors += 1;
                let mut e = json!({
                    "code": err.code(),
                    "message": err.to_string(),
                    "line": index + 1,
                });
                if let Some(hint) = err.hint() {
                    e["hint"] = Value::String(hint);
                }
                json!({ "error": e })
            }
        };
        serde_json::to_writer(&mut output, &out)?;
        output.write_all(b"\n")?;
    }
    output.flush()?;
    Ok(summary)
}

fn eval_line(line: &str) -> Result<Value, RuleError> {
    let mut doc: Value = serde_json::from_str(line).map_err(|e| RuleError::LineNotJson {
        message: e.to_string(),
    })?;
    let Some(obj) = doc.as_object_mut() else {
        return Err(RuleError::LineMissingRule);
    };
    let rule = obj.remove("rule").ok_or(RuleError::LineMissingRule)?;
    let data = obj.remove("data").unwrap_or(Value::Null);
    Rule::compile(&rule)?.evaluate(&data)
}

//! `baton flag eval`: evaluate `{"flag": key, "context": {...}, "type"?: t}`
//! JSON lines against a [`FlagSet`].

use std::io::{BufRead, Write};

use serde_json::{Value, json};

use super::error::FlagError;
use super::eval::{EvaluationContext, FlagType};
use super::set::FlagSet;

/// Counts from one [`eval_lines`] run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EvalSummary {
    /// Non-blank lines read.
    pub lines: u64,
    /// Lines answered with a resolution (including `reason: ERROR` ones).
    pub resolved: u64,
    /// Lines answered with `{"error": ...}` (the line itself was bad).
    pub errors: u64,
}

/// Reads JSON lines `{"flag": key, "context"?: {...}, "type"?: "boolean" |
/// "string" | "integer" | "float" | "number" | "object"}` and writes one
/// line per input line: the [`Resolution`](super::Resolution) as JSON
/// (`key`, `value`, `variant`, `reason`, `errorCode`, `errorMessage`,
/// `metadata`), or `{"error": {"code", "message", "hint"?, "line"}}` for a
/// line that is not JSON, has no `"flag"`, an unknown `"type"` or a context
/// that is not an object. Blank lines are skipped; only I/O errors abort.
pub fn eval_lines(
    set: &FlagSet,
    input: impl BufRead,
    mut output: impl Write,
) -> std::io::Result<EvalSummary> {
    let mut summary = EvalSummary::default();
    for (index, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        summary.lines += 1;
        match parse_line(&line) {
            Ok((flag, context, ty)) => {
                summary.resolved += 1;
                let resolution = match ty {
                    Some(ty) => set.evaluate_as(&flag, &context, ty),
                    None => set.evaluate(&flag, &context),
                };
                serde_json::to_writer(&mut output, &resolution)?;
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
                serde_json::to_writer(&mut output, &json!({ "error": e }))?;
            }
        }
        output.write_all(b"\n")?;
    }
    output.flush()?;
    Ok(summary)
}

fn parse_line(line: &str) -> Result<(String, EvaluationContext, Option<FlagType>), FlagError> {
    let doc: Value = serde_json::from_str(line).map_err(|e| FlagError::LineNotJson {
        message: e.to_string(),
    })?;
    let flag = doc
        .get("flag")
        .and_then(Value::as_str)
        .ok_or(FlagError::LineMissingFlag)?
        .to_owned();
    let ty = match doc.get("type") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            Some(
                FlagType::parse(s).ok_or_else(|| FlagError::LineTypeInvalid {
                    found: format!("{s:?}"),
                })?,
            )
        }
        Some(other) => {
            return Err(FlagError::LineTypeInvalid {
                found: other.to_string(),
            });
        }
    };
    let context = EvaluationContext::from_value(doc.get("context").unwrap_or(&Value::Null))?;
    Ok((flag, context, ty))
}

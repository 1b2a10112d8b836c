//! `RuleError`: everything that can go wrong compiling or evaluating a rule.
//!
//! Codes are stable (`RULE_*`, UPPER_SNAKE); they end up in GraphQL
//! `extensions.code` and in `baton rule eval` output, so never rename one.

use crate::codes::Code;

/// Errors from the rule layer. See [`RuleError::code`] for the stable codes.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// The rule nests JSON arrays/objects deeper than the configured limit.
    #[error("rule nesting depth exceeds the limit of {limit}")]
    TooDeep {
        /// The configured maximum depth.
        limit: usize,
    },

    /// The rule's serialized JSON is larger than the configured limit.
    #[error("rule is larger than the limit of {limit} bytes (serialized JSON)")]
    TooLarge {
        /// The configured maximum size in bytes.
        limit: usize,
    },

    /// A single-key object names an operator that is neither JsonLogic nor flagd.
    #[error("unknown operator {operator:?} at {at}")]
    UnknownOperator {
        /// The operator name as written.
        operator: String,
        /// JSON pointer to the object that uses it, e.g. `/and/1`.
        at: String,
    },

    /// datalogic rejected the rule while compiling it.
    #[error("invalid rule: {message}")]
    Invalid {
        /// datalogic's description.
        message: String,
    },

    /// Evaluation failed (e.g. integer division by zero, non-numeric arithmetic).
    #[error("rule evaluation failed: {message}")]
    Eval {
        /// datalogic's description.
        message: String,
        /// The operator that failed, when datalogic knows it.
        operator: Option<String>,
    },

    /// The data could not be prepared for evaluation.
    #[error("rule data could not be prepared: {message}")]
    Data {
        /// What went wrong.
        message: String,
    },

    /// `eval_lines`: a line is not valid JSON.
    #[error("line is not valid JSON: {message}")]
    LineNotJson {
        /// serde_json's description.
        message: String,
    },

    /// `eval_lines`: a line is JSON but has no `"rule"` field (or is not an object).
    #[error("line has no \"rule\" field")]
    LineMissingRule,
}

impl RuleError {
    /// Stable UPPER_SNAKE code for this error.
    pub fn code(&self) -> Code {
        match self {
            RuleError::TooDeep { .. } => Code::RuleTooDeep,
            RuleError::TooLarge { .. } => Code::RuleTooLarge,
            RuleError::UnknownOperator { .. } => Code::RuleUnknownOperator,
            RuleError::Invalid { .. } => Code::RuleInvalid,
            RuleError::Eval { .. } => Code::RuleEvalFailed,
            RuleError::Data { .. } => Code::RuleDataInvalid,
            RuleError::LineNotJson { .. } => Code::RuleLineNotJson,
            RuleError::LineMissingRule => Code::RuleLineMissingRule,
        }
    }

    /// A short, actionable suggestion for the person who wrote the rule.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            RuleError::TooDeep { .. } => {
                "flatten the rule: combine conditions in one `and`/`or` list instead of nesting them"
                    .to_string()
            }
            RuleError::TooLarge { .. } => {
                "split the rule, or move large literal lists into the context and test them with `in`"
                    .to_string()
            }
            RuleError::UnknownOperator { .. } => format!(
                "supported operators: {}",
                super::analyze::KNOWN_OPERATORS.join(", ")
            ),
            RuleError::Invalid { .. } => {
                "check the operator's arguments against jsonlogic.com/operations.html".to_string()
            }
            RuleError::Eval { .. } => {
                "guard the failing operation, e.g. with `if` on its inputs".to_string()
            }
            RuleError::Data { .. } => return None,
            RuleError::LineNotJson { .. } => {
                r#"each line must be one JSON object: {"rule": ..., "data": ...}"#.to_string()
            }
            RuleError::LineMissingRule => {
                r#"add the rule under "rule": {"rule": ..., "data": ...}"#.to_string()
            }
        })
    }

    pub(crate) fn eval(err: datalogic_rs::Error) -> Self {
        RuleError::Eval {
            operator: err.operator().map(str::to_string),
            message: err.to_string(),
        }
    }
}

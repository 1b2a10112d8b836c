//! [`FlagError`]: everything wrong with a flag file (reported as
//! [`Issue`]s by `baton validate` and at load), with an evaluation context,
//! or with a `baton flag eval` line.
//!
//! Codes are stable UPPER_SNAKE (`FLAG_*`); never rename one. They are not
//! the OpenFeature error codes of an evaluation (`FLAG_NOT_FOUND`,
//! `PARSE_ERROR`, …), which are data in a [`Resolution`](super::Resolution)
//! (see [`ErrorCode`](super::ErrorCode)).

use crate::codes::Code;
use std::path::PathBuf;

use crate::flow::validate::{Issue, Severity};
use crate::rules::RuleError;

/// Errors (and warnings) of the flag layer. See [`FlagError::code`].
#[derive(Debug, thiserror::Error)]
pub enum FlagError {
    #[error("cannot read flag directory {}: {source}", dir.display())]
    DirUnreadable {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read flag file {}: {source}", file.display())]
    FileUnreadable {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("flag file {} is {size} bytes, more than the {max} allowed", file.display())]
    FileTooLarge { file: PathBuf, size: u64, max: u64 },
    #[error("invalid {format}: {message}")]
    Syntax {
        file: PathBuf,
        /// `YAML` or `JSON`.
        format: &'static str,
        message: String,
    },
    /// The document is not a flag definition (no `flags` object, or a
    /// top-level member of the wrong type).
    #[error("{message}")]
    FileInvalid {
        file: PathBuf,
        path: String,
        message: String,
    },
    /// A flag is not an object, or a member has the wrong JSON type.
    #[error("flag `{key}`: {message}")]
    FieldInvalid {
        file: PathBuf,
        key: String,
        path: String,
        message: String,
    },
    #[error("flag `{key}`: `state` is {found}, expected \"ENABLED\" or \"DISABLED\"")]
    StateInvalid {
        file: PathBuf,
        key: String,
        path: String,
        found: String,
    },
    #[error("flag `{key}`: {message}")]
    VariantsInvalid {
        file: PathBuf,
        key: String,
        path: String,
        message: String,
    },
    #[error("flag `{key}`: {detail}; all variants of a flag have one type")]
    VariantTypesMixed {
        file: PathBuf,
        key: String,
        path: String,
        /// Which variant differs from which, e.g. "variant `b` is a string
        /// but `a` is a boolean".
        detail: String,
    },
    #[error("flag `{key}`: defaultVariant {found} is not one of its variants ({})", variants.join(", "))]
    DefaultVariantUnknown {
        file: PathBuf,
        key: String,
        path: String,
        /// As written (JSON).
        found: String,
        variants: Vec<String>,
    },
    #[error("{message}")]
    MetadataInvalid {
        file: PathBuf,
        path: String,
        message: String,
    },
    #[error("evaluator `{name}`: {message}")]
    EvaluatorInvalid {
        file: PathBuf,
        name: String,
        path: String,
        message: String,
    },
    #[error("flag `{key}`: `$ref` names `{name}`, which is not in `$evaluators`")]
    RefUnknown {
        file: PathBuf,
        key: String,
        path: String,
        name: String,
        known: Vec<String>,
    },
    #[error("flag `{key}`: `$ref` cycle {chain}")]
    RefCycle {
        file: PathBuf,
        key: String,
        path: String,
        chain: String,
    },
    #[error("flag `{key}`: targeting does not compile: {source}")]
    TargetingInvalid {
        file: PathBuf,
        key: String,
        path: String,
        #[source]
        source: Box<RuleError>,
    },
    #[error("flag `{key}` is already defined in {}", first.display())]
    KeyDuplicate {
        file: PathBuf,
        key: String,
        path: String,
        first: PathBuf,
    },
    /// Warning: a member flagd does not know (usually a typo).
    #[error("unknown field `{field}`")]
    FieldUnknown {
        file: PathBuf,
        path: String,
        field: String,
        expected: &'static [&'static str],
    },
    /// Warning: targeting can return a literal that names no variant,
    /// which evaluates to a `GENERAL` error.
    #[error("flag `{key}`: targeting can return {name}, which is not one of its variants ({})", variants.join(", "))]
    TargetingUnknownVariant {
        file: PathBuf,
        key: String,
        path: String,
        /// As written (JSON).
        name: String,
        variants: Vec<String>,
    },
    /// An evaluation context that is not a JSON object, or that the rule
    /// engine cannot take in.
    #[error("invalid evaluation context: {message}")]
    ContextInvalid { message: String },
    /// `baton flag eval`: a line is not JSON.
    #[error("line is not valid JSON: {message}")]
    LineNotJson { message: String },
    /// `baton flag eval`: a line has no string `"flag"`.
    #[error("line has no string \"flag\" field")]
    LineMissingFlag,
    /// `baton flag eval`: `"type"` is not a flag type.
    #[error(
        "\"type\" is {found}, expected \"boolean\", \"string\", \"integer\", \"float\", \"number\" or \"object\""
    )]
    LineTypeInvalid { found: String },
}

impl FlagError {
    /// Stable UPPER_SNAKE code.
    pub fn code(&self) -> Code {
        match self {
            FlagError::DirUnreadable { .. } => Code::FlagDirUnreadable,
            FlagError::FileUnreadable { .. } => Code::FlagFileUnreadable,
            FlagError::FileTooLarge { .. } => Code::FlagFileTooLarge,
            FlagError::Syntax { .. } => Code::FlagFileSyntax,
            FlagError::FileInvalid { .. } => Code::FlagFileInvalid,
            FlagError::FieldInvalid { .. } => Code::FlagFieldInvalid,
            FlagError::StateInvalid { .. } => Code::FlagStateInvalid,
            FlagError::VariantsInvalid { .. } => Code::FlagVariantsInvalid,
            FlagError::VariantTypesMixed { .. } => Code::FlagVariantTypesMixed,
            FlagError::DefaultVariantUnknown { .. } => Code::FlagDefaultVariantUnknown,
            FlagError::MetadataInvalid { .. } => Code::FlagMetadataInvalid,
            FlagError::EvaluatorInvalid { .. } => Code::FlagEvaluatorInvalid,
            FlagError::RefUnknown { .. } => Code::FlagRefUnknown,
            FlagError::RefCycle { .. } => Code::FlagRefCycle,
            FlagError::TargetingInvalid { .. } => Code::FlagTargetingInvalid,
            FlagError::KeyDuplicate { .. } => Code::FlagKeyDuplicate,
            FlagError::FieldUnknown { .. } => Code::FlagFieldUnknown,
            FlagError::TargetingUnknownVariant { .. } => Code::FlagTargetingUnknownVariant,
            FlagError::ContextInvalid { .. } => Code::FlagContextInvalid,
            FlagError::LineNotJson { .. } => Code::FlagLineNotJson,
            FlagError::LineMissingFlag => Code::FlagLineMissingFlag,
            FlagError::LineTypeInvalid { .. } => Code::FlagLineTypeInvalid,
        }
    }

    /// A short, actionable suggestion.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            FlagError::DirUnreadable { .. } => {
                "check that the flag directory (--flags / BATON_FLAGS) exists and is readable".into()
            }
            FlagError::FileUnreadable { .. } => {
                "check the file's permissions and that it is UTF-8 text".into()
            }
            FlagError::FileTooLarge { .. } => "split the flags over several files".into(),
            FlagError::Syntax { format, .. } => {
                format!("fix the {format} syntax at the line and column given")
            }
            FlagError::FileInvalid { .. } => {
                r#"a flag file is flagd's format: {"flags": {"my-flag": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}}}"#.into()
            }
            FlagError::FieldInvalid { .. } => {
                "compare with flagd's flag definition schema (https://flagd.dev/schema/v0/flags.json)"
                    .into()
            }
            FlagError::StateInvalid { .. } => r#"set "state": "ENABLED" or "DISABLED""#.into(),
            FlagError::VariantsInvalid { .. } => {
                "give the flag at least one variant; values are booleans, strings, numbers or objects"
                    .into()
            }
            FlagError::VariantTypesMixed { .. } => {
                "make every variant the same type (a flag is boolean, string, number or object)"
                    .into()
            }
            FlagError::DefaultVariantUnknown { .. } => {
                "name one of the flag's variants, or use null to let the app's code default apply"
                    .into()
            }
            FlagError::MetadataInvalid { .. } => {
                "metadata is an object of string, number or boolean values".into()
            }
            FlagError::EvaluatorInvalid { .. } => {
                "an evaluator is a non-empty JsonLogic object, e.g. {\"in\": [{\"var\": \"email\"}, [\"a@b.c\"]]}"
                    .into()
            }
            FlagError::RefUnknown { known, .. } if known.is_empty() => {
                "define it under the file's top-level `$evaluators`".into()
            }
            FlagError::RefUnknown { known, .. } => {
                format!("evaluators in this file: {}", known.join(", "))
            }
            FlagError::RefCycle { .. } => "an evaluator must not refer back to itself".into(),
            FlagError::TargetingInvalid { source, .. } => {
                return source.hint();
            }
            FlagError::KeyDuplicate { .. } => {
                "flag keys are unique across all flag files; rename or remove one".into()
            }
            FlagError::FieldUnknown { expected, .. } => {
                format!("known fields: {}", expected.join(", "))
            }
            FlagError::TargetingUnknownVariant { .. } => {
                "return a variant name (or null for the default variant)".into()
            }
            FlagError::ContextInvalid { .. } => {
                r#"send the context as an object, e.g. {"targetingKey": "user-1", "platform": "android"}"#.into()
            }
            FlagError::LineNotJson { .. } | FlagError::LineMissingFlag => {
                r#"each line is one JSON object: {"flag": "my-flag", "context": {...}, "type": "boolean"}"#.into()
            }
            FlagError::LineTypeInvalid { .. } => {
                "leave \"type\" out to get the value as it is".into()
            }
        })
    }

    /// Warnings do not stop a flag from loading.
    pub fn severity(&self) -> Severity {
        match self {
            FlagError::FieldUnknown { .. } | FlagError::TargetingUnknownVariant { .. } => {
                Severity::Warning
            }
            _ => Severity::Error,
        }
    }

    /// The error as a `baton validate` issue. `node` stays empty: the flag
    /// key is in the message and in the path.
    pub fn to_issue(&self) -> Issue {
        let (file, path) = match self {
            FlagError::DirUnreadable { dir, .. } => (dir.clone(), "$".to_string()),
            FlagError::FileUnreadable { file, .. }
            | FlagError::FileTooLarge { file, .. }
            | FlagError::Syntax { file, .. } => (file.clone(), "$".to_string()),
            FlagError::FileInvalid { file, path, .. }
            | FlagError::FieldInvalid { file, path, .. }
            | FlagError::StateInvalid { file, path, .. }
            | FlagError::VariantsInvalid { file, path, .. }
            | FlagError::VariantTypesMixed { file, path, .. }
            | FlagError::DefaultVariantUnknown { file, path, .. }
            | FlagError::MetadataInvalid { file, path, .. }
            | FlagError::EvaluatorInvalid { file, path, .. }
            | FlagError::RefUnknown { file, path, .. }
            | FlagError::RefCycle { file, path, .. }
            | FlagError::TargetingInvalid { file, path, .. }
            | FlagError::KeyDuplicate { file, path, .. }
            | FlagError::FieldUnknown { file, path, .. }
            | FlagError::TargetingUnknownVariant { file, path, .. } => (file.clone(), path.clone()),
            FlagError::ContextInvalid { .. }
            | FlagError::LineNotJson { .. }
            | FlagError::LineMissingFlag
            | FlagError::LineTypeInvalid { .. } => (PathBuf::new(), "$".to_string()),
        };
        Issue {
            severity: self.severity(),
            code: self.code(),
            file: file.display().to_string(),
            node: None,
            path,
            message: self.to_string(),
            hint: self.hint(),
            line: None,
            column: None,
        }
    }
}

//! [`FlowError`]: everything that stops a flow file from becoming a
//! [`FlowDef`](super::model::FlowDef) (I/O, size limits, syntax,
//! structure, duplicate ids), plus the one error that wraps validation
//! issues for callers that need a single error (publish, startup).
//!
//! Directory loading reports per-file failures as [`Issue`]s (so one bad
//! file does not hide the others); [`FlowError::to_issue`] is the bridge,
//! and an issue's code is the error's code.

use crate::codes::Code;
use std::path::PathBuf;

use super::validate::{Issue, Severity};

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("cannot read flow directory {}: {source}", dir.display())]
    DirUnreadable {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read flow file {}: {source}", file.display())]
    FileUnreadable {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("flow file {} is {size} bytes, more than the {max} allowed", file.display())]
    FileTooLarge { file: PathBuf, size: u64, max: u64 },
    #[error("{} is not a flow file: only .yaml, .yml and .json are read", file.display())]
    UnsupportedFormat { file: PathBuf },
    #[error("{} is not valid {format}: {message}", file.display())]
    Syntax {
        file: PathBuf,
        /// `YAML` or `JSON`.
        format: &'static str,
        message: String,
    },
    #[error("{} at {path}: {message}", file.display())]
    Structure {
        file: PathBuf,
        /// JSON path of the offending value, e.g. `$.nodes[2].components[0].label`.
        path: String,
        /// Id of the node the value is in, when known.
        node: Option<String>,
        message: String,
    },
    #[error("flow in {} has {count} nodes, more than the {max} allowed", file.display())]
    TooManyNodes {
        file: PathBuf,
        count: usize,
        max: usize,
    },
    #[error("flow id `{id}` in {} is already defined in {}", file.display(), first.display())]
    DuplicateFlowId {
        id: String,
        file: PathBuf,
        first: PathBuf,
    },
    #[error("flow `{flow_id}` has {} validation error(s)", errors(issues))]
    Invalid { flow_id: String, issues: Vec<Issue> },
    /// A flow that passed validation (possibly by an older build, when
    /// loaded back from the store) still does not compile.
    #[error("flow `{flow}` does not compile: {message}")]
    Compile { flow: String, message: String },
}

fn errors(issues: &[Issue]) -> usize {
    issues
        .iter()
        .filter(|i| i.severity == Severity::Error)
        .count()
}

impl FlowError {
    pub fn code(&self) -> Code {
        match self {
            FlowError::DirUnreadable { .. } => Code::FlowDirUnreadable,
            FlowError::FileUnreadable { .. } => Code::FlowFileUnreadable,
            FlowError::FileTooLarge { .. } => Code::FlowFileTooLarge,
            FlowError::UnsupportedFormat { .. } => Code::FlowUnsupportedFormat,
            FlowError::Syntax { .. } => Code::FlowSyntax,
            FlowError::Structure { .. } => Code::FlowStructure,
            FlowError::TooManyNodes { .. } => Code::FlowTooManyNodes,
            FlowError::DuplicateFlowId { .. } => Code::FlowDuplicateId,
            FlowError::Invalid { .. } => Code::FlowInvalid,
            FlowError::Compile { .. } => Code::FlowCompileFailed,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            FlowError::DirUnreadable { .. } => {
                Some("check that the flows directory exists and is readable".into())
            }
            FlowError::FileUnreadable { .. } => {
                Some("check the path, the file's permissions and that it is UTF-8 text".into())
            }
            FlowError::FileTooLarge { .. } => Some("split the flow into smaller flows".into()),
            FlowError::UnsupportedFormat { .. } => {
                Some("rename the file to .yaml, .yml or .json".into())
            }
            FlowError::Syntax { format, .. } => Some(format!(
                "fix the {format} syntax at the line and column given"
            )),
            FlowError::Structure { .. } => Some(
                "compare with schema/flow.schema.json; editors using it autocomplete flow files"
                    .into(),
            ),
            FlowError::TooManyNodes { .. } => Some("split the flow into smaller flows".into()),
            FlowError::DuplicateFlowId { .. } => Some("give each flow file a distinct `id`".into()),
            FlowError::Invalid { .. } => {
                Some("run `baton validate` for the full list of issues and fix every error".into())
            }
            FlowError::Compile { .. } => {
                Some("run `baton validate` on the flow; this is a Baton defect if it passes".into())
            }
        }
    }

    /// The error as a validation-style issue (for directory reports). An
    /// [`Invalid`](FlowError::Invalid) error becomes its first error issue.
    pub fn to_issue(&self) -> Issue {
        let (file, path, node) = match self {
            FlowError::DirUnreadable { dir, .. } => (dir.clone(), "$".to_string(), None),
            FlowError::FileUnreadable { file, .. }
            | FlowError::FileTooLarge { file, .. }
            | FlowError::UnsupportedFormat { file }
            | FlowError::Syntax { file, .. } => (file.clone(), "$".to_string(), None),
            FlowError::Structure {
                file, path, node, ..
            } => (file.clone(), path.clone(), node.clone()),
            FlowError::TooManyNodes { file, .. } => (file.clone(), "$.nodes".to_string(), None),
            FlowError::DuplicateFlowId { file, .. } => (file.clone(), "$.id".to_string(), None),
            FlowError::Invalid { issues, .. } => {
                if let Some(first) = issues.iter().find(|i| i.severity == Severity::Error) {
                    return first.clone();
                }
                (PathBuf::new(), "$".to_string(), None)
            }
            FlowError::Compile { .. } => (PathBuf::new(), "$".to_string(), None),
        };
        let message = match self {
            // The file is already in the issue's `file` field.
            FlowError::Structure { message, .. } => message.clone(),
            FlowError::Syntax {
                format, message, ..
            } => format!("invalid {format}: {message}"),
            other => other.to_string(),
        };
        Issue {
            severity: Severity::Error,
            code: self.code(),
            file: file.display().to_string(),
            node,
            path,
            message,
            hint: self.hint(),
            line: None,
            column: None,
        }
    }
}

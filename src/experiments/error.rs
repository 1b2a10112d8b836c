//! [`ExperimentError`]: everything wrong with an experiment file (reported
//! as [`Issue`]s by `baton validate`) or with the counts handed to
//! [`super::stats::analyze`].
//!
//! Codes are stable UPPER_SNAKE (`EXPERIMENT_*`, `STATS_*`); never rename one.

use crate::codes::Code;
use std::path::PathBuf;

use crate::flow::validate::{Issue, Severity};

/// Errors (and warnings) of the experiment layer. See [`ExperimentError::code`].
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    #[error("cannot read experiment directory {}: {source}", dir.display())]
    DirUnreadable {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read experiment file {}: {source}", file.display())]
    FileUnreadable {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("experiment file {} is {size} bytes, more than the {max} allowed", file.display())]
    FileTooLarge { file: PathBuf, size: u64, max: u64 },
    #[error("invalid {format}: {message}")]
    Syntax {
        file: PathBuf,
        /// `YAML` or `JSON`.
        format: &'static str,
        message: String,
    },
    /// The document does not have the shape of an experiment (missing or
    /// unknown field, wrong type).
    #[error("{message}")]
    Structure {
        file: PathBuf,
        path: String,
        message: String,
    },
    #[error("experiment id `{id}` is not lowercase letters, digits, `-` and `_`")]
    IdInvalid {
        file: PathBuf,
        path: &'static str,
        id: String,
    },
    #[error("experiment `{id}` is already defined in {}", first.display())]
    IdDuplicate {
        file: PathBuf,
        path: &'static str,
        id: String,
        first: PathBuf,
    },
    #[error("experiment `{id}`: flag `{flag}` is not defined")]
    FlagUnknown {
        file: PathBuf,
        path: &'static str,
        id: String,
        flag: String,
        known: Vec<String>,
    },
    #[error("experiment `{id}`: control `{control}` is not one of the flag's variants ({})", variants.join(", "))]
    ControlUnknown {
        file: PathBuf,
        path: &'static str,
        id: String,
        control: String,
        variants: Vec<String>,
    },
    /// Warning: the flag's targeting has no `fractional`, so its arms are
    /// not assigned at random and a comparison between them is confounded.
    #[error("experiment `{id}`: flag `{flag}` {detail}, so its arms are not a random split")]
    FlagNotRandomized {
        file: PathBuf,
        path: &'static str,
        id: String,
        flag: String,
        /// "has no `fractional` in its targeting", "has more than one `fractional`".
        detail: &'static str,
    },
    #[error("experiment `{id}`: `eligible` does not compile: {source}")]
    RuleInvalid {
        file: PathBuf,
        path: &'static str,
        id: String,
        #[source]
        source: Box<crate::rules::RuleError>,
    },
    #[error("experiment `{id}`: `{field}` is not an RFC 3339 timestamp: {message}")]
    TimestampInvalid {
        file: PathBuf,
        path: &'static str,
        id: String,
        field: &'static str,
        message: String,
    },
    #[error("experiment `{id}`: `stop` ({stop}) is not after `start` ({start})")]
    StopBeforeStart {
        file: PathBuf,
        path: &'static str,
        id: String,
        start: String,
        stop: String,
    },
    #[error("experiment `{id}` has no goals")]
    GoalsEmpty {
        file: PathBuf,
        path: &'static str,
        id: String,
    },
    #[error("experiment `{id}`: namespace range {bound} is {value}, outside 0..=100 percent")]
    RangeOutOfBounds {
        file: PathBuf,
        path: &'static str,
        id: String,
        /// `from` or `to`.
        bound: &'static str,
        value: f64,
    },
    #[error("experiment `{id}`: namespace range [{from}, {to}) is empty")]
    RangeEmpty {
        file: PathBuf,
        path: &'static str,
        id: String,
        from: f64,
        to: f64,
    },
    #[error(
        "experiment `{id}`: namespace range overlaps experiment `{other}`'s [{other_from}, {other_to}) in the same namespace"
    )]
    NamespaceOverlap {
        file: PathBuf,
        path: &'static str,
        id: String,
        other: String,
        other_from: f64,
        other_to: f64,
    },
    /// Warning: no flow with this id among the flows checked (it may be
    /// published another way).
    #[error("goal flow `{flow}` is not among the flows checked")]
    GoalFlowUnknown {
        file: PathBuf,
        path: String,
        flow: String,
    },
    #[error("goal node `{node}` is not a node of flow `{flow}`")]
    GoalNodeUnknown {
        file: PathBuf,
        path: String,
        flow: String,
        node: String,
    },
    /// `analyze`: an arm has more conversions than exposures.
    #[error("arm `{arm}` has {conversions} conversions but only {exposures} exposures")]
    ConversionsExceedExposures {
        arm: String,
        exposures: u64,
        conversions: u64,
    },
    /// `analyze`: two count rows for one arm.
    #[error("arm `{arm}` is counted twice")]
    ArmDuplicate { arm: String },
}

impl ExperimentError {
    /// Stable UPPER_SNAKE code.
    pub fn code(&self) -> Code {
        match self {
            ExperimentError::DirUnreadable { .. } => Code::ExperimentDirUnreadable,
            ExperimentError::FileUnreadable { .. } => Code::ExperimentFileUnreadable,
            ExperimentError::FileTooLarge { .. } => Code::ExperimentFileTooLarge,
            ExperimentError::Syntax { .. } => Code::ExperimentFileSyntax,
            ExperimentError::Structure { .. } => Code::ExperimentStructure,
            ExperimentError::IdInvalid { .. } => Code::ExperimentIdInvalid,
            ExperimentError::IdDuplicate { .. } => Code::ExperimentIdDuplicate,
            ExperimentError::FlagUnknown { .. } => Code::ExperimentFlagUnknown,
            ExperimentError::ControlUnknown { .. } => Code::ExperimentControlUnknown,
            ExperimentError::FlagNotRandomized { .. } => Code::ExperimentFlagNotRandomized,
            ExperimentError::RuleInvalid { .. } => Code::ExperimentRuleInvalid,
            ExperimentError::TimestampInvalid { .. } => Code::ExperimentTimestampInvalid,
            ExperimentError::StopBeforeStart { .. } => Code::ExperimentStopBeforeStart,
            ExperimentError::GoalsEmpty { .. } => Code::ExperimentGoalsEmpty,
            ExperimentError::RangeOutOfBounds { .. } => Code::ExperimentRangeOutOfBounds,
            ExperimentError::RangeEmpty { .. } => Code::ExperimentRangeEmpty,
            ExperimentError::NamespaceOverlap { .. } => Code::ExperimentNamespaceOverlap,
            ExperimentError::GoalFlowUnknown { .. } => Code::ExperimentGoalFlowUnknown,
            ExperimentError::GoalNodeUnknown { .. } => Code::ExperimentGoalNodeUnknown,
            ExperimentError::ConversionsExceedExposures { .. } => {
                Code::StatsConversionsExceedExposures
            }
            ExperimentError::ArmDuplicate { .. } => Code::StatsArmDuplicate,
        }
    }

    /// A short, actionable suggestion.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            ExperimentError::DirUnreadable { .. } => {
                "check that the experiments directory exists and is readable".into()
            }
            ExperimentError::FileUnreadable { .. } => {
                "check the file's permissions and that it is UTF-8 text".into()
            }
            ExperimentError::FileTooLarge { .. } => "one experiment per file".into(),
            ExperimentError::Syntax { format, .. } => {
                format!("fix the {format} syntax at the line and column given")
            }
            ExperimentError::Structure { .. } => {
                "an experiment is {id, flag, control, goals: [{flow, node}], eligible?, start?, stop?, namespace?: {name, range: [from, to]}}".into()
            }
            ExperimentError::IdInvalid { .. } => {
                "use an id like `onboarding-headline` (^[a-z0-9][a-z0-9_-]*$)".into()
            }
            ExperimentError::IdDuplicate { .. } => {
                "experiment ids are unique across all files; rename or remove one".into()
            }
            ExperimentError::FlagUnknown { known, .. } if known.is_empty() => {
                "define the flag in a flag file (flagd format) first".into()
            }
            ExperimentError::FlagUnknown { known, .. } => {
                format!("defined flags: {}", known.join(", "))
            }
            ExperimentError::ControlUnknown { .. } => {
                "name the variant that is today's behaviour".into()
            }
            ExperimentError::FlagNotRandomized { .. } => {
                r#"split the arms with one `fractional` in the flag's targeting, e.g. {"fractional": [["a", 50], ["b", 50]]}"#.into()
            }
            ExperimentError::RuleInvalid { source, .. } => return source.hint(),
            ExperimentError::TimestampInvalid { .. } => {
                "write a date, `T`, a time and a zone, e.g. 2026-12-01T09:00:00Z or 2026-12-01T10:00:00+01:00"
                    .into()
            }
            ExperimentError::StopBeforeStart { .. } => {
                "swap the timestamps or move `stop` later".into()
            }
            ExperimentError::GoalsEmpty { .. } => {
                "add at least one goal: goals: [{flow: onboarding, node: done}]".into()
            }
            ExperimentError::RangeOutOfBounds { .. } | ExperimentError::RangeEmpty { .. } => {
                "a range is [from, to) in percent with 0 <= from < to <= 100, e.g. [0, 50]".into()
            }
            ExperimentError::NamespaceOverlap { .. } => {
                "experiments in one namespace are mutually exclusive: give them disjoint ranges"
                    .into()
            }
            ExperimentError::GoalFlowUnknown { .. } => {
                "check the flow id, or validate the flows together with the experiments".into()
            }
            ExperimentError::GoalNodeUnknown { .. } => {
                "name a node of the flow (often its `end` node); a missing goal never converts"
                    .into()
            }
            ExperimentError::ConversionsExceedExposures { .. } => {
                "count conversions only of exposed sessions".into()
            }
            ExperimentError::ArmDuplicate { .. } => "sum the counts per arm first".into(),
        })
    }

    /// Warnings do not stop an experiment from loading.
    pub fn severity(&self) -> Severity {
        match self {
            ExperimentError::FlagNotRandomized { .. } | ExperimentError::GoalFlowUnknown { .. } => {
                Severity::Warning
            }
            _ => Severity::Error,
        }
    }

    /// The error as a `baton validate` issue (`node` stays empty; the
    /// experiment id is in the message).
    pub fn to_issue(&self) -> Issue {
        let (file, path) = match self {
            ExperimentError::DirUnreadable { dir, .. } => (dir.clone(), "$".to_string()),
            ExperimentError::FileUnreadable { file, .. }
            | ExperimentError::FileTooLarge { file, .. }
            | ExperimentError::Syntax { file, .. } => (file.clone(), "$".to_string()),
            ExperimentError::Structure { file, path, .. }
            | ExperimentError::GoalFlowUnknown { file, path, .. }
            | ExperimentError::GoalNodeUnknown { file, path, .. } => (file.clone(), path.clone()),
            ExperimentError::IdInvalid { file, path, .. }
            | ExperimentError::IdDuplicate { file, path, .. }
            | ExperimentError::FlagUnknown { file, path, .. }
            | ExperimentError::ControlUnknown { file, path, .. }
            | ExperimentError::FlagNotRandomized { file, path, .. }
            | ExperimentError::RuleInvalid { file, path, .. }
            | ExperimentError::TimestampInvalid { file, path, .. }
            | ExperimentError::StopBeforeStart { file, path, .. }
            | ExperimentError::GoalsEmpty { file, path, .. }
            | ExperimentError::RangeOutOfBounds { file, path, .. }
            | ExperimentError::RangeEmpty { file, path, .. }
            | ExperimentError::NamespaceOverlap { file, path, .. } => {
                (file.clone(), path.to_string())
            }
            ExperimentError::ConversionsExceedExposures { .. }
            | ExperimentError::ArmDuplicate { .. } => (PathBuf::new(), "$".to_string()),
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

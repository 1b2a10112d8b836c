//! Experiments: a flag whose variants are the arms, plus goals, eligibility,
//! a schedule and an optional namespace for mutual exclusion.
//!
//! This module owns the pure building blocks:
//! * [`def`]: experiment files (`experiments/*.yaml|yml|json`), their
//!   [`validate`]ion against the flags (stable `EXPERIMENT_*` codes), the
//!   flag's split ([`arm_weights`]) and the checked [`Experiment`] with
//!   eligibility, schedule and namespace bucketing;
//! * [`stats`]: results from exposure and conversion counts ([`analyze`]).
//!
//! * [`live`]: experiments in running sessions — sticky assignment,
//!   exposures, conversions, QA forcing — and results from the session log.

pub mod def;
mod error;
pub mod live;
pub mod report;
pub mod stats;
mod time;

pub use def::{
    Experiment, ExperimentDef, ExperimentLoad, Goal, LoadedExperiment, Namespace, NamespaceDef,
    arm_weights, check_paths, is_experiment_document, is_experiment_file, is_experiments_dir,
    load_dir, load_file, parse_str, parse_value, validate, validate_goals,
};
pub use error::ExperimentError;
pub use stats::{ArmCounts, ArmResult, Comparison, Interval, Results, SampleRatio, analyze};
pub use time::parse_rfc3339;

//! Feature flags in OpenFeature flagd's flag-definition format, evaluated
//! exactly as flagd evaluates them.
//!
//! This module owns:
//! * [`load`]: reading flag files (JSON or YAML, flagd's format, `$ref` to
//!   `$evaluators`) into a [`FlagSet`], with precise [`Issue`]s for
//!   `baton validate`;
//! * [`FlagSet`]: the compiled flags, immutable; [`FlagStore`] holds the one
//!   in use and swaps it whole on reload;
//! * evaluation ([`FlagSet::evaluate`]): [`EvaluationContext`] in,
//!   [`Resolution`] out, with OpenFeature's reasons and error codes — the
//!   API the OFREP endpoint (`crate::api::ofrep`) and, later, the flow
//!   engine call;
//! * [`eval_lines`] for `baton flag eval`.
//!
//! Targeting rules are [`crate::rules::Rule`]s, compiled once at load.

mod error;
mod eval;
mod lines;
pub mod load;
mod set;

use std::path::Path;

pub use error::FlagError;
pub use eval::{ErrorCode, EvaluationContext, FlagType, Reason, Resolution};
pub use lines::{EvalSummary, eval_lines};
pub use load::{FlagLoad, load_dir, load_str};
pub use set::{FlagSet, FlagStore};

use crate::flow::validate::Issue;

/// What [`reload`] did.
#[derive(Debug, Default)]
pub struct FlagReload {
    /// Whether the new set is now in use.
    pub swapped: bool,
    /// Flags in the set now in use.
    pub flags: usize,
    /// Everything the load reported.
    pub issues: Vec<Issue>,
}

/// Loads `dir` and makes it the set in use, unless the load reported an
/// error: then the last good set keeps serving. A missing directory is an
/// empty set.
pub fn reload(store: &FlagStore, dir: &Path) -> Result<FlagReload, FlagError> {
    let load = load_or_empty(dir)?;
    let has_errors = load.has_errors();
    if !has_errors {
        let flags = load.set.len();
        store.replace(load.set);
        return Ok(FlagReload {
            swapped: true,
            flags,
            issues: load.issues,
        });
    }
    Ok(FlagReload {
        swapped: false,
        flags: store.current().len(),
        issues: load.issues,
    })
}

/// [`load_dir`], or an empty set when `dir` does not exist.
pub fn load_or_empty(dir: &Path) -> Result<FlagLoad, FlagError> {
    if !dir.exists() {
        return Ok(FlagLoad::default());
    }
    load_dir(dir)
}

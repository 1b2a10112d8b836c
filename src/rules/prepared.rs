//! Evaluation plumbing: the per-thread scratch arena every evaluation uses,
//! and [`PreparedData`], a context converted once for many evaluations.

use std::cell::RefCell;

use datalogic_rs::bumpalo::Bump;
use datalogic_rs::{DataValue, ParsedData};

use super::RuleError;

/// An arena that grew past this is dropped after use instead of reset, so
/// one huge evaluation does not pin its memory to the thread forever.
const ARENA_KEEP_BYTES: usize = 256 * 1024;

thread_local! {
    static ARENA: RefCell<Bump> = RefCell::new(Bump::with_capacity(4096));
}

/// Run `f` with this thread's scratch arena, reset afterwards. `f` must copy
/// out whatever it needs: nothing allocated in the arena outlives the call.
pub(crate) fn with_arena<R>(f: impl FnOnce(&Bump) -> R) -> R {
    ARENA.with(|cell| match cell.try_borrow_mut() {
        Ok(mut arena) => {
            let out = f(&arena);
            if arena.allocated_bytes() > ARENA_KEEP_BYTES {
                *arena = Bump::with_capacity(4096);
            } else {
                arena.reset();
            }
            out
        }
        // Re-entered (an evaluation inside an evaluation): use a fresh one.
        Err(_) => f(&Bump::new()),
    })
}

/// A data document converted once into datalogic's representation, so
/// several rules (or one rule many times) can be evaluated against it
/// without converting the `serde_json::Value` on every call.
///
/// Cost: one serialization of the value to JSON text plus one parse into an
/// arena owned by this handle (the tree holds the text, so memory is about
/// twice the JSON size). Evaluating against it then costs no conversion at
/// all. It is `Send` but not `Sync` (the arena is not); build one per
/// request/task.
pub struct PreparedData {
    parsed: ParsedData,
    /// The document is an object whose members have distinct names (JSON
    /// text may repeat one; a `serde_json::Value` cannot).
    unique_members: bool,
}

impl PreparedData {
    /// Convert `data` for repeated evaluation.
    pub fn new(data: &serde_json::Value) -> Result<Self, RuleError> {
        let text = serde_json::to_string(data).map_err(|e| RuleError::Data {
            message: e.to_string(),
        })?;
        let parsed = Self::parse(&text)?;
        Ok(PreparedData {
            parsed,
            unique_members: data.is_object(),
        })
    }

    /// Parse JSON text directly, skipping the `serde_json::Value` step.
    pub fn from_json(text: &str) -> Result<Self, RuleError> {
        let parsed = Self::parse(text)?;
        let unique_members = match parsed.value() {
            DataValue::Object(pairs) => distinct_names(pairs),
            _ => false,
        };
        Ok(PreparedData {
            parsed,
            unique_members,
        })
    }

    fn parse(text: &str) -> Result<ParsedData, RuleError> {
        ParsedData::from_json(text).map_err(|e| RuleError::Data {
            message: e.to_string(),
        })
    }

    pub(crate) fn parsed(&self) -> &ParsedData {
        &self.parsed
    }

    /// Whether the document is an object whose members have distinct
    /// names, so a lookup by name may start from a remembered position.
    pub(crate) fn unique_members(&self) -> bool {
        self.unique_members
    }

    /// Bytes held by the handle (JSON text + tree).
    /// The position of the first top-level member named `name` (the one
    /// a lookup by name finds), or [`ABSENT`](super::fast::ABSENT) when
    /// there is none or the document is not an object.
    pub(crate) fn member_position(&self, name: &str) -> u32 {
        match self.parsed.value() {
            DataValue::Object(pairs) => pairs
                .iter()
                .position(|(k, _)| *k == name)
                .map_or(super::fast::ABSENT, |i| i as u32),
            _ => super::fast::ABSENT,
        }
    }

    pub fn allocated_bytes(&self) -> usize {
        self.parsed.allocated_bytes()
    }
}

/// Whether no two members share a name: pairwise for the usual few
/// members, sorted for many.
fn distinct_names(pairs: &[(&str, DataValue<'_>)]) -> bool {
    const PAIRWISE_UP_TO: usize = 16;
    if pairs.len() <= PAIRWISE_UP_TO {
        return pairs
            .iter()
            .enumerate()
            .all(|(i, (a, _))| pairs[..i].iter().all(|(b, _)| a != b));
    }
    let mut names: Vec<&str> = pairs.iter().map(|(k, _)| *k).collect();
    names.sort_unstable();
    names.windows(2).all(|w| w[0] != w[1])
}

impl std::fmt::Debug for PreparedData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedData")
            .field("allocated_bytes", &self.allocated_bytes())
            .finish_non_exhaustive()
    }
}

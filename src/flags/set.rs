//! [`FlagSet`]: the loaded, compiled flags; immutable once built, so a
//! reload builds a new one and swaps it in ([`FlagStore`]).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};

use arc_swap::ArcSwap;
use serde_json::{Map, Value};

use crate::rules::Rule;

/// Flags by key. foldhash instead of the default SipHash: a lookup per
/// evaluation is on the hot path, and HashDoS needs inserted keys, which
/// come only from our own flag files.
pub(crate) type FlagMap = HashMap<Box<str>, Flag, foldhash::fast::RandomState>;

/// Every flag from a set of flag files, compiled.
#[derive(Debug, Default)]
pub struct FlagSet {
    pub(crate) flags: FlagMap,
    /// Flag keys in ascending order: bulk evaluation answers in this order,
    /// so the same flags and context give the same bytes (and ETag).
    pub(crate) keys: Vec<Box<str>>,
    /// Tells sets apart for the context member positions an
    /// `EvaluationContext` keeps (0 only for a set with no slots).
    pub(crate) id: u64,
    /// Every targeting rule's slot names (the top-level context members
    /// its fast path reads by position), one rule after another; each
    /// [`Targeting::slots`] is its rule's range. An evaluation context
    /// finds these members once per set, so a `var` in targeting is an
    /// indexed load. Names shared by rules are repeated: finding one is a
    /// scan of the context's members, once per request.
    pub(crate) slot_names: Vec<Box<str>>,
}

/// One flag, ready to evaluate.
#[derive(Debug)]
pub(crate) struct Flag {
    pub(crate) enabled: bool,
    pub(crate) variants: Map<String, Value>,
    pub(crate) default_variant: Option<String>,
    pub(crate) targeting: Option<Targeting>,
    /// File-level metadata merged under the flag's own.
    pub(crate) metadata: Map<String, Value>,
    /// Why the flag failed validation; it then evaluates to `PARSE_ERROR`.
    pub(crate) broken: Option<String>,
}

#[derive(Debug)]
pub(crate) struct Targeting {
    pub(crate) rule: Rule,
    /// The rule's slots in [`FlagSet::slot_names`].
    pub(crate) slots: Range<usize>,
}

pub(crate) static EMPTY_METADATA: LazyLock<Map<String, Value>> = LazyLock::new(Map::new);

impl FlagSet {
    pub(crate) fn from_flags(mut flags: HashMap<Box<str>, Flag>) -> FlagSet {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let mut keys: Vec<Box<str>> = flags.keys().cloned().collect();
        keys.sort();
        let mut slot_names = Vec::new();
        for key in &keys {
            if let Some(t) = flags.get_mut(key).and_then(|f| f.targeting.as_mut()) {
                let names = t.rule.slot_names();
                t.slots = slot_names.len()..slot_names.len() + names.len();
                slot_names.extend_from_slice(names);
            }
        }
        FlagSet {
            flags: flags.into_iter().collect(),
            keys,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            slot_names,
        }
    }

    /// No flags.
    pub fn empty() -> FlagSet {
        FlagSet::default()
    }

    /// Number of flags (including ones that failed validation).
    pub fn len(&self) -> usize {
        self.flags.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flags.is_empty()
    }

    /// Flag keys in ascending order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &str> {
        self.keys.iter().map(|k| &**k)
    }

    /// The value of `variant` of flag `key`, if both exist.
    pub fn variant_value(&self, key: &str, variant: &str) -> Option<&Value> {
        self.flags.get(key)?.variants.get(variant)
    }

    /// The variant names of flag `key` (empty for an unknown flag).
    pub fn variant_names(&self, key: &str) -> Vec<String> {
        self.flags
            .get(key)
            .map(|f| f.variants.keys().cloned().collect())
            .unwrap_or_default()
    }

    pub fn contains(&self, key: &str) -> bool {
        self.flags.contains_key(key)
    }
}

/// The flag set in use, swapped whole on reload. Cheap to clone (one `Arc`);
/// every clone sees the same current set.
#[derive(Clone)]
pub struct FlagStore(Arc<ArcSwap<FlagSet>>);

impl FlagStore {
    pub fn new(set: FlagSet) -> FlagStore {
        FlagStore(Arc::new(ArcSwap::from_pointee(set)))
    }

    /// The set in use now. Holding the `Arc` keeps that set alive (and
    /// consistent) across a reload.
    pub fn current(&self) -> Arc<FlagSet> {
        self.0.load_full()
    }

    /// Makes `set` the one in use; evaluations already running finish on
    /// the old one.
    pub fn replace(&self, set: FlagSet) {
        self.0.store(Arc::new(set));
    }
}

impl std::fmt::Debug for FlagStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlagStore")
            .field("flags", &self.0.load().len())
            .finish()
    }
}

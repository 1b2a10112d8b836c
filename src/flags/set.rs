//! [`FlagSet`]: the loaded, compiled flags; immutable once built, so a
//! reload builds a new one and swaps it in ([`FlagStore`]).

use std::collections::HashMap;
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
    /// The rule reads `targetingKey` (directly or through `fractional`'s
    /// implicit bucketing key).
    pub(crate) reads_targeting_key: bool,
}

pub(crate) static EMPTY_METADATA: LazyLock<Map<String, Value>> = LazyLock::new(Map::new);

impl FlagSet {
    pub(crate) fn from_flags(flags: HashMap<Box<str>, Flag>) -> FlagSet {
        let mut keys: Vec<Box<str>> = flags.keys().cloned().collect();
        keys.sort();
        FlagSet {
            flags: flags.into_iter().collect(),
            keys,
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

//! The last snapshot this process wrote or read for each session. It is
//! only ever used as the *expected* state of an optimistic commit: the
//! store accepts the commit only if the session is still at the cached
//! `seq`, so a snapshot that another replica made stale is detected at
//! the write and re-read — it can never be acted on silently. Anything
//! that is not a successful commit is re-decided on a fresh read.
//!
//! Saves one database round trip and one JSON parse per `submit`.

use std::sync::Arc;

use dashmap::DashMap;

use crate::engine::SessionState;
use crate::store::NewIdempotency;

#[derive(Debug)]
pub struct Snapshot {
    pub id: String,
    pub seq: i64,
    pub token_hash: String,
    pub flow_id: String,
    pub flow_version: i32,
    pub state: SessionState,
    /// The answer to the submit that made this snapshot, as recorded with
    /// it under its idempotency key: a client's retry of that submit (the
    /// usual replay: the answer was lost on the way) is answered from here
    /// without touching the store. Only a submit that settled at once sets
    /// it; a recorded answer that may still change (the session waits for
    /// steps) is read from the store.
    pub answered: Option<Arc<NewIdempotency>>,
    /// The idempotency keys of the last submits this process committed on
    /// the session. A retry of an older one on a screen the session has
    /// come back to would pass the engine again; knowing the key was
    /// applied, `submit` reads the stored answer instead of attempting a
    /// write that the key's uniqueness must then undo.
    pub applied_keys: RecentKeys,
}

/// How many earlier keys a snapshot remembers: a client retries its last
/// few requests, not its fortieth.
const RECENT_KEYS: usize = 8;

/// A bounded set of idempotency keys, held as 64-bit hashes (8 bytes each
/// however long the key; a snapshot is kept per cached session). A hash
/// that matches by chance costs one read of the idempotency record, which
/// then says the key is not there: it can never answer a wrong request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecentKeys {
    hashes: [u64; RECENT_KEYS],
    len: u8,
}

impl RecentKeys {
    /// These keys and `key`, dropping the oldest past the bound.
    pub fn with(mut self, key: &str) -> RecentKeys {
        let h = hash_key(key);
        if self.contains_hash(h) {
            return self;
        }
        if usize::from(self.len) == RECENT_KEYS {
            self.hashes.copy_within(1.., 0);
            self.hashes[RECENT_KEYS - 1] = h;
        } else {
            self.hashes[usize::from(self.len)] = h;
            self.len += 1;
        }
        self
    }

    /// These keys, and `key` if a commit applied one.
    pub fn and(self, key: Option<&str>) -> RecentKeys {
        key.map_or(self, |k| self.with(k))
    }

    /// Whether `key` may be one of these (see the type's note on chance).
    pub fn may_contain(&self, key: &str) -> bool {
        self.contains_hash(hash_key(key))
    }

    fn contains_hash(&self, h: u64) -> bool {
        self.hashes[..usize::from(self.len)].contains(&h)
    }
}

fn hash_key(key: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

pub struct Snapshots {
    map: DashMap<String, Arc<Snapshot>>,
    capacity: usize,
}

impl Snapshots {
    pub fn new(capacity: usize) -> Snapshots {
        Snapshots {
            map: DashMap::new(),
            capacity,
        }
    }

    pub fn get(&self, id: &str) -> Option<Arc<Snapshot>> {
        self.map.get(id).map(|s| s.clone())
    }

    pub fn put(&self, snap: Arc<Snapshot>) {
        if self.capacity == 0 {
            return;
        }
        if self.map.len() >= self.capacity {
            // Arbitrary eviction is fine: a miss costs one read.
            let drop: Vec<String> = self
                .map
                .iter()
                .take(self.capacity / 10 + 1)
                .map(|e| e.key().clone())
                .collect();
            for k in drop {
                self.map.remove(&k);
            }
        }
        // Never replace a newer snapshot with an older one (two requests
        // on one session finishing out of order), nor one of the same seq:
        // that is the same state, and the one kept by the commit that made
        // it carries its answer and keys, which a read of it would drop.
        match self.map.entry(snap.id.clone()) {
            dashmap::Entry::Occupied(mut e) => {
                if e.get().seq < snap.seq {
                    e.insert(snap);
                }
            }
            dashmap::Entry::Vacant(e) => {
                e.insert(snap);
            }
        }
    }

    pub fn forget(&self, id: &str) {
        self.map.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::{RECENT_KEYS, RecentKeys};

    #[test]
    fn recent_keys_keep_the_newest_within_the_bound() {
        let mut keys = RecentKeys::default();
        assert!(!keys.may_contain("k0"));
        for i in 0..RECENT_KEYS + 3 {
            keys = keys.with(&format!("k{i}"));
        }
        // The three oldest fell out; the newest RECENT_KEYS are in.
        for i in 0..3 {
            assert!(!keys.may_contain(&format!("k{i}")), "k{i}");
        }
        for i in 3..RECENT_KEYS + 3 {
            assert!(keys.may_contain(&format!("k{i}")), "k{i}");
        }
        // A key already held is not held twice (it would push out another).
        let again = keys.with(&format!("k{}", RECENT_KEYS + 2));
        assert_eq!(again, keys);
    }
}

//! The last snapshot this process wrote or read for each session. It is
//! only ever used as the *expected* state of an optimistic commit: the
//! store accepts the commit only if the session is still at the cached
//! `seq`, so a snapshot that another replica made stale is detected at
//! the write and re-read — it can never be acted on silently. Anything
//! that is not a successful commit is re-decided on a fresh read.
//!
//! Saves one database round trip and one JSON parse per `submit`.

use std::sync::Arc;

use quick_cache::sync::{Cache, EntryAction, EntryResult};

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
    /// The answers to the last submits this process committed on the
    /// session, as recorded with them under their idempotency keys: a
    /// client's retry of one of them (the answer was lost on the way, or
    /// an offline client sends its queue again) is answered from here
    /// without touching the store. Only a submit that settled at once adds
    /// one; a recorded answer that may still change (the session waits for
    /// steps) is read from the store.
    pub answered: RecentAnswers,
    /// The idempotency keys of the last submits this process committed on
    /// the session. A retry of an older one on a screen the session has
    /// come back to would pass the engine again; knowing the key was
    /// applied, `submit` reads the stored answer instead of attempting a
    /// write that the key's uniqueness must then undo.
    pub applied_keys: RecentKeys,
}

/// How many answers a snapshot keeps. Each is the rendered screen (about
/// 1 KB for a small form) held per cached session, so the bound is low:
/// enough for a retry of the last request or of the one or two before it.
pub const RECENT_ANSWERS: usize = 3;

/// The recorded answers of a session's last settled submits, newest last.
/// Cloning shares the answers; nothing is allocated per commit.
#[derive(Debug, Clone, Default)]
pub struct RecentAnswers([Option<Arc<NewIdempotency>>; RECENT_ANSWERS]);

impl RecentAnswers {
    /// These answers, and `answer` if a commit recorded one, dropping the
    /// oldest past the bound.
    pub fn and(&self, answer: Option<&Arc<NewIdempotency>>) -> RecentAnswers {
        let mut kept = self.clone();
        if let Some(answer) = answer {
            kept.0.rotate_left(1);
            kept.0[RECENT_ANSWERS - 1] = Some(answer.clone());
        }
        kept
    }

    /// The recorded answer to the submit sent with `key`, if kept.
    pub fn get(&self, key: &str) -> Option<&NewIdempotency> {
        self.0.iter().flatten().map(|a| &**a).find(|a| a.key == key)
    }
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

/// Bounded by count. The eviction policy is quick_cache's (S3-FIFO-like):
/// sessions in use stay, and a scan of many sessions read once (an export,
/// a burst of new sessions) does not push them out. A miss costs one read.
pub struct Snapshots {
    /// `None` when the capacity is 0: nothing is kept.
    cache: Option<Cache<String, Arc<Snapshot>>>,
}

impl Snapshots {
    pub fn new(capacity: usize) -> Snapshots {
        Snapshots {
            cache: (capacity > 0).then(|| Cache::new(capacity)),
        }
    }

    pub fn get(&self, id: &str) -> Option<Arc<Snapshot>> {
        self.cache.as_ref()?.get(id)
    }

    pub fn put(&self, snap: Arc<Snapshot>) {
        let Some(cache) = &self.cache else { return };
        // Never replace a newer snapshot with an older one (two requests
        // on one session finishing out of order), nor one of the same seq:
        // that is the same state, and the one kept by the commit that made
        // it carries its answer and keys, which a read of it would drop.
        let kept = cache.entry(snap.id.as_str(), None, |_, cached| {
            if cached.seq < snap.seq {
                *cached = snap.clone();
            }
            EntryAction::Retain(())
        });
        if let EntryResult::Vacant(slot) = kept {
            // Fails only if the slot was taken meanwhile, by a snapshot
            // as good as this one.
            let _ = slot.insert(snap);
        }
    }

    pub fn forget(&self, id: &str) {
        if let Some(cache) = &self.cache {
            cache.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{RECENT_ANSWERS, RECENT_KEYS, RecentAnswers, RecentKeys, Snapshot, Snapshots};

    fn snap(i: usize, seq: i64) -> Arc<Snapshot> {
        keyed(i, seq, RecentKeys::default().with(&format!("k{seq}")))
    }

    fn keyed(i: usize, seq: i64, applied_keys: RecentKeys) -> Arc<Snapshot> {
        let state = serde_json::from_value(serde_json::json!({
            "node": "form", "status": "ACTIVE", "context": {}
        }))
        .unwrap();
        Arc::new(Snapshot {
            id: format!("s{i}"),
            seq,
            token_hash: String::new(),
            flow_id: "f".into(),
            flow_version: 1,
            state,
            answered: RecentAnswers::default(),
            applied_keys,
        })
    }

    /// A commit replaces its session's snapshot; that must not push other
    /// sessions out. The cache once evicted a tenth of itself on every put
    /// once full, replacements included: with as many busy sessions as its
    /// capacity, one request in ten missed (this test then kept 90%).
    #[test]
    fn busy_sessions_as_many_as_the_capacity_stay_cached() {
        let sessions = 10_000;
        let cache = Snapshots::new(sessions);
        for seq in 1..=5 {
            for i in 0..sessions {
                cache.put(snap(i, seq));
            }
        }
        let kept = (0..sessions)
            .filter(|&i| cache.get(&format!("s{i}")).is_some_and(|s| s.seq == 5))
            .count();
        // The capacity is approximate (the cache is sharded): 98-99% stay
        // across runs.
        assert!(kept * 100 >= sessions * 97, "{kept} of {sessions} kept");
    }

    #[test]
    fn an_older_or_same_seq_snapshot_never_replaces_the_cached_one() {
        let cache = Snapshots::new(10);
        cache.put(snap(1, 5));
        cache.put(snap(1, 4));
        assert_eq!(cache.get("s1").unwrap().seq, 5);
        // Same seq: the one kept first (a commit's, with its keys) stays.
        cache.put(keyed(1, 5, RecentKeys::default()));
        assert!(cache.get("s1").unwrap().applied_keys.may_contain("k5"));
        cache.put(snap(1, 6));
        assert_eq!(cache.get("s1").unwrap().seq, 6);
        cache.forget("s1");
        assert!(cache.get("s1").is_none());
        // A capacity of 0 keeps nothing.
        let none = Snapshots::new(0);
        none.put(snap(1, 1));
        assert!(none.get("s1").is_none());
    }

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

    #[test]
    fn recent_answers_keep_the_newest_within_the_bound() {
        let answer = |i: usize| {
            Arc::new(crate::store::NewIdempotency {
                key: format!("k{i}"),
                request_hash: format!("h{i}"),
                response: serde_json::value::to_raw_value(&i).unwrap(),
            })
        };
        let mut answers = RecentAnswers::default();
        assert!(answers.get("k0").is_none());
        for i in 0..RECENT_ANSWERS + 2 {
            answers = answers.and(Some(&answer(i)));
            // A commit without a key keeps what was there.
            answers = answers.and(None);
        }
        for i in 0..2 {
            assert!(answers.get(&format!("k{i}")).is_none(), "k{i}");
        }
        for i in 2..RECENT_ANSWERS + 2 {
            let kept = answers.get(&format!("k{i}")).expect("kept");
            assert_eq!(kept.request_hash, format!("h{i}"));
            assert_eq!(kept.response.get(), i.to_string());
        }
    }
}

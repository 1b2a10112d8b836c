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
        // on one session finishing out of order).
        match self.map.entry(snap.id.clone()) {
            dashmap::Entry::Occupied(mut e) => {
                if e.get().seq <= snap.seq {
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

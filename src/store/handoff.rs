//! Commits handed from the SQLite writer to this process's funnel
//! aggregator, so that the aggregator reads from the feed only which
//! events come next (their sessions and seqs, in feed order) and takes what
//! they say from memory, instead of looking each one up in
//! `session_events`: on a busy server those scattered reads were most of
//! what the aggregator still cost.
//!
//! A hint, never the truth: the feed alone decides what a page holds and
//! in which order. A page with any event that was not handed over —
//! written by another process or another write path, or dropped because
//! the aggregator fell behind — is read from the store whole.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use tokio::sync::mpsc;

/// One applied commit's events, as the writer bound them.
#[derive(Debug)]
pub(super) struct Handed {
    pub session_id: String,
    /// The seq of its first event; the others follow.
    pub first_seq: i64,
    pub count: i64,
    /// The events' `created_at`.
    pub at: i64,
    pub events: HandedEvents,
}

/// A handed commit's events, in the form its writer had them.
#[derive(Debug)]
pub(super) enum HandedEvents {
    /// `[[kind, payload as JSON text], …]`, as the commit trigger reads it.
    Json(String),
    /// (kind, payload as JSON text) per event.
    Pairs(Vec<(String, String)>),
}

/// The writer's end: empty until an aggregator asks for the handoff.
#[derive(Debug, Clone, Default)]
pub(super) struct Sender(Arc<OnceLock<mpsc::Sender<Handed>>>);

impl Sender {
    /// Whether anyone takes handed commits (so the writer keeps them).
    pub fn wanted(&self) -> bool {
        self.0.get().is_some()
    }

    /// Hands `commit` over; dropped when the aggregator is this far behind
    /// (it then reads those events from the store).
    pub fn hand(&self, commit: Handed) {
        if let Some(tx) = self.0.get() {
            let _ = tx.try_send(commit);
        }
    }

    /// The aggregator's end, the first time it is asked for.
    pub fn open(&self, capacity: usize) -> Option<Receiver> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.0.set(tx).ok()?;
        Some(Receiver {
            rx,
            capacity,
            waiting: HashMap::new(),
        })
    }
}

/// Part of a handed commit that a page holds: its events `start..start + len`.
#[derive(Debug)]
pub(super) struct Slice {
    pub commit: Arc<Handed>,
    pub start: usize,
    pub len: usize,
}

/// What a page holds at one place of the feed.
#[derive(Debug)]
pub(super) enum Part {
    Handed(Slice),
    /// An event not handed over, to read from the store: its feed id.
    Missed(i64),
}

/// The aggregator's end of the handoff (see the module doc).
#[derive(Debug)]
pub struct Receiver {
    rx: mpsc::Receiver<Handed>,
    capacity: usize,
    /// Handed commits not yet met in the feed, by session and the seq the
    /// next page would meet first.
    waiting: HashMap<(String, i64), Arc<Handed>>,
}

impl Receiver {
    /// Forgets everything handed so far: after this, a page is read from
    /// the store until commits handed from now on come up in the feed.
    pub fn clear(&mut self) {
        while self.rx.try_recv().is_ok() {}
        self.waiting.clear();
    }

    /// Takes in what the writer handed since the last call. Commits never
    /// met in the feed (another replica aggregated them, or their page was
    /// read from the store) would stay forever, so memory past `capacity`
    /// is dropped whole: a miss only costs a read.
    fn receive(&mut self) {
        if self.waiting.len() >= self.capacity {
            self.waiting.clear();
        }
        while self.waiting.len() < self.capacity {
            let Ok(h) = self.rx.try_recv() else { break };
            self.waiting
                .insert((h.session_id.clone(), h.first_seq), Arc::new(h));
        }
    }

    /// The events at `rows` (feed id, session and seq, in feed order) as
    /// slices of handed commits, and the feed ids of those not handed over.
    pub(super) fn take(&mut self, rows: &[(i64, String, i64)]) -> Vec<Part> {
        self.receive();
        let mut out = Vec::new();
        let mut i = 0;
        while i < rows.len() {
            let (id, session, seq) = &rows[i];
            let Some(commit) = self.waiting.remove(&(session.clone(), *seq)) else {
                out.push(Part::Missed(*id));
                i += 1;
                continue;
            };
            // A commit's events are consecutive in the feed; the page may
            // end inside one.
            let end = commit.first_seq + commit.count;
            let len = rows[i..]
                .iter()
                .zip(*seq..end)
                .take_while(|((_, s, q), want)| s == session && q == want)
                .count();
            let next = seq + len as i64;
            if next < end {
                self.waiting.insert((session.clone(), next), commit.clone());
            }
            out.push(Part::Handed(Slice {
                start: usize::try_from(seq - commit.first_seq).unwrap_or(usize::MAX),
                commit,
                len,
            }));
            i += len;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(session: &str, first_seq: i64, count: i64) -> Handed {
        Handed {
            session_id: session.into(),
            first_seq,
            count,
            at: 0,
            events: HandedEvents::Pairs(Vec::new()),
        }
    }

    /// Feed rows with ids from 1.
    fn rows(r: &[(&str, i64)]) -> Vec<(i64, String, i64)> {
        r.iter()
            .enumerate()
            .map(|(i, (s, q))| (i as i64 + 1, (*s).to_owned(), *q))
            .collect()
    }

    /// Handed parts as (session, start, len); missed ones as their feed id.
    fn parts(parts: &[Part]) -> Vec<Result<(String, usize, usize), i64>> {
        parts
            .iter()
            .map(|p| match p {
                Part::Handed(s) => Ok((s.commit.session_id.clone(), s.start, s.len)),
                Part::Missed(id) => Err(*id),
            })
            .collect()
    }

    #[test]
    fn pages_split_commits_and_misses_keep_their_place() {
        let sender = Sender::default();
        assert!(!sender.wanted());
        let mut rx = sender.open(100).unwrap();
        assert!(sender.open(100).is_none(), "one aggregator end per store");
        assert!(sender.wanted());
        sender.hand(commit("a", 1, 3));
        sender.hand(commit("b", 1, 1));
        // Page one ends inside a's commit; page two starts with its rest.
        let first = rx.take(&rows(&[("a", 1), ("a", 2)]));
        assert_eq!(parts(&first), [Ok(("a".into(), 0, 2))]);
        // c was written elsewhere (not handed); b was handed.
        let second = rx.take(&rows(&[("a", 3), ("c", 1), ("b", 1)]));
        assert_eq!(
            parts(&second),
            [Ok(("a".into(), 2, 1)), Err(2), Ok(("b".into(), 0, 1))]
        );
        // Met once: read again, it is read from the store.
        assert_eq!(parts(&rx.take(&rows(&[("b", 1)]))), [Err(1)]);
    }

    #[test]
    fn memory_is_bounded_by_capacity() {
        let sender = Sender::default();
        let mut rx = sender.open(2).unwrap();
        for s in ["a", "b", "c"] {
            sender.hand(commit(s, 1, 1));
        }
        // The channel held two; the third was dropped at the writer.
        assert_eq!(parts(&rx.take(&rows(&[("c", 1)]))), [Err(1)]);
        assert_eq!(rx.waiting.len(), 2);
        // Full of commits never met: dropped whole, then refilled.
        sender.hand(commit("d", 1, 1));
        assert_eq!(
            parts(&rx.take(&rows(&[("d", 1)]))),
            [Ok(("d".into(), 0, 1))]
        );
        assert!(rx.waiting.is_empty());
    }

    #[test]
    fn cleared_forgets_what_was_handed() {
        let sender = Sender::default();
        let mut rx = sender.open(10).unwrap();
        sender.hand(commit("a", 1, 1));
        rx.clear();
        assert_eq!(parts(&rx.take(&rows(&[("a", 1)]))), [Err(1)]);
    }
}

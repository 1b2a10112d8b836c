//! The funnel of a flow from its sessions' logs: per node, the sessions
//! that entered it, left it by each edge, or dropped off there, and the time
//! spent on it; per edge, how often it was taken.
//!
//! Pure: nothing here reads a clock or a store. A [`Walk`] is one session's
//! place in its log; fed the session's events one at a time it adds what
//! each one means to a [`Funnel`]. The same walk folds a whole log at query
//! time ([`Funnel::add`]) and keeps the rollups an event at a time (the
//! service stores each open session's walk between batches), so both give
//! the same numbers. Funnels add up ([`Funnel::merge`]): the rollup of a
//! range is the sum of its hours.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// One event of a session's log, as the funnel reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The session arrived at `node` (any kind).
    Entered { node: String, kind: String, at: i64 },
    /// The user sent `action` on the current screen (the next `Entered` is
    /// where it led).
    Submitted { action: String },
    /// The user went back from one screen to an earlier one.
    WentBack { to: String, at: i64 },
    /// The session ended where it stands: on an `end` node it completed,
    /// anywhere else it was closed (failed, cancelled).
    Ended,
    /// An operator's retry put a failed session back on its step.
    Reopened,
    /// Attempts of the backend step `node` and how each ended (`ok`,
    /// `retry`, `error`, `timeout`).
    Attempts { node: String, outcomes: Vec<String> },
}

/// One session's log and when it last changed (epoch ms).
#[derive(Debug, Clone)]
pub struct SessionLog {
    pub steps: Vec<Step>,
    pub last_at: i64,
}

/// Times spent on a node, as a histogram: exact below [`EXACT_BELOW_MS`],
/// above it in buckets at most 1/[`SUB_BUCKETS`] of their value wide, so
/// that funnels add up without keeping every visit. Stored as one dense
/// run, `[first bucket, count, count, …]`, which reads fast in bulk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Durations(BTreeMap<u32, i64>);

/// Durations below this many ms are kept exactly.
pub const EXACT_BELOW_MS: i64 = 64;
/// Buckets per power of two above [`EXACT_BELOW_MS`].
const SUB_BUCKETS: i64 = 16;
const EXACT_BITS: i64 = 6; // log2(EXACT_BELOW_MS)
const SUB_BITS: i64 = 4; // log2(SUB_BUCKETS)

fn bucket_of(ms: i64) -> u32 {
    if ms < EXACT_BELOW_MS {
        return ms.max(0) as u32;
    }
    let exp = 63 - i64::from(ms.leading_zeros()); // ≥ EXACT_BITS
    let mantissa = ms >> (exp - SUB_BITS); // in [SUB_BUCKETS, 2 * SUB_BUCKETS)
    (EXACT_BELOW_MS + (exp - EXACT_BITS) * SUB_BUCKETS + (mantissa - SUB_BUCKETS)) as u32
}

/// The durations of bucket `b`: `[low, high)`.
fn range_of(b: u32) -> (i64, i64) {
    let b = i64::from(b);
    if b < EXACT_BELOW_MS {
        return (b, b + 1);
    }
    let k = b - EXACT_BELOW_MS;
    let exp = EXACT_BITS + k / SUB_BUCKETS;
    let mantissa = SUB_BUCKETS + k % SUB_BUCKETS;
    let shift = exp - SUB_BITS;
    (mantissa << shift, (mantissa + 1) << shift)
}

/// What a bucket reports: exact ones their value, the others their middle
/// (off by at most half a bucket, about 3%).
fn value_of(b: u32) -> f64 {
    let (low, high) = range_of(b);
    if high - low == 1 {
        low as f64
    } else {
        ((low + high) / 2) as f64
    }
}

impl Serialize for Durations {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (Some(first), Some(last)) = (self.0.keys().next(), self.0.keys().next_back()) else {
            return Vec::<i64>::new().serialize(s);
        };
        let mut run = Vec::with_capacity((last - first) as usize + 2);
        run.push(i64::from(*first));
        run.extend((*first..=*last).map(|b| self.0.get(&b).copied().unwrap_or(0)));
        run.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Durations {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let run = Vec::<i64>::deserialize(d)?;
        let Some((first, counts)) = run.split_first() else {
            return Ok(Durations::default());
        };
        let first = u32::try_from(*first).map_err(serde::de::Error::custom)?;
        Ok(Durations(
            (first..)
                .zip(counts)
                .filter(|(_, n)| **n != 0)
                .map(|(b, n)| (b, *n))
                .collect(),
        ))
    }
}

impl Durations {
    pub fn record(&mut self, ms: i64) {
        *self.0.entry(bucket_of(ms)).or_default() += 1;
    }

    pub fn count(&self) -> i64 {
        self.0.values().sum()
    }

    fn merge(&mut self, other: &Durations, sign: i64) {
        for (b, n) in &other.0 {
            let e = self.0.entry(*b).or_default();
            *e += sign * n;
            if *e == 0 {
                self.0.remove(b);
            }
        }
    }

    /// The median and 90th percentile (nearest rank, each as its bucket
    /// reports it), `None` when empty.
    pub fn percentiles(&self) -> Option<(f64, f64)> {
        let n = self.count();
        if n <= 0 {
            return None;
        }
        let rank = |p: f64| {
            let want = ((p * n as f64).ceil() as i64).clamp(1, n);
            let mut seen = 0;
            for (b, c) in &self.0 {
                seen += c;
                if seen >= want {
                    return value_of(*b);
                }
            }
            self.0.keys().next_back().map_or(0.0, |b| value_of(*b))
        };
        Some((rank(0.5), rank(0.9)))
    }
}

/// A backend step's attempts: all of them, the failed ones tried again,
/// and those that failed for good (`error`, `timeout`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepStats {
    pub attempts: i64,
    pub retries: i64,
    pub failures: i64,
}

/// Per node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeStats {
    /// Sessions that entered it at least once.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub entered: i64,
    /// Sessions whose walk stopped here without reaching an `end`: closed,
    /// or idle longer than the threshold.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dropped: i64,
    /// Time from entering it to the next node, per visit.
    #[serde(default)]
    pub durations: Durations,
    /// Backend steps only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<StepStats>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// Per edge: `from` → `to`, by `action` (a screen's action, `back`, or none
/// for a decision or a step).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EdgeKey {
    pub from: String,
    pub to: String,
    pub action: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Funnel {
    /// Sessions counted.
    pub sessions: i64,
    pub nodes: BTreeMap<String, NodeStats>,
    #[serde(with = "edge_list")]
    pub edges: BTreeMap<EdgeKey, i64>,
}

/// Edges as a list in JSON (a map needs string keys).
mod edge_list {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::EdgeKey;

    pub fn serialize<S: Serializer>(m: &BTreeMap<EdgeKey, i64>, s: S) -> Result<S::Ok, S::Error> {
        m.iter().collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<EdgeKey, i64>, D::Error> {
        Ok(Vec::<(EdgeKey, i64)>::deserialize(d)?.into_iter().collect())
    }
}

/// Where a session stands in its log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Walk {
    /// The current node, its kind and since when.
    pub at: Option<(String, String, i64)>,
    /// The action sent on the current screen, until the next node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    pub visited: BTreeSet<String>,
    /// Ended on an `end` node.
    #[serde(default)]
    pub completed: bool,
    /// Ended elsewhere (failed, cancelled), until a retry reopens it.
    #[serde(default)]
    pub closed: bool,
    /// Step attempts already counted, by node.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attempts_seen: BTreeMap<String, usize>,
    /// Counted as dropped where it stands for having been quiet longer
    /// than any idle threshold ([`Walk::settle`]), until it moves again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub settled: bool,
}

impl Walk {
    /// Counts this session as dropped where it stands, once and for all
    /// thresholds (it has been quiet longer than the longest): the caller
    /// stops counting it among the idle ones. `false` when it could not
    /// drop off.
    pub fn settle(&mut self, f: &mut Funnel) -> bool {
        let Some(node) = self.idle_node().map(str::to_owned) else {
            return false;
        };
        f.node(&node).dropped += 1;
        self.settled = true;
        true
    }

    /// Adds what `step` means to `f`.
    pub fn apply(&mut self, step: &Step, f: &mut Funnel) {
        // A settled session that moves again was not dropped after all.
        if self.settled {
            self.settled = false;
            if let Some((node, _, _)) = &self.at {
                f.node(node).dropped -= 1;
            }
        }
        match step {
            Step::Entered { node, kind, at } => {
                if let Some((from, from_kind, since)) = &self.at {
                    let how = if from_kind == "screen" {
                        self.action.clone()
                    } else {
                        None
                    };
                    *f.edges
                        .entry(EdgeKey {
                            from: from.clone(),
                            to: node.clone(),
                            action: how,
                        })
                        .or_default() += 1;
                    f.node(from).durations.record(at - since);
                }
                if self.visited.insert(node.clone()) {
                    f.node(node).entered += 1;
                }
                self.at = Some((node.clone(), kind.clone(), *at));
                self.action = None;
            }
            Step::Submitted { action } => self.action = Some(action.clone()),
            Step::WentBack { to, at } => {
                if let Some((from, _, since)) = &self.at {
                    *f.edges
                        .entry(EdgeKey {
                            from: from.clone(),
                            to: to.clone(),
                            action: Some("back".into()),
                        })
                        .or_default() += 1;
                    f.node(from).durations.record(at - since);
                }
                self.at = Some((to.clone(), "screen".into(), *at));
                self.action = None;
            }
            Step::Ended => match &self.at {
                Some((_, kind, _)) if kind == "end" => self.completed = true,
                Some((node, _, _)) if !self.closed => {
                    self.closed = true;
                    f.node(node).dropped += 1;
                }
                _ => {}
            },
            Step::Reopened => {
                if let (true, Some((node, _, _))) = (self.closed, &self.at) {
                    self.closed = false;
                    f.node(node).dropped -= 1;
                }
            }
            Step::Attempts { node, outcomes } => {
                let seen = self.attempts_seen.entry(node.clone()).or_default();
                let stats = f.node(node).step.get_or_insert_with(StepStats::default);
                for outcome in outcomes.iter().skip(*seen) {
                    stats.attempts += 1;
                    match outcome.as_str() {
                        "retry" => stats.retries += 1,
                        "error" | "timeout" => stats.failures += 1,
                        _ => {}
                    }
                }
                *seen = (*seen).max(outcomes.len());
            }
        }
    }

    /// The node where this session drops off once it has been idle long
    /// enough: `None` when it completed, was closed, or stands on an end.
    pub fn idle_node(&self) -> Option<&str> {
        match &self.at {
            Some((node, kind, _))
                if !self.completed && !self.closed && !self.settled && kind != "end" =>
            {
                Some(node)
            }
            _ => None,
        }
    }
}

impl Funnel {
    /// Adds one whole session. `now` and `idle_ms` decide whether a session
    /// that is neither completed nor closed has dropped off (idle longer
    /// than `idle_ms`) or is still on its way.
    pub fn add(&mut self, log: &SessionLog, now: i64, idle_ms: i64) {
        self.sessions += 1;
        let mut walk = Walk::default();
        for step in &log.steps {
            walk.apply(step, self);
        }
        if let Some(node) = walk.idle_node()
            && now - log.last_at > idle_ms
        {
            self.node(node).dropped += 1;
        }
    }

    /// Adds (`sign` 1) or takes away (-1) another funnel's counts.
    pub fn merge(&mut self, other: &Funnel, sign: i64) {
        self.sessions += sign * other.sessions;
        for (id, o) in &other.nodes {
            let n = self.node(id);
            n.entered += sign * o.entered;
            n.dropped += sign * o.dropped;
            n.durations.merge(&o.durations, sign);
            if let Some(os) = o.step {
                let s = n.step.get_or_insert_with(StepStats::default);
                s.attempts += sign * os.attempts;
                s.retries += sign * os.retries;
                s.failures += sign * os.failures;
            }
        }
        for (k, n) in &other.edges {
            let e = self.edges.entry(k.clone()).or_default();
            *e += sign * n;
            if *e == 0 {
                self.edges.remove(k);
            }
        }
    }

    /// Counts `sessions` dropped off at `node` (idle, found at query time).
    pub fn drop_at(&mut self, node: &str, sessions: i64) {
        self.node(node).dropped += sessions;
    }

    fn node(&mut self, id: &str) -> &mut NodeStats {
        self.nodes.entry(id.to_string()).or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entered(node: &str, kind: &str, at: i64) -> Step {
        Step::Entered {
            node: node.into(),
            kind: kind.into(),
            at,
        }
    }

    fn submitted(a: &str) -> Step {
        Step::Submitted { action: a.into() }
    }

    fn logs() -> Vec<SessionLog> {
        vec![
            // a → (next) → b → decision d → end e, in 10 + 30 ms.
            SessionLog {
                steps: vec![
                    entered("a", "screen", 0),
                    submitted("next"),
                    entered("b", "screen", 10),
                    submitted("go"),
                    entered("d", "decision", 40),
                    entered("e", "end", 40),
                    Step::Ended,
                ],
                last_at: 40,
            },
            // a → b, back to a, idle since 25: dropped at a.
            SessionLog {
                steps: vec![
                    entered("a", "screen", 0),
                    submitted("next"),
                    entered("b", "screen", 20),
                    Step::WentBack {
                        to: "a".into(),
                        at: 25,
                    },
                ],
                last_at: 25,
            },
            // Still on b, not idle yet: not dropped.
            SessionLog {
                steps: vec![
                    entered("a", "screen", 0),
                    submitted("next"),
                    entered("b", "screen", 950),
                ],
                last_at: 950,
            },
        ]
    }

    #[test]
    fn paths_become_counts_edges_drops_and_times() {
        let mut f = Funnel::default();
        for log in logs() {
            f.add(&log, 1000, 100);
        }
        assert_eq!(f.sessions, 3);
        assert_eq!(f.nodes["a"].entered, 3, "a session counts once per node");
        assert_eq!(f.nodes["a"].dropped, 1);
        assert_eq!(f.nodes["b"].entered, 3);
        assert_eq!(f.nodes["b"].dropped, 0);
        assert_eq!(f.nodes["e"].entered, 1);
        let edge = |from: &str, to: &str, action: Option<&str>| {
            f.edges
                .get(&EdgeKey {
                    from: from.into(),
                    to: to.into(),
                    action: action.map(str::to_string),
                })
                .copied()
                .unwrap_or(0)
        };
        assert_eq!(edge("a", "b", Some("next")), 3);
        assert_eq!(edge("b", "d", Some("go")), 1);
        assert_eq!(edge("d", "e", None), 1, "a decision's edge has no action");
        assert_eq!(edge("b", "a", Some("back")), 1);
        assert_eq!(f.nodes["a"].durations.count(), 3);
        // 950 ms reports as the middle of its bucket, [928, 960).
        assert_eq!(f.nodes["a"].durations.percentiles(), Some((20.0, 944.0)));
        assert_eq!(Durations::default().percentiles(), None);
    }

    #[test]
    fn a_closed_session_drops_where_it_stopped_and_a_retry_takes_it_back() {
        let mut f = Funnel::default();
        let mut log = SessionLog {
            steps: vec![entered("a", "screen", 0), Step::Ended],
            last_at: 0,
        };
        f.add(&log, 1, i64::MAX);
        assert_eq!(f.nodes["a"].dropped, 1);
        log.steps.push(Step::Reopened);
        let mut g = Funnel::default();
        g.add(&log, 1, i64::MAX);
        assert_eq!(g.nodes["a"].dropped, 0);
    }

    #[test]
    fn an_event_at_a_time_gives_what_the_whole_log_gives() {
        let mut whole = Funnel::default();
        let mut rolled = Funnel::default();
        for log in logs() {
            whole.add(&log, 0, i64::MAX);
            let mut walk = Walk::default();
            rolled.sessions += 1;
            for step in &log.steps {
                // Each event in its own delta, through JSON, as the rollups
                // keep them between batches.
                let mut delta = Funnel::default();
                walk.apply(step, &mut delta);
                walk = serde_json::from_str(&serde_json::to_string(&walk).unwrap()).unwrap();
                let delta: Funnel =
                    serde_json::from_str(&serde_json::to_string(&delta).unwrap()).unwrap();
                rolled.merge(&delta, 1);
            }
        }
        assert_eq!(rolled, whole);
        let mut back = rolled.clone();
        back.merge(&whole, -1);
        assert!(back.edges.is_empty() && back.sessions == 0, "{back:?}");
    }

    #[test]
    fn a_settled_session_drops_once_and_comes_back_when_it_moves() {
        let mut f = Funnel::default();
        let mut walk = Walk::default();
        walk.apply(&entered("a", "screen", 0), &mut f);
        assert!(walk.settle(&mut f));
        assert_eq!((f.nodes["a"].dropped, walk.idle_node()), (1, None));
        assert!(!walk.settle(&mut f), "settled once");
        walk.apply(&submitted("next"), &mut f);
        assert_eq!(f.nodes["a"].dropped, 0);
        assert_eq!(walk.idle_node(), Some("a"));
        let mut done = Walk::default();
        done.apply(&entered("e", "end", 0), &mut f);
        assert!(!done.settle(&mut f), "an end is no drop-off");
    }

    #[test]
    fn step_attempts_count_once_however_often_they_are_seen() {
        let mut f = Funnel::default();
        let mut walk = Walk::default();
        let outcomes = |o: &[&str]| Step::Attempts {
            node: "call".into(),
            outcomes: o.iter().map(|s| s.to_string()).collect(),
        };
        walk.apply(&outcomes(&["retry", "retry"]), &mut f);
        walk.apply(&outcomes(&["retry", "retry", "error"]), &mut f);
        walk.apply(&outcomes(&["retry", "retry", "error"]), &mut f);
        assert_eq!(
            f.nodes["call"].step,
            Some(StepStats {
                attempts: 3,
                retries: 2,
                failures: 1
            })
        );
    }

    #[test]
    fn durations_are_exact_below_64_ms_and_within_3_percent_above() {
        for ms in [0, 1, 63] {
            assert_eq!(value_of(bucket_of(ms)), ms as f64);
        }
        for ms in [64, 100, 1500, 60_000, 86_400_000, 40 * 86_400_000] {
            let (low, high) = range_of(bucket_of(ms));
            assert!(low <= ms && ms < high, "{ms} in [{low}, {high})");
            let v = value_of(bucket_of(ms));
            assert!(
                (v - ms as f64).abs() / ms as f64 <= 1.0 / 16.0,
                "{ms} → {v}"
            );
            assert!((high - low) as f64 / low as f64 <= 1.0 / 16.0);
        }
        let mut last = 0;
        for ms in (0..5_000_000).step_by(997) {
            let b = bucket_of(ms);
            assert!(b >= last, "buckets grow with the duration");
            last = b;
        }
        let mut d = Durations::default();
        for ms in [5, 7, 7, 3000, 3001, 90_000] {
            d.record(ms);
        }
        let text = serde_json::to_string(&d).unwrap();
        assert_eq!(
            serde_json::from_str::<Durations>(&text).unwrap(),
            d,
            "{text}"
        );
        assert_eq!(serde_json::to_string(&Durations::default()).unwrap(), "[]");
    }
}

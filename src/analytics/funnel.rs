//! The funnel of a flow from its sessions' logs: per node, the sessions
//! that entered it, left it by each edge, or dropped off there, and the time
//! spent on it; per edge, how often it was taken.
//!
//! Pure: the caller hands in each session's log (the `entered`,
//! `submitted`, `went_back` and `ended` events, in order) and whether the
//! session is over; nothing here reads a clock or a store.

use std::collections::{BTreeMap, HashMap};

/// One event of a session's log, as the funnel reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The session arrived at `node` (any kind).
    Entered { node: String, kind: String, at: i64 },
    /// The user sent `action` on `screen` (the next `Entered` is where it led).
    Submitted { action: String },
    /// The user went back from one screen to an earlier one.
    WentBack { to: String, at: i64 },
    /// The session ended on `node`.
    Ended,
}

/// One session: its log and where it stands.
#[derive(Debug, Clone)]
pub struct SessionLog {
    pub steps: Vec<Step>,
    /// It ended on an `end` node.
    pub completed: bool,
    /// It is over without reaching an `end` (failed, cancelled, expired).
    pub closed: bool,
    /// When it last changed (epoch ms).
    pub last_at: i64,
}

/// Per node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeStats {
    /// Sessions that entered it at least once.
    pub entered: i64,
    /// Sessions whose walk stopped here without reaching an `end`: closed,
    /// or idle longer than the threshold.
    pub dropped: i64,
    /// Time from entering it to the next node, per visit (ms).
    pub durations: Vec<i64>,
}

/// Per edge: `from` → `to`, by `action` (a screen's action, `back`, or none
/// for a decision or a step).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EdgeKey {
    pub from: String,
    pub to: String,
    pub action: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Funnel {
    /// Sessions counted.
    pub sessions: i64,
    pub nodes: BTreeMap<String, NodeStats>,
    pub edges: BTreeMap<EdgeKey, i64>,
}

impl Funnel {
    /// Adds one session. `now` and `idle_ms` decide whether a session that
    /// is neither ended nor closed has dropped off (idle longer than
    /// `idle_ms`) or is still on its way.
    pub fn add(&mut self, log: &SessionLog, now: i64, idle_ms: i64) {
        self.sessions += 1;
        let mut seen: HashMap<&str, ()> = HashMap::new();
        let mut current: Option<(&str, &str, i64)> = None;
        let mut action: Option<&str> = None;
        for step in &log.steps {
            match step {
                Step::Entered { node, kind, at } => {
                    if let Some((from, from_kind, since)) = current {
                        let how = if from_kind == "screen" { action } else { None };
                        *self
                            .edges
                            .entry(EdgeKey {
                                from: from.to_string(),
                                to: node.clone(),
                                action: how.map(str::to_string),
                            })
                            .or_default() += 1;
                        self.node(from).durations.push(at - since);
                    }
                    if seen.insert(node, ()).is_none() {
                        self.node(node).entered += 1;
                    }
                    current = Some((node, kind, *at));
                    action = None;
                }
                Step::Submitted { action: a } => action = Some(a),
                Step::WentBack { to, at } => {
                    if let Some((from, _, since)) = current {
                        *self
                            .edges
                            .entry(EdgeKey {
                                from: from.to_string(),
                                to: to.clone(),
                                action: Some("back".into()),
                            })
                            .or_default() += 1;
                        self.node(from).durations.push(at - since);
                    }
                    current = Some((to, "screen", *at));
                    action = None;
                }
                Step::Ended => {}
            }
        }
        let idle = now - log.last_at > idle_ms;
        if let Some((node, kind, _)) = current
            && !log.completed
            && kind != "end"
            && (log.closed || idle)
        {
            self.node(node).dropped += 1;
        }
    }

    fn node(&mut self, id: &str) -> &mut NodeStats {
        self.nodes.entry(id.to_string()).or_default()
    }
}

/// The median and 90th percentile of `values` (nearest rank), `None` when
/// empty.
pub fn percentiles(values: &[i64]) -> Option<(f64, f64)> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    let rank = |p: f64| {
        let i = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
        v[i] as f64
    };
    Some((rank(0.5), rank(0.9)))
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

    #[test]
    fn paths_become_counts_edges_drops_and_times() {
        let mut f = Funnel::default();
        // a → (next) → b → decision d → end e, in 10 + 30 ms.
        f.add(
            &SessionLog {
                steps: vec![
                    entered("a", "screen", 0),
                    submitted("next"),
                    entered("b", "screen", 10),
                    submitted("go"),
                    entered("d", "decision", 40),
                    entered("e", "end", 40),
                    Step::Ended,
                ],
                completed: true,
                closed: false,
                last_at: 40,
            },
            1000,
            100,
        );
        // a → b, back to a, idle since 25: dropped at a.
        f.add(
            &SessionLog {
                steps: vec![
                    entered("a", "screen", 0),
                    submitted("next"),
                    entered("b", "screen", 20),
                    Step::WentBack {
                        to: "a".into(),
                        at: 25,
                    },
                ],
                completed: false,
                closed: false,
                last_at: 25,
            },
            1000,
            100,
        );
        // Still on b, not idle yet: not dropped.
        f.add(
            &SessionLog {
                steps: vec![
                    entered("a", "screen", 0),
                    submitted("next"),
                    entered("b", "screen", 950),
                ],
                completed: false,
                closed: false,
                last_at: 950,
            },
            1000,
            100,
        );
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
        assert_eq!(f.nodes["a"].durations, [10, 20, 950]);
        assert_eq!(percentiles(&f.nodes["a"].durations), Some((20.0, 950.0)));
        assert_eq!(percentiles(&[]), None);
    }

    #[test]
    fn a_closed_session_drops_where_it_stopped_at_once() {
        let mut f = Funnel::default();
        f.add(
            &SessionLog {
                steps: vec![entered("a", "screen", 0)],
                completed: false,
                closed: true,
                last_at: 0,
            },
            1,
            i64::MAX,
        );
        assert_eq!(f.nodes["a"].dropped, 1);
    }
}

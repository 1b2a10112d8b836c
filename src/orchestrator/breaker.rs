//! A circuit breaker per upstream host: after `failure_threshold`
//! consecutive failures the circuit opens and calls fail fast for
//! `open_for`; then one probe call is let through (half-open) — its
//! success closes the circuit, its failure opens it again.
//!
//! Written here rather than taken from a crate because it must run on the
//! orchestrator's injectable [`Clock`] (tests open and close circuits
//! without sleeping) and share state across tasks by host name.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;

use super::clock::Clock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until_ms: i64,
    },
    /// One probe is in flight; others fail fast until it reports.
    HalfOpen,
}

impl State {
    /// The value of `baton_circuit_breaker_state`.
    fn gauge(self) -> f64 {
        match self {
            State::Closed { .. } => 0.0,
            State::HalfOpen => 1.0,
            State::Open { .. } => 2.0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    pub failure_threshold: u32,
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            open_for: Duration::from_secs(30),
        }
    }
}

pub struct Breakers {
    config: BreakerConfig,
    clock: Arc<dyn Clock>,
    hosts: DashMap<String, State>,
}

impl Breakers {
    pub fn new(config: BreakerConfig, clock: Arc<dyn Clock>) -> Breakers {
        Breakers {
            config,
            clock,
            hosts: DashMap::new(),
        }
    }

    /// Whether a call to `host` may go ahead now.
    pub fn allow(&self, host: &str) -> bool {
        if self.config.failure_threshold == 0 {
            return true;
        }
        let now = self.clock.now_ms();
        let mut entry = self
            .hosts
            .entry(host.to_string())
            .or_insert(State::Closed { failures: 0 });
        match *entry {
            State::Closed { .. } => true,
            State::Open { until_ms } if now >= until_ms => {
                *entry = State::HalfOpen;
                crate::telemetry::BREAKER_STATE.set(&[host], State::HalfOpen.gauge());
                true
            }
            State::Open { .. } | State::HalfOpen => false,
        }
    }

    /// Reports how a call that [`Breakers::allow`] let through went.
    pub fn record(&self, host: &str, success: bool) {
        if self.config.failure_threshold == 0 {
            return;
        }
        let now = self.clock.now_ms();
        let open = State::Open {
            until_ms: now + self.config.open_for.as_millis() as i64,
        };
        let mut entry = self
            .hosts
            .entry(host.to_string())
            .or_insert(State::Closed { failures: 0 });
        *entry = match (*entry, success) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false)
                if failures + 1 >= self.config.failure_threshold =>
            {
                tracing::warn!(
                    host,
                    "circuit opened after {} consecutive failures",
                    failures + 1
                );
                open
            }
            (State::Closed { failures }, false) => State::Closed {
                failures: failures + 1,
            },
            (State::HalfOpen | State::Open { .. }, false) => open,
        };
        crate::telemetry::BREAKER_STATE.set(&[host], entry.gauge());
    }

    /// `closed`, `open` or `half_open`, for diagnostics and tests.
    pub fn state(&self, host: &str) -> &'static str {
        match self.hosts.get(host).map(|s| *s) {
            None | Some(State::Closed { .. }) => "closed",
            Some(State::Open { .. }) => "open",
            Some(State::HalfOpen) => "half_open",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orchestrator::clock::ManualClock;

    fn breakers(clock: &ManualClock) -> Breakers {
        Breakers::new(
            BreakerConfig {
                failure_threshold: 3,
                open_for: Duration::from_secs(10),
            },
            Arc::new(clock.clone()),
        )
    }

    #[test]
    fn opens_after_consecutive_failures_and_probes_once_half_open() {
        let clock = ManualClock::starting_at(1_000_000);
        let b = breakers(&clock);
        for _ in 0..2 {
            assert!(b.allow("up"));
            b.record("up", false);
        }
        assert_eq!(b.state("up"), "closed");
        assert!(b.allow("up"));
        b.record("up", false);
        assert_eq!(b.state("up"), "open");
        assert!(!b.allow("up"), "an open circuit fails fast");
        assert!(b.allow("other"), "circuits are per host");

        clock.advance(Duration::from_secs(10));
        assert!(b.allow("up"), "after open_for one probe goes through");
        assert_eq!(b.state("up"), "half_open");
        assert!(!b.allow("up"), "only one probe at a time");
        b.record("up", false);
        assert_eq!(b.state("up"), "open", "a failed probe opens it again");

        clock.advance(Duration::from_secs(10));
        assert!(b.allow("up"));
        b.record("up", true);
        assert_eq!(b.state("up"), "closed");
        assert!(b.allow("up"));
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let clock = ManualClock::starting_at(0);
        let b = breakers(&clock);
        b.record("up", false);
        b.record("up", false);
        b.record("up", true);
        b.record("up", false);
        b.record("up", false);
        assert_eq!(b.state("up"), "closed");
    }
}

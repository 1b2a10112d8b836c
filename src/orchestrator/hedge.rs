//! Hedged calls (`hedge` on an `http` step): when an attempt has no
//! answer after a while, the same request goes out a second time and the
//! first answer wins; the other is dropped, which closes its connection.
//! `hedge: p95` waits for the host's 95th percentile latency over its
//! recent answers, so only the slowest few percent are sent twice.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use crate::flow::policy::Hedge;

/// Answers per host the percentile is taken over.
const WINDOW: usize = 100;
/// Fewer answers than this and `p95` does not hedge yet: too few to say
/// what is slow.
const MIN_SAMPLES: usize = 20;

/// Recent answer latencies per upstream host.
#[derive(Default)]
pub struct Latencies {
    hosts: Mutex<HashMap<String, VecDeque<Duration>>>,
}

impl Latencies {
    pub fn record(&self, host: &str, took: Duration) {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        // Every answer passes here: the host's name is copied only once.
        let recent = match hosts.get_mut(host) {
            Some(recent) => recent,
            None => hosts.entry(host.to_owned()).or_default(),
        };
        if recent.len() == WINDOW {
            recent.pop_front();
        }
        recent.push_back(took);
    }

    /// How long an attempt to `host` waits before it is hedged; `None`:
    /// not hedged.
    pub fn hedge_after(&self, host: &str, hedge: Hedge) -> Option<Duration> {
        match hedge {
            Hedge::After(d) => Some(d),
            Hedge::P95 => {
                let hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
                let recent = hosts.get(host).filter(|r| r.len() >= MIN_SAMPLES)?;
                let mut sorted: Vec<Duration> = recent.iter().copied().collect();
                sorted.sort_unstable();
                Some(sorted[(sorted.len() * 95).div_ceil(100) - 1])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p95_waits_for_enough_answers_then_follows_the_recent_ones() {
        let l = Latencies::default();
        let ms = Duration::from_millis;
        assert_eq!(l.hedge_after("h", Hedge::After(ms(7))), Some(ms(7)));
        for i in 1..MIN_SAMPLES as u64 {
            l.record("h", ms(i));
        }
        assert_eq!(l.hedge_after("h", Hedge::P95), None, "too few yet");
        l.record("h", ms(20));
        // 1..=20 ms: the 95th percentile is the 19th.
        assert_eq!(l.hedge_after("h", Hedge::P95), Some(ms(19)));
        assert_eq!(l.hedge_after("other", Hedge::P95), None);
        // Only the last WINDOW answers count.
        for _ in 0..WINDOW {
            l.record("h", ms(500));
        }
        assert_eq!(l.hedge_after("h", Hedge::P95), Some(ms(500)));
    }
}

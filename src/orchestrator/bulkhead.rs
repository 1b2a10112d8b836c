//! Per-upstream limits (`--upstream-limits`): at most so many calls at
//! once to a host, and at most so many started per second, so that one
//! slow or fragile upstream cannot take every worker or be flooded by
//! retries. A call waits for its turn up to its attempt timeout; past that
//! the attempt fails (`bulkhead`) and is retried like a connection failure.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One host's limits; `None` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub concurrent: Option<NonZeroU32>,
    pub per_second: Option<NonZeroU32>,
}

/// The configured limits: per host, and `*` for every other host (each
/// host then has limits of its own, not a share of one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamLimits {
    hosts: HashMap<String, Limit>,
    others: Option<Limit>,
}

impl UpstreamLimits {
    /// Parses `HOST=CONCURRENT[/PER_SECOND]` entries (`*` as the host for
    /// every other one; `0` for no limit of that kind).
    pub fn parse(entries: &[String]) -> Result<UpstreamLimits, String> {
        let mut limits = UpstreamLimits::default();
        for raw in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            let bad = |why: &str| format!("`{raw}`: {why}");
            let (host, spec) = raw
                .split_once('=')
                .ok_or_else(|| bad("expected HOST=CONCURRENT[/PER_SECOND]"))?;
            let host = host.trim().to_ascii_lowercase();
            if host.is_empty() {
                return Err(bad("no host before `=`"));
            }
            let (concurrent, per_second) = match spec.split_once('/') {
                Some((c, r)) => (c, Some(r)),
                None => (spec, None),
            };
            let number = |what: &str, s: &str| -> Result<Option<NonZeroU32>, String> {
                s.trim()
                    .parse::<u32>()
                    .map(NonZeroU32::new)
                    .map_err(|_| bad(&format!("{what} `{}` is not a whole number", s.trim())))
            };
            let limit = Limit {
                concurrent: number("the concurrent calls", concurrent)?,
                per_second: per_second
                    .map(|r| number("the calls per second", r))
                    .transpose()?
                    .flatten(),
            };
            let earlier = if host == "*" {
                limits.others.replace(limit).is_some()
            } else {
                limits.hosts.insert(host.clone(), limit).is_some()
            };
            if earlier {
                return Err(bad(&format!("`{host}` is limited twice")));
            }
        }
        Ok(limits)
    }

    fn of(&self, host: &str) -> Option<Limit> {
        self.hosts.get(host).copied().or(self.others)
    }
}

/// A host's gates, made when it is first called.
struct Gate {
    slots: Option<Arc<Semaphore>>,
    rate: Option<DefaultDirectRateLimiter>,
}

/// The limits at run time.
pub struct Bulkheads {
    limits: UpstreamLimits,
    gates: Mutex<HashMap<String, Arc<Gate>>>,
}

/// A call's place under its host's limit, held until the call ends.
pub struct Slot {
    _permit: Option<OwnedSemaphorePermit>,
}

impl Bulkheads {
    pub fn new(limits: UpstreamLimits) -> Bulkheads {
        Bulkheads {
            limits,
            gates: Mutex::default(),
        }
    }

    /// Waits, at most `wait`, until a call to `host` may start; the error
    /// says which limit was full.
    pub async fn enter(&self, host: &str, wait: Duration) -> Result<Slot, String> {
        let Some(gate) = self.gate(host) else {
            return Ok(Slot { _permit: None });
        };
        let deadline = tokio::time::Instant::now() + wait;
        let permit = match &gate.slots {
            Some(slots) => Some(
                tokio::time::timeout_at(deadline, slots.clone().acquire_owned())
                    .await
                    .map_err(|_| {
                        format!(
                            "`{host}` already has its limit of calls running (--upstream-limits)"
                        )
                    })?
                    .expect("the semaphore is never closed"),
            ),
            None => None,
        };
        if let Some(rate) = &gate.rate {
            tokio::time::timeout_at(deadline, rate.until_ready())
                .await
                .map_err(|_| {
                    format!("`{host}` has had its limit of calls this second (--upstream-limits)")
                })?;
        }
        Ok(Slot { _permit: permit })
    }

    fn gate(&self, host: &str) -> Option<Arc<Gate>> {
        let limit = self.limits.of(host)?;
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        Some(
            gates
                .entry(host.to_owned())
                .or_insert_with(|| {
                    Arc::new(Gate {
                        slots: limit
                            .concurrent
                            .map(|n| Arc::new(Semaphore::new(n.get() as usize))),
                        rate: limit
                            .per_second
                            .map(|n| DefaultDirectRateLimiter::direct(Quota::per_second(n))),
                    })
                })
                .clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(entries: &[&str]) -> Result<UpstreamLimits, String> {
        UpstreamLimits::parse(&entries.iter().map(|e| (*e).to_owned()).collect::<Vec<_>>())
    }

    fn limit(c: u32, r: u32) -> Option<Limit> {
        Some(Limit {
            concurrent: NonZeroU32::new(c),
            per_second: NonZeroU32::new(r),
        })
    }

    #[test]
    fn entries_parse_and_junk_is_refused_with_the_entry() {
        let l = parse(&["API.example.com=8/50", "slow.example.com=2", "*=32", " "]).unwrap();
        assert_eq!(l.of("api.example.com"), limit(8, 50));
        assert_eq!(l.of("slow.example.com"), limit(2, 0));
        assert_eq!(l.of("other.example.com"), limit(32, 0));
        assert_eq!(parse(&["a=0/5"]).unwrap().of("a"), limit(0, 5));
        assert_eq!(parse(&[]).unwrap().of("a"), None);
        for (junk, says) in [
            ("a", "HOST=CONCURRENT"),
            ("=3", "no host"),
            ("a=x", "`x` is not a whole number"),
            ("a=3/-1", "`-1` is not a whole number"),
        ] {
            let e = parse(&[junk]).unwrap_err();
            assert!(e.contains(says) && e.contains(junk), "{junk}: {e}");
        }
        assert!(
            parse(&["a=1", "A=2"])
                .unwrap_err()
                .contains("limited twice")
        );
    }

    #[tokio::test]
    async fn a_full_host_waits_then_refuses_and_other_hosts_pass() {
        let b = Bulkheads::new(parse(&["slow=1"]).unwrap());
        let held = b.enter("slow", Duration::ZERO).await.unwrap();
        let e = b
            .enter("slow", Duration::from_millis(20))
            .await
            .err()
            .unwrap();
        assert!(e.contains("`slow`"), "{e}");
        assert!(b.enter("fast", Duration::ZERO).await.is_ok(), "no limit");
        drop(held);
        assert!(b.enter("slow", Duration::ZERO).await.is_ok());
    }
}

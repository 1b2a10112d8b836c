//! How a step's [`Policy`] (resolved when its flow compiled) is applied:
//! the classification of a failed attempt, whether it is retried, and the
//! delay before the next one.

use std::time::Duration;

use backon::{BackoffBuilder, ConstantBuilder, ExponentialBuilder};

pub use crate::flow::policy::Policy;
use crate::flow::steps::BackoffKind;

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Could not connect (refused, DNS, reset before a response), or the
    /// circuit for the host is open.
    Connect(String),
    /// No response within the attempt timeout.
    Timeout,
    /// A response with a non-2xx status.
    Status(u16),
    /// Not sent: the host's `--upstream-limits` stayed full for the
    /// attempt's timeout. Retried like a connection failure.
    Bulkhead(String),
    /// Not worth retrying: the host is not allowlisted, the request could
    /// not be built, the response is too large.
    Permanent(String),
}

impl Failure {
    /// The `reason` label of `baton_step_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::Connect(_) => "connect",
            Failure::Timeout => "timeout",
            Failure::Status(_) => "status",
            Failure::Bulkhead(_) => "bulkhead",
            Failure::Permanent(_) => "permanent",
        }
    }
}

impl Policy {
    /// Whether this failure is worth another attempt.
    pub fn retries(&self, failure: &Failure) -> bool {
        self.retry_on.iter().any(|c| match (c.as_str(), failure) {
            ("connect", Failure::Connect(_) | Failure::Bulkhead(_)) => true,
            ("timeout", Failure::Timeout) => true,
            ("5xx", Failure::Status(s)) => (500..600).contains(s),
            ("4xx", Failure::Status(s)) => (400..500).contains(s),
            (code, Failure::Status(s)) => code.parse::<u16>().is_ok_and(|c| c == *s),
            _ => false,
        })
    }

    /// The delay before attempt `failed + 1`, after attempt `failed`
    /// (1-based) failed; `None` when no attempts are left.
    pub fn delay_after(&self, failed: u32) -> Option<Duration> {
        if failed >= self.max_attempts {
            return None;
        }
        let retries = self.max_attempts as usize;
        let nth = failed.saturating_sub(1) as usize;
        match self.backoff {
            BackoffKind::Exponential => {
                let b = ExponentialBuilder::default()
                    .with_min_delay(self.delay)
                    .with_max_delay(self.max_delay)
                    .with_max_times(retries);
                let b = if self.jitter { b.with_jitter() } else { b };
                b.build().nth(nth)
            }
            BackoffKind::Fixed => {
                let b = ConstantBuilder::default()
                    .with_delay(self.delay)
                    .with_max_times(retries);
                let b = if self.jitter { b.with_jitter() } else { b };
                b.build().nth(nth)
            }
            // backon has no linear backoff: delay × n, capped, is the whole
            // formula (jitter up to one `delay` on top when asked for).
            BackoffKind::Linear => {
                let base = self.delay.saturating_mul(failed).min(self.max_delay);
                let jitter = if self.jitter {
                    self.delay.mul_f64(rand::random::<f64>())
                } else {
                    Duration::ZERO
                };
                Some(base + jitter)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::steps::{RetryPolicy, defaults};

    fn policy(kind: BackoffKind, jitter: bool) -> Policy {
        Policy::from_parts(
            &RetryPolicy {
                backoff: kind,
                max_attempts: 5,
                delay: Some("100ms".into()),
                max_delay: Some("1s".into()),
                jitter: Some(jitter),
                retry_on: None,
            },
            None,
            None,
        )
    }

    #[test]
    fn schedules() {
        let ms = |p: &Policy| -> Vec<u128> {
            (1..=5)
                .map_while(|n| p.delay_after(n))
                .map(|d| d.as_millis())
                .collect()
        };
        assert_eq!(
            ms(&policy(BackoffKind::Exponential, false)),
            [100, 200, 400, 800]
        );
        assert_eq!(ms(&policy(BackoffKind::Fixed, false)), [100, 100, 100, 100]);
        assert_eq!(
            ms(&policy(BackoffKind::Linear, false)),
            [100, 200, 300, 400]
        );
        let mut capped = policy(BackoffKind::Exponential, false);
        capped.max_attempts = 8;
        assert_eq!(capped.delay_after(7).unwrap().as_millis(), 1000);
    }

    #[test]
    fn jitter_stays_within_one_delay_of_the_schedule() {
        let p = policy(BackoffKind::Exponential, true);
        for _ in 0..200 {
            let d = p.delay_after(2).unwrap().as_millis();
            assert!((200..=400).contains(&d), "{d}");
        }
    }

    #[test]
    fn default_retry_conditions() {
        let p = Policy::from_parts(&RetryPolicy::default(), None, None);
        assert!(p.retries(&Failure::Connect("refused".into())));
        assert!(p.retries(&Failure::Timeout));
        assert!(p.retries(&Failure::Status(503)));
        assert!(!p.retries(&Failure::Status(404)));
        assert!(!p.retries(&Failure::Status(429)));
        assert!(!p.retries(&Failure::Permanent("no".into())));
        assert_eq!(p.max_attempts, 3);
        assert_eq!(p.attempt_timeout, defaults::ATTEMPT_TIMEOUT);
        let custom = Policy::from_parts(
            &RetryPolicy {
                retry_on: Some(vec!["429".into()]),
                ..RetryPolicy::default()
            },
            Some("2s"),
            Some("5s"),
        );
        assert!(custom.retries(&Failure::Status(429)));
        assert!(!custom.retries(&Failure::Status(503)));
        assert_eq!(custom.attempt_timeout, Duration::from_secs(2));
        assert_eq!(custom.total_timeout, Duration::from_secs(5));
    }
}

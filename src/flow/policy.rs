//! A step's retry and timeout policy, resolved from the flow file with the
//! defaults filled in, once, when the flow compiles.

use std::time::Duration;

use super::steps::{BackoffKind, HEDGE_P95, HttpStep, RetryPolicy, defaults, parse_duration};

#[derive(Debug, Clone)]
pub struct Policy {
    pub backoff: BackoffKind,
    pub max_attempts: u32,
    pub delay: Duration,
    pub max_delay: Duration,
    pub jitter: bool,
    /// `connect`, `timeout`, `5xx`, `4xx` or a status code.
    pub retry_on: Vec<String>,
    pub attempt_timeout: Duration,
    pub total_timeout: Duration,
    pub hedge: Option<Hedge>,
}

/// When an attempt without an answer yet is sent a second time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hedge {
    After(Duration),
    /// After the host's recent 95th percentile latency.
    P95,
}

fn dur(s: Option<&str>, default: Duration) -> Duration {
    // Validation rejected bad durations when the flow loaded.
    s.and_then(|s| parse_duration(s).ok()).unwrap_or(default)
}

impl Policy {
    pub fn of(step: &HttpStep) -> Policy {
        let retry = step.retry.clone().unwrap_or_default();
        let mut policy = Policy::from_parts(
            &retry,
            step.timeout.as_deref(),
            step.total_timeout.as_deref(),
        );
        policy.hedge = step.hedge.as_deref().and_then(|h| match h {
            HEDGE_P95 => Some(Hedge::P95),
            // Validation rejected anything else.
            d => parse_duration(d).ok().map(Hedge::After),
        });
        policy
    }

    pub fn from_parts(retry: &RetryPolicy, timeout: Option<&str>, total: Option<&str>) -> Policy {
        Policy {
            backoff: retry.backoff,
            max_attempts: retry.max_attempts.clamp(1, defaults::MAX_ATTEMPTS_LIMIT),
            delay: dur(retry.delay.as_deref(), defaults::RETRY_DELAY),
            max_delay: dur(retry.max_delay.as_deref(), defaults::RETRY_MAX_DELAY),
            jitter: retry
                .jitter
                .unwrap_or(retry.backoff == BackoffKind::Exponential),
            retry_on: retry
                .retry_on
                .clone()
                .unwrap_or_else(|| vec!["connect".into(), "timeout".into(), "5xx".into()]),
            attempt_timeout: dur(timeout, defaults::ATTEMPT_TIMEOUT),
            total_timeout: dur(total, defaults::TOTAL_TIMEOUT),
            hedge: None,
        }
    }
}

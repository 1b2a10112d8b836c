//! Operations telemetry. Traces and log set-up are in [`traces`]; this
//! module is the metrics side: the catalogue of every Prometheus metric Baton
//! exports (name, kind, labels, help, buckets), the process-wide recorder
//! that `/metrics` renders, and `docs/metrics.md`, generated from the
//! catalogue. Code records through the catalogue's entries, so a metric's
//! labels are named in one place and a metric that is not here cannot be
//! recorded.

pub mod traces;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// What a metric is in Prometheus terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One exported metric.
#[derive(Debug)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    /// Label names, in the order [`Metric::labels`] takes their values.
    pub labels: &'static [&'static str],
    pub help: &'static str,
    /// Upper bounds of a histogram's buckets.
    pub buckets: &'static [f64],
}

/// Request and step latencies: 1 ms to 30 s.
const SECONDS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Group-commit batch sizes, up to the store's largest batch.
const BATCH: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

pub const GRAPHQL_DURATION: Metric = Metric {
    name: "baton_graphql_request_duration_seconds",
    kind: Kind::Histogram,
    labels: &["operation", "type"],
    help: "GraphQL requests by root field (`startFlow`, `submit`, `session`, …; \
           several root fields are joined with `+`) and operation type, \
           from parse to response.",
    buckets: SECONDS,
};

pub const SUBMITS: Metric = Metric {
    name: "baton_submits_total",
    kind: Kind::Counter,
    labels: &["outcome"],
    help: "`submit` calls by outcome: the status the session was left in \
           (`ACTIVE`, `WAITING`, `COMPLETED`, `FAILED`), or the code of the \
           refusal (a field error such as `VALIDATION_FAILED`, or an error such \
           as `SESSION_NOT_FOUND`).",
    buckets: &[],
};

pub const STEP_DURATION: Metric = Metric {
    name: "baton_step_attempt_duration_seconds",
    kind: Kind::Histogram,
    labels: &["kind", "host"],
    help: "One attempt of a backend step, by step kind and upstream host \
           (`mock` for mocked calls, empty for steps without a host). A wait, \
           approval or event counts as one attempt lasting until it ended.",
    buckets: SECONDS,
};

pub const STEP_ATTEMPTS: Metric = Metric {
    name: "baton_step_attempts_total",
    kind: Kind::Counter,
    labels: &["kind", "host"],
    help: "Attempts of backend steps, the first included.",
    buckets: &[],
};

pub const STEP_FAILURES: Metric = Metric {
    name: "baton_step_failures_total",
    kind: Kind::Counter,
    labels: &["kind", "host", "reason"],
    help: "Attempts that failed, by reason: `connect` (refused, unreachable, or \
           the host's circuit is open), `timeout`, `status` (a non-2xx answer), \
           `permanent` (not allowlisted, a request that cannot be built, a \
           response over the size limit), `bulkhead` (not sent: the host's \
           `--upstream-limits` stayed full).",
    buckets: &[],
};

pub const TASK_QUEUE_DEPTH: Metric = Metric {
    name: "baton_task_queue_depth",
    kind: Kind::Gauge,
    labels: &["state"],
    help: "Step tasks not done, by state: `ready` (due or scheduled), \
           `running` (leased to a worker), `open` (an approval or event \
           waiting). Read from the store when `/metrics` is scraped.",
    buckets: &[],
};

pub const LEASE_EXPIRIES: Metric = Metric {
    name: "baton_task_lease_expiries_total",
    kind: Kind::Counter,
    labels: &[],
    help: "Running step tasks taken again because their worker's lease ran \
           out (the worker died or stalled).",
    buckets: &[],
};

pub const BREAKER_STATE: Metric = Metric {
    name: "baton_circuit_breaker_state",
    kind: Kind::Gauge,
    labels: &["host"],
    help: "Circuit breaker per upstream host: 0 closed, 1 half-open, 2 open.",
    buckets: &[],
};

pub const COMMIT_BATCH: Metric = Metric {
    name: "baton_group_commit_batch_size",
    kind: Kind::Histogram,
    labels: &[],
    help: "Session commits written together in one group-commit batch.",
    buckets: BATCH,
};

pub const SINK_EVENTS: Metric = Metric {
    name: "baton_webhook_events_total",
    kind: Kind::Counter,
    labels: &["webhook", "outcome"],
    help: "Events sent to a webhook, by outcome: `delivered`, or \
           `dead_lettered` (its batch was refused until the retries ran out).",
    buckets: &[],
};

pub const FUNNEL_EVENTS: Metric = Metric {
    name: "baton_funnel_events_total",
    kind: Kind::Counter,
    labels: &["source"],
    help: "Events the funnel aggregator folded, by where it took them from: \
           `handoff` (this process wrote them, on SQLite, and handed them over \
           in memory) or `store` (read from the event log).",
    buckets: &[],
};

pub const NATS_EVENTS: Metric = Metric {
    name: "baton_nats_events_total",
    kind: Kind::Counter,
    labels: &["outcome"],
    help: "Messages read from the NATS events stream, by outcome: `delivered` \
           (it advanced a waiting step), `kept` (no step waits yet; it stays in \
           the inbox), `duplicate` (its id was received before), `rejected` \
           (not an event; dropped) or `failed` (not stored; JetStream sends it \
           again).",
    buckets: &[],
};

pub const LLM_TOKENS: Metric = Metric {
    name: "baton_llm_tokens_total",
    kind: Kind::Counter,
    labels: &["model", "kind"],
    help: "Tokens `llm` steps used, by model and kind (`prompt` or `completion`), \
           as the endpoint reported them.",
    buckets: &[],
};

/// Every metric, in the order `docs/metrics.md` lists them.
pub const CATALOGUE: &[&Metric] = &[
    &GRAPHQL_DURATION,
    &SUBMITS,
    &STEP_DURATION,
    &STEP_ATTEMPTS,
    &STEP_FAILURES,
    &TASK_QUEUE_DEPTH,
    &LEASE_EXPIRIES,
    &BREAKER_STATE,
    &COMMIT_BATCH,
    &SINK_EVENTS,
    &FUNNEL_EVENTS,
    &NATS_EVENTS,
    &LLM_TOKENS,
];

impl Metric {
    fn labels(&self, values: &[&str]) -> Vec<(&'static str, String)> {
        debug_assert_eq!(
            values.len(),
            self.labels.len(),
            "{} takes labels {:?}",
            self.name,
            self.labels
        );
        self.labels
            .iter()
            .zip(values)
            .map(|(k, v)| (*k, (*v).to_owned()))
            .collect()
    }

    /// Adds `by` to a counter.
    pub fn add(&self, values: &[&str], by: u64) {
        debug_assert_eq!(self.kind, Kind::Counter);
        recorder();
        metrics::counter!(self.name, &self.labels(values)).increment(by);
    }

    /// Sets a gauge.
    pub fn set(&self, values: &[&str], to: f64) {
        debug_assert_eq!(self.kind, Kind::Gauge);
        recorder();
        metrics::gauge!(self.name, &self.labels(values)).set(to);
    }

    /// Records one observation of a histogram.
    pub fn observe(&self, values: &[&str], value: f64) {
        debug_assert_eq!(self.kind, Kind::Histogram);
        recorder();
        metrics::histogram!(self.name, &self.labels(values)).record(value);
    }
}

/// One attempt of a backend step: its duration, and why it failed if it did.
pub fn step_attempt(kind: &str, host: &str, seconds: f64, failure: Option<&str>) {
    STEP_DURATION.observe(&[kind, host], seconds);
    STEP_ATTEMPTS.add(&[kind, host], 1);
    if let Some(reason) = failure {
        STEP_FAILURES.add(&[kind, host, reason], 1);
    }
}

static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide recorder, installed on first use. Another recorder
/// installed first (an embedding program's) keeps its place; `/metrics`
/// then renders only what this one holds, which is nothing.
pub fn recorder() -> &'static PrometheusHandle {
    RECORDER.get_or_init(|| {
        let mut builder = PrometheusBuilder::new();
        for m in CATALOGUE.iter().filter(|m| m.kind == Kind::Histogram) {
            builder = builder
                .set_buckets_for_metric(Matcher::Full(m.name.to_owned()), m.buckets)
                .expect("catalogue buckets are not empty");
        }
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was installed before Baton's; /metrics stays empty");
        }
        for m in CATALOGUE {
            match m.kind {
                Kind::Counter => metrics::describe_counter!(m.name, m.help),
                Kind::Gauge => metrics::describe_gauge!(m.name, m.help),
                Kind::Histogram => metrics::describe_histogram!(m.name, m.help),
            }
        }
        handle
    })
}

/// The Prometheus text exposition of every metric recorded so far.
pub fn render() -> String {
    let handle = recorder();
    handle.run_upkeep();
    handle.render()
}

/// `docs/metrics.md`, generated from [`CATALOGUE`].
pub fn markdown() -> String {
    let mut out = String::from(
        "# Metrics\n\n\
         Generated from `src/telemetry.rs` by `cargo run -- schema`; do not edit.\n\n\
         `GET /metrics` answers in the Prometheus text format. Histograms have \
         `_bucket`, `_sum` and `_count` series.\n\n\
         | Metric | Kind | Labels | What it counts |\n\
         |---|---|---|---|\n",
    );
    for m in CATALOGUE {
        let labels = if m.labels.is_empty() {
            "—".to_owned()
        } else {
            m.labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            m.name,
            m.kind.as_str(),
            labels,
            m.help.replace('\n', " ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prometheus_names_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for m in CATALOGUE {
            assert!(seen.insert(m.name), "{} twice", m.name);
            assert!(m.name.starts_with("baton_"), "{}", m.name);
            assert!(
                m.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                m.name
            );
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}",
                m.name
            );
            assert_eq!(
                m.kind == Kind::Histogram,
                !m.buckets.is_empty(),
                "{}",
                m.name
            );
        }
    }
}

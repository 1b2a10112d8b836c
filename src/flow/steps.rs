//! Backend steps in a flow file: the nodes that do work between screens
//! (`http`, `parallel`, `llm`, `transform`, `wait`, `approval`, `event`,
//! `subflow`), their retry and
//! timeout policy, the screen shown while they run, and the mock responses
//! frontend developers build against.
//!
//! Durations are written the way people say them (`"500ms"`, `"30s"`,
//! `"48h"`, `"1h 30m"`) and parsed by `humantime`.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::model::{ComponentDef, Edges, Text};

/// Call an upstream HTTP API. URL, headers and body are templates over the
/// context (plus `secrets.NAME` from the environment variable
/// `BATON_SECRET_NAME`); the response is stored at `steps.<id>` as
/// `{status, ok, body}`. A 2xx response follows `next`; anything else,
/// after the retries, follows `on_error` (`on_timeout` for timeouts).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpStep {
    pub id: String,
    #[serde(default)]
    pub method: HttpMethod,
    /// `http://host[:port]/path…`. The scheme and host must be literal
    /// (no template before the path) and allowlisted by the server.
    pub url: String,
    /// Request headers; values are templates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// JSON request body; every string inside is a template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    /// Edges taken after a 2xx response; rules read `steps.<id>.body`.
    pub next: Edges,
    /// Where to go when the call fails for good. Default: the flow's
    /// `on_error`, else the session fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<String>,
    /// Where to go when the step times out. Default: `on_error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Timeout of one attempt. Default `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Timeout of all attempts together, counted from when the step was
    /// entered. Default `60s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_timeout: Option<String>,
    /// Hedging: when an attempt has no answer after this long (a duration,
    /// or `p95`: the host's recent 95th percentile), the same request (same
    /// `Idempotency-Key`) goes out again and the first answer wins. Only
    /// for idempotent methods (GET, PUT, DELETE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hedge: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingDef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mock: Option<HttpMock>,
}

/// `hedge: p95`: hedge after the host's recent 95th percentile latency.
pub const HEDGE_P95: &str = "p95";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    #[default]
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
            HttpMethod::Put => "PUT",
            HttpMethod::Patch => "PATCH",
            HttpMethod::Delete => "DELETE",
        }
    }
}

/// When and how often a failed attempt is tried again.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    #[serde(default)]
    pub backoff: BackoffKind,
    /// Attempts in all, the first included. Default 3.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Delay before the first retry. Default `200ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<String>,
    /// Longest delay between attempts. Default `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delay: Option<String>,
    /// Randomize delays so that many sessions do not retry in step.
    /// Default true for exponential backoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<bool>,
    /// Which failures are retried: `connect`, `timeout`, `5xx`, `4xx`, or
    /// a status code such as `429`. Default: connect, timeout, 5xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<Vec<String>>,
}

fn default_max_attempts() -> u32 {
    3
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            backoff: BackoffKind::default(),
            max_attempts: default_max_attempts(),
            delay: None,
            max_delay: None,
            jitter: None,
            retry_on: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BackoffKind {
    Fixed,
    #[default]
    Exponential,
    Linear,
}

/// What the client shows while the step runs (a screen without actions).
/// Default: a generic "one moment" screen.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PendingDef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<Text>,
    #[serde(default)]
    pub components: Vec<ComponentDef>,
}

/// Mock answer of an `http` step: the default case, plus named scenarios
/// that a mock session selects.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpMock {
    #[serde(default = "ok_status")]
    pub status: u16,
    #[serde(default)]
    pub body: Value,
    /// Simulated failure instead of a response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail: Option<MockFailure>,
    /// Simulated latency of each attempt, in milliseconds.
    #[serde(default)]
    pub latency_ms: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scenarios: BTreeMap<String, HttpMockCase>,
}

/// One named mock case of an `http` step.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpMockCase {
    #[serde(default = "ok_status")]
    pub status: u16,
    #[serde(default)]
    pub body: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail: Option<MockFailure>,
    #[serde(default)]
    pub latency_ms: u64,
}

fn ok_status() -> u16 {
    200
}

/// A transport failure a mock simulates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MockFailure {
    /// The upstream refuses the connection.
    Connect,
    /// The upstream does not answer within the attempt timeout.
    Timeout,
}

impl HttpMock {
    /// The case for `scenario`, or the default one.
    pub fn case(&self, scenario: Option<&str>) -> HttpMockCase {
        if let Some(case) = scenario.and_then(|s| self.scenarios.get(s)) {
            return case.clone();
        }
        HttpMockCase {
            status: self.status,
            body: self.body.clone(),
            fail: self.fail,
            latency_ms: self.latency_ms,
        }
    }
}

/// Run several HTTP calls at once and join them. Each branch is a request
/// like an `http` step's (its own retry, timeout and mock); its result
/// lands at `steps.<id>.<branch>`. `join`: `all` (every branch must
/// succeed), `any` (wait for all, at least one succeeded) or
/// `first_success` (done as soon as one succeeds). Success follows `next`,
/// failure `on_error` (`on_timeout` when a branch timed out).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParallelStep {
    pub id: String,
    #[serde(default)]
    pub join: JoinKind,
    pub branches: Vec<HttpBranch>,
    pub next: Edges,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingDef>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JoinKind {
    #[default]
    All,
    Any,
    FirstSuccess,
}

/// One request of a `parallel` step.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpBranch {
    pub id: String,
    #[serde(default)]
    pub method: HttpMethod,
    pub url: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mock: Option<HttpMock>,
}

impl HttpBranch {
    /// The branch as an `http` step, so one runner serves both.
    pub fn as_step(&self) -> HttpStep {
        HttpStep {
            id: self.id.clone(),
            method: self.method,
            url: self.url.clone(),
            headers: self.headers.clone(),
            body: self.body.clone(),
            next: Edges::To(String::new()),
            on_error: None,
            on_timeout: None,
            retry: self.retry.clone(),
            timeout: self.timeout.clone(),
            total_timeout: self.total_timeout.clone(),
            hedge: None,
            pending: None,
            mock: self.mock.clone(),
        }
    }
}

/// Compute values into `steps.<id>` without I/O. Each entry is a JsonLogic
/// rule (an object), a template (a string) or a literal.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransformStep {
    pub id: String,
    pub set: BTreeMap<String, Value>,
    pub next: Edges,
}

/// Runs another flow inside this session: its screens are shown in place,
/// with its own `input` and `steps`, and `params` set from `params` here.
/// The child is pinned to the version live for the user when the session
/// first enters it. When the child ends, what it collected lands at
/// `steps.<id>` as `{outcome, input, steps}` and its outcome picks the
/// edge: `completed` follows `next`, `abandoned` follows `on_abandoned`
/// (default: the session ends abandoned), `failed` follows `on_error`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubflowStep {
    pub id: String,
    /// Id of the flow to run.
    pub flow: String,
    /// What the child reads as `params.<key>`: each a JsonLogic rule (an
    /// object), a template (a string) or a literal, over this flow's context.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, Value>,
    pub next: Edges,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_abandoned: Option<String>,
    /// Default: the flow's `on_error`, else the session fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<String>,
}

/// A durable timer: waits `duration`, or `until` an RFC 3339 time (a
/// template), surviving restarts.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitStep {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    pub next: Edges,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingDef>,
    /// In mock mode the wait lasts this long instead. Default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mock: Option<WaitMock>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitMock {
    #[serde(default)]
    pub latency_ms: u64,
}

/// A human task: reviewers whose key may decide for `role` list it, claim
/// it and complete it with one of `outcomes` (each an edge), filling
/// `fields`. The decision lands at `steps.<id>` as
/// `{outcome, values, comment, reviewer}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalStep {
    pub id: String,
    /// The reviewer queue that may decide, e.g. `underwriter`.
    pub role: String,
    /// Task title shown in the reviewers' inbox (template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<Text>,
    /// Inputs the reviewer fills, validated like screen inputs.
    #[serde(default)]
    pub fields: Vec<ComponentDef>,
    /// Outcome name → node.
    pub outcomes: BTreeMap<String, String>,
    /// How long reviewers have, e.g. `48h`. Default: no deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<String>,
    /// Where to go when `due` passes. Default: the flow's `on_error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingDef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mock: Option<DecisionMock>,
}

/// How an approval resolves in mock mode.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionMock {
    pub outcome: String,
    #[serde(default)]
    pub values: serde_json::Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default)]
    pub latency_ms: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scenarios: BTreeMap<String, DecisionMockCase>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionMockCase {
    pub outcome: String,
    #[serde(default)]
    pub values: serde_json::Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default)]
    pub latency_ms: u64,
}

impl DecisionMock {
    pub fn case(&self, scenario: Option<&str>) -> DecisionMockCase {
        if let Some(case) = scenario.and_then(|s| self.scenarios.get(s)) {
            return case.clone();
        }
        DecisionMockCase {
            outcome: self.outcome.clone(),
            values: self.values.clone(),
            comment: self.comment.clone(),
            latency_ms: self.latency_ms,
        }
    }
}

/// Wait for an external event `event` whose correlation key equals
/// `correlation` (a template, e.g. `{{ steps.pay.body.id }}`). The event's
/// payload lands at `steps.<id>.payload`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventStep {
    pub id: String,
    /// Event name, e.g. `payment.settled`.
    pub event: String,
    pub correlation: String,
    /// How long to wait, e.g. `1h`. Default: no deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    pub next: Edges,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingDef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mock: Option<EventMock>,
}

/// How an event step resolves in mock mode.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventMock {
    #[serde(default)]
    pub payload: Value,
    /// Simulate the deadline passing instead of the event arriving.
    #[serde(default)]
    pub timeout: bool,
    #[serde(default)]
    pub latency_ms: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scenarios: BTreeMap<String, EventMockCase>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventMockCase {
    #[serde(default)]
    pub payload: Value,
    #[serde(default)]
    pub timeout: bool,
    #[serde(default)]
    pub latency_ms: u64,
}

impl EventMock {
    pub fn case(&self, scenario: Option<&str>) -> EventMockCase {
        if let Some(case) = scenario.and_then(|s| self.scenarios.get(s)) {
            return case.clone();
        }
        EventMockCase {
            payload: self.payload.clone(),
            timeout: self.timeout,
            latency_ms: self.latency_ms,
        }
    }
}

/// Ask a language model through an OpenAI-compatible chat-completions
/// endpoint (the server's `--llm-url`, its key from `secrets.LLM_API_KEY`).
/// `prompt` (and `system`) are templates over the context. The answer must
/// be JSON matching `schema`; one that does not is sent back with the
/// validation errors, up to `repair` times. With a `judge`, a second call
/// approves the answer or not. The result lands at `steps.<id>` as
/// `{answer, model, usage, cost_usd, repairs, judge}`. An answer the judge
/// approves (or any valid answer, without a judge) follows `next`; one it
/// rejects or is unsure about follows `review` (typically an `approval`
/// step that shows it to a person), else `on_error`; an answer that never
/// matches the schema, or a call that fails for good, follows `on_error`
/// (`on_timeout` for timeouts) with the last errors recorded.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LlmStep {
    pub id: String,
    /// The model; default the server's `--llm-model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// System message (template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// User message (template).
    pub prompt: String,
    /// JSON Schema the answer must match.
    pub schema: Value,
    /// How many times an answer that does not match `schema` is sent back
    /// with its errors. Default 2, at most 5.
    #[serde(default = "default_repair")]
    pub repair: u32,
    /// Sampling temperature, 0 to 2. Default: the endpoint's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<LlmJudge>,
    pub next: Edges,
    /// Where to go when the judge rejects the answer or is unsure.
    /// Default: `on_error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_timeout: Option<String>,
    /// Retries of each call (connect failures, timeouts, 5xx, and 429).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// Timeout of one call. Default `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Timeout of the whole step (every call, repairs and judge included),
    /// from when it was entered. Default `120s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingDef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mock: Option<LlmMock>,
}

fn default_repair() -> u32 {
    2
}

/// Upper bound on `repair`.
pub const MAX_REPAIR: u32 = 5;

impl LlmStep {
    /// Its calls to the endpoint as an `http` step's, so they share its
    /// retries, timeouts, breaker, limits and redaction. The URL is the
    /// server's, filled in when the step runs.
    pub fn as_call(&self) -> HttpStep {
        let mut retry = self.retry.clone().unwrap_or_default();
        retry.retry_on.get_or_insert_with(|| {
            ["connect", "timeout", "5xx", "429"]
                .map(String::from)
                .to_vec()
        });
        HttpStep {
            id: self.id.clone(),
            method: HttpMethod::Post,
            url: String::new(),
            headers: BTreeMap::new(),
            body: None,
            next: Edges::To(String::new()),
            on_error: None,
            on_timeout: None,
            retry: Some(retry),
            timeout: Some(self.timeout.clone().unwrap_or_else(|| "30s".into())),
            total_timeout: Some(self.total_timeout.clone().unwrap_or_else(|| "120s".into())),
            hedge: None,
            pending: None,
            mock: None,
        }
    }
}

/// A second call that judges the answer. Its prompt (a template) sees the
/// context plus `answer`; it must reply
/// `{"verdict": "approve" | "reject" | "unsure", "reason": "…"}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LlmJudge {
    pub prompt: String,
    /// Default: the step's model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// What an `llm` step answers in mock mode.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LlmMock {
    /// The answer (checked against the step's `schema` like a real one).
    #[serde(default)]
    pub answer: Value,
    /// The judge's verdict. Default `approve`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail: Option<MockFailure>,
    #[serde(default)]
    pub latency_ms: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scenarios: BTreeMap<String, LlmMockCase>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LlmMockCase {
    #[serde(default)]
    pub answer: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail: Option<MockFailure>,
    #[serde(default)]
    pub latency_ms: u64,
}

impl LlmMock {
    pub fn case(&self, scenario: Option<&str>) -> LlmMockCase {
        if let Some(case) = scenario.and_then(|s| self.scenarios.get(s)) {
            return case.clone();
        }
        LlmMockCase {
            answer: self.answer.clone(),
            verdict: self.verdict,
            fail: self.fail,
            latency_ms: self.latency_ms,
        }
    }
}

/// A judge's verdict on an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approve,
    Reject,
    Unsure,
}

/// Parses `"500ms"`, `"30s"`, `"48h"`, `"1h 30m"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| e.to_string())
}

/// Defaults of the step policy, in one place.
pub mod defaults {
    use std::time::Duration;

    pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
    pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(60);
    pub const RETRY_DELAY: Duration = Duration::from_millis(200);
    pub const RETRY_MAX_DELAY: Duration = Duration::from_secs(10);
    /// Upper bound on `max_attempts`: a step cannot hammer an upstream.
    pub const MAX_ATTEMPTS_LIMIT: u32 = 100;
}

/// Which backend step a task runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    Http,
    Wait,
    Approval,
    Event,
    Llm,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Http => "http",
            StepKind::Wait => "wait",
            StepKind::Approval => "approval",
            StepKind::Event => "event",
            StepKind::Llm => "llm",
        }
    }
}

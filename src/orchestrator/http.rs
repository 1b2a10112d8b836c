//! Running an `http` step: render the request (with secrets), check the
//! host allowlist and the circuit breaker, call the upstream — or answer
//! from the step's mock in mock mode — and retry per the step's policy.
//! The `Idempotency-Key` header is the task id, the same on every attempt,
//! so an upstream that honours it applies an at-least-once call once.

use crate::flow::hosts::AllowList;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::policy::{Failure, Policy};
use super::{Claimed, Runner, Shared};
use crate::engine::StepResult;
use crate::flow::compile::{CompiledCall, CompiledFlow};
use crate::flow::steps::{HttpMockCase, HttpStep, JoinKind, MockFailure, ParallelStep};
use crate::flow::validate::literal_url_origin;
use crate::service::ServiceError;
use crate::service::steps::StepDone;
use crate::store::tasks::{AttemptOutcome, AttemptRecord, TaskRecord};

/// What one attempt produced.
struct Response {
    status: u16,
    body: Value,
}

/// How a call keeps its attempts.
pub(super) enum Bookkeeping {
    /// An `http` step: each retry is recorded and the task's lease
    /// extended in the store as it happens; starts at attempt `first`.
    Durable { first: u32 },
    /// A parallel branch: attempts are kept here and recorded with the
    /// step's result (the task's lease is extended by the parallel runner).
    InMemory { label: String },
}

/// The end of one call (all its attempts): its result and the attempts.
pub(super) struct Called {
    pub result: StepResult,
    pub attempts: Vec<AttemptRecord>,
}

impl Runner for HttpStep {
    async fn run(&self, claimed: Claimed<'_>) -> Result<(), ServiceError> {
        let [compiled] = claimed.calls() else {
            return Err(ServiceError::Internal(format!(
                "step `{}` is not compiled as one call",
                self.id
            )));
        };
        let Claimed {
            shared,
            task,
            flow,
            context,
            ..
        } = claimed;
        let first = task.attempts.max(1) as u32;
        let Some(called) = call(
            shared,
            task,
            flow,
            compiled,
            context,
            None,
            Bookkeeping::Durable { first },
        )
        .await?
        else {
            return Ok(()); // the lease was lost; the new holder finishes it
        };
        match shared
            .baton
            .finish_step(task, called.result, &called.attempts, false)
            .await?
        {
            StepDone::Advanced(_) | StepDone::AlreadyDone => Ok(()),
        }
    }
}

impl Runner for ParallelStep {
    async fn run(&self, claimed: Claimed<'_>) -> Result<(), ServiceError> {
        run_parallel(
            claimed.shared,
            claimed.task,
            claimed.flow,
            self,
            claimed.calls(),
            claimed.context,
        )
        .await
    }
}

/// Runs a `parallel` step: every branch at once, joined per `join`.
async fn run_parallel(
    shared: &Shared,
    task: &TaskRecord,
    flow: &CompiledFlow,
    step: &ParallelStep,
    branches: &[CompiledCall],
    context: &Value,
) -> Result<(), ServiceError> {
    use futures_util::StreamExt;
    use futures_util::stream::FuturesUnordered;

    let mut running: FuturesUnordered<_> = branches
        .iter()
        .map(|b| async move {
            let label = format!("{}.{}", task.node, b.step.id);
            let called = call(
                shared,
                task,
                flow,
                b,
                context,
                None,
                Bookkeeping::InMemory { label },
            )
            .await;
            (b.step.id.clone(), called)
        })
        .collect();
    // Keep the lease while the branches run (they may retry for a while).
    let lease = shared.baton.step_settings().lease;
    let worker = shared.baton.worker_id().to_string();
    // The first beat is a period away: awaiting an interval's immediate
    // first tick costs a turn of the timer wheel (about a millisecond).
    let mut heartbeat =
        tokio::time::interval_at(tokio::time::Instant::now() + lease / 3, lease / 3);
    let mut results: Map<String, Value> = Map::new();
    let mut attempts = Vec::new();
    let (mut ok, mut failed, mut timed_out) = (0usize, 0usize, false);
    loop {
        let next = tokio::select! {
            n = running.next() => n,
            _ = heartbeat.tick() => {
                let until = shared.config.clock.now_ms() + lease.as_millis() as i64;
                if !shared.baton.store().extend_lease(&task.id, &worker, until).await? {
                    return Ok(()); // taken over by another worker
                }
                continue;
            }
        };
        let Some((id, called)) = next else { break };
        let Some(called) = called? else { return Ok(()) };
        match called.result.outcome.as_str() {
            "ok" => ok += 1,
            "timeout" => {
                failed += 1;
                timed_out = true;
            }
            _ => failed += 1,
        }
        results.insert(id, called.result.output);
        attempts.extend(called.attempts);
        if step.join == JoinKind::FirstSuccess && ok > 0 {
            break; // the others are dropped, unfinished
        }
        if step.join == JoinKind::All && failed > 0 {
            break; // it cannot succeed any more
        }
    }
    let success = match step.join {
        JoinKind::All => failed == 0,
        JoinKind::Any | JoinKind::FirstSuccess => ok > 0,
    };
    let outcome = match (success, timed_out) {
        (true, _) => "ok",
        (false, true) => "timeout",
        (false, false) => "error",
    };
    for (n, a) in attempts.iter_mut().enumerate() {
        a.attempt = n as i32 + 1;
    }
    let result = StepResult {
        outcome: outcome.into(),
        output: Value::Object(results),
    };
    match shared
        .baton
        .finish_step(task, result, &attempts, false)
        .await?
    {
        StepDone::Advanced(_) | StepDone::AlreadyDone => Ok(()),
    }
}

/// One call with its retries. `None` when the task's lease was lost.
/// `body`, when given, is sent as it is instead of the step's templates.
pub(super) async fn call(
    shared: &Shared,
    task: &TaskRecord,
    flow: &CompiledFlow,
    compiled: &CompiledCall,
    context: &Value,
    body: Option<&Value>,
    book: Bookkeeping,
) -> Result<Option<Called>, ServiceError> {
    let CompiledCall { step, policy } = compiled;
    let clock = &shared.config.clock;
    let worker = shared.baton.worker_id().to_string();
    let lease = shared.baton.step_settings().lease;
    let deadline = task.created_at + policy.total_timeout.as_millis() as i64;
    let (mut attempt, node) = match &book {
        Bookkeeping::Durable { first } => (*first, task.node.clone()),
        Bookkeeping::InMemory { label } => (1, label.clone()),
    };
    let mut kept = Vec::new();
    let host = match task.mock {
        Some(_) => "mock".to_owned(),
        None => host_label(&step.url),
    };
    loop {
        let started = clock.now_ms();
        let timer = std::time::Instant::now();
        let outcome = if let Some(scenario) = &task.mock {
            let scenario = (scenario != "default").then_some(scenario.as_str());
            mock_attempt(shared, step, scenario, policy).await
        } else {
            real_attempt(shared, task, flow, step, context, body, policy).await
        };
        let finished = clock.now_ms();
        let failed = match &outcome {
            Ok(r) if (200..300).contains(&r.status) => None,
            Ok(_) => Some("status"),
            Err(f) => Some(f.reason()),
        };
        crate::telemetry::step_attempt(&task.kind, &host, timer.elapsed().as_secs_f64(), failed);
        let mut record = AttemptRecord {
            task_id: task.id.clone(),
            attempt: attempt as i32,
            session_id: task.session_id.clone(),
            node: node.clone(),
            worker: worker.clone(),
            started_at: started,
            finished_at: finished,
            outcome: AttemptOutcome::Ok,
            status_code: None,
            error: None,
        };
        let failure = match outcome {
            Ok(resp) if (200..300).contains(&resp.status) => {
                record.status_code = Some(i32::from(resp.status));
                let output = redact(
                    &shared.config.secrets,
                    json!({ "status": resp.status, "ok": true, "body": resp.body, "attempts": attempt }),
                );
                kept.push(record);
                return Ok(Some(Called {
                    result: StepResult {
                        outcome: "ok".into(),
                        output,
                    },
                    attempts: kept,
                }));
            }
            Ok(resp) => {
                record.status_code = Some(i32::from(resp.status));
                (Failure::Status(resp.status), Some(resp))
            }
            Err(f) => (f, None),
        };
        let (failure, response) = failure;
        record.error = Some(redact_str(&shared.config.secrets, &describe(&failure)));
        let retry_delay = if policy.retries(&failure) {
            policy.delay_after(attempt)
        } else {
            None
        };
        let in_time = |d: Duration| clock.now_ms() + (d.as_millis() as i64) < deadline;
        match retry_delay {
            Some(delay) if in_time(delay) => {
                record.outcome = AttemptOutcome::Retry;
                match &book {
                    Bookkeeping::Durable { .. } => {
                        let lease_until = clock.now_ms() + (delay + lease).as_millis() as i64;
                        if !shared
                            .baton
                            .store()
                            .record_retry(&record, lease_until)
                            .await?
                        {
                            // Another worker took the task over (our lease ran out).
                            return Ok(None);
                        }
                        clock.sleep(delay).await;
                        let lease_until = clock.now_ms() + lease.as_millis() as i64;
                        match shared
                            .baton
                            .store()
                            .start_attempt(&task.id, &worker, lease_until)
                            .await?
                        {
                            Some(n) => attempt = n as u32,
                            None => return Ok(None),
                        }
                    }
                    Bookkeeping::InMemory { .. } => {
                        kept.push(record);
                        clock.sleep(delay).await;
                        attempt += 1;
                    }
                }
            }
            _ => {
                let timeout = matches!(failure, Failure::Timeout) || clock.now_ms() >= deadline;
                record.outcome = if timeout {
                    AttemptOutcome::Timeout
                } else {
                    AttemptOutcome::Error
                };
                let outcome = record.outcome.as_str();
                let mut output = Map::new();
                output.insert("ok".into(), Value::Bool(false));
                output.insert("attempts".into(), json!(attempt));
                output.insert("error".into(), json!(record.error));
                if let Some(resp) = response {
                    output.insert("status".into(), json!(resp.status));
                    output.insert("body".into(), resp.body);
                } else {
                    output.insert("status".into(), Value::Null);
                }
                kept.push(record);
                return Ok(Some(Called {
                    result: StepResult {
                        outcome: outcome.into(),
                        output: redact(&shared.config.secrets, Value::Object(output)),
                    },
                    attempts: kept,
                }));
            }
        }
    }
}

async fn mock_attempt(
    shared: &Shared,
    step: &HttpStep,
    scenario: Option<&str>,
    policy: &Policy,
) -> Result<Response, Failure> {
    let case = match &step.mock {
        Some(m) => m.case(scenario),
        // A step without a mock answers 200 with no body in mock mode: a
        // session in mock mode never reaches a real upstream.
        None => HttpMockCase {
            status: 200,
            body: Value::Null,
            fail: None,
            latency_ms: 0,
        },
    };
    let latency = Duration::from_millis(case.latency_ms);
    match case.fail {
        Some(MockFailure::Timeout) => {
            shared.config.clock.sleep(policy.attempt_timeout).await;
            Err(Failure::Timeout)
        }
        Some(MockFailure::Connect) => {
            shared.config.clock.sleep(latency).await;
            Err(Failure::Connect("connection refused (mock)".into()))
        }
        None if latency > policy.attempt_timeout => {
            shared.config.clock.sleep(policy.attempt_timeout).await;
            Err(Failure::Timeout)
        }
        None => {
            shared.config.clock.sleep(latency).await;
            Ok(Response {
                status: case.status,
                body: case.body,
            })
        }
    }
}

#[tracing::instrument(
    name = "http.client",
    level = "debug",
    skip_all,
    fields(
        otel.kind = "client",
        http.request.method = %step.method.as_str(),
        url.template = %step.url,
        http.response.status_code = tracing::field::Empty,
    )
)]
async fn real_attempt(
    shared: &Shared,
    task: &TaskRecord,
    flow: &CompiledFlow,
    step: &HttpStep,
    context: &Value,
    literal_body: Option<&Value>,
    policy: &Policy,
) -> Result<Response, Failure> {
    let mut ctx = context.clone();
    ctx["secrets"] = json!(shared.config.secrets);
    let render = |src: &str| {
        crate::engine::view::render_source(flow, src, &ctx)
            .map_err(|e| Failure::Permanent(format!("template: {e}")))
    };
    let url = render(&step.url)?;
    let parsed = literal_url_origin(&url)
        .and_then(|_| url::Url::parse(&url).map_err(|e| e.to_string()))
        .map_err(|e| Failure::Permanent(format!("URL: {e}")))?;
    let host = parsed.host_str().unwrap_or_default().to_string();
    let port = parsed.port_or_known_default().unwrap_or(0);
    let allow = &shared.config.allow_hosts;
    if !allow.allows(&host, port) {
        return Err(Failure::Permanent(format!(
            "{}: `{host}:{port}` is not in the server's --allow-hosts",
            crate::codes::Code::HostNotAllowed
        )));
    }
    // An IP literal connects without the resolver: check it here.
    if let Ok(ip) = host
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<std::net::IpAddr>()
        && !allow.allows_address(&host, ip)
    {
        return Err(Failure::Permanent(refused_address(&host, ip)));
    }
    if !shared.breakers.allow(&host) {
        return Err(Failure::Connect(format!("circuit open for `{host}`")));
    }
    // Held until the response is read.
    let _slot = shared
        .bulkheads
        .enter(&host, policy.attempt_timeout)
        .await
        .map_err(Failure::Bulkhead)?;
    let method = reqwest::Method::from_bytes(step.method.as_str().as_bytes())
        .map_err(|e| Failure::Permanent(e.to_string()))?;
    let mut req = shared
        .client
        .request(method, parsed)
        .timeout(policy.attempt_timeout)
        .header("idempotency-key", &task.id)
        .headers(crate::telemetry::traces::outgoing_headers());
    for (name, value) in &step.headers {
        req = req.header(name.as_str(), render(value)?);
    }
    if let Some(body) = literal_body {
        req = req.json(body);
    } else if let Some(body) = &step.body {
        let body = render_json(body, &render)?;
        req = req.json(&body);
    }
    let max_bytes = shared.config.max_response_bytes;
    let hedge_after = policy
        .hedge
        .and_then(|h| shared.latencies.hedge_after(&host, h));
    let started = std::time::Instant::now();
    // Cloned only when it may go out twice: a clone copies the body.
    let again = hedge_after.and_then(|after| Some((after, req.try_clone()?)));
    let outcome = match again {
        Some((after, again)) => hedged(shared, &host, req, again, after, max_bytes).await,
        None => send(req, max_bytes).await,
    };
    if let Ok(r) = &outcome {
        tracing::Span::current().record("http.response.status_code", r.status);
        shared.latencies.record(&host, started.elapsed());
    }
    let healthy = match &outcome {
        Ok(r) => r.status < 500,
        Err(Failure::Permanent(_) | Failure::Bulkhead(_)) => true,
        Err(Failure::Connect(_) | Failure::Timeout | Failure::Status(_)) => false,
    };
    shared.breakers.record(&host, healthy);
    outcome
}

/// The host of a step's URL, without the port, as circuit breakers key
/// it, for metric labels. The flow must write the host literally, so the
/// values are as few as the allowlist allows.
fn host_label(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    match host.strip_prefix('[') {
        Some(v6) => format!("[{}]", v6.split(']').next().unwrap_or_default()),
        None => host.split(':').next().unwrap_or_default().to_owned(),
    }
}

/// Sends `first`, and `again` (the same request) once `after` passed
/// without an answer, if the host's limits have a slot free now; the first
/// answer wins and the other call is dropped.
async fn hedged(
    shared: &Shared,
    host: &str,
    first: reqwest::RequestBuilder,
    again: reqwest::RequestBuilder,
    after: Duration,
    max_bytes: usize,
) -> Result<Response, Failure> {
    let first = send(first, max_bytes);
    tokio::pin!(first);
    tokio::select! {
        r = &mut first => return r,
        _ = tokio::time::sleep(after) => {}
    }
    let Ok(_slot) = shared.bulkheads.enter(host, Duration::ZERO).await else {
        return first.await;
    };
    tracing::debug!(
        host,
        after_ms = after.as_millis() as u64,
        "hedging a slow call"
    );
    let second = send(again, max_bytes);
    tokio::pin!(second);
    tokio::select! {
        r = &mut first => r,
        r = &mut second => r,
    }
}

async fn send(req: reqwest::RequestBuilder, max_bytes: usize) -> Result<Response, Failure> {
    let mut resp = req.send().await.map_err(classify)?;
    let status = resp.status().as_u16();
    let mut bytes = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(classify)? {
        if bytes.len() + chunk.len() > max_bytes {
            return Err(Failure::Permanent(format!(
                "{}: the response is over {max_bytes} bytes",
                crate::codes::Code::ResponseTooLarge
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Ok(Response { status, body })
}

fn classify(e: reqwest::Error) -> Failure {
    // The resolver's refusal arrives as a connect error; it is final.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if let Some(refused) = err.downcast_ref::<AddressRefused>() {
            return Failure::Permanent(refused.0.clone());
        }
        source = err.source();
    }
    if e.is_timeout() {
        Failure::Timeout
    } else if e.is_builder() {
        Failure::Permanent(e.to_string())
    } else {
        Failure::Connect(e.to_string())
    }
}

fn render_json(
    value: &Value,
    render: &dyn Fn(&str) -> Result<String, Failure>,
) -> Result<Value, Failure> {
    Ok(match value {
        Value::String(s) => Value::String(render(s)?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| render_json(v, render))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_json(v, render)?)))
                .collect::<Result<_, Failure>>()?,
        ),
        other => other.clone(),
    })
}

fn describe(f: &Failure) -> String {
    match f {
        Failure::Connect(m) => format!("connect: {m}"),
        Failure::Bulkhead(m) => format!("bulkhead: {m}"),
        Failure::Timeout => "timeout".into(),
        Failure::Status(s) => format!("status {s}"),
        Failure::Permanent(m) => m.clone(),
    }
}

/// Secrets must never reach the session context or the step history, even
/// when an upstream echoes them back or an error message quotes them.
pub(super) fn redact_str(secrets: &std::collections::HashMap<String, String>, s: &str) -> String {
    let mut out = s.to_string();
    for v in secrets.values().filter(|v| v.len() >= 4) {
        if out.contains(v.as_str()) {
            out = out.replace(v.as_str(), "[redacted]");
        }
    }
    out
}

/// [`redact_str`] over a whole JSON value: strings and object keys alike
/// (an upstream may echo a header back as a key). Keys that only differ by
/// a secret would collide once redacted; the later ones get `#2`, `#3`, …
/// so no member is lost.
pub(super) fn redact(secrets: &std::collections::HashMap<String, String>, value: Value) -> Value {
    if secrets.is_empty() {
        return value;
    }
    match value {
        Value::String(s) => Value::String(redact_str(secrets, &s)),
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|v| redact(secrets, v)).collect())
        }
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            for (k, v) in map {
                let mut key = redact_str(secrets, &k);
                if out.contains_key(&key) {
                    let base = key.clone();
                    key = (2..)
                        .map(|n| format!("{base}#{n}"))
                        .find(|candidate| !out.contains_key(candidate))
                        .expect("an unused suffix");
                }
                out.insert(key, redact(secrets, v));
            }
            Value::Object(out)
        }
        other => other,
    }
}

/// Resolves step hosts and keeps only the addresses `--allow-hosts` allows
/// the name to reach; none left is a refusal, never a fallback.
pub(crate) struct AllowedResolver(pub AllowList);

/// The resolver's refusal, told apart from a failed lookup in [`classify`].
#[derive(Debug)]
struct AddressRefused(String);

impl std::fmt::Display for AddressRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AddressRefused {}

fn refused_address(host: &str, ip: std::net::IpAddr) -> String {
    format!(
        "{}: `{host}` resolves to {ip}, a {} address that --allow-hosts does not allow explicitly (add the address or its range, e.g. `{ip}`)",
        crate::codes::Code::HostNotAllowed,
        crate::flow::hosts::special_range(ip).unwrap_or("special")
    )
}

impl reqwest::dns::Resolve for AllowedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<std::net::SocketAddr> = addrs
                .iter()
                .copied()
                .filter(|a| allow.allows_address(&host, a.ip()))
                .collect();
            match (allowed.is_empty(), addrs.first()) {
                (true, Some(first)) => {
                    Err(Box::new(AddressRefused(refused_address(&host, first.ip())))
                        as Box<dyn std::error::Error + Send + Sync>)
                }
                _ => Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::host_label;

    #[test]
    fn host_labels_are_the_breakers_keys() {
        for (url, host) in [
            ("http://api.example.com/v1/{{ input.a }}", "api.example.com"),
            ("https://api.example.com:8443/x?y=1", "api.example.com"),
            ("http://user:pw@10.0.0.1:80/", "10.0.0.1"),
            ("http://[::1]:8080/path", "[::1]"),
            ("http://localhost", "localhost"),
        ] {
            assert_eq!(host_label(url), host, "{url}");
            let parsed = url::Url::parse(&url.replace("{{ input.a }}", "a")).unwrap();
            assert_eq!(parsed.host_str(), Some(host), "{url}");
        }
    }
}

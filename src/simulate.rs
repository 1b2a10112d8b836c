//! `baton simulate FLOW --sessions N`: sessions of made-up users that walk
//! a flow on a running server through the app-facing API, as an app would
//! (inputs filled within their validation, an action picked per screen,
//! some going back and some giving up), so funnels, metrics and the event
//! feed have something to show before real users come.

use std::fmt::Write as _;
use std::time::Duration;

use futures_util::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

use crate::remote::RemoteError;

/// What to simulate (the `baton simulate` arguments).
#[derive(Debug, Clone, clap::Args)]
pub struct Plan {
    pub flow: String,
    /// How many sessions (1–100000).
    #[arg(long, default_value_t = 200)]
    pub sessions: u32,
    /// Sessions walking at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Chance that a user gives up on a screen (the session stays where it is).
    #[arg(long, default_value_t = 0.15)]
    pub quit: f64,
    /// Chance that a user goes back on a screen.
    #[arg(long, default_value_t = 0.05)]
    pub back: f64,
    /// Same seed, same users and choices.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// How long to wait for a session's backend steps, in ms.
    #[arg(long, default_value_t = 5000)]
    pub step_wait_ms: u64,
    /// Most screens one session submits before it stops.
    #[arg(long, default_value_t = 200)]
    pub max_steps: u32,
    /// The server's base URL.
    #[arg(long, env = "BATON_URL", default_value = "http://127.0.0.1:8080")]
    pub server: String,
}

/// Most sessions one run starts.
pub const MAX_SESSIONS: u32 = 100_000;

const PLATFORMS: [&str; 3] = ["web", "ios", "android"];
const APP_VERSIONS: [&str; 3] = ["1.0.0", "1.4.2", "2.0.0"];

const FIELDS: &str = "id status screen { id terminal actions { id validates } errors { field code } \
    components { ...C ... on CardComponent { children { ...C ... on StackComponent { children { ...C } } } } \
    ... on StackComponent { children { ...C ... on CardComponent { children { ...C } } } } \
    ... on ListComponent { children { ...C } } } }";
const COMPONENT: &str = "fragment C on Component { id kind \
    ... on TextInputComponent { required maxLength } \
    ... on NumberInputComponent { required min max integer } \
    ... on EmailInputComponent { required } \
    ... on SelectComponent { required options { value } } \
    ... on CheckboxComponent { required } \
    ... on DateComponent { required minDate maxDate } }";

/// How one session ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Walk {
    Completed,
    Failed,
    /// The user gave up on a screen.
    Quit,
    /// Still waiting for a backend step (an approval, an event, a timer).
    Waiting,
    /// Could not get past a screen (its inputs refused what was filled in).
    Stuck,
}

impl Walk {
    fn as_str(self) -> &'static str {
        match self {
            Walk::Completed => "completed",
            Walk::Failed => "failed",
            Walk::Quit => "gave up",
            Walk::Waiting => "waiting on a backend step",
            Walk::Stuck => "stuck (inputs refused)",
        }
    }
}

struct Client {
    http: reqwest::Client,
    url: String,
}

impl Client {
    async fn call(
        &self,
        query: &str,
        vars: Value,
        token: Option<&str>,
    ) -> Result<Value, RemoteError> {
        let mut req = self
            .http
            .post(&self.url)
            .json(&json!({ "query": format!("{query} {COMPONENT}"), "variables": vars }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let body: Value = req
            .send()
            .await
            .map_err(|e| RemoteError(format!("cannot reach {}: {e} (hint: is `baton serve` running there? set --server or BATON_URL)", self.url)))?
            .json()
            .await
            .map_err(|e| RemoteError(format!("{} did not answer JSON: {e}", self.url)))?;
        crate::remote::data_or_error(body)
    }
}

/// Runs the plan; returns the summary to print.
pub async fn run(plan: &Plan) -> Result<String, RemoteError> {
    if plan.sessions == 0 || plan.sessions > MAX_SESSIONS {
        return Err(RemoteError(format!(
            "--sessions {} is outside 1–{MAX_SESSIONS}",
            plan.sessions
        )));
    }
    for (name, p) in [("--quit", plan.quit), ("--back", plan.back)] {
        if !(0.0..=1.0).contains(&p) {
            return Err(RemoteError(format!(
                "{name} {p} is not a probability (0–1)"
            )));
        }
    }
    let client = Client {
        http: reqwest::Client::new(),
        url: format!("{}/graphql", plan.server.trim_end_matches('/')),
    };
    // The first session alone: a wrong flow id or server stops the run at once.
    let first = walk(&client, plan, 0).await?;
    let rest: Vec<Result<Walk, RemoteError>> = futures_util::stream::iter(1..plan.sessions)
        .map(|i| walk(&client, plan, i))
        .buffer_unordered(plan.concurrency.clamp(1, 64))
        .collect()
        .await;
    let mut tally = std::collections::BTreeMap::new();
    *tally.entry(first).or_insert(0u32) += 1;
    let mut errors = Vec::new();
    for r in rest {
        match r {
            Ok(w) => *tally.entry(w).or_insert(0) += 1,
            Err(e) => errors.push(e.0),
        }
    }
    let mut out = format!(
        "{} sessions of `{}` on {}:\n",
        plan.sessions, plan.flow, plan.server
    );
    for (walk, n) in &tally {
        let _ = writeln!(out, "  {n:>6} {}", walk.as_str());
    }
    if !errors.is_empty() {
        let _ = writeln!(
            out,
            "  {:>6} failed to run; the first: {}",
            errors.len(),
            errors[0]
        );
    }
    let _ = writeln!(out, "See where they went: baton funnel {}", plan.flow);
    Ok(out)
}

async fn walk(client: &Client, plan: &Plan, i: u32) -> Result<Walk, RemoteError> {
    let mut rng =
        StdRng::seed_from_u64(plan.seed.wrapping_mul(1_000_003).wrapping_add(u64::from(i)));
    let platform = PLATFORMS[rng.random_range(0..PLATFORMS.len())];
    let app_version = APP_VERSIONS[rng.random_range(0..APP_VERSIONS.len())];
    let d = client
        .call(
            &format!(
                "mutation($i: StartFlowInput!) {{ startFlow(input: $i) {{ token {FIELDS} }} }}"
            ),
            json!({ "i": {
                "flowId": plan.flow,
                "user": { "id": format!("sim-{}-{i}", plan.seed) },
                "client": { "platform": platform, "appVersion": app_version, "locale": "en" },
            } }),
            None,
        )
        .await?;
    let token = d["startFlow"]["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut session = d["startFlow"].clone();
    let mut retried = false;
    for _ in 0..plan.max_steps {
        match session["status"].as_str() {
            Some("COMPLETED") => return Ok(Walk::Completed),
            Some("FAILED" | "EXPIRED") => return Ok(Walk::Failed),
            Some("WAITING") => {
                session = wait(client, plan, &session, &token).await?;
                if session["status"] == "WAITING" {
                    return Ok(Walk::Waiting);
                }
                continue;
            }
            _ => {}
        }
        let screen = &session["screen"];
        if screen["terminal"] == true {
            return Ok(Walk::Completed);
        }
        let refused = screen["errors"].as_array().is_some_and(|e| !e.is_empty());
        if refused && retried {
            return Ok(Walk::Stuck);
        }
        retried = refused;
        if !refused && rng.random_bool(plan.quit) {
            return Ok(Walk::Quit);
        }
        let screen_id = screen["id"].as_str().unwrap_or_default().to_owned();
        let d = if !refused && rng.random_bool(plan.back) {
            client
                .call(
                    &format!("mutation($s: ID!) {{ back(sessionId: $s) {{ {FIELDS} }} }}"),
                    json!({ "s": session["id"] }),
                    Some(&token),
                )
                .await
                .map(|d| d["back"].clone())
        } else {
            let actions = screen["actions"].as_array().cloned().unwrap_or_default();
            if actions.is_empty() {
                return Ok(Walk::Stuck);
            }
            // Mostly the first action (the way forward), sometimes another.
            let action = if rng.random_bool(0.8) {
                &actions[0]
            } else {
                &actions[rng.random_range(0..actions.len())]
            };
            let mut values = Map::new();
            fill(
                screen["components"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[]),
                &mut rng,
                &mut values,
            );
            client
                .call(
                    &format!("mutation($i: SubmitInput!) {{ submit(input: $i) {{ {FIELDS} }} }}"),
                    json!({ "i": {
                        "sessionId": session["id"], "screenId": screen_id,
                        "action": action["id"], "values": values,
                    } }),
                    Some(&token),
                )
                .await
                .map(|d| d["submit"].clone())
        };
        match d {
            Ok(s) => session = s,
            // Back on the first screen: the user stays and goes on.
            Err(e) if e.0.starts_with("NO_PREVIOUS_SCREEN") => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(Walk::Quit)
}

/// Polls a waiting session until it moves or `step_wait` passes.
async fn wait(
    client: &Client,
    plan: &Plan,
    session: &Value,
    token: &str,
) -> Result<Value, RemoteError> {
    let until = tokio::time::Instant::now() + Duration::from_millis(plan.step_wait_ms);
    let mut s = session.clone();
    while s["status"] == "WAITING" && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let d = client
            .call(
                &format!("query($s: ID!) {{ session(id: $s) {{ {FIELDS} }} }}"),
                json!({ "s": session["id"] }),
                Some(token),
            )
            .await?;
        s = d["session"].clone();
    }
    Ok(s)
}

/// Values every input of `components` accepts, by its validation.
fn fill(components: &[Value], rng: &mut StdRng, values: &mut Map<String, Value>) {
    for c in components {
        if let Some(children) = c["children"].as_array() {
            fill(children, rng, values);
        }
        let Some(id) = c["id"].as_str() else { continue };
        let value = match c["kind"].as_str() {
            Some("text_input") => {
                let max = c["maxLength"].as_u64().unwrap_or(40).max(1) as usize;
                let name = ["Ada", "Grace", "Alan", "Edsger", "Barbara"][rng.random_range(0..5)];
                Value::String(name.chars().take(max).collect())
            }
            Some("number_input") => {
                let min = c["min"].as_f64().unwrap_or(0.0);
                let max = c["max"].as_f64().unwrap_or(min + 1000.0).max(min);
                let n = rng.random_range(min..=max);
                if c["integer"] == true {
                    json!(n.round().clamp(min.ceil(), max.floor()) as i64)
                } else {
                    json!((n * 100.0).round() / 100.0)
                }
            }
            Some("email_input") => json!(format!("sim{}@example.com", rng.random_range(0..10_000))),
            Some("select") => match c["options"].as_array().filter(|o| !o.is_empty()) {
                Some(options) => options[rng.random_range(0..options.len())]["value"].clone(),
                None => continue,
            },
            Some("checkbox") => json!(c["required"] == true || rng.random_bool(0.5)),
            Some("date") => json!(
                c["minDate"]
                    .as_str()
                    .or(c["maxDate"].as_str())
                    .unwrap_or("2026-01-15")
            ),
            _ => continue,
        };
        values.insert(id.to_owned(), value);
    }
}

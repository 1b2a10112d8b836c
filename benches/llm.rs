//! What an `llm` step costs Baton per call: sequential flows whose only
//! step calls a fake OpenAI-compatible endpoint (a process of its own:
//! this binary again, with `--upstream`) that answers at once, once as an
//! `llm` step and once as an `http` step posting the same request to the
//! same endpoint, alternating rounds, on SQLite. The difference of the
//! medians is what the `llm` step adds to a plain call: rendering the
//! prompt, reading the reply, checking the answer against its schema and
//! recording tokens. Bounded: LLM_SECS seconds per round (default 3),
//! LLM_ROUNDS rounds (default 3).
//!
//! `cargo bench --bench llm`

mod support;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Duration;

use baton::app::Application;
use baton::config::ServeConfig;
use serde_json::json;
use support::{Upstream, measure, report};

const ANSWER: &str =
    r#"{"category": "billing", "urgency": 2, "summary": "Charged twice for one order"}"#;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if std::env::args().any(|a| a == "--upstream") {
        rt.block_on(serve_upstream());
        return;
    }
    rt.block_on(run());
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

async fn run() {
    let dur = Duration::from_secs(env("LLM_SECS", 3));
    let rounds = env("LLM_ROUNDS", 3);
    let upstream = Upstream::spawn();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("llm.db").display());
    let base = spawn_baton(&url, dir.path(), upstream.port).await;
    println!(
        "one step per flow, sequential, SQLite, {} s per round",
        dur.as_secs()
    );
    println!(
        "{:<10} {:<22} {:>10} {:>9} {:>9} {:>11}",
        "round", "step", "flows/s", "p50 ms", "p99 ms", "cpu us/flow"
    );
    let mut p50 = [Vec::new(), Vec::new()];
    for round in 1..=rounds {
        for (k, flow) in ["http_call", "llm_call"].into_iter().enumerate() {
            let base = base.clone();
            let start = move |i: usize, n: usize| {
                let base = base.clone();
                async move {
                    let q = "mutation($i: StartFlowInput!) { startFlow(input: $i) { status } }";
                    let v =
                        json!({ "i": { "flowId": flow, "user": { "id": format!("u{i}-{n}") } } });
                    (base, json!({ "query": q, "variables": v }), None)
                }
            };
            let r = measure(1, dur, start).await;
            assert_eq!(r.errors, 0, "{flow} had errors");
            report(&round.to_string(), flow, &r);
            p50[k].push(r.percentile_ms(0.5));
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (http, llm) = (median(&mut p50[0]), median(&mut p50[1]));
    println!(
        "median p50: http {http:.3} ms, llm {llm:.3} ms; the llm step adds {:.3} ms per call",
        llm - http
    );
}

async fn spawn_baton(url: &str, dir: &std::path::Path, upstream: u16) -> String {
    let flows = dir.join("flows");
    std::fs::create_dir_all(&flows).unwrap();
    let endpoint = format!("http://127.0.0.1:{upstream}/v1/chat/completions");
    let system = "Answer with only a JSON value that matches this JSON Schema.";
    let prompt = "Sort this request: {{ user.id }} was charged twice for one order";
    std::fs::write(
        flows.join("http_call.yaml"),
        format!(
            "id: http_call\nstart: a\nnodes:\n  - id: a\n    kind: http\n    method: POST\n    url: \"{endpoint}\"\n    body:\n      model: small\n      messages:\n        - {{ role: system, content: \"{system}\" }}\n        - {{ role: user, content: \"{prompt}\" }}\n    next: done\n  - {{ id: done, kind: end }}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        flows.join("llm_call.yaml"),
        format!(
            "id: llm_call\nstart: a\nnodes:\n  - id: a\n    kind: llm\n    model: small\n    prompt: \"{prompt}\"\n    schema:\n      type: object\n      properties:\n        category: {{ enum: [billing, account, bug, other] }}\n        urgency: {{ type: integer, minimum: 1, maximum: 5 }}\n        summary: {{ type: string, maxLength: 200 }}\n      required: [category, urgency, summary]\n    next: done\n  - {{ id: done, kind: end }}\n"
        ),
    )
    .unwrap();
    let mut config = ServeConfig::for_database(url, flows);
    config.step_budget_ms = 30_000;
    config.llm_url = Some(format!("http://127.0.0.1:{upstream}/v1"));
    config.llm_prices = vec!["small=0.15/0.6".into()];
    let app = Application::build(config).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    tokio::spawn(app.run_until(std::future::pending()));
    base
}

/// Answers every chat completion at once with a valid answer.
async fn serve_upstream() {
    let reply = json!({
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": ANSWER }, "finish_reason": "stop" }],
        "usage": { "prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150 },
    });
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move || {
            let reply = reply.clone();
            async move { axum::Json(reply) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("{}", listener.local_addr().unwrap().port());
    axum::serve(listener, app).await.unwrap();
}

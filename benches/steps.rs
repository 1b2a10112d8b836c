//! Backend-step benchmark: a flow whose start is a chain of three `http`
//! steps against a local upstream on 127.0.0.1 (a process of its own: this
//! binary again, with `--upstream`), so one `startFlow` runs the whole
//! chain (the step budget is long enough that it answers with the finished
//! flow). Reports flows completed per second at 64 concurrent
//! clients and the latency of one flow run sequentially, on SQLite and
//! (with BATON_TEST_POSTGRES_URL) PostgreSQL, each beside the bare chain
//! (`support::baseline`: the same three calls and four commits, no
//! engine) in the same process, as a floor. Bounded: STEPS_SECS seconds
//! per measurement (default 5).
//!
//! `cargo bench --bench steps`

mod support;

// The allocator the `baton` binary uses (src/main.rs), so the figures are
// the server's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Duration;

use baton::app::Application;
use baton::config::ServeConfig;
use serde_json::{Value, json};
use support::baseline::spawn_chain_baseline;
use support::{Upstream, backends, fresh_pg_schema, measure, report};

const CONCURRENT: usize = 64;

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

async fn run() {
    let secs: u64 = std::env::var("STEPS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let dur = Duration::from_secs(secs);
    let upstream = Upstream::spawn();
    println!(
        "3-step http chain per flow, {secs} s per measurement, {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!(
        "{:<10} {:<22} {:>10} {:>9} {:>9} {:>11}",
        "store", "clients", "flows/s", "p50 ms", "p99 ms", "cpu us/flow"
    );
    for (name, pg) in backends() {
        let dir = tempfile::tempdir().unwrap();
        let url = match &pg {
            None => format!("sqlite://{}", dir.path().join("steps.db").display()),
            Some(base) => fresh_pg_schema(base).await,
        };
        let bare_url = match &pg {
            None => format!("sqlite://{}", dir.path().join("bare.db").display()),
            Some(base) => fresh_pg_schema(base).await,
        };
        let baton = spawn_baton(&url, dir.path(), upstream.port).await;
        let bare = spawn_chain_baseline(
            &bare_url,
            16,
            format!("http://127.0.0.1:{}/step", upstream.port),
        )
        .await;
        let start = move |i: usize, n: usize| {
            let base = baton.clone();
            async move {
                let q = "mutation($i: StartFlowInput!) { startFlow(input: $i) { status screen { id } } }";
                let v =
                    json!({ "i": { "flowId": "chain3", "user": { "id": format!("u{i}-{n}") } } });
                (base, json!({ "query": q, "variables": v }), None)
            }
        };
        let chain = move |i: usize, n: usize| {
            let base = bare.clone();
            async move {
                let q = "mutation($u: String!) { chain(user: $u) }";
                (
                    base,
                    json!({ "query": q, "variables": { "u": format!("u{i}-{n}") } }),
                    None,
                )
            }
        };
        // Sanity: one flow runs to the end on each.
        let (base, body) = first_request(&start).await;
        assert_eq!(
            post(&base, &body).await["data"]["startFlow"]["status"],
            "COMPLETED",
            "the chain did not finish within the budget"
        );
        let (base, body) = first_request(&chain).await;
        assert_eq!(post(&base, &body).await["data"]["chain"], "COMPLETED");
        for (clients, label) in [
            (1, "1 (sequential)".to_owned()),
            (CONCURRENT, format!("{CONCURRENT} concurrent")),
        ] {
            let b = measure(clients, dur, start.clone()).await;
            report(name, &label, &b);
            let f = measure(clients, dur, chain.clone()).await;
            report(name, &format!("{label}, bare"), &f);
            println!(
                "{name:<10} {label}: Baton {:.0}% of the bare chain's flows/s, p50 {:.2}x, \
                 CPU {:.2}x",
                b.rate() / f.rate() * 100.0,
                b.percentile_ms(0.5) / f.percentile_ms(0.5),
                b.cpu_us() / f.cpu_us()
            );
        }
    }
}

/// The request `make` builds first, and where it goes.
async fn first_request<F, Fut>(make: &F) -> (String, Value)
where
    F: Fn(usize, usize) -> Fut,
    Fut: Future<Output = (String, Value, Option<String>)>,
{
    let (base, body, _) = make(0, usize::MAX).await;
    (base, body)
}

async fn post(base: &str, body: &Value) -> Value {
    reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .json(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn spawn_baton(url: &str, dir: &std::path::Path, upstream: u16) -> String {
    let flows = dir.join("flows");
    std::fs::create_dir_all(&flows).unwrap();
    let step = |id: &str, next: &str| {
        format!(
            "  - {{ id: {id}, kind: http, method: POST, url: \"http://127.0.0.1:{upstream}/step\", \
             body: {{ user: \"{{{{ user.id }}}}\" }}, next: {next} }}\n"
        )
    };
    let flow = format!(
        "id: chain3\nstart: a\nnodes:\n{}{}{}  - {{ id: done, kind: end }}\n",
        step("a", "b"),
        step("b", "c"),
        step("c", "done")
    );
    std::fs::write(flows.join("chain3.yaml"), flow).unwrap();
    let mut config = ServeConfig::for_database(url, flows);
    config.db_connections = 16;
    config.step_budget_ms = 30_000;
    let app = Application::build(config).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    tokio::spawn(app.run_until(std::future::pending()));
    base
}

/// The upstream's process: answers 200 with a small JSON body, after
/// printing its port.
async fn serve_upstream() {
    let app = axum::Router::new().route(
        "/step",
        axum::routing::post(|| async { axum::Json(json!({ "ok": true })) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("{}", listener.local_addr().unwrap().port());
    axum::serve(listener, app).await.unwrap();
}

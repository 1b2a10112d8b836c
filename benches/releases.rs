//! The release process's costs on the hot path and for the console:
//!
//! * `startFlow` (service call, SQLite store) on a flow with a 50% rollout
//!   against the same flow with none, side by side: the two alternate over
//!   `RELEASE_ROUNDS` rounds of `RELEASE_STARTS` starts each, and the
//!   median of the per-round ratios is reported;
//! * the compatibility report of the loan flow over 200 cohorts (pure,
//!   median of 50 runs).
//!
//! `cargo bench --bench releases`

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use baton::engine::ClientInfo;
use baton::engine::Limits;
use baton::engine::compat::{self, Cohort};
use baton::flags::{FlagSet, FlagStore};
use baton::flow::compile::CompiledFlow;
use baton::service::registry::Registry;
use baton::service::{Baton, StartRequest};
use baton::store::{Store, StoreOptions};
use serde_json::json;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(rollout());
    compat_report();
}

const FLOW: &str = r#"
id: FLOW_ID
start: hello
nodes:
  - id: hello
    kind: screen
    title: TITLE
    components: [{ kind: text, text: "Welcome" }]
    actions: [{ id: next, next: done }]
  - { id: done, kind: end }
"#;

async fn rollout() {
    let rounds = env_or("RELEASE_ROUNDS", 9);
    let starts = env_or("RELEASE_STARTS", 400);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = Store::connect(&url, StoreOptions::default()).await.unwrap();
    let flows = dir.path().join("flows");
    std::fs::create_dir(&flows).unwrap();
    for id in ["plain", "rolled"] {
        let text = FLOW.replace("FLOW_ID", id).replace("TITLE", "One");
        std::fs::write(flows.join(format!("{id}.yaml")), text).unwrap();
    }
    let registry = Registry::new(store.clone());
    registry.load_dir(&flows).await.unwrap();
    let baton = Baton::new(
        store,
        registry,
        Limits::default(),
        FlagStore::new(FlagSet::default()),
    );
    // `rolled` gets a second version at 50%.
    let v2 = FLOW.replace("FLOW_ID", "rolled").replace("TITLE", "Two");
    match baton
        .save_draft("bench", "rolled", &v2, Some("v2"))
        .await
        .unwrap()
    {
        baton::service::lifecycle::SaveDraft::Saved { .. } => {}
        other => panic!("draft refused: {other:?}"),
    }
    baton
        .publish_flow("bench", "rolled", 2, "half", Some(50), None)
        .await
        .unwrap();

    let run = |flow: &'static str, round: usize| {
        let baton = baton.clone();
        async move {
            let began = Instant::now();
            let mut on_v2 = 0;
            for i in 0..starts {
                let (view, _) = baton
                    .start_flow(StartRequest {
                        mock: None,
                        flow_id: flow.into(),
                        user_id: format!("u-{round}-{i}"),
                        user_attributes: json!({}),
                        client: ClientInfo::default(),
                        bound_to: None,
                    })
                    .await
                    .unwrap();
                on_v2 += usize::from(view.flow_version == 2);
            }
            (began.elapsed(), on_v2)
        }
    };
    // Warm up both.
    run("plain", 0).await;
    run("rolled", 0).await;
    let mut ratios = Vec::new();
    let (mut plain_total, mut rolled_total, mut on_v2) = (Duration::ZERO, Duration::ZERO, 0);
    for round in 1..=rounds {
        let (plain, _) = run("plain", round).await;
        let (rolled, v2) = run("rolled", round).await;
        plain_total += plain;
        rolled_total += rolled;
        on_v2 += v2;
        ratios.push(rolled.as_secs_f64() / plain.as_secs_f64());
    }
    ratios.sort_by(|a, b| a.total_cmp(b));
    let per = |d: Duration| d.as_secs_f64() * 1e6 / (rounds * starts) as f64;
    println!(
        "startFlow, {rounds} rounds x {starts} starts, SQLite: no rollout {:.1} us, 50% rollout {:.1} us \
         ({:.1}% of sessions on the rollout version); median ratio rollout/none {:.3}",
        per(plain_total),
        per(rolled_total),
        100.0 * on_v2 as f64 / (rounds * starts) as f64,
        ratios[ratios.len() / 2]
    );
}

fn compat_report() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/flows/loan.yaml")).unwrap();
    let def = baton::flow::load::parse_flow(std::path::Path::new("loan.yaml"), &text).unwrap();
    let flow = CompiledFlow::compile(def, 1, "bench".into()).unwrap();
    let kinds = [
        "text",
        "heading",
        "image",
        "markdown",
        "button",
        "text_input",
        "number_input",
        "email_input",
        "select",
        "checkbox",
        "date",
        "list",
        "card",
        "stack",
    ];
    // 200 cohorts: 2 platforms x 10 versions x 10 capability sets.
    let mut cohorts = Vec::new();
    for platform in ["ios", "android"] {
        for major in 0..10 {
            for drop in 0..10 {
                let caps: Vec<String> = kinds
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| drop == 0 || *i != drop)
                    .map(|(_, k)| k.to_string())
                    .collect();
                cohorts.push(Cohort {
                    platform: Some(platform.into()),
                    app_version: Some(format!("{}.{}.0", 3 + major / 2, major % 2)),
                    capabilities: Some(caps),
                });
            }
        }
    }
    let mut times = Vec::new();
    let mut blocking = 0;
    for _ in 0..50 {
        let began = Instant::now();
        let r = compat::report(&flow, &cohorts);
        times.push(began.elapsed());
        blocking = r.iter().filter(|c| c.blocking()).count();
    }
    times.sort();
    println!(
        "compatibility report, loan flow, {} cohorts: median {:.2} ms ({blocking} cohorts blocking)",
        cohorts.len(),
        times[times.len() / 2].as_secs_f64() * 1e3
    );
}

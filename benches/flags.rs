//! Flag evaluation throughput, in process and over OFREP.
//!
//! In process: a flag whose targeting is a condition plus `fractional` (the
//! shape the issue states its goal for), one whose targeting is an `and` of
//! four comparisons, a static flag, all 20 flags of a set at once, and the
//! per-request cost of converting a context. Over OFREP: one flag and the
//! bulk endpoint for 20 flags, round trips to a real Baton on loopback
//! (client time included).
//!
//! What flags add to a `submit`: the onboarding flow (one flag, the
//! onboarding-headline experiment) submitted in process by the engine
//! alone, and with the service's flag step — the flag evaluated for the
//! session's user and the experiment step for a session that has its
//! variant (no store access) — around it.
//!
//! `cargo bench --bench flags`
//!
//! For instruction counts, `BATON_FLAGS_COUNT=<flag key or "all">:<n>`
//! makes the binary evaluate `n` times and exit instead of benchmarking;
//! run it under `valgrind --tool=callgrind` with two values of `n`, and the
//! difference divided by the difference in `n` is the cost of one
//! evaluation without the setup. The key `and-rule` evaluates the `and` of
//! four comparisons as a bare rule (`Rule::matches_prepared`, members read
//! by name), not as a flag: what a JsonLogic engine does with it. The loop
//! also prints its own time per evaluation (to stderr), the same loop as
//! `benches/jsonlogic-js/bench.mjs` runs for the compiled JS engine.

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use baton::flags::{EvaluationContext, FlagSet, load_str};
use baton::rules::{PreparedData, Rule};
use divan::Bencher;
use serde_json::{Map, Value, json};

fn main() {
    if let Ok(spec) = std::env::var("BATON_FLAGS_COUNT") {
        count(&spec);
        return;
    }
    divan::main();
}

/// The fixed-count loop for callgrind (see the module docs).
fn count(spec: &str) {
    let (key, n) = spec
        .split_once(':')
        .expect("BATON_FLAGS_COUNT=<key|all>:<n>");
    let n: usize = n.parse().expect("a count");
    let set = flag_set();
    let ctxs = contexts();
    let rule = Rule::compile(&and_of_four_rule()).unwrap();
    let data: Vec<PreparedData> = (0..256)
        .map(|i| PreparedData::new(&Value::Object(attributes(i))).unwrap())
        .collect();
    let mut sink = 0usize;
    let start = Instant::now();
    for i in 0..n {
        let ctx = &ctxs[i & 255];
        sink += match key {
            "all" => set.evaluate_all(ctx).len(),
            "and-rule" => usize::from(rule.matches_prepared(&data[i & 255]).unwrap()),
            key => set.evaluate(black_box(key), ctx).reason as usize,
        };
    }
    let ns = start.elapsed().as_nanos() as f64 / n as f64;
    eprintln!("{key}: {ns:.1} ns per evaluation ({:.1} M/s)", 1e3 / ns);
    println!("{sink}");
}

/// The `and` of four comparisons; `benches/jsonlogic-js/bench.mjs` has the
/// same rule and contexts.
fn and_of_four_rule() -> Value {
    json!({"and": [
        {">=": [{"var": "age"}, 18]},
        {"==": [{"var": "platform"}, "android"]},
        {"in": [{"var": "tier"}, ["gold", "platinum"]]},
        {"<": [{"var": "age"}, 65]}
    ]})
}

/// 20 flags: the two measured ones, a static one and 17 mixed others.
fn definitions() -> Value {
    let mut flags = Map::new();
    flags.insert(
        "new-signup-screen".into(),
        json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
        "targeting": {"if": [
            {"==": [{"var": "platform"}, "android"]},
            {"fractional": [["on", 20], ["off", 80]]},
            null
        ]}}),
    );
    flags.insert(
        "pro-banner".into(),
        json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
               "targeting": {"if": [and_of_four_rule(), "on", "off"]}}),
    );
    flags.insert(
        "max-steps".into(),
        json!({"state": "ENABLED", "variants": {"three": 3, "five": 5}, "defaultVariant": "five"}),
    );
    for i in 0..17 {
        let def = match i % 4 {
            0 => {
                json!({"state": "ENABLED", "variants": {"a": "A", "b": "B"}, "defaultVariant": "a",
                        "targeting": {"fractional": [["a", 50], ["b", 50]]}})
            }
            1 => {
                json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
                        "targeting": {"if": [{"sem_ver": [{"var": "app_version"}, ">=", "5.2.0"]}, "on", null]}})
            }
            2 => {
                json!({"state": "DISABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"})
            }
            _ => {
                json!({"state": "ENABLED", "variants": {"x": {"limit": 10}, "y": {"limit": 20}}, "defaultVariant": "x",
                        "targeting": {"if": [{"starts_with": [{"var": "locale"}, "de"]}, "y", "x"]}})
            }
        };
        flags.insert(format!("flag-{i:02}"), def);
    }
    json!({ "flags": flags, "metadata": {"flagSetId": "bench"} })
}

fn flag_set() -> FlagSet {
    let load = load_str(Path::new("bench.flagd.json"), &definitions().to_string());
    assert!(load.issues.is_empty(), "{:?}", load.issues);
    assert_eq!(load.set.len(), 20);
    load.set
}

fn attributes(i: usize) -> Map<String, Value> {
    json!({
        "targetingKey": format!("user-{i}"),
        "platform": "android",
        "app_version": "5.3.1",
        "locale": "de-DE",
        "age": 34,
        "tier": "gold",
        "email": format!("user-{i}@example.com"),
    })
    .as_object()
    .unwrap()
    .clone()
}

/// 256 users, so consecutive evaluations hash different keys.
fn contexts() -> Vec<EvaluationContext> {
    (0..256)
        .map(|i| EvaluationContext::from_map(&attributes(i)).unwrap())
        .collect()
}

fn bench_flag(b: Bencher, key: &str) {
    let set = flag_set();
    let ctxs = contexts();
    assert!(!set.evaluate(key, &ctxs[0]).is_error());
    let mut i = 0usize;
    b.bench_local(|| {
        i = i.wrapping_add(1);
        set.evaluate(black_box(key), &ctxs[i & 255]).reason
    });
}

/// The issue's goal shape: `if` + condition + `fractional`.
#[divan::bench]
fn condition_plus_fractional(b: Bencher) {
    bench_flag(b, "new-signup-screen");
}

/// The `and` of four comparisons (the JS JsonLogic comparison rule).
#[divan::bench]
fn and_of_four_comparisons(b: Bencher) {
    bench_flag(b, "pro-banner");
}

#[divan::bench]
fn static_flag(b: Bencher) {
    bench_flag(b, "max-steps");
}

/// All 20 flags for one context (what a bulk OFREP request evaluates).
#[divan::bench]
fn all_20_flags(b: Bencher) {
    let set = flag_set();
    let ctxs = contexts();
    let mut i = 0usize;
    b.bench_local(|| {
        i = i.wrapping_add(1);
        set.evaluate_all(&ctxs[i & 255]).len()
    });
}

/// Converting a 7-attribute context, once per request.
#[divan::bench]
fn prepare_context(b: Bencher) {
    let attrs = attributes(7);
    b.bench_local(|| EvaluationContext::from_map(black_box(&attrs)).unwrap());
}

struct Server {
    rt: tokio::runtime::Runtime,
    base: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

fn server() -> Server {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows");
    std::fs::create_dir(&flows).unwrap();
    let flags = dir.path().join("flags");
    std::fs::create_dir(&flags).unwrap();
    std::fs::write(flags.join("bench.flagd.json"), definitions().to_string()).unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let mut config = baton::config::ServeConfig::for_database(url, flows);
    config.ofrep_keys = vec![baton::config::ClientKey::new("bench-key")];
    let base = rt.block_on(async {
        let app = baton::app::Application::build(config).await.unwrap();
        let base = format!("http://{}", app.local_addr());
        tokio::spawn(app.run_until(std::future::pending()));
        base
    });
    Server {
        rt,
        base,
        client: reqwest::Client::new(),
        _dir: dir,
    }
}

fn ofrep(b: Bencher, path: &str) {
    let s = server();
    let url = format!("{}{path}", s.base);
    let body = json!({ "context": attributes(3) }).to_string();
    let call = || {
        s.rt.block_on(async {
            let resp = s
                .client
                .post(&url)
                .bearer_auth("bench-key")
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            resp.bytes().await.unwrap().len()
        })
    };
    call();
    b.bench_local(call);
}

/// One flag over OFREP: a full HTTP round trip on loopback.
#[divan::bench(sample_count = 200)]
fn ofrep_single_flag_http(b: Bencher) {
    ofrep(b, "/ofrep/v1/evaluate/flags/new-signup-screen");
}

/// Bulk OFREP for 20 flags (ETag computed, no `If-None-Match`).
#[divan::bench(sample_count = 200)]
fn ofrep_bulk_20_flags_http(b: Bencher) {
    ofrep(b, "/ofrep/v1/evaluate/flags");
}

struct SubmitFixture {
    baton: baton::service::Baton,
    flow: std::sync::Arc<baton::flow::compile::CompiledFlow>,
    state: baton::engine::SessionState,
    _rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

/// A started onboarding session on the repository's flows, flags and
/// experiments.
fn submit_fixture() -> SubmitFixture {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let mut config = baton::config::ServeConfig::for_database(url, repo.join("flows"));
    config.flags = repo.join("flags");
    config.experiments = repo.join("experiments");
    let (baton, view) = rt.block_on(async {
        let app = baton::app::Application::build(config).await.unwrap();
        let baton = app.baton().clone();
        let (view, _) = baton
            .start_flow(baton::service::StartRequest {
                bound_to: None,
                mock: None,
                flow_id: "onboarding".into(),
                user_id: "u-1".into(),
                user_attributes: json!({"plan": "pro"}),
                client: baton::engine::ClientInfo {
                    platform: Some("web".into()),
                    app_version: Some("6.1".into()),
                    locale: Some("en-GB".into()),
                    capabilities: None,
                },
            })
            .await
            .unwrap();
        (baton, view)
    });
    let (record, flow) = rt.block_on(async {
        let record = baton.store().session(&view.id).await.unwrap().unwrap();
        let flow = baton
            .registry()
            .version("onboarding", view.flow_version)
            .await
            .unwrap();
        (record, flow)
    });
    let state: baton::engine::SessionState = serde_json::from_value(record.state).unwrap();
    assert!(state.context["experiments"]["onboarding-headline"].is_object());
    SubmitFixture {
        baton,
        flow,
        state,
        _rt: rt,
        _dir: dir,
    }
}

/// The engine's part of `submit` on the welcome screen: the baseline.
#[divan::bench]
fn submit_engine_only(b: Bencher) {
    let f = submit_fixture();
    let limits = baton::engine::Limits::default();
    let no_values = Map::new();
    b.bench_local(|| {
        baton::engine::submit(&f.flow, &f.state, "welcome", "next", &no_values, &limits)
            .unwrap()
            .events
            .len()
    });
}

/// The same with what the service adds for a flow that reads a flag of a
/// running experiment.
#[divan::bench]
fn submit_with_flag_and_experiment(b: Bencher) {
    use futures_util::FutureExt;
    let f = submit_fixture();
    let limits = baton::engine::Limits::default();
    let experiments = f.baton.experiments();
    let set = f.baton.flags().current();
    let no_values = Map::new();
    b.bench_local(|| {
        let mut st = f.state.clone();
        st.context["flags"] = Value::Object(f.baton.evaluate_flags(&f.flow, &st.context).unwrap());
        let prepared = experiments
            .prepare(f.baton.store(), &set, &f.flow, &mut st, 0)
            .now_or_never()
            .expect("a session with its variant needs no store")
            .unwrap();
        assert!(prepared.applies());
        let mut advance =
            baton::engine::submit(&f.flow, &st, "welcome", "next", &no_values, &limits).unwrap();
        experiments.record(&f.flow, &prepared, &mut advance).len() + advance.events.len()
    });
}

//! HTTP load benchmark: `submit` on a running Baton against a bare axum +
//! async-graphql server whose mutation does one INSERT on the same store,
//! side by side in one run, on SQLite and (with BATON_TEST_POSTGRES_URL)
//! PostgreSQL. Bounded: each measurement runs LOAD_SECS seconds (default 5).
//!
//! A third server, Baton without the funnel aggregator, shows what keeping
//! the rollups costs `submit`. Last, a replayed `submit` (a retry under a
//! key already answered) and the retry of an older key, on a screen the
//! session came back to, against a `session` query.
//!
//! `cargo bench --bench load`; `LOAD_ROUNDS=n` alternates the servers
//! n times and reports the median ratios.

mod support;

// The allocator the `baton` binary uses (src/main.rs), so the figures are
// the server's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::Duration;

use baton::app::Application;
use baton::config::ServeConfig;
use serde_json::{Value, json};
use support::baseline::spawn_baseline;
use support::{backends, env_or, measure, report, start_sessions, store_url, tap_submit};

const CONCURRENCY: usize = 16;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let secs: u64 = env_or("LOAD_SECS", 5);
    let dur = Duration::from_secs(secs);
    println!(
        "{CONCURRENCY} connections, {secs} s per measurement, {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!(
        "{:<10} {:<22} {:>10} {:>9} {:>9} {:>11}",
        "store", "server", "req/s", "p50 ms", "p99 ms", "cpu us/req"
    );
    let rounds = env_or("LOAD_ROUNDS", 1usize).max(1);
    for (name, pg) in backends() {
        let dir = tempfile::tempdir().unwrap();
        let url = async |tag: &str| store_url(pg.as_deref(), dir.path(), tag).await;
        let baseline = spawn_baseline(&url("baseline").await, CONCURRENCY as u32, None).await;
        let (baton, baton_service) = spawn_baton(&url("baton").await, true).await;
        let sessions = Arc::new(start_sessions(&baton, "load", CONCURRENCY, CONCURRENCY).await);
        // The same server without the funnel aggregator: what keeping the
        // rollups costs `submit`.
        let (plain, plain_service) = spawn_baton(&url("plain").await, false).await;
        let plain_sessions =
            Arc::new(start_sessions(&plain, "load", CONCURRENCY, CONCURRENCY).await);
        // Rounds alternate the two servers, so a change in the machine's
        // speed during the run falls on both; the ratio of each round is
        // what to read.
        let mut ratios = Vec::new();
        let mut drains = Vec::new();
        let mut plain_submits = 0.0;
        // Each window starts from a checkpoint (`support::checkpoint`).
        let admin = match &pg {
            Some(base) => Some(sqlx::PgPool::connect(base).await.unwrap()),
            None => None,
        };
        let checkpoint = async || support::checkpoint(admin.as_ref()).await;
        for round in 0..rounds {
            checkpoint().await;
            let base = baseline.clone();
            let bare = measure(CONCURRENCY, dur, move |i, n| {
                let base = base.clone();
                async move { (base, json!({ "query": "mutation($id: String!) { insert(id: $id) }", "variables": { "id": format!("{round}-{i}-{n}") } }), None) }
            })
            .await;
            report(name, "bare insert baseline", &bare);
            // Which of the two goes first alternates too, so neither always
            // runs while the other's writes are still being checkpointed.
            checkpoint().await;
            // What the aggregator left to do when a window ended is done
            // before the next one starts, so it is not counted against
            // the server measured next; how long that took shows how far
            // behind the load it fell.
            let drain = async || {
                let t = std::time::Instant::now();
                while !baton_service.rollups().catch_up(100).await.unwrap() {}
                t.elapsed().as_secs_f64() * 1000.0
            };
            let (submit, without) = if round % 2 == 0 {
                let submit = measure_submits(&baton, &sessions, round, dur).await;
                report(name, "baton submit", &submit);
                drains.push(drain().await);
                checkpoint().await;
                let without = measure_submits(&plain, &plain_sessions, round, dur).await;
                report(name, "baton, no rollups", &without);
                (submit, without)
            } else {
                let without = measure_submits(&plain, &plain_sessions, round, dur).await;
                report(name, "baton, no rollups", &without);
                checkpoint().await;
                let submit = measure_submits(&baton, &sessions, round, dur).await;
                report(name, "baton submit", &submit);
                drains.push(drain().await);
                (submit, without)
            };
            plain_submits += without.rate() * dur.as_secs_f64();
            ratios.push((
                submit.rate() / bare.rate(),
                submit.percentile_ms(0.99) / bare.percentile_ms(0.99),
                submit.rate() / without.rate(),
            ));
        }
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        println!(
            "{name}: submit / baseline over {rounds} round(s): req/s {:.0}% (median; rounds {}), p99 {:.2}x (median)",
            100.0 * median(ratios.iter().map(|r| r.0).collect()),
            ratios
                .iter()
                .map(|r| format!("{:.0}%", 100.0 * r.0))
                .collect::<Vec<_>>()
                .join(" "),
            median(ratios.iter().map(|r| r.1).collect()),
        );
        // What the aggregator spends per submit, on its own: the server
        // without it folds the events its submits left, at once.
        // Counting the database's CPU too (the machine is otherwise idle
        // then), and what that is of the machine at `submit`'s rate: the
        // side-by-side ratio below swings by more than that from round to
        // round on a shared machine.
        let t = std::time::Instant::now();
        let cpu = support::machine_cpu();
        while !plain_service.rollups().catch_up(100).await.unwrap() {}
        let took = t.elapsed().as_secs_f64();
        let cpu = support::machine_cpu().saturating_sub(cpu).as_secs_f64();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let rate = plain_submits / (rounds as f64 * dur.as_secs_f64());
        println!(
            "{name}: the aggregator folds {plain_submits:.0} submits' events in {took:.2} s, \
             {:.1} us of machine CPU per submit: {:.1}% of the machine at {rate:.0} submits/s",
            1e6 * cpu / plain_submits,
            100.0 * cpu / plain_submits * rate / cores,
        );
        println!(
            "{name}: submit with the funnel aggregator / without: req/s {:.1}% (median; rounds {}); \
             its backlog at the end of a window took {:.0} ms to fold (median)",
            100.0 * median(ratios.iter().map(|r| r.2).collect()),
            ratios
                .iter()
                .map(|r| format!("{:.1}%", 100.0 * r.2))
                .collect::<Vec<_>>()
                .join(" "),
            median(drains),
        );
        // A client's retry of a submit it sent (its answer was lost) against
        // reading the session, side by side.
        let read = measure_sessions(&baton, &sessions, dur).await;
        report(name, "baton session query", &read);
        let replay = measure_replays(&baton, &sessions, dur).await;
        report(name, "baton submit replayed", &replay);
        against_query(name, "a replayed submit", &replay, &read);
        // The retry of an older submit, on a screen the session has come
        // back to (`tap` loops to itself), so the engine would take it again.
        let older = measure_older_replays(&baton, &sessions, dur).await;
        report(name, "baton submit, older key replayed", &older);
        against_query(name, "an older key replayed", &older, &read);
    }
}

/// `what`'s rate and p99 as a share of the `session` query's.
fn against_query(name: &str, what: &str, m: &support::Measured, read: &support::Measured) {
    println!(
        "{name}: {what} / a session query: req/s {:.0}%, p99 {:.2}x",
        100.0 * m.rate() / read.rate(),
        m.percentile_ms(0.99) / read.percentile_ms(0.99),
    );
}

/// `submit` on `sessions` of the server at `base`, a fresh idempotency key
/// per request.
async fn measure_submits(
    base: &str,
    sessions: &Arc<Vec<(String, String)>>,
    round: usize,
    dur: Duration,
) -> support::Measured {
    measure_on(base, sessions, dur, move |id, _, n| {
        tap_submit(id, format!("k{round}-{n}"), n)
    })
    .await
}

/// The same submit again and again on each session, under one key: all
/// but a worker's first are replays.
async fn measure_replays(
    base: &str,
    sessions: &Arc<Vec<(String, String)>>,
    dur: Duration,
) -> support::Measured {
    measure_on(base, sessions, dur, |id, i, _| {
        tap_submit(id, format!("replay-{i}"), 1)
    })
    .await
}

/// Each worker's session takes a submit under one key and then one under
/// another; then the first is sent again and again.
async fn measure_older_replays(
    base: &str,
    sessions: &Arc<Vec<(String, String)>>,
    dur: Duration,
) -> support::Measured {
    let client = reqwest::Client::new();
    for (i, (id, token)) in sessions.iter().take(CONCURRENCY).enumerate() {
        for (key, n) in [(format!("older-{i}"), 1), (format!("newer-{i}"), 2)] {
            let body = tap_submit(id, key, n);
            if let Some(failure) = support::graphql_failure(&client, base, &body, Some(token)).await
            {
                panic!("preparing the older-key replays: {failure}");
            }
        }
    }
    measure_on(base, sessions, dur, move |id, i, _| {
        tap_submit(id, format!("older-{i}"), 1)
    })
    .await
}

/// `session` on each worker's session: the screen it shows now.
async fn measure_sessions(
    base: &str,
    sessions: &Arc<Vec<(String, String)>>,
    dur: Duration,
) -> support::Measured {
    measure_on(base, sessions, dur, |id, _, _| {
        json!({ "query": "query($id: ID!) { session(id: $id) { status screen { id title } } }",
            "variables": { "id": id } })
    })
    .await
}

/// Worker `i` sends `body(session id, i, n)` as its `n`-th request, on
/// session `i` with its token.
async fn measure_on(
    base: &str,
    sessions: &Arc<Vec<(String, String)>>,
    dur: Duration,
    body: impl Fn(&str, usize, usize) -> Value + Send + Sync + Clone + 'static,
) -> support::Measured {
    let (base, sessions) = (base.to_owned(), sessions.clone());
    measure(CONCURRENCY, dur, move |i, n| {
        let base = base.clone();
        let (id, token) = sessions[i].clone();
        let body = body(&id, i, n);
        async move { (base, body, Some(token)) }
    })
    .await
}

async fn spawn_baton(url: &str, rollups: bool) -> (String, baton::service::Baton) {
    let flows = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/flows");
    let mut config = ServeConfig::for_database(url, flows);
    if !rollups {
        config.rollup_poll_ms = 0;
    }
    config.db_connections = CONCURRENCY as u32;
    // The bench measures the server, not its limits: all its connections
    // come from one address.
    config.rate_limit_per_address = 0;
    config.rate_limit_per_session = 0;
    let app = Application::build(config).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let service = app.baton().clone();
    tokio::spawn(app.run_until(std::future::pending()));
    (base, service)
}

//! HTTP load benchmark: `submit` on a running Baton against a bare axum +
//! async-graphql server whose mutation does one INSERT on the same store,
//! side by side in one run, on SQLite and (with BATON_TEST_POSTGRES_URL)
//! PostgreSQL. Bounded: each measurement runs LOAD_SECS seconds (default 5).
//!
//! A third server, Baton without the funnel aggregator, shows what keeping
//! the rollups costs `submit`.
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

use async_graphql::{EmptySubscription, Object, Schema};
use baton::app::Application;
use baton::config::ServeConfig;
use serde_json::{Value, json};
use support::{backends, fresh_pg_schema, measure, report};

const CONCURRENCY: usize = 16;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let secs: u64 = std::env::var("LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
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
    let rounds: usize = std::env::var("LOAD_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1);
    for (name, pg) in backends() {
        let dir = tempfile::tempdir().unwrap();
        let url = async |tag: &str| match &pg {
            None => format!(
                "sqlite://{}",
                dir.path().join(format!("{tag}.db")).display()
            ),
            Some(base) => fresh_pg_schema(base).await,
        };
        let baseline = spawn_baseline(&url("baseline").await).await;
        let (baton, _) = spawn_baton(&url("baton").await, true).await;
        let sessions = Arc::new(start_sessions(&baton).await);
        // The same server without the funnel aggregator: what keeping the
        // rollups costs `submit`.
        let (plain, plain_service) = spawn_baton(&url("plain").await, false).await;
        let plain_sessions = Arc::new(start_sessions(&plain).await);
        // Rounds alternate the two servers, so a change in the machine's
        // speed during the run falls on both; the ratio of each round is
        // what to read.
        let mut ratios = Vec::new();
        let mut plain_submits = 0.0;
        for round in 0..rounds {
            let base = baseline.clone();
            let bare = measure(CONCURRENCY, dur, move |i, n| {
                let base = base.clone();
                async move { (base, json!({ "query": "mutation($id: String!) { insert(id: $id) }", "variables": { "id": format!("{round}-{i}-{n}") } }), None) }
            })
            .await;
            report(name, "bare insert baseline", &bare);
            let submit = measure_submits(&baton, &sessions, round, dur).await;
            report(name, "baton submit", &submit);
            let without = measure_submits(&plain, &plain_sessions, round, dur).await;
            plain_submits += without.rate() * dur.as_secs_f64();
            report(name, "baton, no rollups", &without);
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
        let t = std::time::Instant::now();
        while !plain_service.rollups().catch_up(100).await.unwrap() {}
        let took = t.elapsed().as_secs_f64();
        println!(
            "{name}: the aggregator folds {:.0} submits' events in {took:.2} s: {:.1} us per submit",
            plain_submits,
            1e6 * took / plain_submits,
        );
        println!(
            "{name}: submit with the funnel aggregator / without: req/s {:.1}% (median; rounds {})",
            100.0 * median(ratios.iter().map(|r| r.2).collect()),
            ratios
                .iter()
                .map(|r| format!("{:.1}%", 100.0 * r.2))
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
}

/// `submit` on `sessions` of the server at `base`, a fresh idempotency key
/// per request.
async fn measure_submits(
    base: &str,
    sessions: &Arc<Vec<(String, String)>>,
    round: usize,
    dur: Duration,
) -> support::Measured {
    let (base, sessions) = (base.to_owned(), sessions.clone());
    measure(CONCURRENCY, dur, move |i, n| {
        let base = base.clone();
        let (id, token) = sessions[i].clone();
        async move {
            let q = "mutation($i: SubmitInput!) { submit(input: $i) { status screen { id title } } }";
            let v = json!({ "i": { "sessionId": id, "screenId": "tap", "action": "next", "values": { "n": n }, "idempotencyKey": format!("k{round}-{n}") } });
            (base, json!({ "query": q, "variables": v }), Some(token))
        }
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

async fn start_sessions(base: &str) -> Vec<(String, String)> {
    let client = reqwest::Client::new();
    let mut out = Vec::new();
    for i in 0..CONCURRENCY {
        let q = "mutation($i: StartFlowInput!) { startFlow(input: $i) { id token } }";
        let v = json!({ "i": { "flowId": "tap", "user": { "id": format!("load-{i}") } } });
        let r: Value = client
            .post(format!("{base}/graphql"))
            .json(&json!({ "query": q, "variables": v }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let s = &r["data"]["startFlow"];
        out.push((
            s["id"].as_str().unwrap().to_string(),
            s["token"].as_str().unwrap().to_string(),
        ));
    }
    out
}

// ---- the bare baseline: axum + async-graphql, one INSERT per mutation ----

enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

struct BaselineMutation;

#[Object]
impl BaselineMutation {
    async fn insert(
        &self,
        ctx: &async_graphql::Context<'_>,
        id: String,
    ) -> async_graphql::Result<bool> {
        let sql = "INSERT INTO baseline (id, payload) VALUES ($1, $2)";
        let payload = r#"{"kind":"submitted"}"#;
        match ctx.data_unchecked::<Pool>() {
            Pool::Sqlite(p) => {
                sqlx::query(sql).bind(&id).bind(payload).execute(p).await?;
            }
            Pool::Postgres(p) => {
                sqlx::query(sql).bind(&id).bind(payload).execute(p).await?;
            }
        }
        Ok(true)
    }
}

struct BaselineQuery;

#[Object]
impl BaselineQuery {
    async fn ok(&self) -> bool {
        true
    }
}

async fn spawn_baseline(url: &str) -> String {
    use std::str::FromStr;
    let pool = if url.starts_with("sqlite:") {
        // The same SQLite settings Baton's store uses.
        let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)
            .unwrap()
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let p = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(CONCURRENCY as u32)
            .connect_with(opts)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE baseline (id TEXT PRIMARY KEY, payload TEXT NOT NULL)")
            .execute(&p)
            .await
            .unwrap();
        Pool::Sqlite(p)
    } else {
        let p = sqlx::postgres::PgPoolOptions::new()
            .max_connections(CONCURRENCY as u32)
            .connect(url)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE baseline (id TEXT PRIMARY KEY, payload TEXT NOT NULL)")
            .execute(&p)
            .await
            .unwrap();
        Pool::Postgres(p)
    };
    let schema = Schema::build(BaselineQuery, BaselineMutation, EmptySubscription)
        .data(pool)
        .finish();
    let app = axum::Router::new().route(
        "/graphql",
        axum::routing::post(move |req: async_graphql_axum::GraphQLRequest| {
            let schema = schema.clone();
            async move {
                async_graphql_axum::GraphQLResponse::from(schema.execute(req.into_inner()).await)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

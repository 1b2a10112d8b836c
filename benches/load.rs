//! HTTP load benchmark: `submit` on a running Baton against a bare axum +
//! async-graphql server whose mutation does one INSERT on the same store,
//! side by side in one run, on SQLite and (with BATON_TEST_POSTGRES_URL)
//! PostgreSQL. Bounded: each measurement runs LOAD_SECS seconds (default 5).
//!
//! `cargo bench --bench load`

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_graphql::{EmptySubscription, Object, Schema};
use baton::app::Application;
use baton::config::ServeConfig;
use serde_json::{Value, json};

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
    let mut backends = vec![("sqlite", None)];
    if let Ok(pg) = std::env::var("BATON_TEST_POSTGRES_URL") {
        backends.push(("postgres", Some(pg)));
    } else {
        println!("(PostgreSQL skipped: BATON_TEST_POSTGRES_URL not set)");
    }
    for (name, pg) in backends {
        let dir = tempfile::tempdir().unwrap();
        let url = async |tag: &str| match &pg {
            None => format!(
                "sqlite://{}",
                dir.path().join(format!("{tag}.db")).display()
            ),
            Some(base) => fresh_pg_schema(base).await,
        };
        let baseline = spawn_baseline(&url("baseline").await).await;
        let r = measure(dur, move |i, n| {
            let base = baseline.clone();
            async move { (base, json!({ "query": "mutation($id: String!) { insert(id: $id) }", "variables": { "id": format!("{i}-{n}") } }), None) }
        })
        .await;
        report(name, "bare insert baseline", &r);

        let baton = spawn_baton(&url("baton").await).await;
        let sessions = Arc::new(start_sessions(&baton).await);
        let r = measure(dur, move |i, n| {
            let base = baton.clone();
            let (id, token) = sessions[i].clone();
            async move {
                let q = "mutation($i: SubmitInput!) { submit(input: $i) { status screen { id title } } }";
                let v = json!({ "i": { "sessionId": id, "screenId": "tap", "action": "next", "values": { "n": n }, "idempotencyKey": format!("k{n}") } });
                (base, json!({ "query": q, "variables": v }), Some(token))
            }
        })
        .await;
        report(name, "baton submit", &r);
    }
}

struct Measured {
    count: usize,
    errors: usize,
    elapsed: Duration,
    /// CPU time of the whole process (client and server) during the run.
    cpu: Duration,
    latencies: Vec<Duration>,
}

fn report(store: &str, server: &str, m: &Measured) {
    let mut l = m.latencies.clone();
    l.sort();
    let pct = |p: f64| {
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1e3)
            .unwrap_or(0.0)
    };
    println!(
        "{:<10} {:<22} {:>10.0} {:>9.2} {:>9.2} {:>11.0}{}",
        store,
        server,
        m.count as f64 / m.elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        m.cpu.as_secs_f64() * 1e6 / m.count.max(1) as f64,
        if m.errors > 0 {
            format!("  ({} errors)", m.errors)
        } else {
            String::new()
        }
    );
}

/// Runs CONCURRENCY workers for `dur`; worker `i` sends its `n`-th request.
async fn measure<F, Fut>(dur: Duration, make: F) -> Measured
where
    F: Fn(usize, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = (String, Value, Option<String>)> + Send,
{
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY)
        .build()
        .unwrap();
    let deadline = Instant::now() + dur;
    let started = Instant::now();
    let cpu_before = process_cpu();
    let mut tasks = Vec::new();
    for i in 0..CONCURRENCY {
        let client = client.clone();
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            let mut n = 0;
            while Instant::now() < deadline {
                let (base, body, token) = make(i, n).await;
                let t = Instant::now();
                let mut req = client
                    .post(format!("{base}/graphql"))
                    .header("accept", "application/json")
                    .json(&body);
                if let Some(tok) = token {
                    req = req.bearer_auth(tok);
                }
                let ok = match req.send().await {
                    Ok(r) => r
                        .json::<Value>()
                        .await
                        .map(|v| v.get("errors").is_none())
                        .unwrap_or(false),
                    Err(_) => false,
                };
                lat.push(t.elapsed());
                if !ok {
                    errors += 1;
                }
                n += 1;
            }
            (lat, errors)
        }));
    }
    let mut m = Measured {
        count: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        cpu: Duration::ZERO,
        latencies: Vec::new(),
    };
    for t in tasks {
        let (lat, errors) = t.await.unwrap();
        m.count += lat.len();
        m.errors += errors;
        m.latencies.extend(lat);
    }
    m.elapsed = started.elapsed();
    m.cpu = process_cpu().saturating_sub(cpu_before);
    m
}

/// User + system CPU time of this process so far (Linux `/proc/self/stat`;
/// zero elsewhere). On a shared machine CPU per request is steadier than
/// requests per second.
fn process_cpu() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the `(comm)`, which may contain spaces: utime and stime
    // are the 12th and 13th, in clock ticks (USER_HZ, 100 on Linux).
    let ticks: u64 = stat
        .rsplit_once(')')
        .map(|(_, rest)| {
            rest.split_whitespace()
                .skip(11)
                .take(2)
                .filter_map(|t| t.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

async fn spawn_baton(url: &str) -> String {
    let flows = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/flows");
    let mut config = ServeConfig::for_database(url, flows);
    config.db_connections = CONCURRENCY as u32;
    let app = Application::build(config).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    tokio::spawn(app.run_until(std::future::pending()));
    base
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

async fn fresh_pg_schema(base: &str) -> String {
    let schema = format!("load_{}", uuid::Uuid::new_v4().simple());
    let pool = sqlx::PgPool::connect(base).await.unwrap();
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
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

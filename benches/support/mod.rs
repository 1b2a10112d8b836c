//! What the HTTP benchmarks share: a bounded closed-loop load generator
//! with latency percentiles and process CPU time, and fresh PostgreSQL
//! schemas.

#![allow(dead_code)]

pub mod baseline;
pub mod process;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The benches' `submit` mutation.
pub const SUBMIT: &str =
    "mutation($i: SubmitInput!) { submit(input: $i) { status screen { id title } } }";

/// `submit` of `n` on the looping `tap` screen of `benches/flows` under
/// idempotency key `key`.
pub fn tap_submit(id: &str, key: String, n: usize) -> Value {
    json!({ "query": SUBMIT, "variables": { "i": { "sessionId": id, "screenId": "tap",
        "action": "next", "values": { "n": n }, "idempotencyKey": key } } })
}

pub struct Measured {
    pub count: usize,
    pub errors: usize,
    pub elapsed: Duration,
    /// CPU time of the whole process (client and server) during the run.
    pub cpu: Duration,
    /// Sorted, shortest first.
    pub latencies: Vec<Duration>,
}

impl Measured {
    pub fn rate(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64()
    }

    /// CPU time per request, in microseconds.
    pub fn cpu_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.count.max(1) as f64
    }

    /// The latency at percentile `p` (0 to 1), in milliseconds.
    pub fn percentile_ms(&self, p: f64) -> f64 {
        let l = &self.latencies;
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    }
}

pub fn report(store: &str, server: &str, m: &Measured) {
    println!(
        "{:<10} {:<22} {:>10.0} {:>9.2} {:>9.2} {:>11.0}{}",
        store,
        server,
        m.rate(),
        m.percentile_ms(0.50),
        m.percentile_ms(0.99),
        m.cpu_us(),
        if m.errors > 0 {
            format!("  ({} errors)", m.errors)
        } else {
            String::new()
        }
    );
}

/// Runs `concurrency` workers for `dur`; worker `i` sends its `n`-th request.
pub async fn measure<F, Fut>(concurrency: usize, dur: Duration, make: F) -> Measured
where
    F: Fn(usize, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = (String, Value, Option<String>)> + Send,
{
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let deadline = Instant::now() + dur;
    let started = Instant::now();
    let cpu_before = process_cpu();
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let client = client.clone();
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            let mut n = 0;
            while Instant::now() < deadline {
                let (base, body, token) = make(i, n).await;
                let t = Instant::now();
                let failure = graphql_failure(&client, &base, &body, token.as_deref()).await;
                // The first failure of each worker, so a run with errors
                // says what they were.
                if let Some(failure) = &failure
                    && errors == 0
                {
                    eprintln!("worker {i}: request {n} failed: {failure}");
                }
                lat.push(t.elapsed());
                if failure.is_some() {
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
    m.latencies.sort();
    m
}

/// User + system CPU time of this process so far (Linux `/proc/self/stat`;
/// zero elsewhere). On a shared machine CPU per request is steadier than
/// requests per second.
pub fn process_cpu() -> Duration {
    cpu_of("/proc/self/stat")
}

/// [`process_cpu`] of another process (a server this one started).
pub fn process_cpu_of(pid: u32) -> Duration {
    cpu_of(&format!("/proc/{pid}/stat"))
}

fn cpu_of(path: &str) -> Duration {
    let Ok(stat) = std::fs::read_to_string(path) else {
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

/// Busy CPU time of the whole machine so far (Linux `/proc/stat`: every
/// state but idle and iowait; zero elsewhere): what a piece of work costs
/// counting the database server's processes too.
pub fn machine_cpu() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return Duration::ZERO;
    };
    let ticks: u64 = stat
        .lines()
        .next()
        .filter(|l| l.starts_with("cpu "))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .enumerate()
                // user nice system idle iowait irq softirq steal
                .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
                .filter_map(|(_, t)| t.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// The stores to measure: SQLite, and PostgreSQL (with its base URL) when
/// `BATON_TEST_POSTGRES_URL` is set (says so when it is not);
/// `BENCH_BACKENDS=postgres` (or `sqlite`) keeps only the one named.
pub fn backends() -> Vec<(&'static str, Option<String>)> {
    let mut out = vec![("sqlite", None)];
    match std::env::var("BATON_TEST_POSTGRES_URL") {
        Ok(pg) => out.push(("postgres", Some(pg))),
        Err(_) => println!("(PostgreSQL skipped: BATON_TEST_POSTGRES_URL not set)"),
    }
    if let Ok(only) = std::env::var("BENCH_BACKENDS") {
        out.retain(|(name, _)| only.split(',').any(|o| o.trim() == *name));
    }
    out
}

/// A bench knob from the environment, `default` when unset. A value that
/// does not parse stops the bench: quietly falling back would measure
/// something other than what was asked.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Err(_) => default,
        Ok(s) => s
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={s:?} is not a {}", std::any::type_name::<T>())),
    }
}

/// A fresh database for the server `tag` of one store from [`backends`]:
/// a file in `dir` for SQLite, a new schema for PostgreSQL.
pub async fn store_url(pg: Option<&str>, dir: &std::path::Path, tag: &str) -> String {
    match pg {
        None => format!("sqlite://{}", dir.join(format!("{tag}.db")).display()),
        Some(base) => fresh_pg_schema(base).await,
    }
}

/// A new schema for one measurement. The first call of a run drops the
/// schemas earlier runs left behind (each holds thousands of sessions).
pub async fn fresh_pg_schema(base: &str) -> String {
    static SWEPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let schema = format!("load_{}", uuid::Uuid::new_v4().simple());
    let pool = sqlx::PgPool::connect(base).await.unwrap();
    if !SWEPT.swap(true, std::sync::atomic::Ordering::Relaxed) {
        let old: Vec<String> = sqlx::query_scalar(
            "SELECT nspname::TEXT FROM pg_namespace WHERE nspname LIKE 'load\\_%'",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        for s in old {
            let _ = sqlx::query(&format!("DROP SCHEMA {s} CASCADE"))
                .execute(&pool)
                .await;
        }
    }
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}options=-c%20search_path%3D{schema}")
}

/// Runs `one(client, i)` for each `i` in `0..n`, `connections` at a time;
/// what they returned, in no particular order.
pub async fn each_concurrently<T, F, Fut>(n: usize, connections: usize, one: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(reqwest::Client, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = T> + Send,
{
    let client = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections.max(1) {
        let (client, next, one) = (client.clone(), next.clone(), one.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return out;
                }
                out.push(one(client.clone(), i).await);
            }
        }));
    }
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

/// `n` sessions of the `tap` flow (`benches/flows`) on the server at
/// `base`, for users `{prefix}-0…`, started `connections` at a time: each
/// session's id and token.
pub async fn start_sessions(
    base: &str,
    prefix: &str,
    n: usize,
    connections: usize,
) -> Vec<(String, String)> {
    let (base, prefix) = (base.to_owned(), prefix.to_owned());
    each_concurrently(n, connections, move |client, i| {
        let (base, prefix) = (base.clone(), prefix.clone());
        async move {
            let q = "mutation($i: StartFlowInput!) { startFlow(input: $i) { id token } }";
            let v = json!({ "i": { "flowId": "tap", "user": { "id": format!("{prefix}-{i}") } } });
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
            (
                s["id"].as_str().unwrap_or_else(|| panic!("{r}")).to_owned(),
                s["token"].as_str().unwrap().to_owned(),
            )
        }
    })
    .await
}

/// Posts a GraphQL request to `base`; what went wrong, if anything (the
/// transport, a body that is not JSON, or the answer's `errors`).
pub async fn graphql_failure(
    client: &reqwest::Client,
    base: &str,
    body: &Value,
    token: Option<&str>,
) -> Option<String> {
    let mut req = client
        .post(format!("{base}/graphql"))
        .header("accept", "application/json")
        .json(body);
    if let Some(tok) = token {
        req = req.bearer_auth(tok);
    }
    match req.send().await {
        Ok(r) => match r.json::<Value>().await {
            Ok(v) => v.get("errors").map(|e| e.to_string()),
            Err(e) => Some(e.to_string()),
        },
        Err(e) => Some(e.to_string()),
    }
}

/// A PostgreSQL `CHECKPOINT` (nothing on SQLite): HTTP benches start each
/// window from one, since the servers they compare share one WAL and a
/// checkpoint that one server's writes set off would otherwise land in
/// whichever window came next.
pub async fn checkpoint(admin: Option<&sqlx::PgPool>) {
    if let Some(pool) = admin {
        sqlx::query("CHECKPOINT").execute(pool).await.unwrap();
    }
}

/// An upstream in a process of its own (this bench binary again, run with
/// `--upstream`, which prints its port first), stopped when dropped.
pub struct Upstream {
    child: std::process::Child,
    pub port: u16,
}

impl Upstream {
    pub fn spawn() -> Upstream {
        use std::io::BufRead;
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .arg("--upstream")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the upstream process");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the upstream prints its port");
        Upstream { child, port }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

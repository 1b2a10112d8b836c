//! Soak: `submit` on a `baton serve` process held at a fixed share of its
//! measured maximum for minutes, with retention deleting a backlog of old
//! sessions meanwhile, on SQLite and (with BATON_TEST_POSTGRES_URL)
//! PostgreSQL. The client is this process, the server its own.
//!
//! 1. A first server starts `SOAK_AGED` sessions (default 50,000) and
//!    submits once to each, then `SOAK_SESSIONS` (default 100,000) live
//!    ones, and measures its maximum `submit` rate in a closed loop
//!    (`SOAK_CONNECTIONS`, default 16): the median of `SOAK_MAX_WINDOWS`
//!    (default 3) windows of 10 s.
//! 2. It stops; the aged sessions, their funnel walks and idempotency
//!    records are moved 8 days into the past in the database.
//! 3. A second server on the same database runs with
//!    `--session-hours 24 --idempotency-hours 24`; the client sends
//!    `SOAK_LOAD` (default 0.7) of the maximum, or `SOAK_RATE` req/s when
//!    set, to the live sessions for `SOAK_SECS` (default 600), each sent
//!    when due whatever the answers to earlier ones, at most
//!    `SOAK_IN_FLIGHT` (default 256) at once, each
//!    request with a fresh idempotency key, so the log grows all along,
//!    after `SOAK_WARMUP_SECS` (default 30) at that rate unmeasured. Both
//!    servers keep a snapshot of each live session (`--session-cache`,
//!    `BATON_SESSION_CACHE` when set). Meanwhile the funnel
//!    aggregator settles the aged sessions (8 days quiet) and retention
//!    deletes them.
//!
//! Reported per `SOAK_SLICE_SECS` (default 60): req/s, p50/p99/p99.9
//! (from when each request was due, so a stall that delays later
//! requests counts against them too), errors, the server's CPU per
//! request and resident memory, and the sessions left; then the last
//! slice against the first. `SOAK_SERVER_LOG` sets the soak server's log
//! filter (default `warn`; `baton=debug` logs each background batch with
//! its time, to lay beside short slices).
//!
//! `cargo bench --bench soak`

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::process::{Server, spawn_baton};
use support::{
    backends, each_concurrently, env_or, graphql_failure, measure, process_cpu_of, start_sessions,
    store_url, tap_submit,
};

const DAY_MS: i64 = 86_400_000;

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}

/// Resident memory of process `pid` in MiB (Linux; 0 elsewhere).
fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The bench's own connection to the server's database.
#[derive(Clone)]
enum Db {
    Sqlite(sqlx::SqlitePool, String),
    Postgres(sqlx::PgPool),
}

impl Db {
    /// Opens `url` once the server has created it.
    async fn open(url: &str) -> Db {
        match url.strip_prefix("sqlite://") {
            Some(path) => Db::Sqlite(
                sqlx::SqlitePool::connect(url).await.unwrap(),
                path.to_owned(),
            ),
            None => Db::Postgres(sqlx::PgPool::connect(url).await.unwrap()),
        }
    }

    /// Runs `sql`; the rows it changed.
    async fn execute(&self, sql: &str) -> u64 {
        match self {
            Db::Sqlite(pool, _) => sqlx::query(sql)
                .execute(pool)
                .await
                .unwrap()
                .rows_affected(),
            Db::Postgres(pool) => sqlx::query(sql)
                .execute(pool)
                .await
                .unwrap()
                .rows_affected(),
        }
    }

    /// One integer: `SELECT COUNT(*) …`.
    async fn count(&self, sql: &str) -> i64 {
        match self {
            Db::Sqlite(pool, _) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
            Db::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
        }
    }

    /// Its size in MiB: SQLite's file and its WAL (as "file+WAL"), or the
    /// PostgreSQL schema's tables and indexes.
    async fn mib(&self) -> String {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        match self {
            Db::Sqlite(_, path) => {
                let size = |p: String| std::fs::metadata(p).map_or(0, |m| m.len());
                format!(
                    "{:.0}+{:.0}",
                    mib(size(path.clone())),
                    mib(size(format!("{path}-wal")))
                )
            }
            Db::Postgres(_) => {
                let bytes = self
                    .count(
                        "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::int8 \
                         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                         WHERE n.nspname = current_schema() AND c.relkind = 'r'",
                    )
                    .await;
                format!("{:.0}", mib(bytes as u64))
            }
        }
    }
}

/// One submit to each session, `connections` at a time.
async fn submit_each(base: &str, sessions: &[(String, String)], connections: usize, run: &str) {
    let (base, run, sessions) = (base.to_owned(), run.to_owned(), Arc::new(sessions.to_vec()));
    let n = sessions.len();
    each_concurrently(n, connections, move |client, i| {
        let (base, run, sessions) = (base.clone(), run.clone(), sessions.clone());
        async move {
            let (id, token) = &sessions[i];
            let body = tap_submit(id, format!("{run}-aged-{i}"), 1);
            if let Some(f) = graphql_failure(&client, &base, &body, Some(token)).await {
                panic!("submit to aged session {id}: {f}");
            }
        }
    })
    .await;
}

/// What one slice of the soak saw.
#[derive(Default)]
struct Slice {
    latencies: Vec<Duration>,
    errors: usize,
}

fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

/// `rate` submits per second for `dur`, sent when due whatever the
/// answers to earlier ones (an open model: 100,000 users do not wait for
/// each other), at most `in_flight` at once; latencies by slice.
///
/// The cap keeps a server that falls behind from being buried under
/// connections: past it, requests wait to be sent, and their latency still
/// counts from when they were due. A client of a few sequential workers
/// instead could not keep the rate once a request took longer than
/// `workers / rate` (6 ms for 16 workers at 2,600 req/s), however idle
/// the machine, and the backlog that left never drained.
async fn paced(
    base: &str,
    sessions: Arc<Vec<(String, String)>>,
    in_flight: usize,
    rate: f64,
    dur: Duration,
    slice: Duration,
    run: &str,
) -> Vec<Slice> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(in_flight)
        .build()
        .unwrap();
    let every = Duration::from_secs_f64(1.0 / rate);
    let slices = dur.as_secs_f64().div_euclid(slice.as_secs_f64()).max(1.0) as usize;
    let out: Arc<std::sync::Mutex<Vec<Slice>>> = Arc::new(std::sync::Mutex::new(
        (0..slices).map(|_| Slice::default()).collect(),
    ));
    let slots = Arc::new(tokio::sync::Semaphore::new(in_flight));
    let started = tokio::time::Instant::now();
    let mut sent = tokio::task::JoinSet::new();
    for n in 0usize.. {
        let due = started + every.mul_f64(n as f64);
        // A server that falls behind gets fewer requests, not a longer
        // run.
        if due.duration_since(started) >= dur || started.elapsed() >= dur {
            break;
        }
        tokio::time::sleep_until(due).await;
        let slot = slots.clone().acquire_owned().await.unwrap();
        let (id, token) = sessions[n % sessions.len()].clone();
        let body = tap_submit(&id, format!("{run}-{n}"), n);
        let (client, base, out) = (client.clone(), base.to_owned(), out.clone());
        sent.spawn(async move {
            let failure = graphql_failure(&client, &base, &body, Some(&token)).await;
            drop(slot);
            // Counted in the slice it completed in: the rate the server
            // kept up, not the one asked.
            let k =
                ((started.elapsed().as_secs_f64() / slice.as_secs_f64()) as usize).min(slices - 1);
            let mut out = out.lock().unwrap();
            if let Some(f) = &failure
                && out.iter().all(|s| s.errors == 0)
            {
                eprintln!("request {n} failed: {f}");
            }
            out[k].latencies.push(due.elapsed());
            out[k].errors += usize::from(failure.is_some());
        });
        // Reaps what finished, so the set stays as small as what is in
        // flight.
        while let Some(done) = sent.try_join_next() {
            done.expect("a request task panicked");
        }
    }
    while let Some(done) = sent.join_next().await {
        done.expect("a request task panicked");
    }
    let mut all = std::mem::take(&mut *out.lock().unwrap());
    for s in &mut all {
        s.latencies.sort();
    }
    all
}

async fn run() {
    let secs: u64 = env_or("SOAK_SECS", 600);
    let slice_secs: u64 = env_or("SOAK_SLICE_SECS", 60u64).clamp(1, secs.max(1));
    let live_n: usize = env_or("SOAK_SESSIONS", 100_000usize).max(1);
    let aged_n: usize = env_or("SOAK_AGED", 50_000usize);
    let load: f64 = env_or("SOAK_LOAD", 0.7);
    // A fixed rate instead, so that two builds run side by side are asked
    // the same whatever their maxima.
    let fixed: f64 = env_or("SOAK_RATE", 0.0);
    let connections: usize = env_or("SOAK_CONNECTIONS", 16usize).max(1);
    let in_flight: usize = env_or("SOAK_IN_FLIGHT", 256usize).max(1);
    let warmup: u64 = env_or("SOAK_WARMUP_SECS", 30);
    let max_windows: usize = env_or("SOAK_MAX_WINDOWS", 3usize).max(1);
    // The soak server's log filter: `debug` shows each retention batch
    // and each write and settle of the funnel aggregator, with its time,
    // to lay beside slices of a few seconds.
    let server_log = std::env::var("SOAK_SERVER_LOG").unwrap_or_else(|_| "warn".into());
    // The servers keep every live session's snapshot, as an operator would
    // size `--session-cache` for this many sessions in use; the default
    // (10,000) would make every request here a read of the store.
    let session_cache = std::env::var("BATON_SESSION_CACHE").unwrap_or_else(|_| live_n.to_string());
    let asked = if fixed > 0.0 {
        format!("{fixed:.0} req/s")
    } else {
        format!("{:.0}% of the maximum", load * 100.0)
    };
    println!(
        "client and server in separate processes; maximum over {connections} connections, \
         then {asked} sent when due (at most {in_flight} in flight); {live_n} live sessions, \
         {aged_n} aged 8 days, {secs} s, session cache {session_cache}, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    for (name, pg) in backends() {
        let dir = tempfile::tempdir().unwrap();
        let url = store_url(pg.as_deref(), dir.path(), "soak").await;

        // 1. Sessions, and the maximum rate.
        let first = spawn_baton(
            &url,
            dir.path(),
            connections,
            true,
            &[("BATON_SESSION_CACHE", &session_cache)],
        )
        .await;
        let db = Db::open(&url).await;
        let t = Instant::now();
        let aged = start_sessions(&first.base, "aged", aged_n, connections).await;
        submit_each(&first.base, &aged, connections, &run_id).await;
        let live = Arc::new(start_sessions(&first.base, "live", live_n, connections).await);
        println!(
            "{name}: {aged_n} aged sessions started and submitted to, {live_n} live ones started \
             in {:.0} s",
            t.elapsed().as_secs_f64()
        );
        // One 10 s window's maximum swings by a fifth from run to run on
        // this machine, and 70% of a high one asks more than the server
        // sustains once retention runs: the median of a few windows.
        let mut windows = Vec::new();
        for w in 0..max_windows {
            let (base, live, run_id) = (first.base.clone(), live.clone(), run_id.clone());
            let m = measure(connections, Duration::from_secs(10), move |i, n| {
                let share = live.len().div_ceil(connections).max(1);
                let (id, token) = live[(i * share + n % share).min(live.len() - 1)].clone();
                let body = tap_submit(&id, format!("{run_id}-max{w}-{i}-{n}"), n);
                let base = base.clone();
                async move { (base, body, Some(token)) }
            })
            .await;
            assert_eq!(m.errors, 0, "a maximum's window had errors");
            windows.push(m);
        }
        let rates: Vec<String> = windows.iter().map(|m| format!("{:.0}", m.rate())).collect();
        windows.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
        let max = windows.swap_remove(windows.len() / 2);
        println!(
            "{name}: maximum {:.0} req/s, the median of {max_windows} windows of 10 s ({}) \
             (p50 {:.2} ms, p99 {:.2} ms)",
            max.rate(),
            rates.join(", "),
            max.percentile_ms(0.5),
            max.percentile_ms(0.99)
        );
        // The aggregator has walked every session before the server stops.
        let total = (aged_n + live_n) as i64;
        let deadline = Instant::now() + Duration::from_secs(120);
        while db.count("SELECT COUNT(*) FROM funnel_sessions").await < total {
            assert!(Instant::now() < deadline, "the aggregator fell behind");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        drop(first);

        // 2. Eight days ago.
        let aged_ids = "(SELECT id FROM sessions WHERE user_id LIKE 'aged-%')";
        let shift = 8 * DAY_MS;
        db.execute(&format!(
            "UPDATE funnel_sessions SET created_at = created_at - {shift}, \
                 last_at = last_at - {shift} WHERE session_id IN {aged_ids}"
        ))
        .await;
        db.execute(&format!(
            "UPDATE idempotency SET created_at = created_at - {shift} \
                 WHERE session_id IN {aged_ids}"
        ))
        .await;
        let moved = db
            .execute(&format!(
                "UPDATE sessions SET created_at = created_at - {shift}, \
                 updated_at = updated_at - {shift} WHERE user_id LIKE 'aged-%'"
            ))
            .await;
        assert_eq!(moved, aged_n as u64);

        // 3. The soak.
        let server: Server = spawn_baton(
            &url,
            dir.path(),
            connections,
            true,
            &[
                ("BATON_SESSION_HOURS", "24"),
                ("BATON_IDEMPOTENCY_HOURS", "24"),
                ("BATON_LOG", &server_log),
                ("BATON_SESSION_CACHE", &session_cache),
            ],
        )
        .await;
        let pid = server.child.id();
        let rate = if fixed > 0.0 {
            fixed
        } else {
            max.rate() * load
        };
        let slice = Duration::from_secs(slice_secs);
        // Its caches are cold after the restart: the first pass over the
        // live sessions reads each from the store. Not measured.
        let warm = paced(
            &server.base,
            live.clone(),
            in_flight,
            rate,
            Duration::from_secs(warmup),
            Duration::from_secs(warmup.max(1)),
            &format!("{run_id}-warm"),
        )
        .await;
        println!(
            "{name}: {warmup} s warm-up at that rate: p99 {:.2} ms, {} errors",
            percentile_ms(&warm[0].latencies, 0.99),
            warm[0].errors
        );
        let samples = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sampler = {
            // The sampler runs until the soak ends; its samples are kept
            // as they come.
            let (samples, db) = (samples.clone(), db.clone());
            tokio::spawn(async move {
                let mut cpu = process_cpu_of(pid);
                let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + slice, slice);
                loop {
                    tick.tick().await;
                    let now_cpu = process_cpu_of(pid);
                    let aged_left = db
                        .count("SELECT COUNT(*) FROM sessions WHERE user_id LIKE 'aged-%'")
                        .await;
                    let db = db.mib().await;
                    samples
                        .lock()
                        .unwrap()
                        .push((now_cpu - cpu, rss_mib(pid), aged_left, db));
                    cpu = now_cpu;
                }
            })
        };
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        println!(
            "{name}: measuring from {:.3} s since the epoch; server log in {}",
            since_epoch.as_secs_f64(),
            dir.path().display()
        );
        let slices = paced(
            &server.base,
            live.clone(),
            in_flight,
            rate,
            Duration::from_secs(secs),
            slice,
            &run_id,
        )
        .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        sampler.abort();
        let samples = samples.lock().unwrap().clone();
        println!(
            "{name}: {:.0} req/s asked ({:.0}% of {:.0})",
            rate,
            rate / max.rate() * 100.0,
            max.rate()
        );
        println!(
            "{:<10} {:>6} {:>9} {:>8} {:>8} {:>9} {:>7} {:>14} {:>9} {:>10} {:>10}",
            "store",
            "slice",
            "req/s",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "errors",
            "server us/req",
            "RSS MiB",
            "aged left",
            "DB MiB"
        );
        for (k, s) in slices.iter().enumerate() {
            let (cpu, rss, left, db) = samples
                .get(k)
                .map_or((None, None, None, None), |(c, r, l, d)| {
                    (Some(*c), Some(*r), Some(*l), Some(d.clone()))
                });
            let n = s.latencies.len().max(1) as f64;
            println!(
                "{name:<10} {:>6} {:>9.0} {:>8.2} {:>8.2} {:>9.2} {:>7} {:>14} {:>9} {:>10} {:>10}",
                k + 1,
                s.latencies.len() as f64 / slice.as_secs_f64(),
                percentile_ms(&s.latencies, 0.5),
                percentile_ms(&s.latencies, 0.99),
                percentile_ms(&s.latencies, 0.999),
                s.errors,
                cpu.map_or("-".into(), |c: Duration| format!(
                    "{:.0}",
                    c.as_secs_f64() * 1e6 / n
                )),
                rss.map_or("-".into(), |r: f64| format!("{r:.0}")),
                left.map_or("-".into(), |l: i64| l.to_string()),
                db.unwrap_or_else(|| "-".into()),
            );
        }
        let (first_s, last_s) = (&slices[0], &slices[slices.len() - 1]);
        let errors: usize = slices.iter().map(|s| s.errors).sum();
        println!(
            "{name}: last slice / first: req/s {:.3}, p99 {:.2}x; RSS {} -> {} MiB; {errors} errors; \
             aged sessions left {}",
            last_s.latencies.len() as f64 / first_s.latencies.len().max(1) as f64,
            percentile_ms(&last_s.latencies, 0.99) / percentile_ms(&first_s.latencies, 0.99),
            samples.first().map_or(0.0, |s| s.1).round(),
            samples.last().map_or(0.0, |s| s.1).round(),
            db.count("SELECT COUNT(*) FROM sessions WHERE user_id LIKE 'aged-%'")
                .await,
        );
    }
}

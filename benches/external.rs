//! Out-of-process HTTP load benchmark: `submit` on a `baton serve` process
//! against a bare axum + async-graphql process whose mutation does one
//! INSERT on the same kind of store, each driven from this process (the
//! client), taking turns, on SQLite and (with BATON_TEST_POSTGRES_URL)
//! PostgreSQL. Unlike `--bench load`, client and servers do not share a
//! runtime or an allocator, and each server's CPU is its own process's. A
//! third process, Baton without the funnel aggregator, shows what keeping
//! the rollups costs `submit` with this many sessions. Last, replayed
//! submits (a session's last key, and an older one) against a `session`
//! query on the same sessions.
//!
//! 10,000 sessions (`EXTERNAL_SESSIONS`), a fresh idempotency key per
//! request, 16 connections (`EXTERNAL_CONNECTIONS`), `EXTERNAL_SECS`
//! (default 10) per window, `EXTERNAL_ROUNDS` (default 3) rounds. Reports
//! req/s, p50, p99, p99.9, the server process's CPU per request and the
//! machine's (client and database included), and on PostgreSQL the WAL
//! written per request (each window starts from a checkpoint unless
//! `EXTERNAL_CHECKPOINTS=0`).
//!
//! `cargo bench --bench external`

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::baseline::spawn_baseline;
use support::process::{Server, spawn_bare, spawn_baton};
use support::{
    Measured, backends, env_or, machine_cpu, measure, process_cpu_of, start_sessions, store_url,
    tap_submit,
};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // The baseline's own process is this binary again.
    if let Some(i) = args.iter().position(|a| a == "--baseline") {
        let (url, connections, addr) = (&args[i + 1], &args[i + 2], &args[i + 3]);
        rt.block_on(async {
            spawn_baseline(
                url,
                connections.parse().unwrap(),
                Some(addr.parse().unwrap()),
            )
            .await;
            std::future::pending::<()>().await
        });
        return;
    }
    rt.block_on(run());
}

/// What one window measured, with the server's and the machine's CPU.
struct Window {
    m: Measured,
    server_cpu: Duration,
    machine_cpu: Duration,
    /// PostgreSQL: WAL bytes the whole cluster wrote during the window.
    wal: Option<f64>,
}

impl Window {
    fn print(&self, store: &str, server: &str) {
        let per = |d: Duration| d.as_secs_f64() * 1e6 / self.m.count.max(1) as f64;
        println!(
            "{store:<10} {server:<16} {:>9.0} {:>8.2} {:>8.2} {:>9.2} {:>12.0} {:>13.0}{}{}",
            self.m.rate(),
            self.m.percentile_ms(0.50),
            self.m.percentile_ms(0.99),
            self.m.percentile_ms(0.999),
            per(self.server_cpu),
            per(self.machine_cpu),
            self.wal
                .map(|w| format!(" {:>9.0}", w / self.m.count.max(1) as f64))
                .unwrap_or_default(),
            if self.m.errors > 0 {
                format!("  ({} errors)", self.m.errors)
            } else {
                String::new()
            }
        );
    }
}

async fn window<F, Fut>(
    pid: u32,
    pg: Option<&sqlx::PgPool>,
    connections: usize,
    dur: Duration,
    make: F,
) -> Window
where
    F: Fn(usize, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = (String, Value, Option<String>)> + Send,
{
    let lsn = async || match pg {
        Some(pool) => Some(
            sqlx::query_scalar::<_, String>("SELECT pg_current_wal_lsn()::text")
                .fetch_one(pool)
                .await
                .unwrap(),
        ),
        None => None,
    };
    let wal_from = lsn().await;
    let (server, machine) = (process_cpu_of(pid), machine_cpu());
    let m = measure(connections, dur, make).await;
    let (server_cpu, machine_cpu) = (
        process_cpu_of(pid).saturating_sub(server),
        machine_cpu().saturating_sub(machine),
    );
    let wal = match (pg, wal_from, lsn().await) {
        (Some(pool), Some(from), Some(to)) => Some(
            sqlx::query_scalar::<_, f64>("SELECT pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)::float8")
                .bind(to)
                .bind(from)
                .fetch_one(pool)
                .await
                .unwrap(),
        ),
        _ => None,
    };
    Window {
        server_cpu,
        machine_cpu,
        wal,
        m,
    }
}

async fn run() {
    let secs: u64 = env_or("EXTERNAL_SECS", 10);
    let rounds: usize = env_or("EXTERNAL_ROUNDS", 3usize).max(1);
    let sessions_n: usize = env_or("EXTERNAL_SESSIONS", 10_000usize).max(1);
    let connections: usize = env_or("EXTERNAL_CONNECTIONS", 16usize).max(1);
    let dur = Duration::from_secs(secs);
    println!(
        "client and servers in separate processes; {connections} connections, {sessions_n} sessions, \
         {secs} s per window, {rounds} round(s), {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<10} {:<16} {:>9} {:>8} {:>8} {:>9} {:>12} {:>13} {:>9}",
        "store",
        "server",
        "req/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "server us/req",
        "machine us/req",
        "WAL B/req"
    );
    // Keys unique to this run, so a rerun on a kept database is no replay.
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    for (name, pg) in backends() {
        let dir = tempfile::tempdir().unwrap();
        let url = async |tag: &str| store_url(pg.as_deref(), dir.path(), tag).await;
        let bare = spawn_bare(&url("baseline").await, dir.path(), connections).await;
        let baton = spawn_baton(&url("baton").await, dir.path(), connections, true, &[]).await;
        // The same server without the funnel aggregator: what keeping the
        // rollups costs `submit` with this many sessions.
        let plain = spawn_baton(&url("plain").await, dir.path(), connections, false, &[]).await;
        let t = Instant::now();
        let sessions = Arc::new(start_sessions(&baton.base, "ext", sessions_n, connections).await);
        let plain_sessions =
            Arc::new(start_sessions(&plain.base, "ext", sessions_n, connections).await);
        println!(
            "{name}: {} sessions started on each Baton in {:.1} s",
            sessions.len(),
            t.elapsed().as_secs_f64() / 2.0
        );
        let admin = match &pg {
            Some(base) => Some(sqlx::PgPool::connect(base).await.unwrap()),
            None => None,
        };
        let checkpoints = env_or("EXTERNAL_CHECKPOINTS", 1u8) != 0;
        let checkpoint = async || support::checkpoint(admin.as_ref().filter(|_| checkpoints)).await;
        let mut ratios = Vec::new();
        for round in 0..rounds {
            let bare_window = async || {
                checkpoint().await;
                let base = bare.base.clone();
                let run_id = run_id.clone();
                window(
                    bare.child.id(),
                    admin.as_ref(),
                    connections,
                    dur,
                    move |i, n| {
                        let (base, run_id) = (base.clone(), run_id.clone());
                        async move {
                            (
                                base,
                                json!({ "query": "mutation($id: String!) { insert(id: $id) }",
                            "variables": { "id": format!("{run_id}-{round}-{i}-{n}") } }),
                                None,
                            )
                        }
                    },
                )
                .await
            };
            let submit_window = async |server: &Server, sessions: &Arc<Vec<(String, String)>>| {
                checkpoint().await;
                let (base, sessions, run_id) =
                    (server.base.clone(), sessions.clone(), run_id.clone());
                window(
                    server.child.id(),
                    admin.as_ref(),
                    connections,
                    dur,
                    move |i, n| {
                        // Worker i walks its own share of the sessions in turn:
                        // every session is submitted to, none by two workers at
                        // once.
                        let share = sessions.len().div_ceil(connections).max(1);
                        let k = (i * share + n % share).min(sessions.len() - 1);
                        let (id, token) = sessions[k].clone();
                        let body = tap_submit(&id, format!("{run_id}-{round}-{i}-{n}"), n);
                        let base = base.clone();
                        async move { (base, body, Some(token)) }
                    },
                )
                .await
            };
            // The order turns each round, so none always runs while
            // another's writes are still being checkpointed.
            let (mut b, mut s, mut p) = (None, None, None);
            for k in 0..3 {
                match (k + round) % 3 {
                    0 => {
                        let w = bare_window().await;
                        w.print(name, "bare insert");
                        b = Some(w);
                    }
                    1 => {
                        let w = submit_window(&baton, &sessions).await;
                        w.print(name, "baton submit");
                        s = Some(w);
                    }
                    _ => {
                        let w = submit_window(&plain, &plain_sessions).await;
                        w.print(name, "no rollups");
                        p = Some(w);
                    }
                }
            }
            let (b, s, p) = (b.unwrap(), s.unwrap(), p.unwrap());
            ratios.push((
                s.m.rate() / b.m.rate(),
                s.m.percentile_ms(0.99) / b.m.percentile_ms(0.99),
                s.m.rate() / p.m.rate(),
                s.m.percentile_ms(0.999) / b.m.percentile_ms(0.999),
            ));
        }
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        println!(
            "{name}: submit / bare insert over {rounds} round(s): req/s {:.0}% (median; rounds {}), \
             p99 {:.2}x, p99.9 {:.2}x (medians)",
            100.0 * median(ratios.iter().map(|r| r.0).collect()),
            ratios
                .iter()
                .map(|r| format!("{:.0}%", 100.0 * r.0))
                .collect::<Vec<_>>()
                .join(" "),
            median(ratios.iter().map(|r| r.1).collect()),
            median(ratios.iter().map(|r| r.3).collect()),
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
        replays(name, &baton, &sessions, &run_id, connections, dur).await;
    }
}

/// Replays against a `session` query on the same sessions, one window
/// each: every session first takes a submit under an older key and one
/// under a newer key (`tap` loops back to itself, so the engine would take
/// either again); then the windows send the newer key (a client's retry of
/// its last submit), the older one, and a `session` query.
async fn replays(
    name: &str,
    baton: &Server,
    sessions: &Arc<Vec<(String, String)>>,
    run_id: &str,
    connections: usize,
    dur: Duration,
) {
    let (base, all, run) = (baton.base.clone(), sessions.clone(), run_id.to_owned());
    support::each_concurrently(sessions.len(), connections, move |client, k| {
        let (base, all, run) = (base.clone(), all.clone(), run.clone());
        async move {
            let (id, token) = &all[k];
            for (key, n) in [
                (format!("{run}-older-{k}"), 1),
                (format!("{run}-newer-{k}"), 2),
            ] {
                let body = tap_submit(id, key, n);
                if let Some(failure) =
                    support::graphql_failure(&client, &base, &body, Some(token)).await
                {
                    panic!("preparing the replays: {failure}");
                }
            }
        }
    })
    .await;
    // Which request worker `i` sends as its `n`-th: on the sessions of its
    // own share in turn.
    let each = |body: fn(&str, &str, usize) -> Value| {
        let (base, all, run) = (baton.base.clone(), sessions.clone(), run_id.to_owned());
        move |i: usize, n: usize| {
            let share = all.len().div_ceil(connections).max(1);
            let k = (i * share + n % share).min(all.len() - 1);
            let (id, token) = all[k].clone();
            let body = body(&id, &run, k);
            let base = base.clone();
            async move { (base, body, Some(token)) }
        }
    };
    let measured = async |label: &str, body: fn(&str, &str, usize) -> Value| {
        let w = window(baton.child.id(), None, connections, dur, each(body)).await;
        w.print(name, label);
        w
    };
    let read = measured("session query", |id, _, _| {
        json!({ "query": "query($id: ID!) { session(id: $id) { status screen { id title } } }",
            "variables": { "id": id } })
    })
    .await;
    let last = measured("replay, last key", |id, run, k| {
        tap_submit(id, format!("{run}-newer-{k}"), 2)
    })
    .await;
    let older = measured("replay, older", |id, run, k| {
        tap_submit(id, format!("{run}-older-{k}"), 1)
    })
    .await;
    let ratio = |w: &Window| {
        format!(
            "req/s {:.0}%, p99 {:.2}x",
            100.0 * w.m.rate() / read.m.rate(),
            w.m.percentile_ms(0.99) / read.m.percentile_ms(0.99)
        )
    };
    println!(
        "{name}: a replayed submit / a session query: the last key {}; an older key {}",
        ratio(&last),
        ratio(&older)
    );
}

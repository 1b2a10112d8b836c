//! Funnel benchmark: a generated log of FUNNEL_SESSIONS sessions (default
//! 1,000,000) of `benches/funnel-flows/checkout.yaml`, started over the
//! last 30 days on three platforms, two app versions and two experiment
//! arms, walking known paths (finish, finish after a review, quit, stall,
//! go back and stall, get cancelled). The aggregator folds the whole log
//! into rollups (its rate is reported), then funnel queries are timed over
//! the default 30-day window, overall and grouped, and over a range whose
//! ends fall mid-hour (those two partial hours are read from the log).
//! SQLite, and PostgreSQL with BATON_TEST_POSTGRES_URL.
//!
//! `cargo bench --bench funnel`; FUNNEL_RUNS (default 21) queries each.

mod support;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use baton::app::Application;
use baton::config::ServeConfig;
use baton::service::funnel::{DEFAULT_IDLE_MS, FunnelQuery, Grouping};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use support::{backends, fresh_pg_schema};

const DAY_MS: i64 = 86_400_000;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

async fn run() {
    let sessions = env("FUNNEL_SESSIONS", 1_000_000);
    let runs = env("FUNNEL_RUNS", 21).max(1);
    println!("{sessions} sessions over 30 days, {runs} queries each");
    for (name, pg) in backends() {
        let dir = tempfile::tempdir().unwrap();
        let url = match &pg {
            None => format!("sqlite://{}", dir.path().join("funnel.db").display()),
            Some(base) => fresh_pg_schema(base).await,
        };
        let flows = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/funnel-flows");
        let mut config = ServeConfig::for_database(&url, flows);
        // The aggregator runs below, on its own, to be timed.
        config.rollup_poll_ms = 0;
        let app = Application::build(config).await.unwrap();
        let baton = app.baton().clone();

        let t = Instant::now();
        let events = generate(&url, sessions).await;
        println!(
            "{name}: generated {sessions} sessions, {events} events in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        let t = Instant::now();
        while !baton.rollups().catch_up(1000).await.unwrap() {}
        let took = t.elapsed().as_secs_f64();
        println!(
            "{name}: aggregated {events} events in {took:.1} s ({:.0} events/s)",
            events as f64 / took
        );

        // One hour ten days ago (its quiet sessions settled into the sums)
        // from the rollups, and the same hour bar its first and last ms,
        // which is read from the log: the same funnel.
        let now = now_ms();
        let hour = (now - 10 * DAY_MS) / 3_600_000 * 3_600_000;
        let check = |from: i64, to: i64| FunnelQuery {
            flow_id: "checkout".into(),
            version: None,
            from: Some(from),
            to: Some(to),
            group_by: Some(Grouping::Platform),
            idle_ms: DEFAULT_IDLE_MS,
        };
        let rolled = baton.funnel(&check(hour, hour + 3_600_000)).await.unwrap();
        let logged = baton
            .funnel(&check(hour + 1, hour + 3_600_000 - 1))
            .await
            .unwrap();
        assert_eq!(rolled.overall, logged.overall, "rollups and log differ");
        assert_eq!(rolled.groups, logged.groups, "rollups and log differ");
        println!(
            "{name}: one hour ten days ago: {} sessions, the same from the rollups and the log",
            rolled.overall.sessions
        );

        let query = |group_by: Option<Grouping>, from: Option<i64>| FunnelQuery {
            flow_id: "checkout".into(),
            version: None,
            from,
            to: from.map(|_| now - 1234),
            group_by,
            idle_ms: DEFAULT_IDLE_MS,
        };
        let cases = [
            ("30 days, overall", query(None, None)),
            (
                "30 days, by platform",
                query(Some(Grouping::Platform), None),
            ),
            (
                "30 days, by app version",
                query(Some(Grouping::AppVersion), None),
            ),
            (
                "7 days, ends mid-hour",
                query(None, Some(now - 7 * DAY_MS + 1234)),
            ),
        ];
        for (label, q) in cases {
            let mut times = Vec::with_capacity(runs);
            let mut counted = 0;
            for _ in 0..runs {
                let t = Instant::now();
                counted = baton.funnel(&q).await.unwrap().overall.sessions;
                times.push(t.elapsed());
            }
            times.sort();
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            println!(
                "{name}: funnel {label:<24} {counted:>8} sessions  median {:>7.1} ms  max {:>7.1} ms",
                ms(times[times.len() / 2]),
                ms(times[times.len() - 1]),
            );
        }
        drop(app);
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// One generated event: `(kind, payload, at)`.
type Event = (&'static str, serde_json::Value, i64);

/// A session's walk, from a seeded generator.
fn walk(rng: &mut StdRng, start: i64) -> (Vec<Event>, &'static str) {
    let path: u32 = rng.random_range(0..100);
    let mut at = start;
    let mut events: Vec<Event> = vec![(
        "started",
        json!({ "flow_id": "checkout", "flow_version": 1 }),
        at,
    )];
    let mut step = |events: &mut Vec<Event>, kind: &'static str, payload: serde_json::Value| {
        at += rng.random_range(2_000..90_000);
        events.push((kind, payload, at));
    };
    let enter = |node: &str, kind: &str| json!({ "node": node, "node_kind": kind });
    let submit =
        |screen: &str, action: &str| json!({ "screen": screen, "action": action, "values": {} });
    events.push(("entered", enter("cart", "screen"), start));
    if path < 10 {
        step(&mut events, "submitted", submit("cart", "quit"));
        step(&mut events, "entered", enter("abandoned", "end"));
        step(
            &mut events,
            "ended",
            json!({ "node": "abandoned", "outcome": "abandoned" }),
        );
        return (events, "COMPLETED");
    }
    step(&mut events, "submitted", submit("cart", "next"));
    step(&mut events, "entered", enter("address", "screen"));
    if path < 25 {
        return (events, "ACTIVE"); // stalls on the address
    }
    if path < 30 {
        step(
            &mut events,
            "went_back",
            json!({ "from": "address", "to": "cart" }),
        );
        return (events, "ACTIVE");
    }
    step(&mut events, "submitted", submit("address", "next"));
    step(&mut events, "entered", enter("pay", "screen"));
    if path < 40 {
        return (events, "ACTIVE");
    }
    if path < 45 {
        step(
            &mut events,
            "operated",
            json!({ "node": "pay", "action": "cancel", "by": "support" }),
        );
        step(
            &mut events,
            "ended",
            json!({ "node": "pay", "outcome": "abandoned" }),
        );
        return (events, "COMPLETED");
    }
    step(&mut events, "submitted", submit("pay", "next"));
    step(&mut events, "entered", enter("check", "decision"));
    if path < 60 {
        step(&mut events, "entered", enter("review", "screen"));
        step(&mut events, "submitted", submit("review", "confirm"));
    }
    step(&mut events, "entered", enter("done", "end"));
    step(
        &mut events,
        "ended",
        json!({ "node": "done", "outcome": "completed" }),
    );
    (events, "COMPLETED")
}

/// Writes the sessions and their events straight into the store, in
/// batches; returns the number of events.
async fn generate(url: &str, sessions: usize) -> usize {
    let mut rng = StdRng::seed_from_u64(7);
    let now = now_ms() - 3_600_000;
    let platforms = ["ios", "android", "web"];
    let apps = ["3.1.0", "3.2.0"];
    let arms = ["control", "short_copy"];
    const CHUNK: usize = 2000;
    let mut events_total = 0;
    let pool = Pool::connect(url).await;
    let mut i = 0;
    while i < sessions {
        let n = CHUNK.min(sessions - i);
        let mut srows = Vec::with_capacity(n);
        let mut erows = Vec::with_capacity(n * 8);
        for k in i..i + n {
            let start = now - 30 * DAY_MS + (k as i64 * 30 * DAY_MS) / sessions as i64;
            let id = format!("bench-{k:08}");
            let (events, status) = walk(&mut rng, start);
            let state = json!({ "context": {
                "client": { "platform": platforms[k % 3], "app_version": apps[(k / 3) % 2] },
                "experiments": { "checkout_copy": { "variant": arms[(k / 7) % 2], "source": "hash" } },
                "session": {} } });
            let updated = events.last().map_or(start, |e| e.2);
            for (seq, (kind, payload, at)) in events.iter().enumerate() {
                erows.push((id.clone(), seq as i64 + 1, *kind, payload.to_string(), *at));
            }
            srows.push((
                id,
                state.to_string(),
                status,
                events.len() as i64,
                start,
                updated,
            ));
        }
        events_total += erows.len();
        pool.insert(&srows, &erows).await;
        i += n;
    }
    events_total
}

type SessionRow = (String, String, &'static str, i64, i64, i64);
type EventRow = (String, i64, &'static str, String, i64);

enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

macro_rules! insert_rows {
    ($pool:expr, $sessions:expr, $events:expr) => {{
        let mut tx = $pool.begin().await.unwrap();
        for chunk in $sessions.chunks(1000) {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO sessions (id, flow_id, flow_version, user_id, token_hash, status, \
                 seq, state, created_at, updated_at) ",
            );
            q.push_values(chunk, |mut b, s| {
                b.push_bind(&s.0)
                    .push_bind("checkout")
                    .push_bind(1_i32)
                    .push_bind(&s.0)
                    .push_bind("-")
                    .push_bind(s.2)
                    .push_bind(s.3)
                    .push_bind(&s.1)
                    .push_bind(s.4)
                    .push_bind(s.5);
            });
            q.build().execute(&mut *tx).await.unwrap();
        }
        for chunk in $events.chunks(2000) {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO session_events (session_id, seq, kind, payload, created_at) ",
            );
            q.push_values(chunk, |mut b, e| {
                b.push_bind(&e.0)
                    .push_bind(e.1)
                    .push_bind(e.2)
                    .push_bind(&e.3)
                    .push_bind(e.4);
            });
            q.build().execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();
    }};
}

impl Pool {
    async fn connect(url: &str) -> Pool {
        if url.starts_with("sqlite:") {
            Pool::Sqlite(sqlx::SqlitePool::connect(url).await.unwrap())
        } else {
            Pool::Postgres(sqlx::PgPool::connect(url).await.unwrap())
        }
    }

    async fn insert(&self, sessions: &[SessionRow], events: &[EventRow]) {
        match self {
            Pool::Sqlite(p) => insert_rows!(p, sessions, events),
            Pool::Postgres(p) => insert_rows!(p, sessions, events),
        }
    }
}

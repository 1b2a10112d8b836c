//! The funnel aggregator: reads the event feed from where it stopped and
//! keeps, per flow, hour (of the session's start) and cohort (version,
//! platform, app version, experiment arms), the sum of what sessions did
//! ([`crate::analytics::funnel::Funnel`]), so a funnel over a million
//! sessions reads a few thousand sums instead of their logs. One replica
//! aggregates at a time, under a lease; it folds batches in memory and
//! writes them in a few transactions, its place in the feed with the last
//! (see `State`), so each event counts exactly once.
//!
//! A session falls in the cohort it had when the aggregator first met it
//! (its experiment arms as pinned when it started).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::lane::Lane;
use super::now_ms;
use crate::analytics::funnel::{Funnel, Step, Walk};
use crate::store::feed::{FunnelEvent, FunnelPage};
use crate::store::handoff;
use crate::store::rollups::{Cohort, RollupBatch, RollupKey, WalkRow};
use crate::store::{Store, StoreError};

/// The aggregator's row in `sink_cursors` (a name no webhook can have).
pub const ROLLUP_SINK: &str = "@funnel-rollups";
/// Events per batch: large, since what a batch costs beyond its events
/// (reading and writing the sums and walks it touches, one transaction)
/// is what the aggregator's share of a busy server comes down to.
pub const BATCH: i64 = 5000;
/// Quiet sessions settled per batch.
const SETTLE_BATCH: i64 = 1000;
pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 86_400_000;
/// A session quiet this long has dropped off under any idle threshold a
/// funnel accepts (at most 7 days): it is settled into the rollups.
const SETTLE_AFTER_MS: i64 = 7 * DAY_MS;
/// How often a write goes on to settle (see [`Rollups::step_in`]).
const SETTLE_EVERY: Duration = Duration::from_secs(1);
const LEASE: Duration = Duration::from_secs(30);
/// Sessions whose walk the aggregator keeps in memory by default
/// (`--funnel-walk-cache`).
pub const WALK_CACHE: usize = 100_000;
/// How long folded events may wait in memory before they are written
/// (`--funnel-write-ms`).
pub const WRITE_EVERY: Duration = Duration::from_secs(5);
/// Sessions fall into this many buckets by id; a write goes a few whole
/// buckets per transaction (see [`State`]).
const BUCKETS: u64 = 64;
/// Walks per write transaction, about: a transaction holds SQLite's only
/// writer while it runs, and requests wait behind it.
const WRITE_CHUNK: usize = 1000;
/// Commits the SQLite writer may hand over ahead of the aggregator (see
/// [`crate::store::handoff`]): a few polls' worth on a busy server.
const HANDOFF_COMMITS: usize = 20_000;

/// A session's walk, its text left out.
type Walked = (WalkRow, Walk);

pub struct Rollups {
    store: Store,
    worker: String,
    /// Cohort ids by flow and key.
    cohorts: Mutex<HashMap<(String, String), i64>>,
    /// One batch at a time in this process (the loop and a query's
    /// catch-up), and what the batches folded.
    state: tokio::sync::Mutex<State>,
    /// Callers other than the loop that wait for `state`: a paced write
    /// stops resting while there are any (see [`Urgency`]).
    urgency: Urgency,
    walk_capacity: usize,
    write_every: Duration,
    write_chunk: usize,
    /// Started on first use: most processes that build a service never
    /// aggregate.
    lane: std::sync::OnceLock<Lane>,
}

/// What this replica folded, kept in memory while it holds the lease.
///
/// A session's walk and the sums change with nearly every event, and with
/// many sessions reading, parsing and writing a walk per event was most of
/// what the aggregator cost a busy server. So batches fold into memory and
/// are written together every [`WRITE_EVERY`], when a funnel query asks,
/// or when memory is full: a session that moved several times meanwhile
/// is written once.
///
/// A write of a busy server's five seconds touches tens of thousands of
/// walks; in one transaction it held SQLite's writer for hundreds of
/// milliseconds, and every request that came meanwhile waited (the soak's
/// p99). So it goes in transactions of about [`WRITE_CHUNK`] walks, each
/// with the walks of whole buckets of sessions and the sums their events
/// add, and the feed position with the last one. A crash or a lost lease
/// between them leaves some sessions written ahead of the position: the
/// next holder folds their events again from there, and each walk's `seq`
/// (its last event folded) makes it skip those it already holds. Nothing
/// else is lost but what was not written yet, folded again likewise.
#[derive(Default)]
struct State {
    /// Until when this replica holds the lease, as last written.
    held_until: i64,
    /// Walks by session: as written, or (those in `buckets`) ahead of it.
    /// While this replica holds the lease nobody else writes walks, so a
    /// batch reads from the store only the sessions it has not met.
    walks: HashMap<String, Walked>,
    /// What was folded and not written, by bucket (see [`bucket_of`]).
    buckets: BTreeMap<u64, Bucket>,
    /// Where the next page starts, once ahead of the written position.
    cursor: Option<String>,
    /// Events folded and not written.
    events: i64,
    /// When the first of them was folded.
    since: Option<Instant>,
    /// When a write last went on to settle the long quiet.
    settled_at: Option<Instant>,
    /// Commits this process wrote, handed over by the writer: kept across
    /// [`State::reset`], since they say what the store holds.
    handoff: Option<handoff::Receiver>,
}

impl State {
    /// Whether something was folded and not written yet.
    fn unwritten(&self) -> bool {
        self.events > 0 || !self.buckets.is_empty()
    }

    /// Walks folded and not written.
    fn dirty(&self) -> usize {
        self.buckets.values().map(|b| b.dirty.len()).sum()
    }

    /// Forgets everything not read back from the store: the lease may
    /// have been lost, or a write failed in a way that leaves it unknown
    /// whether it committed.
    fn reset(&mut self) {
        let handoff = self.handoff.take();
        *self = State {
            handoff,
            ..State::default()
        };
    }
}

/// The sessions of one bucket that were folded and not written, and what
/// their events add per hour.
#[derive(Default)]
struct Bucket {
    dirty: HashSet<String>,
    deltas: BTreeMap<RollupKey, Funnel>,
}

/// The bucket a session falls in: any stable spread will do.
fn bucket_of(session_id: &str) -> u64 {
    let h = session_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    h % BUCKETS
}

/// When [`Rollups::step`] writes what it folded.
#[derive(Clone, Copy, PartialEq)]
enum Write {
    /// When it is due.
    Due,
    /// At the end of this step (a funnel query is about to read).
    Now,
}

/// The hour a session that started at `ms` counts in.
fn hour_key(flow_id: &str, created_at: i64, cohort_id: i64) -> RollupKey {
    RollupKey {
        flow_id: flow_id.to_owned(),
        span: HOUR_MS,
        start: created_at.div_euclid(HOUR_MS) * HOUR_MS,
        cohort_id,
    }
}

/// Each hour's delta also goes to its day, so that long ranges read a
/// sum per day.
fn with_days(hours: BTreeMap<RollupKey, Funnel>) -> BTreeMap<RollupKey, Funnel> {
    let mut out = BTreeMap::new();
    for (key, delta) in hours {
        let day = RollupKey {
            span: DAY_MS,
            start: key.start.div_euclid(DAY_MS) * DAY_MS,
            ..key.clone()
        };
        out.entry(day)
            .or_insert_with(Funnel::default)
            .merge(&delta, 1);
        out.insert(key, delta);
    }
    out
}

/// The experiment arms of a session's `context.experiments`, as
/// experiment → variant: those that count the session, as its events'
/// `arms` are (a user an experiment did not admit is not in any of its
/// arms).
fn arms(experiments: Option<&str>) -> BTreeMap<String, String> {
    let Some(Value::Object(pins)) = experiments.and_then(|t| serde_json::from_str(t).ok()) else {
        return BTreeMap::new();
    };
    crate::experiments::live::counted_arms(&pins)
        .map(|(id, variant)| (id.to_owned(), variant.to_owned()))
        .collect()
}

/// What an event means to a funnel; `None` for the others.
fn step_of(e: &FunnelEvent, outcomes: &HashMap<(String, String), Vec<String>>) -> Option<Step> {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    Some(match e.kind.as_str() {
        "entered" => Step::Entered {
            node: text(&e.node),
            kind: text(&e.node_kind),
            at: e.created_at,
        },
        "submitted" => Step::Submitted {
            action: text(&e.action),
        },
        "went_back" => Step::WentBack {
            to: text(&e.to),
            at: e.created_at,
        },
        "ended" => Step::Ended,
        "operated" if e.action.as_deref() == Some("retry") => Step::Reopened,
        "step_completed" => {
            let node = text(&e.node);
            let outcomes = outcomes
                .get(&(e.session_id.clone(), node.clone()))
                .cloned()
                .unwrap_or_default();
            Step::Attempts { node, outcomes }
        }
        _ => return None,
    })
}

impl Rollups {
    pub fn new(store: Store, worker: &str) -> Rollups {
        Rollups {
            store,
            worker: worker.to_owned(),
            cohorts: Mutex::default(),
            state: tokio::sync::Mutex::default(),
            urgency: Urgency::default(),
            walk_capacity: WALK_CACHE,
            write_every: WRITE_EVERY,
            write_chunk: WRITE_CHUNK,
            lane: std::sync::OnceLock::new(),
        }
    }

    /// Keeps at most about `walks` sessions' walks in memory, and writes
    /// what was folded at least every `write_every` (zero: every batch).
    pub fn set_memory(&mut self, walks: usize, write_every: Duration) {
        self.walk_capacity = walks;
        self.write_every = write_every;
    }

    /// Writes about `walks` walks per transaction (default
    /// [`WRITE_CHUNK`]; at least a bucket's).
    pub fn set_write_chunk(&mut self, walks: usize) {
        self.write_chunk = walks;
    }

    /// Aggregates until `shutdown`, looking for new events every `poll`
    /// once it has caught up; writes what it folded and gives up the lease
    /// before it returns.
    pub async fn run(&self, poll: Duration, shutdown: CancellationToken) {
        // Only the loop takes the handoff: a process that aggregates only
        // when a query asks would leave handed commits piling up.
        self.state.lock().await.handoff = self.store.funnel_handoff(HANDOFF_COMMITS);
        loop {
            // Only a full batch goes straight on: a busy server's events
            // are then folded in a few large batches per poll rather than
            // in a stream of small ones.
            let wait = match self.step_sized(Write::Due).await {
                Ok((_, true)) => Duration::ZERO,
                Ok((_, false)) => poll,
                Err(e) => {
                    tracing::warn!(error = %e, "funnel rollups stalled; trying again");
                    poll.max(Duration::from_secs(2))
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => {
                    if let Err(e) = self.write_pending().await {
                        tracing::warn!(error = %e, "funnel rollups not written at shutdown; the next aggregator folds them again");
                    }
                    if let Err(e) = self.release().await {
                        tracing::warn!(error = %e, "funnel rollups lease not given up at shutdown; another replica takes over when it runs out");
                    }
                    return;
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Aggregates up to `batches` batches now and writes them (a funnel
    /// query's catch-up): `true` when it reached the end of the feed.
    pub async fn catch_up(&self, batches: usize) -> Result<bool, StoreError> {
        for _ in 0..batches {
            if self.step_sized(Write::Now).await?.0 == 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// One batch, written: the events handled, or once caught up the
    /// sessions settled (0 when there was nothing to do, or another
    /// replica holds the lease).
    pub async fn step(&self) -> Result<usize, StoreError> {
        Ok(self.step_sized(Write::Now).await?.0)
    }

    /// One batch, folded into memory and written only when due, as the
    /// background loop does: the events handled (0 when there was nothing
    /// to do, or another replica holds the lease).
    pub async fn step_deferred(&self) -> Result<usize, StoreError> {
        Ok(self.step_sized(Write::Due).await?.0)
    }

    /// Writes what was folded and not written yet.
    pub async fn write_pending(&self) -> Result<(), StoreError> {
        self.write_some(usize::MAX).await
    }

    /// Writes what was folded in at most `chunks` transactions (a write
    /// takes a few; see [`State`]). Fewer than it takes leaves the rest
    /// unwritten, as a crash midway through a write would.
    pub async fn write_some(&self, chunks: usize) -> Result<(), StoreError> {
        let mut state = self.urgency.lock(&self.state).await;
        if state.unwritten() {
            let r = self.write(&mut state, chunks, Write::Now).await;
            if r.is_err() {
                state.reset();
            }
            r?;
        }
        Ok(())
    }

    /// Gives up the lease, so that another replica (or this one,
    /// restarted) aggregates at once rather than in up to 30 s; a funnel
    /// query meanwhile would read sums that miss the newest sessions.
    pub async fn release(&self) -> Result<(), StoreError> {
        let mut state = self.urgency.lock(&self.state).await;
        state.reset();
        self.store.release_sink(ROLLUP_SINK, &self.worker).await
    }

    /// [`Rollups::step`], and whether the batch was full (more may wait).
    async fn step_sized(&self, when: Write) -> Result<(usize, bool), StoreError> {
        let mut state = match when {
            Write::Due => self.state.lock().await,
            Write::Now => self.urgency.lock(&self.state).await,
        };
        let r = self.step_in(&mut state, when).await;
        if r.is_err() {
            // Whether a failed write committed is unknown: start again
            // from what the store says.
            state.reset();
        }
        r
    }

    async fn step_in(&self, state: &mut State, when: Write) -> Result<(usize, bool), StoreError> {
        let now = now_ms();
        if !self.claim(state, now).await? {
            // Another replica folds these commits.
            if let Some(h) = &mut state.handoff {
                h.clear();
            }
            return Ok((0, false));
        }
        let cursor = match &state.cursor {
            Some(c) => c.clone(),
            None => self
                .store
                .sink_state(ROLLUP_SINK)
                .await?
                .and_then(|s| s.cursor)
                .unwrap_or_default(),
        };
        let after = (!cursor.is_empty()).then_some(cursor.as_str());
        let page = self
            .store
            .funnel_feed(after, BATCH, state.handoff.as_mut())
            .await?;
        let Some(last) = page.end.clone() else {
            if state.unwritten() {
                let n = state.events as usize;
                if !self.write(state, usize::MAX, when).await? {
                    return Ok((0, false));
                }
                // What was written counts as this step's work, so a
                // catch-up does not stop before the sums are in.
                let settled = self.settle(state, now, when).await?;
                return Ok((n.max(1) + settled, settled as i64 >= SETTLE_BATCH));
            }
            // Caught up and all written: time to settle the long quiet.
            let n = self.settle(state, now, when).await?;
            return Ok((n, n as i64 >= SETTLE_BATCH));
        };
        let n = page.events;
        crate::telemetry::FUNNEL_EVENTS.add(&["handoff"], page.handed as u64);
        crate::telemetry::FUNNEL_EVENTS.add(&["store"], (n - page.handed) as u64);
        self.fold(state, page).await?;
        state.cursor = Some(last);
        state.events += n as i64;
        state.since.get_or_insert_with(Instant::now);
        let full = n as i64 >= BATCH;
        let due = when == Write::Now
            || state.since.is_some_and(|t| t.elapsed() >= self.write_every)
            || state.dirty() + BATCH as usize > self.walk_capacity;
        if due {
            if !self.write(state, usize::MAX, when).await? {
                return Ok((0, false));
            }
            // Nothing folded is unwritten now: the moment to settle. On a
            // busy server the feed is never empty when the loop looks, so
            // settling only once caught up would never come. At most once
            // a second: a funnel query's catch-up writes every batch.
            if state.settled_at.is_none_or(|t| t.elapsed() >= SETTLE_EVERY) {
                state.settled_at = Some(Instant::now());
                let settled = self.settle(state, now_ms(), when).await?;
                return Ok((n + settled, full || settled as i64 >= SETTLE_BATCH));
            }
            return Ok((n, full));
        }
        Ok((n, full))
    }

    /// Folds a page into `state`. What it reads comes from the store
    /// here; parsing the page and the walks and folding are CPU work and
    /// run on the lane, away from the requests.
    async fn fold(&self, state: &mut State, page: FunnelPage) -> Result<(), StoreError> {
        let lane = self.lane();
        let events = lane.run(move || page.parse()).await?;
        // Parsed, each session's events are together.
        let mut ids: Vec<String> = events.iter().map(|e| e.session_id.clone()).collect();
        ids.dedup();
        let mut cached = Vec::new();
        let mut missed = Vec::new();
        for id in ids {
            match state.walks.remove(&id) {
                Some(w) => cached.push((id, w)),
                None => missed.push(id),
            }
        }
        let mut rows: HashMap<String, WalkRow> = HashMap::new();
        if !missed.is_empty() {
            for row in self.store.session_walks(&missed).await? {
                rows.insert(row.session_id.clone(), row);
            }
        }
        // The hours that gain a session.
        let mut started = Vec::new();
        let new: Vec<String> = missed
            .iter()
            .filter(|id| !rows.contains_key(*id))
            .cloned()
            .collect();
        if !new.is_empty() {
            for f in self.store.session_facts(&new).await? {
                let cohort_id = if f.preview {
                    0
                } else {
                    let arms = arms(f.experiments.as_deref());
                    let cohort = Cohort {
                        id: 0,
                        flow_version: f.flow_version,
                        platform: f.platform,
                        app_version: f.app_version,
                        arms: serde_json::to_string(&arms).unwrap_or_else(|_| "{}".into()),
                    };
                    self.cohort_id(&f.flow_id, &cohort).await?
                };
                if cohort_id != 0 {
                    started.push((
                        bucket_of(&f.id),
                        hour_key(&f.flow_id, f.created_at, cohort_id),
                    ));
                }
                let row = WalkRow {
                    session_id: f.id.clone(),
                    flow_id: f.flow_id,
                    cohort_id,
                    created_at: f.created_at,
                    last_at: f.created_at,
                    idle_node: None,
                    walk: String::new(),
                    seq: 0,
                };
                rows.insert(f.id, row);
            }
        }
        let with_steps: Vec<String> = {
            let mut v: Vec<String> = events
                .iter()
                .filter(|e| e.kind == "step_completed")
                .map(|e| e.session_id.clone())
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let mut outcomes: HashMap<(String, String), Vec<String>> = HashMap::new();
        if !with_steps.is_empty() {
            for (session, node, outcome) in self.store.session_step_outcomes(&with_steps).await? {
                outcomes.entry((session, node)).or_default().push(outcome);
            }
        }
        let (deltas, walks) = lane
            .run(move || {
                let mut walks = parse_walks(rows);
                walks.extend(cached);
                let deltas = apply(&events, started, &outcomes, &mut walks);
                (deltas, walks)
            })
            .await;
        for ((bucket, key), delta) in deltas {
            let b = state.buckets.entry(bucket).or_default();
            b.deltas.entry(key).or_default().merge(&delta, 1);
        }
        for (id, walk) in walks {
            let b = state.buckets.entry(bucket_of(&id)).or_default();
            b.dirty.insert(id.clone());
            state.walks.insert(id, walk);
        }
        Ok(())
    }

    /// Writes what `state` folded, in transactions of whole buckets (see
    /// [`State`]), at most `chunks` of them, the feed position with the
    /// last; `false` when the lease turned out lost (nothing more written,
    /// and `state` starts again from the store).
    ///
    /// When the write is only due (nobody waits for it), it pauses after
    /// each transaction twice as long as the transaction took. Splitting
    /// alone did not shorten the soak's stall: a write of a few seconds'
    /// walks is a few hundred milliseconds of CPU (serializing them, and
    /// SQLite parsing and indexing them), and on two cores a burst like
    /// that leaves requests too little for long enough to queue them.
    async fn write(
        &self,
        state: &mut State,
        chunks: usize,
        when: Write,
    ) -> Result<bool, StoreError> {
        for _ in 0..chunks {
            let began = Instant::now();
            let mut ids = Vec::new();
            let mut deltas: BTreeMap<RollupKey, Funnel> = BTreeMap::new();
            while ids.len() < self.write_chunk.max(1) {
                let Some((_, b)) = state.buckets.pop_first() else {
                    break;
                };
                ids.extend(b.dirty);
                for (key, delta) in b.deltas {
                    deltas.entry(key).or_default().merge(&delta, 1);
                }
            }
            let last = state.buckets.is_empty();
            let walks: Vec<Walked> = ids
                .iter()
                .filter_map(|id| state.walks.get(id).cloned())
                .collect();
            let rows = self.lane().run(move || walk_rows(walks.into_iter())).await;
            let batch = self.batch(deltas, rows).await?;
            let (cursor, events) = match last {
                true => (state.cursor.as_deref(), state.events),
                false => (None, 0),
            };
            let written = self
                .store
                .apply_rollups(ROLLUP_SINK, &self.worker, cursor, events, now_ms(), &batch)
                .await?;
            if !written {
                state.reset();
                return Ok(false);
            }
            tracing::debug!(
                walks = ids.len(),
                last,
                elapsed_us = began.elapsed().as_micros() as u64,
                "funnel rollups: wrote walks"
            );
            if last {
                self.written(state);
            }
            // The last transaction rests too: a settle may follow.
            self.urgency.rest(when, began.elapsed() * 2).await;
            if last {
                break;
            }
        }
        Ok(true)
    }

    /// After the last transaction of a write.
    fn written(&self, state: &mut State) {
        state.events = 0;
        state.since = None;
        // The written position is the store's now; memory holds only
        // what it has, so the cache may shrink to its capacity.
        state.cursor = None;
        let over = state.walks.len().saturating_sub(self.walk_capacity);
        if over > 0 {
            // Arbitrary eviction is fine: a miss costs one read.
            let drop: Vec<String> = state.walks.keys().take(over).cloned().collect();
            for id in drop {
                state.walks.remove(&id);
            }
        }
    }

    /// The stored sums plus `deltas` (per hour; their days are added
    /// here), and the walks as they stand now.
    async fn batch(
        &self,
        deltas: BTreeMap<RollupKey, Funnel>,
        walks: Vec<WalkRow>,
    ) -> Result<RollupBatch, StoreError> {
        let deltas = with_days(deltas);
        let keys: Vec<RollupKey> = deltas.keys().cloned().collect();
        let stored = self.store.rollups_of(&keys).await?;
        let rollups = self.lane().run(move || sums(deltas, &stored)).await?;
        Ok(RollupBatch { walks, rollups })
    }

    /// Settles up to a batch of sessions quiet longer than any idle
    /// threshold: their drop-off goes into the rollups, so a funnel
    /// counts only the recently quiet ones itself. The number settled.
    /// Runs only with nothing folded and unwritten, so the stored walks
    /// are the current ones.
    async fn settle(&self, state: &mut State, now: i64, when: Write) -> Result<usize, StoreError> {
        let began = Instant::now();
        let rows = self
            .store
            .quiet_walks(now - SETTLE_AFTER_MS, SETTLE_BATCH)
            .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        for row in &rows {
            state.walks.remove(&row.session_id);
        }
        // Reading and writing back a batch of walks is the same CPU work
        // as a write's: on the lane, away from the requests.
        let (deltas, rows) = self.lane().run(move || settled(rows)).await?;
        let n = rows.len();
        let batch = self.batch(deltas, rows).await?;
        let written = self
            .store
            .apply_rollups(ROLLUP_SINK, &self.worker, None, 0, now_ms(), &batch)
            .await?;
        if !written {
            state.reset();
            return Ok(0);
        }
        tracing::debug!(
            walks = n,
            elapsed_us = began.elapsed().as_micros() as u64,
            "funnel rollups: settled quiet walks"
        );
        self.urgency.rest(when, began.elapsed() * 2).await;
        Ok(n)
    }

    async fn cohort_id(&self, flow_id: &str, c: &Cohort) -> Result<i64, StoreError> {
        let key = serde_json::to_string(&(c.flow_version, &c.platform, &c.app_version, &c.arms))
            .unwrap_or_default();
        let cache_key = (flow_id.to_owned(), key);
        if let Some(id) = self
            .cohorts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&cache_key)
        {
            return Ok(*id);
        }
        let id = self.store.cohort_id(flow_id, &cache_key.1, c).await?;
        self.cohorts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(cache_key, id);
        Ok(id)
    }

    fn lane(&self) -> &Lane {
        self.lane.get_or_init(|| Lane::spawn("baton-rollups"))
    }

    /// Holds the lease: renewed in the store only once half of it has
    /// passed. Whatever `state` holds is dropped when the lease lapsed
    /// meanwhile, since another replica may have written since.
    async fn claim(&self, state: &mut State, now: i64) -> Result<bool, StoreError> {
        let lease = LEASE.as_millis() as i64;
        if now < state.held_until - lease / 2 {
            return Ok(true);
        }
        if now >= state.held_until {
            state.reset();
        }
        let held = self
            .store
            .claim_sink(ROLLUP_SINK, &self.worker, now, now + lease)
            .await?;
        if held {
            state.held_until = now + lease;
        } else {
            state.reset();
        }
        Ok(held)
    }
}

/// Whether anyone but the loop waits for the aggregator's state.
///
/// A paced write rests between its transactions while holding the state,
/// so that requests get the CPU; a funnel query that asks meanwhile needs
/// the write finished, not paced, so its wait cuts the rests short and the
/// rest of the write goes at full speed.
#[derive(Default)]
struct Urgency {
    waiting: std::sync::atomic::AtomicUsize,
    arrived: tokio::sync::Notify,
}

impl Urgency {
    /// `state`, counted as waited for until it is held.
    async fn lock<'a, T>(
        &self,
        state: &'a tokio::sync::Mutex<T>,
    ) -> tokio::sync::MutexGuard<'a, T> {
        use std::sync::atomic::Ordering;
        self.waiting.fetch_add(1, Ordering::SeqCst);
        // Counted down however the wait ends (the caller may be dropped).
        let _counted = scopeguard::guard(&self.waiting, |n| {
            n.fetch_sub(1, Ordering::SeqCst);
        });
        self.arrived.notify_waiters();
        state.lock().await
    }

    /// After a transaction, when nobody waits for it (see
    /// [`Rollups::write`]): a rest of `length`, ended by anyone waiting.
    async fn rest(&self, when: Write, length: Duration) {
        use std::sync::atomic::Ordering;
        if when == Write::Now {
            return;
        }
        let arrived = self.arrived.notified();
        tokio::pin!(arrived);
        // Registered before the count is read: a waiter that comes after
        // the read is sure to wake this rest.
        arrived.as_mut().enable();
        if self.waiting.load(Ordering::SeqCst) > 0 {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(length) => {}
            () = arrived => {}
        }
    }
}

/// The walks of `rows` settled, and what settling them adds to the sums.
fn settled(rows: Vec<WalkRow>) -> Result<(BTreeMap<RollupKey, Funnel>, Vec<WalkRow>), StoreError> {
    let mut deltas: BTreeMap<RollupKey, Funnel> = BTreeMap::new();
    let mut walks = Vec::with_capacity(rows.len());
    for row in rows {
        let mut walk: Walk = serde_json::from_str(&row.walk).map_err(|e| StoreError::Corrupt {
            table: "funnel_sessions",
            detail: e.to_string(),
        })?;
        let key = hour_key(&row.flow_id, row.created_at, row.cohort_id);
        walk.settle(deltas.entry(key).or_default());
        walks.push((row, walk));
    }
    Ok((deltas, walk_rows(walks.into_iter())))
}

/// The walks of a page's sessions: as stored, or new.
fn parse_walks(rows: HashMap<String, WalkRow>) -> HashMap<String, Walked> {
    rows.into_iter()
        .map(|(id, row)| {
            let walk = if row.walk.is_empty() {
                Walk::default()
            } else {
                serde_json::from_str(&row.walk).unwrap_or_else(|e| {
                    tracing::error!(session = %row.session_id, error = %e, "a stored funnel walk is unreadable; the session counts from here");
                    Walk::default()
                })
            };
            (id, (row, walk))
        })
        .collect()
}

/// Walks `events` on from `walks`: what they add per hour, with a session
/// for each of `started`.
fn apply(
    events: &[FunnelEvent],
    started: Vec<(u64, RollupKey)>,
    outcomes: &HashMap<(String, String), Vec<String>>,
    walks: &mut HashMap<String, Walked>,
) -> BTreeMap<(u64, RollupKey), Funnel> {
    let mut deltas: BTreeMap<(u64, RollupKey), Funnel> = BTreeMap::new();
    for key in started {
        deltas.entry(key).or_default().sessions += 1;
    }
    // The page holds each session's events together: its hour's delta
    // is looked up once per run of them, not per event.
    let mut i = 0;
    while i < events.len() {
        let session = &events[i].session_id;
        let run = events[i..]
            .iter()
            .take_while(|e| &e.session_id == session)
            .count();
        let run = &events[i..i + run];
        i += run.len();
        // A session deleted since is not counted.
        let Some((row, walk)) = walks.get_mut(session) else {
            continue;
        };
        // Already in the walk: written before a write was cut short.
        let run = &run[run.partition_point(|e| e.seq <= row.seq)..];
        let Some(newest) = run.last() else {
            continue;
        };
        row.seq = newest.seq;
        row.last_at = run.iter().fold(row.last_at, |t, e| t.max(e.created_at));
        if row.cohort_id == 0 {
            continue;
        }
        let key = hour_key(&row.flow_id, row.created_at, row.cohort_id);
        let delta = deltas.entry((bucket_of(session), key)).or_default();
        for e in run {
            if let Some(step) = step_of(e, outcomes) {
                walk.apply(&step, delta);
            }
        }
    }
    deltas
}

/// The walks as rows to store.
fn walk_rows(walks: impl Iterator<Item = Walked>) -> Vec<WalkRow> {
    walks
        .map(|(mut row, walk)| {
            row.idle_node = walk.idle_node().map(str::to_owned);
            row.walk = to_text(&walk);
            row
        })
        .collect()
}

/// The new sums: what is `stored` plus `deltas`, as text.
fn sums(
    deltas: BTreeMap<RollupKey, Funnel>,
    stored: &HashMap<RollupKey, String>,
) -> Result<Vec<(RollupKey, String)>, StoreError> {
    let mut out = Vec::with_capacity(deltas.len());
    for (key, delta) in deltas {
        let mut sum: Funnel = match stored.get(&key) {
            Some(text) => serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
                table: "funnel_rollups",
                detail: e.to_string(),
            })?,
            None => Funnel::default(),
        };
        sum.merge(&delta, 1);
        out.push((key, to_text(&sum)));
    }
    Ok(out)
}

fn to_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "{}".into())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use super::{Urgency, Write};

    /// Longer than any test may run: a rest that is not cut short fails
    /// the test by its guard below rather than passing by chance.
    const FOREVER: Duration = Duration::from_secs(3600);
    const GUARD: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn a_query_waiting_for_the_state_ends_the_rest_of_a_paced_write() {
        let urgency = Arc::new(Urgency::default());
        let state = Arc::new(tokio::sync::Mutex::new(()));
        let held = state.clone().lock_owned().await;
        let resting = tokio::spawn({
            let urgency = urgency.clone();
            async move {
                urgency.rest(Write::Due, FOREVER).await;
                drop(held);
            }
        });
        let got = tokio::time::timeout(GUARD, urgency.lock(&state)).await;
        assert!(
            got.is_ok(),
            "the write went on resting while a query waited"
        );
        drop(got);
        resting.await.unwrap();
        assert_eq!(urgency.waiting.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_rest_begun_while_a_query_waits_does_not_start() {
        let urgency = Urgency::default();
        urgency.waiting.fetch_add(1, Ordering::SeqCst);
        let rest = tokio::time::timeout(GUARD, urgency.rest(Write::Due, FOREVER)).await;
        assert!(rest.is_ok(), "rested with a query waiting");
        // A write somebody waits for never rests.
        let urgency = Urgency::default();
        let rest = tokio::time::timeout(GUARD, urgency.rest(Write::Now, FOREVER)).await;
        assert!(rest.is_ok(), "a write asked for now rested");
    }

    #[tokio::test]
    async fn a_query_that_gave_up_waiting_is_no_longer_counted() {
        let urgency = Urgency::default();
        let state = tokio::sync::Mutex::new(());
        let held = state.lock().await;
        let gave_up = tokio::time::timeout(Duration::from_millis(20), urgency.lock(&state)).await;
        assert!(gave_up.is_err());
        assert_eq!(urgency.waiting.load(Ordering::SeqCst), 0);
        drop(held);
        // With nobody waiting, a rest lasts its length.
        let rest =
            tokio::time::timeout(Duration::from_millis(20), urgency.rest(Write::Due, FOREVER))
                .await;
        assert!(rest.is_err(), "a rest ended with nobody waiting");
    }
}

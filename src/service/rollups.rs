//! The funnel aggregator: reads the event feed from where it stopped and
//! keeps, per flow, hour (of the session's start) and cohort (version,
//! platform, app version, experiment arms), the sum of what sessions did
//! ([`crate::analytics::funnel::Funnel`]), so a funnel over a million
//! sessions reads a few thousand sums instead of their logs. Each batch is
//! written with its place in the feed in one transaction, under a lease:
//! one replica aggregates at a time, and a batch counts exactly once.
//!
//! A session falls in the cohort it had when the aggregator first met it
//! (its experiment arms as pinned when it started).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::lane::Lane;
use super::now_ms;
use crate::analytics::funnel::{Funnel, Step, Walk};
use crate::store::feed::{FunnelEvent, FunnelPage};
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
const LEASE: Duration = Duration::from_secs(30);

pub struct Rollups {
    store: Store,
    worker: String,
    /// Until when this replica holds the lease, as last written.
    held_until: Mutex<i64>,
    /// Cohort ids by flow and key.
    cohorts: Mutex<HashMap<(String, String), i64>>,
    /// One batch at a time in this process (the loop and a query's
    /// catch-up).
    running: tokio::sync::Mutex<()>,
    /// Started on first use: most processes that build a service never
    /// aggregate.
    lane: std::sync::OnceLock<Lane>,
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
            held_until: Mutex::new(0),
            cohorts: Mutex::default(),
            running: tokio::sync::Mutex::new(()),
            lane: std::sync::OnceLock::new(),
        }
    }

    /// Aggregates until `shutdown`, looking for new events every `poll`
    /// once it has caught up.
    pub async fn run(&self, poll: Duration, shutdown: CancellationToken) {
        loop {
            // Only a full batch goes straight on: a busy server's events
            // are then folded in a few large batches per poll rather than
            // in a stream of small ones, each paying for its sums and its
            // transaction.
            let wait = match self.step_sized().await {
                Ok((_, true)) => Duration::ZERO,
                Ok((_, false)) => poll,
                Err(e) => {
                    tracing::warn!(error = %e, "funnel rollups stalled; trying again");
                    poll.max(Duration::from_secs(2))
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Aggregates up to `batches` batches now (a funnel query's catch-up):
    /// `true` when it reached the end of the feed.
    pub async fn catch_up(&self, batches: usize) -> Result<bool, StoreError> {
        for _ in 0..batches {
            if self.step().await? == 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// One batch: the events handled, or once caught up the sessions
    /// settled (0 when there was nothing to do, or another replica holds
    /// the lease).
    pub async fn step(&self) -> Result<usize, StoreError> {
        Ok(self.step_sized().await?.0)
    }

    /// [`Rollups::step`], and whether the batch was full (more may wait).
    async fn step_sized(&self) -> Result<(usize, bool), StoreError> {
        let _one = self.running.lock().await;
        let now = now_ms();
        if !self.claim(now).await? {
            return Ok((0, false));
        }
        let cursor = self
            .store
            .sink_state(ROLLUP_SINK)
            .await?
            .and_then(|s| s.cursor)
            .unwrap_or_default();
        let after = (!cursor.is_empty()).then_some(cursor.as_str());
        let page = self.store.funnel_feed(after, BATCH).await?;
        let Some(last) = page.end.clone() else {
            // Caught up: time to settle the long quiet.
            let n = self.settle(now).await?;
            return Ok((n, n as i64 >= SETTLE_BATCH));
        };
        let n = page.events;
        let batch = self.fold(page).await?;
        let written = self
            .store
            .apply_rollups(
                ROLLUP_SINK,
                &self.worker,
                Some(&last),
                n as i64,
                now_ms(),
                &batch,
            )
            .await?;
        if !written {
            *self.held_until.lock().unwrap_or_else(|p| p.into_inner()) = 0;
            return Ok((0, false));
        }
        Ok((n, n as i64 >= BATCH))
    }

    /// A page's batch. What it reads comes from the store here; parsing
    /// the page and the walks, folding and writing out the sums are CPU
    /// work and run on the lane, away from the requests.
    async fn fold(&self, page: FunnelPage) -> Result<RollupBatch, StoreError> {
        let ids: Vec<String> = page.session_ids().map(str::to_owned).collect();
        let mut rows: HashMap<String, WalkRow> = self
            .store
            .session_walks(&ids)
            .await?
            .into_iter()
            .map(|row| (row.session_id.clone(), row))
            .collect();
        // The hours that gain a session.
        let mut started = Vec::new();
        let new: Vec<String> = ids
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
                    started.push(hour_key(&f.flow_id, f.created_at, cohort_id));
                }
                let row = WalkRow {
                    session_id: f.id.clone(),
                    flow_id: f.flow_id,
                    cohort_id,
                    created_at: f.created_at,
                    last_at: f.created_at,
                    idle_node: None,
                    walk: String::new(),
                };
                rows.insert(f.id, row);
            }
        }
        let lane = self.lane();
        let (events, walks) = lane
            .run(move || Ok::<_, StoreError>((page.parse()?, parse_walks(rows))))
            .await?;
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
                let mut walks = walks;
                let deltas = apply(&events, started, &outcomes, &mut walks);
                (deltas, walk_rows(walks.into_values()))
            })
            .await;
        self.batch(deltas, walks).await
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
    async fn settle(&self, now: i64) -> Result<usize, StoreError> {
        let rows = self
            .store
            .quiet_walks(now - SETTLE_AFTER_MS, SETTLE_BATCH)
            .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut deltas: BTreeMap<RollupKey, Funnel> = BTreeMap::new();
        let mut walks = Vec::with_capacity(rows.len());
        for row in rows {
            let mut walk: Walk =
                serde_json::from_str(&row.walk).map_err(|e| StoreError::Corrupt {
                    table: "funnel_sessions",
                    detail: e.to_string(),
                })?;
            let key = hour_key(&row.flow_id, row.created_at, row.cohort_id);
            walk.settle(deltas.entry(key).or_default());
            walks.push((row, walk));
        }
        let n = walks.len();
        let batch = self.batch(deltas, walk_rows(walks.into_iter())).await?;
        let written = self
            .store
            .apply_rollups(ROLLUP_SINK, &self.worker, None, 0, now_ms(), &batch)
            .await?;
        Ok(if written { n } else { 0 })
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
    /// passed.
    async fn claim(&self, now: i64) -> Result<bool, StoreError> {
        let lease = LEASE.as_millis() as i64;
        let until = *self.held_until.lock().unwrap_or_else(|p| p.into_inner());
        if now < until - lease / 2 {
            return Ok(true);
        }
        let held = self
            .store
            .claim_sink(ROLLUP_SINK, &self.worker, now, now + lease)
            .await?;
        *self.held_until.lock().unwrap_or_else(|p| p.into_inner()) =
            if held { now + lease } else { 0 };
        Ok(held)
    }
}

/// The walks of a page's sessions: as stored, or new.
fn parse_walks(rows: HashMap<String, WalkRow>) -> HashMap<String, (WalkRow, Walk)> {
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
    started: Vec<RollupKey>,
    outcomes: &HashMap<(String, String), Vec<String>>,
    walks: &mut HashMap<String, (WalkRow, Walk)>,
) -> BTreeMap<RollupKey, Funnel> {
    let mut deltas: BTreeMap<RollupKey, Funnel> = BTreeMap::new();
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
        row.last_at = run.iter().fold(row.last_at, |t, e| t.max(e.created_at));
        if row.cohort_id == 0 {
            continue;
        }
        let delta = deltas
            .entry(hour_key(&row.flow_id, row.created_at, row.cohort_id))
            .or_default();
        for e in run {
            if let Some(step) = step_of(e, outcomes) {
                walk.apply(&step, delta);
            }
        }
    }
    deltas
}

/// The walks as rows to store.
fn walk_rows(walks: impl Iterator<Item = (WalkRow, Walk)>) -> Vec<WalkRow> {
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

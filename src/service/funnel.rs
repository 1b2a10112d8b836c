//! Funnels: the sessions of a flow in a time range, folded by
//! [`crate::analytics::funnel`], overall and per group (version, platform,
//! app version, experiment arm). Whole hours come from the rollups
//! ([`super::rollups`]); the partial hours at either end of a range are
//! read from the session log, at most `--funnel-max-logged` sessions
//! (default [`MAX_FUNNEL_SESSIONS`]).

use std::collections::BTreeMap;

use thiserror::Error;

use super::rollups::{DAY_MS, HOUR_MS};
use super::{Baton, ServiceError, now_ms};
use crate::analytics::funnel::{Funnel, SessionLog, Step, StepStats};
use crate::codes::Code;
use crate::store::rollups::Cohort;
pub use crate::store::search::MAX_FUNNEL_SESSIONS;

/// Default of `idle`: a session quiet this long has dropped off.
pub const DEFAULT_IDLE_MS: i64 = 30 * 60 * 1000;
/// Default window: the last 30 days.
pub const DEFAULT_WINDOW_MS: i64 = 30 * 86_400_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grouping {
    Version,
    Platform,
    AppVersion,
    /// The variant of this experiment each session was pinned to.
    ExperimentArm(String),
}

#[derive(Debug, Clone)]
pub struct FunnelQuery {
    pub flow_id: String,
    pub version: Option<i32>,
    /// Sessions started at or after (epoch ms); default 30 days ago.
    pub from: Option<i64>,
    /// Sessions started before; default now.
    pub to: Option<i64>,
    pub group_by: Option<Grouping>,
    pub idle_ms: i64,
}

#[derive(Debug, Clone)]
pub struct FunnelReport {
    pub from: i64,
    pub to: i64,
    pub overall: Funnel,
    /// By group key, when grouped.
    pub groups: BTreeMap<String, Funnel>,
}

#[derive(Debug, Error)]
pub enum AnalyticsError {
    #[error("the range is empty or reversed: from {from} is not before to {to}")]
    RangeInvalid { from: String, to: String },
    #[error("more than {max} sessions in the partial hours at either end of the range")]
    TooLarge { max: i64 },
    #[error("idle threshold {minutes} minutes is outside 0–10080")]
    IdleInvalid { minutes: i32 },
    #[error("{why}")]
    GroupInvalid { why: String },
    #[error("`first` is {first}; a feed page has 1 to 1000 events")]
    FeedLimit { first: i64 },
}

impl AnalyticsError {
    pub fn code(&self) -> Code {
        match self {
            AnalyticsError::RangeInvalid { .. } => Code::FunnelRangeInvalid,
            AnalyticsError::IdleInvalid { .. } => Code::FunnelIdleInvalid,
            AnalyticsError::TooLarge { .. } => Code::FunnelTooLarge,
            AnalyticsError::GroupInvalid { .. } => Code::FunnelGroupInvalid,
            AnalyticsError::FeedLimit { .. } => Code::EventFeedLimitInvalid,
        }
    }

    pub fn hint(&self) -> Option<String> {
        Some(self.code().hint().to_string())
    }
}

/// The group a session falls in, from its version, platform, app version
/// and, only when grouping by arm, its variant of that experiment.
fn group_of(
    g: &Grouping,
    version: i32,
    platform: Option<&str>,
    app_version: Option<&str>,
    variant: impl FnOnce(&str) -> Option<String>,
) -> String {
    let or_none = |v: Option<&str>| v.unwrap_or("(none)").to_owned();
    match g {
        Grouping::Version => version.to_string(),
        Grouping::Platform => or_none(platform),
        Grouping::AppVersion => or_none(app_version),
        Grouping::ExperimentArm(id) => {
            variant(id).unwrap_or_else(|| "(not in the experiment)".into())
        }
    }
}

fn group_key(s: &crate::store::search::FunnelSession, g: &Grouping) -> String {
    group_of(
        g,
        s.flow_version,
        s.platform.as_deref(),
        s.app_version.as_deref(),
        |id| {
            let pins = s.experiments.as_object()?;
            crate::experiments::live::counted_arms(pins)
                .find(|(e, _)| *e == id)
                .map(|(_, variant)| variant.to_owned())
        },
    )
}

/// Batches of events a funnel query aggregates before it answers (20,000
/// events), so it sees the sessions of the last moments; a larger backlog
/// is left to the background aggregator.
const CATCH_UP_BATCHES: usize = (20_000 / super::rollups::BATCH) as usize;

fn cohort_key(c: &Cohort, g: &Grouping) -> String {
    group_of(
        g,
        c.flow_version,
        c.platform.as_deref(),
        c.app_version.as_deref(),
        |id| {
            serde_json::from_str::<BTreeMap<String, String>>(&c.arms)
                .ok()
                .and_then(|mut arms| arms.remove(id))
        },
    )
}

impl FunnelReport {
    fn add(&mut self, part: &Funnel, group: Option<String>) {
        self.overall.merge(part, 1);
        if let Some(g) = group {
            self.groups.entry(g).or_default().merge(part, 1);
        }
    }
}

impl Baton {
    /// The funnel of `q`: whole hours of the range from the rollups (with
    /// the sessions idle now found in the aggregator's table), the partial
    /// hours at either end from the session log.
    pub async fn funnel(&self, q: &FunnelQuery) -> Result<FunnelReport, ServiceError> {
        if let Some(Grouping::ExperimentArm(id)) = &q.group_by
            && self.experiments().get(id).is_none()
        {
            return Err(AnalyticsError::GroupInvalid {
                why: format!("no experiment `{id}` is loaded"),
            }
            .into());
        }
        if self.store().flow_versions(&q.flow_id).await?.is_empty() {
            return Err(ServiceError::FlowNotFound {
                flow_id: q.flow_id.clone(),
            });
        }
        let now = now_ms();
        // By default the range ends at the next full hour, so that it is
        // read from the rollups alone.
        let to = q.to.unwrap_or_else(|| (now / HOUR_MS + 1) * HOUR_MS);
        let from = q.from.unwrap_or(to - DEFAULT_WINDOW_MS);
        if from >= to {
            return Err(AnalyticsError::RangeInvalid {
                from: crate::engine::rfc3339(from),
                to: crate::engine::rfc3339(to),
            }
            .into());
        }
        self.rollups().catch_up(CATCH_UP_BATCHES).await?;
        let mut report = FunnelReport {
            from,
            to,
            overall: Funnel::default(),
            groups: BTreeMap::new(),
        };
        let first_hour = from.div_euclid(HOUR_MS) * HOUR_MS
            + if from.rem_euclid(HOUR_MS) == 0 {
                0
            } else {
                HOUR_MS
            };
        let last_hour = to.div_euclid(HOUR_MS) * HOUR_MS;
        let logged = if first_hour < last_hour {
            self.add_rollups(q, first_hour, last_hour, now, &mut report)
                .await?;
            vec![(from, first_hour), (last_hour, to)]
        } else {
            vec![(from, to)]
        };
        for (a, b) in logged {
            if a < b {
                self.add_logged(q, a, b, now, &mut report).await?;
            }
        }
        Ok(report)
    }

    async fn add_rollups(
        &self,
        q: &FunnelQuery,
        first_hour: i64,
        last_hour: i64,
        now: i64,
        report: &mut FunnelReport,
    ) -> Result<(), ServiceError> {
        let store = self.store();
        // Each counted cohort's group, worked out once per query.
        let groups: BTreeMap<i64, Option<String>> = store
            .cohorts(&q.flow_id)
            .await?
            .into_iter()
            .filter(|c| q.version.is_none_or(|v| v == c.flow_version))
            .map(|c| (c.id, q.group_by.as_ref().map(|g| cohort_key(&c, g))))
            .collect();
        // Whole days from the day sums, the hours around them from the hour
        // sums.
        let first_day = (first_hour + DAY_MS - 1).div_euclid(DAY_MS) * DAY_MS;
        let last_day = last_hour.div_euclid(DAY_MS) * DAY_MS;
        let spans = if first_day < last_day {
            vec![
                (HOUR_MS, first_hour, first_day),
                (DAY_MS, first_day, last_day),
                (HOUR_MS, last_day, last_hour),
            ]
        } else {
            vec![(HOUR_MS, first_hour, last_hour)]
        };
        let mut rows = Vec::new();
        for (span, a, b) in spans {
            if a < b {
                rows.extend(store.rollup_range(&q.flow_id, span, a, b).await?);
            }
        }
        for (cohort_id, data) in rows {
            let Some(group) = groups.get(&cohort_id) else {
                continue;
            };
            let part: Funnel = serde_json::from_str(&data).map_err(|e| {
                ServiceError::from(crate::store::StoreError::Corrupt {
                    table: "funnel_rollups",
                    detail: e.to_string(),
                })
            })?;
            report.add(&part, group.clone());
        }
        for (cohort_id, node, sessions) in store
            .idle_sessions(&q.flow_id, now - q.idle_ms, first_hour, last_hour)
            .await?
        {
            let Some(group) = groups.get(&cohort_id) else {
                continue;
            };
            let mut part = Funnel::default();
            part.drop_at(&node, sessions);
            report.add(&part, group.clone());
        }
        Ok(())
    }

    /// The sessions started in `[from, to)`, folded from their logs.
    async fn add_logged(
        &self,
        q: &FunnelQuery,
        from: i64,
        to: i64,
        now: i64,
        report: &mut FunnelReport,
    ) -> Result<(), ServiceError> {
        let max = self.inner.funnel_max_logged;
        let sessions = self
            .store()
            .funnel_sessions(&q.flow_id, q.version, from, to, max + 1)
            .await?;
        if sessions.len() as i64 > max {
            return Err(AnalyticsError::TooLarge { max }.into());
        }
        for s in &sessions {
            let mut part = Funnel::default();
            part.add(&session_log(s), now, q.idle_ms);
            report.add(&part, q.group_by.as_ref().map(|g| group_key(s, g)));
        }
        let mut attempts = Funnel::default();
        for t in self
            .store()
            .funnel_steps(&q.flow_id, q.version, from, to)
            .await?
        {
            attempts.nodes.entry(t.node).or_default().step = Some(StepStats {
                attempts: t.attempts,
                retries: t.retries,
                failures: t.failures,
            });
        }
        // Per group they are in the rollups only; overall they add up.
        report.overall.merge(&attempts, 1);
        Ok(())
    }
}

fn session_log(s: &crate::store::search::FunnelSession) -> SessionLog {
    let mut steps = Vec::with_capacity(s.events.len());
    for (kind, payload, at) in &s.events {
        let text = |k: &str| payload[k].as_str().unwrap_or_default().to_string();
        match kind.as_str() {
            "entered" => steps.push(Step::Entered {
                node: text("node"),
                kind: text("node_kind"),
                at: *at,
            }),
            "submitted" => steps.push(Step::Submitted {
                action: text("action"),
            }),
            "went_back" => steps.push(Step::WentBack {
                to: text("to"),
                at: *at,
            }),
            "ended" => steps.push(Step::Ended),
            "operated" if payload["action"] == "retry" => steps.push(Step::Reopened),
            _ => {}
        }
    }
    SessionLog {
        steps,
        last_at: s.updated_at,
    }
}

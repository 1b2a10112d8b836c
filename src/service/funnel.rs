//! Funnels: the sessions of a flow in a time range, folded by
//! [`crate::analytics::funnel`], overall and per group (version, platform,
//! app version). Reads the session log for the range; at most
//! [`MAX_FUNNEL_SESSIONS`] sessions per funnel.

use std::collections::BTreeMap;

use thiserror::Error;

use super::{Baton, ServiceError, now_ms};
use crate::analytics::funnel::{Funnel, SessionLog, Step};
use crate::codes::Code;
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
    /// Backend step attempts by node (all groups together).
    pub steps: BTreeMap<String, crate::store::search::StepTally>,
}

#[derive(Debug, Error)]
pub enum AnalyticsError {
    #[error("the range is empty or reversed: from {from} is not before to {to}")]
    RangeInvalid { from: String, to: String },
    #[error("more than {max} sessions in the range")]
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
            AnalyticsError::RangeInvalid { .. } | AnalyticsError::IdleInvalid { .. } => {
                Code::FunnelRangeInvalid
            }
            AnalyticsError::TooLarge { .. } => Code::FunnelTooLarge,
            AnalyticsError::GroupInvalid { .. } => Code::FunnelGroupInvalid,
            AnalyticsError::FeedLimit { .. } => Code::EventFeedLimitInvalid,
        }
    }

    pub fn hint(&self) -> Option<String> {
        Some(self.code().hint().to_string())
    }
}

fn group_key(s: &crate::store::search::FunnelSession, g: &Grouping) -> String {
    match g {
        Grouping::Version => s.flow_version.to_string(),
        Grouping::Platform => s.platform.clone().unwrap_or_else(|| "(none)".into()),
        Grouping::AppVersion => s.app_version.clone().unwrap_or_else(|| "(none)".into()),
        Grouping::ExperimentArm(id) => s.experiments[id]["variant"]
            .as_str()
            .map_or_else(|| "(not in the experiment)".into(), str::to_string),
    }
}

impl Baton {
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
        let to = q.to.unwrap_or(now + 1);
        let from = q.from.unwrap_or(to - DEFAULT_WINDOW_MS);
        if from >= to {
            return Err(AnalyticsError::RangeInvalid {
                from: crate::engine::rfc3339(from),
                to: crate::engine::rfc3339(to),
            }
            .into());
        }
        let sessions = self
            .store()
            .funnel_sessions(&q.flow_id, q.version, from, to, MAX_FUNNEL_SESSIONS + 1)
            .await?;
        if sessions.len() as i64 > MAX_FUNNEL_SESSIONS {
            return Err(AnalyticsError::TooLarge {
                max: MAX_FUNNEL_SESSIONS,
            }
            .into());
        }
        let mut report = FunnelReport {
            from,
            to,
            overall: Funnel::default(),
            groups: BTreeMap::new(),
            steps: self
                .store()
                .funnel_steps(&q.flow_id, q.version, from, to)
                .await?
                .into_iter()
                .map(|t| (t.node.clone(), t))
                .collect(),
        };
        for s in &sessions {
            let log = session_log(s);
            report.overall.add(&log, now, q.idle_ms);
            if let Some(g) = &q.group_by {
                report
                    .groups
                    .entry(group_key(s, g))
                    .or_default()
                    .add(&log, now, q.idle_ms);
            }
        }
        Ok(report)
    }
}

fn session_log(s: &crate::store::search::FunnelSession) -> SessionLog {
    let mut steps = Vec::with_capacity(s.events.len());
    let mut completed = false;
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
            "ended" => {
                steps.push(Step::Ended);
                completed = steps.iter().rev().find_map(|st| match st {
                    Step::Entered { kind, .. } => Some(kind == "end"),
                    _ => None,
                }) == Some(true);
            }
            _ => {}
        }
    }
    let closed = matches!(s.status.as_str(), "COMPLETED" | "FAILED" | "EXPIRED");
    SessionLog {
        steps,
        completed,
        closed,
        last_at: s.updated_at,
    }
}

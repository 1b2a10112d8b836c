//! Admin GraphQL for analytics: `funnel` (`READ_RESULTS`, viewer and up)
//! and `eventFeed`, every session event in a resumable order
//! (`READ_SESSIONS`: events carry what users entered).

use async_graphql::{
    Context, Enum, ID, InputValueError, InputValueResult, Json, Object, Scalar, ScalarType,
    SimpleObject, Value as GqlValue,
};

use crate::analytics::funnel::Funnel as Fold;
use crate::auth::{Permission, require};
use crate::engine::rfc3339;
use crate::service::Baton;
use crate::service::funnel::{DEFAULT_IDLE_MS, FunnelQuery, Grouping};

/// A point in time as an RFC 3339 string (`2026-12-05T09:30:00Z`).
#[derive(Debug, Clone, Copy)]
pub struct DateTime(pub i64);

#[Scalar]
impl ScalarType for DateTime {
    fn parse(value: GqlValue) -> InputValueResult<Self> {
        let GqlValue::String(text) = &value else {
            return Err(InputValueError::expected_type(value));
        };
        crate::engine::parse_rfc3339(text)
            .map(DateTime)
            .map_err(|e| InputValueError::custom(format!("`{text}` is not an RFC 3339 time: {e}")))
    }

    fn to_value(&self) -> GqlValue {
        GqlValue::String(rfc3339(self.0))
    }
}

/// What a funnel is split by.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum FunnelGroup {
    /// The flow version each session is pinned to.
    Version,
    Platform,
    AppVersion,
    /// The arm of `experiment` each session was pinned to (`(not in the
    /// experiment)` for the others).
    ExperimentArm,
}

/// One node of a funnel.
#[derive(SimpleObject)]
pub struct FunnelNode {
    pub node: ID,
    /// Sessions that entered it at least once.
    pub entered: i64,
    /// Sessions whose walk stopped here without reaching an `end`: ended
    /// elsewhere (failed, cancelled) or idle longer than `idleMinutes`.
    pub dropped: i64,
    /// Time from entering it to the next node (median, 90th percentile), ms.
    pub median_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    /// Backend steps: attempts, failed attempts tried again, and attempts
    /// that failed for good; null for other nodes.
    pub step_attempts: Option<i64>,
    pub step_retries: Option<i64>,
    pub step_failures: Option<i64>,
}

/// How many times sessions went from one node to another.
#[derive(SimpleObject)]
pub struct FunnelEdge {
    pub from: ID,
    pub to: ID,
    /// The screen's action, `back`, or null (a decision's or a step's edge).
    pub action: Option<String>,
    pub count: i64,
}

/// One group's funnel.
#[derive(SimpleObject)]
pub struct FunnelPart {
    /// The version number, platform or app version (`(none)` when unsent).
    pub key: String,
    pub sessions: i64,
    pub nodes: Vec<FunnelNode>,
    pub edges: Vec<FunnelEdge>,
}

/// Where a flow's sessions go, drop off and spend time.
#[derive(SimpleObject)]
pub struct Funnel {
    pub nodes: Vec<FunnelNode>,
    pub edges: Vec<FunnelEdge>,
    /// Sessions counted (started in the range; previews left out).
    pub sessions: i64,
    pub from: DateTime,
    pub to: DateTime,
    /// Per group, when `groupBy` is given.
    pub groups: Vec<FunnelPart>,
}

/// Nodes in the flow's order (then any the flow no longer has).
fn nodes_of(fold: &Fold, order: &[String]) -> Vec<FunnelNode> {
    let mut ids: Vec<&String> = fold.nodes.keys().collect();
    ids.sort_by_key(|id| order.iter().position(|o| o == *id).unwrap_or(usize::MAX));
    ids.into_iter()
        .map(|id| {
            let s = &fold.nodes[id];
            let p = s.durations.percentiles();
            let step = s.step;
            FunnelNode {
                node: ID(id.clone()),
                entered: s.entered,
                dropped: s.dropped,
                median_ms: p.map(|(m, _)| m),
                p90_ms: p.map(|(_, p90)| p90),
                step_attempts: step.map(|t| t.attempts),
                step_retries: step.map(|t| t.retries),
                step_failures: step.map(|t| t.failures),
            }
        })
        .collect()
}

fn edges_of(fold: &Fold) -> Vec<FunnelEdge> {
    fold.edges
        .iter()
        .map(|(k, n)| FunnelEdge {
            from: ID(k.from.clone()),
            to: ID(k.to.clone()),
            action: k.action.clone(),
            count: *n,
        })
        .collect()
}

/// One session event, as the session log holds it.
#[derive(SimpleObject)]
pub struct FeedEvent {
    /// Pass it as `after` to read on from here.
    pub cursor: String,
    pub session_id: ID,
    /// The event's place in its session (1, 2, …).
    pub seq: i64,
    /// `started`, `entered`, `submitted`, `rejected`, `went_back`,
    /// `step_completed`, `operated`, `experiment_exposed`,
    /// `experiment_converted`, `ended`, …
    pub kind: String,
    pub payload: Json<serde_json::Value>,
    pub at: DateTime,
    pub flow_id: ID,
    pub flow_version: i32,
    pub user_id: ID,
}

/// A page of the event feed.
#[derive(SimpleObject)]
pub struct EventFeedPage {
    pub events: Vec<FeedEvent>,
    /// Where to go on from: the last event's cursor, or `after` again when
    /// nothing new came (null only when the feed is empty).
    pub end_cursor: Option<String>,
}

#[derive(Default)]
pub struct AnalyticsQuery;

#[Object]
impl AnalyticsQuery {
    /// Every session event of every flow, oldest first, in an order that
    /// never skips one committed late: poll with `after: endCursor` to
    /// follow it, and store the cursor to resume after a restart.
    async fn event_feed(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "A cursor from an earlier page; none: the first event.")] after: Option<
            String,
        >,
        #[graphql(desc = "Events per page, 1–1000.", default = 100)] first: i32,
        #[graphql(
            desc = "Skip the past: no events, and an `endCursor` after the newest one now.",
            default = false
        )]
        from_end: bool,
    ) -> async_graphql::Result<EventFeedPage> {
        require(ctx, Permission::ReadSessions).map_err(|e| e.into_graphql())?;
        let baton = ctx.data_unchecked::<Baton>();
        let to_gql = |e| crate::api::error::graphql_error(&e);
        if from_end {
            let end = baton.event_feed_end().await.map_err(to_gql)?;
            return Ok(EventFeedPage {
                events: Vec::new(),
                end_cursor: end,
            });
        }
        let events = baton
            .event_feed(after.as_deref(), i64::from(first))
            .await
            .map_err(to_gql)?;
        let end_cursor = events.last().map(|e| e.cursor.clone()).or(after);
        Ok(EventFeedPage {
            events: events
                .into_iter()
                .map(|e| FeedEvent {
                    cursor: e.cursor,
                    session_id: ID(e.session_id),
                    seq: e.seq,
                    kind: e.kind,
                    payload: Json(e.payload),
                    at: DateTime(e.created_at),
                    flow_id: ID(e.flow_id),
                    flow_version: e.flow_version,
                    user_id: ID(e.user_id),
                })
                .collect(),
            end_cursor,
        })
    }

    /// A flow's funnel over the sessions started in `[from, to)` (default:
    /// the last 30 days), of one `version` or all, optionally per group.
    #[allow(clippy::too_many_arguments)]
    async fn funnel(
        &self,
        ctx: &Context<'_>,
        flow_id: ID,
        version: Option<i32>,
        from: Option<DateTime>,
        to: Option<DateTime>,
        group_by: Option<FunnelGroup>,
        #[graphql(desc = "A session quiet this long has dropped off (0–10080; default 30).")]
        idle_minutes: Option<i32>,
        #[graphql(desc = "The experiment whose arms `EXPERIMENT_ARM` groups by.")]
        experiment: Option<ID>,
    ) -> async_graphql::Result<Funnel> {
        require(ctx, Permission::ReadResults).map_err(|e| e.into_graphql())?;
        let baton = ctx.data_unchecked::<Baton>();
        let to_gql = |e| crate::api::error::graphql_error(&e);
        let idle_ms = match idle_minutes {
            None => DEFAULT_IDLE_MS,
            Some(m) if (0..=10_080).contains(&m) => i64::from(m) * 60_000,
            Some(m) => {
                return Err(to_gql(crate::service::ServiceError::Analytics(
                    crate::service::funnel::AnalyticsError::IdleInvalid { minutes: m },
                )));
            }
        };
        let report = baton
            .funnel(&FunnelQuery {
                flow_id: flow_id.to_string(),
                version,
                from: from.map(|d| d.0),
                to: to.map(|d| d.0),
                group_by: match group_by {
                    None => None,
                    Some(FunnelGroup::Version) => Some(Grouping::Version),
                    Some(FunnelGroup::Platform) => Some(Grouping::Platform),
                    Some(FunnelGroup::AppVersion) => Some(Grouping::AppVersion),
                    Some(FunnelGroup::ExperimentArm) => match experiment {
                        Some(id) => Some(Grouping::ExperimentArm(id.to_string())),
                        None => {
                            return Err(to_gql(crate::service::ServiceError::Analytics(
                                crate::service::funnel::AnalyticsError::GroupInvalid {
                                    why: "EXPERIMENT_ARM needs `experiment`".into(),
                                },
                            )));
                        }
                    },
                },
                idle_ms,
            })
            .await
            .map_err(to_gql)?;
        let order: Vec<String> = match version {
            Some(v) => baton.registry().version(&flow_id, v).await.ok(),
            None => baton.registry().latest(&flow_id),
        }
        .map(|f| f.nodes.iter().map(|n| n.id.clone()).collect())
        .unwrap_or_default();
        Ok(Funnel {
            nodes: nodes_of(&report.overall, &order),
            edges: edges_of(&report.overall),
            sessions: report.overall.sessions,
            from: DateTime(report.from),
            to: DateTime(report.to),
            groups: report
                .groups
                .iter()
                .map(|(key, f)| FunnelPart {
                    key: key.clone(),
                    sessions: f.sessions,
                    nodes: nodes_of(f, &order),
                    edges: edges_of(f),
                })
                .collect(),
        })
    }
}

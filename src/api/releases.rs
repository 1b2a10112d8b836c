//! Admin GraphQL for the release process of flows: flows and their
//! versions, drafts validated on save, publish (with review), rollout,
//! rollback, diffs and the audit log. Reading needs `READ_FLOWS` /
//! `READ_AUDIT` (viewer and up), drafts `SAVE_DRAFTS` (editor and up),
//! everything that changes what sessions get `PUBLISH_FLOWS` (publisher,
//! admin). The key's name is the actor the audit log records.

use async_graphql::connection::{Connection, Edge, EmptyFields, query};
use async_graphql::{Context, Enum, ID, InputObject, Json, Object, SimpleObject};
use serde_json::Value;

use crate::auth::Permission;
use crate::engine::compat::{Cohort, Problem};
use crate::engine::rfc3339;
use crate::flow::diff::{self, Change, ChangeKind, Subject};
use crate::flow::validate::{Issue, Severity};
use crate::service::Baton;
use crate::service::lifecycle::{
    CohortLine, Compatibility, FlowSummaryInfo, Publish, SaveDraft, VersionInfo, VersionStatus,
};
use crate::service::registry::Release;
use crate::store::flows::{AuditRecord, MAX_AUDIT_PAGE, PublishRequestRecord, ReleaseRecord};

#[derive(Default)]
pub struct ReleaseQuery;

#[derive(Default)]
pub struct ReleaseMutation;

use super::schema::to_gql;
use super::steps::need;

/// A flow and what it serves to new sessions.
#[derive(SimpleObject)]
pub struct FlowSummary {
    pub id: ID,
    /// The live version's `title`.
    pub title: Option<String>,
    /// The version new sessions start on (outside the rollout); null
    /// before the first publish.
    pub live_version: Option<i32>,
    /// A version taking a share of new sessions, if any.
    pub rollout: Option<Rollout>,
    /// The newest version, when it is newer than every published one.
    pub open_draft: Option<i32>,
    /// Publishes waiting for a second publisher (`--require-review`).
    pub pending_reviews: Vec<PublishRequest>,
}

/// A share of new sessions on a version, bucketed by user id.
#[derive(SimpleObject)]
pub struct Rollout {
    pub version: i32,
    /// 0–100.
    pub percent: i32,
}

fn rollout_of(r: &ReleaseRecord) -> Option<Rollout> {
    r.rollout_version.map(|version| Rollout {
        version,
        percent: r.rollout_percent,
    })
}

impl From<FlowSummaryInfo> for FlowSummary {
    fn from(f: FlowSummaryInfo) -> Self {
        FlowSummary {
            id: ID(f.flow_id),
            title: f.title,
            live_version: f.release.as_ref().map(|r| r.live_version),
            rollout: f.release.as_ref().and_then(rollout_of),
            open_draft: f.open_draft,
            pending_reviews: f.pending_reviews.into_iter().map(Into::into).collect(),
        }
    }
}

/// A publish recorded under `--require-review`, waiting for another
/// publisher's `publishFlow` of the same version.
#[derive(SimpleObject)]
pub struct PublishRequest {
    pub version: i32,
    pub requested_by: String,
    pub rollout_percent: i32,
    pub message: String,
    #[graphql(name = "override")]
    pub override_reason: Option<String>,
    pub requested_at: String,
}

impl From<PublishRequestRecord> for PublishRequest {
    fn from(r: PublishRequestRecord) -> Self {
        PublishRequest {
            version: r.version,
            requested_by: r.requested_by,
            rollout_percent: r.rollout_percent,
            message: r.message,
            override_reason: r.override_reason,
            requested_at: rfc3339(r.created_at),
        }
    }
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum FlowVersionStatus {
    /// Saved, never published.
    Draft,
    /// Serves new sessions (live, or in a rollout).
    Published,
    /// Was published; serves no new sessions.
    Retired,
}

impl From<VersionStatus> for FlowVersionStatus {
    fn from(s: VersionStatus) -> Self {
        match s {
            VersionStatus::Draft => FlowVersionStatus::Draft,
            VersionStatus::Published => FlowVersionStatus::Published,
            VersionStatus::Retired => FlowVersionStatus::Retired,
        }
    }
}

/// One immutable, numbered version of a flow.
#[derive(SimpleObject)]
pub struct FlowVersion {
    pub flow_id: ID,
    pub number: i32,
    pub status: FlowVersionStatus,
    /// The API key's name that saved it, or `files`.
    pub author: String,
    pub created_at: String,
    pub message: String,
    /// Equal hashes mean equal content.
    pub content_hash: String,
    /// The share of new sessions it gets now, 0–100.
    pub serving_percent: i32,
    pub published_by: Option<String>,
    pub published_at: Option<String>,
    pub pending_review: Option<PublishRequest>,
    /// The text as saved; for versions recorded before texts were kept,
    /// the definition as JSON.
    pub source: String,
}

impl From<VersionInfo> for FlowVersion {
    fn from(v: VersionInfo) -> Self {
        let source = v.record.source.clone().unwrap_or_else(|| {
            serde_json::to_string_pretty(&v.record.definition).unwrap_or_default()
        });
        FlowVersion {
            flow_id: ID(v.record.flow_id),
            number: v.record.version,
            status: v.status.into(),
            author: v.record.author,
            created_at: rfc3339(v.record.created_at),
            message: v.record.message,
            content_hash: v.record.content_hash,
            serving_percent: v.serving_percent,
            published_by: v.published_by,
            published_at: v.published_at.map(rfc3339),
            pending_review: v.pending_review.map(Into::into),
            source,
        }
    }
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum IssueSeverity {
    Error,
    Warning,
}

/// One problem the validator found, as `baton validate` prints it.
#[derive(SimpleObject)]
pub struct ValidationIssue {
    pub severity: IssueSeverity,
    pub code: String,
    /// JSON path of the offending value.
    pub path: String,
    pub node: Option<String>,
    pub message: String,
    pub hint: Option<String>,
    /// 1-based line and column in the saved source, when known.
    pub line: Option<u64>,
    pub column: Option<u64>,
}

impl From<Issue> for ValidationIssue {
    fn from(i: Issue) -> Self {
        ValidationIssue {
            severity: match i.severity {
                Severity::Error => IssueSeverity::Error,
                Severity::Warning => IssueSeverity::Warning,
            },
            code: i.code.to_string(),
            path: i.path,
            node: i.node,
            message: i.message,
            hint: i.hint,
            line: i.line,
            column: i.column,
        }
    }
}

/// What `saveDraft` did: the saved version, or every issue that stopped it.
#[derive(SimpleObject)]
pub struct SaveDraftResult {
    /// Whether the draft was saved (or found: the same content exists).
    pub ok: bool,
    pub version: Option<FlowVersion>,
    /// False when a version with the same content already existed.
    pub created: bool,
    /// Errors (nothing saved) or warnings (saved anyway).
    pub issues: Vec<ValidationIssue>,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum FlowChangeKind {
    Added,
    Removed,
    Changed,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum FlowChangeSubject {
    Flow,
    Node,
    Action,
    Edge,
    Component,
    Rule,
    Setting,
}

/// One difference between two versions.
#[derive(SimpleObject)]
pub struct FlowChange {
    pub kind: FlowChangeKind,
    pub subject: FlowChangeSubject,
    pub node: Option<String>,
    /// Where, list members named by id (`$.nodes[welcome].actions[next]`).
    pub path: String,
    pub before: Option<Json<Value>>,
    pub after: Option<Json<Value>>,
}

impl From<Change> for FlowChange {
    fn from(c: Change) -> Self {
        FlowChange {
            kind: match c.kind {
                ChangeKind::Added => FlowChangeKind::Added,
                ChangeKind::Removed => FlowChangeKind::Removed,
                ChangeKind::Changed => FlowChangeKind::Changed,
            },
            subject: match c.subject {
                Subject::Flow => FlowChangeSubject::Flow,
                Subject::Node => FlowChangeSubject::Node,
                Subject::Action => FlowChangeSubject::Action,
                Subject::Edge => FlowChangeSubject::Edge,
                Subject::Component => FlowChangeSubject::Component,
                Subject::Rule => FlowChangeSubject::Rule,
                Subject::Setting => FlowChangeSubject::Setting,
            },
            node: c.node,
            path: c.path,
            before: c.before.map(Json),
            after: c.after.map(Json),
        }
    }
}

/// The structural difference between two versions of a flow.
#[derive(SimpleObject)]
pub struct FlowDiff {
    pub flow_id: ID,
    pub from: i32,
    pub to: i32,
    pub changes: Vec<FlowChange>,
    /// The same, one line per change (what `baton diff` prints).
    pub text: String,
}

/// One audit record: who did what to which subject, when and why.
#[derive(SimpleObject)]
pub struct AuditEntry {
    pub id: ID,
    pub at: String,
    /// The API key's name, or `files` for the flows directory.
    pub actor: String,
    /// Such as `flow.published`, `flow.rollout_set`, `session.cancelled`.
    pub action: String,
    /// `flow:<id>`, `session:<id>`, `experiment:<id>`…
    pub subject: String,
    pub version: Option<i32>,
    pub message: Option<String>,
    pub detail: Json<Value>,
}

impl From<AuditRecord> for AuditEntry {
    fn from(r: AuditRecord) -> Self {
        AuditEntry {
            id: ID(r.id.to_string()),
            at: rfc3339(r.at),
            actor: r.actor,
            action: r.action,
            subject: r.subject,
            version: r.version,
            message: r.message,
            detail: Json(r.detail),
        }
    }
}

/// An app cohort: platform × app version × advertised capabilities.
#[derive(InputObject)]
pub struct CohortInput {
    pub platform: Option<String>,
    pub app_version: Option<String>,
    /// Omitted: every core kind and no custom one.
    pub capabilities: Option<Vec<String>>,
}

/// A reachable screen a cohort cannot be shown as designed.
#[derive(SimpleObject)]
pub struct ScreenProblem {
    pub node: String,
    pub reason: String,
}

impl From<Problem> for ScreenProblem {
    fn from(p: Problem) -> Self {
        ScreenProblem {
            node: p.node,
            reason: p.reason,
        }
    }
}

/// What one cohort meets in a version.
#[derive(SimpleObject)]
pub struct CohortCompatibility {
    pub platform: Option<String>,
    pub app_version: Option<String>,
    pub capabilities: Option<Vec<String>>,
    /// Sessions of this cohort in the window.
    pub sessions: i64,
    /// Asked for in `cohorts` rather than learned from sessions.
    pub declared: bool,
    /// It would meet a screen it cannot render.
    pub blocking: bool,
    /// Screens and end nodes it can reach.
    pub reachable: Vec<String>,
    /// Screens it cannot render: it would get `CLIENT_UNSUPPORTED`.
    pub unrenderable: Vec<ScreenProblem>,
    /// End and pending screens it gets as the built-in text screen.
    pub degraded: Vec<ScreenProblem>,
}

impl From<CohortLine> for CohortCompatibility {
    fn from(c: CohortLine) -> Self {
        CohortCompatibility {
            blocking: c.report.blocking(),
            platform: c.report.cohort.platform,
            app_version: c.report.cohort.app_version,
            capabilities: c.report.cohort.capabilities,
            sessions: c.sessions,
            declared: c.declared,
            reachable: c.report.reachable,
            unrenderable: c.report.unrenderable.into_iter().map(Into::into).collect(),
            degraded: c.report.degraded.into_iter().map(Into::into).collect(),
        }
    }
}

/// Which app cohorts could walk a version, and where they would break.
#[derive(SimpleObject)]
pub struct CompatibilityReport {
    pub flow_id: ID,
    pub version: i32,
    /// Sessions of the last this many days make the cohorts.
    pub window_days: u32,
    /// A cohort with sessions would meet an unrenderable screen:
    /// `publishFlow` refuses without `override`.
    pub blocking: bool,
    /// Learned cohorts, most sessions first, then declared ones.
    pub cohorts: Vec<CohortCompatibility>,
}

impl From<Compatibility> for CompatibilityReport {
    fn from(c: Compatibility) -> Self {
        CompatibilityReport {
            blocking: c.blocking(),
            flow_id: ID(c.flow_id),
            version: c.version,
            window_days: c.window_days,
            cohorts: c.cohorts.into_iter().map(Into::into).collect(),
        }
    }
}

fn summary_of(flow_id: &str, release: &Release) -> FlowSummary {
    FlowSummary {
        id: ID(flow_id.to_string()),
        title: release.live.def.title.clone(),
        live_version: Some(release.record.live_version),
        rollout: rollout_of(&release.record),
        open_draft: None,
        pending_reviews: Vec::new(),
    }
}

#[Object]
impl ReleaseQuery {
    /// Every flow with a version: its live version, rollout and open draft.
    async fn flows(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<FlowSummary>> {
        need(ctx, Permission::ReadFlows)?;
        let baton = ctx.data_unchecked::<Baton>();
        Ok(baton
            .flows()
            .await
            .map_err(to_gql)?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// Every version of a flow, oldest first.
    async fn flow_versions(
        &self,
        ctx: &Context<'_>,
        flow_id: ID,
    ) -> async_graphql::Result<Vec<FlowVersion>> {
        need(ctx, Permission::ReadFlows)?;
        let baton = ctx.data_unchecked::<Baton>();
        Ok(baton
            .flow_versions(&flow_id)
            .await
            .map_err(to_gql)?
            .into_iter()
            .map(Into::into)
            .collect())
    }

    /// What changed from version `from` to version `to`.
    async fn flow_diff(
        &self,
        ctx: &Context<'_>,
        flow_id: ID,
        from: i32,
        to: i32,
    ) -> async_graphql::Result<FlowDiff> {
        need(ctx, Permission::ReadFlows)?;
        let baton = ctx.data_unchecked::<Baton>();
        let changes = baton.flow_diff(&flow_id, from, to).await.map_err(to_gql)?;
        Ok(FlowDiff {
            text: diff::format_text(&changes),
            flow_id,
            from,
            to,
            changes: changes.into_iter().map(Into::into).collect(),
        })
    }

    /// Per app cohort (learned from the flow's sessions of the last
    /// `--cohort-days`, plus `cohorts`): the screens it can reach in this
    /// version and those it cannot render.
    async fn compatibility_report(
        &self,
        ctx: &Context<'_>,
        flow_id: ID,
        version: i32,
        cohorts: Option<Vec<CohortInput>>,
    ) -> async_graphql::Result<CompatibilityReport> {
        need(ctx, Permission::ReadFlows)?;
        let baton = ctx.data_unchecked::<Baton>();
        let declared: Vec<Cohort> = cohorts
            .unwrap_or_default()
            .into_iter()
            .map(|c| Cohort {
                platform: c.platform,
                app_version: c.app_version,
                capabilities: c.capabilities,
            })
            .collect();
        Ok(baton
            .compatibility_report(&flow_id, version, &declared)
            .await
            .map_err(to_gql)?
            .into())
    }

    /// Every change to flows and every operator action, newest first.
    /// `subject` filters: `flow:loan` exactly, or `flow:` for every flow.
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        subject: Option<String>,
    ) -> async_graphql::Result<Connection<String, AuditEntry, EmptyFields, EmptyFields>> {
        need(ctx, Permission::ReadAudit)?;
        let baton = ctx.data_unchecked::<Baton>();
        query(
            after,
            None,
            first,
            None,
            |after: Option<String>, _before: Option<String>, first, _last| async move {
                let first = first.unwrap_or(50).clamp(1, MAX_AUDIT_PAGE as usize) as i64;
                let before = match after.as_deref().map(str::parse::<i64>) {
                    Some(Ok(id)) => Some(id),
                    Some(Err(_)) => {
                        return Err(async_graphql::Error::new(
                            "`after` is not a cursor from this connection",
                        ));
                    }
                    None => None,
                };
                let mut rows = baton
                    .audit_log(subject.as_deref(), before, first + 1)
                    .await
                    .map_err(to_gql)?;
                let has_next = rows.len() as i64 > first;
                rows.truncate(first as usize);
                let mut conn = Connection::new(false, has_next);
                conn.edges.extend(
                    rows.into_iter()
                        .map(|r| Edge::new(r.id.to_string(), AuditEntry::from(r))),
                );
                Ok::<_, async_graphql::Error>(conn)
            },
        )
        .await
    }
}

fn save_draft_result(outcome: SaveDraft) -> SaveDraftResult {
    match outcome {
        SaveDraft::Saved {
            version,
            created,
            warnings,
        } => SaveDraftResult {
            ok: true,
            version: Some((*version).into()),
            created,
            issues: warnings.into_iter().map(Into::into).collect(),
        },
        SaveDraft::Invalid { issues } => SaveDraftResult {
            ok: false,
            version: None,
            created: false,
            issues: issues.into_iter().map(Into::into).collect(),
        },
    }
}

#[derive(InputObject)]
pub struct SaveDraftInput {
    pub flow_id: ID,
    /// The flow file's YAML or JSON text.
    pub source: String,
    pub message: Option<String>,
}

#[derive(InputObject)]
pub struct PublishFlowInput {
    pub flow_id: ID,
    pub version: i32,
    /// Why: it goes into the audit log.
    pub message: String,
    /// The share of new sessions, 0–100 (default 100: live for all).
    pub rollout_percent: Option<i32>,
    /// Publish although the compatibility report blocks it; the reason
    /// is audited.
    #[graphql(name = "override")]
    pub override_reason: Option<String>,
}

#[derive(InputObject)]
pub struct SetRolloutInput {
    pub flow_id: ID,
    pub version: i32,
    pub percent: i32,
}

#[derive(InputObject)]
pub struct RollbackFlowInput {
    pub flow_id: ID,
    pub to_version: i32,
    pub message: String,
}

/// What to preview, and as whom.
#[derive(InputObject)]
pub struct StartPreviewInput {
    pub flow_id: ID,
    /// Omitted: the open draft, else the live version.
    pub version: Option<i32>,
    /// Start here instead of the flow's start.
    pub node: Option<ID>,
    /// Omitted: a fresh `preview-…` user.
    pub user: Option<crate::api::schema::UserInput>,
    pub client: Option<crate::api::schema::ClientInput>,
    /// Flag values by key, replacing the evaluated ones for the whole session.
    pub flags: Option<Json<Value>>,
    /// Experiment arms: `{experimentId: variant}`.
    pub experiments: Option<Json<Value>>,
    /// Backend steps always answer from their mocks; this picks the scenario.
    pub mock_scenario: Option<String>,
}

fn json_map(
    field: &str,
    v: Option<Json<Value>>,
) -> async_graphql::Result<serde_json::Map<String, Value>> {
    match v.map(|j| j.0) {
        None | Some(Value::Null) => Ok(Default::default()),
        Some(Value::Object(m)) => Ok(m),
        Some(_) => Err(to_gql(crate::service::ServiceError::InvalidInput {
            field: field.into(),
            message: "must be a JSON object".into(),
        })),
    }
}

#[Object]
impl ReleaseMutation {
    /// Starts a preview session on a draft or version, at any node, as any
    /// user and client, with chosen flags, experiment arms and mock
    /// scenario. It never counts in results, cohorts or funnels, expires
    /// after 24 hours, and a preview of a draft follows later saves of the
    /// flow's drafts (`sessionUpdated` sends the re-rendered screen).
    async fn start_preview(
        &self,
        ctx: &Context<'_>,
        input: StartPreviewInput,
    ) -> async_graphql::Result<crate::api::types::FlowSession> {
        let who = need(ctx, Permission::Preview)?;
        let baton = ctx.data_unchecked::<Baton>();
        let client = input.client.unwrap_or_default();
        if let Some(v) = &client.app_version
            && crate::flow::compile::lenient_semver(v).is_none()
        {
            return Err(to_gql(crate::service::ServiceError::InvalidAppVersion {
                version: v.clone(),
            }));
        }
        let (user_id, user_attributes) = match input.user {
            Some(u) => (
                Some(u.id.0),
                u.attributes.map(|j| j.0).unwrap_or(Value::Null),
            ),
            None => (None, Value::Null),
        };
        let req = crate::service::preview::PreviewRequest {
            flow_id: input.flow_id.0,
            version: input.version,
            node: input.node.map(|n| n.0),
            user_id,
            user_attributes,
            client: crate::engine::ClientInfo {
                platform: client.platform,
                app_version: client.app_version,
                locale: client.locale,
                capabilities: client.capabilities,
            },
            flags: json_map("flags", input.flags)?,
            experiments: json_map("experiments", input.experiments)?,
            mock_scenario: input.mock_scenario,
        };
        let (view, token) = baton.start_preview(&who.name, req).await.map_err(to_gql)?;
        Ok(crate::api::types::FlowSession::from_view(view, Some(token)))
    }

    /// Validates a flow's text as `baton validate` does and saves it as a
    /// new draft version; validation issues come back as data.
    async fn save_draft(
        &self,
        ctx: &Context<'_>,
        input: SaveDraftInput,
    ) -> async_graphql::Result<SaveDraftResult> {
        let who = need(ctx, Permission::SaveDrafts)?;
        let baton = ctx.data_unchecked::<Baton>();
        let outcome = baton
            .save_draft(
                &who.name,
                &input.flow_id,
                &input.source,
                input.message.as_deref(),
            )
            .await
            .map_err(to_gql)?;
        Ok(save_draft_result(outcome))
    }

    /// Writes what a session's backend steps really answered into its
    /// flow's mocks as scenario `scenario` and saves that as a draft
    /// (secrets were redacted when the answers were stored), so frontend
    /// developers can replay real data with `mock: {scenario: …}`.
    async fn record_scenario(
        &self,
        ctx: &Context<'_>,
        session_id: ID,
        scenario: String,
    ) -> async_graphql::Result<SaveDraftResult> {
        let who = need(ctx, Permission::SaveDrafts)?;
        let baton = ctx.data_unchecked::<Baton>();
        let outcome = baton
            .record_scenario(&who.name, &session_id, &scenario)
            .await
            .map_err(to_gql)?;
        Ok(save_draft_result(outcome))
    }

    /// Publishes a version to `rolloutPercent` of new sessions (default
    /// 100). With `--require-review` the first publisher's call records a
    /// request (`pendingReview`) and another publisher's call publishes.
    async fn publish_flow(
        &self,
        ctx: &Context<'_>,
        input: PublishFlowInput,
    ) -> async_graphql::Result<FlowVersion> {
        let who = need(ctx, Permission::PublishFlows)?;
        let baton = ctx.data_unchecked::<Baton>();
        let outcome = baton
            .publish_flow(
                &who.name,
                &input.flow_id,
                input.version,
                &input.message,
                input.rollout_percent,
                input.override_reason.as_deref(),
            )
            .await
            .map_err(to_gql)?;
        Ok(match outcome {
            Publish::Published(v) | Publish::AwaitingReview(v) => (*v).into(),
        })
    }

    /// Changes the share of new sessions on the rollout version; 100 makes
    /// it live for all.
    async fn set_rollout(
        &self,
        ctx: &Context<'_>,
        input: SetRolloutInput,
    ) -> async_graphql::Result<FlowSummary> {
        let who = need(ctx, Permission::PublishFlows)?;
        let baton = ctx.data_unchecked::<Baton>();
        let release = baton
            .set_rollout(&who.name, &input.flow_id, input.version, input.percent)
            .await
            .map_err(to_gql)?;
        Ok(summary_of(&input.flow_id, &release))
    }

    /// Makes an earlier published version live for all new sessions at once.
    async fn rollback_flow(
        &self,
        ctx: &Context<'_>,
        input: RollbackFlowInput,
    ) -> async_graphql::Result<FlowSummary> {
        let who = need(ctx, Permission::PublishFlows)?;
        let baton = ctx.data_unchecked::<Baton>();
        let release = baton
            .rollback_flow(&who.name, &input.flow_id, input.to_version, &input.message)
            .await
            .map_err(to_gql)?;
        Ok(summary_of(&input.flow_id, &release))
    }
}

//! The release process of flows, as the admin API and the CLI use it:
//! drafts validated on save, publishing (with an optional second
//! publisher), gradual rollout, rollback, diffs between versions and the
//! audit log. Who may call what is checked above, in the API; here every
//! call names its actor, which the audit log records.

use std::path::Path;

use serde_json::json;
use thiserror::Error;

use super::registry::Release;
use super::{Baton, ServiceError};
use crate::codes::Code;
use crate::engine::compat::{self, Cohort, CohortReport};
use crate::flow::compile::CompiledFlow;
use crate::flow::diff::{self, Change};
use crate::flow::load::{self, CheckOptions};
use crate::flow::model::FlowDef;
use crate::flow::validate::{Issue, Severity};
use crate::store::FlowVersionRecord;
use crate::store::flows::{AuditRecord, NewAudit, PublishRequestRecord, ReleaseRecord};

/// Longest `message` and `override` reason, in characters.
pub const MAX_MESSAGE_CHARS: usize = 2000;

/// Where a version stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionStatus {
    /// Saved, never published.
    Draft,
    /// Serves new sessions: the live version or the rollout version.
    Published,
    /// Was published; serves no new sessions (running ones stay on it).
    Retired,
}

/// One version with its standing.
#[derive(Debug, Clone)]
pub struct VersionInfo {
    pub record: FlowVersionRecord,
    pub status: VersionStatus,
    /// The share of new sessions it gets now, 0–100.
    pub serving_percent: i32,
    pub published_by: Option<String>,
    pub published_at: Option<i64>,
    /// A publish of it waiting for a second publisher.
    pub pending_review: Option<PublishRequestRecord>,
}

/// A flow and what it serves.
#[derive(Debug, Clone)]
pub struct FlowSummaryInfo {
    pub flow_id: String,
    pub title: Option<String>,
    pub release: Option<ReleaseRecord>,
    /// The newest version when no version as new was ever published.
    pub open_draft: Option<i32>,
    pub pending_reviews: Vec<PublishRequestRecord>,
}

/// Most cohorts a report may be asked to add.
pub const MAX_DECLARED_COHORTS: usize = 500;

/// One cohort in a compatibility report.
#[derive(Debug, Clone)]
pub struct CohortLine {
    pub report: CohortReport,
    /// Sessions it had in the window (0 for a declared cohort never seen).
    pub sessions: i64,
    /// Asked for by the caller rather than learned from sessions.
    pub declared: bool,
}

/// The compatibility report of one version.
#[derive(Debug, Clone)]
pub struct Compatibility {
    pub flow_id: String,
    pub version: i32,
    pub window_days: u32,
    pub cohorts: Vec<CohortLine>,
}

impl Compatibility {
    /// Whether a cohort that had sessions would meet an unrenderable screen.
    pub fn blocking(&self) -> bool {
        self.cohorts
            .iter()
            .any(|c| c.sessions > 0 && c.report.blocking())
    }
}

/// What `saveDraft` did.
#[derive(Debug)]
pub enum SaveDraft {
    /// Recorded (or found: the same content was saved before).
    Saved {
        version: Box<VersionInfo>,
        created: bool,
        warnings: Vec<Issue>,
    },
    /// Nothing was saved; every issue the validator found.
    Invalid { issues: Vec<Issue> },
}

/// What `publishFlow` did.
#[derive(Debug)]
pub enum Publish {
    Published(Box<VersionInfo>),
    /// `--require-review`: recorded; another publisher's `publishFlow`
    /// of the same version carries it out.
    AwaitingReview(Box<VersionInfo>),
}

#[derive(Debug, Error)]
pub enum ReleaseError {
    #[error("flow `{flow_id}` has no version {version}")]
    UnknownVersion { flow_id: String, version: i32 },
    #[error("the source's id is `{found}`, but it is saved as flow `{flow_id}`")]
    FlowIdMismatch { flow_id: String, found: String },
    #[error("version {version} of `{flow_id}` fails validation: {summary}")]
    DraftInvalid {
        flow_id: String,
        version: i32,
        summary: String,
    },
    #[error("`message` is empty")]
    MessageRequired,
    #[error("`{field}` is too long ({chars} characters; at most {MAX_MESSAGE_CHARS})")]
    MessageTooLong { field: &'static str, chars: usize },
    #[error("rollout percentage {percent} is outside 0–100")]
    RolloutOutOfRange { percent: i32 },
    #[error("flow `{flow_id}` has no live version yet, so its first publish must be at 100%")]
    RolloutNeedsLiveVersion { flow_id: String },
    #[error("version {version} of `{flow_id}` serves no sessions (live: {live})")]
    VersionNotServed {
        flow_id: String,
        version: i32,
        live: i32,
    },
    #[error("version {version} of `{flow_id}` was never published")]
    VersionNeverPublished { flow_id: String, version: i32 },
    #[error("`{actor}` requested this publish, so another publisher must carry it out")]
    SelfApproval { actor: String },
    #[error("`override` is blank")]
    OverrideReasonRequired,
    #[error(
        "version {version} of `{flow_id}` has screens that app cohorts with recent sessions cannot render: {summary}"
    )]
    IncompatibleWithCohorts {
        flow_id: String,
        version: i32,
        summary: String,
    },
    #[error("at most {max} cohorts may be declared in one report")]
    TooManyCohorts { max: usize },
    #[error("version {version} of `{flow_id}` has no node `{node}`")]
    UnknownPreviewNode {
        flow_id: String,
        version: i32,
        node: String,
        nodes: Vec<String>,
    },
    #[error("no experiment `{experiment}` with a variant `{variant}`")]
    UnknownPreviewArm {
        experiment: String,
        variant: String,
        known: Vec<String>,
    },
    #[error("preview session `{session_id}` expired at {expired_at}")]
    PreviewExpired {
        session_id: String,
        expired_at: String,
    },
}

impl ReleaseError {
    pub fn code(&self) -> Code {
        match self {
            ReleaseError::UnknownVersion { .. } => Code::UnknownFlowVersion,
            ReleaseError::FlowIdMismatch { .. } => Code::FlowIdMismatch,
            ReleaseError::DraftInvalid { .. } => Code::DraftInvalid,
            ReleaseError::MessageRequired => Code::MessageRequired,
            ReleaseError::MessageTooLong { .. } => Code::BadUserInput,
            ReleaseError::RolloutOutOfRange { .. } => Code::RolloutOutOfRange,
            ReleaseError::RolloutNeedsLiveVersion { .. } => Code::RolloutNeedsLiveVersion,
            ReleaseError::VersionNotServed { .. } => Code::VersionNotServed,
            ReleaseError::VersionNeverPublished { .. } => Code::VersionNeverPublished,
            ReleaseError::SelfApproval { .. } => Code::SelfApproval,
            ReleaseError::OverrideReasonRequired => Code::OverrideReasonRequired,
            ReleaseError::IncompatibleWithCohorts { .. } => Code::IncompatibleWithCohorts,
            ReleaseError::TooManyCohorts { .. } => Code::BadUserInput,
            ReleaseError::UnknownPreviewNode { .. } => Code::UnknownPreviewNode,
            ReleaseError::UnknownPreviewArm { .. } => Code::UnknownPreviewArm,
            ReleaseError::PreviewExpired { .. } => Code::PreviewExpired,
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            ReleaseError::MessageTooLong { .. } => Some("say it in fewer words".into()),
            ReleaseError::TooManyCohorts { .. } => {
                Some("declare fewer cohorts; learned ones come on their own".into())
            }
            ReleaseError::UnknownPreviewNode { nodes, .. } => {
                Some(format!("the version's nodes: {}", nodes.join(", ")))
            }
            ReleaseError::UnknownPreviewArm { known, .. } => Some(if known.is_empty() {
                "no experiment of that id is loaded; `experiments` lists them".into()
            } else {
                format!("its variants: {}", known.join(", "))
            }),
            other => Some(other.code().hint().to_string()),
        }
    }
}

fn check_message(field: &'static str, text: &str) -> Result<(), ReleaseError> {
    let chars = text.chars().count();
    if chars > MAX_MESSAGE_CHARS {
        return Err(ReleaseError::MessageTooLong { field, chars });
    }
    Ok(())
}

fn check_percent(percent: i32) -> Result<(), ReleaseError> {
    if !(0..=100).contains(&percent) {
        return Err(ReleaseError::RolloutOutOfRange { percent });
    }
    Ok(())
}

fn subject(flow_id: &str) -> String {
    format!("flow:{flow_id}")
}

impl Baton {
    /// Every flow with a version, with its release and open work.
    pub async fn flows(&self) -> Result<Vec<FlowSummaryInfo>, ServiceError> {
        let store = self.store();
        let mut out = Vec::new();
        for flow_id in store.flow_ids().await? {
            out.push(self.flow_summary(&flow_id).await?);
        }
        Ok(out)
    }

    pub async fn flow_summary(&self, flow_id: &str) -> Result<FlowSummaryInfo, ServiceError> {
        let store = self.store();
        let versions = store.flow_versions(flow_id).await?;
        let Some(newest) = versions.last() else {
            return Err(ServiceError::FlowNotFound {
                flow_id: flow_id.to_string(),
            });
        };
        let published = store.flow_publications(flow_id).await?;
        let newest_published = published.iter().map(|p| p.version).max().unwrap_or(0);
        let release = store.flow_release(flow_id).await?;
        let title_of = |v: &FlowVersionRecord| {
            v.definition
                .get("title")
                .and_then(|t| t.as_str())
                .map(str::to_string)
        };
        let shown = release
            .as_ref()
            .and_then(|r| versions.iter().find(|v| v.version == r.live_version))
            .unwrap_or(newest);
        Ok(FlowSummaryInfo {
            flow_id: flow_id.to_string(),
            title: title_of(shown),
            open_draft: (newest.version > newest_published).then_some(newest.version),
            release,
            pending_reviews: store.publish_requests(flow_id).await?,
        })
    }

    /// Every version of a flow, oldest first, with its standing.
    pub async fn flow_versions(&self, flow_id: &str) -> Result<Vec<VersionInfo>, ServiceError> {
        let store = self.store();
        let versions = store.flow_versions(flow_id).await?;
        if versions.is_empty() {
            return Err(ServiceError::FlowNotFound {
                flow_id: flow_id.to_string(),
            });
        }
        let published = store.flow_publications(flow_id).await?;
        let release = store.flow_release(flow_id).await?;
        let requests = store.publish_requests(flow_id).await?;
        Ok(versions
            .into_iter()
            .map(|record| {
                let publication = published.iter().find(|p| p.version == record.version);
                let serving_percent = release.as_ref().map_or(0, |r| serving(r, record.version));
                let live = release.as_ref().is_some_and(|r| {
                    r.live_version == record.version || r.rollout_version == Some(record.version)
                });
                let status = match (live, publication) {
                    (true, _) => VersionStatus::Published,
                    (false, Some(_)) => VersionStatus::Retired,
                    (false, None) => VersionStatus::Draft,
                };
                VersionInfo {
                    status,
                    serving_percent,
                    published_by: publication.map(|p| p.published_by.clone()),
                    published_at: publication.map(|p| p.published_at),
                    pending_review: requests
                        .iter()
                        .find(|r| r.version == record.version)
                        .cloned(),
                    record,
                }
            })
            .collect())
    }

    async fn version_info(&self, flow_id: &str, version: i32) -> Result<VersionInfo, ServiceError> {
        self.flow_versions(flow_id)
            .await?
            .into_iter()
            .find(|v| v.record.version == version)
            .ok_or_else(|| {
                ReleaseError::UnknownVersion {
                    flow_id: flow_id.to_string(),
                    version,
                }
                .into()
            })
    }

    /// Validates `source` as `baton validate` would (flags and allowed
    /// hosts included) and records it as a version when it has no errors.
    pub async fn save_draft(
        &self,
        actor: &str,
        flow_id: &str,
        source: &str,
        message: Option<&str>,
    ) -> Result<SaveDraft, ServiceError> {
        let message = message.unwrap_or_default();
        check_message("message", message)?;
        let (def, issues) = self.check_source(flow_id, source);
        let Some(def) = def.filter(|_| !issues.iter().any(|i| i.severity == Severity::Error))
        else {
            return Ok(SaveDraft::Invalid { issues });
        };
        if def.id != flow_id {
            return Err(ReleaseError::FlowIdMismatch {
                flow_id: flow_id.to_string(),
                found: def.id,
            }
            .into());
        }
        let hash = load::content_hash(&def);
        // The compiler has the last word: what it refuses is never saved.
        if let Err(e) = CompiledFlow::compile(def.clone(), 0, hash.clone()) {
            let mut issue = e.to_issue();
            issue.file = draft_name(flow_id);
            return Ok(SaveDraft::Invalid {
                issues: vec![issue],
            });
        }
        let (rec, created) = self
            .registry()
            .save_version(&def, &hash, Some(source), actor, message)
            .await?;
        if created {
            self.follow_draft(flow_id, rec.version).await;
        }
        let version = self.version_info(flow_id, rec.version).await?;
        Ok(SaveDraft::Saved {
            version: Box::new(version),
            created,
            warnings: issues,
        })
    }

    /// Writes what session `session_id`'s backend steps really answered
    /// into its flow version's mocks as scenario `scenario`, and saves the
    /// result as a draft (validated like any draft) for an editor to review
    /// and publish. The outputs were redacted of secrets when stored.
    pub async fn record_scenario(
        &self,
        actor: &str,
        session_id: &str,
        scenario: &str,
    ) -> Result<SaveDraft, ServiceError> {
        if !crate::flow::validate::valid_id(scenario) || scenario == "default" {
            return Err(ServiceError::InvalidInput {
                field: "scenario".into(),
                message: format!(
                    "`{scenario}` is not a scenario name: letters, digits, `_` and `-`, and not `default`"
                ),
            });
        }
        let snap = self.snapshot(session_id, super::Read::Fresh).await?;
        // The version itself, not the session's graph with its subflows
        // inlined: a child's steps are the child's to record.
        let flow = self
            .registry()
            .version(&snap.flow_id, snap.flow_version)
            .await?;
        if snap.state.context["session"]["mock"].is_string() {
            return Err(ServiceError::InvalidInput {
                field: "sessionId".into(),
                message:
                    "a mock session's steps answered from mocks; record a session that ran for real"
                        .into(),
            });
        }
        let empty = serde_json::Map::new();
        let steps = snap.state.context["steps"].as_object().unwrap_or(&empty);
        let mut def = flow.def.clone();
        let recorded = crate::flow::record::record_scenario(&mut def, steps, scenario);
        if recorded.is_empty() {
            return Err(ServiceError::InvalidInput {
                field: "sessionId".into(),
                message: "the session has not finished a backend step yet; nothing to record"
                    .into(),
            });
        }
        let source = serde_saphyr::to_string(&def)
            .map_err(|e| ServiceError::Internal(format!("writing the recorded flow: {e}")))?;
        let message = format!(
            "recorded scenario `{scenario}` from session {session_id} (steps {})",
            recorded.join(", ")
        );
        self.save_draft(actor, &def.id, &source, Some(&message))
            .await
    }

    fn check_source(&self, flow_id: &str, source: &str) -> (Option<FlowDef>, Vec<Issue>) {
        let opts = CheckOptions {
            flags: Some(self.flags().current()),
            scenarios: Vec::new(),
            allow_hosts: self.registry().allowed_hosts().cloned(),
        };
        load::check_text(Path::new(&draft_name(flow_id)), source, &opts)
    }

    /// Publishes `version` to `percent` of new sessions (100: live for
    /// all). With `--require-review` the first publisher's call records a
    /// request and a second publisher's call carries it out.
    pub async fn publish_flow(
        &self,
        actor: &str,
        flow_id: &str,
        version: i32,
        message: &str,
        percent: Option<i32>,
        override_reason: Option<&str>,
    ) -> Result<Publish, ServiceError> {
        if message.trim().is_empty() {
            return Err(ReleaseError::MessageRequired.into());
        }
        check_message("message", message)?;
        if let Some(reason) = override_reason {
            if reason.trim().is_empty() {
                return Err(ReleaseError::OverrideReasonRequired.into());
            }
            check_message("override", reason)?;
        }
        let percent = percent.unwrap_or(100);
        check_percent(percent)?;
        let info = self.version_info(flow_id, version).await?;
        self.revalidate(&info.record)?;
        if override_reason.is_none() {
            let report = self.compatibility_report(flow_id, version, &[]).await?;
            if report.blocking() {
                let summary = report
                    .cohorts
                    .iter()
                    .filter(|c| c.sessions > 0 && c.report.blocking())
                    .map(|c| {
                        let p = &c.report.unrenderable[0];
                        format!(
                            "{} ({} sessions): `{}` {}",
                            cohort_name(&c.report.cohort),
                            c.sessions,
                            p.node,
                            p.reason
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(ReleaseError::IncompatibleWithCohorts {
                    flow_id: flow_id.to_string(),
                    version,
                    summary,
                }
                .into());
            }
        }
        let current = self.store().flow_release(flow_id).await?;
        if current.is_none() && percent < 100 {
            return Err(ReleaseError::RolloutNeedsLiveVersion {
                flow_id: flow_id.to_string(),
            }
            .into());
        }
        let mut approved_request = None;
        if self.registry().requires_review() {
            match &info.pending_review {
                Some(req) if req.requested_by == actor => {
                    return Err(ReleaseError::SelfApproval {
                        actor: actor.to_string(),
                    }
                    .into());
                }
                Some(req) => approved_request = Some(req.clone()),
                None => {
                    let req = PublishRequestRecord {
                        flow_id: flow_id.to_string(),
                        version,
                        requested_by: actor.to_string(),
                        rollout_percent: percent,
                        message: message.to_string(),
                        override_reason: override_reason.map(str::to_string),
                        created_at: 0,
                    };
                    self.store()
                        .request_publish(
                            &req,
                            &NewAudit {
                                actor: actor.into(),
                                action: "flow.publish_requested".into(),
                                subject: subject(flow_id),
                                version: Some(version),
                                message: Some(message.into()),
                                detail: json!({ "rolloutPercent": percent, "override": override_reason }),
                            },
                        )
                        .await?;
                    let info = self.version_info(flow_id, version).await?;
                    return Ok(Publish::AwaitingReview(Box::new(info)));
                }
            }
        }
        let previous = current.clone();
        self.registry()
            .change_release(
                flow_id,
                Some(version),
                |current| {
                    Ok(match current {
                        Some(r) if percent < 100 && r.live_version != version => ReleaseRecord {
                            rollout_version: Some(version),
                            rollout_percent: percent,
                            ..r.clone()
                        },
                        Some(r) if percent < 100 => r.clone(),
                        _ => ReleaseRecord {
                            flow_id: flow_id.to_string(),
                            live_version: version,
                            rollout_version: None,
                            rollout_percent: 0,
                            revision: 0,
                            updated_at: 0,
                        },
                    })
                },
                NewAudit {
                    actor: actor.into(),
                    action: "flow.published".into(),
                    subject: subject(flow_id),
                    version: Some(version),
                    message: Some(message.into()),
                    detail: json!({
                        "rolloutPercent": percent,
                        "override": override_reason,
                        "requestedBy": approved_request.as_ref().map(|r| &r.requested_by),
                        "previous": previous.as_ref().map(release_json),
                    }),
                },
            )
            .await?;
        let info = self.version_info(flow_id, version).await?;
        Ok(Publish::Published(Box::new(info)))
    }

    /// A version is checked again when it is published: flags or allowed
    /// hosts may have changed since it was saved.
    fn revalidate(&self, rec: &FlowVersionRecord) -> Result<(), ServiceError> {
        let text = serde_json::to_string(&rec.definition).map_err(ServiceError::internal)?;
        let file = format!("{}.json", rec.flow_id);
        let (def, mut issues) = load::check_text(
            Path::new(&file),
            &text,
            &CheckOptions {
                flags: Some(self.flags().current()),
                scenarios: Vec::new(),
                allow_hosts: self.registry().allowed_hosts().cloned(),
            },
        );
        if let Some(def) = def {
            issues.extend(
                self.registry()
                    .subflow_issues(&def, &file, &Default::default()),
            );
        }
        let errors: Vec<&Issue> = issues
            .iter()
            .filter(|i| i.severity == Severity::Error)
            .collect();
        if errors.is_empty() {
            return Ok(());
        }
        Err(ReleaseError::DraftInvalid {
            flow_id: rec.flow_id.clone(),
            version: rec.version,
            summary: errors
                .iter()
                .map(|i| format!("{} at {}: {}", i.code, i.path, i.message))
                .collect::<Vec<_>>()
                .join("; "),
        }
        .into())
    }

    /// Sets the share of new sessions the rollout version gets; 100
    /// makes it the live version. `version` must be the rollout version
    /// (or the live one, at 100).
    pub async fn set_rollout(
        &self,
        actor: &str,
        flow_id: &str,
        version: i32,
        percent: i32,
    ) -> Result<Release, ServiceError> {
        check_percent(percent)?;
        self.version_info(flow_id, version).await?;
        self.registry()
            .change_release(
                flow_id,
                None,
                |current| {
                    let Some(r) = current else {
                        return Err(ReleaseError::VersionNeverPublished {
                            flow_id: flow_id.to_string(),
                            version,
                        }
                        .into());
                    };
                    match r.rollout_version {
                        Some(v) if v == version && percent == 100 => Ok(ReleaseRecord {
                            live_version: version,
                            rollout_version: None,
                            rollout_percent: 0,
                            ..r.clone()
                        }),
                        Some(v) if v == version => Ok(ReleaseRecord {
                            rollout_percent: percent,
                            ..r.clone()
                        }),
                        _ if r.live_version == version && percent == 100 => Ok(r.clone()),
                        _ => Err(ReleaseError::VersionNotServed {
                            flow_id: flow_id.to_string(),
                            version,
                            live: r.live_version,
                        }
                        .into()),
                    }
                },
                NewAudit {
                    actor: actor.into(),
                    action: "flow.rollout_set".into(),
                    subject: subject(flow_id),
                    version: Some(version),
                    message: None,
                    detail: json!({ "rolloutPercent": percent }),
                },
            )
            .await
    }

    /// Makes an earlier published version live for every new session.
    pub async fn rollback_flow(
        &self,
        actor: &str,
        flow_id: &str,
        to_version: i32,
        message: &str,
    ) -> Result<Release, ServiceError> {
        if message.trim().is_empty() {
            return Err(ReleaseError::MessageRequired.into());
        }
        check_message("message", message)?;
        let info = self.version_info(flow_id, to_version).await?;
        if info.published_at.is_none() {
            return Err(ReleaseError::VersionNeverPublished {
                flow_id: flow_id.to_string(),
                version: to_version,
            }
            .into());
        }
        let current = self.store().flow_release(flow_id).await?;
        self.registry()
            .change_release(
                flow_id,
                None,
                |_| {
                    Ok(ReleaseRecord {
                        flow_id: flow_id.to_string(),
                        live_version: to_version,
                        rollout_version: None,
                        rollout_percent: 0,
                        revision: 0,
                        updated_at: 0,
                    })
                },
                NewAudit {
                    actor: actor.into(),
                    action: "flow.rolled_back".into(),
                    subject: subject(flow_id),
                    version: Some(to_version),
                    message: Some(message.into()),
                    detail: json!({ "previous": current.as_ref().map(release_json) }),
                },
            )
            .await
    }

    /// The structural difference from version `from` to version `to`.
    pub async fn flow_diff(
        &self,
        flow_id: &str,
        from: i32,
        to: i32,
    ) -> Result<Vec<Change>, ServiceError> {
        let a = self.definition(flow_id, from).await?;
        let b = self.definition(flow_id, to).await?;
        Ok(diff::diff(&a, &b))
    }

    async fn definition(&self, flow_id: &str, version: i32) -> Result<FlowDef, ServiceError> {
        let rec = self
            .store()
            .flow_version(flow_id, version)
            .await?
            .ok_or_else(|| ReleaseError::UnknownVersion {
                flow_id: flow_id.to_string(),
                version,
            })?;
        serde_json::from_value(rec.definition).map_err(ServiceError::internal)
    }

    /// What each app cohort meets in `version`: the cohorts of the
    /// flow's sessions in the window, then `declared` ones.
    pub async fn compatibility_report(
        &self,
        flow_id: &str,
        version: i32,
        declared: &[Cohort],
    ) -> Result<Compatibility, ServiceError> {
        if declared.len() > MAX_DECLARED_COHORTS {
            return Err(ReleaseError::TooManyCohorts {
                max: MAX_DECLARED_COHORTS,
            }
            .into());
        }
        self.definition(flow_id, version).await?;
        // With the live versions of its subflows: their screens are shown
        // to the same apps. A child that is missing (validation reports it)
        // leaves the report to the flow's own screens.
        let registry = self.registry();
        let flow = match registry
            .session_flow(flow_id, version, &Default::default(), "")
            .await
        {
            Ok(f) => f,
            Err(_) => registry.version(flow_id, version).await?,
        };
        let days = self.registry().cohort_window_days();
        let since = super::now_ms() - i64::from(days) * 86_400_000;
        let mut learned: std::collections::BTreeMap<Cohort, i64> = Default::default();
        for t in self.store().session_clients(flow_id, since).await? {
            let cohort = normalized(Cohort {
                platform: t.platform,
                app_version: t.app_version,
                capabilities: t.capabilities,
            });
            *learned.entry(cohort).or_default() += t.sessions;
        }
        let mut lines: Vec<(Cohort, i64, bool)> =
            learned.into_iter().map(|(c, n)| (c, n, false)).collect();
        lines.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        for c in self.registry().declared().iter().chain(declared) {
            let c = normalized(c.clone());
            if !lines.iter().any(|(have, _, _)| *have == c) {
                lines.push((c, 0, true));
            }
        }
        let cohorts: Vec<Cohort> = lines.iter().map(|(c, _, _)| c.clone()).collect();
        let reports = compat::report(&flow, &cohorts);
        Ok(Compatibility {
            flow_id: flow_id.to_string(),
            version,
            window_days: days,
            cohorts: reports
                .into_iter()
                .zip(lines)
                .map(|(report, (_, sessions, declared))| CohortLine {
                    report,
                    sessions,
                    declared,
                })
                .collect(),
        })
    }

    /// Records an operator action that is already done (a session
    /// operated, a variant forced). The action stands whatever happens
    /// here, so a failed write is logged as an error rather than answered.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        subject: &str,
        version: Option<i32>,
        detail: serde_json::Value,
    ) {
        let record = NewAudit {
            actor: actor.into(),
            action: action.into(),
            subject: subject.into(),
            version,
            message: None,
            detail,
        };
        if let Err(e) = self.store().append_audit(&record).await {
            tracing::error!(actor, action, subject, error = %e, "writing an audit record failed");
        }
    }

    /// Records the files of `dir` (flag or experiment files, `kind`
    /// `flags` or `experiments`) whose content is new as versions, each
    /// with an audit record: flags and experiments change through files,
    /// and the audit log tells that story next to the flows'.
    pub async fn record_files(&self, kind: &str, dir: &Path) -> Result<(), ServiceError> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(());
        };
        let mut files: Vec<std::path::PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && p.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| matches!(e, "json" | "yaml" | "yml"))
            })
            .collect();
        files.sort();
        for path in files {
            self.record_file(kind, &path).await?;
        }
        Ok(())
    }

    /// [`Baton::record_files`] for one file (the API keys file: it holds
    /// names, roles and key hashes, never a key).
    pub async fn record_file(&self, kind: &str, path: &Path) -> Result<(), ServiceError> {
        use sha2::Digest as _;
        let Ok(text) = std::fs::read_to_string(path) else {
            return Ok(());
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let hash = hex::encode(sha2::Sha256::digest(text.as_bytes()));
        self.store()
            .record_file_version(kind, &name, &hash, &text)
            .await?;
        Ok(())
    }

    /// The audit log, newest first.
    pub async fn audit_log(
        &self,
        subject: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, ServiceError> {
        Ok(self.store().audit_log(subject, before, limit).await?)
    }
}

/// The share of new sessions `version` gets under `r`.
fn serving(r: &ReleaseRecord, version: i32) -> i32 {
    match r.rollout_version {
        Some(v) if v == version => r.rollout_percent,
        Some(_) if r.live_version == version => 100 - r.rollout_percent,
        _ if r.live_version == version => 100,
        _ => 0,
    }
}

fn release_json(r: &ReleaseRecord) -> serde_json::Value {
    json!({
        "liveVersion": r.live_version,
        "rolloutVersion": r.rollout_version,
        "rolloutPercent": r.rollout_percent,
    })
}

/// One cohort per distinct client: capabilities sorted and deduplicated.
fn normalized(mut c: Cohort) -> Cohort {
    if let Some(caps) = &mut c.capabilities {
        caps.sort();
        caps.dedup();
    }
    c
}

/// `ios 6.1 [text, image]`, for messages.
pub fn cohort_name(c: &Cohort) -> String {
    format!(
        "{} {} {}",
        c.platform.as_deref().unwrap_or("any platform"),
        c.app_version.as_deref().unwrap_or("current"),
        c.capabilities.as_ref().map_or_else(
            || "[every core kind]".to_string(),
            |k| format!("[{}]", k.join(", "))
        )
    )
}

/// How a draft's source is named in its issues.
fn draft_name(flow_id: &str) -> String {
    format!("draft:{flow_id}.yaml")
}

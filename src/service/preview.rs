//! Preview sessions: a draft or any version, started at any node, as a
//! given user and client, with flag values and experiment arms chosen by
//! the previewer, backend steps always mocked. A preview never counts:
//! no experiment exposure is recorded for it, and the cohort and funnel
//! queries leave out sessions whose context has `session.preview`. It
//! expires after [`PREVIEW_TTL_MS`]; while it is open, a preview of a
//! draft follows later saves of that flow's drafts (the next
//! `sessionUpdated` carries the re-rendered screen), which is what makes a
//! live preview beside an editor possible.

use serde_json::{Map, Value, json};

use super::lifecycle::{ReleaseError, VersionStatus};
use super::{Baton, ServiceError, SessionView, now_ms, to_new_events, view_of};
use crate::engine::{self, ClientInfo, rfc3339};

/// How long a preview session stays usable.
pub const PREVIEW_TTL_MS: i64 = 24 * 3600 * 1000;

/// Most open previews one draft save re-renders.
const MAX_FOLLOWING: i64 = 200;

/// What to preview, and as whom.
#[derive(Debug, Clone, Default)]
pub struct PreviewRequest {
    pub flow_id: String,
    /// `None`: the open draft, else the live version.
    pub version: Option<i32>,
    /// `None`: the flow's start.
    pub node: Option<String>,
    /// `None`: a fresh `preview-…` id.
    pub user_id: Option<String>,
    pub user_attributes: Value,
    pub client: ClientInfo,
    /// Flag values that replace the evaluated ones, by flag key.
    pub flags: Map<String, Value>,
    /// Experiment arms: experiment id → variant of its flag.
    pub experiments: Map<String, Value>,
    /// `None`: the steps' default mocks.
    pub mock_scenario: Option<String>,
}

impl Baton {
    /// Starts a preview session; `actor` is the key's name.
    pub async fn start_preview(
        &self,
        actor: &str,
        req: PreviewRequest,
    ) -> Result<(SessionView, String), ServiceError> {
        let versions = self.flow_versions(&req.flow_id).await?;
        let chosen = match req.version {
            Some(v) => versions
                .iter()
                .find(|x| x.record.version == v)
                .ok_or_else(|| ReleaseError::UnknownVersion {
                    flow_id: req.flow_id.clone(),
                    version: v,
                })?,
            None => versions
                .iter()
                .rev()
                .find(|x| x.status == VersionStatus::Draft)
                .or_else(|| versions.iter().find(|x| x.serving_percent > 0))
                .or(versions.last())
                .ok_or_else(|| ServiceError::FlowNotFound {
                    flow_id: req.flow_id.clone(),
                })?,
        };
        let follows_draft = chosen.status == VersionStatus::Draft;
        // Subflows run the versions live for the previewing user.
        let flow = self
            .registry()
            .session_flow(
                &req.flow_id,
                chosen.record.version,
                &Default::default(),
                req.user_id.as_deref().unwrap_or_default(),
            )
            .await?;
        if let Some(node) = &req.node
            && flow.node_index(node).is_none()
        {
            return Err(ReleaseError::UnknownPreviewNode {
                flow_id: flow.id.clone(),
                version: flow.version,
                node: node.clone(),
                nodes: flow.nodes.iter().map(|n| n.id.clone()).collect(),
            }
            .into());
        }
        let scenario = req
            .mock_scenario
            .clone()
            .unwrap_or_else(|| "default".into());
        if !flow.mock_scenarios.contains(&scenario) {
            return Err(ServiceError::UnknownMockScenario {
                scenario,
                declared: flow.mock_scenarios.iter().cloned().collect(),
            });
        }
        // An arm is its experiment's flag set to that variant.
        let set = self.flags().current();
        let mut overrides = req.flags.clone();
        for (experiment, variant) in &req.experiments {
            let variant_name = variant.as_str().unwrap_or_default();
            let exp = self.experiments().get(experiment);
            let value = exp.and_then(|e| set.variant_value(&e.flag, variant_name));
            let (Some(exp), Some(value)) = (exp, value) else {
                return Err(ReleaseError::UnknownPreviewArm {
                    experiment: experiment.clone(),
                    variant: variant.to_string(),
                    known: exp.map(|e| set.variant_names(&e.flag)).unwrap_or_default(),
                }
                .into());
            };
            overrides.insert(exp.flag.clone(), value.clone());
        }
        let user_id = req.user_id.clone().unwrap_or_else(|| {
            format!(
                "preview-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            )
        });
        let context = json!({
            "user": { "id": user_id, "attributes": req.user_attributes },
            "client": req.client.to_context(),
        });
        let mut flags = self.evaluate_flags(&flow, &context)?;
        flags.extend(overrides.clone());
        let now = now_ms();
        let preview = json!({
            "by": actor,
            "flags": overrides,
            "experiments": req.experiments,
            "follows_draft": follows_draft,
            "expires_at": rfc3339(now + PREVIEW_TTL_MS),
            "expires_at_ms": now + PREVIEW_TTL_MS,
        });
        let session_id = uuid::Uuid::now_v7().to_string();
        let advance = engine::start_preview(
            &flow,
            engine::StartInput {
                mock: Some(scenario),
                session_id: session_id.clone(),
                user_id: user_id.clone(),
                user_attributes: req.user_attributes,
                client: req.client,
                started_at_ms: now,
            },
            flags,
            req.node.as_deref(),
            preview,
            self.limits(),
        )?;
        let view = view_of(&flow, &session_id, &advance.state)?;
        let events = to_new_events(&advance)?;
        self.create_started(&flow, session_id, user_id, None, advance, events, view)
            .await
    }

    /// Moves the open previews of `flow_id` that follow its drafts to
    /// `version` (when their current node is in it) and sends each its
    /// re-rendered screen. Best effort: a preview that cannot follow stays
    /// where it is.
    pub(crate) async fn follow_draft(&self, flow_id: &str, version: i32) {
        let Ok(flow) = self.registry().version(flow_id, version).await else {
            return;
        };
        let previews = match self
            .store()
            .following_previews(flow_id, MAX_FOLLOWING)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(flow = flow_id, error = %e, "finding previews to follow a draft failed");
                return;
            }
        };
        for rec in previews {
            if rec.flow_version == version {
                continue;
            }
            let Ok(mut state) = serde_json::from_value::<engine::SessionState>(rec.state) else {
                continue;
            };
            if flow.node_index(&state.node).is_none() {
                continue;
            }
            state.context["session"]["flow_version"] = json!(version);
            let Ok(view) = view_of(&flow, &rec.id, &state) else {
                continue;
            };
            let Ok(value) = serde_json::to_value(&state) else {
                continue;
            };
            match self
                .store()
                .repin_session(&rec.id, rec.seq, rec.flow_version, version, &value)
                .await
            {
                Ok(true) => {
                    self.inner.snapshots.forget(&rec.id);
                    self.inner.hub.publish(&view);
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(session = %rec.id, error = %e, "a preview could not follow its draft")
                }
            }
        }
    }
}

/// `Err(PREVIEW_EXPIRED)` for a preview session past its expiry.
pub(super) fn check_not_expired(session_id: &str, context: &Value) -> Result<(), ServiceError> {
    let preview = &context["session"]["preview"];
    match preview["expires_at_ms"].as_i64() {
        Some(at) if now_ms() > at => Err(ReleaseError::PreviewExpired {
            session_id: session_id.to_string(),
            expired_at: preview["expires_at"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        }
        .into()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preview_past_its_expiry_is_refused() {
        let past = json!({ "session": { "preview": { "expires_at_ms": now_ms() - 1, "expires_at": "then" } } });
        let err = check_not_expired("s", &past).unwrap_err();
        assert_eq!(err.code(), crate::codes::Code::PreviewExpired);
        let future = json!({ "session": { "preview": { "expires_at_ms": now_ms() + 60_000 } } });
        assert!(check_not_expired("s", &future).is_ok());
        assert!(check_not_expired("s", &json!({ "session": {} })).is_ok());
    }
}

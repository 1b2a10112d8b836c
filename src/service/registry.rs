//! The registry of compiled flow versions. Files are loaded, validated and
//! recorded in the store as immutable versions; sessions look their pinned
//! version up here (compiled once, shared behind an `Arc`). A file that
//! fails validation never replaces the last good version.

use std::path::Path;
use std::sync::Arc;

use dashmap::DashMap;

use super::ServiceError;
use crate::flow::compile::CompiledFlow;
use crate::flow::load;
use crate::flow::model::FlowDef;
use crate::flow::validate::{self, Issue, Severity};
use crate::store::Store;

pub struct Registry {
    store: Store,
    latest: DashMap<String, Arc<CompiledFlow>>,
    versions: DashMap<(String, i32), Arc<CompiledFlow>>,
    /// Hosts `http` steps may call; `None` skips the check (tools, tests
    /// that never run steps).
    allowed_hosts: Option<crate::flow::hosts::AllowList>,
}

/// What a (re)load did.
#[derive(Debug, Default)]
pub struct Reload {
    /// (flow id, version) now served for new sessions, for flows that changed.
    pub published: Vec<(String, i32)>,
    pub issues: Vec<Issue>,
}

impl Registry {
    pub fn new(store: Store) -> Registry {
        Registry {
            store,
            latest: DashMap::new(),
            versions: DashMap::new(),
            allowed_hosts: None,
        }
    }

    /// A registry that rejects flows whose `http` steps call hosts outside
    /// `hosts` (the error `HOST_NOT_ALLOWED` when the flow loads).
    pub fn with_allowed_hosts(store: Store, hosts: crate::flow::hosts::AllowList) -> Registry {
        Registry {
            allowed_hosts: Some(hosts),
            ..Registry::new(store)
        }
    }

    /// Loads every flow file in `dir`. Valid flows whose content changed
    /// become new versions; invalid ones are reported and skipped.
    pub async fn load_dir(&self, dir: &Path) -> Result<Reload, ServiceError> {
        let report = load::load_dir(dir)?;
        let mut out = Reload {
            issues: report.issues,
            ..Reload::default()
        };
        for loaded in report.flows {
            let file = loaded.file.display().to_string();
            let mut issues = validate::validate(&loaded.def, &file);
            if let Some(hosts) = &self.allowed_hosts {
                issues.extend(validate::check_hosts(&loaded.def, hosts, &file));
            }
            let bad = issues.iter().any(|i| i.severity == Severity::Error);
            out.issues.extend(issues);
            if bad {
                continue;
            }
            let unchanged = self
                .latest
                .get(&loaded.def.id)
                .is_some_and(|f| f.hash == loaded.hash);
            if unchanged {
                continue;
            }
            let definition = serde_json::to_value(&loaded.def).map_err(ServiceError::internal)?;
            // Compile before recording a version, so a flow the compiler
            // refuses never becomes a version, and the other files still load.
            let mut flow = match CompiledFlow::compile(loaded.def, 0, loaded.hash.clone()) {
                Ok(f) => f,
                Err(e) => {
                    out.issues.push(Issue {
                        file: file.clone(),
                        ..e.to_issue()
                    });
                    continue;
                }
            };
            let rec = self
                .store
                .ensure_flow_version(&flow.id, &loaded.hash, &definition)
                .await?;
            flow.version = rec.version;
            flow.hash = rec.content_hash;
            let flow = Arc::new(flow);
            self.versions
                .insert((flow.id.clone(), flow.version), flow.clone());
            out.published.push((flow.id.clone(), flow.version));
            self.latest.insert(flow.id.clone(), flow);
        }
        Ok(out)
    }

    pub fn latest(&self, flow_id: &str) -> Option<Arc<CompiledFlow>> {
        self.latest.get(flow_id).map(|f| f.clone())
    }

    pub fn flow_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.latest.iter().map(|e| e.key().clone()).collect();
        ids.sort();
        ids
    }

    /// A pinned version: from memory, or from the store after a restart or
    /// on another replica.
    pub async fn version(
        &self,
        flow_id: &str,
        version: i32,
    ) -> Result<Arc<CompiledFlow>, ServiceError> {
        let key = (flow_id.to_string(), version);
        if let Some(f) = self.versions.get(&key) {
            return Ok(f.clone());
        }
        let rec = self
            .store
            .flow_version(flow_id, version)
            .await?
            .ok_or_else(|| ServiceError::FlowVersionNotFound {
                flow_id: flow_id.to_string(),
                version,
            })?;
        let def: FlowDef =
            serde_json::from_value(rec.definition).map_err(ServiceError::internal)?;
        let flow = Arc::new(CompiledFlow::compile(def, rec.version, rec.content_hash)?);
        Ok(self.versions.entry(key).or_insert(flow).clone())
    }
}

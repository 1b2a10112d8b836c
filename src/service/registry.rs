//! The registry of compiled flow versions and of what each flow serves to
//! new sessions (its release: a live version, and optionally a rollout
//! version for a share of users). Versions live in the store, immutable;
//! sessions look their pinned version up here (compiled once, shared
//! behind an `Arc`). Files in the flows directory become versions as they
//! change; a file that fails validation never becomes one.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use dashmap::DashMap;
use serde_json::json;

use super::ServiceError;
use crate::flow::compile::CompiledFlow;
use crate::flow::compose;
use crate::flow::load;
use crate::flow::model::FlowDef;
use crate::flow::validate::{self, Issue, Severity};
use crate::store::flows::{NewAudit, NewFlowVersion, ReleaseRecord};
use crate::store::{FILES_AUTHOR, Store};

/// How often a release change is retried when another writer changed the
/// same release in between.
const RELEASE_ATTEMPTS: usize = 8;

/// Default of `--cohort-days`.
pub const DEFAULT_COHORT_DAYS: u32 = 30;

pub struct Registry {
    store: Store,
    releases: DashMap<String, Release>,
    versions: DashMap<(String, i32), Arc<CompiledFlow>>,
    /// Flow versions with their subflows inlined, by the version of each
    /// child (see [`Registry::session_flow`]).
    composed: DashMap<ComposedKey, Arc<CompiledFlow>>,
    /// Hosts `http` steps may call; `None` skips the check (tools, tests
    /// that never run steps).
    allowed_hosts: Option<crate::flow::hosts::AllowList>,
    /// Changed files become drafts instead of going live.
    files_as_drafts: bool,
    /// A publish needs a second publisher (`--require-review`).
    require_review: bool,
    /// How far back sessions count towards the app cohorts of the
    /// compatibility report (`--cohort-days`).
    cohort_days: u32,
    /// Cohorts every report lists (`--cohorts`).
    declared_cohorts: Vec<crate::engine::compat::Cohort>,
}

/// A flow version and the version of each flow its subflows run.
type ComposedKey = (String, i32, Vec<(String, i32)>);

/// What new sessions of one flow start on.
#[derive(Clone)]
pub struct Release {
    pub record: ReleaseRecord,
    pub live: Arc<CompiledFlow>,
    pub rollout: Option<Arc<CompiledFlow>>,
}

impl Release {
    /// The version `user_id` starts on: the rollout version when the user's
    /// bucket (by flow and user, as `fractional` buckets) is under the
    /// rollout percentage. A user's bucket never changes, so while the
    /// percentage only grows a user never goes back to the older version.
    pub fn pick(&self, user_id: &str) -> &Arc<CompiledFlow> {
        match &self.rollout {
            Some(next)
                if self.record.rollout_percent >= 100
                    || (self.record.rollout_percent > 0
                        && rollout_bucket(&self.record.flow_id, user_id)
                            < self.record.rollout_percent.unsigned_abs()) =>
            {
                next
            }
            _ => &self.live,
        }
    }
}

/// The rollout bucket 0–99 of a user in a flow.
pub fn rollout_bucket(flow_id: &str, user_id: &str) -> u32 {
    crate::rules::percent_bucket(&format!("{flow_id}{user_id}"))
}

/// What a (re)load did.
#[derive(Debug, Default)]
pub struct Reload {
    /// (flow id, version) now served for new sessions, for flows that changed.
    pub published: Vec<(String, i32)>,
    /// (flow id, version) recorded as drafts (`--flows-as-drafts`).
    pub drafts: Vec<(String, i32)>,
    pub issues: Vec<Issue>,
}

impl Registry {
    pub fn new(store: Store) -> Registry {
        Registry {
            store,
            releases: DashMap::new(),
            versions: DashMap::new(),
            composed: DashMap::new(),
            allowed_hosts: None,
            files_as_drafts: false,
            require_review: false,
            cohort_days: DEFAULT_COHORT_DAYS,
            declared_cohorts: Vec::new(),
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

    /// Changed flow files become drafts to review and publish, not live
    /// versions (`--flows-as-drafts`).
    pub fn files_as_drafts(mut self, yes: bool) -> Registry {
        self.files_as_drafts = yes;
        self
    }

    /// Publishes need a second publisher (`--require-review`).
    pub fn require_review(mut self, yes: bool) -> Registry {
        self.require_review = yes;
        self
    }

    pub fn requires_review(&self) -> bool {
        self.require_review
    }

    /// Sessions of the last `days` days make the app cohorts.
    pub fn cohort_days(mut self, days: u32) -> Registry {
        self.cohort_days = days;
        self
    }

    pub fn cohort_window_days(&self) -> u32 {
        self.cohort_days
    }

    /// Cohorts every compatibility report lists (`--cohorts`).
    pub fn declared_cohorts(mut self, cohorts: Vec<crate::engine::compat::Cohort>) -> Registry {
        self.declared_cohorts = cohorts;
        self
    }

    pub fn declared(&self) -> &[crate::engine::compat::Cohort] {
        &self.declared_cohorts
    }

    pub fn allowed_hosts(&self) -> Option<&crate::flow::hosts::AllowList> {
        self.allowed_hosts.as_ref()
    }

    /// Loads every flow file in `dir`. A valid file whose content matches
    /// no stored version of its flow becomes a new version, published at
    /// once unless files are drafts; a file equal to an earlier version
    /// changes nothing, so a restart never undoes a publish made over the
    /// API. Invalid files are reported and skipped. Then every release in
    /// the store is loaded, including flows that exist only there.
    pub async fn load_dir(&self, dir: &Path) -> Result<Reload, ServiceError> {
        let report = load::load_dir(dir)?;
        let mut out = Reload {
            issues: report.issues,
            ..Reload::default()
        };
        // Subflows may run flows that exist only in the store.
        self.refresh_all().await?;
        let in_dir: BTreeMap<String, Vec<String>> = report
            .flows
            .iter()
            .map(|l| (l.def.id.clone(), compose::children_of(&l.def)))
            .collect();
        for loaded in report.flows {
            let file = loaded.file.display().to_string();
            let mut issues = validate::validate(&loaded.def, &file);
            issues.extend(self.subflow_issues(&loaded.def, &file, &in_dir));
            if let Some(hosts) = &self.allowed_hosts {
                issues.extend(validate::check_hosts(&loaded.def, hosts, &file));
            }
            let bad = issues.iter().any(|i| i.severity == Severity::Error);
            out.issues.extend(issues);
            if bad {
                continue;
            }
            let served = self
                .releases
                .get(&loaded.def.id)
                .is_some_and(|r| r.live.hash == loaded.hash);
            if served {
                continue;
            }
            // Compile before recording a version, so a flow the compiler
            // refuses never becomes a version, and the other files still load.
            if let Err(e) = CompiledFlow::compile(loaded.def.clone(), 0, loaded.hash.clone()) {
                out.issues.push(Issue {
                    file: file.clone(),
                    ..e.to_issue()
                });
                continue;
            }
            let source = std::fs::read_to_string(&loaded.file).ok();
            let name = loaded
                .file
                .file_name()
                .map_or_else(|| file.clone(), |n| n.to_string_lossy().into_owned());
            let message = format!("from {name}");
            let (rec, created) = self
                .save_version(
                    &loaded.def,
                    &loaded.hash,
                    source.as_deref(),
                    FILES_AUTHOR,
                    &message,
                )
                .await?;
            let released = self.store.flow_release(&rec.flow_id).await?.is_some();
            if self.files_as_drafts || (!created && released) {
                if created {
                    out.drafts.push((rec.flow_id.clone(), rec.version));
                }
                continue;
            }
            let version = rec.version;
            self.change_release(
                &rec.flow_id,
                Some(version),
                |_| {
                    Ok(ReleaseRecord {
                        flow_id: rec.flow_id.clone(),
                        live_version: version,
                        rollout_version: None,
                        rollout_percent: 0,
                        revision: 0,
                        updated_at: 0,
                    })
                },
                NewAudit {
                    actor: FILES_AUTHOR.into(),
                    action: "flow.published".into(),
                    subject: format!("flow:{}", rec.flow_id),
                    version: Some(version),
                    message: Some(message),
                    detail: json!({ "rolloutPercent": 100, "file": name }),
                },
            )
            .await?;
            out.published.push((rec.flow_id.clone(), version));
        }
        self.refresh_all().await?;
        Ok(out)
    }

    /// Records a flow definition as a version (or finds the version with
    /// the same content), with its audit record.
    pub(crate) async fn save_version(
        &self,
        def: &FlowDef,
        hash: &str,
        source: Option<&str>,
        author: &str,
        message: &str,
    ) -> Result<(crate::store::FlowVersionRecord, bool), ServiceError> {
        let definition = serde_json::to_value(def).map_err(ServiceError::internal)?;
        Ok(self
            .store
            .save_flow_version(
                &NewFlowVersion {
                    flow_id: &def.id,
                    content_hash: hash,
                    definition: &definition,
                    source,
                    author,
                    message,
                },
                &NewAudit {
                    actor: author.into(),
                    action: "flow.draft_saved".into(),
                    subject: format!("flow:{}", def.id),
                    version: None,
                    message: Some(message.into()).filter(|m: &String| !m.is_empty()),
                    detail: json!({ "contentHash": hash }),
                },
            )
            .await?)
    }

    /// Changes a flow's release: `next` builds the new release from the
    /// current one (`None` before the first publish) and may refuse. The
    /// change, the first publication of `published` and `audit` are one
    /// transaction; a concurrent change makes it start over from the new
    /// current release. Every replica serves it once it is loaded.
    pub(crate) async fn change_release(
        &self,
        flow_id: &str,
        published: Option<i32>,
        next: impl Fn(Option<&ReleaseRecord>) -> Result<ReleaseRecord, ServiceError>,
        audit: NewAudit,
    ) -> Result<Release, ServiceError> {
        for _ in 0..RELEASE_ATTEMPTS {
            let current = self.store.flow_release(flow_id).await?;
            let wanted = next(current.as_ref())?;
            // Compile what will be served before it is in force.
            self.version(flow_id, wanted.live_version).await?;
            if let Some(v) = wanted.rollout_version {
                self.version(flow_id, v).await?;
            }
            let expected = current.as_ref().map(|r| r.revision);
            if let Some(rec) = self
                .store
                .replace_release(expected, &wanted, published, &audit)
                .await?
            {
                return self.install(rec).await;
            }
        }
        Err(crate::store::StoreError::FlowVersionContended {
            flow_id: flow_id.to_owned(),
        }
        .into())
    }

    /// Loads every release from the store (startup, and when another
    /// replica changed one).
    pub async fn refresh_all(&self) -> Result<(), ServiceError> {
        for rec in self.store.flow_releases().await? {
            let stale = self
                .releases
                .get(&rec.flow_id)
                .is_none_or(|r| r.record.revision != rec.revision);
            if stale {
                self.install(rec).await?;
            }
        }
        Ok(())
    }

    /// Loads one flow's release from the store.
    pub async fn refresh(&self, flow_id: &str) -> Result<(), ServiceError> {
        if let Some(rec) = self.store.flow_release(flow_id).await? {
            self.install(rec).await?;
        }
        Ok(())
    }

    async fn install(&self, rec: ReleaseRecord) -> Result<Release, ServiceError> {
        let live = self.version(&rec.flow_id, rec.live_version).await?;
        let rollout = match rec.rollout_version {
            Some(v) => Some(self.version(&rec.flow_id, v).await?),
            None => None,
        };
        let release = Release {
            record: rec,
            live,
            rollout,
        };
        // A slower refresh must not replace a newer release.
        let mut entry = self
            .releases
            .entry(release.record.flow_id.clone())
            .or_insert_with(|| release.clone());
        if entry.record.revision < release.record.revision {
            *entry = release.clone();
        }
        Ok(entry.clone())
    }

    /// The version a new session of `user_id` starts on.
    pub fn for_user(&self, flow_id: &str, user_id: &str) -> Option<Arc<CompiledFlow>> {
        self.releases.get(flow_id).map(|r| r.pick(user_id).clone())
    }

    /// The release of a flow as this replica serves it.
    pub fn release(&self, flow_id: &str) -> Option<Release> {
        self.releases.get(flow_id).map(|r| r.clone())
    }

    /// The live version of a flow.
    pub fn latest(&self, flow_id: &str) -> Option<Arc<CompiledFlow>> {
        self.releases.get(flow_id).map(|r| r.live.clone())
    }

    /// The flows that serve new sessions.
    pub fn flow_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.releases.iter().map(|e| e.key().clone()).collect();
        ids.sort();
        ids
    }

    /// What is wrong with `def`'s subflows given the flows this server
    /// serves and `pending` (flows loading with it, by id, with the flows
    /// each runs): a child that is in neither, and a cycle back to `def`.
    pub fn subflow_issues(
        &self,
        def: &FlowDef,
        file: &str,
        pending: &BTreeMap<String, Vec<String>>,
    ) -> Vec<Issue> {
        compose::check_subflows(
            def,
            file,
            Severity::Error,
            &|id: &str| match pending.get(id) {
                Some(c) => Some(c.clone()),
                None => self.releases.get(id).map(|r| r.live.children.clone()),
            },
        )
    }

    /// The graph a session of `user_id` on `flow_id` `version` walks: the
    /// version itself, or, when it runs subflows, the version with each
    /// child inlined. A child the session entered before is the version it
    /// entered (`entered`, from the session's state); one it has not
    /// entered yet is the version live for the user now, so the session
    /// pins a child when it first enters it. The same children give the
    /// same graph, compiled once.
    pub async fn session_flow(
        &self,
        flow_id: &str,
        version: i32,
        entered: &BTreeMap<String, i32>,
        user_id: &str,
    ) -> Result<Arc<CompiledFlow>, ServiceError> {
        let base = self.version(flow_id, version).await?;
        if base.children.is_empty() {
            return Ok(base);
        }
        let mut children = BTreeMap::new();
        let mut todo = base.children.clone();
        while let Some(id) = todo.pop() {
            if children.contains_key(&id) {
                continue;
            }
            let child = match entered.get(&id) {
                Some(&v) => self.version(&id, v).await?,
                None => self
                    .for_user(&id, user_id)
                    .ok_or_else(|| ServiceError::FlowNotFound {
                        flow_id: id.clone(),
                    })?,
            };
            todo.extend(child.children.iter().cloned());
            children.insert(id, child);
        }
        let key = (
            flow_id.to_string(),
            version,
            children
                .iter()
                .map(|(id, f)| (id.clone(), f.version))
                .collect(),
        );
        if let Some(f) = self.composed.get(&key) {
            return Ok(f.clone());
        }
        let defs = children
            .into_iter()
            .map(|(id, f)| (id, (f.version, f.def.clone())))
            .collect();
        let composition = compose::compose(&base.def, &defs)?;
        let flow = Arc::new(CompiledFlow::compile_composed(
            composition,
            version,
            base.hash.clone(),
        )?);
        Ok(self.composed.entry(key).or_insert(flow).clone())
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

//! The release process of flows in the store: versions with their author
//! and message, which versions serve new sessions (`flow_releases`), the
//! publishes waiting for review, and the append-only audit log (see
//! `migrations/*/0006_flow_lifecycle.sql`).
//!
//! Every change that the audit log records is written in the transaction
//! that makes it, so the log never tells of a change that did not happen
//! and no change goes unrecorded.

use serde_json::Value;

use super::error::is_unique_violation;
use super::{
    Backend, BeginWrite, FLOW_VERSION_ATTEMPTS, FlowVersionRecord, FlowVersionRow, Inner, Store,
    StoreError, now_ms, to_json,
};

/// The PostgreSQL channel a release change is announced on (payload: the
/// flow id), so every replica reloads it at once.
pub const RELEASE_CHANNEL: &str = "baton_releases";

/// A flow version to record.
#[derive(Debug, Clone)]
pub struct NewFlowVersion<'a> {
    pub flow_id: &'a str,
    pub content_hash: &'a str,
    pub definition: &'a Value,
    /// The text as saved (YAML or JSON).
    pub source: Option<&'a str>,
    pub author: &'a str,
    pub message: &'a str,
}

/// What new sessions of a flow start on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRecord {
    pub flow_id: String,
    pub live_version: i32,
    /// The version a share of new sessions gets instead, if any.
    pub rollout_version: Option<i32>,
    /// 0–100: the share of users (by bucket) that get `rollout_version`.
    pub rollout_percent: i32,
    /// Grows with every change; the optimistic-concurrency token.
    pub revision: i64,
    pub updated_at: i64,
}

/// When and by whom a version was first published.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PublicationRecord {
    pub version: i32,
    pub published_by: String,
    pub published_at: i64,
}

/// A publish waiting for a second publisher.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PublishRequestRecord {
    pub flow_id: String,
    pub version: i32,
    pub requested_by: String,
    pub rollout_percent: i32,
    pub message: String,
    pub override_reason: Option<String>,
    pub created_at: i64,
}

/// An audit record to append.
#[derive(Debug, Clone)]
pub struct NewAudit {
    /// The API key's name, or `files` for what the flows directory did.
    pub actor: String,
    /// What happened, such as `flow.published` (see the README's table).
    pub action: String,
    /// What it happened to: `flow:<id>`, `session:<id>`, `experiment:<id>`…
    pub subject: String,
    pub version: Option<i32>,
    pub message: Option<String>,
    /// Details of the change (percentages, the previous release…).
    pub detail: Value,
}

/// One audit record.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub version: Option<i32>,
    pub message: Option<String>,
    pub detail: Value,
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: i64,
    at: i64,
    actor: String,
    action: String,
    subject: String,
    version: Option<i32>,
    message: Option<String>,
    detail: String,
}

#[derive(sqlx::FromRow)]
struct ReleaseRow {
    flow_id: String,
    live_version: i32,
    rollout_version: Option<i32>,
    rollout_percent: i32,
    revision: i64,
    updated_at: i64,
}

impl From<ReleaseRow> for ReleaseRecord {
    fn from(r: ReleaseRow) -> Self {
        ReleaseRecord {
            flow_id: r.flow_id,
            live_version: r.live_version,
            rollout_version: r.rollout_version,
            rollout_percent: r.rollout_percent,
            revision: r.revision,
            updated_at: r.updated_at,
        }
    }
}

/// Most audit records one page returns.
pub const MAX_AUDIT_PAGE: i64 = 500;

const VERSION_COLUMNS: &str =
    "flow_id, version, content_hash, definition, created_at, author, message, source";
const INSERT_AUDIT: &str = "INSERT INTO audit_log \
     (at, actor, action, subject, version, message, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)";
const RELEASE_COLUMNS: &str =
    "flow_id, live_version, rollout_version, rollout_percent, revision, updated_at";

macro_rules! insert_audit {
    ($conn:expr, $audit:expr, $detail:expr, $now:expr) => {
        sqlx::query(INSERT_AUDIT)
            .bind($now)
            .bind(&$audit.actor)
            .bind(&$audit.action)
            .bind(&$audit.subject)
            .bind($audit.version)
            .bind($audit.message.as_deref())
            .bind($detail)
            .execute($conn)
            .await
    };
}

impl Store {
    /// Records `new` as the next version of its flow, with an audit record
    /// in the same transaction, unless a version with the same content
    /// exists: then that one comes back and nothing is written. The bool
    /// says whether a version was created.
    pub async fn save_flow_version(
        &self,
        new: &NewFlowVersion<'_>,
        audit: &NewAudit,
    ) -> Result<(FlowVersionRecord, bool), StoreError> {
        let definition = to_json("the flow definition", new.definition)?;
        let detail = to_json("the audit detail", &audit.detail)?;
        let by_hash = format!(
            "SELECT {VERSION_COLUMNS} FROM flow_versions WHERE flow_id = $1 AND content_hash = $2 \
             ORDER BY version DESC LIMIT 1"
        );
        let insert = format!(
            "INSERT INTO flow_versions ({VERSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        );
        for _ in 0..FLOW_VERSION_ATTEMPTS {
            let now = now_ms();
            let outcome: Result<Result<FlowVersionRecord, FlowVersionRow>, sqlx::Error> =
                with_write_pool!(self, |pool| {
                    async {
                        let mut tx = pool.begin_write().await?;
                        let same: Option<FlowVersionRow> = sqlx::query_as(&by_hash)
                            .bind(new.flow_id)
                            .bind(new.content_hash)
                            .fetch_optional(&mut *tx)
                            .await?;
                        if let Some(row) = same {
                            return Ok(Err(row));
                        }
                        let (max,): (Option<i32>,) = sqlx::query_as(
                            "SELECT MAX(version) FROM flow_versions WHERE flow_id = $1",
                        )
                        .bind(new.flow_id)
                        .fetch_one(&mut *tx)
                        .await?;
                        let version = max.unwrap_or(0).saturating_add(1);
                        sqlx::query(&insert)
                            .bind(new.flow_id)
                            .bind(version)
                            .bind(new.content_hash)
                            .bind(definition.as_str())
                            .bind(now)
                            .bind(new.author)
                            .bind(new.message)
                            .bind(new.source)
                            .execute(&mut *tx)
                            .await?;
                        let audit = NewAudit {
                            version: Some(version),
                            ..audit.clone()
                        };
                        insert_audit!(&mut *tx, audit, detail.as_str(), now)?;
                        tx.commit().await?;
                        Ok(Ok(FlowVersionRecord {
                            flow_id: new.flow_id.to_owned(),
                            version,
                            content_hash: new.content_hash.to_owned(),
                            definition: new.definition.clone(),
                            created_at: now,
                            author: new.author.to_owned(),
                            message: new.message.to_owned(),
                            source: new.source.map(str::to_owned),
                        }))
                    }
                    .await
                });
            match outcome {
                Ok(Ok(created)) => return Ok((created, true)),
                Ok(Err(existing)) => return Ok((existing.into_record()?, false)),
                // Another writer took this number first.
                Err(e) if is_unique_violation(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::FlowVersionContended {
            flow_id: new.flow_id.to_owned(),
        })
    }

    /// Every version of a flow, oldest first.
    pub async fn flow_versions(&self, flow_id: &str) -> Result<Vec<FlowVersionRecord>, StoreError> {
        let q = format!(
            "SELECT {VERSION_COLUMNS} FROM flow_versions WHERE flow_id = $1 ORDER BY version"
        );
        let rows: Vec<FlowVersionRow> = with_read_pool!(self, |pool| {
            sqlx::query_as(&q).bind(flow_id).fetch_all(pool).await?
        });
        rows.into_iter().map(FlowVersionRow::into_record).collect()
    }

    /// The ids of every flow with a version, sorted.
    pub async fn flow_ids(&self) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> = with_read_pool!(self, |pool| {
            sqlx::query_as("SELECT DISTINCT flow_id FROM flow_versions ORDER BY flow_id")
                .fetch_all(pool)
                .await?
        });
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// The versions of a flow that were ever published, oldest first.
    pub async fn flow_publications(
        &self,
        flow_id: &str,
    ) -> Result<Vec<PublicationRecord>, StoreError> {
        Ok(with_read_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT version, published_by, published_at FROM flow_publications \
                 WHERE flow_id = $1 ORDER BY version",
            )
            .bind(flow_id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// What new sessions of `flow_id` start on; `None` before its first
    /// publish.
    pub async fn flow_release(&self, flow_id: &str) -> Result<Option<ReleaseRecord>, StoreError> {
        let q = format!("SELECT {RELEASE_COLUMNS} FROM flow_releases WHERE flow_id = $1");
        let row: Option<ReleaseRow> = with_read_pool!(self, |pool| {
            sqlx::query_as(&q)
                .bind(flow_id)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(ReleaseRecord::from))
    }

    /// Every flow's release, by flow id.
    pub async fn flow_releases(&self) -> Result<Vec<ReleaseRecord>, StoreError> {
        let q = format!("SELECT {RELEASE_COLUMNS} FROM flow_releases ORDER BY flow_id");
        let rows: Vec<ReleaseRow> =
            with_read_pool!(self, |pool| { sqlx::query_as(&q).fetch_all(pool).await? });
        Ok(rows.into_iter().map(ReleaseRecord::from).collect())
    }

    /// The sum of every release's revision: it changes whenever any
    /// release changes, so a replica can poll one number.
    pub async fn release_revision(&self) -> Result<i64, StoreError> {
        let (sum,): (Option<i64>,) = with_read_pool!(self, |pool| {
            sqlx::query_as("SELECT CAST(SUM(revision) AS BIGINT) FROM flow_releases")
                .fetch_one(pool)
                .await?
        });
        Ok(sum.unwrap_or(0))
    }

    /// Replaces the release of `next.flow_id` if its revision is still
    /// `expected` (`None`: no release yet), marks `published` (a version
    /// served for the first time) as published by `audit.actor`, drops a
    /// pending publish request of it, and appends `audit`: all or nothing.
    /// `Ok(None)` when another writer changed the release first.
    pub async fn replace_release(
        &self,
        expected: Option<i64>,
        next: &ReleaseRecord,
        published: Option<i32>,
        audit: &NewAudit,
    ) -> Result<Option<ReleaseRecord>, StoreError> {
        let detail = to_json("the audit detail", &audit.detail)?;
        let now = now_ms();
        let revision = expected.unwrap_or(0) + 1;
        let notify = self.backend() == Backend::Postgres;
        let written: bool = with_write_pool!(self, |pool| {
            async {
                let mut tx = pool.begin_write().await?;
                let changed = match expected {
                    None => sqlx::query(
                        "INSERT INTO flow_releases (flow_id, live_version, rollout_version, \
                         rollout_percent, revision, updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
                         ON CONFLICT (flow_id) DO NOTHING",
                    ),
                    Some(_) => sqlx::query(
                        "UPDATE flow_releases SET live_version = $2, rollout_version = $3, \
                         rollout_percent = $4, revision = $5, updated_at = $6 \
                         WHERE flow_id = $1 AND revision = $7",
                    ),
                }
                .bind(&next.flow_id)
                .bind(next.live_version)
                .bind(next.rollout_version)
                .bind(next.rollout_percent)
                .bind(revision)
                .bind(now)
                .bind(expected.unwrap_or(0))
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if changed == 0 {
                    return Ok::<bool, sqlx::Error>(false);
                }
                if let Some(version) = published {
                    sqlx::query(
                        "INSERT INTO flow_publications (flow_id, version, published_by, \
                         published_at) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (flow_id, version) DO NOTHING",
                    )
                    .bind(&next.flow_id)
                    .bind(version)
                    .bind(&audit.actor)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("DELETE FROM publish_requests WHERE flow_id = $1 AND version = $2")
                        .bind(&next.flow_id)
                        .bind(version)
                        .execute(&mut *tx)
                        .await?;
                }
                insert_audit!(&mut *tx, audit, detail.as_str(), now)?;
                if notify {
                    // Delivered when the transaction commits, never before.
                    sqlx::query("SELECT pg_notify($1, $2)")
                        .bind(RELEASE_CHANNEL)
                        .bind(&next.flow_id)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(true)
            }
            .await?
        });
        Ok(written.then(|| ReleaseRecord {
            revision,
            updated_at: now,
            ..next.clone()
        }))
    }

    /// The publish of `version` waiting for review, if any.
    pub async fn publish_request(
        &self,
        flow_id: &str,
        version: i32,
    ) -> Result<Option<PublishRequestRecord>, StoreError> {
        Ok(with_read_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT flow_id, version, requested_by, rollout_percent, message, \
                 override_reason, created_at FROM publish_requests \
                 WHERE flow_id = $1 AND version = $2",
            )
            .bind(flow_id)
            .bind(version)
            .fetch_optional(pool)
            .await?
        }))
    }

    /// Every publish of `flow_id` waiting for review, oldest first.
    pub async fn publish_requests(
        &self,
        flow_id: &str,
    ) -> Result<Vec<PublishRequestRecord>, StoreError> {
        Ok(with_read_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT flow_id, version, requested_by, rollout_percent, message, \
                 override_reason, created_at FROM publish_requests \
                 WHERE flow_id = $1 ORDER BY created_at",
            )
            .bind(flow_id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Records (or renews) a publish request and its audit record.
    pub async fn request_publish(
        &self,
        req: &PublishRequestRecord,
        audit: &NewAudit,
    ) -> Result<(), StoreError> {
        let detail = to_json("the audit detail", &audit.detail)?;
        let now = now_ms();
        with_write_pool!(self, |pool| {
            async {
                let mut tx = pool.begin_write().await?;
                sqlx::query(
                    "INSERT INTO publish_requests (flow_id, version, requested_by, \
                     rollout_percent, message, override_reason, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (flow_id, version) DO UPDATE \
                     SET requested_by = excluded.requested_by, \
                     rollout_percent = excluded.rollout_percent, message = excluded.message, \
                     override_reason = excluded.override_reason, created_at = excluded.created_at",
                )
                .bind(&req.flow_id)
                .bind(req.version)
                .bind(&req.requested_by)
                .bind(req.rollout_percent)
                .bind(&req.message)
                .bind(req.override_reason.as_deref())
                .bind(now)
                .execute(&mut *tx)
                .await?;
                insert_audit!(&mut *tx, audit, detail.as_str(), now)?;
                tx.commit().await
            }
            .await?
        });
        Ok(())
    }

    /// Appends one audit record on its own.
    pub async fn append_audit(&self, audit: &NewAudit) -> Result<(), StoreError> {
        let detail = to_json("the audit detail", &audit.detail)?;
        let now = now_ms();
        with_write_pool!(self, |pool| {
            insert_audit!(pool, audit, detail.as_str(), now)?;
        });
        Ok(())
    }

    /// Audit records, newest first: those with an id below `before` (all
    /// when `None`), at most `limit` (capped at [`MAX_AUDIT_PAGE`]). A
    /// `subject` ending in `:` (`flow:`) matches every subject of that kind;
    /// any other matches exactly.
    pub async fn audit_log(
        &self,
        subject: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let limit = limit.clamp(0, MAX_AUDIT_PAGE);
        let (exact, prefix) = match subject {
            Some(s) if s.ends_with(':') => (None, Some(format!("{s}%"))),
            Some(s) => (Some(s), None),
            None => (None, None),
        };
        let rows: Vec<AuditRow> = with_read_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, at, actor, action, subject, version, message, detail FROM audit_log \
                 WHERE ($1 IS NULL OR subject = $1) AND ($2 IS NULL OR subject LIKE $2) \
                 AND id < $3 ORDER BY id DESC LIMIT $4",
            )
            .bind(exact)
            .bind(prefix.as_deref())
            .bind(before.unwrap_or(i64::MAX))
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|r| {
                Ok(AuditRecord {
                    detail: super::parse_json("audit_log", "detail", &r.detail)?,
                    id: r.id,
                    at: r.at,
                    actor: r.actor,
                    action: r.action,
                    subject: r.subject,
                    version: r.version,
                    message: r.message,
                })
            })
            .collect()
    }
}

/// Sessions of one client kind: what `startFlow` said about the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTally {
    pub platform: Option<String>,
    pub app_version: Option<String>,
    /// The JSON list as sent; `None` when the client sent none.
    pub capabilities: Option<Vec<String>>,
    pub sessions: i64,
}

#[derive(sqlx::FromRow)]
struct ClientRow {
    platform: Option<String>,
    app_version: Option<String>,
    capabilities: Option<String>,
    sessions: i64,
}

const SQLITE_CLIENTS: &str = "SELECT json_extract(state, '$.context.client.platform') AS platform, \
     json_extract(state, '$.context.client.app_version') AS app_version, \
     json_extract(state, '$.context.client.capabilities') AS capabilities, \
     COUNT(*) AS sessions FROM sessions WHERE flow_id = $1 AND created_at >= $2 \
     AND json_extract(state, '$.context.session.preview') IS NULL \
     GROUP BY 1, 2, 3";
const POSTGRES_CLIENTS: &str = "SELECT s.state::jsonb #>> '{context,client,platform}' AS platform, \
     s.state::jsonb #>> '{context,client,app_version}' AS app_version, \
     NULLIF(s.state::jsonb #>> '{context,client,capabilities}', 'null') AS capabilities, \
     COUNT(*) AS sessions FROM sessions s WHERE s.flow_id = $1 AND s.created_at >= $2 \
     AND (s.state::jsonb #> '{context,session,preview}') IS NULL \
     GROUP BY 1, 2, 3";

impl Store {
    /// The clients of `flow_id`'s sessions created since `since` (epoch
    /// ms), counted by platform, app version and capabilities; preview
    /// sessions are left out.
    pub async fn session_clients(
        &self,
        flow_id: &str,
        since: i64,
    ) -> Result<Vec<ClientTally>, StoreError> {
        let sql = match self.backend() {
            Backend::Sqlite => SQLITE_CLIENTS,
            Backend::Postgres => POSTGRES_CLIENTS,
        };
        let rows: Vec<ClientRow> = with_read_pool!(self, |pool| {
            sqlx::query_as(sql)
                .bind(flow_id)
                .bind(since)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter()
            .map(|r| {
                let capabilities = match r.capabilities {
                    Some(text) => {
                        Some(serde_json::from_str::<Vec<String>>(&text).map_err(|e| {
                            StoreError::Corrupt {
                                table: "sessions",
                                detail: format!(
                                    "client capabilities are not a list of strings: {e}"
                                ),
                            }
                        })?)
                    }
                    None => None,
                };
                Ok(ClientTally {
                    platform: r.platform,
                    app_version: r.app_version,
                    capabilities,
                    sessions: r.sessions,
                })
            })
            .collect()
    }
}

impl Store {
    /// Records `source` as the next version of file `name` of `kind`
    /// (`flags`, `experiments`) with an audit record by `files`, unless it
    /// equals the latest version. Returns the new version number.
    pub async fn record_file_version(
        &self,
        kind: &str,
        name: &str,
        content_hash: &str,
        source: &str,
    ) -> Result<Option<i32>, StoreError> {
        let now = now_ms();
        for _ in 0..FLOW_VERSION_ATTEMPTS {
            let outcome: Result<Option<i32>, sqlx::Error> = with_write_pool!(self, |pool| {
                async {
                    let mut tx = pool.begin_write().await?;
                    let latest: Option<(i32, String)> = sqlx::query_as(
                        "SELECT version, content_hash FROM file_versions \
                         WHERE kind = $1 AND name = $2 ORDER BY version DESC LIMIT 1",
                    )
                    .bind(kind)
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let version = match latest {
                        Some((_, hash)) if hash == content_hash => return Ok(None),
                        Some((v, _)) => v.saturating_add(1),
                        None => 1,
                    };
                    sqlx::query(
                        "INSERT INTO file_versions (kind, name, version, content_hash, source, \
                         created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(kind)
                    .bind(name)
                    .bind(version)
                    .bind(content_hash)
                    .bind(source)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    let audit = NewAudit {
                        actor: super::FILES_AUTHOR.into(),
                        action: format!("{kind}.changed"),
                        subject: format!("{kind}:{name}"),
                        version: Some(version),
                        message: None,
                        detail: serde_json::json!({ "contentHash": content_hash }),
                    };
                    let detail = audit.detail.to_string();
                    insert_audit!(&mut *tx, audit, detail.as_str(), now)?;
                    tx.commit().await?;
                    Ok(Some(version))
                }
                .await
            });
            match outcome {
                Ok(v) => return Ok(v),
                // Another replica recorded this content at the same moment.
                Err(e) if is_unique_violation(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::FlowVersionContended {
            flow_id: format!("{kind}:{name}"),
        })
    }
}

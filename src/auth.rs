//! API keys with roles, for the admin side of the API (results, forcing
//! variants, operating sessions, approvals).
//!
//! Keys live in a file named by `--api-keys` / `BATON_API_KEYS` (YAML or
//! JSON, read by [`crate::document`]) that holds only each key's SHA-256,
//! so the file (and a leak of it) never reveals a key:
//!
//! ```yaml
//! keys:
//!   - name: qa-alice
//!     role: editor
//!     sha256: 9f2c…      # 64 lowercase hex digits
//!   - name: underwriting-team
//!     role: reviewer
//!     queues: [underwriter]      # reviewers only: the approval queues they decide
//!     sha256: …
//! ```
//!
//! `baton key new` makes a key and prints the entry to paste. A request
//! sends its key as `X-API-Key` (`Authorization: Bearer` carries session
//! tokens); the HTTP layer resolves it once per request into a [`Caller`]
//! in the GraphQL request data, and resolvers check it with [`require`].
//! A key that matches no entry is refused before execution
//! (`INVALID_API_KEY`, 401), whatever the operation.
//!
//! The file is read at startup only; a change needs a restart.

use crate::codes::Code;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::api::ApiError;

/// The largest keys file read; far above any real team's list.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Longest key name and queue name.
pub const MAX_NAME_CHARS: usize = 64;
/// The request header that carries an API key.
pub const API_KEY_HEADER: &str = "x-api-key";
/// Prefix of keys made by [`new_key`], so a leaked one is recognisable in
/// secret scanners and logs.
pub const KEY_PREFIX: &str = "bk_";

/// What a key may do, as a role.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
    async_graphql::Enum,
)]
#[serde(rename_all = "lowercase")]
#[graphql(name = "ApiKeyRole")]
pub enum Role {
    /// Reads sessions, experiment results, flows and the audit log.
    Viewer,
    /// A viewer who also saves flow drafts, forces variants and runs
    /// sessions in mock mode (QA).
    Editor,
    /// An editor who also publishes flows, changes rollouts, rolls back and
    /// sends external events into sessions.
    Publisher,
    /// Decides the approval tasks of its queues, and lists approvals.
    Reviewer,
    /// Everything.
    Admin,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Viewer,
        Role::Editor,
        Role::Publisher,
        Role::Reviewer,
        Role::Admin,
    ];

    /// The name used in the keys file.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Publisher => "publisher",
            Role::Reviewer => "reviewer",
            Role::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something an admin call does. Which roles allow it is
/// [`Permission::roles`], the one table of who may do what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission<'a> {
    /// Read any session (support).
    ReadSessions,
    /// Read experiment results.
    ReadResults,
    /// Force an experiment variant for a user or a session (QA).
    ForceVariant,
    /// Run sessions against mocked backend steps.
    MockSessions,
    /// Send external events into sessions.
    SendEvents,
    /// Cancel, retry or otherwise operate sessions.
    OperateSessions,
    /// Decide an approval task of this queue.
    DecideApproval { queue: &'a str },
    /// List approval tasks.
    ListApprovals,
    /// Read flows, their versions, diffs and compatibility reports.
    ReadFlows,
    /// Save flow drafts.
    SaveDrafts,
    /// Publish flow versions, change rollouts, roll back.
    PublishFlows,
    /// Read the audit log.
    ReadAudit,
    /// Start preview sessions of drafts and versions.
    Preview,
}

impl Permission<'_> {
    /// Every permission that is not scoped to a queue, for a console that
    /// shows what a key may do. The match below has no wildcard, so a new
    /// permission fails to compile until it is listed here too.
    pub const UNSCOPED: [Permission<'static>; 12] = {
        const fn listed(p: Permission<'_>) {
            match p {
                Permission::ReadSessions
                | Permission::ReadResults
                | Permission::ForceVariant
                | Permission::MockSessions
                | Permission::SendEvents
                | Permission::OperateSessions
                | Permission::ListApprovals
                | Permission::ReadFlows
                | Permission::SaveDrafts
                | Permission::PublishFlows
                | Permission::ReadAudit
                | Permission::Preview
                | Permission::DecideApproval { .. } => {}
            }
        }
        listed(Permission::ReadSessions);
        [
            Permission::ReadSessions,
            Permission::ReadResults,
            Permission::ForceVariant,
            Permission::MockSessions,
            Permission::SendEvents,
            Permission::OperateSessions,
            Permission::ListApprovals,
            Permission::ReadFlows,
            Permission::SaveDrafts,
            Permission::PublishFlows,
            Permission::ReadAudit,
            Permission::Preview,
        ]
    };

    /// The roles that have this permission. A reviewer has
    /// [`Permission::DecideApproval`] only for its own queues (checked by
    /// [`Principal::allows`]).
    pub fn roles(&self) -> &'static [Role] {
        use Role::*;
        match self {
            Permission::ReadSessions
            | Permission::ReadResults
            | Permission::ReadFlows
            | Permission::ReadAudit => &[Viewer, Editor, Publisher, Admin],
            Permission::ForceVariant
            | Permission::MockSessions
            | Permission::SaveDrafts
            | Permission::Preview => &[Editor, Publisher, Admin],
            Permission::PublishFlows => &[Publisher, Admin],
            Permission::SendEvents => &[Publisher, Admin],
            Permission::OperateSessions => &[Admin],
            Permission::DecideApproval { .. } | Permission::ListApprovals => &[Reviewer, Admin],
        }
    }

    /// A name for messages: `FORCE_VARIANT`, `DECIDE_APPROVAL(underwriter)`.
    pub fn describe(&self) -> String {
        match self {
            Permission::ReadSessions => "READ_SESSIONS".into(),
            Permission::ReadResults => "READ_RESULTS".into(),
            Permission::ForceVariant => "FORCE_VARIANT".into(),
            Permission::MockSessions => "MOCK_SESSIONS".into(),
            Permission::SendEvents => "SEND_EVENTS".into(),
            Permission::OperateSessions => "OPERATE_SESSIONS".into(),
            Permission::DecideApproval { queue } => format!("DECIDE_APPROVAL({queue})"),
            Permission::ListApprovals => "LIST_APPROVALS".into(),
            Permission::ReadFlows => "READ_FLOWS".into(),
            Permission::SaveDrafts => "SAVE_DRAFTS".into(),
            Permission::PublishFlows => "PUBLISH_FLOWS".into(),
            Permission::ReadAudit => "READ_AUDIT".into(),
            Permission::Preview => "PREVIEW".into(),
        }
    }

    /// Who may do this, for hints.
    fn who(&self) -> String {
        let roles: Vec<&str> = self.roles().iter().map(|r| r.as_str()).collect();
        match self {
            Permission::DecideApproval { queue } => {
                format!("a reviewer key whose `queues` include `{queue}`, or an admin key")
            }
            _ => format!("a key with role {}", roles.join(", ")),
        }
    }
}

/// The holder of a valid API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The entry's name (for logs and audit).
    pub name: String,
    pub role: Role,
    /// Approval queues a reviewer decides; empty for other roles.
    pub queues: Vec<String>,
}

impl Principal {
    /// What this key may do, as [`Permission::describe`] names it: a
    /// reviewer's approvals per queue, an admin's as `DECIDE_APPROVAL(*)`.
    pub fn permissions(&self) -> Vec<String> {
        let mut out: Vec<String> = Permission::UNSCOPED
            .iter()
            .filter(|p| self.allows(**p))
            .map(|p| p.describe())
            .collect();
        match self.role {
            Role::Admin => out.push(Permission::DecideApproval { queue: "*" }.describe()),
            _ => out.extend(
                self.queues
                    .iter()
                    .filter(|q| self.allows(Permission::DecideApproval { queue: q }))
                    .map(|q| Permission::DecideApproval { queue: q }.describe()),
            ),
        }
        out
    }

    pub fn allows(&self, permission: Permission<'_>) -> bool {
        if !permission.roles().contains(&self.role) {
            return false;
        }
        match permission {
            Permission::DecideApproval { queue } if self.role == Role::Reviewer => {
                self.queues.iter().any(|q| q == queue)
            }
            _ => true,
        }
    }
}

/// The configured keys, by the SHA-256 of the key. Cheap to clone.
///
/// Looking a presented key up by its digest in a hash map is safe against
/// timing attacks: what the lookup's timing could reveal is about the
/// digest, and an attacker cannot steer a digest towards a stored one.
#[derive(Clone, Default)]
pub struct ApiKeys {
    by_digest: Arc<HashMap<[u8; 32], Arc<Principal>>>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys")
            .field("keys", &self.by_digest.len())
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    keys: Vec<KeyEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    name: String,
    role: Role,
    sha256: String,
    #[serde(default)]
    queues: Vec<String>,
}

impl ApiKeys {
    /// No keys: every admin call is refused.
    pub fn none() -> ApiKeys {
        ApiKeys::default()
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// Reads and checks a keys file; the first problem is the error.
    pub fn load(path: &Path) -> Result<ApiKeys, AuthError> {
        let file = path.to_path_buf();
        let doc = crate::document::read(path, MAX_FILE_BYTES).map_err(|e| match e {
            crate::document::DocError::Unreadable(source) => AuthError::FileUnreadable {
                file: file.clone(),
                source,
            },
            crate::document::DocError::TooLarge { size } => AuthError::FileTooLarge {
                file: file.clone(),
                size,
            },
            crate::document::DocError::Syntax { format, message } => AuthError::Syntax {
                file: file.clone(),
                format,
                message,
            },
        })?;
        Self::from_document(&file, doc)
    }

    fn from_document(file: &Path, doc: serde_json::Value) -> Result<ApiKeys, AuthError> {
        let parsed: KeysFile = serde_path_to_error::deserialize(doc).map_err(|e| {
            let path = e.path().to_string();
            AuthError::Structure {
                file: file.to_path_buf(),
                path: if path == "." { String::new() } else { path },
                message: e.into_inner().to_string(),
            }
        })?;
        let mut by_digest = HashMap::with_capacity(parsed.keys.len());
        let mut names = HashSet::with_capacity(parsed.keys.len());
        for (i, entry) in parsed.keys.into_iter().enumerate() {
            let at = |field: &str| format!("keys[{i}].{field}");
            let file = file.to_path_buf();
            if !is_valid_name(&entry.name) {
                return Err(AuthError::NameInvalid {
                    file,
                    path: at("name"),
                    name: entry.name,
                });
            }
            if !names.insert(entry.name.clone()) {
                return Err(AuthError::NameDuplicate {
                    file,
                    path: at("name"),
                    name: entry.name,
                });
            }
            let Some(digest) = parse_digest(&entry.sha256) else {
                return Err(AuthError::DigestInvalid {
                    file,
                    path: at("sha256"),
                    name: entry.name,
                });
            };
            if entry.role != Role::Reviewer && !entry.queues.is_empty() {
                return Err(AuthError::QueuesNotReviewer {
                    file,
                    path: at("queues"),
                    name: entry.name,
                    role: entry.role,
                });
            }
            if let Some(queue) = entry.queues.iter().find(|q| !is_valid_name(q)) {
                return Err(AuthError::QueueInvalid {
                    file,
                    path: at("queues"),
                    name: entry.name.clone(),
                    queue: queue.clone(),
                });
            }
            let principal = Principal {
                name: entry.name,
                role: entry.role,
                queues: entry.queues,
            };
            if let Some(first) = by_digest.insert(digest, Arc::new(principal)) {
                return Err(AuthError::DigestDuplicate {
                    file,
                    path: at("sha256"),
                    first: first.name.clone(),
                });
            }
        }
        Ok(ApiKeys {
            by_digest: Arc::new(by_digest),
        })
    }

    /// The holder of `key`, if it is a configured key.
    pub fn resolve(&self, key: &str) -> Option<Arc<Principal>> {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        self.by_digest.get(&digest).cloned()
    }

    /// The caller of a request with these headers: no `X-API-Key` (or an
    /// empty one) is an anonymous caller; a key that matches no entry is
    /// `INVALID_API_KEY`.
    pub fn caller(&self, headers: &axum::http::HeaderMap) -> Result<Caller, ApiError> {
        let Some(value) = headers.get(API_KEY_HEADER) else {
            return Ok(Caller(None));
        };
        let key = value.to_str().map_err(|_| ApiError::InvalidApiKey)?.trim();
        self.caller_for(key)
    }

    /// Like [`ApiKeys::caller`], for a key already taken out of its carrier
    /// (a WebSocket `connection_init` payload).
    pub fn caller_for(&self, key: &str) -> Result<Caller, ApiError> {
        if key.is_empty() {
            return Ok(Caller(None));
        }
        self.resolve(key)
            .map(|p| Caller(Some(p)))
            .ok_or(ApiError::InvalidApiKey)
    }
}

/// Letters, digits, `.`, `_`, `-`, `@`; starts with a letter or digit.
fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().count() <= MAX_NAME_CHARS
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
}

/// 64 lowercase hex digits.
fn parse_digest(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || text.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// The API-key holder of the request being executed (request data).
/// `Caller(None)`: no key was sent.
#[derive(Debug, Clone, Default)]
pub struct Caller(pub Option<Arc<Principal>>);

/// The caller's principal if it has `permission`: `API_KEY_REQUIRED` when
/// no key was sent, `FORBIDDEN_ROLE` when its role does not allow it.
pub fn require<'a>(
    ctx: &'a async_graphql::Context<'_>,
    permission: Permission<'_>,
) -> Result<&'a Principal, ApiError> {
    let principal = ctx
        .data_opt::<Caller>()
        .and_then(|c| c.0.as_deref())
        .ok_or_else(|| ApiError::ApiKeyRequired {
            permission: permission.describe(),
            who: permission.who(),
        })?;
    if principal.allows(permission) {
        Ok(principal)
    } else {
        Err(ApiError::ForbiddenRole {
            name: principal.name.clone(),
            role: principal.role,
            permission: permission.describe(),
            who: permission.who(),
        })
    }
}

/// The caller's principal, whatever its role: `API_KEY_REQUIRED` without one.
pub fn principal<'a>(ctx: &'a async_graphql::Context<'_>) -> Result<&'a Principal, ApiError> {
    ctx.data_opt::<Caller>()
        .and_then(|c| c.0.as_deref())
        .ok_or_else(|| ApiError::ApiKeyRequired {
            permission: "any".into(),
            who: "a key of any role".into(),
        })
}

/// A fresh key and the entry that admits it.
#[derive(Debug, Serialize)]
pub struct NewKey {
    /// The key itself: shown once, stored nowhere.
    pub key: String,
    pub name: String,
    pub role: Role,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub queues: Vec<String>,
    pub sha256: String,
}

impl NewKey {
    /// The entry for the keys file, as YAML list item lines.
    pub fn yaml_entry(&self) -> String {
        let mut out = format!("  - name: {}\n    role: {}\n", self.name, self.role);
        if !self.queues.is_empty() {
            out.push_str(&format!("    queues: [{}]\n", self.queues.join(", ")));
        }
        out.push_str(&format!("    sha256: {}\n", self.sha256));
        out
    }
}

/// Makes a key for `name` with `role` (and, for reviewers, `queues`): 256
/// random bits from the thread-local CSPRNG, URL-safe base64.
pub fn new_key(name: &str, role: Role, queues: Vec<String>) -> Result<NewKey, AuthError> {
    let file = PathBuf::from("(command line)");
    if !is_valid_name(name) {
        return Err(AuthError::NameInvalid {
            file,
            path: "--name".into(),
            name: name.into(),
        });
    }
    if role != Role::Reviewer && !queues.is_empty() {
        return Err(AuthError::QueuesNotReviewer {
            file,
            path: "--queue".into(),
            name: name.into(),
            role,
        });
    }
    if let Some(queue) = queues.iter().find(|q| !is_valid_name(q)) {
        return Err(AuthError::QueueInvalid {
            file,
            path: "--queue".into(),
            name: name.into(),
            queue: queue.clone(),
        });
    }
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::random();
    let key = format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let sha256 = hex::encode(Sha256::digest(key.as_bytes()));
    Ok(NewKey {
        key,
        name: name.into(),
        role,
        queues,
        sha256,
    })
}

/// A keys file (or `baton key new` argument) that cannot be used. Codes are
/// stable UPPER_SNAKE (`API_KEYS_*` for the file, `API_KEY_*` for an entry).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read the API keys file {}: {source}", file.display())]
    FileUnreadable {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the API keys file {} is {size} bytes, more than the {MAX_FILE_BYTES} allowed", file.display())]
    FileTooLarge { file: PathBuf, size: u64 },
    #[error("the API keys file {} is not valid {format}: {message}", file.display())]
    Syntax {
        file: PathBuf,
        format: &'static str,
        message: String,
    },
    #[error("the API keys file {} at `{path}`: {message}", file.display())]
    Structure {
        file: PathBuf,
        path: String,
        message: String,
    },
    #[error("{} at `{path}`: key name `{name}` is not 1 to {MAX_NAME_CHARS} letters, digits, `.`, `_`, `-`, `@` starting with a letter or digit", file.display())]
    NameInvalid {
        file: PathBuf,
        path: String,
        name: String,
    },
    #[error("{} at `{path}`: key name `{name}` is used twice", file.display())]
    NameDuplicate {
        file: PathBuf,
        path: String,
        name: String,
    },
    #[error("{} at `{path}`: the sha256 of key `{name}` is not 64 lowercase hex digits", file.display())]
    DigestInvalid {
        file: PathBuf,
        path: String,
        name: String,
    },
    #[error("{} at `{path}`: this sha256 is also the key `{first}`'s", file.display())]
    DigestDuplicate {
        file: PathBuf,
        path: String,
        first: String,
    },
    #[error("{} at `{path}`: key `{name}` has role {role}, and only reviewers have queues", file.display())]
    QueuesNotReviewer {
        file: PathBuf,
        path: String,
        name: String,
        role: Role,
    },
    #[error("{} at `{path}`: queue `{queue}` of key `{name}` is not 1 to {MAX_NAME_CHARS} letters, digits, `.`, `_`, `-`, `@`", file.display())]
    QueueInvalid {
        file: PathBuf,
        path: String,
        name: String,
        queue: String,
    },
}

impl AuthError {
    pub fn code(&self) -> Code {
        match self {
            AuthError::FileUnreadable { .. } => Code::ApiKeysUnreadable,
            AuthError::FileTooLarge { .. } => Code::ApiKeysTooLarge,
            AuthError::Syntax { .. } => Code::ApiKeysSyntax,
            AuthError::Structure { .. } => Code::ApiKeysInvalid,
            AuthError::NameInvalid { .. } => Code::ApiKeyNameInvalid,
            AuthError::NameDuplicate { .. } => Code::ApiKeyNameDuplicate,
            AuthError::DigestInvalid { .. } => Code::ApiKeySha256Invalid,
            AuthError::DigestDuplicate { .. } => Code::ApiKeySha256Duplicate,
            AuthError::QueuesNotReviewer { .. } => Code::ApiKeyQueuesNotReviewer,
            AuthError::QueueInvalid { .. } => Code::ApiKeyQueueInvalid,
        }
    }

    pub fn hint(&self) -> &'static str {
        match self {
            AuthError::FileUnreadable { .. } => {
                "check the path given to --api-keys / BATON_API_KEYS"
            }
            AuthError::FileTooLarge { .. } => "a keys file holds names, roles and hashes only",
            AuthError::Syntax { .. } => "fix the syntax at the position shown",
            AuthError::Structure { .. } => {
                "the file is `keys:` followed by entries with `name`, `role` (viewer, editor, \
                 publisher, reviewer, admin), `sha256` and, for reviewers, `queues`; \
                 `baton key new` prints one"
            }
            AuthError::NameInvalid { .. } => "name the key after its holder, e.g. `qa-alice`",
            AuthError::NameDuplicate { .. } => "give every key its own name",
            AuthError::DigestInvalid { .. } => {
                "store the SHA-256 of the key, never the key: `printf %s \"$KEY\" | sha256sum`, \
                 or make a key with `baton key new`"
            }
            AuthError::DigestDuplicate { .. } => {
                "each key belongs to one entry; make a new key with `baton key new`"
            }
            AuthError::QueuesNotReviewer { .. } => {
                "remove `queues`, or make the key a reviewer (admins decide every queue)"
            }
            AuthError::QueueInvalid { .. } => "use the queue names the flows' approval steps use",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn load(doc: serde_json::Value) -> Result<ApiKeys, AuthError> {
        ApiKeys::from_document(Path::new("keys.yaml"), doc)
    }

    fn sha(key: &str) -> String {
        hex::encode(Sha256::digest(key.as_bytes()))
    }

    fn principal(role: Role, queues: &[&str]) -> Principal {
        Principal {
            name: "p".into(),
            role,
            queues: queues.iter().map(|q| q.to_string()).collect(),
        }
    }

    #[test]
    fn permissions_list_what_allows_allows() {
        let viewer = principal(Role::Viewer, &[]).permissions();
        assert!(viewer.contains(&"READ_FLOWS".to_string()));
        assert!(!viewer.contains(&"SAVE_DRAFTS".to_string()));
        assert!(!viewer.iter().any(|p| p.starts_with("DECIDE_APPROVAL")));
        let reviewer = principal(Role::Reviewer, &["underwriter"]).permissions();
        assert_eq!(
            reviewer,
            ["LIST_APPROVALS", "DECIDE_APPROVAL(underwriter)"].map(String::from)
        );
        let admin = principal(Role::Admin, &[]).permissions();
        assert_eq!(admin.len(), Permission::UNSCOPED.len() + 1);
        assert!(admin.contains(&"DECIDE_APPROVAL(*)".to_string()));
    }

    #[test]
    fn permission_table() {
        use Permission::*;
        use Role::*;
        let q = DecideApproval {
            queue: "underwriter",
        };
        let cases: [(Permission, &[Role]); 8] = [
            (ReadSessions, &[Viewer, Editor, Publisher, Admin]),
            (ReadResults, &[Viewer, Editor, Publisher, Admin]),
            (ForceVariant, &[Editor, Publisher, Admin]),
            (MockSessions, &[Editor, Publisher, Admin]),
            (SendEvents, &[Publisher, Admin]),
            (OperateSessions, &[Admin]),
            (ListApprovals, &[Reviewer, Admin]),
            (q, &[Reviewer, Admin]),
        ];
        for (permission, allowed) in cases {
            for role in Role::ALL {
                let queues: &[&str] = if role == Reviewer {
                    &["underwriter"]
                } else {
                    &[]
                };
                let p = principal(role, queues);
                assert_eq!(
                    p.allows(permission),
                    allowed.contains(&role),
                    "{role} {permission:?}"
                );
            }
        }
        let reviewer = principal(Reviewer, &["underwriter"]);
        assert!(!reviewer.allows(DecideApproval { queue: "fraud" }));
        assert!(principal(Admin, &[]).allows(DecideApproval { queue: "fraud" }));
    }

    #[test]
    fn keys_resolve_by_hash() {
        let keys = load(json!({"keys": [
            {"name": "qa-alice", "role": "editor", "sha256": sha("alice-key")},
            {"name": "uw", "role": "reviewer", "queues": ["underwriter"], "sha256": sha("uw-key")},
        ]}))
        .unwrap();
        assert_eq!(keys.len(), 2);
        let alice = keys.resolve("alice-key").unwrap();
        assert_eq!(
            (alice.name.as_str(), alice.role),
            ("qa-alice", Role::Editor)
        );
        assert_eq!(keys.resolve("uw-key").unwrap().queues, ["underwriter"]);
        assert!(keys.resolve("alice-key ").is_none());
        assert!(keys.resolve(&sha("alice-key")).is_none());
        assert!(keys.caller_for("").unwrap().0.is_none());
        assert_eq!(
            keys.caller_for("nope").unwrap_err().code(),
            "INVALID_API_KEY"
        );
    }

    #[test]
    fn bad_files_have_codes() {
        let code = |doc| load(doc).unwrap_err().code();
        let ok = sha("k");
        assert_eq!(
            code(json!({"keys": [{"name": "a", "role": "root", "sha256": ok}]})),
            "API_KEYS_INVALID"
        );
        assert_eq!(
            code(json!({"keys": [{"name": "a", "role": "admin", "key": "k", "sha256": ok}]})),
            "API_KEYS_INVALID"
        );
        assert_eq!(code(json!({"key": []})), "API_KEYS_INVALID");
        assert_eq!(
            code(json!({"keys": [{"name": "a b", "role": "admin", "sha256": ok}]})),
            "API_KEY_NAME_INVALID"
        );
        assert_eq!(
            code(json!({"keys": [{"name": "a".repeat(65), "role": "admin", "sha256": ok}]})),
            "API_KEY_NAME_INVALID"
        );
        assert_eq!(
            code(
                json!({"keys": [{"name": "a", "role": "admin", "sha256": ok}, {"name": "a", "role": "viewer", "sha256": sha("j")}]})
            ),
            "API_KEY_NAME_DUPLICATE"
        );
        assert_eq!(
            code(json!({"keys": [{"name": "a", "role": "admin", "sha256": "k"}]})),
            "API_KEY_SHA256_INVALID"
        );
        assert_eq!(
            code(json!({"keys": [{"name": "a", "role": "admin", "sha256": ok.to_uppercase()}]})),
            "API_KEY_SHA256_INVALID"
        );
        assert_eq!(
            code(
                json!({"keys": [{"name": "a", "role": "admin", "sha256": ok}, {"name": "b", "role": "viewer", "sha256": ok}]})
            ),
            "API_KEY_SHA256_DUPLICATE"
        );
        assert_eq!(
            code(json!({"keys": [{"name": "a", "role": "editor", "queues": ["q"], "sha256": ok}]})),
            "API_KEY_QUEUES_NOT_REVIEWER"
        );
        assert_eq!(
            code(
                json!({"keys": [{"name": "a", "role": "reviewer", "queues": ["bad queue"], "sha256": ok}]})
            ),
            "API_KEY_QUEUE_INVALID"
        );
        let err = load(json!({"keys": [{"name": "a", "role": "root", "sha256": ok}]})).unwrap_err();
        assert!(err.to_string().contains("keys[0].role"), "{err}");
        assert!(err.to_string().contains("viewer"), "{err}");
    }

    #[test]
    fn new_keys_admit_themselves() {
        let made = new_key("uw", Role::Reviewer, vec!["underwriter".into()]).unwrap();
        assert!(made.key.starts_with(KEY_PREFIX));
        assert_eq!(made.key.len(), KEY_PREFIX.len() + 43);
        let yaml = format!("keys:\n{}", made.yaml_entry());
        let doc = crate::document::parse(Path::new("k.yaml"), &yaml, MAX_FILE_BYTES).unwrap();
        let keys = ApiKeys::from_document(Path::new("k.yaml"), doc).unwrap();
        let p = keys.resolve(&made.key).unwrap();
        assert_eq!(
            (p.role, p.queues.clone()),
            (Role::Reviewer, vec!["underwriter".to_string()])
        );
        assert_ne!(new_key("uw", Role::Admin, vec![]).unwrap().key, made.key);
        assert_eq!(
            new_key("x", Role::Admin, vec!["q".into()])
                .unwrap_err()
                .code(),
            "API_KEY_QUEUES_NOT_REVIEWER"
        );
        assert_eq!(
            new_key("", Role::Admin, vec![]).unwrap_err().code(),
            "API_KEY_NAME_INVALID"
        );
    }
}

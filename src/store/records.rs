//! What goes into the store and what comes back out.
//!
//! Timestamps are milliseconds since the Unix epoch (UTC), set by the Baton
//! process that writes the row.

use serde_json::Value;
use serde_json::value::RawValue;

/// One published, immutable version of a flow definition.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowVersionRecord {
    pub flow_id: String,
    /// 1, 2, 3… per flow.
    pub version: i32,
    /// Hash of the flow file's content; equal hashes mean the same version.
    pub content_hash: String,
    /// The flow definition as published (JSON of the flow file).
    pub definition: Value,
    pub created_at: i64,
    /// The API key's name that saved it, or `files`.
    pub author: String,
    pub message: String,
    /// The text as saved (YAML or JSON); `None` for versions recorded from
    /// files before the release process existed.
    pub source: Option<String>,
}

/// A session to create.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSession {
    pub id: String,
    pub flow_id: String,
    /// Must exist in `flow_versions` (see [`super::Store::ensure_flow_version`]).
    pub flow_version: i32,
    pub user_id: String,
    /// Hash of the session's bearer token; the token itself is never stored.
    pub token_hash: String,
    pub status: String,
    /// The snapshot the engine reads (current node, context, back stack…).
    pub state: Value,
}

/// A session as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub id: String,
    pub flow_id: String,
    pub flow_version: i32,
    pub user_id: String,
    pub token_hash: String,
    pub status: String,
    /// Number of events in the session's log; the optimistic-concurrency token.
    pub seq: i64,
    pub state: Value,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An event to append to a session's log.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub kind: String,
    pub payload: Value,
}

impl NewEvent {
    pub fn new(kind: impl Into<String>, payload: Value) -> Self {
        NewEvent {
            kind: kind.into(),
            payload,
        }
    }
}

/// An event of a session's log.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    /// 1-based position in the session's log.
    pub seq: i64,
    pub kind: String,
    pub payload: Value,
    pub created_at: i64,
}

/// The idempotency record to write with a commit.
#[derive(Debug, Clone)]
pub struct NewIdempotency {
    pub key: String,
    /// Hash of the request, so a replay with a different body can be told apart.
    pub request_hash: String,
    /// The response to return on replay, as JSON (serialized by the caller
    /// straight from its own type: a submit's view never becomes a `Value`).
    pub response: Box<RawValue>,
}

/// A stored idempotency record.
#[derive(Debug, Clone)]
pub struct IdempotencyRecord {
    pub session_id: String,
    pub key: String,
    pub request_hash: String,
    /// The recorded answer's JSON text, checked but not built into a
    /// `Value`: a replay parses it once, straight into the answer's type.
    pub response: Box<RawValue>,
    pub created_at: i64,
}

/// Records are equal when their fields are, the answer compared as the
/// text stored (`RawValue` has no equality of its own).
impl PartialEq for IdempotencyRecord {
    fn eq(&self, other: &Self) -> bool {
        self.session_id == other.session_id
            && self.key == other.key
            && self.request_hash == other.request_hash
            && self.response.get() == other.response.get()
            && self.created_at == other.created_at
    }
}

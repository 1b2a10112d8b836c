//! The application service: what the API calls. It ties the registry of
//! compiled flow versions, the pure engine and the store together, and
//! owns the rules that span them — session tokens, idempotent submits,
//! optimistic concurrency and update fan-out.

mod error;
pub mod hub;
pub mod registry;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub use error::ServiceError;

use crate::engine::{
    self, Advance, ClientInfo, EngineError, FieldError, Limits, ScreenView, SessionState, Status,
};
use crate::flow::compile::CompiledFlow;
use crate::store::{NewEvent, NewIdempotency, NewSession, SessionRecord, Store, StoreError};
use hub::Hub;
use registry::Registry;

/// A session as the client sees it: the `FlowSession` of the API. Stored
/// as the response of an idempotent submit, so it (de)serializes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionView {
    pub id: String,
    pub flow_id: String,
    pub flow_version: i32,
    pub status: Status,
    pub screen: Option<ScreenView>,
}

/// What a caller wants to start.
#[derive(Debug, Clone)]
pub struct StartRequest {
    pub flow_id: String,
    pub user_id: String,
    pub user_attributes: Value,
    pub client: ClientInfo,
}

#[derive(Debug, Clone)]
pub struct SubmitRequest {
    pub session_id: String,
    pub screen_id: String,
    pub action: String,
    pub values: Map<String, Value>,
    pub idempotency_key: Option<String>,
}

/// Longest accepted idempotency key and user id, in bytes.
const MAX_KEY_LEN: usize = 200;
/// Attempts when another request advanced the same session concurrently.
const MAX_CONFLICT_RETRIES: usize = 3;

#[derive(Clone)]
pub struct Baton {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    registry: Registry,
    limits: Limits,
    hub: Hub,
}

impl Baton {
    pub fn new(store: Store, registry: Registry, limits: Limits) -> Baton {
        Baton {
            inner: Arc::new(Inner {
                store,
                registry,
                limits,
                hub: Hub::default(),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// Starts a session on the latest version of the flow. Returns the
    /// session and its bearer token (shown once; only its hash is stored).
    pub async fn start_flow(
        &self,
        req: StartRequest,
    ) -> Result<(SessionView, String), ServiceError> {
        if req.user_id.is_empty() || req.user_id.len() > MAX_KEY_LEN {
            return Err(ServiceError::InvalidInput {
                field: "user.id".into(),
                message: format!("must be 1 to {MAX_KEY_LEN} bytes"),
            });
        }
        if !matches!(req.user_attributes, Value::Null | Value::Object(_)) {
            return Err(ServiceError::InvalidInput {
                field: "user.attributes".into(),
                message: "must be a JSON object".into(),
            });
        }
        let flow =
            self.inner
                .registry
                .latest(&req.flow_id)
                .ok_or_else(|| ServiceError::FlowNotFound {
                    flow_id: req.flow_id.clone(),
                })?;
        let session_id = uuid::Uuid::now_v7().to_string();
        let advance = engine::start(
            &flow,
            engine::StartInput {
                session_id: session_id.clone(),
                user_id: req.user_id.clone(),
                user_attributes: req.user_attributes,
                client: req.client,
                started_at_ms: now_ms(),
            },
            &self.inner.limits,
        )?;
        let view = view_of(&flow, &session_id, &advance.state)?;
        let token = new_token();
        let record = NewSession {
            id: session_id.clone(),
            flow_id: flow.id.clone(),
            flow_version: flow.version,
            user_id: req.user_id,
            token_hash: hash_token(&token),
            status: advance.state.status.as_str().to_string(),
            state: serde_json::to_value(&advance.state).map_err(ServiceError::internal)?,
        };
        self.inner
            .store
            .create_session(&record, &to_new_events(&advance)?)
            .await?;
        Ok((view, token))
    }

    /// The session as it is now.
    pub async fn session(
        &self,
        session_id: &str,
        token: Option<&str>,
    ) -> Result<SessionView, ServiceError> {
        let (record, flow, state) = self.load(session_id, token).await?;
        view_of(&flow, &record.id, &state)
    }

    pub async fn submit(
        &self,
        req: SubmitRequest,
        token: Option<&str>,
    ) -> Result<SessionView, ServiceError> {
        if let Some(key) = &req.idempotency_key
            && (key.is_empty() || key.len() > MAX_KEY_LEN)
        {
            return Err(ServiceError::InvalidInput {
                field: "idempotencyKey".into(),
                message: format!("must be 1 to {MAX_KEY_LEN} bytes"),
            });
        }
        let request_hash = req
            .idempotency_key
            .as_ref()
            .map(|_| request_fingerprint(&req));
        for _ in 0..MAX_CONFLICT_RETRIES {
            let (record, flow, state) = self.load(&req.session_id, token).await?;
            if let (Some(key), Some(hash)) = (&req.idempotency_key, &request_hash)
                && let Some(done) = self.replay(&req.session_id, key, hash).await?
            {
                return Ok(done);
            }
            let advance = match engine::submit(
                &flow,
                &state,
                &req.screen_id,
                &req.action,
                &req.values,
                &self.inner.limits,
            ) {
                Ok(a) => a,
                Err(EngineError::StaleScreen { submitted, current }) => {
                    // Not applied: the client gets the screen it should show.
                    let mut view = view_of(&flow, &record.id, &state)?;
                    if let Some(screen) = view.screen.as_mut() {
                        screen.errors = vec![FieldError {
                            field: None,
                            code: "STALE_SCREEN".into(),
                            message: format!(
                                "`{submitted}` is no longer the current screen; this is `{current}`."
                            ),
                        }];
                    }
                    return Ok(view);
                }
                Err(e) => return Err(e.into()),
            };
            let view = view_of(&flow, &record.id, &advance.state)?;
            let idem = match (&req.idempotency_key, &request_hash) {
                (Some(key), Some(hash)) => Some(NewIdempotency {
                    key: key.clone(),
                    request_hash: hash.clone(),
                    response: serde_json::to_value(&view).map_err(ServiceError::internal)?,
                }),
                _ => None,
            };
            match self.commit(&record, &advance, idem.as_ref()).await {
                Ok(()) => {
                    self.inner.hub.publish(&view);
                    return Ok(view);
                }
                // Someone else advanced the session (or used the key) first:
                // start over from what they stored.
                Err(ServiceError::Store(
                    StoreError::Conflict { .. } | StoreError::IdempotencyKeyTaken { .. },
                )) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ServiceError::Busy)
    }

    pub async fn back(
        &self,
        session_id: &str,
        token: Option<&str>,
    ) -> Result<SessionView, ServiceError> {
        for _ in 0..MAX_CONFLICT_RETRIES {
            let (record, flow, state) = self.load(session_id, token).await?;
            let advance = engine::back(&flow, &state)?;
            let view = view_of(&flow, &record.id, &advance.state)?;
            match self.commit(&record, &advance, None).await {
                Ok(()) => {
                    self.inner.hub.publish(&view);
                    return Ok(view);
                }
                Err(ServiceError::Store(StoreError::Conflict { .. })) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ServiceError::Busy)
    }

    /// Checks the token and returns the current view plus a receiver of
    /// later updates. Subscribing before reading means no update is missed.
    pub async fn watch(
        &self,
        session_id: &str,
        token: Option<&str>,
    ) -> Result<(SessionView, tokio::sync::broadcast::Receiver<SessionView>), ServiceError> {
        let rx = self.inner.hub.subscribe(session_id);
        let view = self.session(session_id, token).await?;
        Ok((view, rx))
    }

    async fn replay(
        &self,
        session_id: &str,
        key: &str,
        hash: &str,
    ) -> Result<Option<SessionView>, ServiceError> {
        let Some(done) = self
            .inner
            .store
            .idempotent_response(session_id, key)
            .await?
        else {
            return Ok(None);
        };
        if done.request_hash != hash {
            return Err(ServiceError::IdempotencyKeyReused {
                key: key.to_string(),
            });
        }
        let view = serde_json::from_value(done.response).map_err(ServiceError::internal)?;
        Ok(Some(view))
    }

    async fn commit(
        &self,
        record: &SessionRecord,
        advance: &Advance,
        idem: Option<&NewIdempotency>,
    ) -> Result<(), ServiceError> {
        let state = serde_json::to_value(&advance.state).map_err(ServiceError::internal)?;
        self.inner
            .store
            .commit(
                &record.id,
                record.seq,
                advance.state.status.as_str(),
                &state,
                &to_new_events(advance)?,
                idem,
            )
            .await?;
        Ok(())
    }

    async fn load(
        &self,
        session_id: &str,
        token: Option<&str>,
    ) -> Result<(SessionRecord, Arc<CompiledFlow>, SessionState), ServiceError> {
        let record = self.inner.store.session(session_id).await?.ok_or_else(|| {
            ServiceError::SessionNotFound {
                session_id: session_id.to_string(),
            }
        })?;
        let Some(token) = token else {
            return Err(ServiceError::Unauthenticated);
        };
        if hash_token(token) != record.token_hash {
            return Err(ServiceError::Forbidden);
        }
        let flow = self
            .inner
            .registry
            .version(&record.flow_id, record.flow_version)
            .await?;
        let state: SessionState =
            serde_json::from_value(record.state.clone()).map_err(ServiceError::internal)?;
        Ok((record, flow, state))
    }
}

fn view_of(
    flow: &CompiledFlow,
    session_id: &str,
    state: &SessionState,
) -> Result<SessionView, ServiceError> {
    Ok(SessionView {
        id: session_id.to_string(),
        flow_id: flow.id.clone(),
        flow_version: flow.version,
        status: state.status,
        screen: engine::render(flow, state)?,
    })
}

fn to_new_events(advance: &Advance) -> Result<Vec<NewEvent>, ServiceError> {
    advance
        .events
        .iter()
        .map(|e| {
            Ok(NewEvent {
                kind: e.kind().to_string(),
                payload: serde_json::to_value(e).map_err(ServiceError::internal)?,
            })
        })
        .collect()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Tokens are stored as SHA-256: a leaked database does not leak sessions.
pub fn hash_token(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn request_fingerprint(req: &SubmitRequest) -> String {
    let mut h = Sha256::new();
    h.update(req.screen_id.as_bytes());
    h.update([0]);
    h.update(req.action.as_bytes());
    h.update([0]);
    h.update(serde_json::to_vec(&req.values).unwrap_or_default());
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

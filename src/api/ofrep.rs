//! The OpenFeature Remote Evaluation Protocol (OFREP,
//! <https://github.com/open-feature/protocol>, `service/openapi.yaml`) over
//! the current [`FlagStore`], so an off-the-shelf OFREP provider evaluates
//! Baton's flags.
//!
//! - `POST /ofrep/v1/evaluate/flags/{key}`: one flag. 200 with `{key, value,
//!   variant, reason, metadata}` (no `value`/`variant` when the caller's code
//!   default applies: `DISABLED`, or `DEFAULT` without a default variant);
//!   404 `{key, errorCode: FLAG_NOT_FOUND, errorDetails}`; 400 `{key,
//!   errorCode, errorDetails}` for the other evaluation errors
//!   (`PARSE_ERROR`, `GENERAL`) and for a body that
//!   is not `{"context": {...}}` (`INVALID_CONTEXT`).
//! - `POST /ofrep/v1/evaluate/flags`: every flag, in key order, as `{flags:
//!   [...]}` (errors as entries), with an `ETag` over the answer's bytes;
//!   `If-None-Match` with that tag answers 304 without a body. A bad body is
//!   400 `{errorCode: INVALID_CONTEXT, errorDetails}`.
//!
//! Both answer 401 `UNAUTHENTICATED` without a client key and 403
//! `FORBIDDEN` for a key not configured; the key comes as `Authorization:
//! Bearer <key>` or `X-API-Key: <key>`. Keys are held as SHA-256 digests and
//! compared in constant time. With no keys configured the endpoints are
//! open (the app logs a warning at startup). Bodies over the limit are 413
//! `BODY_TOO_LARGE`. Browsers may call the endpoints from any origin (CORS):
//! the keys are client keys, shipped inside apps, not secrets.

use crate::codes::Code;
use std::sync::Arc;

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{Path, State},
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tower_http::cors::{Any, CorsLayer};

use crate::config::ClientKey;
use crate::flags::{ErrorCode, EvaluationContext, FlagStore, Resolution};

/// Single-flag evaluation path (with `{key}`).
pub const EVALUATE_FLAG_PATH: &str = "/ofrep/v1/evaluate/flags/{key}";
/// Bulk evaluation path.
pub const EVALUATE_FLAGS_PATH: &str = "/ofrep/v1/evaluate/flags";

/// The accepted client keys, as SHA-256 digests.
#[derive(Clone, Default)]
pub struct ClientKeys {
    digests: Vec<[u8; 32]>,
}

impl ClientKeys {
    pub fn new(keys: &[ClientKey]) -> ClientKeys {
        ClientKeys {
            digests: keys.iter().map(|k| digest(k.expose())).collect(),
        }
    }

    /// No keys configured: every caller is let in.
    pub fn is_open(&self) -> bool {
        self.digests.is_empty()
    }

    fn check(&self, headers: &HeaderMap) -> Result<(), OfrepError> {
        if self.is_open() {
            return Ok(());
        }
        let key = presented_key(headers).ok_or(OfrepError::Unauthenticated)?;
        let presented = digest(key);
        // Every digest is compared in full, so timing says nothing about
        // which key (or how much of one) matched.
        let mut matched = false;
        for d in &self.digests {
            let diff = d
                .iter()
                .zip(presented.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            matched |= diff == 0;
        }
        if matched {
            Ok(())
        } else {
            Err(OfrepError::Forbidden)
        }
    }
}

impl std::fmt::Debug for ClientKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKeys")
            .field("keys", &self.digests.len())
            .finish()
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

const X_API_KEY: &str = "x-api-key";

/// `Authorization: Bearer <key>` first, then `X-API-Key`.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .filter(|k| !k.is_empty());
    bearer.or_else(|| {
        headers
            .get(X_API_KEY)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|k| !k.is_empty())
    })
}

/// Request-level OFREP errors (evaluation errors are answers, not these).
#[derive(Debug, thiserror::Error)]
pub enum OfrepError {
    #[error("no client key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`")]
    Unauthenticated,
    #[error("the client key is not accepted")]
    Forbidden,
    #[error("{message}")]
    InvalidContext { message: String },
    #[error("request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("{method} is not supported here; use POST")]
    MethodNotAllowed { method: String },
}

impl OfrepError {
    /// Stable code; `INVALID_CONTEXT` is OpenFeature's own.
    pub fn code(&self) -> Code {
        match self {
            OfrepError::Unauthenticated => Code::Unauthenticated,
            OfrepError::Forbidden => Code::Forbidden,
            OfrepError::InvalidContext { .. } => Code::InvalidContext,
            OfrepError::BodyTooLarge { .. } => Code::BodyTooLarge,
            OfrepError::MethodNotAllowed { .. } => Code::MethodNotAllowed,
        }
    }

    pub fn hint(&self) -> Option<String> {
        Some(match self {
            OfrepError::Unauthenticated | OfrepError::Forbidden => {
                "use a key from the server's --ofrep-keys (BATON_OFREP_KEYS)".into()
            }
            OfrepError::InvalidContext { .. } => {
                r#"send {"context": {"targetingKey": "user-1", ...}} (or an empty body)"#.into()
            }
            OfrepError::BodyTooLarge { .. } => {
                "send a smaller evaluation context (--max-body-bytes)".into()
            }
            OfrepError::MethodNotAllowed { .. } => "OFREP evaluations are POST requests".into(),
        })
    }

    pub fn status(&self) -> StatusCode {
        match self {
            OfrepError::Unauthenticated => StatusCode::UNAUTHORIZED,
            OfrepError::Forbidden => StatusCode::FORBIDDEN,
            OfrepError::InvalidContext { .. } => StatusCode::BAD_REQUEST,
            OfrepError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            OfrepError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// `{key?, errorCode, errorDetails, hint?}` with the error's status.
    fn response(&self, key: Option<&str>) -> Response {
        let mut body = serde_json::Map::new();
        if let Some(key) = key {
            body.insert("key".into(), Value::String(key.to_owned()));
        }
        body.insert(
            "errorCode".into(),
            Value::String(self.code().as_str().into()),
        );
        body.insert("errorDetails".into(), Value::String(self.to_string()));
        if let Some(hint) = self.hint() {
            body.insert("hint".into(), Value::String(hint));
        }
        let mut response = json_response(self.status(), Value::Object(body).to_string());
        if let OfrepError::MethodNotAllowed { .. } = self {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        response
    }
}

struct Shared {
    flags: FlagStore,
    keys: ClientKeys,
    max_body_bytes: usize,
}

/// The OFREP routes, to merge into the app's router.
pub fn router(flags: FlagStore, keys: ClientKeys, max_body_bytes: usize) -> Router {
    let shared = Arc::new(Shared {
        flags,
        keys,
        max_body_bytes,
    });
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods([Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_NONE_MATCH,
            HeaderName::from_static(X_API_KEY),
        ])
        .expose_headers([header::ETAG]);
    Router::new()
        .route(
            EVALUATE_FLAG_PATH,
            post(evaluate_one).fallback(method_not_allowed),
        )
        .route(
            EVALUATE_FLAGS_PATH,
            post(evaluate_all).fallback(method_not_allowed),
        )
        .with_state(shared)
        .layer(cors)
}

async fn method_not_allowed(method: Method) -> Response {
    OfrepError::MethodNotAllowed {
        method: method.to_string(),
    }
    .response(None)
}

async fn evaluate_one(
    State(shared): State<Arc<Shared>>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let context = match prepare(&shared, &headers, body).await {
        Ok(context) => context,
        Err(e) => return e.response(Some(&key)),
    };
    let set = shared.flags.current();
    let resolution = set.evaluate(&key, &context);
    let status = match resolution.error_code {
        None => StatusCode::OK,
        Some(ErrorCode::FlagNotFound) => StatusCode::NOT_FOUND,
        Some(_) => StatusCode::BAD_REQUEST,
    };
    let body = serde_json::to_string(&Entry(&resolution)).expect("a resolution serializes");
    json_response(status, body)
}

async fn evaluate_all(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let context = match prepare(&shared, &headers, body).await {
        Ok(context) => context,
        Err(e) => return e.response(None),
    };
    let set = shared.flags.current();
    let resolutions = set.evaluate_all(&context);
    let body = serde_json::to_vec(&Bulk(&resolutions)).expect("resolutions serialize");
    let etag = etag(&body);
    if if_none_match(&headers, &etag) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    let mut response = json_response(StatusCode::OK, body);
    response.headers_mut().insert(header::ETAG, etag);
    response
}

/// Authenticates, reads the body and builds the evaluation context.
async fn prepare(
    shared: &Shared,
    headers: &HeaderMap,
    body: Body,
) -> Result<EvaluationContext, OfrepError> {
    shared.keys.check(headers)?;
    let bytes = axum::body::to_bytes(body, shared.max_body_bytes)
        .await
        .map_err(|_| OfrepError::BodyTooLarge {
            limit: shared.max_body_bytes,
        })?;
    context_from_body(&bytes)
}

/// `{"context": {...}}`; an empty body, `{}` and `"context": null` are the
/// empty context. The media type is not checked: OFREP clients differ in
/// what they send (`fetch` with a string body says `text/plain`).
fn context_from_body(bytes: &Bytes) -> Result<EvaluationContext, OfrepError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(EvaluationContext::empty());
    }
    let invalid = |message: String| OfrepError::InvalidContext { message };
    let doc: Value = serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("the request body is not valid JSON: {e}")))?;
    let Value::Object(mut doc) = doc else {
        return Err(invalid("the request body must be a JSON object".into()));
    };
    let context = doc.remove("context").unwrap_or(Value::Null);
    EvaluationContext::from_value(&context).map_err(|e| invalid(format!("`context`: {e}")))
}

fn json_response(status: StatusCode, body: impl Into<Body>) -> Response {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A strong tag over the answer's bytes: the same flags and context give
/// the same tag, any change in any value, variant or reason a new one.
fn etag(body: &[u8]) -> HeaderValue {
    let d = Sha256::digest(body);
    let hex: String = d[..16].iter().map(|b| format!("{b:02x}")).collect();
    HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a valid header value")
}

/// RFC 9110 `If-None-Match`: `*`, or a list of tags compared weakly.
fn if_none_match(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    let ours = etag.to_str().unwrap_or_default();
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == ours)
}

/// One OFREP evaluation: success or failure shape.
struct Entry<'r, 'a>(&'r Resolution<'a>);

impl Serialize for Entry<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let r = self.0;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("key", r.key)?;
        match r.error_code {
            Some(code) => {
                map.serialize_entry("errorCode", code.as_str())?;
                map.serialize_entry("errorDetails", r.error_message.as_deref().unwrap_or(""))?;
            }
            None => {
                if let Some(value) = r.value {
                    map.serialize_entry("value", value)?;
                }
                if let Some(variant) = r.variant {
                    map.serialize_entry("variant", variant)?;
                }
                map.serialize_entry("reason", r.reason.as_str())?;
            }
        }
        map.serialize_entry("metadata", r.metadata)?;
        map.end()
    }
}

struct Bulk<'r, 'a>(&'r [Resolution<'a>]);

impl Serialize for Bulk<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("flags", &self.0.iter().map(Entry).collect::<Vec<_>>())?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_either_header() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  k1 "),
        );
        assert_eq!(presented_key(&h), Some("k1"));
        let mut h = HeaderMap::new();
        h.insert(X_API_KEY, HeaderValue::from_static("k2"));
        assert_eq!(presented_key(&h), Some("k2"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic xyz"));
        assert_eq!(presented_key(&h), Some("k2"));
        assert_eq!(presented_key(&HeaderMap::new()), None);
    }

    #[test]
    fn key_check() {
        let keys = ClientKeys::new(&[ClientKey::new("alpha"), ClientKey::new("beta")]);
        let with = |k: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(X_API_KEY, HeaderValue::from_static(k));
            h
        };
        assert!(keys.check(&with("beta")).is_ok());
        assert_eq!(keys.check(&with("gamma")).unwrap_err().code(), "FORBIDDEN");
        assert_eq!(
            keys.check(&HeaderMap::new()).unwrap_err().code(),
            "UNAUTHENTICATED"
        );
        assert!(ClientKeys::new(&[]).check(&HeaderMap::new()).is_ok());
        assert!(!format!("{keys:?}").contains("alpha"));
    }

    #[test]
    fn if_none_match_forms() {
        let tag = HeaderValue::from_static("\"abc\"");
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::IF_NONE_MATCH, HeaderValue::from_static(v));
            h
        };
        assert!(if_none_match(&with("\"abc\""), &tag));
        assert!(if_none_match(&with("\"x\", W/\"abc\""), &tag));
        assert!(if_none_match(&with("*"), &tag));
        assert!(!if_none_match(&with("\"abd\""), &tag));
        assert!(!if_none_match(&HeaderMap::new(), &tag));
    }

    #[test]
    fn body_shapes() {
        let ok = |s: &str| context_from_body(&Bytes::from(s.to_owned())).is_ok();
        assert!(ok(""));
        assert!(ok("{}"));
        assert!(ok(r#"{"context": null}"#));
        assert!(ok(r#"{"context": {"targetingKey": "u"}}"#));
        assert!(!ok("[]"));
        assert!(!ok("{"));
        assert!(!ok(r#"{"context": [1]}"#));
        assert!(!ok(r#"{"context": "u"}"#));
    }
}

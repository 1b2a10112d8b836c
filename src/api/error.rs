//! `ApiError`: every error the API layer shows to a client, with its stable
//! code, hint and HTTP status, in one place.
//!
//! Two kinds of variants live here:
//! - transport errors, raised by [`crate::api::http`] before or around
//!   GraphQL execution (malformed request, body too large, wrong media type,
//!   query over the depth/complexity limits, unknown route, not ready);
//! - resolver errors, raised by the schema's resolvers and turned into a
//!   GraphQL error with `extensions.code` and `extensions.hint` through
//!   [`ApiError::into_graphql`] or the [`ErrorExtensions`] impl (so
//!   `result.extend()?` works in a resolver).
//!
//! Codes, statuses and default hints live in the catalogue
//! ([`crate::codes`]); this enum says which instance of them applies.
//!
//! The status is what a transport error answers with. A resolver error is a
//! GraphQL field error: its HTTP status stays 200 (the GraphQL-over-HTTP
//! spec's "execution began"), the status column only documents intent.

use crate::codes::Code;
use async_graphql::{ErrorExtensionValues, ErrorExtensions, ServerError};
use axum::http::StatusCode;

/// An error shown to an API client. See the module docs for the code table.
///
/// `Display` is the client-facing message. For [`ApiError::Internal`] it is a
/// fixed generic text, so even a plain `?` (which async-graphql turns into an
/// error without extensions) cannot leak internals; use
/// [`ApiError::into_graphql`] / `.extend()` to get the code and hint too.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    // ---- transport ----
    /// Not a well-formed GraphQL-over-HTTP request.
    #[error("{message}")]
    BadRequest { message: String, hint: &'static str },
    /// A JSON array body (batched operations).
    #[error("batched requests (a JSON array of operations) are not supported")]
    BatchNotSupported,
    /// The request body is over the configured limit.
    #[error("request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    /// The request's header fields are over the configured limit.
    #[error("request header fields are larger than the limit of {limit} bytes")]
    HeadersTooLarge { limit: usize },
    /// POST body media type other than `application/json` (UTF-8).
    #[error("unsupported request media type {}", content_type.as_deref().unwrap_or("(none)"))]
    UnsupportedMediaType { content_type: Option<String> },
    /// The `Accept` header allows neither JSON response media type.
    #[error("none of the media types in the Accept header can be served")]
    NotAcceptable,
    /// The HTTP method is not allowed for this request; `allow` goes into the
    /// `Allow` header.
    #[error("{message}")]
    MethodNotAllowed {
        message: String,
        allow: &'static str,
    },
    /// The operation nests deeper than the configured limit.
    #[error("query is nested deeper than the limit of {limit}")]
    QueryTooDeep { limit: usize },
    /// The operation's complexity is over the configured limit.
    #[error("query complexity is over the limit of {limit}")]
    QueryTooComplex { limit: usize },
    /// The document, fragments expanded, has more selections than allowed.
    #[error("query expands to more than {limit} fields, fragment spreads and inline fragments")]
    QueryTooLarge { limit: usize },
    /// No HTTP route matches.
    #[error("no route for {method} {path}")]
    RouteNotFound { method: String, path: String },
    /// The readiness check failed; the reason is logged, not returned.
    #[error("not ready to serve traffic")]
    NotReady,

    // ---- resolvers ----
    /// An admin call without an API key.
    #[error("this needs an API key ({permission}); none was sent")]
    ApiKeyRequired { permission: String, who: String },
    /// `X-API-Key` names no configured key.
    #[error("the API key is not valid")]
    InvalidApiKey,
    /// The API key's role does not have the permission.
    #[error("API key `{name}` (role {role}) may not do this ({permission})")]
    ForbiddenRole {
        name: String,
        role: crate::auth::Role,
        permission: String,
        who: String,
    },
    /// Too many requests.
    #[error("too many requests")]
    RateLimited { retry_after_secs: u64 },
    /// Anything unexpected. The source is logged when the error is turned
    /// into a response and never shown to the client.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// Wraps an unexpected failure; its detail is logged, never returned.
    pub fn internal(err: impl Into<anyhow::Error>) -> Self {
        Self::Internal(err.into())
    }

    /// A malformed-request error with a hint on how to form it.
    pub fn bad_request(message: impl Into<String>, hint: &'static str) -> Self {
        Self::BadRequest {
            message: message.into(),
            hint,
        }
    }

    /// The stable, public, UPPER_SNAKE code (`extensions.code`).
    pub fn code(&self) -> Code {
        match self {
            Self::BadRequest { .. } => Code::BadRequest,
            Self::BatchNotSupported => Code::BatchNotSupported,
            Self::BodyTooLarge { .. } => Code::BodyTooLarge,
            Self::HeadersTooLarge { .. } => Code::HeadersTooLarge,
            Self::UnsupportedMediaType { .. } => Code::UnsupportedMediaType,
            Self::NotAcceptable => Code::NotAcceptable,
            Self::MethodNotAllowed { .. } => Code::MethodNotAllowed,
            Self::QueryTooDeep { .. } => Code::QueryTooDeep,
            Self::QueryTooComplex { .. } => Code::QueryTooComplex,
            Self::QueryTooLarge { .. } => Code::QueryTooLarge,
            Self::RouteNotFound { .. } => Code::RouteNotFound,
            Self::NotReady => Code::NotReady,
            Self::ApiKeyRequired { .. } => Code::ApiKeyRequired,
            Self::InvalidApiKey => Code::InvalidApiKey,
            Self::ForbiddenRole { .. } => Code::ForbiddenRole,
            Self::RateLimited { .. } => Code::RateLimited,
            Self::Internal(_) => Code::Internal,
        }
    }

    /// What the client can do about it (`extensions.hint`).
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Self::BadRequest { hint, .. } => (*hint).to_owned(),
            Self::BatchNotSupported => "send one operation per request".to_owned(),
            Self::BodyTooLarge { limit } => {
                format!("keep the request body under {limit} bytes")
            }
            Self::HeadersTooLarge { limit } => {
                format!("keep the request's headers (cookies included) under {limit} bytes in all")
            }
            Self::UnsupportedMediaType { .. } => {
                "send the body as JSON with `Content-Type: application/json`".to_owned()
            }
            Self::NotAcceptable => "accept `application/graphql-response+json` \
                                    or `application/json`"
                .to_owned(),
            Self::MethodNotAllowed { allow, .. } => format!("use {allow}"),
            Self::QueryTooDeep { limit } => {
                format!("nest selections at most {limit} levels deep")
            }
            Self::QueryTooComplex { .. } => {
                "select fewer fields, or split the query into several requests".to_owned()
            }
            Self::QueryTooLarge { limit } => format!(
                "select at most {limit} fields counting every use of a fragment, \
                 or split the query into several requests"
            ),
            Self::RouteNotFound { .. } => {
                "GraphQL is served at /graphql, the console at /console; probes at /healthz and /readyz, metrics at /metrics".to_owned()
            }
            Self::NotReady => {
                "retry later; the server is starting or a dependency is down".to_owned()
            }
            Self::ApiKeyRequired { who, .. } => {
                format!("send `X-API-Key: <key>` with {who}")
            }
            Self::InvalidApiKey => "send a key listed (as its SHA-256) in the server's \
                                   --api-keys file, or no X-API-Key header at all"
                .to_owned(),
            Self::ForbiddenRole { who, .. } => format!("this needs {who}"),
            Self::RateLimited { retry_after_secs } => {
                format!("retry after {retry_after_secs} s")
            }
            Self::Internal(_) => "retry later; report the x-request-id if it persists".to_owned(),
        })
    }

    /// The HTTP status a transport error answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. }
            | Self::BatchNotSupported
            | Self::QueryTooDeep { .. }
            | Self::QueryTooComplex { .. }
            | Self::QueryTooLarge { .. } => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::RouteNotFound { .. } => StatusCode::NOT_FOUND,
            Self::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            Self::ApiKeyRequired { .. } | Self::InvalidApiKey => StatusCode::UNAUTHORIZED,
            Self::ForbiddenRole { .. } => StatusCode::FORBIDDEN,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A GraphQL error with `extensions.code` and `extensions.hint`.
    /// Internal errors are logged here and come out with a generic message.
    pub fn into_graphql(self) -> async_graphql::Error {
        graphql_error(&self)
    }

    /// The GraphQL error object of a transport-level error response.
    pub(crate) fn to_server_error(&self) -> ServerError {
        let message = log_and_message(self);
        let mut err = ServerError::new(message, None);
        err.extensions = Some(extension_values(self));
        err
    }
}

/// What every error that reaches an API client offers. [`graphql_error`]
/// is the one route from such an error to a GraphQL error, so codes, hints
/// and the hiding of internal detail work the same for every layer.
pub trait ClientError: std::fmt::Display {
    fn code(&self) -> Code;
    /// Advice that knows this instance; `None` falls back to the code's
    /// catalogue hint.
    fn hint(&self) -> Option<String>;
    /// Errors whose detail must not reach clients: logged, then answered
    /// with a generic message.
    fn is_internal(&self) -> bool;
    /// Extra `extensions` members beyond `code` and `hint`.
    fn extend_extensions(&self, _ext: &mut ErrorExtensionValues) {}
    /// What the log gets for an internal error.
    fn detail(&self) -> String {
        self.to_string()
    }
}

/// A GraphQL error with `extensions.code` and `extensions.hint` (always
/// present: the error's own hint or the catalogue's).
pub fn graphql_error(err: &impl ClientError) -> async_graphql::Error {
    let mut gql = async_graphql::Error::new(log_and_message(err));
    gql.extensions = Some(extension_values(err));
    gql
}

fn extension_values(err: &impl ClientError) -> ErrorExtensionValues {
    let code = err.code();
    let mut ext = ErrorExtensionValues::default();
    ext.set("code", code.as_str());
    ext.set("hint", err.hint().unwrap_or_else(|| code.hint().to_owned()));
    err.extend_extensions(&mut ext);
    ext
}

/// The client-facing message; an internal error's detail is logged with
/// the request id instead.
fn log_and_message(err: &impl ClientError) -> String {
    if !err.is_internal() {
        return err.to_string();
    }
    let request_id = super::http::current_request_id();
    tracing::error!(
        request_id = request_id.as_deref().unwrap_or("-"),
        code = %err.code(),
        error = err.detail(),
        "internal error"
    );
    "internal error".to_owned()
}

impl ClientError for ApiError {
    fn code(&self) -> Code {
        ApiError::code(self)
    }
    fn hint(&self) -> Option<String> {
        ApiError::hint(self)
    }
    fn is_internal(&self) -> bool {
        matches!(self, ApiError::Internal(_))
    }
    fn detail(&self) -> String {
        match self {
            ApiError::Internal(source) => format!("{source:#}"),
            other => other.to_string(),
        }
    }
    fn extend_extensions(&self, ext: &mut ErrorExtensionValues) {
        if let Self::RateLimited { retry_after_secs } = self {
            ext.set("retryAfterSeconds", *retry_after_secs);
        }
    }
}

impl ClientError for crate::service::ServiceError {
    fn code(&self) -> Code {
        crate::service::ServiceError::code(self)
    }
    fn hint(&self) -> Option<String> {
        crate::service::ServiceError::hint(self)
    }
    fn is_internal(&self) -> bool {
        crate::service::ServiceError::is_internal(self)
    }
}

impl ClientError for crate::sinks::SinkError {
    fn code(&self) -> Code {
        crate::sinks::SinkError::code(self)
    }
    fn hint(&self) -> Option<String> {
        crate::sinks::SinkError::hint(self)
    }
    fn is_internal(&self) -> bool {
        matches!(self, crate::sinks::SinkError::Store(e) if e.hint().is_none() || e.code() == Code::StoreCorrupt)
    }
}

impl ClientError for crate::experiments::live::ExperimentRunError {
    fn code(&self) -> Code {
        crate::experiments::live::ExperimentRunError::code(self)
    }
    fn hint(&self) -> Option<String> {
        crate::experiments::live::ExperimentRunError::hint(self)
    }
    fn is_internal(&self) -> bool {
        crate::experiments::live::ExperimentRunError::is_internal(self)
    }
}

impl ClientError for crate::identity::IdentityError {
    fn code(&self) -> Code {
        crate::identity::IdentityError::code(self)
    }
    fn hint(&self) -> Option<String> {
        None
    }
    fn is_internal(&self) -> bool {
        false
    }
}

impl ErrorExtensions for ApiError {
    fn extend(&self) -> async_graphql::Error {
        graphql_error(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_error_hides_its_detail() {
        let err = ApiError::internal(anyhow::anyhow!("password=hunter2 at db.internal:5432"));
        let gql = err.into_graphql();
        assert_eq!(gql.message, "internal error");
        let ext = serde_json::to_string(&gql.extensions).unwrap();
        assert!(!ext.contains("hunter2"), "{ext}");
        assert!(ext.contains("\"code\":\"INTERNAL\""), "{ext}");
    }

    #[test]
    fn every_variant_has_a_hint_of_its_own() {
        let all = [
            ApiError::bad_request("x", "y"),
            ApiError::BatchNotSupported,
            ApiError::BodyTooLarge { limit: 1 },
            ApiError::HeadersTooLarge { limit: 1 },
            ApiError::UnsupportedMediaType { content_type: None },
            ApiError::NotAcceptable,
            ApiError::MethodNotAllowed {
                message: "x".into(),
                allow: "POST",
            },
            ApiError::QueryTooDeep { limit: 1 },
            ApiError::QueryTooComplex { limit: 1 },
            ApiError::QueryTooLarge { limit: 1 },
            ApiError::RouteNotFound {
                method: "GET".into(),
                path: "/".into(),
            },
            ApiError::NotReady,
            ApiError::ApiKeyRequired {
                permission: "x".into(),
                who: "y".into(),
            },
            ApiError::InvalidApiKey,
            ApiError::ForbiddenRole {
                name: "x".into(),
                role: crate::auth::Role::Viewer,
                permission: "x".into(),
                who: "y".into(),
            },
            ApiError::RateLimited {
                retry_after_secs: 1,
            },
            ApiError::internal(anyhow::anyhow!("x")),
        ];
        for err in &all {
            let code = err.code();
            assert!(err.hint().is_some_and(|h| !h.is_empty()), "{code}");
        }
    }
}

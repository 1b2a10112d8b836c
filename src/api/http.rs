//! The HTTP transport: serves any async-graphql [`Executor`] (a `Schema<Q, M,
//! S>`, or a dynamic schema) at `/graphql` following the GraphQL-over-HTTP
//! spec (draft), with GraphiQL for browsers, subscriptions over WebSocket
//! (graphql-transport-ws, and the legacy graphql-ws), probes at `/healthz`
//! and `/readyz`, request ids and tracing.
//!
//! What `/graphql` answers, in the order the checks run:
//! - a WebSocket upgrade → subscriptions (`Sec-WebSocket-Protocol` required);
//! - GET without `query` from a client that accepts `text/html` → GraphiQL;
//! - `Accept` allowing neither JSON type → 406 `NOT_ACCEPTABLE`;
//! - POST not `application/json` (UTF-8) → 415 `UNSUPPORTED_MEDIA_TYPE`;
//! - body over [`Limits::max_body_bytes`] → 413 `BODY_TOO_LARGE`;
//! - not a well-formed request (bad JSON or URL params, missing `query`,
//!   `variables` not an object) → 400 `BAD_REQUEST`; a JSON array → 400
//!   `BATCH_NOT_SUPPORTED`;
//! - a document that expands (fragments included) past
//!   [`Limits::max_fields`] selections → 400 `QUERY_TOO_LARGE`, before
//!   async-graphql validates it;
//! - a mutation over GET → 405 `METHOD_NOT_ALLOWED` with `Allow: POST`;
//! - otherwise the operation is executed. With `application/json` the status
//!   is 200; with `application/graphql-response+json` it is 400 for a request
//!   error (parse, validation, limits, unknown operation: no `data` entry)
//!   and 200 once execution began.
//!
//! Telling request errors from execution: async-graphql does not say which
//! it was, so a response with null `data` whose errors all lack a `path` is a
//! request error (resolver errors always carry the field path). Such a
//! response is written without a `data` entry, as the GraphQL spec asks.
//!
//! An `X-API-Key` header is resolved against the configured
//! [`ApiKeys`] before execution: a key that matches none is answered 401
//! `INVALID_API_KEY`; otherwise the [`crate::auth::Caller`] goes into the request data
//! for resolvers to check with [`crate::auth::require`].
//!
//! Every response carries `x-request-id` (the client's, or a new one). The
//! request span is at DEBUG to keep the hot path cheap; internal errors log
//! the request id at ERROR on their own.

use std::{
    collections::BTreeMap,
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_graphql::{
    Data, Executor, ObjectType, SchemaBuilder, ServerError, SubscriptionType, Value, Variables,
    http::{ALL_WEBSOCKET_PROTOCOLS, GraphiQLSource},
    parser::types::{
        DocumentOperations, ExecutableDocument, OperationDefinition, OperationType, Selection,
    },
};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::{
    Router,
    body::{Body, Bytes},
    extract::{FromRequestParts, Query, Request, State, WebSocketUpgrade},
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header, request::Parts},
    response::{IntoResponse, Response},
    routing::get,
};
use futures_util::{StreamExt, stream::BoxStream};
use serde::{Deserialize, Serialize};
use tower_http::{
    cors::{AllowOrigin, CorsLayer},
    request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
    trace::TraceLayer,
};
use tracing::Instrument;

use crate::auth::{API_KEY_HEADER, ApiKeys};

use super::{
    error::ApiError,
    negotiate::{Media, accepts_html, check_json_content_type, negotiate},
    query_size::{self, Oversize},
};

/// The path GraphQL (HTTP, WebSocket and GraphiQL) is served at.
pub const GRAPHQL_PATH: &str = "/graphql";

/// How long `/readyz` waits for the readiness check before answering 503.
const READINESS_TIMEOUT: Duration = Duration::from_secs(5);

/// Bounds on what one request may cost. The depth and complexity limits are
/// enforced by the schema, so build it with [`Limits::apply`] and pass the
/// same `Limits` to [`router`] (which uses them for the body limit and for
/// the numbers in error hints).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest accepted request body (HTTP) or message (WebSocket), in bytes.
    pub max_body_bytes: usize,
    /// Deepest accepted selection nesting.
    pub max_depth: usize,
    /// Highest accepted query complexity (async-graphql's count: one per
    /// field unless a field declares its own cost).
    pub max_complexity: usize,
    /// Most selections (fields, fragment spreads, inline fragments) a
    /// document may expand to, checked before async-graphql parses further
    /// (see [`super::query_size`]).
    pub max_fields: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            max_depth: 16,
            max_complexity: 1000,
            max_fields: 2000,
        }
    }
}

impl Limits {
    /// Applies the depth and complexity limits to a schema builder.
    pub fn apply<Q, M, S>(&self, builder: SchemaBuilder<Q, M, S>) -> SchemaBuilder<Q, M, S>
    where
        Q: ObjectType + 'static,
        M: ObjectType + 'static,
        S: SubscriptionType + 'static,
    {
        builder
            .limit_depth(self.max_depth)
            .limit_complexity(self.max_complexity)
    }
}

/// The bearer token of the caller, in the request data of every operation:
/// from the `Authorization: Bearer <token>` header over HTTP, and over
/// WebSocket from the `Authorization` (any case) entry of the
/// `connection_init` payload, falling back to the upgrade request's header.
///
/// `None` when no token was sent or it was not a well-formed bearer token;
/// resolvers that need one answer `UNAUTHENTICATED`. `Debug` never shows the
/// token.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct BearerToken(pub Option<String>);

impl BearerToken {
    /// Parses an `Authorization` value: `Bearer <token>`, scheme in any case.
    pub fn parse(authorization: &str) -> Self {
        let token = authorization
            .trim()
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty() && !token.contains(char::is_whitespace));
        Self(token.map(str::to_owned))
    }

    /// The token, if any.
    pub fn token(&self) -> Option<&str> {
        self.0.as_deref()
    }

    /// The caller's token as seen from a resolver.
    pub fn of<'a>(ctx: &'a async_graphql::Context<'_>) -> Option<&'a str> {
        ctx.data_opt::<BearerToken>().and_then(BearerToken::token)
    }

    fn from_headers(headers: &HeaderMap) -> Self {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(Self::parse)
            .unwrap_or_default()
    }

    fn from_init_payload(payload: &serde_json::Value) -> Option<Self> {
        let (_, value) = payload
            .as_object()?
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case("authorization"))?;
        Some(value.as_str().map(Self::parse).unwrap_or_default())
    }
}

/// The raw `X-User-Token` (a JWT asserting the user), in the request data
/// of every operation; verified by the resolvers when identity is on.
#[derive(Clone, Default)]
pub struct UserToken(pub Option<String>);

impl UserToken {
    const HEADER: &'static str = "x-user-token";

    fn from_headers(headers: &HeaderMap) -> Self {
        Self(
            headers
                .get(Self::HEADER)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty()),
        )
    }

    fn from_init_payload(payload: &serde_json::Value) -> Option<Self> {
        let (_, value) = payload
            .as_object()?
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(Self::HEADER))?;
        Some(Self(value.as_str().map(|v| v.trim().to_owned())))
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Some(_) => "BearerToken(Some(<redacted>))",
            None => "BearerToken(None)",
        })
    }
}

/// A readiness check for `/readyz`: `Err(reason)` answers 503 and logs the
/// reason (it is not returned; it may name internal hosts). Any
/// `Fn() -> impl Future<Output = Result<(), String>>` closure is one.
pub trait Readiness: Send + Sync + 'static {
    /// Whether the server can take traffic now.
    fn check(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>>;
}

impl<F, Fut> Readiness for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    fn check(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(self())
    }
}

/// The HTTP API without a readiness check (`/readyz` answers like
/// `/healthz`). See the module docs for what each route does.
pub fn router<E: Executor>(executor: E, limits: &Limits) -> Router {
    build(executor, limits, None, ApiKeys::none())
}

/// The HTTP API with `/readyz` backed by `readiness`.
pub fn router_with_readiness<E: Executor>(
    executor: E,
    limits: &Limits,
    readiness: impl Readiness,
) -> Router {
    build(executor, limits, Some(Box::new(readiness)), ApiKeys::none())
}

/// The HTTP API with `/readyz` backed by `readiness` and admin calls
/// authenticated by `api_keys`.
pub fn router_with_keys<E: Executor>(
    executor: E,
    limits: &Limits,
    readiness: Option<Box<dyn Readiness>>,
    api_keys: ApiKeys,
) -> Router {
    build(executor, limits, readiness, api_keys)
}

struct Shared<E> {
    executor: E,
    limits: Limits,
    graphiql: Bytes,
    readiness: Option<Box<dyn Readiness>>,
    documents: DocumentCache,
    api_keys: ApiKeys,
}

/// Parsed documents by query text. Apps send the same few operation
/// documents over and over, and parsing one costs many times more than
/// cloning it. Only the parse is skipped: validation and the depth and
/// complexity limits run on every request.
#[derive(Default)]
struct DocumentCache {
    map: dashmap::DashMap<String, Arc<ExecutableDocument>>,
}

/// Longest query text kept, and most documents kept: when full the cache
/// starts over, so a stream of distinct queries cannot make it grow.
const MAX_CACHED_QUERY_BYTES: usize = 16 * 1024;
const MAX_CACHED_DOCUMENTS: usize = 512;

impl DocumentCache {
    /// Gives `request` its parsed document, from the cache or parsed now
    /// (and then cached). A query that does not parse is left for execution
    /// to report.
    fn prepare(&self, request: &mut async_graphql::Request) {
        if request.query.len() > MAX_CACHED_QUERY_BYTES {
            return;
        }
        let cached = self.map.get(&request.query).map(|doc| Arc::clone(&doc));
        if let Some(doc) = cached {
            request.set_parsed_query(ExecutableDocument::clone(&doc));
            return;
        }
        let query = request.query.clone();
        if let Ok(doc) = request.parsed_query() {
            if self.map.len() >= MAX_CACHED_DOCUMENTS {
                self.map.clear();
            }
            self.map.insert(query, Arc::new(doc.clone()));
        }
    }
}

fn build<E: Executor>(
    executor: E,
    limits: &Limits,
    readiness: Option<Box<dyn Readiness>>,
    api_keys: ApiKeys,
) -> Router {
    let graphiql = GraphiQLSource::build()
        .endpoint(GRAPHQL_PATH)
        // Relative: GraphiQL turns it into ws(s)://<this host>/graphql.
        .subscription_endpoint(GRAPHQL_PATH)
        .title("Baton GraphiQL")
        .finish();
    let shared = Arc::new(Shared {
        executor,
        limits: *limits,
        graphiql: Bytes::from(graphiql),
        readiness,
        documents: DocumentCache::default(),
        api_keys,
    });
    Router::new()
        .route(
            GRAPHQL_PATH,
            get(graphql_get::<E>)
                .post(graphql_post::<E>)
                .fallback(graphql_other_method),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz::<E>))
        .merge(super::console::routes())
        .fallback(route_not_found)
        .with_state(shared)
        // Last added runs first: the id is set before the span is made, so
        // the span (and every log line in it) carries it.
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(make_span))
        .layer(SetRequestIdLayer::x_request_id(RequestIds::new()))
}

/// CORS for pages served from other origins (a web app on its own host),
/// for `allowed_origins` exactly as browsers send them in `Origin`:
/// `None` when no origin is allowed, so that by default no CORS header is
/// sent at all. Credentials are not allowed: the session token travels in
/// `Authorization`, never in a cookie.
pub fn cors(allowed_origins: &[&str]) -> Option<CorsLayer> {
    if allowed_origins.is_empty() {
        return None;
    }
    // `config::CorsOrigin` only parses printable ASCII, so nothing is
    // skipped when the origins come from the command line.
    let origins: Vec<HeaderValue> = allowed_origins
        .iter()
        .filter_map(|o| {
            let value = HeaderValue::from_str(o);
            if value.is_err() {
                tracing::warn!(origin = %o, "not a valid header value; CORS origin ignored");
            }
            value.ok()
        })
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::ACCEPT,
                header::HeaderName::from_static(X_REQUEST_ID),
            ])
            .expose_headers([header::HeaderName::from_static(X_REQUEST_ID)])
            .max_age(Duration::from_secs(600)),
    )
}

/// The per-request span is at DEBUG: an enabled span with fields costs the fmt
/// subscriber microseconds per request (measured ~3 µs), a real share of a
/// small query. Internal errors log their request id at ERROR regardless,
/// through [`REQUEST_ID`].
fn make_span(request: &axum::http::Request<Body>) -> tracing::Span {
    let id = request
        .headers()
        .get(X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let span = tracing::debug_span!(
        "http",
        otel.name = %format_args!("{} {}", request.method(), request.uri().path()),
        otel.kind = "server",
        http.request.method = %request.method(),
        url.path = %request.uri().path(),
        request_id = %id,
        trace_id = tracing::field::Empty,
    );
    crate::telemetry::traces::continue_trace(&span, request.headers());
    span
}

const X_REQUEST_ID: &str = "x-request-id";

tokio::task_local! {
    /// The id of the request being served, for log lines that must carry it
    /// even when the request span is disabled.
    static REQUEST_ID: HeaderValue;
}

/// The id of the request this task is serving, if any.
pub(crate) fn current_request_id() -> Option<String> {
    REQUEST_ID
        .try_with(|id| String::from_utf8_lossy(id.as_bytes()).into_owned())
        .ok()
}

/// Runs `fut` with the request's id available to [`current_request_id`].
async fn with_request_id<F: Future>(headers: &HeaderMap, fut: F) -> F::Output {
    match headers.get(X_REQUEST_ID) {
        Some(id) => REQUEST_ID.scope(id.clone(), fut).await,
        None => fut.await,
    }
}

/// Request ids for requests that come without one: a random per-process
/// prefix and a counter, 32 hex digits. Unique across replicas without a
/// syscall or a random draw per request.
#[derive(Clone)]
struct RequestIds {
    prefix: u64,
    next: Arc<AtomicU64>,
}

impl RequestIds {
    fn new() -> Self {
        Self {
            prefix: rand::random(),
            next: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut buf = [0u8; 32];
        for (i, byte) in buf.iter_mut().enumerate() {
            let word = if i < 16 { self.prefix } else { n };
            let shift = 60 - 4 * (i % 16);
            *byte = HEX[((word >> shift) & 0xf) as usize];
        }
        HeaderValue::from_bytes(&buf).ok().map(RequestId::new)
    }
}

type AppState<E> = State<Arc<Shared<E>>>;

async fn graphql_post<E: Executor>(State(shared): AppState<E>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let media = match negotiate(&parts.headers) {
        Ok(media) => media,
        Err(err) => return error_response(&err, Media::Json),
    };
    let outcome = async {
        check_json_content_type(&parts.headers)?;
        let bytes = read_body(body, &parts.headers, shared.limits.max_body_bytes).await?;
        parse_json_request(&bytes)
    };
    let mut gql = match outcome.await {
        Ok(gql) => gql,
        Err(err) => return error_response(&err, media),
    };
    let caller = match shared.api_keys.caller(&parts.headers) {
        Ok(caller) => caller,
        Err(err) => return error_response(&err, media),
    };
    shared.documents.prepare(&mut gql);
    if let Err(err) = check_size(&mut gql, &shared.limits) {
        return error_response(&err, media);
    }
    gql.data.insert(BearerToken::from_headers(&parts.headers));
    gql.data.insert(UserToken::from_headers(&parts.headers));
    gql.data.insert(caller);
    let labels = operation_labels(&mut gql);
    let started = std::time::Instant::now();
    let response = with_request_id(&parts.headers, shared.executor.execute(gql)).await;
    observe_request(labels, &response, started.elapsed());
    graphql_response(response, media, &shared.limits)
}

async fn graphql_get<E: Executor>(State(shared): AppState<E>, request: Request) -> Response {
    let (mut parts, _) = request.into_parts();
    if is_websocket_upgrade(&parts.headers) {
        return websocket(shared, &mut parts).await;
    }
    let params = Query::<GetParams>::try_from_uri(&parts.uri).map(|q| q.0);
    if accepts_html(&parts.headers) && params.as_ref().is_ok_and(|p| p.query.is_none()) {
        return graphiql(&shared);
    }
    let media = match negotiate(&parts.headers) {
        Ok(media) => media,
        Err(err) => return error_response(&err, Media::Json),
    };
    let mut gql = match params
        .map_err(|rejection| {
            ApiError::bad_request(
                format!("invalid URL parameters: {}", rejection.body_text()),
                GET_HINT,
            )
        })
        .and_then(GetParams::into_request)
    {
        Ok(gql) => gql,
        Err(err) => return error_response(&err, media),
    };
    // Parsing here is not wasted: the document stays in the request and
    // execution reuses it. A parse error is left for execution to report.
    shared.documents.prepare(&mut gql);
    if let Err(err) = check_size(&mut gql, &shared.limits) {
        return error_response(&err, media);
    }
    let operation_name = gql.operation_name.take();
    let is_mutation = gql.parsed_query().is_ok_and(|doc| {
        selected_operation(doc, operation_name.as_deref()) == Some(OperationType::Mutation)
    });
    gql.operation_name = operation_name;
    if is_mutation {
        let err = ApiError::MethodNotAllowed {
            message: "mutations cannot be sent with GET".to_owned(),
            allow: "POST",
        };
        return error_response(&err, media);
    }
    let caller = match shared.api_keys.caller(&parts.headers) {
        Ok(caller) => caller,
        Err(err) => return error_response(&err, media),
    };
    gql.data.insert(BearerToken::from_headers(&parts.headers));
    gql.data.insert(UserToken::from_headers(&parts.headers));
    gql.data.insert(caller);
    let labels = operation_labels(&mut gql);
    let started = std::time::Instant::now();
    let response = with_request_id(&parts.headers, shared.executor.execute(gql)).await;
    observe_request(labels, &response, started.elapsed());
    graphql_response(response, media, &shared.limits)
}

async fn graphql_other_method(method: Method) -> Response {
    let err = ApiError::MethodNotAllowed {
        message: format!("{method} is not supported on {GRAPHQL_PATH}"),
        allow: "GET, POST",
    };
    error_response(&err, Media::Json)
}

const POST_HINT: &str =
    r#"send a JSON object such as {"query": "{ __typename }", "variables": {}}"#;
const GET_HINT: &str = "pass `query`, and optionally `operationName` and JSON-encoded \
                        `variables` and `extensions`, as URL parameters";

/// The JSON body of a POST. `query` is optional here only so that its absence
/// gets its own error message.
#[derive(Deserialize)]
struct JsonRequest {
    query: Option<String>,
    #[serde(rename = "operationName")]
    operation_name: Option<String>,
    #[serde(default)]
    variables: Variables,
    #[serde(default)]
    extensions: async_graphql::Extensions,
}

fn parse_json_request(body: &[u8]) -> Result<async_graphql::Request, ApiError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        Some(b'[') => return Err(ApiError::BatchNotSupported),
        None => {
            return Err(ApiError::bad_request(
                "the request body is empty",
                POST_HINT,
            ));
        }
        Some(_) => {
            let message = match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Ok(_) => "the request body must be a JSON object".to_owned(),
                Err(err) => format!("the request body is not valid JSON: {err}"),
            };
            return Err(ApiError::bad_request(message, POST_HINT));
        }
    }
    let wire: JsonRequest = serde_json::from_slice(body).map_err(|err| {
        ApiError::bad_request(
            format!("the request body is not a valid GraphQL request: {err}"),
            POST_HINT,
        )
    })?;
    let query = wire
        .query
        .ok_or_else(|| ApiError::bad_request("the request has no `query`", POST_HINT))?;
    let mut request = async_graphql::Request::new(query);
    request.operation_name = wire.operation_name.filter(|name| !name.is_empty());
    request.variables = wire.variables;
    request.extensions = wire.extensions;
    Ok(request)
}

/// The URL parameters of a GET; `variables` and `extensions` are JSON text.
#[derive(Deserialize)]
struct GetParams {
    query: Option<String>,
    #[serde(rename = "operationName")]
    operation_name: Option<String>,
    variables: Option<String>,
    extensions: Option<String>,
}

impl GetParams {
    fn into_request(self) -> Result<async_graphql::Request, ApiError> {
        fn json<T: serde::de::DeserializeOwned + Default>(
            name: &str,
            text: Option<String>,
        ) -> Result<T, ApiError> {
            match text.as_deref().map(str::trim) {
                None | Some("") => Ok(T::default()),
                Some(text) => serde_json::from_str(text).map_err(|err| {
                    ApiError::bad_request(
                        format!("URL parameter `{name}` is not a JSON object: {err}"),
                        GET_HINT,
                    )
                }),
            }
        }
        let query = self.query.ok_or_else(|| {
            ApiError::bad_request("the request has no `query` URL parameter", GET_HINT)
        })?;
        let mut request = async_graphql::Request::new(query);
        // The spec: an empty operationName is the same as none.
        request.operation_name = self.operation_name.filter(|name| !name.is_empty());
        request.variables = json("variables", self.variables)?;
        request.extensions = json("extensions", self.extensions)?;
        Ok(request)
    }
}

/// The type of the operation a request would run, if it can be told without
/// executing; `None` leaves the error (unknown or ambiguous operation) to
/// execution.
fn selected_operation(doc: &ExecutableDocument, name: Option<&str>) -> Option<OperationType> {
    selected(doc, name).map(|op| op.ty)
}

/// The operation a request would run, if it can be told without executing.
fn selected<'a>(
    doc: &'a ExecutableDocument,
    name: Option<&str>,
) -> Option<&'a OperationDefinition> {
    match (&doc.operations, name) {
        (DocumentOperations::Single(op), _) => Some(&op.node),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name).map(|op| &op.node),
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => {
            ops.values().next().map(|op| &op.node)
        }
        _ => None,
    }
}

/// Root fields named in a request's label, at most; more read `+…`.
const MAX_LABEL_FIELDS: usize = 4;

/// The `operation` and `type` labels of a request's latency: the root
/// fields its operation selects, joined with `+`. Field names come from
/// the schema once validated (see [`observe_request`]), so the label
/// values are as few as the API's fields; clients' operation names are not
/// used, as they are unbounded.
fn operation_labels(request: &mut async_graphql::Request) -> (String, &'static str) {
    let name = request.operation_name.take();
    let labels = request
        .parsed_query()
        .ok()
        .and_then(|doc| selected(doc, name.as_deref()))
        .map(|op| {
            let mut fields: Vec<&str> = op
                .selection_set
                .node
                .items
                .iter()
                .map(|s| match &s.node {
                    Selection::Field(f) => f.node.name.node.as_str(),
                    Selection::FragmentSpread(_) | Selection::InlineFragment(_) => "fragment",
                })
                .collect();
            fields.sort_unstable();
            fields.dedup();
            let more = fields.len() > MAX_LABEL_FIELDS;
            fields.truncate(MAX_LABEL_FIELDS);
            let mut label = fields.join("+");
            if more {
                label.push_str("+…");
            }
            let ty = match op.ty {
                OperationType::Query => "query",
                OperationType::Mutation => "mutation",
                OperationType::Subscription => "subscription",
            };
            (label, ty)
        });
    request.operation_name = name;
    labels.unwrap_or_else(|| ("invalid".to_owned(), "unknown"))
}

/// Records a request's latency. A request refused before execution (it
/// does not validate: its errors have no path and there is no data) is
/// `invalid`, so made-up field names never become label values.
fn observe_request(
    labels: (String, &'static str),
    response: &async_graphql::Response,
    took: Duration,
) {
    let refused = response.data == Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty());
    let (operation, ty) = if refused {
        ("invalid", "unknown")
    } else {
        (labels.0.as_str(), labels.1)
    };
    crate::telemetry::GRAPHQL_DURATION.observe(&[operation, ty], took.as_secs_f64());
}

/// Refuses a document that expands past [`Limits::max_fields`] before
/// async-graphql validates it (its validation walks the expansion). A
/// document that does not parse is left for execution to report.
fn check_size(request: &mut async_graphql::Request, limits: &Limits) -> Result<(), ApiError> {
    let Ok(doc) = request.parsed_query() else {
        return Ok(());
    };
    query_size::check(doc, limits.max_fields).map_err(|oversize| match oversize {
        Oversize::TooLarge => ApiError::QueryTooLarge {
            limit: limits.max_fields,
        },
        Oversize::TooDeep => ApiError::QueryTooDeep {
            limit: limits.max_depth,
        },
        Oversize::Cycle(name) => ApiError::bad_request(
            format!("fragment `{name}` spreads itself, directly or through other fragments"),
            "a fragment may not include itself; repeat its fields instead",
        ),
    })
}

/// Reads the whole body, refusing more than `limit` bytes. A body that
/// arrives in one chunk (the usual case) is returned without a copy.
async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || ApiError::BodyTooLarge { limit };
    let read_failed = |err: axum::Error| {
        ApiError::bad_request(
            format!("could not read the request body: {err}"),
            "send the whole body as declared by Content-Length",
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large());
    }
    let mut chunks = body.into_data_stream();
    let first = match chunks.next().await {
        None => return Ok(Bytes::new()),
        Some(chunk) => chunk.map_err(read_failed)?,
    };
    if first.len() > limit {
        return Err(too_large());
    }
    let Some(second) = chunks.next().await else {
        return Ok(first);
    };
    let second = second.map_err(read_failed)?;
    let capacity = declared.map_or(first.len() + second.len(), |len| len as usize);
    let mut buf = Vec::with_capacity(capacity.min(limit));
    for chunk in [first, second] {
        if buf.len() + chunk.len() > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(read_failed)?;
        if buf.len() + chunk.len() > limit {
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// A response with null `data` and only path-less errors never started
/// executing (see the module docs).
fn is_request_error(response: &async_graphql::Response) -> bool {
    matches!(response.data, Value::Null)
        && !response.errors.is_empty()
        && response.errors.iter().all(|err| err.path.is_empty())
}

/// async-graphql reports its depth and complexity limits with these fixed
/// messages and no code; they get ours. A test pins the messages, so an
/// upgrade that changes them fails loudly.
const ASYNC_GRAPHQL_TOO_DEEP: &str = "Query is nested too deep.";
const ASYNC_GRAPHQL_TOO_COMPLEX: &str = "Query is too complex.";

fn tag_limit_errors(errors: &mut [ServerError], limits: &Limits) {
    for err in errors.iter_mut().filter(|err| err.extensions.is_none()) {
        let tagged = match err.message.as_str() {
            ASYNC_GRAPHQL_TOO_DEEP => ApiError::QueryTooDeep {
                limit: limits.max_depth,
            },
            ASYNC_GRAPHQL_TOO_COMPLEX => ApiError::QueryTooComplex {
                limit: limits.max_complexity,
            },
            _ => continue,
        };
        *err = tagged.to_server_error();
    }
}

/// The wire form of a GraphQL response: `errors` first (the GraphQL spec's
/// advice), no `data` entry for a request error.
#[derive(Serialize)]
struct WireResponse<'a> {
    #[serde(skip_serializing_if = "<[ServerError]>::is_empty")]
    errors: &'a [ServerError],
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Value>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    extensions: &'a BTreeMap<String, Value>,
}

fn graphql_response(
    mut response: async_graphql::Response,
    media: Media,
    limits: &Limits,
) -> Response {
    let request_error = is_request_error(&response);
    if request_error {
        tag_limit_errors(&mut response.errors, limits);
    }
    let wire = WireResponse {
        errors: &response.errors,
        data: (!request_error).then_some(&response.data),
        extensions: &response.extensions,
    };
    let body = match serde_json::to_vec(&wire) {
        Ok(body) => body,
        Err(err) => return error_response(&ApiError::internal(err), media),
    };
    let status = match media {
        Media::GraphqlResponseJson if request_error => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    };
    let mut out = (status, body).into_response();
    let headers = out.headers_mut();
    headers.insert(header::CONTENT_TYPE, media.content_type());
    if response.is_ok()
        && let Some(value) = response.cache_control.value()
        && let Ok(value) = HeaderValue::from_str(&value)
    {
        headers.insert(header::CACHE_CONTROL, value);
    }
    headers.extend(std::mem::take(&mut response.http_headers));
    out
}

/// A transport error as a GraphQL-shaped body: `{"errors": [{message,
/// extensions: {code, hint}}]}`, so clients read every error the same way.
pub(super) fn error_response(err: &ApiError, media: Media) -> Response {
    #[derive(Serialize)]
    struct Errors<'a> {
        errors: [&'a ServerError; 1],
    }
    let server_error = err.to_server_error();
    let body = serde_json::to_vec(&Errors {
        errors: [&server_error],
    })
    .unwrap_or_else(|_| br#"{"errors":[{"message":"internal error"}]}"#.to_vec());
    let mut out = (err.status(), body).into_response();
    let headers = out.headers_mut();
    headers.insert(header::CONTENT_TYPE, media.content_type());
    if let ApiError::MethodNotAllowed { allow, .. } = err {
        headers.insert(header::ALLOW, HeaderValue::from_static(allow));
    }
    if let Some(after) = super::rate_limit::retry_after(err) {
        headers.insert(header::RETRY_AFTER, after);
    }
    out
}

/// Refuses a request whose header fields (names and values, as sent) add
/// up to more than `max_bytes`, with 431 `HEADERS_TOO_LARGE`, before any
/// route sees it. (Far larger heads, over hyper's buffer, are cut off by
/// the HTTP parser itself with a bare 431.)
pub async fn limit_headers(
    State(max_bytes): State<usize>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let size = request
        .headers()
        .iter()
        // ": " and CRLF, as on the wire.
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .fold(0usize, usize::saturating_add);
    if size > max_bytes {
        return error_response(&ApiError::HeadersTooLarge { limit: max_bytes }, Media::Json);
    }
    next.run(request).await
}

fn graphiql<E>(shared: &Shared<E>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        shared.graphiql.clone(),
    )
        .into_response()
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

async fn websocket<E: Executor>(shared: Arc<Shared<E>>, parts: &mut Parts) -> Response {
    const WS_HINT: &str = "open the WebSocket with `Sec-WebSocket-Protocol: graphql-transport-ws`";
    let Ok(protocol) = GraphQLProtocol::from_request_parts(parts, &()).await else {
        let err = ApiError::bad_request("missing or unsupported WebSocket subprotocol", WS_HINT);
        return error_response(&err, Media::Json);
    };
    let upgrade = match WebSocketUpgrade::from_request_parts(parts, &()).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            let err = ApiError::bad_request(
                format!("not a valid WebSocket upgrade: {}", rejection.body_text()),
                WS_HINT,
            );
            return error_response(&err, Media::Json);
        }
    };
    let caller = match shared.api_keys.caller(&parts.headers) {
        Ok(caller) => caller,
        Err(err) => return error_response(&err, Media::Json),
    };
    let limits = shared.limits;
    let executor = WsExecutor {
        inner: shared.executor.clone(),
        limits,
    };
    let mut data = Data::default();
    data.insert(BearerToken::from_headers(&parts.headers));
    data.insert(UserToken::from_headers(&parts.headers));
    data.insert(caller);
    let api_keys = shared.api_keys.clone();
    let request_id = parts.headers.get(X_REQUEST_ID).cloned();
    // The connection outlives this request; keep it in the request's span so
    // its logs carry the request id.
    let span = tracing::Span::current();
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(limits.max_body_bytes)
        .max_frame_size(limits.max_body_bytes)
        .on_upgrade(move |socket| async move {
            let serve = GraphQLWebSocket::new(socket, executor, protocol)
                .with_data(data)
                .on_connection_init(move |payload| async move {
                    let mut data = Data::default();
                    if let Some(token) = BearerToken::from_init_payload(&payload) {
                        data.insert(token);
                    }
                    if let Some(user) = UserToken::from_init_payload(&payload) {
                        data.insert(user);
                    }
                    // A key in the payload replaces the upgrade request's;
                    // an unknown one refuses the connection.
                    if let Some(key) = api_key_from_init_payload(&payload) {
                        let caller = key
                            .as_str()
                            .ok_or(ApiError::InvalidApiKey)
                            .and_then(|key| api_keys.caller_for(key.trim()))
                            .map_err(ApiError::into_graphql)?;
                        data.insert(caller);
                    }
                    Ok(data)
                })
                .serve()
                .instrument(span);
            match request_id {
                Some(id) => REQUEST_ID.scope(id, serve).await,
                None => serve.await,
            }
        })
}

/// The `X-API-Key` (any case) entry of a `connection_init` payload.
fn api_key_from_init_payload(payload: &serde_json::Value) -> Option<&serde_json::Value> {
    payload
        .as_object()?
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(API_KEY_HEADER))
        .map(|(_, value)| value)
}

/// The executor used for WebSocket operations: the real one, with the limit
/// errors tagged as over HTTP.
#[derive(Clone)]
struct WsExecutor<E> {
    inner: E,
    limits: Limits,
}

impl<E: Executor> Executor for WsExecutor<E> {
    async fn execute(&self, mut request: async_graphql::Request) -> async_graphql::Response {
        if let Err(err) = check_size(&mut request, &self.limits) {
            return async_graphql::Response::from_errors(vec![err.to_server_error()]);
        }
        let mut response = self.inner.execute(request).await;
        if is_request_error(&response) {
            tag_limit_errors(&mut response.errors, &self.limits);
        }
        response
    }

    fn execute_stream(
        &self,
        mut request: async_graphql::Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, async_graphql::Response> {
        if let Err(err) = check_size(&mut request, &self.limits) {
            let refused = async_graphql::Response::from_errors(vec![err.to_server_error()]);
            return futures_util::stream::once(async move { refused }).boxed();
        }
        let limits = self.limits;
        self.inner
            .execute_stream(request, session_data)
            .map(move |mut response| {
                if is_request_error(&response) {
                    tag_limit_errors(&mut response.errors, &limits);
                }
                response
            })
            .boxed()
    }
}

async fn healthz() -> Response {
    status_ok()
}

fn status_ok() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        r#"{"status":"ok"}"#,
    )
        .into_response()
}

async fn readyz<E: Executor>(State(shared): AppState<E>) -> Response {
    let Some(readiness) = &shared.readiness else {
        return status_ok();
    };
    match tokio::time::timeout(READINESS_TIMEOUT, readiness.check()).await {
        Ok(Ok(())) => return status_ok(),
        Ok(Err(reason)) => tracing::warn!(%reason, "readiness check failed"),
        Err(_) => tracing::warn!(timeout = ?READINESS_TIMEOUT, "readiness check timed out"),
    }
    let err = ApiError::NotReady.to_server_error();
    let body = serde_json::json!({ "status": "unavailable", "errors": [err] });
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
}

async fn route_not_found(method: Method, uri: Uri) -> Response {
    let mut path = uri.path().to_owned();
    // The path is echoed back; keep a hostile one from bloating the answer.
    if path.len() > 200 {
        let cut = (0..=200)
            .rev()
            .find(|&i| path.is_char_boundary(i))
            .unwrap_or(0);
        path.truncate(cut);
        path.push('…');
    }
    let err = ApiError::RouteNotFound {
        method: method.to_string(),
        path,
    };
    error_response(&err, Media::Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_token_parsing() {
        assert_eq!(BearerToken::parse("Bearer abc").token(), Some("abc"));
        assert_eq!(BearerToken::parse("bearer  abc ").token(), Some("abc"));
        assert_eq!(BearerToken::parse("Basic abc").token(), None);
        assert_eq!(BearerToken::parse("Bearer").token(), None);
        assert_eq!(BearerToken::parse("Bearer a b").token(), None);
        let payload = serde_json::json!({"authorization": "Bearer xyz"});
        assert_eq!(
            BearerToken::from_init_payload(&payload).unwrap().token(),
            Some("xyz")
        );
        assert!(BearerToken::from_init_payload(&serde_json::json!({})).is_none());
        assert!(!format!("{:?}", BearerToken::parse("Bearer secret")).contains("secret"));
    }

    #[test]
    fn internal_errors_are_logged_with_detail_and_request_id() {
        #[derive(Clone, Default)]
        struct Capture(Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Capture {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let capture = Capture::default();
        let writer = capture.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .finish();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let err = tracing::subscriber::with_default(subscriber, || {
            runtime.block_on(REQUEST_ID.scope(HeaderValue::from_static("req-77"), async {
                ApiError::internal(anyhow::anyhow!("disk full on /var/lib/baton")).into_graphql()
            }))
        });
        assert_eq!(err.message, "internal error");
        let log = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        assert!(log.contains("req-77"), "{log}");
        assert!(log.contains("disk full on /var/lib/baton"), "{log}");
    }

    #[test]
    fn request_ids_are_distinct_hex() {
        let mut ids = RequestIds::new();
        let req = axum::http::Request::new(());
        let a = ids.make_request_id(&req).unwrap();
        let b = ids.make_request_id(&req).unwrap();
        let (a, b) = (
            a.header_value().to_str().unwrap(),
            b.header_value().to_str().unwrap(),
        );
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(&a[..16], &b[..16]);
    }

    #[test]
    fn body_shape_errors() {
        let code = |body: &str| parse_json_request(body.as_bytes()).unwrap_err().code();
        assert_eq!(code(""), "BAD_REQUEST");
        assert_eq!(code("NONSENSE"), "BAD_REQUEST");
        assert_eq!(code("\"query\""), "BAD_REQUEST");
        assert_eq!(code("{\"query\":"), "BAD_REQUEST");
        assert_eq!(code("{\"qeury\": \"{a}\"}"), "BAD_REQUEST");
        assert_eq!(code("{\"query\": null}"), "BAD_REQUEST");
        assert_eq!(code("{\"query\": 1}"), "BAD_REQUEST");
        assert_eq!(
            code("{\"query\": \"{a}\", \"variables\": [7]}"),
            "BAD_REQUEST"
        );
        assert_eq!(code(" [{\"query\": \"{a}\"}]"), "BATCH_NOT_SUPPORTED");
        let ok = parse_json_request(br#"{"query":"{a}","variables":null,"operationName":null}"#)
            .unwrap();
        assert_eq!(ok.query, "{a}");
    }
}

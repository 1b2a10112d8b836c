//! The HTTP transport against a toy schema over real HTTP and WebSocket on
//! 127.0.0.1: the GraphQL-over-HTTP MUSTs, limits, errors, probes, request
//! ids and subscriptions.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI32, Ordering},
    },
    time::Duration,
};

use async_graphql::{Context, ErrorExtensions, Object, Result, Schema, Subscription};
use baton::api::{ApiError, BearerToken, Limits, router_with_readiness};
use futures_util::{SinkExt, Stream, StreamExt};
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

const GRJ: &str = "application/graphql-response+json";

// ---- the toy schema ----

struct Counter(AtomicI32);

struct Query;

#[Object]
impl Query {
    async fn hello(&self, name: Option<String>) -> String {
        format!("hello {}", name.as_deref().unwrap_or("world"))
    }
    async fn double(&self, n: i32) -> i32 {
        n * 2
    }
    async fn count(&self, ctx: &Context<'_>) -> i32 {
        ctx.data_unchecked::<Counter>().0.load(Ordering::SeqCst)
    }
    async fn whoami(&self, ctx: &Context<'_>) -> Option<String> {
        BearerToken::of(ctx).map(str::to_owned)
    }
    /// A field error with a code, as Baton resolvers raise them.
    async fn session(&self, id: String) -> Result<String> {
        Err(ApiError::ApiKeyRequired {
            permission: format!("READ_SESSIONS({id})"),
            who: "a viewer key".into(),
        }
        .extend())
    }
    async fn boom(&self) -> Result<i32> {
        Err(ApiError::internal(anyhow::anyhow!(
            "connect to db.internal:5432 password=hunter2"
        ))
        .extend())
    }
    async fn nested(&self) -> Nested {
        Nested
    }
}

struct Nested;

#[Object]
impl Nested {
    async fn child(&self) -> Nested {
        Nested
    }
    async fn value(&self) -> i32 {
        1
    }
}

struct Mutation;

#[Object]
impl Mutation {
    async fn increment(&self, ctx: &Context<'_>) -> i32 {
        ctx.data_unchecked::<Counter>()
            .0
            .fetch_add(1, Ordering::SeqCst)
            + 1
    }
}

struct Subscription;

#[Subscription]
impl Subscription {
    async fn count_to(&self, n: i32) -> impl Stream<Item = i32> {
        futures_util::stream::iter(1..=n)
    }
    async fn whoami(&self, ctx: &Context<'_>) -> impl Stream<Item = Option<String>> {
        futures_util::stream::iter([BearerToken::of(ctx).map(str::to_owned)])
    }
    async fn nested(&self) -> impl Stream<Item = Nested> {
        futures_util::stream::iter([Nested])
    }
}

// ---- the test app ----

struct TestApp {
    addr: SocketAddr,
    http: reqwest::Client,
    ready: Arc<AtomicBool>,
}

impl TestApp {
    async fn spawn() -> Self {
        Self::spawn_with(Limits::default()).await
    }

    async fn spawn_with(limits: Limits) -> Self {
        let schema = limits
            .apply(Schema::build(Query, Mutation, Subscription))
            .data(Counter(AtomicI32::new(0)))
            .finish();
        let ready = Arc::new(AtomicBool::new(true));
        let flag = ready.clone();
        let app = router_with_readiness(schema, &limits, move || {
            let ready = flag.load(Ordering::SeqCst);
            async move {
                if ready {
                    Ok(())
                } else {
                    Err("database at db.internal unreachable".to_owned())
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            addr,
            http: reqwest::Client::new(),
            ready,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POSTs a JSON body with the given Accept (None: no Accept header).
    async fn post(&self, accept: Option<&str>, body: Value) -> Answer {
        self.post_raw(accept, Some("application/json"), body.to_string())
            .await
    }

    async fn post_raw(
        &self,
        accept: Option<&str>,
        content_type: Option<&str>,
        body: String,
    ) -> Answer {
        let Some(accept) = accept else {
            let headers: Vec<_> = content_type
                .map(|ct| ("content-type", ct))
                .into_iter()
                .collect();
            return self
                .raw("POST", "/graphql", &headers, body.as_bytes())
                .await;
        };
        let mut req = self
            .http
            .post(self.url("/graphql"))
            .header(header::ACCEPT, accept)
            .body(body);
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        Answer::from(req.send().await.unwrap()).await
    }

    async fn get(&self, accept: Option<&str>, params: &[(&str, &str)]) -> Answer {
        let mut url = reqwest::Url::parse(&self.url("/graphql")).unwrap();
        if !params.is_empty() {
            url.query_pairs_mut().extend_pairs(params);
        }
        let Some(accept) = accept else {
            let target = format!("{}?{}", url.path(), url.query().unwrap_or_default());
            return self.raw("GET", &target, &[], b"").await;
        };
        let req = self.http.get(url).header(header::ACCEPT, accept);
        Answer::from(req.send().await.unwrap()).await
    }

    /// A request over a bare socket, for what reqwest cannot send: no
    /// `Accept` header at all (it adds `*/*`), or a chunked body.
    async fn raw(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Content-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body).await.unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.unwrap();
        Answer::parse_raw(&String::from_utf8(response).unwrap())
    }

    async fn count(&self) -> i64 {
        let a = self.post(Some(GRJ), json!({"query": "{ count }"})).await;
        a.json["data"]["count"].as_i64().unwrap()
    }
}

struct Answer {
    status: StatusCode,
    headers: header::HeaderMap,
    text: String,
    json: Value,
}

impl Answer {
    async fn from(resp: reqwest::Response) -> Self {
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            text,
            json,
        }
    }

    fn parse_raw(response: &str) -> Self {
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut headers = header::HeaderMap::new();
        for line in lines {
            let (name, value) = line.split_once(':').unwrap();
            headers.append(
                header::HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
                value.trim().parse().unwrap(),
            );
        }
        assert!(
            !headers.contains_key(header::TRANSFER_ENCODING),
            "raw responses are expected with a Content-Length"
        );
        Self {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            text: body.to_owned(),
            json: serde_json::from_str(body).unwrap_or(Value::Null),
        }
    }

    fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    fn code(&self) -> &str {
        self.json["errors"][0]["extensions"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {}", self.text))
    }

    /// A request error: errors, and no `data` entry at all.
    fn assert_request_error(&self) {
        assert!(self.json.get("data").is_none(), "{}", self.text);
        assert!(
            self.json["errors"]
                .as_array()
                .is_some_and(|e| !e.is_empty()),
            "{}",
            self.text
        );
    }
}

// ---- POST ----

#[tokio::test]
async fn post_json_query_gets_data() {
    let app = TestApp::spawn().await;
    let a = app
        .post(
            Some(GRJ),
            json!({"query": "query Q($n: String) { hello(name: $n) }", "variables": {"n": "baton"}}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.content_type(),
        "application/graphql-response+json; charset=utf-8"
    );
    assert_eq!(a.json, json!({"data": {"hello": "hello baton"}}));
}

#[tokio::test]
async fn post_accepts_content_type_with_charset() {
    let app = TestApp::spawn().await;
    let body = json!({"query": "{ hello }"}).to_string();
    for ct in [
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
    ] {
        let a = app.post_raw(Some(GRJ), Some(ct), body.clone()).await;
        assert_eq!(a.status, StatusCode::OK, "{ct}: {}", a.text);
        assert_eq!(a.json["data"]["hello"], "hello world");
    }
}

#[tokio::test]
async fn post_with_other_media_type_is_415() {
    let app = TestApp::spawn().await;
    let body = json!({"query": "{ hello }"}).to_string();
    for ct in [
        Some("text/plain"),
        Some("application/graphql"),
        Some("application/x-www-form-urlencoded"),
        Some("application/json; charset=utf-16"),
        None,
    ] {
        let a = app.post_raw(Some(GRJ), ct, body.clone()).await;
        assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}");
        assert_eq!(a.code(), "UNSUPPORTED_MEDIA_TYPE");
        assert!(a.json["errors"][0]["extensions"]["hint"].is_string());
    }
}

#[tokio::test]
async fn malformed_requests_are_400_with_a_json_error() {
    let app = TestApp::spawn().await;
    let cases = [
        ("NONSENSE", "BAD_REQUEST"),
        (r#"{"query":"#, "BAD_REQUEST"),
        ("", "BAD_REQUEST"),
        (r#""{ hello }""#, "BAD_REQUEST"),
        (r#"{"qeury": "{ hello }"}"#, "BAD_REQUEST"),
        (r#"{"query": null}"#, "BAD_REQUEST"),
        (r#"{"query": 7}"#, "BAD_REQUEST"),
        (r#"{"query": "{ hello }", "variables": [7]}"#, "BAD_REQUEST"),
        (
            r#"{"query": "{ hello }", "operationName": 1}"#,
            "BAD_REQUEST",
        ),
        (
            r#"{"query": "{ hello }", "extensions": "x"}"#,
            "BAD_REQUEST",
        ),
        (r#"[{"query": "{ hello }"}]"#, "BATCH_NOT_SUPPORTED"),
    ];
    // Not well-formed is 400 whatever the client accepts.
    for accept in [Some(GRJ), Some("application/json"), None] {
        for (body, code) in cases {
            let a = app
                .post_raw(accept, Some("application/json"), body.to_owned())
                .await;
            assert_eq!(
                a.status,
                StatusCode::BAD_REQUEST,
                "{accept:?} {body}: {}",
                a.text
            );
            assert_eq!(a.code(), code, "{body}");
            assert!(a.content_type().contains("json"), "{}", a.content_type());
        }
    }
}

#[tokio::test]
async fn null_optional_parameters_are_the_same_as_absent() {
    let app = TestApp::spawn().await;
    let a = app
        .post(
            Some(GRJ),
            json!({"query": "{ hello }", "variables": null, "operationName": null, "extensions": null}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json["data"]["hello"], "hello world");
}

// ---- GET ----

#[tokio::test]
async fn get_runs_a_query_with_all_url_parameters() {
    let app = TestApp::spawn().await;
    let query = "query A($n: Int!) { double(n: $n) } query B { hello }";
    let a = app
        .get(
            Some(GRJ),
            &[
                ("query", query),
                ("operationName", "A"),
                ("variables", r#"{"n": 21}"#),
                ("extensions", r#"{"persistedQuery": null}"#),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json, json!({"data": {"double": 42}}));

    // The spec: an empty operationName is the same as none.
    let a = app
        .get(Some(GRJ), &[("query", "{ hello }"), ("operationName", "")])
        .await;
    assert_eq!(a.json["data"]["hello"], "hello world", "{}", a.text);
}

#[tokio::test]
async fn get_with_bad_parameters_is_400() {
    let app = TestApp::spawn().await;
    let cases: [&[(&str, &str)]; 3] = [
        &[],
        &[("query", "{ hello }"), ("variables", "[1]")],
        &[("query", "{ hello }"), ("extensions", "{nope")],
    ];
    for params in cases {
        let a = app.get(Some(GRJ), params).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{params:?}: {}", a.text);
        assert_eq!(a.code(), "BAD_REQUEST");
    }
}

#[tokio::test]
async fn mutation_over_get_is_405_and_not_executed() {
    let app = TestApp::spawn().await;
    for accept in [Some(GRJ), Some("application/json"), None] {
        let a = app
            .get(accept, &[("query", "mutation { increment }")])
            .await;
        assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED, "{}", a.text);
        assert_eq!(a.headers[header::ALLOW], "POST");
        assert_eq!(a.code(), "METHOD_NOT_ALLOWED");
    }
    // Selected by operationName out of several operations.
    let doc = "query Q { count } mutation M { increment }";
    let a = app
        .get(Some(GRJ), &[("query", doc), ("operationName", "M")])
        .await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    let a = app
        .get(Some(GRJ), &[("query", doc), ("operationName", "Q")])
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(app.count().await, 0, "a GET must never run a mutation");

    let a = app
        .post(Some(GRJ), json!({"query": "mutation { increment }"}))
        .await;
    assert_eq!(a.json["data"]["increment"], 1, "{}", a.text);
    assert_eq!(app.count().await, 1);
}

#[tokio::test]
async fn other_methods_on_graphql_are_405() {
    let app = TestApp::spawn().await;
    let resp = app.http.put(app.url("/graphql")).send().await.unwrap();
    let a = Answer::from(resp).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(a.headers[header::ALLOW], "GET, POST");
    assert_eq!(a.code(), "METHOD_NOT_ALLOWED");
}

// ---- content negotiation and status codes ----

#[tokio::test]
async fn graphql_response_json_uses_400_for_request_errors() {
    let app = TestApp::spawn().await;
    let request_errors = [
        json!({"query": "{"}),                                     // parse
        json!({"query": "{ nope }"}),                              // validation
        json!({"query": "query A { hello } query B { hello }"}),   // no operation selected
        json!({"query": "{ hello }", "operationName": "Missing"}), // unknown operation
        json!({"query": "query($n: Int!) { double(n: $n) }", "variables": {"n": "x"}}), // coercion
        json!({"query": "subscription { countTo(n: 1) }"}),        // not over HTTP
    ];
    // Not here: a missing non-null variable. async-graphql reports it as a
    // field error during execution (with a path), so it is answered like
    // one: 200 with `"data": null`, which the spec allows (its 400 is a
    // SHOULD).
    for body in request_errors {
        let a = app.post(Some(GRJ), body.clone()).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body}: {}", a.text);
        assert_eq!(
            a.content_type(),
            "application/graphql-response+json; charset=utf-8"
        );
        a.assert_request_error();
    }
}

#[tokio::test]
async fn json_only_clients_get_200_for_every_well_formed_request() {
    let app = TestApp::spawn().await;
    for accept in [Some("application/json"), None] {
        for body in [
            json!({"query": "{"}),
            json!({"query": "{ nope }"}),
            json!({"query": "{ hello }", "operationName": "Missing"}),
            json!({"query": "query($n: Int!) { double(n: $n) }", "variables": {"n": "x"}}),
        ] {
            let a = app.post(accept, body.clone()).await;
            assert_eq!(a.status, StatusCode::OK, "{accept:?} {body}: {}", a.text);
            assert_eq!(a.content_type(), "application/json; charset=utf-8");
            a.assert_request_error();
        }
        let a = app.post(accept, json!({"query": "{ hello }"})).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.content_type(), "application/json; charset=utf-8");
        assert_eq!(a.json["data"]["hello"], "hello world");
    }
}

#[tokio::test]
async fn wildcard_and_ties_prefer_graphql_response_json() {
    let app = TestApp::spawn().await;
    for accept in [
        "*/*",
        "application/*",
        "application/graphql-response+json, application/json",
        "application/graphql-response+json; charset=utf-8, application/json; charset=utf-8",
        "text/html,application/xhtml+xml,*/*;q=0.8",
    ] {
        let a = app.post(Some(accept), json!({"query": "{ nope }"})).await;
        assert_eq!(
            a.content_type(),
            "application/graphql-response+json; charset=utf-8",
            "{accept}"
        );
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{accept}");
    }
    let a = app
        .post(
            Some("application/graphql-response+json;q=0.5, application/json"),
            json!({"query": "{ nope }"}),
        )
        .await;
    assert_eq!(a.content_type(), "application/json; charset=utf-8");
    assert_eq!(a.status, StatusCode::OK);
}

#[tokio::test]
async fn unacceptable_accept_is_406() {
    let app = TestApp::spawn().await;
    for accept in [
        "text/html",
        "application/xml",
        "application/json;q=0",
        "image/*",
    ] {
        let a = app.post(Some(accept), json!({"query": "{ hello }"})).await;
        assert_eq!(a.status, StatusCode::NOT_ACCEPTABLE, "{accept}");
        assert_eq!(a.code(), "NOT_ACCEPTABLE");
        let a = app.get(Some(accept), &[("query", "{ hello }")]).await;
        assert_eq!(a.status, StatusCode::NOT_ACCEPTABLE, "GET {accept}");
    }
}

#[tokio::test]
async fn field_errors_keep_data_status_200_and_carry_code_and_hint() {
    let app = TestApp::spawn().await;
    for accept in [GRJ, "application/json"] {
        let a = app
            .post(
                Some(accept),
                json!({"query": r#"{ hello session(id: "s-1") }"#}),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        assert_eq!(a.json["data"]["hello"], "hello world");
        // `session` is non-null: the error nulls the whole data.
        let err = &a.json["errors"][0];
        assert_eq!(
            err["message"],
            "this needs an API key (READ_SESSIONS(s-1)); none was sent"
        );
        assert_eq!(err["path"], json!(["session"]));
        assert_eq!(err["extensions"]["code"], "API_KEY_REQUIRED");
        assert!(err["extensions"]["hint"].is_string());
    }
    // Non-null field error at the root: data is null, yet execution began.
    let a = app
        .post(Some(GRJ), json!({"query": r#"{ session(id: "s-1") }"#}))
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.json["data"], Value::Null);
    assert!(
        a.json.get("data").is_some(),
        "execution began: data must be present"
    );
}

#[tokio::test]
async fn internal_errors_do_not_leak() {
    let app = TestApp::spawn().await;
    let a = app.post(Some(GRJ), json!({"query": "{ boom }"})).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json["errors"][0]["message"], "internal error");
    assert_eq!(a.code(), "INTERNAL");
    assert!(
        !a.text.contains("hunter2") && !a.text.contains("db.internal"),
        "{}",
        a.text
    );
}

#[tokio::test]
async fn bearer_token_from_header_reaches_resolvers() {
    let app = TestApp::spawn().await;
    let ask = |auth: Option<&'static str>| {
        let mut req = app
            .http
            .post(app.url("/graphql"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(json!({"query": "{ whoami }"}).to_string());
        if let Some(auth) = auth {
            req = req.header(header::AUTHORIZATION, auth);
        }
        async move { Answer::from(req.send().await.unwrap()).await.json["data"]["whoami"].clone() }
    };
    assert_eq!(ask(Some("Bearer t0k3n")).await, "t0k3n");
    assert_eq!(ask(Some("bearer t0k3n")).await, "t0k3n");
    assert_eq!(ask(Some("Basic dXNlcjpwdw==")).await, Value::Null);
    assert_eq!(ask(None).await, Value::Null);
}

// ---- limits ----

#[tokio::test]
async fn body_over_the_limit_is_413() {
    let app = TestApp::spawn().await;
    let big = format!(
        r#"{{"query": "{{ hello }}", "pad": "{}"}}"#,
        "x".repeat(64 * 1024)
    );
    let a = app.post_raw(Some(GRJ), Some("application/json"), big).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(a.code(), "BODY_TOO_LARGE");
    assert!(a.content_type().starts_with(GRJ));

    // Just under the limit still works.
    let pad = 64 * 1024 - 40;
    let fits = format!(
        r#"{{"query": "{{ hello }}", "pad": "{}"}}"#,
        "x".repeat(pad)
    );
    assert!(fits.len() <= 64 * 1024);
    let a = app
        .post_raw(Some(GRJ), Some("application/json"), fits)
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
}

#[tokio::test]
async fn chunked_body_over_the_limit_is_413() {
    let app = TestApp::spawn().await;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = "POST /graphql HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
                Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b' '; 16 * 1024];
    // The server may answer and close before it has read everything.
    for _ in 0..6 {
        let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
        if stream.write_all(&frame).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains("BODY_TOO_LARGE"), "{response}");
}

fn nested_query(depth: usize) -> String {
    // depth counts selection-set levels: { nested { child { ... value } } }
    let mut q = String::from("{ nested {");
    for _ in 1..depth.saturating_sub(1) {
        q.push_str(" child {");
    }
    q.push_str(" value");
    for _ in 1..depth.saturating_sub(1) {
        q.push_str(" }");
    }
    q.push_str(" } }");
    q
}

#[tokio::test]
async fn query_over_the_depth_limit_is_a_request_error() {
    let app = TestApp::spawn().await;
    let ok = app
        .post(Some(GRJ), json!({"query": nested_query(16)}))
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);

    let deep = json!({"query": nested_query(17)});
    let a = app.post(Some(GRJ), deep.clone()).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    a.assert_request_error();
    assert_eq!(a.code(), "QUERY_TOO_DEEP");
    assert_eq!(
        a.json["errors"][0]["extensions"]["hint"],
        "nest selections at most 16 levels deep"
    );
    let a = app.post(Some("application/json"), deep).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.code(), "QUERY_TOO_DEEP");
}

#[tokio::test]
async fn query_over_the_complexity_limit_is_a_request_error() {
    let app = TestApp::spawn().await;
    let fields = |n: usize| {
        let aliases: Vec<String> = (0..n).map(|i| format!("a{i}: hello")).collect();
        format!("{{ {} }}", aliases.join(" "))
    };
    let ok = app.post(Some(GRJ), json!({"query": fields(1000)})).await;
    assert_eq!(
        ok.status,
        StatusCode::OK,
        "{}",
        &ok.text[..200.min(ok.text.len())]
    );
    let a = app.post(Some(GRJ), json!({"query": fields(1001)})).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
    a.assert_request_error();
    assert_eq!(a.code(), "QUERY_TOO_COMPLEX");
}

#[tokio::test]
async fn custom_limits_apply() {
    let limits = Limits {
        max_body_bytes: 256,
        max_depth: 3,
        max_complexity: 5,
        max_fields: 2000,
    };
    let app = TestApp::spawn_with(limits).await;
    let a = app.post(Some(GRJ), json!({"query": nested_query(4)})).await;
    assert_eq!(a.code(), "QUERY_TOO_DEEP", "{}", a.text);
    let a = app
        .post(
            Some(GRJ),
            json!({"query": "{ a: hello b: hello c: hello d: hello e: hello f: hello }"}),
        )
        .await;
    assert_eq!(a.code(), "QUERY_TOO_COMPLEX", "{}", a.text);
    let a = app
        .post(
            Some(GRJ),
            json!({"query": format!("{{ hello }} # {}", "x".repeat(300))}),
        )
        .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn pathological_nesting_within_the_body_limit_is_refused_not_fatal() {
    let app = TestApp::spawn().await;
    // ~60 KiB of nesting: far past the depth limit, and deep enough to
    // overflow a naive recursive parser's stack.
    let n = 6_000;
    let query = format!("{{ nested {}{}", "{ child ".repeat(n), "}".repeat(n + 1));
    assert!(query.len() < 64 * 1024);
    let a = app.post(Some(GRJ), json!({"query": query})).await;
    assert!(
        a.status.is_client_error(),
        "{} {}",
        a.status,
        &a.text[..a.text.len().min(300)]
    );
    // Still serving.
    let a = app.post(Some(GRJ), json!({"query": "{ hello }"})).await;
    assert_eq!(a.status, StatusCode::OK);
}

// ---- GraphiQL, probes, routing, request ids ----

#[tokio::test]
async fn browsers_get_graphiql() {
    let app = TestApp::spawn().await;
    let resp = app
        .http
        .get(app.url("/graphql"))
        .header(
            header::ACCEPT,
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        )
        .send()
        .await
        .unwrap();
    let a = Answer::from(resp).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.content_type(), "text/html; charset=utf-8");
    assert!(a.text.contains("graphiql"), "not GraphiQL");
    assert!(a.text.contains("createUrl('/graphql')"));
    assert!(
        a.text
            .contains("subscriptionUrl: createUrl('/graphql', true)")
    );
    // A browser asking a query gets the answer, not the page.
    let a = app
        .get(Some("text/html,*/*;q=0.8"), &[("query", "{ hello }")])
        .await;
    assert_eq!(a.json["data"]["hello"], "hello world", "{}", a.text);
}

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::spawn().await;
    let get = |path: &'static str| {
        let req = app.http.get(app.url(path));
        async move { Answer::from(req.send().await.unwrap()).await }
    };
    let a = get("/healthz").await;
    assert_eq!(
        (a.status, a.json.clone()),
        (StatusCode::OK, json!({"status": "ok"}))
    );
    let a = get("/readyz").await;
    assert_eq!(
        (a.status, a.json.clone()),
        (StatusCode::OK, json!({"status": "ok"}))
    );

    app.ready.store(false, Ordering::SeqCst);
    let a = get("/readyz").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.json["status"], "unavailable");
    assert_eq!(a.code(), "NOT_READY");
    assert!(
        !a.text.contains("db.internal"),
        "the reason is logged, not shown"
    );
    let a = get("/healthz").await;
    assert_eq!(
        a.status,
        StatusCode::OK,
        "liveness does not depend on readiness"
    );
}

#[tokio::test]
async fn unknown_routes_are_404_json() {
    let app = TestApp::spawn().await;
    let resp = app.http.get(app.url("/nope")).send().await.unwrap();
    let a = Answer::from(resp).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert!(a.content_type().starts_with("application/json"));
    assert_eq!(a.code(), "ROUTE_NOT_FOUND");
    assert_eq!(a.json["errors"][0]["message"], "no route for GET /nope");
}

#[tokio::test]
async fn request_ids_are_generated_or_propagated() {
    let app = TestApp::spawn().await;
    let resp = app.http.get(app.url("/healthz")).send().await.unwrap();
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 32, "{id}");
    let resp = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_ne!(resp.headers()["x-request-id"].to_str().unwrap(), id);

    let resp = app
        .http
        .post(app.url("/graphql"))
        .header("x-request-id", "client-chosen-42")
        .header(header::CONTENT_TYPE, "application/json")
        .body(r#"{"query":"{ hello }"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "client-chosen-42");
    // Error responses carry it too.
    let resp = app
        .http
        .get(app.url("/nope"))
        .header("x-request-id", "abc")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "abc");
}

// ---- WebSocket ----

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn ws_connect(app: &TestApp, protocol: &str, authorization: Option<&str>) -> Ws {
    let mut req = format!("ws://{}/graphql", app.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", protocol.parse().unwrap());
    if let Some(auth) = authorization {
        req.headers_mut()
            .insert("authorization", auth.parse().unwrap());
    }
    let (ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], protocol);
    ws
}

async fn ws_send(ws: &mut Ws, msg: Value) {
    ws.send(Message::text(msg.to_string())).await.unwrap();
}

async fn ws_recv(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("no message within 5 s")
            .expect("socket closed")
            .unwrap();
        match msg {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected message {other:?}"),
        }
    }
}

#[tokio::test]
async fn subscription_over_graphql_transport_ws() {
    let app = TestApp::spawn().await;
    let mut ws = ws_connect(&app, "graphql-transport-ws", None).await;
    ws_send(
        &mut ws,
        json!({"type": "connection_init", "payload": {"Authorization": "Bearer ws-token"}}),
    )
    .await;
    assert_eq!(ws_recv(&mut ws).await["type"], "connection_ack");

    ws_send(
        &mut ws,
        json!({"id": "1", "type": "subscribe", "payload": {"query": "subscription { countTo(n: 3) }"}}),
    )
    .await;
    for n in 1..=3 {
        let msg = ws_recv(&mut ws).await;
        assert_eq!(
            msg,
            json!({"type": "next", "id": "1", "payload": {"data": {"countTo": n}}})
        );
    }
    assert_eq!(
        ws_recv(&mut ws).await,
        json!({"type": "complete", "id": "1"})
    );

    ws_send(
        &mut ws,
        json!({"id": "2", "type": "subscribe", "payload": {"query": "subscription { whoami }"}}),
    )
    .await;
    let msg = ws_recv(&mut ws).await;
    assert_eq!(msg["payload"]["data"]["whoami"], "ws-token", "{msg}");
    assert_eq!(
        ws_recv(&mut ws).await,
        json!({"type": "complete", "id": "2"})
    );

    // Limits hold on the socket too, with the same code as over HTTP.
    let deep = nested_query(17).replacen("{ nested", "subscription { nested", 1);
    ws_send(
        &mut ws,
        json!({"id": "3", "type": "subscribe", "payload": {"query": deep}}),
    )
    .await;
    let msg = ws_recv(&mut ws).await;
    assert_eq!(msg["id"], "3", "{msg}");
    assert_eq!(
        msg["payload"]["errors"][0]["extensions"]["code"], "QUERY_TOO_DEEP",
        "{msg}"
    );
}

#[tokio::test]
async fn websocket_token_sources() {
    let app = TestApp::spawn().await;
    // Lower-case key in the payload.
    let mut ws = ws_connect(&app, "graphql-transport-ws", None).await;
    ws_send(
        &mut ws,
        json!({"type": "connection_init", "payload": {"authorization": "Bearer lower"}}),
    )
    .await;
    assert_eq!(ws_recv(&mut ws).await["type"], "connection_ack");
    assert_eq!(ws_whoami(&mut ws).await, "lower");

    // No payload: the upgrade request's header is used.
    let mut ws = ws_connect(&app, "graphql-transport-ws", Some("Bearer from-header")).await;
    ws_send(&mut ws, json!({"type": "connection_init"})).await;
    assert_eq!(ws_recv(&mut ws).await["type"], "connection_ack");
    assert_eq!(ws_whoami(&mut ws).await, "from-header");

    // Neither: none.
    let mut ws = ws_connect(&app, "graphql-transport-ws", None).await;
    ws_send(&mut ws, json!({"type": "connection_init", "payload": {}})).await;
    assert_eq!(ws_recv(&mut ws).await["type"], "connection_ack");
    assert_eq!(ws_whoami(&mut ws).await, Value::Null);
}

async fn ws_whoami(ws: &mut Ws) -> Value {
    ws_send(
        ws,
        json!({"id": "w", "type": "subscribe", "payload": {"query": "subscription { whoami }"}}),
    )
    .await;
    let msg = ws_recv(ws).await;
    assert_eq!(ws_recv(ws).await["type"], "complete");
    msg["payload"]["data"]["whoami"].clone()
}

#[tokio::test]
async fn subscription_over_legacy_graphql_ws() {
    let app = TestApp::spawn().await;
    let mut ws = ws_connect(&app, "graphql-ws", None).await;
    ws_send(&mut ws, json!({"type": "connection_init", "payload": {}})).await;
    assert_eq!(ws_recv(&mut ws).await["type"], "connection_ack");
    ws_send(
        &mut ws,
        json!({"id": "1", "type": "start", "payload": {"query": "subscription { countTo(n: 2) }"}}),
    )
    .await;
    for n in 1..=2 {
        let msg = ws_recv(&mut ws).await;
        assert_eq!(msg["type"], "data", "{msg}");
        assert_eq!(msg["payload"]["data"]["countTo"], n);
    }
    assert_eq!(
        ws_recv(&mut ws).await,
        json!({"type": "complete", "id": "1"})
    );
}

#[tokio::test]
async fn websocket_without_a_graphql_subprotocol_is_refused() {
    let app = TestApp::spawn().await;
    let req = format!("ws://{}/graphql", app.addr)
        .into_client_request()
        .unwrap();
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST.as_u16());
        }
        other => panic!("expected a 400, got {:?}", other.map(|(_, r)| r.status())),
    }
}

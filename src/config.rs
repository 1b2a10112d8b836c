//! Server configuration: typed defaults < `BATON_*` environment variables
//! < command-line flags (clap reads both).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// What `http` steps may call when `--allow-hosts` is not given (serve and
/// validate alike).
pub const DEFAULT_ALLOW_HOSTS: &str = "localhost,127.0.0.1";

#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Address to listen on.
    #[arg(long, env = "BATON_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// `sqlite://path` (created if missing) or `postgres://…`.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://baton.db")]
    pub database_url: String,
    /// Directory of flow files (`*.yaml`, `*.yml`, `*.json`).
    #[arg(long, env = "BATON_FLOWS", default_value = "flows")]
    pub flows: PathBuf,
    /// Directory of flag files in flagd's format (`*.json`, `*.yaml`,
    /// `*.yml`); a missing directory means no flags.
    #[arg(long, env = "BATON_FLAGS", default_value = "flags")]
    pub flags: PathBuf,
    /// Directory of experiment files (`*.yaml`, `*.yml`, `*.json`); a
    /// missing directory means no experiments.
    #[arg(long, env = "BATON_EXPERIMENTS", default_value = "experiments")]
    pub experiments: PathBuf,
    /// Client keys accepted by the OFREP endpoints (`/ofrep/v1/...`),
    /// comma separated; sent as `Authorization: Bearer <key>` or
    /// `X-API-Key: <key>`. Without any, OFREP answers everyone.
    #[arg(long, env = "BATON_OFREP_KEYS", value_delimiter = ',')]
    pub ofrep_keys: Vec<ClientKey>,
    /// File of API keys for admin calls (YAML or JSON: names, roles and
    /// SHA-256 hashes; `baton key new` makes entries). Without it every
    /// admin call is refused.
    #[arg(long, env = "BATON_API_KEYS")]
    pub api_keys: Option<PathBuf>,
    /// Browser origins allowed to call `/graphql` from another origin (CORS),
    /// comma separated, e.g. `http://localhost:5173`. Without any, no CORS
    /// headers are sent and browsers allow only same-origin pages.
    #[arg(long, env = "BATON_CORS_ALLOW_ORIGIN", value_delimiter = ',')]
    pub cors_allow_origin: Vec<CorsOrigin>,
    /// Reload flow and flag files when they change: new sessions get the
    /// new flow version, running sessions keep theirs.
    #[arg(long, env = "BATON_WATCH")]
    pub watch: bool,
    /// Flow files that changed become drafts to publish over the API or
    /// `baton push`, instead of going live for every new session at once.
    #[arg(long, env = "BATON_FLOWS_AS_DRAFTS")]
    pub flows_as_drafts: bool,
    /// A publish needs a second publisher: the first `publishFlow` records
    /// a request, and another publisher's `publishFlow` of the same version
    /// carries it out (the requester cannot approve their own).
    #[arg(long, env = "BATON_REQUIRE_REVIEW")]
    pub require_review: bool,
    /// Sessions of the last this many days make the app cohorts of the
    /// compatibility report and the publish check (1–3650).
    #[arg(long, env = "BATON_COHORT_DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub cohort_days: u32,
    /// A YAML or JSON file of app cohorts (`cohorts: [{platform,
    /// app_version, capabilities}]`) every compatibility report lists, with
    /// or without recent sessions.
    #[arg(long, env = "BATON_COHORTS")]
    pub cohorts: Option<PathBuf>,
    /// How often this replica checks the store for release changes made
    /// elsewhere (publish, rollout, rollback). On PostgreSQL they also
    /// arrive at once by LISTEN/NOTIFY; this is the safety net.
    #[arg(long, env = "BATON_RELEASE_POLL_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(10..))]
    pub release_poll_ms: u64,
    /// How often the funnel aggregator looks for new session events when
    /// it has caught up; 0 turns the background aggregator off (a funnel
    /// query then aggregates what it needs before it answers).
    #[arg(long, env = "BATON_ROLLUP_POLL_MS", default_value_t = 500)]
    pub rollup_poll_ms: u64,
    /// Most sessions a funnel reads from the session log, for the partial
    /// hours at either end of its range; more is `FUNNEL_TOO_LARGE`.
    #[arg(long, env = "BATON_FUNNEL_MAX_LOGGED", default_value_t = 100_000,
          value_parser = clap::value_parser!(i64).range(1..))]
    pub funnel_max_logged: i64,
    /// Sessions whose last state (and last 3 answers) this server keeps
    /// in memory, so a submit to one of them reads nothing first; 0 keeps
    /// none. Each costs a few KB (about 7 with the benchmarks' flow).
    #[arg(long, env = "BATON_SESSION_CACHE", default_value_t = crate::service::DEFAULT_SESSION_CACHE)]
    pub session_cache: usize,
    /// Sessions whose funnel walk the aggregator keeps in memory between
    /// batches (0: none; each one missed is read from the store).
    #[arg(long, env = "BATON_FUNNEL_WALK_CACHE", default_value_t = 100_000)]
    pub funnel_walk_cache: usize,
    /// Longest the funnel aggregator keeps what it folded in memory
    /// before writing it (a funnel query writes it first in any case);
    /// 0 writes every batch.
    #[arg(long, env = "BATON_FUNNEL_WRITE_MS", default_value_t = 5000)]
    pub funnel_write_ms: u64,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "BATON_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,
    /// Largest accepted request header fields, all together, in bytes.
    #[arg(long, env = "BATON_MAX_HEADER_BYTES", default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,
    /// Requests per minute one client address may send (in bursts of up
    /// to as many); 0 = no limit. Behind a proxy every client shares its
    /// address.
    #[arg(long, env = "BATON_RATE_LIMIT_PER_ADDRESS", default_value_t = 60_000)]
    pub rate_limit_per_address: u32,
    /// Operations per minute on one session (`session`, `submit`, `back`,
    /// `sessionUpdated`), in bursts of up to as many; 0 = no limit.
    #[arg(long, env = "BATON_RATE_LIMIT_PER_SESSION", default_value_t = 1800)]
    pub rate_limit_per_session: u32,
    /// Deepest accepted GraphQL query.
    #[arg(long, env = "BATON_MAX_QUERY_DEPTH", default_value_t = 16)]
    pub max_query_depth: usize,
    /// Highest accepted GraphQL query complexity.
    #[arg(long, env = "BATON_MAX_QUERY_COMPLEXITY", default_value_t = 1000)]
    pub max_query_complexity: usize,
    /// Most selections a GraphQL document may expand to: fields (aliases
    /// and `__typename` included), fragment spreads and inline fragments,
    /// counting a fragment again at every use.
    #[arg(long, env = "BATON_MAX_QUERY_FIELDS", default_value_t = 2000)]
    pub max_query_fields: usize,
    /// Nodes one submit may pass before it is stopped (loops without a screen).
    #[arg(long, env = "BATON_MAX_STEPS_PER_ADVANCE", default_value_t = 64)]
    pub max_steps_per_advance: u32,
    /// Largest session context, in bytes of JSON.
    #[arg(long, env = "BATON_MAX_CONTEXT_BYTES", default_value_t = 256 * 1024)]
    pub max_context_bytes: usize,
    /// Database connections in the pool.
    #[arg(long, env = "BATON_DB_CONNECTIONS", default_value_t = 16)]
    pub db_connections: u32,
    /// Log line format.
    #[arg(long, env = "BATON_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// File of webhooks that receive the event feed (see README, "Event
    /// feed"); none by default.
    #[arg(long, env = "BATON_WEBHOOKS")]
    pub webhooks: Option<PathBuf>,
    /// NATS server whose JetStream receives the event feed
    /// (`nats://127.0.0.1:4222`); none by default.
    #[arg(long, env = "BATON_NATS_URL")]
    pub nats_url: Option<String>,
    /// Subject prefix: events go to `<prefix>.<flow>.<kind>`.
    #[arg(long, env = "BATON_NATS_SUBJECT", default_value = "baton.events", value_parser = nats_subject)]
    pub nats_subject: String,
    /// The JetStream stream, created with `<prefix>.>` when missing.
    #[arg(long, env = "BATON_NATS_STREAM", default_value = "BATON_EVENTS")]
    pub nats_stream: String,
    /// Send the whole feed the first time, not only what comes next.
    #[arg(long, env = "BATON_NATS_FROM_START")]
    pub nats_from_start: bool,
    /// Subject prefix Baton reads events from (needs `--nats-url`): a
    /// message on `<prefix>.payment.settled` with the body
    /// `{"correlationKey": "…", "payload": {…}}` is the event
    /// `payment.settled`. None by default (not read).
    #[arg(
        long,
        env = "BATON_NATS_EVENTS_SUBJECT",
        value_parser = nats_subject,
        requires = "nats_url"
    )]
    pub nats_events_subject: Option<String>,
    /// The JetStream stream of incoming events, created with `<prefix>.>`
    /// when missing.
    #[arg(
        long,
        env = "BATON_NATS_EVENTS_STREAM",
        default_value = "BATON_INBOUND"
    )]
    pub nats_events_stream: String,
    /// OTLP/HTTP endpoint (e.g. `http://127.0.0.1:4318`) that receives
    /// Baton's traces at `/v1/traces`; none by default (no traces).
    #[arg(long, env = "BATON_OTLP_ENDPOINT", value_parser = otlp_endpoint)]
    pub otlp_endpoint: Option<String>,
    /// Run every session in mock mode: backend steps answer from their
    /// mocks and never reach a real upstream.
    #[arg(long, env = "BATON_MOCK")]
    pub mock: bool,
    /// Record every session that ends: what its backend steps got becomes
    /// mock scenario NAME of its flow, saved as a draft (for development
    /// servers that call real upstreams).
    #[arg(long, env = "BATON_RECORD", value_name = "NAME", value_parser = scenario_name, conflicts_with = "mock")]
    pub record: Option<String>,
    /// Delete idempotency records older than this many hours (checked
    /// every minute, in batches); 0 keeps them. A retry with a key older
    /// than that is treated as a new submit.
    #[arg(long, env = "BATON_IDEMPOTENCY_HOURS", default_value_t = 0)]
    pub idempotency_hours: u32,
    /// Delete sessions whose last change is older than this many hours,
    /// with their log (checked every minute, in batches); 0 keeps them.
    /// Sessions waiting on a step, and those the funnels have yet to count
    /// as dropped off (up to 7 days quiet), are kept until they are not.
    #[arg(long, env = "BATON_SESSION_HOURS", default_value_t = 0)]
    pub session_hours: u32,
    /// Hosts `http` steps may call, comma separated (exact names or IPs).
    /// A flow calling another host fails to load.
    #[arg(
        long,
        env = "BATON_ALLOW_HOSTS",
        value_delimiter = ',',
        default_value = DEFAULT_ALLOW_HOSTS
    )]
    pub allow_hosts: Vec<String>,
    /// Shared secret of the HS256 JWTs that assert the user (`X-User-Token`);
    /// at least 32 bytes. Turns user identity on.
    #[arg(long, env = "BATON_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// JWKS file of the public keys (RS256/ES256) of the JWTs that assert
    /// the user. Turns user identity on.
    #[arg(long, env = "BATON_JWT_JWKS")]
    pub jwt_jwks: Option<PathBuf>,
    /// The `aud` user JWTs must carry.
    #[arg(long, env = "BATON_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,
    /// The `iss` user JWTs must carry.
    #[arg(long, env = "BATON_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,
    /// Clock skew allowed on a user JWT's `exp`/`nbf`, in seconds.
    #[arg(long, env = "BATON_JWT_LEEWAY_SECS", default_value_t = 30)]
    pub jwt_leeway_secs: u64,
    /// How long `startFlow` / `submit` wait for the backend steps they
    /// started before answering `WAITING` with the pending screen, in ms.
    #[arg(long, env = "BATON_STEP_BUDGET_MS", default_value_t = 2000)]
    pub step_budget_ms: u64,
    /// How long a worker holds a step task before another process may
    /// take it over (after a crash), in ms.
    #[arg(long, env = "BATON_TASK_LEASE_MS", default_value_t = 30_000)]
    pub task_lease_ms: u64,
    /// Longest pause between looks for due step tasks (timers, deadlines,
    /// work other replicas created), in ms.
    #[arg(long, env = "BATON_TASK_POLL_MS", default_value_t = 1000)]
    pub task_poll_ms: u64,
    /// Limits per upstream host, comma separated: `HOST=CONCURRENT[/PER_SECOND]`
    /// (`*` for every other host, each on its own; 0 for no limit of that
    /// kind), e.g. `api.example.com=8/50,*=32`. A call waits for its turn
    /// up to its attempt timeout, then fails and is retried like a
    /// connection failure.
    #[arg(long, env = "BATON_UPSTREAM_LIMITS", value_delimiter = ',')]
    pub upstream_limits: Vec<String>,
    /// Base URL of the OpenAI-compatible API `llm` steps ask (its
    /// `/chat/completions`), e.g. `http://127.0.0.1:11434/v1`; its host
    /// must be in `--allow-hosts`. None by default.
    #[arg(long, env = "BATON_LLM_URL", value_parser = llm_url)]
    pub llm_url: Option<String>,
    /// The model of `llm` steps that name none.
    #[arg(long, env = "BATON_LLM_MODEL")]
    pub llm_model: Option<String>,
    /// How the request asks for JSON: `none` (the schema is only in the
    /// prompt; every OpenAI-compatible server accepts it), `json-object`
    /// (`response_format: {type: json_object}`) or `json-schema` (the
    /// step's schema as `response_format`, for servers with structured
    /// outputs). The answer is checked against the schema either way.
    #[arg(long, env = "BATON_LLM_RESPONSE_FORMAT", value_enum, default_value_t = LlmResponseFormat::None)]
    pub llm_response_format: LlmResponseFormat,
    /// The secret sent as the endpoint's bearer key (`BATON_SECRET_<NAME>`).
    #[arg(long, env = "BATON_LLM_KEY_SECRET", default_value = "LLM_API_KEY")]
    pub llm_key_secret: String,
    /// Prices for the cost `llm` steps record, comma separated:
    /// `MODEL=PROMPT/COMPLETION` in USD per million tokens, e.g.
    /// `gpt-4o-mini=0.15/0.6`. A model without a price records no cost.
    #[arg(long, env = "BATON_LLM_PRICES", value_delimiter = ',')]
    pub llm_prices: Vec<String>,
    /// Consecutive failures that open an upstream host's circuit (0 = off).
    #[arg(long, env = "BATON_BREAKER_FAILURES", default_value_t = 5)]
    pub breaker_failures: u32,
    /// How long an open circuit fails fast before a probe, in ms.
    #[arg(long, env = "BATON_BREAKER_OPEN_MS", default_value_t = 30_000)]
    pub breaker_open_ms: u64,
    /// `secrets.NAME` values for `http` steps. `None`: read from the
    /// environment (`BATON_SECRET_NAME`); set directly by embedders and tests.
    #[arg(skip)]
    pub secrets: Option<std::collections::HashMap<String, String>>,
}

/// A NATS subject prefix: dot-separated tokens without wildcards or spaces.
fn scenario_name(s: &str) -> Result<String, String> {
    if crate::flow::validate::valid_id(s) && s != "default" {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "`{s}` is not a scenario name: letters, digits, `_` and `-`, and not `default`"
        ))
    }
}

fn nats_subject(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.split('.').all(|t| {
            !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!("`{s}` is not a subject prefix; e.g. baton.events"))
    }
}

/// An OTLP/HTTP base URL: `http(s)://host[:port]`, optionally with a path
/// prefix; `/v1/traces` is added.
fn otlp_endpoint(s: &str) -> Result<String, String> {
    base_url(s, "http://127.0.0.1:4318")
}

/// An OpenAI-compatible API's base URL; `/chat/completions` is added.
fn llm_url(s: &str) -> Result<String, String> {
    base_url(s, "http://127.0.0.1:11434/v1")
}

/// A base URL other paths are added to: `http(s)://host[:port]`, optionally
/// with a path prefix, without a query, fragment or trailing slash.
fn base_url(s: &str, example: &str) -> Result<String, String> {
    let url = url::Url::parse(s.trim())
        .map_err(|e| format!("`{s}` is not a URL ({e}); e.g. {example}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("`{s}` is not an http(s) URL; e.g. {example}"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "`{s}` has a query or fragment; give the base URL only"
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// How an `llm` step's request asks for JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LlmResponseFormat {
    #[default]
    None,
    JsonObject,
    JsonSchema,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl ServeConfig {
    /// Defaults for tests and embedding: every flag at its default.
    /// The flag and experiment directories are `flags` and `experiments`
    /// next to the flow directory, usually absent (none).
    pub fn for_database(database_url: impl Into<String>, flows: impl Into<PathBuf>) -> ServeConfig {
        let flows: PathBuf = flows.into();
        let beside = |name: &str| {
            flows
                .parent()
                .map_or_else(|| PathBuf::from(name), |p| p.join(name))
        };
        let (flags, experiments) = (beside("flags"), beside("experiments"));
        ServeConfig {
            addr: "127.0.0.1:0".parse().expect("static address"),
            database_url: database_url.into(),
            flows,
            flags,
            experiments,
            ofrep_keys: Vec::new(),
            api_keys: None,
            cors_allow_origin: Vec::new(),
            watch: false,
            flows_as_drafts: false,
            require_review: false,
            cohort_days: 30,
            cohorts: None,
            release_poll_ms: 1000,
            rollup_poll_ms: 500,
            funnel_max_logged: 100_000,
            session_cache: crate::service::DEFAULT_SESSION_CACHE,
            funnel_walk_cache: 100_000,
            funnel_write_ms: 5000,
            max_body_bytes: 64 * 1024,
            max_header_bytes: 16 * 1024,
            rate_limit_per_address: 60_000,
            rate_limit_per_session: 1800,
            max_query_depth: 16,
            max_query_complexity: 1000,
            max_query_fields: 2000,
            max_steps_per_advance: 64,
            max_context_bytes: 256 * 1024,
            db_connections: 16,
            log_format: LogFormat::Text,
            otlp_endpoint: None,
            webhooks: None,
            nats_url: None,
            nats_subject: "baton.events".into(),
            nats_stream: "BATON_EVENTS".into(),
            nats_from_start: false,
            nats_events_subject: None,
            record: None,
            idempotency_hours: 0,
            session_hours: 0,
            llm_url: None,
            llm_model: None,
            llm_key_secret: "LLM_API_KEY".into(),
            llm_response_format: LlmResponseFormat::None,
            llm_prices: Vec::new(),
            nats_events_stream: "BATON_INBOUND".into(),
            mock: false,
            allow_hosts: vec!["localhost".into(), "127.0.0.1".into()],
            jwt_secret: None,
            jwt_jwks: None,
            jwt_audience: None,
            jwt_issuer: None,
            jwt_leeway_secs: 30,
            step_budget_ms: 2000,
            task_lease_ms: 30_000,
            task_poll_ms: 1000,
            upstream_limits: Vec::new(),
            breaker_failures: 5,
            breaker_open_ms: 30_000,
            secrets: None,
        }
    }
}

/// A client key for the OFREP endpoints. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientKey(String);

impl ClientKey {
    pub fn new(key: impl Into<String>) -> ClientKey {
        ClientKey(key.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for ClientKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key = s.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err("a client key is non-empty and has no whitespace".into());
        }
        Ok(ClientKey(key.to_owned()))
    }
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientKey(<redacted>)")
    }
}

/// A browser origin, `scheme://host[:port]`, as a browser sends it in the
/// `Origin` header (lowercase, no path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsOrigin(String);

impl CorsOrigin {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for CorsOrigin {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let origin = s.trim().to_ascii_lowercase();
        let Some((scheme, rest)) = origin.split_once("://") else {
            return Err(format!(
                "`{s}` is not an origin: write scheme://host[:port], e.g. http://localhost:5173"
            ));
        };
        if scheme != "http" && scheme != "https" {
            return Err(format!("`{s}`: an allowed origin is http:// or https://"));
        }
        // Browsers never send a path, so an origin with one would never match.
        if rest.is_empty()
            || rest.contains(['/', '?', '#', '@'])
            || !rest.chars().all(|c| c.is_ascii_graphic())
        {
            return Err(format!(
                "`{s}` is not an origin: only scheme://host[:port] in ASCII (punycode for \
                 international names), no path or trailing slash"
            ));
        }
        Ok(CorsOrigin(origin))
    }
}

#[cfg(test)]
mod tests {
    use super::CorsOrigin;

    #[test]
    fn otlp_endpoints_are_http_base_urls() {
        assert_eq!(
            super::otlp_endpoint("http://127.0.0.1:4318/").unwrap(),
            "http://127.0.0.1:4318"
        );
        assert_eq!(
            super::otlp_endpoint("https://otel.example/prefix").unwrap(),
            "https://otel.example/prefix"
        );
        for bad in ["127.0.0.1:4318", "grpc://x:4317", "http://x/?a=1", "nope"] {
            assert!(super::otlp_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cors_origins_are_scheme_host_port_only() {
        let ok: CorsOrigin = " HTTP://LocalHost:5173 ".parse().expect("valid");
        assert_eq!(ok.as_str(), "http://localhost:5173");
        assert!("https://app.example.com".parse::<CorsOrigin>().is_ok());
        for bad in [
            "localhost:5173",
            "ftp://x",
            "http://",
            "http://x/",
            "http://x/app",
            "http://a b",
            "http://bücher.example",
            "http://bücher.example",
            "*",
        ] {
            let err = bad.parse::<CorsOrigin>().expect_err(bad);
            assert!(err.contains(bad.trim()), "{bad}: {err}");
        }
    }
}

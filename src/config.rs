//! Server configuration: typed defaults < `BATON_*` environment variables
//! < command-line flags (clap reads both).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

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
    /// Reload flow and flag files when they change: new sessions get the
    /// new flow version, running sessions keep theirs.
    #[arg(long, env = "BATON_WATCH")]
    pub watch: bool,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "BATON_MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,
    /// Deepest accepted GraphQL query.
    #[arg(long, env = "BATON_MAX_QUERY_DEPTH", default_value_t = 16)]
    pub max_query_depth: usize,
    /// Highest accepted GraphQL query complexity.
    #[arg(long, env = "BATON_MAX_QUERY_COMPLEXITY", default_value_t = 1000)]
    pub max_query_complexity: usize,
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
            watch: false,
            max_body_bytes: 64 * 1024,
            max_query_depth: 16,
            max_query_complexity: 1000,
            max_steps_per_advance: 64,
            max_context_bytes: 256 * 1024,
            db_connections: 16,
            log_format: LogFormat::Text,
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

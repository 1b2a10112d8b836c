//! Startup: builds the whole application from a [`ServeConfig`] the same
//! way for `baton serve` and for the integration tests (which bind port 0).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::api;
use crate::config::ServeConfig;
use crate::engine::Limits;
use crate::flags::{self, FlagStore};
use crate::flow::validate::Severity;
use crate::orchestrator::{self, OrchestratorConfig, breaker::BreakerConfig};
use crate::service::registry::{Registry, Reload};
use crate::service::{Baton, StepSettings};
use crate::store::{Store, StoreOptions};
use tokio_util::sync::{CancellationToken, DropGuard};

pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    baton: Baton,
    flags: FlagStore,
    config: ServeConfig,
    /// Stops the orchestrator when the application ends, however it ends
    /// (returned, or dropped because its task was aborted).
    shutdown: DropGuard,
    orchestrator: tokio::task::JoinHandle<()>,
    /// The funnel aggregator, which writes what it folded and gives up its
    /// lease when it stops.
    rollups: Option<tokio::task::JoinHandle<()>>,
    /// The event sinks, which give up their leases when they stop.
    sinks: Vec<tokio::task::JoinHandle<()>>,
}

impl Application {
    pub async fn build(config: ServeConfig) -> anyhow::Result<Application> {
        let store = Store::connect(
            &config.database_url,
            StoreOptions {
                max_connections: config.db_connections,
                ..StoreOptions::default()
            },
        )
        .await
        .with_context(|| format!("opening the store at {}", redact(&config.database_url)))?;
        let allow_hosts =
            crate::flow::hosts::AllowList::parse(&config.allow_hosts).map_err(|e| {
                anyhow::anyhow!(
                    "{}: {e} (hint: {})",
                    crate::codes::Code::InvalidAllowHosts,
                    crate::codes::Code::InvalidAllowHosts.hint()
                )
            })?;
        let registry = Registry::with_allowed_hosts(store.clone(), allow_hosts.clone())
            .files_as_drafts(config.flows_as_drafts)
            .require_review(config.require_review)
            .cohort_days(config.cohort_days)
            .declared_cohorts(load_cohorts(&config)?);
        let reload = registry
            .load_dir(&config.flows)
            .await
            .with_context(|| format!("loading flows from {}", config.flows.display()))?;
        log_reload(&reload);
        let limits = Limits {
            max_steps_per_advance: config.max_steps_per_advance,
            max_context_bytes: config.max_context_bytes,
            ..Limits::default()
        };
        let flags = load_flags(&config)?;
        let experiments = load_experiments(&config, &flags.current())?;
        let baton = Baton::with_steps(
            store,
            registry,
            limits,
            flags.clone(),
            StepSettings {
                budget: Duration::from_millis(config.step_budget_ms),
                mock_all: config.mock,
                lease: Duration::from_millis(config.task_lease_ms.max(100)),
            },
        )
        .with_experiments(experiments)
        .with_session_cache(config.session_cache)
        .with_funnel_max_logged(config.funnel_max_logged)
        .with_funnel_memory(
            config.funnel_walk_cache,
            Duration::from_millis(config.funnel_write_ms),
        );
        // The flag and experiment files as loaded, versioned and audited.
        baton
            .record_files("flags", &config.flags)
            .await
            .context("recording the flag files' versions")?;
        baton
            .record_files("experiments", &config.experiments)
            .await
            .context("recording the experiment files' versions")?;
        if let Some(keys) = &config.api_keys {
            baton
                .record_file("api_keys", keys)
                .await
                .context("recording the API keys file's version")?;
        }
        let upstream_limits = orchestrator::bulkhead::UpstreamLimits::parse(
            &config.upstream_limits,
        )
        .map_err(|e| {
            let code = crate::codes::Code::InvalidUpstreamLimits;
            anyhow::anyhow!("{code}: {e} (hint: {})", code.hint())
        })?;
        let llm = llm_config(&config, &allow_hosts)?;
        let shutdown = CancellationToken::new();
        let orchestrator = orchestrator::spawn(
            baton.clone(),
            OrchestratorConfig {
                poll: Duration::from_millis(config.task_poll_ms.max(10)),
                allow_hosts,
                upstream_limits,
                breaker: BreakerConfig {
                    failure_threshold: config.breaker_failures,
                    open_for: Duration::from_millis(config.breaker_open_ms),
                },
                secrets: config
                    .secrets
                    .clone()
                    .unwrap_or_else(OrchestratorConfig::secrets_from_env),
                llm,
                ..OrchestratorConfig::default()
            },
            shutdown.clone(),
        );
        if let Some(listener) = baton
            .store()
            .session_listener()
            .await
            .context("listening for other replicas' session updates")?
        {
            let baton = baton.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move { baton.relay_replica_updates(listener, shutdown).await });
        }
        {
            let (baton, shutdown) = (baton.clone(), shutdown.clone());
            let every = Duration::from_millis(config.release_poll_ms);
            tokio::spawn(async move { poll_releases(baton, every, shutdown).await });
        }
        let webhooks = match &config.webhooks {
            None => Vec::new(),
            Some(path) => crate::sinks::load(path, |k| std::env::var(k).ok())
                .map_err(|e| anyhow::anyhow!("{}: {e} (hint: {})", e.code(), e.code().hint()))?,
        };
        let nats = config.nats_url.as_ref().map(|url| crate::sinks::Nats {
            url: url.clone(),
            subject: config.nats_subject.clone(),
            stream: config.nats_stream.clone(),
            from_start: config.nats_from_start,
        });
        let sinks =
            crate::sinks::Sinks::new(webhooks, nats, baton.store().clone(), baton.worker_id());
        if !sinks.names().is_empty() {
            tracing::info!(sinks = ?sinks.names(), "event feed sinks on");
        }
        let mut delivering = sinks.spawn(shutdown.clone());
        if let (Some(url), Some(subject)) = (&config.nats_url, &config.nats_events_subject) {
            let feed = &config.nats_subject;
            if crate::inbound::overlaps(subject, feed) {
                let code = crate::codes::Code::NatsSubjectsOverlap;
                anyhow::bail!(
                    "{code}: --nats-events-subject `{subject}` overlaps the event feed's `{feed}` (hint: {})",
                    code.hint()
                );
            }
            let events = crate::inbound::NatsEvents {
                url: url.clone(),
                subject: subject.clone(),
                stream: config.nats_events_stream.clone(),
            };
            let (baton, shutdown) = (baton.clone(), shutdown.clone());
            delivering.push(tokio::spawn(crate::inbound::run(baton, events, shutdown)));
        }
        let rollups = (config.rollup_poll_ms > 0).then(|| {
            let (baton, shutdown) = (baton.clone(), shutdown.clone());
            let every = Duration::from_millis(config.rollup_poll_ms);
            tokio::spawn(async move { baton.rollups().run(every, shutdown).await })
        });
        let keep = crate::service::retention::Retention::from_hours(
            config.idempotency_hours,
            config.session_hours,
        );
        if !keep.is_off() {
            let (baton, shutdown) = (baton.clone(), shutdown.clone());
            tokio::spawn(async move { baton.run_retention(keep, shutdown).await });
        }
        if let Some(scenario) = &config.record {
            let (baton, shutdown, scenario) = (baton.clone(), shutdown.clone(), scenario.clone());
            tracing::warn!(
                scenario,
                "--record: every session that ends is recorded into its flow's mocks, as a draft"
            );
            tokio::spawn(async move { baton.run_recorder(scenario, shutdown).await });
        }
        if config.mock {
            tracing::warn!("--mock: every session runs its backend steps against their mocks");
        }
        let http_limits = api::Limits {
            max_body_bytes: config.max_body_bytes,
            max_depth: config.max_query_depth,
            max_complexity: config.max_query_complexity,
            max_fields: config.max_query_fields,
        };
        let rate_limits = api::rate_limit::RateLimits::new(api::rate_limit::RateLimitConfig {
            per_address_per_minute: config.rate_limit_per_address,
            per_session_per_minute: config.rate_limit_per_session,
        });
        {
            let (rate_limits, shutdown) = (rate_limits.clone(), shutdown.clone());
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_secs(60));
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = every.tick() => rate_limits.forget_idle(),
                    }
                }
            });
        }
        let identity = crate::identity::Identity::from_config(&crate::identity::IdentityConfig {
            secret: config.jwt_secret.clone(),
            jwks: config.jwt_jwks.clone(),
            audience: config.jwt_audience.clone(),
            issuer: config.jwt_issuer.clone(),
            leeway_secs: config.jwt_leeway_secs,
        })
        .map_err(|e| anyhow::anyhow!("{}: {e} (hint: {})", e.code(), e.code().hint()))?;
        let mut schema = http_limits
            .apply(api::schema::builder(baton.clone()))
            .data(rate_limits.clone())
            .data(sinks);
        if let Some(identity) = identity {
            tracing::info!("user identity on: sessions are bound to the subject of X-User-Token");
            schema = schema.data(std::sync::Arc::new(identity));
        }
        let schema = schema.finish();
        let ofrep_keys = api::ofrep::ClientKeys::new(&config.ofrep_keys);
        if ofrep_keys.is_open() {
            tracing::warn!(
                "OFREP (/ofrep/v1) answers without a client key: set --ofrep-keys / BATON_OFREP_KEYS"
            );
        }
        let api_keys = load_api_keys(&config)?;
        let mut router = api::router_with_keys(
            schema,
            &http_limits,
            Some(Box::new(readiness(baton.clone()))),
            api_keys.clone(),
        );
        let origins: Vec<&str> = config
            .cors_allow_origin
            .iter()
            .map(|o| o.as_str())
            .collect();
        // Only around the GraphQL routes: OFREP has its own, open CORS policy,
        // and two CORS layers on one route would repeat the headers.
        if let Some(cors) = api::http::cors(&origins) {
            router = router.layer(cors);
        }
        let router = router
            .merge(api::metrics::router(baton.clone()))
            .merge(api::steps::webhook_router(
                baton.clone(),
                api_keys,
                config.max_body_bytes,
            ))
            .merge(api::ofrep::router(
                flags.clone(),
                ofrep_keys,
                config.max_body_bytes,
            ))
            // Last added runs first: headers are measured before a request
            // is counted against its address.
            .layer(axum::middleware::from_fn_with_state(
                rate_limits,
                api::rate_limit::per_address,
            ))
            .layer(axum::middleware::from_fn_with_state(
                config.max_header_bytes,
                api::http::limit_headers,
            ));
        let listener = TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("binding {}", config.addr))?;
        Ok(Application {
            listener,
            router,
            baton,
            flags,
            config,
            shutdown: shutdown.drop_guard(),
            orchestrator,
            rollups,
            sinks: delivering,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn baton(&self) -> &Baton {
        &self.baton
    }

    /// The flags in use (swapped on reload with `--watch`).
    pub fn flags(&self) -> &FlagStore {
        &self.flags
    }

    /// Serves until ctrl-c / SIGTERM, or forever when `shutdown` never resolves.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        if self.config.watch {
            spawn_watcher(self.baton.clone(), self.config.flows.clone())?;
            spawn_flag_watcher(
                self.baton.clone(),
                self.flags.clone(),
                self.config.flags.clone(),
            )?;
        }
        tracing::info!(addr = %self.local_addr(), "baton listening; GraphiQL at /graphql");
        let stop = self.shutdown;
        let served = axum::serve(
            self.listener,
            // The peer address feeds the per-address rate limit.
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await;
        drop(stop);
        // Running steps stop with the process; their leases expire and any
        // replica (or this one, restarted) takes them over.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.orchestrator).await;
        let stopping = self.rollups.into_iter().chain(self.sinks);
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            futures_util::future::join_all(stopping),
        )
        .await;
        served?;
        Ok(())
    }
}

/// Ready when the store answers, has every migration this binary knows,
/// and at least one flow is loaded (a server with none can only refuse).
fn readiness(baton: Baton) -> impl api::Readiness {
    move || {
        let baton = baton.clone();
        async move {
            baton
                .store()
                .ping()
                .await
                .map_err(|e| format!("the store does not answer: {e}"))?;
            let missing = baton
                .store()
                .missing_migrations()
                .await
                .map_err(|e| format!("reading the applied migrations failed: {e}"))?;
            if !missing.is_empty() {
                return Err(format!("migrations not applied: {missing:?}"));
            }
            if baton.registry().flow_ids().is_empty() {
                return Err("no flow is loaded".to_owned());
            }
            Ok(())
        }
    }
}

/// Picks up release changes other replicas made: one cheap query per
/// tick, and a reload only when a revision moved.
/// Where `llm` steps go: the URL must be one `--allow-hosts` allows, as
/// any step's upstream.
fn llm_config(
    config: &ServeConfig,
    allow: &crate::flow::hosts::AllowList,
) -> anyhow::Result<orchestrator::llm::LlmConfig> {
    let prices = orchestrator::llm::LlmConfig::parse_prices(&config.llm_prices).map_err(|e| {
        let code = crate::codes::Code::InvalidLlmPrices;
        anyhow::anyhow!("{code}: {e} (hint: {})", code.hint())
    })?;
    // `--llm-url` parsed as an http(s) URL (an embedder's may not have).
    if let Some(url) = config
        .llm_url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
    {
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default().unwrap_or(0);
        if !allow.allows(host, port) {
            let code = crate::codes::Code::HostNotAllowed;
            anyhow::bail!(
                "{code}: --llm-url calls `{host}:{port}`, which --allow-hosts does not allow (hint: {})",
                code.hint()
            );
        }
    }
    Ok(orchestrator::llm::LlmConfig {
        url: config.llm_url.clone(),
        model: config.llm_model.clone(),
        key_secret: config.llm_key_secret.clone(),
        response_format: config.llm_response_format,
        prices,
    })
}

async fn poll_releases(baton: Baton, every: Duration, shutdown: CancellationToken) {
    let mut seen = baton.store().release_revision().await.ok();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = match baton.store().release_revision().await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "checking for release changes failed");
                continue;
            }
        };
        if seen != Some(now) {
            match baton.registry().refresh_all().await {
                Ok(()) => seen = Some(now),
                Err(e) => tracing::warn!(error = %e, "reloading flow releases failed"),
            }
        }
    }
}

fn log_reload(reload: &Reload) {
    for issue in &reload.issues {
        match issue.severity {
            Severity::Error => {
                tracing::error!(file = %issue.file, code = %issue.code, path = %issue.path, "{}", issue.message)
            }
            Severity::Warning => {
                tracing::warn!(file = %issue.file, code = %issue.code, path = %issue.path, "{}", issue.message)
            }
        }
    }
    for (flow, version) in &reload.published {
        tracing::info!(flow = %flow, version, "flow version serving new sessions");
    }
    for (flow, version) in &reload.drafts {
        tracing::info!(flow = %flow, version, "flow file recorded as a draft; publish it to serve it");
    }
}

/// Watches the flow directory; a burst of file events becomes one reload.
fn spawn_watcher(baton: Baton, dir: PathBuf) -> anyhow::Result<()> {
    use notify::{RecursiveMode, Watcher};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok() {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        let _watcher = watcher; // dropped with the task
        while rx.recv().await.is_some() {
            tokio::time::sleep(Duration::from_millis(150)).await;
            while rx.try_recv().is_ok() {}
            match baton.registry().load_dir(&dir).await {
                Ok(reload) => log_reload(&reload),
                Err(e) => {
                    tracing::error!(error = %e, "reloading flows failed; last good versions keep serving")
                }
            }
        }
    });
    Ok(())
}

/// The `--cohorts` file: cohorts every compatibility report lists.
fn load_cohorts(config: &ServeConfig) -> anyhow::Result<Vec<crate::engine::compat::Cohort>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        cohorts: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Entry {
        platform: Option<String>,
        app_version: Option<String>,
        capabilities: Option<Vec<String>>,
    }
    let Some(path) = &config.cohorts else {
        return Ok(Vec::new());
    };
    let code = crate::codes::Code::CohortsFileInvalid;
    let fail =
        |why: String| anyhow::anyhow!("{code}: {}: {why} (hint: {})", path.display(), code.hint());
    const MAX: u64 = 1024 * 1024;
    let value = crate::document::read(path, MAX).map_err(|e| fail(e.describe(MAX)))?;
    let file: File = serde_json::from_value(value).map_err(|e| fail(e.to_string()))?;
    for e in &file.cohorts {
        if let Some(v) = &e.app_version
            && crate::flow::compile::lenient_semver(v).is_none()
        {
            return Err(fail(format!("app_version `{v}` is not a version")));
        }
    }
    Ok(file
        .cohorts
        .into_iter()
        .map(|e| crate::engine::compat::Cohort {
            platform: e.platform,
            app_version: e.app_version,
            capabilities: e.capabilities,
        })
        .collect())
}

/// The API keys for admin calls; a bad file stops the start.
fn load_api_keys(config: &ServeConfig) -> anyhow::Result<crate::auth::ApiKeys> {
    let Some(path) = &config.api_keys else {
        tracing::info!("no API keys (--api-keys / BATON_API_KEYS): admin calls are refused");
        return Ok(crate::auth::ApiKeys::none());
    };
    let keys = crate::auth::ApiKeys::load(path)
        .map_err(|e| anyhow::anyhow!("[{}] {e}\nhint: {}", e.code(), e.hint()))?;
    tracing::info!(file = %path.display(), keys = keys.len(), "API keys loaded");
    Ok(keys)
}

/// The experiment directory's experiments, checked against the flags. An
/// experiment with an error stops the start: running it half-defined would
/// record data nobody can trust.
fn load_experiments(
    config: &ServeConfig,
    flags: &flags::FlagSet,
) -> anyhow::Result<crate::experiments::live::Experiments> {
    use crate::experiments::{Experiment, live::Experiments};
    let dir = &config.experiments;
    if !dir.exists() {
        tracing::info!(dir = %dir.display(), "no experiment directory; running no experiments");
        return Ok(Experiments::default());
    }
    let load =
        crate::experiments::load_dir(dir).map_err(|e| anyhow::anyhow!("[{}] {e}", e.code()))?;
    let mut issues = load.issues.clone();
    let compiled = if load.has_errors() {
        None
    } else {
        match Experiment::compile_all(&load.experiments, flags) {
            Ok(list) => {
                issues.extend(crate::experiments::validate(&load.experiments, flags));
                Some(list)
            }
            Err(found) => {
                issues.extend(found);
                None
            }
        }
    };
    let Some(list) = compiled else {
        anyhow::bail!(
            "the experiments in {} have errors:\n{}",
            dir.display(),
            crate::flow::validate::format_human(&issues)
        );
    };
    log_issues(&issues);
    tracing::info!(dir = %dir.display(), experiments = list.len(), "experiments loaded");
    Ok(Experiments::new(list))
}

/// The flag directory's flags. Problems are logged; a flag with an error
/// is served as `PARSE_ERROR` (there is no earlier set to fall back on).
fn load_flags(config: &ServeConfig) -> anyhow::Result<FlagStore> {
    let dir = &config.flags;
    if !dir.exists() {
        tracing::info!(dir = %dir.display(), "no flag directory; serving no flags");
        return Ok(FlagStore::new(flags::FlagSet::empty()));
    }
    let load =
        flags::load_dir(dir).with_context(|| format!("loading flags from {}", dir.display()))?;
    log_issues(&load.issues);
    tracing::info!(dir = %dir.display(), flags = load.set.len(), "flags loaded");
    Ok(FlagStore::new(load.set))
}

fn log_issues(issues: &[crate::flow::validate::Issue]) {
    for issue in issues {
        match issue.severity {
            Severity::Error => {
                tracing::error!(file = %issue.file, code = %issue.code, path = %issue.path, "{}", issue.message)
            }
            Severity::Warning => {
                tracing::warn!(file = %issue.file, code = %issue.code, path = %issue.path, "{}", issue.message)
            }
        }
    }
}

/// Watches the flag directory (when there is one); a burst of events is one
/// reload, and a load with errors leaves the last good set serving.
fn spawn_flag_watcher(baton: Baton, store: FlagStore, dir: PathBuf) -> anyhow::Result<()> {
    use notify::{RecursiveMode, Watcher};
    if !dir.is_dir() {
        tracing::info!(dir = %dir.display(), "no flag directory to watch");
        return Ok(());
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if res.is_ok() {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        let _watcher = watcher; // dropped with the task
        while rx.recv().await.is_some() {
            tokio::time::sleep(Duration::from_millis(150)).await;
            while rx.try_recv().is_ok() {}
            let reloaded = {
                let (store, dir) = (store.clone(), dir.clone());
                tokio::task::spawn_blocking(move || flags::reload(&store, &dir)).await
            };
            match reloaded {
                Ok(Ok(reload)) => {
                    log_issues(&reload.issues);
                    if reload.swapped {
                        tracing::info!(flags = reload.flags, "flags reloaded");
                        if let Err(e) = baton.record_files("flags", &dir).await {
                            tracing::error!(error = %e, "recording the flag files' versions failed");
                        }
                    } else {
                        tracing::error!("flag files have errors; the last good flags keep serving");
                    }
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "reloading flags failed; the last good flags keep serving")
                }
                Err(e) => tracing::error!(error = %e, "flag reload task failed"),
            }
        }
    });
    Ok(())
}

/// A database URL without its password, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

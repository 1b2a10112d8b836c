//! Events out: webhooks and a NATS JetStream stream that receive the event
//! feed ([`crate::store::feed`]) at least once and in order. Each sink has
//! its place in the feed in the store and is served by one replica at a
//! time (a lease). A webhook batch is POSTed signed with HMAC-SHA256,
//! retried with exponential backoff, and when its retries run out it
//! becomes a dead letter an admin can replay while the webhook moves on.
//! JetStream gets one message per event with the feed cursor as its
//! `Nats-Msg-Id` (so a retried publish is stored once), and is retried
//! until NATS takes it: an outage delays, never loses. A receiver that is
//! down holds up only its own events, never a session.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::codes::Code;
use crate::store::feed::{FeedEvent, MAX_FEED_PAGE};
use crate::store::sinks::DeadLetter;
use crate::store::{Store, StoreError};

/// The header carrying `t=<unix ms>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
pub const SIGNATURE_HEADER: &str = "x-baton-signature";
/// The same for every attempt (and the replay) of one batch.
pub const DELIVERY_HEADER: &str = "x-baton-delivery";
/// How long a replica holds a webhook before another may take it over.
const LEASE: Duration = Duration::from_secs(30);
/// How often an idle webhook looks for new events.
const POLL: Duration = Duration::from_millis(250);
/// How long JetStream has to store a published event.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// Most webhooks one file lists.
const MAX_WEBHOOKS: usize = 32;

/// One configured webhook.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub name: String,
    pub url: reqwest::Url,
    secret: String,
    /// Only these event kinds are sent (all when `None`); the others are
    /// passed over.
    pub kinds: Option<HashSet<String>>,
    /// Start at the first event of the feed rather than at the newest one
    /// when first configured.
    pub from_start: bool,
    pub batch: i64,
    pub max_attempts: u32,
    pub retry_delay: Duration,
    pub max_retry_delay: Duration,
    pub timeout: Duration,
}

/// The JetStream stream the feed is published to.
#[derive(Debug, Clone)]
pub struct Nats {
    pub url: String,
    /// Events go to `<subject>.<flow>.<kind>`.
    pub subject: String,
    /// Created (with `<subject>.>`) when missing.
    pub stream: String,
    pub from_start: bool,
}

/// The name NATS has among the sinks (its row in the store).
pub const NATS_SINK: &str = "nats";

/// Where a sink sends events.
enum Target {
    Webhook(Webhook),
    Nats {
        config: Nats,
        js: tokio::sync::OnceCell<async_nats::jetstream::Context>,
    },
}

impl Target {
    fn name(&self) -> &str {
        match self {
            Target::Webhook(w) => &w.name,
            Target::Nats { .. } => NATS_SINK,
        }
    }

    fn starts_at_first_event(&self) -> bool {
        match self {
            Target::Webhook(w) => w.from_start,
            Target::Nats { config, .. } => config.from_start,
        }
    }

    fn batch(&self) -> i64 {
        match self {
            Target::Webhook(w) => w.batch,
            Target::Nats { .. } => 100,
        }
    }

    fn wants(&self, kind: &str) -> bool {
        match self {
            Target::Webhook(w) => w.kinds.as_ref().is_none_or(|k| k.contains(kind)),
            Target::Nats { .. } => true,
        }
    }
}

#[derive(Debug, Error)]
pub enum SinkError {
    #[error("{path}: {why}")]
    FileInvalid { path: String, why: String },
    #[error("no dead letter `{id}`")]
    DeadLetterNotFound { id: String },
    #[error("webhook `{name}` is not configured on this server")]
    NotConfigured { name: String },
    #[error("webhook `{name}` refused the replay: {why}")]
    DeliveryFailed { name: String, why: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SinkError {
    pub fn code(&self) -> Code {
        match self {
            SinkError::FileInvalid { .. } => Code::WebhooksFileInvalid,
            SinkError::DeadLetterNotFound { .. } => Code::DeadLetterNotFound,
            SinkError::NotConfigured { .. } => Code::SinkNotConfigured,
            SinkError::DeliveryFailed { .. } => Code::SinkDeliveryFailed,
            SinkError::Store(e) => e.code(),
        }
    }

    pub fn hint(&self) -> Option<String> {
        match self {
            SinkError::Store(e) => e.hint(),
            _ => Some(self.code().hint().to_owned()),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    webhooks: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    url: String,
    /// The environment variable holding the signing secret.
    secret_env: String,
    kinds: Option<Vec<String>>,
    #[serde(default)]
    from: From,
    batch: Option<i64>,
    max_attempts: Option<u32>,
    retry_delay: Option<String>,
    max_retry_delay: Option<String>,
    timeout: Option<String>,
}

#[derive(Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum From {
    #[default]
    Now,
    Start,
}

/// Reads a `--webhooks` file; `env` looks up the secrets.
pub fn load(path: &Path, env: impl Fn(&str) -> Option<String>) -> Result<Vec<Webhook>, SinkError> {
    let fail = |why: String| SinkError::FileInvalid {
        path: path.display().to_string(),
        why,
    };
    const MAX: u64 = 1024 * 1024;
    let value = crate::document::read(path, MAX).map_err(|e| fail(e.describe(MAX)))?;
    let file: File = serde_json::from_value(value).map_err(|e| fail(e.to_string()))?;
    if file.webhooks.len() > MAX_WEBHOOKS {
        return Err(fail(format!(
            "{} webhooks; at most {MAX_WEBHOOKS}",
            file.webhooks.len()
        )));
    }
    let mut names = HashSet::new();
    let duration = |name: &str, field: &str, v: Option<&str>, default: Duration| {
        v.map_or(Ok(default), |v| {
            humantime::parse_duration(v.trim()).map_err(|e| {
                fail(format!(
                    "webhook `{name}`: {field} `{v}` is not a duration ({e}); e.g. 500ms, 30s"
                ))
            })
        })
    };
    file.webhooks
        .into_iter()
        .map(|e| {
            let name = e.name;
            let ok_name = !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
            if !ok_name {
                return Err(fail(format!(
                    "webhook name `{name}`: use 1–64 of a-z, 0-9, `-` and `_`"
                )));
            }
            if !names.insert(name.clone()) {
                return Err(fail(format!("webhook `{name}` is listed twice")));
            }
            let url = reqwest::Url::parse(&e.url)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
                .ok_or_else(|| {
                    fail(format!(
                        "webhook `{name}`: url `{}` is not an http(s) URL",
                        e.url
                    ))
                })?;
            let secret = env(&e.secret_env)
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    fail(format!(
                        "webhook `{name}`: the environment variable `{}` (secret_env) is not set",
                        e.secret_env
                    ))
                })?;
            let batch = e.batch.unwrap_or(100);
            if !(1..=MAX_FEED_PAGE).contains(&batch) {
                return Err(fail(format!(
                    "webhook `{name}`: batch {batch} is outside 1–1000"
                )));
            }
            let max_attempts = e.max_attempts.unwrap_or(8);
            if !(1..=100).contains(&max_attempts) {
                return Err(fail(format!(
                    "webhook `{name}`: max_attempts {max_attempts} is outside 1–100"
                )));
            }
            Ok(Webhook {
                retry_delay: duration(
                    &name,
                    "retry_delay",
                    e.retry_delay.as_deref(),
                    Duration::from_millis(500),
                )?,
                max_retry_delay: duration(
                    &name,
                    "max_retry_delay",
                    e.max_retry_delay.as_deref(),
                    Duration::from_secs(60),
                )?,
                timeout: duration(
                    &name,
                    "timeout",
                    e.timeout.as_deref(),
                    Duration::from_secs(10),
                )?,
                name,
                url,
                secret,
                kinds: e.kinds.map(|k| k.into_iter().collect()),
                from_start: e.from == From::Start,
                batch,
                max_attempts,
            })
        })
        .collect()
}

/// `t=<ms>,v1=<hex>`: HMAC-SHA256 with the webhook's secret over
/// `<ms>.<body>`, so a receiver can check both who sent it and when.
pub fn signature(secret: &str, at_ms: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(format!("{at_ms}.").as_bytes());
    mac.update(body.as_bytes());
    format!("t={at_ms},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The sinks of this server.
#[derive(Clone)]
pub struct Sinks {
    targets: Arc<Vec<Arc<Target>>>,
    store: Store,
    client: reqwest::Client,
    worker: String,
    /// Until when this replica holds each sink's lease, as last written.
    held: Arc<dashmap::DashMap<String, i64>>,
}

impl Sinks {
    pub fn new(hooks: Vec<Webhook>, nats: Option<Nats>, store: Store, worker: &str) -> Sinks {
        let mut targets: Vec<Arc<Target>> = hooks
            .into_iter()
            .map(|h| Arc::new(Target::Webhook(h)))
            .collect();
        if let Some(config) = nats {
            targets.push(Arc::new(Target::Nats {
                config,
                js: tokio::sync::OnceCell::new(),
            }));
        }
        Sinks {
            targets: Arc::new(targets),
            store,
            client: reqwest::Client::new(),
            worker: worker.to_owned(),
            held: Arc::default(),
        }
    }

    pub fn names(&self) -> Vec<String> {
        self.targets.iter().map(|t| t.name().to_owned()).collect()
    }

    /// Delivers to every sink until `shutdown`, then gives up the sinks'
    /// leases, so another replica (or this one, restarted) delivers at
    /// once rather than when they run out. A batch cut short is delivered
    /// again by the next holder (at least once).
    pub fn spawn(&self, shutdown: CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
        self.targets
            .iter()
            .map(|target| {
                let (sinks, target, shutdown) = (self.clone(), target.clone(), shutdown.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = sinks.run(&target) => {}
                    }
                    let name = target.name();
                    if sinks.held.remove(name).is_some()
                        && let Err(e) = sinks.store.release_sink(name, &sinks.worker).await
                    {
                        tracing::warn!(sink = %name, error = %e, "the sink's lease was not given up at shutdown; another replica takes over when it runs out");
                    }
                })
            })
            .collect()
    }

    async fn run(&self, target: &Target) {
        loop {
            match self.step(target).await {
                Ok(true) => {}
                Ok(false) => tokio::time::sleep(POLL).await,
                Err(e) => {
                    tracing::warn!(sink = %target.name(), code = %e.code(), error = %e, "event delivery stalled; trying again");
                    tokio::time::sleep(POLL * 4).await;
                }
            }
        }
    }

    /// One batch: `Ok(true)` when events were handled, `Ok(false)` when
    /// there were none (or another replica holds the sink).
    async fn step(&self, target: &Target) -> Result<bool, SinkError> {
        let name = target.name();
        let now = now_ms();
        if !self.claim(name, now).await? {
            return Ok(false);
        }
        let state = self.store.sink_state(name).await?;
        let cursor = match state.and_then(|s| s.cursor) {
            Some(c) => c,
            None => {
                let start = if target.starts_at_first_event() {
                    String::new()
                } else {
                    self.store.event_feed_end().await?.unwrap_or_default()
                };
                self.store
                    .advance_sink(name, &self.worker, &start, 0, now)
                    .await?;
                start
            }
        };
        let after = (!cursor.is_empty()).then_some(cursor.as_str());
        let events = self.store.event_feed(after, target.batch()).await?;
        let Some(last) = events.last().map(|e| e.cursor.clone()) else {
            return Ok(false);
        };
        let chosen: Vec<&FeedEvent> = events.iter().filter(|e| target.wants(&e.kind)).collect();
        if !chosen.is_empty() {
            let delivered = match target {
                Target::Webhook(hook) => self.to_webhook(hook, &chosen, &last).await?,
                Target::Nats { config, js } => self.to_nats(config, js, &chosen).await,
            };
            if !delivered {
                return Ok(true);
            }
        }
        self.store
            .advance_sink(name, &self.worker, &last, chosen.len() as i64, now_ms())
            .await?;
        Ok(true)
    }

    /// One batch to a webhook, or to the dead letters; `false` when the
    /// lease was lost meanwhile (another replica goes on).
    async fn to_webhook(
        &self,
        hook: &Webhook,
        chosen: &[&FeedEvent],
        last: &str,
    ) -> Result<bool, SinkError> {
        let body = json!({
            "webhook": hook.name,
            "events": chosen.iter().map(|e| event_json(e)).collect::<Vec<_>>(),
        })
        .to_string();
        let delivery = uuid::Uuid::now_v7().to_string();
        match self.deliver(hook, &body, &delivery).await {
            Delivered::Yes => {
                crate::telemetry::SINK_EVENTS.add(&[&hook.name, "delivered"], chosen.len() as u64);
            }
            Delivered::LeaseLost => return Ok(false),
            Delivered::No { attempts, error } => {
                tracing::warn!(webhook = %hook.name, attempts, %error, "webhook refused a batch until its retries ran out; it is a dead letter now");
                self.store
                    .add_dead_letter(&DeadLetter {
                        id: delivery,
                        sink: hook.name.clone(),
                        body,
                        events: chosen.len() as i32,
                        first_cursor: chosen[0].cursor.clone(),
                        last_cursor: last.to_owned(),
                        attempts: attempts as i32,
                        error,
                        created_at: now_ms(),
                        replayed_at: None,
                    })
                    .await?;
                crate::telemetry::SINK_EVENTS
                    .add(&[&hook.name, "dead_lettered"], chosen.len() as u64);
            }
        }
        Ok(true)
    }

    /// Publishes every event and waits for JetStream to store each, trying
    /// again (with backoff, keeping the lease) until it does; `false` when
    /// the lease was lost meanwhile.
    async fn to_nats(
        &self,
        config: &Nats,
        js: &tokio::sync::OnceCell<async_nats::jetstream::Context>,
        chosen: &[&FeedEvent],
    ) -> bool {
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(5))
            .without_max_times()
            .with_jitter()
            .build();
        loop {
            match publish(config, js, chosen).await {
                Ok(()) => {
                    crate::telemetry::SINK_EVENTS
                        .add(&[NATS_SINK, "delivered"], chosen.len() as u64);
                    return true;
                }
                Err(e) => {
                    tracing::warn!(stream = %config.stream, error = %e, "publishing events to NATS failed; trying again");
                }
            }
            tokio::time::sleep(delays.next().unwrap_or(Duration::from_secs(5))).await;
            if !matches!(self.claim(NATS_SINK, now_ms()).await, Ok(true)) {
                return false;
            }
        }
    }

    /// Holds the sink's lease: renewed in the store only once half of it
    /// has passed, so an idle sink costs a read per poll, not a write.
    async fn claim(&self, sink: &str, now: i64) -> Result<bool, StoreError> {
        let lease = LEASE.as_millis() as i64;
        if self
            .held
            .get(sink)
            .is_some_and(|until| now < *until - lease / 2)
        {
            return Ok(true);
        }
        let held = self
            .store
            .claim_sink(sink, &self.worker, now, now + lease)
            .await?;
        if held {
            self.held.insert(sink.to_owned(), now + lease);
        } else {
            self.held.remove(sink);
        }
        Ok(held)
    }

    /// POSTs `body` until it is taken or the attempts run out, keeping the
    /// lease meanwhile.
    async fn deliver(&self, hook: &Webhook, body: &str, delivery: &str) -> Delivered {
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(hook.retry_delay)
            .with_max_delay(hook.max_retry_delay)
            .with_max_times(hook.max_attempts as usize)
            .with_jitter()
            .build();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match self.post(hook, body, delivery).await {
                Ok(()) => return Delivered::Yes,
                Err(e) => e,
            };
            if attempt >= hook.max_attempts {
                return Delivered::No {
                    attempts: attempt,
                    error,
                };
            }
            tokio::time::sleep(delays.next().unwrap_or(hook.max_retry_delay)).await;
            match self.claim(&hook.name, now_ms()).await {
                Ok(true) => {}
                Ok(false) => return Delivered::LeaseLost,
                Err(e) => {
                    tracing::warn!(webhook = %hook.name, error = %e, "renewing the webhook's lease failed");
                }
            }
        }
    }

    async fn post(&self, hook: &Webhook, body: &str, delivery: &str) -> Result<(), String> {
        let resp = self
            .client
            .post(hook.url.clone())
            .timeout(hook.timeout)
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, signature(&hook.secret, now_ms(), body))
            .header(DELIVERY_HEADER, delivery)
            .body(body.to_owned())
            .send()
            .await
            .map_err(|e| format!("no answer: {e}"))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", resp.status().as_u16()))
        }
    }

    /// Sends a dead letter again, once; marks it replayed when taken.
    pub async fn replay(&self, id: &str) -> Result<DeadLetter, SinkError> {
        let mut letter = self
            .store
            .dead_letter(id)
            .await?
            .ok_or_else(|| SinkError::DeadLetterNotFound { id: id.to_owned() })?;
        let hook = self
            .targets
            .iter()
            .find_map(|t| match t.as_ref() {
                Target::Webhook(h) if h.name == letter.sink => Some(h),
                _ => None,
            })
            .ok_or_else(|| SinkError::NotConfigured {
                name: letter.sink.clone(),
            })?;
        self.post(hook, &letter.body, &letter.id)
            .await
            .map_err(|why| SinkError::DeliveryFailed {
                name: hook.name.clone(),
                why,
            })?;
        let at = now_ms();
        self.store.dead_letter_replayed(id, at).await?;
        letter.replayed_at = Some(at);
        Ok(letter)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

enum Delivered {
    Yes,
    No { attempts: u32, error: String },
    LeaseLost,
}

/// One message per event, each with its cursor as `Nats-Msg-Id`; connects
/// (and makes the stream) on first use.
async fn publish(
    config: &Nats,
    js: &tokio::sync::OnceCell<async_nats::jetstream::Context>,
    events: &[&FeedEvent],
) -> Result<(), String> {
    let js = js
        .get_or_try_init(|| async {
            let mut js = crate::nats::connect(&config.url, "baton").await?;
            // A store acks in milliseconds; past this the publish is tried
            // again (deduplicated by its id), so an outage shows in the log.
            js.set_timeout(ACK_TIMEOUT);
            crate::nats::stream(&js, &config.stream, &config.subject).await?;
            Ok::<_, String>(js)
        })
        .await?;
    let mut acks = Vec::with_capacity(events.len());
    for e in events {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", e.cursor.as_str());
        let subject = format!("{}.{}.{}", config.subject, e.flow_id, e.kind);
        let ack = js
            .publish_with_headers(subject, headers, event_json(e).to_string().into())
            .await
            .map_err(|e| format!("publishing: {e}"))?;
        acks.push(ack);
    }
    for ack in acks {
        ack.await
            .map_err(|e| format!("waiting for JetStream to store it: {e}"))?;
    }
    Ok(())
}

/// An event as webhooks (and `eventFeed`) show it.
fn event_json(e: &FeedEvent) -> Value {
    json!({
        "cursor": e.cursor,
        "sessionId": e.session_id,
        "seq": e.seq,
        "kind": e.kind,
        "at": crate::engine::rfc3339(e.created_at),
        "flowId": e.flow_id,
        "flowVersion": e.flow_version,
        "userId": e.user_id,
        "payload": e.payload,
    })
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_time_and_body() {
        // RFC 4231-style check against an independent computation.
        let sig = signature("key", 1700000000000, "{}");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key").unwrap();
        mac.update(b"1700000000000.{}");
        let want = hex::encode(mac.finalize().into_bytes());
        assert_eq!(sig, format!("t=1700000000000,v1={want}"));
        assert_ne!(signature("other", 1700000000000, "{}"), sig);
        assert_ne!(signature("key", 1700000000001, "{}"), sig);
    }

    #[test]
    fn a_bad_file_says_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hooks.yaml");
        let cases = [
            (
                "webhooks: [{name: A, url: 'http://x/', secret_env: S}]",
                "webhook name `A`",
            ),
            (
                "webhooks: [{name: a, url: 'ftp://x/', secret_env: S}]",
                "not an http(s) URL",
            ),
            (
                "webhooks: [{name: a, url: 'http://x/', secret_env: MISSING}]",
                "`MISSING`",
            ),
            (
                "webhooks: [{name: a, url: 'http://x/', secret_env: S, batch: 0}]",
                "batch 0",
            ),
            (
                "webhooks: [{name: a, url: 'http://x/', secret_env: S, retry_delay: soon}]",
                "retry_delay `soon`",
            ),
            (
                "webhooks: [{name: a, url: 'http://x/', secret_env: S}, {name: a, url: 'http://y/', secret_env: S}]",
                "twice",
            ),
            (
                "webhooks: [{name: a, url: 'http://x/', secret_env: S, colour: red}]",
                "colour",
            ),
        ];
        for (text, want) in cases {
            std::fs::write(&path, text).unwrap();
            let err = load(&path, |k| (k == "S").then(|| "s3cret".to_owned())).unwrap_err();
            assert_eq!(err.code(), Code::WebhooksFileInvalid);
            assert!(err.to_string().contains(want), "{text}: {err}");
        }
        std::fs::write(&path, "webhooks: [{name: ok, url: 'http://127.0.0.1:9/in', secret_env: S, kinds: [ended], from: start}]").unwrap();
        let hooks = load(&path, |k| (k == "S").then(|| "s3cret".to_owned())).unwrap();
        assert_eq!(hooks[0].name, "ok");
        assert!(hooks[0].from_start);
        assert_eq!(hooks[0].max_attempts, 8);
    }
}

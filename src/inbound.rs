//! Events that arrive from NATS JetStream: a durable pull consumer on
//! `<prefix>.>` turns each message into an event delivered to the `event`
//! steps waiting for it, exactly as `sendEvent` or `POST /events/{name}`
//! would.
//!
//! A message on `<prefix>.payment.settled` is the event `payment.settled`;
//! its body is the webhook's: `{"correlationKey": "…", "payload": {…}}`.
//! Delivery is at least once: a message is acknowledged only after its
//! event is stored and delivered, so a crash in between makes JetStream
//! send it again. The inbox keeps each message under its id (the
//! publisher's `Nats-Msg-Id`, else the stream sequence), so a redelivery
//! or a re-publish of the same id reaches a step once. Every replica
//! pulls from the same durable consumer, so each message goes to one.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::service::Baton;
use crate::service::steps::Received;

/// Where Baton reads events from.
#[derive(Debug, Clone)]
pub struct NatsEvents {
    pub url: String,
    /// Messages on `<subject>.<event name>` are events.
    pub subject: String,
    /// The stream, created with `<subject>.>` when missing.
    pub stream: String,
}

/// The durable consumer every replica shares.
pub const CONSUMER: &str = "baton-events";

/// How long JetStream waits for an ack before sending a message again;
/// longer than a delivery takes, which is a few store writes.
const ACK_WAIT: Duration = Duration::from_secs(30);

/// A message whose delivery failed on Baton's side (the store was down)
/// comes back after this.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// What a message turned into, as `baton_nats_events_total` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Kept,
    Duplicate,
    /// Not an event Baton can read; dropped for good (`+TERM`).
    Rejected,
    /// Baton could not store or deliver it; JetStream sends it again.
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Kept => "kept",
            Outcome::Duplicate => "duplicate",
            Outcome::Rejected => "rejected",
            Outcome::Failed => "failed",
        }
    }
}

/// An event read from a message, or why it cannot be one.
#[derive(Debug, PartialEq)]
pub struct Event {
    pub name: String,
    pub correlation: String,
    pub payload: Value,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Body {
    correlation_key: String,
    #[serde(default)]
    payload: Value,
}

/// Reads the event a message on `subject` carries, given the configured
/// prefix. The error says what is wrong, for the log.
pub fn parse(prefix: &str, subject: &str, body: &[u8]) -> Result<Event, String> {
    let name = subject
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('.'))
        .filter(|name| !name.is_empty())
        .ok_or_else(|| format!("subject `{subject}` is not `{prefix}.<event name>`"))?;
    let body: Body = serde_json::from_slice(body).map_err(|e| {
        format!("the body is not {{\"correlationKey\": \"…\", \"payload\": {{…}}}}: {e}")
    })?;
    Ok(Event {
        name: name.to_owned(),
        correlation: body.correlation_key,
        payload: body.payload,
    })
}

/// Whether one subject prefix takes in the other's subjects: two streams
/// cannot share a subject, and Baton would read its own feed as events.
pub fn overlaps(a: &str, b: &str) -> bool {
    let within = |inner: &str, outer: &str| {
        inner == outer
            || inner
                .strip_prefix(outer)
                .is_some_and(|r| r.starts_with('.'))
    };
    within(a, b) || within(b, a)
}

/// Consumes until `shutdown`. A lost connection or a missing stream is
/// logged and tried again; the server keeps serving meanwhile.
pub async fn run(baton: Baton, config: NatsEvents, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(500);
    loop {
        let consumed = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = consume(&baton, &config, &shutdown) => r,
        };
        match consumed {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, stream = %config.stream, "reading events from NATS failed; trying again");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

async fn consume(
    baton: &Baton,
    config: &NatsEvents,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    use async_nats::jetstream::consumer;
    let js = crate::nats::connect(&config.url, "baton-events").await?;
    let stream = crate::nats::stream(&js, &config.stream, &config.subject).await?;
    let consumer: consumer::PullConsumer = stream
        .get_or_create_consumer(
            CONSUMER,
            consumer::pull::Config {
                durable_name: Some(CONSUMER.into()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                filter_subject: format!("{}.>", config.subject),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| format!("consumer {CONSUMER} on {}: {e}", config.stream))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| format!("pulling from {}: {e}", config.stream))?;
    tracing::info!(stream = %config.stream, subject = %format!("{}.>", config.subject), "reading events from NATS");
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            m = messages.next() => m,
        };
        let message = match message {
            None => return Err("the consumer's message stream ended".into()),
            Some(Err(e)) => return Err(format!("pulling a message: {e}")),
            Some(Ok(m)) => m,
        };
        let outcome = handle(baton, &config.subject, &message).await;
        crate::telemetry::NATS_EVENTS.add(&[outcome.as_str()], 1);
        let ack = match outcome {
            Outcome::Failed => async_nats::jetstream::AckKind::Nak(Some(RETRY_AFTER)),
            Outcome::Rejected => async_nats::jetstream::AckKind::Term,
            Outcome::Delivered | Outcome::Kept | Outcome::Duplicate => {
                async_nats::jetstream::AckKind::Ack
            }
        };
        if let Err(e) = message.ack_with(ack).await {
            // Unacknowledged, it comes back after ACK_WAIT and is then a
            // duplicate, which the inbox answers.
            tracing::warn!(error = %e, subject = %message.subject, "acknowledging an event message failed");
        }
    }
}

async fn handle(baton: &Baton, prefix: &str, message: &async_nats::jetstream::Message) -> Outcome {
    let event = match parse(prefix, message.subject.as_str(), &message.payload) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(subject = %message.subject, error = %e, "dropped a NATS message that is not an event");
            return Outcome::Rejected;
        }
    };
    let id = match message
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Msg-Id"))
        .map(|v| v.as_str().to_owned())
    {
        Some(id) => format!("nats:{id}"),
        None => match message.info() {
            Ok(info) => format!("nats:{}:{}", info.stream, info.stream_sequence),
            Err(e) => {
                tracing::warn!(subject = %message.subject, error = %e, "a NATS message without a JetStream sequence");
                return Outcome::Rejected;
            }
        },
    };
    match baton
        .receive_event(&id, &event.name, &event.correlation, event.payload)
        .await
    {
        Ok(Received::Delivered(_)) => Outcome::Delivered,
        Ok(Received::Kept) => Outcome::Kept,
        Ok(Received::Duplicate) => Outcome::Duplicate,
        Err(e) if e.is_internal() => {
            tracing::error!(error = %e, code = %e.code(), event = %event.name, "delivering a NATS event failed; it comes again");
            Outcome::Failed
        }
        Err(e) => {
            tracing::warn!(error = %e, code = %e.code(), event = %event.name, "dropped a NATS event Baton refuses");
            Outcome::Rejected
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_subject_after_the_prefix_names_the_event() {
        let e = parse(
            "in",
            "in.payment.settled",
            br#"{"correlationKey":"o-1","payload":{"amount":3}}"#,
        )
        .unwrap();
        assert_eq!(
            e,
            Event {
                name: "payment.settled".into(),
                correlation: "o-1".into(),
                payload: json!({"amount": 3}),
            }
        );
    }

    #[test]
    fn prefixes_overlap_when_one_holds_the_others_subjects() {
        assert!(overlaps("baton.events", "baton.events"));
        assert!(overlaps("baton", "baton.events"));
        assert!(overlaps("baton.events.in", "baton.events"));
        assert!(!overlaps("baton.in", "baton.events"));
        assert!(!overlaps("baton.eventsx", "baton.events"));
    }

    #[test]
    fn a_message_that_is_not_an_event_says_why() {
        let body = br#"{"correlationKey":"o-1"}"#;
        assert!(
            parse("in", "in", body)
                .unwrap_err()
                .contains("`in.<event name>`")
        );
        assert!(parse("in", "inx.a", body).is_err());
        assert!(parse("in", "in.", body).is_err());
        let e = parse("in", "in.a", b"not json").unwrap_err();
        assert!(e.contains("correlationKey"), "{e}");
        let e = parse("in", "in.a", br#"{"correlation":"o-1"}"#).unwrap_err();
        assert!(e.contains("correlation"), "{e}");
        assert_eq!(parse("in", "in.a", body).unwrap().payload, Value::Null);
    }
}

//! The JetStream connection and stream that both directions use: the
//! event feed going out (`sinks`) and events coming in (`inbound`).

use std::time::Duration;

use async_nats::jetstream::{Context, stream::Stream};

/// How long JetStream remembers a message id, so that a publish tried
/// again is stored once.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Connects to the NATS server at `url` as `name`.
pub async fn connect(url: &str, name: &str) -> Result<Context, String> {
    let client = async_nats::ConnectOptions::new()
        .name(name)
        .connect(url)
        .await
        .map_err(|e| format!("connecting to {url}: {e}"))?;
    Ok(async_nats::jetstream::new(client))
}

/// The stream `name` on `<prefix>.>`, created when missing (an existing
/// one is used as it is).
pub async fn stream(js: &Context, name: &str, prefix: &str) -> Result<Stream, String> {
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: name.to_owned(),
        subjects: vec![format!("{prefix}.>")],
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    })
    .await
    .map_err(|e| format!("stream {name}: {e}"))
}

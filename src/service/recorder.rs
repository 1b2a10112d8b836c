//! `--record NAME`: every session that ends records what its backend steps
//! got into its flow's mocks as scenario `NAME`, saved as a draft (see
//! [`Baton::record_scenario`]). It follows the event feed, so it sees the
//! sessions of every replica, and a replica that records a session another
//! one already recorded finds the same draft and saves nothing new.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Baton, ServiceError};

/// How often the feed is read when it has nothing new.
const POLL: Duration = Duration::from_millis(500);
/// Events read at once.
const PAGE: i64 = 200;
/// The author of recorded drafts.
pub const RECORDER: &str = "recorder";

impl Baton {
    /// Records every session that ends from now on into `scenario`, until
    /// `shutdown`.
    pub async fn run_recorder(&self, scenario: String, shutdown: CancellationToken) {
        let mut cursor = loop {
            match self.store().event_feed_end().await {
                Ok(c) => break c,
                Err(e) => tracing::warn!(error = %e, "--record: reading the event feed failed"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(POLL) => {}
            }
        };
        loop {
            let page = match self.store().event_feed(cursor.as_deref(), PAGE).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "--record: reading the event feed failed");
                    Vec::new()
                }
            };
            for event in &page {
                cursor = Some(event.cursor.clone());
                // A preview's steps answered from mocks: nothing real to keep.
                if event.kind != "ended" || event.payload["preview"] == true {
                    continue;
                }
                self.record_ended(&event.session_id, &scenario).await;
            }
            if page.len() < PAGE as usize {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(POLL) => {}
                }
            }
        }
    }

    async fn record_ended(&self, session_id: &str, scenario: &str) {
        match self.record_scenario(RECORDER, session_id, scenario).await {
            Ok(super::lifecycle::SaveDraft::Saved {
                version, created, ..
            }) => tracing::info!(
                session = session_id,
                flow = %version.record.flow_id,
                version = version.record.version,
                created,
                scenario,
                "--record: recorded the session's answers as a draft"
            ),
            Ok(super::lifecycle::SaveDraft::Invalid { issues }) => tracing::warn!(
                session = session_id,
                scenario,
                issues = ?issues.iter().map(|i| i.code.as_str()).collect::<Vec<_>>(),
                "--record: the recorded flow does not validate; nothing saved"
            ),
            // A mock session, or one that ended before any step finished.
            Err(ServiceError::InvalidInput { message, .. }) => {
                tracing::debug!(session = session_id, %message, "--record: nothing to record")
            }
            Err(e) => {
                tracing::warn!(session = session_id, error = %e, "--record: recording failed")
            }
        }
    }
}

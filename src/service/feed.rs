//! The session event feed, read by consumers over `eventFeed` and by
//! `baton events tail`: every event of every session, resumable by cursor
//! (see [`crate::store::feed`]).

use super::funnel::AnalyticsError;
use super::{Baton, ServiceError};
use crate::store::feed::{FeedEvent, MAX_FEED_PAGE};

impl Baton {
    /// Up to `first` events after `after` (from the first without one).
    pub async fn event_feed(
        &self,
        after: Option<&str>,
        first: i64,
    ) -> Result<Vec<FeedEvent>, ServiceError> {
        if !(1..=MAX_FEED_PAGE).contains(&first) {
            return Err(ServiceError::Analytics(AnalyticsError::FeedLimit { first }));
        }
        Ok(self.store().event_feed(after, first).await?)
    }

    /// The cursor after the newest event now, for a reader that wants only
    /// what comes next.
    pub async fn event_feed_end(&self) -> Result<Option<String>, ServiceError> {
        Ok(self.store().event_feed_end().await?)
    }
}

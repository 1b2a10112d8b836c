//! In-process fan-out of session updates to `sessionUpdated` subscribers.
//! One broadcast channel per watched session, dropped with its last
//! subscriber.

use dashmap::DashMap;
use tokio::sync::broadcast;

use super::SessionView;

const CAPACITY: usize = 16;

#[derive(Default)]
pub struct Hub {
    channels: DashMap<String, broadcast::Sender<SessionView>>,
}

impl Hub {
    pub fn subscribe(&self, session_id: &str) -> broadcast::Receiver<SessionView> {
        self.channels
            .entry(session_id.to_string())
            .or_insert_with(|| broadcast::channel(CAPACITY).0)
            .subscribe()
    }

    /// Whether anyone here subscribed to this session.
    pub fn is_watched(&self, session_id: &str) -> bool {
        self.channels
            .get(session_id)
            .is_some_and(|tx| tx.receiver_count() > 0)
    }

    pub fn publish(&self, view: &SessionView) {
        let mut gone = false;
        if let Some(tx) = self.channels.get(&view.id) {
            gone = tx.send(view.clone()).is_err();
        }
        if gone {
            self.channels
                .remove_if(&view.id, |_, tx| tx.receiver_count() == 0);
        }
    }
}

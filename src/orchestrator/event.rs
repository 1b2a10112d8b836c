//! Running an `event` step. A real event arrives through the API (or was
//! waiting in the inbox), so its task is claimed only once its timeout
//! passed; a mock session's arrives, or times out, as the mock's case for
//! the session's scenario says.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Claimed, Runner, timed_out};
use crate::engine::{StepKind, StepResult};
use crate::flow::steps::EventStep;
use crate::service::ServiceError;

impl Runner for EventStep {
    async fn run(&self, claimed: Claimed<'_>) -> Result<(), ServiceError> {
        let clock = &claimed.shared.config.clock;
        if !claimed.mock() {
            return claimed
                .finish(StepKind::Event, timed_out(clock.now_ms()))
                .await;
        }
        let case = self.mock.as_ref().map(|m| m.case(claimed.scenario()));
        let latency = case.as_ref().map_or(0, |c| c.latency_ms);
        clock.sleep(Duration::from_millis(latency)).await;
        let received_at = crate::engine::rfc3339(clock.now_ms());
        let result = match case {
            Some(c) if c.timeout => timed_out(clock.now_ms()),
            Some(c) => StepResult {
                outcome: "ok".into(),
                output: json!({ "payload": c.payload, "received_at": received_at }),
            },
            None => StepResult {
                outcome: "ok".into(),
                output: json!({ "payload": Value::Null, "received_at": received_at }),
            },
        };
        claimed.finish(StepKind::Event, result).await
    }
}

//! Running a `wait` step: its task falls due when the timer ends, so a
//! claimed one has ended (a mock session's after the mock's latency).

use std::time::Duration;

use serde_json::json;

use super::{Claimed, Runner};
use crate::engine::{StepKind, StepResult};
use crate::flow::steps::WaitStep;
use crate::service::ServiceError;

impl Runner for WaitStep {
    async fn run(&self, claimed: Claimed<'_>) -> Result<(), ServiceError> {
        let clock = &claimed.shared.config.clock;
        if claimed.mock() {
            let latency = self.mock.as_ref().map_or(0, |m| m.latency_ms);
            clock.sleep(Duration::from_millis(latency)).await;
        }
        let result = StepResult {
            outcome: "ok".into(),
            output: json!({ "waited_until": crate::engine::rfc3339(clock.now_ms()) }),
        };
        claimed.finish(StepKind::Wait, result).await
    }
}

//! Running an `approval` step. A reviewer decides a real one through the
//! API, so its task is claimed only once its deadline passed; a mock
//! session's is decided by the mock's case for the session's scenario.

use std::time::Duration;

use serde_json::json;

use super::{Claimed, Runner, timed_out};
use crate::engine::{StepKind, StepResult};
use crate::flow::steps::{ApprovalStep, DecisionMockCase};
use crate::service::ServiceError;

impl Runner for ApprovalStep {
    async fn run(&self, claimed: Claimed<'_>) -> Result<(), ServiceError> {
        let clock = &claimed.shared.config.clock;
        if !claimed.mock() {
            return claimed
                .finish(StepKind::Approval, timed_out(clock.now_ms()))
                .await;
        }
        let case = match &self.mock {
            Some(m) => m.case(claimed.scenario()),
            // No mock declared: the first outcome, like a reviewer who
            // approves everything.
            None => DecisionMockCase {
                outcome: self.outcomes.keys().next().cloned().unwrap_or_default(),
                values: Default::default(),
                comment: None,
                latency_ms: 0,
            },
        };
        clock.sleep(Duration::from_millis(case.latency_ms)).await;
        let result = StepResult {
            output: json!({
                "outcome": case.outcome,
                "values": case.values,
                "comment": case.comment,
                "reviewer": "mock",
                "decided_at": clock.now_ms(),
            }),
            outcome: case.outcome,
        };
        claimed.finish(StepKind::Approval, result).await
    }
}

//! Recording mocks: what a session's backend steps really answered (their
//! outputs at `steps.<id>`, secrets already redacted when they were
//! stored) written into the flow's mocks as a named scenario, so frontend
//! developers replay real data with `mock: {scenario: …}`. Pure: a flow
//! definition and a session's `steps` in, the changed definition out.

use serde_json::{Map, Value};

use super::model::FlowDef;
use super::steps::{
    ApprovalStep, DecisionMock, DecisionMockCase, EventMock, EventMockCase, EventStep, HttpMock,
    HttpMockCase, HttpStep, LlmMock, LlmMockCase, LlmStep, MockFailure, ParallelStep, Verdict,
};

/// Writes scenario `name` into the mock of every step `steps` holds an
/// output for (a step the session did not reach keeps its mocks; an
/// existing case of that name is replaced). Returns the ids of the steps
/// recorded, in flow order.
pub fn record_scenario(def: &mut FlowDef, steps: &Map<String, Value>, name: &str) -> Vec<String> {
    let mut recorded = Vec::new();
    for node in &mut def.nodes {
        let id = node.id().to_owned();
        let Some(out) = steps.get(&id) else { continue };
        if node.recorder().is_some_and(|r| r.record(out, name)) {
            recorded.push(id);
        }
    }
    recorded
}

/// A step whose answers can become a mock case: `record` writes its output
/// `out` as case `name` (the step's default mock too, when it has none)
/// and says whether there was anything to write.
pub trait Record {
    fn record(&mut self, out: &Value, name: &str) -> bool;
}

impl Record for HttpStep {
    fn record(&mut self, out: &Value, name: &str) -> bool {
        let case = http_case(out);
        let mock = self.mock.get_or_insert_with(|| default_http(&case));
        mock.scenarios.insert(name.to_owned(), case);
        true
    }
}

impl Record for ParallelStep {
    fn record(&mut self, out: &Value, name: &str) -> bool {
        let mut any = false;
        for b in &mut self.branches {
            if let Some(out) = out.get(&b.id) {
                let case = http_case(out);
                let mock = b.mock.get_or_insert_with(|| default_http(&case));
                mock.scenarios.insert(name.to_owned(), case);
                any = true;
            }
        }
        any
    }
}

impl Record for LlmStep {
    fn record(&mut self, out: &Value, name: &str) -> bool {
        let case = llm_case(out);
        let mock = self.mock.get_or_insert_with(|| LlmMock {
            answer: case.answer.clone(),
            verdict: case.verdict,
            fail: case.fail,
            latency_ms: 0,
            scenarios: Default::default(),
        });
        mock.scenarios.insert(name.to_owned(), case);
        true
    }
}

impl Record for ApprovalStep {
    fn record(&mut self, out: &Value, name: &str) -> bool {
        // A deadline that passed is not an outcome a mock can give.
        let Some(outcome) = out["outcome"].as_str() else {
            return false;
        };
        let case = DecisionMockCase {
            outcome: outcome.to_owned(),
            values: out["values"].as_object().cloned().unwrap_or_default(),
            comment: out["comment"].as_str().map(str::to_owned),
            latency_ms: 0,
        };
        let mock = self.mock.get_or_insert_with(|| DecisionMock {
            outcome: case.outcome.clone(),
            values: case.values.clone(),
            comment: case.comment.clone(),
            latency_ms: 0,
            scenarios: Default::default(),
        });
        mock.scenarios.insert(name.to_owned(), case);
        true
    }
}

impl Record for EventStep {
    fn record(&mut self, out: &Value, name: &str) -> bool {
        let case = EventMockCase {
            payload: out["payload"].clone(),
            timeout: out["timed_out"] == Value::Bool(true),
            latency_ms: 0,
        };
        let mock = self.mock.get_or_insert_with(|| EventMock {
            payload: case.payload.clone(),
            timeout: case.timeout,
            latency_ms: 0,
            scenarios: Default::default(),
        });
        mock.scenarios.insert(name.to_owned(), case);
        true
    }
}

/// An `http` output `{status, ok, body}` as a mock case; a call that got
/// no answer (`status: null`) as the failure it was.
fn http_case(out: &Value) -> HttpMockCase {
    let status = out["status"].as_u64().and_then(|s| u16::try_from(s).ok());
    let fail = match status {
        Some(_) => None,
        None if out["error"].as_str().is_some_and(|e| e.contains("timeout")) => {
            Some(MockFailure::Timeout)
        }
        None => Some(MockFailure::Connect),
    };
    HttpMockCase {
        status: status.unwrap_or(200),
        body: out["body"].clone(),
        fail,
        latency_ms: 0,
    }
}

fn default_http(case: &HttpMockCase) -> HttpMock {
    HttpMock {
        status: case.status,
        body: case.body.clone(),
        fail: case.fail,
        latency_ms: 0,
        scenarios: Default::default(),
    }
}

/// An `llm` output as a mock case: its answer and the judge's verdict, or
/// (when it ended without a valid answer) a failed call.
fn llm_case(out: &Value) -> LlmMockCase {
    let verdict = serde_json::from_value::<Verdict>(out["judge"]["verdict"].clone()).ok();
    let ok = out["ok"] == Value::Bool(true);
    LlmMockCase {
        answer: if ok {
            out["answer"].clone()
        } else {
            Value::Null
        },
        verdict,
        fail: (!ok).then_some(MockFailure::Connect),
        latency_ms: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::model::NodeDef;
    use serde_json::json;

    fn flow() -> FlowDef {
        serde_saphyr::from_str(
            r#"
id: t
start: a
nodes:
  - { id: a, kind: http, url: "http://127.0.0.1/x", next: b, mock: { body: { v: 1 } } }
  - id: b
    kind: parallel
    branches:
      - { id: left, url: "http://127.0.0.1/x" }
      - { id: right, url: "http://127.0.0.1/y" }
    next: c
  - { id: c, kind: approval, role: r, outcomes: { done: d } }
  - { id: d, kind: event, event: e, correlation: k, next: z }
  - { id: z, kind: end }
"#,
        )
        .unwrap()
    }

    #[test]
    fn each_reached_step_gets_the_scenario() {
        let mut def = flow();
        let steps = json!({
            "a": { "status": 201, "ok": true, "body": { "v": 7 }, "attempts": 1 },
            "b": { "left": { "status": 200, "ok": true, "body": "hi" },
                   "right": { "status": null, "ok": false, "error": "connect: refused" } },
            "c": { "outcome": "done", "values": { "rate": 5 }, "comment": "ok", "reviewer": "r-1" },
        });
        let recorded = record_scenario(&mut def, steps.as_object().unwrap(), "real");
        assert_eq!(recorded, ["a", "b", "c"]);
        let json = serde_json::to_value(&def).unwrap();
        let a = &json["nodes"][0]["mock"];
        assert_eq!(a["body"], json!({ "v": 1 }), "the default case stays");
        assert_eq!(
            a["scenarios"]["real"],
            json!({ "status": 201, "body": { "v": 7 }, "latency_ms": 0 })
        );
        let b = &json["nodes"][1]["branches"];
        assert_eq!(b[0]["mock"]["scenarios"]["real"]["body"], "hi");
        assert_eq!(b[1]["mock"]["scenarios"]["real"]["fail"], "connect");
        assert_eq!(
            json["nodes"][2]["mock"]["scenarios"]["real"]["values"],
            json!({ "rate": 5 })
        );
        assert!(
            json["nodes"][3].get("mock").is_none(),
            "the event was not reached"
        );
        assert!(def.mock_scenarios().contains("real"));
    }

    #[test]
    fn recording_again_replaces_the_case() {
        let mut def = flow();
        let first = json!({ "a": { "status": 200, "ok": true, "body": 1 } });
        let second = json!({ "a": { "status": 500, "ok": false, "body": "down" } });
        record_scenario(&mut def, first.as_object().unwrap(), "s");
        record_scenario(&mut def, second.as_object().unwrap(), "s");
        let NodeDef::Http(h) = &def.nodes[0] else {
            panic!()
        };
        let case = &h.mock.as_ref().unwrap().scenarios["s"];
        assert_eq!((case.status, &case.body), (500, &json!("down")));
    }
}

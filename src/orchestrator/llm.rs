//! Running an `llm` step: ask the server's OpenAI-compatible endpoint
//! (`POST <--llm-url>/chat/completions`) for JSON, check it against the
//! step's schema, send it back with the validation errors until it
//! matches or the repairs run out, then let a judge approve it. Each call
//! is an `http` call with the step's policy, so retries, timeouts, the
//! breaker, per-host limits and secrets redaction are the same; every
//! call's attempts are recorded with the result. A mock session answers
//! from the step's mock instead and makes no call.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use super::http::{Bookkeeping, Called, call, redact};
use super::{Claimed, Runner};
use crate::config::LlmResponseFormat;
use crate::engine::StepResult;
use crate::flow::compile::{CompiledCall, CompiledKind};
use crate::flow::steps::{LlmStep, MockFailure, Verdict};
use crate::service::ServiceError;
use crate::store::tasks::AttemptRecord;

/// Where the server's model calls go.
#[derive(Debug, Clone, Default)]
pub struct LlmConfig {
    /// Base URL of an OpenAI-compatible API, e.g. `http://127.0.0.1:11434/v1`.
    pub url: Option<String>,
    /// The model of steps that name none.
    pub model: Option<String>,
    /// The secret whose value is sent as the bearer key.
    pub key_secret: String,
    pub response_format: LlmResponseFormat,
    /// USD per million prompt and completion tokens, per model.
    pub prices: HashMap<String, (f64, f64)>,
}

impl LlmConfig {
    /// Parses `--llm-prices` entries, `MODEL=PROMPT/COMPLETION` in USD
    /// per million tokens.
    pub fn parse_prices(entries: &[String]) -> Result<HashMap<String, (f64, f64)>, String> {
        let mut out = HashMap::new();
        for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            let parsed = entry.split_once('=').and_then(|(model, prices)| {
                let (p, c) = prices.split_once('/')?;
                let (p, c) = (p.trim().parse::<f64>().ok()?, c.trim().parse::<f64>().ok()?);
                (!model.trim().is_empty() && p >= 0.0 && c >= 0.0 && p.is_finite() && c.is_finite())
                    .then(|| (model.trim().to_owned(), (p, c)))
            });
            let Some((model, prices)) = parsed else {
                return Err(format!(
                    "`{entry}` is not MODEL=PROMPT/COMPLETION (USD per million tokens)"
                ));
            };
            if out.insert(model.clone(), prices).is_some() {
                return Err(format!("model `{model}` is priced twice"));
            }
        }
        Ok(out)
    }
}

/// Tokens one step used, over all its calls.
#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    prompt: u64,
    completion: u64,
}

impl Usage {
    fn add(&mut self, body: &Value) {
        let n = |k: &str| body["usage"][k].as_u64().unwrap_or(0);
        self.prompt += n("prompt_tokens");
        self.completion += n("completion_tokens");
    }

    fn json(self) -> Value {
        json!({
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
        })
    }
}

/// The JSON in a model's reply: the whole text, or the inside of a
/// Markdown code fence around it.
fn answer_json(content: &str) -> Result<Value, String> {
    let text = content.trim();
    let inner = text
        .strip_prefix("```")
        .and_then(|rest| rest.strip_suffix("```"))
        .map(|rest| rest.split_once('\n').map_or(rest, |(_lang, body)| body))
        .unwrap_or(text);
    serde_json::from_str(inner.trim()).map_err(|e| format!("the answer is not JSON: {e}"))
}

/// Every way `answer` misses the schema, as `at <pointer>: <message>`.
fn schema_errors(schema: &jsonschema::Validator, answer: &Value) -> Vec<String> {
    schema
        .iter_errors(answer)
        .take(20)
        .map(|e| {
            let at = e.instance_path().to_string();
            format!("at `{}`: {e}", if at.is_empty() { "/" } else { &at })
        })
        .collect()
}

/// What the judge must answer.
fn verdict_of(content: &str) -> Result<(Verdict, String), String> {
    #[derive(serde::Deserialize)]
    struct Judged {
        verdict: Verdict,
        #[serde(default)]
        reason: String,
    }
    let value = answer_json(content)?;
    let j: Judged = serde_json::from_value(value).map_err(|e| {
        format!("the judge did not answer {{\"verdict\": \"approve\"|\"reject\"|\"unsure\", \"reason\": \"…\"}}: {e}")
    })?;
    Ok((j.verdict, j.reason))
}

const JUDGE_SYSTEM: &str = "You review another model's answer. Reply with only a JSON object \
    {\"verdict\": \"approve\" | \"reject\" | \"unsure\", \"reason\": \"<one sentence>\"}.";

/// One conversation with the endpoint: the calls made so far, their
/// attempts, their tokens.
struct Conversation<'c, 'a> {
    claimed: &'c Claimed<'a>,
    call: CompiledCall,
    step: &'c LlmStep,
    attempts: Vec<AttemptRecord>,
    usage: Usage,
    calls: u32,
}

/// How one chat call ended.
enum Reply {
    Text(String),
    /// The call failed for good: the step ends with this result.
    Failed(StepResult),
    /// This worker lost the task's lease.
    LeaseLost,
}

impl Conversation<'_, '_> {
    /// Adds what every result carries (model, tokens, cost, calls), counts
    /// the tokens, and redacts secrets.
    fn ended(&self, mut result: StepResult, model: &str) -> StepResult {
        let shared = self.claimed.shared;
        let cost = shared.config.llm.prices.get(model).map(|(p, c)| {
            (self.usage.prompt as f64 * p + self.usage.completion as f64 * c) / 1_000_000.0
        });
        crate::telemetry::LLM_TOKENS.add(&[model, "prompt"], self.usage.prompt);
        crate::telemetry::LLM_TOKENS.add(&[model, "completion"], self.usage.completion);
        if let Value::Object(out) = &mut result.output {
            out.insert("model".into(), json!(model));
            out.insert("usage".into(), self.usage.json());
            out.insert("cost_usd".into(), json!(cost));
            out.insert("calls".into(), json!(self.calls));
        }
        result.output = redact(&shared.config.secrets, result.output);
        result
    }

    async fn chat(
        &mut self,
        model: &str,
        messages: &[Value],
        label: &str,
    ) -> Result<Reply, ServiceError> {
        let mut body = json!({ "model": model, "messages": messages });
        if let Some(t) = self.step.temperature {
            body["temperature"] = json!(t);
        }
        match self.claimed.shared.config.llm.response_format {
            LlmResponseFormat::None => {}
            LlmResponseFormat::JsonObject => {
                body["response_format"] = json!({ "type": "json_object" });
            }
            // The judge's reply has a schema of its own.
            LlmResponseFormat::JsonSchema if label == "judge" => {
                body["response_format"] = json!({ "type": "json_object" });
            }
            LlmResponseFormat::JsonSchema => {
                body["response_format"] = json!({
                    "type": "json_schema",
                    "json_schema": { "name": self.step.id, "schema": self.step.schema },
                });
            }
        }
        self.calls += 1;
        let Claimed {
            shared,
            task,
            flow,
            context,
            ..
        } = *self.claimed;
        let Some(Called { result, attempts }) = call(
            shared,
            task,
            flow,
            &self.call,
            context,
            Some(&body),
            Bookkeeping::InMemory {
                label: format!("{}.{label}", task.node),
            },
        )
        .await?
        else {
            return Ok(Reply::LeaseLost);
        };
        self.attempts.extend(attempts);
        if result.outcome != "ok" {
            return Ok(Reply::Failed(result));
        }
        let reply = &result.output["body"];
        self.usage.add(reply);
        match reply["choices"][0]["message"]["content"].as_str() {
            Some(text) => Ok(Reply::Text(text.to_owned())),
            None => Ok(Reply::Failed(StepResult {
                outcome: "error".into(),
                output: json!({
                    "ok": false,
                    "error": "the endpoint's answer has no `choices[0].message.content`",
                    "body": reply,
                }),
            })),
        }
    }
}

impl Runner for LlmStep {
    async fn run(&self, claimed: Claimed<'_>) -> Result<(), ServiceError> {
        let CompiledKind::Call {
            calls,
            answer_schema: Some(schema),
            ..
        } = &claimed.flow.nodes[claimed.idx].kind
        else {
            return Err(ServiceError::Internal(format!(
                "step `{}` is not compiled as an llm call",
                self.id
            )));
        };
        let [compiled] = calls.as_slice() else {
            return Err(ServiceError::Internal(format!(
                "step `{}` is not compiled as an llm call",
                self.id
            )));
        };
        let outcome = if claimed.mock() {
            Some(self.mocked(&claimed, compiled, schema).await)
        } else {
            claimed
                .holding_lease(self.asked(&claimed, compiled, schema))
                .await?
        };
        let Some((result, mut attempts)) = outcome else {
            return Ok(()); // the lease was lost; the new holder finishes it
        };
        for (n, a) in attempts.iter_mut().enumerate() {
            a.attempt = n as i32 + 1;
        }
        if attempts.is_empty() {
            return claimed.finish(crate::engine::StepKind::Llm, result).await;
        }
        claimed
            .shared
            .baton
            .finish_step(claimed.task, result, &attempts, false)
            .await?;
        Ok(())
    }
}

impl LlmStep {
    /// The real conversation; `None` when the lease was lost.
    async fn asked(
        &self,
        claimed: &Claimed<'_>,
        compiled: &CompiledCall,
        schema: &jsonschema::Validator,
    ) -> Result<Option<(StepResult, Vec<AttemptRecord>)>, ServiceError> {
        let shared = claimed.shared;
        let llm = &shared.config.llm;
        let fail = |error: String| StepResult {
            outcome: "error".into(),
            output: json!({ "ok": false, "error": error }),
        };
        let Some(url) = &llm.url else {
            let code = crate::codes::Code::LlmNotConfigured;
            return Ok(Some((
                fail(format!("{code}: the server has no --llm-url")),
                Vec::new(),
            )));
        };
        let Some(model) = self.model.clone().or_else(|| llm.model.clone()) else {
            let code = crate::codes::Code::LlmNotConfigured;
            return Ok(Some((
                fail(format!(
                    "{code}: the step names no `model` and the server has no --llm-model"
                )),
                Vec::new(),
            )));
        };
        // A template that fails on this session's context fails the step
        // (to `on_error`), as an `http` step's would: trying again cannot
        // help.
        let render = |src: &str, ctx: &Value| {
            crate::engine::view::render_source(claimed.flow, src, ctx)
                .map_err(|e| format!("template: {e}"))
        };
        let system = self.system.as_deref().map(|s| render(s, claimed.context));
        let (system, prompt) = match (system.transpose(), render(&self.prompt, claimed.context)) {
            (Ok(system), Ok(prompt)) => (system, prompt),
            (Err(e), _) | (_, Err(e)) => return Ok(Some((fail(e), Vec::new()))),
        };
        let mut step = compiled.step.clone();
        step.url = format!("{}/chat/completions", url.trim_end_matches('/'));
        if let Some(key) = shared.config.secrets.get(&llm.key_secret) {
            step.headers
                .insert("authorization".into(), format!("Bearer {key}"));
        }
        let mut talk = Conversation {
            claimed,
            call: CompiledCall {
                step,
                policy: compiled.policy.clone(),
            },
            step: self,
            attempts: Vec::new(),
            usage: Usage::default(),
            calls: 0,
        };
        let mut instructions = format!(
            "Answer with only a JSON value (no prose, no code fence) that matches this JSON Schema:\n{}",
            self.schema
        );
        if let Some(s) = system {
            instructions = format!("{s}\n\n{instructions}");
        }
        let mut messages = vec![
            json!({ "role": "system", "content": instructions }),
            json!({ "role": "user", "content": prompt }),
        ];
        let mut repairs = 0;
        let answer = loop {
            let label = if repairs == 0 {
                "answer".to_owned()
            } else {
                format!("repair{repairs}")
            };
            let text = match talk.chat(&model, &messages, &label).await? {
                Reply::Text(t) => t,
                Reply::Failed(r) => return Ok(Some((talk.ended(r, &model), talk.attempts))),
                Reply::LeaseLost => return Ok(None),
            };
            let errors = match answer_json(&text) {
                Ok(answer) => {
                    let errors = schema_errors(schema, &answer);
                    if errors.is_empty() {
                        break answer;
                    }
                    errors
                }
                Err(e) => vec![e],
            };
            if repairs >= self.repair {
                let code = crate::codes::Code::LlmAnswerInvalid;
                let result = StepResult {
                    outcome: "error".into(),
                    output: json!({
                        "ok": false,
                        "error": format!("{code}: the answer did not match `schema` after {repairs} repairs"),
                        "validation_errors": errors,
                        "last_answer": text,
                    }),
                };
                return Ok(Some((talk.ended(result, &model), talk.attempts)));
            }
            repairs += 1;
            messages.push(json!({ "role": "assistant", "content": text }));
            messages.push(json!({
                "role": "user",
                "content": format!(
                    "That answer cannot be used:\n- {}\nAnswer again with only JSON that matches the schema.",
                    errors.join("\n- ")
                ),
            }));
        };
        let judged = match &self.judge {
            None => None,
            Some(judge) => {
                let mut ctx = claimed.context.clone();
                ctx["answer"] = answer.clone();
                let prompt = match render(&judge.prompt, &ctx) {
                    Ok(p) => p,
                    Err(e) => return Ok(Some((talk.ended(fail(e), &model), talk.attempts))),
                };
                let messages = [
                    json!({ "role": "system", "content": JUDGE_SYSTEM }),
                    json!({ "role": "user", "content": prompt }),
                ];
                let judge_model = judge.model.as_deref().unwrap_or(&model);
                match talk.chat(judge_model, &messages, "judge").await? {
                    Reply::Text(t) => Some(verdict_of(&t).unwrap_or_else(|e| (Verdict::Unsure, e))),
                    Reply::Failed(r) => return Ok(Some((talk.ended(r, &model), talk.attempts))),
                    Reply::LeaseLost => return Ok(None),
                }
            }
        };
        let result = answered(answer, judged, repairs);
        Ok(Some((talk.ended(result, &model), talk.attempts)))
    }

    /// A mock session's answer, from the step's mock for its scenario.
    async fn mocked(
        &self,
        claimed: &Claimed<'_>,
        compiled: &CompiledCall,
        schema: &jsonschema::Validator,
    ) -> (StepResult, Vec<AttemptRecord>) {
        let clock = &claimed.shared.config.clock;
        let case = self.mock.as_ref().map(|m| m.case(claimed.scenario()));
        let failed = |timeout: bool| StepResult {
            outcome: if timeout { "timeout" } else { "error" }.into(),
            output: json!({
                "ok": false,
                "error": if timeout { "timeout (mock)" } else { "connect: connection refused (mock)" },
            }),
        };
        let latency = Duration::from_millis(case.as_ref().map_or(0, |c| c.latency_ms));
        let result = match case.as_ref().and_then(|c| c.fail) {
            Some(MockFailure::Timeout) => {
                clock.sleep(compiled.policy.attempt_timeout).await;
                failed(true)
            }
            Some(MockFailure::Connect) => {
                clock.sleep(latency).await;
                failed(false)
            }
            None => {
                clock.sleep(latency).await;
                let answer = case.as_ref().map_or(Value::Null, |c| c.answer.clone());
                let errors = schema_errors(schema, &answer);
                if errors.is_empty() {
                    let verdict = case
                        .as_ref()
                        .and_then(|c| c.verdict)
                        .unwrap_or(Verdict::Approve);
                    let judged = self.judge.as_ref().map(|_| (verdict, "mock".to_owned()));
                    answered(answer, judged, 0)
                } else {
                    StepResult {
                        outcome: "error".into(),
                        output: json!({
                            "ok": false,
                            "error": format!("{}: the mock answer does not match `schema`", crate::codes::Code::LlmAnswerInvalid),
                            "validation_errors": errors,
                        }),
                    }
                }
            }
        };
        let mut result = result;
        if let Value::Object(out) = &mut result.output {
            out.insert("model".into(), json!("mock"));
            out.insert("usage".into(), Usage::default().json());
            out.insert("cost_usd".into(), json!(0.0));
        }
        (result, Vec::new())
    }
}

/// A valid answer's result: `ok`, or `review` when the judge did not
/// approve it.
fn answered(answer: Value, judged: Option<(Verdict, String)>, repairs: u32) -> StepResult {
    let outcome = match &judged {
        None | Some((Verdict::Approve, _)) => "ok",
        Some((Verdict::Reject | Verdict::Unsure, _)) => "review",
    };
    StepResult {
        outcome: outcome.into(),
        output: json!({
            "ok": true,
            "answer": answer,
            "repairs": repairs,
            "judge": judged.map(|(verdict, reason)| json!({ "verdict": verdict, "reason": reason })),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_with_or_without_a_code_fence() {
        assert_eq!(answer_json(" {\"a\": 1} ").unwrap(), json!({"a": 1}));
        assert_eq!(
            answer_json("```json\n{\"a\": 1}\n```").unwrap(),
            json!({"a": 1})
        );
        assert_eq!(answer_json("```\n[1]\n```").unwrap(), json!([1]));
        assert!(
            answer_json("Sure! {\"a\": 1}")
                .unwrap_err()
                .contains("not JSON")
        );
    }

    #[test]
    fn schema_errors_say_where() {
        let schema = jsonschema::validator_for(&json!({
            "type": "object",
            "properties": { "score": { "type": "integer", "maximum": 10 } },
            "required": ["score"],
        }))
        .unwrap();
        assert!(schema_errors(&schema, &json!({"score": 3})).is_empty());
        let e = schema_errors(&schema, &json!({"score": 30}));
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("at `/score`"), "{e:?}");
        let e = schema_errors(&schema, &json!({}));
        assert!(
            e[0].starts_with("at `/`") && e[0].contains("score"),
            "{e:?}"
        );
    }

    #[test]
    fn a_verdict_is_one_of_three() {
        assert_eq!(
            verdict_of(r#"{"verdict":"reject","reason":"rude"}"#).unwrap(),
            (Verdict::Reject, "rude".to_owned())
        );
        assert!(verdict_of(r#"{"verdict":"maybe"}"#).is_err());
        assert!(verdict_of("yes").is_err());
    }

    #[test]
    fn prices_are_per_million_tokens() {
        let p = LlmConfig::parse_prices(&["gpt-4o-mini=0.15/0.6".into(), " ".into()]).unwrap();
        assert_eq!(p["gpt-4o-mini"], (0.15, 0.6));
        for bad in ["gpt", "gpt=1", "gpt=a/1", "=1/1", "gpt=-1/1"] {
            assert!(LlmConfig::parse_prices(&[bad.into()]).is_err(), "{bad}");
        }
        assert!(LlmConfig::parse_prices(&["a=1/1".into(), "a=2/2".into()]).is_err());
    }
}

//! Rules: JsonLogic with jsonlogic.com semantics plus flagd's operators.
//! (stand-in until the rules branch lands)
use serde_json::Value;
#[derive(Clone, Debug)]
pub struct Rule(Value);
#[derive(Debug, thiserror::Error)]
#[error("bad rule")]
pub struct RuleError;
impl RuleError { pub fn code(&self) -> &'static str { "RULE_INVALID" } pub fn hint(&self) -> Option<String> { None } }
impl Rule {
    pub fn compile(logic: &Value) -> Result<Rule, RuleError> { Ok(Rule(logic.clone())) }
    pub fn matches(&self, _data: &Value) -> Result<bool, RuleError> { Ok(true) }
    pub fn evaluate(&self, _data: &Value) -> Result<Value, RuleError> { Ok(Value::Null) }
    pub fn source(&self) -> &Value { &self.0 }
    pub fn var_paths(&self) -> Vec<String> { vec![] }
}

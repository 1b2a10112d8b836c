//! Rules: JsonLogic with jsonlogic.com semantics plus flagd's operators.
//!
//! This module owns turning rule JSON into a compiled [`Rule`] (once) and
//! evaluating it against a data document (often), on top of `datalogic-rs`.
//! Baton adds around datalogic:
//!
//! * compile-time limits (nesting depth, serialized size) and an operator
//!   allow-list (jsonlogic.com's operators + flagd's `fractional`,
//!   `sem_ver`, `starts_with`, `ends_with`), so bad rules fail at publish;
//! * an engine configured to jsonlogic.com's semantics where datalogic's
//!   defaults differ (truthiness of `{}`, non-throwing `==` and arithmetic,
//!   multi-key objects as data) — see `ops.rs`;
//! * flagd v2 `fractional` and null-on-error `starts_with`/`ends_with` as
//!   datalogic custom operators (datalogic's `sem_ver` is used as is);
//! * [`Rule::var_paths`] for the flow validator, [`PreparedData`] for
//!   evaluating many rules against one context, and [`eval_lines`] for
//!   `baton rule eval`;
//! * [`Rule::evaluate_targeting`]: a flagd targeting rule run against a
//!   context enriched with `$flagd`, as the flag layer needs it;
//! * a compiled fast path (`fast.rs`) for flagd's common targeting shapes,
//!   tried first on every evaluation; datalogic remains the reference and
//!   evaluates whatever the fast path does not cover.
//!
//! Known differences from json-logic-js that configuration cannot remove
//! are listed in `tests/fixtures/jsonlogic/README.md` and pinned by tests.

mod analyze;
mod error;
mod fast;
pub(crate) use fast::str_eq;
mod lines;
mod ops;
mod prepared;
mod targeting;

use std::sync::Arc;

use datalogic_rs::{DataValue, Logic};
use serde_json::Value;

pub use analyze::{KNOWN_OPERATORS, RuleLimits, VarRef, VarScope};
pub use error::RuleError;
pub use lines::{EvalSummary, eval_lines};
pub use prepared::PreparedData;
pub use targeting::{Enrichment, TargetingResult};

/// The bucket 0–99 of `key` in `fractional`'s bucketing (murmur3 x86_32,
/// scaled), so a rollout splits users exactly as a 100-bucket `fractional`
/// flag over the same key would.
pub fn percent_bucket(key: &str) -> u32 {
    ((u64::from(ops::murmur3_x86_32(key.as_bytes())) * 100) >> 32) as u32
}

use fast::{FastRule, Scope};
use ops::ENGINE;
use prepared::with_arena;

/// A compiled rule. Cheap to clone (one `Arc`), `Send + Sync`.
#[derive(Clone)]
pub struct Rule(Arc<Inner>);

struct Inner {
    source: Value,
    logic: Logic,
    /// The same rule for the fast path, when it is within its subset.
    fast: Option<FastRule>,
    refs: Vec<VarRef>,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Rule").field(&self.0.source).finish()
    }
}

impl Rule {
    /// Compile `logic` with the default [`RuleLimits`] (depth 64, 64 KiB).
    pub fn compile(logic: &Value) -> Result<Rule, RuleError> {
        Self::compile_with_limits(logic, &RuleLimits::default())
    }

    /// Compile `logic`, rejecting it if it breaks `limits`.
    pub fn compile_with_limits(logic: &Value, limits: &RuleLimits) -> Result<Rule, RuleError> {
        let analysis = analyze::analyze(logic, limits)?;
        let logic_compiled =
            ENGINE
                .compile(&analysis.rewritten)
                .map_err(|e| RuleError::Invalid {
                    message: e.to_string(),
                })?;
        Ok(Rule(Arc::new(Inner {
            source: logic.clone(),
            logic: logic_compiled,
            fast: FastRule::compile(logic),
            refs: analysis.refs,
        })))
    }

    /// Evaluate against `data`. The data is converted into datalogic's
    /// representation on every call (cost grows with the size of `data`);
    /// use [`PreparedData`] to evaluate several rules against one context.
    pub fn evaluate(&self, data: &Value) -> Result<Value, RuleError> {
        with_arena(|arena| {
            let data: &DataValue<'_> = arena.alloc(DataValue::from_serde_value_in(data, arena));
            self.run(data, true, arena, |v| v.to_serde_value())
        })
    }

    /// [`Rule::evaluate`] against prepared data.
    pub fn evaluate_prepared(&self, data: &PreparedData) -> Result<Value, RuleError> {
        with_arena(|arena| {
            self.run(data.parsed().value(), data.unique_members(), arena, |v| {
                v.to_serde_value()
            })
        })
    }

    /// JsonLogic truthiness of the result, exactly as jsonlogic.com defines
    /// it: `[]`, `""`, `0`, `null`, `false` (and NaN) are false; `"0"`, `{}`
    /// and everything else are true.
    pub fn matches(&self, data: &Value) -> Result<bool, RuleError> {
        with_arena(|arena| {
            let data: &DataValue<'_> = arena.alloc(DataValue::from_serde_value_in(data, arena));
            match self.fast_matches(data, true) {
                Some(m) => Ok(m),
                None => self.run_datalogic(data, arena, ops::truthy_arena),
            }
        })
    }

    /// [`Rule::matches`] against prepared data: no conversion, no result copy.
    pub fn matches_prepared(&self, data: &PreparedData) -> Result<bool, RuleError> {
        let value = data.parsed().value();
        match self.fast_matches(value, data.unique_members()) {
            Some(m) => Ok(m),
            None => with_arena(|arena| self.run_datalogic(value, arena, ops::truthy_arena)),
        }
    }

    /// The truthiness through the fast path, `None` where it does not
    /// answer (then datalogic does). `unique`: `data`'s members have
    /// distinct names.
    fn fast_matches(&self, data: &DataValue<'_>, unique: bool) -> Option<bool> {
        self.0
            .fast
            .as_ref()?
            .matches(&Scope::plain(data, unique))
            .ok()
    }

    /// The fast path if it covers this rule and evaluation, else datalogic;
    /// `out` turns the result into what the caller returns.
    /// `unique`: `data`'s members have distinct names.
    fn run<'a, R>(
        &'a self,
        data: &'a DataValue<'a>,
        unique: bool,
        arena: &'a datalogic_rs::bumpalo::Bump,
        out: impl FnOnce(&DataValue<'_>) -> R,
    ) -> Result<R, RuleError> {
        if let Some(fast) = &self.0.fast
            && let Ok(v) = fast.eval(&Scope::plain(data, unique))
        {
            return Ok(out(&v));
        }
        self.run_datalogic(data, arena, out)
    }

    fn run_datalogic<'a, R>(
        &'a self,
        data: &'a DataValue<'a>,
        arena: &'a datalogic_rs::bumpalo::Bump,
        out: impl FnOnce(&DataValue<'_>) -> R,
    ) -> Result<R, RuleError> {
        ENGINE
            .evaluate(&self.0.logic, data, arena)
            .map(out)
            .map_err(RuleError::eval)
    }

    /// Whether evaluating this rule may read `$flagd.timestamp`
    /// ([`Enrichment::timestamp`]); when not, a caller need not read the
    /// clock. Conservative: true unless the rule is on the fast path, where
    /// every path read is known.
    pub fn reads_flagd_timestamp(&self) -> bool {
        self.0.fast.as_ref().is_none_or(FastRule::reads_timestamp)
    }

    /// Whether the rule compiled to the fast path (tests and benchmarks).
    /// The top-level context members the rule's fast path reads by
    /// position (see [`Rule::evaluate_targeting_at`]); empty without a
    /// fast path.
    pub(crate) fn slot_names(&self) -> &[Box<str>] {
        self.0.fast.as_ref().map_or(&[], FastRule::slot_names)
    }

    #[doc(hidden)]
    pub fn has_fast_path(&self) -> bool {
        self.0.fast.is_some()
    }

    /// The rule JSON as given to [`Rule::compile`].
    pub fn source(&self) -> &Value {
        &self.0.source
    }

    /// Literal data paths read from the root data by `var` (first argument
    /// when it is a string or number), `missing` and `missing_some`, in
    /// order of appearance, without duplicates, e.g.
    /// `["user.attributes.age", "client.platform"]`. Paths read inside a
    /// `map`/`filter`/`reduce`/`all`/`some`/`none` body refer to the item and
    /// are left out (see [`Rule::var_refs`]); `""` (the whole document) is
    /// not a path. A `fractional` without an explicit bucketing key adds
    /// `$flagd.flagKey` and `targetingKey`, which flagd reads implicitly.
    pub fn var_paths(&self) -> Vec<String> {
        self.0
            .refs
            .iter()
            .filter(|r| r.scope == VarScope::Root)
            .map(|r| r.path.clone())
            .collect()
    }

    /// Every literal path with its scope, including item-relative ones.
    pub fn var_refs(&self) -> &[VarRef] {
        &self.0.refs
    }
}

/// JsonLogic truthiness as jsonlogic.com defines it (json-logic-js
/// `truthy`: `!!value`, except that an empty array is false). So `[]`,
/// `""`, `0`, `null` and `false` are false; `"0"`, `{}`, `[0]` are true.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rule_is_send_sync_clone() {
        fn check<T: Send + Sync + Clone>() {}
        check::<Rule>();
    }

    #[test]
    fn truthy_follows_jsonlogic_com() {
        assert!(!truthy(&json!([])));
        assert!(truthy(&json!("0")));
        assert!(truthy(&json!({})));
        assert!(truthy(&json!([0])));
        assert!(!truthy(&json!(0.0)));
        assert!(!truthy(&json!("")));
        assert!(!truthy(&json!(null)));
    }

    #[test]
    fn matches_agrees_with_truthy_on_results() {
        for v in [
            json!({}),
            json!([]),
            json!("0"),
            json!(""),
            json!(0),
            json!(2.5),
            json!(null),
        ] {
            let rule = Rule::compile(&json!({"var": "x"})).unwrap();
            let data = json!({ "x": v });
            assert_eq!(rule.matches(&data).unwrap(), truthy(&v), "{v}");
            let prepared = PreparedData::new(&data).unwrap();
            assert_eq!(rule.matches_prepared(&prepared).unwrap(), truthy(&v), "{v}");
        }
    }

    #[test]
    fn prepared_and_plain_evaluation_agree() {
        let rule = Rule::compile(&json!({"cat": [{"var": "a.b"}, "-", {"var": "c"}]})).unwrap();
        let data = json!({"a": {"b": "x"}, "c": 2});
        let prepared = PreparedData::new(&data).unwrap();
        assert_eq!(rule.evaluate(&data).unwrap(), json!("x-2"));
        assert_eq!(rule.evaluate_prepared(&prepared).unwrap(), json!("x-2"));
    }
}

//! flagd targeting evaluation: a [`Rule`] run against an evaluation context
//! enriched the way flagd enriches it (`$flagd.flagKey`, `$flagd.timestamp`),
//! without copying the context and without converting the result into a
//! `serde_json::Value` (a flag only needs the variant name).

use datalogic_rs::DataValue;
use datalogic_rs::bumpalo::collections::Vec as BumpVec;

use super::fast::Scope;
use super::ops::ENGINE;
use super::prepared::with_arena;
use super::{PreparedData, Rule, RuleError};

/// What flagd adds to the context before running a flag's targeting.
#[derive(Debug, Clone, Copy)]
pub struct Enrichment<'k> {
    /// `$flagd.flagKey`.
    pub flag_key: &'k str,
    /// `$flagd.timestamp`: Unix seconds. Unused, and may be anything, when
    /// [`Rule::reads_flagd_timestamp`] is false.
    pub timestamp: i64,
    /// When `Some`, `targetingKey` is set to this value if the context has
    /// no string `targetingKey`. flagd never does this; the flag layer uses
    /// it to learn whether a result depended on the missing key.
    pub targeting_key_if_missing: Option<&'k str>,
}

/// A targeting rule's result, borrowed for the duration of the callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetingResult<'r> {
    /// `null`: the flag falls back to its default variant.
    Null,
    /// A string: a variant name.
    Text(&'r str),
    /// Anything else, as compact JSON text (`true`, `1`, `[1,2]`). flagd
    /// looks such results up as variant names by their JSON text.
    Json(String),
}

impl Rule {
    /// Evaluate this rule as a flagd targeting rule: the data is `context`
    /// with `$flagd` replaced by `{flagKey, timestamp}` from `enrichment`
    /// (a caller-supplied `$flagd` is overwritten, as flagd does). `f` gets
    /// the result while it is still borrowed from the evaluation arena.
    ///
    /// A `context` that is not a JSON object is treated as `{}`.
    pub fn evaluate_targeting<R>(
        &self,
        context: &PreparedData,
        enrichment: &Enrichment<'_>,
        f: impl FnOnce(TargetingResult<'_>) -> R,
    ) -> Result<R, RuleError> {
        self.evaluate_targeting_at(context, &[], enrichment, f)
    }

    /// [`Rule::evaluate_targeting`] with `slots`: for each of
    /// [`Rule::slot_names`], [`PreparedData::member_position`] in
    /// `context` (or `&[]` when not known). The fast path then reads those
    /// members by position instead of by name.
    pub(crate) fn evaluate_targeting_at<R>(
        &self,
        context: &PreparedData,
        slots: &[u32],
        enrichment: &Enrichment<'_>,
        f: impl FnOnce(TargetingResult<'_>) -> R,
    ) -> Result<R, RuleError> {
        if let Some(fast) = &self.0.fast
            && let Ok(result) = fast.eval(&Scope::targeting_at(
                context.parsed().value(),
                enrichment,
                fast,
                slots,
            ))
        {
            return Ok(f(classify(result)));
        }
        self.evaluate_targeting_datalogic(context, enrichment, f)
    }

    /// [`Rule::evaluate_targeting`] on datalogic alone: the enriched
    /// context is built as a document (top-level handles only).
    pub(crate) fn evaluate_targeting_datalogic<R>(
        &self,
        context: &PreparedData,
        enrichment: &Enrichment<'_>,
        f: impl FnOnce(TargetingResult<'_>) -> R,
    ) -> Result<R, RuleError> {
        with_arena(|arena| {
            let pairs: &[(&str, DataValue<'_>)] = match context.parsed().value() {
                DataValue::Object(pairs) => pairs,
                _ => &[],
            };
            let flagd: &[(&str, DataValue<'_>)] = arena.alloc_slice_copy(&[
                ("flagKey", DataValue::String(enrichment.flag_key)),
                ("timestamp", DataValue::from_i64(enrichment.timestamp)),
            ]);
            // Copies only the top-level (key, value) handles; the values
            // themselves stay in the prepared context.
            let mut root = BumpVec::with_capacity_in(pairs.len() + 2, arena);
            let mut has_string_key = false;
            for &(k, v) in pairs {
                match k {
                    "$flagd" => continue,
                    "targetingKey" if enrichment.targeting_key_if_missing.is_some() => {
                        if v.as_str().is_none() {
                            continue;
                        }
                        has_string_key = true;
                    }
                    _ => {}
                }
                root.push((k, v));
            }
            root.push(("$flagd", DataValue::Object(flagd)));
            if let Some(key) = enrichment.targeting_key_if_missing
                && !has_string_key
            {
                root.push(("targetingKey", DataValue::String(key)));
            }
            let root: &DataValue<'_> = arena.alloc(DataValue::Object(root.into_bump_slice()));
            let result = ENGINE
                .evaluate(&self.0.logic, root, arena)
                .map_err(RuleError::eval)?;
            Ok(f(classify(*result)))
        })
    }
}

pub(super) fn classify(result: DataValue<'_>) -> TargetingResult<'_> {
    match result {
        DataValue::Null => TargetingResult::Null,
        DataValue::String(s) => TargetingResult::Text(s),
        other => TargetingResult::Json(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(rule: serde_json::Value, ctx: serde_json::Value, missing: Option<&str>) -> String {
        let rule = Rule::compile(&rule).unwrap();
        let ctx = PreparedData::new(&ctx).unwrap();
        let e = Enrichment {
            flag_key: "my-flag",
            timestamp: 1_700_000_000,
            targeting_key_if_missing: missing,
        };
        rule.evaluate_targeting(&ctx, &e, |r| format!("{r:?}"))
            .unwrap()
    }

    #[test]
    fn flagd_properties_replace_the_callers() {
        let got = run(
            json!({"cat": [{"var": "$flagd.flagKey"}, ":", {"var": "$flagd.timestamp"}]}),
            json!({"$flagd": {"flagKey": "spoofed"}}),
            None,
        );
        assert_eq!(got, r#"Text("my-flag:1700000000")"#);
    }

    #[test]
    fn results_are_classified() {
        assert_eq!(run(json!(null), json!({}), None), "Null");
        assert_eq!(
            run(json!({"var": "b"}), json!({"b": true}), None),
            r#"Json("true")"#
        );
        assert_eq!(
            run(json!({"var": "n"}), json!({"n": 2}), None),
            r#"Json("2")"#
        );
        assert_eq!(
            run(json!({"var": "x"}), json!(["not", "an", "object"]), None),
            "Null"
        );
    }

    #[test]
    fn targeting_key_is_added_only_when_missing_or_not_a_string() {
        let rule = json!({"cat": ["k=", {"var": "targetingKey"}]});
        assert_eq!(run(rule.clone(), json!({}), Some("")), r#"Text("k=")"#);
        assert_eq!(
            run(rule.clone(), json!({"targetingKey": 7}), Some("")),
            r#"Text("k=")"#
        );
        assert_eq!(
            run(rule.clone(), json!({"targetingKey": "u1"}), Some("")),
            r#"Text("k=u1")"#
        );
        assert_eq!(
            run(rule, json!({"targetingKey": 7}), None),
            r#"Text("k=7")"#
        );
    }
}

//! Evaluating a flag the way flagd does: [`EvaluationContext`] in,
//! [`Resolution`] (OpenFeature's value, variant, reason, error code,
//! metadata) out.
//!
//! flagd's rules, in order (flagd `core/pkg/evaluator/json.go` and the
//! flagd-testbed evaluator suite):
//!
//! 1. unknown key → `ERROR` / `FLAG_NOT_FOUND`;
//! 2. `state: DISABLED` → `DISABLED`, no value and no variant (the caller's
//!    code default applies), metadata kept;
//! 3. no targeting (or `{}`) → `STATIC` with the default variant; with no
//!    default variant (`null` or absent) → `DEFAULT` with no value;
//! 4. targeting runs against the context plus `$flagd.flagKey` and
//!    `$flagd.timestamp` (Unix seconds, replacing any caller `$flagd`):
//!    an evaluation error → `ERROR` / `PARSE_ERROR`; `null` → `DEFAULT` with
//!    the default variant (or no value); a result naming a variant (strings
//!    by value, other results by their JSON text, so `true` names variant
//!    `"true"`) → `TARGETING_MATCH`; any other result → `ERROR` / `GENERAL`.
//!
//! Baton's one addition, an error where flagd has no answer: a flag that
//! failed validation → `ERROR` / `PARSE_ERROR` (flagd would refuse the
//! whole file, or fail the same way at evaluation). A `fractional` without
//! a bucketing key (no `targetingKey`) returns `null` and so `DEFAULT`, as
//! in flagd: OpenFeature users who switch providers get the same answers
//! (flagd-testbed's evaluator suite runs in the tests).
//!
//! Typed evaluation ([`FlagSet::evaluate_as`]) adds OpenFeature's
//! `TYPE_MISMATCH` when a resolved value is not of the requested type; an
//! integer request accepts whole numbers only (no silent truncation).

use crate::codes::Code;
use std::cell::{Ref, RefCell};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use super::error::FlagError;
use super::set::{EMPTY_METADATA, Flag, FlagSet, Targeting};
use crate::rules::{Enrichment, PreparedData, TargetingResult, str_eq};

/// OpenFeature resolution reasons produced by flag evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No targeting: the default variant.
    Static,
    /// Targeting selected a variant.
    TargetingMatch,
    /// Targeting returned `null` (or the flag has no default variant): the
    /// default variant, or the caller's code default when there is none.
    Default,
    /// The flag is disabled: the caller's code default.
    Disabled,
    /// See the error code.
    Error,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Static => "STATIC",
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Default => "DEFAULT",
            Reason::Disabled => "DISABLED",
            Reason::Error => "ERROR",
        }
    }
}

/// OpenFeature error codes produced by flag evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    FlagNotFound,
    TypeMismatch,
    ParseError,
    General,
}

impl ErrorCode {
    /// OpenFeature's code, as the catalogue holds it.
    pub fn code(self) -> Code {
        match self {
            ErrorCode::FlagNotFound => Code::FlagNotFound,
            ErrorCode::TypeMismatch => Code::TypeMismatch,
            ErrorCode::ParseError => Code::ParseError,
            ErrorCode::General => Code::General,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.code().as_str()
    }
}

/// The type a caller expects a flag's value to have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FlagType {
    Boolean,
    String,
    /// A whole number (`3`, `3.0`); `3.5` is a mismatch.
    Integer,
    /// Any number.
    Float,
    Object,
}

impl FlagType {
    /// `boolean`, `string`, `integer`, `float` (or `number`), `object`.
    pub fn parse(s: &str) -> Option<FlagType> {
        Some(match s {
            "boolean" => FlagType::Boolean,
            "string" => FlagType::String,
            "integer" => FlagType::Integer,
            "float" | "number" => FlagType::Float,
            "object" => FlagType::Object,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FlagType::Boolean => "boolean",
            FlagType::String => "string",
            FlagType::Integer => "integer",
            FlagType::Float => "float",
            FlagType::Object => "object",
        }
    }

    fn accepts(self, v: &Value) -> bool {
        match self {
            FlagType::Boolean => v.is_boolean(),
            FlagType::String => v.is_string(),
            FlagType::Integer => {
                v.is_i64()
                    || v.is_u64()
                    || v.as_f64()
                        .is_some_and(|f| f.fract() == 0.0 && f.is_finite())
            }
            FlagType::Float => v.is_number(),
            FlagType::Object => v.is_object(),
        }
    }
}

/// The context a flag is evaluated against: a JSON object (OpenFeature's
/// evaluation context, `targetingKey` included), converted once so many
/// flags can be evaluated against it without converting it again.
///
/// `Send` but not `Sync`: build one per request.
///
/// The first evaluation against a [`FlagSet`] also finds, once, the
/// context members that set's targeting rules read (their positions, kept
/// here until the context is used with another set), so that each `var` in
/// targeting is an indexed load rather than a search by name.
#[derive(Debug)]
pub struct EvaluationContext {
    prepared: PreparedData,
    targeting_key: Option<String>,
    slots: RefCell<Slots>,
}

/// The positions in the context of one set's [`FlagSet::slot_names`].
#[derive(Debug, Default)]
struct Slots {
    /// The set's id; `0` (a set with no slots) to begin with.
    set: u64,
    positions: Vec<u32>,
}

impl EvaluationContext {
    /// `{}`.
    pub fn empty() -> EvaluationContext {
        EvaluationContext {
            prepared: PreparedData::from_json("{}").expect("`{}` is valid JSON"),
            targeting_key: None,
            slots: RefCell::default(),
        }
    }

    /// The context `attributes` as given (`targetingKey` is read from it).
    /// Fails only for a document the rule engine cannot take in (e.g.
    /// nested deeper than its parser allows).
    pub fn from_map(attributes: &Map<String, Value>) -> Result<EvaluationContext, FlagError> {
        let invalid = |message: String| FlagError::ContextInvalid { message };
        let text = serde_json::to_string(attributes).map_err(|e| invalid(e.to_string()))?;
        let prepared = PreparedData::from_json(&text).map_err(|e| invalid(e.to_string()))?;
        Ok(EvaluationContext {
            prepared,
            targeting_key: attributes
                .get("targetingKey")
                .and_then(Value::as_str)
                .map(str::to_owned),
            slots: RefCell::default(),
        })
    }

    /// `attributes` with `targetingKey` set to `targeting_key` (how a flow
    /// evaluates a flag for its user).
    pub fn with_targeting_key(
        targeting_key: &str,
        mut attributes: Map<String, Value>,
    ) -> Result<EvaluationContext, FlagError> {
        attributes.insert(
            "targetingKey".to_owned(),
            Value::String(targeting_key.to_owned()),
        );
        Self::from_map(&attributes)
    }

    /// A session's context as a flow evaluates flags for its user: the
    /// members of `context` but `skip`, with `targetingKey` set to
    /// `targeting_key`. Written straight to JSON text from the borrowed
    /// context: no copy of the context is made (a submit does this on every
    /// advance of a flow that reads flags).
    pub fn for_session(
        targeting_key: &str,
        context: &Value,
        skip: &[&str],
    ) -> Result<EvaluationContext, FlagError> {
        struct Members<'a> {
            key: &'a str,
            context: Option<&'a Map<String, Value>>,
            skip: &'a [&'a str],
        }
        impl Serialize for Members<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut map = serializer.serialize_map(None)?;
                for (k, v) in self.context.into_iter().flatten() {
                    if k != "targetingKey" && !self.skip.contains(&k.as_str()) {
                        map.serialize_entry(k, v)?;
                    }
                }
                map.serialize_entry("targetingKey", self.key)?;
                map.end()
            }
        }
        let invalid = |message: String| FlagError::ContextInvalid { message };
        let text = serde_json::to_string(&Members {
            key: targeting_key,
            context: context.as_object(),
            skip,
        })
        .map_err(|e| invalid(e.to_string()))?;
        let prepared = PreparedData::from_json(&text).map_err(|e| invalid(e.to_string()))?;
        Ok(EvaluationContext {
            prepared,
            targeting_key: Some(targeting_key.to_owned()),
            slots: RefCell::default(),
        })
    }

    /// An object, or `null` for `{}`; anything else is
    /// [`FlagError::ContextInvalid`].
    pub fn from_value(value: &Value) -> Result<EvaluationContext, FlagError> {
        match value {
            Value::Object(map) => Self::from_map(map),
            Value::Null => Ok(Self::empty()),
            other => Err(FlagError::ContextInvalid {
                message: format!("it must be a JSON object, not {}", json_type(other)),
            }),
        }
    }

    /// The string `targetingKey`, if the context has one.
    pub fn targeting_key(&self) -> Option<&str> {
        self.targeting_key.as_deref()
    }

    /// The positions of `set`'s slot names in this context, found on the
    /// first call for `set`. Empty (lookups by name) in the one case they
    /// cannot be updated: while another evaluation still borrows them,
    /// which the flag layer never does.
    fn slots_for(&self, set: &FlagSet) -> Ref<'_, [u32]> {
        if self.slots.borrow().set != set.id
            && let Ok(mut slots) = self.slots.try_borrow_mut()
        {
            slots.set = set.id;
            slots.positions.clear();
            slots.positions.extend(
                set.slot_names
                    .iter()
                    .map(|name| self.prepared.member_position(name)),
            );
        }
        Ref::map(self.slots.borrow(), |s| {
            if s.set == set.id {
                &s.positions[..]
            } else {
                &[]
            }
        })
    }
}

pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The outcome of evaluating one flag, borrowed from the [`FlagSet`] (and
/// the key) so that evaluating allocates nothing on success.
///
/// `value` and `variant` are `None` when the caller's code default applies:
/// on errors, for disabled flags, and for a `DEFAULT` with no default
/// variant. Serializes as OpenFeature/OFREP field names (`key`, `value`,
/// `variant`, `reason`, `errorCode`, `errorMessage`, `metadata`), leaving
/// out absent ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution<'a> {
    pub key: &'a str,
    pub value: Option<&'a Value>,
    pub variant: Option<&'a str>,
    pub reason: Reason,
    pub error_code: Option<ErrorCode>,
    pub error_message: Option<String>,
    /// The file's `metadata` merged under the flag's own.
    pub metadata: &'a Map<String, Value>,
}

impl<'a> Resolution<'a> {
    fn ok(
        key: &'a str,
        flag: &'a Flag,
        reason: Reason,
        variant: Option<(&'a String, &'a Value)>,
    ) -> Self {
        Resolution {
            key,
            value: variant.map(|(_, v)| v),
            variant: variant.map(|(k, _)| k.as_str()),
            reason,
            error_code: None,
            error_message: None,
            metadata: &flag.metadata,
        }
    }

    fn error(
        key: &'a str,
        metadata: &'a Map<String, Value>,
        code: ErrorCode,
        message: String,
    ) -> Self {
        Resolution {
            key,
            value: None,
            variant: None,
            reason: Reason::Error,
            error_code: Some(code),
            error_message: Some(message),
            metadata,
        }
    }

    /// Whether the evaluation failed (reason `ERROR`).
    pub fn is_error(&self) -> bool {
        self.error_code.is_some()
    }
}

impl Serialize for Resolution<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("key", self.key)?;
        if let Some(value) = self.value {
            map.serialize_entry("value", value)?;
        }
        if let Some(variant) = self.variant {
            map.serialize_entry("variant", variant)?;
        }
        map.serialize_entry("reason", self.reason.as_str())?;
        if let Some(code) = self.error_code {
            map.serialize_entry("errorCode", code.as_str())?;
        }
        if let Some(message) = &self.error_message {
            map.serialize_entry("errorMessage", message)?;
        }
        map.serialize_entry("metadata", self.metadata)?;
        map.end()
    }
}

/// What the targeting selected, before it becomes a resolution.
enum Selected<'a> {
    Null,
    Variant(&'a String, &'a Value),
    Unknown(String),
}

impl FlagSet {
    /// Evaluate flag `key` for `context`, exactly as flagd does (see the
    /// module docs), with `$flagd.timestamp` = now.
    pub fn evaluate<'a>(&'a self, key: &'a str, context: &EvaluationContext) -> Resolution<'a> {
        self.evaluate_with(key, context, None, unix_now)
    }

    /// [`FlagSet::evaluate`], then OpenFeature's type check: a resolved
    /// value that is not a `ty` becomes `ERROR` / `TYPE_MISMATCH` (the
    /// variant is kept, the value dropped).
    pub fn evaluate_as<'a>(
        &'a self,
        key: &'a str,
        context: &EvaluationContext,
        ty: FlagType,
    ) -> Resolution<'a> {
        let mut resolution = self.evaluate(key, context);
        if let Some(value) = resolution.value
            && !ty.accepts(value)
        {
            resolution.error_message = Some(format!(
                "flag `{key}` resolved to {}, not {} {}",
                json_type(value),
                if ty == FlagType::Integer { "an" } else { "a" },
                ty.as_str()
            ));
            resolution.value = None;
            resolution.reason = Reason::Error;
            resolution.error_code = Some(ErrorCode::TypeMismatch);
        }
        resolution
    }

    /// Every flag, in key order, against one context and one timestamp.
    pub fn evaluate_all<'a>(&'a self, context: &EvaluationContext) -> Vec<Resolution<'a>> {
        let now = unix_now();
        // Found once for all the flags.
        let positions = context.slots_for(self);
        self.keys
            .iter()
            .map(|key| self.evaluate_with(key, context, Some(&positions), || now))
            .collect()
    }

    /// [`FlagSet::evaluate`] with a given `$flagd.timestamp` (Unix seconds).
    pub fn evaluate_at<'a>(
        &'a self,
        key: &'a str,
        context: &EvaluationContext,
        timestamp: i64,
    ) -> Resolution<'a> {
        self.evaluate_with(key, context, None, || timestamp)
    }

    /// The clock is read only for flags that have targeting. `positions`:
    /// the context's slot positions for this set, when the caller already
    /// has them (else found on the context).
    fn evaluate_with<'a>(
        &'a self,
        key: &'a str,
        context: &EvaluationContext,
        positions: Option<&[u32]>,
        timestamp: impl FnOnce() -> i64,
    ) -> Resolution<'a> {
        let Some(flag) = self.flags.get(key) else {
            return Resolution::error(
                key,
                &EMPTY_METADATA,
                ErrorCode::FlagNotFound,
                format!("flag `{key}` not found"),
            );
        };
        if let Some(why) = &flag.broken {
            return Resolution::error(
                key,
                &flag.metadata,
                ErrorCode::ParseError,
                format!("flag `{key}` failed validation: {why}"),
            );
        }
        if !flag.enabled {
            return Resolution::ok(key, flag, Reason::Disabled, None);
        }
        // Looked up only where a resolution needs it: most evaluations of a
        // flag with targeting select a variant.
        let default = || {
            flag.default_variant
                .as_deref()
                .and_then(|d| variant(flag, d))
        };
        let Some(targeting) = &flag.targeting else {
            let default = default();
            let reason = if default.is_some() {
                Reason::Static
            } else {
                Reason::Default
            };
            return Resolution::ok(key, flag, reason, default);
        };
        targeted(self, key, flag, targeting, context, positions, timestamp)
    }
}

/// A flag with targeting, evaluated. Out of line so that static and
/// disabled flags, the cheapest evaluations, do not pay for its frame.
#[inline(never)]
fn targeted<'a>(
    set: &FlagSet,
    key: &'a str,
    flag: &'a Flag,
    targeting: &Targeting,
    context: &EvaluationContext,
    positions: Option<&[u32]>,
    timestamp: impl FnOnce() -> i64,
) -> Resolution<'a> {
    let default = || {
        flag.default_variant
            .as_deref()
            .and_then(|d| variant(flag, d))
    };
    let enrichment = Enrichment {
        flag_key: key,
        // The clock read (~70 instructions) is a measurable part of a
        // fast-path evaluation; most rules never look at it.
        timestamp: if targeting.rule.reads_flagd_timestamp() {
            timestamp()
        } else {
            0
        },
        targeting_key_if_missing: None,
    };
    let found;
    let positions = match positions {
        Some(p) => p,
        None => {
            found = context.slots_for(set);
            &*found
        }
    };
    // Empty when not found (the rule then reads members by name).
    let slots = positions.get(targeting.slots.clone()).unwrap_or(&[]);
    let selected =
        targeting
            .rule
            .evaluate_targeting_at(&context.prepared, slots, &enrichment, |r| select(flag, r));
    match selected {
        Err(e) => Resolution::error(
            key,
            &flag.metadata,
            ErrorCode::ParseError,
            format!("targeting of flag `{key}` failed: {e}"),
        ),
        Ok(Selected::Variant(name, value)) => {
            Resolution::ok(key, flag, Reason::TargetingMatch, Some((name, value)))
        }
        Ok(Selected::Unknown(name)) => Resolution::error(
            key,
            &flag.metadata,
            ErrorCode::General,
            format!("targeting of flag `{key}` returned {name}, which is not one of its variants"),
        ),
        Ok(Selected::Null) => Resolution::ok(key, flag, Reason::Default, default()),
    }
}

/// The variant named `name`. Flags have a handful of variants: comparing
/// names one by one (inline, no `memcmp` call for short names) is cheaper
/// than hashing the name (SipHash, in serde_json's map); many variants
/// still go through the map.
fn variant<'a>(flag: &'a Flag, name: &str) -> Option<(&'a String, &'a Value)> {
    const SCAN_UP_TO: usize = 8;
    if flag.variants.len() <= SCAN_UP_TO {
        flag.variants.iter().find(|(k, _)| str_eq(k, name))
    } else {
        flag.variants.get_key_value(name)
    }
}

fn select<'a>(flag: &'a Flag, result: TargetingResult<'_>) -> Selected<'a> {
    let name: &str = match &result {
        TargetingResult::Null => return Selected::Null,
        TargetingResult::Text(s) => s,
        TargetingResult::Json(s) => s,
    };
    match variant(flag, name) {
        Some((k, v)) => Selected::Variant(k, v),
        None => Selected::Unknown(match result {
            TargetingResult::Json(s) => s,
            _ => Value::String(name.to_owned()).to_string(),
        }),
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

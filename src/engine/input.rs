//! Server-side input validation: whatever the client checked, a submit is
//! checked again here against the components the client was shown.

use crate::codes::Code;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

use crate::flow::compile::CompiledFlow;
use crate::flow::model::ComponentDef;
use crate::flow::validate;

/// A problem with one submitted field (or, with `field: None`, with the
/// submit as a whole).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: Option<String>,
    pub code: Code,
    pub message: String,
}

impl FieldError {
    fn new(field: &str, code: Code, message: impl Into<String>) -> Self {
        FieldError {
            field: Some(field.to_string()),
            code,
            message: message.into(),
        }
    }
}

// The WHATWG HTML "valid e-mail address" production: what browsers accept
// in <input type=email>, so server and web client agree.
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$",
    )
    .expect("static regex")
});

/// Longest text a `text_input` without `max_length` accepts. Submitted
/// text is shown again by templates, whose output is capped
/// ([`MAX_OUTPUT_BYTES`](crate::flow::template::MAX_OUTPUT_BYTES)): an
/// unbounded field would let one valid submit make a later screen fail to
/// render. 4096 characters are at most 16 KiB of UTF-8.
pub const DEFAULT_MAX_TEXT_CHARS: u32 = 4096;

/// A failed validation: the errors, and the draft (what was typed, known
/// inputs only) to show again with them.
pub type Rejected = (Vec<FieldError>, Map<String, Value>);

/// Validates `values` against every shown input in `components`, and
/// against what each shown custom component submits: its declared
/// `inputs`, or else the inputs of `inherited` (the screen's first
/// fallback). On success returns the cleaned values (known inputs only,
/// normalized types); on failure the errors and the draft (what was
/// typed, known inputs only).
pub fn validate(
    flow: &CompiledFlow,
    components: &[ComponentDef],
    inherited: &[ComponentDef],
    values: &Map<String, Value>,
    context: &Value,
) -> Result<Map<String, Value>, Rejected> {
    let mut clean = Map::new();
    let mut draft = Map::new();
    let mut errors = Vec::new();
    let version = context["client"]["app_version"]
        .as_str()
        .and_then(crate::flow::compile::lenient_semver);
    let mut customs: Vec<&ComponentDef> = Vec::new();
    let mut visit = |c: &ComponentDef| {
        let Some(id) = c.id().filter(|_| c.is_input()) else {
            return;
        };
        if clean.contains_key(id)
            || errors
                .iter()
                .any(|e: &FieldError| e.field.as_deref() == Some(id))
        {
            // Declared twice (a custom input and the fallback's): checked once.
            return;
        }
        let raw = values.get(id).unwrap_or(&Value::Null);
        if !raw.is_null() {
            draft.insert(id.to_string(), raw.clone());
        }
        match check(flow, c, id, raw, context) {
            Ok(Some(v)) => {
                clean.insert(id.to_string(), v);
            }
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
    };
    let shown = |c: &ComponentDef| {
        // A guard whose rule fails hides nothing: render fails the same way.
        super::view::visible(flow, c, context, version.as_ref()).unwrap_or(true)
    };
    for c in components {
        walk(c, &shown, &mut |c| {
            if matches!(c, ComponentDef::Custom { .. }) {
                customs.push(c);
            }
            visit(c);
        });
    }
    let mut inherit = false;
    for custom in customs {
        match custom {
            ComponentDef::Custom {
                inputs: Some(inputs),
                ..
            } => {
                for input in inputs {
                    visit(&input.to_component());
                }
            }
            _ => inherit = true,
        }
    }
    if inherit {
        for c in inherited {
            walk(c, &shown, &mut visit);
        }
    }
    if errors.is_empty() {
        Ok(clean)
    } else {
        Err((errors, draft))
    }
}

/// Visits the shown components of the tree under `c`, depth first.
fn walk<'a>(
    c: &'a ComponentDef,
    shown: &dyn Fn(&ComponentDef) -> bool,
    f: &mut dyn FnMut(&'a ComponentDef),
) {
    if !shown(c) {
        return;
    }
    f(c);
    for child in c.children() {
        walk(child, shown, f);
    }
}

fn is_blank(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        _ => false,
    }
}

fn is_required(c: &ComponentDef) -> bool {
    match c {
        ComponentDef::TextInput { required, .. }
        | ComponentDef::NumberInput { required, .. }
        | ComponentDef::EmailInput { required, .. }
        | ComponentDef::Select { required, .. }
        | ComponentDef::Checkbox { required, .. }
        | ComponentDef::Date { required, .. } => *required,
        _ => false,
    }
}

fn required_error(id: &str) -> FieldError {
    FieldError::new(id, Code::Required, "This field is required.")
}

/// Ok(None): empty and optional, nothing to store.
fn check(
    flow: &CompiledFlow,
    c: &ComponentDef,
    id: &str,
    raw: &Value,
    context: &Value,
) -> Result<Option<Value>, FieldError> {
    // An empty value is the same for every input but a checkbox (whose
    // "empty" is `false`): required → REQUIRED, optional → nothing stored.
    if !matches!(c, ComponentDef::Checkbox { .. }) && is_blank(raw) {
        return if is_required(c) {
            Err(required_error(id))
        } else {
            Ok(None)
        };
    }
    match c {
        ComponentDef::TextInput {
            min_length,
            max_length,
            pattern,
            pattern_message,
            ..
        } => {
            let Value::String(s) = raw else {
                return Err(FieldError::new(id, Code::InvalidType, "Expected text."));
            };
            let len = s.chars().count() as u32;
            if let Some(min) = min_length
                && len < *min
            {
                return Err(FieldError::new(
                    id,
                    Code::TooShort,
                    format!("Enter at least {min} characters."),
                ));
            }
            let max = max_length.unwrap_or(DEFAULT_MAX_TEXT_CHARS);
            if len > max {
                return Err(FieldError::new(
                    id,
                    Code::TooLong,
                    format!("Enter at most {max} characters."),
                ));
            }
            if let Some(p) = pattern {
                let re = flow
                    .pattern(p)
                    .expect("patterns are compiled with the flow");
                if !re.is_match(s) {
                    let message = pattern_message
                        .as_ref()
                        .and_then(|t| super::view::text_for_message(flow, t, context))
                        .unwrap_or_else(|| "The value has the wrong format.".to_string());
                    return Err(FieldError::new(id, Code::PatternMismatch, message));
                }
            }
            Ok(Some(Value::String(s.clone())))
        }
        ComponentDef::EmailInput { .. } => match raw {
            Value::String(s) if s.len() <= 254 && EMAIL.is_match(s.trim()) => {
                Ok(Some(Value::String(s.trim().to_string())))
            }
            _ => Err(FieldError::new(
                id,
                Code::InvalidEmail,
                "Enter a valid e-mail address.",
            )),
        },
        ComponentDef::NumberInput {
            min, max, integer, ..
        } => {
            let n = match raw {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
                _ => None,
            };
            let Some(n) = n else {
                return Err(FieldError::new(id, Code::InvalidNumber, "Enter a number."));
            };
            if *integer && n.fract() != 0.0 {
                return Err(FieldError::new(
                    id,
                    Code::NotInteger,
                    "Enter a whole number.",
                ));
            }
            if let Some(min) = min
                && n < *min
            {
                return Err(FieldError::new(
                    id,
                    Code::TooSmall,
                    format!("Enter {min} or more."),
                ));
            }
            if let Some(max) = max
                && n > *max
            {
                return Err(FieldError::new(
                    id,
                    Code::TooLarge,
                    format!("Enter {max} or less."),
                ));
            }
            let num = if n.fract() == 0.0 && n.abs() < 9.0e15 {
                Number::from(n as i64)
            } else {
                Number::from_f64(n).expect("finite")
            };
            Ok(Some(Value::Number(num)))
        }
        ComponentDef::Select { options, .. } => match raw {
            Value::String(s) if options.iter().any(|o| &o.value == s) => Ok(Some(raw.clone())),
            _ => Err(FieldError::new(
                id,
                Code::InvalidOption,
                "Choose one of the options.",
            )),
        },
        ComponentDef::Checkbox { required, .. } => {
            let checked = match raw {
                Value::Null => false,
                Value::Bool(b) => *b,
                _ => {
                    return Err(FieldError::new(
                        id,
                        Code::InvalidType,
                        "Expected true or false.",
                    ));
                }
            };
            if *required && !checked {
                return Err(FieldError::new(
                    id,
                    Code::Required,
                    "This box must be checked.",
                ));
            }
            Ok(Some(Value::Bool(checked)))
        }
        ComponentDef::Date { min, max, .. } => {
            let Some(s) = raw
                .as_str()
                .map(str::trim)
                .filter(|s| validate::parse_date(s).is_some())
            else {
                return Err(FieldError::new(
                    id,
                    Code::InvalidDate,
                    "Enter a date as YYYY-MM-DD.",
                ));
            };
            // Same fixed-width format on both sides: string order is date order.
            if let Some(min) = min
                && s < min.as_str()
            {
                return Err(FieldError::new(
                    id,
                    Code::TooEarly,
                    format!("Enter {min} or later."),
                ));
            }
            if let Some(max) = max
                && s > max.as_str()
            {
                return Err(FieldError::new(
                    id,
                    Code::TooLate,
                    format!("Enter {max} or earlier."),
                ));
            }
            Ok(Some(Value::String(s.to_string())))
        }
        _ => Ok(None),
    }
}

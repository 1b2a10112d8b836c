//! The one datalogic `Engine` every rule is compiled and evaluated with: its
//! configuration (jsonlogic.com truthiness and coercions) and the operators
//! Baton adds to it (flagd's `fractional`, `starts_with`, `ends_with`,
//! jsonlogic.com's `log`, and the data-literal wrapper).

use std::sync::LazyLock;

use datalogic_rs::bumpalo::Bump;
use datalogic_rs::datavalue::{NumberValue, OwnedDataValue};
use datalogic_rs::operator::EvalContext;
use datalogic_rs::{
    ArenaExt, CustomOperator, DataValue, DivisionByZeroHandling, Engine, EvaluationConfig,
    NanHandling, TruthyEvaluator,
};

/// Internal name `fractional` is compiled under. Not in the operator
/// allow-list, so a rule cannot call it directly.
pub(crate) const FRACTIONAL_OP: &str = "baton:fractional";
/// Internal operator that returns its JSON-string argument parsed, used for
/// multi-key objects, which jsonlogic.com treats as data.
pub(crate) const LITERAL_OP: &str = "baton:literal";
/// JavaScript `==` / `!=` (datalogic's loose equality differs, e.g. it says
/// `null == 0`).
pub(crate) const LOOSE_EQ_OP: &str = "baton:==";
pub(crate) const LOOSE_NE_OP: &str = "baton:!=";
/// json-logic-js `missing` / `missing_some` (datalogic counts `null` and `""`
/// values as present). `analyze` passes the current scope data (`{"var": ""}`)
/// as the first argument, since a custom operator only sees the root.
pub(crate) const MISSING_OP: &str = "baton:missing";
pub(crate) const MISSING_SOME_OP: &str = "baton:missing_some";

pub(crate) static ENGINE: LazyLock<Engine> = LazyLock::new(|| {
    Engine::builder()
        .with_config(config())
        .add_operator(FRACTIONAL_OP, Fractional)
        .add_operator("starts_with", StringAffix { prefix: true })
        .add_operator("ends_with", StringAffix { prefix: false })
        .add_operator("log", Log)
        .add_operator(LITERAL_OP, Literal)
        .add_operator(LOOSE_EQ_OP, LooseEq { negate: false })
        .add_operator(LOOSE_NE_OP, LooseEq { negate: true })
        .add_operator(MISSING_OP, Missing)
        .add_operator(MISSING_SOME_OP, MissingSome)
        .build()
});

fn config() -> EvaluationConfig {
    EvaluationConfig::default()
        // datalogic's JavaScript preset calls `{}` falsy; jsonlogic.com
        // (`!!value` except empty arrays) calls it truthy.
        .with_truthy_evaluator(TruthyEvaluator::custom(truthy_owned))
        // JavaScript `==` never throws; mismatched types are just unequal.
        .with_loose_equality_errors(false)
        // json-logic-js never throws on arithmetic: it yields NaN, which JSON
        // renders as null.
        .with_arithmetic_nan_handling(NanHandling::ReturnNull)
        // JavaScript: x/0 is ±Infinity (JSON null) rather than f64::MAX.
        .with_division_by_zero(DivisionByZeroHandling::ReturnInfinity)
}

fn truthy_owned(v: &OwnedDataValue) -> bool {
    match v {
        OwnedDataValue::Null => false,
        OwnedDataValue::Bool(b) => *b,
        OwnedDataValue::Number(n) => number_truthy(n),
        OwnedDataValue::String(s) => !s.is_empty(),
        OwnedDataValue::Array(items) => !items.is_empty(),
        OwnedDataValue::Object(_) => true,
    }
}

pub(crate) fn truthy_arena(v: &DataValue<'_>) -> bool {
    match v {
        DataValue::Null => false,
        DataValue::Bool(b) => *b,
        DataValue::Number(n) => number_truthy(n),
        DataValue::String(s) => !s.is_empty(),
        DataValue::Array(items) => !items.is_empty(),
        DataValue::Object(_) => true,
    }
}

fn number_truthy(n: &NumberValue) -> bool {
    !n.is_zero() && !n.is_nan()
}

/// flagd's `fractional` (v2: high-precision, nested variants), per the flagd
/// Go evaluator and the flagd-testbed conformance flags:
///
/// * first argument a string → bucketing key, the rest are buckets;
///   otherwise the key is `$flagd.flagKey` + `targetingKey` from the root
///   data (a `null` first argument is skipped, anything else is a bucket);
///   `targetingKey` must be a string (empty is fine), else `null`;
/// * a bucket is `[variant]` or `[variant, weight]`; the variant is a
///   string, bool, number or null; the weight a whole number (default 1,
///   `null` → 1, negative → 0, above `i32::MAX` → `null`);
/// * `bucket = (murmur3_x86_32(key) as u64 * total_weight) >> 32`, and the
///   first bucket whose cumulative weight exceeds it wins;
/// * any malformed input, or a total weight of 0 or above `i32::MAX`,
///   yields `null` so flag evaluation falls back to the default variant.
struct Fractional;

impl CustomOperator for Fractional {
    fn evaluate<'a>(
        &self,
        args: &[&'a DataValue<'a>],
        ctx: &mut EvalContext<'_, 'a>,
        arena: &'a Bump,
    ) -> datalogic_rs::Result<&'a DataValue<'a>> {
        Ok(fractional(args, ctx.root_input()).unwrap_or_else(|| arena.null()))
    }
}

fn fractional<'a>(
    args: &[&'a DataValue<'a>],
    root: &'a DataValue<'a>,
) -> Option<&'a DataValue<'a>> {
    let (first, rest) = args.split_first()?;
    let (hash, buckets): (u32, &[&'a DataValue<'a>]) = match first.as_str() {
        Some(explicit) => (murmur3_x86_32(explicit.as_bytes()), rest),
        None => {
            let buckets = if first.is_null() { rest } else { args };
            let targeting_key = root.get("targetingKey")?.as_str()?;
            let flag_key = root
                .get("$flagd")
                .and_then(|f| f.get("flagKey"))
                .and_then(DataValue::as_str)
                .unwrap_or("");
            (implicit_key_hash(flag_key, targeting_key), buckets)
        }
    };
    if buckets.is_empty() {
        return None;
    }

    // Two passes over the buckets instead of collecting them: no allocation
    // on the hot path.
    let mut total: u64 = 0;
    for b in buckets {
        total += parse_bucket(b)?.1;
        if total > i32::MAX as u64 {
            return None;
        }
    }
    if total == 0 {
        return None;
    }
    let bucket = bucket_position(hash, total);
    let mut end = 0;
    for b in buckets {
        let (variant, weight) = parse_bucket(b)?;
        end += weight;
        if bucket < end {
            return Some(variant);
        }
    }
    None
}

/// murmur3 of flagd's implicit bucketing key, `$flagd.flagKey` followed by
/// `targetingKey`, concatenated on the stack when short (it nearly always
/// is) so no evaluation allocates for it.
pub(crate) fn implicit_key_hash(flag_key: &str, targeting_key: &str) -> u32 {
    let len = flag_key.len() + targeting_key.len();
    let mut stack = [0u8; 256];
    let mut heap = Vec::new();
    let buf: &mut [u8] = if len <= stack.len() {
        &mut stack[..len]
    } else {
        heap.resize(len, 0);
        &mut heap
    };
    buf[..flag_key.len()].copy_from_slice(flag_key.as_bytes());
    buf[flag_key.len()..].copy_from_slice(targeting_key.as_bytes());
    murmur3_x86_32(buf)
}

/// flagd's bucket for a key hash: `(hash * total_weight) >> 32`, in
/// `0..total`. The first bucket whose cumulative weight exceeds it wins.
pub(crate) fn bucket_position(hash: u32, total: u64) -> u64 {
    (u64::from(hash) * total) >> 32
}

/// A `fractional` bucket, `[variant]` or `[variant, weight]`, as
/// `(variant, weight)`; `None` when malformed (see [`Fractional`]).
pub(crate) fn parse_bucket<'a>(b: &'a DataValue<'a>) -> Option<(&'a DataValue<'a>, u64)> {
    let items = b.as_array()?;
    let variant = items.first()?;
    if !matches!(
        variant,
        DataValue::String(_) | DataValue::Bool(_) | DataValue::Number(_) | DataValue::Null
    ) {
        return None;
    }
    let weight = match items.get(1) {
        None | Some(DataValue::Null) => 1,
        Some(DataValue::Number(n)) => {
            let w = n.as_f64();
            if !w.is_finite() || w.fract() != 0.0 || w > i32::MAX as f64 {
                return None;
            }
            if w < 0.0 { 0 } else { w as u64 }
        }
        Some(_) => return None,
    };
    Some((variant, weight))
}

/// MurmurHash3 x86_32 with seed 0, as flagd uses it. Written out here (not
/// the `murmur3` crate) because it runs on every `fractional` evaluation and
/// the crate's `Read`-based API costs more than the hash; the tests check it
/// against the crate.
pub(crate) fn murmur3_x86_32(bytes: &[u8]) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h = 0u32;
    let mut blocks = bytes.chunks_exact(4);
    for block in &mut blocks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let mut k = 0u32;
        for (i, byte) in tail.iter().enumerate() {
            k ^= u32::from(*byte) << (8 * i);
        }
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
    }
    h ^= bytes.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// flagd's `starts_with` / `ends_with`: exactly two string arguments, else
/// `null` (flagd-testbed `@operator-errors`: null, not false, so the flag
/// falls back to its default variant).
struct StringAffix {
    prefix: bool,
}

impl CustomOperator for StringAffix {
    fn evaluate<'a>(
        &self,
        args: &[&'a DataValue<'a>],
        _ctx: &mut EvalContext<'_, 'a>,
        arena: &'a Bump,
    ) -> datalogic_rs::Result<&'a DataValue<'a>> {
        let [value, affix] = args else {
            return Ok(arena.null());
        };
        Ok(match string_affix(value, affix, self.prefix) {
            Some(b) => arena.bool(b),
            None => arena.null(),
        })
    }
}

/// `starts_with` (`prefix`) or `ends_with` on two evaluated arguments;
/// `None` (the rule's `null`) unless both are strings.
pub(crate) fn string_affix(
    value: &DataValue<'_>,
    affix: &DataValue<'_>,
    prefix: bool,
) -> Option<bool> {
    let (value, affix) = (value.as_str()?, affix.as_str()?);
    Some(if prefix {
        value.starts_with(affix)
    } else {
        value.ends_with(affix)
    })
}

/// jsonlogic.com's `log`: returns its first argument. json-logic-js also
/// prints it; Baton does not, since rule data may hold personal data.
struct Log;

impl CustomOperator for Log {
    fn evaluate<'a>(
        &self,
        args: &[&'a DataValue<'a>],
        _ctx: &mut EvalContext<'_, 'a>,
        arena: &'a Bump,
    ) -> datalogic_rs::Result<&'a DataValue<'a>> {
        Ok(args.first().copied().unwrap_or_else(|| arena.null()))
    }
}

/// Returns its single argument, a JSON text, parsed. See `analyze`.
struct Literal;

impl CustomOperator for Literal {
    fn evaluate<'a>(
        &self,
        args: &[&'a DataValue<'a>],
        _ctx: &mut EvalContext<'_, 'a>,
        arena: &'a Bump,
    ) -> datalogic_rs::Result<&'a DataValue<'a>> {
        let text = args.first().and_then(|a| a.as_str()).ok_or_else(|| {
            datalogic_rs::Error::invalid_arguments("literal expects its JSON text")
        })?;
        let value = DataValue::from_str(text, arena)?;
        Ok(arena.alloc(value))
    }
}

/// JavaScript's abstract equality (`==`), the comparison json-logic-js uses.
struct LooseEq {
    negate: bool,
}

impl CustomOperator for LooseEq {
    fn evaluate<'a>(
        &self,
        args: &[&'a DataValue<'a>],
        _ctx: &mut EvalContext<'_, 'a>,
        arena: &'a Bump,
    ) -> datalogic_rs::Result<&'a DataValue<'a>> {
        // A missing argument is JavaScript's `undefined`, which only equals
        // `null`/`undefined`.
        let eq = match (args.first(), args.get(1)) {
            (Some(a), Some(b)) => js_loose_eq(a, b),
            (Some(v), None) | (None, Some(v)) => v.is_null(),
            (None, None) => true,
        };
        Ok(arena.bool(eq != self.negate))
    }
}

pub(crate) fn js_loose_eq(a: &DataValue<'_>, b: &DataValue<'_>) -> bool {
    use DataValue as V;
    match (a, b) {
        (V::Null, V::Null) => true,
        (V::Null, _) | (_, V::Null) => false,
        (V::Number(x), V::Number(y)) => match (x, y) {
            (NumberValue::Integer(x), NumberValue::Integer(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (V::String(x), V::String(y)) => x == y,
        (V::Bool(x), V::Bool(y)) => x == y,
        // Objects compare by identity in JavaScript: two reads of the same
        // data node are equal, two equal-looking literals are not.
        (V::Array(x), V::Array(y)) => std::ptr::eq(*x, *y),
        (V::Object(x), V::Object(y)) => std::ptr::eq(*x, *y),
        (V::Array(_) | V::Object(_), V::Array(_) | V::Object(_)) => false,
        (V::Bool(x), _) => js_loose_eq(&DataValue::from_i64(i64::from(*x)), b),
        (_, V::Bool(y)) => js_loose_eq(a, &DataValue::from_i64(i64::from(*y))),
        (V::Number(x), V::String(s)) | (V::String(s), V::Number(x)) => {
            js_string_to_number(s) == x.as_f64()
        }
        // Array/object against a primitive: ToPrimitive gives its string form.
        (V::Array(_) | V::Object(_), _) => primitive_eq(&js_to_string(a), b),
        (_, V::Array(_) | V::Object(_)) => primitive_eq(&js_to_string(b), a),
    }
}

fn primitive_eq(s: &str, other: &DataValue<'_>) -> bool {
    match other {
        DataValue::String(o) => s == *o,
        DataValue::Number(n) => js_string_to_number(s) == n.as_f64(),
        _ => false,
    }
}

/// JavaScript `Number(string)`: trimmed, empty → 0, `0x`/`0o`/`0b`
/// prefixes, `Infinity`, decimal literals; anything else NaN.
pub(crate) fn js_string_to_number(s: &str) -> f64 {
    let t = s.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    if t.is_empty() {
        return 0.0;
    }
    for (prefix, radix) in [
        ("0x", 16),
        ("0X", 16),
        ("0o", 8),
        ("0O", 8),
        ("0b", 2),
        ("0B", 2),
    ] {
        if let Some(digits) = t.strip_prefix(prefix) {
            return u64::from_str_radix(digits, radix).map_or(f64::NAN, |v| v as f64);
        }
    }
    match t {
        "Infinity" | "+Infinity" => return f64::INFINITY,
        "-Infinity" => return f64::NEG_INFINITY,
        _ => {}
    }
    // Rust also accepts "inf"/"nan"; JavaScript's grammar has no letters
    // besides the exponent marker.
    if t.bytes()
        .all(|c| c.is_ascii_digit() || matches!(c, b'+' | b'-' | b'.' | b'e' | b'E'))
    {
        t.parse().unwrap_or(f64::NAN)
    } else {
        f64::NAN
    }
}

/// JavaScript `String(value)` for JSON values (arrays join with `,`,
/// objects are `[object Object]`, `null` inside an array is empty).
fn js_to_string(v: &DataValue<'_>) -> String {
    match v {
        DataValue::Null => "null".to_string(),
        DataValue::Bool(b) => b.to_string(),
        DataValue::Number(n) => js_number_to_string(n),
        DataValue::String(s) => (*s).to_string(),
        DataValue::Array(items) => items
            .iter()
            .map(|i| {
                if i.is_null() {
                    String::new()
                } else {
                    js_to_string(i)
                }
            })
            .collect::<Vec<_>>()
            .join(","),
        DataValue::Object(_) => "[object Object]".to_string(),
    }
}

fn js_number_to_string(n: &NumberValue) -> String {
    match n {
        NumberValue::Integer(i) => i.to_string(),
        NumberValue::Float(f) if f.is_nan() => "NaN".to_string(),
        NumberValue::Float(f) if f.is_infinite() => {
            if *f > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
        }
        NumberValue::Float(f) => f.to_string(),
    }
}

/// json-logic-js `missing`: args are `[scope data, keys...]`, or
/// `[scope data, [keys]]`. A key is missing when `var` would give `null`
/// (absent or null) or `""`.
struct Missing;

impl CustomOperator for Missing {
    fn evaluate<'a>(
        &self,
        args: &[&'a DataValue<'a>],
        _ctx: &mut EvalContext<'_, 'a>,
        arena: &'a Bump,
    ) -> datalogic_rs::Result<&'a DataValue<'a>> {
        let Some((data, keys)) = args.split_first() else {
            return Ok(arena.array(&[]));
        };
        let missing = missing_keys(data, keys);
        Ok(arena.array(&missing))
    }
}

fn missing_keys<'a>(data: &DataValue<'a>, args: &[&'a DataValue<'a>]) -> Vec<DataValue<'a>> {
    let keys: Vec<&DataValue<'a>> = match args.first() {
        Some(DataValue::Array(list)) => list.iter().collect(),
        _ => args.to_vec(),
    };
    keys.into_iter()
        .filter(|key| is_missing(data, key))
        .copied()
        .collect()
}

fn is_missing(data: &DataValue<'_>, key: &DataValue<'_>) -> bool {
    let path = match key {
        // `var` with a null or empty key is the data itself.
        DataValue::Null => return matches!(data, DataValue::Null) || data.as_str() == Some(""),
        DataValue::String(s) => (*s).to_string(),
        other => js_to_string(other),
    };
    if path.is_empty() {
        return matches!(data, DataValue::Null) || data.as_str() == Some("");
    }
    let mut current = data;
    for segment in path.split('.') {
        let next = match current {
            DataValue::Object(_) => current.get(segment),
            DataValue::Array(items) => match canonical_index(segment) {
                Some(i) => items.get(i),
                // `length` is a number: present.
                None if segment == "length" => return false,
                None => None,
            },
            DataValue::String(s) => {
                if segment == "length" {
                    return false;
                }
                match canonical_index(segment) {
                    Some(i) if i < s.encode_utf16().count() => return false,
                    _ => None,
                }
            }
            _ => None,
        };
        match next {
            Some(v) => current = v,
            None => return true,
        }
    }
    matches!(current, DataValue::Null) || current.as_str() == Some("")
}

/// JavaScript array index: digits without a leading zero (except "0").
fn canonical_index(segment: &str) -> Option<usize> {
    if segment.is_empty() || (segment.len() > 1 && segment.starts_with('0')) {
        return None;
    }
    if !segment.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    segment.parse().ok()
}

/// json-logic-js `missing_some`: args are `[scope data, need, options]`.
/// Returns `[]` when at least `need` of `options` are present, else the
/// missing ones.
struct MissingSome;

impl CustomOperator for MissingSome {
    fn evaluate<'a>(
        &self,
        args: &[&'a DataValue<'a>],
        _ctx: &mut EvalContext<'_, 'a>,
        arena: &'a Bump,
    ) -> datalogic_rs::Result<&'a DataValue<'a>> {
        let data = args.first().copied().unwrap_or_else(|| arena.null());
        let need = args.get(1).copied().unwrap_or_else(|| arena.null());
        let options = args.get(2).copied().unwrap_or_else(|| arena.null());
        let missing = missing_keys(data, std::slice::from_ref(&options));
        let enough = match options {
            DataValue::Array(list) => {
                let need = match need {
                    DataValue::Number(n) => n.as_f64(),
                    DataValue::String(s) => js_string_to_number(s),
                    DataValue::Bool(b) => f64::from(u8::from(*b)),
                    DataValue::Null => 0.0,
                    _ => f64::NAN,
                };
                (list.len() - missing.len()) as f64 >= need
            }
            // `options.length` is undefined: the comparison is false.
            _ => false,
        };
        Ok(if enough {
            arena.array(&[])
        } else {
            arena.array(&missing)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_known_vectors() {
        // SMHasher reference values, and flagd-testbed's hash-edge preimages.
        assert_eq!(murmur3_x86_32(b""), 0);
        assert_eq!(murmur3_x86_32(b"hello"), 0x248b_fa47);
        assert_eq!(
            murmur3_x86_32(b"The quick brown fox jumps over the lazy dog"),
            0x2e4f_f723
        );
        assert_eq!(murmur3_x86_32(b"ejOoVL"), 0);
        assert_eq!(murmur3_x86_32(b"bY9fO-"), 1);
        assert_eq!(murmur3_x86_32(b"SI7p-"), 2_147_483_647);
        assert_eq!(murmur3_x86_32(b"6LvT0"), 2_147_483_648);
        assert_eq!(murmur3_x86_32(b"ceQdGm"), u32::MAX);
    }

    #[test]
    fn js_string_to_number_follows_ecmascript() {
        for (s, n) in [
            ("", 0.0),
            ("  12 ", 12.0),
            ("0x1A", 26.0),
            ("1e3", 1000.0),
            (".5", 0.5),
            ("5.", 5.0),
            ("-Infinity", f64::NEG_INFINITY),
        ] {
            assert_eq!(js_string_to_number(s), n, "{s:?}");
        }
        for s in ["abc", "1abc", "inf", "NaN", "1,000"] {
            assert!(js_string_to_number(s).is_nan(), "{s:?}");
        }
    }

    #[test]
    fn js_truthiness() {
        let arena = Bump::new();
        for (json, expected) in [
            ("{}", true),
            ("[]", false),
            ("\"0\"", true),
            ("\"\"", false),
            ("0", false),
            ("0.0", false),
            ("-1", true),
            ("null", false),
            ("[0]", true),
        ] {
            let v = DataValue::from_str(json, &arena).unwrap();
            assert_eq!(truthy_arena(&v), expected, "{json}");
            assert_eq!(truthy_owned(&v.to_owned()), expected, "{json}");
        }
    }
}

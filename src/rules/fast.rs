//! The compiled fast path: rules in flagd's common targeting shapes
//! evaluated by a small tree of Baton nodes instead of the datalogic engine.
//!
//! Why this exists next to datalogic-rs (the project's rule is "don't write
//! your own interpreter when a maintained crate does it"): a flag's
//! targeting runs on every evaluation, and datalogic spends most of an
//! evaluation on dispatch rather than on the rule — each custom operator
//! call (`==` with jsonlogic.com semantics, `fractional`) costs about 410
//! instructions before the operator runs, and every truthiness check
//! converts the value to an owned copy because Baton configures a custom
//! truthiness. That kept flag evaluation at ~2,600 instructions, a third of
//! issue #4's target of 8 M evaluations/s.
//!
//! So this is deliberately *not* a second JsonLogic engine:
//!
//! * it covers a closed subset — literals, `var` with literal dotted paths
//!   and defaults, `if`/`?:`, `and`, `or`, `!`, `!!`, `==`, `!=`, `===`,
//!   `!==`, `<`, `<=`, `>`, `>=` (chained / between form), `in`,
//!   `starts_with`, `ends_with`, `sem_ver` with a literal operator and
//!   version, and `fractional` with literal buckets. Anything else (any
//!   other operator, array or object results, iteration, arithmetic) is
//!   not compiled, and the rule runs on datalogic unchanged;
//! * at evaluation it handles only the value types whose semantics are
//!   plain (numbers with numbers, strings with strings, …). Any case where
//!   datalogic would coerce, consult its own helpers or raise an error
//!   makes the fast path give up ([`Bail`]) and the whole rule is evaluated
//!   again by datalogic, so results never depend on a re-implementation of
//!   an edge case;
//! * datalogic stays the reference: the differential property test at the
//!   bottom of this file evaluates generated rules × documents through both
//!   paths and requires identical results, and the official JsonLogic suite
//!   and flagd conformance tests run through the public API, which now
//!   takes this path where it can.
//!
//! Operator helpers with flagd or jsonlogic.com semantics (`fractional`'s
//! bucketing, loose equality, truthiness, `starts_with`) are shared with
//! the datalogic operators in `ops.rs`, not duplicated. `sem_ver` mirrors
//! datalogic's version normalisation, which is private to that crate.
//!
//! A flag's evaluation context is read in place: `$flagd.flagKey`,
//! `$flagd.timestamp` and the probe `targetingKey` come from the
//! [`Enrichment`] instead of a rebuilt root object, so an evaluation
//! allocates nothing.
//!
//! Context members by position ("slots"): a rule numbers the distinct
//! top-level member names its `var`s read (other than flagd's), and a
//! caller that evaluates many rules against one context can find those
//! members once ([`PreparedData::member_position`]) and pass their
//! positions in the [`Scope`]; a `var` is then an indexed load instead of
//! a scan of the context's members by name, which was most of the cost of
//! a rule of a few comparisons. Without positions the lookup is by name,
//! with the same result.
//!
//! [`PreparedData::member_position`]: super::PreparedData::member_position

use std::sync::atomic::{AtomicU32, Ordering};

use datalogic_rs::DataValue;
use datalogic_rs::bumpalo::Bump;
use datalogic_rs::datavalue::{NumberValue, OwnedDataValue};
use serde_json::Value;

use super::Enrichment;
use super::ops::{
    bucket_position, implicit_key_hash, js_loose_eq, murmur3_x86_32, parse_bucket, string_affix,
    truthy_arena,
};

/// The fast path cannot decide this evaluation exactly as datalogic would;
/// the caller evaluates the rule with datalogic instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bail;

type Eval<'a> = Result<DataValue<'a>, Bail>;

/// A rule compiled for the fast path.
#[derive(Debug)]
pub(crate) struct FastRule {
    root: Node,
    /// Some `var` reads `$flagd.timestamp` (or the whole `$flagd`).
    reads_timestamp: bool,
    /// The context member each slot names (see the module docs).
    slot_names: Box<[Box<str>]>,
}

impl FastRule {
    /// `None` when the rule uses anything outside the subset (see the
    /// module docs). `logic` is the rule as written, already checked by
    /// `analyze` (known operators, limits).
    pub(crate) fn compile(logic: &Value) -> Option<FastRule> {
        let mut root = compile(logic)?;
        let mut reads_timestamp = false;
        let mut slot_names: Vec<Box<str>> = Vec::new();
        root.visit_vars_mut(&mut |v| {
            reads_timestamp |= matches!(v.root, RootKey::Flagd(Some(FlagdField::Timestamp) | None));
            if let RootKey::Other = v.root {
                let name = &v.path[0].key;
                v.slot = match slot_names.iter().position(|n| n == name) {
                    Some(i) => i as u32,
                    None => {
                        slot_names.push(name.clone());
                        (slot_names.len() - 1) as u32
                    }
                };
            }
        });
        root.flatten_plain_ands();
        Some(FastRule {
            root,
            reads_timestamp,
            slot_names: slot_names.into(),
        })
    }

    /// The top-level context members this rule reads by slot, in slot
    /// order (see the module docs).
    pub(crate) fn slot_names(&self) -> &[Box<str>] {
        &self.slot_names
    }

    /// Whether an evaluation can see `$flagd.timestamp`. Every `var` in a
    /// fast rule has a literal path, so when this is false the clock need
    /// not be read — on this path or on the datalogic fallback.
    pub(crate) fn reads_timestamp(&self) -> bool {
        self.reads_timestamp
    }

    /// The truthiness of [`FastRule::eval`]'s result, without building
    /// the result where the rule yields a boolean anyway (a condition of
    /// comparisons, the usual decision rule).
    pub(crate) fn matches<'a>(&'a self, scope: &Scope<'a>) -> Result<bool, Bail> {
        self.root.eval_cond(scope)
    }

    /// Evaluate against `scope`. The result borrows from the rule (literals)
    /// and from the data.
    pub(crate) fn eval<'a>(&'a self, scope: &Scope<'a>) -> Eval<'a> {
        match &self.root {
            // Most targeting is an `if`: straight to it, not through the
            // large frame of `Node::eval_op`.
            Node::If(args) => eval_if(args, scope),
            root => root.eval(scope),
        }
    }
}

/// What a rule reads: a data document, and for flag targeting the values
/// flagd adds to it.
pub(crate) struct Scope<'a> {
    root: &'a DataValue<'a>,
    flagd: Option<&'a Enrichment<'a>>,
    /// Targeting only, and empty when not known: for each slot of the
    /// rule, the position of the first member of that name in the context
    /// object, or [`ABSENT`].
    slots: &'a [u32],
    /// The context object's members when `slots` is not empty.
    pairs: &'a [(&'a str, DataValue<'a>)],
    /// The root's members have distinct names, so a lookup by name may
    /// start from the position it found last time ([`Var::hint`]).
    unique: bool,
}

/// A slot whose member the context does not have.
pub(crate) const ABSENT: u32 = u32::MAX;

impl<'a> Scope<'a> {
    /// `data` as the whole document (`Rule::evaluate` and friends);
    /// `unique`: its top-level members have distinct names (see
    /// [`PreparedData::unique_members`](super::PreparedData)).
    pub(crate) fn plain(root: &'a DataValue<'a>, unique: bool) -> Scope<'a> {
        Scope {
            root,
            flagd: None,
            slots: &[],
            pairs: &[],
            unique,
        }
    }

    /// The document `Rule::evaluate_targeting` builds — the context (an
    /// object, else `{}`) with `$flagd` replaced and, when asked,
    /// `targetingKey` supplied — without building it.
    #[cfg(test)]
    pub(crate) fn targeting(context: &'a DataValue<'a>, enrichment: &'a Enrichment<'a>) -> Self {
        Scope {
            root: context,
            flagd: Some(enrichment),
            slots: &[],
            pairs: &[],
            unique: false,
        }
    }

    /// [`Scope::targeting`] with the positions of `rule`'s slots in
    /// `context` (see [`Scope::slots`]); positions for another rule or of
    /// the wrong length are ignored.
    pub(crate) fn targeting_at(
        context: &'a DataValue<'a>,
        enrichment: &'a Enrichment<'a>,
        rule: &FastRule,
        slots: &'a [u32],
    ) -> Self {
        let (slots, pairs) = match context {
            DataValue::Object(pairs) if slots.len() == rule.slot_names.len() => (slots, *pairs),
            _ => (&[][..], &[][..]),
        };
        Scope {
            root: context,
            flagd: Some(enrichment),
            slots,
            pairs,
            unique: false,
        }
    }

    /// The value of a [`Var::direct`] `var` by position, without copying
    /// it: `None` when the scope has no positions or the `var` is not
    /// direct (then [`Scope::lookup`] it).
    #[inline(always)]
    fn direct(&self, var: &Var) -> Option<&'a DataValue<'a>> {
        if !var.direct {
            return None;
        }
        self.member(var.slot, &var.path[0].key, &var.hint)
    }

    /// The top-level member a direct `var` reads — by the slot's position,
    /// or by `name` starting at `hint` in a plain scope whose members have
    /// distinct names — without copying it; `null` when absent. `None`
    /// when the scope offers neither (the `var` is then looked up).
    #[inline(always)]
    fn member(&self, slot: u32, name: &str, hint: &AtomicU32) -> Option<&'a DataValue<'a>> {
        const NULL: &DataValue<'static> = &DataValue::Null;
        if let Some(&at) = self.slots.get(slot as usize) {
            return Some(self.pairs.get(at as usize).map_or(NULL, |(_, v)| v));
        }
        match self.root {
            DataValue::Object(pairs) if self.unique && self.flagd.is_none() => {
                Some(object_get_hinted(pairs, name, hint).unwrap_or(NULL))
            }
            _ => None,
        }
    }

    /// The value `var` reads, `Ok(None)` when absent.
    #[inline(always)]
    fn lookup(&self, var: &Var) -> Result<Option<DataValue<'a>>, Bail> {
        // By position (only targeting scopes have slots, and only
        // `RootKey::Other` vars a slot); `ABSENT` is past the end of any
        // context.
        if let Some(&at) = self.slots.get(var.slot as usize) {
            let top = self.pairs.get(at as usize).map(|(_, v)| *v);
            return Ok(match var.path.get(1..) {
                Some([]) | None => top,
                Some(rest) => top.and_then(|v| walk(v, rest)),
            });
        }
        let first = &var.path[0];
        let top = match (self.flagd, var.root, self.root) {
            (None, _, DataValue::Object(pairs)) if self.unique => {
                object_get_hinted(pairs, &first.key, &var.hint).copied()
            }
            (None, _, _) => step(*self.root, first),
            (Some(_), RootKey::Other, DataValue::Object(pairs)) => object_get(pairs, &first.key),
            (Some(_), RootKey::Other, _) => None,
            (Some(e), _, _) => return self.lookup_flagd(e, var),
        };
        // Most paths have one segment.
        Ok(match var.path.get(1..) {
            Some([]) | None => top,
            Some(rest) => top.and_then(|v| walk(v, rest)),
        })
    }

    /// [`Scope::lookup`] of `$flagd.*` and `targetingKey` in a targeting
    /// scope: what flagd adds to or replaces in the context.
    #[inline(never)]
    fn lookup_flagd(
        &self,
        e: &'a Enrichment<'a>,
        var: &Var,
    ) -> Result<Option<DataValue<'a>>, Bail> {
        let (first, rest) = var.path.split_first().expect("paths are not empty");
        let top = match var.root {
            RootKey::Flagd(field) => {
                let v = match field {
                    // The whole `$flagd` object would have to be built.
                    None => return Err(Bail),
                    Some(FlagdField::FlagKey) => DataValue::String(e.flag_key),
                    Some(FlagdField::Timestamp) => {
                        DataValue::Number(NumberValue::Integer(e.timestamp))
                    }
                    Some(FlagdField::Other) => return Ok(None),
                };
                return Ok(walk(v, &rest[1..]));
            }
            RootKey::TargetingKey if e.targeting_key_if_missing.is_some() => {
                let probe = e.targeting_key_if_missing.unwrap_or("");
                Some(DataValue::String(
                    self.string_targeting_key().unwrap_or(probe),
                ))
            }
            _ => match self.root {
                DataValue::Object(pairs) => object_get(pairs, &first.key),
                _ => None,
            },
        };
        Ok(top.and_then(|v| walk(v, rest)))
    }

    /// The first string `targetingKey` of the context object.
    fn string_targeting_key(&self) -> Option<&'a str> {
        match self.root {
            DataValue::Object(pairs) => pairs
                .iter()
                .find_map(|(k, v)| (*k == "targetingKey").then(|| v.as_str()).flatten()),
            _ => None,
        }
    }

    /// flagd's implicit `fractional` bucketing key, hashed: `None` when
    /// there is no string `targetingKey` (the result is then `null`).
    fn implicit_key_hash(&self) -> Option<u32> {
        match self.flagd {
            Some(e) => {
                let key = self.string_targeting_key().or(e.targeting_key_if_missing)?;
                Some(implicit_key_hash(e.flag_key, key))
            }
            None => {
                let key = self.root.get("targetingKey")?.as_str()?;
                let flag_key = self
                    .root
                    .get("$flagd")
                    .and_then(|f| f.get("flagKey"))
                    .and_then(DataValue::as_str)
                    .unwrap_or("");
                Some(implicit_key_hash(flag_key, key))
            }
        }
    }
}

/// One step of a `var` path, exactly as datalogic takes it: an object
/// member by name, or an array item when the segment parses as `usize`.
fn step<'a>(v: DataValue<'a>, seg: &Segment) -> Option<DataValue<'a>> {
    match v {
        DataValue::Object(pairs) => object_get(pairs, &seg.key),
        DataValue::Array(items) => items.get(seg.index?).copied(),
        _ => None,
    }
}

fn walk<'a>(mut v: DataValue<'a>, path: &[Segment]) -> Option<DataValue<'a>> {
    for seg in path {
        v = step(v, seg)?;
    }
    Some(v)
}

/// The member named `key` of an object whose members have distinct names,
/// tried first at `hint`, the position it was found at last time: a rule
/// evaluated against many documents of one shape then compares one name
/// per `var` instead of scanning (an inline cache, as JavaScript engines
/// keep for property reads). The hint is only a guess, always checked, so
/// threads sharing the rule may overwrite each other's freely.
#[inline(always)]
fn object_get_hinted<'a>(
    pairs: &'a [(&'a str, DataValue<'a>)],
    key: &str,
    hint: &AtomicU32,
) -> Option<&'a DataValue<'a>> {
    if let Some((k, v)) = pairs.get(hint.load(Ordering::Relaxed) as usize)
        && str_eq(k, key)
    {
        return Some(v);
    }
    let at = pairs.iter().position(|(k, _)| str_eq(k, key))?;
    hint.store(at as u32, Ordering::Relaxed);
    Some(&pairs[at].1)
}

/// First member named `key` (datalogic's lookup is first-match too).
#[inline(always)]
fn object_get<'a>(pairs: &'a [(&'a str, DataValue<'a>)], key: &str) -> Option<DataValue<'a>> {
    for (k, v) in pairs {
        if str_eq(k, key) {
            return Some(*v);
        }
    }
    None
}

/// String equality without a `memcmp` call for strings up to 16 bytes
/// (member names and most compared values): the call costs more than the
/// comparison. Two overlapping loads cover every length in a size class.
#[inline(always)]
pub(crate) fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word8 = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap());
    let word4 = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().unwrap());
    match n {
        0 => true,
        1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
        4..=7 => word4(a, 0) == word4(b, 0) && word4(a, n - 4) == word4(b, n - 4),
        8..=16 => word8(a, 0) == word8(b, 0) && word8(a, n - 8) == word8(b, n - 8),
        _ => a == b,
    }
}

/// A `var` with a literal path.
#[derive(Debug)]
struct Var {
    /// Never empty.
    path: Box<[Segment]>,
    /// What the first segment names in a flag's targeting.
    root: RootKey,
    /// This rule's slot for the first segment when `root` is
    /// [`RootKey::Other`] (see the module docs); else unused.
    slot: u32,
    /// One segment, [`RootKey::Other`] and no default: with positions,
    /// the value is the member at the slot's position or `null`.
    direct: bool,
    default: Option<Box<Node>>,
    /// Where the first segment was found last time in a document of
    /// distinct member names (see [`object_get_hinted`]).
    hint: AtomicU32,
}

/// The first segment of a path, classified once so a targeting lookup
/// does not compare it against flagd's names on every evaluation.
#[derive(Debug, Clone, Copy)]
enum RootKey {
    /// `$flagd`, with the field read (`None`: the object itself).
    Flagd(Option<FlagdField>),
    TargetingKey,
    Other,
}

#[derive(Debug, Clone, Copy)]
enum FlagdField {
    FlagKey,
    Timestamp,
    Other,
}

#[derive(Debug)]
struct Segment {
    key: Box<str>,
    index: Option<usize>,
}

/// A JSON scalar written in the rule.
#[derive(Debug)]
enum Scalar {
    Null,
    Bool(bool),
    Number(NumberValue),
    String(Box<str>),
}

impl Scalar {
    fn from_json(v: &Value) -> Option<Scalar> {
        Some(match OwnedDataValue::from(v) {
            OwnedDataValue::Null => Scalar::Null,
            OwnedDataValue::Bool(b) => Scalar::Bool(b),
            OwnedDataValue::Number(n) => Scalar::Number(n),
            OwnedDataValue::String(s) => Scalar::String(s.into()),
            _ => return None,
        })
    }

    fn from_data(v: &DataValue<'_>) -> Option<Scalar> {
        Some(match v {
            DataValue::Null => Scalar::Null,
            DataValue::Bool(b) => Scalar::Bool(*b),
            DataValue::Number(n) => Scalar::Number(*n),
            DataValue::String(s) => Scalar::String((*s).into()),
            _ => return None,
        })
    }

    fn value(&self) -> DataValue<'_> {
        match self {
            Scalar::Null => DataValue::Null,
            Scalar::Bool(b) => DataValue::Bool(*b),
            Scalar::Number(n) => DataValue::Number(*n),
            Scalar::String(s) => DataValue::String(s),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Order {
    Lt,
    Le,
    Gt,
    Ge,
}

impl Order {
    /// The same test with the operands swapped.
    fn flip(self) -> Order {
        match self {
            Order::Lt => Order::Gt,
            Order::Le => Order::Ge,
            Order::Gt => Order::Lt,
            Order::Ge => Order::Le,
        }
    }

    #[inline(always)]
    fn holds<T: PartialOrd + ?Sized>(self, a: &T, b: &T) -> bool {
        match self {
            Order::Lt => a < b,
            Order::Le => a <= b,
            Order::Gt => a > b,
            Order::Ge => a >= b,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum SemVerOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Caret,
    Tilde,
}

#[derive(Debug)]
struct VarTest {
    var: Var,
    literal: Scalar,
    /// `{"op": [var, literal]}` rather than `[literal, var]`.
    var_first: bool,
    test: Test,
    /// The test specialised by the literal's type, decided at compile
    /// time.
    quick: Quick,
}

/// A [`VarTest`] specialised by its literal's type: what it is when the
/// value read has the type the specialisation expects. Any other value
/// type takes the general test.
#[derive(Debug, Clone, Copy)]
enum Quick {
    /// No specialisation.
    None,
    /// An ordering against a number: `value <order> literal` (operands
    /// already swapped for `[literal, var]`). A value that is not a
    /// number bails, as [`compare`] does.
    Number(Order, f64),
    /// Loose (in)equality with a string literal: for a string value,
    /// string equality (`!=` when true).
    Str(bool),
}

#[derive(Debug, Clone, Copy)]
enum Test {
    /// Baton's `==`, or `!=` when true.
    Loose(bool),
    StrictEq,
    StrictNe,
    Order(Order),
}

/// `test` of `a` and `b` as a [`VarTest`] when one is a `var` and the
/// other a literal; else the operands back.
fn var_test(test: Test, a: Node, b: Node) -> Result<Node, (Node, Node)> {
    let (var, literal, var_first) = match (a, b) {
        (Node::Var(var), Node::Literal(literal)) => (var, literal, true),
        (Node::Literal(literal), Node::Var(var)) => (var, literal, false),
        other => return Err(other),
    };
    let quick = match (test, &literal) {
        (Test::Order(order), Scalar::Number(n)) => {
            Quick::Number(if var_first { order } else { order.flip() }, n.as_f64())
        }
        (Test::Loose(negate), Scalar::String(_)) => Quick::Str(negate),
        _ => Quick::None,
    };
    Ok(Node::VarTest(Box::new(VarTest {
        var,
        literal,
        var_first,
        test,
        quick,
    })))
}

#[derive(Debug)]
struct InList {
    needle: Node,
    items: Box<[Scalar]>,
    /// Every item is a string.
    strings: bool,
}

/// The usual targeting condition — an `and` of comparisons of top-level
/// context members with literals — as a flat list the evaluation runs
/// through in one loop: per operand an indexed (or hinted) load, a type
/// check and the comparison, with no dispatch on node kinds. `nodes` are
/// the operands as compiled, which decide every case the plain form does
/// not: a scope with neither positions nor hints, or a value of another
/// type than the literal's. `plain` repeats each operand's member name and
/// literal next to one another (a copy of what `nodes` hold) so the loop
/// reads one contiguous slice instead of a boxed node per operand.
#[derive(Debug)]
struct AndPlain {
    plain: Box<[Plain]>,
    nodes: Box<[Node]>,
}

/// A [`VarTest`] with a [`Quick`] form, or a string [`InList`], of a
/// [`Var::direct`] `var`.
#[derive(Debug)]
struct Plain {
    slot: u32,
    /// The member's name and lookup hint, for plain scopes (see
    /// [`Scope::member`]).
    name: Box<str>,
    hint: AtomicU32,
    test: PlainTest,
}

#[derive(Debug)]
enum PlainTest {
    /// `value <order> literal` for a number value.
    Number(Order, f64),
    /// `==` (`!=` when true) with a string literal, for a string value.
    Str(Box<str>, bool),
    /// `in` a list of strings, for a string value.
    InStrs(Box<[Box<str>]>),
}

impl Plain {
    /// The plain form of `node`, when it has one.
    fn of(node: &Node) -> Option<Plain> {
        match node {
            Node::VarTest(t) if t.var.direct => {
                let test = match (t.quick, &t.literal) {
                    (Quick::Number(order, n), _) => PlainTest::Number(order, n),
                    (Quick::Str(negate), Scalar::String(s)) => PlainTest::Str(s.clone(), negate),
                    _ => return None,
                };
                Some(Plain {
                    slot: t.var.slot,
                    name: t.var.path[0].key.clone(),
                    hint: AtomicU32::new(0),
                    test,
                })
            }
            Node::InList(list) if list.strings => match &list.needle {
                Node::Var(v) if v.direct => Some(Plain {
                    slot: v.slot,
                    name: v.path[0].key.clone(),
                    hint: AtomicU32::new(0),
                    test: PlainTest::InStrs(
                        list.items
                            .iter()
                            .filter_map(|i| match i {
                                Scalar::String(s) => Some(s.clone()),
                                _ => None,
                            })
                            .collect(),
                    ),
                }),
                _ => None,
            },
            _ => None,
        }
    }

    /// The test on `value`, `None` when the value's type is not the one
    /// this form is for.
    #[inline(always)]
    fn test(&self, value: &DataValue<'_>) -> Option<bool> {
        match (&self.test, value) {
            (PlainTest::Number(order, literal), DataValue::Number(x)) => {
                Some(order.holds(&x.as_f64(), literal))
            }
            (PlainTest::Str(literal, negate), DataValue::String(x)) => {
                Some(str_eq(x, literal) != *negate)
            }
            (PlainTest::InStrs(items), DataValue::String(x)) => {
                Some(items.iter().any(|s| str_eq(s, x)))
            }
            _ => None,
        }
    }
}

impl AndPlain {
    /// Truthiness of the `and` (all operands true; operands are never
    /// empty here).
    #[inline(never)]
    fn holds<'a>(&'a self, scope: &Scope<'a>) -> Result<bool, Bail> {
        for (plain, node) in self.plain.iter().zip(&self.nodes) {
            let quick = scope
                .member(plain.slot, &plain.name, &plain.hint)
                .and_then(|value| plain.test(value));
            let holds = match quick {
                Some(h) => h,
                None => node.eval_cond(scope)?,
            };
            if !holds {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

#[derive(Debug)]
struct Fractional {
    /// The bucketing-key expression; `None`: flagd's implicit key.
    key: Option<Node>,
    /// Each bucket's variant and cumulative weight, precomputed from the
    /// literal buckets.
    buckets: Box<[(Scalar, u64)]>,
    total: u64,
}

#[derive(Debug)]
enum Node {
    Literal(Scalar),
    Var(Var),
    If(Box<[Node]>),
    And(Box<[Node]>),
    /// An `and` whose operands are all plain tests of a top-level member
    /// (see [`Plain`]); made from [`Node::And`] once slots are numbered.
    AndPlain(Box<AndPlain>),
    Or(Box<[Node]>),
    Not(Option<Box<Node>>),
    Truthy(Option<Box<Node>>),
    /// Baton's `==`/`!=` (JavaScript `==`), always two arguments.
    LooseEq(Box<[Node; 2]>, bool),
    /// A two-argument comparison of a `var` with a literal, the usual
    /// targeting condition, evaluated without a call per operand.
    VarTest(Box<VarTest>),
    /// `===`: every argument equals the first.
    StrictEq(Box<[Node]>),
    StrictNe(Box<[Node; 2]>),
    Compare(Order, Box<[Node]>),
    /// `in` against a literal array of scalars.
    InList(Box<InList>),
    In(Box<[Node; 2]>),
    Affix(Box<[Node; 2]>, bool),
    SemVer(Box<Node>, SemVerOp, Option<semver::Version>),
    Fractional(Box<Fractional>),
}

fn compile(v: &Value) -> Option<Node> {
    match v {
        Value::Object(map) if map.len() == 1 => {
            let (op, args) = map.iter().next()?;
            let args: &[Value] = match args {
                Value::Array(items) => items,
                single => std::slice::from_ref(single),
            };
            compile_op(op, args)
        }
        // Arrays evaluate their items and `{}`/multi-key objects are data:
        // results the subset does not produce.
        Value::Array(_) | Value::Object(_) => None,
        scalar => Some(Node::Literal(Scalar::from_json(scalar)?)),
    }
}

fn compile_all(args: &[Value]) -> Option<Box<[Node]>> {
    args.iter().map(compile).collect()
}

/// The first argument if there is one; `None` if it is outside the subset.
fn compile_first(args: &[Value]) -> Option<Option<Box<Node>>> {
    match args.first() {
        Some(a) => Some(Some(Box::new(compile(a)?))),
        None => Some(None),
    }
}

fn compile_pair(args: &[Value]) -> Option<Box<[Node; 2]>> {
    match args {
        [a, b, ..] => Some(Box::new([compile(a)?, compile(b)?])),
        _ => None,
    }
}

fn compile_op(op: &str, args: &[Value]) -> Option<Node> {
    Some(match op {
        "var" => compile_var(args)?,
        "if" | "?:" => Node::If(compile_all(args)?),
        "and" => Node::And(compile_all(args)?),
        "or" => Node::Or(compile_all(args)?),
        // Only the first argument is read.
        "!" => Node::Not(compile_first(args)?),
        "!!" => Node::Truthy(compile_first(args)?),
        // Baton's loose equality reads exactly two arguments; other counts
        // are left to datalogic.
        "==" | "!=" if args.len() == 2 => {
            let [a, b] = *compile_pair(args)?;
            let negate = op == "!=";
            var_test(Test::Loose(negate), a, b)
                .unwrap_or_else(|(a, b)| Node::LooseEq(Box::new([a, b]), negate))
        }
        "===" if args.len() == 2 => {
            let [a, b] = *compile_pair(args)?;
            var_test(Test::StrictEq, a, b).unwrap_or_else(|(a, b)| Node::StrictEq(Box::new([a, b])))
        }
        "===" if args.len() > 2 => Node::StrictEq(compile_all(args)?),
        // Only the first two arguments are read.
        "!==" if args.len() >= 2 => {
            let [a, b] = *compile_pair(args)?;
            var_test(Test::StrictNe, a, b).unwrap_or_else(|(a, b)| Node::StrictNe(Box::new([a, b])))
        }
        "<" | "<=" | ">" | ">=" if args.len() >= 2 => {
            let order = match op {
                "<" => Order::Lt,
                "<=" => Order::Le,
                ">" => Order::Gt,
                _ => Order::Ge,
            };
            if args.len() == 2 {
                let [a, b] = *compile_pair(args)?;
                var_test(Test::Order(order), a, b)
                    .unwrap_or_else(|(a, b)| Node::Compare(order, Box::new([a, b])))
            } else {
                Node::Compare(order, compile_all(args)?)
            }
        }
        // datalogic answers `false` without evaluating anything.
        "in" if args.len() < 2 => Node::Literal(Scalar::Bool(false)),
        "in" => match &args[1] {
            Value::Array(items) => {
                let items: Box<[Scalar]> =
                    items.iter().map(Scalar::from_json).collect::<Option<_>>()?;
                let strings = items.iter().all(|i| matches!(i, Scalar::String(_)));
                Node::InList(Box::new(InList {
                    needle: compile(&args[0])?,
                    items,
                    strings,
                }))
            }
            _ => Node::In(compile_pair(args)?),
        },
        "starts_with" | "ends_with" if args.len() == 2 => {
            Node::Affix(compile_pair(args)?, op == "starts_with")
        }
        "sem_ver" => compile_sem_ver(args)?,
        "fractional" => Node::Fractional(Box::new(compile_fractional(args)?)),
        _ => return None,
    })
}

fn compile_var(args: &[Value]) -> Option<Node> {
    let path = match args.first()? {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_u64() => n.to_string(),
        _ => return None,
    };
    // `""` is the whole document; `current`/`accumulator` get reduce
    // handling in datalogic even outside `reduce`.
    let first = path.split('.').next().unwrap_or("");
    if path.is_empty() || first == "current" || first == "accumulator" {
        return None;
    }
    let path: Box<[Segment]> = path
        .split('.')
        .map(|s| Segment {
            key: s.into(),
            index: s.parse().ok(),
        })
        .collect();
    let root = match &*path[0].key {
        "$flagd" => RootKey::Flagd(path.get(1).map(|f| match &*f.key {
            "flagKey" => FlagdField::FlagKey,
            "timestamp" => FlagdField::Timestamp,
            _ => FlagdField::Other,
        })),
        "targetingKey" => RootKey::TargetingKey,
        _ => RootKey::Other,
    };
    let default = match args.get(1) {
        Some(d) => Some(Box::new(compile(d)?)),
        None => None,
    };
    Some(Node::Var(Var {
        direct: path.len() == 1 && matches!(root, RootKey::Other) && default.is_none(),
        path,
        root,
        slot: ABSENT,
        default,
        hint: AtomicU32::new(0),
    }))
}

fn compile_sem_ver(args: &[Value]) -> Option<Node> {
    // The common shape: a version read from the data, a literal operator
    // and a literal version to compare against.
    let [version, Value::String(op), Value::String(against)] = args else {
        return None;
    };
    let op = match op.as_str() {
        "=" => SemVerOp::Eq,
        "!=" => SemVerOp::Ne,
        "<" => SemVerOp::Lt,
        "<=" => SemVerOp::Le,
        ">" => SemVerOp::Gt,
        ">=" => SemVerOp::Ge,
        "^" => SemVerOp::Caret,
        "~" => SemVerOp::Tilde,
        _ => return None,
    };
    Some(Node::SemVer(
        Box::new(compile(version)?),
        op,
        parse_version(against),
    ))
}

fn compile_fractional(args: &[Value]) -> Option<Fractional> {
    let (key, buckets) = match args.split_first()? {
        // A literal array first: every argument is a bucket.
        (Value::Array(_), _) => (None, args),
        (Value::Null, rest) => (None, rest),
        (first, rest) => (Some(compile(first)?), rest),
    };
    // Buckets must be literal and well-formed; the weights are summed here
    // once, with the same bucket parser the datalogic operator uses.
    let scratch = Bump::new();
    let mut parsed = Vec::with_capacity(buckets.len());
    let mut total = 0u64;
    for b in buckets {
        if !b.is_array() || b.as_array()?.iter().any(|i| !is_scalar(i)) {
            return None;
        }
        let data = DataValue::from_serde_value_in(b, &scratch);
        let data = scratch.alloc(data);
        let (variant, weight) = parse_bucket(data)?;
        total += weight;
        if total > i32::MAX as u64 {
            return None;
        }
        parsed.push((Scalar::from_data(variant)?, total));
    }
    if parsed.is_empty() || total == 0 {
        return None;
    }
    Some(Fractional {
        key,
        buckets: parsed.into(),
        total,
    })
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Array(_) | Value::Object(_))
}

impl Node {
    /// Literals and variables, the leaves nearly every operator reads, are
    /// handled here without a call; operators go to [`Node::eval_op`].
    #[inline]
    fn eval<'a>(&'a self, scope: &Scope<'a>) -> Eval<'a> {
        match self {
            Node::Literal(s) => Ok(s.value()),
            Node::Var(v) => match scope.lookup(v)? {
                Some(found) => Ok(found),
                None => v.default_value(scope),
            },
            _ => self.eval_op(scope),
        }
    }

    #[inline(never)]
    fn eval_op<'a>(&'a self, scope: &Scope<'a>) -> Eval<'a> {
        match self {
            Node::Literal(_) | Node::Var(_) => self.eval(scope),
            Node::If(args) => eval_if(args, scope),
            Node::And(args) => eval_and_or(args, scope, true),
            Node::AndPlain(and) => eval_and_or(&and.nodes, scope, true),
            Node::Or(args) => eval_and_or(args, scope, false),
            Node::Affix(args, prefix) => {
                let (value, affix) = (args[0].eval(scope)?, args[1].eval(scope)?);
                Ok(string_affix(&value, &affix, *prefix).map_or(DataValue::Null, DataValue::Bool))
            }
            Node::SemVer(version, op, against) => eval_sem_ver(version, *op, against, scope),
            Node::Fractional(f) => f.eval(scope),
            // The rest are always booleans.
            _ => self.eval_bool(scope).map(DataValue::Bool),
        }
    }

    /// The truthiness of the node's value, without building the value
    /// where the operator yields a boolean anyway (conditions are the
    /// common case: `if`'s first argument, `and`/`or`/`!` operands).
    fn eval_bool<'a>(&'a self, scope: &Scope<'a>) -> Result<bool, Bail> {
        Ok(match self {
            // `and` yields its first falsy operand or its last one, so its
            // truthiness is "all truthy", except that no operands is `null`.
            Node::And(args) => {
                for arg in args {
                    if !arg.eval_cond(scope)? {
                        return Ok(false);
                    }
                }
                !args.is_empty()
            }
            Node::Or(args) => {
                for arg in args {
                    if arg.eval_cond(scope)? {
                        return Ok(true);
                    }
                }
                false
            }
            Node::Not(arg) => match arg {
                Some(a) => !a.eval_bool(scope)?,
                None => true,
            },
            Node::Truthy(arg) => match arg {
                Some(a) => a.eval_bool(scope)?,
                None => false,
            },
            Node::LooseEq(args, negate) => {
                let (a, b) = (args[0].eval(scope)?, args[1].eval(scope)?);
                loose_eq(&a, &b) != *negate
            }
            Node::StrictEq(args) => {
                let first = args[0].eval(scope)?;
                for arg in &args[1..] {
                    if !strict_eq(&first, &arg.eval(scope)?) {
                        return Ok(false);
                    }
                }
                true
            }
            Node::StrictNe(args) => {
                let (a, b) = (args[0].eval(scope)?, args[1].eval(scope)?);
                !strict_eq(&a, &b)
            }
            Node::VarTest(t) => t.holds(scope)?,
            Node::AndPlain(and) => and.holds(scope)?,
            Node::Compare(order, args) => {
                // Chained, short-circuiting: `a < b < c` is `a < b && b < c`.
                let mut prev = args[0].eval(scope)?;
                for arg in &args[1..] {
                    let cur = arg.eval(scope)?;
                    if !compare(*order, &prev, &cur)? {
                        return Ok(false);
                    }
                    prev = cur;
                }
                true
            }
            Node::InList(list) => list.holds(scope)?,
            Node::In(args) => {
                let (needle, haystack) = (args[0].eval(scope)?, args[1].eval(scope)?);
                match haystack {
                    DataValue::String(h) => needle.as_str().is_some_and(|n| h.contains(n)),
                    DataValue::Array(items) => items.iter().any(|i| strict_eq(i, &needle)),
                    _ => false,
                }
            }
            _ => truthy_arena(&self.eval(scope)?),
        })
    }

    /// [`Node::eval_bool`] with the usual conditions — a `var` compared
    /// with a literal, a `var` in a literal list — evaluated in place,
    /// without a call into the general (large) `eval_bool`: the operands
    /// of `and`/`or` and `if`'s conditions.
    #[inline(always)]
    fn eval_cond<'a>(&'a self, scope: &Scope<'a>) -> Result<bool, Bail> {
        match self {
            Node::VarTest(t) => t.holds(scope),
            Node::InList(list) => list.holds(scope),
            Node::AndPlain(and) => and.holds(scope),
            _ => self.eval_bool(scope),
        }
    }
}

/// What [`Node::walk_mut`] shows its callback.
enum Visit<'n> {
    Var(&'n mut Var),
    Node(&'n mut Node),
}

impl Node {
    /// Calls `f` on every `var` of the tree (slot numbering and what a
    /// rule reads, at compile time).
    fn visit_vars_mut(&mut self, f: &mut impl FnMut(&mut Var)) {
        self.walk_mut(&mut |v| {
            if let Visit::Var(var) = v {
                f(var);
            }
        });
    }

    /// Replaces every `and` of plain tests with its flat form
    /// ([`Node::AndPlain`]); needs the slots numbered.
    fn flatten_plain_ands(&mut self) {
        self.walk_mut(&mut |v| {
            if let Visit::Node(node) = v
                && let Node::And(args) = node
                && !args.is_empty()
                && let Some(plain) = args.iter().map(Plain::of).collect::<Option<Box<[_]>>>()
            {
                let nodes = std::mem::take(args);
                *node = Node::AndPlain(Box::new(AndPlain { plain, nodes }));
            }
        });
    }

    /// Calls `f` on every node and `var` of the tree, a node after what it
    /// contains.
    fn walk_mut(&mut self, f: &mut impl FnMut(Visit<'_>)) {
        let mut all = |nodes: &mut [Node]| nodes.iter_mut().for_each(|n| n.walk_mut(f));
        match self {
            Node::Literal(_) => {}
            Node::Var(v) => v.walk_mut(f),
            Node::If(args)
            | Node::And(args)
            | Node::Or(args)
            | Node::StrictEq(args)
            | Node::Compare(_, args) => all(args),
            Node::Not(arg) | Node::Truthy(arg) => {
                if let Some(a) = arg {
                    a.walk_mut(f);
                }
            }
            Node::LooseEq(args, _)
            | Node::StrictNe(args)
            | Node::In(args)
            | Node::Affix(args, _) => all(&mut args[..]),
            Node::AndPlain(and) => all(&mut and.nodes),
            Node::InList(list) => list.needle.walk_mut(f),
            Node::VarTest(t) => t.var.walk_mut(f),
            Node::SemVer(version, _, _) => version.walk_mut(f),
            Node::Fractional(fr) => {
                if let Some(k) = &mut fr.key {
                    k.walk_mut(f);
                }
            }
        }
        f(Visit::Node(self));
    }
}

impl VarTest {
    /// The test, specialised by the literal's type where the value read
    /// has that type; [`VarTest::holds_general`] otherwise.
    #[inline(always)]
    fn holds<'a>(&'a self, scope: &Scope<'a>) -> Result<bool, Bail> {
        if let Some(value) = scope.direct(&self.var) {
            return self.test(value);
        }
        let value = match scope.lookup(&self.var)? {
            Some(found) => found,
            None => self.var.default_value(scope)?,
        };
        self.test(&value)
    }

    #[inline(always)]
    fn test(&self, value: &DataValue<'_>) -> Result<bool, Bail> {
        match (self.quick, value, &self.literal) {
            (Quick::Number(order, literal), DataValue::Number(x), _) => {
                Ok(order.holds(&x.as_f64(), &literal))
            }
            (Quick::Number(..), _, _) => Err(Bail),
            (Quick::Str(negate), DataValue::String(x), Scalar::String(literal)) => {
                Ok(str_eq(x, literal) != negate)
            }
            _ => self.holds_general(value),
        }
    }

    #[inline(never)]
    fn holds_general(&self, value: &DataValue<'_>) -> Result<bool, Bail> {
        let literal = self.literal.value();
        let (a, b) = if self.var_first {
            (value, &literal)
        } else {
            (&literal, value)
        };
        Ok(match self.test {
            Test::Loose(negate) => loose_eq(a, b) != negate,
            Test::StrictEq => strict_eq(a, b),
            Test::StrictNe => !strict_eq(a, b),
            Test::Order(order) => compare(order, a, b)?,
        })
    }
}

impl InList {
    #[inline(always)]
    fn holds<'a>(&'a self, scope: &Scope<'a>) -> Result<bool, Bail> {
        if let Node::Var(v) = &self.needle
            && let Some(needle) = scope.direct(v)
        {
            return Ok(self.contains(needle));
        }
        Ok(self.contains(&self.needle.eval(scope)?))
    }

    #[inline(always)]
    fn contains(&self, needle: &DataValue<'_>) -> bool {
        match needle {
            // A string against a list of strings (the usual
            // `tier in [...]`): a scan with no type dispatch.
            DataValue::String(n) if self.strings => {
                for item in &self.items {
                    if let Scalar::String(s) = item
                        && str_eq(s, n)
                    {
                        return true;
                    }
                }
                false
            }
            _ => self.contains_general(needle),
        }
    }

    #[inline(never)]
    fn contains_general(&self, needle: &DataValue<'_>) -> bool {
        self.items.iter().any(|i| strict_eq(&i.value(), needle))
    }
}

impl Var {
    /// Calls `f` on this `var`, then on its default's nodes and `var`s.
    fn walk_mut(&mut self, f: &mut impl FnMut(Visit<'_>)) {
        f(Visit::Var(self));
        if let Some(d) = &mut self.default {
            d.walk_mut(f);
        }
    }

    /// The default when the path is absent, else `null`.
    #[inline(never)]
    fn default_value<'a>(&'a self, scope: &Scope<'a>) -> Eval<'a> {
        match &self.default {
            Some(d) => d.eval(scope),
            None => Ok(DataValue::Null),
        }
    }
}

/// Baton's `==`: strings and numbers inline, the rest in `js_loose_eq`.
#[inline]
fn loose_eq(a: &DataValue<'_>, b: &DataValue<'_>) -> bool {
    match (a, b) {
        (DataValue::String(x), DataValue::String(y)) => str_eq(x, y),
        _ => js_loose_eq(a, b),
    }
}

#[inline(never)]
fn eval_sem_ver<'a>(
    version: &'a Node,
    op: SemVerOp,
    against: &Option<semver::Version>,
    scope: &Scope<'a>,
) -> Eval<'a> {
    let version = match version.eval(scope)? {
        DataValue::String(s) => parse_version(s),
        // datalogic renders numbers to text first; not mirrored.
        DataValue::Number(_) => return Err(Bail),
        _ => None,
    };
    Ok(match (version, against) {
        (Some(v), Some(w)) => DataValue::Bool(sem_ver_holds(op, &v, w)),
        _ => DataValue::Null,
    })
}

#[inline(never)]
fn eval_if<'a>(args: &'a [Node], scope: &Scope<'a>) -> Eval<'a> {
    // datalogic's `if`: condition/value pairs, an odd last argument is the
    // else branch, and no match without one is `null`.
    let mut i = 0;
    while i < args.len() {
        if i == args.len() - 1 {
            return args[i].eval(scope);
        }
        if args[i].eval_cond(scope)? {
            return args[i + 1].eval(scope);
        }
        i += 2;
    }
    Ok(DataValue::Null)
}

/// `and` returns the first falsy value (or the last), `or` the first truthy
/// one (or the last); no arguments is `null`.
fn eval_and_or<'a>(args: &'a [Node], scope: &Scope<'a>, and: bool) -> Eval<'a> {
    let mut last = DataValue::Null;
    for arg in args {
        let v = arg.eval(scope)?;
        if truthy_arena(&v) != and {
            return Ok(v);
        }
        last = v;
    }
    Ok(last)
}

/// datalogic's `===` (and `in`'s item test): numbers by value, everything
/// else structurally.
#[inline]
fn strict_eq(a: &DataValue<'_>, b: &DataValue<'_>) -> bool {
    match (a, b) {
        (DataValue::Number(x), DataValue::Number(y)) => x.as_f64() == y.as_f64(),
        (DataValue::String(x), DataValue::String(y)) => str_eq(x, y),
        _ => a == b,
    }
}

/// `<` and friends for numbers with numbers and strings with strings;
/// everything else is coerced (or an error) in datalogic.
#[inline]
fn compare(order: Order, a: &DataValue<'_>, b: &DataValue<'_>) -> Result<bool, Bail> {
    match (a, b) {
        (DataValue::Number(x), DataValue::Number(y)) => Ok(order.holds(&x.as_f64(), &y.as_f64())),
        (DataValue::String(x), DataValue::String(y)) => Ok(order.holds(*x, *y)),
        _ => Err(Bail),
    }
}

impl Fractional {
    #[inline(never)]
    fn eval<'a>(&'a self, scope: &Scope<'a>) -> Eval<'a> {
        let hash = match &self.key {
            None => scope.implicit_key_hash(),
            Some(key) => match key.eval(scope)? {
                DataValue::String(s) => Some(murmur3_x86_32(s.as_bytes())),
                DataValue::Null => scope.implicit_key_hash(),
                // Any other value would make the first argument a bucket.
                _ => return Err(Bail),
            },
        };
        let Some(hash) = hash else {
            return Ok(DataValue::Null);
        };
        let position = bucket_position(hash, self.total);
        Ok(self
            .buckets
            .iter()
            .find(|(_, end)| position < *end)
            .map_or(DataValue::Null, |(variant, _)| variant.value()))
    }
}

fn sem_ver_holds(op: SemVerOp, v: &semver::Version, w: &semver::Version) -> bool {
    match op {
        SemVerOp::Eq => v == w,
        SemVerOp::Ne => v != w,
        SemVerOp::Lt => v < w,
        SemVerOp::Le => v <= w,
        SemVerOp::Gt => v > w,
        SemVerOp::Ge => v >= w,
        SemVerOp::Caret => v.major == w.major,
        SemVerOp::Tilde => v.major == w.major && v.minor == w.minor,
    }
}

/// datalogic's (flagd's) version normalisation for a string: a leading
/// `v`/`V` and build metadata dropped, `1` and `1.2` padded to three parts
/// (keeping a pre-release suffix).
fn parse_version(raw: &str) -> Option<semver::Version> {
    let stripped = raw.strip_prefix(['v', 'V']).unwrap_or(raw);
    let without_build = match stripped.find('+') {
        Some(i) => &stripped[..i],
        None => stripped,
    };
    let (core, pre) = match without_build.find('-') {
        Some(i) => without_build.split_at(i),
        None => (without_build, ""),
    };
    match core.bytes().filter(|b| *b == b'.').count() {
        0 => semver::Version::parse(&format!("{core}.0.0{pre}")).ok(),
        1 => semver::Version::parse(&format!("{core}.0{pre}")).ok(),
        _ => semver::Version::parse(without_build).ok(),
    }
}

#[cfg(test)]
mod tests {
    //! The fast path against datalogic: generated rules (inside and around
    //! the subset) × generated documents, through every entry point, with
    //! identical results required wherever the fast path answers.

    use std::cell::Cell;

    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use serde_json::{Map, json};

    use super::*;
    use crate::rules::ops::ENGINE;
    use crate::rules::prepared::with_arena;
    use crate::rules::{PreparedData, Rule};

    const PATHS: &[&str] = &[
        "a",
        "b",
        "s",
        "n",
        "obj.x",
        "obj.y.z",
        "arr.0",
        "arr.1",
        "arr.x",
        "0",
        "missing",
        "targetingKey",
        "$flagd.flagKey",
        "$flagd.timestamp",
        "$flagd.other",
        "$flagd",
    ];

    fn number() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(json!(0)),
            Just(json!(1)),
            Just(json!(-1)),
            Just(json!(2.5)),
            Just(json!(1.0)),
            Just(json!(18)),
        ]
    }

    fn string() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(json!("")),
            Just(json!("0")),
            Just(json!("1")),
            Just(json!("ab")),
            Just(json!("abc")),
            Just(json!("b")),
            Just(json!("1.2.3")),
            Just(json!("v2.0")),
            Just(json!("1.2.3-beta+7")),
        ]
    }

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            1 => Just(json!(null)),
            1 => Just(json!(true)),
            1 => Just(json!(false)),
            3 => number(),
            3 => string(),
        ]
    }

    fn data_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            6 => scalar(),
            1 => Just(json!([])),
            1 => Just(json!([1, "a", null])),
            1 => Just(json!({})),
            1 => Just(json!({"x": "ab", "y": {"z": 3}})),
        ]
    }

    fn path() -> impl Strategy<Value = Value> {
        prop_oneof![
            8 => proptest::sample::select(PATHS).prop_map(|p| json!(p)),
            1 => Just(json!(0)),
            1 => Just(json!("")),
            1 => Just(json!("current")),
        ]
    }

    fn bucket() -> impl Strategy<Value = Value> {
        prop_oneof![
            (proptest::sample::select(vec!["on", "off", "x"]), 0..60i64)
                .prop_map(|(v, w)| json!([v, w])),
            Just(json!(["solo"])),
            Just(json!([true, 10])),
            Just(json!([null, 5])),
            Just(json!(["bad", -3])),
            Just(json!(["half", 1.5])),
            Just(json!([["nested"], 1])),
        ]
    }

    /// A plain test (see [`Plain`]) of a top-level member, the literal
    /// first or last: what an `and` of them is flattened from; the literal
    /// may be of any type, so some tests are not plain after all.
    fn plain_test() -> impl Strategy<Value = Value> {
        let member = proptest::sample::select(vec!["a", "b", "s", "n", "missing"]);
        let op = proptest::sample::select(vec!["<", "<=", ">", ">=", "==", "!="]);
        let strings = proptest::collection::vec(string(), 0..4);
        prop_oneof![
            3 => (op, member.clone(), scalar(), proptest::bool::ANY).prop_map(|(op, m, lit, first)| {
                let var = json!({"var": m});
                if first { json!({ op: [var, lit] }) } else { json!({ op: [lit, var] }) }
            }),
            1 => (member, strings).prop_map(|(m, list)| json!({"in": [{"var": m}, list]})),
        ]
    }

    fn rule() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            3 => scalar(),
            4 => path().prop_map(|p| json!({"var": p})),
            1 => (path(), scalar()).prop_map(|(p, d)| json!({"var": [p, d]})),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            let binary = proptest::sample::select(vec![
                "==", "!=", "===", "!==", "<", "<=", ">", ">=", "in", "starts_with",
                "ends_with", "cat", "+",
            ]);
            prop_oneof![
                4 => (binary, inner.clone(), inner.clone())
                    .prop_map(|(op, a, b)| json!({ op: [a, b] })),
                1 => (proptest::sample::select(vec!["<", "<=", ">", "===", "=="]),
                      inner.clone(), inner.clone(), inner.clone())
                    .prop_map(|(op, a, b, c)| json!({ op: [a, b, c] })),
                2 => proptest::collection::vec(inner.clone(), 0..5)
                    .prop_map(|a| json!({"if": a})),
                2 => (proptest::sample::select(vec!["and", "or"]),
                      proptest::collection::vec(inner.clone(), 0..4))
                    .prop_map(|(op, a)| json!({ op: a })),
                2 => proptest::collection::vec(plain_test(), 1..5)
                    .prop_map(|a| json!({"and": a})),
                1 => (proptest::sample::select(vec!["!", "!!"]), inner.clone())
                    .prop_map(|(op, a)| json!({ op: [a] })),
                1 => inner.clone().prop_map(|a| json!({"!": a})),
                1 => Just(json!({"!!": []})),
                2 => (inner.clone(), proptest::collection::vec(scalar(), 0..4))
                    .prop_map(|(a, list)| json!({"in": [a, list]})),
                1 => (inner.clone(),
                      proptest::sample::select(vec!["=", "!=", "<", "<=", ">", ">=", "^", "~", "?"]),
                      proptest::sample::select(vec!["1.2.3", "2", "v1.2", "1.2.3-beta", "x.y"]))
                    .prop_map(|(v, op, w)| json!({"sem_ver": [v, op, w]})),
                2 => (proptest::option::of(prop_oneof![inner.clone(), Just(json!(null))]),
                      proptest::collection::vec(bucket(), 0..4))
                    .prop_map(|(key, buckets)| {
                        let mut args: Vec<Value> = key.into_iter().collect();
                        args.extend(buckets);
                        json!({"fractional": args})
                    }),
                1 => (inner.clone(), inner.clone()).prop_map(|a| json!([a.0, a.1])),
            ]
        })
    }

    fn document() -> impl Strategy<Value = Value> {
        let keys = proptest::sample::select(vec![
            "a",
            "b",
            "s",
            "n",
            "obj",
            "arr",
            "0",
            "targetingKey",
            "$flagd",
        ]);
        prop_oneof![
            8 => proptest::collection::vec((keys, data_value()), 0..8).prop_map(|pairs| {
                let mut m = Map::new();
                for (k, v) in pairs {
                    let v = if k == "$flagd" { json!({"flagKey": v}) } else { v };
                    m.insert(k.to_string(), v);
                }
                Value::Object(m)
            }),
            1 => data_value(),
        ]
    }

    thread_local! {
        static ANSWERED: Cell<u64> = const { Cell::new(0) };
    }

    /// Whether `rule` on `data` gives the same through the fast path (when
    /// it answers) as through datalogic, for plain and targeting evaluation.
    fn check(rule: &Value, data: &Value) -> Result<(), TestCaseError> {
        let Ok(compiled) = Rule::compile(rule) else {
            return Ok(());
        };
        check_compiled(rule, &compiled, data)
    }

    /// [`check`] with the rule compiled once by the caller (whose lookup
    /// hints then carry over from one document to the next).
    fn check_compiled(rule: &Value, compiled: &Rule, data: &Value) -> Result<(), TestCaseError> {
        let Some(fast) = &compiled.0.fast else {
            return Ok(());
        };
        with_arena(|arena| {
            let dv: &DataValue<'_> = arena.alloc(DataValue::from_serde_value_in(data, arena));
            if let Ok(got) = fast.eval(&Scope::plain(dv, true)) {
                ANSWERED.with(|c| c.set(c.get() + 1));
                let want = ENGINE
                    .evaluate(&compiled.0.logic, dv, arena)
                    .map(|v| v.to_serde_value())
                    .map_err(|e| e.to_string());
                prop_assert_eq!(Ok(got.to_serde_value()), want, "rule {} on {}", rule, data);
            }
            if let Ok(got) = fast.matches(&Scope::plain(dv, true)) {
                let want = ENGINE
                    .evaluate(&compiled.0.logic, dv, arena)
                    .map(|v| truthy_arena(v))
                    .map_err(|e| e.to_string());
                prop_assert_eq!(Ok(got), want, "truthiness of {} on {}", rule, data);
            }
            Ok(())
        })?;

        let prepared = PreparedData::new(data).unwrap();
        check_targeting(rule, data, compiled, &prepared)
    }

    /// The targeting half of [`check`], by name and by slot (positions
    /// found the way the flag layer finds them).
    fn check_targeting(
        rule: &Value,
        data: &impl std::fmt::Display,
        compiled: &Rule,
        prepared: &PreparedData,
    ) -> Result<(), TestCaseError> {
        let fast = compiled.0.fast.as_ref().unwrap();
        let positions: Vec<u32> = fast
            .slot_names()
            .iter()
            .map(|n| prepared.member_position(n))
            .collect();
        for (missing, slotted) in [None, Some(""), Some("probe")]
            .into_iter()
            .flat_map(|m| [(m, false), (m, true)])
        {
            let e = Enrichment {
                flag_key: "flag",
                timestamp: 1_700_000_000,
                targeting_key_if_missing: missing,
            };
            let root = prepared.parsed().value();
            let scope = if slotted {
                Scope::targeting_at(root, &e, fast, &positions)
            } else {
                Scope::targeting(root, &e)
            };
            let got = fast
                .eval(&scope)
                .map(|v| format!("{:?}", super::super::targeting::classify(v)));
            if let Ok(got) = got {
                let want = compiled
                    .evaluate_targeting_datalogic(prepared, &e, |r| format!("{r:?}"))
                    .map_err(|e| e.to_string());
                prop_assert_eq!(
                    Ok(got),
                    want,
                    "targeting {} on {} ({:?}, by slot: {})",
                    rule,
                    data,
                    missing,
                    slotted
                );
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 3000,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        #[test]
        fn fast_path_agrees_with_datalogic(rule in rule(), data in document()) {
            check(&rule, &data)?;
        }

        /// One rule against several documents in turn: a lookup by name
        /// starts where the previous document had the member, which must
        /// never change a result.
        #[test]
        fn lookup_hints_never_change_results(
            rule in rule(),
            docs in proptest::collection::vec(document(), 2..6),
        ) {
            if let Ok(compiled) = Rule::compile(&rule) {
                for data in &docs {
                    check_compiled(&rule, &compiled, data)?;
                }
            }
        }

        /// The flat `and` ([`Node::AndPlain`]) as a condition, on documents
        /// whose members are mostly of the literals' types.
        #[test]
        fn plain_ands_agree_with_datalogic(
            tests in proptest::collection::vec(plain_test(), 1..5),
            negate in proptest::bool::ANY,
            members in proptest::collection::vec(
                (proptest::sample::select(vec!["a", "b", "s", "n"]), scalar()), 0..6),
        ) {
            let and = json!({"and": tests});
            let cond = if negate { json!({"!": and}) } else { and };
            let rule = json!({"if": [cond, "on", "off"]});
            let data = Value::Object(members.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
            check(&rule, &data)?;
        }
    }

    /// A document with a repeated member name reads the first, even when
    /// the rule's lookup hint points at a later one.
    #[test]
    fn repeated_members_do_not_use_lookup_hints() {
        let rule = Rule::compile(&json!({"==": [{"var": "age"}, 34]})).unwrap();
        let unique = PreparedData::from_json(r#"{"x": 1, "age": 34}"#).unwrap();
        assert!(unique.unique_members());
        assert!(rule.matches_prepared(&unique).unwrap());
        // The hint is now position 1, which here is the second `age`.
        let repeated = PreparedData::from_json(r#"{"age": 10, "age": 34}"#).unwrap();
        assert!(!repeated.unique_members());
        assert!(!rule.matches_prepared(&repeated).unwrap());
        assert_eq!(
            rule.evaluate_prepared(&repeated).unwrap(),
            json!(false),
            "the same through evaluate"
        );
        let many: Vec<String> = (0..40).map(|i| format!("\"m{i}\": {i}")).collect();
        let text = format!("{{{}, \"m7\": 0}}", many.join(", "));
        assert!(!PreparedData::from_json(&text).unwrap().unique_members());
        let text = format!("{{{}}}", many.join(", "));
        assert!(PreparedData::from_json(&text).unwrap().unique_members());
    }

    /// An `and` of plain tests takes the flat form, also inside other
    /// operators; one test that is not plain keeps the tree form.
    #[test]
    fn plain_ands_are_flattened() {
        let flat = |rule: Value| {
            let mut found = false;
            let mut fast = FastRule::compile(&rule).unwrap();
            fast.root.walk_mut(&mut |v| {
                found |= matches!(v, Visit::Node(Node::AndPlain(_)));
            });
            found
        };
        let tests = json!([
            {">=": [{"var": "age"}, 18]},
            {"==": ["android", {"var": "platform"}]},
            {"in": [{"var": "tier"}, ["gold", "platinum"]]},
            {"!=": [{"var": "tier"}, "tin"]}
        ]);
        assert!(flat(json!({"if": [{"and": tests}, "on", "off"]})));
        assert!(flat(json!({"!": {"or": [false, {"and": tests}]}})));
        let mut mixed = tests.clone();
        mixed.as_array_mut().unwrap().push(json!({"var": "beta"}));
        assert!(!flat(json!({"and": mixed})));
        assert!(!flat(json!({"and": [{"==": [{"var": "a.b"}, "x"]}]})));
    }

    /// Slots find the first member of a name, as a lookup by name does;
    /// a context may repeat a name when built from JSON text.
    #[test]
    fn slots_read_the_first_of_repeated_members() {
        let rule = json!({"if": [{"and": [
            {">=": [{"var": "age"}, 18]},
            {"==": ["android", {"var": "platform"}]},
            {"in": [{"var": "tier"}, ["gold", "platinum"]]},
            {">": [65, {"var": "age"}]}
        ]}, "on", "off"]});
        let compiled = Rule::compile(&rule).unwrap();
        assert_eq!(
            compiled.0.fast.as_ref().unwrap().slot_names(),
            &["age".into(), "platform".into(), "tier".into()] as &[Box<str>]
        );
        for text in [
            r#"{"age": 30, "age": 10, "platform": "android", "tier": "gold"}"#,
            r#"{"age": 10, "age": 30, "platform": "android", "tier": "gold"}"#,
            r#"{"tier": "platinum", "platform": "ios", "age": 30}"#,
            r#"{"tier": "platinum", "platform": "android", "age": 30}"#,
            r#"{"tier": "silver", "platform": "android", "age": 30}"#,
            r#"{"tier": "gold", "platform": "android", "age": "30"}"#,
            r#"{"tier": "gold", "platform": "android"}"#,
            r#"{"platform": "android", "age": 65, "tier": "gold"}"#,
            r#"{}"#,
        ] {
            let prepared = PreparedData::from_json(text).unwrap();
            check_targeting(&rule, &text, &compiled, &prepared).unwrap();
        }
    }

    /// Positions of the wrong length (another rule's) are not used.
    #[test]
    fn slots_of_another_length_are_ignored() {
        let compiled = Rule::compile(&json!({"==": [{"var": "b"}, 2]})).unwrap();
        let fast = compiled.0.fast.as_ref().unwrap();
        let prepared = PreparedData::from_json(r#"{"a": 1, "b": 2}"#).unwrap();
        let e = Enrichment {
            flag_key: "flag",
            timestamp: 0,
            targeting_key_if_missing: None,
        };
        let wrong = [0, 1];
        let scope = Scope::targeting_at(prepared.parsed().value(), &e, fast, &wrong);
        assert_eq!(fast.eval(&scope), Ok(DataValue::Bool(true)));
    }

    /// The generator must exercise the fast path, not only the fallback.
    #[test]
    fn generated_cases_mostly_take_the_fast_path() {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let strategy = (rule(), document());
        let mut compiled = 0;
        ANSWERED.with(|c| c.set(0));
        for _ in 0..1000 {
            let (rule, data) = strategy.new_tree(&mut runner).unwrap().current();
            if Rule::compile(&rule).is_ok_and(|r| r.has_fast_path()) {
                compiled += 1;
            }
            check(&rule, &data).unwrap();
        }
        let answered = ANSWERED.with(Cell::get);
        assert!(compiled > 500, "only {compiled}/1000 rules compiled");
        assert!(
            answered > 300,
            "only {answered}/1000 answered by the fast path"
        );
    }

    /// The flag layer skips the clock when this says so: it must never
    /// miss a read.
    #[test]
    fn timestamp_reads_are_known() {
        let reads = |r: Value| Rule::compile(&r).unwrap().reads_flagd_timestamp();
        assert!(reads(json!({"<": [{"var": "$flagd.timestamp"}, 5]})));
        assert!(reads(
            json!({"if": [true, {"var": ["x", {"var": "$flagd.timestamp"}]}]})
        ));
        assert!(reads(json!({"==": [{"var": "$flagd"}, 1]})));
        // Not on the fast path: unknown, so assumed.
        assert!(reads(json!({"cat": ["a", "b"]})));
        assert!(!reads(json!({"==": [{"var": "$flagd.flagKey"}, "f"]})));
        assert!(!reads(json!({"fractional": [["a", 1]]})));
    }

    /// flagd's common shapes, and the benchmark's, are in the subset.
    #[test]
    fn flagd_shapes_compile() {
        for rule in [
            json!({"if": [{"==": [{"var": "platform"}, "android"]},
                          {"fractional": [["on", 20], ["off", 80]]}, null]}),
            json!({"if": [{"and": [
                {">=": [{"var": "age"}, 18]},
                {"==": [{"var": "platform"}, "android"]},
                {"in": [{"var": "tier"}, ["gold", "platinum"]]},
                {"<": [{"var": "age"}, 65]}
            ]}, "on", "off"]}),
            json!({"if": [{"sem_ver": [{"var": "app_version"}, ">=", "5.2.0"]}, "on", null]}),
            json!({"if": [{"starts_with": [{"var": "locale"}, "de"]}, "y", "x"]}),
            json!({"fractional": [{"var": "email"}, ["a", 50], ["b", 50]]}),
            json!({"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "on", "off"]}),
            json!({"<": [1, {"var": "n"}, 10]}),
            json!({"if": [{"in": ["@corp", {"var": "email"}]}, "staff", null]}),
        ] {
            assert!(Rule::compile(&rule).unwrap().has_fast_path(), "{rule}");
        }
        for rule in [
            json!({"cat": ["a", {"var": "b"}]}),
            json!({"map": [[1, 2], {"var": ""}]}),
            json!({"var": ""}),
            json!({"if": [true, [1], 2]}),
        ] {
            assert!(!Rule::compile(&rule).unwrap().has_fast_path(), "{rule}");
        }
    }
}

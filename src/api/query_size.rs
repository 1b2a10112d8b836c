//! The expanded size of a GraphQL document, checked before async-graphql
//! sees it.
//!
//! A small document can stand for an enormous one: fragments that each
//! spread the previous one twice make `k` lines into `2^k` fields. The depth
//! and complexity limits are computed by async-graphql *after* (and
//! during) validation, whose own rules walk the expansion, so they cannot
//! protect against this. [`check`] counts the expansion in time linear in the
//! document: each fragment's size is computed once and reused, counts
//! saturate just past the limit, and a fragment that spreads itself is
//! reported instead of followed.
//!
//! What is counted: every field (aliases and `__typename` included), every
//! fragment spread (plus the fragment it stands for) and every inline
//! fragment, in every operation of the document (summed: validation walks
//! them all) and in every fragment definition (an unused fragment is
//! validated too).

use std::collections::HashMap;

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};

/// Nesting (selection sets and fragment spreads) beyond this is refused
/// without walking further: far deeper than any depth limit worth
/// configuring, shallow enough for any thread's stack. The parser bounds
/// nested braces itself, but not chains of fragments.
const MAX_NESTING: usize = 512;

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Oversize {
    /// More than the limit of selections once expanded.
    TooLarge,
    /// Nested deeper than [`MAX_NESTING`].
    TooDeep,
    /// A fragment that spreads itself, directly or through others.
    Cycle(String),
}

/// Checks that no operation (all of them together) and no fragment of `doc`
/// expands to more than `limit` selections.
pub fn check(doc: &ExecutableDocument, limit: usize) -> Result<(), Oversize> {
    let mut counter = Counter {
        doc,
        cap: limit.saturating_add(1),
        fragments: HashMap::with_capacity(doc.fragments.len()),
    };
    let mut total = 0usize;
    for (_, op) in doc.operations.iter() {
        let size = counter.selection_set(&op.node.selection_set.node, 0)?;
        total = total.saturating_add(size).min(counter.cap);
        if total > limit {
            return Err(Oversize::TooLarge);
        }
    }
    for name in doc.fragments.keys() {
        if counter.fragment(name.as_str(), 0)? > limit {
            return Err(Oversize::TooLarge);
        }
    }
    Ok(())
}

enum Memo {
    /// Being expanded now: meeting it again is a cycle.
    Open,
    Size(usize),
}

struct Counter<'a> {
    doc: &'a ExecutableDocument,
    /// One past the limit: every count stops growing here.
    cap: usize,
    fragments: HashMap<&'a str, Memo>,
}

impl<'a> Counter<'a> {
    fn selection_set(&mut self, set: &'a SelectionSet, nesting: usize) -> Result<usize, Oversize> {
        if nesting > MAX_NESTING {
            return Err(Oversize::TooDeep);
        }
        let mut size = 0usize;
        for item in &set.items {
            let inner = match &item.node {
                Selection::Field(field) => {
                    let sub = &field.node.selection_set.node;
                    if sub.items.is_empty() {
                        0
                    } else {
                        self.selection_set(sub, nesting + 1)?
                    }
                }
                Selection::InlineFragment(inline) => {
                    self.selection_set(&inline.node.selection_set.node, nesting + 1)?
                }
                Selection::FragmentSpread(spread) => {
                    self.fragment(spread.node.fragment_name.node.as_str(), nesting + 1)?
                }
            };
            size = size.saturating_add(1).saturating_add(inner).min(self.cap);
            if size >= self.cap {
                // Past the limit: the rest cannot make it acceptable again.
                return Ok(size);
            }
        }
        Ok(size)
    }

    fn fragment(&mut self, name: &'a str, nesting: usize) -> Result<usize, Oversize> {
        match self.fragments.get(name) {
            Some(Memo::Size(size)) => return Ok(*size),
            Some(Memo::Open) => return Err(Oversize::Cycle(name.to_owned())),
            None => {}
        }
        // An unknown fragment is validation's to report; it adds nothing here.
        let Some((key, def)) = self.doc.fragments.get_key_value(name) else {
            return Ok(0);
        };
        self.fragments.insert(key.as_str(), Memo::Open);
        let size = self.selection_set(&def.node.selection_set.node, nesting)?;
        self.fragments.insert(key.as_str(), Memo::Size(size));
        Ok(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size_ok(query: &str, limit: usize) -> Result<(), Oversize> {
        check(&async_graphql::parser::parse_query(query).unwrap(), limit)
    }

    /// Fragment `F{k}` spreads `F{k-1}` twice: `2^k` fields in `k` lines.
    fn doubling(k: usize) -> String {
        let mut q = format!("query {{ ...F{k} }}\nfragment F0 on Query {{ __typename }}\n");
        for i in 1..=k {
            q.push_str(&format!(
                "fragment F{i} on Query {{ ...F{p} ...F{p} }}\n",
                p = i - 1
            ));
        }
        q
    }

    #[test]
    fn counts_fields_aliases_typename_spreads_and_inline_fragments() {
        // a, b, __typename, alias c, the inline fragment and its d.
        let q = "{ a b { __typename c: a ... on X { d } } }";
        assert_eq!(size_ok(q, 6), Ok(()));
        assert_eq!(size_ok(q, 5), Err(Oversize::TooLarge));
        // The spread (1) and the fragment's two fields, twice; plus `x`.
        let q = "{ x { ...F } y: x { ...F } } fragment F on X { a b }";
        assert_eq!(size_ok(q, 8), Ok(()));
        assert_eq!(size_ok(q, 7), Err(Oversize::TooLarge));
    }

    #[test]
    fn exponential_fragments_are_counted_without_expanding_them() {
        // 2^60 would overflow anything that expanded it; the memo never does.
        assert_eq!(size_ok(&doubling(60), 1000), Err(Oversize::TooLarge));
        assert_eq!(size_ok(&doubling(5), 1000), Ok(()));
    }

    #[test]
    fn unused_fragments_count_too() {
        let mut q = doubling(30);
        q = q.replacen("query { ...F30 }", "query { __typename ...F0 }", 1);
        assert_eq!(size_ok(&q, 1000), Err(Oversize::TooLarge));
    }

    #[test]
    fn cycles_are_reported_not_followed() {
        let q = "{ ...A } fragment A on Query { ...B } fragment B on Query { a ...A }";
        assert!(matches!(size_ok(q, 1000), Err(Oversize::Cycle(_))));
        let q = "{ ...A } fragment A on Query { ...A }";
        assert_eq!(size_ok(q, 1000), Err(Oversize::Cycle("A".into())));
    }

    #[test]
    fn long_fragment_chains_stop_the_walk() {
        // The parser bounds nested braces; a chain of fragments it does not.
        let n = MAX_NESTING + 5;
        let mut q = String::from("{ ...F0 }\n");
        for i in 0..n {
            q.push_str(&format!("fragment F{i} on Query {{ ...F{} }}\n", i + 1));
        }
        q.push_str(&format!("fragment F{n} on Query {{ a }}\n"));
        assert_eq!(size_ok(&q, usize::MAX), Err(Oversize::TooDeep));
    }
}

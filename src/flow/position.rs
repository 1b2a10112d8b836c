//! Where a JSON path is in the source text: `baton validate` gives every
//! issue a line and column besides its JSON path, so an editor can jump to
//! it.
//!
//! The text is read a second time, into a tree of spans (JSON is read as
//! YAML, which it nearly always is). A path is followed as far as the tree
//! goes: an issue about a missing field points at the mapping that lacks it.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::document::yaml_options;

/// Line and column (both 1-based) of every value and key of one document.
pub struct Positions(Spanned<Node>);

enum Node {
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
    Scalar,
}

impl Positions {
    /// `None` when the text does not parse (its syntax error has a line already).
    pub fn of(text: &str) -> Option<Positions> {
        serde_saphyr::from_str_with_options::<Spanned<Node>>(text, yaml_options())
            .ok()
            .map(Positions)
    }

    /// The line and column of the deepest value of `path` (`$.nodes[2].id`)
    /// that exists; a mapping entry is located at its key.
    pub fn find(&self, path: &str) -> Option<(u64, u64)> {
        let mut here = &self.0;
        let mut at = (here.referenced.line(), here.referenced.column());
        for seg in segments(path)? {
            let next = match (&here.value, seg) {
                (Node::Map(entries), Seg::Key(k)) => entries
                    .iter()
                    .find(|(key, _)| key.value == k)
                    .map(|(key, v)| (v, (key.referenced.line(), key.referenced.column()))),
                (Node::Seq(items), Seg::Index(i)) => items
                    .get(i)
                    .map(|v| (v, (v.referenced.line(), v.referenced.column()))),
                _ => None,
            };
            let Some((node, pos)) = next else { break };
            here = node;
            at = pos;
        }
        (at.0 > 0).then_some(at)
    }
}

pub(crate) enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// `$.a[0].b` → `a`, `0`, `b`. Keys with dots cannot be told apart from
/// nesting; such a path is located at its deepest unambiguous prefix.
pub(crate) fn segments(path: &str) -> Option<Vec<Seg<'_>>> {
    let rest = path.strip_prefix('$')?;
    let mut out = Vec::new();
    for part in rest.split('.').filter(|p| !p.is_empty()) {
        let (key, indices) = match part.find('[') {
            Some(at) => (&part[..at], &part[at..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            out.push(Seg::Key(key));
        }
        for idx in indices.split('[').filter(|s| !s.is_empty()) {
            out.push(Seg::Index(idx.trim_end_matches(']').parse().ok()?));
        }
    }
    Some(out)
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

macro_rules! scalar {
    ($($name:ident: $ty:ty),*) => {
        $(fn $name<E: de::Error>(self, _: $ty) -> Result<Node, E> { Ok(Node::Scalar) })*
    };
}

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    scalar!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_f64: f64,
            visit_i128: i128, visit_u128: u128, visit_str: &str, visit_bytes: &[u8]);

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Scalar)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Key>>()? {
            let value = map.next_value::<Spanned<Node>>()?;
            let key = Spanned::new(key.value.0, key.referenced, key.defined);
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

/// A mapping key of any scalar type, as text (`200:` in a mock is a key).
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Key, E> {
                Ok(Key("null".into()))
            }
        }
        d.deserialize_any(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::Positions;

    #[test]
    fn paths_map_to_lines_and_columns() {
        let text =
            "id: a\nnodes:\n  - kind: screen\n    id: s\n    actions:\n      - {id: go, next: e}\n";
        let p = Positions::of(text).expect("parses");
        assert_eq!(p.find("$.id"), Some((1, 1)));
        assert_eq!(p.find("$.nodes[0]"), Some((3, 5)));
        assert_eq!(p.find("$.nodes[0].id"), Some((4, 5)));
        assert_eq!(p.find("$.nodes[0].actions[0].next"), Some((6, 18)));
        // Missing members: the deepest value that exists.
        assert_eq!(p.find("$.nodes[0].title"), Some((3, 5)));
        assert_eq!(p.find("$.nodes[7]"), Some((2, 1)));
        let json = Positions::of("{\"id\": \"a\",\n \"start\": \"b\"}").expect("JSON is YAML");
        assert_eq!(json.find("$.start"), Some((2, 2)));
    }
}

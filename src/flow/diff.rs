//! Structural diff between two versions of a flow: which nodes, actions,
//! edges, components and rules were added, removed or changed, each with a
//! path that names things by id rather than by position, so inserting a
//! node or an edge does not show every later one as changed.
//!
//! The diff works on the flows' JSON form, so it follows the flow model as
//! it grows without a case per field: lists of objects with an `id` are
//! matched by id, lists of edges by their target (while targets are
//! unique), anything else by position.

use serde::Serialize;
use serde_json::Value;

use super::model::FlowDef;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Added,
    Removed,
    Changed,
}

/// What a change is about, named for the person reviewing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    /// A flow-level setting (`title`, `start`, `on_error`, …).
    Flow,
    Node,
    Action,
    Edge,
    Component,
    /// A JsonLogic rule (`when`, `visible_when`, …).
    Rule,
    /// Any other setting of a node (a step's URL, a retry policy, a mock…).
    Setting,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub kind: ChangeKind,
    pub subject: Subject,
    /// The node the change is in, if any.
    pub node: Option<String>,
    /// Where, with list members named by id (`$.nodes[welcome].actions[next]`)
    /// or by edge target (`next[->done]`), else by position.
    pub path: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Every difference from `from` to `to`, in the order of `to`'s structure
/// (removed members where they stood in `from`).
pub fn diff(from: &FlowDef, to: &FlowDef) -> Vec<Change> {
    let mut a = serde_json::to_value(from).unwrap_or(Value::Null);
    let mut b = serde_json::to_value(to).unwrap_or(Value::Null);
    normalize(&mut a);
    normalize(&mut b);
    let mut out = Vec::new();
    walk(&a, &b, &mut Vec::new(), &mut out);
    out
}

/// One line per change, for `baton diff`.
pub fn format_text(changes: &[Change]) -> String {
    let mut out = String::new();
    for c in changes {
        let sign = match c.kind {
            ChangeKind::Added => '+',
            ChangeKind::Removed => '-',
            ChangeKind::Changed => '~',
        };
        let subject = serde_json::to_value(c.subject)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        out.push_str(&format!("{sign} {subject:<9} {}", c.path));
        match (c.kind, &c.before, &c.after) {
            (ChangeKind::Changed, Some(b), Some(a)) => {
                out.push_str(&format!(": {} -> {}", short(b), short(a)))
            }
            (ChangeKind::Added, _, Some(a)) if !a.is_object() => {
                out.push_str(&format!(": {}", short(a)))
            }
            (ChangeKind::Removed, Some(b), _) if !b.is_object() => {
                out.push_str(&format!(": {}", short(b)))
            }
            _ => {}
        }
        out.push('\n');
    }
    if changes.is_empty() {
        out.push_str("no changes\n");
    }
    out
}

fn short(v: &Value) -> String {
    const MAX: usize = 80;
    let text = v.to_string();
    if text.chars().count() <= MAX {
        text
    } else {
        let cut: String = text.chars().take(MAX).collect();
        format!("{cut}…")
    }
}

/// Writes edge shorthands (`next: done`) as the list they stand for, so a
/// shorthand turned into a list with the same target is no change.
fn normalize(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if EDGE_KEYS.contains(&key.as_str())
                    && let Value::String(to) = child
                {
                    *child = serde_json::json!([{ "to": to }]);
                }
                normalize(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize),
        _ => {}
    }
}

const EDGE_KEYS: [&str; 3] = ["next", "on_error", "on_timeout"];
const RULE_KEYS: [&str; 3] = ["when", "visible_when", "eligible"];

/// A path segment; its text is how the path prints.
#[derive(Clone)]
enum Seg {
    Key(String),
    Id(String),
    Target(String),
    Index(usize),
}

fn render(path: &[Seg]) -> String {
    let mut out = String::from("$");
    for seg in path {
        match seg {
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::Id(id) => out.push_str(&format!("[{id}]")),
            Seg::Target(to) => out.push_str(&format!("[->{to}]")),
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn classify(path: &[Seg]) -> (Subject, Option<String>) {
    let node = match (path.first(), path.get(1)) {
        (Some(Seg::Key(k)), Some(Seg::Id(id))) if k == "nodes" => Some(id.clone()),
        _ => None,
    };
    let keys = || {
        path.iter().filter_map(|s| match s {
            Seg::Key(k) => Some(k.as_str()),
            _ => None,
        })
    };
    let subject = if keys().any(|k| RULE_KEYS.contains(&k)) {
        Subject::Rule
    } else if path.iter().any(|s| matches!(s, Seg::Target(_)))
        || keys().any(|k| EDGE_KEYS.contains(&k))
    {
        Subject::Edge
    } else if keys().any(|k| k == "components") {
        Subject::Component
    } else if keys().any(|k| k == "actions") {
        Subject::Action
    } else if node.is_some() {
        if path.len() == 2 {
            Subject::Node
        } else {
            Subject::Setting
        }
    } else {
        Subject::Flow
    };
    (subject, node)
}

fn push(
    out: &mut Vec<Change>,
    kind: ChangeKind,
    path: &[Seg],
    before: Option<&Value>,
    after: Option<&Value>,
) {
    let (subject, node) = classify(path);
    out.push(Change {
        kind,
        subject,
        node,
        path: render(path),
        before: before.cloned(),
        after: after.cloned(),
    });
}

fn walk(a: &Value, b: &Value, path: &mut Vec<Seg>, out: &mut Vec<Change>) {
    if a == b {
        return;
    }
    match (a, b) {
        (Value::Object(ma), Value::Object(mb)) => {
            for (k, va) in ma {
                path.push(Seg::Key(k.clone()));
                match mb.get(k) {
                    Some(vb) => walk(va, vb, path, out),
                    None => push(out, ChangeKind::Removed, path, Some(va), None),
                }
                path.pop();
            }
            for (k, vb) in mb {
                if !ma.contains_key(k) {
                    path.push(Seg::Key(k.clone()));
                    push(out, ChangeKind::Added, path, None, Some(vb));
                    path.pop();
                }
            }
        }
        (Value::Array(la), Value::Array(lb)) => match keyed(la).zip(keyed(lb)) {
            Some((ka, kb)) if same_kind(&ka, &kb) => {
                for (seg, va) in &ka {
                    path.push(seg.clone());
                    match kb.iter().find(|(s, _)| same(s, seg)) {
                        Some((_, vb)) => walk(va, vb, path, out),
                        None => push(out, ChangeKind::Removed, path, Some(va), None),
                    }
                    path.pop();
                }
                for (seg, vb) in &kb {
                    if !ka.iter().any(|(s, _)| same(s, seg)) {
                        path.push(seg.clone());
                        push(out, ChangeKind::Added, path, None, Some(vb));
                        path.pop();
                    }
                }
            }
            _ => {
                for i in 0..la.len().max(lb.len()) {
                    path.push(Seg::Index(i));
                    match (la.get(i), lb.get(i)) {
                        (Some(va), Some(vb)) => walk(va, vb, path, out),
                        (Some(va), None) => push(out, ChangeKind::Removed, path, Some(va), None),
                        (None, Some(vb)) => push(out, ChangeKind::Added, path, None, Some(vb)),
                        (None, None) => {}
                    }
                    path.pop();
                }
            }
        },
        _ => push(out, ChangeKind::Changed, path, Some(a), Some(b)),
    }
}

/// Members named by `id` (or edges by `to`) when every member has a
/// distinct one; `None` means "match by position".
fn keyed(list: &[Value]) -> Option<Vec<(Seg, &Value)>> {
    let by = |field: &str, make: fn(String) -> Seg| -> Option<Vec<(Seg, &Value)>> {
        let mut seen = std::collections::HashSet::new();
        list.iter()
            .map(|v| {
                let key = v.get(field)?.as_str()?;
                seen.insert(key).then(|| (make(key.to_owned()), v))
            })
            .collect()
    };
    by("id", Seg::Id).or_else(|| by("to", Seg::Target))
}

/// Both lists keyed the same way; an empty list fits either.
fn same_kind(a: &[(Seg, &Value)], b: &[(Seg, &Value)]) -> bool {
    match (a.first(), b.first()) {
        (Some((x, _)), Some((y, _))) => std::mem::discriminant(x) == std::mem::discriminant(y),
        _ => true,
    }
}

fn same(a: &Seg, b: &Seg) -> bool {
    match (a, b) {
        (Seg::Id(x), Seg::Id(y)) | (Seg::Target(x), Seg::Target(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(yaml: &str) -> FlowDef {
        serde_saphyr::from_str(yaml).expect("test flow parses")
    }

    const BASE: &str = r#"
id: f
start: welcome
nodes:
  - id: welcome
    kind: screen
    title: Hi
    components:
      - { id: intro, kind: text, text: Hello }
    actions:
      - id: go
        next: done
  - id: done
    kind: end
"#;

    fn summary(changes: &[Change]) -> Vec<(ChangeKind, Subject, String)> {
        changes
            .iter()
            .map(|c| (c.kind, c.subject, c.path.clone()))
            .collect()
    }

    #[test]
    fn identical_flows_have_no_changes() {
        assert!(diff(&flow(BASE), &flow(BASE)).is_empty());
        assert_eq!(format_text(&[]), "no changes\n");
    }

    #[test]
    fn a_node_inserted_first_shows_only_itself_and_the_new_start() {
        let to = BASE.replace(
            "start: welcome\nnodes:\n",
            "start: intro\nnodes:\n  - id: intro\n    kind: decision\n    next: welcome\n",
        );
        let changes = diff(&flow(BASE), &flow(&to));
        assert_eq!(
            summary(&changes),
            vec![
                (ChangeKind::Changed, Subject::Flow, "$.start".to_owned()),
                (
                    ChangeKind::Added,
                    Subject::Node,
                    "$.nodes[intro]".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn components_edges_and_rules_are_named_by_id_and_target() {
        let to = BASE
            .replace("text: Hello", "text: Hello there")
            .replace(
                "        next: done",
                "        next:\n          - { when: { \"==\": [1, 1] }, to: done }\n          - { to: welcome }",
            );
        let changes = diff(&flow(BASE), &flow(&to));
        assert_eq!(
            summary(&changes),
            vec![
                (
                    ChangeKind::Changed,
                    Subject::Component,
                    "$.nodes[welcome].components[intro].text".to_owned()
                ),
                (
                    ChangeKind::Added,
                    Subject::Rule,
                    "$.nodes[welcome].actions[go].next[->done].when".to_owned()
                ),
                (
                    ChangeKind::Added,
                    Subject::Edge,
                    "$.nodes[welcome].actions[go].next[->welcome]".to_owned()
                ),
            ]
        );
        assert!(changes.iter().all(|c| c.node.as_deref() == Some("welcome")));
        let text = format_text(&changes);
        assert!(
            text.contains(
                "~ component $.nodes[welcome].components[intro].text: \"Hello\" -> \"Hello there\""
            ),
            "{text}"
        );
    }

    #[test]
    fn removed_members_carry_what_they_were() {
        let to = BASE.replace(
            "    components:\n      - { id: intro, kind: text, text: Hello }\n",
            "    components: []\n",
        );
        let changes = diff(&flow(BASE), &flow(&to));
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].kind, ChangeKind::Removed);
        assert_eq!(changes[0].subject, Subject::Component);
        assert_eq!(changes[0].before.as_ref().unwrap()["id"], "intro");
    }
}

//! Subflows inlined: for a session, a flow whose `subflow` nodes run other
//! flows becomes one graph. Each child's nodes join the parent's with their
//! ids prefixed by the subflow node's (`verify/code`); ids a flow may use
//! never contain `/`, so the prefixed ones cannot clash. Everything that
//! walks or renders a session (engine, views, steps, analytics) then sees
//! one flow, and the engine keeps each child's `input`, `steps` and
//! `params` apart by swapping them at the subflow's entry and end.

use std::collections::BTreeMap;

use super::error::FlowError;
use super::model::{EndNode, FlowDef, NodeDef, Outcome, node_log_id};
use super::validate::{Issue, Severity};
use crate::codes::Code;

/// Separates a subflow node's id from its child's node ids.
pub const SEP: char = '/';

/// How deep subflows may nest. Validation rejects cycles between flows;
/// this bounds what reaches the engine even from stored versions that
/// were published before a cycle formed.
pub const MAX_SUBFLOW_DEPTH: usize = 8;

/// The id a node has inside its own flow: the context keys of its input
/// and output (`input.<id>`, `steps.<id>`) use it.
pub fn local_id(id: &str) -> &str {
    id.rsplit(SEP).next().unwrap_or(id)
}

/// The composed id of the subflow node a node belongs to; `None` for a
/// node of the session's own flow.
pub fn scope_of(id: &str) -> Option<&str> {
    id.rsplit_once(SEP).map(|(at, _)| at)
}

/// Where one child flow sits in a composed graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub flow_id: String,
    pub version: i32,
    /// Composed id of the child's start node.
    pub start: String,
    /// Composed id of where a failure inside the child goes when its step
    /// has no edge of its own: the child's `on_error`, else an end that
    /// returns `failed` to the parent.
    pub on_error: String,
}

/// A parent flow with its children inlined; `scopes` is keyed by the
/// composed id of each subflow node.
#[derive(Debug, Clone)]
pub struct Composition {
    pub def: FlowDef,
    pub scopes: BTreeMap<String, Scope>,
}

/// The flow ids `def`'s own subflow nodes run.
pub fn children_of(def: &FlowDef) -> Vec<String> {
    let mut out: Vec<String> = def
        .nodes
        .iter()
        .filter_map(|n| match n {
            NodeDef::Subflow(s) if !s.id.contains(SEP) => Some(s.flow.clone()),
            _ => None,
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// What is wrong with `def`'s subflows given the other flows: a child
/// `children` does not know (reported with `missing`: an error where the
/// set of flows is all there is, a warning where the child may exist
/// elsewhere), and a cycle back to `def`. `children(id)` is the flows flow
/// `id` runs, `None` for a flow it does not know.
pub fn check_subflows(
    def: &FlowDef,
    file: &str,
    missing: Severity,
    children: &dyn Fn(&str) -> Option<Vec<String>>,
) -> Vec<Issue> {
    let runs = |id: &str| {
        if id == def.id {
            Some(children_of(def))
        } else {
            children(id)
        }
    };
    let mut out = Vec::new();
    for (i, node) in def.nodes.iter().enumerate() {
        let NodeDef::Subflow(f) = node else { continue };
        if f.flow == def.id {
            continue; // validation reports a flow running itself
        }
        let issue = |severity, code, message: String, hint: &str| Issue {
            severity,
            code,
            file: file.to_owned(),
            node: Some(f.id.clone()),
            path: format!("$.nodes[{i}].flow"),
            message,
            hint: Some(hint.to_owned()),
            line: None,
            column: None,
        };
        if runs(&f.flow).is_none() {
            out.push(issue(
                missing,
                Code::UnknownSubflow,
                format!(
                    "subflow `{}` runs flow `{}`, which is not loaded",
                    f.id, f.flow
                ),
                "add the child flow's file, or publish it first",
            ));
            continue;
        }
        // Depth-first from the child: a path back to `def` is a cycle.
        let mut stack = vec![vec![def.id.clone(), f.flow.clone()]];
        let mut seen = std::collections::BTreeSet::new();
        'search: while let Some(path) = stack.pop() {
            let last = path.last().cloned().unwrap_or_default();
            if !seen.insert(last.clone()) {
                continue;
            }
            for next in runs(&last).unwrap_or_default() {
                let mut longer = path.clone();
                longer.push(next.clone());
                if next == def.id {
                    out.push(issue(
                        Severity::Error,
                        Code::SubflowCycle,
                        format!("subflows form a cycle: {}", longer.join(" -> ")),
                        "a child flow must not run any flow above it",
                    ));
                    break 'search;
                }
                stack.push(longer);
            }
        }
    }
    out
}

/// Inlines every subflow of `parent`, recursively, from `children` (flow id
/// to the pinned version and its definition).
pub fn compose(
    parent: &FlowDef,
    children: &BTreeMap<String, (i32, FlowDef)>,
) -> Result<Composition, FlowError> {
    let fail = |message: String| FlowError::Compile {
        flow: parent.id.clone(),
        message,
    };
    let mut def = parent.clone();
    let mut scopes = BTreeMap::new();
    // (composed id of the subflow node, the flow it runs, the flows above it)
    let mut queue: Vec<(String, String, Vec<String>)> = def
        .nodes
        .iter()
        .filter_map(|n| match n {
            NodeDef::Subflow(s) => Some((s.id.clone(), s.flow.clone(), vec![parent.id.clone()])),
            _ => None,
        })
        .collect();
    while let Some((at, flow_id, above)) = queue.pop() {
        if above.contains(&flow_id) || above.len() > MAX_SUBFLOW_DEPTH {
            return Err(fail(format!(
                "subflows nest too deep or form a cycle: {} -> {flow_id}",
                above.join(" -> ")
            )));
        }
        let Some((version, child)) = children.get(&flow_id) else {
            return Err(fail(format!(
                "subflow `{at}` runs flow `{flow_id}`, which has no version to run"
            )));
        };
        let prefix = format!("{at}{SEP}");
        let mut path = above.clone();
        path.push(flow_id.clone());
        for node in &child.nodes {
            let mut n = node.clone();
            keep_log_ids(&mut n, &child.id);
            for to in n.targets_mut() {
                to.insert_str(0, &prefix);
            }
            let id = n.id_mut();
            id.insert_str(0, &prefix);
            if let NodeDef::Subflow(s) = &n {
                queue.push((s.id.clone(), s.flow.clone(), path.clone()));
            }
            def.nodes.push(n);
        }
        let on_error = match &child.on_error {
            Some(to) => format!("{prefix}{to}"),
            None => {
                // `!` is outside the id alphabet: no flow can name it.
                let id = format!("{prefix}!failed");
                def.nodes.push(NodeDef::End(EndNode {
                    id: id.clone(),
                    log_id: Some(node_log_id(None, &child.id, "failed")),
                    outcome: Outcome::Failed,
                    title: None,
                    components: Vec::new(),
                }));
                id
            }
        };
        scopes.insert(
            at,
            Scope {
                flow_id,
                version: *version,
                start: format!("{prefix}{}", child.start),
                on_error,
            },
        );
    }
    Ok(Composition { def, scopes })
}

/// Analytics ids stay the child's own (`<child>.<screen>`), whichever
/// parent runs it.
fn keep_log_ids(node: &mut NodeDef, flow: &str) {
    // Only screens (with their actions) and ends have analytics ids.
    if let NodeDef::Screen(s) = node {
        let id = node_log_id(s.log_id.as_deref(), flow, &s.id);
        for a in &mut s.actions {
            let action = a.log_id_in(flow, &s.id);
            a.log_id = Some(action);
        }
        s.log_id = Some(id);
    } else if let NodeDef::End(e) = node {
        e.log_id = Some(node_log_id(e.log_id.as_deref(), flow, &e.id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(yaml: &str) -> FlowDef {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn children_are_inlined_with_prefixed_ids() {
        let parent = flow(
            "id: p\nstart: verify\nnodes:\n\
             - {kind: subflow, id: verify, flow: c, next: done}\n\
             - {kind: end, id: done}\n",
        );
        let child = flow(
            "id: c\nstart: ask\nnodes:\n\
             - {kind: screen, id: ask, actions: [{id: go, next: ok}]}\n\
             - {kind: end, id: ok}\n",
        );
        let children = BTreeMap::from([("c".to_string(), (3, child))]);
        let c = compose(&parent, &children).unwrap();
        let ids: Vec<&str> = c.def.nodes.iter().map(NodeDef::id).collect();
        assert_eq!(
            ids,
            [
                "verify",
                "done",
                "verify/ask",
                "verify/ok",
                "verify/!failed"
            ]
        );
        let NodeDef::Screen(ask) = &c.def.nodes[2] else {
            panic!()
        };
        assert_eq!(ask.log_id.as_deref(), Some("c.ask"));
        assert_eq!(ask.actions[0].next.to_list()[0].to, "verify/ok");
        let scope = &c.scopes["verify"];
        assert_eq!((scope.version, scope.start.as_str()), (3, "verify/ask"));
        assert_eq!(scope.on_error, "verify/!failed");
        assert_eq!(local_id("verify/ask"), "ask");
        assert_eq!(local_id("ask"), "ask");
    }

    #[test]
    fn a_cycle_or_a_missing_child_does_not_compose() {
        let a = flow("id: a\nstart: s\nnodes:\n- {kind: subflow, id: s, flow: b, next: s}\n");
        let b = flow("id: b\nstart: s\nnodes:\n- {kind: subflow, id: s, flow: a, next: s}\n");
        let err = compose(&a, &BTreeMap::new()).unwrap_err().to_string();
        assert!(err.contains("flow `b`, which has no version"), "{err}");
        let children =
            BTreeMap::from([("b".to_string(), (1, b)), ("a".to_string(), (1, a.clone()))]);
        let err = compose(&a, &children).unwrap_err().to_string();
        assert!(err.contains("a -> b -> a"), "{err}");
    }
}

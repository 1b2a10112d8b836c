//! Which app cohorts (platform × app version × advertised capabilities) can
//! walk a flow version, decided before it is published: the screens each
//! cohort can reach, and every reachable screen it could not render.
//!
//! Reachability follows every edge, except those whose rule reads nothing
//! but `client.*`: such a rule is decided for the cohort, so an edge for
//! web users is pruned for an iOS cohort. What the report cannot decide it
//! keeps: a rule or `visible_when` that reads anything else counts as
//! possibly true, so a problem is never hidden, at the price of reporting
//! some a session might never meet.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::EngineError;
use super::view::{ClientInfo, Shown, choose_with, lacking_with};
use crate::flow::compile::{CompiledEdge, CompiledFlow, CompiledKind, NodeIdx, lenient_semver};
use crate::flow::model::{ComponentDef, NodeDef, Role};
use crate::rules::Rule;

/// A group of clients that render alike.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Cohort {
    pub platform: Option<String>,
    pub app_version: Option<String>,
    /// Sorted; `None`: every core kind and no custom one.
    pub capabilities: Option<Vec<String>>,
}

impl Cohort {
    fn client(&self) -> ClientInfo {
        ClientInfo {
            platform: self.platform.clone(),
            app_version: self.app_version.clone(),
            locale: None,
            capabilities: self.capabilities.clone(),
        }
    }
}

/// A reachable node a cohort cannot be shown as designed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub node: String,
    pub reason: String,
}

/// What one cohort meets in a flow version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CohortReport {
    pub cohort: Cohort,
    /// Screens and end nodes the cohort can reach, in flow order.
    pub reachable: Vec<String>,
    /// Screens it cannot render at all: it would get `CLIENT_UNSUPPORTED`.
    pub unrenderable: Vec<Problem>,
    /// End and pending screens it gets as the built-in text screen.
    pub degraded: Vec<Problem>,
}

impl CohortReport {
    /// Whether a session of this cohort could meet a screen it cannot render.
    pub fn blocking(&self) -> bool {
        !self.unrenderable.is_empty()
    }
}

/// The report for each cohort, in the order given.
pub fn report(flow: &CompiledFlow, cohorts: &[Cohort]) -> Vec<CohortReport> {
    cohorts.iter().map(|c| one(flow, c)).collect()
}

/// A rule decided by the cohort alone: `Some(result)`, else `None`.
fn decide(rule: &Rule, context: &Value) -> Option<bool> {
    if !cohort_only(rule.source()) {
        return None;
    }
    rule.matches(context).ok()
}

/// Whether every data read in `logic` is a literal path into what a cohort
/// fixes (`client.platform`, `client.app_version`, `client.capabilities`).
/// Anything else keeps the rule undecided: `client.locale` (a cohort has
/// none), the whole document (`{"var": ""}`), a computed path, and reads
/// inside iteration bodies.
fn cohort_only(logic: &Value) -> bool {
    match logic {
        Value::Object(map) => map.iter().all(|(op, args)| match op.as_str() {
            "var" | "missing" | "missing_some" => {
                let first = match args {
                    Value::Array(list) => list.first(),
                    other => Some(other),
                };
                matches!(first.and_then(Value::as_str), Some(p) if COHORT_PATHS
                    .iter()
                    .any(|c| p == *c || p.strip_prefix(c).is_some_and(|r| r.starts_with('.'))))
                    && match args {
                        Value::Array(list) => list.iter().skip(1).all(cohort_only),
                        _ => true,
                    }
            }
            _ => cohort_only(args),
        }),
        Value::Array(list) => list.iter().all(cohort_only),
        _ => true,
    }
}

/// The context paths a cohort fixes.
const COHORT_PATHS: [&str; 3] = [
    "client.platform",
    "client.app_version",
    "client.capabilities",
];

fn one(flow: &CompiledFlow, cohort: &Cohort) -> CohortReport {
    let client = cohort.client();
    let version = cohort.app_version.as_deref().and_then(lenient_semver);
    let context = json!({ "client": client.to_context() });
    let shown = |c: &ComponentDef| -> Result<bool, EngineError> {
        if let (Some(min), Some(have)) = (c.min_app_version().and_then(lenient_semver), &version)
            && *have < min
        {
            return Ok(false);
        }
        Ok(match c.visible_when() {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(rule) => flow
                .guard(rule)
                .and_then(|r| decide(r, &context))
                .unwrap_or(true),
        })
    };
    let reached = reachable(flow, &context);
    let mut out = CohortReport {
        cohort: cohort.clone(),
        reachable: Vec::new(),
        unrenderable: Vec::new(),
        degraded: Vec::new(),
    };
    let renders_text = client
        .capabilities
        .as_ref()
        .is_none_or(|caps| caps.iter().any(|k| k == "text"));
    for idx in reached {
        let node = flow.node_def(idx);
        let id = node.id().to_string();
        match node {
            NodeDef::Screen(screen) => {
                out.reachable.push(id.clone());
                if let Err(e) = choose_with(screen, &client, version.as_ref(), &shown) {
                    out.unrenderable.push(Problem {
                        node: id,
                        reason: reason_of(e),
                    });
                }
            }
            NodeDef::End(end) => {
                out.reachable.push(id.clone());
                last_screen(&mut out, id, &end.components, &client, &shown, renders_text);
            }
            node => match node.role() {
                Role::Task => match node.pending() {
                    Some(p) => {
                        last_screen(&mut out, id, &p.components, &client, &shown, renders_text)
                    }
                    None if !renders_text => out.unrenderable.push(Problem {
                        node: id,
                        reason: "the built-in pending screen needs `text`".into(),
                    }),
                    None => {}
                },
                // Shows nothing. (Screens and ends matched above.)
                Role::Decision | Role::Inline | Role::Screen | Role::End => {}
            },
        }
    }
    out
}

/// End and pending screens: a lacking kind gets the built-in text screen,
/// which blocks only a client without `text`.
fn last_screen(
    out: &mut CohortReport,
    node: String,
    components: &[ComponentDef],
    client: &ClientInfo,
    shown: &Shown<'_>,
    renders_text: bool,
) {
    let Ok(Some(kind)) = lacking_with(components, client, shown) else {
        return;
    };
    if renders_text {
        out.degraded.push(Problem {
            node,
            reason: format!("uses `{kind}`; the cohort gets the built-in text screen"),
        });
    } else {
        out.unrenderable.push(Problem {
            node,
            reason: format!("uses `{kind}`, and the built-in text screen needs `text`"),
        });
    }
}

fn reason_of(e: EngineError) -> String {
    match e {
        EngineError::ClientUnsupported { reason, .. } => reason,
        other => other.to_string(),
    }
}

/// The nodes reachable from the start for a client, in flow order.
fn reachable(flow: &CompiledFlow, context: &Value) -> BTreeSet<NodeIdx> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![flow.start];
    let mut steps_reached = false;
    while let Some(idx) = todo.pop() {
        if !seen.insert(idx) {
            continue;
        }
        let mut follow = |edges: &[CompiledEdge]| {
            for e in edges {
                match e.when.as_ref().map(|r| decide(r, context)) {
                    // Unconditional, or decided true: first match wins.
                    None | Some(Some(true)) => {
                        todo.push(e.to);
                        break;
                    }
                    Some(Some(false)) => {}
                    Some(None) => todo.push(e.to),
                }
            }
        };
        match &flow.nodes[idx].kind {
            CompiledKind::Screen { actions, .. } => {
                for a in actions {
                    follow(&a.edges);
                }
            }
            CompiledKind::Decision { edges } => follow(edges),
            CompiledKind::End { .. } => {}
            CompiledKind::Call {
                next,
                on_error,
                on_timeout,
                on_review,
                ..
            } => {
                steps_reached = true;
                follow(next);
                todo.extend(on_error.iter().chain(on_timeout).chain(on_review));
            }
            CompiledKind::Transform { next, .. } | CompiledKind::Wait { next, .. } => {
                steps_reached = true;
                follow(next);
            }
            CompiledKind::Approval {
                outcomes,
                on_timeout,
                ..
            } => {
                steps_reached = true;
                todo.extend(outcomes.iter().map(|(_, to)| *to));
                todo.extend(on_timeout);
            }
            CompiledKind::Event {
                next, on_timeout, ..
            } => {
                steps_reached = true;
                follow(next);
                todo.extend(on_timeout);
            }
            // A child's graph is reached through its start; how it ends
            // decides which of the subflow's edges the session takes.
            CompiledKind::Subflow {
                next,
                on_abandoned,
                on_error,
                enter,
                ..
            } => {
                follow(next);
                todo.extend(on_abandoned.iter().chain(on_error).chain(enter));
            }
            CompiledKind::Return { .. } => {}
        }
        // A step without its own error edge fails over to the flow's.
        if steps_reached && let Some(to) = flow.on_error {
            todo.push(to);
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::load;

    fn flow(yaml: &str) -> CompiledFlow {
        let def = load::parse_flow(std::path::Path::new("t.yaml"), yaml).expect("parses");
        let issues = crate::flow::validate::validate(&def, "t.yaml");
        assert!(
            !issues
                .iter()
                .any(|i| i.severity == crate::flow::validate::Severity::Error),
            "{issues:?}"
        );
        CompiledFlow::compile(def, 1, "h".into()).expect("compiles")
    }

    fn cohort(platform: &str, version: &str, caps: Option<&[&str]>) -> Cohort {
        Cohort {
            platform: Some(platform.into()),
            app_version: Some(version.into()),
            capabilities: caps.map(|c| c.iter().map(|s| s.to_string()).collect()),
        }
    }

    const PLATFORMS: &str = r#"
id: platforms
start: route
nodes:
  - id: route
    kind: decision
    next:
      - { when: { "==": [{ var: client.platform }, "web"] }, to: web_only }
      - { when: { "==": [{ var: user.attributes.plan }, "pro"] }, to: pro }
      - to: app
  - id: web_only
    kind: screen
    components: [{ kind: markdown, text: "**web**" }]
    actions: [{ id: next, next: done }]
  - id: pro
    kind: screen
    min_app_version: "6.0"
    components: [{ kind: custom, name: perks }]
    fallback:
      - components: [{ kind: custom, name: simple_perks }]
      - components: [{ kind: text, text: "Perks" }]
    actions: [{ id: next, next: done }]
  - id: app
    kind: screen
    components: [{ kind: text, text: "hi" }]
    actions: [{ id: next, next: done }]
  - id: done
    kind: end
    title: Bye
    components: [{ kind: image, url: "https://example.test/x.png" }]
"#;

    #[test]
    fn client_rules_are_decided_per_cohort_and_others_kept() {
        let f = flow(PLATFORMS);
        let ios = cohort("ios", "6.1", Some(&["text", "image"]));
        let web = cohort("web", "1.0", Some(&["markdown", "image", "text"]));
        let r = report(&f, &[ios, web]);
        // iOS never takes the web edge; `user.*` keeps `pro` and `app`.
        assert_eq!(r[0].reachable, ["pro", "app", "done"]);
        assert_eq!(r[0].unrenderable, []);
        // Web takes its own edge, and the first match ends the list.
        assert_eq!(r[1].reachable, ["web_only", "done"]);
        assert!(!r[1].blocking());
    }

    #[test]
    fn only_rules_on_what_a_cohort_fixes_are_decided() {
        let ctx = json!({ "client": { "platform": "ios", "locale": null } });
        let decided = |rule: Value| decide(&Rule::compile(&rule).unwrap(), &ctx);
        assert_eq!(
            decided(json!({ "==": [{ "var": "client.platform" }, "web"] })),
            Some(false)
        );
        assert_eq!(
            decided(json!({ "in": ["text", { "var": "client.capabilities" }] })),
            Some(false)
        );
        // A cohort has no locale: such a rule could go either way.
        assert_eq!(
            decided(json!({ "==": [{ "var": "client.locale" }, "fr"] })),
            None
        );
        assert_eq!(
            decided(json!({ "!=": [{ "var": "client.locale" }, "fr"] })),
            None
        );
        assert_eq!(
            decided(json!({ "!!": { "var": "" } })),
            None,
            "the whole document"
        );
        assert_eq!(
            decided(json!({ "==": [{ "var": { "cat": ["client.", "platform"] } }, "ios"] })),
            None,
            "a computed path"
        );
        assert_eq!(decided(json!({ "==": [{ "var": "user.id" }, "x"] })), None);
        assert_eq!(decided(json!(true)), Some(true));
    }

    #[test]
    fn screens_without_a_fitting_tree_are_unrenderable() {
        let f = flow(PLATFORMS);
        let r = report(
            &f,
            &[
                cohort("ios", "6.1", Some(&["custom:perks", "text", "image"])),
                cohort("ios", "6.1", Some(&["custom:simple_perks", "image"])),
                cohort("ios", "6.1", Some(&["image"])),
                // Too old for the screen: its fallbacks, which need text.
                cohort("android", "5.9", Some(&["custom:perks", "image"])),
            ],
        );
        assert!(!r[0].blocking(), "{r:?}");
        let text_only = report(&f, &[cohort("ios", "6.1", Some(&["text", "image"]))]);
        assert!(
            !text_only[0].unrenderable.iter().any(|p| p.node == "pro"),
            "the last fallback is all text: {text_only:?}"
        );
        let new = report(
            &f,
            &[cohort(
                "android",
                "6.0",
                Some(&["custom:perks", "text", "image"]),
            )],
        );
        assert!(!new[0].blocking(), "6.0 meets min_app_version: {new:?}");
        // The first fallback fits; `app` needs `text` (the end's image is fine).
        let nodes: Vec<&str> = r[1].unrenderable.iter().map(|p| p.node.as_str()).collect();
        assert_eq!(nodes, ["app"], "{r:?}");
        assert_eq!(r[2].unrenderable.len(), 2, "{r:?}");
        assert_eq!(r[2].unrenderable[0].node, "pro");
        assert!(
            r[2].unrenderable[0].reason.contains("`custom:perks`"),
            "{:?}",
            r[2].unrenderable[0]
        );
        assert_eq!(r[2].unrenderable[1].node, "app");
        let old = &r[3].unrenderable;
        assert_eq!(old[0].node, "pro");
        assert!(old[0].reason.contains("min_app_version 6.0"), "{old:?}");
    }

    #[test]
    fn end_screens_degrade_to_text_and_block_without_it() {
        let f = flow(PLATFORMS);
        let r = report(
            &f,
            &[
                cohort("ios", "6.1", Some(&["text"])),
                cohort("ios", "6.1", Some(&["custom:perks"])),
            ],
        );
        assert_eq!(
            r[0].degraded,
            [Problem {
                node: "done".into(),
                reason: "uses `image`; the cohort gets the built-in text screen".into()
            }]
        );
        assert!(
            r[1].unrenderable
                .iter()
                .any(|p| p.node == "done" && p.reason.contains("needs `text`")),
            "{r:?}"
        );
    }

    #[test]
    fn the_example_flows_render_for_a_client_with_every_core_kind() {
        let report_ =
            load::load_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("flows"))
                .expect("flows/ loads");
        assert!(report_.flows.len() >= 3);
        for loaded in report_.flows {
            let f = CompiledFlow::compile(loaded.def, 1, loaded.hash).expect("compiles");
            let all = Cohort {
                platform: Some("ios".into()),
                app_version: None,
                capabilities: None,
            };
            let r = report(&f, &[all]);
            assert!(!r[0].reachable.is_empty(), "{}", f.id);
            assert_eq!(r[0].unrenderable, [], "{}", f.id);
        }
    }
}

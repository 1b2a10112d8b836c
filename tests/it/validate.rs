//! Flow loading, validation and templates: one small broken flow per check,
//! asserting the exact issues (code, node, path) so a false positive fails
//! as surely as a missed problem.

use std::path::{Path, PathBuf};

use baton::flow::error::FlowError;
use baton::flow::load::{
    MAX_FILE_BYTES, MAX_NODES, canonical_json, check_dir, content_hash, load_dir, load_file,
    parse_flow, parse_flow_value,
};
use baton::flow::model::FlowDef;
use baton::flow::template::{MAX_OUTPUT_BYTES, RenderContext, Template};
use baton::flow::validate::{
    Issue, Severity, compile_input_pattern, format_human, format_json, parse_app_version,
    parse_date, validate,
};
use proptest::prelude::*;
use serde_json::{Value, json};

// ---------------------------------------------------------------- helpers

fn flow(yaml: &str) -> FlowDef {
    parse_flow(Path::new("t.yaml"), yaml)
        .unwrap_or_else(|issues| panic!("test flow does not parse:\n{}", format_human(&issues)))
}

fn check(yaml: &str) -> Vec<Issue> {
    validate(&flow(yaml), "t.yaml")
}

/// (code, node, path) of each issue, in order.
fn triples(issues: &[Issue]) -> Vec<(&str, Option<&str>, &str)> {
    issues
        .iter()
        .map(|i| (i.code.as_str(), i.node.as_deref(), i.path.as_str()))
        .collect()
}

#[track_caller]
fn assert_issues(yaml: &str, expected: &[(&str, Option<&str>, &str)]) -> Vec<Issue> {
    let issues = check(yaml);
    assert_eq!(
        triples(&issues),
        expected,
        "\nactual issues:\n{}",
        format_human(&issues)
    );
    issues
}

fn find<'a>(issues: &'a [Issue], code: &str) -> &'a Issue {
    issues
        .iter()
        .find(|i| i.code == code)
        .unwrap_or_else(|| panic!("no {code} in\n{}", format_human(issues)))
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/flows/bad")
}

const GOOD: &str = r#"
id: signup
title: Sign up
start: welcome
nodes:
  - kind: screen
    id: welcome
    title: "Hi {{ user.attributes.first_name }}"
    components:
      - kind: heading
        text: {en: "Welcome", de: "Willkommen"}
        level: 1
      - kind: text
        text: "{% for t in user.attributes.tags %}{{ t }}{% if not loop.last %}, {% endif %}{% endfor %}"
      - kind: text_input
        id: name
        label: Name
        required: true
        min_length: 1
        max_length: 50
        pattern: "[A-Za-z ]+"
      - kind: card
        title: "{{ client.platform }}"
        children:
          - kind: checkbox
            id: terms
            label: "I accept"
            required: true
      - kind: button
        label: Continue
        action: continue
    actions:
      - id: continue
        next:
          - when: {"==": [{"var": "input.welcome.name"}, "admin"]}
            to: admin_check
          - to: profile
      - id: skip
        validate: false
        next: done
  - kind: decision
    id: admin_check
    next:
      - when: {"and": [{"var": "flags.admin_enabled"}, {"some": [{"var": "user.attributes.roles"}, {"==": [{"var": ""}, "admin"]}]}]}
        to: done
      - to: profile
  - kind: screen
    id: profile
    components:
      - kind: number_input
        id: age
        label: Age
        min: 18
        max: 120
      - kind: date
        id: birthday
        label: Birthday
        min: "1900-01-01"
        max: "2024-02-29"
      - kind: select
        id: plan
        label: Plan
        options:
          - {value: free, label: Free}
          - {value: pro, label: {en: Pro, de: Profi}}
      - kind: custom
        id: map
        name: map_picker
        props: {zoom: 3}
    min_app_version: "5.2"
    fallback:
      title: Profile
      components:
        - kind: number_input
          id: age
          label: Age
        - kind: text_input
          id: address
          label: Address
    actions:
      - id: save
        next:
          - when: {"!!": {"var": "input.profile.map"}}
            to: done
          - to: done
  - kind: end
    id: done
    title: "Thanks, {{ input.welcome.name }}"
    components:
      - kind: markdown
        text: "You chose **{{ input.profile.plan }}**."
"#;

// ------------------------------------------------------------ good flows

#[test]
fn good_flow_has_no_issues() {
    let issues = check(GOOD);
    assert!(issues.is_empty(), "{}", format_human(&issues));
    assert_eq!(format_human(&issues), "no issues\n");
}

#[test]
fn a_cycle_through_a_screen_is_fine() {
    assert_issues(
        r#"
id: t
start: a
nodes:
  - {kind: screen, id: a, actions: [{id: go, next: d}]}
  - {kind: decision, id: d, next: [{when: {"var": "flags.again"}, to: a}, {to: b}]}
  - {kind: end, id: b}
"#,
        &[],
    );
}

// ------------------------------------------------------ one check each

#[test]
fn unknown_start_and_edge_targets() {
    let issues = assert_issues(
        r#"
id: t
start: nowhere
nodes:
  - kind: screen
    id: a
    actions:
      - {id: go, next: bb}
      - {id: alt, next: [{when: {"var": "flags.x"}, to: b}, {to: c}]}
  - {kind: end, id: b}
"#,
        &[
            ("UNKNOWN_START", None, "$.start"),
            ("UNKNOWN_TARGET", Some("a"), "$.nodes[0].actions[0].next"),
            (
                "UNKNOWN_TARGET",
                Some("a"),
                "$.nodes[0].actions[1].next[1].to",
            ),
        ],
    );
    assert!(issues.iter().all(|i| i.severity == Severity::Error));
    assert_eq!(issues[1].hint.as_deref(), Some("did you mean `b`?"));
    assert!(issues[1].message.contains("`bb`"), "{}", issues[1].message);
}

#[test]
fn unreachable_node() {
    let issues = assert_issues(
        r#"
id: t
start: a
nodes:
  - {kind: screen, id: a, actions: [{id: go, next: b}]}
  - {kind: end, id: b}
  - {kind: screen, id: orphan, actions: [{id: go, next: b}]}
"#,
        &[("UNREACHABLE_NODE", Some("orphan"), "$.nodes[2]")],
    );
    assert_eq!(issues[0].severity, Severity::Warning);
}

#[test]
fn screen_without_actions() {
    assert_issues(
        r#"
id: t
start: a
nodes:
  - {kind: screen, id: a, actions: [{id: go, next: [{when: {"var": "flags.x"}, to: stuck}, {to: b}]}]}
  - {kind: screen, id: stuck, components: [{kind: text, text: hi}]}
  - {kind: end, id: b}
"#,
        &[("DEAD_END_SCREEN", Some("stuck"), "$.nodes[1].actions")],
    );
}

#[test]
fn duplicate_node_action_and_component_ids() {
    assert_issues(
        r#"
id: t
start: a
nodes:
  - kind: screen
    id: a
    components:
      - {kind: text_input, id: name, label: N}
      - kind: card
        children:
          - {kind: stack, children: [{kind: text, id: name, text: x}]}
    actions: [{id: go, next: b}, {id: go, next: b}]
  - {kind: end, id: b}
  - {kind: end, id: b}
"#,
        &[
            ("DUPLICATE_ACTION_ID", Some("a"), "$.nodes[0].actions[1].id"),
            (
                "DUPLICATE_COMPONENT_ID",
                Some("a"),
                "$.nodes[0].components[1].children[0].children[0].id",
            ),
            ("DUPLICATE_NODE_ID", Some("b"), "$.nodes[2].id"),
        ],
    );
}

#[test]
fn fallback_ids_are_checked_within_the_fallback() {
    // The fallback may (and should) reuse the screen's input ids; two
    // components of the fallback itself may not share one.
    assert_issues(
        r#"
id: t
start: a
nodes:
  - kind: screen
    id: a
    components: [{kind: text_input, id: name, label: N}, {kind: custom, name: map_picker}]
    fallback:
      components: [{kind: text_input, id: name, label: N}, {kind: text, id: name, text: x}]
    actions: [{id: go, next: b}]
  - {kind: end, id: b}
"#,
        &[(
            "DUPLICATE_COMPONENT_ID",
            Some("a"),
            "$.nodes[0].fallback.components[1].id",
        )],
    );
}

#[test]
fn malformed_rule() {
    let issues = assert_issues(
        r#"
id: t
start: d
nodes:
  - {kind: decision, id: d, next: [{when: {"no_such_op": [1]}, to: b}, {to: b}]}
  - {kind: end, id: b}
"#,
        &[("INVALID_RULE", Some("d"), "$.nodes[0].next[0].when")],
    );
    assert!(issues[0].hint.is_some());
}

#[test]
fn references_to_members_the_context_does_not_have() {
    assert_issues(
        r#"
id: t
start: a
nodes:
  - kind: screen
    id: a
    title: "Hi {{ user.atributes.name }} on {{ client.platform }} ({{ session.flow_version }})"
    components:
      - {kind: text, text: "{{ client.os }} {{ user.attributes.anything.goes }}"}
    actions:
      - id: go
        next:
          - {when: {"==": [{"var": "session.user"}, "x"]}, to: b}
          - {to: b}
  - {kind: end, id: b}
"#,
        &[
            ("UNKNOWN_CONTEXT_FIELD", Some("a"), "$.nodes[0].title"),
            (
                "UNKNOWN_CONTEXT_FIELD",
                Some("a"),
                "$.nodes[0].actions[0].next[0].when",
            ),
            (
                "UNKNOWN_CONTEXT_FIELD",
                Some("a"),
                "$.nodes[0].components[0].text",
            ),
        ],
    );
}

#[test]
fn references_to_nothing() {
    let issues = assert_issues(
        r#"
id: t
start: a
nodes:
  - kind: screen
    id: a
    title: "Hi {{ usr.name }}"
    components:
      - {kind: text_input, id: name, label: "{{ input.nope.x }}"}
      - {kind: text, text: "{{ input.a.nme }} {{ input.d.x }}"}
    actions:
      - id: go
        next:
          - {when: {"==": [{"var": "a.name"}, "x"]}, to: d}
          - {to: d}
  - {kind: decision, id: d, next: b}
  - {kind: end, id: b}
"#,
        &[
            ("UNKNOWN_CONTEXT_ROOT", Some("a"), "$.nodes[0].title"),
            (
                "UNKNOWN_CONTEXT_ROOT",
                Some("a"),
                "$.nodes[0].actions[0].next[0].when",
            ),
            (
                "UNKNOWN_INPUT_SCREEN",
                Some("a"),
                "$.nodes[0].components[0].label",
            ),
            (
                "UNKNOWN_INPUT_FIELD",
                Some("a"),
                "$.nodes[0].components[1].text",
            ),
            (
                "UNKNOWN_INPUT_SCREEN",
                Some("a"),
                "$.nodes[0].components[1].text",
            ),
        ],
    );
    assert!(
        issues[0].message.contains("`usr.name`"),
        "{}",
        issues[0].message
    );
    assert_eq!(
        issues[1].hint.as_deref(),
        Some("`a` is a screen; its values are at `input.a.name`")
    );
    assert!(issues[1].message.starts_with("rule reads"));
    assert_eq!(issues[3].hint.as_deref(), Some("inputs of `a`: name"));
    assert!(
        issues[4].message.contains("decision"),
        "{}",
        issues[4].message
    );
}

#[test]
fn inputs_without_a_submitting_action() {
    assert_issues(
        r#"
id: t
start: a
nodes:
  - kind: screen
    id: a
    components: [{kind: checkbox, id: ok, label: OK}]
    actions: [{id: skip, validate: false, next: b}]
  - {kind: end, id: b, components: [{kind: email_input, id: mail, label: Mail}]}
"#,
        &[
            ("INPUT_WITHOUT_SUBMIT", Some("a"), "$.nodes[0].actions"),
            (
                "INPUT_WITHOUT_SUBMIT",
                Some("b"),
                "$.nodes[1].components[0]",
            ),
        ],
    );
}

#[test]
fn button_with_undeclared_action() {
    let issues = assert_issues(
        r#"
id: t
start: a
nodes:
  - kind: screen
    id: a
    components: [{kind: button, label: Go, action: go}, {kind: button, label: X, action: nope}]
    actions: [{id: go, next: b}]
  - {kind: end, id: b, components: [{kind: button, label: Again, action: go}]}
"#,
        &[
            (
                "UNKNOWN_BUTTON_ACTION",
                Some("a"),
                "$.nodes[0].components[1].action",
            ),
            (
                "UNKNOWN_BUTTON_ACTION",
                Some("b"),
                "$.nodes[1].components[0].action",
            ),
        ],
    );
    assert_eq!(issues[0].hint.as_deref(), Some("declared actions: go"));
}

#[test]
fn decision_only_cycles() {
    let issues = assert_issues(
        r#"
id: t
start: a
nodes:
  - {kind: screen, id: a, actions: [{id: go, next: d1}, {id: other, next: me}]}
  - {kind: decision, id: d1, next: [{when: {"var": "flags.x"}, to: d2}, {to: b}]}
  - {kind: decision, id: d2, next: [{when: {"var": "flags.y"}, to: d1}, {to: b}]}
  - {kind: decision, id: me, next: [{when: {"var": "flags.z"}, to: me}, {to: b}]}
  - {kind: end, id: b}
"#,
        &[
            ("DECISION_CYCLE", Some("d1"), "$.nodes[1]"),
            ("DECISION_CYCLE", Some("me"), "$.nodes[3]"),
        ],
    );
    assert!(
        issues[0].message.contains("`d1`, `d2`"),
        "{}",
        issues[0].message
    );
}

#[test]
fn component_constraints() {
    assert_issues(
        r#"
id: t
start: a
nodes:
  - kind: screen
    id: a
    components:
      - {kind: text_input, id: t, label: T, pattern: "[a-z", min_length: 5, max_length: 2}
      - {kind: number_input, id: n, label: N, min: 10, max: 1}
      - {kind: date, id: d1, label: D, min: "2023-02-29", max: "24-01-01"}
      - {kind: date, id: d2, label: D, min: "2024-12-31", max: "2024-01-01"}
      - {kind: heading, text: H, level: 7}
      - {kind: select, id: s1, label: S, options: []}
      - {kind: select, id: s2, label: S, options: [{value: x, label: X}, {value: x, label: Y}]}
    actions: [{id: go, next: b}]
  - {kind: end, id: b}
"#,
        &[
            (
                "INVALID_LENGTH_RANGE",
                Some("a"),
                "$.nodes[0].components[0].min_length",
            ),
            (
                "INVALID_PATTERN",
                Some("a"),
                "$.nodes[0].components[0].pattern",
            ),
            (
                "INVALID_NUMBER_RANGE",
                Some("a"),
                "$.nodes[0].components[1].min",
            ),
            ("INVALID_DATE", Some("a"), "$.nodes[0].components[2].min"),
            ("INVALID_DATE", Some("a"), "$.nodes[0].components[2].max"),
            (
                "INVALID_DATE_RANGE",
                Some("a"),
                "$.nodes[0].components[3].min",
            ),
            (
                "INVALID_HEADING_LEVEL",
                Some("a"),
                "$.nodes[0].components[4].level",
            ),
            (
                "EMPTY_SELECT",
                Some("a"),
                "$.nodes[0].components[5].options",
            ),
            (
                "DUPLICATE_OPTION_VALUE",
                Some("a"),
                "$.nodes[0].components[6].options[1].value",
            ),
        ],
    );
}

#[test]
fn flow_id_format() {
    assert_issues(
        r#"
id: Sign Up
start: a
nodes:
  - {kind: end, id: a}
"#,
        &[("INVALID_FLOW_ID", None, "$.id")],
    );
    for ok in ["signup", "0day", "a_b-c"] {
        let yaml = format!("id: {ok}\nstart: a\nnodes:\n  - {{kind: end, id: a}}\n");
        assert_issues(&yaml, &[]);
    }
    for bad in ["_x", "-x", "A", "a.b"] {
        let yaml = format!("id: \"{bad}\"\nstart: a\nnodes:\n  - {{kind: end, id: a}}\n");
        assert_issues(&yaml, &[("INVALID_FLOW_ID", None, "$.id")]);
    }
}

#[test]
fn capabilities_and_fallbacks() {
    let issues = assert_issues(
        r#"
id: t
start: a
nodes:
  - kind: screen
    id: a
    components: [{kind: stack, children: [{kind: custom, name: map_picker}]}]
    actions: [{id: go, next: c}]
  - {kind: screen, id: c, min_app_version: "5.2", actions: [{id: go, next: e}]}
  - kind: screen
    id: e
    min_app_version: banana
    components:
      - {kind: text_input, id: city, label: City, required: true}
      - {kind: number_input, id: zip, label: Zip}
    fallback:
      components:
        - {kind: custom, name: other}
        - {kind: text_input, id: zip, label: Zip}
        - {kind: button, label: Go, action: nope}
    actions: [{id: go, next: f}]
  - kind: screen
    id: f
    fallback: {components: [{kind: text, text: hi}]}
    actions: [{id: go, next: b}]
  - {kind: end, id: b, components: [{kind: custom, name: confetti}]}
"#,
        &[
            (
                "MISSING_FALLBACK",
                Some("a"),
                "$.nodes[0].components[0].children[0]",
            ),
            ("MISSING_FALLBACK", Some("c"), "$.nodes[1].min_app_version"),
            (
                "INVALID_APP_VERSION",
                Some("e"),
                "$.nodes[2].min_app_version",
            ),
            (
                "UNKNOWN_BUTTON_ACTION",
                Some("e"),
                "$.nodes[2].fallback.components[2].action",
            ),
            (
                "FALLBACK_NOT_CORE",
                Some("e"),
                "$.nodes[2].fallback.components[0]",
            ),
            (
                "FALLBACK_INPUT_MISMATCH",
                Some("e"),
                "$.nodes[2].fallback.components[1].kind",
            ),
            (
                "FALLBACK_MISSING_INPUT",
                Some("e"),
                "$.nodes[2].components[0]",
            ),
            ("UNUSED_FALLBACK", Some("f"), "$.nodes[3].fallback"),
            ("MISSING_FALLBACK", Some("b"), "$.nodes[4].components[0]"),
        ],
    );
    let severity = |code| find(&issues, code).severity;
    assert_eq!(severity("FALLBACK_INPUT_MISMATCH"), Severity::Warning);
    assert_eq!(severity("FALLBACK_MISSING_INPUT"), Severity::Warning);
    assert_eq!(severity("UNUSED_FALLBACK"), Severity::Warning);
    assert_eq!(severity("FALLBACK_NOT_CORE"), Severity::Error);
    assert!(
        find(&issues, "INVALID_APP_VERSION")
            .hint
            .as_deref()
            .unwrap()
            .contains("5.2 and 5 are read as 5.2.0 and 5.0.0")
    );
}

#[test]
fn app_versions_pad_missing_parts() {
    let v = |s| parse_app_version(s).map(|v| v.to_string());
    assert_eq!(v("5.2"), Some("5.2.0".into()));
    assert_eq!(v("5"), Some("5.0.0".into()));
    assert_eq!(v("5.2.1"), Some("5.2.1".into()));
    assert_eq!(v("5.2-beta.1"), Some("5.2.0-beta.1".into()));
    assert_eq!(v("1.2.3.4"), None);
    assert_eq!(v("banana"), None);
    assert_eq!(v(""), None);
}

#[test]
fn dates_and_patterns() {
    assert_eq!(parse_date("2024-02-29"), Some((2024, 2, 29)));
    assert_eq!(parse_date("2023-02-29"), None);
    assert_eq!(parse_date("2000-02-29"), Some((2000, 2, 29)));
    assert_eq!(parse_date("1900-02-29"), None);
    for bad in [
        "2024-1-01",
        "2024-13-01",
        "2024-00-10",
        "2024-01-32",
        "+024-01-01",
        "２０２４-01-01",
    ] {
        assert_eq!(parse_date(bad), None, "{bad}");
    }
    let re = compile_input_pattern("[0-9]{5}").unwrap();
    assert!(re.is_match("12345"));
    assert!(!re.is_match("123456"), "the whole value must match");
    // Wrapped in a group, `a)|(b` would compile with another meaning.
    assert!(compile_input_pattern("a)|(b").is_err());
}

#[test]
fn edge_defaults_and_dead_edges() {
    let issues = assert_issues(
        r#"
id: t
start: a
nodes:
  - kind: screen
    id: a
    actions:
      - {id: go, next: [{when: {"var": "flags.x"}, to: d}]}
      - {id: alt, next: []}
      - {id: third, next: g}
  - {kind: decision, id: d, next: [{to: b}, {when: {"var": "flags.y"}, to: c}]}
  - {kind: decision, id: g, next: [{when: {"var": "flags.z"}, to: b}]}
  - {kind: end, id: b}
  - {kind: end, id: c}
"#,
        &[
            ("NO_DEFAULT_EDGE", Some("a"), "$.nodes[0].actions[0].next"),
            ("NO_EDGES", Some("a"), "$.nodes[0].actions[1].next"),
            ("UNREACHABLE_EDGE", Some("d"), "$.nodes[1].next[1]"),
            ("NO_DEFAULT_EDGE", Some("g"), "$.nodes[2].next"),
            ("UNREACHABLE_NODE", Some("c"), "$.nodes[4]"),
        ],
    );
    let warnings: Vec<&str> = issues
        .iter()
        .filter(|i| i.severity == Severity::Warning)
        .map(|i| i.code.as_str())
        .collect();
    assert_eq!(
        warnings,
        [
            "NO_DEFAULT_EDGE",
            "UNREACHABLE_EDGE",
            "NO_DEFAULT_EDGE",
            "UNREACHABLE_NODE"
        ]
    );
}

#[test]
fn nodes_that_never_reach_an_end() {
    assert_issues(
        r#"
id: t
start: a
nodes:
  - {kind: screen, id: a, actions: [{id: go, next: [{when: {"var": "flags.x"}, to: b}, {to: loop1}]}]}
  - {kind: screen, id: loop1, actions: [{id: go, next: loop2}]}
  - {kind: screen, id: loop2, actions: [{id: back, next: loop1}]}
  - {kind: end, id: b}
"#,
        &[
            ("NO_PATH_TO_END", Some("loop1"), "$.nodes[1]"),
            ("NO_PATH_TO_END", Some("loop2"), "$.nodes[2]"),
        ],
    );
}

#[test]
fn bad_templates_texts_and_ids() {
    let issues = assert_issues(
        r#"
id: t
start: a
nodes:
  - kind: screen
    id: a
    title: "{{ user.name "
    components:
      - {kind: text, text: {}}
      - {kind: text_input, id: "first name", label: {en: ok, de: "{% if %}"}}
    actions: [{id: "go!", next: b.c}]
  - {kind: end, id: b.c}
"#,
        &[
            ("INVALID_TEMPLATE", Some("a"), "$.nodes[0].title"),
            ("INVALID_ID", Some("a"), "$.nodes[0].actions[0].id"),
            ("EMPTY_TEXT", Some("a"), "$.nodes[0].components[0].text"),
            ("INVALID_ID", Some("a"), "$.nodes[0].components[1].id"),
            (
                "INVALID_TEMPLATE",
                Some("a"),
                "$.nodes[0].components[1].label.de",
            ),
            ("INVALID_ID", Some("b.c"), "$.nodes[1].id"),
        ],
    );
    assert!(
        issues[0].message.contains("syntax error"),
        "{}",
        issues[0].message
    );
}

#[test]
fn every_problem_at_once() {
    let issues = check(
        r#"
id: Bad Flow
start: a
nodes:
  - kind: screen
    id: a
    title: "{{ nobody.name }}"
    components:
      - {kind: text_input, id: x, label: X, pattern: "("}
      - {kind: button, label: Go, action: missing}
    actions:
      - id: go
        next:
          - {when: {"no_such_op": []}, to: d1}
          - {to: ghost}
  - {kind: decision, id: d1, next: [{when: {"var": "flags.a"}, to: d2}, {to: b}]}
  - {kind: decision, id: d2, next: d1}
  - {kind: screen, id: stuck}
  - {kind: end, id: b}
  - {kind: end, id: b}
"#,
    );
    let mut codes: Vec<&str> = issues.iter().map(|i| i.code.as_str()).collect();
    codes.sort_unstable();
    assert_eq!(
        codes,
        [
            "DEAD_END_SCREEN",
            "DECISION_CYCLE",
            "DUPLICATE_NODE_ID",
            "INVALID_FLOW_ID",
            "INVALID_PATTERN",
            "INVALID_RULE",
            "UNKNOWN_BUTTON_ACTION",
            "UNKNOWN_CONTEXT_ROOT",
            "UNKNOWN_TARGET",
            "UNREACHABLE_NODE",
        ],
        "\n{}",
        format_human(&issues)
    );
    assert_eq!(
        find(&issues, "UNREACHABLE_NODE").node.as_deref(),
        Some("stuck")
    );
}

// --------------------------------------------------------------- output

#[test]
fn human_and_json_output() {
    let issues = check(
        r#"
id: t
start: a
nodes:
  - {kind: screen, id: a, actions: [{id: go, next: bee}]}
  - {kind: end, id: b}
"#,
    );
    assert_eq!(
        format_human(&issues),
        "t.yaml: error[UNKNOWN_TARGET] node `a` at $.nodes[0].actions[0].next: \
         edge goes to `bee`, but no node has that id (hint: did you mean `b`?)\n\
         t.yaml: warning[UNREACHABLE_NODE] node `b` at $.nodes[1]: \
         no path from `start` leads to end `b` (hint: add an edge to it, or remove it)\n\
         1 error, 1 warning\n"
    );
    let json: Value = serde_json::from_str(&format_json(&issues)).unwrap();
    assert_eq!(
        json[0],
        json!({
            "severity": "error",
            "code": "UNKNOWN_TARGET",
            "file": "t.yaml",
            "node": "a",
            "path": "$.nodes[0].actions[0].next",
            "message": "edge goes to `bee`, but no node has that id",
            "hint": "did you mean `b`?"
        })
    );
    assert_eq!(json[1]["severity"], "warning");
}

// -------------------------------------------------------------- loading

#[test]
fn yaml_and_json_load_to_the_same_version() {
    let yaml_flow = flow(GOOD);
    // The same document as JSON, with every object's keys reversed: the
    // hash must not care about format or key order.
    let value: Value = serde_saphyr::from_str(GOOD).unwrap();
    let json_text = serde_json::to_string_pretty(&reverse_keys(value)).unwrap();
    let json_flow = parse_flow(Path::new("signup.json"), &json_text)
        .unwrap_or_else(|i| panic!("{}", format_human(&i)));
    assert_eq!(canonical_json(&yaml_flow), canonical_json(&json_flow));
    assert_eq!(content_hash(&yaml_flow), content_hash(&json_flow));
    assert_eq!(content_hash(&yaml_flow).len(), 64);

    let mut changed = yaml_flow.clone();
    changed.title = Some("Sign up!".into());
    assert_ne!(content_hash(&changed), content_hash(&yaml_flow));
}

fn reverse_keys(v: Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.into_iter().collect();
            entries.reverse();
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, reverse_keys(v)))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.into_iter().map(reverse_keys).collect()),
        other => other,
    }
}

fn parse_err(file: &str, text: &str) -> Vec<Issue> {
    match parse_flow(Path::new(file), text) {
        Ok(_) => panic!("{file} should not parse"),
        Err(issues) => issues,
    }
}

#[test]
fn structural_errors_have_json_paths_all_at_once() {
    let issues = parse_err(
        "s.yaml",
        r#"
id: t
strat: a
nodes:
  - {kind: screen, id: a, actions: [{id: go, next: b}]}
  - {kind: end, id: b, components: [{kind: text, text: [1]}]}
  - {kind: screen, id: c, bogus: 1, actions: []}
  - {kind: screen, id: d, components: [{kind: card, children: [{kind: heading, text: hi, level: 300}]}]}
  - {kind: screen, id: e, components: [{kind: select, id: s, label: x, options: [{value: 1, label: x}]}]}
  - {kind: screen, id: f, components: [{kind: text_input, id: s, lable: x}]}
  - {kind: screen, id: g, components: [{kind: foo}]}
  - {kind: screen, id: h, actions: [{id: x, next: {a: 1}}]}
  - {kind: nope, id: i}
  - {kind: screen, id: j, components: [{kind: text_input, id: x}]}
  - {kind: screen, id: k, fallback: {components: [{kind: image, url: {en: 3}}]}}
  - [not, a, node]
"#,
    );
    assert_eq!(
        triples(&issues),
        [
            ("FLOW_STRUCTURE", None, "$.strat"),
            ("FLOW_STRUCTURE", Some("b"), "$.nodes[1].components[0].text"),
            ("FLOW_STRUCTURE", Some("c"), "$.nodes[2].bogus"),
            (
                "FLOW_STRUCTURE",
                Some("d"),
                "$.nodes[3].components[0].children[0].level"
            ),
            (
                "FLOW_STRUCTURE",
                Some("e"),
                "$.nodes[4].components[0].options[0].value"
            ),
            (
                "FLOW_STRUCTURE",
                Some("f"),
                "$.nodes[5].components[0].lable"
            ),
            ("FLOW_STRUCTURE", Some("g"), "$.nodes[6].components[0].kind"),
            ("FLOW_STRUCTURE", Some("h"), "$.nodes[7].actions[0].next"),
            ("FLOW_STRUCTURE", Some("i"), "$.nodes[8].kind"),
            ("FLOW_STRUCTURE", Some("j"), "$.nodes[9].components[0]"),
            (
                "FLOW_STRUCTURE",
                Some("k"),
                "$.nodes[10].fallback.components[0].url"
            ),
            ("FLOW_STRUCTURE", None, "$.nodes[11]"),
        ],
        "\n{}",
        format_human(&issues)
    );
    let msg = |i: usize| issues[i].message.as_str();
    assert!(msg(0).contains("unknown field `strat`"), "{}", msg(0));
    assert!(msg(1).contains("map from locale to string"), "{}", msg(1));
    assert!(msg(3).contains("300"), "{}", msg(3));
    assert!(msg(7).contains("target node id"), "{}", msg(7));
    assert!(msg(9).contains("missing field `label`"), "{}", msg(9));
    assert!(
        issues
            .iter()
            .all(|i| i.hint.is_some() && i.file == "s.yaml")
    );
}

#[test]
fn yaml_is_read_as_yaml_1_2() {
    // YAML 1.1 would read `No` as false and `007` as a number.
    let flow = flow(
        r#"
id: t
start: a
nodes:
  - kind: screen
    id: a
    components:
      - {kind: select, id: s, label: Sure?, options: [{value: 007, label: Yes}, {value: n, label: No}]}
    actions: [{id: go, label: On, next: b}]
  - {kind: end, id: b}
"#,
    );
    let json = serde_json::to_value(&flow).unwrap();
    let options = &json["nodes"][0]["components"][0]["options"];
    assert_eq!(options[0], json!({"value": "007", "label": "Yes"}));
    assert_eq!(options[1]["label"], "No");
    assert_eq!(json["nodes"][0]["actions"][0]["label"], "On");

    let issues = parse_err(
        "n.yaml",
        "id: t\nstart: a\nnodes:\n  - {kind: end, id: 1}\n",
    );
    assert_eq!(
        triples(&issues),
        [("FLOW_STRUCTURE", None, "$.nodes[0].id")]
    );
    assert!(issues[0].message.contains("quote"), "{}", issues[0].message);
}

#[test]
fn syntax_errors_name_the_line() {
    let yaml = parse_err("x.yaml", "id: t\nstart: a\nnodes: [\n");
    assert_eq!(triples(&yaml), [("FLOW_SYNTAX", None, "$")]);
    assert!(yaml[0].message.contains("line 3"), "{}", yaml[0].message);
    assert!(!yaml[0].message.contains('\n'));

    let dup = parse_err("x.yaml", "id: t\nstart: a\nstart: b\nnodes: []\n");
    assert_eq!(dup[0].code, "FLOW_SYNTAX");
    assert!(dup[0].message.contains("duplicate"), "{}", dup[0].message);

    let json = parse_err("x.json", r#"{"id": "t", "start": "a", "nodes": [}"#);
    assert_eq!(triples(&json), [("FLOW_SYNTAX", None, "$")]);
    assert!(
        json[0].message.contains("line 1 column"),
        "{}",
        json[0].message
    );

    let empty = parse_err("x.yaml", "");
    assert_eq!(triples(&empty), [("FLOW_STRUCTURE", None, "$")]);
    assert!(
        empty[0].message.contains("found null"),
        "{}",
        empty[0].message
    );
}

#[test]
fn size_and_node_limits() {
    let big = format!(
        "id: t\nstart: a\nnodes: []\n#{}\n",
        "x".repeat(MAX_FILE_BYTES as usize)
    );
    assert_eq!(
        triples(&parse_err("big.yaml", &big)),
        [("FLOW_FILE_TOO_LARGE", None, "$")]
    );

    let nodes: Vec<Value> = (0..=MAX_NODES)
        .map(|i| json!({"kind": "end", "id": format!("n{i}")}))
        .collect();
    let many = json!({"id": "t", "start": "n0", "nodes": nodes});
    let issues = parse_flow_value(Path::new("many.json"), &many).unwrap_err();
    assert_eq!(triples(&issues), [("FLOW_TOO_MANY_NODES", None, "$.nodes")]);
    assert!(issues[0].message.contains("1001"), "{}", issues[0].message);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.yaml");
    std::fs::write(&path, &big).unwrap();
    let issues = load_file(&path).unwrap_err();
    assert_eq!(issues[0].code, "FLOW_FILE_TOO_LARGE");
    assert_eq!(issues[0].file, path.display().to_string());
}

/// A path that does not exist says so, whatever its name; an existing
/// file with another extension is refused for its format.
#[test]
fn missing_and_unsupported_files() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["gone.yaml", "gone"] {
        let issues = load_file(&dir.path().join(name)).unwrap_err();
        assert_eq!(issues[0].code, "FLOW_FILE_UNREADABLE", "{name}");
        assert!(
            issues[0].hint.as_deref().unwrap_or("").contains("path"),
            "{:?}",
            issues[0].hint
        );
    }
    let txt = dir.path().join("flow.txt");
    std::fs::write(&txt, "id: t\n").unwrap();
    assert_eq!(
        load_file(&txt).unwrap_err()[0].code,
        "FLOW_UNSUPPORTED_FORMAT"
    );
}

#[test]
fn load_dir_reports_every_bad_file() {
    let report = load_dir(&fixtures()).unwrap();
    let ids: Vec<&str> = report.flows.iter().map(|f| f.def.id.as_str()).collect();
    assert_eq!(ids, ["dup", "semantic"]);
    assert!(report.flows[0].file.ends_with("duplicate_a.yaml"));
    assert_eq!(report.flows[0].hash, content_hash(&report.flows[0].def));

    let got: Vec<(&str, &str, Option<&str>, &str)> = report
        .issues
        .iter()
        .map(|i| {
            let name = Path::new(&i.file).file_name().unwrap().to_str().unwrap();
            (name, i.code.as_str(), i.node.as_deref(), i.path.as_str())
        })
        .collect();
    assert_eq!(
        got,
        [
            ("broken.json", "FLOW_SYNTAX", None, "$"),
            ("duplicate_b.yml", "FLOW_DUPLICATE_ID", None, "$.id"),
            (
                "structure.yaml",
                "FLOW_STRUCTURE",
                Some("welcome"),
                "$.nodes[0].actions[0].nxt"
            ),
            (
                "structure.yaml",
                "FLOW_STRUCTURE",
                Some("form"),
                "$.nodes[2].components[0].label"
            ),
            ("syntax.yaml", "FLOW_SYNTAX", None, "$"),
        ],
        "\n{}",
        format_human(&report.issues)
    );
    assert!(report.has_errors());
    assert!(report.issues[1].message.contains("duplicate_a.yaml"));
}

#[test]
fn check_dir_adds_validation_issues() {
    let report = check_dir(&fixtures()).unwrap();
    let semantic: Vec<(&str, Option<&str>, &str)> = report
        .issues
        .iter()
        .filter(|i| i.file.ends_with("semantic.yaml"))
        .map(|i| (i.code.as_str(), i.node.as_deref(), i.path.as_str()))
        .collect();
    assert_eq!(
        semantic,
        [
            ("UNKNOWN_CONTEXT_ROOT", Some("welcome"), "$.nodes[0].title"),
            (
                "INVALID_RULE",
                Some("welcome"),
                "$.nodes[0].actions[0].next[0].when"
            ),
            (
                "UNKNOWN_TARGET",
                Some("welcome"),
                "$.nodes[0].actions[0].next[1].to"
            ),
            (
                "INVALID_PATTERN",
                Some("welcome"),
                "$.nodes[0].components[0].pattern"
            ),
            ("DECISION_CYCLE", Some("route"), "$.nodes[1]"),
        ],
        "\n{}",
        format_human(&report.issues)
    );
}

#[test]
fn load_dir_reads_yaml_yml_and_json_and_skips_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let end = |id: &str| format!("id: {id}\nstart: a\nnodes:\n  - {{kind: end, id: a}}\n");
    std::fs::write(dir.path().join("one.yaml"), end("one")).unwrap();
    std::fs::write(dir.path().join("two.YML"), end("two")).unwrap();
    std::fs::write(
        dir.path().join("three.json"),
        r#"{"id": "three", "start": "a", "nodes": [{"kind": "end", "id": "a"}]}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("readme.md"), "# not a flow").unwrap();
    std::fs::write(dir.path().join(".hidden.yaml"), "not: [valid").unwrap();
    std::fs::create_dir(dir.path().join("sub.yaml")).unwrap();
    std::fs::write(dir.path().join("sub.yaml/inner.yaml"), end("inner")).unwrap();

    let report = check_dir(dir.path()).unwrap();
    assert!(report.issues.is_empty(), "{}", format_human(&report.issues));
    let mut ids: Vec<&str> = report.flows.iter().map(|f| f.def.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["one", "three", "two"]);
}

#[test]
fn unreadable_directory_is_an_error() {
    let err = load_dir(Path::new("/definitely/not/here")).unwrap_err();
    assert_eq!(err.code(), "FLOW_DIR_UNREADABLE");
    assert!(err.hint().is_some());
    assert!(matches!(err, FlowError::DirUnreadable { .. }));
}

#[test]
fn invalid_flow_error_carries_its_issues() {
    let issues = check("id: t\nstart: x\nnodes:\n  - {kind: end, id: a}\n");
    let err = FlowError::Invalid {
        flow_id: "t".into(),
        issues: issues.clone(),
    };
    assert_eq!(err.code(), "FLOW_INVALID");
    assert_eq!(err.to_string(), "flow `t` has 1 validation error(s)");
    assert_eq!(err.to_issue(), issues[0]);
}

// ------------------------------------------------------------ templates

fn ctx() -> RenderContext {
    RenderContext::new(&json!({
        "user": {"id": "u1", "attributes": {"first_name": "Ada", "nickname": null, "tags": ["a", "b"]}},
        "client": {"platform": "ios", "locale": "de-AT"},
        "input": {"welcome": {"name": "Ada L."}},
        "flags": {"beta": true},
    }))
}

#[test]
fn literal_strings_skip_the_engine() {
    for s in ["Hello", "", "50% off {not a template}", "a { b } c"] {
        let t = Template::compile(s).unwrap();
        assert!(t.is_literal(), "{s}");
        assert_eq!(t.source(), s);
        assert_eq!(t.render(&ctx()).unwrap(), s);
        assert!(t.variables().is_empty());
    }
    let t = Template::compile("Hi {{ user.attributes.first_name }}").unwrap();
    assert!(!t.is_literal());
    assert_eq!(t.source(), "Hi {{ user.attributes.first_name }}");
}

#[test]
fn templates_render_over_the_context() {
    let render = |s: &str| Template::compile(s).unwrap().render(&ctx()).unwrap();
    assert_eq!(render("Hi {{ user.attributes.first_name }}!"), "Hi Ada!");
    assert_eq!(render("{{ input.welcome.name | upper }}"), "ADA L.");
    assert_eq!(
        render("{% if flags.beta %}beta{% else %}stable{% endif %} on {{ client.platform }}"),
        "beta on ios"
    );
    assert_eq!(render("{{ user.attributes.tags | join(', ') }}"), "a, b");
    // No HTML escaping: clients get text.
    assert_eq!(render("{{ '<b>&' }}"), "<b>&");
    // Missing values render as nothing, however deep the lookup.
    assert_eq!(render("[{{ user.attributes.missing }}]"), "[]");
    assert_eq!(render("[{{ user.attributes.missing.deeper.still }}]"), "[]");
    assert_eq!(render("[{{ nothing_at_all.x }}]"), "[]");
    assert_eq!(
        render("[{{ user.attributes.nickname }}]"),
        "[]",
        "JSON null renders empty"
    );
    assert_eq!(
        render("{{ user.attributes.nickname or 'friend' }}"),
        "friend"
    );
}

#[test]
fn template_variables_are_dotted_context_paths() {
    let t = Template::compile(
        "{{ user.attributes.first_name }} {% for t in user.attributes.tags %}{{ t }}{{ loop.index }}{% endfor %}\
         {% set x = input.welcome.name %}{{ x }}{{ range(3) | join }}{{ namespace() }}",
    )
    .unwrap();
    let vars: Vec<String> = t.variables().into_iter().collect();
    assert_eq!(
        vars,
        [
            "input.welcome.name",
            "user.attributes.first_name",
            "user.attributes.tags"
        ]
    );
}

#[test]
fn template_errors_have_codes() {
    let err = Template::compile("{{ user.name ").unwrap_err();
    assert_eq!(err.code(), "TEMPLATE_SYNTAX");
    assert!(err.hint().is_some());

    let big = format!("{{{{ 1 }}}}{}", "x".repeat(70 * 1024));
    assert_eq!(
        Template::compile(&big).unwrap_err().code(),
        "TEMPLATE_TOO_LARGE"
    );

    let err = |s: &str| Template::compile(s).unwrap().render(&ctx()).unwrap_err();
    // Bounded loops: fuel runs out long before this finishes.
    assert_eq!(
        err("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}")
            .code(),
        "TEMPLATE_OUT_OF_FUEL"
    );
    // A huge value is refused before it is built.
    assert_eq!(err("{{ 'x' * 100000000 }}").code(), "TEMPLATE_OUT_OF_FUEL");
    let too_long = err(&format!("{{{{ 'x' * {} }}}}", MAX_OUTPUT_BYTES + 1));
    assert_eq!(too_long.code(), "TEMPLATE_OUTPUT_TOO_LARGE");
    // Exactly at the limit is fine.
    let at_limit = Template::compile(&format!("{{{{ 'x' * {MAX_OUTPUT_BYTES} }}}}")).unwrap();
    assert_eq!(at_limit.render(&ctx()).unwrap().len(), MAX_OUTPUT_BYTES);
    // No loader: nothing is read from disk.
    assert_eq!(err("{% include '/etc/passwd' %}").code(), "TEMPLATE_RENDER");
    assert_eq!(
        err("{% import 'macros.j2' as m %}").code(),
        "TEMPLATE_RENDER"
    );
    assert_eq!(err("{{ 1 + 'a' }}").code(), "TEMPLATE_RENDER");
}

#[test]
fn templates_are_cheap_to_share() {
    fn assert_traits<T: Clone + Send + Sync + 'static>() {}
    assert_traits::<Template>();
    assert_traits::<RenderContext>();

    let t = Template::compile("{{ user.id }}").unwrap();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let t = t.clone();
            std::thread::spawn(move || t.render(&ctx()).unwrap())
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), "u1");
    }
}

// ------------------------------------------------------------- property

fn arb_id() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-d]".prop_map(String::from),
        Just("".to_string()),
        Just("x.y".to_string())
    ]
}

fn arb_text() -> impl Strategy<Value = Value> {
    let src = prop_oneof![
        "[a-z ]{0,6}",
        Just("{{ user.attributes.x }}".to_string()),
        Just("{{ input.a.f }}".to_string()),
        Just("{{ nope".to_string()),
        Just("{% for i in range(9) %}{{ i }}{% endfor %}".to_string()),
    ];
    prop_oneof![
        10 => src.clone().prop_map(Value::from),
        5 => proptest::collection::btree_map("[a-z]{2}", src, 0..3).prop_map(|m| json!(m)),
        1 => Just(json!(7)),
    ]
}

fn arb_rule() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"var": "flags.a"})),
        Just(json!({"==": [{"var": "input.a.f"}, 1]})),
        Just(json!({"no_such_op": 1})),
        Just(json!({"var": "zzz"})),
        Just(json!(true)),
        Just(json!({"map": [{"var": "user.x"}, {"var": "y"}]})),
    ]
}

fn arb_edges() -> impl Strategy<Value = Value> {
    let edge = (proptest::option::of(arb_rule()), arb_id()).prop_map(|(when, to)| match when {
        Some(w) => json!({"when": w, "to": to}),
        None => json!({"to": to}),
    });
    prop_oneof![
        arb_id().prop_map(Value::from),
        proptest::collection::vec(edge, 0..3).prop_map(Value::from),
    ]
}

fn arb_component() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        (arb_id(), arb_text()).prop_map(|(id, t)| json!({"kind": "text_input", "id": id, "label": t, "pattern": "[a-", "min_length": 3, "max_length": 1})),
        (arb_id(), 0u8..9).prop_map(|(id, l)| json!({"kind": "heading", "id": id, "text": "h", "level": l})),
        (arb_id(), -5.0f64..5.0, -5.0f64..5.0).prop_map(|(id, a, b)| json!({"kind": "number_input", "id": id, "label": "n", "min": a, "max": b})),
        arb_id().prop_map(|a| json!({"kind": "button", "label": "b", "action": a})),
        arb_id().prop_map(|id| json!({"kind": "select", "id": id, "label": "s", "options": [{"value": "v", "label": "l"}, {"value": "v", "label": "l"}]})),
        "[0-9-]{0,10}".prop_map(|d| json!({"kind": "date", "id": "d", "label": "d", "min": d, "max": "2020-01-01"})),
        arb_id().prop_map(|id| json!({"kind": "custom", "id": id, "name": "x"})),
    ];
    let leaf = prop_oneof![20 => leaf, 1 => Just(json!({"kind": "mystery"}))];
    leaf.prop_recursive(3, 12, 3, |inner| {
        proptest::collection::vec(inner, 0..3)
            .prop_map(|children| json!({"kind": "card", "children": children}))
    })
}

fn arb_node() -> impl Strategy<Value = Value> {
    let action = (arb_id(), any::<bool>(), arb_edges())
        .prop_map(|(id, validate, next)| json!({"id": id, "validate": validate, "next": next}));
    prop_oneof![
        (
            arb_id(),
            proptest::collection::vec(arb_component(), 0..3),
            proptest::collection::vec(action, 0..3),
            proptest::option::of(proptest::collection::vec(arb_component(), 0..2)),
            proptest::option::of(prop_oneof![Just("5.2"), Just("x")]),
            arb_text(),
        )
            .prop_map(|(id, components, actions, fallback, version, title)| {
                let mut n = json!({"kind": "screen", "id": id, "title": title, "components": components, "actions": actions});
                if let Some(f) = fallback {
                    n["fallback"] = json!({"components": f});
                }
                if let Some(v) = version {
                    n["min_app_version"] = json!(v);
                }
                n
            }),
        (arb_id(), arb_edges()).prop_map(|(id, next)| json!({"kind": "decision", "id": id, "next": next})),
        (arb_id(), proptest::collection::vec(arb_component(), 0..2))
            .prop_map(|(id, c)| json!({"kind": "end", "id": id, "components": c})),
    ]
}

fn assert_well_formed(issues: &[Issue]) {
    for i in issues {
        assert!(!i.code.as_str().is_empty(), "{}", i.code);
        assert!(i.path.starts_with('$'), "{}", i.path);
        assert!(!i.message.is_empty() && !i.message.contains('\n'), "{i:?}");
    }
    let _ = format_human(issues);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn validate_never_panics(
        id in prop_oneof![Just("flow"), Just("Bad Id")],
        start in arb_id(),
        nodes in proptest::collection::vec(arb_node(), 0..6),
    ) {
        let doc = json!({"id": id, "start": start, "nodes": nodes});
        match parse_flow_value(Path::new("p.json"), &doc) {
            Ok(flow) => {
                let issues = validate(&flow, "p.json");
                assert_well_formed(&issues);
                let again = validate(&flow, "p.json");
                prop_assert_eq!(issues, again, "validation is deterministic");
            }
            Err(issues) => {
                prop_assert!(!issues.is_empty());
                assert_well_formed(&issues);
            }
        }
    }

    #[test]
    fn parsing_arbitrary_json_never_panics(doc in arb_json()) {
        if let Err(issues) = parse_flow_value(Path::new("p.json"), &doc) {
            prop_assert!(!issues.is_empty());
            assert_well_formed(&issues);
        }
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        prop_oneof![
            Just("screen"),
            Just("end"),
            Just("decision"),
            Just("text"),
            Just("a")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("id"),
                    Just("kind"),
                    Just("start"),
                    Just("nodes"),
                    Just("components"),
                    Just("children"),
                    Just("next"),
                    Just("actions"),
                    Just("to"),
                    Just("label"),
                    Just("x")
                ]
                .prop_map(String::from),
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn backend_steps_are_checked() {
    let issues = check(
        r#"
id: steps
start: s
nodes:
  - id: s
    kind: screen
    components:
      - { kind: text, text: "{{ secrets.TOKEN }}" }
    actions: [{ id: go, next: call }]
  - id: call
    kind: http
    url: "http://{{ input.s.host }}/x"
    headers: { "Bad Header": "x", Authorization: "Bearer {{ secrets.TOKEN }}" }
    retry: { max_attempts: 0, delay: soon, retry_on: [connect, teapot] }
    timeout: 0s
    next: pause
    on_error: nowhere
    mock: { status: 999 }
  - { id: pause, kind: wait, next: think }
  - id: think
    kind: transform
    set: { total: { "+": [{ var: steps.nope.x }, 1] }, label: "{{ steps.call.status }}" }
    next: ask
  - id: ask
    kind: approval
    role: "under writer"
    outcomes: { timeout: done }
    on_timeout: done
    mock: { outcome: maybe }
  - id: hear
    kind: event
    event: ""
    correlation: "{{ steps.think.total }}"
    next: fan
  - { id: fan, kind: parallel, branches: [], next: fan2 }
  - { id: fan2, kind: parallel, branches: [{ id: x, url: "ftp://h/x" }], next: done }
  - { id: done, kind: end }
"#,
    );
    let found: Vec<(&str, &str)> = issues
        .iter()
        .map(|i| (i.code.as_str(), i.node.as_deref().unwrap_or("")))
        .collect();
    for expected in [
        ("EMPTY_PARALLEL", "fan"),
        ("INVALID_STEP_URL", "fan2"),
        ("SECRET_OUTSIDE_HTTP", "s"),
        ("INVALID_STEP_URL", "call"),
        ("INVALID_HEADER", "call"),
        ("INVALID_RETRY", "call"),
        ("INVALID_DURATION", "call"),
        ("UNKNOWN_TARGET", "call"),
        ("INVALID_MOCK", "call"),
        ("INVALID_WAIT", "pause"),
        ("UNKNOWN_STEP", "think"),
        ("INVALID_ID", "ask"),
        ("INVALID_OUTCOME", "ask"),
        ("UNUSED_TIMEOUT_EDGE", "ask"),
        ("INVALID_EVENT_NAME", "hear"),
    ] {
        assert!(
            found.contains(&expected),
            "missing {expected:?} in {found:?}"
        );
    }
    // The retry policy has two problems: both are reported.
    assert_eq!(
        issues.iter().filter(|i| i.code == "INVALID_RETRY").count(),
        2
    );
    // The secret in the http step's own header is fine.
    assert!(
        !issues
            .iter()
            .any(|i| i.code == "SECRET_OUTSIDE_HTTP" && i.node.as_deref() == Some("call"))
    );
}

#[test]
fn hosts_are_checked_against_the_allowlist() {
    let def = flow(
        r#"
id: h
start: call
nodes:
  - { id: call, kind: http, url: "http://api.example.com/x/{{ user.id }}", next: done }
  - { id: done, kind: end }
"#,
    );
    assert!(baton::flow::validate::validate(&def, "h.yaml").is_empty());
    let issues = baton::flow::validate::check_hosts(
        &def,
        &baton::flow::hosts::AllowList::parse(&["localhost"]).unwrap(),
        "h.yaml",
    );
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].code, "HOST_NOT_ALLOWED");
    assert_eq!(issues[0].path, "$.nodes[0].url");
    assert!(
        issues[0]
            .hint
            .as_deref()
            .unwrap()
            .contains("api.example.com")
    );
    let ok = baton::flow::validate::check_hosts(
        &def,
        &baton::flow::hosts::AllowList::parse(&["api.example.com"]).unwrap(),
        "h.yaml",
    );
    assert!(ok.is_empty());
}

#[test]
fn a_loop_of_transforms_and_decisions_is_a_cycle() {
    let issues = check(
        r#"
id: t
start: a
nodes:
  - { id: a, kind: transform, set: { n: 1 }, next: b }
  - { id: b, kind: decision, next: [{ when: { "==": [1, 1] }, to: a }, { to: c }] }
  - { id: c, kind: end }
"#,
    );
    assert!(
        issues.iter().any(|i| i.code == "DECISION_CYCLE"),
        "{issues:?}"
    );
}

// ------------------------------------------- what run time would trip on

#[test]
fn a_rule_that_is_not_a_rule_is_an_error() {
    let issues = assert_issues(
        r#"
id: t
start: d
nodes:
  - kind: decision
    id: d
    next:
      - {when: "input.a.plan == 'pro'", to: b}
      - {when: 3, to: b}
      - {when: [{"var": "user.id"}], to: b}
      - {when: false, to: b}
      - {when: {"==": [{"var": "user.id"}, "u1"]}, to: b}
      - {when: true, to: b}
  - {kind: end, id: b}
"#,
        &[
            ("NOT_A_RULE", Some("d"), "$.nodes[0].next[0].when"),
            ("NOT_A_RULE", Some("d"), "$.nodes[0].next[1].when"),
            ("NOT_A_RULE", Some("d"), "$.nodes[0].next[2].when"),
        ],
    );
    assert!(
        issues[0].message.contains("the string"),
        "{}",
        issues[0].message
    );
    assert!(
        issues[0].hint.as_deref().unwrap().contains(r#"{"==": "#),
        "the hint shows the object form"
    );
}

fn test_flags() -> baton::flags::FlagSet {
    let load = baton::flags::load_str(
        Path::new("f.json"),
        r#"{"flags": {
            "new-ui": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"},
            "limit": {"state": "ENABLED", "variants": {"low": 3, "high": 5}, "defaultVariant": "low"}
        }}"#,
    );
    assert!(load.issues.is_empty(), "{}", format_human(&load.issues));
    load.set
}

#[test]
fn flags_a_flow_reads_must_exist_and_be_compared_by_type() {
    let def = flow(
        r#"
id: t
start: d
nodes:
  - kind: decision
    id: d
    next:
      - {when: {"==": [{"var": "flags.new-ui"}, 1]}, to: s}
      - {when: {">": [{"var": "flags.limit"}, 4]}, to: s}
      - {when: {"==": [{"var": "flags.new-ux"}, true]}, to: s}
      - {when: {"==": [{"var": "flags.new-ui"}, true]}, to: s}
      - to: s
  - kind: screen
    id: s
    title: "{{ flags.missing }}"
    actions: [{id: go, next: e}]
  - {kind: end, id: e}
"#,
    );
    let issues = baton::flow::validate::validate_with(&def, "t.yaml", Some(&test_flags()));
    assert_eq!(
        triples(&issues),
        [
            ("FLAG_TYPE_MISMATCH", Some("d"), "$.nodes[0].next[0].when"),
            ("UNKNOWN_FLAG", Some("d"), "$.nodes[0].next[2].when"),
            ("UNKNOWN_FLAG", Some("s"), "$.nodes[1].title"),
        ],
        "\n{}",
        format_human(&issues)
    );
    assert!(
        issues[0].message.contains("boolean"),
        "{}",
        issues[0].message
    );
    assert_eq!(
        issues[1].hint.as_deref(),
        Some("did you mean `flags.new-ui`?")
    );
    // Without flags given, nothing is said about them.
    assert!(validate(&def, "t.yaml").is_empty());
}

#[test]
fn an_unknown_field_hides_no_other_check_and_issues_have_lines() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typo.yaml");
    std::fs::write(
        &file,
        "id: typo\nstart: a\nnodes:\n  - kind: screen\n    id: a\n    titel: Hi\n    actions:\n      - {id: go, next: nowhere}\n  - kind: http\n    id: call\n    urll: http://x\n    url: http://127.0.0.1/x\n    nxt: a\n    next: a\n",
    )
    .unwrap();
    let issues = baton::flow::load::check_paths(&[file]);
    let got: Vec<(&str, &str, Option<u64>, Option<u64>)> = issues
        .iter()
        .map(|i| (i.code.as_str(), i.path.as_str(), i.line, i.column))
        .collect();
    assert_eq!(
        got,
        [
            ("FLOW_STRUCTURE", "$.nodes[0].titel", Some(6), Some(5)),
            ("FLOW_STRUCTURE", "$.nodes[1].urll", Some(11), Some(5)),
            ("FLOW_STRUCTURE", "$.nodes[1].nxt", Some(13), Some(5)),
            (
                "UNKNOWN_TARGET",
                "$.nodes[0].actions[0].next",
                Some(8),
                Some(18)
            ),
            ("UNREACHABLE_NODE", "$.nodes[1]", Some(9), Some(5)),
        ],
        "\n{}",
        format_human(&issues)
    );
    assert!(format_human(&issues).contains("typo.yaml:6:5: error[FLOW_STRUCTURE]"));
}

#[test]
fn a_typo_in_a_step_names_the_field_and_unknown_kinds_list_every_kind() {
    let issues = parse_err(
        "s.yaml",
        r#"
id: t
start: a
nodes:
  - {kind: wait, id: a, duraton: 1h, next: b}
  - {kind: approval, id: r, role: x, outcomes: {ok: b}, fields: [{kind: text_input, id: n, lable: x}]}
  - {kind: nope, id: b}
"#,
    );
    assert_eq!(
        triples(&issues),
        [
            ("FLOW_STRUCTURE", Some("a"), "$.nodes[0].duraton"),
            ("FLOW_STRUCTURE", Some("r"), "$.nodes[1].fields[0].lable"),
            ("FLOW_STRUCTURE", Some("b"), "$.nodes[2].kind"),
        ],
        "\n{}",
        format_human(&issues)
    );
    for kind in baton::flow::model::NODE_KINDS {
        assert!(
            issues[2].message.contains(&format!("`{kind}`")),
            "{}",
            issues[2].message
        );
    }
}

/// A hedge sends a request twice: only idempotent methods may, and its
/// delay is a duration or `p95`.
#[test]
fn hedges_need_an_idempotent_method_and_a_delay() {
    assert_issues(
        r#"
id: t
start: a
nodes:
  - { id: a, kind: http, method: POST, url: "http://127.0.0.1/x", hedge: 100ms, next: b }
  - { id: b, kind: http, method: PUT, url: "http://127.0.0.1/x", hedge: soon, next: c }
  - { id: c, kind: http, url: "http://127.0.0.1/x", hedge: p95, next: d }
  - { id: d, kind: end }
"#,
        &[
            ("HEDGE_NOT_IDEMPOTENT", Some("a"), "$.nodes[0].hedge"),
            ("INVALID_DURATION", Some("b"), "$.nodes[1].hedge"),
        ],
    );
}

/// Every kind a flow may use is located when its fields are wrong: a kind
/// that the error locator does not know would be reported as unknown.
#[test]
fn a_stray_field_is_located_in_every_node_kind() {
    for kind in baton::flow::model::NODE_KINDS {
        let issues = parse_err(
            "k.yaml",
            &format!("id: t\nstart: a\nnodes:\n  - {{kind: {kind}, id: a, stray_field: 1}}\n"),
        );
        let issue = find(&issues, "FLOW_STRUCTURE");
        assert!(
            !issue.message.contains("unknown node kind"),
            "{kind}: {}",
            issue.message
        );
        assert!(
            issue.path.starts_with("$.nodes[0]"),
            "{kind}: {}",
            issue.path
        );
    }
}

#[test]
fn fallback_lists_guards_and_custom_inputs_are_checked() {
    let issues = assert_issues(
        r#"
id: t
start: a
nodes:
  - id: a
    kind: screen
    components:
      - {kind: text, text: hi, visible_when: "yes", min_app_version: "soon"}
      - kind: custom
        name: map
        inputs:
          - {id: lat, type: number, min: "north"}
    fallback:
      - components: [{kind: custom, name: simple_map}, {kind: number_input, id: lat, label: Lat}]
      - components: [{kind: text_input, id: lat, label: Lat}, {kind: text_input, id: extra, label: X}]
    actions: [{id: go, next: e}]
  - {kind: end, id: e}
"#,
        &[
            (
                "NOT_A_RULE",
                Some("a"),
                "$.nodes[0].components[0].visible_when",
            ),
            (
                "INVALID_APP_VERSION",
                Some("a"),
                "$.nodes[0].components[0].min_app_version",
            ),
            (
                "INVALID_CUSTOM_INPUT",
                Some("a"),
                "$.nodes[0].components[1].inputs[0].min",
            ),
            (
                "CUSTOM_INPUT_MISMATCH",
                Some("a"),
                "$.nodes[0].fallback[1].components[0].kind",
            ),
            (
                "CUSTOM_INPUT_MISMATCH",
                Some("a"),
                "$.nodes[0].fallback[1].components[1].id",
            ),
        ],
    );
    assert!(
        issues[3].message.contains("number_input"),
        "{}",
        issues[3].message
    );
}

#[test]
fn log_ids_are_well_formed_and_name_one_screen_or_action() {
    let long = "x".repeat(129);
    assert_issues(
        &format!(
            r#"
id: t
start: a
nodes:
  - kind: screen
    id: a
    log_id: "has space"
    components:
      - {{kind: text, id: hello, text: hi, log_id: ""}}
      - {{kind: text, id: again, text: hi, log_id: "{long}"}}
    actions:
      - {{id: go, log_id: t.b.go, next: b}}
      - {{id: stay, log_id: "ok.name:v2/x-y_z", next: b}}
  - kind: screen
    id: b
    actions: [{{id: go, next: c}}]
  - kind: screen
    id: c
    log_id: t.b
    actions: [{{id: go, next: d}}]
  - {{kind: end, id: d, log_id: t.d}}
"#
        ),
        &[
            (
                "INVALID_LOG_ID",
                Some("a"),
                "$.nodes[0].components[0].log_id",
            ),
            (
                "INVALID_LOG_ID",
                Some("a"),
                "$.nodes[0].components[1].log_id",
            ),
            ("INVALID_LOG_ID", Some("a"), "$.nodes[0].log_id"),
            (
                "DUPLICATE_LOG_ID",
                Some("b"),
                "$.nodes[1].actions[0].log_id",
            ),
            ("DUPLICATE_LOG_ID", Some("c"), "$.nodes[2].log_id"),
        ],
    );
    // Components may share one: the same field in a screen and its fallback.
    assert_issues(
        r#"
id: t
start: a
nodes:
  - kind: screen
    id: a
    components: [{kind: custom, id: map, name: map_picker, inputs: [{id: at, type: text}]}]
    fallback:
      components: [{kind: text_input, id: at, label: At, log_id: t.a.map}]
    actions: [{id: go, next: b}]
  - {kind: end, id: b}
"#,
        &[],
    );
}

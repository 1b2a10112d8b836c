//! Engine unit tests on small inline flows: stepping, errors, limits,
//! validation, rendering and the events each step appends.
//!
//! Rules are real JsonLogic: a test whose name says `rule` depends on a
//! `when` that does NOT match, so it needs the real rules module.

use serde_json::{Map, Value, json};

use super::*;
use crate::flow::model::FlowDef;

// ---- helpers ---------------------------------------------------------------

fn flow(yaml: &str) -> CompiledFlow {
    // YAML 1.2 scalars, as the loader reads flow files (`id: n` is a string).
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options.leading_zero_numbers_as_strings = true;
    let def: FlowDef =
        serde_saphyr::from_str_with_options(yaml, options).expect("test flow parses");
    CompiledFlow::compile(def, 1, "test-hash".into()).expect("test flow compiles")
}

/// A one-screen form `a` with the given components (YAML flow mappings);
/// `next` validates and ends, `skip` does not validate.
fn form(components: &str) -> CompiledFlow {
    flow(&format!(
        r#"
id: form
start: a
nodes:
  - id: a
    kind: screen
    components: [{components}]
    actions:
      - id: next
        next: done
      - id: skip
        validate: false
        next: done
  - id: done
    kind: end
"#
    ))
}

fn client() -> ClientInfo {
    ClientInfo::default()
}

fn client_locale(locale: &str) -> ClientInfo {
    ClientInfo {
        locale: Some(locale.into()),
        ..ClientInfo::default()
    }
}

fn start_input(client: ClientInfo, attributes: Value) -> StartInput {
    StartInput {
        mock: None,
        session_id: "s-1".into(),
        user_id: "u-1".into(),
        user_attributes: attributes,
        client,
        started_at_ms: 1_700_000_000_000,
    }
}

fn start_as(flow: &CompiledFlow, client: ClientInfo, attributes: Value) -> Advance {
    start(flow, start_input(client, attributes), &Limits::default()).expect("start")
}

fn started(flow: &CompiledFlow) -> SessionState {
    start_as(flow, client(), Value::Null).state
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn submit_ok(
    flow: &CompiledFlow,
    state: &SessionState,
    screen: &str,
    action: &str,
    values: Value,
) -> Advance {
    submit(
        flow,
        state,
        screen,
        action,
        &obj(values),
        &Limits::default(),
    )
    .unwrap_or_else(|e| panic!("submit {screen}/{action}: {e}"))
}

/// The (field, code) pairs of a submit to `a`/`next` that must be rejected.
fn rejected(flow: &CompiledFlow, state: &SessionState, values: Value) -> Vec<(String, String)> {
    let adv = submit_ok(flow, state, "a", "next", values.clone());
    assert_eq!(
        adv.state.node, "a",
        "a rejected submit stays on the screen ({values})"
    );
    assert!(
        !adv.state.errors.is_empty(),
        "expected errors for {values}, got {:?}",
        adv.state
    );
    adv.state
        .errors
        .iter()
        .map(|e| (e.field.clone().unwrap_or_default(), e.code.to_string()))
        .collect()
}

fn one_error(flow: &CompiledFlow, values: Value) -> FieldError {
    let adv = submit_ok(flow, &started(flow), "a", "next", values.clone());
    assert_eq!(
        adv.state.errors.len(),
        1,
        "one error for {values}: {:?}",
        adv.state.errors
    );
    adv.state.errors[0].clone()
}

fn code_for(flow: &CompiledFlow, values: Value) -> String {
    one_error(flow, values).code.to_string()
}

/// What `a`/`next` stored for the screen.
fn accepted(flow: &CompiledFlow, values: Value) -> Value {
    let adv = submit_ok(flow, &started(flow), "a", "next", values.clone());
    assert!(
        adv.state.errors.is_empty(),
        "{values} rejected: {:?}",
        adv.state.errors
    );
    assert_eq!(adv.state.node, "done");
    adv.state.context["input"]["a"].clone()
}

/// Events in a compact, readable form.
fn log(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            Event::Started {
                flow_id,
                flow_version,
            } => format!("started {flow_id}@{flow_version}"),
            Event::Entered {
                node, node_kind, ..
            } => format!("entered {node_kind} {node}"),
            Event::Submitted { screen, action, .. } => format!("submitted {screen}/{action}"),
            Event::Rejected { screen, action, .. } => format!("rejected {screen}/{action}"),
            Event::WentBack { from, to, .. } => format!("went_back {from}->{to}"),
            Event::Ended { node, outcome } => format!("ended {node} {outcome:?}"),
            Event::StepCompleted { node, outcome, .. } => format!("step {node} {outcome}"),
            Event::Operated { node, action, by } => format!("operated {node} {action} by {by}"),
        })
        .collect()
}

fn view(flow: &CompiledFlow, state: &SessionState) -> ScreenView {
    render(flow, state).expect("renders").expect("has a screen")
}

/// Components as JSON (every `Text` is rendered to a plain string).
fn components(v: &ScreenView) -> Value {
    serde_json::to_value(&v.components).expect("components serialize")
}

fn plain(t: &Option<String>) -> &str {
    t.as_deref().unwrap_or("<none>")
}

const STEPS: &str = r#"
id: steps
start: a
nodes:
  - id: a
    kind: screen
    components:
      - { kind: text_input, id: name, label: Name, required: true }
    actions:
      - id: next
        next: b
      - id: skip
        validate: false
        next: b
  - id: b
    kind: screen
    components:
      - { kind: number_input, id: age, label: Age }
    actions:
      - id: next
        next: c
  - id: c
    kind: screen
    actions:
      - id: finish
        next: done
      - id: fail
        next: failed
      - id: abandon
        next: abandoned
  - id: done
    kind: end
    title: "Bye {{ input.a.name }}"
  - id: failed
    kind: end
    outcome: failed
  - id: abandoned
    kind: end
    outcome: abandoned
"#;

// ---- start -----------------------------------------------------------------

#[test]
fn start_walks_a_chain_of_decisions_to_the_first_screen() {
    let f = flow(
        r#"
id: chain
start: d1
nodes:
  - { id: d1, kind: decision, next: d2 }
  - id: d2
    kind: decision
    next:
      - to: first
  - { id: first, kind: screen, actions: [{ id: go, next: done }] }
  - { id: done, kind: end }
"#,
    );
    let adv = start_as(&f, client(), Value::Null);
    assert_eq!(adv.state.node, "first");
    assert_eq!(adv.state.status, Status::Active);
    assert_eq!(adv.state.outcome, None);
    assert!(
        adv.state.back.is_empty(),
        "decisions are never on the back stack"
    );
    assert_eq!(
        log(&adv.events),
        [
            "started chain@1",
            "entered decision d1",
            "entered decision d2",
            "entered screen first"
        ]
    );
}

#[test]
fn start_follows_the_first_edge_whose_rule_matches() {
    let f = flow(
        r#"
id: route
start: by_platform
nodes:
  - id: by_platform
    kind: decision
    next:
      - when: { "==": [{ "var": "client.platform" }, "ios"] }
        to: ios
      - when: { "==": [{ "var": "user.attributes.plan" }, "pro"] }
        to: pro
      - when: { "==": [{ "var": "user.attributes.plan" }, "pro"] }
        to: never
      - to: other
  - { id: ios, kind: screen }
  - { id: pro, kind: screen }
  - { id: never, kind: screen }
  - { id: other, kind: screen }
"#,
    );
    let on = |platform: &str, plan: &str| {
        let c = ClientInfo {
            platform: Some(platform.into()),
            ..ClientInfo::default()
        };
        start_as(&f, c, json!({ "plan": plan })).state.node
    };
    assert_eq!(on("ios", "pro"), "ios", "first match wins");
    assert_eq!(on("android", "pro"), "pro");
    assert_eq!(
        on("android", "free"),
        "other",
        "the edge without `when` is the default"
    );
}

#[test]
fn start_builds_the_documented_context() {
    let f = flow(STEPS);
    let c = ClientInfo {
        platform: Some("ios".into()),
        app_version: Some("6.1".into()),
        locale: Some("de-DE".into()),
        capabilities: Some(vec!["text".into()]),
    };
    let s = start_as(&f, c, Value::Null).state;
    assert_eq!(
        s.context,
        json!({
            "user": { "id": "u-1", "attributes": {} },
            "client": { "platform": "ios", "app_version": "6.1", "locale": "de-DE", "capabilities": ["text"] },
            "input": {}, "steps": {}, "params": {}, "flags": {}, "experiments": {},
            "session": { "id": "s-1", "flow_id": "steps", "flow_version": 1, "started_at": "2023-11-14T22:13:20.000Z", "mock": null },
        })
    );
}

#[test]
fn start_on_an_end_node_ends_at_once() {
    let f = flow(
        "id: e\nstart: d\nnodes:\n  - { id: d, kind: decision, next: bye }\n  - { id: bye, kind: end, outcome: failed }\n",
    );
    let adv = start_as(&f, client(), Value::Null);
    assert_eq!(adv.state.status, Status::Failed);
    assert_eq!(adv.state.outcome, Some(Outcome::Failed));
    assert_eq!(
        log(&adv.events),
        [
            "started e@1",
            "entered decision d",
            "entered end bye",
            "ended bye Failed"
        ]
    );
    assert!(
        render(&f, &adv.state).unwrap().is_none(),
        "an end without a screen renders nothing"
    );
}

// ---- submit / back errors --------------------------------------------------

#[test]
fn submit_to_another_screen_is_stale() {
    let f = flow(STEPS);
    let s = started(&f);
    let err = submit(&f, &s, "b", "next", &Map::new(), &Limits::default()).unwrap_err();
    assert!(
        matches!(&err, EngineError::StaleScreen { submitted, current } if submitted == "b" && current == "a"),
        "{err:?}"
    );
    assert_eq!(err.code(), "STALE_SCREEN");
    assert!(
        err.hint().unwrap().contains("`a`"),
        "the hint names the current screen"
    );

    // A screen the user has left is stale too.
    let s = submit_ok(&f, &s, "a", "next", json!({ "name": "Ada" })).state;
    let err = submit(
        &f,
        &s,
        "a",
        "next",
        &obj(json!({ "name": "Bob" })),
        &Limits::default(),
    )
    .unwrap_err();
    assert_eq!(err.code(), "STALE_SCREEN");
}

#[test]
fn unknown_action_is_refused() {
    let f = flow(STEPS);
    let s = started(&f);
    let err = submit(&f, &s, "a", "finish", &Map::new(), &Limits::default()).unwrap_err();
    assert!(
        matches!(&err, EngineError::UnknownAction { screen, action } if screen == "a" && action == "finish"),
        "an action of another screen is unknown here: {err:?}"
    );
    assert_eq!(err.code(), "UNKNOWN_ACTION");
    assert!(err.hint().is_some());
}

#[test]
fn an_ended_session_accepts_nothing() {
    let f = flow(STEPS);
    let mut s = started(&f);
    s = submit_ok(&f, &s, "a", "next", json!({ "name": "Ada" })).state;
    s = submit_ok(&f, &s, "b", "next", json!({})).state;
    s = submit_ok(&f, &s, "c", "finish", json!({})).state;
    assert_eq!(
        (s.status, s.outcome),
        (Status::Completed, Some(Outcome::Completed))
    );
    assert_eq!(s.node, "done");

    for (screen, action) in [("c", "finish"), ("done", "finish"), ("a", "next")] {
        let err = submit(&f, &s, screen, action, &Map::new(), &Limits::default()).unwrap_err();
        assert!(
            matches!(&err, EngineError::SessionEnded { status } if status == "COMPLETED"),
            "{err:?}"
        );
        assert_eq!(err.code(), "SESSION_ENDED");
    }
    let err = back(&f, &s).unwrap_err();
    assert_eq!(
        err.code(),
        "SESSION_ENDED",
        "no going back from an end: {err:?}"
    );
}

#[test]
fn outcomes_set_the_status() {
    let f = flow(STEPS);
    let at_c = {
        let s = submit_ok(&f, &started(&f), "a", "skip", json!({})).state;
        submit_ok(&f, &s, "b", "next", json!({})).state
    };
    let end = |action: &str| submit_ok(&f, &at_c, "c", action, json!({})).state;
    assert_eq!(
        (end("fail").status, end("fail").outcome),
        (Status::Failed, Some(Outcome::Failed))
    );
    let abandoned = end("abandon");
    assert!(abandoned.status.is_terminal());
    assert_eq!(abandoned.outcome, Some(Outcome::Abandoned));
    let err = back(&f, &abandoned).unwrap_err();
    assert_eq!(err.code(), "SESSION_ENDED");
}

#[test]
fn back_on_the_first_screen_is_refused() {
    let f = flow(STEPS);
    let err = back(&f, &started(&f)).unwrap_err();
    assert!(matches!(err, EngineError::NoPreviousScreen));
    assert_eq!(err.code(), "NO_PREVIOUS_SCREEN");
    assert!(err.hint().is_some());
}

#[test]
fn back_restores_the_previous_screen_with_its_values() {
    let f = flow(STEPS);
    let s0 = started(&f);
    let s1 = submit_ok(&f, &s0, "a", "next", json!({ "name": "Ada" })).state;
    assert_eq!(s1.back, ["a"]);
    let s2 = submit_ok(&f, &s1, "b", "next", json!({ "age": "36" })).state;
    assert_eq!(
        (s2.node.as_str(), s2.back.clone()),
        ("c", vec!["a".to_string(), "b".to_string()])
    );

    let adv = back(&f, &s2).unwrap();
    assert_eq!(log(&adv.events), ["went_back c->b"]);
    assert_eq!(adv.state.node, "b");
    assert_eq!(adv.state.back, ["a"]);
    assert_eq!(adv.state.status, Status::Active);
    assert_eq!(view(&f, &adv.state).values, obj(json!({ "age": 36 })));

    let adv = back(&f, &adv.state).unwrap();
    assert_eq!(adv.state.node, "a");
    assert!(adv.state.back.is_empty());
    let v = view(&f, &adv.state);
    assert_eq!(v.id, "a");
    assert_eq!(v.values, obj(json!({ "name": "Ada" })));
    assert_eq!(
        back(&f, &adv.state).unwrap_err().code(),
        "NO_PREVIOUS_SCREEN"
    );

    // Going back does not forget: forward again with new values replaces them.
    let again = submit_ok(&f, &adv.state, "a", "next", json!({ "name": "Grace" })).state;
    assert_eq!(again.context["input"]["a"], json!({ "name": "Grace" }));
    assert_eq!(again.context["input"]["b"], json!({ "age": 36 }));
}

#[test]
fn back_clears_the_errors_and_draft_of_a_rejected_submit() {
    let f = flow(STEPS);
    let s = submit_ok(&f, &started(&f), "a", "next", json!({ "name": "Ada" })).state;
    let rejected = submit_ok(&f, &s, "b", "next", json!({ "age": "old" })).state;
    assert_eq!(rejected.errors.len(), 1);
    let adv = back(&f, &rejected).unwrap();
    assert!(adv.state.errors.is_empty());
    assert_eq!(adv.state.draft, None);
    assert!(view(&f, &adv.state).errors.is_empty());
}

#[test]
fn the_back_stack_keeps_only_the_most_recent_screens() {
    let f = flow(
        r#"
id: pingpong
start: ping
nodes:
  - { id: ping, kind: screen, actions: [{ id: go, validate: false, next: pong }] }
  - { id: pong, kind: screen, actions: [{ id: go, validate: false, next: ping }] }
"#,
    );
    let limits = Limits {
        max_back_stack: 3,
        ..Limits::default()
    };
    let mut s = started(&f);
    for i in 0..10 {
        let screen = s.node.clone();
        s = submit(&f, &s, &screen, "go", &Map::new(), &limits)
            .unwrap()
            .state;
        assert!(s.back.len() <= 3, "after {} submits: {:?}", i + 1, s.back);
    }
    // 10 submits: the screens left were ping,pong,…; the last three remain.
    assert_eq!(s.node, "ping");
    assert_eq!(s.back, ["pong", "ping", "pong"]);
    for expected in ["pong", "ping", "pong"] {
        s = back(&f, &s).unwrap().state;
        assert_eq!(s.node, expected);
    }
    assert_eq!(back(&f, &s).unwrap_err().code(), "NO_PREVIOUS_SCREEN");
}

// ---- flow defects and limits -----------------------------------------------

fn decision_chain(decisions: usize) -> CompiledFlow {
    let mut yaml = String::from("id: chain\nstart: a\nnodes:\n");
    yaml.push_str(
        "  - { id: a, kind: screen, actions: [{ id: go, validate: false, next: d0 }] }\n",
    );
    for i in 0..decisions {
        let next = if i + 1 == decisions {
            "z".to_string()
        } else {
            format!("d{}", i + 1)
        };
        yaml.push_str(&format!(
            "  - {{ id: d{i}, kind: decision, next: {next} }}\n"
        ));
    }
    yaml.push_str("  - { id: z, kind: screen }\n");
    flow(&yaml)
}

#[test]
fn a_chain_longer_than_the_step_limit_is_refused() {
    let limits = Limits {
        max_steps_per_advance: 3,
        ..Limits::default()
    };
    let go = |f: &CompiledFlow| submit(f, &started(f), "a", "go", &Map::new(), &limits);

    // Two decisions and the screen: exactly three nodes, allowed.
    let ok = go(&decision_chain(2)).expect("three nodes fit a limit of three");
    assert_eq!(ok.state.node, "z");

    let err = go(&decision_chain(3)).unwrap_err();
    assert!(
        matches!(&err, EngineError::StepLimit { limit: 3, .. }),
        "{err:?}"
    );
    assert_eq!(err.code(), "STEP_LIMIT_EXCEEDED");
    assert!(err.is_flow_defect());

    // A decision cycle at start hits the same limit instead of spinning.
    let cyclic = flow(
        "id: loop\nstart: d1\nnodes:\n  - { id: d1, kind: decision, next: d2 }\n  - { id: d2, kind: decision, next: d1 }\n",
    );
    let err = start(
        &cyclic,
        start_input(client(), Value::Null),
        &Limits::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, EngineError::StepLimit { limit: 64, .. }),
        "{err:?}"
    );
}

#[test]
fn a_decision_without_edges_has_no_matching_edge() {
    let f = flow(
        "id: dead\nstart: a\nnodes:\n  - { id: a, kind: screen, actions: [{ id: go, validate: false, next: d }] }\n  - { id: d, kind: decision, next: [] }\n",
    );
    let err = submit(&f, &started(&f), "a", "go", &Map::new(), &Limits::default()).unwrap_err();
    assert!(
        matches!(&err, EngineError::NoMatchingEdge { node } if node == "d"),
        "{err:?}"
    );
    assert_eq!(err.code(), "NO_MATCHING_EDGE");
    assert!(err.is_flow_defect());
}

#[test]
fn no_matching_rule_is_no_matching_edge() {
    let f = flow(
        r#"
id: gate
start: gate
nodes:
  - id: gate
    kind: decision
    next:
      - when: { "==": [{ "var": "user.attributes.plan" }, "pro"] }
        to: pro
  - { id: pro, kind: screen }
"#,
    );
    let err = start(
        &f,
        start_input(client(), json!({ "plan": "free" })),
        &Limits::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, EngineError::NoMatchingEdge { node } if node == "gate"),
        "{err:?}"
    );
    // The same flow works for a user the rule matches.
    assert_eq!(
        start_as(&f, client(), json!({ "plan": "pro" })).state.node,
        "pro"
    );
}

#[test]
fn an_action_whose_rules_all_fail_has_no_matching_edge() {
    let f = flow(
        r#"
id: gate
start: a
nodes:
  - id: a
    kind: screen
    components: [{ kind: number_input, id: num, label: N }]
    actions:
      - id: go
        next:
          - when: { ">": [{ "var": "input.a.num" }, 10] }
            to: big
  - { id: big, kind: screen }
"#,
    );
    let s = started(&f);
    assert_eq!(
        submit_ok(&f, &s, "a", "go", json!({ "num": 11 }))
            .state
            .node,
        "big"
    );
    let err = submit(
        &f,
        &s,
        "a",
        "go",
        &obj(json!({ "num": 3 })),
        &Limits::default(),
    )
    .unwrap_err();
    assert_eq!(err.code(), "NO_MATCHING_EDGE", "{err:?}");
}

#[test]
fn the_context_size_is_bounded() {
    let f = flow(STEPS);
    let size = serde_json::to_vec(&started(&f).context).unwrap().len();

    // At start: big user attributes.
    let tight = Limits {
        max_context_bytes: size + 50,
        ..Limits::default()
    };
    let err = start(
        &f,
        start_input(client(), json!({ "bio": "x".repeat(100) })),
        &tight,
    )
    .unwrap_err();
    assert!(
        matches!(&err, EngineError::ContextTooLarge { limit, .. } if *limit == size + 50),
        "{err:?}"
    );
    assert_eq!(err.code(), "CONTEXT_TOO_LARGE");
    assert!(err.hint().is_some());
    assert!(
        !err.is_flow_defect(),
        "the user's input, not the flow, is too big"
    );

    // Exactly at the limit is allowed.
    let exact = Limits {
        max_context_bytes: size,
        ..Limits::default()
    };
    start(&f, start_input(client(), Value::Null), &exact)
        .expect("a context of exactly the limit fits");

    // On submit: a long value.
    let s = start(&f, start_input(client(), Value::Null), &tight)
        .unwrap()
        .state;
    let ok = submit(&f, &s, "a", "next", &obj(json!({ "name": "Ada" })), &tight);
    assert!(ok.is_ok(), "a short value fits: {ok:?}");
    let err = submit(
        &f,
        &s,
        "a",
        "next",
        &obj(json!({ "name": "x".repeat(200) })),
        &tight,
    )
    .unwrap_err();
    assert_eq!(err.code(), "CONTEXT_TOO_LARGE");
}

// ---- validation ------------------------------------------------------------

const TEXT: &str =
    "{ kind: text_input, id: f, label: F, required: true, min_length: 2, max_length: 5 }";

#[test]
fn required_fields_must_be_filled() {
    for c in [
        TEXT,
        "{ kind: number_input, id: f, label: F, required: true }",
        "{ kind: email_input, id: f, label: F, required: true }",
        "{ kind: select, id: f, label: F, required: true, options: [{ value: x, label: X }] }",
        "{ kind: date, id: f, label: F, required: true }",
        "{ kind: checkbox, id: f, label: F, required: true }",
    ] {
        let f = form(c);
        for blank in [json!({}), json!({ "f": null })] {
            let e = one_error(&f, blank.clone());
            assert_eq!(
                (e.field.as_deref(), e.code.as_str()),
                (Some("f"), "REQUIRED"),
                "{c} with {blank}"
            );
            assert!(!e.message.is_empty());
        }
        if !c.contains("checkbox") {
            assert_eq!(
                code_for(&f, json!({ "f": "   " })),
                "REQUIRED",
                "whitespace is blank: {c}"
            );
        }
    }
    // A required checkbox must be checked, not merely sent.
    assert_eq!(
        code_for(
            &form("{ kind: checkbox, id: f, label: F, required: true }"),
            json!({ "f": false })
        ),
        "REQUIRED"
    );
}

#[test]
fn optional_blank_fields_store_nothing() {
    let f = form(
        "{ kind: text_input, id: t, label: T, min_length: 3 }, { kind: number_input, id: num, label: N, min: 5 },
         { kind: date, id: d, label: D, min: '2020-01-01' }, { kind: checkbox, id: c, label: C }",
    );
    assert_eq!(
        accepted(&f, json!({ "t": "", "num": null })),
        json!({ "c": false })
    );
}

#[test]
fn wrong_json_types_are_invalid() {
    let text = form(TEXT);
    for v in [
        json!(12345),
        json!(true),
        json!(["ab"]),
        json!({ "x": "ab" }),
    ] {
        assert_eq!(code_for(&text, json!({ "f": v })), "INVALID_TYPE", "{v}");
    }
    let check = form("{ kind: checkbox, id: f, label: F }");
    for v in [json!("true"), json!(1), json!([])] {
        assert_eq!(code_for(&check, json!({ "f": v })), "INVALID_TYPE", "{v}");
    }
}

#[test]
fn text_length_counts_characters() {
    let f = form(TEXT);
    let e = one_error(&f, json!({ "f": "a" }));
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("TOO_SHORT", "Enter at least 2 characters.")
    );
    let e = one_error(&f, json!({ "f": "abcdef" }));
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("TOO_LONG", "Enter at most 5 characters.")
    );
    // Five characters, more than five bytes.
    assert_eq!(
        accepted(&f, json!({ "f": "ÄÖÜßé" })),
        json!({ "f": "ÄÖÜßé" })
    );
    assert_eq!(accepted(&f, json!({ "f": "ab" })), json!({ "f": "ab" }));
}

#[test]
fn text_without_max_length_has_a_default_cap() {
    let f = form("{ kind: text_input, id: f, label: F }");
    let max = input::DEFAULT_MAX_TEXT_CHARS as usize;
    assert_eq!(
        accepted(&f, json!({ "f": "é".repeat(max) }))["f"]
            .as_str()
            .unwrap()
            .chars()
            .count(),
        max
    );
    let e = one_error(&f, json!({ "f": "x".repeat(max + 1) }));
    assert_eq!(
        (e.code.as_str(), e.message),
        ("TOO_LONG", format!("Enter at most {max} characters."))
    );
    // An explicit `max_length` is the author's choice, above the default too.
    let f = form(&format!(
        "{{ kind: text_input, id: f, label: F, max_length: {} }}",
        max * 2
    ));
    accepted(&f, json!({ "f": "x".repeat(max * 2) }));
}

#[test]
fn patterns_match_the_whole_value() {
    let f = form("{ kind: text_input, id: f, label: F, pattern: '[0-9]{5}' }");
    for bad in ["1234", "123456", "a12345", "12345\n"] {
        let e = one_error(&f, json!({ "f": bad }));
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("PATTERN_MISMATCH", "The value has the wrong format."),
            "{bad:?}"
        );
    }
    assert_eq!(
        accepted(&f, json!({ "f": "12345" })),
        json!({ "f": "12345" })
    );
}

#[test]
fn pattern_message_is_custom_templated_and_localized() {
    let custom = form(
        "{ kind: text_input, id: f, label: F, pattern: '[0-9]{5}', pattern_message: 'Five digits, {{ user.id }}.' }",
    );
    assert_eq!(
        one_error(&custom, json!({ "f": "x" })).message,
        "Five digits, u-1."
    );

    let localized = form(
        "{ kind: text_input, id: f, label: F, pattern: '[0-9]{5}',
           pattern_message: { en: 'Five digits.', de: 'Fünf Ziffern.' } }",
    );
    let message = |locale: &str| {
        let s = start_as(&localized, client_locale(locale), Value::Null).state;
        let adv = submit_ok(&localized, &s, "a", "next", json!({ "f": "x" }));
        assert_eq!(adv.state.errors[0].code, "PATTERN_MISMATCH");
        adv.state.errors[0].message.clone()
    };
    assert_eq!(message("de-DE"), "Fünf Ziffern.");
    assert_eq!(message("fr-FR"), "Five digits.");
}

#[test]
fn emails_are_checked_and_trimmed() {
    let f = form("{ kind: email_input, id: f, label: F }");
    for bad in [
        json!("ada"),
        json!("ada@"),
        json!("@example.com"),
        json!("a b@example.com"),
        json!(42),
        json!(format!("{}@example.com", "a".repeat(250))),
    ] {
        assert_eq!(code_for(&f, json!({ "f": bad })), "INVALID_EMAIL", "{bad}");
    }
    assert_eq!(
        accepted(&f, json!({ "f": " ada@example.com " })),
        json!({ "f": "ada@example.com" })
    );
}

#[test]
fn numbers_are_checked_and_normalized() {
    let f = form("{ kind: number_input, id: f, label: F, min: 1, max: 10 }");
    for bad in [
        json!("abc"),
        json!("NaN"),
        json!("inf"),
        json!("1e400"),
        json!(true),
        json!([1]),
        json!("0x10"),
    ] {
        assert_eq!(code_for(&f, json!({ "f": bad })), "INVALID_NUMBER", "{bad}");
    }
    let e = one_error(&f, json!({ "f": 0.5 }));
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("TOO_SMALL", "Enter 1 or more.")
    );
    let e = one_error(&f, json!({ "f": "10.5" }));
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("TOO_LARGE", "Enter 10 or less.")
    );
    // Strings become numbers; whole numbers become integers.
    assert_eq!(accepted(&f, json!({ "f": " 7 " })), json!({ "f": 7 }));
    assert_eq!(accepted(&f, json!({ "f": "2.5" })), json!({ "f": 2.5 }));
    assert_eq!(accepted(&f, json!({ "f": 3.0 })), json!({ "f": 3 }));
    assert!(accepted(&f, json!({ "f": "4" }))["f"].is_i64());
    // Bounds are inclusive.
    assert_eq!(accepted(&f, json!({ "f": 1 })), json!({ "f": 1 }));
    assert_eq!(accepted(&f, json!({ "f": "10" })), json!({ "f": 10 }));

    let int = form("{ kind: number_input, id: f, label: F, integer: true }");
    for bad in [json!(2.5), json!("2.5"), json!(-0.1)] {
        assert_eq!(code_for(&int, json!({ "f": bad })), "NOT_INTEGER", "{bad}");
    }
    assert_eq!(accepted(&int, json!({ "f": "-3" })), json!({ "f": -3 }));
}

#[test]
fn select_values_must_be_options() {
    let f = form(
        "{ kind: select, id: f, label: F, options: [{ value: card, label: Card }, { value: '12', label: Twelve }] }",
    );
    for bad in [json!("cash"), json!("Card"), json!(12), json!(["card"])] {
        assert_eq!(code_for(&f, json!({ "f": bad })), "INVALID_OPTION", "{bad}");
    }
    assert_eq!(accepted(&f, json!({ "f": "12" })), json!({ "f": "12" }));
}

#[test]
fn dates_are_real_and_within_bounds() {
    let f = form("{ kind: date, id: f, label: F, min: '2020-01-01', max: '2020-12-31' }");
    for bad in [
        json!("2020-02-30"),
        json!("2021-02-29"),
        json!("2020/05/01"),
        json!("2020-5-1"),
        json!(20200501),
        json!("yesterday"),
    ] {
        assert_eq!(code_for(&f, json!({ "f": bad })), "INVALID_DATE", "{bad}");
    }
    let e = one_error(&f, json!({ "f": "2019-12-31" }));
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("TOO_EARLY", "Enter 2020-01-01 or later.")
    );
    let e = one_error(&f, json!({ "f": "2021-01-01" }));
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("TOO_LATE", "Enter 2020-12-31 or earlier.")
    );
    assert_eq!(
        accepted(&f, json!({ "f": " 2020-02-29 " })),
        json!({ "f": "2020-02-29" })
    );
    assert_eq!(
        accepted(&f, json!({ "f": "2020-12-31" })),
        json!({ "f": "2020-12-31" })
    );
}

#[test]
fn every_invalid_field_is_reported_at_once() {
    let f = form(
        "{ kind: card, children: [ { kind: text_input, id: name, label: Name, required: true } ] },
         { kind: email_input, id: email, label: E-mail }, { kind: number_input, id: num, label: N, max: 3 }",
    );
    let errors = rejected(&f, &started(&f), json!({ "email": "nope", "num": 4 }));
    let expected: Vec<(String, String)> = [
        ("name", "REQUIRED"),
        ("email", "INVALID_EMAIL"),
        ("num", "TOO_LARGE"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(
        errors, expected,
        "inputs nested in containers are validated too"
    );
}

#[test]
fn a_rejected_submit_keeps_the_draft_and_a_good_one_clears_it() {
    let f = flow(STEPS);
    let s = submit_ok(&f, &started(&f), "a", "next", json!({ "name": "Ada" })).state;

    let adv = submit_ok(&f, &s, "b", "next", json!({ "age": "old", "smuggled": 1 }));
    assert_eq!(log(&adv.events), ["rejected b/next"]);
    let r = adv.state;
    assert_eq!((r.node.as_str(), r.status), ("b", Status::Active));
    assert_eq!(r.back, s.back, "a rejected submit does not move");
    assert_eq!(r.context, s.context, "nothing is stored");
    assert_eq!(
        r.draft,
        Some(obj(json!({ "age": "old" }))),
        "the draft holds known inputs as typed"
    );
    let v = view(&f, &r);
    assert_eq!(v.values, obj(json!({ "age": "old" })));
    assert_eq!(v.errors.len(), 1);
    assert_eq!(v.errors[0].code, "INVALID_NUMBER");

    let adv = submit_ok(&f, &r, "b", "next", json!({ "age": 36 }));
    assert_eq!(adv.state.node, "c");
    assert_eq!(adv.state.draft, None);
    assert!(adv.state.errors.is_empty());
}

#[test]
fn a_second_rejection_replaces_the_first() {
    let f = form(TEXT);
    let r1 = submit_ok(&f, &started(&f), "a", "next", json!({ "f": "a" })).state;
    let r2 = submit_ok(&f, &r1, "a", "next", json!({ "f": "abcdefg" })).state;
    assert_eq!(r2.errors.len(), 1);
    assert_eq!(r2.errors[0].code, "TOO_LONG");
    assert_eq!(r2.draft, Some(obj(json!({ "f": "abcdefg" }))));
}

#[test]
fn unknown_value_keys_are_dropped() {
    let f = flow(STEPS);
    let adv = submit_ok(
        &f,
        &started(&f),
        "a",
        "next",
        json!({ "name": "Ada", "admin": true, "__proto__": {} }),
    );
    assert_eq!(adv.state.context["input"]["a"], json!({ "name": "Ada" }));
    match &adv.events[0] {
        Event::Submitted { values, .. } => assert_eq!(values, &obj(json!({ "name": "Ada" }))),
        other => panic!("expected submitted, got {other:?}"),
    }
}

#[test]
fn a_submit_cannot_write_other_parts_of_the_context() {
    let f = flow(STEPS);
    let s = started(&f);
    let adv = submit_ok(
        &f,
        &s,
        "a",
        "next",
        json!({ "name": "Ada", "user": { "id": "admin" }, "input": { "b": 1 } }),
    );
    assert_eq!(adv.state.context["user"], s.context["user"]);
    assert_eq!(
        adv.state.context["input"],
        json!({ "a": { "name": "Ada" } })
    );
}

#[test]
fn actions_without_validation_store_nothing() {
    let f = flow(STEPS);
    let adv = submit_ok(
        &f,
        &started(&f),
        "a",
        "skip",
        json!({ "name": "x".repeat(10), "age": "junk" }),
    );
    assert_eq!(
        adv.state.node, "b",
        "invalid values do not stop a non-validating action"
    );
    assert_eq!(adv.state.context["input"], json!({}));
    assert_eq!(
        adv.events[0],
        Event::Submitted {
            screen: "a".into(),
            action: "skip".into(),
            values: Map::new(),
            log_id: Some(format!("{}.a.skip", f.id)),
        }
    );
    // Skipping a required field leaves nothing to show after `back`.
    let back_to_a = back(&f, &adv.state).unwrap().state;
    assert!(view(&f, &back_to_a).values.is_empty());
}

// ---- rendering ---------------------------------------------------------------

const LOCALIZED: &str = r#"
id: i18n
start: a
nodes:
  - id: a
    kind: screen
    title: { en: Hello, de: Hallo, de-AT: Servus, pt-BR: Olá }
    components:
      - { kind: text, text: { fr: Bonjour, es: Hola } }
      - { kind: heading, text: Plain }
    actions:
      - { id: go, label: { en: Go, de: Los }, next: a }
"#;

#[test]
fn the_locale_string_is_chosen_exact_then_language_then_en_then_first() {
    let f = flow(LOCALIZED);
    let seen = |locale: Option<&str>| {
        let c = ClientInfo {
            locale: locale.map(str::to_string),
            ..ClientInfo::default()
        };
        let v = view(&f, &start_as(&f, c, Value::Null).state);
        let comps = components(&v);
        (
            plain(&v.title).to_string(),
            comps[0]["text"].as_str().unwrap().to_string(),
            v.actions[0].label.clone().unwrap(),
        )
    };
    assert_eq!(seen(Some("de-AT")).0, "Servus", "exact");
    assert_eq!(seen(Some("pt-BR")).0, "Olá", "exact with region");
    assert_eq!(seen(Some("de-CH")).0, "Hallo", "language");
    assert_eq!(seen(Some("de_CH")).0, "Hallo", "language, underscore form");
    assert_eq!(seen(Some("de")).0, "Hallo");
    assert_eq!(seen(Some("ja-JP")).0, "Hello", "en as the fallback");
    assert_eq!(seen(None).0, "Hello", "no locale: en");
    assert_eq!(seen(Some("de-AT")).2, "Los", "labels are localized too");
    assert_eq!(seen(Some("es-MX")).1, "Hola");
    // Without `en`, the first entry in key order (flows are stored as JSON,
    // whose objects keep no authoring order).
    assert_eq!(seen(Some("ja")).1, "Hola");
    assert_eq!(components(&view(&f, &started(&f)))[1]["text"], "Plain");
}

#[test]
fn strings_are_templates_over_the_context() {
    let f = flow(
        r#"
id: tpl
start: a
nodes:
  - id: a
    kind: screen
    title: "Hi {{ user.attributes.first_name }}"
    components:
      - kind: card
        title: "{{ session.flow_id }} v{{ session.flow_version }}"
        children:
          - { kind: text, text: "[{{ user.attributes.missing.deeper }}]" }
      - kind: select
        id: pick
        label: "Pick, {{ user.id }}"
        options: [{ value: a, label: "Option {{ client.platform }}" }]
      - { kind: text_input, id: name, label: Name, placeholder: "e.g. {{ user.attributes.first_name }}" }
      - { kind: button, label: "Go {{ client.locale }}", action: go }
    actions:
      - { id: go, label: "Go, {{ user.attributes.first_name }}", next: b }
  - id: b
    kind: screen
    title: "Thanks {{ input.a.name }}{% if input.a.pick %} ({{ input.a.pick }}){% endif %}"
"#,
    );
    let c = ClientInfo {
        platform: Some("web".into()),
        locale: Some("en-GB".into()),
        ..ClientInfo::default()
    };
    let s = start_as(&f, c, json!({ "first_name": "Ada" })).state;
    let v = view(&f, &s);
    assert_eq!(plain(&v.title), "Hi Ada");
    assert_eq!(
        components(&v),
        json!([
            { "kind": "card", "title": "tpl v1", "children": [{ "kind": "text", "text": "[]" }] },
            { "kind": "select", "id": "pick", "log_id": "tpl.a.pick", "label": "Pick, u-1", "options": [{ "value": "a", "label": "Option web" }], "required": false },
            { "kind": "text_input", "id": "name", "log_id": "tpl.a.name", "label": "Name", "placeholder": "e.g. Ada", "required": false },
            { "kind": "button", "label": "Go en-GB", "action": "go", "style": "primary" },
        ])
    );
    assert_eq!(
        v.actions,
        [ActionView {
            id: "go".into(),
            log_id: "tpl.a.go".into(),
            label: Some("Go, Ada".into()),
            validates: true
        }]
    );
    assert!(!v.fallback && !v.terminal);

    let s = submit_ok(&f, &s, "a", "go", json!({ "name": "Grace", "pick": "a" })).state;
    assert_eq!(plain(&view(&f, &s).title), "Thanks Grace (a)");
}

#[test]
fn a_template_error_is_reported_not_panicked() {
    let f = flow("id: t\nstart: a\nnodes:\n  - { id: a, kind: screen, title: \"{{ 1 / 0 }}\" }\n");
    let err = render(&f, &started(&f)).unwrap_err();
    assert_eq!(err.code(), "TEMPLATE_FAILED");
    assert!(err.is_flow_defect());
}

const VERSIONED: &str = r#"
id: versioned
start: a
nodes:
  - id: a
    kind: screen
    title: New design
    min_app_version: "5.2"
    components:
      - { kind: text_input, id: nick, label: Nick, required: true }
    fallback:
      title: Please update
      components:
        - { kind: text, text: "Update to see this." }
    actions:
      - { id: next, next: done }
  - { id: done, kind: end }
"#;

fn with_version(v: Option<&str>) -> ClientInfo {
    ClientInfo {
        app_version: v.map(str::to_string),
        ..ClientInfo::default()
    }
}

#[test]
fn old_app_versions_get_the_fallback() {
    let f = flow(VERSIONED);
    let seen =
        |version: Option<&str>| view(&f, &start_as(&f, with_version(version), Value::Null).state);
    for old in ["5.1", "5.1.9", "4", "v5.1.9 (1234)", "5.2.0-beta.1"] {
        let v = seen(Some(old));
        assert!(v.fallback, "{old} is older than 5.2");
        assert_eq!(plain(&v.title), "Please update");
        assert_eq!(
            components(&v),
            json!([{ "kind": "text", "text": "Update to see this." }])
        );
    }
    for current in ["5.2", "5.2.0", "5.10", "6", "10.0.1"] {
        let v = seen(Some(current));
        assert!(!v.fallback, "{current} is at least 5.2");
        assert_eq!(plain(&v.title), "New design");
        assert_eq!(components(&v)[0]["id"], "nick");
    }
    assert!(
        !seen(None).fallback,
        "an app that does not say its version is assumed current"
    );
}

#[test]
fn validation_checks_what_the_client_was_shown() {
    let f = flow(VERSIONED);
    // The old app sees no input: an empty submit passes and stores nothing.
    let old = start_as(&f, with_version(Some("5.0")), Value::Null).state;
    let adv = submit_ok(&f, &old, "a", "next", json!({ "nick": "sneaky" }));
    assert_eq!(adv.state.node, "done");
    assert_eq!(adv.state.context["input"]["a"], json!({}));
    // The current app sees the required input.
    let new = start_as(&f, with_version(Some("5.3")), Value::Null).state;
    assert_eq!(
        rejected(&f, &new, json!({})),
        [("nick".to_string(), "REQUIRED".to_string())]
    );
}

const CUSTOM: &str = r#"
id: custom
start: a
nodes:
  - id: a
    kind: screen
    title: Pick a spot
    components:
      - kind: card
        children:
          - { kind: custom, name: map_picker, props: { zoom: 3, label: "{{ not rendered }}" } }
      - { kind: button, label: Next, action: next }
    fallback:
      components:
        - { kind: text_input, id: address, label: Address }
    actions:
      - { id: next, next: a }
"#;

fn with_caps(caps: Option<&[&str]>) -> ClientInfo {
    ClientInfo {
        capabilities: caps.map(|c| c.iter().map(|s| s.to_string()).collect()),
        ..ClientInfo::default()
    }
}

#[test]
fn missing_capabilities_and_custom_components_get_the_fallback() {
    let f = flow(CUSTOM);
    let seen = |caps: Option<&[&str]>| view(&f, &start_as(&f, with_caps(caps), Value::Null).state);

    let v = seen(None);
    assert!(
        v.fallback,
        "no capabilities: every core kind, no custom one (even nested in a card)"
    );
    assert_eq!(
        plain(&v.title),
        "Pick a spot",
        "a fallback without a title keeps the screen's"
    );
    assert_eq!(components(&v)[0]["id"], "address");

    let v = seen(Some(&["card", "button", "custom:map_picker"]));
    assert!(!v.fallback);
    assert_eq!(
        components(&v)[0]["children"][0],
        json!({ "kind": "custom", "name": "map_picker", "props": { "zoom": 3, "label": "{{ not rendered }}" } }),
        "custom props pass through untouched"
    );
    assert!(
        seen(Some(&["button", "custom:map_picker", "text_input"])).fallback,
        "no `card`"
    );
    assert!(seen(Some(&["card", "button", "custom:other", "text_input"])).fallback);
}

#[test]
fn a_client_is_never_sent_a_kind_it_does_not_list() {
    // No fallback at all: an error, not a screen the client breaks on.
    let f = flow(STEPS);
    let state = start_as(&f, with_caps(Some(&["text"])), Value::Null).state;
    let err = render(&f, &state).unwrap_err();
    assert_eq!(err.code(), "CLIENT_UNSUPPORTED");
    assert!(err.to_string().contains("text_input"), "{err}");
    assert!(err.hint().is_some());
    // The fallback is itself checked: one that needs `text_input` does
    // not fit a client without it.
    let f = flow(CUSTOM);
    let state = start_as(&f, with_caps(Some(&["card", "button"])), Value::Null).state;
    let err = render(&f, &state).unwrap_err();
    assert_eq!(err.code(), "CLIENT_UNSUPPORTED");
    assert!(
        err.to_string().contains("fallback 1 uses `text_input`"),
        "{err}"
    );
}

const FALLBACKS: &str = r#"
id: fallbacks
start: a
nodes:
  - id: a
    kind: screen
    components:
      - { kind: custom, name: map_picker }
    fallback:
      - components: [{ kind: custom, name: simple_map }]
      - title: Address
        components: [{ kind: text_input, id: address, label: Address }]
      - components: [{ kind: text, text: "Call us." }]
    actions:
      - { id: next, next: done }
  - { id: done, kind: end }
"#;

#[test]
fn fallbacks_are_tried_in_order_and_the_first_that_fits_wins() {
    let f = flow(FALLBACKS);
    let seen = |caps: &[&str]| view(&f, &start_as(&f, with_caps(Some(caps)), Value::Null).state);
    let v = seen(&["custom:map_picker"]);
    assert!(!v.fallback);
    let v = seen(&["custom:simple_map", "text_input"]);
    assert_eq!(
        components(&v),
        json!([{ "kind": "custom", "name": "simple_map", "props": null }])
    );
    let v = seen(&["text_input", "text"]);
    assert!(v.fallback);
    assert_eq!(plain(&v.title), "Address");
    assert_eq!(components(&v)[0]["id"], "address");
    let v = seen(&["text"]);
    assert_eq!(
        components(&v),
        json!([{ "kind": "text", "text": "Call us." }])
    );
    let state = start_as(&f, with_caps(Some(&["image"])), Value::Null).state;
    assert_eq!(render(&f, &state).unwrap_err().code(), "CLIENT_UNSUPPORTED");
}

const GUARDED: &str = r#"
id: guarded
start: a
nodes:
  - id: a
    kind: screen
    components:
      - { kind: text, id: pro, text: "Pro perks", visible_when: { "==": [{ "var": "user.attributes.plan" }, "pro"] } }
      - kind: card
        min_app_version: "6.0"
        children:
          - { kind: text_input, id: promo, label: Promo, required: true }
      - { kind: text, id: never, text: "hidden", visible_when: false }
      - { kind: text, id: always, text: "shown" }
    actions:
      - { id: next, next: done }
  - { id: done, kind: end }
"#;

#[test]
fn components_show_by_visible_when_and_min_app_version() {
    let f = flow(GUARDED);
    let client = |v: &str| ClientInfo {
        app_version: Some(v.into()),
        ..ClientInfo::default()
    };
    let old = start_as(&f, client("5.9"), json!({ "plan": "free" })).state;
    let v = view(&f, &old);
    assert_eq!(
        components(&v),
        json!([{ "kind": "text", "id": "always", "log_id": "guarded.a.always", "text": "shown" }])
    );
    // A hidden required input is not expected.
    assert_eq!(
        submit_ok(&f, &old, "a", "next", json!({})).state.node,
        "done"
    );

    let new = start_as(&f, client("6.1"), json!({ "plan": "pro" })).state;
    let ids: Vec<Value> = components(&view(&f, &new))
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].clone())
        .collect();
    assert_eq!(ids, [json!("pro"), Value::Null, json!("always")]);
    assert_eq!(
        rejected(&f, &new, json!({})),
        [("promo".to_string(), "REQUIRED".to_string())]
    );
    // Guards are the server's business: the client never gets them.
    assert!(
        !serde_json::to_string(&view(&f, &new).components)
            .unwrap()
            .contains("visible_when")
    );
}

const CUSTOM_INPUTS: &str = r#"
id: custom_inputs
start: a
nodes:
  - id: a
    kind: screen
    components:
      - kind: custom
        name: map_picker
        inputs:
          - { id: lat, type: number, min: -90, max: 90, required: true }
          - { id: zone, type: select, options: [north, south] }
      - { kind: custom, name: signature }
    fallback:
      components:
        - { kind: number_input, id: lat, label: Latitude, min: -90, max: 90, required: true }
        - { kind: select, id: zone, label: Zone, options: [{ value: north, label: N }, { value: south, label: S }] }
        - { kind: checkbox, id: signed, label: Signed, required: true }
    actions:
      - { id: next, next: done }
  - { id: done, kind: end }
"#;

#[test]
fn custom_components_values_are_validated() {
    let f = flow(CUSTOM_INPUTS);
    let caps = ["custom:map_picker", "custom:signature"];
    let s = start_as(&f, with_caps(Some(&caps)), Value::Null).state;
    assert!(!view(&f, &s).fallback);
    assert_eq!(
        rejected(
            &f,
            &s,
            json!({ "lat": 100, "zone": "east", "signed": true })
        ),
        [
            ("lat".to_string(), "TOO_LARGE".to_string()),
            ("zone".to_string(), "INVALID_OPTION".to_string()),
        ]
    );
    // `signature` declares nothing: it submits what the fallback does.
    assert_eq!(
        rejected(&f, &s, json!({ "lat": 45 })),
        [("signed".to_string(), "REQUIRED".to_string())]
    );
    let done = submit_ok(
        &f,
        &s,
        "a",
        "next",
        json!({ "lat": "45", "signed": true, "extra": 1 }),
    );
    assert_eq!(done.state.node, "done");
    assert_eq!(
        done.state.context["input"]["a"],
        json!({ "lat": 45, "signed": true })
    );
}

#[test]
fn an_end_node_renders_its_last_screen_or_nothing() {
    let f = flow(STEPS);
    let mut s = submit_ok(&f, &started(&f), "a", "next", json!({ "name": "Ada" })).state;
    s = submit_ok(&f, &s, "b", "next", json!({})).state;
    let at_c = s.clone();
    s = submit_ok(&f, &s, "c", "finish", json!({})).state;
    let v = view(&f, &s);
    assert_eq!(v.id, "done");
    assert_eq!(plain(&v.title), "Bye Ada");
    assert!(v.terminal);
    assert!(v.actions.is_empty() && v.errors.is_empty() && v.values.is_empty());

    let failed = submit_ok(&f, &at_c, "c", "fail", json!({})).state;
    assert!(
        render(&f, &failed).unwrap().is_none(),
        "an end without title or components"
    );
}

#[test]
fn a_state_on_an_unknown_node_is_an_error() {
    let f = flow(STEPS);
    let mut s = started(&f);
    s.node = "gone".into();
    assert_eq!(render(&f, &s).unwrap_err().code(), "UNKNOWN_NODE");
    assert_eq!(
        submit(&f, &s, "gone", "next", &Map::new(), &Limits::default())
            .unwrap_err()
            .code(),
        "UNKNOWN_NODE"
    );
    let mut s = submit_ok(&f, &started(&f), "a", "skip", json!({})).state;
    s.back = vec!["gone".into()];
    assert_eq!(back(&f, &s).unwrap_err().code(), "UNKNOWN_NODE");
}

// ---- events ------------------------------------------------------------------

#[test]
fn every_step_appends_its_events_in_order() {
    let f = flow(&STEPS.replace("start: a", "start: route").replace(
        "nodes:\n",
        "nodes:\n  - { id: route, kind: decision, next: a }\n",
    ));
    let mut all = Vec::new();
    let mut step = |adv: Advance| {
        all.extend(log(&adv.events));
        adv.state
    };
    let mut s = step(start_as(&f, client(), Value::Null));
    s = step(submit_ok(&f, &s, "a", "next", json!({})));
    s = step(submit_ok(&f, &s, "a", "next", json!({ "name": "Ada" })));
    s = step(back(&f, &s).unwrap());
    s = step(submit_ok(&f, &s, "a", "skip", json!({})));
    s = step(submit_ok(&f, &s, "b", "next", json!({ "age": 3 })));
    s = step(submit_ok(&f, &s, "c", "finish", json!({})));
    assert_eq!(s.status, Status::Completed);
    assert_eq!(
        all,
        [
            "started steps@1",
            "entered decision route",
            "entered screen a",
            "rejected a/next",
            "submitted a/next",
            "entered screen b",
            "went_back b->a",
            "submitted a/skip",
            "entered screen b",
            "submitted b/next",
            "entered screen c",
            "submitted c/finish",
            "entered end done",
            "ended done Completed",
        ]
    );
}

#[test]
fn rejected_and_submitted_events_carry_what_was_checked() {
    let f = flow(STEPS);
    let adv = submit_ok(&f, &started(&f), "a", "next", json!({ "name": " " }));
    match &adv.events[..] {
        [
            Event::Rejected {
                screen,
                action,
                errors,
                log_id,
            },
        ] => {
            assert_eq!((screen.as_str(), action.as_str()), ("a", "next"));
            assert_eq!(errors, &adv.state.errors);
            assert_eq!(log_id.as_deref(), Some("steps.a.next"));
        }
        other => panic!("{other:?}"),
    }
    let adv = submit_ok(&f, &started(&f), "a", "next", json!({ "name": "Ada" }));
    assert_eq!(
        adv.events[0],
        Event::Submitted {
            screen: "a".into(),
            action: "next".into(),
            values: obj(json!({ "name": "Ada" })),
            log_id: Some("steps.a.next".into()),
        }
    );
    assert_eq!(adv.events[0].kind(), "submitted");
}

#[test]
fn a_session_state_survives_a_json_round_trip() {
    let f = flow(STEPS);
    let s = submit_ok(&f, &started(&f), "a", "next", json!({ "name": "Ada" })).state;
    let r = submit_ok(&f, &s, "b", "next", json!({ "age": "x" })).state;
    for state in [s, r] {
        let back: SessionState =
            serde_json::from_value(serde_json::to_value(&state).unwrap()).unwrap();
        assert_eq!(back, state);
    }
}

#[test]
fn a_long_valid_input_never_makes_the_next_screen_unrenderable() {
    // A text input without `max_length`, shown again on the next screen (as
    // `flows/checkout.yaml` shows the address on `review`).
    let f = flow(
        r#"
id: echo
start: a
nodes:
  - id: a
    kind: screen
    components: [{ kind: text_input, id: address, label: Address, required: true }]
    actions: [{ id: next, next: b }]
  - id: b
    kind: screen
    title: "Ship to {{ input.a.address }}?"
"#,
    );
    let long = "x".repeat(70 * 1024);
    let adv = submit(
        &f,
        &started(&f),
        "a",
        "next",
        &obj(json!({ "address": long })),
        &Limits::default(),
    );
    match adv {
        // Refusing the value is fine…
        Err(e) => assert_eq!(e.code(), "CONTEXT_TOO_LARGE", "{e}"),
        Ok(adv) if !adv.state.errors.is_empty() => assert_eq!(adv.state.errors[0].code, "TOO_LONG"),
        // …accepting it and then failing to show the next screen is not.
        Ok(adv) => {
            let shown = render(&f, &adv.state);
            assert!(
                shown.is_ok(),
                "accepted, then unrenderable: {:?}",
                shown.err().map(|e| e.to_string())
            );
        }
    }
}

const STEP_FLOW: &str = r#"
id: stepped
start: ask
on_error: oops
nodes:
  - id: ask
    kind: screen
    components: [{ kind: number_input, id: n, label: N, required: true }]
    actions: [{ id: go, next: calc }]
  - id: calc
    kind: transform
    set:
      double: { "*": [{ var: input.ask.n }, 2] }
      label: "n={{ input.ask.n }}"
      fixed: 7
    next: call
  - id: call
    kind: http
    url: "http://localhost/x"
    next:
      - { when: { ">": [{ var: steps.call.body.score }, 5] }, to: review }
      - to: low
    on_timeout: slow
  - id: review
    kind: approval
    role: underwriter
    title: "Review {{ steps.calc.label }}"
    outcomes: { approved: yes, declined: low }
    due: 2h
  - { id: yes, kind: end }
  - { id: low, kind: end }
  - { id: slow, kind: end }
  - { id: oops, kind: end, outcome: failed }
"#;

fn parked_on_call() -> (CompiledFlow, SessionState) {
    let f = flow(STEP_FLOW);
    let s = start_as(&f, client(), Value::Null).state;
    let adv = submit(
        &f,
        &s,
        "ask",
        "go",
        &json!({ "n": 4 }).as_object().unwrap().clone(),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(adv.state.status, Status::Waiting);
    assert_eq!(adv.state.node, "call");
    assert_eq!(adv.tasks.len(), 1);
    assert_eq!(adv.tasks[0].spec.kind(), StepKind::Http);
    // The transform ran inline, before the step.
    assert_eq!(
        adv.state.context["steps"]["calc"],
        json!({ "double": 8, "fixed": 7, "label": "n=4" })
    );
    (f, adv.state)
}

fn result(outcome: &str, output: Value) -> StepResult {
    StepResult {
        outcome: outcome.into(),
        output,
    }
}

#[test]
fn a_step_result_picks_the_edge() {
    let (f, s) = parked_on_call();
    let l = Limits::default();
    // ok: the rules see the output.
    let adv = resume(
        &f,
        &s,
        "call",
        result("ok", json!({ "body": { "score": 9 } })),
        &l,
    )
    .unwrap();
    assert_eq!(adv.state.node, "review");
    let TaskSpec::Approval {
        queue,
        title,
        deadline,
        ..
    } = &adv.tasks[0].spec
    else {
        panic!("an approval task: {:?}", adv.tasks[0]);
    };
    assert_eq!(queue, "underwriter");
    assert_eq!(title.as_deref(), Some("Review n=4"));
    assert_eq!(*deadline, Some(std::time::Duration::from_secs(7200)));
    let adv2 = resume(
        &f,
        &s,
        "call",
        result("ok", json!({ "body": { "score": 1 } })),
        &l,
    )
    .unwrap();
    assert_eq!(adv2.state.node, "low");
    // timeout: on_timeout; error: no on_error on the step, so the flow's.
    let t = resume(&f, &s, "call", result("timeout", json!({})), &l).unwrap();
    assert_eq!(t.state.node, "slow");
    let e = resume(&f, &s, "call", result("error", json!({})), &l).unwrap();
    assert_eq!(e.state.node, "oops");
    assert_eq!(e.state.status, Status::Failed);
    // Approval outcomes; an unknown one is refused.
    let r = &adv.state;
    let yes = resume(&f, r, "review", result("approved", json!({})), &l).unwrap();
    assert_eq!(yes.state.node, "yes");
    let err = resume(&f, r, "review", result("maybe", json!({})), &l).unwrap_err();
    assert_eq!(err.code(), "UNKNOWN_OUTCOME");
    // A result for a step the session is not on is not applied.
    let err = resume(&f, r, "call", result("ok", json!({})), &l).unwrap_err();
    assert_eq!(err.code(), "STEP_NOT_CURRENT");
    // The log records the result.
    assert!(log(&adv.events).contains(&"step call ok".to_string()));
}

#[test]
fn a_waiting_session_shows_a_pending_screen_and_cannot_go_back() {
    let (f, s) = parked_on_call();
    let v = view(&f, &s);
    assert_eq!(v.id, "call");
    assert!(v.actions.is_empty());
    assert_eq!(v.title.as_deref(), Some("One moment"));
    assert_eq!(back(&f, &s).unwrap_err().code(), "SESSION_WAITING");
    let err = submit(&f, &s, "ask", "go", &Map::new(), &Limits::default()).unwrap_err();
    assert_eq!(err.code(), "STALE_SCREEN");
}

#[test]
fn failing_without_an_edge_fails_where_it_stands() {
    let f = flow(&STEP_FLOW.replace("on_error: oops\n", ""));
    let s = start_as(&f, client(), Value::Null).state;
    let s = submit(
        &f,
        &s,
        "ask",
        "go",
        &json!({ "n": 4 }).as_object().unwrap().clone(),
        &Limits::default(),
    )
    .unwrap()
    .state;
    let adv = resume(
        &f,
        &s,
        "call",
        result("error", json!({ "error": "boom" })),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(adv.state.status, Status::Failed);
    assert_eq!(adv.state.node, "call");
    let v = view(&f, &adv.state);
    assert_eq!(v.title.as_deref(), Some("Something went wrong"));
    assert!(v.terminal);
    // An operator's retry parks it on the step again.
    let again = reopen(&f, &adv.state, "ops").unwrap();
    assert_eq!(again.state.status, Status::Waiting);
    assert_eq!(again.tasks.len(), 1);
}

const LAST_SCREENS: &str = r#"
id: last_screens
start: wait
nodes:
  - id: wait
    kind: wait
    duration: 1h
    next: done
    pending:
      title: Hold on
      components:
        - { kind: image, url: "https://example.test/spinner.gif", alt: Busy }
  - id: done
    kind: end
    outcome: failed
    title: Declined
    components:
      - { kind: image, url: "https://example.test/sad.png", alt: Sad }
"#;

#[test]
fn end_and_pending_screens_never_send_a_kind_the_client_lacks() {
    let f = flow(LAST_SCREENS);
    let waiting = |caps: Option<&[&str]>| start_as(&f, with_caps(caps), Value::Null).state;

    let v = view(&f, &waiting(Some(&["image", "text"])));
    assert!(!v.fallback);
    assert_eq!(components(&v)[0]["kind"], "image");

    // No `image`: the built-in text screen, under the pending title.
    let v = view(&f, &waiting(Some(&["text"])));
    assert!(v.fallback);
    assert_eq!(plain(&v.title), "Hold on");
    assert_eq!(components(&v)[0]["kind"], "text");
    let err = render(&f, &waiting(Some(&["button"]))).unwrap_err();
    assert_eq!(err.code(), "CLIENT_UNSUPPORTED");
    assert!(err.to_string().contains("`image`"), "{err}");

    let mut ended = waiting(Some(&["text"]));
    ended.node = "done".into();
    ended.status = Status::Failed;
    let v = view(&f, &ended);
    assert!(v.fallback && v.terminal);
    assert_eq!(plain(&v.title), "Declined");
    assert_eq!(
        components(&v),
        json!([{ "kind": "text", "id": "end", "log_id": "last_screens.done.end", "text": "We could not complete this." }])
    );
    ended.context["client"]["capabilities"] = json!(["image", "text"]);
    assert_eq!(components(&view(&f, &ended))[0]["kind"], "image");
    ended.context["client"]["capabilities"] = json!(["heading"]);
    assert_eq!(render(&f, &ended).unwrap_err().code(), "CLIENT_UNSUPPORTED");
}

const LOGGED: &str = r#"
id: logged
start: a
nodes:
  - id: a
    kind: screen
    log_id: signup.form
    components:
      - { kind: custom, id: map, name: map_picker }
      - { kind: text, text: "no id, no log id" }
      - { kind: text, id: vip, text: "VIP", visible_when: { "==": [{ "var": "user.attributes.plan" }, "vip"] } }
      - kind: card
        id: box
        children:
          - { kind: text_input, id: name, label: Name, log_id: signup.name_field }
    fallback:
      components: [{ kind: text_input, id: name, label: Name, log_id: signup.name_field }]
    actions:
      - { id: next, log_id: signup.continue, next: b }
      - { id: skip, validate: false, next: b }
  - id: b
    kind: screen
    actions: [{ id: done, next: bye }]
  - id: bye
    kind: end
    components: [{ kind: text, id: thanks, text: "Thanks" }]
"#;

/// The ids an impression event lists: `(screen, components)`.
fn impressions(events: &[Event]) -> Vec<(String, Option<String>, Vec<String>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Entered {
                node,
                log_id,
                components,
                ..
            }
            | Event::WentBack {
                to: node,
                log_id,
                components,
                ..
            } => Some((node.clone(), log_id.clone(), components.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn impressions_and_actions_carry_log_ids_set_or_derived() {
    let f = flow(LOGGED);
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // A client that renders the custom component gets the designed tree;
    // the guarded component is left out, as on the screen.
    let rich = start_as(
        &f,
        with_caps(Some(&["custom:map_picker", "text", "card", "text_input"])),
        Value::Null,
    );
    assert_eq!(
        impressions(&rich.events),
        [(
            "a".to_string(),
            Some("signup.form".to_string()),
            strings(&["logged.a.map", "logged.a.box", "signup.name_field"])
        )]
    );
    let v = view(&f, &rich.state);
    assert_eq!(v.log_id, "signup.form");
    assert_eq!(
        v.actions
            .iter()
            .map(|a| a.log_id.as_str())
            .collect::<Vec<_>>(),
        ["signup.continue", "logged.a.skip"]
    );
    assert_eq!(
        components(&v)[0]["log_id"],
        "logged.a.map",
        "rendered components carry their log id"
    );
    assert_eq!(components(&v)[1].get("log_id"), None);

    // One that does not is shown the fallback, and the impression says so.
    let plain = start_as(&f, with_caps(Some(&["text", "text_input"])), Value::Null);
    assert_eq!(
        impressions(&plain.events)[0].2,
        strings(&["signup.name_field"])
    );

    let adv = submit_ok(&f, &rich.state, "a", "skip", json!({}));
    match &adv.events[0] {
        Event::Submitted { log_id, .. } => assert_eq!(log_id.as_deref(), Some("logged.a.skip")),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        impressions(&adv.events),
        [("b".to_string(), Some("logged.b".to_string()), vec![])]
    );
    let again = back(&f, &adv.state).unwrap();
    assert_eq!(
        impressions(&again.events)[0].1.as_deref(),
        Some("signup.form")
    );
    let end = submit_ok(&f, &adv.state, "b", "done", json!({}));
    assert_eq!(
        impressions(&end.events),
        [(
            "bye".to_string(),
            Some("logged.bye".to_string()),
            strings(&["logged.bye.thanks"])
        )]
    );
}

#[test]
fn a_task_falls_due_by_its_kind() {
    use std::time::Duration;
    let now = 1_000_000;
    let wait = |delay: Option<u64>, until: Option<&str>| TaskSpec::Wait {
        delay: delay.map(Duration::from_millis),
        until: until.map(str::to_owned),
    };
    assert_eq!(TaskSpec::Call(StepKind::Http).due_at(now), Due::At(now));
    assert_eq!(wait(Some(1500), None).due_at(now), Due::At(now + 1500));
    // A duration wins over `until`.
    assert_eq!(
        wait(Some(10), Some("2026-12-05T09:30:00.000Z")).due_at(now),
        Due::At(now + 10)
    );
    assert_eq!(
        wait(None, Some(" 2026-12-05T09:30:00.000Z ")).due_at(now),
        Due::At(parse_rfc3339("2026-12-05T09:30:00.000Z").unwrap())
    );
    assert_eq!(wait(None, None).due_at(now), Due::At(now));
    assert!(matches!(
        wait(None, Some("next tuesday")).due_at(now),
        Due::NowBecause(why) if why.contains("next tuesday")
    ));
    let approval = |deadline: Option<Duration>| TaskSpec::Approval {
        queue: "q".into(),
        title: None,
        outcomes: vec!["ok".into()],
        deadline,
    };
    assert_eq!(approval(None).due_at(now), Due::Never);
    assert_eq!(
        approval(Some(Duration::from_secs(2))).due_at(now),
        Due::At(now + 2000)
    );
    let event = TaskSpec::Event {
        name: "paid".into(),
        correlation: "k".into(),
        deadline: Some(Duration::from_millis(5)),
    };
    assert_eq!(event.due_at(now), Due::At(now + 5));
    assert_eq!(event.kind(), StepKind::Event);
}

// ---- subflows --------------------------------------------------------------

fn def(yaml: &str) -> FlowDef {
    serde_saphyr::from_str(yaml).expect("test flow parses")
}

/// `parent` with `children` (flow id, YAML) inlined, each at version 1.
fn composed(parent: &str, children: &[&str]) -> CompiledFlow {
    let children = children
        .iter()
        .map(|y| {
            let d = def(y);
            (d.id.clone(), (1, d))
        })
        .collect();
    let c = crate::flow::compose::compose(&def(parent), &children).expect("composes");
    CompiledFlow::compile_composed(c, 1, "test-hash".into()).expect("compiles")
}

const NESTED: [&str; 3] = [
    r#"
id: p
start: sub
nodes:
  - { id: sub, kind: subflow, flow: c, params: { who: "{{ user.id }}" }, next: done, on_error: oops }
  - { id: done, kind: end }
  - { id: oops, kind: end, title: "Sorry {{ steps.sub.outcome }}" }
"#,
    r#"
id: c
start: s1
nodes:
  - { id: s1, kind: screen, title: "Hi {{ params.who }}", actions: [{ id: go, next: inner }] }
  - { id: inner, kind: subflow, flow: g, params: { count: 2 }, next: c_end }
  - { id: c_end, kind: end }
"#,
    r#"
id: g
start: call
nodes:
  - { id: call, kind: http, url: "http://127.0.0.1:9/x?n={{ params.count }}", next: g_end }
  - { id: g_end, kind: end }
"#,
];

#[test]
fn a_failure_two_subflows_deep_returns_failed_through_each_parent() {
    let f = composed(NESTED[0], &NESTED[1..]);
    let s = started(&f);
    assert_eq!(s.node, "sub/s1");
    assert_eq!(plain(&view(&f, &s).title), "Hi u-1");
    assert_eq!(s.context["params"], json!({ "who": "u-1" }));
    assert_eq!(s.subflows, BTreeMap::from([("c".to_string(), 1)]));
    let a = submit(&f, &s, "sub/s1", "go", &Map::new(), &Limits::default()).unwrap();
    let s = a.state;
    assert_eq!(
        (s.node.as_str(), s.status),
        ("sub/inner/call", Status::Waiting)
    );
    assert_eq!(s.frames.len(), 2);
    assert_eq!(s.context["params"], json!({ "count": 2 }));
    assert_eq!(a.tasks[0].node, "sub/inner/call");

    // `g` and `c` have no on_error: each returns `failed` to its parent,
    // and `p`'s subflow step takes its own `on_error`.
    let result = StepResult {
        outcome: "error".into(),
        output: json!({ "status": 503 }),
    };
    let a = resume(&f, &s, "sub/inner/call", result, &Limits::default()).unwrap();
    let s = a.state;
    assert_eq!((s.node.as_str(), s.status), ("oops", Status::Completed));
    assert!(s.frames.is_empty());
    assert_eq!(plain(&view(&f, &s).title), "Sorry failed");
    assert_eq!(
        s.context["steps"]["sub"]["steps"]["inner"]["steps"]["call"],
        json!({ "status": 503 })
    );
    assert_eq!(
        s.context["steps"]["sub"]["steps"]["inner"]["outcome"],
        "failed"
    );
    assert_eq!(s.context["params"], json!({}));
    let completed: Vec<(&str, &str)> = a
        .events
        .iter()
        .filter_map(|e| match e {
            Event::StepCompleted { node, outcome, .. } => Some((node.as_str(), outcome.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(
        completed,
        [
            ("sub/inner/call", "error"),
            ("sub/inner", "failed"),
            ("sub", "failed")
        ]
    );
}

#[test]
fn a_flow_compiled_without_its_children_cannot_enter_them() {
    let f = flow(NESTED[0]);
    let err = start(&f, start_input(client(), Value::Null), &Limits::default()).unwrap_err();
    assert_eq!(err.code().as_str(), "SUBFLOW_NOT_LOADED");
}

#[test]
fn an_operator_skips_within_a_subflow_only() {
    let f = composed(NESTED[0], &NESTED[1..]);
    let s = started(&f);
    let s = submit(&f, &s, "sub/s1", "go", &Map::new(), &Limits::default())
        .unwrap()
        .state;
    let err = skip(&f, &s, "done", "op", &Limits::default()).unwrap_err();
    assert_eq!(err.code().as_str(), "SKIP_ACROSS_SUBFLOW");
    let err = skip(&f, &s, "sub/c_end", "op", &Limits::default()).unwrap_err();
    assert_eq!(err.code().as_str(), "SKIP_ACROSS_SUBFLOW");
    // To the child's own end: both subflows return, completed.
    let s = skip(&f, &s, "sub/inner/g_end", "op", &Limits::default())
        .unwrap()
        .state;
    assert_eq!((s.node.as_str(), s.status), ("done", Status::Completed));
    assert_eq!(
        s.context["steps"]["sub"]["steps"]["inner"]["outcome"],
        "completed"
    );
}

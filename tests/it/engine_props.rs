//! Property test: the engine driven through the example flows in `flows/`
//! by random clients doing random things — submits to any screen with any
//! action and any values (wrong types, nesting, huge strings), and `back`.
//! Whatever happens: no panic, every error has a stable code, every state
//! the engine hands out renders, the back stack stays bounded, and an ended
//! session stays ended.

use std::sync::LazyLock;

use baton::engine::{self, ClientInfo, Limits, SessionState, StartInput, Status};
use baton::flow::compile::CompiledFlow;
use baton::flow::compose;
use baton::flow::load;
use baton::flow::model::{ComponentDef, NodeDef};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use crate::testapp::repo_flows;

static FLOWS: LazyLock<Vec<CompiledFlow>> = LazyLock::new(|| {
    let report = load::load_dir(&repo_flows()).expect("flows/ is readable");
    assert!(
        !report.has_errors(),
        "flows/ loads cleanly: {:?}",
        report.issues
    );
    // Each flow with the flows its subflows run inlined, as a session
    // walks it.
    let all: std::collections::BTreeMap<String, (i32, baton::flow::model::FlowDef)> = report
        .flows
        .iter()
        .map(|f| (f.def.id.clone(), (1, f.def.clone())))
        .collect();
    let flows: Vec<CompiledFlow> = report
        .flows
        .into_iter()
        .map(|f| {
            let composed = compose::compose(&f.def, &all).expect("example flow composes");
            CompiledFlow::compile_composed(composed, 1, f.hash).expect("example flow compiles")
        })
        .collect();
    assert!(flows.len() >= 3, "the example flows are there");
    flows
});

const LIMITS: Limits = Limits {
    max_steps_per_advance: 64,
    max_context_bytes: 256 * 1024,
    // Small, so random walks reach it.
    max_back_stack: 4,
};

/// Longer than the context limit, and longer than a rendered string may be.
const HUGE: [usize; 2] = [70 * 1024, 300 * 1024];

#[derive(Debug, Clone)]
enum Target {
    Current,
    /// Any node of the flow, by index (mod the node count).
    Node(usize),
    Random(String),
}

#[derive(Debug, Clone)]
enum Pick {
    /// One of the current screen's actions (mod their count).
    Declared(usize),
    Random(String),
}

#[derive(Debug, Clone)]
enum Key {
    /// One of the screen's input ids (mod their count).
    Input(usize),
    Random(String),
}

#[derive(Debug, Clone)]
enum Val {
    /// A value that fits the input's kind, valid or nearly so.
    Plausible(usize),
    Json(Value),
}

#[derive(Debug, Clone)]
enum Op {
    Submit {
        screen: Target,
        action: Pick,
        values: Vec<(Key, Val)>,
    },
    /// The current screen with a value for every input, mostly valid ones:
    /// what gets a session deep into a flow.
    Fill {
        action: usize,
        seeds: Vec<usize>,
    },
    Back,
    /// The step the session waits on finishes with one of these outcomes
    /// (some the step does not know) and a random output.
    Resume {
        outcome: usize,
        output: Value,
    },
}

const OUTCOMES: &[&str] = &["ok", "error", "timeout", "approved", "declined", "bogus"];

fn huge_string() -> impl Strategy<Value = String> {
    prop::sample::select(&HUGE[..]).prop_map(|n| "x".repeat(n))
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        4 => Just(Value::Null),
        4 => any::<bool>().prop_map(Value::Bool),
        4 => any::<i64>().prop_map(Value::from),
        4 => any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        4 => "\\PC{0,12}".prop_map(Value::String),
        4 => "[0-9 .e+-]{1,8}".prop_map(Value::String),
        1 => huge_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-z_]{1,6}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn op() -> impl Strategy<Value = Op> {
    let target = prop_oneof![
        6 => Just(Target::Current),
        1 => any::<usize>().prop_map(Target::Node),
        1 => "\\PC{0,8}".prop_map(Target::Random),
    ];
    let action = prop_oneof![
        6 => any::<usize>().prop_map(Pick::Declared),
        1 => "\\PC{0,8}".prop_map(Pick::Random),
    ];
    let key = prop_oneof![
        6 => any::<usize>().prop_map(Key::Input),
        1 => "\\PC{0,8}".prop_map(Key::Random),
    ];
    let val = prop_oneof![
        4 => any::<usize>().prop_map(Val::Plausible),
        1 => json_value().prop_map(Val::Json),
    ];
    prop_oneof![
        3 => (target, action, prop::collection::vec((key, val), 0..6))
            .prop_map(|(screen, action, values)| Op::Submit { screen, action, values }),
        4 => (any::<usize>(), prop::collection::vec(any::<usize>(), 8))
            .prop_map(|(action, seeds)| Op::Fill { action, seeds }),
        1 => Just(Op::Back),
        2 => (0..OUTCOMES.len(), json_value())
            .prop_map(|(outcome, output)| Op::Resume { outcome, output }),
    ]
}

fn client() -> impl Strategy<Value = ClientInfo> {
    let opt = |xs: &'static [&'static str]| {
        prop::option::of(prop::sample::select(xs).prop_map(str::to_string))
    };
    let caps = prop::option::of(prop::sample::subsequence(
        vec![
            "text",
            "heading",
            "text_input",
            "number_input",
            "email_input",
            "select",
            "checkbox",
            "date",
            "button",
            "card",
            "markdown",
            "custom:permission_carousel",
        ],
        0..=12,
    ))
    .prop_map(|c| c.map(|c| c.into_iter().map(str::to_string).collect()));
    (
        opt(&["ios", "android", "web", ""]),
        opt(&["4.9", "5.2", "6.1.0", "v5.1 (77)", "garbage"]),
        opt(&["de-DE", "en", "fr", "de_AT", ""]),
        caps,
    )
        .prop_map(|(platform, app_version, locale, capabilities)| ClientInfo {
            platform,
            app_version,
            locale,
            capabilities,
        })
}

fn attributes() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(json!({ "plan": "pro", "first_name": "Ada", "unit_price": 40 })),
        Just(json!({ "plan": 7, "first_name": ["x"], "unit_price": "cheap" })),
        prop::collection::vec(("[a-z_]{1,10}", json_value()), 0..4)
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
    ]
}

/// A plausible value for an input component.
fn plausible(c: &ComponentDef, n: usize) -> Value {
    let pick = |xs: &[Value]| xs[n % xs.len()].clone();
    match c {
        ComponentDef::TextInput { .. } => pick(&[
            json!("Ada Lovelace"),
            json!("12345"),
            json!("x"),
            json!("  "),
            json!("Main Street 1"),
            Value::String("y".repeat(HUGE[0])),
        ]),
        ComponentDef::NumberInput { .. } => pick(&[
            json!(1),
            json!(3),
            json!(1000),
            json!("5000"),
            json!(50000),
            json!(2.5),
            json!(-1),
            json!(100000),
        ]),
        ComponentDef::EmailInput { .. } => pick(&[json!("ada@example.com"), json!("not-an-email")]),
        ComponentDef::Select { options, .. } => {
            if n % 5 == 4 || options.is_empty() {
                json!("not-an-option")
            } else {
                json!(options[n % options.len()].value)
            }
        }
        ComponentDef::Checkbox { .. } => pick(&[json!(true), json!(true), json!(false)]),
        ComponentDef::Date { .. } => pick(&[
            json!("1990-05-01"),
            json!("2021-06-01"),
            json!("1899-12-31"),
            json!("2020-02-30"),
        ]),
        _ => json!("?"),
    }
}

/// A value the input accepts (for the example flows' constraints), or
/// now and then a huge one, or any plausible one.
fn fitting(c: &ComponentDef, seed: usize) -> Value {
    if seed.is_multiple_of(4) {
        return plausible(c, seed / 4);
    }
    match c {
        ComponentDef::TextInput {
            pattern: Some(_), ..
        } => json!("12345"),
        ComponentDef::TextInput { .. } if seed % 16 == 1 => Value::String("y".repeat(HUGE[0])),
        ComponentDef::TextInput { .. } => json!(["Ada Lovelace", "Main Street 1"][seed % 2]),
        ComponentDef::NumberInput { min, max, .. } => {
            let lo = min.unwrap_or(0.0);
            let hi = max.unwrap_or(lo + 100.0);
            json!([lo, hi, ((lo + hi) / 2.0).floor()][seed % 3])
        }
        ComponentDef::EmailInput { .. } => json!("ada@example.com"),
        ComponentDef::Select { options, .. } if !options.is_empty() => {
            json!(options[seed % options.len()].value)
        }
        ComponentDef::Checkbox { .. } => json!(true),
        ComponentDef::Date { min, max, .. } => {
            json!(min.as_deref().or(max.as_deref()).unwrap_or("2000-01-01"))
        }
        other => plausible(other, seed),
    }
}

/// The input components a screen may show (design and fallback).
fn inputs(flow: &CompiledFlow, node: &str) -> Vec<ComponentDef> {
    let mut out = Vec::new();
    let Some(NodeDef::Screen(s)) = flow.node_index(node).map(|i| flow.node_def(i)) else {
        return out;
    };
    let fallback = s
        .fallback
        .iter()
        .flat_map(|f| f.list())
        .flat_map(|f| f.components.iter());
    for c in s.components.iter().chain(fallback) {
        c.walk("", &mut |c, _| {
            if c.is_input() {
                out.push(c.clone());
            }
        });
    }
    out
}

fn actions(flow: &CompiledFlow, node: &str) -> Vec<String> {
    match flow.node_index(node).map(|i| flow.node_def(i)) {
        Some(NodeDef::Screen(s)) => s.actions.iter().map(|a| a.id.clone()).collect(),
        _ => Vec::new(),
    }
}

fn is_code(code: &str) -> bool {
    !code.is_empty()
        && code.starts_with(|c: char| c.is_ascii_uppercase())
        && code
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Everything that must hold for a state the engine handed out.
fn check_state(flow: &CompiledFlow, state: &SessionState) -> Result<(), TestCaseError> {
    let rendered = engine::render(flow, state);
    // A client that lists its capabilities and lacks what a screen and
    // all its fallbacks need gets this clean error, never those kinds.
    let lists_caps = state.context["client"]["capabilities"].is_array();
    if lists_caps
        && let Err(e) = &rendered
        && e.code() == "CLIENT_UNSUPPORTED"
    {
        return Ok(());
    }
    prop_assert!(
        rendered.is_ok(),
        "state on `{}` does not render: {:?}",
        state.node,
        rendered.err().map(|e| (e.code(), e.to_string()))
    );
    prop_assert!(state.back.len() <= LIMITS.max_back_stack);
    let kind = flow
        .node_index(&state.node)
        .map(|i| flow.node_def(i).kind());
    match state.status {
        Status::Active => {
            prop_assert_eq!(kind, Some("screen"));
            prop_assert!(
                rendered.unwrap().is_some(),
                "an active session has a screen"
            );
        }
        Status::Waiting => {
            let step = flow
                .node_index(&state.node)
                .is_some_and(|i| flow.node_def(i).is_async_step());
            prop_assert!(step, "waiting on a {kind:?}");
            prop_assert!(
                rendered.unwrap().is_some_and(|s| s.actions.is_empty()),
                "a waiting session shows a pending screen without actions"
            );
        }
        s => {
            prop_assert!(s.is_terminal(), "unexpected status {s:?}");
            // A step whose failure has no edge fails the session where it is.
            prop_assert!(
                kind == Some("end") || s == Status::Failed,
                "ended on a {kind:?}"
            );
            prop_assert!(state.outcome.is_some());
        }
    }
    let round: SessionState = serde_json::from_value(serde_json::to_value(state).unwrap()).unwrap();
    prop_assert_eq!(&round, state, "the stored snapshot reads back the same");
    Ok(())
}

fn run(
    flow_pick: usize,
    client: ClientInfo,
    attrs: Value,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let flow = &FLOWS[flow_pick % FLOWS.len()];
    let started = engine::start(
        flow,
        StartInput {
            mock: None,
            session_id: "s".into(),
            user_id: "u".into(),
            user_attributes: attrs,
            client,
            started_at_ms: 0,
        },
        &LIMITS,
    );
    let mut state = match started {
        Ok(adv) => {
            prop_assert!(!adv.events.is_empty());
            adv.state
        }
        Err(e) => {
            prop_assert!(
                is_code(e.code().as_str()),
                "bad code {:?} for {e}",
                e.code()
            );
            return Ok(());
        }
    };
    check_state(flow, &state)?;

    for op in ops {
        let result = match &op {
            Op::Back => engine::back(flow, &state),
            Op::Resume { outcome, output } => engine::resume(
                flow,
                &state,
                &state.node,
                engine::StepResult {
                    outcome: OUTCOMES[*outcome].to_string(),
                    output: output.clone(),
                },
                &LIMITS,
            ),
            Op::Submit {
                screen,
                action,
                values,
            } => {
                let screen = match screen {
                    Target::Current => state.node.clone(),
                    Target::Node(i) => flow.nodes[i % flow.nodes.len()].id.clone(),
                    Target::Random(s) => s.clone(),
                };
                let declared = actions(flow, &screen);
                let action = match action {
                    Pick::Declared(i) if !declared.is_empty() => {
                        declared[i % declared.len()].clone()
                    }
                    Pick::Declared(_) => "next".to_string(),
                    Pick::Random(s) => s.clone(),
                };
                let fields = inputs(flow, &screen);
                let mut map = Map::new();
                for (key, val) in values {
                    let component = match key {
                        Key::Input(i) if !fields.is_empty() => Some(&fields[i % fields.len()]),
                        _ => None,
                    };
                    let name = match (key, component) {
                        (_, Some(c)) => c.id().expect("inputs have ids").to_string(),
                        (Key::Random(s), None) => s.clone(),
                        (Key::Input(_), None) => "field".to_string(),
                    };
                    let value = match (val, component) {
                        (Val::Plausible(n), Some(c)) => plausible(c, *n),
                        (Val::Plausible(n), None) => json!(n),
                        (Val::Json(v), _) => v.clone(),
                    };
                    map.insert(name, value);
                }
                engine::submit(flow, &state, &screen, &action, &map, &LIMITS)
            }
            Op::Fill { action, seeds } => {
                let declared = actions(flow, &state.node);
                let action = match declared.len() {
                    0 => "next".to_string(),
                    n => declared[action % n].clone(),
                };
                let map: Map<String, Value> = inputs(flow, &state.node)
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let id = c.id().expect("inputs have ids").to_string();
                        (id, fitting(c, seeds[i % seeds.len()]))
                    })
                    .collect();
                engine::submit(flow, &state, &state.node, &action, &map, &LIMITS)
            }
        };
        let was_terminal = state.status.is_terminal();
        match result {
            Ok(adv) => {
                prop_assert!(!was_terminal, "{op:?} changed an ended session");
                prop_assert!(!adv.events.is_empty(), "{op:?} appended no event");
                prop_assert_eq!(
                    adv.tasks.len(),
                    usize::from(adv.state.status == Status::Waiting),
                    "exactly one task for a session that waits"
                );
                check_state(flow, &adv.state)?;
                state = adv.state;
            }
            Err(e) => {
                prop_assert!(
                    is_code(e.code().as_str()),
                    "bad code {:?} for {e}",
                    e.code()
                );
                if was_terminal && !matches!(op, Op::Resume { .. }) {
                    prop_assert_eq!(e.code(), "SESSION_ENDED");
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_clients_never_break_the_engine(
        flow_pick in 0usize..16,
        client in client(),
        attrs in attributes(),
        ops in prop::collection::vec(op(), 1..40),
    ) {
        run(flow_pick, client, attrs, ops)?;
    }
}

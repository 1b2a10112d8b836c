//! Fuzz targets on the stable toolchain: property tests with arbitrary
//! inputs for flow parsing and validation, rule compile and evaluation,
//! template rendering, and GraphQL variables into the engine over HTTP.
//! Each target first runs its seed corpus (`tests/fuzz-corpus/<target>/`),
//! then generated cases: a few dozen in a normal `cargo test`, as many as
//! `BATON_FUZZ_CASES` says for a long run
//! (`BATON_FUZZ_CASES=20000 cargo test --test it fuzz::`).
//!
//! What must hold: no panic; every failure is an error with a catalogue
//! code (never INTERNAL, never a 5xx over HTTP).

use std::path::{Path, PathBuf};

use baton::flow::compile::CompiledFlow;
use baton::flow::load;
use baton::flow::template::{RenderContext, Template};
use baton::rules::Rule;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

use crate::testapp::{Backend, TestApp, repo_flows};

fn config(default_cases: u32) -> Config {
    let cases = std::env::var("BATON_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default_cases);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

fn corpus(target: &str) -> Vec<(PathBuf, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", dir.display());
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect()
}

/// Arbitrary JSON, with JsonLogic operators and flagd's among the keys so
/// generated objects are often rules.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[a-z0-9._ -]{0,12}".prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    let key = prop_oneof![
        prop::sample::select(vec![
            "var",
            "if",
            "==",
            "===",
            "!=",
            "<",
            ">=",
            "and",
            "or",
            "!",
            "!!",
            "in",
            "cat",
            "substr",
            "+",
            "-",
            "*",
            "/",
            "%",
            "min",
            "max",
            "map",
            "filter",
            "reduce",
            "all",
            "some",
            "none",
            "merge",
            "missing",
            "missing_some",
            "sem_ver",
            "starts_with",
            "ends_with",
            "fractional",
            "$ref",
            "id",
            "kind",
            "next",
            "to",
            "when",
            "text",
        ])
        .prop_map(str::to_owned),
        "[a-z_]{1,8}",
    ];
    leaf.prop_recursive(5, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn check_flow_text(text: &str) {
    let path = Path::new("fuzz.yaml");
    let Ok(def) = load::parse_flow(path, text) else {
        return;
    };
    let issues = baton::flow::validate::validate(&def, "fuzz.yaml");
    if issues
        .iter()
        .all(|i| i.severity != baton::flow::validate::Severity::Error)
    {
        // A flow that validates compiles (a refusal here is a Baton defect).
        if let Err(e) = CompiledFlow::compile(def, 1, "h".into()) {
            panic!("validated flow did not compile: {e}\n{text}");
        }
    }
}

/// Replaces the leaf at `pick` (counted depth-first) with `with`.
fn mutate(v: &mut Value, pick: &mut usize, with: &Value) -> bool {
    match v {
        Value::Object(m) => m.values_mut().any(|c| mutate(c, pick, with)),
        Value::Array(a) => a.iter_mut().any(|c| mutate(c, pick, with)),
        leaf => {
            if *pick == 0 {
                *leaf = with.clone();
                return true;
            }
            *pick -= 1;
            false
        }
    }
}

#[test]
fn fuzz_flows_parse_validate_and_compile_without_panicking() {
    for (path, text) in corpus("flows") {
        eprintln!("seed {}", path.display());
        check_flow_text(&text);
    }
    let seeds: Vec<Value> = std::fs::read_dir(repo_flows())
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let def = load::load_file(&p).expect("example flow");
            serde_json::to_value(def).unwrap()
        })
        .collect();
    let mut runner = TestRunner::new(config(64));
    let strategy = (
        prop::sample::select(seeds),
        any::<usize>(),
        json_value(),
        "[ -~\n]{0,200}",
    );
    runner
        .run(&strategy, |(seed, pick, with, noise)| {
            let mut flow = seed;
            let mut pick = pick % 400;
            mutate(&mut flow, &mut pick, &with);
            check_flow_text(&serde_json::to_string(&flow).unwrap());
            check_flow_text(&noise);
            Ok(())
        })
        .unwrap();
}

fn check_rule(rule: &Value, data: &Value) {
    match Rule::compile(rule) {
        Ok(compiled) => {
            if let Err(e) = compiled.evaluate(data) {
                assert!(!e.code().as_str().is_empty());
            }
            let _ = compiled.matches(data);
        }
        Err(e) => assert!(!e.code().as_str().is_empty()),
    }
}

#[test]
fn fuzz_rules_compile_and_evaluate_without_panicking() {
    for (path, text) in corpus("rules") {
        eprintln!("seed {}", path.display());
        let case: Value = serde_json::from_str(&text).unwrap();
        check_rule(&case["rule"], &case["data"]);
    }
    let mut runner = TestRunner::new(config(256));
    runner
        .run(&(json_value(), json_value()), |(rule, data)| {
            check_rule(&rule, &data);
            Ok(())
        })
        .unwrap();
}

fn check_template(source: &str) {
    let ctx = RenderContext::new(&json!({
        "user": { "id": "u", "attributes": { "name": "Ada", "n": 3, "list": [1, 2] } },
        "input": { "s": { "f": "x" } },
        "session": { "id": "s", "started_at": "2026-12-05T09:30:00.000Z" },
    }));
    if let Ok(t) = Template::compile(source)
        && let Err(e) = t.render(&ctx)
    {
        assert!(!e.code().as_str().is_empty());
    }
}

#[test]
fn fuzz_templates_render_within_their_limits() {
    for (path, text) in corpus("templates") {
        eprintln!("seed {}", path.display());
        check_template(&text);
    }
    let pieces = prop::sample::select(vec![
        "{{ ",
        " }}",
        "{% ",
        " %}",
        "{# ",
        " #}",
        "user.attributes.name",
        "input.s.f",
        "|upper",
        "|default('x')",
        "|length",
        "for i in range(50)",
        "endfor",
        "if ",
        "endif",
        "else",
        "loop.index",
        "set x = ",
        "~",
        "*",
        "[0]",
        ".",
        "(",
        ")",
        "'",
        "\"",
        "macro m()",
        "endmacro",
        "m()",
        " ",
        "x",
        "1e9",
        "-1",
        "include 'a'",
        "raw",
        "endraw",
    ]);
    let mut runner = TestRunner::new(config(256));
    runner
        .run(&prop::collection::vec(pieces, 0..24), |parts| {
            check_template(&parts.concat());
            Ok(())
        })
        .unwrap();
}

#[test]
fn fuzz_graphql_variables_never_answer_5xx_or_internal() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt
        .block_on(TestApp::spawn(Backend::Sqlite))
        .expect("sqlite app");
    let (session, token) = rt.block_on(app.start(
        "onboarding",
        json!({ "id": "fuzzer", "attributes": { "plan": "pro" } }),
        json!({ "platform": "ios", "appVersion": "6.1" }),
    ));
    let sid = session["id"].as_str().unwrap().to_owned();
    let submit = |screen: &Value, action: &Value, values: &Value| {
        let body = json!({
            "query": "mutation($i: SubmitInput!) { submit(input: $i) { status screen { id errors { code } } } }",
            "variables": { "i": { "sessionId": sid, "screenId": screen, "action": action, "values": values } },
        });
        rt.block_on(async {
            let resp = app
                .client
                .post(format!("{}/graphql", app.base))
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            assert!(status < 500, "HTTP {status} for {body}: {text}");
            assert!(
                !text.contains("\"INTERNAL\""),
                "INTERNAL for {body}: {text}"
            );
        });
    };
    for (path, text) in corpus("variables") {
        eprintln!("seed {}", path.display());
        let case: Value = serde_json::from_str(&text).unwrap();
        submit(&case["screenId"], &case["action"], &case["values"]);
    }
    let screens = prop::sample::select(vec!["welcome", "ios_notifications", "nope", ""])
        .prop_map(Value::from);
    let mut runner = TestRunner::new(config(32));
    runner
        .run(
            &(
                prop_oneof![screens, json_value()],
                prop_oneof!["[a-z_]{0,10}".prop_map(Value::from), json_value()],
                json_value(),
            ),
            |(screen, action, values)| {
                submit(&screen, &action, &values);
                Ok(())
            },
        )
        .unwrap();
}

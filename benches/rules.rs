//! Rule evaluation throughput: a four-comparison `and`, a flagd-style
//! targeting `if` with `starts_with`/`sem_ver` + `fractional`, and the cost
//! of converting the data on every call versus preparing it once.

use baton::rules::{PreparedData, Rule};
use divan::{Bencher, black_box};
use serde_json::{Value, json};

fn main() {
    divan::main();
}

fn context() -> Value {
    json!({
        "user": {"id": "u-1842", "email": "ada@example.com", "attributes": {"age": 34, "tier": "gold", "country": "DE"}},
        "client": {"platform": "ios", "appVersion": "4.12.1", "locale": "de-DE"},
        "input": {"email": "ada@example.com", "accepted": true},
        "targetingKey": "u-1842",
        "$flagd": {"flagKey": "new-checkout"}
    })
}

/// A larger context, as a session deep into a flow would carry.
fn big_context() -> Value {
    let mut ctx = context();
    let steps: serde_json::Map<String, Value> = (0..40)
        .map(|i| {
            (
                format!("step{i}"),
                json!({"status": "ok", "items": [1, 2, 3], "note": "x".repeat(40)}),
            )
        })
        .collect();
    ctx["steps"] = Value::Object(steps);
    ctx
}

fn and_of_four() -> Rule {
    Rule::compile(&json!({"and": [
        {">=": [{"var": "user.attributes.age"}, 18]},
        {"==": [{"var": "client.platform"}, "ios"]},
        {"in": [{"var": "user.attributes.tier"}, ["gold", "platinum"]]},
        {"<": [{"var": "user.attributes.age"}, 65]}
    ]}))
    .unwrap()
}

fn flagd_targeting() -> Rule {
    Rule::compile(&json!({"if": [
        {"and": [
            {"starts_with": [{"var": "client.locale"}, "de"]},
            {"sem_ver": [{"var": "client.appVersion"}, ">=", "4.10.0"]}
        ]},
        {"fractional": [["treatment", 50], ["control", 50]]},
        "control"
    ]}))
    .unwrap()
}

/// Condition + `fractional`, the shape the throughput goal is stated for.
fn condition_fractional() -> Rule {
    Rule::compile(&json!({"if": [
        {"==": [{"var": "client.platform"}, "ios"]},
        {"fractional": [["on", 10], ["off", 90]]},
        "off"
    ]}))
    .unwrap()
}

#[divan::bench]
fn and_of_four_comparisons_prepared(b: Bencher) {
    let rule = and_of_four();
    let data = PreparedData::new(&context()).unwrap();
    assert!(rule.matches_prepared(&data).unwrap());
    b.bench_local(|| rule.matches_prepared(black_box(&data)).unwrap());
}

#[divan::bench]
fn flagd_targeting_prepared(b: Bencher) {
    let rule = flagd_targeting();
    let data = PreparedData::new(&context()).unwrap();
    b.bench_local(|| rule.evaluate_prepared(black_box(&data)).unwrap());
}

#[divan::bench]
fn condition_and_fractional_matches_prepared(b: Bencher) {
    let rule = condition_fractional();
    let data = PreparedData::new(&context()).unwrap();
    b.bench_local(|| rule.matches_prepared(black_box(&data)).unwrap());
}

#[divan::bench(args = ["small", "big"])]
fn evaluate_converting_data_each_call(b: Bencher, size: &str) {
    let rule = and_of_four();
    let data = if size == "big" {
        big_context()
    } else {
        context()
    };
    b.bench_local(|| rule.evaluate(black_box(&data)).unwrap());
}

#[divan::bench(args = ["small", "big"])]
fn evaluate_prepared_data(b: Bencher, size: &str) {
    let rule = and_of_four();
    let data = PreparedData::new(&if size == "big" {
        big_context()
    } else {
        context()
    })
    .unwrap();
    b.bench_local(|| rule.evaluate_prepared(black_box(&data)).unwrap());
}

#[divan::bench(args = ["small", "big"])]
fn prepare_data(b: Bencher, size: &str) {
    let data = if size == "big" {
        big_context()
    } else {
        context()
    };
    b.bench_local(|| PreparedData::new(black_box(&data)).unwrap());
}

#[divan::bench]
fn compile_flagd_targeting(b: Bencher) {
    b.bench_local(flagd_targeting);
}

//! The engine's hot path, without I/O: start, submit (validation + rules +
//! walking decisions), render, and submit on a session with a long
//! history (which must cost the same).
//!
//! `cargo bench --bench engine`

use std::hint::black_box;

use baton::engine::{self, ClientInfo, Limits, SessionState, StartInput};
use baton::flow::compile::CompiledFlow;
use baton::flow::model::FlowDef;
use serde_json::{Map, Value, json};

fn main() {
    divan::main();
}

fn checkout() -> CompiledFlow {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/flows/checkout.yaml"))
        .unwrap();
    let def: FlowDef = serde_saphyr::from_str(&text).unwrap();
    CompiledFlow::compile(def, 1, "bench".into()).unwrap()
}

fn start_input() -> StartInput {
    StartInput {
        mock: None,
        session_id: "0192f0c8-0000-7000-8000-000000000000".into(),
        user_id: "bench-user".into(),
        user_attributes: json!({ "product": "Lamp", "unit_price": 30, "plan": "pro" }),
        client: ClientInfo {
            platform: Some("ios".into()),
            app_version: Some("6.1.0".into()),
            locale: Some("en-GB".into()),
            capabilities: None,
        },
        started_at_ms: 1_700_000_000_000,
    }
}

fn values(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

/// A session resting on `shipping` after `history` earlier round trips
/// through the same screens (a long history: full back stack, many
/// events), and with `extra_answers` more answered screens in its context.
fn at_shipping(flow: &CompiledFlow, history: usize, extra_answers: usize) -> SessionState {
    let limits = Limits::default();
    let started = engine::start(flow, start_input(), &limits).unwrap().state;
    let mut s = engine::submit(
        flow,
        &started,
        "cart",
        "next",
        &values(json!({"quantity": 2})),
        &limits,
    )
    .unwrap()
    .state;
    for _ in 0..history {
        s = engine::back(flow, &s).unwrap().state;
        s = engine::submit(
            flow,
            &s,
            "cart",
            "next",
            &values(json!({"quantity": 2})),
            &limits,
        )
        .unwrap()
        .state;
    }
    for i in 0..extra_answers {
        s.context["input"][format!("screen_{i}")] = json!({ "answer": i, "note": "x".repeat(40) });
    }
    s
}

#[divan::bench]
fn compile_checkout(b: divan::Bencher) {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/flows/checkout.yaml"))
        .unwrap();
    let def: FlowDef = serde_saphyr::from_str(&text).unwrap();
    b.bench(|| CompiledFlow::compile(black_box(def.clone()), 1, "bench".into()).unwrap());
}

#[divan::bench]
fn start(b: divan::Bencher) {
    let flow = checkout();
    let limits = Limits::default();
    b.bench(|| engine::start(&flow, black_box(start_input()), &limits).unwrap());
}

#[divan::bench]
fn submit_cart_one_input(b: divan::Bencher) {
    let flow = checkout();
    let limits = Limits::default();
    let state = engine::start(&flow, start_input(), &limits).unwrap().state;
    let v = values(json!({"quantity": 2}));
    b.bench(|| engine::submit(&flow, black_box(&state), "cart", "next", &v, &limits).unwrap());
}

/// Four inputs validated (pattern, options, date) plus a decision rule,
/// after 0 or 1000 earlier round trips: the history's length must not
/// change the cost.
#[divan::bench(args = [0, 1000])]
fn submit_shipping_with_decision(b: divan::Bencher, history: usize) {
    let flow = checkout();
    let limits = Limits::default();
    let state = at_shipping(&flow, history, 0);
    let v = values(
        json!({"address": "Main St 1", "postcode": "12345", "speed": "standard", "deliver_after": "2030-01-02"}),
    );
    b.bench(|| {
        let a = engine::submit(&flow, black_box(&state), "shipping", "next", &v, &limits).unwrap();
        debug_assert_eq!(a.state.node, "payment");
        a
    });
}

/// The same submit with 50 more answered screens in the context: cost
/// grows with the context's size (bounded by `max_context_bytes`), which
/// is set by how many distinct screens a flow has, not by history.
#[divan::bench]
fn submit_shipping_context_with_50_more_answers(b: divan::Bencher) {
    let flow = checkout();
    let limits = Limits::default();
    let state = at_shipping(&flow, 0, 50);
    let v = values(
        json!({"address": "Main St 1", "postcode": "12345", "speed": "standard", "deliver_after": "2030-01-02"}),
    );
    b.bench(|| engine::submit(&flow, black_box(&state), "shipping", "next", &v, &limits).unwrap());
}

#[divan::bench]
fn render_shipping(b: divan::Bencher) {
    let flow = checkout();
    let state = at_shipping(&flow, 0, 0);
    b.bench(|| engine::render(&flow, black_box(&state)).unwrap());
}

/// Snapshot (de)serialization: what the service adds around the engine.
#[divan::bench]
fn snapshot_roundtrip(b: divan::Bencher) {
    let flow = checkout();
    let state = at_shipping(&flow, 0, 0);
    b.bench(|| {
        let v = serde_json::to_value(black_box(&state)).unwrap();
        serde_json::from_value::<SessionState>(v).unwrap()
    });
}

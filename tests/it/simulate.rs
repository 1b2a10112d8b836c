//! `baton simulate` from outside: made-up users walk a flow on a server,
//! the summary adds up, the funnel counts the same sessions and ends, and
//! the same seed makes the same users and choices.

use serde_json::json;

use crate::testapp::{Backend, TestApp, write_test_keys};

const SHOP: &str = r#"
id: sim_shop
start: pick
nodes:
  - id: pick
    kind: screen
    components:
      - { kind: select, id: size, label: Size, required: true, options: [{ value: s, label: S }, { value: l, label: L }] }
      - { kind: number_input, id: qty, label: Quantity, required: true, min: 1, max: 5, integer: true }
    actions: [{ id: next, next: route }]
  - id: route
    kind: decision
    next:
      - { when: { "==": [{ var: input.pick.size }, "l"] }, to: large }
      - to: pay
  - id: large
    kind: screen
    components: [{ kind: checkbox, id: ok, label: "Large runs big", required: true }]
    actions: [{ id: next, next: pay }]
  - id: pay
    kind: screen
    components: [{ kind: email_input, id: email, label: Email, required: true }]
    actions: [{ id: buy, next: done }]
  - { id: done, kind: end }
"#;

async fn simulate(app: &TestApp, seed: &str) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .args([
            "simulate",
            "sim_shop",
            "--sessions",
            "20",
            "--seed",
            seed,
            "--server",
            &app.base,
        ])
        .output()
        .await
        .expect("run baton simulate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn count(summary: &str, what: &str) -> i64 {
    summary
        .lines()
        .find(|l| l.trim_end().ends_with(what))
        .map_or(0, |l| l.split_whitespace().next().unwrap().parse().unwrap())
}

async fn spawn() -> TestApp {
    TestApp::spawn_configured(Backend::Sqlite, &[("shop.yaml", SHOP.into())], |c, dir| {
        c.api_keys = Some(write_test_keys(dir));
    })
    .await
    .expect("SQLite is always there")
}

#[tokio::test]
async fn simulated_users_show_in_the_funnel() {
    let app = spawn().await;
    let summary = simulate(&app, "7").await;
    let (completed, quit) = (count(&summary, "completed"), count(&summary, "gave up"));
    assert_eq!(completed + quit, 20, "{summary}");
    assert!(
        completed > 0 && quit > 0,
        "with 20 users some finish and some give up: {summary}"
    );
    let (_, r) = app
        .gql_key(
            "{ funnel(flowId: \"sim_shop\") { sessions nodes { node entered } } }",
            json!({}),
            Some("viewer-key"),
        )
        .await;
    let f = &r["data"]["funnel"];
    assert_eq!(f["sessions"], 20, "{r}");
    let entered = |node: &str| {
        f["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["node"] == node)
            .map_or(0, |n| n["entered"].as_i64().unwrap())
    };
    assert_eq!(entered("pick"), 20);
    assert_eq!(entered("done"), completed, "{summary} {f}");
    assert!(entered("large") > 0, "some chose L: {f}");

    // The same seed on a fresh server: the same walks.
    let again = spawn().await;
    assert_eq!(
        simulate(&again, "7").await.replace(&again.base, ""),
        summary.replace(&app.base, "")
    );
}

#[tokio::test]
async fn bad_plans_are_refused_before_anything_runs() {
    let app = spawn().await;
    for (args, want) in [
        (vec!["--sessions", "0"], "--sessions 0"),
        (vec!["--quit", "1.5"], "--quit 1.5"),
        (vec![], "FLOW_NOT_FOUND"),
    ] {
        let flow = if want == "FLOW_NOT_FOUND" {
            "nope"
        } else {
            "sim_shop"
        };
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["simulate", flow, "--server", &app.base])
            .args(&args)
            .output()
            .await
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

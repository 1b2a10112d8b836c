//! Experiments in running sessions, over HTTP against the real server on
//! both backends: sticky assignment (through weight changes and restarts),
//! exposures only when a rule or screen used the assignment, conversions at
//! goal nodes, QA forcing left out of results, and results over GraphQL
//! and `baton experiment results` for the onboarding example.

use std::path::Path;
use std::process::Command;

use baton::experiments::{ArmCounts, analyze};
use baton::store::{Store, StoreOptions};
use serde_json::{Value, json};

use crate::testapp::{Backend, TestApp, component, error_code, write_test_keys};

const BIN: &str = env!("CARGO_BIN_EXE_baton");
const SHORT: &str = "Join in 30 seconds";
const CLASSIC: &str = "Create your account";

const RESULTS: &str = r#"query($id: ID!) { experimentResults(id: $id) {
  experimentId flag control controlFound
  arms { variant isControl exposures conversions rate interval { low high }
         exposedSessions convertedSessions
         vsControl { absolute relative pValue chanceToBeatControl } }
  sampleRatio { chiSquare degreesOfFreedom pValue mismatch unexpectedArms expected { variant exposures } }
} }"#;

const FORCE: &str = r#"mutation($i: ForceVariantInput!) { forceVariant(input: $i) {
  experimentId variant userId sessionId forcedBy } }"#;
const CLEAR: &str = r#"mutation($i: ClearForcedVariantInput!) { clearForcedVariant(input: $i) }"#;

/// A flag for the probe flow, split 50/50.
const PROBE_FLAGS: &str = r#"{"flags": {"probe-flag": {
  "state": "ENABLED", "variants": {"a": "A", "b": "B"}, "defaultVariant": "a",
  "targeting": {"fractional": [["a", 50], ["b", 50]]}}}}"#;

/// Reads `probe-flag` only in a decision's third rule, which an early user
/// or a VIP never reaches (an early user's edge leads where the default
/// does, so which edge matched is not told by the target alone); shows it
/// on no screen but one end.
const PROBE_FLOW: &str = r#"
id: probe
start: a
nodes:
  - id: a
    kind: screen
    title: Plain
    components:
      - {kind: button, label: Go, action: next}
    actions:
      - {id: next, validate: false, next: route}
  - id: route
    kind: decision
    next:
      - when: {"==": [{"var": "user.attributes.early"}, true]}
        to: done
      - when: {"==": [{"var": "user.attributes.vip"}, true]}
        to: vip
      - when: {"==": [{"var": "flags.probe-flag"}, "B"]}
        to: done_b
      - to: done
  - id: vip
    kind: screen
    title: VIP
    components:
      - {kind: button, label: Finish, action: finish}
    actions:
      - {id: finish, validate: false, next: done}
  - id: done_b
    kind: end
    title: "Done with {{ flags['probe-flag'] }}"
  - id: done
    kind: end
    title: Done
"#;

/// Android users are not eligible.
const PROBE_EXPERIMENT: &str = r#"
id: probe
flag: probe-flag
control: a
eligible: {"!=": [{"var": "client.platform"}, "android"]}
goals: [{flow: probe, node: done}, {flow: probe, node: done_b}]
"#;

async fn spawn(backend: Backend) -> Option<TestApp> {
    TestApp::spawn_configured(backend, &[], |config, dir| {
        config.api_keys = Some(write_test_keys(dir));
        std::fs::write(dir.join("flows/probe.yaml"), PROBE_FLOW).unwrap();
        std::fs::write(dir.join("flags/probe.flagd.json"), PROBE_FLAGS).unwrap();
        std::fs::write(dir.join("experiments/probe.yaml"), PROBE_EXPERIMENT).unwrap();
    })
    .await
}

async fn results(app: &TestApp, id: &str) -> Value {
    let (_, r) = app
        .gql_key(RESULTS, json!({ "id": id }), Some("viewer-key"))
        .await;
    assert!(r["data"]["experimentResults"].is_object(), "{r}");
    r["data"]["experimentResults"].clone()
}

fn arm<'a>(results: &'a Value, variant: &str) -> &'a Value {
    results["arms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["variant"] == variant)
        .unwrap_or_else(|| panic!("no arm {variant} in {results}"))
}

/// The experiment events of a session: (kind, payload) in log order.
async fn experiment_events(app: &TestApp, session: &str, experiment: &str) -> Vec<(String, Value)> {
    let store = Store::connect(&app.database_url, StoreOptions::default())
        .await
        .unwrap();
    let events = store.events(session, 0, 1000).await.unwrap();
    store.close().await;
    events
        .into_iter()
        .filter(|e| e.kind.starts_with("experiment_") && e.payload["experiment"] == experiment)
        .map(|e| (e.kind, e.payload))
        .collect()
}

fn headline(session: &Value) -> &str {
    component(session, "headline")["text"].as_str().unwrap()
}

/// Walks a started onboarding session (web: welcome → profile → skip) to `done`.
async fn convert(app: &TestApp, session: &Value, token: &str) {
    let id = session["id"].as_str().unwrap();
    let s = app.submit(token, id, "welcome", "next", json!({})).await;
    assert_eq!(s["screen"]["id"], "profile", "{s}");
    let s = app.submit(token, id, "profile", "skip", json!({})).await;
    assert_eq!(s["status"], "COMPLETED", "{s}");
}

// ---------------------------------------------------------------------------

async fn onboarding_results(app: TestApp) {
    const USERS: usize = 60;
    // (exposed users, converted users, exposed sessions) per arm.
    let mut expected: std::collections::BTreeMap<&str, (u64, u64, i64)> = Default::default();
    for i in 0..USERS {
        let user = format!("user-{i}");
        let (s, token) = app
            .start(
                "onboarding",
                json!({ "id": user }),
                json!({ "platform": "web" }),
            )
            .await;
        let arm = match headline(&s) {
            SHORT => "short",
            CLASSIC => "classic",
            other => panic!("headline {other}"),
        };
        let e = expected.entry(arm).or_default();
        e.0 += 1;
        e.2 += 1;
        if i % 3 != 0 {
            convert(&app, &s, &token).await;
            e.1 += 1;
        }
        if i == 0 {
            // A second session of the same user: same arm, counted once as
            // a user, twice as sessions; and it converts.
            let (again, token) = app
                .start(
                    "onboarding",
                    json!({ "id": user }),
                    json!({ "platform": "ios" }),
                )
                .await;
            assert_eq!(headline(&again), headline(&s), "sticky across sessions");
            let id = again["id"].as_str().unwrap();
            app.submit(&token, id, "welcome", "next", json!({})).await;
            let events = experiment_events(&app, id, "onboarding-headline").await;
            assert_eq!(events.len(), 1, "one exposure per session: {events:?}");
            e.2 += 1;
        }
    }
    assert_eq!(expected.len(), 2, "both arms drawn: {expected:?}");
    // The onboarding flow reads only `signup-headline` (`flags['…']` in a
    // template): no assignment in the probe experiment, whose flag it never reads.
    let store = Store::connect(&app.database_url, StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(
        store
            .experiment_assignment("probe", "user-1")
            .await
            .unwrap(),
        None
    );
    assert!(
        store
            .experiment_assignment("onboarding-headline", "user-1")
            .await
            .unwrap()
            .is_some()
    );
    store.close().await;

    let r = results(&app, "onboarding-headline").await;
    assert_eq!(r["control"], "classic");
    assert_eq!(r["controlFound"], true);
    for (variant, (users, converted, sessions)) in &expected {
        let a = arm(&r, variant);
        assert_eq!(a["exposures"], *users, "{variant}: {r}");
        assert_eq!(a["conversions"], *converted, "{variant}: {r}");
        assert_eq!(a["exposedSessions"], *sessions, "{variant}: {r}");
        assert_eq!(a["convertedSessions"], *converted, "{variant}: {r}");
        assert_eq!(a["isControl"], *variant == "classic");
    }
    // The numbers are the statistics module's on the same counts.
    let counts: Vec<ArmCounts> = expected
        .iter()
        .map(|(v, (n, c, _))| ArmCounts::new(v, *n, *c))
        .collect();
    let weights = vec![("short".to_string(), 50.0), ("classic".to_string(), 50.0)];
    let stats = analyze("classic", &counts, Some(&weights)).unwrap();
    let short = stats.arms.iter().find(|a| a.arm == "short").unwrap();
    let vs = short.vs_control.as_ref().unwrap();
    assert_eq!(arm(&r, "short")["vsControl"]["pValue"], vs.p_value);
    assert_eq!(
        arm(&r, "short")["vsControl"]["chanceToBeatControl"],
        vs.chance_to_beat_control
    );
    assert_eq!(arm(&r, "classic")["vsControl"], Value::Null);
    let srm = &r["sampleRatio"];
    assert_eq!(srm["mismatch"], false, "{r}");
    assert_eq!(srm["degreesOfFreedom"], 1);
    assert_eq!(
        srm["pValue"],
        stats.sample_ratio.as_ref().unwrap().p_value,
        "{r}"
    );

    // `baton experiment results` counts the same from the database.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(BIN)
        .args([
            "experiment",
            "results",
            "onboarding-headline",
            "--format",
            "json",
        ])
        .arg("--database-url")
        .arg(&app.database_url)
        .arg("--experiments")
        .arg(repo.join("experiments"))
        .arg("--flags")
        .arg(repo.join("flags"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    for (variant, (users, converted, _)) in &expected {
        let a = cli["results"]["arms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["arm"] == *variant)
            .unwrap();
        assert_eq!(
            (&a["exposures"], &a["conversions"]),
            (&json!(users), &json!(converted))
        );
    }
    let human = Command::new(BIN)
        .args(["experiment", "results", "onboarding-headline"])
        .arg("--database-url")
        .arg(&app.database_url)
        .current_dir(repo)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(text.contains("classic (control)"), "{text}");
    assert!(text.contains("sample ratio: ok"), "{text}");

    // The loaded experiments, with the flag's split.
    let (_, r) = app
        .gql_key(
            "{ experiments { id flag control running arms { variant weight } goals { flowId node } } }",
            json!({}),
            Some("editor-key"),
        )
        .await;
    let list = r["data"]["experiments"]
        .as_array()
        .unwrap_or_else(|| panic!("{r}"));
    let onboarding = list
        .iter()
        .find(|e| e["id"] == "onboarding-headline")
        .unwrap();
    assert_eq!(
        *onboarding,
        json!({"id": "onboarding-headline", "flag": "signup-headline", "control": "classic",
               "running": true,
               "arms": [{"variant": "short", "weight": 50.0}, {"variant": "classic", "weight": 50.0}],
               "goals": [{"flowId": "onboarding", "node": "done"}]})
    );
    let (_, r) = app
        .gql_key("{ experiments { id } }", json!({}), Some("reviewer-key"))
        .await;
    assert_eq!(error_code(&r), "FORBIDDEN_ROLE");

    // Results need READ_RESULTS.
    let (_, r) = app
        .gql_key(RESULTS, json!({"id": "onboarding-headline"}), None)
        .await;
    assert_eq!(error_code(&r), "API_KEY_REQUIRED");
    let (_, r) = app
        .gql_key(
            RESULTS,
            json!({"id": "onboarding-headline"}),
            Some("reviewer-key"),
        )
        .await;
    assert_eq!(error_code(&r), "FORBIDDEN_ROLE");
    let (_, r) = app
        .gql_key(RESULTS, json!({"id": "nope"}), Some("viewer-key"))
        .await;
    assert_eq!(error_code(&r), "EXPERIMENT_NOT_FOUND");
    let out = Command::new(BIN)
        .args([
            "experiment",
            "results",
            "nope",
            "--database-url",
            &app.database_url,
        ])
        .current_dir(repo)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("EXPERIMENT_NOT_FOUND"));
}

async fn sticky_through_weight_changes_and_restarts(app: TestApp) {
    let (s, _) = app
        .start("onboarding", json!({ "id": "sticky-1" }), json!({}))
        .await;
    let first = headline(&s).to_owned();
    let (mine, other) = if first == SHORT {
        ("short", "classic")
    } else {
        ("classic", "short")
    };
    // Everyone to the other arm from now on, and a restart.
    let flag_file = app
        .flows
        .with_file_name("flags")
        .join("onboarding.flagd.json");
    let text = std::fs::read_to_string(&flag_file).unwrap();
    let moved = text.replace(
        r#"[["short", 50], ["classic", 50]]"#,
        &format!(r#"[["{other}", 100], ["{mine}", 0]]"#),
    );
    assert_ne!(text, moved);
    std::fs::write(&flag_file, moved).unwrap();
    // The first server keeps running (and keeps the test's files alive).
    let restarted = app.restart().await;
    let (again, _) = restarted
        .start("onboarding", json!({ "id": "sticky-1" }), json!({}))
        .await;
    assert_eq!(headline(&again), first, "an assigned user never moves");
    let (fresh, _) = restarted
        .start("onboarding", json!({ "id": "fresh-1" }), json!({}))
        .await;
    assert_ne!(headline(&fresh), first, "a new user gets the new weights");
    let store = Store::connect(&restarted.database_url, StoreOptions::default())
        .await
        .unwrap();
    assert_eq!(
        store
            .experiment_assignment("onboarding-headline", "sticky-1")
            .await
            .unwrap()
            .as_deref(),
        Some(mine)
    );
    store.close().await;
}

async fn exposure_only_when_used(app: TestApp) {
    // A VIP never reaches the rule that reads the flag: no exposure, and
    // reaching the goal is no conversion.
    let (s, t) = app
        .start(
            "probe",
            json!({ "id": "vip-1", "attributes": { "vip": true } }),
            json!({}),
        )
        .await;
    let id = s["id"].as_str().unwrap().to_owned();
    assert!(experiment_events(&app, &id, "probe").await.is_empty());
    let s = app.submit(&t, &id, "a", "next", json!({})).await;
    assert_eq!(s["screen"]["id"], "vip");
    let s = app.submit(&t, &id, "vip", "finish", json!({})).await;
    assert_eq!(s["status"], "COMPLETED");
    assert!(experiment_events(&app, &id, "probe").await.is_empty());
    let (s, t) = app
        .start(
            "probe",
            json!({ "id": "early-1", "attributes": { "early": true } }),
            json!({}),
        )
        .await;
    let id = s["id"].as_str().unwrap().to_owned();
    let s = app.submit(&t, &id, "a", "next", json!({})).await;
    assert_eq!(s["screen"]["title"], "Done");
    assert!(experiment_events(&app, &id, "probe").await.is_empty());

    // Anyone else: the start shows no flag (no exposure yet); the decision
    // evaluates the flag's rule (exposure), then the goal (conversion).
    let mut arms = Vec::new();
    for user in ["p-1", "p-2", "p-3", "p-4"] {
        let (s, t) = app.start("probe", json!({ "id": user }), json!({})).await;
        let id = s["id"].as_str().unwrap().to_owned();
        assert!(
            experiment_events(&app, &id, "probe").await.is_empty(),
            "{user}"
        );
        let s = app.submit(&t, &id, "a", "next", json!({})).await;
        assert_eq!(s["status"], "COMPLETED");
        let events = experiment_events(&app, &id, "probe").await;
        let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            kinds,
            ["experiment_exposed", "experiment_converted"],
            "{user}"
        );
        let (_, exposed) = &events[0];
        assert_eq!(exposed["user"], user);
        assert_eq!(exposed["forced"], false);
        assert_eq!(exposed["node"], "route");
        let variant = exposed["variant"].as_str().unwrap().to_owned();
        let end = if variant == "b" {
            "Done with B"
        } else {
            "Done"
        };
        assert_eq!(s["screen"]["title"], end, "{user}: {s}");
        arms.push(variant);
    }
    // Not eligible (android): control, and never counted.
    let (s, t) = app
        .start(
            "probe",
            json!({ "id": "droid-1" }),
            json!({ "platform": "android" }),
        )
        .await;
    let id = s["id"].as_str().unwrap().to_owned();
    let s = app.submit(&t, &id, "a", "next", json!({})).await;
    assert_eq!(s["screen"]["title"], "Done", "control for the ineligible");
    assert!(experiment_events(&app, &id, "probe").await.is_empty());

    let r = results(&app, "probe").await;
    let total: i64 = r["arms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["exposures"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 4, "{r}");
    for variant in ["a", "b"] {
        let n = arms.iter().filter(|v| *v == variant).count() as i64;
        assert_eq!(arm(&r, variant)["exposures"], n, "{r}");
        assert_eq!(arm(&r, variant)["conversions"], n, "{r}");
    }
}

async fn forcing_is_left_out_of_results(app: TestApp) {
    let force = |input: Value, key: &'static str| {
        let app = &app;
        async move { app.gql_key(FORCE, json!({ "i": input }), Some(key)).await.1 }
    };
    let clear = |input: Value| {
        let app = &app;
        async move {
            app.gql_key(CLEAR, json!({ "i": input }), Some("editor-key"))
                .await
                .1
        }
    };
    let exp = "onboarding-headline";

    // Who may force, and what is checked.
    let r = force(
        json!({"experimentId": exp, "variant": "short", "userId": "qa-1"}),
        "viewer-key",
    )
    .await;
    assert_eq!(error_code(&r), "FORBIDDEN_ROLE");
    let (_, r) = app
        .gql_key(
            FORCE,
            json!({"i": {"experimentId": exp, "variant": "short", "userId": "qa-1"}}),
            None,
        )
        .await;
    assert_eq!(error_code(&r), "API_KEY_REQUIRED");
    let r = force(
        json!({"experimentId": "nope", "variant": "short", "userId": "qa-1"}),
        "editor-key",
    )
    .await;
    assert_eq!(error_code(&r), "EXPERIMENT_NOT_FOUND");
    let r = force(
        json!({"experimentId": exp, "variant": "medium", "userId": "qa-1"}),
        "editor-key",
    )
    .await;
    assert_eq!(error_code(&r), "EXPERIMENT_VARIANT_UNKNOWN");
    assert!(
        r["errors"][0]["extensions"]["hint"]
            .as_str()
            .unwrap()
            .contains("short")
    );
    let r = force(
        json!({"experimentId": exp, "variant": "short"}),
        "editor-key",
    )
    .await;
    assert_eq!(error_code(&r), "FORCE_TARGET_INVALID");
    let r = force(
        json!({"experimentId": exp, "variant": "short", "userId": "a", "sessionId": "b"}),
        "editor-key",
    )
    .await;
    assert_eq!(error_code(&r), "FORCE_TARGET_INVALID");
    let long = "u".repeat(201);
    let r = force(
        json!({"experimentId": exp, "variant": "short", "userId": long}),
        "editor-key",
    )
    .await;
    assert_eq!(error_code(&r), "FORCE_TARGET_INVALID");
    let r = force(
        json!({"experimentId": exp, "variant": "short", "sessionId": "nope"}),
        "editor-key",
    )
    .await;
    assert_eq!(error_code(&r), "SESSION_NOT_FOUND");

    // A user: both arms on demand, whatever the split says.
    for variant in ["short", "classic"] {
        let r = force(
            json!({"experimentId": exp, "variant": variant, "userId": "qa-1"}),
            "editor-key",
        )
        .await;
        assert_eq!(
            r["data"]["forceVariant"],
            json!({"experimentId": exp, "variant": variant, "userId": "qa-1", "sessionId": null, "forcedBy": "editor-1"})
        );
        let (s, t) = app
            .start("onboarding", json!({ "id": "qa-1" }), json!({}))
            .await;
        let expected = if variant == "short" { SHORT } else { CLASSIC };
        assert_eq!(headline(&s), expected);
        let id = s["id"].as_str().unwrap();
        convert(&app, &s, &t).await;
        let events = experiment_events(&app, id, exp).await;
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(
            events.iter().all(|(_, p)| p["forced"] == true),
            "{events:?}"
        );
    }
    // A running session: its screen shows the forced arm at once.
    let (s, t) = app
        .start("onboarding", json!({ "id": "qa-2" }), json!({}))
        .await;
    let id = s["id"].as_str().unwrap().to_owned();
    let (to, text) = if headline(&s) == SHORT {
        ("classic", CLASSIC)
    } else {
        ("short", SHORT)
    };
    let r = force(
        json!({"experimentId": exp, "variant": to, "sessionId": id}),
        "publisher-key",
    )
    .await;
    assert_eq!(r["data"]["forceVariant"]["forcedBy"], "publisher-1", "{r}");
    let now = app.session(Some(&t), &id).await;
    assert_eq!(headline(&now["data"]["session"]), text, "{now}");
    // Clearing: the session is assigned again but stays uncounted.
    let r = clear(json!({"experimentId": exp, "sessionId": id})).await;
    assert_eq!(r["data"]["clearForcedVariant"], true, "{r}");
    let r = clear(json!({"experimentId": exp, "sessionId": id})).await;
    assert_eq!(r["data"]["clearForcedVariant"], false, "{r}");
    convert(&app, &s, &t).await;
    let kinds: Vec<String> = experiment_events(&app, &id, exp)
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    // Assigned again after the clear, the session is not exposed again by
    // screens that do not show the headline, so reaching `done` is no
    // conversion; it would not count anyway.
    assert_eq!(
        kinds,
        [
            "experiment_exposed",
            "experiment_forced",
            "experiment_unforced"
        ]
    );
    // An ended session cannot be forced.
    let r = force(
        json!({"experimentId": exp, "variant": "short", "sessionId": id}),
        "editor-key",
    )
    .await;
    assert_eq!(error_code(&r), "SESSION_ENDED");

    // Nothing of that counts: no exposures at all yet.
    let r = results(&app, exp).await;
    for a in r["arms"].as_array().unwrap() {
        assert_eq!(a["exposures"], 0, "{r}");
        assert_eq!(a["exposedSessions"], 0, "{r}");
    }
    assert_eq!(r["sampleRatio"], Value::Null);

    // Cleared for the user: qa-1 now gets (and is counted in) their own arm.
    let r = clear(json!({"experimentId": exp, "userId": "qa-1"})).await;
    assert_eq!(r["data"]["clearForcedVariant"], true, "{r}");
    let r = clear(json!({"experimentId": exp, "userId": "qa-1"})).await;
    assert_eq!(r["data"]["clearForcedVariant"], false, "{r}");
    let (s, _) = app
        .start("onboarding", json!({ "id": "qa-1" }), json!({}))
        .await;
    let own = if headline(&s) == SHORT {
        "short"
    } else {
        "classic"
    };
    let r = results(&app, exp).await;
    assert_eq!(arm(&r, own)["exposures"], 1, "{r}");
    assert_eq!(arm(&r, own)["conversions"], 0, "{r}");
}

/// Like `both_backends!`, on the server [`spawn`] configures.
macro_rules! on_both {
    ($($name:ident => $body:ident;)*) => {
        mod sqlite {
            $( #[tokio::test] async fn $name() {
                let app = super::spawn(crate::testapp::Backend::Sqlite).await.expect("sqlite app");
                super::$body(app).await;
            } )*
        }
        mod postgres {
            $( #[tokio::test] async fn $name() {
                let Some(app) = super::spawn(crate::testapp::Backend::Postgres).await else { return };
                super::$body(app).await;
            } )*
        }
    };
}

on_both! {
    onboarding_experiment_results => onboarding_results;
    assignment_is_sticky => sticky_through_weight_changes_and_restarts;
    exposure_is_recorded_only_when_used => exposure_only_when_used;
    forced_sessions_do_not_count => forcing_is_left_out_of_results;
}

#[tokio::test]
async fn a_broken_experiment_stops_the_start_with_its_code() {
    let dir = tempfile::tempdir().unwrap();
    let experiments = dir.path().join("experiments");
    std::fs::create_dir(&experiments).unwrap();
    std::fs::write(
        experiments.join("bad.yaml"),
        "id: bad\nflag: no-such-flag\ncontrol: a\ngoals: [{flow: onboarding, node: done}]\n",
    )
    .unwrap();
    let mut config = baton::config::ServeConfig::for_database(
        format!("sqlite://{}", dir.path().join("b.db").display()),
        crate::testapp::repo_flows(),
    );
    config.experiments = experiments;
    let err = match baton::app::Application::build(config).await {
        Ok(_) => panic!("a broken experiment was accepted"),
        Err(err) => format!("{err:#}"),
    };
    assert!(err.contains("EXPERIMENT_FLAG_UNKNOWN"), "{err}");
    assert!(err.contains("bad.yaml"), "{err}");
}

//! A replayed submit answers exactly as the first time, whatever the first
//! submit led to; a submit that parks on a person or an event answers at
//! once; mock scenarios are checked; a session's `outcome` shows how it ended.

use std::time::Duration;

use serde_json::{Value, json};

use crate::testapp::{Backend, TestApp};

/// A screen that validates, a step chain, an approval, two ends.
const FLOW: &str = r#"
id: replays
start: form
nodes:
  - id: form
    kind: screen
    components:
      - { id: name, kind: text_input, label: Name, required: true }
      - { id: route, kind: select, label: Route, options: [{value: end, label: End}, {value: steps, label: Steps}, {value: person, label: Person}, {value: quit, label: Quit}] }
    actions:
      - id: send
        validate: true
        next:
          - { when: { "==": [{ var: input.form.route }, "steps"] }, to: lookup }
          - { when: { "==": [{ var: input.form.route }, "person"] }, to: review }
          - { when: { "==": [{ var: input.form.route }, "quit"] }, to: gave_up }
          - { to: done }
      - id: later
        validate: false
        next: other
  - id: other
    kind: screen
    components: [{ id: t, kind: text, text: Other }]
    actions: [{ id: back_to_form, next: form }]
  - id: lookup
    kind: http
    method: GET
    url: "http://127.0.0.1:9/lookup"
    next: done
    mock: { body: { ok: true }, latency_ms: 50, scenarios: { slow: { latency_ms: 80 } } }
  - id: review
    kind: approval
    role: underwriter
    title: Review {{ input.form.name }}
    outcomes: { approved: done, declined: gave_up }
  - id: done
    kind: end
    outcome: completed
    title: Done
  - id: gave_up
    kind: end
    outcome: abandoned
    title: Bye
"#;

async fn app(backend: Backend, mock: bool, budget_ms: u64) -> Option<TestApp> {
    TestApp::spawn_configured(backend, &[("replays.yaml", FLOW.to_owned())], |c, _| {
        c.mock = mock;
        c.step_budget_ms = budget_ms;
    })
    .await
}

/// Submits twice with one key; asserts the answers are the same JSON and
/// returns the first.
async fn submit_twice(
    app: &TestApp,
    token: &str,
    sid: &str,
    screen: &str,
    action: &str,
    values: Value,
    key: &str,
) -> Value {
    let first = app
        .submit_raw(token, sid, screen, action, values.clone(), Some(key))
        .await;
    let again = app
        .submit_raw(token, sid, screen, action, values, Some(key))
        .await;
    assert_eq!(again, first, "the replay answered differently");
    first
}

async fn replay_of_the_submit_that_ended_the_session(backend: Backend) {
    let Some(app) = app(backend, false, 2000).await else {
        return;
    };
    let (s, token) = app.start("replays", json!({ "id": "u1" }), json!({})).await;
    let sid = s["id"].as_str().unwrap();
    let first = submit_twice(
        &app,
        &token,
        sid,
        "form",
        "send",
        json!({ "name": "Ada", "route": "end" }),
        "k-end",
    )
    .await;
    assert_eq!(first["data"]["submit"]["status"], "COMPLETED", "{first}");
    assert_eq!(first["data"]["submit"]["outcome"], "COMPLETED", "{first}");
}

async fn replay_after_steps_finished_within_the_budget(backend: Backend) {
    let Some(app) = app(backend, true, 5000).await else {
        return;
    };
    let (s, token) = app.start("replays", json!({ "id": "u2" }), json!({})).await;
    let sid = s["id"].as_str().unwrap();
    let first = submit_twice(
        &app,
        &token,
        sid,
        "form",
        "send",
        json!({ "name": "Ada", "route": "steps" }),
        "k-steps",
    )
    .await;
    assert_eq!(first["data"]["submit"]["status"], "COMPLETED", "{first}");
    assert_eq!(first["data"]["submit"]["screen"]["id"], "done", "{first}");
}

async fn replay_of_a_validation_error(backend: Backend) {
    let Some(app) = app(backend, false, 2000).await else {
        return;
    };
    let (s, token) = app.start("replays", json!({ "id": "u3" }), json!({})).await;
    let sid = s["id"].as_str().unwrap();
    let first = submit_twice(
        &app,
        &token,
        sid,
        "form",
        "send",
        json!({ "route": "end" }),
        "k-invalid",
    )
    .await;
    assert_eq!(
        first["data"]["submit"]["screen"]["errors"][0]["code"], "REQUIRED",
        "{first}"
    );
}

async fn replay_of_a_stale_screen_after_the_session_moved_on(backend: Backend) {
    let Some(app) = app(backend, false, 2000).await else {
        return;
    };
    let (s, token) = app.start("replays", json!({ "id": "u4" }), json!({})).await;
    let sid = s["id"].as_str().unwrap();
    app.submit(&token, sid, "form", "later", json!({})).await;
    // `form` is not current any more: the answer is `other` with STALE_SCREEN.
    let stale = app
        .submit_raw(
            &token,
            sid,
            "form",
            "send",
            json!({ "name": "Ada", "route": "end" }),
            Some("k-stale"),
        )
        .await;
    assert_eq!(stale["data"]["submit"]["screen"]["id"], "other", "{stale}");
    assert_eq!(
        stale["data"]["submit"]["screen"]["errors"][0]["code"], "STALE_SCREEN",
        "{stale}"
    );
    // The session moves on; the replay still answers what the client got.
    app.submit(&token, sid, "other", "back_to_form", json!({}))
        .await;
    let replay = app
        .submit_raw(
            &token,
            sid,
            "form",
            "send",
            json!({ "name": "Ada", "route": "end" }),
            Some("k-stale"),
        )
        .await;
    assert_eq!(replay, stale);
    // And the key was not applied: the session is still on the form.
    let now = app.session(Some(&token), sid).await;
    assert_eq!(now["data"]["session"]["screen"]["id"], "form", "{now}");
}

/// `later` on `form` (on to `other`) under `key`.
async fn submit_later(app: &TestApp, token: &str, sid: &str, key: &str) -> Value {
    app.submit_raw(token, sid, "form", "later", json!({}), Some(key))
        .await
}

/// `back_to_form` on `other` (back to `form`) under `key`.
async fn submit_back(app: &TestApp, token: &str, sid: &str, key: &str) -> Value {
    app.submit_raw(token, sid, "other", "back_to_form", json!({}), Some(key))
        .await
}

/// A session of user `user` sent on to `other` under `k-later-1` and back
/// to `form` under `k-back-1`: its id, token, and the first answer.
async fn later_then_back(app: &TestApp, user: &str) -> (String, String, Value) {
    let (s, token) = app.start("replays", json!({ "id": user }), json!({})).await;
    let sid = s["id"].as_str().unwrap().to_owned();
    let first = submit_later(app, &token, &sid, "k-later-1").await;
    assert_eq!(first["data"]["submit"]["screen"]["id"], "other", "{first}");
    submit_back(app, &token, &sid, "k-back-1").await;
    (sid, token, first)
}

/// A retry of an older submit, on a screen the session has come back to,
/// answers as the first time without attempting the write again.
async fn replay_of_an_older_key_on_a_screen_come_back_to(backend: Backend) {
    let Some(app) = app(backend, false, 2000).await else {
        return;
    };
    let (sid, token, first) = later_then_back(&app, "u6").await;
    let sid = sid.as_str();
    let later = |key| submit_later(&app, &token, sid, key);
    let back = |key| submit_back(&app, &token, sid, key);
    later("k-later-2").await;
    let on_form = back("k-back-2").await;
    assert_eq!(
        on_form["data"]["submit"]["screen"]["id"], "form",
        "{on_form}"
    );

    // A read of the session in between (it reads the store) must not make
    // the server forget which keys it applied.
    let now = app.session(Some(&token), sid).await;
    assert_eq!(now["data"]["session"]["screen"]["id"], "form", "{now}");
    let writes = app.baton.store().group_commit_stats().received;
    assert_eq!(back("k-back-2").await, on_form);
    // `form` is current again, so the engine would take `later`: the key
    // must stop it first.
    let replay = later("k-later-1").await;
    assert_eq!(replay, first);
    assert_eq!(
        app.baton.store().group_commit_stats().received,
        writes,
        "the replay attempted a write"
    );
    let now = app.session(Some(&token), sid).await;
    assert_eq!(now["data"]["session"]["screen"]["id"], "form", "{now}");

    // The same key for another submit is still refused.
    let reused = app
        .submit_raw(
            &token,
            sid,
            "form",
            "send",
            json!({ "name": "Ada", "route": "end" }),
            Some("k-later-1"),
        )
        .await;
    assert_eq!(
        crate::testapp::error_code(&reused),
        "IDEMPOTENCY_KEY_REUSED",
        "{reused}"
    );
}

/// The last few answers are kept with the session's snapshot: a retry of
/// the submit before last is answered from memory, with neither a read
/// nor a write. With the stored records gone behind the server's back,
/// only the kept answer can stop the engine from taking `later` again.
async fn a_recent_older_key_answers_from_memory(backend: Backend) {
    let Some(app) = app(backend, false, 2000).await else {
        return;
    };
    let (sid, token, first) = later_then_back(&app, "u8").await;
    app.execute("DELETE FROM idempotency").await;
    let writes = app.baton.store().group_commit_stats().received;
    assert_eq!(submit_later(&app, &token, &sid, "k-later-1").await, first);
    assert_eq!(
        app.baton.store().group_commit_stats().received,
        writes,
        "the replay attempted a write"
    );
    let now = app.session(Some(&token), &sid).await;
    assert_eq!(now["data"]["session"]["screen"]["id"], "form", "{now}");
}

/// With `--session-cache 0` nothing is kept between requests: a retry of
/// an older key takes the store's path (its write is refused on the key,
/// then the record answers), and still answers as the first time.
async fn without_a_session_cache_an_older_key_still_answers_from_its_record(backend: Backend) {
    let Some(app) =
        TestApp::spawn_configured(backend, &[("replays.yaml", FLOW.to_owned())], |c, _| {
            c.session_cache = 0;
        })
        .await
    else {
        return;
    };
    let (sid, token, first) = later_then_back(&app, "u7").await;
    let later = |key| submit_later(&app, &token, &sid, key);
    let writes = app.baton.store().group_commit_stats().received;
    assert_eq!(later("k-later-1").await, first);
    // Nothing cached, so nothing told the server the key was applied.
    assert_eq!(
        app.baton.store().group_commit_stats().received,
        writes + 1,
        "with no session cache the replay takes the store's path"
    );
    let now = app.session(Some(&token), &sid).await;
    assert_eq!(now["data"]["session"]["screen"]["id"], "form", "{now}");
}

async fn replay_of_a_wait(backend: Backend) {
    let Some(app) = app(backend, false, 60_000).await else {
        return;
    };
    let (s, token) = app.start("replays", json!({ "id": "u5" }), json!({})).await;
    let sid = s["id"].as_str().unwrap();
    // Held for the whole 60 s budget before the fix: the guard fails the test.
    let first = tokio::time::timeout(
        Duration::from_secs(30),
        submit_twice(
            &app,
            &token,
            sid,
            "form",
            "send",
            json!({ "name": "Ada", "route": "person" }),
            "k-wait",
        ),
    )
    .await
    .expect("a submit that parks on an approval answers at once, not after the budget");
    assert_eq!(first["data"]["submit"]["status"], "WAITING", "{first}");
    assert!(first["data"]["submit"]["outcome"].is_null(), "{first}");
}

async fn unknown_mock_scenarios_are_refused(backend: Backend) {
    let Some(app) = app(backend, true, 2000).await else {
        return;
    };
    let q = "mutation($i: StartFlowInput!) { startFlow(input: $i) { id status } }";
    let r = app
        .gql(q, json!({ "i": { "flowId": "replays", "user": { "id": "u6" }, "mock": { "scenario": "slwo" } } }), None)
        .await;
    assert_eq!(
        crate::testapp::error_code(&r),
        "UNKNOWN_MOCK_SCENARIO",
        "{r}"
    );
    let hint = r["errors"][0]["extensions"]["hint"].as_str().unwrap();
    assert!(hint.contains("default") && hint.contains("slow"), "{hint}");
    let ok = app
        .gql(q, json!({ "i": { "flowId": "replays", "user": { "id": "u6" }, "mock": { "scenario": "slow" } } }), None)
        .await;
    assert_eq!(ok["data"]["startFlow"]["status"], "ACTIVE", "{ok}");
}

async fn the_outcome_tells_an_abandoned_session_from_a_completed_one(backend: Backend) {
    let Some(app) = app(backend, false, 2000).await else {
        return;
    };
    let (s, token) = app.start("replays", json!({ "id": "u7" }), json!({})).await;
    assert!(s["outcome"].is_null(), "{s}");
    let sid = s["id"].as_str().unwrap();
    let end = app
        .submit(
            &token,
            sid,
            "form",
            "send",
            json!({ "name": "Ada", "route": "quit" }),
        )
        .await;
    assert_eq!(end["status"], "COMPLETED", "{end}");
    assert_eq!(end["outcome"], "ABANDONED", "{end}");
    let read = app.session(Some(&token), sid).await;
    assert_eq!(read["data"]["session"]["outcome"], "ABANDONED", "{read}");
}

macro_rules! replay_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test] async fn $name() { super::$name(crate::testapp::Backend::Sqlite).await } )*
        }
        mod postgres {
            $( #[tokio::test] async fn $name() { super::$name(crate::testapp::Backend::Postgres).await } )*
        }
    };
}

replay_tests!(
    replay_of_the_submit_that_ended_the_session,
    replay_after_steps_finished_within_the_budget,
    replay_of_a_validation_error,
    replay_of_a_stale_screen_after_the_session_moved_on,
    replay_of_an_older_key_on_a_screen_come_back_to,
    a_recent_older_key_answers_from_memory,
    without_a_session_cache_an_older_key_still_answers_from_its_record,
    replay_of_a_wait,
    unknown_mock_scenarios_are_refused,
    the_outcome_tells_an_abandoned_session_from_a_completed_one,
);

//! The release process from outside, over GraphQL, on both stores: import
//! the flows directory, save a draft (a broken one first), diff it, publish
//! it to 10% and watch new sessions split by user bucket, go to 100%,
//! restart, roll back, and read all of it in the audit log; each refusal
//! with its own code.

use serde_json::{Value, json};

use crate::testapp::{Backend, TestApp, error_code, write_test_keys};

const TOUR_V1: &str = r#"
id: tour
title: Product tour
start: hello
nodes:
  - id: hello
    kind: screen
    title: Hello
    components: [{ kind: text, text: "Welcome aboard" }]
    actions: [{ id: next, next: done }]
  - { id: done, kind: end, title: Bye }
"#;

const TOUR_V2: &str = r#"
id: tour
title: Product tour
start: hello
nodes:
  - id: hello
    kind: screen
    title: Hello again
    components: [{ kind: text, text: "Welcome aboard" }]
    actions: [{ id: next, next: tips }]
  - id: tips
    kind: screen
    title: Tips
    components: [{ kind: text, text: "Swipe left" }]
    actions: [{ id: next, next: done }]
  - { id: done, kind: end, title: Bye }
"#;

/// Two authoring mistakes at once: a rule written as a string, and a
/// misspelt field.
const TOUR_BROKEN: &str = r#"
id: tour
start: hello
nodes:
  - id: hello
    kind: screen
    titel: Hello
    actions:
      - id: next
        next:
          - { when: "user.id == 'x'", to: done }
          - to: done
  - { id: done, kind: end }
"#;

async fn app(backend: Backend, review: bool) -> Option<TestApp> {
    TestApp::spawn_configured(backend, &[("tour.yaml", TOUR_V1.into())], |c, dir| {
        c.api_keys = Some(write_test_keys(dir));
        c.require_review = review;
    })
    .await
}

/// An admin call that must succeed; returns `data`.
async fn ok(app: &TestApp, key: &str, query: &str, variables: Value) -> Value {
    let (_, r) = app.gql_key(query, variables, Some(key)).await;
    assert!(r.get("errors").is_none(), "{query}: {r}");
    r["data"].clone()
}

/// An admin call that must fail; returns its error code.
async fn refused(app: &TestApp, key: &str, query: &str, variables: Value) -> String {
    let (_, r) = app.gql_key(query, variables, Some(key)).await;
    assert!(r["data"].is_null() || r.get("errors").is_some(), "{r}");
    error_code(&r).to_string()
}

const SAVE: &str = "mutation($i: SaveDraftInput!) { saveDraft(input: $i) { ok created \
    version { number status author message servingPercent } \
    issues { severity code path line column hint } } }";
const PUBLISH: &str = "mutation($i: PublishFlowInput!) { publishFlow(input: $i) { \
    number status servingPercent publishedBy pendingReview { requestedBy rolloutPercent } } }";
const ROLLOUT: &str = "mutation($i: SetRolloutInput!) { setRollout(input: $i) { \
    liveVersion rollout { version percent } } }";
const ROLLBACK: &str = "mutation($i: RollbackFlowInput!) { rollbackFlow(input: $i) { \
    liveVersion rollout { version percent } } }";
const VERSIONS: &str =
    "query($f: ID!) { flowVersions(flowId: $f) { number status servingPercent } }";

async fn statuses(app: &TestApp) -> Vec<(i64, String, i64)> {
    let d = ok(app, "viewer-key", VERSIONS, json!({ "f": "tour" })).await;
    d["flowVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["number"].as_i64().unwrap(),
                v["status"].as_str().unwrap().to_string(),
                v["servingPercent"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// The version each of `users` starts on.
async fn versions_started(app: &TestApp, users: &[String]) -> Vec<i64> {
    let mut out = Vec::new();
    for user in users {
        let (s, _) = app.start("tour", json!({ "id": user }), json!({})).await;
        out.push(s["flowVersion"].as_i64().unwrap());
    }
    out
}

async fn whole_release(backend: Backend) {
    let Some(app) = app(backend, false).await else {
        return;
    };
    // The flows directory was imported: every file is version 1, live.
    let d = ok(
        &app,
        "viewer-key",
        "{ flows { id title liveVersion rollout { version } openDraft } }",
        json!({}),
    )
    .await;
    let ids: Vec<&str> = d["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "checkout",
            "contact",
            "loan",
            "onboarding",
            "support",
            "tour"
        ],
        "{d}"
    );
    assert_eq!(
        d["flows"][5],
        json!({ "id": "tour", "title": "Product tour", "liveVersion": 1, "rollout": null, "openDraft": null })
    );

    // A broken draft: every issue as data, with line and column; nothing saved.
    let d = ok(
        &app,
        "editor-key",
        SAVE,
        json!({ "i": { "flowId": "tour", "source": TOUR_BROKEN } }),
    )
    .await;
    let r = &d["saveDraft"];
    assert_eq!(r["ok"], false, "{r}");
    assert!(r["version"].is_null());
    let codes: Vec<&str> = r["issues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"NOT_A_RULE"), "{r}");
    assert!(codes.contains(&"FLOW_STRUCTURE"), "{r}");
    let rule = r["issues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["code"] == "NOT_A_RULE")
        .unwrap();
    assert_eq!(rule["line"], 11, "{rule}");
    assert!(rule["hint"].is_string());
    assert_eq!(statuses(&app).await, [(1, "PUBLISHED".into(), 100)]);

    // A draft saved under another flow's id is refused.
    let code = refused(
        &app,
        "editor-key",
        SAVE,
        json!({ "i": { "flowId": "checkout", "source": TOUR_V2 } }),
    )
    .await;
    assert_eq!(code, "FLOW_ID_MISMATCH");

    // The real draft; saving it again finds the same version.
    let i = json!({ "i": { "flowId": "tour", "source": TOUR_V2, "message": "a tips screen" } });
    let d = ok(&app, "editor-key", SAVE, i.clone()).await;
    assert_eq!(
        d["saveDraft"]["version"],
        json!({ "number": 2, "status": "DRAFT", "author": "editor-1", "message": "a tips screen", "servingPercent": 0 })
    );
    assert_eq!(d["saveDraft"]["created"], true);
    let d = ok(&app, "editor-key", SAVE, i).await;
    assert_eq!(d["saveDraft"]["created"], false);
    assert_eq!(d["saveDraft"]["version"]["number"], 2);
    let d = ok(&app, "viewer-key", "{ flows { id openDraft } }", json!({})).await;
    assert_eq!(d["flows"][5]["openDraft"], 2, "{d}");

    // Its diff names the new node and the changed title.
    let d = ok(
        &app,
        "viewer-key",
        "{ flowDiff(flowId: \"tour\", from: 1, to: 2) { changes { kind subject node path } text } }",
        json!({}),
    )
    .await;
    let changes = d["flowDiff"]["changes"].as_array().unwrap();
    assert!(
        changes.iter().any(|c| c["kind"] == "ADDED"
            && c["subject"] == "NODE"
            && c["path"].as_str().unwrap().contains("tips")),
        "{d}"
    );
    assert!(
        changes
            .iter()
            .any(|c| c["kind"] == "CHANGED" && c["node"] == "hello"),
        "{d}"
    );
    assert!(d["flowDiff"]["text"].as_str().unwrap().contains("tips"));
    let code = refused(
        &app,
        "viewer-key",
        "{ flowDiff(flowId: \"tour\", from: 1, to: 9) { text } }",
        json!({}),
    )
    .await;
    assert_eq!(code, "UNKNOWN_FLOW_VERSION");

    // Editors save; only publishers publish.
    let publish = |version: i64, percent: Option<i64>| json!({ "i": { "flowId": "tour", "version": version, "message": "ship it", "rolloutPercent": percent } });
    assert_eq!(
        refused(&app, "editor-key", PUBLISH, publish(2, Some(10))).await,
        "FORBIDDEN_ROLE"
    );
    assert_eq!(
        refused(&app, "publisher-key", PUBLISH, publish(2, Some(101))).await,
        "ROLLOUT_OUT_OF_RANGE"
    );
    let (_, r) = app
        .gql_key(
            PUBLISH,
            json!({ "i": { "flowId": "tour", "version": 2, "message": " ", "rolloutPercent": 10 } }),
            Some("publisher-key"),
        )
        .await;
    assert_eq!(error_code(&r), "MESSAGE_REQUIRED", "{r}");
    let (_, r) = app
        .gql_key(
            PUBLISH,
            json!({ "i": { "flowId": "tour", "version": 2, "message": "m", "override": "  " } }),
            Some("publisher-key"),
        )
        .await;
    assert_eq!(error_code(&r), "OVERRIDE_REASON_REQUIRED", "{r}");

    // 10% of new sessions, chosen by the user's bucket.
    let d = ok(&app, "publisher-key", PUBLISH, publish(2, Some(10))).await;
    assert_eq!(
        d["publishFlow"],
        json!({ "number": 2, "status": "PUBLISHED", "servingPercent": 10, "publishedBy": "publisher-1", "pendingReview": null })
    );
    assert_eq!(
        statuses(&app).await,
        [(1, "PUBLISHED".into(), 90), (2, "PUBLISHED".into(), 10)]
    );
    let users: Vec<String> = (0..120).map(|i| format!("user-{i}")).collect();
    let expected: Vec<i64> = users
        .iter()
        .map(|u| {
            if baton::service::registry::rollout_bucket("tour", u) < 10 {
                2
            } else {
                1
            }
        })
        .collect();
    assert!(
        expected.contains(&1) && expected.contains(&2),
        "the sample must hold both"
    );
    let started = versions_started(&app, &users).await;
    assert_eq!(started, expected);
    let (pinned, pinned_token) = app
        .start("tour", json!({ "id": "user-0" }), json!({}))
        .await;
    let pinned_version = pinned["flowVersion"].as_i64().unwrap();

    // setRollout refuses a version that serves nothing, then widens.
    assert_eq!(
        refused(
            &app,
            "publisher-key",
            ROLLOUT,
            json!({ "i": { "flowId": "tour", "version": 1, "percent": 50 } })
        )
        .await,
        "VERSION_NOT_SERVED"
    );
    let d = ok(
        &app,
        "publisher-key",
        ROLLOUT,
        json!({ "i": { "flowId": "tour", "version": 2, "percent": 50 } }),
    )
    .await;
    assert_eq!(
        d["setRollout"]["rollout"],
        json!({ "version": 2, "percent": 50 })
    );
    // A user on the new version stays on it while the percentage grows.
    let widened = versions_started(&app, &users).await;
    for (before, after) in started.iter().zip(&widened) {
        assert!(
            *before == 1 || *after == 2,
            "a user went back: {started:?} {widened:?}"
        );
    }
    let d = ok(
        &app,
        "publisher-key",
        ROLLOUT,
        json!({ "i": { "flowId": "tour", "version": 2, "percent": 100 } }),
    )
    .await;
    assert_eq!(
        d["setRollout"],
        json!({ "liveVersion": 2, "rollout": null })
    );
    assert_eq!(
        statuses(&app).await,
        [(1, "RETIRED".into(), 0), (2, "PUBLISHED".into(), 100)]
    );
    assert!(
        versions_started(&app, &users[..5])
            .await
            .iter()
            .all(|v| *v == 2)
    );

    // A restart keeps the release: the file (version 1) does not come back.
    let app = app.restart().await;
    assert!(
        versions_started(&app, &users[..5])
            .await
            .iter()
            .all(|v| *v == 2)
    );
    // A running session stays on the version it started on.
    let s = app
        .session(Some(&pinned_token), pinned["id"].as_str().unwrap())
        .await;
    assert_eq!(s["data"]["session"]["flowVersion"], pinned_version, "{s}");

    // Roll back in one call.
    assert_eq!(
        refused(
            &app,
            "publisher-key",
            ROLLBACK,
            json!({ "i": { "flowId": "tour", "toVersion": 1, "message": "" } })
        )
        .await,
        "MESSAGE_REQUIRED"
    );
    let d = ok(
        &app,
        "publisher-key",
        ROLLBACK,
        json!({ "i": { "flowId": "tour", "toVersion": 1, "message": "tips confuse people" } }),
    )
    .await;
    assert_eq!(
        d["rollbackFlow"],
        json!({ "liveVersion": 1, "rollout": null })
    );
    assert!(
        versions_started(&app, &users[..5])
            .await
            .iter()
            .all(|v| *v == 1)
    );

    // A draft that was never published is no rollback target, and a new
    // flow's first publish takes everyone.
    let d = ok(
        &app,
        "editor-key",
        SAVE,
        json!({ "i": { "flowId": "tour", "source": TOUR_V2.replace("Swipe left", "Swipe right") } }),
    )
    .await;
    assert_eq!(d["saveDraft"]["version"]["number"], 3);
    assert_eq!(
        refused(
            &app,
            "publisher-key",
            ROLLBACK,
            json!({ "i": { "flowId": "tour", "toVersion": 3, "message": "m" } })
        )
        .await,
        "VERSION_NEVER_PUBLISHED"
    );
    let fresh = TOUR_V1.replace("id: tour", "id: fresh");
    let d = ok(
        &app,
        "editor-key",
        SAVE,
        json!({ "i": { "flowId": "fresh", "source": fresh } }),
    )
    .await;
    assert_eq!(d["saveDraft"]["version"]["number"], 1);
    assert_eq!(
        refused(
            &app,
            "publisher-key",
            PUBLISH,
            json!({ "i": { "flowId": "fresh", "version": 1, "message": "m", "rolloutPercent": 50 } })
        )
        .await,
        "ROLLOUT_NEEDS_LIVE_VERSION"
    );
    let r = app
        .gql(
            "mutation { startFlow(input: { flowId: \"fresh\", user: { id: \"u\" } }) { id } }",
            json!({}),
            None,
        )
        .await;
    assert_eq!(
        error_code(&r),
        "FLOW_NOT_FOUND",
        "a draft serves nobody: {r}"
    );

    // The audit log tells the whole story, newest first, paged.
    let audit = "query($after: String) { auditLog(first: 4, after: $after, subject: \"flow:tour\") { \
        edges { cursor node { actor action version message detail } } pageInfo { hasNextPage endCursor } } }";
    let mut entries = Vec::new();
    let mut after = Value::Null;
    loop {
        let d = ok(&app, "viewer-key", audit, json!({ "after": after })).await;
        let page = &d["auditLog"];
        entries.extend(
            page["edges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["node"].clone()),
        );
        if page["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    let story: Vec<(String, String, Value)> = entries
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
                e["version"].clone(),
            )
        })
        .collect();
    let step = |actor: &str, action: &str, version: i64| {
        (actor.to_string(), action.to_string(), json!(version))
    };
    assert_eq!(
        story,
        [
            step("editor-1", "flow.draft_saved", 3),
            step("publisher-1", "flow.rolled_back", 1),
            step("publisher-1", "flow.rollout_set", 2),
            step("publisher-1", "flow.rollout_set", 2),
            step("publisher-1", "flow.published", 2),
            step("editor-1", "flow.draft_saved", 2),
            step("files", "flow.published", 1),
            step("files", "flow.draft_saved", 1),
        ]
    );
    assert_eq!(entries[1]["message"], "tips confuse people");
    assert_eq!(entries[1]["detail"]["previous"]["liveVersion"], 2);
    assert_eq!(entries[4]["detail"]["rolloutPercent"], 10);
    // The other flows' records are there under their own subjects.
    let d = ok(
        &app,
        "viewer-key",
        "{ auditLog(first: 100, subject: \"flow:\") { edges { node { subject } } } }",
        json!({}),
    )
    .await;
    let subjects: std::collections::BTreeSet<&str> = d["auditLog"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["subject"].as_str().unwrap())
        .collect();
    assert_eq!(
        subjects.into_iter().collect::<Vec<_>>(),
        [
            "flow:checkout",
            "flow:contact",
            "flow:fresh",
            "flow:loan",
            "flow:onboarding",
            "flow:support",
            "flow:tour"
        ]
    );
}

/// With `--require-review` a publish takes two publishers.
async fn four_eyes(backend: Backend) {
    let Some(app) = app(backend, true).await else {
        return;
    };
    ok(
        &app,
        "editor-key",
        SAVE,
        json!({ "i": { "flowId": "tour", "source": TOUR_V2 } }),
    )
    .await;
    let publish = json!({ "i": { "flowId": "tour", "version": 2, "message": "tips", "rolloutPercent": 100 } });
    let d = ok(&app, "publisher-key", PUBLISH, publish.clone()).await;
    assert_eq!(
        d["publishFlow"],
        json!({ "number": 2, "status": "DRAFT", "servingPercent": 0, "publishedBy": null,
                "pendingReview": { "requestedBy": "publisher-1", "rolloutPercent": 100 } })
    );
    assert_eq!(
        refused(&app, "publisher-key", PUBLISH, publish.clone()).await,
        "SELF_APPROVAL"
    );
    let d = ok(
        &app,
        "viewer-key",
        "{ flows { id liveVersion pendingReviews { version requestedBy } } }",
        json!({}),
    )
    .await;
    assert_eq!(d["flows"][5]["liveVersion"], 1);
    assert_eq!(
        d["flows"][5]["pendingReviews"],
        json!([{ "version": 2, "requestedBy": "publisher-1" }])
    );
    let d = ok(&app, "admin-key", PUBLISH, publish).await;
    assert_eq!(d["publishFlow"]["status"], "PUBLISHED", "{d}");
    assert_eq!(d["publishFlow"]["publishedBy"], "admin-1");
    assert!(d["publishFlow"]["pendingReview"].is_null());
    let d = ok(
        &app,
        "viewer-key",
        "{ auditLog(first: 2, subject: \"flow:tour\") { edges { node { actor action detail } } } }",
        json!({}),
    )
    .await;
    let edges = &d["auditLog"]["edges"];
    assert_eq!(edges[0]["node"]["action"], "flow.published");
    assert_eq!(edges[0]["node"]["detail"]["requestedBy"], "publisher-1");
    assert_eq!(edges[1]["node"]["action"], "flow.publish_requested");
    assert_eq!(edges[1]["node"]["actor"], "publisher-1");
}

#[tokio::test]
async fn whole_release_sqlite() {
    whole_release(Backend::Sqlite).await;
}

#[tokio::test]
async fn whole_release_postgres() {
    whole_release(Backend::Postgres).await;
}

#[tokio::test]
async fn four_eyes_sqlite() {
    four_eyes(Backend::Sqlite).await;
}

#[tokio::test]
async fn four_eyes_postgres() {
    four_eyes(Backend::Postgres).await;
}

/// `--flows-as-drafts`: a changed file waits for a publish.
async fn files_as_drafts(backend: Backend) {
    let Some(app) =
        TestApp::spawn_configured(backend, &[("tour.yaml", TOUR_V1.into())], |c, dir| {
            c.api_keys = Some(write_test_keys(dir));
            c.flows_as_drafts = true;
        })
        .await
    else {
        return;
    };
    // Nothing was ever published, so nothing serves.
    let r = app
        .gql(
            "mutation { startFlow(input: { flowId: \"tour\", user: { id: \"u\" } }) { id } }",
            json!({}),
            None,
        )
        .await;
    assert_eq!(error_code(&r), "FLOW_NOT_FOUND", "{r}");
    assert_eq!(statuses(&app).await, [(1, "DRAFT".into(), 0)]);
    let d = ok(
        &app,
        "publisher-key",
        PUBLISH,
        json!({ "i": { "flowId": "tour", "version": 1, "message": "first" } }),
    )
    .await;
    assert_eq!(d["publishFlow"]["status"], "PUBLISHED");
    let (s, _) = app.start("tour", json!({ "id": "u" }), json!({})).await;
    assert_eq!(s["flowVersion"], 1);
    // A changed file on restart is a draft; version 1 keeps serving.
    std::fs::write(app.flows.join("tour.yaml"), TOUR_V2).unwrap();
    let app = app.restart().await;
    assert_eq!(
        statuses(&app).await,
        [(1, "PUBLISHED".into(), 100), (2, "DRAFT".into(), 0)]
    );
    let (s, _) = app.start("tour", json!({ "id": "u" }), json!({})).await;
    assert_eq!(s["flowVersion"], 1);
}

#[tokio::test]
async fn files_as_drafts_sqlite() {
    files_as_drafts(Backend::Sqlite).await;
}

#[tokio::test]
async fn files_as_drafts_postgres() {
    files_as_drafts(Backend::Postgres).await;
}

/// Version 3 shows Android users a screen with an image; iOS users never
/// reach it (the edge reads only `client.platform`).
const TOUR_ANDROID_IMAGE: &str = r#"
id: tour
title: Product tour
start: hello
nodes:
  - id: hello
    kind: screen
    title: Hello
    components: [{ kind: text, text: "Welcome aboard" }]
    actions:
      - id: next
        next:
          - { when: { "==": [{ var: client.platform }, "android"] }, to: android_tips }
          - to: done
  - id: android_tips
    kind: screen
    components: [{ kind: image, url: "https://example.test/tips.png", alt: Tips }]
    actions: [{ id: next, next: done }]
  - { id: done, kind: end, title: Bye }
"#;

/// The compatibility report learns cohorts from sessions, prunes edges the
/// client decides, and blocks a publish that would break one, unless
/// overridden with a reason.
async fn compatibility(backend: Backend) {
    let Some(app) = app(backend, false).await else {
        return;
    };
    let clients = [
        (
            json!({ "platform": "ios", "appVersion": "6.1", "capabilities": ["text", "button"] }),
            3,
        ),
        (
            json!({ "platform": "android", "appVersion": "5.0", "capabilities": ["button", "text"] }),
            2,
        ),
        (
            json!({ "platform": "android", "appVersion": "6.0", "capabilities": ["text", "image", "button"] }),
            1,
        ),
    ];
    let mut n = 0;
    for (client, count) in &clients {
        for _ in 0..*count {
            n += 1;
            app.start("tour", json!({ "id": format!("c-{n}") }), client.clone())
                .await;
        }
    }
    let d = ok(
        &app,
        "editor-key",
        SAVE,
        json!({ "i": { "flowId": "tour", "source": TOUR_ANDROID_IMAGE } }),
    )
    .await;
    assert_eq!(d["saveDraft"]["version"]["number"], 2, "{d}");
    let report = "query($c: [CohortInput!]) { compatibilityReport(flowId: \"tour\", version: 2, cohorts: $c) { \
        windowDays blocking cohorts { platform appVersion capabilities sessions declared blocking \
        reachable unrenderable { node reason } } } }";
    let d = ok(
        &app,
        "viewer-key",
        report,
        json!({ "c": [{ "platform": "web", "capabilities": ["text"] }] }),
    )
    .await;
    let r = &d["compatibilityReport"];
    assert_eq!(r["blocking"], true, "{r}");
    assert_eq!(r["windowDays"], 30);
    let cohorts = r["cohorts"].as_array().unwrap();
    assert_eq!(cohorts.len(), 4, "{r}");
    // Most sessions first; capabilities sorted, so the two android 5.0
    // orders are one cohort.
    assert_eq!(
        cohorts[0],
        json!({ "platform": "ios", "appVersion": "6.1", "capabilities": ["button", "text"], "sessions": 3,
                "declared": false, "blocking": false, "reachable": ["hello", "done"], "unrenderable": [] })
    );
    assert_eq!(cohorts[1]["appVersion"], "5.0");
    assert_eq!(cohorts[1]["sessions"], 2);
    assert_eq!(cohorts[1]["blocking"], true);
    assert_eq!(
        cohorts[1]["reachable"],
        json!(["hello", "android_tips", "done"])
    );
    assert_eq!(cohorts[1]["unrenderable"][0]["node"], "android_tips");
    assert!(
        cohorts[1]["unrenderable"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("`image`"),
        "{r}"
    );
    assert_eq!(cohorts[2]["appVersion"], "6.0");
    assert_eq!(cohorts[2]["blocking"], false);
    assert_eq!(cohorts[3]["declared"], true);
    assert_eq!(cohorts[3]["sessions"], 0);
    // Version 1 breaks nobody.
    let d = ok(
        &app,
        "viewer-key",
        "{ compatibilityReport(flowId: \"tour\", version: 1) { blocking } }",
        json!({}),
    )
    .await;
    assert_eq!(d["compatibilityReport"]["blocking"], false);

    // The publish is refused, naming the cohort, unless overridden.
    let (_, r) = app
        .gql_key(
            PUBLISH,
            json!({ "i": { "flowId": "tour", "version": 2, "message": "tips for android" } }),
            Some("publisher-key"),
        )
        .await;
    assert_eq!(error_code(&r), "INCOMPATIBLE_WITH_COHORTS", "{r}");
    let message = r["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("android 5.0") && message.contains("android_tips"),
        "{message}"
    );
    assert!(r["errors"][0]["extensions"]["hint"].is_string());
    assert_eq!(statuses(&app).await[1], (2, "DRAFT".into(), 0));
    let d = ok(
        &app,
        "publisher-key",
        PUBLISH,
        json!({ "i": { "flowId": "tour", "version": 2, "message": "tips for android",
                       "override": "android 5 is sunset next week" } }),
    )
    .await;
    assert_eq!(d["publishFlow"]["status"], "PUBLISHED");
    let d = ok(
        &app,
        "viewer-key",
        "{ auditLog(first: 1, subject: \"flow:tour\") { edges { node { action detail } } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        d["auditLog"]["edges"][0]["node"]["detail"]["override"],
        "android 5 is sunset next week"
    );
    // Unknown versions have their code here too.
    let code = refused(
        &app,
        "viewer-key",
        "{ compatibilityReport(flowId: \"tour\", version: 7) { blocking } }",
        json!({}),
    )
    .await;
    assert_eq!(code, "UNKNOWN_FLOW_VERSION");
}

#[tokio::test]
async fn compatibility_sqlite() {
    compatibility(Backend::Sqlite).await;
}

#[tokio::test]
async fn compatibility_postgres() {
    compatibility(Backend::Postgres).await;
}

/// A `baton serve` process on the same database as `app`.
struct OtherProcess {
    child: std::process::Child,
    base: String,
}

impl Drop for OtherProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn other_process(app: &TestApp, release_poll_ms: u64) -> OtherProcess {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = &app.config;
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("serve")
        .args(["--addr", &format!("127.0.0.1:{port}")])
        .args(["--database-url", &c.database_url])
        .arg("--flows")
        .arg(&c.flows)
        .arg("--flags")
        .arg(&c.flags)
        .arg("--experiments")
        .arg(&c.experiments)
        .arg("--api-keys")
        .arg(c.api_keys.as_ref().unwrap())
        .args(["--release-poll-ms", &release_poll_ms.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("baton serve starts");
    // Killed and reaped on every path, a failed start included.
    let other = OtherProcess {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if client
            .get(format!("{}/readyz", other.base))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return other;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the second process did not become ready");
}

/// The version a new session of `user` starts on at `base`.
async fn version_at(base: &str, user: &str) -> i64 {
    let r: Value = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .json(&json!({
            "query": "mutation($u: String!) { startFlow(input: { flowId: \"tour\", user: { id: $u } }) { flowVersion } }",
            "variables": { "u": user }
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["data"]["startFlow"]["flowVersion"]
        .as_i64()
        .unwrap_or_else(|| panic!("{r}"))
}

/// Waits (bounded) until `base` serves `want` to new sessions; returns how
/// long it took, for the log.
async fn until_serving(base: &str, want: i64) -> std::time::Duration {
    let started = std::time::Instant::now();
    for i in 0..400 {
        if version_at(base, &format!("probe-{i}")).await == want {
            return started.elapsed();
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the other process never served version {want}");
}

/// A publish, a rollout change and a rollback on one process are in force
/// on another. On PostgreSQL the other process's poll is off (10 minutes),
/// so only LISTEN/NOTIFY can carry them.
async fn replicas(backend: Backend) {
    let Some(app) = app(backend, false).await else {
        return;
    };
    let poll = match backend {
        Backend::Postgres => 600_000,
        Backend::Sqlite => 200,
    };
    let other = other_process(&app, poll).await;
    assert_eq!(version_at(&other.base, "first").await, 1);
    ok(
        &app,
        "editor-key",
        SAVE,
        json!({ "i": { "flowId": "tour", "source": TOUR_V2 } }),
    )
    .await;
    let publish = json!({ "i": { "flowId": "tour", "version": 2, "message": "tips" } });
    ok(&app, "publisher-key", PUBLISH, publish).await;
    let took = until_serving(&other.base, 2).await;
    eprintln!("{backend:?}: publish in force on the other process after {took:?}");
    ok(
        &app,
        "publisher-key",
        ROLLBACK,
        json!({ "i": { "flowId": "tour", "toVersion": 1, "message": "back" } }),
    )
    .await;
    let took = until_serving(&other.base, 1).await;
    eprintln!("{backend:?}: rollback in force on the other process after {took:?}");
}

#[tokio::test]
async fn replicas_sqlite() {
    replicas(Backend::Sqlite).await;
}

#[tokio::test]
async fn replicas_postgres() {
    replicas(Backend::Postgres).await;
}

/// `baton push`, `diff`, `compat` and `pull` against a running server.
async fn cli(backend: Backend) {
    let Some(app) = app(backend, false).await else {
        return;
    };
    // The server runs on this test's runtime: the CLI waits off it.
    let run = |args: &[&str], key: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_baton"));
        cmd.args(args).env("BATON_URL", &app.base);
        match key {
            Some(k) => cmd.env("BATON_API_KEY", k),
            None => cmd.env_remove("BATON_API_KEY"),
        };
        async move {
            let out = tokio::task::spawn_blocking(move || cmd.output())
                .await
                .unwrap()
                .expect("baton runs");
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows");
    std::fs::create_dir(&flows).unwrap();
    std::fs::write(flows.join("tour.yaml"), TOUR_V2).unwrap();
    std::fs::write(
        flows.join("broken.yaml"),
        TOUR_BROKEN.replace("id: tour", "id: broken"),
    )
    .unwrap();
    let flows_arg = flows.to_str().unwrap();

    let (code, out, err) = run(&["push", flows_arg, "-m", "tips"], Some("editor-key")).await;
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("broken.yaml:11:15: error NOT_A_RULE"), "{out}");
    assert!(out.contains("broken: not saved"), "{out}");
    assert!(out.contains("tour: version 2 saved"), "{out}");
    std::fs::remove_file(flows.join("broken.yaml")).unwrap();
    let (code, out, _) = run(&["push", flows_arg], Some("editor-key")).await;
    assert_eq!(code, Some(0));
    assert!(out.contains("tour: version 2 unchanged"), "{out}");

    let (code, out, _) = run(&["diff", "tour", "1", "2"], Some("viewer-key")).await;
    assert_eq!(code, Some(0));
    assert!(out.contains("tips"), "{out}");
    let (code, out, err) = run(&["diff", "tour", "1", "9"], Some("viewer-key")).await;
    assert_eq!(code, Some(2));
    assert!(err.contains("UNKNOWN_FLOW_VERSION"), "{out}{err}");

    app.start(
        "tour",
        json!({ "id": "cli-user" }),
        json!({ "platform": "ios", "appVersion": "6.1", "capabilities": ["text"] }),
    )
    .await;
    let (code, out, _) = run(&["compat", "tour", "--version", "2"], Some("viewer-key")).await;
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("ios"), "{out}");

    // An editor may not publish; a publisher pushes a new version to 10%.
    std::fs::write(
        flows.join("tour.yaml"),
        TOUR_V2.replace("Swipe left", "Swipe up"),
    )
    .unwrap();
    let (code, _, err) = run(&["push", flows_arg, "--publish", "10"], Some("editor-key")).await;
    assert_eq!(code, Some(2));
    assert!(err.contains("FORBIDDEN_ROLE"), "{err}");
    let (code, out, err) = run(
        &["push", flows_arg, "--publish", "10", "-m", "swipe up"],
        Some("publisher-key"),
    )
    .await;
    assert_eq!(code, Some(0), "{out}{err}");
    // The editor's push above saved version 3 already; this one publishes it.
    assert!(
        out.contains("tour: version 3 unchanged, published"),
        "{out}"
    );
    let d = ok(
        &app,
        "viewer-key",
        "{ flows { id rollout { version percent } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        d["flows"][5]["rollout"],
        json!({ "version": 3, "percent": 10 })
    );

    // Pull writes the live versions: tour is still version 1, as its file was.
    let pulled = dir.path().join("pulled");
    let (code, out, err) = run(&["pull", pulled.to_str().unwrap()], Some("viewer-key")).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("tour: version 1"), "{out}");
    assert_eq!(
        std::fs::read_to_string(pulled.join("tour.yaml")).unwrap(),
        TOUR_V1
    );
    assert!(pulled.join("checkout.yaml").exists());

    // A preview link the web client opens.
    let (code, out, err) = run(
        &[
            "preview",
            "tour",
            "--node",
            "tips",
            "--web",
            "http://127.0.0.1:8000/",
        ],
        Some("editor-key"),
    )
    .await;
    assert_eq!(code, Some(0), "{out}{err}");
    let link = reqwest::Url::parse(out.trim()).expect("a URL");
    let param = |k: &str| {
        link.query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
            .unwrap()
    };
    assert_eq!(param("baton"), app.base);
    let s = app.session(Some(&param("token")), &param("session")).await;
    assert_eq!(s["data"]["session"]["screen"]["id"], "tips", "{s}");

    let (code, _, err) = run(&["diff", "tour", "1", "2"], None).await;
    assert_eq!(code, Some(2));
    assert!(err.contains("API_KEY_REQUIRED"), "{err}");
}

#[tokio::test]
async fn cli_sqlite() {
    cli(Backend::Sqlite).await;
}

#[tokio::test]
async fn cli_postgres() {
    cli(Backend::Postgres).await;
}

/// Operator actions on sessions and forced variants are in the audit log.
async fn operator_actions(backend: Backend) {
    let Some(app) = app(backend, false).await else {
        return;
    };
    let (s, _) = app
        .start("tour", json!({ "id": "op-user" }), json!({}))
        .await;
    let id = s["id"].as_str().unwrap();
    ok(
        &app,
        "admin-key",
        "mutation($s: ID!) { cancelSession(sessionId: $s) { status } }",
        json!({ "s": id }),
    )
    .await;
    ok(
        &app,
        "editor-key",
        "mutation { forceVariant(input: { experimentId: \"onboarding-headline\", variant: \"short\", userId: \"qa-1\" }) { variant } }",
        json!({}),
    )
    .await;
    ok(
        &app,
        "editor-key",
        "mutation { clearForcedVariant(input: { experimentId: \"onboarding-headline\", userId: \"qa-1\" }) }",
        json!({}),
    )
    .await;
    let d = ok(
        &app,
        "viewer-key",
        "{ auditLog(first: 3) { edges { node { actor action subject version detail } } } }",
        json!({}),
    )
    .await;
    let nodes: Vec<&Value> = d["auditLog"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["node"])
        .collect();
    assert_eq!(nodes[0]["action"], "experiment.variant_cleared");
    assert_eq!(nodes[0]["detail"]["target"], "user:qa-1");
    assert_eq!(nodes[1]["action"], "experiment.variant_forced");
    assert_eq!(nodes[1]["actor"], "editor-1");
    assert_eq!(nodes[1]["subject"], "experiment:onboarding-headline");
    assert_eq!(nodes[1]["detail"]["variant"], "short");
    assert_eq!(nodes[2]["action"], "session.cancelled");
    assert_eq!(nodes[2]["actor"], "admin-1");
    assert_eq!(nodes[2]["subject"], format!("session:{id}"));
    assert_eq!(nodes[2]["version"], 1);
    assert_eq!(nodes[2]["detail"]["flow"], "tour");
}

#[tokio::test]
async fn operator_actions_sqlite() {
    operator_actions(Backend::Sqlite).await;
}

#[tokio::test]
async fn operator_actions_postgres() {
    operator_actions(Backend::Postgres).await;
}

const SUPPORT_SESSION: &str = "query($id: ID!) { session(id: $id) { id status outcome userId createdAt \
    context screen { id } events(first: 2) { edges { cursor node { seq kind at } } pageInfo { hasNextPage endCursor } } } }";

/// Support reads a session with a key, finds sessions by filter and
/// cancels a filter's sessions in bulk, audited.
async fn support(backend: Backend) {
    let Some(app) = app(backend, false).await else {
        return;
    };
    let mut ids = Vec::new();
    for user in ["sup-a", "sup-b", "sup-a"] {
        let (s, token) = app
            .start(
                "tour",
                json!({ "id": user, "attributes": { "plan": "pro" } }),
                json!({ "platform": "web" }),
            )
            .await;
        ids.push((s["id"].as_str().unwrap().to_string(), token));
    }
    let (first, token) = &ids[0];
    app.submit(token, first, "hello", "next", json!({})).await;

    // Without a key or token: nothing; an app token does not see support data.
    let r = app.gql(SUPPORT_SESSION, json!({ "id": first }), None).await;
    assert_eq!(error_code(&r), "UNAUTHENTICATED", "{r}");
    let r = app
        .gql(SUPPORT_SESSION, json!({ "id": first }), Some(token))
        .await;
    assert_eq!(error_code(&r), "API_KEY_REQUIRED", "{r}");

    let d = ok(&app, "viewer-key", SUPPORT_SESSION, json!({ "id": first })).await;
    let s = &d["session"];
    assert_eq!(s["status"], "COMPLETED", "{s}");
    assert_eq!(s["userId"], "sup-a");
    assert_eq!(s["context"]["user"]["attributes"]["plan"], "pro");
    assert_eq!(s["context"]["client"]["platform"], "web");
    assert_eq!(s["screen"]["id"], "done");
    let events = s["events"]["edges"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["node"]["seq"], 1);
    assert_eq!(s["events"]["pageInfo"]["hasNextPage"], true);
    let unknown = ok(
        &app,
        "viewer-key",
        SUPPORT_SESSION,
        json!({ "id": "0190a0a0-0000-7000-8000-00000000beef" }),
    )
    .await;
    assert!(unknown["session"].is_null());

    // Find by user, newest first, paged.
    let find = "query($f: SessionFilter, $after: String) { sessions(filter: $f, first: 1, after: $after) { \
        edges { node { id userId status } } pageInfo { hasNextPage endCursor } } }";
    let mut found = Vec::new();
    let mut after = Value::Null;
    loop {
        let d = ok(
            &app,
            "viewer-key",
            find,
            json!({ "f": { "userId": "sup-a" }, "after": after }),
        )
        .await;
        let page = &d["sessions"];
        found.extend(
            page["edges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["node"]["id"].as_str().unwrap().to_string()),
        );
        if page["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(found, [ids[2].0.clone(), ids[0].0.clone()]);
    let d = ok(
        &app,
        "viewer-key",
        find,
        json!({ "f": { "flowId": "tour", "status": "ACTIVE" } }),
    )
    .await;
    assert_eq!(d["sessions"]["edges"][0]["node"]["status"], "ACTIVE");
    let (_, r) = app
        .gql_key(
            find,
            json!({ "f": { "from": "yesterday" } }),
            Some("viewer-key"),
        )
        .await;
    assert_eq!(error_code(&r), "BAD_USER_INPUT", "{r}");

    // Bulk cancel: a viewer may not; an empty filter is refused; the ended
    // session is skipped with its reason.
    let cancel = "mutation($f: SessionFilter!) { cancelSessions(filter: $f) { matched done skipped { sessionId reason } more } }";
    assert_eq!(
        refused(
            &app,
            "viewer-key",
            cancel,
            json!({ "f": { "userId": "sup-a" } })
        )
        .await,
        "FORBIDDEN_ROLE"
    );
    assert_eq!(
        refused(&app, "admin-key", cancel, json!({ "f": {} })).await,
        "BAD_USER_INPUT"
    );
    let d = ok(
        &app,
        "admin-key",
        cancel,
        json!({ "f": { "userId": "sup-a" } }),
    )
    .await;
    let r = &d["cancelSessions"];
    assert_eq!(r["matched"], 2, "{r}");
    assert_eq!(r["done"], 1, "{r}");
    assert_eq!(r["skipped"][0]["sessionId"], ids[0].0.as_str());
    assert_eq!(r["more"], false);
    let d = ok(
        &app,
        "viewer-key",
        SUPPORT_SESSION,
        json!({ "id": ids[2].0 }),
    )
    .await;
    assert_eq!(d["session"]["status"], "COMPLETED", "{d}");
    assert_eq!(d["session"]["outcome"], "ABANDONED", "{d}");
    let d = ok(
        &app,
        "viewer-key",
        "{ auditLog(first: 2) { edges { node { action subject detail } } } }",
        json!({}),
    )
    .await;
    let bulk = &d["auditLog"]["edges"][0]["node"];
    assert_eq!(bulk["action"], "sessions.bulk_cancelled");
    assert_eq!(bulk["detail"]["filter"]["userId"], "sup-a");
    assert_eq!(bulk["detail"]["done"], 1);
    assert_eq!(
        d["auditLog"]["edges"][1]["node"]["action"],
        "session.cancelled"
    );
}

#[tokio::test]
async fn support_sqlite() {
    support(Backend::Sqlite).await;
}

#[tokio::test]
async fn support_postgres() {
    support(Backend::Postgres).await;
}

const PREVIEW: &str = "mutation($i: StartPreviewInput!) { startPreview(input: $i) { id token flowVersion \
    screen { id title components { ... on TextComponent { id text } } } } }";

/// Previews: a draft at any node with chosen arms, following later saves,
/// never counted in cohorts or experiment results.
async fn previews(backend: Backend) {
    let Some(app) = app(backend, false).await else {
        return;
    };
    ok(
        &app,
        "editor-key",
        SAVE,
        json!({ "i": { "flowId": "tour", "source": TOUR_V2 } }),
    )
    .await;
    // A viewer may not preview; an editor previews the open draft.
    assert_eq!(
        refused(
            &app,
            "viewer-key",
            PREVIEW,
            json!({ "i": { "flowId": "tour" } })
        )
        .await,
        "FORBIDDEN_ROLE"
    );
    let d = ok(
        &app,
        "editor-key",
        PREVIEW,
        json!({ "i": { "flowId": "tour" } }),
    )
    .await;
    assert_eq!(d["startPreview"]["flowVersion"], 2);
    assert_eq!(d["startPreview"]["screen"]["title"], "Hello again");
    // At any node, as an Android client without `image`.
    let d = ok(
        &app,
        "editor-key",
        PREVIEW,
        json!({ "i": { "flowId": "tour", "node": "tips",
                       "client": { "platform": "android", "capabilities": ["text", "button"] } } }),
    )
    .await;
    let p = &d["startPreview"];
    assert_eq!(p["screen"]["id"], "tips", "{p}");
    assert_eq!(p["screen"]["components"][0]["text"], "Swipe left");
    let (pid, ptoken) = (
        p["id"].as_str().unwrap().to_string(),
        p["token"].as_str().unwrap().to_string(),
    );
    let (_, r) = app
        .gql_key(
            PREVIEW,
            json!({ "i": { "flowId": "tour", "node": "nowhere" } }),
            Some("editor-key"),
        )
        .await;
    assert_eq!(error_code(&r), "UNKNOWN_PREVIEW_NODE", "{r}");
    assert!(
        r["errors"][0]["extensions"]["hint"]
            .as_str()
            .unwrap()
            .contains("tips"),
        "{r}"
    );
    let (_, r) = app
        .gql_key(
            PREVIEW,
            json!({ "i": { "flowId": "tour", "version": 9 } }),
            Some("editor-key"),
        )
        .await;
    assert_eq!(error_code(&r), "UNKNOWN_FLOW_VERSION", "{r}");

    // The next save of the draft re-renders the open preview.
    ok(
        &app,
        "editor-key",
        SAVE,
        json!({ "i": { "flowId": "tour", "source": TOUR_V2.replace("Swipe left", "Swipe up") } }),
    )
    .await;
    let s = app.session(Some(&ptoken), &pid).await;
    assert_eq!(s["data"]["session"]["flowVersion"], 3, "{s}");
    assert_eq!(
        s["data"]["session"]["screen"]["components"][0]["text"], "Swipe up",
        "{s}"
    );
    // It walks on like any session, with mocked steps.
    let r = app.submit(&ptoken, &pid, "tips", "next", json!({})).await;
    assert_eq!(r["status"], "COMPLETED", "{r}");

    // Previews are not cohorts.
    let d = ok(
        &app,
        "viewer-key",
        "{ compatibilityReport(flowId: \"tour\", version: 3) { cohorts { platform } } }",
        json!({}),
    )
    .await;
    assert_eq!(d["compatibilityReport"]["cohorts"], json!([]), "{d}");

    // An experiment arm is its flag's variant, and is not an exposure.
    let (_, r) = app
        .gql_key(
            PREVIEW,
            json!({ "i": { "flowId": "onboarding", "experiments": { "onboarding-headline": "tiny" } } }),
            Some("editor-key"),
        )
        .await;
    assert_eq!(error_code(&r), "UNKNOWN_PREVIEW_ARM", "{r}");
    assert!(
        r["errors"][0]["extensions"]["hint"]
            .as_str()
            .unwrap()
            .contains("classic"),
        "{r}"
    );
    for arm in ["short", "classic"] {
        let d = ok(
            &app,
            "editor-key",
            PREVIEW,
            json!({ "i": { "flowId": "onboarding", "user": { "id": "pm-1" },
                           "experiments": { "onboarding-headline": arm } } }),
        )
        .await;
        let want = if arm == "short" {
            "Join in 30 seconds"
        } else {
            "Create your account"
        };
        let headline = d["startPreview"]["screen"]["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == "headline")
            .unwrap()["text"]
            .clone();
        assert_eq!(headline, want, "{d}");
    }
    let d = ok(
        &app,
        "viewer-key",
        "{ experimentResults(id: \"onboarding-headline\") { arms { variant exposures } } }",
        json!({}),
    )
    .await;
    for arm in d["experimentResults"]["arms"].as_array().unwrap() {
        assert_eq!(arm["exposures"], 0, "{d}");
    }
}

#[tokio::test]
async fn previews_sqlite() {
    previews(Backend::Sqlite).await;
}

#[tokio::test]
async fn previews_postgres() {
    previews(Backend::Postgres).await;
}

async fn audit_entries(app: &TestApp, subject: &str) -> Vec<Value> {
    let q = format!(
        "{{ auditLog(first: 50, subject: \"{subject}\") {{ edges {{ node {{ actor action subject version }} }} }} }}"
    );
    let d = ok(app, "viewer-key", &q, json!({})).await;
    d["auditLog"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect()
}

/// Flag and experiment files are versioned and audited as they change.
async fn config_files(backend: Backend) {
    let Some(app) = app(backend, false).await else {
        return;
    };
    assert_eq!(
        audit_entries(&app, "flags:").await,
        [
            json!({ "actor": "files", "action": "flags.changed", "subject": "flags:onboarding.flagd.json", "version": 1 })
        ]
    );
    assert_eq!(
        audit_entries(&app, "experiments:").await,
        [
            json!({ "actor": "files", "action": "experiments.changed", "subject": "experiments:onboarding-headline.yaml", "version": 1 })
        ]
    );
    assert_eq!(
        audit_entries(&app, "api_keys:").await,
        [
            json!({ "actor": "files", "action": "api_keys.changed", "subject": "api_keys:api-keys.yaml", "version": 1 })
        ]
    );
    // The same files after a restart change nothing; an edited one is version 2.
    let app = app.restart().await;
    assert_eq!(audit_entries(&app, "flags:").await.len(), 1);
    let path = app.config.flags.join("onboarding.flagd.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("Join in 30 seconds", "Join in 20 seconds"),
    )
    .unwrap();
    let app = app.restart().await;
    let flags = audit_entries(&app, "flags:").await;
    assert_eq!(flags.len(), 2, "{flags:?}");
    assert_eq!(flags[0]["version"], 2);
}

#[tokio::test]
async fn config_files_sqlite() {
    config_files(Backend::Sqlite).await;
}

#[tokio::test]
async fn config_files_postgres() {
    config_files(Backend::Postgres).await;
}

/// `--cohorts`: cohorts every report lists; a bad file stops the start.
async fn declared_cohorts(backend: Backend) {
    let Some(app) =
        TestApp::spawn_configured(backend, &[("tour.yaml", TOUR_V1.into())], |c, dir| {
            c.api_keys = Some(write_test_keys(dir));
            let path = dir.join("cohorts.yaml");
            std::fs::write(
            &path,
            "cohorts:\n  - { platform: android, app_version: \"4.2\", capabilities: [button] }\n",
        )
        .unwrap();
            c.cohorts = Some(path);
        })
        .await
    else {
        return;
    };
    let d = ok(
        &app,
        "viewer-key",
        "{ compatibilityReport(flowId: \"tour\", version: 1) { blocking cohorts { platform declared blocking sessions } } }",
        json!({}),
    )
    .await;
    assert_eq!(
        d["compatibilityReport"],
        json!({ "blocking": false, "cohorts": [{ "platform": "android", "declared": true, "blocking": true, "sessions": 0 }] })
    );
    let mut config = app.config.clone();
    let bad = app.config.flows.with_file_name("bad-cohorts.yaml");
    std::fs::write(
        &bad,
        "cohorts:\n  - { platform: ios, app_version: banana }\n",
    )
    .unwrap();
    config.cohorts = Some(bad);
    let err = baton::app::Application::build(config)
        .await
        .err()
        .expect("refused");
    assert!(err.to_string().contains("COHORTS_FILE_INVALID"), "{err:#}");
    assert!(err.to_string().contains("banana"), "{err:#}");
}

#[tokio::test]
async fn declared_cohorts_sqlite() {
    declared_cohorts(Backend::Sqlite).await;
}

#[tokio::test]
async fn declared_cohorts_postgres() {
    declared_cohorts(Backend::Postgres).await;
}

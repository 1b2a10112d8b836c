//! Who may do what, from outside: every admin operation of the schema ×
//! every kind of caller, with the expected answer taken from the permission
//! table (`Permission::roles` and `Principal::allows`), and no existence
//! oracle for a caller without a valid key or session token.

use std::collections::BTreeSet;

use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};
use baton::auth::{Permission, Principal, Role};
use serde_json::{Value, json};

use crate::testapp::{Backend, TEST_KEYS, TestApp, error_code, write_test_keys};

/// The operations an app calls with a session token; every other root
/// field is an admin operation and needs a row in [`matrix`].
const APP_OPERATIONS: [&str; 5] = ["session", "startFlow", "submit", "back", "sessionUpdated"];

const REVIEW_FLOW: &str = r#"
id: review
start: form
nodes:
  - id: form
    kind: screen
    components: [{ kind: number_input, id: amount, label: Amount, required: true }]
    actions: [{ id: send, next: check }]
  - id: check
    kind: approval
    role: underwriter
    title: "Amount {{ input.form.amount }}"
    fields: [{ kind: number_input, id: rate, label: Rate, required: true, min: 0, max: 30 }]
    outcomes: { approved: ok, declined: "no" }
  - { id: ok, kind: end, title: Approved }
  - { id: "no", kind: end, title: Declined }
"#;

/// A reviewer whose queue is not the review flow's.
const OTHER_REVIEWER: &str = "other-reviewer-key";

async fn app(backend: Backend) -> Option<TestApp> {
    TestApp::spawn_configured(backend, &[("review.yaml", REVIEW_FLOW.into())], |c, dir| {
        let path = write_test_keys(dir);
        use sha2::Digest;
        let sha = hex::encode(sha2::Sha256::digest(OTHER_REVIEWER.as_bytes()));
        let mut yaml = std::fs::read_to_string(&path).unwrap();
        yaml.push_str(&format!(
            "  - name: other-reviewer\n    role: reviewer\n    queues: [compliance]\n    sha256: {sha}\n"
        ));
        std::fs::write(&path, yaml).unwrap();
        c.api_keys = Some(path);
        c.step_budget_ms = 0;
    })
    .await
}

/// A session waiting on an underwriter approval: (session id, token, task id).
async fn waiting_review(app: &TestApp) -> (String, String, String) {
    let (s, token) = app.start("review", json!({ "id": "u-1" }), json!({})).await;
    let id = s["id"].as_str().unwrap().to_string();
    let s = app
        .submit(&token, &id, "form", "send", json!({ "amount": 100 }))
        .await;
    assert_eq!(s["status"], "WAITING", "{s}");
    let (_, r) = app
        .gql_key(
            "{ approvalTasks { edges { node { id } } } }",
            json!({}),
            Some("admin-key"),
        )
        .await;
    let task = r["data"]["approvalTasks"]["edges"][0]["node"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no task: {r}"))
        .to_string();
    (id, token, task)
}

/// The root fields of the generated SDL, by root type.
fn schema_operations() -> BTreeSet<String> {
    let doc = async_graphql::parser::parse_schema(baton::artifacts::graphql_sdl()).unwrap();
    let mut ops = BTreeSet::new();
    for def in doc.definitions {
        let TypeSystemDefinition::Type(ty) = def else {
            continue;
        };
        let name = ty.node.name.node.as_str();
        if !["RootQuery", "RootMutation", "Subscription"].contains(&name) {
            continue;
        }
        let TypeKind::Object(object) = &ty.node.kind else {
            continue;
        };
        ops.extend(object.fields.iter().map(|f| f.node.name.node.to_string()));
    }
    ops
}

/// One admin operation: its permission (`None`: any valid key) and a
/// request addressing a task and a session by id.
struct Row {
    op: &'static str,
    permission: Option<Permission<'static>>,
    /// The document, and variables for a task id and a session id.
    query: &'static str,
    variables: fn(task: &str, session: &str) -> Value,
}

fn matrix() -> Vec<Row> {
    let decide = Permission::DecideApproval {
        queue: "underwriter",
    };
    vec![
        Row {
            op: "apiKey",
            permission: None,
            query: "{ apiKey { name } }",
            variables: |_, _| json!({}),
        },
        Row {
            op: "approvalTasks",
            permission: Some(Permission::ListApprovals),
            query: "{ approvalTasks { edges { node { id title sessionId } } } }",
            variables: |_, _| json!({}),
        },
        Row {
            op: "approvalTask",
            permission: Some(Permission::ListApprovals),
            query: "query($t: ID!) { approvalTask(id: $t) { id title sessionId } }",
            variables: |t, _| json!({ "t": t }),
        },
        Row {
            op: "sessionSteps",
            permission: Some(Permission::ReadSessions),
            query: "query($s: ID!) { sessionSteps(sessionId: $s) { node state } }",
            variables: |_, s| json!({ "s": s }),
        },
        Row {
            op: "experiments",
            permission: Some(Permission::ReadResults),
            query: "{ experiments { id } }",
            variables: |_, _| json!({}),
        },
        Row {
            op: "experimentResults",
            permission: Some(Permission::ReadResults),
            query: "query { experimentResults(id: \"onboarding-headline\") { experimentId } }",
            variables: |_, _| json!({}),
        },
        Row {
            op: "claimApprovalTask",
            permission: Some(decide),
            query: "mutation($t: ID!) { claimApprovalTask(taskId: $t) { id title } }",
            variables: |t, _| json!({ "t": t }),
        },
        Row {
            op: "completeApprovalTask",
            permission: Some(decide),
            query: "mutation($i: CompleteApprovalInput!) { completeApprovalTask(input: $i) { taskId } }",
            variables: |t, _| json!({ "i": { "taskId": t, "outcome": "declined", "values": { "rate": 5 } } }),
        },
        Row {
            op: "sendEvent",
            permission: Some(Permission::SendEvents),
            query: "mutation { sendEvent(input: { name: \"e\", correlationKey: \"k\" }) { delivered } }",
            variables: |_, _| json!({}),
        },
        Row {
            op: "retryStep",
            permission: Some(Permission::OperateSessions),
            query: "mutation($s: ID!) { retryStep(sessionId: $s) { status } }",
            variables: |_, s| json!({ "s": s }),
        },
        Row {
            op: "skipStep",
            permission: Some(Permission::OperateSessions),
            query: "mutation($s: ID!) { skipStep(sessionId: $s, to: \"no\") { status } }",
            variables: |_, s| json!({ "s": s }),
        },
        Row {
            op: "cancelSession",
            permission: Some(Permission::OperateSessions),
            query: "mutation($s: ID!) { cancelSession(sessionId: $s) { status } }",
            variables: |_, s| json!({ "s": s }),
        },
        Row {
            op: "forceVariant",
            permission: Some(Permission::ForceVariant),
            query: "mutation($s: ID!) { forceVariant(input: { experimentId: \"onboarding-headline\", variant: \"x\", sessionId: $s }) { variant } }",
            variables: |_, s| json!({ "s": s }),
        },
        Row {
            op: "flows",
            permission: Some(Permission::ReadFlows),
            query: "{ flows { id liveVersion } }",
            variables: |_, _| json!({}),
        },
        Row {
            op: "flowVersions",
            permission: Some(Permission::ReadFlows),
            query: "{ flowVersions(flowId: \"review\") { number status } }",
            variables: |_, _| json!({}),
        },
        Row {
            op: "flowDiff",
            permission: Some(Permission::ReadFlows),
            query: "{ flowDiff(flowId: \"review\", from: 1, to: 1) { text } }",
            variables: |_, _| json!({}),
        },
        Row {
            op: "compatibilityReport",
            permission: Some(Permission::ReadFlows),
            query: "{ compatibilityReport(flowId: \"review\", version: 1) { blocking } }",
            variables: |_, _| json!({}),
        },
        Row {
            op: "sessions",
            permission: Some(Permission::ReadSessions),
            query: "{ sessions(filter: { flowId: \"review\" }, first: 2) { edges { node { id } } } }",
            variables: |_, _| json!({}),
        },
        Row {
            op: "cancelSessions",
            permission: Some(Permission::OperateSessions),
            query: "mutation { cancelSessions(filter: { userId: \"nobody\" }) { matched } }",
            variables: |_, _| json!({}),
        },
        Row {
            op: "retrySessions",
            permission: Some(Permission::OperateSessions),
            query: "mutation { retrySessions(filter: { userId: \"nobody\" }) { matched } }",
            variables: |_, _| json!({}),
        },
        Row {
            op: "startPreview",
            permission: Some(Permission::Preview),
            query: "mutation { startPreview(input: { flowId: \"review\" }) { id } }",
            variables: |_, _| json!({}),
        },
        Row {
            op: "funnel",
            permission: Some(Permission::ReadResults),
            query: "{ funnel(flowId: \"review\") { sessions } }",
            variables: |_, _| json!({}),
        },
        Row {
            op: "deadLetters",
            permission: Some(Permission::ReadSessions),
            query: "{ deadLetters { id } }",
            variables: |_, _| json!({}),
        },
        Row {
            op: "replayDeadLetter",
            permission: Some(Permission::OperateSessions),
            query: "mutation { replayDeadLetter(id: \"none\") { id } }",
            variables: |_, _| json!({}),
        },
        Row {
            op: "eventFeed",
            permission: Some(Permission::ReadSessions),
            query: "{ eventFeed(first: 5) { endCursor } }",
            variables: |_, _| json!({}),
        },
        Row {
            op: "auditLog",
            permission: Some(Permission::ReadAudit),
            query: "{ auditLog(first: 5) { edges { node { action subject } } } }",
            variables: |_, _| json!({}),
        },
        Row {
            op: "saveDraft",
            permission: Some(Permission::SaveDrafts),
            query: "mutation($i: SaveDraftInput!) { saveDraft(input: $i) { ok } }",
            variables: |_, _| json!({ "i": { "flowId": "review", "source": REVIEW_FLOW } }),
        },
        Row {
            op: "recordScenario",
            permission: Some(Permission::SaveDrafts),
            query: "mutation($s: ID!) { recordScenario(sessionId: $s, scenario: \"rec\") { ok } }",
            variables: |_, s| json!({ "s": s }),
        },
        Row {
            op: "publishFlow",
            permission: Some(Permission::PublishFlows),
            query: "mutation { publishFlow(input: { flowId: \"review\", version: 1, message: \"again\" }) { number } }",
            variables: |_, _| json!({}),
        },
        Row {
            op: "setRollout",
            permission: Some(Permission::PublishFlows),
            query: "mutation { setRollout(input: { flowId: \"review\", version: 1, percent: 100 }) { liveVersion } }",
            variables: |_, _| json!({}),
        },
        Row {
            op: "rollbackFlow",
            permission: Some(Permission::PublishFlows),
            query: "mutation { rollbackFlow(input: { flowId: \"review\", toVersion: 1, message: \"back\" }) { liveVersion } }",
            variables: |_, _| json!({}),
        },
        Row {
            op: "clearForcedVariant",
            permission: Some(Permission::ForceVariant),
            query: "mutation($s: ID!) { clearForcedVariant(input: { experimentId: \"onboarding-headline\", sessionId: $s }) }",
            variables: |_, s| json!({ "s": s }),
        },
    ]
}

#[test]
fn every_admin_operation_has_a_matrix_row() {
    let rows: BTreeSet<String> = matrix().iter().map(|r| r.op.to_string()).collect();
    let admin: BTreeSet<String> = schema_operations()
        .into_iter()
        .filter(|op| !APP_OPERATIONS.contains(&op.as_str()))
        .collect();
    assert_eq!(
        admin, rows,
        "every admin operation of the schema needs a row in `matrix()` (and no row may name \
         an operation the schema lacks)"
    );
}

/// A caller of the matrix: its key and, for a valid one, its principal.
struct Caller {
    label: &'static str,
    key: Option<&'static str>,
    principal: Option<Principal>,
}

fn callers() -> Vec<Caller> {
    let mut out = vec![
        Caller {
            label: "no key",
            key: None,
            principal: None,
        },
        Caller {
            label: "unknown key",
            key: Some("no-such-key"),
            principal: None,
        },
    ];
    for (key, role) in TEST_KEYS {
        let role = Role::ALL.into_iter().find(|r| r.as_str() == role).unwrap();
        let queues = if role == Role::Reviewer {
            vec!["underwriter".to_string()]
        } else {
            Vec::new()
        };
        out.push(Caller {
            label: role.as_str(),
            key: Some(key),
            principal: Some(Principal {
                name: format!("{role}-1"),
                role,
                queues,
            }),
        });
    }
    out.push(Caller {
        label: "reviewer of another queue",
        key: Some(OTHER_REVIEWER),
        principal: Some(Principal {
            name: "other-reviewer".into(),
            role: Role::Reviewer,
            queues: vec!["compliance".into()],
        }),
    });
    out
}

/// A response with the ids replaced, to compare answers about different ids.
fn normalized(resp: &Value, ids: &[&str]) -> String {
    let mut text = resp.to_string();
    for id in ids {
        text = text.replace(id, "<ID>");
    }
    text
}

const UNKNOWN_TASK: &str = "0190a0a0-0000-7000-8000-00000000dead";
const UNKNOWN_SESSION: &str = "0190a0a0-0000-7000-8000-00000000beef";

async fn role_matrix(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    for row in matrix() {
        // A fresh waiting session per row: the writes of earlier rows
        // (cancel, skip, decide) do not change what this row sees.
        let (session, _, task) = waiting_review(&app).await;
        for caller in callers() {
            let at = format!("{} as {}", row.op, caller.label);
            let call = |task: &str, session: &str| {
                app.gql_key(row.query, (row.variables)(task, session), caller.key)
            };
            let (status, resp) = call(&task, &session).await;
            let (unknown_status, unknown) = call(UNKNOWN_TASK, UNKNOWN_SESSION).await;
            let Some(principal) = &caller.principal else {
                if caller.key.is_some() {
                    assert_eq!(status, 401, "{at}: {resp}");
                    assert_eq!(error_code(&resp), "INVALID_API_KEY", "{at}");
                    assert!(resp.get("data").is_none(), "{at}: {resp}");
                } else {
                    assert_eq!(error_code(&resp), "API_KEY_REQUIRED", "{at}: {resp}");
                }
                // No existence oracle: an unknown id answers the same.
                assert_eq!(status, unknown_status, "{at}");
                assert_eq!(
                    normalized(&resp, &[&task, &session]),
                    normalized(&unknown, &[UNKNOWN_TASK, UNKNOWN_SESSION]),
                    "{at}: existing and unknown ids must answer alike"
                );
                continue;
            };
            let by_role = row
                .permission
                .is_none_or(|p| p.roles().contains(&principal.role));
            let allowed = row.permission.is_none_or(|p| principal.allows(p));
            let code = resp["errors"][0]["extensions"]["code"].as_str();
            if allowed {
                assert!(
                    !matches!(
                        code,
                        Some("API_KEY_REQUIRED" | "INVALID_API_KEY" | "FORBIDDEN_ROLE")
                    ),
                    "{at} is allowed by the permission table: {resp}"
                );
            } else if !by_role {
                assert_eq!(code, Some("FORBIDDEN_ROLE"), "{at}: {resp}");
                assert_eq!(status, 200, "{at}");
            } else {
                // The role may, but not for this queue: the task is not
                // there for this caller, exactly as an unknown one.
                assert_eq!(
                    normalized(&resp, &[&task]),
                    normalized(&unknown, &[UNKNOWN_TASK]),
                    "{at}: another queue's task must answer as an unknown id"
                );
            }
            // Whatever the table allows, another queue's task stays
            // invisible: neither its title nor its session (the id the
            // caller sent may be echoed back).
            if principal.queues == ["compliance"] {
                let text = resp.to_string();
                assert!(
                    !text.contains(&session) && !text.contains("Amount"),
                    "{at} sees another queue's task: {resp}"
                );
                if row.op == "approvalTask" {
                    assert_eq!(resp["data"]["approvalTask"], Value::Null, "{at}: {resp}");
                    assert_eq!(
                        normalized(&resp, &[&task]),
                        normalized(&unknown, &[UNKNOWN_TASK])
                    );
                }
            }
        }
    }
}

/// Without a session token, and with a token that is not the session's,
/// every session operation answers an unknown id and an existing one alike.
async fn no_session_oracle(backend: Backend) {
    let Some(app) = app(backend).await else {
        return;
    };
    let (session, _token, _) = waiting_review(&app).await;
    let (other, other_token) = app.start("checkout", json!({ "id": "o" }), json!({})).await;
    assert_ne!(other["id"], session.as_str());
    type Vars = fn(&str) -> Value;
    let ops: [(&str, &str, Vars); 3] = [
        (
            "session",
            "query($s: ID!) { session(id: $s) { id status } }",
            |s| json!({ "s": s }),
        ),
        (
            "submit",
            "mutation($s: ID!) { submit(input: { sessionId: $s, screenId: \"check\", action: \"x\" }) { id } }",
            |s| json!({ "s": s }),
        ),
        (
            "back",
            "mutation($s: ID!) { back(sessionId: $s) { id } }",
            |s| json!({ "s": s }),
        ),
    ];
    for (op, query, vars) in ops {
        for token in [None, Some("not-a-token"), Some(other_token.as_str())] {
            let existing = app.gql(query, vars(&session), token).await;
            let unknown = app.gql(query, vars(UNKNOWN_SESSION), token).await;
            assert_eq!(
                normalized(&existing, &[&session]),
                normalized(&unknown, &[UNKNOWN_SESSION]),
                "{op} with token {token:?}: {existing} vs {unknown}"
            );
            assert!(existing.get("errors").is_some() || existing["data"][op].is_null());
        }
    }
    // And over WebSocket.
    for token in ["", "not-a-token", other_token.as_str()] {
        let mut answers = Vec::new();
        for id in [session.as_str(), UNKNOWN_SESSION] {
            let mut ws = crate::subscription::subscribe(&app, id, token).await;
            let msg = crate::subscription::next_json(&mut ws).await;
            answers.push(normalized(&msg, &[id]));
        }
        assert_eq!(
            answers[0], answers[1],
            "sessionUpdated with token {token:?}"
        );
    }
    // The session itself is untouched and its own token still works.
    let (_, r) = app
        .gql_key(
            "query($s: ID!) { sessionSteps(sessionId: $s) { state } }",
            json!({ "s": session }),
            Some("admin-key"),
        )
        .await;
    assert_eq!(r["data"]["sessionSteps"][0]["state"], "open", "{r}");
}

/// The per-session limit: calls with a token count against the session's
/// id, over it the answer is `RATE_LIMITED` with when to retry, and other
/// sessions (and calls without a token) are not affected.
async fn sessions_are_rate_limited(backend: Backend) {
    let Some(app) = TestApp::spawn_configured(backend, &[], |c, _| {
        c.rate_limit_per_session = 3;
    })
    .await
    else {
        return;
    };
    let (s, token) = app.start("checkout", json!({ "id": "r" }), json!({})).await;
    let id = s["id"].as_str().unwrap().to_string();
    let (other, other_token) = app.start("checkout", json!({ "id": "o" }), json!({})).await;
    // Calls without a token are refused before the limit and do not use it up.
    for _ in 0..5 {
        let r = app.session(None, &id).await;
        assert_eq!(error_code(&r), "UNAUTHENTICATED", "{r}");
    }
    let r = app.session(Some(&token), &id).await;
    assert_eq!(r["data"]["session"]["id"], id.as_str(), "{r}");
    app.submit(&token, &id, "cart", "next", json!({ "quantity": 1 }))
        .await;
    let r = app.back(&token, &id).await;
    assert!(r["data"]["back"].is_object(), "{r}");
    // The fourth within the minute is refused, over HTTP with Retry-After.
    let q = format!(
        "query($s: ID!) {{ session(id: $s) {{ ...S }} }} {}",
        crate::testapp::SESSION_FIELDS
    );
    let resp = app
        .client
        .post(format!("{}/graphql", app.base))
        .bearer_auth(&token)
        .json(&json!({ "query": q, "variables": { "s": id } }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "a field error");
    let after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&after), "{after}");
    let r: Value = resp.json().await.unwrap();
    assert_eq!(error_code(&r), "RATE_LIMITED", "{r}");
    assert!(
        r["errors"][0]["extensions"]["retryAfterSeconds"]
            .as_u64()
            .unwrap()
            >= 1
    );
    let r = app
        .submit_raw(&token, &id, "shipping", "next", json!({}), None)
        .await;
    assert_eq!(error_code(&r), "RATE_LIMITED", "{r}");
    // The subscription counts too.
    let mut ws = crate::subscription::subscribe(&app, &id, &token).await;
    let msg = crate::subscription::next_json(&mut ws).await;
    assert_eq!(
        msg["payload"]["errors"][0]["extensions"]["code"], "RATE_LIMITED",
        "{msg}"
    );
    // Another session is not affected.
    let r = app
        .session(Some(&other_token), other["id"].as_str().unwrap())
        .await;
    assert!(r["data"]["session"].is_object(), "{r}");
}

macro_rules! security_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test] async fn $name() { super::$name(crate::testapp::Backend::Sqlite).await } )*
        }
        mod postgres {
            $( #[tokio::test] async fn $name() { super::$name(crate::testapp::Backend::Postgres).await } )*
        }
    };
}

security_tests!(role_matrix, no_session_oracle, sessions_are_rate_limited);

#[tokio::test]
async fn addresses_are_rate_limited() {
    let app = TestApp::spawn_configured(Backend::Sqlite, &[], |c, _| {
        c.rate_limit_per_address = 3;
    })
    .await
    .unwrap();
    let get = |path: &'static str| app.client.get(format!("{}{path}", app.base)).send();
    for _ in 0..3 {
        assert_eq!(get("/healthz").await.unwrap().status(), 200);
    }
    // Every route counts: GraphQL is refused now too.
    let resp = app
        .client
        .post(format!("{}/graphql", app.base))
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&after), "{after}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(error_code(&body), "RATE_LIMITED", "{body}");
}

#[tokio::test]
async fn rate_limits_can_be_turned_off() {
    let app = TestApp::spawn_configured(Backend::Sqlite, &[], |c, _| {
        c.rate_limit_per_address = 0;
        c.rate_limit_per_session = 0;
    })
    .await
    .unwrap();
    let (s, token) = app.start("checkout", json!({ "id": "r" }), json!({})).await;
    let id = s["id"].as_str().unwrap();
    for _ in 0..20 {
        let r = app.session(Some(&token), id).await;
        assert!(r["data"]["session"].is_object(), "{r}");
    }
}

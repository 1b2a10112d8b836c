//! The app-facing contract end to end: the example flows driven over real
//! GraphQL/HTTP, on SQLite and on PostgreSQL.

use serde_json::{Value, json};

use crate::testapp::{Backend, TestApp, component, error_code};

fn codes(session: &Value) -> Vec<(String, String)> {
    session["screen"]["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap_or("").to_string(),
                e["code"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn onboarding_ios_pro_german(app: TestApp) {
    let (s, token) = app
        .start(
            "onboarding",
            json!({ "id": "u-1", "attributes": { "first_name": "Ada", "plan": "pro" } }),
            json!({ "platform": "ios", "appVersion": "6.0.0", "locale": "de-DE" }),
        )
        .await;
    let id = s["id"].as_str().unwrap();
    assert_eq!(s["status"], "ACTIVE");
    assert_eq!(s["flowVersion"], 1);
    assert_eq!(s["screen"]["id"], "welcome");
    assert_eq!(
        s["screen"]["title"], "Willkommen, Ada!",
        "localized and templated: {s}"
    );
    // A flag the flow reads, evaluated for this user: `signup-headline`
    // splits users 50/50 (the onboarding-headline experiment); u-1 is in
    // `short`.
    assert_eq!(component(&s, "headline")["text"], "Join in 30 seconds");
    assert_eq!(
        s["screen"]["actions"],
        json!([{ "id": "next", "label": null, "validates": false }])
    );

    let s = app.submit(&token, id, "welcome", "next", json!({})).await;
    assert_eq!(
        s["screen"]["id"], "ios_notifications",
        "platform branch: {s}"
    );
    let s = app
        .submit(
            &token,
            id,
            "ios_notifications",
            "next",
            json!({ "notifications": true }),
        )
        .await;
    assert_eq!(s["screen"]["id"], "profile");

    // Everything wrong at once: each field reports, and what was typed stays.
    let s = app
        .submit(
            &token,
            id,
            "profile",
            "submit",
            json!({ "name": "A", "email": "not-an-email" }),
        )
        .await;
    assert_eq!(s["screen"]["id"], "profile");
    assert_eq!(
        codes(&s),
        vec![
            ("name".into(), "TOO_SHORT".into()),
            ("email".into(), "INVALID_EMAIL".into()),
            ("goal".into(), "REQUIRED".into()),
            ("terms".into(), "REQUIRED".into()),
        ]
    );
    assert_eq!(component(&s, "name")["value"], "A");
    assert_eq!(component(&s, "email")["value"], "not-an-email");

    let s = app
        .submit(
            &token,
            id,
            "profile",
            "submit",
            json!({ "name": "Ada", "email": "ada@example.com", "goal": "invest", "terms": true }),
        )
        .await;
    assert_eq!(s["screen"]["id"], "pro_tips", "attribute branch: {s}");
    assert_eq!(s["screen"]["errors"], json!([]));
    assert!(
        s["screen"]["components"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("**Ada**")
    );

    let s = app
        .submit(&token, id, "pro_tips", "finish", json!({}))
        .await;
    assert_eq!(s["status"], "COMPLETED");
    assert_eq!(s["screen"]["terminal"], true);
    assert_eq!(
        s["screen"]["components"][0]["text"],
        "Thanks, Ada! Your account is ready."
    );

    let r = app
        .submit_raw(&token, id, "done", "next", json!({}), None)
        .await;
    assert_eq!(error_code(&r), "SESSION_ENDED");
}

async fn onboarding_android_capabilities(app: TestApp) {
    let user = json!({ "id": "u-2" });
    // An old app gets the declared fallback.
    let (s, token) = app
        .start(
            "onboarding",
            user.clone(),
            json!({ "platform": "android", "appVersion": "5.1.9" }),
        )
        .await;
    let s = app
        .submit(
            &token,
            s["id"].as_str().unwrap(),
            "welcome",
            "next",
            json!({}),
        )
        .await;
    assert_eq!(s["screen"]["id"], "android_permissions");
    assert_eq!(s["screen"]["fallback"], true);
    assert_eq!(s["screen"]["components"][0]["kind"], "text");

    // A new app that lacks the custom component also gets the fallback.
    let (s, token) = app.start("onboarding", user.clone(), json!({ "platform": "android", "appVersion": "5.2.0", "capabilities": ["text", "heading", "button"] })).await;
    let s = app
        .submit(
            &token,
            s["id"].as_str().unwrap(),
            "welcome",
            "next",
            json!({}),
        )
        .await;
    assert_eq!(s["screen"]["fallback"], true);

    // A new app that has it gets the real screen.
    let caps = json!(["text", "heading", "button", "custom:permission_carousel"]);
    let (s, token) = app
        .start(
            "onboarding",
            user,
            json!({ "platform": "android", "appVersion": "5.2.1 (4411)", "capabilities": caps }),
        )
        .await;
    let s = app
        .submit(
            &token,
            s["id"].as_str().unwrap(),
            "welcome",
            "next",
            json!({}),
        )
        .await;
    assert_eq!(s["screen"]["fallback"], false);
    let custom = &s["screen"]["components"][0];
    assert_eq!(custom["__typename"], "CustomComponent");
    assert_eq!(custom["name"], "permission_carousel");
    assert_eq!(
        custom["props"],
        json!({ "pages": ["notifications", "contacts"] })
    );
}

async fn onboarding_web_skip(app: TestApp) {
    let (s, token) = app
        .start(
            "onboarding",
            json!({ "id": "u-3" }),
            json!({ "platform": "web" }),
        )
        .await;
    assert_eq!(
        s["screen"]["title"], "Welcome!",
        "English by default, no name: {s}"
    );
    // The headline is the user's arm of the 50/50 split: u-3 `short`,
    // u-2 `classic` (flagd's bucketing of "signup-headline" + user id).
    assert_eq!(component(&s, "headline")["text"], "Join in 30 seconds");
    let (other, _) = app
        .start(
            "onboarding",
            json!({ "id": "u-2" }),
            json!({ "locale": "en-GB" }),
        )
        .await;
    assert_eq!(component(&other, "headline")["text"], "Create your account");
    let id = s["id"].as_str().unwrap();
    let s = app.submit(&token, id, "welcome", "next", json!({})).await;
    assert_eq!(s["screen"]["id"], "profile");
    // `skip` does not validate.
    let s = app.submit(&token, id, "profile", "skip", json!({})).await;
    assert_eq!(s["status"], "COMPLETED");
    assert_eq!(
        s["screen"]["components"][0]["text"],
        "Thanks! Your account is ready."
    );
}

async fn checkout_validation_back_and_decision(app: TestApp) {
    let (s, token) = app
        .start(
            "checkout",
            json!({ "id": "c-1", "attributes": { "product": "Lamp", "unit_price": 30 } }),
            json!({}),
        )
        .await;
    let id = s["id"].as_str().unwrap();
    assert_eq!(s["screen"]["components"][0]["title"], "Lamp");
    let s = app
        .submit(&token, id, "cart", "next", json!({ "quantity": 11 }))
        .await;
    assert_eq!(codes(&s), vec![("quantity".into(), "TOO_LARGE".into())]);
    let s = app
        .submit(&token, id, "cart", "next", json!({ "quantity": 2.5 }))
        .await;
    assert_eq!(codes(&s), vec![("quantity".into(), "NOT_INTEGER".into())]);
    let s = app
        .submit(&token, id, "cart", "next", json!({ "quantity": "2" }))
        .await;
    assert_eq!(s["screen"]["id"], "shipping");

    let s = app
        .submit(&token, id, "shipping", "next", json!({ "address": "Main St 1", "postcode": "1234", "speed": "overnight", "deliver_after": "2024-02-30" }))
        .await;
    assert_eq!(
        codes(&s),
        vec![
            ("postcode".into(), "PATTERN_MISMATCH".into()),
            ("speed".into(), "INVALID_OPTION".into()),
            ("deliver_after".into(), "INVALID_DATE".into()),
        ]
    );
    let msg = s["screen"]["errors"][0]["message"].as_str().unwrap();
    assert_eq!(msg, "A postcode has five digits.");

    // Back to the cart: the quantity entered before is shown again.
    let b = app.back(&token, id).await;
    let s = b["data"]["back"].clone();
    assert_eq!(s["screen"]["id"], "cart", "{b}");
    assert_eq!(component(&s, "quantity")["numberValue"], 2.0);
    let r = app.back(&token, id).await;
    assert_eq!(error_code(&r), "NO_PREVIOUS_SCREEN");

    let s = app
        .submit(&token, id, "cart", "next", json!({ "quantity": 2 }))
        .await;
    assert_eq!(s["screen"]["id"], "shipping");
    // 2 × 30 = 60 ≤ 100 with standard delivery: straight to payment.
    let s = app
        .submit(
            &token,
            id,
            "shipping",
            "next",
            json!({ "address": "Main St 1", "postcode": "12345", "speed": "standard" }),
        )
        .await;
    assert_eq!(s["screen"]["id"], "payment", "{s}");
    // Back, choose express: the decision now routes through review.
    let s = app.back(&token, id).await["data"]["back"].clone();
    assert_eq!(component(&s, "postcode")["value"], "12345");
    let s = app
        .submit(
            &token,
            id,
            "shipping",
            "next",
            json!({ "address": "Main St 1", "postcode": "12345", "speed": "express" }),
        )
        .await;
    assert_eq!(s["screen"]["id"], "review");
    assert_eq!(
        s["screen"]["components"][0]["text"],
        "2 item(s) to Main St 1, 12345 (express)."
    );
    let s = app.submit(&token, id, "review", "confirm", json!({})).await;
    assert_eq!(s["screen"]["id"], "payment");
    let s = app
        .submit(
            &token,
            id,
            "payment",
            "place_order",
            json!({ "method": "card", "terms": true }),
        )
        .await;
    assert_eq!(s["status"], "COMPLETED");
    assert_eq!(s["screen"]["title"], "Order placed");
}

/// The eligibility decision before any backend step; the steps themselves
/// are driven in `steps.rs` (mock mode and a local upstream).
async fn loan_received_and_declined(app: TestApp) {
    for (status, income, expect) in [("unemployed", 0, "declined"), ("employed", 100, "declined")] {
        let (s, token) = app
            .start(
                "loan",
                json!({ "id": "l-1" }),
                json!({ "platform": "web", "locale": "en" }),
            )
            .await;
        let id = s["id"].as_str().unwrap();
        app.submit(&token, id, "intro", "start", json!({})).await;
        app.submit(&token, id, "personal", "next", json!({ "full_name": "Grace Hopper", "birth_date": "1990-12-09", "email": "grace@example.com" })).await;
        app.submit(
            &token,
            id,
            "amount",
            "next",
            json!({ "amount": 10000, "term": "36" }),
        )
        .await;
        let s = app
            .submit(
                &token,
                id,
                "employment",
                "submit",
                json!({ "status": status, "income": income, "consent": true }),
            )
            .await;
        assert_eq!(s["status"], "COMPLETED");
        assert_eq!(s["screen"]["id"], expect, "{status} {income}: {s}");
    }
}

async fn idempotency_and_stale_screens(app: TestApp) {
    let (s, token) = app
        .start("checkout", json!({ "id": "i-1" }), json!({}))
        .await;
    let id = s["id"].as_str().unwrap();
    let first = app
        .submit_raw(
            &token,
            id,
            "cart",
            "next",
            json!({ "quantity": 1 }),
            Some("k-1"),
        )
        .await;
    assert_eq!(first["data"]["submit"]["screen"]["id"], "shipping");
    // The same request again: the same answer, and the session did not move twice.
    let again = app
        .submit_raw(
            &token,
            id,
            "cart",
            "next",
            json!({ "quantity": 1 }),
            Some("k-1"),
        )
        .await;
    assert_eq!(again, first);
    let now = app.session(Some(&token), id).await;
    assert_eq!(now["data"]["session"]["screen"]["id"], "shipping");
    // The same key for a different submit is refused.
    let other = app
        .submit_raw(
            &token,
            id,
            "cart",
            "next",
            json!({ "quantity": 2 }),
            Some("k-1"),
        )
        .await;
    assert_eq!(error_code(&other), "IDEMPOTENCY_KEY_REUSED");
    // A stale screen is not applied: the current screen comes back.
    let stale = app
        .submit_raw(&token, id, "cart", "next", json!({ "quantity": 3 }), None)
        .await;
    let s = &stale["data"]["submit"];
    assert_eq!(s["screen"]["id"], "shipping");
    assert_eq!(s["screen"]["errors"][0]["code"], "STALE_SCREEN");
    assert_eq!(s["screen"]["errors"][0]["field"], Value::Null);
    // An unknown action is an error with a code.
    let r = app
        .submit_raw(&token, id, "shipping", "fly", json!({}), None)
        .await;
    assert_eq!(error_code(&r), "UNKNOWN_ACTION");
    // Values must be an object.
    let r = app
        .submit_raw(&token, id, "shipping", "next", json!([1, 2]), None)
        .await;
    assert_eq!(error_code(&r), "BAD_USER_INPUT");
}

/// A client's retry of its last submit (its answer was lost on the way)
/// is answered by the server that answered it, from the record it made
/// with the snapshot, without the store; another server reads the record.
async fn a_retry_is_answered_without_the_store(app: TestApp) {
    let (s, token) = app
        .start("checkout", json!({ "id": "r-1" }), json!({}))
        .await;
    let id = s["id"].as_str().unwrap();
    let cart = json!({ "quantity": 1 });
    let first = app
        .submit_raw(&token, id, "cart", "next", cart.clone(), Some("r-k1"))
        .await;
    assert_eq!(
        first["data"]["submit"]["screen"]["id"], "shipping",
        "{first}"
    );
    // With the store's record gone, only the server's own can answer as
    // the first time: the store alone would answer STALE_SCREEN now.
    let store = app.store().await;
    let sql = "DELETE FROM idempotency";
    match store.raw_pools() {
        baton::store::RawPools::Sqlite { write, .. } => {
            sqlx::query(sql).execute(write).await.unwrap();
        }
        baton::store::RawPools::Postgres(pool) => {
            sqlx::query(sql).execute(pool).await.unwrap();
        }
    }
    store.close().await;
    let again = app
        .submit_raw(&token, id, "cart", "next", cart.clone(), Some("r-k1"))
        .await;
    assert_eq!(again, first);
    let other = app
        .submit_raw(
            &token,
            id,
            "cart",
            "next",
            json!({ "quantity": 2 }),
            Some("r-k1"),
        )
        .await;
    assert_eq!(error_code(&other), "IDEMPOTENCY_KEY_REUSED", "{other}");
    // Without the token it is the unknown session it always is.
    let r = app
        .submit_raw("not-the-token", id, "cart", "next", cart, Some("r-k1"))
        .await;
    assert_eq!(error_code(&r), "SESSION_NOT_FOUND", "{r}");

    // A server that did not answer it reads the store's record.
    let address = json!({ "address": "Main St 1", "postcode": "12345", "speed": "standard" });
    let second = app
        .submit_raw(
            &token,
            id,
            "shipping",
            "next",
            address.clone(),
            Some("r-k2"),
        )
        .await;
    assert!(second.get("errors").is_none(), "{second}");
    let other_server = app.restart().await;
    let again = other_server
        .submit_raw(&token, id, "shipping", "next", address, Some("r-k2"))
        .await;
    assert_eq!(again, second);
}

async fn tokens_and_unknowns(app: TestApp) {
    let (s, token) = app
        .start("checkout", json!({ "id": "t-1" }), json!({}))
        .await;
    let id = s["id"].as_str().unwrap();
    assert!(token.len() >= 40, "a long random token");
    let r = app.session(None, id).await;
    assert_eq!(error_code(&r), "UNAUTHENTICATED");
    // A token that is not the session's: as for an unknown id (no oracle).
    let r = app.session(Some("not-the-token"), id).await;
    assert_eq!(r["data"]["session"], Value::Null, "{r}");
    let r = app
        .submit_raw(
            "not-the-token",
            id,
            "cart",
            "next",
            json!({ "quantity": 1 }),
            None,
        )
        .await;
    assert_eq!(error_code(&r), "SESSION_NOT_FOUND");
    let r = app.session(Some(&token), "no-such-session").await;
    assert_eq!(r["data"]["session"], Value::Null);
    assert!(r.get("errors").is_none(), "{r}");
    let q = format!(
        "mutation {{ startFlow(input: {{flowId: \"nope\", user: {{id: \"x\"}}}}) {{ ...S }} }} {}",
        crate::testapp::SESSION_FIELDS
    );
    let r = app.gql(&q, json!({}), None).await;
    assert_eq!(error_code(&r), "FLOW_NOT_FOUND");
    assert!(r["errors"][0]["extensions"]["hint"].is_string());
    let q = format!(
        "mutation {{ startFlow(input: {{flowId: \"checkout\", user: {{id: \"\"}}}}) {{ ...S }} }} {}",
        crate::testapp::SESSION_FIELDS
    );
    assert_eq!(
        error_code(&app.gql(&q, json!({}), None).await),
        "BAD_USER_INPUT"
    );
}

async fn restart_loses_nothing(app: TestApp) {
    let (s, token) = app
        .start("checkout", json!({ "id": "r-1" }), json!({}))
        .await;
    let id = s["id"].as_str().unwrap().to_string();
    app.submit(&token, &id, "cart", "next", json!({ "quantity": 4 }))
        .await;
    let url = app.database_url.clone();
    // The first server stays up until the end: dropping it (its task
    // aborted, its connections closing) while the second one read made
    // that read fail with SQLite's "database is locked" about one run in
    // fifteen.
    let restarted = app.restart().await;
    let s = restarted.session(Some(&token), &id).await;
    assert_eq!(s["data"]["session"]["screen"]["id"], "shipping", "{s}");
    let b = restarted.back(&token, &id).await;
    assert_eq!(
        component(&b["data"]["back"], "quantity")["numberValue"],
        4.0
    );
    assert!(!url.is_empty());
    drop(app);
}

async fn sessions_keep_their_flow_version(app: TestApp) {
    let (old, old_token) = app
        .start("checkout", json!({ "id": "v-1" }), json!({}))
        .await;
    assert_eq!(old["flowVersion"], 1);
    // Publish a changed checkout: the cart title changes.
    let path = app.flows.join("checkout.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("title: Your cart", "title: Your basket");
    std::fs::write(&path, text).unwrap();
    let restarted = app.restart().await;
    let (new, _) = restarted
        .start("checkout", json!({ "id": "v-2" }), json!({}))
        .await;
    assert_eq!(new["flowVersion"], 2);
    assert_eq!(new["screen"]["title"], "Your basket");
    let s = restarted
        .session(Some(&old_token), old["id"].as_str().unwrap())
        .await;
    assert_eq!(s["data"]["session"]["flowVersion"], 1);
    assert_eq!(s["data"]["session"]["screen"]["title"], "Your cart");
}

/// A client is never sent what it cannot render, nor treated as current
/// when its version is not a version.
async fn capabilities_keep_their_promise(app: TestApp) {
    let start = |client: Value| {
        let app = &app;
        async move {
            app.gql(
                "mutation($i: StartFlowInput!) { startFlow(input: $i) { id } }",
                json!({ "i": { "flowId": "onboarding", "user": { "id": "u-9" }, "client": client } }),
                None,
            )
            .await
        }
    };
    let r = start(json!({ "appVersion": "banana" })).await;
    assert_eq!(error_code(&r), "BAD_USER_INPUT", "{r}");
    assert!(
        r["errors"][0]["extensions"]["hint"]
            .as_str()
            .is_some_and(|h| h.contains("semver")),
        "{r}"
    );
    // `welcome` uses a heading and has no fallback: a client without
    // headings gets a clear error, not a screen it cannot draw.
    let r = start(json!({ "capabilities": ["text", "button"] })).await;
    assert_eq!(error_code(&r), "CLIENT_UNSUPPORTED", "{r}");
    assert!(r["errors"][0]["extensions"]["hint"].is_string(), "{r}");
    let r =
        start(json!({ "appVersion": "v6.1", "capabilities": ["text", "heading", "button"] })).await;
    assert!(r["data"]["startFlow"]["id"].is_string(), "{r}");
}

const RATING_FLOW: &str = r#"
id: rating
start: rate
nodes:
  - id: rate
    kind: screen
    components:
      - kind: custom
        id: stars
        name: star_rating
        inputs:
          - { id: stars, type: number, required: true, min: 1, max: 5, integer: true }
      - { kind: button, label: Send, action: send }
    fallback:
      components:
        - { kind: number_input, id: stars, label: Stars, required: true, min: 1, max: 5, integer: true }
        - { kind: button, label: Send, action: send }
    actions:
      - { id: send, next: thanks }
  - id: thanks
    kind: end
    title: Thanks
    components:
      - { kind: image, url: "https://example.test/heart.png", alt: Heart }
"#;

/// A custom component tells the client what it submits, and the end screen
/// of a client without `image` is the built-in text one.
async fn custom_inputs_and_last_screens(backend: Backend) {
    let Some(app) =
        TestApp::spawn_configured(backend, &[("rating.yaml", RATING_FLOW.into())], |_, _| {}).await
    else {
        return;
    };
    let (s, token) = app
        .start(
            "rating",
            json!({ "id": "u-rating" }),
            json!({ "capabilities": ["custom:star_rating", "button", "text"] }),
        )
        .await;
    let id = s["id"].as_str().expect("session id").to_string();
    let r = app
        .gql(
            "query($id: ID!) { session(id: $id) { screen { components { ... on CustomComponent \
             { name inputs { id type required min max integer options } } } } } }",
            json!({ "id": id }),
            Some(&token),
        )
        .await;
    assert_eq!(
        r["data"]["session"]["screen"]["components"][0],
        json!({ "name": "star_rating", "inputs": [{ "id": "stars", "type": "NUMBER", "required": true,
            "min": 1, "max": 5, "integer": true, "options": [] }] }),
        "{r}"
    );
    let r = app
        .submit(&token, &id, "rate", "send", json!({ "stars": 9 }))
        .await;
    assert_eq!(r["screen"]["errors"][0]["field"], "stars", "{r}");
    let r = app
        .submit(&token, &id, "rate", "send", json!({ "stars": 4 }))
        .await;
    assert_eq!(r["status"], "COMPLETED", "{r}");
    assert_eq!(r["screen"]["fallback"], true, "{r}");
    assert_eq!(r["screen"]["components"][0]["kind"], "text", "{r}");
}

#[tokio::test]
async fn custom_inputs_and_last_screens_sqlite() {
    custom_inputs_and_last_screens(Backend::Sqlite).await;
}

#[tokio::test]
async fn custom_inputs_and_last_screens_postgres() {
    custom_inputs_and_last_screens(Backend::Postgres).await;
}

crate::both_backends! {
    capabilities_keep_their_promise => capabilities_keep_their_promise;
    onboarding_ios_pro_german => onboarding_ios_pro_german;
    onboarding_android_capabilities => onboarding_android_capabilities;
    onboarding_web_skip => onboarding_web_skip;
    checkout_validation_back_and_decision => checkout_validation_back_and_decision;
    loan_received_and_declined => loan_received_and_declined;
    idempotency_and_stale_screens => idempotency_and_stale_screens;
    a_retry_is_answered_without_the_store => a_retry_is_answered_without_the_store;
    tokens_and_unknowns => tokens_and_unknowns;
    restart_loses_nothing => restart_loses_nothing;
    sessions_keep_their_flow_version => sessions_keep_their_flow_version;
}

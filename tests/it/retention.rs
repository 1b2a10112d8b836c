//! Retention of idempotency records (`--idempotency-hours`): records older
//! than the cutoff are deleted in batches, newer ones stay, and a retry
//! whose record is gone is treated as a new submit.

use serde_json::json;

use crate::testapp::{Backend, GREETING_FLOW, TestApp, error_code};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn old_idempotency_records_are_deleted(backend: Backend) {
    let Some(app) = TestApp::spawn_configured(
        backend,
        &[("greeting.yaml", GREETING_FLOW.to_owned())],
        |c, _| c.idempotency_hours = 1,
    )
    .await
    else {
        return;
    };
    // Three old records, then the cutoff, then a new one.
    let mut sessions = Vec::new();
    let mut cutoff = 0;
    for (i, name) in ["Ann", "Bo", "Cy", "Di"].iter().enumerate() {
        if i == 3 {
            let pause = std::time::Duration::from_millis(20);
            tokio::time::sleep(pause).await;
            cutoff = now_ms();
            tokio::time::sleep(pause).await;
        }
        let (s, token) = app
            .start("greeting", json!({ "id": name }), json!({}))
            .await;
        let id = s["id"].as_str().unwrap().to_owned();
        let key = format!("key-{name}");
        let r = app
            .submit_raw(
                &token,
                &id,
                "hello",
                "next",
                json!({ "name": name }),
                Some(&key),
            )
            .await;
        assert_eq!(r["data"]["submit"]["status"], "COMPLETED", "{r}");
        sessions.push((id, token, key));
    }
    let store = app.store().await;
    assert_eq!(
        store
            .delete_idempotency_before(cutoff - 60_000, 2)
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.delete_idempotency_before(cutoff, 2).await.unwrap(), 2);
    assert_eq!(store.delete_idempotency_before(cutoff, 2).await.unwrap(), 1);
    assert_eq!(store.delete_idempotency_before(cutoff, 2).await.unwrap(), 0);
    store.close().await;

    // A fresh server (no cached answers): the new record still answers its
    // retry; a deleted one's retry is a new submit, which the ended
    // session refuses.
    let app = app.restart().await;
    let (id, token, key) = &sessions[3];
    let r = app
        .submit_raw(
            token,
            id,
            "hello",
            "next",
            json!({ "name": "Di" }),
            Some(key),
        )
        .await;
    assert_eq!(r["data"]["submit"]["status"], "COMPLETED", "{r}");
    let (id, token, key) = &sessions[0];
    let r = app
        .submit_raw(
            token,
            id,
            "hello",
            "next",
            json!({ "name": "Ann" }),
            Some(key),
        )
        .await;
    assert_eq!(error_code(&r), "SESSION_ENDED", "{r}");
}

#[tokio::test]
async fn old_idempotency_records_are_deleted_sqlite() {
    old_idempotency_records_are_deleted(Backend::Sqlite).await;
}

#[tokio::test]
async fn old_idempotency_records_are_deleted_postgres() {
    old_idempotency_records_are_deleted(Backend::Postgres).await;
}

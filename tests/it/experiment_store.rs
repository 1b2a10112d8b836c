//! The experiment tables on both backends: sticky assignments (first
//! writer wins, rows never change), forced variants per user, and the
//! results query using its index instead of scanning the session log.

use baton::store::experiments::tally_sql;
use baton::store::{Backend, RawPools, Store};

use crate::common::TestDb;

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(crate::common::TestDb::sqlite().await).await;
            } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(db) = crate::common::TestDb::postgres().await else { return };
                super::$name(db).await;
            } )*
        }
    };
}

on_both_backends!(
    the_first_assignment_wins_and_never_changes,
    forced_users_are_upserted_and_cleared,
    results_read_the_experiment_index,
);

async fn raw(store: &Store, sql: &str) -> Result<Vec<String>, sqlx::Error> {
    use sqlx::Row;
    let rows = match store.raw_pools() {
        RawPools::Sqlite { write, .. } => sqlx::query(sql)
            .fetch_all(write)
            .await?
            .iter()
            .map(|r| format!("{:?}", r.try_get::<String, _>(r.len() - 1)))
            .collect(),
        RawPools::Postgres(pool) => sqlx::query(sql)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| format!("{:?}", r.try_get::<String, _>(0)))
            .collect(),
    };
    Ok(rows)
}

async fn the_first_assignment_wins_and_never_changes(db: TestDb) {
    let store = &db.store;
    assert_eq!(store.experiment_assignment("e", "u").await.unwrap(), None);
    // Concurrent first assignments (two replicas, two sessions) agree.
    let tries = ["short", "classic", "short", "classic", "classic", "short"];
    let got =
        futures_util::future::join_all(tries.iter().map(|v| store.experiment_assign("e", "u", v)))
            .await;
    let first = got[0].as_ref().unwrap().clone();
    assert!(got.iter().all(|g| g.as_ref().unwrap() == &first), "{got:?}");
    assert_eq!(
        store.experiment_assign("e", "u", "other").await.unwrap(),
        first
    );
    assert_eq!(
        store.experiment_assignment("e", "u").await.unwrap(),
        Some(first.clone())
    );
    // Another experiment, another user: their own rows.
    assert_eq!(store.experiment_assign("f", "u", "x").await.unwrap(), "x");
    assert_eq!(store.experiment_assign("e", "v", "y").await.unwrap(), "y");
    // Not even a hand-written UPDATE moves an assignment.
    let err = raw(store, "UPDATE experiment_assignments SET variant = 'z'")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("immutable"), "{err}");
    assert_eq!(
        store.experiment_assignment("e", "u").await.unwrap(),
        Some(first)
    );
}

async fn forced_users_are_upserted_and_cleared(db: TestDb) {
    let store = &db.store;
    store.experiment_assign("e", "u", "short").await.unwrap();
    store
        .experiment_force_user("e", "u", "classic", "qa")
        .await
        .unwrap();
    store
        .experiment_force_user("e", "u", "medium", "qa")
        .await
        .unwrap();
    let found = store.experiment_lookup("e", "u").await.unwrap();
    assert_eq!(found.forced.as_deref(), Some("medium"));
    assert_eq!(found.assigned.as_deref(), Some("short"));
    assert!(store.experiment_unforce_user("e", "u").await.unwrap());
    assert!(!store.experiment_unforce_user("e", "u").await.unwrap());
    let found = store.experiment_lookup("e", "u").await.unwrap();
    assert_eq!(found.forced, None);
    assert_eq!(found.assigned.as_deref(), Some("short"));
}

async fn results_read_the_experiment_index(db: TestDb) {
    let store = &db.store;
    assert!(store.experiment_tally("e").await.unwrap().is_empty());
    let sql = tally_sql(store.backend()).replace("$1", "'e'");
    let plan = match store.backend() {
        Backend::Sqlite => raw(store, &format!("EXPLAIN QUERY PLAN {sql}"))
            .await
            .unwrap(),
        Backend::Postgres => {
            use sqlx::Row;
            let RawPools::Postgres(pool) = store.raw_pools() else {
                unreachable!()
            };
            // An empty table is cheapest to scan; ask whether the index can
            // serve, on one connection.
            let mut conn = pool.acquire().await.unwrap();
            sqlx::query("SET enable_seqscan = off")
                .execute(&mut *conn)
                .await
                .unwrap();
            sqlx::query(&format!("EXPLAIN {sql}"))
                .fetch_all(&mut *conn)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<String, _>(0))
                .collect()
        }
    };
    let plan = plan.join("\n");
    assert!(plan.contains("session_events_experiment"), "{plan}");
}

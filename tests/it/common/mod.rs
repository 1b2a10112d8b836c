//! Helpers shared by the integration tests: fresh, isolated databases on
//! both backends.
//!
//! PostgreSQL tests read `BATON_TEST_POSTGRES_URL`; each one gets its own new
//! schema (`baton_t_<uuid v7>`) in that database, so tests run in parallel
//! without seeing each other. Schemas older than an hour (left by earlier
//! runs) are dropped once per test process.

#![allow(dead_code)] // not every test module uses every helper

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use baton::store::{Store, StoreOptions};
use sqlx::{Connection, Executor, PgConnection};
use tempfile::TempDir;
use tokio::sync::OnceCell;
use uuid::Uuid;

pub const PG_URL_VAR: &str = "BATON_TEST_POSTGRES_URL";
const SCHEMA_PREFIX: &str = "baton_t_";
const STALE_AFTER: Duration = Duration::from_secs(3600);

/// The PostgreSQL test URL, or `None` after printing a loud SKIPPED line.
pub fn pg_url() -> Option<String> {
    match std::env::var(PG_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            let test = std::thread::current()
                .name()
                .unwrap_or("<unnamed test>")
                .to_owned();
            eprintln!("!!!!! SKIPPED ({PG_URL_VAR} not set): {test}");
            None
        }
    }
}

/// A migrated store on a new SQLite file; the file lives as long as the `TempDir`.
pub async fn fresh_sqlite() -> (Store, TempDir) {
    let db = TestDb::sqlite().await;
    (db.store, db.dir.expect("sqlite test db has a dir"))
}

/// A migrated store in a new PostgreSQL schema, or `None` (and a SKIPPED
/// line) when `BATON_TEST_POSTGRES_URL` is not set.
pub async fn fresh_postgres() -> Option<Store> {
    TestDb::postgres().await.map(|db| db.store)
}

/// A fresh store plus what it takes to reconnect to the same data.
pub struct TestDb {
    pub store: Store,
    /// Connects to the same database (same SQLite file, same PG schema).
    pub url: String,
    dir: Option<TempDir>,
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("create temp dir");
        let url = format!("sqlite://{}", dir.path().join("baton.db").display());
        let store = Store::connect(&url, StoreOptions::default())
            .await
            .unwrap_or_else(|e| panic!("connect {url}: {e}"));
        TestDb {
            store,
            url,
            dir: Some(dir),
        }
    }

    pub async fn postgres() -> Option<TestDb> {
        let url = fresh_postgres_url().await?;
        let store = Store::connect(&url, StoreOptions::default())
            .await
            .unwrap_or_else(|e| panic!("connect to the test schema: {e}"));
        Some(TestDb {
            store,
            url,
            dir: None,
        })
    }

    /// Drops the store without closing it first, as a crash would, and
    /// connects a new one to the same data.
    pub async fn restart(&mut self) {
        let url = self.url.clone();
        self.store = Store::connect(&url, StoreOptions::default())
            .await
            .unwrap_or_else(|e| panic!("reconnect after restart: {e}"));
    }

    /// A second, independent `Store` on the same data (like a restart, or
    /// another replica).
    pub async fn reconnect(&self) -> Store {
        Store::connect(&self.url, StoreOptions::default())
            .await
            .unwrap_or_else(|e| panic!("reconnect: {e}"))
    }
}

/// Creates a new empty schema and returns a URL whose connections use it.
pub async fn fresh_postgres_url() -> Option<String> {
    let base = pg_url()?;
    let mut conn = PgConnection::connect(&base)
        .await
        .unwrap_or_else(|e| panic!("connect to {PG_URL_VAR}: {e}"));
    static CLEANED: OnceCell<()> = OnceCell::const_new();
    CLEANED
        .get_or_init(|| async { drop_stale_schemas(&base).await })
        .await;
    let schema = format!("{SCHEMA_PREFIX}{}", Uuid::now_v7().simple());
    conn.execute(format!("CREATE SCHEMA {schema}").as_str())
        .await
        .unwrap_or_else(|e| panic!("create schema {schema}: {e}"));
    let _ = conn.close().await;
    let separator = if base.contains('?') { '&' } else { '?' };
    Some(format!(
        "{base}{separator}options=-c%20search_path%3D{schema}"
    ))
}

/// Drops test schemas whose uuid v7 says they are over an hour old. Best
/// effort: another test process may be dropping the same ones.
async fn drop_stale_schemas(base: &str) {
    let Ok(mut conn) = PgConnection::connect(base).await else {
        return;
    };
    let names: Vec<String> =
        sqlx::query_scalar("SELECT nspname::TEXT FROM pg_namespace WHERE nspname LIKE $1")
            .bind(format!("{SCHEMA_PREFIX}%"))
            .fetch_all(&mut conn)
            .await
            .unwrap_or_default();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    for name in names {
        let Some(created) = name
            .strip_prefix(SCHEMA_PREFIX)
            .and_then(|id| Uuid::parse_str(id).ok())
            .and_then(|id| id.get_timestamp())
        else {
            continue;
        };
        let (secs, _) = created.to_unix();
        if now.saturating_sub(Duration::from_secs(secs)) > STALE_AFTER {
            let _ = conn
                .execute(format!("DROP SCHEMA IF EXISTS {name} CASCADE").as_str())
                .await;
        }
    }
    let _ = conn.close().await;
}

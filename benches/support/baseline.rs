//! The bare baseline the HTTP benchmarks compare `submit` with: axum +
//! async-graphql whose one mutation does one INSERT on the same store.

use std::str::FromStr;
use std::time::Duration;

use async_graphql::{EmptySubscription, Object, Schema};

enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

struct BaselineMutation;

#[Object]
impl BaselineMutation {
    async fn insert(
        &self,
        ctx: &async_graphql::Context<'_>,
        id: String,
    ) -> async_graphql::Result<bool> {
        let sql = "INSERT INTO baseline (id, payload) VALUES ($1, $2)";
        let payload = r#"{"kind":"submitted"}"#;
        match ctx.data_unchecked::<Pool>() {
            Pool::Sqlite(p) => {
                sqlx::query(sql).bind(&id).bind(payload).execute(p).await?;
            }
            Pool::Postgres(p) => {
                sqlx::query(sql).bind(&id).bind(payload).execute(p).await?;
            }
        }
        Ok(true)
    }
}

struct BaselineQuery;

#[Object]
impl BaselineQuery {
    async fn ok(&self) -> bool {
        true
    }
}

/// Serves the baseline on a store at `url` with `connections` pooled
/// connections, on `addr` (any free port when `None`); its base URL.
pub async fn spawn_baseline(
    url: &str,
    connections: u32,
    addr: Option<std::net::SocketAddr>,
) -> String {
    let pool = if url.starts_with("sqlite:") {
        // The same SQLite settings Baton's store uses.
        let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)
            .unwrap()
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let p = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(connections)
            .connect_with(opts)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE baseline (id TEXT PRIMARY KEY, payload TEXT NOT NULL)")
            .execute(&p)
            .await
            .unwrap();
        Pool::Sqlite(p)
    } else {
        let p = sqlx::postgres::PgPoolOptions::new()
            .max_connections(connections)
            .connect(url)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE baseline (id TEXT PRIMARY KEY, payload TEXT NOT NULL)")
            .execute(&p)
            .await
            .unwrap();
        Pool::Postgres(p)
    };
    let schema = Schema::build(BaselineQuery, BaselineMutation, EmptySubscription)
        .data(pool)
        .finish();
    let app = axum::Router::new()
        .route(
            "/graphql",
            axum::routing::post(move |req: async_graphql_axum::GraphQLRequest| {
                let schema = schema.clone();
                async move {
                    async_graphql_axum::GraphQLResponse::from(
                        schema.execute(req.into_inner()).await,
                    )
                }
            }),
        )
        // What a bench that runs the baseline as its own process waits on,
        // as it does on Baton's.
        .route("/readyz", axum::routing::get(|| async { "ok" }));
    let addr = addr.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap());
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

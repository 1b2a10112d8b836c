//! The bare baselines the HTTP benchmarks compare Baton with: axum +
//! async-graphql on the same store. `insert` (what `submit` is compared
//! with) does one INSERT; `chain` (what the steps bench's 3-step flow is
//! compared with) does what that flow's run must at least do: a session
//! row, then three upstream calls, each followed by a commit of its output
//! and the session's new node.

use std::str::FromStr;
use std::time::Duration;

use async_graphql::{EmptySubscription, Object, Schema};

enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// Runs `$body` with `$p` bound to the pool, whichever store it is (the
/// statements are the same text on both); its value, which differs by
/// store, is dropped.
macro_rules! on_pool {
    ($pool:expr, |$p:ident| $body:expr) => {
        match $pool {
            Pool::Sqlite($p) => {
                $body;
            }
            Pool::Postgres($p) => {
                $body;
            }
        }
    };
}

struct BaselineMutation;

/// Where `chain` sends its calls.
struct ChainUpstream {
    url: String,
    http: reqwest::Client,
}

/// The chain's nodes in order, each with the node after it.
const CHAIN: [(&str, &str); 3] = [("a", "b"), ("b", "c"), ("c", "done")];

#[Object]
impl BaselineMutation {
    async fn insert(
        &self,
        ctx: &async_graphql::Context<'_>,
        id: String,
    ) -> async_graphql::Result<bool> {
        let sql = "INSERT INTO baseline (id, payload) VALUES ($1, $2)";
        let payload = r#"{"kind":"submitted"}"#;
        on_pool!(ctx.data_unchecked::<Pool>(), |p| {
            sqlx::query(sql).bind(&id).bind(payload).execute(p).await?
        });
        Ok(true)
    }

    /// A session walked through three upstream calls; answers its status.
    async fn chain(
        &self,
        ctx: &async_graphql::Context<'_>,
        user: String,
    ) -> async_graphql::Result<String> {
        let up = ctx.data::<ChainUpstream>()?;
        let id = uuid::Uuid::new_v4().to_string();
        let pool = ctx.data_unchecked::<Pool>();
        let start = "INSERT INTO baseline_chain (id, user_id, node) VALUES ($1, $2, 'a')";
        on_pool!(pool, |p| sqlx::query(start)
            .bind(&id)
            .bind(&user)
            .execute(p)
            .await?);
        let body = serde_json::json!({ "user": user });
        for (i, &(node, next)) in CHAIN.iter().enumerate() {
            let output: serde_json::Value = up
                .http
                .post(&up.url)
                .json(&body)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let output = output.to_string();
            let step = "INSERT INTO baseline_steps (session_id, node, output) VALUES ($1, $2, $3)";
            let moved = "UPDATE baseline_chain SET node = $2 WHERE id = $1";
            // As Baton: on PostgreSQL a chain's middle commits do not wait
            // for the WAL flush; its last one flushes them with it.
            let flush_later = matches!(pool, Pool::Postgres(_)) && i + 1 < CHAIN.len();
            on_pool!(pool, |p| {
                let mut tx = p.begin().await?;
                if flush_later {
                    sqlx::query("SET LOCAL synchronous_commit = off")
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query(step)
                    .bind(&id)
                    .bind(node)
                    .bind(&output)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(moved)
                    .bind(&id)
                    .bind(next)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?
            });
        }
        Ok("COMPLETED".to_owned())
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
    let pool = connect(url, connections).await;
    let schema = Schema::build(BaselineQuery, BaselineMutation, EmptySubscription)
        .data(pool)
        .finish();
    serve(schema, addr).await
}

/// The baseline with its `chain` mutation calling `POST upstream`.
pub async fn spawn_chain_baseline(url: &str, connections: u32, upstream: String) -> String {
    let pool = connect(url, connections).await;
    for table in [
        "CREATE TABLE baseline_chain (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, node TEXT NOT NULL)",
        "CREATE TABLE baseline_steps (session_id TEXT NOT NULL, node TEXT NOT NULL, \
         output TEXT NOT NULL, PRIMARY KEY (session_id, node))",
    ] {
        on_pool!(&pool, |p| sqlx::query(table).execute(p).await.unwrap());
    }
    let schema = Schema::build(BaselineQuery, BaselineMutation, EmptySubscription)
        .data(pool)
        .data(ChainUpstream {
            url: upstream,
            http: reqwest::Client::new(),
        })
        .finish();
    serve(schema, None).await
}

/// A pool on `url` with the `baseline` table made.
async fn connect(url: &str, connections: u32) -> Pool {
    let pool = if url.starts_with("sqlite:") {
        // The same SQLite settings Baton's store uses.
        let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)
            .unwrap()
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        Pool::Sqlite(
            sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(connections)
                .connect_with(opts)
                .await
                .unwrap(),
        )
    } else {
        Pool::Postgres(
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(connections)
                .connect(url)
                .await
                .unwrap(),
        )
    };
    let table = "CREATE TABLE baseline (id TEXT PRIMARY KEY, payload TEXT NOT NULL)";
    on_pool!(&pool, |p| sqlx::query(table).execute(p).await.unwrap());
    pool
}

async fn serve(
    schema: Schema<BaselineQuery, BaselineMutation, EmptySubscription>,
    addr: Option<std::net::SocketAddr>,
) -> String {
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

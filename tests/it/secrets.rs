//! A secret an upstream echoes back, as a value, inside a string or as an
//! object key, is redacted before anything is stored or shown: it reaches
//! no answer and no row of any table.

use std::collections::HashMap;

use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::{Value, json};

use crate::testapp::{Backend, TestApp};

const SECRET: &str = "tok-9f8e7d6c5b4a";

/// An upstream that echoes the `Authorization` header everywhere it can.
async fn echo_upstream() -> u16 {
    async fn echo(headers: HeaderMap) -> axum::Json<Value> {
        let auth = headers["authorization"].to_str().unwrap().to_owned();
        let token = auth.trim_start_matches("Bearer ").to_owned();
        axum::Json(json!({
            "keys": { auth.clone(): true, format!("other {token}"): 1, "Bearer [redacted]": "plain" },
            "echo": format!("x{token}y"),
            "list": [token],
        }))
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        axum::serve(listener, axum::Router::new().route("/echo", post(echo)))
            .await
            .unwrap()
    });
    port
}

fn flow(port: u16) -> String {
    format!(
        r#"
id: echoed
start: call
nodes:
  - id: call
    kind: http
    method: POST
    url: "http://127.0.0.1:{port}/echo"
    headers: {{ Authorization: "Bearer {{{{ secrets.API }}}}" }}
    next: shown
  - id: shown
    kind: screen
    title: "{{% for k in steps.call.body.keys %}}[{{{{ k }}}}]{{% endfor %}} {{{{ steps.call.body.echo }}}} {{{{ steps.call.body.list[0] }}}}"
    components: [{{ id: t, kind: text, text: "{{{{ steps.call.body.keys | length }}}} keys" }}]
    actions: [{{ id: ok, next: done }}]
  - {{ id: done, kind: end }}
"#
    )
}

/// Every table's rows as text.
async fn all_rows(app: &TestApp, backend: Backend) -> String {
    let mut out = String::new();
    match backend {
        Backend::Sqlite => {
            // The database file and its WAL, byte for byte: nothing stored
            // anywhere may hold the secret.
            let path = app.database_url.trim_start_matches("sqlite://").to_owned();
            for file in [path.clone(), format!("{path}-wal")] {
                if let Ok(bytes) = std::fs::read(&file) {
                    out.push_str(&String::from_utf8_lossy(&bytes));
                }
            }
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&app.database_url).await.unwrap();
            let tables: Vec<(String,)> = sqlx::query_as(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            assert!(tables.len() > 3, "{tables:?}");
            for (table,) in tables {
                let rows: Vec<(String,)> =
                    sqlx::query_as(&format!("SELECT t::text FROM {table} t"))
                        .fetch_all(&pool)
                        .await
                        .unwrap();
                for (row,) in rows {
                    out.push_str(&row);
                    out.push('\n');
                }
            }
            pool.close().await;
        }
    }
    out
}

async fn echoed_secrets_are_redacted_everywhere(backend: Backend) {
    let port = echo_upstream().await;
    let Some(app) = TestApp::spawn_configured(backend, &[("echoed.yaml", flow(port))], |c, _| {
        c.step_budget_ms = 5000;
        c.secrets = Some(HashMap::from([("API".to_owned(), SECRET.to_owned())]));
    })
    .await
    else {
        return;
    };
    let (s, token) = app.start("echoed", json!({ "id": "u1" }), json!({})).await;
    let sid = s["id"].as_str().unwrap().to_owned();
    assert_eq!(s["screen"]["id"], "shown", "{s}");
    let title = s["screen"]["title"].as_str().unwrap();
    assert!(!title.contains(SECRET), "secret on the screen: {title}");
    // Keys that collide once redacted are all kept.
    assert!(
        title.contains("[Bearer [redacted]]") && title.contains("#2"),
        "{title}"
    );
    assert!(title.contains("x[redacted]y"), "{title}");
    let read = app.session(Some(&token), &sid).await;
    assert!(
        !read.to_string().contains(SECRET),
        "secret in `session`: {read}"
    );
    app.submit(&token, &sid, "shown", "ok", json!({})).await;
    let rows = all_rows(&app, backend).await;
    assert!(rows.contains("redacted"), "the rows were not read");
    assert!(!rows.contains(SECRET), "the secret was stored");
}

mod sqlite {
    #[tokio::test]
    async fn echoed_secrets_are_redacted_everywhere() {
        super::echoed_secrets_are_redacted_everywhere(crate::testapp::Backend::Sqlite).await
    }
}

mod postgres {
    #[tokio::test]
    async fn echoed_secrets_are_redacted_everywhere() {
        super::echoed_secrets_are_redacted_everywhere(crate::testapp::Backend::Postgres).await
    }
}

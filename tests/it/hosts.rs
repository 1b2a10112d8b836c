//! `--allow-hosts` at call time: a name the list allows may still not be
//! pointed at a loopback, private or link-local address unless the list
//! allows that address explicitly. Checked on the addresses the step
//! actually connects to.

use axum::routing::get;
use serde_json::json;

use crate::testapp::{Backend, TestApp};

/// This machine's own name, when it resolves to a special-range address
/// (on Debian it does, through /etc/hosts: 127.0.0.1 or 127.0.1.1).
async fn local_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()?
        .trim()
        .to_owned();
    let addrs: Vec<_> = tokio::net::lookup_host((name.as_str(), 0))
        .await
        .ok()?
        .collect();
    let special = !addrs.is_empty()
        && addrs
            .iter()
            .all(|a| baton::flow::hosts::special_range(a.ip()).is_some());
    special.then_some(name)
}

fn flow(name: &str, port: u16) -> String {
    format!(
        r#"
id: internal
start: call
nodes:
  - id: call
    kind: http
    method: GET
    url: "http://{name}:{port}/ping"
    retry: {{ max_attempts: 3, delay: 10ms }}
    next: reached
    on_error: refused
  - {{ id: reached, kind: end, title: Reached }}
  - {{ id: refused, kind: end, outcome: failed, title: Refused }}
"#
    )
}

async fn a_name_resolving_to_loopback_needs_the_address_allowed(backend: Backend) {
    let Some(name) = local_name().await else {
        eprintln!(
            "!!!!! SKIPPED: this machine's name does not resolve to a loopback or private address"
        );
        return;
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        axum::serve(
            listener,
            axum::Router::new().route("/ping", get(|| async { "pong" })),
        )
        .await
        .unwrap()
    });
    for (allow, title) in [
        (vec![name.clone()], "Refused"),
        (
            vec![name.clone(), "127.0.0.0/8".into(), "::1".into()],
            "Reached",
        ),
    ] {
        let Some(app) =
            TestApp::spawn_configured(backend, &[("internal.yaml", flow(&name, port))], |c, _| {
                c.allow_hosts = allow.clone();
                c.step_budget_ms = 5000;
            })
            .await
        else {
            return;
        };
        let (s, _) = app.start("internal", json!({ "id": "u" }), json!({})).await;
        assert_eq!(s["screen"]["title"], title, "allow {allow:?}: {s}");
        if title == "Refused" {
            let history = app.baton_history(s["id"].as_str().unwrap()).await;
            assert_eq!(history.len(), 1, "a refusal is not retried: {history:?}");
            let error = history[0]["error"].as_str().unwrap_or("");
            assert!(
                error.starts_with("HOST_NOT_ALLOWED") && error.contains("loopback"),
                "{error}"
            );
        }
    }
}

mod sqlite {
    #[tokio::test]
    async fn a_name_resolving_to_loopback_needs_the_address_allowed() {
        super::a_name_resolving_to_loopback_needs_the_address_allowed(
            crate::testapp::Backend::Sqlite,
        )
        .await
    }
}

mod postgres {
    #[tokio::test]
    async fn a_name_resolving_to_loopback_needs_the_address_allowed() {
        super::a_name_resolving_to_loopback_needs_the_address_allowed(
            crate::testapp::Backend::Postgres,
        )
        .await
    }
}

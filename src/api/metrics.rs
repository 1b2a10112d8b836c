//! `GET /metrics`: every metric of [`crate::telemetry`] in the Prometheus
//! text format. Gauges that describe the store (the step task queue) are
//! read from it when scraped, so they are never older than the scrape.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::service::Baton;
use crate::store::tasks::TaskState;
use crate::telemetry;

/// The route, on the main listener next to `/graphql`: the values carry no
/// user data (labels are operation names, codes, step kinds and the
/// allowlisted upstream hosts).
pub fn router(baton: Baton) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(baton)
}

async fn scrape(State(baton): State<Baton>) -> Response {
    match baton.store().task_queue_depth().await {
        Ok(rows) => {
            // Every state, so one that emptied reads 0 rather than its last count.
            for s in TaskState::PENDING.map(TaskState::as_str) {
                let n = rows.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
                telemetry::TASK_QUEUE_DEPTH.set(&[s], n as f64);
            }
        }
        Err(e) => tracing::warn!(error = %e, "reading the task queue depth for /metrics failed"),
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        telemetry::render(),
    )
        .into_response()
}

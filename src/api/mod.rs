//! The API: GraphQL over HTTP (GraphQL-over-HTTP spec) and WebSocket.
//!
//! - [`http`]: the transport, generic over any async-graphql executor, so the
//!   Baton schema plugs in without the transport knowing it.
//! - [`error`]: [`ApiError`], the transport's error codes.
//! - [`schema`]: the app-facing schema (`startFlow`, `submit`, …) and
//!   [`types`], its screen and component types.
//! - [`ofrep`]: flag evaluation over the OpenFeature Remote Evaluation
//!   Protocol, merged into the same router.

mod admin;
mod analytics;
pub mod console;
pub mod error;
mod experiments;
pub mod http;
pub mod metrics;
mod negotiate;
pub mod ofrep;
mod query_size;
pub mod rate_limit;
mod releases;
pub mod schema;
pub mod sinks;
pub mod steps;
mod support;
pub mod types;

pub use error::ApiError;
pub use http::{BearerToken, Limits, Readiness, router, router_with_keys, router_with_readiness};

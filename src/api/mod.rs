//! The API: GraphQL over HTTP (GraphQL-over-HTTP spec) and WebSocket.
//!
//! - [`http`]: the transport, generic over any async-graphql executor, so the
//!   Baton schema plugs in without the transport knowing it.
//! - [`error`]: [`ApiError`], every error code a client can see.

pub mod error;
pub mod http;
mod negotiate;

pub use error::ApiError;
pub use http::{BearerToken, Limits, Readiness, router, router_with_readiness};

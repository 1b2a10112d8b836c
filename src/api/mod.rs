//! The API: GraphQL over HTTP (GraphQL-over-HTTP spec) and WebSocket.

pub mod http;
pub mod schema;
pub mod types;

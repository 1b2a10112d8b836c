//! The API: GraphQL over HTTP (GraphQL-over-HTTP spec) and WebSocket.

//! Baton: a server-driven UI flow backend.
//!
//! Layers, each in its own module and each with its own error enum:
//! - [`flow`]: the flow file format, loading, validation and compilation.
//! - [`rules`]: JsonLogic (+ flagd operators) compiled once, evaluated often.
//! - [`engine`]: the pure state machine: context + action in, next node out.
//! - [`store`]: sessions, their event log and flow versions (SQLite / PostgreSQL).
//! - [`api`]: GraphQL over HTTP and WebSocket.

pub mod api;
pub mod engine;
pub mod flow;
pub mod rules;
pub mod store;

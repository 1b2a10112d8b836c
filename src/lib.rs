//! Baton: a server-driven UI flow backend.
//!
//! Layers, each in its own module and each with its own error enum:
//! - [`flow`]: the flow file format, loading, validation and compilation.
//! - [`rules`]: JsonLogic (+ flagd operators) compiled once, evaluated often.
//! - [`flags`]: feature flags in flagd's format, evaluated like flagd.
//! - [`experiments`]: experiment definitions and their statistics.
//! - [`engine`]: the pure state machine: context + action in, next node out.
//! - [`store`]: sessions, their event log and flow versions (SQLite / PostgreSQL).
//! - [`service`]: flow versions, tokens, idempotency: what the API calls.
//! - [`orchestrator`]: backend steps as durable tasks (HTTP, timers,
//!   approvals, events, mocks), with retries and circuit breakers.
//! - [`api`]: GraphQL over HTTP and WebSocket.
//! - [`auth`]: API keys with roles for admin calls.
//!
//! [`app`] builds the whole server from a [`config::ServeConfig`].

pub mod analytics;
pub mod api;
pub mod app;
pub mod artifacts;
pub mod auth;
pub mod codes;
pub mod config;
pub mod document;
pub mod engine;
pub mod experiments;
pub mod flags;
pub mod flow;
pub mod identity;
pub mod inbound;
pub mod nats;
pub mod orchestrator;
pub mod remote;
pub mod rules;
pub mod service;
pub mod simulate;
pub mod sinks;
pub mod store;
pub mod telemetry;

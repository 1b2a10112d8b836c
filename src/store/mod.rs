//! The store: sessions, their append-only event log and flow versions.

//! One integration-test binary (links once); a module per capability.

mod common;
mod store;

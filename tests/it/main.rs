//! One integration-test binary (links once); a module per capability.
mod rules;

//! One integration-test binary (links once); a module per capability.
mod api_http;

//! One integration-test binary (links once); a module per capability.

mod api_http;
mod auth;
mod cli;
mod common;
mod cors;
mod crash;
mod curl_example;
mod document_cache;
mod engine_props;
mod experiment_runs;
mod experiment_store;
mod experiments;
mod flagd_testbed;
mod flags;
mod flows_api;
mod group_commit;
mod limits;
mod replay;
mod rules;
mod security;
mod steps;
mod store;
mod subscription;
mod testapp;
mod validate;
mod watch;

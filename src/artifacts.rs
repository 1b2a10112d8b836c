//! Generated artifacts: the GraphQL SDL and the flow JSON Schema, both
//! derived from the code. `baton schema` writes them; `--check` (and a
//! test) fails when the committed copies are stale.

use std::path::{Path, PathBuf};

use crate::flow::model::FlowDef;

pub const GRAPHQL_FILE: &str = "baton.graphql";
pub const FLOW_SCHEMA_FILE: &str = "flow.schema.json";

/// The app-facing GraphQL schema in SDL.
pub fn graphql_sdl() -> String {
    // The SDL does not depend on resolver state, so no store is needed.
    let schema = async_graphql::Schema::build(
        crate::api::schema::RootQuery::default(),
        crate::api::schema::RootMutation::default(),
        crate::api::schema::Subscription,
    )
    .finish();
    schema.sdl()
}

/// JSON Schema for flow files, for editors and CI.
pub fn flow_json_schema() -> String {
    let schema = schemars::schema_for!(FlowDef);
    let mut text = serde_json::to_string_pretty(&schema).expect("schema serializes");
    text.push('\n');
    text
}

/// Writes both files under `dir`, or with `check` only compares; returns
/// the files that were stale.
pub fn write_or_check(dir: &Path, check: bool) -> std::io::Result<Vec<PathBuf>> {
    let mut stale = Vec::new();
    for (name, content) in [
        (GRAPHQL_FILE, graphql_sdl()),
        (FLOW_SCHEMA_FILE, flow_json_schema()),
    ] {
        let path = dir.join(name);
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current != content {
            if check {
                stale.push(path);
            } else {
                std::fs::create_dir_all(dir)?;
                std::fs::write(&path, content)?;
            }
        }
    }
    Ok(stale)
}

//! Generated artifacts: the GraphQL SDL, the flow JSON Schema, the
//! error-code reference and the metrics reference, all derived from the
//! code. `baton schema` writes
//! them; `--check` (and a test) fails when the committed copies are stale.

use std::path::{Path, PathBuf};

use crate::flow::model::FlowDef;

pub const GRAPHQL_FILE: &str = "baton.graphql";
pub const FLOW_SCHEMA_FILE: &str = "flow.schema.json";
pub const ERRORS_FILE: &str = "errors.md";
pub const METRICS_FILE: &str = "metrics.md";

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

/// Writes the schema files under `schema_dir` and the error reference under
/// `docs_dir`, or with `check` only compares; returns the files that were
/// stale.
pub fn write_or_check(
    schema_dir: &Path,
    docs_dir: &Path,
    check: bool,
) -> std::io::Result<Vec<PathBuf>> {
    let mut stale = Vec::new();
    for (path, content) in [
        (schema_dir.join(GRAPHQL_FILE), graphql_sdl()),
        (schema_dir.join(FLOW_SCHEMA_FILE), flow_json_schema()),
        (docs_dir.join(ERRORS_FILE), crate::codes::markdown()),
        (docs_dir.join(METRICS_FILE), crate::telemetry::markdown()),
    ] {
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current != content {
            if check {
                stale.push(path);
            } else {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::write(&path, content)?;
            }
        }
    }
    Ok(stale)
}

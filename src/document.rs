//! Reading the project's data files — flows, flag definitions,
//! experiments: YAML or JSON by file extension, size-capped, into a
//! `serde_json::Value`. Each layer maps [`DocError`] into its own error
//! type, so codes and paths stay per layer while the reading is one piece.

use std::fs;
use std::path::Path;

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Yaml => "YAML",
            Format::Json => "JSON",
        }
    }
}

/// The format by extension (`.yaml`, `.yml`, `.json`, any case).
pub fn format_of(path: &Path) -> Option<Format> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    match ext.as_str() {
        "yaml" | "yml" => Some(Format::Yaml),
        "json" => Some(Format::Json),
        _ => None,
    }
}

#[derive(Debug)]
pub enum DocError {
    Unreadable(std::io::Error),
    TooLarge {
        size: u64,
    },
    Syntax {
        format: &'static str,
        message: String,
    },
}

impl DocError {
    /// What is wrong, for a message that already names the file; `max` is
    /// the limit [`read`] was given.
    pub fn describe(&self, max: u64) -> String {
        match self {
            DocError::Unreadable(e) => e.to_string(),
            DocError::TooLarge { size } => format!("{size} bytes; at most {max}"),
            DocError::Syntax { format, message } => format!("{format}: {message}"),
        }
    }
}

/// YAML 1.2 as people write it in these files: `No`, `on` and `007` stay
/// text (flagd files name variants `on` and `off`).
pub fn yaml_options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options.leading_zero_numbers_as_strings = true;
    options
}

/// saphyr's message without its multi-line source snippet: an issue is
/// one line, and the message names line and column already.
pub fn yaml_message(e: &serde_saphyr::Error) -> String {
    let text = e.without_snippet().to_string();
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Reads and parses `path`, refusing files over `max_bytes` before reading.
pub fn read(path: &Path, max_bytes: u64) -> Result<Value, DocError> {
    let size = fs::metadata(path).map_err(DocError::Unreadable)?.len();
    if size > max_bytes {
        return Err(DocError::TooLarge { size });
    }
    let text = fs::read_to_string(path).map_err(DocError::Unreadable)?;
    parse(path, &text, max_bytes)
}

/// Parses `text` as the format `path` names (YAML when it names none).
pub fn parse(path: &Path, text: &str, max_bytes: u64) -> Result<Value, DocError> {
    if text.len() as u64 > max_bytes {
        return Err(DocError::TooLarge {
            size: text.len() as u64,
        });
    }
    match format_of(path) {
        Some(Format::Json) => serde_json::from_str(text).map_err(|e| DocError::Syntax {
            format: "JSON",
            message: e.to_string(),
        }),
        _ => serde_saphyr::from_str_with_options(text, yaml_options()).map_err(|e| {
            DocError::Syntax {
                format: "YAML",
                message: yaml_message(&e),
            }
        }),
    }
}

//! Templates: every user-facing string in a flow is a minijinja template
//! over the session context (`user`, `client`, `input`, `steps`, `flags`,
//! `experiments`, `session`).
//!
//! Templates are data, never code execution: there is no loader (nothing is
//! read from disk), every render runs on a fuel budget that bounds both time
//! and memory, and output is capped at [`MAX_OUTPUT_BYTES`]. Undefined
//! values render as empty, even when chained
//! (`{{ user.attributes.missing.deeper }}` is `""`), because the validator,
//! not the renderer, is where a reference to nothing is caught.
//!
//! Choosing the locale string of a [`Text`](super::model::Text) is the
//! engine's job; this module renders one source string.

use crate::codes::Code;
use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::sync::{Arc, OnceLock};

use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value};

/// Fuel per render. minijinja charges about one unit per instruction and
/// per 64 bytes of data created, so this bounds a render to roughly 20k
/// instructions and ~1.3 MB of transient memory: plenty for UI strings.
pub const TEMPLATE_FUEL: u64 = 20_000;

/// Largest rendered string.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;

/// Largest template source; longer strings are rejected at compile time.
pub const MAX_SOURCE_BYTES: usize = 64 * 1024;

/// The roots of the session context, the only names a template or rule
/// may start a path with.
pub const CONTEXT_ROOTS: &[&str] = &[
    "user",
    "client",
    "input",
    "steps",
    "params",
    "flags",
    "experiments",
    "session",
];

/// The fixed members of the context roots whose shape Baton owns (the
/// engine builds them at `startFlow`); `user.attributes`, `input`, `steps`,
/// `flags` and `experiments` are open-ended.
pub const CONTEXT_FIELDS: &[(&str, &[&str])] = &[
    ("user", &["id", "attributes"]),
    (
        "client",
        &["platform", "app_version", "locale", "capabilities"],
    ),
    (
        "session",
        &["id", "flow_id", "flow_version", "started_at", "mock"],
    ),
];

/// The name each compiled template has inside its own environment. It has
/// no file extension, so minijinja applies no auto-escaping: clients get
/// text, not HTML.
const NAME: &str = "t";

/// A compiled template. Cloning is cheap (one `Arc`).
#[derive(Clone)]
pub struct Template(Arc<Repr>);

// Always behind the `Arc`, so the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
enum Repr {
    /// No template syntax at all: rendering is a copy.
    Literal(String),
    /// Each template owns a clone of the shared, preconfigured environment
    /// (the clone shares filters, tests and globals through `Arc`s) holding
    /// just this template, parsed once. Rendering is a map lookup plus the
    /// VM run: no re-parse, no environment construction.
    Compiled {
        source: String,
        env: Environment<'static>,
    },
}

/// Why a template did not compile or render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template syntax error: {message}")]
    Syntax { message: String },
    #[error("template is {len} bytes, more than the {max} allowed")]
    SourceTooLarge { len: usize, max: usize },
    #[error("template failed to render: {message}")]
    Render { message: String },
    #[error("template ran out of fuel (more than {fuel} steps of work)")]
    OutOfFuel { fuel: u64 },
    #[error("template output is larger than {max} bytes")]
    OutputTooLarge { max: usize },
}

impl TemplateError {
    pub fn code(&self) -> Code {
        match self {
            TemplateError::Syntax { .. } => Code::TemplateSyntax,
            TemplateError::SourceTooLarge { .. } => Code::TemplateTooLarge,
            TemplateError::Render { .. } => Code::TemplateRender,
            TemplateError::OutOfFuel { .. } => Code::TemplateOutOfFuel,
            TemplateError::OutputTooLarge { .. } => Code::TemplateOutputTooLarge,
        }
    }

    pub fn hint(&self) -> Option<String> {
        Some(
            match self {
                TemplateError::Syntax { .. } => {
                    "templates use minijinja (Jinja2) syntax: `{{ user.attributes.name }}`, \
                     `{% if … %}…{% endif %}`; write `{{ '{{' }}` for a literal `{{`"
                }
                TemplateError::SourceTooLarge { .. } => {
                    "keep user-facing strings short; put long content in a markdown component"
                }
                TemplateError::Render { .. } => {
                    "check the filters, functions and operators the template uses"
                }
                TemplateError::OutOfFuel { .. } => {
                    "the template does too much work; avoid large or nested loops"
                }
                TemplateError::OutputTooLarge { .. } => {
                    "the rendered text is too long for a screen; loop over fewer items"
                }
            }
            .to_string(),
        )
    }
}

/// The session context prepared for rendering: converted to minijinja's
/// value type once per screen render, shared by every string on it.
#[derive(Clone, Debug)]
pub struct RenderContext {
    value: Value,
}

impl RenderContext {
    pub fn new(ctx: &serde_json::Value) -> RenderContext {
        RenderContext {
            value: Value::from(minijinja::value::Serde(ctx)),
        }
    }
}

impl Template {
    /// Compiles `source`. Strings without `{{`, `{%` or `{#` are literals
    /// and never touch the template engine.
    pub fn compile(source: &str) -> Result<Template, TemplateError> {
        if source.len() > MAX_SOURCE_BYTES {
            return Err(TemplateError::SourceTooLarge {
                len: source.len(),
                max: MAX_SOURCE_BYTES,
            });
        }
        if !has_syntax(source) {
            return Ok(Template(Arc::new(Repr::Literal(source.to_string()))));
        }
        let mut env = prototype().clone();
        env.add_template_owned(NAME, source.to_string())
            .map_err(|e| TemplateError::Syntax {
                message: describe(&e),
            })?;
        Ok(Template(Arc::new(Repr::Compiled {
            source: source.to_string(),
            env,
        })))
    }

    pub fn render(&self, ctx: &RenderContext) -> Result<String, TemplateError> {
        match &*self.0 {
            Repr::Literal(s) => Ok(s.clone()),
            Repr::Compiled { env, .. } => {
                let tmpl = env.get_template(NAME).map_err(|e| TemplateError::Render {
                    message: describe(&e),
                })?;
                // Fuel bounds the memory a render can use, so checking the
                // size afterwards cannot be abused to allocate without limit.
                let out = tmpl.render(ctx.value.clone()).map_err(|e| match e.kind() {
                    ErrorKind::OutOfFuel => TemplateError::OutOfFuel {
                        fuel: TEMPLATE_FUEL,
                    },
                    _ => TemplateError::Render {
                        message: describe(&e),
                    },
                })?;
                if out.len() > MAX_OUTPUT_BYTES {
                    return Err(TemplateError::OutputTooLarge {
                        max: MAX_OUTPUT_BYTES,
                    });
                }
                Ok(out)
            }
        }
    }

    /// Dotted context paths the template reads, e.g.
    /// `user.attributes.first_name`. Names declared inside the template
    /// (`{% set %}`, loop variables) and minijinja's globals (`range`,
    /// `namespace`, …) are not included.
    pub fn variables(&self) -> BTreeSet<String> {
        match &*self.0 {
            Repr::Literal(_) => BTreeSet::new(),
            Repr::Compiled { env, .. } => {
                let Ok(tmpl) = env.get_template(NAME) else {
                    return BTreeSet::new();
                };
                let globals = globals();
                tmpl.undeclared_variables(true)
                    .into_iter()
                    .filter(|v| !globals.contains(v.split('.').next().unwrap_or(v)))
                    .collect()
            }
        }
    }

    pub fn source(&self) -> &str {
        match &*self.0 {
            Repr::Literal(s) => s,
            Repr::Compiled { source, .. } => source,
        }
    }

    pub fn is_literal(&self) -> bool {
        matches!(&*self.0, Repr::Literal(_))
    }
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Template")
            .field("source", &self.source())
            .field("literal", &self.is_literal())
            .finish()
    }
}

fn has_syntax(s: &str) -> bool {
    s.contains("{{") || s.contains("{%") || s.contains("{#")
}

/// The environment every template starts from, configured once.
fn prototype() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_fuel(Some(TEMPLATE_FUEL));
        // JSON `null` (an unset attribute) should read as nothing, like an
        // undefined value, not as the word "none".
        env.set_formatter(|out, state, value| {
            let value = if value.is_none() {
                &Value::UNDEFINED
            } else {
                value
            };
            minijinja::escape_formatter(out, state, value)
        });
        env
    })
}

fn globals() -> &'static HashSet<String> {
    static GLOBALS: OnceLock<HashSet<String>> = OnceLock::new();
    GLOBALS.get_or_init(|| prototype().globals().map(|(k, _)| k.to_string()).collect())
}

/// One line: what went wrong and where, without minijinja's multi-line
/// debug dump.
fn describe(e: &minijinja::Error) -> String {
    let what = match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    };
    match e.line() {
        Some(line) => format!("{what} (line {line})"),
        None => what,
    }
}

//! What the client sees: a screen rendered for one client — templates
//! rendered over the context, the locale chosen, and the fallback served
//! when the client cannot render the screen as designed.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::EngineError;
use super::input::FieldError;
use super::{SessionState, Status};
use crate::flow::compile::{CompiledFlow, lenient_semver};
use crate::flow::model::{CORE_KINDS, ComponentDef, NodeDef, ScreenNode, SelectOption, Text};
use crate::flow::template::RenderContext;

/// What the client said about itself at `startFlow`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientInfo {
    pub platform: Option<String>,
    pub app_version: Option<String>,
    pub locale: Option<String>,
    /// Component kinds the client renders (`text`, …, `custom:<name>`).
    /// `None`: every core kind and no custom one.
    pub capabilities: Option<Vec<String>>,
}

impl ClientInfo {
    pub fn to_context(&self) -> Value {
        json!({
            "platform": self.platform,
            "app_version": self.app_version,
            "locale": self.locale,
            "capabilities": self.capabilities,
        })
    }

    pub fn from_context(context: &Value) -> ClientInfo {
        let client = &context["client"];
        let s = |k: &str| client.get(k).and_then(Value::as_str).map(str::to_string);
        ClientInfo {
            platform: s("platform"),
            app_version: s("app_version"),
            locale: s("locale"),
            capabilities: client
                .get("capabilities")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                }),
        }
    }

    fn supports(&self, capability: &str) -> bool {
        match &self.capabilities {
            Some(list) => list.iter().any(|c| c == capability),
            None => CORE_KINDS.contains(&capability),
        }
    }
}

/// A screen ready to send: every string rendered (`Text::Plain`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScreenView {
    pub id: String,
    pub title: Option<String>,
    pub components: Vec<ComponentDef>,
    pub actions: Vec<ActionView>,
    pub errors: Vec<FieldError>,
    /// Current values of the inputs: the rejected draft, or what was
    /// submitted on this screen before (after `back`).
    pub values: Map<String, Value>,
    /// The client got the screen's declared fallback.
    pub fallback: bool,
    /// An end node's last screen: no action leaves it.
    pub terminal: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionView {
    pub id: String,
    pub label: Option<String>,
    pub validates: bool,
}

/// Whether this client gets the fallback of `screen`.
fn needs_fallback(flow: &CompiledFlow, screen: &ScreenNode, client: &ClientInfo) -> bool {
    if screen.fallback.is_none() {
        return false;
    }
    if let Some(min) = &screen.min_app_version {
        // An app that does not say its version is assumed current: web
        // clients often have none.
        if let (Some(min), Some(have)) = (
            lenient_semver(min),
            client.app_version.as_deref().and_then(lenient_semver),
        ) && have < min
        {
            return true;
        }
    }
    let mut missing = false;
    let _ = flow;
    for c in &screen.components {
        walk(c, &mut |c| {
            if !client.supports(&c.capability()) {
                missing = true;
            }
        });
    }
    missing
}

fn walk(c: &ComponentDef, f: &mut dyn FnMut(&ComponentDef)) {
    f(c);
    for child in c.children() {
        walk(child, f);
    }
}

/// The components the client in `context` is shown for `screen`.
pub fn effective_components<'a>(
    flow: &CompiledFlow,
    screen: &'a ScreenNode,
    context: &Value,
) -> &'a [ComponentDef] {
    let client = ClientInfo::from_context(context);
    match &screen.fallback {
        Some(fb) if needs_fallback(flow, screen, &client) => &fb.components,
        _ => &screen.components,
    }
}

/// Renders the screen the session rests on, or `None` for an end node
/// without a last screen.
pub fn render(
    flow: &CompiledFlow,
    state: &SessionState,
) -> Result<Option<ScreenView>, EngineError> {
    let idx = flow
        .node_index(&state.node)
        .ok_or_else(|| EngineError::UnknownNode {
            node: state.node.clone(),
            version: flow.version,
        })?;
    let ctx = &state.context;
    let r = Renderer {
        flow,
        rctx: RenderContext::new(ctx),
        locale: ctx["client"]["locale"].as_str(),
    };
    match flow.node_def(idx) {
        NodeDef::Screen(screen) => {
            let client = ClientInfo::from_context(ctx);
            let fallback = needs_fallback(flow, screen, &client);
            let (title, components) = match (&screen.fallback, fallback) {
                (Some(fb), true) => (fb.title.as_ref().or(screen.title.as_ref()), &fb.components),
                _ => (screen.title.as_ref(), &screen.components),
            };
            let values = match &state.draft {
                Some(draft) => draft.clone(),
                None => ctx["input"]
                    .get(&screen.id)
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default(),
            };
            let actions = screen
                .actions
                .iter()
                .map(|a| {
                    Ok(ActionView {
                        id: a.id.clone(),
                        label: a.label.as_ref().map(|t| r.text(t)).transpose()?,
                        validates: a.validate,
                    })
                })
                .collect::<Result<_, EngineError>>()?;
            Ok(Some(ScreenView {
                id: screen.id.clone(),
                title: title.map(|t| r.text(t)).transpose()?,
                components: r.components(components)?,
                actions,
                errors: state.errors.clone(),
                values,
                fallback,
                terminal: false,
            }))
        }
        NodeDef::End(end) if !end.components.is_empty() || end.title.is_some() => {
            Ok(Some(ScreenView {
                id: end.id.clone(),
                title: end.title.as_ref().map(|t| r.text(t)).transpose()?,
                components: r.components(&end.components)?,
                actions: Vec::new(),
                errors: Vec::new(),
                values: Map::new(),
                fallback: false,
                terminal: true,
            }))
        }
        NodeDef::End(_) => Ok(None),
        node @ (NodeDef::Http(_)
        | NodeDef::Wait(_)
        | NodeDef::Approval(_)
        | NodeDef::Event(_)
        | NodeDef::Parallel(_))
            if state.status == Status::Waiting =>
        {
            let (title, components) = match node.pending() {
                Some(p) => (
                    p.title.as_ref().map(|t| r.text(t)).transpose()?,
                    r.components(&p.components)?,
                ),
                None => default_pending(),
            };
            Ok(Some(ScreenView {
                id: node.id().to_string(),
                title,
                components,
                actions: Vec::new(),
                errors: Vec::new(),
                values: Map::new(),
                fallback: false,
                terminal: false,
            }))
        }
        // A session that failed on a step (no error edge) or was cancelled
        // while waiting: a generic last screen, never a blank one.
        node @ (NodeDef::Http(_)
        | NodeDef::Wait(_)
        | NodeDef::Approval(_)
        | NodeDef::Event(_)
        | NodeDef::Parallel(_)
        | NodeDef::Transform(_)) => {
            let (title, components) = if state.status == Status::Failed {
                default_error()
            } else {
                default_closed()
            };
            Ok(Some(ScreenView {
                id: node.id().to_string(),
                title,
                components,
                actions: Vec::new(),
                errors: Vec::new(),
                values: Map::new(),
                fallback: false,
                terminal: true,
            }))
        }
        NodeDef::Decision(d) => {
            // A session never rests on a decision; a snapshot that does is
            // corrupt, not a client mistake.
            debug_assert!(
                state.status != Status::Active,
                "session rests on decision `{}`",
                d.id
            );
            Err(EngineError::UnknownNode {
                node: d.id.clone(),
                version: flow.version,
            })
        }
    }
}

fn default_pending() -> (Option<String>, Vec<ComponentDef>) {
    (
        Some("One moment".into()),
        vec![ComponentDef::Text {
            id: Some("pending".into()),
            text: Text::Plain("We are working on it. This screen updates by itself.".into()),
        }],
    )
}

fn default_error() -> (Option<String>, Vec<ComponentDef>) {
    (
        Some("Something went wrong".into()),
        vec![ComponentDef::Text {
            id: Some("error".into()),
            text: Text::Plain(
                "We could not finish this step. Nothing was lost; please try again later.".into(),
            ),
        }],
    )
}

fn default_closed() -> (Option<String>, Vec<ComponentDef>) {
    (
        Some("This session has ended".into()),
        vec![ComponentDef::Text {
            id: Some("closed".into()),
            text: Text::Plain("Start again to continue.".into()),
        }],
    )
}

/// Renders one template source of the flow over `context`.
pub fn render_source(
    flow: &CompiledFlow,
    src: &str,
    context: &Value,
) -> Result<String, EngineError> {
    match flow.template(src) {
        Some(t) => t
            .render(&RenderContext::new(context))
            .map_err(|e| EngineError::Template {
                message: e.to_string(),
            }),
        None => Ok(src.to_string()),
    }
}

/// Renders a (possibly localized) text for the context's locale.
pub fn render_text(
    flow: &CompiledFlow,
    text: &Text,
    context: &Value,
) -> Result<String, EngineError> {
    let r = Renderer {
        flow,
        rctx: RenderContext::new(context),
        locale: context["client"]["locale"].as_str(),
    };
    r.text(text)
}

/// Renders a component tree (an approval's fields for the reviewer).
pub fn render_components(
    flow: &CompiledFlow,
    list: &[ComponentDef],
    context: &Value,
) -> Result<Vec<ComponentDef>, EngineError> {
    let r = Renderer {
        flow,
        rctx: RenderContext::new(context),
        locale: context["client"]["locale"].as_str(),
    };
    r.components(list)
}

/// Renders a message text (e.g. `pattern_message`) for the context's
/// locale; `None` when it fails, so the caller uses its default message.
pub(super) fn text_for_message(
    flow: &CompiledFlow,
    text: &Text,
    context: &Value,
) -> Option<String> {
    let r = Renderer {
        flow,
        rctx: RenderContext::new(context),
        locale: context["client"]["locale"].as_str(),
    };
    r.text(text).ok()
}

struct Renderer<'a> {
    flow: &'a CompiledFlow,
    rctx: RenderContext,
    locale: Option<&'a str>,
}

impl Renderer<'_> {
    /// Picks the locale's string: exact locale, then its language, then
    /// `en`, then the first one.
    fn pick<'t>(&self, text: &'t Text) -> &'t str {
        match text {
            Text::Plain(s) => s,
            Text::Localized(map) => {
                let by = |k: &str| map.get(k).map(String::as_str);
                let exact = self.locale.and_then(by);
                let lang = self
                    .locale
                    .and_then(|l| l.split(['-', '_']).next())
                    .and_then(by);
                exact
                    .or(lang)
                    .or_else(|| by("en"))
                    .or_else(|| map.values().next().map(String::as_str))
                    .unwrap_or("")
            }
        }
    }

    fn text(&self, text: &Text) -> Result<String, EngineError> {
        let src = self.pick(text);
        match self.flow.template(src) {
            Some(t) => t.render(&self.rctx).map_err(|e| EngineError::Template {
                message: e.to_string(),
            }),
            // Every text is compiled with the flow; an unknown one is a
            // compiler gap, so show the source rather than fail the user.
            None => Ok(src.to_string()),
        }
    }

    fn opt(&self, text: &Option<Text>) -> Result<Option<Text>, EngineError> {
        text.as_ref()
            .map(|t| self.text(t).map(Text::Plain))
            .transpose()
    }

    fn plain(&self, text: &Text) -> Result<Text, EngineError> {
        self.text(text).map(Text::Plain)
    }

    fn components(&self, list: &[ComponentDef]) -> Result<Vec<ComponentDef>, EngineError> {
        list.iter().map(|c| self.component(c)).collect()
    }

    fn component(&self, c: &ComponentDef) -> Result<ComponentDef, EngineError> {
        use ComponentDef as C;
        Ok(match c {
            C::Text { id, text } => C::Text {
                id: id.clone(),
                text: self.plain(text)?,
            },
            C::Heading { id, text, level } => C::Heading {
                id: id.clone(),
                text: self.plain(text)?,
                level: *level,
            },
            C::Image { id, url, alt } => C::Image {
                id: id.clone(),
                url: self.plain(url)?,
                alt: self.opt(alt)?,
            },
            C::TextInput {
                id,
                label,
                placeholder,
                required,
                min_length,
                max_length,
                pattern,
                pattern_message,
            } => C::TextInput {
                id: id.clone(),
                label: self.plain(label)?,
                placeholder: self.opt(placeholder)?,
                required: *required,
                min_length: *min_length,
                max_length: *max_length,
                pattern: pattern.clone(),
                pattern_message: self.opt(pattern_message)?,
            },
            C::NumberInput {
                id,
                label,
                required,
                min,
                max,
                integer,
            } => C::NumberInput {
                id: id.clone(),
                label: self.plain(label)?,
                required: *required,
                min: *min,
                max: *max,
                integer: *integer,
            },
            C::EmailInput {
                id,
                label,
                placeholder,
                required,
            } => C::EmailInput {
                id: id.clone(),
                label: self.plain(label)?,
                placeholder: self.opt(placeholder)?,
                required: *required,
            },
            C::Select {
                id,
                label,
                options,
                required,
            } => C::Select {
                id: id.clone(),
                label: self.plain(label)?,
                options: options
                    .iter()
                    .map(|o| {
                        Ok(SelectOption {
                            value: o.value.clone(),
                            label: self.plain(&o.label)?,
                        })
                    })
                    .collect::<Result<_, EngineError>>()?,
                required: *required,
            },
            C::Checkbox {
                id,
                label,
                required,
            } => C::Checkbox {
                id: id.clone(),
                label: self.plain(label)?,
                required: *required,
            },
            C::Date {
                id,
                label,
                required,
                min,
                max,
            } => C::Date {
                id: id.clone(),
                label: self.plain(label)?,
                required: *required,
                min: min.clone(),
                max: max.clone(),
            },
            C::Button {
                id,
                label,
                action,
                style,
            } => C::Button {
                id: id.clone(),
                label: self.plain(label)?,
                action: action.clone(),
                style: *style,
            },
            C::List {
                id,
                ordered,
                children,
            } => C::List {
                id: id.clone(),
                ordered: *ordered,
                children: self.components(children)?,
            },
            C::Card {
                id,
                title,
                children,
            } => C::Card {
                id: id.clone(),
                title: self.opt(title)?,
                children: self.components(children)?,
            },
            C::Stack {
                id,
                direction,
                children,
            } => C::Stack {
                id: id.clone(),
                direction: *direction,
                children: self.components(children)?,
            },
            C::Markdown { id, text } => C::Markdown {
                id: id.clone(),
                text: self.plain(text)?,
            },
            C::Custom { .. } => c.clone(),
        })
    }
}

//! What the client sees: a screen rendered for one client — templates
//! rendered over the context, the locale chosen, and the fallback served
//! when the client cannot render the screen as designed.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::EngineError;
use super::input::FieldError;
use super::{SessionState, Status};
use crate::flow::compile::{CompiledFlow, lenient_semver};
use crate::flow::model::{
    CORE_KINDS, ComponentDef, Fallbacks, NodeDef, Outcome, Role, ScreenNode, SelectOption, Text,
    node_log_id,
};
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

    /// Whether the client renders `c`'s kind (not its children).
    pub(super) fn supports(&self, c: &ComponentDef) -> bool {
        match (&self.capabilities, c) {
            (Some(list), ComponentDef::Custom { name, .. }) => list
                .iter()
                .any(|have| have.strip_prefix("custom:") == Some(name.as_str())),
            (Some(list), core) => list.iter().any(|have| have == core.kind()),
            (None, ComponentDef::Custom { .. }) => false,
            (None, core) => CORE_KINDS.contains(&core.kind()),
        }
    }

    /// The client's app version; `None` when it sent none (assumed current).
    pub(super) fn version(&self) -> Option<semver::Version> {
        self.app_version.as_deref().and_then(lenient_semver)
    }
}

/// A screen ready to send: every string rendered (`Text::Plain`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScreenView {
    pub id: String,
    /// The analytics id its impressions carry.
    pub log_id: String,
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
    /// The analytics id its submits carry.
    pub log_id: String,
    pub label: Option<String>,
    pub validates: bool,
}

/// Which tree of `screen` this client gets: `None` the screen's own,
/// `Some(k)` its fallback `k`, the first the client can render. A client
/// gets no component kind it does not render: when no tree fits, the
/// answer is an error, not a screen it would break on.
fn choose(
    flow: &CompiledFlow,
    screen: &ScreenNode,
    client: &ClientInfo,
    version: Option<&semver::Version>,
    context: &Value,
) -> Result<Option<usize>, EngineError> {
    choose_with(screen, client, version, &|c: &ComponentDef| {
        visible(flow, c, context, version)
    })
}

/// Whether a component is shown; the session's context decides at run
/// time, a cohort's client alone when the compatibility report asks.
pub(super) type Shown<'a> = dyn Fn(&ComponentDef) -> Result<bool, EngineError> + 'a;

/// [`choose`] with the visibility of each component decided by `shown`.
pub(super) fn choose_with(
    screen: &ScreenNode,
    client: &ClientInfo,
    version: Option<&semver::Version>,
    shown: &Shown<'_>,
) -> Result<Option<usize>, EngineError> {
    // An app that does not say its version is assumed current: web
    // clients often have none.
    let too_old = match (
        screen.min_app_version.as_deref().and_then(lenient_semver),
        version,
    ) {
        (Some(min), Some(have)) => *have < min,
        _ => false,
    };
    let mut reasons = Vec::new();
    if too_old {
        reasons.push(format!(
            "app version {} is older than the screen's min_app_version {}",
            client.app_version.as_deref().unwrap_or_default(),
            screen.min_app_version.as_deref().unwrap_or_default()
        ));
    } else {
        match lacking_with(&screen.components, client, shown)? {
            None => return Ok(None),
            Some(kind) => reasons.push(format!("the screen uses `{kind}`")),
        }
    }
    let fallbacks = screen.fallback.as_ref().map_or(&[][..], Fallbacks::list);
    for (k, fb) in fallbacks.iter().enumerate() {
        match lacking_with(&fb.components, client, shown)? {
            None => return Ok(Some(k)),
            Some(kind) => reasons.push(format!("fallback {} uses `{kind}`", k + 1)),
        }
    }
    Err(EngineError::ClientUnsupported {
        screen: screen.id.clone(),
        reason: reasons.join("; "),
    })
}

/// The first capability (`text`, `custom:<name>`) a shown component of
/// `list` needs that the client lacks.
fn lacking(
    flow: &CompiledFlow,
    list: &[ComponentDef],
    client: &ClientInfo,
    version: Option<&semver::Version>,
    context: &Value,
) -> Result<Option<String>, EngineError> {
    lacking_with(list, client, &|c: &ComponentDef| {
        visible(flow, c, context, version)
    })
}

/// [`lacking`] with the visibility of each component decided by `shown`.
pub(super) fn lacking_with(
    list: &[ComponentDef],
    client: &ClientInfo,
    shown: &Shown<'_>,
) -> Result<Option<String>, EngineError> {
    for c in list {
        if !shown(c)? {
            continue;
        }
        if !client.supports(c) {
            return Ok(Some(c.capability()));
        }
        if let Some(kind) = lacking_with(c.children(), client, shown)? {
            return Ok(Some(kind));
        }
    }
    Ok(None)
}

/// Whether `c` is shown: its `min_app_version` is met (an unknown version
/// is current) and its `visible_when` holds.
pub(super) fn visible(
    flow: &CompiledFlow,
    c: &ComponentDef,
    context: &Value,
    version: Option<&semver::Version>,
) -> Result<bool, EngineError> {
    if let (Some(min), Some(have)) = (c.min_app_version().and_then(lenient_semver), version)
        && *have < min
    {
        return Ok(false);
    }
    match c.visible_when() {
        None => Ok(true),
        Some(Value::Bool(b)) => Ok(*b),
        Some(rule) => match flow.guard(rule) {
            Some(rule) => rule.matches(context).map_err(|err| EngineError::Rule {
                node: format!("{} (visible_when)", c.id().unwrap_or(c.kind())),
                message: err.to_string(),
            }),
            // Every guard is compiled with the flow; a missing one is a
            // compiler gap, and showing the component loses nothing.
            None => Ok(true),
        },
    }
}

/// What the client in `context` is shown for `screen`, to check a submit
/// against: the components, and the inputs a custom component without
/// declared `inputs` submits (its first fallback's).
pub fn effective_components<'a>(
    flow: &CompiledFlow,
    screen: &'a ScreenNode,
    context: &Value,
) -> Result<(&'a [ComponentDef], &'a [ComponentDef]), EngineError> {
    let client = ClientInfo::from_context(context);
    let version = client.version();
    let fallbacks = screen.fallback.as_ref().map_or(&[][..], Fallbacks::list);
    Ok(
        match choose(flow, screen, &client, version.as_ref(), context)? {
            Some(k) => (&fallbacks[k].components, &[][..]),
            None => (
                &screen.components,
                fallbacks.first().map_or(&[][..], |f| &f.components),
            ),
        },
    )
}

/// What an impression of node `idx` carries: the screen's log id and the
/// log ids of the components this client is shown, in tree order. `None`
/// for a node that shows nothing when entered (a step's pending screen
/// is not an impression: the user did nothing to reach it).
pub(super) fn impression(
    flow: &CompiledFlow,
    idx: super::NodeIdx,
    context: &Value,
) -> Option<(String, Vec<String>)> {
    let version = context["client"]["app_version"]
        .as_str()
        .and_then(lenient_semver);
    let shown = |list: &[ComponentDef], node: &str| {
        let mut ids = Vec::new();
        collect_log_ids(flow, list, node, context, version.as_ref(), &mut ids);
        ids
    };
    match flow.node_def(idx) {
        NodeDef::Screen(screen) => {
            // A client this screen cannot serve gets an error when it is
            // rendered; the impression then lists no component.
            let components = effective_components(flow, screen, context)
                .map(|(list, _)| shown(list, &screen.id))
                .unwrap_or_default();
            let id = node_log_id(screen.log_id.as_deref(), &flow.id, &screen.id);
            Some((id, components))
        }
        NodeDef::End(end) if !end.components.is_empty() || end.title.is_some() => {
            let client = ClientInfo::from_context(context);
            let designed = matches!(
                lacking(flow, &end.components, &client, version.as_ref(), context),
                Ok(None)
            );
            let components = if designed {
                shown(&end.components, &end.id)
            } else {
                Vec::new()
            };
            Some((
                node_log_id(end.log_id.as_deref(), &flow.id, &end.id),
                components,
            ))
        }
        _ => None,
    }
}

fn collect_log_ids(
    flow: &CompiledFlow,
    list: &[ComponentDef],
    node: &str,
    context: &Value,
    version: Option<&semver::Version>,
    out: &mut Vec<String>,
) {
    for c in list {
        // A guard that fails to evaluate fails the render too; listing the
        // component keeps the impression close to what was meant.
        if !visible(flow, c, context, version).unwrap_or(true) {
            continue;
        }
        if let Some(id) = c.log_id_in(&flow.id, node) {
            out.push(id);
        }
        collect_log_ids(flow, c.children(), node, context, version, out);
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
    let mut r = Renderer::new(flow, ctx);
    r.node = &state.node;
    match flow.node_def(idx) {
        NodeDef::Screen(screen) => {
            let client = ClientInfo::from_context(ctx);
            let chosen = choose(flow, screen, &client, r.version.as_ref(), ctx)?;
            let fallback = chosen.is_some();
            let (title, components) = match (&screen.fallback, chosen) {
                (Some(fbs), Some(k)) => {
                    let fb = &fbs.list()[k];
                    (fb.title.as_ref().or(screen.title.as_ref()), &fb.components)
                }
                _ => (screen.title.as_ref(), &screen.components),
            };
            let values = match &state.draft {
                Some(draft) => draft.clone(),
                None => ctx["input"]
                    .get(crate::flow::compose::local_id(&screen.id))
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
                        log_id: a.log_id_in(&flow.id, &screen.id),
                        label: a.label.as_ref().map(|t| r.text(t)).transpose()?,
                        validates: a.validate,
                    })
                })
                .collect::<Result<_, EngineError>>()?;
            Ok(Some(ScreenView {
                id: screen.id.clone(),
                log_id: node_log_id(screen.log_id.as_deref(), &flow.id, &screen.id),
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
            let (components, fallback) = match core_or_generic(
                flow,
                &end.id,
                &end.components,
                ctx,
                r.version.as_ref(),
                || generic_end(end.outcome),
            )? {
                Tree::AsDesigned => (r.components(&end.components)?, false),
                Tree::Generic(list) => (r.components(&list)?, true),
            };
            Ok(Some(ScreenView {
                id: end.id.clone(),
                log_id: node_log_id(end.log_id.as_deref(), &flow.id, &end.id),
                title: end.title.as_ref().map(|t| r.text(t)).transpose()?,
                components,
                actions: Vec::new(),
                errors: Vec::new(),
                values: Map::new(),
                fallback,
                terminal: true,
            }))
        }
        NodeDef::End(_) => Ok(None),
        node => match node.role() {
            Role::Task if state.status == Status::Waiting => {
                let (title, components, fallback) = match node.pending() {
                    Some(p) => {
                        let title = p.title.as_ref().map(|t| r.text(t)).transpose()?;
                        match core_or_generic(
                            flow,
                            node.id(),
                            &p.components,
                            ctx,
                            r.version.as_ref(),
                            || default_pending().1,
                        )? {
                            Tree::AsDesigned => (title, r.components(&p.components)?, false),
                            Tree::Generic(list) => (title, list, true),
                        }
                    }
                    None => {
                        let (title, list) = default_pending();
                        require_generic(node.id(), ctx, "the built-in pending screen")?;
                        (title, list, false)
                    }
                };
                Ok(Some(ScreenView {
                    id: node.id().to_string(),
                    log_id: node_log_id(None, &flow.id, node.id()),
                    title,
                    components,
                    actions: Vec::new(),
                    errors: Vec::new(),
                    values: Map::new(),
                    fallback,
                    terminal: false,
                }))
            }
            // A session that failed on a step (no error edge) or was cancelled
            // while waiting: a generic last screen, never a blank one.
            Role::Task | Role::Inline => {
                require_generic(node.id(), ctx, "the session ended on a step")?;
                let (title, components) = if state.status == Status::Failed {
                    default_error()
                } else {
                    default_closed()
                };
                Ok(Some(ScreenView {
                    id: node.id().to_string(),
                    log_id: node_log_id(None, &flow.id, node.id()),
                    title,
                    components,
                    actions: Vec::new(),
                    errors: Vec::new(),
                    values: Map::new(),
                    fallback: false,
                    terminal: true,
                }))
            }
            // A session never rests on a decision; a snapshot that does is
            // corrupt, not a client mistake. (Screens and ends matched above.)
            Role::Decision | Role::Screen | Role::End => {
                debug_assert!(
                    state.status != Status::Active,
                    "session rests on `{}`",
                    node.id()
                );
                Err(EngineError::UnknownNode {
                    node: node.id().to_string(),
                    version: flow.version,
                })
            }
        },
    }
}

/// Which tree an end or pending screen is sent as.
enum Tree {
    AsDesigned,
    /// The built-in text screen standing in for it.
    Generic(Vec<ComponentDef>),
}

/// End and pending screens declare no fallback (validation keeps them to
/// core kinds), so a client that lacks one of their kinds, or is too old
/// for a component's `min_app_version`, gets a built-in text screen in
/// their place rather than a kind it would break on.
fn core_or_generic(
    flow: &CompiledFlow,
    node: &str,
    components: &[ComponentDef],
    context: &Value,
    version: Option<&semver::Version>,
    generic: impl FnOnce() -> Vec<ComponentDef>,
) -> Result<Tree, EngineError> {
    let client = ClientInfo::from_context(context);
    match lacking(flow, components, &client, version, context)? {
        None => Ok(Tree::AsDesigned),
        Some(kind) => {
            require_generic(node, context, &format!("it uses `{kind}`"))?;
            Ok(Tree::Generic(generic()))
        }
    }
}

/// The built-in screens are plain `text`: a client that cannot render even
/// that gets `CLIENT_UNSUPPORTED` instead of a kind it lacks.
fn require_generic(node: &str, context: &Value, why: &str) -> Result<(), EngineError> {
    let client = ClientInfo::from_context(context);
    match &client.capabilities {
        Some(list) if !list.iter().any(|k| k == "text") => Err(EngineError::ClientUnsupported {
            screen: node.to_string(),
            reason: format!("{why}, and the client lacks `text` for the built-in screen"),
        }),
        _ => Ok(()),
    }
}

fn generic_end(outcome: Outcome) -> Vec<ComponentDef> {
    let text = match outcome {
        Outcome::Completed => "All done. Thank you!",
        Outcome::Abandoned => "This flow was closed.",
        Outcome::Failed => "We could not complete this.",
    };
    vec![ComponentDef::Text {
        id: Some("end".into()),
        log_id: None,
        visible_when: None,
        min_app_version: None,
        text: Text::Plain(text.into()),
    }]
}

fn default_pending() -> (Option<String>, Vec<ComponentDef>) {
    (
        Some("One moment".into()),
        vec![ComponentDef::Text {
            id: Some("pending".into()),
            log_id: None,
            visible_when: None,
            min_app_version: None,
            text: Text::Plain("We are working on it. This screen updates by itself.".into()),
        }],
    )
}

fn default_error() -> (Option<String>, Vec<ComponentDef>) {
    (
        Some("Something went wrong".into()),
        vec![ComponentDef::Text {
            id: Some("error".into()),
            log_id: None,
            visible_when: None,
            min_app_version: None,
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
            log_id: None,
            visible_when: None,
            min_app_version: None,
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
    let r = Renderer::new(flow, context);
    r.text(text)
}

/// Renders a component tree of node `node` (an approval's fields for the
/// reviewer).
pub fn render_components(
    flow: &CompiledFlow,
    node: &str,
    list: &[ComponentDef],
    context: &Value,
) -> Result<Vec<ComponentDef>, EngineError> {
    let mut r = Renderer::new(flow, context);
    r.node = node;
    r.components(list)
}

/// Renders a message text (e.g. `pattern_message`) for the context's
/// locale; `None` when it fails, so the caller uses its default message.
pub(super) fn text_for_message(
    flow: &CompiledFlow,
    text: &Text,
    context: &Value,
) -> Option<String> {
    let r = Renderer::new(flow, context);
    r.text(text).ok()
}

struct Renderer<'a> {
    flow: &'a CompiledFlow,
    /// The node whose components are rendered, for their default log ids.
    node: &'a str,
    rctx: RenderContext,
    locale: Option<&'a str>,
    context: &'a Value,
    version: Option<semver::Version>,
}

impl<'a> Renderer<'a> {
    fn new(flow: &'a CompiledFlow, context: &'a Value) -> Self {
        Renderer {
            flow,
            node: "",
            rctx: RenderContext::new(context),
            locale: context["client"]["locale"].as_str(),
            context,
            version: context["client"]["app_version"]
                .as_str()
                .and_then(lenient_semver),
        }
    }

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

    fn log_id(&self, c: &ComponentDef) -> Option<String> {
        c.log_id_in(&self.flow.id, self.node)
    }

    fn opt(&self, text: &Option<Text>) -> Result<Option<Text>, EngineError> {
        text.as_ref()
            .map(|t| self.text(t).map(Text::Plain))
            .transpose()
    }

    fn plain(&self, text: &Text) -> Result<Text, EngineError> {
        self.text(text).map(Text::Plain)
    }

    /// The shown components of `list`, rendered, without their guards.
    fn components(&self, list: &[ComponentDef]) -> Result<Vec<ComponentDef>, EngineError> {
        let mut out = Vec::with_capacity(list.len());
        for c in list {
            if visible(self.flow, c, self.context, self.version.as_ref())? {
                out.push(self.component(c)?);
            }
        }
        Ok(out)
    }

    fn component(&self, c: &ComponentDef) -> Result<ComponentDef, EngineError> {
        use ComponentDef as C;
        Ok(match c {
            C::Text { id, text, .. } => C::Text {
                visible_when: None,
                log_id: self.log_id(c),
                min_app_version: None,
                id: id.clone(),
                text: self.plain(text)?,
            },
            C::Heading {
                id, text, level, ..
            } => C::Heading {
                visible_when: None,
                log_id: self.log_id(c),
                min_app_version: None,
                id: id.clone(),
                text: self.plain(text)?,
                level: *level,
            },
            C::Image { id, url, alt, .. } => C::Image {
                visible_when: None,
                log_id: self.log_id(c),
                min_app_version: None,
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
                ..
            } => C::TextInput {
                visible_when: None,
                log_id: self.log_id(c),
                min_app_version: None,
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
                ..
            } => C::NumberInput {
                visible_when: None,
                log_id: self.log_id(c),
                min_app_version: None,
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
                ..
            } => C::EmailInput {
                visible_when: None,
                log_id: self.log_id(c),
                min_app_version: None,
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
                ..
            } => C::Select {
                visible_when: None,
                log_id: self.log_id(c),
                min_app_version: None,
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
                ..
            } => C::Checkbox {
                visible_when: None,
                log_id: self.log_id(c),
                min_app_version: None,
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
                ..
            } => C::Date {
                visible_when: None,
                log_id: self.log_id(c),
                min_app_version: None,
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
                ..
            } => C::Button {
                visible_when: None,
                log_id: self.log_id(c),
                min_app_version: None,
                id: id.clone(),
                label: self.plain(label)?,
                action: action.clone(),
                style: *style,
            },
            C::List {
                id,
                ordered,
                children,
                ..
            } => C::List {
                visible_when: None,
                log_id: self.log_id(c),
                min_app_version: None,
                id: id.clone(),
                ordered: *ordered,
                children: self.components(children)?,
            },
            C::Card {
                id,
                title,
                children,
                ..
            } => C::Card {
                visible_when: None,
                log_id: self.log_id(c),
                min_app_version: None,
                id: id.clone(),
                title: self.opt(title)?,
                children: self.components(children)?,
            },
            C::Stack {
                id,
                direction,
                children,
                ..
            } => C::Stack {
                visible_when: None,
                log_id: self.log_id(c),
                min_app_version: None,
                id: id.clone(),
                direction: *direction,
                children: self.components(children)?,
            },
            C::Markdown { id, text, .. } => C::Markdown {
                visible_when: None,
                log_id: self.log_id(c),
                min_app_version: None,
                id: id.clone(),
                text: self.plain(text)?,
            },
            C::Custom {
                id,
                name,
                props,
                inputs,
                ..
            } => C::Custom {
                visible_when: None,
                log_id: self.log_id(c),
                min_app_version: None,
                id: id.clone(),
                name: name.clone(),
                props: props.clone(),
                inputs: inputs.clone(),
            },
        })
    }
}

//! GraphQL output types for screens: one concrete type per component kind
//! behind the `Component` interface, so Apollo Kotlin / Swift / TS codegen
//! produces typed models. Built from the engine's rendered [`ScreenView`].

use async_graphql::{Enum, ID, Interface, Json, SimpleObject};
use serde_json::{Map, Value};

use crate::engine::{self, ScreenView};
use crate::flow::model::{
    self, ButtonStyle as ModelButtonStyle, ComponentDef, InputType,
    StackDirection as ModelStackDirection, Text,
};
use crate::service::SessionView;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum SessionStatus {
    Active,
    Waiting,
    Completed,
    Failed,
    Expired,
}

impl SessionStatus {
    /// The status as the store keeps it.
    pub fn as_stored(self) -> &'static str {
        match self {
            SessionStatus::Active => engine::Status::Active,
            SessionStatus::Waiting => engine::Status::Waiting,
            SessionStatus::Completed => engine::Status::Completed,
            SessionStatus::Failed => engine::Status::Failed,
            SessionStatus::Expired => engine::Status::Expired,
        }
        .as_str()
    }
}

impl From<engine::Status> for SessionStatus {
    fn from(s: engine::Status) -> Self {
        match s {
            engine::Status::Active => SessionStatus::Active,
            engine::Status::Waiting => SessionStatus::Waiting,
            engine::Status::Completed => SessionStatus::Completed,
            engine::Status::Failed => SessionStatus::Failed,
            engine::Status::Expired => SessionStatus::Expired,
        }
    }
}

/// How a session ended, as its flow's `end` node says: a business result,
/// apart from the technical `status` (a declined application is a
/// `COMPLETED` session whose outcome the flow names `FAILED` or
/// `ABANDONED`, not a crash).
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum SessionOutcome {
    Completed,
    Abandoned,
    Failed,
}

impl From<crate::flow::model::Outcome> for SessionOutcome {
    fn from(o: crate::flow::model::Outcome) -> Self {
        use crate::flow::model::Outcome;
        match o {
            Outcome::Completed => SessionOutcome::Completed,
            Outcome::Abandoned => SessionOutcome::Abandoned,
            Outcome::Failed => SessionOutcome::Failed,
        }
    }
}

/// One user's walk through one pinned flow version.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(complex)]
pub struct FlowSession {
    pub id: ID,
    /// Returned by `startFlow` only; send it back as `Authorization: Bearer <token>`.
    pub token: Option<String>,
    pub flow_id: ID,
    pub flow_version: i32,
    pub status: SessionStatus,
    /// The `end` node's outcome; null until the session ends.
    pub outcome: Option<SessionOutcome>,
    /// The screen to show now; null once the session ended without a last screen.
    pub screen: Option<Screen>,
    /// What support reads with an API key (see `super::support`).
    #[graphql(skip)]
    pub support: Option<std::sync::Arc<crate::service::support::SupportView>>,
}

impl FlowSession {
    pub fn from_view(v: SessionView, token: Option<String>) -> FlowSession {
        FlowSession {
            id: ID(v.id),
            token,
            flow_id: ID(v.flow_id),
            flow_version: v.flow_version,
            status: v.status.into(),
            outcome: v.outcome.map(Into::into),
            screen: v.screen.map(Screen::from_view),
            support: None,
        }
    }
}

#[derive(SimpleObject, Clone, Debug)]
pub struct Screen {
    pub id: ID,
    /// Analytics id: log the screen's impressions under it (the server's
    /// own impression events carry it too).
    pub log_id: String,
    pub title: Option<String>,
    pub components: Vec<Component>,
    /// Every action this screen accepts, whichever component triggers it.
    pub actions: Vec<ScreenAction>,
    /// After a failed submit: what was wrong, per field.
    pub errors: Vec<FieldError>,
    /// Current input values by component id (what the user typed, or entered before).
    pub values: Json<Map<String, Value>>,
    /// The client was sent the screen's fallback (it lacks a capability or app version).
    pub fallback: bool,
    /// The last screen of an ended session: no action leaves it.
    pub terminal: bool,
}

impl Screen {
    fn from_view(v: ScreenView) -> Screen {
        let components = v
            .components
            .iter()
            .map(|c| Component::from_def(c, &v.values))
            .collect();
        Screen {
            id: ID(v.id),
            log_id: v.log_id,
            title: v.title,
            components,
            actions: v
                .actions
                .into_iter()
                .map(|a| ScreenAction {
                    id: ID(a.id),
                    log_id: a.log_id,
                    label: a.label,
                    validates: a.validates,
                })
                .collect(),
            errors: v
                .errors
                .into_iter()
                .map(|e| FieldError {
                    field: e.field.map(ID),
                    code: e.code.as_str().to_owned(),
                    message: e.message,
                })
                .collect(),
            values: Json(v.values),
            fallback: v.fallback,
            terminal: v.terminal,
        }
    }
}

#[derive(SimpleObject, Clone, Debug)]
pub struct ScreenAction {
    pub id: ID,
    /// Analytics id: log taps on it under this id (the server's `submitted`
    /// events carry it too).
    pub log_id: String,
    pub label: Option<String>,
    /// Submitting with this action validates and stores the screen's inputs.
    pub validates: bool,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct FieldError {
    /// The input's component id; null for an error about the whole submit.
    pub field: Option<ID>,
    pub code: String,
    pub message: String,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct SelectOption {
    pub value: String,
    pub label: String,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ButtonStyle {
    Primary,
    Secondary,
    Link,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum StackDirection {
    Vertical,
    Horizontal,
}

/// A UI component. `kind` names the concrete type in snake_case.
#[derive(Interface, Clone, Debug)]
#[graphql(
    field(name = "id", ty = "&Option<ID>"),
    field(name = "kind", ty = "&String"),
    field(
        name = "log_id",
        ty = "&Option<String>",
        desc = "Analytics id: log the component's impressions and taps under it. Null for a component without `id` or `log_id`."
    )
)]
pub enum Component {
    Text(TextComponent),
    Heading(HeadingComponent),
    Image(ImageComponent),
    TextInput(TextInputComponent),
    NumberInput(NumberInputComponent),
    EmailInput(EmailInputComponent),
    Select(SelectComponent),
    Checkbox(CheckboxComponent),
    Date(DateComponent),
    Button(ButtonComponent),
    List(ListComponent),
    Card(CardComponent),
    Stack(StackComponent),
    Markdown(MarkdownComponent),
    Custom(CustomComponent),
}

#[derive(SimpleObject, Clone, Debug)]
pub struct TextComponent {
    pub id: Option<ID>,
    pub kind: String,
    pub log_id: Option<String>,
    pub text: String,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct HeadingComponent {
    pub id: Option<ID>,
    pub kind: String,
    pub log_id: Option<String>,
    pub text: String,
    /// 1 (largest) to 6.
    pub level: i32,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct ImageComponent {
    pub id: Option<ID>,
    pub kind: String,
    pub log_id: Option<String>,
    pub url: String,
    pub alt: Option<String>,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct TextInputComponent {
    pub id: Option<ID>,
    pub kind: String,
    pub log_id: Option<String>,
    pub label: String,
    pub placeholder: Option<String>,
    pub required: bool,
    pub min_length: Option<i32>,
    pub max_length: Option<i32>,
    /// Regular expression the whole value must match (the server checks it too).
    pub pattern: Option<String>,
    pub pattern_message: Option<String>,
    pub value: Option<String>,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct NumberInputComponent {
    pub id: Option<ID>,
    pub kind: String,
    pub log_id: Option<String>,
    pub label: String,
    pub required: bool,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub integer: bool,
    /// Named apart from the string inputs' `value` so that one query can
    /// select both without an alias (GraphQL's same-response-shape rule).
    pub number_value: Option<f64>,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct EmailInputComponent {
    pub id: Option<ID>,
    pub kind: String,
    pub log_id: Option<String>,
    pub label: String,
    pub placeholder: Option<String>,
    pub required: bool,
    pub value: Option<String>,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct SelectComponent {
    pub id: Option<ID>,
    pub kind: String,
    pub log_id: Option<String>,
    pub label: String,
    pub options: Vec<SelectOption>,
    pub required: bool,
    pub value: Option<String>,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct CheckboxComponent {
    pub id: Option<ID>,
    pub kind: String,
    pub log_id: Option<String>,
    pub label: String,
    pub required: bool,
    pub checked: Option<bool>,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct DateComponent {
    pub id: Option<ID>,
    pub kind: String,
    pub log_id: Option<String>,
    pub label: String,
    pub required: bool,
    /// Earliest allowed date, YYYY-MM-DD.
    pub min_date: Option<String>,
    /// Latest allowed date, YYYY-MM-DD.
    pub max_date: Option<String>,
    pub value: Option<String>,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct ButtonComponent {
    pub id: Option<ID>,
    pub kind: String,
    pub log_id: Option<String>,
    pub label: String,
    /// The screen action this button submits.
    pub action: String,
    pub style: ButtonStyle,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct ListComponent {
    pub id: Option<ID>,
    pub kind: String,
    pub log_id: Option<String>,
    pub ordered: bool,
    pub children: Vec<Component>,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct CardComponent {
    pub id: Option<ID>,
    pub kind: String,
    pub log_id: Option<String>,
    pub title: Option<String>,
    pub children: Vec<Component>,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct StackComponent {
    pub id: Option<ID>,
    pub kind: String,
    pub log_id: Option<String>,
    pub direction: StackDirection,
    pub children: Vec<Component>,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct MarkdownComponent {
    pub id: Option<ID>,
    pub kind: String,
    pub log_id: Option<String>,
    /// CommonMark.
    pub text: String,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct CustomComponent {
    pub id: Option<ID>,
    pub kind: String,
    pub log_id: Option<String>,
    /// The custom kind's name; clients advertise it as `custom:<name>`.
    pub name: String,
    pub props: Json<Value>,
    /// The values it submits, each checked by the server; null when the
    /// flow declares none (it then submits what the screen's first
    /// fallback's inputs submit).
    pub inputs: Option<Vec<CustomInput>>,
}

/// One value a custom component submits, and how the server checks it.
#[derive(SimpleObject, Clone, Debug)]
pub struct CustomInput {
    /// Key of the value in `submit(values:)`.
    pub id: ID,
    #[graphql(name = "type")]
    pub kind: CustomInputType,
    pub required: bool,
    pub min_length: Option<u32>,
    pub max_length: Option<u32>,
    /// Regular expression the whole value must match.
    pub pattern: Option<String>,
    /// Smallest number, or earliest `YYYY-MM-DD`.
    pub min: Option<Json<Value>>,
    /// Largest number, or latest `YYYY-MM-DD`.
    pub max: Option<Json<Value>>,
    /// Whole numbers only.
    pub integer: bool,
    /// The values a `SELECT` may submit.
    pub options: Vec<String>,
}

/// The type of a custom component's input value.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CustomInputType {
    Text,
    Number,
    Email,
    Select,
    Checkbox,
    Date,
}

impl From<InputType> for CustomInputType {
    fn from(t: InputType) -> Self {
        match t {
            InputType::Text => CustomInputType::Text,
            InputType::Number => CustomInputType::Number,
            InputType::Email => CustomInputType::Email,
            InputType::Select => CustomInputType::Select,
            InputType::Checkbox => CustomInputType::Checkbox,
            InputType::Date => CustomInputType::Date,
        }
    }
}

impl From<&model::CustomInput> for CustomInput {
    fn from(i: &model::CustomInput) -> Self {
        CustomInput {
            id: ID(i.id.clone()),
            kind: i.kind.into(),
            required: i.required,
            min_length: i.min_length,
            max_length: i.max_length,
            pattern: i.pattern.clone(),
            min: i.min.clone().map(Json),
            max: i.max.clone().map(Json),
            integer: i.integer,
            options: i.options.clone(),
        }
    }
}

/// Rendered texts are always `Text::Plain`; anything else renders empty.
fn s(t: &Text) -> String {
    match t {
        Text::Plain(s) => s.clone(),
        Text::Localized(m) => m.values().next().cloned().unwrap_or_default(),
    }
}

fn os(t: &Option<Text>) -> Option<String> {
    t.as_ref().map(s)
}

impl Component {
    pub(crate) fn from_def(c: &ComponentDef, values: &Map<String, Value>) -> Component {
        let id = c.id().map(|i| ID(i.to_string()));
        let kind = c.kind().to_string();
        let log_id = c.log_id().map(str::to_owned);
        let value = |id: &str| values.get(id);
        let text_value = |i: &str| value(i).and_then(Value::as_str).map(str::to_string);
        let children = |list: &[ComponentDef]| {
            list.iter()
                .map(|c| Component::from_def(c, values))
                .collect()
        };
        use ComponentDef as C;
        match c {
            C::Text { text, .. } => Component::Text(TextComponent {
                id,
                kind,
                log_id: log_id.clone(),
                text: s(text),
            }),
            C::Heading { text, level, .. } => Component::Heading(HeadingComponent {
                id,
                kind,
                log_id: log_id.clone(),
                text: s(text),
                level: i32::from(*level),
            }),
            C::Image { url, alt, .. } => Component::Image(ImageComponent {
                id,
                kind,
                log_id: log_id.clone(),
                url: s(url),
                alt: os(alt),
            }),
            C::TextInput {
                id: key,
                label,
                placeholder,
                required,
                min_length,
                max_length,
                pattern,
                pattern_message,
                ..
            } => Component::TextInput(TextInputComponent {
                id,
                kind,
                log_id: log_id.clone(),
                label: s(label),
                placeholder: os(placeholder),
                required: *required,
                min_length: min_length.map(|v| v as i32),
                max_length: max_length.map(|v| v as i32),
                pattern: pattern.clone(),
                pattern_message: os(pattern_message),
                value: text_value(key),
            }),
            C::NumberInput {
                id: key,
                label,
                required,
                min,
                max,
                integer,
                ..
            } => Component::NumberInput(NumberInputComponent {
                id,
                kind,
                log_id: log_id.clone(),
                label: s(label),
                required: *required,
                min: *min,
                max: *max,
                integer: *integer,
                number_value: value(key)
                    .and_then(|v| v.as_f64().or_else(|| v.as_str()?.trim().parse().ok())),
            }),
            C::EmailInput {
                id: key,
                label,
                placeholder,
                required,
                ..
            } => Component::EmailInput(EmailInputComponent {
                id,
                kind,
                log_id: log_id.clone(),
                label: s(label),
                placeholder: os(placeholder),
                required: *required,
                value: text_value(key),
            }),
            C::Select {
                id: key,
                label,
                options,
                required,
                ..
            } => Component::Select(SelectComponent {
                id,
                kind,
                log_id: log_id.clone(),
                label: s(label),
                options: options
                    .iter()
                    .map(|o| SelectOption {
                        value: o.value.clone(),
                        label: s(&o.label),
                    })
                    .collect(),
                required: *required,
                value: text_value(key),
            }),
            C::Checkbox {
                id: key,
                label,
                required,
                ..
            } => Component::Checkbox(CheckboxComponent {
                id,
                kind,
                log_id: log_id.clone(),
                label: s(label),
                required: *required,
                checked: value(key).and_then(Value::as_bool),
            }),
            C::Date {
                id: key,
                label,
                required,
                min,
                max,
                ..
            } => Component::Date(DateComponent {
                id,
                kind,
                log_id: log_id.clone(),
                label: s(label),
                required: *required,
                min_date: min.clone(),
                max_date: max.clone(),
                value: text_value(key),
            }),
            C::Button {
                label,
                action,
                style,
                ..
            } => Component::Button(ButtonComponent {
                id,
                kind,
                log_id: log_id.clone(),
                label: s(label),
                action: action.clone(),
                style: match style {
                    ModelButtonStyle::Primary => ButtonStyle::Primary,
                    ModelButtonStyle::Secondary => ButtonStyle::Secondary,
                    ModelButtonStyle::Link => ButtonStyle::Link,
                },
            }),
            C::List {
                ordered,
                children: ch,
                ..
            } => Component::List(ListComponent {
                id,
                kind,
                log_id: log_id.clone(),
                ordered: *ordered,
                children: children(ch),
            }),
            C::Card {
                title,
                children: ch,
                ..
            } => Component::Card(CardComponent {
                id,
                kind,
                log_id: log_id.clone(),
                title: os(title),
                children: children(ch),
            }),
            C::Stack {
                direction,
                children: ch,
                ..
            } => Component::Stack(StackComponent {
                id,
                kind,
                log_id: log_id.clone(),
                direction: match direction {
                    ModelStackDirection::Vertical => StackDirection::Vertical,
                    ModelStackDirection::Horizontal => StackDirection::Horizontal,
                },
                children: children(ch),
            }),
            C::Markdown { text, .. } => Component::Markdown(MarkdownComponent {
                id,
                kind,
                log_id: log_id.clone(),
                text: s(text),
            }),
            C::Custom {
                name,
                props,
                inputs,
                ..
            } => Component::Custom(CustomComponent {
                id,
                kind,
                log_id: log_id.clone(),
                name: name.clone(),
                props: Json(props.clone()),
                inputs: inputs
                    .as_ref()
                    .map(|list| list.iter().map(CustomInput::from).collect()),
            }),
        }
    }
}

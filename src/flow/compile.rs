//! Compilation: a validated [`FlowDef`] becomes an immutable [`CompiledFlow`]
//! with every rule, template and pattern compiled once, and edges resolved
//! to node indices. A compiled flow version is shared behind an `Arc` by
//! every session pinned to it and never changes.

use std::collections::HashMap;

use regex::Regex;

use super::error::FlowError;
use super::model::{ComponentDef, FlowDef, NodeDef, Outcome, Text};
use super::template::Template;
use super::validate;
use crate::rules::Rule;

pub type NodeIdx = usize;

/// One flow version, ready for the engine.
#[derive(Debug)]
pub struct CompiledFlow {
    pub id: String,
    pub version: i32,
    pub hash: String,
    pub def: FlowDef,
    pub start: NodeIdx,
    pub nodes: Vec<CompiledNode>,
    index: HashMap<String, NodeIdx>,
    /// Compiled templates keyed by their source text: one compile per
    /// distinct string, looked up while rendering the model's `Text`s.
    templates: HashMap<String, Template>,
    /// Input patterns, anchored, keyed by their source.
    patterns: HashMap<String, Regex>,
    /// Flags the flow's rules and templates read (`flags.<key>`), which the
    /// service evaluates for the session before each advance.
    pub flag_keys: FlagRefs,
}

/// Which flags a flow reads.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum FlagRefs {
    /// None: no flag evaluation at all.
    #[default]
    None,
    /// These keys (`flags.<key>` paths).
    Keys(Vec<String>),
    /// Every flag (a template reads `flags` as a whole, e.g. `flags['a-b']`).
    All,
}

impl FlagRefs {
    fn add_path(&mut self, path: &str) {
        let mut segs = path.split('.');
        if segs.next() != Some("flags") {
            return;
        }
        match segs.next() {
            None | Some("") => *self = FlagRefs::All,
            Some(key) => match self {
                FlagRefs::All => {}
                FlagRefs::None => *self = FlagRefs::Keys(vec![key.to_string()]),
                FlagRefs::Keys(keys) => {
                    if !keys.iter().any(|k| k == key) {
                        keys.push(key.to_string());
                    }
                }
            },
        }
    }
}

#[derive(Debug)]
pub struct CompiledNode {
    pub id: String,
    pub kind: CompiledKind,
}

#[derive(Debug)]
pub enum CompiledKind {
    Screen {
        actions: Vec<CompiledAction>,
        min_app_version: Option<semver::Version>,
    },
    Decision {
        edges: Vec<CompiledEdge>,
    },
    End {
        outcome: Outcome,
    },
}

#[derive(Debug)]
pub struct CompiledAction {
    pub id: String,
    pub validate: bool,
    pub edges: Vec<CompiledEdge>,
}

#[derive(Debug)]
pub struct CompiledEdge {
    pub when: Option<Rule>,
    pub to: NodeIdx,
}

impl CompiledFlow {
    /// Compiles a flow that passed validation. Anything validation should
    /// have caught still fails cleanly here (a flow loaded from the store
    /// was validated by an older build, and must not panic this one).
    pub fn compile(def: FlowDef, version: i32, hash: String) -> Result<CompiledFlow, FlowError> {
        let index: HashMap<String, NodeIdx> = def
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id().to_string(), i))
            .collect();
        let resolve = |to: &str, node: &str| -> Result<NodeIdx, FlowError> {
            index.get(to).copied().ok_or_else(|| FlowError::Compile {
                flow: def.id.clone(),
                message: format!("node `{node}` has an edge to unknown node `{to}`"),
            })
        };
        let compile_edges =
            |edges: &super::model::Edges, node: &str| -> Result<Vec<CompiledEdge>, FlowError> {
                edges
                    .to_list()
                    .iter()
                    .map(|e| {
                        let when = match &e.when {
                            Some(rule) => {
                                Some(Rule::compile(rule).map_err(|err| FlowError::Compile {
                                    flow: def.id.clone(),
                                    message: format!("node `{node}`: rule does not compile: {err}"),
                                })?)
                            }
                            None => None,
                        };
                        Ok(CompiledEdge {
                            when,
                            to: resolve(&e.to, node)?,
                        })
                    })
                    .collect()
            };

        let mut nodes = Vec::with_capacity(def.nodes.len());
        let mut flag_keys = FlagRefs::None;
        let mut texts: Vec<&Text> = Vec::new();
        let mut pattern_sources: Vec<&str> = Vec::new();
        for node in &def.nodes {
            let kind = match node {
                NodeDef::Screen(s) => {
                    texts.extend(s.title.iter());
                    collect_all(&s.components, &mut texts, &mut pattern_sources);
                    if let Some(fb) = &s.fallback {
                        texts.extend(fb.title.iter());
                        collect_all(&fb.components, &mut texts, &mut pattern_sources);
                    }
                    let mut actions = Vec::with_capacity(s.actions.len());
                    for a in &s.actions {
                        texts.extend(a.label.iter());
                        actions.push(CompiledAction {
                            id: a.id.clone(),
                            validate: a.validate,
                            edges: compile_edges(&a.next, &s.id)?,
                        });
                    }
                    let min_app_version = match &s.min_app_version {
                        Some(v) => Some(lenient_semver(v).ok_or_else(|| FlowError::Compile {
                            flow: def.id.clone(),
                            message: format!(
                                "screen `{}`: min_app_version `{v}` is not a version",
                                s.id
                            ),
                        })?),
                        None => None,
                    };
                    CompiledKind::Screen {
                        actions,
                        min_app_version,
                    }
                }
                NodeDef::Decision(d) => CompiledKind::Decision {
                    edges: compile_edges(&d.next, &d.id)?,
                },
                NodeDef::End(e) => {
                    texts.extend(e.title.iter());
                    collect_all(&e.components, &mut texts, &mut pattern_sources);
                    CompiledKind::End { outcome: e.outcome }
                }
            };
            nodes.push(CompiledNode {
                id: node.id().to_string(),
                kind,
            });
        }

        let mut templates = HashMap::new();
        for text in texts {
            for (_, src) in text.sources() {
                if templates.contains_key(src) {
                    continue;
                }
                let t = Template::compile(src).map_err(|err| FlowError::Compile {
                    flow: def.id.clone(),
                    message: format!("template `{src}` does not compile: {err}"),
                })?;
                for var in t.variables() {
                    flag_keys.add_path(&var);
                }
                templates.insert(src.to_string(), t);
            }
        }
        for node in &nodes {
            let edges: Vec<&CompiledEdge> = match &node.kind {
                CompiledKind::Screen { actions, .. } => {
                    actions.iter().flat_map(|a| &a.edges).collect()
                }
                CompiledKind::Decision { edges } => edges.iter().collect(),
                CompiledKind::End { .. } => Vec::new(),
            };
            for rule in edges.iter().filter_map(|e| e.when.as_ref()) {
                for path in rule.var_paths() {
                    flag_keys.add_path(&path);
                }
            }
        }
        let mut patterns = HashMap::new();
        for src in pattern_sources {
            let re = validate::compile_input_pattern(src).map_err(|err| FlowError::Compile {
                flow: def.id.clone(),
                message: format!("pattern `{src}` does not compile: {err}"),
            })?;
            patterns.insert(src.to_string(), re);
        }

        let start = resolve(&def.start, "start")?;
        Ok(CompiledFlow {
            id: def.id.clone(),
            version,
            hash,
            def,
            start,
            nodes,
            index,
            templates,
            patterns,
            flag_keys,
        })
    }

    pub fn node_index(&self, id: &str) -> Option<NodeIdx> {
        self.index.get(id).copied()
    }

    /// The source definition of node `idx`.
    pub fn node_def(&self, idx: NodeIdx) -> &NodeDef {
        &self.def.nodes[idx]
    }

    pub fn template(&self, source: &str) -> Option<&Template> {
        self.templates.get(source)
    }

    pub fn pattern(&self, source: &str) -> Option<&Regex> {
        self.patterns.get(source)
    }
}

fn collect_all<'a>(
    components: &'a [ComponentDef],
    texts: &mut Vec<&'a Text>,
    patterns: &mut Vec<&'a str>,
) {
    for c in components {
        collect_texts(c, texts, patterns);
        collect_all(c.children(), texts, patterns);
    }
}

fn collect_texts<'a>(c: &'a ComponentDef, texts: &mut Vec<&'a Text>, patterns: &mut Vec<&'a str>) {
    match c {
        ComponentDef::Text { text, .. }
        | ComponentDef::Heading { text, .. }
        | ComponentDef::Markdown { text, .. } => texts.push(text),
        ComponentDef::Image { url, alt, .. } => {
            texts.push(url);
            texts.extend(alt.iter());
        }
        ComponentDef::TextInput {
            label,
            placeholder,
            pattern,
            pattern_message,
            ..
        } => {
            texts.push(label);
            texts.extend(placeholder.iter());
            texts.extend(pattern_message.iter());
            patterns.extend(pattern.as_deref());
        }
        ComponentDef::EmailInput {
            label, placeholder, ..
        } => {
            texts.push(label);
            texts.extend(placeholder.iter());
        }
        ComponentDef::NumberInput { label, .. }
        | ComponentDef::Checkbox { label, .. }
        | ComponentDef::Date { label, .. }
        | ComponentDef::Button { label, .. } => texts.push(label),
        ComponentDef::Select { label, options, .. } => {
            texts.push(label);
            texts.extend(options.iter().map(|o| &o.label));
        }
        ComponentDef::Card { title, .. } => texts.extend(title.iter()),
        ComponentDef::List { .. } | ComponentDef::Stack { .. } | ComponentDef::Custom { .. } => {}
    }
}

/// Parses app versions the way apps report them: what
/// [`validate::parse_app_version`] accepts, plus a `v` prefix and trailing
/// build noise such as `5.2.1 (1234)`.
pub fn lenient_semver(raw: &str) -> Option<semver::Version> {
    let s = raw.trim().trim_start_matches(['v', 'V']);
    let s = s.split_whitespace().next()?;
    if s.split(['-', '+'])
        .next()?
        .split('.')
        .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    validate::parse_app_version(s)
}

#[cfg(test)]
mod tests {
    use super::lenient_semver;

    #[test]
    fn flag_references_are_collected() {
        use super::FlagRefs;
        let mut refs = FlagRefs::None;
        refs.add_path("user.attributes.plan");
        assert_eq!(refs, FlagRefs::None);
        refs.add_path("flags.a");
        refs.add_path("flags.b.deep");
        refs.add_path("flags.a");
        assert_eq!(refs, FlagRefs::Keys(vec!["a".into(), "b".into()]));
        refs.add_path("flags");
        assert_eq!(refs, FlagRefs::All);
        refs.add_path("flags.c");
        assert_eq!(refs, FlagRefs::All);
    }

    #[test]
    fn lenient_versions() {
        assert_eq!(lenient_semver("5.2").unwrap().to_string(), "5.2.0");
        assert_eq!(lenient_semver("v5").unwrap().to_string(), "5.0.0");
        assert_eq!(lenient_semver("5.2.1 (1234)").unwrap().to_string(), "5.2.1");
        assert_eq!(
            lenient_semver("5.2-beta.1").unwrap().to_string(),
            "5.2.0-beta.1"
        );
        assert!(lenient_semver("five").is_none());
        assert!(lenient_semver("").is_none());
        assert!(lenient_semver("1.2.3.4").is_none());
    }
}

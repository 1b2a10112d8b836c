//! flagd's own evaluator conformance suite (open-feature/flagd-testbed:
//! the evaluator gherkin features and testkit flags), run unchanged against
//! Baton's flag evaluation. The data is read in place from
//! `../shared/conformance/flagd-testbed` beside the repository (or
//! `BATON_FLAGD_TESTBED`); it is not copied into the repository.
//!
//! Skipped, by tag: `@fractional-v1`, the old bucketing algorithm that
//! current flagd replaced (Baton implements v2, the current one).

use std::path::{Path, PathBuf};

use baton::flags::{EvaluationContext, FlagSet, FlagType, load_str};
use gherkin::{Feature, GherkinEnv, Step};
use serde_json::{Map, Value, json};

const SKIP_TAGS: [&str; 1] = ["fractional-v1"];

fn testbed_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("BATON_FLAGD_TESTBED")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/flagd-testbed")
        });
    if dir.join("evaluator").is_dir() {
        return Some(dir);
    }
    let msg = format!(
        "the flagd-testbed conformance data is not at {} (set BATON_FLAGD_TESTBED)",
        dir.display()
    );
    // CI always has it beside the clone: a missing folder there is a failure.
    assert!(std::env::var_os("CI").is_none(), "{msg}");
    eprintln!("!!!!! SKIPPED: {msg}");
    None
}

/// What an evaluation gave: the value (or the fallback), reason, error code
/// and metadata.
struct Evaluated {
    value: Value,
    reason: String,
    code: Option<String>,
    metadata: Map<String, Value>,
}

/// An outline's run: its tags and its example row (column, value).
type Run = (Vec<String>, Vec<(String, String)>);

/// One scenario (an outline row already filled in) as it runs.
#[derive(Default)]
struct World {
    flag_type: Option<FlagType>,
    key: String,
    fallback: String,
    context: Map<String, Value>,
    result: Option<Evaluated>,
}

fn typed(ty: &str, text: &str) -> Value {
    match ty {
        "Boolean" => Value::Bool(text == "true"),
        "Integer" => text.parse::<i64>().map(Value::from).unwrap_or(Value::Null),
        "Float" => text.parse::<f64>().map(Value::from).unwrap_or(Value::Null),
        "Object" => serde_json::from_str(text).unwrap_or(Value::Null),
        _ => Value::String(text.to_owned()),
    }
}

fn type_name(ty: FlagType) -> &'static str {
    match ty {
        FlagType::Boolean => "Boolean",
        FlagType::String => "String",
        FlagType::Integer => "Integer",
        FlagType::Float => "Float",
        FlagType::Object => "Object",
    }
}

/// The quoted arguments of a step, in order; `\"` inside one is a quote.
fn quoted(text: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut current: Option<String> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (&mut current, c) {
            (None, '"') => current = Some(String::new()),
            (None, _) => {}
            (Some(arg), '\\') => arg.extend(chars.next()),
            (Some(_), '"') => args.extend(current.take()),
            (Some(arg), c) => arg.push(c),
        }
    }
    args
}

fn same_number(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => (x - y).abs() < 1e-9,
        _ => a == b,
    }
}

fn run_step(set: &FlagSet, world: &mut World, step: &Step) -> Result<(), String> {
    let text = step.value.as_str();
    let args = quoted(text);
    if text == "an evaluator" {
        return Ok(());
    }
    if let Some(ty) = text
        .strip_prefix("a ")
        .and_then(|t| t.split_once("-flag with key "))
    {
        world.flag_type = Some(
            FlagType::parse(&ty.0.to_ascii_lowercase()).ok_or(format!("unknown type {}", ty.0))?,
        );
        world.key = args[0].clone();
        world.fallback = args[1].clone();
        return Ok(());
    }
    if text.starts_with("a context containing a targeting key with value") {
        world
            .context
            .insert("targetingKey".into(), Value::String(args[0].clone()));
        return Ok(());
    }
    if text.starts_with("a context containing a key") {
        world
            .context
            .insert(args[0].clone(), typed(&args[1], &args[2]));
        return Ok(());
    }
    if text.starts_with("a context containing a nested property") {
        let outer = world
            .context
            .entry(args[0].clone())
            .or_insert_with(|| json!({}));
        outer[&args[1]] = Value::String(args[2].clone());
        return Ok(());
    }
    if text == "the flag was evaluated with details" {
        let ty = world.flag_type.ok_or("no flag type given")?;
        let ctx = EvaluationContext::from_map(&world.context).map_err(|e| e.to_string())?;
        let r = set.evaluate_as(&world.key, &ctx, ty);
        let value = match r.value {
            Some(v) if r.error_code.is_none() => v.clone(),
            _ => typed(type_name(ty), &world.fallback),
        };
        world.result = Some(Evaluated {
            value,
            reason: r.reason.as_str().to_owned(),
            code: r.error_code.map(|c| c.as_str().to_owned()),
            metadata: r.metadata.clone(),
        });
        return Ok(());
    }
    let Evaluated {
        value,
        reason,
        code,
        metadata,
    } = world.result.as_ref().ok_or("not evaluated yet")?;
    if text.starts_with("the resolved details value should be") {
        let want = typed(type_name(world.flag_type.unwrap()), &args[0]);
        return if same_number(value, &want) {
            Ok(())
        } else {
            Err(format!("value {value}, expected {want}"))
        };
    }
    if text.starts_with("the reason should be") {
        return if *reason == args[0] {
            Ok(())
        } else {
            Err(format!("reason {reason}, expected {}", args[0]))
        };
    }
    if text.starts_with("the error-code should be") {
        let want = (!args[0].is_empty()).then(|| args[0].clone());
        return if *code == want {
            Ok(())
        } else {
            Err(format!("error code {code:?}, expected {want:?}"))
        };
    }
    if text == "the resolved metadata is empty" {
        return if metadata.is_empty() {
            Ok(())
        } else {
            Err(format!("metadata {metadata:?}, expected none"))
        };
    }
    if text == "the resolved metadata should contain" {
        let table = step.table.as_ref().ok_or("no table")?;
        for row in table.rows.iter().skip(1) {
            let want = typed(&row[1], &row[2]);
            match metadata.get(&row[0]) {
                Some(got) if same_number(got, &want) => {}
                got => return Err(format!("metadata {} = {got:?}, expected {want}", row[0])),
            }
        }
        return Ok(());
    }
    Err(format!("step not understood by this runner: {text}"))
}

fn fill(step: &Step, row: &[(String, String)]) -> Step {
    let mut step = step.clone();
    for (name, value) in row {
        step.value = step.value.replace(&format!("<{name}>"), value);
    }
    step
}

fn tag_skipped(tags: &[String]) -> Option<&'static str> {
    SKIP_TAGS
        .into_iter()
        .find(|skip| tags.iter().any(|t| t.trim_start_matches('@') == *skip))
}

#[test]
fn flagd_testbed_evaluator_suite_passes() {
    let Some(dir) = testbed_dir() else { return };
    let evaluator = dir.join("evaluator");
    let flags_path = evaluator.join("flags/testkit-flags.json");
    let text = std::fs::read_to_string(&flags_path).expect("testkit flags");
    let set = load_str(&flags_path, &text).set;

    let mut features: Vec<PathBuf> = std::fs::read_dir(evaluator.join("gherkin"))
        .expect("gherkin dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "feature"))
        .collect();
    features.sort();
    let (mut ran, mut skipped, mut failures) = (0, 0, Vec::new());
    for path in &features {
        // The testbed writes `\"` inside table cells, which Cucumber's
        // reference parser keeps as it is and this parser refuses: escape
        // the backslash so the cell reads the same as in Cucumber.
        let text = std::fs::read_to_string(path).expect("feature file");
        let feature = Feature::parse(text.replace("\\\"", "\\\\\""), GherkinEnv::default())
            .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        let background: Vec<Step> = feature
            .background
            .as_ref()
            .map(|b| b.steps.clone())
            .unwrap_or_default();
        let scenarios = feature
            .scenarios
            .iter()
            .chain(feature.rules.iter().flat_map(|r| r.scenarios.iter()));
        for scenario in scenarios {
            // One run per example row, or one run for a plain scenario.
            let mut runs: Vec<Run> = Vec::new();
            let base_tags: Vec<String> =
                feature.tags.iter().chain(&scenario.tags).cloned().collect();
            if scenario.examples.is_empty() {
                runs.push((base_tags.clone(), Vec::new()));
            }
            for examples in &scenario.examples {
                let Some(table) = &examples.table else {
                    continue;
                };
                let header = &table.rows[0];
                for row in &table.rows[1..] {
                    let tags = base_tags.iter().chain(&examples.tags).cloned().collect();
                    runs.push((
                        tags,
                        header.iter().cloned().zip(row.iter().cloned()).collect(),
                    ));
                }
            }
            for (tags, row) in runs {
                let name = format!(
                    "{} / {} {:?}",
                    path.file_name().unwrap().to_string_lossy(),
                    scenario.name,
                    row.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>()
                );
                if tag_skipped(&tags).is_some() {
                    skipped += 1;
                    continue;
                }
                ran += 1;
                let mut world = World::default();
                for step in background.iter().chain(&scenario.steps) {
                    if let Err(e) = run_step(&set, &mut world, &fill(step, &row)) {
                        failures.push(format!("{name}: `{}`: {e}", step.value));
                        break;
                    }
                }
            }
        }
    }
    eprintln!(
        "flagd-testbed: {ran} scenarios run, {skipped} skipped by tag {SKIP_TAGS:?}, {} failed",
        failures.len()
    );
    assert!(
        ran > 50,
        "only {ran} scenarios found in {}",
        evaluator.display()
    );
    assert!(
        failures.is_empty(),
        "flagd-testbed failures:\n{}",
        failures.join("\n")
    );
}

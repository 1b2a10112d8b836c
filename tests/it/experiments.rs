//! Experiments: definition files and their validation (every code with its
//! exact path), namespace bucketing, `baton validate` on experiment files,
//! and the statistics against reference values computed independently.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use baton::experiments::stats::{
    chance_to_beat, sample_ratio_check, two_proportion_p_value, wilson_interval,
};
use baton::experiments::{
    ArmCounts, Experiment, LoadedExperiment, Namespace, analyze, arm_weights, check_paths,
    load_dir, parse_rfc3339, parse_str, validate, validate_goals,
};
use baton::flags::{FlagSet, load_str};
use baton::flow::validate::{Issue, Severity, format_human};
use baton::rules::Rule;
use proptest::prelude::*;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_baton");

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// `headline` splits `short`/`classic` 50/50 inside an `if`; `plain` has
/// no targeting; `twice` has two `fractional`s.
fn flags() -> FlagSet {
    let load = load_str(
        Path::new("flags.json"),
        &json!({
            "flags": {
                "headline": {
                    "state": "ENABLED",
                    "variants": {"short": "Join", "classic": "Create", "long": "Create an account"},
                    "defaultVariant": "classic",
                    "targeting": {"if": [
                        {"==": [{"var": "client.platform"}, "ios"]},
                        {"fractional": [["short", 50], ["classic", 50], ["long"]]},
                        null
                    ]}
                },
                "plain": {
                    "state": "ENABLED",
                    "variants": {"on": true, "off": false},
                    "defaultVariant": "off"
                },
                "twice": {
                    "state": "ENABLED",
                    "variants": {"a": 1, "b": 2},
                    "defaultVariant": "a",
                    "targeting": {"if": [
                        {"var": "x"},
                        {"fractional": [["a", 1], ["b", 1]]},
                        {"fractional": [["a", 3], ["b", 1]]}
                    ]}
                }
            }
        })
        .to_string(),
    );
    assert!(!load.has_errors(), "{}", format_human(&load.issues));
    load.set
}

const GOOD: &str = r#"
id: headline-test
flag: headline
control: classic
eligible: {"==": [{"var": "client.locale"}, "en"]}
goals:
  - {flow: onboarding, node: done}
start: "2026-12-01T09:00:00Z"
stop: "2027-01-01T00:00:00+01:00"
namespace: {name: onboarding, range: [10, 60]}
"#;

fn parsed(file: &str, yaml: &str) -> LoadedExperiment {
    let def = parse_str(Path::new(file), yaml)
        .unwrap_or_else(|i| panic!("does not parse:\n{}", format_human(&i)));
    LoadedExperiment {
        file: file.into(),
        def,
    }
}

/// The good experiment with `edit` applied to its YAML.
fn variant(edit: impl Fn(&str) -> String) -> LoadedExperiment {
    parsed("e.yaml", &edit(GOOD))
}

fn triples(issues: &[Issue]) -> Vec<(&str, &str)> {
    issues
        .iter()
        .map(|i| (i.code.as_str(), i.path.as_str()))
        .collect()
}

#[track_caller]
fn only(issues: &[Issue], code: &str, path: &str) {
    assert_eq!(
        triples(issues),
        vec![(code, path)],
        "{}",
        format_human(issues)
    );
    assert!(issues[0].hint.is_some(), "{code} has no hint");
}

// ------------------------------------------------------------ definitions

#[test]
fn good_definition_validates_and_compiles() {
    let exp = parsed("e.yaml", GOOD);
    let flags = flags();
    assert_eq!(validate(std::slice::from_ref(&exp), &flags), vec![]);
    let compiled = Experiment::compile_all(&[exp], &flags).unwrap();
    let e = &compiled[0];
    assert_eq!(
        (e.id.as_str(), e.flag.as_str(), e.control.as_str()),
        ("headline-test", "headline", "classic")
    );
    assert_eq!(e.start, Some(1_796_115_600_000));
    assert_eq!(e.stop, Some(1_798_758_000_000));
    assert!(!e.is_running_at(1_796_115_599_999));
    assert!(e.is_running_at(1_796_115_600_000));
    assert!(!e.is_running_at(1_798_758_000_000));
    assert!(e.is_goal("onboarding", "done"));
    assert!(!e.is_goal("onboarding", "welcome"));
    assert!(!e.is_goal("checkout", "done"));
    let ns = e.namespace.as_ref().unwrap();
    assert_eq!(
        (ns.name.as_str(), ns.from, ns.to),
        ("onboarding", 10.0, 60.0)
    );

    // admits = namespace slice and eligibility.
    let en = json!({"client": {"locale": "en"}});
    let de = json!({"client": {"locale": "de"}});
    let inside = (0..1000)
        .map(|i| format!("user-{i}"))
        .find(|u| ns.contains(u))
        .unwrap();
    let outside = (0..1000)
        .map(|i| format!("user-{i}"))
        .find(|u| !ns.contains(u))
        .unwrap();
    assert!(e.admits(&inside, &en));
    assert!(!e.admits(&inside, &de));
    assert!(!e.admits(&outside, &en));
}

#[test]
fn json_definitions_parse_like_yaml() {
    let yaml = parsed("e.yaml", GOOD).def;
    let as_json = serde_json::to_string(&yaml).unwrap();
    assert_eq!(parse_str(Path::new("e.json"), &as_json).unwrap(), yaml);
}

#[test]
fn minimal_definition_needs_no_schedule_rule_or_namespace() {
    let exp = parsed(
        "m.yaml",
        "id: m\nflag: headline\ncontrol: short\ngoals: [{flow: f, node: n}]\n",
    );
    assert_eq!(validate(std::slice::from_ref(&exp), &flags()), vec![]);
    let e = &Experiment::compile_all(&[exp], &flags()).unwrap()[0];
    assert!(e.is_running_at(i64::MIN) && e.is_running_at(i64::MAX));
    assert!(e.admits("anyone", &json!({})));
}

#[test]
fn structural_errors_name_the_path() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "e.yaml",
            "id: x\nflag: headline\ncontrol: classic\ngoals: []\ngoal: 1\n",
            "$.goal",
        ),
        ("e.yaml", "id: x\nflag: headline\ngoals: []\n", "$"),
        (
            "e.yaml",
            "id: x\nflag: headline\ncontrol: classic\ngoals: [{flow: 1, node: done}]\n",
            "$.goals[0].flow",
        ),
        (
            "e.yaml",
            "id: x\nflag: headline\ncontrol: classic\ngoals: [{flow: f, node: n, extra: 1}]\n",
            "$.goals[0].extra",
        ),
        (
            "e.yaml",
            "id: x\nflag: headline\ncontrol: classic\ngoals: []\nnamespace: {name: n, range: [1, 2, 3]}\n",
            "$.namespace.range",
        ),
        (
            "e.yaml",
            "id: x\nflag: headline\ncontrol: classic\ngoals: []\nstart: 5\n",
            "$.start",
        ),
        ("e.yaml", "- 1\n- 2\n", "$"),
    ];
    for (file, text, path) in cases {
        let issues = parse_str(Path::new(file), text).unwrap_err();
        assert_eq!(
            triples(&issues),
            vec![("EXPERIMENT_STRUCTURE", *path)],
            "{text}"
        );
    }
}

#[test]
fn syntax_errors() {
    let issues = parse_str(Path::new("e.yaml"), "id: [unclosed\n").unwrap_err();
    assert_eq!(triples(&issues), vec![("EXPERIMENT_FILE_SYNTAX", "$")]);
    assert!(issues[0].message.contains("YAML"), "{}", issues[0].message);
    let issues = parse_str(Path::new("e.json"), "{\"id\": ").unwrap_err();
    assert_eq!(triples(&issues), vec![("EXPERIMENT_FILE_SYNTAX", "$")]);
    assert!(issues[0].message.contains("JSON"), "{}", issues[0].message);
}

#[test]
fn every_validation_code_with_its_path() {
    let f = flags();
    let check = |e: LoadedExperiment| validate(&[e], &f);

    only(
        &check(variant(|s| {
            s.replace("id: headline-test", "id: Headline Test")
        })),
        "EXPERIMENT_ID_INVALID",
        "$.id",
    );
    only(
        &check(variant(|s| s.replace("flag: headline", "flag: nope"))),
        "EXPERIMENT_FLAG_UNKNOWN",
        "$.flag",
    );
    only(
        &check(variant(|s| {
            s.replace("control: classic", "control: medium")
        })),
        "EXPERIMENT_CONTROL_UNKNOWN",
        "$.control",
    );
    only(
        &check(variant(|s| {
            s.replace(
                r#"eligible: {"==": [{"var": "client.locale"}, "en"]}"#,
                r#"eligible: {"nope": [1]}"#,
            )
        })),
        "EXPERIMENT_RULE_INVALID",
        "$.eligible",
    );
    only(
        &check(variant(|s| {
            s.replace("2026-12-01T09:00:00Z", "2026-02-30T09:00:00Z")
        })),
        "EXPERIMENT_TIMESTAMP_INVALID",
        "$.start",
    );
    only(
        &check(variant(|s| {
            s.replace("2027-01-01T00:00:00+01:00", "tomorrow")
        })),
        "EXPERIMENT_TIMESTAMP_INVALID",
        "$.stop",
    );
    // Same instant in another zone: not after start.
    only(
        &check(variant(|s| {
            s.replace("2027-01-01T00:00:00+01:00", "2026-12-01T10:00:00+01:00")
        })),
        "EXPERIMENT_STOP_BEFORE_START",
        "$.stop",
    );
    only(
        &check(variant(|s| {
            s.replace("goals:\n  - {flow: onboarding, node: done}", "goals: []")
        })),
        "EXPERIMENT_GOALS_EMPTY",
        "$.goals",
    );
    only(
        &check(variant(|s| {
            s.replace("range: [10, 60]", "range: [10, 100.5]")
        })),
        "EXPERIMENT_RANGE_OUT_OF_BOUNDS",
        "$.namespace.range[1]",
    );
    only(
        &check(variant(|s| s.replace("range: [10, 60]", "range: [-1, 60]"))),
        "EXPERIMENT_RANGE_OUT_OF_BOUNDS",
        "$.namespace.range[0]",
    );
    only(
        &check(variant(|s| s.replace("range: [10, 60]", "range: [60, 60]"))),
        "EXPERIMENT_RANGE_EMPTY",
        "$.namespace.range",
    );

    let warn = check(variant(|s| {
        s.replace(
            "flag: headline\ncontrol: classic",
            "flag: plain\ncontrol: off",
        )
    }));
    only(&warn, "EXPERIMENT_FLAG_NOT_RANDOMIZED", "$.flag");
    assert_eq!(warn[0].severity, Severity::Warning);
    assert!(
        warn[0].message.contains("no `fractional`"),
        "{}",
        warn[0].message
    );
    let warn = check(variant(|s| {
        s.replace(
            "flag: headline\ncontrol: classic",
            "flag: twice\ncontrol: a",
        )
    }));
    only(&warn, "EXPERIMENT_FLAG_NOT_RANDOMIZED", "$.flag");
    assert!(
        warn[0].message.contains("more than one"),
        "{}",
        warn[0].message
    );
    // Every other code is an error.
    assert_eq!(
        check(variant(|s| s.replace("flag: headline", "flag: nope")))[0].severity,
        Severity::Error
    );
}

#[test]
fn several_problems_in_one_file_all_come_out_in_field_order() {
    let e = variant(|s| {
        s.replace("id: headline-test", "id: X")
            .replace("control: classic", "control: medium")
            .replace("2026-12-01T09:00:00Z", "never")
            .replace("range: [10, 60]", "range: [70, 20]")
    });
    assert_eq!(
        triples(&validate(&[e], &flags())),
        vec![
            ("EXPERIMENT_ID_INVALID", "$.id"),
            ("EXPERIMENT_CONTROL_UNKNOWN", "$.control"),
            ("EXPERIMENT_TIMESTAMP_INVALID", "$.start"),
            ("EXPERIMENT_RANGE_EMPTY", "$.namespace.range"),
        ]
    );
}

#[test]
fn duplicate_ids_and_namespace_overlaps_are_reported_on_the_later_file() {
    let f = flags();
    let a = parsed("a.yaml", GOOD);
    let b = LoadedExperiment {
        file: "b.yaml".into(),
        ..a.clone()
    };
    let issues = validate(&[a.clone(), b], &f);
    // Same id, and the same range in the same namespace.
    assert_eq!(
        triples(&issues),
        vec![
            ("EXPERIMENT_ID_DUPLICATE", "$.id"),
            ("EXPERIMENT_NAMESPACE_OVERLAP", "$.namespace.range")
        ]
    );
    assert!(issues.iter().all(|i| i.file == "b.yaml"));
    assert!(
        issues[0].message.contains("a.yaml"),
        "{}",
        issues[0].message
    );
    assert!(
        issues[1].message.contains("headline-test"),
        "{}",
        issues[1].message
    );

    let with = |id: &str, ns: &str, range: &str| {
        parsed(
            &format!("{id}.yaml"),
            &GOOD
                .replace("id: headline-test", &format!("id: {id}"))
                .replace("name: onboarding", &format!("name: {ns}"))
                .replace("range: [10, 60]", &format!("range: {range}")),
        )
    };
    // [10, 60) and [60, 100): touching, not overlapping; another namespace
    // may reuse the range.
    assert_eq!(
        validate(
            &[
                a.clone(),
                with("b", "onboarding", "[60, 100]"),
                with("c", "other", "[0, 100]"),
                with("d", "onboarding", "[0, 10]")
            ],
            &f
        ),
        vec![]
    );
    let issues = validate(&[a, with("b", "onboarding", "[59.5, 100]")], &f);
    only(&issues, "EXPERIMENT_NAMESPACE_OVERLAP", "$.namespace.range");
    assert_eq!(issues[0].file, "b.yaml");
}

#[test]
fn compile_all_refuses_invalid_experiments() {
    let bad = variant(|s| s.replace("flag: headline", "flag: nope"));
    let issues = Experiment::compile_all(&[bad], &flags()).unwrap_err();
    assert_eq!(issues[0].code, "EXPERIMENT_FLAG_UNKNOWN");
    // A warning does not stop it.
    let warned = variant(|s| {
        s.replace(
            "flag: headline\ncontrol: classic",
            "flag: plain\ncontrol: off",
        )
    });
    assert_eq!(
        Experiment::compile_all(&[warned], &flags()).unwrap().len(),
        1
    );
}

#[test]
fn arm_weights_come_from_the_flags_one_fractional() {
    let f = flags();
    assert_eq!(
        arm_weights(&f, "headline"),
        Some(vec![
            ("short".into(), 50.0),
            ("classic".into(), 50.0),
            ("long".into(), 1.0)
        ])
    );
    assert_eq!(arm_weights(&f, "plain"), None);
    assert_eq!(arm_weights(&f, "twice"), None);
    assert_eq!(arm_weights(&f, "nope"), None);
}

#[test]
fn rfc3339_parsing_is_public_and_strict() {
    assert_eq!(
        parse_rfc3339("2026-12-01T10:00:00.5+01:00"),
        Ok(1_796_115_600_500)
    );
    assert!(parse_rfc3339("2026-12-01").is_err());
}

// -------------------------------------------------------------- namespaces

#[test]
fn namespace_position_is_flagd_bucketing_on_name_plus_user() {
    // flagd's fractional with 100 equal buckets and an explicit bucketing
    // key puts `key` in bucket floor(murmur3(key) * 100 / 2^32): the same
    // number as floor(position) — checked against the rule engine's own
    // murmur3 implementation.
    let buckets: Vec<Value> = (0..100).map(|i| json!([format!("b{i}"), 1])).collect();
    for user in ["user-1", "user-2", "alice", "", "ü-42", "0"] {
        let key = format!("onboarding{user}");
        let mut args = vec![json!(key)];
        args.extend(buckets.iter().cloned());
        let rule = Rule::compile(&json!({ "fractional": args })).unwrap();
        let got = rule.evaluate(&json!({})).unwrap();
        let position = Namespace::position("onboarding", user);
        assert!((0.0..100.0).contains(&position));
        assert_eq!(
            got,
            json!(format!("b{}", position.floor() as u32)),
            "{user}"
        );
    }
}

#[test]
fn namespace_slices_take_their_share_and_disjoint_slices_never_share_a_user() {
    let a = Namespace {
        name: "checkout".into(),
        from: 0.0,
        to: 30.0,
    };
    let b = Namespace {
        name: "checkout".into(),
        from: 30.0,
        to: 100.0,
    };
    let n = 20_000;
    let mut in_a = 0;
    for i in 0..n {
        let u = format!("u{i}");
        assert_ne!(
            a.contains(&u),
            b.contains(&u),
            "{u} must be in exactly one slice"
        );
        in_a += usize::from(a.contains(&u));
    }
    let share = in_a as f64 / n as f64;
    assert!((share - 0.30).abs() < 0.015, "{share}");
    // Deterministic.
    assert_eq!(
        Namespace::position("checkout", "u7"),
        Namespace::position("checkout", "u7")
    );
    assert_ne!(
        Namespace::position("checkout", "u7"),
        Namespace::position("search", "u7")
    );
}

// ------------------------------------------------------- baton validate

#[test]
fn validate_checks_the_example_experiment_against_the_repo_flags() {
    // `experiments/` alone: flags come from ../flags. The example flag
    // splits its arms with `fractional`: a running experiment, no warning.
    let issues = check_paths(&[repo("experiments")]);
    assert_eq!(triples(&issues), vec![], "{}", format_human(&issues));
    let load = load_dir(&repo("experiments")).unwrap();
    assert_eq!(load.experiments.len(), 1);
    let def = &load.experiments[0].def;
    assert_eq!(
        (def.flag.as_str(), def.control.as_str()),
        ("signup-headline", "classic")
    );
    assert_eq!(
        (def.goals[0].flow.as_str(), def.goals[0].node.as_str()),
        ("onboarding", "done")
    );

    let out = Command::new(BIN)
        .args(["validate", "--format", "json"])
        .arg(repo("flows"))
        .arg(repo("flags"))
        .arg(repo("experiments"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let issues: Value = serde_json::from_slice(&out.stdout).unwrap();
    let codes: Vec<&str> = issues
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    assert!(codes.is_empty(), "{codes:?}");
}

#[test]
fn validate_finds_experiment_errors_in_dirs_and_files() {
    let tmp = tempfile::tempdir().unwrap();
    let exp_dir = tmp.path().join("experiments");
    let flag_dir = tmp.path().join("flags");
    fs::create_dir_all(&exp_dir).unwrap();
    fs::create_dir_all(&flag_dir).unwrap();
    fs::copy(
        repo("flags/onboarding.flagd.json"),
        flag_dir.join("f.flagd.json"),
    )
    .unwrap();
    // In a dir named `experiments` every file is an experiment, even one
    // that lacks `goals`.
    fs::write(
        exp_dir.join("a.yaml"),
        "id: a\nflag: new-signup-screen\ncontrol: maybe\ngoals: [{flow: f, node: n}]\n",
    )
    .unwrap();
    fs::write(
        exp_dir.join("b.yaml"),
        "id: b\nflag: new-signup-screen\ncontrol: off\n",
    )
    .unwrap();
    fs::write(
        exp_dir.join("c.json"),
        r#"{"id": "c", "flag": "gone", "control": "x", "goals": []}"#,
    )
    .unwrap();

    let out = Command::new(BIN)
        .args(["validate", "--format", "json"])
        .arg(&exp_dir)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let issues: Value = serde_json::from_slice(&out.stdout).unwrap();
    let got: Vec<(String, String, String)> = issues
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let file = Path::new(i["file"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (
                file,
                i["code"].as_str().unwrap().to_string(),
                i["path"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let t = |f: &str, c: &str, p: &str| (f.to_string(), c.to_string(), p.to_string());
    assert_eq!(
        got,
        vec![
            t("b.yaml", "EXPERIMENT_STRUCTURE", "$"),
            t("a.yaml", "EXPERIMENT_CONTROL_UNKNOWN", "$.control"),
            t("c.json", "EXPERIMENT_FLAG_UNKNOWN", "$.flag"),
            t("c.json", "EXPERIMENT_GOALS_EMPTY", "$.goals"),
        ]
    );

    // An experiment file next to flows and flags, recognised by content:
    // the flow checker leaves it alone; the flags beside it are used.
    let mixed = tmp.path().join("mixed");
    fs::create_dir_all(&mixed).unwrap();
    fs::copy(repo("flows/onboarding.yaml"), mixed.join("onboarding.yaml")).unwrap();
    fs::copy(
        repo("flags/onboarding.flagd.json"),
        mixed.join("flags.json"),
    )
    .unwrap();
    fs::write(
        mixed.join("exp.yaml"),
        "id: e\nflag: new-signup-screen\ncontrol: off\ngoals: [{flow: onboarding, node: done}]\n",
    )
    .unwrap();
    let issues = baton::flow::load::check_paths(std::slice::from_ref(&mixed));
    assert_eq!(issues, vec![], "{}", format_human(&issues));
    fs::write(
        mixed.join("exp.yaml"),
        "id: e\nflag: new-signup-screen\ncontrol: maybe\ngoals: [{flow: onboarding, node: done}]\n",
    )
    .unwrap();
    let issues =
        baton::flow::load::check_paths(&[mixed.join("exp.yaml"), mixed.join("flags.json")]);
    assert_eq!(
        triples(&issues),
        vec![("EXPERIMENT_CONTROL_UNKNOWN", "$.control")],
        "{}",
        format_human(&issues)
    );
}

// -------------------------------------------------------------- statistics
//
// Reference values were computed with Python 3 / scipy 1.17 / numpy 2.4,
// independently of this code:
// * Wilson: z = scipy.stats.norm.ppf(0.975); p = c/n; d = 1 + z²/n;
//   center = (p + z²/2n)/d; half = z/d·sqrt(p(1-p)/n + z²/4n²).
// * p-value: pooled p = (c1+c2)/(n1+n2), se = sqrt(p(1-p)(1/n1+1/n2)),
//   2·scipy.stats.norm.sf(|p1-p2|/se).
// * chance to beat: Evan Miller's closed form with scipy.special.betaln,
//   1 - Σ_{i<αB} exp(betaln(αA+i, βA+βB) - ln(βB+i) - betaln(1+i, βB)
//   - betaln(αA, βA)), αX = 1+c, βX = 1+n-c (cross-checked with
//   scipy.integrate.quad of beta.pdf·beta.cdf: equal to 1e-10).
// * SRM: scipy.stats.chisquare(observed, expected from the weights).

#[track_caller]
fn close(got: f64, want: f64, tol: f64, what: &str) {
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got}, want {want} (±{tol})"
    );
}

#[test]
fn wilson_intervals_match_scipy() {
    let cases = [
        (100, 1000, 0.082909443593, 0.120151963195),
        (130, 1000, 0.110563774625, 0.152268026654),
        (3, 10, 0.107791267406, 0.603221852539),
        (50, 50, 0.928652400867, 1.0),
        (0, 100, 0.0, 0.036993498207),
        (0, 1, 0.0, 0.793450685623),
        (1, 1, 0.206549314377, 1.0),
        (20000, 100000, 0.197532364638, 0.202490683230),
    ];
    for (c, n, lo, hi) in cases {
        let i = wilson_interval(c, n).unwrap();
        close(i.low, lo, 1e-9, &format!("low {c}/{n}"));
        close(i.high, hi, 1e-9, &format!("high {c}/{n}"));
    }
    assert_eq!(wilson_interval(0, 0), None);
    assert_eq!(wilson_interval(2, 1), None);
    // At a rate of 0 or 1 the interval starts or ends at it exactly, not
    // a rounding error past it (0 of 2 gave a low of 5.6e-17).
    for n in 1..=1000 {
        assert_eq!(wilson_interval(0, n).unwrap().low, 0.0, "0/{n}");
        assert_eq!(wilson_interval(n, n).unwrap().high, 1.0, "{n}/{n}");
    }
}

/// (c_a, n_a, c_b, n_b, two-sided p, P(p_a > p_b)).
const PAIRS: &[(u64, u64, u64, u64, f64, f64)] = &[
    (130, 1000, 100, 1000, 3.548845046647e-02, 0.9821650661),
    (400, 5000, 350, 5100, 2.929630093206e-02, 0.9853275186),
    (0, 100, 0, 100, 1.0, 0.5),
    (50, 50, 55, 60, 3.668277440247e-02, 0.9767910092),
    (3, 10, 1, 12, 1.895262686605e-01, 0.8881987578),
    (5, 20, 20000, 100000, 5.761954190620e-01, 0.7692555629),
    (20000, 100000, 5, 20, 5.761954190620e-01, 0.2307444371),
    (0, 1, 1, 1, 1.572992070503e-01, 0.1666666667),
    (520, 10000, 500, 10000, 5.203337738305e-01, 0.7397268408),
    (
        10300,
        100000,
        10000,
        100000,
        2.632823304899e-02,
        0.9868351802,
    ),
    (1, 1_000_000, 0, 1_000_000, 3.173103868775e-01, 0.7500001249),
    // Traffic at scale: posteriors with shapes in the millions.
    (103000, 1000000, 100000, 1000000, 2.148645839190e-12, 1.0),
    (
        1003000,
        10000000,
        1000000,
        10000000,
        2.544499858047e-02,
        0.9872774943,
    ),
    (500, 1000000, 450, 1000000, 1.046750208454e-01, 0.9475959916),
    (
        30000000,
        100000000,
        29990000,
        100000000,
        1.228048185849e-01,
        0.9385975903,
    ),
];

#[test]
fn p_values_and_chance_to_beat_match_scipy() {
    for &(ca, na, cb, nb, p, ctb) in PAIRS {
        let what = format!("{ca}/{na} vs {cb}/{nb}");
        close(
            two_proportion_p_value(ca, na, cb, nb).unwrap(),
            p,
            1e-9,
            &format!("p {what}"),
        );
        close(
            chance_to_beat(ca, na, cb, nb).unwrap(),
            ctb,
            1e-6,
            &format!("ctb {what}"),
        );
    }
    assert_eq!(two_proportion_p_value(1, 0, 1, 1), None);
    assert_eq!(chance_to_beat(2, 1, 0, 1), None);
}

#[test]
fn sample_ratio_check_matches_scipy_and_flags_below_0_001() {
    let arms = |names: &[&str], obs: &[u64]| -> Vec<(String, u64)> {
        names
            .iter()
            .zip(obs)
            .map(|(a, o)| (a.to_string(), *o))
            .collect()
    };
    let w = |names: &[&str], ws: &[f64]| -> Vec<(String, f64)> {
        names
            .iter()
            .zip(ws)
            .map(|(a, o)| (a.to_string(), *o))
            .collect()
    };
    let two = ["a", "b"];
    let three = ["a", "b", "c"];
    // (arms, observed, weights, chi-square, p, flagged)
    type Case<'a> = (&'a [&'a str], &'a [u64], &'a [f64], f64, f64, bool);
    let cases: &[Case] = &[
        (&two, &[1000, 1000], &[50.0, 50.0], 0.0, 1.0, false),
        (
            &two,
            &[5000, 5200],
            &[50.0, 50.0],
            3.921568627451,
            4.767038065616e-02,
            false,
        ),
        (
            &two,
            &[1000, 1200],
            &[50.0, 50.0],
            18.181818181818,
            2.007865612426e-05,
            true,
        ),
        (
            &three,
            &[210, 290, 500],
            &[20.0, 30.0, 50.0],
            0.833333333333,
            6.592406302004e-01,
            false,
        ),
        (
            &three,
            &[180, 320, 500],
            &[20.0, 30.0, 50.0],
            3.333333333333,
            1.888756028376e-01,
            false,
        ),
        (&two, &[100, 300], &[1.0, 3.0], 0.0, 1.0, false),
        (
            &three,
            &[300, 420, 280],
            &[1.0, 1.0, 1.0],
            34.4,
            3.389494326197e-08,
            true,
        ),
    ];
    for (names, obs, ws, chi, p, flagged) in cases {
        let s = sample_ratio_check(&arms(names, obs), &w(names, ws)).unwrap();
        close(s.chi_square, *chi, 1e-9, &format!("chi {obs:?}"));
        close(s.p_value, *p, 1e-9 * p.max(1e-3), &format!("p {obs:?}"));
        assert_eq!(s.mismatch, *flagged, "{obs:?}");
        assert_eq!(s.degrees_of_freedom as usize, names.len() - 1);
    }
    // Traffic in an arm the split never sends anyone to.
    let s = sample_ratio_check(&arms(&three, &[100, 100, 3]), &w(&two, &[1.0, 1.0])).unwrap();
    assert_eq!(s.unexpected_arms, vec!["c".to_string()]);
    assert!(s.mismatch);
    assert_eq!(s.p_value, 1.0);
    // Nothing to test.
    assert_eq!(
        sample_ratio_check(&arms(&two, &[0, 0]), &w(&two, &[1.0, 1.0])),
        None
    );
    assert_eq!(
        sample_ratio_check(&arms(&two, &[5, 5]), &w(&["a"], &[1.0])),
        None
    );
}

fn all_finite(r: &baton::experiments::Results) {
    let json = serde_json::to_value(r).unwrap();
    fn walk(v: &Value) {
        match v {
            Value::Number(n) => assert!(n.as_f64().unwrap().is_finite()),
            Value::Array(a) => a.iter().for_each(walk),
            Value::Object(o) => o.values().for_each(walk),
            _ => {}
        }
    }
    walk(&json);
    // serde_json turns NaN/inf into null; results never have a float
    // where a null is not an Option.
    for arm in &r.arms {
        if let Some(c) = &arm.vs_control {
            assert!(
                c.absolute.is_finite()
                    && c.p_value.is_finite()
                    && c.chance_to_beat_control.is_finite()
            );
        }
    }
}

#[test]
fn analyze_puts_it_together() {
    let weights = vec![("short".to_string(), 50.0), ("classic".to_string(), 50.0)];
    let r = analyze(
        "classic",
        &[
            ArmCounts::new("classic", 1000, 100),
            ArmCounts::new("short", 1000, 130),
        ],
        Some(&weights),
    )
    .unwrap();
    all_finite(&r);
    assert!(r.control_found);
    assert_eq!(r.arms.len(), 2);
    let (ctl, short) = (&r.arms[0], &r.arms[1]);
    assert!(ctl.is_control && ctl.vs_control.is_none());
    assert_eq!(ctl.rate, Some(0.1));
    close(
        ctl.interval.unwrap().low,
        0.082909443593,
        1e-9,
        "control low",
    );
    let c = short.vs_control.as_ref().unwrap();
    close(c.absolute, 0.03, 1e-12, "absolute");
    close(c.relative.unwrap(), 0.3, 1e-12, "relative");
    close(c.p_value, 3.548845046647e-02, 1e-9, "p");
    close(c.chance_to_beat_control, 0.9821650661, 1e-5, "ctb");
    let srm = r.sample_ratio.unwrap();
    assert_eq!((srm.p_value, srm.mismatch), (1.0, false));
}

#[test]
fn analyze_edge_cases_never_panic_or_leak_nan() {
    // Zero exposures everywhere.
    let r = analyze(
        "a",
        &[ArmCounts::new("a", 0, 0), ArmCounts::new("b", 0, 0)],
        Some(&[("a".into(), 1.0), ("b".into(), 1.0)]),
    )
    .unwrap();
    all_finite(&r);
    assert!(
        r.arms
            .iter()
            .all(|a| a.rate.is_none() && a.interval.is_none() && a.vs_control.is_none())
    );
    assert_eq!(r.sample_ratio, None);

    // Everyone converted; control at 100% too: relative defined, p = 1.
    let r = analyze(
        "a",
        &[ArmCounts::new("a", 40, 40), ArmCounts::new("b", 60, 60)],
        None,
    )
    .unwrap();
    all_finite(&r);
    let c = r.arms[1].vs_control.as_ref().unwrap();
    assert_eq!((c.absolute, c.relative, c.p_value), (0.0, Some(0.0), 1.0));
    // Beta(61, 1) vs Beta(41, 1): P = ∫ 61 x^60 · x^41 dx = 61/102.
    close(
        c.chance_to_beat_control,
        61.0 / 102.0,
        1e-6,
        "ctb both at 100%",
    );

    // Control at 0%: no relative difference.
    let r = analyze(
        "a",
        &[ArmCounts::new("a", 50, 0), ArmCounts::new("b", 50, 5)],
        None,
    )
    .unwrap();
    all_finite(&r);
    assert_eq!(r.arms[1].vs_control.as_ref().unwrap().relative, None);

    // A single arm.
    let r = analyze(
        "a",
        &[ArmCounts::new("a", 10, 3)],
        Some(&[("a".into(), 1.0)]),
    )
    .unwrap();
    all_finite(&r);
    assert_eq!(r.arms.len(), 1);
    assert_eq!(r.sample_ratio, None);

    // Control missing: arms still get rates, no comparisons.
    let r = analyze(
        "ctl",
        &[ArmCounts::new("a", 10, 3), ArmCounts::new("b", 10, 4)],
        None,
    )
    .unwrap();
    all_finite(&r);
    assert!(!r.control_found);
    assert!(
        r.arms
            .iter()
            .all(|a| a.rate.is_some() && a.vs_control.is_none())
    );

    // An arm with weight but no counts yet shows up with zero exposures
    // and counts in the SRM check.
    let r = analyze(
        "a",
        &[ArmCounts::new("a", 100, 3)],
        Some(&[("a".into(), 1.0), ("b".into(), 1.0)]),
    )
    .unwrap();
    all_finite(&r);
    assert_eq!(r.arms[1].arm, "b");
    assert_eq!(r.arms[1].exposures, 0);
    assert!(r.sample_ratio.unwrap().mismatch);

    // Impossible counts are errors with codes.
    let e = analyze("a", &[ArmCounts::new("a", 1, 2)], None).unwrap_err();
    assert_eq!(e.code(), "STATS_CONVERSIONS_EXCEED_EXPOSURES");
    assert!(e.hint().is_some());
    let e = analyze(
        "a",
        &[ArmCounts::new("a", 1, 0), ArmCounts::new("a", 2, 0)],
        None,
    )
    .unwrap_err();
    assert_eq!(e.code(), "STATS_ARM_DUPLICATE");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn chance_to_beat_is_complementary_and_intervals_hold_the_rate(
        na in 0u64..200_000,
        nb in 0u64..200_000,
        fa in 0.0f64..=1.0,
        fb in 0.0f64..=1.0,
    ) {
        let ca = (na as f64 * fa).round() as u64;
        let cb = (nb as f64 * fb).round() as u64;
        let ab = chance_to_beat(ca, na, cb, nb).unwrap();
        let ba = chance_to_beat(cb, nb, ca, na).unwrap();
        prop_assert!((0.0..=1.0).contains(&ab));
        prop_assert!((ab + ba - 1.0).abs() < 1e-6, "{ab} + {ba}");
        for (c, n) in [(ca, na), (cb, nb)] {
            match wilson_interval(c, n) {
                None => prop_assert_eq!(n, 0),
                Some(i) => {
                    let rate = c as f64 / n as f64;
                    prop_assert!(i.low <= rate && rate <= i.high, "{c}/{n}: {i:?}");
                    prop_assert!(0.0 <= i.low && i.high <= 1.0);
                }
            }
        }
        if let Some(p) = two_proportion_p_value(ca, na, cb, nb) {
            prop_assert!((0.0..=1.0).contains(&p));
        }
    }
}

#[test]
fn goals_are_checked_against_the_flows() {
    let flows = vec![baton::flow::load::load_file(&repo("flows/onboarding.yaml")).unwrap()];
    let exp = parsed(
        "g.yaml",
        "id: g\nflag: headline\ncontrol: classic\ngoals:\n  - {flow: onboarding, node: done}\n  - {flow: onboarding, node: finished}\n  - {flow: checkout, node: paid}\n",
    );
    let issues = validate_goals(std::slice::from_ref(&exp), &flows);
    assert_eq!(
        triples(&issues),
        vec![
            ("EXPERIMENT_GOAL_NODE_UNKNOWN", "$.goals[1].node"),
            ("EXPERIMENT_GOAL_FLOW_UNKNOWN", "$.goals[2].flow"),
        ],
        "{}",
        format_human(&issues)
    );
    assert_eq!(issues[0].severity, Severity::Error);
    assert_eq!(issues[1].severity, Severity::Warning);
    assert!(issues.iter().all(|i| i.hint.is_some()));

    // `baton validate experiments/` finds ../flows by itself.
    let tmp = tempfile::tempdir().unwrap();
    for d in ["experiments", "flags", "flows"] {
        fs::create_dir_all(tmp.path().join(d)).unwrap();
    }
    fs::copy(
        repo("flags/onboarding.flagd.json"),
        tmp.path().join("flags/f.json"),
    )
    .unwrap();
    fs::copy(
        repo("flows/onboarding.yaml"),
        tmp.path().join("flows/onboarding.yaml"),
    )
    .unwrap();
    fs::write(
        tmp.path().join("experiments/e.yaml"),
        "id: e\nflag: new-signup-screen\ncontrol: off\ngoals: [{flow: onboarding, node: dne}]\n",
    )
    .unwrap();
    let issues = check_paths(&[tmp.path().join("experiments")]);
    assert_eq!(
        triples(&issues),
        vec![("EXPERIMENT_GOAL_NODE_UNKNOWN", "$.goals[0].node")],
        "{}",
        format_human(&issues)
    );
}

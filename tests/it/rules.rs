//! Rules: the official JsonLogic suite, differential edge cases against
//! json-logic-js, flagd operator conformance (flagd-testbed), fractional
//! bucketing against an independent murmur3, limits, and `eval_lines`.

use std::io::Cursor;

use baton::rules::{PreparedData, Rule, RuleLimits, eval_lines, truthy};
use proptest::prelude::*;
use serde_json::{Value, json};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jsonlogic");

/// JSON equality where numbers compare by value (`1.0 == 1`), as JavaScript does.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn eval(rule: &Value, data: &Value) -> Result<Value, String> {
    Rule::compile(rule)
        .and_then(|r| r.evaluate(data))
        .map_err(|e| e.code().to_string())
}

#[test]
fn official_jsonlogic_suite_passes() {
    let text = std::fs::read_to_string(format!("{FIXTURES}/tests.json")).unwrap();
    let suite: Vec<Value> = serde_json::from_str(&text).unwrap();
    // Three cases from the newer upstream suite (see the fixtures README).
    let upstream_additions = [
        json!([[1, {"var": "x"}, 3], {"x": 2}, [1, 2, 3]]),
        json!([{"if": [{"var": "x"}, [{"var": "y"}], 99]}, {"x": true, "y": 42}, [42]]),
        json!([{"reduce": [{"var": "integers"}, {"+": [{"var": "current"}, {"var": "accumulator"}]}, {"var": "start_with"}]},
               {"integers": [1, 2, 3, 4], "start_with": 59}, 69]),
    ];
    let mut failures = Vec::new();
    let mut count = 0;
    for case in suite.iter().chain(upstream_additions.iter()) {
        let Some([rule, data, expected]) = case.as_array().map(|a| a.as_slice()) else {
            continue; // section comment
        };
        count += 1;
        match eval(rule, data) {
            Ok(got) if same(&got, expected) => {}
            other => failures.push(format!(
                "{rule} on {data}: expected {expected}, got {other:?}"
            )),
        }
    }
    assert_eq!(count, 278);
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn edge_cases_match_json_logic_js_except_documented_deviations() {
    let text = std::fs::read_to_string(format!("{FIXTURES}/edge_cases.json")).unwrap();
    let cases: Vec<Value> = serde_json::from_str(&text).unwrap();
    let mut failures = Vec::new();
    let mut deviations = 0;
    for case in &cases {
        let (rule, data) = (&case["rule"], &case["data"]);
        let got = eval(rule, data);
        let expected = case.get("baton").unwrap_or(&case["jsonlogic_js"]);
        if case.get("baton").is_some() {
            deviations += 1;
        }
        let ok = match (&got, expected.get("result")) {
            (Ok(v), Some(want)) => same(v, want),
            (Err(code), None) => {
                // json-logic-js errors are messages; Baton's are codes.
                let want = &expected["error"];
                want.as_str() == Some(code) || case.get("baton").is_none()
            }
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "{rule} on {data}: expected {expected}, got {got:?}"
            ));
        }
    }
    assert_eq!(cases.len(), 168);
    assert_eq!(
        deviations, 37,
        "deviation list changed: update the fixture and README"
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn truthiness_matches_jsonlogic_com() {
    // jsonlogic.com/truthy: [] is false, "0" is true; json-logic-js: {} is true.
    for (value, expected) in [
        (json!([]), false),
        (json!([0]), true),
        (json!("0"), true),
        (json!(""), false),
        (json!(0), false),
        (json!(-1), true),
        (json!({}), true),
        (json!(null), false),
    ] {
        assert_eq!(truthy(&value), expected, "{value}");
        let rule = Rule::compile(&json!({"var": "v"})).unwrap();
        assert_eq!(
            rule.matches(&json!({ "v": value })).unwrap(),
            expected,
            "{value}"
        );
        let bang = Rule::compile(&json!({"!!": [{"var": "v"}]})).unwrap();
        assert_eq!(
            bang.evaluate(&json!({ "v": value })).unwrap(),
            json!(expected)
        );
    }
}

// ---- flagd operators: cases from flagd-testbed (flags/custom-ops.json,
// flags/edge-case-flags.json, gherkin/targeting.feature) and flagd.dev. A
// `null` result is what makes flagd fall back to the default variant.

fn flagd(rule: Value, flag_key: &str, mut context: Value) -> Value {
    context["$flagd"] = json!({ "flagKey": flag_key });
    Rule::compile(&rule).unwrap().evaluate(&context).unwrap()
}

const SUITS: [(&str, u32); 4] = [
    ("clubs", 25),
    ("diamonds", 25),
    ("hearts", 25),
    ("spades", 25),
];

fn suits_rule(seed: Value) -> Value {
    let mut args = vec![seed];
    args.extend(SUITS.iter().map(|(v, w)| json!([v, w])));
    json!({ "fractional": args })
}

#[test]
fn flagd_testbed_fractional_v2() {
    let flag = suits_rule(json!({"cat": [{"var": "$flagd.flagKey"}, {"var": "user.name"}]}));
    for (name, want) in [
        ("jack", "hearts"),
        ("queen", "spades"),
        ("ten", "clubs"),
        ("nine", "diamonds"),
        ("3", "clubs"),
    ] {
        let got = flagd(
            flag.clone(),
            "fractional-flag",
            json!({"user": {"name": name}}),
        );
        assert_eq!(got, json!(want), "fractional-flag {name}");
    }

    let shared = suits_rule(json!({"cat": ["shared-seed", {"var": "user.name"}]}));
    for (name, want) in [
        ("seven", "hearts"),
        ("eight", "diamonds"),
        ("nine", "clubs"),
        ("two", "spades"),
    ] {
        for key in [
            "fractional-flag-A-shared-seed",
            "fractional-flag-B-shared-seed",
        ] {
            assert_eq!(
                flagd(shared.clone(), key, json!({"user": {"name": name}})),
                json!(want)
            );
        }
    }

    let shorthand = json!({"fractional": [["heads"], ["tails", 1]]});
    for (tk, want) in [("jon@company.com", "heads"), ("jane@company.com", "tails")] {
        let got = flagd(
            shorthand.clone(),
            "fractional-flag-shorthand",
            json!({"targetingKey": tk}),
        );
        assert_eq!(got, json!(want), "shorthand {tk}");
    }

    let edge = json!({"fractional": [{"var": "targetingKey"}, ["lower", 50], ["upper", 50]]});
    for (tk, want) in [
        ("ejOoVL", "lower"),
        ("bY9fO-", "lower"),
        ("SI7p-", "lower"),
        ("6LvT0", "upper"),
        ("ceQdGm", "upper"),
    ] {
        assert_eq!(
            flagd(
                edge.clone(),
                "fractional-hash-edge-flag",
                json!({"targetingKey": tk})
            ),
            json!(want),
            "{tk}"
        );
    }

    // Single entry: always that variant, even with the empty targeting key
    // an OpenFeature context without one carries.
    let single = json!({"fractional": [["single", 1]]});
    assert_eq!(
        flagd(
            single.clone(),
            "fractional-single-entry-flag",
            json!({"targetingKey": ""})
        ),
        json!("single")
    );
    assert_eq!(
        flagd(
            single,
            "fractional-single-entry-flag",
            json!({"targetingKey": "u"})
        ),
        json!("single")
    );
}

#[test]
fn flagd_testbed_fractional_nested_and_errors() {
    let nested_if = json!({"fractional": [{"var": "targetingKey"},
        [{"if": [{"==": [{"var": "tier"}, "premium"]}, "premium", "standard"]}, 50], ["standard", 50]]});
    for (tk, tier, want) in [
        ("jon@company.com", "premium", "premium"),
        ("jon@company.com", "basic", "standard"),
        ("user1", "premium", "standard"),
        ("user1", "basic", "standard"),
    ] {
        let got = flagd(
            nested_if.clone(),
            "fractional-nested-if-flag",
            json!({"targetingKey": tk, "tier": tier}),
        );
        assert_eq!(got, json!(want), "{tk} {tier}");
    }

    let nested_var =
        json!({"fractional": [{"var": "targetingKey"}, [{"var": "color"}, 50], ["blue", 50]]});
    for (tk, color, want) in [
        ("jon@company.com", "red", "red"),
        ("jon@company.com", "green", "green"),
        ("user1", "red", "blue"),
    ] {
        let got = flagd(
            nested_var.clone(),
            "fractional-nested-var-flag",
            json!({"targetingKey": tk, "color": color}),
        );
        assert_eq!(got, json!(want));
    }

    let nested_weight = json!({"fractional": [{"var": "targetingKey"},
        ["red", {"if": [{"==": [{"var": "tier"}, "premium"]}, 100, 0]}], ["blue", 10]]});
    for (tk, tier, want) in [
        ("jon@company.com", "premium", "red"),
        ("jon@company.com", "basic", "blue"),
        ("user1", "premium", "red"),
        ("user1", "basic", "blue"),
    ] {
        let got = flagd(
            nested_weight.clone(),
            "fractional-nested-weight-flag",
            json!({"targetingKey": tk, "tier": tier}),
        );
        assert_eq!(got, json!(want));
    }

    // Boolean variants: fractional as an `if` condition.
    let as_condition = |weights: [u32; 2]| json!({"if": [{"fractional": [[false, weights[0]], [true, weights[1]]]}, "big", "small"]});
    let ctx = json!({"targetingKey": "some-targeting-key"});
    assert_eq!(
        flagd(
            as_condition([0, 100]),
            "fractional-as-condition-flag",
            ctx.clone()
        ),
        json!("big")
    );
    assert_eq!(
        flagd(
            as_condition([100, 0]),
            "fractional-as-condition-false-flag",
            ctx
        ),
        json!("small")
    );

    // @operator-errors: null so the flag falls back to its default variant.
    let null_key = json!({"fractional": [{"var": "missing_key"}, ["one", 50], ["two", 50]]});
    assert_eq!(
        flagd(null_key, "fractional-null-bucket-key-flag", json!({})),
        Value::Null
    );
    let zero = json!({"fractional": [{"var": "targetingKey"}, ["one", 0], ["two", 0]]});
    assert_eq!(
        flagd(
            zero,
            "fractional-zero-weights-flag",
            json!({"targetingKey": "any-user"})
        ),
        Value::Null
    );
    let negative = json!({"fractional": [{"var": "targetingKey"}, ["one", -50], ["two", 100]]});
    assert_eq!(
        flagd(
            negative,
            "fractional-negative-weight-flag",
            json!({"targetingKey": "any-user"})
        ),
        json!("two")
    );
    for bad in [
        json!({"fractional": ["k", ["a", 1.5]]}),
        json!({"fractional": ["k", ["a", "50"]]}),
        json!({"fractional": ["k", ["a", 2147483648u64]]}),
        json!({"fractional": ["k", ["a", 2147483647], ["b", 1]]}),
        json!({"fractional": ["k", "not-a-bucket"]}),
        json!({"fractional": ["k", [["nested"], 1]]}),
        json!({"fractional": ["k"]}),
        json!({"fractional": []}),
    ] {
        assert_eq!(
            flagd(bad.clone(), "f", json!({"targetingKey": "u"})),
            Value::Null,
            "{bad}"
        );
    }
    // No targeting key at all with the implicit form → null.
    assert_eq!(
        flagd(json!({"fractional": [["a", 1], ["b", 1]]}), "f", json!({})),
        Value::Null
    );
}

#[test]
fn flagd_testbed_string_and_semver_ops() {
    let starts_ends = json!({"if": [
        {"starts_with": [{"var": "id"}, "abc"]}, "prefix",
        {"if": [{"ends_with": [{"var": "id"}, "xyz"]}, "postfix",
            {"if": [{"ends_with": [{"var": "id"}, 3]}, "fail", "none"]}]}]});
    for (id, want) in [
        ("abcdef", "prefix"),
        ("uvwxyz", "postfix"),
        ("abcxyz", "prefix"),
        ("lmnopq", "none"),
        ("3", "none"),
    ] {
        assert_eq!(
            flagd(starts_ends.clone(), "starts-ends-flag", json!({"id": id})),
            json!(want),
            "{id}"
        );
    }
    // flagd.dev examples.
    let email = json!({"email": "user@faas.com"});
    assert_eq!(
        eval(
            &json!({"starts_with": [{"var": "email"}, "user@faas"]}),
            &email
        ),
        Ok(json!(true))
    );
    assert_eq!(
        eval(
            &json!({"ends_with": [{"var": "email"}, "faas.com"]}),
            &email
        ),
        Ok(json!(true))
    );
    // @operator-errors: non-string input and wrong argument count give null.
    for rule in [
        json!({"starts_with": [{"var": "num"}, "abc"]}),
        json!({"ends_with": [{"var": "num"}, "xyz"]}),
        json!({"starts_with": ["abc"]}),
        json!({"ends_with": ["xyz"]}),
        json!({"sem_ver": [{"var": "version"}, "="]}),
        json!({"sem_ver": [{"var": "version"}, "===", "1.0.0"]}),
        json!({"sem_ver": ["not-a-version", "=", "1.0.0"]}),
    ] {
        assert_eq!(
            eval(&rule, &json!({"num": 123, "version": "1.0.0"})),
            Ok(Value::Null),
            "{rule}"
        );
    }

    let versions = json!({"if": [
        {"sem_ver": [{"var": "version"}, "=", "2.0.0"]}, "equal",
        {"if": [{"sem_ver": [{"var": "version"}, ">", "2.0.0"]}, "greater",
            {"if": [{"sem_ver": [{"var": "version"}, "<", "2.0.0"]}, "lesser",
                {"if": [{"sem_ver": [{"var": "version"}, "=", "2.0.0.0"]}, "fail", "none"]}]}]}]});
    for (v, want) in [
        ("2.0.0", "equal"),
        ("2.1.0", "greater"),
        ("1.9.0", "lesser"),
        ("2.0.0-alpha", "lesser"),
        ("2.0.0.0", "none"),
    ] {
        assert_eq!(
            eval(&versions, &json!({"version": v})),
            Ok(json!(want)),
            "{v}"
        );
    }
    let major_minor = json!({"if": [{"sem_ver": [{"var": "version"}, "~", "3.0.0"]}, "minor",
        {"if": [{"sem_ver": [{"var": "version"}, "^", "3.0.0"]}, "major", "none"]}]});
    for (v, want) in [("3.0.1", "minor"), ("3.1.0", "major"), ("4.0.0", "none")] {
        assert_eq!(
            eval(&major_minor, &json!({"version": v})),
            Ok(json!(want)),
            "{v}"
        );
    }
    let matches = |rule: Value, version: Value| {
        Rule::compile(&rule)
            .unwrap()
            .matches(&json!({"version": version}))
            .unwrap()
    };
    let v_prefix = json!({"sem_ver": [{"var": "version"}, "=", "v1.0.0"]});
    for v in ["1.0.0", "v1.0.0", "V1.0.0"] {
        assert!(matches(v_prefix.clone(), json!(v)), "{v}");
    }
    assert!(!matches(v_prefix, json!("2.0.0")));
    let partial = json!({"sem_ver": [{"var": "version"}, "^", "1"]});
    for v in [
        json!("1.5.0"),
        json!("1.0.0"),
        json!("1.0"),
        json!("1"),
        json!(1),
    ] {
        assert!(matches(partial.clone(), v.clone()), "{v}");
    }
    assert!(!matches(partial, json!("2.0.0")));
    let build = json!({"sem_ver": [{"var": "version"}, "=", "1.0.0+build"]});
    assert!(matches(build.clone(), json!("1.0.0")));
    assert!(matches(build.clone(), json!("1.0.0+other")));
    assert!(!matches(build, json!("2.0.0")));
}

// ---- fractional against an independent murmur3 (the `murmur3` crate) and
// flagd's published algorithm.

fn expected_variant(key: &str, weights: &[u32]) -> usize {
    let hash = murmur3::murmur3_32(&mut Cursor::new(key.as_bytes()), 0).unwrap();
    let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
    let bucket = (u64::from(hash) * total) >> 32;
    let mut end = 0;
    for (i, w) in weights.iter().enumerate() {
        end += u64::from(*w);
        if bucket < end {
            return i;
        }
    }
    unreachable!("bucket < total")
}

fn fractional_rule(weights: &[u32]) -> Rule {
    let mut args = vec![json!({"var": "key"})];
    args.extend(
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| json!([format!("v{i}"), w])),
    );
    Rule::compile(&json!({ "fractional": args })).unwrap()
}

#[test]
fn fractional_matches_independent_murmur3() {
    let weights = [10, 20, 30, 40];
    let rule = fractional_rule(&weights);
    for i in 0..2000 {
        let key = format!("user-{i}@example.com");
        let want = format!("v{}", expected_variant(&key, &weights));
        assert_eq!(
            rule.evaluate(&json!({"key": key})).unwrap(),
            json!(want),
            "{key}"
        );
    }
    // Implicit key: `$flagd.flagKey` + `targetingKey`.
    let implicit =
        Rule::compile(&json!({"fractional": [["v0", 1], ["v1", 1], ["v2", 1]]})).unwrap();
    for tk in ["alice", "bob", "", "ünïcødé"] {
        let want = format!("v{}", expected_variant(&format!("my-flag{tk}"), &[1, 1, 1]));
        let data = json!({"targetingKey": tk, "$flagd": {"flagKey": "my-flag"}});
        assert_eq!(implicit.evaluate(&data).unwrap(), json!(want), "{tk:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn fractional_is_deterministic_and_follows_weights(
        weights in prop::collection::vec(1u32..100, 1..5),
        salt in "[a-z]{0,8}",
    ) {
        let rule = fractional_rule(&weights);
        let total: u32 = weights.iter().sum();
        let n = 4000;
        let mut counts = vec![0u32; weights.len()];
        for i in 0..n {
            let key = format!("{salt}-{i}");
            let data = json!({"key": key});
            let got = rule.evaluate(&data).unwrap();
            prop_assert_eq!(&got, &rule.evaluate(&data).unwrap());
            let idx = expected_variant(&key, &weights);
            prop_assert_eq!(&got, &json!(format!("v{idx}")));
            counts[idx] += 1;
        }
        for (count, w) in counts.iter().zip(&weights) {
            let share = f64::from(*count) / f64::from(n);
            let want = f64::from(*w) / f64::from(total);
            // 4000 samples: one standard deviation is at most 0.8 points.
            prop_assert!((share - want).abs() < 0.04, "share {share} vs weight {want}");
        }
    }
}

// ---- compile-time limits, var paths, prepared data, eval_lines.

fn nested(depth: usize) -> Value {
    // `{"!": x}` adds one object level per step.
    let mut v = json!(true);
    for _ in 0..depth {
        v = json!({ "!": v });
    }
    v
}

#[test]
fn depth_limit_is_enforced_with_its_own_code() {
    assert!(Rule::compile(&nested(64)).is_ok());
    let err = Rule::compile(&nested(65)).unwrap_err();
    assert_eq!(err.code(), "RULE_TOO_DEEP");
    assert!(err.hint().is_some());
    let tight = RuleLimits {
        max_depth: 3,
        ..RuleLimits::default()
    };
    assert_eq!(
        Rule::compile_with_limits(&nested(4), &tight)
            .unwrap_err()
            .code(),
        "RULE_TOO_DEEP"
    );
    // Far deeper than any stack would like: rejected, not overflowed.
    assert_eq!(
        Rule::compile(&nested(1000)).unwrap_err().code(),
        "RULE_TOO_DEEP"
    );
}

#[test]
fn size_limit_is_enforced_with_its_own_code() {
    let list: Vec<String> = (0..8000).map(|i| format!("item-{i}")).collect();
    let big = json!({"in": [{"var": "x"}, list]});
    assert!(serde_json::to_vec(&big).unwrap().len() > 64 * 1024);
    let err = Rule::compile(&big).unwrap_err();
    assert_eq!(err.code(), "RULE_TOO_LARGE");
    let roomy = RuleLimits {
        max_bytes: 1 << 20,
        ..RuleLimits::default()
    };
    let rule = Rule::compile_with_limits(&big, &roomy).unwrap();
    assert!(rule.matches(&json!({"x": "item-7999"})).unwrap());
}

#[test]
fn unknown_operators_are_rejected_at_compile_time() {
    for (rule, op) in [
        (json!({"val": "x"}), "val"),
        (json!({"and": [true, {"lenght": [1]}]}), "lenght"),
        (json!({"baton:fractional": [["a", 1]]}), "baton:fractional"),
    ] {
        let err = Rule::compile(&rule).unwrap_err();
        assert_eq!(err.code(), "RULE_UNKNOWN_OPERATOR");
        assert!(err.to_string().contains(op), "{err}");
    }
}

#[test]
fn var_paths_list_root_paths_only() {
    let rule = Rule::compile(&json!({"and": [
        {">=": [{"var": "user.attributes.age"}, 18]},
        {"==": [{"var": ["client.platform", "web"]}, "ios"]},
        {"some": [{"var": "user.orders"}, {">": [{"var": "total"}, 100]}]},
        {"missing": ["input.email"]},
        {"==": [{"var": "client.platform"}, "ios"]}
    ]}))
    .unwrap();
    assert_eq!(
        rule.var_paths(),
        vec![
            "user.attributes.age",
            "client.platform",
            "user.orders",
            "input.email"
        ]
    );
    assert!(rule.var_refs().iter().any(|r| r.path == "total"));
    assert!(
        Rule::compile(&json!({"==": [1, 1]}))
            .unwrap()
            .var_paths()
            .is_empty()
    );
    assert_eq!(rule.source()["and"][0][">="][1], json!(18));
}

#[test]
fn prepared_data_evaluates_many_rules() {
    let data = json!({"user": {"age": 34, "email": "ada@example.com"}, "targetingKey": "ada", "$flagd": {"flagKey": "f"}});
    let prepared = PreparedData::new(&data).unwrap();
    assert!(prepared.allocated_bytes() > 0);
    let rules = [
        json!({">=": [{"var": "user.age"}, 18]}),
        json!({"ends_with": [{"var": "user.email"}, "@example.com"]}),
        json!({"fractional": [["a", 50], ["b", 50]]}),
        json!({"missing": ["user.name"]}),
    ];
    for r in rules {
        let rule = Rule::compile(&r).unwrap();
        assert_eq!(
            rule.evaluate_prepared(&prepared).unwrap(),
            rule.evaluate(&data).unwrap(),
            "{r}"
        );
        assert_eq!(
            rule.matches_prepared(&prepared).unwrap(),
            rule.matches(&data).unwrap(),
            "{r}"
        );
    }
    assert_eq!(
        PreparedData::from_json("{not json").unwrap_err().code(),
        "RULE_DATA_INVALID"
    );
}

#[test]
fn eval_errors_carry_a_code() {
    let err = eval(&json!({"/": [1, 0]}), &json!(null)).unwrap_err();
    assert_eq!(err, "RULE_EVAL_FAILED");
}

#[test]
fn eval_lines_handles_good_and_bad_lines() {
    let input = concat!(
        r#"{"rule": {"+": [1, {"var": "x"}]}, "data": {"x": 2}}"#,
        "\n",
        "\n",
        "this is not json\n",
        r#"{"data": {"x": 1}}"#,
        "\n",
        r#"{"rule": {"nope": [1]}}"#,
        "\n",
        r#"{"rule": {"/": [1, 0]}}"#,
        "\n",
        "   \n",
        r#"[1, 2]"#,
        "\n",
        r#"{"rule": {"if": [{"var": "ok"}, {"error": "not an error", "detail": 1}, 0]}, "data": {"ok": true}}"#,
        "\n",
        r#"{"rule": {"var": "missing"}}"#,
        "\n",
    );
    let mut out = Vec::new();
    let summary = eval_lines(input.as_bytes(), &mut out).unwrap();
    assert_eq!((summary.lines, summary.ok, summary.errors), (8, 3, 5));
    let lines: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 8);
    assert_eq!(lines[0], json!({"result": 3}));
    let code = |i: usize| lines[i]["error"]["code"].as_str().unwrap().to_string();
    assert_eq!(code(1), "RULE_LINE_NOT_JSON");
    assert_eq!(lines[1]["error"]["line"], json!(3));
    assert_eq!(code(2), "RULE_LINE_MISSING_RULE");
    assert_eq!(code(3), "RULE_UNKNOWN_OPERATOR");
    assert_eq!(code(4), "RULE_EVAL_FAILED");
    assert_eq!(code(5), "RULE_LINE_MISSING_RULE");
    assert!(lines[4]["error"]["message"].as_str().unwrap().contains('/'));
    assert_eq!(
        lines[6],
        json!({"result": {"error": "not an error", "detail": 1}})
    );
    assert_eq!(lines[7], json!({"result": null}));
}

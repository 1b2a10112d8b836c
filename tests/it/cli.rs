//! The `baton` binary's subcommands, run as a user runs them.

use std::io::Write;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_baton");

fn repo(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn validate_accepts_the_example_flows() {
    let out = Command::new(BIN)
        .args(["validate", &repo("flows")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn validate_reports_every_problem_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broken.yaml"),
        r#"
id: broken
start: a
nodes:
  - id: a
    kind: screen
    components:
      - { kind: text_input, id: name, label: Name }
    actions:
      - { id: next, next: nowhere }
  - id: island
    kind: end
"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["validate", "--format", "json", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let issues: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let codes: Vec<&str> = issues
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"UNKNOWN_TARGET"), "{issues}");
    assert!(codes.contains(&"UNREACHABLE_NODE"), "{issues}");
    let target = issues
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["code"] == "UNKNOWN_TARGET")
        .unwrap();
    assert_eq!(target["node"], "a");
    assert_eq!(target["path"], "$.nodes[0].actions[0].next");
}

#[test]
fn rule_eval_reads_json_lines() {
    let mut child = Command::new(BIN)
        .args(["rule", "eval"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            br#"{"rule": {"in": ["ios", ["ios", "android"]]}, "data": {}}
{"rule": {"var": "a.b"}, "data": {"a": {"b": 7}}}
not json
{"rule": {"sem_ver": ["5.2.1", ">=", "5.2.0"]}, "data": {}}
"#,
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0], serde_json::json!({ "result": true }));
    assert_eq!(lines[1], serde_json::json!({ "result": 7 }));
    assert_eq!(
        lines[2]["error"]["code"], "RULE_LINE_NOT_JSON",
        "{:?}",
        lines[2]
    );
    assert_eq!(lines[3], serde_json::json!({ "result": true }));
}

#[test]
fn schema_check_passes_on_committed_artifacts() {
    let out = Command::new(BIN)
        .args([
            "schema",
            "--check",
            "--out",
            &repo("schema"),
            "--docs",
            &repo("docs"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "schema/ or docs/errors.md is stale; run `cargo run -- schema` and commit:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn schema_check_fails_on_a_stale_file() {
    let dir = tempfile::tempdir().unwrap();
    let write = Command::new(BIN)
        .args([
            "schema",
            "--out",
            dir.path().to_str().unwrap(),
            "--docs",
            dir.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(write.status.success());
    let sdl = dir.path().join("baton.graphql");
    let text = std::fs::read_to_string(&sdl).unwrap();
    assert!(
        text.contains("startFlow(input: StartFlowInput!): FlowSession!"),
        "{text}"
    );
    std::fs::write(&sdl, text.replace("startFlow", "beginFlow")).unwrap();
    let check = Command::new(BIN)
        .args([
            "schema",
            "--check",
            "--out",
            dir.path().to_str().unwrap(),
            "--docs",
            dir.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&check.stderr).contains("baton.graphql is stale"));
}

#[test]
fn validate_checks_the_mock_scenarios_scripts_ask_for() {
    let run = |scenario: &str| {
        Command::new(BIN)
            .args(["validate", "--scenario", scenario, &repo("flows/loan.yaml")])
            .output()
            .unwrap()
    };
    let known = run("declined");
    assert!(
        known.status.success(),
        "{}",
        String::from_utf8_lossy(&known.stdout)
    );
    let typo = run("declinde");
    let out = String::from_utf8_lossy(&typo.stdout);
    assert_eq!(typo.status.code(), Some(1), "{out}");
    assert!(out.contains("UNKNOWN_MOCK_SCENARIO"), "{out}");
    assert!(
        out.contains("credit_service_down"),
        "the hint lists the declared ones: {out}"
    );
}

#[test]
fn serve_takes_its_options_after_the_command_and_lists_them() {
    let help = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success(), "{text}");
    for option in [
        "--addr",
        "--database-url",
        "--flows",
        "--max-query-fields",
        "--step-budget-ms",
    ] {
        assert!(
            text.contains(option),
            "`baton serve --help` lacks {option}:\n{text}"
        );
    }
}

#[test]
fn serve_after_the_command_listens_where_told_and_logs_plain_text_when_piped() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let db = format!("sqlite://{}", dir.path().join("b.db").display());
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--addr",
            &format!("127.0.0.1:{port}"),
            "--database-url",
            &db,
        ])
        .args([
            "--flows",
            &repo("flows"),
            "--flags",
            &repo("flags"),
            "--experiments",
            &repo("experiments"),
        ])
        .env_remove("BATON_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    let listening = loop {
        match lines.next() {
            Some(Ok(line)) => {
                let found = line.contains("listening");
                seen.push(line);
                if found {
                    break true;
                }
            }
            _ => break false,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let log = seen.join("\n");
    assert!(listening, "no `listening` line:\n{log}");
    assert!(
        log.contains(&format!("127.0.0.1:{port}")),
        "not on the port asked for:\n{log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a piped log:\n{log:?}"
    );
}

#[test]
fn validate_applies_the_allowlist_serve_would() {
    let run = |allow: Option<&str>| {
        let mut cmd = Command::new(BIN);
        cmd.args(["validate", &repo("flows/loan.yaml")])
            .env_remove("BATON_ALLOW_HOSTS");
        if let Some(a) = allow {
            cmd.args(["--allow-hosts", a]);
        }
        cmd.output().unwrap()
    };
    // The default is serve's (localhost, 127.0.0.1): the loan flow passes.
    assert!(run(None).status.success());
    let refused = run(Some("api.example.com,localhost:9999"));
    let out = String::from_utf8_lossy(&refused.stdout);
    assert_eq!(refused.status.code(), Some(1), "{out}");
    assert!(
        out.contains("HOST_NOT_ALLOWED") && out.contains("localhost:8090"),
        "{out}"
    );
    let bad = run(Some("not a host"));
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("INVALID_ALLOW_HOSTS"));
}

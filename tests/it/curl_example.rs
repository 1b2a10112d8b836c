//! `client-examples/curl/onboarding.sh` runs against a live server, as a
//! newcomer would run it.

use std::process::Command;

use crate::testapp::{Backend, TestApp};

#[tokio::test]
async fn curl_example_walks_onboarding() {
    for tool in ["curl", "jq"] {
        let found = Command::new(tool).arg("--version").output().is_ok();
        assert!(
            found,
            "`{tool}` is needed by client-examples/curl (.ci/run installs it)"
        );
    }
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite app");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/client-examples/curl/onboarding.sh"
    );
    let out = tokio::process::Command::new("bash")
        .arg(script)
        .env("BATON_URL", &app.base)
        .output()
        .await
        .expect("script runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "script failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("[ACTIVE] screen welcome: Welcome, Sam!"),
        "{stdout}"
    );
    assert!(stdout.contains("error: name TOO_SHORT"), "{stdout}");
    assert!(stdout.contains("[COMPLETED] screen done"), "{stdout}");
    assert!(
        stdout.contains("Thanks, Sam! Your account is ready."),
        "{stdout}"
    );
}

//! `--watch`: an edited flow file becomes a new version for new sessions,
//! running sessions keep the version they started on, and an edit that
//! does not load or validate is skipped while the last good version keeps
//! serving.

use std::path::Path;
use std::time::{Duration, Instant};

use baton::config::ServeConfig;
use serde_json::{Value, json};

use crate::testapp::{Backend, SESSION_FIELDS, TestApp, fresh_database_url};

/// Longest wait for the watcher to pick an edit up.
const WAIT: Duration = Duration::from_secs(10);

/// The `greet` flow; from version 2 on, `hello` leads to an extra screen.
fn greet(title: &str, extra_screen: bool) -> String {
    let (next, extra) = if extra_screen {
        (
            "extra",
            "  - { id: extra, kind: screen, title: Extra, actions: [{ id: next, next: bye }] }\n",
        )
    } else {
        ("bye", "")
    };
    format!(
        r#"id: greet
start: hello
nodes:
  - id: hello
    kind: screen
    title: "{title}"
    components:
      - {{ kind: text, text: "{title} for {{{{ user.id }}}}" }}
    actions:
      - {{ id: next, validate: false, next: {next} }}
{extra}  - {{ id: bye, kind: end, title: Bye }}
"#
    )
}

/// A flow whose only purpose is to show that a reload has happened.
fn marker(id: &str) -> String {
    format!(
        "id: {id}\nstart: s\nnodes:\n  - {{ id: s, kind: screen, title: Marker, actions: [{{ id: next, next: e }}] }}\n  - {{ id: e, kind: end }}\n"
    )
}

/// Writes like an editor's atomic save: a hidden temporary file, renamed.
fn save(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).expect("write temp file");
    std::fs::rename(&tmp, dir.join(name)).expect("rename into place");
}

/// `startFlow`, or `None` when it failed (e.g. the flow is not loaded yet).
async fn try_start(app: &TestApp, flow: &str) -> Option<Value> {
    let q = format!(
        "mutation($i: StartFlowInput!) {{ startFlow(input: $i) {{ ...S }} }} {SESSION_FIELDS}"
    );
    let r = app
        .gql(
            &q,
            json!({ "i": { "flowId": flow, "user": { "id": "watcher" } } }),
            None,
        )
        .await;
    let s = &r["data"]["startFlow"];
    s.is_object().then(|| s.clone())
}

/// Polls `startFlow(flow)` until `done` holds for the new session.
async fn wait_for(app: &TestApp, flow: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = try_start(app, flow).await;
        if let Some(s) = s.as_ref().filter(|s| done(s)) {
            return s.clone();
        }
        assert!(
            Instant::now() < deadline,
            "after {WAIT:?} still not {what}; last startFlow({flow}): {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn version(s: &Value) -> i64 {
    s["flowVersion"].as_i64().expect("flowVersion")
}

async fn reloads_edited_flows(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let flows = dir.path().join("flows");
    std::fs::create_dir(&flows).expect("flows dir");
    std::fs::write(flows.join("greet.yaml"), greet("Hello v1", false)).expect("write v1");
    let Some(url) = fresh_database_url(backend, dir.path()).await else {
        return;
    };
    let mut config = ServeConfig::for_database(url, &flows);
    config.watch = true;
    let app = TestApp::spawn_with(config, dir).await;

    let (old, old_token) = app.start("greet", json!({ "id": "u1" }), json!({})).await;
    assert_eq!(
        (version(&old), &old["screen"]["title"]),
        (1, &json!("Hello v1"))
    );
    let old_id = old["id"].as_str().unwrap().to_string();

    // An in-place edit (not an atomic save) is picked up too.
    std::fs::write(flows.join("greet.yaml"), greet("Hello v2", true)).expect("write v2");
    let new = wait_for(&app, "greet", "on version 2", |s| version(s) >= 2).await;
    assert_eq!(version(&new), 2, "one edit, one version: {new}");
    assert_eq!(new["screen"]["title"], "Hello v2");
    assert_eq!(
        new["screen"]["components"][0]["text"],
        "Hello v2 for watcher"
    );

    // The running session stays on version 1, and walks version 1's graph.
    let r = app.session(Some(&old_token), &old_id).await;
    let s = &r["data"]["session"];
    assert_eq!(
        (version(s), &s["screen"]["title"]),
        (1, &json!("Hello v1")),
        "{r}"
    );
    assert_eq!(s["screen"]["components"][0]["text"], "Hello v1 for u1");
    let s = app
        .submit(&old_token, &old_id, "hello", "next", json!({}))
        .await;
    assert_eq!(
        (s["status"].as_str(), s["screen"]["id"].as_str()),
        (Some("COMPLETED"), Some("bye")),
        "{s}"
    );
    let (new_id, new_token) = (new["id"].as_str().unwrap(), new["token"].as_str().unwrap());
    let s = app
        .submit(new_token, new_id, "hello", "next", json!({}))
        .await;
    assert_eq!(
        s["screen"]["id"], "extra",
        "version 2 has the extra screen: {s}"
    );

    // An edit that fails validation (an edge to a node that does not exist)
    // is skipped. The marker, saved after it, shows a reload has read both.
    save(
        &flows,
        "greet.yaml",
        &greet("Hello broken", true).replace("next: bye", "next: nowhere"),
    );
    save(&flows, "marker1.yaml", &marker("marker1"));
    wait_for(&app, "marker1", "loaded", |_| true).await;
    let s = try_start(&app, "greet").await.expect("greet still starts");
    assert_eq!(
        (version(&s), &s["screen"]["title"]),
        (2, &json!("Hello v2")),
        "last good version keeps serving"
    );

    // Same for a file that is not even YAML.
    save(
        &flows,
        "greet.yaml",
        "id: greet\nnodes: [ { id: hello, kind: screen\n",
    );
    save(&flows, "marker2.yaml", &marker("marker2"));
    wait_for(&app, "marker2", "loaded", |_| true).await;
    let s = try_start(&app, "greet").await.expect("greet still starts");
    assert_eq!(
        (version(&s), &s["screen"]["title"]),
        (2, &json!("Hello v2"))
    );
    // Sessions on both versions still answer.
    let r = app.session(Some(&old_token), &old_id).await;
    assert_eq!(r["data"]["session"]["flowVersion"], 1, "{r}");
    let r = app.session(Some(new_token), new_id).await;
    assert_eq!(r["data"]["session"]["screen"]["id"], "extra", "{r}");

    // The watcher survived the bad edits: a good one is served again, as
    // the next version (the broken ones never took a number).
    save(&flows, "greet.yaml", &greet("Hello v3", false));
    let s = wait_for(&app, "greet", "on version 3", |s| version(s) >= 3).await;
    assert_eq!(
        (version(&s), &s["screen"]["title"]),
        (3, &json!("Hello v3")),
        "{s}"
    );
}

#[tokio::test]
async fn sqlite_reloads_edited_flows_and_keeps_the_last_good_version() {
    reloads_edited_flows(Backend::Sqlite).await;
}

#[tokio::test]
async fn postgres_reloads_edited_flows_and_keeps_the_last_good_version() {
    reloads_edited_flows(Backend::Postgres).await;
}

#[tokio::test]
async fn without_watch_edits_are_not_loaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let flows = dir.path().join("flows");
    std::fs::create_dir(&flows).expect("flows dir");
    std::fs::write(flows.join("greet.yaml"), greet("Hello v1", false)).expect("write v1");
    let url = fresh_database_url(Backend::Sqlite, dir.path())
        .await
        .expect("sqlite");
    let app = TestApp::spawn_with(ServeConfig::for_database(url, &flows), dir).await;
    assert_eq!(version(&try_start(&app, "greet").await.expect("starts")), 1);

    save(&flows, "greet.yaml", &greet("Hello v2", true));
    save(&flows, "marker.yaml", &marker("marker"));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let s = try_start(&app, "greet").await.expect("starts");
    assert_eq!(
        (version(&s), &s["screen"]["title"]),
        (1, &json!("Hello v1"))
    );
    assert!(
        try_start(&app, "marker").await.is_none(),
        "new files are not loaded either"
    );
}

/// Kubernetes mounts a ConfigMap as symlinks into a hidden `..data`
/// directory and publishes an update by swapping that link atomically;
/// no flow file itself is written.
#[cfg(unix)]
#[tokio::test]
async fn a_configmap_style_symlink_swap_is_picked_up() {
    use std::os::unix::fs::symlink;

    let dir = tempfile::tempdir().expect("tempdir");
    let flows = dir.path().join("flows");
    std::fs::create_dir_all(flows.join("..v1")).expect("v1 dir");
    std::fs::write(flows.join("..v1/greet.yaml"), greet("Hello v1", false)).expect("write v1");
    symlink("..v1", flows.join("..data")).expect("..data link");
    symlink("..data/greet.yaml", flows.join("greet.yaml")).expect("file link");
    let url = fresh_database_url(Backend::Sqlite, dir.path())
        .await
        .expect("sqlite");
    let mut config = ServeConfig::for_database(url, &flows);
    config.watch = true;
    let app = TestApp::spawn_with(config, dir).await;
    assert_eq!(version(&try_start(&app, "greet").await.expect("starts")), 1);

    std::fs::create_dir(flows.join("..v2")).expect("v2 dir");
    std::fs::write(flows.join("..v2/greet.yaml"), greet("Hello v2", true)).expect("write v2");
    symlink("..v2", flows.join("..data_tmp")).expect("tmp link");
    std::fs::rename(flows.join("..data_tmp"), flows.join("..data")).expect("swap");
    let s = wait_for(&app, "greet", "on version 2", |s| version(s) >= 2).await;
    assert_eq!(
        (version(&s), &s["screen"]["title"]),
        (2, &json!("Hello v2"))
    );
}

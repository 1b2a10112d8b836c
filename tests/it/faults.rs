//! Faults of the machine under a running server: the SQLite volume runs
//! full, PostgreSQL restarts under load. Nothing is corrupted or lost, the
//! client gets a clear code, and the server recovers without a restart.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::testapp::{Backend, TestApp, error_code};

/// A small tmpfs, unmounted (lazily) when dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// `None` (with a loud line) where this process may not mount; CI runs
    /// as root and may, so there a failure to mount fails the test.
    fn mount(path: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path).expect("mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status();
        match status {
            Ok(s) if s.success() => Some(Tmpfs {
                path: path.to_owned(),
            }),
            other => {
                let msg =
                    format!("cannot mount a tmpfs here ({other:?}); the full-disk test needs root");
                assert!(std::env::var_os("CI").is_none(), "{msg}");
                eprintln!("!!!!! SKIPPED: {msg}");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Writes zeros into `path` until the volume refuses more.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("filler");
    let chunk = vec![0u8; 16 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}

const LOOP: &str = r#"
id: notes
start: note
nodes:
  - id: note
    kind: screen
    components:
      - { id: text, kind: text_input, label: Note, max_length: 20000 }
    actions:
      - { id: save, validate: true, next: note }
      - { id: done, validate: false, next: bye }
  - id: bye
    kind: end
"#;

#[tokio::test]
async fn sqlite_on_a_full_disk_answers_storage_full_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(&dir.path().join("disk"), "6m") else {
        return;
    };
    let db = disk.path.join("baton.db");
    let url = format!("sqlite://{}", db.display());
    let app = TestApp::spawn_configured(
        Backend::Sqlite,
        &[("notes.yaml", LOOP.to_owned())],
        |c, _| {
            c.database_url = url.clone();
        },
    )
    .await
    .expect("sqlite app");
    let (s, token) = app
        .start("notes", json!({ "id": "early" }), json!({}))
        .await;
    let early = s["id"].as_str().unwrap().to_owned();
    app.submit(&token, &early, "note", "save", json!({ "text": "kept" }))
        .await;

    let (s, token2) = app
        .start("notes", json!({ "id": "writer" }), json!({}))
        .await;
    let sid = s["id"].as_str().unwrap().to_owned();
    fill(&disk.path.join("filler"));

    // Large notes until the database cannot grow; bounded.
    let big = "x".repeat(15_000);
    let mut refused = None;
    for i in 0..400 {
        let r = app
            .submit_raw(
                &token2,
                &sid,
                "note",
                "save",
                json!({ "text": big }),
                Some(&format!("k{i}")),
            )
            .await;
        if r["errors"].is_array() {
            refused = Some(r);
            break;
        }
    }
    let refused = refused.expect("a full disk refused a write within 400 submits");
    assert_eq!(error_code(&refused), "STORAGE_FULL", "{refused}");
    let hint = refused["errors"][0]["extensions"]["hint"]
        .as_str()
        .unwrap_or("");
    assert!(hint.contains("disk is full"), "{refused}");

    // Reads are still served, and what was stored is intact.
    let read = app.session(Some(&token), &early).await;
    assert_eq!(read["data"]["session"]["screen"]["id"], "note", "{read}");

    // Space again: writes work without a restart.
    std::fs::remove_file(disk.path.join("filler")).unwrap();
    let mut recovered = false;
    for i in 0..50 {
        let r = app
            .submit_raw(
                &token2,
                &sid,
                "note",
                "save",
                json!({ "text": "small" }),
                Some(&format!("after{i}")),
            )
            .await;
        if r["data"]["submit"].is_object() {
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(recovered, "writes did not recover once space was freed");
    let done = app.submit(&token, &early, "note", "done", json!({})).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    drop(app);

    // Nothing corrupted.
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let check: (String,) = sqlx::query_as("PRAGMA integrity_check")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(check.0, "ok");
    pool.close().await;
}

/// Runs a PostgreSQL tool as the `postgres` OS user (they refuse root).
fn as_postgres(tool: &Path, args: &[&str]) -> std::process::Output {
    Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(tool)
        .args(args)
        .output()
        .expect("runuser")
}

/// A PostgreSQL cluster of the test's own (never the shared one), run as
/// the `postgres` OS user, stopped and removed when dropped.
struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl PrivatePostgres {
    fn start() -> Option<PrivatePostgres> {
        let bin = std::fs::read_dir("/usr/lib/postgresql").ok().and_then(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .find(|b| b.join("initdb").exists())
        });
        let Some(bin) = bin else {
            let msg = "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin";
            assert!(std::env::var_os("CI").is_none(), "{msg}");
            eprintln!("!!!!! SKIPPED: {msg}");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        Command::new("chown")
            .args(["-R", "postgres"])
            .arg(dir.path())
            .status()
            .unwrap();
        let out = as_postgres(
            &bin.join("initdb"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = PrivatePostgres {
            bin,
            data,
            port,
            _dir: dir,
        };
        pg.ctl(&["start"]);
        Some(pg)
    }

    fn ctl(&self, action: &[&str]) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.data.display()
        );
        let log = self.data.join("log");
        let mut args = vec!["-D", self.data.to_str().unwrap(), "-o", &opts, "-w", "-l"];
        args.push(log.to_str().unwrap());
        args.extend_from_slice(action);
        let out = as_postgres(&self.bin.join("pg_ctl"), &args);
        assert!(
            out.status.success(),
            "pg_ctl {action:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = as_postgres(
            &self.bin.join("pg_ctl"),
            &["-D", self.data.to_str().unwrap(), "-m", "immediate", "stop"],
        );
    }
}

#[tokio::test]
async fn postgresql_restarting_under_load_loses_nothing_and_needs_no_restart() {
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    let Some(pg) = PrivatePostgres::start() else {
        return;
    };
    let url = pg.url();
    let app = Arc::new(
        TestApp::spawn_configured(
            Backend::Sqlite,
            &[("notes.yaml", LOOP.to_owned())],
            |c, _| {
                c.database_url = url.clone();
            },
        )
        .await
        .expect("app on the private PostgreSQL"),
    );
    const SESSIONS: usize = 16;
    // Saves each session makes once the database is back.
    const SAVES_AFTER: usize = 5;
    let done_restarting = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked_total = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for n in 0..SESSIONS {
        let app = app.clone();
        let done_restarting = done_restarting.clone();
        let acked_total = acked_total.clone();
        workers.push(tokio::spawn(async move {
            let (s, token) = app
                .start("notes", json!({ "id": format!("u{n}") }), json!({}))
                .await;
            let sid = s["id"].as_str().unwrap().to_owned();
            let mut codes = BTreeSet::new();
            let mut acked = Vec::new();
            let mut after = 0;
            // Saves go on through the restart, and a few more after it;
            // bounded by the 60 s deadline per save and 400 saves.
            for i in 0..400 {
                if done_restarting.load(std::sync::atomic::Ordering::SeqCst) {
                    after += 1;
                    if after > SAVES_AFTER {
                        break;
                    }
                }
                let key = format!("{sid}-{i}");
                // Retry the same key until it is acknowledged: the client's
                // part of "never lost, never twice". Bounded in time.
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    let r = app
                        .submit_raw(
                            &token,
                            &sid,
                            "note",
                            "save",
                            json!({ "text": key }),
                            Some(&key),
                        )
                        .await;
                    if r["data"]["submit"].is_object() {
                        acked.push(key.clone());
                        acked_total.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        break;
                    }
                    codes.insert(
                        r["errors"][0]["extensions"]["code"]
                            .as_str()
                            .unwrap_or("?")
                            .to_owned(),
                    );
                    assert!(Instant::now() < deadline, "{key} never went through: {r}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (sid, acked, codes)
        }));
    }
    // Mid-load, the database goes down hard and comes back.
    // Once the load runs (every session saved at least once on average),
    // however slow the machine.
    let started = Instant::now();
    while acked_total.load(std::sync::atomic::Ordering::SeqCst) < SESSIONS {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the load never got going"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = acked_total.load(std::sync::atomic::Ordering::SeqCst);
    let restart = tokio::task::spawn_blocking(move || {
        pg.ctl(&["-m", "immediate", "restart"]);
        pg
    });
    // Kept until the end: dropping it stops the cluster.
    let _pg = restart.await.expect("the restart");
    done_restarting.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut all_codes = BTreeSet::new();
    let mut results = Vec::new();
    for w in workers {
        let (sid, acked, codes) = w.await.expect("worker");
        assert!(
            acked.len() > SAVES_AFTER,
            "session {sid} saved only {} times",
            acked.len()
        );
        all_codes.extend(codes);
        results.push((sid, acked));
    }
    // Errors during the outage were the store's clean codes, never INTERNAL
    // without one or a panic.
    for code in &all_codes {
        assert!(
            ["STORE_UNAVAILABLE", "SESSION_BUSY"].contains(&code.as_str()),
            "unexpected code during the outage: {code} (all: {all_codes:?})"
        );
    }
    // Every acknowledged save is in the log exactly once.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    for (sid, acked) in &results {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT payload::text FROM session_events WHERE session_id = $1 AND kind = 'submitted'",
        )
        .bind(sid)
        .fetch_all(&pool)
        .await
        .unwrap();
        let mut seen: Vec<String> = rows
            .iter()
            .map(|(p,)| {
                serde_json::from_str::<serde_json::Value>(p).unwrap()["values"]["text"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        seen.sort();
        let mut want = acked.clone();
        want.sort();
        assert_eq!(
            seen, want,
            "session {sid}: the log and the acknowledged saves differ"
        );
    }
    eprintln!(
        "{before} saves before the restart, {} in all; codes seen meanwhile: {all_codes:?}",
        acked_total.load(std::sync::atomic::Ordering::SeqCst)
    );
    pool.close().await;
}

//! Servers as processes of their own: `baton serve` and the bare
//! baseline (this bench binary again), each stopped when dropped.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A server process, stopped when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Waits until `url` answers 200, or the process has ended.
async fn wait_ready(server: &mut Server, url: &str, log: &Path) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!(
                "the server ended ({status}) before it was ready; its log: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if let Ok(r) = client.get(url).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the server at {url} never got ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `baton serve` on the bench flows, with `env` added (`BATON_*` settings).
pub async fn spawn_baton(
    url: &str,
    dir: &Path,
    connections: usize,
    rollups: bool,
    env: &[(&str, &str)],
) -> Server {
    let addr = free_addr();
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let log = dir.join(format!("baton-{}.log", addr.port()));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_baton"));
    cmd.arg("serve")
        .env("BATON_ADDR", addr.to_string())
        .env("DATABASE_URL", url)
        .env(
            "BATON_FLOWS",
            concat!(env!("CARGO_MANIFEST_DIR"), "/benches/flows"),
        )
        .env("BATON_FLAGS", &empty)
        .env("BATON_EXPERIMENTS", &empty)
        .env("BATON_DB_CONNECTIONS", connections.to_string())
        // The bench measures the server, not its limits: all its
        // connections come from one address.
        .env("BATON_RATE_LIMIT_PER_ADDRESS", "0")
        .env("BATON_RATE_LIMIT_PER_SESSION", "0")
        .env("BATON_LOG", "warn")
        .env("BATON_ROLLUP_POLL_MS", if rollups { "500" } else { "0" })
        .envs(env.iter().copied());
    launch(cmd, addr, &log).await
}

/// The bare baseline: this bench binary again, which must serve it when
/// run with `--baseline URL CONNECTIONS ADDR` (see `support::baseline`).
pub async fn spawn_bare(url: &str, dir: &Path, connections: usize) -> Server {
    let addr = free_addr();
    let log = dir.join(format!("baseline-{}.log", addr.port()));
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--baseline",
        url,
        &connections.to_string(),
        &addr.to_string(),
    ]);
    launch(cmd, addr, &log).await
}

/// Starts `cmd` serving on `addr`, its output in `log` (Baton logs to
/// stdout, a panic goes to stderr), and waits until it is ready.
pub async fn launch(mut cmd: Command, addr: SocketAddr, log: &Path) -> Server {
    let out = std::fs::File::create(log).unwrap();
    let child = cmd
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let mut server = Server {
        child,
        base: format!("http://{addr}"),
    };
    let ready = format!("{}/readyz", server.base);
    wait_ready(&mut server, &ready, log).await;
    server
}

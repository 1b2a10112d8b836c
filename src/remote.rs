//! The CLI side of the admin API: `baton push`, `pull`, `diff` and
//! `compat` call a running server's admin GraphQL API with an API key, so
//! a directory in git and the server's versions stay in step without
//! anyone touching the server's disk; `baton funnel`, `preview` and
//! `events tail` read from it the same way.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::flow::load;

/// Where the server is and which key to use.
#[derive(Debug, Clone, clap::Args)]
pub struct Remote {
    /// The server's base URL.
    #[arg(long, env = "BATON_URL", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// An API key (prefer the environment variable: arguments show in `ps`).
    #[arg(long, env = "BATON_API_KEY", hide_env_values = true)]
    pub key: Option<String>,
}

/// A failed call: what to print.
#[derive(Debug)]
pub struct RemoteError(pub String);

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Remote {
    /// One GraphQL call; GraphQL errors become a [`RemoteError`] with the
    /// code and hint the server gave.
    async fn call(&self, query: &str, variables: Value) -> Result<Value, RemoteError> {
        let url = format!("{}/graphql", self.server.trim_end_matches('/'));
        let mut req = reqwest::Client::new()
            .post(&url)
            .header("accept", "application/graphql-response+json")
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(key) = &self.key {
            req = req.header(crate::auth::API_KEY_HEADER, key);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| RemoteError(format!("cannot reach {url}: {e} (hint: is `baton serve` running there? set --server or BATON_URL)")))?;
        let body: Value = resp
            .json()
            .await
            .map_err(|e| RemoteError(format!("{url} did not answer JSON: {e}")))?;
        data_or_error(body)
    }
}

/// A GraphQL response's `data`, or its first error as `CODE: message
/// (hint: …)`.
pub(crate) fn data_or_error(body: Value) -> Result<Value, RemoteError> {
    if let Some(err) = body["errors"].as_array().and_then(|e| e.first()) {
        let code = err["extensions"]["code"].as_str().unwrap_or("ERROR");
        let mut text = format!(
            "{code}: {}",
            err["message"].as_str().unwrap_or("the call failed")
        );
        if let Some(hint) = err["extensions"]["hint"].as_str() {
            let _ = write!(text, " (hint: {hint})");
        }
        return Err(RemoteError(text));
    }
    Ok(body["data"].clone())
}

/// What `push` did with one file.
#[derive(Debug)]
pub struct Pushed {
    pub file: PathBuf,
    pub flow_id: String,
    /// The saved version, or `None` when validation stopped it.
    pub version: Option<i64>,
    pub created: bool,
    pub published: bool,
    /// Issues, one per line, as `baton validate` prints them.
    pub issues: Vec<String>,
}

const SAVE: &str = "mutation($i: SaveDraftInput!) { saveDraft(input: $i) { ok created \
    version { number status } issues { severity code path line column message hint } } }";
const PUBLISH: &str = "mutation($i: PublishFlowInput!) { publishFlow(input: $i) { number status \
    servingPercent pendingReview { requestedBy } } }";

/// Saves every flow file of `dir` as a draft; with `publish`, publishes
/// each new version to `percent` of new sessions.
pub async fn push(
    remote: &Remote,
    dir: &Path,
    message: &str,
    publish: Option<i32>,
) -> Result<Vec<Pushed>, RemoteError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| RemoteError(format!("cannot read {}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| load::is_flow_file(p))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let source = std::fs::read_to_string(&file)
            .map_err(|e| RemoteError(format!("cannot read {}: {e}", file.display())))?;
        // The id inside the file names the flow; an unreadable file is
        // still sent under its file name, so the server lists its issues.
        let flow_id = load::load_file(&file).map(|d| d.id).unwrap_or_else(|_| {
            file.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        let d = remote
            .call(
                SAVE,
                json!({ "i": { "flowId": flow_id, "source": source, "message": message } }),
            )
            .await?;
        let r = &d["saveDraft"];
        let issues = r["issues"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|i| issue_line(&file, i))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let version = r["version"]["number"].as_i64();
        let created = r["created"].as_bool().unwrap_or(false);
        let mut published = false;
        // A draft is published whether this push or an earlier one saved it;
        // a version that serves already, or served once, is left alone.
        let draft = r["version"]["status"] == "DRAFT";
        if let (Some(v), Some(percent), true) = (version, publish, draft) {
            let p = remote
                .call(
                    PUBLISH,
                    json!({ "i": { "flowId": flow_id, "version": v, "message": message,
                                   "rolloutPercent": percent } }),
                )
                .await?;
            published = p["publishFlow"]["status"] == "PUBLISHED";
        }
        out.push(Pushed {
            file,
            flow_id,
            version,
            created,
            published,
            issues,
        });
    }
    Ok(out)
}

fn issue_line(file: &Path, i: &Value) -> String {
    let at = match (i["line"].as_u64(), i["column"].as_u64()) {
        (Some(l), Some(c)) => format!("{}:{l}:{c}", file.display()),
        _ => file.display().to_string(),
    };
    let mut line = format!(
        "{at}: {} {} at {}: {}",
        i["severity"].as_str().unwrap_or("ERROR").to_lowercase(),
        i["code"].as_str().unwrap_or_default(),
        i["path"].as_str().unwrap_or_default(),
        i["message"].as_str().unwrap_or_default()
    );
    if let Some(hint) = i["hint"].as_str() {
        let _ = write!(line, " (hint: {hint})");
    }
    line
}

/// Writes the live version of every flow into `dir` as `<id>.yaml` (the
/// text as it was saved); returns (flow id, version) written.
pub async fn pull(remote: &Remote, dir: &Path) -> Result<Vec<(String, i64)>, RemoteError> {
    let d = remote
        .call("{ flows { id liveVersion } }", json!({}))
        .await?;
    std::fs::create_dir_all(dir)
        .map_err(|e| RemoteError(format!("cannot create {}: {e}", dir.display())))?;
    // A flow already in the directory keeps its file name, so a pull never
    // leaves two files with one flow id.
    let mut existing = std::collections::HashMap::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if load::is_flow_file(&path)
            && let Ok(def) = load::load_file(&path)
        {
            existing.insert(def.id, path);
        }
    }
    let mut out = Vec::new();
    for f in d["flows"].as_array().into_iter().flatten() {
        let (Some(id), Some(live)) = (f["id"].as_str(), f["liveVersion"].as_i64()) else {
            continue;
        };
        let v = remote
            .call(
                "query($f: ID!) { flowVersions(flowId: $f) { number source } }",
                json!({ "f": id }),
            )
            .await?;
        let Some(source) = v["flowVersions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|x| x["number"].as_i64() == Some(live))
            .and_then(|x| x["source"].as_str())
        else {
            continue;
        };
        let path = existing
            .remove(id)
            .unwrap_or_else(|| dir.join(format!("{id}.yaml")));
        std::fs::write(&path, source)
            .map_err(|e| RemoteError(format!("cannot write {}: {e}", path.display())))?;
        out.push((id.to_string(), live));
    }
    Ok(out)
}

/// The text diff between two versions.
pub async fn diff(remote: &Remote, flow: &str, from: i32, to: i32) -> Result<String, RemoteError> {
    let d = remote
        .call(
            "query($f: ID!, $a: Int!, $b: Int!) { flowDiff(flowId: $f, from: $a, to: $b) { text } }",
            json!({ "f": flow, "a": from, "b": to }),
        )
        .await?;
    Ok(d["flowDiff"]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// The compatibility report as a table, and whether it blocks a publish.
pub async fn compat(
    remote: &Remote,
    flow: &str,
    version: i32,
) -> Result<(String, bool), RemoteError> {
    let d = remote
        .call(
            "query($f: ID!, $v: Int!) { compatibilityReport(flowId: $f, version: $v) { windowDays blocking \
             cohorts { platform appVersion capabilities sessions blocking reachable \
             unrenderable { node reason } degraded { node reason } } } }",
            json!({ "f": flow, "v": version }),
        )
        .await?;
    let r = &d["compatibilityReport"];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{flow} v{version}: cohorts of the last {} days",
        r["windowDays"]
    );
    let _ = writeln!(
        out,
        "{:<10} {:<10} {:>8}  {:<7} {:>9}  capabilities",
        "platform", "version", "sessions", "status", "reachable"
    );
    for c in r["cohorts"].as_array().into_iter().flatten() {
        let status = if c["blocking"] == true {
            "BLOCKS"
        } else if c["degraded"].as_array().is_some_and(|d| !d.is_empty()) {
            "degraded"
        } else {
            "ok"
        };
        let caps = match c["capabilities"].as_array() {
            Some(list) => list
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(","),
            None => "(every core kind)".into(),
        };
        let _ = writeln!(
            out,
            "{:<10} {:<10} {:>8}  {:<7} {:>9}  {caps}",
            c["platform"].as_str().unwrap_or("-"),
            c["appVersion"].as_str().unwrap_or("-"),
            c["sessions"],
            status,
            c["reachable"].as_array().map_or(0, Vec::len),
        );
        for p in c["unrenderable"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "    cannot render `{}`: {}",
                p["node"].as_str().unwrap_or_default(),
                p["reason"].as_str().unwrap_or_default()
            );
        }
        for p in c["degraded"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "    built-in text for `{}`: {}",
                p["node"].as_str().unwrap_or_default(),
                p["reason"].as_str().unwrap_or_default()
            );
        }
    }
    if r["cohorts"].as_array().is_none_or(Vec::is_empty) {
        out.push_str(
            "(no sessions in the window and no declared cohorts: declare the apps you support \
             with `baton serve --cohorts FILE`)\n",
        );
    }
    let blocking = r["blocking"] == true;
    if blocking {
        out.push_str("blocking: publishFlow refuses this version without `override`\n");
    }
    Ok((out, blocking))
}

/// Starts a preview and returns the web client's link to it.
pub async fn preview(
    remote: &Remote,
    flow: &str,
    version: Option<i32>,
    node: Option<&str>,
    web: &str,
) -> Result<String, RemoteError> {
    let d = remote
        .call(
            "mutation($i: StartPreviewInput!) { startPreview(input: $i) { id token flowVersion } }",
            json!({ "i": { "flowId": flow, "version": version, "node": node } }),
        )
        .await?;
    let p = &d["startPreview"];
    let (Some(id), Some(token)) = (p["id"].as_str(), p["token"].as_str()) else {
        return Err(RemoteError("the server answered no session".into()));
    };
    let mut link = reqwest::Url::parse(web)
        .map_err(|e| RemoteError(format!("--web `{web}` is not a URL: {e}")))?;
    link.query_pairs_mut()
        .append_pair("baton", remote.server.trim_end_matches('/'))
        .append_pair("session", id)
        .append_pair("token", token);
    Ok(link.to_string())
}

/// What `baton funnel` asks for.
#[derive(Debug, Clone, clap::Args)]
pub struct FunnelArgs {
    pub flow: String,
    /// Only the sessions pinned to this version (default: all versions).
    #[arg(long)]
    pub version: Option<i32>,
    /// Sessions started at or after (RFC 3339); default 30 days ago.
    #[arg(long)]
    pub from: Option<String>,
    /// Sessions started before (RFC 3339); default now.
    #[arg(long)]
    pub to: Option<String>,
    /// A session quiet this long has dropped off (default 30).
    #[arg(long)]
    pub idle_minutes: Option<i32>,
    /// Also a table per group: per flow version, platform, app version, or
    /// arm of `--experiment`.
    #[arg(long, value_enum)]
    pub group_by: Option<FunnelGroupBy>,
    /// The experiment whose arms `--group-by experiment-arm` splits by.
    #[arg(long)]
    pub experiment: Option<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FunnelGroupBy {
    Version,
    Platform,
    AppVersion,
    ExperimentArm,
}

impl FunnelGroupBy {
    fn graphql(self) -> &'static str {
        match self {
            FunnelGroupBy::Version => "VERSION",
            FunnelGroupBy::Platform => "PLATFORM",
            FunnelGroupBy::AppVersion => "APP_VERSION",
            FunnelGroupBy::ExperimentArm => "EXPERIMENT_ARM",
        }
    }
}

/// A flow's funnel as a table: per node sessions entered, dropped off,
/// time spent and, for backend steps, attempts; then the edges; then the
/// same per group when asked.
pub async fn funnel(remote: &Remote, q: &FunnelArgs) -> Result<String, RemoteError> {
    const PART: &str = "sessions nodes { node entered dropped medianMs p90Ms \
                        stepAttempts stepRetries stepFailures } edges { from to action count }";
    let d = remote
        .call(
            &format!(
                "query($f: ID!, $v: Int, $from: DateTime, $to: DateTime, $idle: Int, \
                 $g: FunnelGroup, $x: ID) {{ funnel(flowId: $f, version: $v, from: $from, \
                 to: $to, idleMinutes: $idle, groupBy: $g, experiment: $x) {{ \
                 from to {PART} groups {{ key {PART} }} }} }}"
            ),
            json!({ "f": q.flow, "v": q.version, "from": q.from, "to": q.to,
                    "idle": q.idle_minutes, "g": q.group_by.map(FunnelGroupBy::graphql),
                    "x": q.experiment }),
        )
        .await?;
    let f = &d["funnel"];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}{}: {} sessions from {} to {}",
        q.flow,
        q.version.map(|v| format!(" v{v}")).unwrap_or_default(),
        f["sessions"],
        f["from"].as_str().unwrap_or_default(),
        f["to"].as_str().unwrap_or_default()
    );
    funnel_table(&mut out, f);
    for g in f["groups"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "\n{}: {} sessions",
            g["key"].as_str().unwrap_or_default(),
            g["sessions"]
        );
        funnel_table(&mut out, g);
    }
    Ok(out)
}

fn funnel_table(out: &mut String, f: &Value) {
    let _ = writeln!(
        out,
        "{:<24} {:>8} {:>8} {:>7} {:>10} {:>10} {:>9} {:>8} {:>7}",
        "node",
        "entered",
        "dropped",
        "drop %",
        "median ms",
        "p90 ms",
        "attempts",
        "retries",
        "failed"
    );
    let ms = |v: &Value| v.as_f64().map_or_else(|| "-".into(), |m| format!("{m:.0}"));
    let count = |v: &Value| v.as_i64().map_or_else(|| "-".into(), |n| n.to_string());
    for n in f["nodes"].as_array().into_iter().flatten() {
        let entered = n["entered"].as_i64().unwrap_or(0);
        let dropped = n["dropped"].as_i64().unwrap_or(0);
        let pct = if entered > 0 {
            format!("{:.1}", 100.0 * dropped as f64 / entered as f64)
        } else {
            "-".into()
        };
        let _ = writeln!(
            out,
            "{:<24} {:>8} {:>8} {:>7} {:>10} {:>10} {:>9} {:>8} {:>7}",
            n["node"].as_str().unwrap_or_default(),
            entered,
            dropped,
            pct,
            ms(&n["medianMs"]),
            ms(&n["p90Ms"]),
            count(&n["stepAttempts"]),
            count(&n["stepRetries"]),
            count(&n["stepFailures"]),
        );
    }
    out.push_str("edges:\n");
    for e in f["edges"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  {} -> {}{}: {}",
            e["from"].as_str().unwrap_or_default(),
            e["to"].as_str().unwrap_or_default(),
            e["action"]
                .as_str()
                .map(|a| format!(" ({a})"))
                .unwrap_or_default(),
            e["count"]
        );
    }
}

/// Where `events tail` starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TailFrom {
    /// After the newest event now.
    Now,
    /// At the first event.
    Start,
    /// After this cursor.
    After(String),
}

/// Prints feed events to stdout, one JSON object per line, polling every
/// `poll` for more; returns after `limit` events (never without one).
pub async fn events_tail(
    remote: &Remote,
    from: TailFrom,
    limit: Option<u64>,
    poll: std::time::Duration,
) -> Result<(), RemoteError> {
    use std::io::Write as _;
    const PAGE: &str = "query($a: String, $n: Int!, $end: Boolean!) { eventFeed(after: $a, first: $n, fromEnd: $end) { \
                        endCursor events { cursor sessionId seq kind at flowId flowVersion userId payload } } }";
    let mut cursor = match from {
        TailFrom::After(c) => Some(c),
        TailFrom::Start => None,
        TailFrom::Now => {
            let d = remote
                .call(PAGE, json!({ "a": null, "n": 1, "end": true }))
                .await?;
            d["eventFeed"]["endCursor"].as_str().map(str::to_owned)
        }
    };
    let mut printed = 0u64;
    let stdout = std::io::stdout();
    loop {
        let want = limit.map_or(500, |l| (l - printed).min(500));
        let d = remote
            .call(PAGE, json!({ "a": cursor, "n": want, "end": false }))
            .await?;
        let page = &d["eventFeed"];
        let events = page["events"].as_array().cloned().unwrap_or_default();
        {
            let mut out = stdout.lock();
            for e in &events {
                writeln!(out, "{e}").map_err(|e| RemoteError(format!("writing to stdout: {e}")))?;
            }
            out.flush()
                .map_err(|e| RemoteError(format!("writing to stdout: {e}")))?;
        }
        printed += events.len() as u64;
        if let Some(c) = page["endCursor"].as_str() {
            cursor = Some(c.to_owned());
        }
        if limit.is_some_and(|l| printed >= l) {
            return Ok(());
        }
        if events.is_empty() {
            tokio::time::sleep(poll).await;
        }
    }
}

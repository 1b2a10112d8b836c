//! The `baton` binary: parses the command line and calls the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use baton::config::ServeConfig;

// Many small, short-lived allocations (JSON values, strings) on several
// threads: mimalloc halves what glibc's allocator cost in profiles of the
// step and load benchmarks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "baton",
    version,
    about = "Server-driven UI flows: flows in, next screen out."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeConfig,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default when no command is given). Its options
    /// may also stand before any command: `baton --addr … ` is `baton serve --addr …`.
    Serve(Box<ServeConfig>),
    /// Check flow and flag files and report every problem at once; exit 1 on any error.
    Validate {
        /// Flow or flag files, or directories of them (flag files have a top-level `flags`).
        #[arg(default_value = "flows")]
        paths: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// The flag directory `flags.<key>` in flows is checked against, as
        /// `baton serve --flags` reads it (a missing directory: no flags).
        #[arg(long = "flags", env = "BATON_FLAGS", default_value = "flags")]
        flag_dir: PathBuf,
        /// A mock scenario every flow checked must declare (repeatable): the
        /// names your scripts and end-to-end tests start sessions with.
        #[arg(long = "scenario")]
        scenarios: Vec<String>,
        /// Hosts `http` steps may call, as `baton serve --allow-hosts` takes them.
        #[arg(
            long,
            env = "BATON_ALLOW_HOSTS",
            value_delimiter = ',',
            default_value = baton::config::DEFAULT_ALLOW_HOSTS
        )]
        allow_hosts: Vec<String>,
    },
    /// Save every flow file of DIR as a draft on a running server (and
    /// publish each new version with --publish); exit 1 if any file has
    /// validation errors.
    Push {
        #[arg(default_value = "flows")]
        dir: PathBuf,
        /// Why: goes with every version into the audit log.
        #[arg(long, short, default_value = "baton push")]
        message: String,
        /// Publish every new version to this share of new sessions (0–100).
        #[arg(long, num_args = 0..=1, default_missing_value = "100",
              value_parser = clap::value_parser!(i32).range(0..=100))]
        publish: Option<i32>,
        #[command(flatten)]
        remote: baton::remote::Remote,
    },
    /// Write the live version of every flow on a running server into DIR.
    Pull {
        #[arg(default_value = "flows")]
        dir: PathBuf,
        #[command(flatten)]
        remote: baton::remote::Remote,
    },
    /// The structural diff between two versions of a flow on a running server.
    Diff {
        flow: String,
        from: i32,
        to: i32,
        #[command(flatten)]
        remote: baton::remote::Remote,
    },
    /// The compatibility report of a flow version per app cohort; exit 1
    /// when it blocks a publish.
    Compat {
        flow: String,
        #[arg(long)]
        version: i32,
        #[command(flatten)]
        remote: baton::remote::Remote,
    },
    /// Start a preview session of a flow's open draft (or --version) and
    /// print the web client's link to it; the page follows later saves.
    Preview {
        flow: String,
        #[arg(long)]
        version: Option<i32>,
        /// Start at this node instead of the flow's start.
        #[arg(long)]
        node: Option<String>,
        /// Where the web example client is served (`client-examples/web`).
        #[arg(long, env = "BATON_WEB_URL", default_value = "http://127.0.0.1:8000/")]
        web: String,
        #[command(flatten)]
        remote: baton::remote::Remote,
    },
    /// A flow's funnel on a running server: per node sessions entered,
    /// dropped off and time spent, and how often each edge was taken.
    Funnel {
        #[command(flatten)]
        query: baton::remote::FunnelArgs,
        #[command(flatten)]
        remote: baton::remote::Remote,
    },
    /// Sessions of made-up users walking a flow on a running server (for
    /// funnels, metrics and the event feed before real users come).
    Simulate(baton::simulate::Plan),
    /// The session event feed of a running server.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Work with rules.
    Rule {
        #[command(subcommand)]
        command: RuleCommand,
    },
    /// Work with feature flags.
    Flag {
        #[command(subcommand)]
        command: FlagCommand,
    },
    /// Work with experiments.
    Experiment {
        #[command(subcommand)]
        command: ExperimentCommand,
    },
    /// Work with API keys for admin calls.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Write the generated artifacts: the GraphQL SDL and the flow JSON
    /// Schema to `schema/`, the error-code and metrics references to `docs/`.
    Schema {
        #[arg(long, default_value = "schema")]
        out: PathBuf,
        /// Where `errors.md` and `metrics.md` go.
        #[arg(long, default_value = "docs")]
        docs: PathBuf,
        /// Do not write; exit 1 when a file on disk differs from the generated one.
        #[arg(long)]
        check: bool,
    },
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Print session events as they happen, one JSON object per line
    /// (each with its `cursor`); from now on unless told otherwise.
    Tail {
        /// Resume after this cursor (a printed event's `cursor`).
        #[arg(long, conflicts_with = "from_start")]
        after: Option<String>,
        /// Start at the first event the server has.
        #[arg(long)]
        from_start: bool,
        /// Stop after this many events (default: follow until interrupted).
        #[arg(long)]
        limit: Option<u64>,
        /// How often to ask for new events, in ms.
        #[arg(long, default_value_t = 500)]
        poll_ms: u64,
        #[command(flatten)]
        remote: baton::remote::Remote,
    },
}

#[derive(Subcommand)]
enum RuleCommand {
    /// Read JSON lines `{"rule": …, "data": …}` on stdin; print one result per line.
    Eval,
}

#[derive(Subcommand)]
enum FlagCommand {
    /// Read JSON lines `{"flag": …, "context": {…}, "type"?: "boolean"|"string"|"integer"|"float"|"object"}`
    /// on stdin; print one resolution per line.
    Eval {
        /// Directory of flag files (flagd's format).
        #[arg(long, env = "BATON_FLAGS", default_value = "flags")]
        flags: PathBuf,
    },
}

#[derive(Subcommand)]
enum ExperimentCommand {
    /// Results per arm, counted from the sessions stored in the database.
    Results {
        /// The experiment's id.
        id: String,
        #[arg(long, env = "DATABASE_URL", default_value = "sqlite://baton.db")]
        database_url: String,
        /// Directory of experiment files.
        #[arg(long, env = "BATON_EXPERIMENTS", default_value = "experiments")]
        experiments: PathBuf,
        /// Directory of flag files (the arms' weights, for the sample-ratio check).
        #[arg(long, env = "BATON_FLAGS", default_value = "flags")]
        flags: PathBuf,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Make a random key; print it once, with the keys-file entry (its SHA-256) to paste.
    New {
        /// Who holds the key (letters, digits, `.`, `_`, `-`, `@`).
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        role: baton::auth::Role,
        /// An approval queue the reviewer decides (repeatable; reviewers only).
        #[arg(long = "queue")]
        queues: Vec<String>,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Human,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli
        .command
        .unwrap_or_else(|| Command::Serve(Box::new(cli.serve.clone())))
    {
        Command::Serve(config) => serve(*config),
        Command::Validate {
            paths,
            format,
            flag_dir,
            scenarios,
            allow_hosts,
        } => {
            let allow_hosts = match baton::flow::hosts::AllowList::parse(&allow_hosts) {
                Ok(list) => list,
                Err(e) => {
                    let code = baton::codes::Code::InvalidAllowHosts;
                    eprintln!("error[{code}]: {e} (hint: {})", code.hint());
                    return ExitCode::from(2);
                }
            };
            let flags = match baton::flags::load_or_empty(&flag_dir) {
                Ok(load) => load.set,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let opts = baton::flow::load::CheckOptions {
                flags: Some(std::sync::Arc::new(flags)),
                scenarios,
                allow_hosts: Some(allow_hosts),
            };
            let issues = baton::flow::load::check_paths_with(&paths, &opts);
            match format {
                Format::Human => print!("{}", baton::flow::validate::format_human(&issues)),
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&issues).expect("issues serialize")
                ),
            }
            if issues
                .iter()
                .any(|i| i.severity == baton::flow::validate::Severity::Error)
            {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Command::Rule {
            command: RuleCommand::Eval,
        } => {
            let stdin = std::io::stdin().lock();
            let stdout = std::io::stdout().lock();
            match baton::rules::eval_lines(stdin, stdout) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("baton rule eval: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Flag {
            command: FlagCommand::Eval { flags },
        } => flag_eval(&flags),
        Command::Experiment {
            command:
                ExperimentCommand::Results {
                    id,
                    database_url,
                    experiments,
                    flags,
                    format,
                },
        } => experiment_results(&id, &database_url, &experiments, &flags, format),
        Command::Key {
            command:
                KeyCommand::New {
                    name,
                    role,
                    queues,
                    format,
                },
        } => key_new(&name, role, queues, format),
        Command::Push {
            dir,
            message,
            publish,
            remote,
        } => remote_call(async move {
            let pushed = baton::remote::push(&remote, &dir, &message, publish).await?;
            let mut failed = false;
            for p in &pushed {
                for issue in &p.issues {
                    println!("{issue}");
                }
                match p.version {
                    Some(v) => println!(
                        "{}: version {v} {}{}",
                        p.flow_id,
                        if p.created { "saved" } else { "unchanged" },
                        if p.published { ", published" } else { "" }
                    ),
                    None => {
                        failed = true;
                        println!("{}: not saved ({})", p.flow_id, p.file.display());
                    }
                }
            }
            Ok(!failed)
        }),
        Command::Pull { dir, remote } => remote_call(async move {
            for (id, v) in baton::remote::pull(&remote, &dir).await? {
                println!("{id}: version {v}");
            }
            Ok(true)
        }),
        Command::Diff {
            flow,
            from,
            to,
            remote,
        } => remote_call(async move {
            print!("{}", baton::remote::diff(&remote, &flow, from, to).await?);
            Ok(true)
        }),
        Command::Compat {
            flow,
            version,
            remote,
        } => remote_call(async move {
            let (table, blocking) = baton::remote::compat(&remote, &flow, version).await?;
            print!("{table}");
            Ok(!blocking)
        }),
        Command::Preview {
            flow,
            version,
            node,
            web,
            remote,
        } => remote_call(async move {
            println!(
                "{}",
                baton::remote::preview(&remote, &flow, version, node.as_deref(), &web).await?
            );
            Ok(true)
        }),
        Command::Simulate(plan) => remote_call(async move {
            print!("{}", baton::simulate::run(&plan).await?);
            Ok(true)
        }),
        Command::Events {
            command:
                EventsCommand::Tail {
                    after,
                    from_start,
                    limit,
                    poll_ms,
                    remote,
                },
        } => remote_call(async move {
            let start = match (after, from_start) {
                (Some(c), _) => baton::remote::TailFrom::After(c),
                (None, true) => baton::remote::TailFrom::Start,
                (None, false) => baton::remote::TailFrom::Now,
            };
            baton::remote::events_tail(
                &remote,
                start,
                limit,
                std::time::Duration::from_millis(poll_ms.max(10)),
            )
            .await?;
            Ok(true)
        }),
        Command::Funnel { query, remote } => remote_call(async move {
            print!("{}", baton::remote::funnel(&remote, &query).await?);
            Ok(true)
        }),
        Command::Schema { out, docs, check } => {
            match baton::artifacts::write_or_check(&out, &docs, check) {
                Ok(stale) if stale.is_empty() => ExitCode::SUCCESS,
                Ok(stale) => {
                    for f in stale {
                        eprintln!("{} is stale: run `baton schema` and commit it", f.display());
                    }
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("baton schema: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Problems in the flag files go to stderr (flags with errors answer
/// `PARSE_ERROR`); only an unreadable directory or I/O stops it.
/// Runs a call against a server: exit 0 when it succeeds and answers
/// true, 1 when it answers false, 2 when the call fails.
fn remote_call(
    call: impl std::future::Future<Output = Result<bool, baton::remote::RemoteError>>,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("baton: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(call) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn flag_eval(dir: &std::path::Path) -> ExitCode {
    let load = match baton::flags::load_dir(dir) {
        Ok(load) => load,
        Err(e) => {
            eprintln!("baton flag eval: [{}] {e}", e.code());
            if let Some(hint) = e.hint() {
                eprintln!("hint: {hint}");
            }
            return ExitCode::FAILURE;
        }
    };
    if !load.issues.is_empty() {
        eprint!("{}", baton::flow::validate::format_human(&load.issues));
    }
    let stdin = std::io::stdin().lock();
    let stdout = std::io::stdout().lock();
    match baton::flags::eval_lines(&load.set, stdin, stdout) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("baton flag eval: {e}");
            ExitCode::FAILURE
        }
    }
}

fn experiment_results(
    id: &str,
    database_url: &str,
    experiments: &std::path::Path,
    flags: &std::path::Path,
    format: Format,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("baton: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = runtime.block_on(baton::experiments::report::load_report(
        database_url,
        experiments,
        flags,
        id,
    ));
    match report {
        Ok(report) => {
            match format {
                Format::Human => print!("{}", baton::experiments::report::format_human(&report)),
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("a report serializes")
                ),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("baton experiment results: {}", chain(&e));
            ExitCode::FAILURE
        }
    }
}

fn key_new(name: &str, role: baton::auth::Role, queues: Vec<String>, format: Format) -> ExitCode {
    let made = match baton::auth::new_key(name, role, queues) {
        Ok(made) => made,
        Err(e) => {
            eprintln!("baton key new: [{}] {e}\nhint: {}", e.code(), e.hint());
            return ExitCode::FAILURE;
        }
    };
    match format {
        Format::Human => print!(
            "API key for `{name}` (shown once; Baton keeps only its SHA-256):\n\n    {key}\n\n\
             Add this entry under `keys:` in the --api-keys file:\n\n{entry}",
            key = made.key,
            entry = made.yaml_entry(),
        ),
        Format::Json => println!(
            "{}",
            serde_json::to_string(&made).expect("a new key serializes")
        ),
    }
    ExitCode::SUCCESS
}

fn serve(config: ServeConfig) -> ExitCode {
    let tracing =
        match baton::telemetry::traces::init(config.log_format, config.otlp_endpoint.as_deref()) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("baton: {e}");
                return ExitCode::FAILURE;
            }
        };
    let code = serve_traced(config);
    tracing.shutdown();
    code
}

fn serve_traced(config: ServeConfig) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("baton: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let app = baton::app::Application::build(config).await?;
        app.run_until(shutdown_signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let message = chain(&e);
            tracing::error!("{message}");
            eprintln!("baton: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `e` and its causes, joined by `: ` as anyhow's `{:#}` does, leaving out
/// a cause whose text the message before it already ends with: many of
/// our errors write their source into their own message as well.
fn chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_in_its_message_is_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory");
        let e = anyhow::Error::new(baton::flow::error::FlowError::DirUnreadable {
            dir: "flows".into(),
            source: io,
        })
        .context("loading flows from flows");
        assert_eq!(
            chain(&e),
            "loading flows from flows: cannot read flow directory flows: no such directory"
        );
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(chain(&plain), "outer: inner");
    }
}

//! The `s3-importd` command line: parses arguments, loads the configuration, and hands each
//! command to its handler. The edge of the program: errors become messages and exit codes
//! here (0 success, 1 a run or check failed, 2 bad usage or configuration).

use clap::{Parser, Subcommand};
use s3_importd::clock::SystemClock;
use s3_importd::config::{self, Config, LogFormat, TargetSpec};
use s3_importd::run::{RunEnv, RunLimits, RunSummary};
use s3_importd::{sources, targets};
use std::path::PathBuf;
use std::process::ExitCode;

mod commands;
use commands::status;

#[derive(Parser)]
#[command(
    name = "s3-importd",
    version,
    about = "Imports files from Amazon S3 on a schedule, exactly once"
)]
struct Cli {
    /// The configuration folder.
    #[arg(long, global = true, env = "S3_IMPORTD_CONFIG", default_value = config::DEFAULT_DIR)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs every enabled connection on its schedule until SIGTERM/SIGINT; SIGHUP reloads.
    Daemon,
    /// Runs the named connections (all enabled ones without names) once, now.
    Run {
        /// Connection names; without any, every enabled connection.
        names: Vec<String>,
        /// Lists what would be imported and changes nothing.
        #[arg(long)]
        dry_run: bool,
        /// Runs a named connection even though it is disabled (`enabled = false`).
        #[arg(long)]
        force: bool,
    },
    /// Checks every configuration file and prints every problem found.
    Validate,
    /// Verifies a connection's access step by step, with the fix to try for each failure.
    Check { name: String },
    /// Lists what the next run would import, and parses the first rows of the newest object.
    Preview {
        name: String,
        /// How many of the objects to import to list.
        #[arg(long, default_value_t = 20)]
        files: usize,
        /// How many rows of the newest object to parse and show.
        #[arg(long, default_value_t = 10)]
        rows: u64,
    },
    /// Helps write templates.
    Template {
        #[command(subcommand)]
        action: TemplateAction,
    },
    /// Prints the IAM policies a connection needs, ready to paste into the AWS console.
    Policy {
        name: String,
        /// Also prints a fresh random external ID, and uses it in the trust policy.
        #[arg(long)]
        new_external_id: bool,
        /// Prints one JSON object holding every document.
        #[arg(long)]
        json: bool,
    },
    /// Imports some objects again at the next run (files rejected before a template was
    /// loosened, say), however old they are.
    Retry {
        name: String,
        /// Keys as listed (for a `dir` source, the path below the folder).
        keys: Vec<String>,
        /// Every object whose last outcome was a rejection.
        #[arg(long)]
        rejected: bool,
    },
    /// Rewinds a connection so that objects modified since DATE are imported again.
    Reset {
        name: String,
        /// YYYY-MM-DD (midnight UTC) or an RFC 3339 time.
        #[arg(long)]
        since: String,
    },
    /// Works on the state store itself: `state migrate --to postgres://…`.
    State {
        #[command(subcommand)]
        action: StateAction,
    },
    /// Shows each connection's schedule, watermark, last run, last error and quarantine.
    Status {
        /// One connection; without it, all of them.
        name: Option<String>,
        /// Prints one JSON object per connection, one per line.
        #[arg(long)]
        json: bool,
        /// How many of the latest quarantined rows to show for a named connection.
        #[arg(long, default_value_t = 10)]
        quarantine: usize,
        /// Also lists the last N runs of each connection, latest first.
        #[arg(long, default_value_t = 0)]
        runs: usize,
    },
}

/// `state` subcommands.
#[derive(Subcommand)]
enum StateAction {
    /// Copies the SQLite state of this configuration (every connection's watermark, ledger,
    /// quarantine, runs, retries and pending loads) into a PostgreSQL database, for fleet mode.
    /// Stop the daemon first: every connection is locked while it is copied.
    Migrate {
        /// The PostgreSQL URL, e.g. postgres://s3_importd@db.example.com/s3_importd.
        #[arg(long, conflicts_with = "to_env", required_unless_present = "to_env")]
        to: Option<String>,
        /// The environment variable holding the URL (keeps a password out of `ps`).
        #[arg(long)]
        to_env: Option<String>,
        /// Replaces what the database already holds of these connections.
        #[arg(long)]
        replace: bool,
    },
}

/// `template` subcommands.
#[derive(Subcommand)]
enum TemplateAction {
    /// Reads the newest files of a connection as they are and prints a template for them
    /// (types, formats, required columns), checked against those rows.
    Infer {
        name: String,
        /// How many of the newest files to read.
        #[arg(long, default_value_t = 5)]
        files: usize,
        /// How many rows of each file to read.
        #[arg(long, default_value_t = 1000)]
        rows: u64,
    },
}

use commands::{EXIT_FAILED, EXIT_USAGE};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `policy --new-external-id` is how a missing or shared external ID is fixed, so it loads
    // a connection that lacks one; every other command refuses it.
    let external_ids = match cli.command {
        Command::Policy { .. } => config::ExternalIds::Deferred,
        _ => config::ExternalIds::Required,
    };
    // The connections a command works on: those must be valid, the others need not be. `run`
    // without names works on every valid connection and exits 2 afterwards if any is not;
    // `validate` and `daemon` need the whole folder valid (docs/design.md §1).
    let named: Option<(Vec<String>, bool)> = match &cli.command {
        Command::Run { names, .. } => Some((names.clone(), true)),
        Command::Status { name, .. } => Some((name.iter().cloned().collect(), false)),
        Command::Check { name }
        | Command::Preview { name, .. }
        | Command::Policy { name, .. }
        | Command::Reset { name, .. }
        | Command::Retry { name, .. }
        | Command::Template {
            action: TemplateAction::Infer { name, .. },
        } => Some((vec![name.clone()], false)),
        Command::Validate | Command::Daemon | Command::State { .. } => None,
    };
    let mut exit_after = None;
    let config = match config::load_with(&cli.config, external_ids) {
        Ok(c) => c,
        Err(errors) => {
            let problems = |list: &[&config::ConfigError]| {
                for e in list {
                    eprintln!("{}", in_dir(&cli.config, e));
                }
                eprintln!(
                    "{} problem{} in {}",
                    list.len(),
                    if list.len() == 1 { "" } else { "s" },
                    cli.config.display()
                );
            };
            let all: Vec<&config::ConfigError> = errors.0.iter().collect();
            let (Some((names, fail_after)), Some(partial)) = (&named, errors.1.as_deref()) else {
                problems(&all);
                return ExitCode::from(EXIT_USAGE);
            };
            let broken: Vec<&String> = names.iter().filter(|n| partial.invalid.contains(n)).collect();
            if !broken.is_empty() {
                let theirs: Vec<&config::ConfigError> =
                    broken.iter().flat_map(|n| errors.of_connection(n)).collect();
                problems(&theirs);
                return ExitCode::from(EXIT_USAGE);
            }
            if names.is_empty() && *fail_after {
                problems(&all);
                eprintln!(
                    "running the valid connections; left out: {}",
                    partial.invalid.join(", ")
                );
                exit_after = Some(ExitCode::from(EXIT_USAGE));
            } else {
                eprintln!(
                    "note: {} other connection{} ha{} problems and {} left out ({}); `s3-importd validate` lists them",
                    partial.invalid.len(),
                    if partial.invalid.len() == 1 { "" } else { "s" },
                    if partial.invalid.len() == 1 { "s" } else { "ve" },
                    if partial.invalid.len() == 1 { "is" } else { "are" },
                    partial.invalid.join(", ")
                );
            }
            partial.config.clone()
        }
    };
    init_logging(config.settings.log_format);
    let code = match cli.command {
        Command::Validate => {
            for warning in fleet_warnings(&config) {
                eprintln!("warning: {warning}");
            }
            let enabled = config.connections.iter().filter(|c| c.enabled).count();
            println!(
                "{}: configuration ok: {} connection{} ({} enabled)",
                cli.config.display(),
                config.connections.len(),
                if config.connections.len() == 1 { "" } else { "s" },
                enabled
            );
            ExitCode::SUCCESS
        }
        Command::Status {
            name,
            json,
            quarantine,
            runs,
        } => block_on(async {
            status::command(&config, name.as_deref(), json, quarantine, runs)
                .await
                .unwrap_or_else(|e| {
                    eprintln!("error: {e:#}");
                    ExitCode::from(EXIT_FAILED)
                })
        }),
        Command::Policy {
            name,
            new_external_id,
            json,
        } => block_on(commands::policy::command(&config, &name, new_external_id, json)),
        Command::Daemon => block_on(async {
            commands::daemon::command(config, cli.config.clone())
                .await
                .unwrap_or_else(|e| {
                    eprintln!("error: {e:#}");
                    ExitCode::from(EXIT_FAILED)
                })
        }),
        Command::Retry { name, keys, rejected } => block_on(async {
            commands::retry::command(&config, &name, &keys, rejected)
                .await
                .unwrap_or_else(|e| {
                    eprintln!("error: {e:#}");
                    ExitCode::from(EXIT_FAILED)
                })
        }),
        Command::Reset { name, since } => block_on(async {
            commands::reset::command(&config, &name, &since)
                .await
                .unwrap_or_else(|e| {
                    eprintln!("error: {e:#}");
                    ExitCode::from(EXIT_FAILED)
                })
        }),
        Command::Check { name } => block_on(commands::check::command(&config, &name)),
        Command::State {
            action: StateAction::Migrate { to, to_env, replace },
        } => block_on(async {
            commands::state::migrate(&config, to, to_env, replace)
                .await
                .unwrap_or_else(|e| {
                    eprintln!("error: {e:#}");
                    ExitCode::from(EXIT_FAILED)
                })
        }),
        Command::Template {
            action: TemplateAction::Infer { name, files, rows },
        } => block_on(async {
            commands::template::infer(&config, &name, files, rows)
                .await
                .unwrap_or_else(|e| {
                    eprintln!("error: {e:#}");
                    ExitCode::from(EXIT_FAILED)
                })
        }),
        Command::Preview { name, files, rows } => block_on(async {
            commands::preview::command(&config, &name, files, rows)
                .await
                .unwrap_or_else(|e| {
                    eprintln!("error: {e:#}");
                    ExitCode::from(EXIT_FAILED)
                })
        }),
        Command::Run {
            names,
            dry_run,
            force,
        } => block_on(async {
            run_command(&config, &names, dry_run, force)
                .await
                .unwrap_or_else(|e| {
                    eprintln!("error: {e:#}");
                    ExitCode::from(EXIT_FAILED)
                })
        }),
    };
    // `run` without names ran the valid connections; the invalid ones still fail the command.
    match exit_after {
        Some(usage) if code == ExitCode::SUCCESS => usage,
        _ => code,
    }
}

/// What `validate` warns of in fleet mode (a PostgreSQL state store): a `file` target writes
/// on whichever host runs the connection, so its folder must be storage every daemon mounts.
/// A folder on a network file system (NFS, EFS, SMB, CephFS, a FUSE mount) passes; any other
/// is warned of, since from one host it cannot be told whether the others see it.
fn fleet_warnings(config: &config::Config) -> Vec<String> {
    if !matches!(config.settings.state, config::StateLocation::Postgres(_)) {
        return Vec::new();
    }
    config
        .connections
        .iter()
        .filter_map(|c| match &c.target {
            TargetSpec::File(spec) if !on_network_storage(&spec.path) => Some(format!(
                "{}: the file target's folder {} does not look like shared storage; in fleet mode any daemon may run this connection, so the folder must be one every host mounts (NFS, EFS…)",
                c.name,
                spec.path.display()
            )),
            _ => None,
        })
        .collect()
}

/// Whether `path` (or the nearest folder above it that exists) is on a network file system.
fn on_network_storage(path: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    const NETWORK: &[i64] = &[
        0x6969,
        0x517B,
        0xFF53_4D42,
        0xFE53_4D42,
        0x6573_5546,
        0x00C3_6400,
        0x0102_1997,
    ];
    let Some(existing) = path.ancestors().find(|p| p.exists()) else {
        return false;
    };
    let Ok(c_path) = std::ffi::CString::new(existing.as_os_str().as_bytes()) else {
        return false;
    };
    let mut stat = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: statfs writes into the buffer we own and reads the NUL-terminated path.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return false;
    }
    // SAFETY: statfs succeeded, so it filled the struct.
    // f_type is an i64 on x86-64 glibc and narrower elsewhere: the cast is for the others.
    #[allow(clippy::unnecessary_cast)]
    let kind = unsafe { stat.assume_init() }.f_type as i64;
    NETWORK.contains(&kind)
}

/// Runs a command handler on a fresh runtime.
fn block_on(handler: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Runtime::new() {
        Ok(rt) => rt.block_on(handler),
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// A configuration error with its file shown inside the configuration folder.
fn in_dir(dir: &std::path::Path, e: &config::ConfigError) -> String {
    let mut e = e.clone();
    if !e.file.starts_with('/') {
        e.file = dir.join(&e.file).display().to_string();
    }
    e.to_string()
}

/// Logs go to standard error (standard output carries summaries and `stdout` rows). Under
/// systemd the journal stamps every line, so text logs then carry no time of their own.
fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    // Our dependencies' own log lines stay below our INFO unless S3_IMPORTD_LOG names them:
    // the AWS SDK's print its types' debug output (STS's refusal of a role, say), which
    // s3-importd reports itself, in one line with a fix, so it is heard only for errors; the
    // PostgreSQL client's and refinery's INFO (a line per migration check and connection,
    // carrying a path into cargo's registry) only from WARN up.
    const QUIET: &[(&str, &str)] = &[
        ("aws_config", "error"),
        ("aws_runtime", "error"),
        ("aws_smithy_runtime", "error"),
        ("aws_sdk_s3", "error"),
        ("aws_sdk_sts", "error"),
        ("aws_sdk_sqs", "error"),
        ("refinery", "warn"),
        ("refinery_core", "warn"),
        ("tokio_postgres", "warn"),
        ("deadpool_postgres", "warn"),
    ];
    let asked = std::env::var("S3_IMPORTD_LOG").unwrap_or_else(|_| "info".to_string());
    let quiet = |asked: &str| {
        let mut directives = asked.to_string();
        for (target, level) in QUIET {
            // A filter that names a target itself is taken as it is (`aws` names them all).
            let named = asked.contains(target) || (target.starts_with("aws") && asked.contains("aws"));
            if !named {
                directives.push_str(&format!(",{target}={level}"));
            }
        }
        directives
    };
    let filter = EnvFilter::try_new(quiet(&asked)).unwrap_or_else(|_| EnvFilter::new(quiet("info")));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    // Text logs escape the control characters of every value (an object key holding a line
    // break or an ESC sequence could otherwise forge a line or drive a terminal); JSON logs
    // escape them as JSON does.
    use tracing_subscriber::field::MakeExt;
    let text_fields = tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
        let text = format!("{value:?}");
        let text = s3_importd::text::clean(&text);
        if field.name() == "message" {
            write!(writer, "{text}")
        } else {
            write!(writer, "{field}={text}")
        }
    })
    .delimited(" ");
    let _ = match (format, journal) {
        (LogFormat::Json, _) => builder.json().try_init(),
        (LogFormat::Text, true) => builder.fmt_fields(text_fields).without_time().try_init(),
        (LogFormat::Text, false) => builder.fmt_fields(text_fields).try_init(),
    };
}

async fn run_command(
    config: &Config,
    names: &[String],
    dry_run: bool,
    force: bool,
) -> anyhow::Result<ExitCode> {
    let chosen = match commands::pick(config, names, true) {
        Ok(c) => c,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    // A disabled connection is one the operator has not finished setting up, or has stopped
    // on purpose: naming it is not enough to run it (a dry run changes nothing, so it may).
    let disabled: Vec<&str> = chosen
        .iter()
        .filter(|c| !c.enabled)
        .map(|c| c.name.as_str())
        .collect();
    if !disabled.is_empty() && !force && !dry_run {
        for name in disabled {
            eprintln!(
                "error: {name} is disabled (enabled = false in connections/{name}.toml); set enabled = true, or run it once anyway with --force"
            );
        }
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    if chosen.is_empty() {
        println!("no enabled connections in {}", config.dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let state = commands::open_state(config).await?;
    let spool_root = &config.settings.spool_dir;
    let clock = SystemClock;

    use futures::StreamExt;
    // Rows own standard output when a connection delivers to it; the summaries then go to
    // standard error, so that a pipe receives JSON rows and nothing else.
    let rows_on_stdout = chosen.iter().any(|c| matches!(c.target, TargetSpec::Stdout(_)));
    let summaries: Vec<RunSummary> = futures::stream::iter(chosen)
        .map(|connection| {
            let (state, spool_root, clock) = (state.as_ref(), &spool_root, &clock);
            async move {
                let source = sources::for_connection(connection).await;
                let target = targets::for_connection(connection).await;
                let env = RunEnv {
                    connection,
                    source: source.as_ref(),
                    target: target.as_ref(),
                    state,
                    clock,
                    spool_root,
                    limits: RunLimits::of(&config.settings),
                    stop: tokio_util::sync::CancellationToken::new(),
                    next_run: None,
                };
                s3_importd::run::run(&env, dry_run).await
            }
        })
        .buffered(config.settings.max_concurrent_runs)
        .collect()
        .await;

    let mut ok = true;
    let mut report = String::new();
    for s in &summaries {
        report.push_str(&format!("{}\n", s3_importd::text::clean(&s.line())));
        if dry_run {
            for m in &s.candidates {
                report.push_str(&format!(
                    "  would import {} ({} bytes, modified {})\n",
                    s3_importd::text::clean(&m.key),
                    m.size,
                    m.last_modified.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ));
            }
            for (reason, n) in &s.skipped {
                report.push_str(&format!("  skipped {n}: {reason}\n"));
            }
        }
        // Problems name object keys and quote partner data: escaped, they cannot forge a line.
        for p in &s.problems {
            report.push_str(&format!("  {}\n", s3_importd::text::clean(p)));
        }
        ok &= s.succeeded();
    }
    if rows_on_stdout {
        eprint!("{report}");
    } else {
        print!("{report}");
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}

//! `s3-importd state migrate --to URL`: moves a one-host SQLite state into PostgreSQL, the
//! first step from one host to a fleet (README, "From one host to a fleet"). Every connection
//! the SQLite file knows is locked (so no run changes it meanwhile), read whole and written in
//! one transaction per connection; the SQLite file is left as it was, so going back is
//! pointing `state` at it again.

use super::EXIT_FAILED;
use anyhow::Context;
use s3_importd::config::{Config, StateLocation};
use s3_importd::secret::Secret;
use s3_importd::state::{self as store, StateError};
use std::process::ExitCode;

pub async fn migrate(
    config: &Config,
    to: Option<String>,
    to_env: Option<String>,
    replace: bool,
) -> anyhow::Result<ExitCode> {
    let StateLocation::Sqlite(path) = &config.settings.state else {
        eprintln!(
            "error: the state of {} is already in PostgreSQL; `state migrate` copies a SQLite state file",
            config.dir.display()
        );
        return Ok(ExitCode::from(EXIT_FAILED));
    };
    let url = match (to, to_env) {
        (Some(url), _) => Secret::new(url),
        (None, Some(var)) => match std::env::var(&var) {
            Ok(url) => Secret::new(url.trim()),
            Err(_) => {
                eprintln!("error: the environment variable {var} (--to-env) is not set");
                return Ok(ExitCode::from(EXIT_FAILED));
            }
        },
        (None, None) => {
            eprintln!("error: give --to postgres://… or --to-env VARIABLE");
            return Ok(ExitCode::from(EXIT_FAILED));
        }
    };
    if !(url.expose().starts_with("postgres://") || url.expose().starts_with("postgresql://")) {
        eprintln!("error: --to must be a postgres:// URL");
        return Ok(ExitCode::from(EXIT_FAILED));
    }
    let from = store::open(&config.settings)
        .await
        .context("opening the SQLite state")?;
    let to = store::open_postgres(&url, config.settings.lease_ttl)
        .await
        .context("opening the PostgreSQL state")?;
    let names = from.connection_names().await?;
    let already = to.connection_names().await?;
    let clash: Vec<&String> = names.iter().filter(|n| already.contains(n)).collect();
    if !clash.is_empty() && !replace {
        eprintln!(
            "error: {} already holds state of {}; give --replace to overwrite it with this SQLite state",
            to.describe(),
            s3_importd::text::quoted_list(&clash.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        );
        return Ok(ExitCode::from(EXIT_FAILED));
    }
    // Every connection stays locked until all are copied: a daemon or `run` still at work on
    // this file would otherwise change what is being copied.
    let mut locks = Vec::new();
    for name in &names {
        match from.lock(name).await {
            Ok(lock) => locks.push(lock),
            Err(StateError::Busy { .. }) => {
                eprintln!(
                    "error: {name} is running right now; stop the daemon (and any `run`) before migrating"
                );
                return Ok(ExitCode::from(EXIT_FAILED));
            }
            Err(e) => return Err(e.into()),
        }
    }
    for name in &names {
        let dump = from
            .export(name)
            .await
            .with_context(|| format!("reading the state of {name}"))?;
        to.import(&dump)
            .await
            .with_context(|| format!("writing the state of {name}"))?;
        println!(
            "{name}: watermark {}, {} ledger entries, {} quarantined rows, {} runs, {} pending loads",
            dump.watermark
                .map_or_else(|| "none".to_string(), |t| t.to_rfc3339()),
            dump.ledger.len(),
            dump.quarantine.len(),
            dump.runs.len(),
            dump.pending.len()
        );
    }
    println!(
        "copied {} connection{} from {} to {}; now set state (or state_url_env / state_url_file) in s3-importd.toml and start the daemons",
        names.len(),
        if names.len() == 1 { "" } else { "s" },
        path.display(),
        to.describe()
    );
    Ok(ExitCode::SUCCESS)
}

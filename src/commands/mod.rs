//! Command handlers of the binary beyond `run` and `validate`: each turns a loaded
//! configuration and its arguments into output and an exit code. They are the edge of the
//! program, so they use `anyhow`; the work itself lives in the library.

pub mod check;
pub mod daemon;
pub mod policy;
pub mod preview;
pub mod reset;
pub mod retry;
pub mod state;
pub mod status;
pub mod template;

/// Exit codes (docs/design.md §3): 0 success, 1 a run or check failed, 2 bad usage or configuration.
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

use anyhow::Context;
use s3_importd::config::{Config, Connection};
use s3_importd::select::{self, ObjectMeta, Verdict, Window};
use s3_importd::sources::Source;
use s3_importd::state::{self as store, RunState, StateStore};
use std::sync::Arc;

/// Opens the state store for a command that writes it ([`store::open_for_writing`]: on a
/// disk too full to open it, the spools killed runs left are freed first).
pub async fn open_state(config: &Config) -> anyhow::Result<Arc<dyn StateStore>> {
    let names: Vec<&str> = config.connections.iter().map(|c| c.name.as_str()).collect();
    store::open_for_writing(&config.settings, &names)
        .await
        .context("opening the state store")
}

/// Takes a connection's run lock for a command that changes its state (`reset`, `retry`):
/// `Ok(None)`, after saying so, when the connection is running right now.
pub async fn lock_idle(
    state: &dyn RunState,
    name: &str,
    command: &str,
) -> anyhow::Result<Option<store::ConnectionLock>> {
    match state.lock(name).await {
        Ok(lock) => Ok(Some(lock)),
        Err(store::StateError::Busy { .. }) => {
            eprintln!(
                "error: {name} is running right now (in the daemon or another s3-importd run); {command} it when the run has finished"
            );
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// The one connection a command is about; an unknown name is reported (with the known ones)
/// and becomes exit code 2.
pub fn pick_one<'c>(config: &'c Config, name: &str) -> Result<&'c Connection, std::process::ExitCode> {
    match pick(config, &[name.to_string()], false) {
        Ok(mut chosen) => Ok(chosen.remove(0)),
        Err(message) => {
            eprintln!("error: {message}");
            Err(std::process::ExitCode::from(EXIT_USAGE))
        }
    }
}

/// The connections named on the command line, or every one (`all_enabled` = only the enabled
/// ones) when none is named. An unknown name is an error that lists the known ones.
pub fn pick<'c>(
    config: &'c Config,
    names: &[String],
    all_enabled: bool,
) -> Result<Vec<&'c Connection>, String> {
    if names.is_empty() {
        return Ok(config
            .connections
            .iter()
            .filter(|c| c.enabled || !all_enabled)
            .collect());
    }
    names
        .iter()
        .map(|name| {
            config.connection(name).ok_or_else(|| {
                let known: Vec<&str> = config.connections.iter().map(|c| c.name.as_str()).collect();
                format!(
                    "no connection {name:?} in {}; the connections are: {}",
                    config.dir.display(),
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )
            })
        })
        .collect()
}

/// The newest `n` objects of the connection's folder that its prefix and globs admit, newest
/// first ([`select::newest_first`]) — imported already or not: what `template infer` learns
/// from, and what `preview` shows when nothing is left to import. Holds only `n` at a time,
/// whatever the size of the folder.
pub async fn newest_admitted(
    source: &dyn Source,
    c: &Connection,
    n: usize,
) -> Result<Vec<ObjectMeta>, String> {
    let all_time = Window {
        lower: chrono::DateTime::<chrono::Utc>::MIN_UTC,
        upper: chrono::DateTime::<chrono::Utc>::MAX_UTC,
    };
    let prefix = c.source.prefix();
    let mut newest: Vec<ObjectMeta> = Vec::new();
    let keep_newest = |objects: &mut Vec<ObjectMeta>| {
        objects.sort_by(select::newest_first);
        objects.truncate(n);
    };
    source
        .list(&mut |meta| {
            if select::classify(&meta, prefix, &c.filters, &all_time) == Verdict::Candidate {
                newest.push(meta);
                if newest.len() > 2 * n {
                    keep_newest(&mut newest);
                }
            }
        })
        .await
        .map_err(|e| e.to_string())?;
    keep_newest(&mut newest);
    Ok(newest)
}

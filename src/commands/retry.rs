//! `s3-importd retry NAME KEY… | --rejected`: asks the next run to import some objects again —
//! typically files rejected for bad rows, after `max_bad_rows` or the template was loosened —
//! without `reset`'s rewinding of everything since a date. Their ledger entries are forgotten
//! and the keys recorded, so the next run takes them even when they are older than its window;
//! each is then delivered once, as any new object is. Refused while the connection runs (it
//! takes the run lock) or has a load whose delivery was interrupted.

use super::{EXIT_FAILED, EXIT_USAGE, pick_one};
use s3_importd::config::Config;
use s3_importd::state::StateError;
use s3_importd::text::clean;
use std::process::ExitCode;

pub async fn command(
    config: &Config,
    name: &str,
    keys: &[String],
    rejected: bool,
) -> anyhow::Result<ExitCode> {
    let connection = match pick_one(config, name) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    if keys.is_empty() && !rejected {
        eprintln!("error: name the keys to import again, or give --rejected for every rejected object");
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let state = super::open_state(config).await?;
    let Some(lock) = super::lock_idle(state.as_ref(), &connection.name, "retry").await? else {
        return Ok(ExitCode::from(EXIT_FAILED));
    };
    let done = state.retry(&connection.name, keys, rejected).await;
    // Given back before anything is printed: the daemon may run the connection at once.
    lock.release().await;
    let retry = match done {
        Ok(r) => r,
        Err(e @ StateError::PendingLoad { .. }) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_FAILED));
        }
        Err(e) => return Err(e.into()),
    };
    if retry.keys.is_empty() {
        println!("retry {name}: no rejected objects in the ledger; nothing to do");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "retry {name}: the next run imports {} object{} again (forgot {} ledger entr{}):",
        retry.keys.len(),
        if retry.keys.len() == 1 { "" } else { "s" },
        retry.forgotten,
        if retry.forgotten == 1 { "y" } else { "ies" }
    );
    for key in &retry.keys {
        println!("  {}", clean(key));
    }
    Ok(ExitCode::SUCCESS)
}

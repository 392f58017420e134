//! `s3-importd reset NAME --since DATE`: rewinds a connection so that objects modified since
//! DATE are imported again, into a new `[table_version]`. Refused while the connection runs
//! (in the daemon or another `run`): it takes the same lock a run takes.

use super::{EXIT_FAILED, EXIT_USAGE, pick_one};
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use s3_importd::config::Config;
use s3_importd::state::StateError;
use std::process::ExitCode;

/// Reads `--since`: a date (midnight UTC) or an RFC 3339 time.
pub fn parse_since(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("{text:?} is not a date; use YYYY-MM-DD (midnight UTC) or an RFC 3339 time such as 2026-11-01T06:00:00Z"))
}

pub async fn command(config: &Config, name: &str, since: &str) -> anyhow::Result<ExitCode> {
    let connection = match pick_one(config, name) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let since = match parse_since(since) {
        Ok(t) => t,
        Err(message) => {
            eprintln!("error: --since: {message}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let state = super::open_state(config).await?;
    let Some(lock) = super::lock_idle(state.as_ref(), &connection.name, "reset").await? else {
        return Ok(ExitCode::from(EXIT_FAILED));
    };
    let done = state.reset(&connection.name, since).await;
    // Given back before anything is printed: the daemon may run the connection at once.
    lock.release().await;
    let reset = match done {
        Ok(r) => r,
        Err(e @ StateError::PendingLoad { .. }) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_FAILED));
        }
        Err(e) => return Err(e.into()),
    };
    let show = |t: Option<DateTime<Utc>>| {
        t.map_or_else(
            || "none".to_string(),
            |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
        )
    };
    println!(
        "reset {name}: forgot {} object versions modified since {}; watermark {} → {}; table version {} → {}; the next run imports them again",
        reset.forgotten,
        since.to_rfc3339_opts(SecondsFormat::Secs, true),
        show(reset.before.watermark),
        show(reset.after.watermark),
        reset.before.table_version,
        reset.after.table_version
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::parse_since;

    #[test]
    fn since_formats() {
        assert_eq!(
            parse_since("2026-11-01").unwrap().to_rfc3339(),
            "2026-11-01T00:00:00+00:00"
        );
        assert_eq!(
            parse_since("2026-11-01T06:00:00+01:00").unwrap().to_rfc3339(),
            "2026-11-01T05:00:00+00:00"
        );
        assert!(parse_since("yesterday").unwrap_err().contains("YYYY-MM-DD"));
    }
}

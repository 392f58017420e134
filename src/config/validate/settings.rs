//! `s3-importd.toml`: the daemon's settings and where its state lives.

use super::*;

pub(super) fn settings(dir: &Path, s: RawSettings, p: &mut Problems<'_>) -> Option<Settings> {
    let before = p.out.len();
    let state = state_location(dir, &s, p);
    let lease_ttl_s = in_range(p, "lease_ttl_s", s.lease_ttl_s, 60, 5, 3600) as u64;
    let timezone = match s.timezone.as_deref().unwrap_or("UTC").parse::<chrono_tz::Tz>() {
        Ok(tz) => tz,
        Err(_) => {
            p.add(
                "timezone",
                format!(
                    "{:?} is not a time zone; use an IANA name such as \"UTC\" or \"Europe/Berlin\"",
                    s.timezone.unwrap_or_default()
                ),
            );
            chrono_tz::UTC
        }
    };
    let max_concurrent_runs = in_range(p, "max_concurrent_runs", s.max_concurrent_runs, 2, 1, 64) as usize;
    let max_concurrent_objects = in_range(
        p,
        "max_concurrent_objects",
        s.max_concurrent_objects,
        defaults::MAX_CONCURRENT_OBJECTS as i64,
        1,
        64,
    ) as usize;
    let load_max_objects = in_range(
        p,
        "load_max_objects",
        s.load_max_objects,
        defaults::LOAD_MAX_OBJECTS as i64,
        LOAD_MAX_OBJECTS.0,
        LOAD_MAX_OBJECTS.1,
    ) as usize;
    let load_max_bytes = size_in_range(
        p,
        "load_max_bytes",
        s.load_max_bytes.as_ref(),
        defaults::LOAD_MAX_BYTES,
        LOAD_MAX_BYTES,
    );
    let shutdown = in_range(p, "shutdown_timeout_s", s.shutdown_timeout_s, 30, 0, 3600) as u64;
    let log_format = match s.log_format.as_deref() {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            p.add(
                "log_format",
                format!("{other:?} is not a log format; use \"text\" or \"json\""),
            );
            LogFormat::Text
        }
    };
    if let Some(a) = &s.aws_principal
        && !PRINCIPAL_ARN.is_match(a)
    {
        p.add(
                "aws_principal",
                format!("{a:?} is not an IAM ARN; use the daemon's role or user ARN, e.g. \"arn:aws:iam::111122223333:role/s3-importd\""),
            );
    }
    let metrics_listen = match s
        .metrics_listen
        .as_deref()
        .map(str::parse::<std::net::SocketAddr>)
    {
        None => None,
        Some(Ok(addr)) => Some(addr),
        Some(Err(_)) => {
            p.add(
                "metrics_listen",
                format!(
                    "{:?} is not an address and port; use e.g. \"127.0.0.1:9464\" (or \"0.0.0.0:9464\" for every interface)",
                    s.metrics_listen.as_deref().unwrap_or_default()
                ),
            );
            None
        }
    };
    let spool_dir = match (s.spool_dir.as_deref(), &state) {
        (Some(d), _) => resolve(dir, d),
        (None, StateLocation::Sqlite(file)) => file.parent().unwrap_or(Path::new(".")).join("spool"),
        (None, StateLocation::Postgres(_)) => PathBuf::from("/var/lib/s3-importd/spool"),
    };
    (p.out.len() == before).then_some(Settings {
        state,
        spool_dir,
        timezone,
        max_concurrent_runs,
        max_concurrent_objects,
        load_max_objects,
        load_max_bytes,
        shutdown_timeout: Duration::from_secs(shutdown),
        lease_ttl: Duration::from_secs(lease_ttl_s),
        log_format,
        aws_principal: s.aws_principal,
        metrics_listen,
    })
}

/// `state`, `state_url_env` and `state_url_file`: a SQLite file (the default), or a
/// PostgreSQL URL given inline or read from an environment variable or a file (a secret: it
/// holds the password).
pub(super) fn state_location(dir: &Path, s: &RawSettings, p: &mut Problems<'_>) -> StateLocation {
    let is_url = |v: &str| v.starts_with("postgres://") || v.starts_with("postgresql://");
    match (s.state.as_deref(), &s.state_url_env, &s.state_url_file) {
        (Some(v), None, None) if is_url(v) => {
            // Checked now (URL, sslmode), so that `validate` and `run` refuse it with exit 2.
            if let Err(problem) = crate::pg_client::check_url(v) {
                p.add("state", problem);
            }
            StateLocation::Postgres(SecretSource::Inline(Secret::new(v)))
        }
        (Some(v), None, None) if v.contains("://") => {
            p.add(
                "state",
                "only SQLite files and postgres:// URLs are state stores; give a file path or a postgres:// URL",
            );
            StateLocation::Sqlite(resolve(dir, v))
        }
        (Some(v), None, None) => StateLocation::Sqlite(resolve(dir, v)),
        (None, None, None) => StateLocation::Sqlite(PathBuf::from("/var/lib/s3-importd/state.db")),
        (None, Some(var), None) if !var.is_empty() => StateLocation::Postgres(SecretSource::Env(var.clone())),
        (None, None, Some(file)) if !file.is_empty() => StateLocation::Postgres(SecretSource::File {
            in_config_dir: resolve(dir, file),
            given: file.clone(),
        }),
        _ => {
            p.add(
                "state",
                "give exactly one of state, state_url_env and state_url_file",
            );
            StateLocation::Sqlite(PathBuf::from("/var/lib/s3-importd/state.db"))
        }
    }
}

//! The second phase of configuration: a pure function from [`RawConfig`] to [`Config`] that
//! checks every value and reports every problem, each with its file, key path and fix.
//!
//! It does no I/O: paths are resolved against the configuration folder but never opened, and
//! templates named by connections are looked up in the map the loader read.

use super::raw::{
    CountOrText, RawConnection, RawField, RawFormat, RawSettings, RawSource, RawTarget, RawTemplate,
};
use super::*;
use crate::formats::{Compression, Encoding, FormatKind};
use crate::secret::Secret;
use crate::template::{BadRowLimit, Column, Field, FieldType, TimeFormat, UnknownFields};
use chrono_tz::Tz;
use globset::{Glob, GlobSet, GlobSetBuilder};
use regex::Regex;
use std::sync::LazyLock;

static NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$").expect("constant regex"));
static ROLE_ARN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^arn:aws(-cn|-us-gov|-iso|-iso-b)?:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$")
        .expect("constant regex")
});
static PRINCIPAL_ARN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^arn:aws(-cn|-us-gov|-iso|-iso-b)?:(iam|sts)::[0-9]{12}:[A-Za-z0-9+=,.@_/:-]+$")
        .expect("constant regex")
});
static EXTERNAL_ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9+=,.@:/_-]{2,1224}$").expect("constant regex"));
static REGION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z]{2}(-[a-z]+)+-[0-9]+$").expect("constant regex"));
static BUCKET: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$").expect("constant regex"));
static IPV4: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$").expect("constant regex"));
static TABLE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$").expect("constant regex"));

/// Resolves a configured path against the configuration folder, removing `.` and `..`
/// lexically so that messages show the path an operator would write.
pub fn resolve(dir: &Path, path: &str) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in dir.join(path).components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.components().next_back(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Collects the problems of one file.
struct Problems<'a> {
    file: &'a str,
    out: &'a mut Vec<ConfigError>,
}

impl Problems<'_> {
    fn add(&mut self, key: &str, message: impl Into<String>) {
        self.out.push(ConfigError {
            file: self.file.to_string(),
            key: key.to_string(),
            message: message.into(),
        });
    }
}

/// Checks the text of a template file (`templates/NAME.toml`) for a connection whose files
/// have a header row or not: the template, or every problem found (reported against `file`).
pub fn template_file(
    text: &str,
    file: &str,
    connection: &str,
    has_header: bool,
) -> Result<crate::template::Template, Vec<ConfigError>> {
    let raw: RawTemplate = super::parse_toml_all(text).map_err(|problems| {
        problems
            .into_iter()
            .map(|(key, message)| ConfigError {
                file: file.to_string(),
                key,
                message,
            })
            .collect::<Vec<_>>()
    })?;
    let mut out = Vec::new();
    let mut p = Problems { file, out: &mut out };
    match template(&raw, connection, "", has_header, &mut p) {
        Some(t) => Ok(t),
        None => Err(out),
    }
}

/// Checks a configuration folder as read. Returns every problem found.
pub fn validate(raw: RawConfig) -> Result<Config, Vec<ConfigError>> {
    match validate_each(raw) {
        (Some(config), errors) if errors.is_empty() => Ok(config),
        (_, errors) => Err(errors),
    }
}

/// [`validate`], keeping what is valid: the configuration with the connections that passed
/// (none when `s3-importd.toml` itself has problems), and every problem found.
pub fn validate_each(raw: RawConfig) -> (Option<Config>, Vec<ConfigError>) {
    let mut errors = Vec::new();
    let settings = settings(
        &raw.dir,
        raw.settings,
        &mut Problems {
            file: "s3-importd.toml",
            out: &mut errors,
        },
    );
    let mut templates = BTreeMap::new();
    for (name, t) in &raw.templates {
        let file = format!("templates/{name}.toml");
        let mut p = Problems {
            file: &file,
            out: &mut errors,
        };
        if let Some(t) = template(t, name, "", true, &mut p) {
            templates.insert(name.clone(), t);
        }
    }
    let mut connections = Vec::new();
    for (name, file, c, choice) in raw.connections {
        let mut p = Problems {
            file: &file,
            out: &mut errors,
        };
        let known = Templates {
            raw: &raw.templates,
            checked: &templates,
        };
        if let Some(c) = connection(&raw.dir, &name, &file, c, choice, known, &mut p) {
            connections.push(c);
        }
    }
    connections.sort_by(|a, b| a.name.cmp(&b.name));
    let config = settings.map(|settings| Config {
        dir: raw.dir,
        settings,
        connections,
        fingerprint: String::new(),
    });
    (config, errors)
}

fn in_range(p: &mut Problems<'_>, key: &str, value: Option<i64>, default: i64, min: i64, max: i64) -> i64 {
    match value {
        None => default,
        Some(v) if (min..=max).contains(&v) => v,
        Some(v) => {
            p.add(key, format!("{v} is out of range; use {min} to {max}"));
            default
        }
    }
}

fn settings(dir: &Path, s: RawSettings, p: &mut Problems<'_>) -> Option<Settings> {
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
        1,
        1_000_000,
    ) as usize;
    let load_max_bytes = in_range(
        p,
        "load_max_bytes",
        s.load_max_bytes,
        defaults::LOAD_MAX_BYTES as i64,
        1 << 20,
        1 << 40,
    ) as u64;
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
fn state_location(dir: &Path, s: &RawSettings, p: &mut Problems<'_>) -> StateLocation {
    let is_url = |v: &str| v.starts_with("postgres://") || v.starts_with("postgresql://");
    match (s.state.as_deref(), &s.state_url_env, &s.state_url_file) {
        (Some(v), None, None) if is_url(v) => StateLocation::Postgres(SecretSource::Inline(Secret::new(v))),
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

/// The files of `templates/`: as read, and those that passed on their own.
#[derive(Clone, Copy)]
struct Templates<'a> {
    raw: &'a BTreeMap<String, RawTemplate>,
    checked: &'a BTreeMap<String, Template>,
}

fn connection(
    dir: &Path,
    name: &str,
    file: &str,
    c: RawConnection,
    choice: TemplateChoice,
    templates: Templates<'_>,
    p: &mut Problems<'_>,
) -> Option<Connection> {
    let before = p.out.len();
    if !NAME.is_match(name) {
        p.add(
            "",
            "the file name is the connection's name and may use only letters, digits, `.`, `_` and `-` (at most 64, starting with a letter or digit); rename the file",
        );
    }
    let schedule = schedule(c.schedule.as_deref(), p);
    let backfill = in_range(p, "backfill_days", c.backfill_days, 90, 1, 36500);
    let settle = in_range(p, "settle_seconds", c.settle_seconds, 60, 0, 7 * 86400);
    let (source, filters) = match c.source {
        Some(s) => source(dir, s, p),
        None => {
            p.add("source", "missing; add a [source] table with the bucket to read");
            (None, None)
        }
    };
    let format = format(c.format.unwrap_or_default(), p);
    let template = match choice {
        TemplateChoice::Inline(t) => template(&t, name, "template.", format.has_header, p),
        TemplateChoice::Named(n) => match templates.raw.get(&n) {
            // A template file's own problems are reported once, in that file; the connection
            // says only that it uses a broken template.
            Some(_) if !templates.checked.contains_key(&n) => {
                p.add(
                    "template",
                    format!("templates/{n}.toml has problems (listed under that file); fix them there"),
                );
                None
            }
            // What depends on the connection (a column index without a header) is checked
            // here, and blamed on the connection.
            Some(t) => template(t, name, "template.", format.has_header, p),
            None => {
                let known: Vec<&str> = templates.raw.keys().map(String::as_str).collect();
                p.add(
                    "template",
                    format!(
                        "no template {n:?}: there is no templates/{n}.toml{}",
                        if known.is_empty() {
                            String::new()
                        } else {
                            format!(" (templates: {})", known.join(", "))
                        }
                    ),
                );
                None
            }
        },
        TemplateChoice::Missing => {
            p.add(
                "template",
                "missing; add a [template] with [[template.fields]], or template = \"NAME\" for templates/NAME.toml",
            );
            None
        }
    };
    let target = match c.target {
        Some(t) => target(dir, t, name, template.as_ref(), p),
        None => {
            p.add(
                "target",
                "missing; add a [target] table, e.g. type = \"file\" with a path",
            );
            None
        }
    };
    if p.out.len() != before {
        return None;
    }
    Some(Connection {
        name: name.to_string(),
        file: file.to_string(),
        description: c.description.unwrap_or_default(),
        enabled: c.enabled.unwrap_or(true),
        schedule: schedule?,
        backfill: TimeDelta::days(backfill),
        settle: TimeDelta::seconds(settle),
        source: source?,
        filters: filters?,
        template: template.map(|mut t| {
            // The format says which CSV cells mean no value; the template's fields apply it.
            for f in &mut t.fields {
                f.null_values = format.null_values.clone();
            }
            t
        })?,
        format,
        target: target?,
    })
}

fn schedule(text: Option<&str>, p: &mut Problems<'_>) -> Option<Schedule> {
    match text.unwrap_or("daily") {
        "daily" => Some(Schedule::Daily),
        "hourly" => Some(Schedule::Hourly),
        expr => {
            let fields = expr.split_whitespace().count();
            let parser = croner::parser::CronParser::builder()
                .seconds(croner::parser::Seconds::Disallowed)
                .year(croner::parser::Year::Disallowed)
                .build();
            if fields != 5 {
                p.add("schedule", format!("{expr:?} has {fields} field{}; use \"daily\", \"hourly\" or 5 cron fields (minute hour day month weekday), e.g. \"30 2 * * *\"", if fields == 1 { "" } else { "s" }));
                return None;
            }
            match parser.parse(expr) {
                Ok(cron) => Some(Schedule::Cron(Box::new(cron), expr.to_string())),
                Err(e) => {
                    p.add("schedule", format!("{expr:?} is not a cron expression ({}); use \"daily\", \"hourly\" or 5 cron fields, e.g. \"30 2 * * *\"", e.to_string().trim_end_matches('.')));
                    None
                }
            }
        }
    }
}

/// The keys among `pairs` that are set.
fn set_keys<'k>(pairs: &[(&'k str, bool)]) -> Vec<&'k str> {
    pairs.iter().filter(|(_, set)| *set).map(|(k, _)| *k).collect()
}

fn globs(list: &Option<Vec<String>>, key: &str, p: &mut Problems<'_>) -> Option<GlobSet> {
    let list = list.as_ref()?;
    let mut builder = GlobSetBuilder::new();
    for (i, g) in list.iter().enumerate() {
        match Glob::new(g) {
            Ok(glob) => {
                builder.add(glob);
            }
            Err(e) => p.add(
                &format!("{key}[{i}]"),
                format!("{g:?} is not a glob: {}", e.kind()),
            ),
        }
    }
    builder.build().ok()
}

fn source(dir: &Path, s: RawSource, p: &mut Problems<'_>) -> (Option<SourceSpec>, Option<Filters>) {
    let filters = Filters {
        include: globs(&s.include, "source.include", p),
        exclude: globs(&s.exclude, "source.exclude", p),
    };
    let kind = s.kind.as_deref().unwrap_or("s3");
    let s3_keys = [
        ("bucket", s.bucket.is_some()),
        ("region", s.region.is_some()),
        ("prefix", s.prefix.is_some()),
        ("role_arn", s.role_arn.is_some()),
        ("external_id", s.external_id.is_some()),
        ("external_id_required", s.external_id_required.is_some()),
        ("expected_bucket_owner", s.expected_bucket_owner.is_some()),
        ("endpoint", s.endpoint.is_some()),
        ("sts_endpoint", s.sts_endpoint.is_some()),
        ("force_path_style", s.force_path_style.is_some()),
        ("challenge_file", s.challenge_file.is_some()),
        ("allow_insecure_http", s.allow_insecure_http.is_some()),
        ("max_concurrent_listings", s.max_concurrent_listings.is_some()),
    ];
    let spec = match kind {
        "s3" => {
            for (k, set) in [
                ("path", s.path.is_some()),
                ("follow_symlinks", s.follow_symlinks.is_some()),
            ] {
                if set {
                    p.add(
                        &format!("source.{k}"),
                        "is a key of a dir source; an s3 source reads `bucket` and `prefix` (or set type = \"dir\")",
                    );
                }
            }
            s3_source(s, p).map(SourceSpec::S3)
        }
        "dir" => {
            for k in set_keys(&s3_keys) {
                p.add(
                    &format!("source.{k}"),
                    "is a key of an s3 source; a dir source reads only `path`, `follow_symlinks`, `include` and `exclude`",
                );
            }
            match s.path {
                Some(path) if !path.is_empty() => Some(SourceSpec::Dir(DirSpec {
                    path: resolve(dir, &path),
                    follow_symlinks: s.follow_symlinks.unwrap_or(false),
                })),
                _ => {
                    p.add(
                        "source.path",
                        "missing; a dir source needs the folder to read, e.g. path = \"inbox\"",
                    );
                    None
                }
            }
        }
        other => {
            p.add(
                "source.type",
                format!("{other:?} is not a source type; use \"s3\" or \"dir\""),
            );
            None
        }
    };
    (spec, Some(filters))
}

/// The external-ID rules across a checked configuration (issue 13): every `role_arn` comes
/// with an `external_id` unless `external_id_required = false` says the role is the
/// operator's own, and no two different roles share one ID. The second rule is what defeats
/// the confused deputy: a partner who hands over another partner's role ARN cannot make the
/// daemon assume it, because that role's trust policy expects an ID the partner's own
/// connection does not send. Two connections that assume the same role may share its ID.
pub fn external_id_problems(config: &Config) -> Vec<ConfigError> {
    let mut problems = Vec::new();
    // (external ID) -> (role, connection file, table) of its first use, in name order.
    let mut seen: BTreeMap<&str, (&str, &str, &str)> = BTreeMap::new();
    for c in &config.connections {
        let mut roles: Vec<(&str, &S3Spec)> = Vec::new();
        if let SourceSpec::S3(s) = &c.source {
            roles.push(("source", s));
        }
        if let TargetSpec::S3(t) = &c.target {
            roles.push(("target", &t.s3));
        }
        for (table, spec) in roles {
            let Some(role) = spec.role_arn.as_deref() else {
                continue;
            };
            match spec.external_id.as_deref() {
                None if spec.external_id_required => problems.push(ConfigError {
                    file: c.file.clone(),
                    key: format!("{table}.external_id"),
                    message: format!(
                        "missing: role_arn {role:?} is assumed without an external ID, so anyone who learns the role's name can have s3-importd use it for them; run `s3-importd policy {name} --new-external-id`, put the ID here and in the role's trust policy (or set external_id_required = false in [{table}] if the role belongs to you)",
                        name = c.name
                    ),
                }),
                None => {}
                Some(id) => match seen.get(id) {
                    Some((first_role, first_file, first_table)) if *first_role != role => {
                        problems.push(ConfigError {
                            file: c.file.clone(),
                            key: format!("{table}.external_id"),
                            message: format!(
                                "is also the external ID of {first_role:?} ([{first_table}] of {first_file}); each role needs an ID of its own: run `s3-importd policy {name} --new-external-id`",
                                name = c.name
                            ),
                        })
                    }
                    Some(_) => {}
                    None => {
                        seen.insert(id, (role, &c.file, table));
                    }
                },
            }
        }
    }
    problems
}

/// Checks a bucket name, returning the problem and the fix.
pub fn bucket_problem(b: &str) -> Option<String> {
    if let Some(rest) = b.strip_prefix("s3://") {
        let bare = rest.split('/').next().unwrap_or(rest);
        return Some(format!(
            "{b:?} is an s3:// URL; give the bare bucket name, bucket = {bare:?}, and put any folder in prefix"
        ));
    }
    if b.starts_with("http://") || b.starts_with("https://") {
        return Some(format!(
            "{b:?} is a URL; give the bare bucket name, and the URL of an S3-compatible service as endpoint"
        ));
    }
    if let Some((bare, path)) = b.split_once('/') {
        return Some(format!(
            "{b:?} has a path; give the bare bucket name, bucket = {bare:?}, and put the folder in prefix = \"{path}\""
        ));
    }
    if !BUCKET.is_match(b)
        || b.contains("..")
        || IPV4.is_match(b)
        || b.starts_with("xn--")
        || b.ends_with("-s3alias")
    {
        return Some(format!(
            "{b:?} is not a valid bucket name; bucket names are 3 to 63 lower-case letters, digits, `.` and `-`, starting and ending with a letter or digit"
        ));
    }
    None
}

/// The S3 keys a source and a target share, as written.
struct RawS3 {
    bucket: Option<String>,
    region: Option<String>,
    prefix: Option<String>,
    role_arn: Option<String>,
    external_id: Option<String>,
    external_id_required: Option<bool>,
    expected_bucket_owner: Option<String>,
    endpoint: Option<String>,
    sts_endpoint: Option<String>,
    force_path_style: Option<bool>,
    challenge_file: Option<String>,
    allow_insecure_http: Option<bool>,
    max_concurrent_listings: Option<i64>,
}

fn s3_source(s: RawSource, p: &mut Problems<'_>) -> Option<S3Spec> {
    let raw = RawS3 {
        bucket: s.bucket,
        region: s.region,
        prefix: s.prefix,
        role_arn: s.role_arn,
        external_id: s.external_id,
        external_id_required: s.external_id_required,
        expected_bucket_owner: s.expected_bucket_owner,
        endpoint: s.endpoint,
        sts_endpoint: s.sts_endpoint,
        force_path_style: s.force_path_style,
        challenge_file: s.challenge_file,
        allow_insecure_http: s.allow_insecure_http,
        max_concurrent_listings: s.max_concurrent_listings,
    };
    s3_location(raw, "source", "read", p)
}

/// Checks a bucket, its region and folder, and the identity to reach it with; `at` is the
/// table (`source` or `target`) the keys are reported under, `verb` what is done there.
fn s3_location(s: RawS3, at: &str, verb: &str, p: &mut Problems<'_>) -> Option<S3Spec> {
    let before = p.out.len();
    let bucket = match s.bucket {
        Some(b) => {
            if let Some(problem) = bucket_problem(&b) {
                p.add(&format!("{at}.bucket"), problem);
            }
            b
        }
        None => {
            p.add(
                &format!("{at}.bucket"),
                format!("missing; name the bucket to {verb}, e.g. bucket = \"acme-exports\""),
            );
            String::new()
        }
    };
    let region = match s.region {
        Some(r) if REGION.is_match(&r) => r,
        Some(r) => {
            p.add(
                &format!("{at}.region"),
                format!("{r:?} is not an AWS region; use a name like \"us-east-1\""),
            );
            r
        }
        None => {
            p.add(
                &format!("{at}.region"),
                "missing; give the bucket's region, e.g. region = \"us-east-1\"",
            );
            String::new()
        }
    };
    let prefix = s.prefix.unwrap_or_default();
    if prefix.starts_with('/') {
        p.add(
            &format!("{at}.prefix"),
            format!(
                "{prefix:?} starts with `/`; S3 keys have no leading slash, use {:?}",
                prefix.trim_start_matches('/')
            ),
        );
    }
    if let Some(arn) = &s.role_arn
        && !ROLE_ARN.is_match(arn)
    {
        p.add(
                &format!("{at}.role_arn"),
                format!("{arn:?} is not an IAM role ARN; it looks like \"arn:aws:iam::123456789012:role/s3-importd-acme\""),
            );
    }
    if let Some(id) = &s.external_id {
        if !EXTERNAL_ID.is_match(id) {
            p.add(
                &format!("{at}.external_id"),
                "must be 2 to 1224 characters of letters, digits and + = , . @ : / _ -",
            );
        }
        if s.role_arn.is_none() {
            p.add(
                &format!("{at}.external_id"),
                "is sent with AssumeRole, so it needs role_arn as well",
            );
        }
    }
    if s.external_id_required.is_some() && s.role_arn.is_none() {
        p.add(
            &format!("{at}.external_id_required"),
            "applies to the role of role_arn, which is not set; remove it",
        );
    }
    if let Some(owner) = &s.expected_bucket_owner
        && !(owner.len() == 12 && owner.bytes().all(|b| b.is_ascii_digit()))
    {
        p.add(
            &format!("{at}.expected_bucket_owner"),
            format!(
                "{owner:?} is not an AWS account ID; give the 12 digits of the account that owns the bucket"
            ),
        );
    }
    for (key, url) in [("endpoint", &s.endpoint), ("sts_endpoint", &s.sts_endpoint)] {
        let Some(e) = url else { continue };
        if !(e.starts_with("http://") || e.starts_with("https://")) || e.contains(char::is_whitespace) {
            p.add(
                &format!("{at}.{key}"),
                format!("{e:?} is not an http:// or https:// URL"),
            );
        }
        // Every S3 and STS request carries credentials (signatures, session tokens).
        if !s.allow_insecure_http.unwrap_or(false)
            && let Some(host) = crate::text::plaintext_to_remote(e)
        {
            p.add(
                &format!("{at}.{key}"),
                format!("sends AWS credentials (signed requests, session tokens) over plain http to {host}; use https://, or set allow_insecure_http = true if the network between is trusted"),
            );
        }
    }
    if s.sts_endpoint.is_some() && s.role_arn.is_none() {
        p.add(
            &format!("{at}.sts_endpoint"),
            "is where AssumeRole goes, and no role_arn is set; remove it",
        );
    }
    if s.challenge_file.as_deref() == Some("") {
        p.add(
            &format!("{at}.challenge_file"),
            "is empty; name the object `check` should find, or remove the key",
        );
    }
    let max_concurrent_listings = in_range(
        p,
        &format!("{at}.max_concurrent_listings"),
        s.max_concurrent_listings,
        8,
        1,
        64,
    ) as usize;
    (p.out.len() == before).then_some(S3Spec {
        bucket,
        region,
        prefix,
        max_concurrent_listings,
        role_arn: s.role_arn,
        external_id: s.external_id,
        external_id_required: s.external_id_required.unwrap_or(true),
        expected_bucket_owner: s.expected_bucket_owner,
        endpoint: s.endpoint,
        sts_endpoint: s.sts_endpoint,
        force_path_style: s.force_path_style.unwrap_or(false),
        challenge_file: s.challenge_file,
    })
}

fn format(f: RawFormat, p: &mut Problems<'_>) -> FormatSpec {
    let kind = match f.kind.as_deref().unwrap_or("csv") {
        "csv" => FormatKind::Csv,
        "tsv" => FormatKind::Tsv,
        "jsonl" | "ndjson" => FormatKind::Jsonl,
        "json" => FormatKind::Json,
        "auto" => FormatKind::Auto,
        other => {
            p.add(
                "format.type",
                format!("{other:?} is not a format; use \"csv\", \"tsv\", \"json\", \"jsonl\" or \"auto\""),
            );
            FormatKind::Auto
        }
    };
    let compression = match f.compression.as_deref().unwrap_or("auto") {
        "auto" => Compression::Auto,
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "zstd" => Compression::Zstd,
        "bzip2" => Compression::Bzip2,
        other => {
            p.add(
                "format.compression",
                format!(
                    "{other:?} is not a compression; use \"auto\", \"none\", \"gzip\", \"zstd\" or \"bzip2\""
                ),
            );
            Compression::Auto
        }
    };
    let delimiter = match f.delimiter.as_deref() {
        None => b',',
        Some(d) if d.len() == 1 && d.is_ascii() && d != "\"" && d != "\n" && d != "\r" => d.as_bytes()[0],
        Some(d) => {
            p.add(
                "format.delimiter",
                format!("{d:?} is not a single ASCII character; use e.g. \",\", \";\", \"|\" or \"\\t\""),
            );
            b','
        }
    };
    if f.delimiter.is_some() && kind != FormatKind::Csv && kind != FormatKind::Auto {
        p.add("format.delimiter", "applies only to type = \"csv\"");
    }
    // One ASCII character other than a line break and the delimiter; `""` means none.
    let mut one_char = |key: &str, value: &Option<String>, default: Option<u8>| -> Option<u8> {
        let Some(v) = value else { return default };
        if v.is_empty() {
            return None;
        }
        match v.as_bytes() {
            [b] if b.is_ascii() && *b != b'\n' && *b != b'\r' && *b != delimiter => Some(*b),
            _ => {
                p.add(
                    &format!("format.{key}"),
                    format!("{v:?} is not one ASCII character other than a line break and the delimiter; use e.g. \"|\", or \"\" for none"),
                );
                default
            }
        }
    };
    let quote = one_char("quote_char", &f.quote_char, Some(b'"'));
    let escape = one_char("escape_char", &f.escape_char, None);
    let comment = one_char("comment_char", &f.comment_char, None);
    let skip_rows_before_header = in_range(
        p,
        "format.skip_rows_before_header",
        f.skip_rows_before_header,
        0,
        0,
        1_000_000,
    ) as usize;
    let skip_rows_after_header = in_range(
        p,
        "format.skip_rows_after_header",
        f.skip_rows_after_header,
        0,
        0,
        1_000_000,
    ) as usize;
    if escape.is_some() && escape == quote {
        p.add(
            "format.escape_char",
            "is the quote character; quotes are escaped by doubling them by default, so leave escape_char out",
        );
    }
    for (key, set) in [
        ("quote_char", f.quote_char.is_some()),
        ("escape_char", f.escape_char.is_some()),
        ("comment_char", f.comment_char.is_some()),
        ("skip_rows_before_header", f.skip_rows_before_header.is_some()),
        ("skip_rows_after_header", f.skip_rows_after_header.is_some()),
    ] {
        if set && !matches!(kind, FormatKind::Csv | FormatKind::Tsv | FormatKind::Auto) {
            p.add(
                &format!("format.{key}"),
                "applies only to type = \"csv\" or \"tsv\"",
            );
        }
    }
    let encoding = match f.encoding.as_deref() {
        None => Encoding::Utf8,
        // Labels the WHATWG standard lacks but people write.
        Some(label) => match label.trim().to_ascii_lowercase().as_str() {
            "utf8" => Some(Encoding::Utf8),
            "auto" => Some(Encoding::Auto),
            "latin-1" | "cp1252" => Some(Encoding::Other(encoding_rs::WINDOWS_1252)),
            "cp1251" => Some(Encoding::Other(encoding_rs::WINDOWS_1251)),
            "cp1256" => Some(Encoding::Other(encoding_rs::WINDOWS_1256)),
            _ => Encoding::for_label(label),
        }
        .unwrap_or_else(|| {
            p.add(
                "format.encoding",
                format!(
                    "{label:?} is not an encoding; use a WHATWG label such as \"utf-8\", \"windows-1252\" (or \"latin-1\"), \"big5\", \"gbk\", \"shift_jis\", \"euc-kr\", \"windows-1256\", \"iso-8859-2\", \"koi8-r\" or \"utf-16le\""
                ),
            );
            Encoding::Utf8
        }),
    };
    FormatSpec {
        kind,
        compression,
        delimiter,
        quote,
        escape,
        has_header: f.has_header.unwrap_or(true),
        encoding,
        kept_null_values: f.null_values.clone().unwrap_or_default(),
        null_values: f.null_values.unwrap_or_else(|| vec![String::new()]),
        skip_rows_before_header,
        skip_rows_after_header,
        comment,
    }
}

fn template(
    t: &RawTemplate,
    connection: &str,
    at: &str,
    has_header: bool,
    p: &mut Problems<'_>,
) -> Option<Template> {
    let before = p.out.len();
    let table = t.table.clone().unwrap_or_else(|| connection.to_string());
    // A table named after its connection is checked with the connection's name.
    if t.table.is_some() && !TABLE.is_match(&table) {
        p.add(
            &format!("{at}table"),
            format!("{table:?} is not a table name; use letters, digits and `_`, starting with a letter"),
        );
    }
    let unknown_fields = match t.unknown_fields.as_deref().unwrap_or("ignore") {
        "ignore" => UnknownFields::Ignore,
        "reject" => UnknownFields::Reject,
        "keep" => UnknownFields::Keep,
        other => {
            p.add(
                &format!("{at}unknown_fields"),
                format!("{other:?} is not a choice; use \"ignore\", \"reject\" or \"keep\""),
            );
            UnknownFields::Ignore
        }
    };
    let max_bad_rows = bad_row_limit(t.max_bad_rows.as_ref(), &format!("{at}max_bad_rows"), p);
    let zone = zone(t.timezone.as_deref(), &format!("{at}timezone"), p).unwrap_or(Tz::UTC);
    // Without fields, a template that keeps unknown fields imports files as they are
    // (schemaless); any other has nothing to deliver.
    if t.fields.is_empty() && unknown_fields != UnknownFields::Keep {
        p.add(
            &format!("{at}fields"),
            "no fields; add at least one [[template.fields]] with a name and a type, or set unknown_fields = \"keep\" to import every column as it is",
        );
    }
    let mut fields = Vec::new();
    for (i, f) in t.fields.iter().enumerate() {
        let key = format!("{at}fields[{i}]");
        if let Some(f) = field(f, i, &key, has_header, zone, p) {
            if fields.iter().any(|g: &Field| g.name == f.name) {
                p.add(
                    &format!("{key}.name"),
                    format!("{:?} is used by an earlier field; names must be unique", f.name),
                );
            }
            fields.push(f);
        }
    }
    (p.out.len() == before).then_some(Template {
        table,
        unknown_fields,
        max_bad_rows,
        fields,
    })
}

/// The default `max_bad_rows`: a file is rejected when more than 1% of its rows are bad, but
/// never for five bad rows or fewer — a small file with a stray bad record is imported (its
/// bad rows quarantined), while a file read with the wrong delimiter or encoding, whose rows
/// are nearly all bad, is still rejected whatever its size.
pub const DEFAULT_MAX_BAD_ROWS: BadRowLimit = BadRowLimit::ShareOrCount(0.01, 5);

fn bad_row_limit(v: Option<&CountOrText>, key: &str, p: &mut Problems<'_>) -> BadRowLimit {
    let fix =
        "use a count such as \"10\", a share such as \"1%\", or both, \"1% or 5\" (whichever allows more)";
    match v {
        None => DEFAULT_MAX_BAD_ROWS,
        // The contract writes the limit as a string, so that a count and a share read alike.
        Some(CountOrText::Count(n)) => {
            p.add(
                key,
                format!("{n} is a number; write it as a string: \"{n}\" for a count of bad rows, or a share such as \"1%\""),
            );
            BadRowLimit::Count(0)
        }
        Some(CountOrText::Text(t)) => {
            let t = t.trim();
            let parts: Vec<&str> = t.split(" or ").map(str::trim).collect();
            let (mut share, mut count) = (None, None);
            for part in &parts {
                if let Some(s) = part.strip_suffix('%') {
                    match s.trim().parse::<f64>() {
                        Ok(s) if (0.0..=100.0).contains(&s) && share.is_none() => share = Some(s / 100.0),
                        _ => {
                            p.add(
                                key,
                                format!("{part:?} in {t:?} is not a share between 0% and 100%; {fix}"),
                            );
                            return BadRowLimit::Count(0);
                        }
                    }
                } else {
                    match part.parse::<u64>() {
                        Ok(n) if count.is_none() => count = Some(n),
                        _ => {
                            p.add(key, format!("{t:?} is not a count or a share; {fix}"));
                            return BadRowLimit::Count(0);
                        }
                    }
                }
            }
            match (share, count) {
                (Some(s), Some(n)) => BadRowLimit::ShareOrCount(s, n),
                (Some(s), None) => BadRowLimit::Share(s),
                (None, Some(n)) => BadRowLimit::Count(n),
                (None, None) => {
                    p.add(key, format!("{t:?} is not a count or a share; {fix}"));
                    BadRowLimit::Count(0)
                }
            }
        }
    }
}

/// A time zone by its IANA name.
fn zone(name: Option<&str>, key: &str, p: &mut Problems<'_>) -> Option<Tz> {
    let name = name?;
    match name.parse::<Tz>() {
        Ok(z) => Some(z),
        Err(_) => {
            p.add(
                key,
                format!("{name:?} is not a time zone; use an IANA name such as \"UTC\" or \"Europe/Berlin\""),
            );
            None
        }
    }
}

fn field(
    f: &RawField,
    index: usize,
    key: &str,
    has_header: bool,
    template_zone: Tz,
    p: &mut Problems<'_>,
) -> Option<Field> {
    let before = p.out.len();
    let name = match &f.name {
        Some(n) if !n.is_empty() && !n.starts_with("_source_") => n.clone(),
        Some(n) if n.starts_with("_source_") => {
            p.add(
                &format!("{key}.name"),
                format!("{n:?} is reserved for provenance; choose another name"),
            );
            n.clone()
        }
        _ => {
            p.add(
                &format!("{key}.name"),
                "missing; every field needs the name it is delivered under",
            );
            String::new()
        }
    };
    let kind_name = f.kind.as_deref().unwrap_or("string");
    let format = f.format.clone();
    let kind = match kind_name {
        "string" => Some(FieldType::String),
        "integer" => Some(FieldType::Integer),
        "decimal" => Some(FieldType::Decimal),
        "float" => Some(FieldType::Float),
        "boolean" => Some(FieldType::Boolean),
        "json" => Some(FieldType::Json),
        "date" => {
            if let Some(fmt) = &format {
                strftime_problem(fmt, &format!("{key}.format"), p);
            }
            Some(FieldType::Date(format.clone()))
        }
        "timestamp" => Some(FieldType::Timestamp {
            format: match format.as_deref() {
                None => TimeFormat::Iso,
                Some("unix") => TimeFormat::Unix,
                Some("unix_ms") => TimeFormat::UnixMs,
                Some(fmt) => {
                    strftime_problem(fmt, &format!("{key}.format"), p);
                    TimeFormat::Strftime(fmt.to_string())
                }
            },
            zone: zone(f.timezone.as_deref(), &format!("{key}.timezone"), p).unwrap_or(template_zone),
        }),
        other => {
            p.add(
                &format!("{key}.type"),
                format!(
                    "{other:?} is not a field type; use one of {}",
                    FieldType::NAMES.join(", ")
                ),
            );
            None
        }
    };
    if format.is_some() && !matches!(kind_name, "date" | "timestamp") {
        p.add(
            &format!("{key}.format"),
            "applies only to date and timestamp fields",
        );
    }
    if f.timezone.is_some() && kind_name != "timestamp" {
        p.add(&format!("{key}.timezone"), "applies only to timestamp fields");
    }
    let column = match &f.column {
        Some(CountOrText::Count(n)) if *n >= 1 => Column::Index(*n as usize - 1),
        Some(CountOrText::Count(n)) => {
            p.add(
                &format!("{key}.column"),
                format!("{n} is not a column number; columns are numbered from 1"),
            );
            Column::Index(0)
        }
        Some(CountOrText::Text(t)) if has_header => Column::Name(t.clone()),
        Some(CountOrText::Text(t)) => {
            match t.trim().parse::<usize>() {
                Ok(n) if n >= 1 => Column::Index(n - 1),
                _ => {
                    p.add(&format!("{key}.column"), format!("{t:?} is not a column number; with has_header = false, columns are numbered from 1"));
                    Column::Index(0)
                }
            }
        }
        None if has_header => Column::Name(name.clone()),
        None => Column::Index(index),
    };
    let kind = kind?;
    let field = Field {
        name,
        column,
        kind,
        required: f.required.unwrap_or(false),
        values: f.values.clone(),
        default: f.default.clone(),
        // The connection's `[format] null_values` replace these once the format is known.
        null_values: vec![String::new()],
        booleans: match (&f.true_values, &f.false_values) {
            (None, None) => None,
            (t, fa) => Some((t.clone().unwrap_or_default(), fa.clone().unwrap_or_default())),
        },
    };
    if field.booleans.is_some() && field.kind != FieldType::Boolean {
        p.add(
            &format!("{key}.true_values"),
            "true_values and false_values apply only to type = \"boolean\"",
        );
    }
    if let Some((yes, no)) = &field.booleans
        && let Some(both) = yes.iter().find(|y| no.contains(y))
    {
        p.add(
            &format!("{key}.false_values"),
            format!("{both:?} is in true_values too; a value cannot mean both"),
        );
    }
    if let Some(d) = &field.default {
        let probe = Field {
            default: None,
            values: None,
            ..field.clone()
        };
        if let Err(e) = probe.check(crate::template::RawValue::Text(d)) {
            p.add(&format!("{key}.default"), e);
        }
    }
    (p.out.len() == before).then_some(field)
}

/// The output format and key template of a `file` or `s3` target.
fn output(
    t: &RawTarget,
    connection: &str,
    table: Option<&str>,
    p: &mut Problems<'_>,
) -> (OutputFormat, Option<KeyTemplate>) {
    let csv = match t.format.as_deref() {
        None | Some("jsonl") => false,
        Some("csv") => true,
        Some(other) => {
            p.add(
                "target.format",
                format!("{other:?} is not an output format; use \"jsonl\" or \"csv\""),
            );
            false
        }
    };
    let delimiter = match t.delimiter.as_deref() {
        None | Some(",") => b',',
        Some("|") => b'|',
        Some("\t") => b'\t',
        Some(other) => {
            p.add(
                "target.delimiter",
                format!("{other:?} is not an output delimiter; use \",\", \"|\" or \"\\t\""),
            );
            b','
        }
    };
    if !csv && (t.delimiter.is_some() || t.quote_all.is_some()) {
        p.add(
            "target.delimiter",
            "delimiter and quote_all apply to CSV output; add format = \"csv\" or remove them",
        );
    }
    if !csv && t.csv_formula_guard.is_some() {
        p.add(
            "target.csv_formula_guard",
            "applies to CSV output; add format = \"csv\" or remove it",
        );
    }
    let format = if csv {
        OutputFormat::Csv {
            delimiter,
            quote_all: t.quote_all.unwrap_or(false),
            formula_guard: t.csv_formula_guard.unwrap_or(true),
        }
    } else {
        OutputFormat::Jsonl
    };
    let extension = if csv { "csv" } else { "jsonl" };
    let key = match &t.key {
        None => Some(KeyTemplate::default_for(extension)),
        Some(toml::Value::String(text)) => match KeyTemplate::parse(text) {
            Ok(k) => Some(k),
            Err(e) => {
                p.add("target.key", format!("{text:?}: {e}"));
                None
            }
        },
        Some(_) => {
            p.add("target.key", "must be a string: the key template, e.g. \"[integration_name]/[table_name]/[table_version]/[timestamp_loaded].jsonl\"");
            None
        }
    };
    if let (Some(k), Some(table)) = (&key, table)
        && let Err(e) = k.check_for(connection, table)
    {
        p.add("target.key", format!("{:?}: {e}", k.to_string()));
    }
    (format, key)
}

fn strftime_problem(fmt: &str, key: &str, p: &mut Problems<'_>) {
    use chrono::format::{Item, StrftimeItems};
    if StrftimeItems::new(fmt).any(|i| matches!(i, Item::Error)) {
        p.add(
            key,
            format!("{fmt:?} is not a strftime format; e.g. \"%d/%m/%Y %H:%M\""),
        );
    }
}

fn target(
    dir: &Path,
    t: RawTarget,
    connection: &str,
    template: Option<&Template>,
    p: &mut Problems<'_>,
) -> Option<TargetSpec> {
    let table = template.map(|t| t.table.as_str());
    // Without a valid template, field names cannot be checked; its problems are reported.
    let fields: Vec<String> = template
        .map(|t| t.fields.iter().map(|f| f.name.clone()).collect())
        .unwrap_or_default();
    let keys = [
        ("path", t.path.is_some()),
        ("format", t.format.is_some()),
        ("delimiter", t.delimiter.is_some()),
        ("quote_all", t.quote_all.is_some()),
        ("csv_formula_guard", t.csv_formula_guard.is_some()),
        ("file_mode", t.file_mode.is_some()),
        ("key", t.key.is_some()),
        ("bucket", t.bucket.is_some()),
        ("region", t.region.is_some()),
        ("prefix", t.prefix.is_some()),
        ("role_arn", t.role_arn.is_some()),
        ("external_id", t.external_id.is_some()),
        ("external_id_required", t.external_id_required.is_some()),
        ("expected_bucket_owner", t.expected_bucket_owner.is_some()),
        ("endpoint", t.endpoint.is_some()),
        ("sts_endpoint", t.sts_endpoint.is_some()),
        ("force_path_style", t.force_path_style.is_some()),
        ("url", t.url.is_some()),
        ("batch_size", t.batch_size.is_some()),
        ("headers", t.headers.is_some()),
        ("headers_env", t.headers_env.is_some()),
        ("headers_file", t.headers_file.is_some()),
        ("allow_insecure_http", t.allow_insecure_http.is_some()),
        ("token_env", t.token_env.is_some()),
        ("token_file", t.token_file.is_some()),
        ("timeout_s", t.timeout_s.is_some()),
        ("max_retries", t.max_retries.is_some()),
        ("url_env", t.url_env.is_some()),
        ("url_file", t.url_file.is_some()),
        ("table", t.table.is_some()),
        ("mode", t.mode.is_some()),
        ("create_table", t.create_table.is_some()),
    ];
    let Some(kind) = t.kind.as_deref() else {
        p.add(
            "target.type",
            "missing; use \"file\", \"stdout\", \"s3\", \"http\" or \"postgres\"",
        );
        return None;
    };
    let allowed: &[&str] = match kind {
        "file" => &[
            "path",
            "format",
            "delimiter",
            "quote_all",
            "csv_formula_guard",
            "file_mode",
            "key",
        ],
        "s3" => &[
            "bucket",
            "region",
            "prefix",
            "role_arn",
            "external_id",
            "external_id_required",
            "expected_bucket_owner",
            "endpoint",
            "sts_endpoint",
            "force_path_style",
            "allow_insecure_http",
            "format",
            "delimiter",
            "quote_all",
            "csv_formula_guard",
            "key",
        ],
        "stdout" => &[],
        "http" => &[
            "url",
            "url_env",
            "url_file",
            "batch_size",
            "headers",
            "headers_env",
            "headers_file",
            "token_env",
            "token_file",
            "timeout_s",
            "max_retries",
            "allow_insecure_http",
        ],
        "postgres" => &[
            "url",
            "url_env",
            "url_file",
            "table",
            "mode",
            "key",
            "create_table",
        ],
        other => {
            p.add("target.type", format!("{other:?} is not a target type; use \"file\", \"stdout\", \"s3\", \"http\" or \"postgres\""));
            return None;
        }
    };
    let before = p.out.len();
    for k in set_keys(&keys) {
        if !allowed.contains(&k) {
            p.add(&format!("target.{k}"), format!("is not a key of a {kind} target"));
        }
    }
    match kind {
        "file" => {
            let path = match &t.path {
                Some(path) if !path.is_empty() => resolve(dir, path),
                _ => {
                    p.add(
                        "target.path",
                        "missing; a file target needs the folder to write into, e.g. path = \"/srv/imports\"",
                    );
                    PathBuf::new()
                }
            };
            let (format, key) = output(&t, connection, table, p);
            let file_mode = match t.file_mode.as_deref() {
                None => crate::files::PRIVATE_FILE,
                Some(m) => match u32::from_str_radix(m.trim_start_matches("0o"), 8) {
                    Ok(mode) if mode <= 0o777 && mode & 0o600 == 0o600 => mode,
                    _ => {
                        p.add(
                            "target.file_mode",
                            format!("{m:?} is not a file mode the daemon can write; use octal digits such as \"0640\" (owner read and write at least)"),
                        );
                        crate::files::PRIVATE_FILE
                    }
                },
            };
            (p.out.len() == before).then_some(TargetSpec::File(FileTargetSpec {
                path,
                file_mode,
                format,
                key: key?,
            }))
        }
        "s3" => {
            let (format, key) = output(&t, connection, table, p);
            let raw = RawS3 {
                bucket: t.bucket,
                region: t.region,
                prefix: t.prefix,
                role_arn: t.role_arn,
                external_id: t.external_id,
                external_id_required: t.external_id_required,
                expected_bucket_owner: t.expected_bucket_owner,
                endpoint: t.endpoint,
                sts_endpoint: t.sts_endpoint,
                force_path_style: t.force_path_style,
                challenge_file: None,
                allow_insecure_http: t.allow_insecure_http,
                max_concurrent_listings: None,
            };
            let s3 = s3_location(raw, "target", "write into", p);
            (p.out.len() == before).then_some(TargetSpec::S3(S3TargetSpec {
                s3: s3?,
                format,
                key: key?,
            }))
        }
        "http" => {
            let spec = http_target(dir, t, p);
            (p.out.len() == before).then_some(TargetSpec::Http(spec))
        }
        "postgres" => {
            let spec = postgres_target(dir, t, table, &fields, p);
            (p.out.len() == before).then_some(TargetSpec::Postgres(spec))
        }
        _ => (p.out.len() == before).then_some(TargetSpec::Stdout),
    }
}

/// A PostgreSQL identifier s3-importd is willing to write unquoted-looking: letters, digits
/// and `_`, not starting with a digit, at most 63 bytes (PostgreSQL's limit).
static PG_IDENT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$").expect("a valid pattern"));

/// A target's URL, a secret: `url` written inline, or read from `url_env` or `url_file`
/// (exactly one).
fn url_source(
    dir: &Path,
    url: Option<String>,
    url_env: Option<String>,
    url_file: Option<String>,
    p: &mut Problems<'_>,
) -> SecretSource {
    match (url, url_env, url_file) {
        (Some(u), None, None) => SecretSource::Inline(Secret::new(u)),
        (None, Some(var), None) if !var.is_empty() => SecretSource::Env(var),
        (None, None, Some(file)) if !file.is_empty() => SecretSource::File {
            in_config_dir: resolve(dir, &file),
            given: file,
        },
        (None, None, None) => {
            p.add(
                "target.url",
                "missing; give url, url_env (an environment variable) or url_file (a file, e.g. from systemd's LoadCredential=)",
            );
            SecretSource::Env(String::new())
        }
        _ => {
            p.add("target.url", "give exactly one of url, url_env and url_file");
            SecretSource::Env(String::new())
        }
    }
}

/// The keys of a `postgres` target.
fn postgres_target(
    dir: &Path,
    t: RawTarget,
    template_table: Option<&str>,
    fields: &[String],
    p: &mut Problems<'_>,
) -> PostgresTargetSpec {
    let url = url_source(dir, t.url.clone(), t.url_env.clone(), t.url_file.clone(), p);
    if let SecretSource::Inline(u) = &url
        && !(u.expose().starts_with("postgres://") || u.expose().starts_with("postgresql://"))
    {
        // The URL may hold a password: it is not repeated in the message.
        p.add("target.url", "is not a postgres:// or postgresql:// URL");
    }
    let name = t
        .table
        .clone()
        .or_else(|| template_table.map(str::to_string))
        .unwrap_or_default();
    let (schema, table) = match name.split_once('.') {
        Some((s, t)) => (Some(s.to_string()), t.to_string()),
        None => (None, name.clone()),
    };
    if schema
        .iter()
        .chain(std::iter::once(&table))
        .any(|part| !PG_IDENT.is_match(part))
    {
        p.add(
            "target.table",
            format!("{name:?} is not a table name; use letters, digits and `_`, optionally after a schema and a dot (\"imports.products\")"),
        );
    }
    let mode = match (t.mode.as_deref().unwrap_or("append"), &t.key) {
        ("append", None) => WriteMode::Append,
        ("append", Some(_)) => {
            p.add(
                "target.key",
                "applies to mode = \"upsert\"; append mode keys rows by their source and line",
            );
            WriteMode::Append
        }
        ("upsert", Some(toml::Value::Array(items))) if !items.is_empty() => {
            let mut key = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(k) if fields.is_empty() || fields.iter().any(|f| f == k) => key.push(k.to_string()),
                    Some(k) => p.add(
                        &format!("target.key[{i}]"),
                        format!(
                            "{k:?} is not a field of the template; upsert keys are field names ({})",
                            fields.join(", ")
                        ),
                    ),
                    None => p.add(&format!("target.key[{i}]"), "must be a field name"),
                }
            }
            WriteMode::Upsert(key)
        }
        ("upsert", _) => {
            p.add(
                "target.key",
                "missing; upsert needs the columns that identify a row, e.g. key = [\"id\"]",
            );
            WriteMode::Upsert(Vec::new())
        }
        (other, _) => {
            p.add(
                "target.mode",
                format!("{other:?} is not a mode; use \"append\" or \"upsert\""),
            );
            WriteMode::Append
        }
    };
    PostgresTargetSpec {
        url,
        schema,
        table,
        mode,
        create_table: t.create_table.unwrap_or(false),
    }
}

/// The keys of an `http` target.
fn http_target(dir: &Path, t: RawTarget, p: &mut Problems<'_>) -> HttpTargetSpec {
    let url = url_source(dir, t.url.clone(), t.url_env.clone(), t.url_file.clone(), p);
    let shown_url = match &url {
        SecretSource::Inline(u) => {
            let u = u.expose();
            if !(u.starts_with("http://") || u.starts_with("https://"))
                || u.contains(char::is_whitespace)
                || reqwest::Url::parse(u).is_err()
            {
                p.add(
                    "target.url",
                    format!(
                        "{:?} is not an http:// or https:// URL",
                        crate::text::redact_url(u)
                    ),
                );
            }
            crate::text::redact_url(u)
        }
        SecretSource::Env(var) => format!("the URL in ${var}"),
        SecretSource::File { given, .. } => format!("the URL in {given}"),
    };
    let allow_insecure_http = t.allow_insecure_http.unwrap_or(false);
    let batch_size = in_range(p, "target.batch_size", t.batch_size, 500, 1, 100_000) as usize;
    let timeout = Duration::from_secs(in_range(p, "target.timeout_s", t.timeout_s, 30, 1, 3600) as u64);
    let max_retries = in_range(p, "target.max_retries", t.max_retries, 5, 0, 100) as usize;
    let mut headers = Vec::new();
    for (name, value) in t.headers.unwrap_or_default() {
        let key = format!("target.headers.{name}");
        let valid_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !valid_name {
            p.add(&key, "is not an HTTP header name");
            continue;
        }
        match value {
            toml::Value::String(v) if !v.contains(['\r', '\n']) => headers.push((name, Secret::new(v))),
            _ => p.add(&key, "must be a string on one line"),
        }
    }
    let token = match (t.token_env, t.token_file) {
        (Some(_), Some(_)) => {
            p.add("target.token_file", "give token_env or token_file, not both");
            None
        }
        (Some(var), None) if !var.is_empty() => Some(SecretSource::Env(var)),
        (None, Some(file)) if !file.is_empty() => Some(SecretSource::File {
            in_config_dir: resolve(dir, &file),
            given: file,
        }),
        (Some(_), None) => {
            p.add(
                "target.token_env",
                "is empty; name the environment variable that holds the token",
            );
            None
        }
        (None, Some(_)) => {
            p.add(
                "target.token_file",
                "is empty; name the file that holds the token",
            );
            None
        }
        (None, None) => None,
    };
    let headers_from = match (t.headers_env, t.headers_file) {
        (Some(_), Some(_)) => {
            p.add(
                "target.headers_file",
                "give headers_env or headers_file, not both",
            );
            None
        }
        (Some(var), None) if !var.is_empty() => Some(SecretSource::Env(var)),
        (None, Some(file)) if !file.is_empty() => Some(SecretSource::File {
            in_config_dir: resolve(dir, &file),
            given: file,
        }),
        (Some(_), None) | (None, Some(_)) => {
            p.add(
                "target.headers_file",
                "is empty; name the environment variable or file that holds `Name: value` lines",
            );
            None
        }
        (None, None) => None,
    };
    // Credentials over plain http to another host: refused unless the connection says so.
    if let SecretSource::Inline(u) = &url
        && !allow_insecure_http
        && let Some(host) = crate::text::plaintext_to_remote(u.expose())
    {
        let userinfo =
            reqwest::Url::parse(u.expose()).is_ok_and(|u| !u.username().is_empty() || u.password().is_some());
        if token.is_some() || !headers.is_empty() || headers_from.is_some() || userinfo {
            p.add(
                "target.url",
                format!("sends credentials (a token, headers or userinfo) over plain http to {host}; use https://, or set allow_insecure_http = true if the network between is trusted"),
            );
        }
    }
    HttpTargetSpec {
        url,
        shown_url,
        batch_size,
        headers,
        headers_from,
        allow_insecure_http,
        token,
        timeout,
        max_retries,
    }
}

#[cfg(test)]
mod tests {
    use super::resolve;
    use std::path::{Path, PathBuf};

    #[test]
    fn resolves_paths_lexically() {
        let cases = [
            ("config", "../target/x", "target/x"),
            ("config", "./a/./b", "config/a/b"),
            (
                "/etc/s3-importd",
                "/var/lib/s3-importd/state.db",
                "/var/lib/s3-importd/state.db",
            ),
            ("/etc/s3-importd", "state.db", "/etc/s3-importd/state.db"),
            ("..", "../x", "../../x"),
        ];
        for (dir, path, want) in cases {
            assert_eq!(
                resolve(Path::new(dir), path),
                PathBuf::from(want),
                "{dir} + {path}"
            );
        }
    }

    /// A connection `name` over bucket `b` whose source and target say `source` and `target`.
    fn connection(source: &str, target: &str) -> String {
        format!(
            "[source]\nbucket = \"src-bucket\"\nregion = \"eu-west-1\"\n{source}\n[format]\ntype = \"jsonl\"\n[template]\ntable = \"t\"\nunknown_fields = \"keep\"\n[[template.fields]]\nname = \"id\"\n[target]\ntype = \"s3\"\nbucket = \"dst-bucket\"\nregion = \"eu-west-1\"\n{target}\n"
        )
    }

    /// The problems (`file: key`) a folder of connections has under the external-ID rules.
    fn external_id_problems(connections: &[(&str, String)]) -> Vec<String> {
        let files = crate::config::Files {
            settings: None,
            templates: Vec::new(),
            connections: connections
                .iter()
                .map(|(n, t)| (n.to_string(), t.clone()))
                .collect(),
        };
        let dir = Path::new("/etc/s3-importd");
        let lenient = crate::config::check_with(dir, &files, crate::config::ExternalIds::Deferred);
        assert!(lenient.is_ok(), "{lenient:?}");
        match crate::config::check(dir, &files) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(|e| format!("{}: {}", e.file, e.key)).collect(),
        }
    }

    #[test]
    fn every_role_has_an_external_id_of_its_own() {
        let role = |n: &str| format!("role_arn = \"arn:aws:iam::111122223333:role/{n}\"");
        let with = |n: &str, id: &str| format!("{}\nexternal_id = \"{id}\"", role(n));
        type Case<'a> = (&'a str, Vec<(&'a str, String)>, Vec<&'a str>);
        let cases: Vec<Case<'_>> = vec![
            ("no roles", vec![("a", connection("", ""))], vec![]),
            (
                "source role with its id",
                vec![("a", connection(&with("r", "id-1"), ""))],
                vec![],
            ),
            (
                "source role without an id",
                vec![("a", connection(&role("r"), ""))],
                vec!["connections/a.toml: source.external_id"],
            ),
            (
                "target role without an id",
                vec![("a", connection("", &role("w")))],
                vec!["connections/a.toml: target.external_id"],
            ),
            (
                "turned off for roles the operator owns",
                vec![(
                    "a",
                    connection(
                        &format!("{}\nexternal_id_required = false", role("r")),
                        &format!("{}\nexternal_id_required = false", role("w")),
                    ),
                )],
                vec![],
            ),
            (
                "two roles share an id: the second is refused",
                vec![
                    ("a", connection(&with("r1", "shared"), "")),
                    ("b", connection(&with("r2", "shared"), "")),
                ],
                vec!["connections/b.toml: source.external_id"],
            ),
            (
                "a source and a target role share an id within one connection",
                vec![("a", connection(&with("r1", "shared"), &with("w", "shared")))],
                vec!["connections/a.toml: target.external_id"],
            ),
            (
                "one role, one id, two connections",
                vec![
                    ("a", connection(&with("r", "same"), "")),
                    (
                        "b",
                        connection(&format!("{}\nprefix = \"b/\"", with("r", "same")), ""),
                    ),
                ],
                vec![],
            ),
        ];
        for (what, connections, want) in cases {
            assert_eq!(external_id_problems(&connections), want, "{what}");
        }
    }

    #[test]
    fn max_bad_rows_reads_a_count_a_share_or_both() {
        use crate::template::BadRowLimit;
        let limit = |value: &str| {
            let files = crate::config::Files {
                settings: None,
                templates: Vec::new(),
                connections: vec![(
                    "c".into(),
                    format!(
                        "[source]\ntype = \"dir\"\npath = \"in\"\n[template]\n{value}\n[[template.fields]]\nname = \"id\"\n[target]\ntype = \"stdout\"\n"
                    ),
                )],
            };
            crate::config::check(Path::new("/etc/s3-importd"), &files)
                .map(|c| c.connections[0].template.max_bad_rows)
                .map_err(|e| e.to_string())
        };
        assert_eq!(limit(""), Ok(super::DEFAULT_MAX_BAD_ROWS));
        assert_eq!(limit("max_bad_rows = \"7\""), Ok(BadRowLimit::Count(7)));
        assert_eq!(limit("max_bad_rows = \"2.5%\""), Ok(BadRowLimit::Share(0.025)));
        assert_eq!(
            limit("max_bad_rows = \"1% or 5\""),
            Ok(BadRowLimit::ShareOrCount(0.01, 5))
        );
        assert_eq!(
            limit("max_bad_rows = \"5 or 1%\""),
            Ok(BadRowLimit::ShareOrCount(0.01, 5))
        );
        for bad in ["1% or 2%", "5 or 6", "1% and 5", "or", "120%"] {
            let err = limit(&format!("max_bad_rows = \"{bad}\"")).unwrap_err();
            assert!(err.contains("template.max_bad_rows"), "{bad}: {err}");
        }
    }
}

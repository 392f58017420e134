//! Configuration: reading the configuration folder (docs/design.md §1–2) and the checked types the
//! rest of the daemon runs on.
//!
//! Two phases, as in Vector and ripgrep: [`raw`] mirrors the TOML files with serde
//! (`deny_unknown_fields`), and [`validate::validate`] — pure, no I/O — turns them into the
//! types below, reporting every problem at once. Only [`load`] touches the disk. Nothing that
//! runs later parses or checks configuration again.

pub mod kind;
pub mod raw;
pub mod settings_file;
pub mod validate;

use crate::formats::FormatSpec;
use crate::select::Filters;
use crate::template::Template;
use chrono::TimeDelta;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default configuration folder.
pub const DEFAULT_DIR: &str = "/etc/s3-importd";

/// A checked configuration folder.
#[derive(Debug, Clone)]
pub struct Config {
    pub dir: PathBuf,
    pub settings: Settings,
    /// Sorted by name.
    pub connections: Vec<Connection>,
    /// BLAKE3 of the files read ([`Files::fingerprint`]): daemons of a fleet that run
    /// different configurations show different fingerprints in `status`.
    pub fingerprint: String,
}

impl Config {
    /// The connection called `name`.
    pub fn connection(&self, name: &str) -> Option<&Connection> {
        self.connections.iter().find(|c| c.name == name)
    }
}

/// The defaults of `s3-importd.toml` that code outside configuration needs too.
pub mod defaults {
    /// `max_concurrent_objects`.
    pub const MAX_CONCURRENT_OBJECTS: usize = 4;
    /// `load_max_objects`.
    pub const LOAD_MAX_OBJECTS: usize = 10_000;
    /// `load_max_bytes`: 1 GiB of spooled rows.
    pub const LOAD_MAX_BYTES: u64 = 1 << 30;
}

/// `s3-importd.toml`, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the state lives (`state`, `state_url_env`, `state_url_file`).
    pub state: StateLocation,
    /// Where runs spool their loads (`spool_dir`; default `spool/` beside a SQLite state
    /// file, `/var/lib/s3-importd/spool` with PostgreSQL state).
    pub spool_dir: PathBuf,
    /// How long a run's lease on its connection lasts unless renewed (`lease_ttl_s`; fleet
    /// mode). A run renews it every third of this.
    pub lease_ttl: Duration,
    pub timezone: chrono_tz::Tz,
    pub max_concurrent_runs: usize,
    pub max_concurrent_objects: usize,
    /// A run delivers and commits in loads of at most this many objects (`load_max_objects`).
    pub load_max_objects: usize,
    /// … or of this many bytes of spooled rows (`load_max_bytes`), whichever comes first.
    pub load_max_bytes: u64,
    pub shutdown_timeout: Duration,
    pub log_format: LogFormat,
    pub aws_principal: Option<String>,
    /// Where the daemon serves `/metrics` (Prometheus) and `/healthz` (`metrics_listen`);
    /// none: it serves nothing.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// Where the state store is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateLocation {
    /// A SQLite file, resolved against the configuration folder: one host.
    Sqlite(PathBuf),
    /// A PostgreSQL database shared by a fleet of daemons (`state = "postgres://…"`, or
    /// `state_url_env` / `state_url_file`).
    Postgres(SecretSource),
}

/// `log_format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// One connection, checked.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The connection file's stem.
    pub name: String,
    /// The connection file, as shown in messages.
    pub file: String,
    pub description: String,
    pub enabled: bool,
    pub schedule: Schedule,
    pub backfill: TimeDelta,
    pub settle: TimeDelta,
    /// `load_max_objects` of this connection, over `s3-importd.toml`'s.
    pub load_max_objects: Option<usize>,
    /// `load_max_bytes` of this connection, over `s3-importd.toml`'s.
    pub load_max_bytes: Option<u64>,
    pub source: SourceSpec,
    pub filters: Filters,
    pub format: FormatSpec,
    pub template: Template,
    pub target: TargetSpec,
}

/// `schedule`.
#[derive(Debug, Clone)]
pub enum Schedule {
    Daily,
    Hourly,
    /// A 5-field cron expression, parsed, with its text.
    Cron(Box<croner::Cron>, String),
}

// A connection's source and target are specs of their families, which own the kinds (one
// module each); the bucket location is shared by the S3 kinds.
pub use crate::aws::location::S3Location;
pub use crate::sources::SourceSpec;
pub use crate::targets::TargetSpec;

/// Where a secret is read from; it lives with [`crate::secret`], which reads it, so that
/// `secret` needs nothing of the configuration.
pub use crate::secret::SecretSource;

/// One problem in the configuration: the file, the key path within it, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, relative to the configuration folder.
    pub file: String,
    /// The dotted key path, such as `source.bucket`; empty for the file as a whole.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a configuration folder, and — when `s3-importd.toml` itself is
/// sound — the rest of the folder, for commands that need only some connections.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>, pub Option<Box<Partial>>);

/// The valid part of a configuration folder with problems.
#[derive(Debug, Clone)]
pub struct Partial {
    /// The settings and the connections that passed.
    pub config: Config,
    /// The connections (file stems) that did not.
    pub invalid: Vec<String>,
}

impl ConfigErrors {
    /// Problems only: nothing of the folder can be used.
    pub fn fatal(errors: Vec<ConfigError>) -> ConfigErrors {
        ConfigErrors(errors, None)
    }

    fn partial(errors: Vec<ConfigError>, config: Config, invalid: Vec<String>) -> ConfigErrors {
        ConfigErrors(errors, Some(Box::new(Partial { config, invalid })))
    }

    /// The problems of one connection: those of its file, and those of the template files
    /// they name (a connection whose template has problems says so in its own file).
    pub fn of_connection(&self, name: &str) -> Vec<&ConfigError> {
        let file = format!("connections/{name}.toml");
        let own: Vec<&ConfigError> = self.0.iter().filter(|e| e.file == file).collect();
        let named_templates = self
            .0
            .iter()
            .filter(|e| e.file.starts_with("templates/") && own.iter().any(|o| o.message.contains(&e.file)));
        own.iter().copied().chain(named_templates).collect()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// How a connection names its template.
#[derive(Debug)]
pub enum TemplateChoice {
    Inline(raw::RawTemplate),
    Named(String),
    Missing,
    /// Inline, with problems already reported: the rest of the connection is still checked.
    Reported,
}

/// The whole folder as read from disk, before validation.
#[derive(Debug, Default)]
pub struct RawConfig {
    pub dir: PathBuf,
    pub settings: raw::RawSettings,
    /// `templates/NAME.toml` by name.
    pub templates: BTreeMap<String, raw::RawTemplate>,
    /// `connections/NAME.toml`: name, file as shown, text, contents.
    pub connections: Vec<(String, String, String, raw::RawConnection, TemplateChoice)>,
}

/// The text of a configuration folder's files, as read: what [`check`] takes. The names are
/// file stems; the files are shown in messages as `connections/NAME.toml` and
/// `templates/NAME.toml`.
#[derive(Debug, Default, Clone)]
pub struct Files {
    /// `s3-importd.toml`, when there is one.
    pub settings: Option<String>,
    pub templates: Vec<(String, String)>,
    pub connections: Vec<(String, String)>,
}

impl Files {
    /// A short BLAKE3 hex digest of every file's name and text, in a fixed order.
    pub fn fingerprint(&self) -> String {
        let mut hasher = blake3::Hasher::new();
        let mut add = |name: &str, text: &str| {
            for part in [name, text] {
                hasher.update(&(part.len() as u64).to_le_bytes());
                hasher.update(part.as_bytes());
            }
        };
        add("s3-importd.toml", self.settings.as_deref().unwrap_or(""));
        let mut named: Vec<(String, &str)> = self
            .templates
            .iter()
            .map(|(n, t)| (format!("templates/{n}"), t.as_str()))
            .chain(
                self.connections
                    .iter()
                    .map(|(n, t)| (format!("connections/{n}"), t.as_str())),
            )
            .collect();
        named.sort();
        for (name, text) in named {
            add(&name, text);
        }
        hasher.finalize().to_hex()[..16].to_string()
    }
}

/// Whether a role without an external ID is a problem of the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExternalIds {
    /// Every `role_arn` needs its own `external_id` (unless `external_id_required = false`),
    /// and no two roles share one: what every command but `policy` loads with.
    Required,
    /// Not checked: `policy --new-external-id` is how a missing or shared ID gets fixed, so it
    /// must load the connection that lacks one.
    Deferred,
}

/// Reads and checks a configuration folder.
pub fn load(dir: &Path) -> Result<Config, ConfigErrors> {
    load_with(dir, ExternalIds::Required)
}

/// [`load`], saying whether external IDs are checked.
pub fn load_with(dir: &Path, external_ids: ExternalIds) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    if !dir.is_dir() {
        return Err(ConfigErrors::fatal(vec![ConfigError {
            file: dir.display().to_string(),
            key: String::new(),
            message: "is not a folder; give the configuration folder with --config DIR or S3_IMPORTD_CONFIG"
                .into(),
        }]));
    }
    let mut files = Files::default();
    let settings_file = dir.join("s3-importd.toml");
    if settings_file.exists() {
        files.settings = read_text(dir, &settings_file, &mut errors);
    }
    for (name, path) in toml_files(dir, "templates", &mut errors) {
        if let Some(text) = read_text(dir, &path, &mut errors) {
            files.templates.push((name, text));
        }
    }
    for (name, path) in toml_files(dir, "connections", &mut errors) {
        if let Some(text) = read_text(dir, &path, &mut errors) {
            files.connections.push((name, text));
        }
    }
    // A file that could not be read leaves nothing usable: it may be s3-importd.toml, whose
    // defaults would then stand in for the operator's settings.
    match check_with(dir, &files, external_ids) {
        Ok(mut config) if errors.is_empty() => {
            config.fingerprint = files.fingerprint();
            Ok(config)
        }
        Ok(_) => Err(ConfigErrors::fatal(errors)),
        Err(ConfigErrors(more, partial)) => {
            let fatal = !errors.is_empty();
            errors.extend(more);
            Err(ConfigErrors(errors, if fatal { None } else { partial }))
        }
    }
}

/// Checks the files of a configuration folder `dir` (which relative paths are resolved
/// against). Pure: reads nothing, so it is what the fuzz target calls.
pub fn check(dir: &Path, files: &Files) -> Result<Config, ConfigErrors> {
    check_with(dir, files, ExternalIds::Required)
}

/// [`check`], saying whether external IDs are checked.
pub fn check_with(dir: &Path, files: &Files, external_ids: ExternalIds) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let mut raw = RawConfig {
        dir: dir.to_path_buf(),
        ..RawConfig::default()
    };
    if let Some(text) = &files.settings
        && let Some(s) = parse_file(text, "s3-importd.toml", &mut errors)
    {
        raw.settings = s;
    }
    for (name, text) in &files.templates {
        if let Some(t) = parse_file(text, &format!("templates/{name}.toml"), &mut errors) {
            raw.templates.insert(name.clone(), t);
        }
    }
    for (name, text) in &files.connections {
        let file = format!("connections/{name}.toml");
        let add = |errors: &mut Vec<ConfigError>, problems: Vec<(String, String)>| {
            errors.extend(problems.into_iter().map(|(key, message)| ConfigError {
                file: file.clone(),
                key,
                message,
            }))
        };
        let doc = match parse_toml::<toml::Table>(text) {
            Ok(doc) => doc,
            Err(problem) => {
                add(&mut errors, vec![problem]);
                continue;
            }
        };
        // Unknown keys are reported and the rest is read all the same, so that one run of
        // `validate` lists the problems of every table of the file.
        let (c, unknown) =
            deserialize_keeping::<raw::RawConnection>(toml::Value::Table(doc.clone()), text, &[]);
        add(&mut errors, unknown.into_iter().map(Unread::shown).collect());
        let Some(mut c) = c else {
            // The file's inline template is checked all the same.
            let mut doc = doc;
            if let Some(t @ toml::Value::Table(_)) = doc.remove("template")
                && let Err(problems) =
                    deserialize_all::<raw::RawTemplate>(t, text, &[PathStep::Key("template".into())])
            {
                add(&mut errors, problems);
            }
            continue;
        };
        let name = name.clone();
        let choice = match c.template.take() {
            None => TemplateChoice::Missing,
            Some(toml::Value::String(n)) => TemplateChoice::Named(n),
            Some(toml::Value::Table(t)) => {
                let prefix = [PathStep::Key("template".into())];
                match deserialize_all(toml::Value::Table(t), text, &prefix) {
                    Ok(t) => TemplateChoice::Inline(t),
                    Err(problems) => {
                        add(&mut errors, problems);
                        TemplateChoice::Reported
                    }
                }
            }
            Some(_) => {
                errors.push(ConfigError {
                    file: file.clone(),
                    key: "template".into(),
                    message: "must be a table ([template]) or the name of a file in templates/".into(),
                });
                continue;
            }
        };
        raw.connections.push((name, file, text.clone(), c, choice));
    }
    let (config, more) = validate::validate_each(raw);
    errors.extend(more);
    let Some(mut config) = config else {
        return Err(ConfigErrors::fatal(errors));
    };
    if external_ids == ExternalIds::Required {
        errors.extend(validate::external_id_problems(&config));
    }
    if errors.is_empty() {
        return Ok(config);
    }
    // Left out: the connections named in a problem, and those that did not come through
    // (a file that would not parse; a template with problems, reported in its own file).
    let invalid: Vec<String> = files
        .connections
        .iter()
        .map(|(name, _)| name.clone())
        .filter(|name| {
            let file = format!("connections/{name}.toml");
            errors.iter().any(|e| e.file == file) || config.connection(name).is_none()
        })
        .collect();
    config.connections.retain(|c| !invalid.contains(&c.name));
    Err(ConfigErrors::partial(errors, config, invalid))
}

/// A path as shown in messages: relative to the configuration folder when inside it.
fn shown(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir).unwrap_or(path).display().to_string()
}

/// The `*.toml` files of a subfolder, sorted, with their stems.
fn toml_files(dir: &Path, sub: &str, errors: &mut Vec<ConfigError>) -> Vec<(String, PathBuf)> {
    let folder = dir.join(sub);
    let entries = match std::fs::read_dir(&folder) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            errors.push(ConfigError {
                file: format!("{sub}/"),
                key: String::new(),
                message: format!("cannot be read: {e}"),
            });
            return Vec::new();
        }
    };
    let mut files: Vec<(String, PathBuf)> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .filter_map(|p| Some((p.file_stem()?.to_str()?.to_string(), p)))
        .collect();
    files.sort();
    files
}

/// Reads and deserializes one TOML file, recording what goes wrong.
fn read_text(dir: &Path, path: &Path, errors: &mut Vec<ConfigError>) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(t) => Some(t),
        Err(e) => {
            errors.push(ConfigError {
                file: shown(dir, path),
                key: String::new(),
                message: format!("cannot be read: {e}"),
            });
            None
        }
    }
}

fn parse_file<T: serde::de::DeserializeOwned>(
    text: &str,
    file: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    match parse_toml_all(text) {
        Ok(v) => Some(v),
        Err(problems) => {
            errors.extend(problems.into_iter().map(|(key, message)| ConfigError {
                file: file.to_string(),
                key,
                message,
            }));
            None
        }
    }
}

/// Deserializes TOML text, returning every unknown key, and the first other problem, each as
/// its key path and message (with its line).
pub fn parse_toml_all<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, Vec<(String, String)>> {
    match parse_toml(text) {
        Ok(t) => Ok(t),
        Err(first) if !first.1.starts_with(UNKNOWN_FIELD) => Err(vec![first]),
        Err(first) => match text.parse::<toml::Table>() {
            Ok(doc) => deserialize_all(toml::Value::Table(doc), text, &[])
                .map_err(|found| if found.is_empty() { vec![first] } else { found }),
            Err(_) => Err(vec![first]),
        },
    }
}

/// How serde begins the message of an unknown key.
const UNKNOWN_FIELD: &str = "unknown field";

/// Deserializes `value` (the part of the TOML `text` at `prefix`), reporting every unknown
/// key: each is recorded, taken out, and the rest read again — serde stops at the first —
/// until none is left; then the first other problem, if any. Keys are paths from the file's
/// root, each message with the line of its key.
pub fn deserialize_all<T: serde::de::DeserializeOwned>(
    value: toml::Value,
    text: &str,
    prefix: &[PathStep],
) -> Result<T, Vec<(String, String)>> {
    deserialize_each(value, text, prefix)
        .map_err(|problems| problems.into_iter().map(Unread::shown).collect())
}

/// A key that could not be read: its path from the file's root, its line, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unread {
    pub path: Vec<PathStep>,
    pub line: Option<usize>,
    pub message: String,
}

impl Unread {
    /// The key path and the message with its line, as [`deserialize_all`] gives them.
    pub fn shown(self) -> (String, String) {
        let message = match self.line {
            Some(line) => format!("{} (line {line})", self.message),
            None => self.message,
        };
        (show_path(&self.path), message)
    }
}

/// [`deserialize_all`], its problems in the order of the file, lines apart from messages.
pub fn deserialize_each<T: serde::de::DeserializeOwned>(
    value: toml::Value,
    text: &str,
    prefix: &[PathStep],
) -> Result<T, Vec<Unread>> {
    match deserialize_keeping(value, text, prefix) {
        (Some(t), problems) if problems.is_empty() => Ok(t),
        (_, problems) => Err(problems),
    }
}

/// [`deserialize_each`], also returning what was read once the unknown keys were taken out,
/// when nothing else was wrong: so that the rest of a file with a typo is checked too.
pub fn deserialize_keeping<T: serde::de::DeserializeOwned>(
    mut value: toml::Value,
    text: &str,
    prefix: &[PathStep],
) -> (Option<T>, Vec<Unread>) {
    let mut problems: Vec<Unread> = Vec::new();
    let in_file_order = |mut problems: Vec<Unread>| {
        problems.sort_by_key(|u| u.line.unwrap_or(usize::MAX));
        problems
    };
    // Bounded by the keys the value holds: each round removes one.
    for _ in 0..=count_keys(&value) {
        let e = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(t) => return (Some(t), in_file_order(problems)),
            Err(e) => e,
        };
        let mut path: Vec<PathStep> = prefix.to_vec();
        path.extend(e.path().iter().filter_map(PathStep::of));
        let message = e.inner().message().trim_end_matches('.').to_string();
        let line = line_of(text, &path);
        let unknown = e.inner().message().starts_with(UNKNOWN_FIELD);
        let removed = unknown && remove(&mut value, &path[prefix.len()..]);
        problems.push(Unread { path, line, message });
        if !removed {
            break;
        }
    }
    (None, in_file_order(problems))
}

/// One step of a key path: a key of a table, or an element of an array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathStep {
    Key(String),
    Index(usize),
}

impl PathStep {
    fn of(segment: &serde_path_to_error::Segment) -> Option<PathStep> {
        match segment {
            serde_path_to_error::Segment::Map { key } => Some(PathStep::Key(key.clone())),
            serde_path_to_error::Segment::Seq { index } => Some(PathStep::Index(*index)),
            _ => None,
        }
    }
}

/// A path as messages show it: `template.fields[0].colour`.
pub fn show_path(path: &[PathStep]) -> String {
    let mut shown = String::new();
    for step in path {
        match step {
            PathStep::Key(k) if shown.is_empty() => shown.push_str(k),
            PathStep::Key(k) => {
                shown.push('.');
                shown.push_str(k);
            }
            PathStep::Index(i) => shown.push_str(&format!("[{i}]")),
        }
    }
    shown
}

/// How many keys a value holds, nested ones included.
fn count_keys(value: &toml::Value) -> usize {
    match value {
        toml::Value::Table(t) => t.len() + t.values().map(count_keys).sum::<usize>(),
        toml::Value::Array(a) => a.iter().map(count_keys).sum(),
        _ => 0,
    }
}

/// Takes the key at `path` out of `value`; false when there is none.
fn remove(value: &mut toml::Value, path: &[PathStep]) -> bool {
    match (value, path) {
        (toml::Value::Table(t), [PathStep::Key(k)]) => t.remove(k).is_some(),
        (toml::Value::Table(t), [PathStep::Key(k), rest @ ..]) => {
            t.get_mut(k).is_some_and(|v| remove(v, rest))
        }
        (toml::Value::Array(a), [PathStep::Index(i), rest @ ..]) => {
            a.get_mut(*i).is_some_and(|v| remove(v, rest))
        }
        _ => false,
    }
}

/// The line of the key (or array element) at `path` in the TOML `text`, found by reading it
/// again with spans.
pub fn line_of(text: &str, path: &[PathStep]) -> Option<usize> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let mut at: Option<std::ops::Range<usize>> = None;
    let mut value = toml::de::DeValue::Table(doc.into_inner());
    for step in path {
        let next = match (&value, step) {
            (toml::de::DeValue::Table(t), PathStep::Key(k)) => {
                let (key, v) = t.iter().find(|(key, _)| key.get_ref().as_ref() == k.as_str())?;
                at = Some(key.span());
                v.get_ref().clone()
            }
            (toml::de::DeValue::Array(a), PathStep::Index(i)) => {
                let v = a.get(*i)?;
                at = Some(v.span());
                v.get_ref().clone()
            }
            _ => return None,
        };
        value = next;
    }
    let start = at?.start.min(text.len());
    Some(text[..start].matches('\n').count() + 1)
}

/// Deserializes TOML text, returning the key path and message of the first problem.
pub fn parse_toml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, (String, String)> {
    let de = toml::Deserializer::parse(text).map_err(|e| (String::new(), describe_toml_error(text, &e)))?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        (key, describe_toml_error(text, e.inner()))
    })
}

fn describe_toml_error(text: &str, e: &toml::de::Error) -> String {
    let mut message = e.message().trim_end_matches('.').to_string();
    // The parser says "duplicate key" and points at it: name the key, so that the reader
    // need not count lines to find which.
    if message == "duplicate key"
        && let Some(key) = e.span().and_then(|s| text.get(s)).map(str::trim)
        && !key.is_empty()
        && key.len() <= 100
        && !key.contains('\n')
    {
        message = format!("duplicate key `{key}`: a key may be set once in a table");
    }
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("{message} (line {line})")
        }
        None => message,
    }
}

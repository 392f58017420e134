//! Targets: where a load's rows go (DESIGN §2, targets).
//!
//! A load is delivered in three steps so that it happens exactly once across crashes:
//! [`Target::prepare`] fixes where the load goes before anything is written (the run records
//! that as a pending load), [`Target::deliver`] writes the spooled rows, and after a crash
//! [`Target::recover`] tells whether a pending load's delivery completed. Targets know nothing
//! of sources, ledgers or watermarks.

pub mod config;
pub mod file;
pub mod http;
pub mod parquet;
pub mod postgres;
pub mod s3;
pub mod stdout;
pub mod writer;

pub use config::{OutputFormat, TargetContext};

use crate::aws::location::S3Location;
use crate::config::Connection;
use crate::config::kind::{Family, KindTable};
use crate::config::validate::Problems;
use crate::keytemplate::KeyValues;
use crate::probe::Report;
use crate::spool::SpoolSlice;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What a kind of target is, beyond the [`Target`] it opens: its keys and their checks, what
/// the spool holds for it, and its `check` probe. Implemented by each kind's spec.
#[async_trait]
pub trait TargetKind: Sized {
    /// Every key the kind reads (`type` aside), so that a key of another kind is named so.
    fn keys() -> Vec<&'static str>;

    /// Reads the kind's table and checks it, reporting every problem; pure.
    fn validate(table: KindTable<'_>, cx: &TargetContext<'_>, p: &mut Problems<'_>) -> Option<Self>;

    /// What the spool's files hold for this target.
    fn output(&self) -> OutputFormat {
        OutputFormat::Jsonl
    }

    /// What values it cannot store.
    fn value_rules(&self) -> ValueRules {
        ValueRules::default()
    }

    /// The bucket it writes into, for policies and the external-ID rules.
    fn location(&self) -> Option<&S3Location> {
        None
    }

    /// The target that delivers a connection's loads.
    async fn open(&self, connection: &Connection) -> Box<dyn Target>;

    /// `check`'s probe: whether it accepts writes, as the `target` step.
    async fn check(&self, connection: &Connection, report: &mut Report);
}

/// Lists the kinds of target: `"type" => Variant(module::Spec)`. Makes [`TargetSpec`], with one
/// variant per kind, and what dispatches to the kinds.
macro_rules! registry {
    ($($name:literal => $variant:ident($spec:ty)),+ $(,)?) => {
        /// `[target]`, checked: one variant per kind.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum TargetSpec {
            $($variant($spec)),+
        }

        impl TargetSpec {
            /// The kinds, as `type` names them, with their keys.
            pub fn family() -> Family {
                Family {
                    table: "target",
                    kinds: vec![$(($name, <$spec as TargetKind>::keys())),+],
                }
            }

            /// Checks the table of the kind `kind`; `None` inside when it has problems, and
            /// `None` outside for a kind there is not.
            fn validate_kind(
                kind: &str,
                table: toml::Table,
                family: &Family,
                cx: &TargetContext<'_>,
                p: &mut Problems<'_>,
            ) -> Option<Option<TargetSpec>> {
                match kind {
                    $($name => Some(<$spec as TargetKind>::validate(KindTable::new(table, family, $name), cx, p).map(TargetSpec::$variant)),)+
                    _ => None,
                }
            }

            /// The kind, as `type` names it.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(TargetSpec::$variant(_) => $name),+
                }
            }

            /// What the spool's files hold for this target.
            pub fn output(&self) -> OutputFormat {
                match self {
                    $(TargetSpec::$variant(s) => s.output()),+
                }
            }

            /// What values it cannot store.
            pub fn value_rules(&self) -> ValueRules {
                match self {
                    $(TargetSpec::$variant(s) => s.value_rules()),+
                }
            }

            /// The bucket it writes into, if it writes into one.
            pub fn location(&self) -> Option<&S3Location> {
                match self {
                    $(TargetSpec::$variant(s) => s.location()),+
                }
            }

            /// The target that delivers a connection's loads.
            pub async fn open(&self, connection: &Connection) -> Box<dyn Target> {
                match self {
                    $(TargetSpec::$variant(s) => s.open(connection).await),+
                }
            }

            /// `check`'s probe of the target.
            pub async fn check(&self, connection: &Connection, report: &mut Report) {
                match self {
                    $(TargetSpec::$variant(s) => s.check(connection, report).await),+
                }
            }
        }
    };
}

registry! {
    "file" => File(file::FileTargetSpec),
    "stdout" => Stdout(stdout::StdoutSpec),
    "s3" => S3(s3::S3TargetSpec),
    "http" => Http(http::HttpTargetSpec),
    "postgres" => Postgres(postgres::PostgresTargetSpec),
}

impl TargetSpec {
    /// Checks `[target]` as written: its `type` picks the kind, which reads the rest.
    pub fn validate(
        mut table: toml::Table,
        cx: &TargetContext<'_>,
        p: &mut Problems<'_>,
    ) -> Option<TargetSpec> {
        let family = TargetSpec::family();
        let kind = match table.remove("type") {
            Some(toml::Value::String(kind)) => kind,
            Some(_) => {
                p.add("target.type", format!("must be a string: {}", family.listed()));
                return None;
            }
            None => {
                p.add("target.type", format!("missing; use {}", family.listed()));
                return None;
            }
        };
        match TargetSpec::validate_kind(&kind, table, &family, cx, p) {
            Some(spec) => spec,
            None => {
                p.add(
                    "target.type",
                    format!("{kind:?} is not a target type; use {}", family.listed()),
                );
                None
            }
        }
    }
}

/// What a load is, for naming its output.
#[derive(Debug, Clone)]
pub struct LoadInfo<'a> {
    /// What the key template is expanded with.
    pub key: KeyValues<'a>,
    pub run_id: &'a str,
}

/// One object's rows in a load: its spool file and where the rows came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadPart {
    /// Where the checked rows are spooled, one JSON object per line.
    pub spool: SpoolSlice,
    pub key: String,
    pub version: String,
    pub last_modified: DateTime<Utc>,
}

/// The spooled rows of a load's parts, in order.
pub fn spools(parts: &[LoadPart]) -> Vec<SpoolSlice> {
    parts.iter().map(|p| p.spool.clone()).collect()
}

/// Reads a spool file a line (one checked row as JSON) at a time, for targets that send rows
/// one by one rather than copying the file.
pub struct SpoolLines {
    path: PathBuf,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::io::Take<tokio::fs::File>>>,
}

impl SpoolLines {
    pub async fn open(slice: &SpoolSlice) -> Result<SpoolLines, TargetError> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncSeekExt};
        let io_error = |source| TargetError::Io {
            path: slice.path.clone(),
            source,
        };
        let mut file = tokio::fs::File::open(&slice.path).await.map_err(io_error)?;
        file.seek(std::io::SeekFrom::Start(slice.start))
            .await
            .map_err(io_error)?;
        Ok(SpoolLines {
            path: slice.path.clone(),
            lines: tokio::io::BufReader::new(file.take(slice.len)).lines(),
        })
    }

    /// The next row's JSON text, or `None` at the end.
    pub async fn next(&mut self) -> Result<Option<String>, TargetError> {
        self.lines.next_line().await.map_err(|source| TargetError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

/// A part of a load that the target refused for what it holds (PostgreSQL's data exceptions,
/// say): nothing of it was written, and importing it again would fail the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The part's index in the load.
    pub part: usize,
    pub reason: String,
}

/// Where a prepared load goes; stored with the pending load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Where the rows go, as shown to the user (an output key, `stdout`).
    pub output: String,
    /// The target's own details, needed to deliver and to recover.
    pub detail: serde_json::Value,
}

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// Writing a load failed after part of its spool was given back (a consuming reader):
    /// this attempt cannot be repeated, and the load's objects are imported again by the
    /// next run.
    #[error(
        "writing {path} failed after the load's rows left the spool: {source}; the next run imports its objects again"
    )]
    SpoolConsumed {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {path} failed: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no free output key for {key}: {tried} names with suffixes are taken")]
    NoFreeKey { key: String, tried: u32 },
    #[error("the output key cannot be built: {0}")]
    Key(#[from] crate::keytemplate::KeyTemplateError),
    #[error("s3://{bucket}/{key}: {}{error}", part.map(|n| format!("part {n}: ")).unwrap_or_default())]
    S3 {
        bucket: String,
        key: String,
        /// The part of a multipart upload that failed.
        part: Option<i32>,
        #[source]
        error: Box<crate::aws::AwsError>,
    },
    /// The service answered, but not as S3 does.
    #[error("s3://{bucket}/{key}: {what}")]
    S3Answer {
        bucket: String,
        key: String,
        what: &'static str,
    },
    #[error("{url}: {fault}")]
    Http {
        url: String,
        // Shown by the message itself, so not a `source`: a cause chain would repeat it.
        fault: Box<http::HttpFault>,
    },
    #[error("postgres table {table}: {fault}")]
    Postgres {
        table: String,
        fault: Box<postgres::PostgresFault>,
    },
    /// The load's output name holds other content than the load (another load was published
    /// there): nothing was replaced.
    #[error(
        "{output} already holds {found} bytes that are not this load's {ours}: another load was published under the same name; nothing was replaced, and this load's objects are imported again under a new name"
    )]
    OutputConflict { output: String, ours: u64, found: u64 },
    #[error("the pending delivery record is unreadable: {0}")]
    Record(String),
    #[error("delivery task failed: {0}")]
    Task(String),
}

impl TargetError {
    /// Whether delivering the same load again at once may succeed. An HTTP refusal is final
    /// here: the `http` target already retried what was worth retrying.
    pub fn worth_retrying(&self) -> bool {
        match self {
            TargetError::Io { .. } | TargetError::Task(_) => true,
            // A refusal (403, a missing bucket) stays a refusal: only throttling, 5xx and
            // the network are worth another attempt.
            TargetError::S3 { error, .. } => error.is_transient(),
            _ => false,
        }
    }
}

/// Somewhere rows are delivered.
#[async_trait]
pub trait Target: Send + Sync {
    /// Fixes where a load goes, before anything is written. Never picks an output that exists.
    async fn prepare(&self, load: &LoadInfo<'_>) -> Result<Delivery, TargetError>;

    /// Writes the rows of the spooled objects, in order, as one load. Returns the parts the
    /// target refused for their data (nothing of such a part was written; the others were),
    /// so that one object the target cannot store never blocks the others of its load.
    ///
    /// Publishing never replaces: when the output already exists (the same load delivered by
    /// a daemon that took this one's lease over, while this one was paused), identical
    /// content counts as delivered, and other content is [`TargetError::OutputConflict`].
    async fn deliver(&self, delivery: &Delivery, parts: &[LoadPart]) -> Result<Vec<Refused>, TargetError>;

    /// After a crash: whether a prepared load was delivered completely. Removes any partial
    /// output, so that a load found undelivered can simply be imported again.
    async fn recover(&self, delivery: &Delivery) -> Result<bool, TargetError>;
}

/// What values a kind of target cannot store, checked on every row before it is spooled, so
/// that such a row is quarantined like any bad row instead of failing its whole load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ValueRules {
    /// PostgreSQL stores no NUL character in `text` or `jsonb` (SQLSTATE 22021, 22P05).
    pub no_nul: bool,
}

impl ValueRules {
    /// The rules of a connection's target (pure).
    pub fn for_target(spec: &TargetSpec) -> ValueRules {
        spec.value_rules()
    }

    /// The first value of a checked row (its JSON text) that the target cannot store.
    pub fn refusal(&self, json: &[u8]) -> Option<crate::formats::Refusal> {
        if !self.no_nul || !has_nul_escape(json) {
            return None;
        }
        // Rare: the row is read again to name the field.
        let row: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(json).ok()?;
        let field = row
            .iter()
            .find(|(_, v)| holds_nul(v))
            .map(|(k, _)| k.clone())
            .unwrap_or_default();
        Some(crate::formats::Refusal {
            field,
            reason: "holds a NUL character (\\u0000), which PostgreSQL cannot store in text or jsonb; remove it at the source, or use another target".to_string(),
        })
    }
}

/// Whether JSON text holds the escape `\u0000` (a backslash that is itself escaped does not
/// start one). Valid JSON text holds no raw NUL byte.
fn has_nul_escape(json: &[u8]) -> bool {
    let mut i = 0;
    while let Some(at) = memchr::memchr(b'\\', &json[i..]) {
        let at = i + at;
        match json.get(at + 1) {
            Some(b'u') => {
                if json.get(at + 2..at + 6) == Some(b"0000") {
                    return true;
                }
                i = at + 6;
            }
            Some(_) => i = at + 2,
            None => return false,
        }
        if i >= json.len() {
            return false;
        }
    }
    false
}

fn holds_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

/// Builds the target a connection delivers to.
pub async fn for_connection(connection: &Connection) -> Box<dyn Target> {
    connection.target.open(connection).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_escapes() {
        let cases: &[(&[u8], bool)] = &[
            (br#"{"a":"x"}"#, false),
            (br#"{"a":"x\u0000y"}"#, true),
            (br#"{"a":"x\\u0000y"}"#, false),
            (br#"{"a":"x\\\u0000y"}"#, true),
            (br#"{"a":"\u00001"}"#, true),
            (br#"{"a":"\u0001\n"}"#, false),
            (br#"{"a":"\""}"#, false),
            (br#"{"a":{"b":["\u0000"]}}"#, true),
        ];
        for (json, want) in cases {
            assert_eq!(has_nul_escape(json), *want, "{}", String::from_utf8_lossy(json));
        }
        let rules = ValueRules { no_nul: true };
        let refusal = rules
            .refusal(br#"{"id":1,"doc":{"b":["\u0000"]},"_source_line":2}"#)
            .unwrap();
        assert_eq!(refusal.field, "doc");
        assert!(ValueRules::default().refusal(br#"{"a":"\u0000"}"#).is_none());
    }
}

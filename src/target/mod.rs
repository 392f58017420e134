//! Targets: where a load's rows go (DESIGN §2, targets).
//!
//! A load is delivered in three steps so that it happens exactly once across crashes:
//! [`Target::prepare`] fixes where the load goes before anything is written (the run records
//! that as a pending load), [`Target::deliver`] writes the spooled rows, and after a crash
//! [`Target::recover`] tells whether a pending load's delivery completed. Targets know nothing
//! of sources, ledgers or watermarks.

pub mod file;
pub mod http;
pub mod postgres;
pub mod s3;
pub mod stdout;
pub mod writer;

use crate::config::{Connection, TargetSpec};
use crate::keytemplate::KeyValues;
use crate::spool::SpoolSlice;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

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
    #[error("s3://{bucket}/{key}: {message}")]
    S3 {
        bucket: String,
        key: String,
        message: String,
    },
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("postgres table {table}: {message}")]
    Postgres { table: String, message: String },
    #[error("the pending delivery record is unreadable: {0}")]
    Record(String),
    #[error("delivery task failed: {0}")]
    Task(String),
}

impl TargetError {
    /// Whether delivering the same load again at once may succeed. An HTTP refusal is final
    /// here: the `http` target already retried what was worth retrying.
    pub fn worth_retrying(&self) -> bool {
        matches!(
            self,
            TargetError::Io { .. } | TargetError::S3 { .. } | TargetError::Task(_)
        )
    }
}

/// Somewhere rows are delivered.
#[async_trait]
pub trait Target: Send + Sync {
    /// Fixes where a load goes, before anything is written. Never picks an output that exists.
    async fn prepare(&self, load: &LoadInfo<'_>) -> Result<Delivery, TargetError>;

    /// Writes the rows of the spooled objects, in order, as one load.
    async fn deliver(&self, delivery: &Delivery, parts: &[LoadPart]) -> Result<(), TargetError>;

    /// After a crash: whether a prepared load was delivered completely. Removes any partial
    /// output, so that a load found undelivered can simply be imported again.
    async fn recover(&self, delivery: &Delivery) -> Result<bool, TargetError>;
}

/// Builds the target a connection delivers to.
pub async fn for_connection(connection: &Connection) -> Box<dyn Target> {
    let fields: Vec<String> = connection
        .template
        .fields
        .iter()
        .map(|f| f.name.clone())
        .collect();
    match &connection.target {
        TargetSpec::File(spec) => Box::new(file::FileTarget::new(spec.clone(), fields)),
        TargetSpec::S3(spec) => Box::new(s3::S3Target::new(&connection.name, spec.clone(), fields).await),
        TargetSpec::Http(spec) => Box::new(http::HttpTarget::new(connection, spec.clone())),
        TargetSpec::Postgres(spec) => Box::new(postgres::PostgresTarget::new(
            spec.clone(),
            connection.template.fields.clone(),
        )),
        TargetSpec::Stdout => Box::new(stdout::StdoutTarget),
    }
}

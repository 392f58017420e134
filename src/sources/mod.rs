//! Sources: where objects are listed and read from (an S3 bucket, or a local folder standing
//! in for one).
//!
//! A source knows how to list every object under its folder and how to open one listed
//! version as a byte stream. It knows nothing of windows, ledgers or formats: which objects are
//! imported is [`crate::select`]'s business, what their bytes mean is [`crate::formats`]'s.

pub mod dir;
pub mod s3;
pub mod verify;

use crate::config::{Connection, SourceSpec};
use crate::select::ObjectMeta;
use async_trait::async_trait;
use tokio::io::AsyncRead;

/// One object's (still compressed) bytes, as the source best gives them. Both kinds are
/// [`verify::Verified`]: the read that reaches the end fails when the bytes are not the ones
/// listed.
pub enum ObjectReader {
    /// A network stream, read on the runtime.
    Stream(Box<dyn AsyncRead + Send + Unpin>),
    /// A local file, read directly by the thread that parses it: going through the runtime
    /// for every read costs two thread hand-offs, which for thousands of small files cost
    /// more than reading them.
    File(verify::Verified<std::fs::File>),
}

impl ObjectReader {
    /// A blocking reader, for the parsing thread. Call it on the runtime (a stream is bridged
    /// through the current runtime's handle).
    pub fn into_blocking(self) -> Box<dyn std::io::Read + Send> {
        match self {
            ObjectReader::Stream(stream) => Box::new(tokio_util::io::SyncIoBridge::new(stream)),
            ObjectReader::File(file) => Box::new(file),
        }
    }

    /// An asynchronous reader.
    pub fn into_async(self) -> Box<dyn AsyncRead + Send + Unpin> {
        match self {
            ObjectReader::Stream(stream) => stream,
            // Only `check` reads asynchronously, and only the first bytes: nothing to verify.
            ObjectReader::File(file) => Box::new(tokio::fs::File::from_std(file.into_inner())),
        }
    }
}

/// Something objects are imported from.
#[async_trait]
pub trait Source: Send + Sync {
    /// Lists every object under the folder, every page, handing each to `visit` as it arrives.
    /// Returns how many were listed. Keeps none of them.
    async fn list(&self, visit: &mut (dyn FnMut(ObjectMeta) + Send)) -> Result<u64, SourceError>;

    /// [`Source::list`], told which versions the ledger already holds: a source whose
    /// versions are costly to compute (a `dir` source hashes file contents) skips the work
    /// for objects whose [`ObjectMeta::stamp`] it has seen. Others just list.
    async fn list_known(
        &self,
        known: &(dyn Known + Sync),
        visit: &mut (dyn FnMut(ObjectMeta) + Send),
    ) -> Result<u64, SourceError> {
        let _ = known;
        self.list(visit).await
    }

    /// Opens one listed version. Fails with [`SourceError::Changed`] when the object is no
    /// longer that version.
    async fn open(&self, object: &ObjectMeta) -> Result<ObjectReader, SourceError>;

    /// For a source whose opening is blocking file-system work (`dir`): [`Source::open`] as
    /// a function to run on the thread that will read the object, so that opening and
    /// parsing take one trip to the blocking pool instead of two — for thousands of small
    /// files, the trips cost more than the files. `None` (the default): use `open`.
    fn opener(&self, object: &ObjectMeta) -> Option<Opener> {
        let _ = object;
        None
    }

    /// Where the source reads from, for messages: `s3://bucket/prefix` or a folder.
    fn location(&self) -> String;
}

/// Opens one object on the calling (blocking) thread as a blocking reader; see
/// [`Source::opener`].
pub type Opener = Box<dyn FnOnce() -> Result<Box<dyn std::io::Read + Send>, SourceError> + Send>;

/// The versions a connection's ledger holds, by key and stamp.
#[async_trait]
pub trait Known: Send + Sync {
    /// For each (key, stamp), the version recorded with that stamp, if any.
    async fn versions(&self, objects: &[(&str, &str)]) -> Vec<Option<String>>;
}

/// Knows nothing: every version is computed.
pub struct NothingKnown;

#[async_trait]
impl Known for NothingKnown {
    async fn versions(&self, objects: &[(&str, &str)]) -> Vec<Option<String>> {
        vec![None; objects.len()]
    }
}

/// Why listing or reading failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("listing {location} failed: {cause}")]
    List { location: String, cause: Cause },
    #[error("reading {location}{key} failed: {cause}")]
    Read {
        location: String,
        key: String,
        cause: Cause,
    },
    #[error("{location}{key} changed since it was listed; the next run imports the new version")]
    Changed { location: String, key: String },
}

/// What a failed source request ran into.
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    /// An AWS request failed: its status and error code decide what is worth retrying.
    /// (Boxed: it is large, and errors travel in every `Result` of a source.)
    #[error(transparent)]
    Aws(Box<crate::aws::AwsError>),
    /// Anything else (the file system, a key that cannot be read), described.
    #[error("{message}")]
    Other {
        message: String,
        /// Whether trying again soon may help (a body cut short, say).
        transient: bool,
    },
}

impl From<crate::aws::AwsError> for Cause {
    fn from(e: crate::aws::AwsError) -> Cause {
        Cause::Aws(Box::new(e))
    }
}

impl Cause {
    /// A described cause that trying again will not mend.
    pub fn lasting(message: impl Into<String>) -> Cause {
        Cause::Other {
            message: message.into(),
            transient: false,
        }
    }

    fn is_transient(&self) -> bool {
        match self {
            Cause::Aws(e) => e.is_transient(),
            Cause::Other { transient, .. } => *transient,
        }
    }
}

impl SourceError {
    /// Whether trying the same request again soon may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::List { cause, .. } | SourceError::Read { cause, .. } => cause.is_transient(),
            SourceError::Changed { .. } => false,
        }
    }
}

/// Builds the source a connection reads from.
pub async fn for_connection(connection: &Connection) -> Box<dyn Source> {
    match &connection.source {
        SourceSpec::S3(spec) => Box::new(s3::S3Source::new(&connection.name, spec).await),
        SourceSpec::Dir(spec) => Box::new(dir::DirSource::new(spec.path.clone(), spec.follow_symlinks)),
    }
}

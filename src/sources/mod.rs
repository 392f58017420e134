//! Sources: where objects are listed and read from (an S3 bucket, or a local folder standing
//! in for one).
//!
//! A source knows how to list every object under its folder and how to open one listed
//! version as a byte stream. It knows nothing of windows, ledgers or formats: which objects are
//! imported is [`crate::select`]'s business, what their bytes mean is [`crate::formats`]'s.
//!
//! Each kind lives in its own folder: its `Source` and, in `config.rs`, its keys, their
//! checks and its `check` probe ([`SourceKind`]). [`registry!`] below lists the kinds: a new
//! kind is a folder and one line there.

pub mod dir;
pub mod s3;
pub mod verify;

use crate::aws::location::S3Location;
use crate::config::Connection;
use crate::config::kind::{Family, KindTable};
use crate::config::validate::Problems;
use crate::probe::Report;
use crate::select::ObjectMeta;
use async_trait::async_trait;
use serde::Deserialize;
use std::path::Path;
use tokio::io::AsyncRead;

/// What a source's keys are checked against.
pub struct SourceContext<'a> {
    /// The configuration folder, which relative paths are resolved against.
    pub dir: &'a Path,
}

/// What a kind of source is, beyond the [`Source`] it opens: its keys and their checks, and
/// its part of `check`. Implemented by each kind's spec.
#[async_trait]
pub trait SourceKind: Sized {
    /// Every key the kind reads (`type`, `include` and `exclude` aside).
    fn keys() -> Vec<&'static str>;

    /// Reads the kind's table and checks it, reporting every problem; pure.
    fn validate(table: KindTable<'_>, cx: &SourceContext<'_>, p: &mut Problems<'_>) -> Option<Self>;

    /// The key prefix the include and exclude globs are matched below.
    fn prefix(&self) -> &str {
        ""
    }

    /// The bucket it reads, for policies and the external-ID rules.
    fn location(&self) -> Option<&S3Location> {
        None
    }

    /// A key the listing must show, that `check` reports on and that is never imported.
    fn must_list(&self) -> Option<String> {
        None
    }

    /// The source that lists and reads a connection's objects.
    async fn open(&self, connection: &Connection) -> Box<dyn Source>;

    /// `check`'s steps before listing (credentials, role, bucket): whether listing may work.
    async fn check_access(&self, _connection: &Connection, _report: &mut Report) -> bool {
        true
    }
}

/// The keys every kind of source reads: which objects of the folder are imported.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFilters {
    pub include: Option<Vec<String>>,
    pub exclude: Option<Vec<String>>,
}

/// Lists the kinds of source: `"type" => Variant(module::Spec)`. Makes [`SourceSpec`], with
/// one variant per kind, and what dispatches to the kinds.
macro_rules! registry {
    ($($name:literal => $variant:ident($spec:ty)),+ $(,)?) => {
        /// `[source]`, checked: one variant per kind.
        // One per connection, made once when the configuration is read: the size of the
        // largest kind costs nothing worth a box.
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum SourceSpec {
            $($variant($spec)),+
        }

        impl SourceSpec {
            /// The kinds, as `type` names them, with their keys.
            pub fn family() -> Family {
                Family {
                    table: "source",
                    kinds: vec![$(($name, [<$spec as SourceKind>::keys(), crate::config::kind::keys_of::<RawFilters>().to_vec()].concat())),+],
                }
            }

            fn validate_kind(
                kind: &str,
                table: toml::Table,
                family: &Family,
                cx: &SourceContext<'_>,
                p: &mut Problems<'_>,
            ) -> Option<Option<SourceSpec>> {
                match kind {
                    $($name => Some(<$spec as SourceKind>::validate(KindTable::new(table, family, $name), cx, p).map(SourceSpec::$variant)),)+
                    _ => None,
                }
            }

            /// The kind, as `type` names it.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(SourceSpec::$variant(_) => $name),+
                }
            }

            /// The key prefix the include and exclude globs are matched below.
            pub fn prefix(&self) -> &str {
                match self {
                    $(SourceSpec::$variant(s) => s.prefix()),+
                }
            }

            /// The bucket it reads, if it reads one.
            pub fn location(&self) -> Option<&S3Location> {
                match self {
                    $(SourceSpec::$variant(s) => s.location()),+
                }
            }

            /// A key the listing must show, that `check` reports on.
            pub fn must_list(&self) -> Option<String> {
                match self {
                    $(SourceSpec::$variant(s) => s.must_list()),+
                }
            }

            /// The source that lists and reads a connection's objects.
            pub async fn open(&self, connection: &Connection) -> Box<dyn Source> {
                match self {
                    $(SourceSpec::$variant(s) => s.open(connection).await),+
                }
            }

            /// `check`'s steps before listing: whether listing may work.
            pub async fn check_access(&self, connection: &Connection, report: &mut Report) -> bool {
                match self {
                    $(SourceSpec::$variant(s) => s.check_access(connection, report).await),+
                }
            }
        }
    };
}

registry! {
    "s3" => S3(s3::S3SourceSpec),
    "dir" => Dir(dir::DirSpec),
}

impl SourceSpec {
    /// The kind a `[source]` without `type` is.
    pub const DEFAULT_KIND: &str = "s3";

    /// Checks `[source]` as written: its `type` (default `s3`) picks the kind, which reads its
    /// keys; `include` and `exclude` are every kind's. Returns the spec and the filters' raw
    /// globs (checked by the caller, which knows the prefix rules).
    pub fn validate(
        mut table: toml::Table,
        cx: &SourceContext<'_>,
        p: &mut Problems<'_>,
    ) -> (Option<SourceSpec>, Option<RawFilters>) {
        let family = SourceSpec::family();
        let kind = match table.remove("type") {
            None => SourceSpec::DEFAULT_KIND.to_string(),
            Some(toml::Value::String(kind)) => kind,
            Some(_) => {
                p.add("source.type", format!("must be a string: {}", family.listed()));
                return (None, None);
            }
        };
        let mut filters = toml::Table::new();
        for k in crate::config::kind::keys_of::<RawFilters>() {
            if let Some(v) = table.remove(*k) {
                filters.insert((*k).to_string(), v);
            }
        }
        let filters = KindTable::new(filters, &family, "").rest::<RawFilters>(p);
        match SourceSpec::validate_kind(&kind, table, &family, cx, p) {
            Some(spec) => (spec, filters),
            None => {
                p.add(
                    "source.type",
                    format!("{kind:?} is not a source type; use {}", family.listed()),
                );
                (None, filters)
            }
        }
    }
}

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

    /// The current version of one object, as a listing would show it; `None` when there is
    /// no such object (deleted since an event named it). Event mode asks this of the keys
    /// its events name. The default lists everything and picks the key out: correct for any
    /// source, meant to be replaced by a single request where the source has one (S3's HEAD).
    async fn stat(&self, key: &str) -> Result<Option<ObjectMeta>, SourceError> {
        let mut found = None;
        self.list(&mut |meta| {
            if meta.key == key {
                found = Some(meta);
            }
        })
        .await?;
        Ok(found)
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
    connection.source.open(connection).await
}

//! The `dir` source's keys: the folder to read and whether symbolic links are followed.

use super::super::{Source, SourceContext, SourceKind};
use crate::config::Connection;
use crate::config::kind::{KindTable, keys_of};
use crate::config::validate::{Problems, resolve};
use serde::Deserialize;
use std::path::PathBuf;

/// `[source]` of `type = "dir"`, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDirSource {
    pub path: Option<String>,
    pub follow_symlinks: Option<bool>,
}

/// A local folder standing in for a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirSpec {
    /// Resolved against the configuration folder.
    pub path: PathBuf,
    /// Whether symbolic links are followed (only to files inside `path`); off by default.
    pub follow_symlinks: bool,
}

#[async_trait::async_trait]
impl SourceKind for DirSpec {
    fn keys() -> Vec<&'static str> {
        keys_of::<RawDirSource>().to_vec()
    }

    fn validate(table: KindTable<'_>, cx: &SourceContext<'_>, p: &mut Problems<'_>) -> Option<Self> {
        let before = p.count();
        let s: RawDirSource = table.rest(p)?;
        match s.path {
            Some(path) if !path.is_empty() => (p.count() == before).then(|| DirSpec {
                path: resolve(cx.dir, &path),
                follow_symlinks: s.follow_symlinks.unwrap_or(false),
            }),
            _ => {
                p.add(
                    "source.path",
                    "missing; a dir source needs the folder to read, e.g. path = \"inbox\"",
                );
                None
            }
        }
    }

    async fn open(&self, _connection: &Connection) -> Box<dyn Source> {
        Box::new(super::DirSource::new(self.path.clone(), self.follow_symlinks))
    }
}

//! A local folder as a source: the quick start, drop folders and tests.
//!
//! Keys are paths relative to the folder with `/` separators; LastModified is the file's
//! mtime; the version (the ETag's stand-in) is a BLAKE3 hash of the content, so a file
//! rewritten with the same bytes is not imported again. Files and folders whose names start
//! with `.` are not listed: writers use such names for files still being written.

use super::verify::{Digest, Verified};
use super::{ObjectReader, Source, SourceError};
use crate::select::ObjectMeta;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::io::Read;
use std::path::{Path, PathBuf};

/// A local folder standing in for a bucket.
pub struct DirSource {
    root: PathBuf,
}

impl DirSource {
    pub fn new(root: PathBuf) -> DirSource {
        DirSource { root }
    }

    fn error(&self, message: impl Into<String>) -> SourceError {
        SourceError::List {
            location: self.location(),
            message: message.into(),
        }
    }
}

/// The BLAKE3 hash of a file's content, as 32 hex digits. `buf` is the read buffer, shared
/// by every file of a listing.
fn content_version(path: &Path, buf: &mut [u8]) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    loop {
        let n = file.read(buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().to_hex()[..32].to_string())
}

fn mtime(meta: &std::fs::Metadata) -> std::io::Result<DateTime<Utc>> {
    Ok(DateTime::<Utc>::from(meta.modified()?))
}

#[async_trait]
impl Source for DirSource {
    async fn list(&self, visit: &mut (dyn FnMut(ObjectMeta) + Send)) -> Result<u64, SourceError> {
        if !self.root.is_dir() {
            return Err(self.error("the folder does not exist; create it or fix `path` in [source]"));
        }
        // The walk and the hashing block, so they run on a blocking thread and hand objects
        // over through a small channel: memory stays bounded however many files there are.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<ObjectMeta, String>>(64);
        let root = self.root.clone();
        let walker = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; 256 * 1024];
            // Symbolic links are followed, so files can be linked into a drop folder; walkdir
            // reports a link loop as an error instead of walking it forever.
            let entries = walkdir::WalkDir::new(&root)
                .follow_links(true)
                .sort_by_file_name()
                .into_iter()
                .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
            for entry in entries {
                let item = entry.map_err(|e| e.to_string()).and_then(|e| {
                    if !e.file_type().is_file() {
                        return Ok(None);
                    }
                    let rel = e.path().strip_prefix(&root).unwrap_or(e.path());
                    let key = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy())
                        .collect::<Vec<_>>()
                        .join("/");
                    let describe = |err: std::io::Error| format!("{}: {err}", e.path().display());
                    let meta = e.metadata().map_err(|err| err.to_string())?;
                    Ok(Some(ObjectMeta {
                        key,
                        etag: content_version(e.path(), &mut buf).map_err(describe)?,
                        last_modified: mtime(&meta).map_err(describe)?,
                        size: meta.len(),
                    }))
                });
                let item = match item {
                    Ok(Some(m)) => Ok(m),
                    Ok(None) => continue,
                    Err(e) => Err(e),
                };
                if tx.blocking_send(item).is_err() {
                    return;
                }
            }
        });
        let mut count = 0;
        while let Some(item) = rx.recv().await {
            visit(item.map_err(|e| self.error(e))?);
            count += 1;
        }
        walker.await.map_err(|e| self.error(e.to_string()))?;
        Ok(count)
    }

    async fn open(&self, object: &ObjectMeta) -> Result<ObjectReader, SourceError> {
        let path = self.root.join(&object.key);
        let read_error = |e: std::io::Error| SourceError::Read {
            location: self.location(),
            key: object.key.clone(),
            message: e.to_string(),
            transient: false,
        };
        // Opening is file-system work: one trip to the blocking pool does all of it.
        let opened = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
            let file = std::fs::File::open(&path)?;
            let meta = file.metadata()?;
            Ok((file, meta.len(), mtime(&meta)?))
        })
        .await
        .map_err(|e| read_error(std::io::Error::other(e)))?;
        let (file, len, modified) = opened.map_err(read_error)?;
        // A changed size or mtime means another version than the one listed (and hashed).
        if len != object.size || modified != object.last_modified {
            return Err(SourceError::Changed {
                location: self.location(),
                key: object.key.clone(),
            });
        }
        // The version is the content's hash: a file rewritten while it is read, even with the
        // same size and mtime, fails at its end instead of being imported.
        let digest = Digest::Blake3(object.etag.clone());
        Ok(ObjectReader::File(Verified::new(file, object.size, digest)))
    }

    fn location(&self) -> String {
        let mut s = self.root.display().to_string();
        if !s.ends_with('/') {
            s.push('/');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_rewritten_while_read_fails_its_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        std::fs::write(&path, "{\"id\": 1}\n").unwrap();
        let source = DirSource::new(dir.path().to_path_buf());
        let mut listed = Vec::new();
        source.list(&mut |m| listed.push(m)).await.unwrap();
        let meta = listed.pop().unwrap();

        // The same bytes read as listed.
        let mut out = Vec::new();
        source
            .open(&meta)
            .await
            .unwrap()
            .into_blocking()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, b"{\"id\": 1}\n");

        // Rewritten with the same size and mtime: only the content tells.
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::fs::write(&path, "{\"id\": 2}\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let err = source
            .open(&meta)
            .await
            .unwrap()
            .into_blocking()
            .read_to_end(&mut Vec::new())
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert!(
            err.to_string().contains("BLAKE3 hash of the 10 bytes read"),
            "{err}"
        );
    }
}

//! A local folder as a source: the quick start, drop folders and tests.
//!
//! Keys are paths relative to the folder with `/` separators; LastModified is the file's
//! mtime; the version (the ETag's stand-in) is a BLAKE3 hash of the content, so a file
//! rewritten with the same bytes is not imported again. A file is hashed only when its stamp
//! (size, mtime, ctime, inode) is not in the ledger: a re-run reads no file it has seen. Files and folders whose names start
//! with `.` are not listed: writers use such names for files still being written.
//!
//! Nothing outside the folder is read (docs/design.md §4.8): symbolic links are not followed unless
//! `follow_symlinks = true`, and then only to files inside the folder; every file is opened
//! without following a final link, and the file actually opened is checked to lie inside the
//! folder, so a link swapped in after the listing reads nothing.

mod config;
pub use config::*;

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
    /// The folder's real path (links resolved), found once: resolving it for every file
    /// cost a system call per path component per file.
    real_root: std::sync::OnceLock<PathBuf>,
    follow_symlinks: bool,
}

impl DirSource {
    pub fn new(root: PathBuf, follow_symlinks: bool) -> DirSource {
        DirSource {
            root,
            real_root: std::sync::OnceLock::new(),
            follow_symlinks,
        }
    }

    fn error(&self, message: impl Into<String>) -> SourceError {
        SourceError::List {
            location: self.location(),
            cause: super::Cause::lasting(message),
        }
    }

    /// Opens one listed version, on whichever (blocking) thread calls the function: only a
    /// file inside the folder, and only the version listed.
    fn open_fn(
        &self,
        object: &ObjectMeta,
    ) -> impl FnOnce() -> Result<ObjectReader, SourceError> + Send + 'static {
        let (location, object) = (self.location(), object.clone());
        let path = self.root.join(&object.key);
        let follow = self.follow_symlinks;
        // The real root is found on the first call; a folder that cannot be resolved now is
        // tried again with the next file.
        let real_root = match self.real_root.get() {
            Some(real) => Ok(real.clone()),
            None => std::fs::canonicalize(&self.root).inspect(|real| {
                let _ = self.real_root.set(real.clone());
            }),
        };
        move || {
            let read_error = |e: std::io::Error| SourceError::Read {
                location: location.clone(),
                key: object.key.clone(),
                cause: super::Cause::lasting(e.to_string()),
            };
            let file = open_inside(&real_root.map_err(read_error)?, &path, follow).map_err(read_error)?;
            let meta = file.metadata().map_err(read_error)?;
            // A changed size or mtime means another version than the one listed (and hashed).
            if meta.len() != object.size || mtime(&meta).map_err(read_error)? != object.last_modified {
                return Err(SourceError::Changed {
                    location,
                    key: object.key,
                });
            }
            // The version is the content's hash: a file rewritten while it is read, even with
            // the same size and mtime, fails at its end instead of being imported.
            let digest = Digest::Blake3(object.etag);
            Ok(ObjectReader::File(Verified::new(file, object.size, digest)))
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

/// Opens `path` for reading only if it is a file inside `root`: without following a final
/// link (after resolving it first, and checking where it leads, when links are followed),
/// then checking the real path of the file actually opened, so that a link or folder swapped
/// in since the listing reads nothing outside.
fn open_inside(real_root: &Path, path: &Path, follow: bool) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let outside = || {
        std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            "leads outside the source folder (a symbolic link); it is not read",
        )
    };
    let target = if follow {
        std::fs::canonicalize(path)?
    } else {
        path.to_path_buf()
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&target)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                outside()
            } else {
                e
            }
        })?;
    // The path of the file as opened, every link resolved (Linux keeps it under /proc).
    let opened = std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&file)
    ))
    .or_else(|_| std::fs::canonicalize(&target))?;
    if !opened.starts_with(real_root) {
        return Err(outside());
    }
    Ok(file)
}

fn mtime(meta: &std::fs::Metadata) -> std::io::Result<DateTime<Utc>> {
    Ok(DateTime::<Utc>::from(meta.modified()?))
}

/// A file found by the walk, before its version is known.
struct Found {
    key: String,
    path: PathBuf,
    size: u64,
    last_modified: DateTime<Utc>,
    stamp: String,
}

impl Found {
    fn with_version(self, etag: String) -> ObjectMeta {
        ObjectMeta {
            key: self.key,
            etag,
            last_modified: self.last_modified,
            size: self.size,
            stamp: Some(self.stamp),
        }
    }
}

/// What identifies a file's content without reading it: its size, mtime, ctime and inode.
/// The ctime changes with every write and cannot be set back (`touch -d` sets only the
/// mtime), so a rewrite that keeps the size and the mtime still changes the stamp.
fn stamp(meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!(
        "{}:{}.{:09}:{}.{:09}:{}",
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec(),
        meta.ino()
    )
}

/// How many files the walk hands over at a time.
const WALK_BATCH: usize = 256;

/// How many new files are hashed together on a blocking thread.
const HASH_BATCH: usize = 256;

/// Hashes a batch of files on a blocking thread.
async fn hashed(batch: Vec<Found>) -> Result<Vec<ObjectMeta>, String> {
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; 256 * 1024];
        batch
            .into_iter()
            .map(|f| match content_version(&f.path, &mut buf) {
                Ok(etag) => Ok(f.with_version(etag)),
                Err(err) => Err(format!("{}: {err}", f.path.display())),
            })
            .collect()
    })
    .await
    .map_err(|e| e.to_string())?
}

#[async_trait]
impl Source for DirSource {
    async fn list(&self, visit: &mut (dyn FnMut(ObjectMeta) + Send)) -> Result<u64, SourceError> {
        self.list_known(&super::NothingKnown, visit).await
    }

    /// Walks the folder on a blocking thread, which hands files over through a small channel
    /// (memory stays bounded however many there are); a file whose stamp the ledger knows
    /// takes the version recorded with it, the others are hashed in batches off the runtime.
    async fn list_known(
        &self,
        known: &(dyn super::Known + Sync),
        visit: &mut (dyn FnMut(ObjectMeta) + Send),
    ) -> Result<u64, SourceError> {
        if !self.root.is_dir() {
            return Err(self.error("the folder does not exist; create it or fix `path` in [source]"));
        }
        // Files are handed over in batches: one hand-off per file cost more than the file.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<Found>, String>>(4);
        let (root, follow) = (self.root.clone(), self.follow_symlinks);
        let walker = tokio::task::spawn_blocking(move || {
            // Links are followed only when asked, and then only to what lies inside the folder
            // (its real path, links resolved); walkdir reports a link loop as an error instead
            // of walking it forever.
            let real_root = std::fs::canonicalize(&root).unwrap_or_else(|_| root.clone());
            let links_skipped = std::cell::Cell::new(0u64);
            // A link is taken only when followed and leading inside the folder; a folder
            // reached through one is not walked otherwise.
            let link_inside = |path: &Path| {
                let inside =
                    follow && std::fs::canonicalize(path).is_ok_and(|real| real.starts_with(&real_root));
                if !inside {
                    links_skipped.set(links_skipped.get() + 1);
                }
                inside
            };
            let entries = walkdir::WalkDir::new(&root)
                .follow_links(follow)
                .sort_by_file_name()
                .into_iter()
                .filter_entry(|e| {
                    e.depth() == 0
                        || (!e.file_name().to_string_lossy().starts_with('.')
                            && (!e.path_is_symlink() || link_inside(e.path())))
                });
            let mut batch = Vec::with_capacity(WALK_BATCH);
            for entry in entries {
                // A link that loops or leads nowhere is a skipped link, not a failed listing.
                if let Err(e) = &entry
                    && e.path()
                        .is_some_and(|p| p.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink()))
                {
                    links_skipped.set(links_skipped.get() + 1);
                    continue;
                }
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
                    Ok(Some(Found {
                        key,
                        path: e.path().to_path_buf(),
                        size: meta.len(),
                        last_modified: mtime(&meta).map_err(describe)?,
                        stamp: stamp(&meta),
                    }))
                });
                match item {
                    Ok(Some(found)) => batch.push(found),
                    Ok(None) => continue,
                    Err(e) => {
                        let _ = tx.blocking_send(Err(e));
                        return;
                    }
                }
                if batch.len() == WALK_BATCH
                    && tx
                        .blocking_send(Ok(std::mem::replace(&mut batch, Vec::with_capacity(WALK_BATCH))))
                        .is_err()
                {
                    return;
                }
            }
            if !batch.is_empty() && tx.blocking_send(Ok(batch)).is_err() {
                return;
            }
            if links_skipped.get() > 0 {
                tracing::warn!(
                    folder = %root.display(),
                    links = links_skipped.get(),
                    "symbolic links skipped: a dir source follows links only with follow_symlinks = true, and only to files inside its folder"
                );
            }
        });
        let (mut count, mut hashed_files) = (0, 0);
        let mut new = Vec::new();
        while let Some(batch) = rx.recv().await {
            let batch = batch.map_err(|e| self.error(e))?;
            let asked: Vec<(&str, &str)> = batch.iter().map(|f| (f.key.as_str(), f.stamp.as_str())).collect();
            let versions = known.versions(&asked).await;
            drop(asked);
            count += batch.len() as u64;
            // A short answer counts as unknown for the rest: they are hashed, never dropped.
            let versions = versions.into_iter().chain(std::iter::repeat(None));
            for (found, version) in batch.into_iter().zip(versions) {
                match version {
                    Some(etag) => visit(found.with_version(etag)),
                    None => {
                        hashed_files += 1;
                        new.push(found);
                    }
                }
            }
            if new.len() >= HASH_BATCH {
                hashed(std::mem::take(&mut new))
                    .await
                    .map_err(|e| self.error(e))?
                    .into_iter()
                    .for_each(&mut *visit);
            }
        }
        hashed(new)
            .await
            .map_err(|e| self.error(e))?
            .into_iter()
            .for_each(&mut *visit);
        walker.await.map_err(|e| self.error(e.to_string()))?;
        tracing::debug!(folder = %self.root.display(), files = count, hashed = hashed_files, "folder listed");
        Ok(count)
    }

    async fn open(&self, object: &ObjectMeta) -> Result<ObjectReader, SourceError> {
        let open = self.open_fn(object);
        // Opening is file-system work: one trip to the blocking pool does all of it.
        tokio::task::spawn_blocking(open)
            .await
            .map_err(|e| SourceError::Read {
                location: self.location(),
                key: object.key.clone(),
                cause: super::Cause::lasting(e.to_string()),
            })?
    }

    fn opener(&self, object: &ObjectMeta) -> Option<super::Opener> {
        let open = self.open_fn(object);
        Some(Box::new(move || open().map(ObjectReader::into_blocking)))
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
        let source = DirSource::new(dir.path().to_path_buf(), false);
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

#[cfg(test)]
mod link_tests {
    use super::*;
    use std::os::unix::fs::symlink;

    async fn keys(source: &DirSource) -> Vec<String> {
        let mut listed = Vec::new();
        source.list(&mut |m| listed.push(m.key)).await.unwrap();
        listed
    }

    #[tokio::test]
    async fn links_out_of_the_folder_are_never_read() {
        let top = tempfile::tempdir().unwrap();
        let inbox = top.path().join("inbox");
        std::fs::create_dir_all(inbox.join("sub")).unwrap();
        std::fs::write(top.path().join("secret.txt"), "root:$6$hash\n").unwrap();
        std::fs::write(inbox.join("a.csv"), "id\n1\n").unwrap();
        symlink(top.path().join("secret.txt"), inbox.join("secret.csv")).unwrap();
        symlink(inbox.join("a.csv"), inbox.join("inside.csv")).unwrap();
        symlink(top.path(), inbox.join("up")).unwrap();
        symlink(inbox.join("loop"), inbox.join("loop")).unwrap();

        // Not followed by default: only the plain file.
        let plain = DirSource::new(inbox.clone(), false);
        assert_eq!(keys(&plain).await, ["a.csv"]);
        // Followed when asked, but only to files inside the folder.
        let following = DirSource::new(inbox.clone(), true);
        assert_eq!(keys(&following).await, ["a.csv", "inside.csv"]);

        // A link swapped in after the listing is not read, whatever the setting.
        let mut listed = Vec::new();
        plain.list(&mut |m| listed.push(m)).await.unwrap();
        let meta = listed.remove(0);
        std::fs::remove_file(inbox.join("a.csv")).unwrap();
        symlink(top.path().join("secret.txt"), inbox.join("a.csv")).unwrap();
        for source in [&plain, &following] {
            let err = source.open(&meta).await.err().expect("a link out is refused");
            assert!(
                err.to_string().contains("leads outside the source folder"),
                "{err}"
            );
        }
        // So is a folder swapped for a link out.
        std::fs::write(inbox.join("sub/b.csv"), "id\n2\n").unwrap();
        let mut listed = Vec::new();
        plain.list(&mut |m| listed.push(m)).await.unwrap();
        let b = listed.into_iter().find(|m| m.key == "sub/b.csv").unwrap();
        std::fs::create_dir_all(top.path().join("elsewhere")).unwrap();
        std::fs::write(top.path().join("elsewhere/b.csv"), "id\n2\n").unwrap();
        std::fs::remove_dir_all(inbox.join("sub")).unwrap();
        symlink(top.path().join("elsewhere"), inbox.join("sub")).unwrap();
        let err = plain.open(&b).await.err().expect("a folder link out is refused");
        assert!(
            err.to_string().contains("leads outside the source folder"),
            "{err}"
        );
    }
}

//! The `file` target: one file per load (JSON Lines, CSV or Parquet, written by [`writer`]) under a
//! local folder, named by the key template.
//!
//! A load is written to a hidden temporary file beside its final name, synced, and linked
//! into place, so the final name exists only once the whole load is on disk: that existence
//! is what [`FileTarget::recover`] checks. The link never replaces a file (it fails when the
//! name exists, where a rename would overwrite): a daemon woken from a pause after another
//! took its load over and published it finds the name taken, and compares — the same bytes
//! are the same load, delivered; other bytes are a conflict, reported, and nothing lost.

mod config;
pub use config::*;

use super::OutputFormat;
use super::{Delivery, LoadInfo, LoadPart, Refused, Target, TargetError, writer};
use crate::keytemplate::with_suffix;
use crate::spool::{SliceReader, SpoolSlice};
use crate::template::Template;
use async_trait::async_trait;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How many `-N` suffixes are tried before giving up on a free name.
const MAX_SUFFIX: u32 = 1000;

/// Writes loads as files under a folder.
pub struct FileTarget {
    spec: FileTargetSpec,
    /// The connection's template: the CSV header, the Parquet columns.
    template: Arc<Template>,
}

impl FileTarget {
    pub fn new(spec: FileTargetSpec, template: Arc<Template>) -> FileTarget {
        FileTarget { spec, template }
    }
}

/// The temporary name a load is written under before it is linked to `path`; each attempt
/// adds its own suffix ([`attempt_path`]).
fn temp_path(path: &Path, run_id: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{run_id}.tmp"))
}

/// The file one attempt writes: the recorded temporary name plus this process and a counter,
/// so that a paused daemon that wakes never writes into the file that the daemon that took
/// its load over is writing under the same recorded name.
fn attempt_path(temp: &Path) -> PathBuf {
    static ATTEMPT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = ATTEMPT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = temp.as_os_str().to_owned();
    name.push(format!(".{}-{n}", std::process::id()));
    PathBuf::from(name)
}

/// Removes the recorded temporary file and every attempt's (`temp.*`).
fn remove_attempts(temp: &Path) -> io::Result<()> {
    let (Some(dir), Some(base)) = (temp.parent(), temp.file_name()) else {
        return Ok(());
    };
    let base = base.to_string_lossy();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name == base
            || name
                .strip_prefix(base.as_ref())
                .is_some_and(|rest| rest.starts_with('.'))
        {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// How a written load met its final name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Published {
    /// Linked into place.
    Linked,
    /// The name held these very bytes already: the same load, published by another daemon.
    Identical,
    /// The name held other bytes (`found` of them; the load has `ours`).
    Conflict { ours: u64, found: u64 },
}

/// Gives `temp` the name `path` unless `path` exists, then compares. Removes `temp`.
fn publish(temp: &Path, path: &Path) -> io::Result<Published> {
    let published = match std::fs::hard_link(temp, path) {
        Ok(()) => Published::Linked,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => compare(temp, path)?,
        // A file system without hard links: a rename, which replaces, after a look (the
        // window between them is the only one left there).
        Err(_) if path.exists() => compare(temp, path)?,
        Err(_) => {
            std::fs::rename(temp, path)?;
            return Ok(Published::Linked);
        }
    };
    std::fs::remove_file(temp)?;
    Ok(published)
}

/// Whether two files hold the same bytes: sizes, then BLAKE3 digests.
fn compare(ours: &Path, theirs: &Path) -> io::Result<Published> {
    let (ours_len, found) = (std::fs::metadata(ours)?.len(), std::fs::metadata(theirs)?.len());
    let digest = |path: &Path| -> io::Result<blake3::Hash> {
        let mut hasher = blake3::Hasher::new();
        hasher.update_reader(File::open(path)?)?;
        Ok(hasher.finalize())
    };
    Ok(if ours_len == found && digest(ours)? == digest(theirs)? {
        Published::Identical
    } else {
        Published::Conflict {
            ours: ours_len,
            found,
        }
    })
}

fn detail_path(delivery: &Delivery, key: &str) -> Result<String, TargetError> {
    delivery
        .detail
        .get(key)
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| TargetError::Record(format!("no {key:?} in {}", delivery.detail)))
}

/// Writes a load to `temp`, then publishes it as `path` ([`publish`]). `slices` reads the spool: a consuming
/// reader gives the spool's space back as the load is written, so that the load and its
/// spool never take twice its size on a disk they share.
fn write_file(
    path: &Path,
    temp: &Path,
    spools: &[SpoolSlice],
    slices: &mut SliceReader,
    format: OutputFormat,
    template: &Template,
    mode: u32,
) -> io::Result<Published> {
    let dir = path.parent().unwrap_or(Path::new("."));
    crate::files::create_dir_all_mode(dir, crate::files::folder_mode(mode))?;
    // A load of one object is its spool file as it is (JSON Lines, or CSV with the header
    // the spool file starts with): when the spool is on the same file system, a second name
    // for it replaces copying every byte. The spool is never written again once spooled, and
    // removing it later leaves this name intact. Parquet is encoded from the spool.
    let linked = match spools {
        [spool] if !matches!(format, OutputFormat::Parquet(_)) => {
            spool.is_whole_file()? && std::fs::hard_link(&spool.path, temp).is_ok()
        }
        _ => false,
    };
    let out = if linked {
        // The spool file is private; the output takes the target's mode.
        crate::files::set_mode(temp, mode)?;
        File::open(temp)?
    } else {
        let mut out = io::BufWriter::with_capacity(256 * 1024, crate::files::create_with_mode(temp, mode)?);
        writer::write_load_with(slices, spools, format, template, &mut out)?;
        out.into_inner().map_err(|e| e.into_error())?
    };
    out.sync_all()?;
    drop(out);
    crate::fault::point("file-written");
    let published = publish(temp, path)?;
    // The link is durable only once the folder is synced.
    File::open(dir)?.sync_all()?;
    Ok(published)
}

#[async_trait]
impl Target for FileTarget {
    async fn prepare(&self, load: &LoadInfo<'_>) -> Result<Delivery, TargetError> {
        let key = self.spec.key.expand(&load.key)?;
        for n in 1..=MAX_SUFFIX {
            let candidate = with_suffix(&key, n);
            let path = self.spec.path.join(&candidate);
            if !path.exists() {
                return Ok(Delivery {
                    output: path.display().to_string(),
                    detail: serde_json::json!({
                        "key": candidate,
                        "path": path,
                        "temp": temp_path(&path, load.run_id),
                    }),
                });
            }
        }
        Err(TargetError::NoFreeKey {
            key,
            tried: MAX_SUFFIX,
        })
    }

    async fn deliver(&self, delivery: &Delivery, parts: &[LoadPart]) -> Result<Vec<Refused>, TargetError> {
        let spools = super::spools(parts);
        let path = PathBuf::from(detail_path(delivery, "path")?);
        let temp = attempt_path(Path::new(&detail_path(delivery, "temp")?));
        let (format, template, mode) = (self.spec.format, self.template.clone(), self.spec.file_mode);
        let result = tokio::task::spawn_blocking(move || {
            let mut slices = SliceReader::consuming();
            match write_file(&path, &temp, &spools, &mut slices, format, &template, mode) {
                Ok(Published::Linked) => Ok(()),
                Ok(Published::Identical) => {
                    tracing::info!(output = %path.display(), "the output already holds this very load (published by a daemon that took it over); nothing replaced");
                    Ok(())
                }
                Ok(Published::Conflict { ours, found }) => Err(TargetError::OutputConflict {
                    output: path.display().to_string(),
                    ours,
                    found,
                }),
                Err(source) => {
                    // Leave nothing half-written behind; the next try starts afresh.
                    let _ = std::fs::remove_file(&temp);
                    if slices.consumed() {
                        Err(TargetError::SpoolConsumed { path, source })
                    } else {
                        Err(TargetError::Io { path, source })
                    }
                }
            }
        })
        .await;
        result
            .map_err(|e| TargetError::Task(e.to_string()))?
            .map(|()| Vec::new())
    }

    async fn recover(&self, delivery: &Delivery) -> Result<bool, TargetError> {
        let path = PathBuf::from(detail_path(delivery, "path")?);
        let temp = PathBuf::from(detail_path(delivery, "temp")?);
        remove_attempts(&temp).map_err(|source| TargetError::Io { path: temp, source })?;
        Ok(path.exists())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishing_never_replaces_and_recognises_the_same_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("load.jsonl");
        let temp = temp_path(&path, "r1");
        let write = |body: &str| {
            let attempt = attempt_path(&temp);
            std::fs::write(&attempt, body).unwrap();
            attempt
        };
        let cases = [
            ("{\"id\":1}\n", Published::Linked),
            ("{\"id\":1}\n", Published::Identical),
            ("{\"id\":2}\n", Published::Conflict { ours: 9, found: 9 }),
            ("{\"id\":22}\n", Published::Conflict { ours: 10, found: 9 }),
        ];
        for (body, want) in cases {
            let attempt = write(body);
            assert_eq!(publish(&attempt, &path).unwrap(), want, "{body}");
            assert!(!attempt.exists(), "the attempt's file is removed");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"id\":1}\n");
        }
        // Recovery removes every attempt's file, and nothing else.
        let (a, b) = (write("x"), write("y"));
        std::fs::write(dir.path().join(".load.jsonl.r10.tmp"), "another run's").unwrap();
        remove_attempts(&temp).unwrap();
        assert!(!a.exists() && !b.exists());
        assert!(dir.path().join(".load.jsonl.r10.tmp").exists());
        assert!(path.exists());
    }
}

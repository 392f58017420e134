//! The `file` target: one file per load (JSON Lines, CSV or Parquet, written by [`writer`]) under a
//! local folder, named by the key template.
//!
//! A load is written to a hidden temporary file beside its final name, synced, and renamed
//! into place, so the final name exists only once the whole load is on disk: that existence
//! is what [`FileTarget::recover`] checks.

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

/// The temporary name a load is written under before it is renamed to `path`.
fn temp_path(path: &Path, run_id: &str) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{run_id}.tmp"))
}

fn detail_path(delivery: &Delivery, key: &str) -> Result<String, TargetError> {
    delivery
        .detail
        .get(key)
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .ok_or_else(|| TargetError::Record(format!("no {key:?} in {}", delivery.detail)))
}

/// Writes a load to `temp`, then renames it to `path`. `slices` reads the spool: a consuming
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
) -> io::Result<()> {
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
    std::fs::rename(temp, path)?;
    // The rename is durable only once the folder is synced.
    File::open(dir)?.sync_all()
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
        let temp = PathBuf::from(detail_path(delivery, "temp")?);
        let (format, template, mode) = (self.spec.format, self.template.clone(), self.spec.file_mode);
        let result = tokio::task::spawn_blocking(move || {
            let mut slices = SliceReader::consuming();
            write_file(&path, &temp, &spools, &mut slices, format, &template, mode).map_err(|source| {
                // Leave nothing half-written behind; the next try starts afresh.
                let _ = std::fs::remove_file(&temp);
                if slices.consumed() {
                    TargetError::SpoolConsumed { path, source }
                } else {
                    TargetError::Io { path, source }
                }
            })
        })
        .await;
        result
            .map_err(|e| TargetError::Task(e.to_string()))?
            .map(|()| Vec::new())
    }

    async fn recover(&self, delivery: &Delivery) -> Result<bool, TargetError> {
        let path = PathBuf::from(detail_path(delivery, "path")?);
        let temp = PathBuf::from(detail_path(delivery, "temp")?);
        match std::fs::remove_file(&temp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(TargetError::Io { path: temp, source }),
        }
        Ok(path.exists())
    }
}

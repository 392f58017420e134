//! The `file` target's keys: the folder (`path`), the files' mode, and the output keys it
//! shares with `s3`; their checks; and its `check` probe.

use super::super::config::{OutputFormat, TargetContext, output};
use super::super::{Target, TargetKind};
use crate::config::Connection;
use crate::config::kind::KindTable;
use crate::config::validate::{Problems, resolve};
use crate::keytemplate::KeyTemplate;
use crate::probe::Report;
use serde::Deserialize;
use std::path::PathBuf;

/// `[target]` of `type = "file"`, as written (the output keys aside).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFileTarget {
    pub path: Option<String>,
    pub file_mode: Option<String>,
}

/// A local folder that receives one file per load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileTargetSpec {
    /// Resolved against the configuration folder.
    pub path: PathBuf,
    /// `file_mode`: the mode of output files (octal, default 0600); folders made for them
    /// get the same bits plus search where reading is allowed.
    pub file_mode: u32,
    pub format: OutputFormat,
    pub key: KeyTemplate,
}

#[async_trait::async_trait]
impl TargetKind for FileTargetSpec {
    fn keys() -> Vec<&'static str> {
        use crate::config::kind::keys_of;
        [
            keys_of::<RawFileTarget>(),
            keys_of::<super::super::config::RawOutput>(),
        ]
        .concat()
    }

    fn validate(mut table: KindTable<'_>, cx: &TargetContext<'_>, p: &mut Problems<'_>) -> Option<Self> {
        let before = p.count();
        let (format, key) = output(&mut table, cx, p);
        let t: RawFileTarget = table.rest(p)?;
        let path = match &t.path {
            Some(path) if !path.is_empty() => resolve(cx.dir, path),
            _ => {
                p.add(
                    "target.path",
                    "missing; a file target needs the folder to write into, e.g. path = \"/srv/imports\"",
                );
                PathBuf::new()
            }
        };
        let file_mode = match t.file_mode.as_deref() {
            None => crate::files::PRIVATE_FILE,
            Some(m) => match u32::from_str_radix(m.trim_start_matches("0o"), 8) {
                Ok(mode) if mode <= 0o777 && mode & 0o600 == 0o600 => mode,
                _ => {
                    p.add(
                        "target.file_mode",
                        format!("{m:?} is not a file mode the daemon can write; use octal digits such as \"0640\" (owner read and write at least)"),
                    );
                    crate::files::PRIVATE_FILE
                }
            },
        };
        (p.count() == before).then_some(FileTargetSpec {
            path,
            file_mode,
            format,
            key: key?,
        })
    }

    fn output(&self) -> OutputFormat {
        self.format
    }

    async fn open(&self, connection: &Connection) -> Box<dyn Target> {
        Box::new(super::FileTarget::new(
            self.clone(),
            std::sync::Arc::new(connection.template.clone()),
        ))
    }

    async fn check(&self, _connection: &Connection, report: &mut Report) {
        // The target creates its folder on the first load; until then, the nearest folder
        // that exists must let it do so. Nothing is created here.
        let existing = self
            .path
            .ancestors()
            .find(|p| p.exists())
            .unwrap_or(std::path::Path::new("."));
        if !existing.is_dir() {
            report.failed(
                "target",
                format!(
                    "{} is in the way of {}: it is not a folder",
                    existing.display(),
                    self.path.display()
                ),
                "point `path` in [target] at a folder, or move the file away",
            );
            return;
        }
        let probe = existing.join(format!(".s3-importd-probe-{}", uuid::Uuid::new_v4().simple()));
        let written = std::fs::write(&probe, b"").and_then(|()| std::fs::remove_file(&probe));
        match written {
            Ok(()) if existing == self.path => report.ok("target", format!("{} is writable", self.path.display())),
            Ok(()) => report.ok(
                "target",
                format!(
                    "{} will be created on the first load; {} is writable",
                    self.path.display(),
                    existing.display()
                ),
            ),
            Err(e) => report.failed(
                "target",
                format!("cannot write in {}: {e}", self.path.display()),
                "create the folder and let the user s3-importd runs as write to it (under systemd: ReadWritePaths= or StateDirectory=)",
            ),
        }
    }
}

//! The spool: the checked rows of one object, written to local disk as JSON Lines while the
//! object is parsed, so that a file over `max_bad_rows` never reaches the target and a failed
//! delivery is retried without downloading again (DESIGN §5).
//!
//! A run spools into `spool/<connection>/<run_id>/` beside the state file and removes the
//! folder when it ends; a run that finds an old folder of its connection removes it first.

use crate::format::{Row, RowError, RowSink};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// How many row errors of one object are kept for the quarantine; the rest are counted.
pub const MAX_ERRORS_KEPT: usize = 1000;

/// The spool folder of one run.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// Creates the run's spool folder under `root`, removing what earlier runs of the
    /// connection left behind.
    pub fn create(root: &Path, connection: &str, run_id: &str) -> io::Result<Spool> {
        let connection_dir = root.join(connection);
        match std::fs::remove_dir_all(&connection_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let dir = connection_dir.join(run_id);
        std::fs::create_dir_all(&dir)?;
        Ok(Spool { dir })
    }

    /// A writer for the object at position `index` of the run.
    pub fn writer(&self, index: usize) -> io::Result<SpoolWriter> {
        let path = self.dir.join(format!("{index:06}.jsonl"));
        Ok(SpoolWriter {
            out: BufWriter::with_capacity(256 * 1024, File::create(&path)?),
            path,
            errors: Vec::new(),
            errors_dropped: 0,
        })
    }

    /// Removes the run's spool folder.
    pub fn remove(self) -> io::Result<()> {
        std::fs::remove_dir_all(&self.dir)
    }
}

/// Spools the rows of one object and keeps its row errors.
pub struct SpoolWriter {
    path: PathBuf,
    out: BufWriter<File>,
    errors: Vec<RowError>,
    errors_dropped: u64,
}

/// A finished spool file and the row errors of its object.
#[derive(Debug)]
pub struct Spooled {
    pub path: PathBuf,
    /// At most [`MAX_ERRORS_KEPT`].
    pub errors: Vec<RowError>,
    /// Row errors past the cap, counted but not kept.
    pub errors_dropped: u64,
}

impl SpoolWriter {
    /// Flushes the file and hands back what was spooled.
    pub fn finish(mut self) -> io::Result<Spooled> {
        self.out.flush()?;
        Ok(Spooled {
            path: self.path,
            errors: self.errors,
            errors_dropped: self.errors_dropped,
        })
    }
}

impl RowSink for SpoolWriter {
    fn row(&mut self, row: &Row<'_>) -> io::Result<()> {
        row.write_json(&mut self.out)?;
        self.out.write_all(b"\n")
    }

    fn error(&mut self, error: RowError) {
        if self.errors.len() < MAX_ERRORS_KEPT {
            self.errors.push(error);
        } else {
            self.errors_dropped += 1;
        }
    }
}

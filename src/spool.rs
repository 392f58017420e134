//! The spool: the checked rows of each object, written to local disk as JSON Lines while the
//! object is parsed, so that a file over `max_bad_rows` never reaches the target and a failed
//! delivery is retried without downloading again (docs/design.md §5).
//!
//! A run spools into `spool/<connection>/<run_id>/` beside the state file; the folder goes
//! when the run's [`Spool`] is dropped, however the run ends, and a run first removes what
//! earlier runs of its connection left ([`Spool::clear`]), before it writes anything else.
//!
//! Objects do not get a file each: a run keeps a small pool of spool files, at most one per
//! object in flight, and each object appends its rows to a file it holds alone while it is
//! parsed. An object's rows are then a [`SpoolSlice`] (file, offset, length). Creating and
//! deleting a file per object cost more than parsing it when a run imports thousands of small
//! objects. A growing file is written back to disk early, 32 MB at a time, on a thread of its
//! own. This module does file I/O only; what the rows mean is the format's business.

use crate::formats::{Row, RowError, RowSink};
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// How many row errors of one object are kept for the quarantine; the rest are counted.
pub const MAX_ERRORS_KEPT: usize = 1000;

/// The write buffer of one spool file: large enough that a big object is written in few
/// calls, small enough that the pool costs little memory.
const BUFFER: usize = 128 * 1024;

/// The spool folder of one run.
#[derive(Debug)]
pub struct Spool {
    writers: Writers,
}

/// What the spool's files hold: JSON Lines rows, or — for a `file` or `s3` target writing
/// CSV — the output's CSV records, made while the rows are checked, each file starting with
/// the output's header row, so that delivering a load is a copy, and a load of one object
/// a second name for its spool file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpoolFormat {
    Jsonl,
    Csv {
        out: crate::formats::CsvOut,
        /// The header record every file starts with.
        header: Arc<Vec<u8>>,
    },
}

impl SpoolFormat {
    /// What a connection's target reads from the spool.
    pub fn for_connection(c: &crate::config::Connection) -> SpoolFormat {
        match c.target.output().csv() {
            None => SpoolFormat::Jsonl,
            Some(out) => {
                let fields: Vec<String> = c.template.fields.iter().map(|f| f.name.clone()).collect();
                SpoolFormat::Csv {
                    out,
                    header: Arc::new(crate::formats::csv_header(out, &fields)),
                }
            }
        }
    }

    /// What every file starts with.
    fn header(&self) -> &[u8] {
        match self {
            SpoolFormat::Jsonl => &[],
            SpoolFormat::Csv { header, .. } => header,
        }
    }
}

/// Makes the writers of one run's spool, on any thread; the [`Spool`] owns the folder.
#[derive(Debug, Clone)]
pub struct Writers {
    format: SpoolFormat,
    dir: PathBuf,
    /// Files no object is writing to, at their current length.
    idle: Arc<Mutex<Vec<SpoolFile>>>,
    /// The number of the next new file.
    next: Arc<AtomicUsize>,
}

/// One file of the pool.
#[derive(Debug)]
struct SpoolFile {
    path: PathBuf,
    out: BufWriter<File>,
    len: u64,
    /// Where the file stood when its last early write-back began, and that write-back.
    synced_at: u64,
    syncing: Option<std::thread::JoinHandle<()>>,
}

/// How much a spool file grows between early write-backs.
const WRITE_BACK_EVERY: u64 = 32 * 1024 * 1024;

impl SpoolFile {
    /// Starts writing the file's data to disk on a thread of its own, every
    /// [`WRITE_BACK_EVERY`] bytes, one write-back at a time. A load that is delivered as its
    /// spool file (the `file` target's hard link) must be synced before it counts as
    /// delivered; started early, that sync runs while the object is still being parsed
    /// instead of after it. Failures are ignored here: the sync that counts is the target's.
    fn write_back_early(&mut self, len: u64) {
        if len < self.synced_at + WRITE_BACK_EVERY || self.syncing.as_ref().is_some_and(|t| !t.is_finished())
        {
            return;
        }
        let Ok(file) = self.out.get_ref().try_clone() else {
            return;
        };
        self.synced_at = len;
        self.syncing = std::thread::Builder::new()
            .name("spool-sync".into())
            .spawn(move || {
                let _ = file.sync_data();
            })
            .ok();
    }
}

/// Where one object's rows are: `len` bytes from `start` of a spool file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolSlice {
    pub path: PathBuf,
    pub start: u64,
    pub len: u64,
    /// The length of the header the file starts with (a CSV spool's; 0 for JSON Lines).
    pub header: u64,
}

impl SpoolSlice {
    /// Whether the file holds this slice and nothing else but its header, so that the file
    /// can stand for the output.
    pub fn is_whole_file(&self) -> io::Result<bool> {
        Ok(self.start == self.header && std::fs::metadata(&self.path)?.len() == self.header + self.len)
    }
}

/// Reads slices of spool files, keeping each file open: a load of thousands of objects
/// reads them from a handful of files.
///
/// A consuming reader ([`SliceReader::consuming`]) also gives back the disk space of what
/// has been read: each spool file is read front to back, since a load takes its objects in
/// the order they were spooled, and the part behind the reader is cut out of the file (a
/// hole punched) every [`RELEASE_EVERY`] bytes. A load written out beside its spool then
/// takes little more disk than the load, not twice. What was read is gone: a consuming
/// reader serves one attempt only.
#[derive(Debug, Default)]
pub struct SliceReader {
    open: Vec<OpenSpool>,
    consuming: bool,
}

/// One spool file a reader holds open.
#[derive(Debug)]
struct OpenSpool {
    path: PathBuf,
    file: File,
    /// Everything before this offset has been read (consuming readers).
    read_to: u64,
    /// Everything before this offset has been cut out of the file.
    released_to: u64,
}

/// How much of a spool file is read before its space is given back.
const RELEASE_EVERY: u64 = 64 * 1024;

/// How much of a large run of slices is copied at a time by a consuming reader, so that its
/// space is given back as it goes.
const COPY_STEP: u64 = 16 * 1024 * 1024;

impl SliceReader {
    /// A reader that gives back the space of what it has read (see [`SliceReader`]).
    pub fn consuming() -> SliceReader {
        SliceReader {
            open: Vec::new(),
            consuming: true,
        }
    }

    /// Whether this reader has cut anything out of a spool file: a later attempt cannot
    /// read the load again.
    pub fn consumed(&self) -> bool {
        self.open.iter().any(|f| f.released_to > 0)
    }

    fn file(&mut self, slice: &SpoolSlice) -> io::Result<&mut OpenSpool> {
        let at = match self.open.iter().position(|f| f.path == slice.path) {
            Some(at) => at,
            None => {
                // Punching a hole needs the file open for writing.
                let file = File::options()
                    .read(true)
                    .write(self.consuming)
                    .open(&slice.path)?;
                self.open.push(OpenSpool {
                    path: slice.path.clone(),
                    file,
                    read_to: 0,
                    released_to: 0,
                });
                self.open.len() - 1
            }
        };
        Ok(&mut self.open[at])
    }

    /// A reader of one slice's bytes.
    pub fn read<'r>(&'r mut self, slice: &SpoolSlice) -> io::Result<io::Take<&'r File>> {
        let mut file = &self.file(slice)?.file;
        file.seek(SeekFrom::Start(slice.start))?;
        Ok(file.take(slice.len))
    }

    /// Says that `slice` has been read whole; a consuming reader gives back the space behind
    /// it once enough has gathered. A file read out of order is not cut any further: that
    /// would lose bytes not yet read.
    pub fn done(&mut self, slice: &SpoolSlice) -> io::Result<()> {
        if !self.consuming {
            return Ok(());
        }
        let spool = self.file(slice)?;
        if slice.start != spool.read_to {
            spool.read_to = u64::MAX;
            return Ok(());
        }
        spool.read_to = slice.start + slice.len;
        let release_to = spool.read_to - spool.read_to % RELEASE_EVERY;
        if release_to > spool.released_to {
            punch_hole(&spool.file, spool.released_to, release_to - spool.released_to)?;
            spool.released_to = release_to;
        }
        Ok(())
    }

    /// Copies the bytes of `slices`, in order, to `out`. Slices that follow each other in one
    /// file are copied as one; a small run is read with one positioned read through `buf`
    /// (the kernel's file-to-file copy costs four system calls a run, more than a small
    /// object's rows), a large one is copied by the kernel.
    pub fn copy_all(&mut self, slices: &[SpoolSlice], out: &mut impl Write) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        const SMALL: u64 = 256 * 1024;
        let mut buf = Vec::new();
        let mut i = 0;
        while i < slices.len() {
            let mut run = slices[i].clone();
            i += 1;
            while let Some(next) = slices.get(i)
                && next.path == run.path
                && next.start == run.start + run.len
            {
                run.len += next.len;
                i += 1;
            }
            if run.len <= SMALL {
                buf.resize(run.len as usize, 0);
                self.file(&run)?.file.read_exact_at(&mut buf, run.start)?;
                out.write_all(&buf)?;
                self.done(&run)?;
                continue;
            }
            // A consuming reader copies a large run in steps, giving back space as it goes.
            let step = if self.consuming { COPY_STEP } else { run.len };
            let mut at = run.start;
            while at < run.start + run.len {
                let part = SpoolSlice {
                    path: run.path.clone(),
                    start: at,
                    len: step.min(run.start + run.len - at),
                    header: run.header,
                };
                io::copy(&mut self.read(&part)?, out)?;
                self.done(&part)?;
                at += part.len;
            }
        }
        Ok(())
    }
}

/// Gives back the disk space of `len` bytes of `file` from `start`; the file keeps its size
/// and reads zeros there. A file system that cannot punch holes keeps the bytes: the load
/// then takes the disk it took before.
fn punch_hole(file: &File, start: u64, len: u64) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(length)) = (libc::off_t::try_from(start), libc::off_t::try_from(len)) else {
            return Ok(());
        };
        // SAFETY: fallocate reads no memory of ours; the descriptor is open for as long as
        // `file` is borrowed.
        let done = unsafe {
            libc::fallocate(
                file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                offset,
                length,
            )
        };
        if done != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
                return Err(e);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, start, len);
    Ok(())
}

impl Spool {
    /// Removes what earlier runs of `connection` left under `root` (a run that was killed, or
    /// that failed to remove its folder). A run calls this first, before it writes anything
    /// else, so that a disk filled by an old spool is freed before the run needs it.
    pub fn clear(root: &Path, connection: &str) -> io::Result<()> {
        match std::fs::remove_dir_all(root.join(connection)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates the run's spool folder under `root`. The folder is removed when the spool is
    /// dropped, however the run ends: no load needs its spool after its run (a pending load is
    /// recovered through the target).
    pub fn create(root: &Path, connection: &str, run_id: &str, format: SpoolFormat) -> io::Result<Spool> {
        let dir = root.join(connection).join(run_id);
        // Spooled rows are partner data: private whatever the umask.
        crate::files::create_private_dir(&dir)?;
        Ok(Spool {
            writers: Writers {
                format,
                dir,
                idle: Arc::default(),
                next: Arc::default(),
            },
        })
    }

    /// A writer for one object (see [`Writers::writer`]).
    pub fn writer(&self) -> SpoolWriter {
        self.writers.writer()
    }

    /// What makes writers, for a thread that parses several objects in turn.
    pub fn writers(&self) -> Writers {
        self.writers.clone()
    }
}

impl Writers {
    /// A writer for one object: an idle file of the pool, or a new one, which the first row
    /// creates (on the parsing thread, not the runtime's).
    pub fn writer(&self) -> SpoolWriter {
        let file = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let (holding, start) = match file {
            Some(file) => {
                let start = file.len;
                (Holding::Open(file), start)
            }
            None => {
                let n = self.next.fetch_add(1, Ordering::Relaxed);
                (Holding::New(self.dir.join(format!("{n:06}.jsonl"))), 0)
            }
        };
        SpoolWriter {
            format: self.format.clone(),
            holding,
            start,
            written: 0,
            idle: self.idle.clone(),
            errors: Vec::new(),
            errors_dropped: 0,
        }
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        // The files still open in the pool are closed with it; on Linux removing them first
        // is fine. A folder that cannot be removed is removed by the connection's next run.
        if let Err(e) = std::fs::remove_dir_all(&self.writers.dir) {
            tracing::debug!(path = %self.writers.dir.display(), error = %e, "removing the spool failed");
        }
    }
}

/// Removes the spools that runs of `connections` left behind (killed runs), skipping any
/// connection that is running now (`lock` fails for it). For a disk too full to open the
/// state store: those spools may be what filled it. Returns how many folders it removed.
pub fn free_abandoned<L>(
    root: &Path,
    connections: &[&str],
    lock: impl Fn(&str) -> Result<L, crate::state::StateError>,
) -> usize {
    let mut removed = 0;
    for name in connections {
        // The lock is held while the folder is removed, so no run of it starts meanwhile.
        let Ok(_held) = lock(name) else { continue };
        if root.join(name).exists() && Spool::clear(root, name).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// The file a writer appends to.
enum Holding {
    /// Not created yet.
    New(PathBuf),
    Open(SpoolFile),
    /// Lost to a failed write; the object fails and its file leaves the pool.
    Broken,
}

/// Spools the rows of one object and keeps its row errors. End with [`SpoolWriter::keep`] or
/// [`SpoolWriter::discard`]; either hands the file back to the pool.
pub struct SpoolWriter {
    format: SpoolFormat,
    holding: Holding,
    start: u64,
    written: u64,
    idle: Arc<Mutex<Vec<SpoolFile>>>,
    errors: Vec<RowError>,
    errors_dropped: u64,
}

/// The spooled rows of one object, and its row errors.
#[derive(Debug)]
pub struct Spooled {
    pub slice: SpoolSlice,
    /// At most [`MAX_ERRORS_KEPT`].
    pub errors: Vec<RowError>,
    /// Row errors past the cap, counted but not kept.
    pub errors_dropped: u64,
}

impl SpoolWriter {
    /// Keeps the object's rows (written out by [`RowSink::end`]) and hands back where they
    /// are.
    pub fn keep(mut self) -> Spooled {
        let path = match std::mem::replace(&mut self.holding, Holding::Broken) {
            Holding::Open(mut file) => {
                file.len = self.start + self.written;
                let path = file.path.clone();
                self.give_back(file);
                path
            }
            Holding::New(path) => path,
            Holding::Broken => PathBuf::new(),
        };
        Spooled {
            slice: SpoolSlice {
                path,
                start: self.start,
                len: self.written,
                header: self.format.header().len() as u64,
            },
            errors: self.errors,
            errors_dropped: self.errors_dropped,
        }
    }

    /// Drops the object's rows (it was rejected or failed) and hands back its row errors.
    pub fn discard(mut self) -> Vec<RowError> {
        if let Holding::Open(mut file) = std::mem::replace(&mut self.holding, Holding::Broken) {
            // The file is cut back to where the object began, so the next object's rows
            // follow the last kept ones; a file that cannot be cut leaves the pool.
            let cut = file
                .out
                .flush()
                .and_then(|()| file.out.get_ref().set_len(self.start))
                .and_then(|()| file.out.get_mut().seek(SeekFrom::Start(self.start)));
            if cut.is_ok() {
                file.len = self.start;
                self.give_back(file);
            }
        }
        std::mem::take(&mut self.errors)
    }

    /// After a failed write: part of a row may be in the file, so it leaves the pool. It is cut
    /// back to where this object began (what the buffer still holds is dropped, not written),
    /// so that a disk filled by this object is freed at once; the rows of objects before it
    /// stay, as their slices need them.
    fn break_file(&mut self) {
        if let Holding::Open(file) = std::mem::replace(&mut self.holding, Holding::Broken) {
            let (out, _unwritten) = file.out.into_parts();
            if let Err(e) = out.set_len(self.start) {
                tracing::debug!(path = %file.path.display(), error = %e, "cutting a broken spool file failed");
            }
        }
    }

    /// Appends `pieces` (a row and its line break, or a block of rows) to the object's
    /// rows; a failed write takes the file out of the pool.
    fn write(&mut self, pieces: &[&[u8]]) -> io::Result<()> {
        let result = self
            .out()
            .and_then(|out| pieces.iter().try_for_each(|piece| out.write_all(piece)));
        match result {
            Ok(()) => {
                self.written += pieces.iter().map(|piece| piece.len() as u64).sum::<u64>();
                if let Holding::Open(file) = &mut self.holding {
                    file.write_back_early(self.start + self.written);
                }
                Ok(())
            }
            Err(e) => {
                self.break_file();
                Err(e)
            }
        }
    }

    fn give_back(&self, file: SpoolFile) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(file);
        }
    }

    fn out(&mut self) -> io::Result<&mut BufWriter<File>> {
        if let Holding::New(path) = &self.holding {
            let mut out = BufWriter::with_capacity(BUFFER, crate::files::create_private(path)?);
            // A CSV spool file starts with the output's header; the object's rows follow it.
            let header = self.format.header();
            out.write_all(header)?;
            self.start = header.len() as u64;
            self.holding = Holding::Open(SpoolFile {
                path: path.clone(),
                out,
                len: self.start,
                synced_at: 0,
                syncing: None,
            });
        }
        match &mut self.holding {
            Holding::Open(file) => Ok(&mut file.out),
            _ => Err(io::Error::other("the spool file failed earlier")),
        }
    }
}

impl RowSink for SpoolWriter {
    fn row(&mut self, row: &Row<'_>) -> io::Result<()> {
        // A JSON Lines row gets its line break here; a CSV record has its terminator.
        let (text, newline): (&[u8], &[u8]) = match &self.format {
            SpoolFormat::Jsonl => (row.json(), b"\n"),
            SpoolFormat::Csv { .. } => match row.csv() {
                Some(record) => (record, b""),
                None => return Err(io::Error::other("a row came without its CSV record")),
            },
        };
        self.write(&[text, newline])
    }

    fn takes_blocks(&self) -> bool {
        self.format == SpoolFormat::Jsonl
    }

    fn rows(&mut self, block: &[u8]) -> io::Result<()> {
        self.write(&[block])
    }

    fn csv_out(&self) -> Option<crate::formats::CsvOut> {
        match &self.format {
            SpoolFormat::Jsonl => None,
            SpoolFormat::Csv { out, .. } => Some(*out),
        }
    }

    fn wants_json(&self) -> bool {
        self.format == SpoolFormat::Jsonl
    }

    fn end(&mut self) -> io::Result<()> {
        // A new file is created even for an object without rows, so that every slice kept
        // names a file that exists.
        let result = self.out().and_then(|out| out.flush());
        if result.is_err() {
            self.break_file();
        }
        result
    }

    fn error(&mut self, error: RowError) {
        if self.errors.len() < MAX_ERRORS_KEPT {
            self.errors.push(error);
        } else {
            self.errors_dropped += 1;
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Spool slices for the tests of the writers that read them.
    use super::SpoolSlice;

    /// A slice holding `text`, after another object's rows in the same file, as in a shared
    /// spool file.
    pub fn slice_of(text: &[u8]) -> (tempfile::TempDir, SpoolSlice) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("000000.jsonl");
        let before = b"other object's rows\n";
        std::fs::write(&path, [&before[..], text].concat()).unwrap();
        let slice = SpoolSlice {
            path,
            start: before.len() as u64,
            len: text.len() as u64,
            header: 0,
        };
        (dir, slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consuming_reader_gives_back_the_space_behind_it() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        const MB: usize = 1024 * 1024;
        // Two spool files, their objects' slices interleaved in the load's order, as two
        // objects in flight leave them; a large run is copied in steps.
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let bytes = |fill: u8, len: usize| vec![fill; len];
        let a_parts = [bytes(b'1', 3 * MB), bytes(b'2', 3 * MB), bytes(b'3', 20 * MB)];
        let b_parts = [bytes(b'x', 3 * MB), bytes(b'y', 100)];
        std::fs::write(&a, a_parts.concat()).unwrap();
        std::fs::write(&b, b_parts.concat()).unwrap();
        let slice = |path: &PathBuf, start: usize, len: usize| SpoolSlice {
            path: path.clone(),
            start: start as u64,
            len: len as u64,
            header: 0,
        };
        let load = [
            slice(&a, 0, 3 * MB),
            slice(&b, 0, 3 * MB),
            slice(&a, 3 * MB, 3 * MB),
            slice(&b, 3 * MB, 100),
            slice(&a, 6 * MB, 20 * MB),
        ];
        let expected = [&a_parts[0], &b_parts[0], &a_parts[1], &b_parts[1], &a_parts[2]]
            .map(|p| p.as_slice())
            .concat();
        let allocated = |p: &PathBuf| std::fs::metadata(p).unwrap().blocks() * 512;

        let mut reader = SliceReader::default();
        let mut out = Vec::new();
        reader.copy_all(&load, &mut out).unwrap();
        assert!(out == expected && !reader.consumed());
        assert!(
            allocated(&a) >= 26 * MB as u64,
            "a plain reader leaves the spool whole"
        );

        let mut reader = SliceReader::consuming();
        let mut out = Vec::new();
        reader.copy_all(&load, &mut out).unwrap();
        assert!(out == expected, "the load is written whole and in order");
        assert!(reader.consumed());
        // Everything up to the last 64 KiB boundary read is given back (ext4 punches holes).
        assert!(
            allocated(&a) <= 2 * MB as u64,
            "{} bytes still held",
            allocated(&a)
        );
        assert_eq!(
            std::fs::metadata(&a).unwrap().len(),
            26 * MB as u64,
            "the file keeps its size"
        );
    }
    use crate::formats::{self, FormatSpec, Provenance};
    use crate::template::{BadRowLimit, Template, UnknownFields};

    fn spool_rows(writer: &mut SpoolWriter, text: &str) {
        let template = Template {
            table: "t".into(),
            unknown_fields: UnknownFields::Keep,
            max_bad_rows: BadRowLimit::Count(0),
            fields: Vec::new(),
        };
        let provenance = Provenance {
            key: "k",
            version: "v",
        };
        formats::parse(
            text.as_bytes(),
            "k.csv",
            &FormatSpec::default(),
            &template,
            provenance,
            writer,
        )
        .unwrap();
        writer.end().unwrap();
    }

    fn read(slice: &SpoolSlice) -> String {
        let mut text = String::new();
        SliceReader::default()
            .read(slice)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text
    }

    #[test]
    fn objects_share_files_and_a_discarded_object_leaves_nothing() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::create(root.path(), "c", "run", SpoolFormat::Jsonl).unwrap();
        // Two objects in flight at once get two files.
        let (mut a, mut b) = (spool.writer(), spool.writer());
        spool_rows(&mut a, "x\n1\n");
        spool_rows(&mut b, "x\n2\n");
        let (a, b) = (a.keep(), b.keep());
        assert_ne!(a.slice.path, b.slice.path);
        // The next object reuses a file, after the rows already there.
        let mut c = spool.writer();
        spool_rows(&mut c, "x\n3\n");
        let c = c.keep();
        assert_eq!(c.slice.path, b.slice.path);
        assert_eq!(c.slice.start, b.slice.len);
        // A discarded object is cut off: the one after it starts where it started.
        let mut d = spool.writer();
        spool_rows(&mut d, "x\n4\n5\n");
        d.discard();
        let mut e = spool.writer();
        spool_rows(&mut e, "x\n6\n");
        let e = e.keep();
        assert_eq!(e.slice.start, c.slice.start + c.slice.len);
        let rows: Vec<String> = [&a, &b, &c, &e].iter().map(|s| read(&s.slice)).collect();
        for (row, x) in rows.iter().zip(["1", "2", "3", "6"]) {
            assert!(row.starts_with(&format!("{{\"x\":\"{x}\",")), "{row}");
            assert_eq!(row.lines().count(), 1);
        }
        assert!(a.slice.is_whole_file().unwrap());
        assert!(!e.slice.is_whole_file().unwrap());
        // An object without rows has an empty slice.
        let mut f = spool.writer();
        spool_rows(&mut f, "x\n");
        assert_eq!(f.keep().slice.len, 0);
    }
}

//! The state store on one SQLite file in WAL mode: one host. Its schema is migrated by
//! `PRAGMA user_version` (the scheme of rusqlite_migration, which cannot be used here: it pins
//! an older rusqlite, and two copies of SQLite cannot be linked into one binary), in one
//! `BEGIN IMMEDIATE` transaction so that processes starting together wait for each other.
//! The run lock is a `flock` beside the file. Statements run on the calling task: each is a
//! few milliseconds against a local file.

use super::*;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The staging table: a TEMP table lives in the connection's own temporary file, never in
/// the state file, and goes with the process.
const CANDIDATES_TABLE: &str = "CREATE TEMP TABLE IF NOT EXISTS candidates (
    run_id TEXT NOT NULL,
    order_ns INTEGER NOT NULL,
    key TEXT NOT NULL,
    etag TEXT NOT NULL,
    size INTEGER NOT NULL,
    last_modified TEXT NOT NULL,
    stamp TEXT,
    PRIMARY KEY (run_id, order_ns, key)
) WITHOUT ROWID";

/// The schema, one entry per version; a database at version N has run the first N.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE connections (
    name TEXT PRIMARY KEY,
    watermark_ms INTEGER,
    table_version INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE ledger (
    connection TEXT NOT NULL,
    key TEXT NOT NULL,
    etag TEXT NOT NULL,
    last_modified_ms INTEGER NOT NULL,
    size INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    rows INTEGER NOT NULL,
    bad_rows INTEGER NOT NULL,
    reason TEXT,
    run_id TEXT NOT NULL,
    PRIMARY KEY (connection, key, etag)
);
CREATE INDEX ledger_by_time ON ledger (connection, last_modified_ms);
CREATE TABLE quarantine (
    id INTEGER PRIMARY KEY,
    connection TEXT NOT NULL,
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    etag TEXT NOT NULL,
    line INTEGER NOT NULL,
    field TEXT,
    reason TEXT NOT NULL,
    raw TEXT NOT NULL
);
CREATE INDEX quarantine_by_connection ON quarantine (connection, id);
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    connection TEXT NOT NULL,
    started_at_ms INTEGER NOT NULL,
    finished_at_ms INTEGER,
    outcome TEXT NOT NULL,
    listed INTEGER NOT NULL DEFAULT 0,
    new INTEGER NOT NULL DEFAULT 0,
    imported INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    rows INTEGER NOT NULL DEFAULT 0,
    bad_rows INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    watermark_before_ms INTEGER,
    watermark_after_ms INTEGER,
    output TEXT,
    error TEXT
);
CREATE INDEX runs_by_connection ON runs (connection, started_at_ms);
CREATE TABLE pending_loads (
    run_id TEXT PRIMARY KEY,
    connection TEXT NOT NULL,
    record TEXT NOT NULL
);
"#,
    r#"
ALTER TABLE ledger ADD COLUMN stamp TEXT;
"#,
    r#"
ALTER TABLE connections ADD COLUMN floor_ms INTEGER;
CREATE TABLE retries (
    connection TEXT NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (connection, key)
);
"#,
    r#"
ALTER TABLE runs ADD COLUMN host TEXT;
CREATE TABLE occurrences (
    connection TEXT NOT NULL,
    scheduled_at_ms INTEGER NOT NULL,
    owner TEXT NOT NULL,
    claimed_at_ms INTEGER NOT NULL,
    PRIMARY KEY (connection, scheduled_at_ms)
);
CREATE TABLE daemons (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    started_at_ms INTEGER NOT NULL,
    seen_at_ms INTEGER NOT NULL
);
"#,
    // `retry` acknowledges the errors of the runs before it: `status` shows none of them as
    // the last error once the objects they were about are being imported again.
    r#"
ALTER TABLE connections ADD COLUMN errors_cleared_ms INTEGER;
"#,
    // Event mode: an event load's delay from its oldest object's LastModified to the commit.
    r#"
ALTER TABLE runs ADD COLUMN event_delay_ms INTEGER;
"#,
];

/// The runs whose error `status` may show as the last error: those since `retry` last
/// acknowledged the connection's errors.
const LAST_ERROR: &str = "AND error IS NOT NULL AND started_at_ms > \
     COALESCE((SELECT errors_cleared_ms FROM connections WHERE name = ?1), -1)";

/// The state store on one SQLite file.
pub struct SqliteStore {
    path: PathBuf,
    db: Mutex<Connection>,
    owner: Owner,
    /// A migrated copy of an older state file that could only be read (see
    /// [`SqliteStore::open_for_reading`]); removed when the store is dropped.
    snapshot: Option<tempfile::TempPath>,
}

/// Takes the run lock of a connection whose state is in the SQLite file `state_path`: lock
/// files live beside it, `locks/NAME.lock`, held with flock(2), which the kernel releases
/// when the process ends however it ends. Needs no database, so that it works on a disk too
/// full to open one (see [`crate::spool::free_abandoned`]).
pub fn lock_connection(state_path: &Path, connection: &str) -> Result<ConnectionLock, StateError> {
    let dir = state_path.parent().unwrap_or(Path::new(".")).join("locks");
    let path = dir.join(format!("{connection}.lock"));
    let lock_error = |source| StateError::Lock {
        path: path.display().to_string(),
        source,
    };
    crate::files::create_private_dir(&dir).map_err(lock_error)?;
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(crate::files::PRIVATE_FILE)
            .open(&path)
            .map_err(lock_error)?
    };
    match file.try_lock() {
        Ok(()) => Ok(ConnectionLock::new(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(StateError::Busy {
            connection: connection.to_string(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(lock_error(e)),
    }
}

/// A SQLite error on the state file, with the read-only cases told apart (SQLite says
/// "unable to open database file" or "attempt to write a readonly database" for them).
fn sqlite_error(path: &Path, error: rusqlite::Error) -> StateError {
    let path_text = path.display().to_string();
    let read_only = match error.sqlite_error_code() {
        Some(rusqlite::ErrorCode::ReadOnly) => true,
        // Unable to open: read-only when the file or its folder exists but cannot be written.
        Some(rusqlite::ErrorCode::CannotOpen) => {
            let writable = |p: &Path| {
                std::fs::metadata(p).is_ok_and(|m| !m.permissions().readonly())
                    && std::fs::OpenOptions::new().append(true).open(p).is_ok()
            };
            (path.exists() && !writable(path))
                || path
                    .parent()
                    .is_some_and(|dir| dir.exists() && !dir_writable(dir))
        }
        _ => false,
    };
    if read_only {
        StateError::ReadOnly { path: path_text }
    } else {
        StateError::Sqlite {
            path: path_text,
            error,
        }
    }
}

/// Writes one ledger entry (replacing the same version's), settled by `run_id`.
fn put_ledger(db: &Connection, connection: &str, run_id: &str, s: &Settled) -> rusqlite::Result<()> {
    db.prepare_cached(
        "INSERT OR REPLACE INTO ledger
            (connection, key, etag, last_modified_ms, size, outcome, rows, bad_rows, reason, run_id, stamp)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        connection,
        s.key,
        s.etag,
        ms(s.last_modified),
        s.size as i64,
        s.outcome.as_str(),
        s.rows as i64,
        s.bad_rows as i64,
        s.reason,
        run_id,
        s.stamp,
    ])?;
    Ok(())
}

/// Records what a run counted and how it ended (its start is recorded apart).
fn update_run(db: &Connection, r: &RunRecord) -> rusqlite::Result<()> {
    db.execute(
        "UPDATE runs SET finished_at_ms = ?2, outcome = ?3, listed = ?4, new = ?5, imported = ?6,
                rejected = ?7, failed = ?8, rows = ?9, bad_rows = ?10, bytes = ?11,
                watermark_before_ms = ?12, watermark_after_ms = ?13, output = ?14, error = ?15,
                event_delay_ms = ?16
         WHERE run_id = ?1",
        params![
            r.run_id,
            r.finished_at.map(ms),
            r.outcome,
            r.counts.listed as i64,
            r.counts.new as i64,
            r.counts.imported as i64,
            r.counts.rejected as i64,
            r.counts.failed as i64,
            r.counts.rows as i64,
            r.counts.bad_rows as i64,
            r.counts.bytes as i64,
            r.watermark_before.map(ms),
            r.watermark_after.map(ms),
            r.output,
            r.error,
            r.event_delay_ms,
        ],
    )?;
    Ok(())
}

/// Whether a new file can be created in `dir`.
fn dir_writable(dir: &Path) -> bool {
    let probe = dir.join(format!(".s3-importd-probe-{}", std::process::id()));
    let made = std::fs::File::create(&probe).is_ok();
    let _ = std::fs::remove_file(&probe);
    made
}

impl StateError {
    /// Whether another connection held the database (busy or locked).
    pub fn is_busy(&self) -> bool {
        match self {
            StateError::Sqlite { error, .. } => matches!(
                error.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ),
            _ => false,
        }
    }

    /// Whether the disk (or the file system's quota) is full.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StateError::Sqlite { error, .. } => {
                error.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
            }
            StateError::Folder { source, .. }
            | StateError::Lock { source, .. }
            | StateError::Create { source, .. } => source.kind() == std::io::ErrorKind::StorageFull,
            _ => false,
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the state file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<SqliteStore, StateError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            crate::files::create_private_dir(parent).map_err(|source| StateError::Folder {
                path: path.display().to_string(),
                source,
            })?;
        }
        // The state holds quarantined partner records: a new state file is private whatever
        // the umask (SQLite gives its -wal and -shm files the same mode).
        if !path.exists() {
            crate::files::create_private_if_missing(path).map_err(|source| match source.kind() {
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                    StateError::ReadOnly {
                        path: path.display().to_string(),
                    }
                }
                _ => StateError::Create {
                    path: path.display().to_string(),
                    source,
                },
            })?;
        }
        let store = SqliteStore {
            path: path.to_path_buf(),
            db: Mutex::new(Connection::open(path).map_err(|e| sqlite_error(path, e))?),
            owner: Owner::this_process(),
            snapshot: None,
        };
        // Processes that open a new state file together can find it locked in ways SQLite's
        // busy handler does not wait out (switching to WAL, a lock upgrade it sees as a
        // deadlock): setting up is tried again, a bounded number of times.
        let mut tries = 0;
        loop {
            match store.set_up() {
                Err(e) if e.is_busy() && tries < 100 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => return Err(e),
                Ok(()) => return Ok(store),
            }
        }
    }

    /// The connection's settings, and the schema made or migrated.
    fn set_up(&self) -> Result<(), StateError> {
        self.with(|db| {
            db.busy_timeout(std::time::Duration::from_secs(10))?;
            db.pragma_update(None, "journal_mode", "WAL")?;
            // FULL: a committed run survives a power cut, not only a crash.
            db.pragma_update(None, "synchronous", "FULL")?;
            db.pragma_update(None, "foreign_keys", "ON")?;
            // Pruned ledger entries and settled pending loads leave free pages behind; an
            // incremental auto-vacuum lets commits give them back. It takes effect only on a
            // database with no tables yet (or after a VACUUM): see `migrate`.
            let version: i64 = db.pragma_query_value(None, "user_version", |r| r.get(0))?;
            if version == 0 {
                db.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
            }
            Ok(())
        })?;
        self.migrate()
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, error: rusqlite::Error) -> StateError {
        sqlite_error(&self.path, error)
    }

    /// Opens the state file for commands that only read it (`status`): as [`SqliteStore::open`]
    /// does, else, when the file cannot be written, read-only.
    pub fn open_for_reading(path: &Path) -> Result<SqliteStore, StateError> {
        match SqliteStore::open(path) {
            Err(StateError::ReadOnly { .. }) => {}
            other => return other,
        }
        SqliteStore::open_read_only(path)
    }

    /// The state file opened read-only. A file written by an older version lacks columns this
    /// one reads, and cannot be upgraded in place: a copy of it (`VACUUM INTO`, which reads
    /// only) is upgraded in a temporary file and read instead, the file itself left as it is.
    fn open_read_only(path: &Path) -> Result<SqliteStore, StateError> {
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX
            | rusqlite::OpenFlags::SQLITE_OPEN_URI;
        // SQLite reads a WAL database read-only only when its -wal and -shm files exist (or
        // it may create them). Without a -wal file every change is in the main file, which is
        // then read as immutable, with no locking at all.
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let target = if Path::new(&wal).exists() {
            path.display().to_string()
        } else {
            let escaped = path
                .display()
                .to_string()
                .replace('%', "%25")
                .replace('?', "%3f")
                .replace('#', "%23");
            format!("file:{escaped}?immutable=1")
        };
        let db = Connection::open_with_flags(&target, flags).map_err(|e| sqlite_error(path, e))?;
        let store = SqliteStore {
            path: path.to_path_buf(),
            db: Mutex::new(db),
            owner: Owner::this_process(),
            snapshot: None,
        };
        let known = MIGRATIONS.len() as i64;
        let found: i64 = store.with(|db| db.pragma_query_value(None, "user_version", |r| r.get(0)))?;
        if found > known {
            return Err(StateError::TooNew {
                path: path.display().to_string(),
                found,
                known,
            });
        }
        if found == known {
            return Ok(store);
        }
        let copy_error = |source| StateError::Snapshot {
            path: path.display().to_string(),
            source,
        };
        let copy = tempfile::Builder::new()
            .prefix(".s3-importd-state-")
            .tempfile()
            .map_err(copy_error)?
            .into_temp_path();
        store.with(|db| db.execute("VACUUM INTO ?1", [copy.to_string_lossy()]))?;
        drop(store);
        let mut upgraded = SqliteStore::open(&copy)?;
        // Messages name the state file, not its copy.
        upgraded.path = path.to_path_buf();
        upgraded.snapshot = Some(copy);
        Ok(upgraded)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T, StateError> {
        let mut db = self.db.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut db).map_err(|e| self.err(e))
    }

    fn migrate(&self) -> Result<(), StateError> {
        let known = MIGRATIONS.len() as i64;
        // The version is read and the migrations run in one transaction that takes the write
        // lock first: processes that open a new state file at the same moment (daemons and
        // commands started together) wait for each other instead of each creating the tables,
        // which failed with "table connections already exists".
        let found = self.with(|db| {
            let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let found: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
            if found <= known {
                for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
                    tx.execute_batch(sql)?;
                    tx.pragma_update(None, "user_version", (i + 1) as i64)?;
                }
            }
            tx.commit()?;
            Ok(found)
        })?;
        if found > known {
            return Err(StateError::TooNew {
                path: self.path.display().to_string(),
                found,
                known,
            });
        }
        // A state file made before pruning existed has no incremental auto-vacuum: one VACUUM
        // converts it. It is an optimisation, so a failure (a full disk: VACUUM needs room
        // for a copy) leaves the file as it was and is tried again at the next start.
        let auto_vacuum: i64 = self.with(|db| db.pragma_query_value(None, "auto_vacuum", |r| r.get(0)))?;
        if auto_vacuum == 0 {
            let _ = self.with(|db| db.execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;"));
        }
        Ok(())
    }

    /// Asks `sql` (parameters: connection, key, and the pair's second part) of each pair of
    /// `objects`, in one read transaction: one lock for the batch, not one per answer.
    fn ask_each<T>(
        &self,
        sql: &str,
        connection: &str,
        objects: &[(&str, &str)],
        ask: impl Fn(&mut rusqlite::CachedStatement<'_>, &[&dyn rusqlite::ToSql]) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, StateError> {
        self.with(|db| {
            let tx = db.transaction()?;
            let answers = {
                let mut query = tx.prepare_cached(sql)?;
                objects
                    .iter()
                    .map(|(key, second)| ask(&mut query, params![connection, key, second]))
                    .collect::<rusqlite::Result<Vec<T>>>()?
            };
            tx.commit()?;
            Ok(answers)
        })
    }

    /// Recent runs of a connection matching an extra SQL condition, newest first.
    fn runs_where(
        &self,
        connection: &str,
        condition: &str,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StateError> {
        self.with(|db| {
            let mut stmt = db.prepare(&format!(
                "SELECT run_id, connection, started_at_ms, finished_at_ms, outcome, listed, new, imported,
                        rejected, failed, rows, bad_rows, bytes, watermark_before_ms, watermark_after_ms,
                        output, error, host, event_delay_ms
                 FROM runs WHERE connection = ?1 {condition}
                 ORDER BY started_at_ms DESC, rowid DESC LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![connection, limit as i64], |r| {
                Ok(RunRecord {
                    run_id: r.get(0)?,
                    connection: r.get(1)?,
                    started_at: r.get::<_, Option<i64>>(2)?.and_then(from_ms),
                    finished_at: r.get::<_, Option<i64>>(3)?.and_then(from_ms),
                    outcome: r.get(4)?,
                    counts: RunCounts {
                        listed: r.get::<_, i64>(5)? as u64,
                        new: r.get::<_, i64>(6)? as u64,
                        imported: r.get::<_, i64>(7)? as u64,
                        rejected: r.get::<_, i64>(8)? as u64,
                        failed: r.get::<_, i64>(9)? as u64,
                        rows: r.get::<_, i64>(10)? as u64,
                        bad_rows: r.get::<_, i64>(11)? as u64,
                        bytes: r.get::<_, i64>(12)? as u64,
                    },
                    watermark_before: r.get::<_, Option<i64>>(13)?.and_then(from_ms),
                    watermark_after: r.get::<_, Option<i64>>(14)?.and_then(from_ms),
                    output: r.get(15)?,
                    error: r.get(16)?,
                    host: r.get::<_, Option<String>>(17)?.unwrap_or_default(),
                    event_delay_ms: r.get(18)?,
                })
            })?;
            rows.collect()
        })
    }
}

impl StoreInfo for SqliteStore {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn shared(&self) -> bool {
        false
    }

    fn owner(&self) -> &Owner {
        &self.owner
    }
}

#[async_trait]
impl RunState for SqliteStore {
    async fn retries(&self, connection: &str) -> Result<Vec<String>, StateError> {
        self.with(|db| {
            let mut stmt = db.prepare_cached("SELECT key FROM retries WHERE connection = ?1 ORDER BY key")?;
            let keys = stmt.query_map(params![connection], |r| r.get(0))?;
            keys.collect()
        })
    }

    async fn stage_candidates(&self, run_id: &str, batch: &[ObjectMeta]) -> Result<(), StateError> {
        self.with(|db| {
            db.execute_batch(CANDIDATES_TABLE)?;
            let tx = db.transaction()?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT OR IGNORE INTO temp.candidates (run_id, order_ns, key, etag, size, last_modified, stamp)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                for m in batch {
                    insert.execute(params![
                        run_id,
                        order_ns(m.last_modified),
                        m.key,
                        m.etag,
                        m.size as i64,
                        m.last_modified
                            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                        m.stamp,
                    ])?;
                }
            }
            tx.commit()
        })
    }

    async fn staged_candidates(
        &self,
        run_id: &str,
        after: Option<&ObjectMeta>,
        limit: usize,
    ) -> Result<Vec<ObjectMeta>, StateError> {
        let (after_ns, after_key) = super::staged_cursor(after);
        type Row = (String, String, i64, String, Option<String>);
        let rows: Vec<Row> = self.with(|db| {
            db.execute_batch(CANDIDATES_TABLE)?;
            let mut stmt = db.prepare_cached(
                "SELECT key, etag, size, last_modified, stamp FROM temp.candidates
                 WHERE run_id = ?1 AND (order_ns, key) > (?2, ?3)
                 ORDER BY order_ns, key LIMIT ?4",
            )?;
            let rows = stmt.query_map(
                params![run_id, after_ns, after_key, limit.min(i64::MAX as usize) as i64],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )?;
            rows.collect()
        })?;
        rows.into_iter()
            .map(|(key, etag, size, lm, stamp)| {
                super::staged_meta(key, etag, size, &lm, stamp).map_err(|message| StateError::Corrupt {
                    path: "a temporary table".into(),
                    message,
                })
            })
            .collect()
    }

    async fn clear_candidates(&self, run_id: &str) -> Result<(), StateError> {
        self.with(|db| {
            db.execute_batch(CANDIDATES_TABLE)?;
            db.execute("DELETE FROM temp.candidates WHERE run_id = ?1", params![run_id])?;
            Ok(())
        })
    }

    async fn lock(&self, connection: &str) -> Result<ConnectionLock, StateError> {
        lock_connection(&self.path, connection)
    }

    async fn connection(&self, name: &str) -> Result<ConnectionState, StateError> {
        let row = self.with(|db| {
            db.query_row(
                "SELECT watermark_ms, table_version, floor_ms FROM connections WHERE name = ?1",
                params![name],
                |r| {
                    Ok((
                        r.get::<_, Option<i64>>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                    ))
                },
            )
            .optional()
        })?;
        Ok(ConnectionState::from_row(row))
    }

    async fn settled_among(
        &self,
        connection: &str,
        objects: &[(&str, &str)],
    ) -> Result<Vec<bool>, StateError> {
        self.ask_each(
            "SELECT 1 FROM ledger WHERE connection = ?1 AND key = ?2 AND etag = ?3",
            connection,
            objects,
            |query, params| query.exists(params),
        )
    }

    async fn versions_by_stamp(
        &self,
        connection: &str,
        objects: &[(&str, &str)],
    ) -> Result<Vec<Option<String>>, StateError> {
        self.ask_each(
            "SELECT etag FROM ledger WHERE connection = ?1 AND key = ?2 AND stamp = ?3 LIMIT 1",
            connection,
            objects,
            |query, params| query.query_row(params, |r| r.get(0)).optional(),
        )
    }

    async fn start_run(&self, connection: &str, run_id: &str, at: DateTime<Utc>) -> Result<(), StateError> {
        self.with(|db| {
            let tx = db.transaction()?;
            tx.execute(
                "UPDATE runs SET outcome = 'interrupted' WHERE connection = ?1 AND outcome = 'running'",
                params![connection],
            )?;
            tx.execute(
                "INSERT INTO runs (run_id, connection, started_at_ms, outcome, host) VALUES (?1, ?2, ?3, 'running', ?4)",
                params![run_id, connection, ms(at), self.owner.host],
            )?;
            tx.commit()
        })
    }

    async fn finish_run(&self, r: &RunRecord) -> Result<(), StateError> {
        self.with(|db| update_run(db, r))
    }

    async fn pending_loads(&self, connection: &str) -> Result<Vec<PendingLoad>, StateError> {
        let records: Vec<String> = self.with(|db| {
            let mut stmt =
                db.prepare("SELECT record FROM pending_loads WHERE connection = ?1 ORDER BY rowid")?;
            let rows = stmt.query_map(params![connection], |r| r.get(0))?;
            rows.collect()
        })?;
        records
            .iter()
            .map(|r| {
                serde_json::from_str(r).map_err(|e| StateError::Corrupt {
                    path: self.path.display().to_string(),
                    message: format!("pending load of {connection}: {e}"),
                })
            })
            .collect()
    }

    async fn begin_load(&self, load: &PendingLoad) -> Result<(), StateError> {
        let record = serde_json::to_string(load).map_err(|e| StateError::Corrupt {
            path: self.path.display().to_string(),
            message: e.to_string(),
        })?;
        self.with(|db| {
            db.execute(
                "INSERT INTO pending_loads (run_id, connection, record) VALUES (?1, ?2, ?3)",
                params![load.run_id, load.connection, record],
            )?;
            Ok(())
        })
    }

    async fn commit(&self, plan: &CommitPlan) -> Result<(), StateError> {
        self.with(|db| {
            let tx = db.transaction()?;
            {
                let mut retried =
                    tx.prepare_cached("DELETE FROM retries WHERE connection = ?1 AND key = ?2")?;
                for s in &plan.settled {
                    retried.execute(params![plan.connection, s.key])?;
                    put_ledger(&tx, &plan.connection, &plan.run_id, s)?;
                }
                let mut quarantine = tx.prepare_cached(
                    "INSERT INTO quarantine (connection, run_id, key, etag, line, field, reason, raw)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?;
                for q in &plan.quarantine {
                    quarantine.execute(params![
                        plan.connection,
                        plan.run_id,
                        q.key,
                        q.etag,
                        q.error.line as i64,
                        q.error.field,
                        q.error.reason.text(),
                        q.error.raw,
                    ])?;
                }
            }
            tx.execute(
                "INSERT INTO connections (name, watermark_ms) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET watermark_ms =
                     CASE WHEN ?2 IS NULL THEN watermark_ms ELSE max(coalesce(watermark_ms, ?2), ?2) END",
                params![plan.connection, plan.watermark.map(ms)],
            )?;
            tx.execute(
                "DELETE FROM pending_loads WHERE run_id = ?1",
                params![plan.run_id],
            )?;
            // Entries behind the watermark's overlap band can never be candidates again (a run
            // skips them as too old before it asks the ledger), so they go — imported ones:
            // rejections stay, few as they are, for `retry --rejected` to find. `reset --since`
            // sets a floor that keeps runs from looking back past it.
            let pruned = tx.execute(
                "DELETE FROM ledger WHERE connection = ?1 AND outcome = 'imported' AND last_modified_ms <
                    (SELECT watermark_ms FROM connections WHERE name = ?1) - ?2",
                params![plan.connection, crate::select::OVERLAP.num_milliseconds()],
            )?;
            tx.commit()?;
            if pruned > 0 {
                give_back_free_pages(db)?;
            }
            Ok(())
        })
    }

    async fn discard_load(&self, run_id: &str) -> Result<(), StateError> {
        self.with(|db| {
            db.execute("DELETE FROM pending_loads WHERE run_id = ?1", params![run_id])?;
            Ok(())
        })
    }
}

/// Gives the database's free pages back to the file system (auto_vacuum is incremental).
/// `incremental_vacuum` frees one page each time its statement is stepped, so it is stepped
/// to its end: run once, as `execute_batch` does, it freed a single page, and a ledger pruned
/// at once kept its file's size for good.
fn give_back_free_pages(db: &Connection) -> rusqlite::Result<()> {
    let mut vacuum = db.prepare("PRAGMA incremental_vacuum")?;
    let mut steps = vacuum.query([])?;
    while steps.next()?.is_some() {}
    Ok(())
}

#[async_trait]
impl AdminState for SqliteStore {
    /// Recent runs of a connection, newest first.
    async fn runs(&self, connection: &str, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        self.runs_where(connection, "", limit)
    }

    /// Rewinds a connection so that object versions modified at or after `since` are imported
    /// again: forgets their ledger entries, moves the watermark back to `since` (never
    /// forward) and raises the table version. One transaction. Refused while a load of the
    /// connection is pending, since committing it later would bring entries back.
    async fn reset(&self, connection: &str, since: DateTime<Utc>) -> Result<Reset, StateError> {
        refuse_while_pending(self, connection).await?;
        let before = self.connection(connection).await?;
        let forgotten = self.with(|db| {
            let tx = db.transaction()?;
            let forgotten = tx.execute(
                "DELETE FROM ledger WHERE connection = ?1 AND last_modified_ms >= ?2",
                params![connection, ms(since)],
            )?;
            tx.execute(
                "INSERT INTO connections (name, watermark_ms, table_version, floor_ms) VALUES (?1, NULL, 2, ?2)
                 ON CONFLICT (name) DO UPDATE SET
                     watermark_ms = CASE WHEN watermark_ms IS NULL THEN NULL ELSE min(watermark_ms, ?2) END,
                     table_version = table_version + 1,
                     floor_ms = ?2",
                params![connection, ms(since)],
            )?;
            tx.commit()?;
            Ok(forgotten as u64)
        })?;
        Ok(Reset {
            before,
            after: self.connection(connection).await?,
            forgotten,
        })
    }

    /// Marks keys to be imported again by the next run (`retry`): forgets their ledger
    /// entries and records them, so that the run takes them even when they are older than its
    /// window. `rejected` adds every key whose ledger entry is a rejection. Refused while the
    /// connection has a pending load.
    async fn retry(&self, connection: &str, keys: &[String], rejected: bool) -> Result<Retry, StateError> {
        refuse_while_pending(self, connection).await?;
        self.with(|db| {
            let tx = db.transaction()?;
            let mut all: Vec<String> = keys.to_vec();
            if rejected {
                let mut stmt = tx.prepare(
                    "SELECT DISTINCT key FROM ledger WHERE connection = ?1 AND outcome = 'rejected' ORDER BY key",
                )?;
                let found: Vec<String> = stmt
                    .query_map(params![connection], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                all.extend(found);
            }
            all.sort();
            all.dedup();
            let mut forgotten = 0;
            for key in &all {
                forgotten += tx.execute(
                    "DELETE FROM ledger WHERE connection = ?1 AND key = ?2",
                    params![connection, key],
                )? as u64;
                // The next run checks the object again and quarantines what is still bad.
                tx.execute(
                    "DELETE FROM quarantine WHERE connection = ?1 AND key = ?2",
                    params![connection, key],
                )?;
                tx.execute(
                    "INSERT OR IGNORE INTO retries (connection, key) VALUES (?1, ?2)",
                    params![connection, key],
                )?;
            }
            if !all.is_empty() {
                tx.execute(
                    "INSERT INTO connections (name, errors_cleared_ms) VALUES (?1, ?2)
                     ON CONFLICT (name) DO UPDATE SET errors_cleared_ms = excluded.errors_cleared_ms",
                    params![connection, ms(Utc::now())],
                )?;
            }
            tx.commit()?;
            Ok(Retry { keys: all, forgotten })
        })
    }

    /// What `status` shows of a connection.
    async fn overview(&self, connection: &str) -> Result<Overview, StateError> {
        let state = self.connection(connection).await?;
        let (ledger_size, quarantined) = self.with(|db| {
            let count = |table: &str| {
                db.query_row(
                    &format!("SELECT count(*) FROM {table} WHERE connection = ?1"),
                    params![connection],
                    |r| r.get::<_, i64>(0),
                )
            };
            Ok((count("ledger")? as u64, count("quarantine")? as u64))
        })?;
        Ok(Overview {
            state,
            ledger_size,
            quarantined,
            last_run: self.runs(connection, 1).await?.pop(),
            last_import: self.runs_where(connection, "AND rows > 0", 1)?.pop(),
            last_error: self.runs_where(connection, LAST_ERROR, 1)?.pop(),
        })
    }

    /// The ledger of a connection, oldest first: (key, etag, outcome).
    async fn ledger(&self, connection: &str) -> Result<Vec<(String, String, String)>, StateError> {
        self.with(|db| {
            let mut stmt = db.prepare(
                "SELECT key, etag, outcome FROM ledger WHERE connection = ?1 ORDER BY last_modified_ms, key",
            )?;
            let rows = stmt.query_map(params![connection], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect()
        })
    }

    /// The latest quarantined rows of a connection, newest first.
    async fn quarantine(&self, connection: &str, limit: usize) -> Result<Vec<Quarantined>, StateError> {
        self.with(|db| {
            let mut stmt = db.prepare(
                "SELECT key, etag, line, field, reason, raw FROM quarantine
                 WHERE connection = ?1 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![connection, limit as i64], |r| {
                Ok(Quarantined {
                    key: r.get(0)?,
                    etag: r.get(1)?,
                    error: RowError {
                        line: r.get::<_, i64>(2)? as u64,
                        field: r.get(3)?,
                        reason: RowFault::Recorded(r.get(4)?),
                        raw: r.get(5)?,
                    },
                })
            })?;
            rows.collect()
        })
    }
}

#[async_trait]
impl FleetState for SqliteStore {
    /// When the latest run of a connection that reached its end (`ok` or `failed`, not
    /// `running` or `interrupted`) started.
    async fn last_completed_run_start(&self, connection: &str) -> Result<Option<DateTime<Utc>>, StateError> {
        Ok(self
            .runs_where(connection, "AND outcome IN ('ok', 'failed')", 1)?
            .pop()
            .and_then(|r| r.started_at))
    }

    async fn claim_occurrence(&self, connection: &str, at: DateTime<Utc>) -> Result<Claim, StateError> {
        let owner = self.with(|db| {
            db.execute(
                "INSERT OR IGNORE INTO occurrences (connection, scheduled_at_ms, owner, claimed_at_ms)
                 VALUES (?1, ?2, ?3, ?4)",
                params![connection, ms(at), self.owner.id, ms(Utc::now())],
            )?;
            db.query_row(
                "SELECT owner FROM occurrences WHERE connection = ?1 AND scheduled_at_ms = ?2",
                params![connection, ms(at)],
                |r| r.get::<_, String>(0),
            )
        })?;
        Ok(if owner == self.owner.id {
            Claim::Won
        } else {
            Claim::Elsewhere { owner }
        })
    }

    async fn heartbeat(&self, config_hash: &str, started_at: DateTime<Utc>) -> Result<(), StateError> {
        self.with(|db| {
            db.execute(
                "INSERT INTO daemons (id, host, config_hash, started_at_ms, seen_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET config_hash = ?3, seen_at_ms = ?5",
                params![self.owner.id, self.owner.host, config_hash, ms(started_at), ms(Utc::now())],
            )?;
            Ok(())
        })
    }

    async fn daemons(&self, since: DateTime<Utc>) -> Result<Vec<DaemonRecord>, StateError> {
        self.with(|db| {
            let mut stmt = db.prepare(
                "SELECT id, host, config_hash, started_at_ms, seen_at_ms FROM daemons
                 WHERE seen_at_ms >= ?1 ORDER BY seen_at_ms DESC, id",
            )?;
            let rows = stmt.query_map(params![ms(since)], |r| {
                Ok(DaemonRecord {
                    id: r.get(0)?,
                    host: r.get(1)?,
                    config_hash: r.get(2)?,
                    started_at: from_ms(r.get(3)?).unwrap_or_default(),
                    seen_at: from_ms(r.get(4)?).unwrap_or_default(),
                })
            })?;
            rows.collect()
        })
    }

    async fn leases(&self) -> Result<Vec<LeaseRecord>, StateError> {
        // A flock has no record: each lock file is tried, and one that cannot be taken is
        // held by a process on this host.
        let dir = self.path.parent().unwrap_or(Path::new(".")).join("locks");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".lock").map(str::to_string))
            .collect();
        names.sort();
        Ok(names
            .into_iter()
            .filter(|name| matches!(lock_connection(&self.path, name), Err(StateError::Busy { .. })))
            .map(|connection| LeaseRecord {
                connection,
                owner: "a process on this host".into(),
                expires_at: None,
            })
            .collect())
    }

    async fn orphaned(&self) -> Result<Vec<String>, StateError> {
        let names: Vec<String> = self.with(|db| {
            let mut stmt = db.prepare("SELECT DISTINCT connection FROM pending_loads ORDER BY connection")?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect()
        })?;
        Ok(names
            .into_iter()
            .filter(|name| lock_connection(&self.path, name).is_ok())
            .collect())
    }
}

#[async_trait]
impl MigrationState for SqliteStore {
    async fn connection_names(&self) -> Result<Vec<String>, StateError> {
        self.with(|db| {
            let mut stmt = db.prepare(
                "SELECT name FROM connections UNION SELECT connection FROM runs
                 UNION SELECT connection FROM ledger UNION SELECT connection FROM pending_loads ORDER BY 1",
            )?;
            let rows = stmt.query_map([], |r| r.get(0))?;
            rows.collect()
        })
    }

    async fn ledger_entries(&self, connection: &str) -> Result<Vec<(Settled, String)>, StateError> {
        self.with(|db| {
            let mut stmt = db.prepare(
                "SELECT key, etag, last_modified_ms, size, stamp, outcome, rows, bad_rows, reason, run_id
                 FROM ledger WHERE connection = ?1 ORDER BY last_modified_ms, key, etag",
            )?;
            let ledger: Vec<(Settled, String)> = stmt
                .query_map(params![connection], |r| {
                    Ok((
                        Settled {
                            key: r.get(0)?,
                            etag: r.get(1)?,
                            last_modified: from_ms(r.get(2)?).unwrap_or_default(),
                            size: r.get::<_, i64>(3)?.max(0) as u64,
                            stamp: r.get(4)?,
                            outcome: Outcome::parse(&r.get::<_, String>(5)?),
                            rows: r.get::<_, i64>(6)?.max(0) as u64,
                            bad_rows: r.get::<_, i64>(7)?.max(0) as u64,
                            reason: r.get(8)?,
                        },
                        r.get(9)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(ledger)
        })
    }

    async fn quarantine_entries(&self, connection: &str) -> Result<Vec<(Quarantined, String)>, StateError> {
        self.with(|db| {
            let mut stmt = db.prepare(
                "SELECT key, etag, line, field, reason, raw, run_id FROM quarantine
                 WHERE connection = ?1 ORDER BY id",
            )?;
            let quarantine: Vec<(Quarantined, String)> = stmt
                .query_map(params![connection], |r| {
                    Ok((
                        Quarantined {
                            key: r.get(0)?,
                            etag: r.get(1)?,
                            error: RowError {
                                line: r.get::<_, i64>(2)?.max(0) as u64,
                                field: r.get(3)?,
                                reason: RowFault::Recorded(r.get(4)?),
                                raw: r.get(5)?,
                            },
                        },
                        r.get(6)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(quarantine)
        })
    }

    async fn import(&self, dump: &ConnectionDump) -> Result<(), StateError> {
        let pending: Vec<(String, String)> = dump
            .pending
            .iter()
            .map(|p| {
                serde_json::to_string(p)
                    .map(|record| (p.run_id.clone(), record))
                    .map_err(|e| StateError::Corrupt {
                        path: self.describe(),
                        message: e.to_string(),
                    })
            })
            .collect::<Result<_, _>>()?;
        self.with(|db| {
            let tx = db.transaction()?;
            let c = &dump.name;
            for table in ["ledger", "quarantine", "runs", "retries", "pending_loads"] {
                tx.execute(&format!("DELETE FROM {table} WHERE connection = ?1"), params![c])?;
            }
            tx.execute(
                "INSERT OR REPLACE INTO connections (name, watermark_ms, table_version, floor_ms) VALUES (?1, ?2, ?3, ?4)",
                params![c, dump.watermark.map(ms), dump.table_version as i64, dump.floor.map(ms)],
            )?;
            for (s, run_id) in &dump.ledger {
                put_ledger(&tx, c, run_id, s)?;
            }
            for (q, run_id) in &dump.quarantine {
                tx.execute(
                    "INSERT INTO quarantine (connection, run_id, key, etag, line, field, reason, raw)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![c, run_id, q.key, q.etag, q.error.line as i64, q.error.field, q.error.reason.text(), q.error.raw],
                )?;
            }
            for r in &dump.runs {
                tx.execute(
                    "INSERT OR REPLACE INTO runs (run_id, connection, started_at_ms, outcome, host)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![r.run_id, c, r.started_at.map(ms).unwrap_or(0), r.outcome, r.host],
                )?;
                update_run(&tx, r)?;
            }
            for key in &dump.retries {
                tx.execute(
                    "INSERT OR IGNORE INTO retries (connection, key) VALUES (?1, ?2)",
                    params![c, key],
                )?;
            }
            for (run_id, record) in &pending {
                tx.execute(
                    "INSERT INTO pending_loads (run_id, connection, record) VALUES (?1, ?2, ?3)",
                    params![run_id, c, record],
                )?;
            }
            tx.commit()
        })
    }
}

#[cfg(test)]
mod tests {
    //! What only SQLite does; the behaviour both stores share is `tests/state_contract.rs`.
    use super::*;

    #[tokio::test]
    async fn an_older_state_file_that_cannot_be_written_is_read_through_an_upgraded_copy() {
        // A state file as the version before `floor_ms` left it, with a watermark.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let before_floor = MIGRATIONS.iter().position(|m| m.contains("floor_ms")).unwrap();
        {
            let db = Connection::open(&path).unwrap();
            for m in &MIGRATIONS[..before_floor] {
                db.execute_batch(m).unwrap();
            }
            db.pragma_update(None, "user_version", before_floor as i64)
                .unwrap();
            db.execute(
                "INSERT INTO connections (name, watermark_ms) VALUES ('acme', 1767323045000)",
                [],
            )
            .unwrap();
        }
        let original = std::fs::read(&path).unwrap();
        // Read-only, as `status` opens a file it cannot write: before, `connection` failed
        // with "no such column: floor_ms".
        let store = SqliteStore::open_read_only(&path).unwrap();
        let state = store.connection("acme").await.unwrap();
        assert_eq!(state.watermark.map(|w| w.timestamp()), Some(1_767_323_045));
        assert_eq!(state.floor, None);
        assert_eq!(store.path(), path, "messages name the state file");
        let copy = store.snapshot.as_ref().map(|c| c.to_path_buf()).unwrap();
        assert!(copy.exists());
        drop(store);
        assert!(!copy.exists(), "the copy goes with the store");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            original,
            "the file itself is untouched"
        );
    }

    #[test]
    fn stores_opened_at_the_same_moment_on_a_new_file_all_open() {
        // Each round a new file, opened by four threads released together.
        for round in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(format!("state-{round}.db"));
            let start = std::sync::Arc::new(std::sync::Barrier::new(4));
            let opened: Vec<Result<(), String>> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..4)
                    .map(|_| {
                        let (path, start) = (path.clone(), start.clone());
                        scope.spawn(move || {
                            start.wait();
                            SqliteStore::open(&path).map(|_| ()).map_err(|e| e.to_string())
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            assert!(opened.iter().all(Result::is_ok), "round {round}: {opened:?}");
            let store = SqliteStore::open(&path).unwrap();
            let version: i64 = store
                .with(|db| db.pragma_query_value(None, "user_version", |r| r.get(0)))
                .unwrap();
            assert_eq!(version, MIGRATIONS.len() as i64);
        }
    }
}

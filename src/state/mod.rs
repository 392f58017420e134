//! The state store: per connection, the watermark and table version; the ledger of settled
//! object versions; the quarantine of bad rows; run history; and pending loads, the intent
//! records that make delivery exactly once.
//!
//! [`StateStore`] is the one async door to all of it — runs, the daemon and every command go
//! through it. [`sqlite::SqliteStore`] implements it on one SQLite file (one host);
//! [`postgres::PostgresStore`] on a PostgreSQL database that a fleet of daemons shares
//! (docs/design.md §6). Every change a run makes to the ledger and watermark happens in one
//! transaction ([`RunState::commit`]), so a crash leaves either all of a run's bookkeeping or
//! none of it; with PostgreSQL that transaction also checks the run's lease (fencing).
//!
//! What is not here: the rules of what a run selects (`select.rs`) and the protocol of a run
//! (`run/`); the stores only keep records.

pub mod postgres;
pub mod sqlite;

pub use sqlite::{SqliteStore, lock_connection};

use crate::formats::{RowError, RowFault};
use crate::select::ObjectMeta;
use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Why the state store failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The SQLite error is shown in the message and not chained as a source: its own
    /// source repeats the same text with a code number.
    #[error("state store {path}: {error}")]
    Sqlite { path: String, error: rusqlite::Error },
    #[error(
        "state store {path} is read-only (its file mode, its folder's permissions or a read-only mount); s3-importd must write it: fix the permissions, or run as the user that owns it"
    )]
    ReadOnly { path: String },
    #[error("state store {path}: cannot create it: {source}")]
    Create {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "state store {path}: cannot copy it to read it (it is older than this binary and read-only): {source}"
    )]
    Snapshot {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("state store {path}: cannot create its folder: {source}")]
    Folder {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "state store {path}: schema version {found} is newer than this binary knows ({known}); upgrade s3-importd"
    )]
    TooNew { path: String, found: i64, known: i64 },
    #[error("state store {path}: a stored record cannot be read: {message}")]
    Corrupt { path: String, message: String },
    #[error(
        "connection {connection} is being run by another s3-importd process; try again when that run ends"
    )]
    Busy { connection: String },
    #[error(
        "connection {connection} has a load whose delivery was interrupted; run it once (s3-importd run {connection}) to settle it, then reset"
    )]
    PendingLoad { connection: String },
    /// A store answered a batch of questions with another number of answers (a bug in it).
    #[error("the state store answered {answered} of {asked} questions about the ledger")]
    Answer { asked: usize, answered: usize },
    /// A PostgreSQL state store failed; `server` is the URL's host and database (no secret).
    #[error("state store {server}: {message}")]
    Postgres {
        server: String,
        message: String,
        retryable: bool,
    },
    /// The URL of a PostgreSQL state store could not be read or used.
    #[error("state store: {0}")]
    Url(String),
    /// The run's lease is no longer surely its own, so nothing more of it is committed.
    #[error("connection {connection}: {loss}")]
    LeaseLost { connection: String, loss: LeaseLoss },
    #[error("lock file {path}: {source}")]
    Lock {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl StateError {
    /// Whether the same call may succeed later without anyone changing anything: the store
    /// was out of reach (a PostgreSQL restart, a dropped connection), not refusing.
    pub fn is_transient(&self) -> bool {
        matches!(self, StateError::Postgres { retryable: true, .. })
    }
}

/// Why a run's lease was lost: the difference tells an operator whether another daemon runs
/// the connection now, or the state store was out of reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseLoss {
    /// Another daemon holds it now (this one could not renew it within `lease_ttl_s`).
    TakenOver,
    /// No renewal reached the state store within `lease_ttl_s`; nobody else took it (yet).
    LostContact,
}

impl std::fmt::Display for LeaseLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LeaseLoss::TakenOver => {
                "this run's lease was taken over by another daemon (it could not renew it within lease_ttl_s); its work was not committed and the new owner runs the connection"
            }
            LeaseLoss::LostContact => {
                "this run lost contact with the state store for longer than lease_ttl_s, so its lease lapsed; its work was not committed, and the connection runs again (on this daemon or another) once the store answers"
            }
        })
    }
}

/// Held while one run of a connection is under way; dropping it lets the next run in. Two
/// processes sharing a state store (a `run` from cron beside the daemon, or daemons of a
/// fleet) never run the same connection at once. With SQLite it is a `flock`; with PostgreSQL
/// a lease, renewed in the background while it is held.
pub struct ConnectionLock {
    /// Held for its `Drop`: a file whose `flock` the kernel releases, or a lease's guard.
    _guard: Box<dyn std::any::Any + Send + Sync>,
    /// How to give the lock back and wait for the store to hear of it (a lease's expiry set
    /// to now); none where dropping is enough.
    release: Option<futures::future::BoxFuture<'static, ()>>,
}

impl ConnectionLock {
    /// A lock that holds `guard` until it is dropped.
    pub fn new(guard: impl std::any::Any + Send + Sync) -> ConnectionLock {
        ConnectionLock {
            _guard: Box::new(guard),
            release: None,
        }
    }

    /// A lock given back by `release` when released, and by `guard`'s drop otherwise.
    pub fn with_release(
        guard: impl std::any::Any + Send + Sync,
        release: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> ConnectionLock {
        ConnectionLock {
            _guard: Box::new(guard),
            release: Some(Box::pin(release)),
        }
    }

    /// Gives the lock back now. Dropping it does too, but a lease is then given back by a
    /// background task that a process about to exit may never run, leaving the connection
    /// to wait for the lease to expire; commands and runs release theirs.
    pub async fn release(mut self) {
        if let Some(release) = self.release.take() {
            release.await;
        }
    }
}

/// Who a store's records name as the owner of a run, a lease or a claim: the host, the
/// process, and a random part that tells two lives of one pid apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub host: String,
    pub id: String,
}

impl Owner {
    /// This process.
    pub fn this_process() -> Owner {
        let host = hostname();
        let id = format!(
            "{host}:{}:{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        Owner { host, id }
    }
}

/// The machine's host name (a pod's name on Kubernetes), or `unknown`.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Whether a daemon of the fleet claimed a scheduled occurrence of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This daemon runs it.
    Won,
    /// This daemon runs it: the daemon that claimed it first died before its run ended
    /// (its owner id).
    Retaken { from: String },
    /// Another daemon claimed it first (its owner id).
    Elsewhere { owner: String },
}

/// A daemon as the fleet's records show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DaemonRecord {
    /// The owner id ([`Owner::id`]).
    pub id: String,
    pub host: String,
    /// BLAKE3 of the configuration folder it runs (`config_hash`).
    pub config_hash: String,
    pub started_at: DateTime<Utc>,
    /// Its last heartbeat.
    pub seen_at: DateTime<Utc>,
}

/// Who holds a connection's lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseRecord {
    pub connection: String,
    /// The owner id, or `a process on this host` for a SQLite `flock`.
    pub owner: String,
    /// When it expires unless renewed (none for a `flock`, which ends with its process).
    pub expires_at: Option<DateTime<Utc>>,
}

/// Everything a store holds of one connection, for `state migrate`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnectionDump {
    pub name: String,
    pub watermark: Option<DateTime<Utc>>,
    pub table_version: u64,
    pub floor: Option<DateTime<Utc>>,
    /// Ledger entries with the run that settled each.
    pub ledger: Vec<(Settled, String)>,
    /// Quarantined rows with their run, oldest first.
    pub quarantine: Vec<(Quarantined, String)>,
    /// Runs, oldest first.
    pub runs: Vec<RunRecord>,
    pub retries: Vec<String>,
    pub pending: Vec<PendingLoad>,
}

/// What the state store holds for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionState {
    pub watermark: Option<DateTime<Utc>>,
    /// `[table_version]`: starts at 1, raised by `reset`.
    pub table_version: u64,
    /// The `--since` of the last `reset`: no run looks before it. The ledger forgets entries
    /// behind the watermark's overlap band, so a watermark moved back by a reset would
    /// otherwise bring forgotten objects from before `--since` into the window again.
    pub floor: Option<DateTime<Utc>>,
}

impl ConnectionState {
    /// The state of a connection from its stored row (watermark and floor in milliseconds,
    /// table version), or a new connection's without one.
    pub(crate) fn from_row(row: Option<(Option<i64>, i64, Option<i64>)>) -> ConnectionState {
        match row {
            Some((watermark, version, floor)) => ConnectionState {
                watermark: watermark.and_then(from_ms),
                table_version: version.max(1) as u64,
                floor: floor.and_then(from_ms),
            },
            None => ConnectionState {
                watermark: None,
                table_version: 1,
                floor: None,
            },
        }
    }
}

/// How a settled object version ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Imported,
    Rejected,
}

impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Imported => "imported",
            Outcome::Rejected => "rejected",
        }
    }
}

/// One ledger entry: an object version that will not be imported again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settled {
    pub key: String,
    pub etag: String,
    pub last_modified: DateTime<Utc>,
    pub size: u64,
    /// The source's cheap version stamp ([`ObjectMeta::stamp`]).
    #[serde(default)]
    pub stamp: Option<String>,
    pub outcome: Outcome,
    pub rows: u64,
    pub bad_rows: u64,
    /// Why a rejected version was rejected.
    pub reason: Option<String>,
}

/// A bad row, with the object version it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantined {
    pub key: String,
    pub etag: String,
    pub error: RowError,
}

/// Everything a run records when it ends, applied in one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitPlan {
    pub connection: String,
    pub run_id: String,
    pub settled: Vec<Settled>,
    pub quarantine: Vec<Quarantined>,
    /// Where the watermark moves (never back); `None` leaves it where it is, as an event
    /// load does (events are hints: only the listing moves the watermark).
    pub watermark: Option<DateTime<Utc>>,
}

/// A load that was being delivered: what the target was told (where it writes), and what to
/// commit once the delivery is known to be complete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingLoad {
    pub run_id: String,
    pub connection: String,
    /// The target's own record of the delivery (e.g. the output key).
    pub delivery: serde_json::Value,
    pub plan: CommitPlan,
}

/// What a run counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCounts {
    /// Objects listed under the folder.
    pub listed: u64,
    /// Candidates: in the window, admitted by the globs, not in the ledger.
    pub new: u64,
    pub imported: u64,
    pub rejected: u64,
    pub failed: u64,
    /// Rows delivered.
    pub rows: u64,
    pub bad_rows: u64,
    /// Bytes of the objects imported or rejected, as stored (compressed).
    pub bytes: u64,
}

impl RunCounts {
    /// Adds the object and row counts of a part of a run (one load); `listed` and `new` are
    /// the run's own and stay.
    pub fn add(&mut self, part: &RunCounts) {
        self.imported += part.imported;
        self.rejected += part.rejected;
        self.failed += part.failed;
        self.rows += part.rows;
        self.bad_rows += part.bad_rows;
        self.bytes += part.bytes;
    }
}

/// What [`AdminState::reset`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reset {
    pub before: ConnectionState,
    pub after: ConnectionState,
    /// Ledger entries forgotten.
    pub forgotten: u64,
}

/// A connection's state as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overview {
    pub state: ConnectionState,
    /// Object versions in the ledger.
    pub ledger_size: u64,
    /// Rows in the quarantine.
    pub quarantined: u64,
    pub last_run: Option<RunRecord>,
    /// The latest run that delivered rows (a run that found nothing new hides it otherwise).
    pub last_import: Option<RunRecord>,
    /// The latest run that recorded an error.
    pub last_error: Option<RunRecord>,
}

/// How an event load's outcome starts (`event-ok`, `event-failed`).
pub const EVENT_OUTCOME: &str = "event-";

/// A run in the run history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub connection: String,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// `running`, `ok`, `failed` (some objects or the run failed), `interrupted`; an event
    /// load ends as `event-ok` or `event-failed`, so that it never passes for a scheduled run
    /// (catch-up, the last success).
    pub outcome: String,
    pub counts: RunCounts,
    pub watermark_before: Option<DateTime<Utc>>,
    pub watermark_after: Option<DateTime<Utc>>,
    pub output: Option<String>,
    pub error: Option<String>,
    /// The host that ran it (empty for runs recorded before hosts were).
    #[serde(default)]
    pub host: String,
    /// An event load: how long after its LastModified the oldest object it delivered was
    /// committed, in milliseconds.
    #[serde(default)]
    pub event_delay_ms: Option<i64>,
}

/// The state: what runs, the daemon and the commands read and write. Every part of the
/// program reaches state through this seam, split by consumer so that each sees only what it
/// needs ([`RunState`], [`AdminState`], [`FleetState`], [`MigrationState`]); [`open`] picks the
/// store the configuration names. One contract test suite (`tests/state_contract.rs`) runs
/// against both stores.
pub trait StateStore: RunState + AdminState + FleetState + MigrationState {}

impl<T: RunState + AdminState + FleetState + MigrationState> StateStore for T {}

/// What every part of the program may ask of a store: which it is, and whose records it
/// writes.
pub trait StoreInfo: Send + Sync {
    /// The store for messages: the SQLite file, or PostgreSQL's host and database.
    fn describe(&self) -> String;
    /// Whether several daemons share this store (PostgreSQL): the daemon then claims each
    /// scheduled occurrence before running it and takes over connections whose owner died.
    fn shared(&self) -> bool;
    /// Who this store's records name as the owner of what this process does.
    fn owner(&self) -> &Owner;
}

/// What a run needs: its lock, the watermark, the ledger, its candidates, pending loads and
/// the commit that settles them. Runs (and `preview`'s dry run) hold only this.
#[async_trait]
pub trait RunState: StoreInfo {
    /// Takes the connection's run lock (a lease, with PostgreSQL), or fails with
    /// [`StateError::Busy`] at once. While it is held, [`RunState::begin_load`] and
    /// [`RunState::commit`] of the connection check it in their own transaction.
    async fn lock(&self, connection: &str) -> Result<ConnectionLock, StateError>;
    /// The watermark and table version of a connection (defaults for a new one).
    async fn connection(&self, name: &str) -> Result<ConnectionState, StateError>;
    /// For each (key, version), whether the ledger holds it. Asked for a batch at a time:
    /// a listing asks about every object, and one transaction (or round trip) for many
    /// answers costs a fraction of one per answer.
    async fn settled_among(
        &self,
        connection: &str,
        objects: &[(&str, &str)],
    ) -> Result<Vec<bool>, StateError>;
    /// For each (key, stamp), the version the ledger holds for `key` with this cheap stamp
    /// ([`ObjectMeta::stamp`]), so that a source need not compute the version of an object it
    /// has seen before. Batched as [`RunState::settled_among`].
    async fn versions_by_stamp(
        &self,
        connection: &str,
        objects: &[(&str, &str)],
    ) -> Result<Vec<Option<String>>, StateError>;
    /// Records the start of a run, with this process's host; earlier runs of the connection
    /// still marked running are marked interrupted (one process runs a connection at a time).
    async fn start_run(&self, connection: &str, run_id: &str, at: DateTime<Utc>) -> Result<(), StateError>;
    /// Records the end of a run (or, while it runs, its counts so far).
    async fn finish_run(&self, record: &RunRecord) -> Result<(), StateError>;
    /// The loads of a connection whose delivery was started but never committed.
    async fn pending_loads(&self, connection: &str) -> Result<Vec<PendingLoad>, StateError>;
    /// Records the intent to deliver a load, before the target is touched. Fenced.
    async fn begin_load(&self, load: &PendingLoad) -> Result<(), StateError>;
    /// Applies a plan: ledger entries, quarantined rows and the watermark, and drops the
    /// pending load of the same run if there is one; prunes imported ledger entries behind
    /// the overlap band. All or nothing, and fenced: refused with [`StateError::LeaseLost`]
    /// when this process no longer holds the connection's lease.
    async fn commit(&self, plan: &CommitPlan) -> Result<(), StateError>;
    /// Drops a pending load that was never delivered.
    async fn discard_load(&self, run_id: &str) -> Result<(), StateError>;
    /// Keeps a batch of a run's candidates outside the heap, so that a run's memory does not
    /// grow with their number. Adding the same key at the same LastModified twice keeps one.
    async fn stage_candidates(&self, run_id: &str, batch: &[ObjectMeta]) -> Result<(), StateError>;
    /// The staged candidates of a run that come after `after` in import order (LastModified,
    /// then key: [`crate::select::order`]), at most `limit`; from the first without `after`.
    async fn staged_candidates(
        &self,
        run_id: &str,
        after: Option<&ObjectMeta>,
        limit: usize,
    ) -> Result<Vec<ObjectMeta>, StateError>;
    /// Forgets the staged candidates of a run.
    async fn clear_candidates(&self, run_id: &str) -> Result<(), StateError>;
    /// The keys `retry` asked to import again, which a run takes however old they are; a
    /// commit that settles one removes it.
    async fn retries(&self, connection: &str) -> Result<Vec<String>, StateError>;
}

/// What the administration commands read and change: run history, `status`'s overview, the
/// ledger and quarantine, `reset` and `retry`.
#[async_trait]
pub trait AdminState: StoreInfo {
    /// Recent runs of a connection, newest first.
    async fn runs(&self, connection: &str, limit: usize) -> Result<Vec<RunRecord>, StateError>;
    /// What `status` shows of a connection.
    async fn overview(&self, connection: &str) -> Result<Overview, StateError>;
    /// The ledger of a connection, oldest first: (key, etag, outcome).
    async fn ledger(&self, connection: &str) -> Result<Vec<(String, String, String)>, StateError>;
    /// The latest quarantined rows of a connection, newest first.
    async fn quarantine(&self, connection: &str, limit: usize) -> Result<Vec<Quarantined>, StateError>;
    /// Rewinds a connection so that object versions modified at or after `since` are imported
    /// again: forgets their ledger entries, moves the watermark back to `since` (never
    /// forward), raises the table version and sets the floor. One transaction. Refused while a
    /// load of the connection is pending, since committing it later would bring entries back.
    async fn reset(&self, connection: &str, since: DateTime<Utc>) -> Result<Reset, StateError>;
    /// Marks keys to be imported again by the next run (`retry`): forgets their ledger
    /// entries and records them, so that the run takes them even when they are older than its
    /// window. `rejected` adds every key whose ledger entry is a rejection. Refused while the
    /// connection has a pending load.
    async fn retry(&self, connection: &str, keys: &[String], rejected: bool) -> Result<Retry, StateError>;
}

/// What the daemon's scheduler needs to coordinate with other daemons sharing the store:
/// catch-up, occurrence claims, heartbeats, leases and orphaned loads.
#[async_trait]
pub trait FleetState: StoreInfo {
    /// When the latest run of a connection that reached its end (`ok` or `failed`, not
    /// `running` or `interrupted`) started.
    async fn last_completed_run_start(&self, connection: &str) -> Result<Option<DateTime<Utc>>, StateError>;

    /// Claims the occurrence of `connection` scheduled at `at` for this process: the first
    /// claim wins, so each occurrence runs once across a fleet — unless its owner died
    /// (no heartbeat within the lease TTL, no lease held) before a run of the connection that
    /// started at or after `at` reached its end: then the claim passes to this process.
    async fn claim_occurrence(&self, connection: &str, at: DateTime<Utc>) -> Result<Claim, StateError>;
    /// Occurrences claimed in the last day whose owner died before their run ended, so that
    /// another daemon runs them (see [`FleetState::claim_occurrence`]). None in a store
    /// without a fleet.
    async fn lapsed_occurrences(&self) -> Result<Vec<(String, DateTime<Utc>)>, StateError> {
        Ok(Vec::new())
    }
    /// Records that this daemon is alive and which configuration it runs.
    async fn heartbeat(&self, config_hash: &str, started_at: DateTime<Utc>) -> Result<(), StateError>;
    /// The daemons seen since `since`, newest heartbeat first.
    async fn daemons(&self, since: DateTime<Utc>) -> Result<Vec<DaemonRecord>, StateError>;
    /// The leases held now.
    async fn leases(&self) -> Result<Vec<LeaseRecord>, StateError>;
    /// The connections that have a pending load and whose lease nobody holds: their owner
    /// died mid-delivery, and a run of them recovers the load.
    async fn orphaned(&self) -> Result<Vec<String>, StateError>;
}

/// What `state migrate` needs: every record of a connection, out of one store and into
/// another.
#[async_trait]
pub trait MigrationState: RunState + AdminState {
    /// The names of every connection the store has records of.
    async fn connection_names(&self) -> Result<Vec<String>, StateError>;
    /// A connection's ledger entries, oldest first, each with the run that settled it.
    async fn ledger_entries(&self, connection: &str) -> Result<Vec<(Settled, String)>, StateError>;
    /// A connection's quarantined rows, oldest first, each with its run.
    async fn quarantine_entries(&self, connection: &str) -> Result<Vec<(Quarantined, String)>, StateError>;
    /// Everything held of one connection (`state migrate`).
    async fn export(&self, connection: &str) -> Result<ConnectionDump, StateError> {
        let state = self.connection(connection).await?;
        let mut runs = self.runs(connection, usize::MAX >> 1).await?;
        runs.reverse();
        Ok(ConnectionDump {
            name: connection.to_string(),
            watermark: state.watermark,
            table_version: state.table_version,
            floor: state.floor,
            ledger: self.ledger_entries(connection).await?,
            quarantine: self.quarantine_entries(connection).await?,
            runs,
            retries: self.retries(connection).await?,
            pending: self.pending_loads(connection).await?,
        })
    }
    /// Writes what [`MigrationState::export`] read, replacing whatever the store held of that
    /// connection. One transaction.
    async fn import(&self, dump: &ConnectionDump) -> Result<(), StateError>;
}

/// Opens the state store for a command that writes it. On a disk too full to open a SQLite
/// file, first frees the spools that killed runs of `connections` left behind (only of those
/// whose run lock is free: not running now), which may be what filled it, and tries once more.
pub async fn open_for_writing(
    settings: &crate::config::Settings,
    connections: &[&str],
) -> Result<Arc<dyn StateStore>, StateError> {
    match open(settings).await {
        Err(e) if e.is_disk_full() => {
            if let crate::config::StateLocation::Sqlite(path) = &settings.state {
                let freed = crate::spool::free_abandoned(&settings.spool_dir, connections, |name| {
                    lock_connection(path, name)
                });
                tracing::warn!(error = %e, freed, "the disk is full; removed spools left by interrupted runs and trying again");
            }
            open(settings).await
        }
        other => other,
    }
}

/// Opens the state store the configuration names: the SQLite file (creating it), or the
/// PostgreSQL database (creating or migrating its schema).
pub async fn open(settings: &crate::config::Settings) -> Result<Arc<dyn StateStore>, StateError> {
    match &settings.state {
        crate::config::StateLocation::Sqlite(path) => {
            let path = path.clone();
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path))
                .await
                .map_err(|e| StateError::Url(format!("opening the state store: {e}")))??;
            Ok(Arc::new(store))
        }
        crate::config::StateLocation::Postgres(source) => {
            let url = crate::secret::read(source, "state_url_env", "state_url_file")
                .map_err(|e| StateError::Url(e.to_string()))?;
            open_postgres(&url, settings.lease_ttl).await
        }
    }
}

/// Opens the PostgreSQL state store at `url` (creating or migrating its schema): the
/// configuration's, or `state migrate`'s destination.
pub async fn open_postgres(
    url: &crate::secret::Secret,
    lease_ttl: std::time::Duration,
) -> Result<Arc<dyn StateStore>, StateError> {
    Ok(Arc::new(postgres::PostgresStore::open(url, lease_ttl).await?))
}

/// Opens the state store for commands that only read it (`status`): a SQLite file that
/// cannot be written is read read-only.
pub async fn open_for_reading(settings: &crate::config::Settings) -> Result<Arc<dyn StateStore>, StateError> {
    match &settings.state {
        crate::config::StateLocation::Sqlite(path) => Ok(Arc::new(SqliteStore::open_for_reading(path)?)),
        crate::config::StateLocation::Postgres(_) => open(settings).await,
    }
}

/// Refuses a change to a connection's ledger (`reset`, `retry`) while one of its loads is
/// pending: committing that load later would bring forgotten entries back.
pub(crate) async fn refuse_while_pending(
    store: &(impl StateStore + ?Sized),
    connection: &str,
) -> Result<(), StateError> {
    if store.pending_loads(connection).await?.is_empty() {
        Ok(())
    } else {
        Err(StateError::PendingLoad {
            connection: connection.to_string(),
        })
    }
}

/// Import order as one integer: nanoseconds since the epoch (exact for the years 1678–2262,
/// far beyond any LastModified), so that the staged order is the order of
/// [`crate::select::order`].
pub(crate) fn order_ns(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt()
        .unwrap_or(if t.timestamp() < 0 { i64::MIN } else { i64::MAX })
}

/// Where a page of staged candidates starts, as both stores' `(order_ns, key) > (…, …)`
/// takes it: just after `after` in import order, or at the very start.
pub(crate) fn staged_cursor(after: Option<&ObjectMeta>) -> (i64, &str) {
    match after {
        Some(m) => (order_ns(m.last_modified), m.key.as_str()),
        None => (i64::MIN, ""),
    }
}

/// A staged candidate's row (`key, etag, size, last_modified, stamp`, the time as RFC 3339)
/// as the object it stands for; the error says which row is malformed and how.
pub(crate) fn staged_meta(
    key: String,
    etag: String,
    size: i64,
    last_modified: &str,
    stamp: Option<String>,
) -> Result<ObjectMeta, String> {
    let last_modified = DateTime::parse_from_rfc3339(last_modified)
        .map_err(|e| format!("staged candidate {key}: {e}"))?
        .with_timezone(&Utc);
    Ok(ObjectMeta {
        key,
        etag,
        last_modified,
        size: size.max(0) as u64,
        stamp,
    })
}

pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_ms(v: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(v).single()
}

impl Outcome {
    pub(crate) fn parse(s: &str) -> Outcome {
        if s == "rejected" {
            Outcome::Rejected
        } else {
            Outcome::Imported
        }
    }
}

/// What [`AdminState::retry`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// The keys marked, in order.
    pub keys: Vec<String>,
    /// Ledger entries forgotten.
    pub forgotten: u64,
}

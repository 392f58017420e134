//! The state store on PostgreSQL, shared by a fleet of daemons (docs/design.md §6): the database is
//! the coordinator, as in Airflow's highly available scheduler; daemons never talk to each
//! other.
//!
//! Its tables live in the schema `s3_importd` (every connection of the pool sets its
//! `search_path`), created and migrated by refinery under an advisory lock, so daemons that
//! start together against a new database wait for each other. A database migrated by a newer
//! s3-importd is refused (`TooNew`).
//!
//! Leases: a run's [`ConnectionLock`] is a row of `leases` with an owner, a token raised by
//! every new holder, and an expiry on the database's clock (the hosts' clocks never compare).
//! A task renews it every third of `lease_ttl_s`. `begin_load` and `commit` check the token in
//! their own transaction, and refuse at once when the lease was seen lost or was not renewed
//! in time (a paused process), so an owner whose lease was taken can never commit.
//!
//! What is not here: when to claim or take over (the daemon's loop), and what a run does.

use super::*;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The schema that holds s3-importd's tables.
const SCHEMA: &str = "s3_importd";

/// The advisory lock key held while the schema is created or migrated ("s3imp" in ASCII).
const MIGRATION_LOCK: i64 = 0x0073_3369_6d70;

/// The schema, one refinery migration per version (`V{n}__{name}`).
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "V1__fleet_state",
        r#"
CREATE TABLE connections (
    name TEXT PRIMARY KEY,
    watermark_ms BIGINT,
    table_version BIGINT NOT NULL DEFAULT 1,
    floor_ms BIGINT
);
CREATE TABLE ledger (
    connection TEXT NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    etag TEXT NOT NULL,
    last_modified_ms BIGINT NOT NULL,
    size BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    rows BIGINT NOT NULL,
    bad_rows BIGINT NOT NULL,
    reason TEXT,
    run_id TEXT NOT NULL,
    stamp TEXT,
    PRIMARY KEY (connection, key, etag)
);
CREATE INDEX ledger_by_time ON ledger (connection, last_modified_ms);
CREATE TABLE quarantine (
    id BIGSERIAL PRIMARY KEY,
    connection TEXT NOT NULL,
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    etag TEXT NOT NULL,
    line BIGINT NOT NULL,
    field TEXT,
    reason TEXT NOT NULL,
    raw TEXT NOT NULL
);
CREATE INDEX quarantine_by_connection ON quarantine (connection, id);
CREATE TABLE runs (
    seq BIGSERIAL,
    run_id TEXT PRIMARY KEY,
    connection TEXT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    finished_at_ms BIGINT,
    outcome TEXT NOT NULL,
    listed BIGINT NOT NULL DEFAULT 0,
    new BIGINT NOT NULL DEFAULT 0,
    imported BIGINT NOT NULL DEFAULT 0,
    rejected BIGINT NOT NULL DEFAULT 0,
    failed BIGINT NOT NULL DEFAULT 0,
    rows BIGINT NOT NULL DEFAULT 0,
    bad_rows BIGINT NOT NULL DEFAULT 0,
    bytes BIGINT NOT NULL DEFAULT 0,
    watermark_before_ms BIGINT,
    watermark_after_ms BIGINT,
    output TEXT,
    error TEXT,
    host TEXT
);
CREATE INDEX runs_by_connection ON runs (connection, started_at_ms);
CREATE TABLE pending_loads (
    seq BIGSERIAL,
    run_id TEXT PRIMARY KEY,
    connection TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE retries (
    connection TEXT NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (connection, key)
);
CREATE UNLOGGED TABLE candidates (
    run_id TEXT NOT NULL,
    order_ns BIGINT NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    etag TEXT NOT NULL,
    size BIGINT NOT NULL,
    last_modified TEXT NOT NULL,
    stamp TEXT,
    PRIMARY KEY (run_id, order_ns, key)
);
CREATE TABLE leases (
    connection TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    token BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE occurrences (
    connection TEXT NOT NULL,
    scheduled_at_ms BIGINT NOT NULL,
    owner TEXT NOT NULL,
    claimed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (connection, scheduled_at_ms)
);
CREATE TABLE daemons (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    seen_at TIMESTAMPTZ NOT NULL
);
"#,
    ),
    // `retry` acknowledges the errors of the runs before it (as in the SQLite store).
    (
        "V2__errors_cleared",
        "ALTER TABLE connections ADD COLUMN errors_cleared_ms BIGINT;",
    ),
    // Event mode: an event load's delay from its oldest object's LastModified to the commit.
    (
        "V3__event_delay",
        "ALTER TABLE runs ADD COLUMN event_delay_ms BIGINT;",
    ),
];

/// When the claim `o` of an occurrence has lapsed: its owner has not beaten within the lease
/// TTL (the statement's parameter `ttl`, in seconds), nobody holds the connection's lease, and
/// no run of the connection that started at or after the occurrence reached its end (`ok` or
/// `failed`: a run killed midway stays `running`, or is marked `interrupted`).
fn lapsed(ttl: &str) -> String {
    format!(
        "NOT EXISTS (SELECT 1 FROM daemons d WHERE d.id = o.owner
                         AND d.seen_at > now() - make_interval(secs => {ttl}::double precision))
         AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.connection = o.connection AND l.expires_at > now())
         AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.connection = o.connection
                         AND r.started_at_ms >= o.scheduled_at_ms AND r.outcome IN ('ok', 'failed'))"
    )
}

/// The token of the lease on `connection` in the table, if any.
async fn lease_token(
    client: &impl tokio_postgres::GenericClient,
    connection: &str,
) -> Result<Option<i64>, tokio_postgres::Error> {
    let row = client
        .query_opt("SELECT token FROM leases WHERE connection = $1", &[&connection])
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Why a lease this process held (`ours`, its token) is no longer usable, given the token the
/// table holds now (`None`: the store could not say): taken over when another token is there,
/// else out of contact.
fn loss_of(token: Option<i64>, ours: Option<i64>) -> LeaseLoss {
    if token.is_some() && token != ours {
        LeaseLoss::TakenOver
    } else {
        LeaseLoss::LostContact
    }
}

/// A lease this process holds.
struct Held {
    token: i64,
    /// Set when a renewal found the lease in another owner's hands.
    lost: AtomicBool,
    /// Until when the lease is surely ours: the start of its last renewal plus the TTL.
    valid_until: Mutex<Instant>,
}

impl Held {
    fn usable(&self) -> bool {
        !self.lost.load(Ordering::SeqCst)
            && Instant::now() < *self.valid_until.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The state store on a PostgreSQL database.
pub struct PostgresStore {
    pool: Pool,
    /// Host and database, for messages (never the URL: it may hold a password).
    server: String,
    owner: Owner,
    lease_ttl: Duration,
    /// The leases this process holds, by connection.
    held: Arc<Mutex<HashMap<String, Arc<Held>>>>,
}

/// Releases a lease when its run ends: the renewal stops and the lease expires now. The row
/// stays, so the next holder's token is higher still.
struct LeaseGuard {
    connection: String,
    held: Arc<Held>,
    renewal: tokio::task::JoinHandle<()>,
    pool: Pool,
    owner: String,
    map: Arc<Mutex<HashMap<String, Arc<Held>>>>,
    /// Set once the lease was given back by [`ConnectionLock::release`].
    released: Arc<AtomicBool>,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        self.renewal.abort();
        {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            if map
                .get(&self.connection)
                .is_some_and(|h| Arc::ptr_eq(h, &self.held))
            {
                map.remove(&self.connection);
            }
        }
        if self.released.load(Ordering::SeqCst) {
            return;
        }
        // Not released (a run that panicked, say): give the lease back in the background.
        // Without a runtime (the process is ending) the lease simply expires.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(expire(
                self.pool.clone(),
                self.connection.clone(),
                self.held.token,
                self.owner.clone(),
            ));
        }
    }
}

/// Stops a lease's renewals, then ends it: what [`ConnectionLock::release`] runs.
async fn expire_after(
    renewals: tokio::task::AbortHandle,
    released: Arc<AtomicBool>,
    pool: Pool,
    connection: String,
    token: i64,
    owner: String,
) {
    renewals.abort();
    released.store(true, Ordering::SeqCst);
    expire(pool, connection, token, owner).await;
}

/// Ends a lease now, if it is still this token's.
async fn expire(pool: Pool, connection: String, token: i64, owner: String) {
    if let Ok(client) = pool.get().await {
        let _ = client
            .execute(
                "UPDATE leases SET expires_at = now() - interval '1 millisecond'
                 WHERE connection = $1 AND token = $2 AND owner = $3",
                &[&connection, &token, &owner],
            )
            .await;
    }
}

/// Host and database of a tokio-postgres configuration, for messages.
fn describe_server(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("postgres://{host}:{port}/{}", config.get_dbname().unwrap_or(""))
}

/// Whether a database error is worth trying again: the connection broke, the server is
/// shutting down or out of connections, or a serialization failure or deadlock.
fn retryable(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        Some(code) => {
            matches!(
                code.code(),
                "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300"
            ) || code.code().starts_with("08")
        }
        None => e.is_closed(),
    }
}

impl PostgresStore {
    /// The lease TTL in seconds, as SQL takes it.
    fn ttl_seconds(&self) -> f64 {
        self.lease_ttl.as_secs_f64()
    }

    /// Connects to the database of `url`, creating the schema or migrating it.
    pub async fn open(url: &crate::secret::Secret, lease_ttl: Duration) -> Result<PostgresStore, StateError> {
        let (mut config, tls) = crate::pg_client::client_config(url).map_err(StateError::Url)?;
        crate::pg_client::add_session_option(&mut config, &format!("search_path={SCHEMA}"));
        if config.get_application_name().is_none() {
            config.application_name("s3-importd");
        }
        config.connect_timeout(Duration::from_secs(10));
        let server = describe_server(&config);
        let manager = Manager::from_config(
            config,
            tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(16)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_secs(30)))
            .create_timeout(Some(Duration::from_secs(15)))
            .build()
            .map_err(|e| StateError::Url(format!("{server}: {e}")))?;
        let store = PostgresStore {
            pool,
            server,
            owner: Owner::this_process(),
            lease_ttl,
            held: Arc::new(Mutex::new(HashMap::new())),
        };
        store.migrate().await?;
        Ok(store)
    }

    fn err(&self, e: tokio_postgres::Error) -> StateError {
        StateError::Postgres {
            server: self.server.clone(),
            retryable: retryable(&e),
            message: crate::aws::cause_chain(&e),
        }
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StateError> {
        self.pool.get().await.map_err(|e| StateError::Postgres {
            server: self.server.clone(),
            retryable: true,
            message: match e {
                deadpool_postgres::PoolError::Backend(e) => crate::aws::cause_chain(&e),
                other => other.to_string(),
            },
        })
    }

    /// Creates the schema and runs refinery's migrations, under an advisory lock held on the
    /// same session; refuses a schema newer than this binary knows.
    async fn migrate(&self) -> Result<(), StateError> {
        let mut client = self.client().await?;
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(|e| self.err(e))?;
        let result = self.migrate_locked(&mut client).await;
        let _ = client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await;
        result
    }

    async fn migrate_locked(&self, client: &mut deadpool_postgres::Object) -> Result<(), StateError> {
        client
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
            .await
            .map_err(|e| self.err(e))?;
        let migrations = MIGRATIONS
            .iter()
            .map(|(name, sql)| refinery::Migration::unapplied(name, sql))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StateError::Url(format!("a built-in migration is malformed: {e}")))?;
        let runner = refinery::Runner::new(&migrations);
        let pg: &mut tokio_postgres::Client = &mut *client;
        // The history table exists once any daemon migrated; a version above ours is a newer
        // s3-importd's schema.
        let exists: bool = pg
            .query_one("SELECT to_regclass('refinery_schema_history') IS NOT NULL", &[])
            .await
            .map_err(|e| self.err(e))?
            .get(0);
        if exists {
            let found: Option<i32> = pg
                .query_one("SELECT max(version) FROM refinery_schema_history", &[])
                .await
                .map_err(|e| self.err(e))?
                .get(0);
            let known = MIGRATIONS.len() as i64;
            if let Some(found) = found.map(i64::from).filter(|f| *f > known) {
                return Err(StateError::TooNew {
                    path: self.server.clone(),
                    found,
                    known,
                });
            }
        }
        runner.run_async(pg).await.map_err(|e| StateError::Postgres {
            server: self.server.clone(),
            retryable: false,
            message: format!("migrating the schema: {e}"),
        })?;
        Ok(())
    }

    /// The lease this process holds on `connection`, if it is still surely ours.
    fn held(&self, connection: &str) -> Result<Arc<Held>, StateError> {
        let held = self
            .held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(connection)
            .cloned();
        match held {
            Some(h) if h.usable() => Ok(h),
            // A renewal saw another owner's token: taken over. Otherwise no renewal reached the
            // store within the TTL (or the lease was never taken): out of contact, as far as
            // this process knows; `fence` asks the store which it was.
            Some(h) if h.lost.load(Ordering::SeqCst) => {
                Err(self.lease_lost(connection, LeaseLoss::TakenOver))
            }
            _ => Err(self.lease_lost(connection, LeaseLoss::LostContact)),
        }
    }

    fn lease_lost(&self, connection: &str, loss: LeaseLoss) -> StateError {
        StateError::LeaseLost {
            connection: connection.to_string(),
            loss,
        }
    }

    /// Checks, inside `tx`, that this process still holds the lease of `connection`, and
    /// extends it: the row is locked until the transaction ends, so no one takes the lease
    /// between the check and the commit.
    async fn fence(&self, tx: &tokio_postgres::Transaction<'_>, connection: &str) -> Result<(), StateError> {
        let held = match self.held(connection) {
            Ok(held) => held,
            Err(StateError::LeaseLost {
                loss: LeaseLoss::LostContact,
                ..
            }) => {
                // The lease lapsed here; whether another daemon has taken it since is the
                // store's to say (and it answers now). Either way, nothing is committed.
                let ours = self
                    .held
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(connection)
                    .map(|h| h.token);
                let token = lease_token(tx, connection).await.map_err(|e| self.err(e))?;
                return Err(self.lease_lost(connection, loss_of(token, ours)));
            }
            Err(e) => return Err(e),
        };
        let ttl_ms = self.lease_ttl.as_millis() as i64;
        let renewed = tx
            .execute(
                "UPDATE leases SET expires_at = now() + $4::bigint * interval '1 millisecond'
                 WHERE connection = $1 AND token = $2 AND owner = $3",
                &[&connection, &held.token, &self.owner.id, &ttl_ms],
            )
            .await
            .map_err(|e| self.err(e))?;
        if renewed == 1 {
            Ok(())
        } else {
            held.lost.store(true, Ordering::SeqCst);
            Err(self.lease_lost(connection, LeaseLoss::TakenOver))
        }
    }

    /// Recent runs matching an extra SQL condition, newest first.
    async fn runs_where(
        &self,
        connection: &str,
        condition: &str,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StateError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT run_id, connection, started_at_ms, finished_at_ms, outcome, listed, new, imported,
                            rejected, failed, rows, bad_rows, bytes, watermark_before_ms, watermark_after_ms,
                            output, error, host, event_delay_ms
                     FROM runs WHERE connection = $1 {condition}
                     ORDER BY started_at_ms DESC, seq DESC LIMIT $2"
                ),
                &[&connection, &(limit.min(i64::MAX as usize) as i64)],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(rows.iter().map(run_record).collect())
    }

    /// Runs `sql` with a statement prepared once per pooled connection: a bare `query` would
    /// prepare it again each time, a round trip more per question.
    async fn query_cached(
        &self,
        client: &deadpool_postgres::Object,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StateError> {
        let statement = client.prepare_cached(sql).await.map_err(|e| self.err(e))?;
        client.query(&statement, params).await.map_err(|e| self.err(e))
    }

    fn corrupt(&self, message: String) -> StateError {
        StateError::Corrupt {
            path: self.server.clone(),
            message,
        }
    }
}

fn run_record(r: &tokio_postgres::Row) -> RunRecord {
    let n = |i: usize| r.get::<_, i64>(i).max(0) as u64;
    RunRecord {
        run_id: r.get(0),
        connection: r.get(1),
        started_at: r.get::<_, Option<i64>>(2).and_then(from_ms),
        finished_at: r.get::<_, Option<i64>>(3).and_then(from_ms),
        outcome: r.get(4),
        counts: RunCounts {
            listed: n(5),
            new: n(6),
            imported: n(7),
            rejected: n(8),
            failed: n(9),
            rows: n(10),
            bad_rows: n(11),
            bytes: n(12),
        },
        watermark_before: r.get::<_, Option<i64>>(13).and_then(from_ms),
        watermark_after: r.get::<_, Option<i64>>(14).and_then(from_ms),
        output: r.get(15),
        error: r.get(16),
        host: r.get::<_, Option<String>>(17).unwrap_or_default(),
        event_delay_ms: r.get(18),
    }
}

/// Records what a run counted and how it ended (its start is recorded apart).
async fn update_run(
    db: &impl tokio_postgres::GenericClient,
    r: &RunRecord,
) -> Result<(), tokio_postgres::Error> {
    let c = &r.counts;
    let n = |v: u64| v as i64;
    db.execute(
        "UPDATE runs SET finished_at_ms = $2, outcome = $3, listed = $4, new = $5, imported = $6,
                rejected = $7, failed = $8, rows = $9, bad_rows = $10, bytes = $11,
                watermark_before_ms = $12, watermark_after_ms = $13, output = $14, error = $15,
                event_delay_ms = $16
         WHERE run_id = $1",
        &[
            &r.run_id,
            &r.finished_at.map(ms),
            &r.outcome,
            &n(c.listed),
            &n(c.new),
            &n(c.imported),
            &n(c.rejected),
            &n(c.failed),
            &n(c.rows),
            &n(c.bad_rows),
            &n(c.bytes),
            &r.watermark_before.map(ms),
            &r.watermark_after.map(ms),
            &r.output,
            &r.error,
            &r.event_delay_ms,
        ],
    )
    .await?;
    Ok(())
}

/// The statements of a commit's ledger and quarantine rows, one round trip each whatever
/// their number (arrays unnested on the server).
const LEDGER_UPSERT: &str = "INSERT INTO ledger
        (connection, key, etag, last_modified_ms, size, outcome, rows, bad_rows, reason, run_id, stamp)
     SELECT $1, k, e, lm, sz, o, r, b, re, $2, st
     FROM unnest($3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::text[], $8::bigint[], $9::bigint[],
                 $10::text[], $11::text[]) AS u(k, e, lm, sz, o, r, b, re, st)
     ON CONFLICT (connection, key, etag) DO UPDATE SET
        last_modified_ms = EXCLUDED.last_modified_ms, size = EXCLUDED.size, outcome = EXCLUDED.outcome,
        rows = EXCLUDED.rows, bad_rows = EXCLUDED.bad_rows, reason = EXCLUDED.reason,
        run_id = EXCLUDED.run_id, stamp = EXCLUDED.stamp";

const QUARANTINE_INSERT: &str =
    "INSERT INTO quarantine (connection, run_id, key, etag, line, field, reason, raw)
     SELECT $1, $2, k, e, l, f, r, w
     FROM unnest($3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[], $8::text[])
          WITH ORDINALITY AS u(k, e, l, f, r, w, i)
     ORDER BY i";

/// Writes ledger entries (each with its run) in one statement.
async fn upsert_ledger(
    tx: &tokio_postgres::Transaction<'_>,
    connection: &str,
    run_id: &str,
    entries: &[&Settled],
) -> Result<u64, tokio_postgres::Error> {
    if entries.is_empty() {
        return Ok(0);
    }
    let keys: Vec<&str> = entries.iter().map(|s| s.key.as_str()).collect();
    let etags: Vec<&str> = entries.iter().map(|s| s.etag.as_str()).collect();
    let lms: Vec<i64> = entries.iter().map(|s| ms(s.last_modified)).collect();
    let sizes: Vec<i64> = entries.iter().map(|s| s.size as i64).collect();
    let outcomes: Vec<&str> = entries.iter().map(|s| s.outcome.as_str()).collect();
    let rows: Vec<i64> = entries.iter().map(|s| s.rows as i64).collect();
    let bad: Vec<i64> = entries.iter().map(|s| s.bad_rows as i64).collect();
    let reasons: Vec<Option<&str>> = entries.iter().map(|s| s.reason.as_deref()).collect();
    let stamps: Vec<Option<&str>> = entries.iter().map(|s| s.stamp.as_deref()).collect();
    tx.execute(
        LEDGER_UPSERT,
        &[
            &connection,
            &run_id,
            &keys,
            &etags,
            &lms,
            &sizes,
            &outcomes,
            &rows,
            &bad,
            &reasons,
            &stamps,
        ],
    )
    .await
}

/// Writes quarantined rows in one statement, in order.
async fn insert_quarantine(
    tx: &tokio_postgres::Transaction<'_>,
    connection: &str,
    run_id: &str,
    rows: &[&Quarantined],
) -> Result<u64, tokio_postgres::Error> {
    if rows.is_empty() {
        return Ok(0);
    }
    let keys: Vec<&str> = rows.iter().map(|q| q.key.as_str()).collect();
    let etags: Vec<&str> = rows.iter().map(|q| q.etag.as_str()).collect();
    let lines: Vec<i64> = rows.iter().map(|q| q.error.line as i64).collect();
    let fields: Vec<Option<&str>> = rows.iter().map(|q| q.error.field.as_deref()).collect();
    let reasons: Vec<&str> = rows.iter().map(|q| q.error.reason.text()).collect();
    let raws: Vec<&str> = rows.iter().map(|q| q.error.raw.as_str()).collect();
    tx.execute(
        QUARANTINE_INSERT,
        &[
            &connection,
            &run_id,
            &keys,
            &etags,
            &lines,
            &fields,
            &reasons,
            &raws,
        ],
    )
    .await
}

impl StoreInfo for PostgresStore {
    fn describe(&self) -> String {
        self.server.clone()
    }

    fn shared(&self) -> bool {
        true
    }

    fn owner(&self) -> &Owner {
        &self.owner
    }
}

#[async_trait]
impl RunState for PostgresStore {
    async fn lock(&self, connection: &str) -> Result<ConnectionLock, StateError> {
        let ttl_ms = self.lease_ttl.as_millis() as i64;
        let started = Instant::now();
        let client = self.client().await?;
        // A new lease, or one whose holder let it expire: the token goes up by one either way.
        let row = client
            .query_opt(
                "INSERT INTO leases (connection, owner, token, expires_at)
                 VALUES ($1, $2, 1, now() + $3::bigint * interval '1 millisecond')
                 ON CONFLICT (connection) DO UPDATE SET
                     owner = EXCLUDED.owner, token = leases.token + 1, expires_at = EXCLUDED.expires_at
                 WHERE leases.expires_at < now()
                 RETURNING token",
                &[&connection, &self.owner.id, &ttl_ms],
            )
            .await
            .map_err(|e| self.err(e))?;
        drop(client);
        let Some(row) = row else {
            return Err(StateError::Busy {
                connection: connection.to_string(),
            });
        };
        let held = Arc::new(Held {
            token: row.get(0),
            lost: AtomicBool::new(false),
            valid_until: Mutex::new(started + self.lease_ttl),
        });
        self.held
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(connection.to_string(), held.clone());
        let renewal = tokio::spawn(renew(
            self.pool.clone(),
            connection.to_string(),
            self.owner.id.clone(),
            held.clone(),
            self.lease_ttl,
        ));
        let released = Arc::new(AtomicBool::new(false));
        // Released: the renewals stop first, so none extends the lease after it ended.
        let release = {
            let (stop_renewing, released) = (renewal.abort_handle(), released.clone());
            expire_after(
                stop_renewing,
                released,
                self.pool.clone(),
                connection.to_string(),
                held.token,
                self.owner.id.clone(),
            )
        };
        Ok(ConnectionLock::with_release(
            LeaseGuard {
                connection: connection.to_string(),
                held,
                renewal,
                pool: self.pool.clone(),
                owner: self.owner.id.clone(),
                map: self.held.clone(),
                released,
            },
            release,
        ))
    }

    async fn connection(&self, name: &str) -> Result<ConnectionState, StateError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT watermark_ms, table_version, floor_ms FROM connections WHERE name = $1",
                &[&name],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(ConnectionState::from_row(
            row.map(|r| (r.get(0), r.get(1), r.get(2))),
        ))
    }

    async fn settled_among(
        &self,
        connection: &str,
        objects: &[(&str, &str)],
    ) -> Result<Vec<bool>, StateError> {
        if objects.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<&str> = objects.iter().map(|o| o.0).collect();
        let etags: Vec<&str> = objects.iter().map(|o| o.1).collect();
        let client = self.client().await?;
        let rows = self
            .query_cached(
                &client,
                "SELECT u.i FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS u(k, e, i)
                 JOIN ledger l ON l.connection = $1 AND l.key = u.k AND l.etag = u.e",
                &[&connection, &keys, &etags],
            )
            .await?;
        let mut answers = vec![false; objects.len()];
        for r in rows {
            let i = r.get::<_, i64>(0) as usize;
            if let Some(a) = i.checked_sub(1).and_then(|i| answers.get_mut(i)) {
                *a = true;
            }
        }
        Ok(answers)
    }

    async fn versions_by_stamp(
        &self,
        connection: &str,
        objects: &[(&str, &str)],
    ) -> Result<Vec<Option<String>>, StateError> {
        if objects.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<&str> = objects.iter().map(|o| o.0).collect();
        let stamps: Vec<&str> = objects.iter().map(|o| o.1).collect();
        let client = self.client().await?;
        let rows = self
            .query_cached(
                &client,
                "SELECT DISTINCT ON (u.i) u.i, l.etag
                 FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS u(k, s, i)
                 JOIN ledger l ON l.connection = $1 AND l.key = u.k AND l.stamp = u.s
                 ORDER BY u.i",
                &[&connection, &keys, &stamps],
            )
            .await?;
        let mut answers = vec![None; objects.len()];
        for r in rows {
            let i = r.get::<_, i64>(0) as usize;
            if let Some(a) = i.checked_sub(1).and_then(|i| answers.get_mut(i)) {
                *a = Some(r.get(1));
            }
        }
        Ok(answers)
    }

    async fn start_run(&self, connection: &str, run_id: &str, at: DateTime<Utc>) -> Result<(), StateError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        tx.execute(
            "UPDATE runs SET outcome = 'interrupted' WHERE connection = $1 AND outcome = 'running'",
            &[&connection],
        )
        .await
        .map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT INTO runs (run_id, connection, started_at_ms, outcome, host) VALUES ($1, $2, $3, 'running', $4)",
            &[&run_id, &connection, &ms(at), &self.owner.host],
        )
        .await
        .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))
    }

    async fn finish_run(&self, r: &RunRecord) -> Result<(), StateError> {
        let client = self.client().await?;
        update_run(&**client, r).await.map_err(|e| self.err(e))
    }

    async fn pending_loads(&self, connection: &str) -> Result<Vec<PendingLoad>, StateError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT record FROM pending_loads WHERE connection = $1 ORDER BY seq",
                &[&connection],
            )
            .await
            .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| {
                serde_json::from_str(r.get::<_, &str>(0))
                    .map_err(|e| self.corrupt(format!("pending load of {connection}: {e}")))
            })
            .collect()
    }

    async fn begin_load(&self, load: &PendingLoad) -> Result<(), StateError> {
        let record = serde_json::to_string(load).map_err(|e| self.corrupt(e.to_string()))?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        self.fence(&tx, &load.connection).await?;
        tx.execute(
            "INSERT INTO pending_loads (run_id, connection, record) VALUES ($1, $2, $3)",
            &[&load.run_id, &load.connection, &record],
        )
        .await
        .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))
    }

    async fn commit(&self, plan: &CommitPlan) -> Result<(), StateError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        self.fence(&tx, &plan.connection).await?;
        let c = plan.connection.as_str();
        let settled: Vec<&Settled> = plan.settled.iter().collect();
        upsert_ledger(&tx, c, &plan.run_id, &settled)
            .await
            .map_err(|e| self.err(e))?;
        let keys: Vec<&str> = plan.settled.iter().map(|s| s.key.as_str()).collect();
        if !keys.is_empty() {
            tx.execute(
                "DELETE FROM retries WHERE connection = $1 AND key = ANY($2::text[])",
                &[&c, &keys],
            )
            .await
            .map_err(|e| self.err(e))?;
        }
        let quarantine: Vec<&Quarantined> = plan.quarantine.iter().collect();
        insert_quarantine(&tx, c, &plan.run_id, &quarantine)
            .await
            .map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT INTO connections (name, watermark_ms) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET watermark_ms = GREATEST(coalesce(connections.watermark_ms, $2), $2)",
            // GREATEST ignores a NULL: a plan without a watermark leaves it as it is.
            &[&c, &plan.watermark.map(ms)],
        )
        .await
        .map_err(|e| self.err(e))?;
        tx.execute("DELETE FROM pending_loads WHERE run_id = $1", &[&plan.run_id])
            .await
            .map_err(|e| self.err(e))?;
        // As with SQLite: imported entries behind the overlap band can never be candidates
        // again; rejections stay for `retry --rejected`.
        let pruned = tx
            .execute(
                "DELETE FROM ledger WHERE connection = $1 AND outcome = 'imported' AND last_modified_ms <
                    (SELECT watermark_ms FROM connections WHERE name = $1) - $2",
                &[&c, &crate::select::OVERLAP.num_milliseconds()],
            )
            .await
            .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        if pruned > 0 {
            // The pruned rows' space is reused at once, and the table's empty end given back to
            // the file system, rather than when autovacuum comes by. An optimisation: skipped
            // while another vacuum holds the table, and a failure changes nothing committed.
            if let Err(e) = client.batch_execute("VACUUM (SKIP_LOCKED) ledger").await {
                tracing::debug!(error = %e, "vacuuming the ledger after pruning failed");
            }
        }
        Ok(())
    }

    async fn discard_load(&self, run_id: &str) -> Result<(), StateError> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM pending_loads WHERE run_id = $1", &[&run_id])
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn stage_candidates(&self, run_id: &str, batch: &[ObjectMeta]) -> Result<(), StateError> {
        if batch.is_empty() {
            return Ok(());
        }
        let orders: Vec<i64> = batch.iter().map(|m| order_ns(m.last_modified)).collect();
        let keys: Vec<&str> = batch.iter().map(|m| m.key.as_str()).collect();
        let etags: Vec<&str> = batch.iter().map(|m| m.etag.as_str()).collect();
        let sizes: Vec<i64> = batch.iter().map(|m| m.size as i64).collect();
        let lms: Vec<String> = batch
            .iter()
            .map(|m| {
                m.last_modified
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            })
            .collect();
        let stamps: Vec<Option<&str>> = batch.iter().map(|m| m.stamp.as_deref()).collect();
        let client = self.client().await?;
        let statement = client
            .prepare_cached(
                "INSERT INTO candidates (run_id, order_ns, key, etag, size, last_modified, stamp)
                 SELECT $1, o, k, e, s, l, st
                 FROM unnest($2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[])
                      AS u(o, k, e, s, l, st)
                 ON CONFLICT DO NOTHING",
            )
            .await
            .map_err(|e| self.err(e))?;
        client
            .execute(
                &statement,
                &[&run_id, &orders, &keys, &etags, &sizes, &lms, &stamps],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn staged_candidates(
        &self,
        run_id: &str,
        after: Option<&ObjectMeta>,
        limit: usize,
    ) -> Result<Vec<ObjectMeta>, StateError> {
        let (after_ns, after_key) = super::staged_cursor(after);
        let client = self.client().await?;
        let rows = self
            .query_cached(
                &client,
                "SELECT key, etag, size, last_modified, stamp FROM candidates
                 WHERE run_id = $1 AND (order_ns, key) > ($2, $3::text COLLATE \"C\")
                 ORDER BY order_ns, key LIMIT $4",
                &[
                    &run_id,
                    &after_ns,
                    &after_key,
                    &(limit.min(i64::MAX as usize) as i64),
                ],
            )
            .await?;
        rows.iter()
            .map(|r| {
                super::staged_meta(r.get(0), r.get(1), r.get(2), r.get::<_, &str>(3), r.get(4))
                    .map_err(|message| self.corrupt(message))
            })
            .collect()
    }

    async fn clear_candidates(&self, run_id: &str) -> Result<(), StateError> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM candidates WHERE run_id = $1", &[&run_id])
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn retries(&self, connection: &str) -> Result<Vec<String>, StateError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT key FROM retries WHERE connection = $1 ORDER BY key",
                &[&connection],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

#[async_trait]
impl AdminState for PostgresStore {
    async fn runs(&self, connection: &str, limit: usize) -> Result<Vec<RunRecord>, StateError> {
        self.runs_where(connection, "", limit).await
    }

    async fn overview(&self, connection: &str) -> Result<Overview, StateError> {
        let state = self.connection(connection).await?;
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM ledger WHERE connection = $1),
                        (SELECT count(*) FROM quarantine WHERE connection = $1)",
                &[&connection],
            )
            .await
            .map_err(|e| self.err(e))?;
        drop(client);
        Ok(Overview {
            state,
            ledger_size: row.get::<_, i64>(0).max(0) as u64,
            quarantined: row.get::<_, i64>(1).max(0) as u64,
            last_run: self.runs(connection, 1).await?.pop(),
            last_import: self.runs_where(connection, "AND rows > 0", 1).await?.pop(),
            last_error: self
                .runs_where(
                    connection,
                    "AND error IS NOT NULL AND started_at_ms > \
                     COALESCE((SELECT errors_cleared_ms FROM connections WHERE name = $1), -1)",
                    1,
                )
                .await?
                .pop(),
        })
    }

    async fn ledger(&self, connection: &str) -> Result<Vec<(String, String, String)>, StateError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT key, etag, outcome FROM ledger WHERE connection = $1 ORDER BY last_modified_ms, key",
                &[&connection],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
    }

    async fn quarantine(&self, connection: &str, limit: usize) -> Result<Vec<Quarantined>, StateError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT key, etag, line, field, reason, raw FROM quarantine
                 WHERE connection = $1 ORDER BY id DESC LIMIT $2",
                &[&connection, &(limit.min(i64::MAX as usize) as i64)],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(rows.iter().map(quarantined).collect())
    }

    async fn reset(&self, connection: &str, since: DateTime<Utc>) -> Result<Reset, StateError> {
        refuse_while_pending(self, connection).await?;
        let before = self.connection(connection).await?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        let forgotten = tx
            .execute(
                "DELETE FROM ledger WHERE connection = $1 AND last_modified_ms >= $2",
                &[&connection, &ms(since)],
            )
            .await
            .map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT INTO connections (name, watermark_ms, table_version, floor_ms) VALUES ($1, NULL, 2, $2)
             ON CONFLICT (name) DO UPDATE SET
                 watermark_ms = CASE WHEN connections.watermark_ms IS NULL THEN NULL
                                     ELSE LEAST(connections.watermark_ms, $2) END,
                 table_version = connections.table_version + 1,
                 floor_ms = $2",
            &[&connection, &ms(since)],
        )
        .await
        .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        drop(client);
        Ok(Reset {
            before,
            after: self.connection(connection).await?,
            forgotten,
        })
    }

    async fn retry(&self, connection: &str, keys: &[String], rejected: bool) -> Result<Retry, StateError> {
        refuse_while_pending(self, connection).await?;
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        let mut all: Vec<String> = keys.to_vec();
        if rejected {
            let rows = tx
                .query(
                    "SELECT DISTINCT key FROM ledger WHERE connection = $1 AND outcome = 'rejected'",
                    &[&connection],
                )
                .await
                .map_err(|e| self.err(e))?;
            all.extend(rows.iter().map(|r| r.get::<_, String>(0)));
        }
        all.sort();
        all.dedup();
        let forgotten = tx
            .execute(
                "DELETE FROM ledger WHERE connection = $1 AND key = ANY($2::text[])",
                &[&connection, &all],
            )
            .await
            .map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT INTO retries (connection, key) SELECT $1, k FROM unnest($2::text[]) AS u(k)
             ON CONFLICT DO NOTHING",
            &[&connection, &all],
        )
        .await
        .map_err(|e| self.err(e))?;
        // The next run checks the objects again and quarantines what is still bad; the errors
        // so far are acknowledged.
        tx.execute(
            "DELETE FROM quarantine WHERE connection = $1 AND key = ANY($2::text[])",
            &[&connection, &all],
        )
        .await
        .map_err(|e| self.err(e))?;
        if !all.is_empty() {
            tx.execute(
                "INSERT INTO connections (name, errors_cleared_ms) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET errors_cleared_ms = excluded.errors_cleared_ms",
                &[&connection, &ms(Utc::now())],
            )
            .await
            .map_err(|e| self.err(e))?;
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(Retry { keys: all, forgotten })
    }
}

#[async_trait]
impl FleetState for PostgresStore {
    async fn last_completed_run_start(&self, connection: &str) -> Result<Option<DateTime<Utc>>, StateError> {
        Ok(self
            .runs_where(connection, "AND outcome IN ('ok', 'failed')", 1)
            .await?
            .pop()
            .and_then(|r| r.started_at))
    }

    async fn claim_occurrence(&self, connection: &str, at: DateTime<Utc>) -> Result<Claim, StateError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO occurrences (connection, scheduled_at_ms, owner) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                &[&connection, &ms(at), &self.owner.id],
            )
            .await
            .map_err(|e| self.err(e))?;
        // A claim whose owner died before its run ended passes to this process (one row
        // updated, compare-and-swap on the owner: of several daemons asking, one gets it).
        let retaken = client
            .query_opt(
                &format!(
                    "WITH lapsed AS (
                         SELECT o.owner FROM occurrences o
                         WHERE o.connection = $1 AND o.scheduled_at_ms = $2 AND o.owner <> $3 AND {}
                         FOR UPDATE SKIP LOCKED
                     )
                     UPDATE occurrences o SET owner = $3, claimed_at = now()
                     FROM lapsed
                     WHERE o.connection = $1 AND o.scheduled_at_ms = $2 AND o.owner = lapsed.owner
                     RETURNING lapsed.owner",
                    lapsed("$4")
                ),
                &[&connection, &ms(at), &self.owner.id, &self.ttl_seconds()],
            )
            .await
            .map_err(|e| self.err(e))?;
        if let Some(row) = retaken {
            return Ok(Claim::Retaken { from: row.get(0) });
        }
        let owner: String = client
            .query_one(
                "SELECT owner FROM occurrences WHERE connection = $1 AND scheduled_at_ms = $2",
                &[&connection, &ms(at)],
            )
            .await
            .map_err(|e| self.err(e))?
            .get(0);
        // Claims older than a week answer no question any more.
        let _ = client
            .execute(
                "DELETE FROM occurrences WHERE connection = $1 AND claimed_at < now() - interval '7 days'",
                &[&connection],
            )
            .await;
        Ok(if owner == self.owner.id {
            Claim::Won
        } else {
            Claim::Elsewhere { owner }
        })
    }

    async fn lapsed_occurrences(&self) -> Result<Vec<(String, DateTime<Utc>)>, StateError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT o.connection, o.scheduled_at_ms FROM occurrences o
                     WHERE o.claimed_at > now() - interval '1 day' AND {}
                     ORDER BY o.scheduled_at_ms, o.connection",
                    lapsed("$1")
                ),
                &[&self.ttl_seconds()],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(rows
            .iter()
            .filter_map(|r| Some((r.get(0), from_ms(r.get(1))?)))
            .collect())
    }

    async fn heartbeat(&self, config_hash: &str, started_at: DateTime<Utc>) -> Result<(), StateError> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO daemons (id, host, config_hash, started_at_ms, seen_at) VALUES ($1, $2, $3, $4, now())
                 ON CONFLICT (id) DO UPDATE SET config_hash = $3, seen_at = now()",
                &[&self.owner.id, &self.owner.host, &config_hash, &ms(started_at)],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn daemons(&self, since: DateTime<Utc>) -> Result<Vec<DaemonRecord>, StateError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, host, config_hash, started_at_ms, (extract(epoch FROM seen_at) * 1000)::bigint
                 FROM daemons WHERE seen_at >= to_timestamp($1::bigint / 1000.0)
                 ORDER BY seen_at DESC, id",
                &[&ms(since)],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(rows
            .iter()
            .map(|r| DaemonRecord {
                id: r.get(0),
                host: r.get(1),
                config_hash: r.get(2),
                started_at: from_ms(r.get(3)).unwrap_or_default(),
                seen_at: from_ms(r.get(4)).unwrap_or_default(),
            })
            .collect())
    }

    async fn leases(&self) -> Result<Vec<LeaseRecord>, StateError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT connection, owner, (extract(epoch FROM expires_at) * 1000)::bigint
                 FROM leases WHERE expires_at > now() ORDER BY connection",
                &[],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(rows
            .iter()
            .map(|r| LeaseRecord {
                connection: r.get(0),
                owner: r.get(1),
                expires_at: from_ms(r.get(2)),
            })
            .collect())
    }

    async fn orphaned(&self) -> Result<Vec<String>, StateError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT DISTINCT p.connection FROM pending_loads p
                 WHERE NOT EXISTS (SELECT 1 FROM leases l WHERE l.connection = p.connection AND l.expires_at > now())
                 ORDER BY 1",
                &[],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

#[async_trait]
impl MigrationState for PostgresStore {
    async fn connection_names(&self) -> Result<Vec<String>, StateError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT name FROM connections UNION SELECT connection FROM runs
                 UNION SELECT connection FROM ledger UNION SELECT connection FROM pending_loads ORDER BY 1",
                &[],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn ledger_entries(&self, connection: &str) -> Result<Vec<(Settled, String)>, StateError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT key, etag, last_modified_ms, size, stamp, outcome, rows, bad_rows, reason, run_id
                 FROM ledger WHERE connection = $1 ORDER BY last_modified_ms, key, etag",
                &[&connection],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    Settled {
                        key: r.get(0),
                        etag: r.get(1),
                        last_modified: from_ms(r.get(2)).unwrap_or_default(),
                        size: r.get::<_, i64>(3).max(0) as u64,
                        stamp: r.get(4),
                        outcome: Outcome::parse(r.get(5)),
                        rows: r.get::<_, i64>(6).max(0) as u64,
                        bad_rows: r.get::<_, i64>(7).max(0) as u64,
                        reason: r.get(8),
                    },
                    r.get(9),
                )
            })
            .collect())
    }

    async fn quarantine_entries(&self, connection: &str) -> Result<Vec<(Quarantined, String)>, StateError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT key, etag, line, field, reason, raw, run_id FROM quarantine WHERE connection = $1 ORDER BY id",
                &[&connection],
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(rows.iter().map(|r| (quarantined(r), r.get(6))).collect())
    }

    async fn import(&self, dump: &ConnectionDump) -> Result<(), StateError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(|e| self.err(e))?;
        let c = dump.name.as_str();
        for table in [
            "ledger",
            "quarantine",
            "runs",
            "retries",
            "pending_loads",
            "connections",
        ] {
            let column = if table == "connections" {
                "name"
            } else {
                "connection"
            };
            tx.execute(&format!("DELETE FROM {table} WHERE {column} = $1"), &[&c])
                .await
                .map_err(|e| self.err(e))?;
        }
        tx.execute(
            "INSERT INTO connections (name, watermark_ms, table_version, floor_ms) VALUES ($1, $2, $3, $4)",
            &[
                &c,
                &dump.watermark.map(ms),
                &(dump.table_version as i64),
                &dump.floor.map(ms),
            ],
        )
        .await
        .map_err(|e| self.err(e))?;
        // The ledger in runs' groups, one statement per thousand entries.
        for chunk in dump.ledger.chunks(1000) {
            let mut by_run: std::collections::BTreeMap<&str, Vec<&Settled>> = Default::default();
            for (s, run) in chunk {
                by_run.entry(run.as_str()).or_default().push(s);
            }
            for (run, entries) in by_run {
                upsert_ledger(&tx, c, run, &entries)
                    .await
                    .map_err(|e| self.err(e))?;
            }
        }
        for (q, run) in &dump.quarantine {
            insert_quarantine(&tx, c, run, &[q])
                .await
                .map_err(|e| self.err(e))?;
        }
        for r in &dump.runs {
            tx.execute(
                "INSERT INTO runs (run_id, connection, started_at_ms, outcome, host) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (run_id) DO NOTHING",
                &[&r.run_id, &c, &r.started_at.map(ms).unwrap_or(0), &r.outcome, &r.host],
            )
            .await
            .map_err(|e| self.err(e))?;
            update_run(&*tx, r).await.map_err(|e| self.err(e))?;
        }
        tx.execute(
            "INSERT INTO retries (connection, key) SELECT $1, k FROM unnest($2::text[]) AS u(k) ON CONFLICT DO NOTHING",
            &[&c, &dump.retries],
        )
        .await
        .map_err(|e| self.err(e))?;
        for p in &dump.pending {
            let record = serde_json::to_string(p).map_err(|e| self.corrupt(e.to_string()))?;
            tx.execute(
                "INSERT INTO pending_loads (run_id, connection, record) VALUES ($1, $2, $3)",
                &[&p.run_id, &c, &record],
            )
            .await
            .map_err(|e| self.err(e))?;
        }
        tx.commit().await.map_err(|e| self.err(e))
    }
}

fn quarantined(r: &tokio_postgres::Row) -> Quarantined {
    Quarantined {
        key: r.get(0),
        etag: r.get(1),
        error: RowError {
            line: r.get::<_, i64>(2).max(0) as u64,
            field: r.get(3),
            reason: RowFault::Recorded(r.get(4)),
            raw: r.get(5),
        },
    }
}

/// Renews a lease every third of its TTL until the guard stops it. A renewal that finds the
/// lease expired (a pause or a partition outlasted it) or in other hands marks it lost (the run's next `begin_load` or `commit` is refused); one
/// that fails for the database's sake is tried again at the next turn, and the lease is no
/// longer usable once its TTL has passed since the last renewal that succeeded.
async fn renew(pool: Pool, connection: String, owner: String, held: Arc<Held>, ttl: Duration) {
    let ttl_ms = ttl.as_millis() as i64;
    loop {
        tokio::time::sleep(ttl / 3).await;
        let started = Instant::now();
        let renewed = async {
            let client = pool.get().await.map_err(|e| e.to_string())?;
            client
                .execute(
                    "UPDATE leases SET expires_at = now() + $4::bigint * interval '1 millisecond'
                     WHERE connection = $1 AND token = $2 AND owner = $3 AND expires_at > now()",
                    &[&connection, &held.token, &owner, &ttl_ms],
                )
                .await
                .map_err(|e| crate::aws::cause_chain(&e))
        }
        .await;
        match renewed {
            Ok(1) => *held.valid_until.lock().unwrap_or_else(|p| p.into_inner()) = started + ttl,
            Ok(_) => {
                // Expired, or in other hands: which one decides what the operator is told.
                let token = match pool.get().await {
                    Ok(client) => {
                        let client: &tokio_postgres::Client = &client;
                        lease_token(client, &connection).await.ok().flatten()
                    }
                    Err(_) => None,
                };
                if loss_of(token, Some(held.token)) == LeaseLoss::TakenOver {
                    held.lost.store(true, Ordering::SeqCst);
                    tracing::error!(
                        connection = %connection,
                        "the lease of this run was taken over by another daemon; the run stops before its next commit"
                    );
                } else {
                    // Still ours in the table but lapsed: no renewal reached the store in time.
                    *held.valid_until.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
                    tracing::error!(
                        connection = %connection,
                        "the lease of this run lapsed: no renewal reached the state store within lease_ttl_s; the run stops before its next commit"
                    );
                }
                return;
            }
            Err(error) => {
                tracing::warn!(connection = %connection, error = %error, "renewing the lease failed; trying again")
            }
        }
    }
}

//! One run of one connection: the pipeline of docs/design.md §5, in three steps.
//!
//! ```text
//! recover pending loads
//! plan:   list → select                                  (no target, no spool: dry runs stop here)
//! import: for each load of ≤ load_max_objects / load_max_bytes:
//!           fetch + parse + check + spool (concurrently)
//!           settle: prepare → record pending load → deliver → commit
//! ```
//!
//! This module owns the order of those steps and the exactly-once protocol between the target
//! and the state store; every step itself lives elsewhere (sources, [`crate::select`],
//! [`crate::formats`], targets, the state store). It reads time only from the injected clock.

mod object;

pub use object::*;

use crate::clock::Clock;
use crate::config::Connection;
use crate::fault;
use crate::formats::{self, ParseError, ParseStats, Provenance, RowSink};
use crate::keytemplate::KeyValues;
use crate::select::{self, ObjectMeta, SkipReason, Verdict, Window};
use crate::sources::{Source, SourceError};
use crate::spool::{Spool, SpoolFormat, Spooled};
use crate::state::{
    CommitPlan, ConnectionState, LeaseLoss, Outcome, PendingLoad, Quarantined, RunCounts, RunRecord,
    RunState, Settled, StateError,
};
use crate::targets::{Delivery, LoadInfo, LoadPart, Target, TargetError, ValueRules};
use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

/// How many times an object (or a delivery) is tried within one run when it fails in a way
/// that may pass (a dropped connection, throttling that outlasted the SDK's own retries).
const ATTEMPTS: u32 = 3;

/// The first pause between attempts; it doubles each time.
const BACKOFF: Duration = Duration::from_millis(500);

/// Everything one run works with.
pub struct RunEnv<'a> {
    pub connection: &'a Connection,
    pub source: &'a dyn Source,
    pub target: &'a dyn Target,
    pub state: &'a dyn RunState,
    pub clock: &'a dyn Clock,
    /// The folder runs spool into (`spool_dir`: by default `spool/` beside a SQLite state
    /// file, or `/var/lib/s3-importd/spool` with PostgreSQL state).
    pub spool_root: &'a Path,
    pub limits: RunLimits,
    /// Cancelled when the daemon stops: no further object is started; those already read
    /// are delivered and committed, the rest wait for the next run.
    pub stop: CancellationToken,
    /// When the daemon runs this connection next, for the summary event.
    pub next_run: Option<DateTime<Utc>>,
}

/// How much of a run happens at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    /// Objects fetched and parsed at the same time.
    pub max_concurrent_objects: usize,
    /// Objects in one load (`load_max_objects`).
    pub load_max_objects: usize,
    /// Bytes of spooled rows in one load (`load_max_bytes`).
    pub load_max_bytes: u64,
}

impl RunLimits {
    /// The limits `s3-importd.toml` sets.
    pub fn of(settings: &crate::config::Settings) -> RunLimits {
        RunLimits {
            max_concurrent_objects: settings.max_concurrent_objects,
            load_max_objects: settings.load_max_objects,
            load_max_bytes: settings.load_max_bytes,
        }
    }
}

impl RunLimits {
    /// These limits with the load sizes `connection` sets for itself.
    pub fn for_connection(self, connection: &crate::config::Connection) -> RunLimits {
        RunLimits {
            load_max_objects: connection.load_max_objects.unwrap_or(self.load_max_objects),
            load_max_bytes: connection.load_max_bytes.unwrap_or(self.load_max_bytes),
            ..self
        }
    }
}

impl Default for RunLimits {
    /// The defaults of `s3-importd.toml`.
    fn default() -> RunLimits {
        use crate::config::defaults;
        RunLimits {
            max_concurrent_objects: defaults::MAX_CONCURRENT_OBJECTS,
            load_max_objects: defaults::LOAD_MAX_OBJECTS,
            load_max_bytes: defaults::LOAD_MAX_BYTES,
        }
    }
}

/// Why a run stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("delivery failed: {0}")]
    Target(#[from] TargetError),
    #[error("spool {path}: {source}")]
    Spool {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub connection: String,
    pub run_id: String,
    pub dry_run: bool,
    pub counts: RunCounts,
    pub skipped: BTreeMap<SkipReason, u64>,
    pub duration: Duration,
    pub watermark_before: Option<DateTime<Utc>>,
    pub watermark_after: Option<DateTime<Utc>>,
    /// Where the last load went, when rows were delivered.
    pub output: Option<String>,
    /// How many loads the run settled (delivered and committed, or committed alone).
    pub loads: u32,
    /// With `dry_run`: what a run would import, in order.
    pub candidates: Vec<ObjectMeta>,
    /// One line per rejected or failed object.
    pub problems: Vec<String>,
    /// Why the run itself failed.
    pub error: Option<String>,
    /// The run stopped because another daemon of the fleet took its lease over.
    pub lease_lost: bool,
    /// The run failed for the state store's sake: out of reach, or out of reach long enough
    /// for the run's lease to lapse. Nothing was refused; the same run may succeed later.
    pub state_fault: bool,
    /// The run did not start: the connection's lock was held (another run or event load).
    pub busy: bool,
    /// An event load (of keys events named), not a run of the listing.
    pub event: bool,
    /// An event load: the longest any object it delivered waited, from its LastModified to
    /// the commit.
    pub event_delay: Option<chrono::TimeDelta>,
    /// When it ended, as recorded in the state (the metrics use the same instant).
    pub finished_at: Option<DateTime<Utc>>,
}

fn show_time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "none".to_string(),
        |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}

impl RunSummary {
    /// Whether the run completed with no object failed. Rejected objects are bad data,
    /// quarantined as designed, and do not fail a run.
    pub fn succeeded(&self) -> bool {
        self.error.is_none() && self.counts.failed == 0
    }

    /// The one-line summary `run` prints.
    pub fn line(&self) -> String {
        if self.dry_run {
            return format!(
                "{} (dry run): listed {}, new {}; watermark {}",
                self.connection,
                self.counts.listed,
                self.counts.new,
                show_time(self.watermark_before)
            );
        }
        let mut line = format!(
            "{}: listed {}, new {}, imported {}, rejected {}, failed {}; rows {}, bad rows {}; {:.1}s; watermark {} → {}",
            self.connection,
            self.counts.listed,
            self.counts.new,
            self.counts.imported,
            self.counts.rejected,
            self.counts.failed,
            self.counts.rows,
            self.counts.bad_rows,
            self.duration.as_secs_f64(),
            show_time(self.watermark_before),
            show_time(self.watermark_after),
        );
        if let Some(out) = &self.output {
            line.push_str(&format!("; output {out}"));
            if self.loads > 1 {
                line.push_str(&format!(" (the last of {} loads)", self.loads));
            }
        }
        if let Some(e) = &self.error {
            line.push_str(&format!("; error: {e}"));
        }
        line
    }
}

/// Runs one connection once. With `dry_run`, lists and selects only, and changes nothing.
pub async fn run(env: &RunEnv<'_>, dry_run: bool) -> RunSummary {
    run_planning(env, dry_run, None).await
}

/// What an event load did with the keys it was given.
#[derive(Debug)]
pub struct EventLoad {
    pub summary: RunSummary,
    /// For each key given, in order, whether what it names is settled: imported or rejected
    /// (its current version in the ledger), skipped by the connection's rules, or gone. A
    /// key not settled (its object failed, or the daemon stopped first) is imported by a
    /// later event or run; its message must stay on the queue.
    pub settled: Vec<bool>,
    /// The LastModified of each object this load imported (or rejected).
    pub delivered: Vec<DateTime<Utc>>,
}

/// Imports the current versions of `keys` (the objects events named) through the same
/// plan → import → settle protocol and ledger as a run, without listing the source and
/// without moving the watermark. An object the ledger holds is skipped as in any run; one
/// that no longer exists is settled with a log line.
pub async fn run_keys(env: &RunEnv<'_>, keys: &[String]) -> EventLoad {
    let mut fates = vec![KeyFate::Unsettled; keys.len()];
    let summary = run_planning(env, false, Some((keys, &mut fates))).await;
    let mut settled: Vec<bool> = fates.iter().map(|f| matches!(f, KeyFate::Settled)).collect();
    // A candidate is settled when the ledger now holds the version that was imported.
    let asked: Vec<(usize, (&str, &str))> = fates
        .iter()
        .enumerate()
        .filter_map(|(i, f)| match f {
            KeyFate::Candidate(meta) => Some((i, (meta.key.as_str(), meta.etag.as_str()))),
            _ => None,
        })
        .collect();
    if !asked.is_empty() {
        let pairs: Vec<(&str, &str)> = asked.iter().map(|(_, pair)| *pair).collect();
        match env.state.settled_among(&env.connection.name, &pairs).await {
            Ok(answers) if answers.len() == pairs.len() => {
                for ((i, _), yes) in asked.iter().zip(answers) {
                    settled[*i] = yes;
                }
            }
            // Unknown counts as not settled: the message comes back and the ledger skips
            // whatever was in fact imported.
            Ok(_) | Err(_) => warn!("asking the ledger what the event load settled failed"),
        }
    }
    let delivered = fates
        .iter()
        .zip(&settled)
        .filter_map(|(f, yes)| match f {
            KeyFate::Candidate(meta) if *yes => Some(meta.last_modified),
            _ => None,
        })
        .collect();
    EventLoad {
        summary,
        settled,
        delivered,
    }
}

/// What became of one key an event named, while its load is planned.
#[derive(Debug, Clone)]
enum KeyFate {
    /// Not known to be settled (looking it up failed, or the run ended first).
    Unsettled,
    /// Nothing to import: gone, skipped by the rules, or already in the ledger.
    Settled,
    /// To import: this version.
    Candidate(ObjectMeta),
}

/// A run: of the whole listing, or (`keys`) of the objects events named, whose fates it
/// records.
async fn run_planning(
    env: &RunEnv<'_>,
    dry_run: bool,
    keys: Option<(&[String], &mut Vec<KeyFate>)>,
) -> RunSummary {
    let mut summary = RunSummary {
        connection: env.connection.name.clone(),
        run_id: uuid::Uuid::now_v7().to_string(),
        dry_run,
        ..RunSummary::default()
    };
    summary.event = keys.is_some();
    let trigger = if summary.event { "event" } else { "schedule" };
    let span = info_span!("run", connection = %env.connection.name, run_id = %summary.run_id, trigger);
    async {
        let timer = Instant::now();
        let started = env.clock.now();
        info!(dry_run, "run started");
        let result = execute(env, dry_run, keys, &mut summary).await;
        summary.duration = timer.elapsed();
        if let Err(e) = &result {
            summary.error = Some(e.to_string());
            summary.lease_lost = matches!(e, RunError::State(StateError::LeaseLost { .. }));
            summary.busy = matches!(e, RunError::State(StateError::Busy { .. }));
            summary.state_fault = matches!(e, RunError::State(e) if e.is_transient()
                || matches!(e, StateError::LeaseLost { loss: LeaseLoss::LostContact, .. }));
            if summary.busy && summary.event {
                // The event load waits for the run or load that holds the connection.
                debug!(error = %e, "event load waits: the connection is busy");
            } else {
                warn!(error = %e, "run failed");
            }
        }
        let finished = env.clock.now();
        summary.finished_at = Some(finished);
        if !dry_run {
            record_end(env, &record(&summary, started, finished)).await;
        }
        info!(
            listed = summary.counts.listed,
            new = summary.counts.new,
            imported = summary.counts.imported,
            rejected = summary.counts.rejected,
            failed = summary.counts.failed,
            rows = summary.counts.rows,
            bad_rows = summary.counts.bad_rows,
            bytes = summary.counts.bytes,
            duration_ms = summary.duration.as_millis() as u64,
            watermark_before = %show_time(summary.watermark_before),
            watermark_after = %show_time(summary.watermark_after),
            output = summary.output.as_deref().unwrap_or(""),
            next_run = %show_time(env.next_run),
            "run finished"
        );
    }
    .instrument(span)
    .await;
    summary
}

/// How long a run's end is tried again while the state store is out of reach.
const RECORD_PATIENCE: Duration = Duration::from_secs(300);

/// Records a run's end. A state store out of reach at that moment (a PostgreSQL restart, the
/// very fault that may have failed the run) must not leave the run shown as `interrupted`
/// with no error: a transient failure is tried again, backing off from 1 s to 30 s, for up to
/// [`RECORD_PATIENCE`] or until the process stops.
async fn record_end(env: &RunEnv<'_>, record: &RunRecord) {
    let give_up = tokio::time::Instant::now() + RECORD_PATIENCE;
    let mut wait = Duration::from_secs(1);
    let mut told = false;
    loop {
        let e = match env.state.finish_run(record).await {
            Ok(()) => {
                if told {
                    info!("recorded the run's end after all");
                }
                return;
            }
            Err(e) => e,
        };
        if !e.is_transient() || env.stop.is_cancelled() || tokio::time::Instant::now() + wait > give_up {
            warn!(error = %e, "recording the run failed");
            return;
        }
        if !told {
            warn!(error = %e, "recording the run failed; trying again until the state store answers");
            told = true;
        }
        // Stopped meanwhile: one last try, then the loop ends.
        crate::clock::pause(wait, &env.stop).await;
        wait = (wait * 2).min(Duration::from_secs(30));
    }
}

fn record(s: &RunSummary, started: DateTime<Utc>, finished: DateTime<Utc>) -> RunRecord {
    RunRecord {
        started_at: Some(started),
        finished_at: Some(finished),
        outcome: format!(
            "{}{}",
            if s.event { crate::state::EVENT_OUTCOME } else { "" },
            if s.succeeded() { "ok" } else { "failed" }
        ),
        error: s.error.clone().or_else(|| s.problems.first().cloned()),
        ..snapshot(s)
    }
}

/// A running run as the state records it so far (its times are recorded apart): counts,
/// watermarks and the last output.
fn snapshot(s: &RunSummary) -> RunRecord {
    RunRecord {
        run_id: s.run_id.clone(),
        connection: s.connection.clone(),
        started_at: None,
        finished_at: None,
        outcome: "running".into(),
        counts: s.counts,
        watermark_before: s.watermark_before,
        watermark_after: s.watermark_after,
        output: s.output.clone(),
        error: None,
        host: String::new(),
        event_delay_ms: s.event_delay.map(|d| d.num_milliseconds()),
    }
}

async fn execute(
    env: &RunEnv<'_>,
    dry_run: bool,
    keys: Option<(&[String], &mut Vec<KeyFate>)>,
    s: &mut RunSummary,
) -> Result<(), RunError> {
    // A dry run changes nothing and needs no lock; a run holds it until it ends.
    if dry_run {
        return execute_held(env, true, keys, s).await;
    }
    let lock = env.state.lock(&env.connection.name).await?;
    let result = execute_held(env, false, keys, s).await;
    lock.release().await;
    result
}

/// A run under its connection's lock (none for a dry run).
async fn execute_held(
    env: &RunEnv<'_>,
    dry_run: bool,
    keys: Option<(&[String], &mut Vec<KeyFate>)>,
    s: &mut RunSummary,
) -> Result<(), RunError> {
    let c = env.connection;
    if !dry_run {
        // Before anything is written: an old spool may be what filled the disk.
        Spool::clear(env.spool_root, &c.name).map_err(|source| RunError::Spool {
            path: env.spool_root.join(&c.name),
            source,
        })?;
        recover(env).await?;
    }
    let now = env.clock.now();
    if !dry_run {
        env.state.start_run(&c.name, &s.run_id, now).await?;
    }
    let planned = match keys {
        None => plan(env, now, s, !dry_run).await,
        Some((keys, fates)) => plan_keys(env, keys, fates, s).await,
    };
    if !dry_run {
        fault::point("after-plan");
    }
    let result = match planned {
        Ok(planned) if dry_run => {
            s.candidates = planned.candidates;
            Ok(())
        }
        Ok(planned) => import(env, &planned, s).await,
        Err(e) => Err(e),
    };
    if !dry_run && let Err(e) = env.state.clear_candidates(&s.run_id).await {
        warn!(error = %e, "forgetting the run's candidates failed");
    }
    result
}

/// The ledger as the source sees it: the versions it holds by key and stamp. A lookup that
/// fails counts as unknown: the source then computes the version, and the ledger's own
/// error surfaces from the settled check that follows.
struct LedgerKnown<'a> {
    state: &'a dyn RunState,
    connection: &'a str,
}

#[async_trait::async_trait]
impl crate::sources::Known for LedgerKnown<'_> {
    async fn versions(&self, objects: &[(&str, &str)]) -> Vec<Option<String>> {
        self.state
            .versions_by_stamp(self.connection, objects)
            .await
            .unwrap_or_else(|_| vec![None; objects.len()])
    }
}

/// How many candidates are staged in the state store at a time while listing.
const STAGE_BATCH: usize = 10_000;

/// How many listed objects are checked against the ledger at a time.
const SETTLED_BATCH: usize = 1024;

/// Sorts the objects a listing selects into candidates and objects the ledger already
/// holds, asking the ledger a batch at a time, and stages the candidates as they come when
/// `stage` says how many to stage at a time. Keeps the first state error; the listing goes
/// on (it cannot be stopped from inside), and the error ends the plan.
struct Sorter<'a> {
    state: &'a dyn RunState,
    connection: &'a str,
    run_id: &'a str,
    stage: Option<usize>,
    /// Selected objects not yet checked against the ledger.
    unsettled: Vec<ObjectMeta>,
    /// Candidates not yet staged (all of them without staging).
    candidates: Vec<ObjectMeta>,
    new: u64,
    skipped: &'a mut std::collections::BTreeMap<SkipReason, u64>,
    error: Option<StateError>,
}

impl Sorter<'_> {
    /// An object the selection rules take: new unless the ledger holds its version.
    async fn maybe_new(&mut self, meta: ObjectMeta) {
        self.unsettled.push(meta);
        if self.unsettled.len() >= SETTLED_BATCH {
            self.sort_out().await;
        }
    }

    /// Checks the objects waiting against the ledger.
    async fn sort_out(&mut self) {
        if self.error.is_some() || self.unsettled.is_empty() {
            self.unsettled.clear();
            return;
        }
        let asked: Vec<(&str, &str)> = self
            .unsettled
            .iter()
            .map(|m| (m.key.as_str(), m.etag.as_str()))
            .collect();
        let settled = match self.state.settled_among(self.connection, &asked).await {
            Ok(settled) if settled.len() == asked.len() => settled,
            Ok(settled) => {
                self.error = Some(StateError::Answer {
                    asked: asked.len(),
                    answered: settled.len(),
                });
                return;
            }
            Err(e) => {
                self.error = Some(e);
                return;
            }
        };
        for (meta, settled) in std::mem::take(&mut self.unsettled).into_iter().zip(settled) {
            if settled {
                *self.skipped.entry(SkipReason::AlreadySettled).or_default() += 1;
            } else {
                self.new += 1;
                self.candidates.push(meta);
            }
        }
        if self.stage.is_some_and(|batch| self.candidates.len() >= batch) {
            self.stage_all().await;
        }
    }

    /// Stages the candidates held.
    async fn stage_all(&mut self) {
        if let Err(e) = self.state.stage_candidates(self.run_id, &self.candidates).await {
            self.error.get_or_insert(e);
        }
        self.candidates.clear();
    }
}

/// What a run is to do: the connection's state when it started, its window, and its
/// candidates — staged in the state store, out of the heap, or (for a dry run) in order here.
struct Planned {
    state: ConnectionState,
    window: Window,
    candidates: Vec<ObjectMeta>,
    /// Whether settling moves the watermark: a listing's run does, an event load never
    /// (docs/design.md §4.9: events are hints, the listing is the truth).
    moves_watermark: bool,
}

impl Planned {
    /// Where a commit moves the watermark: to the window's upper edge, but never past an
    /// object not yet settled (`unsettled`); nowhere for an event load.
    fn next_watermark(&self, unsettled: impl IntoIterator<Item = DateTime<Utc>>) -> Option<DateTime<Utc>> {
        self.moves_watermark
            .then(|| select::next_watermark(self.state.watermark, &self.window, unsettled))
    }
}

/// Lists the source and selects the candidates (docs/design.md §3). Needs neither the target nor a
/// spool: `--dry-run` and `preview` stop here. With `stage`, the candidates go to the state
/// store ([`RunState::stage_candidates`]) as they are found, so that a run over a million
/// objects does not hold them; else they are returned in order.
async fn plan(
    env: &RunEnv<'_>,
    now: DateTime<Utc>,
    s: &mut RunSummary,
    stage: bool,
) -> Result<Planned, RunError> {
    let c = env.connection;
    let run_id = s.run_id.clone();
    let state = env.state.connection(&c.name).await?;
    s.watermark_before = state.watermark;
    s.watermark_after = state.watermark;
    let window = Window::for_run(now, state.watermark, c.backfill, c.settle).not_before(state.floor);
    let prefix = c.source.prefix();
    // Keys `retry` asked for are taken however old they are.
    let retries: std::collections::HashSet<String> = env.state.retries(&c.name).await?.into_iter().collect();
    let known = LedgerKnown {
        state: env.state,
        connection: &c.name,
    };
    let mut sorter = Sorter {
        state: env.state,
        connection: &c.name,
        run_id: &run_id,
        stage: stage.then_some(STAGE_BATCH),
        unsettled: Vec::new(),
        candidates: Vec::new(),
        new: 0,
        skipped: &mut s.skipped,
        error: None,
    };
    // The listing calls back synchronously and the ledger is asked asynchronously: the
    // listing hands what the selection rules take to the sorter through a channel, and both
    // go on together in this task. The channel holds at most what the listing is ahead of
    // the ledger's answers, a batch or two.
    let (taken, mut to_sort) = tokio::sync::mpsc::unbounded_channel::<ObjectMeta>();
    let mut skipped = std::collections::BTreeMap::<SkipReason, u64>::new();
    let listing = async {
        let listed = env
            .source
            .list_known(
                &known,
                &mut |meta| match select::classify(&meta, prefix, &c.filters, &window) {
                    Verdict::Skip(SkipReason::TooOld) if retries.contains(&meta.key) => {
                        let _ = taken.send(meta);
                    }
                    Verdict::Candidate => {
                        let _ = taken.send(meta);
                    }
                    Verdict::Skip(reason) => *skipped.entry(reason).or_default() += 1,
                },
            )
            .await;
        drop(taken);
        listed
    };
    let sorting = async {
        while let Some(meta) = to_sort.recv().await {
            sorter.maybe_new(meta).await;
        }
        sorter.sort_out().await;
        if stage && sorter.error.is_none() {
            sorter.stage_all().await;
        }
    };
    let (listed, ()) = tokio::join!(listing, sorting);
    s.counts.listed = listed?;
    for (reason, n) in skipped {
        *sorter.skipped.entry(reason).or_default() += n;
    }
    if let Some(e) = sorter.error {
        return Err(e.into());
    }
    let (mut candidates, new) = (sorter.candidates, sorter.new);
    select::order(&mut candidates);
    s.counts.new = new;
    info!(listed = s.counts.listed, new = s.counts.new, "listed");
    Ok(Planned {
        state,
        window,
        candidates,
        moves_watermark: true,
    })
}

/// How many objects an event load looks up at once.
const STAT_CONCURRENCY: usize = 16;

/// Plans an event load: the current version of each key (one lookup each), taken when the
/// connection's prefix and globs admit it and the ledger does not hold it. The backfill
/// window and `settle_seconds` do not apply (an event names an object S3 has completed);
/// the floor a `reset --since` set does. The candidates are staged as a listing's are.
async fn plan_keys(
    env: &RunEnv<'_>,
    keys: &[String],
    fates: &mut [KeyFate],
    s: &mut RunSummary,
) -> Result<Planned, RunError> {
    let c = env.connection;
    let state = env.state.connection(&c.name).await?;
    s.watermark_before = state.watermark;
    s.watermark_after = state.watermark;
    let window = Window {
        lower: DateTime::<Utc>::MIN_UTC,
        upper: DateTime::<Utc>::MAX_UTC,
    }
    .not_before(state.floor);
    let lookups: Vec<_> = keys.iter().map(|key| env.source.stat(key)).collect();
    let looked: Vec<Result<Option<ObjectMeta>, SourceError>> = futures::stream::iter(lookups)
        .buffered(STAT_CONCURRENCY)
        .collect()
        .await;
    s.counts.listed = keys.len() as u64;
    let mut admitted: Vec<(usize, ObjectMeta)> = Vec::new();
    for (i, looked) in looked.into_iter().enumerate() {
        match looked {
            Ok(None) => {
                info!(key = %keys[i], "an event named an object that no longer exists; nothing to import");
                fates[i] = KeyFate::Settled;
            }
            Ok(Some(meta)) => match select::classify(&meta, c.source.prefix(), &c.filters, &window) {
                Verdict::Candidate => admitted.push((i, meta)),
                Verdict::Skip(reason) => {
                    debug!(key = %meta.key, %reason, "an event named an object the connection does not import");
                    *s.skipped.entry(reason).or_default() += 1;
                    fates[i] = KeyFate::Settled;
                }
            },
            Err(e) => {
                warn!(key = %keys[i], error = %e, "looking up an object an event named failed; a later event or run imports it");
                s.counts.failed += 1;
                s.problems.push(e.to_string());
            }
        }
    }
    let asked: Vec<(&str, &str)> = admitted
        .iter()
        .map(|(_, m)| (m.key.as_str(), m.etag.as_str()))
        .collect();
    let held = env.state.settled_among(&c.name, &asked).await?;
    if held.len() != asked.len() {
        return Err(StateError::Answer {
            asked: asked.len(),
            answered: held.len(),
        }
        .into());
    }
    let mut candidates = Vec::new();
    let mut taken = std::collections::HashSet::new();
    for ((i, meta), held) in admitted.into_iter().zip(held) {
        if held {
            *s.skipped.entry(SkipReason::AlreadySettled).or_default() += 1;
            fates[i] = KeyFate::Settled;
        } else if taken.insert(meta.key.clone()) {
            // The same key twice in one batch (a duplicate event) is one candidate.
            fates[i] = KeyFate::Candidate(meta.clone());
            candidates.push(meta);
        } else {
            fates[i] = KeyFate::Candidate(meta);
        }
    }
    select::order(&mut candidates);
    s.counts.new = candidates.len() as u64;
    env.state.stage_candidates(&s.run_id, &candidates).await?;
    info!(keys = keys.len(), new = s.counts.new, "event load planned");
    Ok(Planned {
        state,
        window,
        candidates: Vec::new(),
        moves_watermark: false,
    })
}

/// Imports the candidates load by load: each load takes the next candidates until it holds
/// `load_max_objects` objects or `load_max_bytes` of spooled rows, is parsed into a spool of
/// its own, then settled — delivered and committed — before the next begins. A kill loses at
/// most the load in flight, rows reach the target from the first load on, and a load's spool
/// is gone before the next one is written.
async fn import(env: &RunEnv<'_>, planned: &Planned, s: &mut RunSummary) -> Result<(), RunError> {
    let c = env.connection;
    let limits = env.limits.for_connection(c);
    let progress = Progress::new(s.counts.new);
    // The LastModified of every object that must be looked at again.
    let mut failed_at: Vec<DateTime<Utc>> = Vec::new();
    // The last candidate a load started, and how many were started.
    let mut cursor: Option<ObjectMeta> = None;
    let mut started = 0u64;
    let mut loads = 0u32;
    // The oldest candidate no load has started, once the loop ends.
    let mut oldest_left: Option<DateTime<Utc>>;
    // Whether small objects are processed in groups: only when the source opens objects on
    // the parsing thread (one without an opener would be read group by group, serially).
    let mut grouped = None;
    loop {
        // The next load's candidates, in import order, from the state store.
        let candidates = env
            .state
            .staged_candidates(&s.run_id, cursor.as_ref(), limits.load_max_objects.max(1))
            .await?;
        oldest_left = candidates.first().map(|m| m.last_modified);
        if candidates.is_empty() || env.stop.is_cancelled() {
            break;
        }
        let grouped = *grouped.get_or_insert_with(|| env.source.opener(&candidates[0]).is_some());
        let spool_name = format!("{}-{}", s.run_id, loads + 1);
        let spool = Spool::create(
            env.spool_root,
            &c.name,
            &spool_name,
            SpoolFormat::for_connection(c),
        )
        .map_err(|source| RunError::Spool {
            path: env.spool_root.to_path_buf(),
            source,
        })?;
        let spooled = AtomicU64::new(0);
        let mut fed = 0;
        // Objects are started while the load has room: the byte limit is checked as each
        // group of objects is started, so a load ends at most `max_concurrent_objects` groups
        // past it.
        let feed = std::iter::from_fn(|| {
            if fed >= candidates.len() || spooled.load(Ordering::Relaxed) >= limits.load_max_bytes {
                return None;
            }
            let group = if grouped {
                group_end(&candidates, fed)
            } else {
                fed + 1
            };
            let range = fed..group;
            fed = group;
            Some(range)
        });
        // When the daemon stops, objects not yet started are left out; those started finish.
        let results: Vec<Vec<Processed>> = futures::stream::iter(feed)
            .take_until(env.stop.clone().cancelled_owned())
            .map(|range| {
                let (spool, spooled, progress, candidates) = (&spool, &spooled, &progress, &candidates);
                async move {
                    let metas = &candidates[range];
                    let processed = match metas {
                        [meta] => vec![process(env, spool, meta).await],
                        metas => process_group(env, spool, metas).await,
                    };
                    for (meta, processed) in metas.iter().zip(&processed) {
                        if let Processed::Imported { spooled: rows, stats } = processed {
                            spooled.fetch_add(rows.slice.len, Ordering::Relaxed);
                            progress.object(stats.rows - stats.bad_rows, meta.size);
                        } else {
                            progress.object(0, meta.size);
                        }
                    }
                    processed
                }
            })
            .buffered(env.limits.max_concurrent_objects.max(1))
            .collect()
            .await;
        let results: Vec<(usize, Processed)> = results.into_iter().flatten().enumerate().collect();
        // `buffered` keeps the order, so the objects handled are the first candidates.
        let handled = results.len();
        if handled == 0 {
            break;
        }
        loads += 1;
        started += handled as u64;
        cursor = Some(candidates[handled - 1].clone());
        debug!(load = loads, objects = handled, "load parsed and spooled");
        let mut load = Load::new(
            c,
            &s.run_id,
            planned.moves_watermark.then_some(planned.window.upper),
        );
        for (at, processed) in results {
            load.add(&candidates[at], processed, s);
        }
        failed_at.append(&mut load.failed_at);
        // Everything not settled yet keeps the watermark behind it: failures, and the
        // candidates later loads (or runs) import, the oldest of which comes next.
        let next = match candidates.get(handled) {
            Some(m) => Some(m.last_modified),
            None => env
                .state
                .staged_candidates(&s.run_id, cursor.as_ref(), 1)
                .await?
                .first()
                .map(|m| m.last_modified),
        };
        let unsettled = failed_at.iter().copied().chain(next);
        load.plan.watermark = planned.next_watermark(unsettled);
        let settled = settle(env, planned, load, s).await;
        // The spool is not needed past delivery; its space is freed before anything else.
        drop(spool);
        if let Err((e, failed)) = settled {
            failed_at.extend(failed);
            let left = s.counts.new - started;
            if left > 0 {
                s.problems.push(format!(
                    "a delivery failed before {left} of the objects were started; the next run imports them"
                ));
            }
            return Err(e);
        }
        progress.log_if_due();
        // `status` shows a running run's counts as of its last settled load.
        if let Err(e) = env.state.finish_run(&snapshot(s)).await {
            warn!(error = %e, "recording the run's progress failed");
        }
    }
    let left = s.counts.new.saturating_sub(started);
    if left > 0 {
        info!(left, "stopping: objects not started are left for the next run");
        s.problems.push(format!(
            "stopped before {left} of the objects; the next run imports them"
        ));
    }
    if loads == 0 {
        // Nothing imported: the watermark still moves towards the window's upper edge.
        let plan = CommitPlan {
            connection: c.name.clone(),
            run_id: s.run_id.clone(),
            settled: Vec::new(),
            quarantine: Vec::new(),
            watermark: planned.next_watermark(failed_at.iter().copied().chain(oldest_left)),
        };
        env.state.commit(&plan).await?;
        s.watermark_after = watermark_after(planned, &plan);
    }
    s.loads = loads;
    Ok(())
}

/// The watermark once `plan` is committed (the store never moves it back, and a plan
/// without one leaves it).
fn watermark_after(planned: &Planned, plan: &CommitPlan) -> Option<DateTime<Utc>> {
    planned.state.watermark.max(plan.watermark)
}

/// One load's objects before it is settled: what to commit, the spooled rows to deliver, and
/// its counts, which reach the run's summary only once the load is settled.
struct Load {
    plan: CommitPlan,
    parts: Vec<LoadPart>,
    counts: RunCounts,
    imported_at: Vec<DateTime<Utc>>,
    failed_at: Vec<DateTime<Utc>>,
}

impl Load {
    fn new(c: &Connection, run_id: &str, watermark: Option<DateTime<Utc>>) -> Load {
        Load {
            plan: CommitPlan {
                connection: c.name.clone(),
                run_id: run_id.to_string(),
                settled: Vec::new(),
                quarantine: Vec::new(),
                watermark,
            },
            parts: Vec::new(),
            counts: RunCounts::default(),
            imported_at: Vec::new(),
            failed_at: Vec::new(),
        }
    }

    /// Adds what became of one object. Rejections and failures are final whatever happens to
    /// the delivery, so their problem lines go to the summary at once.
    fn add(&mut self, meta: &ObjectMeta, processed: Processed, s: &mut RunSummary) {
        let quarantined = |errors: Vec<formats::RowError>| {
            errors.into_iter().map(|error| Quarantined {
                key: meta.key.clone(),
                etag: meta.etag.clone(),
                error,
            })
        };
        match processed {
            Processed::Imported { stats, spooled } => {
                let good = stats.rows - stats.bad_rows;
                debug!(key = %meta.key, rows = good, bad_rows = stats.bad_rows, "object spooled");
                self.counts.imported += 1;
                self.counts.rows += good;
                self.counts.bad_rows += stats.bad_rows;
                self.counts.bytes += meta.size;
                self.plan
                    .settled
                    .push(settled(meta, Outcome::Imported, stats, None));
                self.plan.quarantine.extend(quarantined(spooled.errors));
                self.imported_at.push(meta.last_modified);
                if good > 0 {
                    self.parts.push(LoadPart {
                        spool: spooled.slice,
                        key: meta.key.clone(),
                        version: meta.etag.clone(),
                        last_modified: meta.last_modified,
                    });
                }
            }
            Processed::Rejected {
                stats,
                reason,
                errors,
            } => {
                warn!(key = %meta.key, rows = stats.rows, bad_rows = stats.bad_rows, reason = %reason, "object rejected");
                self.counts.rejected += 1;
                self.counts.bad_rows += stats.bad_rows;
                self.counts.bytes += meta.size;
                s.problems.push(format!("{}: rejected: {reason}", meta.key));
                self.plan
                    .settled
                    .push(settled(meta, Outcome::Rejected, stats, Some(reason)));
                self.plan.quarantine.extend(quarantined(errors));
            }
            Processed::Failed { error, attempts } => {
                let error = Processed::failure_text(&error, attempts);
                warn!(key = %meta.key, error = %error, "object failed; the next run tries it again");
                self.counts.failed += 1;
                s.problems.push(format!("{}: failed: {error}", meta.key));
                self.failed_at.push(meta.last_modified);
            }
        }
    }
}

/// Settles one load: delivers its rows exactly once and commits it, then adds its counts to
/// the summary. When the delivery fails, only its rejections are committed, its imported
/// objects count as failed, and their LastModified times are returned with the error so that
/// the watermark stays behind them.
async fn settle(
    env: &RunEnv<'_>,
    planned: &Planned,
    mut load: Load,
    s: &mut RunSummary,
) -> Result<(), (RunError, Vec<DateTime<Utc>>)> {
    let c = env.connection;
    let delivered = if load.parts.is_empty() {
        env.state
            .commit(&load.plan)
            .await
            .map(|()| None)
            .map_err(RunError::from)
    } else {
        let info = LoadInfo {
            key: KeyValues {
                integration_name: &c.name,
                table_name: &c.template.table,
                table_version: planned.state.table_version,
                loaded_at: env.clock.now(),
            },
            run_id: &s.run_id,
        };
        let delivered = deliver(env, &info, &load.parts, &mut load.plan).await;
        debug!(ok = delivered.is_ok(), "load delivered and committed");
        delivered.map(Some)
    };
    match delivered {
        Ok(output) => {
            let mut counts = load.counts;
            if let Some((output, refused)) = output {
                s.output = Some(output);
                for r in refused {
                    warn!(key = %r.key, reason = %r.reason, "object refused by the target; rejected");
                    counts.imported -= 1;
                    counts.rejected += 1;
                    counts.rows -= r.rows;
                    s.problems.push(format!("{}: rejected: {}", r.key, r.reason));
                }
            }
            s.counts.add(&counts);
            s.watermark_after = watermark_after(planned, &load.plan);
            if s.event
                && let Some(oldest) = load.imported_at.iter().min()
            {
                let delay = env.clock.now() - *oldest;
                s.event_delay = Some(s.event_delay.map_or(delay, |d| d.max(delay)));
            }
            Ok(())
        }
        Err(e) => {
            // Nothing imported reached the target: only rejections are settled, and the
            // watermark stays behind every object that must be imported again.
            warn!(error = %e, "delivery failed; the imported objects are tried again by the next run");
            let mut counts = load.counts;
            counts.failed += counts.imported;
            counts.imported = 0;
            counts.rows = 0;
            s.counts.add(&counts);
            let mut plan = load.plan;
            plan.settled.retain(|x| x.outcome == Outcome::Rejected);
            let rejected: Vec<&str> = plan.settled.iter().map(|x| x.key.as_str()).collect();
            plan.quarantine.retain(|q| rejected.contains(&q.key.as_str()));
            plan.watermark = planned.next_watermark(load.imported_at.iter().copied().chain(plan.watermark));
            if let Err(commit) = env.state.commit(&plan).await {
                return Err((commit.into(), load.imported_at));
            }
            s.watermark_after = watermark_after(planned, &plan);
            Err((e, load.imported_at))
        }
    }
}

/// Counts of a run in progress, logged every [`PROGRESS_EVERY`] while it lasts.
struct Progress {
    total: u64,
    done: AtomicU64,
    rows: AtomicU64,
    bytes: AtomicU64,
    started: Instant,
    last: std::sync::Mutex<Instant>,
}

/// How often a long run logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

impl Progress {
    fn new(total: u64) -> Progress {
        let now = Instant::now();
        Progress {
            total,
            done: AtomicU64::new(0),
            rows: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            started: now,
            last: std::sync::Mutex::new(now),
        }
    }

    /// Counts one object handled, and logs when a log line is due.
    fn object(&self, rows: u64, bytes: u64) {
        self.done.fetch_add(1, Ordering::Relaxed);
        self.rows.fetch_add(rows, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.log_if_due();
    }

    fn log_if_due(&self) {
        let Ok(mut last) = self.last.lock() else { return };
        if last.elapsed() < PROGRESS_EVERY {
            return;
        }
        *last = Instant::now();
        drop(last);
        let done = self.done.load(Ordering::Relaxed);
        let elapsed = self.started.elapsed().as_secs_f64();
        let rate = if elapsed > 0.0 { done as f64 / elapsed } else { 0.0 };
        let eta_s = if rate > 0.0 {
            (self.total.saturating_sub(done) as f64 / rate).round() as u64
        } else {
            0
        };
        info!(
            objects = done,
            total = self.total,
            rows = self.rows.load(Ordering::Relaxed),
            bytes = self.bytes.load(Ordering::Relaxed),
            objects_per_s = (rate * 10.0).round() / 10.0,
            eta_s,
            "progress"
        );
    }
}

fn settled(meta: &ObjectMeta, outcome: Outcome, stats: ParseStats, reason: Option<String>) -> Settled {
    Settled {
        key: meta.key.clone(),
        etag: meta.etag.clone(),
        last_modified: meta.last_modified,
        size: meta.size,
        stamp: meta.stamp.clone(),
        outcome,
        rows: stats.rows - stats.bad_rows,
        bad_rows: stats.bad_rows,
        reason,
    }
}

/// Settles the loads earlier runs left pending (a crash, or a daemon whose lease this one
/// took over): commits those the target holds completely, and delivers the others again, as
/// planned, to the output they recorded ([`reimport`]).
async fn recover(env: &RunEnv<'_>) -> Result<(), RunError> {
    for pending in env.state.pending_loads(&env.connection.name).await? {
        let delivery: Delivery = serde_json::from_value(pending.delivery.clone())
            .map_err(|e| TargetError::Record(e.to_string()))?;
        if env.target.recover(&delivery).await? {
            env.state.commit(&pending.plan).await?;
            info!(pending_run = %pending.run_id, output = %delivery.output, "committed a load delivered before an interruption");
            continue;
        }
        match reimport(env, &pending, &delivery).await {
            Ok(true) => {
                info!(pending_run = %pending.run_id, output = %delivery.output, "delivered a load interrupted before its delivery, as planned, to its recorded output");
            }
            Ok(false) => {
                env.state.discard_load(&pending.run_id).await?;
                info!(pending_run = %pending.run_id, "dropped a load interrupted before delivery whose objects changed since; they are imported again");
            }
            Err(RunError::Target(e @ TargetError::OutputConflict { .. })) => {
                env.state.discard_load(&pending.run_id).await?;
                warn!(pending_run = %pending.run_id, error = %e, "dropped a load interrupted before delivery");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Imports a pending load again exactly as planned — the same object versions, in the same
/// order, to the output its delivery recorded (the same key, table version, load time) — so
/// that a daemon that takes a load over from a paused one publishes the very bytes the paused
/// one would: whichever publishes second finds them in place and counts the load delivered
/// (`Target::deliver` never replaces). `false`, with nothing delivered, when an object no
/// longer reads as it did (changed, gone, or failing): its load is then imported anew.
async fn reimport(env: &RunEnv<'_>, pending: &PendingLoad, delivery: &Delivery) -> Result<bool, RunError> {
    let c = env.connection;
    let spool = Spool::create(
        env.spool_root,
        &c.name,
        &format!("{}-again", pending.run_id),
        SpoolFormat::for_connection(c),
    )
    .map_err(|source| RunError::Spool {
        path: env.spool_root.to_path_buf(),
        source,
    })?;
    let mut parts = Vec::new();
    // Objects whose rows were all bad had no part in the load.
    for x in pending
        .plan
        .settled
        .iter()
        .filter(|x| x.outcome == Outcome::Imported && x.rows > 0)
    {
        let meta = ObjectMeta {
            key: x.key.clone(),
            etag: x.etag.clone(),
            last_modified: x.last_modified,
            size: x.size,
            stamp: x.stamp.clone(),
        };
        match object::process(env, &spool, &meta).await {
            Processed::Imported { stats, spooled } if stats.rows - stats.bad_rows == x.rows => {
                parts.push(LoadPart {
                    spool: spooled.slice,
                    key: meta.key,
                    version: meta.etag,
                    last_modified: meta.last_modified,
                });
            }
            _ => {
                info!(key = %x.key, "an object of a pending load no longer reads as it did when planned");
                return Ok(false);
            }
        }
    }
    if parts.is_empty() {
        return Ok(false);
    }
    let refused = env.target.deliver(delivery, &parts).await?;
    let mut plan = pending.plan.clone();
    for r in refuse(&mut plan, &parts, refused) {
        warn!(key = %r.key, reason = %r.reason, "object refused by the target; rejected");
    }
    env.state.commit(&plan).await?;
    Ok(true)
}

/// Delivers a load exactly once: fixes its output, records the intent, writes, commits.
async fn deliver(
    env: &RunEnv<'_>,
    load: &LoadInfo<'_>,
    spools: &[LoadPart],
    plan: &mut CommitPlan,
) -> Result<(String, Vec<RefusedObject>), RunError> {
    let delivery = env.target.prepare(load).await?;
    let record = serde_json::to_value(&delivery).map_err(|e| TargetError::Record(e.to_string()))?;
    env.state
        .begin_load(&PendingLoad {
            run_id: plan.run_id.clone(),
            connection: plan.connection.clone(),
            delivery: record,
            plan: plan.clone(),
        })
        .await?;
    fault::point("after-prepare");
    let mut attempt = 1;
    let refused = loop {
        match env.target.deliver(&delivery, spools).await {
            Ok(refused) => break refused,
            Err(e) if attempt < ATTEMPTS && e.worth_retrying() => {
                warn!(error = %e, attempt, "delivery failed; trying again");
                tokio::time::sleep(BACKOFF * 2u32.pow(attempt - 1)).await;
                attempt += 1;
            }
            Err(e) => {
                // The target may hold the load even though it reported a failure (a link
                // done, its sync not): ask, rather than deliver it twice later. Not when the
                // name holds another load: that is there, but it is not this one.
                if !matches!(e, TargetError::OutputConflict { .. })
                    && env.target.recover(&delivery).await.unwrap_or(false)
                {
                    break Vec::new();
                }
                env.state.discard_load(&plan.run_id).await?;
                return Err(e.into());
            }
        }
    };
    fault::point("after-deliver");
    let refused_objects = refuse(plan, spools, refused);
    env.state.commit(plan).await?;
    fault::point("after-commit");
    Ok((delivery.output, refused_objects))
}

/// Settles the objects the target refused for their data as rejected, like a file over
/// `max_bad_rows` (importing them again would fail the same way); what was refused.
fn refuse(
    plan: &mut CommitPlan,
    parts: &[LoadPart],
    refused: Vec<crate::targets::Refused>,
) -> Vec<RefusedObject> {
    let mut refused_objects = Vec::new();
    for r in refused {
        let Some(part) = parts.get(r.part) else { continue };
        if let Some(entry) = plan
            .settled
            .iter_mut()
            .find(|x| x.key == part.key && x.etag == part.version)
        {
            refused_objects.push(RefusedObject {
                key: part.key.clone(),
                rows: entry.rows,
                reason: r.reason.clone(),
            });
            entry.outcome = Outcome::Rejected;
            entry.rows = 0;
            entry.reason = Some(r.reason);
        }
    }
    refused_objects
}

/// An object of a delivered load that the target refused for its data.
struct RefusedObject {
    key: String,
    /// The good rows it had, none of which were delivered.
    rows: u64,
    reason: String,
}

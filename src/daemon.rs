//! The daemon: runs every enabled connection on its schedule until told to stop.
//!
//! One loop owns the schedule. It sleeps until the earliest next run (never longer than a
//! minute, so a wall clock that jumps is noticed), starts the runs that are due, and answers
//! control messages: a reloaded configuration, or stop. Runs are tasks of their own: a
//! connection never runs twice at once (a tick that finds it still running is skipped and
//! logged), and at most `max_concurrent_runs` run together while the rest wait for a permit.
//!
//! What is not here: signals, configuration files and sd_notify's socket are the binary's
//! business (`main.rs`), which turns them into [`Control`] messages and a [`Notifier`]; what a
//! run does is [`Runner`]'s. So the loop can be tested with a fake runner under
//! `tokio::time::pause` and a [`crate::clock::TokioClock`].
//!
//! tokio-cron-scheduler is not used: its job loop reads the wall clock (`Utc::now()`) and
//! polls every 500 ms, so neither an injected clock nor paused time can drive it, and the
//! overlap, queueing and catch-up rules above would sit on top of it anyway. Cron expressions
//! are parsed and evaluated by croner, the parser tokio-cron-scheduler itself uses.

use crate::clock::Clock;
use crate::config::{Config, ConfigError, Connection};
use crate::run::RunEnv;
use crate::schedule;
use crate::state::{Claim, FleetState, StateStore};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// The longest the loop sleeps before looking at the clock again.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// What the binary tells the running daemon.
#[derive(Debug)]
pub enum Control {
    /// The configuration folder was read again (SIGHUP): apply it, or keep the old one and
    /// log every problem.
    Reload(Result<Box<Config>, Vec<ConfigError>>),
    /// Stop scheduling and let in-flight runs reach a safe point (SIGTERM, SIGINT).
    Stop,
}

/// The service manager's view of the daemon (sd_notify). Outside systemd it does nothing.
pub trait Notifier: Send + Sync {
    fn ready(&self);
    fn reloading(&self);
    fn stopping(&self);
    fn watchdog(&self);
}

/// A notifier for a daemon no service manager watches.
pub struct NoNotifier;

impl Notifier for NoNotifier {
    fn ready(&self) {}
    fn reloading(&self) {}
    fn stopping(&self) {}
    fn watchdog(&self) {}
}

/// Runs one connection once.
#[async_trait]
pub trait Runner: Send + Sync {
    /// Runs `connection` now, for the occurrence that was `due` (`scheduled`), or to take
    /// over a load its dead owner left (not `scheduled`). `stop` is cancelled when the daemon
    /// stops; `next_run` is when the schedule runs it again, for the summary event.
    async fn run(
        &self,
        connection: Arc<Connection>,
        stop: CancellationToken,
        due: DateTime<Utc>,
        scheduled: bool,
        next_run: Option<DateTime<Utc>>,
    );
}

/// The daemon's part in a fleet that shares its state store (docs/design.md §6): a heartbeat with
/// the configuration's fingerprint, and the connections whose owner died mid-delivery.
#[async_trait]
pub trait Fleet: Send + Sync {
    /// How often the loop beats and looks for orphans: a third of the lease TTL.
    fn every(&self) -> Duration;
    /// Records that this daemon is alive and runs the configuration `fingerprint`.
    async fn heartbeat(&self, fingerprint: &str);
    /// Connections with a pending load whose lease nobody holds.
    async fn orphaned(&self) -> Vec<String>;
    /// Occurrences whose claiming daemon died before their run ended: (connection, due).
    async fn lapsed(&self) -> Vec<(String, DateTime<Utc>)> {
        Vec::new()
    }
}

/// The fleet side of a shared state store.
pub struct StoreFleet {
    pub state: Arc<dyn FleetState>,
    pub lease_ttl: Duration,
    pub started_at: DateTime<Utc>,
    /// Counts the connections taken over.
    pub metrics: Arc<crate::metrics::Metrics>,
}

#[async_trait]
impl Fleet for StoreFleet {
    fn every(&self) -> Duration {
        self.lease_ttl / 3
    }

    async fn heartbeat(&self, fingerprint: &str) {
        if let Err(e) = self.state.heartbeat(fingerprint, self.started_at).await {
            warn!(error = %e, "recording this daemon's heartbeat failed");
        }
    }

    async fn orphaned(&self) -> Vec<String> {
        let orphans = self.state.orphaned().await.unwrap_or_else(|e| {
            warn!(error = %e, "looking for loads left by dead daemons failed");
            Vec::new()
        });
        for name in &orphans {
            self.metrics.took_over(name);
        }
        orphans
    }

    async fn lapsed(&self) -> Vec<(String, DateTime<Utc>)> {
        self.state.lapsed_occurrences().await.unwrap_or_else(|e| {
            warn!(error = %e, "looking for occurrences left by dead daemons failed");
            Vec::new()
        })
    }
}

/// What the daemon needs to know of past runs.
#[async_trait]
pub trait History: Send + Sync {
    /// When the latest run of `connection` that reached its end started; `None` if no run
    /// ever did.
    async fn last_completed_start(&self, connection: &str) -> Option<DateTime<Utc>>;
}

/// The history kept by the state store.
pub struct StoreHistory(pub Arc<dyn FleetState>);

#[async_trait]
impl History for StoreHistory {
    async fn last_completed_start(&self, connection: &str) -> Option<DateTime<Utc>> {
        match self.0.last_completed_run_start(connection).await {
            Ok(t) => t,
            Err(e) => {
                // Without history the connection is treated as never run: running it once
                // too often is harmless (the ledger skips what it has), missing it is not.
                warn!(connection, error = %e, "reading the run history failed");
                None
            }
        }
    }
}

/// The runner of the real daemon: builds the connection's source and target and runs it
/// against the shared state store.
pub struct StoreRunner {
    pub state: Arc<dyn StateStore>,
    pub clock: Arc<dyn Clock>,
    pub spool_root: PathBuf,
    pub limits: crate::run::RunLimits,
    /// What `/metrics` shows (served only with `metrics_listen`).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// One gate per connection, held by its scheduled runs and event loads alike: within
    /// this daemon they take turns instead of failing on each other's run lock.
    pub gates: Gates,
}

/// A connection's source and target, opened for one run or event load.
struct Ends {
    source: Box<dyn crate::sources::Source>,
    target: Box<dyn crate::targets::Target>,
}

impl Ends {
    async fn open(connection: &Connection) -> Ends {
        Ends {
            source: crate::sources::for_connection(connection).await,
            target: crate::targets::for_connection(connection).await,
        }
    }
}

impl StoreRunner {
    /// What a run or an event load of `connection` works with.
    fn env<'a>(
        &'a self,
        connection: &'a Connection,
        ends: &'a Ends,
        stop: CancellationToken,
        next_run: Option<DateTime<Utc>>,
    ) -> RunEnv<'a> {
        RunEnv {
            connection,
            source: ends.source.as_ref(),
            target: ends.target.as_ref(),
            state: self.state.as_ref(),
            clock: self.clock.as_ref(),
            spool_root: &self.spool_root,
            limits: self.limits,
            stop,
            next_run,
        }
    }
}

/// A lock per connection name, within one daemon.
#[derive(Default)]
pub struct Gates(std::sync::Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl Gates {
    /// The gate of `connection`.
    fn of(&self, connection: &str) -> Arc<tokio::sync::Mutex<()>> {
        // A poisoned map only means a thread panicked while inserting: the map is still whole.
        let mut gates = self.0.lock().unwrap_or_else(|e| e.into_inner());
        gates.entry(connection.to_string()).or_default().clone()
    }
}

#[async_trait]
impl crate::events::Importer for StoreRunner {
    async fn import(
        &self,
        connection: Arc<Connection>,
        keys: Vec<String>,
        stop: CancellationToken,
    ) -> crate::events::Imported {
        let gate = self.gates.of(&connection.name);
        let _turn = tokio::select! {
            turn = gate.lock() => turn,
            () = stop.cancelled() => return crate::events::Imported::default(),
        };
        let ends = Ends::open(&connection).await;
        let load = crate::run::run_keys(&self.env(&connection, &ends, stop, None), &keys).await;
        self.metrics.objects_counted(&load.summary);
        drop(ends);
        crate::events::Imported {
            settled: load.settled,
            busy: load.summary.busy,
            delivered: load.delivered,
        }
    }
}

/// Starts event mode's consumer of a connection's queue.
pub trait Listener: Send + Sync {
    /// Consumes the queue of `connection` (which has one) until `stop`.
    fn listen(&self, connection: Arc<Connection>, stop: CancellationToken) -> tokio::task::JoinHandle<()>;
}

/// The real daemon's listener: an SQS consumer whose loads the [`StoreRunner`] runs.
pub struct StoreListener(pub Arc<StoreRunner>);

impl Listener for StoreListener {
    fn listen(&self, connection: Arc<Connection>, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let runner = self.0.clone();
        tokio::spawn(async move {
            let crate::sources::SourceSpec::S3(spec) = &connection.source else {
                return;
            };
            let Some(events) = spec.events.clone() else { return };
            let Ok(url) = url::Url::parse(&events.queue_url) else {
                return;
            };
            let client = crate::aws::sqs_client(&connection.name, &spec.location, &url).await;
            let consumer = crate::events::Consumer {
                bucket: spec.location.bucket.clone(),
                queue: Arc::new(crate::events::SqsQueue::new(client, &events.queue_url)),
                spec: events,
                importer: runner.clone(),
                clock: runner.clock.clone(),
                metrics: runner.metrics.clone(),
                connection: connection.clone(),
            };
            consumer.run(stop).await;
        })
    }
}

/// Event mode's queue of a connection, if it has one.
pub fn queue_of(connection: &Connection) -> Option<&crate::events::EventSpec> {
    match &connection.source {
        crate::sources::SourceSpec::S3(spec) => spec.events.as_ref(),
        _ => None,
    }
}

#[async_trait]
impl Runner for StoreRunner {
    async fn run(
        &self,
        connection: Arc<Connection>,
        stop: CancellationToken,
        due: DateTime<Utc>,
        scheduled: bool,
        next_run: Option<DateTime<Utc>>,
    ) {
        if scheduled && self.state.shared() && !self.claim(&connection.name, due, next_run, &stop).await {
            return;
        }
        // An event load of this connection in this daemon finishes first (seconds).
        let gate = self.gates.of(&connection.name);
        let _turn = tokio::select! {
            turn = gate.lock() => turn,
            () = stop.cancelled() => return,
        };
        self.metrics
            .schedule_lag(&connection.name, self.clock.now() - due);
        // Registered and set at each run too, so that a connection a reload added has them.
        self.metrics.register(&connection.name);
        if let Some(period) = crate::schedule::period(&connection.schedule, &connection.name, due) {
            self.metrics.schedule_period(&connection.name, period);
        }
        // A run that failed for the state store's sake (out of reach) is run again when it
        // answers, backing off from 1 s to 30 s, until the next occurrence is due: the claim
        // is this daemon's, so no other daemon would run this occurrence.
        let mut backoff = Duration::from_secs(1);
        loop {
            self.metrics.run_started();
            let ends = Ends::open(&connection).await;
            // The run logs its start, its summary and its errors itself.
            let summary = crate::run::run(&self.env(&connection, &ends, stop.clone(), next_run), false).await;
            self.metrics.run_finished(&summary, self.clock.now());
            drop(ends);
            give_back_memory();
            if !summary.state_fault || stop.is_cancelled() || next_run.is_some_and(|n| self.clock.now() >= n)
            {
                return;
            }
            warn!(
                connection = %connection.name,
                scheduled_for = %due.to_rfc3339(),
                retry_in_s = backoff.as_secs(),
                "the run failed because the state store was out of reach; running the occurrence again"
            );
            self.metrics.rerun(&connection.name);
            if !crate::clock::pause(backoff, &stop).await {
                return;
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }
}

impl StoreRunner {
    /// Claims the occurrence `due` of a connection for this daemon, after a random pause of
    /// up to half a second that spreads the fleet's claims over its daemons. Whether to run.
    /// A claim that fails (the state database unreachable) is tried again, backing off up to
    /// 30 s, until it is answered, the daemon stops, or the next occurrence (`next`) is due:
    /// every daemon of the fleet does the same, and the first answered claim runs it.
    async fn claim(
        &self,
        connection: &str,
        due: DateTime<Utc>,
        next: Option<DateTime<Utc>>,
        stop: &CancellationToken,
    ) -> bool {
        let jitter = Duration::from_millis((uuid::Uuid::new_v4().as_u128() % 500) as u64);
        if !crate::clock::pause(jitter, stop).await {
            return false;
        }
        let mut backoff = Duration::from_secs(1);
        loop {
            let claim = self.state.claim_occurrence(connection, due).await;
            self.metrics.claimed(
                connection,
                match &claim {
                    Ok(Claim::Won) => "won",
                    Ok(Claim::Retaken { .. }) => "retaken",
                    Ok(Claim::Elsewhere { .. }) => "lost",
                    Err(_) => "failed",
                },
            );
            match claim {
                Ok(Claim::Won) => return true,
                Ok(Claim::Retaken { from }) => {
                    warn!(connection, scheduled_for = %due.to_rfc3339(), owner = %from, "running an occurrence whose daemon died before its run ended");
                    return true;
                }
                Ok(Claim::Elsewhere { owner }) => {
                    info!(connection, scheduled_for = %due.to_rfc3339(), owner = %owner, "ran elsewhere: another daemon of the fleet claimed this occurrence");
                    return false;
                }
                Err(e) => {
                    if next.is_some_and(|n| self.clock.now() >= n) {
                        error!(connection, scheduled_for = %due.to_rfc3339(), error = %e, "claiming the occurrence failed until the next one was due; it is skipped");
                        return false;
                    }
                    warn!(connection, scheduled_for = %due.to_rfc3339(), error = %e, retry_in_s = backoff.as_secs(), "claiming the occurrence failed; trying again (the state database may be down)");
                }
            }
            if !crate::clock::pause(backoff, stop).await {
                return false;
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }
}

/// Hands the memory a finished run freed back to the system. The allocator keeps freed
/// memory for reuse, spread over per-thread arenas, so a daemon would otherwise stay at the
/// size of its largest run until it restarts; a run is rare enough that the trim costs
/// nothing that matters.
fn give_back_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of glibc's own heaps to the system; it
    // touches no memory that is in use, and any thread may call it at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Whether a connection must run as soon as the daemon starts: it never completed a run, or
/// a scheduled run fell between its last run and now (the daemon was down).
pub fn needs_catch_up(
    connection: &Connection,
    zone: chrono_tz::Tz,
    last_start: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> bool {
    match last_start {
        None => true,
        Some(last) => schedule::next_run(&connection.schedule, &connection.name, zone, last)
            .is_some_and(|due| due <= now),
    }
}

/// One scheduled connection.
struct Entry {
    connection: Arc<Connection>,
    /// When it runs next; `None` for a schedule that never fires again.
    next: Option<DateTime<Utc>>,
}

/// The daemon's parts that do not change while it runs.
pub struct Parts {
    pub runner: Arc<dyn Runner>,
    pub history: Arc<dyn History>,
    pub clock: Arc<dyn Clock>,
    pub notifier: Arc<dyn Notifier>,
    /// `WatchdogSec` of the unit, when set: a keep-alive is sent twice as often.
    pub watchdog: Option<Duration>,
    /// With a shared state store: heartbeats and takeovers.
    pub fleet: Option<Arc<dyn Fleet>>,
    /// Event mode: consumers of the connections' queues.
    pub listener: Option<Arc<dyn Listener>>,
}

/// The running consumer of one connection's queue: the connection as it was started (a
/// reload that changes it restarts the consumer), its stop, its task.
struct Listening {
    connection: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Starts a consumer for each scheduled connection with a queue, stops those whose
/// connection is gone, disabled or changed (a changed one starts again with its new
/// settings). A stopped consumer's load in flight finishes in its own task.
fn listen_all(
    entries: &BTreeMap<String, Entry>,
    listener: Option<&Arc<dyn Listener>>,
    stop: &CancellationToken,
    listening: &mut BTreeMap<String, Listening>,
    stopped: &mut Vec<tokio::task::JoinHandle<()>>,
) {
    let Some(listener) = listener else { return };
    // A connection's whole checked configuration, as its `Debug` shows it (secrets
    // redacted): a change anywhere (its queue, its target, its template) restarts the consumer.
    let wanted: BTreeMap<&String, (String, &Arc<Connection>)> = entries
        .iter()
        .filter(|(_, e)| queue_of(&e.connection).is_some())
        .map(|(name, e)| (name, (format!("{:?}", e.connection), &e.connection)))
        .collect();
    let names: Vec<String> = listening.keys().cloned().collect();
    for name in names {
        if wanted
            .get(&name)
            .is_none_or(|(shown, _)| listening[&name].connection != *shown)
            && let Some(old) = listening.remove(&name)
        {
            old.stop.cancel();
            stopped.push(old.task);
        }
    }
    for (name, (shown, connection)) in wanted {
        if listening.contains_key(name) {
            continue;
        }
        let own = stop.child_token();
        let task = listener.listen(connection.clone(), own.clone());
        listening.insert(
            name.clone(),
            Listening {
                connection: shown,
                stop: own,
                task,
            },
        );
    }
}

/// Runs the schedule until [`Control::Stop`] (or the control channel closes), then waits up to
/// `shutdown_timeout` for in-flight runs. Returns whether they all finished in time.
pub async fn serve(config: Config, parts: Parts, mut control: mpsc::Receiver<Control>) -> bool {
    let Parts {
        runner,
        history,
        clock,
        notifier,
        watchdog,
        fleet,
        listener,
    } = parts;
    let mut config = config;
    let mut entries = schedule_all(&config, &BTreeMap::new(), history.as_ref(), clock.now()).await;
    // When the fleet was last looked at (heartbeat, orphans); `None` until the first time.
    let mut fleet_seen: Option<tokio::time::Instant> = None;
    let stop = CancellationToken::new();
    let mut runs = Runs {
        tasks: JoinSet::new(),
        running: HashSet::new(),
        runner: runner.clone(),
        stop: stop.clone(),
        permits: Arc::new(Semaphore::new(config.settings.max_concurrent_runs)),
    };
    let mut keepalive = watchdog.map(|w| tokio::time::interval((w / 2).max(Duration::from_millis(100))));
    let mut listening: BTreeMap<String, Listening> = BTreeMap::new();
    let mut stopped_listeners: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    listen_all(
        &entries,
        listener.as_ref(),
        &stop,
        &mut listening,
        &mut stopped_listeners,
    );
    notifier.ready();
    info!(connections = entries.len(), "daemon started");

    loop {
        let now = clock.now();
        for (name, entry) in entries.iter_mut() {
            let Some(due) = entry.next.filter(|due| *due <= now) else {
                continue;
            };
            let zone = config.settings.timezone;
            entry.next = schedule::next_run(&entry.connection.schedule, name, zone, due.max(now));
            if !runs.start(&entry.connection, due, true, entry.next) {
                info!(connection = %name, "still running; this scheduled run is skipped");
            }
        }
        if let Some(fleet) = &fleet
            && fleet_seen.is_none_or(|seen| seen.elapsed() >= fleet.every())
        {
            fleet_seen = Some(tokio::time::Instant::now());
            fleet.heartbeat(&config.fingerprint).await;
            // An occurrence whose daemon died mid-run is claimed again (the claim takes it
            // over only if it has still lapsed) and run, as scheduled.
            for (name, due) in fleet.lapsed().await {
                let Some(entry) = entries.get(&name) else { continue };
                if runs.start(&entry.connection, due, true, entry.next) {
                    info!(connection = %name, scheduled_for = %due.to_rfc3339(), "an occurrence's daemon died before its run ended: claiming it");
                }
            }
            for name in fleet.orphaned().await {
                let Some(entry) = entries.get(&name) else { continue };
                if runs.start(&entry.connection, now, false, entry.next) {
                    info!(connection = %name, "taking over: a load of this connection was left pending by a daemon whose lease expired");
                }
            }
        }
        let wake = entries.values().filter_map(|e| e.next).min();
        let nap = wake
            .map(|w| (w - clock.now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP)
            .min(fleet.as_ref().map_or(MAX_SLEEP, |f| f.every()));
        let keepalive_tick = async {
            match keepalive.as_mut() {
                Some(k) => {
                    k.tick().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = tokio::time::sleep(nap) => {}
            Some(done) = runs.tasks.join_next(), if !runs.tasks.is_empty() => {
                match done {
                    Ok(name) => { runs.running.remove(&name); }
                    Err(e) => {
                        // A run that panicked: its name is lost with it, so forget every name
                        // whose task is gone. Cannot happen unless a bug does.
                        error!(error = %e, "a run task failed");
                        runs.running.clear();
                    }
                }
            }
            message = control.recv() => match message {
                Some(Control::Reload(Ok(new))) => {
                    notifier.reloading();
                    if new.settings.state != config.settings.state {
                        warn!("the state store changed; the daemon keeps the old one until it restarts");
                    }
                    if new.settings.max_concurrent_runs != config.settings.max_concurrent_runs {
                        // Runs holding a permit of the old semaphore finish with it.
                        runs.permits = Arc::new(Semaphore::new(new.settings.max_concurrent_runs));
                    }
                    entries = schedule_all(&new, &entries, history.as_ref(), clock.now()).await;
                    listen_all(&entries, listener.as_ref(), &stop, &mut listening, &mut stopped_listeners);
                    stopped_listeners.retain(|t| !t.is_finished());
                    config = *new;
                    info!(connections = entries.len(), "configuration reloaded");
                    notifier.ready();
                }
                Some(Control::Reload(Err(problems))) => {
                    notifier.reloading();
                    for p in &problems {
                        error!(problem = %p, "configuration problem");
                    }
                    error!(problems = problems.len(), "the new configuration is invalid; the old one keeps running");
                    notifier.ready();
                }
                Some(Control::Stop) | None => break,
            },
            () = keepalive_tick => notifier.watchdog(),
        }
    }

    notifier.stopping();
    stop.cancel();
    info!(
        in_flight = runs.tasks.len(),
        "stopping: in-flight runs finish their objects"
    );
    let finished = tokio::time::timeout(config.settings.shutdown_timeout, async {
        while runs.tasks.join_next().await.is_some() {}
        // Event loads in flight reach their safe point; gathered messages go back.
        for task in listening.into_values().map(|l| l.task).chain(stopped_listeners) {
            let _ = task.await;
        }
    })
    .await
    .is_ok();
    if !finished {
        warn!(
            in_flight = runs.tasks.len(),
            "in-flight runs did not finish within shutdown_timeout_s; stopping anyway (the next run recovers their loads)"
        );
    }
    finished
}

/// The runs in flight: a task each, the connections they run (none runs twice at once),
/// and what a new one needs.
struct Runs {
    tasks: JoinSet<String>,
    running: HashSet<String>,
    runner: Arc<dyn Runner>,
    stop: CancellationToken,
    /// `max_concurrent_runs`; a reload that changes it gives new runs a new semaphore.
    permits: Arc<Semaphore>,
}

impl Runs {
    /// Starts a run of `connection` as a task of its own, which waits for one of the
    /// `max_concurrent_runs` permits first; `false` (and nothing started) when it is running.
    fn start(
        &mut self,
        connection: &Arc<Connection>,
        due: DateTime<Utc>,
        scheduled: bool,
        next: Option<DateTime<Utc>>,
    ) -> bool {
        if !self.running.insert(connection.name.clone()) {
            return false;
        }
        let (runner, connection, stop, permits) = (
            self.runner.clone(),
            connection.clone(),
            self.stop.clone(),
            self.permits.clone(),
        );
        self.tasks.spawn(async move {
            let name = connection.name.clone();
            // Queued runs wait here for one of the max_concurrent_runs permits.
            let permit = tokio::select! {
                p = permits.acquire_owned() => p.ok(),
                () = stop.cancelled() => None,
            };
            if permit.is_some() {
                runner.run(connection, stop, due, scheduled, next).await;
            }
            name
        });
        true
    }
}

/// The schedule of every enabled connection of `config`. A connection already scheduled
/// keeps its next run when its schedule is unchanged; any other connection runs now when it
/// needs catching up, else at its next scheduled time.
async fn schedule_all(
    config: &Config,
    old: &BTreeMap<String, Entry>,
    history: &dyn History,
    now: DateTime<Utc>,
) -> BTreeMap<String, Entry> {
    let zone = config.settings.timezone;
    let mut entries = BTreeMap::new();
    for c in config.connections.iter().filter(|c| c.enabled) {
        let cron = schedule::cron_text(&c.schedule, &c.name);
        let kept = old
            .get(&c.name)
            .filter(|e| schedule::cron_text(&e.connection.schedule, &c.name) == cron)
            .map(|e| e.next);
        let last = history.last_completed_start(&c.name).await;
        let next = match kept {
            Some(next) => next,
            None if needs_catch_up(c, zone, last, now) => {
                // Due at the first occurrence it missed (or, never run, this minute): the
                // daemons of a fleet that start together name the same occurrence, and one
                // of them runs it.
                let missed = last
                    .and_then(|l| schedule::next_run(&c.schedule, &c.name, zone, l))
                    .filter(|due| *due <= now);
                info!(
                    connection = %c.name,
                    missed = %missed.map_or_else(|| "none (never ran)".to_string(), |t| t.to_rfc3339()),
                    "never ran, or missed a scheduled run: running now"
                );
                Some(missed.unwrap_or_else(|| {
                    chrono::DurationRound::duration_trunc(now, chrono::TimeDelta::minutes(1)).unwrap_or(now)
                }))
            }
            None => schedule::next_run(&c.schedule, &c.name, zone, now),
        };
        // A catch-up is due in the past (the occurrence it stands for) but runs now: the log
        // says when it runs, never a time already gone.
        info!(
            connection = %c.name,
            schedule = %schedule::describe(&c.schedule, &c.name),
            next_run = %next.map_or_else(|| "never".to_string(), |t| t.max(now).to_rfc3339()),
            "scheduled"
        );
        entries.insert(
            c.name.clone(),
            Entry {
                connection: Arc::new(c.clone()),
                next,
            },
        );
    }
    for name in old.keys().filter(|n| !entries.contains_key(*n)) {
        info!(connection = %name, "no longer scheduled (removed or disabled); a run in flight finishes");
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::TokioClock;
    use chrono::TimeZone;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// 2026-01-01T00:00:00Z, a Thursday.
    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    /// A configuration with the given (name, schedule) connections and settings lines.
    fn config(connections: &[(&str, &str)], settings: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("connections")).unwrap();
        std::fs::write(dir.path().join("s3-importd.toml"), settings).unwrap();
        for (name, schedule) in connections {
            let toml = format!(
                "schedule = \"{schedule}\"\n[source]\ntype = \"dir\"\npath = \"in\"\n[template]\n[[template.fields]]\nname = \"id\"\n[target]\ntype = \"stdout\"\n"
            );
            std::fs::write(dir.path().join(format!("connections/{name}.toml")), toml).unwrap();
        }
        let loaded = crate::config::load(dir.path());
        loaded.unwrap_or_else(|e| panic!("{e}"))
    }

    /// A finished run: connection, start, end.
    type RunLog = (String, DateTime<Utc>, DateTime<Utc>);

    /// Records when each run starts and ends; a run takes its connection's duration.
    struct FakeRunner {
        clock: TokioClock,
        took: BTreeMap<String, Duration>,
        ignores_stop: bool,
        log: Mutex<Vec<RunLog>>,
        /// Every run's connection, due time and whether it was scheduled, as started.
        started: Mutex<Vec<(String, DateTime<Utc>, bool)>>,
    }

    #[async_trait]
    impl Runner for FakeRunner {
        async fn run(
            &self,
            c: Arc<Connection>,
            stop: CancellationToken,
            due: DateTime<Utc>,
            scheduled: bool,
            _next: Option<DateTime<Utc>>,
        ) {
            self.started
                .lock()
                .unwrap()
                .push((c.name.clone(), due, scheduled));
            let start = self.clock.now();
            let took = self.took.get(&c.name).copied().unwrap_or(Duration::from_secs(1));
            if self.ignores_stop {
                tokio::time::sleep(took).await;
            } else {
                tokio::select! {
                    () = tokio::time::sleep(took) => {}
                    () = stop.cancelled() => {}
                }
            }
            self.log
                .lock()
                .unwrap()
                .push((c.name.clone(), start, self.clock.now()));
        }
    }

    struct FakeHistory(BTreeMap<String, DateTime<Utc>>);

    #[async_trait]
    impl History for FakeHistory {
        async fn last_completed_start(&self, connection: &str) -> Option<DateTime<Utc>> {
            self.0.get(connection).copied()
        }
    }

    #[derive(Default)]
    struct Counting {
        ready: AtomicUsize,
        reloading: AtomicUsize,
        stopping: AtomicUsize,
        watchdog: AtomicUsize,
    }

    impl Notifier for Counting {
        fn ready(&self) {
            self.ready.fetch_add(1, Ordering::SeqCst);
        }
        fn reloading(&self) {
            self.reloading.fetch_add(1, Ordering::SeqCst);
        }
        fn stopping(&self) {
            self.stopping.fetch_add(1, Ordering::SeqCst);
        }
        fn watchdog(&self) {
            self.watchdog.fetch_add(1, Ordering::SeqCst);
        }
    }

    struct Harness {
        runner: Arc<FakeRunner>,
        notifier: Arc<Counting>,
        control: mpsc::Sender<Control>,
        daemon: tokio::task::JoinHandle<bool>,
    }

    impl Harness {
        fn start(
            config: Config,
            history: &[(&str, DateTime<Utc>)],
            took: &[(&str, u64)],
            ignores_stop: bool,
        ) -> Harness {
            Harness::start_in_fleet(config, history, took, ignores_stop, None)
        }

        fn start_in_fleet(
            config: Config,
            history: &[(&str, DateTime<Utc>)],
            took: &[(&str, u64)],
            ignores_stop: bool,
            fleet: Option<Arc<dyn Fleet>>,
        ) -> Harness {
            let clock = TokioClock::starting_at(t0());
            let runner = Arc::new(FakeRunner {
                clock,
                took: took
                    .iter()
                    .map(|(n, m)| (n.to_string(), Duration::from_secs(m * 60)))
                    .collect(),
                ignores_stop,
                log: Mutex::new(Vec::new()),
                started: Mutex::new(Vec::new()),
            });
            let notifier = Arc::new(Counting::default());
            let (control, rx) = mpsc::channel(4);
            let parts = Parts {
                runner: runner.clone(),
                history: Arc::new(FakeHistory(
                    history.iter().map(|(n, t)| (n.to_string(), *t)).collect(),
                )),
                clock: Arc::new(clock),
                notifier: notifier.clone(),
                watchdog: Some(Duration::from_secs(60)),
                fleet,
                listener: None,
            };
            let daemon = tokio::spawn(serve(config, parts, rx));
            Harness {
                runner,
                notifier,
                control,
                daemon,
            }
        }

        /// (name, start minute, end minute) of every finished run, in start order.
        fn runs(&self) -> Vec<(String, i64, i64)> {
            let mut runs: Vec<_> = self
                .runner
                .log
                .lock()
                .unwrap()
                .iter()
                .map(|(n, s, e)| (n.clone(), (*s - t0()).num_minutes(), (*e - t0()).num_minutes()))
                .collect();
            runs.sort_by_key(|r| (r.1, r.0.clone()));
            runs
        }

        async fn stop(mut self) -> (bool, Vec<(String, i64, i64)>, Arc<Counting>) {
            self.control.send(Control::Stop).await.unwrap();
            let runs_of = |h: &Harness| h.runs();
            let clean = (&mut self.daemon).await.unwrap();
            (clean, runs_of(&self), self.notifier)
        }
    }

    async fn wait_minutes(m: u64) {
        tokio::time::sleep(Duration::from_secs(m * 60)).await;
    }

    /// A fleet whose store reports one orphaned connection, `orphan_for` times.
    struct FakeFleet {
        orphan: String,
        orphan_for: AtomicUsize,
        beats: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl Fleet for FakeFleet {
        fn every(&self) -> Duration {
            Duration::from_secs(20)
        }
        async fn heartbeat(&self, fingerprint: &str) {
            self.beats.lock().unwrap().push(fingerprint.to_string());
        }
        async fn orphaned(&self) -> Vec<String> {
            let left = self.orphan_for.load(Ordering::SeqCst);
            if left == 0 {
                return Vec::new();
            }
            self.orphan_for.store(left - 1, Ordering::SeqCst);
            vec![self.orphan.clone()]
        }
    }

    #[tokio::test(start_paused = true)]
    async fn in_a_fleet_orphans_are_taken_over_and_catch_up_names_the_missed_occurrence() {
        let cfg = config(&[("orph", "0 * * * *"), ("missed", "30 2 * * *")], "");
        let fleet = Arc::new(FakeFleet {
            orphan: "orph".into(),
            orphan_for: AtomicUsize::new(1),
            beats: Mutex::new(Vec::new()),
        });
        let day_before = t0() - chrono::TimeDelta::days(1);
        let h = Harness::start_in_fleet(
            cfg,
            // orph ran at midnight: nothing to catch up. missed ran two days ago at 02:30.
            &[
                ("orph", t0()),
                (
                    "missed",
                    day_before - chrono::TimeDelta::hours(21) - chrono::TimeDelta::minutes(30),
                ),
            ],
            &[],
            false,
            Some(fleet.clone()),
        );
        wait_minutes(2).await;
        let started = h.runner.started.lock().unwrap().clone();
        // The catch-up is due at the first occurrence it missed: every daemon of a fleet names
        // the same one, and the claim lets one run it.
        assert!(
            started.contains(&(
                "missed".to_string(),
                day_before + chrono::TimeDelta::hours(2) + chrono::TimeDelta::minutes(30),
                true
            )),
            "{started:?}"
        );
        // The orphan is run at once, not as a scheduled occurrence (nothing to claim).
        assert!(
            started.contains(&("orph".to_string(), t0(), false)),
            "{started:?}"
        );
        assert_eq!(started.iter().filter(|s| s.0 == "orph").count(), 1, "{started:?}");
        // The loop beats every `every` with the configuration's fingerprint.
        assert!(
            fleet.beats.lock().unwrap().len() >= 5,
            "{:?}",
            fleet.beats.lock().unwrap()
        );
        h.stop().await;
    }

    #[test]
    fn catch_up_rules() {
        let cfg = config(&[("c", "30 2 * * *")], "");
        let c = &cfg.connections[0];
        let at = |d, h, m| Utc.with_ymd_and_hms(2026, 1, d, h, m, 0).unwrap();
        let cases = [
            (None, at(5, 12, 0), true),
            // Ran today at 02:30; next is tomorrow.
            (Some(at(5, 2, 30)), at(5, 12, 0), false),
            // Ran yesterday; today's 02:30 passed while the daemon was down.
            (Some(at(4, 2, 30)), at(5, 12, 0), true),
            // Ran yesterday; today's run is still ahead.
            (Some(at(4, 2, 30)), at(5, 1, 0), false),
        ];
        for (last, now, want) in cases {
            assert_eq!(
                needs_catch_up(c, chrono_tz::Tz::UTC, last, now),
                want,
                "{last:?} {now}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn runs_on_schedule_catches_up_and_never_overlaps() {
        let cfg = config(
            &[
                ("every10", "*/10 * * * *"),
                ("fresh", "0 5 * * *"),
                ("slow", "*/10 * * * *"),
            ],
            "",
        );
        // `every10` and `slow` ran just now; `fresh` never ran, so it runs at once.
        let h = Harness::start(cfg, &[("every10", t0()), ("slow", t0())], &[("slow", 25)], false);
        wait_minutes(45).await;
        let (clean, runs, notifier) = h.stop().await;
        assert!(clean);
        let of = |name: &str| {
            runs.iter()
                .filter(|r| r.0 == name)
                .map(|r| (r.1, r.2))
                .collect::<Vec<_>>()
        };
        assert_eq!(of("fresh"), [(0, 0)]);
        assert_eq!(of("every10"), [(10, 10), (20, 20), (30, 30), (40, 40)]);
        // 25 minutes a run: the ticks at 20 and 30 find it running and are skipped; the run
        // started at 40 is stopped by the shutdown at 45.
        assert_eq!(of("slow"), [(10, 35), (40, 45)]);
        assert_eq!(notifier.ready.load(Ordering::SeqCst), 1);
        assert_eq!(notifier.stopping.load(Ordering::SeqCst), 1);
        // WatchdogSec=60 s: a keep-alive every 30 s.
        assert!(
            notifier.watchdog.load(Ordering::SeqCst) >= 89,
            "{:?}",
            notifier.watchdog
        );
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_max_concurrent_runs_the_rest_queue() {
        let cfg = config(
            &[("a", "0 5 * * *"), ("b", "0 5 * * *"), ("c", "0 5 * * *")],
            "max_concurrent_runs = 2\n",
        );
        let h = Harness::start(cfg, &[], &[("a", 10), ("b", 20), ("c", 10)], false);
        wait_minutes(30).await;
        let (_, runs, _) = h.stop().await;
        assert_eq!(
            runs,
            [
                ("a".to_string(), 0, 10),
                ("b".to_string(), 0, 20),
                ("c".to_string(), 10, 20)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn reload_adds_and_removes_and_an_invalid_configuration_keeps_the_old() {
        let cfg = config(&[("old", "*/10 * * * *")], "");
        let h = Harness::start(cfg, &[("old", t0())], &[], false);
        wait_minutes(15).await;
        h.control
            .send(Control::Reload(Err(vec![ConfigError {
                file: "connections/x.toml".into(),
                key: "schedule".into(),
                message: "bad".into(),
            }])))
            .await
            .unwrap();
        wait_minutes(10).await;
        let new = config(&[("new", "0 5 * * *")], "");
        h.control.send(Control::Reload(Ok(Box::new(new)))).await.unwrap();
        wait_minutes(20).await;
        let (_, runs, notifier) = h.stop().await;
        let of = |name: &str| {
            runs.iter()
                .filter(|r| r.0 == name)
                .map(|r| r.1)
                .collect::<Vec<_>>()
        };
        // `old` kept running through the invalid reload, and stopped with the valid one.
        assert_eq!(of("old"), [10, 20]);
        // `new` never ran: it runs as soon as it is added.
        assert_eq!(of("new"), [25]);
        assert_eq!(notifier.reloading.load(Ordering::SeqCst), 2);
        assert_eq!(notifier.ready.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_that_will_not_stop_is_left_after_the_shutdown_timeout() {
        let cfg = config(&[("stuck", "0 5 * * *")], "shutdown_timeout_s = 5\n");
        let h = Harness::start(cfg, &[], &[("stuck", 60)], true);
        wait_minutes(1).await;
        let before = tokio::time::Instant::now();
        let (clean, runs, _) = h.stop().await;
        assert!(!clean);
        assert!(runs.is_empty());
        assert_eq!(before.elapsed(), Duration::from_secs(5));
    }
}

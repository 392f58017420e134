//! `s3-importd daemon`: the process side of `s3_importd::daemon` — signals become control
//! messages (SIGHUP reloads the configuration folder, SIGTERM/SIGINT stop, a second stop
//! signal exits at once) and the service manager hears of it through sd_notify.

use anyhow::Context;
use s3_importd::clock::{Clock, SystemClock};
use s3_importd::config::{self, Config};
use s3_importd::daemon::{self, Control, Notifier, Parts, StoreFleet, StoreHistory, StoreRunner};
use sd_notify::NotifyState;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// How many of a connection's latest runs are read at start for the gauges the state knows:
/// a last success further back than this many failed runs is not shown until the next one.
const RESTORED_RUNS: usize = 500;

/// sd_notify over `$NOTIFY_SOCKET`; without the variable (not under systemd) every call does
/// nothing.
struct SdNotifier;

impl SdNotifier {
    fn send(&self, states: &[NotifyState]) {
        if let Err(e) = sd_notify::notify(states) {
            warn!(error = %e, "telling systemd failed");
        }
    }
}

impl Notifier for SdNotifier {
    fn ready(&self) {
        self.send(&[NotifyState::Ready]);
    }
    fn reloading(&self) {
        // Type=notify-reload wants the monotonic time with RELOADING=1; Type=notify ignores it.
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }
    fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }
    fn watchdog(&self) {
        self.send(&[NotifyState::Watchdog]);
    }
}

pub async fn command(config: Config, dir: PathBuf) -> anyhow::Result<ExitCode> {
    let state = super::open_state(&config).await?;
    info!(state = %state.describe(), owner = %state.owner().id, config_fingerprint = %config.fingerprint, "state store open");
    let clock = Arc::new(SystemClock);
    let metrics = Arc::new(s3_importd::metrics::Metrics::new());
    for c in &config.connections {
        metrics.register(&c.name);
        if let Some(period) = s3_importd::schedule::period(&c.schedule, &c.name, clock.now()) {
            metrics.schedule_period(&c.name, period);
        }
        // The state's record of recent runs sets the gauges it knows; without it they wait
        // for the next run, as they would have.
        match state.runs(&c.name, RESTORED_RUNS).await {
            Ok(runs) => metrics.restore(&c.name, &runs),
            Err(e) => warn!(connection = %c.name, error = %e, "the last runs could not be read for /metrics"),
        }
    }
    // The listener binds before anything runs: a port in use stops the start, clearly. It
    // stays as started until the daemon stops (a reload does not move it).
    let serving = CancellationToken::new();
    if let Some(addr) = config.settings.metrics_listen {
        s3_importd::metrics::serve(addr, metrics.clone(), serving.clone()).await?;
    }
    let _stop_serving = serving.drop_guard();
    let runner = StoreRunner {
        state: state.clone(),
        clock: clock.clone(),
        spool_root: config.settings.spool_dir.clone(),
        limits: s3_importd::run::RunLimits::of(&config.settings),
        metrics: metrics.clone(),
        gates: Default::default(),
    };
    let runner = Arc::new(runner);
    let mut hangup = signal(SignalKind::hangup()).context("listening for SIGHUP")?;
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut stopping = false;
        loop {
            tokio::select! {
                _ = hangup.recv() => {
                    info!(config = %dir.display(), "SIGHUP: reloading the configuration");
                    let loaded = config::load(&dir).map(Box::new).map_err(|e| e.0);
                    if tx.send(Control::Reload(loaded)).await.is_err() {
                        return;
                    }
                }
                _ = terminate.recv() => stop(&tx, &mut stopping).await,
                _ = interrupt.recv() => stop(&tx, &mut stopping).await,
            }
        }
    });
    let parts = Parts {
        listener: Some(Arc::new(daemon::StoreListener(runner.clone()))),
        runner,
        history: Arc::new(StoreHistory(state.clone())),
        fleet: state.shared().then(|| {
            Arc::new(StoreFleet {
                state: state.clone(),
                lease_ttl: config.settings.lease_ttl,
                started_at: chrono::Utc::now(),
                metrics: metrics.clone(),
            }) as Arc<dyn daemon::Fleet>
        }),
        clock,
        notifier: Arc::new(SdNotifier),
        watchdog: sd_notify::watchdog_enabled(),
    };
    let finished = daemon::serve(config, parts, rx).await;
    info!(clean = finished, "daemon stopped");
    if !finished {
        // Runs stuck past shutdown_timeout_s may hold blocking threads the runtime would wait
        // for; the state store is consistent at every commit, so leave now.
        std::process::exit(0);
    }
    Ok(ExitCode::SUCCESS)
}

/// The first stop signal asks for a graceful stop; the second exits at once. Commits are
/// transactions (SQLite's, or PostgreSQL's in fleet mode), so the state store is consistent
/// whenever the process ends, and a lease a killed daemon held lapses after `lease_ttl_s`.
async fn stop(tx: &mpsc::Sender<Control>, stopping: &mut bool) {
    if *stopping {
        error!("second stop signal: exiting at once");
        std::process::exit(0);
    }
    *stopping = true;
    info!("stop signal: finishing in-flight objects (a second signal exits at once)");
    let _ = tx.send(Control::Stop).await;
}

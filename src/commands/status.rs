//! `s3-importd status [NAME] [--json] [--runs N]`: what the state store knows of each
//! connection, with its schedule and next run, its last run and its last run that delivered
//! rows, optionally its last N runs, and for a named connection the latest quarantined rows.
//! Reads the state; changes nothing.

use super::{EXIT_USAGE, pick};
use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use s3_importd::config::{Config, Connection};
use s3_importd::schedule;
use s3_importd::state::{DaemonRecord, LeaseRecord, Overview, Quarantined, RunRecord};
use s3_importd::text::clean;
use serde_json::{Value, json};
use std::process::ExitCode;

pub async fn command(
    config: &Config,
    name: Option<&str>,
    as_json: bool,
    quarantine: usize,
    runs: usize,
) -> anyhow::Result<ExitCode> {
    let names: Vec<String> = name.map(str::to_string).into_iter().collect();
    let chosen = match pick(config, &names, false) {
        Ok(c) => c,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    // `status` only reads: it works on a state file it cannot write.
    let state = s3_importd::state::open_for_reading(&config.settings)
        .await
        .context("opening the state store")?;
    let now = Utc::now();
    let leases = state.leases().await.context("reading the leases")?;
    // Quarantined rows are listed only for a named connection, to keep the overview short.
    let shown = if name.is_some() { quarantine } else { 0 };
    for c in chosen {
        let mut overview = state
            .overview(&c.name)
            .await
            .with_context(|| format!("reading the state of {}", c.name))?;
        // A run recorded as running whose lock (lease) nobody holds ended without recording
        // its end (it was killed, or the disk was full when it finished).
        let lease = leases.iter().find(|l| l.connection == c.name);
        if let Some(r) = overview.last_run.as_mut()
            && r.outcome == "running"
            && lease.is_none()
        {
            r.outcome = "interrupted".to_string();
        }
        let rows = state
            .quarantine(&c.name, shown)
            .await
            .with_context(|| format!("reading the quarantine of {}", c.name))?;
        let mut history = state
            .runs(&c.name, runs)
            .await
            .with_context(|| format!("reading the runs of {}", c.name))?;
        if let Some(first) = history.first_mut()
            && let Some(last) = &overview.last_run
            && first.run_id == last.run_id
        {
            first.outcome = last.outcome.clone();
        }
        let next = c
            .enabled
            .then(|| schedule::next_run(&c.schedule, &c.name, config.settings.timezone, now))
            .flatten();
        if as_json {
            let mut line = to_json(config, c, &overview, next, &rows, &history);
            line["lease"] = lease.map_or(Value::Null, lease_json);
            println!("{line}");
        } else {
            print!("{}", to_text(config, c, &overview, next, &rows, &history));
            if let Some(l) = lease {
                println!(
                    "  running now: lease held by {}{}",
                    clean(&l.owner),
                    time(l.expires_at)
                        .map(|t| format!(" until {t}"))
                        .unwrap_or_default()
                );
            }
        }
    }
    if state.shared() {
        // Daemons seen within the last ten minutes are the fleet.
        let daemons = state
            .daemons(now - chrono::TimeDelta::minutes(10))
            .await
            .context("reading the fleet's daemons")?;
        let fleet = Fleet::of(&daemons, &config.fingerprint, now, config.settings.lease_ttl);
        if as_json {
            println!("{}", fleet.json());
        } else {
            print!("{}", fleet.text());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn lease_json(l: &LeaseRecord) -> Value {
    json!({"owner": l.owner, "expires_at": time(l.expires_at)})
}

/// The daemons of a fleet and the configurations they run.
struct Fleet<'a> {
    daemons: &'a [DaemonRecord],
    /// The fingerprint of this folder's configuration.
    here: &'a str,
    /// The fingerprint most daemons run.
    common: Option<&'a str>,
    now: DateTime<Utc>,
    /// A daemon beats every third of the lease TTL: one silent for longer than the TTL is
    /// gone (stopped, killed, or cut off from the state store), and its claims lapse.
    lease_ttl: std::time::Duration,
}

impl<'a> Fleet<'a> {
    fn of(
        daemons: &'a [DaemonRecord],
        here: &'a str,
        now: DateTime<Utc>,
        lease_ttl: std::time::Duration,
    ) -> Fleet<'a> {
        let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
        for d in daemons {
            *counts.entry(d.config_hash.as_str()).or_default() += 1;
        }
        let common = counts.iter().max_by_key(|(_, n)| **n).map(|(h, _)| *h);
        Fleet {
            daemons,
            here,
            common,
            now,
            lease_ttl,
        }
    }

    /// How long a daemon has been silent, when that is longer than the lease TTL.
    fn gone_for(&self, d: &DaemonRecord) -> Option<i64> {
        let silent = self.now - d.seen_at;
        (silent.num_milliseconds() > self.lease_ttl.as_millis() as i64).then(|| silent.num_seconds())
    }

    /// Whether a daemon runs another configuration than most of the fleet.
    fn drifted(&self, d: &DaemonRecord) -> bool {
        self.common.is_some_and(|c| c != d.config_hash)
    }

    fn text(&self) -> String {
        let mut out = format!(
            "fleet: {} daemon{} seen in the last 10 minutes\n",
            self.daemons.len(),
            if self.daemons.len() == 1 { "" } else { "s" }
        );
        for d in self.daemons {
            out += &format!(
                "  {} on {}: configuration {}, up since {}, last seen {}{}{}\n",
                clean(&d.id),
                clean(&d.host),
                d.config_hash,
                time(Some(d.started_at)).unwrap_or_default(),
                time(Some(d.seen_at)).unwrap_or_default(),
                self.gone_for(d).map_or_else(String::new, |s| format!(
                    " — GONE: no heartbeat for {s} s (stopped, killed, or cut off from the state store)"
                )),
                if self.drifted(d) {
                    " — DIFFERS from the rest of the fleet"
                } else {
                    ""
                }
            );
        }
        if self.common.is_some_and(|c| c != self.here) {
            out += &format!(
                "  this folder's configuration ({}) is not the one the fleet runs\n",
                self.here
            );
        }
        out
    }

    fn json(&self) -> Value {
        json!({"fleet": {
            "config_here": self.here,
            "config_common": self.common,
            "daemons": self.daemons.iter().map(|d| json!({
                "id": d.id,
                "host": d.host,
                "config": d.config_hash,
                "started_at": time(Some(d.started_at)),
                "seen_at": time(Some(d.seen_at)),
                "alive": self.gone_for(d).is_none(),
                "drift": self.drifted(d),
            })).collect::<Vec<_>>(),
        }})
    }
}

fn time(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

fn duration_s(run: &RunRecord) -> Option<f64> {
    let (start, end) = (run.started_at?, run.finished_at?);
    Some((end - start).num_milliseconds() as f64 / 1000.0)
}

/// One run in one line: when, how long, its outcome and counts, and where its rows went.
fn run_line(r: &RunRecord) -> String {
    let c = &r.counts;
    let mut line = format!(
        "{} ({}), {}: listed {}, new {}, imported {}, rejected {}, failed {}; rows {}, bad rows {}",
        time(r.started_at).unwrap_or_else(|| "none".to_string()),
        duration_s(r).map_or_else(
            || if r.outcome == "running" {
                "still running"
            } else {
                "no end recorded"
            }
            .to_string(),
            |d| format!("{d:.1} s")
        ),
        r.outcome,
        c.listed,
        c.new,
        c.imported,
        c.rejected,
        c.failed,
        c.rows,
        c.bad_rows
    );
    if let Some(output) = &r.output {
        line.push_str(&format!("; output {}", clean(output)));
    }
    if !r.host.is_empty() {
        line.push_str(&format!("; on {}", clean(&r.host)));
    }
    line
}

fn run_json(run: &RunRecord) -> Value {
    let c = &run.counts;
    json!({
        "run_id": run.run_id,
        "started_at": time(run.started_at),
        "duration_s": duration_s(run),
        "outcome": run.outcome,
        "objects_listed": c.listed,
        "objects_new": c.new,
        "objects_imported": c.imported,
        "objects_rejected": c.rejected,
        "objects_failed": c.failed,
        "rows": c.rows,
        "bad_rows": c.bad_rows,
        "bytes": c.bytes,
        "watermark_before": time(run.watermark_before),
        "watermark_after": time(run.watermark_after),
        "output": run.output,
        "error": run.error,
        "host": (!run.host.is_empty()).then_some(&run.host),
        "event_delay_s": run.event_delay_ms.map(|ms| ms as f64 / 1000.0),
    })
}

fn quarantined_json(q: &Quarantined) -> Value {
    json!({
        "key": q.key,
        "version": q.etag,
        "line": q.error.line,
        "field": q.error.field,
        "reason": q.error.reason.text(),
        "raw": q.error.raw,
    })
}

/// The latest event load among the last run, the last import and the runs shown (event mode).
fn last_event_load<'a>(o: &'a Overview, history: &'a [RunRecord]) -> Option<&'a RunRecord> {
    o.last_run
        .iter()
        .chain(o.last_import.iter())
        .chain(history)
        .find(|r| r.outcome.starts_with(s3_importd::state::EVENT_OUTCOME))
}

fn to_json(
    config: &Config,
    c: &Connection,
    o: &Overview,
    next: Option<DateTime<Utc>>,
    rows: &[Quarantined],
    history: &[RunRecord],
) -> Value {
    json!({
        "connection": c.name,
        "enabled": c.enabled,
        "schedule": schedule::describe(&c.schedule, &c.name),
        "cron": schedule::cron_text(&c.schedule, &c.name),
        "timezone": config.settings.timezone.name(),
        "next_run": time(next),
        "watermark": time(o.state.watermark),
        "table_version": o.state.table_version,
        "ledger_size": o.ledger_size,
        "quarantined_rows": o.quarantined,
        "last_run": o.last_run.as_ref().map(run_json),
        "last_import": o.last_import.as_ref().map(run_json),
        "last_event_load": last_event_load(o, history).map(run_json),
        "runs": history.iter().map(run_json).collect::<Vec<_>>(),
        "last_error": o.last_error.as_ref().map(|r| json!({
            "run_id": r.run_id,
            "at": time(r.started_at),
            "error": r.error,
        })),
        "latest_quarantined": rows.iter().map(quarantined_json).collect::<Vec<_>>(),
    })
}

fn to_text(
    config: &Config,
    c: &Connection,
    o: &Overview,
    next: Option<DateTime<Utc>>,
    rows: &[Quarantined],
    history: &[RunRecord],
) -> String {
    let none = || "none".to_string();
    let mut out = format!(
        "{}: {}, {} ({}), next run {}\n",
        c.name,
        if c.enabled { "enabled" } else { "disabled" },
        schedule::describe(&c.schedule, &c.name),
        config.settings.timezone.name(),
        time(next).unwrap_or_else(|| "none".to_string()),
    );
    out += &format!(
        "  watermark {}, table version {}, ledger {} object versions, quarantined rows {}\n",
        time(o.state.watermark).unwrap_or_else(none),
        o.state.table_version,
        o.ledger_size,
        o.quarantined
    );
    match &o.last_run {
        Some(r) => out += &format!("  last run {}\n", run_line(r)),
        None => out += "  last run: never\n",
    }
    if let Some(r) = &o.last_import
        && o.last_run.as_ref().is_none_or(|last| last.run_id != r.run_id)
    {
        out += &format!("  last import {}\n", run_line(r));
    }
    if let Some(r) = last_event_load(o, history) {
        out += &format!("  last event load {}", run_line(r));
        if let Some(ms) = r.event_delay_ms {
            out += &format!(" (delivered {:.1} s after the upload)", ms as f64 / 1000.0);
        }
        out += "\n";
    }
    match &o.last_error {
        Some(r) => {
            out += &format!(
                "  last error ({}): {}\n",
                time(r.started_at).unwrap_or_else(none),
                clean(r.error.as_deref().unwrap_or_default())
            )
        }
        None => out += "  last error: none\n",
    }
    if !history.is_empty() {
        out += &format!("  last {} runs, latest first:\n", history.len());
        for r in history {
            out += &format!("    {}\n", run_line(r));
        }
    }
    if !rows.is_empty() {
        out += &format!(
            "  latest quarantined rows ({} of {}):\n",
            rows.len(),
            o.quarantined
        );
        for q in rows {
            out += &format!(
                "    {} line {}{}: {}\n      raw: {}\n",
                clean(&q.key),
                q.error.line,
                q.error
                    .field
                    .as_ref()
                    .map(|f| format!(" field {}", clean(f)))
                    .unwrap_or_default(),
                clean(q.error.reason.text()),
                clean(&q.error.raw)
            );
        }
    }
    out
}

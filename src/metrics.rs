//! The daemon's Prometheus metrics and the listener that serves them on `metrics_listen`:
//! `GET /metrics` (OpenMetrics text, as `prometheus-client` encodes it) and `GET /healthz`.
//!
//! What is counted is decided here — [`Metrics::run_started`], [`Metrics::run_finished`] and
//! [`Metrics::schedule_lag`] turn a run's summary into samples; the daemon calls them. This
//! is not a general HTTP server: two paths, GET only, HTTP/1.1, on the daemon's runtime.

use crate::run::RunSummary;
use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// A metric of one connection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabel {
    connection: String,
}

/// A metric of one connection, by outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    connection: String,
    outcome: &'static str,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Run durations from 1 s to about 9 hours.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 16))
}

/// Seconds from an object's LastModified to its delivery in event mode: 0.25 s to about 2 hours.
fn delay_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.25, 2.0, 16))
}

/// Every metric the daemon exports.
pub struct Metrics {
    registry: Registry,
    runs: Family<OutcomeLabels, Counter>,
    objects: Family<OutcomeLabels, Counter>,
    rows: Family<ConnectionLabel, Counter>,
    bad_rows: Family<ConnectionLabel, Counter>,
    bytes: Family<ConnectionLabel, Counter>,
    duration: Family<ConnectionLabel, Histogram, fn() -> Histogram>,
    last_success: Family<ConnectionLabel, FloatGauge>,
    watermark_lag: Family<ConnectionLabel, FloatGauge>,
    schedule_period: Family<ConnectionLabel, FloatGauge>,
    leases_lost: Family<ConnectionLabel, Counter>,
    takeovers: Family<ConnectionLabel, Counter>,
    reruns: Family<ConnectionLabel, Counter>,
    claims: Family<OutcomeLabels, Counter>,
    in_flight: Gauge,
    schedule_lag: Family<ConnectionLabel, FloatGauge>,
    events: Family<OutcomeLabels, Counter>,
    event_delay: Family<ConnectionLabel, Histogram, fn() -> Histogram>,
    event_oldest: Family<ConnectionLabel, FloatGauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("s3importd");
        let m = Metrics {
            runs: Family::default(),
            objects: Family::default(),
            rows: Family::default(),
            bad_rows: Family::default(),
            bytes: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            last_success: Family::default(),
            watermark_lag: Family::default(),
            schedule_period: Family::default(),
            leases_lost: Family::default(),
            takeovers: Family::default(),
            reruns: Family::default(),
            claims: Family::default(),
            in_flight: Gauge::default(),
            schedule_lag: Family::default(),
            events: Family::default(),
            event_delay: Family::new_with_constructor(delay_histogram),
            event_oldest: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "runs",
            "Runs finished, by outcome (succeeded, failed)",
            m.runs.clone(),
        );
        registry.register(
            "objects",
            "Objects handled by runs, by outcome (imported, rejected, failed)",
            m.objects.clone(),
        );
        registry.register("rows", "Rows delivered", m.rows.clone());
        registry.register("bad_rows", "Rows quarantined", m.bad_rows.clone());
        registry.register(
            "bytes",
            "Bytes of the objects imported or rejected, as stored",
            m.bytes.clone(),
        );
        registry.register("run_duration_seconds", "How long runs took", m.duration.clone());
        registry.register(
            "last_success_timestamp_seconds",
            "When the last successful run finished (Unix time)",
            m.last_success.clone(),
        );
        registry.register(
            "watermark_lag_seconds",
            "How far the watermark was behind the end of the last run",
            m.watermark_lag.clone(),
        );
        registry.register("runs_in_flight", "Runs in progress", m.in_flight.clone());
        registry.register(
            "schedule_lag_seconds",
            "How late the last run started after its scheduled time",
            m.schedule_lag.clone(),
        );
        registry.register(
            "schedule_period_seconds",
            "The longest wait between two scheduled runs (alerts compare the time since the last success with it)",
            m.schedule_period.clone(),
        );
        registry.register(
            "leases_lost",
            "Runs stopped because their lease was taken over by another daemon of the fleet, or lapsed while the state store was out of reach (fleet mode)",
            m.leases_lost.clone(),
        );
        registry.register(
            "takeovers",
            "Connections this daemon took over from a daemon whose lease expired (fleet mode)",
            m.takeovers.clone(),
        );
        registry.register(
            "reruns",
            "Occurrences this daemon ran again because their run failed while the state store was out of reach (fleet mode)",
            m.reruns.clone(),
        );
        registry.register(
            "claims",
            "Scheduled occurrences claimed by this daemon (won), taken over from a daemon that died before its run ended (retaken), claimed by another (lost), or a claim that failed for an error and is tried again (failed) (fleet mode)",
            m.claims.clone(),
        );
        registry.register(
            "events",
            "Object events read from the queue (event mode), by outcome: received (each object named), ignored (not an object creation, another bucket, outside the prefix or globs), imported (settled by an event load)",
            m.events.clone(),
        );
        registry.register(
            "event_delay_seconds",
            "Seconds from an object's LastModified to the delivery of its rows by an event load",
            m.event_delay.clone(),
        );
        registry.register(
            "event_oldest_message_age_seconds",
            "Age of the oldest message of the last receive from the queue (0 when it was empty)",
            m.event_oldest.clone(),
        );
        Metrics { registry, ..m }
    }

    /// `n` object events of `connection` were `outcome` (received, ignored, imported).
    pub fn events(&self, connection: &str, outcome: &'static str, n: u64) {
        self.events
            .get_or_create(&OutcomeLabels {
                connection: connection.to_string(),
                outcome,
            })
            .inc_by(n);
    }

    /// An object an event named was delivered `delay` after its LastModified.
    pub fn event_delivered(&self, connection: &str, delay: chrono::TimeDelta) {
        let seconds = delay.num_milliseconds().max(0) as f64 / 1000.0;
        self.event_delay
            .get_or_create(&label(connection))
            .observe(seconds);
    }

    /// The oldest message the last receive returned was `age` old.
    pub fn event_oldest(&self, connection: &str, age: chrono::TimeDelta) {
        let seconds = age.num_milliseconds().max(0) as f64 / 1000.0;
        self.event_oldest.get_or_create(&label(connection)).set(seconds);
    }

    /// Makes the event counters of `connection` exist at zero (event mode only).
    pub fn register_events(&self, connection: &str) {
        for o in ["received", "ignored", "imported"] {
            self.events(connection, o, 0);
        }
        let _ = self.event_oldest.get_or_create(&label(connection));
        let _ = self.event_delay.get_or_create(&label(connection));
    }

    /// The longest wait between two runs of `connection` by its schedule.
    pub fn schedule_period(&self, connection: &str, period: chrono::TimeDelta) {
        let seconds = period.num_milliseconds().max(0) as f64 / 1000.0;
        self.schedule_period
            .get_or_create(&label(connection))
            .set(seconds);
    }

    /// Makes every counter of `connection` exist at zero, so that the first failure shows as an
    /// increase (`increase()` sees nothing in a series that appears at 1) and each metric a
    /// dashboard or an alert names is there from the start.
    pub fn register(&self, connection: &str) {
        let outcome = |outcome: &'static str| OutcomeLabels {
            connection: connection.to_string(),
            outcome,
        };
        for o in ["succeeded", "failed"] {
            let _ = self.runs.get_or_create(&outcome(o));
        }
        for o in ["imported", "rejected", "failed"] {
            let _ = self.objects.get_or_create(&outcome(o));
        }
        for o in ["won", "retaken", "lost", "failed"] {
            let _ = self.claims.get_or_create(&outcome(o));
        }
        let c = label(connection);
        for family in [
            &self.rows,
            &self.bad_rows,
            &self.bytes,
            &self.leases_lost,
            &self.takeovers,
            &self.reruns,
        ] {
            let _ = family.get_or_create(&c);
        }
    }

    /// This daemon took `connection` over from a dead one.
    pub fn took_over(&self, connection: &str) {
        self.takeovers.get_or_create(&label(connection)).inc();
    }

    /// This daemon runs an occurrence of `connection` again (its run failed for the state
    /// store's sake).
    pub fn rerun(&self, connection: &str) {
        self.reruns.get_or_create(&label(connection)).inc();
    }

    /// This daemon's claim on an occurrence of `connection` was `outcome` (won, lost, failed).
    pub fn claimed(&self, connection: &str, outcome: &'static str) {
        self.claims
            .get_or_create(&OutcomeLabels {
                connection: connection.to_string(),
                outcome,
            })
            .inc();
    }

    /// A run began.
    pub fn run_started(&self) {
        self.in_flight.inc();
    }

    /// A run began `lag` after the time it was due.
    pub fn schedule_lag(&self, connection: &str, lag: chrono::TimeDelta) {
        let seconds = lag.num_milliseconds().max(0) as f64 / 1000.0;
        self.schedule_lag.get_or_create(&label(connection)).set(seconds);
    }

    /// What an event load counted: its objects, rows and bytes. Not a run: the runs, the
    /// last success and the watermark lag stay those of the scheduled runs, which alerts watch.
    pub fn objects_counted(&self, s: &RunSummary) {
        let connection = label(&s.connection);
        for (name, count) in [
            ("imported", s.counts.imported),
            ("rejected", s.counts.rejected),
            ("failed", s.counts.failed),
        ] {
            self.objects
                .get_or_create(&OutcomeLabels {
                    connection: s.connection.clone(),
                    outcome: name,
                })
                .inc_by(count);
        }
        self.rows.get_or_create(&connection).inc_by(s.counts.rows);
        self.bad_rows.get_or_create(&connection).inc_by(s.counts.bad_rows);
        self.bytes.get_or_create(&connection).inc_by(s.counts.bytes);
    }

    /// A run ended, at `now` (or when its summary says it did), with this summary.
    pub fn run_finished(&self, s: &RunSummary, now: DateTime<Utc>) {
        let now = s.finished_at.unwrap_or(now);
        let connection = label(&s.connection);
        let outcome = |outcome: &'static str| OutcomeLabels {
            connection: s.connection.clone(),
            outcome,
        };
        let succeeded = s.succeeded();
        self.runs
            .get_or_create(&outcome(if succeeded { "succeeded" } else { "failed" }))
            .inc();
        for (name, count) in [
            ("imported", s.counts.imported),
            ("rejected", s.counts.rejected),
            ("failed", s.counts.failed),
        ] {
            self.objects.get_or_create(&outcome(name)).inc_by(count);
        }
        self.rows.get_or_create(&connection).inc_by(s.counts.rows);
        self.bad_rows.get_or_create(&connection).inc_by(s.counts.bad_rows);
        self.bytes.get_or_create(&connection).inc_by(s.counts.bytes);
        self.duration
            .get_or_create(&connection)
            .observe(s.duration.as_secs_f64());
        if s.lease_lost {
            self.leases_lost.get_or_create(&connection).inc();
        }
        if succeeded {
            self.last_success
                .get_or_create(&connection)
                .set(now.timestamp_millis() as f64 / 1000.0);
        }
        if let Some(watermark) = s.watermark_after {
            let lag = lag_seconds(now, watermark);
            self.watermark_lag.get_or_create(&connection).set(lag);
        }
        // Last: a scrape that sees no run in flight sees everything the run recorded.
        self.in_flight.dec();
    }

    /// The gauges the state knows, set when the daemon starts, so that a restart does not
    /// hide them until each connection's next run ends (an alert on the time since the last
    /// success could not fire meanwhile): the last successful run's end, and how far the
    /// watermark was behind the end of the last run.
    pub fn restore(&self, connection: &str, runs: &[crate::state::RunRecord]) {
        let connection = label(connection);
        let seconds = |t: DateTime<Utc>| t.timestamp_millis() as f64 / 1000.0;
        // Newest first, as the state lists them.
        if let Some(done) = runs
            .iter()
            .find(|r| r.outcome == "ok")
            .and_then(|r| r.finished_at)
        {
            self.last_success.get_or_create(&connection).set(seconds(done));
        }
        if let Some((done, watermark)) = runs
            .iter()
            .filter(|r| !r.outcome.starts_with(crate::state::EVENT_OUTCOME))
            .find_map(|r| Some((r.finished_at?, r.watermark_after?)))
        {
            let lag = lag_seconds(done, watermark);
            self.watermark_lag.get_or_create(&connection).set(lag);
        }
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail; an encoder error would be a bug in a metric name.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            warn!(error = %e, "encoding the metrics failed");
        }
        text
    }
}

fn label(connection: &str) -> ConnectionLabel {
    ConnectionLabel {
        connection: connection.to_string(),
    }
}

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
#[error("metrics_listen {addr}: cannot listen: {source}; choose a free port or leave metrics_listen out")]
pub struct ListenError {
    addr: std::net::SocketAddr,
    #[source]
    source: std::io::Error,
}

/// Binds `addr` now (so that a port in use fails the daemon's start with a clear message)
/// and serves `/metrics` and `/healthz` until `stop`.
pub async fn serve(
    addr: std::net::SocketAddr,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, ListenError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ListenError { addr, source })?;
    let bound = listener.local_addr().unwrap_or(addr);
    info!(address = %bound, "serving /metrics and /healthz");
    Ok(tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = stop.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let Ok((stream, _)) = accepted else { continue };
            let (metrics, stop) = (metrics.clone(), stop.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let metrics = metrics.clone();
                    async move { Ok::<_, std::convert::Infallible>(respond(&request, &metrics)) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                // A scrape in progress may finish; an idle connection closes with the daemon.
                tokio::select! {
                    _ = connection => {}
                    () = stop.cancelled() => {}
                }
            });
        }
    }))
}

/// Seconds from `watermark` to `end`, in the whole milliseconds the state records both in, so
/// that a restart shows the value the run set.
fn lag_seconds(end: DateTime<Utc>, watermark: DateTime<Utc>) -> f64 {
    (end.timestamp_millis() - watermark.timestamp_millis()).max(0) as f64 / 1000.0
}

type Body = http_body_util::Full<bytes::Bytes>;

/// The answer to one request.
fn respond<B>(request: &hyper::Request<B>, metrics: &Metrics) -> hyper::Response<Body> {
    let reply = |status: u16, content_type: &str, body: String| {
        let mut response = hyper::Response::new(Body::from(body));
        *response.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
        if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
            response.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
        }
        response
    };
    if request.method() != hyper::Method::GET {
        return reply(405, "text/plain", "only GET is served\n".into());
    }
    match request.uri().path() {
        "/metrics" => reply(
            200,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        "/healthz" => reply(200, "text/plain", "ok\n".into()),
        _ => reply(404, "text/plain", "not found: try /metrics or /healthz\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_run_is_counted_by_connection_and_outcome() {
        let metrics = Metrics::new();
        let now = DateTime::parse_from_rfc3339("2026-12-01T02:00:00Z")
            .unwrap()
            .to_utc();
        let mut s = RunSummary {
            connection: "orders".into(),
            duration: std::time::Duration::from_secs(3),
            watermark_after: Some(now - chrono::TimeDelta::seconds(90)),
            ..RunSummary::default()
        };
        s.counts.imported = 2;
        s.counts.rejected = 1;
        s.counts.rows = 40;
        s.counts.bad_rows = 3;
        s.counts.bytes = 1000;
        metrics.run_started();
        metrics.run_finished(&s, now);
        metrics.schedule_lag("orders", chrono::TimeDelta::milliseconds(1500));
        let text = metrics.encode();
        for line in [
            "s3importd_runs_total{connection=\"orders\",outcome=\"succeeded\"} 1",
            "s3importd_objects_total{connection=\"orders\",outcome=\"imported\"} 2",
            "s3importd_objects_total{connection=\"orders\",outcome=\"rejected\"} 1",
            "s3importd_rows_total{connection=\"orders\"} 40",
            "s3importd_bad_rows_total{connection=\"orders\"} 3",
            "s3importd_bytes_total{connection=\"orders\"} 1000",
            "s3importd_run_duration_seconds_count{connection=\"orders\"} 1",
            "s3importd_last_success_timestamp_seconds{connection=\"orders\"} 1796090400.0",
            "s3importd_watermark_lag_seconds{connection=\"orders\"} 90.0",
            "s3importd_runs_in_flight 0",
            "s3importd_schedule_lag_seconds{connection=\"orders\"} 1.5",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }

    #[test]
    fn the_fleet_s_claims_takeovers_and_lost_leases_are_counted() {
        let metrics = Metrics::new();
        let now = DateTime::parse_from_rfc3339("2026-12-01T02:00:00Z")
            .unwrap()
            .to_utc();
        metrics.claimed("orders", "won");
        metrics.claimed("orders", "lost");
        metrics.claimed("orders", "lost");
        metrics.took_over("orders");
        metrics.rerun("orders");
        let s = RunSummary {
            connection: "orders".into(),
            error: Some("the lease was taken over".into()),
            lease_lost: true,
            ..RunSummary::default()
        };
        metrics.run_started();
        metrics.run_finished(&s, now);
        let text = metrics.encode();
        for line in [
            "s3importd_claims_total{connection=\"orders\",outcome=\"won\"} 1",
            "s3importd_claims_total{connection=\"orders\",outcome=\"lost\"} 2",
            "s3importd_takeovers_total{connection=\"orders\"} 1",
            "s3importd_reruns_total{connection=\"orders\"} 1",
            "s3importd_leases_lost_total{connection=\"orders\"} 1",
            "s3importd_runs_total{connection=\"orders\",outcome=\"failed\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }
}

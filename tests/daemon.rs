//! The daemon end to end: the real binary with a `dir` source, driven by signals, watched
//! through a notify socket of the test's own (as systemd would), and `reset`.

mod common;

use common::*;
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A connection over the folder `in/NAME` into `out`, run daily (so only catch-up runs it
/// during a test).
fn dir_connection(cfg: &ConfigDir, name: &str, rows: &[&str]) {
    let inbox = cfg.path().join("in").join(name);
    std::fs::create_dir_all(&inbox).unwrap();
    let body: String = rows.iter().map(|id| format!("{{\"id\": \"{id}\"}}\n")).collect();
    std::fs::write(inbox.join("rows.jsonl"), body).unwrap();
    cfg.connection(
        name,
        &dir_connection_toml(name, ID_TEMPLATE, "type = \"file\"\npath = \"out\""),
    );
}

/// The daemon under test: its notify socket, and its stderr lines as they come.
struct Daemon {
    child: Child,
    notify: UnixDatagram,
    log: Log,
}

impl Daemon {
    fn start(cfg: &ConfigDir, env: &[(&str, &str)]) -> Daemon {
        let socket = cfg.path().join("notify.sock");
        // A daemon started again in the same folder binds the socket anew.
        let _ = std::fs::remove_file(&socket);
        let notify = UnixDatagram::bind(&socket).unwrap();
        notify.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut cmd = binary(cfg.path());
        cmd.arg("daemon")
            .env("NOTIFY_SOCKET", &socket)
            .env("WATCHDOG_USEC", "400000")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let log = Log::of(&mut child);
        Daemon { child, notify, log }
    }

    /// The next sd_notify message other than a watchdog keep-alive (which are counted).
    fn next_state(&self, keepalives: &mut usize) -> String {
        let mut buf = [0u8; 512];
        loop {
            let n = self.notify.recv(&mut buf).expect("a notify message within 20 s");
            let msg = String::from_utf8_lossy(&buf[..n]).trim_end().to_string();
            if msg == "WATCHDOG=1" {
                *keepalives += 1;
                continue;
            }
            return msg;
        }
    }

    /// Waits (at most 20 s) for a log line containing `needle`.
    fn wait_log(&mut self, needle: &str) -> String {
        self.log.wait(needle, Duration::from_secs(20))
    }

    fn signal(&self, name: &str) {
        signal(self.child.id(), name);
    }

    /// Waits (at most `limit`) for the process to exit; returns its exit code and how long
    /// it took.
    fn wait_exit(&mut self, limit: Duration) -> (Option<i32>, Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("the daemon did not exit within {limit:?}");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (at most 20 s) until the output holds exactly `want`.
fn wait_rows(cfg: &ConfigDir, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if cfg.ids() == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(cfg.ids(), want);
}

#[test]
fn catches_up_reloads_and_stops_on_signals() {
    let cfg = ConfigDir::new();
    dir_connection(&cfg, "first", &["f1", "f2"]);
    let started = chrono::Utc::now();
    let mut d = Daemon::start(&cfg, &[]);
    let mut keepalives = 0;
    assert_eq!(d.next_state(&mut keepalives), "READY=1");
    // The catch-up runs now, and the log says so: not the past minute it stands for.
    let scheduled = d.wait_log("daemon: scheduled connection=first");
    let next_run = scheduled
        .split_whitespace()
        .find_map(|f| f.strip_prefix("next_run="))
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .unwrap_or_else(|| panic!("no next_run in {scheduled}"));
    assert!(next_run >= started, "next_run in the past: {scheduled}");
    // Never ran: it runs at once.
    wait_rows(&cfg, &["f1", "f2"]);
    let summary = d.wait_log("run finished");
    assert!(summary.contains("connection=first"), "{summary}");
    assert!(
        summary.contains("imported=1") && summary.contains("rows=2"),
        "{summary}"
    );
    assert!(
        summary.contains("next_run=20"),
        "the summary names the next run: {summary}"
    );

    // Added while running: SIGHUP schedules it, and it runs at once (it never ran).
    dir_connection(&cfg, "second", &["s1"]);
    d.signal("HUP");
    let reloading = d.next_state(&mut keepalives);
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading:?}"
    );
    assert_eq!(d.next_state(&mut keepalives), "READY=1");
    wait_rows(&cfg, &["f1", "f2", "s1"]);

    // An invalid configuration is logged with every problem; the old one keeps running.
    std::fs::write(
        cfg.path().join("connections/broken.toml"),
        "schedule = \"every day\"\nbackfill_days = -1\n",
    )
    .unwrap();
    d.signal("HUP");
    d.wait_log("connections/broken.toml: schedule");
    d.wait_log("connections/broken.toml: backfill_days");
    d.wait_log("the old one keeps running");
    std::fs::remove_file(cfg.path().join("connections/broken.toml")).unwrap();

    d.signal("TERM");
    let mut state = d.next_state(&mut keepalives);
    while state.starts_with("RELOADING=1") || state == "READY=1" {
        state = d.next_state(&mut keepalives);
    }
    assert_eq!(state, "STOPPING=1");
    let (code, _) = d.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert!(keepalives > 0, "WATCHDOG_USEC is set: keep-alives are sent");

    // status shows the daily time the daemon uses.
    let status = stdout_of(&run_binary(cfg.path(), &["status", "first"]));
    assert!(status.contains("first: enabled, daily at "), "{status}");
    assert!(status.contains("last run 20"), "{status}");
}

#[test]
fn a_stuck_run_is_left_after_the_shutdown_timeout_and_recovered_exactly_once() {
    let cfg = ConfigDir::new();
    std::fs::write(
        cfg.path().join("s3-importd.toml"),
        "state = \"state/state.db\"\nshutdown_timeout_s = 2\n",
    )
    .unwrap();
    dir_connection(&cfg, "stuck", &["a", "b"]);
    let mut d = Daemon::start(&cfg, &[("S3_IMPORTD_FAULT", "after-prepare")]);
    d.wait_log("fault point after-prepare reached");

    // While the daemon runs the connection, reset is refused.
    let out = run_binary(cfg.path(), &["reset", "stuck", "--since", "2020-01-01"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("stuck is running right now"),
        "{}",
        text(&out.stderr)
    );

    d.signal("TERM");
    let (code, took) = d.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert!(
        took >= Duration::from_secs(2),
        "waited for the in-flight run: {took:?}"
    );
    d.wait_log("did not finish within shutdown_timeout_s");
    assert!(cfg.ids().is_empty());

    // The next run finds the interrupted load and delivers it, as planned, once (so its own
    // plan finds nothing new).
    let out = stdout_of(&run_binary(cfg.path(), &["run"]));
    assert!(out.contains("stuck: listed 1, new 0, imported 0"), "{out}");
    assert_eq!(cfg.ids(), ["a", "b"]);
}

#[test]
fn a_second_stop_signal_exits_at_once() {
    let cfg = ConfigDir::new();
    dir_connection(&cfg, "stuck", &["a"]);
    let mut d = Daemon::start(&cfg, &[("S3_IMPORTD_FAULT", "after-prepare")]);
    d.wait_log("fault point after-prepare reached");
    d.signal("INT");
    d.wait_log("stop signal: finishing in-flight objects");
    d.signal("INT");
    let (code, took) = d.wait_exit(Duration::from_secs(5));
    assert_eq!(code, Some(0));
    assert!(took < Duration::from_secs(5), "{took:?}");
    // The state store is intact: status reads it.
    stdout_of(&run_binary(cfg.path(), &["status"]));
}

#[test]
fn reset_imports_again_into_a_new_table_version() {
    let cfg = ConfigDir::new();
    dir_connection(&cfg, "again", &["x"]);
    stdout_of(&run_binary(cfg.path(), &["run"]));
    let out = stdout_of(&run_binary(cfg.path(), &["run"]));
    assert!(out.contains("new 0"), "{out}");
    let out = stdout_of(&run_binary(
        cfg.path(),
        &["reset", "again", "--since", "2000-01-01"],
    ));
    assert!(
        out.starts_with(
            "reset again: forgot 1 object versions modified since 2000-01-01T00:00:00Z; watermark 20"
        ),
        "{out}"
    );
    assert!(
        out.contains("→ 2000-01-01T00:00:00Z; table version 1 → 2;"),
        "{out}"
    );
    let out = stdout_of(&run_binary(cfg.path(), &["run"]));
    assert!(out.contains("new 1, imported 1"), "{out}");
    let files = output_files(&cfg.out());
    let versions: Vec<String> = files
        .iter()
        .map(|f| {
            f.strip_prefix(cfg.out())
                .unwrap()
                .components()
                .nth(2)
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(versions, ["1", "2"], "{files:?}");
    let bad = run_binary(cfg.path(), &["reset", "again", "--since", "last week"]);
    assert_eq!(bad.status.code(), Some(2));
}

/// Python's Prometheus client (in the test venv, installed by `scripts/test`) parses the
/// scrape: a real OpenMetrics parser, not ours. Prints `name{labels} value` per sample.
const PARSE_METRICS: &str = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
        print(f"{s.name}{{{labels}}} {float(s.value):g}")
"#;

#[test]
fn metrics_are_served_and_parse_with_a_real_prometheus_parser() {
    let cfg = ConfigDir::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        cfg.path().join("s3-importd.toml"),
        format!("state = \"state/state.db\"\nmetrics_listen = \"127.0.0.1:{port}\"\n"),
    )
    .unwrap();
    dir_connection(&cfg, "metered", &["m1", "m2", "m3"]);
    let mut daemon = Daemon::start(&cfg, &[]);
    daemon.wait_log("serving /metrics and /healthz");
    daemon.wait_log("run finished");
    assert_eq!(
        http_get(port, "/healthz"),
        ("HTTP/1.1 200 OK".to_string(), "ok\n".to_string())
    );
    assert!(http_get(port, "/nowhere").0.contains("404"));
    // "run finished" is logged before the run's metrics are recorded: wait for the record
    // itself (the run counted and none in flight), a bounded number of times.
    let mut scraped = None;
    for _ in 0..100 {
        let (status, text) = http_get(port, "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK", "{text}");
        let recorded = text
            .lines()
            .any(|l| l == "s3importd_runs_total{connection=\"metered\",outcome=\"succeeded\"} 1")
            && text.lines().any(|l| l == "s3importd_runs_in_flight 0");
        if recorded {
            scraped = Some(text);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = scraped.expect("the run was recorded in /metrics within 10 s");
    let mut parser = std::process::Command::new(test_python())
        .args(["-c", PARSE_METRICS])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        parser.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    let parsed = parser.wait_with_output().unwrap();
    assert!(
        parsed.status.success(),
        "{}\n{text}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    let samples = String::from_utf8_lossy(&parsed.stdout).to_string();
    for sample in [
        "s3importd_runs_total{connection=\"metered\",outcome=\"succeeded\"} 1",
        "s3importd_objects_total{connection=\"metered\",outcome=\"imported\"} 1",
        "s3importd_rows_total{connection=\"metered\"} 3",
        "s3importd_bad_rows_total{connection=\"metered\"} 0",
        "s3importd_run_duration_seconds_count{connection=\"metered\"} 1",
        "s3importd_runs_in_flight{} 0",
    ] {
        assert!(samples.lines().any(|l| l == sample), "{sample} not in\n{samples}");
    }
    for name in [
        "s3importd_last_success_timestamp_seconds",
        "s3importd_watermark_lag_seconds",
        "s3importd_schedule_lag_seconds",
        "s3importd_schedule_period_seconds",
        "s3importd_bytes_total",
    ] {
        assert!(
            samples
                .lines()
                .any(|l| l.starts_with(&format!("{name}{{connection=\"metered\"}}"))),
            "{name} not in\n{samples}"
        );
    }
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(20)).0, Some(0));

    // Restarted, with no run due: the gauges the state knows are there from the start, with
    // the values they had, so that an alert on the time since the last success can fire.
    let gauges = |samples: &str| -> Vec<String> {
        samples
            .lines()
            .filter(|l| {
                l.starts_with("s3importd_last_success_timestamp_seconds{")
                    || l.starts_with("s3importd_watermark_lag_seconds{")
            })
            .map(str::to_string)
            .collect()
    };
    let before = gauges(&text);
    assert_eq!(before.len(), 2, "{text}");
    let mut daemon = Daemon::start(&cfg, &[]);
    daemon.wait_log("serving /metrics and /healthz");
    let (_, restarted) = http_get(port, "/metrics");
    assert_eq!(gauges(&restarted), before, "{restarted}");
    // No run happened since: the counters start at zero, there from the start.
    for line in [
        "s3importd_runs_total{connection=\"metered\",outcome=\"succeeded\"} 0",
        "s3importd_runs_total{connection=\"metered\",outcome=\"failed\"} 0",
        "s3importd_leases_lost_total{connection=\"metered\"} 0",
    ] {
        assert!(restarted.lines().any(|l| l == line), "{line} not in\n{restarted}");
    }
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(Duration::from_secs(20)).0, Some(0));
}

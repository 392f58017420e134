//! Event mode end to end: the real daemon reads S3 notifications that moto delivers to an
//! SQS queue (moto sends them when the bucket has a QueueConfiguration), plus messages the
//! test sends itself in the other forms, and junk.

mod common;

use aws_sdk_s3::types::{
    Event, FilterRule, FilterRuleName, NotificationConfiguration, NotificationConfigurationFilter,
    QueueConfiguration, S3KeyFilter,
};
use aws_sdk_sqs::types::QueueAttributeName;
use common::*;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

fn sqs() -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::config::Builder::new()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .endpoint_url(moto())
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// A queue with the given visibility timeout, and its URL and ARN.
async fn queue(sqs: &aws_sdk_sqs::Client, stem: &str, visibility_s: u32) -> (String, String) {
    let name = format!("{stem}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let url = sqs
        .create_queue()
        .queue_name(&name)
        .attributes(QueueAttributeName::VisibilityTimeout, visibility_s.to_string())
        .send()
        .await
        .expect("create queue")
        .queue_url
        .expect("queue url");
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .expect("queue arn");
    (url, arn)
}

/// Sends S3's notifications of objects created under `prefix` to the queue `arn`; with
/// `None`, sends none.
async fn notify(s3: &aws_sdk_s3::Client, bucket: &str, arn: Option<&str>, prefix: &str) {
    let mut config = NotificationConfiguration::builder();
    if let Some(arn) = arn {
        let filter = NotificationConfigurationFilter::builder()
            .key(
                S3KeyFilter::builder()
                    .filter_rules(
                        FilterRule::builder()
                            .name(FilterRuleName::Prefix)
                            .value(prefix)
                            .build(),
                    )
                    .build(),
            )
            .build();
        config = config.queue_configurations(
            QueueConfiguration::builder()
                .queue_arn(arn)
                .events(Event::from("s3:ObjectCreated:*"))
                .filter(filter)
                .build()
                .expect("queue configuration"),
        );
    }
    s3.put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(config.build())
        .send()
        .await
        .expect("put notification configuration");
}

async fn send(sqs: &aws_sdk_sqs::Client, url: &str, body: String) {
    sqs.send_message()
        .queue_url(url)
        .message_body(body)
        .send()
        .await
        .expect("send message");
}

/// How many messages the queue holds, visible or not.
async fn held(sqs: &aws_sdk_sqs::Client, url: &str) -> u64 {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .unwrap_or_default();
    attributes.values().map(|v| v.parse::<u64>().unwrap_or(0)).sum()
}

/// A connection in event mode over `bucket`/in/, 1 s batches, into `out`.
fn event_connection(cfg: &ConfigDir, bucket: &str, queue_url: &str) {
    cfg.connection(
        "acme",
        &s3_connection(
            bucket,
            "in/",
            &format!("queue_url = \"{queue_url}\"\nevent_batch_seconds = 1"),
        ),
    );
}

/// The daemon under test, its stderr lines as they come.
struct Daemon {
    child: Child,
    log: Log,
}

impl Daemon {
    fn start(cfg: &ConfigDir, env: &[(&str, &str)]) -> Daemon {
        let mut cmd = binary(cfg.path());
        cmd.arg("daemon").stdout(Stdio::null()).stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn the daemon");
        let log = Log::of(&mut child);
        Daemon { child, log }
    }

    /// Waits (at most 30 s) for a log line containing `needle`.
    fn wait_log(&mut self, needle: &str) -> String {
        self.log.wait(needle, Duration::from_secs(30))
    }

    /// SIGTERM, and the exit code (within 30 s).
    fn stop(&mut self) -> Option<i32> {
        signal(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the daemon did not stop within 30 s");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (at most 30 s) until the output holds exactly `want`, in any order.
fn wait_ids(cfg: &ConfigDir, want: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let want = sorted(want.iter().map(|s| s.to_string()).collect());
    while Instant::now() < deadline {
        if sorted(cfg.ids()) == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(sorted(cfg.ids()), want);
}

/// Waits (at most 30 s) until the queue holds `n` messages.
async fn wait_held(sqs: &aws_sdk_sqs::Client, url: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if held(sqs, url).await == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(held(sqs, url).await, n, "messages left on the queue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_import_new_objects_once_and_the_listing_catches_what_they_missed() {
    let (s3, sqs) = (s3(), sqs());
    let bucket = bucket(&s3, "events").await;
    let (url, arn) = queue(&sqs, "events", 5).await;
    notify(&s3, &bucket, Some(&arn), "in/").await;
    let cfg = ConfigDir::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    std::fs::write(
        cfg.path().join("s3-importd.toml"),
        format!("state = \"state/state.db\"\nmetrics_listen = \"127.0.0.1:{port}\"\n"),
    )
    .expect("settings");
    event_connection(&cfg, &bucket, &url);
    // The set-up tools know the queue: `policy` prints its documents, `check` reads it.
    let policy = stdout_of(&run_binary(cfg.path(), &["policy", "acme"]));
    for needle in [
        "sqs:ReceiveMessage",
        "sqs:ChangeMessageVisibility",
        &arn,
        "\"Service\": \"s3.amazonaws.com\"",
        &format!("arn:aws:s3:::{bucket}"),
        "\"QueueConfigurations\"",
        "s3:ObjectCreated:*",
    ] {
        assert!(policy.contains(needle), "no {needle} in:\n{policy}");
    }
    let check = run_binary(cfg.path(), &["check", "acme"]);
    let said = format!("{}{}", text(&check.stdout), text(&check.stderr));
    assert!(said.contains("readable (visibility timeout 5 s)"), "{said}");
    let mut daemon = Daemon::start(&cfg, &[]);
    daemon.wait_log("event mode: reading the queue");
    // The catch-up run of a connection that never ran ends before events are awaited.
    daemon.wait_log("run finished");

    put(
        &s3,
        &bucket,
        "in/a b.jsonl",
        "{\"id\": \"a1\"}\n{\"id\": \"a2\"}\n",
    )
    .await;
    wait_ids(&cfg, &["a1", "a2"]);

    // The same object again, in all three forms, then junk and an object that is gone.
    let record = |key: &str| {
        serde_json::json!({"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3",
            "eventTime": "2026-12-07T09:00:00.000Z", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 28}}}]})
        .to_string()
    };
    send(&sqs, &url, record("in/a+b.jsonl")).await;
    send(
        &sqs,
        &url,
        serde_json::json!({"Type": "Notification", "Message": record("in/a+b.jsonl")}).to_string(),
    )
    .await;
    send(
        &sqs,
        &url,
        serde_json::json!({"version": "0", "source": "aws.s3", "detail-type": "Object Created",
            "time": "2026-12-07T09:00:00Z",
            "detail": {"bucket": {"name": bucket}, "object": {"key": "in/a b.jsonl"}}})
        .to_string(),
    )
    .await;
    send(&sqs, &url, "this is not an event".to_string()).await;
    send(&sqs, &url, record("in/gone.jsonl")).await;
    put(&s3, &bucket, "in/b.jsonl", "{\"id\": \"b1\"}\n").await;
    wait_ids(&cfg, &["a1", "a2", "b1"]);
    daemon.wait_log("no longer exists");
    daemon.wait_log("is not an S3 event");
    // Everything but the junk is settled and deleted; the junk waits for the redrive policy.
    wait_held(&sqs, &url, 1).await;
    assert_eq!(
        cfg.ids().len(),
        3,
        "a duplicate event imported rows twice: {:?}",
        cfg.ids()
    );
    // `status` tells the event loads apart from the scheduled run, whose watermark they
    // leave where it was.
    let status = stdout_of(&run_binary(
        cfg.path(),
        &["status", "acme", "--json", "--runs", "20"],
    ));
    let status: serde_json::Value = serde_json::from_str(&status).expect("status json");
    assert_eq!(status["last_event_load"]["outcome"], "event-ok", "{status}");
    let delay = status["last_event_load"]["event_delay_s"]
        .as_f64()
        .unwrap_or(-1.0);
    assert!((0.0..30.0).contains(&delay), "{status}");
    let scheduled: Vec<&serde_json::Value> = status["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .filter(|r| r["outcome"] == "ok")
        .collect();
    assert_eq!(scheduled.len(), 1, "{status}");
    assert_eq!(status["watermark"], scheduled[0]["watermark_after"], "{status}");

    // The metrics count the events (four for a.jsonl, one for b.jsonl, one for the object
    // that is gone) and the delay of each of the two deliveries.
    let (_, metrics) = http_get(port, "/metrics");
    for line in [
        "s3importd_events_total{connection=\"acme\",outcome=\"received\"} 6",
        "s3importd_events_total{connection=\"acme\",outcome=\"ignored\"} 0",
        "s3importd_event_delay_seconds_count{connection=\"acme\"} 2",
    ] {
        assert!(metrics.lines().any(|l| l == line), "no {line} in:\n{metrics}");
    }
    // A notification configured late: this object's event never comes, so the daemon does
    // not import it; the next listing does, and skips what the events imported.
    notify(&s3, &bucket, None, "in/").await;
    put(&s3, &bucket, "in/c.jsonl", "{\"id\": \"c1\"}\n").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(cfg.ids().len(), 3);
    assert_eq!(daemon.stop(), Some(0));
    let out = stdout_of(&run_binary(cfg.path(), &["run"]));
    assert!(out.contains("new 1, imported 1"), "{out}");
    wait_ids(&cfg, &["a1", "a2", "b1", "c1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_during_an_event_load_delivers_every_row_once_after_a_restart() {
    let (s3, sqs) = (s3(), sqs());
    let bucket = bucket(&s3, "events-kill").await;
    let (url, arn) = queue(&sqs, "events-kill", 2).await;
    notify(&s3, &bucket, Some(&arn), "in/").await;
    let cfg = ConfigDir::new();
    event_connection(&cfg, &bucket, &url);
    // The catch-up run has nothing to deliver, so the first delivery is the event load's.
    let mut daemon = Daemon::start(&cfg, &[("S3_IMPORTD_FAULT", "after-deliver")]);
    daemon.wait_log("event mode: reading the queue");
    daemon.wait_log("run finished");
    put(&s3, &bucket, "in/a.jsonl", "{\"id\": \"a1\"}\n{\"id\": \"a2\"}\n").await;
    daemon.wait_log("fault point after-deliver reached");
    drop(daemon);
    // Delivered, not committed, and the message not deleted: it comes back.
    assert_eq!(held(&sqs, &url).await, 1);

    let mut daemon = Daemon::start(&cfg, &[]);
    daemon.wait_log("event load finished");
    wait_held(&sqs, &url, 0).await;
    assert_eq!(cfg.ids(), ["a1", "a2"]);
    assert_eq!(daemon.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_reading_one_queue_deliver_every_row_once() {
    let (s3, sqs) = (s3(), sqs());
    let bucket = bucket(&s3, "events-fleet").await;
    let (url, arn) = queue(&sqs, "events-fleet", 5).await;
    notify(&s3, &bucket, Some(&arn), "in/").await;
    let state = fresh_database("events_fleet").await;
    // Two daemons of a fleet: one state database, one queue, one output folder, each its
    // own spool.
    let (a, b) = (ConfigDir::new(), ConfigDir::new());
    let out = a.out();
    for cfg in [&a, &b] {
        std::fs::write(
            cfg.path().join("s3-importd.toml"),
            format!("state = \"{state}\"\nspool_dir = \"spool\"\nlease_ttl_s = 10\n"),
        )
        .expect("settings");
        let toml = s3_connection(
            &bucket,
            "in/",
            &format!("queue_url = \"{url}\"\nevent_batch_seconds = 1"),
        )
        .replace("path = \"out\"", &format!("path = \"{}\"", out.display()));
        cfg.connection("acme", &toml);
    }
    let mut first = Daemon::start(&a, &[]);
    let mut second = Daemon::start(&b, &[]);
    for d in [&mut first, &mut second] {
        d.wait_log("event mode: reading the queue");
        // The catch-up run of a connection that never ran: one daemon runs it.
        d.log
            .wait_any(&["run finished", "ran elsewhere"], Duration::from_secs(30));
    }
    // Each object announced twice (S3's own event, and a copy), so that both daemons are
    // likely to hold events for the same objects at once.
    let mut want = Vec::new();
    for i in 0..20 {
        let key = format!("in/f{i:02}.jsonl");
        put(
            &s3,
            &bucket,
            &key,
            format!("{{\"id\": \"f{i:02}-a\"}}\n{{\"id\": \"f{i:02}-b\"}}\n"),
        )
        .await;
        let copy = serde_json::json!({"Records": [{"eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}]});
        send(&sqs, &url, copy.to_string()).await;
        want.push(format!("f{i:02}-a"));
        want.push(format!("f{i:02}-b"));
    }
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    wait_ids(&a, &want);
    wait_held(&sqs, &url, 0).await;
    assert_eq!(a.ids().len(), 40, "rows delivered twice: {:?}", a.ids());
    // Imported by event loads (the schedule is daily and its catch-up was over).
    let loads = [&mut first, &mut second]
        .into_iter()
        .map(|d| {
            d.log
                .drain()
                .iter()
                .filter(|l| l.contains("event load finished"))
                .count()
        })
        .sum::<usize>();
    assert!(loads >= 1, "no event load");
    assert_eq!(first.stop(), Some(0));
    assert_eq!(second.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_load_keeps_its_message_hidden_past_the_visibility_timeout() {
    let (s3, sqs) = (s3(), sqs());
    let bucket = bucket(&s3, "events-slow").await;
    // A 4 s visibility timeout, and a download that takes 12 s.
    let (url, arn) = queue(&sqs, "events-slow", 4).await;
    notify(&s3, &bucket, Some(&arn), "in/").await;
    let proxy = FaultProxy::start(&moto(), Fault::Delay(12_000), u64::MAX).await;
    let cfg = ConfigDir::new();
    let toml = s3_connection(
        &bucket,
        "in/",
        &format!("queue_url = \"{url}\"\nevent_batch_seconds = 0"),
    )
    .replace(
        &format!("endpoint = \"{}\"", moto()),
        &format!("endpoint = \"{}\"", proxy.url),
    );
    cfg.connection("acme", &toml);
    let mut daemon = Daemon::start(&cfg, &[]);
    daemon.wait_log("event mode: reading the queue");
    daemon.wait_log("run finished");
    put(&s3, &bucket, "in/big.jsonl", "{\"id\": \"b1\"}\n").await;
    daemon.wait_log("event load planned");
    // While the load runs (well past the 4 s timeout), nobody else sees its message.
    let until = Instant::now() + Duration::from_secs(9);
    while Instant::now() < until {
        let got = sqs
            .receive_message()
            .queue_url(&url)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive");
        assert!(
            got.messages().is_empty(),
            "the message became visible during its load: {:?}",
            got.messages()
        );
    }
    daemon.wait_log("event load finished");
    wait_held(&sqs, &url, 0).await;
    assert_eq!(cfg.ids(), ["b1"]);
    assert_eq!(daemon.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_is_read_with_the_connections_role() {
    let (s3, sqs) = (s3(), sqs());
    let bucket = bucket(&s3, "events-role").await;
    let (url, arn) = queue(&sqs, "events-role", 5).await;
    notify(&s3, &bucket, Some(&arn), "in/").await;
    // Only the queue's requests pass through the proxy: its host and port are the client's
    // endpoint.
    let proxy = RecordingProxy::start(&moto()).await;
    let cfg = ConfigDir::new();
    cfg.connection(
        "acme",
        &s3_connection(
            &bucket,
            "in/",
            &format!(
                "role_arn = \"arn:aws:iam::123456789012:role/importer\"\nexternal_id = \"ext-events-1\"\nqueue_url = \"{}\"\nevent_batch_seconds = 0",
                url.replace(&moto(), &proxy.url)
            ),
        ),
    );
    let mut daemon = Daemon::start(&cfg, &[]);
    daemon.wait_log("event mode: reading the queue");
    daemon.wait_log("run finished");
    put(&s3, &bucket, "in/a.jsonl", "{\"id\": \"a1\"}\n").await;
    wait_ids(&cfg, &["a1"]);
    assert_eq!(daemon.stop(), Some(0));
    let requests = proxy.requests();
    assert!(requests.contains("AmazonSQS.ReceiveMessage"), "{requests}");
    assert!(requests.contains("AmazonSQS.DeleteMessageBatch"), "{requests}");
    // Signed with the role's session credentials (moto hands out ASIA… keys), never the
    // daemon's own.
    assert!(requests.contains("Credential=ASIA"), "{requests}");
    assert!(!requests.contains("Credential=testing/"), "{requests}");
}

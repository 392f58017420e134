//! Event mode (docs/design.md §4.9): S3 notifications read from an SQS queue name new
//! objects, and the daemon imports them within seconds instead of at the next scheduled run.
//!
//! Events are hints, the listing is the truth: an event load goes through the same plan →
//! import → settle protocol and ledger as a run ([`crate::run::run_keys`]), so a duplicate,
//! late or out-of-order event imports nothing twice, and it never moves the watermark, so
//! the connection's scheduled runs still import whatever a lost message missed.
//!
//! One [`Consumer`] per connection with a `queue_url` long-polls the queue, sorts each
//! message's notices ([`message`]) into keys to import and events to drop, gathers keys for
//! `event_batch_seconds`, and hands them to an [`Importer`] as one load, extending the
//! messages' visibility at half the queue's timeout while it runs. A message is deleted only
//! once every object it names is settled; a message whose body is not an event is logged
//! once and left to the queue's redrive policy. The queue is behind [`Queue`] (SQS in
//! [`sqs`]), so the loop is tested with a fake under paused time.

pub mod message;
mod sqs;

pub use sqs::SqsQueue;

use crate::aws::AwsError;
use crate::aws::location::S3Location;
use crate::clock::Clock;
use crate::config::Connection;
use crate::config::validate::{Problems, in_range};
use crate::metrics::Metrics;
use crate::probe::Report;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use message::Notice;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

/// The longest SQS lets a receive wait for messages.
const LONG_POLL: Duration = Duration::from_secs(20);

/// A load starts at once when this many messages are gathered, whatever the batch time.
const MAX_MESSAGES: usize = 1000;

/// How many unreadable messages are remembered, so that each is logged once.
const REMEMBERED: usize = 10_000;

/// Event mode's settings of a connection: `queue_url`, `event_batch_seconds`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSpec {
    pub queue_url: String,
    /// Events gathered this long make one load.
    pub batch: Duration,
}

/// Checks `queue_url` and `event_batch_seconds` of an `s3` source. `insecure_ok` is the
/// source's `allow_insecure_http`: a queue is sent credentials as S3 is.
pub fn validate(
    queue_url: Option<String>,
    batch: Option<i64>,
    insecure_ok: bool,
    p: &mut Problems<'_>,
) -> Option<EventSpec> {
    let seconds = in_range(p, "source.event_batch_seconds", batch, 5, 0, 300);
    let Some(raw) = queue_url else {
        if batch.is_some() {
            p.add(
                "source.event_batch_seconds",
                "applies to event mode, and no queue_url is set; set queue_url, or remove the key",
            );
        }
        return None;
    };
    let before = p.count();
    match url::Url::parse(&raw) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
            let parts: Vec<&str> = u.path().trim_matches('/').split('/').collect();
            if parts.len() != 2 || parts.iter().any(|s| s.is_empty()) {
                p.add(
                    "source.queue_url",
                    format!(
                        "{raw:?} does not end in /ACCOUNT/QUEUE; copy the queue's URL from the SQS console (https://sqs.REGION.amazonaws.com/123456789012/NAME)"
                    ),
                );
            }
            if !insecure_ok && let Some(host) = crate::text::plaintext_to_remote(&raw) {
                p.add(
                    "source.queue_url",
                    format!("sends AWS credentials (signed requests) over plain http to {host}; use https://, or set allow_insecure_http = true if the network between is trusted"),
                );
            }
        }
        _ => p.add(
            "source.queue_url",
            format!("{raw:?} is not an http:// or https:// URL; copy the queue's URL from the SQS console"),
        ),
    }
    (p.count() == before).then(|| EventSpec {
        queue_url: raw,
        batch: Duration::from_secs(seconds as u64),
    })
}

/// `check`'s step for the queue: reachable and readable with the connection's identity
/// (GetQueueAttributes, which the daemon also asks for the visibility timeout).
pub async fn check(report: &mut Report, connection: &str, location: &S3Location, spec: &EventSpec) -> bool {
    let Ok(url) = url::Url::parse(&spec.queue_url) else {
        return false;
    };
    let queue = SqsQueue::new(
        crate::aws::sqs_client(connection, location, &url).await,
        &spec.queue_url,
    );
    match queue.visibility_timeout().await {
        Ok(timeout) => {
            report.ok(
                "queue",
                format!(
                    "{} readable (visibility timeout {} s)",
                    spec.queue_url,
                    timeout.as_secs()
                ),
            );
            true
        }
        Err(e) => {
            report.failed(
                "queue",
                e.to_string(),
                format!("grant sqs:GetQueueAttributes, sqs:ReceiveMessage, sqs:DeleteMessage and sqs:ChangeMessageVisibility on the queue (`s3-importd policy {connection}` prints them), and check queue_url"),
            );
            false
        }
    }
}

/// One message as received.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub receipt: String,
    pub body: String,
    /// When the queue got it (SQS's `SentTimestamp`).
    pub sent_at: Option<DateTime<Utc>>,
}

/// Why a request to the queue failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error(transparent)]
    Request(AwsError),
    #[error("{operation} refused {failed} of its entries ({code})")]
    Entry {
        operation: &'static str,
        code: String,
        failed: usize,
    },
}

/// A queue of event messages.
#[async_trait]
pub trait Queue: Send + Sync {
    /// The queue's visibility timeout: how long a received message stays hidden.
    async fn visibility_timeout(&self) -> Result<Duration, QueueError>;
    /// Up to ten messages, waiting up to `wait` (whole seconds, rounded up, at most 20) for one.
    async fn receive(&self, wait: Duration) -> Result<Vec<Message>, QueueError>;
    /// Deletes the messages of these receipts.
    async fn delete(&self, receipts: &[String]) -> Result<(), QueueError>;
    /// Hides the messages of these receipts for `timeout` from now (0: visible again at once).
    async fn set_visibility(&self, receipts: &[String], timeout: Duration) -> Result<(), QueueError>;
}

/// What an event load did.
#[derive(Debug, Clone, Default)]
pub struct Imported {
    /// For each key given, whether what it names is settled.
    pub settled: Vec<bool>,
    /// The connection's lock was held elsewhere (a run, or another daemon's load): nothing
    /// was done, try again.
    pub busy: bool,
    /// The LastModified of each object the load delivered.
    pub delivered: Vec<DateTime<Utc>>,
}

/// Runs event loads.
#[async_trait]
pub trait Importer: Send + Sync {
    /// Imports the current versions of `keys` as one load of `connection`. `stop` is
    /// cancelled when the daemon stops.
    async fn import(
        &self,
        connection: Arc<Connection>,
        keys: Vec<String>,
        stop: CancellationToken,
    ) -> Imported;
}

/// One message whose objects wait for a load.
struct Held {
    receipt: String,
    keys: Vec<String>,
}

/// The consumer of one connection's queue.
pub struct Consumer {
    pub connection: Arc<Connection>,
    pub spec: EventSpec,
    /// The bucket and prefix events must name.
    pub bucket: String,
    pub queue: Arc<dyn Queue>,
    pub importer: Arc<dyn Importer>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<Metrics>,
}

impl Consumer {
    /// Consumes the queue until `stop`. Messages gathered and not yet loaded are made
    /// visible again at once; a load in flight reaches its safe point first.
    pub async fn run(self, stop: CancellationToken) {
        let span = info_span!("events", connection = %self.connection.name);
        self.consume(stop).instrument(span).await;
    }

    async fn consume(&self, stop: CancellationToken) {
        let name = &self.connection.name;
        self.metrics.register_events(name);
        let mut backoff = Duration::from_secs(1);
        let timeout = loop {
            match self.queue.visibility_timeout().await {
                Ok(t) => break t.max(Duration::from_secs(1)),
                Err(e) => {
                    warn!(queue = %self.spec.queue_url, error = %e, "reading the queue's attributes failed; trying again");
                    if !crate::clock::pause(backoff, &stop).await {
                        return;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
        };
        info!(queue = %self.spec.queue_url, batch_s = self.spec.batch.as_secs(), visibility_timeout_s = timeout.as_secs(), "event mode: reading the queue");
        let mut held: Vec<Held> = Vec::new();
        let mut since: Option<Instant> = None;
        let mut unreadable: HashSet<String> = HashSet::new();
        backoff = Duration::from_secs(1);
        loop {
            if let Some(first) = since {
                let left = self.spec.batch.saturating_sub(first.elapsed());
                if left.is_zero() || held.len() >= MAX_MESSAGES {
                    self.load(std::mem::take(&mut held), timeout, &stop).await;
                    since = None;
                    if stop.is_cancelled() {
                        return;
                    }
                    continue;
                }
            }
            let wait = since.map_or(LONG_POLL, |first| self.spec.batch.saturating_sub(first.elapsed()));
            let received = tokio::select! {
                r = self.queue.receive(wait.min(LONG_POLL)) => r,
                () = stop.cancelled() => break,
            };
            match received {
                Ok(messages) => {
                    backoff = Duration::from_secs(1);
                    let before = held.len();
                    self.sort(messages, &mut held, &mut unreadable).await;
                    if held.len() > before {
                        since.get_or_insert_with(Instant::now);
                    }
                }
                Err(e) => {
                    warn!(queue = %self.spec.queue_url, error = %e, "receiving from the queue failed; trying again");
                    if !crate::clock::pause(backoff, &stop).await {
                        break;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(60));
                }
            }
        }
        // Stopping: what was gathered goes back to the queue for whoever reads it next.
        let receipts: Vec<String> = held.into_iter().map(|h| h.receipt).collect();
        if !receipts.is_empty() {
            if let Err(e) = self.queue.set_visibility(&receipts, Duration::ZERO).await {
                warn!(error = %e, messages = receipts.len(), "returning messages to the queue failed; they return when their visibility timeout ends");
            } else {
                info!(
                    messages = receipts.len(),
                    "stopping: messages not yet loaded returned to the queue"
                );
            }
        }
    }

    /// Sorts received messages: what they name to `held`; test events and events the
    /// connection does not import deleted at once; unreadable bodies left on the queue.
    async fn sort(&self, messages: Vec<Message>, held: &mut Vec<Held>, unreadable: &mut HashSet<String>) {
        let name = &self.connection.name;
        let now = self.clock.now();
        let oldest = messages.iter().filter_map(|m| m.sent_at).min();
        self.metrics
            .event_oldest(name, oldest.map_or(chrono::TimeDelta::zero(), |t| now - t));
        let mut done = Vec::new();
        for m in messages {
            let notices = match message::parse(&m.body) {
                Ok(notices) => notices,
                Err(e) => {
                    if unreadable.len() >= REMEMBERED {
                        unreadable.clear();
                    }
                    if unreadable.insert(m.id.clone()) {
                        warn!(message_id = %m.id, error = %e, body = %crate::text::excerpt(&m.body), "a message on the queue is not an S3 event; it is left to the queue's redrive policy");
                    }
                    continue;
                }
            };
            let mut keys = Vec::new();
            for notice in notices {
                match notice {
                    Notice::Test => debug!(message_id = %m.id, "the queue's test event"),
                    Notice::Other { bucket, what } => {
                        self.metrics.events(name, "received", 1);
                        self.metrics.events(name, "ignored", 1);
                        debug!(message_id = %m.id, %bucket, event = %what, "not an object creation; ignored");
                    }
                    Notice::Created(c) => {
                        self.metrics.events(name, "received", 1);
                        if self.admits(&c.bucket, &c.key) {
                            keys.push(c.key);
                        } else {
                            self.metrics.events(name, "ignored", 1);
                            debug!(message_id = %m.id, bucket = %c.bucket, key = %c.key, "an object this connection does not import; ignored");
                        }
                    }
                }
            }
            if keys.is_empty() {
                done.push(m.receipt);
            } else {
                held.push(Held {
                    receipt: m.receipt,
                    keys,
                });
            }
        }
        self.delete(&done).await;
    }

    /// Whether the connection imports this object: its bucket, below its prefix, admitted by
    /// its globs, not a folder marker.
    fn admits(&self, bucket: &str, key: &str) -> bool {
        let c = &self.connection;
        let prefix = c.source.prefix();
        bucket == self.bucket
            && !key.ends_with('/')
            && key
                .strip_prefix(prefix)
                .is_some_and(|relative| c.filters.admits(relative))
    }

    async fn delete(&self, receipts: &[String]) {
        if receipts.is_empty() {
            return;
        }
        if let Err(e) = self.queue.delete(receipts).await {
            // They come back, and the ledger skips what they name.
            warn!(error = %e, messages = receipts.len(), "deleting settled messages failed; they will be read again and change nothing");
        }
    }

    /// One load of the held messages' objects; a message is deleted once all it names is
    /// settled. Visibility is extended at half the timeout while the load runs, and while
    /// it waits for the connection's lock.
    async fn load(&self, held: Vec<Held>, timeout: Duration, stop: &CancellationToken) {
        let name = &self.connection.name;
        // Each key once, in order of arrival (a batch holds up to MAX_MESSAGES messages:
        // a set, not a scan of the list per key).
        let mut seen = HashSet::new();
        let keys: Vec<String> = held
            .iter()
            .flat_map(|h| &h.keys)
            .filter(|k| seen.insert(k.as_str()))
            .cloned()
            .collect();
        let receipts: Vec<String> = held.iter().map(|h| h.receipt.clone()).collect();
        let extend = async {
            let every = (timeout / 2).max(Duration::from_millis(500));
            loop {
                tokio::time::sleep(every).await;
                match self.queue.set_visibility(&receipts, timeout).await {
                    Ok(()) => debug!(messages = receipts.len(), "visibility extended"),
                    Err(e) => {
                        warn!(error = %e, "extending the messages' visibility failed; another reader may see them (the ledger keeps the rows once)")
                    }
                }
            }
        };
        let import = async {
            let mut backoff = Duration::from_secs(1);
            loop {
                let imported = self
                    .importer
                    .import(self.connection.clone(), keys.clone(), stop.clone())
                    .await;
                if !imported.busy || stop.is_cancelled() {
                    return imported;
                }
                debug!("the connection is busy (a run, or another daemon's load); the event load waits");
                if !crate::clock::pause(backoff, stop).await {
                    return imported;
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        };
        let imported = tokio::select! {
            imported = import => imported,
            () = extend => unreachable!("extending never ends"),
        };
        let now = self.clock.now();
        for lm in &imported.delivered {
            self.metrics.event_delivered(name, now - *lm);
        }
        let settled: HashSet<&String> = keys
            .iter()
            .zip(imported.settled.iter().copied().chain(std::iter::repeat(false)))
            .filter_map(|(k, yes)| yes.then_some(k))
            .collect();
        self.metrics.events(name, "imported", settled.len() as u64);
        let (done, left): (Vec<Held>, Vec<Held>) = held
            .into_iter()
            .partition(|h| h.keys.iter().all(|k| settled.contains(k)));
        let done: Vec<String> = done.into_iter().map(|h| h.receipt).collect();
        self.delete(&done).await;
        if !left.is_empty() {
            let receipts: Vec<String> = left.into_iter().map(|h| h.receipt).collect();
            if stop.is_cancelled() {
                // Stopping: back to the queue at once.
                let _ = self.queue.set_visibility(&receipts, Duration::ZERO).await;
            }
            info!(
                messages = receipts.len(),
                "messages naming objects not settled stay on the queue; they come back after the visibility timeout"
            );
        }
        info!(
            keys = keys.len(),
            settled = settled.len(),
            deleted = done.len(),
            "event load finished"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::TokioClock;
    use chrono::TimeZone;
    use std::sync::Mutex;

    /// What the fake queue was asked to do.
    #[derive(Debug, Clone, PartialEq)]
    enum Call {
        Delete(Vec<String>),
        Visibility(Vec<String>, u64),
    }

    /// A queue that hands out its messages once each, in batches of ten, and records the rest.
    struct FakeQueue {
        waiting: Mutex<Vec<Message>>,
        calls: Mutex<Vec<Call>>,
        timeout: Duration,
    }

    #[async_trait]
    impl Queue for FakeQueue {
        async fn visibility_timeout(&self) -> Result<Duration, QueueError> {
            Ok(self.timeout)
        }
        async fn receive(&self, wait: Duration) -> Result<Vec<Message>, QueueError> {
            let batch: Vec<Message> = {
                let mut waiting = self.waiting.lock().unwrap();
                let n = waiting.len().min(10);
                waiting.drain(..n).collect()
            };
            if batch.is_empty() {
                tokio::time::sleep(wait.max(Duration::from_millis(100))).await;
            }
            Ok(batch)
        }
        async fn delete(&self, receipts: &[String]) -> Result<(), QueueError> {
            self.calls.lock().unwrap().push(Call::Delete(receipts.to_vec()));
            Ok(())
        }
        async fn set_visibility(&self, receipts: &[String], timeout: Duration) -> Result<(), QueueError> {
            self.calls
                .lock()
                .unwrap()
                .push(Call::Visibility(receipts.to_vec(), timeout.as_secs()));
            Ok(())
        }
    }

    /// Imports by taking `took`, settling every key but those in `fail`, busy the first
    /// `busy` times.
    struct FakeImporter {
        took: Duration,
        fail: Vec<String>,
        busy: Mutex<u32>,
        loads: Mutex<Vec<Vec<String>>>,
    }

    #[async_trait]
    impl Importer for FakeImporter {
        async fn import(&self, _: Arc<Connection>, keys: Vec<String>, _: CancellationToken) -> Imported {
            {
                let mut busy = self.busy.lock().unwrap();
                if *busy > 0 {
                    *busy -= 1;
                    return Imported {
                        busy: true,
                        ..Imported::default()
                    };
                }
            }
            tokio::time::sleep(self.took).await;
            self.loads.lock().unwrap().push(keys.clone());
            Imported {
                settled: keys.iter().map(|k| !self.fail.contains(k)).collect(),
                busy: false,
                delivered: Vec::new(),
            }
        }
    }

    fn s3_body(bucket: &str, name: &str, key: &str) -> String {
        serde_json::json!({"Records": [{"eventName": name, "eventTime": "2026-01-01T00:00:00Z",
            "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}]})
        .to_string()
    }

    fn message(n: usize, body: String) -> Message {
        Message {
            id: format!("m{n}"),
            receipt: format!("r{n}"),
            body,
            sent_at: None,
        }
    }

    fn connection() -> Arc<Connection> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("connections")).unwrap();
        std::fs::write(dir.path().join("s3-importd.toml"), "").unwrap();
        std::fs::write(
            dir.path().join("connections/acme.toml"),
            "[source]\nbucket = \"acme\"\nregion = \"us-east-1\"\nprefix = \"in/\"\nexclude = [\"tmp/**\"]\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/123456789012/q\"\n[template]\n[[template.fields]]\nname = \"id\"\n[target]\ntype = \"stdout\"\n",
        )
        .unwrap();
        let config = crate::config::load(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        Arc::new(config.connections[0].clone())
    }

    /// Runs a consumer over `messages` until `until` has passed, then stops it.
    async fn consume(messages: Vec<Message>, importer: Arc<FakeImporter>, until: Duration) -> Vec<Call> {
        let queue = Arc::new(FakeQueue {
            waiting: Mutex::new(messages),
            calls: Mutex::new(Vec::new()),
            timeout: Duration::from_secs(2),
        });
        let connection = connection();
        let spec = crate::daemon::queue_of(&connection).cloned().unwrap();
        let consumer = Consumer {
            connection,
            spec,
            bucket: "acme".into(),
            queue: queue.clone(),
            importer,
            clock: Arc::new(TokioClock::starting_at(
                Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            )),
            metrics: Arc::new(Metrics::new()),
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(consumer.run(stop.clone()));
        tokio::time::sleep(until).await;
        stop.cancel();
        task.await.unwrap();
        queue.calls.lock().unwrap().clone()
    }

    fn importer(took: u64, fail: &[&str], busy: u32) -> Arc<FakeImporter> {
        Arc::new(FakeImporter {
            took: Duration::from_secs(took),
            fail: fail.iter().map(|s| s.to_string()).collect(),
            busy: Mutex::new(busy),
            loads: Mutex::new(Vec::new()),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn messages_are_sorted_gathered_into_one_load_and_deleted_once_settled() {
        let messages = vec![
            message(1, s3_body("acme", "ObjectCreated:Put", "in/a.csv")),
            message(2, r#"{"Event": "s3:TestEvent", "Bucket": "acme"}"#.into()),
            message(3, s3_body("other", "ObjectCreated:Put", "in/a.csv")),
            message(4, s3_body("acme", "ObjectCreated:Put", "out/a.csv")),
            message(5, s3_body("acme", "ObjectCreated:Put", "in/tmp/x.csv")),
            message(6, s3_body("acme", "ObjectRemoved:Delete", "in/a.csv")),
            message(7, "junk".into()),
            // A duplicate of the first, and an object whose import fails.
            message(8, s3_body("acme", "ObjectCreated:Put", "in/a.csv")),
            message(9, s3_body("acme", "ObjectCreated:Post", "in/b+c.csv")),
            message(10, s3_body("acme", "ObjectCreated:Put", "in/bad.csv")),
        ];
        let importer = importer(0, &["in/bad.csv"], 1);
        let calls = consume(messages, importer.clone(), Duration::from_secs(30)).await;
        // One load (after one busy answer), each key once, in order of arrival.
        assert_eq!(
            *importer.loads.lock().unwrap(),
            vec![vec![
                "in/a.csv".to_string(),
                "in/b c.csv".into(),
                "in/bad.csv".into()
            ]]
        );
        let deleted: Vec<String> = calls
            .iter()
            .filter_map(|c| match c {
                Call::Delete(r) => Some(r.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        // Test, other bucket, outside the prefix, excluded, a deletion: at once; then the
        // settled ones. Junk and the failed object's message stay.
        assert_eq!(deleted, ["r2", "r3", "r4", "r5", "r6", "r1", "r8", "r9"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_load_keeps_its_messages_hidden() {
        let messages = vec![message(1, s3_body("acme", "ObjectCreated:Put", "in/big.csv"))];
        let calls = consume(messages, importer(10, &[], 0), Duration::from_secs(30)).await;
        let extended = calls
            .iter()
            .filter(|c| **c == Call::Visibility(vec!["r1".into()], 2))
            .count();
        // Every second (half the 2 s timeout) during a 10 s load.
        assert!((9..=11).contains(&extended), "{calls:?}");
        assert_eq!(calls.last(), Some(&Call::Delete(vec!["r1".into()])));
    }

    #[tokio::test(start_paused = true)]
    async fn stopping_returns_gathered_messages_to_the_queue() {
        let messages = vec![message(1, s3_body("acme", "ObjectCreated:Put", "in/a.csv"))];
        // Stopped 2 s into the 5 s batch.
        let importer = importer(0, &[], 0);
        let calls = consume(messages, importer.clone(), Duration::from_secs(2)).await;
        assert!(importer.loads.lock().unwrap().is_empty());
        assert_eq!(calls, vec![Call::Visibility(vec!["r1".into()], 0)]);
    }
}

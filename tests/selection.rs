//! The selection guarantees of docs/design.md §4.2, driven through the library against moto with an
//! injected clock: the backfill window, versions that share a LastModified second and become
//! visible late, and failed objects that hold the watermark back.

mod common;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use common::*;
use s3_importd::clock::{Clock, ManualClock};
use s3_importd::config::{self, Connection, SourceSpec};
use s3_importd::run::{RunEnv, RunLimits, RunSummary, run};
use s3_importd::select::{ObjectMeta, SkipReason};
use s3_importd::sources::s3::S3Source;
use s3_importd::sources::{ObjectReader, Source, SourceError};
use s3_importd::state::{RunState, SqliteStore};
use s3_importd::targets::file::FileTarget;
use std::sync::Mutex;

fn connection(cfg: &ConfigDir, name: &str) -> Connection {
    let config = config::load(cfg.path()).unwrap_or_else(|e| panic!("{e}"));
    config.connection(name).expect("connection").clone()
}

async fn source_of(c: &Connection) -> S3Source {
    match &c.source {
        SourceSpec::S3(spec) => S3Source::new(&c.name, spec).await,
        other => panic!("not s3: {other:?}"),
    }
}

async fn run_once(cfg: &ConfigDir, c: &Connection, source: &dyn Source, clock: &ManualClock) -> RunSummary {
    let state = SqliteStore::open(&cfg.state()).expect("state");
    let target = match &c.target {
        config::TargetSpec::File(spec) => {
            FileTarget::new(spec.clone(), std::sync::Arc::new(c.template.clone()))
        }
        other => panic!("not file: {other:?}"),
    };
    let env = RunEnv {
        connection: c,
        source,
        target: &target,
        state: &state,
        clock,
        spool_root: &cfg.path().join("spool"),
        limits: RunLimits::default(),
        stop: tokio_util::sync::CancellationToken::new(),
        next_run: None,
    };
    run(&env, false).await
}

async fn last_modified(key: &str, b: &str) -> DateTime<Utc> {
    let head = s3().head_object().bucket(b).key(key).send().await.expect("head");
    let t = head.last_modified().expect("last modified");
    DateTime::from_timestamp(t.secs(), t.subsec_nanos()).expect("time")
}

/// A source with injected faults: one key hidden from listings (as an eventually consistent
/// listing or a multipart upload that completes late would), one key failing to read (as a
/// dropped connection would).
struct Faulty<'a> {
    inner: &'a dyn Source,
    hidden: Mutex<Option<String>>,
    failing: Mutex<Option<String>>,
}

impl<'a> Faulty<'a> {
    fn new(inner: &'a dyn Source) -> Faulty<'a> {
        Faulty {
            inner,
            hidden: Mutex::new(None),
            failing: Mutex::new(None),
        }
    }
}

#[async_trait]
impl Source for Faulty<'_> {
    async fn list(&self, visit: &mut (dyn FnMut(ObjectMeta) + Send)) -> Result<u64, SourceError> {
        let hidden = self.hidden.lock().unwrap().clone();
        let mut seen = 0;
        self.inner
            .list(&mut |m| {
                if Some(&m.key) != hidden.as_ref() {
                    seen += 1;
                    visit(m);
                }
            })
            .await?;
        Ok(seen)
    }

    async fn open(&self, object: &ObjectMeta) -> Result<ObjectReader, SourceError> {
        if self.failing.lock().unwrap().as_deref() == Some(object.key.as_str()) {
            return Err(SourceError::Read {
                location: self.location(),
                key: object.key.clone(),
                cause: s3_importd::sources::Cause::lasting("connection reset"),
            });
        }
        self.inner.open(object).await
    }

    fn location(&self) -> String {
        self.inner.location()
    }
}

#[tokio::test]
async fn first_run_skips_objects_older_than_backfill_days() {
    let client = s3();
    let b = bucket(&client, "backfill").await;
    put(&client, &b, "p/old.jsonl", "{\"id\": \"old\"}\n").await;
    let old = last_modified("p/old.jsonl", &b).await;
    // LastModified has one-second resolution: wait (at most two seconds) for the next second.
    for _ in 0..40 {
        if Utc::now().timestamp() > old.timestamp() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    put(&client, &b, "p/new.jsonl", "{\"id\": \"new\"}\n").await;
    let new = last_modified("p/new.jsonl", &b).await;
    assert!(new > old);

    let cfg = ConfigDir::new();
    cfg.connection(
        "bf",
        &format!("backfill_days = 1\n{}", s3_connection(&b, "p/", "")),
    );
    let c = connection(&cfg, "bf");
    let source = source_of(&c).await;
    // One day after `new` was written: `old` is just outside the backfill window.
    let clock = ManualClock::new(new + TimeDelta::days(1));
    let s = run_once(&cfg, &c, &source, &clock).await;
    assert_eq!(
        (s.counts.listed, s.counts.new, s.counts.imported),
        (2, 1, 1),
        "{}",
        s.line()
    );
    assert_eq!(s.skipped.get(&SkipReason::TooOld), Some(&1));
    let ids: Vec<_> = cfg.rows().iter().map(|r| r["id"].clone()).collect();
    assert_eq!(ids, vec![serde_json::json!("new")]);
}

#[tokio::test]
async fn versions_sharing_a_second_and_seen_late_are_imported_once_each() {
    let client = s3();
    let b = bucket(&client, "late").await;
    // Two objects with the same LastModified second (try again if a second boundary falls
    // between the two writes).
    let mut pair = None;
    for attempt in 0..10 {
        let (a, bk) = (format!("p/a{attempt}.jsonl"), format!("p/b{attempt}.jsonl"));
        put(&client, &b, &a, format!("{{\"id\": \"a{attempt}\"}}\n")).await;
        put(&client, &b, &bk, format!("{{\"id\": \"b{attempt}\"}}\n")).await;
        if last_modified(&a, &b).await == last_modified(&bk, &b).await {
            pair = Some((a, bk, attempt));
            break;
        }
        client.delete_object().bucket(&b).key(&a).send().await.unwrap();
        client.delete_object().bucket(&b).key(&bk).send().await.unwrap();
    }
    let (a, late, attempt) = pair.expect("two writes within one second");
    let lm = last_modified(&a, &b).await;

    let cfg = ConfigDir::new();
    cfg.connection(
        "late",
        &s3_connection(&b, "p/", "").replace("settle_seconds = 0", "settle_seconds = 60"),
    );
    let c = connection(&cfg, "late");
    let s3source = source_of(&c).await;
    let source = Faulty::new(&s3source);
    *source.hidden.lock().unwrap() = Some(late.clone());

    // The first run sees only `a`; its watermark passes their shared second.
    let clock = ManualClock::new(lm + TimeDelta::seconds(61));
    let s = run_once(&cfg, &c, &source, &clock).await;
    assert_eq!((s.counts.new, s.counts.imported), (1, 1), "{}", s.line());
    assert!(s.watermark_after.unwrap() > lm);

    // `b` appears an hour later with the same LastModified: imported, and `a` is not again.
    *source.hidden.lock().unwrap() = None;
    clock.advance(TimeDelta::hours(1));
    let s = run_once(&cfg, &c, &source, &clock).await;
    assert_eq!(
        (s.counts.listed, s.counts.new, s.counts.imported),
        (2, 1, 1),
        "{}",
        s.line()
    );
    assert_eq!(s.skipped.get(&SkipReason::AlreadySettled), Some(&1));

    clock.advance(TimeDelta::hours(1));
    let s = run_once(&cfg, &c, &source, &clock).await;
    assert_eq!((s.counts.new, s.counts.imported), (0, 0), "{}", s.line());

    assert_eq!(cfg.ids(), vec![format!("a{attempt}"), format!("b{attempt}")]);
}

#[tokio::test]
async fn a_failed_object_holds_the_watermark_and_is_imported_by_the_next_run() {
    let client = s3();
    let b = bucket(&client, "flaky").await;
    put(&client, &b, "p/1.jsonl", "{\"id\": \"one\"}\n").await;
    put(&client, &b, "p/2.jsonl", "{\"id\": \"two\"}\n").await;
    let lm = last_modified("p/1.jsonl", &b)
        .await
        .min(last_modified("p/2.jsonl", &b).await);

    let cfg = ConfigDir::new();
    cfg.connection("flaky", &s3_connection(&b, "p/", ""));
    let c = connection(&cfg, "flaky");
    let s3source = source_of(&c).await;
    let source = Faulty::new(&s3source);
    *source.failing.lock().unwrap() = Some("p/2.jsonl".into());
    let clock = ManualClock::new(lm + TimeDelta::days(3));
    let s = run_once(&cfg, &c, &source, &clock).await;
    assert_eq!(
        (s.counts.new, s.counts.imported, s.counts.failed),
        (2, 1, 1),
        "{}",
        s.line()
    );
    assert!(!s.succeeded());
    assert!(s.watermark_after.unwrap() <= last_modified("p/2.jsonl", &b).await);
    assert!(s.problems[0].contains("p/2.jsonl"), "{:?}", s.problems);

    // Days later, the object reads again: the held-back watermark still covers it.
    *source.failing.lock().unwrap() = None;
    clock.advance(TimeDelta::days(2));
    let s = run_once(&cfg, &c, &source, &clock).await;
    assert_eq!(
        (s.counts.new, s.counts.imported, s.counts.failed),
        (1, 1, 0),
        "{}",
        s.line()
    );
    let state = SqliteStore::open(&cfg.state()).unwrap();
    assert_eq!(
        state.connection("flaky").await.unwrap().watermark,
        Some(clock.now())
    );
}

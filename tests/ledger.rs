//! The ledger stays small (issue 14): entries behind the watermark's overlap band are pruned
//! at commit, and pruning never causes a re-import, shown with a moving clock over days.

mod common;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use common::*;
use s3_importd::clock::ManualClock;
use s3_importd::config::{self, Connection, TargetSpec};
use s3_importd::run::{RunEnv, RunLimits, RunSummary, run};
use s3_importd::select::ObjectMeta;
use s3_importd::sources::{ObjectReader, Source, SourceError};
use s3_importd::state::{AdminState, SqliteStore};
use s3_importd::targets::file::FileTarget;
use std::sync::Mutex;

/// A bucket in memory: objects with the LastModified a test gives them.
#[derive(Default)]
struct Bucket(Mutex<Vec<(ObjectMeta, Vec<u8>)>>);

impl Bucket {
    fn put(&self, key: &str, at: DateTime<Utc>) {
        let body = format!("{{\"id\": \"{key}\"}}\n").into_bytes();
        let meta = ObjectMeta {
            key: key.to_string(),
            etag: format!("{:x}", md5_of(&body)),
            last_modified: at,
            size: body.len() as u64,
            stamp: None,
        };
        self.0.lock().unwrap().push((meta, body));
    }
}

/// A stand-in version: any value that differs between bodies will do here.
fn md5_of(body: &[u8]) -> u128 {
    body.iter()
        .fold(7u128, |h, b| h.wrapping_mul(31).wrapping_add(*b as u128))
}

#[async_trait]
impl Source for Bucket {
    async fn list(&self, visit: &mut (dyn FnMut(ObjectMeta) + Send)) -> Result<u64, SourceError> {
        let objects: Vec<ObjectMeta> = self.0.lock().unwrap().iter().map(|(m, _)| m.clone()).collect();
        let n = objects.len() as u64;
        objects.into_iter().for_each(visit);
        Ok(n)
    }

    async fn open(&self, object: &ObjectMeta) -> Result<ObjectReader, SourceError> {
        let body = self
            .0
            .lock()
            .unwrap()
            .iter()
            .find(|(m, _)| m.key == object.key)
            .map(|(_, b)| b.clone())
            .unwrap_or_default();
        Ok(ObjectReader::Stream(Box::new(std::io::Cursor::new(body))))
    }

    fn location(&self) -> String {
        "memory://bucket/".into()
    }
}

/// A connection over an in-memory bucket into a file target, with its state file and a
/// clock the test moves, at 2026-11-01 12:00 UTC to begin with.
struct Harness {
    cfg: ConfigDir,
    connection: Connection,
    target: FileTarget,
    state: SqliteStore,
    t0: DateTime<Utc>,
    clock: ManualClock,
    bucket: Bucket,
}

impl Harness {
    fn new() -> Harness {
        let cfg = ConfigDir::new();
        cfg.connection(
            "mem",
            &dir_connection_toml("mem", ID_TEMPLATE, "type = \"file\"\npath = \"out\"")
                .replace("settle_seconds = 0", "settle_seconds = 0\nbackfill_days = 30"),
        );
        let config = config::load(cfg.path()).unwrap_or_else(|e| panic!("{e}"));
        let connection = config.connection("mem").unwrap().clone();
        let TargetSpec::File(spec) = &connection.target else {
            panic!("file target")
        };
        let target = FileTarget::new(spec.clone(), std::sync::Arc::new(connection.template.clone()));
        let state = SqliteStore::open(&cfg.state()).unwrap();
        let t0 = Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap();
        Harness {
            connection,
            target,
            state,
            t0,
            clock: ManualClock::new(t0),
            bucket: Bucket::default(),
            cfg,
        }
    }

    /// One run of the connection, now by the clock.
    async fn run(&self) -> RunSummary {
        let spool = self.cfg.path().join("spool");
        let env = RunEnv {
            connection: &self.connection,
            source: &self.bucket,
            target: &self.target,
            state: &self.state,
            clock: &self.clock,
            spool_root: &spool,
            limits: RunLimits::default(),
            stop: tokio_util::sync::CancellationToken::new(),
            next_run: None,
        };
        run(&env, false).await
    }
}

#[tokio::test]
async fn entries_behind_the_overlap_band_are_pruned_and_never_imported_again() {
    let h = Harness::new();
    let (cfg, state, clock, bucket, t0) = (&h.cfg, &h.state, &h.clock, &h.bucket, h.t0);
    let ledger = async || -> Vec<String> {
        state
            .ledger("mem")
            .await
            .unwrap()
            .into_iter()
            .map(|(k, _, _)| k)
            .collect()
    };

    bucket.put("ten-days-old", t0 - TimeDelta::days(10));
    bucket.put("an-hour-old", t0 - TimeDelta::hours(1));
    let s = h.run().await;
    assert_eq!(s.counts.imported, 2, "{}", s.line());
    // The watermark is t0: the ten-day-old entry is behind its 24-hour band, and goes.
    assert_eq!(ledger().await, ["an-hour-old"]);

    // Every hour for three days, with a new object each day: nothing is imported twice.
    for hour in 1..=72 {
        clock.advance(TimeDelta::hours(1));
        if hour % 24 == 0 {
            bucket.put(
                &format!("day-{}", hour / 24),
                clock_now(clock) - TimeDelta::minutes(5),
            );
        }
        let s = h.run().await;
        assert_eq!(s.counts.failed, 0, "{}", s.line());
    }
    let mut ids = cfg.ids();
    ids.sort();
    assert_eq!(ids, ["an-hour-old", "day-1", "day-2", "day-3", "ten-days-old"]);
    // Only what lies within a day of the watermark is left.
    assert_eq!(ledger().await, ["day-3"]);
    // The pages pruning freed went back to the file system.
    let db = rusqlite::Connection::open(cfg.state()).unwrap();
    let pragma = |name: &str| db.pragma_query_value(None, name, |r| r.get::<_, i64>(0)).unwrap();
    assert_eq!(pragma("auto_vacuum"), 2, "incremental");
    assert_eq!(pragma("freelist_count"), 0);

    // A reset re-imports what was modified since its date, even though the ledger forgot
    // it, and nothing from before its date: day-1's entry was pruned, and it lies within a
    // day of the date, where the overlap band would otherwise reach.
    let since = t0 + TimeDelta::hours(36);
    state.reset("mem", since).await.unwrap();
    clock.advance(TimeDelta::hours(1));
    let s = h.run().await;
    assert_eq!((s.counts.new, s.counts.imported), (2, 2), "{}", s.line());
    let mut ids = cfg.ids();
    ids.sort();
    assert_eq!(
        ids,
        [
            "an-hour-old",
            "day-1",
            "day-2",
            "day-2",
            "day-3",
            "day-3",
            "ten-days-old"
        ]
    );
}

fn clock_now(clock: &ManualClock) -> DateTime<Utc> {
    use s3_importd::clock::Clock;
    clock.now()
}

#[tokio::test]
async fn a_connection_whose_files_stop_arriving_gives_its_state_back() {
    let h = Harness::new();
    let (cfg, clock, bucket, t0) = (&h.cfg, &h.clock, &h.bucket, h.t0);
    // The database's pages, free ones included (what the file holds once checkpointed).
    let size = || {
        let db = rusqlite::Connection::open(cfg.state()).unwrap();
        db.pragma_query_value(None, "page_count", |r| r.get::<_, i64>(0))
            .unwrap()
    };
    // A day's worth of files, imported as they arrive within the hour.
    for i in 0..3000 {
        bucket.put(
            &format!("file-{i:05}-{}", "k".repeat(100)),
            t0 - TimeDelta::seconds(i),
        );
    }
    let s = h.run().await;
    assert_eq!(s.counts.imported, 3000, "{}", s.line());
    let in_window = size();
    // The files stop; the daemon runs daily for 30 days more, importing nothing.
    for _ in 0..31 {
        clock.advance(TimeDelta::days(1));
        let s = h.run().await;
        assert_eq!((s.counts.new, s.counts.failed), (0, 0), "{}", s.line());
    }
    let after = size();
    assert!(
        after * 4 <= in_window,
        "the state is {after} pages, {:.1}% of {in_window} when its files were in the window",
        after as f64 * 100.0 / in_window as f64
    );
}

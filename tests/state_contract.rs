//! The contract of `StateStore`: one suite, run unchanged against SQLite (a temporary file) and
//! PostgreSQL (a fresh database on the server `scripts/test` starts). Watermarks, the ledger,
//! the quarantine, runs, pending loads, staged candidates, retries, pruning, locks, claims and
//! the fleet's records behave the same on both; what only a shared store does (leases that
//! expire and are taken over, fenced commits) is tested on PostgreSQL below the suite.

mod common;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use s3_importd::formats::{RowError, RowFault};
use s3_importd::secret::Secret;
use s3_importd::select::ObjectMeta;
use s3_importd::state::postgres::PostgresStore;
use s3_importd::state::{
    Claim, CommitPlan, ConnectionState, LeaseLoss, Outcome, PendingLoad, Quarantined, RunCounts, RunRecord,
    Settled, SqliteStore, StateError, StateStore,
};
use std::sync::Arc;
use std::time::Duration;

/// Where a store lives; `open` gives a new store (a new process, as far as the store can
/// tell) on the same data.
enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(String, Duration),
}

impl Backend {
    fn sqlite() -> Backend {
        Backend::Sqlite(tempfile::tempdir().unwrap())
    }

    async fn postgres(ttl: Duration) -> Backend {
        Backend::Postgres(common::fresh_database("contract").await, ttl)
    }

    async fn open(&self) -> Arc<dyn StateStore> {
        match self {
            Backend::Sqlite(dir) => Arc::new(SqliteStore::open(&dir.path().join("sub/state.db")).unwrap()),
            Backend::Postgres(url, ttl) => Arc::new(
                PostgresStore::open(&Secret::new(url.clone()), *ttl)
                    .await
                    .unwrap(),
            ),
        }
    }
}

/// Runs one contract test against both stores.
async fn both<F, Fut>(test: F)
where
    F: Fn(Backend) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    test(Backend::sqlite()).await;
    test(Backend::postgres(Duration::from_secs(60)).await).await;
}

fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).unwrap()
}

fn settled(key: &str, etag: &str, ms: i64, outcome: Outcome) -> Settled {
    Settled {
        key: key.into(),
        etag: etag.into(),
        last_modified: at(ms),
        size: 1,
        stamp: Some(format!("stamp-{key}")),
        outcome,
        rows: 1,
        bad_rows: 0,
        reason: (outcome == Outcome::Rejected).then(|| "bad".to_string()),
    }
}

fn plan(run: &str, wm: i64, keys: &[&str]) -> CommitPlan {
    CommitPlan {
        connection: "c".into(),
        run_id: run.into(),
        settled: keys
            .iter()
            .map(|k| settled(k, "e1", wm, Outcome::Imported))
            .collect(),
        quarantine: vec![],
        watermark: Some(at(wm)),
    }
}

/// Takes a lock, waiting (bounded) for a release that happens in the background.
async fn lock_soon(store: &dyn StateStore, connection: &str) -> s3_importd::state::ConnectionLock {
    for _ in 0..100 {
        match store.lock(connection).await {
            Ok(lock) => return lock,
            Err(StateError::Busy { .. }) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("{e}"),
        }
    }
    panic!("{connection} stayed locked")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_recover_pending_loads_and_keep_the_watermark() {
    both(|b| async move {
        let store = b.open().await;
        assert_eq!(
            store.connection("c").await.unwrap(),
            ConnectionState {
                watermark: None,
                table_version: 1,
                floor: None,
            }
        );
        let lock = store.lock("c").await.unwrap();
        store.start_run("c", "r1", at(0)).await.unwrap();
        let pending = PendingLoad {
            run_id: "r1".into(),
            connection: "c".into(),
            delivery: serde_json::json!({"key": "k"}),
            plan: plan("r1", 5000, &["a", "b"]),
        };
        store.begin_load(&pending).await.unwrap();
        drop(lock);
        drop(store);

        // Another process finds the pending load, and commits it under its own lock.
        let store = b.open().await;
        let _lock = lock_soon(store.as_ref(), "c").await;
        assert_eq!(store.pending_loads("c").await.unwrap(), vec![pending.clone()]);
        assert_eq!(store.settled_among("c", &[("a", "e1")]).await.unwrap(), [false]);
        store.commit(&pending.plan).await.unwrap();
        assert!(store.pending_loads("c").await.unwrap().is_empty());
        assert_eq!(
            store
                .settled_among("c", &[("a", "e1"), ("a", "e2"), ("z", "e1"), ("b", "e1")])
                .await
                .unwrap(),
            [true, false, false, true]
        );
        assert_eq!(
            store
                .versions_by_stamp("c", &[("a", "stamp-a"), ("a", "other"), ("q", "stamp-q")])
                .await
                .unwrap(),
            [Some("e1".to_string()), None, None]
        );
        assert_eq!(store.connection("c").await.unwrap().watermark, Some(at(5000)));
        // The watermark never moves back.
        store.commit(&plan("r2", 1000, &[])).await.unwrap();
        assert_eq!(store.connection("c").await.unwrap().watermark, Some(at(5000)));
        // An event load's plan has none: its objects are settled, the watermark stays, and a
        // connection that never had one still has none.
        let mut event = plan("r3", 9000, &["e"]);
        event.watermark = None;
        store.commit(&event).await.unwrap();
        assert_eq!(store.connection("c").await.unwrap().watermark, Some(at(5000)));
        assert_eq!(store.settled_among("c", &[("e", "e1")]).await.unwrap(), [true]);
        event.connection = "fresh".into();
        let fresh = lock_soon(store.as_ref(), "fresh").await;
        store.commit(&event).await.unwrap();
        drop(fresh);
        assert_eq!(store.connection("fresh").await.unwrap().watermark, None);

        // A discarded load is gone; a load of another connection is not this one's.
        let mut other = pending.clone();
        other.run_id = "r9".into();
        store.begin_load(&other).await.unwrap();
        store.discard_load("r9").await.unwrap();
        assert!(store.pending_loads("c").await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_recorded_with_their_host_and_interrupted_runs_marked() {
    both(|b| async move {
        let store = b.open().await;
        store.start_run("c", "r1", at(1000)).await.unwrap();
        store
            .finish_run(&RunRecord {
                run_id: "r1".into(),
                connection: "c".into(),
                started_at: Some(at(1000)),
                finished_at: Some(at(2000)),
                outcome: "ok".into(),
                counts: RunCounts {
                    listed: 3,
                    new: 2,
                    imported: 2,
                    rows: 10,
                    bytes: 99,
                    ..RunCounts::default()
                },
                output: Some("out".into()),
                ..RunRecord::default()
            })
            .await
            .unwrap();
        store.start_run("c", "r2", at(3000)).await.unwrap();
        store.start_run("c", "r3", at(4000)).await.unwrap();
        let runs = store.runs("c", 10).await.unwrap();
        let outcomes: Vec<(&str, &str)> = runs
            .iter()
            .map(|r| (r.run_id.as_str(), r.outcome.as_str()))
            .collect();
        assert_eq!(outcomes, [("r3", "running"), ("r2", "interrupted"), ("r1", "ok")]);
        assert_eq!(runs[2].counts.rows, 10);
        assert_eq!(runs[2].output.as_deref(), Some("out"));
        assert_eq!(runs[2].finished_at, Some(at(2000)));
        assert!(runs.iter().all(|r| r.host == store.owner().host), "{runs:?}");
        assert_eq!(store.last_completed_run_start("c").await.unwrap(), Some(at(1000)));
        assert_eq!(store.runs("c", 1).await.unwrap().len(), 1);
        let overview = store.overview("c").await.unwrap();
        assert_eq!(overview.last_run.unwrap().run_id, "r3");
        assert_eq!(overview.last_import.unwrap().run_id, "r1");
        assert!(overview.last_error.is_none());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staged_candidates_come_back_in_import_order_page_by_page() {
    both(|b| async move {
        let store = b.open().await;
        let meta = |key: &str, ms: i64| ObjectMeta {
            key: key.into(),
            etag: format!("etag-{key}"),
            last_modified: at(ms) + TimeDelta::nanoseconds(7),
            size: 3,
            stamp: None,
        };
        // Byte order of keys at one time: "B" < "a" < "é" (a collation would say otherwise).
        let all = vec![
            meta("z", 1000),
            meta("B", 2000),
            meta("a", 2000),
            meta("é", 2000),
            meta("m", 3000),
        ];
        let mut shuffled = all.clone();
        shuffled.reverse();
        store.stage_candidates("r1", &shuffled[..2]).await.unwrap();
        store.stage_candidates("r1", &shuffled[2..]).await.unwrap();
        // The same object again keeps one.
        store.stage_candidates("r1", &all[..1]).await.unwrap();
        store.stage_candidates("r2", &all[..1]).await.unwrap();
        let mut read = Vec::new();
        let mut after: Option<ObjectMeta> = None;
        for _ in 0..10 {
            let page = store.staged_candidates("r1", after.as_ref(), 2).await.unwrap();
            if page.is_empty() {
                break;
            }
            after = page.last().cloned();
            read.extend(page);
        }
        assert_eq!(read, all);
        store.clear_candidates("r1").await.unwrap();
        assert!(store.staged_candidates("r1", None, 10).await.unwrap().is_empty());
        assert_eq!(store.staged_candidates("r2", None, 10).await.unwrap().len(), 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_retries_reset_and_pruning() {
    both(|b| async move {
        let store = b.open().await;
        let _lock = store.lock("c").await.unwrap();
        let day = TimeDelta::days(1).num_milliseconds();
        let bad = |line: u64| Quarantined {
            key: "k1".into(),
            etag: "e1".into(),
            error: RowError {
                line,
                field: Some("id".into()),
                reason: RowFault::Recorded(format!("reason {line}")),
                raw: "raw,row".into(),
            },
        };
        store
            .commit(&CommitPlan {
                connection: "c".into(),
                run_id: "r1".into(),
                settled: vec![
                    settled("old", "e1", 0, Outcome::Imported),
                    settled("old-bad", "e1", 0, Outcome::Rejected),
                    settled("k1", "e1", 10 * day, Outcome::Imported),
                ],
                quarantine: vec![bad(2), bad(5)],
                watermark: Some(at(10 * day)),
            })
            .await
            .unwrap();
        // Imported entries behind the overlap band are pruned; rejections stay.
        let ledger: Vec<String> = store
            .ledger("c")
            .await
            .unwrap()
            .into_iter()
            .map(|(k, _, _)| k)
            .collect();
        assert_eq!(ledger, ["old-bad", "k1"]);
        let rows = store.quarantine("c", 10).await.unwrap();
        assert_eq!(rows, vec![bad(5), bad(2)]);
        assert_eq!(store.quarantine("c", 1).await.unwrap(), vec![bad(5)]);
        let overview = store.overview("c").await.unwrap();
        assert_eq!((overview.ledger_size, overview.quarantined), (2, 2));

        // A run that reported the rejection: the last error until `retry` acknowledges it.
        store.start_run("c", "r-bad", at(10 * day)).await.unwrap();
        store
            .finish_run(&RunRecord {
                run_id: "r-bad".into(),
                connection: "c".into(),
                started_at: Some(at(10 * day)),
                finished_at: Some(at(10 * day)),
                outcome: "ok".into(),
                error: Some("old-bad: rejected: 2 bad rows".into()),
                ..RunRecord::default()
            })
            .await
            .unwrap();
        let before = store.overview("c").await.unwrap();
        assert_eq!(before.last_error.map(|r| r.run_id), Some("r-bad".to_string()));

        // retry: the named keys and every rejection, recorded until a commit settles them;
        // their quarantined rows go (the next run checks them again), and so does the last
        // error.
        let retry = store.retry("c", &["k1".to_string()], true).await.unwrap();
        assert_eq!(retry.keys, ["k1", "old-bad"]);
        assert_eq!(retry.forgotten, 2);
        let after = store.overview("c").await.unwrap();
        assert!(after.last_error.is_none(), "{:?}", after.last_error);
        assert_eq!(after.quarantined, 0);
        assert_eq!(store.retries("c").await.unwrap(), ["k1", "old-bad"]);
        store.commit(&plan("r2", 10 * day, &["k1"])).await.unwrap();
        assert_eq!(store.retries("c").await.unwrap(), ["old-bad"]);

        // reset: forgets since the date, moves the watermark back, raises the version.
        let reset = store.reset("c", at(5 * day)).await.unwrap();
        assert_eq!(reset.forgotten, 1);
        assert_eq!(
            reset.after,
            ConnectionState {
                watermark: Some(at(5 * day)),
                table_version: 2,
                floor: Some(at(5 * day)),
            }
        );
        // Both are refused while a load is pending.
        store
            .begin_load(&PendingLoad {
                run_id: "r3".into(),
                connection: "c".into(),
                delivery: serde_json::Value::Null,
                plan: plan("r3", 11 * day, &["x"]),
            })
            .await
            .unwrap();
        assert!(matches!(
            store.reset("c", at(0)).await,
            Err(StateError::PendingLoad { .. })
        ));
        assert!(matches!(
            store.retry("c", &[], true).await,
            Err(StateError::PendingLoad { .. })
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_of_a_connection_at_a_time_across_processes() {
    both(|b| async move {
        let first = b.open().await;
        let second = b.open().await;
        let held = first.lock("c").await.unwrap();
        assert!(matches!(second.lock("c").await, Err(StateError::Busy { .. })));
        assert!(matches!(first.lock("c").await, Err(StateError::Busy { .. })));
        let other = second.lock("d").await.unwrap();
        let leases: Vec<String> = second
            .leases()
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.connection)
            .collect();
        assert_eq!(leases, ["c", "d"]);
        // Released, a lock is free at once (dropped, a lease is given back in the background).
        held.release().await;
        let again = second.lock("c").await.expect("free once released");
        again.release().await;
        drop(other);
        let _soon = lock_soon(first.as_ref(), "d").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn occurrences_are_claimed_once_and_orphans_found() {
    both(|b| async move {
        let first = b.open().await;
        let second = b.open().await;
        let due = at(60_000);
        // A live daemon's claim holds (a dead one's may pass on: tested below, on PostgreSQL).
        first.heartbeat("aaaa", at(0)).await.unwrap();
        assert_eq!(first.claim_occurrence("c", due).await.unwrap(), Claim::Won);
        assert_eq!(first.claim_occurrence("c", due).await.unwrap(), Claim::Won);
        assert_eq!(
            second.claim_occurrence("c", due).await.unwrap(),
            Claim::Elsewhere {
                owner: first.owner().id.clone()
            }
        );
        assert_eq!(
            second.claim_occurrence("c", at(120_000)).await.unwrap(),
            Claim::Won
        );
        assert_eq!(second.claim_occurrence("d", due).await.unwrap(), Claim::Won);

        // A pending load nobody's lock covers is an orphan; under a lock it is not.
        {
            let _lock = first.lock("c").await.unwrap();
            first.start_run("c", "r1", at(0)).await.unwrap();
            first
                .begin_load(&PendingLoad {
                    run_id: "r1".into(),
                    connection: "c".into(),
                    delivery: serde_json::Value::Null,
                    plan: plan("r1", 1000, &["a"]),
                })
                .await
                .unwrap();
            assert!(second.orphaned().await.unwrap().is_empty());
        }
        let mut orphaned = Vec::new();
        for _ in 0..100 {
            orphaned = second.orphaned().await.unwrap();
            if !orphaned.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(orphaned, ["c"]);

        // Heartbeats: each daemon once, with the configuration it runs.
        first.heartbeat("aaaa", at(0)).await.unwrap();
        second.heartbeat("bbbb", at(0)).await.unwrap();
        first.heartbeat("cccc", at(0)).await.unwrap();
        let mut seen: Vec<(String, String)> = second
            .daemons(Utc::now() - TimeDelta::minutes(1))
            .await
            .unwrap()
            .into_iter()
            .map(|d| (d.id, d.config_hash))
            .collect();
        seen.sort();
        let mut want = vec![
            (first.owner().id.clone(), "cccc".to_string()),
            (second.owner().id.clone(), "bbbb".to_string()),
        ];
        want.sort();
        assert_eq!(seen, want);
        assert!(
            second
                .daemons(Utc::now() + TimeDelta::minutes(1))
                .await
                .unwrap()
                .is_empty()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_daemon_died_before_its_run_ended_passes_on_once() {
    let b = Backend::postgres(Duration::from_secs(5)).await;
    let (dead, alive) = (b.open().await, b.open().await);
    alive.heartbeat("h", at(0)).await.unwrap();
    let due = at(60_000);
    // A daemon that never beat (or stopped beating a TTL ago) and holds no lease.
    assert_eq!(dead.claim_occurrence("c", due).await.unwrap(), Claim::Won);
    assert_eq!(
        alive.lapsed_occurrences().await.unwrap(),
        [("c".to_string(), due)]
    );
    assert_eq!(
        alive.claim_occurrence("c", due).await.unwrap(),
        Claim::Retaken {
            from: dead.owner().id.clone()
        }
    );
    // Now a live daemon's: it holds.
    assert!(alive.lapsed_occurrences().await.unwrap().is_empty());
    assert_eq!(
        dead.claim_occurrence("c", due).await.unwrap(),
        Claim::Elsewhere {
            owner: alive.owner().id.clone()
        }
    );
    // A claim whose run reached its end holds, dead owner or not.
    let gone = b.open().await;
    assert_eq!(gone.claim_occurrence("d", due).await.unwrap(), Claim::Won);
    {
        let _lock = gone.lock("d").await.unwrap();
        gone.start_run("d", "r1", at(61_000)).await.unwrap();
        gone.finish_run(&RunRecord {
            run_id: "r1".into(),
            connection: "d".into(),
            started_at: Some(at(61_000)),
            finished_at: Some(at(62_000)),
            outcome: "failed".into(),
            ..RunRecord::default()
        })
        .await
        .unwrap();
    }
    assert!(alive.lapsed_occurrences().await.unwrap().is_empty());
    assert_eq!(
        alive.claim_occurrence("d", due).await.unwrap(),
        Claim::Elsewhere {
            owner: gone.owner().id.clone()
        }
    );
}

/// `state migrate`: what SQLite holds, PostgreSQL holds the same after an export and import.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_exported_from_sqlite_imports_into_postgres_unchanged() {
    let sqlite = Backend::sqlite();
    let postgres = Backend::postgres(Duration::from_secs(60)).await;
    let from = sqlite.open().await;
    let to = postgres.open().await;
    {
        let _lock = from.lock("c").await.unwrap();
        from.start_run("c", "r1", at(1000)).await.unwrap();
        let mut p = plan("r1", 5000, &["a", "b"]);
        p.settled.push(settled("x", "e2", 4000, Outcome::Rejected));
        p.quarantine.push(Quarantined {
            key: "x".into(),
            etag: "e2".into(),
            error: RowError {
                line: 3,
                field: None,
                reason: RowFault::Recorded("r".into()),
                raw: "w".into(),
            },
        });
        from.commit(&p).await.unwrap();
        from.retry("c", &["zz".to_string()], false).await.unwrap();
        from.begin_load(&PendingLoad {
            run_id: "r2".into(),
            connection: "c".into(),
            delivery: serde_json::json!({"key": "out"}),
            plan: plan("r2", 6000, &["q"]),
        })
        .await
        .unwrap();
    }
    let dump = from.export("c").await.unwrap();
    assert_eq!(dump.ledger.len(), 3);
    to.import(&dump).await.unwrap();
    assert_eq!(to.export("c").await.unwrap(), dump);
    // Importing twice replaces, never doubles.
    to.import(&dump).await.unwrap();
    assert_eq!(to.export("c").await.unwrap(), dump);
    assert_eq!(to.connection_names().await.unwrap(), ["c"]);
}

/// What only a shared store does: a lease its holder fails to renew (a paused process) is
/// taken over, and the old holder's next `begin_load` and `commit` are refused.
#[test]
fn a_paused_owner_loses_its_lease_and_cannot_commit() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let ttl = Duration::from_millis(1500);
    let backend = runtime.block_on(Backend::postgres(ttl));
    // The old owner lives on a runtime of one thread, which a blocking sleep pauses whole:
    // its renewals stop as a SIGSTOPped process's would.
    let paused = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let old = paused.block_on(backend.open());
    let lock = paused.block_on(old.lock("c")).unwrap();
    paused.block_on(old.start_run("c", "r1", at(0))).unwrap();
    paused.block_on(async {
        // Renewals keep the lease while the owner runs.
        tokio::time::sleep(ttl * 2).await;
    });
    let new = runtime.block_on(backend.open());
    assert!(matches!(
        runtime.block_on(new.lock("c")),
        Err(StateError::Busy { .. })
    ));
    std::thread::sleep(ttl + Duration::from_millis(500));
    let load = PendingLoad {
        run_id: "r1".into(),
        connection: "c".into(),
        delivery: serde_json::Value::Null,
        plan: plan("r1", 1000, &["late"]),
    };
    // Lapsed but not yet taken: the old owner is told it lost contact, not that another runs.
    assert!(matches!(
        paused.block_on(old.begin_load(&load)),
        Err(StateError::LeaseLost {
            loss: LeaseLoss::LostContact,
            ..
        })
    ));
    let taken = runtime
        .block_on(new.lock("c"))
        .expect("the expired lease is taken over");
    let held_by: Vec<String> = runtime
        .block_on(new.leases())
        .unwrap()
        .into_iter()
        .map(|l| l.owner)
        .collect();
    assert_eq!(held_by, [new.owner().id.clone()]);
    // The old owner wakes up: nothing it does is committed, and it is told who runs now.
    for refused in [
        paused.block_on(old.begin_load(&load)),
        paused.block_on(old.commit(&load.plan)),
    ] {
        let Err(e) = refused else {
            panic!("a lapsed lease committed")
        };
        assert!(
            matches!(
                e,
                StateError::LeaseLost {
                    loss: LeaseLoss::TakenOver,
                    ..
                }
            ),
            "{e}"
        );
    }
    assert_eq!(
        runtime
            .block_on(new.settled_among("c", &[("late", "e1")]))
            .unwrap(),
        [false]
    );
    // Its release does not free the new owner's lease.
    drop(lock);
    paused.block_on(async { tokio::time::sleep(Duration::from_millis(200)).await });
    assert!(matches!(
        paused.block_on(old.lock("c")),
        Err(StateError::Busy { .. })
    ));
    // The new owner commits.
    runtime.block_on(new.commit(&load.plan)).unwrap();
    assert_eq!(
        runtime
            .block_on(new.settled_among("c", &[("late", "e1")]))
            .unwrap(),
        [true]
    );
    drop(taken);
}

/// Daemons that start together against a new database all migrate it, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stores_opened_together_on_a_new_database_all_open() {
    let url = common::fresh_database("together").await;
    let opened = futures::future::join_all((0..6).map(|_| {
        let url = url.clone();
        tokio::spawn(async move {
            PostgresStore::open(&Secret::new(url), Duration::from_secs(60))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }))
    .await;
    for o in opened {
        o.unwrap().unwrap();
    }
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let versions: i64 = client
        .query_one("SELECT count(*) FROM s3_importd.refinery_schema_history", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(versions, 3, "every migration applied once");
    // A schema from a newer s3-importd is refused, naming the versions.
    client
        .batch_execute(
            "INSERT INTO s3_importd.refinery_schema_history (version, name, applied_on, checksum)
             VALUES (99, 'future', '2030-01-01T00:00:00Z', '0')",
        )
        .await
        .unwrap();
    let err = PostgresStore::open(&Secret::new(url), Duration::from_secs(60))
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(
            err,
            StateError::TooNew {
                found: 99,
                known: 3,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_ledger_pruned_whole_gives_its_space_back() {
    let backend = Backend::postgres(Duration::from_secs(60)).await;
    let Backend::Postgres(url, _) = &backend else {
        unreachable!()
    };
    let store = backend.open().await;
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let size = async || -> i64 {
        client
            .query_one("SELECT pg_relation_size('s3_importd.ledger')", &[])
            .await
            .unwrap()
            .get(0)
    };
    let keys: Vec<String> = (0..3000)
        .map(|i| format!("file-{i:05}-{}", "k".repeat(100)))
        .collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let day = 86_400_000;
    let _lock = store.lock("c").await.unwrap();
    store.commit(&plan("r1", 10 * day, &keys)).await.unwrap();
    let in_window = size().await;
    // Thirty days on, a run that imports nothing moves the watermark and prunes every entry.
    store.commit(&plan("r2", 40 * day, &[])).await.unwrap();
    let after = size().await;
    assert!(in_window > 0);
    assert!(
        after * 4 <= in_window,
        "the ledger holds {after} bytes, {in_window} when its files were in the window"
    );
}

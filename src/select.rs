//! Which listed objects a run imports (docs/design.md §4.2), as pure functions of their inputs.
//!
//! The run asks [`Window::for_run`] for the LastModified band, asks [`classify`] about each
//! listed object, checks the survivors against the ledger (the one question that needs the
//! state store), and at the end asks [`next_watermark`] how far it may move. Nothing here does
//! I/O or reads the clock: `now` is always passed in.

use chrono::{DateTime, TimeDelta, Utc};
use globset::GlobSet;
use std::fmt;

/// How far behind the watermark every run looks again. Versions that become visible late (a
/// multipart upload shows its initiation time as LastModified; a listing may lag a write) are
/// caught as long as they appear within this band; the ledger makes looking again harmless.
pub const OVERLAP: TimeDelta = TimeDelta::hours(24);

/// One object version as a source lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The full key (S3) or the path relative to the source folder (dir), `/`-separated.
    pub key: String,
    /// The ETag without quotes (S3) or a content hash (dir).
    pub etag: String,
    pub last_modified: DateTime<Utc>,
    pub size: u64,
    /// What tells this version apart without reading it, when the source has such a thing:
    /// `size:mtime_ns:inode` for a `dir` file (whose version is a hash of its content, costly
    /// to compute for every file of every run); none for S3, whose ETag is already cheap.
    pub stamp: Option<String>,
}

/// The LastModified band a run imports from: `lower ..= upper`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub lower: DateTime<Utc>,
    pub upper: DateTime<Utc>,
}

impl Window {
    /// `max(now - backfill, watermark - OVERLAP) ..= now - settle`.
    pub fn for_run(
        now: DateTime<Utc>,
        watermark: Option<DateTime<Utc>>,
        backfill: TimeDelta,
        settle: TimeDelta,
    ) -> Window {
        let oldest = now - backfill;
        let lower = match watermark {
            Some(w) => oldest.max(w - OVERLAP),
            None => oldest,
        };
        Window {
            lower,
            upper: now - settle,
        }
    }
}

impl Window {
    /// The window with its lower edge raised to `floor` (the `--since` of a `reset`), if any.
    pub fn not_before(self, floor: Option<DateTime<Utc>>) -> Window {
        Window {
            lower: floor.map_or(self.lower, |f| self.lower.max(f)),
            upper: self.upper,
        }
    }
}

/// Include and exclude globs, matched against the key below the source's prefix.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    /// `None` means everything is included.
    pub include: Option<GlobSet>,
    pub exclude: Option<GlobSet>,
}

impl Filters {
    /// Whether a key below the prefix passes the include and exclude globs.
    pub fn admits(&self, relative_key: &str) -> bool {
        let included = self.include.as_ref().is_none_or(|set| set.is_match(relative_key));
        let excluded = self
            .exclude
            .as_ref()
            .is_some_and(|set| set.is_match(relative_key));
        included && !excluded
    }
}

/// Why a listed object is not imported by this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// The key ends with `/`: a console "folder".
    FolderMarker,
    /// Zero bytes.
    Empty,
    /// Not matched by `include`, or matched by `exclude`.
    Excluded,
    /// LastModified before the window (outside the backfill or behind the watermark band).
    TooOld,
    /// LastModified within `settle_seconds` of now: possibly still being written.
    TooFresh,
    /// This (key, ETag) is already in the ledger.
    AlreadySettled,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SkipReason::FolderMarker => "folder marker",
            SkipReason::Empty => "empty",
            SkipReason::Excluded => "excluded by a glob",
            SkipReason::TooOld => "older than the backfill window or the last sync",
            SkipReason::TooFresh => "too fresh to settle",
            SkipReason::AlreadySettled => "already imported",
        })
    }
}

/// The verdict on one listed object before the ledger is consulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// In the window and admitted by the filters: import unless the ledger has it.
    Candidate,
    Skip(SkipReason),
}

/// Classifies one listed object. `prefix` is stripped from the key before the globs are
/// matched.
pub fn classify(meta: &ObjectMeta, prefix: &str, filters: &Filters, window: &Window) -> Verdict {
    if meta.key.ends_with('/') {
        return Verdict::Skip(SkipReason::FolderMarker);
    }
    if meta.size == 0 {
        return Verdict::Skip(SkipReason::Empty);
    }
    let relative = meta.key.strip_prefix(prefix).unwrap_or(&meta.key);
    if !filters.admits(relative) {
        return Verdict::Skip(SkipReason::Excluded);
    }
    if meta.last_modified < window.lower {
        return Verdict::Skip(SkipReason::TooOld);
    }
    if meta.last_modified > window.upper {
        return Verdict::Skip(SkipReason::TooFresh);
    }
    Verdict::Candidate
}

/// Where the watermark stands after a run. It moves to the window's upper edge, but never past
/// the LastModified of a candidate that failed (it must be looked at again) and never back.
pub fn next_watermark(
    before: Option<DateTime<Utc>>,
    window: &Window,
    failed: impl IntoIterator<Item = DateTime<Utc>>,
) -> DateTime<Utc> {
    let reach = failed.into_iter().fold(window.upper, |reach, lm| reach.min(lm));
    match before {
        Some(b) => b.max(reach),
        None => reach,
    }
}

/// Sorts candidates into the order a run processes and delivers them: oldest first, then by
/// key, so that output files are deterministic.
pub fn order(candidates: &mut [ObjectMeta]) {
    candidates.sort_by(|a, b| {
        a.last_modified
            .cmp(&b.last_modified)
            .then_with(|| a.key.cmp(&b.key))
    });
}

/// The order in which `preview` and `template infer` look at objects: newest LastModified
/// first, to the second as S3 reports it, and among objects of the same second (files a
/// partner exports together, or checked out together into a `dir` source, whose mtimes differ
/// by nanoseconds) the first by key, as a listing shows them.
pub fn newest_first(a: &ObjectMeta, b: &ObjectMeta) -> std::cmp::Ordering {
    b.last_modified
        .timestamp()
        .cmp(&a.last_modified.timestamp())
        .then_with(|| a.key.cmp(&b.key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use globset::{Glob, GlobSetBuilder};

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0).unwrap()
    }

    fn set(globs: &[&str]) -> Option<GlobSet> {
        let mut b = GlobSetBuilder::new();
        for g in globs {
            b.add(Glob::new(g).unwrap());
        }
        Some(b.build().unwrap())
    }

    fn meta(key: &str, lm: i64, size: u64) -> ObjectMeta {
        ObjectMeta {
            key: key.into(),
            etag: "e".into(),
            last_modified: t(lm),
            size,
            stamp: None,
        }
    }

    #[test]
    fn window_table() {
        let day = TimeDelta::days(1);
        let cases = [
            // first run: backfill bounds it
            (
                t(0),
                None,
                TimeDelta::days(90),
                TimeDelta::seconds(60),
                t(0) - day * 90,
                t(-60),
            ),
            // watermark recent: the overlap band bounds it
            (
                t(0),
                Some(t(-3600)),
                TimeDelta::days(90),
                TimeDelta::zero(),
                t(-3600) - OVERLAP,
                t(0),
            ),
            // watermark ancient: backfill still bounds it
            (
                t(0),
                Some(t(0) - day * 200),
                TimeDelta::days(90),
                TimeDelta::zero(),
                t(0) - day * 90,
                t(0),
            ),
        ];
        for (now, wm, backfill, settle, lower, upper) in cases {
            assert_eq!(
                Window::for_run(now, wm, backfill, settle),
                Window { lower, upper }
            );
        }
    }

    #[test]
    fn classify_table() {
        let w = Window {
            lower: t(-100),
            upper: t(0),
        };
        let filters = Filters {
            include: set(&["*.csv", "*.csv.gz"]),
            exclude: set(&["tmp/**"]),
        };
        use SkipReason::*;
        let cases = [
            (meta("p/a.csv", -50, 10), Verdict::Candidate),
            (meta("p/sub/a.csv", -50, 10), Verdict::Candidate),
            (meta("p/a.csv.gz", -100, 10), Verdict::Candidate),
            (meta("p/a.csv", 0, 10), Verdict::Candidate),
            (meta("p/folder/", -50, 0), Verdict::Skip(FolderMarker)),
            (meta("p/a.csv", -50, 0), Verdict::Skip(Empty)),
            (meta("p/a.json", -50, 10), Verdict::Skip(Excluded)),
            (meta("p/tmp/a.csv", -50, 10), Verdict::Skip(Excluded)),
            (meta("p/a.csv", -101, 10), Verdict::Skip(TooOld)),
            (meta("p/a.csv", 1, 10), Verdict::Skip(TooFresh)),
        ];
        for (m, want) in cases {
            assert_eq!(classify(&m, "p/", &filters, &w), want, "{m:?}");
        }
        // No filters admit everything.
        assert_eq!(
            classify(&meta("p/x.bin", -1, 1), "p/", &Filters::default(), &w),
            Verdict::Candidate
        );
    }

    #[test]
    fn watermark_table() {
        let w = Window {
            lower: t(-100),
            upper: t(0),
        };
        type Case = (Option<DateTime<Utc>>, Vec<DateTime<Utc>>, DateTime<Utc>);
        let cases: [Case; 5] = [
            (None, vec![], t(0)),
            (Some(t(-50)), vec![], t(0)),
            // a failure holds the watermark at its LastModified
            (Some(t(-80)), vec![t(-30), t(-40)], t(-40)),
            // ... but never moves it back
            (Some(t(-20)), vec![t(-40)], t(-20)),
            // a later edge than the window (settle_seconds raised) never moves it back either
            (Some(t(10)), vec![], t(10)),
        ];
        for (before, failed, want) in cases {
            assert_eq!(
                next_watermark(before, &w, failed.clone()),
                want,
                "{before:?} {failed:?}"
            );
        }
    }

    #[test]
    fn newest_first_breaks_ties_by_the_first_key() {
        // (key, LastModified second) of each object → the keys newest first.
        type Case = (&'static [(&'static str, i64)], &'static [&'static str]);
        let cases: &[Case] = &[
            (&[("a.csv", 1), ("b.csv", 2)], &["b.csv", "a.csv"]),
            // One second: the listing's first key leads.
            (
                &[("products.jsonl", 5), ("products.csv", 5)],
                &["products.csv", "products.jsonl"],
            ),
            (&[("z", 9), ("b", 5), ("a", 5)], &["z", "a", "b"]),
        ];
        // Nanoseconds apart are the same second.
        let mut close = [meta("products.jsonl", 5, 1), meta("products.csv", 5, 1)];
        close[0].last_modified += chrono::TimeDelta::nanoseconds(80);
        close.sort_by(newest_first);
        assert_eq!(close[0].key, "products.csv");
        for (objects, expected) in cases {
            let mut metas: Vec<ObjectMeta> = objects.iter().map(|(k, lm)| meta(k, *lm, 1)).collect();
            metas.sort_by(newest_first);
            let keys: Vec<&str> = metas.iter().map(|m| m.key.as_str()).collect();
            assert_eq!(&keys, expected, "{objects:?}");
        }
    }
}

//! Progressive loads (issue 14): a run delivers and commits in loads bounded by
//! `load_max_objects` and `load_max_bytes`, and the rows delivered are exactly those of one
//! big load.

mod common;

use common::*;

/// Imports the same folder of JSON Lines files with the given settings (`s3-importd.toml`)
/// and connection keys; returns the output files' line counts (largest first) and every row.
fn import(
    settings: &str,
    connection_keys: &str,
    objects: usize,
    rows_each: usize,
) -> (Vec<usize>, Vec<serde_json::Value>) {
    let cfg = ConfigDir::new();
    std::fs::write(
        cfg.path().join("s3-importd.toml"),
        format!("state = \"state/state.db\"\nmax_concurrent_objects = 1\n{settings}"),
    )
    .unwrap();
    let inbox = cfg.path().join("in/big");
    std::fs::create_dir_all(&inbox).unwrap();
    let pad = "x".repeat(200);
    for i in 0..objects {
        let body: String = (0..rows_each)
            .map(|r| format!("{{\"id\": \"{i}-{r}\", \"pad\": \"{pad}\"}}\n"))
            .collect();
        std::fs::write(inbox.join(format!("{i:03}.jsonl")), body).unwrap();
    }
    let toml = dir_connection_toml(
        "big",
        "table = \"items\"\nunknown_fields = \"keep\"\n[[template.fields]]\nname = \"id\"\nrequired = true",
        "type = \"file\"\npath = \"out\"",
    );
    cfg.connection("big", &format!("{connection_keys}{toml}"));
    let out = stdout_of(&run_binary(cfg.path(), &["run"]));
    assert!(out.contains(&format!("imported {objects}")), "{out}");
    let mut lines: Vec<usize> = output_files(&cfg.out())
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap().lines().count())
        .collect();
    lines.sort_unstable_by(|a, b| b.cmp(a));
    let mut rows = cfg.rows();
    for row in &mut rows {
        // When a row was loaded differs between the two imports; what it holds may not.
        row.as_object_mut().unwrap().remove("_loaded_at");
    }
    rows.sort_by_key(|r| r.to_string());
    (lines, rows)
}

#[test]
fn loads_bounded_by_bytes_deliver_exactly_the_rows_of_one_load() {
    // 2,000 rows of 300 to 380 bytes spooled: 0.6 to 0.76 MB an object, so a 1 MiB load
    // closes after its second object (the limit is checked as each object starts).
    let (one, all_rows) = import("", "", 5, 2000);
    assert_eq!(one, [10_000]);
    let (bounded, bounded_rows) = import("load_max_bytes = 1048576\n", "", 5, 2000);
    assert_eq!(bounded, [4000, 4000, 2000]);
    assert_eq!(bounded_rows, all_rows);
}

#[test]
fn a_connection_sets_its_own_load_sizes_over_the_settings() {
    // The settings' sizes hold every object in one load; the connection's own win.
    let generous = "load_max_objects = 100\nload_max_bytes = \"1GiB\"\n";
    let (one, all_rows) = import(generous, "", 5, 200);
    assert_eq!(one, [1000]);
    let (by_bytes, rows) = import(generous, "load_max_bytes = \"1MiB\"\n", 5, 2000);
    assert_eq!(by_bytes, [4000, 4000, 2000]);
    let (by_count, by_count_rows) = import(generous, "load_max_objects = 2\n", 5, 200);
    assert_eq!(by_count, [400, 400, 200]);
    assert_eq!(by_count_rows, all_rows);
    assert_eq!(rows.len(), 10_000);
}

/// The `hashed=` count of the listing's debug event.
fn hashed(stderr: &[u8]) -> u64 {
    let log = text(stderr);
    log.lines()
        .find(|l| l.contains("folder listed"))
        .and_then(|l| l.split("hashed=").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no listing event in {log}"))
}

#[test]
fn a_dir_source_hashes_only_files_whose_size_mtime_ctime_or_inode_changed() {
    let cfg = ConfigDir::new();
    let inbox = cfg.path().join("in/drop");
    std::fs::create_dir_all(&inbox).unwrap();
    for i in 0..5 {
        std::fs::write(inbox.join(format!("{i}.jsonl")), format!("{{\"id\": \"{i}\"}}\n")).unwrap();
    }
    cfg.connection(
        "drop",
        &dir_connection_toml("drop", ID_TEMPLATE, "type = \"file\"\npath = \"out\""),
    );
    let run = || {
        let out = binary(cfg.path())
            .env("S3_IMPORTD_LOG", "s3_importd=debug")
            .arg("run")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        (text(&out.stdout), hashed(&out.stderr))
    };
    let (out, n) = run();
    assert!(out.contains("imported 5"), "{out}");
    assert_eq!(n, 5);
    // Nothing changed: nothing is read.
    let (out, n) = run();
    assert!(out.contains("new 0"), "{out}");
    assert_eq!(n, 0);

    // Rewritten in place with the same size, its mtime set back: the ctime gives it away.
    let file = inbox.join("1.jsonl");
    let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
    std::fs::write(&file, "{\"id\": \"X\"}\n").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    // Replaced by a copy with the same bytes (a new inode): hashed, and not imported again.
    let copy = inbox.join(".2.tmp");
    std::fs::copy(inbox.join("2.jsonl"), &copy).unwrap();
    std::fs::rename(&copy, inbox.join("2.jsonl")).unwrap();
    let (out, n) = run();
    assert_eq!(n, 2);
    assert!(out.contains("new 1, imported 1"), "{out}");
    let mut ids = cfg.ids();
    ids.sort();
    assert_eq!(ids, ["0", "1", "2", "3", "4", "X"]);
}

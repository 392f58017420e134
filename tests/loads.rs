//! Progressive loads (issue 14): a run delivers and commits in loads bounded by
//! `load_max_objects` and `load_max_bytes`, and the rows delivered are exactly those of one
//! big load.

mod common;

use common::*;

/// Imports the same folder of JSON Lines files with the given settings; returns the output
/// files' line counts (largest first) and every row.
fn import(settings: &str, objects: usize, rows_each: usize) -> (Vec<usize>, Vec<serde_json::Value>) {
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
    cfg.connection(
        "big",
        &dir_connection_toml(
            "big",
            "table = \"items\"\nunknown_fields = \"keep\"\n[[template.fields]]\nname = \"id\"\nrequired = true",
            "type = \"file\"\npath = \"out\"",
        ),
    );
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
    let (one, all_rows) = import("", 5, 2000);
    assert_eq!(one, [10_000]);
    let (bounded, bounded_rows) = import("load_max_bytes = 1048576\n", 5, 2000);
    assert_eq!(bounded, [4000, 4000, 2000]);
    assert_eq!(bounded_rows, all_rows);
}

//! The operator's commands of issue 16: `status` showing the last run that delivered rows
//! apart from the last run and the run history with `--runs N`; `retry` of rejected files.

mod common;

use common::*;

#[test]
fn status_shows_the_last_import_apart_from_the_last_run_and_the_run_history() {
    let cfg = ConfigDir::new();
    cfg.inbox(
        "hist",
        &[("a.jsonl", "{\"id\": \"a\"}\n{\"id\": \"b\"}\n".as_bytes())],
    );
    cfg.connection(
        "hist",
        &dir_connection_toml("hist", ID_TEMPLATE, "type = \"file\"\npath = \"out\""),
    );
    for _ in 0..3 {
        let out = run_binary(cfg.path(), &["run"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    // The last run found nothing new; the import two runs ago is still shown.
    let status = stdout_of(&run_binary(cfg.path(), &["status", "hist", "--runs", "3"]));
    let lines: Vec<&str> = status.lines().collect();
    let last_run = lines.iter().find(|l| l.starts_with("  last run ")).unwrap();
    assert!(last_run.contains("new 0, imported 0"), "{status}");
    let last_import = lines.iter().find(|l| l.starts_with("  last import ")).unwrap();
    assert!(
        last_import.contains("new 1, imported 1") && last_import.contains("rows 2"),
        "{status}"
    );
    assert!(last_import.contains("; output "), "{status}");
    let at = lines
        .iter()
        .position(|l| *l == "  last 3 runs, latest first:")
        .unwrap();
    let history: Vec<&&str> = lines[at + 1..]
        .iter()
        .take_while(|l| l.starts_with("    "))
        .collect();
    assert_eq!(history.len(), 3, "{status}");
    assert!(history[2].contains("imported 1"), "{status}");

    let json = stdout_of(&run_binary(
        cfg.path(),
        &["status", "hist", "--json", "--runs", "2"],
    ));
    let json: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(json["runs"].as_array().unwrap().len(), 2);
    assert_eq!(json["last_import"]["rows"], 2);
    assert_eq!(json["last_run"]["rows"], 0);
}

#[test]
fn retry_imports_a_rejected_file_again_once_however_old_it_is() {
    let cfg = ConfigDir::new();
    let inbox = cfg.path().join("in/r");
    std::fs::create_dir_all(&inbox).unwrap();
    let file = inbox.join("old.jsonl");
    std::fs::write(
        &file,
        "{\"id\": \"a\"}\n{\"nope\": 1}\n{\"id\": \"c\"}\n{\"id\": \"d\"}\n",
    )
    .unwrap();
    // Modified five days ago: outside the next runs' window once the watermark moves on.
    let five_days_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(5 * 86_400);
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(five_days_ago)
        .unwrap();
    let connection = |limit: &str| {
        let template = format!(
            "table = \"items\"\nmax_bad_rows = \"{limit}\"\n[[template.fields]]\nname = \"id\"\nrequired = true"
        );
        dir_connection_toml("r", &template, "type = \"file\"\npath = \"out\"")
            .replace("settle_seconds = 0", "settle_seconds = 0\nbackfill_days = 30")
    };
    cfg.connection("r", &connection("1%"));
    let out = stdout_of(&run_binary(cfg.path(), &["run"]));
    assert!(out.contains("imported 0, rejected 1"), "{out}");

    // Loosened: the file is too old for the window, and settled anyway.
    cfg.connection("r", &connection("1"));
    let out = stdout_of(&run_binary(cfg.path(), &["run"]));
    assert!(out.contains("new 0, imported 0"), "{out}");

    let status = |cfg: &ConfigDir| -> serde_json::Value {
        let out = stdout_of(&run_binary(cfg.path(), &["status", "r", "--json"]));
        serde_json::from_str(out.lines().next().unwrap()).unwrap()
    };
    let before = status(&cfg);
    assert!(
        before["last_error"]["error"]
            .as_str()
            .unwrap()
            .contains("old.jsonl"),
        "{before}"
    );
    assert_eq!(before["quarantined_rows"], 1, "{before}");

    let out = stdout_of(&run_binary(cfg.path(), &["retry", "r", "--rejected"]));
    assert!(
        out.contains("the next run imports 1 object again (forgot 1 ledger entry):\n  old.jsonl"),
        "{out}"
    );
    // The rejection is acknowledged: no last error, and its quarantined row is gone until the
    // next run checks the file again.
    let after = status(&cfg);
    assert_eq!(after["last_error"], serde_json::Value::Null, "{after}");
    assert_eq!(after["quarantined_rows"], 0, "{after}");
    let text_status = stdout_of(&run_binary(cfg.path(), &["status", "r"]));
    assert!(text_status.contains("  last error: none\n"), "{text_status}");

    let out = stdout_of(&run_binary(cfg.path(), &["run"]));
    assert!(out.contains("new 1, imported 1, rejected 0"), "{out}");
    let imported = status(&cfg);
    assert_eq!(imported["last_error"], serde_json::Value::Null, "{imported}");
    // The row that is still bad is quarantined again, once.
    assert_eq!(imported["quarantined_rows"], 1, "{imported}");
    let out = stdout_of(&run_binary(cfg.path(), &["run"]));
    assert!(out.contains("new 0, imported 0"), "{out}");
    let mut ids = cfg.ids();
    ids.sort();
    assert_eq!(ids, ["a", "c", "d"]);
    let nothing = stdout_of(&run_binary(cfg.path(), &["retry", "r", "--rejected"]));
    assert!(nothing.contains("no rejected objects"), "{nothing}");
}

#[test]
fn a_disabled_connection_runs_only_with_force() {
    let cfg = ConfigDir::new();
    cfg.inbox("off", &[("a.jsonl", "{\"id\": \"a\"}\n".as_bytes())]);
    cfg.connection(
        "off",
        &format!(
            "enabled = false\n{}",
            dir_connection_toml("off", ID_TEMPLATE, "type = \"file\"\npath = \"out\"")
        ),
    );
    let refused = run_binary(cfg.path(), &["run", "off"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("error: off is disabled (enabled = false in connections/off.toml); set enabled = true, or run it once anyway with --force"),
        "{}",
        text(&refused.stderr)
    );
    assert!(cfg.ids().is_empty());
    let dry = run_binary(cfg.path(), &["run", "off", "--dry-run"]);
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    let out = stdout_of(&run_binary(cfg.path(), &["run", "off", "--force"]));
    assert!(out.contains("imported 1"), "{out}");
    assert_eq!(cfg.ids(), ["a"]);
}

/// `preview` of files written in the same second takes the first by key; once everything is
/// imported it still shows the newest file, marked as already imported, with the verdict a
/// run would reach were it new.
#[test]
fn preview_shows_the_newest_file_even_when_nothing_is_left_to_import() {
    let cfg = ConfigDir::new();
    let inbox = cfg.inbox(
        "p",
        &[
            ("b.jsonl", b"{\"id\": \"b1\"}\n".as_slice()),
            (
                "a.jsonl",
                b"{\"id\": \"a1\"}\n{\"nope\": 1}\n{\"id\": \"a3\"}\n".as_slice(),
            ),
        ],
    );
    // One second, a few nanoseconds apart: the first key leads.
    let second = std::time::UNIX_EPOCH
        + std::time::Duration::from_secs(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                - 60,
        );
    for (file, nanos) in [("a.jsonl", 1), ("b.jsonl", 900)] {
        std::fs::File::options()
            .write(true)
            .open(inbox.join(file))
            .unwrap()
            .set_modified(second + std::time::Duration::from_nanos(nanos))
            .unwrap();
    }
    let template = ID_TEMPLATE.replace("table = \"items\"", "table = \"items\"\nmax_bad_rows = \"50%\"");
    cfg.connection(
        "p",
        &dir_connection_toml("p", &template, "type = \"file\"\npath = \"out\""),
    );
    let before = stdout_of(&run_binary(cfg.path(), &["preview", "p"]));
    assert!(before.contains("first rows of a.jsonl (the newest)"), "{before}");
    assert!(
        before.contains("line 2 field id: required value is missing"),
        "{before}"
    );
    assert!(
        before.contains("\nverdict: the file would be imported: 2 good rows, 1 bad"),
        "{before}"
    );

    let out = stdout_of(&run_binary(cfg.path(), &["run"]));
    assert!(out.contains("imported 2"), "{out}");
    let after = stdout_of(&run_binary(cfg.path(), &["preview", "p"]));
    assert!(
        after.contains("the next run would import 0, and skip 2"),
        "{after}"
    );
    assert!(
        after.contains("nothing to import; first rows of a.jsonl (the newest file, already imported)"),
        "{after}"
    );
    assert!(
        after.contains("\nverdict, were it imported again: the file would be imported: 2 good rows, 1 bad"),
        "{after}"
    );
}

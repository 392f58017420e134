//! `status` (issue 16): the last run that delivered rows shown apart from the last run, and
//! the run history with `--runs N`.

mod common;

use common::*;

#[test]
fn status_shows_the_last_import_apart_from_the_last_run_and_the_run_history() {
    let cfg = ConfigDir::new();
    let inbox = cfg.path().join("in/hist");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::write(inbox.join("a.jsonl"), "{\"id\": \"a\"}\n{\"id\": \"b\"}\n").unwrap();
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

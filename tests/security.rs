//! What a partner's files reach (issue 13): a link in a `dir` drop folder delivers nothing
//! from outside the folder, neither as rows nor into the quarantine.

mod common;

use common::*;

#[test]
fn a_link_out_of_a_drop_folder_delivers_nothing() {
    let cfg = ConfigDir::new();
    let inbox = cfg.path().join("in/drop");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::write(
        cfg.path().join("secret"),
        "{\"id\": \"root:$6$hash\"}\nnot json: root:$6$other\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(cfg.path().join("secret"), inbox.join("passwd.jsonl")).unwrap();
    std::fs::write(inbox.join("a.jsonl"), "{\"id\": \"a\"}\n").unwrap();
    for follow in ["false", "true"] {
        let toml = dir_connection_toml("drop", ID_TEMPLATE, "type = \"file\"\npath = \"out\"").replace(
            "path = \"in/drop\"",
            &format!("path = \"in/drop\"\nfollow_symlinks = {follow}"),
        );
        cfg.connection("drop", &toml);
        let out = run_binary(cfg.path(), &["run"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("symbolic links skipped"),
            "{}",
            text(&out.stderr)
        );
        let status = stdout_of(&run_binary(cfg.path(), &["status", "drop"]));
        assert!(!status.contains("root:"), "{status}");
    }
    assert_eq!(cfg.ids(), ["a"]);
    for file in output_files(&cfg.out()) {
        assert!(!std::fs::read_to_string(file).unwrap().contains("root:"));
    }
}

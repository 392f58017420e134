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

#[test]
fn a_key_with_line_breaks_and_escape_sequences_is_escaped_in_every_text_output() {
    let cfg = ConfigDir::new();
    let inbox = cfg.path().join("in/keys");
    std::fs::create_dir_all(&inbox).unwrap();
    let name = "a\n2026-11-30T00:00:00Z  INFO forged: all good\u{1b}[2J\u{1b}]0;owned\u{7}.jsonl";
    std::fs::write(
        inbox.join(name),
        "{\"id\": \"x\u{1b}[31mred\"}\nnot json\u{1b}[2J\n",
    )
    .unwrap();
    let template =
        "table = \"items\"\nmax_bad_rows = \"0\"\n[[template.fields]]\nname = \"id\"\nrequired = true";
    cfg.connection(
        "keys",
        &dir_connection_toml("keys", template, "type = \"file\"\npath = \"out\""),
    );
    let outputs = [
        run_binary(cfg.path(), &["preview", "keys"]),
        run_binary(cfg.path(), &["run"]),
        run_binary(cfg.path(), &["status", "keys"]),
    ];
    for out in &outputs {
        for (what, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            let shown = text(bytes);
            assert!(
                !shown.contains('\u{1b}') && !shown.contains('\u{7}'),
                "{what}: {shown:?}"
            );
            assert!(
                !shown.lines().any(|l| l.starts_with("2026-11-30T00:00:00Z")),
                "{what}: a forged line: {shown}"
            );
        }
    }
    let status = text(&outputs[2].stdout);
    assert!(
        status.contains("a\\n2026-11-30T00:00:00Z  INFO forged"),
        "{status}"
    );
    assert!(status.contains("not json\\u{1b}[2J"), "{status}");
}

/// The mode bits of a path.
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn files_are_private_whatever_the_umask_and_outputs_follow_file_mode() {
    let cfg = ConfigDir::new();
    std::fs::create_dir_all(cfg.path().join("in/modes")).unwrap();
    std::fs::write(cfg.path().join("in/modes/a.jsonl"), "{\"id\": \"a\"}\n").unwrap();
    std::fs::write(cfg.path().join("in/modes/b.jsonl"), "{\"id\": \"b\"}\n").unwrap();
    let run = |target: &str| {
        cfg.connection("modes", &dir_connection_toml("modes", ID_TEMPLATE, target));
        // umask 000: every mode below is set by s3-importd itself.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg("umask 000; exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_s3-importd"))
            .arg("--config")
            .arg(cfg.path())
            .arg("run")
            .output()
            .unwrap();
        stdout_of(&out)
    };
    run("type = \"file\"\npath = \"out\"");
    let state = cfg.path().join("state");
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("state.db")), 0o600);
    assert_eq!(mode(&state.join("locks")), 0o700);
    assert_eq!(mode(&state.join("locks/modes.lock")), 0o600);
    assert_eq!(mode(&state.join("spool")), 0o700);
    let outputs = output_files(&cfg.out());
    assert_eq!(outputs.len(), 1);
    assert_eq!(mode(&outputs[0]), 0o600);
    assert_eq!(mode(outputs[0].parent().unwrap()), 0o700);

    // file_mode for consumers in the file's group; a new version of the objects is a new load.
    std::fs::remove_dir_all(cfg.out()).unwrap();
    run("type = \"file\"\npath = \"out\"\nfile_mode = \"0640\"");
    std::fs::write(cfg.path().join("in/modes/a.jsonl"), "{\"id\": \"a2\"}\n").unwrap();
    run("type = \"file\"\npath = \"out\"\nfile_mode = \"0640\"");
    let outputs = output_files(&cfg.out());
    assert_eq!(outputs.len(), 1, "{outputs:?}");
    assert_eq!(mode(&outputs[0]), 0o640);
    assert_eq!(mode(outputs[0].parent().unwrap()), 0o750);
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_with_control_characters_plus_signs_and_spaces_are_listed_and_read_exactly() {
    let client = s3();
    let b = bucket(&client, "oddkeys").await;
    // \u{1} cannot appear in XML 1.0: without encoding-type=url the page is unreadable.
    let keys = [
        "in/a\u{1}b.jsonl",
        "in/a+b.jsonl",
        "in/a b.jsonl",
        "in/%41.jsonl",
        "in/été.jsonl",
    ];
    for (i, key) in keys.iter().enumerate() {
        put(&client, &b, key, format!("{{\"id\": \"{i}\"}}\n")).await;
    }
    let cfg = ConfigDir::new();
    cfg.connection("odd", &s3_connection(&b, "in/", ""));
    let path = cfg.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || run_binary(&path, &["run"]))
        .await
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut ids = cfg.ids();
    ids.sort();
    assert_eq!(ids, ["0", "1", "2", "3", "4"]);
    let mut sources: Vec<String> = cfg
        .rows()
        .iter()
        .map(|row| row["_source_key"].as_str().unwrap_or_default().to_string())
        .collect();
    sources.sort();
    let mut want: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    want.sort();
    assert_eq!(sources, want);
}

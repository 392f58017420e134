//! Targets end to end against real servers: the `s3` destination on moto (key layout, CSV with
//! each delimiter and `quote_all`, multipart uploads, a kill mid-upload), and the `file`
//! target's CSV output.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::Duration;

/// A connection over a `dir` inbox (one JSONL file of `rows` ids) into the `[target]` body.
fn connection(cfg: &ConfigDir, name: &str, rows: &[String], target: &str) {
    let inbox = cfg.path().join("in").join(name);
    std::fs::create_dir_all(&inbox).unwrap();
    let body: String = rows
        .iter()
        .map(|id| format!("{{\"id\": \"{id}\", \"price\": \"1.50\", \"note\": \"a, \\\"b\\\"\"}}\n"))
        .collect();
    std::fs::write(inbox.join("rows.jsonl"), body).unwrap();
    let template = format!(
        "{ID_TEMPLATE}\n[[template.fields]]\nname = \"price\"\ntype = \"decimal\"\n[[template.fields]]\nname = \"note\""
    );
    cfg.connection(name, &dir_connection_toml(name, &template, target));
}

fn s3_target(bucket: &str, extra: &str) -> String {
    format!(
        "type = \"s3\"\nbucket = \"{bucket}\"\nregion = \"us-east-1\"\nprefix = \"loads/\"\nendpoint = \"{}\"\nforce_path_style = true\n{extra}\n",
        moto()
    )
}

/// Every object under `prefix`: (key, body).
async fn objects(client: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let listed = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .send()
        .await
        .unwrap();
    let mut out = Vec::new();
    for o in listed.contents() {
        let key = o.key().unwrap().to_string();
        let body = client.get_object().bucket(bucket).key(&key).send().await.unwrap();
        out.push((key, body.body.collect().await.unwrap().into_bytes().to_vec()));
    }
    out
}

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("id-{i:06}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_destination_key_layout_and_csv_options() {
    let client = s3();
    let b = bucket(&client, "dest").await;
    let cfg = ConfigDir::new();
    connection(&cfg, "jsonl", &ids(2), &s3_target(&b, ""));
    connection(&cfg, "comma", &ids(2), &s3_target(&b, "format = \"csv\""));
    connection(
        &cfg,
        "pipe",
        &ids(2),
        &s3_target(&b, "format = \"csv\"\ndelimiter = \"|\""),
    );
    connection(
        &cfg,
        "tab",
        &ids(2),
        &s3_target(&b, "format = \"csv\"\ndelimiter = \"\\t\""),
    );
    connection(
        &cfg,
        "quoted",
        &ids(2),
        &s3_target(&b, "format = \"csv\"\nquote_all = true"),
    );
    let out = stdout_of(&run_binary(cfg.path(), &["run"]));
    for name in ["jsonl", "comma", "pipe", "tab", "quoted"] {
        assert!(
            out.contains(&format!("{name}: listed 1, new 1, imported 1")),
            "{out}"
        );
        assert!(
            out.contains(&format!("output s3://{b}/loads/{name}/items/1/")),
            "{out}"
        );
    }
    let all = objects(&client, &b, "loads/").await;
    assert_eq!(all.len(), 5, "one object per load");
    let body = |name: &str| -> String {
        let (key, body) = all
            .iter()
            .find(|(k, _)| k.starts_with(&format!("loads/{name}/")))
            .unwrap();
        let re = regex::Regex::new(&format!(r"^loads/{name}/items/1/\d{{10}}\.(jsonl|csv)$")).unwrap();
        assert!(re.is_match(key), "{key}");
        String::from_utf8(body.clone()).unwrap()
    };
    let jsonl: Vec<Value> = body("jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(jsonl[1]["id"], json!("id-000001"));
    assert_eq!(jsonl[1]["price"], json!("1.50"));

    let first_lines = |name: &str| body(name).lines().take(2).map(str::to_string).collect::<Vec<_>>();
    let comma = first_lines("comma");
    assert_eq!(comma[0], "id,price,note,_source_key,_source_version,_source_line");
    assert!(
        comma[1].starts_with("id-000000,1.50,\"a, \"\"b\"\"\",rows.jsonl,"),
        "{}",
        comma[1]
    );
    assert!(comma[1].ends_with(",1"), "{}", comma[1]);
    let pipe = first_lines("pipe");
    assert_eq!(pipe[0], "id|price|note|_source_key|_source_version|_source_line");
    assert!(
        pipe[1].starts_with("id-000000|1.50|\"a, \"\"b\"\"\"|rows.jsonl|"),
        "{}",
        pipe[1]
    );
    let tab = first_lines("tab");
    assert_eq!(
        tab[0],
        "id\tprice\tnote\t_source_key\t_source_version\t_source_line"
    );
    assert!(
        tab[1].starts_with("id-000000\t1.50\t\"a, \"\"b\"\"\"\trows.jsonl\t"),
        "{}",
        tab[1]
    );
    let quoted = first_lines("quoted");
    assert_eq!(
        quoted[0],
        "\"id\",\"price\",\"note\",\"_source_key\",\"_source_version\",\"_source_line\""
    );
    assert!(
        quoted[1].starts_with("\"id-000000\",\"1.50\",\"a, \"\"b\"\"\",\"rows.jsonl\","),
        "{}",
        quoted[1]
    );
    assert!(
        quoted[1].ends_with(",\"1\""),
        "a number is quoted too: {}",
        quoted[1]
    );

    // check writes and deletes a probe; policy prints the destination's bucket policy.
    let check = stdout_of(&run_binary(cfg.path(), &["check", "comma"]));
    assert!(
        check.contains(&format!("  ok       target: s3://{b}/loads/ accepts writes")),
        "{check}"
    );
    assert_eq!(objects(&client, &b, "loads/").await.len(), 5, "the probe is gone");
}

#[tokio::test(flavor = "multi_thread")]
async fn large_loads_go_up_in_parts_and_a_kill_mid_upload_leaves_nothing_behind() {
    let client = s3();
    let b = bucket(&client, "big").await;
    let cfg = ConfigDir::new();
    // About 12 MB of JSONL: two parts of the multipart upload.
    let rows = ids(150_000);
    connection(&cfg, "big", &rows, &s3_target(&b, ""));

    // Killed after the upload started: a partial upload exists, no object.
    let mut child = binary(cfg.path())
        .arg("run")
        .env(s3_importd::fault::ENV, "s3-upload-started")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let reached = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .any(|l| l.contains("fault point s3-upload-started reached"))
    });
    // Reading stops at the fault point's line, or at the end of stderr if the run exited.
    assert!(reached.join().unwrap(), "the run reached the fault point");
    child.kill().unwrap();
    child.wait().unwrap();
    let uploads = client.list_multipart_uploads().bucket(&b).send().await.unwrap();
    assert_eq!(uploads.uploads().len(), 1, "the killed run left its upload open");
    assert!(objects(&client, &b, "loads/").await.is_empty());

    // The next run aborts it and imports the load again, once.
    let out = stdout_of(&run_binary(cfg.path(), &["run"]));
    assert!(
        out.contains("big: listed 1, new 1, imported 1, rejected 0, failed 0; rows 150000"),
        "{out}"
    );
    let uploads = client.list_multipart_uploads().bucket(&b).send().await.unwrap();
    assert!(uploads.uploads().is_empty(), "no unfinished upload is left");
    let all = objects(&client, &b, "loads/").await;
    assert_eq!(all.len(), 1);
    let body = String::from_utf8(all[0].1.clone()).unwrap();
    assert!(
        body.len() > 8 * 1024 * 1024,
        "larger than one part: {}",
        body.len()
    );
    let got: Vec<String> = body
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(got, rows, "every row once, in order");

    // Killed after the object is complete but before the commit: the next run commits it.
    std::fs::write(cfg.path().join("in/big/more.jsonl"), "{\"id\": \"late\"}\n").unwrap();
    let out = binary(cfg.path())
        .arg("run")
        .env(s3_importd::fault::ENV, "after-deliver")
        .spawn();
    let mut child = out.unwrap();
    // Bounded wait for the object to appear, then kill.
    for _ in 0..200 {
        if objects(&client, &b, "loads/").await.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let out = stdout_of(&run_binary(cfg.path(), &["run"]));
    assert!(out.contains("new 0, imported 0"), "{out}");
    assert_eq!(objects(&client, &b, "loads/").await.len(), 2);
}

#[test]
fn file_target_writes_csv() {
    let cfg = ConfigDir::new();
    connection(
        &cfg,
        "local",
        &ids(3),
        "type = \"file\"\npath = \"out\"\nformat = \"csv\"\ndelimiter = \"|\"\n",
    );
    stdout_of(&run_binary(cfg.path(), &["run"]));
    let files = output_files(&cfg.out());
    assert_eq!(files.len(), 1);
    assert!(files[0].to_string_lossy().ends_with(".csv"), "{files:?}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0], "id|price|note|_source_key|_source_version|_source_line");
}

#[test]
fn stdout_target_prints_rows_and_nothing_else() {
    let cfg = ConfigDir::new();
    connection(&cfg, "pipe", &ids(3), "type = \"stdout\"");
    let out = run_binary(cfg.path(), &["run"]);
    let stdout = stdout_of(&out);
    let rows: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON row: {l:?}: {e}")))
        .collect();
    let got: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(got, ["id-000000", "id-000001", "id-000002"]);
    assert_eq!(rows[0]["_source_line"], json!(1));
    assert!(
        text(&out.stderr).contains("pipe: listed 1, new 1, imported 1"),
        "the summary goes to stderr"
    );
}

#[test]
fn a_refused_delivery_is_reported_once_with_its_fix_and_not_retried() {
    let cfg = ConfigDir::new();
    connection(
        &cfg,
        "nowhere",
        &ids(2),
        &s3_target("no-such-bucket-s3-importd", ""),
    );
    let out = run_binary(cfg.path(), &["run", "nowhere"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    // A missing bucket is a refusal, not a hiccup: no second attempt.
    assert!(!stderr.contains("trying again"), "{stderr}");
    assert!(
        stdout.contains("HTTP 404 NoSuchBucket")
            && stdout.contains("the bucket does not exist: check `bucket` (the bare name)"),
        "{stdout}"
    );
    // One line, and no SDK type's debug output.
    for shown in [&stdout, &stderr] {
        assert!(
            !shown.contains("ServiceError {") && !shown.contains("SdkBody"),
            "{shown}"
        );
    }
}

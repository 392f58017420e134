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

/// How many multipart uploads are open in `bucket`.
async fn open_uploads(client: &aws_sdk_s3::Client, bucket: &str) -> usize {
    let listed = client
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    listed.uploads().len()
}

/// Runs the connections of `config` and kills the run (SIGKILL) once its multipart upload has
/// started; checks what it left: one open upload, no object.
async fn killed_mid_upload(client: &aws_sdk_s3::Client, bucket: &str, config: &std::path::Path) {
    let config = config.to_path_buf();
    tokio::task::spawn_blocking(move || kill_at(&config, "s3-upload-started"))
        .await
        .unwrap();
    assert_eq!(
        open_uploads(client, bucket).await,
        1,
        "the killed run left its upload open"
    );
    assert!(objects(client, bucket, "loads/").await.is_empty());
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
    killed_mid_upload(&client, &b, cfg.path()).await;

    // The next run aborts it and delivers the load again, as planned, once.
    let out = stdout_of(&run_binary(cfg.path(), &["run"]));
    assert!(out.contains("big: listed 1, new 0, imported 0"), "{out}");
    assert_eq!(open_uploads(&client, &b).await, 0, "no unfinished upload is left");
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

/// A template of every type, for the Parquet tests.
const TYPED_TEMPLATE: &str = r#"table = "typed"
[[template.fields]]
name = "id"
required = true
[[template.fields]]
name = "n"
type = "integer"
[[template.fields]]
name = "price"
type = "decimal"
precision = 6
scale = 2
[[template.fields]]
name = "ratio"
type = "float"
[[template.fields]]
name = "ok"
type = "boolean"
[[template.fields]]
name = "day"
type = "date"
[[template.fields]]
name = "at"
type = "timestamp"
[[template.fields]]
name = "attrs"
type = "json""#;

#[test]
fn parquet_output_is_typed_and_pyarrow_reads_every_value() {
    let cfg = ConfigDir::new();
    cfg.inbox(
        "typed",
        &[(
            "rows.jsonl",
            concat!(
                r#"{"id": "a", "n": 9007199254740993, "price": "19.9", "ratio": 0.1, "ok": "yes", "day": "2026-01-02", "at": "2026-01-02T03:04:05.123456+01:00", "attrs": {"b": [1, "x"]}}"#,
                "\n",
                r#"{"id": "b", "n": -1, "price": 7, "ratio": -1.5e300, "ok": false, "day": null, "at": "1969-12-31T23:59:59Z", "attrs": "text"}"#,
                "\n",
                // Two digits after the point at most: quarantined, not rounded.
                r#"{"id": "c", "price": "0.125"}"#,
                "\n",
                r#"{"id": "d"}"#,
                "\n",
            )
            .as_bytes(),
        )],
    );
    cfg.connection(
        "typed",
        &dir_connection_toml(
            "typed",
            &format!("max_bad_rows = \"1\"\n{TYPED_TEMPLATE}"),
            "type = \"file\"\npath = \"out\"\nformat = \"parquet\"\ncompression = \"snappy\"",
        ),
    );
    let out = stdout_of(&run_binary(cfg.path(), &["run"]));
    assert!(
        out.contains("imported 1, rejected 0, failed 0; rows 3, bad rows 1"),
        "{out}"
    );
    let files = output_files(&cfg.out());
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].to_string_lossy().ends_with(".parquet"), "{files:?}");

    // Another implementation reads the file: its types, and every value.
    let script = r#"
import json, sys
import pyarrow.parquet as pq
f = pq.ParquetFile(sys.argv[1])
t = f.read()
print(json.dumps([[x.name, str(x.type)] for x in t.schema]))
print(json.dumps(t.to_pylist(), default=str))
c = f.metadata.row_group(0).column(0)
print(json.dumps([f.metadata.num_row_groups, c.compression, c.statistics.min, c.statistics.max, c.statistics.null_count]))
"#;
    let read = std::process::Command::new(test_python())
        .args(["-c", script])
        .arg(&files[0])
        .output()
        .unwrap();
    let text = stdout_of(&read);
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(
        lines[0],
        json!([
            ["id", "string"],
            ["n", "int64"],
            ["price", "decimal128(6, 2)"],
            ["ratio", "double"],
            ["ok", "bool"],
            ["day", "date32[day]"],
            ["at", "timestamp[us, tz=UTC]"],
            ["attrs", "extension<arrow.json>"],
            ["_source_key", "string"],
            ["_source_version", "string"],
            ["_source_line", "int64"]
        ])
    );
    let version = lines[1][0]["_source_version"].clone();
    assert_eq!(
        lines[1],
        json!([
            {"id": "a", "n": 9007199254740993_i64, "price": "19.90", "ratio": 0.1, "ok": true,
             "day": "2026-01-02", "at": "2026-01-02 02:04:05.123456+00:00", "attrs": "{\"b\":[1,\"x\"]}",
             "_source_key": "rows.jsonl", "_source_version": version, "_source_line": 1},
            {"id": "b", "n": -1, "price": "7.00", "ratio": -1.5e300, "ok": false,
             "day": null, "at": "1969-12-31 23:59:59+00:00", "attrs": "\"text\"",
             "_source_key": "rows.jsonl", "_source_version": version, "_source_line": 2},
            {"id": "d", "n": null, "price": null, "ratio": null, "ok": null,
             "day": null, "at": null, "attrs": null,
             "_source_key": "rows.jsonl", "_source_version": version, "_source_line": 4}
        ])
    );
    assert_eq!(lines[2], json!([1, "SNAPPY", "a", "d", 0]));
}

#[test]
fn parquet_file_loads_survive_a_kill_at_every_step() {
    let cfg = ConfigDir::new();
    connection(
        &cfg,
        "pq",
        &ids(500),
        "type = \"file\"\npath = \"out\"\nformat = \"parquet\"\n",
    );
    let template = format!(
        "{ID_TEMPLATE}\n[[template.fields]]\nname = \"price\"\ntype = \"decimal\"\nprecision = 9\nscale = 2\n[[template.fields]]\nname = \"note\""
    );
    cfg.connection(
        "pq",
        &dir_connection_toml(
            "pq",
            &template,
            "type = \"file\"\npath = \"out\"\nformat = \"parquet\"\n",
        ),
    );
    let ids_of = |cfg: &ConfigDir| -> Vec<String> {
        let rows = cfg.rows();
        // arrow-json writes a DECIMAL(9, 2) as a JSON number.
        assert!(
            rows.iter()
                .all(|r| r["price"] == json!(1.5) && r["note"] == "a, \"b\"")
        );
        cfg.ids()
    };
    // Killed once the file is in place, before the commit: the next run finds it and commits.
    kill_at(cfg.path(), "after-deliver");
    assert_eq!(output_files(&cfg.out()).len(), 1);
    let out = stdout_of(&run_binary(cfg.path(), &["run"]));
    assert!(out.contains("new 0, imported 0"), "{out}");
    assert_eq!(ids_of(&cfg), ids(500));

    // Killed after the load is prepared, before anything is written: the next run delivers
    // it as planned, under its recorded name, once.
    std::fs::write(
        cfg.path().join("in/pq/more.jsonl"),
        "{\"id\": \"late\", \"price\": 1.5, \"note\": \"a, \\\"b\\\"\"}\n",
    )
    .unwrap();
    kill_at(cfg.path(), "after-prepare");
    assert_eq!(output_files(&cfg.out()).len(), 1);
    let out = stdout_of(&run_binary(cfg.path(), &["run"]));
    assert!(out.contains("new 0, imported 0"), "{out}");
    let files = output_files(&cfg.out());
    assert_eq!(files.len(), 2, "no temporary file is left: {files:?}");
    let mut want = ids(500);
    want.push("late".into());
    want.sort();
    assert_eq!(ids_of(&cfg), want);
}

#[tokio::test(flavor = "multi_thread")]
async fn parquet_loads_into_s3_survive_a_kill_mid_upload() {
    let client = s3();
    let b = bucket(&client, "pq").await;
    let cfg = ConfigDir::new();
    let rows = ids(20_000);
    connection(&cfg, "pq", &rows, &s3_target(&b, "format = \"parquet\""));
    let template = format!(
        "{ID_TEMPLATE}\n[[template.fields]]\nname = \"price\"\ntype = \"decimal\"\nprecision = 9\nscale = 2\n[[template.fields]]\nname = \"note\""
    );
    cfg.connection(
        "pq",
        &dir_connection_toml("pq", &template, &s3_target(&b, "format = \"parquet\"")),
    );
    let dir = cfg.path().to_path_buf();
    killed_mid_upload(&client, &b, &dir).await;

    let out = stdout_of(&run_binary(&dir, &["run"]));
    assert!(out.contains("pq: listed 1, new 0, imported 0"), "{out}");
    assert_eq!(open_uploads(&client, &b).await, 0, "no unfinished upload is left");
    let all = objects(&client, &b, "loads/").await;
    assert_eq!(all.len(), 1);
    assert!(
        all[0].0.starts_with("loads/pq/items/1/") && all[0].0.ends_with(".parquet"),
        "{}",
        all[0].0
    );
    let got: Vec<String> = parquet_rows(all[0].1.clone())
        .iter()
        .map(|r| {
            assert_eq!(r["price"], json!(1.5));
            r["id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(got, rows, "every row once, in order");
}

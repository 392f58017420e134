//! End-to-end runs of the real binary against moto: the whole folder is listed and imported
//! once, overwrites are imported again, AssumeRole is used as configured, and a kill at any
//! point of a delivery loses and duplicates nothing.

mod common;

use common::*;
use futures::StreamExt;
use std::collections::BTreeSet;

fn ids(rows: &[serde_json::Value]) -> Vec<String> {
    let mut ids: Vec<String> = rows
        .iter()
        .map(|r| r["id"].as_str().unwrap_or("?").to_string())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn imports_every_object_under_the_prefix_exactly_once() {
    let client = s3();
    let b = bucket(&client, "many").await;
    let inside = 1050;
    futures::stream::iter(0..inside)
        .for_each_concurrent(16, |i| {
            let (client, b) = (&client, &b);
            async move {
                put(
                    client,
                    b,
                    &format!("in/{i:05}.jsonl"),
                    format!("{{\"id\": \"in-{i}\"}}\n"),
                )
                .await
            }
        })
        .await;
    for i in 0..10 {
        put(
            &client,
            &b,
            &format!("other/{i}.jsonl"),
            format!("{{\"id\": \"other-{i}\"}}\n"),
        )
        .await;
        put(
            &client,
            &b,
            &format!("in-sibling/{i}.jsonl"),
            format!("{{\"id\": \"sib-{i}\"}}\n"),
        )
        .await;
    }
    put(&client, &b, "in/folder/", Vec::new()).await;
    put(&client, &b, "in/empty.jsonl", Vec::new()).await;

    let cfg = ConfigDir::new();
    cfg.connection("many", &s3_connection(&b, "in/", ""));
    let out = stdout_of(&run_binary(cfg.path(), &["run"]));
    assert!(
        out.contains(
            "many: listed 1052, new 1050, imported 1050, rejected 0, failed 0; rows 1050, bad rows 0;"
        ),
        "{out}"
    );
    let rows = cfg.rows();
    let expected: Vec<String> = {
        let mut v: Vec<String> = (0..inside).map(|i| format!("in-{i}")).collect();
        v.sort();
        v
    };
    assert_eq!(ids(&rows), expected);
    assert!(
        rows.iter()
            .all(|r| r["_source_key"].as_str().is_some_and(|k| k.starts_with("in/")))
    );
    assert_eq!(output_files(&cfg.out()).len(), 1, "one load, one output file");

    // A second run finds nothing new and writes nothing.
    let out = stdout_of(&run_binary(cfg.path(), &["run"]));
    assert!(out.contains("many: listed 1052, new 0, imported 0,"), "{out}");
    assert_eq!(output_files(&cfg.out()).len(), 1);

    // An object overwritten in place is a new version and is imported again, alone.
    put(&client, &b, "in/00007.jsonl", "{\"id\": \"in-7-v2\"}\n").await;
    let out = stdout_of(&run_binary(cfg.path(), &["run"]));
    assert!(out.contains("many: listed 1052, new 1, imported 1,"), "{out}");
    let files = output_files(&cfg.out());
    assert_eq!(files.len(), 2);
    let newest = std::fs::read_to_string(
        files
            .iter()
            .max_by_key(|f| f.metadata().unwrap().modified().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(newest.lines().count(), 1);
    assert!(newest.contains("\"in-7-v2\""), "{newest}");
}

#[tokio::test(flavor = "multi_thread")]
async fn assume_role_sends_role_and_external_id_and_lists_with_its_credentials() {
    let client = s3();
    let b = bucket(&client, "role").await;
    put(&client, &b, "data/a.jsonl", "{\"id\": \"a\"}\n").await;
    let proxy = RecordingProxy::start(&moto()).await;

    let cfg = ConfigDir::new();
    let conn = s3_connection(
        &b,
        "data/",
        "role_arn = \"arn:aws:iam::123456789012:role/s3-importd-test\"\nexternal_id = \"ext-123-abc\"",
    )
    .replace(&moto(), &proxy.url);
    cfg.connection("roles", &conn);
    let out = tokio::task::spawn_blocking({
        let (path, url) = (cfg.path().to_path_buf(), proxy.url.clone());
        move || {
            binary(&path)
                .arg("run")
                .env("AWS_ENDPOINT_URL_STS", url)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let out = stdout_of(&out);
    assert!(out.contains("imported 1"), "{out}");
    assert_eq!(ids(&cfg.rows()), vec!["a"]);

    let requests = proxy.requests();
    assert!(requests.contains("Action=AssumeRole"), "{requests}");
    assert!(
        requests.contains("RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fs3-importd-test"),
        "{requests}"
    );
    assert!(requests.contains("ExternalId=ext-123-abc"), "{requests}");
    assert!(
        requests.contains("RoleSessionName=s3-importd-roles"),
        "{requests}"
    );

    // The listing is signed with the credentials AssumeRole returned, not the base ones.
    let responses = proxy.responses();
    let key_id = responses
        .split("<AccessKeyId>")
        .nth(1)
        .and_then(|s| s.split("</AccessKeyId>").next())
        .expect("an AssumeRole response with an AccessKeyId");
    assert_ne!(key_id, "testing");
    let listing = requests
        .split("\r\n\r\n")
        .find(|block| block.contains("list-type=2"))
        .expect("a ListObjectsV2 request");
    assert!(listing.contains(&format!("Credential={key_id}/")), "{listing}");
}

/// Puts `n` objects `PREFIX000.jsonl`… of two rows each (`{"id": "i-a"}`, `{"id": "i-b"}`);
/// returns the ids, sorted.
async fn put_pairs(client: &aws_sdk_s3::Client, b: &str, prefix: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let body = format!("{{\"id\": \"{i}-a\"}}\n{{\"id\": \"{i}-b\"}}\n");
        put(client, b, &format!("{prefix}{i:03}.jsonl"), body).await;
        ids.extend([format!("{i}-a"), format!("{i}-b")]);
    }
    ids.sort();
    ids
}

/// Kills a run at `point`, checks how many output files it left, runs again, and returns the
/// second run's output.
async fn kill_then_rerun(
    cfg: ConfigDir,
    point: &'static str,
    files_after_kill: usize,
) -> (ConfigDir, String) {
    tokio::task::spawn_blocking(move || {
        kill_at(cfg.path(), point);
        let files = output_files(&cfg.out()).len();
        assert_eq!(files, files_after_kill, "output files after a kill at {point}");
        let out = stdout_of(&run_binary(cfg.path(), &["run"]));
        (cfg, out)
    })
    .await
    .expect("join")
}

fn assert_exactly_once(cfg: &ConfigDir, expected: &[String]) {
    let rows = cfg.rows();
    let provenance: BTreeSet<(String, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["_source_key"].as_str().unwrap().to_string(),
                r["_source_line"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(provenance.len(), rows.len(), "a row was delivered twice");
    assert_eq!(ids(&rows), expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_at_any_point_of_a_delivery_loses_and_duplicates_nothing() {
    let client = s3();
    let b = bucket(&client, "kill").await;
    let mut expected = put_pairs(&client, &b, "k/", 40).await;
    let cfg = ConfigDir::new();
    cfg.connection("kill", &s3_connection(&b, "k/", ""));

    // Killed after the output is written and before the ledger is committed: the next run
    // finds the output and commits it instead of writing it again.
    let (cfg, out) = kill_then_rerun(cfg, "after-deliver", 1).await;
    assert!(out.contains("new 0, imported 0"), "{out}");
    assert_exactly_once(&cfg, &expected);
    assert_eq!(output_files(&cfg.out()).len(), 1);

    // Killed after the load is prepared and before anything is written: the next run
    // delivers the pending load as planned, under the name it recorded (so its own plan
    // finds nothing new).
    for i in 40..50 {
        put(
            &client,
            &b,
            &format!("k/{i:03}.jsonl"),
            format!("{{\"id\": \"{i}-a\"}}\n"),
        )
        .await;
        expected.push(format!("{i}-a"));
    }
    expected.sort();
    let (cfg, out) = kill_then_rerun(cfg, "after-prepare", 1).await;
    assert!(out.contains("new 0, imported 0"), "{out}");
    assert_exactly_once(&cfg, &expected);
    assert_eq!(output_files(&cfg.out()).len(), 2);

    // Killed after the commit: the next run has nothing left to do.
    put(&client, &b, "k/050.jsonl", "{\"id\": \"50-a\"}\n").await;
    expected.push("50-a".to_string());
    expected.sort();
    let (cfg, out) = kill_then_rerun(cfg, "after-commit", 3).await;
    assert!(out.contains("new 0, imported 0"), "{out}");
    assert_exactly_once(&cfg, &expected);
    assert_eq!(output_files(&cfg.out()).len(), 3);
    assert!(
        output_files(&cfg.out())
            .iter()
            .all(|f| !f.file_name().unwrap().to_string_lossy().starts_with('.')),
        "a temporary file was left behind"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn loads_are_settled_one_by_one_and_a_kill_loses_only_the_load_in_flight() {
    let client = s3();
    let b = bucket(&client, "loads").await;
    let expected = put_pairs(&client, &b, "l/", 25).await;
    let cfg = ConfigDir::new();
    std::fs::write(
        cfg.path().join("s3-importd.toml"),
        "state = \"state/state.db\"\nload_max_objects = 10\n",
    )
    .unwrap();
    cfg.connection("loads", &s3_connection(&b, "l/", ""));

    // Killed when the second load is prepared: the first is delivered and committed, and
    // the run's record shows how far it got.
    let cfg = tokio::task::spawn_blocking(move || {
        kill_at(cfg.path(), "after-prepare#2");
        cfg
    })
    .await
    .unwrap();
    let status = stdout_of(&run_binary(cfg.path(), &["status", "loads", "--json"]));
    let status: serde_json::Value = serde_json::from_str(status.trim()).unwrap();
    assert_eq!(status["last_run"]["outcome"], "interrupted", "{status}");
    assert_eq!(status["last_run"]["objects_imported"], 10, "{status}");
    assert_eq!(output_files(&cfg.out()).len(), 1);
    // The next run delivers the second load as planned, then imports the last five.
    let out = stdout_of(&run_binary(cfg.path(), &["run"]));
    assert!(out.contains("new 5, imported 5"), "{out}");
    assert_exactly_once(&cfg, &expected);
    // Three loads of at most ten objects (two rows each).
    let files = output_files(&cfg.out());
    let mut lines: Vec<usize> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap().lines().count())
        .collect();
    lines.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(lines, [20, 20, 10], "{files:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partitioned_listing_equals_the_serial_one_key_for_key() {
    let client = s3();
    let b = bucket(&client, "partitions").await;
    let mut keys: Vec<String> = (0..1001).map(|i| format!("n/a/{i:04}.jsonl")).collect();
    keys.extend(
        [
            "n/a/b/1.jsonl",
            "n/a/b/2.jsonl",
            "n/c/",
            "n/h/",
            "n/h/i/",
            "n/d/e/f/g.jsonl",
            "n/top.jsonl",
            "n-other/x.jsonl",
            "n",
            "elsewhere/y.jsonl",
        ]
        .map(String::from),
    );
    futures::stream::iter(&keys)
        .for_each_concurrent(16, |key| {
            let (client, b) = (&client, &b);
            async move { put(client, b, key, "{}\n").await }
        })
        .await;
    let cfg = ConfigDir::new();
    for prefix in ["n/", "n", ""] {
        let mut listings = Vec::new();
        for concurrency in [1, 3, 8] {
            cfg.connection(
                "p",
                &s3_connection(&b, prefix, &format!("max_concurrent_listings = {concurrency}")),
            );
            let config = s3_importd::config::load(cfg.path()).unwrap_or_else(|e| panic!("{e}"));
            let source = s3_importd::sources::for_connection(&config.connections[0]).await;
            let mut listed = Vec::new();
            let count = source
                .list(&mut |meta| listed.push((meta.key, meta.etag, meta.size)))
                .await
                .unwrap();
            assert_eq!(count as usize, listed.len());
            listed.sort();
            listings.push(listed);
        }
        let want: Vec<&String> = {
            let mut w: Vec<&String> = keys.iter().filter(|k| k.starts_with(prefix)).collect();
            w.sort();
            w
        };
        let serial: Vec<&String> = listings[0].iter().map(|(k, _, _)| k).collect();
        assert_eq!(serial, want, "prefix {prefix:?}");
        assert_eq!(listings[1], listings[0], "prefix {prefix:?}, 3 at once");
        assert_eq!(listings[2], listings[0], "prefix {prefix:?}, 8 at once");
    }
}

#[test]
fn an_s3_error_is_one_line_with_its_code_request_id_and_fix() {
    let cfg = ConfigDir::new();
    cfg.connection("gone", &s3_connection("no-such-bucket-s3i-errors", "in/", ""));
    let out = run_binary(cfg.path(), &["run"]);
    let shown = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains(
            "ListObjectsV2: HTTP 404 NoSuchBucket: The specified bucket does not exist (request ID "
        ),
        "{shown}"
    );
    assert!(
        shown.contains("; the bucket does not exist: check `bucket` (the bare name)"),
        "{shown}"
    );
    for dump in ["ServiceError", "SdkBody", "raw: Response", "Error {"] {
        assert!(!shown.contains(dump), "{dump} in {shown}");
    }
    let status = stdout_of(&run_binary(cfg.path(), &["status", "gone"]));
    assert!(status.contains("HTTP 404 NoSuchBucket"), "{status}");
    assert!(!status.contains("ServiceError"), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn assume_role_goes_to_the_endpoint_or_to_sts_endpoint() {
    let client = s3();
    let b = bucket(&client, "sts").await;
    put(&client, &b, "d/a.jsonl", "{\"id\": \"a\"}\n").await;
    let role = "role_arn = \"arn:aws:iam::123456789012:role/r\"\nexternal_id = \"ext-sts-1\"";
    let cfg = ConfigDir::new();
    // No AWS_ENDPOINT_URL_STS: AssumeRole goes to `endpoint` (moto), not to AWS (unreachable).
    cfg.connection("viaendpoint", &s3_connection(&b, "d/", role));
    let proxy = RecordingProxy::start(&moto()).await;
    cfg.connection(
        "viasts",
        &s3_connection(&b, "d/", &format!("{role}\nsts_endpoint = \"{}\"", proxy.url)),
    );
    let path = cfg.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        binary(&path)
            .env_remove("AWS_ENDPOINT_URL_STS")
            .args(["run", "viaendpoint", "viasts"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{shown}{}", text(&out.stderr));
    assert!(
        shown.contains("viaendpoint: listed 1, new 1, imported 1"),
        "{shown}"
    );
    assert!(shown.contains("viasts: listed 1, new 1, imported 1"), "{shown}");
    let requests = proxy.requests();
    assert_eq!(requests.matches("Action=AssumeRole").count(), 1, "{requests}");
    assert!(
        requests.contains("RoleSessionName=s3-importd-viasts"),
        "{requests}"
    );
}

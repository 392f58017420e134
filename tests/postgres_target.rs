//! The `postgres` target against a throwaway PostgreSQL cluster (`scripts/test` starts one
//! unless DATABASE_URL is given): create_table and the type mapping, append with a replay
//! after a kill, upsert with duplicates in one file, the missing-column error, and `check`.

mod common;

use common::*;
use std::io::BufRead;
use std::process::Stdio;

fn database_url() -> String {
    std::env::var("S3_IMPORTD_TEST_DATABASE_URL").expect(
        "S3_IMPORTD_TEST_DATABASE_URL is not set: run the tests with scripts/test, which starts PostgreSQL",
    )
}

async fn db() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&database_url(), tokio_postgres::NoTls)
        .await
        .expect("connect to the test database");
    tokio::spawn(connection);
    client
}

/// A schema of the test's own.
async fn schema(client: &tokio_postgres::Client) -> String {
    let name = format!("s3i_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    client
        .batch_execute(&format!("CREATE SCHEMA {name}"))
        .await
        .unwrap();
    name
}

const FIELDS: &str = r#"
[[template.fields]]
name = "id"
type = "integer"
required = true
[[template.fields]]
name = "price"
type = "decimal"
[[template.fields]]
name = "name"
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
name = "tags"
type = "json"
"#;

/// A connection over `in/NAME` into `table` with the given target keys; the URL comes from
/// the environment variable S3I_TEST_PG_URL.
fn connection(cfg: &ConfigDir, name: &str, table: &str, target: &str) {
    std::fs::create_dir_all(cfg.path().join("in").join(name)).unwrap();
    let target = format!("type = \"postgres\"\nurl_env = \"S3I_TEST_PG_URL\"\ntable = \"{table}\"\n{target}");
    cfg.connection(
        name,
        &dir_connection_toml(name, &format!("table = \"items\"\n{FIELDS}"), &target),
    );
}

fn inbox(cfg: &ConfigDir, name: &str, file: &str, rows: &[&str]) {
    let body: String = rows.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(cfg.path().join("in").join(name).join(file), body).unwrap();
}

fn run(cfg: &ConfigDir, args: &[&str]) -> std::process::Output {
    binary(cfg.path())
        .args(args)
        .env("S3I_TEST_PG_URL", database_url())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn append_creates_the_table_maps_types_and_replays_harmlessly() {
    let client = db().await;
    let s = schema(&client).await;
    let cfg = ConfigDir::new();
    connection(&cfg, "shop", &format!("{s}.items"), "create_table = true");
    inbox(
        &cfg,
        "shop",
        "a.jsonl",
        &[
            r#"{"id": 1, "price": "19.99", "name": "Tea pot", "ratio": 0.5, "ok": true, "day": "2026-11-01", "at": "2026-11-01T10:00:00+01:00", "tags": {"a": [1, 2]}}"#,
            r#"{"id": 2, "price": "0.10"}"#,
        ],
    );
    let out = stdout_of(&run(&cfg, &["run"]));
    assert!(
        out.contains("shop: listed 1, new 1, imported 1, rejected 0, failed 0; rows 2"),
        "{out}"
    );
    assert!(out.contains(&format!("output postgres table {s}.items")), "{out}");

    let row = client
        .query_one(
            &format!(
                "SELECT price::text, name, ratio, ok, day::text, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), tags::text,
                        _source_key, _source_line, _imported_at IS NOT NULL
                 FROM {s}.items WHERE id = 1"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "19.99", "numeric keeps the digits");
    assert_eq!(row.get::<_, String>(1), "Tea pot");
    assert_eq!(row.get::<_, f64>(2), 0.5);
    assert!(row.get::<_, bool>(3));
    assert_eq!(row.get::<_, String>(4), "2026-11-01");
    assert_eq!(row.get::<_, String>(5), "2026-11-01 09:00");
    assert_eq!(row.get::<_, String>(6), r#"{"a": [1, 2]}"#);
    assert_eq!(row.get::<_, String>(7), "a.jsonl");
    assert_eq!(row.get::<_, i64>(8), 1);
    assert!(row.get::<_, bool>(9));
    let types: Vec<(String, String)> = client
        .query(
            "SELECT column_name::text, data_type::text FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'items' ORDER BY ordinal_position",
            &[&s],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let want = [
        ("id", "bigint"),
        ("price", "numeric"),
        ("name", "text"),
        ("ratio", "double precision"),
        ("ok", "boolean"),
        ("day", "date"),
        ("at", "timestamp with time zone"),
        ("tags", "jsonb"),
        ("_source_key", "text"),
        ("_source_version", "text"),
        ("_source_line", "bigint"),
        ("_imported_at", "timestamp with time zone"),
    ];
    let want: Vec<(String, String)> = want.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    assert_eq!(types, want);

    // A kill after the rows are in but before the commit: the next run loads the object
    // again, and the provenance constraint drops every repeat.
    inbox(&cfg, "shop", "b.jsonl", &[r#"{"id": 3}"#, r#"{"id": 4}"#]);
    let mut child = binary(cfg.path())
        .arg("run")
        .env("S3I_TEST_PG_URL", database_url())
        .env(s3_importd::fault::ENV, "after-deliver")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let reached = std::io::BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.contains("fault point after-deliver reached"));
    assert!(reached);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(count(&client, &s).await, 4, "the killed run's rows are in");
    let out = stdout_of(&run(&cfg, &["run"]));
    // The pending load is delivered again, as planned (its rows replay harmlessly).
    assert!(
        out.contains("new 0, imported 0"),
        "the load is delivered again by the recovery: {out}"
    );
    assert_eq!(count(&client, &s).await, 4, "and nothing is doubled");

    let check = stdout_of(&run(&cfg, &["check", "shop"]));
    assert!(
        check.contains(&format!(
            "  ok       target: connected; {s}.items has every column and the privileges"
        )),
        "{check}"
    );
}

async fn count(client: &tokio_postgres::Client, schema: &str) -> i64 {
    let row = client
        .query_one(&format!("SELECT count(*) FROM {schema}.items"), &[])
        .await
        .unwrap();
    row.get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn upsert_updates_by_key_and_the_last_duplicate_of_a_file_wins() {
    let client = db().await;
    let s = schema(&client).await;
    let cfg = ConfigDir::new();
    connection(
        &cfg,
        "up",
        &format!("{s}.items"),
        "create_table = true\nmode = \"upsert\"\nkey = [\"id\"]",
    );
    inbox(
        &cfg,
        "up",
        "a.jsonl",
        &[r#"{"id": 1, "name": "one"}"#, r#"{"id": 2, "name": "two"}"#],
    );
    stdout_of(&run(&cfg, &["run"]));
    inbox(
        &cfg,
        "up",
        "b.jsonl",
        &[
            r#"{"id": 2, "name": "two again"}"#,
            r#"{"id": 3, "name": "three"}"#,
            r#"{"id": 3, "name": "three, last"}"#,
        ],
    );
    let out = stdout_of(&run(&cfg, &["run"]));
    assert!(out.contains("imported 1"), "{out}");
    let rows: Vec<(i64, String, String, i64)> = client
        .query(
            &format!("SELECT id, name, _source_key, _source_line FROM {s}.items ORDER BY id"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        rows,
        [
            (1, "one".to_string(), "a.jsonl".to_string(), 1),
            (2, "two again".to_string(), "b.jsonl".to_string(), 1),
            (3, "three, last".to_string(), "b.jsonl".to_string(), 3),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_column_fails_with_the_alter_table_that_adds_it() {
    let client = db().await;
    let s = schema(&client).await;
    client
        .batch_execute(&format!(
            "CREATE TABLE {s}.items (id bigint, name text, ratio double precision, ok boolean, day date, at timestamptz, tags jsonb,
               _source_key text, _source_version text, _source_line bigint, _imported_at timestamptz,
               UNIQUE (_source_key, _source_version, _source_line))"
        ))
        .await
        .unwrap();
    let cfg = ConfigDir::new();
    connection(&cfg, "old", &format!("{s}.items"), "");
    inbox(&cfg, "old", "a.jsonl", &[r#"{"id": 1}"#]);
    let out = run(&cfg, &["run"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "postgres table {s}.items: the table lacks the column price; add it with: ALTER TABLE \"{s}\".\"items\" ADD COLUMN \"price\" numeric;"
        )),
        "{stdout}"
    );
    assert!(!stdout.contains("postgres://"), "the URL never appears: {stdout}");
    let check = run(&cfg, &["check", "old"]);
    assert_eq!(check.status.code(), Some(1));
    assert!(
        text(&check.stdout).contains("ADD COLUMN \"price\" numeric"),
        "{}",
        text(&check.stdout)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn values_the_table_cannot_store_are_quarantined_and_never_block_other_objects() {
    let client = db().await;
    let s = schema(&client).await;
    let cfg = ConfigDir::new();
    std::fs::create_dir_all(cfg.path().join("in/nul")).unwrap();
    let target = format!(
        "type = \"postgres\"\nurl_env = \"S3I_TEST_PG_URL\"\ntable = \"{s}.items\"\ncreate_table = true"
    );
    let template = format!("table = \"items\"\nmax_bad_rows = \"10\"\n{FIELDS}");
    cfg.connection("nul", &dir_connection_toml("nul", &template, &target));
    // A NUL in a string (the JSON escape) and in a json value: row errors, found before
    // delivery; the other rows of the object are loaded.
    inbox(
        &cfg,
        "nul",
        "a.jsonl",
        &[
            r#"{"id": 1, "name": "bad\u0000name"}"#,
            r#"{"id": 2, "name": "fine"}"#,
            r#"{"id": 3, "tags": {"k": ["x\u0000"]}}"#,
        ],
    );
    // A date PostgreSQL cannot store (before 4713 BC): the table refuses the object, which
    // is rejected; the objects after it are loaded all the same.
    inbox(
        &cfg,
        "nul",
        "b.jsonl",
        &[r#"{"id": 10, "day": "-5000-01-01"}"#, r#"{"id": 11}"#],
    );
    inbox(&cfg, "nul", "c.jsonl", &[r#"{"id": 20}"#]);
    let out = run(&cfg, &["run"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("imported 2, rejected 1, failed 0; rows 2, bad rows 2"),
        "{stdout}"
    );
    assert!(stdout.contains("b.jsonl: rejected: postgres table"), "{stdout}");
    assert!(
        stdout.contains("(line 1)") && stdout.contains("(22008)"),
        "{stdout}"
    );
    let ids: Vec<i64> = client
        .query(&format!("SELECT id FROM {s}.items ORDER BY id"), &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, [2, 20]);
    let status = text(&run(&cfg, &["status", "nul"]).stdout);
    assert!(status.contains("holds a NUL character"), "{status}");
    assert!(status.contains("name") && status.contains("tags"), "{status}");
    // Nothing is left to retry: the next run imports nothing and fails nothing.
    let stdout = text(&run(&cfg, &["run"]).stdout);
    assert!(
        stdout.contains("new 0, imported 0, rejected 0, failed 0"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_without_tls_gets_no_password_when_tls_is_required() {
    // The test cluster offers no TLS. On loopback the default is `prefer` (the other tests
    // connect); `require` — the default for any other host — refuses to connect.
    let cfg = ConfigDir::new();
    connection(&cfg, "tls", "items", "");
    inbox(&cfg, "tls", "a.jsonl", &[r#"{"id": 1}"#]);
    let url = database_url();
    let sep = if url.contains('?') { '&' } else { '?' };
    let out = binary(cfg.path())
        .arg("run")
        .env("S3I_TEST_PG_URL", format!("{url}{sep}sslmode=require"))
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("connecting:") && stdout.contains("TLS"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("postgres://"),
        "the URL is never repeated: {stdout}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn loads_that_create_the_same_table_at_once_all_succeed() {
    let client = db().await;
    let schema = schema(&client).await;
    let cfg = ConfigDir::new();
    // Six connections into one table that does not exist yet, each run by a process of its
    // own, all started together on a state file that does not exist yet either.
    let names: Vec<String> = (0..6).map(|i| format!("c{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        connection(&cfg, name, &format!("{schema}.shared"), "create_table = true");
        inbox(&cfg, name, "a.jsonl", &[&format!("{{\"id\": {i}}}")]);
    }
    let children: Vec<std::process::Child> = names
        .iter()
        .map(|name| {
            binary(cfg.path())
                .args(["run", name])
                .env("S3I_TEST_PG_URL", database_url())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (name, child) in names.iter().zip(children) {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{name}: {}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }
    let rows: i64 = client
        .query_one(&format!("SELECT count(*) FROM {schema}.shared"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_database_fails_the_delivery_after_timeout_s() {
    // The database behind a proxy that keeps the connection open and answers nothing: the
    // delivery gives up after timeout_s instead of holding the run.
    let url = url::Url::parse(&database_url()).unwrap();
    let proxy = SwitchProxy::start(&format!(
        "{}:{}",
        url.host_str().unwrap(),
        url.port().unwrap_or(5432)
    ))
    .await;
    proxy.set(Switch::Stalled);
    let mut stalled = url.clone();
    stalled.set_host(Some("127.0.0.1")).unwrap();
    stalled.set_port(Some(proxy.port)).unwrap();
    let cfg = ConfigDir::new();
    connection(&cfg, "stalled", "items", "timeout_s = 2");
    inbox(&cfg, "stalled", "a.jsonl", &[r#"{"id": 1}"#]);
    let started = std::time::Instant::now();
    let out = tokio::task::spawn_blocking({
        let (path, url) = (cfg.path().to_path_buf(), stalled.to_string());
        move || {
            binary(&path)
                .arg("run")
                .env("S3I_TEST_PG_URL", url)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("connecting: no answer within timeout_s = 2 s"),
        "{stdout}"
    );
    // Not retried for minutes: the run's attempts end within a few timeouts.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

//! Integrity under a hostile network and hostile files (issue 12): bodies cut short or
//! altered in transit are never imported, a `dir` file rewritten while it is read is not
//! imported, and what was not imported is imported whole by the next good run.

mod common;

use aws_sdk_s3::config::RequestChecksumCalculation;
use common::*;

/// A client for moto that stores objects without S3 checksums, so that only the size and the
/// MD5 ETag can tell a damaged body.
fn s3_without_checksums() -> aws_sdk_s3::Client {
    s3_with(|b| b.request_checksum_calculation(RequestChecksumCalculation::WhenRequired))
}

const OBJECTS: usize = 6;
const LINES: usize = 300;

/// Puts `OBJECTS` JSON Lines objects of `LINES` rows each and returns the bucket.
async fn objects(client: &aws_sdk_s3::Client, stem: &str) -> String {
    let b = bucket(client, stem).await;
    for i in 0..OBJECTS {
        let body: String = (0..LINES)
            .map(|j| format!("{{\"id\": \"{i}-{j:05}\"}}\n"))
            .collect();
        put(client, &b, &format!("in/{i}.jsonl"), body).await;
    }
    b
}

fn all_ids() -> Vec<String> {
    let mut v: Vec<String> = (0..OBJECTS)
        .flat_map(|i| (0..LINES).map(move |j| format!("{i}-{j:05}")))
        .collect();
    v.sort();
    v
}

/// Every damaged read fails the object (never rejected, never delivered); a clean run then
/// imports every row exactly once.
async fn damaged_bodies_are_never_imported(fault: Fault, client: aws_sdk_s3::Client, expect: &str) {
    let b = objects(&client, "cut").await;
    let proxy = FaultProxy::start(&moto(), fault, u64::MAX).await;
    let cfg = ConfigDir::new();
    cfg.connection("cut", &s3_connection(&b, "in/", "").replace(&moto(), &proxy.url));

    let stdout = a_run_fails_every_object(&cfg, &format!("{fault:?}"));
    assert!(stdout.contains(expect), "{fault:?}: {stdout}");
    assert!(stdout.contains("after 3 attempts"), "{fault:?}: {stdout}");
    assert!(proxy.damaged() >= (OBJECTS * 3) as u64, "{}", proxy.damaged());
    assert!(cfg.rows().is_empty(), "{fault:?}: nothing may be delivered");

    proxy.set(Fault::None);
    a_clean_run_imports_every_row_once(&cfg, &format!("{fault:?}"));
}

/// The next run, on a good network, imports every object whole, every row once.
/// A run in which every object fails (to be retried): exit 1, nothing imported or rejected.
/// Returns its output.
fn a_run_fails_every_object(cfg: &ConfigDir, what: &str) -> String {
    let out = run_binary(cfg.path(), &["run"]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: {stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "imported 0, rejected 0, failed {OBJECTS}; rows 0, bad rows 0"
        )),
        "{what}: {stdout}"
    );
    stdout
}

fn a_clean_run_imports_every_row_once(cfg: &ConfigDir, what: &str) {
    let stdout = stdout_of(&run_binary(cfg.path(), &["run"]));
    assert!(
        stdout.contains(&format!(
            "imported {OBJECTS}, rejected 0, failed 0; rows {}",
            OBJECTS * LINES
        )),
        "{what}: {stdout}"
    );
    assert_eq!(cfg.ids(), all_ids(), "{what}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_cut_with_a_matching_content_length_is_never_imported() {
    damaged_bodies_are_never_imported(
        Fault::CutWithLength,
        s3_without_checksums(),
        "the body ended after 2700 of the 5400 bytes listed",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_close_delimited_body_cut_short_is_never_imported() {
    damaged_bodies_are_never_imported(Fault::CloseDelimited, s3_without_checksums(), "bytes listed").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_altered_in_transit_fails_its_md5() {
    damaged_bodies_are_never_imported(Fault::AlterByte, s3_without_checksums(), "the MD5 of the").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_with_an_s3_checksum_cut_short_is_never_imported() {
    // Objects stored with the SDK's default CRC checksum: whichever check sees the damage
    // first, the object fails.
    damaged_bodies_are_never_imported(Fault::CutWithLength, s3(), "failed:").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_cut_once_is_read_again_within_the_run() {
    let client = s3_without_checksums();
    let b = objects(&client, "once").await;
    let proxy = FaultProxy::start(&moto(), Fault::CloseDelimited, 3).await;
    let cfg = ConfigDir::new();
    cfg.connection("once", &s3_connection(&b, "in/", "").replace(&moto(), &proxy.url));
    let stdout = stdout_of(&run_binary(cfg.path(), &["run"]));
    assert_eq!(proxy.damaged(), 3);
    assert!(
        stdout.contains(&format!(
            "imported {OBJECTS}, rejected 0, failed 0; rows {}",
            OBJECTS * LINES
        )),
        "{stdout}"
    );
    assert_eq!(cfg.ids(), all_ids());
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    path: std::path::PathBuf,
}

impl Tmpfs {
    fn mount(path: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test fills a small tmpfs and must mount one: run it as root (CI does); mount said: {}",
            text(&out.stderr)
        );
        Tmpfs {
            path: path.to_path_buf(),
        }
    }

    fn resize(&self, size: &str) {
        let out = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .output()
            .expect("run mount");
        assert!(out.status.success(), "remount: {}", text(&out.stderr));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

#[test]
fn a_full_disk_fails_the_run_on_record_and_the_next_run_recovers_by_itself() {
    let cfg = ConfigDir::new();
    let disk = Tmpfs::mount(&cfg.path().join("state"), "2m");
    // One object at a time, so that the small object is not spooled while the large one has
    // the disk full.
    std::fs::write(
        cfg.path().join("s3-importd.toml"),
        "state = \"state/state.db\"\nmax_concurrent_objects = 1\n",
    )
    .unwrap();
    std::fs::create_dir_all(cfg.path().join("in/full")).unwrap();
    cfg.connection(
        "full",
        &dir_connection_toml("full", ID_TEMPLATE, "type = \"file\"\npath = \"out\""),
    );
    let write = |name: &str, rows: std::ops::Range<usize>| {
        let body: String = rows.map(|i| format!("{{\"id\": \"{i:07}\"}}\n")).collect();
        std::fs::write(cfg.path().join("in/full").join(name), body).unwrap();
    };

    // A spool left behind by a run that was killed fills the disk: the next run removes it
    // before it writes anything, and succeeds.
    let old = cfg.path().join("state/spool/full/0190-old-run");
    std::fs::create_dir_all(&old).unwrap();
    let filler = vec![b'x'; 64 * 1024];
    let mut f = std::fs::File::create(old.join("000000.jsonl")).unwrap();
    while std::io::Write::write_all(&mut f, &filler).is_ok() {}
    drop(f);
    write("a.jsonl", 0..100);
    let stdout = stdout_of(&run_binary(cfg.path(), &["run"]));
    assert!(
        stdout.contains("imported 1, rejected 0, failed 0; rows 100"),
        "{stdout}"
    );
    assert!(!old.exists());

    // An object whose rows do not fit on the disk fails (the object, not the daemon); the run
    // is recorded as failed with its error, and the other objects are imported.
    write("b.jsonl", 100..60_000);
    write("c.jsonl", 60_000..60_010);
    let out = run_binary(cfg.path(), &["run"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("imported 1, rejected 0, failed 1; rows 10"),
        "{stdout}"
    );
    assert!(
        stdout.contains("b.jsonl: failed:") && stdout.contains("No space left on device"),
        "{stdout}"
    );
    let status = stdout_of(&run_binary(cfg.path(), &["status", "full"]));
    assert!(status.contains("failed: listed 3, new 2, imported 1"), "{status}");
    assert!(status.contains("No space left on device"), "{status}");
    assert_eq!(
        std::fs::read_dir(cfg.path().join("state/spool/full"))
            .map(|d| d.count())
            .unwrap_or(0),
        0
    );

    // Space is freed: the next run imports what failed, once.
    disk.resize("64m");
    let stdout = stdout_of(&run_binary(cfg.path(), &["run"]));
    assert!(
        stdout.contains("imported 1, rejected 0, failed 0; rows 59900"),
        "{stdout}"
    );
    let want: Vec<String> = (0..60_010).map(|i| format!("{i:07}")).collect();
    assert_eq!(cfg.ids(), want);
}

/// Runs the binary and returns its output and peak RSS in MB (from wait4's rusage).
// The child is reaped by wait4, which the lint does not know.
#[allow(clippy::zombie_processes)]
fn run_measured(config: &std::path::Path, args: &[&str]) -> (std::process::Output, f64) {
    use std::io::Read;
    let mut child = binary(config)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start s3-importd");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let errors = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = err.read_to_end(&mut buf);
        buf
    });
    let mut stdout = Vec::new();
    let _ = out.read_to_end(&mut stdout);
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value, which wait4 fills in for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    // SAFETY: the pointers are to live locals, and the child is ours and not yet waited for.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid, "wait4 failed");
    let output = std::process::Output {
        status: std::os::unix::process::ExitStatusExt::from_raw(status),
        stdout,
        stderr: errors.join().unwrap(),
    };
    (output, usage.ru_maxrss as f64 / 1024.0)
}

fn gzip(parts: &[&[u8]], repeat: (&[u8], usize)) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(parts[0]).unwrap();
    let chunk = repeat.0.repeat(1 << 20);
    for _ in 0..repeat.1 {
        gz.write_all(&chunk).unwrap();
    }
    for p in &parts[1..] {
        gz.write_all(p).unwrap();
    }
    gz.finish().unwrap()
}

/// Hostile files cost bounded memory (issue 12): a gzip bomb of blank lines, a line far over
/// the 16 MiB cap in CSV and JSON Lines, and a CSV header over it. Each is imported by the
/// real binary, whose peak RSS must stay under 100 MB. (`scripts/bench-hostile` runs the
/// full-size versions with the release binary.)
#[test]
fn hostile_files_cost_bounded_memory() {
    let cfg = ConfigDir::new();
    let inbox = cfg.path().join("in/hostile");
    std::fs::create_dir_all(&inbox).unwrap();
    let template =
        "table = \"items\"\nmax_bad_rows = \"100%\"\n[[template.fields]]\nname = \"id\"\nrequired = true";
    let cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        // 40 MiB of blank lines: before the batches were capped by count, about 1.3 GB.
        (
            "blank.jsonl.gz",
            "jsonl",
            gzip(&[b"{\"id\": \"a\"}\n", b"{\"id\": \"b\"}\n"], (b"\n", 40)),
            "rows 2, bad rows 0",
        ),
        (
            "blank.csv.gz",
            "csv",
            gzip(&[b"id\n", b"z\n"], (b"\r\n", 10)),
            "rows 1, bad rows 0",
        ),
        // A CSV record was held whole (283 MB of RSS for a 200 MB line).
        (
            "line.csv.gz",
            "csv",
            gzip(&[b"id\n1,\"", b"\"\n2\n"], (b"x", 120)),
            "rows 1, bad rows 1",
        ),
        (
            "line.jsonl.gz",
            "jsonl",
            gzip(&[b"{\"id\": \"", b"\"}\n{\"id\": \"2\"}\n"], (b"x", 40)),
            "rows 1, bad rows 1",
        ),
        (
            "header.csv.gz",
            "csv",
            gzip(&[b"id,", b"\n1\n"], (b"h", 120)),
            "rejected 1",
        ),
    ];
    for (file, format, bytes, expect) in cases {
        for old in std::fs::read_dir(&inbox).unwrap() {
            std::fs::remove_file(old.unwrap().path()).unwrap();
        }
        std::fs::write(inbox.join(file), bytes).unwrap();
        let name = format!("h-{}", file.replace('.', "-"));
        std::fs::create_dir_all(cfg.path().join("in").join(&name)).unwrap();
        std::fs::rename(inbox.join(file), cfg.path().join("in").join(&name).join(file)).unwrap();
        let toml = dir_connection_toml(&name, template, "type = \"file\"\npath = \"out\"")
            .replace("type = \"jsonl\"", &format!("type = \"{format}\""));
        cfg.connection(&name, &toml);
        let started = std::time::Instant::now();
        let (out, rss) = run_measured(cfg.path(), &["run", &name]);
        let stdout = text(&out.stdout);
        assert!(stdout.contains(expect), "{file}: {stdout}\n{}", text(&out.stderr));
        // Unbounded, these cost 280 MB to 1.3 GB. The bound leaves room for the debug binary
        // itself (18 MB resident before reading anything, since arrow and parquet are linked).
        assert!(rss < 128.0, "{file}: peak RSS {rss:.1} MB");
        eprintln!(
            "{file}: peak RSS {rss:.1} MB, {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
}

#[test]
fn a_read_only_state_is_named_as_such_and_status_still_works() {
    let cfg = ConfigDir::new();
    let disk = Tmpfs::mount(&cfg.path().join("state"), "16m");
    std::fs::create_dir_all(cfg.path().join("in/ro")).unwrap();
    std::fs::write(cfg.path().join("in/ro/a.jsonl"), "{\"id\": \"1\"}\n").unwrap();
    cfg.connection(
        "ro",
        &dir_connection_toml("ro", ID_TEMPLATE, "type = \"file\"\npath = \"out\""),
    );
    stdout_of(&run_binary(cfg.path(), &["run"]));
    // A read-only mount stops root too.
    let out = std::process::Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&disk.path)
        .output()
        .expect("run mount");
    assert!(out.status.success(), "remount ro: {}", text(&out.stderr));

    let out = run_binary(cfg.path(), &["run"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.matches("is read-only").count(), 1, "{stderr}");
    assert!(!stderr.contains("unable to open database file"), "{stderr}");
    let status = stdout_of(&run_binary(cfg.path(), &["status", "ro"]));
    assert!(status.contains("ok: listed 1, new 1, imported 1"), "{status}");
}

/// A Parquet object of `rows` rows, `id` a string column and `n` an integer.
fn parquet_object(i: usize, rows: usize) -> Vec<u8> {
    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    let ids: Vec<String> = (0..rows).map(|j| format!("{i}-{j:05}")).collect();
    let batch = RecordBatch::try_from_iter([
        ("id", std::sync::Arc::new(StringArray::from(ids)) as ArrayRef),
        (
            "n",
            std::sync::Arc::new(Int64Array::from_iter_values(0..rows as i64)) as ArrayRef,
        ),
    ])
    .unwrap();
    let mut out = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    out
}

/// An Avro object of `rows` rows, snappy-compressed in blocks of about 4 KiB, each row
/// padded with 640 bytes that do not compress: larger than the reader's buffer, so that a
/// block damaged in the middle fails before the body has been read to its end.
fn avro_object(i: usize, rows: usize) -> Vec<u8> {
    use apache_avro::types::Value as Avro;
    let schema = apache_avro::Schema::parse_str(
        r#"{"type":"record","name":"r","fields":[{"name":"id","type":"string"},{"name":"pad","type":"string"}]}"#,
    )
    .unwrap();
    let mut writer = apache_avro::Writer::builder()
        .schema(&schema)
        .writer(Vec::new())
        .codec(apache_avro::Codec::Snappy)
        .block_size(4096)
        .build()
        .unwrap();
    let mut x = i as u64 + 1;
    for j in 0..rows {
        let pad: String = (0..40)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                format!("{x:016x}")
            })
            .collect();
        writer
            .append_value(Avro::Record(vec![
                ("id".into(), Avro::String(format!("{i}-{j:05}"))),
                ("pad".into(), Avro::String(pad)),
            ]))
            .unwrap();
    }
    writer.into_inner().unwrap()
}

/// Parquet is copied to disk before it is read (its footer comes first): a body cut short
/// fails in the copy, where the listed size is checked. Avro is read as it streams: the
/// reader's complaint about a cut or altered body is not taken as the file's fault until the
/// rest of the body has been read and its length and MD5 checked. Either way the object is
/// retried and never rejected as a broken file; once the network is good, every row arrives
/// once.
#[tokio::test(flavor = "multi_thread")]
async fn a_typed_body_cut_short_or_altered_is_retried_and_never_rejected() {
    let client = s3_without_checksums();
    for (kind, make) in [
        ("parquet", parquet_object as fn(usize, usize) -> Vec<u8>),
        ("avro", avro_object),
    ] {
        for fault in [Fault::CutWithLength, Fault::CloseDelimited, Fault::AlterByte] {
            let what = format!("{kind}, {fault:?}");
            let b = bucket(&client, kind).await;
            for i in 0..OBJECTS {
                put(&client, &b, &format!("in/{i}.{kind}"), make(i, LINES)).await;
            }
            let proxy = FaultProxy::start(&moto(), fault, u64::MAX).await;
            let cfg = ConfigDir::new();
            let connection = s3_connection(&b, "in/", "").replace("type = \"jsonl\"", "type = \"auto\"");
            cfg.connection(kind, &connection.replace(&moto(), &proxy.url));
            a_run_fails_every_object(&cfg, &what);
            assert!(cfg.rows().is_empty(), "{what}");
            proxy.set(Fault::None);
            a_clean_run_imports_every_row_once(&cfg, &what);
        }
    }
}

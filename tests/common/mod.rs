//! Test support: the moto server started by `scripts/test`, S3 helpers, configuration
//! folders, the real binary, and a recording TCP proxy.
//!
//! Tests that need moto fail (never skip) when it is missing, naming the command to use.
#![allow(dead_code)]

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The moto endpoint `scripts/test` started.
pub fn moto() -> String {
    std::env::var("S3_IMPORTD_TEST_MOTO")
        .expect("S3_IMPORTD_TEST_MOTO is not set: run the tests with scripts/test, which starts moto")
}

/// A client for moto with static credentials.
pub fn s3() -> Client {
    s3_with(|b| b)
}

/// A client for moto with static credentials and whatever `adjust` sets.
pub fn s3_with(adjust: impl FnOnce(aws_sdk_s3::config::Builder) -> aws_sdk_s3::config::Builder) -> Client {
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .endpoint_url(moto())
        .force_path_style(true);
    Client::from_conf(adjust(config).build())
}

/// A fresh bucket with a unique name.
pub async fn bucket(client: &Client, stem: &str) -> String {
    let name = format!("{stem}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    client
        .create_bucket()
        .bucket(&name)
        .send()
        .await
        .expect("create bucket");
    name
}

/// Puts one object.
pub async fn put(client: &Client, bucket: &str, key: &str, body: impl Into<Vec<u8>>) {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.into()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
}

/// A configuration folder with a state file and an output folder inside a temp dir.
pub struct ConfigDir {
    pub temp: tempfile::TempDir,
}

impl ConfigDir {
    pub fn new() -> ConfigDir {
        let temp = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(temp.path().join("connections")).expect("mkdir");
        std::fs::write(
            temp.path().join("s3-importd.toml"),
            "state = \"state/state.db\"\n",
        )
        .expect("write");
        ConfigDir { temp }
    }

    pub fn path(&self) -> &Path {
        self.temp.path()
    }

    pub fn out(&self) -> PathBuf {
        self.temp.path().join("out")
    }

    pub fn state(&self) -> PathBuf {
        self.temp.path().join("state/state.db")
    }

    /// Writes `connections/NAME.toml`.
    /// The folder `in/NAME` (created) with the given files in it; a `dir` connection named
    /// NAME reads it.
    pub fn inbox(&self, name: &str, files: &[(&str, &[u8])]) -> PathBuf {
        let inbox = self.path().join("in").join(name);
        std::fs::create_dir_all(&inbox).unwrap();
        for (file, bytes) in files {
            std::fs::write(inbox.join(file), bytes).unwrap();
        }
        inbox
    }

    pub fn connection(&self, name: &str, toml: &str) {
        std::fs::write(self.temp.path().join(format!("connections/{name}.toml")), toml).expect("write");
    }

    /// Every row in every output file (JSON Lines, or Parquet by its extension), parsed.
    pub fn rows(&self) -> Vec<serde_json::Value> {
        output_files(&self.out())
            .iter()
            .flat_map(|f| {
                if f.extension().is_some_and(|e| e == "parquet") {
                    return parquet_rows(std::fs::read(f).expect("read output"));
                }
                std::fs::read_to_string(f)
                    .expect("read output")
                    .lines()
                    .map(|l| serde_json::from_str(l).expect("output row is JSON"))
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

impl ConfigDir {
    /// The `id` of every delivered row, sorted (`?` for a row without a string id).
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .rows()
            .iter()
            .map(|r| r["id"].as_str().unwrap_or("?").to_string())
            .collect();
        ids.sort();
        ids
    }
}

/// The rows of a Parquet file, as arrow-json writes them (nulls left out).
pub fn parquet_rows(file: Vec<u8>) -> Vec<serde_json::Value> {
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(file))
            .expect("a Parquet file")
            .build()
            .expect("a Parquet reader");
    let mut text = Vec::new();
    let mut writer = arrow_json::LineDelimitedWriter::new(&mut text);
    for batch in reader {
        writer.write(&batch.expect("a row group")).expect("rows as JSON");
    }
    writer.finish().expect("rows as JSON");
    drop(writer);
    text.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("JSON"))
        .collect()
}

/// The Python of the test virtualenv (scripts/test), beside its moto_server.
pub fn test_python() -> PathBuf {
    let moto = std::env::var("S3_IMPORTD_TEST_MOTO_SERVER")
        .expect("S3_IMPORTD_TEST_MOTO_SERVER is set by scripts/test; run the tests with it");
    Path::new(&moto).with_file_name("python")
}

/// Runs the binary with a fault point (`S3_IMPORTD_FAULT`) and kills it (SIGKILL) once it
/// stops there; waits at most two minutes for it.
pub fn kill_at(config: &Path, point: &str) {
    use std::io::BufRead;
    let mut child = binary(config)
        .arg("run")
        .env("S3_IMPORTD_FAULT", point)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("fault point") {
                let _ = tx.send(line);
                return;
            }
        }
    });
    let reached = rx.recv_timeout(std::time::Duration::from_secs(120));
    child.kill().expect("kill");
    child.wait().expect("wait");
    assert!(reached.is_ok(), "the run never reached fault point {point}");
}

/// Every file under a folder, sorted, hidden ones included.
pub fn output_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect();
    files.sort();
    files
}

/// A connection over a moto bucket into a file target, with JSONL objects of `{"id": …}`.
pub fn s3_connection(bucket: &str, prefix: &str, extra_source: &str) -> String {
    s3_connection_with(
        bucket,
        prefix,
        extra_source,
        r#"
[format]
type = "jsonl"

[template]
table = "items"
[[template.fields]]
name = "id"
type = "string"
required = true
"#,
    )
}

/// A connection over a moto bucket into a file target (`out`), with `rest` (top-level keys
/// first, then `[format]` and `[template]` tables) after the source.
pub fn s3_connection_with(bucket: &str, prefix: &str, extra_source: &str, rest: &str) -> String {
    // Top-level keys must come before the first table, so they are split off `rest`.
    let (top, tables) = match rest.find("\n[") {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    format!(
        r#"
settle_seconds = 0
{top}
[source]
bucket = "{bucket}"
region = "us-east-1"
prefix = "{prefix}"
endpoint = "{endpoint}"
force_path_style = true
{extra_source}
{tables}

[target]
type = "file"
path = "out"
"#,
        endpoint = moto()
    )
}

/// A connection over the folder `in/NAME` of JSON Lines files (settled at once) with the given
/// `[template]` body (table and fields) and `[target]` body.
pub fn dir_connection_toml(name: &str, template: &str, target: &str) -> String {
    format!(
        "settle_seconds = 0\n[source]\ntype = \"dir\"\npath = \"in/{name}\"\n[format]\ntype = \"jsonl\"\n[template]\n{template}\n[target]\n{target}\n"
    )
}

/// The template most tests use: a required string `id`, delivered as table `items`.
pub const ID_TEMPLATE: &str = "table = \"items\"\n[[template.fields]]\nname = \"id\"\nrequired = true";

/// The real binary with the test environment.
pub fn binary(config: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_s3-importd"));
    cmd.arg("--config").arg(config);
    cmd.env("S3_IMPORTD_LOG", "info");
    cmd
}

/// Runs the binary to the end (bounded by its own work; moto answers quickly).
pub fn run_binary(config: &Path, args: &[&str]) -> Output {
    binary(config).args(args).output().expect("run s3-importd")
}

/// The standard output of a run that must have succeeded.
pub fn stdout_of(out: &Output) -> String {
    assert!(
        out.status.success(),
        "s3-importd failed: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A TCP proxy in front of `upstream` that records every byte in each direction.
pub struct RecordingProxy {
    pub url: String,
    pub requests: Arc<Mutex<Vec<u8>>>,
    pub responses: Arc<Mutex<Vec<u8>>>,
}

impl RecordingProxy {
    pub async fn start(upstream: &str) -> RecordingProxy {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let responses = Arc::new(Mutex::new(Vec::new()));
        let (req, resp) = (requests.clone(), responses.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pipe(cr, sw, req.clone()));
                tokio::spawn(pipe(sr, cw, resp.clone()));
            }
        });
        RecordingProxy {
            url,
            requests,
            responses,
        }
    }

    pub fn requests(&self) -> String {
        text(&self.requests.lock().unwrap())
    }

    pub fn responses(&self) -> String {
        text(&self.responses.lock().unwrap())
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    log: Arc<Mutex<Vec<u8>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match tokio::time::timeout(Duration::from_secs(60), from.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => n,
            _ => break,
        };
        log.lock().unwrap().extend_from_slice(&buf[..n]);
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// What [`FaultProxy`] does to the body of an object read (a GET that is not a listing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Passes every response on as it is.
    None,
    /// Cuts the body at a line end about half-way and sends a `Content-Length` that matches
    /// the cut body, as a proxy that lost the rest would.
    CutWithLength,
    /// Cuts the body the same way, sends no `Content-Length` and closes the connection: an
    /// HTTP/1.1 response delimited by the close.
    CloseDelimited,
    /// Changes one byte in the middle of the body and keeps its length.
    AlterByte,
    /// Holds every object's body back this many milliseconds, then passes it on whole: a
    /// slow download (not counted as a damage).
    Delay(u64),
}

/// An HTTP proxy in front of an S3 server that damages object bodies (one request per
/// connection; every response is sent with `Connection: close`). `faults` bounds how many
/// bodies it damages (`u64::MAX` for all); `damaged` counts those it did.
pub struct FaultProxy {
    pub url: String,
    pub fault: Arc<Mutex<Fault>>,
    pub faults_left: Arc<std::sync::atomic::AtomicU64>,
    pub damaged: Arc<std::sync::atomic::AtomicU64>,
}

impl FaultProxy {
    pub async fn start(upstream: &str, fault: Fault, faults: u64) -> FaultProxy {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let proxy = FaultProxy {
            url,
            fault: Arc::new(Mutex::new(fault)),
            faults_left: Arc::new(std::sync::atomic::AtomicU64::new(faults)),
            damaged: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        };
        let (fault, left, damaged) = (
            proxy.fault.clone(),
            proxy.faults_left.clone(),
            proxy.damaged.clone(),
        );
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, fault, left, damaged) =
                    (upstream.clone(), fault.clone(), left.clone(), damaged.clone());
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(60),
                        serve_one(client, &upstream, fault, left, damaged),
                    )
                    .await;
                });
            }
        });
        proxy
    }

    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }

    pub fn damaged(&self) -> u64 {
        self.damaged.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Splits an HTTP message into its head (without the blank line) and what follows.
fn split_head(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((&bytes[..at], &bytes[at + 4..]))
}

/// The head's lines without `Content-Length` and `Connection`, which the proxy sets itself.
fn head_lines(head: &[u8]) -> Vec<String> {
    text(head)
        .split("\r\n")
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            !l.starts_with("content-length:") && !l.starts_with("connection:")
        })
        .map(str::to_string)
        .collect()
}

fn content_length(head: &[u8]) -> usize {
    text(head)
        .split("\r\n")
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0)
}

async fn serve_one(
    mut client: tokio::net::TcpStream,
    upstream: &str,
    fault: Arc<Mutex<Fault>>,
    left: Arc<std::sync::atomic::AtomicU64>,
    damaged: Arc<std::sync::atomic::AtomicU64>,
) -> std::io::Result<()> {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // The request: its head, then as many body bytes as it announces.
    let mut request = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let (head, body) = loop {
        let n = client.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        request.extend_from_slice(&buf[..n]);
        if let Some((head, body)) = split_head(&request) {
            break (head.to_vec(), body.to_vec());
        }
        assert!(request.len() < 1 << 20, "request head too long");
    };
    let mut body = body;
    let want = content_length(&head);
    while body.len() < want {
        let n = client.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n]);
    }
    let mut lines = head_lines(&head);
    lines.push(format!("Content-Length: {}", body.len()));
    lines.push("Connection: close".into());
    let mut upstream_conn = tokio::net::TcpStream::connect(upstream).await?;
    upstream_conn
        .write_all(format!("{}\r\n\r\n", lines.join("\r\n")).as_bytes())
        .await?;
    upstream_conn.write_all(&body).await?;
    let mut response = Vec::new();
    upstream_conn.read_to_end(&mut response).await?;

    let request_line = lines.first().cloned().unwrap_or_default();
    let object_read = request_line.starts_with("GET ") && !request_line.contains("list-type");
    let chunked = split_head(&response).is_some_and(|(h, _)| {
        text(h)
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
    });
    let passed_as_is = request_line.starts_with("HEAD ") || chunked;
    let Some((rhead, rbody)) = split_head(&response).filter(|_| !passed_as_is) else {
        client.write_all(&response).await?;
        return Ok(());
    };
    let ok = text(rhead).starts_with("HTTP/1.1 200");
    let fault = *fault.lock().unwrap();
    if let Fault::Delay(ms) = fault {
        if object_read && ok {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        client.write_all(&response).await?;
        return Ok(());
    }
    let take = object_read
        && ok
        && fault != Fault::None
        && rbody.len() > 2
        && left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
    let mut out_lines = head_lines(rhead);
    let out_body: Vec<u8> = if take {
        damaged.fetch_add(1, Ordering::SeqCst);
        let half = rbody.len() / 2;
        let cut = rbody[..half]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(half, |p| p + 1);
        match fault {
            Fault::CutWithLength => {
                out_lines.push(format!("Content-Length: {cut}"));
                rbody[..cut].to_vec()
            }
            Fault::CloseDelimited => rbody[..cut].to_vec(),
            Fault::AlterByte | Fault::None | Fault::Delay(_) => {
                let mut altered = rbody.to_vec();
                // A digit changed into another digit keeps the file valid: only the digest
                // can tell.
                let at = altered
                    .iter()
                    .skip(half)
                    .position(u8::is_ascii_digit)
                    .map_or(half, |p| p + half);
                altered[at] = if altered[at] == b'7' { b'8' } else { b'7' };
                out_lines.push(format!("Content-Length: {}", altered.len()));
                altered
            }
        }
    } else {
        out_lines.push(format!("Content-Length: {}", rbody.len()));
        rbody.to_vec()
    };
    out_lines.push("Connection: close".into());
    client
        .write_all(format!("{}\r\n\r\n", out_lines.join("\r\n")).as_bytes())
        .await?;
    client.write_all(&out_body).await?;
    client.shutdown().await?;
    Ok(())
}

/// The PostgreSQL server `scripts/test` started (or `DATABASE_URL`).
pub fn database_url() -> String {
    std::env::var("S3_IMPORTD_TEST_DATABASE_URL").expect(
        "S3_IMPORTD_TEST_DATABASE_URL is not set: run the tests with scripts/test, which starts PostgreSQL",
    )
}

/// A new, empty database on the test server, and its URL: each test's state store starts
/// from nothing.
pub async fn fresh_database(stem: &str) -> String {
    let admin = database_url();
    let (client, connection) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .expect("connect to the test database");
    tokio::spawn(connection);
    let name = format!("{stem}_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create a database");
    let mut url = url::Url::parse(&admin).expect("a database URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// Sends the signal `name` (`TERM`, `KILL`, `STOP`…) to process `pid`.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid}");
}

/// The lines a child process writes to its standard error, read as they come on a thread of
/// their own, and those seen so far.
pub struct Log {
    rx: std::sync::mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Log {
    /// Takes the child's piped standard error.
    pub fn of(child: &mut std::process::Child) -> Log {
        use std::io::BufRead;
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Log { rx, seen: Vec::new() }
    }

    /// Every line written so far, taken into `seen`.
    pub fn drain(&mut self) -> &[String] {
        while let Ok(line) = self.rx.try_recv() {
            self.seen.push(line);
        }
        &self.seen
    }

    /// The first line (seen before or within `limit`) that contains `needle`; panics with
    /// every line seen when none comes.
    pub fn wait(&mut self, needle: &str, limit: Duration) -> String {
        self.wait_any(&[needle], limit)
    }

    /// The first line (seen before or within `limit`) that contains any of `needles`.
    pub fn wait_any(&mut self, needles: &[&str], limit: Duration) -> String {
        let found = |l: &String| needles.iter().any(|n| l.contains(n));
        if let Some(l) = self.seen.iter().find(|l| found(l)) {
            return l.clone();
        }
        let deadline = std::time::Instant::now() + limit;
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if found(&line) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no log line with {needles:?}; seen:\n{}", self.seen.join("\n"));
    }
}

/// An HTTP GET on 127.0.0.1: the status line and the body.
pub fn http_get(port: u16, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

/// What a [`SwitchProxy`] does with its connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// Carries them.
    On,
    /// Cuts those it carries and closes new ones at once: a server that went down.
    Off,
    /// Keeps them open and carries nothing more: a server that froze.
    Stalled,
}

/// A TCP proxy whose connections can be cut or frozen, as a database server that went down
/// or stalled would look to its clients.
pub struct SwitchProxy {
    pub port: u16,
    state: tokio::sync::watch::Sender<Switch>,
}

impl SwitchProxy {
    pub async fn start(upstream: &str) -> SwitchProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (state, watch) = tokio::sync::watch::channel(Switch::On);
        let upstream = upstream.to_string();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut watch = watch.clone();
                if *watch.borrow() == Switch::Off {
                    continue;
                }
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let state = tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => return,
                        state = watch.wait_for(|s| *s != Switch::On) => state.map(|s| *s),
                    };
                    if matches!(state, Ok(Switch::Stalled)) {
                        // Both ends stay open, and nothing moves until the proxy is dropped.
                        std::future::pending::<()>().await;
                    }
                });
            }
        });
        SwitchProxy { port, state }
    }

    pub fn set(&self, to: Switch) {
        let _ = self.state.send(to);
    }
}

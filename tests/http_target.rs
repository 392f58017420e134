//! The `http` target against a local HTTP server of the test's own that answers as scripted:
//! 503 then 200, 429 with Retry-After, 400, and 503 until the retries run out. Asserts the
//! bodies, the idempotency keys, the retries and the failure path.

mod common;

use common::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    headers: BTreeMap<String, String>,
    body: Value,
}

/// One scripted answer: status, body, extra headers.
type Answer = (u16, &'static str, Vec<(&'static str, &'static str)>);

/// An HTTP/1.1 server (a thread per connection) on 127.0.0.1 answering from a script, then 200.
struct Server {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    fn start(script: Vec<Answer>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/ingest", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (log, script) = (seen.clone(), Arc::new(Mutex::new(script.into_iter())));
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (log, script) = (log.clone(), script.clone());
                std::thread::spawn(move || serve(stream, &log, &script));
            }
        });
        Server { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

type Script = Mutex<std::vec::IntoIter<Answer>>;

fn serve(stream: TcpStream, log: &Mutex<Vec<Seen>>, script: &Script) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = BTreeMap::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        if request_line.starts_with("POST") {
            log.lock().unwrap().push(Seen {
                at: Instant::now(),
                headers,
                body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            });
        }
        let (status, text, extra) = if request_line.starts_with("POST") {
            script.lock().unwrap().next().unwrap_or((200, "", Vec::new()))
        } else {
            (405, "", Vec::new())
        };
        let mut response = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", text.len());
        for (k, v) in extra {
            response.push_str(&format!("{k}: {v}\r\n"));
        }
        response.push_str("\r\n");
        response.push_str(text);
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

/// A connection over a `dir` inbox of `rows` ids into the server.
fn connection(cfg: &ConfigDir, name: &str, rows: usize, url: &str, extra: &str) {
    let inbox = cfg.path().join("in").join(name);
    std::fs::create_dir_all(&inbox).unwrap();
    let body: String = (0..rows)
        .map(|i| format!("{{\"id\": \"{name}-{i}\"}}\n"))
        .collect();
    std::fs::write(inbox.join("rows.jsonl"), body).unwrap();
    let target = format!("type = \"http\"\nurl = \"{url}\"\nbatch_size = 2\n{extra}");
    cfg.connection(name, &dir_connection_toml(name, ID_TEMPLATE, &target));
}

/// As [`connection`] with one row, the URL read from the environment variable `var`.
fn connection_with_url_env(cfg: &ConfigDir, name: &str, var: &str, extra: &str) {
    connection(cfg, name, 1, "unused", extra);
    let file = cfg.path().join(format!("connections/{name}.toml"));
    let toml = std::fs::read_to_string(file)
        .unwrap()
        .replace("url = \"unused\"", &format!("url_env = \"{var}\""));
    cfg.connection(name, &toml);
}

fn key_of(s: &Seen) -> String {
    s.headers.get("idempotency-key").cloned().unwrap_or_default()
}

#[test]
fn retries_503_sends_batches_with_idempotency_keys_and_the_token() {
    let server = Server::start(vec![(503, "busy", Vec::new())]);
    let cfg = ConfigDir::new();
    let creds = tempfile::tempdir().unwrap();
    std::fs::write(creds.path().join("ingest-token"), "s3cr3t-token\n").unwrap();
    connection(
        &cfg,
        "ok",
        3,
        &server.url,
        "token_file = \"ingest-token\"\n[target.headers]\nX-Tenant = \"acme\"",
    );
    let out = binary(cfg.path())
        .arg("run")
        .env("CREDENTIALS_DIRECTORY", creds.path())
        .output()
        .unwrap();
    let stdout = stdout_of(&out);
    assert!(
        stdout.contains("ok: listed 1, new 1, imported 1, rejected 0, failed 0; rows 3"),
        "{stdout}"
    );
    assert!(
        !text(&out.stderr).contains("s3cr3t"),
        "the token never reaches the logs"
    );

    let seen = server.seen();
    assert_eq!(seen.len(), 3, "batch 0, its retry after the 503, batch 1");
    assert_eq!(key_of(&seen[0]), key_of(&seen[1]), "a retry carries the same key");
    assert_ne!(key_of(&seen[0]), key_of(&seen[2]));
    assert_eq!(key_of(&seen[0]).len(), 32);
    for s in &seen {
        assert_eq!(
            s.headers.get("authorization").map(String::as_str),
            Some("Bearer s3cr3t-token")
        );
        assert_eq!(s.headers.get("x-tenant").map(String::as_str), Some("acme"));
        assert_eq!(
            s.headers.get("content-type").map(String::as_str),
            Some("application/json")
        );
    }
    let body = &seen[2].body;
    assert_eq!(body["connection"], json!("ok"));
    assert_eq!(body["table"], json!("items"));
    assert_eq!(body["source"]["key"], json!("rows.jsonl"));
    assert!(
        body["source"]["bucket"].as_str().unwrap().ends_with("in/ok"),
        "{body}"
    );
    assert!(
        body["source"]["version"].as_str().is_some_and(|v| v.len() > 10),
        "{body}"
    );
    assert!(
        body["source"]["last_modified"].as_str().unwrap().ends_with('Z'),
        "{body}"
    );
    let ids = |b: &Value| {
        b["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&seen[1].body), [json!("ok-0"), json!("ok-1")]);
    assert_eq!(ids(body), [json!("ok-2")]);
    assert_eq!(body["rows"][0]["_source_line"], json!(3));
}

#[test]
fn honours_retry_after_on_429() {
    let server = Server::start(vec![(429, "slow down", vec![("Retry-After", "2")])]);
    let cfg = ConfigDir::new();
    connection(&cfg, "slow", 1, &server.url, "");
    stdout_of(&run_binary(cfg.path(), &["run"]));
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    let gap = seen[1].at - seen[0].at;
    // The computed backoff would be under a second; Retry-After says two.
    assert!(gap >= Duration::from_millis(1900), "{gap:?}");
    assert_eq!(key_of(&seen[0]), key_of(&seen[1]));
}

#[test]
fn a_400_fails_the_object_at_once_and_the_next_run_sends_the_same_keys() {
    let server = Server::start(vec![(400, "rows[0].id: expected a number", Vec::new())]);
    let cfg = ConfigDir::new();
    connection(&cfg, "bad", 1, &server.url, "");
    let out = run_binary(cfg.path(), &["run"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("imported 0, rejected 0, failed 1"), "{stdout}");
    assert!(
        stdout.contains("batch 0 of rows.jsonl (rows from line 1) was refused: HTTP 400 Bad Request: rows[0].id: expected a number"),
        "{stdout}"
    );
    assert_eq!(server.seen().len(), 1, "a 400 is not retried");
    // The object was not settled: the next run sends it again, under the same key.
    stdout_of(&run_binary(cfg.path(), &["run"]));
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(key_of(&seen[0]), key_of(&seen[1]));
}

#[test]
fn gives_up_after_max_retries() {
    let server = Server::start(vec![
        (503, "down", Vec::new()),
        (503, "down", Vec::new()),
        (503, "down", Vec::new()),
    ]);
    let cfg = ConfigDir::new();
    connection(&cfg, "down", 1, &server.url, "max_retries = 2");
    let out = run_binary(cfg.path(), &["run"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("HTTP 503 Service Unavailable: down"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(server.seen().len(), 3, "the first try and two retries");
    // check reaches the endpoint.
    let check = stdout_of(&run_binary(cfg.path(), &["check", "down"]));
    assert!(
        check.contains(&format!(
            "  ok       target: {} answers (HTTP 405 to HEAD)",
            server.url
        )),
        "{check}"
    );
}

#[test]
fn redirects_are_not_followed_and_fail_the_delivery() {
    let elsewhere = Server::start(Vec::new());
    let location: &'static str = Box::leak(elsewhere.url.clone().into_boxed_str());
    let endpoint = Server::start(vec![(307, "", vec![("Location", location)])]);
    let cfg = ConfigDir::new();
    connection(
        &cfg,
        "moved",
        2,
        &endpoint.url,
        "[target.headers]\nX-Api-Key = \"key-7f3a\"",
    );
    let out = run_binary(cfg.path(), &["run"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("HTTP 307 redirect to") && stdout.contains(location),
        "{stdout}"
    );
    assert!(stdout.contains("not followed"), "{stdout}");
    // One try, no retry, and nothing (neither rows nor the key) reached the other server.
    assert_eq!(endpoint.seen().len(), 1);
    assert!(elsewhere.seen().is_empty());
}

#[test]
fn a_url_is_a_secret_everywhere_and_may_come_from_the_environment() {
    // Userinfo and a query string carry credentials: they reach no output and no state.
    let server = Server::start(vec![(400, "no", Vec::new())]);
    let url = server.url.replace("http://", "http://user:pa55word@") + "?api_key=s3cr3t-q";
    let cfg = ConfigDir::new();
    connection(&cfg, "leaky", 1, &url, "");
    let mut outputs = vec![
        run_binary(cfg.path(), &["run"]),
        run_binary(cfg.path(), &["status"]),
        run_binary(cfg.path(), &["status", "--json"]),
        run_binary(cfg.path(), &["check", "leaky"]),
    ];
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "the batch was sent, to the real URL");
    assert!(
        text(&outputs[0].stdout).contains("?***"),
        "{}",
        text(&outputs[0].stdout)
    );
    outputs.push(std::process::Output {
        status: outputs[0].status,
        stdout: std::fs::read(cfg.state()).unwrap(),
        stderr: Vec::new(),
    });
    for out in &outputs {
        for bytes in [&out.stdout, &out.stderr] {
            let shown = String::from_utf8_lossy(bytes);
            assert!(
                !shown.contains("s3cr3t-q") && !shown.contains("pa55word"),
                "{shown}"
            );
        }
    }

    // url_env: read at delivery, shown by where it comes from; headers_file: more headers.
    let server = Server::start(Vec::new());
    let cfg = ConfigDir::new();
    std::fs::write(cfg.path().join("headers"), "# keys\nX-Api-Key: k-123\n").unwrap();
    connection_with_url_env(&cfg, "env", "S3I_TEST_INGEST_URL", "headers_file = \"headers\"");
    let out = binary(cfg.path())
        .arg("run")
        .env("S3I_TEST_INGEST_URL", &server.url)
        .output()
        .unwrap();
    let stdout = stdout_of(&out);
    assert!(
        stdout.contains("output the URL in $S3I_TEST_INGEST_URL"),
        "{stdout}"
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].headers.get("x-api-key").map(String::as_str),
        Some("k-123")
    );
}

#[test]
fn credentials_never_go_over_plain_http_to_another_host_unless_allowed() {
    let cfg = ConfigDir::new();
    connection(
        &cfg,
        "plain",
        1,
        "http://ingest.example.com/rows",
        "token_env = \"T\"",
    );
    let out = run_binary(cfg.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(2));
    let shown = text(&out.stdout) + &text(&out.stderr);
    assert!(
        shown.contains("target.url: sends credentials (a token, headers or userinfo) over plain http to ingest.example.com"),
        "{shown}"
    );
    // Allowed when the connection says so; https and loopback need nothing.
    connection(
        &cfg,
        "plain",
        1,
        "http://ingest.example.com/rows",
        "token_env = \"T\"\nallow_insecure_http = true",
    );
    assert!(run_binary(cfg.path(), &["validate"]).status.success());
    connection(
        &cfg,
        "plain",
        1,
        "https://ingest.example.com/rows",
        "token_env = \"T\"",
    );
    assert!(run_binary(cfg.path(), &["validate"]).status.success());
    // A URL read at delivery is checked then: nothing is sent.
    connection_with_url_env(&cfg, "plain", "S3I_TEST_PLAIN_URL", "token_env = \"T\"");
    let out = binary(cfg.path())
        .arg("run")
        .env("S3I_TEST_PLAIN_URL", "http://ingest.example.com/rows")
        .env("T", "token")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("would send credentials over plain http to ingest.example.com"),
        "{}",
        text(&out.stdout)
    );
}

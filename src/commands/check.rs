//! `s3-importd check NAME`: verifies a connection's access step by step and prints each step
//! as `ok`, `warn`, `FAILED` (with the cause and the fix to try) or `skipped` (an earlier step
//! it needs failed). Exits 0 only when no step failed. Changes no state; the only thing it
//! writes is a probe file in a `file` target's folder, removed at once.

use super::{EXIT_FAILED, pick_one};
use s3_importd::config::{Config, Connection};
use s3_importd::probe::Report;
use s3_importd::select::ObjectMeta;
use s3_importd::sources::{self, Source, SourceError};
use std::process::ExitCode;
use tokio::io::AsyncReadExt;

/// Above this many objects in the folder, `check` warns: every run lists all of them.
const MANY_OBJECTS: u64 = 1000;

/// How many bytes of one object `check` reads.
const PROBE_BYTES: usize = 1024;

pub async fn command(config: &Config, name: &str) -> ExitCode {
    let connection = match pick_one(config, name) {
        Ok(c) => c,
        Err(code) => return code,
    };
    println!("check {name}");
    let mut report = Report::new();
    // The configuration was loaded and validated before any command runs.
    report.ok("configuration", format!("connections/{name}.toml is valid"));
    let reachable = connection.source.check_access(connection, &mut report).await;
    source_steps(&mut report, connection, reachable).await;
    connection.target.check(connection, &mut report).await;
    if report.has_failed() {
        println!("some checks FAILED");
        ExitCode::from(EXIT_FAILED)
    } else {
        println!("all checks passed");
        ExitCode::SUCCESS
    }
}

/// Listing the folder, reading the first bytes of one object, and the challenge file.
async fn source_steps(report: &mut Report, connection: &Connection, reachable: bool) {
    let challenge = connection.source.must_list();
    if !reachable {
        report.skipped("list the folder", "the bucket");
        report.skipped("read an object", "the bucket");
        if challenge.is_some() {
            report.skipped("challenge file", "the bucket");
        }
        return;
    }
    let source = sources::for_connection(connection).await;
    let mut first: Option<ObjectMeta> = None;
    let mut challenge_meta: Option<ObjectMeta> = None;
    let prefix = connection.source.prefix();
    let listed = source
        .list(&mut |meta: ObjectMeta| {
            if Some(&meta.key) == challenge.as_ref() {
                challenge_meta = Some(meta);
                return;
            }
            let relative = meta.key.strip_prefix(prefix).unwrap_or(&meta.key);
            if first.is_none()
                && meta.size > 0
                && !meta.key.ends_with('/')
                && connection.filters.admits(relative)
            {
                first = Some(meta);
            }
        })
        .await;
    let count = match listed {
        Ok(n) => n,
        Err(e) => {
            report.failed(
                "list the folder",
                e.to_string(),
                "check the folder exists and s3-importd may list it",
            );
            report.skipped("read an object", "the listing");
            return;
        }
    };
    if count > MANY_OBJECTS {
        report.warn(
            "list the folder",
            format!(
                "{count} objects under {}; every run lists all of them: narrow the prefix, or add a lifecycle rule that expires old objects",
                source.location()
            ),
        );
    } else {
        report.ok(
            "list the folder",
            format!("{count} objects under {}", source.location()),
        );
    }
    match first {
        None => report.warn(
            "read an object",
            "no object to import yet (none is non-empty and matches include/exclude)",
        ),
        Some(meta) => match read_start(source.as_ref(), &meta).await {
            Ok(n) => report.ok("read an object", format!("{} (first {n} bytes)", meta.key)),
            Err(e) => {
                let fix = read_fix(&e);
                report.failed("read an object", e.to_string(), fix);
            }
        },
    }
    if let Some(key) = challenge {
        match challenge_meta {
            Some(m) if m.size == 0 => report.ok("challenge file", format!("{key} exists and is empty")),
            Some(m) => report.failed(
                "challenge file",
                format!("{key} is {} bytes", m.size),
                "the challenge file must be an empty object; replace it with an empty one",
            ),
            None => report.failed(
                "challenge file",
                format!("{key} does not exist in {}", source.location()),
                format!("ask the bucket's owner to create the empty object {key}, which proves they granted this access (aws s3api put-object --bucket BUCKET --key {key})"),
            ),
        }
    }
}

/// Reads the first bytes of an object.
async fn read_start(source: &dyn Source, meta: &ObjectMeta) -> Result<usize, SourceError> {
    let mut reader = source.open(meta).await?.into_async();
    let mut buf = vec![0u8; PROBE_BYTES];
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]).await {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => {
                return Err(SourceError::Read {
                    location: source.location(),
                    key: meta.key.clone(),
                    cause: s3_importd::sources::Cause::Other {
                        message: e.to_string(),
                        transient: true,
                    },
                });
            }
        }
    }
    Ok(got)
}

/// The fix to try for an object that could not be read.
fn read_fix(e: &SourceError) -> String {
    let text = e.to_string();
    if text.contains("InvalidObjectState") {
        "the object is archived (Glacier or Deep Archive): restore it, or exclude such keys with `exclude` in [source]".to_string()
    } else if text.contains("AccessDenied") {
        "attach the permission policy printed by `s3-importd policy NAME` (s3:GetObject on the folder's objects); objects encrypted with a KMS key also need kms:Decrypt".to_string()
    } else {
        "check that s3-importd may read the folder's objects".to_string()
    }
}

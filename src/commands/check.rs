//! `s3-importd check NAME`: verifies a connection's access step by step and prints each step
//! as `ok`, `warn`, `FAILED` (with the cause and the fix to try) or `skipped` (an earlier step
//! it needs failed). Exits 0 only when no step failed. Changes no state; the only thing it
//! writes is a probe file in a `file` target's folder, removed at once.

use super::{EXIT_FAILED, pick_one};
use aws_sdk_s3::config::ProvideCredentials;
use aws_sdk_s3::error::ProvideErrorMetadata;
use s3_importd::aws::AwsError;
use s3_importd::config::{Config, Connection, S3Spec, SourceSpec, TargetSpec};
use s3_importd::select::ObjectMeta;
use s3_importd::sources::{self, Source, SourceError};
use std::process::ExitCode;
use tokio::io::AsyncReadExt;

/// Above this many objects in the folder, `check` warns: every run lists all of them.
const MANY_OBJECTS: u64 = 1000;

/// How many bytes of one object `check` reads.
const PROBE_BYTES: usize = 1024;

/// Prints steps as they finish and remembers whether one failed.
struct Report {
    failed: bool,
}

impl Report {
    fn ok(&mut self, step: &str, detail: impl AsRef<str>) {
        println!("  ok       {step}: {}", detail.as_ref());
    }
    fn warn(&mut self, step: &str, detail: impl AsRef<str>) {
        println!("  warn     {step}: {}", detail.as_ref());
    }
    fn failed(&mut self, step: &str, cause: impl AsRef<str>, fix: impl AsRef<str>) {
        self.failed = true;
        // Causes from the SDK can span lines; keep them inside the step's column.
        println!(
            "  FAILED   {step}: {}",
            cause.as_ref().replace('\n', "\n           ")
        );
        println!("           fix: {}", fix.as_ref());
    }
    fn skipped(&mut self, step: &str, needs: &str) {
        println!("  skipped  {step}: needs {needs}");
    }
}

pub async fn command(config: &Config, name: &str) -> ExitCode {
    let connection = match pick_one(config, name) {
        Ok(c) => c,
        Err(code) => return code,
    };
    println!("check {name}");
    let mut report = Report { failed: false };
    // The configuration was loaded and validated before any command runs.
    report.ok("configuration", format!("connections/{name}.toml is valid"));
    let reachable = match &connection.source {
        SourceSpec::S3(spec) => s3_access(&mut report, &connection.name, spec).await,
        SourceSpec::Dir(_) => true,
    };
    source_steps(&mut report, connection, reachable).await;
    target_step(&mut report, connection).await;
    if report.failed {
        println!("some checks FAILED");
        ExitCode::from(EXIT_FAILED)
    } else {
        println!("all checks passed");
        ExitCode::SUCCESS
    }
}

/// Credentials, AssumeRole, and the bucket with its region. Returns whether the bucket can be
/// listed, which the later steps need.
async fn s3_access(report: &mut Report, connection: &str, spec: &S3Spec) -> bool {
    let base = s3_importd::aws::base_config(&spec.region).await;
    let credentials = match base.credentials_provider() {
        Some(provider) => provider
            .provide_credentials()
            .await
            .map_err(|e| s3_importd::aws::cause_chain(&e)),
        None => Err("no credential provider is configured".to_string()),
    };
    match credentials {
        Ok(c) => {
            // The key ID is not secret, but its end is all a person needs to tell keys apart.
            let id: Vec<char> = c.access_key_id().chars().collect();
            let tail: String = id[id.len().saturating_sub(4)..].iter().collect();
            report.ok("credentials", format!("found (access key …{tail})"))
        }
        Err(e) => {
            report.failed(
                "credentials",
                e,
                "give s3-importd an AWS identity: an instance or task role, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile (AWS_PROFILE)",
            );
            report.skipped("assume role", "credentials");
            report.skipped("bucket", "credentials");
            return false;
        }
    }
    if let Some(role) = &spec.role_arn {
        let sts = aws_sdk_sts::Client::new(&s3_importd::aws::sts_config(&base, spec));
        let mut request = sts
            .assume_role()
            .role_arn(role)
            .role_session_name(s3_importd::aws::session_name(connection));
        if let Some(id) = &spec.external_id {
            request = request.external_id(id);
        }
        match request.send().await {
            Ok(_) => report.ok(
                "assume role",
                format!("{role} as session {}", s3_importd::aws::session_name(connection)),
            ),
            Err(e) => {
                let denied = e.code() == Some("AccessDenied");
                let fix = if denied {
                    format!(
                        "AccessDenied means the role's trust policy does not name the identity s3-importd runs as, or the external ID differs{}: compare the role's trust relationships with the trust policy printed by `s3-importd policy {connection}`",
                        if spec.external_id.is_some() {
                            " from external_id in [source]"
                        } else {
                            " (none is set in [source])"
                        }
                    )
                } else {
                    format!("check role_arn {role:?} in [source], and that the role exists")
                };
                report.failed("assume role", s3_importd::aws::cause_chain(&e), fix);
                report.skipped("bucket", "the role");
                return false;
            }
        }
    }
    let client = s3_importd::aws::client(connection, spec).await;
    let probe = client
        .list_objects_v2()
        .bucket(&spec.bucket)
        .prefix(&spec.prefix)
        .encoding_type(aws_sdk_s3::types::EncodingType::Url)
        .max_keys(1)
        .send()
        .await;
    match probe {
        Ok(_) => {
            report.ok("bucket", format!("{} exists in {}", spec.bucket, spec.region));
            true
        }
        Err(e) => {
            let (cause, fix) = explain_bucket_error(&AwsError::of("ListObjectsV2", &e), spec);
            report.failed("bucket", cause, fix);
            false
        }
    }
}

/// The cause and the fix for a failed first request to a bucket.
fn explain_bucket_error(e: &AwsError, spec: &S3Spec) -> (String, String) {
    match (e.code.as_deref(), e.bucket_region.as_deref()) {
        (_, Some(actual)) if actual != spec.region => (
            format!("{} is in region {actual}, not {}", spec.bucket, spec.region),
            format!("set region = \"{actual}\" in [source]"),
        ),
        (Some("NoSuchBucket"), _) => (
            format!("bucket {} does not exist", spec.bucket),
            "check `bucket` in [source]: the bare bucket name, as the partner gave it".to_string(),
        ),
        (Some("AccessDenied"), _) => (
            format!("may not list s3://{}/{}: {}", spec.bucket, spec.prefix, e.summary()),
            "attach the permission policy printed by `s3-importd policy NAME` to the role (s3:ListBucket with the folder's s3:prefix condition)".to_string(),
        ),
        _ => (
            e.summary(),
            e.fix().unwrap_or_else(|| {
                "check `bucket`, `region` and `endpoint` in [source], and that the service is reachable".to_string()
            }),
        ),
    }
}

/// Listing the folder, reading the first bytes of one object, and the challenge file.
async fn source_steps(report: &mut Report, connection: &Connection, reachable: bool) {
    let challenge = match &connection.source {
        SourceSpec::S3(spec) => spec
            .challenge_file
            .as_ref()
            .map(|f| format!("{}{f}", spec.prefix)),
        SourceSpec::Dir(_) => None,
    };
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

/// Whether the target accepts writes.
async fn target_step(report: &mut Report, connection: &Connection) {
    match &connection.target {
        TargetSpec::Stdout => report.ok("target", "standard output"),
        TargetSpec::Postgres(spec) => {
            let fields = connection.template.fields.clone();
            let target = s3_importd::targets::postgres::PostgresTarget::new(spec.clone(), fields);
            match target.probe().await {
                Ok(detail) => report.ok("target", detail),
                Err(e) => report.failed(
                    "target",
                    e.to_string(),
                    "check the URL (url, url_env or url_file), that this host may reach the server, and the table",
                ),
            }
        }
        TargetSpec::Http(spec) => {
            let target = s3_importd::targets::http::HttpTarget::new(connection, spec.clone());
            match target.probe().await {
                Ok(status) => report.ok("target", format!("{} answers (HTTP {status} to HEAD)", spec.shown_url)),
                Err(e) => report.failed(
                    "target",
                    e,
                    "check `url` (or url_env, url_file) in [target], that this host may reach it, and the token's and headers' environment variables or files",
                ),
            }
        }
        TargetSpec::S3(spec) => {
            let s3 = &spec.s3;
            let client = s3_importd::aws::client(&connection.name, s3).await;
            let key = format!(
                "{}{}{}",
                s3.prefix,
                s3_importd::policy::PROBE_PREFIX,
                uuid::Uuid::new_v4().simple()
            );
            let put = client
                .put_object()
                .bucket(&s3.bucket)
                .key(&key)
                .body(aws_sdk_s3::primitives::ByteStream::from_static(b""))
                .send()
                .await;
            if let Err(e) = put {
                let fix = match e.code() {
                    Some("NoSuchBucket") => "check `bucket` in [target]".to_string(),
                    Some("AccessDenied") => format!(
                        "apply the bucket policy printed by `s3-importd policy {}` to {} (s3:PutObject and s3:DeleteObject on the folder)",
                        connection.name, s3.bucket
                    ),
                    _ => "check `bucket`, `region`, `endpoint` and `role_arn` in [target]".to_string(),
                };
                report.failed(
                    "target",
                    format!(
                        "cannot write s3://{}/{key}: {}",
                        s3.bucket,
                        AwsError::of("PutObject", &e).summary()
                    ),
                    fix,
                );
                return;
            }
            match client.delete_object().bucket(&s3.bucket).key(&key).send().await {
                Ok(_) => report.ok(
                    "target",
                    format!("s3://{}/{} accepts writes (a probe object was put and deleted)", s3.bucket, s3.prefix),
                ),
                Err(e) => report.failed(
                    "target",
                    format!(
                        "wrote s3://{}/{key} but cannot delete it: {}",
                        s3.bucket,
                        AwsError::of("DeleteObject", &e).summary()
                    ),
                    "allow s3:DeleteObject on the folder's .s3-importd-probe-* objects (check cleans up its probe; `policy` prints the statement), and delete the probe object",
                ),
            }
        }
        TargetSpec::File(spec) => {
            // The target creates its folder on the first load; until then, the nearest folder
            // that exists must let it do so. Nothing is created here.
            let existing = spec
                .path
                .ancestors()
                .find(|p| p.exists())
                .unwrap_or(std::path::Path::new("."));
            if !existing.is_dir() {
                report.failed(
                    "target",
                    format!(
                        "{} is in the way of {}: it is not a folder",
                        existing.display(),
                        spec.path.display()
                    ),
                    "point `path` in [target] at a folder, or move the file away",
                );
                return;
            }
            let probe = existing.join(format!(".s3-importd-probe-{}", uuid::Uuid::new_v4().simple()));
            let written = std::fs::write(&probe, b"").and_then(|()| std::fs::remove_file(&probe));
            match written {
                Ok(()) if existing == spec.path => {
                    report.ok("target", format!("{} is writable", spec.path.display()))
                }
                Ok(()) => report.ok(
                    "target",
                    format!(
                        "{} will be created on the first load; {} is writable",
                        spec.path.display(),
                        existing.display()
                    ),
                ),
                Err(e) => report.failed(
                    "target",
                    format!("cannot write in {}: {e}", spec.path.display()),
                    "create the folder and let the user s3-importd runs as write to it (under systemd: ReadWritePaths= or StateDirectory=)",
                ),
            }
        }
    }
}

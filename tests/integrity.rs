//! Integrity under a hostile network and hostile files (issue 12): bodies cut short or
//! altered in transit are never imported, a `dir` file rewritten while it is read is not
//! imported, and what was not imported is imported whole by the next good run.

mod common;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, RequestChecksumCalculation};
use common::*;

/// A client for moto that stores objects without S3 checksums, so that only the size and the
/// MD5 ETag can tell a damaged body.
fn s3_without_checksums() -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .endpoint_url(moto())
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

const OBJECTS: usize = 6;
const LINES: usize = 300;

/// Puts `OBJECTS` JSON Lines objects of `LINES` rows each and returns the bucket.
async fn objects(client: &aws_sdk_s3::Client, stem: &str) -> String {
    let b = bucket(client, stem).await;
    for i in 0..OBJECTS {
        let body: String = (0..LINES).map(|j| format!("{{\"id\": \"{i}-{j:05}\"}}\n")).collect();
        put(client, &b, &format!("in/{i}.jsonl"), body).await;
    }
    b
}

fn ids(cfg: &ConfigDir) -> Vec<String> {
    let mut ids: Vec<String> = cfg
        .rows()
        .iter()
        .map(|r| r["id"].as_str().unwrap_or("?").to_string())
        .collect();
    ids.sort();
    ids
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

    let out = run_binary(cfg.path(), &["run"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{fault:?}: {stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains(&format!("imported 0, rejected 0, failed {OBJECTS}; rows 0, bad rows 0")),
        "{fault:?}: {stdout}"
    );
    assert!(stdout.contains(expect), "{fault:?}: {stdout}");
    assert!(stdout.contains("after 3 attempts"), "{fault:?}: {stdout}");
    assert!(proxy.damaged() >= (OBJECTS * 3) as u64, "{}", proxy.damaged());
    assert!(cfg.rows().is_empty(), "{fault:?}: nothing may be delivered");

    proxy.set(Fault::None);
    let stdout = stdout_of(&run_binary(cfg.path(), &["run"]));
    assert!(
        stdout.contains(&format!("imported {OBJECTS}, rejected 0, failed 0; rows {}", OBJECTS * LINES)),
        "{fault:?}: {stdout}"
    );
    assert_eq!(ids(&cfg), all_ids(), "{fault:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_cut_with_a_matching_content_length_is_never_imported() {
    damaged_bodies_are_never_imported(Fault::CutWithLength, s3_without_checksums(), "the body ended after 2700 of the 5400 bytes listed").await;
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
        stdout.contains(&format!("imported {OBJECTS}, rejected 0, failed 0; rows {}", OBJECTS * LINES)),
        "{stdout}"
    );
    assert_eq!(ids(&cfg), all_ids());
}

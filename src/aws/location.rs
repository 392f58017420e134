//! The S3 location keys an `s3` source and an `s3` target share: the bucket, its region and
//! folder, the identity to reach it with (role, external ID), and the endpoints. One raw
//! struct as written, its checks, and the checked [`S3Location`].
//!
//! Pure: nothing here talks to AWS ([`super::client`] does, from an [`S3Location`]). What only
//! a source reads (a challenge file, concurrent listings) belongs to the source.

use crate::config::validate::Problems;
use regex::Regex;
use serde::Deserialize;
use std::sync::LazyLock;

static ROLE_ARN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^arn:aws(-cn|-us-gov|-iso|-iso-b)?:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$")
        .expect("constant regex")
});
static EXTERNAL_ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9+=,.@:/_-]{2,1224}$").expect("constant regex"));
static REGION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z]{2}(-[a-z]+)+-[0-9]+$").expect("constant regex"));
static BUCKET: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$").expect("constant regex"));
static IPV4: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$").expect("constant regex"));

/// The location keys as written in `[source]` or `[target]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawS3Location {
    pub bucket: Option<String>,
    pub region: Option<String>,
    pub prefix: Option<String>,
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
    pub external_id_required: Option<bool>,
    pub expected_bucket_owner: Option<String>,
    pub endpoint: Option<String>,
    pub sts_endpoint: Option<String>,
    pub force_path_style: Option<bool>,
    pub allow_insecure_http: Option<bool>,
}

/// An S3 (or S3-compatible) bucket and folder, with the identity to reach it as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub region: String,
    /// Empty for the whole bucket.
    pub prefix: String,
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
    /// Whether `role_arn` must come with an `external_id` (`external_id_required`, default
    /// true; off only for a role the operator owns). Checked across connections by
    /// `config::validate::external_id_problems`.
    pub external_id_required: bool,
    /// The account that must own the bucket (`expected_bucket_owner`), sent with every
    /// request as `x-amz-expected-bucket-owner` so that S3 refuses a bucket of another account.
    pub expected_bucket_owner: Option<String>,
    pub endpoint: Option<String>,
    /// Where AssumeRole goes (`sts_endpoint`): else `AWS_ENDPOINT_URL_STS`, else `endpoint`
    /// (S3-compatible services such as MinIO serve STS at the same address), else AWS.
    pub sts_endpoint: Option<String>,
    pub force_path_style: bool,
}

impl S3Location {
    /// A location with defaults for everything but the bucket, region and folder.
    pub fn new(bucket: &str, region: &str, prefix: &str) -> S3Location {
        S3Location {
            bucket: bucket.to_string(),
            region: region.to_string(),
            prefix: prefix.to_string(),
            role_arn: None,
            external_id: None,
            external_id_required: true,
            expected_bucket_owner: None,
            endpoint: None,
            sts_endpoint: None,
            force_path_style: false,
        }
    }
}

/// Checks a bucket name, returning the problem and the fix.
pub fn bucket_problem(b: &str) -> Option<String> {
    if let Some(rest) = b.strip_prefix("s3://") {
        let bare = rest.split('/').next().unwrap_or(rest);
        return Some(format!(
            "{b:?} is an s3:// URL; give the bare bucket name, bucket = {bare:?}, and put any folder in prefix"
        ));
    }
    if b.starts_with("http://") || b.starts_with("https://") {
        return Some(format!(
            "{b:?} is a URL; give the bare bucket name, and the URL of an S3-compatible service as endpoint"
        ));
    }
    if let Some((bare, path)) = b.split_once('/') {
        return Some(format!(
            "{b:?} has a path; give the bare bucket name, bucket = {bare:?}, and put the folder in prefix = \"{path}\""
        ));
    }
    if !BUCKET.is_match(b)
        || b.contains("..")
        || IPV4.is_match(b)
        || b.starts_with("xn--")
        || b.ends_with("-s3alias")
    {
        return Some(format!(
            "{b:?} is not a valid bucket name; bucket names are 3 to 63 lower-case letters, digits, `.` and `-`, starting and ending with a letter or digit"
        ));
    }
    None
}

/// Checks a bucket, its region and folder, and the identity to reach it with; `at` is the
/// table (`source` or `target`) the keys are reported under, `verb` what is done there.
pub fn validate(s: RawS3Location, at: &str, verb: &str, p: &mut Problems<'_>) -> Option<S3Location> {
    let before = p.count();
    let bucket = match s.bucket {
        Some(b) => {
            if let Some(problem) = bucket_problem(&b) {
                p.add(&format!("{at}.bucket"), problem);
            }
            b
        }
        None => {
            p.add(
                &format!("{at}.bucket"),
                format!("missing; name the bucket to {verb}, e.g. bucket = \"acme-exports\""),
            );
            String::new()
        }
    };
    let region = match s.region {
        Some(r) if REGION.is_match(&r) => r,
        Some(r) => {
            p.add(
                &format!("{at}.region"),
                format!("{r:?} is not an AWS region; use a name like \"us-east-1\""),
            );
            r
        }
        None => {
            p.add(
                &format!("{at}.region"),
                "missing; give the bucket's region, e.g. region = \"us-east-1\"",
            );
            String::new()
        }
    };
    let prefix = s.prefix.unwrap_or_default();
    if prefix.starts_with('/') {
        p.add(
            &format!("{at}.prefix"),
            format!(
                "{prefix:?} starts with `/`; S3 keys have no leading slash, use {:?}",
                prefix.trim_start_matches('/')
            ),
        );
    }
    if let Some(arn) = &s.role_arn
        && !ROLE_ARN.is_match(arn)
    {
        p.add(
            &format!("{at}.role_arn"),
            format!("{arn:?} is not an IAM role ARN; it looks like \"arn:aws:iam::123456789012:role/s3-importd-acme\""),
        );
    }
    if let Some(id) = &s.external_id {
        if !EXTERNAL_ID.is_match(id) {
            p.add(
                &format!("{at}.external_id"),
                "must be 2 to 1224 characters of letters, digits and + = , . @ : / _ -",
            );
        }
        if s.role_arn.is_none() {
            p.add(
                &format!("{at}.external_id"),
                "is sent with AssumeRole, so it needs role_arn as well",
            );
        }
    }
    if s.external_id_required.is_some() && s.role_arn.is_none() {
        p.add(
            &format!("{at}.external_id_required"),
            "applies to the role of role_arn, which is not set; remove it",
        );
    }
    if let Some(owner) = &s.expected_bucket_owner
        && !(owner.len() == 12 && owner.bytes().all(|b| b.is_ascii_digit()))
    {
        p.add(
            &format!("{at}.expected_bucket_owner"),
            format!(
                "{owner:?} is not an AWS account ID; give the 12 digits of the account that owns the bucket"
            ),
        );
    }
    for (key, url) in [("endpoint", &s.endpoint), ("sts_endpoint", &s.sts_endpoint)] {
        let Some(e) = url else { continue };
        if !(e.starts_with("http://") || e.starts_with("https://")) || e.contains(char::is_whitespace) {
            p.add(
                &format!("{at}.{key}"),
                format!("{e:?} is not an http:// or https:// URL"),
            );
        }
        // Every S3 and STS request carries credentials (signatures, session tokens).
        if !s.allow_insecure_http.unwrap_or(false)
            && let Some(host) = crate::text::plaintext_to_remote(e)
        {
            p.add(
                &format!("{at}.{key}"),
                format!("sends AWS credentials (signed requests, session tokens) over plain http to {host}; use https://, or set allow_insecure_http = true if the network between is trusted"),
            );
        }
    }
    if s.sts_endpoint.is_some() && s.role_arn.is_none() {
        p.add(
            &format!("{at}.sts_endpoint"),
            "is where AssumeRole goes, and no role_arn is set; remove it",
        );
    }
    (p.count() == before).then_some(S3Location {
        bucket,
        region,
        prefix,
        role_arn: s.role_arn,
        external_id: s.external_id,
        external_id_required: s.external_id_required.unwrap_or(true),
        expected_bucket_owner: s.expected_bucket_owner,
        endpoint: s.endpoint,
        sts_endpoint: s.sts_endpoint,
        force_path_style: s.force_path_style.unwrap_or(false),
    })
}

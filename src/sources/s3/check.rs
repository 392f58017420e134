//! The `s3` source's part of `check`: credentials, AssumeRole with the external ID, and the
//! bucket with its region, each a step with the fix to try when it fails.

use crate::aws::AwsError;
use crate::aws::location::S3Location;
use crate::probe::Report;
use aws_sdk_s3::config::ProvideCredentials;
use aws_sdk_s3::error::ProvideErrorMetadata;

/// Credentials, AssumeRole, and the bucket with its region. Returns whether the bucket can be
/// listed, which the later steps need.
pub(super) async fn access(report: &mut Report, connection: &str, spec: &S3Location) -> bool {
    let base = crate::aws::base_config(&spec.region).await;
    let credentials = match base.credentials_provider() {
        Some(provider) => provider
            .provide_credentials()
            .await
            .map_err(|e| crate::aws::cause_chain(&e)),
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
        let sts = aws_sdk_sts::Client::new(&crate::aws::sts_config(&base, spec));
        let mut request = sts
            .assume_role()
            .role_arn(role)
            .role_session_name(crate::aws::session_name(connection));
        if let Some(id) = &spec.external_id {
            request = request.external_id(id);
        }
        match request.send().await {
            Ok(_) => report.ok(
                "assume role",
                format!("{role} as session {}", crate::aws::session_name(connection)),
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
                report.failed("assume role", crate::aws::cause_chain(&e), fix);
                report.skipped("bucket", "the role");
                return false;
            }
        }
    }
    let client = crate::aws::client(connection, spec).await;
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
fn explain_bucket_error(e: &AwsError, spec: &S3Location) -> (String, String) {
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

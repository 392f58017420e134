//! The AWS SDK set up the way every part of s3-importd uses it: the default credential chain
//! or AssumeRole with a connection's role and external ID (the SDK's provider caches and
//! refreshes the credentials), standard retries and time-outs, and errors made readable.
//!
//! Shared by the S3 source, the S3 target and the `check` and `policy` commands. Nothing here
//! lists or reads objects.

use crate::config::S3Spec;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::Region;
use aws_sdk_s3::error::SdkError;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use std::time::Duration;

/// How many times the SDK tries one request before giving up (it backs off between tries).
const MAX_ATTEMPTS: u32 = 5;

/// The AssumeRole session name for a connection: visible in CloudTrail, so it names the
/// daemon and the connection (at most 64 characters).
pub fn session_name(connection: &str) -> String {
    let mut name = format!("s3-importd-{connection}");
    name.truncate(64);
    name
}

/// The shared AWS configuration for a region: the default credential chain, standard retries
/// and time-outs.
pub async fn base_config(region: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .read_timeout(Duration::from_secs(60))
                .build(),
        )
        .load()
        .await
}

pub use crate::text::cause_chain;

/// The ARN of the identity the default credential chain resolves to (`sts:GetCallerIdentity`),
/// asked of the STS endpoint of `spec`.
pub async fn caller_arn(spec: &S3Spec) -> Result<String, String> {
    let base = base_config(&spec.region).await;
    let sts = aws_sdk_sts::Client::new(&sts_config(&base, spec));
    match sts.get_caller_identity().send().await {
        Ok(out) => out.arn.ok_or_else(|| "the answer named no ARN".to_string()),
        Err(e) => Err(cause_chain(&e)),
    }
}

/// The configuration STS clients use for a bucket's identity: `sts_endpoint`, else
/// `AWS_ENDPOINT_URL_STS` (which the SDK reads itself), else the S3 `endpoint` (an
/// S3-compatible service such as MinIO, Ceph RGW or moto serves STS at the same address),
/// else AWS.
pub fn sts_config(base: &aws_config::SdkConfig, spec: &S3Spec) -> aws_config::SdkConfig {
    let from_env = std::env::var_os("AWS_ENDPOINT_URL_STS").is_some_and(|v| !v.is_empty());
    let endpoint = match (&spec.sts_endpoint, &spec.endpoint) {
        (Some(sts), _) => Some(sts),
        (None, Some(s3)) if !from_env => Some(s3),
        _ => None,
    };
    match endpoint {
        Some(url) => base.to_builder().endpoint_url(url).build(),
        None => base.clone(),
    }
}

/// Builds an S3 client for a bucket's region, endpoint and identity.
pub async fn client(connection: &str, spec: &S3Spec) -> Client {
    let base = base_config(&spec.region).await;
    let mut config = aws_sdk_s3::config::Builder::from(&base).force_path_style(spec.force_path_style);
    if let Some(role) = spec.role_arn.as_deref() {
        let mut provider = AssumeRoleProvider::builder(role)
            .session_name(session_name(connection))
            .configure(&sts_config(&base, spec));
        if let Some(id) = spec.external_id.as_deref() {
            provider = provider.external_id(id);
        }
        config = config.credentials_provider(provider.build().await);
    }
    if let Some(url) = spec.endpoint.as_deref() {
        config = config.endpoint_url(url);
    }
    if let Some(owner) = spec.expected_bucket_owner.as_deref() {
        config = config.interceptor(ExpectedBucketOwner(owner.to_string()));
    }
    Client::from_conf(config.build())
}

/// Sends `x-amz-expected-bucket-owner` with every request of a client, so that S3 answers
/// 403 instead of acting on a bucket of the same name that another account owns (one deleted
/// and re-created by someone else, or a mistyped name). One interceptor rather than the
/// parameter on each call, so that no request of the source, the target or `check` can
/// forget it.
#[derive(Debug)]
struct ExpectedBucketOwner(String);

impl aws_sdk_s3::config::Intercept for ExpectedBucketOwner {
    fn name(&self) -> &'static str {
        "ExpectedBucketOwner"
    }

    fn modify_before_signing(
        &self,
        context: &mut aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextMut<'_>,
        _components: &aws_sdk_s3::config::RuntimeComponents,
        _cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        context
            .request_mut()
            .headers_mut()
            .insert("x-amz-expected-bucket-owner", self.0.clone());
        Ok(())
    }
}

/// One line for a failed S3 request, for people: the operation, the HTTP status, S3's error
/// code and message, the request ID (what AWS support asks for), and a fix chosen by the
/// code. Never the SDK's `Debug` dump of the response. Errors without a response (time-outs,
/// the network, credentials) are their cause chain.
pub fn describe<E>(operation: &str, err: &SdkError<E, HttpResponse>) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_sdk_s3::error::ProvideErrorMetadata;
    let Some(response) = err.raw_response() else {
        return format!("{operation}: {}", cause_chain(err));
    };
    let status = response.status().as_u16();
    let code = err.code();
    let mut line = format!("{operation}: HTTP {status}");
    if let Some(code) = code {
        line.push_str(&format!(" {code}"));
    }
    if let Some(message) = err.message().filter(|m| !m.is_empty()) {
        line.push_str(&format!(": {}", crate::text::excerpt(message)));
    }
    let request_id = response
        .headers()
        .get("x-amz-request-id")
        .or_else(|| response.headers().get("x-amzn-requestid"));
    if let Some(id) = request_id {
        line.push_str(&format!(" (request ID {})", crate::text::excerpt(id)));
    }
    let region = response.headers().get("x-amz-bucket-region");
    if let Some(fix) = fix_for(operation, status, code, region) {
        line.push_str(&format!("; {fix}"));
    }
    line
}

/// What to do about a failed S3 request, by its error code (and status).
fn fix_for(operation: &str, status: u16, code: Option<&str>, bucket_region: Option<&str>) -> Option<String> {
    let fix = match code {
        Some("AccessDenied" | "AllAccessDisabled") if operation.starts_with("List") || operation == "GetObject" => {
            "the identity may not read this folder: attach the permission policy `s3-importd policy NAME` prints".to_string()
        }
        Some("AccessDenied") => {
            "the identity lacks the permission: compare its policies with those `s3-importd policy NAME` prints".to_string()
        }
        Some("NoSuchBucket") => "the bucket does not exist: check `bucket` (the bare name)".to_string(),
        Some("PermanentRedirect" | "AuthorizationHeaderMalformed" | "IllegalLocationConstraintException") => {
            match bucket_region {
                Some(r) => format!("the bucket is in region {r}: set region = \"{r}\""),
                None => "the bucket is in another region: check `region`".to_string(),
            }
        }
        Some("InvalidAccessKeyId" | "SignatureDoesNotMatch" | "ExpiredToken" | "InvalidToken") => {
            "the credentials are not valid here: check the identity s3-importd runs as (and `endpoint`)".to_string()
        }
        Some("SlowDown") => "S3 is throttling this prefix: the request is retried, and the next run goes on".to_string(),
        Some("InvalidObjectState") => {
            "the object is archived (Glacier or Deep Archive): restore it, or exclude it with `exclude`".to_string()
        }
        Some("PreconditionFailed") => "the object changed since it was listed: the next run imports the new version".to_string(),
        _ if status == 301 => match bucket_region {
            Some(r) => format!("the bucket is in region {r}: set region = \"{r}\""),
            None => "the bucket is in another region: check `region`".to_string(),
        },
        _ if status >= 500 => "the service failed: the next run tries again".to_string(),
        _ => return None,
    };
    Some(fix)
}

/// Whether an SDK error is worth trying again later: throttling, 5xx, time-outs, the network.
pub fn is_transient<E>(err: &SdkError<E, HttpResponse>) -> bool {
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(e) => {
            let status = e.raw().status().as_u16();
            status >= 500 || status == 429 || status == 408
        }
        _ => false,
    }
}

/// The HTTP status of a failed request, when a response came back.
pub fn http_status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

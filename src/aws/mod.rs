//! The AWS SDK set up the way every part of s3-importd uses it: the default credential chain
//! or AssumeRole with a connection's role and external ID (the SDK's provider caches and
//! refreshes the credentials), standard retries and time-outs, and errors made readable.
//!
//! Shared by the S3 source, the S3 target, event mode's SQS client and the `check` and `policy` commands. Nothing here
//! lists or reads objects.

pub mod location;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::Region;
use aws_sdk_s3::error::SdkError;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use location::S3Location;
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
pub async fn caller_arn(spec: &S3Location) -> Result<String, String> {
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
pub fn sts_config(base: &aws_config::SdkConfig, spec: &S3Location) -> aws_config::SdkConfig {
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

/// The connection's role as a credentials provider (AssumeRole with its external ID, cached
/// and refreshed by the SDK), when it has one; else the default chain of `base` applies.
async fn assumed_role(
    connection: &str,
    spec: &S3Location,
    base: &aws_config::SdkConfig,
) -> Option<AssumeRoleProvider> {
    let role = spec.role_arn.as_deref()?;
    let mut provider = AssumeRoleProvider::builder(role)
        .session_name(session_name(connection))
        .configure(&sts_config(base, spec));
    if let Some(id) = spec.external_id.as_deref() {
        provider = provider.external_id(id);
    }
    Some(provider.build().await)
}

/// Builds an SQS client for event mode's queue: the region named in the queue's host
/// (`sqs.REGION.amazonaws.com`, else the bucket's), the scheme, host and port of `queue_url`
/// as its endpoint (so that a queue on 127.0.0.1 works unchanged), and the connection's role.
pub async fn sqs_client(connection: &str, spec: &S3Location, queue_url: &url::Url) -> aws_sdk_sqs::Client {
    let region = queue_url
        .host_str()
        .and_then(|h| h.strip_prefix("sqs."))
        .and_then(|h| h.split('.').next())
        .filter(|r| !r.is_empty())
        .unwrap_or(&spec.region)
        .to_string();
    let base = base_config(&region).await;
    let mut config = aws_sdk_sqs::config::Builder::from(&base);
    if let Some(provider) = assumed_role(connection, spec, &base).await {
        config = config.credentials_provider(provider);
    }
    let endpoint = queue_url.origin().ascii_serialization();
    aws_sdk_sqs::Client::from_conf(config.endpoint_url(endpoint).build())
}

/// Builds an S3 client for a bucket's region, endpoint and identity.
pub async fn client(connection: &str, spec: &S3Location) -> Client {
    let base = base_config(&spec.region).await;
    let mut config = aws_sdk_s3::config::Builder::from(&base).force_path_style(spec.force_path_style);
    if let Some(provider) = assumed_role(connection, spec, &base).await {
        config = config.credentials_provider(provider);
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

/// A failed AWS request, kept as data: what went wrong is decided from the status and the
/// error code (never from a message's text), and [`std::fmt::Display`] gives the one line
/// people see — the operation, the HTTP status, the error code and message, the request ID
/// (what AWS support asks for), and a fix chosen by the code. Never the SDK's `Debug` dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsError {
    pub operation: &'static str,
    /// The HTTP status, when a response came back.
    pub status: Option<u16>,
    pub code: Option<String>,
    pub message: Option<String>,
    pub request_id: Option<String>,
    /// The `x-amz-bucket-region` header, for a request sent to the wrong region.
    pub bucket_region: Option<String>,
    /// For a failure without a response (a time-out, the network, credentials): its causes.
    pub cause: Option<String>,
    /// Whether the role in front of the request could not be assumed (the failure was in
    /// getting credentials from STS).
    pub assume_role: bool,
    transient: bool,
}

impl AwsError {
    /// The data of an SDK error.
    pub fn of<E>(operation: &'static str, err: &SdkError<E, HttpResponse>) -> AwsError
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        use aws_sdk_s3::error::ProvideErrorMetadata;
        let transient = is_transient(err);
        let Some(response) = err.raw_response() else {
            // STS's refusal of the role, read as data, rather than the provider's wrapping of
            // it (which shows the STS error's debug output).
            let refusal = sts_refusal(err);
            let cause = match &refusal {
                Some(sts) => sts.summary(),
                None => cause_chain(err),
            };
            let assume_role = refusal.is_some() || is_credentials_failure(err);
            return AwsError {
                operation,
                status: None,
                code: None,
                message: None,
                request_id: None,
                bucket_region: None,
                cause: Some(cause),
                assume_role,
                // Credentials STS refused stay refused: not worth trying again soon.
                transient: transient && !assume_role,
            };
        };
        let header = |name: &str| response.headers().get(name).map(crate::text::excerpt);
        AwsError {
            operation,
            status: Some(response.status().as_u16()),
            code: err.code().map(str::to_string),
            message: err.message().filter(|m| !m.is_empty()).map(crate::text::excerpt),
            request_id: header("x-amz-request-id").or_else(|| header("x-amzn-requestid")),
            bucket_region: header("x-amz-bucket-region"),
            cause: None,
            assume_role: false,
            transient,
        }
    }

    /// Whether trying the same request again soon may succeed: throttling, 5xx, time-outs,
    /// the network. A refusal (403, 404, a bad region) never is.
    pub fn is_transient(&self) -> bool {
        self.transient
    }

    /// What to do about it, when the code says.
    pub fn fix(&self) -> Option<String> {
        if self.assume_role {
            return Some(
                "the role could not be assumed: check that its trust policy names this identity and the connection's external_id (`s3-importd policy NAME` prints it), and `sts_endpoint` if STS is not AWS's".to_string(),
            );
        }
        fix_for(
            self.operation,
            self.status?,
            self.code.as_deref(),
            self.bucket_region.as_deref(),
        )
    }
}

impl AwsError {
    /// The line without its fix: what failed, and how.
    pub fn summary(&self) -> String {
        let mut line = self.operation.to_string();
        match self.status {
            Some(status) => line.push_str(&format!(": HTTP {status}")),
            None => line.push_str(&format!(": {}", self.cause.as_deref().unwrap_or("no response"))),
        }
        if let Some(code) = &self.code {
            line.push_str(&format!(" {code}"));
        }
        if let Some(message) = &self.message {
            line.push_str(&format!(": {message}"));
        }
        if let Some(id) = &self.request_id {
            line.push_str(&format!(" (request ID {id})"));
        }
        line
    }
}

impl std::fmt::Display for AwsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.summary())?;
        if let Some(fix) = self.fix() {
            write!(f, "; {fix}")?;
        }
        Ok(())
    }
}

impl std::error::Error for AwsError {}

/// The AssumeRole call that failed under a request, when that is why it failed.
fn sts_refusal<E>(err: &SdkError<E, HttpResponse>) -> Option<AwsError>
where
    E: std::error::Error + 'static,
{
    type AssumeRoleFailure = SdkError<aws_sdk_sts::operation::assume_role::AssumeRoleError, HttpResponse>;
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = next {
        if let Some(sts) = e.downcast_ref::<AssumeRoleFailure>() {
            return Some(AwsError::of("AssumeRole", sts));
        }
        next = e.source();
    }
    None
}

/// Whether a failure without a response happened while getting credentials (assuming the
/// connection's role): the SDK reports it as a dispatch failure caused by a credentials error.
fn is_credentials_failure<E>(err: &SdkError<E, HttpResponse>) -> bool
where
    E: std::error::Error + 'static,
{
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = next {
        if e.is::<aws_credential_types::provider::error::CredentialsError>() {
            return true;
        }
        next = e.source();
    }
    false
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

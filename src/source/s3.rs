//! An S3 bucket (or an S3-compatible service) as a source, on the official AWS SDK.
//!
//! Credentials come from the default chain, or from AssumeRole with the connection's
//! `role_arn` and `external_id` (the SDK's provider caches and refreshes them). Listing walks
//! every ListObjectsV2 page; reading streams the body and pins the listed ETag with `If-Match`
//! so that a run never imports bytes of a version other than the one it recorded.

use super::{ObjectReader, Source, SourceError};
use crate::config::S3Spec;
use crate::select::ObjectMeta;
use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::Region;
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_smithy_runtime_api::http::Response as HttpResponse;
use chrono::{DateTime, TimeZone, Utc};
use std::time::Duration;

/// How many times the SDK tries one request before giving up (it backs off between tries).
const MAX_ATTEMPTS: u32 = 5;

/// An S3 bucket and folder.
pub struct S3Source {
    client: Client,
    bucket: String,
    prefix: String,
}

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

/// An error and its causes in one line (`a: b: c`), for people: the SDK's own context display
/// also prints the raw response, which is no help in a terminal.
pub fn cause_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        // Wrappers often repeat their cause's text; keep each piece once.
        if !parts.last().is_some_and(|last| last.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

/// The ARN of the identity the default credential chain resolves to (`sts:GetCallerIdentity`).
pub async fn caller_arn(region: &str) -> Result<String, String> {
    let base = base_config(region).await;
    let sts = aws_sdk_sts::Client::new(&base);
    match sts.get_caller_identity().send().await {
        Ok(out) => out.arn.ok_or_else(|| "the answer named no ARN".to_string()),
        Err(e) => Err(cause_chain(&e)),
    }
}

/// Builds an S3 client for a bucket's region, endpoint and identity.
pub async fn client(
    connection: &str,
    region: &str,
    endpoint: Option<&str>,
    force_path_style: bool,
    role_arn: Option<&str>,
    external_id: Option<&str>,
) -> Client {
    let base = base_config(region).await;
    let mut config = aws_sdk_s3::config::Builder::from(&base).force_path_style(force_path_style);
    if let Some(role) = role_arn {
        let mut provider = AssumeRoleProvider::builder(role)
            .session_name(session_name(connection))
            .configure(&base);
        if let Some(id) = external_id {
            provider = provider.external_id(id);
        }
        config = config.credentials_provider(provider.build().await);
    }
    if let Some(url) = endpoint {
        config = config.endpoint_url(url);
    }
    Client::from_conf(config.build())
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

fn http_status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

/// Converts S3's LastModified to chrono.
fn to_chrono(t: &aws_sdk_s3::primitives::DateTime) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(t.secs(), t.subsec_nanos()).single()
}

impl S3Source {
    pub async fn new(connection: &str, spec: &S3Spec) -> S3Source {
        let client = client(
            connection,
            &spec.region,
            spec.endpoint.as_deref(),
            spec.force_path_style,
            spec.role_arn.as_deref(),
            spec.external_id.as_deref(),
        )
        .await;
        S3Source {
            client,
            bucket: spec.bucket.clone(),
            prefix: spec.prefix.clone(),
        }
    }

    /// The client, for commands that make their own requests (`check`).
    pub fn client(&self) -> &Client {
        &self.client
    }
}

#[async_trait]
impl Source for S3Source {
    async fn list(&self, visit: &mut (dyn FnMut(ObjectMeta) + Send)) -> Result<u64, SourceError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&self.prefix)
            .into_paginator()
            .send();
        let mut count = 0;
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| SourceError::List {
                location: self.location(),
                message: DisplayErrorContext(&e).to_string(),
            })?;
            for object in page.contents() {
                let (Some(key), Some(lm)) = (object.key(), object.last_modified().and_then(to_chrono)) else {
                    continue;
                };
                count += 1;
                visit(ObjectMeta {
                    key: key.to_string(),
                    etag: object.e_tag().unwrap_or_default().trim_matches('"').to_string(),
                    last_modified: lm,
                    size: object.size().unwrap_or(0).max(0) as u64,
                });
            }
        }
        Ok(count)
    }

    async fn open(&self, object: &ObjectMeta) -> Result<ObjectReader, SourceError> {
        let mut request = self.client.get_object().bucket(&self.bucket).key(&object.key);
        if !object.etag.is_empty() {
            request = request.if_match(format!("\"{}\"", object.etag));
        }
        let response = request.send().await.map_err(|e| {
            if http_status(&e) == Some(412) {
                return SourceError::Changed {
                    location: format!("s3://{}/", self.bucket),
                    key: object.key.clone(),
                };
            }
            SourceError::Read {
                location: format!("s3://{}/", self.bucket),
                key: object.key.clone(),
                transient: is_transient(&e),
                message: DisplayErrorContext(&e).to_string(),
            }
        })?;
        Ok(Box::new(response.body.into_async_read()))
    }

    fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }
}

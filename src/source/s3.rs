//! An S3 bucket (or an S3-compatible service) as a source, on the official AWS SDK.
//!
//! The client comes from [`crate::aws`] (default chain, or AssumeRole with the connection's
//! `role_arn` and `external_id`). Listing walks
//! every ListObjectsV2 page; reading streams the body and pins the listed ETag with `If-Match`
//! so that a run never imports bytes of a version other than the one it recorded, and checks
//! the bytes against the listed size, the MD5 ETag of a single-part object and the object's
//! S3 checksum ([`super::verify`]).

use super::verify::{Digest, Verified};
use super::{ObjectReader, Source, SourceError};
use crate::aws::{client, http_status, is_transient};
use crate::config::S3Spec;
use crate::select::ObjectMeta;
use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::types::{ChecksumMode, ServerSideEncryption};
use chrono::{DateTime, TimeZone, Utc};

/// An S3 bucket and folder.
pub struct S3Source {
    client: Client,
    bucket: String,
    prefix: String,
}

/// Converts S3's LastModified to chrono.
fn to_chrono(t: &aws_sdk_s3::primitives::DateTime) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(t.secs(), t.subsec_nanos()).single()
}

impl S3Source {
    pub async fn new(connection: &str, spec: &S3Spec) -> S3Source {
        let client = client(connection, spec).await;
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
        // The SDK checks the body against the object's S3 checksum when it has one (the
        // checksum is sent only when asked for); the size and the MD5 ETag are checked here.
        let mut request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&object.key)
            .checksum_mode(ChecksumMode::Enabled);
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
        // A KMS- or customer-key-encrypted object's ETag is not the MD5 of its content.
        let encrypted = response.sse_customer_algorithm().is_some()
            || response
                .server_side_encryption()
                .is_some_and(|sse| !matches!(sse, ServerSideEncryption::Aes256));
        let digest = if encrypted {
            Digest::None
        } else {
            Digest::from_etag(&object.etag)
        };
        let body = Verified::new(response.body.into_async_read(), object.size, digest);
        Ok(ObjectReader::Stream(Box::new(body)))
    }

    fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }
}

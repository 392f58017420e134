//! An S3 bucket (or an S3-compatible service) as a source, on the official AWS SDK.
//!
//! The client comes from [`crate::aws`] (default chain, or AssumeRole with the connection's
//! `role_arn` and `external_id`). Listing walks
//! every ListObjectsV2 page, asking for URL-encoded keys so that a key holding a control
//! character (which XML 1.0 cannot carry) does not make a page unreadable; reading streams the body and pins the listed ETag with `If-Match`
//! so that a run never imports bytes of a version other than the one it recorded, and checks
//! the bytes against the listed size, the MD5 ETag of a single-part object and the object's
//! S3 checksum ([`super::verify`]).

mod check;
mod config;
pub use config::*;

use super::verify::{Digest, Verified};
use super::{ObjectReader, Source, SourceError};
use crate::aws::{AwsError, client, http_status};
use crate::select::ObjectMeta;
use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::types::{ChecksumMode, EncodingType, ServerSideEncryption};
use chrono::{DateTime, TimeZone, Utc};

/// An S3 bucket and folder.
pub struct S3Source {
    client: Client,
    bucket: String,
    prefix: String,
    /// Folders listed at once (`max_concurrent_listings`).
    concurrency: usize,
}

/// Converts S3's LastModified to chrono.
fn to_chrono(t: &aws_sdk_s3::primitives::DateTime) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(t.secs(), t.subsec_nanos()).single()
}

/// A key as listed: URL-decoded when the page says its keys are encoded (`+` is a space, as
/// S3 writes it; a literal `+` arrives as `%2B`), else as it is. `None` when the decoded
/// bytes are not UTF-8.
pub fn listed_key(raw: &str, encoded: bool) -> Option<String> {
    if !encoded {
        return Some(raw.to_string());
    }
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|key| key.into_owned())
}

impl S3Source {
    pub async fn new(connection: &str, spec: &S3SourceSpec) -> S3Source {
        let client = client(connection, &spec.location).await;
        S3Source {
            client,
            bucket: spec.location.bucket.clone(),
            prefix: spec.location.prefix.clone(),
            concurrency: spec.max_concurrent_listings.max(1),
        }
    }

    /// The client, for commands that make their own requests (`check`).
    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// How many folder levels below the prefix are split into partitions, at most.
const PARTITION_DEPTH: usize = 2;

/// One page of a listing: its objects and, for a listing with a delimiter, its folders.
struct Page {
    objects: Vec<ObjectMeta>,
    folders: Vec<String>,
}

impl S3Source {
    /// Every page under `prefix`, one ListObjectsV2 request at a time; with `delimiter`, only
    /// the objects directly under it and the folders below it.
    fn pages(
        &self,
        prefix: String,
        delimiter: bool,
    ) -> impl futures::Stream<Item = Result<Page, SourceError>> + '_ {
        let mut request = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .encoding_type(EncodingType::Url);
        if delimiter {
            request = request.delimiter("/");
        }
        let paginator = request.into_paginator().send();
        futures::stream::unfold(paginator, move |mut paginator| async move {
            let page = paginator.next().await?;
            Some((self.page(page), paginator))
        })
    }

    /// The objects and folders of one answer, keys decoded.
    fn page(
        &self,
        page: Result<
            aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output,
            aws_sdk_s3::error::SdkError<
                aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Error,
                aws_smithy_runtime_api::http::Response,
            >,
        >,
    ) -> Result<Page, SourceError> {
        let page = page.map_err(|e| SourceError::List {
            location: self.location(),
            cause: AwsError::of("ListObjectsV2", &e).into(),
        })?;
        // A server that does not support encoding-type answers with plain keys and says
        // so by leaving EncodingType out; only an encoded page is decoded.
        let encoded = page.encoding_type() == Some(&EncodingType::Url);
        let decode = |raw: &str| {
            listed_key(raw, encoded).ok_or_else(|| SourceError::List {
                location: self.location(),
                // S3 keys are UTF-8, so only a broken server gets here; the key cannot be
                // asked for by name either, so it is reported, not silently lost.
                cause: super::Cause::lasting(format!(
                    "the server listed a key that is not UTF-8 once URL-decoded: {}",
                    crate::text::excerpt(raw)
                )),
            })
        };
        let mut objects = Vec::with_capacity(page.contents().len());
        for object in page.contents() {
            let (Some(raw), Some(lm)) = (object.key(), object.last_modified().and_then(to_chrono)) else {
                continue;
            };
            objects.push(ObjectMeta {
                key: decode(raw)?,
                etag: object.e_tag().unwrap_or_default().trim_matches('"').to_string(),
                last_modified: lm,
                size: object.size().unwrap_or(0).max(0) as u64,
                stamp: None,
            });
        }
        let mut folders = Vec::new();
        for folder in page.common_prefixes() {
            if let Some(raw) = folder.prefix() {
                folders.push(decode(raw)?);
            }
        }
        Ok(Page { objects, folders })
    }
}

#[async_trait]
impl Source for S3Source {
    /// Lists the folder in partitions: the folders below the prefix are found with a
    /// delimiter (down to [`PARTITION_DEPTH`] levels, until there are enough of them), the
    /// objects found on the way are visited, and then every folder is listed whole,
    /// `max_concurrent_listings` at a time. Every key is visited exactly once, in no
    /// particular order (runs sort their candidates).
    async fn list(&self, visit: &mut (dyn FnMut(ObjectMeta) + Send)) -> Result<u64, SourceError> {
        use futures::{StreamExt, TryStreamExt};
        let mut count = 0;
        let mut frontier = vec![self.prefix.clone()];
        if self.concurrency > 1 {
            for _ in 0..PARTITION_DEPTH {
                if frontier.len() >= self.concurrency {
                    break;
                }
                let mut folders = Vec::new();
                let mut pages = futures::stream::iter(std::mem::take(&mut frontier))
                    .map(|prefix| Box::pin(self.pages(prefix, true)))
                    .flatten_unordered(self.concurrency);
                while let Some(page) = pages.try_next().await? {
                    count += page.objects.len() as u64;
                    page.objects.into_iter().for_each(&mut *visit);
                    folders.extend(page.folders);
                }
                frontier = folders;
            }
        }
        let mut pages = futures::stream::iter(frontier)
            .map(|prefix| Box::pin(self.pages(prefix, false)))
            .flatten_unordered(self.concurrency);
        while let Some(page) = pages.try_next().await? {
            count += page.objects.len() as u64;
            page.objects.into_iter().for_each(&mut *visit);
        }
        Ok(count)
    }

    /// One HeadObject: the current version's ETag, LastModified and size; 404 is `None`.
    async fn stat(&self, key: &str) -> Result<Option<ObjectMeta>, SourceError> {
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await;
        let head = match head {
            Ok(head) => head,
            Err(e) if http_status(&e) == Some(404) => return Ok(None),
            Err(e) => {
                return Err(SourceError::Read {
                    location: format!("s3://{}/", self.bucket),
                    key: key.to_string(),
                    cause: AwsError::of("HeadObject", &e).into(),
                });
            }
        };
        // A delete marker answers 404 above; an object without LastModified is not one S3 makes.
        let Some(last_modified) = head.last_modified().and_then(to_chrono) else {
            return Ok(None);
        };
        Ok(Some(ObjectMeta {
            key: key.to_string(),
            etag: head.e_tag().unwrap_or_default().trim_matches('"').to_string(),
            last_modified,
            size: head.content_length().unwrap_or(0).max(0) as u64,
            stamp: None,
        }))
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
                cause: AwsError::of("GetObject", &e).into(),
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

#[cfg(test)]
mod tests {
    use super::listed_key;

    #[test]
    fn listed_keys_are_decoded_only_when_the_page_says_so() {
        let cases: &[(&str, bool, Option<&str>)] = &[
            ("in/a.csv", true, Some("in/a.csv")),
            ("in/a%01b.csv", true, Some("in/a\u{1}b.csv")),
            ("in/a+b.csv", true, Some("in/a b.csv")),
            ("in/a%2Bb.csv", true, Some("in/a+b.csv")),
            ("in/a%20b.csv", true, Some("in/a b.csv")),
            ("in/%C3%A9t%C3%A9.csv", true, Some("in/été.csv")),
            (
                "in/%E2%80%8B%0A%1B%5B31m.csv",
                true,
                Some("in/\u{200b}\n\u{1b}[31m.csv"),
            ),
            // A server that ignored encoding-type: the key is taken as it is.
            ("in/a+b%2B.csv", false, Some("in/a+b%2B.csv")),
            ("in/%FF.csv", true, None),
        ];
        for (raw, encoded, want) in cases {
            assert_eq!(
                listed_key(raw, *encoded).as_deref(),
                *want,
                "{raw} encoded={encoded}"
            );
        }
    }
}

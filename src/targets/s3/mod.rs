//! The `s3` target, the destination: one object per load in a bucket, written by the same
//! [`writer`] as the `file` target and streamed with a multipart upload in parts of
//! [`PART_SIZE`], so memory stays flat whatever the load's size.
//!
//! Exactly once: [`S3Target::prepare`] fixes a key no object has before anything is
//! uploaded, and the run records it as a pending load. An object appears under that key only
//! when CompleteMultipartUpload succeeds, all at once; so after a crash the key either holds
//! the whole load ([`S3Target::recover`] says delivered) or nothing, and then any unfinished
//! upload to it is aborted and the same load is imported again to the same key.
//!
//! Fenced: CompleteMultipartUpload carries `If-None-Match: *`, so it never replaces an
//! object. A daemon woken from a pause, after another took its load over and published it,
//! is answered 412; it then compares the object with what it uploaded (size, then a BLAKE3
//! digest of the bytes): the same bytes are the same load, delivered; other bytes are
//! [`TargetError::OutputConflict`].

mod config;
pub use config::*;

use super::{Delivery, LoadInfo, LoadPart, Refused, Target, TargetError, writer};
use crate::aws::{AwsError, http_status};

use crate::keytemplate::with_suffix;
use crate::spool::SpoolSlice;
use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use std::io::{self, Write};
use std::sync::Arc;
use tokio::sync::mpsc;

/// The size of every part but the last (S3 wants at least 5 MiB).
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// How many `-N` suffixes are tried before giving up on a free key.
const MAX_SUFFIX: u32 = 1000;

/// Writes loads as objects into a bucket.
pub struct S3Target {
    client: Client,
    spec: S3TargetSpec,
    /// The template's field names: the CSV header.
    /// The connection's template: the CSV header, the Parquet columns.
    template: Arc<crate::template::Template>,
}

impl S3Target {
    pub async fn new(
        connection: &str,
        spec: S3TargetSpec,
        template: Arc<crate::template::Template>,
    ) -> S3Target {
        let client = crate::aws::client(connection, &spec.s3).await;
        S3Target {
            client,
            spec,
            template,
        }
    }

    fn error(&self, key: &str, error: AwsError) -> TargetError {
        TargetError::S3 {
            bucket: self.spec.s3.bucket.clone(),
            key: key.to_string(),
            part: None,
            error: Box::new(error),
        }
    }

    /// Whether an object exists under `key`.
    async fn exists(&self, key: &str) -> Result<bool, TargetError> {
        match self
            .client
            .head_object()
            .bucket(&self.spec.s3.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if http_status(&e) == Some(404) => Ok(false),
            Err(e) => Err(self.error(key, AwsError::of("HeadObject", &e))),
        }
    }

    /// Aborts every unfinished multipart upload to exactly `key`.
    async fn abort_uploads(&self, key: &str) -> Result<u32, TargetError> {
        let bucket = &self.spec.s3.bucket;
        let listed = self
            .client
            .list_multipart_uploads()
            .bucket(bucket)
            .prefix(key)
            .send()
            .await
            .map_err(|e| self.error(key, AwsError::of("ListMultipartUploads", &e)))?;
        let mut aborted = 0;
        for upload in listed.uploads() {
            let (Some(k), Some(id)) = (upload.key(), upload.upload_id()) else {
                continue;
            };
            if k != key {
                continue;
            }
            self.client
                .abort_multipart_upload()
                .bucket(bucket)
                .key(k)
                .upload_id(id)
                .send()
                .await
                .map_err(|e| self.error(key, AwsError::of("AbortMultipartUpload", &e)))?;
            aborted += 1;
        }
        Ok(aborted)
    }

    /// Streams the load into an open multipart upload and completes it.
    async fn upload(&self, key: &str, upload_id: &str, spools: Vec<SpoolSlice>) -> Result<(), TargetError> {
        let bucket = &self.spec.s3.bucket;
        // The writer runs on the blocking pool and hands over full parts; one part waits in
        // the channel while another is uploaded, so at most three are in memory.
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(1);
        let (format, template) = (self.spec.format, self.template.clone());
        let producer = tokio::task::spawn_blocking(move || {
            let mut parts = PartWriter {
                buf: Vec::with_capacity(PART_SIZE),
                tx,
                hasher: blake3::Hasher::new(),
                len: 0,
            };
            writer::write_load(&spools, format, &template, &mut parts)?;
            parts.finish()
        });
        let mut completed = Vec::new();
        while let Some(part) = rx.recv().await {
            let number = completed.len() as i32 + 1;
            let out = self
                .client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .body(ByteStream::from(part))
                .send()
                .await
                .map_err(|e| TargetError::S3 {
                    bucket: bucket.clone(),
                    key: key.to_string(),
                    part: Some(number),
                    error: Box::new(AwsError::of("UploadPart", &e)),
                })?;
            completed.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag)
                    .build(),
            );
        }
        let (len, digest) = producer
            .await
            .map_err(|e| TargetError::Task(e.to_string()))?
            .map_err(|source| TargetError::Io {
                path: format!("s3://{bucket}/{key}").into(),
                source,
            })?;
        crate::fault::point("s3-parts-uploaded");
        let completed = self
            .client
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .if_none_match("*")
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await;
        match completed {
            Ok(_) => Ok(()),
            // The key was published meanwhile (by the daemon that took this load over).
            Err(e) if http_status(&e) == Some(412) => {
                self.abort(key, upload_id).await;
                self.compare(key, len, digest).await
            }
            Err(e) => Err(self.error(key, AwsError::of("CompleteMultipartUpload", &e))),
        }
    }

    /// Aborts an upload, quietly: an unfinished one is billed and invisible, and the lifecycle
    /// rule the README suggests removes any this misses.
    async fn abort(&self, key: &str, upload_id: &str) {
        let _ = self
            .client
            .abort_multipart_upload()
            .bucket(&self.spec.s3.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await;
    }

    /// Whether the object under `key` is the `len` bytes whose digest is `digest`: delivered
    /// if so, a conflict if not.
    async fn compare(&self, key: &str, len: u64, digest: blake3::Hash) -> Result<(), TargetError> {
        let got = self
            .client
            .get_object()
            .bucket(&self.spec.s3.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.error(key, AwsError::of("GetObject", &e)))?;
        let found = got.content_length().unwrap_or(0).max(0) as u64;
        if found == len {
            let mut hasher = blake3::Hasher::new();
            let mut body = got.body;
            while let Some(chunk) = body.try_next().await.map_err(|e| TargetError::Io {
                path: format!("s3://{}/{key}", self.spec.s3.bucket).into(),
                source: io::Error::other(e),
            })? {
                hasher.update(&chunk);
            }
            if hasher.finalize() == digest {
                tracing::info!(output = %format!("s3://{}/{key}", self.spec.s3.bucket), "the output already holds this very load (published by a daemon that took it over); nothing replaced");
                return Ok(());
            }
        }
        Err(TargetError::OutputConflict {
            output: format!("s3://{}/{key}", self.spec.s3.bucket),
            ours: len,
            found,
        })
    }
}

/// Collects written bytes into parts of [`PART_SIZE`] and sends each full part on.
struct PartWriter {
    buf: Vec<u8>,
    tx: mpsc::Sender<Vec<u8>>,
    /// The digest and length of everything written, to recognise the load if its key turns
    /// out to be taken.
    hasher: blake3::Hasher,
    len: u64,
}

impl PartWriter {
    fn send(&mut self) -> io::Result<()> {
        let part = std::mem::replace(&mut self.buf, Vec::with_capacity(PART_SIZE));
        self.tx
            .blocking_send(part)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped"))
    }

    /// Sends the last part (a load always has at least one: a CSV header, or a row); the
    /// load's length and digest.
    fn finish(mut self) -> io::Result<(u64, blake3::Hash)> {
        self.send()?;
        Ok((self.len, self.hasher.finalize()))
    }
}

impl Write for PartWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = PART_SIZE - self.buf.len();
        let take = room.min(data.len());
        self.buf.extend_from_slice(&data[..take]);
        self.hasher.update(&data[..take]);
        self.len += take as u64;
        if self.buf.len() == PART_SIZE {
            self.send()?;
        }
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        // Parts leave only when full (or at the end): S3 refuses small parts but the last.
        Ok(())
    }
}

fn detail<'d>(delivery: &'d Delivery, name: &str) -> Result<&'d str, TargetError> {
    delivery
        .detail
        .get(name)
        .and_then(|v| v.as_str())
        .ok_or_else(|| TargetError::Record(format!("no {name:?} in {}", delivery.detail)))
}

#[async_trait]
impl Target for S3Target {
    async fn prepare(&self, load: &LoadInfo<'_>) -> Result<Delivery, TargetError> {
        let key = format!("{}{}", self.spec.s3.prefix, self.spec.key.expand(&load.key)?);
        for n in 1..=MAX_SUFFIX {
            let candidate = with_suffix(&key, n);
            if !self.exists(&candidate).await? {
                return Ok(Delivery {
                    output: format!("s3://{}/{candidate}", self.spec.s3.bucket),
                    detail: serde_json::json!({ "bucket": self.spec.s3.bucket, "key": candidate }),
                });
            }
        }
        Err(TargetError::NoFreeKey {
            key,
            tried: MAX_SUFFIX,
        })
    }

    async fn deliver(&self, delivery: &Delivery, parts: &[LoadPart]) -> Result<Vec<Refused>, TargetError> {
        let spools = super::spools(parts);
        let key = detail(delivery, "key")?;
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.spec.s3.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.error(key, AwsError::of("CreateMultipartUpload", &e)))?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| TargetError::S3Answer {
                bucket: self.spec.s3.bucket.clone(),
                key: key.to_string(),
                what: "CreateMultipartUpload returned no upload ID",
            })?
            .to_string();
        crate::fault::point("s3-upload-started");
        let result = self.upload(key, &upload_id, spools).await;
        if result.is_err() {
            // Never leave an unfinished upload behind (it is billed, and invisible).
            self.abort(key, &upload_id).await;
        }
        result.map(|()| Vec::new())
    }

    async fn recover(&self, delivery: &Delivery) -> Result<bool, TargetError> {
        let key = detail(delivery, "key")?;
        if self.exists(key).await? {
            return Ok(true);
        }
        self.abort_uploads(key).await?;
        Ok(false)
    }
}

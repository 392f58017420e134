//! The `s3` target's keys: the shared S3 location ([`crate::aws::location`]) and the output
//! keys it shares with `file`; their checks; and its `check` probe (a put and a delete).

use super::super::config::{OutputFormat, RawOutput, TargetContext, output};
use super::super::{Target, TargetKind};
use crate::aws::AwsError;
use crate::aws::location::{self, RawS3Location, S3Location};
use crate::config::Connection;
use crate::config::kind::{KindTable, keys_of};
use crate::config::validate::Problems;
use crate::keytemplate::KeyTemplate;
use crate::probe::Report;
use aws_sdk_s3::error::ProvideErrorMetadata;
use serde::Deserialize;

/// `[target]` of `type = "s3"`, as written: no keys of its own beyond the location and the
/// output's.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawS3Target {}

/// A bucket that receives one object per load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3TargetSpec {
    /// The bucket, folder and identity.
    pub s3: S3Location,
    pub format: OutputFormat,
    pub key: KeyTemplate,
}

#[async_trait::async_trait]
impl TargetKind for S3TargetSpec {
    fn keys() -> Vec<&'static str> {
        [keys_of::<RawS3Location>(), keys_of::<RawOutput>()].concat()
    }

    fn validate(mut table: KindTable<'_>, cx: &TargetContext<'_>, p: &mut Problems<'_>) -> Option<Self> {
        let before = p.count();
        let (format, key) = output(&mut table, cx, p);
        let raw: Option<RawS3Location> = table.part(p);
        let _: RawS3Target = table.rest(p)?;
        let s3 = location::validate(raw?, "target", "write into", p);
        (p.count() == before).then_some(S3TargetSpec {
            s3: s3?,
            format,
            key: key?,
        })
    }

    fn output(&self) -> OutputFormat {
        self.format
    }

    fn location(&self) -> Option<&S3Location> {
        Some(&self.s3)
    }

    async fn open(&self, connection: &Connection) -> Box<dyn Target> {
        Box::new(
            super::S3Target::new(
                &connection.name,
                self.clone(),
                std::sync::Arc::new(connection.template.clone()),
            )
            .await,
        )
    }

    async fn check(&self, connection: &Connection, report: &mut Report) {
        let s3 = &self.s3;
        let client = crate::aws::client(&connection.name, s3).await;
        let key = format!(
            "{}{}{}",
            s3.prefix,
            crate::policy::PROBE_PREFIX,
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
}

//! The IAM documents a connection needs, as JSON that pastes into the AWS console as it is:
//! the source role's permission policy (list the folder, read its objects, nothing else), the
//! role's trust policy (the daemon's principal may assume it, with the external ID), and for
//! an S3 destination its bucket policy and, when it assumes a role, that role's permission
//! policy.
//!
//! In event mode, also the queue's statements: reading it (in the source's permission policy),
//! S3 sending to it (the queue's access policy), and the bucket's notification configuration.
//!
//! Pure functions of names and ARNs; finding the daemon's own principal
//! (`sts:GetCallerIdentity`) is the command's job, not this module's.

use serde_json::{Value, json};

/// The policy language version every document uses.
const VERSION: &str = "2012-10-17";

/// The ARN partition of a region: `aws`, `aws-cn` or `aws-us-gov`.
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// `s3:ListBucket` on the bucket, limited to keys under `prefix` by an `s3:prefix` condition
/// when there is a prefix.
fn list_statement(sid: &str, arn: &str, prefix: &str, principal: Option<&str>) -> Value {
    let mut statement = json!({
        "Sid": sid,
        "Effect": "Allow",
    });
    if let Some(p) = principal {
        statement["Principal"] = json!({ "AWS": p });
    }
    statement["Action"] = json!("s3:ListBucket");
    statement["Resource"] = json!(arn);
    if !prefix.is_empty() {
        // Listing the folder itself sends the prefix as it is; listing below it sends longer
        // prefixes, hence both patterns.
        statement["Condition"] = json!({ "StringLike": { "s3:prefix": [prefix, format!("{prefix}*")] } });
    }
    statement
}

/// The objects under `prefix` (the whole bucket without one) as an ARN pattern. The prefix is
/// used as the source uses it: `products/` is a folder, `products` also matches
/// `products-old/…`, exactly as listing with that prefix does.
fn objects(arn: &str, prefix: &str) -> String {
    format!("{arn}/{prefix}*")
}

/// The permission policy of the role a source assumes: list the folder, read its objects.
pub fn permission_policy(bucket: &str, prefix: &str, region: &str) -> Value {
    let arn = format!("arn:{}:s3:::{bucket}", partition(region));
    json!({
        "Version": VERSION,
        "Statement": [
            list_statement("ListTheFolder", &arn, prefix, None),
            {
                "Sid": "ReadTheFolder",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": objects(&arn, prefix),
            },
        ],
    })
}

/// An SQS queue as event mode sees it: its ARN, and the account that owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueArn {
    pub arn: String,
    pub account: String,
}

/// The ARN of the queue at `queue_url` (`https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`;
/// the region is `region` for a host that does not name one), or `None` for a URL without
/// an account and a name.
pub fn queue_arn(queue_url: &str, region: &str) -> Option<QueueArn> {
    let url = url::Url::parse(queue_url).ok()?;
    let region = url
        .host_str()
        .and_then(|h| h.strip_prefix("sqs."))
        .and_then(|h| h.split('.').next())
        .filter(|r| !r.is_empty())
        .unwrap_or(region);
    let mut parts = url.path().trim_matches('/').split('/');
    let (account, name) = (parts.next()?, parts.next()?);
    if account.is_empty() || name.is_empty() || parts.next().is_some() {
        return None;
    }
    Some(QueueArn {
        arn: format!("arn:{}:sqs:{region}:{account}:{name}", partition(region)),
        account: account.to_string(),
    })
}

/// The statement that lets event mode read the queue: receive, delete, hide for longer,
/// and read its visibility timeout.
pub fn queue_statement(queue: &QueueArn) -> Value {
    json!({
        "Sid": "ReadTheEventQueue",
        "Effect": "Allow",
        "Action": [
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:ChangeMessageVisibility",
            "sqs:GetQueueAttributes",
        ],
        "Resource": queue.arn,
    })
}

/// The queue's access policy: S3 may send it the notifications of `bucket`, owned by
/// `bucket_account`, and no other bucket's.
pub fn queue_policy(queue: &QueueArn, bucket: &str, region: &str, bucket_account: &str) -> Value {
    json!({
        "Version": VERSION,
        "Statement": [{
            "Sid": "S3SendsTheBucketsEvents",
            "Effect": "Allow",
            "Principal": { "Service": "s3.amazonaws.com" },
            "Action": "sqs:SendMessage",
            "Resource": queue.arn,
            "Condition": {
                "ArnLike": { "aws:SourceArn": format!("arn:{}:s3:::{bucket}", partition(region)) },
                "StringEquals": { "aws:SourceAccount": bucket_account },
            },
        }],
    })
}

/// The bucket's notification configuration: every object created under `prefix` is sent
/// to the queue (as `aws s3api put-bucket-notification-configuration` takes it).
pub fn bucket_notification(queue: &QueueArn, prefix: &str, connection: &str) -> Value {
    let mut config = json!({
        "Id": format!("s3-importd-{connection}"),
        "QueueArn": queue.arn,
        "Events": ["s3:ObjectCreated:*"],
    });
    if !prefix.is_empty() {
        config["Filter"] = json!({ "Key": { "FilterRules": [{ "Name": "prefix", "Value": prefix }] } });
    }
    json!({ "QueueConfigurations": [config] })
}

/// The trust policy of a source role: `principal` may assume it, presenting `external_id`
/// when one is set.
pub fn trust_policy(principal: &str, external_id: Option<&str>) -> Value {
    let mut statement = json!({
        "Sid": "S3ImportdAssumesThisRole",
        "Effect": "Allow",
        "Principal": { "AWS": principal },
        "Action": "sts:AssumeRole",
    });
    if let Some(id) = external_id {
        statement["Condition"] = json!({ "StringEquals": { "sts:ExternalId": id } });
    }
    json!({ "Version": VERSION, "Statement": [statement] })
}

/// The key prefix of the probe objects `check` puts and deletes in an S3 destination's folder.
pub const PROBE_PREFIX: &str = ".s3-importd-probe-";

/// What the writer of an S3 destination may do: write objects under `prefix` (multipart
/// uploads included, and aborting them), read them back and list the folder, and delete only
/// `check`'s probe objects. With a `principal`, the statements name it (a bucket policy);
/// without, they are an identity policy.
fn destination_statements(arn: &str, prefix: &str, principal: Option<&str>) -> Vec<Value> {
    // Keys in the order the console shows them: Sid, Effect, Principal, Action, Resource.
    let allow = |sid: &str, action: Value, resource: String| {
        let mut statement = json!({ "Sid": sid, "Effect": "Allow" });
        if let Some(p) = principal {
            statement["Principal"] = json!({ "AWS": p });
        }
        statement["Action"] = action;
        statement["Resource"] = json!(resource);
        statement
    };
    vec![
        list_statement("S3ImportdListsTheFolder", arn, prefix, principal),
        allow(
            "S3ImportdWritesTheFolder",
            json!(["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"]),
            objects(arn, prefix),
        ),
        allow(
            "S3ImportdDeletesItsProbes",
            json!("s3:DeleteObject"),
            format!("{arn}/{prefix}{PROBE_PREFIX}*"),
        ),
        allow(
            "S3ImportdFindsUnfinishedUploads",
            json!("s3:ListBucketMultipartUploads"),
            arn.to_string(),
        ),
    ]
}

/// The bucket policy of an S3 destination: `principal` may do what
/// [`destination_statements`] allows, and nobody may reach the folder's objects without TLS.
pub fn bucket_policy(bucket: &str, prefix: &str, region: &str, principal: &str) -> Value {
    let arn = format!("arn:{}:s3:::{bucket}", partition(region));
    let mut statements = destination_statements(&arn, prefix, Some(principal));
    statements.push(json!({
        "Sid": "S3ImportdFolderOnlyOverTls",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": objects(&arn, prefix),
        "Condition": { "Bool": { "aws:SecureTransport": "false" } },
    }));
    json!({ "Version": VERSION, "Statement": statements })
}

/// The permission policy of the role an S3 destination assumes (`role_arn` in `[target]`):
/// the same rights as the bucket policy grants, as an identity policy. The TLS deny stays in
/// the bucket policy, where it binds every principal.
pub fn writer_policy(bucket: &str, prefix: &str, region: &str) -> Value {
    let arn = format!("arn:{}:s3:::{bucket}", partition(region));
    json!({ "Version": VERSION, "Statement": destination_statements(&arn, prefix, None) })
}

/// The principal a trust policy names for a caller: the role behind an assumed-role session
/// ARN (`arn:aws:sts::1:assumed-role/NAME/session` → `arn:aws:iam::1:role/NAME`), else the ARN
/// as it is. A role with a path shows without it in session ARNs; such a role must be set as
/// `aws_principal` instead.
pub fn principal_of_caller(arn: &str) -> String {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if let [a, partition, "sts", "", account, resource] = parts.as_slice()
        && let Some(rest) = resource.strip_prefix("assumed-role/")
        && let Some((role, _session)) = rest.split_once('/')
    {
        return format!("{a}:{partition}:iam::{account}:role/{role}");
    }
    arn.to_string()
}

/// A fresh external ID: a random UUID, as the hosted connectors hand out.
pub fn new_external_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn caller_principals() {
        let cases = [
            (
                "arn:aws:sts::111122223333:assumed-role/s3-importd/i-0abc",
                "arn:aws:iam::111122223333:role/s3-importd",
            ),
            (
                "arn:aws-cn:sts::111122223333:assumed-role/r/s",
                "arn:aws-cn:iam::111122223333:role/r",
            ),
            (
                "arn:aws:iam::111122223333:user/ops",
                "arn:aws:iam::111122223333:user/ops",
            ),
            ("arn:aws:iam::111122223333:root", "arn:aws:iam::111122223333:root"),
        ];
        for (caller, want) in cases {
            assert_eq!(principal_of_caller(caller), want);
        }
    }

    #[test]
    fn bucket_policy_golden() {
        let doc = bucket_policy("dest", "loads/", "eu-west-1", "arn:aws:iam::111122223333:role/w");
        let principal = json!({"AWS": "arn:aws:iam::111122223333:role/w"});
        assert_eq!(
            doc,
            json!({
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "S3ImportdListsTheFolder",
                        "Effect": "Allow",
                        "Principal": principal,
                        "Action": "s3:ListBucket",
                        "Resource": "arn:aws:s3:::dest",
                        "Condition": {"StringLike": {"s3:prefix": ["loads/", "loads/*"]}}
                    },
                    {
                        "Sid": "S3ImportdWritesTheFolder",
                        "Effect": "Allow",
                        "Principal": principal,
                        "Action": ["s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload"],
                        "Resource": "arn:aws:s3:::dest/loads/*"
                    },
                    {
                        "Sid": "S3ImportdDeletesItsProbes",
                        "Effect": "Allow",
                        "Principal": principal,
                        "Action": "s3:DeleteObject",
                        "Resource": "arn:aws:s3:::dest/loads/.s3-importd-probe-*"
                    },
                    {
                        "Sid": "S3ImportdFindsUnfinishedUploads",
                        "Effect": "Allow",
                        "Principal": principal,
                        "Action": "s3:ListBucketMultipartUploads",
                        "Resource": "arn:aws:s3:::dest"
                    },
                    {
                        "Sid": "S3ImportdFolderOnlyOverTls",
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:*",
                        "Resource": "arn:aws:s3:::dest/loads/*",
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}}
                    }
                ]
            })
        );
        // Without a prefix: the whole bucket, and no condition.
        let doc = bucket_policy("dest", "", "cn-north-1", "p");
        assert!(doc["Statement"][0].get("Condition").is_none());
        assert_eq!(doc["Statement"][1]["Resource"], json!("arn:aws-cn:s3:::dest/*"));
    }

    #[test]
    fn writer_policy_is_the_bucket_policy_without_principals_or_the_tls_deny() {
        let bucket = bucket_policy("dest", "loads/", "eu-west-1", "p");
        let mut want = bucket["Statement"].as_array().unwrap().clone();
        want.pop();
        for statement in &mut want {
            statement.as_object_mut().unwrap().remove("Principal");
        }
        let writer = writer_policy("dest", "loads/", "eu-west-1");
        assert_eq!(writer["Statement"], Value::Array(want));
        assert_eq!(writer["Version"], json!("2012-10-17"));
    }

    #[test]
    fn partitions() {
        assert_eq!(partition("us-east-1"), "aws");
        assert_eq!(partition("cn-north-1"), "aws-cn");
        assert_eq!(partition("us-gov-west-1"), "aws-us-gov");
    }

    #[test]
    fn external_ids_are_fresh_uuids() {
        let (a, b) = (new_external_id(), new_external_id());
        assert_ne!(a, b);
        assert!(uuid::Uuid::parse_str(&a).is_ok());
    }
}

#[cfg(test)]
mod queue_tests {
    use super::*;

    #[test]
    fn queue_arns_come_from_queue_urls() {
        let cases = [
            (
                "https://sqs.eu-west-1.amazonaws.com/123456789012/acme-events",
                Some("arn:aws:sqs:eu-west-1:123456789012:acme-events"),
            ),
            (
                "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q",
                Some("arn:aws-cn:sqs:cn-north-1:123456789012:q"),
            ),
            // A local queue takes the bucket's region.
            (
                "http://127.0.0.1:5000/123456789012/q",
                Some("arn:aws:sqs:us-east-1:123456789012:q"),
            ),
            ("https://sqs.us-east-1.amazonaws.com/q", None),
            ("https://sqs.us-east-1.amazonaws.com/1/q/extra", None),
            ("not a url", None),
        ];
        for (url, want) in cases {
            assert_eq!(
                queue_arn(url, "us-east-1").map(|q| q.arn).as_deref(),
                want,
                "{url}"
            );
        }
    }

    #[test]
    fn the_queue_policy_admits_only_the_bucket_of_its_account() {
        let q = queue_arn("https://sqs.us-east-1.amazonaws.com/123456789012/q", "us-east-1").unwrap();
        let doc = queue_policy(&q, "acme", "us-east-1", "210987654321");
        let st = &doc["Statement"][0];
        assert_eq!(st["Principal"]["Service"], "s3.amazonaws.com");
        assert_eq!(st["Resource"], "arn:aws:sqs:us-east-1:123456789012:q");
        assert_eq!(st["Condition"]["ArnLike"]["aws:SourceArn"], "arn:aws:s3:::acme");
        assert_eq!(
            st["Condition"]["StringEquals"]["aws:SourceAccount"],
            "210987654321"
        );
        let n = bucket_notification(&q, "in/", "acme");
        assert_eq!(
            n["QueueConfigurations"][0]["Filter"]["Key"]["FilterRules"][0]["Value"],
            "in/"
        );
        assert_eq!(n["QueueConfigurations"][0]["Events"][0], "s3:ObjectCreated:*");
        let actions = queue_statement(&q)["Action"].clone();
        assert_eq!(actions.as_array().map(Vec::len), Some(4));
    }
}

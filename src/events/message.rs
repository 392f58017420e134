//! What one SQS message body says, in the three forms event mode accepts (pure).
//!
//! - an S3 event notification (`{"Records": [...]}`), keys URL-encoded as S3 writes them
//!   (`+` is a space);
//! - the same notification wrapped by SNS (`"Type": "Notification"`, the notification as
//!   the text of `"Message"`);
//! - an EventBridge event from S3 (`"source": "aws.s3"`), keys as they are.
//!
//! An `s3:TestEvent` (sent when a bucket's notifications are configured) is its own notice.
//! This module only reads; what the daemon does with a notice is `events/mod.rs`'s business.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// One thing a message reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// An object was created (any `ObjectCreated:*`, or EventBridge's "Object Created").
    Created(Created),
    /// S3 testing the queue when notifications were configured.
    Test,
    /// Any other event (a deletion, a restore, a tag change): `what` is its name.
    Other { bucket: String, what: String },
}

/// An object creation, as the event names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub bucket: String,
    /// The key, decoded.
    pub key: String,
    /// When S3 says the event happened.
    pub event_time: Option<DateTime<Utc>>,
}

/// Why a body is not a message event mode understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("the body is not JSON ({reason})")]
    NotJson { reason: String },
    #[error(
        "the body is neither an S3 event notification, nor one wrapped by SNS, nor an EventBridge event from S3"
    )]
    Unknown,
    #[error("record {index} of the notification lacks {field}")]
    Missing { index: usize, field: &'static str },
    #[error("record {index} names a key that is not UTF-8 once URL-decoded")]
    BadKey { index: usize },
}

/// The notices of one message body, in order.
pub fn parse(body: &str) -> Result<Vec<Notice>, MessageError> {
    let value: Value = serde_json::from_str(body).map_err(|e| MessageError::NotJson {
        reason: e.to_string(),
    })?;
    read(&value, true)
}

/// The notices of a parsed body; `unwrap` allows one SNS envelope around it.
fn read(value: &Value, unwrap: bool) -> Result<Vec<Notice>, MessageError> {
    let text = |v: &Value, name: &str| v.get(name).and_then(Value::as_str).map(str::to_string);
    if let Some(records) = value.get("Records").and_then(Value::as_array) {
        return records.iter().enumerate().map(|(i, r)| record(i, r)).collect();
    }
    if text(value, "Event").as_deref() == Some("s3:TestEvent") {
        return Ok(vec![Notice::Test]);
    }
    if unwrap && text(value, "Type").as_deref() == Some("Notification") {
        let inner = text(value, "Message").ok_or(MessageError::Unknown)?;
        let inner: Value = serde_json::from_str(&inner).map_err(|e| MessageError::NotJson {
            reason: format!("the SNS message: {e}"),
        })?;
        return read(&inner, false);
    }
    if text(value, "source").as_deref() == Some("aws.s3")
        && let Some(kind) = text(value, "detail-type")
    {
        let detail = value.get("detail").ok_or(MessageError::Missing {
            index: 0,
            field: "detail",
        })?;
        let bucket = text_at(detail, "/bucket/name", 0, "detail.bucket.name")?.to_string();
        if kind != "Object Created" {
            return Ok(vec![Notice::Other { bucket, what: kind }]);
        }
        let key = text_at(detail, "/object/key", 0, "detail.object.key")?;
        return Ok(vec![Notice::Created(Created {
            bucket,
            key: key.to_string(),
            event_time: text(value, "time").as_deref().and_then(time),
        })]);
    }
    Err(MessageError::Unknown)
}

/// The text at `pointer` in `v`, or the record `index` lacks `field`.
fn text_at<'a>(
    v: &'a Value,
    pointer: &str,
    index: usize,
    field: &'static str,
) -> Result<&'a str, MessageError> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .ok_or(MessageError::Missing { index, field })
}

/// One record of an S3 notification.
fn record(index: usize, r: &Value) -> Result<Notice, MessageError> {
    let field = |pointer: &str, field: &'static str| text_at(r, pointer, index, field);
    let name = field("/eventName", "eventName")?;
    let bucket = field("/s3/bucket/name", "s3.bucket.name")?.to_string();
    if !name.starts_with("ObjectCreated:") {
        return Ok(Notice::Other {
            bucket,
            what: name.to_string(),
        });
    }
    let raw = field("/s3/object/key", "s3.object.key")?;
    let key = crate::sources::s3::listed_key(raw, true).ok_or(MessageError::BadKey { index })?;
    Ok(Notice::Created(Created {
        bucket,
        key,
        event_time: r.get("eventTime").and_then(Value::as_str).and_then(time),
    }))
}

fn time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn s3(name: &str, key: &str) -> String {
        serde_json::json!({"Records": [{
            "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
            "eventTime": "2026-12-07T09:00:01.250Z", "eventName": name,
            "s3": {"bucket": {"name": "acme"}, "object": {"key": key, "size": 5, "eTag": "abc"}}
        }]})
        .to_string()
    }

    fn created(key: &str, at: Option<DateTime<Utc>>) -> Notice {
        Notice::Created(Created {
            bucket: "acme".into(),
            key: key.into(),
            event_time: at,
        })
    }

    #[test]
    fn bodies_are_read_in_all_three_forms() {
        let at = Utc.with_ymd_and_hms(2026, 12, 7, 9, 0, 1).unwrap() + chrono::TimeDelta::milliseconds(250);
        let sns = serde_json::json!({
            "Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:us-east-1:1:t",
            "Message": s3("ObjectCreated:Put", "in/a+b%2B.csv"),
        })
        .to_string();
        let bridge = serde_json::json!({
            "version": "0", "source": "aws.s3", "detail-type": "Object Created",
            "time": "2026-12-07T09:00:01.250Z",
            "detail": {"bucket": {"name": "acme"}, "object": {"key": "in/a b+.csv", "size": 5}}
        })
        .to_string();
        let bridge_deleted = bridge.replace("Object Created", "Object Deleted");
        let test =
            r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-12-07T09:00:00Z","Bucket":"acme"}"#;
        let cases: Vec<(String, Result<Vec<Notice>, MessageError>)> = vec![
            (
                s3("ObjectCreated:Put", "in/a+b%2B.csv"),
                Ok(vec![created("in/a b+.csv", Some(at))]),
            ),
            (
                s3("ObjectCreated:CompleteMultipartUpload", "in/%C3%A9t%C3%A9.csv"),
                Ok(vec![created("in/été.csv", Some(at))]),
            ),
            (sns.clone(), Ok(vec![created("in/a b+.csv", Some(at))])),
            (bridge, Ok(vec![created("in/a b+.csv", Some(at))])),
            (
                bridge_deleted,
                Ok(vec![Notice::Other {
                    bucket: "acme".into(),
                    what: "Object Deleted".into(),
                }]),
            ),
            (
                s3("ObjectRemoved:Delete", "in/a.csv"),
                Ok(vec![Notice::Other {
                    bucket: "acme".into(),
                    what: "ObjectRemoved:Delete".into(),
                }]),
            ),
            (test.to_string(), Ok(vec![Notice::Test])),
            (
                serde_json::json!({"Type": "Notification", "Message": test}).to_string(),
                Ok(vec![Notice::Test]),
            ),
            (r#"{"Records": []}"#.into(), Ok(vec![])),
            (
                s3("ObjectCreated:Put", "in/%FF.csv"),
                Err(MessageError::BadKey { index: 0 }),
            ),
            (
                r#"{"Records": [{"eventName": "ObjectCreated:Put"}]}"#.into(),
                Err(MessageError::Missing {
                    index: 0,
                    field: "s3.bucket.name",
                }),
            ),
            (r#"{"hello": "world"}"#.into(), Err(MessageError::Unknown)),
            // SNS around SNS is not a form anyone sends.
            (
                serde_json::json!({"Type": "Notification", "Message": sns}).to_string(),
                Err(MessageError::Unknown),
            ),
        ];
        for (body, want) in cases {
            assert_eq!(parse(&body), want, "{body}");
        }
        assert!(matches!(parse("not json"), Err(MessageError::NotJson { .. })));
        assert!(matches!(
            parse(r#"{"Type": "Notification", "Message": "{"}"#),
            Err(MessageError::NotJson { .. })
        ));
    }
}

//! The [`Queue`] on Amazon SQS (aws-sdk-sqs): long polls, batch deletes and visibility
//! changes. Nothing here reads a message's body.

use super::{Message, Queue, QueueError};
use crate::aws::AwsError;
use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, MessageSystemAttributeName,
    QueueAttributeName,
};
use chrono::{DateTime, TimeZone, Utc};
use std::time::Duration;

/// SQS takes at most ten entries in a batch request.
const BATCH: usize = 10;

/// One SQS queue.
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: Client, url: &str) -> SqsQueue {
        SqsQueue {
            client,
            url: url.to_string(),
        }
    }
}

fn sent_at(m: &aws_sdk_sqs::types::Message) -> Option<DateTime<Utc>> {
    let ms: i64 = m
        .attributes()?
        .get(&MessageSystemAttributeName::SentTimestamp)?
        .parse()
        .ok()?;
    Utc.timestamp_millis_opt(ms).single()
}

#[async_trait]
impl Queue for SqsQueue {
    async fn visibility_timeout(&self) -> Result<Duration, QueueError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::VisibilityTimeout)
            .send()
            .await
            .map_err(|e| QueueError::Request(AwsError::of("GetQueueAttributes", &e)))?;
        let seconds = out
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::VisibilityTimeout))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(30);
        Ok(Duration::from_secs(seconds))
    }

    async fn receive(&self, wait: Duration) -> Result<Vec<Message>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(BATCH as i32)
            .wait_time_seconds(wait.as_millis().div_ceil(1000).min(20) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .map_err(|e| QueueError::Request(AwsError::of("ReceiveMessage", &e)))?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                Some(Message {
                    id: m.message_id()?.to_string(),
                    receipt: m.receipt_handle()?.to_string(),
                    body: m.body().unwrap_or_default().to_string(),
                    sent_at: sent_at(m),
                })
            })
            .collect())
    }

    async fn delete(&self, receipts: &[String]) -> Result<(), QueueError> {
        for chunk in receipts.chunks(BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(r)
                        .build()
                        .ok()
                })
                .collect();
            let out = self
                .client
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| QueueError::Request(AwsError::of("DeleteMessageBatch", &e)))?;
            if let Some(failed) = out.failed().first() {
                return Err(QueueError::Entry {
                    operation: "DeleteMessageBatch",
                    code: failed.code().to_string(),
                    failed: out.failed().len(),
                });
            }
        }
        Ok(())
    }

    async fn set_visibility(&self, receipts: &[String], timeout: Duration) -> Result<(), QueueError> {
        for chunk in receipts.chunks(BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(r)
                        .visibility_timeout(timeout.as_secs().min(43_200) as i32)
                        .build()
                        .ok()
                })
                .collect();
            let out = self
                .client
                .change_message_visibility_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| QueueError::Request(AwsError::of("ChangeMessageVisibilityBatch", &e)))?;
            if let Some(failed) = out.failed().first() {
                return Err(QueueError::Entry {
                    operation: "ChangeMessageVisibilityBatch",
                    code: failed.code().to_string(),
                    failed: out.failed().len(),
                });
            }
        }
        Ok(())
    }
}

//! The `stdout` target: rows as JSON Lines on standard output, for debugging and pipes.
//! Logs go to standard error, so standard output carries nothing but rows.
//!
//! Standard output cannot be asked what it received, so a load interrupted by a crash is
//! delivered again by the next run: at least once, not exactly once.

mod config;
pub use config::*;

use super::{Delivery, LoadInfo, LoadPart, Refused, Target, TargetError};
use crate::spool::SliceReader;
use async_trait::async_trait;
use std::io::{self, Write};
use std::path::PathBuf;

/// Writes loads to standard output.
pub struct StdoutTarget;

#[async_trait]
impl Target for StdoutTarget {
    async fn prepare(&self, _load: &LoadInfo<'_>) -> Result<Delivery, TargetError> {
        Ok(Delivery {
            output: "stdout".into(),
            detail: serde_json::Value::Null,
        })
    }

    async fn deliver(&self, _delivery: &Delivery, parts: &[LoadPart]) -> Result<Vec<Refused>, TargetError> {
        let spools = super::spools(parts);
        let result = tokio::task::spawn_blocking(move || {
            // The spool is JSON Lines already: the rows are copied as they are.
            let mut out = io::stdout().lock();
            let copied = SliceReader::default().copy_all(&spools, &mut out);
            copied
                .and_then(|()| out.flush())
                .map_err(|source| TargetError::Io {
                    path: PathBuf::from("stdout"),
                    source,
                })
        })
        .await;
        result
            .map_err(|e| TargetError::Task(e.to_string()))?
            .map(|()| Vec::new())
    }

    async fn recover(&self, _delivery: &Delivery) -> Result<bool, TargetError> {
        Ok(false)
    }
}

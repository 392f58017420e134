//! The `stdout` target has no keys: it prints rows as JSON Lines, nothing else.

use super::super::config::TargetContext;
use super::super::{Target, TargetKind};
use crate::config::Connection;
use crate::config::kind::KindTable;
use crate::config::validate::Problems;
use crate::probe::Report;
use serde::Deserialize;

/// `[target]` of `type = "stdout"`, as written: `type` alone.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStdoutTarget {}

/// Standard output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StdoutSpec;

#[async_trait::async_trait]
impl TargetKind for StdoutSpec {
    fn keys() -> Vec<&'static str> {
        Vec::new()
    }

    fn validate(table: KindTable<'_>, _cx: &TargetContext<'_>, p: &mut Problems<'_>) -> Option<Self> {
        let before = p.count();
        let _: Option<RawStdoutTarget> = table.rest(p);
        (p.count() == before).then_some(StdoutSpec)
    }

    async fn open(&self, _connection: &Connection) -> Box<dyn Target> {
        Box::new(super::StdoutTarget)
    }

    async fn check(&self, _connection: &Connection, report: &mut Report) {
        report.ok("target", "standard output");
    }
}

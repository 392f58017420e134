//! The `postgres` target's keys: the server (a secret URL), the table, append or upsert by a
//! key, and whether to create the table; their checks; the values it cannot store; and its
//! `check` probe.

use super::super::config::{RawUrl, TargetContext, url_source};
use super::super::{Target, TargetKind, ValueRules};
use crate::config::Connection;
use crate::config::kind::{KindTable, keys_of};
use crate::config::validate::Problems;
use crate::probe::Report;
use crate::secret::SecretSource;
use regex::Regex;
use serde::Deserialize;
use std::sync::LazyLock;

/// A PostgreSQL identifier s3-importd is willing to write unquoted-looking: letters, digits
/// and `_`, not starting with a digit, at most 63 bytes (PostgreSQL's limit).
static PG_IDENT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$").expect("a valid pattern"));

/// `[target]` of `type = "postgres"`, as written (the URL keys aside).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPostgresTarget {
    pub table: Option<String>,
    pub mode: Option<String>,
    pub key: Option<toml::Value>,
    pub create_table: Option<bool>,
    pub timeout_s: Option<i64>,
}

/// A PostgreSQL table that receives the rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresTargetSpec {
    /// The connection URL (it may hold a password).
    pub url: SecretSource,
    /// The schema, when the table name is qualified.
    pub schema: Option<String>,
    pub table: String,
    pub mode: WriteMode,
    pub create_table: bool,
    /// The longest one step may take (`timeout_s`, default 300): connecting, checking the
    /// table, or one object's transaction. A stalled database fails the delivery instead of
    /// holding the run (and, in a fleet, its lease) for ever.
    pub timeout: std::time::Duration,
}

/// How rows are written into a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteMode {
    /// Insert; a row already there (same key, version and line) is left alone.
    Append,
    /// Insert or update by these columns; the last row of a file wins among its duplicates.
    Upsert(Vec<String>),
}

#[async_trait::async_trait]
impl TargetKind for PostgresTargetSpec {
    fn keys() -> Vec<&'static str> {
        [keys_of::<RawUrl>(), keys_of::<RawPostgresTarget>()].concat()
    }

    fn validate(mut table: KindTable<'_>, cx: &TargetContext<'_>, p: &mut Problems<'_>) -> Option<Self> {
        let before = p.count();
        let url: RawUrl = table.part(p).unwrap_or_default();
        let t: RawPostgresTarget = table.rest(p)?;
        let spec = postgres_target(cx, url, t, p);
        (p.count() == before).then_some(spec)
    }

    /// PostgreSQL stores no NUL character in `text` or `jsonb`.
    fn value_rules(&self) -> ValueRules {
        ValueRules { no_nul: true }
    }

    async fn open(&self, connection: &Connection) -> Box<dyn Target> {
        Box::new(super::PostgresTarget::new(
            self.clone(),
            connection.template.fields.clone(),
        ))
    }

    async fn check(&self, connection: &Connection, report: &mut Report) {
        let target = super::PostgresTarget::new(self.clone(), connection.template.fields.clone());
        match target.probe().await {
            Ok(detail) => report.ok("target", detail),
            Err(e) => report.failed(
                "target",
                e.to_string(),
                "check the URL (url, url_env or url_file), that this host may reach the server, and the table",
            ),
        }
    }
}

/// The keys of a `postgres` target, checked.
fn postgres_target(
    cx: &TargetContext<'_>,
    raw_url: RawUrl,
    t: RawPostgresTarget,
    p: &mut Problems<'_>,
) -> PostgresTargetSpec {
    let url = url_source(cx.dir, raw_url, p);
    if let SecretSource::Inline(u) = &url
        && let Err(problem) = crate::pg_client::check_url(u.expose())
    {
        // The URL may hold a password: it is not repeated in the message.
        p.add("target.url", problem);
    }
    let name = t
        .table
        .clone()
        .or_else(|| cx.table().map(str::to_string))
        .unwrap_or_default();
    let (schema, table) = match name.split_once('.') {
        Some((s, t)) => (Some(s.to_string()), t.to_string()),
        None => (None, name.clone()),
    };
    if schema
        .iter()
        .chain(std::iter::once(&table))
        .any(|part| !PG_IDENT.is_match(part))
    {
        p.add(
            "target.table",
            format!("{name:?} is not a table name; use letters, digits and `_`, optionally after a schema and a dot (\"imports.products\")"),
        );
    }
    let fields = cx.fields();
    let mode = match (t.mode.as_deref().unwrap_or("append"), &t.key) {
        ("append", None) => WriteMode::Append,
        ("append", Some(_)) => {
            p.add(
                "target.key",
                "applies to mode = \"upsert\"; append mode keys rows by their source and line",
            );
            WriteMode::Append
        }
        ("upsert", Some(toml::Value::Array(items))) if !items.is_empty() => {
            let mut key = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(k) if fields.is_empty() || fields.iter().any(|f| f == k) => key.push(k.to_string()),
                    Some(k) => p.add(
                        &format!("target.key[{i}]"),
                        format!(
                            "{k:?} is not a field of the template; upsert keys are field names ({})",
                            fields.join(", ")
                        ),
                    ),
                    None => p.add(&format!("target.key[{i}]"), "must be a field name"),
                }
            }
            WriteMode::Upsert(key)
        }
        ("upsert", _) => {
            p.add(
                "target.key",
                "missing; upsert needs the columns that identify a row, e.g. key = [\"id\"]",
            );
            WriteMode::Upsert(Vec::new())
        }
        (other, _) => {
            p.add(
                "target.mode",
                format!("{other:?} is not a mode; use \"append\" or \"upsert\""),
            );
            WriteMode::Append
        }
    };
    PostgresTargetSpec {
        url,
        schema,
        table,
        mode,
        create_table: t.create_table.unwrap_or(false),
        timeout: std::time::Duration::from_secs(crate::config::validate::in_range(
            p,
            "target.timeout_s",
            t.timeout_s,
            300,
            1,
            86_400,
        ) as u64),
    }
}

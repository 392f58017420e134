//! The TOML files as written: serde structs that mirror `s3-importd.toml`, a connection file
//! and a template file key for key.
//!
//! Nothing here is checked beyond TOML types and unknown keys (`deny_unknown_fields`); turning
//! these into the checked types of [`super`] is the job of [`super::validate`]. `[source]` and
//! `[target]` stay tables here: their `type` picks the kind, and each kind reads its own keys
//! (`sources/<kind>/config.rs`, `targets/<kind>/config.rs`).

use serde::Deserialize;

/// `s3-importd.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSettings {
    pub state: Option<String>,
    pub state_url_env: Option<String>,
    pub state_url_file: Option<String>,
    pub lease_ttl_s: Option<i64>,
    pub spool_dir: Option<String>,
    pub timezone: Option<String>,
    pub max_concurrent_runs: Option<i64>,
    pub max_concurrent_objects: Option<i64>,
    pub load_max_objects: Option<i64>,
    /// A size: bytes, or a string with a unit ("1GiB").
    pub load_max_bytes: Option<toml::Value>,
    pub shutdown_timeout_s: Option<i64>,
    pub log_format: Option<String>,
    pub aws_principal: Option<String>,
    pub metrics_listen: Option<String>,
}

/// `connections/NAME.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConnection {
    pub description: Option<String>,
    pub enabled: Option<bool>,
    pub schedule: Option<String>,
    pub backfill_days: Option<i64>,
    pub settle_seconds: Option<i64>,
    /// Override `s3-importd.toml`'s for this connection.
    pub load_max_objects: Option<i64>,
    pub load_max_bytes: Option<toml::Value>,
    /// Read by the source's kind ([`crate::sources::SourceSpec::validate`]).
    pub source: Option<toml::Table>,
    /// Read by [`crate::formats::config::validate`].
    pub format: Option<toml::Table>,
    /// Either a table (an inline template) or a string naming `templates/NAME.toml`; kept as a
    /// raw value here and resolved by the loader so that errors inside an inline template keep
    /// their key path.
    pub template: Option<toml::Value>,
    /// Read by the target's kind ([`crate::targets::TargetSpec::validate`]).
    pub target: Option<toml::Table>,
}

/// `[template]` inline, or the whole of `templates/NAME.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTemplate {
    pub table: Option<String>,
    pub unknown_fields: Option<String>,
    pub max_bad_rows: Option<CountOrText>,
    /// The zone timestamps without an offset are read in (default UTC).
    pub timezone: Option<String>,
    #[serde(default)]
    pub fields: Vec<RawField>,
}

/// A value TOML may give as a number or as a string (`column = 3` or `"Product ID"`;
/// `max_bad_rows` is read as this too, so that a number gets its own message).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum CountOrText {
    Count(i64),
    Text(String),
}

/// `[[template.fields]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawField {
    pub name: Option<String>,
    pub column: Option<CountOrText>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub required: Option<bool>,
    pub format: Option<String>,
    pub timezone: Option<String>,
    pub precision: Option<i64>,
    pub scale: Option<i64>,
    pub values: Option<Vec<String>>,
    pub default: Option<String>,
    pub true_values: Option<Vec<String>>,
    pub false_values: Option<Vec<String>>,
}

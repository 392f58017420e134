//! The TOML files as written: serde structs that mirror `s3-importd.toml`, a connection file
//! and a template file key for key.
//!
//! Nothing here is checked beyond TOML types and unknown keys (`deny_unknown_fields`); turning
//! these into the checked types of [`super`] is the job of [`super::validate`]. Source and target
//! tables are flat (every key of every `type` is optional) so that validation can say "`path`
//! belongs to a `dir` source" instead of serde's bare "unknown field".

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
    pub load_max_bytes: Option<i64>,
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
    pub source: Option<RawSource>,
    pub format: Option<RawFormat>,
    /// Either a table (an inline template) or a string naming `templates/NAME.toml`; kept as a
    /// raw value here and resolved by the loader so that errors inside an inline template keep
    /// their key path.
    pub template: Option<toml::Value>,
    pub target: Option<RawTarget>,
}

/// `[source]`: the keys of every source type.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    // s3
    pub bucket: Option<String>,
    pub region: Option<String>,
    pub prefix: Option<String>,
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
    pub external_id_required: Option<bool>,
    pub expected_bucket_owner: Option<String>,
    pub endpoint: Option<String>,
    pub sts_endpoint: Option<String>,
    pub force_path_style: Option<bool>,
    pub challenge_file: Option<String>,
    pub allow_insecure_http: Option<bool>,
    pub max_concurrent_listings: Option<i64>,
    // dir
    pub path: Option<String>,
    pub follow_symlinks: Option<bool>,
    // both
    pub include: Option<Vec<String>>,
    pub exclude: Option<Vec<String>>,
}

/// `[format]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFormat {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub compression: Option<String>,
    pub delimiter: Option<String>,
    pub quote_char: Option<String>,
    pub escape_char: Option<String>,
    pub null_values: Option<Vec<String>>,
    pub skip_rows_before_header: Option<i64>,
    pub skip_rows_after_header: Option<i64>,
    pub comment_char: Option<String>,
    pub has_header: Option<bool>,
    pub encoding: Option<String>,
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
    pub values: Option<Vec<String>>,
    pub default: Option<String>,
    pub true_values: Option<Vec<String>>,
    pub false_values: Option<Vec<String>>,
}

/// `[target]`: the keys of every target type.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    // file and s3
    pub path: Option<String>,
    pub format: Option<String>,
    pub delimiter: Option<String>,
    pub quote_all: Option<bool>,
    pub csv_formula_guard: Option<bool>,
    pub file_mode: Option<String>,
    pub key: Option<toml::Value>,
    // s3
    pub bucket: Option<String>,
    pub region: Option<String>,
    pub prefix: Option<String>,
    pub role_arn: Option<String>,
    pub external_id: Option<String>,
    pub external_id_required: Option<bool>,
    pub expected_bucket_owner: Option<String>,
    pub endpoint: Option<String>,
    pub sts_endpoint: Option<String>,
    pub force_path_style: Option<bool>,
    // http
    pub url: Option<String>,
    pub batch_size: Option<i64>,
    pub headers: Option<toml::Table>,
    pub headers_env: Option<String>,
    pub headers_file: Option<String>,
    pub allow_insecure_http: Option<bool>,
    pub token_env: Option<String>,
    pub token_file: Option<String>,
    pub timeout_s: Option<i64>,
    pub max_retries: Option<i64>,
    // postgres
    pub url_env: Option<String>,
    pub url_file: Option<String>,
    pub table: Option<String>,
    pub mode: Option<String>,
    pub create_table: Option<bool>,
}

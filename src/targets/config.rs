//! What the kinds of target share in their configuration: the context they are checked in,
//! the output keys of the `file` and `s3` targets (`format`, the CSV dialect, `key`), and a
//! URL given inline or as a secret (`http`, `postgres`).
//!
//! Pure: nothing here opens a file or reads a variable; secrets are read when delivering.

use super::parquet::{DEFAULT_ROW_GROUP_BYTES, ParquetCompression, ParquetOut};
use crate::config::kind::KindTable;
use crate::config::validate::{Problems, resolve};
use crate::formats::CsvOut;
use crate::keytemplate::KeyTemplate;
use crate::secret::{Secret, SecretSource};
use crate::template::{FieldType, Template};
use serde::Deserialize;
use std::path::Path;

/// What a target's keys are checked against.
pub struct TargetContext<'a> {
    /// The configuration folder, which relative paths are resolved against.
    pub dir: &'a Path,
    /// The connection's name.
    pub connection: &'a str,
    /// The connection's template, when it passed its own checks.
    pub template: Option<&'a Template>,
}

impl TargetContext<'_> {
    /// The template's table, when there is a template.
    pub fn table(&self) -> Option<&str> {
        self.template.map(|t| t.table.as_str())
    }

    /// The template's field names (empty without a template).
    pub fn fields(&self) -> Vec<String> {
        self.template
            .map(|t| t.fields.iter().map(|f| f.name.clone()).collect())
            .unwrap_or_default()
    }
}

/// How the `file` and `s3` targets write a load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Jsonl,
    /// CSV with a header row: the delimiter (`,`, `|` or a tab), `quote_all`, and the
    /// formula guard (`csv_formula_guard`).
    Csv(CsvOut),
    /// Typed, compressed Parquet ([`super::parquet`]).
    Parquet(ParquetOut),
}

impl OutputFormat {
    /// How CSV output is written, for a CSV output.
    pub fn csv(self) -> Option<CsvOut> {
        match self {
            OutputFormat::Csv(out) => Some(out),
            OutputFormat::Jsonl | OutputFormat::Parquet(_) => None,
        }
    }

    /// The extension of the default key template.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Jsonl => "jsonl",
            OutputFormat::Csv(_) => "csv",
            OutputFormat::Parquet(_) => "parquet",
        }
    }
}

/// The output keys of a `file` or `s3` target, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOutput {
    pub format: Option<String>,
    pub delimiter: Option<String>,
    pub quote_all: Option<bool>,
    pub csv_formula_guard: Option<bool>,
    pub compression: Option<String>,
    pub row_group_bytes: Option<toml::Value>,
    pub key: Option<toml::Value>,
}

/// The output format and key template of a `file` or `s3` target, read from `table`.
pub fn output(
    table: &mut KindTable<'_>,
    cx: &TargetContext<'_>,
    p: &mut Problems<'_>,
) -> (OutputFormat, Option<KeyTemplate>) {
    let t: RawOutput = table.part(p).unwrap_or_default();
    let (csv, parquet) = match t.format.as_deref() {
        None | Some("jsonl") => (false, false),
        Some("csv") => (true, false),
        Some("parquet") => (false, true),
        Some(other) => {
            p.add(
                "target.format",
                format!("{other:?} is not an output format; use \"jsonl\", \"csv\" or \"parquet\""),
            );
            (false, false)
        }
    };
    let delimiter = match t.delimiter.as_deref() {
        None | Some(",") => b',',
        Some("|") => b'|',
        Some("\t") => b'\t',
        Some(other) => {
            p.add(
                "target.delimiter",
                format!("{other:?} is not an output delimiter; use \",\", \"|\" or \"\\t\""),
            );
            b','
        }
    };
    if !csv && (t.delimiter.is_some() || t.quote_all.is_some()) {
        p.add(
            "target.delimiter",
            "delimiter and quote_all apply to CSV output; add format = \"csv\" or remove them",
        );
    }
    if !csv && t.csv_formula_guard.is_some() {
        p.add(
            "target.csv_formula_guard",
            "applies to CSV output; add format = \"csv\" or remove it",
        );
    }
    let format = if csv {
        OutputFormat::Csv(CsvOut {
            delimiter,
            quote_all: t.quote_all.unwrap_or(false),
            // A string cell starting with `=`, `+`, `-`, `@`, a tab or a carriage return gets
            // a `'` in front, so a spreadsheet shows it instead of running it.
            formula_guard: t.csv_formula_guard.unwrap_or(true),
        })
    } else if parquet {
        OutputFormat::Parquet(parquet_out(&t, cx, p))
    } else {
        OutputFormat::Jsonl
    };
    if !parquet && (t.compression.is_some() || t.row_group_bytes.is_some()) {
        let key = if t.compression.is_some() {
            "compression"
        } else {
            "row_group_bytes"
        };
        p.add(
            &format!("target.{key}"),
            "applies to Parquet output; add format = \"parquet\" or remove it",
        );
    }
    let extension = format.extension();
    let key = match &t.key {
        None => Some(KeyTemplate::default_for(extension)),
        Some(toml::Value::String(text)) => match KeyTemplate::parse(text) {
            Ok(k) => Some(k),
            Err(e) => {
                p.add("target.key", format!("{text:?}: {e}"));
                None
            }
        },
        Some(_) => {
            p.add("target.key", "must be a string: the key template, e.g. \"[integration_name]/[table_name]/[table_version]/[timestamp_loaded].jsonl\"");
            None
        }
    };
    if let (Some(k), Some(table)) = (&key, cx.table())
        && let Err(e) = k.check_for(cx.connection, table)
    {
        p.add("target.key", format!("{:?}: {e}", k.to_string()));
    }
    (format, key)
}

/// The settings of a Parquet output, and what it needs of the template: the precision and
/// scale of every decimal field (a Parquet DECIMAL column has them).
fn parquet_out(t: &RawOutput, cx: &TargetContext<'_>, p: &mut Problems<'_>) -> ParquetOut {
    let compression = match t.compression.as_deref() {
        None => ParquetCompression::Zstd,
        Some(name) => ParquetCompression::parse(name).unwrap_or_else(|| {
            p.add(
                "target.compression",
                format!(
                    "{name:?} is not a Parquet compression; use one of {}",
                    ParquetCompression::NAMES.join(", ")
                ),
            );
            ParquetCompression::Zstd
        }),
    };
    let row_group_bytes = crate::config::validate::size_in_range(
        p,
        "target.row_group_bytes",
        t.row_group_bytes.as_ref(),
        DEFAULT_ROW_GROUP_BYTES,
        (1 << 20, 1 << 32),
    );
    for (i, f) in cx.template.iter().flat_map(|t| t.fields.iter().enumerate()) {
        if f.kind == FieldType::Decimal(None) {
            p.add(
                "target.format",
                format!(
                    "a Parquet output needs the precision and scale of decimal field {:?}; add them to template.fields[{i}], e.g. precision = 12, scale = 2",
                    f.name
                ),
            );
        }
    }
    ParquetOut {
        compression,
        row_group_bytes,
    }
}

/// A URL as written: inline, or where the secret that holds it is.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUrl {
    pub url: Option<String>,
    pub url_env: Option<String>,
    pub url_file: Option<String>,
}

/// A target's URL, a secret: `url` written inline, or read from `url_env` or `url_file`
/// (exactly one).
pub fn url_source(dir: &Path, raw: RawUrl, p: &mut Problems<'_>) -> SecretSource {
    match (raw.url, raw.url_env, raw.url_file) {
        (Some(u), None, None) => SecretSource::Inline(Secret::new(u)),
        (None, Some(var), None) if !var.is_empty() => SecretSource::Env(var),
        (None, None, Some(file)) if !file.is_empty() => SecretSource::File {
            in_config_dir: resolve(dir, &file),
            given: file,
        },
        (None, None, None) => {
            p.add(
                "target.url",
                "missing; give url, url_env (an environment variable) or url_file (a file, e.g. from systemd's LoadCredential=)",
            );
            SecretSource::Env(String::new())
        }
        _ => {
            p.add("target.url", "give exactly one of url, url_env and url_file");
            SecretSource::Env(String::new())
        }
    }
}

//! `[format]`: which format the objects are in (the kinds are listed here, each with the keys
//! it reads), compression and encoding, and the CSV dialect ([`super::csv::config`]). Pure.

use super::csv::config::{self as dialect, RawDialect};
use super::{Compression, Encoding, FormatKind, FormatSpec};
use crate::config::kind::{Family, KindTable, keys_of};
use crate::config::validate::Problems;
use serde::Deserialize;

/// The kinds of format, as `type` names them.
const KINDS: [(&str, FormatKind); 7] = [
    ("csv", FormatKind::Csv),
    ("tsv", FormatKind::Tsv),
    ("json", FormatKind::Json),
    ("jsonl", FormatKind::Jsonl),
    ("parquet", FormatKind::Parquet),
    ("avro", FormatKind::Avro),
    ("auto", FormatKind::Auto),
];

/// Other names `type` accepts for a kind.
const ALIASES: [(&str, &str); 1] = [("ndjson", "jsonl")];

/// The keys every kind reads, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFormat {
    pub compression: Option<String>,
    pub encoding: Option<String>,
    pub has_header: Option<bool>,
    pub null_values: Option<Vec<String>>,
}

/// The keys a format that may be Parquet reads (`parquet`, `auto`), as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawParquet {
    /// A size: bytes, or a string with a unit ("512MiB").
    pub max_row_group_bytes: Option<toml::Value>,
}

/// The keys of one kind beyond the common ones.
fn own_keys(kind: FormatKind) -> Vec<&'static str> {
    let parquet = match kind {
        FormatKind::Parquet | FormatKind::Auto => keys_of::<RawParquet>().to_vec(),
        _ => Vec::new(),
    };
    [RawDialect::keys_for(kind), parquet].concat()
}

/// The kinds, with their keys.
pub fn family() -> Family {
    Family {
        table: "format",
        kinds: KINDS
            .iter()
            .map(|(name, kind)| (*name, [keys_of::<RawFormat>().to_vec(), own_keys(*kind)].concat()))
            .collect(),
    }
}

/// Checks `[format]` as written (absent: CSV with a header, every default).
pub fn validate(mut table: toml::Table, p: &mut Problems<'_>) -> FormatSpec {
    let family = family();
    let name = match table.remove("type") {
        None => "csv".to_string(),
        Some(toml::Value::String(name)) => name,
        Some(_) => {
            p.add("format.type", format!("must be a string: {}", family.listed()));
            "auto".to_string()
        }
    };
    let name = ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name.as_str(), |(_, to)| to);
    let (name, kind) = match KINDS.iter().find(|(n, _)| *n == name) {
        Some((name, kind)) => (*name, *kind),
        None => {
            p.add(
                "format.type",
                format!("{name:?} is not a format; use {}", family.listed()),
            );
            ("auto", FormatKind::Auto)
        }
    };
    let mut table = KindTable::new(table, &family, name);
    let f: RawFormat = table.part(p).unwrap_or_default();
    let pq: RawParquet = match kind {
        FormatKind::Parquet | FormatKind::Auto => table.part(p).unwrap_or_default(),
        _ => RawParquet::default(),
    };
    let max_row_group_bytes = crate::config::validate::size_in_range(
        p,
        "format.max_row_group_bytes",
        pq.max_row_group_bytes.as_ref(),
        super::DEFAULT_MAX_ROW_GROUP_BYTES,
        (1 << 20, 1 << 40),
    );
    let d: RawDialect = match kind {
        FormatKind::Json | FormatKind::Jsonl | FormatKind::Parquet | FormatKind::Avro => {
            let _: Option<NoKeys> = table.rest(p);
            RawDialect::default()
        }
        FormatKind::Csv | FormatKind::Tsv | FormatKind::Auto => table.rest(p).unwrap_or_default(),
    };
    if d.delimiter.is_some() && kind == FormatKind::Tsv {
        p.add("format.delimiter", "applies only to type = \"csv\"");
    }
    let dialect = dialect::validate(&d, p);
    let compression = match f.compression.as_deref().unwrap_or("auto") {
        "auto" => Compression::Auto,
        "none" => Compression::None,
        "gzip" => Compression::Gzip,
        "zstd" => Compression::Zstd,
        "bzip2" => Compression::Bzip2,
        other => {
            p.add(
                "format.compression",
                format!(
                    "{other:?} is not a compression; use \"auto\", \"none\", \"gzip\", \"zstd\" or \"bzip2\""
                ),
            );
            Compression::Auto
        }
    };
    let encoding = match f.encoding.as_deref() {
        None => Encoding::Utf8,
        // Labels the WHATWG standard lacks but people write.
        Some(label) => match label.trim().to_ascii_lowercase().as_str() {
            "utf8" => Some(Encoding::Utf8),
            "auto" => Some(Encoding::Auto),
            "latin-1" | "cp1252" => Some(Encoding::Other(encoding_rs::WINDOWS_1252)),
            "cp1251" => Some(Encoding::Other(encoding_rs::WINDOWS_1251)),
            "cp1256" => Some(Encoding::Other(encoding_rs::WINDOWS_1256)),
            _ => Encoding::for_label(label),
        }
        .unwrap_or_else(|| {
            p.add(
                "format.encoding",
                format!(
                    "{label:?} is not an encoding; use a WHATWG label such as \"utf-8\", \"windows-1252\" (or \"latin-1\"), \"big5\", \"gbk\", \"shift_jis\", \"euc-kr\", \"windows-1256\", \"iso-8859-2\", \"koi8-r\" or \"utf-16le\""
                ),
            );
            Encoding::Utf8
        }),
    };
    FormatSpec {
        kind,
        compression,
        delimiter: dialect.delimiter,
        quote: dialect.quote,
        escape: dialect.escape,
        double_quote: dialect.double_quote,
        has_header: f.has_header.unwrap_or(true),
        encoding,
        // A kept column is a string: no value only where strings can be null.
        kept_null_values: match dialect.strings_can_be_null {
            true => f.null_values.clone().unwrap_or_default(),
            false => Vec::new(),
        },
        strings_can_be_null: dialect.strings_can_be_null,
        null_values: f.null_values.unwrap_or_else(|| vec![String::new()]),
        skip_rows_before_header: dialect.skip_rows_before_header,
        skip_rows_after_header: dialect.skip_rows_after_header,
        comment: dialect.comment,
        scratch: None,
        max_row_group_bytes,
    }
}

/// A JSON format's keys beyond the common ones: none.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoKeys {}

//! The CSV dialect keys of `[format]` (`csv`, `tsv`, and `auto`, which may pick CSV): the
//! delimiter, quote, escape and comment characters and the rows around the header; their
//! checks. Pure.

use crate::config::validate::{Problems, in_range};
use crate::formats::FormatKind;
use serde::Deserialize;

/// The dialect keys as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDialect {
    pub delimiter: Option<String>,
    pub quote_char: Option<String>,
    pub escape_char: Option<String>,
    pub double_quote: Option<bool>,
    pub comment_char: Option<String>,
    pub strings_can_be_null: Option<bool>,
    pub skip_rows_before_header: Option<i64>,
    pub skip_rows_after_header: Option<i64>,
}

impl RawDialect {
    /// The keys a kind of format reads: all of them for CSV, TSV (whose delimiter is
    /// always a tab: setting it is a problem of its own) and `auto`; none for JSON.
    pub fn keys_for(kind: FormatKind) -> Vec<&'static str> {
        match kind {
            FormatKind::Csv | FormatKind::Tsv | FormatKind::Auto => {
                crate::config::kind::keys_of::<RawDialect>().to_vec()
            }
            FormatKind::Json | FormatKind::Jsonl | FormatKind::Parquet | FormatKind::Avro => Vec::new(),
        }
    }
}

/// The dialect, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedDialect {
    pub delimiter: u8,
    pub quote: Option<u8>,
    pub escape: Option<u8>,
    /// A doubled quote inside quotes is a quote (`double_quote`, default true), whether or
    /// not there is an escape character.
    pub double_quote: bool,
    pub comment: Option<u8>,
    /// Whether `null_values` turn string fields (and kept columns) null
    /// (`strings_can_be_null`, default true).
    pub strings_can_be_null: bool,
    pub skip_rows_before_header: usize,
    pub skip_rows_after_header: usize,
}

/// Checks the dialect keys, reporting every problem.
pub fn validate(f: &RawDialect, p: &mut Problems<'_>) -> CheckedDialect {
    let delimiter = match f.delimiter.as_deref() {
        None => b',',
        Some(d) if d.len() == 1 && d.is_ascii() && d != "\"" && d != "\n" && d != "\r" => d.as_bytes()[0],
        Some(d) => {
            p.add(
                "format.delimiter",
                format!("{d:?} is not a single ASCII character; use e.g. \",\", \";\", \"|\" or \"\\t\""),
            );
            b','
        }
    };
    // One ASCII character other than a line break and the delimiter; `""` means none.
    let mut one_char = |key: &str, value: &Option<String>, default: Option<u8>| -> Option<u8> {
        let Some(v) = value else { return default };
        if v.is_empty() {
            return None;
        }
        match v.as_bytes() {
            [b] if b.is_ascii() && *b != b'\n' && *b != b'\r' && *b != delimiter => Some(*b),
            _ => {
                p.add(
                    &format!("format.{key}"),
                    format!("{v:?} is not one ASCII character other than a line break and the delimiter; use e.g. \"|\", or \"\" for none"),
                );
                default
            }
        }
    };
    let quote = one_char("quote_char", &f.quote_char, Some(b'"'));
    let escape = one_char("escape_char", &f.escape_char, None);
    let comment = one_char("comment_char", &f.comment_char, None);
    let skip_rows_before_header = in_range(
        p,
        "format.skip_rows_before_header",
        f.skip_rows_before_header,
        0,
        0,
        1_000_000,
    ) as usize;
    let skip_rows_after_header = in_range(
        p,
        "format.skip_rows_after_header",
        f.skip_rows_after_header,
        0,
        0,
        1_000_000,
    ) as usize;
    if escape.is_some() && escape == quote {
        p.add(
            "format.escape_char",
            "is the quote character; quotes are escaped by doubling them by default, so leave escape_char out",
        );
    }
    CheckedDialect {
        delimiter,
        quote,
        escape,
        double_quote: f.double_quote.unwrap_or(true),
        comment,
        strings_can_be_null: f.strings_can_be_null.unwrap_or(true),
        skip_rows_before_header,
        skip_rows_after_header,
    }
}

//! `[format]`: the kind, compression, encoding and CSV dialect.

use super::*;

pub(super) fn format(f: RawFormat, p: &mut Problems<'_>) -> FormatSpec {
    let kind = match f.kind.as_deref().unwrap_or("csv") {
        "csv" => FormatKind::Csv,
        "tsv" => FormatKind::Tsv,
        "jsonl" | "ndjson" => FormatKind::Jsonl,
        "json" => FormatKind::Json,
        "auto" => FormatKind::Auto,
        other => {
            p.add(
                "format.type",
                format!("{other:?} is not a format; use \"csv\", \"tsv\", \"json\", \"jsonl\" or \"auto\""),
            );
            FormatKind::Auto
        }
    };
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
    if f.delimiter.is_some() && kind != FormatKind::Csv && kind != FormatKind::Auto {
        p.add("format.delimiter", "applies only to type = \"csv\"");
    }
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
    for (key, set) in [
        ("quote_char", f.quote_char.is_some()),
        ("escape_char", f.escape_char.is_some()),
        ("comment_char", f.comment_char.is_some()),
        ("skip_rows_before_header", f.skip_rows_before_header.is_some()),
        ("skip_rows_after_header", f.skip_rows_after_header.is_some()),
    ] {
        if set && !matches!(kind, FormatKind::Csv | FormatKind::Tsv | FormatKind::Auto) {
            p.add(
                &format!("format.{key}"),
                "applies only to type = \"csv\" or \"tsv\"",
            );
        }
    }
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
        delimiter,
        quote,
        escape,
        has_header: f.has_header.unwrap_or(true),
        encoding,
        kept_null_values: f.null_values.clone().unwrap_or_default(),
        null_values: f.null_values.unwrap_or_else(|| vec![String::new()]),
        skip_rows_before_header,
        skip_rows_after_header,
        comment,
    }
}

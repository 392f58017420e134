//! What a connection says its files look like: the `[format]` kind, compression, encoding
//! and CSV dialect as checked values, and how a run describes them (`preview`'s "read as").
//! Pure data.

use super::*;

/// `[format] type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatKind {
    Csv,
    Tsv,
    /// A top-level array of objects (one row each), or one object (one row).
    Json,
    Jsonl,
    /// Apache Parquet: columns by name, a batch of rows at a time.
    Parquet,
    /// Apache Avro object container files: fields by name, a block at a time.
    Avro,
    /// Chosen per object from the key's extension, else from its first bytes.
    Auto,
}

/// `[format] compression`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// From the first bytes of the object, else from the key's extension.
    Auto,
    None,
    Gzip,
    Zstd,
    Bzip2,
}

/// `[format] encoding`: how the (decompressed) bytes are turned into text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8, checked by the parsers (a byte sequence that is not UTF-8 is a row error).
    Utf8,
    /// Any other encoding of the WHATWG Encoding Standard, by any of its labels (Big5, GBK,
    /// GB18030, Shift_JIS, EUC-KR, windows-125x, ISO-8859-x, KOI8-R, UTF-16LE/BE…), transcoded
    /// as the bytes stream. `latin-1` and `iso-8859-1` name windows-1252 there: the two differ
    /// only in 0x80–0x9F, C1 control codes that real files do not contain.
    Other(&'static encoding_rs::Encoding),
    /// `encoding = "auto"`: a byte order mark, else UTF-8 when the first 64 KiB are valid
    /// UTF-8, else windows-1252 (which decodes any byte).
    Auto,
}

impl Encoding {
    /// The encoding a WHATWG label names (`"utf-8"`, `"big5"`, `"latin1"`, `"utf-16le"`…).
    pub fn for_label(label: &str) -> Option<Encoding> {
        let found = encoding_rs::Encoding::for_label(label.trim().as_bytes())?;
        Some(if found == encoding_rs::UTF_8 {
            Encoding::Utf8
        } else {
            Encoding::Other(found)
        })
    }

    /// The encoding's canonical name.
    pub fn name(&self) -> &'static str {
        match self {
            Encoding::Utf8 => "UTF-8",
            Encoding::Other(e) => e.name(),
            Encoding::Auto => "auto (byte order mark, else UTF-8 if valid, else windows-1252)",
        }
    }
}

/// A checked `[format]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatSpec {
    pub kind: FormatKind,
    pub compression: Compression,
    /// The CSV delimiter; TSV always uses a tab.
    pub delimiter: u8,
    /// The CSV quote (`quote_char`, default `"`); none: quotes are ordinary characters.
    pub quote: Option<u8>,
    /// The CSV escape inside quoted values (`escape_char`); none: a quote is escaped by
    /// doubling it.
    pub escape: Option<u8>,
    /// A doubled quote inside quotes is a quote (`double_quote`).
    pub double_quote: bool,
    pub has_header: bool,
    pub encoding: Encoding,
    /// CSV cells that mean no value (`null_values`, default `[""]`), compared exactly.
    pub null_values: Vec<String>,
    /// The same for the columns kept beside the fields (`unknown_fields = "keep"`):
    /// `null_values` when the configuration gives it, else none — a kept column keeps its
    /// text, an empty cell included, unless told otherwise.
    pub kept_null_values: Vec<String>,
    /// Whether `null_values` apply to string fields and kept columns (`strings_can_be_null`);
    /// when not, those keep every text, an empty cell included.
    pub strings_can_be_null: bool,
    /// CSV records skipped before the header (a banner), and after it (units, notes).
    pub skip_rows_before_header: usize,
    pub skip_rows_after_header: usize,
    /// CSV lines that start with this character are skipped (`comment_char`).
    pub comment: Option<u8>,
    /// Where a format read out of order (Parquet: its footer first) copies an object: the
    /// spool folder (`spool_dir`), else the system's temporary folder.
    pub scratch: Option<std::path::PathBuf>,
    /// Parquet: the largest row group (uncompressed, as the footer says) a file may have
    /// (`max_row_group_bytes`), since one is held in memory while it is read.
    pub max_row_group_bytes: u64,
}

/// `max_row_group_bytes` unless set: 512 MiB.
pub const DEFAULT_MAX_ROW_GROUP_BYTES: u64 = 512 << 20;

/// How CSV text is split into fields: what the record cap and the parser must agree on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    pub delimiter: u8,
    pub quote: Option<u8>,
    pub escape: Option<u8>,
    /// A doubled quote inside quotes is a quote.
    pub double_quote: bool,
    /// Lines that start with it are not records.
    pub comment: Option<u8>,
}

impl Dialect {
    /// Comma-separated, `"`-quoted, quotes doubled.
    pub const CSV: Dialect = Dialect {
        delimiter: b',',
        quote: Some(b'"'),
        escape: None,
        double_quote: true,
        comment: None,
    };
}

impl Default for FormatSpec {
    fn default() -> Self {
        FormatSpec {
            kind: FormatKind::Csv,
            compression: Compression::Auto,
            delimiter: b',',
            quote: Some(b'"'),
            escape: None,
            double_quote: true,
            has_header: true,
            encoding: Encoding::Utf8,
            null_values: vec![String::new()],
            kept_null_values: Vec::new(),
            strings_can_be_null: true,
            skip_rows_before_header: 0,
            skip_rows_after_header: 0,
            comment: None,
            scratch: None,
            max_row_group_bytes: DEFAULT_MAX_ROW_GROUP_BYTES,
        }
    }
}
/// The format an object is parsed as: the configured one, or the one its extension names
/// (looked up before any compression suffix: `a.csv.gz` is CSV).
/// The quote and escape, in words.
pub(super) fn quoting(spec: &FormatSpec) -> String {
    match (spec.quote, spec.escape) {
        (None, _) => "no quoting".to_string(),
        (Some(q), None) if spec.double_quote => format!("quote '{}' (doubled to escape)", q as char),
        (Some(q), None) => format!("quote '{}' (not escaped)", q as char),
        (Some(q), Some(e)) if spec.double_quote => {
            format!("quote '{}', escape '{}' (or doubled)", q as char, e as char)
        }
        (Some(q), Some(e)) => format!("quote '{}', escape '{}'", q as char, e as char),
    }
}

/// How an object is read, in words, for `preview`: the format (as resolved for `key`), the
/// CSV dialect, whether the first line is a header, the encoding and the compression.
pub fn dialect(spec: &FormatSpec, key: &str) -> String {
    let kind = resolve_kind(spec.kind, key);
    let shown = |b: u8| match b {
        b'\t' => "tab".to_string(),
        b => format!("'{}'", b as char),
    };
    let mut parts = vec![match kind {
        Some(FormatKind::Csv) => format!("csv, delimiter {}, {}", shown(spec.delimiter), quoting(spec)),
        Some(FormatKind::Tsv) => format!("tsv, delimiter tab, {}", quoting(spec)),
        Some(FormatKind::Json) => "json (an array of objects, or one object)".to_string(),
        Some(FormatKind::Jsonl) => "jsonl (one object per line)".to_string(),
        // Compressed inside, and binary: the encoding and compression below do not apply.
        Some(FormatKind::Parquet) => return "parquet (columns by name, compressed inside)".to_string(),
        Some(FormatKind::Avro) => return "avro (fields by name, compressed inside)".to_string(),
        Some(FormatKind::Auto) | None => {
            "from the object's first bytes (Parquet or Avro), as the key's extension names none".to_string()
        }
    }];
    if matches!(kind, Some(FormatKind::Csv | FormatKind::Tsv)) {
        if spec.skip_rows_before_header > 0 {
            parts.push(format!("{} rows skipped first", spec.skip_rows_before_header));
        }
        parts.push(if spec.has_header {
            "then a header".to_string()
        } else {
            "no header (columns by position)".to_string()
        });
        if spec.skip_rows_after_header > 0 {
            parts.push(format!("{} rows skipped after it", spec.skip_rows_after_header));
        }
        if let Some(c) = spec.comment {
            parts.push(format!("lines starting with '{}' skipped", c as char));
        }
    }
    parts.push(format!(
        "encoding {} (a byte order mark wins)",
        spec.encoding.name()
    ));
    parts.push(match spec.compression {
        Compression::Auto => "compression from the first bytes or the extension".to_string(),
        Compression::None => "not compressed".to_string(),
        Compression::Gzip => "gzip".to_string(),
        Compression::Zstd => "zstd".to_string(),
        Compression::Bzip2 => "bzip2".to_string(),
    });
    parts.join("; ")
}

/// The typed format whose magic bytes an object starts with: `PAR1` (Parquet), `Obj` and 1
/// (an Avro object container file).
pub fn kind_by_magic(first: &[u8]) -> Option<FormatKind> {
    match first {
        b"PAR1" => Some(FormatKind::Parquet),
        b"Obj\x01" => Some(FormatKind::Avro),
        _ => None,
    }
}

pub fn resolve_kind(kind: FormatKind, key: &str) -> Option<FormatKind> {
    if kind != FormatKind::Auto {
        return Some(kind);
    }
    let name = key.rsplit('/').next().unwrap_or(key).to_ascii_lowercase();
    let name = match codec_by_extension(&name) {
        Some(codec) => &name[..name.len() - codec.extension_len(&name)],
        None => &name,
    };
    let ext = name.rsplit_once('.').map(|(_, e)| e)?;
    match ext {
        "csv" => Some(FormatKind::Csv),
        "tsv" | "tab" => Some(FormatKind::Tsv),
        "json" => Some(FormatKind::Json),
        "jsonl" | "ndjson" => Some(FormatKind::Jsonl),
        "parquet" => Some(FormatKind::Parquet),
        "avro" => Some(FormatKind::Avro),
        _ => None,
    }
}

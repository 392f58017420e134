//! The contract between a parser and whoever takes its rows: a checked row and its
//! provenance, a row error, the [`RowSink`] that receives both, the in-memory [`Sample`] that
//! `preview` and `template infer` use, and how a parse ends ([`ParseStats`], [`ParseError`]).

use super::*;

/// Where a row came from; added to every delivered row as `_source_key`, `_source_version`
/// and `_source_line`.
#[derive(Debug, Clone, Copy)]
pub struct Provenance<'a> {
    pub key: &'a str,
    pub version: &'a str,
}

/// The longest raw record kept with a row error.
pub const RAW_CAP: usize = 1024;

/// A row that failed its template or could not be read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RowError {
    /// The 1-based line the row starts on.
    pub line: u64,
    /// The field that failed, when one did.
    pub field: Option<String>,
    pub reason: RowFault,
    /// The record as read, capped at [`RAW_CAP`] bytes.
    pub raw: String,
}

/// Why a row was refused: the kind of fault, and the words shown for it (made where the
/// fault is found, which knows the value and the fix).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RowFault {
    /// A value fails its field: its type, format, allowed values, or `required`.
    Value(String),
    /// A value the target cannot store (`targets::ValueRules`).
    Refused(String),
    /// Text that could not be read as a row of its format: syntax, field count, encoding,
    /// size.
    Unreadable(String),
    /// As a state store's quarantine recorded it: the words, the kind not kept.
    Recorded(String),
}

impl RowFault {
    /// The words shown for the fault.
    pub fn text(&self) -> &str {
        match self {
            RowFault::Value(t) | RowFault::Refused(t) | RowFault::Unreadable(t) | RowFault::Recorded(t) => t,
        }
    }
}

impl std::fmt::Display for RowFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text())
    }
}

/// One row that passed its template, as the JSON object it is delivered as: the template's
/// fields in order, then the fields kept by `unknown_fields = "keep"`, then its provenance.
/// Borrowed from the parser, which reuses its buffer for the next row.
pub struct Row<'a> {
    pub provenance: Provenance<'a>,
    /// The 1-based line the row starts on.
    pub line: u64,
    /// The row's JSON text (one object, no newline).
    pub(super) json: &'a [u8],
    /// The row as a CSV record, terminator included, when the sink asked for it
    /// ([`RowSink::csv_out`]).
    pub(super) csv: Option<&'a [u8]>,
}

impl Row<'_> {
    /// The row's JSON text: one object, no newline (empty for a sink that does not want it:
    /// [`RowSink::wants_json`]).
    pub fn json(&self) -> &[u8] {
        self.json
    }

    /// The row as a CSV record of the template's fields and the provenance columns, with its
    /// terminator, when the sink asked for CSV.
    pub fn csv(&self) -> Option<&[u8]> {
        self.csv
    }

    /// The row as a JSON object map (a preview, tests); the spool takes [`Row::json`].
    pub fn to_map(&self) -> io::Result<Map<String, Value>> {
        serde_json::from_slice(self.json).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// Receives the rows of one object as they are parsed.
pub trait RowSink {
    /// A row that passed its template.
    fn row(&mut self, row: &Row<'_>) -> io::Result<()>;
    /// A row that did not; one call per failing field.
    fn error(&mut self, error: RowError);
    /// Whether the parser should go on after the row just handed over; a preview stops after
    /// its first rows.
    fn wants_more(&self) -> bool {
        true
    }
    /// Called once after the last row, on the thread that parsed: a sink that writes
    /// finishes writing here. `parse` does not call it; whoever drives the parse does.
    fn end(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Whether the destination of the rows cannot store a row that passed its template (a
    /// NUL character for PostgreSQL): such a row becomes a row error instead, decided before
    /// anything is delivered.
    fn refusal(&self, _json: &[u8]) -> Option<Refusal> {
        None
    }
    /// Whether the rows are to be written as CSV records too (the spool of a CSV output):
    /// each [`Row::csv`] is then the record, made while the row is checked.
    fn csv_out(&self) -> Option<CsvOut> {
        None
    }
    /// Whether the sink reads [`Row::json`]. A sink that takes CSV records and says no gets
    /// rows whose JSON text is empty: building and carrying it would be wasted work.
    fn wants_json(&self) -> bool {
        true
    }
    /// A typed file's schema (Parquet, Avro), handed over before its first row.
    fn schema(&mut self, _schema: &FileSchema) {}
    /// Whether the sink takes a run of good rows at once ([`RowSink::rows`]): it would only
    /// write each row's JSON text and a line break, and refuses none.
    fn takes_blocks(&self) -> bool {
        false
    }
    /// Several good rows at once: their JSON texts, each followed by `\n`. Called only when
    /// [`RowSink::takes_blocks`] says so; it saves a copy of every row and a call per row.
    fn rows(&mut self, _block: &[u8]) -> io::Result<()> {
        Err(io::Error::other("this sink takes rows one at a time"))
    }
}

/// Why a row's destination cannot store a value of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub field: String,
    pub reason: String,
}

/// A sink that keeps the first rows of an object, good and bad, and stops the parser after
/// `limit` of them — or, made with [`Sample::whole`], lets it read on to the end so that the
/// parse counts every row (`preview`'s verdict).
#[derive(Debug, Default)]
pub struct Sample {
    pub limit: u64,
    /// Whether the parser reads the whole object.
    pub(super) whole: bool,
    /// The good rows, with provenance.
    pub rows: Vec<Map<String, Value>>,
    /// The errors of the bad rows, one per failing field.
    pub errors: Vec<RowError>,
    /// A typed file's schema, as its reader handed it over.
    pub schema: Option<FileSchema>,
    pub(super) bad_lines: u64,
    pub(super) last_bad_line: Option<u64>,
}

impl Sample {
    pub fn new(limit: u64) -> Sample {
        Sample {
            limit,
            ..Sample::default()
        }
    }

    /// Keeps the first `limit` rows, good and bad, and lets the whole object be read.
    pub fn whole(limit: u64) -> Sample {
        Sample {
            limit,
            whole: true,
            ..Sample::default()
        }
    }

    pub(super) fn full(&self) -> bool {
        (self.rows.len() as u64) + self.bad_lines >= self.limit
    }
}

impl RowSink for Sample {
    fn schema(&mut self, schema: &FileSchema) {
        self.schema = Some(schema.clone());
    }
    fn row(&mut self, row: &Row<'_>) -> io::Result<()> {
        if !self.full() {
            self.rows.push(row.to_map()?);
        }
        Ok(())
    }
    fn error(&mut self, error: RowError) {
        // A bad row reports one error per failing field; it counts once.
        if self.last_bad_line != Some(error.line) {
            if self.full() {
                return;
            }
            self.bad_lines += 1;
            self.last_bad_line = Some(error.line);
        }
        self.errors.push(error);
    }
    fn wants_more(&self) -> bool {
        self.whole || !self.full()
    }
}

/// Counts for one parsed object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParseStats {
    pub rows: u64,
    pub bad_rows: u64,
}

/// Why an object could not be parsed at all. Every variant but [`ParseError::Read`] and
/// [`ParseError::Sink`] is a property of the file: importing it again gives the same answer.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("reading the object failed: {}", crate::text::cause_chain(.0))]
    Read(io::Error),
    #[error("writing the spool failed: {0}")]
    Sink(#[source] io::Error),
    #[error(
        "cannot tell the format from the key's extension (.csv, .tsv, .json, .jsonl, .ndjson, before any .gz, .zst or .bz2, or .parquet, .avro) nor from its first bytes; set `type` in [format]"
    )]
    UnknownFormat,
    #[error("is not a Parquet file s3-importd can read: {reason}")]
    Parquet { reason: String },
    #[error("is not an Avro file s3-importd can read: {reason}")]
    Avro { reason: String },
    #[error("the {format} schema lacks the required column{} {}; the file's columns are {}", if .missing.len() > 1 { "s" } else { "" }, quoted_list(.missing), quoted_list(.found))]
    SchemaLacks {
        format: &'static str,
        missing: Vec<String>,
        found: Vec<String>,
    },
    #[error(
        "column {column:?} is {declared} in the file, which cannot be read as the {wanted} field {field:?}; {fix}"
    )]
    ColumnType {
        column: String,
        declared: String,
        field: String,
        wanted: &'static str,
        fix: String,
    },
    #[error(
        "row group {index} holds {bytes} bytes uncompressed, more than max_row_group_bytes ({limit}), and one row group is held in memory while it is read; raise max_row_group_bytes in [format], or ask the sender for smaller row groups"
    )]
    RowGroupTooLarge { index: usize, bytes: u64, limit: u64 },
    #[error("is not valid JSON: {reason} at line {line}, column {column}")]
    Json { line: u64, column: u64, reason: String },
    #[error("the top-level JSON value is {found}; a json file must hold an array of objects or one object")]
    NotRows { found: &'static str },
    #[error("the JSON value starting on line {line} is larger than {limit} bytes; no row may be that large")]
    TooLarge { line: u64, limit: usize },
    #[error(
        "the header is longer than {bytes} bytes or has more than {fields} fields; no header may be that large"
    )]
    HeaderTooLarge { bytes: usize, fields: usize },
    #[error("the {codec} stream is corrupt or truncated: {source}")]
    Corrupt {
        codec: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("the header lacks the required column{} {}; the header found is {}", if .missing.len() > 1 { "s" } else { "" }, quoted_list(.missing), quoted_list(.found))]
    MissingColumns {
        missing: Vec<String>,
        found: Vec<String>,
    },
    #[error("the header has column{} no field claims: {} (unknown_fields = \"reject\"); add fields for them or set unknown_fields = \"ignore\"", if .unknown.len() > 1 { "s" } else { "" }, quoted_list(.unknown))]
    UnknownColumns { unknown: Vec<String> },
}

impl ParseError {
    /// Whether importing the same object again could succeed (the source or the disk failed,
    /// not the file).
    pub fn is_transient(&self) -> bool {
        matches!(self, ParseError::Read(_) | ParseError::Sink(_))
    }
}

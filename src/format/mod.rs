//! File formats: turning the bytes of one object into checked rows and row errors.
//!
//! [`parse`] reads from any `Read` (a decompressed S3 body, a local file, a byte slice in a
//! test) and hands every row to a [`RowSink`] as it goes, so memory does not grow with the
//! object. It does no I/O of its own beyond that reader and the sink: fetching is the source's
//! job, spooling the sink's. An object larger than one chunk is read (and decompressed, and
//! transcoded) by a scoped thread ahead of the parser, and CSV (with a header) and JSON Lines
//! rows are checked by worker threads (`parallel.rs`), so that one object keeps both cores
//! busy; the threads end with the parse. A broken row is a value ([`RowError`]), not a
//! failure; only a reader that fails, or a file that cannot be read as its format at all,
//! ends the object.

mod csv;
mod csv_out;
mod json;
mod jsonl;
mod parallel;
mod record_cap;

pub use csv_out::{CsvEncoder, CsvOut, header as csv_header, needs_guard};

/// The provenance columns every row carries, in the order CSV output puts them.
pub const PROVENANCE: [&str; 3] = ["_source_key", "_source_version", "_source_line"];

use crate::template::{FieldError, RowBuffer, Template, write_json_str, write_json_value};
use crate::text::quoted_list;
use serde_json::{Map, Value};
use std::io::{self, BufRead, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// `[format] type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatKind {
    Csv,
    Tsv,
    /// A top-level array of objects (one row each), or one object (one row).
    Json,
    Jsonl,
    /// Chosen per object from the key's extension.
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
    pub has_header: bool,
    pub encoding: Encoding,
    /// CSV cells that mean no value (`null_values`, default `[""]`), compared exactly.
    pub null_values: Vec<String>,
    /// The same for the columns kept beside the fields (`unknown_fields = "keep"`):
    /// `null_values` when the configuration gives it, else none — a kept column keeps its
    /// text, an empty cell included, unless told otherwise.
    pub kept_null_values: Vec<String>,
    /// CSV records skipped before the header (a banner), and after it (units, notes).
    pub skip_rows_before_header: usize,
    pub skip_rows_after_header: usize,
    /// CSV lines that start with this character are skipped (`comment_char`).
    pub comment: Option<u8>,
}

/// How CSV text is split into fields: what the record cap and the parser must agree on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    pub delimiter: u8,
    pub quote: Option<u8>,
    pub escape: Option<u8>,
    /// Lines that start with it are not records.
    pub comment: Option<u8>,
}

impl Dialect {
    /// Comma-separated, `"`-quoted, quotes doubled.
    pub const CSV: Dialect = Dialect {
        delimiter: b',',
        quote: Some(b'"'),
        escape: None,
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
            has_header: true,
            encoding: Encoding::Utf8,
            null_values: vec![String::new()],
            kept_null_values: Vec::new(),
            skip_rows_before_header: 0,
            skip_rows_after_header: 0,
            comment: None,
        }
    }
}
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
    pub reason: String,
    /// The record as read, capped at [`RAW_CAP`] bytes.
    pub raw: String,
}

/// One row that passed its template, as the JSON object it is delivered as: the template's
/// fields in order, then the fields kept by `unknown_fields = "keep"`, then its provenance.
/// Borrowed from the parser, which reuses its buffer for the next row.
pub struct Row<'a> {
    pub provenance: Provenance<'a>,
    /// The 1-based line the row starts on.
    pub line: u64,
    /// The row's JSON text (one object, no newline).
    json: &'a [u8],
    /// The row as a CSV record, terminator included, when the sink asked for it
    /// ([`RowSink::csv_out`]).
    csv: Option<&'a [u8]>,
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
    whole: bool,
    /// The good rows, with provenance.
    pub rows: Vec<Map<String, Value>>,
    /// The errors of the bad rows, one per failing field.
    pub errors: Vec<RowError>,
    bad_lines: u64,
    last_bad_line: Option<u64>,
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

    fn full(&self) -> bool {
        (self.rows.len() as u64) + self.bad_lines >= self.limit
    }
}

impl RowSink for Sample {
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
        "cannot tell the format from the key's extension (.csv, .tsv, .json, .jsonl, .ndjson, before any .gz, .zst or .bz2); set `type` in [format]"
    )]
    UnknownFormat,
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

/// The format an object is parsed as: the configured one, or the one its extension names
/// (looked up before any compression suffix: `a.csv.gz` is CSV).
/// The quote and escape, in words.
fn quoting(spec: &FormatSpec) -> String {
    match (spec.quote, spec.escape) {
        (None, _) => "no quoting".to_string(),
        (Some(q), None) => format!("quote '{}' (doubled to escape)", q as char),
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
        Some(FormatKind::Auto) | None => "a format the key's extension does not name".to_string(),
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
        _ => None,
    }
}

/// A compression codec an object can be read through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Gzip,
    Zstd,
    Bzip2,
}

impl Codec {
    /// The name used in `[format] compression` and in error messages.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Zstd => "zstd",
            Codec::Bzip2 => "bzip2",
        }
    }

    const EXTENSIONS: &'static [(&'static str, Codec)] = &[
        (".gz", Codec::Gzip),
        (".gzip", Codec::Gzip),
        (".zst", Codec::Zstd),
        (".zstd", Codec::Zstd),
        (".bz2", Codec::Bzip2),
    ];

    /// The length of the extension of this codec that `name` ends with.
    fn extension_len(self, name: &str) -> usize {
        Codec::EXTENSIONS
            .iter()
            .find(|(ext, c)| *c == self && name.ends_with(ext))
            .map_or(0, |(ext, _)| ext.len())
    }

    /// The codec whose magic number `head` starts with.
    fn by_magic(head: &[u8]) -> Option<Codec> {
        if head.starts_with(&[0x1f, 0x8b]) {
            Some(Codec::Gzip)
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Codec::Zstd)
        } else if head.starts_with(b"BZh") {
            Some(Codec::Bzip2)
        } else {
            None
        }
    }
}

fn codec_by_extension(lowercase_name: &str) -> Option<Codec> {
    Codec::EXTENSIONS
        .iter()
        .find(|(ext, _)| lowercase_name.ends_with(ext))
        .map(|(_, c)| *c)
}

/// The codec an object is read through. With `auto`, the magic number decides when it names
/// a codec (it cannot lie), else the extension (so that a damaged `.gz` fails as corrupt gzip
/// rather than being parsed as text).
pub fn choose_codec(compression: Compression, key: &str, head: &[u8]) -> Option<Codec> {
    match compression {
        Compression::None => None,
        Compression::Gzip => Some(Codec::Gzip),
        Compression::Zstd => Some(Codec::Zstd),
        Compression::Bzip2 => Some(Codec::Bzip2),
        Compression::Auto => Codec::by_magic(head).or_else(|| codec_by_extension(&key.to_ascii_lowercase())),
    }
}

const BUF: usize = 64 * 1024;

/// A reader over the decompressed bytes of an object, with the codec used.
fn decompress<'r>(
    compression: Compression,
    key: &str,
    reader: Box<dyn Read + Send + 'r>,
) -> io::Result<(Box<dyn Read + Send + 'r>, Option<Codec>)> {
    let (head, rest) = peek(reader, 4)?;
    let codec = choose_codec(compression, key, &head);
    let unread = io::Cursor::new(head).chain(rest);
    // The decoders read through a buffer; plain text is buffered once, by `decode`.
    let buffered = |unread| BufReader::with_capacity(BUF, unread);
    let reader: Box<dyn Read + Send + 'r> = match codec {
        None => Box::new(unread),
        Some(Codec::Gzip) => Box::new(flate2::bufread::MultiGzDecoder::new(buffered(unread))),
        // Both decoders read every frame or stream of a concatenated file, as gzip does.
        Some(Codec::Zstd) => Box::new(zstd::stream::read::Decoder::with_buffer(buffered(unread))?),
        Some(Codec::Bzip2) => Box::new(bzip2::bufread::MultiBzDecoder::new(buffered(unread))),
    };
    Ok((reader, codec))
}

/// Reads the first `n` bytes (fewer at the end of input) and returns them and the reader of
/// the rest. A reader may hand out fewer bytes per call than asked, so this reads until it
/// has `n` or the input ends.
fn peek<R: Read>(mut reader: R, n: usize) -> io::Result<(Vec<u8>, R)> {
    let mut head = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match reader.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    head.truncate(got);
    Ok((head, reader))
}

/// How much of an object `encoding = "auto"` looks at.
const AUTO_SNIFF: usize = 64 * 1024;

/// Whether bytes are UTF-8, allowing a character cut off at the end (the sniff's edge).
fn looks_utf8(bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && bytes.len() - e.valid_up_to() < 4,
    }
}

/// The text of an object as UTF-8: a UTF-8 byte order mark is taken off; other encodings are
/// transcoded as they stream. A byte order mark wins over the configuration: a file that
/// starts with a UTF-16 (or UTF-8) mark is read as such whatever `encoding` says. Returns the
/// encoding the text is read in, for the row errors that name it.
fn decode<'r>(
    encoding: Encoding,
    reader: Box<dyn Read + Send + 'r>,
    buf: usize,
) -> io::Result<(Box<dyn BufRead + Send + 'r>, &'static encoding_rs::Encoding)> {
    // "auto" looks further ahead: far enough to tell UTF-8 text from another encoding.
    let ahead = if encoding == Encoding::Auto { AUTO_SNIFF } else { 3 };
    let (head, rest) = peek(reader, ahead)?;
    let marked = encoding_rs::Encoding::for_bom(&head).map(|(found, _)| found);
    let chosen = match encoding {
        Encoding::Auto if looks_utf8(&head) => encoding_rs::UTF_8,
        Encoding::Auto => encoding_rs::WINDOWS_1252,
        Encoding::Utf8 => encoding_rs::UTF_8,
        Encoding::Other(e) => e,
    };
    let actual = marked.unwrap_or(chosen);
    let input = io::Cursor::new(head).chain(rest);
    if actual == encoding_rs::UTF_8 {
        // UTF-8 is passed through as it is, mark removed: the parsers check it where they
        // read it, so that a bad sequence is the row error of the row that holds it.
        let mut input = BufReader::with_capacity(buf, input);
        if marked.is_some() {
            // The mark is in the peeked head, which the first fill returns.
            input.fill_buf()?;
            input.consume(3);
        }
        return Ok((Box::new(input), actual));
    }
    Ok((Box::new(Transcoded::new(input, actual)), actual))
}

/// Transcodes text of another encoding to UTF-8 as it is read, without replacing what it
/// cannot decode: each malformed sequence becomes the byte 0xFF, which is never valid UTF-8,
/// so that the parser finds it where it finds any bad UTF-8 — as the row error of the row
/// that holds it — instead of a silently substituted U+FFFD.
struct Transcoded<R> {
    inner: R,
    decoder: encoding_rs::Decoder,
    /// Bytes read from `inner`, `start..end` not yet decoded.
    input: Box<[u8]>,
    start: usize,
    end: usize,
    /// Whether `inner` is at its end.
    eof: bool,
    /// Decoded text, `pos..` not yet handed out.
    out: Vec<u8>,
    pos: usize,
    /// Whether the decoder has seen the end and given all it had.
    finished: bool,
}

impl<R: Read> Transcoded<R> {
    fn new(inner: R, encoding: &'static encoding_rs::Encoding) -> Self {
        Transcoded {
            inner,
            // The byte order mark was read by `decode`; this only takes it off.
            decoder: encoding.new_decoder_with_bom_removal(),
            input: vec![0; BUF].into_boxed_slice(),
            start: 0,
            end: 0,
            eof: false,
            out: Vec::with_capacity(BUF),
            pos: 0,
            finished: false,
        }
    }
}

impl<R: Read> Read for Transcoded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.fill_buf()?.read(buf)?;
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read> BufRead for Transcoded<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos == self.out.len() && !self.finished {
            if self.start == self.end && !self.eof {
                self.start = 0;
                self.end = loop {
                    match self.inner.read(&mut self.input) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        other => break other?,
                    }
                };
                self.eof = self.end == 0;
            }
            // One byte is left free for the marker of a malformed sequence.
            self.out.resize(BUF, 0);
            let (result, read, written) = self.decoder.decode_to_utf8_without_replacement(
                &self.input[self.start..self.end],
                &mut self.out[..BUF - 1],
                self.eof,
            );
            self.start += read;
            self.out.truncate(written);
            self.pos = 0;
            match result {
                encoding_rs::DecoderResult::InputEmpty => self.finished = self.eof,
                encoding_rs::DecoderResult::OutputFull => {}
                encoding_rs::DecoderResult::Malformed(..) => self.out.push(0xFF),
            }
        }
        Ok(&self.out[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.out.len());
    }
}

/// Where text that did not decode starts in a value, as "byte N" (1-based) of the value in
/// its own encoding: the part before it is encoded back to count its bytes.
pub(crate) fn undecodable_at(value: &[u8], encoding: &'static encoding_rs::Encoding) -> usize {
    let valid = match std::str::from_utf8(value) {
        Ok(_) => return 0,
        Err(e) => e.valid_up_to(),
    };
    // `valid_up_to` ends on a character boundary.
    let before = std::str::from_utf8(&value[..valid]).unwrap_or_default();
    let bytes = if encoding == encoding_rs::UTF_16LE || encoding == encoding_rs::UTF_16BE {
        before.encode_utf16().count() * 2
    } else if encoding.output_encoding() == encoding {
        encoding.encode(before).0.len()
    } else {
        before.len()
    };
    bytes + 1
}

/// The row error's words for text that did not decode: `what` is not valid, at a byte of
/// `unit` (whose text, as read, is `text`).
pub(crate) fn undecodable(
    what: &str,
    unit: &str,
    text: &[u8],
    encoding: &'static encoding_rs::Encoding,
) -> String {
    format!(
        "{what} is not valid {} text: byte {} of the {unit} cannot be decoded (is `encoding` right?)",
        encoding.name(),
        undecodable_at(text, encoding)
    )
}

/// A reader that remembers whether its inner reader failed, so that a failing source is told
/// apart from a decoder rejecting the bytes it produced.
struct Watched<R> {
    inner: R,
    failed: Arc<AtomicBool>,
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner
            .read(buf)
            .inspect_err(|_| self.failed.store(true, Ordering::Relaxed))
    }
}

/// A reader that fails once with the error it holds, then reads nothing.
struct Failed(Option<io::Error>);

impl Read for Failed {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        self.0.take().map_or(Ok(0), Err)
    }
}

impl BufRead for Failed {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.0.take().map_or(Ok(&[]), Err)
    }
    fn consume(&mut self, _: usize) {}
}

/// The size of the chunks handed from the read-ahead thread to the parser.
const CHUNK: usize = 256 * 1024;
/// How many chunks may wait for the parser: memory stays at a few chunks per object.
const CHUNKS_AHEAD: usize = 4;

/// The parser's end of a read-ahead thread: chunks of decompressed text arrive through a
/// bounded channel, and emptied chunks go back to be refilled, so no memory is allocated per
/// chunk.
struct ReadAhead {
    chunks: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    empties: std::sync::mpsc::Sender<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
}

impl ReadAhead {
    /// Starts a thread in `scope` that reads `input` to its end (or to the first error) ahead
    /// of the parser. The thread stops when the parser drops its end.
    fn start<'scope, 'env>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        mut input: Box<dyn BufRead + Send + 'env>,
    ) -> ReadAhead {
        let (chunk_tx, chunks) = std::sync::mpsc::sync_channel(CHUNKS_AHEAD);
        let (empties, empty_rx) = std::sync::mpsc::channel::<Vec<u8>>();
        scope.spawn(move || {
            loop {
                let mut chunk = empty_rx.try_recv().unwrap_or_else(|_| Vec::with_capacity(CHUNK));
                chunk.clear();
                let filled = (&mut input).take(CHUNK as u64).read_to_end(&mut chunk);
                let last = !matches!(filled, Ok(n) if n > 0);
                let message = filled.map(|_| chunk);
                if chunk_tx.send(message).is_err() || last {
                    return;
                }
            }
        });
        ReadAhead {
            chunks,
            empties,
            current: Vec::new(),
            at: 0,
        }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ReadAhead {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.at == self.current.len() {
            // A closed channel is the end: the thread sent its last (empty) chunk or error.
            match self.chunks.recv() {
                Ok(Ok(chunk)) => {
                    let used = std::mem::replace(&mut self.current, chunk);
                    let _ = self.empties.send(used);
                    self.at = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    self.current.clear();
                    self.at = 0;
                }
            }
        }
        Ok(&self.current[self.at..])
    }

    fn consume(&mut self, n: usize) {
        self.at = (self.at + n).min(self.current.len());
    }
}

/// Parses one object read from `reader`, checking every row against `template` and handing
/// rows and row errors to `sink`.
pub fn parse(
    reader: impl Read + Send,
    key: &str,
    spec: &FormatSpec,
    template: &Template,
    provenance: Provenance<'_>,
    sink: &mut dyn RowSink,
) -> Result<ParseStats, ParseError> {
    parse_sized(reader, None, key, spec, template, provenance, sink)
}

/// [`parse`], told the object's size when it is known: the read buffers of a small
/// uncompressed object are then sized to it. Buffers are zeroed before their first read, and
/// for thousands of tiny objects zeroing 64 KiB buffers cost more than parsing the objects.
pub fn parse_sized(
    reader: impl Read + Send,
    size: Option<u64>,
    key: &str,
    spec: &FormatSpec,
    template: &Template,
    provenance: Provenance<'_>,
    sink: &mut dyn RowSink,
) -> Result<ParseStats, ParseError> {
    let kind = resolve_kind(spec.kind, key).ok_or(ParseError::UnknownFormat)?;
    let failed = Arc::new(AtomicBool::new(false));
    let watched = Watched {
        inner: reader,
        failed: failed.clone(),
    };
    let (input, codec) = decompress(spec.compression, key, Box::new(watched)).map_err(ParseError::Read)?;
    // Errors the sink raises are told apart by wrapping them in this marker on the way out.
    let classify = |e: io::Error| -> ParseError {
        if e.get_ref().is_some_and(|inner| inner.is::<SinkFailed>()) {
            ParseError::Sink(e)
        } else if failed.load(Ordering::Relaxed) {
            ParseError::Read(e)
        } else if let Some(codec) = codec {
            ParseError::Corrupt {
                codec: codec.name(),
                source: e,
            }
        } else {
            ParseError::Read(e)
        }
    };
    // The size only bounds the text of an uncompressed object; one byte more than the size
    // lets a read see the end at once.
    let small = size
        .filter(|_| codec.is_none())
        .and_then(|n| usize::try_from(n.saturating_add(1)).ok());
    let buf = small.map_or(BUF, |n| n.clamp(4096, BUF));
    let (input, encoding) = decode(spec.encoding, input, buf).map_err(classify)?;
    // CSV records are cut at the limits before anything holds them; the cap runs where the
    // text is read (on the read-ahead thread for a large object), off the parser's thread.
    let marks = Arc::new(record_cap::Marks::default());
    let delimiter = match kind {
        FormatKind::Csv => Some(spec.delimiter),
        FormatKind::Tsv => Some(b'\t'),
        _ => None,
    };
    let dialect = delimiter.map(|delimiter| Dialect {
        delimiter,
        quote: spec.quote,
        escape: spec.escape,
        comment: spec.comment,
    });
    let mut input: Box<dyn BufRead + Send> = match dialect {
        Some(dialect) => Box::new(BufReader::with_capacity(
            buf,
            record_cap::Capped::new(input, dialect, marks.clone()),
        )),
        None => input,
    };
    let mut sink = Provenanced::new(sink, provenance, template);
    sink.encoding = encoding;
    // Reading (and decompressing, and transcoding) is work of its own: for an object larger
    // than a chunk, a second thread does it ahead of the parser, so that two cores work on
    // one object. A smaller object is read whole first and parsed from memory: a thread would
    // cost more than it saves.
    let mut first = Vec::with_capacity(small.map_or(CHUNK, |n| n.min(CHUNK)));
    let first_read = (&mut input).take(CHUNK as u64).read_to_end(&mut first);
    // Only an object that fills a chunk is worth more threads.
    let parallel = matches!(first_read, Ok(n) if n == CHUNK);
    let result = std::thread::scope(|scope| {
        let input: Box<dyn BufRead + Send> = match first_read {
            Ok(n) if n < CHUNK => Box::new(io::Cursor::new(first)),
            Ok(_) => Box::new(ReadAhead::start(
                scope,
                Box::new(io::Cursor::new(first).chain(input)),
            )),
            // The rows before a failure are still parsed, then the parser meets the failure
            // where it happened.
            Err(e) => Box::new(io::Cursor::new(first).chain(Failed(Some(e)))),
        };
        match kind {
            FormatKind::Csv | FormatKind::Tsv => csv::parse(
                input,
                dialect.unwrap_or(Dialect::CSV),
                spec,
                template,
                &mut sink,
                parallel,
                &marks,
            ),
            FormatKind::Jsonl => jsonl::parse(input, template, &mut sink, parallel),
            FormatKind::Json => json::parse(input, template, &mut sink),
            FormatKind::Auto => Err(Failure::File(ParseError::UnknownFormat)),
        }
    });
    match result {
        Ok(()) | Err(Failure::Stopped) => Ok(sink.stats),
        Err(Failure::Io(e)) => Err(classify(e)),
        Err(Failure::File(e)) => Err(e),
    }
}

/// A failure inside a format parser: an I/O error (classified by [`parse`]) or a property of
/// the file.
enum Failure {
    Io(io::Error),
    File(ParseError),
    /// The sink wanted no more rows; not a failure to the caller.
    Stopped,
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Io(e)
    }
}

/// The marker carried by I/O errors that came from the sink.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct SinkFailed(io::Error);

/// The sink as the format parsers see it: adds provenance, counts rows and turns field errors
/// into row errors.
struct Provenanced<'s, 'p> {
    inner: &'s mut dyn RowSink,
    provenance: Provenance<'p>,
    stats: ParseStats,
    /// `"_source_key":…,"_source_version":…,"_source_line":`, rendered once per object.
    provenance_json: Vec<u8>,
    /// The row being checked, reused from row to row.
    buf: RowBuffer,
    /// The encoding the text was read in, named by the errors of text that did not decode.
    encoding: &'static encoding_rs::Encoding,
    /// With a sink that takes CSV records: the encoder, and the record being written.
    csv: Option<(CsvEncoder, Vec<u8>)>,
    /// Whether rows are handed on with their JSON text (see [`RowSink::wants_json`]).
    json: bool,
}

impl<'s, 'p> Provenanced<'s, 'p> {
    fn new(inner: &'s mut dyn RowSink, provenance: Provenance<'p>, template: &Template) -> Self {
        let (csv, json) = (inner.csv_out(), inner.wants_json());
        let mut provenance_json = b"\"_source_key\":".to_vec();
        write_json_str(&mut provenance_json, provenance.key);
        provenance_json.extend_from_slice(b",\"_source_version\":");
        write_json_str(&mut provenance_json, provenance.version);
        provenance_json.extend_from_slice(b",\"_source_line\":");
        Provenanced {
            inner,
            provenance,
            stats: ParseStats::default(),
            provenance_json,
            buf: template.row_buffer(),
            encoding: encoding_rs::UTF_8,
            csv: None,
            json: true,
        }
        .writing_csv(csv, json)
    }

    /// Writes each good row as a CSV record too, in `out`'s dialect, and its JSON text only
    /// when `json` (a worker of a parallel parse is told what the real sink asked for).
    fn writing_csv(mut self, out: Option<CsvOut>, json: bool) -> Self {
        self.csv = out.map(|out| (CsvEncoder::new(out), Vec::new()));
        self.json = json || self.csv.is_none();
        self
    }

    /// Whether rows are handed on with their JSON text.
    fn wants_json(&self) -> bool {
        self.json
    }

    /// The CSV dialect rows are written in, if any.
    fn csv_out(&self) -> Option<CsvOut> {
        self.inner.csv_out()
    }

    /// Delivers the row checked into `self.buf` (with `extra` unknown fields kept) or its
    /// errors.
    fn emit(
        &mut self,
        line: u64,
        checked: Result<(), Vec<FieldError>>,
        extra: &[(String, Value)],
        raw: impl FnOnce() -> String,
    ) -> Result<(), Failure> {
        match checked {
            Ok(()) => {
                // The buffer is taken out while the row is handed on, and put back for the
                // next row, so that its allocation is kept.
                let mut text = std::mem::take(&mut self.buf.text);
                let mut line_digits = itoa::Buffer::new();
                let line_text = line_digits.format(line);
                // The fields' values are in the text already (the CSV record reads them
                // there); the rest of the JSON object only for a sink that reads it.
                if self.json {
                    for (name, value) in extra {
                        write_json_str(&mut text, name);
                        text.push(b':');
                        write_json_value(&mut text, value);
                        text.push(b',');
                    }
                    text.extend_from_slice(&self.provenance_json);
                    text.extend_from_slice(line_text.as_bytes());
                    text.push(b'}');
                }
                // The CSV record: each field's value from its span in the row's text (kept
                // fields have no column in CSV), then the provenance.
                // Taken out while the row is handed on, as the text is.
                let mut record = self.csv.take();
                if let Some((encoder, csv)) = &mut record {
                    csv.clear();
                    let values = self.buf.spans.iter().map(|span| text.get(span.clone()));
                    let texts = [self.provenance.key, self.provenance.version, line_text];
                    if let Err(e) = encoder.record(values, &texts, csv) {
                        self.csv = record;
                        self.buf.text = text;
                        return Err(Failure::Io(io::Error::other(e)));
                    }
                }
                let json: &[u8] = if self.json { &text } else { &[] };
                let handed = self.row_json(line, json, record.as_ref().map(|(_, csv)| csv.as_slice()));
                self.csv = record;
                self.buf.text = text;
                handed
            }
            Err(errors) => {
                let raw = cap(raw());
                for e in errors {
                    self.inner.error(RowError {
                        line,
                        field: Some(e.field),
                        reason: e.reason,
                        raw: raw.clone(),
                    });
                }
                self.bad_row();
                self.go_on()
            }
        }
    }

    /// Hands on a checked row as its JSON text (checked here, or by a worker of a parallel
    /// parse).
    fn row_json(&mut self, line: u64, json: &[u8], csv: Option<&[u8]>) -> Result<(), Failure> {
        if let Some(refusal) = self.inner.refusal(json) {
            self.inner.error(RowError {
                line,
                field: Some(refusal.field),
                reason: refusal.reason,
                raw: cap(String::from_utf8_lossy(json).into_owned()),
            });
            self.bad_row();
            return self.go_on();
        }
        self.stats.rows += 1;
        let row = Row {
            provenance: self.provenance,
            line,
            json,
            csv,
        };
        self.inner
            .row(&row)
            .map_err(|e| Failure::Io(io::Error::other(SinkFailed(e))))?;
        self.go_on()
    }

    /// Hands on a row error found elsewhere; `first` when it is the first error of its row.
    /// The caller asks [`Provenanced::go_on`] after the row's last error.
    fn error(&mut self, error: RowError, first: bool) {
        self.inner.error(error);
        if first {
            self.bad_row();
        }
    }

    /// Reports a row that could not be read as a row at all.
    fn broken(&mut self, line: u64, reason: String, raw: String) -> Result<(), Failure> {
        self.inner.error(RowError {
            line,
            field: None,
            reason,
            raw: cap(raw),
        });
        self.bad_row();
        self.go_on()
    }

    /// Stops the parser when the sink has all it wants.
    fn go_on(&self) -> Result<(), Failure> {
        if self.inner.wants_more() {
            Ok(())
        } else {
            Err(Failure::Stopped)
        }
    }

    fn bad_row(&mut self) {
        self.stats.rows += 1;
        self.stats.bad_rows += 1;
    }
}

/// Caps a raw record at [`RAW_CAP`] bytes, on a character boundary.
fn cap(mut raw: String) -> String {
    if raw.len() > RAW_CAP {
        let mut cut = RAW_CAP;
        while !raw.is_char_boundary(cut) {
            cut -= 1;
        }
        raw.truncate(cut);
    }
    raw
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers for the tests of the format parsers: a sink that keeps everything, fields and
    //! templates in one line, and a parse of bytes with a given spec.
    use super::*;
    use crate::template::{BadRowLimit, Column, Field, FieldType, UnknownFields};

    /// A field with no default and no allowed values.
    pub fn field(name: &str, column: Column, kind: FieldType, required: bool) -> Field {
        Field {
            name: name.into(),
            column,
            kind,
            required,
            values: None,
            default: None,
            null_values: vec![String::new()],
            booleans: None,
        }
    }

    /// A template with a required integer `id` read from `column`, and the given fields after.
    pub fn id_template(column: &str, unknown_fields: UnknownFields, more: Vec<Field>) -> Template {
        let mut fields = vec![field("id", Column::Name(column.into()), FieldType::Integer, true)];
        fields.extend(more);
        Template {
            table: "t".into(),
            unknown_fields,
            max_bad_rows: BadRowLimit::Count(0),
            fields,
        }
    }

    /// Parses `bytes` as the object `key` (which is also its provenance, version `v`).
    pub fn parse_with(
        bytes: &[u8],
        key: &str,
        spec: &FormatSpec,
        template: &Template,
    ) -> (Result<ParseStats, ParseError>, Collect) {
        let mut sink = Collect::default();
        let provenance = Provenance { key, version: "v" };
        let r = parse(bytes, key, spec, template, provenance, &mut sink);
        (r, sink)
    }

    /// Runs a format's parser one thread and parallel (`run(parallel, sink)`), into a sink
    /// that keeps everything and into a sample that stops after `limit` rows, and checks that
    /// both ways give the same rows, errors and counts. Returns the counts.
    pub fn one_thread_and_parallel_agree(
        run: impl Fn(bool, &mut dyn RowSink) -> ParseStats,
        limit: u64,
    ) -> ParseStats {
        let (mut one, mut two) = (Collect::default(), Collect::default());
        let (a, b) = (run(false, &mut one), run(true, &mut two));
        assert_eq!(a, b);
        assert_eq!(one.rows, two.rows);
        assert_eq!(one.errors, two.errors);
        // A sink that stops early stops both at the same row.
        let (mut one, mut two) = (Sample::new(limit), Sample::new(limit));
        let (c, d) = (run(false, &mut one), run(true, &mut two));
        assert_eq!(c, d);
        assert_eq!(one.rows, two.rows);
        assert_eq!(one.errors, two.errors);
        a
    }

    #[derive(Default)]
    pub struct Collect {
        pub rows: Vec<Value>,
        pub errors: Vec<RowError>,
    }

    impl RowSink for Collect {
        fn row(&mut self, row: &Row<'_>) -> io::Result<()> {
            self.rows.push(Value::Object(row.to_map()?));
            Ok(())
        }
        fn error(&mut self, error: RowError) {
            self.errors.push(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{Collect, field, id_template, parse_with};
    use super::*;
    use crate::template::{Column, FieldType, UnknownFields};
    use serde_json::json;
    use std::io::Write;

    fn template() -> Template {
        id_template("id", UnknownFields::Ignore, Vec::new())
    }

    fn run(bytes: &[u8], key: &str) -> (Result<ParseStats, ParseError>, Collect) {
        let spec = FormatSpec {
            kind: FormatKind::Auto,
            ..FormatSpec::default()
        };
        parse_with(bytes, key, &spec, &template())
    }

    #[test]
    fn kinds_by_extension() {
        let cases = [
            ("a/b.csv", Some(FormatKind::Csv)),
            ("a/b.CSV.gz", Some(FormatKind::Csv)),
            ("b.tsv", Some(FormatKind::Tsv)),
            ("b.ndjson", Some(FormatKind::Jsonl)),
            ("b.jsonl.gz", Some(FormatKind::Jsonl)),
            ("b.json", Some(FormatKind::Json)),
            ("b.json.zst", Some(FormatKind::Json)),
            ("b.tsv.bz2", Some(FormatKind::Tsv)),
            ("b.gz", None),
            ("b.parquet", None),
            ("b", None),
            ("dir.csv/b", None),
        ];
        for (key, want) in cases {
            assert_eq!(resolve_kind(FormatKind::Auto, key), want, "{key}");
        }
        assert_eq!(resolve_kind(FormatKind::Jsonl, "b.csv"), Some(FormatKind::Jsonl));
    }

    #[test]
    fn gzip_by_magic_and_provenance() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"id\n1\n2\n").unwrap();
        let bytes = gz.finish().unwrap();
        // No .gz in the key: the magic bytes tell.
        let (r, sink) = run(&bytes, "x.csv");
        assert_eq!(r.unwrap(), ParseStats { rows: 2, bad_rows: 0 });
        assert_eq!(
            sink.rows[1],
            json!({"id": 2, "_source_key": "x.csv", "_source_version": "v", "_source_line": 3})
        );
    }

    #[test]
    fn corrupt_gzip_is_a_file_error() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&b"id\n1\n".repeat(1000)).unwrap();
        let bytes = gz.finish().unwrap();
        let (r, sink) = run(&bytes[..bytes.len() / 2], "x.csv.gz");
        let err = r.unwrap_err();
        assert!(matches!(err, ParseError::Corrupt { codec: "gzip", .. }), "{err}");
        assert!(!err.is_transient());
        let _ = sink;
    }

    #[test]
    fn failing_reader_is_transient() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::ConnectionReset, "reset by peer"))
            }
        }
        let mut sink = Collect::default();
        let provenance = Provenance {
            key: "x",
            version: "v",
        };
        let r = parse(
            Broken,
            "x.csv.gz",
            &FormatSpec::default(),
            &template(),
            provenance,
            &mut sink,
        );
        assert!(r.unwrap_err().is_transient());
    }

    fn compressed(codec: Codec, data: &[u8]) -> Vec<u8> {
        match codec {
            Codec::Gzip => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(data).unwrap();
                gz.finish().unwrap()
            }
            Codec::Zstd => zstd::encode_all(data, 3).unwrap(),
            Codec::Bzip2 => {
                let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
                bz.write_all(data).unwrap();
                bz.finish().unwrap()
            }
        }
    }

    #[test]
    fn codecs_by_extension_and_magic() {
        let gz = [0x1f, 0x8b, 8, 0];
        let zst = [0x28, 0xb5, 0x2f, 0xfd];
        let cases: &[(Compression, &str, &[u8], Option<Codec>)] = &[
            (Compression::Auto, "a.csv", b"id,x", None),
            (Compression::Auto, "a.csv.gz", b"", Some(Codec::Gzip)),
            (Compression::Auto, "a.CSV.ZST", b"id", Some(Codec::Zstd)),
            (Compression::Auto, "a.json.bz2", b"[", Some(Codec::Bzip2)),
            // The magic number wins over the extension, and finds codecs without one.
            (Compression::Auto, "a.csv.gz", &zst, Some(Codec::Zstd)),
            (Compression::Auto, "a.csv", &gz, Some(Codec::Gzip)),
            (Compression::Auto, "a", b"BZh9", Some(Codec::Bzip2)),
            // Forced choices are taken as they are.
            (Compression::None, "a.csv.gz", &gz, None),
            (Compression::Zstd, "a.csv", b"id", Some(Codec::Zstd)),
        ];
        for (compression, key, head, want) in cases {
            assert_eq!(
                choose_codec(*compression, key, head),
                *want,
                "{compression:?} {key}"
            );
        }
    }

    #[test]
    fn every_codec_reads_and_fails_cleanly_when_truncated() {
        let data = "id\n".to_string() + &"1\n2\n3\n".repeat(2000);
        for codec in [Codec::Gzip, Codec::Zstd, Codec::Bzip2] {
            // Two streams back to back, as `cat a.gz b.gz` makes: both are read.
            let mut bytes = compressed(codec, data.as_bytes());
            bytes.extend(compressed(codec, b"4\n"));
            let (r, _) = run(&bytes, "x.csv");
            assert_eq!(
                r.unwrap(),
                ParseStats {
                    rows: 6001,
                    bad_rows: 0
                },
                "{codec:?}"
            );
            let whole = compressed(codec, data.as_bytes());
            let (r, _) = run(&whole[..whole.len() - 10], "x.csv");
            match r {
                Err(ParseError::Corrupt { codec: name, .. }) => assert_eq!(name, codec.name()),
                other => panic!("{codec:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_compressed_object_is_read_ahead_in_chunks_and_can_stop_early() {
        // About 1 MB of text: several chunks through the read-ahead thread.
        let mut data = String::from("id\n");
        for i in 0..150_000 {
            data.push_str(&format!("{i}\n"));
        }
        let whole = compressed(Codec::Gzip, data.as_bytes());
        let (r, sink) = run(&whole, "x.csv.gz");
        assert_eq!(r.unwrap().rows, 150_000);
        assert_eq!(sink.rows[149_999]["id"], json!(149_999));
        assert_eq!(sink.rows[149_999]["_source_line"], json!(150_001));
        // Corruption far into the stream is still the codec's error.
        let mut broken = whole.clone();
        let middle = broken.len() / 2;
        broken[middle..middle + 64].fill(0xff);
        let (r, _) = run(&broken, "x.csv.gz");
        assert!(
            matches!(r, Err(ParseError::Corrupt { codec: "gzip", .. })),
            "{r:?}"
        );
        // A sink that wants five rows stops the parser, and the thread ahead of it.
        let mut sample = Sample::new(5);
        let provenance = Provenance {
            key: "k",
            version: "v",
        };
        let spec = FormatSpec::default();
        let stats = parse(
            &whole[..],
            "x.csv.gz",
            &spec,
            &template(),
            provenance,
            &mut sample,
        )
        .unwrap();
        assert_eq!(stats.rows, 5);
    }

    #[test]
    fn byte_order_mark_and_windows_1252() {
        for key in ["x.csv", "x.jsonl", "x.json"] {
            let body: &[u8] = if key.ends_with(".csv") {
                b"id\n5\n"
            } else {
                b"{\"id\": 5}\n"
            };
            let bytes = [&b"\xef\xbb\xbf"[..], body].concat();
            let (r, sink) = run(&bytes, key);
            assert_eq!(r.unwrap().rows, 1, "{key}");
            assert_eq!(sink.rows[0]["id"], json!(5), "{key}");
        }
        let name = field("name", Column::Name("name".into()), FieldType::String, true);
        let t = id_template("id", UnknownFields::Ignore, vec![name]);
        let spec = FormatSpec {
            encoding: Encoding::Other(encoding_rs::WINDOWS_1252),
            ..FormatSpec::default()
        };
        let bytes = b"id,name\n1,Cr\xe8me br\xfbl\xe9e \x80 5\n";
        let (r, sink) = parse_with(bytes, "k.csv", &spec, &t);
        r.unwrap();
        assert_eq!(sink.rows[0]["name"], json!("Crème brûlée € 5"));
    }

    #[test]
    fn quote_and_escape_characters_of_any_dialect() {
        let text = field("text", Column::Name("text".into()), FieldType::String, true);
        let t = id_template("id", UnknownFields::Ignore, vec![text]);
        let spec = |delimiter: u8, quote: Option<u8>, escape: Option<u8>| FormatSpec {
            delimiter,
            quote,
            escape,
            ..FormatSpec::default()
        };
        // (dialect, file, the texts read, in order)
        let cases: Vec<(FormatSpec, &[u8], Vec<&str>)> = vec![
            (
                spec(b'^', Some(b'|'), Some(b'!')),
                b"id^text\n1^|a ^ b|\n2^|two\nlines|\n3^|an !| inside|\n4^plain \"quotes\"\n",
                vec!["a ^ b", "two\nlines", "an | inside", "plain \"quotes\""],
            ),
            (
                spec(b';', Some(b'|'), None),
                b"id;text\n1;|x; y|\n2;|doubled || pipe|\n",
                vec!["x; y", "doubled | pipe"],
            ),
            (
                spec(b',', None, None),
                b"id,text\n1,\"not quoted\n2,x\"y\n",
                vec!["\"not quoted", "x\"y"],
            ),
            (
                spec(b',', Some(b'"'), Some(b'\\')),
                b"id,text\n1,\"say \\\"hi\\\"\"\n",
                vec!["say \"hi\""],
            ),
        ];
        for (spec, bytes, want) in cases {
            let (r, sink) = parse_with(bytes, "k.csv", &spec, &t);
            let stats = r.unwrap_or_else(|e| panic!("{e}"));
            let got: Vec<&str> = sink.rows.iter().map(|r| r["text"].as_str().unwrap()).collect();
            assert_eq!(got, want, "{spec:?}");
            assert_eq!(stats.bad_rows, 0, "{spec:?}: {:?}", sink.errors);
            if spec.delimiter == b'^' {
                // A record's line is where it starts, after a value spanning two lines too.
                let lines: Vec<u64> = sink
                    .rows
                    .iter()
                    .map(|r| r["_source_line"].as_u64().unwrap())
                    .collect();
                assert_eq!(lines, [2, 3, 5, 6]);
            }
        }
    }

    #[test]
    fn any_whatwg_encoding_and_a_utf16_mark_whatever_the_setting() {
        let name = field("name", Column::Name("name".into()), FieldType::String, true);
        let t = id_template("id", UnknownFields::Ignore, vec![name]);
        let with = |label: &str| FormatSpec {
            encoding: Encoding::for_label(label).unwrap(),
            ..FormatSpec::default()
        };
        let encode = |encoding: &'static encoding_rs::Encoding, text: &str| {
            let (bytes, _, bad) = encoding.encode(text);
            assert!(!bad, "{} cannot encode {text}", encoding.name());
            bytes.into_owned()
        };
        // (label, the file's bytes, the name it holds)
        let utf16le = |text: &str| {
            let mut bytes = vec![0xff, 0xfe];
            bytes.extend(text.encode_utf16().flat_map(|u| u.to_le_bytes()));
            bytes
        };
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "big5",
                encode(encoding_rs::BIG5, "id,name\n1,中文資料\n"),
                "中文資料",
            ),
            (
                "windows-1256",
                encode(encoding_rs::WINDOWS_1256, "id,name\n1,البيانات\n"),
                "البيانات",
            ),
            (
                "shift_jis",
                encode(encoding_rs::SHIFT_JIS, "id,name\n1,データ\n"),
                "データ",
            ),
            (
                "koi8-r",
                encode(encoding_rs::KOI8_R, "id,name\n1,данные\n"),
                "данные",
            ),
            // A UTF-16 byte order mark wins over the setting.
            ("utf-8", utf16le("id,name\n1,Grüße\n"), "Grüße"),
            ("windows-1252", utf16le("id,name\n1,Grüße\n"), "Grüße"),
        ];
        for (label, bytes, want) in cases {
            let (r, sink) = parse_with(&bytes, "k.csv", &with(label), &t);
            r.unwrap_or_else(|e| panic!("{label}: {e}"));
            assert_eq!(sink.rows[0]["name"], json!(want), "{label}");
        }
        assert_eq!(Encoding::for_label("Big5").map(|e| e.name()), Some("Big5"));
        assert_eq!(
            Encoding::for_label("latin1"),
            Some(Encoding::Other(encoding_rs::WINDOWS_1252))
        );
        assert_eq!(Encoding::for_label("UTF8"), Some(Encoding::Utf8));
        assert_eq!(Encoding::for_label("klingon"), None);

        // "auto": UTF-8 when the text is UTF-8 (a character cut at the sniff's edge too),
        // else windows-1252; a byte order mark first.
        let auto = FormatSpec {
            encoding: Encoding::Auto,
            ..FormatSpec::default()
        };
        let long_utf8 = format!("id,name\n1,{}é\n", "x".repeat(AUTO_SNIFF - 12));
        let cases: Vec<(Vec<u8>, String)> = vec![
            (b"id,name\n1,Gr\xc3\xbc\xc3\x9fe\n".to_vec(), "Grüße".into()),
            (b"id,name\n1,Gr\xfc\xdfe\n".to_vec(), "Grüße".into()),
            (utf16le("id,name\n1,Grüße\n"), "Grüße".into()),
            (
                b"\xef\xbb\xbfid,name\n1,Gr\xc3\xbc\xc3\x9fe\n".to_vec(),
                "Grüße".into(),
            ),
            (
                long_utf8.clone().into_bytes(),
                long_utf8[10..long_utf8.len() - 1].to_string(),
            ),
        ];
        for (bytes, want) in cases {
            let (r, sink) = parse_with(&bytes, "k.csv", &auto, &t);
            r.unwrap();
            assert_eq!(sink.rows[0]["name"], json!(want));
        }
        assert!(looks_utf8("abcé".as_bytes()));
        assert!(looks_utf8(&"abcé".as_bytes()[..4]), "cut at the edge");
        assert!(!looks_utf8(b"ab\xe9cd"));
    }

    #[test]
    fn text_that_does_not_decode_is_a_row_error_naming_the_value_and_the_byte() {
        let name = field("name", Column::Name("name".into()), FieldType::String, true);
        let t = id_template("id", UnknownFields::Keep, vec![name]);
        let spec = |label: &str, kind: FormatKind| FormatSpec {
            kind,
            encoding: Encoding::for_label(label).unwrap(),
            ..FormatSpec::default()
        };
        let bytes = |parts: &[&[u8]]| parts.concat();
        let big5 = |text: &str| encoding_rs::BIG5.encode(text).0.into_owned();
        let sjis = |text: &str| encoding_rs::SHIFT_JIS.encode(text).0.into_owned();
        let utf16 = |text: &str| {
            text.encode_utf16()
                .flat_map(|u| u.to_le_bytes())
                .collect::<Vec<u8>>()
        };
        let cases: Vec<(&str, FormatKind, Vec<u8>, &str)> = vec![
            (
                "big5",
                FormatKind::Csv,
                bytes(&[&big5("id,name\n1,中文\n2,中"), b"\x80", &big5("文\n3,資料\n")]),
                "column 2 is not valid Big5 text: byte 3 of the value cannot be decoded (is `encoding` right?)",
            ),
            (
                "shift_jis",
                FormatKind::Jsonl,
                bytes(&[
                    &sjis("{\"id\": 1, \"name\": \"データ\"}\n{\"id\": 2, \"name\": \"デ"),
                    b"\xfd",
                    &sjis("\"}\n{\"id\": 3, \"name\": \"資料\"}\n"),
                ]),
                "key \"name\" is not valid Shift_JIS text: byte 22 of the object cannot be decoded (is `encoding` right?)",
            ),
            (
                "utf-16le",
                FormatKind::Csv,
                bytes(&[
                    b"\xff\xfe",
                    &utf16("id,name\n1,ü\n2,ab"),
                    b"\x00\xd8",
                    &utf16("c\n3,ß\n"),
                ]),
                "column 2 is not valid UTF-16LE text: byte 5 of the value cannot be decoded (is `encoding` right?)",
            ),
            (
                "utf-8",
                FormatKind::Csv,
                b"id,name\n1,a\n2,\xc3\xa9\xff\n3,b\n".to_vec(),
                "column 2 is not valid UTF-8 text: byte 3 of the value cannot be decoded (is `encoding` right?)",
            ),
        ];
        for (label, kind, file, reason) in cases {
            let (r, sink) = parse_with(&file, "k", &spec(label, kind), &t);
            let stats = r.unwrap_or_else(|e| panic!("{label}: {e}"));
            assert_eq!(stats, ParseStats { rows: 3, bad_rows: 1 }, "{label}");
            let errors: Vec<(u64, &str)> = sink.errors.iter().map(|e| (e.line, e.reason.as_str())).collect();
            // The second row: line 3 under a CSV header, line 2 of JSON Lines.
            let line = if kind == FormatKind::Jsonl { 2 } else { 3 };
            assert_eq!(errors, [(line, reason)], "{label}");
            // Nothing was replaced with U+FFFD in the rows that were imported.
            let ids: Vec<&Value> = sink.rows.iter().map(|r| &r["id"]).collect();
            assert_eq!(ids, [&json!(1), &json!(3)], "{label}");
            assert!(
                !sink.rows.iter().any(|r| r.to_string().contains('\u{FFFD}')),
                "{label}"
            );
        }
    }

    #[test]
    fn a_sample_stops_after_its_rows_good_or_bad() {
        let mut text = String::from("id\n");
        for i in 0..1000 {
            text.push_str(if i % 2 == 0 { "x\n" } else { "7\n" });
        }
        let mut sample = Sample::new(5);
        let provenance = Provenance {
            key: "k",
            version: "v",
        };
        let stats = parse(
            text.as_bytes(),
            "k.csv",
            &FormatSpec::default(),
            &template(),
            provenance,
            &mut sample,
        )
        .unwrap();
        assert_eq!(stats, ParseStats { rows: 5, bad_rows: 3 });
        assert_eq!(sample.rows.len(), 2);
        let lines: Vec<u64> = sample.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 4, 6]);
    }

    #[test]
    fn a_row_is_valid_json_with_escaped_provenance_and_kept_fields() {
        let t = id_template("id", UnknownFields::Keep, Vec::new());
        let mut sink = Collect::default();
        let provenance = Provenance {
            key: "a/\"b\"\\c.csv",
            version: "e\n1",
        };
        let spec = FormatSpec::default();
        let text = "id,na\"me,colour\n7,\"tea \"\"pot\"\"\",\n";
        parse(text.as_bytes(), "k.csv", &spec, &t, provenance, &mut sink).unwrap();
        assert_eq!(
            sink.rows,
            [
                json!({"id": 7, "na\"me": "tea \"pot\"", "colour": "", "_source_key": "a/\"b\"\\c.csv",
                    "_source_version": "e\n1", "_source_line": 2})
            ]
        );
    }

    #[test]
    fn unknown_extension() {
        let (r, _) = run(b"id\n1\n", "x.parquet");
        assert!(matches!(r, Err(ParseError::UnknownFormat)));
    }
}

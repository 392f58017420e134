//! The parse driver: one object from a reader to a [`RowSink`], through codec, encoding,
//! read-ahead and the format's parser, with every row checked against the template and
//! given its provenance.

use super::*;

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
    let failed = Arc::new(AtomicBool::new(false));
    let watched = Watched {
        inner: reader,
        failed: failed.clone(),
    };
    // A key whose extension names no format is told by its first bytes, for `auto`.
    let (kind, watched): (FormatKind, Box<dyn Read + Send + '_>) = match resolve_kind(spec.kind, key) {
        Some(kind) => (kind, Box::new(watched)),
        None => {
            let (magic, rest) = peek(watched, 4).map_err(ParseError::Read)?;
            let kind = kind_by_magic(&magic).ok_or(ParseError::UnknownFormat)?;
            (kind, Box::new(io::Cursor::new(magic).chain(rest)))
        }
    };
    if matches!(kind, FormatKind::Parquet | FormatKind::Avro) {
        // Compressed inside, a column chunk or a block at a time: no codec, no encoding, no
        // read-ahead.
        let mut sink = Provenanced::new(sink, provenance, template);
        let result = match kind {
            FormatKind::Parquet => super::parquet::parse(
                watched,
                spec.scratch.as_deref(),
                spec.max_row_group_bytes,
                template,
                &mut sink,
            ),
            _ => {
                let large = size.is_none_or(|n| n >= CHUNK as u64);
                super::avro::parse(watched, large, template, &mut sink)
            }
        };
        return match result {
            Ok(()) | Err(Failure::Stopped) => Ok(sink.stats),
            Err(Failure::Io(e)) if e.get_ref().is_some_and(|inner| inner.is::<SinkFailed>()) => {
                Err(ParseError::Sink(e))
            }
            // The source failed (a body cut short, a digest that differs): whatever the reader
            // made of it, the object is read again, not rejected.
            Err(Failure::Io(e)) if failed.load(Ordering::Relaxed) => Err(ParseError::Read(e)),
            Err(Failure::File(e)) if failed.load(Ordering::Relaxed) => Err(ParseError::Read(
                io::Error::other(format!("the object's body failed while it was read: {e}")),
            )),
            Err(Failure::Io(e)) => match e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<super::columnar::Broken>())
            {
                Some(broken) if kind == FormatKind::Parquet => Err(ParseError::Parquet {
                    reason: broken.to_string(),
                }),
                Some(broken) => Err(ParseError::Avro {
                    reason: broken.to_string(),
                }),
                None => Err(ParseError::Read(e)),
            },
            Err(Failure::File(e)) => Err(e),
        };
    }
    let (input, codec) = decompress(spec.compression, key, watched).map_err(ParseError::Read)?;
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
        double_quote: spec.double_quote,
        comment: spec.comment,
    });
    // An escape character works outside quotes too, as in Python's `csv`: the text is
    // rewritten for the `csv` crate, which honours it only inside quotes, before the cap.
    let input: Box<dyn BufRead + Send> = match dialect {
        Some(dialect @ Dialect { escape: Some(e), .. }) => Box::new(BufReader::with_capacity(
            buf,
            super::csv::escapes::OutsideEscapes::new(input, dialect, e),
        )),
        _ => input,
    };
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
            // Read above, before any codec.
            FormatKind::Parquet | FormatKind::Avro | FormatKind::Auto => {
                Err(Failure::File(ParseError::UnknownFormat))
            }
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
pub(super) enum Failure {
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
pub(super) struct SinkFailed(pub(super) io::Error);

/// The sink as the format parsers see it: adds provenance, counts rows and turns field errors
/// into row errors.
pub(super) struct Provenanced<'s, 'p> {
    pub(super) inner: &'s mut dyn RowSink,
    pub(super) provenance: Provenance<'p>,
    pub(super) stats: ParseStats,
    /// `"_source_key":…,"_source_version":…,"_source_line":`, rendered once per object.
    pub(super) provenance_json: Vec<u8>,
    /// The row being checked, reused from row to row.
    pub(super) buf: RowBuffer,
    /// The encoding the text was read in, named by the errors of text that did not decode.
    pub(super) encoding: &'static encoding_rs::Encoding,
    /// With a sink that takes CSV records: the encoder, and the record being written.
    /// Boxed: it is taken out and put back for every row, which moves only the pointer.
    pub(super) csv: Option<Box<(CsvEncoder, Vec<u8>)>>,
    /// Whether rows are handed on with their JSON text (see [`RowSink::wants_json`]).
    pub(super) json: bool,
}

impl<'s, 'p> Provenanced<'s, 'p> {
    pub(super) fn new(inner: &'s mut dyn RowSink, provenance: Provenance<'p>, template: &Template) -> Self {
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
    pub(super) fn writing_csv(mut self, out: Option<CsvOut>, json: bool) -> Self {
        self.csv = out.map(|out| Box::new((CsvEncoder::new(out), Vec::new())));
        self.json = json || self.csv.is_none();
        self
    }

    /// Whether rows are handed on with their JSON text.
    pub(super) fn wants_json(&self) -> bool {
        self.json
    }

    /// The CSV dialect rows are written in, if any.
    pub(super) fn csv_out(&self) -> Option<CsvOut> {
        self.inner.csv_out()
    }

    /// Delivers the row checked into `self.buf` (with `extra` unknown fields kept) or its
    /// errors.
    pub(super) fn emit(
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
                if let Some(boxed) = &mut record {
                    let (encoder, csv) = &mut **boxed;
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
                let handed = self.row_json(line, json, record.as_ref().map(|record| record.1.as_slice()));
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
                        reason: RowFault::Value(e.reason),
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
    pub(super) fn row_json(&mut self, line: u64, json: &[u8], csv: Option<&[u8]>) -> Result<(), Failure> {
        if let Some(refusal) = self.inner.refusal(json) {
            self.inner.error(RowError {
                line,
                field: Some(refusal.field),
                reason: RowFault::Refused(refusal.reason),
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

    /// Whether a run of good rows can be handed on at once ([`Provenanced::rows_block`]): the
    /// sink takes blocks, and no CSV record goes with each row.
    pub(super) fn takes_blocks(&self) -> bool {
        self.csv.is_none() && self.json && self.inner.takes_blocks()
    }

    /// Hands on `count` good rows at once: their JSON texts, each followed by `\n`.
    pub(super) fn rows_block(&mut self, block: &[u8], count: u64) -> Result<(), Failure> {
        self.stats.rows += count;
        self.inner
            .rows(block)
            .map_err(|e| Failure::Io(io::Error::other(SinkFailed(e))))?;
        self.go_on()
    }

    /// Hands on a row error found elsewhere; `first` when it is the first error of its row.
    /// The caller asks [`Provenanced::go_on`] after the row's last error.
    pub(super) fn error(&mut self, error: RowError, first: bool) {
        self.inner.error(error);
        if first {
            self.bad_row();
        }
    }

    /// Reports a row that could not be read as a row at all.
    pub(super) fn broken(&mut self, line: u64, reason: String, raw: String) -> Result<(), Failure> {
        self.inner.error(RowError {
            line,
            field: None,
            reason: RowFault::Unreadable(reason),
            raw: cap(raw),
        });
        self.bad_row();
        self.go_on()
    }

    /// Stops the parser when the sink has all it wants.
    pub(super) fn go_on(&self) -> Result<(), Failure> {
        if self.inner.wants_more() {
            Ok(())
        } else {
            Err(Failure::Stopped)
        }
    }

    pub(super) fn bad_row(&mut self) {
        self.stats.rows += 1;
        self.stats.bad_rows += 1;
    }
}

/// Caps a raw record at [`RAW_CAP`] bytes, on a character boundary.
pub(super) fn cap(mut raw: String) -> String {
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
            ("b.parquet", Some(FormatKind::Parquet)),
            ("b.avro", Some(FormatKind::Avro)),
            ("b.orc", None),
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
            let errors: Vec<(u64, &str)> = sink.errors.iter().map(|e| (e.line, e.reason.text())).collect();
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
        let (r, _) = run(b"id\n1\n", "x.orc");
        assert!(matches!(r, Err(ParseError::UnknownFormat)));
        // Too short to have magic bytes.
        let (r, _) = run(b"PA", "x");
        assert!(matches!(r, Err(ParseError::UnknownFormat)));
    }

    /// A key without a known extension is read by its first bytes under `auto`: Parquet's
    /// `PAR1`, Avro's `Obj` 1.
    #[test]
    fn typed_files_are_told_by_their_magic_bytes() {
        assert_eq!(kind_by_magic(b"PAR1"), Some(FormatKind::Parquet));
        assert_eq!(kind_by_magic(b"Obj\x01"), Some(FormatKind::Avro));
        assert_eq!(kind_by_magic(b"Obj\x02"), None);
        let avro = super::super::avro::tests::avro_file(2, apache_avro::Codec::Snappy, 1);
        let (r, sink) = run(&avro, "exports/2024-01-01/part-0001");
        assert_eq!(r.unwrap().rows, 2);
        assert_eq!(sink.rows[0]["id"], json!(1));
    }
}

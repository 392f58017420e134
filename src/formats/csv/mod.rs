//! CSV and TSV: the header is matched against the template once, then every record is checked
//! on its own. Records are read as bytes into reused buffers; a record that is not valid
//! UTF-8 or has the wrong number of fields is a row error. Once the header has fixed the
//! layout, a large object's records are checked in batches by worker threads.

pub mod config;
pub mod escapes;

use super::record_cap::{MAX_FIELDS, MAX_RECORD, Marks};
use super::{Dialect, Failure, ParseError, Provenanced};
use crate::template::{Column, RawValue, Template, UnknownFields};
use serde_json::Value;
use std::io::BufRead;
use std::sync::Arc;

/// Parses CSV text that came through a [`super::record_cap::Capped`] reader, whose `marks`
/// say which records it cut and which follow blank lines.
pub(super) fn parse(
    input: impl BufRead + Send,
    dialect: Dialect,
    spec: &super::FormatSpec,
    template: &Template,
    sink: &mut Provenanced<'_, '_>,
    parallel: bool,
    marks: &Marks,
) -> Result<(), Failure> {
    let mut builder = ::csv::ReaderBuilder::new();
    builder
        // Fewer, larger reads through the record cap in front of it.
        .buffer_capacity(64 * 1024)
        .delimiter(dialect.delimiter)
        .has_headers(false)
        .flexible(true)
        .terminator(::csv::Terminator::Any(b'\n'))
        // Inside a quoted value, a quote is escaped by the escape character, by doubling,
        // or both, as the dialect says.
        .escape(dialect.escape)
        .double_quote(dialect.double_quote)
        .comment(dialect.comment);
    match dialect.quote {
        Some(q) => builder.quote(q),
        None => builder.quoting(false),
    };
    let mut reader = builder.from_reader(input);
    // Corrects the line of a record after blank lines, and says whether it was cut.
    let was_cut = |record: &mut ::csv::ByteRecord| marks.fix(record);
    let mut record = ::csv::ByteRecord::new();
    // Unless it is given headers, the `csv` reader keeps two copies of the first record it
    // reads (a header of 16 MiB cost 64 MB more). It is given empty ones, which it hands back
    // once, here, as a record of no fields, before reading anything.
    reader.set_byte_headers(::csv::ByteRecord::new());
    if reader
        .read_byte_record(&mut record)
        .map_err(|e| Failure::Io(std::io::Error::other(e)))?
    {
        return Err(Failure::Io(std::io::Error::other(
            "the csv reader handed back a header it was not given",
        )));
    }
    let io = |e: ::csv::Error| match e.into_kind() {
        ::csv::ErrorKind::Io(e) => Failure::Io(e),
        other => Failure::Io(std::io::Error::other(format!("{other:?}"))),
    };

    // Records before the header (a banner) are read and dropped; a file that ends among them
    // has no rows. Their lines still count, so line numbers stay those of the file.
    let skip = |n: usize, reader: &mut ::csv::Reader<_>, record: &mut ::csv::ByteRecord| {
        for _ in 0..n {
            if !reader.read_byte_record(record).map_err(io)? {
                return Ok(false);
            }
            was_cut(record);
        }
        Ok::<bool, Failure>(true)
    };
    if !skip(spec.skip_rows_before_header, &mut reader, &mut record)? {
        return Ok(());
    }
    let has_header = spec.has_header;
    // Where each field's value is, and which columns no field claims.
    let header: Option<Vec<String>> = if has_header {
        if !reader.read_byte_record(&mut record).map_err(io)? {
            return Ok(());
        }
        if was_cut(&mut record) {
            return Err(Failure::File(ParseError::HeaderTooLarge {
                bytes: MAX_RECORD,
                fields: MAX_FIELDS,
            }));
        }
        let last = record.len().saturating_sub(1);
        let names = record.iter().enumerate().map(|(i, c)| {
            let c = if i == last {
                c.strip_suffix(b"\r").unwrap_or(c)
            } else {
                c
            };
            String::from_utf8_lossy(c).into_owned()
        });
        Some(names.collect())
    } else {
        None
    };
    // Records right after the header (units, a second header row) are dropped too.
    if !skip(spec.skip_rows_after_header, &mut reader, &mut record)? {
        return Ok(());
    }
    let mut positions = Vec::with_capacity(template.fields.len());
    let mut missing = Vec::new();
    for field in &template.fields {
        let at = match (&field.column, &header) {
            (Column::Index(i), _) => Some(*i),
            (Column::Name(n), Some(h)) => h.iter().position(|c| c == n),
            (Column::Name(_), None) => None,
        };
        if at.is_none()
            && field.required
            && let Column::Name(n) = &field.column
        {
            missing.push(n.clone());
        }
        positions.push(at);
    }
    if let Some(found) = &header
        && !missing.is_empty()
    {
        return Err(Failure::File(ParseError::MissingColumns {
            missing,
            found: found.clone(),
        }));
    }
    let unclaimed = unclaimed_columns(&positions, header.as_ref().map_or(0, Vec::len));
    if let (Some(h), UnknownFields::Reject) = (&header, template.unknown_fields)
        && !unclaimed.is_empty()
    {
        return Err(Failure::File(ParseError::UnknownColumns {
            unknown: unclaimed.iter().map(|i| h[*i].clone()).collect(),
        }));
    }
    let delimiter = dialect.delimiter;
    let mut layout = Layout {
        delimiter,
        width: header.as_ref().map(Vec::len),
        extra_columns: unclaimed,
        positions,
        header: header.map(Arc::new),
        null_values: Arc::new(spec.kept_null_values.clone()),
    };

    // With a header the layout is fixed, so records can be checked on several threads; without
    // one, the first record fixes the width, and one thread reads on.
    if parallel && layout.width.is_some() {
        let read = |batch: &mut Batch| -> Result<bool, Failure> {
            batch.len = 0;
            batch.cut.clear();
            let mut bytes = 0;
            // Capped by count too: blank or one-byte records would otherwise make batches of
            // millions of records.
            while bytes < BATCH_BYTES && batch.len < BATCH_RECORDS {
                if batch.len == batch.records.len() {
                    batch.records.push(::csv::ByteRecord::new());
                }
                let record = &mut batch.records[batch.len];
                // A record that held a long row gives its memory back rather than keep it
                // for the life of the parse.
                if record.as_slice().len() > BATCH_BYTES {
                    *record = ::csv::ByteRecord::new();
                }
                if !reader.read_byte_record(record).map_err(io)? {
                    break;
                }
                if was_cut(record) {
                    batch.cut.push(batch.len);
                }
                bytes += record.as_slice().len() + record.len();
                batch.len += 1;
            }
            Ok(batch.len > 0)
        };
        // Each worker has its own copy of the layout (fixed here, since the width is known)
        // and its own cell spans.
        let layout = &layout;
        let new_state = || (layout.clone(), Vec::new());
        let check = |(layout, spans): &mut (Layout, Vec<std::ops::Range<usize>>),
                     batch: &Batch,
                     view: &mut Provenanced<'_, '_>| {
            for (i, record) in batch.records.iter().take(batch.len).enumerate() {
                if batch.cut.contains(&i) {
                    too_large(record, layout.delimiter, view)?;
                } else {
                    check_record(record, layout, template, spans, view)?;
                }
            }
            Ok(())
        };
        return super::parallel::run(sink, template, read, new_state, check);
    }
    // Where the cells of the record being read are in its text; refilled for every record so
    // that one allocation serves them all.
    let mut spans: Vec<std::ops::Range<usize>> = Vec::new();
    while reader.read_byte_record(&mut record).map_err(io)? {
        if was_cut(&mut record) {
            too_large(&record, delimiter, sink)?;
        } else {
            check_record(&record, &mut layout, template, &mut spans, sink)?;
        }
    }
    Ok(())
}

/// Reports a record cut at the limits as a row error.
fn too_large(
    record: &::csv::ByteRecord,
    delimiter: u8,
    sink: &mut Provenanced<'_, '_>,
) -> Result<(), Failure> {
    let line = record.position().map_or(0, |p| p.line());
    sink.broken(
        line,
        format!(
            "the record is longer than {MAX_RECORD} bytes or has more than {MAX_FIELDS} fields; no record may be that large"
        ),
        raw_record(record, delimiter),
    )
}

/// The record as read, for a row error: its cells joined by the delimiter, at most
/// [`super::RAW_CAP`] bytes of them.
fn raw_record(record: &::csv::ByteRecord, delimiter: u8) -> String {
    let mut raw = Vec::new();
    for (i, cell) in record.iter().enumerate() {
        if raw.len() > super::RAW_CAP {
            break;
        }
        if i > 0 {
            raw.push(delimiter);
        }
        raw.extend_from_slice(&cell[..cell.len().min(super::RAW_CAP + 4)]);
    }
    let mut raw = String::from_utf8_lossy(&raw).into_owned();
    while raw.ends_with('\r') {
        raw.pop();
    }
    raw
}

/// About how many bytes of records make one batch for a worker.
// Small under test, so that the tests' files make many batches.
const BATCH_BYTES: usize = if cfg!(test) { 16 * 1024 } else { 256 * 1024 };

/// At most how many records make one batch.
const BATCH_RECORDS: usize = 4096;

/// Records read by this thread, to be checked by a worker; the first `len` are this batch's.
#[derive(Default)]
struct Batch {
    records: Vec<::csv::ByteRecord>,
    len: usize,
    /// Which of them were cut at the limits.
    cut: Vec<usize>,
}

/// Where the template's fields are in a record, known from the header (or, without one, from
/// the first record).
#[derive(Clone)]
struct Layout {
    delimiter: u8,
    /// The number of columns every record must have; without a header, set by the first.
    width: Option<usize>,
    /// The columns no field claims.
    extra_columns: Vec<usize>,
    /// The column each field reads, in field order.
    positions: Vec<Option<usize>>,
    /// Shared by the workers' copies of the layout: a header can be large.
    header: Option<Arc<Vec<String>>>,
    /// What means no value in the columns kept beside the fields (`kept_null_values`; the
    /// fields hold their own).
    null_values: Arc<Vec<String>>,
}

impl Layout {
    fn column_name(&self, i: usize) -> String {
        match self.header.as_ref().and_then(|h| h.get(i)) {
            Some(name) => name.clone(),
            None => format!("column_{}", i + 1),
        }
    }
}

/// The columns of a record `width` wide that no field reads.
fn unclaimed_columns(positions: &[Option<usize>], width: usize) -> Vec<usize> {
    (0..width).filter(|i| !positions.contains(&Some(*i))).collect()
}

/// Checks one record as a row into `sink`. `spans` is scratch space, reused from record to
/// record.
fn check_record(
    record: &::csv::ByteRecord,
    layout: &mut Layout,
    template: &Template,
    spans: &mut Vec<std::ops::Range<usize>>,
    sink: &mut Provenanced<'_, '_>,
) -> Result<(), Failure> {
    let line = record.position().map_or(0, |p| p.line());
    let delimiter = layout.delimiter;
    let raw = || raw_record(record, delimiter);
    // The record is checked as UTF-8 once, whole; a cell is then a slice of it, which
    // `str::get` refuses if it would split a character (a cell that starts or ends inside
    // one is invalid on its own even when the record is valid).
    let undecodable = |i: usize, cell: &[u8], encoding| {
        super::undecodable(&format!("column {}", i + 1), "value", cell, encoding)
    };
    let Ok(text) = std::str::from_utf8(record.as_slice()) else {
        let (bad, cell) = record
            .iter()
            .enumerate()
            .find(|(_, c)| std::str::from_utf8(c).is_err())
            .unwrap_or((0, record.as_slice()));
        let reason = undecodable(bad, cell, sink.encoding);
        return sink.broken(line, reason, raw());
    };
    spans.clear();
    for i in 0..record.len() {
        let Some(mut range) = record.range(i) else { break };
        // Records end at `\n` only, so that line numbers stay exact for CRLF files; the `\r`
        // of a CRLF ending is taken off the last cell here.
        if i + 1 == record.len() && text.as_bytes()[..range.end].ends_with(b"\r") {
            range.end -= 1;
        }
        if text.get(range.clone()).is_none() {
            let cell = record.as_slice().get(range).unwrap_or_default();
            let reason = undecodable(i, cell, sink.encoding);
            return sink.broken(line, reason, raw());
        }
        spans.push(range);
    }
    // Every span was checked above, so `get` finds each one.
    let cell = |i: usize| spans.get(i).and_then(|r| text.get(r.clone()));
    let found = spans.len();
    if found == 1 && spans.first().is_some_and(|r| r.is_empty()) {
        return Ok(());
    }
    let width = match layout.width {
        Some(width) => width,
        None => {
            layout.extra_columns = unclaimed_columns(&layout.positions, found);
            *layout.width.insert(found)
        }
    };
    if found != width {
        return sink.broken(line, format!("has {found} fields; expected {width}"), raw());
    }
    if layout.header.is_none()
        && template.unknown_fields == UnknownFields::Reject
        && !layout.extra_columns.is_empty()
    {
        return sink.broken(
            line,
            format!(
                "has {width} fields but the template claims only {}",
                width - layout.extra_columns.len()
            ),
            raw(),
        );
    }
    let positions = &layout.positions;
    let checked = template.check_row(
        |i, _| match positions.get(i).copied().flatten().and_then(cell) {
            Some(text) => RawValue::Text(text),
            None => RawValue::Missing,
        },
        &mut sink.buf,
    );
    let extra: Vec<(String, Value)> = if template.unknown_fields == UnknownFields::Keep {
        layout
            .extra_columns
            .iter()
            .map(|i| {
                // A kept column's cell means no value when `null_values` says so.
                let value = match cell(*i).unwrap_or_default() {
                    text if layout.null_values.iter().any(|n| n == text) => Value::Null,
                    text => Value::String(text.to_string()),
                };
                (layout.column_name(*i), value)
            })
            .collect()
    } else {
        Vec::new()
    };
    sink.emit(line, checked, &extra, raw)
}

#[cfg(test)]
mod tests {
    use crate::formats::testing::{Collect, field, id_template, parse_with};
    use crate::formats::{FormatKind, FormatSpec, ParseError, ParseStats};
    use crate::template::*;
    use serde_json::json;

    fn template(unknown: UnknownFields) -> Template {
        let name = field("name", Column::Name("name".into()), FieldType::String, false);
        id_template("Product ID", unknown, vec![name])
    }

    fn run(text: &str, t: &Template, has_header: bool) -> (Result<ParseStats, ParseError>, Collect) {
        let spec = FormatSpec {
            kind: FormatKind::Csv,
            has_header,
            ..FormatSpec::default()
        };
        parse_with(text.as_bytes(), "k.csv", &spec, t)
    }

    fn strip(rows: &[serde_json::Value]) -> Vec<serde_json::Value> {
        rows.iter()
            .map(|r| {
                let mut r = r.clone();
                let o = r.as_object_mut().unwrap();
                o.remove("_source_key");
                o.remove("_source_version");
                r
            })
            .collect()
    }

    #[test]
    fn header_quotes_crlf_bom_and_bad_rows() {
        let text = "\u{feff}Product ID,name,color\r\n1,\"a, \"\"b\"\"\",red\r\n2,\"multi\nline\",blue\r\nx,c,green\r\n4,d\r\n";
        let (r, sink) = run(text, &template(UnknownFields::Ignore), true);
        assert_eq!(r.unwrap(), ParseStats { rows: 4, bad_rows: 2 });
        assert_eq!(
            strip(&sink.rows),
            vec![
                json!({"id": 1, "name": "a, \"b\"", "_source_line": 2}),
                json!({"id": 2, "name": "multi\nline", "_source_line": 3}),
            ]
        );
        assert_eq!(sink.errors.len(), 2);
        assert_eq!(sink.errors[0].line, 5);
        assert_eq!(sink.errors[0].field.as_deref(), Some("id"));
        assert_eq!(sink.errors[0].reason.text(), "\"x\" is not an integer");
        assert_eq!(sink.errors[0].raw, "x,c,green");
        assert_eq!(sink.errors[1].line, 6);
        assert_eq!(sink.errors[1].field, None);
        assert_eq!(sink.errors[1].reason.text(), "has 2 fields; expected 3");
    }

    /// Parses CSV with a header through the record cap, as `formats::parse` does.
    fn parse_capped(
        input: impl std::io::BufRead + Send,
        t: &Template,
        sink: &mut crate::formats::Provenanced<'_, '_>,
        parallel: bool,
    ) -> Result<(), crate::formats::Failure> {
        use crate::formats::Dialect;
        use crate::formats::record_cap::{Capped, Marks};
        let marks = std::sync::Arc::new(Marks::default());
        let input = std::io::BufReader::new(Capped::new(input, Dialect::CSV, marks.clone()));
        super::parse(
            input,
            Dialect::CSV,
            &crate::formats::FormatSpec::default(),
            t,
            sink,
            parallel,
            &marks,
        )
    }

    /// Parses `text` (CSV with a header) on one thread and in parallel and checks that both
    /// ways agree (see `one_thread_and_parallel_agree`); returns the counts.
    fn both_ways(text: &[u8], t: &Template, limit: u64) -> ParseStats {
        use crate::formats::testing::one_thread_and_parallel_agree;
        use crate::formats::{Failure, Provenance, Provenanced, RowSink};
        let run = |parallel: bool, sink: &mut dyn RowSink| {
            let provenance = Provenance {
                key: "k",
                version: "v",
            };
            let mut p = Provenanced::new(sink, provenance, t);
            let result = parse_capped(text, t, &mut p, parallel);
            assert!(matches!(result, Ok(()) | Err(Failure::Stopped)));
            p.stats
        };
        one_thread_and_parallel_agree(run, limit)
    }

    #[test]
    fn the_parallel_parse_gives_what_the_one_thread_loop_gives() {
        // Several batches' worth of records, with quoted newlines, CRLF, blank lines, bad
        // UTF-8, short records and rows failing one or two fields among them.
        let mut text = b"Product ID,name,color\r\n".to_vec();
        for i in 0..40_000 {
            let row = match i % 13 {
                2 => "\n".to_string(),
                4 => format!("{i},\"two\nlines\",red\r\n"),
                6 => format!("{i},short\n"),
                8 => ",,\n".to_string(),
                10 => format!("x{i},a,b\n"),
                _ => format!("{i},n{i},blue\n"),
            };
            text.extend_from_slice(row.as_bytes());
            if i % 13 == 12 {
                text.extend_from_slice(b"1,\xff\xfe,red\n");
            }
        }
        let mut t = template(UnknownFields::Keep);
        t.fields[1].required = true;
        let stats = both_ways(&text, &t, 30);
        assert!(stats.bad_rows > 10_000, "{stats:?}");
    }

    #[test]
    fn a_read_failure_comes_after_the_rows_before_it_both_ways() {
        use crate::formats::{Failure, Provenance, Provenanced};
        use std::io::Read;
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("connection reset"))
            }
        }
        let mut text = String::from("Product ID,name\n");
        for i in 0..20_000 {
            text.push_str(&format!("{i},n{i}\n"));
        }
        let t = template(UnknownFields::Ignore);
        for parallel in [false, true] {
            let input = std::io::BufReader::new(text.as_bytes().chain(Broken));
            let mut sink = Collect::default();
            let provenance = Provenance {
                key: "k",
                version: "v",
            };
            let mut p = Provenanced::new(&mut sink, provenance, &t);
            let result = parse_capped(input, &t, &mut p, parallel);
            assert!(matches!(result, Err(Failure::Io(_))), "{parallel}");
            assert_eq!(sink.rows.len(), 20_000, "{parallel}");
        }
    }

    #[test]
    fn missing_required_column_rejects_the_file() {
        let (r, sink) = run("id,name\n1,a\n", &template(UnknownFields::Ignore), true);
        let err = r.unwrap_err();
        assert_eq!(
            err.to_string(),
            "the header lacks the required column \"Product ID\"; the header found is \"id\", \"name\""
        );
        assert!(sink.rows.is_empty());
    }

    #[test]
    fn unknown_columns_reject_or_keep() {
        let text = "Product ID,name,color\n1,a,red\n";
        let (r, _) = run(text, &template(UnknownFields::Reject), true);
        assert!(matches!(r, Err(ParseError::UnknownColumns { ref unknown }) if unknown == &["color"]));
        let (r, sink) = run(text, &template(UnknownFields::Keep), true);
        assert!(r.is_ok());
        assert_eq!(
            strip(&sink.rows),
            vec![json!({"id": 1, "name": "a", "color": "red", "_source_line": 2})]
        );
    }

    #[test]
    fn without_header_columns_are_indexes() {
        let mut t = template(UnknownFields::Keep);
        t.fields[0].column = Column::Index(1);
        t.fields[1].column = Column::Index(0);
        let (r, sink) = run("a,1,z\nb,2,y\n", &t, false);
        assert_eq!(r.unwrap().rows, 2);
        assert_eq!(
            strip(&sink.rows)[1],
            json!({"id": 2, "name": "b", "column_3": "y", "_source_line": 2})
        );
    }

    #[test]
    fn invalid_utf8_is_a_row_error() {
        let bytes = b"Product ID,name\n1,ok\n2,\xff\xfe\n";
        let (r, sink) = parse_with(
            bytes,
            "k.csv",
            &FormatSpec::default(),
            &template(UnknownFields::Ignore),
        );
        assert_eq!(r.unwrap(), ParseStats { rows: 2, bad_rows: 1 });
        assert_eq!(
            sink.errors[0].reason.text(),
            "column 2 is not valid UTF-8 text: byte 1 of the value cannot be decoded (is `encoding` right?)"
        );
    }

    #[test]
    fn records_over_the_limits_are_row_errors_with_exact_lines_both_ways() {
        use crate::formats::record_cap::{MAX_FIELDS, MAX_RECORD};
        let mut text = b"Product ID,name\n1,a\n".to_vec();
        // Line 3: one line longer than the cap.
        text.extend_from_slice(b"2,");
        text.extend(std::iter::repeat_n(b'x', MAX_RECORD + 100));
        text.extend_from_slice(b"\n3,b\n");
        // Line 5: a quoted field over the cap holding line breaks (and a quote that would
        // end it, doubled), so the record spans 1 + n lines.
        text.extend_from_slice(b"4,\"");
        let n = MAX_RECORD / 1000 + 1;
        for _ in 0..n {
            text.extend(std::iter::repeat_n(b'y', 997));
            text.extend_from_slice(b"\"\"\n");
        }
        text.extend_from_slice(b"end\"\n5,c\n");
        let after_quoted = 6 + n as u64;
        // Then a line of more fields than allowed, and a last good row.
        text.extend(std::iter::repeat_n(b',', MAX_FIELDS + 1));
        text.extend_from_slice(b"\n6,d\n");
        let t = template(UnknownFields::Ignore);
        let stats = both_ways(&text, &t, 4);
        assert_eq!(stats, ParseStats { rows: 7, bad_rows: 3 });
        let (_, sink) = run_csv(&text, &t);
        let lines: Vec<u64> = sink
            .rows
            .iter()
            .map(|r| r["_source_line"].as_u64().unwrap())
            .collect();
        assert_eq!(lines, [2, 4, after_quoted, after_quoted + 2]);
        let bad: Vec<u64> = sink.errors.iter().map(|e| e.line).collect();
        assert_eq!(bad, [3, 5, after_quoted + 1]);
        for e in &sink.errors {
            assert!(
                e.reason
                    .text()
                    .starts_with("the record is longer than 16777200 bytes or has more than 100000 fields"),
                "{}",
                e.reason
            );
            assert!(e.raw.len() <= 2 * crate::formats::RAW_CAP, "{}", e.raw.len());
        }
    }

    fn run_csv(text: &[u8], t: &Template) -> (Result<ParseStats, ParseError>, Collect) {
        parse_with(text, "k.csv", &FormatSpec::default(), t)
    }

    #[test]
    fn a_header_over_the_limits_rejects_the_file() {
        let mut text = b"Product ID,".to_vec();
        text.extend(std::iter::repeat_n(b'h', crate::formats::record_cap::MAX_RECORD));
        text.extend_from_slice(b"\n1,a\n");
        let (r, sink) = run_csv(&text, &template(UnknownFields::Ignore));
        assert!(matches!(r, Err(ParseError::HeaderTooLarge { .. })), "{r:?}");
        assert!(sink.rows.is_empty());
        // A header of many columns that is within the limits is named in an excerpt.
        let mut text = String::from("id");
        for i in 0..50_000 {
            text.push_str(&format!(",c{i}"));
        }
        text.push_str("\n1\n");
        let (r, _) = run_csv(text.as_bytes(), &template(UnknownFields::Ignore));
        let message = r.unwrap_err().to_string();
        assert!(message.len() < 1500, "{}", message.len());
        assert!(message.ends_with("and 49981 more"), "{message}");
    }

    #[test]
    fn lines_after_blank_lines_are_exact() {
        let text = "Product ID,name\n\n1,a\n\n\nx,b\n\r\n3,\"c\n\nd\"\n\n\ny,e\n";
        let (r, sink) = run(text, &template(UnknownFields::Ignore), true);
        assert_eq!(r.unwrap(), ParseStats { rows: 4, bad_rows: 2 });
        let good: Vec<u64> = sink
            .rows
            .iter()
            .map(|r| r["_source_line"].as_u64().unwrap())
            .collect();
        assert_eq!(good, [3, 8]);
        let bad: Vec<u64> = sink.errors.iter().map(|e| e.line).collect();
        assert_eq!(bad, [6, 13]);
    }
}

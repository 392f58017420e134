//! Apache Parquet files, read with arrow-rs: the object is copied to an unnamed local file
//! (Parquet is read from its footer, so it needs to be seekable), then read a batch of rows
//! at a time, each batch written as JSON Lines text and checked by the JSON Lines path.
//!
//! Copying first keeps every guarantee of a streamed object: the copy reads the object to its
//! end, where the source's verified reader fails a body whose length or digest differs, before
//! any row is handed on. Memory is one row group's decoded pages for the columns read plus
//! one batch (its arrays and its JSON text); the copy is on disk, in the spool folder.
//!
//! Values arrive as arrow-json writes them: integers and floats as numbers, decimals as
//! their exact text (scale kept), dates and timestamps as ISO 8601 text, lists and structs
//! as JSON, binary as hex; each is then checked against its field like a JSON Lines value.
//! `_source_line` is the row's 1-based number in the file.

use super::*;
use crate::template::Column;
use ::parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use arrow_array::RecordBatch;
use std::path::Path;

/// Rows read and converted at once: enough to amortize the conversion, few enough that a
/// batch of wide rows stays small.
const BATCH_ROWS: usize = 4096;

/// Marks an I/O error that is the file's fault (it is not valid Parquet), so that the caller
/// rejects the object instead of retrying it.
#[derive(Debug)]
pub(super) struct Broken(pub(super) String);

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Broken {}

/// The reader's words for what is wrong with a file, cut to an excerpt: they can quote the
/// file (a time zone, a column name), and no message holds more than an excerpt of it.
fn reason(e: impl std::fmt::Display) -> String {
    crate::text::excerpt(&e.to_string())
}

/// Reads one Parquet object from `reader` into `sink`. The Parquet reader can panic on a
/// corrupt file (fuzzing finds such files in seconds): a panic is caught and the file
/// rejected with it as the reason, so that one hostile file costs its own import only.
pub(super) fn parse(
    reader: impl Read,
    scratch: Option<&Path>,
    limit: u64,
    template: &Template,
    sink: &mut Provenanced<'_, '_>,
) -> Result<(), Failure> {
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        read(reader, scratch, limit, template, sink)
    }));
    caught.unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_string());
        Err(Failure::File(ParseError::Parquet {
            reason: format!("the Parquet reader failed on it ({})", reason(why)),
        }))
    })
}

fn read(
    mut reader: impl Read,
    scratch: Option<&Path>,
    limit: u64,
    template: &Template,
    sink: &mut Provenanced<'_, '_>,
) -> Result<(), Failure> {
    // The spool folder, when there is one to write into; else the system's temporary folder.
    let mut file = match scratch.and_then(|dir| tempfile::tempfile_in(dir).ok()) {
        Some(file) => file,
        None => tempfile::tempfile()?,
    };
    io::copy(&mut reader, &mut file)?;
    let broken =
        |e: ::parquet::errors::ParquetError| Failure::File(ParseError::Parquet { reason: reason(e) });
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(broken)?;
    // The footer says how large each row group is; one is read into memory at a time.
    for (index, group) in builder.metadata().row_groups().iter().enumerate() {
        let bytes = u64::try_from(group.total_byte_size()).unwrap_or(u64::MAX);
        if bytes > limit {
            return Err(Failure::File(ParseError::RowGroupTooLarge {
                index,
                bytes,
                limit,
            }));
        }
    }
    let found: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    // A required field's column must be in the file: a row cannot supply what its file's
    // schema lacks.
    let missing: Vec<String> = template
        .fields
        .iter()
        .filter(|f| f.required)
        .filter_map(|f| match &f.column {
            Column::Name(name) if !found.contains(name) => Some(name.clone()),
            _ => None,
        })
        .collect();
    if !missing.is_empty() {
        return Err(Failure::File(ParseError::MissingColumns { missing, found }));
    }
    let batches = builder.with_batch_size(BATCH_ROWS).build().map_err(broken)?;
    let lines = JsonLines {
        batches,
        text: Vec::new(),
        at: 0,
    };
    super::jsonl::parse(io::BufReader::with_capacity(BUF, lines), template, sink, false)
}

/// The rows of a Parquet file as JSON Lines text, a batch at a time.
struct JsonLines {
    batches: ParquetRecordBatchReader,
    text: Vec<u8>,
    at: usize,
}

impl JsonLines {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), arrow_schema::ArrowError> {
        self.text.clear();
        self.at = 0;
        let batch = decimals_as_text(batch)?;
        let mut writer = arrow_json::LineDelimitedWriter::new(&mut self.text);
        writer.write(&batch)?;
        writer.finish()
    }
}

/// Decimal columns as their exact text, scale kept (`0.10`): as JSON numbers they would lose
/// trailing zeros, and inference would take them for floats.
fn decimals_as_text(batch: &RecordBatch) -> Result<RecordBatch, arrow_schema::ArrowError> {
    use arrow_schema::{DataType, Field, Schema};
    let is_decimal = |t: &DataType| {
        matches!(
            t,
            DataType::Decimal32(..)
                | DataType::Decimal64(..)
                | DataType::Decimal128(..)
                | DataType::Decimal256(..)
        )
    };
    let schema = batch.schema();
    if !schema.fields().iter().any(|f| is_decimal(f.data_type())) {
        return Ok(batch.clone());
    }
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        if is_decimal(field.data_type()) {
            columns.push(arrow_cast::cast(column, &DataType::Utf8)?);
            fields.push(Field::new(field.name(), DataType::Utf8, field.is_nullable()));
        } else {
            columns.push(column.clone());
            fields.push(field.as_ref().clone());
        }
    }
    RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), columns)
}

impl Read for JsonLines {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        // Bounded by the file's batches: each round takes one.
        while self.at == self.text.len() {
            match self.batches.next() {
                None => return Ok(0),
                Some(Ok(batch)) => self
                    .write(&batch)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, Broken(reason(e))))?,
                Some(Err(e)) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, Broken(reason(e))));
                }
            }
        }
        let n = out.len().min(self.text.len() - self.at);
        out[..n].copy_from_slice(&self.text[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::template::{FieldType, TimeFormat, UnknownFields};
    use arrow_array::{
        ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int32Array, Int64Array,
        StringArray, TimestampMicrosecondArray,
    };
    use serde_json::json;
    use std::sync::Arc;

    /// A Parquet file of the given columns, in row groups of `group` rows.
    fn parquet_file(columns: Vec<(&str, ArrayRef)>, group: usize) -> Vec<u8> {
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let props = ::parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(group))
            .set_compression(::parquet::basic::Compression::SNAPPY)
            .build();
        let mut out = Vec::new();
        let mut writer =
            ::parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        out
    }

    fn spec() -> FormatSpec {
        FormatSpec {
            kind: FormatKind::Parquet,
            ..FormatSpec::default()
        }
    }

    #[test]
    fn typed_columns_become_checked_fields_by_name() {
        let bytes = parquet_file(
            vec![
                ("id", Arc::new(Int32Array::from(vec![1, 2, 3])) as ArrayRef),
                (
                    "name",
                    Arc::new(StringArray::from(vec![Some("tea"), None, Some("pot")])),
                ),
                (
                    "price",
                    Arc::new(
                        Decimal128Array::from(vec![1999, 10, -250])
                            .with_precision_and_scale(10, 2)
                            .unwrap(),
                    ),
                ),
                ("ratio", Arc::new(Float64Array::from(vec![0.5, 1.25, 2.0]))),
                ("ok", Arc::new(BooleanArray::from(vec![true, false, true]))),
                ("day", Arc::new(Date32Array::from(vec![0, 19_000, 20_000]))),
                (
                    "at",
                    Arc::new(
                        TimestampMicrosecondArray::from(vec![0, 1_700_000_000_000_000, 1])
                            .with_timezone("UTC"),
                    ),
                ),
                ("extra", Arc::new(Int64Array::from(vec![7, 8, 9]))),
            ],
            2,
        );
        let column = |n: &str| crate::template::Column::Name(n.into());
        let template = id_template(
            "id",
            UnknownFields::Keep,
            vec![
                field("name", column("name"), FieldType::String, false),
                field("price", column("price"), FieldType::Decimal, true),
                field("ratio", column("ratio"), FieldType::Float, true),
                field("ok", column("ok"), FieldType::Boolean, true),
                field("day", column("day"), FieldType::Date(None), true),
                field(
                    "at",
                    column("at"),
                    FieldType::Timestamp {
                        format: TimeFormat::Iso,
                        zone: chrono_tz::UTC,
                    },
                    true,
                ),
            ],
        );
        let (result, sink) = parse_with(&bytes, "k/a.parquet", &spec(), &template);
        let stats = result.unwrap();
        assert_eq!(stats.rows, 3);
        assert!(sink.errors.is_empty(), "{:?}", sink.errors);
        let row = &sink.rows[1];
        assert_eq!(row["id"], json!(2));
        assert_eq!(row["name"], json!(null));
        assert_eq!(row["price"], json!("0.10"));
        assert_eq!(row["ratio"], json!(1.25));
        assert_eq!(row["ok"], json!(false));
        assert_eq!(row["day"], json!("2022-01-08"));
        assert_eq!(row["at"], json!("2023-11-14T22:13:20Z"));
        assert_eq!(row["extra"], json!(8));
        let lines: Vec<&Value> = sink.rows.iter().map(|r| &r["_source_line"]).collect();
        assert_eq!(lines, [&json!(1), &json!(2), &json!(3)]);
        assert_eq!(sink.rows[2]["price"], json!("-2.50"));
    }

    #[test]
    fn a_missing_required_column_rejects_the_file_and_a_bad_value_is_a_row_error() {
        let bytes = parquet_file(
            vec![
                ("id", Arc::new(StringArray::from(vec!["1", "x"])) as ArrayRef),
                ("b", Arc::new(Int64Array::from(vec![1, 2]))),
            ],
            10,
        );
        let template = id_template("id", UnknownFields::Ignore, vec![]);
        let (result, sink) = parse_with(&bytes, "a.parquet", &spec(), &template);
        result.unwrap();
        assert_eq!(sink.rows.len(), 1);
        assert_eq!(sink.errors.len(), 1);
        assert_eq!(sink.errors[0].line, 2);
        let template = id_template("missing", UnknownFields::Ignore, vec![]);
        let (result, _) = parse_with(&bytes, "a.parquet", &spec(), &template);
        let e = result.unwrap_err();
        assert!(matches!(e, ParseError::MissingColumns { .. }), "{e}");
    }

    #[test]
    fn a_file_that_is_not_parquet_is_rejected_not_retried() {
        let template = id_template("id", UnknownFields::Ignore, vec![]);
        for bytes in [&b"id\n1\n"[..], b"PAR1", b""] {
            let (result, _) = parse_with(bytes, "a.parquet", &spec(), &template);
            let e = result.unwrap_err();
            assert!(matches!(e, ParseError::Parquet { .. }), "{e}");
            assert!(!e.is_transient());
        }
        // Cut short: the footer is gone.
        let whole = parquet_file(
            vec![("id", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef)],
            10,
        );
        let (result, _) = parse_with(&whole[..whole.len() - 3], "a.parquet", &spec(), &template);
        assert!(matches!(result.unwrap_err(), ParseError::Parquet { .. }));
    }

    /// Files pyarrow wrote (the fuzz seeds: snappy, zstd, none; dictionary-encoded strings,
    /// lists, decimals, dates, UTC timestamps, nulls in every column), read exactly.
    #[test]
    fn files_pyarrow_wrote_are_read_exactly() {
        let column = |n: &str| crate::template::Column::Name(n.into());
        let template = id_template(
            "id",
            UnknownFields::Keep,
            vec![
                field("price", column("price"), FieldType::Decimal, false),
                field(
                    "at",
                    column("at"),
                    FieldType::Timestamp {
                        format: TimeFormat::Iso,
                        zone: chrono_tz::UTC,
                    },
                    false,
                ),
                field("tags", column("tags"), FieldType::Json, false),
            ],
        );
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/parquet");
        for codec in ["none", "snappy", "zstd"] {
            let bytes = std::fs::read(dir.join(format!("all-types-{codec}.parquet"))).unwrap();
            let (result, sink) = parse_with(&bytes, "a.parquet", &spec(), &template);
            assert_eq!(result.unwrap().rows, 3, "{codec}");
            assert!(sink.errors.is_empty(), "{codec}: {:?}", sink.errors);
            let want = json!({
                "id": 1, "price": "1.50", "at": "2024-01-01T12:00:00Z", "tags": ["a"],
                "name": "tea", "ratio": 0.5, "ok": true, "day": "2024-01-01", "colour": "red",
                "_source_key": "a.parquet", "_source_version": "v", "_source_line": 1
            });
            assert_eq!(sink.rows[0], want, "{codec}");
            assert_eq!(sink.rows[1]["price"], json!(null), "{codec}");
            assert_eq!(sink.rows[2]["price"], json!("-0.01"), "{codec}");
            assert_eq!(sink.rows[1]["tags"], json!([]), "{codec}");
        }
    }

    #[test]
    fn a_row_group_over_the_limit_rejects_the_file_naming_the_setting() {
        let ids: Vec<i64> = (0..1000).collect();
        let bytes = parquet_file(vec![("id", Arc::new(Int64Array::from(ids)) as ArrayRef)], 1000);
        let template = id_template("id", UnknownFields::Ignore, vec![]);
        let spec = FormatSpec {
            max_row_group_bytes: 1000,
            ..spec()
        };
        let (result, sink) = parse_with(&bytes, "a.parquet", &spec, &template);
        let e = result.unwrap_err();
        assert!(
            matches!(
                e,
                ParseError::RowGroupTooLarge {
                    index: 0,
                    limit: 1000,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("max_row_group_bytes (1000)"), "{e}");
        assert!(sink.rows.is_empty());
        let (result, _) = parse_with(
            &bytes,
            "a.parquet",
            &FormatSpec {
                max_row_group_bytes: 1 << 20,
                ..spec
            },
            &template,
        );
        assert_eq!(result.unwrap().rows, 1000);
    }

    /// A file the fuzzer found (a bit flipped in a seed) on which the Parquet reader panics:
    /// rejected with the panic as its reason, not a crash and not a retry.
    #[test]
    fn a_file_the_reader_panics_on_is_rejected() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/parquet");
        let bytes = std::fs::read(dir.join("found-reader-panics.parquet")).unwrap();
        let template = id_template("id", UnknownFields::Keep, vec![]);
        let (result, _) = parse_with(&bytes, "a.parquet", &spec(), &template);
        let e = result.unwrap_err();
        assert!(matches!(e, ParseError::Parquet { .. }), "{e}");
        assert!(!e.is_transient());
    }

    #[test]
    fn auto_reads_a_parquet_key_as_parquet() {
        assert_eq!(
            resolve_kind(FormatKind::Auto, "x/y.parquet"),
            Some(FormatKind::Parquet)
        );
    }
}

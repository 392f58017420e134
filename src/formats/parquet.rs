//! Apache Parquet files, read with arrow-rs: the object is copied to an unnamed local file
//! (Parquet is read from its footer, so it needs to be seekable), then read a batch of rows
//! at a time, each batch's rows checked straight from its arrays (`arrow_rows.rs`).
//!
//! Copying first keeps every guarantee of a streamed object: the copy reads the object to its
//! end, where the source's verified reader fails a body whose length or digest differs, before
//! any row is handed on. Memory is one row group's decoded pages for the columns read plus
//! one batch; the copy is on disk, in the spool folder. Only the columns the template reads
//! are decoded (all of them with `unknown_fields = "keep"`).
//!
//! Values are those arrow-json would write: integers and floats as numbers, decimals as
//! their exact text (scale kept), dates and timestamps as ISO 8601 text, lists and structs
//! as JSON, binary as base64; each is then checked against its field like a JSON Lines value.
//! `_source_line` is the row's 1-based number in the file.

use super::arrow_rows::{self, is_uuid};
use super::columnar::{ColumnKind, FileColumn, FileSchema, RowGroup, reason};
use super::*;
use ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use arrow_schema::DataType;
use std::path::Path;

/// Rows read and converted at once: enough to amortize the conversion, few enough that a
/// batch of wide rows stays small.
const BATCH_ROWS: usize = 4096;

fn broken(e: impl std::fmt::Display) -> Failure {
    Failure::File(ParseError::Parquet { reason: reason(e) })
}

/// Reads one Parquet object from `reader` into `sink`. The Parquet reader can panic on a
/// corrupt file: a panic rejects the file with it as the reason.
pub(super) fn parse(
    reader: impl Read,
    scratch: Option<&Path>,
    limit: u64,
    template: &Template,
    sink: &mut Provenanced<'_, '_>,
) -> Result<(), Failure> {
    columnar::guarded(
        || read(reader, scratch, limit, template, sink),
        |reason| ParseError::Parquet { reason },
    )
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
    // arrow-rs builds the schema's tree recursively: a schema thousands of levels deep would
    // overflow the stack before any error could be returned, so its depth is read first.
    if let Some(footer) = footer(&mut file)? {
        depth::check(&footer).map_err(|why| broken(format!("its footer {why}")))?;
    }
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(broken)?;
    let schema = file_schema(&builder);
    sink.inner.schema(&schema);
    // The footer says how large each row group is; one is read into memory at a time.
    for (index, group) in schema.row_groups.iter().enumerate() {
        if group.bytes > limit {
            return Err(Failure::File(ParseError::RowGroupTooLarge {
                index,
                bytes: group.bytes,
                limit,
            }));
        }
    }
    columnar::check_schema(template, &schema).map_err(Failure::File)?;
    // Only the columns the template reads are decoded, unless every column is kept.
    let builder = match template.unknown_fields {
        crate::template::UnknownFields::Keep => builder,
        _ => {
            let roots = schema
                .columns
                .iter()
                .enumerate()
                .filter(|(_, c)| columnar::claimed(template, &c.name))
                .map(|(i, _)| i);
            let mask = ::parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), roots);
            builder.with_projection(mask)
        }
    };
    let mut batches = builder.with_batch_size(BATCH_ROWS).build().map_err(broken)?;
    // The footer says how many rows each row group holds; a reader that hands over fewer (or
    // more) has misread the file, which is then rejected (its rows are not imported).
    let listed = schema.rows;
    let mut read = 0u64;
    let next = move || match batches.next() {
        None => match listed {
            Some(listed) if listed != read => Some(Err(format!(
                "the footer lists {listed} rows, and the reader found {read}"
            ))),
            _ => None,
        },
        Some(Ok(batch)) => {
            read += batch.num_rows() as u64;
            Some(Ok(batch))
        }
        Some(Err(e)) => Some(Err(reason(e))),
    };
    // A file of more than one batch is checked by worker threads while this one decodes.
    let parallel = listed.is_some_and(|rows| rows > BATCH_ROWS as u64);
    arrow_rows::check(next, parallel, template, sink)
}

/// The footer's bytes (its Thrift-encoded metadata), when the file ends as Parquet does: the
/// footer, its length in 4 bytes, `PAR1`. None for anything else, which arrow-rs then
/// rejects with its own words.
fn footer(file: &mut std::fs::File) -> io::Result<Option<Vec<u8>>> {
    use std::io::{Seek, SeekFrom};
    let size = file.seek(SeekFrom::End(0))?;
    if size < 12 {
        return Ok(None);
    }
    let mut tail = [0u8; 8];
    file.seek(SeekFrom::End(-8))?;
    file.read_exact(&mut tail)?;
    let len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    if &tail[4..] != b"PAR1" || len + 12 > size {
        return Ok(None);
    }
    file.seek(SeekFrom::Start(size - 8 - len))?;
    let mut footer = vec![0u8; len as usize];
    file.read_exact(&mut footer)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(Some(footer))
}

mod depth {
    //! How deep a Parquet footer's schema nests, read from its Thrift compact encoding without
    //! building anything: the schema is a flat list of elements in pre-order, each saying how
    //! many children it has. Iterative, and bounded by the bytes: the whole footer is walked,
    //! and a list or map that claims more elements than the bytes left could hold is refused
    //! (a fuzzed file claiming 2^62 booleans held a walk that did not check this for ever).

    /// The deepest schema read, as pyarrow allows: deeper files are refused.
    pub const MAX_DEPTH: usize = 100;

    /// Checks the depth of the footer's schema and the sizes of its collections; the error
    /// says what is wrong.
    pub fn check(footer: &[u8]) -> Result<(), String> {
        let mut t = Thrift { b: footer, at: 0 };
        let mut last = 0i16;
        while let Some((id, kind)) = t.field(&mut last)? {
            // FileMetaData field 2: the schema, a list of SchemaElement structs.
            if id != 2 || kind != LIST {
                t.skip(kind, 0)?;
                continue;
            }
            let (size, element) = t.list()?;
            if element != STRUCT {
                return Err("has a schema that is not a list of elements".to_string());
            }
            // Children still to come of each open group, outermost first.
            let mut open: Vec<i64> = Vec::new();
            for _ in 0..size {
                while open.last() == Some(&0) {
                    open.pop();
                }
                if let Some(left) = open.last_mut() {
                    *left -= 1;
                }
                let children = t.element()?;
                if children > 0 {
                    open.push(children);
                    if open.len() > MAX_DEPTH {
                        return Err(format!(
                            "declares a schema nested more than {MAX_DEPTH} levels deep, more than s3-importd reads"
                        ));
                    }
                }
            }
            // The rest of the footer is walked too: arrow-rs decodes all of it, and a
            // collection that claims more elements than it has bytes is refused here.
        }
        Ok(())
    }

    const BOOL_TRUE: u8 = 1;
    const BOOL_FALSE: u8 = 2;
    const LIST: u8 = 9;
    const SET: u8 = 10;
    const MAP: u8 = 11;
    const STRUCT: u8 = 12;
    /// Structs within a schema element nest a few levels (a logical type); more is not
    /// Parquet.
    const MAX_SKIP: usize = 16;

    struct Thrift<'a> {
        b: &'a [u8],
        at: usize,
    }

    impl Thrift<'_> {
        fn byte(&mut self) -> Result<u8, String> {
            let b = *self.b.get(self.at).ok_or("ends inside its metadata")?;
            self.at += 1;
            Ok(b)
        }

        fn bytes(&mut self, n: u64) -> Result<(), String> {
            let end = usize::try_from(n).ok().and_then(|n| self.at.checked_add(n));
            match end {
                Some(end) if end <= self.b.len() => {
                    self.at = end;
                    Ok(())
                }
                _ => Err("ends inside its metadata".to_string()),
            }
        }

        fn varint(&mut self) -> Result<u64, String> {
            let mut n = 0u64;
            for shift in (0..70).step_by(7) {
                let b = self.byte()?;
                n |= u64::from(b & 0x7f).checked_shl(shift).unwrap_or(0);
                if b & 0x80 == 0 {
                    return Ok(n);
                }
            }
            Err("holds a number longer than 10 bytes".to_string())
        }

        fn zigzag(&mut self) -> Result<i64, String> {
            let n = self.varint()?;
            Ok((n >> 1) as i64 ^ -((n & 1) as i64))
        }

        /// The next field's id and type, or none at the struct's end.
        fn field(&mut self, last: &mut i16) -> Result<Option<(i16, u8)>, String> {
            let b = self.byte()?;
            if b == 0 {
                return Ok(None);
            }
            let delta = i16::from(b >> 4);
            let id = if delta == 0 {
                i16::try_from(self.zigzag()?).map_err(|_| "has a field id out of range")?
            } else {
                last.wrapping_add(delta)
            };
            *last = id;
            Ok(Some((id, b & 0x0f)))
        }

        fn list(&mut self) -> Result<(u64, u8), String> {
            let b = self.byte()?;
            let size = match b >> 4 {
                15 => self.varint()?,
                n => u64::from(n),
            };
            self.fits(size, 1)?;
            Ok((size, b & 0x0f))
        }

        /// Refuses a collection of `size` elements of at least `each` bytes that the bytes
        /// left cannot hold. Every element takes a byte or more (a boolean in a collection
        /// is a byte), so this bounds every loop by the footer's length: a count of 2^62
        /// would otherwise be counted down without end.
        fn fits(&self, size: u64, each: u64) -> Result<(), String> {
            let left = self.b.len().saturating_sub(self.at) as u64;
            if size.saturating_mul(each) > left {
                return Err(format!(
                    "declares a collection of {size} elements in {left} bytes"
                ));
            }
            Ok(())
        }

        /// Skips an element of a list, set or map, where a boolean is a byte.
        fn skip_element(&mut self, kind: u8, depth: usize) -> Result<(), String> {
            if matches!(kind, BOOL_TRUE | BOOL_FALSE) {
                self.bytes(1)
            } else {
                self.skip(kind, depth)
            }
        }

        /// Skips a value of `kind`; `depth` counts the structs and lists around it.
        fn skip(&mut self, kind: u8, depth: usize) -> Result<(), String> {
            if depth > MAX_SKIP {
                return Err("nests its metadata too deep".to_string());
            }
            match kind {
                BOOL_TRUE | BOOL_FALSE => Ok(()),
                3 => self.bytes(1),
                4..=6 => self.varint().map(|_| ()),
                7 => self.bytes(8),
                8 => {
                    let n = self.varint()?;
                    self.bytes(n)
                }
                LIST | SET => {
                    let (size, element) = self.list()?;
                    for _ in 0..size {
                        self.skip_element(element, depth + 1)?;
                    }
                    Ok(())
                }
                MAP => {
                    let size = self.varint()?;
                    if size == 0 {
                        return Ok(());
                    }
                    let kinds = self.byte()?;
                    self.fits(size, 2)?;
                    for _ in 0..size {
                        self.skip_element(kinds >> 4, depth + 1)?;
                        self.skip_element(kinds & 0x0f, depth + 1)?;
                    }
                    Ok(())
                }
                STRUCT => {
                    let mut last = 0;
                    while let Some((_, kind)) = self.field(&mut last)? {
                        self.skip(kind, depth + 1)?;
                    }
                    Ok(())
                }
                13 => self.bytes(16),
                other => Err(format!("holds a value of unknown type {other}")),
            }
        }

        /// Reads one SchemaElement; returns its `num_children` (field 5), 0 when absent.
        fn element(&mut self) -> Result<i64, String> {
            let mut last = 0;
            let mut children = 0;
            while let Some((id, kind)) = self.field(&mut last)? {
                if id == 5 && kind == 5 {
                    children = self.zigzag()?;
                } else {
                    self.skip(kind, 1)?;
                }
            }
            Ok(children)
        }
    }
}

/// The file's columns and row groups, from its footer.
fn file_schema<T>(builder: &::parquet::arrow::arrow_reader::ArrowReaderBuilder<T>) -> FileSchema {
    let metadata = builder.metadata();
    FileSchema {
        format: "Parquet",
        columns: builder
            .schema()
            .fields()
            .iter()
            .map(|f| FileColumn {
                name: f.name().clone(),
                kind: if is_uuid(f) {
                    ColumnKind::Text
                } else {
                    column_kind(f.data_type())
                },
                nullable: f.is_nullable(),
                declared: if is_uuid(f) {
                    "UUID".to_string()
                } else {
                    f.data_type().to_string()
                },
            })
            .collect(),
        // The row groups' counts, summed: the file's own total can be wrong (parquet-rs 0.3
        // wrote 0), and the row groups are what is read.
        rows: Some(
            metadata
                .row_groups()
                .iter()
                .map(|g| u64::try_from(g.num_rows()).unwrap_or(0))
                .fold(0u64, u64::saturating_add),
        ),
        row_groups: metadata
            .row_groups()
            .iter()
            .map(|g| RowGroup {
                rows: u64::try_from(g.num_rows()).unwrap_or(0),
                bytes: u64::try_from(g.total_byte_size()).unwrap_or(u64::MAX),
            })
            .collect(),
    }
}

/// What an Arrow column holds, for the template check.
fn column_kind(t: &DataType) -> ColumnKind {
    use DataType as D;
    match t {
        D::Int8 | D::Int16 | D::Int32 | D::Int64 | D::UInt8 | D::UInt16 | D::UInt32 | D::UInt64 => {
            ColumnKind::Integer
        }
        D::Float16 | D::Float32 | D::Float64 => ColumnKind::Float,
        D::Decimal32(..) | D::Decimal64(..) | D::Decimal128(..) | D::Decimal256(..) => ColumnKind::Decimal,
        D::Boolean => ColumnKind::Boolean,
        D::Utf8 | D::LargeUtf8 | D::Utf8View => ColumnKind::Text,
        D::Binary | D::LargeBinary | D::BinaryView | D::FixedSizeBinary(_) => ColumnKind::Binary,
        D::Date32 | D::Date64 => ColumnKind::Date,
        D::Timestamp(_, zone) => ColumnKind::Timestamp {
            local: zone.is_none(),
        },
        D::Time32(_) | D::Time64(_) => ColumnKind::Time,
        D::Dictionary(_, values) => column_kind(values),
        D::List(_)
        | D::LargeList(_)
        | D::ListView(_)
        | D::LargeListView(_)
        | D::FixedSizeList(..)
        | D::Struct(_)
        | D::Map(..)
        | D::Union(..) => ColumnKind::Nested,
        D::Null => ColumnKind::Null,
        _ => ColumnKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::template::{FieldType, TimeFormat, UnknownFields};
    use arrow_array::{
        ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int32Array, Int64Array,
        RecordBatch, StringArray, TimestampMicrosecondArray,
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
                field("price", column("price"), FieldType::Decimal(None), true),
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
        assert!(matches!(e, ParseError::SchemaLacks { .. }), "{e}");
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
                field("price", column("price"), FieldType::Decimal(None), false),
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
        for codec in ["none", "snappy", "zstd"] {
            let bytes = seed("parquet", &format!("all-types-{codec}.parquet"));
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
        let bytes = seed("parquet", "found-reader-panics.parquet");
        let template = id_template("id", UnknownFields::Keep, vec![]);
        let (result, _) = parse_with(&bytes, "a.parquet", &spec(), &template);
        let e = result.unwrap_err();
        assert!(matches!(e, ParseError::Parquet { .. }), "{e}");
        assert!(!e.is_transient());
    }

    /// A 143-byte file the fuzzer found (CI, 2026-12-07) that held the reader for the whole
    /// 30-minute unit timeout: it is rejected at once. Run on a thread so that a regression
    /// fails the test after 60 s instead of hanging it.
    #[test]
    fn a_file_the_fuzzer_found_hanging_the_reader_is_rejected_at_once() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let bytes = seed("parquet", "found-hang.parquet");
            let template = id_template("id", UnknownFields::Keep, vec![]);
            let (result, _) = parse_with(&bytes, "a.parquet", &spec(), &template);
            let _ = tx.send(result.map(|s| s.rows).map_err(|e| e.to_string()));
        });
        let result = rx.recv_timeout(std::time::Duration::from_secs(60));
        let e = match result {
            Ok(Err(e)) => e,
            Ok(Ok(rows)) => panic!("the file was read as {rows} rows"),
            Err(_) => panic!("reading the file did not end within 60 s"),
        };
        assert!(
            e.contains("its footer declares a collection of 7349874591868649470 elements"),
            "{e}"
        );
    }

    #[test]
    fn auto_reads_a_parquet_key_as_parquet() {
        assert_eq!(
            resolve_kind(FormatKind::Auto, "x/y.parquet"),
            Some(FormatKind::Parquet)
        );
    }

    /// Files written byte by byte to claim what they do not hold (scripts/lib/hostile_typed.py):
    /// a count of 2^40 rows, sizes and offsets of 2^63 - 1, a schema 10,000 levels deep. Each
    /// is rejected as not readable, never a panic, a stack overflow or a huge allocation.
    #[test]
    fn hostile_files_are_rejected() {
        let names = ["rows-2e40", "overflow", "nested-10000"];
        hostile_seeds_are_rejected("parquet", &names, &spec(), |e| {
            matches!(e, ParseError::Parquet { .. })
        });
        let template = id_template("id", UnknownFields::Keep, vec![]);
        let bytes = seed("parquet", "hostile-nested-10000.parquet");
        let (result, _) = parse_with(&bytes, "a.parquet", &spec(), &template);
        let e = result.unwrap_err().to_string();
        assert!(e.contains("nested more than 100 levels deep"), "{e}");
        // 99 levels: within the limit, and arrow-rs builds it on a test thread's stack.
        let bytes = seed("parquet", "deep-99.parquet");
        let (result, _) = parse_with(&bytes, "a.parquet", &spec(), &template);
        let e = result.unwrap_err().to_string();
        assert!(!e.contains("levels deep"), "{e}");
    }
}

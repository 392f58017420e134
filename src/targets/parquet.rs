//! The Parquet output of the `file` and `s3` targets: its settings (`compression`,
//! `row_group_bytes`), the typed columns a template makes, and the encoder that turns a load's
//! spooled rows into one Parquet file.
//!
//! The spool of a Parquet output holds JSON Lines, checked rows as every other target gets
//! them; the load is encoded when it is delivered (ARCHITECTURE.md, "Parquet output", says
//! why). Rows are decoded a batch at a time by arrow-json straight into typed arrays, and
//! arrow's Parquet writer closes a row group when its encoded size reaches `row_group_bytes`,
//! so memory is bounded by that, whatever the load's size. This module writes bytes into any
//! `Write`; where they go is the target's job.

use crate::formats::PROVENANCE;
use crate::spool::{SliceReader, SpoolSlice};
use crate::template::{FieldType, Template, UnknownFields};
use arrow_array::builder::StringBuilder;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_json::ReaderBuilder;
use arrow_json::reader::{ArrayDecoder, Decoder, DecoderContext, DecoderFactory, Tape, TapeElement};
use arrow_schema::{ArrowError, DataType, Field, FieldRef, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use std::collections::HashSet;
use std::io::{self, BufRead, Write};
use std::sync::Arc;

/// How a Parquet output is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParquetOut {
    pub compression: ParquetCompression,
    /// A row group is closed when its encoded size reaches this.
    pub row_group_bytes: u64,
}

/// `compression` of a Parquet output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParquetCompression {
    Zstd,
    Snappy,
    Gzip,
    None,
}

impl ParquetCompression {
    /// The names `compression` accepts, the default first.
    pub const NAMES: [&'static str; 4] = ["zstd", "snappy", "gzip", "none"];

    pub fn parse(name: &str) -> Option<ParquetCompression> {
        Some(match name {
            "zstd" => ParquetCompression::Zstd,
            "snappy" => ParquetCompression::Snappy,
            "gzip" => ParquetCompression::Gzip,
            "none" => ParquetCompression::None,
            _ => return None,
        })
    }

    fn codec(self) -> Compression {
        match self {
            ParquetCompression::Zstd => Compression::ZSTD(ZstdLevel::default()),
            ParquetCompression::Snappy => Compression::SNAPPY,
            ParquetCompression::Gzip => Compression::GZIP(GzipLevel::default()),
            ParquetCompression::None => Compression::UNCOMPRESSED,
        }
    }
}

/// The default `row_group_bytes`: 128 MiB, the row group most engines are tuned for.
pub const DEFAULT_ROW_GROUP_BYTES: u64 = 128 << 20;

/// Rows decoded at a time: small enough that a batch is a small share of a row group.
const BATCH_ROWS: usize = 8192;

/// The columns of a load: one typed column per template field, the fields kept by
/// `unknown_fields = "keep"` (`kept`, as STRING), then the provenance.
pub fn schema(template: &Template, kept: &[String]) -> SchemaRef {
    let mut fields: Vec<Field> = template
        .fields
        .iter()
        .map(|f| {
            let data_type = match &f.kind {
                FieldType::String | FieldType::Json => DataType::Utf8,
                FieldType::Integer => DataType::Int64,
                // `validate` refuses a Parquet output with a decimal field of no declared
                // shape; the widest decimal stands in should one ever get here.
                FieldType::Decimal(shape) => shape.map_or(DataType::Decimal128(38, 10), |s| {
                    DataType::Decimal128(s.precision, s.scale as i8)
                }),
                FieldType::Float => DataType::Float64,
                FieldType::Boolean => DataType::Boolean,
                FieldType::Date(_) => DataType::Date32,
                FieldType::Timestamp { .. } => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            };
            let field = Field::new(&f.name, data_type, true);
            if f.kind == FieldType::Json {
                // Written as the JSON logical type: readers see JSON documents, not text.
                field.with_extension_type(arrow_schema::extension::Json::default())
            } else {
                field
            }
        })
        .collect();
    fields.extend(kept.iter().map(|k| Field::new(k, DataType::Utf8, true)));
    fields.push(Field::new(PROVENANCE[0], DataType::Utf8, true));
    fields.push(Field::new(PROVENANCE[1], DataType::Utf8, true));
    fields.push(Field::new(PROVENANCE[2], DataType::Int64, true));
    Arc::new(Schema::new(fields))
}

/// Writes the rows of `spools` (JSON Lines), in order, to `out` as one Parquet file.
pub fn write_load(
    slices: &mut SliceReader,
    spools: &[SpoolSlice],
    settings: ParquetOut,
    template: &Template,
    out: impl Write + Send,
) -> io::Result<()> {
    // Kept fields vary from row to row, and a Parquet file has one schema: they are found
    // first, with a reader of its own, so that a consuming reader still reads the load once.
    let kept = match template.unknown_fields {
        UnknownFields::Keep => kept_fields(spools, template)?,
        UnknownFields::Ignore | UnknownFields::Reject => Vec::new(),
    };
    let schema = schema(template, &kept);
    let texts = TextColumns {
        json: template
            .fields
            .iter()
            .filter(|f| f.kind == FieldType::Json)
            .map(|f| f.name.clone())
            .collect(),
        kept: kept.into_iter().collect(),
    };
    let props = WriterProperties::builder()
        .set_compression(settings.compression.codec())
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(None)
        .set_max_row_group_bytes(Some(
            usize::try_from(settings.row_group_bytes).unwrap_or(usize::MAX),
        ))
        .build();
    let decoder = ReaderBuilder::new(schema.clone())
        .with_batch_size(BATCH_ROWS)
        .with_decoder_factory(Arc::new(texts))
        .build_decoder()
        .map_err(io::Error::other)?;
    // Decoding the rows and encoding the columns take about as long as each other: the
    // encoder runs on a thread of its own, a batch or two behind, so a load takes the longer
    // of the two rather than their sum.
    let (batches, received) = std::sync::mpsc::sync_channel::<RecordBatch>(2);
    std::thread::scope(|scope| {
        let encoder = scope.spawn(move || -> io::Result<()> {
            let mut writer = ArrowWriter::try_new(out, schema, Some(props)).map_err(io::Error::other)?;
            for batch in received {
                writer.write(&batch).map_err(io::Error::other)?;
            }
            let mut out = writer.into_inner().map_err(io::Error::other)?;
            out.flush()
        });
        let mut rows = Rows { decoder, batches };
        // Every row, then the last batch, which no later row completes.
        let decoded = slices
            .copy_all(spools, &mut rows)
            .and_then(|()| rows.send_batch());
        drop(rows);
        // The encoder's error comes first: it says why the rows stopped being taken.
        let encoded = encoder
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the Parquet encoder stopped")));
        encoded.and(decoded)
    })
}

/// The keys of the spooled rows that are not the template's fields or the provenance, in
/// the order they first appear.
fn kept_fields(spools: &[SpoolSlice], template: &Template) -> io::Result<Vec<String>> {
    let known: HashSet<&str> = template
        .fields
        .iter()
        .map(|f| f.name.as_str())
        .chain(PROVENANCE)
        .collect();
    let mut seen = HashSet::new();
    let mut kept = Vec::new();
    let mut reader = SliceReader::default();
    let mut line = Vec::new();
    for slice in spools {
        let mut rows = io::BufReader::new(reader.read(slice)?);
        loop {
            line.clear();
            if rows.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            let row: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            for key in row.keys() {
                if !known.contains(key.as_str()) && seen.insert(key.clone()) {
                    kept.push(key.clone());
                }
            }
        }
    }
    Ok(kept)
}

/// Takes the load's JSON Lines as bytes and decodes them: a batch of rows is handed to the
/// encoder once it is whole.
struct Rows {
    decoder: Decoder,
    batches: std::sync::mpsc::SyncSender<RecordBatch>,
}

impl Rows {
    fn send_batch(&mut self) -> io::Result<()> {
        if let Some(batch) = self.decoder.flush().map_err(invalid)? {
            self.batches
                .send(batch)
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the Parquet encoder stopped"))?;
        }
        Ok(())
    }
}

impl Write for Rows {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            // The decoder stops short of the end once it holds a whole batch.
            done += self.decoder.decode(&buf[done..]).map_err(invalid)?;
            if done < buf.len() {
                self.send_batch()?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A spooled row that does not decode: the spool holds rows this program checked, so this is
/// a defect or a damaged spool, and the load fails rather than writing something else.
fn invalid(e: ArrowError) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        // arrow-json may quote the value: an excerpt, as for every message about partner data.
        format!(
            "a spooled row does not fit its Parquet column: {}",
            crate::text::excerpt(&e.to_string())
        ),
    )
}

/// The STRING columns whose values are written as text: JSON fields (any JSON value, written
/// as JSON text) and kept fields (strings as they are, any other value as JSON text).
#[derive(Debug)]
struct TextColumns {
    json: HashSet<String>,
    kept: HashSet<String>,
}

impl DecoderFactory for TextColumns {
    fn make_default_decoder(
        &self,
        _ctx: &DecoderContext,
        field: &FieldRef,
        _is_nullable: bool,
    ) -> Result<Option<Box<dyn ArrayDecoder>>, ArrowError> {
        let name = field.name();
        Ok(if self.json.contains(name) {
            Some(Box::new(TextDecoder { raw_strings: false }))
        } else if self.kept.contains(name) {
            Some(Box::new(TextDecoder { raw_strings: true }))
        } else {
            None
        })
    }
}

/// Decodes any JSON value into a string column as its JSON text; a string as it is when
/// `raw_strings`.
struct TextDecoder {
    raw_strings: bool,
}

impl ArrayDecoder for TextDecoder {
    fn decode(&mut self, tape: &Tape<'_>, pos: &[u32]) -> Result<ArrayRef, ArrowError> {
        let mut column = StringBuilder::with_capacity(pos.len(), pos.len() * 16);
        let mut text = Vec::new();
        for &p in pos {
            match tape.get(p) {
                TapeElement::Null => column.append_null(),
                TapeElement::String(s) if self.raw_strings => column.append_value(tape.get_string(s)),
                _ => {
                    text.clear();
                    json_text(tape, p, &mut text)?;
                    // JSON text written from a tape of valid UTF-8 is valid UTF-8.
                    column.append_value(String::from_utf8_lossy(&text));
                }
            }
        }
        Ok(Arc::new(column.finish()))
    }
}

/// Appends the JSON text of the value at `p` of `tape`: numbers with the digits they were
/// written with, strings escaped again, objects' keys in their order.
fn json_text(tape: &Tape<'_>, p: u32, out: &mut Vec<u8>) -> Result<(), ArrowError> {
    match tape.get(p) {
        TapeElement::Null => out.extend_from_slice(b"null"),
        TapeElement::True => out.extend_from_slice(b"true"),
        TapeElement::False => out.extend_from_slice(b"false"),
        TapeElement::Number(s) => out.extend_from_slice(tape.get_string(s).as_bytes()),
        TapeElement::String(s) => crate::template::write_json_str(out, tape.get_string(s)),
        TapeElement::StartList(end) | TapeElement::StartObject(end) => {
            let object = matches!(tape.get(p), TapeElement::StartObject(_));
            out.push(if object { b'{' } else { b'[' });
            let mut cur = p + 1;
            while cur < end {
                if cur > p + 1 {
                    out.push(b',');
                }
                if object {
                    // A key, then its value.
                    json_text(tape, cur, out)?;
                    out.push(b':');
                    cur = tape.next(cur, "a key")?;
                }
                json_text(tape, cur, out)?;
                cur = tape.next(cur, "a JSON value")?;
            }
            out.push(if object { b'}' } else { b']' });
        }
        // Numbers come as text from JSON input; the typed forms only from serde values.
        _ => return Err(tape.error(p, "a JSON value")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{Column, DecimalShape, TimeFormat};
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Date32Type, Decimal128Type, Float64Type, Int64Type, TimestampMicrosecondType};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::basic::LogicalType;
    use serde_json::{Value, json};

    fn field(name: &str, kind: FieldType) -> crate::template::Field {
        crate::formats::testing::field(name, Column::Name(name.into()), kind, false)
    }

    fn template(unknown_fields: UnknownFields) -> Template {
        Template {
            table: "t".into(),
            unknown_fields,
            max_bad_rows: crate::template::BadRowLimit::Count(0),
            fields: vec![
                field("id", FieldType::Integer),
                field("name", FieldType::String),
                field(
                    "price",
                    FieldType::Decimal(Some(DecimalShape {
                        precision: 12,
                        scale: 2,
                    })),
                ),
                field("ratio", FieldType::Float),
                field("active", FieldType::Boolean),
                field("day", FieldType::Date(None)),
                field(
                    "at",
                    FieldType::Timestamp {
                        format: TimeFormat::Iso,
                        zone: chrono_tz::Tz::UTC,
                    },
                ),
                field("attrs", FieldType::Json),
            ],
        }
    }

    /// The rows as the spool holds them: checked rows' JSON text, one a line.
    fn spooled(rows: &[Value]) -> (tempfile::TempDir, SpoolSlice) {
        let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
        crate::spool::testing::slice_of(text.as_bytes())
    }

    fn encode(template: &Template, settings: ParquetOut, rows: &[Value]) -> bytes::Bytes {
        let (_dir, slice) = spooled(rows);
        let mut out = Vec::new();
        write_load(
            &mut SliceReader::default(),
            &[slice],
            settings,
            template,
            &mut out,
        )
        .unwrap();
        bytes::Bytes::from(out)
    }

    fn read(file: bytes::Bytes) -> (SchemaRef, Vec<RecordBatch>) {
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        let schema = builder.schema().clone();
        let reader = builder.build().unwrap();
        (schema, reader.map(Result::unwrap).collect())
    }

    const ZSTD: ParquetOut = ParquetOut {
        compression: ParquetCompression::Zstd,
        row_group_bytes: DEFAULT_ROW_GROUP_BYTES,
    };

    fn rows() -> Vec<Value> {
        vec![
            json!({"id": 1, "name": "Tea \"pot\"", "price": "19.99", "ratio": 0.1, "active": true,
                   "day": "2026-01-02", "at": "2026-01-02T03:04:05.123456Z",
                   "attrs": {"b": [1, 2.5, "x\n"], "a": null},
                   "_source_key": "in/a.csv", "_source_version": "v1", "_source_line": 2}),
            json!({"id": -9007199254740993_i64, "name": null, "price": "-0.50", "ratio": -1.5e300,
                   "active": false, "day": null, "at": "1969-12-31T23:59:59Z", "attrs": "text",
                   "_source_key": "in/a.csv", "_source_version": "v1", "_source_line": 3}),
        ]
    }

    #[test]
    fn every_type_is_its_column_and_every_value_reads_back() {
        let (schema, batches) = read(encode(&template(UnknownFields::Ignore), ZSTD, &rows()));
        let types: Vec<(String, DataType)> = schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect();
        let utc = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        assert_eq!(
            types,
            [
                ("id", DataType::Int64),
                ("name", DataType::Utf8),
                ("price", DataType::Decimal128(12, 2)),
                ("ratio", DataType::Float64),
                ("active", DataType::Boolean),
                ("day", DataType::Date32),
                ("at", utc()),
                ("attrs", DataType::Utf8),
                ("_source_key", DataType::Utf8),
                ("_source_version", DataType::Utf8),
                ("_source_line", DataType::Int64),
            ]
            .map(|(n, t)| (n.to_string(), t))
        );
        assert_eq!(batches.len(), 1);
        let b = &batches[0];
        let col = |name: &str| b.column_by_name(name).unwrap().clone();
        assert_eq!(
            col("id").as_primitive::<Int64Type>().values().to_vec(),
            [1, -9007199254740993]
        );
        let names = col("name");
        assert_eq!(names.as_string::<i32>().value(0), "Tea \"pot\"");
        assert!(names.is_null(1));
        let prices = col("price");
        let prices = prices.as_primitive::<Decimal128Type>();
        assert_eq!(prices.values().to_vec(), [1999, -50]);
        assert_eq!(
            col("ratio").as_primitive::<Float64Type>().values().to_vec(),
            [0.1, -1.5e300]
        );
        let active = col("active");
        assert!(active.as_boolean().value(0) && !active.as_boolean().value(1));
        let days = col("day");
        assert_eq!(days.as_primitive::<Date32Type>().value(0), 20455);
        assert!(days.is_null(1));
        assert_eq!(
            col("at")
                .as_primitive::<TimestampMicrosecondType>()
                .values()
                .to_vec(),
            [1_767_323_045_123_456, -1_000_000]
        );
        let attrs = col("attrs");
        assert_eq!(
            attrs.as_string::<i32>().value(0),
            r#"{"b":[1,2.5,"x\n"],"a":null}"#
        );
        assert_eq!(attrs.as_string::<i32>().value(1), r#""text""#);
        assert_eq!(col("_source_key").as_string::<i32>().value(1), "in/a.csv");
        assert_eq!(
            col("_source_line").as_primitive::<Int64Type>().values().to_vec(),
            [2, 3]
        );
    }

    #[test]
    fn json_annotation_timestamps_in_utc_and_statistics_are_in_the_file() {
        let file = encode(&template(UnknownFields::Ignore), ZSTD, &rows());
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        let meta = builder.metadata();
        let columns = meta.file_metadata().schema_descr();
        let logical = |name: &str| {
            let i = (0..columns.num_columns())
                .find(|&i| columns.column(i).name() == name)
                .unwrap();
            (i, columns.column(i).logical_type_ref().cloned())
        };
        assert_eq!(logical("attrs").1, Some(LogicalType::Json));
        assert_eq!(
            logical("at").1,
            Some(LogicalType::timestamp(true, parquet::basic::TimeUnit::MICROS))
        );
        assert_eq!(logical("price").1, Some(LogicalType::decimal(2, 12)));
        let group = meta.row_group(0);
        let (id, _) = logical("id");
        let stats = group.column(id).statistics().unwrap();
        assert_eq!(
            stats.min_bytes_opt(),
            Some(&(-9007199254740993_i64).to_le_bytes()[..])
        );
        assert_eq!(stats.max_bytes_opt(), Some(&1_i64.to_le_bytes()[..]));
        let (name, _) = logical("name");
        assert_eq!(group.column(name).statistics().unwrap().null_count_opt(), Some(1));
        assert_eq!(group.column(id).compression(), ZSTD.compression.codec());
    }

    #[test]
    fn kept_fields_are_string_columns_in_order_of_appearance() {
        let mut rows = rows();
        rows[0]["z_extra"] = json!({"k": 1});
        rows[1]["a_extra"] = json!("plain");
        rows[1]["z_extra"] = json!(7);
        let (schema, batches) = read(encode(&template(UnknownFields::Keep), ZSTD, &rows));
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(&names[8..10], ["z_extra", "a_extra"]);
        let b = &batches[0];
        let z = b.column_by_name("z_extra").unwrap();
        assert_eq!(z.as_string::<i32>().value(0), r#"{"k":1}"#);
        assert_eq!(z.as_string::<i32>().value(1), "7");
        let a = b.column_by_name("a_extra").unwrap();
        assert!(a.is_null(0));
        assert_eq!(a.as_string::<i32>().value(1), "plain");
    }

    #[test]
    fn row_groups_close_at_row_group_bytes_and_every_compression_reads_back() {
        let many: Vec<Value> = (0..30_000)
            .map(|i| {
                let mut r = rows()[i % 2].clone();
                r["id"] = json!(i);
                r["name"] = json!(format!("name {i} {}", i * 7919 % 10007));
                r
            })
            .collect();
        for compression in ParquetCompression::NAMES.map(|n| ParquetCompression::parse(n).unwrap()) {
            let settings = ParquetOut {
                compression,
                row_group_bytes: 64 * 1024,
            };
            let file = encode(&template(UnknownFields::Ignore), settings, &many);
            let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
            let groups = builder.metadata().num_row_groups();
            assert!(groups >= 2, "{compression:?}: {groups} row groups");
            let ids: Vec<i64> = builder
                .build()
                .unwrap()
                .flat_map(|b| {
                    b.unwrap()
                        .column_by_name("id")
                        .unwrap()
                        .as_primitive::<Int64Type>()
                        .values()
                        .to_vec()
                })
                .collect();
            assert_eq!(ids, (0..30_000).collect::<Vec<i64>>(), "{compression:?}");
        }
    }

    #[test]
    fn a_row_that_does_not_fit_its_column_fails_the_load() {
        let (_dir, slice) = spooled(&[json!({"id": "not a number"})]);
        let e = write_load(
            &mut SliceReader::default(),
            &[slice],
            ZSTD,
            &template(UnknownFields::Ignore),
            Vec::new(),
        )
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(
            e.to_string()
                .starts_with("a spooled row does not fit its Parquet column"),
            "{e}"
        );
    }
}

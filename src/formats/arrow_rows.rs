//! Arrow record batches (what the Parquet reader hands over) as rows: each row's values are
//! taken straight from the column arrays and checked against the template, with no JSON text
//! in between for the common column types.
//!
//! Integers, doubles, booleans and strings become their JSON values directly; every other
//! type (dates, timestamps, decimals, binary, lists, structs, maps, …) is rendered one value
//! at a time by arrow-json's encoder for its column, with [`Exact`]'s encoders for binary,
//! UUIDs and decimals, and read back as a JSON value. Either way, a row's values are exactly
//! what the same batch written as JSON Lines ([`write_lines`]) and read by the JSON Lines path
//! would give, key for key (a null is an absent key, as arrow-json writes it); the values are
//! then checked by the same [`Template::check_row`] as every other format's, so one place
//! decides what a valid integer, decimal or timestamp is. The JSON text of a whole row is
//! written only for a row that fails (its error shows it).
//!
//! Pure: no I/O. A large file's batches are checked by worker threads
//! ([`super::parallel`]) while the calling thread decodes the next ones.

use super::columnar::{self, reason};
use super::{Failure, Provenanced};
use crate::template::{Column, RawValue, Template, UnknownFields};
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Decimal32Type, Decimal64Type, Decimal128Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
    UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, RecordBatch};
use arrow_buffer::NullBuffer;
use arrow_json::writer::make_encoder;
use arrow_json::{Encoder, EncoderFactory, EncoderOptions, writer::NullableEncoder};
use arrow_schema::{ArrowError, DataType, FieldRef, TimeUnit};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;
use std::sync::Arc;

/// A file's rows, one batch at a time, and the 1-based number of the batch's first row.
#[derive(Default)]
pub(super) struct Batch {
    rows: Option<RecordBatch>,
    first: u64,
}

/// Checks the rows of the batches `next` hands over (until it returns None, or the reason the
/// file cannot be read on) into `sink`, on worker threads when `parallel`.
pub(super) fn check(
    mut next: impl FnMut() -> Option<Result<RecordBatch, String>>,
    parallel: bool,
    template: &Template,
    sink: &mut Provenanced<'_, '_>,
) -> Result<(), Failure> {
    let mut first = 1u64;
    let read = |batch: &mut Batch| -> Result<bool, Failure> {
        match next() {
            None => Ok(false),
            Some(Ok(rows)) => {
                batch.first = first;
                first += rows.num_rows() as u64;
                batch.rows = Some(rows);
                Ok(true)
            }
            Some(Err(why)) => {
                batch.rows = None;
                Err(columnar::not_read(why))
            }
        }
    };
    let check = |scratch: &mut Scratch, batch: &Batch, view: &mut Provenanced<'_, '_>| {
        check_batch(scratch, batch, template, view)
    };
    super::parallel::run_or_here(parallel, sink, template, read, Scratch::default, check)
}

/// What checking reuses from row to row.
#[derive(Default)]
struct Scratch {
    /// Each field's value in the row being checked, and whether its column had one.
    values: Vec<(Value, bool)>,
    /// Under `keep`: the columns no field claims, with the row's values.
    kept: Vec<(String, Value)>,
    /// Which of `kept` the row has a value for.
    kept_present: Vec<bool>,
    /// A value rendered by arrow-json.
    text: Vec<u8>,
}

/// Checks one batch's rows into `sink`.
fn check_batch(
    scratch: &mut Scratch,
    batch: &Batch,
    template: &Template,
    sink: &mut Provenanced<'_, '_>,
) -> Result<(), Failure> {
    let Some(rows) = &batch.rows else {
        return Ok(());
    };
    let not_read = |e: ArrowError| columnar::not_read(reason(e));
    let rows = &string_keys(rows).map_err(not_read)?;
    let schema = rows.schema();
    let options = EncoderOptions::default().with_encoder_factory(Arc::new(Exact));
    // A field reads the last column of its name, as a JSON object keeps a key's last value.
    let field_column: Vec<Option<usize>> = template
        .fields
        .iter()
        .map(|f| match &f.column {
            Column::Name(name) => schema.fields().iter().rposition(|c| c.name() == name),
            Column::Index(_) => None,
        })
        .collect();
    let kept: Vec<usize> = match template.unknown_fields {
        UnknownFields::Keep => (0..schema.fields().len())
            .filter(|&c| !field_column.contains(&Some(c)))
            .collect(),
        _ => Vec::new(),
    };
    // A column only ISO timestamp fields read is read as instants: whatever text names the
    // instant, those fields deliver the same value, and the canonical text is copied through
    // without being parsed again. Any other reader gets the text arrow-json would write.
    let instants = |c: usize| {
        let mut readers = template
            .fields
            .iter()
            .zip(&field_column)
            .filter(|(_, column)| **column == Some(c))
            .peekable();
        readers.peek().is_some()
            && readers.all(|(f, _)| {
                matches!(
                    &f.kind,
                    crate::template::FieldType::Timestamp {
                        format: crate::template::TimeFormat::Iso,
                        ..
                    }
                )
            })
    };
    let mut readers = schema
        .fields()
        .iter()
        .zip(rows.columns())
        .enumerate()
        .map(|(c, (field, column))| Reader::new(field, column.as_ref(), &options, instants(c)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(not_read)?;
    scratch.values.resize(template.fields.len(), (Value::Null, false));
    scratch.kept = kept
        .iter()
        .map(|&c| (schema.field(c).name().clone(), Value::Null))
        .collect();
    scratch.kept_present = vec![false; kept.len()];
    for row in 0..rows.num_rows() {
        let line = batch.first + row as u64;
        let raw = || row_text(rows, row);
        let mut failed = None;
        for (column, (value, present)) in field_column.iter().zip(scratch.values.iter_mut()) {
            *present = match column.and_then(|c| readers.get_mut(c)) {
                Some(reader) => match reader.fill(row, value, &mut scratch.text) {
                    Ok(present) => present,
                    Err(why) => {
                        failed = Some(why);
                        false
                    }
                },
                None => false,
            };
        }
        for (&column, ((_, value), present)) in kept
            .iter()
            .zip(scratch.kept.iter_mut().zip(scratch.kept_present.iter_mut()))
        {
            if let Some(reader) = readers.get_mut(column) {
                match reader.fill(row, value, &mut scratch.text) {
                    Ok(p) => *present = p,
                    Err(why) => failed = Some(why),
                }
            }
        }
        if let Some(why) = failed {
            sink.broken(line, format!("could not be read as JSON ({why})"), raw())?;
            continue;
        }
        let values = &scratch.values;
        let checked = template.check_row(
            |i, _| match values.get(i) {
                Some((value, true)) => RawValue::Json(value),
                _ => RawValue::Missing,
            },
            &mut sink.buf,
        );
        if scratch.kept_present.iter().all(|p| *p) {
            sink.emit(line, checked, &scratch.kept, raw)?;
        } else {
            let kept: Vec<(String, Value)> = scratch
                .kept
                .iter()
                .zip(&scratch.kept_present)
                .filter(|(_, present)| **present)
                .map(|(kv, _)| kv.clone())
                .collect();
            sink.emit(line, checked, &kept, raw)?;
        }
    }
    Ok(())
}

/// One row of a batch as the JSON object text [`write_lines`] writes, for a row error.
fn row_text(rows: &RecordBatch, row: usize) -> String {
    let mut text = Vec::new();
    match write_lines(&rows.slice(row, 1), &mut text) {
        Ok(()) => String::from_utf8_lossy(text.trim_ascii_end()).into_owned(),
        Err(e) => format!("(the row could not be shown: {})", reason(e)),
    }
}

/// Reads one column's values.
struct Reader<'a> {
    nulls: Option<NullBuffer>,
    cell: Cell<'a>,
}

/// How a column's values become JSON values.
enum Cell<'a> {
    Int(Box<dyn Fn(usize) -> i64 + 'a>),
    UInt(Box<dyn Fn(usize) -> u64 + 'a>),
    Float(&'a arrow_array::Float64Array),
    Bool(&'a arrow_array::BooleanArray),
    Str(Box<dyn Fn(usize) -> &'a str + 'a>),
    /// Dates, times, timestamps, durations, intervals: their text as arrow-json writes it.
    Display(arrow_cast::display::ArrayFormatter<'a>),
    /// A UTC-adjusted timestamp that only timestamp fields read: the instant, written as those
    /// fields deliver it (the text, for an instant chrono cannot hold).
    Instant(
        Box<dyn Fn(usize) -> Option<DateTime<Utc>> + 'a>,
        arrow_cast::display::ArrayFormatter<'a>,
    ),
    /// A decimal's unscaled value and its scale (not negative), delivered as exact text.
    Decimal(Box<dyn Fn(usize) -> i128 + 'a>, usize),
    /// Rendered by arrow-json and read back.
    Json(NullableEncoder<'a>),
}

impl<'a> Reader<'a> {
    fn new(
        field: &'a FieldRef,
        array: &'a dyn Array,
        options: &'a EncoderOptions,
        instants: bool,
    ) -> Result<Self, ArrowError> {
        macro_rules! integer {
            ($type:ty, $cell:ident, $to:ty) => {{
                let a = array.as_primitive::<$type>();
                Cell::$cell(Box::new(move |i| <$to>::from(a.value(i))))
            }};
        }
        let cell = match array.data_type() {
            DataType::Int8 => integer!(Int8Type, Int, i64),
            DataType::Int16 => integer!(Int16Type, Int, i64),
            DataType::Int32 => integer!(Int32Type, Int, i64),
            DataType::Int64 => integer!(Int64Type, Int, i64),
            DataType::UInt8 => integer!(UInt8Type, UInt, u64),
            DataType::UInt16 => integer!(UInt16Type, UInt, u64),
            DataType::UInt32 => integer!(UInt32Type, UInt, u64),
            DataType::UInt64 => integer!(UInt64Type, UInt, u64),
            DataType::Float64 => Cell::Float(array.as_primitive::<Float64Type>()),
            DataType::Boolean => Cell::Bool(array.as_boolean()),
            DataType::Utf8 => {
                let a = array.as_string::<i32>();
                Cell::Str(Box::new(move |i| a.value(i)))
            }
            DataType::LargeUtf8 => {
                let a = array.as_string::<i64>();
                Cell::Str(Box::new(move |i| a.value(i)))
            }
            DataType::Utf8View => {
                let a = array.as_string_view();
                Cell::Str(Box::new(move |i| a.value(i)))
            }
            DataType::Decimal32(_, scale) if *scale >= 0 => {
                let a = array.as_primitive::<Decimal32Type>();
                Cell::Decimal(Box::new(move |i| i128::from(a.value(i))), *scale as usize)
            }
            DataType::Decimal64(_, scale) if *scale >= 0 => {
                let a = array.as_primitive::<Decimal64Type>();
                Cell::Decimal(Box::new(move |i| i128::from(a.value(i))), *scale as usize)
            }
            DataType::Decimal128(_, scale) if *scale >= 0 => {
                let a = array.as_primitive::<Decimal128Type>();
                Cell::Decimal(Box::new(move |i| a.value(i)), *scale as usize)
            }
            DataType::Timestamp(unit, Some(zone)) if instants && is_utc(zone) => {
                let options = arrow_cast::display::FormatOptions::new().with_display_error(true);
                let display = arrow_cast::display::ArrayFormatter::try_new(array, &options)?;
                macro_rules! instant {
                    ($type:ty, $to:expr) => {{
                        let a = array.as_primitive::<$type>();
                        Box::new(move |i: usize| $to(a.value(i)))
                            as Box<dyn Fn(usize) -> Option<DateTime<Utc>> + 'a>
                    }};
                }
                let at = match unit {
                    TimeUnit::Second => instant!(TimestampSecondType, |v| Utc.timestamp_opt(v, 0).single()),
                    TimeUnit::Millisecond => {
                        instant!(TimestampMillisecondType, |v| Utc.timestamp_millis_opt(v).single())
                    }
                    TimeUnit::Microsecond => {
                        instant!(TimestampMicrosecondType, DateTime::<Utc>::from_timestamp_micros)
                    }
                    TimeUnit::Nanosecond => {
                        instant!(TimestampNanosecondType, |v| Some(
                            DateTime::<Utc>::from_timestamp_nanos(v)
                        ))
                    }
                };
                Cell::Instant(at, display)
            }
            t if t.is_temporal() => {
                let options = arrow_cast::display::FormatOptions::new().with_display_error(true);
                Cell::Display(arrow_cast::display::ArrayFormatter::try_new(array, &options)?)
            }
            DataType::Dictionary(key, _) => match dictionary_strings(key, array) {
                Some(cell) => cell,
                None => return Self::rendered(field, array, options),
            },
            _ => return Self::rendered(field, array, options),
        };
        Ok(Reader {
            nulls: array.nulls().cloned(),
            cell,
        })
    }

    /// A reader of values that arrow-json renders.
    fn rendered(
        field: &'a FieldRef,
        array: &'a dyn Array,
        options: &'a EncoderOptions,
    ) -> Result<Self, ArrowError> {
        Ok(Reader {
            nulls: None,
            cell: Cell::Json(make_encoder(field, array, options)?),
        })
    }

    /// Puts row `row`'s value in `slot` (reusing its allocation where it can); false when the
    /// row has none (arrow-json would leave its key out). Fails only when arrow-json wrote
    /// something that is not JSON.
    fn fill(&mut self, row: usize, slot: &mut Value, text: &mut Vec<u8>) -> Result<bool, String> {
        if let Cell::Json(encoder) = &mut self.cell {
            if encoder.is_null(row) {
                return Ok(false);
            }
            text.clear();
            encoder.encode(row, text);
            *slot = serde_json::from_slice(text).map_err(|e| e.to_string())?;
            return Ok(true);
        }
        if self.nulls.as_ref().is_some_and(|n| n.is_null(row)) {
            return Ok(false);
        }
        match &self.cell {
            Cell::Int(value) => *slot = Value::from(value(row)),
            Cell::UInt(value) => *slot = Value::from(value(row)),
            // NaN and infinities: arrow-json writes null, a present key without a value.
            Cell::Float(a) => {
                *slot = serde_json::Number::from_f64(a.value(row)).map_or(Value::Null, Value::Number)
            }
            Cell::Bool(a) => *slot = Value::Bool(a.value(row)),
            Cell::Str(value) => text_slot(slot).push_str(value(row)),
            Cell::Display(formatter) => {
                use std::fmt::Write;
                // Writing to a String cannot fail.
                let _ = write!(text_slot(slot), "{}", formatter.value(row));
            }
            Cell::Instant(at, display) => match at(row) {
                Some(t) => {
                    text.clear();
                    crate::template::write_timestamp(text, t);
                    // The JSON string's content: no escapes in a timestamp.
                    let inner = text.get(1..text.len().saturating_sub(1)).unwrap_or_default();
                    text_slot(slot).push_str(&String::from_utf8_lossy(inner));
                }
                None => {
                    use std::fmt::Write;
                    let _ = write!(text_slot(slot), "{}", display.value(row));
                }
            },
            Cell::Decimal(value, scale) => {
                let mut digits = itoa::Buffer::new();
                columnar::scaled(digits.format(value(row)), *scale, text_slot(slot));
            }
            Cell::Json(_) => {}
        }
        Ok(true)
    }
}

/// Whether a timestamp column's zone is UTC itself (an instant adjusted to UTC).
fn is_utc(zone: &str) -> bool {
    matches!(zone, "UTC" | "utc" | "Z" | "+00:00" | "+0000" | "Etc/UTC" | "GMT")
}

/// `slot` as an empty string, keeping its allocation when it holds one: text values are
/// written into the same buffer row after row.
fn text_slot(slot: &mut Value) -> &mut String {
    if let Value::String(s) = slot {
        s.clear();
    } else {
        *slot = Value::String(String::new());
    }
    match slot {
        Value::String(s) => s,
        _ => unreachable!("the slot was just made a string"),
    }
}

/// A dictionary of strings (Spark's and pyarrow's way with repeated text) read through its
/// keys, as arrow-json does: a null key is a null value.
fn dictionary_strings<'a>(key: &DataType, array: &'a dyn Array) -> Option<Cell<'a>> {
    fn strings<'a, K: arrow_array::types::ArrowDictionaryKeyType>(array: &'a dyn Array) -> Option<Cell<'a>> {
        use arrow_buffer::ArrowNativeType;
        let dictionary = array.as_dictionary::<K>();
        let keys = dictionary.keys();
        let values = dictionary.values();
        match values.data_type() {
            DataType::Utf8 => {
                let values = values.as_string::<i32>();
                Some(Cell::Str(Box::new(move |i| {
                    values.value(keys.value(i).as_usize())
                })))
            }
            DataType::LargeUtf8 => {
                let values = values.as_string::<i64>();
                Some(Cell::Str(Box::new(move |i| {
                    values.value(keys.value(i).as_usize())
                })))
            }
            _ => None,
        }
    }
    match key {
        DataType::Int8 => strings::<Int8Type>(array),
        DataType::Int16 => strings::<Int16Type>(array),
        DataType::Int32 => strings::<Int32Type>(array),
        DataType::Int64 => strings::<Int64Type>(array),
        DataType::UInt8 => strings::<UInt8Type>(array),
        DataType::UInt16 => strings::<UInt16Type>(array),
        DataType::UInt32 => strings::<UInt32Type>(array),
        DataType::UInt64 => strings::<UInt64Type>(array),
        _ => None,
    }
}

/// Writes a batch as JSON Lines: arrow-json's encoding, but binary values as standard base64
/// (arrow-json writes hex), UUIDs as their text, and decimals as their exact text with the
/// scale kept (`0.10`; as JSON numbers they would lose trailing zeros, and inference would
/// take them for floats), at every depth.
pub(super) fn write_lines(batch: &RecordBatch, text: &mut Vec<u8>) -> Result<(), ArrowError> {
    let batch = &string_keys(batch)?;
    let mut writer = arrow_json::WriterBuilder::new()
        .with_encoder_factory(std::sync::Arc::new(Exact))
        .build::<_, arrow_json::writer::LineDelimited>(text);
    writer.write(batch)?;
    writer.finish()
}

/// The batch with every map's keys as text: a JSON object's keys are strings, and arrow-json
/// writes only maps whose keys are (a map keyed by integers becomes `{"1": …}`).
fn string_keys(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    use arrow_schema::{Field, Schema};
    let schema = batch.schema();
    if !schema.fields().iter().any(|f| has_keyed_map(f.data_type())) {
        return Ok(batch.clone());
    }
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        if has_keyed_map(field.data_type()) {
            let to = with_string_keys(field.data_type());
            columns.push(arrow_cast::cast(column, &to)?);
            fields.push(Field::new(field.name(), to, field.is_nullable()));
        } else {
            columns.push(column.clone());
            fields.push(field.as_ref().clone());
        }
    }
    RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), columns)
}

/// Whether a type holds, at any depth, a map whose keys are not text.
fn has_keyed_map(t: &DataType) -> bool {
    match t {
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) => {
                kv.iter().next().is_some_and(|k| k.data_type() != &DataType::Utf8)
                    || kv.iter().any(|f| has_keyed_map(f.data_type()))
            }
            _ => false,
        },
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            has_keyed_map(f.data_type())
        }
        DataType::Struct(fields) => fields.iter().any(|f| has_keyed_map(f.data_type())),
        _ => false,
    }
}

/// The type with every map's keys made text (bounded by the type's depth).
fn with_string_keys(t: &DataType) -> DataType {
    use arrow_schema::Field;
    let field = |f: &FieldRef, t: DataType| std::sync::Arc::new(Field::new(f.name(), t, f.is_nullable()));
    match t {
        DataType::Map(entries, sorted) => match entries.data_type() {
            DataType::Struct(kv) => {
                let kv: Vec<FieldRef> = kv
                    .iter()
                    .enumerate()
                    .map(|(i, f)| {
                        let t = if i == 0 {
                            DataType::Utf8
                        } else {
                            with_string_keys(f.data_type())
                        };
                        field(f, t)
                    })
                    .collect();
                DataType::Map(field(entries, DataType::Struct(kv.into())), *sorted)
            }
            other => other.clone(),
        },
        DataType::List(f) => DataType::List(field(f, with_string_keys(f.data_type()))),
        DataType::LargeList(f) => DataType::LargeList(field(f, with_string_keys(f.data_type()))),
        DataType::FixedSizeList(f, n) => {
            DataType::FixedSizeList(field(f, with_string_keys(f.data_type())), *n)
        }
        DataType::Struct(fields) => DataType::Struct(
            fields
                .iter()
                .map(|f| field(f, with_string_keys(f.data_type())))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The encoders of [`write_lines`].
#[derive(Debug)]
struct Exact;

impl EncoderFactory for Exact {
    fn make_default_encoder<'a>(
        &self,
        field: &'a FieldRef,
        array: &'a dyn Array,
        _options: &'a EncoderOptions,
    ) -> Result<Option<NullableEncoder<'a>>, ArrowError> {
        use arrow_array::cast::AsArray;
        use arrow_array::types::{Decimal32Type, Decimal64Type, Decimal128Type, Decimal256Type};
        let nulls = array.nulls().cloned();
        let encoder: Box<dyn Encoder + 'a> = match array.data_type() {
            DataType::Binary => Box::new(Base64(array.as_binary::<i32>())),
            DataType::LargeBinary => Box::new(Base64(array.as_binary::<i64>())),
            DataType::BinaryView => Box::new(Base64(array.as_binary_view())),
            DataType::FixedSizeBinary(16) if is_uuid(field) => Box::new(Uuid(array.as_fixed_size_binary())),
            DataType::FixedSizeBinary(_) => Box::new(Base64(array.as_fixed_size_binary())),
            DataType::Decimal32(..) => Box::new(Decimal(array.as_primitive::<Decimal32Type>())),
            DataType::Decimal64(..) => Box::new(Decimal(array.as_primitive::<Decimal64Type>())),
            DataType::Decimal128(..) => Box::new(Decimal(array.as_primitive::<Decimal128Type>())),
            DataType::Decimal256(..) => Box::new(Decimal(array.as_primitive::<Decimal256Type>())),
            _ => return Ok(None),
        };
        Ok(Some(NullableEncoder::new(encoder, nulls)))
    }
}

/// Bytes as a JSON string of their standard base64.
struct Base64<A>(A);

impl<'a, A: arrow_array::ArrayAccessor<Item = &'a [u8]>> Encoder for Base64<A> {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        use arrow_cast::base64::{BASE64_STANDARD, Engine};
        out.push(b'"');
        out.extend_from_slice(BASE64_STANDARD.encode(self.0.value(idx)).as_bytes());
        out.push(b'"');
    }
}

/// 16 bytes as a JSON string of the hyphenated UUID.
struct Uuid<'a>(&'a arrow_array::FixedSizeBinaryArray);

impl Encoder for Uuid<'_> {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        let b = self.0.value(idx);
        out.push(b'"');
        for (i, byte) in b.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                out.push(b'-');
            }
            out.extend_from_slice(format!("{byte:02x}").as_bytes());
        }
        out.push(b'"');
    }
}

/// A decimal as a JSON string of its exact text.
struct Decimal<'a, T: arrow_array::types::DecimalType>(&'a arrow_array::PrimitiveArray<T>);

impl<T: arrow_array::types::DecimalType> Encoder for Decimal<'_, T> {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        out.push(b'"');
        out.extend_from_slice(self.0.value_as_string(idx).as_bytes());
        out.push(b'"');
    }
}

/// Whether a field is Parquet's UUID (16 bytes, delivered as its hyphenated text).
pub(super) fn is_uuid(field: &arrow_schema::Field) -> bool {
    field
        .metadata()
        .get("ARROW:extension:name")
        .is_some_and(|name| name == "arrow.uuid")
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::{Provenance, RowSink};
    use super::*;
    use crate::template::FieldType;
    use arrow_array::builder::{Int32Builder, MapBuilder, StringBuilder};
    use arrow_array::{
        ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, DictionaryArray, Float32Array,
        Float64Array, Int8Array, Int64Array, LargeStringArray, ListArray, StringArray, StructArray,
        TimestampMicrosecondArray, UInt64Array,
    };
    use arrow_schema::Field;

    /// Rows of many column types, with nulls, NaN, escapes and values a field refuses.
    fn batch(rows: usize, offset: usize) -> RecordBatch {
        let n = |i: usize| i + offset;
        let mut map = MapBuilder::new(None, Int32Builder::new(), StringBuilder::new());
        for i in 0..rows {
            if i % 4 == 3 {
                map.append(false).unwrap();
            } else {
                map.keys().append_value(n(i) as i32);
                map.values().append_value(format!("v{i}"));
                map.append(true).unwrap();
            }
        }
        let point = StructArray::from(vec![
            (
                Arc::new(Field::new("x", DataType::Int64, true)),
                Arc::new(Int64Array::from_iter(
                    (0..rows).map(|i| (i % 3 != 0).then_some(i as i64)),
                )) as ArrayRef,
            ),
            (
                Arc::new(Field::new("s", DataType::Utf8, true)),
                Arc::new(StringArray::from_iter(
                    (0..rows).map(|i| Some(format!("p\"{i}\n"))),
                )) as ArrayRef,
            ),
        ]);
        let columns: Vec<(&str, ArrayRef)> = vec![
            (
                "id",
                Arc::new(Int64Array::from_iter_values((0..rows).map(|i| n(i) as i64 - 5))),
            ),
            (
                "tiny",
                Arc::new(Int8Array::from_iter(
                    (0..rows).map(|i| (i % 5 != 0).then_some(-(i as i8 % 100))),
                )),
            ),
            (
                "big",
                Arc::new(UInt64Array::from_iter_values((0..rows).map(|i| {
                    if i % 50 == 0 {
                        u64::MAX - i as u64
                    } else {
                        i as u64 * 1000
                    }
                }))),
            ),
            (
                "score",
                Arc::new(Float64Array::from_iter((0..rows).map(|i| match i % 6 {
                    0 => None,
                    1 => Some(f64::NAN),
                    2 => Some(f64::INFINITY),
                    3 => Some(0.1 * i as f64),
                    4 => Some(-1e300),
                    _ => Some(i as f64),
                }))),
            ),
            (
                "single",
                Arc::new(Float32Array::from_iter_values((0..rows).map(|i| 0.1 + i as f32))),
            ),
            (
                "flag",
                Arc::new(BooleanArray::from_iter(
                    (0..rows).map(|i| (i % 7 != 0).then_some(i % 2 == 0)),
                )),
            ),
            (
                "name",
                Arc::new(StringArray::from_iter((0..rows).map(|i| match i % 5 {
                    0 => None,
                    1 => Some(String::new()),
                    2 => Some(format!("{}", n(i))),
                    3 => Some(format!("tab\there \u{e9}\u{1F600} \\ \"{i}\"")),
                    _ => Some(format!("x{i}")),
                }))),
            ),
            (
                "long",
                Arc::new(LargeStringArray::from_iter_values(
                    (0..rows).map(|i| format!("L{i}")),
                )),
            ),
            (
                "day",
                Arc::new(Date32Array::from_iter(
                    (0..rows).map(|i| (i % 9 != 0).then_some(i as i32 * 40)),
                )),
            ),
            (
                "at",
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values((0..rows).map(|i| i as i64 * 1_000_123))
                        .with_timezone("+02:00"),
                ),
            ),
            (
                // UTC-adjusted, whole seconds in some rows: read as instants by its
                // timestamp field.
                "utc",
                Arc::new(
                    TimestampMicrosecondArray::from_iter((0..rows).map(|i| {
                        (i % 7 != 3).then_some(i as i64 * if i % 2 == 0 { 1_000_000 } else { 1_000_123 })
                    }))
                    .with_timezone("UTC"),
                ),
            ),
            (
                // The same, nanoseconds, read by a string field: arrow-json's text.
                "utc_text",
                Arc::new(
                    arrow_array::TimestampNanosecondArray::from_iter_values(
                        (0..rows).map(|i| i as i64 * 1_000_000_007),
                    )
                    .with_timezone("UTC"),
                ),
            ),
            (
                "amount",
                Arc::new(
                    Decimal128Array::from_iter_values((0..rows).map(|i| i as i128 * 7 - 300))
                        .with_precision_and_scale(12, 2)
                        .unwrap(),
                ),
            ),
            (
                "local",
                Arc::new(arrow_array::TimestampMillisecondArray::from_iter((0..rows).map(
                    |i| (i % 4 != 0).then_some(i as i64 * 86_400_123 - 5_000_000_000),
                ))),
            ),
            (
                "clock",
                Arc::new(arrow_array::Time64MicrosecondArray::from_iter_values(
                    (0..rows).map(|i| i as i64 * 77_777_777),
                )),
            ),
            (
                "whole",
                Arc::new(
                    Decimal128Array::from_iter(
                        (0..rows).map(|i| (i % 3 != 0).then_some(i as i128 * -1_000_000_007)),
                    )
                    .with_precision_and_scale(38, 0)
                    .unwrap(),
                ),
            ),
            (
                "letter",
                Arc::new(DictionaryArray::<arrow_array::types::Int8Type>::from_iter(
                    (0..rows).map(|i| (i % 5 != 2).then_some(["x", "y\"z", ""][i % 3])),
                )),
            ),
            (
                "blob",
                Arc::new(BinaryArray::from_iter_values(
                    (0..rows).map(|i| vec![i as u8, 0, 255]),
                )),
            ),
            (
                "tags",
                Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>((0..rows).map(
                    |i| {
                        (i % 8 != 0).then(|| {
                            (0..i % 3)
                                .map(|j| (j != 1).then_some(j as i32))
                                .collect::<Vec<_>>()
                        })
                    },
                ))),
            ),
            ("point", Arc::new(point)),
            ("map", Arc::new(map.finish())),
            (
                "kind",
                Arc::new(DictionaryArray::<Int32Type>::from_iter(
                    (0..rows).map(|i| (i % 4 != 1).then_some(["a", "b"][i % 2])),
                )),
            ),
        ];
        RecordBatch::try_from_iter(columns).unwrap()
    }

    fn run(
        batches: &[RecordBatch],
        template: &Template,
        sink: &mut dyn RowSink,
        how: impl FnOnce(&[RecordBatch], &Template, &mut Provenanced<'_, '_>) -> Result<(), Failure>,
    ) -> super::super::ParseStats {
        let provenance = Provenance {
            key: "k",
            version: "v",
        };
        let mut p = Provenanced::new(sink, provenance, template);
        let result = how(batches, template, &mut p);
        assert!(matches!(result, Ok(()) | Err(Failure::Stopped)));
        p.stats
    }

    fn direct(
        parallel: bool,
    ) -> impl FnOnce(&[RecordBatch], &Template, &mut Provenanced<'_, '_>) -> Result<(), Failure> {
        move |batches, template, sink| {
            let mut batches = batches.iter().cloned().map(Ok);
            check(|| batches.next(), parallel, template, sink)
        }
    }

    /// What the JSON Lines path makes of the batches written by arrow-json: what the typed
    /// path gave before it read the arrays directly.
    fn through_text(
        batches: &[RecordBatch],
        template: &Template,
        sink: &mut Provenanced<'_, '_>,
    ) -> Result<(), Failure> {
        let mut text = Vec::new();
        for batch in batches {
            write_lines(batch, &mut text).unwrap();
        }
        super::super::jsonl::parse(&text[..], template, sink, false)
    }

    fn templates() -> Vec<Template> {
        let f = |name: &str, kind: FieldType| field(name, Column::Name(name.into()), kind, false);
        let checked = vec![
            f("tiny", FieldType::Integer),
            f("big", FieldType::Integer),
            f("score", FieldType::Float),
            f("single", FieldType::Float),
            f("flag", FieldType::Boolean),
            // Text in most rows, which an integer field refuses: row errors.
            field("name", Column::Name("name".into()), FieldType::Integer, false),
            f("long", FieldType::String),
            f("day", FieldType::Date(None)),
            f(
                "at",
                FieldType::Timestamp {
                    format: crate::template::TimeFormat::Iso,
                    zone: chrono_tz::UTC,
                },
            ),
            f(
                "utc",
                FieldType::Timestamp {
                    format: crate::template::TimeFormat::Iso,
                    zone: chrono_tz::UTC,
                },
            ),
            f("utc_text", FieldType::String),
            f("amount", FieldType::Decimal(None)),
            f("tags", FieldType::Json),
            f("missing", FieldType::String),
        ];
        [UnknownFields::Keep, UnknownFields::Ignore]
            .into_iter()
            .map(|unknown| id_template("id", unknown, checked.clone()))
            .collect()
    }

    /// Reading values straight from the arrays changes nothing: every row's JSON text (key
    /// order included), every row error and the counts are those of the batches written as
    /// JSON Lines and read by the JSON Lines path.
    #[test]
    fn rows_are_exactly_those_of_the_json_lines_path() {
        let batches = [batch(500, 0), batch(300, 500)];
        for template in templates() {
            let (mut direct_rows, mut text_rows) = (Texts::default(), Texts::default());
            let a = run(&batches, &template, &mut direct_rows, direct(false));
            let b = run(&batches, &template, &mut text_rows, through_text);
            assert_eq!(a, b, "{:?}", template.unknown_fields);
            for (d, t) in direct_rows.rows.iter().zip(&text_rows.rows) {
                assert_eq!(d, t);
            }
            for (d, t) in direct_rows.errors.iter().zip(&text_rows.errors) {
                assert_eq!(d, t);
            }
            assert_eq!(direct_rows.rows.len(), text_rows.rows.len());
            assert_eq!(direct_rows.errors.len(), text_rows.errors.len());
            assert!(!direct_rows.rows.is_empty() && !direct_rows.errors.is_empty());
            assert_eq!(a.rows, 800);
        }
    }

    /// Batches checked by worker threads while the calling thread reads give exactly what one
    /// thread gives, and a sample stops at the same row.
    #[test]
    fn the_parallel_check_gives_what_one_thread_gives() {
        let batches: Vec<RecordBatch> = (0..12).map(|i| batch(700, i * 700)).collect();
        for template in templates() {
            let stats = one_thread_and_parallel_agree(
                |parallel, sink| run(&batches, &template, sink, direct(parallel)),
                25,
            );
            assert_eq!(stats.rows, 8400);
        }
    }

    /// A reader failing part-way rejects the file after the rows read before it, on one
    /// thread or several.
    #[test]
    fn a_reader_failure_ends_the_file_as_broken() {
        for parallel in [false, true] {
            let template = &templates()[0];
            let mut sink = Texts::default();
            let provenance = Provenance {
                key: "k",
                version: "v",
            };
            let mut p = Provenanced::new(&mut sink, provenance, template);
            let mut batches = vec![Ok(batch(10, 0)), Err("page 3 is damaged".to_string())].into_iter();
            let e = check(|| batches.next(), parallel, template, &mut p).unwrap_err();
            let Failure::Io(e) = e else { panic!("{parallel}") };
            assert!(
                e.get_ref()
                    .is_some_and(|inner| inner.to_string() == "page 3 is damaged")
            );
            drop(p);
            assert_eq!(
                sink.rows.len()
                    + sink
                        .errors
                        .iter()
                        .map(|e| e.line)
                        .collect::<std::collections::BTreeSet<_>>()
                        .len(),
                10
            );
        }
    }
}

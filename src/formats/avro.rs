//! Apache Avro object container files, read with the `apache-avro` crate as they stream: the
//! header (schema, codec, sync marker) first, then a block at a time, each record's fields
//! made JSON values and checked as the JSON Lines path checks an object's keys (`Fields`).
//!
//! Streaming keeps every guarantee: a body cut short or altered fails the source's verified
//! reader, and that failure (not the Avro error it causes) decides that the object is retried
//! rather than rejected. Memory is one block, compressed and decompressed: the crate refuses
//! any length (a block, a string, an array) over [`MAX_ALLOCATION`], so a hostile length is a
//! rejection, not an allocation.
//!
//! The top-level schema must be a record; its fields are the columns. Values become JSON:
//! longs and ints as numbers, decimals as their exact text (scale kept), dates, times and
//! timestamps as ISO 8601 text (local timestamps without an offset), bytes and fixed as
//! standard base64, enums as their symbol, UUIDs as text, unions as the value they hold,
//! records and maps as objects, arrays as arrays. `_source_line` is the record's 1-based
//! number in the file.

use super::columnar::{ColumnKind, FileColumn, FileSchema, not_read, reason};
use super::jsonl::Fields;
use super::*;
use apache_avro::Schema;
use apache_avro::schema::NamesRef;
use apache_avro::types::Value as Avro;
use serde_json::Value;
use std::io::Write;

/// Records decoded at once (a batch a worker thread checks).
const BATCH_ROWS: usize = 128;

/// The largest length the reader allocates for (a block, a string, bytes, an array's items):
/// 64 MiB. Blocks are written a few hundred KiB to a few MiB long; a larger length is a
/// hostile or corrupt file.
pub const MAX_ALLOCATION: usize = 64 << 20;

fn broken(e: impl std::fmt::Display) -> Failure {
    Failure::File(ParseError::Avro { reason: reason(e) })
}

/// Reads one Avro object from `reader` into `sink`.
/// `parallel`: the object is large enough for its rows to be checked by worker threads while
/// this one decodes.
pub(super) fn parse(
    mut reader: impl Read + Send,
    parallel: bool,
    template: &Template,
    sink: &mut Provenanced<'_, '_>,
) -> Result<(), Failure> {
    let result = columnar::guarded(
        || read(&mut reader, parallel, template, sink),
        |reason| ParseError::Avro { reason },
    );
    // A file that looks broken may have been damaged on the way (a byte altered, a body cut
    // short): the source's checks of the body's length and digest run at its end, so the rest
    // is read, and if they fail the object is retried instead of rejected.
    let broken = match &result {
        Err(Failure::File(_)) => true,
        Err(Failure::Io(e)) => e.get_ref().is_some_and(|inner| inner.is::<columnar::Broken>()),
        _ => false,
    };
    if broken {
        io::copy(&mut reader, &mut io::sink())?;
    }
    result
}

fn read(
    reader: impl Read + Send,
    parallel: bool,
    template: &Template,
    sink: &mut Provenanced<'_, '_>,
) -> Result<(), Failure> {
    // The crate's limit is set once per process; the first call sets it.
    apache_avro::util::max_allocation_bytes(MAX_ALLOCATION);
    let mut records = apache_avro::Reader::new(io::BufReader::with_capacity(BUF, reader)).map_err(broken)?;
    let schema = records.writer_schema().clone();
    let resolved = apache_avro::schema::ResolvedSchema::try_from(&schema).map_err(broken)?;
    let names = resolved.get_names();
    let Schema::Record(record) = &schema else {
        return Err(broken(format!(
            "its schema is {}, not a record; s3-importd reads files whose records are rows",
            declared(&schema, names)
        )));
    };
    let file = FileSchema {
        format: "Avro",
        columns: record
            .fields
            .iter()
            .map(|f| {
                let (schema, nullable) = without_null(&f.schema, names);
                FileColumn {
                    name: f.name.clone(),
                    kind: column_kind(schema, names),
                    nullable,
                    declared: declared(&f.schema, names),
                }
            })
            .collect(),
        rows: None,
        row_groups: Vec::new(),
    };
    if let Some(what) = width::zero_width(&schema, names) {
        return Err(broken(format!(
            "its schema lets {what} take no bytes at all, so the counts in the file cannot be checked against its size (a file of a few bytes could claim 2^62 of them); s3-importd does not read such a file"
        )));
    }
    sink.inner.schema(&file);
    columnar::check_schema(template, &file).map_err(Failure::File)?;
    // This thread decodes records; they are made JSON values and checked here, or by worker
    // threads for a large file.
    let mut number = 0u64;
    let read = |batch: &mut Records| -> Result<bool, Failure> {
        batch.rows.clear();
        while batch.rows.len() < BATCH_ROWS {
            match records.next() {
                None => break,
                Some(Ok(record)) => {
                    number += 1;
                    batch.rows.push((number, record));
                }
                Some(Err(e)) => {
                    // What this batch read before the failure is dropped, on one thread or
                    // several: the file is rejected.
                    batch.rows.clear();
                    return Err(not_read(reason(e)));
                }
            }
        }
        Ok(!batch.rows.is_empty())
    };
    let new_state = || (Fields::new(template), Vec::new());
    let check =
        |(fields, text): &mut (Fields<'_>, Vec<u8>), batch: &Records, view: &mut Provenanced<'_, '_>| {
            for (line, record) in &batch.rows {
                check_record(*line, record, &schema, names, fields, text, view)?;
            }
            Ok(())
        };
    super::parallel::run_or_here(parallel, sink, template, read, new_state, check)
}

/// Records read at once, each with its 1-based number.
#[derive(Default)]
struct Records {
    rows: Vec<(u64, Avro)>,
}

/// Checks one record as a row, as the JSON Lines path checks an object: each field's value is
/// made a JSON value (the one [`write_value`] writes, with no text in between for the common
/// kinds) and put in its place, unless no field reads it and it is not kept.
fn check_record(
    line: u64,
    record: &Avro,
    schema: &Schema,
    names: &NamesRef<'_>,
    fields: &mut Fields<'_>,
    text: &mut Vec<u8>,
    sink: &mut Provenanced<'_, '_>,
) -> Result<(), Failure> {
    let Avro::Record(values) = record else {
        return Err(not_read("a record of the file is not a record".to_string()));
    };
    let field_schemas = match schema {
        Schema::Record(r) => r.fields.as_slice(),
        _ => &[],
    };
    fields.clear();
    for (i, (name, value)) in values.iter().enumerate() {
        let field_schema = field_schemas.get(i).map_or(schema, |f| &f.schema);
        fields
            .put_with(name, || json_value(value, field_schema, names, text, 1))
            .map_err(not_read)?;
    }
    // A bad row shows the record as JSON text (the error path only).
    let raw = || {
        let mut shown = Vec::new();
        match write_value(record, schema, names, &mut shown, 0) {
            Ok(()) => String::from_utf8_lossy(&shown).into_owned(),
            Err(why) => why,
        }
    };
    fields.emit(line, sink, raw)
}

/// The schema of a union's variant `index` (the schema itself when it is not a union).
fn variant(schema: &Schema, index: u32) -> &Schema {
    match schema {
        Schema::Union(union) => union.variants().get(index as usize).unwrap_or(schema),
        other => other,
    }
}

/// One value as JSON: what [`write_value`] writes for it, read back.
fn json_value(
    value: &Avro,
    schema: &Schema,
    names: &NamesRef<'_>,
    text: &mut Vec<u8>,
    depth: usize,
) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!("values nest more than {MAX_DEPTH} deep"));
    }
    let schema = resolve(schema, names);
    let float = |x: f64| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number);
    Ok(match value {
        Avro::Null => Value::Null,
        Avro::Boolean(b) => Value::Bool(*b),
        Avro::Int(n) => Value::from(*n),
        Avro::Long(n) => Value::from(*n),
        Avro::Float(x) => float(f64::from(*x)),
        Avro::Double(x) => float(*x),
        Avro::String(s) | Avro::Enum(_, s) => Value::String(s.clone()),
        Avro::Union(index, inner) => {
            return json_value(inner, variant(schema, *index), names, text, depth + 1);
        }
        other => {
            text.clear();
            write_value(other, schema, names, text, depth)?;
            serde_json::from_slice(text)
                .map_err(|e| format!("a value could not be read back as JSON ({e})"))?
        }
    })
}

/// A schema named by reference, looked up; the schema itself otherwise.
fn resolve<'s>(schema: &'s Schema, names: &NamesRef<'s>) -> &'s Schema {
    match schema {
        // Bounded: a name refers to a named schema (record, enum, fixed), never to a name.
        Schema::Ref { name } => names.get(name).copied().unwrap_or(schema),
        _ => schema,
    }
}

mod width {
    //! Where a schema lets a value take no bytes. An Avro block says how many records it
    //! holds, and an array or map block how many items: where each takes at least a byte,
    //! the file's bytes bound the count, but records of nulls only (or items of null) cost
    //! nothing to claim, and a 149-byte file of "2^40 records" of `{"a": null}` was read on
    //! and on, filling the spool. Such schemas hold no data, so they are refused.

    use apache_avro::Schema;
    use apache_avro::schema::{InnerDecimalSchema, Name, NamesRef, UuidSchema};
    use std::collections::{HashMap, HashSet};

    /// How deep the walk goes; deeper parts count as taking bytes (the walk is bounded
    /// whatever the schema).
    const MAX_DEPTH: usize = 100;

    /// What takes no bytes: "its records", or "the items of an array of null" and the like;
    /// none when every count is bounded by bytes.
    pub(super) fn zero_width(schema: &Schema, names: &NamesRef<'_>) -> Option<String> {
        let mut w = Width {
            names,
            least: HashMap::new(),
            walked: HashSet::new(),
        };
        if w.least(schema, 0) == 0 {
            return Some("its records (every field null)".to_string());
        }
        w.find(schema, 0)
    }

    struct Width<'a, 's> {
        names: &'a NamesRef<'s>,
        /// The least size of each named schema; none while it is being measured (a
        /// recursive type, which then counts as a byte).
        least: HashMap<&'a Name, Option<u64>>,
        /// Named schemas already searched by [`Width::find`].
        walked: HashSet<&'a Name>,
    }

    impl<'a> Width<'a, '_> {
        /// The fewest bytes a value of `schema` takes.
        fn least(&mut self, schema: &'a Schema, depth: usize) -> u64 {
            if depth > MAX_DEPTH {
                return 1;
            }
            match schema {
                Schema::Null => 0,
                Schema::Float => 4,
                Schema::Double => 8,
                Schema::Fixed(f) | Schema::Duration(f) => f.size as u64,
                Schema::Decimal(d) => match &d.inner {
                    InnerDecimalSchema::Fixed(f) => f.size as u64,
                    InnerDecimalSchema::Bytes => 1,
                },
                Schema::Uuid(UuidSchema::Fixed(f)) => f.size as u64,
                Schema::Record(r) => r
                    .fields
                    .iter()
                    .map(|f| self.least(&f.schema, depth + 1))
                    .fold(0, u64::saturating_add),
                Schema::Ref { name } => {
                    let Some(named) = self.names.get(name).copied() else {
                        return 1;
                    };
                    match self.least.get(name) {
                        Some(Some(known)) => *known,
                        Some(None) => 1,
                        None => {
                            self.least.insert(name, None);
                            let known = self.least(named, depth + 1);
                            self.least.insert(name, Some(known));
                            known
                        }
                    }
                }
                // Every other value takes a byte at least: a number, a length, a union's
                // branch, an enum's index, an array's or map's closing count.
                _ => 1,
            }
        }

        /// An array or map within `schema` whose items take no bytes.
        fn find(&mut self, schema: &'a Schema, depth: usize) -> Option<String> {
            if depth > MAX_DEPTH {
                return None;
            }
            match schema {
                Schema::Array(a) => {
                    if self.least(&a.items, depth + 1) == 0 {
                        return Some("the items of an array".to_string());
                    }
                    self.find(&a.items, depth + 1)
                }
                Schema::Map(m) => {
                    if self.least(&m.types, depth + 1) == 0 {
                        return Some("the values of a map".to_string());
                    }
                    self.find(&m.types, depth + 1)
                }
                Schema::Union(u) => u.variants().iter().find_map(|v| self.find(v, depth + 1)),
                Schema::Record(r) => r.fields.iter().find_map(|f| self.find(&f.schema, depth + 1)),
                Schema::Ref { name } => {
                    // A set: a schema of many names must not make this quadratic.
                    if !self.walked.insert(name) {
                        return None;
                    }
                    let named = self.names.get(name).copied()?;
                    self.find(named, depth + 1)
                }
                _ => None,
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn width(json: &str) -> Option<String> {
            let schema = Schema::parse_str(json).unwrap();
            let resolved = apache_avro::schema::ResolvedSchema::try_from(&schema).unwrap();
            zero_width(&schema, resolved.get_names())
        }

        #[test]
        fn schemas_whose_counts_bytes_cannot_bound_are_found() {
            let record = |fields: &str| format!(r#"{{"type":"record","name":"r","fields":[{fields}]}}"#);
            let cases: &[(&str, Option<&str>)] = &[
                (r#"{"name":"a","type":"long"}"#, None),
                (r#"{"name":"a","type":"null"}"#, Some("its records")),
                (
                    r#"{"name":"a","type":"null"},{"name":"b","type":{"type":"fixed","name":"f","size":0}}"#,
                    Some("its records"),
                ),
                (r#"{"name":"a","type":["null","long"]}"#, None),
                (
                    r#"{"name":"a","type":"long"},{"name":"b","type":{"type":"array","items":"null"}}"#,
                    Some("array"),
                ),
                (
                    r#"{"name":"a","type":{"type":"map","values":{"type":"record","name":"e","fields":[]}}}"#,
                    Some("map"),
                ),
                (
                    r#"{"name":"a","type":{"type":"array","items":{"type":"array","items":"null"}}}"#,
                    Some("array"),
                ),
                (r#"{"name":"a","type":{"type":"array","items":"double"}}"#, None),
                // A recursive type: each level takes a byte (the union's branch).
                (
                    r#"{"name":"a","type":"long"},{"name":"next","type":["null","r"]}"#,
                    None,
                ),
                // A named zero-width record referred to by name as an array's items.
                (
                    r#"{"name":"a","type":{"type":"record","name":"z","fields":[]}},{"name":"b","type":{"type":"array","items":"z"}}"#,
                    Some("array"),
                ),
            ];
            for (fields, want) in cases {
                let got = width(&record(fields));
                match (want, &got) {
                    (None, None) => {}
                    (Some(want), Some(got)) => assert!(got.contains(want), "{fields}: {got}"),
                    _ => panic!("{fields}: got {got:?}, want {want:?}"),
                }
            }
        }
    }
}

/// A union of null and one other schema as that schema, nullable.
fn without_null<'s>(schema: &'s Schema, names: &NamesRef<'s>) -> (&'s Schema, bool) {
    match resolve(schema, names) {
        Schema::Union(union) => {
            let others: Vec<&Schema> = union.variants().iter().filter(|s| **s != Schema::Null).collect();
            let nullable = others.len() < union.variants().len();
            match others.as_slice() {
                [one] => (resolve(one, names), nullable),
                _ => (schema, nullable),
            }
        }
        other => (other, false),
    }
}

/// What a column of this schema holds.
fn column_kind(schema: &Schema, names: &NamesRef<'_>) -> ColumnKind {
    match resolve(schema, names) {
        Schema::Null => ColumnKind::Null,
        Schema::Boolean => ColumnKind::Boolean,
        Schema::Int | Schema::Long => ColumnKind::Integer,
        Schema::Float | Schema::Double => ColumnKind::Float,
        Schema::Bytes | Schema::Fixed(_) => ColumnKind::Binary,
        Schema::String | Schema::Enum(_) | Schema::Uuid(_) => ColumnKind::Text,
        Schema::Decimal(_) | Schema::BigDecimal => ColumnKind::Decimal,
        Schema::Date => ColumnKind::Date,
        Schema::TimeMillis | Schema::TimeMicros => ColumnKind::Time,
        Schema::TimestampMillis | Schema::TimestampMicros | Schema::TimestampNanos => {
            ColumnKind::Timestamp { local: false }
        }
        Schema::LocalTimestampMillis | Schema::LocalTimestampMicros | Schema::LocalTimestampNanos => {
            ColumnKind::Timestamp { local: true }
        }
        Schema::Array(_) | Schema::Map(_) | Schema::Record(_) => ColumnKind::Nested,
        Schema::Union(_) | Schema::Duration(_) | Schema::Ref { .. } => ColumnKind::Other,
    }
}

/// A schema's type in Avro's words (`long`, `decimal(10,2)`, `timestamp-micros`,
/// `["null","string"]`).
fn declared(schema: &Schema, names: &NamesRef<'_>) -> String {
    match schema {
        Schema::Null => "null".into(),
        Schema::Boolean => "boolean".into(),
        Schema::Int => "int".into(),
        Schema::Long => "long".into(),
        Schema::Float => "float".into(),
        Schema::Double => "double".into(),
        Schema::Bytes => "bytes".into(),
        Schema::String => "string".into(),
        Schema::Array(_) => "array".into(),
        Schema::Map(_) => "map".into(),
        Schema::Union(union) => format!(
            "[{}]",
            union
                .variants()
                .iter()
                .map(|s| declared(s, names))
                .collect::<Vec<_>>()
                .join(",")
        ),
        Schema::Record(r) => format!("record {}", r.name.name()),
        Schema::Enum(e) => format!("enum {}", e.name.name()),
        Schema::Fixed(f) => format!("fixed({})", f.size),
        Schema::Decimal(d) => format!("decimal({},{})", d.precision, d.scale),
        Schema::BigDecimal => "big-decimal".into(),
        Schema::Uuid(_) => "uuid".into(),
        Schema::Date => "date".into(),
        Schema::TimeMillis => "time-millis".into(),
        Schema::TimeMicros => "time-micros".into(),
        Schema::TimestampMillis => "timestamp-millis".into(),
        Schema::TimestampMicros => "timestamp-micros".into(),
        Schema::TimestampNanos => "timestamp-nanos".into(),
        Schema::LocalTimestampMillis => "local-timestamp-millis".into(),
        Schema::LocalTimestampMicros => "local-timestamp-micros".into(),
        Schema::LocalTimestampNanos => "local-timestamp-nanos".into(),
        Schema::Duration(_) => "duration".into(),
        Schema::Ref { name } => match names.get(name) {
            Some(named) => declared(named, names),
            None => name.name().to_string(),
        },
    }
}

/// The deepest nesting of values written; a schema nests no deeper than its text, but the
/// text comes from the file.
const MAX_DEPTH: usize = 128;

/// Writes one value as JSON text. `schema` is the value's writer schema, for what the value
/// alone does not say (a decimal's scale).
fn write_value(
    value: &Avro,
    schema: &Schema,
    names: &NamesRef<'_>,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), String> {
    use chrono::{DateTime, NaiveTime, SecondsFormat};
    if depth > MAX_DEPTH {
        return Err(format!("values nest more than {MAX_DEPTH} deep"));
    }
    let schema = resolve(schema, names);
    // Writing to a Vec cannot fail.
    let _ = match value {
        Avro::Null => write!(out, "null"),
        Avro::Boolean(b) => write!(out, "{b}"),
        Avro::Int(n) => write!(out, "{n}"),
        Avro::Long(n) => write!(out, "{n}"),
        Avro::Float(x) => float(out, f64::from(*x)),
        Avro::Double(x) => float(out, *x),
        Avro::Bytes(b) | Avro::Fixed(_, b) => {
            use arrow_cast::base64::{BASE64_STANDARD, Engine};
            write!(out, "\"{}\"", BASE64_STANDARD.encode(b))
        }
        Avro::String(s) | Avro::Enum(_, s) => {
            write_json_str(out, s);
            Ok(())
        }
        Avro::Uuid(u) => write!(out, "\"{u}\""),
        Avro::Union(index, inner) => {
            return write_value(inner, variant(schema, *index), names, out, depth + 1);
        }
        Avro::Array(items) => {
            let item = match schema {
                Schema::Array(a) => &*a.items,
                other => other,
            };
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(v, item, names, out, depth + 1)?;
            }
            out.push(b']');
            Ok(())
        }
        Avro::Map(entries) => {
            let item = match schema {
                Schema::Map(m) => &*m.types,
                other => other,
            };
            // Sorted, so that the same map is always the same text.
            let mut keys: Vec<&String> = entries.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_str(out, k);
                out.push(b':');
                if let Some(v) = entries.get(k) {
                    write_value(v, item, names, out, depth + 1)?;
                }
            }
            out.push(b'}');
            Ok(())
        }
        Avro::Record(fields) => {
            out.push(b'{');
            for (i, (name, v)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let field_schema = match schema {
                    Schema::Record(r) => r.fields.get(i).map_or(schema, |f| &f.schema),
                    other => other,
                };
                write_json_str(out, name);
                out.push(b':');
                write_value(v, field_schema, names, out, depth + 1)?;
            }
            out.push(b'}');
            Ok(())
        }
        Avro::Date(days) => match chrono::NaiveDate::from_epoch_days(*days) {
            Some(d) => write!(out, "\"{}\"", d.format("%Y-%m-%d")),
            None => write!(out, "{days}"),
        },
        Avro::Decimal(d) => {
            let scale = match schema {
                Schema::Decimal(s) => s.scale,
                _ => 0,
            };
            let unscaled = num_bigint::BigInt::from(d.clone()).to_string();
            let mut text = String::new();
            columnar::scaled(&unscaled, scale, &mut text);
            write!(out, "\"{text}\"")
        }
        Avro::BigDecimal(d) => write!(out, "\"{d}\""),
        Avro::TimeMillis(ms) => time(out, time_of_day(i64::from(*ms), 1_000), i64::from(*ms)),
        Avro::TimeMicros(us) => time(out, time_of_day(*us, 1_000_000), *us),
        Avro::TimestampMillis(n) => utc(out, DateTime::from_timestamp_millis(*n), *n),
        Avro::TimestampMicros(n) => utc(out, DateTime::from_timestamp_micros(*n), *n),
        Avro::TimestampNanos(n) => utc(out, Some(DateTime::from_timestamp_nanos(*n)), *n),
        Avro::LocalTimestampMillis(n) => local(out, DateTime::from_timestamp_millis(*n), *n),
        Avro::LocalTimestampMicros(n) => local(out, DateTime::from_timestamp_micros(*n), *n),
        Avro::LocalTimestampNanos(n) => local(out, Some(DateTime::from_timestamp_nanos(*n)), *n),
        Avro::Duration(d) => write!(
            out,
            "{{\"months\":{},\"days\":{},\"millis\":{}}}",
            u32::from(d.months()),
            u32::from(d.days()),
            u32::from(d.millis())
        ),
    };
    return Ok(());

    /// A float as JSON: not-a-number and the infinities have no JSON form and are null.
    fn float(out: &mut Vec<u8>, x: f64) -> io::Result<()> {
        match serde_json::Number::from_f64(x) {
            Some(n) => write!(out, "{n}"),
            None => write!(out, "null"),
        }
    }
    /// A value out of chrono's range is written as its number, which a date or timestamp
    /// field then refuses as a row error naming it.
    fn time(out: &mut Vec<u8>, t: Option<NaiveTime>, raw: i64) -> io::Result<()> {
        match t {
            Some(t) => write!(out, "\"{}\"", t.format("%H:%M:%S%.f")),
            None => write!(out, "{raw}"),
        }
    }
    fn utc(out: &mut Vec<u8>, t: Option<DateTime<chrono::Utc>>, raw: i64) -> io::Result<()> {
        match t {
            Some(t) => write!(out, "\"{}\"", t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            None => write!(out, "{raw}"),
        }
    }
    fn local(out: &mut Vec<u8>, t: Option<DateTime<chrono::Utc>>, raw: i64) -> io::Result<()> {
        match t {
            Some(t) => write!(out, "\"{}\"", t.naive_utc().format("%Y-%m-%dT%H:%M:%S%.f")),
            None => write!(out, "{raw}"),
        }
    }
}

/// A time of day from a count of `per_second` units since midnight; none when out of range.
fn time_of_day(n: i64, per_second: i64) -> Option<chrono::NaiveTime> {
    let seconds = u32::try_from(n.div_euclid(per_second)).ok()?;
    let nanos = u32::try_from(n.rem_euclid(per_second) * (1_000_000_000 / per_second)).ok()?;
    if n < 0 {
        return None;
    }
    chrono::NaiveTime::from_num_seconds_from_midnight_opt(seconds, nanos)
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::template::{Column, FieldType, TimeFormat, UnknownFields};
    use serde_json::json;

    const SCHEMA: &str = r#"{
        "type": "record", "name": "order", "fields": [
            {"name": "id", "type": "long"},
            {"name": "name", "type": ["null", "string"], "default": null},
            {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
            {"name": "ratio", "type": "double"},
            {"name": "ok", "type": "boolean"},
            {"name": "day", "type": {"type": "int", "logicalType": "date"}},
            {"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
            {"name": "seen", "type": {"type": "long", "logicalType": "local-timestamp-millis"}},
            {"name": "blob", "type": "bytes"},
            {"name": "colour", "type": {"type": "enum", "name": "colour", "symbols": ["red", "blue"]}},
            {"name": "tags", "type": {"type": "array", "items": "string"}},
            {"name": "small", "type": "int"}
        ]}"#;

    /// An Avro file of `rows` orders, with the given codec, `per_block` records a block.
    pub(crate) fn avro_file(rows: i64, codec: apache_avro::Codec, per_block: usize) -> Vec<u8> {
        let schema = Schema::parse_str(SCHEMA).unwrap();
        let mut writer = apache_avro::Writer::builder()
            .schema(&schema)
            .writer(Vec::new())
            .codec(codec)
            .block_size(per_block.max(1) * 16)
            .build()
            .unwrap();
        for i in 1..=rows {
            let price = apache_avro::Decimal::from((i * 10 - 250).to_be_bytes().to_vec());
            writer
                .append_value(Avro::Record(vec![
                    ("id".into(), Avro::Long(i)),
                    (
                        "name".into(),
                        if i % 2 == 0 {
                            Avro::Union(0, Box::new(Avro::Null))
                        } else {
                            Avro::Union(1, Box::new(Avro::String(format!("tea {i}"))))
                        },
                    ),
                    ("price".into(), Avro::Decimal(price)),
                    ("ratio".into(), Avro::Double(i as f64 / 4.0)),
                    ("ok".into(), Avro::Boolean(i % 3 == 0)),
                    ("day".into(), Avro::Date(19_000 + i as i32)),
                    ("at".into(), Avro::TimestampMicros(1_700_000_000_000_000 + i)),
                    ("seen".into(), Avro::LocalTimestampMillis(1_700_000_000_000)),
                    ("blob".into(), Avro::Bytes(vec![0, 1, 2, 255])),
                    ("colour".into(), Avro::Enum(1, "blue".into())),
                    ("tags".into(), Avro::Array(vec![Avro::String("a".into())])),
                    ("small".into(), Avro::Int(-7)),
                ]))
                .unwrap();
        }
        writer.into_inner().unwrap()
    }

    fn spec() -> FormatSpec {
        FormatSpec {
            kind: FormatKind::Avro,
            ..FormatSpec::default()
        }
    }

    #[test]
    fn every_type_is_written_exactly_and_checked_by_name() {
        let column = |n: &str| Column::Name(n.into());
        let at = FieldType::Timestamp {
            format: TimeFormat::Iso,
            zone: chrono_tz::UTC,
        };
        let template = id_template(
            "id",
            UnknownFields::Keep,
            vec![
                field("price", column("price"), FieldType::Decimal(None), true),
                field("at", column("at"), at.clone(), true),
                field("seen", column("seen"), at, true),
                field("wide", column("small"), FieldType::Decimal(None), true),
            ],
        );
        for codec in [
            apache_avro::Codec::Null,
            apache_avro::Codec::Deflate(Default::default()),
            apache_avro::Codec::Snappy,
            apache_avro::Codec::Zstandard(Default::default()),
            apache_avro::Codec::Bzip2(Default::default()),
        ] {
            let bytes = avro_file(3, codec, 1);
            let (result, sink) = parse_with(&bytes, "k/a.avro", &spec(), &template);
            assert_eq!(result.unwrap().rows, 3, "{codec:?}");
            assert!(sink.errors.is_empty(), "{:?}", sink.errors);
            let want = json!({
                "id": 2, "price": "-2.30", "at": "2023-11-14T22:13:20.000002Z",
                "seen": "2023-11-14T22:13:20Z", "wide": "-7",
                "name": null, "ratio": 0.5, "ok": false, "day": "2022-01-10",
                "blob": "AAEC/w==", "colour": "blue", "tags": ["a"],
                "_source_key": "k/a.avro", "_source_version": "v", "_source_line": 2
            });
            assert_eq!(sink.rows[1], want, "{codec:?}");
            assert_eq!(sink.rows[0]["name"], json!("tea 1"));
            let schema = sink.schema.unwrap();
            assert_eq!(schema.columns.len(), 12);
            assert_eq!(schema.columns[1].declared, "[null,string]");
            assert!(schema.columns[1].nullable);
            assert_eq!(schema.columns[2].kind, ColumnKind::Decimal);
        }
    }

    #[test]
    fn a_field_of_the_wrong_type_rejects_the_file_before_any_row() {
        let template = id_template(
            "id",
            UnknownFields::Ignore,
            vec![field("ok", Column::Name("ok".into()), FieldType::Integer, true)],
        );
        let (result, sink) = parse_with(
            &avro_file(3, apache_avro::Codec::Null, 1),
            "a.avro",
            &spec(),
            &template,
        );
        let e = result.unwrap_err();
        assert!(
            e.to_string().starts_with(
                "column \"ok\" is boolean in the file, which cannot be read as the integer field \"ok\""
            ),
            "{e}"
        );
        assert!(sink.rows.is_empty());
    }

    #[test]
    fn a_file_that_is_not_avro_or_is_cut_short_is_rejected() {
        let template = id_template("id", UnknownFields::Ignore, vec![]);
        let whole = avro_file(50, apache_avro::Codec::Deflate(Default::default()), 5);
        for bytes in [
            &b"id\n1\n"[..],
            b"Obj\x01",
            b"",
            &whole[..whole.len() - 20],
            &whole[..40],
        ] {
            let (result, _) = parse_with(bytes, "a.avro", &spec(), &template);
            let e = result.unwrap_err();
            assert!(matches!(e, ParseError::Avro { .. }), "{e}");
            assert!(!e.is_transient());
        }
        // A record schema that is not a record.
        let schema = Schema::parse_str("\"long\"").unwrap();
        let mut writer = apache_avro::Writer::new(&schema, Vec::new()).unwrap();
        writer.append_value(Avro::Long(1)).unwrap();
        let bytes = writer.into_inner().unwrap();
        let (result, _) = parse_with(&bytes, "a.avro", &spec(), &template);
        assert!(
            result
                .unwrap_err()
                .to_string()
                .contains("its schema is long, not a record")
        );
    }

    /// Files fastavro wrote (the fuzz seeds: every codec, nulls, decimals, dates, UTC
    /// timestamps, arrays, enums, bytes, maps), read exactly.
    #[test]
    fn files_fastavro_wrote_are_read_exactly() {
        let template = id_template("id", UnknownFields::Keep, vec![]);
        for codec in ["null", "deflate", "snappy", "zstandard", "bzip2"] {
            let bytes = seed("avro", &format!("all-types-{codec}.avro"));
            let (result, sink) = parse_with(&bytes, "a.avro", &spec(), &template);
            assert_eq!(result.unwrap().rows, 3, "{codec}");
            assert!(sink.errors.is_empty(), "{codec}: {:?}", sink.errors);
            let want = json!({
                "id": 1, "price": "1.50", "name": "tea", "ratio": 0.5, "ok": true,
                "day": "2024-01-01", "at": "2024-01-01T12:00:00Z", "tags": ["a"],
                "colour": "red", "blob": "AP8=", "props": {"k": 1},
                "_source_key": "a.avro", "_source_version": "v", "_source_line": 1
            });
            assert_eq!(sink.rows[0], want, "{codec}");
            assert_eq!(sink.rows[1]["price"], json!(null), "{codec}");
            assert_eq!(sink.rows[2]["price"], json!("-0.01"), "{codec}");
            assert_eq!(
                sink.rows[2]["at"],
                json!("2099-12-31T23:59:59.999999Z"),
                "{codec}"
            );
            assert_eq!(sink.rows[2]["props"], json!({"x": -2, "y": 3}), "{codec}");
        }
    }

    /// Rows checked by worker threads while the calling thread decodes give exactly what one
    /// thread gives: the same rows, row errors, counts, and the same stop for a sample.
    #[test]
    fn the_parallel_check_gives_what_one_thread_gives() {
        use crate::formats::testing::one_thread_and_parallel_agree;
        let bytes = avro_file(30_000, apache_avro::Codec::Snappy, 500);
        // `name` is text ("tea 1") in odd rows, which an integer field refuses; null in even ones.
        let name = field("name", Column::Name("name".into()), FieldType::Integer, false);
        let template = id_template("id", UnknownFields::Keep, vec![name]);
        let run = |parallel: bool, sink: &mut dyn RowSink| {
            let provenance = Provenance {
                key: "k",
                version: "v",
            };
            let mut p = Provenanced::new(sink, provenance, &template);
            let result = super::parse(&bytes[..], parallel, &template, &mut p);
            assert!(matches!(result, Ok(()) | Err(Failure::Stopped)));
            p.stats
        };
        let stats = one_thread_and_parallel_agree(run, 20);
        assert_eq!((stats.rows, stats.bad_rows), (30_000, 15_000));
    }

    /// Making each field's JSON value directly changes nothing: every row's JSON text (key
    /// order included), every row error and the counts are those of the records written as
    /// JSON Lines by [`write_value`] and read by the JSON Lines path, for the files fastavro
    /// wrote with every type and codec, and for this module's own file.
    #[test]
    fn rows_are_exactly_those_of_the_json_lines_path() {
        let mut files: Vec<(String, Vec<u8>)> = ["null", "deflate", "snappy", "zstandard", "bzip2"]
            .iter()
            .map(|codec| {
                (
                    codec.to_string(),
                    seed("avro", &format!("all-types-{codec}.avro")),
                )
            })
            .collect();
        files.push(("own".to_string(), avro_file(3000, apache_avro::Codec::Null, 100)));
        let name = field("name", Column::Name("name".into()), FieldType::Integer, false);
        let templates = [
            Template {
                fields: Vec::new(),
                ..id_template("id", UnknownFields::Keep, Vec::new())
            },
            id_template("id", UnknownFields::Keep, vec![name.clone()]),
            id_template("id", UnknownFields::Ignore, vec![name]),
        ];
        let provenance = Provenance {
            key: "k",
            version: "v",
        };
        for (file, bytes) in &files {
            for template in &templates {
                let mut direct = Texts::default();
                let mut p = Provenanced::new(&mut direct, provenance, template);
                let a = super::parse(&bytes[..], false, template, &mut p).map(|()| p.stats);
                let reader = apache_avro::Reader::new(&bytes[..]).unwrap();
                let schema = reader.writer_schema().clone();
                let resolved = apache_avro::schema::ResolvedSchema::try_from(&schema).unwrap();
                let mut text = Vec::new();
                for record in reader {
                    write_value(&record.unwrap(), &schema, resolved.get_names(), &mut text, 0).unwrap();
                    text.push(b'\n');
                }
                let mut through_text = Texts::default();
                let mut p = Provenanced::new(&mut through_text, provenance, template);
                let b = super::super::jsonl::parse(&text[..], template, &mut p, false).map(|()| p.stats);
                match (a, b) {
                    (Ok(a), Ok(b)) => assert_eq!(a, b, "{file}"),
                    (a, b) => panic!("{file}: {:?} / {:?}", a.is_ok(), b.is_ok()),
                }
                assert_eq!(direct.rows, through_text.rows, "{file}");
                assert_eq!(direct.errors.len(), through_text.errors.len(), "{file}");
                for (d, t) in direct.errors.iter().zip(&through_text.errors) {
                    assert_eq!(
                        (d.line, &d.field, &d.reason),
                        (t.line, &t.field, &t.reason),
                        "{file}"
                    );
                }
                assert!(!direct.rows.is_empty() || !direct.errors.is_empty(), "{file}");
            }
        }
    }

    #[test]
    fn auto_reads_an_avro_key_as_avro() {
        assert_eq!(resolve_kind(FormatKind::Auto, "x/y.avro"), Some(FormatKind::Avro));
    }

    /// Files written byte by byte to claim what they do not hold (scripts/lib/hostile_typed.py):
    /// a block of 2^40 records, lengths of 2^63 - 1, a schema 10,000 levels deep. Each is
    /// rejected as not readable, never a panic, a stack overflow or a huge allocation.
    #[test]
    fn hostile_files_are_rejected() {
        let names = ["blocks-2e40", "overflow", "nested-10000", "zero-width"];
        hostile_seeds_are_rejected("avro", &names, &spec(), |e| matches!(e, ParseError::Avro { .. }));
        // 149 bytes claiming 2^40 records of `{"a": null}`: read on, they filled the spool.
        let template = id_template("id", UnknownFields::Keep, vec![]);
        let bytes = seed("avro", "hostile-zero-width.avro");
        let (result, _) = parse_with(&bytes, "a.avro", &spec(), &template);
        let e = result.unwrap_err().to_string();
        assert!(e.contains("its records (every field null) take no bytes"), "{e}");
    }
}

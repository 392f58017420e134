//! Data templates: the fields a file must contain, and the checking of one raw value against
//! one field.
//!
//! A template is built once from configuration (`config::validate`); checking a value is a pure
//! function of the field and the value. Where values come from (CSV columns, JSON keys) is the
//! business of [`crate::formats`]; this module only turns a raw value into the JSON text of
//! its typed value (appended to a reused buffer, so that checking a row allocates nothing per
//! cell) or a reason it cannot be one.

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde_json::Value;
use std::borrow::Cow;

/// A checked data template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// The table name rows are delivered as.
    pub table: String,
    pub unknown_fields: UnknownFields,
    pub max_bad_rows: BadRowLimit,
    pub fields: Vec<Field>,
}

/// What to do with a column or key no field claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownFields {
    /// Drop it.
    Ignore,
    /// A CSV file with such a column is rejected; a JSON row with such a key is a bad row.
    Reject,
    /// Deliver it under its own name, as found.
    Keep,
}

/// How many bad rows a file may have before it is rejected whole.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BadRowLimit {
    Count(u64),
    /// A share of the file's rows, between 0 and 1.
    Share(f64),
    /// A share, or a count when that allows more (`"1% or 5"`): small files are not rejected
    /// for a row or two, large ones still are for a share.
    ShareOrCount(f64, u64),
}

impl std::fmt::Display for BadRowLimit {
    /// As `max_bad_rows` is written: a count, or a percentage.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            BadRowLimit::Count(n) => write!(f, "{n}"),
            // Rounded so that 0.1 shows as 10%, not 10.000000000000002%.
            BadRowLimit::Share(share) => write!(f, "{}%", (share * 100.0 * 1e6).round() / 1e6),
            BadRowLimit::ShareOrCount(share, n) => {
                write!(f, "{}% or {n}", (share * 100.0 * 1e6).round() / 1e6)
            }
        }
    }
}

impl BadRowLimit {
    /// Whether `bad` bad rows out of `total` rows (good and bad) exceed the limit.
    pub fn exceeded(&self, bad: u64, total: u64) -> bool {
        total > 0 && bad as f64 > self.allowed(total)
    }

    /// How many bad rows a file of `total` rows may have.
    pub fn allowed(&self, total: u64) -> f64 {
        match *self {
            BadRowLimit::Count(n) => n as f64,
            BadRowLimit::Share(share) => share * total as f64,
            BadRowLimit::ShareOrCount(share, n) => (share * total as f64).max(n as f64),
        }
    }
}

/// One field of a template.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// The name in the delivered row.
    pub name: String,
    /// Where the value is found in the file.
    pub column: Column,
    pub kind: FieldType,
    pub required: bool,
    /// Allowed values, compared with the value's text.
    pub values: Option<Vec<String>>,
    /// Used when the value is missing or empty; checked like a value from the file.
    pub default: Option<String>,
    /// Texts that mean no value (`[format] null_values`, default `[""]`), compared exactly.
    pub null_values: Vec<String>,
    /// For a boolean field, the texts that mean true and false (`true_values` /
    /// `false_values`); none: the usual spellings (true/false, yes/no, 1/0, t/f, y/n).
    pub booleans: Option<(Vec<String>, Vec<String>)>,
}

/// Where a field's value is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Column {
    /// A header name (CSV with a header) or a key (JSON).
    Name(String),
    /// A 0-based column index (CSV without a header).
    Index(usize),
}

/// A field's type, with its parse format where it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldType {
    String,
    Integer,
    /// An exact decimal number, delivered as a JSON string of its digits; with a declared
    /// shape, with exactly its scale's digits after the point.
    Decimal(Option<DecimalShape>),
    Float,
    Boolean,
    Date(Option<String>),
    /// A point in time; `zone` is where a time written without an offset was read.
    Timestamp {
        format: TimeFormat,
        zone: Tz,
    },
    Json,
}

/// A decimal field's `precision` (digits in all, 1–38) and `scale` (digits after the point).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecimalShape {
    pub precision: u8,
    pub scale: u8,
}

impl DecimalShape {
    /// `d` with exactly `scale` digits after the point, or why it does not fit: more
    /// significant digits after the point than the scale (rounding would change the partner's
    /// number), or more digits in all than the precision.
    pub fn fit(self, d: Decimal) -> Result<Decimal, String> {
        let (precision, scale) = (u32::from(self.precision), u32::from(self.scale));
        let mut d = d.normalize();
        if d.scale() > scale {
            return Err(format!(
                "has more than {scale} digits after the point (scale = {scale}); rounding would change it"
            ));
        }
        d.rescale(scale);
        let digits = d.mantissa().unsigned_abs().checked_ilog10().map_or(1, |l| l + 1);
        if d.scale() != scale || digits > precision {
            return Err(format!(
                "has more than {precision} digits (precision = {precision}, scale = {scale})"
            ));
        }
        Ok(d)
    }

    /// Whether a decimal written as rust_decimal prints it ([`is_canonical_decimal`]) is
    /// already in this shape: exactly `scale` digits after the point, and few enough before it.
    fn holds_canonical(self, t: &str) -> bool {
        let digits = t.strip_prefix('-').unwrap_or(t);
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let int_digits = if int == "0" { 0 } else { int.len() };
        frac.len() == usize::from(self.scale) && int_digits + frac.len() <= usize::from(self.precision)
    }
}

/// How a timestamp is written in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeFormat {
    /// RFC 3339, or ISO 8601 without an offset (read in the field's zone).
    Iso,
    /// A strftime pattern; without an offset in it the time is read in the field's zone.
    Strftime(String),
    /// Unix seconds.
    Unix,
    /// Unix milliseconds.
    UnixMs,
}

impl FieldType {
    /// The names accepted for `type`, in the order the documentation lists them.
    pub const NAMES: &'static [&'static str] = &[
        "string",
        "integer",
        "decimal",
        "float",
        "boolean",
        "date",
        "timestamp",
        "json",
    ];
}

/// A value as a file gives it, before it is checked.
#[derive(Debug, Clone, Copy)]
pub enum RawValue<'a> {
    /// The column or key is absent, or JSON `null`.
    Missing,
    /// Text from a CSV cell (an empty cell counts as missing).
    Text(&'a str),
    /// A JSON value.
    Json(&'a Value),
}

/// One field of one row that failed its template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

/// The checked values of one row as the text of a JSON object, reused from row to row: the
/// template's names are rendered as JSON keys once, and each value is written as JSON text
/// straight from the raw value, so that checking a row allocates nothing per cell.
#[derive(Debug, Clone)]
pub struct RowBuffer {
    /// `"name":` for every field, in field order.
    keys: Vec<Vec<u8>>,
    /// `{"a":1,"b":"x",` after [`Template::check_row`]; the caller closes the object.
    pub text: Vec<u8>,
    /// Where each field's value is in `text`, in field order (for a CSV record of the row).
    pub spans: Vec<std::ops::Range<usize>>,
}

impl Template {
    /// The fields' names, in order.
    pub fn field_names(&self) -> Vec<String> {
        self.fields.iter().map(|f| f.name.clone()).collect()
    }

    /// A buffer for checking this template's rows.
    pub fn row_buffer(&self) -> RowBuffer {
        let keys: Vec<Vec<u8>> = self
            .fields
            .iter()
            .map(|f| {
                let mut key = Vec::with_capacity(f.name.len() + 3);
                write_json_str(&mut key, &f.name);
                key.push(b':');
                key
            })
            .collect();
        RowBuffer {
            spans: Vec::with_capacity(keys.len()),
            keys,
            text: Vec::with_capacity(1024),
        }
    }

    /// Checks every field of one row. `get` finds a field's raw value from its index and field.
    /// The row is written into `buf.text` as an unclosed JSON object (`{"a":1,`, in field
    /// order); the error is every field that failed, and then the text is meaningless.
    pub fn check_row<'a>(
        &self,
        mut get: impl FnMut(usize, &Field) -> RawValue<'a>,
        buf: &mut RowBuffer,
    ) -> Result<(), Vec<FieldError>> {
        let out = &mut buf.text;
        out.clear();
        buf.spans.clear();
        out.push(b'{');
        let mut errors = Vec::new();
        for ((i, field), key) in self.fields.iter().enumerate().zip(&buf.keys) {
            out.extend_from_slice(key);
            let start = out.len();
            match field.check_into(get(i, field), out) {
                Ok(()) => {
                    buf.spans.push(start..out.len());
                    out.push(b',');
                }
                Err(reason) => errors.push(FieldError {
                    field: field.name.clone(),
                    reason,
                }),
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

impl Field {
    /// Checks one raw value: missing values take the default or fail when required; present
    /// values are coerced to the field's type and checked against the allowed values.
    pub fn check(&self, raw: RawValue<'_>) -> Result<Value, String> {
        let mut out = Vec::new();
        self.check_into(raw, &mut out)?;
        serde_json::from_slice(&out).map_err(|e| format!("internal error: checked value is not JSON: {e}"))
    }

    /// [`Field::check`], appending the value's JSON text to `out` instead of building a
    /// `Value`. On an error, what was appended is meaningless.
    pub fn check_into(&self, raw: RawValue<'_>, out: &mut Vec<u8>) -> Result<(), String> {
        let raw = match raw {
            RawValue::Text(t) if self.null_values.iter().any(|n| n == t) => RawValue::Missing,
            RawValue::Json(Value::Null) => RawValue::Missing,
            other => other,
        };
        let bool_value;
        let raw = match (&self.booleans, raw) {
            (Some((yes, no)), RawValue::Text(t)) if self.kind == FieldType::Boolean => {
                bool_value = if yes.iter().any(|y| y == t) {
                    Value::Bool(true)
                } else if no.iter().any(|n| n == t) {
                    Value::Bool(false)
                } else {
                    return Err(format!(
                        "{:?} is not one of true_values or false_values",
                        crate::text::excerpt(t)
                    ));
                };
                RawValue::Json(&bool_value)
            }
            (_, other) => other,
        };
        let start = out.len();
        match raw {
            RawValue::Missing => match &self.default {
                Some(d) => {
                    coerce(&self.kind, RawValue::Text(d), out).map_err(|e| format!("default {d:?}: {e}"))?
                }
                None if self.required => return Err("required value is missing".to_string()),
                None => {
                    out.extend_from_slice(b"null");
                    return Ok(());
                }
            },
            present => coerce(&self.kind, present, out)?,
        }
        if let Some(allowed) = &self.values {
            allowed_value(allowed, &out[start..])?;
        }
        Ok(())
    }
}

/// Checks a value's JSON text against the allowed values, which are compared with the text of
/// a string and with the JSON of anything else. A string without escapes is compared without
/// decoding it.
fn allowed_value(allowed: &[String], json: &[u8]) -> Result<(), String> {
    // The common case, a string without escapes, is compared as bytes, without a copy.
    if let [b'"', inner @ .., b'"'] = json
        && !inner.contains(&b'\\')
        && allowed.iter().any(|a| a.as_bytes() == inner)
    {
        return Ok(());
    }
    let text: Cow<str> = match json {
        [b'"', inner @ .., b'"'] if !inner.contains(&b'\\') => String::from_utf8_lossy(inner),
        [b'"', ..] => Cow::Owned(serde_json::from_slice::<String>(json).map_err(|e| e.to_string())?),
        other => String::from_utf8_lossy(other),
    };
    if allowed.iter().any(|a| *a == text) {
        return Ok(());
    }
    Err(format!(
        "{:?} is not one of the allowed values {}",
        crate::text::excerpt(&text),
        allowed.join(", ")
    ))
}

/// Appends `s` as a JSON string. Text with nothing to escape (the common case) is copied as
/// it is; the rest is escaped by serde_json, so the output is the same either way.
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// Appends any JSON value.
pub fn write_json_value(out: &mut Vec<u8>, value: &Value) {
    // Writing a Value into a Vec cannot fail: its map keys are strings.
    let _ = serde_json::to_writer(&mut *out, value);
}

fn write_int(out: &mut Vec<u8>, n: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn write_float(out: &mut Vec<u8>, f: f64) {
    // serde_json writes an f64 as it writes a `Value::Number` made from it.
    let _ = serde_json::to_writer(&mut *out, &f);
}

/// Appends a UTC time as an RFC 3339 JSON string, as chrono's
/// `to_rfc3339_opts(SecondsFormat::AutoSi, true)` writes it (a unit test holds them equal),
/// without its general-purpose formatter: this runs once per timestamp cell.
/// Appends an instant as a timestamp field delivers it: a JSON string of RFC 3339 in UTC
/// (`Z`), with as many fractional digits as it has.
pub(crate) fn write_timestamp(out: &mut Vec<u8>, t: DateTime<Utc>) {
    use chrono::{Datelike, Timelike};
    let year = t.year();
    let nanos = t.nanosecond();
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        write_json_str(out, &t.to_rfc3339_opts(SecondsFormat::AutoSi, true));
        return;
    }
    out.push(b'"');
    push_digits(out, year as u32, 4);
    out.push(b'-');
    push_digits(out, t.month(), 2);
    out.push(b'-');
    push_digits(out, t.day(), 2);
    out.push(b'T');
    push_digits(out, t.hour(), 2);
    out.push(b':');
    push_digits(out, t.minute(), 2);
    out.push(b':');
    push_digits(out, t.second(), 2);
    if nanos != 0 {
        out.push(b'.');
        if nanos.is_multiple_of(1_000_000) {
            push_digits(out, nanos / 1_000_000, 3);
        } else if nanos.is_multiple_of(1_000) {
            push_digits(out, nanos / 1_000, 6);
        } else {
            push_digits(out, nanos, 9);
        }
    }
    out.extend_from_slice(b"Z\"");
}

/// Appends text known to need no escaping as a JSON string.
fn push_quoted(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
}

/// Whether `t` is a decimal exactly as rust_decimal prints the value it parses to: an
/// optional `-`, an integer part without leading zeros, an optional fraction, at most 28
/// digits, and not a negative zero. Most files write decimals this way, and recognising them
/// is much cheaper than parsing and printing them (a unit test holds the two equal).
fn is_canonical_decimal(t: &str) -> bool {
    let digits = t.strip_prefix('-').unwrap_or(t);
    let (int, frac) = match digits.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (digits, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let int_ok = all_digits(int) && (int == "0" || !int.starts_with('0'));
    let frac_ok = frac.is_none_or(all_digits);
    let count = int.len() + frac.map_or(0, str::len);
    let negative_zero = t.starts_with('-') && digits.bytes().all(|b| b == b'0' || b == b'.');
    int_ok && frac_ok && count <= 28 && !negative_zero
}

/// Whether `t` is a valid UTC time written exactly as [`write_timestamp`] writes it without
/// fractions: `YYYY-MM-DDTHH:MM:SSZ`.
fn is_canonical_utc(t: &str) -> bool {
    let b = t.as_bytes();
    if b.len() != 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return false;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = &b[range];
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| part.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0')))
    };
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        number(0..4),
        number(5..7),
        number(8..10),
        number(11..13),
        number(14..16),
        number(17..19),
    ) else {
        return false;
    };
    // A leap second (:60) takes the general path.
    hour < 24 && minute < 60 && second < 60 && NaiveDate::from_ymd_opt(year as i32, month, day).is_some()
}

/// Appends `n` in exactly `width` decimal digits, zero-padded.
fn push_digits(out: &mut Vec<u8>, mut n: u32, width: usize) {
    let mut buf = [b'0'; 9];
    for slot in buf[..width].iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&buf[..width]);
}

fn shown(raw: RawValue<'_>) -> String {
    match raw {
        RawValue::Missing => "nothing".to_string(),
        // A reason names at most an excerpt of what the partner sent (docs/design.md §4.5).
        RawValue::Text(t) => format!("{:?}", crate::text::excerpt(t)),
        RawValue::Json(v) => crate::text::excerpt(&v.to_string()),
    }
}

/// Coerces a present value to a type, appending its JSON text to `out`.
fn coerce(kind: &FieldType, raw: RawValue<'_>, out: &mut Vec<u8>) -> Result<(), String> {
    use std::io::Write;
    let fail = |what: &str| format!("{} is not {what}", shown(raw));
    match kind {
        FieldType::String => match raw {
            RawValue::Text(t) => write_json_str(out, t),
            RawValue::Json(Value::String(s)) => write_json_str(out, s),
            RawValue::Json(v @ (Value::Number(_) | Value::Bool(_))) => write_json_str(out, &v.to_string()),
            _ => return Err(fail("a string")),
        },
        FieldType::Integer => {
            let n = number(raw, serde_json::Number::as_i64);
            write_int(out, n.ok_or_else(|| fail("an integer"))?);
        }
        FieldType::Decimal(shape) => {
            let text = text_of(raw).map(str::trim);
            if let Some(t) = text
                && is_canonical_decimal(t)
                && shape.is_none_or(|s| s.holds_canonical(t))
            {
                // Already written as the decimal would print itself: no need to parse it.
                push_quoted(out, t);
                return Ok(());
            }
            let parsed = match raw {
                // serde_json prints a float with the shortest digits that read back as the
                // same number, which are the digits the file had for any decimal a float can
                // tell apart (up to 15 significant digits).
                RawValue::Json(Value::Number(n)) => parse_decimal(&n.to_string()),
                _ => text.and_then(parse_decimal),
            };
            let d = parsed.ok_or_else(|| fail("a decimal number (at most 28 digits)"))?;
            let d = match shape {
                None => d,
                Some(s) => s.fit(d).map_err(|why| format!("{} {why}", shown(raw)))?,
            };
            // A decimal's digits, sign and point need no escaping.
            let _ = write!(out, "\"{d}\"");
        }
        FieldType::Float => {
            let f = number(raw, serde_json::Number::as_f64);
            write_float(
                out,
                f.filter(|f| f.is_finite())
                    .ok_or_else(|| fail("a finite number"))?,
            );
        }
        FieldType::Boolean => {
            let b = match raw {
                RawValue::Json(Value::Bool(b)) => Some(*b),
                RawValue::Text(t) => parse_bool(t),
                RawValue::Json(Value::String(t)) => parse_bool(t),
                RawValue::Json(Value::Number(n)) => match n.as_u64() {
                    Some(0) => Some(false),
                    Some(1) => Some(true),
                    _ => None,
                },
                _ => None,
            };
            let b = b.ok_or_else(|| fail("a boolean (true/false, 1/0, yes/no, t/f)"))?;
            out.extend_from_slice(if b { b"true" } else { b"false" });
        }
        FieldType::Date(format) => {
            let text = text_of(raw).ok_or_else(|| fail("a date"))?;
            let pattern = format.as_deref().unwrap_or("%Y-%m-%d");
            let d = NaiveDate::parse_from_str(text.trim(), pattern)
                .map_err(|_| fail(&format!("a date in the format {pattern}")))?;
            let _ = write!(out, "\"{}\"", d.format("%Y-%m-%d"));
        }
        FieldType::Timestamp { format, zone } => {
            if *format == TimeFormat::Iso
                && let Some(t) = text_of(raw).map(str::trim)
                && is_canonical_utc(t)
            {
                // Already the RFC 3339 text it would be written as.
                push_quoted(out, t);
                return Ok(());
            }
            write_timestamp(out, parse_timestamp(raw, format, *zone)?)
        }
        FieldType::Json => match raw {
            RawValue::Json(v) => write_json_value(out, v),
            RawValue::Text(t) => {
                let v: Value =
                    serde_json::from_str(t).map_err(|e| format!("{} is not JSON: {e}", shown(raw)))?;
                write_json_value(out, &v);
            }
            RawValue::Missing => return Err(fail("JSON")),
        },
    }
    Ok(())
}

/// A number from a JSON number (read by `from_json`), or parsed from text or a JSON string.
fn number<T: std::str::FromStr>(
    raw: RawValue<'_>,
    from_json: impl Fn(&serde_json::Number) -> Option<T>,
) -> Option<T> {
    match raw {
        RawValue::Json(Value::Number(n)) => from_json(n),
        other => text_of(other).and_then(|t| t.trim().parse().ok()),
    }
}

fn text_of<'a>(raw: RawValue<'a>) -> Option<&'a str> {
    match raw {
        RawValue::Text(t) => Some(t),
        RawValue::Json(Value::String(s)) => Some(s),
        _ => None,
    }
}

fn parse_bool(t: &str) -> Option<bool> {
    let t = t.trim();
    let any = |words: &[&str]| words.iter().any(|w| w.eq_ignore_ascii_case(t));
    if any(&["true", "1", "yes", "t", "y"]) {
        Some(true)
    } else if any(&["false", "0", "no", "f", "n"]) {
        Some(false)
    } else {
        None
    }
}

/// Parses an exact decimal: digits with an optional sign, point and exponent. The scale is
/// kept (`19.90` stays `19.90`); nothing is rounded, so more digits than a 96-bit mantissa
/// holds is an error rather than a different number.
fn parse_decimal(t: &str) -> Option<Decimal> {
    let plain = t.strip_prefix('+').unwrap_or(t);
    if plain.contains(['e', 'E']) {
        return Decimal::from_scientific(plain).ok();
    }
    // `from_str_exact` refuses what it would have to round, but also accepts `_` separators,
    // which no data file means.
    if plain.contains('_') || plain.is_empty() {
        return None;
    }
    Decimal::from_str_exact(plain).ok()
}

/// Reads a time written without an offset as local time in `zone`. A time that happens twice
/// (when clocks go back) is taken at its first occurrence; one that never happens (when clocks
/// go forward) is an error.
fn in_zone(local: NaiveDateTime, zone: Tz, raw: RawValue<'_>) -> Result<DateTime<Utc>, String> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(t) => Ok(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, _) => Ok(first.with_timezone(&Utc)),
        LocalResult::None => Err(format!(
            "{} does not exist in {zone}: clocks skip it when daylight saving time starts",
            shown(raw)
        )),
    }
}

fn parse_timestamp(raw: RawValue<'_>, format: &TimeFormat, zone: Tz) -> Result<DateTime<Utc>, String> {
    let fail = |what: &str| format!("{} is not {what}", shown(raw));
    match format {
        TimeFormat::Unix | TimeFormat::UnixMs => {
            let n = number(raw, serde_json::Number::as_i64);
            let parsed = match (n, format) {
                (Some(s), TimeFormat::Unix) => Utc.timestamp_opt(s, 0).single(),
                (Some(ms), _) => Utc.timestamp_millis_opt(ms).single(),
                (None, _) => None,
            };
            parsed.ok_or_else(|| fail("a Unix timestamp"))
        }
        TimeFormat::Iso => {
            let text = text_of(raw).ok_or_else(|| fail("a timestamp"))?.trim();
            if let Ok(t) = DateTime::parse_from_rfc3339(text) {
                return Ok(t.with_timezone(&Utc));
            }
            for pattern in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
                if let Ok(t) = NaiveDateTime::parse_from_str(text, pattern) {
                    return in_zone(t, zone, raw);
                }
            }
            Err(fail("an RFC 3339 / ISO 8601 timestamp"))
        }
        TimeFormat::Strftime(pattern) => {
            let text = text_of(raw).ok_or_else(|| fail("a timestamp"))?.trim();
            if let Ok(t) = DateTime::parse_from_str(text, pattern) {
                return Ok(t.with_timezone(&Utc));
            }
            match NaiveDateTime::parse_from_str(text, pattern) {
                Ok(t) => in_zone(t, zone, raw),
                Err(_) => Err(fail(&format!("a timestamp in the format {pattern}"))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_row_limits_with_their_arithmetic() {
        // (limit, bad, total, exceeded, shown)
        let cases = [
            (BadRowLimit::Count(0), 1, 10, true, "0"),
            (BadRowLimit::Count(2), 2, 10, false, "2"),
            (BadRowLimit::Share(0.1), 1, 10, false, "10%"),
            (BadRowLimit::Share(0.1), 2, 10, true, "10%"),
            (BadRowLimit::Share(0.01), 1, 8, true, "1%"),
            (BadRowLimit::ShareOrCount(0.01, 5), 1, 8, false, "1% or 5"),
            (BadRowLimit::ShareOrCount(0.01, 5), 6, 8, true, "1% or 5"),
            (
                BadRowLimit::ShareOrCount(0.01, 5),
                9_000,
                1_000_000,
                false,
                "1% or 5",
            ),
            (
                BadRowLimit::ShareOrCount(0.01, 5),
                10_001,
                1_000_000,
                true,
                "1% or 5",
            ),
            (BadRowLimit::ShareOrCount(0.005, 0), 0, 0, false, "0.5% or 0"),
        ];
        for (limit, bad, total, exceeded, shown) in cases {
            assert_eq!(limit.exceeded(bad, total), exceeded, "{limit} {bad} of {total}");
            assert_eq!(limit.to_string(), shown);
        }
    }
    use serde_json::json;

    fn field(kind: FieldType) -> Field {
        Field {
            name: "f".into(),
            column: Column::Name("f".into()),
            kind,
            required: false,
            values: None,
            default: None,
            null_values: vec![String::new()],
            booleans: None,
        }
    }

    #[test]
    fn coercion_table() {
        use FieldType as T;
        let at = |format: TimeFormat, zone: Tz| T::Timestamp { format, zone };
        let ts = || at(TimeFormat::Iso, Tz::UTC);
        let dec = |precision, scale| T::Decimal(Some(DecimalShape { precision, scale }));
        let berlin = chrono_tz::Europe::Berlin;
        let j = |v: &'static Value| RawValue::Json(v);
        let n42 = Box::leak(Box::new(json!(42)));
        let f15 = Box::leak(Box::new(json!(1.5)));
        let f1999 = Box::leak(Box::new(json!(19.99)));
        let tru = Box::leak(Box::new(json!(true)));
        let obj = Box::leak(Box::new(json!({"a": 1})));
        let cases: Vec<(FieldType, RawValue<'static>, Result<Value, &str>)> = vec![
            (T::String, RawValue::Text("abc"), Ok(json!("abc"))),
            (T::String, j(n42), Ok(json!("42"))),
            (T::String, j(obj), Err("{\"a\":1} is not a string")),
            (T::Integer, RawValue::Text(" 12 "), Ok(json!(12))),
            (
                T::Integer,
                RawValue::Text("1.5"),
                Err("\"1.5\" is not an integer"),
            ),
            (T::Integer, j(n42), Ok(json!(42))),
            (T::Integer, j(f15), Err("1.5 is not an integer")),
            (
                T::Integer,
                RawValue::Text("99999999999999999999"),
                Err("\"99999999999999999999\" is not an integer"),
            ),
            (T::Float, RawValue::Text("1.5"), Ok(json!(1.5))),
            (
                T::Float,
                RawValue::Text("NaN"),
                Err("\"NaN\" is not a finite number"),
            ),
            (T::Float, j(n42), Ok(json!(42.0))),
            (T::Boolean, RawValue::Text("Yes"), Ok(json!(true))),
            (T::Boolean, RawValue::Text("f"), Ok(json!(false))),
            (T::Boolean, RawValue::Text("0"), Ok(json!(false))),
            (T::Boolean, j(tru), Ok(json!(true))),
            (
                T::Boolean,
                RawValue::Text("maybe"),
                Err("\"maybe\" is not a boolean (true/false, 1/0, yes/no, t/f)"),
            ),
            (
                T::Date(None),
                RawValue::Text("2026-02-28"),
                Ok(json!("2026-02-28")),
            ),
            (
                T::Date(Some("%d/%m/%Y".into())),
                RawValue::Text("28/02/2026"),
                Ok(json!("2026-02-28")),
            ),
            (
                T::Date(None),
                RawValue::Text("2026-02-30"),
                Err("\"2026-02-30\" is not a date in the format %Y-%m-%d"),
            ),
            (
                ts(),
                RawValue::Text("2026-01-02T03:04:05Z"),
                Ok(json!("2026-01-02T03:04:05Z")),
            ),
            (
                ts(),
                RawValue::Text("2026-01-02T03:04:05+02:00"),
                Ok(json!("2026-01-02T01:04:05Z")),
            ),
            (
                ts(),
                RawValue::Text("2026-01-02 03:04:05"),
                Ok(json!("2026-01-02T03:04:05Z")),
            ),
            (
                ts(),
                RawValue::Text("yesterday"),
                Err("\"yesterday\" is not an RFC 3339 / ISO 8601 timestamp"),
            ),
            (
                at(TimeFormat::Unix, berlin),
                RawValue::Text("0"),
                Ok(json!("1970-01-01T00:00:00Z")),
            ),
            (
                at(TimeFormat::UnixMs, Tz::UTC),
                RawValue::Text("1500"),
                Ok(json!("1970-01-01T00:00:01.500Z")),
            ),
            (
                at(TimeFormat::Strftime("%d/%m/%Y %H:%M".into()), Tz::UTC),
                RawValue::Text("02/01/2026 03:04"),
                Ok(json!("2026-01-02T03:04:00Z")),
            ),
            // Without an offset, the time is read in the field's zone: winter, summer, the hour
            // that happens twice (first occurrence) and the hour that never happens.
            (
                at(TimeFormat::Iso, berlin),
                RawValue::Text("2026-01-02T03:04:05"),
                Ok(json!("2026-01-02T02:04:05Z")),
            ),
            (
                at(TimeFormat::Strftime("%d/%m/%Y %H:%M".into()), berlin),
                RawValue::Text("02/07/2026 03:04"),
                Ok(json!("2026-07-02T01:04:00Z")),
            ),
            (
                at(TimeFormat::Iso, berlin),
                RawValue::Text("2026-10-25 02:30:00"),
                Ok(json!("2026-10-25T00:30:00Z")),
            ),
            (
                at(TimeFormat::Iso, berlin),
                RawValue::Text("2026-03-29 02:30:00"),
                Err(
                    "\"2026-03-29 02:30:00\" does not exist in Europe/Berlin: clocks skip it when daylight saving time starts",
                ),
            ),
            // An offset in the value wins over the zone.
            (
                at(TimeFormat::Iso, berlin),
                RawValue::Text("2026-01-02T03:04:05Z"),
                Ok(json!("2026-01-02T03:04:05Z")),
            ),
            (T::Decimal(None), RawValue::Text("19.99"), Ok(json!("19.99"))),
            (T::Decimal(None), RawValue::Text(" -0.50 "), Ok(json!("-0.50"))),
            (T::Decimal(None), RawValue::Text("+3"), Ok(json!("3"))),
            (T::Decimal(None), RawValue::Text("1.5e3"), Ok(json!("1500"))),
            (T::Decimal(None), j(f1999), Ok(json!("19.99"))),
            // A declared shape: exactly `scale` digits after the point, trailing zeros added
            // or dropped; a digit more after the point, or beyond the precision, is refused.
            (dec(6, 2), RawValue::Text("19.99"), Ok(json!("19.99"))),
            (dec(6, 2), RawValue::Text("19.9"), Ok(json!("19.90"))),
            (dec(6, 2), RawValue::Text("7"), Ok(json!("7.00"))),
            (dec(6, 2), RawValue::Text("-0.5"), Ok(json!("-0.50"))),
            (dec(6, 2), RawValue::Text("19.9900"), Ok(json!("19.99"))),
            (dec(6, 2), RawValue::Text("1.5e3"), Ok(json!("1500.00"))),
            (dec(6, 2), RawValue::Text("9999.99"), Ok(json!("9999.99"))),
            (dec(6, 0), RawValue::Text("123456"), Ok(json!("123456"))),
            (dec(6, 2), j(f1999), Ok(json!("19.99"))),
            (
                dec(6, 2),
                RawValue::Text("19.999"),
                Err(
                    "\"19.999\" has more than 2 digits after the point (scale = 2); rounding would change it",
                ),
            ),
            (
                dec(6, 2),
                RawValue::Text("10000.00"),
                Err("\"10000.00\" has more than 6 digits (precision = 6, scale = 2)"),
            ),
            (
                dec(6, 2),
                RawValue::Text("-10000"),
                Err("\"-10000\" has more than 6 digits (precision = 6, scale = 2)"),
            ),
            (
                T::Decimal(None),
                RawValue::Text("123456789012345678901234567890.5"),
                Err("\"123456789012345678901234567890.5\" is not a decimal number (at most 28 digits)"),
            ),
            (
                T::Decimal(None),
                RawValue::Text("1_000"),
                Err("\"1_000\" is not a decimal number (at most 28 digits)"),
            ),
            (
                T::Decimal(None),
                RawValue::Text("12,5"),
                Err("\"12,5\" is not a decimal number (at most 28 digits)"),
            ),
            (T::Json, RawValue::Text("[1,2]"), Ok(json!([1, 2]))),
            (T::Json, j(obj), Ok(json!({"a": 1}))),
            (
                T::Json,
                RawValue::Text("{"),
                Err("\"{\" is not JSON: EOF while parsing an object at line 1 column 1"),
            ),
        ];
        for (kind, raw, want) in cases {
            let got = field(kind.clone()).check(raw);
            assert_eq!(got, want.map_err(str::to_string), "{kind:?} {raw:?}");
        }
    }

    #[test]
    fn missing_required_default_and_values() {
        let mut f = field(FieldType::Integer);
        assert_eq!(f.check(RawValue::Text("")), Ok(Value::Null));
        f.required = true;
        assert_eq!(
            f.check(RawValue::Missing),
            Err("required value is missing".into())
        );
        assert_eq!(
            f.check(RawValue::Json(&Value::Null)),
            Err("required value is missing".into())
        );
        f.default = Some("7".into());
        assert_eq!(f.check(RawValue::Text("")), Ok(json!(7)));
        f.values = Some(vec!["7".into(), "8".into()]);
        assert_eq!(f.check(RawValue::Text("8")), Ok(json!(8)));
        assert_eq!(
            f.check(RawValue::Text("9")),
            Err("\"9\" is not one of the allowed values 7, 8".into())
        );
    }

    #[test]
    fn timestamps_are_written_as_chrono_writes_them() {
        let cases = [
            "2026-02-10T20:59:01Z",
            "2026-02-10T20:59:01.5Z",
            "2026-02-10T20:59:01.123Z",
            "2026-02-10T20:59:01.000123Z",
            "2026-02-10T20:59:01.000000007Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999Z",
            "1969-12-31T23:59:59.25+02:00",
        ];
        for text in cases {
            let t = DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc);
            let mut out = Vec::new();
            write_timestamp(&mut out, t);
            let want = serde_json::to_string(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true)).unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), want, "{text}");
        }
        // Outside four-digit years chrono's own writer is used.
        let far = Utc.with_ymd_and_hms(12026, 1, 1, 0, 0, 0).unwrap();
        let mut out = Vec::new();
        write_timestamp(&mut out, far);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            serde_json::to_string(&far.to_rfc3339_opts(SecondsFormat::AutoSi, true)).unwrap()
        );
    }

    #[test]
    fn canonical_decimals_and_times_are_recognised_exactly() {
        // (text, whether it is written as rust_decimal prints it)
        let decimals = [
            ("0", true),
            ("7", true),
            ("19.90", true),
            ("-3.5", true),
            ("0.001", true),
            ("-0.5", true),
            ("1234567890123456789012345678", true),
            ("00.5", false),
            ("-0", false),
            ("-0.00", false),
            ("+1", false),
            (".5", false),
            ("5.", false),
            ("1e3", false),
            ("1_000", false),
            ("12345678901234567890123456789", false),
            ("0.0000000000000000000000000001", false),
            ("", false),
            ("-", false),
            ("1.2.3", false),
        ];
        for (t, canonical) in decimals {
            assert_eq!(is_canonical_decimal(t), canonical, "{t}");
            if canonical {
                assert_eq!(parse_decimal(t).map(|d| d.to_string()).as_deref(), Some(t), "{t}");
            }
        }
        let times = [
            "2026-02-10T20:59:01Z",
            "2024-02-29T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-06-30T23:59:60Z",
            "2026-01-01t00:00:00z",
            "2026-01-01T00:00:00+00:00",
            "2026-01-01 00:00:00Z",
        ];
        let utc = FieldType::Timestamp {
            format: TimeFormat::Iso,
            zone: Tz::UTC,
        };
        for t in times {
            if is_canonical_utc(t) {
                let parsed = parse_timestamp(RawValue::Text(t), &TimeFormat::Iso, Tz::UTC).unwrap();
                assert_eq!(parsed.to_rfc3339_opts(SecondsFormat::AutoSi, true), t);
            }
            // Either way, checking gives what chrono gives.
            let mut fast = Vec::new();
            let result = coerce(&utc, RawValue::Text(t), &mut fast);
            match parse_timestamp(RawValue::Text(t), &TimeFormat::Iso, Tz::UTC) {
                Ok(want) => assert_eq!(
                    String::from_utf8(fast).unwrap(),
                    format!("\"{}\"", want.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
                    "{t}"
                ),
                Err(_) => assert!(result.is_err(), "{t}"),
            }
        }
        let canonical: Vec<&str> = times.iter().copied().filter(|t| is_canonical_utc(t)).collect();
        assert_eq!(canonical, ["2026-02-10T20:59:01Z", "2024-02-29T00:00:00Z"]);
    }

    #[test]
    fn a_row_is_written_as_json_text() {
        let mut t = Template {
            table: "t".into(),
            unknown_fields: UnknownFields::Ignore,
            max_bad_rows: BadRowLimit::Count(0),
            fields: vec![field(FieldType::Integer), field(FieldType::String)],
        };
        t.fields[1].name = "na\"me".into();
        t.fields[1].values = Some(vec!["a \"b\"".into(), "c".into()]);
        let mut buf = t.row_buffer();
        let texts = ["7", "a \"b\""];
        t.check_row(|i, _| RawValue::Text(texts[i]), &mut buf).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&buf.text),
            "{\"f\":7,\"na\\\"me\":\"a \\\"b\\\"\","
        );
        let texts = ["x", "d"];
        let errors = t
            .check_row(|i, _| RawValue::Text(texts[i]), &mut buf)
            .unwrap_err();
        let reasons: Vec<&str> = errors.iter().map(|e| e.reason.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "\"x\" is not an integer",
                "\"d\" is not one of the allowed values a \"b\", c"
            ]
        );
    }

    #[test]
    fn bad_row_limits() {
        assert!(!BadRowLimit::Count(0).exceeded(0, 10));
        assert!(BadRowLimit::Count(0).exceeded(1, 10));
        assert!(!BadRowLimit::Share(0.01).exceeded(1, 100));
        assert!(BadRowLimit::Share(0.01).exceeded(2, 100));
        assert!(!BadRowLimit::Share(0.01).exceeded(0, 0));
    }
}

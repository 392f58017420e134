//! Data templates: the fields a file must contain, and the checking of one raw value against
//! one field.
//!
//! A template is built once from configuration (`config::validate`); checking a value is a pure
//! function of the field and the value. Where values come from (CSV columns, JSON keys) is the
//! business of [`crate::format`]; this module only turns a raw value into a typed JSON value
//! or a reason it cannot be one.

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde_json::{Number, Value};

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
}

impl BadRowLimit {
    /// Whether `bad` bad rows out of `total` rows (good and bad) exceed the limit.
    pub fn exceeded(&self, bad: u64, total: u64) -> bool {
        match *self {
            BadRowLimit::Count(n) => bad > n,
            BadRowLimit::Share(share) => total > 0 && (bad as f64) > share * total as f64,
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
    /// An exact decimal number, delivered as a JSON string of its digits.
    Decimal,
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

impl Template {
    /// Checks every field of one row. `get` finds a field's raw value from its index and field.
    /// The values go into `values` in field order (it is cleared first, so one buffer serves
    /// every row); the error is every field that failed.
    pub fn check_row<'a>(
        &self,
        mut get: impl FnMut(usize, &Field) -> RawValue<'a>,
        values: &mut Vec<Value>,
    ) -> Result<(), Vec<FieldError>> {
        values.clear();
        let mut errors = Vec::new();
        for (i, field) in self.fields.iter().enumerate() {
            match field.check(get(i, field)) {
                Ok(v) => values.push(v),
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
        let raw = match raw {
            RawValue::Text("") => RawValue::Missing,
            RawValue::Json(Value::Null) => RawValue::Missing,
            other => other,
        };
        let value = match raw {
            RawValue::Missing => match &self.default {
                Some(d) => {
                    coerce(&self.kind, RawValue::Text(d)).map_err(|e| format!("default {d:?}: {e}"))?
                }
                None if self.required => return Err("required value is missing".to_string()),
                None => return Ok(Value::Null),
            },
            present => coerce(&self.kind, present)?,
        };
        if let Some(allowed) = &self.values {
            let text = match &value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if !allowed.contains(&text) {
                return Err(format!(
                    "{text:?} is not one of the allowed values {}",
                    allowed.join(", ")
                ));
            }
        }
        Ok(value)
    }
}

fn shown(raw: RawValue<'_>) -> String {
    match raw {
        RawValue::Missing => "nothing".to_string(),
        RawValue::Text(t) => format!("{t:?}"),
        RawValue::Json(v) => {
            let mut s = v.to_string();
            if s.len() > 80 {
                let mut cut = 80;
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                s.truncate(cut);
                s.push('…');
            }
            s
        }
    }
}

/// Coerces a present value to a type.
fn coerce(kind: &FieldType, raw: RawValue<'_>) -> Result<Value, String> {
    let fail = |what: &str| format!("{} is not {what}", shown(raw));
    match kind {
        FieldType::String => match raw {
            RawValue::Text(t) => Ok(Value::String(t.to_string())),
            RawValue::Json(Value::String(s)) => Ok(Value::String(s.clone())),
            RawValue::Json(v @ (Value::Number(_) | Value::Bool(_))) => Ok(Value::String(v.to_string())),
            _ => Err(fail("a string")),
        },
        FieldType::Integer => match raw {
            RawValue::Text(t) => t
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| fail("an integer")),
            RawValue::Json(Value::Number(n)) => n.as_i64().map(Value::from).ok_or_else(|| fail("an integer")),
            RawValue::Json(Value::String(s)) => s
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| fail("an integer")),
            _ => Err(fail("an integer")),
        },
        FieldType::Decimal => {
            let text = match raw {
                RawValue::Text(t) => Some(t.trim().to_string()),
                RawValue::Json(Value::String(s)) => Some(s.trim().to_string()),
                // serde_json prints a float with the shortest digits that read back as the
                // same number, which are the digits the file had for any decimal a float can
                // tell apart (up to 15 significant digits).
                RawValue::Json(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            text.and_then(|t| parse_decimal(&t))
                .map(|d| Value::String(d.to_string()))
                .ok_or_else(|| fail("a decimal number (at most 28 digits)"))
        }
        FieldType::Float => {
            let f = match raw {
                RawValue::Text(t) => t.trim().parse::<f64>().ok(),
                RawValue::Json(Value::Number(n)) => n.as_f64(),
                RawValue::Json(Value::String(s)) => s.trim().parse::<f64>().ok(),
                _ => None,
            };
            f.and_then(Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| fail("a finite number"))
        }
        FieldType::Boolean => match raw {
            RawValue::Json(Value::Bool(b)) => Ok(Value::Bool(*b)),
            RawValue::Text(t) => parse_bool(t)
                .map(Value::Bool)
                .ok_or_else(|| fail("a boolean (true/false, 1/0, yes/no, t/f)")),
            RawValue::Json(Value::String(t)) => parse_bool(t)
                .map(Value::Bool)
                .ok_or_else(|| fail("a boolean (true/false, 1/0, yes/no, t/f)")),
            RawValue::Json(Value::Number(n)) => match n.as_u64() {
                Some(0) => Ok(Value::Bool(false)),
                Some(1) => Ok(Value::Bool(true)),
                _ => Err(fail("a boolean (true/false, 1/0, yes/no, t/f)")),
            },
            _ => Err(fail("a boolean (true/false, 1/0, yes/no, t/f)")),
        },
        FieldType::Date(format) => {
            let text = text_of(raw).ok_or_else(|| fail("a date"))?;
            let pattern = format.as_deref().unwrap_or("%Y-%m-%d");
            NaiveDate::parse_from_str(text.trim(), pattern)
                .map(|d| Value::String(d.format("%Y-%m-%d").to_string()))
                .map_err(|_| fail(&format!("a date in the format {pattern}")))
        }
        FieldType::Timestamp { format, zone } => parse_timestamp(raw, format, *zone)
            .map(|t| Value::String(t.to_rfc3339_opts(SecondsFormat::AutoSi, true))),
        FieldType::Json => match raw {
            RawValue::Json(v) => Ok(v.clone()),
            RawValue::Text(t) => {
                serde_json::from_str(t).map_err(|e| format!("{} is not JSON: {e}", shown(raw)))
            }
            RawValue::Missing => Err(fail("JSON")),
        },
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
    match t.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "t" | "y" => Some(true),
        "false" | "0" | "no" | "f" | "n" => Some(false),
        _ => None,
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
            let n = match raw {
                RawValue::Json(Value::Number(n)) => n.as_i64(),
                other => text_of(other).and_then(|t| t.trim().parse::<i64>().ok()),
            };
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
    use serde_json::json;

    fn field(kind: FieldType) -> Field {
        Field {
            name: "f".into(),
            column: Column::Name("f".into()),
            kind,
            required: false,
            values: None,
            default: None,
        }
    }

    #[test]
    fn coercion_table() {
        use FieldType as T;
        let at = |format: TimeFormat, zone: Tz| T::Timestamp { format, zone };
        let ts = || at(TimeFormat::Iso, Tz::UTC);
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
            (T::Decimal, RawValue::Text("19.99"), Ok(json!("19.99"))),
            (T::Decimal, RawValue::Text(" -0.50 "), Ok(json!("-0.50"))),
            (T::Decimal, RawValue::Text("+3"), Ok(json!("3"))),
            (T::Decimal, RawValue::Text("1.5e3"), Ok(json!("1500"))),
            (T::Decimal, j(f1999), Ok(json!("19.99"))),
            (
                T::Decimal,
                RawValue::Text("123456789012345678901234567890.5"),
                Err("\"123456789012345678901234567890.5\" is not a decimal number (at most 28 digits)"),
            ),
            (
                T::Decimal,
                RawValue::Text("1_000"),
                Err("\"1_000\" is not a decimal number (at most 28 digits)"),
            ),
            (
                T::Decimal,
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
    fn bad_row_limits() {
        assert!(!BadRowLimit::Count(0).exceeded(0, 10));
        assert!(BadRowLimit::Count(0).exceeded(1, 10));
        assert!(!BadRowLimit::Share(0.01).exceeded(1, 100));
        assert!(BadRowLimit::Share(0.01).exceeded(2, 100));
        assert!(!BadRowLimit::Share(0.01).exceeded(0, 0));
    }
}

//! What the typed binary formats (Parquet, Avro) share: a file's schema as s3-importd sees it
//! ([`FileSchema`], each top-level column's [`ColumnKind`]), the check of a template against
//! it before any row is read, how a decimal's digits are written ([`scaled`]), and the marker
//! of a file that is not valid ([`Broken`]).
//!
//! Pure: the readers themselves are `parquet.rs` and `avro.rs`. Their rows' values become JSON
//! values and are checked by the same `Template::check_row` as every other format's: one place
//! decides what a valid integer, decimal or timestamp is.

use super::*;
use crate::template::{Column, FieldType, TimeFormat};

/// A typed file's columns, as its schema (Parquet's footer, Avro's header) declares them, with
/// what the file says of its size. Handed to the sink before the first row
/// ([`RowSink::schema`]): `preview` shows it, `template infer` builds a template from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSchema {
    /// "Parquet" or "Avro".
    pub format: &'static str,
    pub columns: Vec<FileColumn>,
    /// The number of rows, when the file says it before its rows (Parquet's footer).
    pub rows: Option<u64>,
    /// Parquet's row groups, in order (none for Avro).
    pub row_groups: Vec<RowGroup>,
}

/// One row group of a Parquet file, as its footer describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowGroup {
    pub rows: u64,
    /// Uncompressed.
    pub bytes: u64,
}

/// A top-level column of a typed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileColumn {
    pub name: String,
    pub kind: ColumnKind,
    /// Whether a row may lack a value (a nullable Parquet column, an Avro union with null).
    pub nullable: bool,
    /// The type in the file's own words (`Int32`, `Decimal128(10, 2)`, `long`,
    /// `timestamp-micros`), for messages and `preview`.
    pub declared: String,
}

/// What a column holds, as far as a template's field types care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// Signed or unsigned, 8 to 64 bits.
    Integer,
    Decimal,
    Float,
    Boolean,
    /// Strings, enums, UUIDs, dictionary-encoded strings.
    Text,
    /// Bytes, delivered as standard base64.
    Binary,
    Date,
    /// A timestamp; `local`: written without a zone (read as UTC unless the field sets
    /// `timezone`).
    Timestamp {
        local: bool,
    },
    /// A time of day.
    Time,
    /// Lists, structs, records, maps.
    Nested,
    /// A column that holds only nulls.
    Null,
    /// Anything else (intervals, durations): delivered as JSON.
    Other,
}

impl ColumnKind {
    /// The field a template for this column declares: its type and format, as
    /// [`crate::infer::Inferred`] names them.
    pub fn field_type(self) -> (&'static str, Option<&'static str>) {
        match self {
            ColumnKind::Integer => ("integer", None),
            ColumnKind::Decimal => ("decimal", None),
            ColumnKind::Float => ("float", None),
            ColumnKind::Boolean => ("boolean", None),
            ColumnKind::Text | ColumnKind::Binary | ColumnKind::Time | ColumnKind::Null => ("string", None),
            ColumnKind::Date => ("date", None),
            ColumnKind::Timestamp { .. } => ("timestamp", None),
            ColumnKind::Nested | ColumnKind::Other => ("json", None),
        }
    }

    /// Whether a field of type `field` can be read from this column. Text can hold any
    /// scalar (each value is then checked as a CSV cell would be); an integer widens to a
    /// decimal or a float; a field of type `json` takes anything.
    pub fn fits(self, field: &FieldType) -> bool {
        use ColumnKind as K;
        if matches!(self, K::Null | K::Text) || *field == FieldType::Json {
            return true;
        }
        match field {
            FieldType::String => matches!(self, K::Binary | K::Date | K::Timestamp { .. } | K::Time),
            FieldType::Integer => self == K::Integer,
            FieldType::Decimal(_) => matches!(self, K::Decimal | K::Integer),
            FieldType::Float => matches!(self, K::Float | K::Decimal | K::Integer),
            FieldType::Boolean => self == K::Boolean,
            // A date column arrives as ISO 8601 text.
            FieldType::Date(format) => self == K::Date && format.as_deref().is_none_or(|f| f == "%Y-%m-%d"),
            FieldType::Timestamp { format, .. } => match format {
                TimeFormat::Iso => matches!(self, K::Timestamp { .. }),
                TimeFormat::Unix | TimeFormat::UnixMs => self == K::Integer,
                TimeFormat::Strftime(_) => false,
            },
            FieldType::Json => true,
        }
    }
}

impl FileSchema {
    /// The schema as `preview` shows it: a line per column (name, type in the file's words,
    /// nullable or not), then the row count and the row groups.
    pub fn describe(&self) -> String {
        let widest = |text: fn(&FileColumn) -> &str| {
            self.columns
                .iter()
                .map(|c| text(c).chars().count())
                .max()
                .unwrap_or(0)
        };
        let (width, types) = (widest(|c| &c.name), widest(|c| &c.declared));
        let mut out = format!("{} schema, {} columns:\n", self.format, self.columns.len());
        for c in &self.columns {
            out.push_str(&format!(
                "    {:width$}  {:types$}  {}\n",
                crate::text::clean(&c.name),
                crate::text::clean(&c.declared),
                if c.nullable { "nullable" } else { "required" },
            ));
        }
        if let Some(rows) = self.rows {
            out.push_str(&format!("  {rows} rows"));
            if !self.row_groups.is_empty() {
                let groups: Vec<String> = self
                    .row_groups
                    .iter()
                    .map(|g| format!("{} rows, {} bytes", g.rows, g.bytes))
                    .collect();
                out.push_str(&format!(
                    " in {} row group{} ({} uncompressed)",
                    groups.len(),
                    if groups.len() == 1 { "" } else { "s" },
                    groups.join("; ")
                ));
            }
            out.push('\n');
        }
        out
    }
}

/// The name of a field type as the template writes it.
fn type_name(field: &FieldType) -> &'static str {
    match field {
        FieldType::String => "string",
        FieldType::Integer => "integer",
        FieldType::Decimal(_) => "decimal",
        FieldType::Float => "float",
        FieldType::Boolean => "boolean",
        FieldType::Date(_) => "date",
        FieldType::Timestamp { .. } => "timestamp",
        FieldType::Json => "json",
    }
}

/// Checks `template` against a file's schema before any row is read: a required field whose
/// column the file lacks, or a field whose column's type cannot satisfy it, rejects the file
/// (every row would fail the same way). Columns are matched by name, so columns added,
/// removed (if not required), reordered or widened from one file to the next are all read.
pub(super) fn check_schema(template: &Template, schema: &FileSchema) -> Result<(), ParseError> {
    let column = |name: &str| schema.columns.iter().find(|c| c.name == name);
    let missing: Vec<String> = template
        .fields
        .iter()
        .filter(|f| f.required)
        .filter_map(|f| match &f.column {
            Column::Name(name) if column(name).is_none() => Some(name.clone()),
            Column::Index(i) => Some(format!("#{}", i + 1)),
            Column::Name(_) => None,
        })
        .collect();
    if !missing.is_empty() {
        return Err(ParseError::SchemaLacks {
            format: schema.format,
            missing,
            found: schema.columns.iter().map(|c| c.name.clone()).collect(),
        });
    }
    if template.unknown_fields == crate::template::UnknownFields::Reject {
        let unknown: Vec<String> = schema
            .columns
            .iter()
            .filter(|c| !claimed(template, &c.name))
            .map(|c| c.name.clone())
            .collect();
        if !unknown.is_empty() {
            return Err(ParseError::UnknownColumns { unknown });
        }
    }
    for field in &template.fields {
        let Column::Name(name) = &field.column else {
            continue;
        };
        let Some(found) = column(name) else { continue };
        if found.kind.fits(&field.kind) {
            continue;
        }
        let wanted = type_name(&field.kind);
        let fix = match (&field.kind, found.kind) {
            (
                FieldType::Timestamp { .. } | FieldType::Date(Some(_)),
                ColumnKind::Timestamp { .. } | ColumnKind::Date,
            ) => "remove `format` from the field: a typed date or timestamp column needs none".to_string(),
            _ => format!(
                "declare the field as type = \"{}\", or ask the sender to write the column as {wanted}",
                found.kind.field_type().0
            ),
        };
        return Err(ParseError::ColumnType {
            column: name.clone(),
            declared: found.declared.clone(),
            field: field.name.clone(),
            wanted,
            fix,
        });
    }
    Ok(())
}

/// Whether a field of the template reads the column `name`.
pub(super) fn claimed(template: &Template, name: &str) -> bool {
    template
        .fields
        .iter()
        .any(|f| matches!(&f.column, Column::Name(n) if n == name))
}

/// Marks an I/O error that is the file's fault (it is not a valid file of its format), so
/// that the caller rejects the object instead of retrying it.
#[derive(Debug)]
pub(super) struct Broken(pub(super) String);

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Broken {}

/// The failure of a file that is not valid in its format, for `why`: an I/O error marked
/// [`Broken`], so that the object is rejected unless the source finds the body damaged on the
/// way.
pub(super) fn not_read(why: String) -> Failure {
    Failure::Io(io::Error::new(io::ErrorKind::InvalidData, Broken(why)))
}

/// A reader's words for what is wrong with a file, cut to an excerpt: they can quote the file
/// (a time zone, a column name), and no message holds more than an excerpt of it.
pub(super) fn reason(e: impl std::fmt::Display) -> String {
    crate::text::excerpt(&e.to_string())
}

/// Runs a reader that may panic on a corrupt file (fuzzing finds such files for arrow-rs in
/// seconds): a panic becomes `broken(reason)`, so that one hostile file costs its own import
/// only.
pub(super) fn guarded(
    read: impl FnOnce() -> Result<(), Failure>,
    broken: impl FnOnce(String) -> ParseError,
) -> Result<(), Failure> {
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(read));
    caught.unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_string());
        Err(Failure::File(broken(format!(
            "the reader failed on it ({})",
            reason(why)
        ))))
    })
}

/// An unscaled integer's digits with `scale` of them after the point (`-250`, 2 → `-2.50`),
/// written into `out` (cleared first): how a decimal of either format is delivered.
pub(super) fn scaled(unscaled: &str, scale: usize, out: &mut String) {
    out.clear();
    let (sign, digits) = match unscaled.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("", unscaled),
    };
    out.push_str(sign);
    if scale == 0 {
        out.push_str(digits);
    } else if digits.len() > scale {
        let (whole, fraction) = digits.split_at(digits.len() - scale);
        out.push_str(whole);
        out.push('.');
        out.push_str(fraction);
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', scale - digits.len()));
        out.push_str(digits);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    use crate::template::UnknownFields;

    fn schema(columns: &[(&str, ColumnKind)]) -> FileSchema {
        FileSchema {
            format: "Parquet",
            columns: columns
                .iter()
                .map(|(name, kind)| FileColumn {
                    name: name.to_string(),
                    kind: *kind,
                    nullable: true,
                    declared: format!("{kind:?}"),
                })
                .collect(),
            rows: None,
            row_groups: Vec::new(),
        }
    }

    #[test]
    fn which_columns_satisfy_which_fields() {
        use ColumnKind as K;
        let iso = FieldType::Timestamp {
            format: TimeFormat::Iso,
            zone: chrono_tz::UTC,
        };
        let unix = FieldType::Timestamp {
            format: TimeFormat::Unix,
            zone: chrono_tz::UTC,
        };
        let cases: [(ColumnKind, &FieldType, bool); 20] = [
            (K::Integer, &FieldType::Integer, true),
            (K::Integer, &FieldType::Decimal(None), true),
            (K::Integer, &FieldType::Float, true),
            (K::Integer, &FieldType::String, false),
            (K::Float, &FieldType::Integer, false),
            (K::Float, &FieldType::Decimal(None), false),
            (K::Decimal, &FieldType::Float, true),
            (K::Decimal, &FieldType::Integer, false),
            (K::Boolean, &FieldType::Integer, false),
            (K::Text, &FieldType::Integer, true),
            (K::Text, &iso, true),
            (K::Binary, &FieldType::String, true),
            (K::Date, &FieldType::Date(None), true),
            (K::Date, &FieldType::Date(Some("%d/%m/%Y".into())), false),
            (K::Timestamp { local: true }, &iso, true),
            (K::Timestamp { local: false }, &unix, false),
            (K::Integer, &unix, true),
            (K::Nested, &FieldType::String, false),
            (K::Nested, &FieldType::Json, true),
            (K::Null, &FieldType::Boolean, true),
        ];
        for (column, field, fits) in cases {
            assert_eq!(column.fits(field), fits, "{column:?} for {field:?}");
        }
    }

    #[test]
    fn a_column_of_the_wrong_type_names_the_column_both_types_and_the_fix() {
        let template = id_template("id", UnknownFields::Ignore, vec![]);
        let e = check_schema(&template, &schema(&[("id", ColumnKind::Float)])).unwrap_err();
        assert!(
            matches!(&e, ParseError::ColumnType { column, .. } if column == "id"),
            "{e}"
        );
        let text = e.to_string();
        assert!(text.contains("\"id\" is Float in the file"), "{text}");
        assert!(text.contains("integer field \"id\""), "{text}");
        assert!(text.contains("type = \"float\""), "{text}");
        // Missing: named with what the file has.
        let e = check_schema(&template, &schema(&[("other", ColumnKind::Integer)])).unwrap_err();
        assert!(e.to_string().contains("\"other\""), "{e}");
        assert!(matches!(e, ParseError::SchemaLacks { .. }), "{e}");
        // A column no field claims, under unknown_fields = "reject".
        let mut strict = template.clone();
        strict.unknown_fields = UnknownFields::Reject;
        let e = check_schema(
            &strict,
            &schema(&[("id", ColumnKind::Integer), ("x", ColumnKind::Text)]),
        )
        .unwrap_err();
        assert!(
            matches!(&e, ParseError::UnknownColumns { unknown } if unknown == &["x"]),
            "{e}"
        );
        // Widened or reordered: read by name.
        let wide = schema(&[("x", ColumnKind::Text), ("id", ColumnKind::Integer)]);
        check_schema(&template, &wide).unwrap();
    }

    #[test]
    fn a_schema_is_described_column_by_column_with_its_row_groups() {
        let mut s = schema(&[("id", ColumnKind::Integer), ("name", ColumnKind::Text)]);
        s.columns[0].nullable = false;
        s.rows = Some(3);
        s.row_groups = vec![RowGroup { rows: 2, bytes: 100 }, RowGroup { rows: 1, bytes: 50 }];
        assert_eq!(
            s.describe(),
            "Parquet schema, 2 columns:\n    id    Integer  required\n    name  Text     nullable\n  3 rows in 2 row groups (2 rows, 100 bytes; 1 rows, 50 bytes uncompressed)\n"
        );
    }

    #[test]
    fn scale_puts_the_point_in_the_digits() {
        for (digits, scale, want) in [
            ("-250", 2, "-2.50"),
            ("5", 3, "0.005"),
            ("-5", 1, "-0.5"),
            ("123", 0, "123"),
            ("-123", 0, "-123"),
            ("12345", 2, "123.45"),
            ("0", 2, "0.00"),
        ] {
            let mut out = String::from("left over");
            scaled(digits, scale, &mut out);
            assert_eq!(out, want);
        }
    }
}

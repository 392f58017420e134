//! Template inference for `s3-importd template infer`: from sample rows (each column's values
//! as the schemaless template reads them — CSV cells as strings, JSON values as they are), the
//! narrowest field type every value fits, with the date or time format found, and `required`
//! where a column is never empty; rendered as the TOML of a template file.
//!
//! Pure: no I/O. The command reads the samples and checks the result against them; this
//! module only guesses, so a guess the template's own parser refuses is corrected there, not
//! here.

use serde_json::{Map, Value};

/// Date formats tried, most specific first: a column takes the first that reads all of its
/// values (day-first before month-first, as most partners outside the US write).
const DATE_FORMATS: [&str; 5] = ["%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%Y/%m/%d", "%d.%m.%Y"];

/// Timestamp formats tried after ISO 8601 / RFC 3339 (which needs no format).
const TIME_FORMATS: [&str; 6] = [
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%d/%m/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%m/%d/%Y %H:%M",
];

/// What one column's values so far allow.
#[derive(Debug, Clone)]
struct Column {
    key: String,
    /// Rows that had a value (not empty, not null).
    filled: u64,
    integer: bool,
    /// Decimal text such as `19.99` (or integers): an exact decimal.
    decimal: bool,
    float: bool,
    boolean: bool,
    /// Still-possible date formats (indexes into [`DATE_FORMATS`]).
    dates: Vec<usize>,
    /// ISO 8601 timestamps.
    iso: bool,
    /// Still-possible timestamp formats (indexes into [`TIME_FORMATS`]).
    times: Vec<usize>,
    /// Objects or arrays (JSON sources).
    json: bool,
    /// Any value at all that is JSON text rather than a string (numbers and booleans of a
    /// JSON source count here too).
    typed_json: bool,
}

impl Column {
    fn new(key: &str) -> Column {
        Column {
            key: key.to_string(),
            filled: 0,
            integer: true,
            decimal: true,
            float: true,
            boolean: true,
            dates: (0..DATE_FORMATS.len()).collect(),
            iso: true,
            times: (0..TIME_FORMATS.len()).collect(),
            json: true,
            typed_json: false,
        }
    }

    fn see(&mut self, value: &Value) {
        match value {
            Value::Null => return,
            Value::String(s) if s.is_empty() => return,
            Value::String(s) => self.see_text(s.trim()),
            Value::Bool(_) => self.only(false, false, true, false),
            Value::Number(n) => {
                let integer = n.is_i64() || n.as_u64().is_some_and(|u| i64::try_from(u).is_ok());
                self.only(integer, true, false, false);
            }
            Value::Array(_) | Value::Object(_) => self.only(false, false, false, true),
        }
        self.filled += 1;
    }

    /// A JSON value that is not a string: only the types it allows stay possible.
    fn only(&mut self, integer: bool, float: bool, boolean: bool, json: bool) {
        self.typed_json = true;
        self.integer &= integer;
        self.decimal = false;
        self.float &= float;
        self.boolean &= boolean;
        self.json &= json;
        self.iso = false;
        self.dates.clear();
        self.times.clear();
    }

    fn see_text(&mut self, t: &str) {
        self.json = false;
        let digits = t.strip_prefix('-').unwrap_or(t);
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        // Leading zeros (`007`) are an identifier's, not a number's: they would be lost.
        let leading_zero = digits.len() > 1 && digits.starts_with('0') && !digits.starts_with("0.");
        self.integer &= all_digits(digits) && !leading_zero && t.parse::<i64>().is_ok();
        self.decimal &= !leading_zero
            && match digits.split_once('.') {
                Some((whole, fraction)) => all_digits(whole) && all_digits(fraction),
                None => all_digits(digits),
            };
        self.float &= !leading_zero
            && t.parse::<f64>().is_ok_and(f64::is_finite)
            && t.bytes().any(|b| b.is_ascii_digit());
        self.boolean &= matches!(
            t.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "t" | "f" | "y" | "n"
        );
        self.dates
            .retain(|&i| chrono::NaiveDate::parse_from_str(t, DATE_FORMATS[i]).is_ok());
        self.iso &= chrono::DateTime::parse_from_rfc3339(t).is_ok()
            || chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f").is_ok();
        self.times
            .retain(|&i| chrono::NaiveDateTime::parse_from_str(t, TIME_FORMATS[i]).is_ok());
    }

    /// The field type and format the values allow, narrowest first.
    fn kind(&self) -> (&'static str, Option<&'static str>) {
        if self.filled == 0 {
            return ("string", None);
        }
        if self.json && self.typed_json {
            return ("json", None);
        }
        if self.integer {
            return ("integer", None);
        }
        if self.boolean {
            return ("boolean", None);
        }
        // Decimal text keeps its digits exactly; JSON numbers are floats already.
        if self.decimal && !self.typed_json {
            return ("decimal", None);
        }
        if self.float {
            return ("float", None);
        }
        if let Some(&i) = self.dates.first() {
            let format = DATE_FORMATS[i];
            return ("date", (format != "%Y-%m-%d").then_some(format));
        }
        if self.iso {
            return ("timestamp", None);
        }
        if let Some(&i) = self.times.first() {
            return ("timestamp", Some(TIME_FORMATS[i]));
        }
        if self.typed_json {
            return ("json", None);
        }
        ("string", None)
    }
}

/// Reads sample rows and guesses a template for them.
#[derive(Debug, Default)]
pub struct Inferrer {
    columns: Vec<Column>,
    rows: u64,
}

/// A field as inferred: where it is read, its type and format, whether it was always there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inferred {
    pub column: String,
    pub kind: &'static str,
    pub format: Option<&'static str>,
    pub required: bool,
}

impl Inferrer {
    /// One row, as the schemaless template delivers it (provenance keys are left out).
    pub fn row(&mut self, row: &Map<String, Value>) {
        self.rows += 1;
        for (key, value) in row {
            if key.starts_with("_source_") {
                continue;
            }
            let at = match self.columns.iter().position(|c| c.key == *key) {
                Some(at) => at,
                None => {
                    self.columns.push(Column::new(key));
                    self.columns.len() - 1
                }
            };
            self.columns[at].see(value);
        }
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The fields, in the order their columns were first seen.
    pub fn fields(&self) -> Vec<Inferred> {
        self.columns
            .iter()
            .map(|c| {
                let (kind, format) = c.kind();
                Inferred {
                    column: c.key.clone(),
                    kind,
                    format,
                    required: c.filled == self.rows && self.rows > 0,
                }
            })
            .collect()
    }
}

/// The fields of typed files (Parquet, Avro), read exactly from their schemas, not guessed
/// from rows: one per column, in the order columns are first met (newest file first), each
/// typed from the first schema that has it; `required` where every file has the column and
/// none lets it be null (so that a file of a connection whose columns come and go is read).
pub fn from_schemas(schemas: &[crate::formats::FileSchema]) -> Vec<Inferred> {
    let mut fields: Vec<Inferred> = Vec::new();
    for schema in schemas {
        for column in &schema.columns {
            if fields.iter().any(|f| f.column == column.name) {
                continue;
            }
            let (kind, format) = column.kind.field_type();
            let required = schemas
                .iter()
                .all(|s| s.columns.iter().any(|c| c.name == column.name && !c.nullable));
            fields.push(Inferred {
                column: column.name.clone(),
                kind,
                format,
                required,
            });
        }
    }
    fields
}

/// A field name from a column name: lower case, words joined by `_` (`Product ID` →
/// `product_id`); a column name with nothing to keep becomes `column_N`.
pub fn field_name(column: &str, index: usize) -> String {
    let mut name = String::new();
    for c in column.chars() {
        if c.is_alphanumeric() {
            name.extend(c.to_lowercase());
        } else if !name.ends_with('_') && !name.is_empty() {
            name.push('_');
        }
    }
    let name = name.trim_end_matches('_').to_string();
    if name.is_empty() || name.starts_with("source_") && column.starts_with("_source_") {
        format!("column_{}", index + 1)
    } else {
        name
    }
}

/// The TOML of a template file for `fields`, with a header comment saying where it came from.
/// `by_index`: the files have no header row, so each field names its column by number (the
/// fields are the columns in order).
pub fn render(table: &str, fields: &[Inferred], header: &str, by_index: bool) -> String {
    let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut out = String::new();
    for line in header.lines() {
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(&format!("table = {}\n", quote(table)));
    let mut names: Vec<String> = Vec::new();
    for (i, f) in fields.iter().enumerate() {
        let mut name = field_name(&f.column, i);
        // Names are unique: a second `Price` and `price` becomes `price_2`.
        if names.contains(&name) {
            let base = name.clone();
            let mut n = 2;
            while names.contains(&name) {
                name = format!("{base}_{n}");
                n += 1;
            }
        }
        out.push_str("\n[[fields]]\n");
        out.push_str(&format!("name = {}\n", quote(&name)));
        if by_index {
            out.push_str(&format!("column = {}\n", i + 1));
        } else if name != f.column {
            out.push_str(&format!("column = {}\n", quote(&f.column)));
        }
        out.push_str(&format!("type = {}\n", quote(f.kind)));
        if let Some(format) = f.format {
            out.push_str(&format!("format = {}\n", quote(format)));
        }
        if f.required {
            out.push_str("required = true\n");
        }
        names.push(name);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A column's inferred type, format, and whether it is required.
    type Guess = (&'static str, Option<&'static str>, bool);

    /// The type (and format) inferred for one column of these values.
    fn kind_of(values: &[Value]) -> Guess {
        let mut inferrer = Inferrer::default();
        for v in values {
            let mut row = Map::new();
            row.insert("c".into(), v.clone());
            inferrer.row(&row);
        }
        let f = &inferrer.fields()[0];
        (f.kind, f.format, f.required)
    }

    /// Typed files: each column's type from its schema; required only where every file has
    /// it and none lets it be null; columns in the order first met.
    #[test]
    fn typed_files_give_their_schemas_fields() {
        use crate::formats::{ColumnKind as K, FileColumn, FileSchema};
        let file = |columns: &[(&str, K, bool)]| FileSchema {
            format: "Avro",
            columns: columns
                .iter()
                .map(|(name, kind, nullable)| FileColumn {
                    name: name.to_string(),
                    kind: *kind,
                    nullable: *nullable,
                    declared: String::new(),
                })
                .collect(),
            rows: None,
            row_groups: Vec::new(),
        };
        let newest = file(&[
            ("id", K::Integer, false),
            ("at", K::Timestamp { local: false }, false),
            ("tags", K::Nested, false),
            ("added", K::Decimal, false),
        ]);
        let older = file(&[
            ("at", K::Timestamp { local: true }, false),
            ("id", K::Integer, true),
            ("tags", K::Nested, false),
        ]);
        let got: Vec<(String, &str, bool)> = from_schemas(&[newest, older])
            .into_iter()
            .map(|f| (f.column, f.kind, f.required))
            .collect();
        let want = [
            ("id", "integer", false),
            ("at", "timestamp", true),
            ("tags", "json", true),
            ("added", "decimal", false),
        ];
        let want: Vec<(String, &str, bool)> = want.iter().map(|(c, k, r)| (c.to_string(), *k, *r)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn each_column_takes_the_narrowest_type_all_its_values_fit() {
        let s = |v: &str| json!(v);
        let cases: Vec<(Vec<Value>, Guess)> = vec![
            (vec![s("1"), s("-20"), s("300")], ("integer", None, true)),
            (vec![s("1"), s(""), s("3")], ("integer", None, false)),
            (vec![s("007"), s("12")], ("string", None, true)),
            (vec![s("19.99"), s("5"), s("-0.10")], ("decimal", None, true)),
            (vec![s("1.5e3"), s("2")], ("float", None, true)),
            (vec![s("true"), s("No"), s("Y")], ("boolean", None, true)),
            (vec![s("0"), s("1")], ("integer", None, true)),
            (vec![s("2026-11-30"), s("2026-01-02")], ("date", None, true)),
            (
                vec![s("30/11/2026"), s("01/02/2026")],
                ("date", Some("%d/%m/%Y"), true),
            ),
            (
                vec![s("11/30/2026"), s("01/02/2026")],
                ("date", Some("%m/%d/%Y"), true),
            ),
            (
                vec![s("2026-11-30T10:00:00Z"), s("2026-11-30T10:00:00.5+01:00")],
                ("timestamp", None, true),
            ),
            (
                vec![s("2026-11-30 10:00:00"), s("2026-12-01 00:00:01")],
                ("timestamp", Some("%Y-%m-%d %H:%M:%S"), true),
            ),
            (vec![s("2026-11-30"), s("tomorrow")], ("string", None, true)),
            (vec![s(""), Value::Null], ("string", None, false)),
            (vec![json!(1), json!(2)], ("integer", None, true)),
            (vec![json!(1), json!(2.5)], ("float", None, true)),
            (vec![json!(true), Value::Null], ("boolean", None, false)),
            (vec![json!({"a": 1}), json!([1])], ("json", None, true)),
            (vec![json!(1), json!("x")], ("json", None, true)),
        ];
        for (values, want) in cases {
            assert_eq!(kind_of(&values), want, "{values:?}");
        }
    }

    #[test]
    fn names_and_the_rendered_template() {
        assert_eq!(field_name("Product ID", 0), "product_id");
        assert_eq!(field_name("  price (EUR) ", 1), "price_eur");
        assert_eq!(field_name("---", 2), "column_3");
        let fields = vec![
            Inferred {
                column: "Product ID".into(),
                kind: "integer",
                format: None,
                required: true,
            },
            Inferred {
                column: "sku".into(),
                kind: "string",
                format: None,
                required: false,
            },
            Inferred {
                column: "SKU".into(),
                kind: "date",
                format: Some("%d/%m/%Y"),
                required: false,
            },
        ];
        let text = render("orders", &fields, "from 2 files", false);
        assert_eq!(
            text,
            "# from 2 files\ntable = \"orders\"\n\n[[fields]]\nname = \"product_id\"\ncolumn = \"Product ID\"\ntype = \"integer\"\nrequired = true\n\n[[fields]]\nname = \"sku\"\ntype = \"string\"\n\n[[fields]]\nname = \"sku_2\"\ncolumn = \"SKU\"\ntype = \"date\"\nformat = \"%d/%m/%Y\"\n"
        );
        let headerless = render("t", &fields[..1], "", true);
        assert!(
            headerless.contains("name = \"product_id\"\ncolumn = 1\n"),
            "{headerless}"
        );
    }
}

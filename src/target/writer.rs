//! The one writer of the `file` and `s3` targets: the spooled rows of a load as JSON Lines
//! (copied as they are) or as CSV with a header row, into any `Write`.
//!
//! CSV columns are the template's fields, then the provenance columns; fields kept by
//! `unknown_fields = "keep"` vary from row to row and appear only in JSON Lines output.
//! Values: strings as they are (but for the formula guard), numbers and booleans as JSON
//! writes them, JSON values as JSON text, null as an empty cell. This module writes bytes; where they go is the target's job.

use crate::config::OutputFormat;
use crate::spool::{SliceReader, SpoolSlice};
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::io::{self, BufRead, BufReader, Write};

/// The provenance columns every row carries, in the order CSV output puts them.
pub const PROVENANCE: [&str; 3] = ["_source_key", "_source_version", "_source_line"];

/// Writes the rows of `spools`, in order, to `out` in `format`; `fields` are the template's
/// field names (the CSV header before the provenance columns).
pub fn write_load(
    spools: &[SpoolSlice],
    format: OutputFormat,
    fields: &[String],
    out: impl Write,
) -> io::Result<()> {
    write_load_with(&mut SliceReader::default(), spools, format, fields, out)
}

/// [`write_load`] through `slices`, which may be a consuming reader
/// ([`SliceReader::consuming`]) that gives back the spool's space as the load is written.
pub fn write_load_with(
    slices: &mut SliceReader,
    spools: &[SpoolSlice],
    format: OutputFormat,
    fields: &[String],
    out: impl Write,
) -> io::Result<()> {
    match format {
        OutputFormat::Jsonl => {
            let mut out = out;
            slices.copy_all(spools, &mut out)?;
            out.flush()
        }
        OutputFormat::Csv {
            delimiter,
            quote_all,
            formula_guard,
        } => {
            let mut csv = csv::WriterBuilder::new()
                .delimiter(delimiter)
                .quote_style(if quote_all {
                    csv::QuoteStyle::Always
                } else {
                    csv::QuoteStyle::Necessary
                })
                .from_writer(out);
            let columns: Vec<&str> = fields.iter().map(String::as_str).chain(PROVENANCE).collect();
            csv.write_record(&columns)?;
            let mut line = String::new();
            for spool in spools {
                let mut reader = BufReader::new(slices.read(spool)?);
                loop {
                    line.clear();
                    if reader.read_line(&mut line)? == 0 {
                        break;
                    }
                    let cells = row_cells(&line, &columns, formula_guard).map_err(|e| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("spool {}: {e}", spool.path.display()),
                        )
                    })?;
                    csv.write_record(cells.iter().map(|c| c.as_bytes()))?;
                }
                drop(reader);
                slices.done(spool)?;
            }
            csv.flush()
        }
    }
}

/// The cells of one spooled row (a JSON object on one line), in `columns` order, without
/// building a map of the row: each column's value is found as its JSON text in the line, and
/// a string without escapes is a slice of it. Parsing every row into a map of owned values
/// made CSV output several times slower than JSON Lines output.
fn row_cells<'l>(
    line: &'l str,
    columns: &[&str],
    formula_guard: bool,
) -> Result<Vec<Cow<'l, str>>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(line);
    let found = Columns(columns).deserialize(&mut de)?;
    de.end()?;
    found
        .into_iter()
        .map(|value| raw_cell(value.map_or("null", RawValue::get), formula_guard))
        .collect()
}

/// Finds the values of some keys of a JSON object, as their JSON text.
struct Columns<'c>(&'c [&'c str]);

impl<'de> DeserializeSeed<'de> for Columns<'_> {
    type Value = Vec<Option<&'de RawValue>>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Columns<'_> {
    type Value = Vec<Option<&'de RawValue>>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a spooled row (a JSON object)")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = vec![None; self.0.len()];
        while let Some(key) = map.next_key_seed(crate::format::KeySeed)? {
            match self.0.iter().position(|c| *c == key) {
                Some(at) => found[at] = Some(map.next_value::<&'de RawValue>()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }
}

/// One value, given as its JSON text, as a CSV cell: null is empty, a string is its text
/// (with `formula_guard`, one a spreadsheet would take for a formula gets a `'` in front;
/// a number, or a string that is only a number such as `"-1.50"`, is a value to a
/// spreadsheet and is left alone), anything else its JSON text.
fn raw_cell(json: &str, formula_guard: bool) -> Result<Cow<'_, str>, serde_json::Error> {
    if json == "null" {
        return Ok(Cow::Borrowed(""));
    }
    if !json.starts_with('"') {
        return Ok(Cow::Borrowed(json));
    }
    let text = match json.get(1..json.len() - 1) {
        Some(inner) if !inner.contains('\\') => Cow::Borrowed(inner),
        _ => Cow::Owned(serde_json::from_str::<String>(json)?),
    };
    Ok(if formula_guard && needs_guard(&text) {
        Cow::Owned(format!("'{text}"))
    } else {
        text
    })
}

/// Whether a spreadsheet would take the string for a formula (OWASP's list: `=`, `+`, `-`,
/// `@`, tab, carriage return first) — unless it is only a number.
fn needs_guard(s: &str) -> bool {
    s.starts_with(['=', '+', '-', '@', '\t', '\r']) && !is_plain_number(s)
}

/// Whether `s` is a signed decimal number and nothing else (`-1.50`, `+3`, `-2e5`).
fn is_plain_number(s: &str) -> bool {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exponent) = match digits.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e.strip_prefix(['+', '-']).unwrap_or(e))),
        None => (digits, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    !(whole.is_empty() && fraction.is_empty())
        && all_digits(whole)
        && all_digits(fraction)
        && exponent.is_none_or(|e| !e.is_empty() && all_digits(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn spool(rows: &[Value]) -> (tempfile::TempDir, SpoolSlice) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("000000.jsonl");
        // The rows sit after another object's, as they do in a shared spool file.
        let before = "{\"other\":1}\n";
        let text: String = rows.iter().map(|r| format!("{r}\n")).collect();
        std::fs::write(&path, format!("{before}{text}")).unwrap();
        let slice = SpoolSlice {
            path,
            start: before.len() as u64,
            len: text.len() as u64,
        };
        (dir, slice)
    }

    fn written(format: OutputFormat, rows: &[Value]) -> String {
        let (_dir, path) = spool(rows);
        let mut out = Vec::new();
        let fields = vec![
            "id".to_string(),
            "name".to_string(),
            "price".to_string(),
            "tags".to_string(),
        ];
        write_load(&[path], format, &fields, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn csv_with_each_delimiter_and_quote_all() {
        let rows = [
            json!({"id": 1, "name": "Tea, \"pot\"", "price": "19.99", "tags": ["a"], "extra": 1,
                   "_source_key": "k.csv", "_source_version": "e1", "_source_line": 2}),
            json!({"id": 2, "name": null, "price": "0.10", "tags": null,
                   "_source_key": "k.csv", "_source_version": "e1", "_source_line": 3}),
        ];
        let cases = [
            (
                b',',
                false,
                "id,name,price,tags,_source_key,_source_version,_source_line\n1,\"Tea, \"\"pot\"\"\",19.99,\"[\"\"a\"\"]\",k.csv,e1,2\n2,,0.10,,k.csv,e1,3\n",
            ),
            (
                b'|',
                false,
                "id|name|price|tags|_source_key|_source_version|_source_line\n1|\"Tea, \"\"pot\"\"\"|19.99|\"[\"\"a\"\"]\"|k.csv|e1|2\n2||0.10||k.csv|e1|3\n",
            ),
            (
                b'\t',
                false,
                "id\tname\tprice\ttags\t_source_key\t_source_version\t_source_line\n1\t\"Tea, \"\"pot\"\"\"\t19.99\t\"[\"\"a\"\"]\"\tk.csv\te1\t2\n2\t\t0.10\t\tk.csv\te1\t3\n",
            ),
            (
                b',',
                true,
                "\"id\",\"name\",\"price\",\"tags\",\"_source_key\",\"_source_version\",\"_source_line\"\n\"1\",\"Tea, \"\"pot\"\"\",\"19.99\",\"[\"\"a\"\"]\",\"k.csv\",\"e1\",\"2\"\n\"2\",\"\",\"0.10\",\"\",\"k.csv\",\"e1\",\"3\"\n",
            ),
        ];
        for (delimiter, quote_all, want) in cases {
            assert_eq!(
                written(
                    OutputFormat::Csv {
                        delimiter,
                        quote_all,
                        formula_guard: true
                    },
                    &rows
                ),
                want,
                "{delimiter} {quote_all}"
            );
        }
    }

    #[test]
    fn formula_cells_are_guarded_unless_asked_not_to() {
        let rows = [
            json!({"id": -5, "name": "=HYPERLINK(\"http://x\")", "price": "-1.50", "tags": ["@x"],
                           "_source_key": "+k", "_source_version": "@v", "_source_line": 2}),
        ];
        let csv = |formula_guard| OutputFormat::Csv {
            delimiter: b',',
            quote_all: false,
            formula_guard,
        };
        // Strings are guarded, whatever the column; numbers (a decimal is a string holding
        // one) and JSON values are not.
        assert_eq!(
            written(csv(true), &rows).lines().nth(1).unwrap(),
            "-5,\"'=HYPERLINK(\"\"http://x\"\")\",-1.50,\"[\"\"@x\"\"]\",'+k,'@v,2"
        );
        assert_eq!(
            written(csv(false), &rows).lines().nth(1).unwrap(),
            "-5,\"=HYPERLINK(\"\"http://x\"\")\",-1.50,\"[\"\"@x\"\"]\",+k,@v,2"
        );
        let cases = [
            ("\tx", true),
            ("\rx", true),
            ("x=1", false),
            ("", false),
            ("-", true),
            ("-.5", false),
            ("+1e-3", false),
            ("-1e", true),
            ("-1+1", true),
            ("-1.2.3", true),
            ("+", true),
            ("-.", true),
        ];
        for (text, guarded) in cases {
            assert_eq!(
                raw_cell(&json!(text).to_string(), true)
                    .unwrap()
                    .starts_with('\''),
                guarded,
                "{text:?}"
            );
        }
    }

    #[test]
    fn jsonl_is_the_spool_as_it_is() {
        let rows = [json!({"id": 1, "extra": true})];
        assert_eq!(written(OutputFormat::Jsonl, &rows), "{\"id\":1,\"extra\":true}\n");
    }
}

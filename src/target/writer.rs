//! The one writer of the `file` and `s3` targets: the spooled rows of a load as JSON Lines
//! (copied as they are) or as CSV with a header row, into any `Write`.
//!
//! CSV columns are the template's fields, then the provenance columns; fields kept by
//! `unknown_fields = "keep"` vary from row to row and appear only in JSON Lines output.
//! Values: strings as they are (but for the formula guard), numbers and booleans as JSON
//! writes them, JSON values as JSON text, null as an empty cell. This module writes bytes; where they go is the target's job.

use crate::config::OutputFormat;
use crate::spool::{SliceReader, SpoolSlice};
use serde_json::{Map, Value};
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
            let mut cells: Vec<String> = Vec::with_capacity(columns.len());
            for spool in spools {
                let mut reader = BufReader::new(slices.read(spool)?);
                loop {
                    line.clear();
                    if reader.read_line(&mut line)? == 0 {
                        break;
                    }
                    let row: Map<String, Value> = serde_json::from_str(&line).map_err(|e| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("spool {}: {e}", spool.path.display()),
                        )
                    })?;
                    cells.clear();
                    cells.extend(columns.iter().map(|c| cell(row.get(*c), formula_guard)));
                    csv.write_record(&cells)?;
                }
                drop(reader);
                slices.done(spool)?;
            }
            csv.flush()
        }
    }
}

/// One value as a CSV cell. With `formula_guard`, a string a spreadsheet would take for a
/// formula (OWASP's list: `=`, `+`, `-`, `@`, tab, carriage return first) gets a `'` in
/// front; a number, or a string that is only a number (a decimal such as `"-1.50"`), is a
/// value to a spreadsheet and is left alone.
fn cell(value: Option<&Value>, formula_guard: bool) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s))
            if formula_guard && s.starts_with(['=', '+', '-', '@', '\t', '\r']) && !is_plain_number(s) =>
        {
            format!("'{s}")
        }
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
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
    use serde_json::json;

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
                cell(Some(&json!(text)), true).starts_with('\''),
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

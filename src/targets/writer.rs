//! The one writer of the `file` and `s3` targets: the spooled rows of a load, which the spool
//! holds in the output's format already (JSON Lines, or CSV records: see
//! `formats::CsvEncoder`), copied into any `Write` — after a header row for CSV; a Parquet
//! output is encoded from the spooled JSON Lines by [`super::parquet`].
//!
//! CSV columns are the template's fields, then the provenance columns; fields kept by
//! `unknown_fields = "keep"` vary from row to row and appear only in JSON Lines output.
//! Values: strings as they are (but for the formula guard), numbers and booleans as JSON
//! writes them, JSON values as JSON text, null as an empty cell. This module writes bytes; where they go is the target's job.

use super::OutputFormat;
use crate::spool::{SliceReader, SpoolSlice};
use crate::template::Template;
use std::io::{self, Write};

pub use crate::formats::PROVENANCE;

/// Writes the rows of `spools`, in order, to `out` in `format`; `template` gives the CSV
/// header's fields and the Parquet columns.
pub fn write_load(
    spools: &[SpoolSlice],
    format: OutputFormat,
    template: &Template,
    out: impl Write + Send,
) -> io::Result<()> {
    write_load_with(&mut SliceReader::default(), spools, format, template, out)
}

/// [`write_load`] through `slices`, which may be a consuming reader
/// ([`SliceReader::consuming`]) that gives back the spool's space as the load is written.
///
/// The spool already holds the output's rows ([`crate::spool::SpoolFormat::for_connection`]):
/// JSON Lines, or CSV records, whose header is written here first (the slices leave out the
/// header a CSV spool file starts with). Parquet is encoded from the JSON Lines here.
pub fn write_load_with(
    slices: &mut SliceReader,
    spools: &[SpoolSlice],
    format: OutputFormat,
    template: &Template,
    out: impl Write + Send,
) -> io::Result<()> {
    let mut out = out;
    match format {
        OutputFormat::Parquet(settings) => {
            return super::parquet::write_load(slices, spools, settings, template, out);
        }
        OutputFormat::Csv(csv) => out.write_all(&crate::formats::csv_header(csv, &template.field_names()))?,
        OutputFormat::Jsonl => {}
    }
    slices.copy_all(spools, &mut out)?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::{CsvEncoder, CsvOut};
    use serde_json::{Value, json};

    const FIELDS: [&str; 4] = ["id", "name", "price", "tags"];

    /// A spool slice holding `rows` as the spool would for `format`: JSON Lines, or the CSV
    /// records made while the rows were checked (each field's value as JSON text, then the
    /// provenance).
    fn spool(format: OutputFormat, rows: &[Value]) -> (tempfile::TempDir, SpoolSlice) {
        let mut text = Vec::new();
        for r in rows {
            match format.csv() {
                None => text.extend_from_slice(format!("{r}\n").as_bytes()),
                Some(csv) => {
                    let values: Vec<Option<Vec<u8>>> = FIELDS
                        .iter()
                        .map(|f| r.get(*f).map(|v| v.to_string().into_bytes()))
                        .collect();
                    let line = r["_source_line"].to_string();
                    let texts = [
                        r["_source_key"].as_str().unwrap(),
                        r["_source_version"].as_str().unwrap(),
                        line.as_str(),
                    ];
                    CsvEncoder::new(csv)
                        .record(values.iter().map(|v| v.as_deref()), &texts, &mut text)
                        .unwrap();
                }
            }
        }
        crate::spool::testing::slice_of(&text)
    }

    fn written(format: OutputFormat, rows: &[Value]) -> String {
        let (_dir, path) = spool(format, rows);
        let mut out = Vec::new();
        use crate::template::{BadRowLimit, Column, FieldType, UnknownFields};
        let template = Template {
            table: "t".into(),
            unknown_fields: UnknownFields::Keep,
            max_bad_rows: BadRowLimit::Count(0),
            fields: FIELDS
                .iter()
                .map(|f| {
                    crate::formats::testing::field(f, Column::Name(f.to_string()), FieldType::String, false)
                })
                .collect(),
        };
        write_load(&[path], format, &template, &mut out).unwrap();
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
                    OutputFormat::Csv(CsvOut {
                        delimiter,
                        quote_all,
                        formula_guard: true
                    }),
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
        let csv = |formula_guard| {
            OutputFormat::Csv(CsvOut {
                delimiter: b',',
                quote_all: false,
                formula_guard,
            })
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
        // Which strings are guarded is `formats::csv_out`'s table of cases.
    }

    #[test]
    fn jsonl_is_the_spool_as_it_is() {
        let rows = [json!({"id": 1, "extra": true})];
        assert_eq!(written(OutputFormat::Jsonl, &rows), "{\"id\":1,\"extra\":true}\n");
    }
}

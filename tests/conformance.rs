//! Conformance of the readers the importer uses: the csv-spectrum edge cases parse to the JSON
//! their authors expect, and the JSONTestSuite parsing cases are accepted or rejected as the
//! suite says, through the same `formats::parse` a run uses. Needs no services.

use s3_importd::formats::{self, FormatKind, FormatSpec, ParseError, Provenance, Row, RowError, RowSink};
use s3_importd::template::{BadRowLimit, Template, UnknownFields};
use serde_json::Value;
use std::path::Path;

#[derive(Default)]
struct Collect {
    rows: Vec<Value>,
    errors: Vec<RowError>,
}

impl RowSink for Collect {
    fn row(&mut self, row: &Row<'_>) -> std::io::Result<()> {
        let mut row = row.to_map()?;
        for k in ["_source_key", "_source_version", "_source_line"] {
            row.remove(k);
        }
        self.rows.push(Value::Object(row));
        Ok(())
    }
    fn error(&mut self, error: RowError) {
        self.errors.push(error);
    }
}

/// A template with no fields that keeps every column or key as found.
fn keep_all() -> Template {
    Template {
        table: "t".into(),
        unknown_fields: UnknownFields::Keep,
        max_bad_rows: BadRowLimit::Count(u64::MAX),
        fields: Vec::new(),
    }
}

fn parse(bytes: &[u8], key: &str, kind: FormatKind) -> (Result<formats::ParseStats, ParseError>, Collect) {
    let mut sink = Collect::default();
    let spec = FormatSpec {
        kind,
        ..FormatSpec::default()
    };
    let provenance = Provenance { key, version: "v" };
    let r = formats::parse(bytes, key, &spec, &keep_all(), provenance, &mut sink);
    (r, sink)
}

fn fixtures(dir: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

#[test]
fn csv_spectrum() {
    let cases = fixtures("csv-spectrum/csvs");
    assert_eq!(cases.len(), 12, "the vendored csv-spectrum 2.0.0 has 12 cases");
    for (name, csv) in cases {
        let stem = name.trim_end_matches(".csv");
        let json_path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/csv-spectrum/json")
            .join(format!("{stem}.json"));
        let mut expected: Value = serde_json::from_slice(&std::fs::read(json_path).unwrap()).unwrap();
        if stem == "location_coordinates" {
            // Upstream's expected file disagrees with its own CSV: it is a bare object, not an
            // array, and has a different phone number. The CSV is what a parser reads.
            expected["Contact Phone Number"] = Value::from("2095257564");
            expected = Value::Array(vec![expected]);
        }
        let (r, sink) = parse(&csv, &name, FormatKind::Csv);
        let stats = r.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(sink.errors.is_empty(), "{name}: {:?}", sink.errors);
        assert_eq!(stats.bad_rows, 0, "{name}");
        assert_eq!(Value::Array(sink.rows), expected, "{name}");
    }
}

#[test]
fn json_test_suite() {
    let cases = fixtures("JSONTestSuite/test_parsing");
    assert_eq!(
        cases.len(),
        318,
        "the vendored JSONTestSuite has 318 parsing cases"
    );
    let mut counts = [0usize; 3];
    for (name, bytes) in cases {
        // The reader itself: serde_json, as the jsonl reader uses it for each line.
        let accepted = serde_json::from_slice::<Value>(&bytes).is_ok();
        // The importer, reading the case as a `json` object: rows, or an error it can name.
        let (r, sink) = parse(&bytes, &name, FormatKind::Json);
        let syntax_error = matches!(r, Err(ParseError::Json { .. }));
        if let Err(e) = &r {
            assert!(!e.to_string().is_empty(), "{name}");
            assert!(!e.is_transient(), "{name}: {e}");
        }
        if name.starts_with("y_") {
            counts[0] += 1;
            assert!(accepted, "{name} must be accepted");
            assert!(!syntax_error, "{name}: the importer rejected valid JSON: {r:?}");
            match &r {
                Ok(stats) => assert_eq!(stats.rows as usize, sink.rows.len() + sink.errors.len(), "{name}"),
                Err(ParseError::NotRows { .. }) => {}
                Err(e) => panic!("{name}: {e}"),
            }
        } else if name.starts_with("n_") {
            counts[1] += 1;
            assert!(!accepted, "{name} must be rejected");
            // The BOM-only case is empty once the byte order mark is taken off, which is
            // still no JSON; every n_ case is a syntax error to the importer.
            assert!(syntax_error, "{name}: the importer accepted invalid JSON: {r:?}");
        } else {
            counts[2] += 1;
            // Implementation-defined: either answer, but a clear one.
            assert!(
                r.is_ok() || syntax_error || matches!(r, Err(ParseError::NotRows { .. })),
                "{name}: {r:?}"
            );
        }
    }
    assert_eq!(counts, [95, 188, 35]);
}

/// What an independent reader (pyarrow, fastavro) made of a sample file:
/// `scripts/conformance/expect.py` wrote it.
#[derive(serde::Deserialize)]
struct Expected {
    rows: Option<u64>,
    columns: Option<Vec<String>>,
    #[serde(default)]
    first: serde_json::Map<String, Value>,
    error: Option<String>,
}

/// Whether two delivered values agree: floats to the precision of a 32-bit float (pyarrow
/// widens a float32 to the nearest double, s3-importd writes its shortest text).
fn same(ours: Option<&Value>, theirs: &Value) -> bool {
    match (ours, theirs) {
        (None | Some(Value::Null), Value::Null) => true,
        (Some(Value::Number(a)), Value::Number(b)) if a.is_f64() || b.is_f64() => {
            let (a, b) = (a.as_f64().unwrap_or(f64::NAN), b.as_f64().unwrap_or(f64::NAN));
            (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
        }
        (Some(a), b) => a == b,
        (None, _) => false,
    }
}

/// Reads every vendored sample file of a typed format and compares it with the independent
/// reader's account: the same number of rows, no row errors, only the file's columns, and the
/// first row's scalar values equal. A file s3-importd refuses must be in `refused` with the
/// words its reason contains. Returns the README's table rows.
fn typed_samples(dir: &str, kind: FormatKind, refused: &[(&str, &str)], reads_more: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir);
    let manifest = std::fs::read_to_string(root.join("expected.json")).unwrap();
    let expected: std::collections::BTreeMap<String, Expected> = serde_json::from_str(&manifest).unwrap();
    let files = fixtures(&format!("{dir}/data"));
    assert_eq!(
        files.len(),
        expected.len(),
        "{dir}: run scripts/conformance/expect.py"
    );
    let mut table = Vec::new();
    // Every file is tried; the failures are listed together.
    let mut problems = Vec::new();
    for (name, bytes) in files {
        let want = &expected[&name];
        let (result, sink) = parse(&bytes, &name, kind);
        let refusal = refused.iter().find(|(file, _)| *file == name);
        match result {
            Ok(stats) => {
                let mut wrong = |what: String| problems.push(format!("{name}: {what}"));
                if refusal.is_some() {
                    wrong(format!("read ({} rows); take it out of the refusals", stats.rows));
                }
                let Some(rows) = want.rows else {
                    if !reads_more.contains(&name.as_str()) {
                        wrong(format!(
                            "read {} rows, but the reference refuses it: {:?}",
                            stats.rows, want.error
                        ));
                    }
                    table.push(format!(
                        "| `{name}` | read: {} rows (the reference reader refuses it) |",
                        stats.rows
                    ));
                    continue;
                };
                if stats.rows != rows {
                    wrong(format!("{} rows, the reference {rows}", stats.rows));
                }
                if let Some(e) = sink.errors.first() {
                    wrong(format!("{} row errors, the first {e:?}", sink.errors.len()));
                }
                if let Some(columns) = &want.columns {
                    let keys = sink
                        .rows
                        .iter()
                        .flat_map(|r| r.as_object().into_iter().flat_map(|o| o.keys()));
                    if let Some(key) = keys.into_iter().find(|k| !columns.contains(k)) {
                        wrong(format!("column {key} is not the file's"));
                    }
                }
                if let Some(first) = sink.rows.first() {
                    for (column, theirs) in &want.first {
                        let ours = first.get(column);
                        if !same(ours, theirs) {
                            wrong(format!("first row, {column}: ours {ours:?}, theirs {theirs}"));
                        }
                    }
                }
                table.push(format!("| `{name}` | read: {rows} rows |"));
            }
            Err(e) => {
                let text = e.to_string();
                match refusal {
                    None => problems.push(format!("{name}: refused ({text}), and no refusal is expected")),
                    Some((_, words)) if !text.contains(words) || e.is_transient() => {
                        problems.push(format!("{name}: refused, but not for {words:?}: {text}"))
                    }
                    Some(_) => {}
                }
                let theirs = match &want.error {
                    Some(_) => "the reference reader refuses it too",
                    None => "the reference reader reads it",
                };
                table.push(format!(
                    "| `{name}` | refused: {} ({theirs}) |",
                    text.replace('|', "\\|")
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{dir}:\n{}", problems.join("\n"));
    table
}

/// The Apache parquet-testing data files (tests/fixtures/parquet-testing, Apache-2.0), read
/// exactly as pyarrow reads them, or refused with a clear reason.
#[test]
fn parquet_testing_files() {
    let refused = [
        // arrow-rs cannot read a dictionary page at offset 0 in this file; pyarrow can.
        (
            "dict-page-offset-zero.parquet",
            "Expected list element type of I64 but got I16",
        ),
        // Its one row group is 2 GiB uncompressed: over the default max_row_group_bytes.
        (
            "large_string_map.brotli.parquet",
            "max_row_group_bytes (536870912)",
        ),
        // Written malformed on purpose (a dictionary page with a bad header).
        ("nation.dict-malformed.parquet", "Invalid page header"),
        // arrow-rs reads none of the 6 rows of a repeated group without a LIST annotation:
        // the footer's count catches it, and nothing is delivered.
        (
            "repeated_no_annotation.parquet",
            "the footer lists 6 rows, and the reader found 0",
        ),
    ];
    // Map keys written optional: arrow-rs reads them, pyarrow refuses.
    let reads_more = ["incorrect_map_schema.parquet"];
    let table = typed_samples("parquet-testing", FormatKind::Parquet, &refused, &reads_more);
    println!("{}", table.join("\n"));
}

/// Apache Avro's sample and regression files (tests/fixtures/avro, Apache-2.0), read exactly
/// as fastavro reads them, or refused with a clear reason.
#[test]
fn avro_sample_files() {
    let not_a_record = "its schema is [null,int], not a record";
    let refused = [
        // Records that are not records (a union of null and int): no columns to read.
        ("avro-1237-bad-union-discriminant.avro", not_a_record),
        ("avro-1237-good.avro", not_a_record),
        ("avro-1238-good.avro", not_a_record),
        ("avro-1238-truncated.avro", not_a_record),
        // Ends inside a block; fastavro refuses it too.
        ("person-10.no-codec.avro", "failed to fill whole buffer"),
    ];
    // Metadata that is not UTF-8 (the sync marker written into it): apache-avro and Java read
    // it, fastavro refuses.
    let reads_more = ["syncInMeta.avro"];
    let table = typed_samples("avro", FormatKind::Avro, &refused, &reads_more);
    println!("{}", table.join("\n"));
}

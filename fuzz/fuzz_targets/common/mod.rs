//! What the format fuzz targets share: a connection of each format with a field of every
//! type, and a sink that checks what the parser hands it.

use s3_importd::config::{self, Connection, Files};
use s3_importd::formats::{self, Provenance, Row, RowError, RowSink};
use std::path::Path;
use std::sync::OnceLock;

/// A connection reading `kind` files with a template that has a field of every type.
fn connection(kind: &str) -> Connection {
    let text = format!(
        r#"settle_seconds = 0
[source]
type = "dir"
path = "in"
[format]
type = "{kind}"
[template]
table = "t"
unknown_fields = "keep"
max_bad_rows = "100%"
[[template.fields]]
name = "id"
type = "integer"
required = true
[[template.fields]]
name = "price"
type = "decimal"
[[template.fields]]
name = "name"
default = "none"
[[template.fields]]
name = "ratio"
type = "float"
[[template.fields]]
name = "ok"
type = "boolean"
[[template.fields]]
name = "day"
type = "date"
[[template.fields]]
name = "at"
type = "timestamp"
[[template.fields]]
name = "tags"
type = "json"
[[template.fields]]
name = "colour"
values = ["red", "green"]
[target]
type = "stdout"
"#
    );
    let files = Files {
        connections: vec![("c".to_string(), text)],
        ..Files::default()
    };
    match config::check(Path::new("/fuzz"), &files) {
        Ok(mut config) => config.connections.remove(0),
        Err(e) => panic!("the fuzz connection is invalid: {e}"),
    }
}

/// Checks every row and row error the parser hands over.
struct Checking;

impl RowSink for Checking {
    fn row(&mut self, row: &Row<'_>) -> std::io::Result<()> {
        let value: serde_json::Value = match serde_json::from_slice(row.json()) {
            Ok(v) => v,
            Err(e) => panic!(
                "a delivered row is not JSON ({e}): {:?}",
                String::from_utf8_lossy(row.json())
            ),
        };
        assert!(value.is_object(), "a delivered row is not an object");
        Ok(())
    }

    fn error(&mut self, error: RowError) {
        // No row error holds more than a bounded excerpt of what the file had.
        assert!(
            error.raw.len() <= formats::RAW_CAP,
            "raw of {} bytes",
            error.raw.len()
        );
        assert!(
            error.reason.text().len() <= 4096,
            "reason of {} bytes",
            error.reason.text().len()
        );
    }
}

/// Parses `data` as an object of the given format with the shared template.
pub fn parse(kind: &'static str, key: &str, data: &[u8]) {
    static CONNECTIONS: OnceLock<Vec<(&'static str, Connection)>> = OnceLock::new();
    let connections = CONNECTIONS.get_or_init(|| {
        ["csv", "tsv", "jsonl", "json", "parquet", "avro"]
            .into_iter()
            .map(|k| (k, connection(k)))
            .collect()
    });
    let Some((_, c)) = connections.iter().find(|(k, _)| *k == kind) else {
        panic!("no fuzz connection for {kind}");
    };
    parse_as(key, data, &c.format, c);
}

/// Parses `data` as CSV in a dialect its first byte picks (quote, escape, comment, rows
/// skipped before and after the header), so that the record cap and the csv reader are
/// driven through every state the dialects give them.
pub fn parse_csv_dialects(data: &[u8]) {
    let Some((&pick, data)) = data.split_first() else {
        return;
    };
    static CONNECTION: OnceLock<Connection> = OnceLock::new();
    let c = CONNECTION.get_or_init(|| connection("csv"));
    let mut spec = c.format.clone();
    spec.quote = [Some(b'"'), Some(b'|'), None][pick as usize % 3];
    spec.escape = [None, Some(b'\\'), Some(b'!')][(pick as usize / 3) % 3];
    spec.comment = [None, Some(b'#')][(pick as usize / 9) % 2];
    spec.skip_rows_before_header = (pick as usize / 18) % 3;
    spec.skip_rows_after_header = (pick as usize / 54) % 2;
    if spec.escape.is_some() && spec.escape == spec.quote {
        spec.escape = None;
    }
    parse_as("object.csv", data, &spec, c);
}

/// Parses `data` as JSON Lines in an encoding its first byte picks, so that the transcoder's
/// marking of undecodable text and the scanner of objects over several lines meet every
/// byte sequence.
pub fn parse_jsonl_encodings(data: &[u8]) {
    let Some((&pick, data)) = data.split_first() else {
        return;
    };
    static CONNECTION: OnceLock<Connection> = OnceLock::new();
    let c = CONNECTION.get_or_init(|| connection("jsonl"));
    let mut spec = c.format.clone();
    let labels = ["utf-8", "shift_jis", "utf-16le", "big5", "euc-kr", "windows-1253"];
    spec.encoding = match labels.get(pick as usize % (labels.len() + 1)) {
        Some(label) => formats::Encoding::for_label(label).unwrap_or(formats::Encoding::Utf8),
        None => formats::Encoding::Auto,
    };
    parse_as("object.jsonl", data, &spec, c);
}

/// Parses `data` with `spec` and the connection's template, checking what comes out.
fn parse_as(key: &str, data: &[u8], spec: &formats::FormatSpec, c: &Connection) {
    let provenance = Provenance { key, version: "v" };
    if let Err(e) = formats::parse(data, key, spec, &c.template, provenance, &mut Checking) {
        // A file the parser refuses says why, briefly.
        assert!(
            e.to_string().len() <= 4096,
            "an error of {} bytes",
            e.to_string().len()
        );
    }
}

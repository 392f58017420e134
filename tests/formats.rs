//! End-to-end runs of the real binary against moto for the formats and templates: every codec
//! chosen by `compression = "auto"`, a corrupt stream, a latin-1 file, a JSON array of 100,000
//! objects, a file over `max_bad_rows` and a header missing a required column.

mod common;

use common::*;
use serde_json::{Value, json};
use std::io::Write;

/// The products template: id, name, price as decimal, updated_at read in Europe/Berlin.
const TEMPLATE: &str = r#"
table = "products"
timezone = "Europe/Berlin"

[[fields]]
name = "id"
column = "Product ID"
type = "integer"
required = true

[[fields]]
name = "name"
type = "string"
required = true

[[fields]]
name = "price"
type = "decimal"

[[fields]]
name = "updated_at"
type = "timestamp"
"#;

/// A connection over `prefix` of a moto bucket with the given `[format]` keys and the
/// products template inline, with `template_extra` keys added to it.
fn products(bucket: &str, prefix: &str, format: &str, template_extra: &str) -> String {
    let inline = TEMPLATE.replace("[[fields]]", "[[template.fields]]");
    let (head, fields) = inline.split_once("\n[[").unwrap_or((&inline, ""));
    connection(
        bucket,
        prefix,
        format,
        &format!("[template]{head}\n{template_extra}\n[[{fields}"),
    )
}

/// A connection with the given `[format]` keys and `template`: a `[template]` table, or a
/// `template = "NAME"` line.
fn connection(bucket: &str, prefix: &str, format: &str, template: &str) -> String {
    let rest = if template.starts_with("template =") {
        format!("{template}\n[format]\n{format}\n")
    } else {
        format!("\n[format]\n{format}\n{template}")
    };
    s3_connection_with(bucket, prefix, "", &rest)
}

const CSV: &str = "Product ID,name,price,updated_at\n1,Tea pot,19.99,2026-07-01 12:00:00\n2,Cup,0.10,2026-01-01T00:00:00Z\n";

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

fn bzip2(data: &[u8]) -> Vec<u8> {
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    bz.write_all(data).unwrap();
    bz.finish().unwrap()
}

/// Rows sorted by (source key, line), without the version (an ETag moto chooses).
fn rows_by_key(cfg: &ConfigDir) -> Vec<Value> {
    let mut rows = cfg.rows();
    for r in &mut rows {
        r.as_object_mut().unwrap().remove("_source_version");
    }
    rows.sort_by_key(|r| {
        (
            r["_source_key"].as_str().unwrap_or("").to_string(),
            r["_source_line"].as_u64(),
        )
    });
    rows
}

fn status_json(cfg: &ConfigDir, name: &str) -> Value {
    let out = stdout_of(&run_binary(cfg.path(), &["status", name, "--json"]));
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_codec_by_extension_and_magic_and_a_corrupt_stream() {
    let client = s3();
    let b = bucket(&client, "codecs").await;
    put(&client, &b, "in/a.csv.gz", gzip(CSV.as_bytes())).await;
    put(
        &client,
        &b,
        "in/b.csv.zst",
        zstd::encode_all(CSV.as_bytes(), 3).unwrap(),
    )
    .await;
    put(&client, &b, "in/c.csv.bz2", bzip2(CSV.as_bytes())).await;
    // No compression suffix: the magic number tells.
    put(&client, &b, "in/d.csv", gzip(CSV.as_bytes())).await;
    put(&client, &b, "in/e.csv", CSV).await;
    let whole = gzip(CSV.repeat(200).as_bytes());
    put(&client, &b, "in/f.csv.gz", whole[..whole.len() / 2].to_vec()).await;

    let cfg = ConfigDir::new();
    cfg.connection(
        "codecs",
        &products(&b, "in/", "type = \"auto\"\ncompression = \"auto\"", ""),
    );
    let out = text(&run_binary(cfg.path(), &["run"]).stdout);
    assert!(
        out.contains("codecs: listed 6, new 6, imported 5, rejected 1, failed 0; rows 10, bad rows 0;"),
        "{out}"
    );
    assert!(
        out.contains("in/f.csv.gz: rejected: the gzip stream is corrupt or truncated"),
        "the corrupt object is named with its reason: {out}"
    );
    let rows = rows_by_key(&cfg);
    let keys: Vec<&str> = rows.iter().filter_map(|r| r["_source_key"].as_str()).collect();
    assert_eq!(
        keys,
        [
            "in/a.csv.gz",
            "in/a.csv.gz",
            "in/b.csv.zst",
            "in/b.csv.zst",
            "in/c.csv.bz2",
            "in/c.csv.bz2",
            "in/d.csv",
            "in/d.csv",
            "in/e.csv",
            "in/e.csv"
        ],
        "none of the corrupt object's rows were delivered"
    );
    for pair in rows.chunks(2) {
        assert_eq!(
            pair[0],
            json!({"id": 1, "name": "Tea pot", "price": "19.99",
                   "updated_at": "2026-07-01T10:00:00Z", // 12:00 in Berlin in summer
                   "_source_key": pair[0]["_source_key"], "_source_line": 2})
        );
        assert_eq!(pair[1]["price"], json!("0.10"), "the scale of a decimal is kept");
        assert_eq!(pair[1]["updated_at"], json!("2026-01-01T00:00:00Z"));
    }
    // The rejected object is settled: not retried until it changes.
    let again = stdout_of(&run_binary(cfg.path(), &["run"]));
    assert!(again.contains("codecs: listed 6, new 0,"), "{again}");
}

#[tokio::test(flavor = "multi_thread")]
async fn latin1_and_a_json_array_of_100000_objects() {
    let client = s3();
    let b = bucket(&client, "text").await;
    put(
        &client,
        &b,
        "latin/prices.csv",
        b"Product ID;name;price;updated_at\n1;Cr\xe8me br\xfbl\xe9e;4.50;\n".to_vec(),
    )
    .await;
    let mut array = String::from("[\n");
    for i in 0..100_000 {
        if i > 0 {
            array.push_str(",\n");
        }
        array.push_str(&format!(
            "  {{\"Product ID\": {i}, \"name\": \"item {i}\", \"price\": \"{i}.05\"}}"
        ));
    }
    array.push_str("\n]\n");
    put(&client, &b, "json/all.json", array).await;

    let cfg = ConfigDir::new();
    cfg.connection(
        "latin",
        &products(
            &b,
            "latin/",
            "type = \"csv\"\ndelimiter = \";\"\nencoding = \"latin-1\"",
            "",
        ),
    );
    // This one names its template: templates/products.toml.
    std::fs::create_dir_all(cfg.path().join("templates")).unwrap();
    std::fs::write(cfg.path().join("templates/products.toml"), TEMPLATE).unwrap();
    cfg.connection(
        "json",
        &connection(&b, "json/", "type = \"auto\"", "template = \"products\""),
    );
    let out = stdout_of(&run_binary(cfg.path(), &["run"]));
    assert!(
        out.contains("latin: listed 1, new 1, imported 1, rejected 0, failed 0; rows 1, bad rows 0;"),
        "{out}"
    );
    assert!(
        out.contains("json: listed 1, new 1, imported 1, rejected 0, failed 0; rows 100000, bad rows 0;"),
        "{out}"
    );
    let rows = rows_by_key(&cfg);
    assert_eq!(rows.len(), 100_001);
    assert_eq!(rows[0]["name"], json!("item 0"));
    assert_eq!(
        rows[0]["_source_line"],
        json!(2),
        "an element's line is the line it starts on"
    );
    assert_eq!(rows[99_999]["price"], json!("99999.05"));
    assert_eq!(rows[99_999]["_source_line"], json!(100_001));
    assert_eq!(rows[100_000]["name"], json!("Crème brûlée"));
    assert_eq!(rows[100_000]["updated_at"], Value::Null);
}

#[tokio::test(flavor = "multi_thread")]
async fn over_max_bad_rows_delivers_nothing_and_fills_the_quarantine() {
    let client = s3();
    let b = bucket(&client, "bad").await;
    let mut csv = String::from("Product ID,name,price,updated_at\n");
    for i in 0..10 {
        if i % 3 == 0 {
            csv.push_str(&format!("x{i},bad {i},1.00,\n"));
        } else {
            csv.push_str(&format!("{i},good {i},1.00,\n"));
        }
    }
    put(&client, &b, "in/mixed.csv", csv).await;
    put(&client, &b, "in/fine.csv", CSV).await;

    let cfg = ConfigDir::new();
    cfg.connection(
        "bad",
        &products(&b, "in/", "type = \"csv\"", "max_bad_rows = \"10%\""),
    );
    let out = text(&run_binary(cfg.path(), &["run"]).stdout);
    assert!(
        out.contains("bad: listed 2, new 2, imported 1, rejected 1, failed 0; rows 2, bad rows 4;"),
        "{out}"
    );
    assert!(
        out.contains(
            "in/mixed.csv: rejected: 4 of 10 rows are bad, over max_bad_rows = \"10%\", which allows 1 of 10; none of its rows were delivered"
        ),
        "{out}"
    );
    let rows = rows_by_key(&cfg);
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter().all(|r| r["_source_key"] == json!("in/fine.csv")),
        "{rows:?}"
    );

    let status = status_json(&cfg, "bad");
    assert_eq!(status["quarantined_rows"], json!(4));
    let latest = status["latest_quarantined"].as_array().unwrap();
    let mut lines: Vec<u64> = latest.iter().map(|q| q["line"].as_u64().unwrap()).collect();
    lines.sort();
    assert_eq!(lines, [2, 5, 8, 11]);
    let q = latest.iter().find(|q| q["line"] == json!(5)).unwrap();
    assert_eq!(q["key"], json!("in/mixed.csv"));
    assert_eq!(q["field"], json!("id"));
    assert_eq!(q["reason"], json!("\"x3\" is not an integer"));
    assert_eq!(q["raw"], json!("x3,bad 3,1.00,"));
    assert!(q["version"].as_str().is_some_and(|v| !v.is_empty()));

    let text_status = stdout_of(&run_binary(cfg.path(), &["status", "bad"]));
    assert!(text_status.contains("quarantined rows 4"), "{text_status}");
    assert!(
        text_status.contains("in/mixed.csv line 5 field id: \"x3\" is not an integer"),
        "{text_status}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_header_missing_a_required_column_rejects_the_file() {
    let client = s3();
    let b = bucket(&client, "header").await;
    put(&client, &b, "in/a.csv", "id,title,price\n1,Tea pot,2.00\n").await;
    let cfg = ConfigDir::new();
    cfg.connection("header", &products(&b, "in/", "type = \"csv\"", ""));
    let out = text(&run_binary(cfg.path(), &["run"]).stdout);
    assert!(
        out.contains("header: listed 1, new 1, imported 0, rejected 1, failed 0; rows 0, bad rows 0;"),
        "{out}"
    );
    assert!(
        out.contains(
            "in/a.csv: rejected: the header lacks the required columns \"Product ID\", \"name\"; the header found is \"id\", \"title\", \"price\""
        ),
        "{out}"
    );
    assert!(cfg.rows().is_empty());
    let status = status_json(&cfg, "header");
    assert!(
        status["last_error"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("lacks the required columns")),
        "{status}"
    );
}

#[test]
fn a_template_without_fields_that_keeps_unknown_fields_imports_files_as_they_are() {
    let cfg = ConfigDir::new();
    cfg.inbox(
        "raw",
        &[(
            "a.csv",
            "sku,qty,note\nA-1,3,\nB-2,10,\"two, words\"\n".as_bytes(),
        )],
    );
    let toml = "settle_seconds = 0\n[source]\ntype = \"dir\"\npath = \"in/raw\"\n[format]\ntype = \"csv\"\n[template]\ntable = \"raw\"\nunknown_fields = \"keep\"\n[target]\ntype = \"file\"\npath = \"out\"\n".to_string();
    cfg.connection("raw", &toml);
    let out = stdout_of(&run_binary(cfg.path(), &["run"]));
    assert!(
        out.contains("imported 1, rejected 0, failed 0; rows 2, bad rows 0"),
        "{out}"
    );
    let rows: Vec<serde_json::Value> = cfg
        .rows()
        .into_iter()
        .map(|mut r| {
            r.as_object_mut().unwrap().retain(|k, _| !k.starts_with('_'));
            r
        })
        .collect();
    assert_eq!(
        rows,
        [
            // Kept as found: without `null_values`, an empty cell stays an empty string.
            serde_json::json!({"sku": "A-1", "qty": "3", "note": ""}),
            serde_json::json!({"sku": "B-2", "qty": "10", "note": "two, words"}),
        ]
    );
    // Without keep, a template with no fields is refused, with the way out.
    cfg.connection("raw", &toml.replace("unknown_fields = \"keep\"\n", ""));
    let refused = run_binary(cfg.path(), &["validate"]);
    assert!(
        text(&refused.stderr).contains("or set unknown_fields = \"keep\" to import every column as it is"),
        "{}",
        text(&refused.stderr)
    );
}

#[test]
fn null_values_and_true_false_values() {
    let cfg = ConfigDir::new();
    cfg.inbox(
        "n",
        &[(
            "a.csv",
            "id,qty,active\n1,NULL,Y\n2,N/A,N\n3,,Y\n4,7,maybe\n5,NONE,N\n".as_bytes(),
        )],
    );
    let toml = "settle_seconds = 0\n[source]\ntype = \"dir\"\npath = \"in/n\"\n[format]\ntype = \"csv\"\nnull_values = [\"\", \"NULL\", \"N/A\"]\n[template]\ntable = \"n\"\nmax_bad_rows = \"5\"\n[[template.fields]]\nname = \"id\"\nrequired = true\n[[template.fields]]\nname = \"qty\"\ntype = \"integer\"\n[[template.fields]]\nname = \"active\"\ntype = \"boolean\"\ntrue_values = [\"Y\"]\nfalse_values = [\"N\"]\n[target]\ntype = \"file\"\npath = \"out\"\n";
    cfg.connection("n", toml);
    let out = stdout_of(&run_binary(cfg.path(), &["run"]));
    assert!(out.contains("rows 3, bad rows 2"), "{out}");
    let rows: Vec<(String, serde_json::Value, serde_json::Value)> = cfg
        .rows()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["qty"].clone(),
                r["active"].clone(),
            )
        })
        .collect();
    use serde_json::json;
    assert_eq!(
        rows,
        [
            ("1".to_string(), json!(null), json!(true)),
            ("2".to_string(), json!(null), json!(false)),
            ("3".to_string(), json!(null), json!(true)),
        ]
    );
    let status = stdout_of(&run_binary(cfg.path(), &["status", "n"]));
    assert!(
        status.contains("field active: \"maybe\" is not one of true_values or false_values"),
        "{status}"
    );
    // NONE is not in null_values: it is text, and not an integer.
    assert!(status.contains("line 6 field qty"), "{status}");
}

#[test]
fn rows_before_and_after_the_header_and_comment_lines_are_skipped_with_exact_lines() {
    let cfg = ConfigDir::new();
    cfg.inbox(
        "s",
        &[(
            "a.csv",
            "Export of 2026-11-30, \"all\" regions\n\nid,qty\nunits,pcs\n1,5\n# a note\n2,x\n3,7\n"
                .as_bytes(),
        )],
    );
    let toml = "settle_seconds = 0\n[source]\ntype = \"dir\"\npath = \"in/s\"\n[format]\ntype = \"csv\"\nskip_rows_before_header = 1\nskip_rows_after_header = 1\ncomment_char = \"#\"\n[template]\ntable = \"s\"\nmax_bad_rows = \"5\"\n[[template.fields]]\nname = \"id\"\nrequired = true\n[[template.fields]]\nname = \"qty\"\ntype = \"integer\"\n[target]\ntype = \"file\"\npath = \"out\"\n";
    cfg.connection("s", toml);
    let preview = stdout_of(&run_binary(cfg.path(), &["preview", "s"]));
    assert!(
        preview.contains("read as csv, delimiter ',', quote '\"' (doubled to escape); 1 rows skipped first; then a header; 1 rows skipped after it; lines starting with '#' skipped"),
        "{preview}"
    );
    let out = stdout_of(&run_binary(cfg.path(), &["run"]));
    assert!(out.contains("rows 2, bad rows 1"), "{out}");
    let lines: Vec<(String, u64)> = cfg
        .rows()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["_source_line"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(lines, [("1".to_string(), 5), ("3".to_string(), 8)]);
    let status = stdout_of(&run_binary(cfg.path(), &["status", "s"]));
    assert!(status.contains("line 7 field qty"), "{status}");
}

#[test]
fn template_infer_writes_a_template_that_validates_and_imports_its_files_without_bad_rows() {
    let cfg = ConfigDir::new();
    cfg.inbox(
        "partner",
        &[
            (
                "a.csv",
                "Product ID,name,price,shipped,updated at,active,code,note\n1,Tea pot,19.99,30/11/2026,2026-11-30 10:00:00,true,007,\n2,,0.10,01/02/2026,2026-12-01 08:30:00,false,012,x\n"
                    .as_bytes(),
            ),
            (
                "b.csv",
                "Product ID,name,price,shipped,updated at,active,code,note\n3,Cup,5,15/01/2026,2026-01-15 00:00:00,True,100,\n"
                    .as_bytes(),
            ),
        ],
    );
    // `template` is a top-level key or a table: written first, or last.
    let connection = |template: &str| {
        let (top, table) = if template.starts_with('[') {
            ("", template)
        } else {
            (template, "")
        };
        format!(
            "settle_seconds = 0\n{top}\n[source]\ntype = \"dir\"\npath = \"in/partner\"\n[format]\ntype = \"csv\"\n[target]\ntype = \"file\"\npath = \"out\"\n{table}\n"
        )
    };
    cfg.connection(
        "partner",
        &connection("[template]\ntable = \"products\"\nunknown_fields = \"keep\""),
    );
    let inferred = run_binary(cfg.path(), &["template", "infer", "partner"]);
    assert!(inferred.status.success(), "{}", text(&inferred.stderr));
    let toml = text(&inferred.stdout);
    for field in [
        "name = \"product_id\"\ncolumn = \"Product ID\"\ntype = \"integer\"\nrequired = true\n",
        "name = \"name\"\ntype = \"string\"\n\n",
        "name = \"price\"\ntype = \"decimal\"\nrequired = true\n",
        "name = \"shipped\"\ntype = \"date\"\nformat = \"%d/%m/%Y\"\nrequired = true\n",
        "name = \"updated_at\"\ncolumn = \"updated at\"\ntype = \"timestamp\"\nformat = \"%Y-%m-%d %H:%M:%S\"\nrequired = true\n",
        "name = \"active\"\ntype = \"boolean\"\nrequired = true\n",
        // Leading zeros are an identifier's: kept as text.
        "name = \"code\"\ntype = \"string\"\nrequired = true\n",
    ] {
        assert!(toml.contains(field), "{field} not in\n{toml}");
    }
    std::fs::create_dir_all(cfg.path().join("templates")).unwrap();
    std::fs::write(cfg.path().join("templates/partner.toml"), &toml).unwrap();
    cfg.connection("partner", &connection("template = \"partner\""));
    let validated = run_binary(cfg.path(), &["validate"]);
    assert!(validated.status.success(), "{}\n{toml}", text(&validated.stderr));
    // The header's other way, followed word for word: `table` under [template] in the
    // connection, each [[fields]] written as [[template.fields]].
    assert!(
        toml.contains(
            "put `table` under [template] there and\n# write each [[fields]] as [[template.fields]]"
        ),
        "{toml}"
    );
    let inline = format!(
        "[template]\n{}",
        toml.replace("[[fields]]", "[[template.fields]]")
    );
    cfg.connection("partner", &connection(&inline));
    let validated = run_binary(cfg.path(), &["validate"]);
    assert!(
        validated.status.success(),
        "{}\n{inline}",
        text(&validated.stderr)
    );
    cfg.connection("partner", &connection("template = \"partner\""));
    let out = stdout_of(&run_binary(cfg.path(), &["run"]));
    assert!(
        out.contains("imported 2, rejected 0, failed 0; rows 3, bad rows 0"),
        "{out}"
    );
    let mut rows = cfg.rows();
    rows.sort_by_key(|r| r["product_id"].as_i64());
    assert_eq!(rows[0]["product_id"], json!(1));
    assert_eq!(rows[0]["price"], json!("19.99"));
    assert_eq!(rows[0]["shipped"], json!("2026-11-30"));
    assert_eq!(rows[0]["code"], json!("007"));
    assert_eq!(rows[2]["active"], json!(true));
    // A folder with nothing in it: said so, exit 1.
    std::fs::remove_dir_all(cfg.path().join("in/partner")).unwrap();
    std::fs::create_dir_all(cfg.path().join("in/partner")).unwrap();
    let empty = run_binary(cfg.path(), &["template", "infer", "partner"]);
    assert_eq!(empty.status.code(), Some(1));
    assert!(
        text(&empty.stderr).contains("no file in"),
        "{}",
        text(&empty.stderr)
    );
}

/// A Parquet file from a `dir` source: `template infer` writes a template that validates, and
/// `preview` and `run` read its typed columns by name (`_source_line` is the row's number).
#[test]
fn parquet_files_are_read_by_column_name_with_their_types() {
    use arrow_array::{ArrayRef, Date32Array, Decimal128Array, Int64Array, RecordBatch, StringArray};
    use std::sync::Arc;
    // "Product ID" may not be null; the others may.
    let batch = RecordBatch::try_from_iter_with_nullable([
        (
            "Product ID",
            Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef,
            false,
        ),
        (
            "name",
            Arc::new(StringArray::from(vec![Some("Tea pot"), None, Some("Cup")])),
            true,
        ),
        (
            "price",
            Arc::new(
                Decimal128Array::from(vec![1999, 10, 500])
                    .with_precision_and_scale(9, 2)
                    .unwrap(),
            ),
            true,
        ),
        (
            "shipped",
            Arc::new(Date32Array::from(vec![20_000, 20_001, 20_002])),
            true,
        ),
    ])
    .unwrap();
    let mut bytes = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let cfg = ConfigDir::new();
    cfg.inbox("pq", &[("a.parquet", &bytes)]);
    let connection = |template: &str| {
        format!(
            "settle_seconds = 0\n{template}\n[source]\ntype = \"dir\"\npath = \"in/pq\"\n[format]\ntype = \"auto\"\n[target]\ntype = \"file\"\npath = \"out\"\n"
        )
    };
    // A table written after [target]: `connection`'s top-level slot takes only keys.
    cfg.connection(
        "pq",
        &(connection("") + "[template]\ntable = \"products\"\nunknown_fields = \"keep\"\n"),
    );
    let inferred = run_binary(cfg.path(), &["template", "infer", "pq"]);
    assert!(inferred.status.success(), "{}", text(&inferred.stderr));
    let toml = text(&inferred.stdout);
    // Read from the footer: the types and nullability the file declares, no sampling.
    assert!(toml.contains("from the schemas of 1 file"), "{toml}");
    for field in [
        "name = \"product_id\"\ncolumn = \"Product ID\"\ntype = \"integer\"\nrequired = true\n",
        "name = \"price\"\ntype = \"decimal\"\n\n",
        "name = \"shipped\"\ntype = \"date\"\n",
    ] {
        assert!(toml.contains(field), "{field} not in\n{toml}");
    }
    assert!(!toml.contains("type = \"date\"\nrequired"), "{toml}");
    std::fs::create_dir_all(cfg.path().join("templates")).unwrap();
    std::fs::write(cfg.path().join("templates/pq.toml"), &toml).unwrap();
    cfg.connection("pq", &connection("template = \"pq\""));
    let validated = run_binary(cfg.path(), &["validate"]);
    assert!(validated.status.success(), "{}\n{toml}", text(&validated.stderr));
    let preview = stdout_of(&run_binary(cfg.path(), &["preview", "pq"]));
    assert!(preview.contains("parquet"), "{preview}");
    for line in [
        "Parquet schema, 4 columns:",
        "Product ID  Int64             required",
        "price       Decimal128(9, 2)  nullable",
        "3 rows in 1 row group (3 rows, ",
    ] {
        assert!(preview.contains(line), "{line} not in\n{preview}");
    }
    let out = stdout_of(&run_binary(cfg.path(), &["run"]));
    assert!(
        out.contains("imported 1, rejected 0, failed 0; rows 3, bad rows 0"),
        "{out}"
    );
    let rows = cfg.rows();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["product_id"], serde_json::json!(1));
    assert_eq!(rows[0]["price"], serde_json::json!("19.99"));
    assert_eq!(rows[1]["name"], serde_json::json!(null));
    assert_eq!(rows[2]["shipped"], serde_json::json!("2024-10-06"));
    assert_eq!(rows[2]["_source_line"], serde_json::json!(3));
}

/// Avro files an event pipeline wrote, and Parquet beside them in one folder read with
/// `type = "auto"` (one by its extension, one by its magic bytes only): fields by name, from
/// files whose columns were added, removed, reordered and widened; a file lacking a required
/// column, and one whose column has a type the field cannot take, rejected with the reason.
#[test]
fn typed_files_whose_schemas_evolve_are_read_by_name_and_a_file_lacking_a_column_is_rejected() {
    use apache_avro::types::Value as Avro;
    use arrow_array::{ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray};
    use std::sync::Arc;
    let parquet = |batch: RecordBatch| {
        let mut bytes = Vec::new();
        let mut writer = parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        bytes
    };
    let avro = |schema: &str, rows: Vec<Vec<(&str, Avro)>>| {
        let schema = apache_avro::Schema::parse_str(schema).unwrap();
        let mut writer =
            apache_avro::Writer::with_codec(&schema, Vec::new(), apache_avro::Codec::Snappy).unwrap();
        for row in rows {
            let fields = row.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            writer.append_value(Avro::Record(fields)).unwrap();
        }
        writer.into_inner().unwrap()
    };
    // January: id as int32, then name.
    let a = parquet(
        RecordBatch::try_from_iter([
            ("id", Arc::new(Int32Array::from(vec![1, 2])) as ArrayRef),
            ("name", Arc::new(StringArray::from(vec!["tea", "pot"]))),
        ])
        .unwrap(),
    );
    // February: reordered, id widened to int64, a column added.
    let b = parquet(
        RecordBatch::try_from_iter([
            ("name", Arc::new(StringArray::from(vec!["cup"])) as ArrayRef),
            ("note", Arc::new(StringArray::from(vec!["new"]))),
            ("id", Arc::new(Int64Array::from(vec![3_000_000_000]))),
        ])
        .unwrap(),
    );
    // March, from the event pipeline: Avro, name removed (it is not required).
    let c = avro(
        r#"{"type":"record","name":"r","fields":[{"name":"qty","type":"int"},{"name":"id","type":"long"}]}"#,
        vec![vec![("qty", Avro::Int(5)), ("id", Avro::Long(4))]],
    );
    // April: no id at all.
    let d = avro(
        r#"{"type":"record","name":"r","fields":[{"name":"name","type":"string"}]}"#,
        vec![vec![("name", Avro::String("lost".into()))]],
    );
    // May: id as a float, which an integer field cannot take.
    let e = parquet(
        RecordBatch::try_from_iter([(
            "id",
            Arc::new(arrow_array::Float64Array::from(vec![1.5])) as ArrayRef,
        )])
        .unwrap(),
    );
    let cfg = ConfigDir::new();
    cfg.inbox(
        "typed",
        &[
            ("2024-01.parquet", &a),
            ("2024-02.parquet", &b),
            // No extension: told by its first bytes.
            ("2024-03-events", &c),
            ("2024-04.avro", &d),
            ("2024-05.parquet", &e),
        ],
    );
    cfg.connection(
        "typed",
        "settle_seconds = 0\n[source]\ntype = \"dir\"\npath = \"in/typed\"\n[format]\ntype = \"auto\"\n[target]\ntype = \"file\"\npath = \"out\"\n[template]\ntable = \"t\"\nunknown_fields = \"ignore\"\n[[template.fields]]\nname = \"id\"\ntype = \"integer\"\nrequired = true\n[[template.fields]]\nname = \"name\"\ntype = \"string\"\n",
    );
    let ran = run_binary(cfg.path(), &["run"]);
    let out = stdout_of(&ran);
    assert!(
        out.contains("imported 3, rejected 2, failed 0; rows 4, bad rows 0"),
        "{out}"
    );
    let log = text(&ran.stderr);
    let got: Vec<(String, Value, Value)> = rows_by_key(&cfg)
        .iter()
        .map(|r| {
            (
                r["_source_key"].as_str().unwrap_or("").to_string(),
                r["id"].clone(),
                r["name"].clone(),
            )
        })
        .collect();
    let want = [
        ("2024-01.parquet", json!(1), json!("tea")),
        ("2024-01.parquet", json!(2), json!("pot")),
        ("2024-02.parquet", json!(3_000_000_000_i64), json!("cup")),
        ("2024-03-events", json!(4), json!(null)),
    ];
    let want: Vec<(String, Value, Value)> = want
        .iter()
        .map(|(k, i, n)| (k.to_string(), i.clone(), n.clone()))
        .collect();
    assert_eq!(got, want);
    for reason in [
        "the Avro schema lacks the required column \"id\"; the file's columns are \"name\"",
        "column \"id\" is Float64 in the file, which cannot be read as the integer field \"id\"; declare the field as type = \"float\"",
    ] {
        assert!(log.contains(reason), "{reason} not in\n{log}");
    }
}

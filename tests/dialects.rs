//! The CSV dialect options, the encodings and JSON Lines objects over several lines, checked
//! against an independent reader: each file of a table is imported by the real binary (a
//! `dir` source, schemaless template, `file` target) and read by Python's `csv` module (or
//! `json.JSONDecoder.raw_decode` for JSON Lines); the rows and their `_source_line` must be
//! the same.

mod common;

use common::*;
use serde_json::{Value, json};

/// A file of the table: its `[format]` keys, its text and the encoding it is written in
/// (a WHATWG label; Python's name for it).
struct Case {
    format: &'static str,
    text: &'static str,
    encoding: (&'static str, &'static str),
    /// Options the oracle reads the file with (Python `csv.reader` arguments and ours).
    oracle: Value,
}

const UTF8: (&str, &str) = ("utf-8", "utf-8");

fn csv_case(
    format: &'static str,
    text: &'static str,
    encoding: (&'static str, &'static str),
    oracle: Value,
) -> Case {
    Case {
        format,
        text,
        encoding,
        oracle,
    }
}

/// The table: every option alone, then combined, then each encoding with text it alone
/// holds.
fn cases() -> Vec<Case> {
    let plain = json!({});
    vec![
        // CRLF endings with a quoted line break and doubled quotes.
        csv_case(
            "",
            "id,name\r\n1,\"Grüße, \"\"quoted\"\"\"\r\n2,\"two\r\nlines\"\r\n3,last\r\n",
            UTF8,
            plain.clone(),
        ),
        // `^`-delimited, quoted with `|` and escaping with `!`, line breaks inside values.
        csv_case(
            "delimiter = \"^\"\nquote_char = \"|\"\nescape_char = \"!\"\ndouble_quote = false",
            "id^when^note\n1^|2021-07-14 10:00|^|a !| pipe|\n2^|2021-07-15\n11:00|^|two\nline !! note|\n3^x^y\n",
            UTF8,
            json!({"delimiter": "^", "quotechar": "|", "escapechar": "!", "doublequote": false}),
        ),
        // `;`-delimited, quoted with `|`.
        csv_case(
            "delimiter = \";\"\nquote_char = \"|\"",
            "id;name\n1;|semi; colon|\n2;|pipe || doubled|\n3;\"quotes\" stay\n",
            UTF8,
            json!({"delimiter": ";", "quotechar": "|"}),
        ),
        // `|`-delimited, escaping with `@` inside quotes.
        csv_case(
            "delimiter = \"|\"\nescape_char = \"@\"",
            "id|name\n1|\"at @\" quote\"\n2|\"at @@ sign\"\n3|plain\n",
            UTF8,
            json!({"delimiter": "|", "escapechar": "@", "doublequote": false}),
        ),
        // An escape character and doubled quotes, both (double_quote is on by default).
        csv_case(
            "escape_char = \"\\\\\"",
            "id,name\n1,\"a \"\"b\"\" \\\"c\\\" \\\\ d\"\n2,plain\n",
            UTF8,
            json!({"escapechar": "\\", "doublequote": true}),
        ),
        // The escape outside quotes too: a delimiter, a line break, a leading quote, itself.
        csv_case(
            "escape_char = \"\\\\\"\ncomment_char = \"#\"",
            "id,name\n1,a\\,b\n2,\"q\\\"x\"\n3,two\\\nlines\n4,\\\"lead\n5,back\\\\slash\n\\#6,not a comment\n",
            UTF8,
            json!({"escapechar": "\\"}),
        ),
        // Doubled quotes off, no escape character: a second quote ends the quoted part, and
        // what follows it is text (`a"b"`).
        csv_case(
            "double_quote = false",
            "id,name\n1,\"a\"\"b\"\n2,plain\n",
            UTF8,
            json!({"doublequote": false}),
        ),
        // Null values that leave strings alone.
        csv_case(
            "null_values = [\"\", \"NULL\"]\nstrings_can_be_null = false",
            "id,qty,note\n1,NULL,\n2,,x\n",
            UTF8,
            json!({"null_values": ["", "NULL"], "strings_can_be_null": false}),
        ),
        // No quote character: quotes are ordinary text.
        csv_case(
            "quote_char = \"\"",
            "id,name\n1,\"half\n2,a \"b\" c\n",
            UTF8,
            json!({"quoting": "none"}),
        ),
        // A banner above the header, a units row below it, comment lines, a blank line.
        csv_case(
            "skip_rows_before_header = 2\nskip_rows_after_header = 1\ncomment_char = \"#\"",
            "Export of 2026-11-30\n\"all\", regions\nid,qty\nid,pcs\n1,5\n# a note\n\n2,7\n",
            UTF8,
            json!({"skip_before": 2, "skip_after": 1, "comment": "#"}),
        ),
        // Values that mean null.
        csv_case(
            "null_values = [\"\", \"NULL\", \"N/A\"]",
            "id,qty,note\n1,NULL,\n2,N/A,x\n3,7,null\n",
            UTF8,
            json!({"null_values": ["", "NULL", "N/A"]}),
        ),
        // Tabs.
        csv_case(
            "type = \"tsv\"",
            "id\tname\n1\ta, b\n2\t\"tab\there\"\n",
            UTF8,
            json!({"delimiter": "\t"}),
        ),
        // Everything at once, in windows-1250 with CRLF endings.
        csv_case(
            "delimiter = \";\"\nquote_char = \"'\"\nescape_char = \"\\\\\"\nskip_rows_before_header = 1\nskip_rows_after_header = 1\ncomment_char = \"#\"\nnull_values = [\"\", \"-\"]\nencoding = \"windows-1250\"",
            "Zestawienie; łódź\r\nid;miasto;uwagi\r\n-;-;-\r\n1;'Łódź; centrum';-\r\n# komentarz\r\n2;'Kraków\r\nPodgórze';'it\\'s'\r\n3;Gdańsk;\r\n",
            ("windows-1250", "cp1250"),
            json!({"delimiter": ";", "quotechar": "'", "escapechar": "\\", "doublequote": false,
                   "skip_before": 1, "skip_after": 1, "comment": "#", "null_values": ["", "-"]}),
        ),
        // Each encoding with text only it (of these) writes.
        csv_case(
            "encoding = \"big5\"",
            "id,name\n1,中文資料\n2,\"臺北, 高雄\"\n",
            ("big5", "big5"),
            plain.clone(),
        ),
        csv_case(
            "encoding = \"gbk\"",
            "id,name\n1,简体中文\n",
            ("gbk", "gbk"),
            plain.clone(),
        ),
        csv_case(
            "encoding = \"gb18030\"",
            "id,name\n1,简体中文 €\n",
            ("gb18030", "gb18030"),
            plain.clone(),
        ),
        csv_case(
            "encoding = \"shift_jis\"",
            "id,name\n1,データ\n2,ｶﾀｶﾅ\n",
            ("shift_jis", "shift_jis"),
            plain.clone(),
        ),
        csv_case(
            "encoding = \"euc-kr\"",
            "id,name\n1,데이터\n",
            ("euc-kr", "euc_kr"),
            plain.clone(),
        ),
        csv_case(
            "encoding = \"windows-1256\"",
            "id,name\n1,البيانات\n",
            ("windows-1256", "cp1256"),
            plain.clone(),
        ),
        csv_case(
            "encoding = \"koi8-r\"",
            "id,name\n1,данные\n",
            ("koi8-r", "koi8_r"),
            plain.clone(),
        ),
        csv_case(
            "encoding = \"iso-8859-7\"",
            "id,name\n1,δεδομένα\n",
            ("iso-8859-7", "iso8859_7"),
            plain.clone(),
        ),
        csv_case(
            "encoding = \"windows-1252\"",
            "id,name\n1,Grüße ½ €\n",
            ("windows-1252", "cp1252"),
            plain.clone(),
        ),
        // UTF-16 with its byte order mark, whatever the setting says.
        csv_case(
            "",
            "id,name\r\n1,Grüße 中文\r\n",
            ("utf-16le", "utf-16"),
            plain.clone(),
        ),
        csv_case(
            "encoding = \"auto\"",
            "id,name\n1,Grüße\n",
            ("windows-1252", "cp1252"),
            plain.clone(),
        ),
        csv_case(
            "encoding = \"auto\"",
            "id,name\n1,Grüße 中文\n",
            UTF8,
            plain.clone(),
        ),
        // JSON Lines: objects over several lines, concatenated, several on a line.
        Case {
            format: "type = \"jsonl\"",
            text: "{\n  \"id\": 1,\n  \"tags\": [\n    {\"k\": \"a\"},\n    {\"k\": \"}\"}\n  ]\n}\n{\"id\": 2, \"note\": \"two\\nlines\"}{\"id\": 3}\n\n\n{\r\n\"id\": 4,\r\n\"nested\": {\"deep\": [1, [2, {\"x\": null}]]}\r\n}\r\n",
            encoding: UTF8,
            oracle: json!({"json": true}),
        },
    ]
}

/// Python's reading of a file: each record's (first line, row).
const ORACLE: &str = r#"
import csv, io, json, sys
opts = json.loads(sys.argv[2])
data = open(sys.argv[1], "rb").read()
text = data.decode(sys.argv[3])
if text.startswith("\ufeff"):
    text = text[1:]
out = []
if opts.get("json"):
    decoder, at, line = json.JSONDecoder(), 0, 1
    while True:
        while at < len(text) and text[at] in " \t\r\n":
            line += text[at] == "\n"
            at += 1
        if at == len(text):
            break
        value, end = decoder.raw_decode(text, at)
        out.append([line, value])
        line += text.count("\n", at, end)
        at = end
    print(json.dumps(out))
    sys.exit()
kw = {"delimiter": opts.get("delimiter", ",")}
if opts.get("quoting") == "none":
    kw["quoting"] = csv.QUOTE_NONE
else:
    kw["quotechar"] = opts.get("quotechar", '"')
if "escapechar" in opts:
    kw["escapechar"] = opts["escapechar"]
if "doublequote" in opts:
    kw["doublequote"] = opts["doublequote"]
reader = csv.reader(io.StringIO(text, newline=""), **kw)
# Every column of these files is kept as a string.
nulls = [] if opts.get("strings_can_be_null") is False else opts.get("null_values", [""])
records, previous = [], 0
for record in reader:
    first = previous + 1
    previous = reader.line_num
    if record == []:
        continue
    if "comment" in opts and record[0].startswith(opts["comment"]):
        continue
    records.append((first, record))
records = records[opts.get("skip_before", 0):]
header, records = records[0][1], records[1 + opts.get("skip_after", 0):]
for first, record in records:
    out.append([first, {h: (None if v in nulls else v) for h, v in zip(header, record)}])
print(json.dumps(out))
"#;

#[test]
fn every_dialect_option_and_encoding_reads_as_pythons_csv_module_does() {
    let cfg = ConfigDir::new();
    let cases = cases();
    for (i, case) in cases.iter().enumerate() {
        let encoding = encoding_rs::Encoding::for_label(case.encoding.0.as_bytes()).unwrap();
        let bytes: Vec<u8> = if encoding == encoding_rs::UTF_16LE {
            let mut bytes = vec![0xff, 0xfe];
            bytes.extend(case.text.encode_utf16().flat_map(|u| u.to_le_bytes()));
            bytes
        } else {
            let (bytes, _, unmappable) = encoding.encode(case.text);
            assert!(!unmappable, "case {i}: {} cannot write its text", encoding.name());
            bytes.into_owned()
        };
        let file = format!(
            "case{i}.{}",
            if case.format.contains("jsonl") {
                "jsonl"
            } else {
                "csv"
            }
        );
        cfg.inbox(&format!("c{i}"), &[(&file, &bytes)]);
        let format = if case.format.contains("type =") {
            case.format.to_string()
        } else {
            format!("type = \"csv\"\n{}", case.format)
        };
        cfg.connection(
            &format!("c{i}"),
            &format!(
                "settle_seconds = 0\n[source]\ntype = \"dir\"\npath = \"in/c{i}\"\n[format]\n{format}\n[template]\ntable = \"c{i}\"\nunknown_fields = \"keep\"\nmax_bad_rows = \"0\"\n[target]\ntype = \"file\"\npath = \"out\"\n"
            ),
        );
    }
    let out = stdout_of(&run_binary(cfg.path(), &["run"]));
    let rows = cfg.rows();
    for (i, case) in cases.iter().enumerate() {
        let path = cfg.path().join(format!("in/c{i}"));
        let file = std::fs::read_dir(&path).unwrap().next().unwrap().unwrap().path();
        let oracle = std::process::Command::new("python3")
            .args(["-c", ORACLE])
            .arg(&file)
            .arg(case.oracle.to_string())
            .arg(case.encoding.1)
            .output()
            .expect("python3 runs (scripts/test needs it for moto too)");
        assert!(oracle.status.success(), "case {i}: {}", text(&oracle.stderr));
        let want: Value = serde_json::from_slice(&oracle.stdout).unwrap();
        let name = file.file_name().unwrap().to_str().unwrap().to_string();
        let got: Vec<Value> = rows
            .iter()
            .filter(|r| r["_source_key"] == json!(name))
            .map(|r| {
                let mut row = r.as_object().unwrap().clone();
                let line = row.remove("_source_line").unwrap();
                row.retain(|k, _| !k.starts_with('_'));
                json!([line, row])
            })
            .collect();
        assert_eq!(
            Value::Array(got),
            want,
            "case {i} ({}):\n{}\nrun: {out}",
            case.format,
            case.text
        );
    }
    // Every file was imported whole: no bad row hides behind an equal count.
    for i in 0..cases.len() {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("c{i}: ")))
            .unwrap_or_default();
        assert!(
            line.contains("imported 1, rejected 0, failed 0") && line.contains("bad rows 0"),
            "case {i}: {out}"
        );
    }
}

#[test]
fn strings_can_be_null_false_leaves_string_fields_their_text_and_nulls_the_others() {
    let cfg = ConfigDir::new();
    cfg.inbox("n", &[("n.csv", b"id,qty,note\n1,NULL,\n2,,NULL\n3,7,x\n")]);
    cfg.connection(
        "n",
        "settle_seconds = 0\n[source]\ntype = \"dir\"\npath = \"in/n\"\n[format]\ntype = \"csv\"\nnull_values = [\"\", \"NULL\"]\nstrings_can_be_null = false\n[template]\n[[template.fields]]\nname = \"id\"\n[[template.fields]]\nname = \"qty\"\ntype = \"integer\"\n[[template.fields]]\nname = \"note\"\n[target]\ntype = \"file\"\npath = \"out\"\n",
    );
    let out = stdout_of(&run_binary(cfg.path(), &["run"]));
    assert!(out.contains("rows 3, bad rows 0"), "{out}");
    let rows: Vec<Value> = cfg
        .rows()
        .into_iter()
        .map(|r| json!([r["id"], r["qty"], r["note"]]))
        .collect();
    assert_eq!(
        rows,
        [
            json!(["1", null, ""]),
            json!(["2", null, "NULL"]),
            json!(["3", 7, "x"])
        ]
    );
}

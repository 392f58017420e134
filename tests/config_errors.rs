//! Bad configuration files and the exact messages they produce: each names the file, the key
//! path and the fix. `validate` prints every problem of every file at once and exits 2.

mod common;

use common::*;

const GOOD_TAIL: &str = r#"
[template]
[[template.fields]]
name = "id"

[target]
type = "file"
path = "out"
"#;

fn s3_source(body: &str) -> String {
    format!("[source]\n{body}\n{GOOD_TAIL}")
}

/// Loads a folder holding the given connection files and returns every message.
fn problems(files: &[(&str, &str)]) -> Vec<String> {
    let cfg = ConfigDir::new();
    for (name, body) in files {
        let path = cfg.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
    match s3_importd::config::load(cfg.path()) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn bad_files_and_their_messages() {
    let b = "bucket = \"acme-exports\"\nregion = \"us-east-1\"";
    let cases: Vec<(String, Vec<&str>)> = vec![
        (
            s3_source("bucket = \"s3://acme-exports/products\"\nregion = \"us-east-1\""),
            vec![
                "connections/c.toml: source.bucket: \"s3://acme-exports/products\" is an s3:// URL; give the bare bucket name, bucket = \"acme-exports\", and put any folder in prefix",
            ],
        ),
        (
            s3_source("bucket = \"https://acme-exports.s3.amazonaws.com\"\nregion = \"us-east-1\""),
            vec![
                "connections/c.toml: source.bucket: \"https://acme-exports.s3.amazonaws.com\" is a URL; give the bare bucket name, and the URL of an S3-compatible service as endpoint",
            ],
        ),
        (
            s3_source("bucket = \"acme-exports/products\"\nregion = \"us-east-1\""),
            vec![
                "connections/c.toml: source.bucket: \"acme-exports/products\" has a path; give the bare bucket name, bucket = \"acme-exports\", and put the folder in prefix = \"products\"",
            ],
        ),
        (
            s3_source("bucket = \"Acme_Exports\"\nregion = \"us-east-1\""),
            vec![
                "connections/c.toml: source.bucket: \"Acme_Exports\" is not a valid bucket name; bucket names are 3 to 63 lower-case letters, digits, `.` and `-`, starting and ending with a letter or digit",
            ],
        ),
        (
            s3_source(&format!("{b}\nrole_arn = \"arn:aws:iam::1234:user/bob\"")),
            vec![
                "connections/c.toml: source.role_arn: \"arn:aws:iam::1234:user/bob\" is not an IAM role ARN; it looks like \"arn:aws:iam::123456789012:role/s3-importd-acme\"",
            ],
        ),
        (
            s3_source(&format!("{b}\nexternal_id = \"abc-123\"")),
            vec!["connections/c.toml: source.external_id: is sent with AssumeRole, so it needs role_arn as well"],
        ),
        (
            s3_source(&format!("{b}\nexternal_id_required = false\nexpected_bucket_owner = \"1234\"")),
            vec![
                "connections/c.toml: source.external_id_required: applies to the role of role_arn, which is not set; remove it",
                "connections/c.toml: source.expected_bucket_owner: \"1234\" is not an AWS account ID; give the 12 digits of the account that owns the bucket",
            ],
        ),
        (
            s3_source(&format!("{b}\ninclude = [\"*.csv\", \"a[\"]")),
            vec!["connections/c.toml: source.include[1]: \"a[\" is not a glob: unclosed character class; missing ']'"],
        ),
        (
            format!("[source]\n{b}\n[format]\ncompression = \"lz4\"\nencoding = \"klingon\"\n[template]\ntimezone = \"Mars/Olympus\"\n[[template.fields]]\nname = \"id\"\ntimezone = \"UTC\"\n[[template.fields]]\nname = \"at\"\ntype = \"timestamp\"\ntimezone = \"CET+1\"\n[target]\ntype = \"file\"\npath = \"out\""),
            vec![
                "connections/c.toml: format.compression: \"lz4\" is not a compression; use \"auto\", \"none\", \"gzip\", \"zstd\" or \"bzip2\"",
                "connections/c.toml: format.encoding: \"klingon\" is not an encoding; use a WHATWG label such as \"utf-8\", \"windows-1252\" (or \"latin-1\"), \"big5\", \"gbk\", \"shift_jis\", \"euc-kr\", \"windows-1256\", \"iso-8859-2\", \"koi8-r\" or \"utf-16le\"",
                "connections/c.toml: template.timezone: \"Mars/Olympus\" is not a time zone; use an IANA name such as \"UTC\" or \"Europe/Berlin\"",
                "connections/c.toml: template.fields[0].timezone: applies only to timestamp fields",
                "connections/c.toml: template.fields[1].timezone: \"CET+1\" is not a time zone; use an IANA name such as \"UTC\" or \"Europe/Berlin\"",
            ],
        ),
        (
            "[source]\ntype = \"dir\"\npath = \"in\"\n[template]\n[[template.fields]]\nname = \"id\"\n[target]\ntype = \"http\"\nurl = \"ftp://x\"\nbatch_size = 0\ntoken_env = \"T\"\ntoken_file = \"t\"\n[target.headers]\n\"Bad Header\" = \"x\"\nX-Ok = 1\n".to_string(),
            vec![
                "connections/c.toml: target.url: \"ftp://x/\" is not an http:// or https:// URL",
                "connections/c.toml: target.batch_size: 0 is out of range; use 1 to 100000",
                "connections/c.toml: target.headers.Bad Header: is not an HTTP header name",
                "connections/c.toml: target.headers.X-Ok: must be a string on one line",
                "connections/c.toml: target.token_file: give token_env or token_file, not both",
            ],
        ),
        (
            "[source]\ntype = \"dir\"\npath = \"in\"\n[template]\n[[template.fields]]\nname = \"id\"\n[target]\ntype = \"s3\"\nbucket = \"s3://dest\"\nformat = \"jsonl\"\ndelimiter = \";\"\nkey = \"[table_name].csv\"\n".to_string(),
            vec![
                "connections/c.toml: target.delimiter: \";\" is not an output delimiter; use \",\", \"|\" or \"\\t\"",
                "connections/c.toml: target.delimiter: delimiter and quote_all apply to CSV output; add format = \"csv\" or remove them",
                "connections/c.toml: target.key: \"[table_name].csv\": the required elements [integration_name], [table_version], [timestamp_loaded] are missing; every key needs [integration_name], [table_name], [table_version] and [timestamp_loaded]",
                "connections/c.toml: target.bucket: \"s3://dest\" is an s3:// URL; give the bare bucket name, bucket = \"dest\", and put any folder in prefix",
                "connections/c.toml: target.region: missing; give the bucket's region, e.g. region = \"us-east-1\"",
            ],
        ),
        (
            "[source]\ntype = \"dir\"\npath = \"in\"\n[template]\n[[template.fields]]\nname = \"id\"\n[[template.fields]]\nname = \"price\"\ntype = \"decimal\"\n[[template.fields]]\nname = \"tax\"\ntype = \"decimal\"\nprecision = 40\nscale = 2\n[[template.fields]]\nname = \"n\"\ntype = \"integer\"\nscale = 2\n[target]\ntype = \"file\"\npath = \"out\"\nformat = \"parquet\"\ncompression = \"lz4\"\nrow_group_bytes = \"1KiB\"\n".to_string(),
            vec![
                "connections/c.toml: template.fields[2].precision: 40 is not a precision; use 1 to 38 digits",
                "connections/c.toml: template.fields[3].precision: precision and scale apply only to type = \"decimal\"",
                "connections/c.toml: target.compression: \"lz4\" is not a Parquet compression; use one of zstd, snappy, gzip, none",
                "connections/c.toml: target.row_group_bytes: 1024 bytes is out of range; use 1048576 to 4294967296 bytes",
            ],
        ),
        (
            "[source]\ntype = \"dir\"\npath = \"in\"\n[template]\n[[template.fields]]\nname = \"id\"\n[[template.fields]]\nname = \"price\"\ntype = \"decimal\"\n[[template.fields]]\nname = \"tax\"\ntype = \"decimal\"\nprecision = 4\nscale = 5\n[target]\ntype = \"s3\"\nbucket = \"dest\"\nregion = \"us-east-1\"\nformat = \"parquet\"\ncompression = \"lz4\"\nrow_group_bytes = \"1KiB\"\n".to_string(),
            vec![
                "connections/c.toml: template.fields[2].scale: 5 is not a scale for precision 4; use 0 to 4 digits after the point",
                "connections/c.toml: target.compression: \"lz4\" is not a Parquet compression; use one of zstd, snappy, gzip, none",
                "connections/c.toml: target.row_group_bytes: 1024 bytes is out of range; use 1048576 to 4294967296 bytes",
            ],
        ),
        (
            "[source]\ntype = \"dir\"\npath = \"in\"\n[template]\n[[template.fields]]\nname = \"id\"\n[[template.fields]]\nname = \"price\"\ntype = \"decimal\"\n[[template.fields]]\nname = \"tax\"\ntype = \"decimal\"\nprecision = 4\n[target]\ntype = \"s3\"\nbucket = \"dest\"\nregion = \"us-east-1\"\nformat = \"parquet\"\ncompression = \"lz4\"\nrow_group_bytes = \"1KiB\"\n".to_string(),
            vec![
                "connections/c.toml: template.fields[2].scale: missing; give scale (digits after the point) with precision, e.g. precision = 12, scale = 2",
                "connections/c.toml: target.compression: \"lz4\" is not a Parquet compression; use one of zstd, snappy, gzip, none",
                "connections/c.toml: target.row_group_bytes: 1024 bytes is out of range; use 1048576 to 4294967296 bytes",
            ],
        ),
        (
            "[source]\ntype = \"dir\"\npath = \"in\"\n[template]\n[[template.fields]]\nname = \"id\"\n[[template.fields]]\nname = \"price\"\ntype = \"decimal\"\n[target]\ntype = \"s3\"\nbucket = \"dest\"\nregion = \"us-east-1\"\nformat = \"parquet\"\ncompression = \"lz4\"\nrow_group_bytes = \"1KiB\"\n".to_string(),
            vec![
                "connections/c.toml: target.compression: \"lz4\" is not a Parquet compression; use one of zstd, snappy, gzip, none",
                "connections/c.toml: target.row_group_bytes: 1024 bytes is out of range; use 1048576 to 4294967296 bytes",
                "connections/c.toml: target.format: a Parquet output needs the precision and scale of decimal field \"price\"; add them to template.fields[1], e.g. precision = 12, scale = 2",
            ],
        ),
        (
            "[source]\ntype = \"dir\"\npath = \"in\"\n[format]\nautogenerate_column_names = true\nnewlines_in_values = true\n[template]\n[[template.fields]]\nname = \"id\"\n[target]\ntype = \"stdout\"\n".to_string(),
            vec![
                "connections/c.toml: format.autogenerate_column_names: unknown field `autogenerate_column_names`, expected one of …; pyarrow's autogenerate_column_names is has_header = false here, with each field's `column` its 1-based index (line 5)",
                "connections/c.toml: format.newlines_in_values: unknown field `newlines_in_values`, expected one of …; quoted values may always hold line breaks here; remove it (line 6)",
            ],
        ),
        (
            "load_max_objects = 0\nload_max_bytes = \"10KiB\"\n[source]\ntype = \"dir\"\npath = \"in\"\n[template]\n[[template.fields]]\nname = \"id\"\n[target]\ntype = \"stdout\"\n".to_string(),
            vec![
                "connections/c.toml: load_max_objects: 0 is out of range; use 1 to 1000000",
                "connections/c.toml: load_max_bytes: 10240 bytes is out of range; use 1048576 to 1099511627776 bytes",
            ],
        ),
        (
            "[source]\ntype = \"dir\"\npath = \"in\"\n[template]\n[[template.fields]]\nname = \"id\"\n[target]\ntype = \"file\"\npath = \"out\"\nformat = \"csv\"\ncompression = \"zstd\"\n".to_string(),
            vec![
                "connections/c.toml: target.compression: applies to Parquet output; add format = \"parquet\" or remove it",
            ],
        ),
        (
            "[source]\ntype = \"dir\"\npath = \"in\"\n[template]\n[[template.fields]]\nname = \"id\"\n[target]\ntype = \"postgres\"\nurl = \"mysql://u:pw@h/db\"\nurl_env = \"DB\"\ntable = \"a.b.c\"\nmode = \"upsert\"\nkey = [\"id\", \"sku\"]\n".to_string(),
            vec![
                "connections/c.toml: target.url: give exactly one of url, url_env and url_file",
                "connections/c.toml: target.table: \"a.b.c\" is not a table name; use letters, digits and `_`, optionally after a schema and a dot (\"imports.products\")",
                "connections/c.toml: target.key[1]: \"sku\" is not a field of the template; upsert keys are field names (id)",
            ],
        ),
        (
            "[source]\ntype = \"dir\"\npath = \"in\"\n[template]\n[[template.fields]]\nname = \"id\"\n[target]\ntype = \"postgres\"\nurl = \"mysql://u:pw@h/db\"\nmode = \"upsert\"\n".to_string(),
            vec![
                "connections/c.toml: target.url: is not a postgres:// or postgresql:// URL",
                "connections/c.toml: target.key: missing; upsert needs the columns that identify a row, e.g. key = [\"id\"]",
            ],
        ),
        (
            s3_source(&format!("{b}\nbuckett = \"x\"")),
            vec![
                "connections/c.toml: source.buckett: unknown field `buckett`, expected one of `type`, `bucket`, `region`, `prefix`, `role_arn`, `external_id`, `external_id_required`, `expected_bucket_owner`, `endpoint`, `sts_endpoint`, `force_path_style`, `allow_insecure_http`, `challenge_file`, `max_concurrent_listings`, `queue_url`, `event_batch_seconds`, `include`, `exclude` (line 4)",
            ],
        ),
        (
            s3_source(&format!(
                "{b}\nqueue_url = \"http://sqs.example.com/123456789012/q\"\nevent_batch_seconds = 301"
            )),
            vec![
                "connections/c.toml: source.event_batch_seconds: 301 is out of range; use 0 to 300",
                "connections/c.toml: source.queue_url: sends AWS credentials (signed requests) over plain http to sqs.example.com; use https://, or set allow_insecure_http = true if the network between is trusted",
            ],
        ),
        (
            s3_source(&format!("{b}\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/q\"")),
            vec![
                "connections/c.toml: source.queue_url: \"https://sqs.us-east-1.amazonaws.com/q\" does not end in /ACCOUNT/QUEUE; copy the queue's URL from the SQS console (https://sqs.REGION.amazonaws.com/123456789012/NAME)",
            ],
        ),
        (
            s3_source(&format!("{b}\nevent_batch_seconds = 5")),
            vec![
                "connections/c.toml: source.event_batch_seconds: applies to event mode, and no queue_url is set; set queue_url, or remove the key",
            ],
        ),
        (
            s3_source(&format!("{b}\nprefix = \"/products/\"")),
            vec!["connections/c.toml: source.prefix: \"/products/\" starts with `/`; S3 keys have no leading slash, use \"products/\""],
        ),
        (
            format!("[source]\n{b}\n[template]\n[[template.fields]]\nname = \"id\"\n[target]\ntype = \"file\"\npath = \"out\"\nkey = \"[integration_name]/[table_name].jsonl\""),
            vec![
                "connections/c.toml: target.key: \"[integration_name]/[table_name].jsonl\": the required elements [table_version], [timestamp_loaded] are missing; every key needs [integration_name], [table_name], [table_version] and [timestamp_loaded]",
            ],
        ),
        (
            format!("[source]\n{b}\n[template]\n[[template.fields]]\nname = \"id\"\n[target]\ntype = \"file\"\npath = \"out\"\nkey = \"my files/[integration_name]/[table_name]/[table_version]/[timestamp_loaded]\""),
            vec![
                "connections/c.toml: target.key: \"my files/[integration_name]/[table_name]/[table_version]/[timestamp_loaded]\": contains ' '; keys may not contain spaces or any of ! @ # $ % ^ & *",
            ],
        ),
        (
            format!("[source]\n{b}\n[template]\n[[template.fields]]\nname = \"id\"\n[target]\ntype = \"file\"\npath = \"out\"\nkey = \"{}/[integration_name]/[table_name]/[table_version]/[timestamp_loaded]\"", "x".repeat(480)),
            vec!["connections/c.toml: target.key: \"xxxxxxxxxx…[timestamp_loaded]\": expands to up to 506 characters; keys are limited to 500: shorten the text or the names"],
        ),
        (
            format!("[source]\n{b}\n[template]\n[[template.fields]]\nname = \"id\"\n[target]\ntype = \"file\"\npath = \"out\"\nkey = \"[integration_name]/[table_name]/[table_version]/[timestamp_loaded]#1\""),
            vec![
                "connections/c.toml: target.key: \"[integration_name]/[table_name]/[table_version]/[timestamp_loaded]#1\": contains '#'; keys may not contain spaces or any of ! @ # $ % ^ & *",
            ],
        ),
        (
            format!("schedule = \"every day\"\nbackfill_days = 0\n[source]\n{b}\n[template]\nmax_bad_rows = \"lots\"\n[[template.fields]]\nname = \"id\"\ntype = \"money\"\n[target]\ntype = \"ftp\""),
            vec![
                "connections/c.toml: schedule: \"every day\" has 2 fields; use \"daily\", \"hourly\" or 5 cron fields (minute hour day month weekday), e.g. \"30 2 * * *\"",
                "connections/c.toml: backfill_days: 0 is out of range; use 1 to 36500",
                "connections/c.toml: template.max_bad_rows: \"lots\" is not a count or a share; use a count such as \"10\", a share such as \"1%\", or both, \"1% or 5\" (whichever allows more)",
                "connections/c.toml: template.fields[0].type: \"money\" is not a field type; use one of string, integer, decimal, float, boolean, date, timestamp, json",
                "connections/c.toml: target.type: \"ftp\" is not a target type; use \"file\", \"stdout\", \"s3\", \"http\" or \"postgres\"",
            ],
        ),
        (
            "[source]\ntype = \"dir\"\npath = \"in\"\nbucket = \"acme-exports\"\n[template]\n[[template.fields]]\nname = \"id\"\n[target]\ntype = \"stdout\"\npath = \"out\"".to_string(),
            vec![
                "connections/c.toml: source.bucket: is a key of an s3 source; a dir source reads only `path`, `follow_symlinks`, `include` and `exclude` (line 4)",
                "connections/c.toml: target.path: is a key of a file target; a stdout target has no key but `type` (line 10)",
            ],
        ),
        // A kind's table: a key of another kind, and the kind's own problems, at once.
        (
            "[source]\ntype = \"dir\"\npath = \"in\"\n[template]\n[[template.fields]]\nname = \"id\"\n[target]\ntype = \"file\"\nbucket = \"b\"\nfile_mode = \"0100\"".to_string(),
            vec![
                "connections/c.toml: target.bucket: is a key of an s3 target; a file target reads only `path`, `file_mode`, `format`, `delimiter`, `quote_all`, `csv_formula_guard`, `compression`, `row_group_bytes` and `key` (line 9)",
                "connections/c.toml: target.path: missing; a file target needs the folder to write into, e.g. path = \"/srv/imports\"",
                "connections/c.toml: target.file_mode: \"0100\" is not a file mode the daemon can write; use octal digits such as \"0640\" (owner read and write at least)",
            ],
        ),
        // A format's own keys: Parquet's row-group limit is a size, and no key of CSV.
        (
            "[source]\ntype = \"dir\"\npath = \"in\"\n[format]\ntype = \"parquet\"\nmax_row_group_bytes = \"lots\"\ndelimiter = \";\"\n[template]\n[[template.fields]]\nname = \"id\"\n[target]\ntype = \"stdout\"".to_string(),
            vec![
                "connections/c.toml: format.max_row_group_bytes: is not a size; write bytes as a number, or with a unit: \"512MiB\", \"2GiB\"",
                "connections/c.toml: format.delimiter: is a key of a csv format; a parquet format reads only `compression`, `encoding`, `has_header`, `null_values` and `max_row_group_bytes` (line 7)",
            ],
        ),
        (
            "[source]\ntype = \"dir\"\npath = \"in\"\n[target]\ntype = \"stdout\"".to_string(),
            vec![
                "connections/c.toml: template: missing; add a [template] with [[template.fields]], or template = \"NAME\" for templates/NAME.toml",
            ],
        ),
        (
            "[source]\ntype = \"dir\"\npath = \"in\"\ntemplate = \"products\"\n[target]\ntype = \"stdout\"".to_string(),
            vec![
                "connections/c.toml: source.template: unknown field `template`, expected one of `type`, `path`, `follow_symlinks`, `include`, `exclude` (line 4)",
                "connections/c.toml: template: missing; add a [template] with [[template.fields]], or template = \"NAME\" for templates/NAME.toml",
            ],
        ),
        (
            "template = \"products\"\n[source]\ntype = \"dir\"\npath = \"in\"\n[target]\ntype = \"stdout\"".to_string(),
            vec!["connections/c.toml: template: no template \"products\": there is no templates/products.toml"],
        ),
        (
            "[source]\ntype = \"dir\"\npath = \"in\"\n[template]\n[[template.fields]]\nname = \"id\"\ncolour = \"x\"\n[target]\ntype = \"stdout\"".to_string(),
            vec![
                "connections/c.toml: template.fields[0].colour: unknown field `colour`, expected one of `name`, `column`, `type`, `required`, `format`, `timezone`, `precision`, `scale`, `values`, `default`, `true_values`, `false_values` (line 7)",
            ],
        ),
        // Every unknown key of the file at once, in any table, each with its line: two in
        // [source], one at the top, two in the second of the template's fields. The keys of
        // the file and its template come first, then those of its source, which its kind
        // reads; a dir source lists only its own keys.
        (
            "colour = \"red\"\n[source]\ntype = \"dir\"\npath = \"in\"\nbuckett = \"x\"\nregoin = \"y\"\n[template]\n[[template.fields]]\nname = \"id\"\n[[template.fields]]\nname = \"qty\"\ntyp = \"integer\"\nrequierd = true\n[target]\ntype = \"stdout\"".to_string(),
            vec![
                "connections/c.toml: colour: unknown field `colour`, expected one of `description`, `enabled`, `schedule`, `backfill_days`, `settle_seconds`, `load_max_objects`, `load_max_bytes`, `source`, `format`, `template`, `target` (line 1)",
                "connections/c.toml: template.fields[1].typ: unknown field `typ`, … (line 12)",
                "connections/c.toml: template.fields[1].requierd: unknown field `requierd`, … (line 13)",
                "connections/c.toml: source.buckett: unknown field `buckett`, expected one of `type`, `path`, `follow_symlinks`, `include`, `exclude` (line 5)",
                "connections/c.toml: source.regoin: unknown field `regoin`, … (line 6)",
            ],
        ),
        ("[source\n".to_string(), vec!["connections/c.toml: unclosed table, expected `]` (line 1)"]),
        (
            s3_source(&format!("{b}\nendpoint = \"http://minio.internal:9000\"")),
            vec![
                "connections/c.toml: source.endpoint: sends AWS credentials (signed requests, session tokens) over plain http to minio.internal; use https://, or set allow_insecure_http = true if the network between is trusted",
            ],
        ),
        (
            s3_source(&format!("{b}\nendpoint = \"http://minio.internal:9000\"\nallow_insecure_http = true")),
            vec![],
        ),
        (
            "[source]\ntype = \"dir\"\npath = \"in\"\n[template]\nmax_bad_rows = 10\n[[template.fields]]\nname = \"id\"\n[target]\ntype = \"stdout\"".to_string(),
            vec![
                "connections/c.toml: template.max_bad_rows: 10 is a number; write it as a string: \"10\" for a count of bad rows, or a share such as \"1%\"",
            ],
        ),
        (
            // A template named and also written inline: the parser's "duplicate key" names it.
            "template = \"products\"\n[source]\ntype = \"dir\"\npath = \"in\"\n[template]\n[[template.fields]]\nname = \"id\"\n[target]\ntype = \"stdout\"".to_string(),
            vec![
                "connections/c.toml: duplicate key `template`: a key may be set once in a table (line 5)",
            ],
        ),
    ];
    for (body, want) in cases {
        let got = problems(&[("connections/c.toml", &body)]);
        assert_eq!(got.len(), want.len(), "for\n{body}\ngot {got:#?}");
        for (g, w) in got.iter().zip(&want) {
            // `…` in an expected message stands for text too long to spell out.
            let matches = match w.split_once('…') {
                Some((head, tail)) => g.starts_with(head) && g.ends_with(tail),
                None => g == w,
            };
            assert!(matches, "for\n{body}\n got: {g}\nwant: {w}");
        }
    }
}

#[test]
fn settings_problems_are_reported_with_connection_problems() {
    let got = problems(&[
        (
            "s3-importd.toml",
            "timezone = \"Mars/Olympus\"\nlog_format = \"xml\"\nmax_concurrent_runs = 0\n",
        ),
        (
            "connections/a b.toml",
            "[source]\ntype = \"dir\"\npath = \"in\"\n[template]\n[[template.fields]]\nname = \"id\"\n[target]\ntype = \"stdout\"",
        ),
    ]);
    assert_eq!(
        got,
        vec![
            "s3-importd.toml: timezone: \"Mars/Olympus\" is not a time zone; use an IANA name such as \"UTC\" or \"Europe/Berlin\"",
            "s3-importd.toml: max_concurrent_runs: 0 is out of range; use 1 to 64",
            "s3-importd.toml: log_format: \"xml\" is not a log format; use \"text\" or \"json\"",
            "connections/a b.toml: the file name is the connection's name and may use only letters, digits, `.`, `_` and `-` (at most 64, starting with a letter or digit); rename the file",
        ]
    );
}

#[test]
fn a_state_url_that_cannot_connect_is_a_configuration_problem() {
    // `run` with it exits 2 like `validate`, before any connection is tried; the password
    // is never repeated.
    let cfg = ConfigDir::new();
    std::fs::write(
        cfg.path().join("s3-importd.toml"),
        "state = \"postgres://importer:hunter2@db.example.com/state?sslmode=verify_full\"\n",
    )
    .unwrap();
    cfg.connection(
        "fine",
        "[source]\ntype = \"dir\"\npath = \"in\"\n[template]\n[[template.fields]]\nname = \"id\"\n[target]\ntype = \"stdout\"",
    );
    for command in ["validate", "run"] {
        let out = run_binary(cfg.path(), &[command]);
        assert_eq!(out.status.code(), Some(2), "{command}");
        let err = text(&out.stderr);
        assert!(
            err.contains("s3-importd.toml: state: sslmode=verify_full is not a TLS mode; use disable, prefer, require, verify-ca or verify-full"),
            "{command}: {err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
    }
}

#[test]
fn validate_prints_every_problem_and_exits_2() {
    let cfg = ConfigDir::new();
    cfg.connection("one", &s3_source("bucket = \"s3://one\"\nregion = \"us-east-1\""));
    cfg.connection("two", &s3_source("bucket = \"two-ok\"\nregion = \"mars\""));
    let out = run_binary(cfg.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    let dir = cfg.path().display();
    assert!(
        err.contains(&format!(
            "{dir}/connections/one.toml: source.bucket: \"s3://one\" is an s3:// URL"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{dir}/connections/two.toml: source.region: \"mars\" is not an AWS region; use a name like \"us-east-1\""
        )),
        "{err}"
    );
    assert!(err.contains("2 problems in"), "{err}");

    // `run` refuses a bad configuration the same way.
    let out = run_binary(cfg.path(), &["run"]);
    assert_eq!(out.status.code(), Some(2));

    // A good folder validates.
    let good = ConfigDir::new();
    good.connection(
        "fine",
        &s3_source("bucket = \"fine-bucket\"\nregion = \"eu-west-1\""),
    );
    let out = run_binary(good.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("configuration ok: 1 connection (1 enabled)"));
}

#[test]
fn a_broken_template_file_is_reported_once_in_its_own_file() {
    let connection =
        "template = \"products\"\n[source]\ntype = \"dir\"\npath = \"in\"\n[target]\ntype = \"stdout\"";
    let template = "table = \"p\"\nmax_bad_rows = \"lots\"\n[[fields]]\nname = \"id\"\ntype = \"money\"";
    let got = problems(&[
        ("connections/c.toml", connection),
        ("templates/products.toml", template),
    ]);
    assert_eq!(
        got,
        [
            "templates/products.toml: max_bad_rows: \"lots\" is not a count or a share; use a count such as \"10\", a share such as \"1%\", or both, \"1% or 5\" (whichever allows more)",
            "templates/products.toml: fields[0].type: \"money\" is not a field type; use one of string, integer, decimal, float, boolean, date, timestamp, json",
            "connections/c.toml: template: templates/products.toml has problems (listed under that file); fix them there",
        ]
    );
}

#[test]
fn one_broken_connection_file_does_not_stop_the_others() {
    let cfg = ConfigDir::new();
    std::fs::create_dir_all(cfg.path().join("in/good")).unwrap();
    std::fs::write(cfg.path().join("in/good/a.jsonl"), "{\"id\": \"a\"}\n").unwrap();
    cfg.connection(
        "good",
        &dir_connection_toml("good", ID_TEMPLATE, "type = \"file\"\npath = \"out\""),
    );
    cfg.connection(
        "broken",
        &format!(
            "colour = \"blue\"\n{}",
            dir_connection_toml("broken", ID_TEMPLATE, "type = \"file\"\npath = \"out\"")
        ),
    );
    std::fs::create_dir_all(cfg.path().join("templates")).unwrap();
    std::fs::write(
        cfg.path().join("templates/bad.toml"),
        "table = \"t\"\n[[fields]]\nname = \"id\"\ntype = \"colour\"\n",
    )
    .unwrap();
    cfg.connection(
        "uses_bad",
        "settle_seconds = 0\ntemplate = \"bad\"\n[source]\ntype = \"dir\"\npath = \"in/good\"\n[format]\ntype = \"jsonl\"\n[target]\ntype = \"file\"\npath = \"out\"\n",
    );

    // Named, and valid: it runs; the others are mentioned, not fatal.
    let out = run_binary(cfg.path(), &["run", "good"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("good: listed 1, new 1, imported 1"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr)
            .contains("note: 2 other connections have problems and are left out (broken, uses_bad)"),
        "{}",
        text(&out.stderr)
    );
    // Named, and broken: its own problems, exit 2.
    let out = run_binary(cfg.path(), &["preview", "broken"]);
    assert_eq!(out.status.code(), Some(2));
    let shown = text(&out.stderr);
    assert!(
        shown.contains("connections/broken.toml: colour: unknown field `colour`"),
        "{shown}"
    );
    assert!(!shown.contains("templates/bad.toml"), "{shown}");
    // A connection failed by its template: the template's problems.
    let out = run_binary(cfg.path(), &["run", "uses_bad"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("templates/bad.toml: fields[0].type"),
        "{}",
        text(&out.stderr)
    );
    // Everything: the valid ones run, and the command fails for the others.
    std::fs::write(cfg.path().join("in/good/b.jsonl"), "{\"id\": \"b\"}\n").unwrap();
    let out = run_binary(cfg.path(), &["run"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stdout).contains("good: listed 2, new 1, imported 1"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("left out: broken, uses_bad"),
        "{}",
        text(&out.stderr)
    );
    let mut ids = cfg.ids();
    ids.sort();
    assert_eq!(ids, ["a", "b"]);
    // validate and the daemon still want the whole folder.
    let out = run_binary(cfg.path(), &["validate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("connections/broken.toml"),
        "{}",
        text(&out.stderr)
    );
}

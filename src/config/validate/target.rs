//! `[target]`: every kind of target, the output format of `file` and `s3`, and where secrets
//! (URLs, tokens, headers) come from.

use super::*;

/// The output format and key template of a `file` or `s3` target.
pub(super) fn output(
    t: &RawTarget,
    connection: &str,
    table: Option<&str>,
    p: &mut Problems<'_>,
) -> (OutputFormat, Option<KeyTemplate>) {
    let csv = match t.format.as_deref() {
        None | Some("jsonl") => false,
        Some("csv") => true,
        Some(other) => {
            p.add(
                "target.format",
                format!("{other:?} is not an output format; use \"jsonl\" or \"csv\""),
            );
            false
        }
    };
    let delimiter = match t.delimiter.as_deref() {
        None | Some(",") => b',',
        Some("|") => b'|',
        Some("\t") => b'\t',
        Some(other) => {
            p.add(
                "target.delimiter",
                format!("{other:?} is not an output delimiter; use \",\", \"|\" or \"\\t\""),
            );
            b','
        }
    };
    if !csv && (t.delimiter.is_some() || t.quote_all.is_some()) {
        p.add(
            "target.delimiter",
            "delimiter and quote_all apply to CSV output; add format = \"csv\" or remove them",
        );
    }
    if !csv && t.csv_formula_guard.is_some() {
        p.add(
            "target.csv_formula_guard",
            "applies to CSV output; add format = \"csv\" or remove it",
        );
    }
    let format = if csv {
        OutputFormat::Csv {
            delimiter,
            quote_all: t.quote_all.unwrap_or(false),
            formula_guard: t.csv_formula_guard.unwrap_or(true),
        }
    } else {
        OutputFormat::Jsonl
    };
    let extension = if csv { "csv" } else { "jsonl" };
    let key = match &t.key {
        None => Some(KeyTemplate::default_for(extension)),
        Some(toml::Value::String(text)) => match KeyTemplate::parse(text) {
            Ok(k) => Some(k),
            Err(e) => {
                p.add("target.key", format!("{text:?}: {e}"));
                None
            }
        },
        Some(_) => {
            p.add("target.key", "must be a string: the key template, e.g. \"[integration_name]/[table_name]/[table_version]/[timestamp_loaded].jsonl\"");
            None
        }
    };
    if let (Some(k), Some(table)) = (&key, table)
        && let Err(e) = k.check_for(connection, table)
    {
        p.add("target.key", format!("{:?}: {e}", k.to_string()));
    }
    (format, key)
}

pub(super) fn target(
    dir: &Path,
    t: RawTarget,
    connection: &str,
    template: Option<&Template>,
    p: &mut Problems<'_>,
) -> Option<TargetSpec> {
    let table = template.map(|t| t.table.as_str());
    // Without a valid template, field names cannot be checked; its problems are reported.
    let fields: Vec<String> = template
        .map(|t| t.fields.iter().map(|f| f.name.clone()).collect())
        .unwrap_or_default();
    let keys = [
        ("path", t.path.is_some()),
        ("format", t.format.is_some()),
        ("delimiter", t.delimiter.is_some()),
        ("quote_all", t.quote_all.is_some()),
        ("csv_formula_guard", t.csv_formula_guard.is_some()),
        ("file_mode", t.file_mode.is_some()),
        ("key", t.key.is_some()),
        ("bucket", t.bucket.is_some()),
        ("region", t.region.is_some()),
        ("prefix", t.prefix.is_some()),
        ("role_arn", t.role_arn.is_some()),
        ("external_id", t.external_id.is_some()),
        ("external_id_required", t.external_id_required.is_some()),
        ("expected_bucket_owner", t.expected_bucket_owner.is_some()),
        ("endpoint", t.endpoint.is_some()),
        ("sts_endpoint", t.sts_endpoint.is_some()),
        ("force_path_style", t.force_path_style.is_some()),
        ("url", t.url.is_some()),
        ("batch_size", t.batch_size.is_some()),
        ("headers", t.headers.is_some()),
        ("headers_env", t.headers_env.is_some()),
        ("headers_file", t.headers_file.is_some()),
        ("allow_insecure_http", t.allow_insecure_http.is_some()),
        ("token_env", t.token_env.is_some()),
        ("token_file", t.token_file.is_some()),
        ("timeout_s", t.timeout_s.is_some()),
        ("max_retries", t.max_retries.is_some()),
        ("url_env", t.url_env.is_some()),
        ("url_file", t.url_file.is_some()),
        ("table", t.table.is_some()),
        ("mode", t.mode.is_some()),
        ("create_table", t.create_table.is_some()),
    ];
    let Some(kind) = t.kind.as_deref() else {
        p.add(
            "target.type",
            "missing; use \"file\", \"stdout\", \"s3\", \"http\" or \"postgres\"",
        );
        return None;
    };
    let allowed: &[&str] = match kind {
        "file" => &[
            "path",
            "format",
            "delimiter",
            "quote_all",
            "csv_formula_guard",
            "file_mode",
            "key",
        ],
        "s3" => &[
            "bucket",
            "region",
            "prefix",
            "role_arn",
            "external_id",
            "external_id_required",
            "expected_bucket_owner",
            "endpoint",
            "sts_endpoint",
            "force_path_style",
            "allow_insecure_http",
            "format",
            "delimiter",
            "quote_all",
            "csv_formula_guard",
            "key",
        ],
        "stdout" => &[],
        "http" => &[
            "url",
            "url_env",
            "url_file",
            "batch_size",
            "headers",
            "headers_env",
            "headers_file",
            "token_env",
            "token_file",
            "timeout_s",
            "max_retries",
            "allow_insecure_http",
        ],
        "postgres" => &[
            "url",
            "url_env",
            "url_file",
            "table",
            "mode",
            "key",
            "create_table",
        ],
        other => {
            p.add("target.type", format!("{other:?} is not a target type; use \"file\", \"stdout\", \"s3\", \"http\" or \"postgres\""));
            return None;
        }
    };
    let before = p.out.len();
    for k in set_keys(&keys) {
        if !allowed.contains(&k) {
            p.add(&format!("target.{k}"), format!("is not a key of a {kind} target"));
        }
    }
    match kind {
        "file" => {
            let path = match &t.path {
                Some(path) if !path.is_empty() => resolve(dir, path),
                _ => {
                    p.add(
                        "target.path",
                        "missing; a file target needs the folder to write into, e.g. path = \"/srv/imports\"",
                    );
                    PathBuf::new()
                }
            };
            let (format, key) = output(&t, connection, table, p);
            let file_mode = match t.file_mode.as_deref() {
                None => crate::files::PRIVATE_FILE,
                Some(m) => match u32::from_str_radix(m.trim_start_matches("0o"), 8) {
                    Ok(mode) if mode <= 0o777 && mode & 0o600 == 0o600 => mode,
                    _ => {
                        p.add(
                            "target.file_mode",
                            format!("{m:?} is not a file mode the daemon can write; use octal digits such as \"0640\" (owner read and write at least)"),
                        );
                        crate::files::PRIVATE_FILE
                    }
                },
            };
            (p.out.len() == before).then_some(TargetSpec::File(FileTargetSpec {
                path,
                file_mode,
                format,
                key: key?,
            }))
        }
        "s3" => {
            let (format, key) = output(&t, connection, table, p);
            let raw = RawS3 {
                bucket: t.bucket,
                region: t.region,
                prefix: t.prefix,
                role_arn: t.role_arn,
                external_id: t.external_id,
                external_id_required: t.external_id_required,
                expected_bucket_owner: t.expected_bucket_owner,
                endpoint: t.endpoint,
                sts_endpoint: t.sts_endpoint,
                force_path_style: t.force_path_style,
                challenge_file: None,
                allow_insecure_http: t.allow_insecure_http,
                max_concurrent_listings: None,
            };
            let s3 = s3_location(raw, "target", "write into", p);
            (p.out.len() == before).then_some(TargetSpec::S3(S3TargetSpec {
                s3: s3?,
                format,
                key: key?,
            }))
        }
        "http" => {
            let spec = http_target(dir, t, p);
            (p.out.len() == before).then_some(TargetSpec::Http(spec))
        }
        "postgres" => {
            let spec = postgres_target(dir, t, table, &fields, p);
            (p.out.len() == before).then_some(TargetSpec::Postgres(spec))
        }
        _ => (p.out.len() == before).then_some(TargetSpec::Stdout),
    }
}

/// A PostgreSQL identifier s3-importd is willing to write unquoted-looking: letters, digits
/// and `_`, not starting with a digit, at most 63 bytes (PostgreSQL's limit).
pub(super) static PG_IDENT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$").expect("a valid pattern"));

/// A target's URL, a secret: `url` written inline, or read from `url_env` or `url_file`
/// (exactly one).
pub(super) fn url_source(
    dir: &Path,
    url: Option<String>,
    url_env: Option<String>,
    url_file: Option<String>,
    p: &mut Problems<'_>,
) -> SecretSource {
    match (url, url_env, url_file) {
        (Some(u), None, None) => SecretSource::Inline(Secret::new(u)),
        (None, Some(var), None) if !var.is_empty() => SecretSource::Env(var),
        (None, None, Some(file)) if !file.is_empty() => SecretSource::File {
            in_config_dir: resolve(dir, &file),
            given: file,
        },
        (None, None, None) => {
            p.add(
                "target.url",
                "missing; give url, url_env (an environment variable) or url_file (a file, e.g. from systemd's LoadCredential=)",
            );
            SecretSource::Env(String::new())
        }
        _ => {
            p.add("target.url", "give exactly one of url, url_env and url_file");
            SecretSource::Env(String::new())
        }
    }
}

/// The keys of a `postgres` target.
pub(super) fn postgres_target(
    dir: &Path,
    t: RawTarget,
    template_table: Option<&str>,
    fields: &[String],
    p: &mut Problems<'_>,
) -> PostgresTargetSpec {
    let url = url_source(dir, t.url.clone(), t.url_env.clone(), t.url_file.clone(), p);
    if let SecretSource::Inline(u) = &url
        && !(u.expose().starts_with("postgres://") || u.expose().starts_with("postgresql://"))
    {
        // The URL may hold a password: it is not repeated in the message.
        p.add("target.url", "is not a postgres:// or postgresql:// URL");
    }
    let name = t
        .table
        .clone()
        .or_else(|| template_table.map(str::to_string))
        .unwrap_or_default();
    let (schema, table) = match name.split_once('.') {
        Some((s, t)) => (Some(s.to_string()), t.to_string()),
        None => (None, name.clone()),
    };
    if schema
        .iter()
        .chain(std::iter::once(&table))
        .any(|part| !PG_IDENT.is_match(part))
    {
        p.add(
            "target.table",
            format!("{name:?} is not a table name; use letters, digits and `_`, optionally after a schema and a dot (\"imports.products\")"),
        );
    }
    let mode = match (t.mode.as_deref().unwrap_or("append"), &t.key) {
        ("append", None) => WriteMode::Append,
        ("append", Some(_)) => {
            p.add(
                "target.key",
                "applies to mode = \"upsert\"; append mode keys rows by their source and line",
            );
            WriteMode::Append
        }
        ("upsert", Some(toml::Value::Array(items))) if !items.is_empty() => {
            let mut key = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item.as_str() {
                    Some(k) if fields.is_empty() || fields.iter().any(|f| f == k) => key.push(k.to_string()),
                    Some(k) => p.add(
                        &format!("target.key[{i}]"),
                        format!(
                            "{k:?} is not a field of the template; upsert keys are field names ({})",
                            fields.join(", ")
                        ),
                    ),
                    None => p.add(&format!("target.key[{i}]"), "must be a field name"),
                }
            }
            WriteMode::Upsert(key)
        }
        ("upsert", _) => {
            p.add(
                "target.key",
                "missing; upsert needs the columns that identify a row, e.g. key = [\"id\"]",
            );
            WriteMode::Upsert(Vec::new())
        }
        (other, _) => {
            p.add(
                "target.mode",
                format!("{other:?} is not a mode; use \"append\" or \"upsert\""),
            );
            WriteMode::Append
        }
    };
    PostgresTargetSpec {
        url,
        schema,
        table,
        mode,
        create_table: t.create_table.unwrap_or(false),
    }
}

/// The keys of an `http` target.
pub(super) fn http_target(dir: &Path, t: RawTarget, p: &mut Problems<'_>) -> HttpTargetSpec {
    let url = url_source(dir, t.url.clone(), t.url_env.clone(), t.url_file.clone(), p);
    let shown_url = match &url {
        SecretSource::Inline(u) => {
            let u = u.expose();
            if !(u.starts_with("http://") || u.starts_with("https://"))
                || u.contains(char::is_whitespace)
                || reqwest::Url::parse(u).is_err()
            {
                p.add(
                    "target.url",
                    format!(
                        "{:?} is not an http:// or https:// URL",
                        crate::text::redact_url(u)
                    ),
                );
            }
            crate::text::redact_url(u)
        }
        SecretSource::Env(var) => format!("the URL in ${var}"),
        SecretSource::File { given, .. } => format!("the URL in {given}"),
    };
    let allow_insecure_http = t.allow_insecure_http.unwrap_or(false);
    let batch_size = in_range(p, "target.batch_size", t.batch_size, 500, 1, 100_000) as usize;
    let timeout = Duration::from_secs(in_range(p, "target.timeout_s", t.timeout_s, 30, 1, 3600) as u64);
    let max_retries = in_range(p, "target.max_retries", t.max_retries, 5, 0, 100) as usize;
    let mut headers = Vec::new();
    for (name, value) in t.headers.unwrap_or_default() {
        let key = format!("target.headers.{name}");
        let valid_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !valid_name {
            p.add(&key, "is not an HTTP header name");
            continue;
        }
        match value {
            toml::Value::String(v) if !v.contains(['\r', '\n']) => headers.push((name, Secret::new(v))),
            _ => p.add(&key, "must be a string on one line"),
        }
    }
    let token = match (t.token_env, t.token_file) {
        (Some(_), Some(_)) => {
            p.add("target.token_file", "give token_env or token_file, not both");
            None
        }
        (Some(var), None) if !var.is_empty() => Some(SecretSource::Env(var)),
        (None, Some(file)) if !file.is_empty() => Some(SecretSource::File {
            in_config_dir: resolve(dir, &file),
            given: file,
        }),
        (Some(_), None) => {
            p.add(
                "target.token_env",
                "is empty; name the environment variable that holds the token",
            );
            None
        }
        (None, Some(_)) => {
            p.add(
                "target.token_file",
                "is empty; name the file that holds the token",
            );
            None
        }
        (None, None) => None,
    };
    let headers_from = match (t.headers_env, t.headers_file) {
        (Some(_), Some(_)) => {
            p.add(
                "target.headers_file",
                "give headers_env or headers_file, not both",
            );
            None
        }
        (Some(var), None) if !var.is_empty() => Some(SecretSource::Env(var)),
        (None, Some(file)) if !file.is_empty() => Some(SecretSource::File {
            in_config_dir: resolve(dir, &file),
            given: file,
        }),
        (Some(_), None) | (None, Some(_)) => {
            p.add(
                "target.headers_file",
                "is empty; name the environment variable or file that holds `Name: value` lines",
            );
            None
        }
        (None, None) => None,
    };
    // Credentials over plain http to another host: refused unless the connection says so.
    if let SecretSource::Inline(u) = &url
        && !allow_insecure_http
        && let Some(host) = crate::text::plaintext_to_remote(u.expose())
    {
        let userinfo =
            reqwest::Url::parse(u.expose()).is_ok_and(|u| !u.username().is_empty() || u.password().is_some());
        if token.is_some() || !headers.is_empty() || headers_from.is_some() || userinfo {
            p.add(
                "target.url",
                format!("sends credentials (a token, headers or userinfo) over plain http to {host}; use https://, or set allow_insecure_http = true if the network between is trusted"),
            );
        }
    }
    HttpTargetSpec {
        url,
        shown_url,
        batch_size,
        headers,
        headers_from,
        allow_insecure_http,
        token,
        timeout,
        max_retries,
    }
}

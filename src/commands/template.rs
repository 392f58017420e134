//! `s3-importd template infer NAME [--files N] [--rows N]`: reads the first rows of the
//! connection's newest files as they are (every column, CSV cells as strings) and prints a
//! template file for them — a type and format per column, `required` where a column is never
//! empty — checked before it is printed: `validate` accepts it, and those rows parse with it
//! without a bad row (a column whose guess the parser refuses becomes a string). Reads only;
//! changes no state. The guessing itself is [`s3_importd::infer`].

use super::{EXIT_FAILED, pick_one};
use s3_importd::config::{Config, Connection};
use s3_importd::formats::Sample;
use s3_importd::infer::{self, Inferrer};
use s3_importd::run;
use s3_importd::select::ObjectMeta;
use s3_importd::sources::{self, Source};
use s3_importd::template::{Template, UnknownFields};
use s3_importd::text::clean;
use std::process::ExitCode;

pub async fn infer(config: &Config, name: &str, files: usize, rows: u64) -> anyhow::Result<ExitCode> {
    let connection = match pick_one(config, name) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let source = sources::for_connection(connection).await;
    let newest = match super::newest_admitted(source.as_ref(), connection, files.max(1)).await {
        Ok(newest) => newest,
        Err(e) => {
            eprintln!(
                "template infer {name}: cannot list {}: {}",
                source.location(),
                clean(&e)
            );
            return Ok(ExitCode::from(EXIT_FAILED));
        }
    };
    if newest.is_empty() {
        eprintln!(
            "template infer {name}: no file in {} to read (check `prefix`, `include` and `exclude`)",
            source.location()
        );
        return Ok(ExitCode::from(EXIT_FAILED));
    }
    // Every column as it is: the schemaless template.
    let mut as_is = connection.clone();
    as_is.template = Template {
        table: connection.template.table.clone(),
        unknown_fields: UnknownFields::Keep,
        max_bad_rows: connection.template.max_bad_rows,
        fields: Vec::new(),
    };
    let mut inferrer = Inferrer::default();
    let mut read = Vec::new();
    // Typed files (Parquet, Avro) say their columns' types: those are read, not guessed.
    let mut schemas = Vec::new();
    for meta in &newest {
        match run::parse_object(source.as_ref(), &as_is, meta, Sample::new(rows)).await {
            Ok((Ok(_), sample)) => {
                sample.rows.iter().for_each(|row| inferrer.row(row));
                schemas.extend(sample.schema);
                read.push(meta.clone());
            }
            Ok((Err(e), _)) => eprintln!("  {} is left out: {}", clean(&meta.key), clean(&e.to_string())),
            Err(e) => eprintln!("  {} is left out: {}", clean(&meta.key), clean(&e.to_string())),
        }
    }
    if inferrer.rows() == 0 && schemas.is_empty() {
        eprintln!("template infer {name}: the files read hold no rows to learn from");
        return Ok(ExitCode::from(EXIT_FAILED));
    }
    let (mut fields, from) = if schemas.is_empty() {
        (inferrer.fields(), format!("{} rows", inferrer.rows()))
    } else {
        (infer::from_schemas(&schemas), "the schemas".to_string())
    };
    let header = format!(
        "Inferred by `s3-importd template infer {name}` from {from} of {} file{} (the newest): check\nthe types, then save this as templates/{name}.toml and set `template = \"{name}\"` in\nconnections/{name}.toml; or, to keep it inline, put `table` under [template] there and\nwrite each [[fields]] as [[template.fields]].",
        read.len(),
        if read.len() == 1 { "" } else { "s" }
    );
    // The guess is checked as a run would use it; a field the parser refuses for some value
    // becomes a string, and the check runs again (at most once per field).
    for _ in 0..=fields.len() {
        use s3_importd::formats::FormatKind as K;
        let by_index = schemas.is_empty()
            && !connection.format.has_header
            && !matches!(connection.format.kind, K::Json | K::Jsonl | K::Parquet | K::Avro);
        let text = infer::render(&connection.template.table, &fields, &header, by_index);
        let template = match s3_importd::config::validate::template_file(
            &text,
            "template",
            &connection.name,
            connection.format.has_header,
        ) {
            Ok(t) => t,
            Err(problems) => {
                // A bug in the guessing: say so rather than print a template that fails.
                for p in problems {
                    eprintln!("template infer {name}: the inferred template is not valid: {p}");
                }
                return Ok(ExitCode::from(EXIT_FAILED));
            }
        };
        let failing = failing_fields(source.as_ref(), connection, &template, &read, rows).await;
        if failing.is_empty() {
            print!("{text}");
            return Ok(ExitCode::SUCCESS);
        }
        for (field, inferred) in template.fields.iter().zip(fields.iter_mut()) {
            if failing.contains(&field.name) {
                inferred.kind = "string";
                inferred.format = None;
            }
        }
    }
    eprintln!("template infer {name}: no template reads these rows without bad rows");
    Ok(ExitCode::from(EXIT_FAILED))
}

/// The fields that some of the sampled rows fail with `template`.
async fn failing_fields(
    source: &dyn Source,
    connection: &Connection,
    template: &Template,
    files: &[ObjectMeta],
    rows: u64,
) -> Vec<String> {
    let mut checked = connection.clone();
    checked.template = template.clone();
    let mut failing = Vec::new();
    for meta in files {
        if let Ok((_, sample)) = run::parse_object(source, &checked, meta, Sample::new(rows)).await {
            for e in sample.errors {
                if let Some(field) = e.field
                    && !failing.contains(&field)
                {
                    failing.push(field);
                }
            }
        }
    }
    failing
}

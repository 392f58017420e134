//! `s3-importd preview NAME [--files N] [--rows N]`: what the next run would import and why
//! the other objects are skipped, then the first rows of the newest candidate parsed against
//! the template, as an aligned table followed by the row errors; when nothing is left to
//! import, the newest file of the folder, marked as imported or skipped. Changes no state: selection
//! runs as a dry run, and the sample is parsed into memory, not the spool.

use super::{EXIT_FAILED, pick_one};
use chrono::SecondsFormat;
use s3_importd::clock::SystemClock;
use s3_importd::config::Config;
use s3_importd::formats::Sample;
use s3_importd::run::{self, RunEnv};
use s3_importd::select::{self, ObjectMeta};
use s3_importd::text::clean;
use s3_importd::{sources, targets};
use serde_json::Value;
use std::process::ExitCode;

/// The object whose rows are shown.
enum Subject {
    /// The newest object the next run would import.
    Candidate(ObjectMeta),
    /// Nothing is left to import: the newest object of the folder, in the ledger or not.
    Skipped { meta: ObjectMeta, imported: bool },
}

impl Subject {
    fn meta(&self) -> &ObjectMeta {
        match self {
            Subject::Candidate(m) | Subject::Skipped { meta: m, .. } => m,
        }
    }
}

/// The widest a cell of the sample table is shown.
const CELL: usize = 32;

pub async fn command(config: &Config, name: &str, files: usize, rows: u64) -> anyhow::Result<ExitCode> {
    let connection = match pick_one(config, name) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let state = super::open_state(config).await?;
    let source = sources::for_connection(connection).await;
    let target = targets::for_connection(connection).await;
    let spool_root = &config.settings.spool_dir;
    let env = RunEnv {
        connection,
        source: source.as_ref(),
        target: target.as_ref(),
        state: state.as_ref(),
        clock: &SystemClock,
        spool_root,
        limits: run::RunLimits {
            max_concurrent_objects: 1,
            ..run::RunLimits::default()
        },
        stop: tokio_util::sync::CancellationToken::new(),
        next_run: None,
    };
    let summary = run::run(&env, true).await;
    if let Some(e) = &summary.error {
        println!("preview {name}: {}", clean(e));
        return Ok(ExitCode::from(EXIT_FAILED));
    }
    let candidates = &summary.candidates;
    let skipped: u64 = summary.skipped.values().sum();
    println!(
        "preview {name}: {} listed in {}; the next run would import {}, and skip {skipped}",
        summary.counts.listed,
        source.location(),
        candidates.len()
    );
    for m in candidates.iter().take(files) {
        println!(
            "  {}  {} bytes  modified {}",
            clean(&m.key),
            m.size,
            m.last_modified.to_rfc3339_opts(SecondsFormat::Secs, true)
        );
    }
    if candidates.len() > files {
        println!("  … and {} more (--files to show more)", candidates.len() - files);
    }
    if !summary.skipped.is_empty() {
        let reasons: Vec<String> = summary.skipped.iter().map(|(r, n)| format!("{n} {r}")).collect();
        println!("skipped: {}", reasons.join("; "));
    }
    // The newest candidate; with none, the newest file the folder holds for the connection,
    // imported already or not, so that the template can still be seen at work on it.
    let newest = match candidates.iter().min_by(|a, b| select::newest_first(a, b)) {
        Some(m) => Subject::Candidate(m.clone()),
        None => match super::newest_admitted(source.as_ref(), connection, 1).await {
            Ok(mut found) if !found.is_empty() => {
                let m = found.remove(0);
                let settled = state
                    .settled_among(&connection.name, &[(m.key.as_str(), m.etag.as_str())])
                    .await?;
                Subject::Skipped {
                    imported: settled.first().copied().unwrap_or(false),
                    meta: m,
                }
            }
            Ok(_) => {
                println!("nothing to import, and no file in the folder to preview");
                return Ok(ExitCode::SUCCESS);
            }
            Err(e) => {
                println!("preview {name}: cannot list {}: {}", source.location(), clean(&e));
                return Ok(ExitCode::from(EXIT_FAILED));
            }
        },
    };
    println!();
    match &newest {
        Subject::Candidate(m) => println!(
            "first rows of {} (the newest), read as the template says:",
            clean(&m.key)
        ),
        Subject::Skipped { meta, imported } => println!(
            "nothing to import; first rows of {} (the newest file, {}), read as the template says:",
            clean(&meta.key),
            if *imported {
                "already imported"
            } else {
                "which the next run skips"
            }
        ),
    }
    let verdict = match newest {
        Subject::Candidate(_) => "verdict",
        Subject::Skipped { .. } => "verdict, were it imported again",
    };
    let newest = newest.meta();
    println!(
        "  read as {}",
        s3_importd::formats::dialect(&connection.format, &newest.key)
    );
    let (result, sample) =
        match run::parse_object(source.as_ref(), connection, newest, Sample::whole(rows)).await {
            Ok(parsed) => parsed,
            Err(e) => {
                println!("  cannot read it: {}", clean(&e.to_string()));
                return Ok(ExitCode::from(EXIT_FAILED));
            }
        };
    if let Some(schema) = &sample.schema {
        print!("  {}", schema.describe());
    }
    let stats = match result {
        Ok(stats) => stats,
        Err(e) => {
            println!("  the whole file would be rejected: {}", clean(&e.to_string()));
            return Ok(ExitCode::from(EXIT_FAILED));
        }
    };
    print!("{}", table(&sample));
    if sample.errors.is_empty() {
        println!("no row errors in these rows");
    } else {
        println!("row errors:");
        for e in &sample.errors {
            println!(
                "  line {}{}: {}",
                e.line,
                e.field
                    .as_ref()
                    .map(|f| format!(" field {}", clean(f)))
                    .unwrap_or_default(),
                clean(e.reason.text())
            );
        }
    }
    // The verdict a run would reach, from every row of the file (the sample shows the first).
    match run::over_max_bad_rows(&connection.template, stats) {
        Some(reason) => println!("{verdict}: the file would be rejected: {}", clean(&reason)),
        None => println!(
            "{verdict}: the file would be imported: {} good rows, {} bad (max_bad_rows = \"{}\")",
            stats.rows - stats.bad_rows,
            stats.bad_rows,
            connection.template.max_bad_rows
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// The good rows as an aligned table: the line, then the fields in the order of the first row.
fn table(sample: &Sample) -> String {
    let Some(first) = sample.rows.first() else {
        return "  (no good rows among them)\n".to_string();
    };
    let columns: Vec<&String> = first.keys().filter(|k| !k.starts_with("_source_")).collect();
    let mut grid: Vec<Vec<String>> = vec![
        std::iter::once("line".to_string())
            .chain(columns.iter().map(|c| clean(c).into_owned()))
            .collect(),
    ];
    for row in &sample.rows {
        let line = row.get("_source_line").map(cell).unwrap_or_default();
        grid.push(
            std::iter::once(line)
                .chain(
                    columns
                        .iter()
                        .map(|c| clean(&row.get(*c).map(cell).unwrap_or_default()).into_owned()),
                )
                .collect(),
        );
    }
    let widths: Vec<usize> = (0..grid[0].len())
        .map(|i| grid.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in grid {
        let cells: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str("  ");
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// A value as a table cell: strings bare, everything else as JSON, cut to [`CELL`] characters
/// and kept on one line.
fn cell(v: &Value) -> String {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let text = text.replace(['\n', '\r'], " ");
    if text.chars().count() > CELL {
        text.chars().take(CELL - 1).chain(std::iter::once('…')).collect()
    } else {
        text
    }
}

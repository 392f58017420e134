//! One connection file: its own keys (schedule, window, globs), and the sections it is made of,
//! each checked by its sibling module.

use super::*;

/// The files of `templates/`: as read, and those that passed on their own.
#[derive(Clone, Copy)]
pub(super) struct Templates<'a> {
    pub(super) raw: &'a BTreeMap<String, RawTemplate>,
    pub(super) checked: &'a BTreeMap<String, Template>,
}

pub(super) fn connection(
    dir: &Path,
    name: &str,
    file: &str,
    c: RawConnection,
    choice: TemplateChoice,
    templates: Templates<'_>,
    p: &mut Problems<'_>,
) -> Option<Connection> {
    let before = p.out.len();
    if !NAME.is_match(name) {
        p.add(
            "",
            "the file name is the connection's name and may use only letters, digits, `.`, `_` and `-` (at most 64, starting with a letter or digit); rename the file",
        );
    }
    let schedule = schedule(c.schedule.as_deref(), p);
    let backfill = in_range(p, "backfill_days", c.backfill_days, 90, 1, 36500);
    let settle = in_range(p, "settle_seconds", c.settle_seconds, 60, 0, 7 * 86400);
    // The load sizes of `s3-importd.toml`, for this connection alone, in the same ranges.
    let load_max_objects = c.load_max_objects.map(|n| {
        in_range(
            p,
            "load_max_objects",
            Some(n),
            1,
            LOAD_MAX_OBJECTS.0,
            LOAD_MAX_OBJECTS.1,
        ) as usize
    });
    let load_max_bytes = c.load_max_bytes.as_ref().map(|v| {
        size_in_range(
            p,
            "load_max_bytes",
            Some(v),
            defaults::LOAD_MAX_BYTES,
            LOAD_MAX_BYTES,
        )
    });
    let (source, filters) = match c.source {
        Some(s) => source(dir, s, p),
        None => {
            p.add("source", "missing; add a [source] table with the bucket to read");
            (None, None)
        }
    };
    let format = crate::formats::config::validate(c.format.unwrap_or_default(), p);
    let template = match choice {
        TemplateChoice::Inline(t) => template(&t, name, "template.", format.has_header, p),
        TemplateChoice::Named(n) => match templates.raw.get(&n) {
            // A template file's own problems are reported once, in that file; the connection
            // says only that it uses a broken template.
            Some(_) if !templates.checked.contains_key(&n) => {
                p.add(
                    "template",
                    format!("templates/{n}.toml has problems (listed under that file); fix them there"),
                );
                None
            }
            // What depends on the connection (a column index without a header) is checked
            // here, and blamed on the connection.
            Some(t) => template(t, name, "template.", format.has_header, p),
            None => {
                let known: Vec<&str> = templates.raw.keys().map(String::as_str).collect();
                p.add(
                    "template",
                    format!(
                        "no template {n:?}: there is no templates/{n}.toml{}",
                        if known.is_empty() {
                            String::new()
                        } else {
                            format!(" (templates: {})", known.join(", "))
                        }
                    ),
                );
                None
            }
        },
        TemplateChoice::Reported => None,
        TemplateChoice::Missing => {
            p.add(
                "template",
                "missing; add a [template] with [[template.fields]], or template = \"NAME\" for templates/NAME.toml",
            );
            None
        }
    };
    let target = match c.target {
        Some(t) => {
            let cx = crate::targets::TargetContext {
                dir,
                connection: name,
                template: template.as_ref(),
            };
            TargetSpec::validate(t, &cx, p)
        }
        None => {
            p.add(
                "target",
                "missing; add a [target] table, e.g. type = \"file\" with a path",
            );
            None
        }
    };
    if p.out.len() != before {
        return None;
    }
    Some(Connection {
        name: name.to_string(),
        file: file.to_string(),
        description: c.description.unwrap_or_default(),
        enabled: c.enabled.unwrap_or(true),
        schedule: schedule?,
        backfill: TimeDelta::days(backfill),
        settle: TimeDelta::seconds(settle),
        load_max_objects,
        load_max_bytes,
        source: source?,
        filters: filters?,
        template: template.map(|mut t| {
            // The format says which CSV cells mean no value; the template's fields apply it.
            for f in &mut t.fields {
                f.null_values = if f.kind == FieldType::String && !format.strings_can_be_null {
                    Vec::new()
                } else {
                    format.null_values.clone()
                };
            }
            t
        })?,
        format,
        target: target?,
    })
}

pub(super) fn schedule(text: Option<&str>, p: &mut Problems<'_>) -> Option<Schedule> {
    match text.unwrap_or("daily") {
        "daily" => Some(Schedule::Daily),
        "hourly" => Some(Schedule::Hourly),
        expr => {
            let fields = expr.split_whitespace().count();
            let parser = croner::parser::CronParser::builder()
                .seconds(croner::parser::Seconds::Disallowed)
                .year(croner::parser::Year::Disallowed)
                .build();
            if fields != 5 {
                p.add("schedule", format!("{expr:?} has {fields} field{}; use \"daily\", \"hourly\" or 5 cron fields (minute hour day month weekday), e.g. \"30 2 * * *\"", if fields == 1 { "" } else { "s" }));
                return None;
            }
            match parser.parse(expr) {
                Ok(cron) => Some(Schedule::Cron(Box::new(cron), expr.to_string())),
                Err(e) => {
                    p.add("schedule", format!("{expr:?} is not a cron expression ({}); use \"daily\", \"hourly\" or 5 cron fields, e.g. \"30 2 * * *\"", e.to_string().trim_end_matches('.')));
                    None
                }
            }
        }
    }
}

pub(super) fn globs(list: &Option<Vec<String>>, key: &str, p: &mut Problems<'_>) -> Option<GlobSet> {
    let list = list.as_ref()?;
    let mut builder = GlobSetBuilder::new();
    for (i, g) in list.iter().enumerate() {
        match Glob::new(g) {
            Ok(glob) => {
                builder.add(glob);
            }
            Err(e) => p.add(
                &format!("{key}[{i}]"),
                format!("{g:?} is not a glob: {}", e.kind()),
            ),
        }
    }
    builder.build().ok()
}

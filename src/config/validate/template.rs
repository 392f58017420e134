//! `[template]` and its fields, inline or in `templates/NAME.toml`: types, formats, defaults,
//! allowed values and `max_bad_rows`.

use super::*;

pub(super) fn template(
    t: &RawTemplate,
    connection: &str,
    at: &str,
    has_header: bool,
    p: &mut Problems<'_>,
) -> Option<Template> {
    let before = p.out.len();
    let table = t.table.clone().unwrap_or_else(|| connection.to_string());
    // A table named after its connection is checked with the connection's name.
    if t.table.is_some() && !TABLE.is_match(&table) {
        p.add(
            &format!("{at}table"),
            format!("{table:?} is not a table name; use letters, digits and `_`, starting with a letter"),
        );
    }
    let unknown_fields = match t.unknown_fields.as_deref().unwrap_or("ignore") {
        "ignore" => UnknownFields::Ignore,
        "reject" => UnknownFields::Reject,
        "keep" => UnknownFields::Keep,
        other => {
            p.add(
                &format!("{at}unknown_fields"),
                format!("{other:?} is not a choice; use \"ignore\", \"reject\" or \"keep\""),
            );
            UnknownFields::Ignore
        }
    };
    let max_bad_rows = bad_row_limit(t.max_bad_rows.as_ref(), &format!("{at}max_bad_rows"), p);
    let zone = zone(t.timezone.as_deref(), &format!("{at}timezone"), p).unwrap_or(Tz::UTC);
    // Without fields, a template that keeps unknown fields imports files as they are
    // (schemaless); any other has nothing to deliver.
    if t.fields.is_empty() && unknown_fields != UnknownFields::Keep {
        p.add(
            &format!("{at}fields"),
            "no fields; add at least one [[template.fields]] with a name and a type, or set unknown_fields = \"keep\" to import every column as it is",
        );
    }
    let mut fields = Vec::new();
    for (i, f) in t.fields.iter().enumerate() {
        let key = format!("{at}fields[{i}]");
        if let Some(f) = field(f, i, &key, has_header, zone, p) {
            if fields.iter().any(|g: &Field| g.name == f.name) {
                p.add(
                    &format!("{key}.name"),
                    format!("{:?} is used by an earlier field; names must be unique", f.name),
                );
            }
            fields.push(f);
        }
    }
    (p.out.len() == before).then_some(Template {
        table,
        unknown_fields,
        max_bad_rows,
        fields,
    })
}

/// The default `max_bad_rows`: a file is rejected when more than 1% of its rows are bad, but
/// never for five bad rows or fewer — a small file with a stray bad record is imported (its
/// bad rows quarantined), while a file read with the wrong delimiter or encoding, whose rows
/// are nearly all bad, is still rejected whatever its size.
pub const DEFAULT_MAX_BAD_ROWS: BadRowLimit = BadRowLimit::ShareOrCount(0.01, 5);

pub(super) fn bad_row_limit(v: Option<&CountOrText>, key: &str, p: &mut Problems<'_>) -> BadRowLimit {
    let fix =
        "use a count such as \"10\", a share such as \"1%\", or both, \"1% or 5\" (whichever allows more)";
    match v {
        None => DEFAULT_MAX_BAD_ROWS,
        // The contract writes the limit as a string, so that a count and a share read alike.
        Some(CountOrText::Count(n)) => {
            p.add(
                key,
                format!("{n} is a number; write it as a string: \"{n}\" for a count of bad rows, or a share such as \"1%\""),
            );
            BadRowLimit::Count(0)
        }
        Some(CountOrText::Text(t)) => {
            let t = t.trim();
            let parts: Vec<&str> = t.split(" or ").map(str::trim).collect();
            let (mut share, mut count) = (None, None);
            for part in &parts {
                if let Some(s) = part.strip_suffix('%') {
                    match s.trim().parse::<f64>() {
                        Ok(s) if (0.0..=100.0).contains(&s) && share.is_none() => share = Some(s / 100.0),
                        _ => {
                            p.add(
                                key,
                                format!("{part:?} in {t:?} is not a share between 0% and 100%; {fix}"),
                            );
                            return BadRowLimit::Count(0);
                        }
                    }
                } else {
                    match part.parse::<u64>() {
                        Ok(n) if count.is_none() => count = Some(n),
                        _ => {
                            p.add(key, format!("{t:?} is not a count or a share; {fix}"));
                            return BadRowLimit::Count(0);
                        }
                    }
                }
            }
            match (share, count) {
                (Some(s), Some(n)) => BadRowLimit::ShareOrCount(s, n),
                (Some(s), None) => BadRowLimit::Share(s),
                (None, Some(n)) => BadRowLimit::Count(n),
                (None, None) => {
                    p.add(key, format!("{t:?} is not a count or a share; {fix}"));
                    BadRowLimit::Count(0)
                }
            }
        }
    }
}

/// A time zone by its IANA name.
pub(super) fn zone(name: Option<&str>, key: &str, p: &mut Problems<'_>) -> Option<Tz> {
    let name = name?;
    match name.parse::<Tz>() {
        Ok(z) => Some(z),
        Err(_) => {
            p.add(
                key,
                format!("{name:?} is not a time zone; use an IANA name such as \"UTC\" or \"Europe/Berlin\""),
            );
            None
        }
    }
}

/// A decimal field's `precision` and `scale`: both or neither; 1 ≤ precision ≤ 38 (what
/// Parquet's and most warehouses' DECIMAL holds) and 0 ≤ scale ≤ precision.
fn decimal_shape(f: &RawField, key: &str, p: &mut Problems<'_>) -> Option<DecimalShape> {
    let (precision, scale) = match (f.precision, f.scale) {
        (None, None) => return None,
        (Some(precision), Some(scale)) => (precision, scale),
        (Some(_), None) => {
            p.add(
                &format!("{key}.scale"),
                "missing; give scale (digits after the point) with precision, e.g. precision = 12, scale = 2",
            );
            return None;
        }
        (None, Some(_)) => {
            p.add(
                &format!("{key}.precision"),
                "missing; give precision (digits in all) with scale, e.g. precision = 12, scale = 2",
            );
            return None;
        }
    };
    let Ok(precision @ 1..=38) = u8::try_from(precision) else {
        p.add(
            &format!("{key}.precision"),
            format!("{precision} is not a precision; use 1 to 38 digits"),
        );
        return None;
    };
    match u8::try_from(scale) {
        Ok(scale) if scale <= precision => Some(DecimalShape { precision, scale }),
        _ => {
            p.add(
                &format!("{key}.scale"),
                format!("{scale} is not a scale for precision {precision}; use 0 to {precision} digits after the point"),
            );
            None
        }
    }
}

pub(super) fn field(
    f: &RawField,
    index: usize,
    key: &str,
    has_header: bool,
    template_zone: Tz,
    p: &mut Problems<'_>,
) -> Option<Field> {
    let before = p.out.len();
    let name = match &f.name {
        Some(n) if !n.is_empty() && !n.starts_with("_source_") => n.clone(),
        Some(n) if n.starts_with("_source_") => {
            p.add(
                &format!("{key}.name"),
                format!("{n:?} is reserved for provenance; choose another name"),
            );
            n.clone()
        }
        _ => {
            p.add(
                &format!("{key}.name"),
                "missing; every field needs the name it is delivered under",
            );
            String::new()
        }
    };
    let kind_name = f.kind.as_deref().unwrap_or("string");
    let format = f.format.clone();
    let kind = match kind_name {
        "string" => Some(FieldType::String),
        "integer" => Some(FieldType::Integer),
        "decimal" => Some(FieldType::Decimal(decimal_shape(f, key, p))),
        "float" => Some(FieldType::Float),
        "boolean" => Some(FieldType::Boolean),
        "json" => Some(FieldType::Json),
        "date" => {
            if let Some(fmt) = &format {
                strftime_problem(fmt, &format!("{key}.format"), p);
            }
            Some(FieldType::Date(format.clone()))
        }
        "timestamp" => Some(FieldType::Timestamp {
            format: match format.as_deref() {
                None => TimeFormat::Iso,
                Some("unix") => TimeFormat::Unix,
                Some("unix_ms") => TimeFormat::UnixMs,
                Some(fmt) => {
                    strftime_problem(fmt, &format!("{key}.format"), p);
                    TimeFormat::Strftime(fmt.to_string())
                }
            },
            zone: zone(f.timezone.as_deref(), &format!("{key}.timezone"), p).unwrap_or(template_zone),
        }),
        other => {
            p.add(
                &format!("{key}.type"),
                format!(
                    "{other:?} is not a field type; use one of {}",
                    FieldType::NAMES.join(", ")
                ),
            );
            None
        }
    };
    if format.is_some() && !matches!(kind_name, "date" | "timestamp") {
        p.add(
            &format!("{key}.format"),
            "applies only to date and timestamp fields",
        );
    }
    if (f.precision.is_some() || f.scale.is_some()) && kind_name != "decimal" {
        p.add(
            &format!("{key}.precision"),
            "precision and scale apply only to type = \"decimal\"",
        );
    }
    if f.timezone.is_some() && kind_name != "timestamp" {
        p.add(&format!("{key}.timezone"), "applies only to timestamp fields");
    }
    let column = match &f.column {
        Some(CountOrText::Count(n)) if *n >= 1 => Column::Index(*n as usize - 1),
        Some(CountOrText::Count(n)) => {
            p.add(
                &format!("{key}.column"),
                format!("{n} is not a column number; columns are numbered from 1"),
            );
            Column::Index(0)
        }
        Some(CountOrText::Text(t)) if has_header => Column::Name(t.clone()),
        Some(CountOrText::Text(t)) => {
            match t.trim().parse::<usize>() {
                Ok(n) if n >= 1 => Column::Index(n - 1),
                _ => {
                    p.add(&format!("{key}.column"), format!("{t:?} is not a column number; with has_header = false, columns are numbered from 1"));
                    Column::Index(0)
                }
            }
        }
        None if has_header => Column::Name(name.clone()),
        None => Column::Index(index),
    };
    let kind = kind?;
    let field = Field {
        name,
        column,
        kind,
        required: f.required.unwrap_or(false),
        values: f.values.clone(),
        default: f.default.clone(),
        // The connection's `[format] null_values` replace these once the format is known.
        null_values: vec![String::new()],
        booleans: match (&f.true_values, &f.false_values) {
            (None, None) => None,
            (t, fa) => Some((t.clone().unwrap_or_default(), fa.clone().unwrap_or_default())),
        },
    };
    if field.booleans.is_some() && field.kind != FieldType::Boolean {
        p.add(
            &format!("{key}.true_values"),
            "true_values and false_values apply only to type = \"boolean\"",
        );
    }
    if let Some((yes, no)) = &field.booleans
        && let Some(both) = yes.iter().find(|y| no.contains(y))
    {
        p.add(
            &format!("{key}.false_values"),
            format!("{both:?} is in true_values too; a value cannot mean both"),
        );
    }
    if let Some(d) = &field.default {
        let probe = Field {
            default: None,
            values: None,
            ..field.clone()
        };
        if let Err(e) = probe.check(crate::template::RawValue::Text(d)) {
            p.add(&format!("{key}.default"), e);
        }
    }
    (p.out.len() == before).then_some(field)
}

pub(super) fn strftime_problem(fmt: &str, key: &str, p: &mut Problems<'_>) {
    use chrono::format::{Item, StrftimeItems};
    if StrftimeItems::new(fmt).any(|i| matches!(i, Item::Error)) {
        p.add(
            key,
            format!("{fmt:?} is not a strftime format; e.g. \"%d/%m/%Y %H:%M\""),
        );
    }
}

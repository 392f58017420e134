//! JSON Lines: one JSON object per line, each line its own error scope. Blank lines are
//! allowed. A line longer than [`MAX_LINE`] is a row error and is skipped without being held
//! in memory.

use super::{Failure, Provenanced};
use crate::template::{Column, RawValue, Template, UnknownFields};
use serde_json::{Map, Value};
use std::io::BufRead;

/// The longest line read as a row.
pub const MAX_LINE: usize = 16 * 1024 * 1024;

pub(super) fn parse(
    mut input: impl BufRead,
    template: &Template,
    sink: &mut Provenanced<'_, '_>,
) -> Result<(), Failure> {
    let mut buf = Vec::new();
    let mut line = 0u64;
    let claimed = claimed(template);
    loop {
        buf.clear();
        let Some(complete) = read_line(&mut input, &mut buf, MAX_LINE)? else {
            return Ok(());
        };
        line += 1;
        let bytes = buf.as_slice();
        let raw = || String::from_utf8_lossy(bytes).into_owned();
        if !complete {
            sink.broken(line, format!("line is longer than {MAX_LINE} bytes"), raw())?;
            continue;
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(value) => value_row(line, value, &claimed, template, sink, Some(bytes))?,
            Err(e) => sink.broken(line, format!("is not valid JSON: {e}"), raw())?,
        }
    }
}

/// The keys the template's fields read.
pub(super) fn claimed(template: &Template) -> Vec<&str> {
    template
        .fields
        .iter()
        .filter_map(|f| match &f.column {
            Column::Name(n) => Some(n.as_str()),
            Column::Index(_) => None,
        })
        .collect()
}

/// Checks one JSON value as a row: an object against the template, anything else is a bad
/// row. `line_bytes` is the text of the line for JSON Lines; a value from a JSON array is
/// shown re-serialized.
pub(super) fn value_row(
    line: u64,
    value: Value,
    claimed: &[&str],
    template: &Template,
    sink: &mut Provenanced<'_, '_>,
    line_bytes: Option<&[u8]>,
) -> Result<(), Failure> {
    let raw = |value: &Value| match line_bytes {
        Some(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        None => value.to_string(),
    };
    let object: Map<String, Value> = match value {
        Value::Object(o) => o,
        other => {
            sink.broken(line, "is not a JSON object".to_string(), raw(&other))?;
            return Ok(());
        }
    };
    let unknown: Vec<&String> = object.keys().filter(|k| !claimed.contains(&k.as_str())).collect();
    if template.unknown_fields == UnknownFields::Reject && !unknown.is_empty() {
        let names = unknown
            .iter()
            .map(|k| format!("{k:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        let raw = raw(&Value::Object(object.clone()));
        sink.broken(
            line,
            format!("has keys no field claims: {names} (unknown_fields = \"reject\")"),
            raw,
        )?;
        return Ok(());
    }
    let checked = template.check_row(
        |_, field| match &field.column {
            Column::Name(n) => object.get(n).map_or(RawValue::Missing, RawValue::Json),
            Column::Index(_) => RawValue::Missing,
        },
        &mut sink.values,
    );
    let extra: Vec<(String, Value)> = if template.unknown_fields == UnknownFields::Keep {
        unknown
            .iter()
            .map(|k| ((*k).clone(), object[k.as_str()].clone()))
            .collect()
    } else {
        Vec::new()
    };
    sink.emit(line, checked, &extra, || raw(&Value::Object(object.clone())))
}

/// Reads one line (without its `\n` or `\r\n`) into `buf`, keeping at most `max` bytes.
/// Returns `None` at the end of input, `Some(false)` when the line was longer than `max` (the
/// rest of it is read and dropped).
fn read_line(input: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> std::io::Result<Option<bool>> {
    let mut seen_any = false;
    let mut complete = true;
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        seen_any = true;
        let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        let room = max.saturating_sub(buf.len());
        if take > room {
            complete = false;
        }
        buf.extend_from_slice(&chunk[..take.min(room)]);
        input.consume(if done { take + 1 } else { take });
        if done {
            break;
        }
    }
    if !seen_any {
        return Ok(None);
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Some(complete))
}

#[cfg(test)]
mod tests {
    use super::read_line;
    use crate::format::testing::{Collect, id_template, parse_with};
    use crate::format::{FormatKind, FormatSpec};
    use crate::template::*;
    use serde_json::json;

    fn run(text: &str, unknown: UnknownFields) -> Collect {
        let spec = FormatSpec {
            kind: FormatKind::Jsonl,
            ..FormatSpec::default()
        };
        let (r, sink) = parse_with(
            text.as_bytes(),
            "k",
            &spec,
            &id_template("ID", unknown, Vec::new()),
        );
        r.unwrap();
        sink
    }

    #[test]
    fn lines_blank_lines_and_errors() {
        let sink = run(
            "\u{feff}{\"ID\": 1, \"x\": 2}\r\n\n   \n{\"ID\": \"q\"}\n[1]\n{bad\n{\"ID\": 5}",
            UnknownFields::Ignore,
        );
        let ids: Vec<_> = sink
            .rows
            .iter()
            .map(|r| (r["id"].clone(), r["_source_line"].clone()))
            .collect();
        assert_eq!(ids, vec![(json!(1), json!(1)), (json!(5), json!(7))]);
        let errs: Vec<_> = sink.errors.iter().map(|e| (e.line, e.reason.as_str())).collect();
        assert_eq!(errs[0], (4, "\"q\" is not an integer"));
        assert_eq!(errs[1], (5, "is not a JSON object"));
        assert_eq!(errs[2].0, 6);
        assert!(errs[2].1.starts_with("is not valid JSON: "), "{}", errs[2].1);
    }

    #[test]
    fn unknown_keys() {
        let sink = run("{\"ID\": 1, \"x\": 2}\n", UnknownFields::Reject);
        assert_eq!(
            sink.errors[0].reason,
            "has keys no field claims: \"x\" (unknown_fields = \"reject\")"
        );
        let sink = run("{\"ID\": 1, \"x\": 2}\n", UnknownFields::Keep);
        assert_eq!(sink.rows[0]["x"], json!(2));
    }

    #[test]
    fn long_lines_are_cut_not_held() {
        let text = format!("{}\nshort\n", "a".repeat(100));
        let mut input = std::io::BufReader::with_capacity(8, text.as_bytes());
        let mut buf = Vec::new();
        assert_eq!(read_line(&mut input, &mut buf, 10).unwrap(), Some(false));
        assert_eq!(buf.len(), 10);
        buf.clear();
        assert_eq!(read_line(&mut input, &mut buf, 10).unwrap(), Some(true));
        assert_eq!(buf, b"short");
        buf.clear();
        assert_eq!(read_line(&mut input, &mut buf, 10).unwrap(), None);
    }
}

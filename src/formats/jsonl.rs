//! JSON Lines: JSON objects separated by whitespace — usually one per line, but an object may
//! span several lines (pretty-printed, concatenated JSON) — each object its own error scope,
//! its row numbered by the line it starts on. [`Scanner`] finds where each object ends without
//! parsing it; serde then reads it into the template's fields. An object longer than
//! [`MAX_LINE`] is a row error and is skipped without being held in memory. Objects are
//! independent, so a large file's objects are checked in batches by worker threads.
//!
//! This is not the JSON document parser (`json.rs`), which reads one array or object.

use super::{Failure, Provenanced};
use crate::template::{Column, FieldError, RawValue, Template, UnknownFields};
use serde::Deserializer;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::fmt;
use std::io::BufRead;

/// The longest object (or line) read as a row.
pub const MAX_LINE: usize = 16 * 1024 * 1024;

pub(super) fn parse(
    mut input: impl BufRead + Send,
    template: &Template,
    sink: &mut Provenanced<'_, '_>,
    parallel: bool,
) -> Result<(), Failure> {
    if parallel {
        return parse_parallel(input, template, sink);
    }
    let mut buf = Vec::new();
    let mut scanner = Scanner::new();
    let mut fields = Fields::new(template);
    loop {
        buf.clear();
        let Some((line, complete)) = scanner.next(&mut input, &mut buf, MAX_LINE)? else {
            return Ok(());
        };
        check_line(line, &buf, complete, &mut fields, sink)?;
    }
}

/// Checks one line (read whole when `complete`) as a row into `sink`.
fn check_line(
    line: u64,
    bytes: &[u8],
    complete: bool,
    fields: &mut Fields<'_>,
    sink: &mut Provenanced<'_, '_>,
) -> Result<(), Failure> {
    let raw = || String::from_utf8_lossy(bytes).into_owned();
    if !complete {
        return sink.broken(
            line,
            format!("is longer than {MAX_LINE} bytes, the most one object may hold"),
            raw(),
        );
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    // The line is read straight into the fields' slots: no map of the whole object is built,
    // and keys without escapes are compared without being copied.
    fields.clear();
    // The whole line is checked as UTF-8 once (fast, over long runs), so that serde_json
    // need not check each string again as it reads it.
    let Ok(text) = std::str::from_utf8(bytes) else {
        return undecodable_line(line, bytes, sink, raw);
    };
    let mut de = serde_json::Deserializer::from_str(text);
    match LineSeed(fields)
        .deserialize(&mut de)
        .and_then(|object| de.end().map(|()| object))
    {
        Ok(true) => fields.emit(line, sink, raw),
        Ok(false) => sink.broken(line, "is not a JSON object".to_string(), raw()),
        // serde_json refuses a number beyond a float's range (1e999) as a syntax error.
        Err(e) if e.to_string().starts_with("number out of range") => sink.broken(
            line,
            format!("holds a number too large for a 64-bit float ({e}); write such a number as a string"),
            raw(),
        ),
        Err(e) => sink.broken(line, format!("is not valid JSON: {e}"), raw()),
    }
}

/// Reports a line holding text that did not decode, naming the key it is in when it can.
fn undecodable_line(
    line: u64,
    bytes: &[u8],
    sink: &mut Provenanced<'_, '_>,
    raw: impl FnOnce() -> String,
) -> Result<(), Failure> {
    let what = match undecodable_key(bytes) {
        Some(key) => format!("key {:?}", crate::text::excerpt(&key)),
        None => "the object".to_string(),
    };
    let reason = super::undecodable(&what, "object", bytes, sink.encoding);
    sink.broken(line, reason, raw())
}

/// The top-level key of an object whose name or value holds text that did not decode (read
/// again with such text replaced, which only this error path does).
fn undecodable_key(bytes: &[u8]) -> Option<String> {
    fn holds_bad(value: &Value) -> bool {
        match value {
            Value::String(s) => s.contains('\u{FFFD}'),
            Value::Array(items) => items.iter().any(holds_bad),
            Value::Object(map) => map.iter().any(|(k, v)| k.contains('\u{FFFD}') || holds_bad(v)),
            _ => false,
        }
    }
    let text = String::from_utf8_lossy(bytes);
    let object: Map<String, Value> = serde_json::from_str(&text).ok()?;
    object
        .into_iter()
        .find(|(k, v)| k.contains('\u{FFFD}') || holds_bad(v))
        .map(|(k, _)| k)
}

/// How many bytes of lines make one batch for a worker.
// Small under test, so that the tests' files make many batches.
const BATCH_BYTES: usize = if cfg!(test) { 16 * 1024 } else { 256 * 1024 };

/// At most how many lines make one batch.
const BATCH_LINES: usize = 8192;

/// Lines read by this thread, to be checked by a worker.
#[derive(Default)]
struct Batch {
    text: Vec<u8>,
    /// Each line's number, where it is in `text`, and whether it was read whole.
    lines: Vec<(u64, std::ops::Range<usize>, bool)>,
}

/// Parses with workers checking batches of lines (see [`super::parallel`]): lines are
/// independent in JSON Lines.
fn parse_parallel(
    mut input: impl BufRead + Send,
    template: &Template,
    sink: &mut Provenanced<'_, '_>,
) -> Result<(), Failure> {
    let mut scanner = Scanner::new();
    let read = |batch: &mut Batch| -> Result<bool, Failure> {
        batch.text.clear();
        batch.lines.clear();
        // A batch that held a long line gives its memory back rather than keep it for the
        // life of the parse.
        if batch.text.capacity() > 4 * BATCH_BYTES {
            batch.text = Vec::new();
        }
        // Capped by count too: a file of blank lines would otherwise make a batch of
        // millions of lines.
        while batch.text.len() < BATCH_BYTES && batch.lines.len() < BATCH_LINES {
            let start = batch.text.len();
            let Some((line, complete)) = scanner.next(&mut input, &mut batch.text, MAX_LINE)? else {
                break;
            };
            batch.lines.push((line, start..batch.text.len(), complete));
        }
        Ok(!batch.lines.is_empty())
    };
    let check = |fields: &mut Fields<'_>, batch: &Batch, view: &mut Provenanced<'_, '_>| {
        for (line, range, complete) in &batch.lines {
            let text = batch.text.get(range.clone()).unwrap_or_default();
            check_line(*line, text, *complete, fields, view)?;
        }
        Ok(())
    };
    super::parallel::run(sink, template, read, || Fields::new(template), check)
}

/// The values of one JSON object sorted out by the template's fields, reused from row to row.
pub(super) struct Fields<'t> {
    template: &'t Template,
    /// The distinct keys the fields read.
    keys: Vec<&'t str>,
    /// For each field, which of `keys` it reads (none for a column index, which JSON lacks).
    field_key: Vec<Option<usize>>,
    /// The value found for each of `keys`.
    values: Vec<Option<Value>>,
    /// Keys no field claims: with their values under `keep`, else with null.
    unknown: Vec<(String, Value)>,
}

/// Where the value of one key goes.
enum Slot {
    Claimed(usize),
    Unknown,
    Ignored,
}

impl<'t> Fields<'t> {
    pub(super) fn new(template: &'t Template) -> Self {
        let mut keys: Vec<&str> = Vec::new();
        let field_key = template
            .fields
            .iter()
            .map(|f| match &f.column {
                Column::Name(n) => Some(match keys.iter().position(|k| k == n) {
                    Some(at) => at,
                    None => {
                        keys.push(n);
                        keys.len() - 1
                    }
                }),
                Column::Index(_) => None,
            })
            .collect();
        Fields {
            template,
            values: vec![None; keys.len()],
            keys,
            field_key,
            unknown: Vec::new(),
        }
    }

    pub(super) fn clear(&mut self) {
        self.values.iter_mut().for_each(|v| *v = None);
        self.unknown.clear();
    }

    fn slot(&self, key: &str) -> Slot {
        match self.keys.iter().position(|k| *k == key) {
            Some(at) => Slot::Claimed(at),
            None if self.template.unknown_fields == UnknownFields::Ignore => Slot::Ignored,
            None => Slot::Unknown,
        }
    }

    /// Puts one key's value in its place (`slot`, from [`Fields::slot`]). A key given twice
    /// keeps its last value, as a JSON object map would.
    fn put(&mut self, slot: Slot, key: &str, value: Value) {
        match slot {
            Slot::Claimed(at) => self.values[at] = Some(value),
            Slot::Unknown => match self.unknown.iter_mut().find(|(k, _)| k == key) {
                Some((_, v)) => *v = value,
                None => self.unknown.push((key.to_string(), value)),
            },
            Slot::Ignored => {}
        }
    }

    /// Sorts out an object map's keys (copying the values kept).
    pub(super) fn fill(&mut self, object: &Map<String, Value>) {
        self.clear();
        for (key, value) in object {
            match self.slot(key) {
                Slot::Ignored => {}
                slot => self.put(slot, key, value.clone()),
            }
        }
    }

    /// Puts one key's value in its place (after [`Fields::clear`]), making it only when it is
    /// kept: a typed file's column, whose value `make` builds.
    pub(super) fn put_with<E>(
        &mut self,
        key: &str,
        make: impl FnOnce() -> Result<Value, E>,
    ) -> Result<(), E> {
        match self.slot(key) {
            Slot::Ignored => Ok(()),
            slot => {
                let value = make()?;
                self.put(slot, key, value);
                Ok(())
            }
        }
    }

    /// Checks the object put in the slots against the template and hands the row or its
    /// errors to the sink.
    pub(super) fn emit(
        &mut self,
        line: u64,
        sink: &mut Provenanced<'_, '_>,
        raw: impl FnOnce() -> String,
    ) -> Result<(), Failure> {
        let template = self.template;
        if template.unknown_fields == UnknownFields::Reject && !self.unknown.is_empty() {
            let names: Vec<String> = self.unknown.iter().map(|(k, _)| k.clone()).collect();
            let names = crate::text::quoted_list(&names);
            return sink.broken(
                line,
                format!("has keys no field claims: {names} (unknown_fields = \"reject\")"),
                raw(),
            );
        }
        let (values, field_key) = (&self.values, &self.field_key);
        let checked = template.check_row(
            |i, _| match field_key[i].and_then(|at| values[at].as_ref()) {
                Some(value) => RawValue::Json(value),
                None => RawValue::Missing,
            },
            &mut sink.buf,
        );
        match checked {
            Ok(()) => sink.emit(line, Ok(()), &self.unknown, raw),
            Err(mut errors) => {
                let text = raw();
                self.restore_digits(&mut errors, &text);
                sink.emit(line, Err(errors), &self.unknown, || text)
            }
        }
    }

    /// A number with more digits than a 64-bit value holds was read as a float, and its
    /// error would show the float (`1.2345678901234568e29`); the errors show the digits the
    /// object had instead, read again from its text (this is the error path only).
    fn restore_digits(&self, errors: &mut [FieldError], object_text: &str) {
        let mut raw_values: Option<Map<String, Value>> = None;
        for error in errors.iter_mut() {
            let Some(at) = self.template.fields.iter().position(|f| f.name == error.field) else {
                continue;
            };
            let Some(Value::Number(n)) = self.field_key[at].and_then(|k| self.values[k].as_ref()) else {
                continue;
            };
            if !n.is_f64() {
                continue;
            }
            let Column::Name(key) = &self.template.fields[at].column else {
                continue;
            };
            let raw_values = raw_values.get_or_insert_with(|| raw_numbers(object_text));
            if let Some(Value::String(digits)) = raw_values.get(key) {
                error.reason = error
                    .reason
                    .replacen(&n.to_string(), &crate::text::excerpt(digits), 1);
            }
        }
    }
}

/// The top-level numbers of a JSON object as the text they were written with.
fn raw_numbers(object_text: &str) -> Map<String, Value> {
    let parsed: Result<std::collections::BTreeMap<String, Box<serde_json::value::RawValue>>, _> =
        serde_json::from_str(object_text);
    parsed
        .map(|values| {
            values
                .into_iter()
                .filter(|(_, v)| v.get().starts_with(|c: char| c == '-' || c.is_ascii_digit()))
                .map(|(k, v)| (k, Value::String(v.get().to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads one JSON value into [`Fields`]; yields whether it was an object (anything else is
/// read to its end and dropped).
struct LineSeed<'f, 't>(&'f mut Fields<'t>);

impl<'de> DeserializeSeed<'de> for LineSeed<'_, '_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for LineSeed<'_, '_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match self.0.slot(&key) {
                Slot::Ignored => {
                    map.next_value::<IgnoredAny>()?;
                }
                slot => {
                    let value = map.next_value::<Value>()?;
                    self.0.put(slot, &key, value);
                }
            }
        }
        Ok(true)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(false)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// Reads an object key, borrowed from the line when it has no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
}

/// Checks one JSON value (an element of a JSON array, or a whole document) as a row: an
/// object against the template, anything else is a bad row. A bad row is shown re-serialized.
pub(super) fn value_row(
    line: u64,
    value: Value,
    fields: &mut Fields<'_>,
    sink: &mut Provenanced<'_, '_>,
) -> Result<(), Failure> {
    match &value {
        Value::Object(object) => {
            fields.fill(object);
            fields.emit(line, sink, || value.to_string())
        }
        _ => sink.broken(line, "is not a JSON object".to_string(), value.to_string()),
    }
}

/// Splits a JSON Lines stream into its top-level JSON values, one at a time, each with the
/// line it starts on. A value may span several lines (a stream of concatenated, pretty-printed
/// objects); values need only whitespace between them.
///
/// The scan is structural only (strings, escapes, brackets): serde checks the value's text
/// afterwards. A broken value ends early where that is certain, so that the next object is
/// still read on its own (resynchronisation):
/// - a line break inside a string ends it (JSON strings cannot hold one);
/// - an object or array opening at the start of a line ends it unless it is an element of an
///   enclosing array (after `[` or `,`). Pretty-printers put a key's opening bracket on the
///   key's line, so this never cuts what they write, while a truncated line followed by the
///   next object is cut where it should be.
///
/// A value that does not open with `{` or `[` is read to the end of its line, as before
/// multi-line values were accepted: it is a bad row either way.
pub(super) struct Scanner {
    /// The line the next unread byte is on.
    line: u64,
    /// For each bracket open in the current value, whether it is an array.
    open: Vec<bool>,
}

/// Bytes that matter outside strings.
const STRUCTURAL: [bool; 256] = {
    let mut t = [false; 256];
    t[b'"' as usize] = true;
    t[b'\n' as usize] = true;
    t[b'{' as usize] = true;
    t[b'}' as usize] = true;
    t[b'[' as usize] = true;
    t[b']' as usize] = true;
    t
};

/// How the scan of one chunk ended.
enum Stop {
    /// The chunk is used up and the value goes on.
    More,
    /// The value ends after this many bytes of the chunk.
    End(usize),
    /// The value ends before byte `at` of the chunk, and the bytes up to `consume` are used.
    Cut { at: usize, consume: usize },
}

impl Scanner {
    pub(super) fn new() -> Self {
        Scanner {
            line: 1,
            open: Vec::new(),
        }
    }

    /// Reads the next value into `buf` (appended), keeping at most `max` of its bytes.
    /// Returns `None` at the end of input, else the value's first line and whether it was
    /// kept whole (an over-long value is read to its end, and only an excerpt kept).
    pub(super) fn next(
        &mut self,
        input: &mut impl BufRead,
        buf: &mut Vec<u8>,
        max: usize,
    ) -> std::io::Result<Option<(u64, bool)>> {
        let start = buf.len();
        // Whitespace between values, counted for line numbers.
        let first = loop {
            let chunk = input.fill_buf()?;
            let Some(&byte) = chunk.first() else {
                return Ok(None);
            };
            match chunk
                .iter()
                .position(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            {
                Some(at) => {
                    self.line += memchr::memchr_iter(b'\n', &chunk[..at]).count() as u64;
                    input.consume(at);
                    if at == 0 {
                        break byte;
                    }
                }
                None => {
                    let n = chunk.len();
                    self.line += memchr::memchr_iter(b'\n', chunk).count() as u64;
                    input.consume(n);
                }
            }
        };
        let first_line = self.line;
        let mut kept = true;
        if first == b'{' || first == b'[' {
            self.open.clear();
            let (mut in_string, mut escaped) = (false, false);
            loop {
                let chunk = input.fill_buf()?;
                if chunk.is_empty() {
                    // The value is not closed: serde names what is missing.
                    break;
                }
                let stop = self.scan(chunk, &buf[start..], kept, &mut in_string, &mut escaped);
                let (take, consume) = match stop {
                    Stop::More => (chunk.len(), chunk.len()),
                    Stop::End(n) => (n, n),
                    Stop::Cut { at, consume } => (at, consume),
                };
                kept &= keep(buf, start, &chunk[..take], max);
                input.consume(consume);
                if !matches!(stop, Stop::More) {
                    break;
                }
            }
            // The text of a value cut early ends with the whitespace before the cut.
            while buf.len() > start && buf.last().is_some_and(u8::is_ascii_whitespace) {
                buf.pop();
            }
        } else {
            loop {
                let chunk = input.fill_buf()?;
                if chunk.is_empty() {
                    break;
                }
                let (take, done) = match memchr::memchr(b'\n', chunk) {
                    Some(i) => (i, true),
                    None => (chunk.len(), false),
                };
                kept &= keep(buf, start, &chunk[..take], max);
                input.consume(if done { take + 1 } else { take });
                if done {
                    self.line += 1;
                    break;
                }
            }
            if buf.last() == Some(&b'\r') && buf.len() > start {
                buf.pop();
            }
        }
        if !kept {
            // Only an excerpt of an over-long value is kept, for its row error; the memory it
            // took goes back at once.
            buf.truncate(start + super::RAW_CAP);
            buf.shrink_to(start + super::RAW_CAP);
        }
        Ok(Some((first_line, kept)))
    }

    /// Scans one chunk of a value opened with a bracket; `before` is the value's text read so
    /// far (complete while `kept`).
    fn scan(
        &mut self,
        chunk: &[u8],
        before: &[u8],
        kept: bool,
        in_string: &mut bool,
        escaped: &mut bool,
    ) -> Stop {
        let mut i = 0;
        while i < chunk.len() {
            if *escaped {
                *escaped = false;
                if chunk[i] != b'\n' {
                    i += 1;
                    continue;
                }
            }
            if *in_string {
                let Some(j) = memchr::memchr3(b'"', b'\\', b'\n', &chunk[i..]) else {
                    return Stop::More;
                };
                let at = i + j;
                match chunk[at] {
                    b'"' => *in_string = false,
                    b'\\' => *escaped = true,
                    _ => {
                        // A line break inside a string: the value ends before it.
                        *in_string = false;
                        self.line += 1;
                        return Stop::Cut { at, consume: at + 1 };
                    }
                }
                i = at + 1;
                continue;
            }
            let Some(j) = chunk[i..].iter().position(|&b| STRUCTURAL[b as usize]) else {
                return Stop::More;
            };
            let at = i + j;
            match chunk[at] {
                b'"' => *in_string = true,
                b'\n' => self.line += 1,
                b @ (b'{' | b'[') => {
                    if kept && !self.open.is_empty() && !continues(&self.open, &chunk[..at], before) {
                        return Stop::Cut { at, consume: at };
                    }
                    self.open.push(b == b'[');
                }
                _ => {
                    self.open.pop();
                    if self.open.is_empty() {
                        return Stop::End(at + 1);
                    }
                }
            }
            i = at + 1;
        }
        Stop::More
    }
}

/// Appends `bytes` of a value to `buf` while the value (from `start`) stays within `max`;
/// false once it does not.
fn keep(buf: &mut Vec<u8>, start: usize, bytes: &[u8], max: usize) -> bool {
    let room = max.saturating_sub(buf.len() - start);
    buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
    bytes.len() <= room
}

/// Whether a bracket opening inside a value (its text so far is `before` then `here`) belongs
/// to it: always in the middle of a line; at the start of a line only as an array's element.
fn continues(open: &[bool], here: &[u8], before: &[u8]) -> bool {
    let mut text = here.iter().rev().chain(before.iter().rev());
    let mut line_start = false;
    let previous = loop {
        match text.next() {
            Some(b'\n') => line_start = true,
            Some(b' ' | b'\t' | b'\r') => {}
            Some(&b) => break b,
            None => return true,
        }
    };
    !line_start || (open.last() == Some(&true) && matches!(previous, b'[' | b','))
}

#[cfg(test)]
mod tests {
    use super::Scanner;
    use crate::formats::Failure;
    use crate::formats::testing::{Collect, field, id_template, parse_with};
    use crate::formats::{FormatKind, FormatSpec};
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
        let errs: Vec<_> = sink.errors.iter().map(|e| (e.line, e.reason.text())).collect();
        assert_eq!(errs[0], (4, "\"q\" is not an integer"));
        assert_eq!(errs[1], (5, "is not a JSON object"));
        assert_eq!(errs[2].0, 6);
        assert!(errs[2].1.starts_with("is not valid JSON: "), "{}", errs[2].1);
    }

    /// A float is delivered with the value its digits name, to the last bit: serde_json's
    /// default parser can be one unit in the last place off (it read 11.700000000000001 as
    /// 11.7), so it is built with `float_roundtrip`.
    #[test]
    fn floats_keep_every_digit() {
        let text =
            "{\"ID\": 11.700000000000001}\n{\"ID\": 2.2250738585072014e-308}\n{\"ID\": 0.30000000000000004}";
        let spec = FormatSpec {
            kind: FormatKind::Jsonl,
            ..FormatSpec::default()
        };
        let x = field("x", Column::Name("ID".into()), FieldType::Float, true);
        let template = Template {
            fields: vec![x],
            ..id_template("ID", UnknownFields::Ignore, Vec::new())
        };
        let (r, sink) = parse_with(text.as_bytes(), "k", &spec, &template);
        r.unwrap();
        let floats: Vec<f64> = sink.rows.iter().filter_map(|r| r["x"].as_f64()).collect();
        assert_eq!(
            floats,
            vec![11.700000000000001, 2.2250738585072014e-308, 0.30000000000000004]
        );
    }

    #[test]
    fn the_parallel_parse_gives_what_the_one_thread_loop_gives() {
        use crate::formats::testing::one_thread_and_parallel_agree;
        use crate::formats::{Provenance, Provenanced, RowSink};
        let name = field("name", Column::Name("name".into()), FieldType::String, true);
        let template = id_template("ID", UnknownFields::Ignore, vec![name]);
        // Several batches' worth of lines, with blank lines, bad JSON, non-objects and rows
        // failing one or two fields among them.
        let mut text = String::new();
        for i in 0..60_000 {
            text.push_str(&match i % 11 {
                3 => "\n".to_string(),
                5 => format!("{{\"ID\": {i}, \"name\": \n"),
                7 => "[1, 2]\n".to_string(),
                9 => "{\"ID\": \"x\"}\r\n".to_string(),
                _ => format!("{{\"ID\": {i}, \"name\": \"n{i}\"}}\n"),
            });
        }
        let run = |parallel: bool, sink: &mut dyn RowSink| {
            let provenance = Provenance {
                key: "k",
                version: "v",
            };
            let mut p = Provenanced::new(sink, provenance, &template);
            let result = super::parse(text.as_bytes(), &template, &mut p, parallel);
            assert!(matches!(result, Ok(()) | Err(Failure::Stopped)));
            p.stats
        };
        let stats = one_thread_and_parallel_agree(run, 20);
        assert_eq!(stats.bad_rows, 60_000 / 11 * 3 + 1);
    }

    #[test]
    fn unknown_keys() {
        let sink = run("{\"ID\": 1, \"x\": 2}\n", UnknownFields::Reject);
        assert_eq!(
            sink.errors[0].reason.text(),
            "has keys no field claims: \"x\" (unknown_fields = \"reject\")"
        );
        let sink = run("{\"ID\": 1, \"x\": 2}\n", UnknownFields::Keep);
        assert_eq!(sink.rows[0]["x"], json!(2));
        // A key given twice keeps its last value, claimed or not; escaped keys are matched
        // by their text.
        let sink = run(
            "{\"ID\": 1, \"x\": 2, \"I\\u0044\": 3, \"x\": [4]}\n",
            UnknownFields::Keep,
        );
        assert_eq!(sink.rows[0]["id"], json!(3));
        assert_eq!(sink.rows[0]["x"], json!([4]));
        let sink = run("{\"ID\": 1, \"x\": 2, \"x\": 3}\n", UnknownFields::Reject);
        assert_eq!(
            sink.errors[0].reason.text(),
            "has keys no field claims: \"x\" (unknown_fields = \"reject\")"
        );
    }

    /// A value the scanner found: its first line, whether it was kept whole, and its text.
    type Found = (u64, bool, String);

    /// Every value the scanner finds in `text`.
    fn values(text: &str, max: usize, chunk: usize) -> Vec<Found> {
        let mut input = std::io::BufReader::with_capacity(chunk, text.as_bytes());
        let mut scanner = Scanner::new();
        let mut out = Vec::new();
        for _ in 0..100 {
            let mut buf = Vec::new();
            match scanner.next(&mut input, &mut buf, max).unwrap() {
                Some((line, kept)) => out.push((line, kept, String::from_utf8(buf).unwrap())),
                None => return out,
            }
        }
        panic!("the scanner did not reach the end of {text:?}");
    }

    #[test]
    fn the_scanner_splits_values_and_resynchronises_after_broken_ones() {
        let v = |line: u64, text: &str| (line, true, text.to_string());
        let cases: Vec<(&str, Vec<Found>)> = vec![
            (
                "{\"a\": 1}\n{\"a\": 2}\n",
                vec![v(1, "{\"a\": 1}"), v(2, "{\"a\": 2}")],
            ),
            // Pretty-printed objects, CRLF, nested arrays of objects at the start of lines,
            // brackets and escaped quotes inside strings.
            (
                "{\r\n  \"a\": [\r\n    {\"b\": \"}{\"},\r\n{\"c\": \"\\\"]\"}\r\n  ]\r\n}\r\n{\"d\": 1}",
                vec![
                    v(
                        1,
                        "{\r\n  \"a\": [\r\n    {\"b\": \"}{\"},\r\n{\"c\": \"\\\"]\"}\r\n  ]\r\n}",
                    ),
                    v(7, "{\"d\": 1}"),
                ],
            ),
            // Several values on one line; blank lines between them.
            (
                "{\"a\":1} {\"a\":2}\n\n\n[1,\n2] {}",
                vec![v(1, "{\"a\":1}"), v(1, "{\"a\":2}"), v(4, "[1,\n2]"), v(5, "{}")],
            ),
            // A line cut inside a string, after a value, after a key or after a colon: the
            // next line's object is read on its own.
            (
                "{\"a\": \"x\n{\"a\": 1, \"b\": 2\n{\"a\": 3, \"b\"\n{\"a\": 4, \"b\":\n{\"a\": 5}\n",
                vec![
                    v(1, "{\"a\": \"x"),
                    v(2, "{\"a\": 1, \"b\": 2"),
                    v(3, "{\"a\": 3, \"b\""),
                    v(4, "{\"a\": 4, \"b\":"),
                    v(5, "{\"a\": 5}"),
                ],
            ),
            // Not an object: read to the end of its line, as line-by-line reading did.
            (
                "hello {\"a\": 1}\r\n42\n{\"a\": 2}",
                vec![v(1, "hello {\"a\": 1}"), v(2, "42"), v(3, "{\"a\": 2}")],
            ),
            // An object never closed runs to the end of the input.
            ("{\"a\": [1,\n2,\n", vec![v(1, "{\"a\": [1,\n2,")]),
            // An escaped line break is still a line break inside a string.
            (
                "{\"a\": \"x\\\n{\"a\": 1}",
                vec![v(1, "{\"a\": \"x\\"), v(2, "{\"a\": 1}")],
            ),
            (" \n \r\n", vec![]),
        ];
        for (text, expected) in cases {
            // Chunks of one byte cross every boundary the scanner keeps state over.
            for chunk in [1, 3, 8192] {
                assert_eq!(
                    values(text, 1 << 20, chunk),
                    expected,
                    "{text:?} in chunks of {chunk}"
                );
            }
        }
    }

    #[test]
    fn long_values_are_cut_not_held() {
        let text = format!(
            "{{\"a\": \"{}\",\n\"b\": 1}}\n{}\n{{\n}}\n",
            "x".repeat(100),
            "y".repeat(100)
        );
        let found = values(&text, 10, 8);
        let kept: Vec<(u64, bool, usize)> = found.iter().map(|(l, k, t)| (*l, *k, t.len())).collect();
        assert_eq!(kept, [(1, false, 10), (3, false, 10), (4, true, 3)]);
    }

    #[test]
    fn objects_over_several_lines_are_rows_numbered_by_their_first_line() {
        let sink = run(
            "{\n  \"ID\": 1,\n  \"x\": {\"y\": [\n    {\"z\": 1}\n  ]}\n}\n{\"ID\": 2,\n{\"ID\": 3}{\"ID\":\n 4}\n",
            UnknownFields::Keep,
        );
        let ids: Vec<_> = sink
            .rows
            .iter()
            .map(|r| (r["id"].clone(), r["_source_line"].clone()))
            .collect();
        assert_eq!(
            ids,
            vec![(json!(1), json!(1)), (json!(3), json!(8)), (json!(4), json!(8))]
        );
        assert_eq!(sink.rows[0]["x"], json!({"y": [{"z": 1}]}));
        let errs: Vec<_> = sink.errors.iter().map(|e| (e.line, e.raw.as_str())).collect();
        assert_eq!(errs, [(7, "{\"ID\": 2,")]);
        assert!(
            sink.errors[0].reason.text().starts_with("is not valid JSON: EOF"),
            "{}",
            sink.errors[0].reason
        );
    }

    #[test]
    fn big_numbers_are_named_by_their_digits() {
        let c = run(
            "{\"ID\": 123456789012345678901234567890}\n{\"ID\": 1e999}\n{\"ID\": -98765432109876543210.5}\n",
            UnknownFields::Ignore,
        );
        let reasons: Vec<&str> = c.errors.iter().map(|e| e.reason.text()).collect();
        assert_eq!(
            reasons,
            [
                "123456789012345678901234567890 is not an integer",
                "holds a number too large for a 64-bit float (number out of range at line 1 column 12); write such a number as a string",
                "-98765432109876543210.5 is not an integer",
            ]
        );
    }
}

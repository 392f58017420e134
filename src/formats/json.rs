//! JSON documents: a top-level array of objects, streamed element by element, or a single
//! top-level object, which is one row.
//!
//! The array is never loaded whole: serde_json hands the elements to a visitor one at a time,
//! and each is checked and passed to the sink before the next is read. One element may not be
//! larger than [`MAX_ELEMENT`] bytes, so memory stays bounded whatever the file holds. Unlike
//! JSON Lines, a syntax error cannot be skipped (there is no next line to resume at), so it
//! fails the whole object; an element that is not an object, or fails its template, is a bad
//! row like any other. This module is not a JSON parser: serde_json is.

use super::jsonl::{Fields, value_row};
use super::{Failure, ParseError, Provenanced};
use crate::template::Template;
use serde::Deserializer as _;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::cell::Cell;
use std::fmt;
use std::io::{self, BufRead, Read};
use std::rc::Rc;

/// The largest element (or single top-level object) read as a row.
pub const MAX_ELEMENT: usize = super::jsonl::MAX_LINE;

pub(super) fn parse(
    input: impl BufRead,
    template: &Template,
    sink: &mut Provenanced<'_, '_>,
) -> Result<(), Failure> {
    let position = Rc::new(Position::default());
    let tracked = Tracked {
        inner: input,
        position: position.clone(),
    };
    let mut de = serde_json::Deserializer::from_reader(tracked);
    let mut rows = Rows {
        fields: Fields::new(template),
        sink,
        position: &position,
        failure: None,
        found: None,
    };
    position.arm();
    let outcome = (&mut de).deserialize_any(&mut rows).and_then(|()| de.end());
    if let Some(failure) = rows.failure.take() {
        return Err(failure);
    }
    match (outcome, rows.found) {
        (Err(e), _) => Err(failure_of(e, &position)),
        (Ok(()), Some(found)) => Err(Failure::File(ParseError::NotRows { found })),
        (Ok(()), None) => Ok(()),
    }
}

/// Turns a serde_json error into the failure of the object: the reader's own errors keep
/// their I/O classification, everything else is a property of the file.
fn failure_of(e: serde_json::Error, position: &Position) -> Failure {
    if position.too_large.get() {
        return Failure::File(ParseError::TooLarge {
            line: position.start.get(),
            limit: MAX_ELEMENT,
        });
    }
    if e.is_io() {
        return Failure::Io(io::Error::from(e));
    }
    let reason = e.to_string();
    // serde_json ends its messages with " at line L column C"; the error carries both apart.
    let reason = match reason.rfind(" at line ") {
        Some(cut) => reason[..cut].to_string(),
        None => reason,
    };
    Failure::File(ParseError::Json {
        line: e.line() as u64,
        column: e.column() as u64,
        reason,
    })
}

/// Where the reader is: the current line, the line the current element started on, and how
/// many bytes that element has taken so far.
#[derive(Default)]
struct Position {
    /// The current 0-based count of newlines read.
    newlines: Cell<u64>,
    /// Set when the next non-blank byte starts an element.
    armed: Cell<bool>,
    /// The 1-based line the current element starts on.
    start: Cell<u64>,
    /// Bytes read since the current element started.
    taken: Cell<usize>,
    too_large: Cell<bool>,
}

impl Position {
    /// Marks that the next value read starts a new element.
    fn arm(&self) {
        self.armed.set(true);
        self.taken.set(0);
    }
}

/// A reader that keeps [`Position`] up to date and stops an element that grows past
/// [`MAX_ELEMENT`].
struct Tracked<R> {
    inner: R,
    position: Rc<Position>,
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let p = &self.position;
        for &b in &buf[..n] {
            if p.armed.get() && !matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b',' | b'[') {
                p.armed.set(false);
                p.start.set(p.newlines.get() + 1);
            }
            if b == b'\n' {
                p.newlines.set(p.newlines.get() + 1);
            }
        }
        let taken = p.taken.get() + n;
        p.taken.set(taken);
        if taken > MAX_ELEMENT {
            p.too_large.set(true);
            return Err(io::Error::new(io::ErrorKind::InvalidData, "element too large"));
        }
        Ok(n)
    }
}

/// The visitor for the top-level value: streams an array's elements into the sink, takes an
/// object as one row, and refuses anything else.
struct Rows<'a, 's, 'p, 'q> {
    fields: Fields<'a>,
    sink: &'s mut Provenanced<'p, 'q>,
    position: &'a Position,
    /// A failure of the sink, kept here because serde can only carry its own error type.
    failure: Option<Failure>,
    /// What the top-level value was, when it was not an array or an object.
    found: Option<&'static str>,
}

impl Rows<'_, '_, '_, '_> {
    fn row<E: de::Error>(&mut self, value: Value) -> Result<(), E> {
        let line = self.position.start.get();
        if let Err(f) = value_row(line, value, &mut self.fields, self.sink) {
            self.failure = Some(f);
            return Err(E::custom("the sink failed"));
        }
        Ok(())
    }

    /// Notes a top-level value that holds no rows. The document is still read to its end, so
    /// that a syntax error after it (`1 2`) is reported as such.
    fn not_rows<E: de::Error>(&mut self, found: &'static str) -> Result<(), E> {
        self.found = Some(found);
        Ok(())
    }
}

impl<'de> Visitor<'de> for &mut Rows<'_, '_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of objects or an object")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        loop {
            self.position.arm();
            match seq.next_element_seed(ElementSeed)? {
                Some(value) => self.row(value)?,
                None => return Ok(()),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let object: Map<String, Value> =
            de::Deserialize::deserialize(de::value::MapAccessDeserializer::new(map))?;
        self.row(Value::Object(object))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.not_rows("a boolean")
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.not_rows("a number")
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.not_rows("a number")
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.not_rows("a number")
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.not_rows("a string")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.not_rows("null")
    }
}

/// Reads one array element as a `Value`.
struct ElementSeed;

impl<'de> DeserializeSeed<'de> for ElementSeed {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        de::Deserialize::deserialize(d)
    }
}

#[cfg(test)]
mod tests {
    use crate::formats::testing::{Collect, id_template, parse_with};
    use crate::formats::{FormatKind, FormatSpec, ParseError, ParseStats};
    use crate::template::UnknownFields;
    use serde_json::json;

    fn run(text: &str) -> (Result<ParseStats, ParseError>, Collect) {
        let spec = FormatSpec {
            kind: FormatKind::Json,
            ..FormatSpec::default()
        };
        let template = id_template("id", UnknownFields::Ignore, Vec::new());
        parse_with(text.as_bytes(), "k.json", &spec, &template)
    }

    #[test]
    fn array_elements_are_rows_with_their_start_lines() {
        let text = "[\n  {\"id\": 1},\n  {\n    \"id\": \"x\"\n  },\n  7,\n  {\"id\": 4}\n]\n";
        let (r, sink) = run(text);
        assert_eq!(r.unwrap(), ParseStats { rows: 4, bad_rows: 2 });
        let lines: Vec<_> = sink
            .rows
            .iter()
            .map(|r| (r["id"].clone(), r["_source_line"].clone()))
            .collect();
        assert_eq!(lines, vec![(json!(1), json!(2)), (json!(4), json!(7))]);
        let errors: Vec<_> = sink
            .errors
            .iter()
            .map(|e| (e.line, e.reason.text(), e.raw.as_str()))
            .collect();
        assert_eq!(
            errors,
            vec![
                (3, "\"x\" is not an integer", "{\"id\":\"x\"}"),
                (6, "is not a JSON object", "7"),
            ]
        );
    }

    #[test]
    fn a_single_object_is_one_row() {
        let (r, sink) = run("{\"id\": 9, \"other\": [1, 2]}");
        assert_eq!(r.unwrap().rows, 1);
        assert_eq!(sink.rows[0]["id"], json!(9));
    }

    #[test]
    fn file_errors() {
        let (r, _) = run("42");
        assert_eq!(
            r.unwrap_err().to_string(),
            "the top-level JSON value is a number; a json file must hold an array of objects or one object"
        );
        let (r, sink) = run("[{\"id\": 1},\n {\"id\": 2]");
        assert_eq!(
            r.unwrap_err().to_string(),
            "is not valid JSON: expected `,` or `}` at line 2, column 10"
        );
        // The rows read before the error reached the sink; the caller discards them.
        assert_eq!(sink.rows.len(), 1);
        let (r, _) = run("[] x");
        assert!(matches!(r, Err(ParseError::Json { .. })), "{r:?}");
        let (r, _) = run("");
        assert!(matches!(r, Err(ParseError::Json { .. })), "{r:?}");
    }
}

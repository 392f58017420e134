//! The escape character outside quotes, as Python's `csv` reads it: `a\,b` is one field `a,b`,
//! `\` before a line break keeps the break in the field, `\"` at a field's start is a quote
//! that opens nothing. The `csv` crate honours an escape only inside quotes, so this reader
//! rewrites the text before it: an unquoted field that holds an escape is written without
//! its escapes, and quoted (its quotes and escapes escaped inside) where the field's text
//! would otherwise be split or read as quoted. Everything else passes through as it is; line
//! breaks are kept one for one, so line numbers do not move.
//!
//! Not done: with no quote character (`quote_char = ""`) an escaped delimiter or line break
//! cannot be written quoted, and is then read as a delimiter or a line break; an escape after
//! a closing quote (`"ab"\,`) is an ordinary character. Pure: it reads only the reader given.

use super::super::Dialect;
use super::super::record_cap::MAX_RECORD;
use std::io::{self, Read};

/// Where the rewriting stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At a field's start; `record` when the field starts a record.
    FieldStart {
        record: bool,
    },
    /// A comment line (the comment character at a record's start), passed through.
    Comment,
    /// Inside an unquoted field, held in `field`.
    Field,
    /// After an escape outside quotes.
    Escaped,
    /// An unquoted field longer than a record may be: passed through to the record cap,
    /// which cuts it.
    Long,
    /// Inside quotes, passed through, as are the three states after it.
    Quoted,
    EscapeInQuoted,
    QuoteInQuoted,
    AfterQuoted,
}

/// Reads `inner`, rewriting escapes outside quotes (see the module's doc).
pub struct OutsideEscapes<R> {
    inner: R,
    delimiter: u8,
    quote: Option<u8>,
    escape: u8,
    double_quote: bool,
    comment: Option<u8>,
    state: State,
    /// The unquoted field being read, its escapes removed.
    field: Vec<u8>,
    /// Whether `field` must be written quoted.
    needs_quotes: bool,
    /// Whether the field being held starts a record (for the comment character).
    field_starts_record: bool,
    out: Vec<u8>,
    at: usize,
    buf: Box<[u8]>,
    done: bool,
}

impl<R: Read> OutsideEscapes<R> {
    /// `dialect.escape` must be set; without one there is nothing to rewrite.
    pub fn new(inner: R, dialect: Dialect, escape: u8) -> OutsideEscapes<R> {
        OutsideEscapes {
            inner,
            delimiter: dialect.delimiter,
            quote: dialect.quote,
            escape,
            double_quote: dialect.double_quote,
            comment: dialect.comment,
            state: State::FieldStart { record: true },
            field: Vec::new(),
            needs_quotes: false,
            field_starts_record: false,
            out: Vec::new(),
            at: 0,
            buf: vec![0; 64 * 1024].into_boxed_slice(),
            done: false,
        }
    }

    /// Writes the held field: quoted when it must be (and can be), else as its text.
    fn flush_field(&mut self) {
        match self.quote {
            Some(q) if self.needs_quotes => {
                self.out.push(q);
                for &b in &self.field {
                    if b == q || b == self.escape {
                        self.out.push(self.escape);
                    }
                    self.out.push(b);
                }
                self.out.push(q);
            }
            _ => self.out.extend_from_slice(&self.field),
        }
        self.field.clear();
        self.needs_quotes = false;
    }

    /// Holds a byte of an unquoted field's text; notes when the field must be quoted.
    fn hold(&mut self, b: u8) {
        let first = self.field.is_empty();
        let special = b == self.delimiter
            || b == b'\n'
            || (first && Some(b) == self.quote)
            || (first && self.field_starts_record && Some(b) == self.comment);
        self.needs_quotes |= special;
        self.field.push(b);
    }

    fn step(&mut self, b: u8) {
        let (d, q, e) = (self.delimiter, self.quote, self.escape);
        self.state = match self.state {
            State::FieldStart { record } => {
                if record && Some(b) == self.comment {
                    self.out.push(b);
                    State::Comment
                } else if Some(b) == q {
                    self.out.push(b);
                    State::Quoted
                } else if b == d || b == b'\n' {
                    self.out.push(b);
                    State::FieldStart { record: b == b'\n' }
                } else {
                    self.field_starts_record = record;
                    if b == e {
                        State::Escaped
                    } else {
                        self.hold(b);
                        State::Field
                    }
                }
            }
            State::Comment => {
                self.out.push(b);
                if b == b'\n' {
                    State::FieldStart { record: true }
                } else {
                    State::Comment
                }
            }
            State::Field | State::Escaped if self.field.len() >= MAX_RECORD => {
                // Too long to hold: the record cap cuts the record this field is in.
                self.flush_field();
                self.out.push(b);
                State::Long
            }
            State::Field if b == e => State::Escaped,
            State::Field if b == d || b == b'\n' => {
                self.flush_field();
                self.out.push(b);
                State::FieldStart { record: b == b'\n' }
            }
            State::Field => {
                self.hold(b);
                State::Field
            }
            State::Escaped => {
                self.hold(b);
                State::Field
            }
            State::Long => {
                self.out.push(b);
                if b == d || b == b'\n' {
                    State::FieldStart { record: b == b'\n' }
                } else {
                    State::Long
                }
            }
            State::Quoted => {
                self.out.push(b);
                if b == e {
                    State::EscapeInQuoted
                } else if Some(b) == q {
                    State::QuoteInQuoted
                } else {
                    State::Quoted
                }
            }
            State::EscapeInQuoted => {
                self.out.push(b);
                State::Quoted
            }
            State::QuoteInQuoted | State::AfterQuoted => {
                self.out.push(b);
                if self.state == State::QuoteInQuoted && Some(b) == q && self.double_quote {
                    State::Quoted
                } else if b == d || b == b'\n' {
                    State::FieldStart { record: b == b'\n' }
                } else {
                    State::AfterQuoted
                }
            }
        };
    }
}

impl<R: Read> Read for OutsideEscapes<R> {
    fn read(&mut self, into: &mut [u8]) -> io::Result<usize> {
        while self.at == self.out.len() && !self.done {
            self.out.clear();
            self.at = 0;
            let n = self.inner.read(&mut self.buf)?;
            if n == 0 {
                self.done = true;
                // An escape at the very end escapes nothing: it stays, as Python keeps it.
                if self.state == State::Escaped {
                    self.field.push(self.escape);
                }
                self.flush_field();
                break;
            }
            for i in 0..n {
                self.step(self.buf[i]);
            }
        }
        let n = into.len().min(self.out.len() - self.at);
        into[..n].copy_from_slice(&self.out[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(text: &str, quote: Option<u8>, comment: Option<u8>) -> String {
        let dialect = Dialect {
            delimiter: b',',
            quote,
            escape: Some(b'\\'),
            double_quote: true,
            comment,
        };
        let mut out = String::new();
        OutsideEscapes::new(text.as_bytes(), dialect, b'\\')
            .read_to_string(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn escapes_outside_quotes_become_text_or_quoted_fields() {
        let q = Some(b'"');
        let cases = [
            // Nothing to do.
            ("a,b\n1,\"x\"\n", "a,b\n1,\"x\"\n"),
            // An escaped delimiter or line break: the field is quoted.
            ("a\\,b,c\n", "\"a,b\",c\n"),
            ("a\\\nb,c\n", "\"a\nb\",c\n"),
            // An escaped ordinary character, escape or quote mid-field: only the escape goes.
            ("a\\b,c\\\\d,e\\\"f\n", "ab,c\\d,e\"f\n"),
            // A quote at a field's start that opens nothing; its escape doubles inside quotes.
            ("\\\"x\\\\,y\n", "\"\\\"x\\\\\",y\n"),
            // Inside quotes everything passes, escapes included.
            ("\"a\\\"b\",\"c\"\"d\"\n", "\"a\\\"b\",\"c\"\"d\"\n"),
            // An escape at the end escapes nothing.
            ("a,b\\", "a,b\\"),
            // Line breaks are kept one for one, CRLF too.
            ("a\\,b\r\nc,d\r\n", "\"a,b\r\"\nc,d\r\n"),
        ];
        for (text, want) in cases {
            assert_eq!(rewritten(text, q, None), want, "{text:?}");
        }
    }

    #[test]
    fn comment_lines_pass_and_an_escaped_comment_character_is_a_value() {
        let q = Some(b'"');
        assert_eq!(rewritten("#a\\,b\nx\n", q, Some(b'#')), "#a\\,b\nx\n");
        assert_eq!(rewritten("\\#a,b\n", q, Some(b'#')), "\"#a\",b\n");
        // Not at a record's start, `#` is text.
        assert_eq!(rewritten("x,\\#a\n", q, Some(b'#')), "x,#a\n");
    }

    #[test]
    fn without_a_quote_character_an_escaped_delimiter_cannot_be_kept() {
        assert_eq!(rewritten("a\\,b,c\n", None, None), "a,b,c\n");
        assert_eq!(rewritten("a\\xb\n", None, None), "axb\n");
    }
}

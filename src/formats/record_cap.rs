//! Bounding CSV records before the `csv` crate sees them: a record longer than
//! [`MAX_RECORD`] bytes or with more than [`MAX_FIELDS`] fields is cut where it crosses the
//! limit and ended there, and the rest of it is skipped without being held, so that a hostile
//! file (a 200 MB line, a quoted field that never closes, a million commas) costs bounded
//! memory. The `csv` reader keeps a whole record and its field bounds in memory, and has no
//! limit of its own.
//!
//! [`Capped`] follows the record structure the way `csv_core` reads it (quoted fields,
//! doubled quotes, the delimiter, `\n` ending a record outside quotes) and stands between the
//! decoded text and the `csv` reader, on the thread that reads the text (the read-ahead
//! thread of a large object). It replaces the skipped part of a record by the line breaks it
//! held, so the reader's line numbers stay exact, and tells the parser, through [`Marks`],
//! the byte position of each record it cut, which the parser turns into a row error (or a
//! rejection, for a header). Marks wait for the parser in order; the read-ahead bounds how
//! many. It knows nothing of templates.

use std::collections::VecDeque;
use std::io::{self, BufRead, Read};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The longest record read as a row: the cap of a JSON Lines line, less a few bytes so that
/// the `csv` reader's record buffer, which doubles from 4 bytes, never doubles past 16 MiB.
pub const MAX_RECORD: usize = super::jsonl::MAX_LINE - 16;
/// The most fields a record (or a header) may have.
pub const MAX_FIELDS: usize = 100_000;

/// Where the reader is in the record structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a field (or of a record).
    FieldStart,
    /// Inside a field that did not start with a quote.
    Unquoted,
    /// Inside a quoted field.
    Quoted,
    /// Just after a quote inside a quoted field: a second quote is an escaped quote (unless
    /// the dialect escapes with an escape character).
    QuoteInQuoted,
    /// Just after the escape character inside a quoted field: the next byte is literal.
    EscapeInQuoted,
    /// In a line that starts with the comment character: not a record. Its line break counts
    /// as a blank line's (the `csv` reader skips both the same way).
    Comment,
}

/// What a [`Capped`] reader tells the parser about the records it handed out: the records it
/// cut, and the records that follow blank lines (the `csv` reader gives such a record the
/// position of the first blank line before it; the parser corrects it with [`Marks::fix`]).
/// The reader may run ahead of the parser on another thread, by as much as the read-ahead
/// holds, so marks wait in order until the parser reaches their records.
#[derive(Debug, Default)]
pub struct Marks {
    waiting: Mutex<Waiting>,
    /// How many marks wait, so that most records need no lock.
    count: AtomicUsize,
}

#[derive(Debug, Default)]
struct Waiting {
    /// Byte positions (as the `csv` reader counts them) of records that were cut.
    cuts: VecDeque<u64>,
    /// Records after blank lines: their byte position and how many blank lines came before.
    blanks: VecDeque<(u64, u64)>,
}

impl Marks {
    /// Corrects the line of a record just read, and says whether it was cut at the limits.
    pub fn fix(&self, record: &mut ::csv::ByteRecord) -> bool {
        if self.count.load(Ordering::Acquire) == 0 {
            return false;
        }
        let Some(mut position) = record.position().cloned() else {
            return false;
        };
        let byte = position.byte();
        let Ok(mut waiting) = self.waiting.lock() else {
            return false;
        };
        // Marks before this record belong to records the parser never saw (none, in order).
        while waiting.blanks.front().is_some_and(|(at, _)| *at < byte) {
            waiting.blanks.pop_front();
        }
        while waiting.cuts.front().is_some_and(|at| *at < byte) {
            waiting.cuts.pop_front();
        }
        if let Some((_, lines)) = waiting.blanks.front().filter(|(at, _)| *at == byte).copied() {
            waiting.blanks.pop_front();
            position.set_line(position.line() + lines);
            record.set_position(Some(position));
        }
        let cut = waiting.cuts.front() == Some(&byte);
        if cut {
            waiting.cuts.pop_front();
        }
        self.count
            .store(waiting.cuts.len() + waiting.blanks.len(), Ordering::Release);
        cut
    }

    fn mark(&self, add: impl FnOnce(&mut Waiting)) {
        if let Ok(mut waiting) = self.waiting.lock() {
            add(&mut waiting);
            self.count
                .store(waiting.cuts.len() + waiting.blanks.len(), Ordering::Release);
        }
    }

    fn blank_lines_before(&self, at: u64, lines: u64) {
        self.mark(|w| w.blanks.push_back((at, lines)));
    }

    fn cut_at(&self, at: u64) {
        self.mark(|w| w.cuts.push_back(at));
    }
}

/// A reader of CSV text that cuts records over the limits (see the module's documentation).
pub struct Capped<R> {
    inner: R,
    track: Track,
}

/// Where a [`Capped`] reader is in the text it hands out.
struct Track {
    dialect: super::Dialect,
    state: State,
    /// Bytes and field separators of the record being read.
    record_bytes: usize,
    fields: usize,
    /// Whether the record being read has any byte yet (a bare `\n` is a blank line, which the
    /// `csv` reader skips as part of the next record).
    record_started: bool,
    /// Bytes handed out so far, and where the record being read starts among them.
    out: u64,
    record_start: u64,
    /// Bytes to hand out before reading on: the end of a cut record.
    inject: Vec<u8>,
    /// Line breaks of a skipped record still to hand out.
    newlines_owed: u64,
    /// Whether the rest of a cut record is being skipped.
    skipping: bool,
    /// Blank lines since the last record.
    blank_lines: u64,
    marks: Arc<Marks>,
}

impl<R: BufRead> Capped<R> {
    pub fn new(inner: R, dialect: super::Dialect, marks: Arc<Marks>) -> Capped<R> {
        let track = Track {
            dialect,
            state: State::FieldStart,
            record_bytes: 0,
            fields: 1,
            record_started: false,
            out: 0,
            record_start: 0,
            inject: Vec::new(),
            newlines_owed: 0,
            skipping: false,
            blank_lines: 0,
            marks,
        };
        Capped { inner, track }
    }
}

impl Track {
    /// Moves the state over one byte; returns whether the byte ends the record.
    fn step(&mut self, b: u8) -> bool {
        let super::Dialect {
            delimiter,
            quote,
            escape,
            double_quote,
            comment,
        } = self.dialect;
        let (is_quote, is_escape) = (quote == Some(b), escape == Some(b));
        let (next, ends) = match self.state {
            State::FieldStart if !self.record_started && comment == Some(b) => (State::Comment, false),
            State::Comment if b == b'\n' => (State::FieldStart, true),
            State::Comment => (State::Comment, false),
            State::FieldStart | State::QuoteInQuoted if b == b'\n' => (State::FieldStart, true),
            State::FieldStart if is_quote => (State::Quoted, false),
            State::FieldStart | State::Unquoted | State::QuoteInQuoted if b == delimiter => {
                self.fields += 1;
                (State::FieldStart, false)
            }
            State::Unquoted if b == b'\n' => (State::FieldStart, true),
            State::FieldStart | State::Unquoted => (State::Unquoted, false),
            State::Quoted if is_escape => (State::EscapeInQuoted, false),
            State::EscapeInQuoted => (State::Quoted, false),
            State::Quoted if is_quote => (State::QuoteInQuoted, false),
            State::Quoted => (State::Quoted, false),
            // A doubled quote is a quote, when quotes are escaped by doubling.
            State::QuoteInQuoted if is_quote && double_quote => (State::Quoted, false),
            State::QuoteInQuoted => (State::Unquoted, false),
        };
        self.state = next;
        ends
    }

    /// Skips the rest of a cut record in `chunk`; returns how many bytes it used.
    fn skip(&mut self, chunk: &[u8]) -> usize {
        for (i, &b) in chunk.iter().enumerate() {
            if self.step(b) {
                // The cut record's end was handed out already; this line break is not. The
                // line breaks it held are handed out as blank lines, which the `csv` reader
                // counts as lines and reads as part of the next record.
                self.skipping = false;
                self.start_record(self.out);
                self.blank_lines = self.newlines_owed;
                return i + 1;
            }
            if b == b'\n' {
                self.newlines_owed += 1;
            }
        }
        chunk.len()
    }

    /// Notes that the record being read has a byte, and the blank lines before it.
    fn started(&mut self) {
        if !self.record_started {
            self.record_started = true;
            if self.blank_lines > 0 {
                self.marks.blank_lines_before(self.record_start, self.blank_lines);
                self.blank_lines = 0;
            }
        }
    }

    /// A record starts at byte `at` of what is handed out.
    fn start_record(&mut self, at: u64) {
        self.state = State::FieldStart;
        self.record_bytes = 0;
        self.fields = 1;
        self.record_started = false;
        self.record_start = at;
    }

    /// Passes on bytes of `chunk` into `buf` until a record crosses a limit; returns how many.
    fn pass(&mut self, chunk: &[u8], buf: &mut [u8]) -> usize {
        let n = chunk.len().min(buf.len());
        let mut i = 0;
        while i < n {
            // Inside a field only a few bytes change anything; runs of the others are passed
            // at once. In an unquoted field that is a line break or a quote (a quote opens a
            // quoted field right after a delimiter); the delimiters in the run are counted.
            // In a quoted field it is a quote.
            let rest = &chunk[i..n];
            let super::Dialect {
                delimiter,
                quote,
                escape,
                ..
            } = self.dialect;
            let (stop, delimiters) = match self.state {
                State::Unquoted => {
                    let stop = match quote {
                        Some(q) => memchr::memchr2(b'\n', q, rest),
                        None => memchr::memchr(b'\n', rest),
                    };
                    (stop.unwrap_or(rest.len()), true)
                }
                // With an escape character, it too changes the state inside quotes.
                State::Quoted => match (quote, escape) {
                    (Some(q), Some(e)) => (memchr::memchr2(q, e, rest).unwrap_or(rest.len()), false),
                    (Some(q), None) => (memchr::memchr(q, rest).unwrap_or(rest.len()), false),
                    (None, _) => (0, false),
                },
                State::FieldStart | State::QuoteInQuoted | State::EscapeInQuoted | State::Comment => {
                    (0, false)
                }
            };
            let room = MAX_RECORD - self.record_bytes;
            let mut plain = &rest[..stop.min(room)];
            let mut over = stop > room;
            if delimiters {
                let count = memchr::memchr_iter(delimiter, plain).count();
                if self.fields + count > MAX_FIELDS {
                    // Passed up to and with the delimiter that makes one field too many.
                    let allowed = MAX_FIELDS - self.fields;
                    let at = memchr::memchr_iter(delimiter, plain)
                        .nth(allowed)
                        .unwrap_or(plain.len());
                    plain = &plain[..(at + 1).min(plain.len())];
                    self.fields = MAX_FIELDS + 1;
                    over = true;
                } else {
                    self.fields += count;
                }
                if plain.last() == Some(&delimiter) {
                    self.state = State::FieldStart;
                }
            }
            i += plain.len();
            self.record_bytes += plain.len();
            if !plain.is_empty() {
                self.started();
            }
            if over {
                self.cut();
                break;
            }
            if i == n {
                break;
            }
            let b = chunk[i];
            i += 1;
            if self.step(b) {
                if self.record_started {
                    self.start_record(self.out + i as u64);
                } else {
                    // A blank line is not a record: the `csv` reader reads it as part of the
                    // next one, so the record still starts before it.
                    self.blank_lines += 1;
                }
                continue;
            }
            if self.state == State::Comment {
                continue;
            }
            self.record_bytes += 1;
            self.started();
            if self.record_bytes >= MAX_RECORD || self.fields > MAX_FIELDS {
                self.cut();
                break;
            }
        }
        buf[..i].copy_from_slice(&chunk[..i]);
        i
    }

    /// Ends the record being read after what was passed on, and skips the rest of it.
    fn cut(&mut self) {
        self.marks.cut_at(self.record_start);
        let quote = self.dialect.quote.unwrap_or(b'"');
        self.inject = match self.state {
            // A quote ends the quoted field, and the line break the record.
            State::Quoted => vec![quote, b'\n'],
            // After an escape character the next byte is taken as it is: a space first.
            State::EscapeInQuoted => vec![b' ', quote, b'\n'],
            State::FieldStart | State::Unquoted | State::QuoteInQuoted | State::Comment => vec![b'\n'],
        };
        self.skipping = true;
    }
}

impl<R: BufRead> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let t = &mut self.track;
        loop {
            if !t.inject.is_empty() {
                let n = t.inject.len().min(buf.len());
                buf[..n].copy_from_slice(&t.inject[..n]);
                t.inject.drain(..n);
                t.out += n as u64;
                return Ok(n);
            }
            if t.newlines_owed > 0 {
                let n = (t.newlines_owed.min(buf.len() as u64)) as usize;
                buf[..n].fill(b'\n');
                t.newlines_owed -= n as u64;
                t.out += n as u64;
                return Ok(n);
            }
            let chunk = self.inner.fill_buf()?;
            if chunk.is_empty() {
                return Ok(0);
            }
            if t.skipping {
                let used = t.skip(chunk);
                self.inner.consume(used);
                continue;
            }
            let passed = t.pass(chunk, buf);
            self.inner.consume(passed);
            t.out += passed as u64;
            if passed > 0 {
                return Ok(passed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn through(text: &[u8], capacity: usize) -> (Vec<u8>, Arc<Marks>) {
        let cuts = Arc::new(Marks::default());
        let mut out = Vec::new();
        Capped::new(
            io::BufReader::with_capacity(capacity, text),
            super::super::Dialect::CSV,
            cuts.clone(),
        )
        .read_to_end(&mut out)
        .unwrap();
        (out, cuts)
    }

    #[test]
    fn text_within_the_limits_passes_unchanged() {
        let cases: &[&[u8]] = &[
            b"",
            b"a,b\n1,2\n",
            b"a,\"b\nc\",\"d\"\"e\"\n\n\n\"\"\n,\n\r\n",
            b"x\"y,\"unclosed\n\nmore",
            b"\"q\"x,1\n",
        ];
        for text in cases {
            for capacity in [1, 2, 3, 7, 64] {
                let (out, cuts) = through(text, capacity);
                assert_eq!(out, *text, "{capacity}");
                assert!(cuts.waiting.lock().unwrap().cuts.is_empty());
            }
        }
    }

    #[test]
    fn random_text_within_the_limits_passes_unchanged() {
        // A fixed pseudo-random sequence (an LCG): quotes, delimiters and line breaks in
        // every order, through reads of every size.
        let mut seed: u64 = 0x5eed;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        let alphabet = b"ab,\"\n\r";
        for case in 0..3000 {
            let len = next() % 200;
            let text: Vec<u8> = (0..len).map(|_| alphabet[next() % alphabet.len()]).collect();
            let capacity = 1 + case % 17;
            let (out, cuts) = through(&text, capacity);
            assert_eq!(out, text, "case {case}");
            assert!(cuts.waiting.lock().unwrap().cuts.is_empty(), "case {case}");
        }
    }

    #[test]
    fn a_record_with_too_many_fields_is_cut_and_its_lines_kept() {
        let mut text = b"a,b\n".to_vec();
        text.extend(std::iter::repeat_n(b',', MAX_FIELDS + 10));
        text.extend_from_slice(b"\"x\ny\"\nlast\n");
        let (out, cuts) = through(&text, 4096);
        // The first record, the cut one ended after MAX_FIELDS fields, the line break inside
        // the skipped quoted field as a blank line, then the last record.
        let mut want = b"a,b\n".to_vec();
        want.extend(std::iter::repeat_n(b',', MAX_FIELDS));
        want.extend_from_slice(b"\n\nlast\n");
        assert_eq!(out.len(), want.len());
        assert_eq!(out, want);
        assert_eq!(cuts.waiting.lock().unwrap().cuts, [4]);
    }
}

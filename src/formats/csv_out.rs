//! A checked row as a CSV record, for the outputs that write CSV (`file` and `s3` targets with
//! `format = "csv"`). The record is written while the row is checked — by the parse's worker
//! threads for a large object — from the JSON text of each field's value, so that the spool
//! already holds the output's records and delivering a load is a copy. Converting spooled JSON
//! rows at delivery, on one thread, made CSV output several times slower than JSON Lines.
//!
//! Not the CSV reader (`csv.rs`). Pure: it writes into the buffer it is given.

use csv_core::WriteResult;

/// How CSV output is written: `[target] delimiter`, `quote_all`, `csv_formula_guard`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvOut {
    pub delimiter: u8,
    pub quote_all: bool,
    /// A string cell starting with `=`, `+`, `-`, `@`, a tab or a carriage return gets a `'`
    /// in front, so that a spreadsheet shows it instead of running it.
    pub formula_guard: bool,
}

/// Writes records in one CSV dialect (RFC 4180 quoting by the `csv` crate's own core, so the
/// bytes are what `csv::Writer` writes).
pub struct CsvEncoder {
    out: CsvOut,
    fields: FieldWriter,
    /// A string cell with escapes, decoded; a guarded cell.
    decoded: Vec<u8>,
    guarded: Vec<u8>,
}

impl CsvEncoder {
    pub fn new(out: CsvOut) -> CsvEncoder {
        let core = csv_core::WriterBuilder::new()
            .delimiter(out.delimiter)
            .quote_style(if out.quote_all {
                csv_core::QuoteStyle::Always
            } else {
                csv_core::QuoteStyle::Necessary
            })
            .build();
        let mut special = [false; 256];
        for b in [out.delimiter, b'"', b'\r', b'\n'] {
            special[b as usize] = true;
        }
        CsvEncoder {
            out,
            fields: FieldWriter {
                core,
                special,
                quote_all: out.quote_all,
            },
            decoded: Vec::new(),
            guarded: Vec::new(),
        }
    }

    /// Appends the header record: `names` as they are.
    pub fn header<'n>(&mut self, names: impl IntoIterator<Item = &'n str>, buf: &mut Vec<u8>) {
        for (i, name) in names.into_iter().enumerate() {
            self.fields.write(name.as_bytes(), i == 0, buf);
        }
        self.fields.end(buf);
    }

    /// Appends one record: a cell for each JSON value (the checked fields' values, as their
    /// JSON text; `None` for a missing one), then a cell for each of `texts` (the provenance),
    /// strings that the formula guard treats as any string value.
    pub fn record<'v>(
        &mut self,
        values: impl IntoIterator<Item = Option<&'v [u8]>>,
        texts: &[&str],
        buf: &mut Vec<u8>,
    ) -> Result<(), NotJson> {
        let mut first = true;
        for value in values {
            let text = cell(
                value.unwrap_or(b"null"),
                self.out.formula_guard,
                &mut self.decoded,
                &mut self.guarded,
            )?;
            self.fields.write(text, first, buf);
            first = false;
        }
        for text in texts {
            let text = guarded(text.as_bytes(), self.out.formula_guard, &mut self.guarded);
            self.fields.write(text, first, buf);
            first = false;
        }
        self.fields.end(buf);
        Ok(())
    }
}

/// Writes the fields of records: a field that needs no quotes is copied as it is; the others
/// go through the `csv` crate's core, which also writes every delimiter and terminator,
/// closing a quoted field.
struct FieldWriter {
    core: csv_core::Writer,
    /// The bytes that make a field need quotes.
    special: [bool; 256],
    quote_all: bool,
}

impl FieldWriter {
    /// Appends one field (after a delimiter unless it is the record's first).
    fn write(&mut self, text: &[u8], first: bool, buf: &mut Vec<u8>) {
        if !self.quote_all && !text.iter().any(|&b| self.special[b as usize]) {
            if !first {
                delimiter(&mut self.core, buf);
            }
            buf.extend_from_slice(text);
        } else {
            field(&mut self.core, text, first, buf);
        }
    }

    /// Ends the record.
    fn end(&mut self, buf: &mut Vec<u8>) {
        end(&mut self.core, buf);
    }
}

/// Runs one of the core's writes (`write` fills the scratch it is given) until it has
/// written all it had, appending what it wrote to `buf`.
fn drain(buf: &mut Vec<u8>, mut write: impl FnMut(&mut [u8]) -> (WriteResult, usize)) {
    let mut scratch = [0u8; 512];
    loop {
        let (res, n) = write(&mut scratch);
        buf.extend_from_slice(&scratch[..n]);
        if res == WriteResult::InputEmpty {
            break;
        }
    }
}

fn delimiter(core: &mut csv_core::Writer, buf: &mut Vec<u8>) {
    drain(buf, |out| core.delimiter(out));
}

/// Appends one field (after a delimiter unless it is the record's first).
fn field(core: &mut csv_core::Writer, mut input: &[u8], first: bool, buf: &mut Vec<u8>) {
    if !first {
        delimiter(core, buf);
    }
    drain(buf, |out| {
        let (res, nin, nout) = core.field(input, out);
        input = &input[nin..];
        (res, nout)
    });
}

/// Ends the record.
fn end(core: &mut csv_core::Writer, buf: &mut Vec<u8>) {
    drain(buf, |out| core.terminator(out));
}

/// The header record of a CSV output: the template's `fields`, then the provenance columns.
pub fn header(out: CsvOut, fields: &[String]) -> Vec<u8> {
    let mut buf = Vec::new();
    CsvEncoder::new(out).header(
        fields.iter().map(String::as_str).chain(super::PROVENANCE),
        &mut buf,
    );
    buf
}

/// A value that was not the JSON text the checked row holds (a bug, never partner data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a checked value is not valid JSON text")]
pub struct NotJson;

/// One value, given as its JSON text, as a CSV cell: null is empty, a string is its text
/// (with `guard`, one a spreadsheet would take for a formula gets a `'` in front; a number, or
/// a string that is only a number such as `"-1.50"`, is a value to a spreadsheet and is left
/// alone), anything else its JSON text. `decoded` and `guarded` hold a cell that is not a
/// slice of the value. Bytes throughout: the text was written by s3-importd, as UTF-8.
fn cell<'a>(
    json: &'a [u8],
    guard: bool,
    decoded: &'a mut Vec<u8>,
    guarded: &'a mut Vec<u8>,
) -> Result<&'a [u8], NotJson> {
    if json == b"null" {
        return Ok(b"");
    }
    if json.first() != Some(&b'"') {
        return Ok(json);
    }
    let inner = json.get(1..json.len().saturating_sub(1)).ok_or(NotJson)?;
    let text: &[u8] = if memchr::memchr(b'\\', inner).is_none() {
        inner
    } else {
        *decoded = serde_json::from_slice::<String>(json)
            .map_err(|_| NotJson)?
            .into_bytes();
        decoded
    };
    Ok(self::guarded(text, guard, guarded))
}

/// A string cell, with a `'` in front when `guard` is on and a spreadsheet would take it for
/// a formula; `buf` holds a guarded cell.
fn guarded<'a>(text: &'a [u8], guard: bool, buf: &'a mut Vec<u8>) -> &'a [u8] {
    if guard && formula_like(text) {
        buf.clear();
        buf.push(b'\'');
        buf.extend_from_slice(text);
        return buf;
    }
    text
}

/// Whether a spreadsheet would take the string for a formula (OWASP's list: `=`, `+`, `-`,
/// `@`, tab, carriage return first) — unless it is only a number.
pub fn needs_guard(s: &str) -> bool {
    formula_like(s.as_bytes())
}

fn formula_like(s: &[u8]) -> bool {
    matches!(s.first(), Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')) && !is_plain_number(s)
}

/// Whether `s` is a signed decimal number and nothing else (`-1.50`, `+3`, `-2e5`).
fn is_plain_number(s: &[u8]) -> bool {
    let digits = s.strip_prefix(b"+").or_else(|| s.strip_prefix(b"-")).unwrap_or(s);
    let (mantissa, exponent) = match digits.iter().position(|&b| b == b'e' || b == b'E') {
        Some(at) => {
            let e = &digits[at + 1..];
            (
                &digits[..at],
                Some(e.strip_prefix(b"+").or_else(|| e.strip_prefix(b"-")).unwrap_or(e)),
            )
        }
        None => (digits, None),
    };
    let (whole, fraction) = match mantissa.iter().position(|&b| b == b'.') {
        Some(at) => (&mantissa[..at], &mantissa[at + 1..]),
        None => (mantissa, &b""[..]),
    };
    let all_digits = |t: &[u8]| t.iter().all(u8::is_ascii_digit);
    !(whole.is_empty() && fraction.is_empty())
        && all_digits(whole)
        && all_digits(fraction)
        && exponent.is_none_or(|e| !e.is_empty() && all_digits(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The record `values` and `plain` make, read back by the `csv` crate.
    fn read_back(out: CsvOut, values: &[Option<&str>], texts: &[&str]) -> (String, Vec<String>) {
        let mut encoder = CsvEncoder::new(out);
        let mut buf = Vec::new();
        encoder
            .record(values.iter().map(|v| v.map(str::as_bytes)), texts, &mut buf)
            .unwrap();
        let text = String::from_utf8(buf).unwrap();
        let record = csv::ReaderBuilder::new()
            .has_headers(false)
            .delimiter(out.delimiter)
            .from_reader(text.as_bytes())
            .records()
            .next()
            .unwrap()
            .unwrap();
        (text.clone(), record.iter().map(str::to_string).collect())
    }

    #[test]
    fn json_values_become_cells_the_csv_crate_reads_back() {
        let out = CsvOut {
            delimiter: b',',
            quote_all: false,
            formula_guard: true,
        };
        let (text, cells) = read_back(
            out,
            &[
                Some("1"),
                Some(r#""a, \"q\" \\ b""#),
                Some(r#"["x","]}"]"#),
                None,
                Some("null"),
                Some(r#""=SUM(A1)""#),
                Some(r#""-1.50""#),
                Some(r#""\u00e9t\u00e9""#),
                Some("-1.5e3"),
            ],
            &["k/\"x\".csv", "@v1", "12"],
        );
        assert_eq!(
            cells,
            [
                "1",
                "a, \"q\" \\ b",
                r#"["x","]}"]"#,
                "",
                "",
                "'=SUM(A1)",
                "-1.50",
                "été",
                "-1.5e3",
                "k/\"x\".csv",
                "'@v1",
                "12"
            ]
        );
        assert!(text.ends_with('\n') && !text.ends_with("\r\n"), "{text:?}");
        let quoted = read_back(
            CsvOut {
                delimiter: b'|',
                quote_all: true,
                formula_guard: false,
            },
            &[Some("1"), Some(r#""=x""#)],
            &[],
        );
        assert_eq!(quoted.0, "\"1\"|\"=x\"\n");
    }

    #[test]
    fn the_formula_guard_spares_numbers() {
        let cases = [
            ("=1+1", true),
            ("+44 20", true),
            ("@me", true),
            ("-1.50", false),
            ("+3", false),
            ("-2e5", false),
            ("+1e-3", false),
            ("-1e", true),
            ("-1+1", true),
            ("-1.2.3", true),
            ("+", true),
            ("-.", true),
            ("plain", false),
        ];
        for (text, guarded) in cases {
            assert_eq!(needs_guard(text), guarded, "{text:?}");
        }
    }
}

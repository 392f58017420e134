//! Text encodings: the byte order mark, `auto` detection, transcoding to UTF-8 with
//! [`Transcoded`], and naming the byte that does not decode. Never replaces a character: text
//! that does not decode is marked so that its row becomes a row error.

use super::*;

/// How much of an object `encoding = "auto"` looks at.
pub(super) const AUTO_SNIFF: usize = 64 * 1024;

/// Whether bytes are UTF-8, allowing a character cut off at the end (the sniff's edge).
pub(super) fn looks_utf8(bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && bytes.len() - e.valid_up_to() < 4,
    }
}

/// The text of an object as UTF-8: a UTF-8 byte order mark is taken off; other encodings are
/// transcoded as they stream. A byte order mark wins over the configuration: a file that
/// starts with a UTF-16 (or UTF-8) mark is read as such whatever `encoding` says. Returns the
/// encoding the text is read in, for the row errors that name it.
pub(super) fn decode<'r>(
    encoding: Encoding,
    reader: Box<dyn Read + Send + 'r>,
    buf: usize,
) -> io::Result<(Box<dyn BufRead + Send + 'r>, &'static encoding_rs::Encoding)> {
    // "auto" looks further ahead: far enough to tell UTF-8 text from another encoding.
    let ahead = if encoding == Encoding::Auto { AUTO_SNIFF } else { 3 };
    let (head, rest) = peek(reader, ahead)?;
    let marked = encoding_rs::Encoding::for_bom(&head).map(|(found, _)| found);
    let chosen = match encoding {
        Encoding::Auto if looks_utf8(&head) => encoding_rs::UTF_8,
        Encoding::Auto => encoding_rs::WINDOWS_1252,
        Encoding::Utf8 => encoding_rs::UTF_8,
        Encoding::Other(e) => e,
    };
    let actual = marked.unwrap_or(chosen);
    let input = io::Cursor::new(head).chain(rest);
    if actual == encoding_rs::UTF_8 {
        // UTF-8 is passed through as it is, mark removed: the parsers check it where they
        // read it, so that a bad sequence is the row error of the row that holds it.
        let mut input = BufReader::with_capacity(buf, input);
        if marked.is_some() {
            // The mark is in the peeked head, which the first fill returns.
            input.fill_buf()?;
            input.consume(3);
        }
        return Ok((Box::new(input), actual));
    }
    Ok((Box::new(Transcoded::new(input, actual)), actual))
}

/// Transcodes text of another encoding to UTF-8 as it is read, without replacing what it
/// cannot decode: each malformed sequence becomes the byte 0xFF, which is never valid UTF-8,
/// so that the parser finds it where it finds any bad UTF-8 — as the row error of the row
/// that holds it — instead of a silently substituted U+FFFD.
pub(super) struct Transcoded<R> {
    pub(super) inner: R,
    pub(super) decoder: encoding_rs::Decoder,
    /// Bytes read from `inner`, `start..end` not yet decoded.
    pub(super) input: Box<[u8]>,
    pub(super) start: usize,
    pub(super) end: usize,
    /// Whether `inner` is at its end.
    pub(super) eof: bool,
    /// Decoded text, `pos..` not yet handed out.
    pub(super) out: Vec<u8>,
    pub(super) pos: usize,
    /// Whether the decoder has seen the end and given all it had.
    pub(super) finished: bool,
}

impl<R: Read> Transcoded<R> {
    pub(super) fn new(inner: R, encoding: &'static encoding_rs::Encoding) -> Self {
        Transcoded {
            inner,
            // The byte order mark was read by `decode`; this only takes it off.
            decoder: encoding.new_decoder_with_bom_removal(),
            input: vec![0; BUF].into_boxed_slice(),
            start: 0,
            end: 0,
            eof: false,
            out: Vec::with_capacity(BUF),
            pos: 0,
            finished: false,
        }
    }
}

impl<R: Read> Read for Transcoded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.fill_buf()?.read(buf)?;
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read> BufRead for Transcoded<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.pos == self.out.len() && !self.finished {
            if self.start == self.end && !self.eof {
                self.start = 0;
                self.end = loop {
                    match self.inner.read(&mut self.input) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        other => break other?,
                    }
                };
                self.eof = self.end == 0;
            }
            // One byte is left free for the marker of a malformed sequence.
            self.out.resize(BUF, 0);
            let (result, read, written) = self.decoder.decode_to_utf8_without_replacement(
                &self.input[self.start..self.end],
                &mut self.out[..BUF - 1],
                self.eof,
            );
            self.start += read;
            self.out.truncate(written);
            self.pos = 0;
            match result {
                encoding_rs::DecoderResult::InputEmpty => self.finished = self.eof,
                encoding_rs::DecoderResult::OutputFull => {}
                encoding_rs::DecoderResult::Malformed(..) => self.out.push(0xFF),
            }
        }
        Ok(&self.out[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.out.len());
    }
}

/// Where text that did not decode starts in a value, as "byte N" (1-based) of the value in
/// its own encoding: the part before it is encoded back to count its bytes.
pub(crate) fn undecodable_at(value: &[u8], encoding: &'static encoding_rs::Encoding) -> usize {
    let valid = match std::str::from_utf8(value) {
        Ok(_) => return 0,
        Err(e) => e.valid_up_to(),
    };
    // `valid_up_to` ends on a character boundary.
    let before = std::str::from_utf8(&value[..valid]).unwrap_or_default();
    let bytes = if encoding == encoding_rs::UTF_16LE || encoding == encoding_rs::UTF_16BE {
        before.encode_utf16().count() * 2
    } else if encoding.output_encoding() == encoding {
        encoding.encode(before).0.len()
    } else {
        before.len()
    };
    bytes + 1
}

/// The row error's words for text that did not decode: `what` is not valid, at a byte of
/// `unit` (whose text, as read, is `text`).
pub(crate) fn undecodable(
    what: &str,
    unit: &str,
    text: &[u8],
    encoding: &'static encoding_rs::Encoding,
) -> String {
    format!(
        "{what} is not valid {} text: byte {} of the {unit} cannot be decoded (is `encoding` right?)",
        encoding.name(),
        undecodable_at(text, encoding)
    )
}

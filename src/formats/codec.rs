//! Compression: which codec an object is in (by its first bytes, else its extension, or as
//! configured) and the decompressing reader over it.

use super::*;

/// A compression codec an object can be read through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Gzip,
    Zstd,
    Bzip2,
}

impl Codec {
    /// The name used in `[format] compression` and in error messages.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Gzip => "gzip",
            Codec::Zstd => "zstd",
            Codec::Bzip2 => "bzip2",
        }
    }

    const EXTENSIONS: &'static [(&'static str, Codec)] = &[
        (".gz", Codec::Gzip),
        (".gzip", Codec::Gzip),
        (".zst", Codec::Zstd),
        (".zstd", Codec::Zstd),
        (".bz2", Codec::Bzip2),
    ];

    /// The length of the extension of this codec that `name` ends with.
    pub(super) fn extension_len(self, name: &str) -> usize {
        Codec::EXTENSIONS
            .iter()
            .find(|(ext, c)| *c == self && name.ends_with(ext))
            .map_or(0, |(ext, _)| ext.len())
    }

    /// The codec whose magic number `head` starts with.
    pub(super) fn by_magic(head: &[u8]) -> Option<Codec> {
        if head.starts_with(&[0x1f, 0x8b]) {
            Some(Codec::Gzip)
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Some(Codec::Zstd)
        } else if head.starts_with(b"BZh") {
            Some(Codec::Bzip2)
        } else {
            None
        }
    }
}

pub(super) fn codec_by_extension(lowercase_name: &str) -> Option<Codec> {
    Codec::EXTENSIONS
        .iter()
        .find(|(ext, _)| lowercase_name.ends_with(ext))
        .map(|(_, c)| *c)
}

/// The codec an object is read through. With `auto`, the magic number decides when it names
/// a codec (it cannot lie), else the extension (so that a damaged `.gz` fails as corrupt gzip
/// rather than being parsed as text).
pub fn choose_codec(compression: Compression, key: &str, head: &[u8]) -> Option<Codec> {
    match compression {
        Compression::None => None,
        Compression::Gzip => Some(Codec::Gzip),
        Compression::Zstd => Some(Codec::Zstd),
        Compression::Bzip2 => Some(Codec::Bzip2),
        Compression::Auto => Codec::by_magic(head).or_else(|| codec_by_extension(&key.to_ascii_lowercase())),
    }
}

pub(super) const BUF: usize = 64 * 1024;

/// A reader over the decompressed bytes of an object, with the codec used.
pub(super) fn decompress<'r>(
    compression: Compression,
    key: &str,
    reader: Box<dyn Read + Send + 'r>,
) -> io::Result<(Box<dyn Read + Send + 'r>, Option<Codec>)> {
    let (head, rest) = peek(reader, 4)?;
    let codec = choose_codec(compression, key, &head);
    let unread = io::Cursor::new(head).chain(rest);
    // The decoders read through a buffer; plain text is buffered once, by `decode`.
    let buffered = |unread| BufReader::with_capacity(BUF, unread);
    let reader: Box<dyn Read + Send + 'r> = match codec {
        None => Box::new(unread),
        Some(Codec::Gzip) => Box::new(flate2::bufread::MultiGzDecoder::new(buffered(unread))),
        // Both decoders read every frame or stream of a concatenated file, as gzip does.
        Some(Codec::Zstd) => Box::new(zstd::stream::read::Decoder::with_buffer(buffered(unread))?),
        Some(Codec::Bzip2) => Box::new(bzip2::bufread::MultiBzDecoder::new(buffered(unread))),
    };
    Ok((reader, codec))
}

/// Reads the first `n` bytes (fewer at the end of input) and returns them and the reader of
/// the rest. A reader may hand out fewer bytes per call than asked, so this reads until it
/// has `n` or the input ends.
pub(super) fn peek<R: Read>(mut reader: R, n: usize) -> io::Result<(Vec<u8>, R)> {
    let mut head = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match reader.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    head.truncate(got);
    Ok((head, reader))
}

//! Verifying an object's bytes as they are read (docs/design.md §4.7): the count against the listed
//! size, and the content against a digest the source knows (a single-part S3 ETag is the MD5
//! of the object; a `dir` object's version is the BLAKE3 hash of the file).
//!
//! [`Verified`] wraps a reader, blocking or asynchronous, and fails the read that would end
//! the object when the bytes are not the ones listed: a body cut short by a proxy or a server,
//! a file rewritten while it was read. The failure is an I/O error of kind `InvalidData`
//! carrying a [`VerifyError`], so the parser reports it as a read failure (transient: the
//! object is tried again, never delivered, never rejected). This module knows nothing of S3
//! or folders; the sources decide which digest applies.

use std::io::{self, Read};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, ReadBuf};

/// What an object's content must hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Digest {
    /// Nothing to compare with (a multipart or KMS-encrypted S3 object, whose ETag is not an
    /// MD5 of the content); the size is still checked.
    None,
    /// The MD5 of the content, as 32 lower-case hex digits.
    Md5(String),
    /// The first 32 hex digits of the BLAKE3 hash of the content (a `dir` object's version).
    Blake3(String),
}

impl Digest {
    /// The MD5 digest a plain S3 ETag stands for: 32 hex digits, without the `-N` a multipart
    /// upload adds.
    pub fn from_etag(etag: &str) -> Digest {
        let etag = etag.trim_matches('"');
        if etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit()) {
            Digest::Md5(etag.to_ascii_lowercase())
        } else {
            Digest::None
        }
    }
}

/// Why an object's bytes are not the ones listed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the body ended after {read} of the {expected} bytes listed (cut short in transit)")]
    Short { read: u64, expected: u64 },
    #[error("the body holds more than the {expected} bytes listed")]
    Long { expected: u64 },
    #[error(
        "the {algorithm} of the {size} bytes read is {found}, not {expected} as listed (altered in transit or rewritten while read)"
    )]
    Digest {
        algorithm: &'static str,
        expected: String,
        found: String,
        size: u64,
    },
}

enum Hasher {
    None,
    Md5(Box<md5::Md5>),
    Blake3(Box<blake3::Hasher>),
}

/// The running count and hash of one object's bytes.
struct Tally {
    expected_size: u64,
    digest: Digest,
    hasher: Hasher,
    read: u64,
    /// Set once the end was checked, so that a reader read again after its end (or after a
    /// failure) does not check or fail twice.
    ended: bool,
}

impl Tally {
    fn new(expected_size: u64, digest: Digest) -> Tally {
        let hasher = match &digest {
            Digest::None => Hasher::None,
            Digest::Md5(_) => Hasher::Md5(Box::default()),
            Digest::Blake3(_) => Hasher::Blake3(Box::default()),
        };
        Tally {
            expected_size,
            digest,
            hasher,
            read: 0,
            ended: false,
        }
    }

    /// Counts and hashes bytes read; fails as soon as there are more than listed.
    fn update(&mut self, bytes: &[u8]) -> Result<(), VerifyError> {
        self.read += bytes.len() as u64;
        if self.read > self.expected_size {
            self.ended = true;
            return Err(VerifyError::Long {
                expected: self.expected_size,
            });
        }
        match &mut self.hasher {
            Hasher::None => {}
            Hasher::Md5(h) => md5::Digest::update(h.as_mut(), bytes),
            Hasher::Blake3(h) => {
                h.update(bytes);
            }
        }
        Ok(())
    }

    /// Checks the count and the digest at the end of the body.
    fn finish(&mut self) -> Result<(), VerifyError> {
        if self.ended {
            return Ok(());
        }
        self.ended = true;
        if self.read != self.expected_size {
            return Err(VerifyError::Short {
                read: self.read,
                expected: self.expected_size,
            });
        }
        let (algorithm, expected, found) =
            match (&self.digest, std::mem::replace(&mut self.hasher, Hasher::None)) {
                (Digest::Md5(want), Hasher::Md5(h)) => {
                    ("MD5", want, hex(md5::Digest::finalize(*h).as_slice()))
                }
                (Digest::Blake3(want), Hasher::Blake3(h)) => {
                    let mut found = h.finalize().to_hex().to_string();
                    found.truncate(want.len());
                    ("BLAKE3 hash", want, found)
                }
                _ => return Ok(()),
            };
        if !found.eq_ignore_ascii_case(expected) {
            return Err(VerifyError::Digest {
                algorithm,
                expected: expected.clone(),
                found,
                size: self.read,
            });
        }
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn io_error(e: VerifyError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// A reader that checks the bytes it passes on against the listed size and digest, failing
/// the read that reaches the end when they differ.
pub struct Verified<R> {
    inner: R,
    tally: Tally,
}

impl<R> Verified<R> {
    pub fn new(inner: R, expected_size: u64, digest: Digest) -> Verified<R> {
        Verified {
            inner,
            tally: Tally::new(expected_size, digest),
        }
    }

    /// The reader inside, unverified (for `check`, which reads only the first bytes).
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for Verified<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.tally.finish().map_err(io_error)?;
        } else {
            self.tally.update(&buf[..n]).map_err(io_error)?;
        }
        Ok(n)
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Verified<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                let checked = if new.is_empty() && buf.remaining() > 0 {
                    this.tally.finish()
                } else {
                    this.tally.update(new)
                };
                Poll::Ready(checked.map_err(io_error))
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(bytes: &[u8], size: u64, digest: Digest) -> Result<Vec<u8>, VerifyError> {
        let mut out = Vec::new();
        Verified::new(bytes, size, digest)
            .read_to_end(&mut out)
            .map(|_| out)
            .map_err(|e| {
                e.into_inner()
                    .and_then(|inner| inner.downcast::<VerifyError>().ok())
                    .map(|b| *b)
                    .expect("a verify error")
            })
    }

    #[test]
    fn sizes_and_digests() {
        let body = b"id\n1\n2\n";
        let md5 = "eb6e8ba7b5c6f35cd4b4b3cd3e1a3bb2";
        let real_md5 = hex(md5::Digest::finalize({
            let mut h = md5::Md5::default();
            md5::Digest::update(&mut h, body);
            h
        })
        .as_slice());
        assert_ne!(real_md5, md5);
        let blake = blake3::hash(body).to_hex()[..32].to_string();
        type Case<'a> = (&'a [u8], u64, Digest, Result<(), VerifyError>);
        let cases: Vec<Case> = vec![
            (body, 7, Digest::None, Ok(())),
            (body, 7, Digest::Md5(real_md5.clone()), Ok(())),
            (body, 7, Digest::Md5(real_md5.to_uppercase()), Ok(())),
            (body, 7, Digest::Blake3(blake.clone()), Ok(())),
            (
                &body[..5],
                7,
                Digest::None,
                Err(VerifyError::Short { read: 5, expected: 7 }),
            ),
            (
                &body[..5],
                7,
                Digest::Md5(real_md5.clone()),
                Err(VerifyError::Short { read: 5, expected: 7 }),
            ),
            (body, 5, Digest::None, Err(VerifyError::Long { expected: 5 })),
            (
                body,
                7,
                Digest::Md5(md5.into()),
                Err(VerifyError::Digest {
                    algorithm: "MD5",
                    expected: md5.into(),
                    found: real_md5.clone(),
                    size: 7,
                }),
            ),
            (
                b"id\n1\n3\n",
                7,
                Digest::Blake3(blake.clone()),
                Err(VerifyError::Digest {
                    algorithm: "BLAKE3 hash",
                    expected: blake.clone(),
                    found: blake3::hash(b"id\n1\n3\n").to_hex()[..32].to_string(),
                    size: 7,
                }),
            ),
            (b"", 0, Digest::None, Ok(())),
        ];
        for (i, (bytes, size, digest, want)) in cases.into_iter().enumerate() {
            assert_eq!(read_all(bytes, size, digest).map(|_| ()), want, "case {i}");
        }
    }

    #[test]
    fn etags() {
        let cases = [
            (
                "\"0123456789abcdef0123456789ABCDEF\"",
                Digest::Md5("0123456789abcdef0123456789abcdef".into()),
            ),
            ("0123456789abcdef0123456789abcdef-3", Digest::None),
            ("", Digest::None),
            ("xyz", Digest::None),
        ];
        for (etag, want) in cases {
            assert_eq!(Digest::from_etag(etag), want, "{etag}");
        }
    }

    #[tokio::test]
    async fn async_reads_are_verified_too() {
        use tokio::io::AsyncReadExt;
        let mut ok = Verified::new(&b"abc"[..], 3, Digest::None);
        let mut out = Vec::new();
        AsyncReadExt::read_to_end(&mut ok, &mut out).await.unwrap();
        assert_eq!(out, b"abc");
        let mut short = Verified::new(&b"ab"[..], 3, Digest::None);
        let err = AsyncReadExt::read_to_end(&mut short, &mut Vec::new())
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the body ended after 2 of the 3 bytes listed (cut short in transit)"
        );
    }
}

//! Reading an object ahead of its parser: a scoped thread reads (and decompresses, and
//! transcodes) chunks into a bounded queue, so that one large object keeps both cores busy.
//! The thread ends with the parse; a stop flag lets the parser end it early.

use super::*;

/// A reader that remembers whether its inner reader failed, so that a failing source is told
/// apart from a decoder rejecting the bytes it produced.
pub(super) struct Watched<R> {
    pub(super) inner: R,
    pub(super) failed: Arc<AtomicBool>,
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner
            .read(buf)
            .inspect_err(|_| self.failed.store(true, Ordering::Relaxed))
    }
}

/// A reader that fails once with the error it holds, then reads nothing.
pub(super) struct Failed(pub(super) Option<io::Error>);

impl Read for Failed {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        self.0.take().map_or(Ok(0), Err)
    }
}

impl BufRead for Failed {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.0.take().map_or(Ok(&[]), Err)
    }
    fn consume(&mut self, _: usize) {}
}

/// The size of the chunks handed from the read-ahead thread to the parser.
pub(super) const CHUNK: usize = 256 * 1024;
/// How many chunks may wait for the parser: memory stays at a few chunks per object.
pub(super) const CHUNKS_AHEAD: usize = 4;

/// The parser's end of a read-ahead thread: chunks of decompressed text arrive through a
/// bounded channel, and emptied chunks go back to be refilled, so no memory is allocated per
/// chunk.
pub(super) struct ReadAhead {
    pub(super) chunks: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    pub(super) empties: std::sync::mpsc::Sender<Vec<u8>>,
    pub(super) current: Vec<u8>,
    pub(super) at: usize,
}

impl ReadAhead {
    /// Starts a thread in `scope` that reads `input` to its end (or to the first error) ahead
    /// of the parser. The thread stops when the parser drops its end.
    pub(super) fn start<'scope, 'env>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        mut input: Box<dyn BufRead + Send + 'env>,
    ) -> ReadAhead {
        let (chunk_tx, chunks) = std::sync::mpsc::sync_channel(CHUNKS_AHEAD);
        let (empties, empty_rx) = std::sync::mpsc::channel::<Vec<u8>>();
        scope.spawn(move || {
            loop {
                let mut chunk = empty_rx.try_recv().unwrap_or_else(|_| Vec::with_capacity(CHUNK));
                chunk.clear();
                let filled = (&mut input).take(CHUNK as u64).read_to_end(&mut chunk);
                let last = !matches!(filled, Ok(n) if n > 0);
                let message = filled.map(|_| chunk);
                if chunk_tx.send(message).is_err() || last {
                    return;
                }
            }
        });
        ReadAhead {
            chunks,
            empties,
            current: Vec::new(),
            at: 0,
        }
    }
}

impl Read for ReadAhead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(buf.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ReadAhead {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.at == self.current.len() {
            // A closed channel is the end: the thread sent its last (empty) chunk or error.
            match self.chunks.recv() {
                Ok(Ok(chunk)) => {
                    let used = std::mem::replace(&mut self.current, chunk);
                    let _ = self.empties.send(used);
                    self.at = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    self.current.clear();
                    self.at = 0;
                }
            }
        }
        Ok(&self.current[self.at..])
    }

    fn consume(&mut self, n: usize) {
        self.at = (self.at + n).min(self.current.len());
    }
}

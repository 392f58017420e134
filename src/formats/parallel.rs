//! Checking one object's rows on several threads: this thread reads units (lines, records)
//! in batches, workers check whole batches into recorded rows and row errors, and this thread
//! hands them to the sink in file order.
//!
//! Used for objects larger than one read-ahead chunk, by formats whose units can be checked
//! independently once read (JSON Lines lines; CSV records once the header is known). It
//! changes nothing but the speed: the rows, row errors, line numbers, counts and the point
//! where a sink that wants no more rows stops are those of the one-thread loop (each format's
//! tests run both and compare). This module knows nothing of formats.

use super::{Failure, Provenanced, Row, RowError, RowSink};
use crate::template::Template;
use std::collections::BTreeMap;
use std::sync::mpsc::{channel, sync_channel};
use std::sync::{Arc, Mutex};

/// How many batches may be read ahead of the one the sink is waiting for: with batches of
/// about a megabyte, this bounds a parallel parse to a few megabytes.
const BATCHES_IN_FLIGHT: usize = 4;
/// Threads checking batches: this machine's two cores, with this thread reading.
const WORKERS: usize = 2;

/// Reads batches with `read` (which fills the batch it is given and returns whether it
/// holds anything; on a failure, the batch holds what was read before it) and checks them
/// with `check` on [`WORKERS`] threads, each with its own `state` (made by `new_state`) and
/// its own view of the sink. `B` is recycled from batch to batch. A check that fails (a value
/// that shows the file is broken) fails the parse there, after the rows before it, as on one
/// thread.
pub(super) fn run<B, S>(
    sink: &mut Provenanced<'_, '_>,
    template: &Template,
    mut read: impl FnMut(&mut B) -> Result<bool, Failure>,
    new_state: impl Fn() -> S + Sync,
    check: impl Fn(&mut S, &B, &mut Provenanced<'_, '_>) -> Result<(), Failure> + Sync,
) -> Result<(), Failure>
where
    B: Default + Send,
{
    let (provenance, encoding, csv_out, json) =
        (sink.provenance, sink.encoding, sink.csv_out(), sink.wants_json());
    let (new_state, check) = (&new_state, &check);
    std::thread::scope(|scope| {
        let (jobs, job_rx) = sync_channel::<(u64, B)>(BATCHES_IN_FLIGHT);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done) = channel::<(u64, Recorder, B)>();
        for _ in 0..WORKERS {
            let (job_rx, done_tx) = (job_rx.clone(), done_tx.clone());
            scope.spawn(move || {
                let mut state = new_state();
                // The size of the last batch's recording: the next is made that large at once,
                // rather than grown (and copied) as it fills.
                let mut last = (0, 0, 0);
                loop {
                    // The lock is held only while waiting for the next batch.
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok((seq, batch)) = job else { return };
                    let mut recorder = Recorder {
                        text: Vec::with_capacity(last.0),
                        csv: Vec::with_capacity(last.1),
                        events: Vec::with_capacity(last.2),
                        failure: None,
                    };
                    let mut view =
                        Provenanced::new(&mut recorder, provenance, template).writing_csv(csv_out, json);
                    view.encoding = encoding;
                    // A worker's view of the sink records; it never fails nor asks to stop, so
                    // a failure is the batch's own.
                    let checked = check(&mut state, &batch, &mut view);
                    drop(view);
                    recorder.failure = checked.err();
                    last = (recorder.text.len(), recorder.csv.len(), recorder.events.len());
                    if done_tx.send((seq, recorder, batch)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        let mut waiting = BTreeMap::new();
        let mut spare: Vec<B> = Vec::new();
        let (mut sent, mut next) = (0u64, 0u64);
        let mut finished = false;
        let mut read_failure = None;
        let result = loop {
            while !finished && sent - next < BATCHES_IN_FLIGHT as u64 {
                let mut batch = spare.pop().unwrap_or_default();
                let read = read(&mut batch);
                if matches!(read, Ok(false)) {
                    finished = true;
                    break;
                }
                // A batch that failed part-way still holds what was read before the failure,
                // which the sink gets before the failure, as it would on one thread.
                if jobs.send((sent, batch)).is_err() {
                    finished = true;
                    break;
                }
                sent += 1;
                if let Err(e) = read {
                    read_failure = Some(e);
                    finished = true;
                }
            }
            if next == sent {
                break Ok(());
            }
            // The sink takes batches in order; later ones wait here.
            let Some((recorder, batch)) = waiting.remove(&next) else {
                match done.recv() {
                    Ok((seq, recorder, batch)) => {
                        waiting.insert(seq, (recorder, batch));
                        continue;
                    }
                    Err(_) => break Ok(()),
                }
            };
            next += 1;
            spare.push(batch);
            if let Err(e) = recorder.replay(sink) {
                break Err(e);
            }
        };
        // Closing the job channel ends the workers; the scope waits for them.
        drop(jobs);
        result.and(read_failure.map_or(Ok(()), Err))
    })
}

/// [`run`] when `parallel`; else the same reads and checks on this thread, in the same order
/// (a batch whose read failed is checked before the failure ends the parse, as [`run`] does),
/// so that a format has one loop for both.
pub(super) fn run_or_here<B, S>(
    parallel: bool,
    sink: &mut Provenanced<'_, '_>,
    template: &Template,
    mut read: impl FnMut(&mut B) -> Result<bool, Failure>,
    new_state: impl Fn() -> S + Sync,
    check: impl Fn(&mut S, &B, &mut Provenanced<'_, '_>) -> Result<(), Failure> + Sync,
) -> Result<(), Failure>
where
    B: Default + Send,
{
    if parallel {
        return run(sink, template, read, new_state, check);
    }
    let (mut state, mut batch) = (new_state(), B::default());
    // Bounded by the object: each read takes the next batch of it.
    loop {
        let read = read(&mut batch);
        if matches!(read, Ok(false)) {
            return Ok(());
        }
        check(&mut state, &batch, sink)?;
        read?;
    }
}

/// What a worker's checking produced for one batch, in order: row texts (and CSV records,
/// when the sink takes them) and row errors.
#[derive(Default)]
struct Recorder {
    text: Vec<u8>,
    csv: Vec<u8>,
    events: Vec<Event>,
    /// What ended the batch's check early, handed on after its rows.
    failure: Option<Failure>,
}

enum Event {
    /// A good row: its line and where its JSON ends in `text` and its CSV record in `csv`
    /// (each starts where the previous row's ended).
    Row {
        line: u64,
        end: usize,
        csv_end: usize,
    },
    Error(RowError),
}

impl RowSink for Recorder {
    fn row(&mut self, row: &Row<'_>) -> std::io::Result<()> {
        self.text.extend_from_slice(row.json());
        // Each row's text ends with a line break, outside its span, so that a run of rows is
        // one block for a sink that takes blocks (the spool of a JSON Lines output).
        self.text.push(b'\n');
        if let Some(csv) = row.csv() {
            self.csv.extend_from_slice(csv);
        }
        self.events.push(Event::Row {
            line: row.line,
            end: self.text.len() - 1,
            csv_end: self.csv.len(),
        });
        Ok(())
    }
    fn error(&mut self, error: RowError) {
        self.events.push(Event::Error(error));
    }
}

impl Recorder {
    /// Hands the recorded rows and errors to the real sink, counting them as the one-thread
    /// loop would, and stopping where it would.
    fn replay(self, sink: &mut Provenanced<'_, '_>) -> Result<(), Failure> {
        let (mut start, mut csv_start) = (0, 0);
        let csv_wanted = sink.csv_out().is_some();
        let blocks = sink.takes_blocks();
        let mut last_bad = None;
        let mut events = self.events.into_iter().peekable();
        while let Some(event) = events.next() {
            match event {
                Event::Row { end, .. } if blocks => {
                    // This row and the good rows right after it, with their line breaks.
                    let (mut last, mut count) = (end, 1u64);
                    while let Some(&Event::Row { end, .. }) = events.peek() {
                        last = end;
                        count += 1;
                        events.next();
                    }
                    sink.rows_block(self.text.get(start..=last).unwrap_or_default(), count)?;
                    start = last + 1;
                }
                Event::Row { line, end, csv_end } => {
                    let csv = csv_wanted.then(|| self.csv.get(csv_start..csv_end).unwrap_or_default());
                    sink.row_json(line, self.text.get(start..end).unwrap_or_default(), csv)?;
                    start = end + 1;
                    csv_start = csv_end;
                }
                Event::Error(error) => {
                    // A bad row reports one error per failing field; it counts once, and the
                    // sink is asked whether to go on after the last of them.
                    let line = error.line;
                    sink.error(error, last_bad != Some(line));
                    last_bad = Some(line);
                    if !matches!(events.peek(), Some(Event::Error(e)) if e.line == line) {
                        sink.go_on()?;
                    }
                }
            }
        }
        self.failure.map_or(Ok(()), Err)
    }
}

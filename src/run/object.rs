//! The per-object import path of a run: one object fetched, decompressed, parsed, checked
//! and spooled (a small group of them at a time on one blocking thread, for a source that opens
//! on the parsing thread), tried again when that may help, and what became of it
//! ([`Processed`]). `preview` and `template infer` parse a sample through the same path
//! ([`parse_object`]). The run's protocol (plan, import, settle) is the parent module's.

use super::*;

/// What became of one object.
pub(super) enum Processed {
    Imported {
        stats: ParseStats,
        spooled: Spooled,
    },
    Rejected {
        stats: ParseStats,
        reason: String,
        errors: Vec<formats::RowError>,
    },
    /// Not imported in this run; the next run tries it again.
    Failed {
        error: ObjectFailure,
        /// How many attempts were made, when another could have helped and none was left.
        attempts: Option<u32>,
    },
}

/// Why an object could not be imported in this run: a value, turned into words only where
/// a summary, `status` or a log line shows it.
#[derive(Debug, thiserror::Error)]
pub enum ObjectFailure {
    /// Opening or reading it (the source), or the parsing task.
    #[error(transparent)]
    Object(#[from] ObjectError),
    /// The parse ended early for a reason outside the file: its reader or the spool.
    #[error(transparent)]
    Parse(ParseError),
    /// The blocking task that parsed a group of small objects ended without saying which of
    /// them it finished (a panic).
    #[error("parsing task failed: {0}")]
    Group(String),
}

/// Why one attempt at an object failed. The variant decides whether to try again.
pub(super) enum Attempt {
    Transient(ObjectFailure),
    Permanent(ObjectFailure),
}

impl Processed {
    /// A failure, in the words a run's summary and log use.
    pub(super) fn failure_text(error: &ObjectFailure, attempts: Option<u32>) -> String {
        match attempts {
            Some(n) => format!("{error} (after {n} attempts)"),
            None => error.to_string(),
        }
    }
}

/// Fetches, parses, checks and spools one object, trying again when that may help.
pub(super) async fn process(env: &RunEnv<'_>, spool: &Spool, meta: &ObjectMeta) -> Processed {
    let mut attempt = 1;
    loop {
        match process_once(env, spool, meta).await {
            Ok(p) => return p,
            Err(Attempt::Transient(e)) if attempt < ATTEMPTS => {
                debug!(key = %meta.key, error = %e, attempt, "object failed; trying again");
                tokio::time::sleep(BACKOFF * 2u32.pow(attempt - 1)).await;
                attempt += 1;
            }
            Err(Attempt::Transient(error)) => {
                return Processed::Failed {
                    error,
                    attempts: Some(attempt),
                };
            }
            Err(Attempt::Permanent(error)) => {
                return Processed::Failed {
                    error,
                    attempts: None,
                };
            }
        }
    }
}

/// Why a parsed object is rejected for its bad rows, if it is: the one rule runs and
/// `preview` apply.
pub fn over_max_bad_rows(template: &crate::template::Template, stats: ParseStats) -> Option<String> {
    template
        .max_bad_rows
        .exceeded(stats.bad_rows, stats.rows)
        .then(|| {
            // A whole number of bad rows is over the limit when it is over the limit's floor.
            let allowed = template.max_bad_rows.allowed(stats.rows).floor() as u64;
            format!(
                "{} of {} rows are bad, over max_bad_rows = \"{}\", which allows {allowed} of {}; none of its rows were delivered",
                stats.bad_rows, stats.rows, template.max_bad_rows, stats.rows
            )
        })
}

/// Why an object could not be handed to the parser.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("parsing task failed: {0}")]
    Task(String),
}

/// Opens one object version and parses it into `sink` on the blocking pool (parsing is CPU
/// work on a blocking reader, so it stays off the runtime's threads). Returns the parse result
/// and the sink. Used by runs (into the spool) and by `preview` (into a sample).
pub async fn parse_object<S: RowSink + Send + 'static>(
    source: &dyn Source,
    connection: &Connection,
    meta: &ObjectMeta,
    sink: S,
) -> Result<(Result<ParseStats, ParseError>, S), ObjectError> {
    let open = opener(source, meta).await?;
    let job = ParseJob::of(connection);
    let meta = meta.clone();
    let (result, sink) = tokio::task::spawn_blocking(move || job.parse(open, &meta, sink))
        .await
        .map_err(|e| ObjectError::Task(e.to_string()))?;
    Ok((result?, sink))
}

/// How one object is opened on the thread that parses it: by the source's own
/// [`Source::opener`] when it has one, else opened here, on the runtime, and read through it.
pub(super) async fn opener(
    source: &dyn Source,
    meta: &ObjectMeta,
) -> Result<crate::sources::Opener, SourceError> {
    Ok(match source.opener(meta) {
        Some(open) => open,
        None => {
            let reader = source.open(meta).await?.into_blocking();
            Box::new(move || Ok(reader))
        }
    })
}

/// What parsing objects of one connection needs, owned, for a blocking thread.
pub(super) struct ParseJob {
    pub(super) spec: formats::FormatSpec,
    pub(super) template: crate::template::Template,
    pub(super) rules: ValueRules,
}

impl ParseJob {
    pub(super) fn of(connection: &Connection) -> ParseJob {
        ParseJob {
            spec: connection.format.clone(),
            template: connection.template.clone(),
            // Rows the target could not store are row errors, decided here for runs and
            // previews.
            rules: ValueRules::for_target(&connection.target),
        }
    }

    /// Opens and parses one object into `sink`, on the calling (blocking) thread. Returns the
    /// sink in every case.
    pub(super) fn parse<S: RowSink>(
        &self,
        open: crate::sources::Opener,
        meta: &ObjectMeta,
        sink: S,
    ) -> (Result<Result<ParseStats, ParseError>, SourceError>, S) {
        let reader = match open() {
            Ok(reader) => reader,
            Err(e) => return (Err(e), sink),
        };
        let mut sink = Admitting {
            inner: sink,
            rules: self.rules,
        };
        let provenance = Provenance {
            key: &meta.key,
            version: &meta.etag,
        };
        let result = formats::parse_sized(
            reader,
            Some(meta.size),
            &meta.key,
            &self.spec,
            &self.template,
            provenance,
            &mut sink,
        )
        .and_then(|stats| sink.end().map(|()| stats).map_err(ParseError::Sink));
        (Ok(result), sink.inner)
    }
}

/// A sink whose rows are also checked against what the target can store.
pub(super) struct Admitting<S> {
    pub(super) inner: S,
    pub(super) rules: ValueRules,
}

impl<S: RowSink> RowSink for Admitting<S> {
    fn schema(&mut self, schema: &formats::FileSchema) {
        self.inner.schema(schema);
    }
    fn row(&mut self, row: &formats::Row<'_>) -> std::io::Result<()> {
        self.inner.row(row)
    }
    fn error(&mut self, error: formats::RowError) {
        self.inner.error(error);
    }
    fn wants_more(&self) -> bool {
        self.inner.wants_more()
    }
    fn end(&mut self) -> std::io::Result<()> {
        self.inner.end()
    }
    fn refusal(&self, json: &[u8]) -> Option<formats::Refusal> {
        self.rules.refusal(json)
    }
    fn csv_out(&self) -> Option<formats::CsvOut> {
        self.inner.csv_out()
    }
    fn wants_json(&self) -> bool {
        // The target's rules read the JSON text (a NUL in a PostgreSQL-bound row).
        self.inner.wants_json() || self.rules != ValueRules::default()
    }
    fn takes_blocks(&self) -> bool {
        // Rows the target may refuse are looked at one by one.
        self.rules == ValueRules::default() && self.inner.takes_blocks()
    }
    fn rows(&mut self, block: &[u8]) -> std::io::Result<()> {
        self.inner.rows(block)
    }
}

pub(super) async fn process_once(
    env: &RunEnv<'_>,
    spool: &Spool,
    meta: &ObjectMeta,
) -> Result<Processed, Attempt> {
    let (result, writer) = parse_object(env.source, env.connection, meta, spool.writer())
        .await
        .map_err(|e| match e {
            ObjectError::Source(e) if e.is_transient() => Attempt::Transient(ObjectError::Source(e).into()),
            other => Attempt::Permanent(other.into()),
        })?;
    outcome(&env.connection.template, result, writer)
}

/// What became of one parsed object: imported (its spooled rows kept), rejected (its rows
/// dropped from the spool), or a failure worth another attempt.
pub(super) fn outcome(
    template: &crate::template::Template,
    result: Result<ParseStats, ParseError>,
    writer: crate::spool::SpoolWriter,
) -> Result<Processed, Attempt> {
    match result {
        Ok(stats) => {
            if let Some(reason) = over_max_bad_rows(template, stats) {
                let errors = writer.discard();
                Ok(Processed::Rejected {
                    stats,
                    reason,
                    errors,
                })
            } else {
                Ok(Processed::Imported {
                    stats,
                    spooled: writer.keep(),
                })
            }
        }
        Err(e) => {
            let errors = writer.discard();
            match e {
                e @ (ParseError::Read(_) | ParseError::Sink(_)) => {
                    Err(Attempt::Transient(ObjectFailure::Parse(e)))
                }
                e => Ok(Processed::Rejected {
                    stats: ParseStats::default(),
                    reason: e.to_string(),
                    errors,
                }),
            }
        }
    }
}

/// Small objects whose source opens them on the parsing thread ([`Source::opener`]) are
/// processed a group at a time, one after the other on one blocking thread: a trip to the
/// blocking pool per object cost more than a small object. A group holds consecutive
/// candidates up to this many bytes in all…
pub(super) const GROUP_BYTES: u64 = 256 * 1024;
/// …and at most this many objects.
pub(super) const GROUP_OBJECTS: usize = 64;

/// Where the group that starts at candidate `at` ends (exclusive): the consecutive small
/// candidates that fit [`GROUP_BYTES`] and [`GROUP_OBJECTS`]; a large one is a group alone.
pub(super) fn group_end(candidates: &[ObjectMeta], at: usize) -> usize {
    let mut bytes = 0u64;
    let mut end = at;
    while let Some(meta) = candidates.get(end) {
        if end - at == GROUP_OBJECTS || (end > at && bytes + meta.size > GROUP_BYTES) {
            break;
        }
        bytes += meta.size;
        end += 1;
    }
    end
}

/// Processes a group of objects on one blocking thread, in order. An object that fails in a
/// way another attempt may mend goes through [`process`], with its retries, afterwards.
pub(super) async fn process_group(env: &RunEnv<'_>, spool: &Spool, metas: &[ObjectMeta]) -> Vec<Processed> {
    let mut opened = Vec::with_capacity(metas.len());
    for meta in metas {
        match env.source.opener(meta) {
            Some(open) => opened.push((open, meta.clone())),
            // Not a source that opens on the parsing thread: one after the other, as usual.
            None => {
                let mut processed = Vec::with_capacity(metas.len());
                for meta in metas {
                    processed.push(process(env, spool, meta).await);
                }
                return processed;
            }
        }
    }
    let (job, writers) = (ParseJob::of(env.connection), spool.writers());
    let done = tokio::task::spawn_blocking(move || {
        opened
            .into_iter()
            .map(|(open, meta)| {
                let (result, writer) = job.parse(open, &meta, writers.writer());
                match result {
                    Ok(result) => outcome(&job.template, result, writer),
                    Err(e) => {
                        writer.discard();
                        let transient = e.is_transient();
                        let failure = ObjectFailure::Object(ObjectError::Source(e));
                        Err(if transient {
                            Attempt::Transient(failure)
                        } else {
                            Attempt::Permanent(failure)
                        })
                    }
                }
            })
            .collect::<Vec<_>>()
    })
    .await;
    let done = match done {
        Ok(done) => done,
        // A panic mid-group loses which objects it finished: every one is tried again.
        Err(e) => metas
            .iter()
            .map(|_| Err(Attempt::Transient(ObjectFailure::Group(e.to_string()))))
            .collect(),
    };
    let mut processed = Vec::with_capacity(metas.len());
    for (meta, result) in metas.iter().zip(done) {
        processed.push(match result {
            Ok(p) => p,
            Err(Attempt::Permanent(error)) => Processed::Failed {
                error,
                attempts: None,
            },
            // The first attempt was the group's; `process` makes the others.
            Err(Attempt::Transient(_)) => process(env, spool, meta).await,
        });
    }
    processed
}

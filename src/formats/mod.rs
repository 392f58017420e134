//! File formats: turning the bytes of one object into checked rows and row errors.
//!
//! [`parse`] reads from any `Read` (a decompressed S3 body, a local file, a byte slice in a
//! test) and hands every row to a [`RowSink`] as it goes, so memory does not grow with the
//! object. It does no I/O of its own beyond that reader and the sink: fetching is the source's
//! job, spooling the sink's. An object larger than one chunk is read (and decompressed, and
//! transcoded) by a scoped thread ahead of the parser, and CSV (with a header) and JSON Lines
//! rows are checked by worker threads (`parallel.rs`), so that one object keeps both cores
//! busy; the threads end with the parse. A broken row is a value ([`RowError`]), not a
//! failure; only a reader that fails, or a file that cannot be read as its format at all,
//! ends the object.

mod arrow_rows;
mod avro;
mod codec;
mod columnar;
pub mod config;
mod csv;
mod csv_out;
mod encoding;
mod json;
mod jsonl;
mod parallel;
mod parquet;
mod parse;
mod read_ahead;
mod record_cap;
mod rows;
mod spec;

// Each concern is a module of its own; their items are this module's, as before the split,
// so that the formats' parsers (and callers) name them `formats::X` (or `super::X`).
pub use codec::*;
pub use columnar::{ColumnKind, FileColumn, FileSchema, RowGroup};
pub(crate) use encoding::*;
pub use parse::*;
use read_ahead::*;
pub use rows::*;
pub use spec::*;

pub use csv_out::{CsvEncoder, CsvOut, header as csv_header, needs_guard};

/// The provenance columns every row carries, in the order CSV output puts them.
pub const PROVENANCE: [&str; 3] = ["_source_key", "_source_version", "_source_line"];

use crate::template::{FieldError, RowBuffer, Template, write_json_str, write_json_value};
use crate::text::quoted_list;
use serde_json::{Map, Value};
use std::io::{self, BufRead, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers for the tests of the format parsers: a sink that keeps everything, fields and
    //! templates in one line, and a parse of bytes with a given spec.
    use super::*;
    use crate::template::{BadRowLimit, Column, Field, FieldType, UnknownFields};

    /// A field with no default and no allowed values.
    pub fn field(name: &str, column: Column, kind: FieldType, required: bool) -> Field {
        Field {
            name: name.into(),
            column,
            kind,
            required,
            values: None,
            default: None,
            null_values: vec![String::new()],
            booleans: None,
        }
    }

    /// A template with a required integer `id` read from `column`, and the given fields after.
    pub fn id_template(column: &str, unknown_fields: UnknownFields, more: Vec<Field>) -> Template {
        let mut fields = vec![field("id", Column::Name(column.into()), FieldType::Integer, true)];
        fields.extend(more);
        Template {
            table: "t".into(),
            unknown_fields,
            max_bad_rows: BadRowLimit::Count(0),
            fields,
        }
    }

    /// A file of `fuzz/seeds/FORMAT/`.
    pub fn seed(format: &str, file: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/seeds")
            .join(format)
            .join(file);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Checks that each hostile seed of a typed format (`hostile-NAME.EXT`, written by
    /// scripts/lib/hostile_typed.py) is rejected as a broken file of that format, with no row
    /// delivered.
    pub fn hostile_seeds_are_rejected(
        ext: &str,
        names: &[&str],
        spec: &FormatSpec,
        broken: fn(&ParseError) -> bool,
    ) {
        let template = id_template("id", crate::template::UnknownFields::Keep, vec![]);
        for name in names {
            let bytes = seed(ext, &format!("hostile-{name}.{ext}"));
            let (result, sink) = parse_with(&bytes, &format!("a.{ext}"), spec, &template);
            let e = result.expect_err(name);
            assert!(broken(&e), "{name}: {e}");
            assert!(sink.rows.is_empty(), "{name}");
        }
    }

    /// Parses `bytes` as the object `key` (which is also its provenance, version `v`).
    pub fn parse_with(
        bytes: &[u8],
        key: &str,
        spec: &FormatSpec,
        template: &Template,
    ) -> (Result<ParseStats, ParseError>, Collect) {
        let mut sink = Collect::default();
        let provenance = Provenance { key, version: "v" };
        let r = parse(bytes, key, spec, template, provenance, &mut sink);
        (r, sink)
    }

    /// Runs a format's parser one thread and parallel (`run(parallel, sink)`), into a sink
    /// that keeps everything and into a sample that stops after `limit` rows, and checks that
    /// both ways give the same rows, errors and counts. Returns the counts.
    pub fn one_thread_and_parallel_agree(
        run: impl Fn(bool, &mut dyn RowSink) -> ParseStats,
        limit: u64,
    ) -> ParseStats {
        let (mut one, mut two) = (Collect::default(), Collect::default());
        let (a, b) = (run(false, &mut one), run(true, &mut two));
        assert_eq!(a, b);
        assert_eq!(one.rows, two.rows);
        assert_eq!(one.errors, two.errors);
        // A sink that takes runs of rows at once (the JSON Lines spool) gets the same bytes.
        let (mut one, mut two) = (Lines::default(), Lines::default());
        let (e, f) = (run(false, &mut one), run(true, &mut two));
        assert_eq!((e, f), (a, a));
        assert_eq!(
            String::from_utf8_lossy(&one.text),
            String::from_utf8_lossy(&two.text)
        );
        assert_eq!(one.errors, two.errors);
        if a.rows > a.bad_rows + 1 {
            assert!(two.blocks > 0, "the parallel check hands on blocks");
        }
        // A sink that stops early stops both at the same row.
        let (mut one, mut two) = (Sample::new(limit), Sample::new(limit));
        let (c, d) = (run(false, &mut one), run(true, &mut two));
        assert_eq!(c, d);
        assert_eq!(one.rows, two.rows);
        assert_eq!(one.errors, two.errors);
        a
    }

    /// Keeps each row's JSON text exactly (key order included), and the errors.
    #[derive(Default)]
    pub struct Texts {
        pub rows: Vec<(u64, String)>,
        pub errors: Vec<RowError>,
    }

    impl RowSink for Texts {
        fn row(&mut self, row: &Row<'_>) -> io::Result<()> {
            self.rows
                .push((row.line, String::from_utf8_lossy(row.json()).into_owned()));
            Ok(())
        }
        fn error(&mut self, error: RowError) {
            self.errors.push(error);
        }
    }

    /// Keeps the rows' JSON Lines bytes, taking runs of rows as blocks as the spool does.
    #[derive(Default)]
    pub struct Lines {
        pub text: Vec<u8>,
        pub errors: Vec<RowError>,
        /// How many blocks were handed over.
        pub blocks: usize,
    }

    impl RowSink for Lines {
        fn row(&mut self, row: &Row<'_>) -> io::Result<()> {
            self.text.extend_from_slice(row.json());
            self.text.push(b'\n');
            Ok(())
        }
        fn error(&mut self, error: RowError) {
            self.errors.push(error);
        }
        fn takes_blocks(&self) -> bool {
            true
        }
        fn rows(&mut self, block: &[u8]) -> io::Result<()> {
            self.blocks += 1;
            self.text.extend_from_slice(block);
            Ok(())
        }
    }

    #[derive(Default)]
    pub struct Collect {
        pub rows: Vec<Value>,
        pub errors: Vec<RowError>,
        pub schema: Option<FileSchema>,
    }

    impl RowSink for Collect {
        fn schema(&mut self, schema: &FileSchema) {
            self.schema = Some(schema.clone());
        }
        fn row(&mut self, row: &Row<'_>) -> io::Result<()> {
            self.rows.push(Value::Object(row.to_map()?));
            Ok(())
        }
        fn error(&mut self, error: RowError) {
            self.errors.push(error);
        }
    }
}

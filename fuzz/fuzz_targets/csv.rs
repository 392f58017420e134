//! Fuzzes the csv reader with a template of every field type, in a dialect (quote, escape,
//! comment, skipped rows) the first byte picks: no panic, every delivered row a JSON object,
//! every row error and file error bounded.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::parse_csv_dialects(data);
});

//! Fuzzes the Parquet reader with a template of every field type: no panic, no unbounded
//! allocation (libFuzzer's RSS limit), every delivered row a JSON object, every row error and
//! file error bounded.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::parse("parquet", "object.parquet", data);
});

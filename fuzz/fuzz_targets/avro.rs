//! Fuzzes the Avro reader with a template of every field type: no panic, no unbounded
//! allocation (libFuzzer's RSS limit; the reader refuses lengths over 64 MiB), every delivered
//! row a JSON object, every row error and file error bounded.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // As for Parquet: a panic in the reader is caught by the import and rejects the file, so a
    // quiet hook stands in for libFuzzer's; one nothing catches still aborts.
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    common::parse("avro", "object.avro", data);
});

//! Fuzzes the Parquet reader with a template of every field type: no panic, no unbounded
//! allocation (libFuzzer's RSS limit), every delivered row a JSON object, every row error and
//! file error bounded.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // The Parquet reader panics on some corrupt files, and the import catches that and
    // rejects the file: libFuzzer's hook would abort before the catch, so a quiet one stands
    // in. A panic nothing catches still reaches libfuzzer-sys, which aborts on it.
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    common::parse("parquet", "object.parquet", data);
});

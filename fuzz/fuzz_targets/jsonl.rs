//! Fuzzes the jsonl reader with a template of every field type, in an encoding the first byte
//! picks: no panic, every delivered row a JSON object, every row error and file error bounded.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::parse_jsonl_encodings(data);
});

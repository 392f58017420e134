//! Fuzzes the json reader with a template of every field type: no panic, every delivered row
//! a JSON object, every row error and file error bounded.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::parse("json", "object.json", data);
});

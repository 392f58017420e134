//! Fuzzes the configuration loader (TOML parsing and validation) on a connection file and a
//! template file: no panic, whatever the text.
#![no_main]

use s3_importd::config::{self, Files};
use std::path::Path;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // The input is split at the first NUL: a connection file, then a template it may name.
    let (connection, template) = text.split_once('\0').unwrap_or((&text, ""));
    let files = Files {
        settings: None,
        templates: vec![("t".to_string(), template.to_string())],
        connections: vec![("c".to_string(), connection.to_string())],
    };
    if let Err(errors) = config::check(Path::new("/etc/s3-importd"), &files) {
        for e in &errors.0 {
            let _ = e.to_string();
        }
    }
});

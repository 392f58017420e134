//! Fuzzes the output key template parser: no panic, and an expanded key within the limits.
#![no_main]

use s3_importd::keytemplate::{KeyTemplate, KeyValues};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(template) = KeyTemplate::parse(text) else {
        return;
    };
    if template.check_for("connection", "table").is_err() {
        return;
    }
    let values = KeyValues {
        integration_name: "connection",
        table_name: "table",
        table_version: 3,
        loaded_at: chrono::DateTime::from_timestamp(1_795_313_886, 0).unwrap_or_default(),
    };
    if let Ok(key) = template.expand(&values) {
        assert!(
            key.chars().count() <= 500,
            "a key of {} characters",
            key.chars().count()
        );
        assert!(!key.contains(' '), "a key with a space: {key:?}");
    }
});

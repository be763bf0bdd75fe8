//! A cloud-config document as `ros config` reads it: parse into the value
//! tree, read the typed model, validate against the schema, export, and parse
//! the export again.
//!
//! Besides "no panic", the target checks the promise that `ros config export`
//! makes: what it writes parses back to the same tree.

#![no_main]

use std::path::Path;

use config::model::CloudConfig;
use config::{validate, Config};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("fuzz.yml");
    let _ = validate::validate_text(text, file);
    let Ok(config) = Config::parse(text, file) else {
        return;
    };
    let _ = config.typed::<CloudConfig>();
    let _ = validate::validate(&config);
    // A key read back from the document is a valid dotted key unless it
    // holds a dot or is empty; either way `get` must answer, not panic.
    for key in config.as_mapping().keys().filter_map(|k| k.as_str()) {
        let _ = config.get(key);
    }
    let Ok(exported) = config.to_yaml() else {
        return;
    };
    let again = match Config::parse(&exported, Path::new("export.yml")) {
        Ok(again) => again,
        Err(e) => panic!("export does not parse back: {e}\n--- export:\n{exported}"),
    };
    assert_eq!(
        again, config,
        "export parses back to a different config\n--- export:\n{exported}"
    );
});

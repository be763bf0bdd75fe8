//! The kernel command line as the config loader reads /proc/cmdline: split
//! into words, turn `rancher.*` and `cc.*` words into two config layers, and
//! export them.
//!
//! Besides "no panic", the target checks that each layer's export parses
//! back to the same layer, since the part after `--` is saved to
//! cloud-config.d/init.yml and read again on the next boot.

#![no_main]

use std::path::Path;

use config::{cmdline, Config};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let _ = cmdline::split_words(line);
    let parsed = cmdline::parse(line);
    for layer in [&parsed.kernel, &parsed.after_dashes] {
        let Ok(text) = layer.to_yaml() else {
            continue;
        };
        match Config::parse(&text, Path::new("init.yml")) {
            Ok(again) => assert_eq!(&again, layer, "layer changed on a round trip:\n{text}"),
            Err(e) => panic!("layer does not parse back: {e}\n{text}"),
        }
    }
});

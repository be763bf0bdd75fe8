//! The kernel command line as a config layer.
//!
//! `rancher.a.b=c` sets `rancher.a.b`, `cc.a.b=c` sets the top-level key
//! `a.b`; every other word (`console=ttyS0`, `quiet`) belongs to the kernel
//! and is ignored. Values are YAML scalars (`true`, `3`, `'3'` for the string),
//! and `[a,b]` is a list of scalars. A key without `=` is `true`.
//!
//! Words are split the way the kernel splits them (`next_arg` in
//! lib/cmdline.c): on whitespace outside double quotes, and the quotes are
//! removed, so `rancher.x="a b"` and `"rancher.x=a b"` both give `a b`. There
//! are no escapes. This is hand-written because shell-word crates such as
//! `shlex` follow shell rules (backslashes, single quotes) that the kernel
//! does not have.
//!
//! Everything after a lone `--` is handed to init rather than the kernel and
//! is hidden from /proc/cmdline; [`parse`] returns it as a separate layer so
//! that it can be saved to cloud-config.d/init.yml.

use serde_norway::Value;

use crate::tree::Config;

/// The two config layers of a kernel command line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cmdline {
    /// Keys before `--` (the ones the kernel shows in /proc/cmdline).
    pub kernel: Config,
    /// Keys after `--` (given to init only).
    pub after_dashes: Config,
}

/// Splits a command line into words, kernel style.
pub fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Parses a command-line value: `[a,b]` is a list, anything else one scalar.
pub fn parse_value(text: &str) -> Value {
    let trimmed = text.trim();
    if let Some(inner) = trimmed
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
    {
        if inner.trim().is_empty() {
            return Value::Sequence(Vec::new());
        }
        return Value::Sequence(inner.split(',').map(parse_scalar).collect());
    }
    parse_scalar(text)
}

/// One YAML scalar; text that YAML would read as a mapping, a list or not at
/// all (`a: b`, `- x`, `{`) stays the string it was.
pub fn parse_scalar(text: &str) -> Value {
    let text = text.trim();
    if text.is_empty() {
        return Value::String(String::new());
    }
    match serde_norway::from_str::<Value>(text) {
        Ok(v @ (Value::Bool(_) | Value::Number(_) | Value::String(_) | Value::Null)) => v,
        _ => Value::String(text.to_owned()),
    }
}

/// Parses a whole command line (the text of /proc/cmdline, or of the boot
/// loader's line with the part after `--`).
pub fn parse(line: &str) -> Cmdline {
    let mut out = Cmdline::default();
    let mut after = false;
    for word in split_words(line) {
        if word == "--" && !after {
            after = true;
            continue;
        }
        let (name, value) = match word.split_once('=') {
            Some((n, v)) => (n, parse_value(v)),
            None => (word.as_str(), Value::Bool(true)),
        };
        let key = if let Some(rest) = name.strip_prefix("cc.") {
            rest.to_owned()
        } else if name.starts_with("rancher.") {
            name.to_owned()
        } else {
            continue;
        };
        let target = if after {
            &mut out.after_dashes
        } else {
            &mut out.kernel
        };
        if let Err(e) = target.set(&key, value) {
            // One bad word must not cost the rest of the boot its config.
            tracing::warn!("kernel command line: ignoring {word:?}: {e}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn yaml(text: &str) -> Config {
        Config::parse(text, Path::new("expected")).unwrap()
    }

    #[test]
    fn words_split_like_the_kernel() {
        let cases: &[(&str, &[&str])] = &[
            ("a b  c", &["a", "b", "c"]),
            ("rancher.x=\"a b\" y", &["rancher.x=a b", "y"]),
            ("\"rancher.x=a b\"", &["rancher.x=a b"]),
            ("  \n", &[]),
            ("x=\"\"", &["x="]),
            ("a\\ b", &["a\\", "b"]),
        ];
        for (line, want) in cases {
            assert_eq!(&split_words(line), want, "line {line:?}");
        }
    }

    #[test]
    fn keys_and_values() {
        let cases: &[(&str, &str)] = &[
            ("rancher.debug=true", "rancher: {debug: true}"),
            ("rancher.debug", "rancher: {debug: true}"),
            ("cc.hostname=box", "hostname: box"),
            ("cc.a.b=1", "a: {b: 1}"),
            ("rancher.x='1'", "rancher: {x: '1'}"),
            ("rancher.x=\"a b\"", "rancher: {x: a b}"),
            ("rancher.x=", "rancher: {x: ''}"),
            ("rancher.x=a:b", "rancher: {x: 'a:b'}"),
            ("rancher.x=\"a: b\"", "rancher: {x: 'a: b'}"),
            (
                "rancher.network.dns.nameservers=[8.8.8.8,1.1.1.1]",
                "rancher: {network: {dns: {nameservers: [8.8.8.8, 1.1.1.1]}}}",
            ),
            ("rancher.modules=[]", "rancher: {modules: []}"),
            ("rancher.l=[1,true,x]", "rancher: {l: [1, true, x]}"),
            (
                "console=ttyS0 quiet root=/dev/sda1 rancher.state.dev=LABEL=RANCHER_STATE",
                "rancher: {state: {dev: LABEL=RANCHER_STATE}}",
            ),
            ("rancherx=1 ccx=2", "{}"),
            ("rancher.a=1 rancher.a=2", "rancher: {a: 2}"),
        ];
        for (line, want) in cases {
            let got = parse(line);
            assert_eq!(got.kernel, yaml(want), "line {line:?}");
            assert!(got.after_dashes.is_empty(), "line {line:?}");
        }
    }

    #[test]
    fn args_after_dashes_are_separate() {
        let got = parse("quiet rancher.a=1 -- rancher.password=secret cc.hostname=h --");
        assert_eq!(got.kernel, yaml("rancher: {a: 1}"));
        assert_eq!(
            got.after_dashes,
            yaml("rancher: {password: secret}\nhostname: h")
        );
    }

    #[test]
    fn a_conflicting_word_is_skipped_not_fatal() {
        let got = parse("rancher.a=1 rancher.a.b=2 rancher.c=3");
        assert_eq!(got.kernel, yaml("rancher: {a: 1, c: 3}"));
    }
}

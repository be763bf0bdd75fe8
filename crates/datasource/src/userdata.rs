//! The forms user-data may take (COMPAT.md): `#cloud-config` YAML, a `#!`
//! script, `#compose` (a compose file, wrapped into `rancher.services`), or
//! gzip of any of these.

use std::io::Read;

use flate2::read::GzDecoder;
use serde_norway::{Mapping, Value};

use crate::error::{Error, Result};

/// The header of a cloud-config document.
pub const CLOUD_CONFIG_HEADER: &str = "#cloud-config";
/// The header of a compose document given as user-data.
pub const COMPOSE_HEADER: &str = "#compose";
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Decompressed user-data larger than this is refused (a gzip bomb would
/// otherwise fill the initrd's memory).
pub const MAX_USER_DATA: u64 = 64 << 20;

/// Decoded user-data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserData {
    /// A cloud-config document, starting with `#cloud-config`: either the
    /// user-data itself or a `#compose` file wrapped as
    /// `rancher: {services: ...}`.
    CloudConfig(String),
    /// A script starting with `#!`, kept byte for byte.
    Script(Vec<u8>),
}

/// Decodes raw user-data from the datasource named `source`. Empty
/// user-data (or only white space) is no user-data.
pub fn decode(source: &str, raw: &[u8]) -> Result<Option<UserData>> {
    if raw.starts_with(&GZIP_MAGIC) {
        let mut out = Vec::new();
        GzDecoder::new(raw)
            .take(MAX_USER_DATA + 1)
            .read_to_end(&mut out)
            .map_err(|e| invalid(source, "gzip user-data", e.to_string()))?;
        if out.len() as u64 > MAX_USER_DATA {
            return Err(invalid(
                source,
                "gzip user-data",
                format!("larger than {MAX_USER_DATA} bytes once decompressed"),
            ));
        }
        if out.starts_with(&GZIP_MAGIC) {
            return Err(invalid(source, "gzip user-data", "gzip inside gzip".into()));
        }
        return decode_plain(source, &out);
    }
    decode_plain(source, raw)
}

fn decode_plain(source: &str, raw: &[u8]) -> Result<Option<UserData>> {
    let raw = raw.strip_prefix(b"\xef\xbb\xbf").unwrap_or(raw);
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    if raw.starts_with(b"#!") {
        return Ok(Some(UserData::Script(raw.to_vec())));
    }
    let text = |what| {
        std::str::from_utf8(raw).map_err(|e| invalid(source, what, format!("not UTF-8: {e}")))
    };
    if starts_with_header(raw, CLOUD_CONFIG_HEADER) {
        let text = text("cloud-config")?;
        parse_mapping(source, "cloud-config", text)?;
        return Ok(Some(UserData::CloudConfig(text.to_owned())));
    }
    if starts_with_header(raw, COMPOSE_HEADER) {
        let text = text("compose user-data")?;
        return wrap_compose(source, text).map(|c| Some(UserData::CloudConfig(c)));
    }
    let first_line = raw.split(|b| *b == b'\n').next().unwrap_or_default();
    let start: String = String::from_utf8_lossy(first_line)
        .chars()
        .take(40)
        .collect();
    Err(Error::UnknownUserData {
        source_name: source.to_owned(),
        start,
    })
}

/// Whether `raw` starts with the header line `header` (followed by the end
/// of the line, not by more of a word such as `#cloud-configs`).
fn starts_with_header(raw: &[u8], header: &str) -> bool {
    raw.strip_prefix(header.as_bytes())
        .is_some_and(|rest| rest.is_empty() || matches!(rest[0], b'\n' | b'\r' | b' ' | b'\t'))
}

/// Parses a YAML document that must be a mapping (or empty).
fn parse_mapping(source: &str, what: &'static str, text: &str) -> Result<Mapping> {
    match serde_norway::from_str::<Value>(text) {
        Ok(Value::Mapping(m)) => Ok(m),
        Ok(Value::Null) => Ok(Mapping::new()),
        Ok(_) => Err(invalid(source, what, "not a YAML mapping".into())),
        Err(e) => Err(invalid(source, what, e.to_string())),
    }
}

/// Wraps a compose file into a cloud-config: a file with a top-level
/// `services:` mapping (compose v2 and later) gives those services; any other
/// mapping is a compose v1 file whose top level is the services.
fn wrap_compose(source: &str, text: &str) -> Result<String> {
    let compose = parse_mapping(source, "compose user-data", text)?;
    let services = match compose.get("services") {
        Some(Value::Mapping(services)) => Value::Mapping(services.clone()),
        Some(_) => {
            return Err(invalid(
                source,
                "compose user-data",
                "services is not a mapping".into(),
            ))
        }
        None => Value::Mapping(compose),
    };
    let mut rancher = Mapping::new();
    rancher.insert("services".into(), services);
    let mut doc = Mapping::new();
    doc.insert("rancher".into(), Value::Mapping(rancher));
    let yaml = serde_norway::to_string(&doc).map_err(|e| Error::Serialize {
        what: "compose user-data",
        message: e.to_string(),
    })?;
    Ok(format!("{CLOUD_CONFIG_HEADER}\n{yaml}"))
}

fn invalid(source: &str, what: &'static str, message: String) -> Error {
    Error::Invalid {
        source_name: source.to_owned(),
        what,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn cloud_config_is_kept_as_written() {
        let text = "#cloud-config\nhostname: a\n";
        assert_eq!(
            decode("test", text.as_bytes()).unwrap(),
            Some(UserData::CloudConfig(text.into()))
        );
    }

    #[test]
    fn bad_cloud_config_yaml_names_the_source() {
        let err = decode("ec2", b"#cloud-config\nhostname: [a\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cloud-config from ec2 is invalid"),
            "{err}"
        );
        let err = decode("ec2", b"#cloud-config\n- a\n").unwrap_err();
        assert!(err.to_string().contains("not a YAML mapping"), "{err}");
    }

    #[test]
    fn script_is_kept_byte_for_byte() {
        let script = b"#!/bin/sh\necho \xff\n";
        assert_eq!(
            decode("t", script).unwrap(),
            Some(UserData::Script(script.to_vec()))
        );
    }

    #[test]
    fn compose_v1_and_v2_are_wrapped_into_rancher_services() {
        for text in [
            "#compose\nweb:\n  image: nginx\n",
            "#compose\nversion: '2'\nservices:\n  web:\n    image: nginx\n",
        ] {
            let Some(UserData::CloudConfig(cc)) = decode("t", text.as_bytes()).unwrap() else {
                panic!("not a cloud-config");
            };
            assert!(cc.starts_with("#cloud-config\n"));
            let v: Value = serde_norway::from_str(&cc).unwrap();
            assert_eq!(
                v["rancher"]["services"]["web"]["image"],
                Value::from("nginx")
            );
            assert!(v["rancher"]["services"].get("version").is_none());
        }
    }

    #[test]
    fn gzip_of_each_form_is_decoded() {
        let cc = "#cloud-config\nhostname: gz\n";
        assert_eq!(
            decode("t", &gzip(cc.as_bytes())).unwrap(),
            Some(UserData::CloudConfig(cc.into()))
        );
        assert_eq!(
            decode("t", &gzip(b"#!/bin/sh\n")).unwrap(),
            Some(UserData::Script(b"#!/bin/sh\n".to_vec()))
        );
        assert!(matches!(
            decode("t", &gzip(b"#compose\na: {image: b}\n")).unwrap(),
            Some(UserData::CloudConfig(_))
        ));
    }

    #[test]
    fn anything_else_is_an_error_naming_the_source() {
        let err = decode("url:http://x/y", b"hello: world\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "user-data from url:http://x/y is not #cloud-config, a #! script or #compose \
             (it starts with \"hello: world\")"
        );
        assert!(decode("t", b"#cloud-configs\n").is_err());
        assert!(decode("t", b"\x1f\x8bnot really gzip").is_err());
    }

    #[test]
    fn empty_user_data_is_none() {
        assert_eq!(decode("t", b"").unwrap(), None);
        assert_eq!(decode("t", b" \n\n").unwrap(), None);
    }
}

//! `rancher.sysctl`: kernel parameters written to /proc/sys.

use std::io::Write;
use std::path::{Path, PathBuf};

use config::Value;

use crate::error::{Error, Result};

/// The file under `proc_sys` of a key: dots become slashes
/// (`net.ipv4.ip_forward` is `net/ipv4/ip_forward`). A key that already holds
/// a slash is taken as a path, as sysctl(8) does, so a part that itself holds
/// a dot (`net/ipv4/conf/eth0.100/rp_filter`) can be named.
pub fn key_path(proc_sys: &Path, key: &str) -> Result<PathBuf> {
    let bad = || Error::SysctlKey(key.to_owned());
    let sep = if key.contains('/') { '/' } else { '.' };
    let parts: Vec<&str> = key.split(sep).collect();
    if key.is_empty()
        || parts
            .iter()
            .any(|p| p.is_empty() || *p == "." || *p == ".." || p.contains('\0'))
    {
        return Err(bad());
    }
    let mut path = proc_sys.to_owned();
    path.extend(parts);
    Ok(path)
}

/// The text written for a value: a scalar as is, a list joined by spaces
/// (`net.ipv4.ip_local_port_range: [1024, 65000]`).
pub fn value_text(key: &str, value: &Value) -> Result<String> {
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_owned()),
        _ => None,
    };
    let bad = || Error::SysctlValue {
        key: key.to_owned(),
        kind: config::kind(value),
    };
    match value {
        Value::Sequence(items) => items
            .iter()
            .map(|v| scalar(v).ok_or_else(bad))
            .collect::<Result<Vec<_>>>()
            .map(|v| v.join(" ")),
        v => scalar(v).ok_or_else(bad),
    }
}

/// Writes one parameter. The file must exist: an unknown key is an error, not
/// a new file.
pub fn apply(proc_sys: &Path, key: &str, value: &Value) -> Result<()> {
    let path = key_path(proc_sys, key)?;
    let text = value_text(key, value)?;
    let io = |what| {
        let path = path.clone();
        move |source| Error::Io { what, path, source }
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .map_err(io("failed to open"))?;
    file.write_all(format!("{text}\n").as_bytes())
        .map_err(io("failed to write"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_paths() {
        let p = Path::new("/proc/sys");
        assert_eq!(
            key_path(p, "net.ipv4.ip_forward").unwrap(),
            Path::new("/proc/sys/net/ipv4/ip_forward")
        );
        assert_eq!(
            key_path(p, "net/ipv4/conf/eth0.100/rp_filter").unwrap(),
            Path::new("/proc/sys/net/ipv4/conf/eth0.100/rp_filter")
        );
        for bad in [
            "",
            "net..ipv4",
            ".vm",
            "vm.",
            "net/../../etc/passwd",
            "/vm/x",
        ] {
            assert!(key_path(p, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_become_text() {
        let v = |s: &str| serde_norway::from_str::<Value>(s).unwrap();
        assert_eq!(value_text("k", &v("1")).unwrap(), "1");
        assert_eq!(value_text("k", &v("true")).unwrap(), "1");
        assert_eq!(value_text("k", &v("'a b'")).unwrap(), "a b");
        assert_eq!(value_text("k", &v("[1024, 65000]")).unwrap(), "1024 65000");
        let e = value_text("k", &v("{a: 1}")).unwrap_err().to_string();
        assert!(e.starts_with("value of k must be"), "{e}");
        assert!(value_text("k", &v("~")).is_err());
    }
}

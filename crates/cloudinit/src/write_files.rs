//! `write_files`: decoding, owners, permissions and atomic writes; and the
//! entries for containers other than the console, which PID 1 puts into
//! those containers before they start ([`for_containers`]).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use base64::Engine as _;
use config::model::WriteFile;
use config::{Config, Value};

use crate::error::{Error, Result};

/// The mode of a file whose entry gives no `permissions`.
pub const DEFAULT_MODE: u32 = 0o644;

/// Decodes `content` as `encoding` says (none, `b64`/`base64`, `gz`/`gzip`,
/// or base64 then gzip: `gz+b64`, `gzip+base64`, `gz+base64`, `gzip+b64`).
pub fn decode(content: &str, encoding: Option<&str>) -> Result<Vec<u8>> {
    let encoding = encoding.map(|e| e.trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("") | Some("text/plain") => Ok(content.as_bytes().to_vec()),
        Some("b64" | "base64") => base64_decode(content),
        Some("gz" | "gzip") => gunzip(content.as_bytes()),
        Some("gz+b64" | "gz+base64" | "gzip+b64" | "gzip+base64") => {
            gunzip(&base64_decode(content)?)
        }
        Some(other) => Err(Error::UnknownEncoding(other.to_owned())),
    }
}

/// Base64 with the line breaks and spaces that YAML block scalars leave in.
fn base64_decode(content: &str) -> Result<Vec<u8>> {
    let compact: String = content.split_ascii_whitespace().collect();
    Ok(base64::engine::general_purpose::STANDARD.decode(compact)?)
}

fn gunzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data)
        .read_to_end(&mut out)
        .map_err(Error::Gzip)?;
    Ok(out)
}

/// Parses an octal mode: `0644`, `644`, `0o644`; at most 0o7777.
pub fn parse_mode(text: &str) -> Result<u32> {
    let t = text.trim();
    let digits = t.strip_prefix("0o").unwrap_or(t);
    if digits.is_empty() || digits.len() > 5 {
        return Err(Error::Permissions(text.to_owned()));
    }
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o7777 => Ok(mode),
        _ => Err(Error::Permissions(text.to_owned())),
    }
}

/// A numeric owner: user id and group id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// Resolves `user`, `user:group` or `uid:gid` (names or numbers, mixed too)
/// against the passwd and group files' text. A user alone takes the user's
/// primary group.
///
/// Hand-written rather than through nix's `User::from_name`: that asks the
/// NSS of the running process, while names must be resolved in the root's
/// own /etc files (the console's, or a test root).
pub fn parse_owner(owner: &str, passwd: &str, group: &str) -> Result<Owner> {
    let bad = |reason: String| Error::Owner {
        owner: owner.to_owned(),
        reason,
    };
    let (user, grp) = match owner.trim().split_once(':') {
        Some((u, g)) => (u.trim(), Some(g.trim())),
        None => (owner.trim(), None),
    };
    if user.is_empty() {
        return Err(bad("no user".to_owned()));
    }
    let entry = |text: &str, name: &str| -> Option<Vec<String>> {
        text.lines()
            .map(|l| l.split(':').map(str::to_owned).collect::<Vec<_>>())
            .find(|f| f.first().map(String::as_str) == Some(name))
    };
    let (uid, primary) = match user.parse::<u32>() {
        Ok(uid) => (uid, None),
        Err(_) => {
            let f =
                entry(passwd, user).ok_or_else(|| bad(format!("no user {user} in /etc/passwd")))?;
            let uid = f.get(2).and_then(|s| s.parse().ok());
            let gid = f.get(3).and_then(|s| s.parse().ok());
            match uid {
                Some(uid) => (uid, gid),
                None => return Err(bad(format!("bad /etc/passwd entry for {user}"))),
            }
        }
    };
    let gid = match grp {
        Some("") => return Err(bad("empty group".to_owned())),
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => entry(group, g)
                .and_then(|f| f.get(2).and_then(|s| s.parse().ok()))
                .ok_or_else(|| bad(format!("no group {g} in /etc/group")))?,
        },
        // uid alone: the group of the same number, as chown(1) does not
        // change it but a file of a new user usually wants it.
        None => primary.unwrap_or(uid),
    };
    Ok(Owner { uid, gid })
}

/// Reads one `write_files` entry from its YAML value. A permissions number
/// (YAML `0644` read as the integer 644) is taken digit for digit as octal.
pub fn entry_from_value(value: &Value) -> Result<WriteFile> {
    let mut value = value.clone();
    if let Value::Mapping(map) = &mut value {
        if let Some(Value::Number(n)) = map.get("permissions") {
            let text = n.to_string();
            map.insert(Value::from("permissions"), Value::String(text));
        }
    }
    serde_norway::from_value(value).map_err(|e| Error::Entry(e.to_string()))
}

/// Writes one entry under `root`: decodes, creates the parent directories,
/// writes it with its mode and owner through `atomic_file` (a temporary
/// file beside the target, synced and renamed into place: a reader never
/// sees half a file).
pub fn write_entry(root: &Path, entry: &WriteFile) -> Result<()> {
    check_path(&entry.path)?;
    let data = decode(&entry.content, entry.encoding.as_deref())?;
    let mode = match entry.permissions.as_deref() {
        Some(p) if !p.trim().is_empty() => parse_mode(p)?,
        _ => DEFAULT_MODE,
    };
    let owner = match entry.owner.as_deref() {
        Some(o) if !o.trim().is_empty() => {
            let passwd = read_or_empty(&root.join("etc/passwd"))?;
            let group = read_or_empty(&root.join("etc/group"))?;
            Some(parse_owner(o, &passwd, &group)?)
        }
        _ => None,
    };
    let target = root.join(entry.path.trim_start_matches('/'));
    let parent = target
        .parent()
        .ok_or_else(|| Error::Path(entry.path.clone()))?;
    let io = |what, path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io { what, path, source }
    };
    std::fs::create_dir_all(parent).map_err(io("failed to create directory", parent))?;
    let mut options = atomic_file::Options::new().mode(mode);
    if let Some(o) = owner {
        options = options.owner(o.uid, o.gid);
    }
    options
        .write(&target, &data)
        .map_err(io("failed to write", &target))?;
    Ok(())
}

/// A target path must be absolute, name a file (not end in `/`) and stay
/// under the root (no `..`).
pub fn check_path(path: &str) -> Result<()> {
    use std::path::Component;
    let bad = || Error::Path(path.to_owned());
    if !path.starts_with('/') || path.ends_with('/') || path.contains('\0') {
        return Err(bad());
    }
    let mut named = false;
    for c in Path::new(path).components() {
        match c {
            Component::RootDir => {}
            Component::Normal(_) => named = true,
            _ => return Err(bad()),
        }
    }
    if named {
        Ok(())
    } else {
        Err(bad())
    }
}

/// The container a `write_files` entry is for: `None` for the console
/// (no `container:`, an empty one, or `console`).
pub fn other_container(entry: &WriteFile) -> Option<&str> {
    match entry.container.as_deref().map(str::trim) {
        None | Some("") | Some("console") => None,
        Some(other) => Some(other),
    }
}

/// A `write_files` file for a container other than the console, decoded
/// and ready to be put into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerFile {
    /// Absolute path in the container (checked by [`check_path`]).
    pub path: String,
    /// Permission bits (`permissions`, [`DEFAULT_MODE`] when unset).
    pub mode: u32,
    /// Numeric owner (`owner`; root when unset).
    pub uid: u32,
    pub gid: u32,
    /// The decoded content.
    pub content: Vec<u8>,
}

/// The files of each container, by container (service) name, in the order
/// of `write_files`.
pub type ServiceFiles = BTreeMap<String, Vec<ContainerFile>>;

/// Every `write_files` entry whose `container:` names a container other
/// than the console, decoded, by container; and the entries that could not
/// be used, each as `write_files[N] PATH: why` (the others are still
/// there). The console writes its own entries ([`crate::console`]); these
/// are PID 1's, which puts them into each container before it starts.
///
/// Owners must be numeric (`uid`, `uid:gid`) or `root`: a name would have
/// to be looked up in the container's own /etc/passwd, which is not read.
pub fn for_containers(config: &Config) -> (ServiceFiles, Vec<crate::Failure>) {
    let mut files = ServiceFiles::new();
    let mut failures = Vec::new();
    let entries = match config.get("write_files") {
        Ok(Some(Value::Sequence(entries))) => entries,
        // Not a list: the console reports it.
        _ => return (files, failures),
    };
    for (i, value) in entries.iter().enumerate() {
        let entry = match entry_from_value(value) {
            Ok(e) => e,
            Err(e) => {
                // Which container it was for is unknown; say so only if
                // it names one.
                if let Value::Mapping(map) = value {
                    if map
                        .get("container")
                        .and_then(Value::as_str)
                        .is_some_and(|c| !matches!(c.trim(), "" | "console"))
                    {
                        failures.push(format!("write_files[{i}]: {e}"));
                    }
                }
                continue;
            }
        };
        let Some(container) = other_container(&entry) else {
            continue;
        };
        match container_file(&entry, container) {
            Ok(file) => files.entry(container.to_owned()).or_default().push(file),
            Err(e) => failures.push(format!("write_files[{i}] {}: {e}", entry.path)),
        }
    }
    (files, failures)
}

/// One entry for `container`, decoded, its owner numeric.
fn container_file(entry: &WriteFile, container: &str) -> Result<ContainerFile> {
    check_path(&entry.path)?;
    let content = decode(&entry.content, entry.encoding.as_deref())?;
    let mode = match entry.permissions.as_deref() {
        Some(p) if !p.trim().is_empty() => parse_mode(p)?,
        _ => DEFAULT_MODE,
    };
    let owner = match entry.owner.as_deref() {
        Some(o) if !o.trim().is_empty() => {
            // Only root has a name known without the container's files.
            parse_owner(o, "root:x:0:0:root:/root:/bin/sh\n", "root:x:0:\n").map_err(|_| {
                Error::Owner {
                    owner: o.to_owned(),
                    reason: format!(
                        "for container {container}, only numeric ids (uid, uid:gid) and root \
                         can be used (its /etc/passwd is not read)"
                    ),
                }
            })?
        }
        _ => Owner { uid: 0, gid: 0 },
    };
    Ok(ContainerFile {
        path: entry.path.clone(),
        mode,
        uid: owner.uid,
        gid: owner.gid,
        content,
    })
}

fn read_or_empty(path: &Path) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(Error::Io {
            what: "failed to read",
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn decodes_each_encoding() {
        let b64 = base64::engine::general_purpose::STANDARD;
        assert_eq!(decode("hi\n", None).unwrap(), b"hi\n");
        assert_eq!(decode("hi", Some("")).unwrap(), b"hi");
        for enc in ["b64", "base64", "BASE64"] {
            assert_eq!(decode("aGVs\nbG8=\n", Some(enc)).unwrap(), b"hello");
        }
        let packed = b64.encode(gz(b"zipped"));
        for enc in ["gz+b64", "gzip+base64", "gz+base64", "gzip+b64"] {
            assert_eq!(decode(&packed, Some(enc)).unwrap(), b"zipped", "{enc}");
        }
        // Raw gzip in a string only works for ASCII-safe bytes; check the
        // error path and that the decoder is used.
        for enc in ["gz", "gzip"] {
            assert!(matches!(decode("not gzip", Some(enc)), Err(Error::Gzip(_))));
        }
        assert!(matches!(decode("!!!", Some("b64")), Err(Error::Base64(_))));
        assert!(matches!(
            decode("x", Some("rot13")),
            Err(Error::UnknownEncoding(e)) if e == "rot13"
        ));
    }

    #[test]
    fn checks_paths() {
        for good in ["/etc/motd", "/a", "//etc//x", "/opt/./x"] {
            assert!(check_path(good).is_ok(), "{good}");
        }
        for bad in ["", "/", "etc/motd", "/etc/", "/../etc/x", "/etc/../../x"] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_modes() {
        assert_eq!(parse_mode("0644").unwrap(), 0o644);
        assert_eq!(parse_mode("755").unwrap(), 0o755);
        assert_eq!(parse_mode("0o600").unwrap(), 0o600);
        assert_eq!(parse_mode("04755").unwrap(), 0o4755);
        for bad in ["", "0x1ff", "999", "rw-r--r--", "017777"] {
            assert!(parse_mode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resolves_owners_from_the_roots_files() {
        let passwd =
            "root:x:0:0:root:/root:/bin/sh\nrancher:x:1100:1200::/home/rancher:/bin/bash\n";
        let group = "root:x:0:\ndocker:x:999:rancher\nrancher:x:1200:\n";
        let p = |o| parse_owner(o, passwd, group);
        assert_eq!(
            p("rancher").unwrap(),
            Owner {
                uid: 1100,
                gid: 1200
            }
        );
        assert_eq!(
            p("rancher:docker").unwrap(),
            Owner {
                uid: 1100,
                gid: 999
            }
        );
        assert_eq!(p("0:999").unwrap(), Owner { uid: 0, gid: 999 });
        assert_eq!(
            p("1000:rancher").unwrap(),
            Owner {
                uid: 1000,
                gid: 1200
            }
        );
        assert_eq!(p("root:root").unwrap(), Owner { uid: 0, gid: 0 });
        let e = p("nobody:root").unwrap_err().to_string();
        assert!(e.contains("no user nobody"), "{e}");
        let e = p("rancher:wheel").unwrap_err().to_string();
        assert!(e.contains("no group wheel"), "{e}");
        assert!(p(":root").is_err());
        assert!(p("rancher:").is_err());
    }

    #[test]
    fn entries_for_other_containers_are_decoded_by_container() {
        let yaml = r#"
write_files:
  - {path: /etc/console-file, content: c}
  - {path: /etc/console-too, content: c, container: console}
  - path: /etc/ntp.conf
    container: ntp
    content: "server pool\n"
  - path: /opt/run.sh
    container: ntp
    permissions: "0750"
    owner: "1000:50"
    encoding: b64
    content: aGk=
  - {path: /etc/x, container: docker, owner: root, content: x}
  - {path: /etc/y, container: docker, owner: "33", content: y}
  - {path: /etc/named, container: docker, owner: rancher, content: n}
  - {path: /etc/bad, container: docker, encoding: b64, content: "!!"}
  - {path: relative, container: docker, content: r}
  - {path: /etc/mode, container: docker, permissions: "999", content: m}
"#;
        let config = Config::parse(yaml, Path::new("test.yml")).unwrap();
        let (files, failures) = for_containers(&config);
        let file = |path: &str, mode, uid, gid, content: &[u8]| ContainerFile {
            path: path.into(),
            mode,
            uid,
            gid,
            content: content.to_vec(),
        };
        assert_eq!(files.keys().collect::<Vec<_>>(), ["docker", "ntp"]);
        assert_eq!(
            files["ntp"],
            [
                file("/etc/ntp.conf", 0o644, 0, 0, b"server pool\n"),
                file("/opt/run.sh", 0o750, 1000, 50, b"hi"),
            ]
        );
        assert_eq!(
            files["docker"],
            [
                file("/etc/x", 0o644, 0, 0, b"x"),
                file("/etc/y", 0o644, 33, 33, b"y"),
            ]
        );
        assert_eq!(failures.len(), 4, "{failures:#?}");
        assert!(
            failures[0].starts_with(
                "write_files[6] /etc/named: owner \"rancher\": for container docker, only numeric ids"
            ),
            "{}",
            failures[0]
        );
        assert!(failures[1].starts_with("write_files[7] /etc/bad: content is not valid base64"));
        assert!(failures[2].starts_with("write_files[8] relative: path"));
        assert!(failures[3].starts_with("write_files[9] /etc/mode: permissions"));
    }

    #[test]
    fn numeric_permissions_read_as_octal_digits() {
        let v: Value = serde_norway::from_str("path: /x\npermissions: 0600\n").unwrap();
        let e = entry_from_value(&v).unwrap();
        assert_eq!(
            parse_mode(e.permissions.as_deref().unwrap()).unwrap(),
            0o600
        );
    }
}

//! Resolving Docker's `User` string against the container's own
//! `/etc/passwd` and `/etc/group`.
//!
//! The rules are those of Docker (moby/sys/user `GetExecUser`):
//!
//! - `""` means uid 0; `"name"` and `"uid"` select a passwd entry by name or by
//!   uid; a `":group"` suffix selects the primary group by name or gid.
//! - A numeric uid or gid needs no entry (and no file at all); a name that is
//!   not found is an error.
//! - The primary gid and the home directory come from the passwd entry
//!   (defaults: gid 0, home `/`).
//! - Supplementary groups are the groups of `/etc/group` that list the user as
//!   a member, unless a group was given explicitly.
//!
//! The files are read with `pathrs` inside the container's root, so that a
//! symlink in the image (`/etc/passwd -> /host/...`) cannot make the runtime
//! read a file of the host.

use crate::error::{Error, Result};
use crate::inroot::read_in_root;
use std::path::Path;

/// The identity a container process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// Home directory from passwd ("/" without an entry), for `HOME`.
    pub home: String,
}

impl Default for ExecUser {
    fn default() -> Self {
        ExecUser {
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
            home: "/".to_string(),
        }
    }
}

struct PasswdEntry<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

struct GroupEntry<'a> {
    name: &'a str,
    gid: u32,
    members: Vec<&'a str>,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = PasswdEntry<'_>> {
    text.lines().filter_map(|line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let f: Vec<&str> = line.split(':').collect();
        Some(PasswdEntry {
            name: f.first()?,
            uid: f.get(2)?.parse().ok()?,
            gid: f.get(3)?.parse().ok()?,
            home: f.get(5).copied().unwrap_or(""),
        })
    })
}

fn group_entries(text: &str) -> impl Iterator<Item = GroupEntry<'_>> {
    text.lines().filter_map(|line| {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let f: Vec<&str> = line.split(':').collect();
        Some(GroupEntry {
            name: f.first()?,
            gid: f.get(2)?.parse().ok()?,
            members: f
                .get(3)
                .map(|m| {
                    m.split(',')
                        .map(str::trim)
                        .filter(|m| !m.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        })
    })
}

/// Resolves `spec` with the given contents of /etc/passwd and /etc/group
/// (None: the file does not exist).
pub fn resolve(spec: &str, passwd: Option<&str>, group: Option<&str>) -> Result<ExecUser> {
    let (user_arg, group_arg) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if group_arg == Some("") {
        return Err(Error::InvalidUser {
            user: spec.to_string(),
            reason: "empty group".to_string(),
        });
    }
    let mut out = ExecUser::default();
    let uid_arg: Option<u32> = if user_arg.is_empty() {
        Some(0)
    } else {
        user_arg.parse().ok()
    };

    let entry = passwd.and_then(|text| {
        passwd_entries(text).find(|e| match uid_arg {
            Some(uid) => e.uid == uid,
            None => e.name == user_arg,
        })
    });
    let mut matched_name = None;
    match (entry, uid_arg) {
        (Some(e), _) => {
            out.uid = e.uid;
            out.gid = e.gid;
            if !e.home.is_empty() {
                out.home = e.home.to_string();
            }
            matched_name = Some(e.name);
        }
        (None, Some(uid)) => out.uid = uid,
        (None, None) => return Err(Error::UnknownUser(user_arg.to_string())),
    }

    match group_arg {
        Some(group_arg) => {
            let gid_arg: Option<u32> = group_arg.parse().ok();
            let found = group.and_then(|text| {
                group_entries(text).find(|g| match gid_arg {
                    Some(gid) => g.gid == gid,
                    None => g.name == group_arg,
                })
            });
            out.gid = match (found, gid_arg) {
                (Some(g), _) => g.gid,
                (None, Some(gid)) => gid,
                (None, None) => return Err(Error::UnknownGroup(group_arg.to_string())),
            };
        }
        None => {
            if let (Some(name), Some(text)) = (matched_name, group) {
                for g in group_entries(text) {
                    if g.members.contains(&name) && !out.additional_gids.contains(&g.gid) {
                        out.additional_gids.push(g.gid);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Resolves `spec` against `/etc/passwd` and `/etc/group` of the container
/// root filesystem mounted at `root`. Files are only read when a name must be
/// looked up or a home directory found.
pub fn resolve_in_root(root: &Path, spec: &str) -> Result<ExecUser> {
    let passwd = read_in_root(root, "etc/passwd")?;
    let group = read_in_root(root, "etc/group")?;
    resolve(spec, passwd.as_deref(), group.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
user:x:1000:1000:A User:/home/user:/bin/sh
# comment
broken line
";
    const GROUP: &str = "\
root:x:0:
wheel:x:10:root,user
audio:x:29:user
users:x:100:
user:x:1000:
";

    fn user(uid: u32, gid: u32, extra: &[u32], home: &str) -> ExecUser {
        ExecUser {
            uid,
            gid,
            additional_gids: extra.to_vec(),
            home: home.to_string(),
        }
    }

    #[test]
    fn resolves_like_docker() {
        let cases: &[(&str, ExecUser)] = &[
            ("", user(0, 0, &[10], "/root")),
            ("root", user(0, 0, &[10], "/root")),
            ("0", user(0, 0, &[10], "/root")),
            ("user", user(1000, 1000, &[10, 29], "/home/user")),
            ("1000", user(1000, 1000, &[10, 29], "/home/user")),
            ("user:users", user(1000, 100, &[], "/home/user")),
            ("user:100", user(1000, 100, &[], "/home/user")),
            ("1000:4242", user(1000, 4242, &[], "/home/user")),
            ("4242", user(4242, 0, &[], "/")),
            ("4242:audio", user(4242, 29, &[], "/")),
            ("daemon", user(1, 1, &[], "/usr/sbin")),
        ];
        for (spec, want) in cases {
            let got = resolve(spec, Some(PASSWD), Some(GROUP))
                .unwrap_or_else(|e| panic!("{spec:?}: {e}"));
            assert_eq!(&got, want, "user {spec:?}");
        }
    }

    #[test]
    fn numeric_ids_need_no_files() {
        assert_eq!(resolve("", None, None).unwrap(), user(0, 0, &[], "/"));
        assert_eq!(
            resolve("123:456", None, None).unwrap(),
            user(123, 456, &[], "/")
        );
    }

    #[test]
    fn unknown_names_are_clear_errors() {
        let e = resolve("nobody", Some(PASSWD), Some(GROUP)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unable to find user nobody: no matching entries in passwd file"
        );
        let e = resolve("user:nogroup", Some(PASSWD), Some(GROUP)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unable to find group nogroup: no matching entries in group file"
        );
        assert!(resolve("user", None, None).is_err());
        assert!(resolve("user:", Some(PASSWD), Some(GROUP)).is_err());
    }

    #[test]
    fn files_are_read_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("passwd"), "evil:x:7:7::/evil:/bin/sh\n").unwrap();
        std::fs::create_dir(root.path().join("etc")).unwrap();
        // An absolute symlink must resolve inside the root, not on the host.
        std::os::unix::fs::symlink(
            outside.path().join("passwd"),
            root.path().join("etc/passwd"),
        )
        .unwrap();
        assert_eq!(read_in_root(root.path(), "etc/passwd").unwrap(), None);
        assert!(resolve_in_root(root.path(), "evil").is_err());

        std::fs::remove_file(root.path().join("etc/passwd")).unwrap();
        std::fs::write(root.path().join("etc/passwd"), PASSWD).unwrap();
        std::fs::write(root.path().join("etc/group"), GROUP).unwrap();
        assert_eq!(
            resolve_in_root(root.path(), "user").unwrap(),
            user(1000, 1000, &[10, 29], "/home/user")
        );
    }
}

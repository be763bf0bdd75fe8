//! The `rancher` user: /etc/passwd, group, shadow and gshadow entries, the
//! home directory, sudo, and the password hash.
//!
//! The databases are edited as text, line by line, rather than with
//! `useradd`/`usermod`: the busybox console has no shadow-utils, busybox's
//! `adduser` cannot set a fixed gid on an existing group nor replace a
//! line, and a pure function over the text can be tested and re-run
//! without changing files that are already right.

use std::path::Path;

use sha_crypt::{PasswordHasher, PasswordVerifier, ShaCrypt};

use crate::error::{Error, Result};
use crate::fsutil::{self, Attrs};

/// The console user's name.
pub const USER: &str = "rancher";
/// Its uid and gid (RancherOS's).
pub const UID: u32 = 1100;
/// The `docker` group's gid (RancherOS's): the User Docker socket belongs
/// to it.
pub const DOCKER_GID: u32 = 233;
/// Debian's gid of `sudo`, used only when the image has neither `sudo` nor
/// `wheel`.
const SUDO_GID: u32 = 27;
/// The home directory.
pub const HOME: &str = "/home/rancher";
/// The sudoers drop-in.
pub const SUDOERS: &str = "/etc/sudoers.d/rancher";
/// What the sudoers drop-in says.
pub const SUDOERS_LINE: &str = "rancher ALL=(ALL) NOPASSWD: ALL\n";

/// The shadow password field of a locked account: no password matches it.
/// `*` rather than `!`: sshd without PAM refuses even key logins to
/// accounts whose field starts with `!`.
pub const LOCKED: &str = "*";

/// Rewrites the entry of `name` in a colon-separated database (passwd,
/// group, shadow, gshadow) to `f(old entry)`, or appends `f(None)`. Every
/// other line is kept as it was.
pub fn upsert(text: &str, name: &str, f: impl FnOnce(Option<&str>) -> String) -> String {
    let mut f = Some(f);
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.lines() {
        let is_it = line.split(':').next() == Some(name);
        match (is_it, f.take_if(|_| is_it)) {
            (true, Some(f)) => out.push_str(&f(Some(line))),
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    if let Some(f) = f {
        out.push_str(&f(None));
        out.push('\n');
    }
    out
}

/// The entry of `name`, if any.
pub fn entry<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find(|l| l.split(':').next() == Some(name))
}

/// The fields of an entry, padded with empty fields to `n`.
fn fields(line: &str, n: usize) -> Vec<String> {
    let mut f: Vec<String> = line.split(':').map(str::to_owned).collect();
    if f.len() < n {
        f.resize(n, String::new());
    }
    f
}

/// `line` with `user` added to the comma-separated member list in field
/// `index` (group: 3, gshadow: 3), unless already there.
fn with_member(line: &str, index: usize, n: usize, user: &str) -> String {
    let mut f = fields(line, n);
    let mut members: Vec<&str> = f[index].split(',').filter(|m| !m.is_empty()).collect();
    if !members.contains(&user) {
        members.push(user);
    }
    f[index] = members.join(",");
    f.join(":")
}

/// The passwd file with the rancher user.
pub fn passwd(text: &str, shell: &str) -> String {
    upsert(text, USER, |_| {
        format!("{USER}:x:{UID}:{UID}:{USER}:{HOME}:{shell}")
    })
}

/// Which group gives administrator rights in an image: `sudo` (Debian) or
/// `wheel`; `None` when the image has neither (then `sudo` is made).
pub fn admin_group(group_text: &str) -> Option<&'static str> {
    ["sudo", "wheel"]
        .into_iter()
        .find(|g| entry(group_text, g).is_some())
}

/// The group file with `rancher` (gid 1100), `docker` (gid 233) and the
/// administrator group, rancher a member of the last two; and the name of
/// the group of gid 233. A `docker` group of another gid gets 233: the
/// socket's group must be the same number in every container. If the image
/// already gave gid 233 to a group of another name, rancher joins that
/// group instead (same number, so the same access to the socket) and no
/// `docker` group is made.
pub fn group(text: &str) -> Result<(String, String), String> {
    if let Some(other) = entry_by_gid(text, UID).filter(|l| fields(l, 4)[0] != USER) {
        return Err(format!(
            "gid {UID} is taken by group {:?}, wanted for {USER}",
            fields(other, 4)[0]
        ));
    }
    let mut text = upsert(text, USER, |old| {
        let members = old.map(|l| fields(l, 4)[3].clone()).unwrap_or_default();
        format!("{USER}:x:{UID}:{members}")
    });
    let docker = entry_by_gid(&text, DOCKER_GID)
        .map(|l| fields(l, 4)[0].clone())
        .unwrap_or_else(|| "docker".to_owned());
    text = upsert(&text, &docker, |old| {
        let mut f = fields(old.unwrap_or("docker:x::"), 4);
        f[2] = DOCKER_GID.to_string();
        with_member(&f.join(":"), 3, 4, USER)
    });
    let admin = admin_group(&text);
    let sudo_gid_free = entry_by_gid(&text, SUDO_GID).is_none();
    text = match admin {
        Some(g) => upsert(&text, g, |old| with_member(old.unwrap_or(""), 3, 4, USER)),
        None if sudo_gid_free => upsert(&text, "sudo", |_| format!("sudo:x:{SUDO_GID}:{USER}")),
        None => text,
    };
    Ok((text, docker))
}

fn entry_by_gid(text: &str, gid: u32) -> Option<&str> {
    text.lines().find(|l| fields(l, 4)[2] == gid.to_string())
}

/// The gshadow file (if the image has one) matching [`group`].
pub fn gshadow(text: &str, docker: &str, admin: &str) -> String {
    let mut text = upsert(text, USER, |old| {
        old.map(str::to_owned).unwrap_or(format!("{USER}:!::"))
    });
    text = upsert(&text, docker, |old| {
        with_member(old.unwrap_or(&format!("{docker}:!::")), 3, 4, USER)
    });
    upsert(&text, admin, |old| {
        with_member(old.unwrap_or(&format!("{admin}:!::")), 3, 4, USER)
    })
}

/// The shadow file with the rancher user's password field set to
/// `password_field`; the aging fields of an existing entry are kept.
pub fn shadow(text: &str, password_field: &str) -> String {
    upsert(text, USER, |old| match old {
        Some(line) => {
            let mut f = fields(line, 9);
            f[1] = password_field.to_owned();
            f.join(":")
        }
        // No last-change date: aging is off, and the file does not
        // depend on the day it was written.
        None => format!("{USER}:{password_field}::0:99999:7:::"),
    })
}

/// The shadow password field for `password`: [`LOCKED`] when unset or
/// empty; otherwise `current` when it is already a hash of this password
/// (so a restart does not rewrite the file with a new salt), else a new
/// SHA-512 crypt hash.
pub fn password_field(current: Option<&str>, password: Option<&str>) -> Result<String> {
    let Some(password) = password.filter(|p| !p.is_empty()) else {
        return Ok(LOCKED.to_owned());
    };
    if let Some(current) = current {
        if current.starts_with("$6$") && verify(password, current) {
            return Ok(current.to_owned());
        }
    }
    hash(password)
}

/// A SHA-512 crypt hash (`$6$...`) of `password` with a random salt, as
/// glibc's crypt(3), busybox and sshd read it.
pub fn hash(password: &str) -> Result<String> {
    let salt: [u8; 12] = rand::random();
    ShaCrypt::SHA512
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Hash(e.to_string()))
}

/// Whether `hash` (crypt format) is a hash of `password`.
pub fn verify(password: &str, hash: &str) -> bool {
    ShaCrypt::SHA512
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// What [`ensure_user`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserReport {
    pub shell: String,
    pub home_created: bool,
    pub password_set: bool,
    pub admin_group: String,
    /// The group of gid 233 (`docker` unless the image named it otherwise).
    pub docker_group: String,
}

/// Creates or corrects the rancher user, its groups, home directory and
/// sudo rights under `root`.
pub fn ensure_user(root: &config::Root, password: Option<&str>) -> Result<UserReport> {
    let shell = if root.join("/bin/bash").exists() {
        "/bin/bash"
    } else {
        "/bin/sh"
    };

    let path = root.join("/etc/passwd");
    let text = fsutil::read_optional(&path)?.unwrap_or_default();
    fsutil::write_file(
        &path,
        passwd(&text, shell).as_bytes(),
        Attrs::existing_or(&path, Attrs::root(0o644)),
    )?;

    let path = root.join("/etc/group");
    let text = fsutil::read_optional(&path)?.unwrap_or_default();
    let (new_group, docker) = group(&text).map_err(|reason| Error::Conflict {
        path: path.clone(),
        reason,
    })?;
    let admin = admin_group(&new_group).unwrap_or("sudo").to_owned();
    fsutil::write_file(
        &path,
        new_group.as_bytes(),
        Attrs::existing_or(&path, Attrs::root(0o644)),
    )?;

    let path = root.join("/etc/gshadow");
    if let Some(text) = fsutil::read_optional(&path)? {
        fsutil::write_file(
            &path,
            gshadow(&text, &docker, &admin).as_bytes(),
            Attrs::existing_or(&path, Attrs::root(0o640)),
        )?;
    }

    let path = root.join("/etc/shadow");
    let text = fsutil::read_optional(&path)?.unwrap_or_default();
    let current = entry(&text, USER).map(|l| fields(l, 9)[1].clone());
    let field = password_field(current.as_deref(), password)?;
    fsutil::write_file(
        &path,
        shadow(&text, &field).as_bytes(),
        Attrs::existing_or(&path, Attrs::root(0o640)),
    )?;

    let home = root.join(HOME);
    let home_created = !home.exists();
    let user = Attrs {
        mode: 0o755,
        uid: UID,
        gid: UID,
    };
    if home_created {
        fsutil::ensure_dir(&home, user)?;
        copy_skel(&root.join("/etc/skel"), &home)?;
    } else {
        // The home lives on the state disk and is the user's: only the
        // directory itself is put right (sshd refuses keys below a home
        // that others can write), never its contents.
        let meta = std::fs::metadata(&home).map_err(|source| Error::Read {
            path: home.clone(),
            source,
        })?;
        use std::os::unix::fs::MetadataExt;
        let mode = meta.mode() & 0o7777;
        fsutil::ensure_dir(
            &home,
            Attrs {
                mode: mode & !0o022,
                ..user
            },
        )?;
    }

    fsutil::write_file(
        &root.join(SUDOERS),
        SUDOERS_LINE.as_bytes(),
        Attrs::root(0o440),
    )?;

    Ok(UserReport {
        shell: shell.to_owned(),
        home_created,
        password_set: field != LOCKED,
        admin_group: admin,
        docker_group: docker,
    })
}

/// Copies the regular files at the top of /etc/skel (.profile, .bashrc,
/// ...) into a new home.
fn copy_skel(skel: &Path, home: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(skel) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let from = entry.path();
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let content = std::fs::read(&from).map_err(|source| Error::Read {
            path: from.clone(),
            source,
        })?;
        fsutil::write_file(
            &home.join(entry.file_name()),
            &content,
            Attrs {
                mode: 0o644,
                uid: UID,
                gid: UID,
            },
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_replaces_only_the_named_entry_and_appends_when_missing() {
        let text = "root:x:0:0\nrancherx:x:5:5\n";
        let out = upsert(text, "rancher", |old| {
            assert_eq!(old, None);
            "rancher:new".into()
        });
        assert_eq!(out, "root:x:0:0\nrancherx:x:5:5\nrancher:new\n");
        let again = upsert(&out, "rancher", |old| format!("{}!", old.unwrap()));
        assert_eq!(again, "root:x:0:0\nrancherx:x:5:5\nrancher:new!\n");
    }

    #[test]
    fn groups_get_rancher_as_member_once() {
        let text = "root:x:0:\nsudo:x:27:alice\n";
        let (out, docker) = group(text).unwrap();
        assert_eq!(docker, "docker");
        assert_eq!(
            out,
            "root:x:0:\nsudo:x:27:alice,rancher\nrancher:x:1100:\ndocker:x:233:rancher\n"
        );
        assert_eq!(group(&out).unwrap().0, out);
        // wheel when there is no sudo group; a docker group of another gid
        // gets 233 and keeps its members.
        let (out, _) = group("wheel:x:10:\ndocker:x:999:bob\n").unwrap();
        assert!(out.contains("wheel:x:10:rancher\n"), "{out}");
        assert!(out.contains("docker:x:233:bob,rancher\n"), "{out}");
        // gid 233 taken by another name: rancher joins it, no second group
        // of that number is made.
        let (out, docker) = group("dockremote:x:233:\n").unwrap();
        assert_eq!(docker, "dockremote");
        assert!(out.starts_with("dockremote:x:233:rancher\n"), "{out}");
        assert!(!out.contains("docker:"), "{out}");
        // rancher's own gid taken is an error, not a silent clash.
        let err = group("other:x:1100:\n").unwrap_err();
        assert!(
            err.contains("gid 1100 is taken by group \"other\""),
            "{err}"
        );
    }

    #[test]
    fn shadow_keeps_aging_fields_and_sets_the_password() {
        let text = "root:*:19675:0:99999:7:::\nrancher:!:19000:1:2:3:::\n";
        assert_eq!(
            shadow(text, "$6$x$y"),
            "root:*:19675:0:99999:7:::\nrancher:$6$x$y:19000:1:2:3:::\n"
        );
        assert_eq!(shadow("", "*"), "rancher:*::0:99999:7:::\n");
    }

    #[test]
    fn password_hashes_verify_and_are_kept_when_the_password_is_the_same() {
        let h = password_field(None, Some("s3cret")).unwrap();
        assert!(h.starts_with("$6$"), "{h}");
        assert!(verify("s3cret", &h));
        assert!(!verify("other", &h));
        assert_eq!(password_field(Some(&h), Some("s3cret")).unwrap(), h);
        let changed = password_field(Some(&h), Some("new")).unwrap();
        assert_ne!(changed, h);
        assert!(verify("new", &changed));
        assert_eq!(password_field(Some(&h), None).unwrap(), LOCKED);
        assert_eq!(password_field(None, Some("")).unwrap(), LOCKED);
    }

    #[test]
    fn hashes_match_glibc_crypt() {
        // Known answer from glibc: openssl passwd -6 -salt saltsalt password
        let known = "$6$saltsalt$qFmFH.bQmmtXzyBY0s9v7Oicd2z4XSIecDzlB5KiA2/jctKu9YterLp8wwnSq.qc.eoxqOmSuNp2xS0ktL3nh/";
        assert!(verify("password", known));
        assert!(!verify("Password", known));
    }
}

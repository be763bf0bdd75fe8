//! SSH: the rancher user's authorized keys, host keys kept across reboots,
//! and sshd's settings.

use std::path::Path;

use config::Root;

use crate::accounts::{HOME, UID};
use crate::error::{Error, Result};
use crate::fsutil::{self, Attrs};
use crate::settings::{is_host_key_name, Settings};

/// Where host keys are kept between boots (on the state disk).
pub const PERSISTED_KEYS: &str = "/var/lib/rancher/conf/ssh";
/// sshd's own directory.
pub const SSH_DIR: &str = "/etc/ssh";
/// The sshd_config drop-in the console writes.
pub const DROP_IN: &str = "/etc/ssh/sshd_config.d/oxos.conf";
/// sshd's privilege separation directory.
pub const PRIVSEP_DIR: &str = "/run/sshd";

const USER_ATTRS: Attrs = Attrs {
    mode: 0o700,
    uid: UID,
    gid: UID,
};

/// Adds the configured keys to ~rancher/.ssh/authorized_keys. Keys already
/// in the file, and keys added there by hand, are kept: the file lives on
/// the state disk. Returns how many keys were added.
pub fn authorize_keys(root: &Root, keys: &[String]) -> Result<usize> {
    let dir = root.join(HOME).join(".ssh");
    fsutil::ensure_dir(&dir, USER_ATTRS)?;
    let path = dir.join("authorized_keys");
    let mut text = fsutil::read_optional(&path)?.unwrap_or_default();
    let present: Vec<String> = text.lines().map(|l| l.trim().to_owned()).collect();
    let mut added = 0;
    // One entry could hold several lines; each is a key of its own.
    for key in keys.iter().flat_map(|k| k.lines()).map(str::trim) {
        if key.is_empty() || key.starts_with('#') || present.iter().any(|p| p == key) {
            continue;
        }
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(key);
        text.push('\n');
        added += 1;
    }
    fsutil::write_file(
        &path,
        text.as_bytes(),
        Attrs {
            mode: 0o600,
            ..USER_ATTRS
        },
    )?;
    Ok(added)
}

/// The host key type made before sshd starts: Ed25519, which every OpenSSH
/// client of the last ten years offers first.
pub const FIRST_KEY_TYPES: [&str; 1] = ["ed25519"];

/// The host key types made after sshd has started, in the background and
/// at the lowest priority (`ros console-init --finish-host-keys`). Each
/// `ssh-keygen` takes 1–2 s on an emulated CPU (QEMU without KVM) while
/// the rest of the system is starting, and an RSA 3072 key about 14 s:
/// time every first boot's SSH logins would otherwise wait for. sshd serves
/// such a key from its next start on (the next boot or console restart):
/// it is not told to reload, because sshd re-executes itself on SIGHUP and
/// resets the connections that arrive meanwhile.
pub const LATER_KEY_TYPES: [&str; 2] = ["ecdsa", "rsa"];

/// The file name of the private host key of type `kind`.
pub fn host_key_name(kind: &str) -> String {
    format!("ssh_host_{kind}_key")
}

/// Makes host keys.
pub trait HostKeyGen {
    /// Makes a new key of type `kind` (`ed25519`, `ecdsa` or `rsa`): the
    /// private key at `private` (which does not exist yet) and the public
    /// key beside it, with `.pub` added.
    fn generate(&self, kind: &str, private: &Path) -> Result<()>;
}

/// `ssh-keygen -t KIND`, with OpenSSH's default size for each type.
#[derive(Debug, Clone, Copy, Default)]
pub struct SshKeygen;

impl HostKeyGen for SshKeygen {
    fn generate(&self, kind: &str, private: &Path) -> Result<()> {
        let program = format!("ssh-keygen -t {kind}");
        let out = std::process::Command::new("ssh-keygen")
            .args(["-q", "-N", "", "-t", kind, "-f"])
            .arg(private)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| Error::Command {
                program: program.clone(),
                reason: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(Error::Command {
                program,
                reason: format!(
                    "{}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        Ok(())
    }
}

/// Ed25519 keys made in this process with the `ssh-key` crate, other
/// types by [`SshKeygen`]. The console makes its Ed25519 key with it before
/// sshd starts: on an emulated CPU (QEMU without KVM) `ssh-keygen -t
/// ed25519` took 1.2 s of the first boot's way to a login, nearly all of
/// it the start of ssh-keygen and OpenSSL, against milliseconds here. The
/// files are those ssh-keygen writes: the private key in OpenSSH's format
/// (mode 0600, no passphrase) and the public key line, both with the
/// comment `root@HOSTNAME`, written as every console file is
/// ([`fsutil::write_file`]: a temporary file of mode 0600, renamed).
#[derive(Debug, Clone, Copy, Default)]
pub struct InProcessEd25519;

impl HostKeyGen for InProcessEd25519 {
    fn generate(&self, kind: &str, private: &Path) -> Result<()> {
        if kind != "ed25519" {
            return SshKeygen.generate(kind, private);
        }
        let failed = |reason: String| Error::Command {
            program: "Ed25519 key generation".to_string(),
            reason,
        };
        let mut key = ssh_key::PrivateKey::random(
            &mut ssh_key::rand_core::OsRng,
            ssh_key::Algorithm::Ed25519,
        )
        .map_err(|e| failed(e.to_string()))?;
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default();
        key.set_comment(format!("root@{host}"));
        let text = key
            .to_openssh(ssh_key::LineEnding::LF)
            .map_err(|e| failed(e.to_string()))?;
        let public = key
            .public_key()
            .to_openssh()
            .map_err(|e| failed(e.to_string()))?;
        fsutil::write_file(private, text.as_bytes(), Attrs::root(0o600))?;
        let mut public_path = private.as_os_str().to_owned();
        public_path.push(".pub");
        fsutil::write_file(
            Path::new(&public_path),
            format!("{public}\n").as_bytes(),
            Attrs::root(0o644),
        )?;
        Ok(())
    }
}

/// Where each host key came from.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HostKeyReport {
    /// Private keys taken from rancher.ssh.keys.
    pub from_config: usize,
    /// Private keys taken from the persisted copy.
    pub reused: usize,
    /// Private keys made now.
    pub generated: usize,
    /// Types of [`LATER_KEY_TYPES`] still to be made.
    pub later: Vec<&'static str>,
}

fn host_key_files(dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(Error::Read {
                path: dir.to_owned(),
                source,
            })
        }
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| is_host_key_name(n))
        .collect();
    names.sort();
    Ok(names)
}

fn key_attrs(name: &str) -> Attrs {
    Attrs::root(if name.ends_with(".pub") { 0o644 } else { 0o600 })
}

/// Puts host keys in /etc/ssh: the persisted ones from
/// /var/lib/rancher/conf/ssh, then those of rancher.ssh.keys over them,
/// then `keygen` for the types still missing; and saves them all back to
/// /var/lib/rancher/conf/ssh, so that the host keys survive a reboot and a
/// console switch.
pub fn host_keys(
    root: &Root,
    settings: &Settings,
    keygen: &dyn HostKeyGen,
) -> Result<HostKeyReport> {
    let etc = root.join(SSH_DIR);
    let saved = root.join(PERSISTED_KEYS);
    fsutil::ensure_dir(&etc, Attrs::root(0o755))?;
    let mut report = HostKeyReport::default();
    let is_private = |n: &str| !n.ends_with(".pub");

    for name in host_key_files(&saved)? {
        let from = saved.join(&name);
        let content = std::fs::read(&from).map_err(|source| Error::Read { path: from, source })?;
        fsutil::write_file(&etc.join(&name), &content, key_attrs(&name))?;
        report.reused += usize::from(is_private(&name));
    }
    for (name, content) in &settings.ssh_host_keys {
        let mut content = content.clone();
        if !content.ends_with('\n') {
            content.push('\n');
        }
        fsutil::write_file(&etc.join(name), content.as_bytes(), key_attrs(name))?;
        if is_private(name) {
            report.from_config += 1;
            if saved.join(name).exists() {
                report.reused = report.reused.saturating_sub(1);
            }
        }
    }

    for kind in FIRST_KEY_TYPES {
        if make_missing_key(root, kind, keygen)? {
            report.generated += 1;
        }
    }
    report.later = LATER_KEY_TYPES
        .into_iter()
        .filter(|kind| !etc.join(host_key_name(kind)).exists())
        .collect();

    fsutil::ensure_dir(&saved, Attrs::root(0o700))?;
    for name in host_key_files(&etc)? {
        let from = etc.join(&name);
        let content = std::fs::read(&from).map_err(|source| Error::Read { path: from, source })?;
        // Private keys readable by root only, whatever made them: sshd
        // refuses a private key that others can read.
        fsutil::write_file(&etc.join(&name), &content, key_attrs(&name))?;
        fsutil::write_file(&saved.join(&name), &content, key_attrs(&name))?;
    }
    Ok(report)
}

/// Makes the host keys of [`LATER_KEY_TYPES`] that /etc/ssh lacks and
/// keeps them on the state disk; returns how many were made.
pub fn finish_host_keys(root: &Root, keygen: &dyn HostKeyGen) -> Result<usize> {
    let mut made = 0;
    for kind in LATER_KEY_TYPES {
        made += usize::from(make_missing_key(root, kind, keygen)?);
    }
    Ok(made)
}

/// Makes the host key of type `kind` unless /etc/ssh has it, in a new
/// directory beside it, then puts it in /etc/ssh and the persisted copy,
/// each file atomically (public key first): sshd, which may be starting
/// meanwhile, reads either no key or a whole one. Returns whether it made
/// the key.
fn make_missing_key(root: &Root, kind: &str, keygen: &dyn HostKeyGen) -> Result<bool> {
    let etc = root.join(SSH_DIR);
    let name = host_key_name(kind);
    if etc.join(&name).exists() {
        return Ok(false);
    }
    let work = tempfile::Builder::new()
        .prefix(".keygen.")
        .tempdir_in(&etc)
        .map_err(|source| Error::Write {
            path: etc.clone(),
            source,
        })?;
    let private = work.path().join(&name);
    keygen.generate(kind, &private)?;
    fsutil::ensure_dir(&root.join(PERSISTED_KEYS), Attrs::root(0o700))?;
    for file in [format!("{name}.pub"), name] {
        let from = work.path().join(&file);
        let content = std::fs::read(&from).map_err(|source| Error::Read { path: from, source })?;
        fsutil::write_file(&etc.join(&file), &content, key_attrs(&file))?;
        fsutil::write_file(
            &root.join(PERSISTED_KEYS).join(&file),
            &content,
            key_attrs(&file),
        )?;
    }
    Ok(true)
}

/// The sshd_config drop-in for `settings`.
pub fn sshd_config(settings: &Settings) -> String {
    let mut text = String::from(
        "# Written by ros console-init at every start, from rancher.ssh and\n\
         # rancher.password; changes made here are lost. sshd uses the first\n\
         # value it reads for a setting, and this file is included first.\n",
    );
    text.push_str(&format!("Port {}\n", settings.ssh_port));
    if let Some(addr) = &settings.ssh_listen_address {
        text.push_str(&format!("ListenAddress {addr}\n"));
    }
    let password = settings.password.as_deref().is_some_and(|p| !p.is_empty());
    let yes_no = if password { "yes" } else { "no" };
    text.push_str(&format!("PasswordAuthentication {yes_no}\n"));
    text.push_str(&format!("KbdInteractiveAuthentication {yes_no}\n"));
    text.push_str("PermitRootLogin no\n");
    text.push_str("UseDNS no\n");
    text
}

/// Whether the main sshd_config includes the drop-in directory (Debian's
/// does); `None` when there is no sshd_config.
pub fn main_config_includes_drop_ins(root: &Root) -> Result<Option<bool>> {
    let text = fsutil::read_optional(&root.join("/etc/ssh/sshd_config"))?;
    Ok(text.map(|t| {
        t.lines().any(|l| {
            let l = l.trim();
            l.split_whitespace()
                .next()
                .is_some_and(|w| w.eq_ignore_ascii_case("include"))
                && l.contains("sshd_config.d")
        })
    }))
}

/// Writes the drop-in and makes sshd's privilege separation directory.
pub fn configure_sshd(root: &Root, settings: &Settings) -> Result<()> {
    fsutil::write_file(
        &root.join(DROP_IN),
        sshd_config(settings).as_bytes(),
        Attrs::root(0o644),
    )?;
    fsutil::ensure_dir(&root.join(PRIVSEP_DIR), Attrs::root(0o755))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_in_follows_the_settings() {
        let mut s = Settings {
            ssh_port: 22,
            ..Default::default()
        };
        let text = sshd_config(&s);
        assert!(text.contains("\nPort 22\n"), "{text}");
        assert!(text.contains("\nPasswordAuthentication no\n"), "{text}");
        assert!(text.contains("\nPermitRootLogin no\n"), "{text}");
        assert!(text.contains("\nUseDNS no\n"), "{text}");
        assert!(!text.contains("ListenAddress"), "{text}");

        s.ssh_port = 2222;
        s.ssh_listen_address = Some("10.0.0.5".into());
        s.password = Some("pw".into());
        let text = sshd_config(&s);
        assert!(text.contains("\nPort 2222\n"), "{text}");
        assert!(text.contains("\nListenAddress 10.0.0.5\n"), "{text}");
        assert!(text.contains("\nPasswordAuthentication yes\n"), "{text}");
    }
}

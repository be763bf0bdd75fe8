//! The Debian side: mmdebstrap runs, and reading which packages a root
//! holds.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::recipe::PackageRequest;

/// Makes root filesystems from Debian packages. [`Mmdebstrap`] is the real
/// one; tests use a fake that writes a small tree.
pub trait Bootstrap {
    /// Names the tool, its version and the mirror; part of every image's
    /// cache key.
    fn id(&self) -> String;

    /// Creates `root` (which must not exist yet) with the packages of
    /// `request`, each pinned to a version when `pins` (`name=version`
    /// items) is given. `name` is the image, for error messages.
    fn bootstrap(
        &self,
        name: &str,
        request: &PackageRequest,
        pins: Option<&[String]>,
        root: &Path,
        epoch: u64,
        progress: &mut dyn FnMut(&str),
    ) -> Result<()>;

    /// The packages (name -> version) that installing `request` on an
    /// empty system would bring in, without building anything.
    fn resolve(
        &self,
        name: &str,
        request: &PackageRequest,
        progress: &mut dyn FnMut(&str),
    ) -> Result<BTreeMap<String, String>>;
}

/// The default Debian mirror.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// mmdebstrap(1), run as root in `root` mode.
#[derive(Debug, Clone)]
pub struct Mmdebstrap {
    mirror: String,
    version: String,
}

impl Mmdebstrap {
    /// Checks that mmdebstrap is installed and records its version.
    pub fn new(mirror: &str) -> Result<Self> {
        let out = Command::new("mmdebstrap")
            .arg("--version")
            .output()
            .map_err(|e| Error::Tool {
                step: "mmdebstrap --version".into(),
                reason: format!("{e} (install it with `apt-get install -y mmdebstrap`)"),
            })?;
        if !out.status.success() {
            return Err(Error::Tool {
                step: "mmdebstrap --version".into(),
                reason: format!("exited with {}", out.status),
            });
        }
        Ok(Mmdebstrap {
            mirror: mirror.to_string(),
            version: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        })
    }

    fn command(&self, request: &PackageRequest, include: &[String], epoch: u64) -> Command {
        let mut c = Command::new("mmdebstrap");
        c.env("SOURCE_DATE_EPOCH", epoch.to_string())
            .arg("--mode=root")
            .arg(format!("--variant={}", request.variant))
            .arg("--architectures=amd64");
        if !include.is_empty() {
            c.arg(format!("--include={}", include.join(",")));
        }
        c
    }

    /// Runs `cmd`, passing stderr lines to `progress`; on failure the error
    /// names a pin the archive no longer has, if that was the cause.
    fn run(
        &self,
        step: &str,
        name: &str,
        request: &PackageRequest,
        mut cmd: Command,
        progress: &mut dyn FnMut(&str),
    ) -> Result<Vec<String>> {
        tracing::debug!(?cmd, "running mmdebstrap");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Tool {
                step: step.into(),
                reason: format!("cannot start mmdebstrap: {e}"),
            })?;
        let mut lines = Vec::new();
        if let Some(err) = child.stderr.take() {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                progress(&line);
                lines.push(line);
            }
        }
        let status = child.wait().map_err(|e| Error::Tool {
            step: step.into(),
            reason: format!("cannot wait for mmdebstrap: {e}"),
        })?;
        if status.success() {
            return Ok(lines);
        }
        if let Some((package, version)) = lines.iter().find_map(|l| missing_version(l)) {
            return Err(Error::PinUnavailable {
                name: name.into(),
                suite: request.suite.clone(),
                package,
                version,
            });
        }
        let tail: Vec<&str> = lines
            .iter()
            .rev()
            .filter(|l| l.starts_with("E:"))
            .take(3)
            .map(String::as_str)
            .collect();
        Err(Error::Tool {
            step: step.into(),
            reason: format!(
                "mmdebstrap exited with {status}{}",
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", tail.join("; "))
                }
            ),
        })
    }
}

impl Bootstrap for Mmdebstrap {
    fn id(&self) -> String {
        format!("{} {}", self.version, self.mirror)
    }

    fn bootstrap(
        &self,
        name: &str,
        request: &PackageRequest,
        pins: Option<&[String]>,
        root: &Path,
        epoch: u64,
        progress: &mut dyn FnMut(&str),
    ) -> Result<()> {
        let include = pins
            .map(<[String]>::to_vec)
            .unwrap_or_else(|| request.packages.clone());
        let mut c = self.command(request, &include, epoch);
        c.arg("--format=directory");
        if request.variant == "extract" {
            // Nothing is installed, so there is no dpkg status: the
            // downloaded .deb names say which versions were extracted.
            c.arg("--skip=cleanup/apt/cache");
        }
        c.arg(&request.suite).arg(root).arg(&self.mirror);
        self.run(&format!("mmdebstrap of {name}"), name, request, c, progress)?;
        Ok(())
    }

    fn resolve(
        &self,
        name: &str,
        request: &PackageRequest,
        progress: &mut dyn FnMut(&str),
    ) -> Result<BTreeMap<String, String>> {
        let tmp = tempfile::tempdir().map_err(|e| Error::io("create", Path::new("/tmp"), e))?;
        let mut c = self.command(request, &request.packages, 0);
        c.arg("--verbose")
            .arg("--simulate")
            .arg(&request.suite)
            .arg(tmp.path().join("out.tar"))
            .arg(&self.mirror);
        let lines = self.run(
            &format!("mmdebstrap --simulate of {name}"),
            name,
            request,
            c,
            progress,
        )?;
        let set = parse_simulated(&lines);
        if set.is_empty() {
            return Err(Error::Tool {
                step: format!("mmdebstrap --simulate of {name}"),
                reason: "apt reported no package to install".into(),
            });
        }
        Ok(set)
    }
}

/// `E: Version '1.0' for 'busybox' was not found` -> (busybox, 1.0).
fn missing_version(line: &str) -> Option<(String, String)> {
    let rest = line.split("Version '").nth(1)?;
    let (version, rest) = rest.split_once("' for '")?;
    let (package, rest) = rest.split_once('\'')?;
    rest.contains("was not found")
        .then(|| (package.to_string(), version.to_string()))
}

/// The `Inst NAME (VERSION ...)` lines of `apt-get --simulate`.
pub fn parse_simulated(lines: &[String]) -> BTreeMap<String, String> {
    lines
        .iter()
        .filter_map(|l| {
            let rest = l.strip_prefix("Inst ")?;
            let (name, rest) = rest.split_once(' ')?;
            // "Inst pkg [old] (new ...)" when upgrading; take the new one.
            let version = rest.split_once('(')?.1.split_whitespace().next()?;
            Some((name.to_string(), version.to_string()))
        })
        .collect()
}

/// The packages a built root holds: the installed entries of its dpkg
/// status, or, for a root whose packages were only extracted, the
/// downloaded `.deb` files left in its apt cache.
pub fn installed_packages(root: &Path) -> Result<BTreeMap<String, String>> {
    let status = root.join("var/lib/dpkg/status");
    let text = match fs::read_to_string(&status) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io("read", &status, e)),
    };
    let set = parse_dpkg_status(&text);
    if !set.is_empty() {
        return Ok(set);
    }
    let archives = root.join("var/cache/apt/archives");
    let mut set = BTreeMap::new();
    if let Ok(rd) = fs::read_dir(&archives) {
        for e in rd.flatten() {
            if let Some((n, v)) = e.file_name().to_str().and_then(parse_deb_file_name) {
                set.insert(n, v);
            }
        }
    }
    Ok(set)
}

/// Deletes the `.deb` files an extract build leaves in the apt cache.
pub(crate) fn remove_downloaded_debs(root: &Path) -> Result<()> {
    let archives = root.join("var/cache/apt/archives");
    if let Ok(rd) = fs::read_dir(&archives) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().ends_with(".deb") {
                fs::remove_file(e.path()).map_err(|err| Error::io("remove", &e.path(), err))?;
            }
        }
    }
    Ok(())
}

/// Removes from an extracted root the files of the packages `exclude`
/// names, listed from their `.deb` in the apt cache (`dpkg-deb
/// --fsys-tarfile`). Directories are kept (other packages may share
/// them); a package that is not in the cache is an error.
pub fn remove_package_files(name: &str, root: &Path, exclude: &[String]) -> Result<()> {
    let archives = root.join("var/cache/apt/archives");
    for pkg in exclude {
        let prefix = format!("{pkg}_");
        let deb = fs::read_dir(&archives)
            .map_err(|e| Error::io("read directory", &archives, e))?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
            })
            .ok_or_else(|| Error::Tool {
                step: format!("exclude of {name}"),
                reason: format!("{pkg} is not among the extracted packages"),
            })?;
        let mut child = Command::new("dpkg-deb")
            .arg("--fsys-tarfile")
            .arg(&deb)
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Tool {
                step: format!("dpkg-deb --fsys-tarfile {}", deb.display()),
                reason: e.to_string(),
            })?;
        let mut files = Vec::new();
        if let Some(out) = child.stdout.take() {
            let mut ar = tar::Archive::new(out);
            let entries = ar.entries().map_err(|e| Error::io("read", &deb, e))?;
            for e in entries {
                let e = e.map_err(|e| Error::io("read", &deb, e))?;
                if e.header().entry_type().is_dir() {
                    continue;
                }
                let p = e.path().map_err(|e| Error::io("read", &deb, e))?;
                files.push(p.into_owned());
            }
        }
        let status = child
            .wait()
            .map_err(|e| Error::io("wait for dpkg-deb on", &deb, e))?;
        if !status.success() {
            return Err(Error::Tool {
                step: format!("dpkg-deb --fsys-tarfile {}", deb.display()),
                reason: format!("exited with {status}"),
            });
        }
        for f in files {
            let rel: std::path::PathBuf = f
                .components()
                .filter(|c| matches!(c, std::path::Component::Normal(_)))
                .collect();
            if rel.as_os_str().is_empty() {
                continue;
            }
            let target = root.join(&rel);
            // Only the entry itself is removed, never what a symlink on the
            // way points to: a parent that is a symlink is skipped.
            let through_link = rel.ancestors().skip(1).any(|a| {
                !a.as_os_str().is_empty()
                    && fs::symlink_metadata(root.join(a)).is_ok_and(|m| m.file_type().is_symlink())
            });
            if through_link {
                continue;
            }
            match fs::symlink_metadata(&target) {
                Ok(m) if !m.is_dir() => {
                    fs::remove_file(&target).map_err(|e| Error::io("remove", &target, e))?
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Installed packages of a dpkg status file. deb822 paragraphs are simple
/// enough that only `Package`, `Status` and `Version` need reading; a
/// full control-file parser would add nothing here.
pub fn parse_dpkg_status(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for para in text.split("\n\n") {
        let (mut name, mut version, mut installed) = (None, None, false);
        for line in para.lines() {
            if let Some(v) = line.strip_prefix("Package:") {
                name = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Version:") {
                version = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Status:") {
                installed = v.trim().ends_with(" installed");
            }
        }
        if let (Some(n), Some(v), true) = (name, version, installed) {
            out.insert(n.to_string(), v.to_string());
        }
    }
    out
}

/// `busybox_1%3a1.37.0-6+b9_amd64.deb` -> (busybox, 1:1.37.0-6+b9).
fn parse_deb_file_name(file: &str) -> Option<(String, String)> {
    let stem = file.strip_suffix(".deb")?;
    let mut parts = stem.split('_');
    let name = parts.next()?;
    let version = parts.next()?;
    parts.next()?;
    Some((
        name.to_string(),
        version.replace("%3a", ":").replace("%3A", ":"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_status_lists_only_installed_packages() {
        let text = "Package: busybox\nStatus: install ok installed\nVersion: 1:1.37.0-6+b9\n\
                    Description: x\n more\n\nPackage: gone\nStatus: deinstall ok config-files\n\
                    Version: 1.0\n\nPackage: libc6\nStatus: install ok installed\nArchitecture: amd64\n\
                    Version: 2.41-12\n";
        let set = parse_dpkg_status(text);
        assert_eq!(set.len(), 2, "{set:?}");
        assert_eq!(set["busybox"], "1:1.37.0-6+b9");
        assert_eq!(set["libc6"], "2.41-12");
    }

    #[test]
    fn extracted_roots_are_read_from_the_deb_cache() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("var/cache/apt/archives");
        fs::create_dir_all(a.join("partial")).unwrap();
        fs::write(a.join("busybox_1%3a1.37.0-6+b9_amd64.deb"), "").unwrap();
        fs::write(a.join("libc6_2.41-12+deb13u4_amd64.deb"), "").unwrap();
        fs::write(a.join("lock"), "").unwrap();
        let set = installed_packages(tmp.path()).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set["busybox"], "1:1.37.0-6+b9");
        remove_downloaded_debs(tmp.path()).unwrap();
        assert!(installed_packages(tmp.path()).unwrap().is_empty());
        assert!(a.join("lock").exists());
    }

    #[test]
    fn simulated_installs_are_read_from_apt_output() {
        let lines: Vec<String> = [
            "I: simulate downloading packages with apt...",
            "Inst gcc-14-base (14.2.0-19 Debian:13.7/stable [amd64])",
            "Conf gcc-14-base (14.2.0-19 Debian:13.7/stable [amd64])",
            "Inst libc6 (2.41-12+deb13u4 Debian:13.7/stable [amd64]) []",
            "Inst libattr1 (1:2.5.2-3 Debian:13.7/stable [amd64])",
        ]
        .map(String::from)
        .to_vec();
        let set = parse_simulated(&lines);
        assert_eq!(set.len(), 3);
        assert_eq!(set["libattr1"], "1:2.5.2-3");
    }

    #[test]
    fn a_missing_pinned_version_is_recognised() {
        assert_eq!(
            missing_version("E: Version '9.9' for 'busybox' was not found"),
            Some(("busybox".into(), "9.9".into()))
        );
        assert_eq!(missing_version("E: Unable to locate package foo"), None);
    }

    #[test]
    fn excluded_packages_lose_their_files_but_keep_shared_directories() {
        let tmp = tempfile::tempdir().unwrap();
        // A real .deb, made with dpkg-deb like the archive's.
        let pkg = tmp.path().join("pkg");
        fs::create_dir_all(pkg.join("DEBIAN")).unwrap();
        fs::write(
            pkg.join("DEBIAN/control"),
            "Package: perl-base\nVersion: 5.40-1\nArchitecture: amd64\n\
             Maintainer: x <x@example.org>\nDescription: test\n",
        )
        .unwrap();
        fs::create_dir_all(pkg.join("usr/bin")).unwrap();
        fs::write(pkg.join("usr/bin/perl"), "perl").unwrap();
        std::os::unix::fs::symlink("perl", pkg.join("usr/bin/perl5")).unwrap();
        let root = tmp.path().join("root");
        let archives = root.join("var/cache/apt/archives");
        fs::create_dir_all(&archives).unwrap();
        let deb = archives.join("perl-base_5.40-1_amd64.deb");
        let st = Command::new("dpkg-deb")
            .args(["--root-owner-group", "--build"])
            .arg(&pkg)
            .arg(&deb)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
        // The root as extraction left it, with another package's file.
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        fs::write(root.join("usr/bin/perl"), "perl").unwrap();
        std::os::unix::fs::symlink("perl", root.join("usr/bin/perl5")).unwrap();
        fs::write(root.join("usr/bin/busybox"), "bb").unwrap();

        remove_package_files("img", &root, &["perl-base".to_string()]).unwrap();
        assert!(!root.join("usr/bin/perl").exists());
        assert!(fs::symlink_metadata(root.join("usr/bin/perl5")).is_err());
        assert!(root.join("usr/bin/busybox").exists(), "other files stay");

        let e = remove_package_files("img", &root, &["debconf".to_string()])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "exclude of img failed: debconf is not among the extracted packages"
        );
    }
}

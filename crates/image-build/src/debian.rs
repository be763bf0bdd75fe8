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
}

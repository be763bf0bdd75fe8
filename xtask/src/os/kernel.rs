//! The kernel: Debian trixie's `linux-image-amd64`, fetched with a private
//! apt configuration so that the host's apt sources and state stay untouched.
//!
//! `linux-image-amd64` is a metapackage; its `Depends` names the real
//! package (`linux-image-6.12.x+deb13-amd64`), which `apt-get download`
//! fetches into the build cache. The package is unpacked with `dpkg-deb -x`
//! (no maintainer scripts run), and `depmod` writes the `modules.dep` that
//! the package's postinst would have written.

use crate::cmd::run_step;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Debian suite and mirror the kernel comes from.
const SOURCE: &str = "deb http://deb.debian.org/debian trixie main";
/// The metapackage that names the current kernel.
const METAPACKAGE: &str = "linux-image-amd64";

/// A private apt: own sources.list, state and cache under `dir`.
pub struct Apt {
    dir: PathBuf,
}

impl Apt {
    pub fn new(dir: &Path) -> Result<Self> {
        for sub in [
            "etc/sources.list.d",
            "etc/preferences.d",
            "state/lists/partial",
            "cache/archives/partial",
        ] {
            std::fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("cannot create {}/{sub}", dir.display()))?;
        }
        let status = dir.join("state/status");
        if !status.exists() {
            std::fs::write(&status, "")
                .with_context(|| format!("cannot create {}", status.display()))?;
        }
        std::fs::write(dir.join("etc/sources.list"), format!("{SOURCE}\n"))
            .with_context(|| format!("cannot write {}/etc/sources.list", dir.display()))?;
        let d = dir.display();
        // The host's apt.conf.d stays in effect (proxies, retries); everything
        // that names sources, state or cache is overridden.
        let conf = format!(
            "Dir::Etc::SourceList \"{d}/etc/sources.list\";\n\
             Dir::Etc::SourceParts \"{d}/etc/sources.list.d\";\n\
             Dir::Etc::Preferences \"{d}/etc/preferences\";\n\
             Dir::Etc::PreferencesParts \"{d}/etc/preferences.d\";\n\
             Dir::State \"{d}/state\";\n\
             Dir::State::status \"{d}/state/status\";\n\
             Dir::Cache \"{d}/cache\";\n\
             Debug::NoLocking \"true\";\n\
             APT::Sandbox::User \"root\";\n\
             APT::Architecture \"amd64\";\n\
             APT::Architectures \"amd64\";\n\
             Acquire::Languages \"none\";\n\
             Acquire::IndexTargets::deb::DEP-11::DefaultEnabled \"false\";\n\
             Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled \"false\";\n\
             Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled \"false\";\n\
             Acquire::IndexTargets::deb::DEP-11-icons-hidpi::DefaultEnabled \"false\";\n"
        );
        std::fs::write(dir.join("etc/apt.conf"), conf)
            .with_context(|| format!("cannot write {d}/etc/apt.conf"))?;
        Ok(Apt {
            dir: dir.to_path_buf(),
        })
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("APT_CONFIG", self.dir.join("etc/apt.conf"))
            .env("DEBIAN_FRONTEND", "noninteractive");
        c
    }

    /// Whether the package index has been downloaded.
    fn has_index(&self) -> bool {
        std::fs::read_dir(self.dir.join("state/lists"))
            .map(|entries| {
                entries
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().contains("_Packages"))
            })
            .unwrap_or(false)
    }

    /// `apt-get update` unless an index is there and `refresh` is false.
    pub fn update(&self, refresh: bool) -> Result<()> {
        if self.has_index() && !refresh {
            eprintln!("xtask: == trixie package index: cached (--refresh to update)");
            return Ok(());
        }
        run_step(
            "apt-get update (trixie, private)",
            self.command("apt-get").arg("update"),
        )
    }

    /// The text of `apt-cache show --no-all-versions PACKAGE`.
    fn show(&self, package: &str) -> Result<String> {
        let out = self
            .command("apt-cache")
            .args(["show", "--no-all-versions", package])
            .output()
            .with_context(|| format!("cannot run apt-cache show {package}"))?;
        if !out.status.success() {
            bail!(
                "apt-cache show {package} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Downloads the real kernel package into `debs` (unless there) and
    /// returns its path.
    pub fn fetch_kernel(&self, debs: &Path) -> Result<PathBuf> {
        // Resolving through apt-cache reads the whole index (seconds); the
        // answer is kept for as long as the index files are unchanged.
        let stamp = self.index_stamp();
        let resolved = debs.join("resolved");
        if let Ok(text) = std::fs::read_to_string(&resolved) {
            if let Some((was, file)) = text.split_once('\n') {
                let file = debs.join(file.trim());
                if was == stamp && file.is_file() {
                    eprintln!("xtask: == kernel package: cached {}", file.display());
                    return Ok(file);
                }
            }
        }
        let file = self.resolve_and_download(debs)?;
        if let Some(name) = file.file_name() {
            std::fs::write(&resolved, format!("{stamp}\n{}", name.to_string_lossy()))
                .with_context(|| format!("cannot write {}", resolved.display()))?;
        }
        Ok(file)
    }

    /// Names, sizes and modification times of the index files.
    fn index_stamp(&self) -> String {
        let mut parts: Vec<String> = std::fs::read_dir(self.dir.join("state/lists"))
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| {
                        let m = e.metadata().ok()?;
                        let mtime = m
                            .modified()
                            .ok()?
                            .duration_since(std::time::UNIX_EPOCH)
                            .ok()?;
                        Some(format!(
                            "{}:{}:{}",
                            e.file_name().to_string_lossy(),
                            m.len(),
                            mtime.as_nanos()
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        parts.sort();
        parts.join(" ")
    }

    /// Downloads `package` (the candidate version of the same index as the
    /// kernel) into `debs` unless there, and returns its path.
    pub fn fetch_package(&self, package: &str, debs: &Path) -> Result<PathBuf> {
        let info = self.show(package)?;
        let version = field(&info, "Version")
            .with_context(|| format!("apt-cache show {package}: no Version"))?;
        let arch = field(&info, "Architecture").unwrap_or_else(|| "amd64".into());
        self.fetch_version(package, &version, &arch, debs)
    }

    /// Downloads the source package of the kernel package `image_deb`
    /// (`linux-image-6.12.117+deb13-amd64` -> `linux-source-6.12`), of the
    /// same version, into `debs` unless there, and returns its path. The
    /// archive may hold several versions; a source of another version than
    /// the kernel's is never taken.
    pub fn fetch_source(&self, image_deb: &Path, debs: &Path) -> Result<PathBuf> {
        let out = Command::new("dpkg-deb")
            .arg("-f")
            .arg(image_deb)
            .args(["Package", "Version"])
            .output()
            .with_context(|| format!("cannot run dpkg-deb -f {}", image_deb.display()))?;
        let control = String::from_utf8_lossy(&out.stdout);
        let (Some(image), Some(version), true) = (
            field(&control, "Package"),
            field(&control, "Version"),
            out.status.success(),
        ) else {
            bail!(
                "{}: no Package and Version in its control file",
                image_deb.display()
            );
        };
        let package = source_package(&image)?;
        self.fetch_version(&package, &version, "all", debs)
            .with_context(|| format!("the kernel's source, {package} {version}, is not available"))
    }

    /// Downloads `package` at `version` into `debs` unless there.
    fn fetch_version(
        &self,
        package: &str,
        version: &str,
        arch: &str,
        debs: &Path,
    ) -> Result<PathBuf> {
        // apt names files with ':' of an epoch escaped as %3a.
        let file = debs.join(format!(
            "{package}_{}_{arch}.deb",
            version.replace(':', "%3a")
        ));
        if file.is_file() {
            eprintln!("xtask: == {package}: cached {}", file.display());
            return Ok(file);
        }
        std::fs::create_dir_all(debs)
            .with_context(|| format!("cannot create {}", debs.display()))?;
        run_step(
            &format!("download {package} {version}"),
            self.command("apt-get")
                .args(["download", &format!("{package}={version}")])
                .current_dir(debs),
        )?;
        if !file.is_file() {
            bail!(
                "apt-get download {package} did not write {}",
                file.display()
            );
        }
        Ok(file)
    }

    fn resolve_and_download(&self, debs: &Path) -> Result<PathBuf> {
        let meta = self.show(METAPACKAGE)?;
        let package = first_dependency(&meta)
            .with_context(|| format!("{METAPACKAGE} names no kernel package in Depends"))?;
        self.fetch_package(&package, debs)
    }
}

/// The value of a `Field: value` line of a Debian control paragraph.
pub fn field(control: &str, name: &str) -> Option<String> {
    control.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(|v| v.trim().to_string())
    })
}

/// The first package named by `Depends` (`linux-image-6.12.1+deb13-amd64 (=
/// 6.12.1-1)` -> `linux-image-6.12.1+deb13-amd64`).
pub fn first_dependency(control: &str) -> Option<String> {
    let depends = field(control, "Depends")?;
    let first = depends.split([',', '|']).next()?.trim();
    let name = first.split([' ', '(']).next()?.trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// The source package of a kernel image package:
/// `linux-image-6.12.117+deb13-amd64` -> `linux-source-6.12`.
pub fn source_package(image_package: &str) -> Result<String> {
    let version = image_package
        .strip_prefix("linux-image-")
        .with_context(|| format!("{image_package} is not a linux-image package"))?;
    let mut parts = version.split(['.', '-', '+']);
    match (parts.next(), parts.next()) {
        (Some(major), Some(minor))
            if !major.is_empty()
                && !minor.is_empty()
                && major.bytes().all(|b| b.is_ascii_digit())
                && minor.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Ok(format!("linux-source-{major}.{minor}"))
        }
        _ => bail!("{image_package}: no MAJOR.MINOR version in its name"),
    }
}

/// The unpacked kernel package.
pub struct Kernel {
    /// `KVER`, e.g. `6.12.107+deb13-amd64`.
    pub version: String,
    pub vmlinuz: PathBuf,
    /// `.../usr/lib/modules/KVER`, with modules.dep.
    pub modules: PathBuf,
}

/// Unpacks `deb` into `dir` and runs depmod over all its modules.
pub fn unpack(deb: &Path, dir: &Path) -> Result<()> {
    run_step(
        "unpack kernel package",
        Command::new("dpkg-deb").arg("-x").arg(deb).arg(dir),
    )?;
    let k = locate(dir)?;
    run_step(
        "depmod (all kernel modules)",
        Command::new("depmod")
            .arg("-b")
            .arg(dir.join("usr"))
            .arg(&k.version),
    )
}

/// Finds kernel and modules in an unpacked package.
pub fn locate(dir: &Path) -> Result<Kernel> {
    let modules_root = dir.join("usr/lib/modules");
    let mut versions: Vec<String> = std::fs::read_dir(&modules_root)
        .with_context(|| format!("cannot read {}", modules_root.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    versions.sort();
    let [version] = versions.as_slice() else {
        bail!(
            "expected one kernel version in {}, found {versions:?}",
            modules_root.display()
        );
    };
    let vmlinuz = dir.join(format!("boot/vmlinuz-{version}"));
    if !vmlinuz.is_file() {
        bail!("kernel package has no {}", vmlinuz.display());
    }
    Ok(Kernel {
        version: version.clone(),
        vmlinuz,
        modules: modules_root.join(version),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const META: &str = "Package: linux-image-amd64\n\
Source: linux-signed-amd64 (6.12.107+1)\n\
Version: 6.12.107-1\n\
Depends: linux-image-6.12.107+deb13-amd64 (= 6.12.107-1)\n\
Description: Linux for 64-bit PCs (meta-package)\n";

    #[test]
    fn the_source_package_is_named_by_the_kernels_major_and_minor() {
        assert_eq!(
            source_package("linux-image-6.12.117+deb13-amd64").unwrap(),
            "linux-source-6.12"
        );
        assert_eq!(
            source_package("linux-image-7.0-1-amd64").unwrap(),
            "linux-source-7.0"
        );
        assert!(source_package("linux-headers-6.12.1").is_err());
        assert!(source_package("linux-image-amd64").is_err());
    }

    #[test]
    fn the_metapackage_names_the_real_kernel_package() {
        assert_eq!(
            first_dependency(META).as_deref(),
            Some("linux-image-6.12.107+deb13-amd64")
        );
        assert_eq!(field(META, "Version").as_deref(), Some("6.12.107-1"));
        assert_eq!(
            first_dependency("Depends: a | b, c (>= 1)\n").as_deref(),
            Some("a")
        );
        assert_eq!(first_dependency("Package: x\n"), None);
    }

    #[test]
    fn fields_match_whole_names_only() {
        let text = "Pre-Depends: dpkg\nDepends: kmod\n";
        assert_eq!(field(text, "Depends").as_deref(), Some("kmod"));
    }
}

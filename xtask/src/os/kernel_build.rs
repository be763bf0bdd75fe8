//! OxOS's kernel, compiled from Debian's source of the very version of
//! Debian's kernel package, with Debian's configuration trimmed for a
//! container host.
//!
//! # Background
//!
//! Debian's generic kernel costs a booted OxOS more memory than the design
//! allows the whole system part (40 MB): booting nothing but a busybox
//! initramfs it already uses about 34 MiB by the benchmark's measure
//! (MemTotal - MemAvailable), and OxOS loads some 70 modules (8 MiB of
//! module memory) into it. Most of that is what the generic kernel is made
//! for and a container host is not (every driver, five security modules, a
//! 16 MiB DMA zone kept in reserve for ISA-era devices), so OxOS builds its
//! own, as RancherOS did, from Debian's source and configuration so that
//! its fixes and hardening stay Debian's.
//!
//! # Design
//!
//! 1. The source is `linux-source-MAJOR.MINOR` of the same version as the
//!    kernel package (`linux-image-6.12.117+deb13-amd64` 6.12.117-1 ->
//!    `linux-source-6.12` 6.12.117-1); a mismatch is an error, not a
//!    silent mix.
//! 2. The configuration starts from the package's own
//!    (`boot/config-KVER`). The kernel's `localmodconfig` then leaves out
//!    every module that is not in OxOS's selection ([`super::modules`]:
//!    what the system image and the initrd ship), closed over Debian's
//!    `modules.dep`, so the selection stays the one list of what OxOS
//!    supports. Over that goes `kernel.config` (beside this file): the
//!    modules every boot loads built in, the rest of OxOS's choices, each
//!    with its reason. After `olddefconfig` every line of it must hold in
//!    the result; one that does not (a dependency the kernel's Kconfig
//!    refused) fails the build and is named.
//! 3. `make bzImage modules` with all CPUs, its output in a log file; a
//!    line every 30 s says how far it is, and a failure prints the log's
//!    last lines.
//! 4. `modules_install` (stripped, uncompressed: the build stages them into
//!    lz4 images) and `depmod` into `usr/lib/modules/KVER`, the kernel as
//!    `boot/vmlinuz-KVER` and the configuration as `boot/config-KVER`: the
//!    layout of Debian's package, so that the rest of the build reads it
//!    as it read Debian's ([`super::kernel::locate`]).
//! 5. The source tree (2-3 GB built) is removed as soon as the kernel is
//!    installed: CI machines' disks are not large.
//!
//! # Limitations
//!
//! - A clean build compiles the kernel (about 20 minutes on two cores);
//!   the result is cached like every other step, keyed by both packages,
//!   `kernel.config` and the module selection.
//! - Modules Debian builds and OxOS's selection does not name cannot be
//!   loaded (as before, when the system image shipped only the selection).

use crate::cmd::{display, run_step};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// OxOS's choices over Debian's configuration.
pub const FRAGMENT: &str = include_str!("kernel.config");

/// A configuration fragment: `CONFIG_X=value` and `# CONFIG_X is not set`
/// lines, in order (a later line for the same option wins).
#[derive(Debug, Default, PartialEq)]
pub struct Fragment {
    /// Option name (with `CONFIG_`) -> value (`y`, `m`, `"text"`, a number,
    /// or `n` for "is not set").
    pub options: BTreeMap<String, String>,
}

impl Fragment {
    /// Reads a fragment; `name` is for errors ("kernel.config line 12: ...").
    pub fn parse(name: &str, text: &str) -> Result<Self> {
        let mut options = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            match parse_line(line) {
                Some((option, value)) => {
                    options.insert(option.to_string(), value.to_string());
                }
                None if line.starts_with('#') => {}
                None => bail!(
                    "{name} line {}: expected CONFIG_NAME=VALUE or \"# CONFIG_NAME is not set\", found {line:?}",
                    n + 1
                ),
            }
        }
        Ok(Fragment { options })
    }

    /// `config` (a `.config`'s text) with the fragment's options in place
    /// of its own: their lines removed, the fragment's appended.
    pub fn merge_into(&self, config: &str) -> String {
        let mut out: String = config
            .lines()
            .filter(|line| {
                parse_line(line.trim()).is_none_or(|(o, _)| !self.options.contains_key(o))
            })
            .map(|line| format!("{line}\n"))
            .collect();
        out.push_str("# OxOS (kernel.config)\n");
        for (option, value) in &self.options {
            if value == "n" {
                out.push_str(&format!("# {option} is not set\n"));
            } else {
                out.push_str(&format!("{option}={value}\n"));
            }
        }
        out
    }

    /// The fragment's options whose value in `config` differs, as
    /// `CONFIG_X=wanted (got value)`; an option missing from `config` counts
    /// as `n`, as Kconfig reads it.
    pub fn unmet(&self, config: &str) -> Vec<String> {
        let actual: BTreeMap<&str, &str> = config
            .lines()
            .filter_map(|l| parse_line(l.trim()))
            .collect();
        self.options
            .iter()
            .filter_map(|(option, wanted)| {
                let got = actual.get(option.as_str()).copied().unwrap_or("n");
                (got != wanted).then(|| format!("{option}={wanted} (got {got})"))
            })
            .collect()
    }
}

/// One option line of a configuration: (`CONFIG_X`, value), `n` for
/// "is not set"; None for anything else.
fn parse_line(line: &str) -> Option<(&str, &str)> {
    let valid = |name: &str| {
        name.starts_with("CONFIG_")
            && name.len() > "CONFIG_".len()
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    };
    if let Some(rest) = line.strip_prefix("# ") {
        let name = rest.strip_suffix(" is not set")?;
        return valid(name).then_some((name, "n"));
    }
    let (name, value) = line.split_once('=')?;
    (valid(name) && !value.is_empty()).then_some((name, value))
}

/// What the kernel is built from.
pub struct Inputs<'a> {
    /// The unpacked Debian kernel package (for its `boot/config-KVER`).
    pub debian: &'a super::kernel::Kernel,
    /// The `linux-source-*` package.
    pub source_deb: &'a Path,
    /// Module names (as `lsmod` prints them) that the build keeps as
    /// modules or builds in; every other module is left out.
    pub modules: &'a [String],
    /// OxOS's fragment.
    pub fragment: &'a Fragment,
}

/// Builds the kernel into `out` (the layout of Debian's package), using
/// `work` for the source tree, which it removes afterwards.
pub fn build(inputs: &Inputs, work: &Path, out: &Path) -> Result<()> {
    if work.exists() {
        std::fs::remove_dir_all(work)
            .with_context(|| format!("cannot remove {}", work.display()))?;
    }
    std::fs::create_dir_all(work).with_context(|| format!("cannot create {}", work.display()))?;
    let tree = unpack_source(inputs.source_deb, work)?;

    // Configuration.
    let debian_config = inputs
        .debian
        .vmlinuz
        .parent()
        .context("the kernel package's vmlinuz has no directory")?
        .join(format!("config-{}", inputs.debian.version));
    std::fs::copy(&debian_config, tree.join(".config")).with_context(|| {
        format!(
            "cannot copy {} into the source tree",
            debian_config.display()
        )
    })?;
    make(
        &tree,
        "make olddefconfig (Debian's configuration)",
        &["olddefconfig"],
    )?;
    let lsmod = work.join("modules.lsmod");
    let mut listing = String::from("Module Size Used by\n");
    for name in inputs.modules {
        listing.push_str(&format!("{name} 0 0\n"));
    }
    std::fs::write(&lsmod, listing).with_context(|| format!("cannot write {}", lsmod.display()))?;
    run_step(
        &format!(
            "make localmodconfig (keep the {} modules OxOS ships)",
            inputs.modules.len()
        ),
        // Its stdout is a question and answer per option it drops.
        make_command(&tree)
            .arg("localmodconfig")
            .env("LSMOD", &lsmod)
            .stdin(Stdio::null())
            .stdout(Stdio::null()),
    )?;
    let config_path = tree.join(".config");
    let config = read(&config_path)?;
    std::fs::write(&config_path, inputs.fragment.merge_into(&config))
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    make(
        &tree,
        "make olddefconfig (with kernel.config)",
        &["olddefconfig"],
    )?;
    let unmet = inputs.fragment.unmet(&read(&config_path)?);
    if !unmet.is_empty() {
        bail!(
            "kernel.config: {} line(s) did not hold after olddefconfig (a dependency of each is \
             off or it is not an option of this kernel): {}",
            unmet.len(),
            unmet.join(", ")
        );
    }

    // Compilation.
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let log = work.join("build.log");
    compile(&tree, jobs, &log)?;

    // Installation.
    let release = String::from_utf8(
        make_command(&tree)
            .args(["-s", "kernelrelease"])
            .output()
            .context("cannot run make kernelrelease")?
            .stdout,
    )
    .context("make kernelrelease printed no UTF-8")?
    .trim()
    .to_string();
    if release.is_empty() {
        bail!("make kernelrelease printed nothing");
    }
    let usr = out.join("usr");
    run_step(
        "make modules_install",
        make_command(&tree)
            .arg("modules_install")
            .arg(format!("INSTALL_MOD_PATH={}", usr.display()))
            .arg("INSTALL_MOD_STRIP=1")
            .stdout(Stdio::null()),
    )?;
    let boot = out.join("boot");
    std::fs::create_dir_all(&boot).with_context(|| format!("cannot create {}", boot.display()))?;
    for (from, to) in [
        ("arch/x86/boot/bzImage", format!("vmlinuz-{release}")),
        (".config", format!("config-{release}")),
        ("System.map", format!("System.map-{release}")),
    ] {
        std::fs::copy(tree.join(from), boot.join(&to))
            .with_context(|| format!("cannot copy {from} to {}", boot.join(&to).display()))?;
    }
    // Links into the source tree, which goes now.
    for link in ["build", "source"] {
        let _ = std::fs::remove_file(usr.join("lib/modules").join(&release).join(link));
    }
    run_step(
        "depmod (the built modules)",
        Command::new("depmod").arg("-b").arg(&usr).arg(&release),
    )?;
    std::fs::remove_dir_all(work).with_context(|| format!("cannot remove {}", work.display()))?;
    Ok(())
}

/// Unpacks the source package's tarball into `work`; returns the tree.
fn unpack_source(deb: &Path, work: &Path) -> Result<PathBuf> {
    let unpacked = work.join("deb");
    run_step(
        "unpack the kernel source package",
        Command::new("dpkg-deb").arg("-x").arg(deb).arg(&unpacked),
    )?;
    let src = unpacked.join("usr/src");
    let tarball = std::fs::read_dir(&src)
        .with_context(|| format!("cannot read {}", src.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(".tar.xz"))
        })
        .with_context(|| format!("no .tar.xz in {}", src.display()))?;
    run_step(
        "unpack the kernel source",
        Command::new("tar")
            .arg("-xJf")
            .arg(&tarball)
            .arg("-C")
            .arg(work),
    )?;
    std::fs::remove_dir_all(&unpacked)
        .with_context(|| format!("cannot remove {}", unpacked.display()))?;
    let name = tarball
        .file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(".tar.xz").to_string())
        .unwrap_or_default();
    let tree = work.join(name);
    if !tree.join("Makefile").is_file() {
        bail!("the kernel source did not unpack into {}", tree.display());
    }
    Ok(tree)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// `make` in the tree, reproducible: the build's user, host and time are
/// fixed (they end up in `uname -v`).
fn make_command(tree: &Path) -> Command {
    let mut c = Command::new("make");
    c.current_dir(tree)
        .env("KBUILD_BUILD_USER", "oxos")
        .env("KBUILD_BUILD_HOST", "oxos")
        .env("KBUILD_BUILD_TIMESTAMP", "Debian source")
        .env_remove("ARCH")
        .env_remove("CROSS_COMPILE");
    c
}

fn make(tree: &Path, step: &str, targets: &[&str]) -> Result<()> {
    run_step(step, make_command(tree).args(targets).stdin(Stdio::null()))
}

/// `make -jN bzImage modules`, its output into `log`; says every 30 s how
/// many files it has built, and prints the log's end if it fails.
fn compile(tree: &Path, jobs: usize, log: &Path) -> Result<()> {
    let mut cmd = make_command(tree);
    cmd.arg(format!("-j{jobs}"))
        .args(["bzImage", "modules"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    eprintln!(
        "xtask: == compile the kernel ({jobs} jobs; about 20 minutes on two cores; log {}): {}",
        log.display(),
        display(&cmd)
    );
    let started = Instant::now();
    let mut child = cmd.spawn().context("cannot start make")?;
    let file =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let file = std::sync::Arc::new(std::sync::Mutex::new(file));
    let built = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let copiers: Vec<_> = [
        Box::new(child.stdout.take().context("make's stdout")?) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().context("make's stderr")?),
    ]
    .into_iter()
    .map(|stream| {
        let (file, built) = (file.clone(), built.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(|l| l.ok()) {
                if line.trim_start().starts_with("CC") {
                    built.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                use std::io::Write;
                let _ = writeln!(file.lock().unwrap_or_else(|e| e.into_inner()), "{line}");
            }
        })
    })
    .collect();
    let mut next_report = started + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().context("cannot wait for make")? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(500));
        if Instant::now() >= next_report {
            next_report += Duration::from_secs(30);
            let secs = started.elapsed().as_secs();
            eprintln!(
                "xtask: kernel: {} files compiled in {} min {:02} s",
                built.load(std::sync::atomic::Ordering::Relaxed),
                secs / 60,
                secs % 60
            );
        }
    };
    for copier in copiers {
        let _ = copier.join();
    }
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        for line in tail.iter().rev() {
            eprintln!("  {line}");
        }
        bail!(
            "compiling the kernel failed ({status}); the whole log: {}",
            log.display()
        );
    }
    eprintln!(
        "xtask: == kernel compiled in {:.1} min ({} files)",
        started.elapsed().as_secs_f64() / 60.0,
        built.load(std::sync::atomic::Ordering::Relaxed)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fragment_reads_values_and_not_set_lines_and_names_a_bad_line() {
        let f = Fragment::parse(
            "kernel.config",
            "# why\nCONFIG_A=y\n\n# CONFIG_B is not set\nCONFIG_C=\"x y\"\nCONFIG_A=m\n",
        )
        .unwrap();
        let want: BTreeMap<String, String> = [
            ("CONFIG_A", "m"),
            ("CONFIG_B", "n"),
            ("CONFIG_C", "\"x y\""),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        assert_eq!(f.options, want);
        let err = Fragment::parse("kernel.config", "CONFIG_A=y\nSCSI=y\n").unwrap_err();
        assert!(
            err.to_string().contains("kernel.config line 2") && err.to_string().contains("SCSI=y"),
            "{err}"
        );
        assert!(Fragment::parse("f", "CONFIG_A=\n").is_err());
    }

    #[test]
    fn merging_replaces_the_options_lines_and_unmet_names_what_did_not_hold() {
        let f = Fragment::parse("f", "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_D=y\n").unwrap();
        let merged = f.merge_into("CONFIG_A=m\nCONFIG_B=y\n# CONFIG_C is not set\nCONFIG_E=1\n");
        assert_eq!(
            merged,
            "# CONFIG_C is not set\nCONFIG_E=1\n# OxOS (kernel.config)\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_D=y\n"
        );
        assert!(f.unmet(&merged).is_empty());
        // What olddefconfig might make of it: D's dependency off, B back on.
        let after = "CONFIG_A=y\nCONFIG_B=y\n# CONFIG_D is not set\n";
        assert_eq!(f.unmet(after), ["CONFIG_B=n (got y)", "CONFIG_D=y (got n)"]);
        // An option missing altogether reads as not set.
        assert_eq!(f.unmet("CONFIG_A=y\n"), ["CONFIG_D=y (got n)"]);
    }
}

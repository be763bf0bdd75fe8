//! `cargo xtask images` and `cargo xtask lock`: system images from
//! `images/<name>/` and the Debian package lock (`images/packages.lock`).
//!
//! Both drive the `image-build` crate, which holds the recipe format, the
//! lock, and the layer packing; this module only picks the paths, prints
//! progress and sizes, and checks that it runs as root (mmdebstrap's root
//! mode needs it).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use image_build::{
    load_recipes, load_sets, refresh_lock, Builder, BuiltImage, Lock, Mmdebstrap, Recipe,
    DEFAULT_MIRROR, LOCK_FILE,
};

use crate::cmd::{is_root, workspace_root};

#[derive(Args)]
pub struct ImagesArgs {
    /// Build only this image (a directory name under images/).
    #[arg(long, value_name = "NAME")]
    pub only: Option<String>,
    /// Directory that receives `<name>.tar` per image.
    #[arg(long, value_name = "DIR", default_value = "dist/images")]
    pub out: PathBuf,
    /// Debian mirror.
    #[arg(long, default_value = DEFAULT_MIRROR)]
    pub mirror: String,
}

#[derive(Args)]
pub struct LockArgs {
    /// Refresh only this image or package set.
    #[arg(long, value_name = "NAME")]
    pub only: Option<String>,
    /// Debian mirror.
    #[arg(long, default_value = DEFAULT_MIRROR)]
    pub mirror: String,
}

/// `images/` in the workspace.
pub fn images_dir() -> PathBuf {
    workspace_root().join("images")
}

/// The package lock file.
pub fn lock_path() -> PathBuf {
    images_dir().join(LOCK_FILE)
}

/// When set (to anything but `0`), an image whose pins the Debian archive
/// has moved past gets its lock entry refreshed and is built again, with a
/// warning, instead of failing the build. `.ci/run` sets it.
///
/// Debian's archive keeps only the current version of each package: at a
/// point release the versions it replaces are gone, and a lock written
/// before then names versions no build can install. A developer's build
/// fails and names `cargo xtask lock --only NAME`, which is the fix to
/// commit; CI, which tests a commit rather than the archive, refreshes for
/// its run. A recipe changed without a lock refresh still fails everywhere.
pub const REFRESH_STALE_LOCK_ENV: &str = "OXOS_REFRESH_STALE_LOCK";

/// Whether [`REFRESH_STALE_LOCK_ENV`] asks for refreshes.
fn refresh_stale_lock() -> bool {
    std::env::var(REFRESH_STALE_LOCK_ENV).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The image whose lock entry the archive has moved past, if that is what
/// `e` says: a pinned version the archive no longer has, or installed
/// packages other than the pins (a dependency changed in the archive).
fn moved_past(e: &image_build::Error) -> Option<&str> {
    match e {
        image_build::Error::PinUnavailable { name, .. }
        | image_build::Error::LockMismatch { name, .. } => Some(name),
        _ => None,
    }
}

/// The default `SOURCE_DATE_EPOCH`: Debian 13 (trixie)'s release,
/// 2025-08-09T00:00:00Z. A constant rather than a commit time, so that a
/// lock refresh for one image does not change every other image.
pub const DEFAULT_EPOCH: u64 = 1_754_697_600;

/// `SOURCE_DATE_EPOCH` if set, else [`DEFAULT_EPOCH`].
pub fn source_date_epoch() -> Result<u64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v
            .trim()
            .parse()
            .with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds")),
        Err(_) => Ok(DEFAULT_EPOCH),
    }
}

fn select<'a>(recipes: &'a [Recipe], only: Option<&str>) -> Result<Vec<&'a Recipe>> {
    match only {
        None => Ok(recipes.iter().collect()),
        Some(name) => match recipes.iter().find(|r| r.name == name) {
            Some(r) => Ok(vec![r]),
            None => bail!(
                "no image recipe named {name} under {} (known: {})",
                images_dir().display(),
                recipes
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn require_root(what: &str) -> Result<()> {
    if !is_root() {
        bail!("{what} runs mmdebstrap in root mode: run it as root");
    }
    Ok(())
}

pub fn run(args: &ImagesArgs) -> Result<()> {
    let out = if args.out.is_absolute() {
        args.out.clone()
    } else {
        workspace_root().join(&args.out)
    };
    let built = build(args.only.as_deref(), &out, &args.mirror)?;
    print_report(&out, &built);
    Ok(())
}

/// Builds every recipe under `images/` (or only `only`) into `out`, reusing
/// each archive whose inputs are unchanged, with one progress line per
/// step. `cargo xtask images` and `cargo xtask build` both come here.
pub fn build(only: Option<&str>, out: &Path, mirror: &str) -> Result<Vec<BuiltImage>> {
    let recipes = load_recipes(&images_dir()).context("reading the image recipes")?;
    let chosen = select(&recipes, only)?;
    build_recipes(&chosen, out, mirror)
}

/// Builds the images named in `names` (all of them when `None`).
pub fn build_some(names: Option<&[&str]>, out: &Path, mirror: &str) -> Result<Vec<BuiltImage>> {
    let recipes = load_recipes(&images_dir()).context("reading the image recipes")?;
    let chosen: Vec<_> = recipes
        .iter()
        .filter(|r| names.is_none_or(|n| n.contains(&r.name.as_str())))
        .collect();
    build_recipes(&chosen, out, mirror)
}

fn build_recipes(chosen: &[&Recipe], out: &Path, mirror: &str) -> Result<Vec<BuiltImage>> {
    require_root("building the system images")?;
    let lock = Lock::load(&lock_path())?;
    let bootstrap = Mmdebstrap::new(mirror)?;
    let mut builder = Builder {
        out_dir: out.to_path_buf(),
        lock,
        epoch: source_date_epoch()?,
        default_version: env!("CARGO_PKG_VERSION").to_string(),
        bootstrap: &bootstrap,
        gzip_level: 6,
    };
    let mut built: Vec<BuiltImage> = Vec::new();
    for (i, r) in chosen.iter().enumerate() {
        eprintln!("xtask: == image {}/{}: {}", i + 1, chosen.len(), r.name);
        let name = r.name.clone();
        let mut progress = |line: &str| eprintln!("  [{name}] {line}");
        let b = match builder.build(r, &mut progress) {
            Err(e) if refresh_stale_lock() && moved_past(&e) == Some(r.name.as_str()) => {
                eprintln!("xtask: WARNING: {e}");
                eprintln!(
                    "xtask: WARNING: {REFRESH_STALE_LOCK_ENV} is set: refreshing the lock of {} \
                     from the archive and building it again; commit `cargo xtask lock --only {}`",
                    r.name, r.name
                );
                let mut lock = builder.lock.clone();
                let work = crate::cmd::target_dir().join("image-lock");
                refresh_lock(
                    &bootstrap,
                    std::slice::from_ref(*r),
                    &[],
                    &mut lock,
                    Some(&r.name),
                    &work,
                    &mut progress,
                )
                .with_context(|| format!("refreshing the lock of {}", r.name))?;
                lock.save(&lock_path())?;
                builder.lock = lock;
                builder.build(r, &mut progress)
            }
            result => result,
        }
        .with_context(|| format!("building image {}", r.name))?;
        eprintln!(
            "xtask: {} {} in {:.0?}: archive {}, unpacked {}, id {}",
            b.tag,
            if b.cached { "reused" } else { "built" },
            b.duration,
            mib(b.size),
            mib(b.unpacked_size),
            &b.id[..19.min(b.id.len())]
        );
        built.push(b);
    }
    Ok(built)
}

fn print_report(out: &Path, built: &[BuiltImage]) {
    println!(
        "{:<14} {:<28} {:>12} {:>12} {:>8}",
        "IMAGE", "TAG", "ARCHIVE", "UNPACKED", "TIME"
    );
    let mut total = 0;
    for b in built {
        total += b.size;
        let time = if b.cached {
            "cached".to_string()
        } else {
            format!("{:.0}s", b.duration.as_secs_f64())
        };
        println!(
            "{:<14} {:<28} {:>12} {:>12} {:>8}",
            b.name,
            b.tag,
            mib(b.size),
            mib(b.unpacked_size),
            time
        );
    }
    println!("total {} in {}", mib(total), out.display());
}

pub fn lock(args: &LockArgs) -> Result<()> {
    require_root("cargo xtask lock")?;
    let dir = images_dir();
    let recipes = load_recipes(&dir).context("reading the image recipes")?;
    let sets = load_sets(&dir).context("reading the package sets")?;
    if let Some(name) = &args.only {
        if !recipes.iter().any(|r| &r.name == name) && !sets.iter().any(|s| &s.name == name) {
            bail!(
                "no image recipe or package set named {name} (images: {}; sets: {})",
                recipes
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                sets.iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    let path = lock_path();
    let mut lock = Lock::load(&path)?;
    let bootstrap = Mmdebstrap::new(&args.mirror)?;
    let work = crate::cmd::target_dir().join("image-lock");
    let done = refresh_lock(
        &bootstrap,
        &recipes,
        &sets,
        &mut lock,
        args.only.as_deref(),
        &work,
        &mut |line| eprintln!("  {line}"),
    )?;
    lock.save(&path)?;
    for name in &done {
        let set = lock.set(name)?;
        println!("{name}: {} packages from {}", set.locked.len(), set.suite());
    }
    println!("wrote {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_archive_that_moved_past_the_pins_is_refreshed() {
        let gone = image_build::Error::PinUnavailable {
            name: "ntp".into(),
            suite: "trixie".into(),
            package: "libc6".into(),
            version: "2.41-12+deb13u5".into(),
        };
        assert_eq!(moved_past(&gone), Some("ntp"));
        let differs = image_build::Error::LockMismatch {
            name: "udev".into(),
            differences: "libfoo2 new".into(),
        };
        assert_eq!(moved_past(&differs), Some("udev"));
        // A recipe changed without `cargo xtask lock`, or never locked:
        // the commit is wrong, not the archive.
        let stale = image_build::Error::StaleLock {
            name: "ntp".into(),
            reason: "packages changed".into(),
        };
        assert_eq!(moved_past(&stale), None);
        let never = image_build::Error::NotLocked { name: "new".into() };
        assert_eq!(moved_past(&never), None);
    }
}

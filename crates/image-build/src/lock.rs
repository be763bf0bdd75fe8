//! The package lock: for each image and package set, the exact Debian
//! package versions a build installs.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::recipe::{check_package_name, PackageRequest};

/// The lock file name, directly under the images directory.
pub const LOCK_FILE: &str = "packages.lock";

/// The format version written to and accepted from the lock file.
pub const LOCK_VERSION: u32 = 1;

const HEADER: &str = "\
# OxOS package lock: the exact Debian packages each system image (and each
# package set of sets.yml) is built from. Written by `cargo xtask lock`;
# do not edit by hand. A build installs exactly these versions or fails.
";

/// The pinned packages of one image or set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageSet {
    /// What was asked for when the set was resolved; a recipe that asks for
    /// something else makes the entry stale.
    #[serde(flatten)]
    pub request: PackageRequest,
    /// Every package that ends up installed (or extracted), name -> version.
    pub locked: BTreeMap<String, String>,
}

impl PackageSet {
    /// The Debian suite the packages come from.
    pub fn suite(&self) -> &str {
        &self.request.suite
    }

    /// `(name, version)` pairs, sorted by name.
    pub fn packages(&self) -> impl Iterator<Item = (&str, &str)> {
        self.locked.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// `name=version` items for apt and mmdebstrap's `--include`.
    pub fn pins(&self) -> Vec<String> {
        self.packages().map(|(n, v)| format!("{n}={v}")).collect()
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LockFile {
    version: u32,
    #[serde(default)]
    sets: BTreeMap<String, PackageSet>,
}

/// The whole lock file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lock {
    sets: BTreeMap<String, PackageSet>,
}

impl Lock {
    /// Reads a lock file. A missing file is an empty lock (every build then
    /// asks for `cargo xtask lock`).
    pub fn load(path: &Path) -> Result<Lock> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Lock::default()),
            Err(e) => return Err(Error::io("read lock file", path, e)),
        };
        Lock::parse(path, &text)
    }

    /// Parses lock text (`path` is named in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Lock> {
        let bad = |reason: String| Error::Lock {
            file: path.to_path_buf(),
            reason,
        };
        let file: LockFile = serde_norway::from_str(text).map_err(|e| bad(e.to_string()))?;
        if file.version != LOCK_VERSION {
            return Err(bad(format!(
                "format version {} is not supported (expected {LOCK_VERSION})",
                file.version
            )));
        }
        for (name, set) in &file.sets {
            if set.locked.is_empty() {
                return Err(bad(format!("{name} pins no packages")));
            }
            for (p, v) in &set.locked {
                check_package_name(p).map_err(|e| bad(format!("{name}: expected {e}")))?;
                if v.is_empty() || v.contains(char::is_whitespace) {
                    return Err(bad(format!("{name}: {p} has no valid version ({v:?})")));
                }
            }
        }
        Ok(Lock { sets: file.sets })
    }

    /// The lock as text (sorted, so that the same sets give the same bytes).
    pub fn to_text(&self) -> Result<String> {
        let file = LockFile {
            version: LOCK_VERSION,
            sets: self.sets.clone(),
        };
        let body = serde_norway::to_string(&file).map_err(|e| Error::Lock {
            file: PathBuf::from(LOCK_FILE),
            reason: format!("cannot serialise: {e}"),
        })?;
        Ok(format!("{HEADER}{body}"))
    }

    /// Writes the lock atomically (`atomic_file`).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = self.to_text()?;
        atomic_file::write(path, text.as_bytes())
            .map_err(|e| Error::io("replace lock file", path, e))
    }

    /// The pinned set named `name` (an image or a set of `sets.yml`).
    pub fn set(&self, name: &str) -> Result<&PackageSet> {
        self.sets.get(name).ok_or_else(|| Error::NotLocked {
            name: name.to_string(),
        })
    }

    /// The pinned set for `name`, checked against what the recipe now asks
    /// for: a changed suite, variant or package list is a stale entry.
    pub fn set_for(&self, name: &str, request: &PackageRequest) -> Result<&PackageSet> {
        let set = self.set(name)?;
        let stale = |reason: String| Error::StaleLock {
            name: name.to_string(),
            reason,
        };
        if set.request.suite != request.suite {
            return Err(stale(format!(
                "suite {} was locked, the recipe asks for {}",
                set.request.suite, request.suite
            )));
        }
        if set.request.variant != request.variant {
            return Err(stale(format!(
                "variant {} was locked, the recipe asks for {}",
                set.request.variant, request.variant
            )));
        }
        if set.request.packages != request.packages {
            return Err(stale(format!(
                "packages {} were locked, the recipe asks for {}",
                set.request.packages.join(","),
                request.packages.join(",")
            )));
        }
        if let Some(missing) = request
            .packages
            .iter()
            .find(|p| !set.locked.contains_key(p.as_str()))
        {
            return Err(stale(format!("{missing} has no pinned version")));
        }
        Ok(set)
    }

    /// Adds or replaces a set.
    pub fn insert(&mut self, name: &str, set: PackageSet) {
        self.sets.insert(name.to_string(), set);
    }

    /// Names of the locked sets, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.sets.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> PackageRequest {
        PackageRequest {
            suite: "trixie".into(),
            variant: "custom".into(),
            packages: vec!["linux-image-amd64".into()],
        }
    }

    fn kernel() -> PackageSet {
        PackageSet {
            request: request(),
            locked: [
                ("linux-image-amd64", "6.12.48-1"),
                ("linux-image-6.12.48+deb13-amd64", "6.12.48-1"),
                ("kmod", "34.2-2"),
                ("libc6", "2.41-12+deb13u4"),
                ("libattr1", "1:2.5.2-3"),
            ]
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        }
    }

    #[test]
    fn a_saved_lock_loads_back_identically_and_byte_stable() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(LOCK_FILE);
        let mut lock = Lock::default();
        lock.insert("kernel", kernel());
        lock.save(&path).unwrap();
        let back = Lock::load(&path).unwrap();
        assert_eq!(back, lock);
        let k = back.set("kernel").unwrap();
        assert_eq!(k.suite(), "trixie");
        assert!(k
            .packages()
            .any(|(n, v)| n == "linux-image-amd64" && v == "6.12.48-1"));
        assert!(k.pins().contains(&"libattr1=1:2.5.2-3".to_string()));
        // Same content, same bytes: the file is deterministic.
        let first = fs::read(&path).unwrap();
        back.save(&path).unwrap();
        assert_eq!(fs::read(&path).unwrap(), first);
        let text = String::from_utf8(first).unwrap();
        assert!(text.starts_with("# OxOS package lock"), "{text}");
        assert!(text.contains("version: 1"), "{text}");
    }

    #[test]
    fn a_set_that_is_not_locked_is_an_error_naming_the_refresh() {
        let lock = Lock::default();
        let e = lock.set("kernel").unwrap_err().to_string();
        assert_eq!(
            e,
            "the lock has no packages for kernel: run `cargo xtask lock --only kernel`"
        );
        assert!(Lock::load(Path::new("/nonexistent/packages.lock"))
            .unwrap()
            .set("x")
            .is_err());
    }

    #[test]
    fn a_changed_request_makes_the_entry_stale() {
        let mut lock = Lock::default();
        lock.insert("kernel", kernel());
        assert!(lock.set_for("kernel", &request()).is_ok());
        let mut other = request();
        other.packages.push("firmware-linux-free".into());
        let e = lock.set_for("kernel", &other).unwrap_err().to_string();
        assert!(e.contains("the lock for kernel is stale"), "{e}");
        assert!(e.contains("cargo xtask lock --only kernel"), "{e}");
        let mut other = request();
        other.suite = "bookworm".into();
        let e = lock.set_for("kernel", &other).unwrap_err().to_string();
        assert!(e.contains("suite trixie was locked"), "{e}");
    }

    #[test]
    fn a_requested_package_without_a_pin_is_an_error() {
        let mut set = kernel();
        set.locked.remove("linux-image-amd64");
        let mut lock = Lock::default();
        lock.insert("kernel", set);
        let e = lock.set_for("kernel", &request()).unwrap_err().to_string();
        assert!(e.contains("linux-image-amd64 has no pinned version"), "{e}");
    }

    #[test]
    fn bad_lock_files_are_refused_with_the_reason() {
        let p = Path::new("images/packages.lock");
        let cases = [
            ("version: 2\nsets: {}\n", "format version 2"),
            ("sets: {}\n", "missing field `version`"),
            (
                "version: 1\nsets:\n  a:\n    suite: trixie\n    variant: custom\n    packages: [a1]\n    locked: {}\n",
                "a pins no packages",
            ),
            (
                "version: 1\nsets:\n  a:\n    suite: trixie\n    variant: custom\n    packages: [a1]\n    locked: {a1: \"\"}\n",
                "a1 has no valid version",
            ),
            (
                "version: 1\nsets:\n  a:\n    suite: trixie\n    packages: [a1]\n    locked: {a1: \"1\"}\n",
                "missing field `variant`",
            ),
        ];
        for (text, want) in cases {
            let e = Lock::parse(p, text).unwrap_err().to_string();
            assert!(
                e.starts_with("invalid lock file images/packages.lock: "),
                "{e}"
            );
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}

//! Removal of a container's whole cgroup subtree (cgroup v2).
//!
//! A container may make cgroups of its own below the one it is given: a
//! Docker engine running as a system service moves itself into a leaf and
//! puts its containers in children, as Docker-in-Docker does.
//! libcontainer removes only the container's own directory, which the
//! kernel refuses while children exist (EBUSY), and the next start of the
//! container then fails to join its old, still delegated cgroup. So the
//! shim removes the subtree itself: `cgroup.kill` the lot, wait for the
//! processes to be gone, then remove the directories leaves first.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const ROOT: &str = "/sys/fs/cgroup";

/// The directory of a cgroup path such as `/system-docker/ID` on the unified
/// hierarchy, or None when the host does not use cgroup v2 only.
fn dir_of(cgroup_path: &str) -> Option<PathBuf> {
    if !crate::spec::is_cgroup_v2() {
        return None;
    }
    let rel = cgroup_path.trim_start_matches('/');
    if rel.is_empty() || rel.split('/').any(|c| c == ".." || c.is_empty()) {
        return None;
    }
    Some(Path::new(ROOT).join(rel))
}

/// Kills every process of the cgroup `cgroup_path` and its descendants and
/// removes them all. Quietly does nothing when the cgroup does not exist;
/// problems are logged (the caller goes on either way).
pub fn remove_tree(cgroup_path: &str) {
    let Some(dir) = dir_of(cgroup_path) else {
        return;
    };
    if !dir.is_dir() {
        return;
    }
    if let Err(e) = std::fs::write(dir.join("cgroup.kill"), "1") {
        tracing::debug!("cgroup.kill of {}: {e}", dir.display());
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match remove_dirs(&dir) {
            Ok(()) => return,
            Err(e) if Instant::now() >= deadline => {
                tracing::warn!("cannot remove cgroup {}: {e}", dir.display());
                return;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Removes `dir` and its child cgroups, leaves first.
fn remove_dirs(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_dirs(&entry.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_outside_the_hierarchy_are_refused() {
        for bad in ["", "/", "/a/../b", "//a", "a//b"] {
            if crate::spec::is_cgroup_v2() {
                assert!(dir_of(bad).is_none(), "{bad:?}");
            }
        }
        if crate::spec::is_cgroup_v2() {
            assert_eq!(
                dir_of("/system-docker/abc"),
                Some(PathBuf::from("/sys/fs/cgroup/system-docker/abc"))
            );
        } else {
            assert!(dir_of("/system-docker/abc").is_none());
        }
    }

    #[test]
    fn a_subtree_is_removed_leaves_first() {
        // Plain directories stand for cgroups: the walk is the same.
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().join("c");
        std::fs::create_dir_all(top.join("init")).unwrap();
        std::fs::create_dir_all(top.join("docker/x/y")).unwrap();
        remove_dirs(&top).unwrap();
        assert!(!top.exists());
        // remove_tree checks that the cgroup exists; the walk reports it.
        assert!(remove_dirs(&top).is_err());
    }
}

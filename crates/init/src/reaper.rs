//! Reaping orphans as PID 1.
//!
//! Every process whose parent dies becomes a child of PID 1, and stays a
//! zombie until PID 1 waits for it. PID 1 also runs the system engine,
//! whose own children (exec shims) must be left for the engine to wait for;
//! they are recorded in [`engine::children`]. So the reaper does not call
//! `waitpid(-1)`: it lists PID 1's children (`/proc/1/task/*/children`),
//! and waits only for those that are zombies and not the engine's.

use std::path::Path;

/// The children of this process, from every thread's `children` file.
fn children() -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out
}

/// The state letter of a process (`Z` for a zombie), from /proc/PID/stat.
fn state(pid: u32) -> Option<char> {
    let stat =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).ok()?;
    // "PID (COMM) S ...": COMM may hold spaces and parentheses; the state
    // follows the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Waits for every zombie child that the engine does not wait for itself;
/// returns how many were reaped.
pub fn reap_orphans() -> usize {
    reap_zombies(children())
}

/// Waits for those of `pids` that are zombies and not the engine's.
fn reap_zombies(pids: impl IntoIterator<Item = u32>) -> usize {
    engine::children::with_owned(|owned| {
        let mut reaped = 0;
        for pid in pids {
            if owned.contains(&pid) || state(pid) != Some('Z') {
                continue;
            }
            // SAFETY: waitpid on one pid with WNOHANG and no status pointer.
            let rc = unsafe { libc::waitpid(pid as i32, std::ptr::null_mut(), libc::WNOHANG) };
            if rc == pid as i32 {
                reaped += 1;
            }
        }
        reaped
    })
}

/// Waits for every exited child, whoever it belongs to: for when nothing
/// else runs in PID 1 (boot has stopped).
pub fn reap_all_blocking() {
    loop {
        // SAFETY: waitpid with WNOHANG and no status pointer.
        let rc = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
        if rc <= 0 {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zombies_that_are_not_the_engines_are_reaped() {
        // A child that exits at once becomes a zombie of this test process.
        let child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while state(pid) != Some('Z') {
            assert!(std::time::Instant::now() < deadline, "no zombie");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(children().contains(&pid));
        // Only this pid: other tests of this process have children of
        // their own that their threads wait for.
        assert_eq!(reap_zombies([pid]), 1);
        assert_eq!(state(pid), None, "the zombie is gone");
        std::mem::forget(child);
    }
}

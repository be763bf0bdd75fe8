//! Child processes the engine waits for itself.
//!
//! When the engine runs inside PID 1, PID 1 also reaps every orphan that
//! the kernel hands it, and those arrive as its children too. A reaper that
//! called `waitpid(-1)` would take the exit status of an exec shim before the
//! engine's own `wait` could read it. So the engine records the children it
//! waits for here, and a reaper leaves them alone ([`is_owned`]). Spawning
//! and recording happen under one lock that the reaper also takes, so a
//! child can never be seen unrecorded. (Container shims need no record: the
//! engine watches them through pidfds and tolerates them being reaped.)

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard};

static OWNED: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

fn owned() -> MutexGuard<'static, BTreeSet<u32>> {
    OWNED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Spawns `cmd` and records the child as the engine's own.
pub fn spawn(cmd: &mut tokio::process::Command) -> std::io::Result<tokio::process::Child> {
    let mut set = owned();
    let child = cmd.spawn()?;
    if let Some(pid) = child.id() {
        set.insert(pid);
    }
    Ok(child)
}

/// Forgets a child once the engine has waited for it.
pub fn disown(pid: u32) {
    owned().remove(&pid);
}

/// Runs `f` with the set of recorded children, holding the lock so that no
/// child is spawned meanwhile: a reaper decides and reaps inside `f`.
pub fn with_owned<R>(f: impl FnOnce(&BTreeSet<u32>) -> R) -> R {
    f(&owned())
}

/// Whether `pid` is a child the engine waits for itself.
pub fn is_owned(pid: u32) -> bool {
    owned().contains(&pid)
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn spawned_children_are_owned_until_disowned() {
        let mut child = super::spawn(&mut tokio::process::Command::new("true")).unwrap();
        let pid = child.id().unwrap();
        assert!(super::is_owned(pid));
        child.wait().await.unwrap();
        super::disown(pid);
        assert!(!super::is_owned(pid));
    }
}

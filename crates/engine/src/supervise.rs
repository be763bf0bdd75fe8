//! Running containers through their shims, and the restart policies.
//!
//! Each start spawns `BIN shim run DIR` in a session of its own, so that the
//! shim outlives the daemon. The daemon watches the shim through a pidfd
//! (which works whether or not the shim is its child, so the same code serves
//! a container started by this daemon and one found again after a restart)
//! and, when the shim is gone, reads the exit it recorded in `exit.json`.
//! The restart policy then decides whether to start it again, after a
//! back-off that doubles from 100 ms up to one minute and is reset once a run
//! lasted ten seconds, as in Docker.

use crate::engine::{send_signal, Container, Engine};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::record::Status;
use crate::runconfig;
use bollard_stubs::models::RestartPolicyNameEnum;
use runtime::protocol::{Exited, Started, EXIT_FILE, STARTED_FILE};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{unix::AsyncFd, AsyncBufReadExt, BufReader};

pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
const RESET_AFTER: Duration = Duration::from_secs(10);
/// How long a shim may take to report that the container runs.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running shim, watched through its pidfd.
pub(crate) struct Shim {
    pid: i32,
    pidfd: AsyncFd<OwnedFd>,
}

impl Shim {
    fn open(pid: i32) -> std::io::Result<Self> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the descriptor was just created and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        // SAFETY: the descriptor is owned by the AsyncFd and closed only when
        // it is dropped, after deregistration.
        let pidfd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(Shim { pid, pidfd })
    }

    /// Waits until the shim process is gone, and reaps it if it is our child.
    async fn exited(self) {
        let _ = self.pidfd.readable().await;
        // SAFETY: waitpid on a specific pid with WNOHANG; ECHILD when not our child.
        unsafe {
            libc::waitpid(self.pid, std::ptr::null_mut(), libc::WNOHANG);
        }
    }
}

/// Starts the container (the caller holds its `op` lock) and puts it under
/// supervision.
pub(crate) async fn start_locked(engine: &Arc<Engine>, c: &Arc<Container>) -> Result<()> {
    match spawn_run(engine, c).await {
        Ok(shim) => {
            tokio::spawn(supervise(engine.clone(), c.clone(), Some(shim)));
            Ok(())
        }
        Err((code, msg)) => {
            c.update(|r| {
                r.state.status = Status::Exited;
                r.state.exit_code = code;
                r.state.error = msg.clone();
                r.state.pid = 0;
                r.state.finished_at = fsutil::now_rfc3339();
            });
            Err(if (126..=127).contains(&code) {
                Error::InvalidArgument(format!("failed to start container {}: {msg}", c.id))
            } else {
                Error::Internal(format!("failed to start container {}: {msg}", c.id))
            })
        }
    }
}

/// Spawns the shim and waits for its first report. On failure: the exit code
/// to record and the reason.
async fn spawn_run(
    engine: &Arc<Engine>,
    c: &Arc<Container>,
) -> std::result::Result<Shim, (i64, String)> {
    let rec = c.snapshot();
    runconfig::prepare(engine, c, &rec).map_err(|e| (125, e.to_string()))?;
    let shim_log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(c.dir.join("shim.log"))
        .map_err(|e| (125, format!("cannot open shim.log: {e}")))?;
    let mut cmd = tokio::process::Command::new(&engine.config.shim_exe);
    cmd.arg("shim")
        .arg("run")
        .arg(&c.dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(shim_log);
    // SAFETY: setsid is async-signal-safe; the shim gets a session of its own
    // so that it outlives the daemon and no terminal signal reaches it.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        (
            125,
            format!(
                "cannot run the shim {}: {e}",
                engine.config.shim_exe.display()
            ),
        )
    })?;
    let pid = child.id().unwrap_or(0) as i32;
    let shim = Shim::open(pid).map_err(|e| (125, format!("cannot watch shim {pid}: {e}")))?;
    let stdout = child.stdout.take();
    // tokio reaps the process once it is gone; we watch it through the pidfd.
    drop(child);
    c.update_in_memory(|r| r.state.shim_pid = pid);

    let mut line = String::new();
    if let Some(out) = stdout {
        let mut reader = BufReader::new(out);
        match tokio::time::timeout(START_TIMEOUT, reader.read_line(&mut line)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => line = format!("error cannot read the shim's report: {e}"),
            Err(_) => {
                send_signal(pid, libc::SIGKILL);
                line = format!(
                    "error the shim did not report within {}s",
                    START_TIMEOUT.as_secs()
                );
            }
        }
    }
    let line = line.trim();
    if let Some(rest) = line.strip_prefix("ok ") {
        let pid: i32 = rest.trim().parse().unwrap_or(0);
        let started: Option<Started> = read_json(&c.dir.join(STARTED_FILE));
        c.update(|r| {
            r.state.status = Status::Running;
            r.state.pid = started.as_ref().map(|s| s.pid).unwrap_or(pid);
            r.state.started_at = started
                .map(|s| s.started_at)
                .unwrap_or_else(fsutil::now_rfc3339);
            r.state.exit_code = 0;
            r.state.error.clear();
            r.state.oom_killed = false;
        });
        tracing::info!(container = %c.id, pid, "started");
        return Ok(shim);
    }
    // The shim failed: wait for it to record why, then report.
    shim.exited().await;
    let exited: Option<Exited> = read_json(&c.dir.join(EXIT_FILE));
    let msg = exited
        .as_ref()
        .and_then(|e| e.error.clone())
        .or_else(|| line.strip_prefix("error ").map(str::to_string))
        .unwrap_or_else(|| {
            let log = std::fs::read_to_string(c.dir.join("shim.log")).unwrap_or_default();
            let last = log.lines().last().unwrap_or("").to_string();
            format!("the shim exited without a report: {last}")
        });
    let code = exited.map(|e| e.exit_code as i64).unwrap_or(125);
    Err((code, msg))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Option<T> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// Whether the restart policy restarts this container after this exit.
fn should_restart(c: &Container) -> bool {
    let rec = c.snapshot();
    if rec.state.manually_stopped || c.is_removed() {
        return false;
    }
    let policy = rec.host_config.restart_policy.clone().unwrap_or_default();
    match policy.name {
        Some(RestartPolicyNameEnum::ALWAYS) | Some(RestartPolicyNameEnum::UNLESS_STOPPED) => true,
        Some(RestartPolicyNameEnum::ON_FAILURE) => {
            let max = policy.maximum_retry_count.unwrap_or(0);
            rec.state.exit_code != 0 && (max <= 0 || rec.state.restart_count < max)
        }
        _ => false,
    }
}

/// Watches one container until it stops for good: records each exit,
/// applies the restart policy, removes it if it was created with --rm.
async fn supervise(engine: Arc<Engine>, c: Arc<Container>, mut shim: Option<Shim>) {
    // A restart that could not even start the process ran for no time: the
    // back-off keeps growing instead of resetting on the old start time.
    let mut start_failed = false;
    loop {
        if let Some(s) = shim.take() {
            let shim_pid = s.pid;
            s.exited().await;
            record_exit(&c, shim_pid);
        }
        if !should_restart(&c) {
            let auto_remove = c.snapshot().host_config.auto_remove.unwrap_or(false);
            if auto_remove && !c.is_removed() {
                // Let attached clients read the end of the output first.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                while c.attached.load(std::sync::atomic::Ordering::SeqCst) > 0
                    && tokio::time::Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                let _op = c.op.lock().await;
                if !c.snapshot().is_running() && !c.is_removed() {
                    if let Err(e) = engine.remove_locked(&c, false, true).await {
                        tracing::warn!(container = %c.id, "cannot auto-remove: {e}");
                    }
                }
            }
            return;
        }
        let rec = c.snapshot();
        let ran = match (
            fsutil::parse_time(&rec.state.started_at),
            fsutil::parse_time(&rec.state.finished_at),
        ) {
            _ if start_failed => Duration::ZERO,
            (Some(s), Some(f)) => (f - s).to_std().unwrap_or_default(),
            _ => Duration::ZERO,
        };
        let delay = {
            let mut b = c.backoff.lock().unwrap_or_else(|e| e.into_inner());
            if ran >= RESET_AFTER {
                *b = INITIAL_BACKOFF;
            }
            let d = *b;
            *b = (*b * 2).min(MAX_BACKOFF);
            d
        };
        c.update(|r| r.state.status = Status::Restarting);
        tracing::info!(container = %c.id, "restarting in {delay:?} (restart policy)");
        tokio::time::sleep(delay).await;
        let _op = c.op.lock().await;
        // A user stop, start or remove during the back-off takes over.
        let rec = c.snapshot();
        if c.is_removed() || rec.state.manually_stopped || rec.state.status != Status::Restarting {
            return;
        }
        c.update(|r| r.state.restart_count += 1);
        match spawn_run(&engine, &c).await {
            Ok(s) => {
                start_failed = false;
                shim = Some(s)
            }
            Err((code, msg)) => {
                start_failed = true;
                tracing::warn!(container = %c.id, "restart failed: {msg}");
                c.update(|r| {
                    r.state.status = Status::Exited;
                    r.state.exit_code = code;
                    r.state.error = msg;
                    r.state.pid = 0;
                    r.state.finished_at = fsutil::now_rfc3339();
                });
            }
        }
    }
}

/// Reads the exit the shim recorded and stores it in the record.
fn record_exit(c: &Container, shim_pid: i32) {
    let exited: Option<Exited> = read_json(&c.dir.join(EXIT_FILE));
    let rec = c.snapshot();
    let (code, error, finished, oom) = match exited {
        Some(e) => (
            e.exit_code as i64,
            e.error.unwrap_or_default(),
            e.finished_at,
            e.oom_killed,
        ),
        None => {
            // The shim itself was killed: make sure no orphan keeps running.
            send_signal(rec.state.pid, libc::SIGKILL);
            runconfig::cleanup_rootfs(&c.dir);
            (
                255,
                format!("the container's shim (pid {shim_pid}) exited without recording an exit"),
                fsutil::now_rfc3339(),
                false,
            )
        }
    };
    tracing::info!(container = %c.id, exit_code = code, "exited");
    c.update(|r| {
        r.state.status = Status::Exited;
        r.state.exit_code = code;
        r.state.error = error;
        r.state.finished_at = finished;
        r.state.oom_killed = oom;
        r.state.pid = 0;
    });
}

/// After a daemon restart: takes a container that was running back under
/// supervision, or records the exit that happened while no daemon was there.
pub(crate) fn recover(engine: &Arc<Engine>, c: Arc<Container>) {
    let rec = c.snapshot();
    match rec.state.status {
        Status::Running | Status::Restarting => {}
        Status::Removing => {
            // Interrupted removal: finish it.
            runconfig::cleanup_rootfs(&c.dir);
            let _ = std::fs::remove_dir_all(&c.dir);
            return;
        }
        _ => return,
    }
    let shim = if rec.state.status == Status::Running && is_our_shim(rec.state.shim_pid, &c) {
        Shim::open(rec.state.shim_pid).ok()
    } else {
        None
    };
    if shim.is_some() {
        tracing::info!(container = %c.id, "found running container again");
        tokio::spawn(supervise(engine.clone(), c, shim));
    } else {
        if rec.state.status == Status::Running {
            record_exit(&c, rec.state.shim_pid);
        } else {
            c.update(|r| r.state.status = Status::Exited);
        }
        tokio::spawn(supervise(engine.clone(), c, None));
    }
}

/// Whether `pid` is the shim of this container (and not a process that got
/// its pid after the shim was gone).
fn is_our_shim(pid: i32, c: &Container) -> bool {
    if pid <= 0 {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let dir = c.dir.as_os_str().as_encoded_bytes();
    args.len() >= 4 && args[1] == b"shim" && args[2] == b"run" && args[3] == dir
}
